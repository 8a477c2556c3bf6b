//! One run per tenant, without a crash blocking the next: the `connector`
//! CLI (`sync`, `serve --tenants`) runs as a child process against slow
//! simulators hosted here and is killed (SIGKILL) or stopped (SIGTERM, once
//! or twice) while it holds the tenant's lease.

mod support;

use host_harness::store::Database;
use std::process::Stdio;
use std::time::Duration;
use support::{bed, component_path, connector_binary, succeeded};

/// The tenant's lease as stored: (holder run id, expires at), if any.
fn lease(db: &Database) -> Option<(String, i64)> {
    let conn = db.connect().unwrap();
    let value: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM kv WHERE tenant = 'demo' AND bucket = 'state' AND key = 'lease'", [], |r| {
            r.get(0)
        })
        .ok();
    let holder: serde_json::Value = serde_json::from_slice(&value?).ok()?;
    Some((holder["run_id"].as_str()?.to_string(), holder["expires_at"].as_i64()?))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The run log's status and error of a run.
fn logged(db: &Database, run: &str) -> (String, String) {
    db.connect()
        .unwrap()
        .query_row("SELECT status, COALESCE(error, '') FROM runs WHERE run_id = ?1", [run], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
}

struct Cli {
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cli {
    fn for_bed(bed: &support::Bed) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("connector.toml");
        bed.write_config(&config).unwrap();
        Cli { config, _dir: dir }
    }

    fn sync(&self) -> tokio::process::Child {
        support::spawn_sync(&self.config, &[])
    }

    /// `connector status` as text.
    fn status(&self) -> String {
        let out = std::process::Command::new(connector_binary())
            .args(["status", "--config"])
            .arg(&self.config)
            .output()
            .expect("running connector status");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Waits until a run holds a live lease; returns its id. (A condition,
/// not a time: the run is slow by design and holds it for many pages.)
async fn lease_taken(db: &Database, child: &mut tokio::process::Child) -> String {
    for _ in 0..3000 {
        if let Some((run, expires_at)) = lease(db).filter(|(_, at)| *at > now()) {
            assert!(expires_at > now() + 10, "a live lease with time left");
            return run;
        }
        assert!(child.try_wait().unwrap().is_none(), "the sync ended before it took the lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no run took the lease within 30 s");
}

/// Waits until the run has written to Salesforce (it is past its first page).
async fn first_write(bed: &support::Bed) {
    while bed.salesforce.count("Account") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `connector serve --tenants dir` on a free loopback port, with `args`.
fn serve_tenants(dir: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(connector_binary())
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--tenants"])
        .arg(dir)
        .env("CONNECTOR_COMPONENT", component_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting connector serve")
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
}

/// Records a run audited as created.
fn created_on_record(db: &Database, run: &str) -> u64 {
    let n: i64 = db
        .connect()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM audit WHERE run_id = ?1 AND outcome = 'created'", [run], |r| r.get(0))
        .unwrap();
    n as u64
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_while_holding_the_lease_is_marked_crashed_and_the_next_starts_at_once() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(300));
    let mut child = cli.sync();
    let killed = lease_taken(&db, &mut child).await;
    child.kill().await.unwrap(); // SIGKILL: no cleanup, no lease given back
    let (_, expires_at) = lease(&db).expect("the killed run's lease stays");
    assert!(expires_at > now() + 10, "it would block the tenant for a while");
    assert_eq!(logged(&db, &killed).0, "running");
    // `status`, which changes nothing, already says its process is gone.
    let status = cli.status();
    assert!(status.contains(&format!("running     {killed}")), "{status}");
    assert!(status.contains("but its process (pid ") && status.contains("has ended: it was killed"), "{status}");
    assert_eq!(logged(&db, &killed).0, "running", "status marks nothing");

    bed.netsuite.set_latency(Duration::ZERO);
    let out = cli.sync().wait_with_output().await.unwrap();
    assert!(out.status.success(), "not busy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bed.salesforce.count("Account"), 3000);

    let (status, error) = logged(&db, &killed);
    assert_eq!(status, "crashed", "{error}");
    assert!(error.contains("its process (pid") && error.contains("ended before the run did"), "{error}");
    // Its process is forgotten once its run is settled.
    let recorded: i64 = db
        .connect()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM run_processes WHERE run_id = ?1", [&killed], |r| r.get(0))
        .unwrap();
    assert_eq!(recorded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_its_lease_and_the_busy_answer_says_when_to_try_again() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(300));
    let mut first = cli.sync();
    let holder = lease_taken(&db, &mut first).await;

    let out = cli.sync().wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(4), "busy: another run holds the tenant");
    let stderr = lines(&out.stderr);
    assert_eq!(stderr.len(), 1, "one line: {stderr:?}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let line = &stderr[0];
    assert!(line.contains(&format!("busy: run {holder} holds this tenant's lease until")), "{line}");
    let secs: i64 = line
        .split("Try again in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("says when to try again: {line}"));
    assert!((1..=60).contains(&secs), "{line}");
    assert_eq!(lease(&db).map(|(run, _)| run), Some(holder.clone()), "the live holder keeps its lease");
    assert_eq!(logged(&db, &holder).0, "running");

    bed.netsuite.set_latency(Duration::ZERO);
    let out = first.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(logged(&db, &holder).0, "succeeded");
    // Given back by a compare-and-swap: kept, expired, so the next run swaps
    // it in turn instead of writing one and waiting to see whose landed.
    assert_eq!(lease(&db), Some((holder, 0)));
}

/// A process that keeps the database's write lock (paused with SIGSTOP,
/// a frozen container) leaves the next sync busy (exit 4, nothing done),
/// not failed; `status` still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_behind_a_process_keeping_the_write_lock_is_busy_and_status_still_reads() {
    let bed = bed(20).start().await;
    succeeded(&bed.sync().await);
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    let paused = db.connect().unwrap();
    paused.execute_batch("BEGIN IMMEDIATE").unwrap();
    let status = cli.status();
    assert!(status.contains("last run"), "{status}");
    let out = cli.sync().wait_with_output().await.unwrap();
    paused.execute_batch("ROLLBACK").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("another process has held the write lock of") && stderr.contains("did nothing"),
        "{stderr}"
    );
    let again = cli.sync().wait_with_output().await.unwrap();
    assert!(again.status.success(), "once the lock is let go: {}", String::from_utf8_lossy(&again.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_sync_at_its_next_checkpoint_with_nothing_lost_and_the_next_resumes() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(300));
    let mut child = cli.sync();
    let stopped = lease_taken(&db, &mut child).await;
    first_write(&bed).await;
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SIGTERM: the runs under way end at their next checkpoint"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("run {stopped} (incremental) stopped")), "{stdout}");
    let (status, error) = logged(&db, &stopped);
    assert_eq!(status, "stopped", "{error}");
    assert!(error.starts_with("stopped: interrupted by SIGTERM; the run ended at a checkpoint"), "{error}");
    // Everything Salesforce received is on record; the lease is free.
    let written = bed.salesforce.count("Account");
    assert!(written > 0 && written < 3000, "{written}");
    assert_eq!(created_on_record(&db, &stopped), written);
    assert!(lease(&db).is_none_or(|(_, expires)| expires == 0), "the run gave its lease back");

    bed.netsuite.set_latency(Duration::ZERO);
    let out = cli.sync().wait_with_output().await.unwrap();
    assert!(out.status.success(), "not busy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bed.salesforce.count("Account"), 3000);
    assert_eq!(bed.salesforce.writes(), 3000, "nothing written twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_the_sync_at_once_and_the_next_starts_at_once() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(1000));
    let mut child = cli.sync();
    let stopped = lease_taken(&db, &mut child).await;
    first_write(&bed).await;
    let pid = child.id().expect("running").to_string();
    // Apart, so the two are not merged into one pending signal; the run's
    // next checkpoint is a 1 s page read away.
    let twice = format!("kill -TERM {pid}; sleep 0.2; kill -TERM {pid}");
    assert!(std::process::Command::new("sh").args(["-c", &twice]).status().unwrap().success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = lines(&out.stderr);
    assert!(stderr.iter().any(|l| l.contains(&format!("run {stopped} stopped: interrupted by SIGTERM"))), "{stderr:?}");
    let (status, error) = logged(&db, &stopped);
    assert_eq!(status, "stopped", "{error}");
    assert!(error.contains("SIGTERM"), "{error}");

    bed.netsuite.set_latency(Duration::ZERO);
    let out = cli.sync().wait_with_output().await.unwrap();
    assert!(out.status.success(), "not busy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(logged(&db, &stopped).0, "stopped", "not re-marked as crashed");
}

/// A Bulk API 2.0 job that takes longer than the lease: the run renews it
/// at every poll, so no other run can take over meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_job_longer_than_the_lease_keeps_it_renewed_at_every_poll() {
    let bed = bed(300).setting("salesforce_bulk_threshold", "100").setting("lease_ttl_secs", "60").start().await;
    let (db, clock) = (bed.tenant.database.clone(), bed.clock.clone());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let salesforce = bed.salesforce.clone();
    salesforce.hold_bulk_jobs(true);
    bed.salesforce.on_bulk_poll(move || {
        // The job runs 40 s between polls and ends at the third; the lease
        // is read while the run waits.
        clock.advance(Duration::from_secs(40));
        let left = lease(&db).map(|(_, at)| at - clock.now_secs());
        let mut seen = record.lock().unwrap();
        seen.push(left);
        salesforce.hold_bulk_jobs(seen.len() < 3);
    });
    let report = bed.sync().await;
    succeeded(&report);
    assert!(bed.salesforce.bulk_jobs() >= 1, "written through Bulk API 2.0");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "the job took {} polls", seen.len());
    for left in &seen {
        assert!(left.is_some_and(|s| s > 0), "the lease was live at every poll: {seen:?}");
    }
}

/// `serve --tenants`: SIGTERM stops the schedules, lets the scheduled run
/// under way reach its next checkpoint, then ends the process cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tenants_on_sigterm_lets_the_run_under_way_reach_its_checkpoint_then_exits() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let db = bed.tenant.database.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    bed.write_config(&file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    // Never run before: its first scheduled start is due at once.
    std::fs::write(&file, format!("{text}\n[schedule]\nevery_secs = 3600\njitter_secs = 0\n")).unwrap();
    bed.netsuite.set_latency(Duration::from_millis(300));
    let mut child = serve_tenants(dir.path(), &["--log-format", "json"]);
    let run = lease_taken(&db, &mut child).await;
    first_write(&bed).await;
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM: the runs under way end at their next checkpoint"), "{stderr}");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "one JSON object per line: {line}");
    }
    let (status, error) = logged(&db, &run);
    assert_eq!(status, "stopped", "{error}");
    assert!(error.starts_with("stopped: interrupted by SIGTERM; the run ended at a checkpoint"), "{error}");
    let written = bed.salesforce.count("Account");
    assert!(written > 0 && written < 3000, "{written}");
    assert_eq!(created_on_record(&db, &run), written, "everything Salesforce received is on record");
    let scheduled: i64 =
        db.connect().unwrap().query_row("SELECT COUNT(*) FROM serve_schedule", [], |r| r.get(0)).unwrap();
    assert_eq!(scheduled, 0, "no next run is promised by a process that is gone");

    // Started again (a deploy): the stopped run's read goes on at once, not
    // an hour after it began.
    bed.netsuite.set_latency(Duration::ZERO);
    let mut child = serve_tenants(dir.path(), &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while bed.salesforce.count("Account") < 3000 {
        assert!(tokio::time::Instant::now() < deadline, "the stopped run was not taken up at once");
        assert!(child.try_wait().unwrap().is_none(), "serve ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
}

/// Through Bulk API 2.0 the records of the kind wait in an open job until
/// the read ends: a run stopped part-way wrote nothing yet, and the next
/// run writes each record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_bulk_sync_writes_nothing_twice_and_the_next_run_finishes() {
    let bed = bed(3000).setting("netsuite_page_size", "200").setting("salesforce_bulk_threshold", "100").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(300));
    let mut child = cli.sync();
    let stopped = lease_taken(&db, &mut child).await;
    // A few pages into the read, their records in the open job.
    while bed.netsuite.requests() < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped: {}", String::from_utf8_lossy(&out.stderr));
    let (status, error) = logged(&db, &stopped);
    assert_eq!(status, "stopped", "{error}");
    assert_eq!(created_on_record(&db, &stopped), bed.salesforce.count("Account"));

    bed.netsuite.set_latency(Duration::ZERO);
    let out = cli.sync().wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bed.salesforce.count("Account"), 3000);
    assert_eq!(bed.salesforce.writes(), 3000, "nothing written twice");
}

/// A fresh store has no lease at all: two syncs started together race to
/// swap the absent key in, and exactly one wins (the harness's `key-swap`
/// makes the check and the write one step across processes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_started_together_on_a_fresh_store_run_one_at_a_time() {
    let bed = bed(3000).setting("netsuite_page_size", "200").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(200));
    assert_eq!(lease(&db), None, "no run has taken the lease yet");
    let (first, second) = (cli.sync(), cli.sync());
    let (first, second) = tokio::join!(first.wait_with_output(), second.wait_with_output());
    let outputs = [first.unwrap(), second.unwrap()];
    let (won, lost): (Vec<_>, Vec<_>) = outputs.iter().partition(|o| o.status.success());
    assert_eq!((won.len(), lost.len()), (1, 1), "one runs, one is refused");
    assert_eq!(lost[0].status.code(), Some(4), "busy");
    let refused = lines(&lost[0].stderr);
    assert_eq!(refused.len(), 1, "one line: {refused:?}");
    assert!(refused[0].contains("busy: run ") && refused[0].contains("this run did nothing"), "{}", refused[0]);
    // The run that lost wrote nothing: every record was created once, by the winner.
    let winner = lease(&db).expect("kept, expired").0;
    assert_eq!(created_on_record(&db, &winner), 3000);
    assert_eq!(bed.salesforce.count("Account"), 3000);
}

/// One Salesforce request slower than the whole lease: the run keeps its
/// lease while it waits, so a run started meanwhile is refused instead of
/// taking the tenant and writing while the slow request may still land
/// after it (older data over newer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_the_lease_keeps_it_while_it_waits() {
    let bed = bed(20).setting("lease_ttl_secs", "2").start().await;
    let db = bed.tenant.database.clone();
    let cli = Cli::for_bed(&bed);
    let slow = Duration::from_secs(4);
    bed.salesforce.set_faults(simulators::salesforce::Faults { latency: slow, ..Default::default() });
    let mut first = cli.sync();
    let holder = loop {
        if let Some((run, _)) = lease(&db).filter(|(_, at)| *at > now()) {
            break run;
        }
        assert!(first.try_wait().unwrap().is_none(), "the sync ended before it took the lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Past the 2 s the lease was taken for, within the first request to
    // Salesforce (it describes Account first).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let out = cli.sync().wait_with_output().await.unwrap();
    let refused = lines(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "the second run ran: {refused:?}");
    assert!(refused.iter().any(|l| l.contains(&format!("busy: run {holder} holds"))), "{refused:?}");

    bed.salesforce.set_faults(Default::default());
    let out = first.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(logged(&db, &holder).0, "succeeded");
    assert_eq!(created_on_record(&db, &holder), 20);
}

/// Write-back writes one vendor at a time to NetSuite: SIGTERM ends the run
/// between two of them, each one that landed on record with its base, and
/// the next run writes the rest, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_write_back_between_two_vendors_with_each_netsuite_write_on_record() {
    const VENDORS: usize = 30;
    let bed = bed(0).setting("vendor_writeback", "true").start().await;
    let ids = bed.netsuite.seed_vendors(VENDORS as u64, 7).unwrap();
    succeeded(&bed.sync_all().await);
    let phone = |n: usize| format!("+1212555{:04}", 100 + n);
    for (n, id) in ids.iter().enumerate() {
        let (sf_id, _) = bed.sf("Vendor__c", *id);
        let edit = serde_json::Map::from_iter([("Phone__c".to_string(), serde_json::Value::from(phone(n)))]);
        bed.salesforce.edit_by_hand("Vendor__c", &sf_id, edit);
    }
    let landed = |bed: &support::Bed| {
        (ids.iter().enumerate())
            .filter(|(n, id)| bed.netsuite.vendor_field(**id, "phone").unwrap() == Some(phone(*n)))
            .count()
    };
    let db = bed.tenant.database.clone();
    let written_back = |run: &str| -> usize {
        let sql = "SELECT COUNT(*) FROM audit WHERE run_id = ?1 AND action = 'netsuite-write' AND outcome = 'updated'";
        db.connect().unwrap().query_row(sql, [run], |r| r.get::<_, i64>(0)).unwrap() as usize
    };
    let cli = Cli::for_bed(&bed);
    bed.netsuite.set_latency(Duration::from_millis(100));
    let mut child = cli.sync();
    let stopped = lease_taken(&db, &mut child).await;
    while landed(&bed) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(logged(&db, &stopped).0, "stopped");
    let first = landed(&bed);
    assert!(first < VENDORS, "ended between two vendors, not after the page: {first}");
    assert_eq!(written_back(&stopped), first, "each write that landed is on record");

    bed.netsuite.set_latency(Duration::ZERO);
    let out = cli.sync().wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(landed(&bed), VENDORS);
    let next = (db.connect().unwrap())
        .query_row("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1", [], |r| r.get::<_, String>(0))
        .unwrap();
    assert_eq!(written_back(&next), VENDORS - first, "none written twice");
}
