//! `connector status` and `connector audit` as an operator runs them: the
//! built binary against a database a run would have left (no component, no
//! network, no master key).

use rusqlite::params;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Installation {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

fn installation() -> Installation {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("connector.toml");
    std::fs::write(&config, "tenant = \"acme\"\ndata_dir = \"data\"\n[settings]\nsalesforce_max_api_share = 0.8\n")
        .unwrap();
    let db = host_harness::store::Database::open(&dir.path().join("data/connector.db")).unwrap();
    let conn = db.connect().unwrap();
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, finished_at, mode, status, report)
         VALUES ('run-1', 'acme', '2026-12-02T11:00:00Z', '2026-12-02T11:00:02Z', 'incremental', 'succeeded', ?1)",
        params![
            r#"{"run_id":"run-1","tenant":"acme","mode":"incremental","status":"succeeded","error":null,
                "duration_ms":2000,"objects":{"customer":{"read":3,"created":2,"updated":1,"unchanged":0,
                "failed":0,"deleted":0,"deferred":0}},"api_calls":{"netsuite":2,"salesforce":1},
                "guest_peak_memory_bytes":0,"salesforce_api_usage":{"used":300,"limit":1000}}"#
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO kv (tenant, bucket, key, value, updated_at)
         VALUES ('acme', 'queues', 'deferred/contact/7', '{}', '2026-12-02T11:00:01Z')",
        [],
    )
    .unwrap();
    for (at, ns, outcome, error) in [
        ("2026-12-02T11:00:01Z", "42", "created", None),
        ("2026-12-02T11:00:01.5Z", "43", "failed", Some("bad, \"value\"")),
    ] {
        conn.execute(
            "INSERT INTO audit (tenant, run_id, at, kind, action, netsuite_id, salesforce_id, outcome, transformations,
                 error)
             VALUES ('acme', 'run-1', ?1, 'customer', 'write', ?2, NULL, ?3, '[]', ?4)",
            params![at, ns, outcome, error],
        )
        .unwrap();
    }
    Installation { _dir: dir, config }
}

fn connector(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connector"))
        .args(args)
        .arg("--config")
        .arg(config)
        // Neither command may need the component or the secrets.
        .env_remove("CONNECTOR_MASTER_KEY")
        .env("CONNECTOR_COMPONENT", "/nonexistent.wasm")
        .output()
        .unwrap()
}

#[test]
fn status_json_gives_the_figures_from_the_database() {
    let i = installation();
    let out = connector(&i.config, &["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acme = &status["tenants"][0];
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["last_run"]["run_id"], "run-1");
    assert_eq!(acme["last_run"]["status"], "succeeded");
    assert_eq!(acme["last_run"]["duration_ms"], 2000);
    assert_eq!(acme["last_run"]["objects"]["customer"]["created"], 2);
    assert_eq!(acme["next_run"]["scheduled"], false);
    assert_eq!(acme["next_run"]["note"], "not scheduled: run `connector serve`");
    assert_eq!(acme["waiting"][0]["kind"], "contact");
    assert_eq!(acme["waiting"][0]["deferred"], 1);
    assert_eq!(acme["salesforce_api"]["used"], 300);
    assert_eq!(acme["salesforce_api"]["share"], 0.3);
    assert_eq!(acme["salesforce_api"]["ceiling"], 0.8);
}

#[test]
fn audit_export_csv_writes_the_matching_rows() {
    let i = installation();
    let out = connector(&i.config, &["audit", "export", "--format", "csv", "--run", "run-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "exported 2 audit rows");
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    let picked: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[7].as_str(), r[9].as_str(), r[11].as_str())).collect();
    assert_eq!(picked, [("42", "created", ""), ("43", "failed", "bad, \"value\"")]);

    // To a file, filtered by outcome.
    let file = i.config.with_file_name("failed.csv");
    let out = connector(
        &i.config,
        &["audit", "export", "--format", "csv", "--outcome", "failed", "--out", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[7].to_string()).collect();
    assert_eq!(ids, ["43"]);
}

#[test]
fn a_bad_flag_is_named() {
    let i = installation();
    let out = connector(&i.config, &["audit", "list", "--since", "yesterday"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--since `yesterday` is not an RFC 3339 time"), "{err}");
    for command in [&["list"][..], &["export", "--format", "csv"]] {
        let out = connector(&i.config, &[&["audit"], command, &["--run", "run-nope"]].concat());
        assert_eq!(out.status.code(), Some(1), "audit {command:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no run `run-nope` of tenant `acme` in the run log"), "{err}");
    }
    // A known run with no row of that outcome lists nothing, successfully.
    let out = connector(&i.config, &["audit", "list", "--run", "run-1", "--outcome", "unchanged"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = connector(&i.config, &["audit", "export", "--format", "xml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--format") && err.contains("jsonl") && err.contains("csv"), "{err}");
}
