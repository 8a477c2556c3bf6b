//! Both simulators side by side, set up with the credentials below: what the
//! demo, the tests, the benchmarks and `connector sim` start from.

use crate::SimClock;
use crate::netsuite::{NetSuiteSim, NetSuiteSimConfig, TbaConfig};
use crate::salesforce::{SalesforceSim, SalesforceSimConfig};
use anyhow::Result;
use std::time::Duration;

pub const NETSUITE_ACCOUNT: &str = "1234567_SB1";
pub const NETSUITE_CLIENT_ID: &str = "9f3c2b1a-sim-integration";
pub const NETSUITE_CERTIFICATE_ID: &str = "sim-m2m-certificate-1";
/// TBA credentials the simulated account accepts (public: they only open the simulator).
pub const TBA_CONSUMER_KEY: &str = "sim-consumer-key-0f3a";
pub const TBA_TOKEN_ID: &str = "sim-token-id-77c1";
/// The secret the simulated account signs change events with.
pub const WEBHOOK_SECRET: &str = "whsec-sim-4d2f9a";
pub const TBA_CONSUMER_SECRET: &str = "sim-consumer-secret-d41d";
pub const TBA_TOKEN_SECRET: &str = "sim-token-secret-8f00";

pub struct PairOptions {
    /// The key whose public half the NetSuite account's certificate holds.
    pub public_key_pem: String,
    pub customers: u64,
    /// Concurrent requests the simulated NetSuite account allows.
    pub netsuite_concurrency: usize,
    pub salesforce: SalesforceSimConfig,
    /// Ports to bind on 127.0.0.1; 0 picks a free one.
    pub netsuite_port: u16,
    pub salesforce_port: u16,
}

/// A NetSuite account and a Salesforce org on loopback sharing one clock.
pub struct SimPair {
    pub clock: SimClock,
    pub netsuite: NetSuiteSim,
    pub salesforce: SalesforceSim,
    /// The seeded customers' internal ids.
    pub customer_ids: Vec<i64>,
}

impl SimPair {
    pub async fn start(options: PairOptions) -> Result<SimPair> {
        let clock = SimClock::new();
        let netsuite = NetSuiteSim::start(
            NetSuiteSimConfig {
                account_id: NETSUITE_ACCOUNT.into(),
                client_id: NETSUITE_CLIENT_ID.into(),
                certificate_id: NETSUITE_CERTIFICATE_ID.into(),
                public_key_pem: options.public_key_pem,
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
            options.netsuite_port,
        )
        .await?;
        let customer_ids = netsuite.seed_customers(options.customers, 42)?;
        let salesforce = SalesforceSim::start(options.salesforce, clock.clone(), options.salesforce_port).await?;
        Ok(SimPair { clock, netsuite, salesforce, customer_ids })
    }
}
