//! `connector sim`: both simulators standalone, seeded, with the files a
//! connector (or a user's own script or client library) needs to reach them.

use crate::testbed::{
    KeyPair, NETSUITE_ACCOUNT, NETSUITE_CERTIFICATE_ID, NETSUITE_CLIENT_ID, Signing, TBA_CONSUMER_KEY,
    TBA_CONSUMER_SECRET, TBA_TOKEN_ID, TBA_TOKEN_SECRET, WEBHOOK_SECRET, tenant_files,
};
use anyhow::{Context, Result};
use serde::Serialize;
use simulators::pair::{PairOptions, SimPair};
use simulators::salesforce::{Faults, SalesforceSimConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct SimOptions {
    pub customers: u64,
    pub contacts: u64,
    pub vendors: u64,
    pub netsuite_port: u16,
    pub salesforce_port: u16,
    /// Where the config, the sealed secrets, the master key and the PEM go.
    pub dir: PathBuf,
    /// How long each API call waits before it is answered.
    pub latency: Duration,
}

/// What a client needs to reach the running simulators; printed for the user.
#[derive(Debug, Serialize)]
pub struct Endpoints {
    pub netsuite_base_url: String,
    pub netsuite_account_id: &'static str,
    pub netsuite_client_id: &'static str,
    pub netsuite_certificate_id: &'static str,
    pub netsuite_signing_algorithm: &'static str,
    /// The PEM file of the M2M certificate's private key.
    pub netsuite_private_key_file: PathBuf,
    pub netsuite_consumer_key: &'static str,
    pub netsuite_consumer_secret: &'static str,
    pub netsuite_token_id: &'static str,
    pub netsuite_token_secret: &'static str,
    pub salesforce_login_url: String,
    pub salesforce_client_id: String,
    pub salesforce_client_secret: String,
    pub webhook_secret: &'static str,
    pub config_file: PathBuf,
    pub customers: u64,
    pub contacts: u64,
    pub vendors: u64,
    /// Milliseconds each API call waits before it is answered.
    pub latency_ms: u128,
}

/// A pair of running simulators and the files written for them.
pub struct Running {
    pub pair: SimPair,
    pub endpoints: Endpoints,
}

/// Starts both simulators, seeds them and writes `connector.toml` (with its
/// master key and sealed secrets) and the M2M private key into `options.dir`.
pub async fn start(options: SimOptions) -> Result<Running> {
    let dir = std::path::absolute(&options.dir).with_context(|| format!("resolving {}", options.dir.display()))?;
    // The simulators start with new data each time: an earlier run's
    // database would say Salesforce holds records it does not, and its
    // config may carry the user's own settings.
    // Nor a tenant's own key and secrets (`secrets init` there before).
    for earlier in ["connector.db", "connector.toml", "master.key", "secrets.enc"] {
        if dir.join(earlier).exists() {
            anyhow::bail!(
                "{} holds {earlier} from an earlier `connector sim` (or a tenant of yours): the simulators start \
                 with new data, so its record states and settings would not match them. Pick another --dir, or \
                 remove that directory first (rm -r {})",
                dir.display(),
                dir.display()
            );
        }
    }
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    let pair = SimPair::start(PairOptions {
        public_key_pem: key.public_pem.clone(),
        customers: options.customers,
        netsuite_concurrency: 15,
        salesforce: SalesforceSimConfig::default(),
        netsuite_port: options.netsuite_port,
        salesforce_port: options.salesforce_port,
    })
    .await?;
    pair.netsuite.set_latency(options.latency);
    pair.salesforce.set_faults(Faults { latency: options.latency, ..Default::default() });
    let vendors = pair.netsuite.seed_vendors(options.vendors, 17)?;
    if options.contacts > 0 {
        let companies: Vec<i64> = pair.customer_ids.iter().chain(&vendors).copied().collect();
        pair.netsuite.seed_contacts(options.contacts, &companies, pair.clock.now_secs() - 3600, 19)?;
    }

    let (mut config, _) = tenant_files(&pair, &key, &dir, BTreeMap::new(), 512)?;
    config.tenant = "sim".into();
    let config_file = dir.join("connector.toml");
    let text = toml::to_string(&config).context("serializing the config")?;
    std::fs::write(&config_file, text).with_context(|| format!("writing {}", config_file.display()))?;
    let key_file = dir.join("netsuite-m2m-private-key.pem");
    write_private(&key_file, &key.private_pem)?;

    let endpoints = Endpoints {
        netsuite_base_url: pair.netsuite.base_url().to_string(),
        netsuite_account_id: NETSUITE_ACCOUNT,
        netsuite_client_id: NETSUITE_CLIENT_ID,
        netsuite_certificate_id: NETSUITE_CERTIFICATE_ID,
        netsuite_signing_algorithm: key.algorithm(),
        netsuite_private_key_file: key_file,
        netsuite_consumer_key: TBA_CONSUMER_KEY,
        netsuite_consumer_secret: TBA_CONSUMER_SECRET,
        netsuite_token_id: TBA_TOKEN_ID,
        netsuite_token_secret: TBA_TOKEN_SECRET,
        salesforce_login_url: pair.salesforce.base_url().to_string(),
        salesforce_client_id: pair.salesforce.client_id().to_string(),
        salesforce_client_secret: pair.salesforce.client_secret().to_string(),
        webhook_secret: WEBHOOK_SECRET,
        config_file,
        customers: options.customers,
        contacts: options.contacts,
        vendors: options.vendors,
        latency_ms: options.latency.as_millis(),
    };
    Ok(Running { pair, endpoints })
}

/// A file only its owner can read: the key opens the simulated account.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = crate::secrets::private_options()
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

pub fn print_text(e: &Endpoints) -> std::io::Result<()> {
    crate::outln!("NetSuite and Salesforce simulators are running (Ctrl-C stops them; the data lives in memory).")?;
    crate::outln!("Seeded: {} customers, {} contacts, {} vendors.", e.customers, e.contacts, e.vendors)?;
    if e.latency_ms > 0 {
        crate::outln!("Each API call is answered after {} ms.", e.latency_ms)?;
    }
    crate::outln!()?;
    crate::outln!("NetSuite  {}", e.netsuite_base_url)?;
    crate::outln!("  account id            {}", e.netsuite_account_id)?;
    crate::outln!("  M2M client id         {}", e.netsuite_client_id)?;
    crate::outln!("  certificate id        {} ({})", e.netsuite_certificate_id, e.netsuite_signing_algorithm)?;
    crate::outln!("  private key           {}", e.netsuite_private_key_file.display())?;
    crate::outln!("  TBA consumer key      {} / secret {}", e.netsuite_consumer_key, e.netsuite_consumer_secret)?;
    crate::outln!("  TBA token id          {} / secret {}", e.netsuite_token_id, e.netsuite_token_secret)?;
    crate::outln!("  change-event secret   {}", e.webhook_secret)?;
    crate::outln!("Salesforce  {}", e.salesforce_login_url)?;
    crate::outln!("  client id             {}", e.salesforce_client_id)?;
    crate::outln!("  client secret         {}", e.salesforce_client_secret)?;
    crate::outln!("  grant                 client_credentials (POST /services/oauth2/token)")?;
    crate::outln!()?;
    crate::outln!("These credentials open only the simulators. A ready config (secrets sealed next to it):")?;
    crate::outln!("  connector sync --config {}", e.config_file.display())?;
    Ok(())
}
