//! Shared by every end-to-end test binary: one compiled component per
//! process, one signing key, and simulated installations on loopback.

#![allow(dead_code)]

use host_harness::host::{Runtime, SyncMode};
use host_harness::scheduler::RunReport;
use host_harness::testbed::{KeyPair, Signing, Testbed, TestbedOptions};
use simulators::salesforce::SalesforceSimConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The real .wasm: `CONNECTOR_COMPONENT` when CI built it already, else a
/// release build of the component now (a no-op when it is fresh).
fn component() -> PathBuf {
    if let Ok(path) = std::env::var("CONNECTOR_COMPONENT") {
        return PathBuf::from(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", "netsuite-salesforce", "--release", "--target", "wasm32-wasip2"])
        .status()
        .expect("running cargo to build the component");
    assert!(status.success(), "building the component failed");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    target.join("wasm32-wasip2/release/netsuite_salesforce.wasm")
}

/// The Spin build, built once per test process in its own target directory
/// (building it also builds the root crate's cdylib without the harness
/// glue, which must not overwrite the harness component).
pub fn spin_component_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(path) = std::env::var("CONNECTOR_SPIN_COMPONENT") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        let spin_target = target.join("spin");
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-p", "netsuite-salesforce-spin", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(&spin_target)
            .status()
            .expect("running cargo to build the Spin component");
        assert!(status.success(), "building the Spin component failed");
        spin_target.join("wasm32-wasip2/release/netsuite_salesforce_spin.wasm")
    })
}

/// The component's path, built once per test process.
pub fn component_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(component)
}

/// Compiled once per test process and shared by every test in it.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let path = component_path();
        Runtime::load(path).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
    })
}

/// The `connector` CLI of this build (next to the test binary's directory),
/// built first if it is not there.
pub fn connector_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("connector");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--release", "-p", "host-harness", "--bin", "connector"])
            .status()
            .expect("running cargo to build the connector CLI");
        assert!(status.success(), "building the connector CLI failed");
    }
    binary
}

/// `connector sync <args> --config <config>` of this build, started as a
/// user starts it: output captured, killed when dropped.
pub fn spawn_sync(config: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(connector_binary())
        .arg("sync")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("CONNECTOR_COMPONENT", component_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the connector CLI")
}

pub fn ps256_key() -> KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(Signing::Ps256).expect("RSA key generation")).clone()
}

pub struct Bed {
    pub bed: Testbed,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Bed {
    type Target = Testbed;
    fn deref(&self) -> &Testbed {
        &self.bed
    }
}

pub struct BedBuilder {
    customers: u64,
    key: Option<KeyPair>,
    salesforce: SalesforceSimConfig,
    settings: BTreeMap<String, String>,
    netsuite_concurrency: usize,
    max_memory_mb: usize,
}

/// A bed whose NetSuite requests go one at a time (pages of 100, three
/// retries), so scripted failures all meet the same request: with
/// [`Bed::sync_stopped_after`] a run stops half-way.
/// SuiteQL requests a scheduled run's time zone check makes before it
/// reads when a record changed since the last check (the record changed
/// last, then its time again; see `src/sync/zone.rs`); one otherwise.
pub const ZONE_CHECK_QUERIES: u64 = 2;

pub fn one_request_at_a_time(customers: u64) -> BedBuilder {
    bed(customers)
        .setting("netsuite_page_size", "100")
        .setting("http_max_retries", "3")
        .setting("netsuite_max_in_flight", "1")
}

pub fn bed(customers: u64) -> BedBuilder {
    BedBuilder {
        customers,
        key: None,
        salesforce: SalesforceSimConfig::default(),
        settings: BTreeMap::new(),
        netsuite_concurrency: 15,
        max_memory_mb: 512,
    }
}

impl BedBuilder {
    pub fn key(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Concurrent requests the simulated NetSuite account allows.
    pub fn netsuite_concurrency(mut self, limit: usize) -> Self {
        self.netsuite_concurrency = limit;
        self
    }

    /// The component's memory cap.
    pub fn max_memory_mb(mut self, mb: usize) -> Self {
        self.max_memory_mb = mb;
        self
    }

    pub fn salesforce(mut self, config: SalesforceSimConfig) -> Self {
        self.salesforce = config;
        self
    }

    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    pub async fn start(self) -> Bed {
        // Compile before the simulators start, off the async workers.
        tokio::task::block_in_place(runtime);
        let dir = tempfile::tempdir().expect("temporary directory");
        let bed = Testbed::start(TestbedOptions {
            customers: self.customers,
            key: self.key.unwrap_or_else(ps256_key),
            data_dir: dir.path().to_path_buf(),
            salesforce: self.salesforce,
            settings: self.settings,
            netsuite_concurrency: self.netsuite_concurrency,
            max_memory_mb: self.max_memory_mb,
        })
        .await
        .expect("starting the simulated installation");
        Bed { bed, _dir: dir }
    }
}

impl Bed {
    /// A sync that NetSuite stops half-way: after `queries` more SuiteQL
    /// requests it answers 429 more times than the retries allow. Returns
    /// the run's report (status `stopped`, checked).
    pub async fn sync_stopped_after(&self, queries: u64) -> RunReport {
        let at = self.netsuite.queries() + queries;
        self.netsuite.after_queries(at, |ns| {
            ns.fail_next(&[simulators::netsuite::ScriptedFailure::TooManyRequests; 4]);
        });
        let stopped = self.sync().await;
        assert_eq!(stopped.status, "stopped", "{stopped:?}");
        stopped
    }

    pub async fn sync(&self) -> RunReport {
        self.bed.sync(runtime(), SyncMode::Incremental).await.expect("the host ran the sync")
    }

    pub async fn full_sync(&self) -> RunReport {
        self.bed.sync(runtime(), SyncMode::Full).await.expect("the host ran the sync")
    }

    /// Syncs customers with one setting changed for this run (see
    /// `Testbed::sync_with_setting`).
    pub async fn sync_with_setting(&self, name: &str, value: &str) -> RunReport {
        self.bed.sync_with_setting(runtime(), name, value).await.expect("the host ran the sync")
    }

    /// Replays every failed write.
    pub async fn replay_all(&self) -> RunReport {
        self.bed
            .tenant
            .replay(runtime(), host_harness::host::ReplayScope::AllFailed)
            .await
            .expect("the host ran the replay")
    }

    /// Syncs every record kind, parents first.
    pub async fn sync_all(&self) -> RunReport {
        self.bed.sync_kinds(runtime(), SyncMode::Incremental, &[]).await.expect("the host ran the sync")
    }
}

/// A fixed key per algorithm, generated once per process.
pub fn es256_key() -> KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(Signing::Es256).expect("P-256 key generation")).clone()
}

impl Bed {
    /// Queues NetSuite change events (`kind`, id, `event`) as the listener
    /// would have, in one transaction, in the order given.
    pub fn queue_events(&self, events: &[(&str, i64, &str)]) {
        let conn = self.tenant.database.connect().unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for (n, (kind, id, event)) in events.iter().enumerate() {
            let value = serde_json::json!({"kind": kind, "id": id.to_string(), "event": event, "received_at": n});
            tx.execute(
                "INSERT INTO kv (tenant, bucket, key, value, updated_at) VALUES ('demo', 'queues', ?1, CAST(?2 AS \
                 BLOB), '')",
                [format!("event/{kind}/{id}"), value.to_string()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    /// The Salesforce record of a NetSuite id, or a panic naming it.
    pub fn sf(&self, sobject: &str, netsuite_id: i64) -> (String, serde_json::Map<String, serde_json::Value>) {
        self.salesforce
            .find(sobject, &netsuite_id.to_string())
            .unwrap_or_else(|| panic!("no {sobject} for NetSuite id {netsuite_id}"))
    }
}

/// Asserts the run succeeded, showing its error otherwise.
pub fn succeeded(report: &RunReport) {
    assert_eq!(report.status, "succeeded", "run failed: {:?}", report.error);
}

/// An RSA key NetSuite has never seen.
pub fn other_rsa_key() -> KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(Signing::Ps256).expect("RSA key generation")).clone()
}

/// The default mapping with every customer given the terms `Net 90`.
pub fn net90_mapping() -> String {
    let edited = netsuite_salesforce::mapping::DEFAULT_MAPPING.replacen(
        "target = \"Payment_Terms__c\"\nrules = [{ copy = \"termsname\" }]",
        "target = \"Payment_Terms__c\"\nrules = [{ constant = \"Net 90\" }]",
        1,
    );
    assert_ne!(edited, netsuite_salesforce::mapping::DEFAULT_MAPPING);
    edited
}

/// The default mapping with Net 30 customers given another picklist value.
pub fn net30_mapping() -> String {
    let edited = netsuite_salesforce::mapping::DEFAULT_MAPPING.replacen(
        "target = \"Payment_Terms__c\"\nrules = [{ copy = \"termsname\" }]",
        "target = \"Payment_Terms__c\"\nrules = [{ constant = \"NET-30\", when = { column = \"terms\", equals = \"2\" } }, { copy = \"termsname\" }]",
        1,
    );
    assert_ne!(edited, netsuite_salesforce::mapping::DEFAULT_MAPPING);
    edited
}
