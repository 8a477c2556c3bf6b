//! NetSuite change events through the harness's listener: verified in the
//! component, queued durably, coalesced, applied parents first.

mod support;

use host_harness::testbed::WEBHOOK_SECRET;
use host_harness::webhook::{EVENTS_PATH, Webhook};
use netsuite_salesforce::events::sign;
use std::time::{Duration, Instant};
use support::{bed, runtime, succeeded};

async fn listen(bed: &support::Bed) -> Webhook {
    host_harness::webhook::serve(bed.tenant.clone(), runtime(), "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn post(hook: &Webhook, body: &str, secret: &str, signed_at: i64) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}{EVENTS_PATH}", hook.url))
        .header("Content-Type", "application/json")
        .header("X-Connector-Signature", sign(secret.as_bytes(), signed_at, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn queued_events(bed: &support::Bed) -> i64 {
    let conn = bed.tenant.database.connect().unwrap();
    conn.query_row("SELECT COUNT(*) FROM kv WHERE bucket = 'queues' AND key LIKE 'event/%'", [], |r| r.get(0)).unwrap()
}

/// Waits until the listener has applied its queue after `runs_before` runs.
async fn applied(bed: &support::Bed, hook: &Webhook, runs_before: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while hook.applied_runs() <= runs_before || queued_events(bed) > 0 {
        assert!(Instant::now() < deadline, "events were not applied in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn event(kind: &str, id: i64) -> String {
    format!(r#"{{"recordType":"{kind}","id":"{id}","type":"edit"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_updates_salesforce_and_a_forged_one_changes_nothing() {
    let bed = bed(50).start().await;
    succeeded(&bed.sync().await);
    let hook = listen(&bed).await;
    let id = bed.customer_ids[4];
    bed.netsuite.rename_customer_any(id, "Renamed Through An Event").unwrap();

    let writes = bed.salesforce.writes();
    let (status, body) = post(&hook, &event("customer", id), "not-the-secret", bed.clock.now_secs()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature does not match"), "{body}");
    assert_eq!(queued_events(&bed), 0);

    let runs = hook.applied_runs();
    let (status, body) = post(&hook, &event("customer", id), WEBHOOK_SECRET, bed.clock.now_secs()).await;
    assert_eq!(status, 202, "{body}");
    applied(&bed, &hook, runs).await;
    assert_eq!(bed.sf("Account", id).1["Name"], "Renamed Through An Event");
    assert_eq!(bed.salesforce.writes(), writes + 1, "exactly the one record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_oversized_and_malformed_events_are_refused() {
    let bed = bed(5).start().await;
    let hook = listen(&bed).await;
    let now = bed.clock.now_secs();
    let id = bed.customer_ids[0];
    let (status, body) = post(&hook, &event("customer", id), WEBHOOK_SECRET, now - 3600).await;
    assert_eq!(status, 401);
    assert!(body.contains("replay"), "{body}");
    let big = format!(r#"{{"recordType":"customer","id":"{id}","pad":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(post(&hook, &big, WEBHOOK_SECRET, now).await.0, 413);
    let (status, body) = post(&hook, r#"{"recordType":"salesorder","id":"1"}"#, WEBHOOK_SECRET, now).await;
    assert_eq!(status, 400);
    assert!(body.contains("salesorder"), "{body}");
    assert_eq!(post(&hook, "{not json", WEBHOOK_SECRET, now).await.0, 400);
    assert_eq!(queued_events(&bed), 0);
    assert_eq!(bed.salesforce.writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_for_one_record_is_applied_once() {
    let bed = bed(30).start().await;
    succeeded(&bed.sync().await);
    let hook = listen(&bed).await;
    let id = bed.customer_ids[9];
    bed.netsuite.set_customer_phone(id, "+1 617-555-0123").unwrap();
    let writes = bed.salesforce.writes();
    let runs = hook.applied_runs();
    let now = bed.clock.now_secs();
    for _ in 0..20 {
        assert_eq!(post(&hook, &event("customer", id), WEBHOOK_SECRET, now).await.0, 202);
    }
    applied(&bed, &hook, runs).await;
    assert_eq!(bed.salesforce.writes(), writes + 1, "twenty events, one write");
    assert_eq!(bed.sf("Account", id).1["Phone"], "+16175550123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_during_a_scheduled_run_wait_for_it_and_are_not_lost() {
    let bed = bed(3000).setting("netsuite_page_size", "100").start().await;
    let hook = listen(&bed).await;
    // Slow NetSuite: the scheduled run holds the lease for a while.
    bed.netsuite.set_latency(Duration::from_millis(30));
    let scheduled = {
        let tenant = bed.tenant.clone();
        tokio::spawn(async move { tenant.sync(runtime(), host_harness::host::SyncMode::Incremental, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = bed.customer_ids[2999];
    bed.netsuite.rename_customer_any(id, "Edited While Busy").unwrap();
    let runs = hook.applied_runs();
    assert_eq!(post(&hook, &event("customer", id), WEBHOOK_SECRET, bed.clock.now_secs()).await.0, 202);
    succeeded(&scheduled.await.unwrap().unwrap());
    applied(&bed, &hook, runs).await;
    assert_eq!(bed.sf("Account", id).1["Name"], "Edited While Busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_event_brings_its_parent_first_and_a_deleted_record_is_applied() {
    let bed = bed(10).start().await;
    let at = bed.clock.now_secs() - 60;
    bed.netsuite.seed_contacts(3, &bed.customer_ids[5..6], at, 2).unwrap();
    let hook = listen(&bed).await;
    let (contact, company) = bed.netsuite.id_pairs("SELECT id, company FROM contact ORDER BY id").unwrap()[0];

    // Nothing is in Salesforce yet: the contact's Account must come first.
    let runs = hook.applied_runs();
    assert_eq!(post(&hook, &event("contact", contact), WEBHOOK_SECRET, bed.clock.now_secs()).await.0, 202);
    applied(&bed, &hook, runs).await;
    let (account_id, _) = bed.sf("Account", company);
    assert_eq!(bed.sf("Contact", contact).1["AccountId"], account_id.as_str());

    bed.netsuite.delete_record("contact", contact).unwrap();
    let runs = hook.applied_runs();
    let deleted = format!(r#"{{"recordType":"contact","id":"{contact}","type":"delete"}}"#);
    assert_eq!(post(&hook, &deleted, WEBHOOK_SECRET, bed.clock.now_secs()).await.0, 202);
    applied(&bed, &hook, runs).await;
    assert_eq!(bed.sf("Contact", contact).1["NetSuite_Deleted__c"], true);
}
