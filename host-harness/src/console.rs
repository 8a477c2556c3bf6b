//! What a person at a terminal sees of a run: its report (text or JSON),
//! the live progress line, and where logs go.

use crate::scheduler::{RunReport, Tenant};
use anyhow::Result;
use std::process::ExitCode;

/// A run that ended having done nothing at all (it could not start, or
/// another held the lease): nothing to count, so the error alone.
pub fn did_nothing(report: &RunReport) -> bool {
    report.status != "succeeded"
        && report.plan.is_empty()
        && report.api_calls.netsuite == 0
        && report.api_calls.salesforce == 0
        && report.objects.values().all(|c| *c == Default::default())
}

pub fn print_report(report: &RunReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else if did_nothing(report) {
        eprintln!(
            "error: run {} ({}) {}: {}",
            report.run_id,
            report.mode,
            report.status,
            report.error.as_deref().unwrap_or("no reason given")
        );
    } else {
        println!("run {} ({}) {} in {} ms", report.run_id, report.mode, report.status, report.duration_ms);
        for (kind, c) in &report.objects {
            println!("  {kind}: {}", c.text());
        }
        println!("  API calls: NetSuite {}, Salesforce {}", report.api_calls.netsuite, report.api_calls.salesforce);
        for p in &report.plan {
            let fields: Vec<String> = p
                .changes
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{}: {} → {}", c["field"].as_str().unwrap_or(""), c["old"], c["new"]))
                .collect();
            println!(
                "  would {} {} {}{}",
                p.action,
                p.kind,
                p.netsuite_id,
                if fields.is_empty() { String::new() } else { format!(" ({})", fields.join("; ")) }
            );
        }
        if let Some(e) = &report.error {
            eprintln!("error: {e}");
        }
    }
    Ok(if report.status == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A spinner on standard error (drawn only when it is a terminal) with the
/// run's records per kind and outcome and its rate, from its audit entries.
pub fn show_progress(tenant: &Tenant) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let progress = tenant.watch_progress();
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed} {wide_msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let (shown, started) = (bar.clone(), std::time::Instant::now());
    let ticker = tokio::spawn(async move {
        loop {
            shown.set_message(progress.line(started.elapsed().as_secs_f64()));
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
    (bar, ticker)
}

/// Logs (tracing events) go to standard error; `serve --log-format json`
/// writes them as JSON lines. Commands' own output stays on standard output.
/// `--verbose` adds the debug events: a trapped run's backtrace among them.
pub fn init_logs(json: bool, verbose: bool) {
    let level = if verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_max_level(level);
    let installed = match json {
        true => logs.json().try_init(),
        false => logs.try_init(),
    };
    // Already installed (serve installs its own first): keep that one.
    drop(installed);
}
