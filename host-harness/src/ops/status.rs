//! `connector status`: what an operator asks first, read from the database
//! alone (no component, no network): each tenant's last run, its next
//! scheduled run, how far each cursor has come and when it last moved, the
//! writes waiting (failed, and children deferred until their parent is in
//! Salesforce), and the share of the org's daily API allocation in use.
//! Values the component wrote are read with the component's own types and
//! key names.

use crate::scheduler::serve_schedule::{self, NextRun};
use crate::scheduler::{ApiCalls, Liveness, ObjectCounts, StoredRunReport};
use crate::store::kv::{QUEUES_BUCKET, STATE_BUCKET};
use anyhow::{Context, Result};
use netsuite_salesforce::model::RecordKind;
use netsuite_salesforce::sync::queues::{self, Queue};
use netsuite_salesforce::sync::state::{self, StoredCursor};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub tenant: String,
    /// Runs the run log says are under way.
    pub running: Vec<RunningRun>,
    /// The last run that ended (dry runs, and attempts refused because
    /// another run held the lease, aside: those ran nothing).
    pub last_run: Option<LastRun>,
    /// When the last successful run ended.
    pub last_success_at: Option<String>,
    pub next_run: NextRunStatus,
    pub cursors: Vec<CursorStatus>,
    /// Per record kind, kinds with nothing waiting left out.
    pub waiting: Vec<Waiting>,
    pub salesforce_api: Option<ApiShare>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningRun {
    pub run_id: String,
    pub mode: String,
    pub started_at: String,
    /// Set when the process that ran it is known to have ended (killed, or
    /// the machine lost power): the run log still says running until the
    /// next run marks it crashed and resumes its work.
    pub ended_process_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub mode: String,
    /// succeeded, stopped, failed or crashed.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// Per record kind.
    pub objects: BTreeMap<String, ObjectCounts>,
    pub api_calls: Option<ApiCalls>,
    pub error: Option<String>,
    /// A trapped run's whole account (wasmtime's backtrace, the component's
    /// standard error); the CLI shows it with `--verbose`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextRunStatus {
    /// Whether a live `connector serve` will run it.
    pub scheduled: bool,
    /// RFC 3339, UTC.
    pub at: Option<String>,
    /// Seconds from now (negative: overdue, e.g. while a run is under way).
    pub in_secs: Option<i64>,
    pub every_secs: Option<u64>,
    pub serve_pid: Option<u32>,
    /// One line for a person.
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CursorStatus {
    pub kind: &'static str,
    /// `netsuite-changes`, `netsuite-deletions` or `salesforce-changes`.
    pub stream: &'static str,
    /// Where reading continues: NetSuite's lastmodifieddate and id (or,
    /// while a first sync reads by id, the last id recorded), or
    /// Salesforce's SystemModstamp.
    pub position: String,
    /// When it last moved (RFC 3339, UTC).
    pub moved_at: Option<String>,
    /// Seconds since then.
    pub age_secs: Option<i64>,
    /// After a first sync: when the first run to start after it re-reads the
    /// overlap window before the hand-over (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_reread_after: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Waiting {
    pub kind: &'static str,
    /// NetSuite → Salesforce writes Salesforce refused (`connector replay` sends them again).
    pub failed_writes: u64,
    /// Salesforce → NetSuite writes NetSuite refused.
    pub failed_writebacks: u64,
    /// Children held back until their parent is in Salesforce.
    pub deferred: u64,
    /// Change events the next run applies first: webhook events not applied
    /// yet, deletions Salesforce refused (queued again until they land), and
    /// children to write again after their parent's deletion.
    pub change_events: u64,
    pub oldest_failed_at: Option<String>,
    pub oldest_deferred_at: Option<String>,
    pub oldest_change_event_at: Option<String>,
    /// Bulk API 2.0 jobs a stopped run left with Salesforce, and the pages
    /// of records it parked for them: the next run waits for the jobs and
    /// records their outcomes (records no job took are read again).
    pub bulk_jobs: u64,
    pub parked_pages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiShare {
    pub used: u64,
    pub limit: u64,
    /// used / limit, 0 to 1.
    pub share: f64,
    /// `salesforce_max_api_share`: runs stop before this share.
    pub ceiling: Option<f64>,
    /// The run whose last Salesforce response said so, and when it ended.
    pub run_id: String,
    pub as_of: Option<String>,
}

/// Every tenant the database knows of, by name.
pub fn tenants(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT tenant FROM runs UNION SELECT tenant FROM kv UNION SELECT tenant FROM serve_schedule ORDER BY 1",
    )?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// `tenant`'s status at `now`; `ceiling` is its `salesforce_max_api_share`
/// when known (from its config).
pub fn tenant_status(
    conn: &Connection,
    tenant: &str,
    ceiling: Option<f64>,
    now: OffsetDateTime,
) -> Result<TenantStatus> {
    Ok(TenantStatus {
        tenant: tenant.to_string(),
        running: running(conn, tenant)?,
        last_run: last_run(conn, tenant)?,
        last_success_at: conn
            .query_row(
                "SELECT finished_at FROM runs WHERE tenant = ?1 AND status = 'succeeded' AND mode NOT LIKE 'dry-run%'
                 ORDER BY rowid DESC LIMIT 1",
                params![tenant],
                |r| r.get(0),
            )
            .optional()?,
        next_run: next_run(serve_schedule::next_run(conn, tenant)?, now),
        cursors: cursors(conn, tenant, now)?,
        waiting: waiting(conn, tenant)?,
        salesforce_api: api_share(conn, tenant, ceiling)?,
    })
}

fn running(conn: &Connection, tenant: &str) -> Result<Vec<RunningRun>> {
    let mut stmt = conn
        .prepare("SELECT run_id, mode, started_at FROM runs WHERE tenant = ?1 AND status = 'running' ORDER BY rowid")?;
    let ended = crate::scheduler::recovery::ended_processes(conn, tenant)?;
    let rows = stmt.query_map(params![tenant], |r| {
        let run_id: String = r.get(0)?;
        let ended_process_pid = ended.get(&run_id).copied();
        Ok(RunningRun { run_id, mode: r.get(1)?, started_at: r.get(2)?, ended_process_pid })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn last_run(conn: &Connection, tenant: &str) -> Result<Option<LastRun>> {
    let row = conn
        .query_row(
            "SELECT run_id, mode, status, started_at, finished_at, report, error, detail FROM runs
             WHERE tenant = ?1 AND status <> 'running' AND mode NOT LIKE 'dry-run%'
               AND NOT (status = 'failed' AND error LIKE 'busy:%' || ?2 || '%')
             ORDER BY rowid DESC LIMIT 1",
            params![tenant, netsuite_salesforce::sync::lease::RAN_NOTHING],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((run_id, mode, status, started_at, finished_at, report, error, detail)) = row else { return Ok(None) };
    let report = match report {
        Some(json) => StoredRunReport::parse(&json).with_context(|| format!("run {run_id}"))?,
        None => StoredRunReport::default(),
    };
    // A crashed run's end is when the next run noticed it, which says
    // nothing of how long it ran: its length is unknown.
    let duration_ms = report.duration_ms.filter(|_| status != "crashed").or_else(|| {
        if status == "crashed" {
            return None;
        }
        let (start, end) = (parse_time(&started_at)?, parse_time(finished_at.as_deref()?)?);
        u64::try_from((end - start).whole_milliseconds()).ok()
    });
    Ok(Some(LastRun {
        run_id,
        mode,
        status,
        started_at,
        finished_at,
        duration_ms,
        objects: report.objects,
        api_calls: report.api_calls,
        error,
        detail,
    }))
}

fn next_run(schedule: Option<NextRun>, now: OffsetDateTime) -> NextRunStatus {
    let Some(next) = schedule else {
        return NextRunStatus {
            scheduled: false,
            at: None,
            in_secs: None,
            every_secs: None,
            serve_pid: None,
            note: "not scheduled: run `connector serve`".into(),
        };
    };
    let in_secs = parse_time(&next.at).map(|at| (at - now).whole_seconds());
    let pid = next.pid.map_or("pid unknown".to_string(), |p| format!("pid {p}"));
    let (scheduled, note) = match next.serving {
        Liveness::Ended => (
            false,
            format!(
                "not scheduled: the `connector serve` ({pid}) that planned a run at {} has ended; run `connector serve`",
                next.at
            ),
        ),
        Liveness::Running => (true, format!("by `connector serve` ({pid}), {}", cadence(next.every_secs))),
        Liveness::Unknown => (
            true,
            format!(
                "by `connector serve` ({pid}, on a machine or in a container this one cannot see), {}",
                cadence(next.every_secs)
            ),
        ),
    };
    NextRunStatus {
        scheduled,
        at: Some(next.at),
        in_secs,
        every_secs: Some(next.every_secs),
        serve_pid: next.pid,
        note,
    }
}

/// A state-bucket value and when the host stored it.
fn state_value(conn: &Connection, tenant: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
    Ok(conn
        .prepare_cached("SELECT value, updated_at FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?
        .query_row(params![tenant, STATE_BUCKET, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

fn cursors(conn: &Connection, tenant: &str, now: OffsetDateTime) -> Result<Vec<CursorStatus>> {
    let mut out = Vec::new();
    for kind in RecordKind::ALL {
        for (stream, key) in
            [("netsuite-changes", state::cursor_key(kind)), ("netsuite-deletions", state::deleted_cursor_key(kind))]
        {
            let Some((bytes, updated_at)) = state_value(conn, tenant, &key)? else { continue };
            // As the component reads it (`State::cursor`).
            let stored: StoredCursor = serde_json::from_slice(&bytes).with_context(|| {
                format!("tenant `{tenant}`: the stored cursor `{key}` is unreadable; a full sync rebuilds it")
            })?;
            // Cursors stored before `moved_at` was kept: when the host wrote them.
            let moved_at = match stored.moved_at {
                0 => parse_time(&updated_at),
                secs => OffsetDateTime::from_unix_timestamp(secs).ok(),
            };
            out.push(CursorStatus {
                kind: kind.as_str(),
                stream,
                position: match &stored.scan {
                    // A kind read by internal id, in ranges side by side: a
                    // first sync, or every record read again.
                    Some(scan) => {
                        let what = match (&scan.every, scan.live) {
                            (None, _) => "first read by id",
                            (Some(_), false) => "every record read again by id",
                            (Some(_), true) => "every record read again by id and compared live",
                        };
                        match scan.open.len() {
                            0 | 1 => format!("{what}, after #{}", scan.after),
                            open => format!("{what}, after #{}, {open} ranges still open", scan.after),
                        }
                    }
                    None => format!("{} #{}", stored.cursor.last_modified, stored.cursor.id),
                },
                moved_at: moved_at.and_then(|t| t.format(&Rfc3339).ok()),
                age_secs: moved_at.map(|t| (now - t).whole_seconds()),
                window_reread_after: stored
                    .recheck
                    .and_then(|r| OffsetDateTime::from_unix_timestamp(r.due).ok())
                    .and_then(|t| t.format(&Rfc3339).ok()),
            });
        }
        let key = state::salesforce_cursor_key(kind);
        if let Some((bytes, updated_at)) = state_value(conn, tenant, &key)? {
            let moved_at = parse_time(&updated_at);
            out.push(CursorStatus {
                kind: kind.as_str(),
                stream: "salesforce-changes",
                position: match state::salesforce_cursor_parts(&String::from_utf8_lossy(&bytes)) {
                    (modstamp, Some(org), _) => format!("{modstamp} in org {org}"),
                    (modstamp, None, _) => modstamp.to_string(),
                },
                moved_at: moved_at.and_then(|t| t.format(&Rfc3339).ok()),
                age_secs: moved_at.map(|t| (now - t).whole_seconds()),
                window_reread_after: None,
            });
        }
    }
    Ok(out)
}

/// How many keys of the queues bucket start with `prefix`, and the oldest's
/// time (to the second): when it was queued, or for a failed write when the
/// record began failing.
fn queued(conn: &Connection, tenant: &str, prefix: &str) -> Result<(u64, Option<String>)> {
    // Keys in [prefix, prefix with its last byte raised): the primary key's range.
    let mut end = prefix.to_string();
    let last = end.pop().context("an empty queue prefix")?;
    end.push(char::from_u32(last as u32 + 1).context("a queue prefix ending in the last character")?);
    Ok(conn
        .prepare_cached(
            // A failed write queued again keeps when it began failing.
            "SELECT COUNT(*), strftime('%Y-%m-%dT%H:%M:%SZ', MIN(COALESCE(julianday(CASE WHEN
             json_valid(CAST(value AS TEXT)) THEN json_extract(CAST(value AS TEXT), '$.failing_since') END,
             'unixepoch'), julianday(updated_at)))) FROM kv
             WHERE tenant = ?1 AND bucket = ?2 AND key >= ?3 AND key < ?4",
        )?
        .query_row(params![tenant, QUEUES_BUCKET, prefix, end], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?)
}

/// Whether change events wait in `tenant`'s queue (accepted, not yet applied).
pub fn change_events_waiting(conn: &Connection, tenant: &str) -> Result<bool> {
    for kind in RecordKind::ALL {
        if queued(conn, tenant, &queues::event_key(kind, ""))?.0 > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn waiting(conn: &Connection, tenant: &str) -> Result<Vec<Waiting>> {
    let mut out = Vec::new();
    for kind in RecordKind::ALL {
        let (failed_writes, oldest_failed_at) = queued(conn, tenant, &queues::key(Queue::Failed, kind, ""))?;
        let (failed_writebacks, oldest_writeback) = queued(conn, tenant, &queues::writeback_key(kind, ""))?;
        let (deferred, oldest_deferred_at) = queued(conn, tenant, &queues::key(Queue::Deferred, kind, ""))?;
        let (change_events, oldest_change_event_at) = queued(conn, tenant, &queues::event_key(kind, ""))?;
        let (bulk_jobs, _) = queued(conn, tenant, &queues::bulk_job_prefix(kind))?;
        let (parked_pages, _) = queued(conn, tenant, &queues::parked_prefix(kind))?;
        if failed_writes + failed_writebacks + deferred + change_events + bulk_jobs + parked_pages == 0 {
            continue;
        }
        out.push(Waiting {
            kind: kind.as_str(),
            failed_writes,
            failed_writebacks,
            deferred,
            // Both are the same second-resolution text: the smaller is the older.
            oldest_failed_at: oldest_failed_at.into_iter().chain(oldest_writeback).min(),
            oldest_deferred_at,
            change_events,
            oldest_change_event_at,
            bulk_jobs,
            parked_pages,
        });
    }
    Ok(out)
}

fn api_share(conn: &Connection, tenant: &str, ceiling: Option<f64>) -> Result<Option<ApiShare>> {
    let row = conn
        .query_row(
            "SELECT run_id, finished_at, report FROM runs
             WHERE tenant = ?1 AND json_extract(report, '$.salesforce_api_usage') IS NOT NULL
             ORDER BY rowid DESC LIMIT 1",
            params![tenant],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?)),
        )
        .optional()?;
    let Some((run_id, as_of, report)) = row else { return Ok(None) };
    let Some(usage) = StoredRunReport::parse(&report).with_context(|| format!("run {run_id}"))?.salesforce_api_usage
    else {
        return Ok(None);
    };
    let share = if usage.limit == 0 { 0.0 } else { usage.used as f64 / usage.limit as f64 };
    Ok(Some(ApiShare { used: usage.used, limit: usage.limit, share, ceiling, run_id, as_of }))
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `95 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn span(secs: i64) -> String {
    let s = secs.unsigned_abs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The status as text for a person.
pub fn text(s: &TenantStatus) -> String {
    let mut out = format!("tenant {}\n", s.tenant);
    for r in &s.running {
        let _ = writeln!(out, "  running     {} ({}) since {}", r.run_id, r.mode, r.started_at);
        if let Some(pid) = r.ended_process_pid {
            let _ = writeln!(
                out,
                "              but its process (pid {pid}) has ended: it was killed or crashed; the next run marks it \
                 crashed and resumes its work"
            );
        }
    }
    match &s.last_run {
        None => out.push_str("  last run    none yet\n"),
        Some(r) => {
            let ended = match (r.finished_at.as_deref(), r.status.as_str()) {
                (Some(t), "crashed") => format!(" (noticed at {t}; how long it ran is unknown)"),
                (Some(t), _) => format!(" at {t}"),
                (None, _) => String::new(),
            };
            let took = r.duration_ms.map_or(String::new(), |ms| format!(", took {:.1} s", ms as f64 / 1000.0));
            let _ = writeln!(out, "  last run    {} ({}) {}{ended}{took}", r.run_id, r.mode, r.status);
            for (kind, c) in &r.objects {
                let _ = writeln!(out, "              {kind}: {}", c.text());
            }
            if let Some(calls) = r.api_calls {
                let _ = writeln!(
                    out,
                    "              API calls: NetSuite {}, Salesforce {}",
                    calls.netsuite, calls.salesforce
                );
            }
            if let Some(e) = &r.error {
                let _ = writeln!(out, "              error: {e}");
            }
            if let Some(detail) = &r.detail {
                let _ = writeln!(out, "              in full:");
                for line in detail.lines() {
                    let _ = writeln!(out, "                {line}");
                }
            }
        }
    }
    if let Some(t) = &s.last_success_at
        && s.last_run.as_ref().is_none_or(|r| r.status != "succeeded")
    {
        let _ = writeln!(out, "  last success {t}");
    }
    let n = &s.next_run;
    match (&n.at, n.in_secs, n.scheduled) {
        (Some(at), Some(secs), true) if secs >= 0 => {
            let _ = writeln!(out, "  next run    {at} (in {}) {}", span(secs), n.note);
        }
        (Some(at), Some(secs), true) => {
            let _ = writeln!(out, "  next run    was due {at} ({} ago; a run may be under way) {}", span(secs), n.note);
        }
        _ => {
            let _ = writeln!(out, "  next run    {}", n.note);
        }
    }
    if s.cursors.is_empty() {
        out.push_str("  cursors     none yet (no run has recorded a page)\n");
    }
    for c in &s.cursors {
        let age = c.age_secs.map_or(String::new(), |a| format!(", moved {} ago", span(a)));
        let recheck = c
            .window_reread_after
            .as_ref()
            .map_or(String::new(), |at| format!("; the first run after {at} re-reads the overlap window before it"));
        let _ = writeln!(out, "  cursor      {} {} at {}{age}{recheck}", c.kind, c.stream, c.position);
    }
    if s.waiting.is_empty() {
        out.push_str(
            "  waiting     nothing (no failed writes, no deferred children, no change events, no Bulk API job left)\n",
        );
    }
    for w in &s.waiting {
        let mut parts = Vec::new();
        if w.failed_writes > 0 {
            parts.push(format!("{} failed writes", w.failed_writes));
        }
        if w.failed_writebacks > 0 {
            parts.push(format!("{} failed write-backs", w.failed_writebacks));
        }
        if let Some(t) = &w.oldest_failed_at {
            parts.push(format!("oldest failure {t}"));
        }
        if w.deferred > 0 {
            parts.push(format!("{} deferred until their parent is in Salesforce", w.deferred));
        }
        if let Some(t) = &w.oldest_deferred_at {
            parts.push(format!("oldest deferred {t}"));
        }
        if w.change_events > 0 {
            parts.push(format!(
                "{} change events for the next run to apply first (webhook events, deletions Salesforce refused, \
                 children to write again after their parent's deletion)",
                w.change_events
            ));
        }
        if let Some(t) = &w.oldest_change_event_at {
            parts.push(format!("oldest event {t}"));
        }
        if w.bulk_jobs + w.parked_pages > 0 {
            parts.push(format!(
                "{} Bulk API jobs and {} parked pages of records (a run's under way, or a stopped run's, whose \
                 outcomes the next run waits for and records)",
                w.bulk_jobs, w.parked_pages
            ));
        }
        let _ = writeln!(out, "  waiting     {}: {}", w.kind, parts.join(", "));
    }
    match &s.salesforce_api {
        None => out.push_str("  Salesforce  API usage unknown (no finished run has recorded it yet)\n"),
        Some(a) => {
            let ceiling = a.ceiling.map_or(String::new(), |c| format!(", runs stop at {:.0}%", c * 100.0));
            let as_of = a.as_of.as_deref().map_or(String::new(), |t| format!(" at {t}"));
            let _ = writeln!(
                out,
                "  Salesforce  API usage {}/{} ({:.1}% of the org's daily allocation{ceiling}), as of run {}{as_of}",
                a.used,
                a.limit,
                a.share * 100.0,
                a.run_id
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// How often `serve` runs the tenant: an interval, or 0 for a cron schedule.
fn cadence(every_secs: u64) -> String {
    match every_secs {
        0 => "on its cron schedule".into(),
        n => format!("every {n} s"),
    }
}
