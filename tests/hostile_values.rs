//! Values that must not stop a sync or change meaning on the way: a lone
//! UTF-16 surrogate in NetSuite's JSON, and text that CSV or spreadsheets
//! treat specially, through Composite and through Bulk API 2.0 alike.

mod support;

use serde_json::Value;
use support::{bed, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_surrogate_is_repaired_and_audited_and_every_other_edit_still_flows() {
    let bed = bed(20).start().await;
    let vendors = bed.netsuite.seed_vendors(3, 5).unwrap();
    succeeded(&bed.sync_all().await);

    let (broken, renamed, vendor) = (bed.customer_ids[2], bed.customer_ids[7], vendors[1]);
    // WTF-8 for "Acme <U+D800> Ltd": NetSuite sends it as "Acme \ud800 Ltd".
    bed.netsuite.set_customer_text_bytes(broken, "companyname", b"Acme \xED\xA0\x80 Ltd").unwrap();
    bed.netsuite.rename_customer(renamed, "Renamed Ltd").unwrap();
    let now = bed.clock.now_secs();
    bed.netsuite
        .execute(&format!(
            "UPDATE vendor SET companyname = 'Edited Vendor', lastmodifieddate = {now} WHERE id = {vendor}"
        ))
        .unwrap();

    let report = bed.sync_all().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").updated, 2, "{report:?}");
    assert_eq!(bed.sf("Account", broken).1["Name"], "Acme \u{FFFD} Ltd");
    assert_eq!(bed.sf("Account", renamed).1["Name"], "Renamed Ltd");
    assert_eq!(bed.sf("Vendor__c", vendor).1["Name"], "Edited Vendor", "the kinds after it still flow");

    let conn = bed.tenant.database.connect().unwrap();
    let rows = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    let read = rows.iter().find(|r| r.action == "read").expect("the repair is audited");
    assert_eq!((read.netsuite_id.as_str(), read.outcome.as_str()), (broken.to_string().as_str(), "repaired"));
    let why = read.error.as_deref().unwrap();
    assert!(why.contains("companyname") && why.contains("surrogate"), "{why}");
}

/// What Salesforce holds for each record after a first sync with the given
/// Bulk threshold, plus each record's audited outcome.
async fn awkward_values_through(bulk_threshold: &str) -> Vec<(String, Value, Value, String)> {
    let bed = bed(30).setting("salesforce_bulk_threshold", bulk_threshold).start().await;
    let names = ["#N/A", "=1+2", "+44 Holdings", "@home GmbH", "-minus", "Nul\0Byte Inc", "Rocket 🚀 Ltd", " padded "];
    for (i, name) in names.iter().enumerate() {
        bed.netsuite.rename_customer_any(bed.customer_ids[i], name).unwrap();
    }
    let long_street = bed.customer_ids[names.len()];
    bed.netsuite
        .execute(&format!(
            "UPDATE customeraddressbookentityaddress SET addr1 = replace(hex(zeroblob(16384)), '00', 'xy')
             WHERE nkey = (SELECT defaultbillingaddress FROM customer WHERE id = {long_street})"
        ))
        .unwrap();
    let jobs_before = bed.salesforce.bulk_jobs();
    let report = bed.sync_all().await;
    let bulk = bed.salesforce.bulk_jobs() > jobs_before;
    assert_eq!(bulk, bulk_threshold == "1", "the threshold picks the path: {report:?}");

    let conn = bed.tenant.database.connect().unwrap();
    let audit = host_harness::audit::for_run(&conn, "demo", &report.run_id).unwrap();
    bed.customer_ids
        .iter()
        .map(|id| {
            let outcome = audit
                .iter()
                .find(|r| r.netsuite_id == id.to_string() && r.kind == "customer")
                .map(|r| format!("{} {}", r.outcome, r.error.as_deref().unwrap_or("")))
                .unwrap_or_default();
            let held = bed.salesforce.find("Account", &id.to_string()).map(|(_, f)| f).unwrap_or_default();
            let get = |f: &str| held.get(f).cloned().unwrap_or(Value::Null);
            (id.to_string(), get("Name"), get("BillingStreet"), outcome)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_values_reach_salesforce_the_same_through_composite_and_bulk() {
    let composite = awkward_values_through("10000").await;
    let bulk = awkward_values_through("1").await;
    assert_eq!(composite[0].1, "#N/A", "text, not Bulk API's null marker: {:?}", composite[0]);
    assert_eq!(composite[1].1, "=1+2");
    assert_eq!(composite[6].1, "Rocket 🚀 Ltd");
    assert!(
        composite[8].3.starts_with("failed STRING_TOO_LONG"),
        "32 KB of street is refused, not cut: {:?}",
        composite[8]
    );
    for (c, b) in composite.iter().zip(&bulk) {
        // The same record, the same Salesforce record and the same outcome.
        assert_eq!((&c.0, &c.1, &c.2), (&b.0, &b.1, &b.2), "customer {} differs between the paths", c.0);
        assert_eq!(c.3.split(' ').next(), b.3.split(' ').next(), "customer {}: {} vs {}", c.0, c.3, b.3);
    }
}
