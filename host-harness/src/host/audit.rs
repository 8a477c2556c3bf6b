//! The audit import: entries from the guest, stamped with the run's tenant
//! and the time, committed by the run's store (one transaction per call or
//! several).

use super::bindings::ml_connector::netsuite_salesforce::audit;
use super::bindings::ml_connector::netsuite_salesforce::types::RecordKind;
use super::state::HostState;

pub fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Customer => "customer",
        RecordKind::Contact => "contact",
        RecordKind::Vendor => "vendor",
    }
}

impl audit::Host for HostState {
    fn append(&mut self, entries: Vec<audit::AuditEntry>) -> wasmtime::Result<()> {
        if let Some(progress) = &self.progress {
            for e in &entries {
                progress.record(kind_name(e.kind), &e.outcome);
            }
        }
        let rows: Vec<crate::audit::AuditRow> = entries
            .into_iter()
            .map(|e| crate::audit::AuditRow {
                run_id: e.run_id,
                kind: kind_name(e.kind).to_string(),
                action: e.action,
                direction: e.direction,
                netsuite_id: e.netsuite_id,
                salesforce_id: e.salesforce_id,
                outcome: e.outcome,
                transformations: e.transformations_json,
                shape: e.transformations_shape,
                error: e.error,
            })
            .collect();
        // An audit write that fails must stop the run: a sync nobody can
        // account for is worse than a sync that did not happen.
        self.kv.append_audit(rows).map_err(|e| wasmtime::Error::msg(format!("audit sink failed: {e:#}")))
    }
}

impl super::bindings::ml_connector::netsuite_salesforce::types::Host for HostState {}
