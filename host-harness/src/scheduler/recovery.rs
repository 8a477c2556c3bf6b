//! Runs whose process ended without ending them (kill -9, the OOM killer, a
//! power cut): before a run starts, its tenant's run log marks them
//! `crashed`, and a lease such a run still holds is taken over at once
//! instead of blocking the tenant until it runs out. Only from a process
//! this machine knows has ended: a live one, or one it cannot see (another
//! machine or container sharing the data directory), keeps its lease.

use super::process::{Liveness, LocalProcess};
use crate::store::{KvStore, kv::STATE_BUCKET, now_text};
use anyhow::Result;
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, BTreeSet};

const LEASE_KEY: &str = netsuite_salesforce::sync::lease::LEASE_KEY;

/// Notes that this process runs `run_id` (nothing where /proc cannot say,
/// and then no later run takes anything over from it).
pub fn record(conn: &Connection, tenant: &str, run_id: &str) -> Result<()> {
    let Some(me) = LocalProcess::current() else { return Ok(()) };
    conn.execute(
        "INSERT OR REPLACE INTO run_processes (run_id, tenant, pid, boot_id, pid_ns, started)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![run_id, tenant, me.pid, me.boot_id, me.pid_ns, me.started as i64],
    )?;
    Ok(())
}

/// The run ended here: its process is forgotten, unless the run still
/// holds the lease (it could not give it back), which a later run may then
/// take over once this process is gone.
pub fn finished(kv: &KvStore, run_id: &str) -> Result<()> {
    if lease_holder(kv)?.is_some_and(|(holder, _, _)| holder == run_id) {
        return Ok(());
    }
    kv.connection().execute("DELETE FROM run_processes WHERE run_id = ?1", params![run_id])?;
    Ok(())
}

/// What a starting run found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Runs marked crashed.
    pub crashed: Vec<String>,
    /// The run whose live lease was taken over.
    pub lease_of: Option<String>,
}

/// Marks the tenant's crashed runs and frees a lease whose holder's process
/// has ended. `now` is the clock the component's leases are written in.
pub fn recover(kv: &KvStore, this_run: &str, now: i64) -> Result<Recovered> {
    let conn = kv.connection();
    let mut ended = BTreeMap::new();
    let mut alive = BTreeSet::new();
    for (run, process) in recorded(conn, kv.tenant(), this_run)? {
        match process.liveness() {
            Liveness::Ended => drop(ended.insert(run, process.pid)),
            Liveness::Running => drop(alive.insert(run)),
            Liveness::Unknown => {}
        }
    }
    let mut done = Recovered::default();
    let holder = lease_holder(kv)?;
    if let Some((run, expires_at, value)) = &holder
        && *expires_at > now
        && ended.contains_key(run)
        // Only the value read: a run that took the lease meanwhile keeps it.
        && kv.delete_if(STATE_BUCKET, LEASE_KEY, value)?
    {
        done.lease_of = Some(run.clone());
    }
    let mut running =
        conn.prepare("SELECT run_id FROM runs WHERE tenant = ?1 AND status = 'running' AND run_id <> ?2")?;
    let running = running.query_map(params![kv.tenant(), this_run], |r| r.get::<_, String>(0))?;
    for run in running {
        let run = run?;
        let why = if let Some(pid) = ended.get(&run) {
            format!("its process (pid {pid}) ended before the run did: it was killed or crashed")
        } else if alive.contains(&run) {
            continue;
        } else if let Some((_, expires_at, _)) = holder.as_ref().filter(|(h, at, _)| *h == run && *at <= now) {
            // Its process is not known here (another machine, or /proc
            // cannot tell): its lease ran out without the run giving it back.
            format!(
                "its lease ran out at {} and the run never gave it back: its process was killed or crashed",
                netsuite_salesforce::sync::lease::expiry_text(*expires_at)
            )
        } else {
            continue;
        };
        let message = format!("{why}; noticed by run {this_run}, which resumes its work");
        let marked = conn.execute(
            "UPDATE runs SET status = 'crashed', finished_at = ?1, error = ?2 WHERE run_id = ?3 AND status = 'running'",
            params![now_text(), message, run],
        )?;
        if marked > 0 {
            done.crashed.push(run);
        }
    }
    for run in ended.keys() {
        conn.execute("DELETE FROM run_processes WHERE run_id = ?1", params![run])?;
    }
    Ok(done)
}

/// This process's runs still `running`, now ended as `stopped` with the
/// signal that stopped them. Their lease stays: once this process is gone,
/// the next run takes it over.
pub fn interrupted(conn: &Connection, signal: &str) -> Result<Vec<String>> {
    let Some(me) = LocalProcess::current() else { return Ok(vec![]) };
    let message = format!(
        "interrupted by {signal}; the next run resumes after the last page it recorded (see `connector status`)"
    );
    let mut stmt = conn.prepare(
        "UPDATE runs SET status = 'stopped', finished_at = ?1, error = ?2
         WHERE status = 'running' AND run_id IN (SELECT run_id FROM run_processes
             WHERE pid = ?3 AND boot_id = ?4 AND pid_ns = ?5 AND started = ?6)
         RETURNING run_id",
    )?;
    let runs = stmt
        .query_map(params![now_text(), message, me.pid, me.boot_id, me.pid_ns, me.started as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(runs)
}

/// The tenant's runs whose recorded process has certainly ended, with its
/// pid: read only (`connector status`); the next run marks them crashed.
pub fn ended_processes(conn: &Connection, tenant: &str) -> Result<BTreeMap<String, u32>> {
    let recorded = recorded(conn, tenant, "")?;
    Ok(recorded.into_iter().filter(|(_, p)| p.liveness() == Liveness::Ended).map(|(run, p)| (run, p.pid)).collect())
}

/// The processes recorded for the tenant's other runs.
fn recorded(conn: &Connection, tenant: &str, this_run: &str) -> Result<Vec<(String, LocalProcess)>> {
    let mut stmt = conn.prepare(
        "SELECT run_id, pid, boot_id, pid_ns, started FROM run_processes WHERE tenant = ?1 AND run_id <> ?2",
    )?;
    let rows = stmt.query_map(params![tenant, this_run], |r| {
        Ok((
            r.get(0)?,
            LocalProcess { pid: r.get(1)?, boot_id: r.get(2)?, pid_ns: r.get(3)?, started: r.get::<_, i64>(4)? as u64 },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The lease's holder, expiry and stored value.
fn lease_holder(kv: &KvStore) -> Result<Option<(String, i64, Vec<u8>)>> {
    let Some(value) = kv.get(STATE_BUCKET, LEASE_KEY)? else { return Ok(None) };
    let holder: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
    Ok(match (holder["run_id"].as_str(), holder["expires_at"].as_i64()) {
        (Some(run), Some(at)) => Some((run.to_string(), at, value)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Cipher;
    use crate::store::Database;

    struct Db(std::path::PathBuf, KvStore);
    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn db(name: &str) -> Db {
        let dir = std::env::temp_dir().join(format!("recovery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let database = Database::open(&dir.join("connector.db")).unwrap();
        Db(dir, KvStore::new(database.connect().unwrap(), "acme", Cipher::from_key(&[7; 32])))
    }

    fn running(kv: &KvStore, run: &str, process: Option<&LocalProcess>) {
        kv.connection()
            .execute(
                "INSERT INTO runs (run_id, tenant, started_at, mode, status) VALUES (?1, 'acme', 'then', 'full', 'running')",
                [run],
            )
            .unwrap();
        if let Some(p) = process {
            kv.connection()
                .execute(
                    "INSERT INTO run_processes VALUES (?1, 'acme', ?2, ?3, ?4, ?5)",
                    params![run, p.pid, p.boot_id, p.pid_ns, p.started as i64],
                )
                .unwrap();
        }
    }

    fn hold(kv: &KvStore, run: &str, expires_at: i64) {
        let value = serde_json::json!({ "run_id": run, "nonce": "1", "expires_at": expires_at });
        kv.set(STATE_BUCKET, LEASE_KEY, value.to_string().as_bytes()).unwrap();
    }

    fn status(kv: &KvStore, run: &str) -> String {
        kv.connection().query_row("SELECT status FROM runs WHERE run_id = ?1", [run], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_live_process_keeps_its_lease_and_its_run() {
        let Db(_, kv) = &db("live");
        running(kv, "run-live", LocalProcess::current().as_ref());
        hold(kv, "run-live", 1_000);
        assert_eq!(recover(kv, "run-new", 500).unwrap(), Recovered::default());
        assert_eq!(lease_holder(kv).unwrap().map(|h| h.0), Some("run-live".into()));
        assert_eq!(status(kv, "run-live"), "running");
        // Even with its lease run out: a slow run is not a crashed one.
        assert_eq!(recover(kv, "run-new", 2_000).unwrap(), Recovered::default());
    }

    #[test]
    fn a_process_this_machine_cannot_see_keeps_its_lease_until_it_runs_out() {
        let Db(_, kv) = &db("unseen");
        let elsewhere = LocalProcess { boot_id: "another-boot".into(), ..LocalProcess::current().unwrap() };
        running(kv, "run-elsewhere", Some(&elsewhere));
        running(kv, "run-old-build", None);
        hold(kv, "run-elsewhere", 1_000);
        assert_eq!(recover(kv, "run-new", 500).unwrap(), Recovered::default());
        assert!(lease_holder(kv).unwrap().is_some());
        // Run out without being given back: crashed. A run without a
        // process or a lease of its own is left as it is.
        let found = recover(kv, "run-new", 1_000).unwrap();
        assert_eq!(found.crashed, vec!["run-elsewhere".to_string()]);
        assert_eq!(found.lease_of, None);
        let error: String = kv
            .connection()
            .query_row("SELECT error FROM runs WHERE run_id = 'run-elsewhere'", [], |r| r.get(0))
            .unwrap();
        assert!(error.contains("its lease ran out at") && error.contains("noticed by run run-new"), "{error}");
        assert_eq!(status(kv, "run-old-build"), "running");
    }

    #[test]
    fn an_ended_process_loses_its_lease_only_while_the_lease_is_still_its_own() {
        let Db(_, kv) = &db("ended");
        // A pid beyond any pid_max: certainly no such process.
        let gone = LocalProcess { pid: u32::MAX - 1, ..LocalProcess::current().unwrap() };
        running(kv, "run-killed", Some(&gone));
        hold(kv, "run-killed", 1_000);
        let found = recover(kv, "run-new", 500).unwrap();
        assert_eq!(found, Recovered { crashed: vec!["run-killed".into()], lease_of: Some("run-killed".into()) });
        assert_eq!(lease_holder(kv).unwrap(), None);
        assert_eq!(status(kv, "run-killed"), "crashed");
        let left: i64 = kv.connection().query_row("SELECT COUNT(*) FROM run_processes", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "its process is forgotten");
        // The value read is what is deleted: another value stays.
        let value = b"{\"run_id\":\"run-next\",\"nonce\":\"2\",\"expires_at\":1000}";
        kv.set(STATE_BUCKET, LEASE_KEY, value).unwrap();
        assert!(!kv.delete_if(STATE_BUCKET, LEASE_KEY, b"{\"run_id\":\"run-killed\"}").unwrap());
        assert!(lease_holder(kv).unwrap().is_some());
    }
}
