//! The NetSuite source against the NetSuite simulator: record shapes,
//! contacts and vendors, deletions, incremental reading past the 100,000-row
//! ceiling, late commits, token lifetimes, TBA and M2M, errors and escaping.

mod support;

use host_harness::host::{Cursor, RecordKind, describe_error};
use serde_json::Value;
use simulators::keys::{KeyPair, Signing};
use simulators::netsuite::ScriptedFailure;
use std::time::Duration;
use support::{bed, es256_key, ps256_key, runtime, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_inactive_records_and_missing_addresses_come_through() {
    let bed = bed(400).start().await;
    succeeded(&bed.sync().await);
    let (mut people, mut inactive, mut no_billing) = (0, 0, 0);
    for &id in &bed.customer_ids {
        let (_, f) = bed.sf("Account", id);
        let field = |c: &str| bed.netsuite.customer_field(id, c).unwrap();
        if field("isperson").as_deref() == Some("T") {
            people += 1;
            let name = format!("{} {}", field("firstname").unwrap(), field("lastname").unwrap());
            assert_eq!(f["Name"], Value::String(name), "person customer {id}");
        } else {
            assert_eq!(f["Name"].as_str(), field("companyname").as_deref(), "customer {id}");
        }
        let is_inactive = field("isinactive").as_deref() == Some("T");
        inactive += usize::from(is_inactive);
        assert_eq!(f["NetSuite_Inactive__c"], Value::Bool(is_inactive), "customer {id}");
        if field("defaultbillingaddress").is_none() {
            no_billing += 1;
            assert_eq!(f["BillingStreet"], Value::Null, "customer {id} has no billing address");
            assert_eq!(f["BillingCity"], Value::Null);
        }
    }
    assert!(people > 0 && inactive > 0 && no_billing > 0, "seed covers every shape: {people} {inactive} {no_billing}");

    // Inactivation and deletion in NetSuite reach Salesforce on the next run.
    let (a, b) = (bed.customer_ids[10], bed.customer_ids[20]);
    bed.netsuite.set_customer_inactive(a, true).unwrap();
    bed.netsuite.delete_record("customer", b).unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.updated, c.deleted), (1, 1), "{c:?}");
    assert_eq!(bed.sf("Account", a).1["NetSuite_Inactive__c"], Value::Bool(true));
    assert_eq!(bed.sf("Account", b).1["NetSuite_Deleted__c"], Value::Bool(true), "default action flags");
    // Seen again, a deletion is not applied twice.
    let again = bed.sync().await;
    assert_eq!(again.counts("customer").deleted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_can_delete_the_salesforce_record() {
    let bed = bed(50).setting("delete_action", "delete").start().await;
    succeeded(&bed.sync().await);
    let gone = bed.customer_ids[7];
    bed.netsuite.delete_record("customer", gone).unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").deleted, 1);
    assert!(bed.salesforce.find("Account", &gone.to_string()).is_none());
    assert_eq!(bed.salesforce.count("Account"), 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_and_vendors_arrive_linked_to_their_parents() {
    let bed = bed(40).start().await;
    let vendors = bed.netsuite.seed_vendors(15, 7).unwrap();
    let parents: Vec<i64> = bed.customer_ids.iter().copied().chain(vendors.iter().copied()).collect();
    let now = bed.clock.now_secs();
    bed.netsuite.seed_contacts(300, &parents, now - 7200, 9).unwrap();

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 40);
    assert_eq!(report.counts("vendor").created, 15);
    assert_eq!(report.counts("contact").created, 300);
    assert_eq!(bed.salesforce.count("Contact"), 300);

    let rows = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap();
    assert_eq!(rows.len(), 300);
    for (contact, company) in rows {
        let (_, fields) = bed.sf("Contact", contact);
        if bed.customer_ids.contains(&company) {
            assert_eq!(fields["AccountId"].as_str(), Some(bed.sf("Account", company).0.as_str()), "contact {contact}");
        } else {
            assert_eq!(
                fields["Vendor__c"].as_str(),
                Some(bed.sf("Vendor__c", company).0.as_str()),
                "contact {contact}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tba_and_m2m_under_every_algorithm_netsuite_accepts_sync_the_same_data() {
    let ps = bed(120).start().await;
    let tba = bed(120).setting("netsuite_auth", "tba").start().await;
    let mut m2m = vec![bed(120).key(es256_key()).start().await];
    for signing in [Signing::Ps384, Signing::Ps512] {
        m2m.push(bed(120).key(ps256_key().signing_as(signing)).start().await);
    }
    for signing in [Signing::Es384, Signing::Es512] {
        m2m.push(bed(120).key(KeyPair::generate(signing).unwrap()).start().await);
    }
    for b in [&ps, &tba].into_iter().chain(&m2m) {
        succeeded(&b.sync().await);
        assert_eq!(b.salesforce.count("Account"), 120);
    }
    assert_eq!(tba.netsuite.token_requests(), 0, "TBA signs each request instead");
    for b in &m2m {
        assert_eq!(b.netsuite.token_requests(), 1, "M2M obtained a token");
    }
    for &id in &ps.customer_ids {
        let expected = ps.sf("Account", id).1;
        assert_eq!(tba.sf("Account", id).1, expected, "customer {id} over TBA");
        for b in &m2m {
            assert_eq!(b.sf("Account", id).1, expected, "customer {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_reuses_the_m2m_token_and_replaces_a_revoked_one() {
    let bed = bed(30).start().await;
    succeeded(&bed.sync().await);
    assert_eq!(bed.netsuite.token_requests(), 1);
    let stored = bed.tenant.database.connect().unwrap().query_row(
        "SELECT value FROM kv WHERE bucket = 'credentials' AND key = 'netsuite_token'",
        [],
        |r| r.get::<_, Vec<u8>>(0),
    );
    let stored = stored.expect("the token is kept between runs");
    assert!(!String::from_utf8_lossy(&stored).contains("expires_at"), "kept sealed, not as text");

    bed.netsuite.rename_customer(bed.customer_ids[0], "Renamed Between Runs").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").updated, 1);
    assert_eq!(bed.netsuite.token_requests(), 1, "the second run signed nothing");

    // Revoked in NetSuite: the kept token is refused once, a new one is
    // obtained and kept, and the run goes on.
    bed.netsuite.revoke_tokens();
    bed.netsuite.rename_customer(bed.customer_ids[1], "Renamed After Revoking").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").updated, 1);
    assert_eq!(bed.netsuite.token_requests(), 2);
    succeeded(&bed.sync().await);
    assert_eq!(bed.netsuite.token_requests(), 2, "the new token is the one kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_token_is_not_used_once_the_login_settings_change() {
    let bed = bed(10).start().await;
    succeeded(&bed.sync().await);
    assert_eq!(bed.netsuite.token_requests(), 1);

    // Another certificate id: the kept token was issued to the old one, so
    // the run signs for the new one (which this account does not know).
    let report = bed.sync_with_setting("netsuite_certificate_id", "rotated-certificate").await;
    assert_eq!(report.status, "failed", "{report:?}");
    assert_eq!(bed.netsuite.token_requests(), 2, "the kept token was not used");
    let error = report.error.unwrap();
    assert!(error.contains("rotated-certificate"), "{error}");

    // Back to the mapped certificate: its kept token is still good.
    bed.netsuite.rename_customer(bed.customer_ids[0], "Renamed After The Rotation").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").updated, 1);
    assert_eq!(bed.netsuite.token_requests(), 2);

    // Another algorithm (or key) than the kept token's: the run signs anew,
    // so a key that cannot sign shows now, not when the token runs out.
    let report = bed.sync_with_setting("netsuite_signing_algorithm", "ES256").await;
    assert_eq!(report.status, "failed", "{report:?}");
    let error = report.error.unwrap();
    assert!(error.contains("netsuite_signing_algorithm"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tba_signature_with_the_wrong_secret_is_refused() {
    let bed = bed(10).setting("netsuite_auth", "tba").start().await;
    bed.set_secret("netsuite_token_secret", "not-the-token-secret").unwrap();
    let report = bed.sync().await;
    assert_eq!(report.status, "failed");
    let error = report.error.unwrap();
    assert!(error.contains("INVALID_LOGIN"), "{error}");
    assert!(!error.contains("not-the-token-secret"), "{error}");
    assert!(bed.netsuite.login_audit().iter().any(|r| r.contains("InvalidSignature")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_the_token_lifetime_gets_fresh_tokens() {
    let bed = bed(2000).setting("netsuite_page_size", "100").start().await;
    // Every page takes five simulated minutes: the run lasts well over an hour.
    bed.netsuite.set_query_duration(Duration::from_secs(300));
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 2000);
    assert!(bed.netsuite.token_requests() >= 2, "tokens: {}", bed.netsuite.token_requests());
    assert!(
        bed.netsuite.login_audit().is_empty(),
        "no request used an expired token: {:?}",
        bed.netsuite.login_audit()
    );
}

/// Every customer modified in the last few minutes, and a transaction that
/// started two minutes ago committing while the next run reads them: its
/// lastmodifieddate is already behind the cursor. Returns the late record.
fn late_commit_during_the_next_run(bed: &support::Bed) -> i64 {
    let now = bed.clock.now_secs();
    bed.netsuite.execute(&format!("UPDATE customer SET lastmodifieddate = {now} - 300 + (id % 250)")).unwrap();
    let late = bed.customer_ids[0];
    bed.netsuite.after_queries(bed.netsuite.queries() + support::ZONE_CHECK_QUERIES + 10, move |ns| {
        ns.execute(&format!(
            "UPDATE customer SET companyname = 'Late Commit Ltd', lastmodifieddate = lastmodifieddate - 120 WHERE id = {late}"
        ))
        .unwrap();
    });
    late
}

/// The first sync's scan takes `secs` (simulated) seconds: the clock moves
/// on while its pages are read.
fn scan_takes(bed: &support::Bed, secs: u64) {
    let clock = bed.clock.clone();
    let at = bed.netsuite.queries() + support::ZONE_CHECK_QUERIES + 4;
    bed.netsuite.after_queries(at, move |_| clock.advance(Duration::from_secs(secs)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_during_a_first_sync_is_read_once_its_window_has_passed() {
    let bed = bed(1000).setting("netsuite_page_size", "100").start().await;
    let late = late_commit_during_the_next_run(&bed);
    scan_takes(&bed, 5);
    succeeded(&bed.sync().await);
    assert_ne!(bed.sf("Account", late).1["Name"], "Late Commit Ltd");
    let handed = stored_cursor(&bed, "customer").unwrap();
    assert!(handed["recheck"]["due"].is_i64(), "{handed}");

    // Until late commits can no longer land in the window before the
    // hand-over, runs read from the cursor: the thousand rows in it are not
    // read again by each of them.
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(next.counts("customer").read, 0, "{:?}", next.counts("customer"));
    assert_ne!(bed.sf("Account", late).1["Name"], "Late Commit Ltd");

    // The first run after that re-reads the window once.
    bed.clock.advance(Duration::from_secs(601));
    let after = bed.sync().await;
    succeeded(&after);
    assert_eq!(bed.sf("Account", late).1["Name"], "Late Commit Ltd");
    let c = after.counts("customer");
    assert_eq!((c.read, c.updated, c.created), (1, 1, 0), "overlap rows already handled are dropped: {c:?}");
    let settled = stored_cursor(&bed, "customer").unwrap();
    assert!(settled.get("recheck").is_none() && settled["settled"] == true, "{settled}");
    assert_eq!(settled["last_modified"], handed["last_modified"], "the cursor itself did not move: {settled}");

    let before = bed.netsuite.queries();
    succeeded(&bed.sync().await);
    let queries = &bed.netsuite.recent_queries()[..];
    let idle = &queries[queries.len() - (bed.netsuite.queries() - before) as usize..];
    let customers: Vec<&String> = idle.iter().filter(|q| q.contains("FROM customer c") && !zone_check(q)).collect();
    assert!(
        customers.len() == 1
            && customers[0].contains(&format!("TO_TIMESTAMP('{}'", handed["last_modified"].as_str().unwrap())),
        "later runs read from the cursor itself: {customers:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_short_first_sync_a_save_in_the_hand_over_second_is_read_by_the_next_run() {
    let bed = bed(1000).setting("netsuite_page_size", "100").start().await;
    // Every customer saved in the current second: the scan begins in it.
    let now = bed.clock.now_secs();
    bed.netsuite.execute(&format!("UPDATE customer SET lastmodifieddate = {now}")).unwrap();
    succeeded(&bed.sync().await);
    let handed = stored_cursor(&bed, "customer").unwrap();
    assert!(handed.get("recheck").is_none() && handed["settled"] == false, "{handed}");

    // Saved in that same second after the scan passed it (lowest id).
    let first = bed.customer_ids[0];
    bed.netsuite.execute(&format!("UPDATE customer SET companyname = 'Same Second Ltd' WHERE id = {first}")).unwrap();
    succeeded(&bed.sync().await);
    assert_eq!(bed.sf("Account", first).1["Name"], "Same Second Ltd");
}

/// Whether `query` is one of a run's time zone check (`src/sync/zone.rs`).
fn zone_check(query: &str) -> bool {
    query.contains("c.lastmodifieddate DESC") || query.contains("WHERE c.id = ")
}

/// A run, and how many pages of customer changes it asked NetSuite for.
async fn sync_counting_customer_pages(bed: &support::Bed) -> (host_harness::scheduler::RunReport, usize) {
    let before = bed.netsuite.queries();
    let report = bed.sync().await;
    succeeded(&report);
    let queries = bed.netsuite.recent_queries();
    let run = &queries[queries.len() - (bed.netsuite.queries() - before) as usize..];
    // Not the scan's pages, nor the time zone's check.
    let page = |q: &&String| q.contains("FROM customer c") && !q.ends_with("ORDER BY c.id") && !zone_check(q);
    (report, run.iter().filter(page).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_first_sync_changes_move_the_cursor_without_re_reading_the_hand_over_window() {
    let bed = bed(1000).setting("netsuite_page_size", "100").start().await;
    // A bulk import: every customer saved in one second, a minute ago.
    let at = bed.clock.now_secs() - 60;
    bed.netsuite.execute(&format!("UPDATE customer SET lastmodifieddate = {at}")).unwrap();
    scan_takes(&bed, 5);
    succeeded(&bed.sync().await);
    let (_, pages) = sync_counting_customer_pages(&bed).await;
    assert_eq!(pages, 1, "the imported second is not read again");

    // A later save moves the cursor; the runs after it re-read the overlap
    // window before it, but not behind the hand-over.
    let edited = bed.customer_ids[500];
    bed.netsuite.rename_customer_any(edited, "Edited After Import").unwrap();
    let (moved, pages) = sync_counting_customer_pages(&bed).await;
    assert_eq!((moved.counts("customer").updated, pages), (1, 1), "{:?}", moved.counts("customer"));
    let (_, pages) = sync_counting_customer_pages(&bed).await;
    assert_eq!(pages, 1, "the overlap re-read stops at the hand-over");
    assert_eq!(bed.sf("Account", edited).1["Name"], "Edited After Import");

    // Once due, the hand-over window is re-read once (every row dropped as
    // already handled), and then no more.
    bed.clock.advance(Duration::from_secs(601));
    let (recheck, pages) = sync_counting_customer_pages(&bed).await;
    let c = recheck.counts("customer");
    assert_eq!((c.read, c.updated, c.created), (0, 0, 0), "{c:?}");
    assert!(pages >= 10, "the thousand imported rows, a hundred a page: {pages}");
    assert!(stored_cursor(&bed, "customer").unwrap().get("recheck").is_none());
    let (_, pages) = sync_counting_customer_pages(&bed).await;
    assert_eq!(pages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_during_an_incremental_run_is_picked_up_by_the_next_run() {
    let bed = bed(1000).setting("netsuite_page_size", "100").start().await;
    succeeded(&bed.sync().await);
    bed.clock.advance(Duration::from_secs(3600));
    succeeded(&bed.sync().await);
    // Every customer changed in the last few minutes; while the changes are
    // read, a transaction that began two minutes ago commits behind them.
    let late = late_commit_during_the_next_run(&bed);
    let changed = bed.sync().await;
    succeeded(&changed);
    assert_eq!(changed.counts("customer").read, 1000);
    assert_ne!(bed.sf("Account", late).1["Name"], "Late Commit Ltd");

    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(bed.sf("Account", late).1["Name"], "Late Commit Ltd");
    let c = next.counts("customer");
    assert_eq!((c.read, c.updated, c.created), (1, 1, 0), "overlap rows already handled are dropped: {c:?}");
}

/// SuiteQL gives times in the integration user's time zone. When it moves
/// west (a daylight-saving fall-back), a change made soon after a run shows
/// a time before that run's cursor, further back than the overlap window:
/// the run measures the zone first and reads from the cursor moved back by
/// the difference. A move east leaves the cursor behind, which only reads
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_after_the_user_s_time_zone_moves_west_is_read() {
    let bed = bed(3).start().await;
    bed.netsuite.set_user_time_zone(-7 * 3600);
    succeeded(&bed.sync().await);
    bed.clock.advance(Duration::from_secs(3600));
    let (first, other) = (bed.customer_ids[2], bed.customer_ids[1]);
    bed.netsuite.rename_customer_any(first, "Renamed Before The Clocks Went Back").unwrap();
    succeeded(&bed.sync().await);
    // Twenty minutes later the clocks go back an hour, and a user edits:
    // NetSuite shows the edit forty minutes before the cursor.
    bed.clock.advance(Duration::from_secs(20 * 60));
    bed.netsuite.set_user_time_zone(-8 * 3600);
    bed.netsuite.rename_customer_any(other, "Renamed After The Clocks Went Back").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(bed.sf("Account", other).1["Name"], "Renamed After The Clocks Went Back");
    let c = report.counts("customer");
    assert_eq!((c.updated, c.created), (1, 0), "the other customer read again is unchanged: {c:?}");
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let moved: Vec<_> = rows.iter().filter(|r| r.action == "time-zone").collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].outcome, "moved");
    assert!(moved[0].transformations.contains(r#""old":"-07:00""#), "{}", moved[0].transformations);
    assert!(moved[0].transformations.contains(r#""new":"-08:00""#), "{}", moved[0].transformations);
    // The cursor is in the new zone now: the next run moves it no further.
    let cursor = stored_cursor(&bed, "customer").unwrap();
    assert_eq!(cursor["zone"], -8 * 3600, "{cursor}");
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(next.counts("customer").updated, 0);

    // Back east an hour: an edit made now shows a later time than any
    // before, and is read.
    bed.clock.advance(Duration::from_secs(60));
    bed.netsuite.set_user_time_zone(-7 * 3600);
    bed.netsuite.rename_customer_any(first, "Renamed When The Clocks Went Forward").unwrap();
    let east = bed.sync().await;
    succeeded(&east);
    assert_eq!(bed.sf("Account", first).1["Name"], "Renamed When The Clocks Went Forward");
}

/// A run learns the zone from one SuiteQL request while the record changed
/// last is the same, and asks the record API only when another changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_zone_costs_one_request_while_nothing_changed() {
    let bed = bed(3).start().await;
    succeeded(&bed.sync().await);
    let records = bed.netsuite.record_requests();
    succeeded(&bed.sync().await);
    assert_eq!(bed.netsuite.record_requests(), records, "nothing changed: no record API request");
    // A customer changes: measured again on it, no move.
    bed.clock.advance(Duration::from_secs(60));
    bed.netsuite.rename_customer_any(bed.customer_ids[0], "Renamed Last").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.record_requests(), records + 1);
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    assert!(!rows.iter().any(|r| r.action == "time-zone"), "{rows:?}");
}

/// The stored cursor of `kind`'s change stream.
fn stored_cursor(bed: &support::Bed, kind: &str) -> Option<Value> {
    let conn = bed.tenant.database.connect().unwrap();
    let key = format!("cursor/{kind}");
    let bytes: Option<Vec<u8>> =
        conn.query_row("SELECT value FROM kv WHERE bucket = 'state' AND key = ?1", [key], |r| r.get(0)).ok();
    bytes.map(|b| serde_json::from_slice(&b).unwrap())
}

/// The customer scans among the last `last` SuiteQL queries (all kept
/// when None): each one's lower id bound, in order.
fn customer_scans(bed: &support::Bed, last: Option<u64>) -> Vec<u64> {
    customer_scan_bounds(bed, last).into_iter().map(|(after, _)| after).collect()
}

/// As [`customer_scans`], with each query's upper id bound, if it has one.
fn customer_scan_bounds(bed: &support::Bed, last: Option<u64>) -> Vec<(u64, Option<u64>)> {
    let recent = bed.netsuite.recent_queries();
    let from = last.map_or(0, |n| recent.len() - n as usize);
    let number = |text: &str| text.split(' ').next().unwrap().parse().unwrap();
    recent[from..]
        .iter()
        .filter(|q| q.ends_with("ORDER BY c.id"))
        .map(|q| {
            let (_, after) = q.rsplit_once("WHERE c.id > ").unwrap();
            (number(after), after.split_once("AND c.id <= ").map(|(_, upto)| number(upto)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_reads_by_id_and_the_next_run_catches_a_row_changed_behind_it() {
    let bed = bed(1000).setting("netsuite_page_size", "100").start().await;
    // Seeded customers are modified at random times over a year: id order is not time order.
    let first = bed.customer_ids[0];
    bed.netsuite.after_queries(5, move |ns| {
        ns.execute(&format!(
            "UPDATE customer SET companyname = 'Changed Behind The Scan',
                 lastmodifieddate = (SELECT MAX(lastmodifieddate) FROM customer) + 1 WHERE id = {first}"
        ))
        .unwrap();
    });
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 1000);
    let mut scans = customer_scans(&bed, None);
    assert_eq!(scans[0], 0, "{scans:?}");
    // After the first page, three ranges read side by side (four requests in flight, one kept for deletions).
    let ranged = bed.netsuite.recent_queries().iter().filter(|q| q.contains("AND c.id <= ")).count();
    assert_eq!(ranged, 6, "two ranges bounded above, the last open-ended");
    scans.sort();
    assert_eq!(scans, (0..10).map(|k| k * 100).collect::<Vec<u64>>(), "ten pages of 100 by id, each once");
    assert_ne!(bed.sf("Account", first).1["Name"], "Changed Behind The Scan", "read before it changed");
    // The scan handed over to the change stream where changes stood when it began.
    let cursor = stored_cursor(&bed, "customer").unwrap();
    assert!(cursor.get("scan").is_none() && cursor["id"] == "0", "{cursor}");

    let before = bed.netsuite.queries();
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(bed.sf("Account", first).1["Name"], "Changed Behind The Scan");
    let c = next.counts("customer");
    assert_eq!((c.updated, c.created), (1, 0), "{c:?}");
    let scans = customer_scans(&bed, Some(bed.netsuite.queries() - before));
    assert!(scans.is_empty(), "the next run reads changes by time: {scans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_first_sync_an_idle_run_reads_each_kind_with_one_query_per_stream() {
    // Customers only: contacts and vendors have no rows.
    let bed = bed(20).start().await;
    let first = bed.sync_all().await;
    succeeded(&first);
    let before = bed.netsuite.queries();
    let idle = bed.sync_all().await;
    succeeded(&idle);
    let queries = &bed.netsuite.recent_queries()[..];
    let idle_queries = &queries[queries.len() - (bed.netsuite.queries() - before) as usize..];
    // The time zone's check (the record changed last is the same: no record
    // API request), then changes and deletions of each kind, by time: no
    // newest-change query, no scan.
    assert_eq!(idle_queries.len(), 7, "{idle_queries:#?}");
    assert!(idle_queries[0].ends_with("ORDER BY c.lastmodifieddate DESC, c.id DESC"), "{idle_queries:#?}");
    assert!(
        idle_queries[1..].iter().all(|q| q.contains("lastmodifieddate >=") || q.contains("deleteddate >=")),
        "{idle_queries:#?}"
    );
    assert!(!idle_queries.iter().any(|q| q.contains("MAX(")), "{idle_queries:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_read_in_ranges_and_stopped_half_way_goes_on_where_every_id_before_is_read() {
    // The next run goes on with the same settings, or with one request at a time (the
    // ranges left open are then read one after another).
    for resume_in_flight in [None, Some("1")] {
        let bed = bed(3000).setting("netsuite_page_size", "100").setting("http_max_retries", "3").start().await;
        // NetSuite gives out once pages of every range are under way: the
        // request waited for fails four times, the others once.
        bed.netsuite.after_queries(bed.netsuite.queries() + 15, |ns| {
            ns.fail_next(&[ScriptedFailure::TooManyRequests; 8]);
        });
        let stopped = bed.sync().await;
        assert_eq!(stopped.status, "stopped", "{stopped:?}");
        let ranged: Vec<String> =
            bed.netsuite.recent_queries().into_iter().filter(|q| q.contains("AND c.id <= ")).collect();
        assert!(!ranged.is_empty(), "the scan was split into ranges");
        let done = stopped.counts("customer").created;
        assert!(done > 0 && done < 3000, "{done}");
        let cursor = stored_cursor(&bed, "customer").unwrap();
        let after: u64 = cursor["scan"]["after"].as_str().unwrap().parse().unwrap();
        assert!(after > 0, "{cursor}");
        // The ranges still open, each from where it stands; every id outside
        // them is in Salesforce, and only ids inside them are read again.
        let open: Vec<(u64, Option<u64>)> = cursor["scan"]["open"]
            .as_array()
            .unwrap_or_else(|| panic!("the open ranges are stored: {cursor}"))
            .iter()
            .map(|r| (r["after"].as_u64().unwrap(), r["upto"].as_u64()))
            .collect();
        assert_eq!(open.iter().map(|r| r.0).min(), Some(after), "the lowest open range starts where `after` says");
        let inside = |id: u64| open.iter().any(|&(a, upto)| id > a && upto.is_none_or(|u| id <= u));
        let missing: Vec<i64> = bed
            .customer_ids
            .iter()
            .filter(|&&id| !inside(id as u64) && bed.salesforce.find("Account", &id.to_string()).is_none())
            .copied()
            .collect();
        assert!(missing.is_empty(), "outside the open ranges {open:?}, these are not in Salesforce: {missing:?}");
        let unread = bed.customer_ids.iter().filter(|&&id| inside(id as u64)).count() as u32;
        let beyond = bed.customer_ids.iter().filter(|&&id| id as u64 > after).count() as u32;
        assert!(unread < beyond, "what later ranges read is kept: {unread} of the {beyond} ids after {after} left");

        let (c, scans) = resume_the_scan(&bed, done, after, resume_in_flight).await;
        let within = |(from, to): (u64, Option<u64>)| {
            open.iter().any(|&(a, upto)| from >= a && upto.is_none_or(|u| to.is_some_and(|to| to <= u)))
        };
        let outside: Vec<_> = scans.into_iter().filter(|&q| !within(q)).collect();
        assert!(
            outside.is_empty(),
            "read again outside the open ranges {open:?}, after {outside:?} ({resume_in_flight:?})"
        );
        assert_eq!(c.updated, 0, "what the stopped run wrote is read again unchanged: {c:?}");
    }
}

/// Runs again after a scan of 3,000 customers stopped with `done` written
/// and its cursor after id `after`: the scan goes on there, writes the rest
/// and hands over to the change stream (with `netsuite_max_in_flight` set
/// to `in_flight` for that run, if given). Returns the run's customer counts
/// and the id bounds of its scan queries.
async fn resume_the_scan(
    bed: &support::Bed,
    done: u32,
    after: u64,
    in_flight: Option<&str>,
) -> (host_harness::scheduler::ObjectCounts, Vec<(u64, Option<u64>)>) {
    let before = bed.netsuite.queries();
    let resumed = match in_flight {
        Some(n) => bed.sync_with_setting("netsuite_max_in_flight", n).await,
        None => bed.sync().await,
    };
    succeeded(&resumed);
    let c = resumed.counts("customer");
    assert_eq!(done + c.created, 3000, "{c:?}");
    assert_eq!(bed.salesforce.count("Account"), 3000, "one Account per customer");
    let scans = customer_scan_bounds(bed, Some(bed.netsuite.queries() - before));
    // Ranges are read side by side: their first requests arrive in any order.
    assert_eq!(scans.iter().map(|s| s.0).min(), Some(after), "the scan went on where it stopped: {scans:?}");
    let cursor = stored_cursor(bed, "customer").unwrap();
    assert!(cursor.get("scan").is_none() && cursor["id"] == "0", "handed over to the change stream: {cursor}");
    (c, scans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_over_ids_that_jump_reads_every_row_once_however_unevenly_the_ranges_split() {
    let bed = bed(2000).setting("netsuite_page_size", "100").start().await;
    // The last 500 customers came much later: their ids are a million higher,
    // so the ranges, split by id span, hold 1,400 rows, none and 500.
    let cut = bed.customer_ids[1499];
    for sql in [
        format!("UPDATE customeraddressbook SET entity = entity + 1000000 WHERE entity > {cut}"),
        format!("UPDATE contact SET company = company + 1000000 WHERE company > {cut}"),
        format!("UPDATE customer SET id = id + 1000000 WHERE id > {cut}"),
    ] {
        bed.netsuite.execute(&sql).unwrap();
    }
    first_sync_writes_each_customer_once(&bed, 2000).await;
    assert!(bed.sf("Account", cut + 1_000_001).1["Name"].is_string(), "a moved id was read");
    let ranged = bed.netsuite.recent_queries().iter().filter(|q| q.contains("AND c.id <= ")).count();
    assert!(ranged >= 2, "the scan was split: {ranged} bounded queries");
    let cursor = stored_cursor(&bed, "customer").unwrap();
    assert!(cursor.get("scan").is_none(), "handed over to the change stream: {cursor}");
    next_run_reads_no_customer(&bed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_ends_early_hands_its_request_to_half_the_rows_of_another_and_none_is_read_twice() {
    let bed = bed(2000).setting("netsuite_page_size", "100").start().await;
    let mut ids = bed.customer_ids.clone();
    ids.sort();
    assert_eq!((ids[0], ids[1999]), (1, 2000), "seeded customers have ids 1 to 2000");
    // After the first page (ids to 100) the rest splits into (100, 733], (733, 1366] and (1366, …). The
    // first range keeps ids 101-200 and 401-733, the second none: when it ends, the first has 333 rows
    // counted left at one row an id so far, and is split 166 ids on, at 366 — while its page after 200 is
    // under way, which brings ids 401-500, past its new end: they are left to the new range.
    bed.netsuite.execute("DELETE FROM customer WHERE id BETWEEN 201 AND 400 OR id BETWEEN 734 AND 1366").unwrap();
    let kept = bed.netsuite.id_pairs("SELECT id, id FROM customer ORDER BY id").unwrap().len();
    assert_eq!(kept, 1167);
    first_sync_writes_each_customer_once(&bed, 1167).await;
    let queries = bed.netsuite.recent_queries();
    assert!(
        queries.iter().any(|q| q.contains("c.id > 366 AND c.id <= 733")),
        "the first range was split where half its counted rows lie: {:?}",
        queries.iter().filter(|q| q.contains("AND c.id <= ")).collect::<Vec<_>>()
    );
    next_run_reads_no_customer(&bed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_whose_highest_id_query_fails_splits_by_the_rows_counted_and_reads_each_once() {
    let bed = bed(3000).setting("netsuite_page_size", "100").setting("http_max_retries", "2").start().await;
    // The highest-id query is refused more times than the retries allow.
    bed.netsuite.fail_queries_containing("MAX(c.id)", ScriptedFailure::TooManyRequests, 10);
    first_sync_writes_each_customer_once(&bed, 3000).await;
    let queries = bed.netsuite.recent_queries();
    assert_eq!(bed.netsuite.query_failures_left("MAX(c.id)"), 7, "the highest id was asked three times, refused");
    let bounded: Vec<&String> = queries.iter().filter(|q| q.contains("AND c.id <= ")).collect();
    assert!(!bounded.is_empty(), "the scan was still split, by NetSuite's count of rows left");
    next_run_reads_no_customer(&bed).await;
}

/// A first sync that reads and creates each of `n` customers once, one
/// Account each, updating none (no row read twice).
async fn first_sync_writes_each_customer_once(bed: &support::Bed, n: u32) {
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.read, c.created, c.updated), (n, n, 0), "each customer read and written once: {c:?}");
    assert_eq!(bed.salesforce.count("Account"), u64::from(n), "one Account per customer");
}

/// The scan handed over to the change stream: the next run reads nothing.
async fn next_run_reads_no_customer(bed: &support::Bed) {
    let again = bed.sync().await;
    succeeded(&again);
    assert_eq!(again.counts("customer").read, 0, "the scan handed over: the next run reads nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_stopped_half_way_goes_on_by_id_where_it_stopped() {
    let bed = support::one_request_at_a_time(3000).start().await;
    // Fourteen pages read: the first thousand records are written (one
    // Composite call), the next ones wait for theirs when NetSuite gives out.
    let stopped = bed.sync_stopped_after(15).await;
    let done = stopped.counts("customer").created;
    assert!(done > 0 && done < 3000, "{done}");
    let cursor = stored_cursor(&bed, "customer").unwrap();
    let after: u64 = cursor["scan"]["after"].as_str().unwrap().parse().unwrap();
    assert!(after > 0, "{cursor}");
    assert!(cursor["scan"]["then"]["last_modified"].is_string(), "{cursor}");
    resume_the_scan(&bed, done, after, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_overlap_window_a_late_commit_is_missed() {
    let bed = bed(1000).setting("netsuite_page_size", "100").setting("netsuite_overlap_secs", "0").start().await;
    let late = late_commit_during_the_next_run(&bed);
    succeeded(&bed.sync().await);
    succeeded(&bed.sync().await);
    assert_ne!(bed.sf("Account", late).1["Name"], "Late Commit Ltd", "this is what the overlap window is for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_concurrency_pressure_are_retried() {
    let bed = bed(300).setting("netsuite_page_size", "100").start().await;
    bed.netsuite.fail_next(&[
        ScriptedFailure::TooManyRequests,
        ScriptedFailure::TooManyRequests,
        ScriptedFailure::InvalidLogin,
        ScriptedFailure::Unexpected,
    ]);
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 300);
}

/// NetSuite also answers 500 UNEXPECTED_ERROR to a query naming a column it
/// cannot read: once passing (above), it is retried; persisting, the run
/// stops after three attempts with the query's error and what to check, not
/// after the whole retry budget as if it were throttling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_unexpected_error_stops_the_run_after_three_attempts_and_says_what_to_check() {
    let bed = bed(300).setting("netsuite_page_size", "100").start().await;
    // Three failures: a fourth attempt would have succeeded.
    // The customer read's (not the time zone's check, which reads no join).
    bed.netsuite.fail_queries_containing("FROM customer c LEFT JOIN", ScriptedFailure::Unexpected, 3);
    let report = bed.sync().await;
    let error = report.error.expect("the run fails");
    assert!(error.contains("UNEXPECTED_ERROR") && error.contains("Records Catalog"), "{error}");
    assert!(!error.contains("still failing after"), "{error}");
    assert_eq!(bed.netsuite.query_failures_left("FROM customer c LEFT JOIN"), 0, "three attempts");
    // Once NetSuite answers again, the next run syncs everything.
    succeeded(&bed.sync().await);
    assert_eq!(bed.salesforce.count("Account"), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_keeps_within_its_share_of_the_account_concurrency_limit() {
    // An account that allows one request at a time, and slow queries.
    let within = bed(300).netsuite_concurrency(1).setting("netsuite_max_in_flight", "1").start().await;
    within.netsuite.set_latency(Duration::from_millis(40));
    succeeded(&within.sync().await);
    assert_eq!(within.netsuite.over_limit(), 0, "never more than one request in flight");

    // Allowed two, the connector reads deletions alongside changes; the
    // account refuses the second and the retry policy absorbs it.
    let over = bed(300).netsuite_concurrency(1).setting("netsuite_max_in_flight", "2").start().await;
    over.netsuite.set_latency(Duration::from_millis(40));
    let report = over.sync().await;
    succeeded(&report);
    assert!(over.netsuite.over_limit() > 0, "two requests were in flight together");
    assert_eq!(over.salesforce.count("Account"), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_rate_limit_fails_clearly_and_keeps_the_cursor() {
    let bed = support::one_request_at_a_time(300).start().await;
    succeeded(&bed.sync().await);
    for &id in &bed.customer_ids[..5] {
        bed.netsuite.set_customer_phone(id, "+1 212-555-0100").unwrap();
    }
    bed.netsuite.fail_next(&[ScriptedFailure::TooManyRequests; 4]);
    let failed = bed.sync().await;
    assert_eq!(failed.status, "stopped", "a limit that outlasts the retries stops the run cleanly");
    let error = failed.error.unwrap();
    assert!(error.starts_with("rate limited: NetSuite POST"), "{error}");
    assert!(error.contains("still failing after 4 attempts") && error.contains("kept its cursor"), "{error}");

    let retried = bed.sync().await;
    succeeded(&retried);
    assert_eq!(retried.counts("customer").updated, 5, "nothing was skipped by the failed run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_reported_with_the_table_and_the_fix() {
    let bed = bed(20).start().await;
    let vendors = bed.netsuite.seed_vendors(4, 2).unwrap();
    bed.netsuite.deny_table("customeraddressbookentityaddress");
    let report = bed.sync_all().await;
    assert_eq!(report.status, "failed");
    // The kind that cannot be read does not hold back the kinds after it.
    assert_eq!(report.counts("vendor").created, vendors.len() as u32, "{report:?}");
    let error = report.error.unwrap();
    assert!(error.contains("customer records: "), "the error names the kind: {error}");
    assert!(error.contains("SuiteQL read of all customer records returned HTTP 400"), "{error}");
    assert!(error.contains("Record 'customeraddressbookentityaddress' was not found"), "{error}");
    assert!(error.contains("lacks permission"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_cannot_change_a_query() {
    let bed = bed(30).start().await;
    let hostile = [
        "O'Brien'; DELETE FROM customer; --",
        "x' OR '1'='1",
        "/* comment */ Ünïcødé ✓ 北京 \"quoted\"",
        "Robert'); DROP TABLE customer;--",
    ];
    for (i, name) in hostile.iter().enumerate() {
        bed.netsuite.rename_customer_any(bed.customer_ids[i], name).unwrap();
    }
    succeeded(&bed.sync().await);
    for (i, name) in hostile.iter().enumerate() {
        assert_eq!(bed.sf("Account", bed.customer_ids[i]).1["Name"], *name);
    }

    // Values that would be placed in a query are validated before any request.
    let queries = bed.netsuite.queries();
    for id in ["1 OR 1=1", "1; DELETE FROM customer", "'1'", "١٢", "1--"] {
        let result = runtime().fetch_one(bed.tenant.sandbox().unwrap(), RecordKind::Customer, id).await.unwrap();
        let error = describe_error(&result.expect_err(id));
        assert!(error.contains("is not a NetSuite internal id"), "{error}");
    }
    for when in ["2026-01-01 00:00:00' OR '1'='1", "2026-01-01 00:00:00 --", "01/01/2026"] {
        let cursor = Cursor { last_modified: when.into(), id: "1".into() };
        let result =
            runtime().fetch_changed(bed.tenant.sandbox().unwrap(), RecordKind::Customer, Some(cursor)).await.unwrap();
        let error = describe_error(&result.expect_err(when));
        assert!(error.contains("is not a timestamp in the form YYYY-MM-DD HH24:MI:SS"), "{error}");
    }
    assert_eq!(bed.netsuite.queries(), queries, "no hostile value reached NetSuite");
    assert_eq!(bed.netsuite.customer_count().unwrap(), 30, "and nothing was deleted");

    // A valid id still works through the same export.
    let one = runtime()
        .fetch_one(bed.tenant.sandbox().unwrap(), RecordKind::Customer, &bed.customer_ids[0].to_string())
        .await
        .unwrap()
        .unwrap()
        .expect("customer exists");
    assert!(one.fields_json.contains("DELETE FROM customer"), "the value itself is data: {}", one.fields_json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_thousand_contacts_cross_the_offset_ceiling() {
    let bed = bed(1000).start().await;
    // A bulk import: every contact has the same lastmodifieddate.
    let at = bed.clock.now_secs() - 86_400;
    bed.netsuite.seed_contacts(250_000, &bed.customer_ids, at, 11).unwrap();

    let report = bed.sync_all().await;
    succeeded(&report);
    let c = report.counts("contact");
    assert_eq!((c.read, c.created, c.failed), (250_000, 250_000, 0), "{c:?}");
    assert_eq!(bed.salesforce.count("Contact"), 250_000, "none missed, none repeated");
    assert_eq!(bed.netsuite.max_offset_requested(), 0, "keyset pagination never pages by offset");

    // The first sync scanned by id; once late commits can no longer land in
    // the window before its hand-over, a run re-reads it by (lastmodifieddate,
    // id): all 250,000 in one second, past the ceiling. The last of them
    // changed, its time kept, must be reached.
    bed.netsuite
        .execute("UPDATE contact SET title = 'Reached Past The Ceiling' WHERE id = (SELECT MAX(id) FROM contact)")
        .unwrap();
    bed.clock.advance(Duration::from_secs(601));
    let again = bed.sync_all().await;
    succeeded(&again);
    let c = again.counts("contact");
    assert_eq!((c.read, c.updated), (1, 1), "the rest of the overlap re-read is dropped as already handled: {c:?}");
    assert_eq!(bed.netsuite.max_offset_requested(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_netsuite_account_is_read_in_full_changes_and_deletions() {
    let bed = bed(300).start().await;
    succeeded(&bed.sync().await);
    // Both streams' cursors past the overlap window: a deletion read, time passed.
    bed.netsuite.delete_record("customer", bed.customer_ids[7]).unwrap();
    succeeded(&bed.sync().await);
    bed.clock.advance(Duration::from_secs(2 * 3600));
    succeeded(&bed.sync().await);
    // The account switched to (production after a sandbox, say) differs
    // from the one synced in rows older than the cursors: a customer
    // renamed at the oldest change's time, one deleted an hour before the
    // deletion already read.
    let (renamed, deleted) = (bed.customer_ids[5], bed.customer_ids[6]);
    bed.netsuite
        .execute(&format!(
            "UPDATE customer SET companyname = 'Production Name Ltd',
                 lastmodifieddate = (SELECT MIN(lastmodifieddate) FROM customer) WHERE id = {renamed}"
        ))
        .unwrap();
    bed.netsuite.delete_record("customer", deleted).unwrap();
    bed.netsuite
        .execute(&format!(
            "UPDATE deletedrecord SET deleteddate = (SELECT MIN(deleteddate) FROM deletedrecord) - 3600 WHERE recordid = {deleted}"
        ))
        .unwrap();
    bed.tenant.set_override("netsuite_account_id", "7654321");
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.read, c.updated, c.unchanged, c.deleted), (298, 1, 297, 1), "{c:?}");
    assert_eq!(bed.sf("Account", renamed).1["Name"], "Production Name Ltd");
    assert_eq!(bed.sf("Account", deleted).1["NetSuite_Deleted__c"], Value::Bool(true));

    // From then on the new account is read incrementally.
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(next.counts("customer").read, 0);
}

/// NetSuite may answer a SuiteQL page with fewer rows than its `limit` while
/// `hasMore` is true (the next page starts at `offset + count`). Every read
/// goes on until `hasMore` is false: the first sync, an incremental one and
/// change events read by id (records not returned on a short page are not
/// taken for deleted and flagged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_shorter_than_asked_lose_no_record_and_delete_none() {
    let bed = bed(60).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(40, &bed.customer_ids[..10], at, 3).unwrap();
    bed.netsuite.set_page_rows(7);
    let first = bed.sync_all().await;
    succeeded(&first);
    assert_eq!((first.counts("customer").created, first.counts("contact").created), (60, 40));
    assert_eq!((bed.salesforce.count("Account"), bed.salesforce.count("Contact")), (60, 40));

    let gone = bed.customer_ids[50];
    bed.netsuite.delete_record("customer", gone).unwrap();
    let renamed = bed.customer_ids[55];
    bed.netsuite.rename_customer(renamed, "Renamed On A Short Page").unwrap();
    // Events for thirty customers: read by id, a short page at a time.
    let events: Vec<(&str, i64, &str)> =
        bed.customer_ids[20..50].iter().map(|&id| ("customer", id, "update")).collect();
    bed.queue_events(&events);
    let second = bed.sync_all().await;
    succeeded(&second);
    let c = second.counts("customer");
    assert_eq!((c.updated, c.deleted, c.failed), (1, 1, 0), "{c:?}");
    assert_eq!(bed.sf("Account", renamed).1["Name"], "Renamed On A Short Page");
    for &id in &bed.customer_ids {
        let flagged = bed.sf("Account", id).1.get("NetSuite_Deleted__c") == Some(&Value::Bool(true));
        assert_eq!(flagged, id == gone, "customer {id}");
    }
}
