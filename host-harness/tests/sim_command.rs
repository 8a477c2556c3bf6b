//! `connector sim` as a user runs it: both simulators standalone, a config
//! the connector runs as written, credentials a plain HTTP client logs in with.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the simulators however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_connector"))
}

#[tokio::test]
async fn the_standalone_simulators_serve_the_connector_and_a_plain_client() {
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("sim");
    let mut child = connector()
        .args(["sim", "--customers", "120", "--contacts", "200", "--vendors", "7", "--ports", "0,0", "--json"])
        .arg("--dir")
        .arg(&sim_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // The JSON document is printed once the simulators listen; it ends with a lone "}".
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        text.push_str(&line);
        if line == "}" {
            break;
        }
    }
    let endpoints: Value = serde_json::from_str(&text).unwrap();
    // The process runs without transparent huge pages (zeroing 2 MiB pages
    // for reused buffers cost a quarter of the simulators' CPU); older
    // kernels do not print the line.
    #[cfg(target_os = "linux")]
    if let Some(line) = std::fs::read_to_string(format!("/proc/{}/status", running.0.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
    {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    let config = endpoints["config_file"].as_str().unwrap();
    assert!(std::path::Path::new(endpoints["netsuite_private_key_file"].as_str().unwrap()).exists());

    let out = connector().args(["sync", "--json", "--config", config]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "succeeded", "{report}");
    let created = |kind: &str| report["objects"][kind]["created"].as_u64();
    assert_eq!(
        (created("customer"), created("contact"), created("vendor")),
        (Some(120), Some(200), Some(7)),
        "{report}"
    );

    // The printed credentials log a plain client in, and the org holds what the connector wrote.
    let http = reqwest::Client::new();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", endpoints["salesforce_client_id"].as_str().unwrap()),
        ("client_secret", endpoints["salesforce_client_secret"].as_str().unwrap()),
    ];
    let login = endpoints["salesforce_login_url"].as_str().unwrap();
    let token: Value =
        http.post(format!("{login}/services/oauth2/token")).form(&form).send().await.unwrap().json().await.unwrap();
    let instance = token["instance_url"].as_str().unwrap();
    let query: Value = http
        .get(format!("{instance}/services/data/v66.0/query?q=SELECT+Id+FROM+Account"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(query["totalSize"], 120, "{query}");
}
