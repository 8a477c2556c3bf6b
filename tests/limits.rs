//! The sandbox's limits: a first sync of a real-size account fits in a small
//! memory cap, and a run that hits a limit ends alone, reported in one line,
//! with its lease given back.

mod support;

use std::time::Duration;
use support::{bed, component_path, connector_binary, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_customers_sync_in_64_mb() {
    let bed = bed(200_000).max_memory_mb(64).start().await;
    let report = bed.full_sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 200_000);
    assert_eq!(bed.salesforce.count("Account"), 200_000);
    assert!(report.guest_peak_memory_bytes <= 64 << 20, "{}", report.guest_peak_memory_bytes);
    assert!(bed.salesforce.bulk_jobs() >= 4, "at most 50,000 records per Bulk API job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_records_sync_in_64_mb_in_jobs_a_fifth_of_it() {
    let bed = bed(60_000).max_memory_mb(64).start().await;
    // Long names, e-mail addresses and two-line streets: ~850 bytes of CSV a
    // record, so 50,000 records (one job by count) would be ~42 MB of CSV,
    // held while the job before it's ~45 MB of results are read.
    bed.netsuite
        .execute(
            "UPDATE customer SET companyname = hex(randomblob(100)) || ' ' || id,
                 email = lower(hex(randomblob(30))) || '@example.com'",
        )
        .unwrap();
    bed.netsuite
        .execute(
            "UPDATE customeraddressbookentityaddress SET addr1 = hex(randomblob(60)), addr2 = hex(randomblob(60)),
                 city = hex(randomblob(20))",
        )
        .unwrap();
    let report = bed.full_sync().await;
    succeeded(&report);
    assert_eq!(bed.salesforce.count("Account"), 60_000);
    assert!(report.guest_peak_memory_bytes <= 64 << 20, "{}", report.guest_peak_memory_bytes);
    // Jobs end at 12.8 MB of CSV (64 MB / 5), long before 50,000 records.
    assert!(bed.salesforce.bulk_jobs() >= 4, "{} jobs", bed.salesforce.bulk_jobs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_memory_ends_alone_reported_in_one_line_and_the_next_run_works() {
    let bed = bed(30_000).max_memory_mb(12).start().await;
    let report = bed.full_sync().await;
    assert_eq!(report.status, "failed", "{report:?}");
    let error = report.error.clone().unwrap();
    assert!(error.contains("ran out of memory") && error.contains("max_memory_mb"), "{error}");
    assert!(!error.contains('\n') && error.len() < 300, "one line, no backtrace: {error}");
    let conn = bed.tenant.database.connect().unwrap();
    let (status, detail): (String, String) = conn
        .query_row("SELECT status, detail FROM runs WHERE run_id = ?1", [&report.run_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "failed");
    assert!(detail.len() > error.len(), "the run log keeps wasmtime's whole account");
    // What the run wrote before the trap is counted from its audit trail.
    let audited: u32 = conn
        .query_row("SELECT COUNT(*) FROM audit WHERE run_id = ?1 AND outcome = 'created'", [&report.run_id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(report.counts("customer").created, audited);
    assert!(report.api_calls.netsuite > 0 && report.api_calls.salesforce > 0, "{:?}", report.api_calls);

    // The lease was given back: the next run starts at once.
    bed.tenant.set_max_memory_mb(256);
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(bed.salesforce.count("Account"), 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_is_stopped_in_one_line_naming_the_setting_and_the_next_run_works() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("connector.toml");
    bed.write_config(&config).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text.lines().find(|l| l.starts_with("run_deadline_secs = ")).unwrap().to_string();
    std::fs::write(&config, text.replacen(&line, "run_deadline_secs = 1", 1)).unwrap();
    // Fifteen pages 300 ms apart: the deadline passes part-way.
    bed.netsuite.set_latency(Duration::from_millis(300));
    let sync = || {
        tokio::process::Command::new(connector_binary())
            .args(["sync", "--config"])
            .arg(&config)
            .env("CONNECTOR_COMPONENT", component_path())
            .output()
    };
    let out = sync().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains("longer than its deadline of 1 s") && error.contains("run_deadline_secs"), "{error}");
    assert!(!stderr.contains("wasm backtrace"), "the backtrace stays in the run log: {stderr}");
    let written = bed.salesforce.count("Account");
    assert!(written < 3000, "{written}");

    // Its lease was given back: with the deadline raised the next run finishes the rest at once.
    bed.netsuite.set_latency(Duration::ZERO);
    std::fs::write(&config, text).unwrap();
    let out = sync().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bed.salesforce.count("Account"), 3000);
}
