//! When `connector serve` runs a tenant's next scheduled sync: one row per
//! tenant in `serve_schedule`, written by the serving process before it
//! waits, and removed when it stops on a signal. `connector status` reads it
//! and asks whether the process that wrote it still runs.

use super::process::{Liveness, LocalProcess};
use crate::store::now_text;
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The next scheduled run of a tenant, as `serve` promised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextRun {
    /// RFC 3339, UTC.
    pub at: String,
    pub every_secs: u64,
    /// The serving process, when /proc could name it.
    pub pid: Option<u32>,
    /// Whether that process still runs: `Ended` means nothing will run it.
    pub serving: Liveness,
}

/// Runs `tenant`'s incremental sync now and then every `every` (a run that
/// outlasts the interval is followed at once by the next, never by a burst
/// of missed ones), noting each next run in `serve_schedule` before waiting.
/// Returns only on a host fault; a signal ends the process (see `clear`).
pub async fn run_every(
    tenant: &super::Tenant,
    runtime: &crate::host::Runtime,
    every: std::time::Duration,
    mut reported: impl FnMut(&super::RunReport) -> Result<()>,
) -> Result<()> {
    let conn = tenant.database.connect()?;
    let name = &tenant.config.tenant;
    let mut due = tokio::time::Instant::now();
    loop {
        let wait = due.saturating_duration_since(tokio::time::Instant::now());
        // Status would show a stale time; the runs themselves go on.
        if let Err(e) = record(&conn, name, OffsetDateTime::now_utc() + wait, every.as_secs()) {
            tracing::warn!(tenant = %name, "{e:#}");
        }
        tokio::time::sleep_until(due).await;
        if tenant.stopping() {
            // The process is shutting down: its signal handler ends it.
            return std::future::pending().await;
        }
        // After an events run of this process under way, if any.
        let stopping = || tenant.stopping();
        let Some(report) = tenant.sync_when_free(runtime, crate::host::SyncMode::Incremental, false, &stopping).await?
        else {
            return std::future::pending().await;
        };
        reported(&report)?;
        due = (due + every).max(tokio::time::Instant::now());
    }
}

/// `at` as stored: RFC 3339 to the second (as `status` shows it).
fn stamp(at: OffsetDateTime) -> Result<String> {
    Ok(at.replace_nanosecond(0)?.format(&Rfc3339)?)
}

/// Notes that this process runs `tenant`'s next sync at `at`.
pub fn record(conn: &Connection, tenant: &str, at: OffsetDateTime, every_secs: u64) -> Result<()> {
    let me = LocalProcess::current();
    conn.execute(
        "INSERT OR REPLACE INTO serve_schedule
             (tenant, next_run_at, every_secs, pid, boot_id, pid_ns, started, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            tenant,
            stamp(at)?,
            every_secs as i64,
            me.as_ref().map(|p| p.pid),
            me.as_ref().map(|p| p.boot_id.clone()),
            me.as_ref().map(|p| p.pid_ns.clone()),
            me.as_ref().map(|p| p.started as i64),
            now_text()
        ],
    )
    .with_context(|| format!("recording the next scheduled run of tenant `{tenant}`"))?;
    Ok(())
}

/// Forgets `tenant`'s schedule if this process wrote it (`serve` stopping).
pub fn clear(conn: &Connection, tenant: &str) -> Result<()> {
    match LocalProcess::current() {
        Some(me) => conn.execute(
            "DELETE FROM serve_schedule WHERE tenant = ?1 AND pid = ?2 AND boot_id = ?3 AND pid_ns = ?4
                 AND started = ?5",
            params![tenant, me.pid, me.boot_id, me.pid_ns, me.started as i64],
        )?,
        None => conn.execute("DELETE FROM serve_schedule WHERE tenant = ?1 AND pid IS NULL", params![tenant])?,
    };
    Ok(())
}

/// Forgets `tenant`'s schedule if it still names the run noted for `at`: a
/// schedule loop of a removed tenant ends after its run, and the tenant may
/// be back by then, its new loop's next run noted.
pub fn clear_noted(conn: &Connection, tenant: &str, at: OffsetDateTime) -> Result<()> {
    conn.execute("DELETE FROM serve_schedule WHERE tenant = ?1 AND next_run_at = ?2", params![tenant, stamp(at)?])?;
    Ok(())
}

/// Takes `tenant`'s schedule for this process (its next run noted as now,
/// returned), refusing while another live `serve` process has it: both would
/// run its schedule, and the first to stop would clear the other's next run
/// from `status`. Checked and noted in one write transaction, so two serves
/// started at once cannot both pass.
pub fn claim(conn: &Connection, tenant: &str, every_secs: u64) -> Result<OffsetDateTime> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    if let Some(next) = next_run(&tx, tenant)? {
        let me = LocalProcess::current().map(|p| p.pid);
        if let (Liveness::Running, Some(pid)) = (next.serving, next.pid)
            && Some(pid) != me
        {
            anyhow::bail!(
                "tenant `{tenant}` is already served by `connector serve` (pid {pid}): stop that process first (one \
                 serve per database; several tenants go in one `serve --tenants`)"
            );
        }
    }
    let now = OffsetDateTime::now_utc();
    record(&tx, tenant, now, every_secs)?;
    tx.commit().with_context(|| format!("noting the schedule of tenant `{tenant}`"))?;
    Ok(now)
}

/// `tenant`'s next scheduled run; None when no `serve` ever scheduled one
/// (or the last one stopped cleanly).
pub fn next_run(conn: &Connection, tenant: &str) -> Result<Option<NextRun>> {
    let row = conn
        .query_row(
            "SELECT next_run_at, every_secs, pid, boot_id, pid_ns, started FROM serve_schedule WHERE tenant = ?1",
            params![tenant],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<u32>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(at, every, pid, boot_id, pid_ns, started)| {
        let serving = match (pid, boot_id, pid_ns, started) {
            (Some(pid), Some(boot_id), Some(pid_ns), Some(started)) => {
                LocalProcess { pid, boot_id, pid_ns, started: started as u64 }.liveness()
            }
            _ => Liveness::Unknown,
        };
        NextRun { at, every_secs: every.max(0) as u64, pid, serving }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::Database::open(&dir.path().join("connector.db")).unwrap().connect().unwrap();
        (dir, conn)
    }

    #[test]
    fn a_schedule_is_read_back_with_its_live_process_and_cleared_by_it() {
        let (_dir, conn) = database();
        assert_eq!(next_run(&conn, "acme").unwrap(), None);
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        record(&conn, "acme", at, 900).unwrap();
        let next = next_run(&conn, "acme").unwrap().unwrap();
        assert_eq!((next.at.as_str(), next.every_secs), ("2027-01-15T08:00:00Z", 900));
        assert_eq!(next.pid, Some(std::process::id()));
        assert_eq!(next.serving, Liveness::Running);
        assert_eq!(next_run(&conn, "other").unwrap(), None, "per tenant");
        clear(&conn, "acme").unwrap();
        assert_eq!(next_run(&conn, "acme").unwrap(), None);
    }

    #[test]
    fn a_schedule_is_claimed_by_one_live_process_only() {
        let (dir, conn) = database();
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = LocalProcess::current().unwrap();
        let other_started = LocalProcess::of(other.id()).unwrap().started;
        conn.execute(
            "INSERT INTO serve_schedule (tenant, next_run_at, every_secs, pid, boot_id, pid_ns, started, updated_at)
             VALUES ('acme', '2027-01-15T08:00:00Z', 60, ?1, ?2, ?3, ?4, 'then')",
            params![other.id(), me.boot_id, me.pid_ns, other_started as i64],
        )
        .unwrap();
        let refused = claim(&conn, "acme", 60).unwrap_err().to_string();
        assert!(refused.contains(&format!("already served by `connector serve` (pid {})", other.id())), "{refused}");
        assert_eq!(next_run(&conn, "acme").unwrap().unwrap().pid, Some(other.id()), "left as it was");
        // A competitor taking the schedule while this claim waits for the
        // write lock: checked under the lock, the claim sees it and refuses
        // (checked before taking it, it would have found none).
        let competitor = crate::store::Database::open(&dir.path().join("connector.db")).unwrap().connect().unwrap();
        competitor.execute_batch("BEGIN IMMEDIATE").unwrap();
        competitor
            .execute(
                "INSERT INTO serve_schedule (tenant, next_run_at, every_secs, pid, boot_id, pid_ns, started, updated_at)
                 VALUES ('race', '2027-01-15T08:00:00Z', 60, ?1, ?2, ?3, ?4, 'then')",
                params![other.id(), me.boot_id, me.pid_ns, other_started as i64],
            )
            .unwrap();
        let committer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            competitor.execute_batch("COMMIT").unwrap();
        });
        let refused = claim(&conn, "race", 60).unwrap_err().to_string();
        committer.join().unwrap();
        assert!(refused.contains("already served"), "{refused}");
        other.kill().unwrap();
        other.wait().unwrap();
        let at = claim(&conn, "acme", 60).unwrap();
        let next = next_run(&conn, "acme").unwrap().unwrap();
        assert_eq!((next.pid, next.serving), (Some(std::process::id()), Liveness::Running));
        assert_eq!(next.at, stamp(at).unwrap());
        claim(&conn, "acme", 60).expect("its own claim is taken again");
    }

    #[test]
    fn a_schedule_left_by_an_ended_process_says_so() {
        let (_dir, conn) = database();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_pid = child.id();
        child.wait().unwrap();
        let me = LocalProcess::current().unwrap();
        conn.execute(
            "INSERT INTO serve_schedule (tenant, next_run_at, every_secs, pid, boot_id, pid_ns, started, updated_at)
             VALUES ('acme', '2027-01-15T08:00:00Z', 60, ?1, ?2, ?3, 1, 'then')",
            params![child_pid, me.boot_id, me.pid_ns],
        )
        .unwrap();
        assert_eq!(next_run(&conn, "acme").unwrap().unwrap().serving, Liveness::Ended);
        clear(&conn, "acme").unwrap();
        assert!(next_run(&conn, "acme").unwrap().is_some(), "another process's schedule stays");
    }
}
