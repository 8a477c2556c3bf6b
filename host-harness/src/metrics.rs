//! Prometheus metrics of this process's runs, served on `GET /metrics` by
//! `connector serve`: counters fed by every run's report, gauges read from
//! each hosted tenant's database when scraped.

use crate::ops::status::tenant_status;
use crate::scheduler::{RunReport, Tenant};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    tenant: String,
    mode: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    tenant: String,
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemLabels {
    tenant: String,
    system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    tenant: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    kind: String,
    queue: String,
}

type Share = Gauge<f64, AtomicU64>;

struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    records: Family<RecordLabels, Counter>,
    api_calls: Family<SystemLabels, Counter>,
    duration: Family<ModeLabels, Histogram>,
    api_share: Family<TenantLabels, Share>,
    queue_depth: Family<QueueLabels, Gauge>,
    guest_cpu: Family<TenantLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("connector");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Runs by tenant, mode and outcome", runs.clone());
        let records = Family::<RecordLabels, Counter>::default();
        registry.register("records", "Records by tenant, kind and outcome", records.clone());
        let api_calls = Family::<SystemLabels, Counter>::default();
        registry.register("api_calls", "API calls by tenant and system (netsuite, salesforce)", api_calls.clone());
        // 0.1 s to about 27 min.
        let duration = Family::<ModeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.1, 2.0, 15))) as fn() -> Histogram,
        );
        registry.register("run_duration_seconds", "Run wall time by tenant and mode", duration.clone());
        let api_share = Family::<TenantLabels, Share>::default();
        registry.register(
            "salesforce_api_usage_ratio",
            "The org's daily API usage over its limit, as of the tenant's last run",
            api_share.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Writes waiting: failed_writes, failed_writebacks, deferred (children waiting for their parent), change_events (for the next run to apply first)",
            queue_depth.clone(),
        );
        let guest_cpu = Family::<TenantLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "guest_cpu_seconds",
            "Time the tenant's component spent running its own code (what max_cpu_ms caps per run)",
            guest_cpu.clone(),
        );
        Metrics { registry, runs, records, api_calls, duration, api_share, queue_depth, guest_cpu }
    })
}

/// Counts a finished run.
pub fn observe(report: &RunReport) {
    let m = metrics();
    let tenant = report.tenant.clone();
    let outcome = report.outcome();
    let labels = RunLabels { tenant: tenant.clone(), mode: report.mode.into(), outcome: outcome.into() };
    m.runs.get_or_create(&labels).inc();
    for (kind, c) in &report.objects {
        let outcomes = [
            ("read", c.read),
            ("created", c.created),
            ("updated", c.updated),
            ("unchanged", c.unchanged),
            ("deferred", c.deferred),
            ("failed", c.failed),
            ("deleted", c.deleted),
            // Of the outcomes, those from a stopped run's Bulk jobs.
            ("resumed", c.resumed),
            // Salesforce edits written to NetSuite.
            ("written_back", c.written_back),
        ];
        for (outcome, n) in outcomes.into_iter().filter(|(_, n)| *n > 0) {
            let labels = RecordLabels { tenant: tenant.clone(), kind: (*kind).into(), outcome: outcome.into() };
            m.records.get_or_create(&labels).inc_by(u64::from(n));
        }
    }
    for (system, n) in [("netsuite", report.api_calls.netsuite), ("salesforce", report.api_calls.salesforce)] {
        m.api_calls.get_or_create(&SystemLabels { tenant: tenant.clone(), system: system.into() }).inc_by(u64::from(n));
    }
    m.guest_cpu.get_or_create(&TenantLabels { tenant: tenant.clone() }).inc_by(report.guest_cpu_ms as f64 / 1000.0);
    let mode = ModeLabels { tenant: tenant.clone(), mode: report.mode.into() };
    m.duration.get_or_create(&mode).observe(report.duration_ms as f64 / 1000.0);
    if let Some(usage) = report.salesforce_api_usage.filter(|u| u.limit > 0) {
        m.api_share.get_or_create(&TenantLabels { tenant }).set(usage.used as f64 / usage.limit as f64);
    }
}

/// The text exposition (OpenMetrics) with the tenants' queue depths read now.
pub fn render(tenants: &[Arc<Tenant>]) -> String {
    let m = metrics();
    let now = time::OffsetDateTime::now_utc();
    // Read afresh for the tenants hosted now: a removed one's go.
    m.queue_depth.clear();
    for tenant in tenants {
        let name = &tenant.config.tenant;
        let status = tenant.database.connect().and_then(|conn| tenant_status(&conn, name, None, now));
        let Ok(status) = status else { continue };
        // Status lists the kinds with something waiting; the others are 0.
        for kind in ["customer", "contact", "vendor"] {
            let w = status.waiting.iter().find(|w| w.kind == kind);
            let depths = [
                ("failed_writes", w.map_or(0, |w| w.failed_writes)),
                ("failed_writebacks", w.map_or(0, |w| w.failed_writebacks)),
                ("deferred", w.map_or(0, |w| w.deferred)),
                ("change_events", w.map_or(0, |w| w.change_events)),
            ];
            for (queue, n) in depths {
                let labels = QueueLabels { tenant: name.clone(), kind: kind.into(), queue: queue.into() };
                m.queue_depth.get_or_create(&labels).set(n as i64);
            }
        }
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &m.registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{ApiCalls, ObjectCounts, SalesforceApiUsage};
    use std::collections::BTreeMap;

    #[test]
    fn a_run_is_counted_by_tenant_mode_outcome_and_kind() {
        let report = RunReport {
            run_id: "r1".into(),
            tenant: "metrics-unit".into(),
            mode: "incremental",
            status: "succeeded",
            error: None,
            duration_ms: 1500,
            objects: BTreeMap::from([("customer", ObjectCounts { read: 10, created: 4, ..Default::default() })]),
            api_calls: ApiCalls { netsuite: 3, salesforce: 2 },
            guest_peak_memory_bytes: 0,
            instantiation_micros: 0,
            guest_cpu_ms: 0,
            salesforce_api_usage: Some(SalesforceApiUsage { used: 250, limit: 1000 }),
            plan: vec![],
        };
        observe(&report);
        observe(&report);
        let busy = RunReport {
            status: "failed",
            error: Some("busy: run run-x holds this tenant's lease until 10:05:00Z; this run did nothing".into()),
            objects: BTreeMap::new(),
            api_calls: ApiCalls { netsuite: 0, salesforce: 0 },
            duration_ms: 100_000,
            salesforce_api_usage: None,
            ..report.clone()
        };
        observe(&busy);
        // Cut off half-way by another run: it did work, and failed.
        let took_over = RunReport {
            error: Some(
                "busy: run run-w took over this tenant's lease after this run's expired; this run stopped".into(),
            ),
            ..busy.clone()
        };
        observe(&took_over);
        let text = render(&[]);
        for line in [
            r#"connector_runs_total{tenant="metrics-unit",mode="incremental",outcome="succeeded"} 2"#,
            r#"connector_runs_total{tenant="metrics-unit",mode="incremental",outcome="busy"} 1"#,
            r#"connector_runs_total{tenant="metrics-unit",mode="incremental",outcome="failed"} 1"#,
            r#"connector_records_total{tenant="metrics-unit",kind="customer",outcome="created"} 8"#,
            r#"connector_api_calls_total{tenant="metrics-unit",system="netsuite"} 6"#,
            r#"connector_run_duration_seconds_bucket{le="1.6",tenant="metrics-unit",mode="incremental"} 2"#,
            r#"connector_salesforce_api_usage_ratio{tenant="metrics-unit"} 0.25"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn queue_depths_are_those_of_the_tenants_hosted_now() {
        let labels = QueueLabels { tenant: "removed-tenant".into(), kind: "customer".into(), queue: "deferred".into() };
        metrics().queue_depth.get_or_create(&labels).set(3);
        let text = render(&[]);
        assert!(!text.contains("removed-tenant"), "{text}");
    }
}
