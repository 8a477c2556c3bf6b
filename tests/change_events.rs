//! NetSuite change events through the harness's listener: verified in the
//! component, queued durably, coalesced, applied parents first.

mod support;

use host_harness::testbed::WEBHOOK_SECRET;
use host_harness::webhook::{EVENTS_PATH, ListenerLimits, Webhook};
use netsuite_salesforce::events::sign;
use std::time::{Duration, Instant};
use support::{bed, runtime, succeeded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// The listener holds the webhook secret it loaded with, and the component
/// checks with that one too: a secret stored while it runs takes effect
/// for both at the next load (a restart, or a reload under --tenants),
/// never for one only (which refused every event, old and new).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_stored_while_listening_changes_nothing_until_the_next_load() {
    let bed = bed(5).start().await;
    succeeded(&bed.sync().await);
    let hook = listen(&bed).await;
    bed.bed.set_secret("webhook_secret", "rotated-secret").unwrap();
    let id = bed.customer_ids[2];
    let (status, body) = post(&hook, &event("customer", id), WEBHOOK_SECRET, bed.clock.now_secs()).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(&hook, &event("customer", id), "rotated-secret", bed.clock.now_secs()).await;
    assert_eq!(status, 401, "{body}");
    let reloaded = listen(&bed).await;
    let (status, body) = post(&reloaded, &event("customer", id), "rotated-secret", bed.clock.now_secs()).await;
    assert_eq!(status, 202, "{body}");
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
    // now - t overflows: it must not wrap into the window.
    let (status, body) = post(&hook, &event("customer", id), WEBHOOK_SECRET, now + i64::MIN).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("replay"), "{body}");
    let big = format!(r#"{{"recordType":"customer","id":"{id}","pad":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(post(&hook, &big, WEBHOOK_SECRET, now).await.0, 413);
    let (status, body) = post(&hook, r#"{"recordType":"salesorder","id":"1"}"#, WEBHOOK_SECRET, now).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("salesorder"), "{body}");
    assert_eq!(post(&hook, "{not json", WEBHOOK_SECRET, now).await.0, 400);
    // A kind this tenant's mapping does not sync: no run would apply it.
    let customers_only = netsuite_salesforce::mapping::DEFAULT_MAPPING.split("\n[contact]").next().unwrap();
    bed.tenant.set_override("mapping_toml", customers_only);
    let (status, body) = post(&hook, &event("vendor", 7), WEBHOOK_SECRET, now).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("no [vendor] section") && body.contains("not queued"), "{body}");
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
    // Twenty deliveries, each signed anew (a replay of one is refused).
    for i in 0..20 {
        assert_eq!(post(&hook, &event("customer", id), WEBHOOK_SECRET, now - i).await.0, 202);
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
    // It waited for the run to end: no run was started to find it busy.
    let conn = bed.tenant.database.connect().unwrap();
    let busy: i64 = conn
        .query_row("SELECT COUNT(*) FROM runs WHERE mode = 'events' AND status <> 'succeeded'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_an_event_wrote_before_the_first_sync_follows_a_mapping_changed_after_it() {
    let bed = bed(50).start().await;
    let hook = listen(&bed).await;
    // A Net 30 customer, named by an event before any scheduled run.
    let (id, _) = bed.netsuite.id_pairs("SELECT id, terms FROM customer WHERE terms = 2").unwrap()[0];
    let runs = hook.applied_runs();
    assert_eq!(post(&hook, &event("customer", id), WEBHOOK_SECRET, bed.clock.now_secs()).await.0, 202);
    applied(&bed, &hook, runs).await;
    assert_eq!(bed.sf("Account", id).1["Payment_Terms__c"], "Net 30");

    bed.tenant.set_override("mapping_toml", &support::net30_mapping());
    succeeded(&bed.sync().await);
    assert_eq!(bed.sf("Account", id).1["Payment_Terms__c"], "NET-30");
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

fn seen_signatures(bed: &support::Bed) -> i64 {
    let conn = bed.tenant.database.connect().unwrap();
    conn.query_row("SELECT COUNT(*) FROM kv WHERE bucket = 'queues' AND key LIKE 'seen-event/%'", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_is_answered_without_work() {
    let bed = bed(30).start().await;
    succeeded(&bed.sync().await);
    let hook = listen(&bed).await;
    let id = bed.customer_ids[3];
    bed.netsuite.rename_customer_any(id, "Renamed Once").unwrap();
    let (writes, netsuite_calls, runs) = (bed.salesforce.writes(), bed.netsuite.requests(), hook.applied_runs());

    // The same signed event, a hundred times within the tolerance.
    let now = bed.clock.now_secs();
    let body = event("customer", id);
    let (status, answer) = post(&hook, &body, WEBHOOK_SECRET, now).await;
    assert_eq!(status, 202, "{answer}");
    for _ in 1..100 {
        let (status, answer) = post(&hook, &body, WEBHOOK_SECRET, now).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains(r#""duplicate":true"#), "{answer}");
    }
    applied(&bed, &hook, runs).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.applied_runs(), runs + 1, "one run for a hundred copies");
    let one_run = bed.netsuite.requests() - netsuite_calls;
    assert!((1..=3).contains(&one_run), "one run's NetSuite calls (token, read by id), not {one_run}");
    assert_eq!(bed.salesforce.writes(), writes + 1);
    assert_eq!(bed.sf("Account", id).1["Name"], "Renamed Once");

    // Twenty copies of one new event at the same instant: accepted once.
    let later = now + 1;
    let copies: Vec<_> = (0..20)
        .map(|_| {
            let (hook, body) = (hook.clone(), body.clone());
            tokio::spawn(async move { post(&hook, &body, WEBHOOK_SECRET, later).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for copy in copies {
        statuses.push(copy.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 19, "{statuses:?}");
    assert_eq!(seen_signatures(&bed), 2, "one remembered signature per accepted event");
}

/// A listener with short limits, for clients that trickle or hold on.
async fn listen_with(bed: &support::Bed, max_connections: usize) -> (Webhook, String) {
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        max_connections,
    };
    let hook = host_harness::webhook::serve_with(bed.tenant.clone(), runtime(), "127.0.0.1:0".parse().unwrap(), limits)
        .await
        .unwrap();
    let addr = hook.url.trim_start_matches("http://").to_string();
    (hook, addr)
}

/// Sends `head`, then `drip` one byte at a time every 50 ms, forever, and
/// returns how long the server kept the connection and what it answered.
async fn held(addr: &str, head: &[u8], drip: &[u8]) -> (Duration, String) {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head).await.unwrap();
    let drip = drip.to_vec();
    let dripping = tokio::spawn(async move {
        for byte in drip.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        // EOF or a reset: closed either way.
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    dripping.abort();
    assert!(closed.is_ok(), "the listener held a trickling client for 10 s");
    (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_endless_bodies_are_cut_off_and_connections_are_capped() {
    let bed = bed(1).start().await;
    let (_hook, addr) = listen_with(&bed, 2).await;

    // Headers one byte at a time: closed at the header read timeout.
    let (took, _) = held(&addr, b"POST /netsuite/events HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"abcdefgh").await;
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "slow headers held {took:?}");

    // A chunked body that never ends: 408 at the body read timeout, then closed.
    let head = "POST /netsuite/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                X-Connector-Signature: t=1,v1=00\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (took, answer) = held(&addr, head.as_bytes(), b"1\r\n{\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "endless body held {took:?}");

    // Two connections that send nothing fill the cap: a third client is
    // served only once the header timeout has closed them.
    let idle: Vec<_> = [0, 1].map(|_| tokio::net::TcpStream::connect(addr.clone())).into_iter().collect();
    let mut held_open = Vec::new();
    for c in idle {
        held_open.push(c.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let (status, _) = post_unsigned(&addr).await;
    assert_eq!(status, 401);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(350), "served at once beside two held connections: {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    drop(held_open);
    assert_eq!(post_unsigned(&addr).await.0, 401, "served again once the cap has room");
}

/// An unsigned event over a fresh connection: the listener answers 401.
async fn post_unsigned(addr: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{EVENTS_PATH}"))
        .header("Content-Type", "application/json")
        .body(event("customer", 1))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `POST /sync` as a Salesforce Flow (or cron) would call it.
async fn post_sync(hook: &Webhook, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().post(format!("{}{}", hook.url, host_harness::webhook::SYNC_PATH));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_sync_runs_an_incremental_sync_for_a_caller_holding_the_token() {
    let bed = bed(5).start().await;
    let hook = listen(&bed).await;
    let (status, body) = post_sync(&hook, Some("anything")).await;
    assert_eq!(status, 404, "off without a sync_token: {body}");
    assert_eq!(bed.salesforce.count("Account"), 0);

    bed.tenant.set_override("sync_token", "tok-3f9c-81d2");
    for wrong in [None, Some(""), Some("tok-3f9c-81d"), Some("tok-3f9c-81d2x")] {
        let (status, body) = post_sync(&hook, wrong).await;
        assert_eq!(status, 401, "{wrong:?}: {body}");
    }
    assert_eq!(bed.salesforce.count("Account"), 0, "no run without the token");

    let (status, report) = post_sync(&hook, Some("tok-3f9c-81d2")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["mode"], "incremental");
    assert_eq!(bed.salesforce.count("Account"), 5);

    // Stopped by NetSuite's rate limit: no failure, the next run resumes.
    bed.tenant.set_override("http_max_retries", "1");
    bed.netsuite.fail_next(&[simulators::netsuite::ScriptedFailure::TooManyRequests; 4]);
    let (status, report) = post_sync(&hook, Some("tok-3f9c-81d2")).await;
    assert_eq!((status, &report["status"]), (503, &serde_json::json!("stopped")), "{report}");
}

/// A caller of `POST /sync` that hangs up before the run ends (a Flow's
/// callout timing out) does not stop it: the run goes on to the end, is
/// recorded as it ended, and its lease is free for the next run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_sync_whose_caller_hangs_up_runs_to_the_end() {
    let bed = bed(50).start().await;
    bed.tenant.set_override("sync_token", "tok-3f9c-81d2");
    bed.salesforce
        .set_faults(simulators::salesforce::Faults { latency: Duration::from_millis(150), ..Default::default() });
    let hook = listen(&bed).await;
    let hung_up = reqwest::Client::new()
        .post(format!("{}{}", hook.url, host_harness::webhook::SYNC_PATH))
        .header("Authorization", "Bearer tok-3f9c-81d2")
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(hung_up.is_err_and(|e| e.is_timeout()), "the caller gave up first");
    let conn = bed.tenant.database.connect().unwrap();
    let last = || -> (String, Option<String>) {
        conn.query_row("SELECT status, error FROM runs ORDER BY rowid DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while last().0 == "running" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last(), ("succeeded".to_string(), None));
    assert_eq!(bed.salesforce.count("Account"), 50);
    bed.salesforce.set_faults(simulators::salesforce::Faults::default());
    succeeded(&bed.sync_all().await);
}

/// The single-tenant listener keeps the tenant's `events_per_minute` as the
/// tenants' route does: counted once the signature matches, more answered
/// 429 with Retry-After; forged requests take none of the allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_tenant_listener_keeps_the_events_per_minute_limit() {
    let bed = bed(10).start().await;
    let mut config = bed.tenant.config.clone();
    config.events_per_minute = 3;
    let tenant = std::sync::Arc::new(
        host_harness::scheduler::Tenant::open(config, bed.tenant.cipher.clone(), bed.tenant.clock.clone()).unwrap(),
    );
    let hook = host_harness::webhook::serve(tenant, runtime(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let now = bed.clock.now_secs();
    let forged = post(&hook, &event("customer", bed.customer_ids[0]), "not-the-secret", now).await;
    assert_eq!(forged.0, 401, "{forged:?}");
    let mut statuses = Vec::new();
    for id in &bed.customer_ids[..5] {
        statuses.push(post(&hook, &event("customer", *id), WEBHOOK_SECRET, now).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|(s, _)| *s).collect();
    assert_eq!(codes, vec![202, 202, 202, 429, 429], "{statuses:?}");
    assert!(statuses[3].1.contains("events_per_minute"), "{:?}", statuses[3]);
}

/// With every pooled instance taken (one, held by a slow run), a change
/// event waits for it instead of failing (it was answered 500 and lost);
/// a forged one does not wait, as it needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_while_every_instance_is_busy_waits_for_one() {
    static ONE_SLOT: std::sync::OnceLock<host_harness::host::Runtime> = std::sync::OnceLock::new();
    let runtime = ONE_SLOT.get_or_init(|| {
        host_harness::host::Runtime::load_with(support::component_path(), Some(1)).expect("a pooled runtime")
    });
    let bed = bed(3000).setting("netsuite_page_size", "100").start().await;
    let hook = host_harness::webhook::serve(bed.tenant.clone(), runtime, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    bed.netsuite.set_latency(Duration::from_millis(30));
    let scheduled = {
        let tenant = bed.tenant.clone();
        tokio::spawn(async move { tenant.sync(runtime, host_harness::host::SyncMode::Incremental, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!scheduled.is_finished(), "the run holds the only instance");
    let id = bed.customer_ids[2999];
    // A forged event is refused on the host, without an instance: at once.
    let (status, body) = post(&hook, &event("customer", id), "not-the-secret", bed.clock.now_secs()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature does not match"), "{body}");
    assert!(!scheduled.is_finished(), "answered while the run still held the only instance");
    bed.netsuite.rename_customer_any(id, "Edited While Full").unwrap();
    let runs = hook.applied_runs();
    let (status, body) = post(&hook, &event("customer", id), WEBHOOK_SECRET, bed.clock.now_secs()).await;
    assert_eq!(status, 202, "{body}");
    succeeded(&scheduled.await.unwrap().unwrap());
    applied(&bed, &hook, runs).await;
    assert_eq!(bed.sf("Account", id).1["Name"], "Edited While Full");
}

/// Events accepted before the process stopped (queued, not applied) are
/// applied once the listener starts again, not at the next scheduled run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_before_a_restart_are_applied_when_the_listener_starts() {
    let bed = bed(5).start().await;
    succeeded(&bed.sync().await);
    let id = bed.customer_ids[3];
    bed.netsuite.rename_customer_any(id, "Renamed Before The Crash").unwrap();
    bed.queue_events(&[("customer", id, "edit")]);
    let hook = listen(&bed).await;
    applied(&bed, &hook, 0).await;
    assert_eq!(bed.sf("Account", id).1["Name"], "Renamed Before The Crash");
}

/// An event for a record Salesforce already holds as NetSuite has it is
/// counted and audited unchanged, as a scheduled run's read of it would be:
/// every applied event leaves a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_unchanged_record_is_audited_unchanged() {
    let bed = bed(4).start().await;
    succeeded(&bed.sync().await);
    let id = bed.customer_ids[1];
    bed.queue_events(&[("customer", id, "edit")]);
    let writes = bed.salesforce.writes();
    let report = bed.bed.sync_kinds(runtime(), host_harness::host::SyncMode::Events, &[]).await.unwrap();
    succeeded(&report);
    let counts = report.counts("customer");
    assert_eq!((counts.read, counts.unchanged, counts.updated), (1, 1, 0), "{counts:?}");
    assert_eq!(bed.salesforce.writes(), writes, "nothing written");
    let rows = host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &report.run_id).unwrap();
    assert!(rows.len() == 1 && rows[0].action == "skip-unchanged" && rows[0].netsuite_id == id.to_string(), "{rows:?}");
    assert_eq!(queued_events(&bed), 0);
}

/// Queues `event`, applies it in an events run that writes nothing to
/// Salesforce, and returns that run's one audit row (as a list).
async fn one_event_applied_writing_nothing(
    bed: &support::Bed,
    event: (&str, i64, &str),
) -> Vec<host_harness::audit::AuditRow> {
    bed.queue_events(&[event]);
    let writes = bed.salesforce.writes();
    let report = bed.bed.sync_kinds(runtime(), host_harness::host::SyncMode::Events, &[]).await.unwrap();
    succeeded(&report);
    assert_eq!(bed.salesforce.writes(), writes, "nothing written");
    let rows = host_harness::audit::for_run(&bed.tenant.database.connect().unwrap(), "demo", &report.run_id).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows
}

/// An event for a record NetSuite does not have and Salesforce never got
/// (deleted before any run saw it, or an id that never existed), or whose
/// deletion a run applied already, leaves a row that says there was nothing
/// to do, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_a_record_neither_system_has_leaves_a_row() {
    let bed = bed(4).start().await;
    succeeded(&bed.sync().await);
    let missing = bed.customer_ids.iter().max().unwrap() + 1000;
    let rows = one_event_applied_writing_nothing(&bed, ("customer", missing, "create")).await;
    assert_eq!((rows[0].netsuite_id.as_str(), rows[0].outcome.as_str()), (missing.to_string().as_str(), "unchanged"));
    assert!(rows[0].transformations.contains("nothing to do"), "{rows:?}");
    assert_eq!(queued_events(&bed), 0);

    // Deleted in NetSuite and flagged in Salesforce by a run: a late event
    // for it leaves a row too, naming the Salesforce record.
    let deleted = bed.customer_ids[1];
    bed.netsuite.delete_record("customer", deleted).unwrap();
    succeeded(&bed.sync().await);
    let (sf_id, flagged) = bed.sf("Account", deleted);
    assert_eq!(flagged["NetSuite_Deleted__c"], true);
    let rows = one_event_applied_writing_nothing(&bed, ("customer", deleted, "edit")).await;
    assert_eq!(rows[0].salesforce_id.as_deref(), Some(sf_id.as_str()));
    assert!(rows[0].transformations.contains("an earlier run applied its deletion"), "{rows:?}");
    assert_eq!(queued_events(&bed), 0);
}

/// Runs leave a slot to event checks: of two slots, one tenant's run takes
/// the one runs may have and another's waits for it; an event is still
/// checked and queued at once, not after a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_does_not_queue_behind_runs() {
    static TWO_SLOTS: std::sync::OnceLock<host_harness::host::Runtime> = std::sync::OnceLock::new();
    let runtime = TWO_SLOTS.get_or_init(|| {
        host_harness::host::Runtime::load_with(support::component_path(), Some(2)).expect("a pooled runtime")
    });
    let (a, b) = (
        bed(3000).setting("netsuite_page_size", "100").start().await,
        bed(3000).setting("netsuite_page_size", "100").start().await,
    );
    let hook = host_harness::webhook::serve(a.tenant.clone(), runtime, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let spawn_run = |bed: &support::Bed| {
        bed.netsuite.set_latency(Duration::from_millis(30));
        let tenant = bed.tenant.clone();
        tokio::spawn(async move { tenant.sync(runtime, host_harness::host::SyncMode::Incremental, &[]).await })
    };
    let runs = [spawn_run(&a), spawn_run(&b)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a.customer_ids[10];
    let (status, body) = post(&hook, &event("customer", id), WEBHOOK_SECRET, a.clock.now_secs()).await;
    assert_eq!(status, 202, "{body}");
    assert!(runs.iter().all(|r| !r.is_finished()), "answered while both runs went on");
    for run in runs {
        succeeded(&run.await.unwrap().unwrap());
    }
}
