//! Queries run against a real simulated org: paging with consistent
//! snapshots, expiring locators, queryAll and the Recycle Bin, keyset
//! paging, the SQL prefilter agreeing with the evaluator, and error shapes.

use super::{QueryCall, more, query};
use crate::salesforce::store::Org;
use serde_json::{Map, Value, json};

const NOW: i64 = 1_796_160_317;

fn vendor(n: usize) -> Map<String, Value> {
    json!({ "attributes": {"type": "Vendor__c"}, "NetSuite_Id__c": n.to_string(), "Name": format!("Vendor {n:03}") })
        .as_object()
        .cloned()
        .unwrap()
}

/// An org with `n` vendors; vendor i last written at NOW + i / 100.
fn org_with_vendors(n: usize) -> Org {
    let mut org = Org::new().unwrap();
    let object = org.object("Vendor__c").cloned().unwrap();
    for i in 0..n {
        org.upsert(&object, "NetSuite_Id__c", vendor(i), NOW + (i / 100) as i64).unwrap();
    }
    org
}

fn call(soql: &str, batch: usize, now: i64) -> QueryCall<'_> {
    QueryCall { soql, all_rows: false, batch, version: 66.0, now }
}

fn names(page: &Value) -> Vec<String> {
    page["records"].as_array().unwrap().iter().map(|r| r["Name"].as_str().unwrap_or("").to_string()).collect()
}

fn locator(page: &Value) -> String {
    page["nextRecordsUrl"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

#[test]
fn pages_follow_a_snapshot_taken_when_the_query_ran() {
    let mut org = org_with_vendors(450);
    let first = query(&mut org, &call("SELECT Id, Name FROM Vendor__c ORDER BY Name", 200, NOW)).unwrap();
    assert_eq!((first["totalSize"].as_u64(), first["done"].as_bool()), (Some(450), Some(false)));
    let url = first["nextRecordsUrl"].as_str().unwrap();
    assert!(url.starts_with("/services/data/v66.0/query/01g") && url.ends_with("-200"), "{url}");
    assert_eq!(locator(&first).len(), 18 + 4);

    // Records change between pages: the pages still show the query's view.
    let object = org.object("Vendor__c").cloned().unwrap();
    let mut renamed = vendor(300);
    renamed.insert("Name".into(), json!("Renamed"));
    org.upsert(&object, "NetSuite_Id__c", renamed, NOW + 10).unwrap();
    let gone = org.find_id("Vendor__c", "301").unwrap();
    org.delete(&gone, NOW + 10);
    org.upsert(&object, "NetSuite_Id__c", vendor(999), NOW + 10).unwrap();

    let second = more(&mut org, 66.0, &locator(&first), NOW + 20).unwrap();
    assert_eq!(second["totalSize"], 450);
    assert_eq!(names(&second).len(), 200);
    let third = more(&mut org, 66.0, &locator(&second), NOW + 20).unwrap();
    assert_eq!((third["done"].as_bool(), third.get("nextRecordsUrl")), (Some(true), None));
    let all: Vec<String> = [names(&first), names(&second), names(&third)].concat();
    let expected: Vec<String> = (0..450).map(|i| format!("Vendor {i:03}")).collect();
    assert_eq!(all, expected, "every row once, in order, as it was");

    // A page may be fetched again (a retried GET), until the locator expires.
    let again = more(&mut org, 66.0, &locator(&first), NOW + 30).unwrap();
    assert_eq!(names(&again), names(&second));
    let expired = more(&mut org, 66.0, &locator(&first), NOW + 3 * 86_400).unwrap_err();
    assert_eq!((expired.status, expired.error_code), (400, "INVALID_QUERY_LOCATOR"));
    for bad in ["01g8d0000000000AAA-200", "nonsense", "01g8d0000000001AAA-x"] {
        assert_eq!(more(&mut org, 66.0, bad, NOW).unwrap_err().error_code, "INVALID_QUERY_LOCATOR", "{bad}");
    }
}

#[test]
fn query_all_sees_the_recycle_bin_and_query_does_not() {
    let mut org = org_with_vendors(3);
    let id = org.find_id("Vendor__c", "1").unwrap();
    assert!(matches!(org.delete(&id, NOW + 5), crate::salesforce::store::Deleted::Ok));
    let soql = "SELECT Id, IsDeleted, SystemModstamp FROM Vendor__c WHERE IsDeleted = true";
    let live = query(&mut org, &call(soql, 2000, NOW + 6)).unwrap();
    assert_eq!(live["totalSize"], 0);
    let all = query(&mut org, &QueryCall { all_rows: true, ..call(soql, 2000, NOW + 6) }).unwrap();
    assert_eq!(all["totalSize"], 1);
    let row = &all["records"][0];
    assert_eq!((row["Id"].as_str(), &row["IsDeleted"]), (Some(id.as_str()), &json!(true)));
    assert_eq!(row["SystemModstamp"], crate::salesforce::datetime::format(NOW + 5), "a delete moves the stamp");
    let count = query(&mut org, &call("SELECT COUNT() FROM Vendor__c", 2000, NOW)).unwrap();
    assert_eq!((count["totalSize"].as_u64(), count["records"].as_array().map(Vec::len)), (Some(2), Some(0)));
}

#[test]
fn keyset_pages_walk_every_record_once_when_many_share_a_stamp() {
    let mut org = org_with_vendors(450);
    let mut cursor: Option<(String, String)> = None;
    let mut seen = Vec::new();
    loop {
        let filter = match &cursor {
            None => String::new(),
            Some((stamp, id)) => {
                format!("WHERE SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > '{id}') ")
            }
        };
        let soql =
            format!("SELECT Id, Name, SystemModstamp FROM Vendor__c {filter}ORDER BY SystemModstamp, Id LIMIT 70");
        let page = query(&mut org, &call(&soql, 2000, NOW)).unwrap();
        let records = page["records"].as_array().unwrap();
        if records.is_empty() {
            break;
        }
        assert!(page["done"].as_bool().unwrap());
        let last = records.last().unwrap();
        cursor = Some((last["SystemModstamp"].as_str().unwrap().to_string(), last["Id"].as_str().unwrap().to_string()));
        seen.extend(names(&page));
    }
    let expected: Vec<String> = (0..450).map(|i| format!("Vendor {i:03}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn the_sql_prefilter_agrees_with_the_evaluator() {
    let mut org = org_with_vendors(250);
    let gone = org.find_id("Vendor__c", "7").unwrap();
    org.delete(&gone, NOW + 1);
    let id = org.find_id("Vendor__c", "120").unwrap();
    let stamp = crate::salesforce::datetime::format(NOW + 1);
    let conditions = [
        format!("SystemModstamp > {stamp}"),
        format!("SystemModstamp >= {stamp} AND Name LIKE '%1%'"),
        format!("SystemModstamp = {stamp} OR Id = '{id}'"),
        format!("Id >= '{id}' AND CreatedDate < {stamp}"),
        "NetSuite_Id__c IN ('5', '7', '120', 'nope')".into(),
        "NetSuite_Id__c = '42' OR Name = 'Vendor 043'".into(),
        "SystemModstamp = TODAY".into(),
        "SystemModstamp != TODAY".into(),
        "IsDeleted = false".into(),
        format!("Id IN ('{id}', '{}')", &gone[..15]),
    ];
    for all_rows in [false, true] {
        for c in &conditions {
            // NOT (NOT c) means c but goes unpushed: both must select the same rows.
            let pushed = format!("SELECT Id FROM Vendor__c WHERE {c} ORDER BY Id");
            let unpushed = format!("SELECT Id FROM Vendor__c WHERE NOT (NOT ({c})) ORDER BY Name DESC, Id");
            let a = query(&mut org, &QueryCall { all_rows, ..call(&pushed, 2000, NOW + 2) }).unwrap();
            let b = query(&mut org, &QueryCall { all_rows, ..call(&unpushed, 2000, NOW + 2) }).unwrap();
            let ids = |v: &Value| {
                let mut ids: Vec<String> =
                    v["records"].as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap().to_string()).collect();
                ids.sort();
                ids
            };
            assert_eq!(ids(&a), ids(&b), "{c} (queryAll: {all_rows})");
        }
    }
}

#[test]
fn relationship_fields_read_the_live_parent() {
    let mut org = org_with_vendors(2);
    let contact = org.object("Contact").cloned().unwrap();
    let linked = json!({"NetSuite_Id__c": "c1", "LastName": "Linked", "Vendor__r": {"NetSuite_Id__c": "1"}});
    org.upsert(&contact, "NetSuite_Id__c", linked.as_object().unwrap().clone(), NOW).unwrap();
    let unlinked = json!({"NetSuite_Id__c": "c2", "LastName": "Alone"});
    org.upsert(&contact, "NetSuite_Id__c", unlinked.as_object().unwrap().clone(), NOW).unwrap();
    let soql =
        "SELECT LastName, Vendor__c, Vendor__r.NetSuite_Id__c, Vendor__r.Name FROM Contact ORDER BY LastName DESC";
    let page = query(&mut org, &call(soql, 2000, NOW)).unwrap();
    let rows = page["records"].as_array().unwrap();
    assert_eq!(rows[0]["Vendor__r"]["NetSuite_Id__c"], "1");
    assert_eq!(rows[0]["Vendor__r"]["Name"], "Vendor 001");
    assert_eq!(rows[0]["Vendor__c"], org.find_id("Vendor__c", "1").unwrap().as_str());
    assert_eq!(rows[1]["Vendor__r"], Value::Null);
    let filtered = query(&mut org, &call("SELECT Id FROM Contact WHERE Vendor__r.Name LIKE 'vendor%'", 2000, NOW));
    assert_eq!(filtered.unwrap()["totalSize"], 1);
}

#[test]
fn refusals_carry_salesforces_codes_and_message_shape() {
    let mut org = org_with_vendors(1);
    let e = query(&mut org, &call("SELECT Id, Nope__c FROM Vendor__c", 2000, NOW)).unwrap_err();
    assert_eq!((e.status, e.error_code), (400, "INVALID_FIELD"));
    assert!(
        e.message.starts_with("\nSELECT Id, Nope__c FROM Vendor__c\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nope__c' on entity 'Vendor__c'."),
        "{}",
        e.message
    );
    let e = query(&mut org, &call("SELECT Id FROM Vendor__c WHERE", 2000, NOW)).unwrap_err();
    assert_eq!(e.error_code, "MALFORMED_QUERY");
    assert!(e.message.ends_with("unexpected token: <EOF>"), "{}", e.message);
    let e = query(&mut org, &call("", 2000, NOW)).unwrap_err();
    assert_eq!(e.error_code, "MALFORMED_QUERY");
    let e = query(&mut org, &call("SELECT Id FROM Vendor", 2000, NOW)).unwrap_err();
    assert_eq!(e.error_code, "INVALID_TYPE");
}
