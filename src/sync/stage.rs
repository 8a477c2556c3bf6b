//! Turning records read from NetSuite into writes: drop rows already
//! handled, map, skip what Salesforce already holds, and hand back the rest
//! with the state to keep once they land.

use super::live::live_changes;
use super::merge::ConflictPolicy;
use super::run::{Run, Staged};
use super::state::{
    RecordState, annotate_changes, given_fields, hashed_payload, holds_same, payload_digest, source_hash,
};
use crate::model::{
    AuditAction, AuditEntry, AuditTransformations, ConnectorError, MappedRecord, NetSuiteRecord, OutcomeKind,
    RecordKind, Result, SObjectRecord,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Which rows of a page were asked for, which decides what becomes of a
/// row whose digest matches the stored state (handled already).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rows {
    /// Every row counts: mapped and compared again (a mapping or org
    /// change, `--full`, a replay); `live`: each is compared with its live
    /// Salesforce copy too (`--compare-live`, or the read of every row a
    /// `--full --compare-live` run left unfinished).
    All { live: bool },
    /// Rows NetSuite changed: one handled already (read again in the
    /// overlap window) is dropped unnoticed.
    Changed,
    /// Rows change events named: one handled already is audited unchanged,
    /// so every applied event leaves a row.
    Named,
    /// Rows a refresh of children named (their parent written anew): as
    /// `Changed`, but one whose write waits (refused for the parent's
    /// absence, say) is written again, not left waiting.
    Refreshed,
}

/// Stages one page of `kind` records. Unchanged records get their state
/// refreshed and an audit entry; records the mapping refuses are audited
/// as failed.
pub(super) fn stage(run: &Run<'_>, kind: RecordKind, records: &[NetSuiteRecord], rows: Rows) -> Result<Vec<Staged>> {
    let mapping = &run.settings.mapping;
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    // A dry run saves no state: what it planned stands in for the states a
    // real run would have saved, and what it put in doubt since, for those.
    let states = run.writer.as_planned(kind, &ids, run.state.records(kind, &ids)?);
    let states = run.in_flight.as_recovered(kind, &ids, states);
    let mut audit: Vec<AuditEntry> = Vec::new();
    let mut unchanged: Vec<(&str, RecordState)> = Vec::new();
    let mut staged = Vec::new();
    // Compared live, the records Salesforce should hold already are checked
    // there too (see `drifted`); not those of a kind written back, whose
    // Salesforce edits and deletions are NetSuite's to take (write-back).
    let written_back = run.settings.writeback.is_some() && mapping.writeback(kind).is_some();
    let asked = match rows {
        Rows::All { live } => live,
        Rows::Changed | Rows::Named | Rows::Refreshed => run.request.compare_live,
    };
    let compare_live = asked && !written_back;
    let srcs: Vec<String> = records.iter().map(source_hash).collect();
    // Read again unchanged, a row whose write waits (refused, deferred) or
    // that the mapping refused is handled too: the overlap window would
    // otherwise send, defer or refuse it once more every run. Not a record
    // put in doubt or relinked since (its state's digest emptied): that is
    // to be written again (a parent created anew, a stopped write).
    // Nothing held (a first sync): nothing to look up.
    let waiting = match rows {
        Rows::Changed if !run.queues.holds_nothing(kind)? => {
            let unhandled: Vec<(usize, (&str, &str))> = records
                .iter()
                .zip(&srcs)
                .zip(&states)
                .enumerate()
                .filter(|(_, ((_, src), old))| old.as_ref().is_none_or(|o| !o.src.is_empty() && &o.src != *src))
                .map(|(n, ((r, src), _))| (n, (r.id.as_str(), src.as_str())))
                .collect();
            let (at, asked): (Vec<usize>, Vec<(&str, &str)>) = unhandled.into_iter().unzip();
            let mut waiting = vec![false; records.len()];
            for (n, w) in at.into_iter().zip(run.queues.waiting_as_read(kind, &asked)?) {
                waiting[n] = w;
            }
            waiting
        }
        _ => Vec::new(),
    };
    let mut unmapped: Vec<(&str, String)> = Vec::new();
    let mut checks = Vec::new();
    let mut read = 0;
    for (n, ((record, old), src)) in records.iter().zip(states).zip(srcs).enumerate() {
        let waits = waiting.get(n) == Some(&true);
        let handled = old.as_ref().is_some_and(|s| s.src == src);
        if (handled || waits) && matches!(rows, Rows::Changed | Rows::Refreshed) {
            continue;
        }
        // Write-back merged it this run and counted it; a plan's NetSuite
        // copy is the unmerged one, which the real run never writes.
        let merged = run.was_merged(kind, &record.id);
        if (merged && run.writer.plans()) || run.held_back(kind, &record.id) {
            continue;
        }
        read += 1;
        let mapped = match mapping.map(record) {
            Ok(m) => m,
            Err(e) => {
                run.count(kind, OutcomeKind::Failed);
                unmapped.push((record.id.as_str(), src));
                audit.push(AuditEntry {
                    run_id: run.request.run_id.clone(),
                    kind,
                    action: AuditAction::Map,
                    netsuite_id: record.id.clone(),
                    salesforce_id: old.and_then(|s| s.sf),
                    outcome: OutcomeKind::Failed.as_str().into(),
                    transformations: AuditTransformations::Whole("[]".into()),
                    // The record's value, not the setup, is what to fix.
                    error: Some(match e {
                        ConnectorError::Config(m) => format!("the mapping cannot take this record's value: {m}"),
                        other => other.to_string(),
                    }),
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
            // Salesforce already holds exactly this: no write. Nor when the
            // mapping only stopped writing some fields: Salesforce keeps
            // them as they are, and holds the rest.
            Some(o)
                if (handled && rows == Rows::Named)
                    || holds_same(&o.dst, &mapped.target, &dst, &payload)
                    || only_dropped(o, &mapped.target) =>
            {
                Some(AuditAction::SkipUnchanged)
            }
            _ => None,
        };
        match (skip, old) {
            (Some(AuditAction::SkipUnchanged), Some(old)) if compare_live => {
                checks.push(Check { record, mapped, old, src, dst, payload });
            }
            (Some(action), Some(old)) => {
                // Audited either way: the row says what this pass found.
                match merged {
                    true => read -= 1,
                    false => run.count(kind, OutcomeKind::Unchanged),
                }
                audit.push(run.entry(&mapped, action, OutcomeKind::Unchanged, old.sf.clone(), None));
                let held = match action {
                    AuditAction::SkipUnchanged => held(src, dst, payload, old),
                    _ => RecordState { src, ..old },
                };
                unchanged.push((record.id.as_str(), held));
            }
            (_, old) => {
                // Deleted in Salesforce (and reactivated in NetSuite since):
                // written anew, every field new; a plan knows it absent.
                let gone = old.as_ref().is_some_and(|o| o.sf_deleted);
                let before = old.as_ref().filter(|_| !gone).and_then(given_fields);
                let mut write = to_write(run, record, mapped, old, before, (src, dst, payload));
                if gone && run.writer.plans() {
                    write.seen_live = Some(None);
                }
                staged.push(write);
            }
        }
    }
    if !checks.is_empty() {
        let live = drifted(run, kind, &checks)?;
        for (check, live) in checks.into_iter().zip(live) {
            let Check { record, mapped, old, src, dst, payload } = check;
            match live {
                Drift::None => {
                    run.count(kind, OutcomeKind::Unchanged);
                    audit.push(run.entry(
                        &mapped,
                        AuditAction::SkipUnchanged,
                        OutcomeKind::Unchanged,
                        old.sf.clone(),
                        None,
                    ));
                    unchanged.push((record.id.as_str(), held(src, dst, payload, old)));
                }
                // Written again; its changes shown against what Salesforce holds.
                drift => {
                    let live = match drift {
                        Drift::Edited(live) => Some(live),
                        _ => None,
                    };
                    let before = Some(live.clone().unwrap_or_default());
                    let mut write = to_write(run, record, mapped, Some(old), before, (src, dst, payload));
                    // A plan needs it again; a real run does not keep it.
                    write.seen_live = run.writer.plans().then_some(live);
                    staged.push(write);
                }
            }
        }
    }
    run.count_read(kind, read);
    // What Salesforce holds is this read's output: an older write still
    // waiting (deferred or failed) must not follow it.
    let settled: Vec<&str> = unchanged.iter().map(|(id, _)| *id).collect();
    run.queues.remove(kind, &settled)?;
    // Audit first: the host commits calls in order, so a run killed in
    // between leaves an audit row and no state (the record is written and
    // audited again), never a state no audit row explains.
    run.audit(audit);
    run.state.save_records(kind, unchanged)?;
    let unmapped: Vec<(&str, &str)> = unmapped.iter().map(|(id, src)| (*id, src.as_str())).collect();
    run.queues.note_unmapped(kind, &unmapped)?;
    match run.settings.writeback.filter(|_| written_back) {
        Some(policy) => merge_pending(run, kind, policy, staged),
        None => Ok(staged),
    }
}

/// Records whose Salesforce edits wait there for NetSuite to take them (a
/// write-back NetSuite refused, kept for replay) are merged again instead
/// of written over with NetSuite's record: the others come back.
fn merge_pending(run: &Run<'_>, kind: RecordKind, policy: ConflictPolicy, staged: Vec<Staged>) -> Result<Vec<Staged>> {
    let linked: Vec<(&str, &str)> =
        staged.iter().filter_map(|s| Some((s.state.sf.as_deref()?, s.mapped.source_id.as_str()))).collect();
    let sf: Vec<&str> = linked.iter().map(|(sf, _)| *sf).collect();
    let waiting = run.queues.writebacks_of(kind, &sf)?;
    // Only a failure of this very pairing: a Salesforce record since given
    // another NetSuite id no longer holds this record's edits.
    let pending: HashSet<String> = linked
        .iter()
        .zip(waiting)
        .filter(|((_, id), w)| w.as_ref().is_some_and(|w| w.netsuite_id.as_deref() == Some(*id)))
        .map(|((sf, _), _)| sf.to_string())
        .collect();
    if pending.is_empty() {
        return Ok(staged);
    }
    let ids: Vec<&str> = pending.iter().map(String::as_str).collect();
    super::writeback::merge_again(run, kind, policy, &ids)?;
    Ok(staged.into_iter().filter(|s| !s.state.sf.as_ref().is_some_and(|sf| pending.contains(sf))).collect())
}

/// Whether `target` is what Salesforce was last given (`state`) less some
/// fields: the mapping stopped writing those, and Salesforce holds the rest
/// as written. The kept fields must be the ones written to this object
/// under this external id (their digest is the state's), which also rules
/// out deleted, in-doubt and older states.
fn only_dropped(state: &RecordState, target: &SObjectRecord) -> bool {
    let Some(raw) = &state.fields else { return false };
    if payload_digest(&target.sobject, &target.external_id, raw.get()) != state.dst {
        return false;
    }
    let Some(given) = given_fields(state) else { return false };
    target.fields.len() < given.len() && target.fields.iter().all(|(f, v)| given.get(f) == Some(v))
}

/// The state of a record Salesforce holds the output of: this read's, so a
/// field the mapping writes again later counts as new.
fn held(src: String, dst: String, payload: Box<RawValue>, old: RecordState) -> RecordState {
    RecordState { src, dst, fields: Some(payload), ..old }
}

/// A record whose stored state says Salesforce holds its output, to be
/// checked against the live record.
struct Check<'r> {
    record: &'r NetSuiteRecord,
    mapped: MappedRecord,
    old: RecordState,
    src: String,
    dst: String,
    payload: Box<RawValue>,
}

/// What Salesforce's live record is, next to the connector's last write.
enum Drift {
    None,
    /// Edited there since: its live fields.
    Edited(Map<String, Value>),
    /// Deleted there (or never there under this external id).
    Gone,
}

/// Compares records with their live Salesforce copies (SOQL by external id,
/// 200 a query): a run asked to compare live writes again those edited or
/// deleted in Salesforce since the connector wrote them (drift repair); a
/// plain run leaves them until NetSuite changes them. Only the fields the
/// mapping writes count.
fn drifted(run: &Run<'_>, kind: RecordKind, checks: &[Check<'_>]) -> Result<Vec<Drift>> {
    run.validate_target(kind)?;
    let spec = run.settings.mapping.target_spec(kind)?;
    let ids: Vec<&str> = checks.iter().map(|c| c.mapped.target.external_id.as_str()).collect();
    let mut live = run.sink.live_records(&spec, &ids)?;
    Ok(checks
        .iter()
        .map(|c| match live.remove(&c.mapped.target.external_id) {
            None => Drift::Gone,
            Some(fields) if live_changes(&spec, &c.mapped.target.fields, Some(&fields)).is_empty() => Drift::None,
            Some(fields) => Drift::Edited(fields),
        })
        .collect())
}

/// A record to write: `before` is what Salesforce holds as far as known
/// (None: nothing, every field new, left to be read from the target where
/// needed, see `Staged::fresh`); `hashes` are its (src, dst, payload).
fn to_write(
    run: &Run<'_>,
    record: &NetSuiteRecord,
    mut mapped: MappedRecord,
    old: Option<RecordState>,
    before: Option<Map<String, Value>>,
    hashes: (String, String, Box<RawValue>),
) -> Staged {
    let (src, dst, payload) = hashes;
    let sf = old.and_then(|s| s.sf);
    let fresh = before.is_none();
    if !fresh {
        annotate_changes(&mut mapped.transformations, before.as_ref(), &mapped.target.fields);
    }
    let parents = run.settings.mapping.parents(record);
    let back = run.settings.writeback.and(run.settings.mapping.writeback(mapped.source_kind));
    let changed_only = match (&before, &sf, back) {
        (Some(before), Some(_), Some(back)) => Some(Box::new(changed_only(&mapped.target, before, &back.sources()))),
        _ => None,
    };
    // The payload goes into the state when the write lands.
    Staged {
        mapped,
        state: RecordState { src, dst, sf, fields: None, org: None, sf_deleted: false },
        parents,
        payload,
        fresh,
        seen_live: None,
        changed_only,
        created: false,
    }
}

/// `target` with only the fields written back (`back`) whose value differs
/// from `before` (what Salesforce was last given), the others kept (parent
/// references, fields only NetSuite writes: a Salesforce edit to those is
/// put right, as a whole write would).
fn changed_only(target: &SObjectRecord, before: &Map<String, Value>, back: &[String]) -> SObjectRecord {
    let fields = target
        .fields
        .iter()
        .filter(|(field, value)| {
            value.is_object() || !back.contains(field) || !super::merge::same(Some(value), before.get(field.as_str()))
        })
        .map(|(f, v)| (f.clone(), v.clone()))
        .collect();
    SObjectRecord {
        sobject: target.sobject.clone(),
        external_id_field: target.external_id_field.clone(),
        external_id: target.external_id.clone(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(sobject: &str, fields: Value) -> SObjectRecord {
        SObjectRecord {
            sobject: sobject.into(),
            external_id_field: "NetSuite_Id__c".into(),
            external_id: "7".into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    fn written(record: &SObjectRecord) -> RecordState {
        let (dst, fields) = hashed_payload(record);
        RecordState { src: "s".into(), dst, sf: Some("001".into()), fields: Some(fields), org: None, sf_deleted: false }
    }

    #[test]
    fn only_a_payload_that_lost_fields_of_this_very_write_counts_as_held() {
        let before = target("Account", json!({"Name": "Acme", "Phone": "+1555", "Fax": null}));
        let state = written(&before);
        assert!(only_dropped(&state, &target("Account", json!({"Name": "Acme", "Fax": null}))));
        // A value changed, a field added or renamed, nothing dropped: written.
        assert!(!only_dropped(&state, &target("Account", json!({"Name": "Acme Ltd"}))));
        assert!(!only_dropped(&state, &target("Account", json!({"Name": "Acme", "Site": "x"}))));
        assert!(!only_dropped(&state, &target("Account", json!({"Name": "Acme", "Phone": "+1555", "Fax": null}))));
        // Another object, or a state whose fields are not what it wrote
        // (deleted, in doubt): written.
        assert!(!only_dropped(&state, &target("Vendor__c", json!({"Name": "Acme"}))));
        let deleted = RecordState { dst: super::super::state::DELETED.into(), ..state.clone() };
        assert!(!only_dropped(&deleted, &target("Account", json!({"Name": "Acme"}))));
        assert!(!only_dropped(&RecordState { fields: None, ..state }, &target("Account", json!({"Name": "Acme"}))));
    }
}
