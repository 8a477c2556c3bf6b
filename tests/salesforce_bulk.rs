//! Bulk API 2.0 above the threshold, Composite below it: parents linked by
//! external id either way, and failed bulk rows reported against the right
//! NetSuite record.

mod support;

use host_harness::host::SyncMode;
use host_harness::scheduler::RunReport;
use simulators::salesforce::ValidationRule;
use std::collections::HashMap;
use support::{Bed, bed, one_request_at_a_time, runtime, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_above_the_threshold_and_composite_below_both_link_contacts_to_accounts() {
    let bed = bed(20_000).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(50_000, &bed.customer_ids, at, 5).unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 20_000);
    assert_eq!(report.counts("contact").created, 50_000);
    assert_eq!(bed.salesforce.count("Account"), 20_000);
    assert_eq!(bed.salesforce.count("Contact"), 50_000);
    let jobs = bed.salesforce.bulk_jobs();
    assert!(jobs >= 2, "customers and contacts went through Bulk API 2.0: {jobs} jobs");
    assert!(report.api_calls.salesforce < 40, "70,000 records in {} Salesforce calls", report.api_calls.salesforce);

    // 5,000 more contacts: below the threshold, they go through Composite.
    let later = bed.clock.now_secs() - 60;
    bed.netsuite.seed_contacts(5_000, &bed.customer_ids, later, 6).unwrap();
    let small = bed.sync_all().await;
    succeeded(&small);
    assert_eq!(small.counts("contact").created, 5_000);
    assert_eq!(bed.salesforce.bulk_jobs(), jobs, "no Bulk API job below the threshold");
    // Every body, CSV uploads and Composite requests alike, went with its length.
    assert_eq!(bed.salesforce.chunked_bodies(), 0);

    let account_ids: HashMap<i64, String> = bed.customer_ids.iter().map(|&c| (c, bed.sf("Account", c).0)).collect();
    let contacts = bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap();
    assert_eq!(contacts.len(), 55_000);
    for (contact, company) in contacts {
        let (_, fields) = bed.sf("Contact", contact);
        assert_eq!(fields["AccountId"].as_str(), Some(account_ids[&company].as_str()), "contact {contact}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_row_in_a_bulk_job_is_reported_against_its_netsuite_id() {
    let bed = bed(600).setting("salesforce_bulk_threshold", "100").start().await;
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Account".into(),
        field: "Name".into(),
        contains: "Embargoed".into(),
        message: "Accounts under embargo need approval".into(),
    }));
    let rejected: Vec<i64> = bed.customer_ids.iter().copied().step_by(150).collect();
    for (i, &id) in rejected.iter().enumerate() {
        bed.netsuite.rename_customer_any(id, &format!("Embargoed Trading {i}")).unwrap();
    }
    let report = bed.bed.sync(runtime(), SyncMode::Incremental).await.unwrap();
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.created, c.failed), (600 - rejected.len() as u32, rejected.len() as u32));
    assert!(bed.salesforce.bulk_jobs() >= 1);

    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let failed: Vec<_> = rows.iter().filter(|r| r.outcome == "failed").collect();
    let mut failed_ids: Vec<i64> = failed.iter().map(|r| r.netsuite_id.parse().unwrap()).collect();
    failed_ids.sort_unstable();
    assert_eq!(failed_ids, rejected);
    for row in failed {
        assert_eq!(row.action, "bulk-write");
        let error = row.error.as_deref().unwrap();
        assert!(error.starts_with("FIELD_CUSTOM_VALIDATION_EXCEPTION: Accounts under embargo"), "{error}");
    }
    // Every row reads back with its whole transformations: field, rule and
    // detail from the shape stored once, the values from the row.
    let created = rows.iter().find(|r| r.outcome == "created" && r.action == "bulk-write").unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&created.transformations).unwrap();
    let name = list.iter().find(|t| t["field"] == "Name").unwrap();
    assert_eq!((&name["rule"], &name["detail"]), (&serde_json::json!("copy"), &serde_json::json!("companyname")));
    assert!(name["new"].is_string(), "{name}");
    let (split, shapes): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM audit WHERE run_id = ?1 AND shape IS NOT NULL), \
             (SELECT COUNT(*) FROM audit_shapes)",
            [&report.run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(split, 600, "every record's row names its shape");
    assert!(shapes * 5 < 600, "{shapes} shapes for 600 records: records mapped alike share one");
    for &id in &rejected {
        assert!(bed.salesforce.find("Account", &id.to_string()).is_none());
    }
}

/// A sync whose Bulk API jobs Salesforce holds past the run's poll timeout
/// (1 s): the run fails naming it.
async fn sync_past_the_poll_timeout(bed: &Bed) {
    bed.salesforce.hold_bulk_jobs(true);
    let stopped = bed.sync().await;
    assert_eq!(stopped.status, "failed", "{stopped:?}");
    assert!(stopped.error.as_deref().unwrap().contains("did not finish within 1 s"), "{stopped:?}");
}

/// 3,000 customers sent as one Bulk API job (threshold 100), which
/// Salesforce applies but holds past the run's poll timeout: the run fails.
async fn stopped_with_its_job_held() -> Bed {
    let bed = bed(3_000)
        .setting("salesforce_bulk_threshold", "100")
        .setting("salesforce_bulk_poll_timeout_secs", "1")
        .start()
        .await;
    sync_past_the_poll_timeout(&bed).await;
    bed
}

/// How many keys of the tenant's store match `pattern` (SQL LIKE): parked
/// records and kept jobs are `bulk/…` and `bulkjob/…`.
fn bulk_keys(bed: &Bed, pattern: &str) -> i64 {
    let conn = bed.tenant.database.connect().unwrap();
    conn.query_row("SELECT COUNT(*) FROM kv WHERE key LIKE ?1", [pattern], |r| r.get(0)).unwrap()
}

/// A run that stops after Salesforce accepted a Bulk API job (here: the job
/// outlives the poll timeout) leaves the job's id with its records; the next
/// run reads that job's results instead of uploading the records again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_by_a_stopped_run_is_taken_up_not_sent_again() {
    let bed = stopped_with_its_job_held().await;
    let jobs = bed.salesforce.bulk_jobs();
    assert_eq!(jobs, 1);
    assert_eq!(bed.salesforce.count("Account"), 3_000, "Salesforce applied the job");

    bed.salesforce.hold_bulk_jobs(false);
    let writes = bed.salesforce.writes();
    let resumed = bed.sync().await;
    succeeded(&resumed);
    assert_eq!(bed.salesforce.bulk_jobs(), jobs, "no job uploaded again");
    assert_eq!(bed.salesforce.writes(), writes, "no record written again");
    assert_eq!(resumed.counts("customer").created, 3_000, "the job's outcomes are recorded: {resumed:?}");
    assert_eq!(resumed.counts("customer").resumed, 3_000, "and said to come from the stopped run's job");
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &resumed.run_id).unwrap();
    assert_eq!(rows.iter().filter(|r| r.action == "bulk-resume" && r.outcome == "created").count(), 3_000);
    assert_eq!(bulk_keys(&bed, "bulk%"), 0, "nothing stays parked");
    let idle = bed.sync().await;
    succeeded(&idle);
    assert_eq!(idle.counts("customer").resumed, 0);
    assert_eq!(bed.salesforce.writes(), writes);
}

/// A change event applied after a run stopped with its job held: the job's
/// outcomes are recorded first, so the event's newer version is what the
/// record's state says Salesforce holds, and the next sync writes nothing
/// again (recorded after, the job's older version would have been taken
/// for Salesforce's, and the record written a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_after_a_stopped_job_is_written_once_after_the_job_is_recorded() {
    let bed = stopped_with_its_job_held().await;
    bed.salesforce.hold_bulk_jobs(false);
    let id = bed.customer_ids[7];
    bed.clock.advance(std::time::Duration::from_secs(5));
    bed.netsuite.rename_customer(id, "Renamed After The Stop Ltd").unwrap();
    bed.queue_events(&[("customer", id, "edit")]);
    let writes = bed.salesforce.writes();
    let events = bed.bed.sync_kinds(runtime(), SyncMode::Events, &[]).await.unwrap();
    succeeded(&events);
    assert_eq!(events.counts("customer").resumed, 3_000, "{events:?}");
    assert_eq!(bed.sf("Account", id).1["Name"], serde_json::json!("Renamed After The Stop Ltd"));
    assert_eq!(bed.salesforce.writes(), writes + 1);
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(bed.salesforce.writes(), writes + 1, "nothing written again: {:?}", next.counts("customer"));
    // An events run with no stopped run behind it lists nothing and calls nobody.
    let calls = bed.salesforce.api_requests();
    let idle = bed.bed.sync_kinds(runtime(), SyncMode::Events, &[]).await.unwrap();
    succeeded(&idle);
    assert_eq!(bed.salesforce.api_requests(), calls);
}

/// Contacts synced alone after a run stopped with its customers' job held:
/// that job's outcomes are recorded first, so the contacts find their
/// Accounts instead of waiting for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_synced_alone_after_a_stopped_customer_job_find_their_accounts() {
    let bed = stopped_with_its_job_held().await;
    let at = bed.clock.now_secs() - 60;
    bed.netsuite.seed_contacts(50, &bed.customer_ids[..10], at, 3).unwrap();
    bed.salesforce.hold_bulk_jobs(false);
    let contact = [host_harness::host::RecordKind::Contact];
    let report = bed.bed.sync_kinds(runtime(), SyncMode::Incremental, &contact).await.unwrap();
    succeeded(&report);
    let c = report.counts("contact");
    assert_eq!((c.created, c.deferred), (50, 0), "{report:?}");
    assert_eq!(report.counts("customer").resumed, 3_000, "reported, though not asked for: {report:?}");
    assert_eq!(bulk_keys(&bed, "bulk%"), 0, "nothing stays parked");
}

/// A replay after a run stopped with its job held (since ended): the job
/// carried a newer version of a record whose earlier write failed, so the
/// job's outcomes are recorded first and settle that failure; the replay
/// does not send the older version after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_stopped_job_does_not_send_an_older_version_after_it() {
    let bed = bed(3_000)
        .setting("salesforce_bulk_threshold", "100")
        .setting("salesforce_bulk_poll_timeout_secs", "1")
        .start()
        .await;
    succeeded(&bed.sync().await);
    let id = bed.customer_ids[7];
    bed.clock.advance(std::time::Duration::from_secs(60));
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Account".into(),
        field: "Name".into(),
        contains: "Embargoed".into(),
        message: "Accounts under embargo need approval".into(),
    }));
    bed.netsuite.rename_customer(id, "Embargoed One Ltd").unwrap();
    let failed = bed.sync().await;
    assert_eq!(failed.counts("customer").failed, 1, "{failed:?}");
    bed.salesforce.set_validation_rule(None);
    // Every customer changed (a Bulk job), this one renamed again; the run
    // stops with the job applied but not ended.
    bed.clock.advance(std::time::Duration::from_secs(60));
    let now = bed.clock.now_secs();
    bed.netsuite.execute(&format!("UPDATE customer SET phone = '+1 212 555 0199', lastmodifieddate = {now}")).unwrap();
    bed.netsuite.rename_customer(id, "Version Two Ltd").unwrap();
    sync_past_the_poll_timeout(&bed).await;
    assert_eq!(bed.sf("Account", id).1["Name"], serde_json::json!("Version Two Ltd"), "the job was applied");
    // While the job runs, a replay stops naming it and sends nothing.
    let writes = bed.salesforce.writes();
    let early = bed.replay_all().await;
    assert_eq!(early.status, "failed", "{early:?}");
    assert!(early.error.as_deref().unwrap_or_default().contains("7508"), "names the job: {early:?}");
    assert_eq!(bed.salesforce.writes(), writes);
    bed.salesforce.hold_bulk_jobs(false);
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").resumed, 3_000, "{replay:?}");
    assert_eq!(bed.sf("Account", id).1["Name"], serde_json::json!("Version Two Ltd"), "{replay:?}");
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(bed.sf("Account", id).1["Name"], serde_json::json!("Version Two Ltd"));
}

/// A process killed right after closing a Bulk API job can lose the job's
/// id and records with the writes not yet committed (the host commits in
/// groups), while the marks of writes on their way, committed before the
/// close, stay. The next run audits what the job did from its results
/// (`bulk-resume`), then writes the records again: no write Salesforce
/// applied goes unaudited, and none is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_record_was_lost_is_audited_from_its_results() {
    let bed = stopped_with_its_job_held().await;
    assert_eq!(bed.salesforce.count("Account"), 3_000, "Salesforce applied the job");
    // The group holding the job's id and its parked records never committed.
    let conn = bed.tenant.database.connect().unwrap();
    assert!(conn.execute("DELETE FROM kv WHERE key LIKE 'bulk%'", []).unwrap() > 0);

    bed.salesforce.hold_bulk_jobs(false);
    let next = bed.sync().await;
    succeeded(&next);
    let rows = host_harness::audit::for_run(&conn, "demo", &next.run_id).unwrap();
    let resumed: Vec<_> = rows.iter().filter(|r| r.action == "bulk-resume").collect();
    assert_eq!(resumed.len(), 3_000, "{:?}", next.counts("customer"));
    assert!(resumed.iter().all(|r| r.outcome == "created" && r.salesforce_id.is_some()), "{:?}", resumed[0]);
    // The job's outcomes are counted (resumed), then the records are
    // written again, as updates of the same records: the report says what
    // the audit rows say.
    let c = next.counts("customer");
    assert_eq!((c.created, c.updated, c.resumed, c.read), (3_000, 3_000, 3_000, 3_000), "{c:?}");
    assert_eq!(bed.salesforce.count("Account"), 3_000);
}

/// A full job is left to Salesforce while the next one fills. A run that
/// stops then (here: NetSuite refuses it half-way) leaves the job with its
/// records; the next run records its outcomes and sends none of them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_while_salesforce_runs_its_job_leaves_the_job_to_the_next() {
    let bed = one_request_at_a_time(3_000)
        .setting("salesforce_bulk_threshold", "100")
        .setting("salesforce_bulk_job_records", "1000")
        .start()
        .await;
    let stopped = bed.sync_stopped_after(15).await;
    assert_eq!(stopped.counts("customer").created, 0, "no outcome recorded yet");
    assert_eq!(bed.salesforce.bulk_jobs(), 1, "the first job went before the read stopped");
    assert_eq!(bed.salesforce.count("Account"), 1_000, "Salesforce applied it");
    assert_eq!(bulk_keys(&bed, "bulkjob/%"), 1, "its outcomes were not read: the job waits for the next run");

    let resumed = bed.sync().await;
    succeeded(&resumed);
    assert_eq!(resumed.counts("customer").created, 3_000, "{resumed:?}");
    // The first job's thousand were read by the stopped run.
    assert_eq!(resumed.counts("customer").resumed, 1_000, "{resumed:?}");
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &resumed.run_id).unwrap();
    let actions = |action: &str| rows.iter().filter(|r| r.action == action).count();
    assert_eq!((actions("bulk-resume"), actions("bulk-write")), (1_000, 2_000));
    assert_eq!(bed.salesforce.count("Account"), 3_000);
    assert_eq!(bed.salesforce.writes(), 3_000, "no record written twice");
    assert_eq!(bed.salesforce.bulk_jobs(), 3);
    assert_eq!(bulk_keys(&bed, "bulk%"), 0, "nothing stays parked");
}

/// A run that stops before its first job fills leaves that job to the
/// next run, uploaded and closed: the next run records its outcomes and
/// reads on, instead of reading its records again (runs stopped every few
/// seconds never got past the first job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_before_its_first_job_filled_leaves_that_job_to_the_next() {
    let bed = one_request_at_a_time(3_000).setting("salesforce_bulk_threshold", "100").start().await;
    let stopped = bed.sync_stopped_after(15).await;
    assert_eq!(stopped.counts("customer").created, 0, "no outcome recorded yet: {stopped:?}");
    assert_eq!(bed.salesforce.bulk_jobs(), 1, "the open job went as the run stopped");
    let sent = bed.salesforce.count("Account");
    assert!((1_000..3_000).contains(&sent), "{sent}");
    assert_eq!(bulk_keys(&bed, "bulkjob/%"), 1, "left to the next run");

    let resumed = bed.sync().await;
    succeeded(&resumed);
    assert_eq!(resumed.counts("customer").created, 3_000, "{resumed:?}");
    assert_eq!(u64::from(resumed.counts("customer").resumed), sent, "{resumed:?}");
    assert_eq!(bed.salesforce.count("Account"), 3_000);
    assert_eq!(bed.salesforce.writes(), 3_000, "no record written twice");
    assert_eq!(bulk_keys(&bed, "bulk%"), 0, "nothing stays parked");
}

/// A `--full` read over a kept cursor, stopped before any Bulk job's
/// outcome is recorded, goes on at the next run: the old cursor is not
/// taken for a finished re-read. Here the change is one NetSuite makes
/// without moving `lastmodifieddate` (as a renamed term does), which only a
/// full read finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_stopped_before_its_first_bulk_outcome_goes_on_at_the_next_run() {
    let bed = one_request_at_a_time(3_000)
        .setting("salesforce_bulk_threshold", "100")
        .setting("salesforce_bulk_job_records", "1000")
        .start()
        .await;
    succeeded(&bed.sync().await);
    bed.netsuite.execute("UPDATE customer SET phone = '+15550001111'").unwrap();
    let at = bed.netsuite.queries() + 15;
    bed.netsuite.after_queries(at, |ns| ns.fail_next(&[simulators::netsuite::ScriptedFailure::TooManyRequests; 4]));
    let stopped = bed.full_sync().await;
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    assert_eq!(stopped.counts("customer").updated, 0, "no outcome recorded yet: {stopped:?}");

    let next = bed.sync().await;
    succeeded(&next);
    let stale: Vec<i64> =
        bed.customer_ids.iter().copied().filter(|&id| bed.sf("Account", id).1["Phone"] != "+15550001111").collect();
    assert!(stale.is_empty(), "{} Accounts keep the old phone: {next:?}", stale.len());
    let again = bed.sync().await;
    succeeded(&again);
    assert_eq!(again.counts("customer").read, 0, "the full read is over: {again:?}");
}

/// The next job is uploaded before the job before it ends; when that one
/// does not end in time the run stops, and the next job, never closed, is
/// aborted: Salesforce applies nothing of it, and the next run writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_predecessor_does_not_end_is_aborted_unapplied() {
    let bed = bed(3_000)
        .setting("salesforce_bulk_threshold", "100")
        .setting("salesforce_bulk_job_records", "1000")
        .setting("salesforce_bulk_poll_timeout_secs", "1")
        .start()
        .await;
    sync_past_the_poll_timeout(&bed).await;
    assert_eq!(bed.salesforce.bulk_job_states(), ["InProgress", "Aborted"]);
    assert_eq!(bed.salesforce.count("Account"), 1_000, "only the first job was applied");

    bed.salesforce.hold_bulk_jobs(false);
    let resumed = bed.sync().await;
    succeeded(&resumed);
    assert_eq!(resumed.counts("customer").created, 3_000, "{resumed:?}");
    assert_eq!(bed.salesforce.writes(), 3_000, "no record written twice");
}

/// A Bulk API run over every customer, changed since the first sync (a
/// new phone; customer `changed`, the first company, is read first and
/// renamed `First Version Ltd`), in which NetSuite runs `again` (an UPDATE
/// naming `{changed}` and `{max}`, the newest lastmodifieddate) after the
/// second page: the run reads what it changes again, last. `before` runs
/// just before that run, given `changed`.
async fn bulk_run_reading_again(bed: &Bed, again: &'static str, before: impl FnOnce(i64)) -> (i64, RunReport) {
    succeeded(&bed.sync().await);
    let changed = bed.netsuite.id_pairs("SELECT id, id FROM customer WHERE isperson = 'F' ORDER BY id").unwrap()[0].0;
    before(changed);
    let now = bed.clock.now_secs();
    bed.netsuite
        .execute(&format!("UPDATE customer SET phone = '+1 555 0100', lastmodifieddate = {now} - 300 + (id % 250)"))
        .unwrap();
    bed.netsuite
        .execute(&format!(
            "UPDATE customer SET companyname = 'First Version Ltd', lastmodifieddate = {now} - 400 WHERE id = {changed}"
        ))
        .unwrap();
    let at = bed.netsuite.queries() + support::ZONE_CHECK_QUERIES + 2;
    bed.netsuite.after_queries(at, move |ns| {
        let max = "(SELECT MAX(lastmodifieddate) FROM customer)";
        ns.execute(&again.replace("{changed}", &changed.to_string()).replace("{max}", max)).unwrap();
    });
    let report = bed.sync().await;
    succeeded(&report);
    (changed, report)
}

/// The names customer `id` was written with in run `run_id`, in order.
fn names_written(bed: &Bed, run_id: &str, id: i64) -> Vec<String> {
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", run_id).unwrap();
    rows.iter()
        .filter(|r| r.netsuite_id == id.to_string() && r.outcome == "updated")
        .map(|r| {
            let list: Vec<serde_json::Value> = serde_json::from_str(&r.transformations).unwrap();
            let name = list.iter().find(|t| t["field"] == "Name").unwrap();
            name["new"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Salesforce fails both rows of a record a job holds twice (reference:
/// de-duplicate per batch): the job holding the first version goes before
/// the second joins one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_read_twice_in_a_bulk_run_lands_twice_in_read_order() {
    let bed = bed(1_000).setting("salesforce_bulk_threshold", "100").setting("netsuite_page_size", "100").start().await;
    let (changed, report) = bulk_run_reading_again(
        &bed,
        "UPDATE customer SET companyname = 'Read Twice Ltd', lastmodifieddate = {max} + 1 WHERE id = {changed}",
        |_| {},
    )
    .await;
    let c = report.counts("customer");
    assert_eq!((c.failed, c.updated), (0, 1_001), "{c:?}");
    assert_eq!(bed.sf("Account", changed).1["Name"], "Read Twice Ltd");
    assert_eq!(names_written(&bed, &report.run_id, changed), ["First Version Ltd", "Read Twice Ltd"]);
}

/// A version Bulk API cannot carry (`#N/A` is its "set null") goes through
/// Composite, which does not wait for jobs. Here a thousand of them fill a
/// Composite request while the job holding an earlier version of one is
/// still open: that job goes first, and the request waits for its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_version_sent_through_composite_lands_after_the_job_with_the_first() {
    let bed = bed(3_000).setting("salesforce_bulk_threshold", "100").setting("netsuite_page_size", "100").start().await;
    let (changed, report) = bulk_run_reading_again(
        &bed,
        "UPDATE customer SET companyname = '#N/A', lastmodifieddate = {max} + 1 WHERE id = {changed} OR id IN
             (SELECT id FROM customer WHERE isperson = 'F' ORDER BY lastmodifieddate DESC LIMIT 1000)",
        |_| {},
    )
    .await;
    let c = report.counts("customer");
    assert_eq!((c.failed, c.updated), (0, 3_001), "{c:?}");
    assert_eq!(bed.sf("Account", changed).1["Name"], "#N/A");
    assert_eq!(names_written(&bed, &report.run_id, changed), ["First Version Ltd", "#N/A"]);
}

/// The first version of `changed` failed (a lock) and was not sent again;
/// the second landed, the only one written.
fn only_the_second_version_landed(bed: &Bed, changed: i64, report: &RunReport) {
    let c = report.counts("customer");
    assert_eq!((c.failed, c.updated), (1, 1_000), "{c:?}");
    assert_eq!(bed.sf("Account", changed).1["Name"], "Read Twice Ltd");
    assert_eq!(names_written(bed, &report.run_id, changed), ["Read Twice Ltd"]);
}

/// Bulk API loads in parallel: a row whose record (or parent) another
/// transaction holds fails UNABLE_TO_LOCK_ROW. The record is sent again
/// through Composite and lands; its one audit entry says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_row_refused_for_a_row_lock_is_sent_again_through_composite() {
    let bed = bed(600).setting("salesforce_bulk_threshold", "100").start().await;
    succeeded(&bed.sync().await);
    let locked = bed.customer_ids[42];
    let now = bed.clock.now_secs();
    bed.netsuite.execute(&format!("UPDATE customer SET phone = '+1 555 0142', lastmodifieddate = {now}")).unwrap();
    // Held while the job is opened, filled, closed and run, and during the
    // first Composite attempt after it.
    bed.salesforce.hold_row_lock("Account", &locked.to_string(), 4);
    let jobs = bed.salesforce.bulk_jobs();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(bed.salesforce.bulk_jobs(), jobs + 1);
    let c = report.counts("customer");
    assert_eq!((c.updated, c.failed), (600, 0), "{c:?}");
    assert_eq!(bed.sf("Account", locked).1["Phone"], "+15550142");
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let of_locked: Vec<_> = rows.iter().filter(|r| r.netsuite_id == locked.to_string()).collect();
    assert_eq!(of_locked.len(), 1, "{of_locked:?}");
    assert_eq!((of_locked[0].action.as_str(), of_locked[0].outcome.as_str()), ("write", "updated"));
    assert_eq!(rows.iter().filter(|r| r.action == "bulk-write" && r.outcome == "updated").count(), 599);
}

/// A row lock fails the first version of a record read twice; the second
/// version is in the next job (150 more records, read last, fill it past
/// "too small for a job"). Sending the first again would overwrite the
/// second: its failure stands, and the second lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_first_version_is_not_sent_again_over_its_second() {
    let bed = bed(1_000).setting("salesforce_bulk_threshold", "100").setting("netsuite_page_size", "100").start().await;
    let (changed, report) = bulk_run_reading_again(
        &bed,
        "UPDATE customer SET companyname = 'Read Twice Ltd', lastmodifieddate = {max} + 1 WHERE id = {changed} OR id IN
             (SELECT id FROM customer WHERE isperson = 'F' ORDER BY lastmodifieddate DESC LIMIT 150)",
        // The first job is opened, filled and closed, and runs with the lock held.
        |changed| bed.salesforce.hold_row_lock("Account", &changed.to_string(), 4),
    )
    .await;
    only_the_second_version_landed(&bed, changed, &report);
    // Nothing is left to replay: the second version's landing settled the first's failure.
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").updated, 0);
}

/// The same through Composite: the first version is refused while the
/// request holding the second waits to go after it. The second lands; the
/// first is not sent again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_first_version_in_a_composite_request_is_not_sent_again_over_its_second() {
    let bed =
        bed(1_000).setting("salesforce_bulk_threshold", "100000").setting("netsuite_page_size", "100").start().await;
    let (changed, report) = bulk_run_reading_again(
        &bed,
        "UPDATE customer SET companyname = 'Read Twice Ltd', lastmodifieddate = {max} + 1 WHERE id = {changed}",
        // Held during the first Composite request, which carries the first version.
        |changed| bed.salesforce.hold_row_lock("Account", &changed.to_string(), 1),
    )
    .await;
    assert_eq!(bed.salesforce.bulk_jobs(), 0);
    only_the_second_version_landed(&bed, changed, &report);
}
