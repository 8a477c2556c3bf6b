//! NetSuite → Salesforce master-data connector, built as a WASI component.
//!
//! Everything except `component` is a sans-IO core or an imperative shell over
//! the small traits in [`ports`]; `component` is the only module that names
//! the WIT bindings, so the core unit-tests natively.

pub mod events;
pub mod http;
pub mod mapping;
pub mod model;
pub mod netsuite;
pub mod ports;
pub mod salesforce;
#[cfg(feature = "sealing")]
pub mod sealing;
pub mod settings;
pub mod sync;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
