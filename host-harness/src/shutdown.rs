//! How the process ends on SIGINT or SIGTERM: runs under way reach their
//! next checkpoint first, unless a second signal or the grace period says
//! otherwise.

use crate::scheduler::{Tenant, serve_schedule};
use std::sync::Arc;

/// `on_signal` for a fixed set of tenants that has nothing else to stop.
pub async fn on_signal_for(tenants: Vec<Arc<Tenant>>, serving: bool) {
    on_signal(move || tenants.clone(), serving, || {}).await
}

/// How long runs get to reach their next checkpoint after SIGINT or SIGTERM.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// On SIGINT or SIGTERM: no new run starts (`stop_starting`), the runs in
/// progress end at their next checkpoint (each page recorded is one) with
/// their cursor kept; a second signal, or runs still going after
/// SHUTDOWN_GRACE, end them at once as `stopped` in the run log (the next
/// run resumes from their last checkpoint). `serving`: the process then
/// exits, a success unless a run was cut short; otherwise the command ends
/// as its run did.
pub async fn on_signal(tenants: impl Fn() -> Vec<Arc<Tenant>>, serving: bool, stop_starting: impl FnOnce()) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        // Signals keep their default action: the next run marks the run crashed.
        return;
    };
    let (name, code) = tokio::select! {
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    };
    stop_starting();
    for tenant in tenants() {
        tenant.request_stop(&format!("interrupted by {name}"));
    }
    let under_way = || tenants().iter().any(|t| t.running() > 0);
    if under_way() {
        let notice = format!(
            "{name}: the runs under way end at their next checkpoint (up to {} s); send it again to stop them now",
            SHUTDOWN_GRACE.as_secs()
        );
        say(serving, false, &notice);
    }
    let settled = async {
        while under_way() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let graceful = tokio::select! {
        biased;
        _ = int.recv() => false,
        _ = term.recv() => false,
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => false,
        _ = settled => true,
    };
    if graceful && !serving {
        // The command prints its run's report (status `stopped`) and ends.
        return;
    }
    let mut cut_short = false;
    for tenant in tenants() {
        if serving {
            // Nothing runs the tenant now: `connector status` says so.
            let cleared = tenant.database.connect().and_then(|c| serve_schedule::clear(&c, &tenant.config.tenant));
            if let Err(e) = cleared {
                tracing::warn!("the next scheduled run stays in serve_schedule: {e:#}");
            }
        }
        match tenant.interrupted(name) {
            Ok(runs) => {
                for run in &runs {
                    let line =
                        format!("run {run} stopped: interrupted by {name}; the next run resumes where it stopped");
                    say(serving, true, &line);
                }
                cut_short |= !runs.is_empty();
            }
            Err(e) => {
                say(serving, true, &format!("interrupted by {name}; the run log could not record it: {e:#}"));
                cut_short = true;
            }
        }
    }
    std::process::exit(if serving && !cut_short { 0 } else { code });
}

/// A shutdown notice: `serve` logs it (one JSON object per line under
/// `--log-format json`), a command prints it on standard error.
fn say(serving: bool, error: bool, line: &str) {
    match (serving, error) {
        (true, true) => tracing::error!("{line}"),
        (true, false) => tracing::warn!("{line}"),
        (false, true) => crate::errln!("error: {line}"),
        (false, false) => crate::errln!("{line}"),
    }
}
