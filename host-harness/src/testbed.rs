//! A complete simulated installation: both simulators on loopback, keys, a
//! tenant configured against them and its sealed secrets. The demo runs on
//! it, and so do the end-to-end tests and benchmarks.

use crate::config::HarnessConfig;
use crate::host::{GuestClock, RecordKind, Runtime, SyncMode};
use crate::scheduler::{RunReport, Tenant};
use crate::secrets::{Cipher, SecretFile};
use anyhow::{Context, Result};
use simulators::SimClock;
pub use simulators::keys::{KeyPair, Signing};
use simulators::netsuite::NetSuiteSim;
pub use simulators::pair::{
    NETSUITE_ACCOUNT, NETSUITE_CERTIFICATE_ID, NETSUITE_CLIENT_ID, TBA_CONSUMER_KEY, TBA_CONSUMER_SECRET, TBA_TOKEN_ID,
    TBA_TOKEN_SECRET, WEBHOOK_SECRET,
};
use simulators::pair::{PairOptions, SimPair};
use simulators::salesforce::{SalesforceSim, SalesforceSimConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct TestbedOptions {
    pub customers: u64,
    pub key: KeyPair,
    pub data_dir: PathBuf,
    pub salesforce: SalesforceSimConfig,
    /// Extra or replaced settings.
    pub settings: BTreeMap<String, String>,
    /// Concurrent requests the simulated NetSuite account allows.
    pub netsuite_concurrency: usize,
    /// The component's memory cap.
    pub max_memory_mb: usize,
}

pub struct Testbed {
    pub clock: SimClock,
    pub netsuite: NetSuiteSim,
    pub salesforce: SalesforceSim,
    pub tenant: std::sync::Arc<Tenant>,
    pub customer_ids: Vec<i64>,
    pub key: KeyPair,
}

impl Testbed {
    pub async fn start(options: TestbedOptions) -> Result<Testbed> {
        let pair = SimPair::start(PairOptions {
            public_key_pem: options.key.public_pem.clone(),
            customers: options.customers,
            netsuite_concurrency: options.netsuite_concurrency,
            salesforce: options.salesforce,
            netsuite_port: 0,
            salesforce_port: 0,
        })
        .await?;
        let mut settings = BTreeMap::from([
            // Simulated faults clear quickly; keep waits short.
            ("http_backoff_base_ms".to_string(), "20".to_string()),
            ("http_backoff_cap_ms".to_string(), "500".to_string()),
        ]);
        settings.extend(options.settings);
        let (config, cipher) = tenant_files(&pair, &options.key, &options.data_dir, settings, options.max_memory_mb)?;
        let SimPair { clock, netsuite, salesforce, customer_ids } = pair;
        let tenant =
            std::sync::Arc::new(Tenant::open(config, cipher, Some(GuestClock::new(SimulatedTime(clock.clone()))))?);
        Ok(Testbed { clock, netsuite, salesforce, tenant, customer_ids, key: options.key })
    }

    /// Syncs customers only.
    pub async fn sync(&self, runtime: &Runtime, mode: SyncMode) -> Result<RunReport> {
        self.tenant.sync(runtime, mode, &[RecordKind::Customer]).await
    }

    /// Syncs the given kinds (all when empty), parents first.
    pub async fn sync_kinds(&self, runtime: &Runtime, mode: SyncMode, kinds: &[RecordKind]) -> Result<RunReport> {
        self.tenant.sync(runtime, mode, kinds).await
    }

    /// Syncs customers as a tenant configured like this one except for
    /// setting `name` = `value`, over the same database and secrets: a
    /// setting changed between two runs.
    pub async fn sync_with_setting(&self, runtime: &Runtime, name: &str, value: &str) -> Result<RunReport> {
        let mut config = self.tenant.config.clone();
        config.settings.insert(name.to_string(), toml::Value::String(value.to_string()));
        let clock = Some(GuestClock::new(SimulatedTime(self.clock.clone())));
        let tenant = Tenant::open(config, self.tenant.cipher.clone(), clock)?;
        tenant.sync(runtime, SyncMode::Incremental, &[RecordKind::Customer]).await
    }

    /// Replaces one secret in the tenant's sealed secrets file.
    pub fn set_secret(&self, name: &str, value: &str) -> Result<()> {
        let path = self.tenant.config.secrets_path();
        SecretFile::update(&path, &self.tenant.cipher, |secrets| {
            secrets.insert(name.to_string(), value.to_string());
        })
    }

    /// Writes the tenant's config as a file `connector sync --config` can run.
    pub fn write_config(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(&self.tenant.config).context("serializing the harness config")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn database_path(&self) -> &Path {
        self.tenant.database.path()
    }
}

/// Writes what a tenant of the simulated pair needs into `data_dir`: a new
/// master key, the sealed secrets (the simulators' credentials and `key`'s
/// private half) and returns its config; `settings` adds or replaces settings.
pub fn tenant_files(
    pair: &SimPair,
    key: &KeyPair,
    data_dir: &Path,
    settings: BTreeMap<String, String>,
    max_memory_mb: usize,
) -> Result<(HarnessConfig, Cipher)> {
    let (netsuite, salesforce) = (&pair.netsuite, &pair.salesforce);
    crate::secrets::create_private_dir(data_dir)?;
    let key_b64 = Cipher::generate_key_b64();
    let key_file = data_dir.join("master.key");
    // Each installation (demo, test, `connector sim`) starts with a new key.
    let _ = std::fs::remove_file(&key_file);
    crate::secrets::write_key_file(&key_file, &key_b64)?;
    let cipher = Cipher::from_b64(&key_b64)?;

    let mut all: BTreeMap<String, String> = [
        ("netsuite_account_id", NETSUITE_ACCOUNT),
        ("netsuite_base_url", netsuite.base_url()),
        ("netsuite_client_id", NETSUITE_CLIENT_ID),
        ("netsuite_certificate_id", NETSUITE_CERTIFICATE_ID),
        ("netsuite_signing_algorithm", key.algorithm()),
        ("netsuite_consumer_key", TBA_CONSUMER_KEY),
        ("netsuite_token_id", TBA_TOKEN_ID),
        ("salesforce_login_url", salesforce.base_url()),
        ("salesforce_client_id", salesforce.client_id()),
        ("salesforce_grant", "client_credentials"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    all.extend(settings);
    let config = HarnessConfig {
        tenant: "demo".into(),
        data_dir: data_dir.to_path_buf(),
        master_key_file: Some(key_file),
        secrets_file: None,
        mapping_file: None,
        allowed_hosts: vec![],
        max_memory_mb,
        run_deadline_secs: 3600,
        max_cpu_ms: None,
        settings: all.into_iter().map(|(k, v)| (k, toml::Value::String(v))).collect(),
        schedule: None,
        events_per_minute: 600,
    };
    let secrets = BTreeMap::from([
        ("netsuite_private_key".to_string(), key.private_pem.clone()),
        ("salesforce_client_secret".to_string(), salesforce.client_secret().to_string()),
        ("webhook_secret".to_string(), WEBHOOK_SECRET.to_string()),
        ("netsuite_consumer_secret".to_string(), TBA_CONSUMER_SECRET.to_string()),
        ("netsuite_token_secret".to_string(), TBA_TOKEN_SECRET.to_string()),
    ]);
    SecretFile::write(&config.secrets_path(), &cipher, &secrets)?;
    Ok((config, cipher))
}

/// The guest reads the simulators' clock, so "an hour later" takes no time.
struct SimulatedTime(SimClock);

impl wasmtime_wasi::HostWallClock for SimulatedTime {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0.now()
    }
}
