//! The run-control import: the host asking a run to end at its next
//! checkpoint (it is shutting down), and the record counts NetSuite gave a
//! run, for the progress display.

use super::audit::kind_name;
use super::bindings::ml_connector::netsuite_salesforce::run_control;
use super::bindings::ml_connector::netsuite_salesforce::types::RecordKind;
use super::state::HostState;
use std::sync::Mutex;

/// Shared by a tenant and its runs: once set, every checkpoint ends the run.
#[derive(Debug, Default)]
pub struct StopRequest(Mutex<Option<String>>);

impl StopRequest {
    pub fn request(&self, reason: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }

    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl run_control::Host for HostState {
    fn stop_requested(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.stop.reason())
    }

    fn expect(&mut self, kind: RecordKind, records: u64) -> wasmtime::Result<()> {
        if let Some(progress) = &self.progress {
            progress.expect(kind_name(kind), records);
        }
        Ok(())
    }
}
