//! The Salesforce sink against the Salesforce simulator: OAuth grants,
//! session handling, describe validation, limits and faults.

mod support;

use simulators::salesforce::{Faults, SalesforceSimConfig};
use support::{bed, ps256_key, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_grant_logs_in_as_the_preauthorized_user() {
    let key = ps256_key();
    let config = SalesforceSimConfig { jwt_public_key_pem: Some(key.public_pem.clone()), ..Default::default() };
    let bed = bed(100)
        .salesforce(config)
        .setting("salesforce_grant", "jwt_bearer")
        .setting("salesforce_username", "integration@acme.example")
        .start()
        .await;
    bed.set_secret("salesforce_private_key", &key.private_pem).unwrap();
    succeeded(&bed.sync().await);
    assert_eq!(bed.salesforce.count("Account"), 100);

    // Another user is not pre-authorized: the error says what to check.
    let other = support::bed(5)
        .salesforce(SalesforceSimConfig { jwt_public_key_pem: Some(key.public_pem.clone()), ..Default::default() })
        .setting("salesforce_grant", "jwt_bearer")
        .setting("salesforce_username", "someone@else.example")
        .start()
        .await;
    other.set_secret("salesforce_private_key", &key.private_pem).unwrap();
    let report = other.sync().await;
    let error = report.error.expect("the login fails");
    assert!(error.contains("invalid_grant") && error.contains("user hasn't approved this consumer"), "{error}");
    assert!(error.contains("pre-authorized"), "{error}");

    // The audience set apart from the login URL: a production org's is
    // taken, a sandbox's is refused and the error names the setting.
    for (audience, logs_in) in [("https://login.salesforce.com", true), ("https://test.salesforce.com", false)] {
        let set = support::bed(5)
            .salesforce(SalesforceSimConfig { jwt_public_key_pem: Some(key.public_pem.clone()), ..Default::default() })
            .setting("salesforce_grant", "jwt_bearer")
            .setting("salesforce_username", "integration@acme.example")
            .setting("salesforce_jwt_audience", audience)
            .start()
            .await;
        set.set_secret("salesforce_private_key", &key.private_pem).unwrap();
        let report = set.sync().await;
        if logs_in {
            succeeded(&report);
            assert_eq!(set.salesforce.count("Account"), 5);
        } else {
            let error = report.error.expect("the login fails");
            assert!(error.contains("audience is invalid") && error.contains("salesforce_jwt_audience"), "{error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_stored_and_used_next_time() {
    let config = SalesforceSimConfig {
        refresh_tokens: vec!["5Aep861-initial".into()],
        rotate_refresh_tokens: true,
        ..Default::default()
    };
    let bed = bed(3000).salesforce(config).setting("salesforce_grant", "refresh_token").start().await;
    bed.set_secret("salesforce_refresh_token", "5Aep861-initial").unwrap();
    // Sessions die after every API call: each refresh rotates the token and
    // revokes the previous one, so only the newest stored one works.
    bed.salesforce.expire_sessions_every(1);
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(bed.salesforce.count("Account"), 3000);
    assert!(bed.salesforce.token_requests() >= 3, "{}", bed.salesforce.token_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_not_valid_for_rest_is_a_configuration_error_not_a_refresh_loop() {
    let bed = bed(20).start().await;
    bed.salesforce.refuse_rest_sessions(true);
    let report = bed.sync().await;
    let error = report.error.expect("the run fails");
    assert!(error.starts_with("configuration error: Salesforce"), "{error}");
    assert!(error.contains("API Client Control"), "{error}");
    assert_eq!(bed.salesforce.token_requests(), 1, "no refresh was attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_validation_fails_before_any_write_and_names_the_field() {
    let bed = bed(50).start().await;
    bed.salesforce.remove_field("Account", "Email__c");
    bed.salesforce.alter_field("Account", "NetSuite_Id__c", |f| f.unique = false);
    bed.salesforce.alter_field("Account", "Phone", |f| f.updateable = false);
    let report = bed.sync().await;
    let error = report.error.expect("the run fails");
    assert!(error.starts_with("configuration error: Salesforce cannot take what the mapping writes"), "{error}");
    assert!(error.contains("Account.Email__c does not exist"), "{error}");
    assert!(error.contains("Account.NetSuite_Id__c is an External ID but not Unique"), "{error}");
    assert!(error.contains("Account.Phone is not createable and updateable"), "{error}");
    assert_eq!(bed.salesforce.writes(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_guard_stops_before_the_configured_share_and_reports_usage() {
    let config = SalesforceSimConfig { daily_api_limit: 10, ..Default::default() };
    let bed = bed(5000).salesforce(config).setting("salesforce_max_api_share", "0.5").start().await;
    let report = bed.sync().await;
    let error = report.error.clone().expect("the guard stops the run");
    // The org's last figure, plus what was still on its way when the guard stopped: together at the
    // ceiling, or one past it when the figure already counts a request on its way.
    let (used, on_way) = (0..=10)
        .flat_map(|used| (0..=2).map(move |on_way| (used, on_way)))
        .find(|&(used, on_way)| {
            let way = match on_way {
                0 => ",".to_string(),
                1 => " with 1 request on its way,".to_string(),
                n => format!(" with {n} requests on their way,"),
            };
            error.starts_with(&format!("rate limited: Salesforce API usage is {used}/10 ({}%){way}", used * 10))
        })
        .unwrap_or_else(|| panic!("{error}"));
    assert!((5..=6).contains(&(used + on_way)), "{error}");
    assert!(error.contains("salesforce_max_api_share") && error.contains("kept its cursor"), "{error}");
    // The describe call and the Composite calls went through; nothing past the ceiling. With
    // three requests in flight the org's last usage figure may already count those on their way,
    // so the guard can stop up to two requests early (never late).
    let requests = bed.salesforce.api_requests();
    assert!((3..=5).contains(&requests), "{requests} API requests");
    let written = (requests - 1) * 1000;
    assert_eq!(bed.salesforce.count("Account"), written);
    // What was written before the stop is on record.
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    assert_eq!(rows.iter().filter(|r| r.outcome == "created").count() as u64, written);
    // ... and in the run's report: a stopped run counts what it did.
    assert_eq!(report.status, "stopped");
    let c = report.counts("customer");
    assert_eq!(u64::from(c.created), written, "{c:?}");
    assert!(u64::from(c.read) > written, "the page read while the last write went out is counted: {c:?}");
    assert_eq!(u64::from(report.api_calls.salesforce), requests + 1, "a token, then the requests the org saw");
    assert!(report.api_calls.netsuite >= 5, "{:?}", report.api_calls);
    let stored: String =
        conn.query_row("SELECT report FROM runs WHERE run_id = ?1", [&report.run_id], |r| r.get(0)).unwrap();
    assert!(stored.contains(&format!(r#""created":{written}"#)), "the run log keeps the counts: {stored}");

    // The next run knows the org was left at the ceiling: it asks where usage
    // stands (one `/limits` request) before anything else, and writes nothing.
    let before = (bed.salesforce.api_requests(), bed.salesforce.count("Account"), bed.salesforce.writes());
    let again = bed.sync().await;
    assert_eq!(again.status, "stopped", "{:?}", again.error);
    assert!(again.error.as_deref().is_some_and(|e| e.contains("salesforce_max_api_share")), "{:?}", again.error);
    let after = (bed.salesforce.api_requests(), bed.salesforce.count("Account"), bed.salesforce.writes());
    assert_eq!(after, (before.0 + 1, before.1, before.2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_injected_faults_and_expiring_sessions_every_record_lands_exactly_once() {
    let bed = bed(5000).setting("netsuite_page_size", "500").start().await;
    bed.salesforce.set_faults(Faults {
        unavailable_rate: 0.04,
        too_many_requests_rate: 0.03,
        concurrent_limit_rate: 0.03,
        ..Default::default()
    });
    bed.salesforce.expire_sessions_every(3);
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 5000);
    assert_eq!(bed.salesforce.count("Account"), 5000);
    assert_eq!(bed.salesforce.writes(), 5000, "no record was written twice");
    for &id in bed.customer_ids.iter().step_by(250) {
        let (_, f) = bed.sf("Account", id);
        assert_eq!(f["NetSuite_Id__c"], id.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_external_ids_and_duplicate_rules_are_reported_as_what_they_are() {
    let bed = bed(30).start().await;
    succeeded(&bed.sync().await);
    let (a, b) = (bed.customer_ids[3], bed.customer_ids[4]);

    // An admin drops Unique from the external id and someone creates a
    // second Account with customer a's NetSuite id by hand.
    bed.salesforce.alter_field("Account", "NetSuite_Id__c", |f| f.unique = false);
    bed.salesforce.insert_by_hand(
        "Account",
        &a.to_string(),
        serde_json::Map::from_iter([("Name".into(), "Hand made".into())]),
    );
    bed.netsuite.set_customer_phone(a, "+1 303-555-0101").unwrap();
    // A duplicate rule blocks a new Account named like an existing one.
    bed.salesforce.set_duplicate_rule("Account", "Name");
    let taken = bed.sf("Account", b).1["Name"].as_str().unwrap().to_string();
    let newcomer = bed.netsuite.seed_customers(1, 99).unwrap()[0];
    bed.netsuite.rename_customer_any(newcomer, &taken).unwrap();

    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").failed, 2);
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let error_of = |id: i64| {
        rows.iter().find(|r| r.netsuite_id == id.to_string()).and_then(|r| r.error.clone()).unwrap_or_default()
    };
    assert!(error_of(a).starts_with("DUPLICATE_EXTERNAL_ID: NetSuite_Id__c: more than one record"), "{}", error_of(a));
    assert!(error_of(newcomer).starts_with("DUPLICATES_DETECTED: Use one of these records?"), "{}", error_of(newcomer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_login_settings_point_at_another_org_every_write_goes_there() {
    use simulators::salesforce::SalesforceSim;
    let bed = bed(200).start().await;
    succeeded(&bed.sync().await);
    assert_eq!(bed.salesforce.count("Account"), 200);

    // Sandbox → production: the same connected app in another org.
    let production = SalesforceSim::start(
        SalesforceSimConfig { org_id: "00D8d000000PRODxEAA".into(), ..Default::default() },
        bed.clock.clone(),
        0,
    )
    .await
    .unwrap();
    bed.tenant.set_override("salesforce_login_url", production.base_url());
    let renamed = bed.customer_ids[7];
    bed.netsuite.rename_customer_any(renamed, "Renamed After The Switch").unwrap();
    let (sandbox_calls, sandbox_tokens) = (bed.salesforce.api_requests(), bed.salesforce.token_requests());
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(bed.salesforce.api_requests(), sandbox_calls, "the old org receives no request");
    assert_eq!(bed.salesforce.token_requests(), sandbox_tokens, "not even a token request");
    assert_eq!(production.count("Account"), 200, "the new org gets every record, not only the edited one");
    let (_, account) = production.find("Account", &renamed.to_string()).expect("the renamed customer");
    assert_eq!(account["Name"], "Renamed After The Switch");
    assert_eq!(report.counts("customer").created, 200, "{report:?}");

    // And back: the sandbox is brought up to date, without duplicates.
    bed.tenant.set_override("salesforce_login_url", bed.salesforce.base_url());
    succeeded(&bed.sync().await);
    assert_eq!(bed.salesforce.count("Account"), 200);
    assert_eq!(bed.sf("Account", renamed).1["Name"], "Renamed After The Switch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_tenant_may_not_reach_fails_at_once_naming_it_and_the_setting() {
    // The org sends API calls to an instance host the allowlist lacks.
    let config = SalesforceSimConfig { instance_host: Some("localhost".into()), ..Default::default() };
    let bed = bed(20).salesforce(config).start().await;
    let report = bed.sync().await;
    let error = report.error.expect("the run fails");
    let instance = bed.salesforce.instance_url();
    let authority = instance.trim_start_matches("http://");
    assert!(error.starts_with("configuration error"), "{error}");
    assert!(error.contains(&format!("did not allow a request to {authority}")), "{error}");
    assert!(error.contains("allowed_hosts") && error.contains("salesforce_login_url"), "{error}");
    assert!(!error.contains("attempts"), "a denial is not retried: {error}");
    assert_eq!(bed.salesforce.api_requests(), 0, "nothing reached the org's API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_naming_its_default_port_is_allowed_and_its_userinfo_never_shown() {
    // `http://…:80` is the same destination as `http://…`: the component's
    // URL parser drops the port, the allowlist must not keep it. Nothing
    // listens on port 80 here, so the request is sent and refused by the
    // network (a transport failure), not denied by the sandbox.
    let bed = bed(5)
        .setting("netsuite_base_url", "http://integration:s3cr3t-pw@127.0.0.1:80")
        .setting("http_max_retries", "0")
        .start()
        .await;
    let report = bed.sync().await;
    let error = report.error.expect("no NetSuite answers on port 80");
    assert!(!error.contains("did not allow"), "the sandbox denied its own NetSuite host: {error}");
    assert!(error.contains("127.0.0.1") && error.contains("failed after 1 attempts"), "{error}");
    assert!(!error.contains("s3cr3t-pw") && !error.contains("integration@"), "userinfo shown: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_requests_travel_three_at_once_and_two_for_records_with_parents() {
    // 6,000 customers and as many contacts: six Composite requests each, below the Bulk threshold.
    let bed = bed(6000).setting("salesforce_bulk_threshold", "10000").start().await;
    let now = bed.clock.now_secs();
    bed.netsuite.seed_contacts(6000, &bed.customer_ids, now - 7200, 9).unwrap();
    bed.salesforce.set_faults(Faults { latency: std::time::Duration::from_millis(250), ..Default::default() });
    succeeded(&bed.sync().await);
    assert_eq!(bed.salesforce.count("Account"), 6000);
    assert_eq!(bed.salesforce.take_peak_concurrent_requests(), 3, "Accounts: three requests at once");
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("contact").created, 6000);
    // Contacts link to their Account: children of one parent in parallel requests contend for its row lock.
    assert_eq!(bed.salesforce.take_peak_concurrent_requests(), 2, "Contacts: two requests at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_for_a_row_lock_is_sent_again_and_one_that_stays_locked_waits_for_replay() {
    let bed = bed(300).start().await;
    let now = bed.clock.now_secs();
    bed.netsuite.seed_contacts(600, &bed.customer_ids, now - 7200, 9).unwrap();
    succeeded(&bed.sync_all().await);
    let (brief, held) = (bed.customer_ids[10], bed.customer_ids[20]);
    let contact = bed
        .netsuite
        .id_pairs("SELECT id, company FROM contact")
        .unwrap()
        .into_iter()
        .find(|(_, company)| *company == held)
        .map(|(id, _)| id)
        .expect("a contact of the held customer");

    bed.netsuite.set_customer_phone(brief, "+1 303-555-0110").unwrap();
    bed.netsuite.set_customer_phone(held, "+1 303-555-0120").unwrap();
    let now = bed.clock.now_secs();
    bed.netsuite
        .execute(&format!(
            "UPDATE contact SET phone = '+1 303-555-0121', lastmodifieddate = {now} WHERE id = {contact}"
        ))
        .unwrap();
    // Jobs in the org hold one Account for two writing requests and the
    // other for good; the contact's lookup needs its Account's lock too.
    bed.salesforce.hold_row_lock("Account", &brief.to_string(), 2);
    bed.salesforce.hold_row_lock("Account", &held.to_string(), u64::MAX);
    let writes_before = bed.salesforce.writes();
    let report = bed.sync_all().await;
    succeeded(&report);
    let customers = report.counts("customer");
    assert_eq!((customers.updated, customers.failed), (1, 1), "{customers:?}");
    assert_eq!(report.counts("contact").failed, 1);
    assert_eq!(bed.sf("Account", brief).1["Phone"], "+13035550110", "landed on its third attempt");
    assert_eq!(bed.salesforce.writes() - writes_before, 1, "only that record was written");

    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let of = |id: i64| rows.iter().filter(|r| r.netsuite_id == id.to_string()).collect::<Vec<_>>();
    let brief_rows = of(brief);
    assert_eq!(brief_rows.len(), 1, "one audit entry for the write, however many attempts: {brief_rows:?}");
    assert_eq!(brief_rows[0].outcome, "updated");
    for id in [held, contact] {
        let entries = of(id);
        assert_eq!(entries.len(), 1, "{entries:?}");
        let error = entries[0].error.as_deref().unwrap_or_default();
        assert_eq!(entries[0].outcome, "failed");
        assert!(error.starts_with("UNABLE_TO_LOCK_ROW: unable to obtain exclusive access"), "{error}");
    }

    // The job ends; replay sends both.
    bed.salesforce.hold_row_lock("Account", &held.to_string(), 0);
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").updated, 1);
    assert_eq!(replay.counts("contact").updated, 1);
    assert_eq!(bed.sf("Account", held).1["Phone"], "+13035550120");
    assert_eq!(bed.sf("Contact", contact).1["Phone"], "+13035550121");
}

/// Deletions and deletion flags refused for a row lock are sent again too,
/// in either delete action; one that stays locked fails and is queued: the
/// next run applies it, however far the deletions cursor has moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_refused_for_a_row_lock_is_sent_again() {
    for action in ["flag", "delete"] {
        let bed = bed(20).setting("delete_action", action).start().await;
        succeeded(&bed.sync().await);
        let (brief, held) = (bed.customer_ids[5], bed.customer_ids[6]);
        bed.salesforce.hold_row_lock("Account", &brief.to_string(), 2);
        bed.salesforce.hold_row_lock("Account", &held.to_string(), u64::MAX);
        bed.netsuite.delete_record("customer", brief).unwrap();
        bed.netsuite.delete_record("customer", held).unwrap();
        let report = bed.sync().await;
        succeeded(&report);
        let c = report.counts("customer");
        assert_eq!((c.deleted, c.failed), (1, 1), "{action}: {c:?}");
        let conn = bed.tenant.database.connect().unwrap();
        let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
        let error = rows.iter().find(|r| r.netsuite_id == held.to_string()).and_then(|r| r.error.clone());
        assert!(error.as_deref().unwrap_or_default().starts_with("UNABLE_TO_LOCK_ROW"), "{error:?}");
        match action {
            "flag" => assert_eq!(bed.sf("Account", brief).1["NetSuite_Deleted__c"], serde_json::Value::Bool(true)),
            _ => assert!(bed.salesforce.find("Account", &brief.to_string()).is_none()),
        }
        assert!(bed.salesforce.find("Account", &held.to_string()).is_some());
        // Hours later, still locked, and a later deletion moves the cursor
        // past the window a run reads again: tried again, failed again, kept.
        bed.clock.advance(std::time::Duration::from_secs(7200));
        bed.netsuite.delete_record("customer", bed.customer_ids[7]).unwrap();
        let still = bed.sync().await;
        succeeded(&still);
        assert_eq!(still.counts("customer").deleted, 1, "{action}");
        assert!(still.counts("customer").failed >= 1, "{action}");
        assert_eq!(waiting_events(&bed), 1, "{action}: `connector status` shows the refused deletion waiting");
        // Released: the next run applies it, once.
        bed.salesforce.hold_row_lock("Account", &held.to_string(), 0);
        bed.clock.advance(std::time::Duration::from_secs(7200));
        let next = bed.sync().await;
        succeeded(&next);
        assert_eq!(next.counts("customer").deleted, 1, "{action}");
        match action {
            "flag" => assert_eq!(bed.sf("Account", held).1["NetSuite_Deleted__c"], serde_json::Value::Bool(true)),
            _ => assert!(bed.salesforce.find("Account", &held.to_string()).is_none()),
        }
        assert_eq!(waiting_events(&bed), 0, "{action}");
        let idle = bed.sync().await;
        assert_eq!((idle.counts("customer").deleted, idle.counts("customer").failed), (0, 0), "{action}");
    }
}

/// A deletion Salesforce refused is a failed write the replay sends again:
/// by its record (another record's stays queued), then all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deletion_is_replayed_by_its_record() {
    let bed = bed(20).start().await;
    succeeded(&bed.sync().await);
    let (one, other) = (bed.customer_ids[5], bed.customer_ids[6]);
    for id in [one, other] {
        bed.salesforce.hold_row_lock("Account", &id.to_string(), u64::MAX);
        bed.netsuite.delete_record("customer", id).unwrap();
    }
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").failed, 2);
    assert_eq!(waiting_events(&bed), 2);
    for id in [one, other] {
        bed.salesforce.hold_row_lock("Account", &id.to_string(), 0);
    }
    let record = host_harness::host::RecordRef { kind: host_harness::host::RecordKind::Customer, id: one.to_string() };
    let scope = host_harness::host::ReplayScope::One(record);
    let replay = bed.bed.tenant.replay(support::runtime(), scope).await.expect("the host ran the replay");
    succeeded(&replay);
    assert_eq!(replay.counts("customer").deleted, 1, "{replay:?}");
    assert_eq!(bed.sf("Account", one).1["NetSuite_Deleted__c"], serde_json::Value::Bool(true));
    assert_ne!(bed.sf("Account", other).1.get("NetSuite_Deleted__c"), Some(&serde_json::Value::Bool(true)));
    assert_eq!(waiting_events(&bed), 1, "the other record's deletion still waits");
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").deleted, 1, "{replay:?}");
    assert_eq!(bed.sf("Account", other).1["NetSuite_Deleted__c"], serde_json::Value::Bool(true));
    assert_eq!(waiting_events(&bed), 0);
}

/// A record deleted in Salesforce by hand, then in NetSuite: nothing is left
/// to flag, so the deletion is done; no Account is made again to carry the
/// flag (an upsert would, or fail every run for want of a Name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagging_a_record_deleted_in_salesforce_by_hand_makes_nothing_and_settles() {
    let bed = bed(3).setting("delete_action", "flag").start().await;
    succeeded(&bed.sync().await);
    let gone = bed.customer_ids[0];
    bed.salesforce.delete_by_hand(&bed.sf("Account", gone).0);
    bed.netsuite.delete_record("customer", gone).unwrap();
    bed.netsuite.delete_record("customer", bed.customer_ids[1]).unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.deleted, c.failed), (2, 0), "{c:?}");
    assert!(bed.salesforce.find("Account", &gone.to_string()).is_none(), "no Account made to carry the flag");
    assert_eq!(bed.sf("Account", bed.customer_ids[1]).1["NetSuite_Deleted__c"], serde_json::Value::Bool(true));
    assert_eq!(waiting_events(&bed), 0);
    bed.clock.advance(std::time::Duration::from_secs(3600));
    let next = bed.sync().await;
    assert_eq!((next.counts("customer").deleted, next.counts("customer").failed), (0, 0));
}

/// The customer change events `connector status` shows waiting.
fn waiting_events(bed: &support::Bed) -> u64 {
    let conn = bed.tenant.database.connect().unwrap();
    let status =
        host_harness::ops::status::tenant_status(&conn, "demo", None, time::OffsetDateTime::now_utc()).unwrap();
    status.waiting.iter().find(|w| w.kind == "customer").map_or(0, |w| w.change_events)
}

/// A record already in Salesforce's Recycle Bin when NetSuite deletes it
/// (deleted there by hand) has what the deletion wanted: counted deleted,
/// not failed, and not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_record_already_in_the_recycle_bin_counts_as_deleted() {
    let bed = bed(10).setting("delete_action", "delete").start().await;
    succeeded(&bed.sync().await);
    let id = bed.customer_ids[2];
    bed.salesforce.delete_by_hand(&bed.sf("Account", id).0);
    bed.netsuite.delete_record("customer", id).unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.deleted, c.failed), (1, 0), "{c:?}");
    bed.clock.advance(std::time::Duration::from_secs(7200));
    let idle = bed.sync().await;
    assert_eq!((idle.counts("customer").deleted, idle.counts("customer").failed), (0, 0));
}

/// A session whose instance gets no answer (the token response named a host
/// that is down, refusing or not allowed) is dropped by the run that fails
/// on it: the next run logs in again and is told the instance anew, instead
/// of failing on the stored session until a 401 (which never comes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_session_whose_instance_does_not_answer_is_dropped_for_a_new_login() {
    let bed = bed(5)
        .setting("http_max_retries", "1")
        .setting("http_backoff_base_ms", "10")
        .setting("http_backoff_cap_ms", "10")
        .start()
        .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    bed.salesforce.send_api_calls_to(&format!("http://127.0.0.1:{port}"));
    let failed = bed.sync().await;
    assert_eq!(failed.status, "failed", "{failed:?}");
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("the next run logs in again"), "{error}");
    // The org answers where it should again: the next run finds it.
    bed.salesforce.send_api_calls_to(bed.salesforce.base_url());
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 5, "{report:?}");
}
