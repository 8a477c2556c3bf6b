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

/// Change-event-to-Salesforce-write latency through the harness's listener.
#[derive(Debug, Serialize)]
pub struct EventLatency {
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Sends `events` signed change events one after another, each for a
/// freshly renamed customer, and times each from POST to the Salesforce
/// record carrying the new name.
pub async fn event_latency(component: PathBuf, events: usize) -> Result<EventLatency> {
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    let runtime: &'static Runtime =
        Box::leak(Box::new(tokio::task::spawn_blocking(move || Runtime::load(&component)).await??));
    let dir = std::env::temp_dir().join(format!("connector-bench-{}", crate::scheduler::new_run_id()));
    let bed = Testbed::start(TestbedOptions {
        customers: 1000,
        key,
        data_dir: dir.clone(),
        salesforce: SalesforceSimConfig::default(),
        settings: BTreeMap::new(),
        netsuite_concurrency: 15,
    })
    .await?;
    let first = bed.sync_kinds(runtime, SyncMode::Incremental, &[]).await?;
    if first.status != "succeeded" {
        bail!("the initial sync failed: {:?}", first.error);
    }
    let hook = crate::webhook::serve(bed.tenant.clone(), runtime, "127.0.0.1:0".parse()?).await?;
    let client = reqwest::Client::new();
    let url = format!("{}{}", hook.url, crate::webhook::EVENTS_PATH);
    let mut samples = Vec::with_capacity(events);
    for i in 0..events {
        let id = bed.customer_ids[i % bed.customer_ids.len()];
        let name = format!("Latency probe {i}");
        bed.netsuite.rename_customer_any(id, &name)?;
        let body = format!(r#"{{"recordType":"customer","id":"{id}","type":"edit"}}"#);
        let signature = netsuite_salesforce::events::sign(
            crate::testbed::WEBHOOK_SECRET.as_bytes(),
            bed.clock.now_secs(),
            body.as_bytes(),
        );
        let started = Instant::now();
        let status = client
            .post(&url)
            .header("content-type", "application/json")
            .header(netsuite_salesforce::events::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await?
            .status()
            .as_u16();
        if status != 202 {
            bail!("the listener answered {status}");
        }
        loop {
            let landed =
                bed.salesforce.find("Account", &id.to_string()).is_some_and(|(_, f)| f["Name"] == name.as_str());
            if landed {
                break;
            }
            if started.elapsed().as_secs() > 10 {
                bail!("event {i} did not reach Salesforce within 10 s");
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_dir_all(dir);
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok(EventLatency { events, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: *samples.last().unwrap_or(&0.0) })
}
