//! The sandbox's limits: a first sync of a real-size account fits in a small
//! memory cap, and a run that hits a limit ends alone, reported in one line,
//! with its lease given back.

mod support;

use support::{bed, succeeded};

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
