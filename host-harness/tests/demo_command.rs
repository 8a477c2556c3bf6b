//! The first README command: `connector demo --json` shows each part of the
//! product and its figures add up.

use serde_json::Value;
use std::process::Command;

#[test]
fn the_demo_shows_every_part_of_the_product() {
    let out = Command::new(env!("CARGO_BIN_EXE_connector")).args(["demo", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = demo["runs"].as_array().unwrap();
    let counts = |run: usize, kind: &str, what: &str| runs[run]["objects"][kind][what].as_u64().unwrap_or(0);
    assert_eq!((counts(0, "customer", "created"), counts(0, "contact", "created")), (1000, 2000));
    assert_eq!(demo["salesforce_contacts"], 2000);
    // Seven edits: five written, one unchanged, one refused by the validation rule.
    assert_eq!(demo["edits"].as_array().unwrap().len(), 7);
    assert_eq!(
        (counts(1, "customer", "updated"), counts(1, "customer", "unchanged"), counts(1, "customer", "failed")),
        (5, 1, 1)
    );
    assert_eq!(runs[2]["mode"], "replay");
    assert_eq!(counts(2, "customer", "updated"), 1, "the refused write was replayed");
    assert!(demo["change_event"].as_str().unwrap().contains("reached Salesforce"), "{demo}");
    assert_eq!(counts(4, "vendor", "unchanged"), 1);
    assert!(demo["netsuite_vendor"].as_str().unwrap().ends_with("+14155550123"), "{demo}");

    // The commands it points at work on what it left behind.
    let config = demo["config_file"].as_str().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_connector")).args(["status", "--json", "--config", config]).output();
    let status: Value = serde_json::from_slice(&status.unwrap().stdout).unwrap();
    assert_eq!(status["tenants"][0]["tenant"], "demo", "{status}");
    let history = demo["look_further"][1].as_str().unwrap();
    let args: Vec<&str> = history.split_whitespace().skip(1).collect();
    let shown = Command::new(env!("CARGO_BIN_EXE_connector")).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"), "{text}");
    let _ = std::fs::remove_dir_all(std::path::Path::new(config).parent().unwrap());
}
