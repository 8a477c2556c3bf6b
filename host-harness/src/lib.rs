//! The host harness: runs the connector component in wasmtime with SQLite
//! state, a sealed secret store, an audit sink and a scheduler. With the
//! `simulators` feature (default) it also runs the demo and the benchmarks
//! on the NetSuite and Salesforce simulators (crate `connector-simulators`).

pub mod audit;
#[cfg(feature = "simulators")]
pub mod bench;
#[cfg(feature = "simulators")]
pub mod bench_tenants;
pub mod config;
pub mod console;
#[cfg(feature = "simulators")]
pub mod demo;
pub mod host;
pub mod metrics;
pub mod ops;
pub mod scheduler;
pub mod secrets;
pub mod serve;
pub mod shutdown;
#[cfg(feature = "simulators")]
pub mod simulate;
pub mod spin_host;
pub mod store;
#[cfg(feature = "simulators")]
pub mod testbed;
pub mod webhook;
