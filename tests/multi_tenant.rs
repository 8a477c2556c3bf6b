//! `connector serve --tenants`: many tenants in one process, each with its
//! own simulators, secrets, database, limits and schedule; none can reach
//! another's data, and one that traps does not stop the others.

mod support;

use host_harness::host::Runtime;
use host_harness::serve::Server;
use host_harness::webhook::ListenerLimits;
use netsuite_salesforce::events::sign;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use support::{Bed, bed, component_path, runtime};

const TENANTS: usize = 20;

/// The runtime `serve --tenants` uses: instances from the pooling allocator,
/// fewer slots than the runs below could want at once.
fn pooled_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::load_with(component_path(), Some(32)).expect("loading the pooled runtime"))
}

/// Tenant `i`'s config file in `dir`: the testbed's config under its own
/// name, with a top-level `key = value` line set by `top` (replaced, or
/// added first) and `tail` appended.
fn write_tenant(dir: &Path, i: usize, bed: &Bed, top: Option<(&str, &str)>, tail: &str) -> PathBuf {
    let scratch = dir.join(format!(".t{i}.scratch"));
    bed.write_config(&scratch).unwrap();
    let text = std::fs::read_to_string(&scratch).unwrap();
    std::fs::remove_file(&scratch).unwrap();
    let mut text = text.replacen("tenant = \"demo\"", &format!("tenant = \"t{i}\""), 1);
    if let Some((key, value)) = top {
        match text.lines().find(|l| l.starts_with(&format!("{key} = "))) {
            Some(line) => text = text.replacen(line, &format!("{key} = {value}"), 1),
            None => text = format!("{key} = {value}\n{text}"),
        }
    }
    let file = dir.join(format!("t{i}.toml"));
    std::fs::write(&file, format!("{text}\n{tail}")).unwrap();
    file
}

/// `bed`'s config as a `[[tenant]]` table named `name`.
fn tenant_table(bed: &Bed, name: &str) -> toml::Table {
    let mut table: toml::Table = toml::from_str(&toml::to_string(&bed.tenant.config).unwrap()).unwrap();
    table.remove("tenant");
    table.insert("name".into(), toml::Value::String(name.into()));
    table
}

fn write_tables(file: &Path, tables: Vec<toml::Table>) {
    let tenants = toml::Value::Array(tables.into_iter().map(toml::Value::Table).collect());
    std::fs::write(file, toml::to_string(&toml::Table::from_iter([("tenant".to_string(), tenants)])).unwrap()).unwrap();
}

/// The multi-tenant listener for `server` on a free loopback port.
async fn listen(server: &std::sync::Arc<Server>) -> host_harness::webhook::Webhook {
    host_harness::webhook::serve_tenants(server.directory(), "127.0.0.1:0".parse().unwrap(), ListenerLimits::default())
        .await
        .unwrap()
}

async fn post(url: &str, bearer: Option<&str>, signature: Option<String>, body: &str) -> (u16, String) {
    let mut request =
        reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_string());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(signature) = signature {
        request = request.header("x-connector-signature", signature);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_tenants_sync_at_once_each_with_exactly_its_own_data() {
    let tenants_dir = tempfile::tempdir().unwrap();
    let mut beds = Vec::new();
    for i in 0..TENANTS {
        let bed = bed(30 + i as u64).start().await;
        bed.set_secret("sync_token", &format!("token-{i}")).unwrap();
        bed.set_secret("webhook_secret", &format!("whsec-{i}")).unwrap();
        // Tenant 0 gets a memory cap its component cannot run in, tenant 1
        // a CPU budget it spends before its first write.
        let top = match i {
            0 => Some(("max_memory_mb", "1")),
            1 => Some(("max_cpu_ms", "1")),
            _ => None,
        };
        write_tenant(tenants_dir.path(), i, &bed, top, "");
        beds.push(bed);
    }

    let server = Server::new(tenants_dir.path().to_path_buf(), tokio::task::block_in_place(pooled_runtime));
    let loaded = server.reload();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert_eq!(loaded.added.len(), TENANTS);
    let hook = listen(&server).await;

    // Tenant 2's org sends its API calls to tenant 3's org: the host refuses.
    beds[2].salesforce.send_api_calls_to(beds[3].salesforce.base_url());

    // Every tenant's sync at once, each with its own token.
    let mut runs = Vec::new();
    for i in 0..TENANTS {
        let url = format!("{}/tenants/t{i}/sync", hook.url);
        runs.push(tokio::spawn(async move { post(&url, Some(&format!("token-{i}")), None, "").await }));
    }
    for (i, run) in runs.into_iter().enumerate() {
        let (status, body) = run.await.unwrap();
        let report: Value = serde_json::from_str(&body).unwrap();
        if i == 0 {
            assert_eq!(status, 502, "{body}");
            let error = report["error"].as_str().unwrap();
            assert!(error.contains("max_memory_mb"), "the trap names the limit and its setting: {error}");
            assert_eq!(beds[0].salesforce.count("Account"), 0);
            continue;
        }
        if i == 1 {
            assert_eq!(status, 502, "{body}");
            let error = report["error"].as_str().unwrap();
            assert!(error.contains("CPU budget of 1 ms") && error.contains("max_cpu_ms"), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
            assert_eq!(beds[1].salesforce.count("Account"), 0);
            continue;
        }
        if i == 2 {
            assert_eq!(status, 502, "{body}");
            let error = report["error"].as_str().unwrap();
            let other = beds[3].salesforce.base_url().trim_start_matches("http://");
            assert!(error.contains(&format!("did not allow a request to {other}")), "{error}");
            assert_eq!(beds[2].salesforce.count("Account"), 0);
            continue;
        }
        assert_eq!(status, 200, "tenant t{i}: {body}");
        assert_eq!(report["tenant"], format!("t{i}"));
        assert_eq!(report["objects"]["customer"]["created"], 30 + i as u64, "{body}");
        // Exactly its own data: its org holds its customers, no one else's.
        let bed = &beds[i];
        assert_eq!(bed.salesforce.count("Account"), 30 + i as u64);
        for &id in bed.customer_ids.iter().step_by(7) {
            bed.sf("Account", id);
        }
        // Its database holds its rows only.
        let conn = bed.tenant.database.connect().unwrap();
        let others: i64 =
            conn.query_row("SELECT COUNT(*) FROM audit WHERE tenant <> ?1", [format!("t{i}")], |r| r.get(0)).unwrap();
        assert_eq!(others, 0, "tenant t{i}'s audit holds another tenant's rows");
        let own: i64 =
            conn.query_row("SELECT COUNT(*) FROM audit WHERE tenant = ?1", [format!("t{i}")], |r| r.get(0)).unwrap();
        assert_eq!(own, 30 + i as i64);
    }

    // The process's metrics count each tenant's run and records (t3: 33 customers).
    let response = reqwest::get(format!("{}/metrics", hook.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    for line in [
        r#"connector_runs_total{tenant="t3",mode="incremental",outcome="succeeded"} 1"#,
        r#"connector_runs_total{tenant="t0",mode="incremental",outcome="failed"} 1"#,
        r#"connector_records_total{tenant="t3",kind="customer",outcome="created"} 33"#,
        r#"connector_run_duration_seconds_count{tenant="t3",mode="incremental"} 1"#,
        r#"connector_queue_depth{tenant="t3",kind="customer",queue="failed_writes"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
    assert!(metrics.contains(r#"connector_api_calls_total{tenant="t3",system="salesforce"}"#), "{metrics}");
    assert!(metrics.contains(r#"connector_guest_cpu_seconds_total{tenant="t3"}"#), "{metrics}");

    // Another tenant's token, no token, an unknown tenant: one answer, the same bytes.
    let wrong_token = post(&format!("{}/tenants/t1/sync", hook.url), Some("token-2"), None, "").await;
    let unknown = post(&format!("{}/tenants/nobody/sync", hook.url), Some("token-2"), None, "").await;
    let none = post(&format!("{}/tenants/t1/sync", hook.url), None, None, "").await;
    assert_eq!(wrong_token.0, 404);
    assert_eq!(wrong_token, unknown);
    assert_eq!(wrong_token, none);

    // Events: signed with t5's secret they reach t5 only (not t1: its CPU
    // budget of 1 ms may not cover checking an event on a busy machine).
    let body = format!(r#"{{"recordType":"customer","id":"{}","type":"edit"}}"#, beds[5].customer_ids[0]);
    let t5_signature = || Some(sign(b"whsec-5", now(), body.as_bytes()));
    let (status, answer) = post(&format!("{}/tenants/t6/netsuite/events", hook.url), None, t5_signature(), &body).await;
    assert_eq!((status, answer.as_str()), (404, unknown.1.as_str()), "t5's signature opens nothing of t6");
    let (status, answer) = post(&format!("{}/tenants/t5/netsuite/events", hook.url), None, t5_signature(), &body).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_files_are_picked_up_scheduled_rate_limited_and_removed_without_a_restart() {
    let tenants_dir = tempfile::tempdir().unwrap();
    let a = bed(40).start().await;
    a.set_secret("webhook_secret", "whsec-a").unwrap();
    write_tenant(tenants_dir.path(), 1, &a, Some(("events_per_minute", "3")), "");
    let server = Server::new(tenants_dir.path().to_path_buf(), runtime());
    let first = server.reload();
    assert_eq!(first.added, vec!["t1"], "{first:?}");
    assert_eq!(server.reload(), Default::default(), "nothing changed, nothing restarted");

    // A second tenant appears with a schedule: it runs (its first start is
    // due at once, never having run) without anyone calling it.
    let b = bed(25).start().await;
    write_tenant(tenants_dir.path(), 2, &b, None, "[schedule]\nevery_secs = 3600\njitter_secs = 0\n");
    let reload = server.reload();
    assert_eq!(reload.added, vec!["t2"], "{reload:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while b.salesforce.count("Account") < 25 {
        assert!(tokio::time::Instant::now() < deadline, "the scheduled run did not come");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.salesforce.count("Account"), 0, "tenant t1 has no schedule and was not run");

    // A broken edit keeps the running tenant as it was and says why.
    let file = tenants_dir.path().join("t2.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("every_secs = 3600", "cron = \"every hour\"")).unwrap();
    let reload = server.reload();
    assert!(reload.errors.iter().any(|e| e.contains("\"every hour\" is not a cron expression")), "{reload:?}");
    assert!(reload.removed.is_empty() && server.tenants().len() == 2, "{reload:?}");
    std::fs::write(&file, good.replace("every_secs = 3600", "cron = \"0 3 * * *\"")).unwrap();
    assert_eq!(server.reload().changed, vec!["t2"]);

    // Per-tenant rate limit, after the signature check and the signing
    // time's: a captured event sent again a day later takes no allowance.
    let hook = listen(&server).await;
    let url = format!("{}/tenants/t1/netsuite/events", hook.url);
    let stale = format!(r#"{{"recordType":"customer","id":"{}","type":"edit"}}"#, a.customer_ids[0]);
    for _ in 0..5 {
        let (status, body) = post(&url, None, Some(sign(b"whsec-a", now() - 86_400, stale.as_bytes())), &stale).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("s ago"), "{body}");
    }
    let mut statuses = Vec::new();
    for id in &a.customer_ids[..5] {
        let body = format!(r#"{{"recordType":"customer","id":"{id}","type":"edit"}}"#);
        statuses.push(post(&url, None, Some(sign(b"whsec-a", now(), body.as_bytes())), &body).await.0);
    }
    assert_eq!(statuses, vec![202, 202, 202, 429, 429]);

    // Removing the file removes the tenant.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(server.reload().removed, vec!["t2"]);
    let (status, _) = post(&format!("{}/tenants/t2/sync", hook.url), Some("x"), None, "").await;
    assert_eq!(status, 404);

    // One file of [[tenant]] tables: each table is a tenant; an edit of
    // one table reloads that tenant only, a table taken out removes it.
    let (c, d) = (bed(15).start().await, bed(16).start().await);
    c.set_secret("sync_token", "token-c").unwrap();
    let group = tenants_dir.path().join("group.toml");
    write_tables(&group, vec![tenant_table(&c, "gc"), tenant_table(&d, "gd")]);
    assert_eq!(server.reload().added, vec!["gc", "gd"]);
    let (status, body) = post(&format!("{}/tenants/gc/sync", hook.url), Some("token-c"), None, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((c.salesforce.count("Account"), d.salesforce.count("Account")), (15, 0));
    let mut edited = tenant_table(&d, "gd");
    edited.insert("max_cpu_ms".into(), toml::Value::Integer(60_000));
    write_tables(&group, vec![tenant_table(&c, "gc"), edited]);
    assert_eq!(server.reload().changed, vec!["gd"]);
    write_tables(&group, vec![tenant_table(&c, "gc")]);
    assert_eq!(server.reload().removed, vec!["gd"]);
    // A table that cannot load keeps the file's tenants as they were.
    std::fs::write(&group, "[[tenant]]\nname = \"gc\"\nmax_memory_mb = \"lots\"\n").unwrap();
    let reload = server.reload();
    assert!(
        reload
            .errors
            .iter()
            .any(|e| e.contains("[[tenant]] `gc` is not valid") && e.matches("group.toml").count() == 1),
        "the file named once: {reload:?}"
    );
    assert!(reload.removed.is_empty(), "{reload:?}");

    // Shutting down: nothing new starts, whatever the directory holds now.
    server.shutdown();
    write_tenant(tenants_dir.path(), 5, &a, None, "[schedule]\nevery_secs = 1\n");
    assert_eq!(server.reload(), Default::default(), "a closing server loads no tenant");
}

/// A tenant's mapping file kept next to its config in the tenants
/// directory is not taken for a tenant file; once it stops loading (a typo),
/// the reload says so and the tenant keeps running on its last good mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_file_that_stops_loading_keeps_its_tenant_on_the_last_good_one() {
    let tenants_dir = tempfile::tempdir().unwrap();
    let a = bed(10).start().await;
    let mapping = tenants_dir.path().join("t1-mapping.toml");
    let good = include_str!("../src/mapping/default.toml");
    std::fs::write(&mapping, good).unwrap();
    write_tenant(tenants_dir.path(), 1, &a, Some(("mapping_file", "\"t1-mapping.toml\"")), "");
    let server = Server::new(tenants_dir.path().to_path_buf(), runtime());
    let first = server.reload();
    assert_eq!(first.added, vec!["t1"], "{first:?}");
    assert!(first.errors.is_empty(), "the mapping file is no tenant file: {first:?}");

    std::fs::write(&mapping, format!("{good}\ngarbage = [\n")).unwrap();
    let reload = server.reload();
    assert!(reload.errors.iter().any(|e| e.contains("t1-mapping.toml") && e.contains("is not valid")), "{reload:?}");
    assert!(reload.changed.is_empty() && reload.removed.is_empty(), "{reload:?}");
    let tenant = server.tenants().pop().expect("t1 still hosted");
    let report = tenant.sync(runtime(), host_harness::host::SyncMode::Incremental, &[]).await.unwrap();
    support::succeeded(&report);
    assert_eq!(a.salesforce.count("Account"), 10);

    // Put back as it was: the tenant already runs on that.
    std::fs::write(&mapping, good).unwrap();
    assert_eq!(server.reload(), Default::default());
    std::fs::write(
        &mapping,
        format!(
            "{good}
# edited
"
        ),
    )
    .unwrap();
    assert_eq!(server.reload().changed, vec!["t1"]);

    // The tenant's own file broken: its mapping file is not reported as a
    // tenant file that does not load.
    let file = tenants_dir.path().join("t1.toml");
    std::fs::write(&file, format!("{}\noops = [\n", std::fs::read_to_string(&file).unwrap())).unwrap();
    let reload = server.reload();
    assert!(reload.errors.iter().any(|e| e.contains("t1.toml")), "{reload:?}");
    assert!(!reload.errors.iter().any(|e| e.contains("t1-mapping.toml")), "{reload:?}");
    assert!(reload.removed.is_empty(), "{reload:?}");
}

/// A second file naming a hosted tenant (a draft copy of its file, sorting
/// first) takes nothing over: the file it runs from keeps it. A file renamed
/// unchanged keeps its tenant, and a typo in it afterwards too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_naming_a_hosted_tenant_and_a_typo_in_a_renamed_file_leave_the_tenant_as_it_runs() {
    let tenants_dir = tempfile::tempdir().unwrap();
    let (a, b) = (bed(3).start().await, bed(4).start().await);
    let file = write_tenant(tenants_dir.path(), 1, &a, None, "");
    let server = Server::new(tenants_dir.path().to_path_buf(), runtime());
    assert_eq!(server.reload().added, vec!["t1"]);
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = write_tenant(elsewhere.path(), 1, &b, None, "");
    let draft = tenants_dir.path().join("a-draft.toml");
    std::fs::copy(&copy, &draft).unwrap();
    let reload = server.reload();
    assert!(reload.added.is_empty() && reload.changed.is_empty() && reload.removed.is_empty(), "{reload:?}");
    assert!(
        reload.errors.iter().any(|e| e.starts_with(&format!("{}: tenant `t1` is already defined by", draft.display()))
            && e.contains("t1.toml, which keeps it")),
        "{reload:?}"
    );
    assert_eq!(server.tenants()[0].config.data_dir, a.tenant.config.data_dir, "still the hosted file's");
    // Nor while the hosted file does not load (a typo saved into it).
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{good}\noops = [\n")).unwrap();
    let reload = server.reload();
    assert!(reload.changed.is_empty() && reload.removed.is_empty(), "{reload:?}");
    assert!(reload.errors.iter().any(|e| e.contains("runs from") && e.contains("does not take it over")), "{reload:?}");
    assert_eq!(server.tenants()[0].config.data_dir, a.tenant.config.data_dir, "still the hosted file's");
    std::fs::write(&file, good).unwrap();
    std::fs::remove_file(&draft).unwrap();
    assert_eq!(server.reload(), Default::default());

    let renamed = tenants_dir.path().join("t1-prod.toml");
    std::fs::rename(&file, &renamed).unwrap();
    assert_eq!(server.reload(), Default::default(), "the same tenant, from another file");
    std::fs::write(&renamed, format!("{}\noops = [\n", std::fs::read_to_string(&renamed).unwrap())).unwrap();
    let reload = server.reload();
    assert!(reload.errors.iter().any(|e| e.contains("t1-prod.toml")), "{reload:?}");
    assert!(reload.removed.is_empty() && server.tenants().len() == 1, "{reload:?}");
}

/// A tenant of a `[[tenant]]` file is removed with its table even while
/// another table of that file is refused (its name kept by another file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_taken_out_of_a_file_whose_other_table_is_refused_removes_its_tenant() {
    let tenants_dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (bed(3).start().await, bed(4).start().await, bed(5).start().await);
    write_tables(&tenants_dir.path().join("a.toml"), vec![tenant_table(&a, "gb")]);
    let group = tenants_dir.path().join("group.toml");
    write_tables(&group, vec![tenant_table(&b, "ga"), tenant_table(&c, "gb")]);
    let server = Server::new(tenants_dir.path().to_path_buf(), runtime());
    let reload = server.reload();
    assert_eq!(reload.added, vec!["ga", "gb"], "{reload:?}");
    assert!(reload.errors.iter().any(|e| e.contains("tenant `gb` is already defined by")), "{reload:?}");
    write_tables(&group, vec![tenant_table(&c, "gb")]);
    let reload = server.reload();
    assert_eq!(reload.removed, vec!["ga"], "{reload:?}");
    assert_eq!(server.tenants().len(), 1);
}

/// Two tenants pointed at one data directory (two files without
/// `data_dir` side by side) would share a database and secrets: the second
/// is refused, named with the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_in_one_data_directory_are_refused() {
    let tenants_dir = tempfile::tempdir().unwrap();
    let (a, b) = (bed(3).start().await, bed(4).start().await);
    write_tenant(tenants_dir.path(), 1, &a, None, "");
    let shared = format!("{:?}", a.tenant.config.data_dir.display().to_string());
    write_tenant(tenants_dir.path(), 2, &b, Some(("data_dir", &shared)), "");
    let server = Server::new(tenants_dir.path().to_path_buf(), runtime());
    let reload = server.reload();
    assert_eq!(reload.added, vec!["t1"], "{reload:?}");
    assert!(
        reload.errors.iter().any(|e| e.contains("tenant `t2` keeps its data in") && e.contains("as tenant `t1`")),
        "{reload:?}"
    );

    // A tenant added into the data directory of one hosted already is the
    // one refused, whatever the names.
    let other_dir = tempfile::tempdir().unwrap();
    write_tenant(other_dir.path(), 2, &b, None, "");
    let server = Server::new(other_dir.path().to_path_buf(), runtime());
    assert_eq!(server.reload().added, vec!["t2"]);
    let shared = format!("{:?}", b.tenant.config.data_dir.display().to_string());
    write_tenant(other_dir.path(), 1, &a, Some(("data_dir", &shared)), "");
    let reload = server.reload();
    assert!(reload.added.is_empty() && reload.removed.is_empty(), "{reload:?}");
    assert!(reload.errors.iter().any(|e| e.contains("tenant `t1` keeps its data in")), "{reload:?}");
    assert_eq!(server.tenants().len(), 1);

    // So through a symbolic link to it.
    let link = other_dir.path().join("b-data");
    std::os::unix::fs::symlink(&b.tenant.config.data_dir, &link).unwrap();
    let linked = format!("{:?}", link.display().to_string());
    write_tenant(other_dir.path(), 1, &a, Some(("data_dir", &linked)), "");
    let reload = server.reload();
    assert!(reload.added.is_empty(), "{reload:?}");
    assert!(reload.errors.iter().any(|e| e.contains("tenant `t1` keeps its data in")), "{reload:?}");
}

/// An event waiting while a run holds its tenant's lease, when the tenant's
/// file is removed meanwhile: the old worker gives up once the run ends
/// instead of applying the event under the configuration that was removed
/// (it retried every 250 ms and applied it, a run row each time); the
/// event stays queued for the tenant's return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waiting_for_a_removed_tenant_is_not_applied_under_its_old_configuration() {
    use host_harness::host::{RecordKind, SyncMode};
    let tenants_dir = tempfile::tempdir().unwrap();
    let a = bed(3000).setting("netsuite_page_size", "100").start().await;
    a.set_secret("webhook_secret", "whsec-a").unwrap();
    let vendor = a.netsuite.seed_vendors(1, 5).unwrap()[0];
    let file = write_tenant(tenants_dir.path(), 1, &a, None, "");
    let server = Server::new(tenants_dir.path().to_path_buf(), runtime());
    assert_eq!(server.reload().added, vec!["t1"]);
    let hook = listen(&server).await;
    let tenant = server.tenants().pop().unwrap();
    a.netsuite.set_latency(Duration::from_millis(30));
    let long = {
        let tenant = tenant.clone();
        tokio::spawn(async move { tenant.sync(runtime(), SyncMode::Incremental, &[RecordKind::Customer]).await })
    };
    while tenant.running() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let url = format!("{}/tenants/t1/netsuite/events", hook.url);
    let body = format!(r#"{{"recordType":"vendor","id":"{vendor}","type":"edit"}}"#);
    assert_eq!(post(&url, None, Some(sign(b"whsec-a", now(), body.as_bytes())), &body).await.0, 202);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(server.reload().removed, vec!["t1"]);

    let report = long.await.unwrap().unwrap();
    assert_eq!(report.status, "succeeded", "{report:?}");
    a.netsuite.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.salesforce.find("Vendor__c", &vendor.to_string()).is_none(), "applied after the tenant was removed");
    let conn = a.tenant.database.connect().unwrap();
    let events_runs: i64 = conn.query_row("SELECT COUNT(*) FROM runs WHERE mode = 'events'", [], |r| r.get(0)).unwrap();
    assert_eq!(events_runs, 0, "no run was started to find the tenant busy");
    let queued: i64 = conn
        .query_row("SELECT COUNT(*) FROM kv WHERE bucket = 'queues' AND key LIKE 'event/%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 1, "the event waits for the tenant's return");
}
