//! The Spin build: every import is one Spin provides, and it runs end to end
//! in a test host that provides exactly Spin's services.

mod support;

use base64::Engine as _;
use host_harness::spin_host::{SpinHost, SwapSemantics};
use host_harness::testbed::WEBHOOK_SECRET;
use netsuite_salesforce::events::sign;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use support::{bed, component_path, spin_component_path};

/// An interface of the world `spin:up/platform` (vendored from spin-sdk in
/// spin/wit): its name without version, its version, and the items it has.
struct Offered {
    name: String,
    version: semver::Version,
    items: Vec<String>,
}

fn platform_imports() -> Vec<Offered> {
    let mut resolve = wit_parser::Resolve::default();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spin/wit");
    let (package, _) = resolve.push_dir(&dir).expect("Spin's WIT parses");
    let world = resolve.select_world(&[package], Some("platform")).expect("spin:up has a platform world");
    resolve.worlds[world]
        .imports
        .keys()
        .filter_map(|key| match key {
            wit_parser::WorldKey::Interface(id) => Some(*id),
            wit_parser::WorldKey::Name(_) => None,
        })
        .filter_map(|id| {
            let (name, version) = split(&resolve.id_of(id)?)?;
            let interface = &resolve.interfaces[id];
            let items = interface.functions.keys().chain(interface.types.keys()).cloned().collect();
            Some(Offered { name, version, items })
        })
        .collect()
}

fn split(name: &str) -> Option<(String, semver::Version)> {
    let (base, version) = name.split_once('@')?;
    Some((base.to_string(), semver::Version::parse(version).ok()?))
}

fn component_imports(wasm: &Path) -> Vec<(String, Vec<String>)> {
    host_harness::spin_host::component_imports(wasm).expect("the component loads")
}

/// Imports the platform does not satisfy. As when a host links a component,
/// an import matches an interface of the same name on the same 0.minor (or
/// major) line whatever the patch level, provided every item it uses is there.
fn unmet(imports: &[(String, Vec<String>)], platform: &[Offered]) -> Vec<String> {
    let mut missing = Vec::new();
    for (import, items) in imports {
        let Some((base, version)) = split(import) else {
            missing.push(import.clone());
            continue;
        };
        let line = |have: &semver::Version| {
            if version.major == 0 {
                have.major == 0 && have.minor == version.minor
            } else {
                have.major == version.major
            }
        };
        let candidates: Vec<&Offered> = platform.iter().filter(|o| o.name == base && line(&o.version)).collect();
        if candidates.is_empty() {
            missing.push(import.clone());
            continue;
        }
        let lacking: Vec<&String> = items.iter().filter(|i| !candidates.iter().any(|o| o.items.contains(i))).collect();
        if !lacking.is_empty() {
            missing.push(format!("{import} (lacks {lacking:?})"));
        }
    }
    missing
}

#[test]
fn every_import_of_the_spin_build_is_provided_by_spin() {
    let platform = platform_imports();
    assert!(platform.iter().any(|o| o.name == "fermyon:spin/key-value"));
    let imports = component_imports(spin_component_path());
    assert!(imports.iter().any(|(i, _)| i.starts_with("fermyon:spin/key-value")), "{imports:?}");
    let missing = unmet(&imports, &platform);
    assert!(missing.is_empty(), "the Spin build imports what Spin does not provide: {missing:?}");

    // The check bites: the harness build imports our own audit interface
    // (and key-value/config drafts Spin does not offer).
    let harness = component_imports(component_path());
    let missing = unmet(&harness, &platform);
    assert!(missing.iter().any(|m| m.starts_with("ml-connector:netsuite-salesforce/audit")), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_build_syncs_on_request_and_on_a_signed_event_and_ignores_a_forged_one() {
    let bed = bed(200).start().await;
    let mut variables: BTreeMap<String, String> = bed.tenant.sandbox().unwrap().config;
    let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
    variables.insert("credentials_key".into(), base64::engine::general_purpose::STANDARD.encode(key));
    variables.insert("sync_token".into(), "sync-token-for-tests".into());
    let host =
        tokio::task::block_in_place(|| SpinHost::load(spin_component_path(), variables, SwapSemantics::SpinSqlite))
            .unwrap();

    let refused = host.request("POST", "/sync", &[("authorization", "Bearer guess".into())], vec![]).await.unwrap();
    assert_eq!(refused.status, 401, "{}", refused.body);
    let sync = host
        .request("POST", "/sync", &[("authorization", "Bearer sync-token-for-tests".into())], vec![])
        .await
        .unwrap();
    assert_eq!(sync.status, 200, "{}", sync.body);
    let report: serde_json::Value = serde_json::from_str(&sync.body).unwrap();
    assert_eq!(report["objects"]["customer"]["created"], 200, "{report}");
    assert_eq!(bed.salesforce.count("Account"), 200);

    // The cached Salesforce session is sealed in Spin's key-value store.
    let sealed = host.kv.lock().unwrap().get("credentials/salesforce_session").cloned().expect("a cached session");
    assert!(!String::from_utf8_lossy(&sealed).contains("access_token"), "the session must not be stored in clear");

    let id = bed.customer_ids[11];
    bed.netsuite.rename_customer_any(id, "Renamed Under Spin").unwrap();
    let body = format!(r#"{{"recordType":"customer","id":"{id}","type":"edit"}}"#);
    let headers = |secret: &str| {
        vec![
            ("content-type", "application/json".to_string()),
            ("x-connector-signature", sign(secret.as_bytes(), bed.clock.now_secs(), body.as_bytes())),
        ]
    };
    let writes = bed.salesforce.writes();
    let forged = host.request("POST", "/netsuite/events", &headers("guess"), body.clone().into_bytes()).await.unwrap();
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert_eq!(bed.salesforce.writes(), writes, "a forged event changes nothing");

    let signed = host.request("POST", "/netsuite/events", &headers(WEBHOOK_SECRET), body.into_bytes()).await.unwrap();
    assert_eq!(signed.status, 202, "{}", signed.body);
    assert_eq!(bed.sf("Account", id).1["Name"], "Renamed Under Spin");
    assert_eq!(bed.salesforce.writes(), writes + 1);
    // Audit entries reach the component log and Spin's key-value store.
    let log = String::from_utf8_lossy(&host.log.contents()).into_owned();
    assert!(
        log.lines().any(|l| l.starts_with("audit {") && l.contains("Renamed Under Spin")),
        "component log: {log:.400}"
    );
    let id_text = id.to_string();
    let runs = audit_runs(&host);
    let event_run = runs.last().expect("the event's run is indexed");
    let chunk = host.kv.lock().unwrap().get(&format!("audit/{}/000000", event_run["run"].as_str().unwrap())).cloned();
    let entries: Vec<serde_json::Value> = String::from_utf8(chunk.expect("the event run's audit chunk"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        entries.iter().any(|e| e["netsuite_id"] == id_text.as_str() && e["action"] == "write-event"),
        "{entries:?}"
    );
    // Runs past the retention (30 days by default) are pruned when a run starts.
    let old_run = serde_json::json!({"run": "run-old", "at": 1_000, "chunks": 2});
    let mut index = runs.clone();
    index.insert(0, old_run);
    {
        let mut kv = host.kv.lock().unwrap();
        kv.insert("audit/index".into(), serde_json::to_vec(&index).unwrap());
        kv.insert("audit/run-old/000000".into(), b"{}".to_vec());
        kv.insert("audit/run-old/000001".into(), b"{}".to_vec());
    }
    bed.netsuite.rename_customer_any(id, "Renamed Again").unwrap();
    let sync = host
        .request("POST", "/sync", &[("authorization", "Bearer sync-token-for-tests".into())], vec![])
        .await
        .unwrap();
    assert_eq!(sync.status, 200, "{}", sync.body);
    let after = audit_runs(&host);
    assert_eq!(after.len(), runs.len() + 1, "{after:?}");
    assert!(after.iter().all(|r| r["run"] != "run-old"));
    assert!(host.kv.lock().unwrap().keys().all(|k| !k.starts_with("audit/run-old/")));
}

/// An event body past the events' limit is refused by the Spin build as it
/// arrives: announced too long, or read one byte past the limit, never
/// buffered whole (300 MB would trap the instance's 256 MB here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_build_refuses_an_oversized_event_without_buffering_it() {
    let bed = bed(1).start().await;
    let mut variables: BTreeMap<String, String> = bed.tenant.sandbox().unwrap().config;
    variables.insert("credentials_key".into(), base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let host =
        tokio::task::block_in_place(|| SpinHost::load(spin_component_path(), variables, SwapSemantics::SpinSqlite))
            .unwrap();
    let huge = vec![b' '; 300 << 20];
    let refused = host.request("POST", "/netsuite/events", &[], huge).await.unwrap();
    assert_eq!(refused.status, 413, "{}", refused.body);
    let announced = [("content-length", (10u64 << 30).to_string())];
    let refused = host.request("POST", "/netsuite/events", &announced, b"{}".to_vec()).await.unwrap();
    assert_eq!(refused.status, 413, "{}", refused.body);
    let unsigned = host.request("POST", "/netsuite/events", &[], b"{}".to_vec()).await.unwrap();
    assert_eq!(unsigned.status, 401, "a small body still reaches the check: {}", unsigned.body);
}

/// The Spin build's audit index: one entry per run, oldest first.
fn audit_runs(host: &SpinHost) -> Vec<serde_json::Value> {
    let index = host.kv.lock().unwrap().get("audit/index").cloned().expect("an audit index");
    serde_json::from_slice(&index).unwrap()
}

#[test]
fn spin_toml_declares_every_setting_with_its_secrecy() {
    let manifest: toml::Table = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spin.toml"))
        .unwrap()
        .parse()
        .expect("spin.toml is TOML");
    assert_eq!(manifest["spin_manifest_version"].as_integer(), Some(2));
    let app = manifest["variables"].as_table().unwrap();
    let component = &manifest["component"]["connector"];
    let passed = component["variables"].as_table().unwrap();
    for setting in netsuite_salesforce::settings::SETTINGS {
        let name = setting.name;
        let declared = app.get(name).unwrap_or_else(|| panic!("spin.toml lacks the variable {name}"));
        assert_eq!(declared.get("secret").and_then(|s| s.as_bool()).unwrap_or(false), setting.secret, "{name}: secret");
        assert!(declared.get("default").is_some() ^ declared.get("required").is_some(), "{name}: default xor required");
        if let Some(default) = declared.get("default") {
            assert!(!setting.required, "{name} is required by the connector but has a default in spin.toml");
            assert_eq!(default.as_str(), Some(setting.default.unwrap_or("")), "{name}: default as declared");
        }
        assert_eq!(passed[name].as_str(), Some(format!("{{{{ {name} }}}}").as_str()), "{name} reaches the component");
    }
    for name in app.keys() {
        assert!(
            netsuite_salesforce::settings::catalog::find(name).is_some(),
            "spin.toml declares `{name}`, not a setting"
        );
    }
    assert_eq!(
        component["source"].as_str(),
        Some("target/spin/wasm32-wasip2/release/netsuite_salesforce_spin.wasm"),
        "the manifest runs what the build command builds"
    );
    let hosts = component["allowed_outbound_hosts"].as_array().unwrap();
    assert!(hosts.iter().any(|h| h.as_str() == Some("{{ netsuite_base_url }}")));
}

/// The Spin build's lease as the shared store holds it, if the key exists.
fn stored_lease(host: &SpinHost) -> Option<serde_json::Value> {
    let bytes = host.kv.lock().unwrap().get("state/lease").cloned()?;
    Some(serde_json::from_slice(&bytes).expect("the lease is JSON"))
}

/// No run is left holding the lease: the key holds an expired lease or none.
fn no_live_lease(host: &SpinHost, after: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if let Some(lease) = stored_lease(host) {
        let expires_at = lease["expires_at"].as_i64().expect("a lease has an expiry");
        assert!(expires_at <= now, "{after}: a live lease was left behind: {lease}");
    }
}

/// Two replicas of the Spin build (two hosts, one shared key-value store
/// with the swap semantics of `store`) receiving `/sync`.
async fn replicas_sharing_one_store(store: SwapSemantics) {
    let bed = bed(3000).start().await;
    let mut variables: BTreeMap<String, String> = bed.tenant.sandbox().unwrap().config;
    variables.insert("credentials_key".into(), base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    variables.insert("sync_token".into(), "t".into());
    let one =
        Arc::new(tokio::task::block_in_place(|| SpinHost::load(spin_component_path(), variables, store)).unwrap());
    let two = Arc::new(one.replica());
    let call = |h: Arc<SpinHost>| async move {
        h.request("POST", "/sync", &[("authorization", "Bearer t".into())], vec![]).await.unwrap()
    };
    let swaps = || one.swaps.load(Ordering::SeqCst);

    // At the same moment, before any lease exists (write, settle, read back).
    let (a, b) = tokio::join!(tokio::spawn(call(one.clone())), tokio::spawn(call(two.clone())));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{store:?}: one replica runs, the other is told the tenant is busy");
    assert_eq!(bed.salesforce.writes(), 3000, "every record written once");
    no_live_lease(&one, "the first two runs");

    // One after another, alternating replicas: each run swaps the expired
    // lease the run before left, and gives it back expired.
    for (n, host) in [&two, &one, &two].into_iter().enumerate() {
        let before = swaps();
        let answer = call(host.clone()).await;
        assert_eq!(answer.status, 200, "{store:?}: sequential run {n}: {}", answer.body);
        assert_eq!(swaps(), before + 2, "{store:?}: one swap takes the lease, one gives it back");
        no_live_lease(&one, &format!("sequential run {n}"));
    }

    // At the same moment again, on the existing key: exactly one runs; the
    // other's swap, if it got that far, wrote nothing.
    let before = swaps();
    bed.netsuite.set_latency(std::time::Duration::from_millis(150)); // so the two runs overlap
    let (a, b) = tokio::join!(tokio::spawn(call(one.clone())), tokio::spawn(call(two.clone())));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{store:?}: {} / {}", a.body, b.body);
    let busy = if a.status == 409 { &a.body } else { &b.body };
    assert!(busy.contains("this tenant's lease"), "{busy}");
    assert_eq!(swaps(), before + 2, "{store:?}: only the running replica's swaps wrote");
    no_live_lease(&one, "the concurrent runs");
    assert_eq!(bed.salesforce.writes(), 3000, "nothing changed, nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_spins_default_sqlite_store_run_each_sync_once() {
    replicas_sharing_one_store(SwapSemantics::SpinSqlite).await;
}

/// Spin 4.0.2's Redis store answers cas-failed for every swap, applied or
/// not: the lease must not believe it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_spins_redis_store_run_each_sync_once() {
    replicas_sharing_one_store(SwapSemantics::SpinRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spin_build_writes_salesforce_vendor_edits_back_to_netsuite() {
    let bed = bed(0).setting("vendor_writeback", "true").start().await;
    let ids = bed.netsuite.seed_vendors(3, 7).unwrap();
    let mut variables: BTreeMap<String, String> = bed.tenant.sandbox().unwrap().config;
    variables.insert("credentials_key".into(), base64::engine::general_purpose::STANDARD.encode([5u8; 32]));
    variables.insert("sync_token".into(), "t".into());
    let host =
        tokio::task::block_in_place(|| SpinHost::load(spin_component_path(), variables, SwapSemantics::SpinSqlite))
            .unwrap();
    let sync = || async {
        let answer = host.request("POST", "/sync", &[("authorization", "Bearer t".into())], vec![]).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    };
    sync().await;
    assert_eq!(bed.salesforce.count("Vendor__c"), 3);

    bed.clock.advance(std::time::Duration::from_secs(1));
    let (sf_id, _) = bed.sf("Vendor__c", ids[1]);
    let edit = serde_json::json!({"Phone__c": "+15550177"});
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, edit.as_object().unwrap().clone());
    sync().await;
    assert_eq!(bed.netsuite.vendor_field(ids[1], "phone").unwrap().as_deref(), Some("+15550177"));
    let log = String::from_utf8_lossy(&host.log.contents()).into_owned();
    assert!(
        log.lines().any(|l| l.starts_with("audit {")
            && l.contains(r#""action":"netsuite-write""#)
            && l.contains(r#""direction":"salesforce-to-netsuite""#)),
        "component log: {log:.600}"
    );

    // No echo under Spin either.
    let (sf_writes, ns_writes) = (bed.salesforce.writes(), bed.netsuite.record_writes());
    for _ in 0..5 {
        bed.clock.advance(std::time::Duration::from_secs(7));
        sync().await;
    }
    assert_eq!((bed.salesforce.writes(), bed.netsuite.record_writes()), (sf_writes, ns_writes));
}
