//! `connector bench-tenants`: many tenants in one process, each with its own
//! simulators, synced at once by one runtime: how long making each run's
//! instance of the component takes (p50, p99), with and without wasmtime's
//! pooling allocator.

use crate::host::{Runtime, SyncMode};
use crate::testbed::{KeyPair, Signing, Testbed, TestbedOptions};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use simulators::salesforce::SalesforceSimConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TenantsBenchOptions {
    pub tenants: usize,
    pub customers: u64,
    /// Rounds of incremental runs (every tenant at once) after the first sync.
    pub idle_rounds: usize,
    pub pooling: bool,
}

#[derive(Debug, Serialize)]
pub struct TenantsBench {
    pub tenants: usize,
    pub pooling: bool,
    /// Runs measured: the first sync and each idle round, of every tenant.
    pub runs: usize,
    pub instantiation_p50_micros: u64,
    pub instantiation_p99_micros: u64,
    pub instantiation_max_micros: u64,
    /// Wall time of every tenant's first sync, all at once.
    pub first_sync_seconds: f64,
    /// Wall time of one round of idle runs of every tenant, at once (median).
    pub idle_round_seconds: f64,
}

pub async fn run(component: PathBuf, options: TenantsBenchOptions) -> Result<TenantsBench> {
    if options.tenants == 0 {
        bail!("--tenants is 0: give how many tenants to host, e.g. 50");
    }
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    // Room for every tenant's run at once, twice over.
    let slots = options.pooling.then_some(options.tenants as u32 * 2);
    let runtime: &'static Runtime =
        Box::leak(Box::new(tokio::task::spawn_blocking(move || Runtime::load_with(&component, slots)).await??));
    let root = std::env::temp_dir().join(format!("connector-bench-tenants-{}", crate::scheduler::new_run_id()));
    let mut beds = Vec::new();
    for i in 0..options.tenants {
        let bed = Testbed::start(TestbedOptions {
            customers: options.customers,
            key: key.clone(),
            data_dir: root.join(format!("t{i}")),
            salesforce: SalesforceSimConfig::default(),
            settings: BTreeMap::new(),
            netsuite_concurrency: 15,
            max_memory_mb: 512,
        })
        .await?;
        beds.push(Arc::new(bed));
    }
    let mut instantiations = Vec::new();
    let started = Instant::now();
    instantiations.extend(round(&beds, runtime, SyncMode::Full).await?);
    let first_sync_seconds = started.elapsed().as_secs_f64();
    let mut idle_rounds = Vec::new();
    for _ in 0..options.idle_rounds {
        let started = Instant::now();
        instantiations.extend(round(&beds, runtime, SyncMode::Incremental).await?);
        idle_rounds.push(started.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&root);
    instantiations.sort_unstable();
    idle_rounds.sort_by(f64::total_cmp);
    let at = |q: f64| instantiations[((instantiations.len() - 1) as f64 * q).round() as usize];
    Ok(TenantsBench {
        tenants: options.tenants,
        pooling: options.pooling,
        runs: instantiations.len(),
        instantiation_p50_micros: at(0.5),
        instantiation_p99_micros: at(0.99),
        instantiation_max_micros: at(1.0),
        first_sync_seconds,
        idle_round_seconds: idle_rounds.get(idle_rounds.len() / 2).copied().unwrap_or_default(),
    })
}

/// Runs every tenant's sync at once; their instantiation times.
async fn round(beds: &[Arc<Testbed>], runtime: &'static Runtime, mode: SyncMode) -> Result<Vec<u64>> {
    let runs: Vec<_> = beds
        .iter()
        .map(|bed| {
            let bed = bed.clone();
            tokio::spawn(async move { bed.sync_kinds(runtime, mode, &[]).await })
        })
        .collect();
    let mut micros = Vec::new();
    for run in runs {
        let report = run.await.context("a tenant's run panicked")??;
        if report.status != "succeeded" {
            bail!("tenant run {} {}: {}", report.run_id, report.status, report.error.unwrap_or_default());
        }
        micros.push(report.instantiation_micros);
    }
    Ok(micros)
}

pub fn print_text(results: &[TenantsBench]) -> std::io::Result<()> {
    crate::outln!("tenants  pooling  runs  instantiation p50 µs  p99 µs  max µs  first sync s  idle round s")?;
    for r in results {
        crate::outln!(
            "{:>7}  {:>7}  {:>4}  {:>20}  {:>6}  {:>6}  {:>12.2}  {:>12.3}",
            r.tenants,
            if r.pooling { "on" } else { "off" },
            r.runs,
            r.instantiation_p50_micros,
            r.instantiation_p99_micros,
            r.instantiation_max_micros,
            r.first_sync_seconds,
            r.idle_round_seconds
        )?;
    }
    Ok(())
}
