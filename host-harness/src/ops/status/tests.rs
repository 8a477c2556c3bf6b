use super::*;
use crate::scheduler::{RunReport, SalesforceApiUsage};
use netsuite_salesforce::model::Cursor;
use netsuite_salesforce::sync::state::{IdScan, OpenRange, Recheck};

fn database() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::Database::open(&dir.path().join("connector.db")).unwrap().connect().unwrap();
    (dir, conn)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2026-12-02T12:00:00Z", &Rfc3339).unwrap()
}

/// A run's row as `Tenant::start` leaves it, its report written by [`RunReport`].
fn run(conn: &Connection, tenant: &str, id: &str, mode: &'static str, status: &'static str, usage: Option<(u64, u64)>) {
    let report = RunReport {
        run_id: id.into(),
        tenant: tenant.into(),
        mode,
        status,
        error: (status == "failed").then(|| "Salesforce error: UNABLE_TO_LOCK_ROW".to_string()),
        duration_ms: 1500,
        objects: BTreeMap::from([
            ("customer", ObjectCounts { read: 10, created: 2, updated: 3, unchanged: 5, ..Default::default() }),
            ("contact", ObjectCounts { read: 4, created: 1, deferred: 3, ..Default::default() }),
        ]),
        api_calls: ApiCalls { netsuite: 6, salesforce: 4 },
        guest_peak_memory_bytes: 0,
        instantiation_micros: 0,
        guest_cpu_ms: 0,
        salesforce_api_usage: usage.map(|(used, limit)| SalesforceApiUsage { used, limit }),
        plan: vec![],
    };
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, finished_at, mode, status, report, error)
         VALUES (?1, ?2, '2026-12-02T11:00:00Z', '2026-12-02T11:00:01.5Z', ?3, ?4, ?5, ?6)",
        params![id, tenant, mode, status, serde_json::to_string(&report).unwrap(), report.error],
    )
    .unwrap();
}

fn kv(conn: &Connection, tenant: &str, bucket: &str, key: &str, value: &[u8], updated_at: &str) {
    conn.execute(
        "INSERT INTO kv (tenant, bucket, key, value, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant, bucket, key, value, updated_at],
    )
    .unwrap();
}

fn cursor(last_modified: &str, id: &str, moved_at: i64) -> Vec<u8> {
    let stored = StoredCursor {
        cursor: Cursor { last_modified: last_modified.into(), id: id.into() },
        moved_at,
        settled: false,
        scan: None,
        recheck: None,
        zone: None,
    };
    serde_json::to_vec(&stored).unwrap()
}

#[test]
fn a_tenant_nothing_ran_for_says_so() {
    let (_dir, conn) = database();
    let s = tenant_status(&conn, "acme", Some(0.9), now()).unwrap();
    assert!(s.running.is_empty() && s.last_run.is_none() && s.cursors.is_empty() && s.waiting.is_empty());
    assert!(s.salesforce_api.is_none());
    assert!(!s.next_run.scheduled);
    assert_eq!(s.next_run.note, "not scheduled: run `connector serve`");
    let text = text(&s);
    assert!(text.contains("last run    none yet"), "{text}");
    assert!(text.contains("next run    not scheduled: run `connector serve`"), "{text}");
}

#[test]
fn status_reports_the_last_run_cursors_queues_and_api_share() {
    let (_dir, conn) = database();
    run(&conn, "acme", "run-a", "incremental", "succeeded", Some((1200, 15000)));
    run(&conn, "acme", "run-b", "full", "failed", None);
    // A dry run is not the last run, but its usage figure is the latest.
    run(&conn, "acme", "run-c", "dry-run", "succeeded", Some((1500, 15000)));
    // Another tenant's rows count for nothing here.
    run(&conn, "other", "run-z", "incremental", "succeeded", Some((9000, 10000)));
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, mode, status) VALUES ('run-d', 'acme', '2026-12-02T11:59:00Z',
             'incremental', 'running')",
        [],
    )
    .unwrap();
    // Cursors as the component stores them; one from before `moved_at` was kept.
    let moved = now().unix_timestamp() - 300;
    // Customers were handed over by a first sync whose window is re-read later.
    let mut handed: StoredCursor = serde_json::from_slice(&cursor("2026-12-02 03:55:00", "42", moved)).unwrap();
    handed.recheck = Some(Recheck {
        from: Cursor { last_modified: "2026-12-02 03:54:59".into(), id: "0".into() },
        due: moved + 600,
    });
    kv(&conn, "acme", STATE_BUCKET, "cursor/customer", &serde_json::to_vec(&handed).unwrap(), "2026-12-02T11:55:00Z");
    kv(
        &conn,
        "acme",
        STATE_BUCKET,
        "cursor/deleted/customer",
        &cursor("2026-12-01 00:00:00", "7", 0),
        "2026-12-02T10:00:00.5Z",
    );
    // A first sync of vendors reading by internal id, stopped after #118.
    let scanning = StoredCursor {
        cursor: Cursor { last_modified: "1970-01-01 00:00:00".into(), id: "0".into() },
        moved_at: moved,
        settled: true,
        scan: Some(IdScan {
            after: "118".into(),
            then: None,
            began_at: moved,
            open: vec![OpenRange { after: 118, upto: Some(400) }, OpenRange { after: 730, upto: None }],
            highest: Some(1000),
            every: None,
            live: false,
        }),
        recheck: None,
        zone: None,
    };
    // Contacts read again after a `--full --compare-live` stopped after #57.
    let mut again = scanning.clone();
    again.scan = Some(IdScan {
        after: "57".into(),
        open: vec![],
        highest: None,
        every: Some("f00@00D8d000000SIMxEAA#1234567".into()),
        live: true,
        ..scanning.scan.clone().unwrap()
    });
    kv(&conn, "acme", STATE_BUCKET, "cursor/contact", &serde_json::to_vec(&again).unwrap(), "2026-12-02T11:55:00Z");
    let scanning = serde_json::to_vec(&scanning).unwrap();
    kv(&conn, "acme", STATE_BUCKET, "cursor/vendor", &scanning, "2026-12-02T11:55:00Z");
    kv(
        &conn,
        "acme",
        STATE_BUCKET,
        "cursor/salesforce/vendor",
        b"2026-12-02T11:58:00.000Z@00D8d000000SIMxEAA",
        "2026-12-02T11:58:30Z",
    );
    kv(&conn, "acme", STATE_BUCKET, "record/customer/42", b"{}", "2026-12-02T11:55:00Z");
    kv(
        &conn,
        "other",
        STATE_BUCKET,
        "cursor/contact",
        &cursor("2026-12-02 00:00:00", "1", moved),
        "2026-12-02T11:55:00Z",
    );
    // Queued writes: two failed customers (the older's time has a fraction),
    // a deferred contact, a failed write-back, a change event waiting (a
    // deletion Salesforce refused); another tenant's failure is not acme's.
    kv(&conn, "acme", QUEUES_BUCKET, "failed/customer/43", b"{}", "2026-12-02T09:00:00.25Z");
    kv(&conn, "acme", QUEUES_BUCKET, "failed/customer/44", b"{}", "2026-12-02T09:00:00Z");
    // Replayed and refused again at 10:00: failing since 08:30 (1796200200).
    kv(&conn, "acme", QUEUES_BUCKET, "failed/customer/46", br#"{"failing_since":1796200200}"#, "2026-12-02T10:00:00Z");
    kv(&conn, "acme", QUEUES_BUCKET, "deferred/contact/7", b"{}", "2026-12-02T08:00:00Z");
    kv(&conn, "acme", QUEUES_BUCKET, "failed-writeback/vendor/a0C1", b"{}", "2026-12-02T07:00:00Z");
    kv(&conn, "acme", QUEUES_BUCKET, "event/customer/45", b"{}", "2026-12-02T07:00:00Z");
    kv(&conn, "other", QUEUES_BUCKET, "failed/customer/1", b"{}", "2026-12-02T07:00:00Z");
    // A killed run's Bulk API job of vendors and the two pages it parked.
    kv(&conn, "acme", QUEUES_BUCKET, "bulkjob/vendor/run-k/000001-750xx", b"{}", "2026-12-02T06:00:00Z");
    kv(&conn, "acme", QUEUES_BUCKET, "bulk/vendor/run-k/000001-a", b"[]", "2026-12-02T06:00:00Z");
    kv(&conn, "acme", QUEUES_BUCKET, "bulk/vendor/run-k/000002-a", b"[]", "2026-12-02T06:00:00Z");

    let s = tenant_status(&conn, "acme", Some(0.9), now()).unwrap();
    assert_eq!(s.running.len(), 1);
    assert_eq!(s.running[0].run_id, "run-d");
    let last = s.last_run.as_ref().unwrap();
    assert_eq!((last.run_id.as_str(), last.mode.as_str(), last.status.as_str()), ("run-b", "full", "failed"));
    assert_eq!(last.duration_ms, Some(1500));
    assert_eq!(last.objects["customer"].updated, 3);
    assert_eq!(last.objects["contact"].deferred, 3);
    assert_eq!(last.api_calls, Some(ApiCalls { netsuite: 6, salesforce: 4 }));
    assert_eq!(last.error.as_deref(), Some("Salesforce error: UNABLE_TO_LOCK_ROW"));
    assert_eq!(s.last_success_at.as_deref(), Some("2026-12-02T11:00:01.5Z"));

    let cursors: Vec<(&str, &str, &str, Option<i64>)> =
        s.cursors.iter().map(|c| (c.kind, c.stream, c.position.as_str(), c.age_secs)).collect();
    assert_eq!(
        cursors,
        [
            ("customer", "netsuite-changes", "2026-12-02 03:55:00 #42", Some(300)),
            ("customer", "netsuite-deletions", "2026-12-01 00:00:00 #7", Some(7199)),
            ("vendor", "netsuite-changes", "first read by id, after #118, 2 ranges still open", Some(300)),
            ("vendor", "salesforce-changes", "2026-12-02T11:58:00.000Z in org 00D8d000000SIMxEAA", Some(90)),
            ("contact", "netsuite-changes", "every record read again by id and compared live, after #57", Some(300)),
        ]
    );

    let waiting: Vec<(&str, u64, u64, u64, u64)> =
        s.waiting.iter().map(|w| (w.kind, w.failed_writes, w.failed_writebacks, w.deferred, w.change_events)).collect();
    assert_eq!(waiting, [("customer", 3, 0, 0, 1), ("vendor", 0, 1, 0, 0), ("contact", 0, 0, 1, 0)]);
    assert_eq!((s.waiting[1].bulk_jobs, s.waiting[1].parked_pages), (1, 2));
    assert_eq!((s.waiting[0].bulk_jobs, s.waiting[0].parked_pages), (0, 0));
    assert_eq!(s.waiting[0].oldest_change_event_at.as_deref(), Some("2026-12-02T07:00:00Z"));
    assert_eq!(s.waiting[0].oldest_failed_at.as_deref(), Some("2026-12-02T08:30:00Z"));
    assert_eq!(s.waiting[1].oldest_failed_at.as_deref(), Some("2026-12-02T07:00:00Z"));
    assert_eq!(s.waiting[2].oldest_deferred_at.as_deref(), Some("2026-12-02T08:00:00Z"));

    let api = s.salesforce_api.as_ref().unwrap();
    assert_eq!((api.used, api.limit, api.run_id.as_str()), (1500, 15000, "run-c"));
    assert!((api.share - 0.1).abs() < 1e-9);
    assert_eq!(api.ceiling, Some(0.9));

    let text = text(&s);
    for expected in [
        "tenant acme\n",
        "  running     run-d (incremental) since 2026-12-02T11:59:00Z\n",
        "  last run    run-b (full) failed at 2026-12-02T11:00:01.5Z, took 1.5 s\n",
        "              customer: read 10 created 2 updated 3 unchanged 5 deferred 0 failed 0 deleted 0\n",
        "              error: Salesforce error: UNABLE_TO_LOCK_ROW\n",
        "  last success 2026-12-02T11:00:01.5Z\n",
        "  cursor      customer netsuite-changes at 2026-12-02 03:55:00 #42, moved 5 min ago; the first run after \
         2026-12-02T12:05:00Z re-reads the overlap window before it\n",
        "  waiting     customer: 3 failed writes, oldest failure 2026-12-02T08:30:00Z, 1 change events for the next \
         run to apply first (webhook events, deletions Salesforce refused, children to write again after their \
         parent's deletion), oldest event 2026-12-02T07:00:00Z\n",
        "  waiting     contact: 1 deferred until their parent is in Salesforce, oldest deferred 2026-12-02T08:00:00Z\n",
        "  waiting     vendor: 1 failed write-backs, oldest failure 2026-12-02T07:00:00Z, 1 Bulk API jobs and 2 parked \
         pages of records (a run's under way, or a stopped run's, whose outcomes the next run waits for and records)\n",
        "  Salesforce  API usage 1500/15000 (10.0% of the org's daily allocation, runs stop at 90%), as of run run-c",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }

    assert_eq!(tenants(&conn).unwrap(), ["acme", "other"]);
    let other = tenant_status(&conn, "other", None, now()).unwrap();
    assert_eq!(other.salesforce_api.unwrap().used, 9000);
    assert_eq!(other.waiting.len(), 1);
}

/// A crashed run's end in the run log is when the next run noticed it
/// (perhaps much later), so its length is not shown as if known.
#[test]
fn a_crashed_run_says_when_it_was_noticed_not_how_long_it_took() {
    let (_dir, conn) = database();
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, finished_at, mode, status, error)
         VALUES ('run-x', 'acme', '2026-12-02T10:00:00Z', '2026-12-02T10:02:03.25Z', 'incremental', 'crashed',
                 'its process (pid 9) ended before the run did')",
        [],
    )
    .unwrap();
    let status = tenant_status(&conn, "acme", None, now()).unwrap();
    let last = status.last_run.as_ref().unwrap();
    assert_eq!((last.status.as_str(), last.duration_ms), ("crashed", None));
    assert!(last.objects.is_empty());
    let shown = text(&status);
    assert!(
        shown.contains("crashed (noticed at 2026-12-02T10:02:03.25Z; how long it ran is unknown)")
            && !shown.contains("took"),
        "{shown}"
    );
}

#[test]
fn an_attempt_refused_as_busy_is_not_the_last_run() {
    let (_dir, conn) = database();
    insert_crashed_run(&conn);
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, finished_at, mode, status, error)
         VALUES ('run-y', 'acme', '2026-12-02T10:01:00Z', '2026-12-02T10:01:00.01Z', 'incremental', 'failed',
                 'busy: run run-x holds this tenant''s lease until 10:05:00Z; this run did nothing')",
        [],
    )
    .unwrap();
    let last = tenant_status(&conn, "acme", None, now()).unwrap().last_run.unwrap();
    assert_eq!(last.run_id, "run-x");
    // A run that worked, then lost its lease, is a last run like any other.
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, finished_at, mode, status, error)
         VALUES ('run-z', 'acme', '2026-12-02T10:03:00Z', '2026-12-02T10:04:00Z', 'incremental', 'failed',
                 'busy: run run-w took over this tenant''s lease after this run''s expired; this run stopped')",
        [],
    )
    .unwrap();
    let last = tenant_status(&conn, "acme", None, now()).unwrap().last_run.unwrap();
    assert_eq!(last.run_id, "run-z");
}

fn insert_crashed_run(conn: &Connection) {
    conn.execute(
        "INSERT INTO runs (run_id, tenant, started_at, finished_at, mode, status, error)
         VALUES ('run-x', 'acme', '2026-12-02T10:00:00Z', '2026-12-02T10:02:03.25Z', 'incremental', 'crashed',
                 'its process (pid 9) ended before the run did')",
        [],
    )
    .unwrap();
}

#[test]
fn the_next_run_is_the_one_serve_recorded() {
    let (_dir, conn) = database();
    serve_schedule::record(&conn, "acme", now() + time::Duration::seconds(600), 900).unwrap();
    let s = tenant_status(&conn, "acme", None, now()).unwrap();
    assert!(s.next_run.scheduled);
    assert_eq!(s.next_run.at.as_deref(), Some("2026-12-02T12:10:00Z"));
    assert_eq!((s.next_run.in_secs, s.next_run.every_secs), (Some(600), Some(900)));
    assert_eq!(s.next_run.serve_pid, Some(std::process::id()));
    let text = text(&s);
    assert!(text.contains("next run    2026-12-02T12:10:00Z (in 10 min) by `connector serve` (pid "), "{text}");
    // A schedule whose serving process has ended runs nothing.
    conn.execute("UPDATE serve_schedule SET started = started + 1", []).unwrap();
    let s = tenant_status(&conn, "acme", None, now()).unwrap();
    assert!(!s.next_run.scheduled);
    assert!(s.next_run.note.starts_with("not scheduled: the `connector serve` (pid "), "{}", s.next_run.note);
    assert!(s.next_run.note.ends_with("has ended; run `connector serve`"), "{}", s.next_run.note);
}

#[test]
fn spans_read_like_a_person_would_say_them() {
    assert_eq!(span(95), "95 s");
    assert_eq!(span(-300), "5 min");
    assert_eq!(span(3 * 3600 + 5 * 60), "3 h 5 min");
    assert_eq!(span(2 * 86_400 + 4 * 3600), "2 d 4 h");
}
