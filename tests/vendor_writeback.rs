//! Vendors both ways, end to end with the real component: Salesforce edits
//! and new Vendor__c records reach NetSuite through the record API, NetSuite
//! edits keep flowing the other way, conflicts follow `vendor_conflict`,
//! and neither side's copy of the connector's own writes comes back.

mod support;

use host_harness::audit::{AuditRow, for_run};
use host_harness::host::SyncMode;
use serde_json::{Map, Value, json};
use simulators::netsuite::VendorRejection;
use std::time::Duration;
use support::{Bed, bed, succeeded};

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

/// A bed with `n` vendors synced to Salesforce and write-back on.
async fn synced(n: u64, policy: &str) -> (Bed, Vec<i64>) {
    let bed = bed(0).setting("vendor_writeback", "true").setting("vendor_conflict", policy).start().await;
    let ids = bed.netsuite.seed_vendors(n, 7).unwrap();
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.salesforce.count("Vendor__c"), n);
    (bed, ids)
}

fn rows(bed: &Bed, run_id: &str) -> Vec<AuditRow> {
    let conn = bed.tenant.database.connect().unwrap();
    for_run(&conn, "demo", run_id).unwrap()
}

/// Syncs, expecting exactly one write to NetSuite, refused; its error.
async fn one_refused_write(bed: &Bed) -> String {
    let report = bed.sync_all().await;
    succeeded(&report);
    let writes = actions(&rows(bed, &report.run_id), "netsuite-write");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].outcome, "failed");
    writes[0].error.clone().unwrap_or_default()
}

fn actions(rows: &[AuditRow], action: &str) -> Vec<AuditRow> {
    rows.iter().filter(|r| r.action == action).cloned().collect()
}

/// A NetSuite user's edit of one vendor column, a second later.
fn netsuite_edit(bed: &Bed, id: i64, column: &str, value: &str) {
    bed.clock.advance(Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let sql = format!(
        "UPDATE vendor SET {column} = '{}', lastmodifieddate = {now} WHERE id = {id}",
        value.replace('\'', "''")
    );
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
}

/// A Salesforce user's edit of one Vendor__c, a second later.
fn salesforce_edit(bed: &Bed, netsuite_id: i64, edit: Value) -> String {
    bed.clock.advance(Duration::from_secs(1));
    let (sf_id, _) = bed.sf("Vendor__c", netsuite_id);
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, fields(edit));
    sf_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_reaches_netsuite_once_and_never_echoes() {
    let (bed, ids) = synced(5, "netsuite").await;
    let id = ids[2];
    let lines = |bed: &Bed| -> Vec<Value> {
        let vendor = bed.netsuite.vendor(id).unwrap().expect("the vendor");
        vendor["addressBook"]["items"].as_array().cloned().unwrap_or_default()
    };
    let billing = |lines: &[Value]| lines.iter().find(|l| l["defaultBilling"] == json!(true)).cloned();
    let before = lines(&bed);
    assert!(before.len() > 1, "the vendor has other addresses than its default billing one: {before:?}");
    salesforce_edit(&bed, id, json!({"Phone__c": "+15550100", "City__c": "Dallas"}));
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550100"));
    // The default billing line changed in place; the vendor's other
    // addresses and that line's other flags are kept.
    let after = lines(&bed);
    let (was, now) = (billing(&before).expect("a default billing line"), billing(&after).expect("still one"));
    assert_eq!(now["addressBookAddress"]["city"], json!("Dallas"));
    assert_eq!((&now["id"], &now["defaultShipping"]), (&was["id"], &was["defaultShipping"]));
    let others = |lines: &[Value]| -> Vec<Value> {
        lines.iter().filter(|l| l["defaultBilling"] != json!(true)).cloned().collect()
    };
    assert_eq!(others(&after), others(&before));
    let writes = actions(&rows(&bed, &report.run_id), "netsuite-write");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(report.counts("vendor").written_back, 1, "{:?}", report.counts("vendor"));
    assert_eq!(writes[0].netsuite_id, id.to_string());
    assert_eq!(writes[0].direction, "salesforce-to-netsuite");
    assert!(writes[0].transformations.contains("+15550100"), "{}", writes[0].transformations);
    // The forward pass read the vendor NetSuite just changed and found
    // Salesforce already holding it.
    let (_, record) = bed.sf("Vendor__c", id);
    assert_eq!(record["Phone__c"], json!("+15550100"));

    // Idle cycles: the connector's writes on either side are not changes.
    let (sf_writes, ns_writes) = (bed.salesforce.writes(), bed.netsuite.record_writes());
    for _ in 0..1000 {
        bed.clock.advance(Duration::from_secs(7));
        succeeded(&bed.sync_all().await);
    }
    assert_eq!(bed.salesforce.writes(), sf_writes, "no Salesforce write when nothing changed");
    assert_eq!(bed.netsuite.record_writes(), ns_writes, "no NetSuite write when nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_different_fields_on_both_sides_merge() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[0];
    netsuite_edit(&bed, id, "email", "ap@merged.example.com");
    salesforce_edit(&bed, id, json!({"Phone__c": "+15550111"}));

    // A dry run shows both directions and writes nothing on either side.
    let (sf_writes, ns_writes) = (bed.salesforce.writes(), bed.netsuite.record_writes());
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let to_netsuite = plan.plan.iter().find(|p| p.action == "netsuite-update").expect("a NetSuite update planned");
    assert_eq!(to_netsuite.netsuite_id, id.to_string());
    assert_eq!(to_netsuite.changes[0]["field"], "Phone__c");
    assert_eq!(to_netsuite.changes[0]["new"], "+15550111");
    let to_salesforce = plan.plan.iter().find(|p| p.action == "update").expect("a Salesforce update planned");
    assert_eq!(to_salesforce.changes[0]["new"], "ap@merged.example.com");
    assert_eq!((bed.salesforce.writes(), bed.netsuite.record_writes()), (sf_writes, ns_writes));
    assert_ne!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550111"));

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550111"));
    assert_eq!(bed.netsuite.vendor_field(id, "email").unwrap().as_deref(), Some("ap@merged.example.com"));
    let (_, record) = bed.sf("Vendor__c", id);
    assert_eq!(
        (record["Phone__c"].clone(), record["Email__c"].clone()),
        (json!("+15550111"), json!("ap@merged.example.com"))
    );
    assert!(actions(&rows(&bed, &report.run_id), "conflict").is_empty(), "different fields do not conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_term_past_the_first_page_of_terms_is_found() {
    // Three rows a page: the account's six terms take two pages.
    let bed = bed(0)
        .setting("vendor_writeback", "true")
        .setting("vendor_conflict", "netsuite")
        .setting("netsuite_page_size", "3")
        .start()
        .await;
    let ids = bed.netsuite.seed_vendors(2, 7).unwrap();
    succeeded(&bed.sync_all().await);
    salesforce_edit(&bed, ids[1], json!({"Payment_Terms__c": "2% 10 Net 30"}));
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.netsuite.vendor_field(ids[1], "terms").unwrap().as_deref(), Some("6"));
    // Typed in another case; and a country by its name: NetSuite takes its code.
    salesforce_edit(&bed, ids[0], json!({"Payment_Terms__c": "2% 10 NET 30", "Country__c": " Germany "}));
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("vendor").failed, 0, "{report:?}");
    assert_eq!(bed.netsuite.vendor_field(ids[0], "terms").unwrap().as_deref(), Some("6"));
    let vendor = bed.netsuite.vendor(ids[0]).unwrap().expect("the vendor");
    let lines = vendor["addressBook"]["items"].as_array().cloned().unwrap_or_default();
    let billing = lines.iter().find(|l| l["defaultBilling"] == json!(true)).expect("a default billing line");
    assert_eq!(billing["addressBookAddress"]["country"]["id"], json!("DE"), "{billing}");
    // Salesforce takes the code NetSuite got in the same merge, and nothing follows.
    assert_eq!(bed.sf("Vendor__c", ids[0]).1["Country__c"], json!("DE"));
    let writes = bed.salesforce.writes();
    for _ in 0..3 {
        bed.clock.advance(Duration::from_secs(61));
        succeeded(&bed.sync_all().await);
    }
    assert_eq!(bed.salesforce.writes(), writes, "nothing comes back");
    assert_eq!(bed.sf("Vendor__c", ids[0]).1["Payment_Terms__c"], json!("2% 10 Net 30"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_field_on_both_sides_follows_each_policy() {
    for (policy, winner) in [("netsuite", "netsuite"), ("salesforce", "salesforce"), ("newest", "salesforce")] {
        let (bed, ids) = synced(2, policy).await;
        let id = ids[1];
        netsuite_edit(&bed, id, "phone", "+15550222");
        // Salesforce's edit is a second later: the newest.
        salesforce_edit(&bed, id, json!({"Phone__c": "+15550333"}));
        let report = bed.sync_all().await;
        succeeded(&report);
        let expected = if winner == "netsuite" { "+15550222" } else { "+15550333" };
        assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some(expected), "{policy}");
        assert_eq!(bed.sf("Vendor__c", id).1["Phone__c"], json!(expected), "{policy}");
        let conflicts = actions(&rows(&bed, &report.run_id), "conflict");
        assert_eq!(conflicts.len(), 1, "{policy}: {conflicts:?}");
        assert_eq!(conflicts[0].outcome, winner, "{policy}");
        let detail: Value = serde_json::from_str(&conflicts[0].transformations).unwrap();
        assert_eq!(detail[0]["netsuite"], json!("+15550222"), "{policy}");
        assert_eq!(detail[0]["salesforce"], json!("+15550333"), "{policy}");
    }
}

/// The dry run predicts a write-back run's counts and writes: a merge
/// planned once (NetSuite's side to Salesforce, Salesforce's to NetSuite),
/// never NetSuite's unmerged record as well; a Vendor__c created or
/// deleted in Salesforce counted as the real run counts it. The real run
/// counts a merge that updated Salesforce as `updated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_predicts_merges_creations_and_deletions_of_a_write_back_run() {
    let (bed, ids) = synced(4, "salesforce").await;
    let (merged, deleted) = (ids[0], ids[1]);
    netsuite_edit(&bed, merged, "phone", "+15550222");
    netsuite_edit(&bed, merged, "companyname", "NS Renamed");
    salesforce_edit(&bed, merged, json!({"Phone__c": "+15550333"}));
    bed.salesforce.delete_by_hand(&bed.sf("Vendor__c", deleted).0);
    bed.salesforce.create_by_hand("Vendor__c", fields(json!({"Name": "SF Born Vendor", "Phone__c": "+15550777"})));
    bed.clock.advance(Duration::from_secs(1));

    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let planned: Vec<(String, String)> =
        plan.plan.iter().filter(|p| p.kind == "vendor").map(|p| (p.action.clone(), p.netsuite_id.clone())).collect();
    let updates = planned.iter().filter(|(a, id)| a == "update" && *id == merged.to_string()).count();
    assert_eq!(updates, 1, "{:?}", plan.plan);
    let real = bed.sync_all().await;
    succeeded(&real);
    let (p, r) = (plan.counts("vendor"), real.counts("vendor"));
    let all = rows(&bed, &real.run_id);
    assert_eq!((r.read, r.created, r.updated, r.unchanged, r.written_back), (3, 0, 1, 2, 3), "{r:?}: {all:?}");
    assert_eq!(
        (p.read, p.created, p.updated, p.unchanged, p.written_back, p.failed),
        (r.read, r.created, r.updated, r.unchanged, r.written_back, r.failed),
        "{p:?}"
    );
    assert_eq!(bed.sf("Vendor__c", merged).1["Name"], "NS Renamed");
    assert_eq!(bed.netsuite.vendor_field(merged, "phone").unwrap().as_deref(), Some("+15550333"));
}

/// SuiteQL gives NetSuite's times in the integration user's time zone,
/// Salesforce gives UTC: `newest` compares the two in UTC, whichever side
/// of UTC the user is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_compares_edit_times_in_utc_whatever_the_netsuite_users_time_zone() {
    // Eight hours west, NetSuite's edit an hour later; eight hours east, Salesforce's.
    for (zone, netsuite_later) in [(-8 * 3600, true), (8 * 3600, false)] {
        let bed = bed(0).setting("vendor_writeback", "true").setting("vendor_conflict", "newest").start().await;
        bed.netsuite.set_user_time_zone(zone);
        let id = bed.netsuite.seed_vendors(2, 7).unwrap()[1];
        succeeded(&bed.sync_all().await);
        let (first, second) = if netsuite_later { ("salesforce", "netsuite") } else { ("netsuite", "salesforce") };
        let mut netsuite_edited_at = 0;
        for side in [first, second] {
            match side {
                "netsuite" => {
                    netsuite_edit(&bed, id, "phone", "+15550222");
                    netsuite_edited_at = bed.clock.now_secs();
                }
                _ => drop(salesforce_edit(&bed, id, json!({"Phone__c": "+15550333"}))),
            }
            bed.clock.advance(Duration::from_secs(3600));
        }
        let report = bed.sync_all().await;
        succeeded(&report);
        let expected = if netsuite_later { "+15550222" } else { "+15550333" };
        assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some(expected), "zone {zone}");
        assert_eq!(bed.sf("Vendor__c", id).1["Phone__c"], json!(expected), "zone {zone}");
        let conflicts = actions(&rows(&bed, &report.run_id), "conflict");
        assert_eq!(conflicts.len(), 1, "zone {zone}: {conflicts:?}");
        assert_eq!(conflicts[0].outcome, second, "zone {zone}");
        // The audit shows the times compared, NetSuite's in UTC.
        let detail: Value = serde_json::from_str(&conflicts[0].transformations).unwrap();
        let utc = time::OffsetDateTime::from_unix_timestamp(netsuite_edited_at).unwrap();
        let utc = format!("{} {:02}:{:02}:{:02}", utc.date(), utc.hour(), utc.minute(), utc.second());
        assert_eq!(detail[0]["modified"]["netsuite"], json!(utc), "zone {zone}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_created_in_salesforce_appears_in_netsuite_once_even_when_the_link_fails() {
    let (bed, _) = synced(2, "netsuite").await;
    // The upsert's Location names the vendor by external id, not by the
    // internal id the connector links: it finds that by the external id.
    bed.netsuite.set_upsert_location_by_external_id(true);
    let before = bed.netsuite.vendor_count().unwrap();
    bed.clock.advance(Duration::from_secs(1));
    let sf_id = bed.salesforce.create_by_hand(
        "Vendor__c",
        fields(json!({"Name": "Harbor Freight Lines", "Phone__c": "+15550444", "Payment_Terms__c": "Net 30",
                      "Street__c": "1 Dock Road", "City__c": "Tacoma", "Postal_Code__c": "98421"})),
    );
    // The write-back of the new NetSuite id fails, as if the run died
    // between the NetSuite create and the Salesforce update.
    bed.salesforce.alter_field("Vendor__c", "NetSuite_Id__c", |f| f.updateable = false);
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_count().unwrap(), before + 1);
    let links = actions(&rows(&bed, &report.run_id), "link");
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].outcome, "failed");
    let counts = report.counts("vendor");
    // Failed: the link. This run's forward pass leaves the new NetSuite
    // vendor be, so no second Vendor__c is made.
    assert_eq!((counts.written_back, counts.failed), (1, 1), "{counts:?}");
    assert_eq!(bed.salesforce.count("Vendor__c"), 3);

    bed.salesforce.alter_field("Vendor__c", "NetSuite_Id__c", |f| f.updateable = true);
    bed.clock.advance(Duration::from_secs(1));
    // The record, still unlinked, is read again: the link is tried again.
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("vendor").failed, 0, "{:?}", rows(&bed, &report.run_id));
    assert_eq!(bed.netsuite.vendor_count().unwrap(), before + 1, "the repeat found the vendor it made");
    let ns_id = bed.netsuite.vendor_id_by_external_id(&sf_id).unwrap().expect("created by external id");
    assert_eq!(bed.netsuite.vendor_field(ns_id, "companyname").unwrap().as_deref(), Some("Harbor Freight Lines"));
    assert_eq!(bed.netsuite.vendor_field(ns_id, "phone").unwrap().as_deref(), Some("+15550444"));
    let (linked_id, record) = bed.sf("Vendor__c", ns_id);
    assert_eq!(linked_id, sf_id, "the same Salesforce record, now linked");
    assert_eq!(record["Payment_Terms__c"], json!("Net 30"));
    assert_eq!(bed.salesforce.count("Vendor__c"), 3, "no second Vendor__c from the forward pass");
    // The repeated create updated the billing line it made the first time
    // (NetSuite appends an unkeyed line).
    let lines = bed
        .netsuite
        .id_pairs(&format!("SELECT entity, COUNT(*) FROM vendoraddressbook WHERE entity = {ns_id} GROUP BY entity"))
        .unwrap();
    assert_eq!(lines, vec![(ns_id, 1)], "one address line");
    assert_eq!(record["City__c"], json!("Tacoma"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netsuite_validation_error_names_the_vendor_and_the_field() {
    let (bed, ids) = synced(2, "netsuite").await;
    let id = ids[0];
    bed.netsuite.reject_vendor_writes(VendorRejection {
        matches: simulators::netsuite::VendorMatch::Id(id),
        message: "Please enter a value for Phone.".into(),
    });
    salesforce_edit(&bed, id, json!({"Phone__c": "+15550555"}));
    let error = one_refused_write(&bed).await;
    assert!(
        error.contains(&format!("NetSuite vendor {id}")) && error.contains("Please enter a value for Phone"),
        "{error}"
    );
    assert_ne!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550555"));
    // Runs within the poll's overlap window read the record again as it
    // was: it waits for replay, neither sent nor failed again.
    let writes_before = bed.netsuite.record_writes();
    for _ in 0..2 {
        bed.clock.advance(Duration::from_secs(5));
        let again = bed.sync_all().await;
        succeeded(&again);
        assert_eq!(again.counts("vendor").failed, 0, "{:?}", rows(&bed, &again.run_id));
    }
    assert_eq!(bed.netsuite.record_writes(), writes_before);
    assert_eq!(waiting_writebacks(&bed), 1);

    // Fixed in NetSuite, then replayed: the write goes through once.
    bed.netsuite.clear_vendor_rejections();
    let writes_before = bed.netsuite.record_writes();
    let report = bed.replay_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550555"));
    assert_eq!(bed.netsuite.record_writes(), writes_before + 1);
    let replayed = actions(&rows(&bed, &report.run_id), "netsuite-write");
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0].outcome, "updated");
    // Nothing left to replay.
    let report = bed.replay_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.record_writes(), writes_before + 1);
}

/// A role without Edit on vendors: each write-back fails alone with a
/// message saying which permission to grant (a role may reach only some
/// vendors, by subsidiary), kept for replay, and goes through once granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_vendor_edit_names_the_permission_and_replays_once_granted() {
    let (bed, ids) = synced(2, "netsuite").await;
    let id = ids[0];
    bed.netsuite.set_vendor_permission(simulators::netsuite::Permission::View);
    salesforce_edit(&bed, id, json!({"Phone__c": "+15550666"}));
    let error = one_refused_write(&bed).await;
    assert!(
        error.contains(&format!("NetSuite vendor {id}"))
            && error.contains("INSUFFICIENT_PERMISSION")
            && error.contains("a write-back needs Edit"),
        "{error}"
    );
    assert_ne!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550666"));

    bed.netsuite.set_vendor_permission(simulators::netsuite::Permission::Full);
    let report = bed.replay_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550666"));
}

/// A payment term NetSuite has no term for is that record's problem: it
/// fails naming the record and the value, and everything else goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_term_netsuite_lacks_fails_only_that_vendor() {
    let (bed, ids) = synced(3, "netsuite").await;
    let edited = salesforce_edit(&bed, ids[0], json!({"Payment_Terms__c": "Bogus Terms"}));
    salesforce_edit(&bed, ids[1], json!({"Phone__c": "+15550666"}));
    bed.clock.advance(Duration::from_secs(1));
    let born = bed
        .salesforce
        .create_by_hand("Vendor__c", fields(json!({"Name": "SF Born Vendor", "Payment_Terms__c": "Net 45"})));
    let fine =
        bed.salesforce.create_by_hand("Vendor__c", fields(json!({"Name": "Fine Vendor", "Phone__c": "+15550777"})));
    let vendors = bed.netsuite.vendor_count().unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("vendor").failed, 2, "{:?}", rows(&bed, &report.run_id));
    let all = rows(&bed, &report.run_id);
    for sf in [&edited, &born] {
        let row = all.iter().find(|r| r.salesforce_id.as_deref() == Some(sf) && r.outcome == "failed").unwrap();
        let error = row.error.clone().unwrap_or_default();
        assert!(error.contains(&format!("Vendor__c {sf}")) && error.contains("no NetSuite payment term"), "{error}");
    }
    assert_eq!(bed.netsuite.vendor_field(ids[1], "phone").unwrap().as_deref(), Some("+15550666"));
    assert_eq!(bed.netsuite.vendor_count().unwrap(), vendors + 1, "the fine new vendor is created");
    assert!(bed.netsuite.vendor_id_by_external_id(&fine).unwrap().is_some());

    // Given a term NetSuite has, both go through.
    bed.clock.advance(Duration::from_secs(1));
    bed.salesforce.edit_by_hand("Vendor__c", &edited, fields(json!({"Payment_Terms__c": "Net 30"})));
    bed.salesforce.edit_by_hand("Vendor__c", &born, fields(json!({"Payment_Terms__c": "Net 30"})));
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("vendor").failed, 0, "{:?}", rows(&bed, &report.run_id));
    assert_eq!(bed.netsuite.vendor_count().unwrap(), vendors + 2);
}

/// A vendor Salesforce created that NetSuite refused has no NetSuite id:
/// `replay --record vendor:<Salesforce id>` names it, in either id form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_vendor_created_in_salesforce_is_replayed_by_its_salesforce_id() {
    let (bed, _) = synced(2, "netsuite").await;
    bed.clock.advance(Duration::from_secs(1));
    let born =
        bed.salesforce.create_by_hand("Vendor__c", fields(json!({"Name": "Late Vendor", "Payment_Terms__c": "Bogus"})));
    let vendors = bed.netsuite.vendor_count().unwrap();
    succeeded(&bed.sync_all().await);
    assert_eq!(waiting_writebacks(&bed), 1);
    bed.salesforce.edit_by_hand("Vendor__c", &born, fields(json!({"Payment_Terms__c": "Net 30"})));
    // Another record's id replays nothing; this one's, as the UI shows it
    // (15 characters), replays it.
    for (id, expected) in [("a018d0000000999AAA", 0), (&born[..15], 1)] {
        let record = host_harness::scheduler::parse_record_ref(&format!("vendor:{id}")).unwrap();
        let scope = host_harness::host::ReplayScope::One(record);
        let replay = bed.bed.tenant.replay(support::runtime(), scope).await.unwrap();
        succeeded(&replay);
        assert_eq!(bed.netsuite.vendor_count().unwrap(), vendors + expected, "{replay:?}");
    }
    assert_eq!(waiting_writebacks(&bed), 0);
    assert!(bed.netsuite.vendor_id_by_external_id(&born).unwrap().is_some());
}

/// Failed write-backs waiting for replay.
fn waiting_writebacks(bed: &Bed) -> i64 {
    let conn = bed.tenant.database.connect().unwrap();
    conn.query_row("SELECT count(*) FROM kv WHERE tenant = 'demo' AND key LIKE 'failed-writeback/%'", [], |r| r.get(0))
        .unwrap()
}

/// A Salesforce edit NetSuite refuses (one field it cannot take) waits in
/// Salesforce for replay: a later NetSuite change to the same vendor
/// reaches Salesforce without overwriting it, whether the next poll reads
/// the Salesforce record again (its overlap window) or not (its cursor
/// moved on), and the dry run plans no overwrite either. Once the edit is
/// corrected, it reaches NetSuite and nothing waits any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_netsuite_refused_is_not_overwritten_by_a_later_netsuite_change() {
    for polled_again in [true, false] {
        let (bed, ids) = synced(3, "netsuite").await;
        let vendor = ids[0];
        let edit = json!({"Email__c": "buyer@example.com", "Payment_Terms__c": "Bogus Terms"});
        let sf_id = salesforce_edit(&bed, vendor, edit);
        let report = bed.sync_all().await;
        succeeded(&report);
        assert_eq!(report.counts("vendor").failed, 1, "{:?}", rows(&bed, &report.run_id));
        assert_eq!(waiting_writebacks(&bed), 1);
        if !polled_again {
            // Past the overlap window, another edit moves the Salesforce
            // cursor on: the refused record is not polled again.
            bed.clock.advance(Duration::from_secs(2 * 3600));
            salesforce_edit(&bed, ids[1], json!({"City__c": "Dallas"}));
            succeeded(&bed.sync_all().await);
        }
        netsuite_edit(&bed, vendor, "phone", "+1 808-555-1111");

        let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
        succeeded(&plan);
        for p in plan.plan.iter().filter(|p| p.kind == "vendor" && p.netsuite_id == vendor.to_string()) {
            let fields: Vec<&str> = p.changes.as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
            if p.action == "update" {
                assert!(!fields.contains(&"Email__c") && !fields.contains(&"Payment_Terms__c"), "{p:?}");
            }
        }
        let report = bed.sync_all().await;
        succeeded(&report);
        let (_, record) = bed.sf("Vendor__c", vendor);
        let case = format!("polled again: {polled_again}: {:?}", rows(&bed, &report.run_id));
        assert_eq!(record["Email__c"], "buyer@example.com", "{case}");
        assert_eq!(record["Payment_Terms__c"], "Bogus Terms", "{case}");
        assert_eq!(record["Phone__c"], "+18085551111", "{case}");
        assert_eq!(waiting_writebacks(&bed), 1, "{case}");

        // Corrected in Salesforce, the edit reaches NetSuite; nothing waits.
        bed.clock.advance(Duration::from_secs(1));
        bed.salesforce.edit_by_hand("Vendor__c", &sf_id, fields(json!({"Payment_Terms__c": "Net 30"})));
        let report = bed.sync_all().await;
        succeeded(&report);
        assert_eq!(report.counts("vendor").failed, 0, "{:?}", rows(&bed, &report.run_id));
        assert_eq!(bed.netsuite.vendor_field(vendor, "email").unwrap().as_deref(), Some("buyer@example.com"));
        assert_eq!(bed.netsuite.vendor_field(vendor, "phone").unwrap().as_deref(), Some("+1 808-555-1111"));
        assert_eq!(waiting_writebacks(&bed), 0);
        let (_, record) = bed.sf("Vendor__c", vendor);
        assert_eq!((&record["Email__c"], &record["Payment_Terms__c"]), (&json!("buyer@example.com"), &json!("Net 30")));
    }
}

/// A field the forward mapping writes and write-back does not take
/// (`NetSuite_Inactive__c`) reaches Salesforce when NetSuite changes it,
/// while a refused Salesforce edit of the same vendor waits (polled again
/// or not) and when an edit merges in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netsuite_only_field_reaches_salesforce_while_a_refused_edit_waits_or_an_edit_merges() {
    for case in ["refused, polled again", "refused, not polled", "merged"] {
        let (bed, ids) = synced(3, "netsuite").await;
        let vendor = ids[0];
        let edit = match case {
            "merged" => json!({"City__c": "Dallas"}),
            _ => json!({"Payment_Terms__c": "Bogus Terms"}),
        };
        let sf_id = salesforce_edit(&bed, vendor, edit);
        if case != "merged" {
            succeeded(&bed.sync_all().await);
        }
        if case == "refused, not polled" {
            bed.clock.advance(Duration::from_secs(2 * 3600));
            salesforce_edit(&bed, ids[1], json!({"City__c": "Austin"}));
            succeeded(&bed.sync_all().await);
        }
        netsuite_edit(&bed, vendor, "isinactive", "T");
        let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
        succeeded(&plan);
        let report = bed.sync_all().await;
        succeeded(&report);
        let (_, record) = bed.sf("Vendor__c", vendor);
        assert_eq!(record["NetSuite_Inactive__c"], json!(true), "{case}: {record:?}");
        let (p, r) = (plan.counts("vendor"), report.counts("vendor"));
        assert_eq!((p.read, p.updated, p.unchanged), (r.read, r.updated, r.unchanged), "{case}: {:?}", plan.plan);
        let mine = |action: &str| {
            plan.plan.iter().filter(|p| p.action == action && p.netsuite_id == vendor.to_string()).count()
        };
        assert!(mine("update") <= 1 && mine("netsuite-update") <= 1, "{case}: {:?}", plan.plan);
        // Idle runs after it keep it so.
        bed.clock.advance(Duration::from_secs(60));
        succeeded(&bed.sync_all().await);
        assert_eq!(bed.sf("Vendor__c", vendor).1["NetSuite_Inactive__c"], json!(true), "{case}");
        let _ = sf_id;
    }
}

/// A refused edit waits only for the pairing it was made in: once the
/// Salesforce record names another NetSuite id, the NetSuite vendor's own
/// changes are written to the record keyed by its id again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_does_not_hold_back_a_vendor_its_record_no_longer_names() {
    let (bed, ids) = synced(2, "netsuite").await;
    let vendor = ids[0];
    let sf_id = salesforce_edit(&bed, vendor, json!({"Payment_Terms__c": "Bogus Terms"}));
    succeeded(&bed.sync_all().await);
    assert_eq!(waiting_writebacks(&bed), 1);
    bed.clock.advance(Duration::from_secs(1));
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, fields(json!({"NetSuite_Id__c": "V-1"})));
    netsuite_edit(&bed, vendor, "phone", "+1 808-555-1111");
    succeeded(&bed.sync_all().await);
    let (now_sf, record) = bed.sf("Vendor__c", vendor);
    assert_ne!(now_sf, sf_id);
    assert_eq!(record["Phone__c"], "+18085551111");
}

/// A refused Salesforce edit undone in Salesforce leaves nothing to send:
/// the next run settles it and nothing waits any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_undone_in_salesforce_waits_no_more() {
    let (bed, ids) = synced(2, "netsuite").await;
    let (_, before) = bed.sf("Vendor__c", ids[0]);
    let sf_id = salesforce_edit(&bed, ids[0], json!({"Payment_Terms__c": "Bogus Terms"}));
    succeeded(&bed.sync_all().await);
    assert_eq!(waiting_writebacks(&bed), 1);
    bed.clock.advance(Duration::from_secs(1));
    let undo = json!({"Payment_Terms__c": before.get("Payment_Terms__c").cloned().unwrap_or(Value::Null)});
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, fields(undo));
    let report = bed.sync_all().await;
    succeeded(&report);
    let all = rows(&bed, &report.run_id);
    assert_eq!(report.counts("vendor").failed, 0, "{all:?}");
    assert!(
        all.iter().any(|r| r.salesforce_id.as_deref() == Some(sf_id.as_str()) && r.outcome == "unchanged"),
        "{all:?}"
    );
    assert_eq!(waiting_writebacks(&bed), 0);
    let replay = bed.replay_all().await;
    succeeded(&replay);
    assert!(rows(&bed, &replay.run_id).is_empty(), "nothing left to replay");
}

/// NetSuite took a Salesforce edit but Salesforce refused NetSuite's side
/// of the merge (an email it does not accept): the base records what each
/// side holds, so a later Salesforce edit of the same field reaches NetSuite
/// as an edit, not as a conflict NetSuite wins, and the failure is one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_salesforce_refused_keeps_what_netsuite_took_as_agreed() {
    let (bed, ids) = synced(2, "netsuite").await;
    let vendor = ids[0];
    netsuite_edit(&bed, vendor, "email", "not-an-email");
    let sf_id = salesforce_edit(&bed, vendor, json!({"Phone__c": "+12125550101"}));
    let report = bed.sync_all().await;
    succeeded(&report);
    let all = rows(&bed, &report.run_id);
    assert_eq!(bed.netsuite.vendor_field(vendor, "phone").unwrap().as_deref(), Some("+12125550101"), "{all:?}");
    assert_eq!(report.counts("vendor").failed, 1, "one failure, not one per pass: {all:?}");
    assert_eq!(waiting_writebacks(&bed), 1);
    // Touched in Salesforce (the same value saved again): NetSuite's side
    // is still to send, so its failure is tried again and still waits.
    salesforce_edit(&bed, vendor, json!({"Phone__c": "+12125550101"}));
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("vendor").failed, 1, "{:?}", rows(&bed, &report.run_id));
    assert_eq!(waiting_writebacks(&bed), 1);

    bed.clock.advance(Duration::from_secs(1));
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, fields(json!({"Phone__c": "+12125550202"})));
    let report = bed.sync_all().await;
    succeeded(&report);
    let all = rows(&bed, &report.run_id);
    assert!(actions(&all, "conflict").is_empty(), "{all:?}");
    assert_eq!(bed.netsuite.vendor_field(vendor, "phone").unwrap().as_deref(), Some("+12125550202"), "{all:?}");

    netsuite_edit(&bed, vendor, "email", "buyer@example.com");
    let report = bed.sync_all().await;
    succeeded(&report);
    let (_, record) = bed.sf("Vendor__c", vendor);
    assert_eq!((&record["Phone__c"], &record["Email__c"]), (&json!("+12125550202"), &json!("buyer@example.com")));
    assert_eq!(bed.netsuite.vendor_field(vendor, "phone").unwrap().as_deref(), Some("+12125550202"));
}

/// A NetSuite id typed by hand that is not one (letters, a path, a quote)
/// fails only that Vendor__c, naming it and saying what to do: other
/// vendors' edits still reach NetSuite, and contacts still sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_with_a_netsuite_id_that_is_not_one_fails_alone() {
    let (bed, ids) = synced(3, "netsuite").await;
    bed.clock.advance(Duration::from_secs(1));
    let typed = ["V-1001", "212/../213", "1' OR x"]
        .map(|id| bed.salesforce.create_by_hand("Vendor__c", fields(json!({"Name": "Typo", "NetSuite_Id__c": id}))));
    salesforce_edit(&bed, ids[1], json!({"Phone__c": "+15550666"}));
    let at = bed.clock.now_secs();
    bed.netsuite.seed_contacts(4, &ids[..1], at, 9).unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("vendor").failed, 3, "{:?}", rows(&bed, &report.run_id));
    assert_eq!(report.counts("contact").created, 4);
    assert_eq!(bed.netsuite.vendor_field(ids[1], "phone").unwrap().as_deref(), Some("+15550666"));
    let all = rows(&bed, &report.run_id);
    for sf in &typed {
        let row = all.iter().find(|r| r.salesforce_id.as_deref() == Some(sf)).expect("the record's row");
        let error = row.error.clone().unwrap_or_default();
        assert!(error.contains(&format!("Vendor__c {sf}")) && error.contains("not a NetSuite internal id"), "{error}");
    }
    // Cleared, the vendor is created in NetSuite on the next run.
    bed.clock.advance(Duration::from_secs(1));
    let vendors = bed.netsuite.vendor_count().unwrap();
    bed.salesforce.edit_by_hand("Vendor__c", &typed[0], fields(json!({"NetSuite_Id__c": null})));
    let report = bed.sync_all().await;
    succeeded(&report);
    // The two still mistyped, read again unchanged, wait for replay.
    assert_eq!(report.counts("vendor").failed, 0, "{:?}", rows(&bed, &report.run_id));
    assert_eq!(waiting_writebacks(&bed), 2);
    assert_eq!(bed.netsuite.vendor_count().unwrap(), vendors + 1);
}

/// A vendor deleted on both sides between runs: nothing to inactivate in
/// NetSuite and nothing to flag in Salesforce; the run fails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_deleted_on_both_sides_fails_nothing() {
    let (bed, ids) = synced(3, "netsuite").await;
    bed.clock.advance(Duration::from_secs(60));
    bed.salesforce.delete_by_hand(&bed.sf("Vendor__c", ids[0]).0);
    bed.netsuite.delete_record("vendor", ids[0]).unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    let c = report.counts("vendor");
    assert_eq!((c.failed, c.deleted), (0, 1), "{:?}", rows(&bed, &report.run_id));
    let skipped = actions(&rows(&bed, &report.run_id), "skip-deleted-in-netsuite");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(waiting_writebacks(&bed), 0);
    bed.clock.advance(Duration::from_secs(60));
    let next = bed.sync_all().await;
    assert_eq!((next.counts("vendor").failed, next.counts("vendor").deleted), (0, 0));
}

/// A contact of a vendor deleted in Salesforce, changed in NetSuite: the
/// dry run plans it deferred, as the real run then defers it (the vendor is
/// out of Salesforce's reach while NetSuite keeps it inactive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_defers_the_contact_of_a_vendor_deleted_in_salesforce_as_the_run_does() {
    let (bed, ids) = synced(2, "netsuite").await;
    bed.netsuite.seed_contacts(1, &ids[..1], bed.clock.now_secs(), 3).unwrap();
    succeeded(&bed.sync_all().await);
    let contact = bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap()[0].0;
    bed.clock.advance(Duration::from_secs(60));
    bed.salesforce.delete_by_hand(&bed.sf("Vendor__c", ids[0]).0);
    let now = bed.clock.now_secs();
    bed.netsuite
        .execute(&format!("UPDATE contact SET title = 'Buyer', lastmodifieddate = {now} WHERE id = {contact}"))
        .unwrap();
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let planned: Vec<_> = plan.plan.iter().filter(|p| p.netsuite_id == contact.to_string()).collect();
    assert_eq!(planned.len(), 1, "{:?}", plan.plan);
    assert_eq!(planned[0].action, "defer", "{planned:?}");
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("contact").deferred, 1, "{report:?}");
    assert_eq!(plan.counts("contact").deferred, report.counts("contact").deferred);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_deleted_in_salesforce_is_inactivated_in_netsuite_and_stays_out_until_reactivated() {
    let (bed, ids) = synced(4, "netsuite").await;
    let id = ids[1];
    bed.clock.advance(Duration::from_secs(1));
    let (sf_id, _) = bed.sf("Vendor__c", id);
    bed.salesforce.delete_by_hand(&sf_id);

    // A dry run plans the inactivation and writes nothing.
    let ns_writes = bed.netsuite.record_writes();
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let planned = plan.plan.iter().find(|p| p.action == "netsuite-update").expect("the inactivation planned");
    assert_eq!(
        (planned.netsuite_id.as_str(), &planned.changes[0]["field"]),
        (id.to_string().as_str(), &json!("isInactive"))
    );
    assert_eq!(bed.netsuite.record_writes(), ns_writes);
    assert_eq!(bed.netsuite.vendor_field(id, "isinactive").unwrap().as_deref(), Some("F"));

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(id, "isinactive").unwrap().as_deref(), Some("T"));
    let all = rows(&bed, &report.run_id);
    let inactivated = actions(&all, "netsuite-inactivate");
    assert_eq!(inactivated.len(), 1, "{all:?}");
    assert_eq!(report.counts("vendor").written_back, 1);
    assert_eq!(
        (inactivated[0].netsuite_id.as_str(), inactivated[0].salesforce_id.as_deref()),
        (id.to_string().as_str(), Some(sf_id.as_str()))
    );
    assert_eq!(inactivated[0].direction, "salesforce-to-netsuite");
    assert!(
        all.iter()
            .filter(|r| r.action == "skip-deleted-in-salesforce")
            .all(|r| r.direction == "netsuite-to-salesforce")
    );
    // NetSuite's change (the vendor is inactive now) does not bring the
    // Vendor__c back, in this run or later ones.
    assert!(bed.salesforce.find("Vendor__c", &id.to_string()).is_none(), "the deleted Vendor__c stays deleted");
    assert_eq!(bed.salesforce.count("Vendor__c"), 3);
    let (sf_writes, ns_writes) = (bed.salesforce.writes(), bed.netsuite.record_writes());
    for _ in 0..20 {
        bed.clock.advance(Duration::from_secs(7));
        succeeded(&bed.sync_all().await);
    }
    assert_eq!((bed.salesforce.writes(), bed.netsuite.record_writes()), (sf_writes, ns_writes));
    assert_eq!(bed.salesforce.count("Vendor__c"), 3);

    // Reactivated in NetSuite: back in Salesforce, as a new record.
    netsuite_edit(&bed, id, "isinactive", "F");
    succeeded(&bed.sync_all().await);
    let (back, record) = bed.sf("Vendor__c", id);
    assert_ne!(back, sf_id);
    assert_eq!(record["NetSuite_Inactive__c"], json!(false));
    assert_eq!(bed.salesforce.count("Vendor__c"), 4);
    assert_eq!(bed.netsuite.vendor_field(id, "isinactive").unwrap().as_deref(), Some("F"));
}

/// A vendor deleted in NetSuite is flagged or deleted in Salesforce; that
/// change of the connector's own is not taken for a Salesforce edit or
/// deletion to write back (NetSuite has no such vendor any more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_deleted_in_netsuite_is_not_written_back_to_netsuite() {
    for action in ["flag", "delete"] {
        let bed = bed(0).setting("vendor_writeback", "true").setting("delete_action", action).start().await;
        let ids = bed.netsuite.seed_vendors(3, 7).unwrap();
        succeeded(&bed.sync_all().await);
        let id = ids[1];
        bed.clock.advance(Duration::from_secs(1));
        bed.netsuite.delete_record("vendor", id).unwrap();
        let record_requests = bed.netsuite.record_requests();
        let skips = async || {
            let mut found = Vec::new();
            for _ in 0..3 {
                let report = bed.sync_all().await;
                succeeded(&report);
                assert_eq!(report.counts("vendor").failed, 0, "{action}: {:?}", rows(&bed, &report.run_id));
                found.extend(actions(&rows(&bed, &report.run_id), "skip-deleted-in-netsuite"));
                bed.clock.advance(Duration::from_secs(7));
            }
            found
        };
        // The connector's own flag comes back as a change: no entry for it.
        let echoes = skips().await;
        assert!(echoes.is_empty(), "{action}: {echoes:?}");
        assert_eq!(bed.netsuite.record_requests(), record_requests, "{action}: nothing sent to NetSuite");
        match action {
            "flag" => assert_eq!(bed.sf("Vendor__c", id).1["NetSuite_Deleted__c"], json!(true)),
            _ => assert!(bed.salesforce.find("Vendor__c", &id.to_string()).is_none()),
        }
        if action == "flag" {
            // A user's later edit of the flagged Vendor__c cannot reach
            // NetSuite; it is audited once (not again in the overlap).
            let sf_id = salesforce_edit(&bed, id, json!({"Phone__c": "+15550199"}));
            let found = skips().await;
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(
                (found[0].netsuite_id.as_str(), found[0].salesforce_id.as_deref(), found[0].direction.as_str()),
                (id.to_string().as_str(), Some(sf_id.as_str()), "salesforce-to-netsuite")
            );
            let change = &serde_json::from_str::<Value>(&found[0].transformations).unwrap()[0];
            assert_eq!((&change["field"], &change["new"]), (&json!("Phone__c"), &json!("+15550199")), "{found:?}");
            assert_ne!(change["old"], change["new"]);
            assert_eq!(bed.netsuite.record_requests(), record_requests, "nothing sent to NetSuite");
        }
        let conn = bed.tenant.database.connect().unwrap();
        let status = host_harness::ops::status::tenant_status(&conn, "demo", None, time::OffsetDateTime::now_utc());
        assert!(status.unwrap().waiting.iter().all(|w| w.failed_writebacks == 0), "{action}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_switch_to_another_org_its_earlier_edits_reach_netsuite_and_are_not_overwritten() {
    use simulators::salesforce::{SalesforceSim, SalesforceSimConfig};
    // The newest edit wins: production's, once read, is newer than NetSuite's.
    let (bed, ids) = synced(3, "newest").await;
    // Production already holds the vendors (loaded by the tool the connector
    // replaces), and a person there changed one's phone.
    let production = SalesforceSim::start(
        SalesforceSimConfig { org_id: "00D8d000000PRODxEAA".into(), ..Default::default() },
        bed.clock.clone(),
        0,
    )
    .await
    .unwrap();
    for &id in &ids {
        let (_, record) = bed.sf("Vendor__c", id);
        let copy: Map<String, Value> = record
            .into_iter()
            .filter(|(field, value)| (field == "Name" || field.ends_with("__c")) && !value.is_null())
            .collect();
        production.insert_by_hand("Vendor__c", &id.to_string(), copy);
    }
    let edited = ids[1];
    bed.clock.advance(Duration::from_secs(1));
    let (prod_id, _) = production.find("Vendor__c", &edited.to_string()).unwrap();
    production.edit_by_hand("Vendor__c", &prod_id, fields(json!({"Phone__c": "+15550199"})));
    // Later (past the overlap window), the sandbox's own edits move its
    // Salesforce cursor past that time.
    bed.clock.advance(Duration::from_secs(2 * 3600));
    salesforce_edit(&bed, ids[0], json!({"City__c": "Dallas"}));
    succeeded(&bed.sync_all().await);

    bed.tenant.set_override("salesforce_login_url", production.base_url());
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.netsuite.vendor_field(edited, "phone").unwrap().as_deref(), Some("+15550199"));
    let (_, record) = production.find("Vendor__c", &edited.to_string()).unwrap();
    assert_eq!(record["Phone__c"], json!("+15550199"), "production's edit stands");
}

/// A Vendor__c deleted in Salesforce clears its Contacts' lookups there;
/// reactivated in NetSuite it comes back as a new record, and its contacts
/// (unchanged in NetSuite) are linked to that one in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_follow_a_vendor_written_anew_after_its_deletion_in_salesforce() {
    let bed = bed(0).setting("vendor_writeback", "true").setting("vendor_conflict", "netsuite").start().await;
    let ids = bed.netsuite.seed_vendors(3, 7).unwrap();
    let at = bed.clock.now_secs() - 3600;
    bed.netsuite.seed_contacts(12, &ids, at, 9).unwrap();
    succeeded(&bed.sync_all().await);
    let id = ids[1];
    let under: Vec<i64> = bed
        .netsuite
        .id_pairs("SELECT id, company FROM contact ORDER BY id")
        .unwrap()
        .into_iter()
        .filter(|(_, company)| *company == id)
        .map(|(contact, _)| contact)
        .collect();
    assert_eq!(under.len(), 4);
    let (old, _) = bed.sf("Vendor__c", id);
    let linked = |vendor: &str| under.iter().all(|&c| bed.sf("Contact", c).1["Vendor__c"].as_str() == Some(vendor));
    assert!(linked(&old));

    bed.clock.advance(Duration::from_secs(1));
    bed.salesforce.delete_by_hand(&old);
    assert!(under.iter().all(|&c| bed.sf("Contact", c).1["Vendor__c"].is_null()), "Salesforce cleared the lookups");
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.netsuite.vendor_field(id, "isinactive").unwrap().as_deref(), Some("T"));

    netsuite_edit(&bed, id, "isinactive", "F");
    let report = bed.sync_all().await;
    succeeded(&report);
    let (new, _) = bed.sf("Vendor__c", id);
    assert_ne!(new, old);
    assert!(linked(&new), "the contacts point at the new Vendor__c: {report:?}");
    assert_eq!(report.counts("contact").updated, 4, "{report:?}");
    // Nothing is left to do.
    let writes = bed.salesforce.writes();
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.salesforce.writes(), writes);
}

/// A vendor a killed run's write left in doubt (its state forgot what
/// Salesforce holds): under a policy where Salesforce wins conflicts, what
/// Salesforce holds may be that run's output, not a person's edit, so it does
/// not reach NetSuite; the forward pass writes NetSuite's vendor again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_in_doubt_after_a_killed_run_is_not_taken_for_a_salesforce_edit() {
    let (bed, ids) = synced(3, "salesforce").await;
    let id = ids[0];
    let phone = bed.netsuite.vendor_field(id, "phone").unwrap();
    bed.clock.advance(Duration::from_secs(1));
    let (sf_id, _) = bed.sf("Vendor__c", id);
    let mut fields = Map::new();
    fields.insert("Phone__c".into(), json!("+14155550199"));
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, fields);
    // As a run taking up a killed run's marks leaves the state.
    let conn = bed.tenant.database.connect().unwrap();
    let key = format!("record/vendor/{id}");
    let value: Vec<u8> = conn
        .query_row("SELECT value FROM kv WHERE tenant = 'demo' AND bucket = 'state' AND key = ?1", [&key], |r| r.get(0))
        .unwrap();
    let mut state: Value = serde_json::from_slice(&value).unwrap();
    state["src"] = json!("");
    state["dst"] = json!("");
    state.as_object_mut().unwrap().remove("fields");
    conn.execute(
        "UPDATE kv SET value = ?1 WHERE tenant = 'demo' AND bucket = 'state' AND key = ?2",
        (serde_json::to_vec(&state).unwrap(), &key),
    )
    .unwrap();
    // NetSuite's vendor changes too, so the forward pass reads it.
    netsuite_edit(&bed, id, "email", "ap@example.com");

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap(), phone, "NetSuite keeps its phone");
    let (_, after) = bed.sf("Vendor__c", id);
    assert_ne!(after["Phone__c"], "+14155550199", "Salesforce is given NetSuite's vendor again: {after:?}");
    assert_eq!(after["Email__c"], "ap@example.com");
}

/// A run compared live repairs Salesforce-side drift only for kinds synced
/// one way: a Vendor__c deleted in Salesforce whose inactivation NetSuite
/// refused is left for write-back's replay, not created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_compared_live_leaves_salesforce_deletions_of_written_back_vendors_to_write_back() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[0];
    bed.netsuite.reject_vendor_writes(VendorRejection {
        matches: simulators::netsuite::VendorMatch::Id(id),
        message: "This vendor has open bills.".into(),
    });
    bed.clock.advance(Duration::from_secs(1));
    bed.salesforce.delete_by_hand(&bed.sf("Vendor__c", id).0);
    let writes = bed.salesforce.writes();
    let report = bed.bed.tenant.sync_compared_live(support::runtime(), SyncMode::Full, &[]).await.unwrap();
    succeeded(&report);
    let all = rows(&bed, &report.run_id);
    let inactivated = actions(&all, "netsuite-inactivate");
    assert_eq!(inactivated.len(), 1, "{all:?}");
    assert_eq!(inactivated[0].outcome, "failed");
    assert!(bed.salesforce.find("Vendor__c", &id.to_string()).is_none(), "not created again");
    assert_eq!(bed.salesforce.writes(), writes);

    // NetSuite accepts it now: the replay inactivates the vendor, which stays out of Salesforce.
    bed.netsuite.clear_vendor_rejections();
    succeeded(&bed.replay_all().await);
    assert_eq!(bed.netsuite.vendor_field(id, "isinactive").unwrap().as_deref(), Some("T"));
    succeeded(&bed.bed.tenant.sync_compared_live(support::runtime(), SyncMode::Full, &[]).await.unwrap());
    assert!(bed.salesforce.find("Vendor__c", &id.to_string()).is_none());
}

/// Contacts of a Vendor__c deleted in Salesforce (its NetSuite vendor made
/// inactive) wait for it rather than fail on its link: a run compared live
/// finds their lookup cleared, and defers them until the vendor is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_of_a_vendor_deleted_in_salesforce_wait_for_it_instead_of_failing() {
    let (bed, ids) = synced(3, "netsuite").await;
    let vendor = ids[0];
    let at = bed.clock.now_secs();
    bed.netsuite.seed_contacts(4, &[vendor], at, 5).unwrap();
    succeeded(&bed.sync_all().await);
    bed.clock.advance(Duration::from_secs(1));
    bed.salesforce.delete_by_hand(&bed.sf("Vendor__c", vendor).0);
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.netsuite.vendor_field(vendor, "isinactive").unwrap().as_deref(), Some("T"));

    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Full, &[], true).await.unwrap();
    succeeded(&plan);
    let report = bed.bed.tenant.sync_compared_live(support::runtime(), SyncMode::Full, &[]).await.unwrap();
    succeeded(&report);
    let c = report.counts("contact");
    assert_eq!((c.failed, c.deferred), (0, 4), "{:?}", rows(&bed, &report.run_id));
    let p = plan.counts("contact");
    assert_eq!((p.failed, p.deferred, p.updated), (c.failed, c.deferred, c.updated), "{:?}", plan.plan);

    // Reactivated in NetSuite, the vendor comes back, and its contacts with it.
    bed.clock.advance(Duration::from_secs(1));
    let now = bed.clock.now_secs();
    let sql = format!("UPDATE vendor SET isinactive = 'F', lastmodifieddate = {now} WHERE id = {vendor}");
    assert_eq!(bed.netsuite.execute(&sql).unwrap(), 1);
    // The dry run knows it absent from Salesforce: created, its contacts after it.
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("contact").failed, 0, "{:?}", rows(&bed, &report.run_id));
    assert_eq!(report.counts("vendor").created, 1, "{:?}", rows(&bed, &report.run_id));
    for kind in ["vendor", "contact"] {
        let (p, r) = (plan.counts(kind), report.counts(kind));
        let counted =
            |c: &host_harness::scheduler::ObjectCounts| (c.read, c.created, c.updated, c.unchanged, c.deferred);
        assert_eq!(counted(&p), counted(&r), "{kind}: {:?}", plan.plan);
    }
    let (sf_vendor, _) = bed.sf("Vendor__c", vendor);
    let contacts = bed.netsuite.id_pairs(&format!("SELECT id, company FROM contact WHERE company = {vendor}")).unwrap();
    assert_eq!(contacts.len(), 4);
    for (contact, _) in contacts {
        assert_eq!(bed.sf("Contact", contact).1["Vendor__c"], sf_vendor.as_str(), "contact {contact}");
    }
}

/// A change event queued for each of these vendors, as the listener queues
/// a verified one.
fn queue_vendor_events(bed: &Bed, ids: &[i64]) {
    let events: Vec<(&str, i64, &str)> = ids.iter().map(|id| ("vendor", *id, "edit")).collect();
    bed.queue_events(&events);
}

/// A change event writes a vendor as a scheduled run does: Salesforce's
/// edits and deletions reach NetSuite first, so the event's write neither
/// overwrites a buyer's edit nor brings back a record deleted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_event_for_a_vendor_takes_salesforces_edits_and_deletions_first() {
    use host_harness::host::RecordKind;
    let (bed, ids) = synced(3, "netsuite").await;
    let (edited, deleted) = (ids[0], ids[1]);
    salesforce_edit(&bed, edited, json!({"Phone__c": "+15550123"}));
    netsuite_edit(&bed, edited, "email", "ap@event.example.com");
    let (gone, _) = bed.sf("Vendor__c", deleted);
    bed.salesforce.delete_by_hand(&gone);
    netsuite_edit(&bed, deleted, "email", "still@netsuite.example.com");
    queue_vendor_events(&bed, &[edited, deleted]);

    // A dry run merges once too, though it saves no cursor between its
    // events and its scheduled pass.
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let merges = plan.plan.iter().filter(|p| p.action == "netsuite-update" && p.netsuite_id == edited.to_string());
    assert_eq!(merges.count(), 1, "{:?}", plan.plan);

    let report = bed.bed.sync_kinds(support::runtime(), SyncMode::Events, &[RecordKind::Vendor]).await.unwrap();
    succeeded(&report);
    let (_, record) = bed.sf("Vendor__c", edited);
    assert_eq!(
        (record["Phone__c"].clone(), record["Email__c"].clone()),
        (json!("+15550123"), json!("ap@event.example.com")),
        "both edits kept"
    );
    assert_eq!(bed.netsuite.vendor_field(edited, "phone").unwrap().as_deref(), Some("+15550123"));
    assert!(bed.salesforce.find("Vendor__c", &deleted.to_string()).is_none(), "not created again");
    assert_eq!(bed.netsuite.vendor_field(deleted, "isinactive").unwrap().as_deref(), Some("T"));
    let all = rows(&bed, &report.run_id);
    assert_eq!(actions(&all, "netsuite-inactivate").len(), 1, "{all:?}");
    assert_eq!(actions(&all, "skip-deleted-in-salesforce").len(), 1, "{all:?}");
}

/// A replay of a failed write of a vendor writes it as NetSuite has it once
/// Salesforce's edits since are merged, not as recorded: a buyer's edit
/// made while the write waited is kept on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_vendor_write_keeps_the_salesforce_edits_made_while_it_waited() {
    use simulators::salesforce::ValidationRule;
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[1];
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Vendor__c".into(),
        field: "Name".into(),
        contains: "Embargoed".into(),
        message: "vendors under embargo need approval".into(),
    }));
    netsuite_edit(&bed, id, "companyname", "Embargoed Supplies");
    let failed = bed.sync_all().await;
    assert_eq!(failed.counts("vendor").failed, 1, "{:?}", failed.counts("vendor"));
    salesforce_edit(&bed, id, json!({"Phone__c": "+15550177"}));
    bed.salesforce.set_validation_rule(None);

    // A replay whose scope holds no failed vendor merges nothing.
    let other = host_harness::host::RecordRef { kind: host_harness::host::RecordKind::Vendor, id: ids[0].to_string() };
    let scope = host_harness::host::ReplayScope::One(other);
    let elsewhere = bed.bed.tenant.replay(support::runtime(), scope).await.unwrap();
    succeeded(&elsewhere);
    assert!(rows(&bed, &elsewhere.run_id).is_empty(), "{:?}", rows(&bed, &elsewhere.run_id));
    assert_ne!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550177"));

    let replay = bed.replay_all().await;
    succeeded(&replay);
    let (_, record) = bed.sf("Vendor__c", id);
    assert_eq!(
        (record["Name"].clone(), record["Phone__c"].clone()),
        (json!("Embargoed Supplies"), json!("+15550177")),
        "the failed write landed and the buyer's edit stayed"
    );
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+15550177"));
    let all = rows(&bed, &replay.run_id);
    assert_eq!(actions(&all, "netsuite-write").len(), 1, "{all:?}");
    // Written to Salesforce once: by the merge, which found NetSuite's side
    // changed, or else by the replay.
    let landed = |r: &&AuditRow| r.direction == "netsuite-to-salesforce" && r.outcome == "updated";
    assert_eq!(all.iter().filter(landed).count(), 1, "{all:?}");
    let again = bed.replay_all().await;
    succeeded(&again);
    assert!(rows(&bed, &again.run_id).iter().all(|r| r.outcome != "updated"), "nothing waits any more");
}

/// A buyer edits a vendor NetSuite deletes before the next run: that run
/// audits the edit as one NetSuite cannot take (once, not as a failure
/// kept for replay), and applies the deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_of_a_vendor_netsuite_deleted_since_the_last_run_is_skipped_once() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[2];
    let sf_id = salesforce_edit(&bed, id, json!({"Phone__c": "+15550155"}));
    bed.netsuite.delete_record("vendor", id).unwrap();
    let mut found = Vec::new();
    for n in 0..3 {
        let report = bed.sync_all().await;
        succeeded(&report);
        let all = rows(&bed, &report.run_id);
        assert_eq!(report.counts("vendor").failed, 0, "run {n}: {all:?}");
        found.extend(actions(&all, "skip-deleted-in-netsuite"));
        bed.clock.advance(Duration::from_secs(7));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].salesforce_id.as_deref(), Some(sf_id.as_str()));
    assert!(found[0].transformations.contains("+15550155"), "{}", found[0].transformations);
    assert_eq!(bed.sf("Vendor__c", id).1["NetSuite_Deleted__c"], json!(true), "the deletion applied");
    let conn = bed.tenant.database.connect().unwrap();
    let status = host_harness::ops::status::tenant_status(&conn, "demo", None, time::OffsetDateTime::now_utc());
    assert!(status.unwrap().waiting.iter().all(|w| w.failed_writebacks == 0), "nothing kept for replay");
}

/// A Salesforce value NetSuite would take but the forward mapping could not
/// bring back (a phone that is no number) is not written to NetSuite, where
/// it would stop the vendor's forward sync: it fails naming the field, the
/// vendor's NetSuite changes still reach Salesforce, and corrected in
/// Salesforce the edit lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_value_the_forward_mapping_refuses_is_not_written_to_netsuite() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[0];
    let phone = bed.netsuite.vendor_field(id, "phone").unwrap();
    salesforce_edit(&bed, id, json!({"Phone__c": "n/a"}));
    // A dry run plans no write to NetSuite and counts the refusal, as the run does.
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    assert!(!plan.plan.iter().any(|p| p.action == "netsuite-update"), "{:?}", plan.plan);
    let counts = |c: host_harness::scheduler::ObjectCounts| (c.read, c.unchanged, c.updated, c.failed);
    assert_eq!(counts(plan.counts("vendor")), (1, 0, 0, 1), "one outcome per record read");
    let report = bed.sync_all().await;
    assert_eq!(counts(report.counts("vendor")), (1, 0, 0, 1), "as the plan said");
    let writes = actions(&rows(&bed, &report.run_id), "netsuite-write");
    assert_eq!((writes.len(), writes[0].outcome.as_str()), (1, "failed"), "{writes:?}");
    let error = writes[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("Phone__c") && error.contains("n/a") && error.contains("correct it in Salesforce"),
        "{error}"
    );
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap(), phone, "NetSuite keeps its number");

    netsuite_edit(&bed, id, "companyname", "Renamed Vendor Ltd");
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.sf("Vendor__c", id).1["Name"], json!("Renamed Vendor Ltd"), "{:?}", report.counts("vendor"));

    salesforce_edit(&bed, id, json!({"Phone__c": "+1 212 555 0100"}));
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+1 212 555 0100"));
    assert_eq!(waiting_writebacks(&bed), 0);
}

/// A field only the forward mapping writes is NetSuite's alone: edited in
/// Salesforce, the next run sets it back, and nothing echoes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_of_a_field_only_netsuite_writes_is_set_back() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[1];
    salesforce_edit(&bed, id, json!({"NetSuite_Inactive__c": true}));
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.sf("Vendor__c", id).1["NetSuite_Inactive__c"], json!(false), "{:?}", report.counts("vendor"));
    let writes = actions(&rows(&bed, &report.run_id), "write");
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].transformations.contains("NetSuite_Inactive__c"), "{}", writes[0].transformations);
    assert_eq!(bed.netsuite.vendor_field(id, "isinactive").unwrap().as_deref(), Some("F"));

    let (sf_writes, ns_writes) = (bed.salesforce.writes(), bed.netsuite.record_writes());
    for _ in 0..20 {
        bed.clock.advance(Duration::from_secs(61));
        succeeded(&bed.sync_all().await);
    }
    assert_eq!((bed.salesforce.writes(), bed.netsuite.record_writes()), (sf_writes, ns_writes), "no echo");
}

/// Another run writes nothing to either side.
async fn no_echo(bed: &Bed) {
    let writes = (bed.salesforce.writes(), bed.netsuite.record_writes());
    succeeded(&bed.sync_all().await);
    assert_eq!((bed.salesforce.writes(), bed.netsuite.record_writes()), writes, "no echo");
}

/// The shipped mapping with `Phone__c` out of the vendor mapping, both ways.
fn without_phone() -> String {
    let shipped = netsuite_salesforce::mapping::DEFAULT_MAPPING;
    let without = shipped
        .replacen(
            "[[vendor.field]]\ntarget = \"Phone__c\"\nrules = [{ copy = \"phone\" }]\ntransforms = [\"phone\"]\n",
            "",
            1,
        )
        .replacen("  { source = \"Phone__c\", target = \"phone\" },\n", "", 1);
    assert_eq!(without.len() + 134, shipped.len(), "both Phone__c entries taken out");
    without
}

/// A field put back into the mapping has no base: the two sides never
/// agreed on it. NetSuite's value fills Salesforce's blank whatever the
/// policy (Salesforce's blank must not erase NetSuite's value; under
/// `salesforce`, as here, Salesforce's value fills NetSuite's blank too);
/// two values are a conflict `vendor_conflict` decides, audited without a
/// base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_put_back_into_the_mapping_fills_blanks_and_merges_values_by_the_policy() {
    let (bed, ids) = synced(3, "salesforce").await;
    let (both, blank) = (ids[0], ids[1]);
    let (shipped, without) = (netsuite_salesforce::mapping::DEFAULT_MAPPING, without_phone());
    let salesforce_phone = bed.sf("Vendor__c", both).1["Phone__c"].clone();
    let netsuite_phone = bed.netsuite.vendor_field(blank, "phone").unwrap().expect("a phone");
    assert!(salesforce_phone.is_string());

    bed.tenant.set_override("mapping_toml", &without);
    succeeded(&bed.sync_all().await);
    netsuite_edit(&bed, both, "phone", "+1 415 555 0100");
    succeeded(&bed.sync_all().await);
    salesforce_edit(&bed, both, json!({"City__c": "Dallas"}));
    salesforce_edit(&bed, blank, json!({"Phone__c": null, "City__c": "Austin"}));

    bed.tenant.set_override("mapping_toml", shipped);
    let report = bed.sync_all().await;
    succeeded(&report);
    let phone = |id: i64| bed.netsuite.vendor_field(id, "phone").unwrap();
    assert_eq!(phone(blank).as_deref(), Some(netsuite_phone.as_str()), "Salesforce's blank erased nothing");
    assert!(bed.sf("Vendor__c", blank).1["Phone__c"].is_string(), "NetSuite's number filled it");
    assert_eq!(phone(both).map(Value::from), Some(salesforce_phone.clone()), "the policy's side won");
    let conflicts = actions(&rows(&bed, &report.run_id), "conflict");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let detail: Vec<Value> = serde_json::from_str(&conflicts[0].transformations).unwrap();
    assert_eq!((&detail[0]["field"], &detail[0]["winner"]), (&json!("Phone__c"), &json!("salesforce")));
    assert!(detail[0].get("base").is_none(), "no base to show: {detail:?}");
}

/// Three vendors synced under `salesforce`; with `without` as the mapping,
/// the first's `Phone__c` edited in Salesforce and polled, and the poll's
/// cursor moved far past it by a later edit of the third: (bed, the edited
/// vendor, the untouched one).
async fn phone_edited_while_out(without: &str) -> (Bed, i64, i64) {
    let (bed, ids) = synced(3, "salesforce").await;
    let (edited, untouched, later) = (ids[0], ids[1], ids[2]);
    bed.tenant.set_override("mapping_toml", without);
    succeeded(&bed.sync_all().await);
    salesforce_edit(&bed, edited, json!({"Phone__c": "+12125550199"}));
    succeeded(&bed.sync_all().await);
    let phone = bed.netsuite.vendor_field(edited, "phone").unwrap();
    assert_ne!(phone.as_deref(), Some("+12125550199"), "not written back while out");
    bed.clock.advance(Duration::from_secs(86_400));
    salesforce_edit(&bed, later, json!({"City__c": "Austin"}));
    succeeded(&bed.sync_all().await);
    (bed, edited, untouched)
}

/// As a field put back into the mapping, one put back into the write-back
/// alone (the forward mapping wrote it all along): the Salesforce edit made
/// while it was not written back reaches NetSuite when it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_value_entered_while_its_field_was_not_written_back_reaches_netsuite_when_it_is() {
    let shipped = netsuite_salesforce::mapping::DEFAULT_MAPPING;
    let one_way = shipped.replacen("  { source = \"Phone__c\", target = \"phone\" },\n", "", 1);
    assert_ne!(one_way, shipped);
    let (bed, edited, _) = phone_edited_while_out(&one_way).await;
    bed.tenant.set_override("mapping_toml", shipped);
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.netsuite.vendor_field(edited, "phone").unwrap().as_deref(), Some("+12125550199"));
    assert_eq!(bed.sf("Vendor__c", edited).1["Phone__c"], json!("+12125550199"));
    assert_eq!(report.counts("vendor").written_back, 1, "{:?}", report.counts("vendor"));
}

/// A Salesforce value entered while its field was out of the mapping, and
/// polled then (the poll's cursor passed it long ago), still goes through the
/// merge when the field returns: the re-read of NetSuite does not write over
/// it, and the two values are a conflict `vendor_conflict` decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_value_entered_while_its_field_was_out_of_the_mapping_is_merged_when_it_returns() {
    let (bed, edited, untouched) = phone_edited_while_out(&without_phone()).await;
    let netsuite_phone = |id: i64| bed.netsuite.vendor_field(id, "phone").unwrap();
    bed.tenant.set_override("mapping_toml", netsuite_salesforce::mapping::DEFAULT_MAPPING);
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(bed.sf("Vendor__c", edited).1["Phone__c"], json!("+12125550199"), "Salesforce's value kept");
    assert_eq!(netsuite_phone(edited).as_deref(), Some("+12125550199"), "and written back, the policy's side");
    let conflicts = actions(&rows(&bed, &report.run_id), "conflict");
    assert_eq!(conflicts.len(), 1, "the other vendors agree: {conflicts:?}");
    assert_eq!(conflicts[0].netsuite_id, edited.to_string());
    let untouched_phone = bed.sf("Vendor__c", untouched).1["Phone__c"].clone();
    assert!(untouched_phone.is_string(), "NetSuite's number is there: {untouched_phone}");
    no_echo(&bed).await;
}

/// A Salesforce edit NetSuite takes in another form comes back to
/// Salesforce in the forward mapping's form with the merge (a phone in
/// E.164, an email in lower case, a payment term as NetSuite names it): one
/// write each way, counted once, planned so by the dry run, and no second
/// forward write of the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_netsuite_holds_in_another_form_is_written_once_each_way() {
    let (bed, ids) = synced(2, "netsuite").await;
    let vendor = ids[0];
    netsuite_edit(&bed, vendor, "companyname", "NS Renamed");
    let typed = json!({"Phone__c": "+1 (415) 555-0101", "Email__c": "Buyer@Example.COM", "Payment_Terms__c": "net 30"});
    salesforce_edit(&bed, vendor, typed.clone());
    let mut born = typed.as_object().unwrap().clone();
    born.insert("Name".into(), json!("SF Typed Vendor"));
    let born = bed.salesforce.create_by_hand("Vendor__c", born);
    bed.clock.advance(Duration::from_secs(1));

    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let sent: Vec<_> = plan.plan.iter().filter(|p| p.action.starts_with("netsuite-")).collect();
    assert_eq!(sent.len(), 2, "{:?}", plan.plan);
    for write in &sent {
        let changes = write.changes.as_array().unwrap();
        let phone = changes.iter().find(|c| c["field"] == "Phone__c").expect("the phone is sent");
        assert_eq!(phone["new"], json!("+1 (415) 555-0101"), "NetSuite is sent the typed form: {write:?}");
    }
    let real = bed.sync_all().await;
    succeeded(&real);
    let (p, r) = (plan.counts("vendor"), real.counts("vendor"));
    assert_eq!((r.read, r.updated, r.written_back, r.failed), (2, 1, 2, 0), "{r:?}: {:?}", rows(&bed, &real.run_id));
    assert_eq!(
        (p.read, p.created, p.updated, p.unchanged, p.written_back),
        (r.read, r.created, r.updated, r.unchanged, r.written_back)
    );
    // The merge's, and the new vendor's forward form after its link: no
    // forward pass write of either.
    let writes = actions(&rows(&bed, &real.run_id), "write");
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes.iter().all(|w| w.transformations.contains("\"merge\"") && !w.transformations.contains("copy")));
    let netsuite_id = bed.netsuite.vendor_id_by_external_id(&born).unwrap().expect("created by external id");
    for id in [vendor, netsuite_id] {
        let fields = bed.sf("Vendor__c", id).1;
        assert_eq!(
            (&fields["Phone__c"], &fields["Email__c"], &fields["Payment_Terms__c"]),
            (&json!("+14155550101"), &json!("buyer@example.com"), &json!("Net 30")),
            "vendor {id}"
        );
        assert_eq!(bed.netsuite.vendor_field(id, "phone").unwrap().as_deref(), Some("+1 (415) 555-0101"));
    }
    no_echo(&bed).await;
}

/// A Salesforce edit made after the run's poll, to a vendor whose other
/// field NetSuite changed, stays: the forward write updates that record by
/// its id with the fields NetSuite changed only, and the next run takes the
/// edit to NetSuite. Also in a run sized for Bulk API 2.0 (threshold 0),
/// where such writes go through Composite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_made_during_a_run_survives_its_forward_write() {
    for threshold in ["10000", "0"] {
        let bed = bed(0)
            .setting("vendor_writeback", "true")
            .setting("vendor_conflict", "netsuite")
            .setting("salesforce_bulk_threshold", threshold)
            .start()
            .await;
        let ids = bed.netsuite.seed_vendors(3, 7).unwrap();
        succeeded(&bed.sync_all().await);
        let vendor = ids[0];
        let sf_id = bed.sf("Vendor__c", vendor).0;
        netsuite_edit(&bed, vendor, "email", "ns-edit@example.com");
        netsuite_edit(&bed, ids[1], "email", "other@example.com");
        bed.salesforce.after_query_of("Vendor__c", move |sf| {
            sf.edit_by_hand("Vendor__c", &sf_id, fields(json!({"Phone__c": "+15550000021"})))
        });
        let report = bed.sync_all().await;
        succeeded(&report);
        let counts = report.counts("vendor");
        assert_eq!((counts.created, counts.updated, counts.failed), (0, 2, 0), "{threshold}: {counts:?}");
        let held = bed.sf("Vendor__c", vendor).1;
        assert_eq!(held["Email__c"], "ns-edit@example.com", "{threshold}: NetSuite's change is written");
        assert_eq!(held["Phone__c"], "+15550000021", "{threshold}: the edit made during the run stays");
        assert_eq!(bed.sf("Vendor__c", ids[1]).1["Email__c"], "other@example.com");
        bed.clock.advance(Duration::from_secs(1));
        succeeded(&bed.sync_all().await);
        assert_eq!(bed.netsuite.vendor_field(vendor, "phone").unwrap().as_deref(), Some("+15550000021"), "{threshold}");
        assert_eq!(bed.sf("Vendor__c", vendor).1["Phone__c"], "+15550000021");
        bed.clock.advance(Duration::from_secs(1));
        no_echo(&bed).await;
    }
}

/// A field only the forward mapping writes (out of the write-back) stays
/// NetSuite's: a Salesforce edit to it is put right by the vendor's next
/// forward write, as a whole write would, though only NetSuite's changed
/// fields of those written back are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_only_netsuite_writes_is_put_right_by_the_next_forward_write() {
    let shipped = netsuite_salesforce::mapping::DEFAULT_MAPPING;
    let forward_only = shipped.replacen("  { source = \"Phone__c\", target = \"phone\" },\n", "", 1);
    assert_ne!(forward_only, shipped);
    let bed = bed(0)
        .setting("vendor_writeback", "true")
        .setting("vendor_conflict", "netsuite")
        .setting("mapping_toml", &forward_only)
        .start()
        .await;
    let ids = bed.netsuite.seed_vendors(2, 7).unwrap();
    succeeded(&bed.sync_all().await);
    let vendor = ids[0];
    let phone = bed.sf("Vendor__c", vendor).1["Phone__c"].clone();
    assert!(phone.is_string());
    salesforce_edit(&bed, vendor, json!({"Phone__c": "+15550000099"}));
    netsuite_edit(&bed, vendor, "email", "ns-edit@example.com");
    succeeded(&bed.sync_all().await);
    let held = bed.sf("Vendor__c", vendor).1;
    assert_eq!((&held["Phone__c"], &held["Email__c"]), (&phone, &json!("ns-edit@example.com")));
}

/// A vendor deleted in Salesforce after the run's poll, whose NetSuite
/// record changed, is created again whole by the forward write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_deleted_in_salesforce_during_a_run_is_created_again_whole() {
    let (bed, ids) = synced(2, "netsuite").await;
    let vendor = ids[0];
    let (gone, before) = bed.sf("Vendor__c", vendor);
    netsuite_edit(&bed, vendor, "email", "ns-edit@example.com");
    let deleted = gone.clone();
    bed.salesforce.after_query_of("Vendor__c", move |sf| sf.delete_by_hand(&deleted));
    let report = bed.sync_all().await;
    succeeded(&report);
    let counts = report.counts("vendor");
    assert_eq!((counts.created, counts.updated, counts.failed), (1, 0, 0), "{counts:?}");
    let (again, held) = bed.sf("Vendor__c", vendor);
    assert_ne!(again, gone, "a new record");
    assert_eq!(held["Email__c"], "ns-edit@example.com");
    for field in ["Name", "Phone__c", "City__c", "Payment_Terms__c"] {
        assert_eq!(held[field], before[field], "{field} written too");
    }
}

/// A new Vendor__c whose values Salesforce refuses in the forward
/// mapping's form (a validation rule) is still linked to the NetSuite
/// vendor made for it, keeps its values as typed, and is not created in
/// NetSuite again by the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_vendor_whose_forward_form_salesforce_refuses_is_still_linked_once() {
    use simulators::salesforce::ValidationRule;
    let (bed, _) = synced(1, "netsuite").await;
    let born = bed
        .salesforce
        .create_by_hand("Vendor__c", fields(json!({"Name": "SF Typed Vendor", "Email__c": "Buyer@Example.COM"})));
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Vendor__c".into(),
        field: "Email__c".into(),
        contains: "buyer@".into(),
        message: "Emails keep their capitals".into(),
    }));
    bed.clock.advance(Duration::from_secs(1));
    let report = bed.sync_all().await;
    let netsuite_id = bed.netsuite.vendor_id_by_external_id(&born).unwrap().expect("created by external id");
    let (linked, held) = bed.sf("Vendor__c", netsuite_id);
    assert_eq!((linked.as_str(), &held["Email__c"]), (born.as_str(), &json!("Buyer@Example.COM")));
    let refused = actions(&rows(&bed, &report.run_id), "write");
    assert!(
        refused.iter().any(|r| r.outcome == "failed" && r.error.as_deref().is_some_and(|e| e.contains("capitals")))
    );
    let vendors = bed.netsuite.vendor_count().unwrap();
    bed.clock.advance(Duration::from_secs(1));
    let again = bed.sync_all().await;
    assert_eq!(bed.netsuite.vendor_count().unwrap(), vendors, "not created again");
    assert_eq!(again.counts("vendor").written_back, 0, "{:?}", again.counts("vendor"));
}

/// NetSuite appends an address line sent without its key, so a create whose
/// answer failed after it landed (a 500) is not sent again as it was: sent
/// again with the line it made keyed, the vendor has one address line and
/// is linked in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_landed_before_a_server_error_is_sent_again_with_its_line_keyed() {
    let (bed, _) = synced(2, "netsuite").await;
    bed.clock.advance(Duration::from_secs(1));
    let sf_id = bed.salesforce.create_by_hand(
        "Vendor__c",
        fields(json!({"Name": "Harbor Freight Lines", "Street__c": "1 Dock Road", "City__c": "Tacoma"})),
    );
    bed.netsuite.fail_next_record_writes(&[simulators::netsuite::ScriptedFailure::UnexpectedAfterApplying]);
    let report = bed.sync_all().await;
    succeeded(&report);
    let all = rows(&bed, &report.run_id);
    assert_eq!(report.counts("vendor").failed, 0, "{all:?}");
    let ns_id = bed.netsuite.vendor_id_by_external_id(&sf_id).unwrap().expect("created");
    let sql = format!("SELECT entity, COUNT(*) FROM vendoraddressbook WHERE entity = {ns_id} GROUP BY entity");
    assert_eq!(bed.netsuite.id_pairs(&sql).unwrap(), vec![(ns_id, 1)], "one address line: {all:?}");
    assert_eq!(bed.sf("Vendor__c", ns_id).0, sf_id, "linked, no second Vendor__c");
    assert_eq!(bed.salesforce.count("Vendor__c"), 3);
}

/// A dry run names each record it would fail and why (it keeps no audit):
/// a Salesforce edit NetSuite would refuse, a NetSuite value the mapping
/// cannot take; the run then fails the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_names_each_record_it_would_fail_and_why() {
    let (bed, ids) = synced(3, "netsuite").await;
    salesforce_edit(&bed, ids[0], json!({"Payment_Terms__c": "Bogus Terms"}));
    netsuite_edit(&bed, ids[1], "phone", "12");
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let failing = |id: i64| plan.plan.iter().find(|p| p.action == "fail" && p.netsuite_id == id.to_string());
    let refused = failing(ids[0]).unwrap_or_else(|| panic!("{:?}", plan.plan));
    assert!(refused.error.as_deref().unwrap_or_default().contains("Bogus Terms"), "{refused:?}");
    let unmapped = failing(ids[1]).unwrap_or_else(|| panic!("{:?}", plan.plan));
    assert!(unmapped.error.as_deref().unwrap_or_default().contains("12"), "{unmapped:?}");
    assert_eq!(plan.counts("vendor").failed, 2);
    let report = bed.sync_all().await;
    assert_eq!(report.counts("vendor").failed, 2, "{:?}", rows(&bed, &report.run_id));
}

/// A vendor edited in Salesforce whose NetSuite record the mapping cannot
/// take fails once per run, not in write-back and again in the forward
/// pass (a dry run plans it once too), the next run does not fail it
/// again, and once NetSuite's value is fixed the edit reaches NetSuite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmappable_vendor_edited_in_salesforce_fails_once() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[2];
    netsuite_edit(&bed, id, "phone", "12");
    salesforce_edit(&bed, id, json!({"Name": "Edited In Salesforce"}));
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    let fails: Vec<_> = plan.plan.iter().filter(|p| p.action == "fail").collect();
    assert_eq!(fails.len(), 1, "{:?}", plan.plan);
    assert_eq!(plan.counts("vendor").failed, 1);
    let report = bed.sync_all().await;
    succeeded(&report);
    let run_rows = rows(&bed, &report.run_id);
    let failed: Vec<_> = run_rows.iter().filter(|r| r.outcome == "failed").collect();
    assert_eq!(failed.len(), 1, "{run_rows:?}");
    assert!(failed[0].error.as_deref().unwrap_or_default().contains("12"), "{failed:?}");
    assert_eq!(report.counts("vendor").failed, 1);
    let again = bed.sync_all().await;
    succeeded(&again);
    assert_eq!(again.counts("vendor").failed, 0, "{:?}", rows(&bed, &again.run_id));

    netsuite_edit(&bed, id, "phone", "+1 212 555 0100");
    succeeded(&bed.sync_all().await);
    succeeded(&bed.sync_all().await);
    assert_eq!(bed.netsuite.vendor_field(id, "companyname").unwrap().as_deref(), Some("Edited In Salesforce"));
    assert_eq!(bed.sf("Vendor__c", id).1["Phone__c"], json!("+12125550100"));
    assert_eq!(waiting_writebacks(&bed), 0);
}

/// A refused Salesforce edit waits without failing again once the run that
/// refused it a second time (NetSuite changed) wrote NetSuite's side to the
/// record: that write moves `SystemModstamp`, and the overlap window reads
/// the record again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_fails_once_more_when_netsuite_changes_not_at_the_echo_of_that_change() {
    for policy in ["salesforce", "newest", "netsuite"] {
        let (bed, ids) = synced(3, policy).await;
        let id = ids[0];
        salesforce_edit(&bed, id, json!({"Phone__c": "n/a"}));
        one_refused_write(&bed).await;
        let report = bed.sync_all().await;
        assert_eq!(report.counts("vendor").failed, 0, "{policy}: waits");

        netsuite_edit(&bed, id, "companyname", "Renamed Vendor Ltd");
        one_refused_write(&bed).await;
        assert_eq!(bed.sf("Vendor__c", id).1["Name"], json!("Renamed Vendor Ltd"), "{policy}");
        let report = bed.sync_all().await;
        succeeded(&report);
        let audit = rows(&bed, &report.run_id);
        assert_eq!(report.counts("vendor").failed, 0, "{policy}: {audit:?}");
        assert!(actions(&audit, "netsuite-write").is_empty(), "{policy}: {audit:?}");
        assert_eq!(waiting_writebacks(&bed), 1, "{policy}: still waits for replay");
    }
}

/// A Salesforce edit that only retypes what NetSuite holds (` us ` where it
/// has `US`) sends NetSuite nothing: Salesforce gets the mapped form back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_edit_netsuite_already_holds_sends_netsuite_nothing() {
    let (bed, ids) = synced(2, "netsuite").await;
    let id = ids[0];
    let country = bed.sf("Vendor__c", id).1["Country__c"].as_str().expect("a country code").to_string();
    salesforce_edit(&bed, id, json!({"Country__c": format!(" {} ", country.to_lowercase())}));
    let plan = bed.bed.tenant.dry_run(support::runtime(), SyncMode::Incremental, &[], false).await.unwrap();
    succeeded(&plan);
    assert!(!plan.plan.iter().any(|p| p.action.starts_with("netsuite-")), "{:?}", plan.plan);
    let report = bed.sync_all().await;
    succeeded(&report);
    let audit = rows(&bed, &report.run_id);
    assert!(actions(&audit, "netsuite-write").is_empty(), "{audit:?}");
    assert_eq!(report.counts("vendor").written_back, 0, "{audit:?}");
    assert_eq!(bed.sf("Vendor__c", id).1["Country__c"], json!(country));
    no_echo(&bed).await;
}

/// The same edit made on both sides, Salesforce's in another form (as a
/// killed run leaves NetSuite holding Salesforce's edit): no conflict,
/// whatever the policy; Salesforce gets the mapped form, NetSuite nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_edit_on_both_sides_in_another_form_is_no_conflict() {
    for policy in ["netsuite", "salesforce", "newest"] {
        let (bed, ids) = synced(2, policy).await;
        let id = ids[0];
        netsuite_edit(&bed, id, "email", "buyer@example.com");
        salesforce_edit(&bed, id, json!({"Email__c": "Buyer@Example.COM"}));
        let report = bed.sync_all().await;
        succeeded(&report);
        let audit = rows(&bed, &report.run_id);
        assert!(actions(&audit, "conflict").is_empty(), "{policy}: {audit:?}");
        assert!(actions(&audit, "netsuite-write").is_empty(), "{policy}: {audit:?}");
        assert_eq!(bed.sf("Vendor__c", id).1["Email__c"], json!("buyer@example.com"), "{policy}");
        assert_eq!(bed.netsuite.vendor_field(id, "email").unwrap().as_deref(), Some("buyer@example.com"));
        no_echo(&bed).await;
    }
}

/// A refused Salesforce edit waiting for replay is dropped (audited) when
/// the forward pass reads NetSuite's deletion of the vendor: it can never
/// reach NetSuite, and `status` no longer counts it waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_edit_of_a_vendor_netsuite_then_deletes_waits_no_more() {
    let (bed, ids) = synced(3, "netsuite").await;
    let id = ids[0];
    let sf_id = salesforce_edit(&bed, id, json!({"Phone__c": "n/a"}));
    one_refused_write(&bed).await;
    assert_eq!(waiting_writebacks(&bed), 1);
    bed.clock.advance(Duration::from_secs(1));
    bed.netsuite.delete_record("vendor", id).unwrap();
    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(waiting_writebacks(&bed), 0, "{:?}", rows(&bed, &report.run_id));
    let dropped = actions(&rows(&bed, &report.run_id), "skip-deleted-in-netsuite");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!((dropped[0].outcome.as_str(), dropped[0].direction.as_str()), ("dropped", "salesforce-to-netsuite"));
    assert_eq!(
        (dropped[0].netsuite_id.as_str(), dropped[0].salesforce_id.as_deref()),
        (id.to_string().as_str(), Some(sf_id.as_str()))
    );
    assert!(dropped[0].error.as_deref().unwrap_or("").contains("waited to be written back"), "{dropped:?}");
}
