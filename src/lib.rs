//! NetSuite → Salesforce master-data connector, built as a WASI component.
//!
//! Everything except `component` is a sans-IO core or an imperative shell over
//! the small traits in [`ports`]; `component` is the only module that names
//! the WIT bindings, so the core unit-tests natively.

pub mod columns;
pub mod events;
mod found_last;
pub mod http;
pub mod mapping;
pub mod model;
pub mod netsuite;
pub mod payload_index;
pub mod ports;
pub mod salesforce;
#[cfg(feature = "sealing")]
pub mod sealing;
pub mod settings;
pub mod sync;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;
#[cfg(any(test, target_arch = "wasm32"))]
mod memcmp;

/// Talc instead of the default dlmalloc: a sync allocates and frees a few
/// hundred small strings per record, and dlmalloc was a fifth of the
/// component's time. Components are single-threaded (no atomics).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
