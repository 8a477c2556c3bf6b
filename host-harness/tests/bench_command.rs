//! `connector bench --json` as the README runs it: each path's result
//! carries the fields issue 11 asks for, measured on a real run of the
//! connector's own process against the simulators.

use serde_json::Value;
use std::process::Command;

#[test]
fn the_bench_measures_each_path_on_a_connector_process_of_its_own() {
    let out = Command::new(env!("CARGO_BIN_EXE_connector"))
        .args(["bench", "--customers", "300", "--contacts", "200", "--vendors", "20", "--paths", "auto,bulk", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let number = |field: &str| r[field].as_f64().unwrap_or_else(|| panic!("no {field} in {r}"));
        assert_eq!(r["records"], 520, "{r}");
        assert!(number("seconds") > 0.0 && number("records_per_second") > 0.0, "{r}");
        assert!((number("micros_per_record") - number("seconds") * 1e6 / 520.0).abs() < 1.0, "{r}");
        // A describe and at least one write per kind; every SuiteQL page counted.
        assert!(number("salesforce_api_calls") >= 3.0 && number("netsuite_requests") >= 3.0, "{r}");
        assert!(number("guest_peak_memory_bytes") >= 1e6, "{r}");
        // The connector's own process, not the bench's (which holds the
        // simulators): a host with wasmtime and SQLite, far below a gigabyte.
        let host = number("host_peak_rss_bytes");
        assert!(host > 10e6 && host < 1e9, "{r}");
        assert!(number("simulator_peak_rss_bytes") > 0.0, "{r}");
        assert!(r["cpu_seconds_by_thread"]["connector"].as_f64().unwrap() > 0.0, "{r}");
        let parts = number("connector_cpu_seconds") + number("simulator_cpu_seconds");
        assert!((number("process_cpu_seconds") - parts).abs() < 0.02, "{r}");
        assert!(number("idle_cli_sync_ms") > 0.0, "{r}");
    }
    let jobs = |path: &str| results.iter().find(|r| r["path"] == path).unwrap()["bulk_jobs"].as_u64().unwrap();
    // 520 records are below the Bulk threshold: `auto` writes through
    // Composite; the forced path opens a job per kind.
    assert_eq!((jobs("auto"), jobs("bulk")), (0, 3));
}
