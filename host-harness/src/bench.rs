//! `connector bench`: the same sync through Composite and through Bulk API
//! 2.0 on the simulators, reporting Salesforce API calls per 1,000 records
//! and records per second.

use crate::host::{RecordKind, Runtime, SyncMode};
use crate::sim::salesforce::SalesforceSimConfig;
use crate::spin_host::{SpinHost, SwapSemantics};
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

/// Change-event-to-Salesforce-write latency, through the harness's listener
/// or through the Spin build in the Spin test host.
#[derive(Debug, Serialize)]
pub struct EventLatency {
    pub host: &'static str,
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Which build receives the events.
pub enum EventHost {
    /// The harness component (this path) behind `connector serve`'s listener.
    Harness(PathBuf),
    /// The Spin build (this path) in a wasmtime host offering what Spin offers.
    Spin(PathBuf),
}

/// Where a signed event is POSTed.
enum Receiver {
    Listener { client: reqwest::Client, url: String },
    Spin(SpinHost),
}

impl Receiver {
    async fn post(&self, body: String, signature: String) -> Result<u16> {
        let header = netsuite_salesforce::events::SIGNATURE_HEADER;
        Ok(match self {
            Receiver::Listener { client, url } => client
                .post(url)
                .header("content-type", "application/json")
                .header(header, signature)
                .body(body)
                .send()
                .await?
                .status()
                .as_u16(),
            Receiver::Spin(host) => {
                let headers = [("content-type", "application/json".to_string()), (header, signature)];
                host.request("POST", "/netsuite/events", &headers, body.into_bytes()).await?.status
            }
        })
    }
}

/// Sends `events` signed change events one after another, each for a
/// freshly renamed customer, and times each from POST to the Salesforce
/// record carrying the new name.
pub async fn event_latency(target: EventHost, events: usize) -> Result<EventLatency> {
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
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
    let (host, receiver, _listener) = match target {
        EventHost::Harness(component) => {
            let runtime: &'static Runtime =
                Box::leak(Box::new(tokio::task::spawn_blocking(move || Runtime::load(&component)).await??));
            let first = bed.sync_kinds(runtime, SyncMode::Incremental, &[]).await?;
            if first.status != "succeeded" {
                bail!("the initial sync failed: {:?}", first.error);
            }
            let hook = crate::webhook::serve(bed.tenant.clone(), runtime, "127.0.0.1:0".parse()?).await?;
            let url = format!("{}{}", hook.url, crate::webhook::EVENTS_PATH);
            ("harness listener", Receiver::Listener { client: reqwest::Client::new(), url }, Some(hook))
        }
        EventHost::Spin(wasm) => {
            let mut variables = bed.tenant.sandbox()?.config;
            variables.insert("credentials_key".into(), random_key());
            variables.insert("sync_token".into(), "bench".into());
            // Spin's default store, as `spin up` without a runtime config.
            let host = tokio::task::spawn_blocking(move || SpinHost::load(&wasm, variables, SwapSemantics::SpinSqlite))
                .await??;
            let first = host.request("POST", "/sync", &[("authorization", "Bearer bench".into())], vec![]).await?;
            if first.status != 200 {
                bail!("the initial sync through the Spin build failed ({}): {}", first.status, first.body);
            }
            ("spin build", Receiver::Spin(host), None)
        }
    };
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
        let status = receiver.post(body, signature).await?;
        if status != 202 {
            bail!("the {host} answered {status}");
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
    Ok(EventLatency { host, events, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: *samples.last().unwrap_or(&0.0) })
}

/// A random 32-byte sealing key (base64) for the bench's throwaway store.
fn random_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}
