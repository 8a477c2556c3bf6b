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

/// `println!` that hands a closed standard output back as an error instead
/// of panicking, so `connector … | head -1` ends quietly (see main).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `eprintln!` that ignores a standard error it cannot write to (a closed
/// pipe) instead of panicking: the error being reported is the one that
/// matters, and the exit code still says it.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub fn print_report(report: &RunReport, json: bool) -> Result<ExitCode> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(report)?)?;
    } else if did_nothing(report) {
        crate::errln!(
            "error: run {} ({}) {}: {}",
            report.run_id,
            report.mode,
            report.status,
            report.error.as_deref().unwrap_or("no reason given")
        );
    } else {
        crate::outln!("run {} ({}) {} in {} ms", report.run_id, report.mode, report.status, report.duration_ms)?;
        for (kind, c) in &report.objects {
            crate::outln!("  {kind}: {}", c.text())?;
        }
        crate::outln!(
            "  API calls: NetSuite {}, Salesforce {}",
            report.api_calls.netsuite,
            report.api_calls.salesforce
        )?;
        for p in &report.plan {
            // A field left empty on both sides (a create's blanks) says nothing.
            let fields: Vec<String> = p
                .changes
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["old"] != c["new"])
                .map(|c| format!("{}: {} → {}", c["field"].as_str().unwrap_or(""), c["old"], c["new"]))
                .collect();
            let fields = if fields.is_empty() { String::new() } else { format!(" ({})", fields.join("; ")) };
            match p.action.as_str() {
                "unchanged" => crate::outln!("  would leave {} {} unchanged", p.kind, p.netsuite_id)?,
                "fail" => crate::outln!(
                    "  would fail {} {}: {}",
                    p.kind,
                    p.netsuite_id,
                    p.error.as_deref().unwrap_or("no reason given")
                )?,
                action => crate::outln!("  would {action} {} {}{fields}", p.kind, p.netsuite_id)?,
            }
        }
        if let Some(e) = &report.error {
            crate::errln!("error: {e}");
        }
        // Where to look: a count alone does not say which records, nor why.
        let failed: u64 = report.objects.values().map(|c| u64::from(c.failed)).sum();
        if failed > 0 && !report.mode.contains("dry-run") {
            crate::errln!(
                "{failed} {} failed (audited, kept for replay): `connector audit list --config <file> --run {} \
                 --outcome failed` says why; `connector replay --config <file> --run {}` sends them again once fixed",
                if failed == 1 { "record" } else { "records" },
                report.run_id,
                report.run_id
            );
        }
    }
    Ok(exit_code(report))
}

/// 0: the run succeeded and every record it read was written or found in
/// place; 2: it succeeded, but some records failed (audited, kept for
/// replay); 3: it stopped before the end (a signal, the API ceiling: the
/// next run resumes); 4: another run held the tenant and
/// this one did nothing (try again); 1: the run failed. A scheduler can
/// tell each apart.
pub fn exit_code(report: &RunReport) -> ExitCode {
    match report.outcome() {
        "succeeded" if report.objects.values().any(|c| c.failed > 0) => ExitCode::from(2),
        "succeeded" => ExitCode::SUCCESS,
        "stopped" => ExitCode::from(3),
        "busy" => ExitCode::from(4),
        _ => ExitCode::FAILURE,
    }
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
/// `runs`: each finished run is logged (`serve`); other commands print their
/// runs' reports, and log only a run that failed.
pub fn init_logs(json: bool, verbose: bool, runs: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = if verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    // Libraries speak only of errors unless asked (--verbose): a refused
    // connection is the run's one-line error, not also their retry warnings.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(if verbose { tracing::Level::DEBUG } else { tracing::Level::ERROR })
        .with_target("host_harness", level)
        .with_target(crate::serve::RUNS_LOG, if runs || verbose { level } else { tracing::Level::WARN })
        .with_target("connector", level)
        .with_target("simulators", level);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed standard error drops the event; reporting that on
        // standard error would panic.
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match json {
        true => registry.with(layer.json()).try_init(),
        false => registry.with(layer).try_init(),
    };
    // Already installed (serve installs its own first): keep that one.
    drop(installed);
}
