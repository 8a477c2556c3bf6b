//! `connector bench`: the same sync through Composite and through Bulk API
//! 2.0 on the simulators, reporting Salesforce API calls per 1,000 records
//! and records per second.

use crate::host::{RecordKind, Runtime, SyncMode};
use crate::sim::salesforce::SalesforceSimConfig;
use crate::testbed::{KeyPair, Signing, Testbed, TestbedOptions};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct PathResult {
    pub path: &'static str,
    pub records: u64,
    pub seconds: f64,
    pub records_per_second: f64,
    /// Requests counted against the org's daily allocation (token requests are not).
    pub salesforce_api_calls: u64,
    pub salesforce_calls_per_1000: f64,
    pub netsuite_requests: u64,
    pub bulk_jobs: u64,
}

pub async fn run(component: PathBuf, records: u64) -> Result<Vec<PathResult>> {
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    let runtime = tokio::task::spawn_blocking(move || Runtime::load(&component)).await??;
    let mut results = Vec::new();
    for (path, threshold) in [("composite", records + 1), ("bulk", 0)] {
        let dir = std::env::temp_dir().join(format!("connector-bench-{}", crate::scheduler::new_run_id()));
        let bed = Testbed::start(TestbedOptions {
            customers: records,
            key: key.clone(),
            data_dir: dir.clone(),
            salesforce: SalesforceSimConfig { daily_api_limit: 10_000_000, ..Default::default() },
            settings: BTreeMap::from([("salesforce_bulk_threshold".to_string(), threshold.to_string())]),
            netsuite_concurrency: 15,
        })
        .await?;
        let started = Instant::now();
        let report = bed.sync_kinds(&runtime, SyncMode::Full, &[RecordKind::Customer]).await?;
        let seconds = started.elapsed().as_secs_f64();
        if report.status != "succeeded" {
            bail!("the {path} run failed: {:?}", report.error);
        }
        let calls = bed.salesforce.api_requests();
        results.push(PathResult {
            path,
            records,
            seconds,
            records_per_second: records as f64 / seconds,
            salesforce_api_calls: calls,
            salesforce_calls_per_1000: calls as f64 * 1000.0 / records as f64,
            netsuite_requests: bed.netsuite.requests(),
            bulk_jobs: bed.salesforce.bulk_jobs(),
        });
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(results)
}

pub fn print_text(results: &[PathResult]) {
    println!(
        "{:<10} {:>8} {:>9} {:>12} {:>16} {:>18} {:>10}",
        "path", "records", "seconds", "records/s", "SF calls", "SF calls/1000 rec", "bulk jobs"
    );
    for r in results {
        println!(
            "{:<10} {:>8} {:>9.2} {:>12.0} {:>16} {:>18.2} {:>10}",
            r.path,
            r.records,
            r.seconds,
            r.records_per_second,
            r.salesforce_api_calls,
            r.salesforce_calls_per_1000,
            r.bulk_jobs
        );
    }
}
