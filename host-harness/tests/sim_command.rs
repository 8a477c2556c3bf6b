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

/// Starts `connector sim` with `args` (plus `--ports 0,0 --json --dir`), and
/// reads the endpoints document it prints once the simulators listen.
fn start_sim(dir: &std::path::Path, args: &[&str]) -> (Running, Value) {
    let mut child = connector()
        .arg("sim")
        .args(args)
        .args(["--ports", "0,0", "--json", "--dir"])
        .arg(dir.join("sim"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // The JSON document ends with a lone "}".
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        text.push_str(&line);
        if line == "}" {
            break;
        }
    }
    (running, serde_json::from_str(&text).unwrap())
}

/// A client-credentials token from the printed credentials: (instance URL, access token).
async fn login(http: &reqwest::Client, endpoints: &Value) -> (String, String) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", endpoints["salesforce_client_id"].as_str().unwrap()),
        ("client_secret", endpoints["salesforce_client_secret"].as_str().unwrap()),
    ];
    let login = endpoints["salesforce_login_url"].as_str().unwrap();
    let token: Value =
        http.post(format!("{login}/services/oauth2/token")).form(&form).send().await.unwrap().json().await.unwrap();
    (token["instance_url"].as_str().unwrap().to_string(), token["access_token"].as_str().unwrap().to_string())
}

/// `SELECT Id FROM Account`, as a plain REST client asks it.
async fn accounts(http: &reqwest::Client, instance: &str, bearer: &str) -> Value {
    http.get(format!("{instance}/services/data/v66.0/query?q=SELECT+Id+FROM+Account"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_standalone_simulators_serve_the_connector_and_a_plain_client() {
    let dir = tempfile::tempdir().unwrap();
    let (running, endpoints) = start_sim(dir.path(), &["--customers", "120", "--contacts", "200", "--vendors", "7"]);
    assert_eq!(endpoints["latency_ms"], 0, "{endpoints}");
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
    let (instance, bearer) = login(&http, &endpoints).await;
    let query = accounts(&http, &instance, &bearer).await;
    assert_eq!(query["totalSize"], 120, "{query}");
}

#[tokio::test]
async fn the_standalone_simulators_answer_after_the_latency_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_running, endpoints) =
        start_sim(dir.path(), &["--customers", "3", "--contacts", "0", "--vendors", "0", "--latency-ms", "300"]);
    assert_eq!(endpoints["latency_ms"], 300, "{endpoints}");
    let http = reqwest::Client::new();
    let (instance, bearer) = login(&http, &endpoints).await;
    let started = std::time::Instant::now();
    let query = accounts(&http, &instance, &bearer).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(query["totalSize"], 0, "{query}");
}

/// A port already taken is named, with the flag that changes it.
#[test]
fn a_port_in_use_is_named_with_the_flag_that_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = connector()
        .args(["sim", "--ports", &format!("{port}"), "0", "--dir"])
        .arg(dir.path().join("sim"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")) && stderr.contains("--ports"), "{stderr}");
}
