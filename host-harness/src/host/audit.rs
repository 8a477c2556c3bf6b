//! The audit import: entries from the guest, stamped with the run's tenant
//! and the time, committed by the run's store (one transaction per call or
//! several).

use super::bindings::ml_connector::netsuite_salesforce::audit;
use super::bindings::ml_connector::netsuite_salesforce::types::RecordKind;
use super::state::HostState;
use std::sync::Arc;

pub fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Customer => "customer",
        RecordKind::Contact => "contact",
        RecordKind::Vendor => "vendor",
    }
}

impl audit::Host for HostState {
    fn append(&mut self, shapes: Vec<String>, entries: Vec<audit::AuditEntry>) -> wasmtime::Result<()> {
        if let Some(progress) = &self.progress {
            for e in &entries {
                progress.record(kind_name(e.kind), &e.outcome);
            }
        }
        let shapes: Vec<Arc<str>> = shapes.into_iter().map(Arc::from).collect();
        let rows = entries
            .into_iter()
            .map(|e| {
                let shape = match e.transformations_shape {
                    None => None,
                    Some(n) => Some(shapes.get(n as usize).cloned().ok_or_else(|| {
                        wasmtime::Error::msg(format!(
                            "the component sent an audit entry (NetSuite id {}) naming shape {n} of the {} it sent: \
                             a defect in the component",
                            e.netsuite_id,
                            shapes.len()
                        ))
                    })?),
                };
                Ok(crate::audit::AuditRow {
                    run_id: e.run_id,
                    kind: kind_name(e.kind).to_string(),
                    action: e.action,
                    direction: e.direction,
                    netsuite_id: e.netsuite_id,
                    salesforce_id: e.salesforce_id,
                    outcome: e.outcome,
                    transformations: e.transformations_json,
                    shape,
                    error: e.error,
                })
            })
            .collect::<wasmtime::Result<Vec<_>>>()?;
        // An audit write that fails must stop the run: a sync nobody can
        // account for is worse than a sync that did not happen.
        self.kv.append_audit(rows).map_err(|e| wasmtime::Error::msg(format!("audit sink failed: {e:#}")))
    }
}

impl super::bindings::ml_connector::netsuite_salesforce::types::Host for HostState {}
