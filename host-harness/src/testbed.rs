//! A complete simulated installation: both simulators on loopback, keys, a
//! tenant configured against them and its sealed secrets. The demo runs on
//! it, and so do the end-to-end tests and benchmarks.

use crate::config::HarnessConfig;
use crate::host::{GuestClock, RecordKind, Runtime, SyncMode};
use crate::scheduler::{RunReport, Tenant};
use crate::secrets::{Cipher, SecretFile};
use crate::sim::SimClock;
use crate::sim::netsuite::{NetSuiteSim, NetSuiteSimConfig, TbaConfig};
use crate::sim::salesforce::{SalesforceSim, SalesforceSimConfig};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const NETSUITE_ACCOUNT: &str = "1234567_SB1";
pub const NETSUITE_CLIENT_ID: &str = "9f3c2b1a-sim-integration";
pub const NETSUITE_CERTIFICATE_ID: &str = "sim-m2m-certificate-1";
/// TBA credentials the simulated account accepts (public: they only open the simulator).
pub const TBA_CONSUMER_KEY: &str = "sim-consumer-key-0f3a";
pub const TBA_TOKEN_ID: &str = "sim-token-id-77c1";
/// The secret the simulated account signs change events with.
pub const WEBHOOK_SECRET: &str = "whsec-sim-4d2f9a";
const TBA_CONSUMER_SECRET: &str = "sim-consumer-secret-d41d";
const TBA_TOKEN_SECRET: &str = "sim-token-secret-8f00";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Ps256,
    Es256,
}

/// A signing key and the public key NetSuite holds in its certificate.
#[derive(Clone)]
pub struct KeyPair {
    pub signing: Signing,
    pub private_pem: String,
    pub public_pem: String,
}

impl KeyPair {
    /// RSA 3072 for PS256 (NetSuite's minimum), P-256 for ES256.
    pub fn generate(signing: Signing) -> Result<KeyPair> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let mut rng = rand::rngs::OsRng;
        match signing {
            Signing::Ps256 => {
                let key = rsa::RsaPrivateKey::new(&mut rng, 3072)?;
                Ok(KeyPair {
                    signing,
                    private_pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
                    public_pem: key.to_public_key().to_public_key_pem(LineEnding::LF)?,
                })
            }
            Signing::Es256 => {
                let key = p256::SecretKey::random(&mut rng);
                Ok(KeyPair {
                    signing,
                    private_pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
                    public_pem: key.public_key().to_public_key_pem(LineEnding::LF)?,
                })
            }
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self.signing {
            Signing::Ps256 => "PS256",
            Signing::Es256 => "ES256",
        }
    }
}

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
        let clock = SimClock::new();
        let netsuite = NetSuiteSim::start(
            NetSuiteSimConfig {
                account_id: NETSUITE_ACCOUNT.into(),
                client_id: NETSUITE_CLIENT_ID.into(),
                certificate_id: NETSUITE_CERTIFICATE_ID.into(),
                public_key_pem: options.key.public_pem.clone(),
                concurrency_limit: options.netsuite_concurrency,
                token_lifetime: Duration::from_secs(3600),
                tba: Some(TbaConfig {
                    consumer_key: TBA_CONSUMER_KEY.into(),
                    consumer_secret: TBA_CONSUMER_SECRET.into(),
                    token_id: TBA_TOKEN_ID.into(),
                    token_secret: TBA_TOKEN_SECRET.into(),
                }),
            },
            clock.clone(),
            0,
        )
        .await?;
        let customer_ids = netsuite.seed_customers(options.customers, 42)?;
        let sf_config = options.salesforce;
        let client_secret = sf_config.client_secret.clone();
        let salesforce = SalesforceSim::start(sf_config, clock.clone(), 0).await?;

        crate::secrets::create_private_dir(&options.data_dir)?;
        let key_b64 = Cipher::generate_key_b64();
        let key_file = options.data_dir.join("master.key");
        // Each testbed (and demo) starts with a new key, as it always has.
        let _ = std::fs::remove_file(&key_file);
        crate::secrets::write_key_file(&key_file, &key_b64)?;
        let cipher = Cipher::from_b64(&key_b64)?;

        let mut settings: BTreeMap<String, toml::Value> = [
            ("netsuite_account_id", NETSUITE_ACCOUNT.to_string()),
            ("netsuite_base_url", netsuite.base_url().to_string()),
            ("netsuite_client_id", NETSUITE_CLIENT_ID.to_string()),
            ("netsuite_certificate_id", NETSUITE_CERTIFICATE_ID.to_string()),
            ("netsuite_signing_algorithm", options.key.algorithm().to_string()),
            ("netsuite_consumer_key", TBA_CONSUMER_KEY.to_string()),
            ("netsuite_token_id", TBA_TOKEN_ID.to_string()),
            ("salesforce_login_url", salesforce.base_url().to_string()),
            ("salesforce_client_id", salesforce.client_id().to_string()),
            ("salesforce_grant", "client_credentials".to_string()),
            // Simulated faults clear quickly; keep waits short.
            ("http_backoff_base_ms", "20".to_string()),
            ("http_backoff_cap_ms", "500".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), toml::Value::String(v)))
        .collect();
        for (k, v) in options.settings {
            settings.insert(k, toml::Value::String(v));
        }
        let config = HarnessConfig {
            tenant: "demo".into(),
            data_dir: options.data_dir.clone(),
            master_key_file: Some(key_file),
            secrets_file: None,
            mapping_file: None,
            allowed_hosts: vec![],
            max_memory_mb: options.max_memory_mb,
            run_deadline_secs: 3600,
            settings,
        };
        let secrets = BTreeMap::from([
            ("netsuite_private_key".to_string(), options.key.private_pem.clone()),
            ("salesforce_client_secret".to_string(), client_secret),
            ("webhook_secret".to_string(), WEBHOOK_SECRET.to_string()),
            ("netsuite_consumer_secret".to_string(), TBA_CONSUMER_SECRET.to_string()),
            ("netsuite_token_secret".to_string(), TBA_TOKEN_SECRET.to_string()),
        ]);
        SecretFile::write(&config.secrets_path(), &cipher, &secrets)?;
        let tenant = std::sync::Arc::new(Tenant::open(config, cipher, Some(GuestClock::new(clock.clone())))?);
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

    /// Replaces one secret in the tenant's sealed secrets file.
    pub fn set_secret(&self, name: &str, value: &str) -> Result<()> {
        let path = self.tenant.config.secrets_path();
        let mut secrets = SecretFile::read(&path, &self.tenant.cipher)?;
        secrets.insert(name.to_string(), value.to_string());
        SecretFile::write(&path, &self.tenant.cipher, &secrets)
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
