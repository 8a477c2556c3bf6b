//! The sync engine: parents before children with deferral, replay of failed
//! writes, mapping changes, the audit trail's old → new values.

mod support;

use host_harness::host::SyncMode;
use serde_json::Value;
use simulators::salesforce::ValidationRule;
use support::{bed, succeeded};

fn embargo() -> Option<ValidationRule> {
    Some(ValidationRule {
        sobject: "Account".into(),
        field: "Name".into(),
        contains: "Embargoed".into(),
        message: "Accounts under embargo need approval".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_wait_for_failed_parents_and_follow_them_on_replay() {
    let bed = bed(100).start().await;
    let at = bed.clock.now_secs() - 7200;
    bed.netsuite.seed_contacts(400, &bed.customer_ids, at, 3).unwrap();
    bed.salesforce.set_validation_rule(embargo());
    let rejected: Vec<i64> = bed.customer_ids.iter().copied().step_by(25).collect();
    for (i, &id) in rejected.iter().enumerate() {
        bed.netsuite.rename_customer_any(id, &format!("Embargoed Holdings {i}")).unwrap();
    }
    let orphans = bed
        .netsuite
        .id_pairs("SELECT id, company FROM contact")
        .unwrap()
        .into_iter()
        .filter(|(_, company)| rejected.contains(company))
        .count() as u32;
    assert!(orphans > 0);

    let first = bed.sync_all().await;
    succeeded(&first);
    assert_eq!(first.counts("customer").failed, rejected.len() as u32);
    let contacts = first.counts("contact");
    assert_eq!((contacts.deferred, contacts.created), (orphans, 400 - orphans), "{contacts:?}");
    assert_eq!(bed.salesforce.count("Contact"), (400 - orphans) as u64, "no contact was written without its parent");

    // Still blocked: an incremental run changes nothing and loses nothing.
    let idle = bed.sync_all().await;
    succeeded(&idle);
    assert_eq!(bed.salesforce.count("Contact"), (400 - orphans) as u64);

    // The rule is fixed; replay sends only the failed Accounts, and the
    // waiting contacts follow their parents.
    bed.salesforce.set_validation_rule(None);
    let writes_before = bed.salesforce.writes();
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").created, rejected.len() as u32);
    assert_eq!(replay.counts("contact").created, orphans);
    assert_eq!(bed.salesforce.writes() - writes_before, rejected.len() as u64 + orphans as u64, "only those records");
    assert_eq!(bed.salesforce.count("Contact"), 400);
    for &id in &rejected {
        assert!(bed.sf("Account", id).1["Name"].as_str().unwrap().starts_with("Embargoed Holdings"));
    }
    // Replaying again finds nothing left to send.
    let again = bed.replay_all().await;
    succeeded(&again);
    assert_eq!(bed.salesforce.writes() - writes_before, rejected.len() as u64 + orphans as u64);

    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &replay.run_id).unwrap();
    assert!(rows.iter().any(|r| r.action == "replay" && r.outcome == "created"));
    assert!(rows.iter().any(|r| r.action == "write-deferred" && r.kind == "contact"));
    let deferred = host_harness::audit::for_run(&conn, "demo", &first.run_id).unwrap();
    let defer = deferred.iter().find(|r| r.action == "defer").expect("a defer entry");
    assert!(defer.error.as_deref().unwrap().starts_with("waiting for customer "), "{:?}", defer.error);
}

/// A bed whose 20 contacts all wait for their 10 parents (contacts synced first).
async fn waiting_contacts() -> (support::Bed, Vec<i64>) {
    let bed = bed(10).start().await;
    let at = bed.clock.now_secs() - 7200;
    bed.netsuite.seed_contacts(20, &bed.customer_ids, at, 3).unwrap();
    let contacts: Vec<i64> =
        bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap().into_iter().map(|p| p.0).collect();
    let contact = [host_harness::host::RecordKind::Contact];
    let waiting = bed.bed.sync_kinds(support::runtime(), SyncMode::Incremental, &contact).await.unwrap();
    succeeded(&waiting);
    assert_eq!(waiting.counts("contact").deferred, 20);
    bed.clock.advance(std::time::Duration::from_secs(1));
    (bed, contacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_contact_deleted_in_netsuite_is_never_created() {
    let (bed, contacts) = waiting_contacts().await;
    bed.netsuite.delete_record("contact", contacts[3]).unwrap();

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("contact").created, 19, "{:?}", report.counts("contact"));
    assert_eq!(bed.salesforce.count("Contact"), 19);
    assert!(bed.salesforce.find("Contact", &contacts[3].to_string()).is_none(), "the deleted contact was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_that_fails_replaces_the_older_one_waiting() {
    let (bed, contacts) = waiting_contacts().await;
    let id = contacts[5];
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE contact SET lastname = 'Embargoed Ng', lastmodifieddate = {now} WHERE id = {id}");
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Contact".into(),
        field: "LastName".into(),
        contains: "Embargoed".into(),
        message: "Contacts under embargo need approval".into(),
    }));

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!((report.counts("contact").created, report.counts("contact").failed), (19, 1));
    assert!(bed.salesforce.find("Contact", &id.to_string()).is_none(), "the older waiting version was written");

    // The newer version waits for replay, and only it.
    bed.salesforce.set_validation_rule(None);
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(bed.sf("Contact", id).1["LastName"], "Embargoed Ng");
    assert_eq!(bed.salesforce.count("Contact"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_change_rewrites_exactly_the_records_it_changes() {
    let bed = bed(300).start().await;
    succeeded(&bed.sync().await);
    let net30 = bed.netsuite.id_pairs("SELECT id, terms FROM customer WHERE terms = 2").unwrap().len() as u32;
    assert!(net30 > 0);
    let writes = bed.salesforce.writes();

    // Net 30 customers get another picklist value; nothing else changes.
    bed.tenant.set_override("mapping_toml", &support::net30_mapping());
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.read, c.updated, c.unchanged), (300, net30, 300 - net30), "{c:?}");
    assert_eq!(bed.salesforce.writes() - writes, net30 as u64);
    let (id, _) = bed.netsuite.id_pairs("SELECT id, terms FROM customer WHERE terms = 2").unwrap()[0];
    assert_eq!(bed.sf("Account", id).1["Payment_Terms__c"], "NET-30");

    // The next run is incremental again: nothing is re-read.
    let next = bed.sync().await;
    assert_eq!(next.counts("customer").read, 0);
}

/// A field taken out of the mapping is left as it is in Salesforce: no
/// record is written for it (the dry run and the run agree). Put back, it
/// is written again: Salesforce may have changed it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_taken_out_of_the_mapping_costs_no_write_and_put_back_is_written_again() {
    let bed = bed(300).start().await;
    succeeded(&bed.sync().await);
    let (id, _) = bed.netsuite.id_pairs("SELECT id, 0 FROM customer WHERE phone IS NOT NULL").unwrap()[0];
    let phone = bed.sf("Account", id).1["Phone"].clone();
    assert!(phone.is_string(), "{phone}");
    let shipped = netsuite_salesforce::mapping::DEFAULT_MAPPING;
    let without = shipped.replacen(
        "[[customer.field]]\ntarget = \"Phone\"\nrules = [{ copy = \"phone\" }]\ntransforms = [\"phone\"]\n",
        "",
        1,
    );
    assert_ne!(without, shipped);
    let writes = bed.salesforce.writes();

    bed.tenant.set_override("mapping_toml", &without);
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    assert!(plan.plan.iter().all(|p| p.action == "unchanged"), "{:?}", plan.plan);
    let report = bed.sync().await;
    succeeded(&report);
    for counts in [plan.counts("customer"), report.counts("customer")] {
        assert_eq!((counts.read, counts.updated, counts.unchanged), (300, 0, 300), "{counts:?}");
    }
    assert_eq!(bed.salesforce.writes(), writes, "nothing written for a field no longer mapped");
    assert_eq!(bed.sf("Account", id).1["Phone"], phone, "Salesforce keeps the field as it was");

    bed.tenant.set_override("mapping_toml", shipped);
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").updated, 300, "{:?}", report.counts("customer"));
}

/// A kind asked for that the mapping does not map is one configuration
/// error before anything is read, not a failure per record; a mapping that
/// maps nothing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_the_mapping_lacks_is_refused_before_anything_is_read() {
    let bed = bed(20).start().await;
    let customers_only = netsuite_salesforce::mapping::DEFAULT_MAPPING.split("\n[contact]").next().unwrap();
    bed.tenant.set_override("mapping_toml", customers_only);
    let queries = bed.netsuite.queries();
    let contact = [host_harness::host::RecordKind::Contact];
    let report = bed.bed.sync_kinds(support::runtime(), SyncMode::Incremental, &contact).await;
    let report = report.unwrap();
    let error = report.error.clone().expect("refused");
    assert!(error.contains("no [contact] section"), "{error}");
    assert_eq!(report.counts("contact").read, 0);
    assert_eq!(bed.netsuite.queries(), queries, "nothing read");
    succeeded(&bed.sync().await);
    assert_eq!(bed.salesforce.count("Account"), 20, "the kinds it maps sync");

    bed.tenant.set_override("mapping_toml", "# only a comment\n");
    let error = bed.sync().await.error.expect("refused");
    assert!(error.contains("maps nothing"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_changed_after_a_run_stopped_half_way_reaches_the_records_that_run_wrote() {
    let bed = support::one_request_at_a_time(3000).start().await;
    let stopped = bed.sync_stopped_after(15).await;
    let written = stopped.counts("customer").created;
    assert!(written > 0 && written < 3000, "{written}");

    bed.tenant.set_override("mapping_toml", &support::net30_mapping());
    succeeded(&bed.sync().await);
    let net30 = bed.netsuite.id_pairs("SELECT id, terms FROM customer WHERE terms = 2").unwrap();
    assert!(net30.len() > 100, "Net 30 customers on both sides of the stop: {}", net30.len());
    for &(id, _) in &net30 {
        assert_eq!(bed.sf("Account", id).1["Payment_Terms__c"], "NET-30", "customer {id}");
    }

    // A remapping that gives every customer one value stops half-way; the
    // mapping goes back to the one all records had before it.
    let one_value = support::net30_mapping().replacen(
        "rules = [{ constant = \"NET-30\", when = { column = \"terms\", equals = \"2\" } }, { copy = \"termsname\" }]",
        "rules = [{ constant = \"Net 90\" }]",
        1,
    );
    bed.tenant.set_override("mapping_toml", &one_value);
    let stopped = bed.sync_stopped_after(15).await;
    let remapped = stopped.counts("customer").updated;
    assert!(remapped > 0 && remapped < 3000, "{remapped}");
    bed.tenant.set_override("mapping_toml", &support::net30_mapping());
    let back = bed.sync().await;
    succeeded(&back);
    assert_eq!(back.counts("customer").updated, remapped, "{:?}", back.counts("customer"));
    for &(id, _) in &net30 {
        assert_eq!(bed.sf("Account", id).1["Payment_Terms__c"], "NET-30", "customer {id}");
    }
}

/// A re-read after a mapping change that stops once the kind's records are
/// all written (here on its deletions) is done: the next run does not read
/// and audit every record again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_read_stopped_after_every_record_was_written_is_not_begun_again() {
    let bed = support::one_request_at_a_time(300).start().await;
    succeeded(&bed.sync().await);
    bed.tenant.set_override("mapping_toml", &support::net90_mapping());
    bed.netsuite.fail_queries_containing(
        "FROM deletedrecord",
        simulators::netsuite::ScriptedFailure::TooManyRequests,
        4,
    );
    let stopped = bed.sync().await;
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    assert_eq!(stopped.counts("customer").read, 300, "{:?}", stopped.counts("customer"));
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(next.counts("customer").read, 0, "{:?}", next.counts("customer"));
}

/// A read of every record (after a mapping change; `--full --compare-live`)
/// stopped half-way goes on at the next run where it stopped, as it began:
/// the records after the stop are compared (with Salesforce's live copies
/// when asked), those before it are not read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_every_record_stopped_half_way_goes_on_where_it_stopped_as_it_began() {
    let bed = support::one_request_at_a_time(3000).start().await;
    succeeded(&bed.sync().await);

    // A mapping that gives every customer one value.
    let one_value = support::net90_mapping();
    bed.tenant.set_override("mapping_toml", &one_value);
    let stopped = bed.sync_stopped_after(15).await;
    let before = stopped.counts("customer");
    assert!(before.updated > 0 && before.read < 3000, "{before:?}");
    let next = bed.sync().await;
    succeeded(&next);
    let after = next.counts("customer");
    assert!(after.read < 3000, "goes on, not from the first: {before:?} then {after:?}");
    assert_eq!(before.updated + after.updated, 3000, "{before:?} then {after:?}");
    for &id in &bed.customer_ids {
        assert_eq!(bed.sf("Account", id).1["Payment_Terms__c"], "Net 90", "customer {id}");
    }

    // An Account edited by hand, past where a run compared live stops.
    let last = *bed.customer_ids.iter().max().unwrap();
    let (sf_id, was) = bed.sf("Account", last);
    let mut name = serde_json::Map::new();
    name.insert("Name".into(), Value::String("Renamed In Salesforce".into()));
    bed.salesforce.edit_by_hand("Account", &sf_id, name);
    let at = bed.netsuite.queries() + 15;
    bed.netsuite.after_queries(at, |ns| ns.fail_next(&[simulators::netsuite::ScriptedFailure::TooManyRequests; 4]));
    let customers = [host_harness::host::RecordKind::Customer];
    let stopped = bed.bed.tenant.sync_compared_live(support::runtime(), SyncMode::Full, &customers).await.unwrap();
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    assert_eq!(bed.sf("Account", last).1["Name"], "Renamed In Salesforce", "not reached before the stop");

    // A plain run carries the repair on.
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(bed.sf("Account", last).1["Name"], was["Name"], "{:?}", next.counts("customer"));
    assert_eq!(next.counts("customer").updated, 1, "{:?}", next.counts("customer"));
    assert_eq!(bed.sync().await.counts("customer").read, 0, "then incremental again");
}

/// A re-read stopped half-way, then an events run under another mapping
/// writes a record it had passed: back on the first mapping, the re-read
/// starts over rather than go on past that record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_read_is_not_carried_on_past_records_written_under_another_mapping_since() {
    let bed = support::one_request_at_a_time(3000).start().await;
    succeeded(&bed.sync().await);
    let one_value = support::net90_mapping();
    bed.tenant.set_override("mapping_toml", &one_value);
    let stopped = bed.sync_stopped_after(15).await;
    assert!(stopped.counts("customer").updated > 0, "{stopped:?}");
    let (early, _) = bed.netsuite.id_pairs("SELECT id, terms FROM customer WHERE terms = 2 ORDER BY id").unwrap()[0];
    assert_eq!(bed.sf("Account", early).1["Payment_Terms__c"], "Net 90", "passed by the stopped re-read");

    bed.tenant.set_override("mapping_toml", &support::net30_mapping());
    bed.clock.advance(std::time::Duration::from_secs(5));
    bed.netsuite.rename_customer(early, "Renamed Meanwhile Ltd").unwrap();
    bed.queue_events(&[("customer", early, "edit")]);
    succeeded(&bed.bed.sync_kinds(support::runtime(), SyncMode::Events, &[]).await.unwrap());
    assert_eq!(bed.sf("Account", early).1["Payment_Terms__c"], "NET-30");

    bed.tenant.set_override("mapping_toml", &one_value);
    succeeded(&bed.sync().await);
    assert_eq!(bed.sf("Account", early).1["Payment_Terms__c"], "Net 90");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fingerprint_an_earlier_build_stored_without_the_netsuite_account_is_kept() {
    let bed = bed(50).start().await;
    succeeded(&bed.sync().await);
    let conn = bed.tenant.database.connect().unwrap();
    let stored = || -> String {
        conn.query_row(
            "SELECT CAST(value AS TEXT) FROM kv WHERE bucket = 'state' AND key = 'mapping/customer'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (written, account) = stored().rsplit_once('#').map(|(w, a)| (w.to_string(), a.to_string())).unwrap();
    assert_eq!(account, host_harness::testbed::NETSUITE_ACCOUNT.to_ascii_lowercase());
    conn.execute(
        "UPDATE kv SET value = CAST(?1 AS BLOB) WHERE bucket = 'state' AND key = 'mapping/customer'",
        [&written],
    )
    .unwrap();
    let next = bed.sync().await;
    succeeded(&next);
    assert_eq!(next.counts("customer").read, 0, "the same mapping and org: nothing is re-read");
    assert_eq!(stored(), format!("{written}#{account}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_with_another_builds_row_digest_are_rechecked_without_a_write() {
    let bed = bed(50).start().await;
    succeeded(&bed.sync().await);
    let writes = bed.salesforce.writes();
    let conn = bed.tenant.database.connect().unwrap();
    // Row digests as an earlier build wrote them (SHA-256, not XXH3), and the
    // cursor gone, so the next incremental run reads every customer again.
    let rewind = || {
        conn.execute_batch("DELETE FROM kv WHERE bucket = 'state' AND key = 'cursor/customer'").unwrap();
    };
    conn.execute_batch(
        "UPDATE kv SET value = CAST(json_set(CAST(value AS TEXT), '$.src', '5d41402abc4b2a76b9719d911017c592')
             AS BLOB) WHERE bucket = 'state' AND key LIKE 'record/customer/%'",
    )
    .unwrap();
    rewind();
    let rechecked = bed.sync().await;
    succeeded(&rechecked);
    let c = rechecked.counts("customer");
    assert_eq!((c.read, c.unchanged, c.created, c.updated), (50, 50, 0, 0), "{c:?}");
    assert_eq!(bed.salesforce.writes(), writes, "nothing Salesforce holds is written again");
    // The states now carry this build's digests: read again, rows are dropped as duplicates.
    rewind();
    let again = bed.sync().await;
    succeeded(&again);
    assert_eq!(again.counts("customer").read, 0);
    assert_eq!(bed.salesforce.writes(), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_shows_old_and_new_values_of_changed_fields() {
    let bed = bed(20).start().await;
    succeeded(&bed.sync().await);
    let id = bed.customer_ids[2];
    let old_name = bed.sf("Account", id).1["Name"].clone();
    bed.netsuite.rename_customer_any(id, "Renamed Ltd").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let row = rows.iter().find(|r| r.netsuite_id == id.to_string()).unwrap();
    assert_eq!((row.action.as_str(), row.outcome.as_str()), ("write", "updated"));
    let transformations: Vec<Value> = serde_json::from_str(&row.transformations).unwrap();
    let name = transformations.iter().find(|t| t["field"] == "Name").unwrap();
    assert_eq!((name["old"].clone(), name["new"].clone()), (old_name, Value::from("Renamed Ltd")));
    assert_eq!(name["rule"], "copy");
    let phone = transformations.iter().find(|t| t["field"] == "Phone").unwrap();
    assert!(phone.get("old").is_none() && phone.get("new").is_none(), "unchanged fields carry no values: {phone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_every_change_and_writes_nothing_anywhere() {
    let bed = bed(200).start().await;
    succeeded(&bed.sync().await);
    let (renamed, new_phone) = (bed.customer_ids[5], bed.customer_ids[6]);
    bed.netsuite.rename_customer_any(renamed, "Dry Run Co").unwrap();
    bed.netsuite.set_customer_phone(new_phone, "+1 212-555-0142").unwrap();
    let added = bed.netsuite.seed_customers(1, 77).unwrap()[0];
    bed.netsuite.rename_customer_any(added, "Brand New Customer Inc").unwrap();

    let conn = bed.tenant.database.connect().unwrap();
    let kv_before: i64 = conn.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0)).unwrap();
    let audit_before: i64 = conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap();
    let kv_digest: String =
        conn.query_row("SELECT group_concat(key || hex(value), ',') FROM (SELECT key, value FROM kv WHERE bucket = 'state' ORDER BY key)", [], |r| r.get(0)).unwrap();
    let (writes, requests) = (bed.salesforce.writes(), bed.salesforce.api_requests());

    for live in [false, true] {
        let report = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], live).await.unwrap();
        succeeded(&report);
        assert_eq!(report.mode, if live { "dry-run compare-live" } else { "dry-run" });
        let c = report.counts("customer");
        assert_eq!((c.created, c.updated), (1, 2), "live={live}: {c:?} {:?}", report.plan);
        let plan = |id: i64| report.plan.iter().find(|p| p.netsuite_id == id.to_string()).expect("planned");
        assert_eq!(plan(added).action, "create");
        let rename = plan(renamed);
        assert_eq!(rename.action, "update");
        let changes = rename.changes.as_array().unwrap();
        assert_eq!(changes.len(), 1, "only the name changes: {changes:?}");
        assert_eq!(changes[0]["field"], "Name");
        assert_eq!(changes[0]["new"], "Dry Run Co");
        assert_eq!(plan(new_phone).changes[0]["new"], "+12125550142");
    }

    assert_eq!(bed.salesforce.writes(), writes, "no Salesforce write");
    assert!(bed.salesforce.api_requests() > requests, "the live comparison read Salesforce");
    let kv_after: i64 = conn.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0)).unwrap();
    let kv_digest_after: String =
        conn.query_row("SELECT group_concat(key || hex(value), ',') FROM (SELECT key, value FROM kv WHERE bucket = 'state' ORDER BY key)", [], |r| r.get(0)).unwrap();
    assert_eq!((kv_after, kv_digest_after), (kv_before, kv_digest), "no state written");
    let audit_after: i64 = conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap();
    assert_eq!(audit_after, audit_before, "no audit entry");

    // The real run that follows does exactly what the dry run said.
    let real = bed.sync().await;
    let c = real.counts("customer");
    assert_eq!((c.created, c.updated), (1, 2));
}

/// A contact moved to a company new in NetSuite waits for it; once the
/// company is written, a dry run plans the contact once, as the run then
/// writes it once (its deferred version and the overlap's read of it are
/// one row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_a_deferred_contact_once_like_the_run_that_follows() {
    // Also when NetSuite changed the contact again while it waited: the
    // run's write of the newer version drops the waiting one.
    for edited_again in [false, true] {
        a_deferred_contact_planned_once(edited_again).await;
    }
}

async fn a_deferred_contact_planned_once(edited_again: bool) {
    use host_harness::host::RecordKind;
    let bed = bed(10).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(20, &bed.customer_ids[..2], at, 4).unwrap();
    succeeded(&bed.sync_all().await);
    let new_company = bed.netsuite.seed_customers(1, 99).unwrap()[0];
    bed.netsuite.rename_customer(new_company, "Newly Acquired Ltd").unwrap();
    let (contact, _) = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0];
    let now = bed.clock.now_secs();
    bed.netsuite
        .execute(&format!("UPDATE contact SET company = {new_company}, lastmodifieddate = {now} WHERE id = {contact}"))
        .unwrap();
    let rt = support::runtime();
    let deferred = bed.bed.sync_kinds(rt, SyncMode::Incremental, &[RecordKind::Contact]).await.unwrap();
    assert_eq!(
        deferred.counts("contact").deferred,
        1,
        "{:?} {:?}",
        deferred.counts("contact"),
        deferred.counts("customer")
    );
    succeeded(&bed.bed.sync_kinds(rt, SyncMode::Incremental, &[RecordKind::Customer]).await.unwrap());
    if edited_again {
        bed.clock.advance(std::time::Duration::from_secs(1));
        let now = bed.clock.now_secs();
        let sql = format!("UPDATE contact SET title = 'Buyer', lastmodifieddate = {now} WHERE id = {contact}");
        assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    }

    let plan = bed.bed.tenant.dry_run(rt, SyncMode::Incremental, &[RecordKind::Contact], false).await.unwrap();
    succeeded(&plan);
    let planned: Vec<_> = plan.plan.iter().filter(|p| p.netsuite_id == contact.to_string()).collect();
    assert_eq!(planned.len(), 1, "edited again: {edited_again}: {:?}", plan.plan);
    let real = bed.bed.sync_kinds(rt, SyncMode::Incremental, &[RecordKind::Contact]).await.unwrap();
    succeeded(&real);
    assert_eq!(plan.counts("contact").updated, real.counts("contact").updated, "{:?}", real.counts("contact"));
    assert_eq!(real.counts("contact").updated, 1, "{:?} {:?}", real.counts("contact"), plan.plan);
    assert_eq!(bed.sf("Contact", contact).1["AccountId"].as_str(), Some(bed.sf("Account", new_company).0.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_moved_to_another_company_keeps_its_salesforce_record() {
    let bed = bed(10).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(20, &bed.customer_ids[..2], at, 4).unwrap();
    succeeded(&bed.sync_all().await);
    let (contact, company) = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0];
    let (sf_id, before) = bed.sf("Contact", contact);
    assert_eq!(before["AccountId"].as_str(), Some(bed.sf("Account", company).0.as_str()));

    let target = bed.customer_ids[7];
    let now = bed.clock.now_secs();
    bed.netsuite
        .execute(&format!("UPDATE contact SET company = {target}, lastmodifieddate = {now} WHERE id = {contact}"))
        .unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("contact").updated, 1);
    let (after_id, after) = bed.sf("Contact", contact);
    assert_eq!(after_id, sf_id, "the same Contact");
    assert_eq!(after["AccountId"].as_str(), Some(bed.sf("Account", target).0.as_str()), "now under its new Account");
    assert_eq!(bed.salesforce.count("Contact"), 20);
}

/// A refused update is audited against the Salesforce record it was for
/// (Salesforce's answer names none), in the run and in a replay, so the
/// audit found by that record's id shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_update_is_audited_with_the_salesforce_record_it_was_for() {
    let bed = bed(20).start().await;
    succeeded(&bed.sync().await);
    let id = bed.customer_ids[3];
    let (sf_id, _) = bed.sf("Account", id);
    bed.salesforce.set_validation_rule(embargo());
    bed.netsuite.rename_customer_any(id, "Embargoed Three").unwrap();
    let conn = bed.tenant.database.connect().unwrap();
    for report in [bed.sync().await, bed.replay_all().await] {
        assert_eq!(report.counts("customer").failed, 1, "{:?}", report.counts("customer"));
        let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
        let failed: Vec<_> = rows.iter().filter(|r| r.outcome == "failed").collect();
        assert_eq!(failed.len(), 1, "{rows:?}");
        assert_eq!(
            (failed[0].netsuite_id.as_str(), failed[0].salesforce_id.as_deref()),
            (id.to_string().as_str(), Some(sf_id.as_str()))
        );
    }
}

/// Customers 2 and 3 renamed so a validation rule refuses them, synced
/// (both failed, kept for replay), the rule then lifted: (a, b, that run).
async fn two_refused_customers(bed: &support::Bed) -> (i64, i64, host_harness::scheduler::RunReport) {
    bed.salesforce.set_validation_rule(embargo());
    let (a, b) = (bed.customer_ids[1], bed.customer_ids[2]);
    bed.netsuite.rename_customer_any(a, "Embargoed A").unwrap();
    bed.netsuite.rename_customer_any(b, "Embargoed B").unwrap();
    let first = bed.sync().await;
    assert_eq!(first.counts("customer").failed, 2);
    bed.salesforce.set_validation_rule(None);
    (a, b, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_can_be_limited_to_one_record_or_one_run() {
    let bed = bed(60).start().await;
    let (a, b, first) = two_refused_customers(&bed).await;

    let one = bed
        .bed
        .tenant
        .replay(
            support::runtime(),
            host_harness::host::ReplayScope::One(host_harness::host::RecordRef {
                kind: host_harness::host::RecordKind::Customer,
                id: a.to_string(),
            }),
        )
        .await
        .unwrap();
    succeeded(&one);
    assert_eq!(one.counts("customer").created, 1);
    assert!(bed.salesforce.find("Account", &a.to_string()).is_some());
    assert!(bed.salesforce.find("Account", &b.to_string()).is_none());

    let by_run = bed
        .bed
        .tenant
        .replay(support::runtime(), host_harness::host::ReplayScope::Run(first.run_id.clone()))
        .await
        .unwrap();
    succeeded(&by_run);
    assert_eq!(by_run.counts("customer").created, 1, "only b was left from that run");
    assert!(bed.salesforce.find("Account", &b.to_string()).is_some());
}

/// A contact's links in Salesforce follow its parent in NetSuite: a cleared
/// company clears the lookup, a move to a vendor swaps Account for
/// Vendor__c, and a live dry run reports both before they are written.
async fn parent_links_follow_netsuite(bulk_threshold: &str) {
    let bed = bed(10).setting("salesforce_bulk_threshold", bulk_threshold).start().await;
    let vendors = bed.netsuite.seed_vendors(3, 9).unwrap();
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(20, &bed.customer_ids[..2], at, 4).unwrap();
    succeeded(&bed.sync_all().await);
    let contacts = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap();
    let (orphaned, moved, vendor) = (contacts[0].0, contacts[1].0, vendors[1]);
    assert!(bed.sf("Contact", orphaned).1["AccountId"].is_string());

    // Every contact changes, so a low threshold sends them through Bulk API 2.0.
    let now = bed.clock.now_secs();
    bed.netsuite.execute(&format!("UPDATE contact SET title = 'Buyer', lastmodifieddate = {now}")).unwrap();
    bed.netsuite.execute(&format!("UPDATE contact SET company = NULL WHERE id = {orphaned}")).unwrap();
    bed.netsuite.execute(&format!("UPDATE contact SET company = {vendor} WHERE id = {moved}")).unwrap();

    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], true).await.unwrap();
    succeeded(&plan);
    let change = |id: i64, field: &str| -> Value {
        let entry = plan.plan.iter().find(|p| p.netsuite_id == id.to_string()).expect("planned");
        assert_eq!(entry.action, "update", "{entry:?}");
        entry.changes.as_array().unwrap().iter().find(|c| c["field"] == field).cloned().unwrap_or(Value::Null)
    };
    let link = |ext: i64| serde_json::json!({ "NetSuite_Id__c": ext.to_string() });
    assert_eq!(change(orphaned, "Account")["old"], link(contacts[0].1), "a stale link is a change");
    assert_eq!(change(orphaned, "Account")["new"], Value::Null);
    assert_eq!(change(moved, "Vendor__r")["new"], link(vendor));
    assert_eq!(change(moved, "Account")["new"], Value::Null);

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("contact").updated, 20, "{report:?}");
    let (_, orphan) = bed.sf("Contact", orphaned);
    assert_eq!(orphan["AccountId"], Value::Null, "the cleared company clears the lookup");
    let (_, moved_contact) = bed.sf("Contact", moved);
    assert_eq!(moved_contact["AccountId"], Value::Null, "no longer under the customer");
    assert_eq!(moved_contact["Vendor__c"].as_str(), Some(bed.sf("Vendor__c", vendor).0.as_str()));
    assert_eq!(moved_contact["Title"], "Buyer");

    let again = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Full, &[], true).await.unwrap();
    let stale: Vec<_> = again.plan.iter().filter(|p| p.action != "unchanged").collect();
    assert!(stale.is_empty(), "after the run Salesforce matches NetSuite: {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_links_follow_netsuite_through_composite() {
    parent_links_follow_netsuite("10000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_links_follow_netsuite_through_bulk() {
    parent_links_follow_netsuite("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_dry_run_on_a_fresh_state_predicts_the_run_without_invented_deferrals() {
    let bed = bed(50).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(200, &bed.customer_ids, at, 4).unwrap();
    succeeded(&bed.sync_all().await);
    // The same installation on a new machine: the org holds everything, the
    // connector's state holds nothing.
    bed.tenant.database.connect().unwrap().execute("DELETE FROM kv WHERE bucket IN ('state', 'queues')", []).unwrap();
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], true).await.unwrap();
    succeeded(&plan);
    assert_eq!(plan.counts("contact").deferred, 0, "{:?}", plan.counts("contact"));
    assert_eq!(plan.counts("contact").unchanged, 200);
    let real = bed.sync_all().await;
    succeeded(&real);
    assert_eq!(real.counts("contact").deferred, plan.counts("contact").deferred);
    assert_eq!(real.counts("contact").read, plan.counts("contact").read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_edits_a_plain_run_leaves_are_repaired_by_a_run_compared_live() {
    let bed = bed(50).start().await;
    succeeded(&bed.sync().await);
    // People edit one Account and delete another in Salesforce; NetSuite
    // keeps both as the connector last wrote them.
    let (edited, deleted) = (bed.customer_ids[3], bed.customer_ids[4]);
    let (edited_sf, before) = bed.sf("Account", edited);
    let mut name = serde_json::Map::new();
    name.insert("Name".into(), Value::String("Renamed In Salesforce".into()));
    bed.salesforce.edit_by_hand("Account", &edited_sf, name);
    bed.salesforce.delete_by_hand(&bed.sf("Account", deleted).0);

    // Compared with the last writes, nothing differs; and a plain run indeed leaves both.
    let stored = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Full, &[], false).await.unwrap();
    assert!(stored.plan.is_empty(), "{:?}", stored.plan);
    let writes = bed.salesforce.writes();
    succeeded(&bed.full_sync().await);
    assert_eq!(bed.salesforce.writes(), writes);

    // Compared live, a dry run plans the repair of both, field by field against Salesforce's copy.
    let calls = bed.salesforce.api_requests();
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Full, &[], true).await.unwrap();
    let plan_calls = bed.salesforce.api_requests() - calls;
    succeeded(&plan);
    assert_eq!(plan.mode, "dry-run full compare-live");
    let c = plan.counts("customer");
    assert_eq!((c.read, c.unchanged, c.created, c.updated), (50, 48, 1, 1), "as the run counts: {c:?}");
    assert_eq!(plan.plan.len(), 2, "{:?}", plan.plan);
    let planned = |id: i64| plan.plan.iter().find(|p| p.netsuite_id == id.to_string()).unwrap();
    assert_eq!(planned(edited).action, "update");
    assert_eq!(
        planned(edited).changes,
        serde_json::json!([{ "field": "Name", "old": "Renamed In Salesforce", "new": before["Name"] }])
    );
    assert_eq!(planned(deleted).action, "create");
    assert!(planned(deleted).changes.as_array().unwrap().iter().all(|c| c["old"].is_null()));
    assert_eq!(bed.salesforce.writes(), writes, "a dry run writes nothing");

    // The run compared live writes those two again, and nothing else.
    let repair = bed.bed.tenant.sync_compared_live(support::runtime(), SyncMode::Full, &[]).await.unwrap();
    succeeded(&repair);
    assert_eq!(repair.mode, "full compare-live");
    let c = repair.counts("customer");
    assert_eq!((c.read, c.unchanged, c.created, c.updated), (50, 48, 1, 1), "{c:?}");
    assert_eq!(bed.salesforce.writes() - writes, 2);
    assert_eq!(bed.sf("Account", edited).1["Name"], before["Name"]);
    assert!(bed.salesforce.find("Account", &deleted.to_string()).is_some(), "created again");
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &repair.run_id).unwrap();
    let row = rows.iter().find(|r| r.netsuite_id == edited.to_string()).unwrap();
    assert_eq!((row.action.as_str(), row.outcome.as_str()), ("write", "updated"));
    let list: Vec<Value> = serde_json::from_str(&row.transformations).unwrap();
    let name = list.iter().find(|t| t["field"] == "Name").unwrap();
    assert_eq!((&name["old"], &name["new"]), (&Value::from("Renamed In Salesforce"), &before["Name"]));

    // Repaired: compared live again, there is nothing left to write.
    let calls = bed.salesforce.api_requests();
    let after = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Full, &[], true).await.unwrap();
    assert!(after.plan.is_empty(), "{:?}", after.plan);
    assert_eq!(after.counts("customer").unchanged, 50);
    // The records found drifted were planned from the read that found them,
    // not read again: the plan cost the same calls as this check alone.
    assert_eq!(plan_calls, bed.salesforce.api_requests() - calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dry_run_reads_everything_as_a_full_run_would() {
    let bed = bed(300).start().await;
    succeeded(&bed.sync().await);
    bed.netsuite.rename_customer_any(bed.customer_ids[3], "Only Change").unwrap();
    let incremental = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    assert_eq!(incremental.counts("customer").read, 1);
    let full = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Full, &[], false).await.unwrap();
    succeeded(&full);
    assert_eq!(full.mode, "dry-run full");
    assert_eq!(full.counts("customer").read, 300, "--full is honoured");
    assert_eq!(full.counts("customer").updated, 1);
    let real = bed.full_sync().await;
    assert_eq!((real.counts("customer").read, real.counts("customer").updated), (300, 1));
}

/// A run killed between its Salesforce write and its bookkeeping leaves
/// records in Salesforce with no state; when NetSuite deletes them, the
/// deletion still reaches them (found by external id), and nothing is created
/// for deletions of records Salesforce never had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_reaches_a_record_written_by_a_run_that_died_before_recording_it() {
    let bed = bed(40).start().await;
    succeeded(&bed.sync_all().await);
    let (unrecorded, recorded) = (bed.customer_ids[5], bed.customer_ids[6]);
    // What a kill right after the write leaves: the record in Salesforce,
    // no state and no audit row for it.
    let conn = bed.tenant.database.connect().unwrap();
    let wiped = conn.execute("DELETE FROM kv WHERE key = ?1", [format!("record/customer/{unrecorded}")]).unwrap();
    assert_eq!(wiped, 1, "the state key is where the test expects it");
    conn.execute("DELETE FROM audit WHERE netsuite_id = ?1", [unrecorded.to_string()]).unwrap();
    let never_synced = bed.netsuite.seed_customers(1, 77).unwrap()[0];
    for id in [unrecorded, recorded, never_synced] {
        bed.netsuite.delete_record("customer", id).unwrap();
    }
    let accounts = bed.salesforce.count("Account");

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").deleted, 2, "{report:?}");
    for id in [unrecorded, recorded] {
        assert_eq!(bed.sf("Account", id).1["NetSuite_Deleted__c"], true, "customer {id} is flagged");
    }
    assert!(bed.salesforce.find("Account", &never_synced.to_string()).is_none(), "a deletion creates nothing");
    assert_eq!(bed.salesforce.count("Account"), accounts);
    let trail = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let flagged = trail.iter().find(|r| r.netsuite_id == unrecorded.to_string()).expect("the record has a trail now");
    assert_eq!(
        (flagged.action.as_str(), flagged.salesforce_id.as_deref()),
        ("flag-deleted", Some(bed.sf("Account", unrecorded).0.as_str()))
    );
}

/// A failed write whose record NetSuite deletes is never replayed into a
/// live Salesforce record: a replay checks NetSuite first, and a sync that
/// reads the deletion takes the write out of the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_never_brings_back_a_record_deleted_in_netsuite() {
    let bed = bed(30).start().await;
    bed.salesforce.set_validation_rule(embargo());
    let (replayed_first, synced_first, kept) = (bed.customer_ids[1], bed.customer_ids[2], bed.customer_ids[3]);
    for (i, id) in [replayed_first, synced_first, kept].into_iter().enumerate() {
        bed.netsuite.rename_customer_any(id, &format!("Embargoed Holdings {i}")).unwrap();
    }
    let first = bed.sync_all().await;
    assert_eq!(first.counts("customer").failed, 3);
    bed.salesforce.set_validation_rule(None);

    // Deleted, then a replay before any sync has read the deletion.
    bed.netsuite.delete_record("customer", replayed_first).unwrap();
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").created, 2, "only the records NetSuite still has: {replay:?}");
    assert!(bed.salesforce.find("Account", &replayed_first.to_string()).is_none());
    assert!(bed.salesforce.find("Account", &kept.to_string()).is_some());

    // An update that fails, a deletion read by a sync before any replay.
    bed.salesforce.set_validation_rule(embargo());
    bed.netsuite.rename_customer_any(synced_first, "Embargoed Holdings again").unwrap();
    succeeded(&bed.sync_all().await);
    bed.salesforce.set_validation_rule(None);
    bed.netsuite.delete_record("customer", synced_first).unwrap();
    let sync = bed.sync_all().await;
    succeeded(&sync);
    let conn = bed.tenant.database.connect().unwrap();
    let trail = host_harness::audit::for_run(&conn, "demo", &sync.run_id).unwrap();
    assert!(trail.iter().any(|r| r.action == "drop" && r.netsuite_id == synced_first.to_string()), "{trail:?}");
    assert_eq!(bed.sf("Account", synced_first).1["NetSuite_Deleted__c"], true);
    let again = bed.replay_all().await;
    succeeded(&again);
    assert_eq!(again.counts("customer").updated, 0, "nothing left to replay: {again:?}");
    let (_, held) = bed.sf("Account", synced_first);
    assert_eq!(held["NetSuite_Deleted__c"], true, "still flagged");
    assert!(!held["Name"].as_str().unwrap().ends_with("again"), "the failed update was not sent");
}

/// A Salesforce nothing answers at: the run fails saying so, and counts no
/// Salesforce call (none reached the API, so none counts against its limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_salesforce_fails_the_run_and_counts_no_call_to_it() {
    let bed = bed(10)
        .setting("http_max_retries", "1")
        .setting("http_backoff_base_ms", "10")
        .setting("http_backoff_cap_ms", "10")
        .start()
        .await;
    // A port just freed, picked once the simulators hold theirs.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    bed.tenant.set_override("salesforce_login_url", &format!("http://127.0.0.1:{port}"));
    let report = bed.sync().await;
    assert_eq!(report.status, "failed", "{report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("failed after 2 attempts") && error.contains("reachable"), "{error}");
    assert_eq!(report.api_calls.salesforce, 0, "{:?}", report.api_calls);
    assert_eq!(bed.salesforce.count("Account"), 0);
}

/// A contact changed after NetSuite deleted its company (the contact stays,
/// its company gone): written without the link, whatever the deletion did to
/// the Account — as NetSuite now has it, linked to nothing.
async fn contact_of_a_deleted_company(delete_action: &str) -> (support::Bed, i64, i64) {
    let bed = bed(10).setting("delete_action", delete_action).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(20, &bed.customer_ids[..2], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    let (contact, company) = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0];
    let account = bed.sf("Account", company).0;
    let (sf_contact, fields) = bed.sf("Contact", contact);
    assert_eq!(fields["AccountId"].as_str(), Some(account.as_str()));
    // An hour on another contact changes: the window a run reads again for
    // late commits (the ten minutes before the newest change) is past them.
    bed.clock.advance(std::time::Duration::from_secs(3600));
    let other = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[1];
    assert_ne!(other.1, company);
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE contact SET title = 'Buyer', lastmodifieddate = {now} WHERE id = {}", other.0);
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    succeeded(&bed.sync_all().await);
    bed.clock.advance(std::time::Duration::from_secs(1));
    bed.netsuite.delete_record("customer", company).unwrap();
    let deleting = bed.sync_all().await;
    succeeded(&deleting);
    // The contacts did not change in NetSuite, yet their company is gone:
    // the same run reads them again and writes them under no Account (with
    // `delete`, Salesforce deleted them along with it; with `flag`, the same
    // Contacts are unlinked, as any later read of them would do).
    let under = bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap();
    let under = under.iter().filter(|(_, c)| *c == company).count() as u32;
    assert_eq!(deleting.counts("contact").read, under, "{deleting:?}");
    assert_eq!(bed.salesforce.count("Contact"), 20);
    let (again, fields) = bed.sf("Contact", contact);
    if delete_action == "flag" {
        assert_eq!(again, sf_contact, "the same Contact");
    }
    assert!(fields.get("AccountId").is_none_or(|v| v.is_null()), "{fields:?}");
    bed.clock.advance(std::time::Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE contact SET lastname = 'Still Here', lastmodifieddate = {now} WHERE id = {contact}");
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!((report.counts("contact").updated, report.counts("contact").deferred), (1, 0), "{report:?}");
    let (_, fields) = bed.sf("Contact", contact);
    assert_eq!(fields["LastName"], "Still Here");
    assert!(fields.get("AccountId").is_none_or(|v| v.is_null()), "no longer under the deleted company: {fields:?}");
    (bed, contact, company)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_whose_company_was_flagged_deleted_is_written_without_the_link() {
    let (bed, _, company) = contact_of_a_deleted_company("flag").await;
    assert_eq!(bed.sf("Account", company).1["NetSuite_Deleted__c"], true, "the Account stays, flagged");
}

/// A dry run plans what a company's deletion does to its contacts, as the
/// run that follows does it: each read again and written under no Account,
/// once, also when the run reads them twice (in the window it reads again
/// for late commits, and as queued events) and the deletion twice (its
/// event, and NetSuite's list of deletions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_the_contacts_of_a_deleted_company_like_the_run_that_follows() {
    let cases = [("flag", false, false), ("flag", true, false), ("delete", false, false), ("delete", true, false)];
    for (delete_action, read_twice, compare_live) in cases.into_iter().chain([("delete", false, true)]) {
        let case = format!("{delete_action}, read twice: {read_twice}, compare live: {compare_live}");
        let bed = bed(10).setting("delete_action", delete_action).start().await;
        let at = bed.clock.now_secs() - 3600;
        bed.netsuite.seed_contacts(20, &bed.customer_ids[..2], at, 5).unwrap();
        succeeded(&bed.sync_all().await);
        let company = bed.customer_ids[0];
        bed.clock.advance(std::time::Duration::from_secs(3600));
        if !read_twice {
            // A change an hour later moves the window a run reads again
            // past these contacts, as in `contact_of_a_deleted_company`.
            let now = bed.clock.now_secs();
            let sql =
                format!("UPDATE contact SET title = 'Buyer', lastmodifieddate = {now} WHERE company <> {company}");
            assert!(bed.netsuite.execute(&sql).unwrap() > 0);
            succeeded(&bed.sync_all().await);
            bed.clock.advance(std::time::Duration::from_secs(1));
        }
        bed.netsuite.delete_record("customer", company).unwrap();
        if read_twice {
            // NetSuite's event for the deletion too: the run applies it,
            // then reads the same deletion in NetSuite's list.
            bed.queue_events(&[("customer", company, "delete")]);
        }
        let mut under: Vec<String> = bed
            .netsuite
            .id_pairs("SELECT id, company FROM contact")
            .unwrap()
            .into_iter()
            .filter(|(_, c)| *c == company)
            .map(|(id, _)| id.to_string())
            .collect();
        under.sort();
        assert!(!under.is_empty());

        let rt = support::runtime();
        let plan = bed.bed.tenant.dry_run(rt, SyncMode::Incremental, &[], compare_live).await.unwrap();
        succeeded(&plan);
        let mut planned: Vec<(String, String)> = plan
            .plan
            .iter()
            .filter(|p| p.kind == "contact")
            .map(|p| (p.netsuite_id.clone(), p.action.clone()))
            .collect();
        planned.sort();
        // Deleted, the Account takes its Contacts along (describe says the
        // lookup cascades): the real run creates them anew.
        // Read again in the overlap window first (their company no longer
        // joins), they are unlinked before it goes, and stay.
        let gone_along = delete_action == "delete" && !read_twice;
        let action = if gone_along { "create" } else { "update" };
        let expected: Vec<(String, String)> = under.iter().map(|id| (id.clone(), action.to_string())).collect();
        assert_eq!(planned, expected, "{case}: {:?}", plan.plan);

        // Flagged, the company stays: its contacts' one change is the link.
        // Deleted, it takes them along: everything is new.
        for p in plan.plan.iter().filter(|p| p.kind == "contact") {
            let changes = p.changes.as_array().expect("a list of changes");
            match gone_along {
                false => assert_eq!(
                    p.changes,
                    serde_json::json!([{"field": "Account", "old": {"NetSuite_Id__c": company.to_string()}, "new": null}]),
                    "{case}"
                ),
                _ => assert!(changes.len() > 1 && changes.iter().all(|c| c["old"].is_null()), "{case}: {changes:?}"),
            }
        }
        let real = bed.sync_all().await;
        succeeded(&real);
        let rows = host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &real.run_id).unwrap();
        let written =
            rows.iter().find(|r| r.kind == "contact" && r.netsuite_id == under[0]).expect("the contact's row");
        let list: Vec<Value> = serde_json::from_str(&written.transformations).unwrap();
        let changed: Vec<&str> = list
            .iter()
            .filter(|t| t.get("old").is_some() || t.get("new").is_some())
            .filter_map(|t| t["field"].as_str())
            .collect();
        match gone_along {
            false => assert_eq!(changed, ["Account"], "{case}: {}", written.transformations),
            _ => assert!(changed.contains(&"FirstName") && changed.len() > 3, "{case}: {}", written.transformations),
        }
        let (p, r) = (plan.counts("contact"), real.counts("contact"));
        assert_eq!((p.read, p.deferred), (r.read, r.deferred), "{case}");
        assert_eq!(plan.plan.iter().filter(|p| p.kind == "customer").count(), 1, "{case}: {:?}", plan.plan);
        assert_eq!((plan.counts("customer").deleted, real.counts("customer").deleted), (1, 1), "{case}");
        // Read again in the overlap window, the contacts were written
        // unlinked before the deletion: its refresh leaves them be (one
        // write each, as planned).
        assert_eq!((p.created, p.updated), (r.created, r.updated), "{case}: {r:?}");
        assert_eq!(r.updated + r.created, under.len() as u32, "{case}: {r:?}");
    }
}

/// A contact moved to another company, whose old company NetSuite then
/// deleted, keeps its Salesforce record under `delete_action = "delete"`:
/// the run writes every kind's changes before any deletion, so Salesforce's
/// cascade (an Account takes its Contacts along) no longer finds it there.
/// Both in a scheduled run and in one applying change events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_moved_away_from_a_company_deleted_in_the_same_run_keeps_its_salesforce_record() {
    // Both by polling; both as events; the move polled, the deletion an
    // event still queued (a deletion Salesforce refused last run is retried so).
    for (by_events, deletion_queued) in [(false, false), (true, true), (false, true)] {
        let bed = bed(10).setting("delete_action", "delete").start().await;
        let at = bed.clock.now_secs() - 3600;
        bed.netsuite.seed_contacts(20, &bed.customer_ids[..2], at, 5).unwrap();
        succeeded(&bed.sync_all().await);
        let (old, new) = (bed.customer_ids[0], bed.customer_ids[1]);
        let pairs = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap();
        let contact = pairs.iter().find(|(_, c)| *c == old).expect("a contact of the first company").0;
        let (sf_contact, _) = bed.sf("Contact", contact);
        let (new_account, _) = bed.sf("Account", new);

        bed.clock.advance(std::time::Duration::from_secs(3600));
        let now = bed.clock.now_secs();
        let sql = format!("UPDATE contact SET company = {new}, lastmodifieddate = {now} WHERE id = {contact}");
        assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
        bed.netsuite.delete_record("customer", old).unwrap();
        if deletion_queued {
            bed.queue_events(&[("customer", old, "delete")]);
        }
        let report = if by_events {
            bed.queue_events(&[("contact", contact, "edit")]);
            bed.bed.sync_kinds(support::runtime(), SyncMode::Events, &[]).await.unwrap()
        } else {
            bed.sync_all().await
        };
        succeeded(&report);
        let case = format!("by events: {by_events}, deletion queued: {deletion_queued}");
        assert!(bed.salesforce.find("Account", &old.to_string()).is_none(), "{case}: the old Account is gone");
        let (after, fields) = bed.sf("Contact", contact);
        assert_eq!(after, sf_contact, "{case}: the same Contact, not deleted and created anew");
        assert_eq!(fields["AccountId"].as_str(), Some(new_account.as_str()), "{case}");
        let rows =
            host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &report.run_id).unwrap();
        let moved: Vec<_> =
            rows.iter().filter(|r| r.netsuite_id == contact.to_string() && r.kind == "contact").collect();
        assert!(!moved.is_empty() && moved.iter().all(|r| r.outcome == "updated"), "{case}: {moved:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_whose_company_was_deleted_from_salesforce_is_written_without_the_link() {
    let (bed, _, company) = contact_of_a_deleted_company("delete").await;
    assert!(bed.salesforce.find("Account", &company.to_string()).is_none(), "the Account is gone");
}

/// A run stopped after it recorded a refused write (audited, kept for
/// replay) but before it cleared the write's mark: the next run adds no
/// `interrupted` row, since that outcome is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_recorded_before_the_run_stopped_gets_no_interrupted_row() {
    use simulators::salesforce::ValidationRule;
    let bed = bed(3).start().await;
    succeeded(&bed.sync_all().await);
    let id = bed.customer_ids[1];
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Account".into(),
        field: "Name".into(),
        contains: "Embargoed".into(),
        message: "no".into(),
    }));
    bed.clock.advance(std::time::Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE customer SET companyname = 'Embargoed Co', lastmodifieddate = {now} WHERE id = {id}");
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    let failed = bed.sync_all().await;
    assert_eq!(failed.counts("customer").failed, 1);
    let conn = bed.tenant.database.connect().unwrap();
    let queued: Vec<u8> = conn
        .query_row(
            "SELECT value FROM kv WHERE tenant = 'demo' AND bucket = 'queues' AND key = ?1",
            [format!("failed/customer/{id}")],
            |r| r.get(0),
        )
        .unwrap();
    let queued: serde_json::Value = serde_json::from_slice(&queued).unwrap();
    let sent = queued["state"]["dst"].as_str().unwrap();
    // The mark that run would have left, for the write it recorded as refused.
    let marks = bed.tenant.database.connect_marks().unwrap();
    marks
        .execute(
            "INSERT INTO kv (tenant, bucket, key, value, updated_at) VALUES ('demo', 'in-flight', ?1, CAST(?2 AS \
             BLOB), '')",
            [format!("customer/{}/upserts-00000001", failed.run_id), format!("{id} {sent}\n")],
        )
        .unwrap();
    bed.clock.advance(std::time::Duration::from_secs(1));
    let next = bed.sync_all().await;
    let rows = host_harness::audit::for_run(&conn, "demo", &next.run_id).unwrap();
    assert!(rows.iter().all(|r| r.action != "interrupted"), "{rows:?}");
}

/// A run killed after it parked records for a Bulk job page and then sent
/// them in a Composite request leaves two marks of each: the next run
/// audits the send as `interrupted` (the page's mark, taken up first, put
/// the record in doubt, which hid the send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_a_killed_run_parked_then_sent_gets_its_interrupted_row() {
    let bed = bed(3).start().await;
    succeeded(&bed.sync_all().await);
    let id = bed.customer_ids[1];
    let marks = bed.tenant.database.connect_marks().unwrap();
    for key in ["customer/run-killed/00000001", "customer/run-killed/upserts-00000002"] {
        marks
            .execute(
                "INSERT INTO kv (tenant, bucket, key, value, updated_at) VALUES ('demo', 'in-flight', ?1, CAST(?2 AS \
                 BLOB), '')",
                [key.to_string(), format!("{id} 0123456789abcdef0123456789abcdef\n")],
            )
            .unwrap();
    }
    bed.clock.advance(std::time::Duration::from_secs(1));
    let next = bed.sync_all().await;
    succeeded(&next);
    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &next.run_id).unwrap();
    let interrupted: Vec<_> = rows.iter().filter(|r| r.action == "interrupted").collect();
    assert_eq!(interrupted.len(), 1, "{rows:?}");
    assert_eq!(
        (interrupted[0].netsuite_id.as_str(), interrupted[0].outcome.as_str()),
        (id.to_string().as_str(), "unknown")
    );
}

/// A record the mapping cannot take (a phone number too short) fails alone,
/// its audit row names the record and the value to fix, nothing waits for
/// replay, and the run after its fix in NetSuite writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_mapping_cannot_take_fails_its_record_until_fixed_in_netsuite() {
    let bed = bed(5).start().await;
    let id = bed.customer_ids[2];
    let now = bed.clock.now_secs();
    assert_eq!(
        bed.netsuite
            .execute(&format!("UPDATE customer SET phone = '555', lastmodifieddate = {now} WHERE id = {id}"))
            .unwrap(),
        1
    );
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!((report.counts("customer").failed, report.counts("customer").created), (1, 4));
    let rows = host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &report.run_id).unwrap();
    let refused: Vec<_> = rows.iter().filter(|r| r.action == "map").collect();
    assert_eq!(refused.len(), 1, "{rows:?}");
    let error = refused[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with(&format!("the mapping cannot take this record's value: customer {id}")), "{error}");
    let conn = bed.tenant.database.connect().unwrap();
    let waiting: i64 = conn
        .query_row("SELECT COUNT(*) FROM kv WHERE bucket = 'queues' AND key LIKE 'failed/%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waiting, 0, "nothing to replay: the value is NetSuite's to fix");

    bed.clock.advance(std::time::Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE customer SET phone = '+1 512 555 0100', lastmodifieddate = {now} WHERE id = {id}");
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 1, "{report:?}");
    assert_eq!(bed.sf("Account", id).1["Phone"], "+15125550100");
}

/// An Account deleted in Salesforce by hand took its Contacts along: when
/// NetSuite's next change writes the company anew, its contacts are created
/// anew too, and their audit rows show every field new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_of_an_account_deleted_by_hand_are_created_anew_with_every_field() {
    let bed = bed(3).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(4, &bed.customer_ids[..1], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    let company = bed.customer_ids[0];
    let contact = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0].0;
    let (old_sf, _) = bed.sf("Contact", contact);
    bed.salesforce.delete_by_hand(&bed.sf("Account", company).0);
    assert!(bed.salesforce.find("Contact", &contact.to_string()).is_none(), "gone with its Account");
    bed.clock.advance(std::time::Duration::from_secs(3600));
    bed.netsuite.set_customer_phone(company, "+1 212-555-0100").unwrap();
    let real = bed.sync_all().await;
    succeeded(&real);
    let (new_sf, _) = bed.sf("Contact", contact);
    assert_ne!(new_sf, old_sf);
    assert_eq!(real.counts("contact").created, 4, "{real:?}");
    let rows = host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &real.run_id).unwrap();
    let row = rows.iter().find(|r| r.kind == "contact" && r.netsuite_id == contact.to_string()).expect("its row");
    let list: Vec<Value> = serde_json::from_str(&row.transformations).unwrap();
    let new: Vec<&str> = list.iter().filter(|t| t.get("new").is_some()).filter_map(|t| t["field"].as_str()).collect();
    assert!(row.outcome == "created" && new.contains(&"LastName") && new.len() > 3, "{}", row.transformations);
}

/// A failed company write replayed after its Account was deleted in
/// Salesforce by hand (its Contacts with it): the replay writes the company
/// anew and its contacts follow in the same replay, not at the next sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_writes_an_account_anew_brings_its_contacts_back_too() {
    let bed = bed(3).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(2, &bed.customer_ids[..1], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    let company = bed.customer_ids[0];
    let contacts = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap();
    bed.clock.advance(std::time::Duration::from_secs(60));
    bed.netsuite.rename_customer(company, "Embargoed Traders").unwrap();
    bed.salesforce.set_validation_rule(embargo());
    let failed = bed.sync_all().await;
    succeeded(&failed);
    assert_eq!(failed.counts("customer").failed, 1, "{failed:?}");
    bed.salesforce.delete_by_hand(&bed.sf("Account", company).0);
    assert!(bed.salesforce.find("Contact", &contacts[0].0.to_string()).is_none(), "gone with its Account");
    bed.salesforce.set_validation_rule(None);

    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").created, 1, "{replay:?}");
    assert_eq!(replay.counts("contact").created, 2, "{replay:?}");
    let (account, _) = bed.sf("Account", company);
    for (contact, _) in &contacts {
        let (_, record) = bed.sf("Contact", *contact);
        assert_eq!(record["AccountId"], Value::String(account.clone()), "contact {contact}");
    }
    // Nothing left for the next run.
    let next = bed.sync_all().await;
    succeeded(&next);
    assert_eq!(next.counts("contact").created + next.counts("contact").updated, 0, "{next:?}");
}

/// A record changed during the read goes out twice, both versions in one
/// Composite request (in order): the older lands, the newer is refused. The
/// newer stays kept for replay, and the replay sends it once allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_newer_version_beside_a_landed_older_one_is_kept_for_replay() {
    let bed = support::one_request_at_a_time(300).start().await;
    bed.netsuite.execute("UPDATE customer SET isperson = 'F'").unwrap();
    succeeded(&bed.sync().await);
    let x = bed.customer_ids[5];
    let now = bed.clock.now_secs();
    // Every customer touched (the same values), x renamed first in time.
    bed.netsuite.execute(&format!("UPDATE customer SET lastmodifieddate = {now} - 300 + (id % 250)")).unwrap();
    let sql =
        format!("UPDATE customer SET companyname = 'Version One Ltd', lastmodifieddate = {now} - 400 WHERE id = {x}");
    bed.netsuite.execute(&sql).unwrap();
    bed.salesforce.set_validation_rule(embargo());
    bed.netsuite.after_queries(bed.netsuite.queries() + support::ZONE_CHECK_QUERIES + 1, move |ns| {
        let sql = format!("UPDATE customer SET companyname = 'Embargoed Two', lastmodifieddate = {now} WHERE id = {x}");
        ns.execute(&sql).unwrap();
    });
    let run = bed.sync().await;
    succeeded(&run);
    let c = run.counts("customer");
    assert_eq!(c.failed, 1, "{c:?}");
    assert_eq!(bed.sf("Account", x).1["Name"], Value::String("Version One Ltd".into()));
    bed.salesforce.set_validation_rule(None);
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!(replay.counts("customer").updated, 1, "{replay:?}");
    assert_eq!(bed.sf("Account", x).1["Name"], Value::String("Embargoed Two".into()));
}

/// A contact deferred behind a company whose write Salesforce refused, then
/// NetSuite deletes the company: the contact no longer waits for it, and is
/// written unlinked by the run that reads the deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waiting_for_a_parent_netsuite_then_deletes_is_written_unlinked() {
    let bed = bed(3).start().await;
    bed.netsuite.execute("UPDATE customer SET isperson = 'F'").unwrap();
    let parent = bed.customer_ids[0];
    bed.netsuite.execute(&format!("UPDATE customer SET companyname = 'Embargoed Parent' WHERE id = {parent}")).unwrap();
    bed.netsuite.seed_contacts(1, &[parent], bed.clock.now_secs() - 60, 3).unwrap();
    let contact = bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap()[0].0;
    bed.salesforce.set_validation_rule(embargo());
    let first = bed.sync_all().await;
    succeeded(&first);
    assert_eq!((first.counts("customer").failed, first.counts("contact").deferred), (1, 1), "{first:?}");
    // Runs later, the contact's read is long behind the overlap window.
    for _ in 0..2 {
        bed.clock.advance(std::time::Duration::from_secs(700));
        succeeded(&bed.sync_all().await);
    }
    bed.netsuite.delete_record("customer", parent).unwrap();
    bed.salesforce.set_validation_rule(None);
    bed.clock.advance(std::time::Duration::from_secs(700));
    let run = bed.sync_all().await;
    succeeded(&run);
    assert_eq!(run.counts("contact").created, 1, "{run:?}");
    let (_, record) = bed.sf("Contact", contact);
    assert_eq!(record.get("AccountId").cloned().unwrap_or(Value::Null), Value::Null, "written unlinked");
    assert!(bed.salesforce.find("Account", &parent.to_string()).is_none());
    bed.clock.advance(std::time::Duration::from_secs(700));
    let idle = bed.sync_all().await;
    assert_eq!(idle.counts("contact").created + idle.counts("contact").deferred, 0, "{idle:?}");
}

/// A full run compared live, after an Account was deleted in Salesforce by
/// hand (its Contacts with it), writes the company and its contacts anew
/// once each: the contacts its full read created are not read and counted
/// again when the refresh of the company's children comes round, and the
/// dry run before it predicts the same counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_compared_live_counts_contacts_created_anew_once() {
    let bed = bed(5).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(12, &bed.customer_ids[..3], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    let company = bed.customer_ids[0];
    let under = bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap();
    let under = under.iter().filter(|(_, c)| *c == company).count() as u32;
    assert!(under > 0);
    bed.salesforce.delete_by_hand(&bed.sf("Account", company).0);
    let rt = support::runtime();
    let plan = bed.bed.tenant.dry_run(rt, SyncMode::Full, &[], true).await.unwrap();
    succeeded(&plan);
    let real = bed.bed.tenant.sync_compared_live(rt, SyncMode::Full, &[]).await.unwrap();
    succeeded(&real);
    let (p, r) = (plan.counts("contact"), real.counts("contact"));
    assert_eq!((r.read, r.created, r.unchanged), (12, under, 12 - under), "{r:?}");
    assert_eq!((p.read, p.created, p.updated, p.unchanged), (r.read, r.created, r.updated, r.unchanged), "{p:?}");
    assert_eq!(bed.salesforce.count("Contact"), 12);
}

/// A tenant renamed in its config, its files kept, finds none of its state
/// (kept by name): its run is refused, naming both names and what to do,
/// instead of writing every record again and applying past deletions
/// again. Nothing is recorded, so the old name still runs as before; and
/// another tenant sharing the database with secrets of its own runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_renamed_in_its_config_is_refused_and_another_tenant_of_the_database_is_not() {
    let bed = bed(5).start().await;
    succeeded(&bed.sync().await);
    let writes = bed.salesforce.writes();
    let open = |config| {
        host_harness::scheduler::Tenant::open(config, bed.tenant.cipher.clone(), bed.tenant.clock.clone()).unwrap()
    };
    let mut config = bed.tenant.config.clone();
    config.tenant = "renamed".into();
    let renamed = open(config.clone());
    let e = renamed.sync(support::runtime(), SyncMode::Incremental, &[]).await.unwrap_err().to_string();
    assert!(e.contains("ran as tenant `demo`") && e.contains("as `renamed`"), "{e}");
    assert!(
        e.contains("put its name back (`tenant = \"demo\"`") && e.contains("secrets_file (or data_dir) of its own"),
        "{e}"
    );
    assert_eq!(bed.salesforce.writes(), writes, "nothing written");
    let e2 = renamed.sync(support::runtime(), SyncMode::Incremental, &[]).await.unwrap_err().to_string();
    assert_eq!(e, e2, "still refused: the refusal recorded nothing");
    // Counted where alerts look, though no run row is kept.
    let metrics = host_harness::metrics::render(&[]);
    let refused = r#"connector_runs_total{tenant="renamed",mode="incremental",outcome="failed"} 2"#;
    assert!(
        metrics.lines().any(|l| l == refused),
        "no `{refused}` in:
{metrics}"
    );
    succeeded(&bed.sync().await);

    // Another tenant, its secrets its own, in the same database: it runs.
    let own = config.secrets_path().with_file_name("globex-secrets.enc");
    std::fs::copy(config.secrets_path(), &own).unwrap();
    config.tenant = "globex".into();
    config.secrets_file = Some(own);
    succeeded(&open(config).sync(support::runtime(), SyncMode::Incremental, &[]).await.unwrap());
}

/// A column misspelt in the mapping file is refused by NetSuite, whose
/// message names the query's identifier only: the run's error adds where
/// the mapping reads it, so the user knows which line to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_mapping_column_names_the_field_that_reads_it() {
    let bed = bed(3).start().await;
    let shipped = netsuite_salesforce::mapping::DEFAULT_MAPPING;
    let typo = shipped.replacen(
        "target = \"BillingCity\"\nrules = [{ copy = \"billcity\" }]",
        "target = \"BillingCity\"\nrules = [{ copy = \"billcityy\" }]",
        1,
    );
    assert_ne!(typo, shipped);
    bed.tenant.set_override("mapping_toml", &typo);
    let report = bed.sync().await;
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("Unknown identifier"), "{error}");
    assert!(error.contains("[customer] field BillingCity reads column `billcityy`"), "{error}");
    assert_eq!(report.counts("contact").created, 0, "contacts wait for their Accounts: {report:?}");
}

/// Rows read again unchanged while their writes wait are handled already: a
/// write Salesforce refused (kept for replay), a row the mapping refused and
/// a contact deferred for that refused parent are not sent, refused or
/// deferred once more by the runs that re-read the overlap window (no
/// Salesforce write, no audit row, no failure counted); the refused write
/// still waits for replay, and a NetSuite edit brings a refused row back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_again_unchanged_while_their_writes_wait_are_handled_already() {
    let bed = bed(10).start().await;
    let (embargoed, unmappable) = (bed.customer_ids[0], bed.customer_ids[1]);
    bed.salesforce.set_validation_rule(embargo());
    bed.netsuite.rename_customer_any(embargoed, "Embargoed Holdings").unwrap();
    let now = bed.clock.now_secs();
    let short = format!("UPDATE customer SET phone = '555', lastmodifieddate = {now} WHERE id = {unmappable}");
    assert_eq!(bed.netsuite.execute(&short).unwrap(), 1);
    bed.netsuite.seed_contacts(3, &[embargoed], now, 5).unwrap();
    let first = bed.sync_all().await;
    succeeded(&first);
    assert_eq!(first.counts("customer").failed, 2, "{first:?}");
    assert_eq!(first.counts("contact").deferred, 3, "{first:?}");

    for round in 0..2 {
        bed.clock.advance(std::time::Duration::from_secs(5));
        // A late commit, dated before the refused rows: only a re-read of
        // the window behind the cursor (the refused rows' too) finds it.
        let late = format!(
            "UPDATE customer SET companyname = 'Late Commit {round}', lastmodifieddate = {} WHERE id = {}",
            now - 1,
            bed.customer_ids[5]
        );
        assert_eq!(bed.netsuite.execute(&late).unwrap(), 1);
        let writes = bed.salesforce.writes();
        let again = bed.sync_all().await;
        succeeded(&again);
        let (customers, contacts) = (again.counts("customer"), again.counts("contact"));
        assert_eq!((customers.failed, customers.updated, contacts.deferred), (0, 1, 0), "{again:?}");
        assert_eq!(bed.salesforce.writes(), writes + 1, "the late commit only");
        let rows =
            host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &again.run_id).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
    }

    // The refused write and its children still wait: a replay after the
    // rule is fixed sends them.
    bed.salesforce.set_validation_rule(None);
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert_eq!((replay.counts("customer").created, replay.counts("contact").created), (1, 3), "{replay:?}");
    // The row the mapping refused comes back with its fix.
    bed.clock.advance(std::time::Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let fixed =
        format!("UPDATE customer SET phone = '+1 512 555 0100', lastmodifieddate = {now} WHERE id = {unmappable}");
    assert_eq!(bed.netsuite.execute(&fixed).unwrap(), 1);
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 1, "{report:?}");
    assert_eq!(bed.sf("Account", unmappable).1["Phone"], "+15125550100");
}

/// Contacts whose writes failed because their Account was deleted in
/// Salesforce by hand (the lookup names an Account no longer there), one
/// synced before and one new, come back with their company: its next change
/// writes it anew and the contacts follow in that run, though their rows are
/// unchanged since the failure (a refused row read again unchanged is
/// otherwise left to wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_refused_for_its_deleted_account_follows_the_account_written_anew() {
    let bed = bed(3).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(2, &bed.customer_ids[..1], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    let company = bed.customer_ids[0];
    let contact = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0].0;
    bed.salesforce.delete_by_hand(&bed.sf("Account", company).0);
    bed.clock.advance(std::time::Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let edit = format!("UPDATE contact SET lastname = 'Moved', lastmodifieddate = {now} WHERE id = {contact}");
    assert_eq!(bed.netsuite.execute(&edit).unwrap(), 1);
    bed.netsuite.seed_contacts(1, &[company], now, 9).unwrap();
    let newcomer = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id DESC").unwrap()[0].0;
    let refused = bed.sync_all().await;
    succeeded(&refused);
    assert_eq!(refused.counts("contact").failed, 2, "{refused:?}");
    bed.clock.advance(std::time::Duration::from_secs(1));
    bed.netsuite.set_customer_phone(company, "+1 212-555-0100").unwrap();
    let run = bed.sync_all().await;
    succeeded(&run);
    assert_eq!(run.counts("customer").created, 1, "{run:?}");
    assert_eq!(bed.sf("Contact", contact).1["LastName"], "Moved", "{run:?}");
    assert!(bed.salesforce.find("Contact", &newcomer.to_string()).is_some(), "{run:?}");
}

/// Customers written to another object for a while, then back to Account:
/// a NetSuite deletion reaches the customer's Account, though the record's
/// state still holds the id of its copy in the other object (before, that
/// id was sent as an Account's, Salesforce answered it names no Account,
/// and the deletion counted as done while the Account stayed live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_after_the_target_object_changed_reaches_the_record_of_the_current_object() {
    let bed = bed(10).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(6, &bed.customer_ids[..3], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    let elsewhere = "[customer]\nsobject = \"Vendor__c\"\n[[customer.field]]\ntarget = \"Name\"\n\
                     rules = [{ copy = \"companyname\" }, { copy = \"entityid\" }]\n";
    bed.tenant.set_override("mapping_toml", elsewhere);
    // The dry run knows the records are new there, as the run finds them.
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    assert_eq!((plan.counts("customer").created, plan.counts("customer").unchanged), (10, 0), "{plan:?}");
    let olds = plan.plan.iter().flat_map(|w| w.changes.as_array().cloned().unwrap_or_default());
    assert!(olds.clone().all(|c| c.get("old").is_none_or(Value::is_null)), "{:?}", plan.plan);
    assert_eq!(olds.count(), 20, "a Name and the external id each: {:?}", plan.plan);
    let moved = bed.sync_all().await;
    succeeded(&moved);
    assert_eq!(moved.counts("customer").created, 10, "{moved:?}");
    let gone = bed.customer_ids[4];
    let copy = bed.sf("Vendor__c", gone).0;
    bed.tenant.set_override("mapping_toml", netsuite_salesforce::mapping::DEFAULT_MAPPING);
    bed.netsuite.delete_record("customer", gone).unwrap();

    // Back on Account, whose records of the first time are there: the dry
    // run plans what the run does (each written again, one flagged).
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    for kind in ["customer", "contact"] {
        let (p, r) = (plan.counts(kind), report.counts(kind));
        assert_eq!((p.created, p.updated, p.unchanged), (r.created, r.updated, r.unchanged), "{plan:?}\n{report:?}");
    }
    let r = report.counts("customer");
    assert_eq!((r.created, r.updated, r.deleted), (0, 9, 1), "{report:?}");
    let (account, fields) = bed.sf("Account", gone);
    assert_eq!(fields["NetSuite_Deleted__c"], true, "the Account is flagged");
    let conn = bed.tenant.database.connect().unwrap();
    let trail = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let row = trail.iter().find(|r| r.netsuite_id == gone.to_string() && r.action == "flag-deleted").expect("audited");
    assert_eq!(row.salesforce_id.as_deref(), Some(account.as_str()));
    assert_eq!(bed.sf("Vendor__c", gone).0, copy, "the other object's copy is left as it was");
    assert_ne!(bed.sf("Vendor__c", gone).1.get("NetSuite_Deleted__c"), Some(&Value::Bool(true)));
}

/// A parent link naming an object its lookup does not point to (here
/// `relationship = "Account"` with `sobject = "Vendor__c"`) is refused by
/// the describe check when the first record would be deferred, as it is
/// before a write: before, every contact waited for a vendor that would
/// never come, and the runs succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_an_object_its_lookup_does_not_point_to_is_refused_before_anything_waits() {
    let bed = bed(4).start().await;
    succeeded(&bed.sync_all().await);
    let at = bed.clock.now_secs() - 60;
    bed.netsuite.seed_contacts(6, &bed.customer_ids, at, 2).unwrap();
    let crossed = netsuite_salesforce::mapping::DEFAULT_MAPPING.replacen(
        "relationship = \"Account\"\nsobject = \"Account\"",
        "relationship = \"Account\"\nsobject = \"Vendor__c\"",
        1,
    );
    assert_ne!(crossed, netsuite_salesforce::mapping::DEFAULT_MAPPING);
    bed.tenant.set_override("mapping_toml", &crossed);

    let report = bed.sync_all().await;
    assert_eq!(report.status, "failed", "{report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("Contact has no lookup with relationship name Account to Vendor__c"), "{error}");
    assert_eq!(report.counts("contact").deferred, 0, "{report:?}");
    assert_eq!(bed.salesforce.count("Contact"), 0);
}

/// Failed writes of a kind the mapping dropped since: a replay that covers
/// them replays the kinds still mapped and fails naming what it left and
/// the section to put back (it said "nothing to replay" while `status`
/// counted them); one of them named alone is refused; once the section is
/// back, they are replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_leaves_the_writes_of_a_kind_the_mapping_dropped_and_says_so() {
    use host_harness::host::{RecordKind, RecordRef, ReplayScope};
    let bed = bed(20).start().await;
    let (a, _, first) = two_refused_customers(&bed).await;
    let vendors_only = &netsuite_salesforce::mapping::DEFAULT_MAPPING
        [netsuite_salesforce::mapping::DEFAULT_MAPPING.find("[vendor]").unwrap()..];
    bed.tenant.set_override("mapping_toml", vendors_only);

    let one = ReplayScope::One(RecordRef { kind: RecordKind::Customer, id: a.to_string() });
    for scope in [ReplayScope::AllFailed, ReplayScope::Run(first.run_id.clone()), one] {
        let refused = bed.bed.tenant.replay(support::runtime(), scope.clone()).await.unwrap();
        assert_eq!(refused.status, "failed", "{scope:?}: {refused:?}");
        let error = refused.error.clone().unwrap_or_default();
        let expected = match scope {
            ReplayScope::One(_) => format!("the mapping has no [customer] section, so customer {a} cannot be replayed"),
            _ => "not replayed, they stay queued: 2 failed customer writes (the mapping has no [customer] section)"
                .to_string(),
        };
        assert!(error.contains(&expected), "{scope:?}: {error}");
    }
    assert!(bed.salesforce.find("Account", &a.to_string()).is_none());

    bed.tenant.set_override("mapping_toml", netsuite_salesforce::mapping::DEFAULT_MAPPING);
    let replayed = bed.bed.tenant.replay(support::runtime(), ReplayScope::AllFailed).await.unwrap();
    succeeded(&replayed);
    assert_eq!(replayed.counts("customer").created, 2, "{replayed:?}");
}

/// `sync --full --compare-live` stopped while it reads customers: the runs
/// after it go on with every kind of it as it began, so a Contact edited in
/// Salesforce is repaired too, though the stopped run never reached
/// contacts (before, only the kind it stopped in went on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_stopped_in_its_first_kind_goes_on_with_the_kinds_it_had_not_reached() {
    use host_harness::host::RecordKind;
    let bed = support::one_request_at_a_time(400).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(40, &bed.customer_ids, at, 3).unwrap();
    succeeded(&bed.sync_all().await);
    let contact = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[7].0;
    let (sf_id, was) = bed.sf("Contact", contact);
    let mut drift = serde_json::Map::new();
    drift.insert("Email".into(), Value::String("drifted@example.com".into()));
    bed.salesforce.edit_by_hand("Contact", &sf_id, drift);

    let at = bed.netsuite.queries() + 4;
    bed.netsuite.after_queries(at, |ns| ns.fail_next(&[simulators::netsuite::ScriptedFailure::TooManyRequests; 4]));
    let kinds = [RecordKind::Customer, RecordKind::Contact];
    let stopped = bed.bed.tenant.sync_compared_live(support::runtime(), SyncMode::Full, &kinds).await.unwrap();
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    assert_eq!(stopped.objects.get("contact").map_or(0, |c| c.read), 0, "stopped before contacts: {stopped:?}");

    let next = bed.sync_all().await;
    succeeded(&next);
    assert_eq!(next.counts("contact").read, 40, "every contact compared: {next:?}");
    assert_eq!(next.counts("contact").updated, 1, "{next:?}");
    assert_eq!(bed.sf("Contact", contact).1["Email"], was["Email"]);
    assert_eq!(bed.sync_all().await.counts("contact").read, 0, "then incremental again");
}

/// A replay of one record of a kind still mapped is not failed by the
/// writes of a kind the mapping dropped (they are outside its scope); a
/// replay of them all names those it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_one_record_is_not_failed_by_writes_of_a_dropped_kind() {
    use host_harness::host::{RecordKind, RecordRef, ReplayScope};
    let bed = bed(10).start().await;
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(4, &bed.customer_ids[5..7], at, 3).unwrap();
    succeeded(&bed.sync_all().await);
    bed.salesforce.set_validation_rule(embargo());
    let a = bed.customer_ids[1];
    bed.netsuite.rename_customer_any(a, "Embargoed A").unwrap();
    assert_eq!(bed.sync_all().await.counts("customer").failed, 1);
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Contact".into(),
        field: "LastName".into(),
        contains: "Embargoed".into(),
        message: "Contacts under embargo need approval".into(),
    }));
    let contact = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0].0;
    bed.clock.advance(std::time::Duration::from_secs(5));
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE contact SET lastname = 'Embargoed', lastmodifieddate = {now} WHERE id = {contact}");
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    assert_eq!(bed.sync_all().await.counts("contact").failed, 1);
    bed.salesforce.set_validation_rule(None);
    let mapping = netsuite_salesforce::mapping::DEFAULT_MAPPING;
    let (from, to) = (mapping.find("[contact]").unwrap(), mapping.find("[vendor]").unwrap());
    let without_contacts = format!("{}{}", &mapping[..from], &mapping[to..]);
    bed.tenant.set_override("mapping_toml", &without_contacts);

    let one = ReplayScope::One(RecordRef { kind: RecordKind::Customer, id: a.to_string() });
    let replayed = bed.bed.tenant.replay(support::runtime(), one).await.unwrap();
    succeeded(&replayed);
    assert_eq!(replayed.counts("customer").created + replayed.counts("customer").updated, 1, "{replayed:?}");
    let all = bed.bed.tenant.replay(support::runtime(), ReplayScope::AllFailed).await.unwrap();
    assert_eq!(all.status, "failed", "{all:?}");
    let error = all.error.unwrap_or_default();
    assert!(error.contains("1 failed contact writes (the mapping has no [contact] section)"), "{error}");
}
