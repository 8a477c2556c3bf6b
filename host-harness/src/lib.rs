//! The host harness: runs the connector component in wasmtime with SQLite
//! state, a sealed secret store, an audit sink, a scheduler and simulators
//! of NetSuite and Salesforce.

pub mod audit;
pub mod bench;
pub mod config;
pub mod demo;
pub mod host;
pub mod ops;
pub mod scheduler;
pub mod secrets;
pub mod sim;
pub mod spin_host;
pub mod store;
pub mod testbed;
pub mod webhook;
