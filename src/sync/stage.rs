//! Turning records read from NetSuite into writes: drop rows already
//! handled, map, skip what Salesforce already holds, and hand back the rest
//! with the state to keep once they land.

use super::run::{Run, Staged};
use super::state::{RecordState, annotate_changes, given_fields, hashed_payload, holds_same, source_hash};
use crate::model::{AuditAction, AuditEntry, AuditTransformations, NetSuiteRecord, OutcomeKind, RecordKind, Result};

/// Stages one page of `kind` records. Rows whose digest matches the stored
/// state were handled already (the overlap window, a repeated event) and
/// are dropped unless `full`. Unchanged records get their state refreshed
/// and an audit entry; records the mapping refuses are audited as failed.
pub(super) fn stage(run: &Run<'_>, kind: RecordKind, records: &[NetSuiteRecord], full: bool) -> Result<Vec<Staged>> {
    let mapping = &run.settings.mapping;
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let states = run.in_flight.as_recovered(kind, &ids, run.state.records(kind, &ids)?);
    let mut audit: Vec<AuditEntry> = Vec::new();
    let mut unchanged: Vec<(&str, RecordState)> = Vec::new();
    let mut staged = Vec::new();
    // A live dry run also compares the records the run leaves as they are.
    let compare_live = run.writer.plans() && run.request.compare_live;
    let mut left = Vec::new();
    let mut read = 0;
    for (record, old) in records.iter().zip(states) {
        let src = source_hash(record);
        if !full && old.as_ref().is_some_and(|s| s.src == src) {
            continue;
        }
        read += 1;
        let mut mapped = match mapping.map(record) {
            Ok(m) => m,
            Err(e) => {
                run.count(kind, OutcomeKind::Failed);
                audit.push(AuditEntry {
                    run_id: run.request.run_id.clone(),
                    kind,
                    action: AuditAction::Map,
                    netsuite_id: record.id.clone(),
                    salesforce_id: old.and_then(|s| s.sf),
                    outcome: OutcomeKind::Failed.as_str().into(),
                    transformations: AuditTransformations::Whole("[]".into()),
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let (dst, payload) = hashed_payload(&mapped.target);
        let skip = match &old {
            // Deleted in Salesforce: stays out while NetSuite keeps it
            // inactive; reactivated, it is written again.
            Some(o) if o.sf_deleted => {
                (record.field("isinactive") == Some("T")).then_some(AuditAction::SkipDeletedInSalesforce)
            }
            // Salesforce already holds exactly this: no write.
            Some(o) if holds_same(&o.dst, &mapped.target, &dst, &payload) => Some(AuditAction::SkipUnchanged),
            _ => None,
        };
        match (skip, old) {
            (Some(action), Some(old)) => {
                run.count(kind, OutcomeKind::Unchanged);
                audit.push(run.entry(&mapped, action, OutcomeKind::Unchanged, old.sf.clone(), None));
                unchanged.push((record.id.as_str(), RecordState { src, ..old }));
                if action == AuditAction::SkipUnchanged && compare_live {
                    left.push(mapped);
                }
            }
            (_, old) => {
                let before = old.as_ref().and_then(given_fields);
                let sf = old.and_then(|s| s.sf);
                // Against nothing, every field is new: left to be read from
                // the target where needed (`Staged::fresh`).
                let fresh = before.is_none();
                if !fresh {
                    annotate_changes(&mut mapped.transformations, before.as_ref(), &mapped.target.fields);
                }
                let parents = mapping.parents(record);
                // The payload goes into the state when the write lands.
                staged.push(Staged {
                    mapped,
                    state: RecordState { src, dst, sf, fields: None, org: None, sf_deleted: false },
                    parents,
                    payload,
                    fresh,
                });
            }
        }
    }
    run.count_read(kind, read);
    // What Salesforce holds is this read's output: an older write still
    // waiting (deferred or failed) must not follow it.
    let settled: Vec<&str> = unchanged.iter().map(|(id, _)| *id).collect();
    run.queues.remove(kind, &settled)?;
    run.state.save_records(kind, unchanged)?;
    run.audit(audit);
    run.writer.left(run, kind, &left)?;
    Ok(staged)
}
