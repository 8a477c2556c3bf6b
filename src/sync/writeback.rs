//! Salesforce → NetSuite for vendors. Each run first polls Salesforce for
//! records changed since its cursor (`SystemModstamp`, rewound by the
//! overlap window), then merges each with NetSuite's record against the
//! base both last agreed on (the record state): edits made on one side go
//! to the other, a field edited on both is decided by `vendor_conflict`.
//!
//! No echo: the base is what Salesforce holds once a write lands, so the
//! connector's own writes come back from either side as "no change". A
//! record new in Salesforce is created in NetSuite by `PUT eid:<Salesforce
//! Id>`, which finds the same record when repeated after a crash, and its
//! NetSuite id is then written back to Salesforce. A record deleted in
//! Salesforce makes its NetSuite record inactive.

use super::merge::{self, ConflictPolicy, Merged, Modified};
use super::queues::FailedWriteback;
use super::run::Run;
use super::state::{DELETED, RecordState, given_fields, hashed_payload, source_hash};
use crate::mapping::Back;
use crate::mapping::EXTERNAL_ID_FIELD;
use crate::mapping::writeback::{Reference, WritebackMapping};
use crate::model::{
    AuditAction, AuditEntry, AuditTransformations, ConnectorError, FieldChange, NetSuiteRecord, OutcomeKind,
    PlanAction, PlannedWrite, RecordKind, ReplayScope, Result,
};
use crate::netsuite::records::RecordRef;
use crate::netsuite::suiteql::internal_id;
use crate::salesforce::changes::{Changed, plain_datetime, soql_datetime};
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::HashMap;

/// Salesforce's values of fields written back, each as NetSuite is sent it
/// and as Salesforce is then to hold it (see [`Pass::settle`]).
type Settled = Vec<(String, Back)>;

/// Polls Salesforce and writes what changed there to NetSuite.
pub(super) fn sync(run: &Run<'_>, kind: RecordKind, policy: ConflictPolicy) -> Result<()> {
    let Some(section) = run.settings.mapping.writeback(kind) else { return Ok(()) };
    let spec = run.settings.mapping.target_spec(kind)?;
    // A field put back into the mapping (or into the write-back): values
    // entered in Salesforce while it was out were polled already, and the
    // re-read would write NetSuite's over them. A cursor is kept for the
    // fields it polled for; for others every record is polled again, so
    // each goes through the merge. A run stopped in that poll goes on from
    // where it stopped.
    let tag = polled_fields_tag(run, kind, section)?;
    let since = match run.state.salesforce_cursor(kind, &tag)? {
        Some(c) => Some(soql_datetime(&c, i64::from(run.settings.netsuite.overlap_secs))?),
        None => None,
    };
    let pass = Pass::new(run, kind, section, policy, &spec.sobject);
    let mut next: Option<String> = None;
    loop {
        let page = run.sink.changed_page(&spec.sobject, &spec.fields, since.as_deref(), next.as_deref())?;
        // A page stopped part-way still queues the failures it met.
        let paged = pass.page(&page.records);
        pass.keep_failures()?;
        paged?;
        if let Some(last) = page.records.last() {
            run.state.save_salesforce_cursor(kind, &last.modstamp, &tag)?;
        }
        run.renew()?;
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(()),
        }
    }
}

/// A short tag of the fields the poll merges: the written-back fields the
/// forward mapping writes too (`Pass::linked` compares those).
fn polled_fields_tag(run: &Run<'_>, kind: RecordKind, section: &WritebackMapping) -> Result<String> {
    let forward = &run.settings.mapping.object(kind)?.field;
    let mut fields: Vec<String> =
        section.sources().into_iter().filter(|s| forward.iter().any(|f| f.target == *s)).collect();
    fields.sort_unstable();
    fields.dedup();
    Ok(format!("{:08x}", xxhash_rust::xxh3::xxh3_64(fields.join(",").as_bytes()) as u32))
}

/// Sends the failed Salesforce → NetSuite writes in `scope` again: their
/// Salesforce records are read again and merged afresh, so a replay never
/// sends a stale value.
pub(super) fn replay(run: &Run<'_>, kind: RecordKind, policy: ConflictPolicy, scope: &ReplayScope) -> Result<()> {
    let Some(section) = run.settings.mapping.writeback(kind) else { return Ok(()) };
    let spec = run.settings.mapping.target_spec(kind)?;
    let pass = Pass::new(run, kind, section, policy, &spec.sobject);
    pass.replaying.set(true);
    // A page of Salesforce records at a time, however many failed; each
    // page's failures are kept before the next, not held to the end.
    run.queues.writeback_keys(kind, &mut |keys| {
        for part in keys.chunks(run.queue_part()) {
            let queued: Vec<FailedWriteback> = run
                .queues
                .writebacks_at(part)?
                .into_iter()
                .filter(|f| {
                    scope.covers(kind, &f.run_id, |id| f.salesforce_id == id || f.netsuite_id.as_deref() == Some(id))
                })
                .collect();
            if queued.is_empty() {
                continue;
            }
            let ids: Vec<&str> = queued.iter().map(|f| f.salesforce_id.as_str()).collect();
            pass.again(&spec.fields, &ids)?;
        }
        Ok(())
    })
}

/// Merges again, now, the Salesforce records whose edits NetSuite refused
/// (their failures wait for replay): NetSuite changed them since, and the
/// forward pass would write its record over those edits. The merge takes
/// NetSuite's changes to Salesforce and keeps Salesforce's edits there.
pub(super) fn merge_again(
    run: &Run<'_>,
    kind: RecordKind,
    policy: ConflictPolicy,
    salesforce_ids: &[&str],
) -> Result<()> {
    let Some(section) = run.settings.mapping.writeback(kind) else { return Ok(()) };
    let spec = run.settings.mapping.target_spec(kind)?;
    let pass = Pass::new(run, kind, section, policy, &spec.sobject);
    pass.replaying.set(true);
    pass.again(&spec.fields, salesforce_ids)
}

struct Pass<'p, 'r> {
    run: &'p Run<'r>,
    kind: RecordKind,
    section: &'p WritebackMapping,
    policy: ConflictPolicy,
    sobject: &'p str,
    /// Payment terms by name, read from NetSuite when first needed.
    terms: RefCell<Option<HashMap<String, String>>>,
    /// Writes that failed on their data, kept for replay.
    failures: RefCell<Vec<FailedWriteback>>,
    /// Salesforce records handled without a failure.
    done: RefCell<Vec<String>>,
    /// A replay: a record Salesforce did not change since the base is still
    /// merged (its earlier write failed).
    replaying: std::cell::Cell<bool>,
    /// The `SystemModstamp` of each record of the page at hand, kept with
    /// its failure.
    modstamps: RefCell<HashMap<String, String>>,
    /// Records of the page at hand whose earlier failure waits for replay:
    /// merged again whatever changed (see `linked`).
    queued: RefCell<std::collections::HashSet<String>>,
}

/// Whether Salesforce's value `held` of a field only NetSuite writes is an
/// edit to set back to `mapped`. Only a checkbox is compared: Salesforce
/// stores other values in forms of its own (an Id's 18 characters, a
/// decimal's scale, a flag in a text field as `"true"`), and a blank may be
/// filled by the org's automation; either, set back, would come back at
/// every poll.
fn set_back(mapped: &Value, held: Option<&Value>) -> bool {
    matches!((mapped, held), (Value::Bool(m), Some(Value::Bool(h))) if m != h)
}

/// A NetSuite internal id in a Salesforce field (text or number).
fn netsuite_id(fields: &Map<String, Value>) -> Option<String> {
    match fields.get(EXTERNAL_ID_FIELD) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl<'p, 'r> Pass<'p, 'r> {
    fn new(
        run: &'p Run<'r>,
        kind: RecordKind,
        section: &'p WritebackMapping,
        policy: ConflictPolicy,
        sobject: &'p str,
    ) -> Self {
        Pass {
            run,
            kind,
            section,
            policy,
            sobject,
            terms: RefCell::new(None),
            failures: RefCell::new(Vec::new()),
            done: RefCell::new(Vec::new()),
            replaying: std::cell::Cell::new(false),
            modstamps: RefCell::new(HashMap::new()),
            queued: RefCell::new(Default::default()),
        }
    }

    /// Merges the Salesforce records `ids` (failed write-backs) again,
    /// read afresh; those deleted since have nothing left to send.
    fn again(&self, fields: &[String], ids: &[&str]) -> Result<()> {
        let records = self.run.sink.changed_by_id(self.sobject, fields, ids)?;
        let gone: Vec<&str> = ids.iter().copied().filter(|id| !records.iter().any(|r| r.id == *id)).collect();
        self.run.queues.remove_writebacks(self.kind, &gone)?;
        let paged = self.page(&records);
        self.keep_failures()?;
        paged
    }

    /// Queues this page's failures for replay and clears the queued
    /// failures of records written since.
    fn keep_failures(&self) -> Result<()> {
        let done = std::mem::take(&mut *self.done.borrow_mut());
        let failed = std::mem::take(&mut *self.failures.borrow_mut());
        let cleared: Vec<&str> =
            done.iter().map(String::as_str).filter(|id| !failed.iter().any(|f| f.salesforce_id == *id)).collect();
        self.run.queues.remove_writebacks(self.kind, &cleared)?;
        for f in &failed {
            self.run.queues.put_writeback(f)?;
        }
        Ok(())
    }

    /// The audit row of an outcome; a write to NetSuite that landed is counted.
    fn entry(&self, action: AuditAction, netsuite_id: &str, sf: &str, outcome: &str, detail: Value) -> AuditEntry {
        let wrote = matches!(
            action,
            AuditAction::NetSuiteWrite | AuditAction::NetSuiteCreate | AuditAction::NetSuiteInactivate
        );
        if wrote && outcome != "failed" {
            self.run.count_written_back(self.kind);
        }
        AuditEntry {
            run_id: self.run.request.run_id.clone(),
            kind: self.kind,
            action,
            netsuite_id: netsuite_id.to_string(),
            salesforce_id: Some(sf.to_string()),
            outcome: outcome.to_string(),
            transformations: AuditTransformations::Whole(detail.to_string()),
            error: None,
        }
    }

    fn failed(&self, action: AuditAction, netsuite_id: &str, sf: &str, error: &ConnectorError) -> AuditEntry {
        self.run.count(self.kind, OutcomeKind::Failed);
        self.failures.borrow_mut().push(FailedWriteback {
            kind: self.kind,
            salesforce_id: sf.to_string(),
            netsuite_id: (!netsuite_id.is_empty()).then(|| netsuite_id.to_string()),
            run_id: self.run.request.run_id.clone(),
            error: error.to_string(),
            // A link Salesforce refused is tried again at each read, as
            // the record stays unlinked (a lock, a rule fixed since).
            modstamp: (action != AuditAction::Link).then(|| self.modstamps.borrow().get(sf).cloned()).flatten(),
            holds: None,
        });
        AuditEntry {
            outcome: "failed".into(),
            error: Some(error.to_string()),
            ..self.entry(action, netsuite_id, sf, "failed", json!([]))
        }
    }

    /// Counts NetSuite record `id` as this run's forward pass would have:
    /// read, and Salesforce updated or not; that pass then leaves it be.
    fn merged(&self, id: &str, updated: bool) {
        self.run.count_read(self.kind, 1);
        self.run.count(self.kind, if updated { OutcomeKind::Updated } else { OutcomeKind::Unchanged });
        self.run.note_merged(self.kind, id);
    }

    /// As [`Pass::merged`], for a record whose write-back failed (counted
    /// then): one outcome per record read.
    fn merged_failed(&self, id: &str) {
        self.run.count_read(self.kind, 1);
        self.run.note_merged(self.kind, id);
    }

    fn not_in_netsuite(&self, id: &str) -> ConnectorError {
        ConnectorError::NetSuite(format!("{} {id} is not in NetSuite (deleted?)", self.kind))
    }

    fn term_id(&self, name: &str) -> Result<Option<String>> {
        if self.terms.borrow().is_none() {
            *self.terms.borrow_mut() = Some(self.run.source.term_ids()?);
        }
        let terms = self.terms.borrow();
        let Some(terms) = terms.as_ref() else { return Ok(None) };
        // A name typed in another case (`net 30`) is the term it names, when
        // only one term reads so.
        Ok(terms.get(name).cloned().or_else(|| {
            let mut like = terms.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name.trim()));
            match (like.next(), like.next()) {
                (Some((_, id)), None) => Some(id.clone()),
                _ => None,
            }
        }))
    }

    /// The name NetSuite gives the term `name` names (in any case, when
    /// only one term reads so): what the forward mapping brings back.
    fn term_name(&self, name: &str) -> Result<Option<String>> {
        let Some(id) = self.term_id(name)? else { return Ok(None) };
        let terms = self.terms.borrow();
        let named = terms.as_ref().and_then(|t| t.iter().find(|(_, i)| **i == id).map(|(n, _)| n.clone()));
        Ok(named)
    }

    /// Salesforce's `value` of field `f` as NetSuite is sent it and as
    /// Salesforce is then to hold it: what the forward mapping makes of it,
    /// a payment term as NetSuite names it. None: a value the write refuses
    /// (see [`Pass::body`], which says why).
    fn settle(&self, f: &str, value: &Value) -> Result<Option<Back>> {
        let Ok(mut back) = self.run.settings.mapping.back_value(self.kind, f, value) else { return Ok(None) };
        let term = self.section.field.iter().any(|w| w.source == f && w.reference == Some(Reference::Term));
        if term
            && let Value::String(name) = &back.netsuite
            && let Some(named) = self.term_name(name)?
        {
            // As the forward mapping shows NetSuite's name.
            let shown = self.run.settings.mapping.transformed(self.kind, f, named.clone()).unwrap_or(named);
            back.salesforce = Value::String(shown);
        }
        Ok(Some(back))
    }

    /// For a dry run: whether the run would refuse to send `changed` of
    /// Salesforce record `sf` before NetSuite sees it (a value the forward
    /// mapping could not bring back, a term NetSuite lacks; see
    /// [`Pass::body`]).
    /// A dry run's check of what NetSuite would be sent: true when it
    /// would be refused, which the plan says (under `id`, or the Salesforce
    /// id of a record NetSuite does not have yet).
    fn refused_back(
        &self,
        id: &str,
        sf: &str,
        changed: &Map<String, Value>,
        agreed: &Map<String, Value>,
    ) -> Result<bool> {
        match self.body(sf, changed, agreed) {
            Ok(_) => Ok(false),
            Err(e) if e.is_about_data() => {
                self.run.writer.note(PlannedWrite {
                    kind: self.kind,
                    netsuite_id: if id.is_empty() { sf.to_string() } else { id.to_string() },
                    action: PlanAction::Fail,
                    changes: Vec::new(),
                    error: Some(e.to_string()),
                });
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// The REST body for `changed` of Salesforce record `sf`, terms resolved;
    /// a value NetSuite cannot take fails naming the record.
    fn body(&self, sf: &str, changed: &Map<String, Value>, agreed: &Map<String, Value>) -> Result<Map<String, Value>> {
        // NetSuite may well take a value the forward mapping then refuses
        // (`n/a` as a phone): written back, it would stop the record's
        // forward sync until someone fixed it in NetSuite.
        let mut sent = Map::new();
        for (field, value) in changed {
            match self.run.settings.mapping.back_value(self.kind, field, value) {
                Ok(back) => sent.insert(field.clone(), back.netsuite),
                Err(why) => {
                    return Err(ConnectorError::Salesforce(format!(
                        "{} {sf}: {field} {why}; it is not written to NetSuite, where the mapping could not bring it \
                         back to Salesforce: correct it in Salesforce (the edit then reaches NetSuite at the next run)",
                        self.sobject
                    )));
                }
            };
        }
        let changed = &sent;
        // Resolve every term name first: the body builder's lookup cannot fail.
        let mut names: HashMap<String, Option<String>> = HashMap::new();
        for f in self.section.field.iter().filter(|f| f.reference == Some(crate::mapping::writeback::Reference::Term)) {
            if let Some(Value::String(name)) = changed.get(&f.source).or_else(|| agreed.get(&f.source)) {
                names.insert(name.clone(), self.term_id(name)?);
            }
        }
        self.section
            .body(changed, agreed, &|name| names.get(name).cloned().flatten())
            .map_err(|e| e.with_prefix(&format!("{} {sf}: ", self.sobject)))
    }

    fn page(&self, records: &[Changed]) -> Result<()> {
        *self.modstamps.borrow_mut() = records.iter().map(|r| (r.id.clone(), r.modstamp.clone())).collect();
        let (deleted, live): (Vec<&Changed>, Vec<&Changed>) = records.iter().partition(|r| r.deleted);
        // Read again as it was when its write failed (the poll re-reads an
        // overlap window behind its cursor): it waits for replay, or for
        // the next change on either side, rather than failing every run.
        let live = if self.replaying.get() {
            live
        } else {
            let ids: Vec<&str> = live.iter().map(|r| r.id.as_str()).collect();
            let waiting = self.run.queues.writebacks_of(self.kind, &ids)?;
            let live: Vec<(&Changed, bool)> = live
                .into_iter()
                .zip(waiting)
                .filter(|(r, w)| !w.as_ref().is_some_and(|w| w.unchanged_since(&r.modstamp, &r.fields)))
                .map(|(r, w)| (r, w.is_some()))
                .collect();
            *self.queued.borrow_mut() = live.iter().filter(|(_, q)| *q).map(|(r, _)| r.id.clone()).collect();
            live.into_iter().map(|(r, _)| r).collect()
        };
        let (linked, new): (Vec<&Changed>, Vec<&Changed>) =
            live.into_iter().partition(|r| netsuite_id(&r.fields).is_some());
        let (linked, mistyped): (Vec<&Changed>, Vec<&Changed>) =
            linked.into_iter().partition(|r| netsuite_id(&r.fields).is_some_and(|id| internal_id(&id).is_ok()));
        self.deleted(&deleted)?;
        self.mistyped(&mistyped);
        self.linked(&linked)?;
        self.created(&new)
    }

    /// Records whose NetSuite id field holds something that is not an
    /// internal id (typed by hand): each fails alone, kept for replay once
    /// corrected, and no other record waits for it.
    fn mistyped(&self, records: &[&Changed]) {
        let audit = records
            .iter()
            .map(|record| {
                let typed = netsuite_id(&record.fields).unwrap_or_default();
                let error = ConnectorError::Salesforce(format!(
                    "{} {} has {EXTERNAL_ID_FIELD} `{}`, which is not a NetSuite internal id (decimal digits): set \
                     it to the {}'s internal id, or clear it to have the connector create the {} in NetSuite",
                    self.sobject,
                    record.id,
                    typed.escape_debug(),
                    self.kind,
                    self.kind
                ));
                self.failed(AuditAction::NetSuiteWrite, "", &record.id, &error)
            })
            .collect();
        self.run.audit(audit);
    }

    /// Records deleted in Salesforce. NetSuite is the system of record, so
    /// nothing is deleted there: the linked NetSuite record is made inactive
    /// (reversible; reactivating it in NetSuite brings it back to
    /// Salesforce), and the state remembers the deletion so the forward
    /// pass does not recreate the record while it stays inactive.
    fn deleted(&self, records: &[&Changed]) -> Result<()> {
        let run = self.run;
        let mut linked: Vec<(&Changed, String)> = Vec::new();
        for record in records {
            match netsuite_id(&record.fields).filter(|id| internal_id(id).is_ok()) {
                Some(id) => linked.push((record, id)),
                // Never reached NetSuite (none, or not an id): only a queued
                // failure to forget.
                None => self.done.borrow_mut().push(record.id.clone()),
            }
        }
        if linked.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = linked.iter().map(|(_, id)| id.as_str()).collect();
        let states = run.state.records(self.kind, &ids)?;
        let (mut audit, mut states_out) = (Vec::new(), Vec::new());
        let mut stopped = None;
        for ((record, id), state) in linked.iter().zip(states) {
            // As in `linked`: a stop ends the run between two records.
            if let Err(e) = run.checkpoint() {
                stopped = Some(e);
                break;
            }
            // Only the record the link names (not a stray copy carrying the
            // same NetSuite id), and only once (the overlap window re-reads it).
            // Nor one NetSuite deleted: the connector deleted it in Salesforce.
            let mine = |s: &RecordState| s.sf.as_deref() == Some(record.id.as_str()) && !s.sf_deleted;
            let Some(state) = state.filter(|s| mine(s) && s.src != DELETED) else {
                self.done.borrow_mut().push(record.id.clone());
                continue;
            };
            let body = Map::from_iter([("isInactive".to_string(), Value::Bool(true))]);
            if run.writer.plans() {
                self.plan(PlanAction::NetSuiteUpdate, id, &body, None);
                self.merged(id, false);
                run.writer.note_absent((self.kind, id.clone()));
                continue;
            }
            let what = format!("inactivation of NetSuite {} {id} (Salesforce {} was deleted)", self.kind, record.id);
            // NetSuite's 404 is confirmed by SuiteQL before the vendor counts
            // as deleted there too (nothing to inactivate; its deletion
            // reaches Salesforce's record, gone already, as a deletion done).
            let present = |found: bool| -> Result<bool> {
                if found {
                    return Ok(true);
                }
                let columns = run.settings.mapping.columns(self.kind);
                Ok(!run.source.fetch_many(self.kind, &[id.as_str()], &columns)?.is_empty())
            };
            match run.source.patch_if_present(&self.section.record, id, &body, &what).and_then(|found| {
                match (found, present(found)?) {
                    (false, true) => Err(ConnectorError::NetSuite(format!(
                        "{what}: the record API answered 404 Not Found, while SuiteQL reads the {} (check the role's \
                         access to it)",
                        self.kind
                    ))),
                    (found, _) => Ok(found),
                }
            }) {
                Ok(false) => {
                    let detail = json!([{ "field": "isInactive", "rule": "deleted-in-salesforce",
                                          "detail": "deleted in NetSuite too" }]);
                    audit.push(self.entry(AuditAction::SkipDeletedInNetSuite, id, &record.id, "unchanged", detail));
                    states_out.push((id.clone(), RecordState { sf_deleted: true, ..state }));
                    self.done.borrow_mut().push(record.id.clone());
                }
                Ok(true) => {
                    let detail = json!([{ "field": "isInactive", "rule": "deleted-in-salesforce", "new": true }]);
                    audit.push(self.entry(AuditAction::NetSuiteInactivate, id, &record.id, "updated", detail));
                    states_out.push((id.clone(), RecordState { sf_deleted: true, ..state }));
                    self.done.borrow_mut().push(record.id.clone());
                    self.merged(id, false);
                }
                Err(e) if e.is_about_data() => {
                    audit.push(self.failed(AuditAction::NetSuiteInactivate, id, &record.id, &e));
                }
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        // Audit first (see `stage`).
        run.audit(audit);
        run.state.save_records(self.kind, states_out)?;
        stopped.map_or(Ok(()), Err)
    }

    /// Salesforce records that carry a NetSuite id: merge and write.
    fn linked(&self, records: &[&Changed]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let run = self.run;
        let ids: Vec<String> = records.iter().filter_map(|r| netsuite_id(&r.fields)).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let states = run.state.records(self.kind, &id_refs)?;
        let sources = self.section.sources();
        // Fields only the forward mapping writes (`NetSuite_Inactive__c`) are
        // NetSuite's alone: one edited in Salesforce is set back by the merge.
        let forward_only: Vec<String> = (run.settings.mapping.object(self.kind)?.field.iter())
            .map(|f| f.target.clone())
            .filter(|f| !sources.contains(f))
            .collect();
        let differs = |f: &String, record: &Changed, base: &Map<String, Value>| match sources.contains(f) {
            true => !merge::same(record.fields.get(f), base.get(f)),
            false => base.get(f).is_some_and(|b| set_back(b, record.fields.get(f))),
        };
        // Only records Salesforce changed since the base need NetSuite's side.
        let mut changed: Vec<(usize, Option<Map<String, Value>>)> = Vec::new();
        let (mut audit, mut states_out) = (Vec::new(), Vec::new());
        for (i, (record, state)) in records.iter().zip(&states).enumerate() {
            // Put in doubt by a stopped run's write: what Salesforce holds
            // may be that run's output rather than an edit, so NetSuite, the
            // system of record, decides (the forward pass writes it again).
            if state.as_ref().is_some_and(super::in_flight::is_in_doubt) {
                continue;
            }
            // Deleted in NetSuite: the change is the connector's own deletion
            // flag (an echo), or an edit of a vendor NetSuite no longer has.
            if let Some(gone) = state.as_ref().filter(|s| s.src == DELETED) {
                self.done.borrow_mut().push(record.id.clone());
                let (entry, kept) = self.after_deletion(id_refs[i], record, gone, &sources);
                audit.extend(entry);
                states_out.extend(kept.map(|k| (id_refs[i].to_string(), k)));
                continue;
            }
            let base = state.as_ref().and_then(given_fields);
            // A record whose failure waits is merged again once Salesforce
            // changed it in any way: an edit NetSuite refused may be undone
            // (the merge then finds nothing to send, says so and settles
            // it), and NetSuite's side Salesforce refused is still to send.
            let edited = match &base {
                Some(b) => {
                    self.replaying.get()
                        || self.queued.borrow().contains(&record.id)
                        || sources.iter().chain(&forward_only).any(|f| differs(f, record, b))
                }
                None => true,
            };
            if edited {
                changed.push((i, base));
            }
        }
        // Edits of vendors NetSuite deleted, recorded before the read below
        // (which may fail), so the next poll does not audit them again.
        run.audit(std::mem::take(&mut audit));
        run.state.save_records(self.kind, std::mem::take(&mut states_out))?;
        if changed.is_empty() {
            return Ok(());
        }
        let wanted: Vec<&str> = changed.iter().map(|(i, _)| id_refs[*i]).collect();
        let columns = run.settings.mapping.columns(self.kind);
        let netsuite: HashMap<String, NetSuiteRecord> =
            run.source.fetch_many(self.kind, &wanted, &columns)?.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut stopped = None;
        'records: for (i, base) in changed {
            // Each record's writes are their own step: a run asked to stop
            // (or whose lease is gone) ends between two, all before recorded.
            if let Err(e) = run.checkpoint() {
                stopped = Some(e);
                break;
            }
            let (record, id) = (records[i], id_refs[i]);
            let Some(ns_record) = netsuite.get(id) else {
                // Deleted in NetSuite since the last run: the deletion reaches
                // Salesforce the other way (this run's forward pass), and the
                // edit is audited as one NetSuite cannot take, once, as
                // after that pass.
                match &states[i] {
                    Some(state) => {
                        self.done.borrow_mut().push(record.id.clone());
                        let (entry, kept) = self.after_deletion(id, record, state, &sources);
                        // Without a base the change is still an edit here (the
                        // deletion's flag has not been written yet).
                        let entry = entry.or_else(|| {
                            let fields: Vec<Value> = sources
                                .iter()
                                .map(|f| json!({ "field": f, "rule": "deleted-in-netsuite", "new": record.fields.get(f) }))
                                .collect();
                            given_fields(state).is_none().then(|| {
                                self.entry(AuditAction::SkipDeletedInNetSuite, id, &record.id, "unchanged", Value::Array(fields))
                            })
                        });
                        audit.extend(entry);
                        states_out.extend(kept.map(|k| (id.to_string(), k)));
                    }
                    None => {
                        audit.push(self.failed(AuditAction::NetSuiteWrite, id, &record.id, &self.not_in_netsuite(id)))
                    }
                }
                continue;
            };
            let mapped = match run.settings.mapping.map(ns_record) {
                Ok(m) => m,
                Err(e) => {
                    // The forward pass would refuse the record too: one
                    // failure, kept for replay here (the edit waits with
                    // it), held back there this run and, as the forward
                    // pass notes it, in the overlap window of the next.
                    let e = match e {
                        ConnectorError::Config(m) => ConnectorError::Config(format!(
                            "the mapping cannot take this record's value: {m}; the Salesforce edit waits \
                             until NetSuite's value is corrected"
                        )),
                        other => other,
                    };
                    audit.push(self.failed(AuditAction::NetSuiteWrite, id, &record.id, &e));
                    self.merged_failed(id);
                    run.hold_back(self.kind, id);
                    if let Err(e) = run.queues.note_unmapped(self.kind, &[(id, &source_hash(ns_record))]) {
                        stopped = Some(e);
                        break 'records;
                    }
                    continue;
                }
            };
            let salesforce_modified = plain_datetime(&record.last_modified);
            let retyped = |field: &str, typed: &Value, netsuite: &Value| {
                let mapping = &run.settings.mapping;
                let back = mapping.back_value(self.kind, field, typed);
                mapping.normalizes_only(self.kind, field)
                    && back.is_ok_and(|b| merge::same(Some(&b.salesforce), Some(netsuite)))
            };
            let merge_by = |netsuite_modified: &str| {
                let modified = Modified { netsuite: netsuite_modified, salesforce: &salesforce_modified };
                merge::merge(
                    &sources,
                    base.as_ref(),
                    &mapped.target.fields,
                    &record.fields,
                    self.policy,
                    modified,
                    &retyped,
                )
            };
            let mut merged = merge_by(&ns_record.last_modified);
            let mut newest = None;
            // The newest edit wins a conflict: SuiteQL's time is in the
            // integration user's zone, Salesforce's in UTC; the record API
            // gives NetSuite's in UTC too (one call per conflicting record).
            if self.policy == ConflictPolicy::Newest && !merged.conflicts.is_empty() {
                let what = format!("the modification time of NetSuite {} {id}", self.kind);
                let utc = run.source.modified_utc(&self.section.record, id, &what);
                match utc.and_then(|t| t.ok_or_else(|| self.not_in_netsuite(id))) {
                    Ok(utc) => {
                        merged = merge_by(&utc);
                        newest = Some(json!({ "netsuite": utc, "salesforce": salesforce_modified }));
                    }
                    Err(e) if e.is_about_data() => {
                        audit.push(self.failed(AuditAction::NetSuiteWrite, id, &record.id, &e));
                        continue;
                    }
                    Err(e) => {
                        stopped = Some(e);
                        break 'records;
                    }
                }
            }
            // Fields the forward mapping writes that write-back does not take
            // (`NetSuite_Inactive__c`) are NetSuite's alone: changed since the
            // base, or a checkbox edited in Salesforce (see `set_back`), they
            // go to Salesforce with the merge, as the base saved below says
            // Salesforce holds them.
            for (f, v) in &mapped.target.fields {
                let was = base.as_ref().and_then(|b| b.get(f));
                let edited = set_back(v, record.fields.get(f));
                if f != EXTERNAL_ID_FIELD && !sources.contains(f) && (!merge::same(Some(v), was) || edited) {
                    merged.to_salesforce.insert(f.clone(), v.clone());
                }
            }
            // NetSuite is sent what it will hold (trimmed, a country as its
            // code); Salesforce takes what the forward mapping makes of that
            // (a phone in E.164, a term as NetSuite names it) and the base
            // records it, so the forward pass finds nothing to write and a
            // later edit on either side is compared with what both hold.
            let mut settled = Vec::new();
            for (f, v) in &merged.to_netsuite {
                match self.settle(f, v) {
                    Ok(back) => settled.extend(back.map(|b| (f.clone(), b))),
                    Err(e) => {
                        stopped = Some(e);
                        break 'records;
                    }
                }
            }
            let mut reformed = Vec::new();
            for (f, back) in settled {
                if !merge::same(Some(&back.salesforce), record.fields.get(&f)) {
                    merged.to_salesforce.insert(f.clone(), back.salesforce.clone());
                    reformed.push(f.clone());
                }
                // NetSuite already holds what it would be sent (`usa` typed
                // where it has `US`): only Salesforce's form is put right. A
                // value sent as typed (a phone's form) is still an edit.
                let held = back.netsuite == back.salesforce
                    && merge::same(Some(&back.salesforce), mapped.target.fields.get(&f));
                merged.agreed.insert(f.clone(), back.salesforce);
                match held {
                    true => merged.to_netsuite.remove(&f),
                    false => merged.to_netsuite.insert(f, back.netsuite),
                };
            }
            for c in &merged.conflicts {
                let winner = serde_json::to_value(c.winner).expect("a side serializes");
                let mut detail = json!({ "field": c.field, "netsuite": c.netsuite, "salesforce": c.salesforce,
                                         "winner": winner });
                // Left out when the two sides never agreed on the field.
                if let Some(base) = &c.base {
                    detail["base"] = base.clone();
                }
                // Under `newest`, the times compared (UTC).
                if let Some(modified) = &newest {
                    detail["modified"] = modified.clone();
                }
                let detail = json!([detail]);
                audit.push(self.entry(AuditAction::Conflict, id, &record.id, winner.as_str().unwrap_or(""), detail));
            }
            // Nothing to send either way (both sides agree by now: the same
            // edit made on both, a replayed failure since undone) still
            // leaves a row.
            if merged.to_netsuite.is_empty() && merged.to_salesforce.is_empty() {
                audit.push(self.entry(AuditAction::SkipUnchanged, id, &record.id, "unchanged", json!([])));
            }
            if run.writer.plans() {
                // Refused before NetSuite sees it, as the run refuses it.
                let refused = match self.refused_back(id, &record.id, &merged.to_netsuite, &merged.agreed) {
                    Ok(refused) => refused,
                    Err(e) => {
                        stopped = Some(e);
                        break 'records;
                    }
                };
                match refused {
                    // Salesforce keeps its edits as typed while they wait.
                    true => {
                        self.run.count(self.kind, OutcomeKind::Failed);
                        for f in &reformed {
                            merged.to_salesforce.remove(f);
                        }
                    }
                    // `old`: what NetSuite holds (the base may lack the field).
                    false => {
                        self.plan(PlanAction::NetSuiteUpdate, id, &merged.to_netsuite, Some(&mapped.target.fields))
                    }
                }
                self.plan(PlanAction::Update, id, &merged.to_salesforce, Some(&record.fields));
                match refused {
                    true => self.merged_failed(id),
                    false => self.merged(id, !merged.to_salesforce.is_empty()),
                }
                continue;
            }
            // The base once the writes below land: NetSuite's record as the
            // mapping gives it, with the merged values; with `pending`, the
            // fields still to reach Salesforce as Salesforce holds them, so
            // NetSuite's side of them is still a change to send (the forward
            // pass sends it) and Salesforce's copy is no edit. Salesforce's
            // edits NetSuite refused stay out of it: they are still edits
            // (the next merge sends them again), and the forward pass, which
            // compares NetSuite's record with this base, finds nothing to
            // overwrite them with.
            let state_of = |merged: &Merged, sent: bool, pending: bool| {
                let mut holds = mapped.target.clone();
                for (f, v) in merged.agreed.iter().filter(|(f, _)| sent || !merged.to_netsuite.contains_key(*f)) {
                    holds.fields.insert(f.clone(), v.clone());
                }
                if pending {
                    for f in merged.to_salesforce.keys() {
                        holds.fields.insert(f.clone(), record.fields.get(f).cloned().unwrap_or(Value::Null));
                    }
                }
                let (dst, fields) = hashed_payload(&holds);
                let src = states[i].as_ref().map(|s| s.src.clone()).unwrap_or_default();
                let state = RecordState {
                    src,
                    dst,
                    sf: Some(record.id.clone()),
                    fields: Some(fields),
                    org: None,
                    sf_deleted: false,
                };
                (id.to_string(), state)
            };
            // Refused (a value NetSuite cannot take), Salesforce's edits
            // wait for replay; NetSuite's side still goes to Salesforce below.
            let mut sent = true;
            if !merged.to_netsuite.is_empty() {
                match self.write(id, &record.id, &merged, &mapped.target.fields) {
                    Ok(entry) => {
                        // Recorded at once, with a base that says NetSuite
                        // holds it: a run that dies before Salesforce's write
                        // neither loses the row nor takes a later edit made
                        // in Salesforce for a conflict with this one.
                        audit.push(entry);
                        run.audit(std::mem::take(&mut audit));
                        states_out.push(state_of(&merged, true, true));
                        run.state.save_records(self.kind, std::mem::take(&mut states_out))?;
                    }
                    Err(e) if e.is_about_data() => {
                        audit.push(self.failed(AuditAction::NetSuiteWrite, id, &record.id, &e));
                        sent = false;
                        // Salesforce keeps its edits as typed while they wait.
                        for f in &reformed {
                            merged.to_salesforce.remove(f);
                        }
                    }
                    Err(e) => {
                        stopped = Some(e);
                        break 'records;
                    }
                }
            }
            // NetSuite's side of the merge goes to Salesforce here: the
            // forward pass sees only records NetSuite changed after its
            // cursor, which a base-less first merge need not be.
            if !merged.to_salesforce.is_empty() {
                let mut written = run.sink.set_fields(self.sobject, &record.id, &merged.to_salesforce);
                // Salesforce refusing the forward form of its own edits (a
                // validation rule on the phone's form) does not stop the
                // rest: sent again without them, it keeps them as typed and
                // the base says so (the forward pass then tries that form
                // and fails visibly).
                let carried = reformed.iter().any(|f| merged.to_salesforce.contains_key(f));
                if let Err(e) = written.as_ref().map_err(Clone::clone)
                    && e.is_about_data()
                    && carried
                {
                    let mut refused = Map::new();
                    for f in &reformed {
                        refused.extend(merged.to_salesforce.remove_entry(f));
                        merged.agreed.insert(f.clone(), record.fields.get(f).cloned().unwrap_or(Value::Null));
                    }
                    let changes: Vec<Value> = refused
                        .iter()
                        .map(|(f, v)| json!({ "field": f, "rule": "merge", "old": record.fields.get(f), "new": v }))
                        .collect();
                    audit.push(AuditEntry {
                        error: Some(e.to_string()),
                        ..self.entry(AuditAction::Write, id, &record.id, "failed", Value::Array(changes))
                    });
                    written = match merged.to_salesforce.is_empty() {
                        true => Ok(()),
                        false => run.sink.set_fields(self.sobject, &record.id, &merged.to_salesforce),
                    };
                }
                match written {
                    Ok(()) if merged.to_salesforce.is_empty() => {}
                    Ok(()) => {
                        // This write moves the record's `SystemModstamp`:
                        // its refused edit, waiting, is known by its fields.
                        if !sent {
                            let mut holds = record.fields.clone();
                            holds.extend(merged.to_salesforce.iter().map(|(f, v)| (f.clone(), v.clone())));
                            let mut failures = self.failures.borrow_mut();
                            if let Some(f) = failures.iter_mut().rev().find(|f| f.salesforce_id == record.id) {
                                f.holds = Some(holds);
                            }
                        }
                        let changes: Vec<Value> = merged
                            .to_salesforce
                            .iter()
                            .map(|(f, v)| json!({ "field": f, "rule": "merge", "old": record.fields.get(f), "new": v }))
                            .collect();
                        audit.push(self.entry(AuditAction::Write, id, &record.id, "updated", Value::Array(changes)));
                    }
                    Err(e) if e.is_about_data() => {
                        // What NetSuite took is agreed; NetSuite's side waits
                        // in the base as a change still to send, so a later
                        // edit in Salesforce is no conflict with it, and this
                        // run's forward pass leaves the record be (one failure).
                        // Refused by NetSuite too: one failure (counted and
                        // kept for replay then), two rows.
                        audit.push(match sent {
                            true => self.failed(AuditAction::Write, id, &record.id, &e),
                            false => AuditEntry {
                                error: Some(e.to_string()),
                                ..self.entry(AuditAction::Write, id, &record.id, "failed", json!([]))
                            },
                        });
                        states_out.push(state_of(&merged, sent, true));
                        self.merged_failed(id);
                        self.run.hold_back(self.kind, id);
                        continue;
                    }
                    Err(e) => {
                        stopped = Some(e);
                        break 'records;
                    }
                }
            }
            // The base becomes what both now hold. Neither side's copy of
            // these writes comes back as a change.
            states_out.push(state_of(&merged, sent, false));
            // Merged: an earlier failure of it is settled (unless this one
            // failed too, which `keep_failures` keeps).
            self.done.borrow_mut().push(record.id.clone());
            match sent {
                true => self.merged(id, !merged.to_salesforce.is_empty()),
                false => self.merged_failed(id),
            }
        }
        // Audit first (see `stage`).
        run.audit(audit);
        run.state.save_records(self.kind, states_out)?;
        stopped.map_or(Ok(()), Err)
    }

    /// A Salesforce change to a record NetSuite deleted: the deletion flag's
    /// echo (nothing to do), or an edit no NetSuite record can take, audited
    /// once. Returns the entry and the state that remembers what Salesforce
    /// now holds, so the next poll's overlap does not audit it again.
    fn after_deletion(
        &self,
        id: &str,
        record: &Changed,
        state: &RecordState,
        sources: &[String],
    ) -> (Option<AuditEntry>, Option<RecordState>) {
        let base = given_fields(state);
        let was = |f: &String| base.as_ref().and_then(|b| b.get(f));
        let edits: Vec<Value> = sources
            .iter()
            .filter(|f| !merge::same(record.fields.get(*f), was(f)))
            .map(|f| json!({ "field": f, "rule": "deleted-in-netsuite", "old": was(f), "new": record.fields.get(f) }))
            .collect();
        if base.is_some() && edits.is_empty() {
            return (None, None);
        }
        // Without a base (a state kept before bases were, or a record
        // restored from the Recycle Bin) the change may be the echo: taken
        // as the base, not audited.
        let entry = base
            .is_some()
            .then(|| self.entry(AuditAction::SkipDeletedInNetSuite, id, &record.id, "unchanged", Value::Array(edits)));
        let mut holds = base.unwrap_or_default();
        for f in sources {
            holds.insert(f.clone(), record.fields.get(f).cloned().unwrap_or(Value::Null));
        }
        let fields = serde_json::value::to_raw_value(&holds).ok();
        (entry, Some(RecordState { fields, ..state.clone() }))
    }

    /// A dry run's entry for fields one side would take (none: no entry).
    fn plan(&self, action: PlanAction, id: &str, fields: &Map<String, Value>, before: Option<&Map<String, Value>>) {
        if fields.is_empty() {
            return;
        }
        if matches!(action, PlanAction::NetSuiteUpdate | PlanAction::NetSuiteCreate) {
            self.run.count_written_back(self.kind);
        }
        let changes = fields
            .iter()
            .map(|(f, v)| FieldChange {
                field: f.clone(),
                old: before.and_then(|b| b.get(f)).cloned(),
                new: Some(v.clone()),
            })
            .collect();
        self.run.writer.note(PlannedWrite {
            kind: self.kind,
            netsuite_id: id.to_string(),
            action,
            changes,
            error: None,
        });
    }

    /// PATCHes the fields Salesforce won to the NetSuite record, which holds
    /// `netsuite` (through the forward mapping) until then.
    fn write(&self, id: &str, sf: &str, merged: &Merged, netsuite: &Map<String, Value>) -> Result<AuditEntry> {
        let body = self.body(sf, &merged.to_netsuite, &merged.agreed)?;
        let what = format!("update of NetSuite {} {id} from Salesforce {sf}", self.kind);
        // No default billing line yet: the one sent is added.
        let target = RecordRef::Id(id.to_string());
        self.run.source.write_keyed(&self.section.record, &target, &body, &what, false)?;
        let changes: Vec<Value> = merged
            .to_netsuite
            .iter()
            .map(|(f, v)| json!({ "field": f, "rule": "writeback", "old": netsuite.get(f), "new": v }))
            .collect();
        Ok(self.entry(AuditAction::NetSuiteWrite, id, sf, "updated", Value::Array(changes)))
    }

    /// Salesforce records without a NetSuite id: created in NetSuite (by
    /// external id, so a repeat finds the same record), then linked.
    fn created(&self, records: &[&Changed]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let run = self.run;
        let sources = self.section.sources();
        let mut audit = Vec::new();
        let mut made: Vec<(String, &Changed, Settled)> = Vec::new();
        let mut stopped = None;
        'records: for record in records {
            // As in `linked`: a stop ends the run between two records.
            if let Err(e) = run.checkpoint() {
                stopped = Some(e);
                break;
            }
            let values: Map<String, Value> = sources
                .iter()
                .filter_map(|f| record.fields.get(f).filter(|v| !v.is_null()).map(|v| (f.clone(), v.clone())))
                .collect();
            // As NetSuite is sent them, and as Salesforce is then to hold
            // them (see `linked`).
            let mut settled: Settled = Vec::new();
            for (f, v) in &values {
                match self.settle(f, v) {
                    Ok(back) => settled.extend(back.map(|b| (f.clone(), b))),
                    Err(e) => {
                        stopped = Some(e);
                        break 'records;
                    }
                }
            }
            if run.writer.plans() {
                // Refused before NetSuite sees it, as the run refuses it.
                if self.refused_back("", &record.id, &values, &record.fields)? {
                    self.run.count(self.kind, OutcomeKind::Failed);
                    continue;
                }
                // No NetSuite id yet: the plan names the Salesforce record.
                let sent: Map<String, Value> = settled.iter().map(|(f, b)| (f.clone(), b.netsuite.clone())).collect();
                self.plan(PlanAction::NetSuiteCreate, &record.id, &sent, None);
                // As the real run counts the new NetSuite record its forward
                // pass reads (the plan's NetSuite has none to read).
                self.run.count_read(self.kind, 1);
                self.run.count(self.kind, OutcomeKind::Unchanged);
                continue;
            }
            let outcome = self.body(&record.id, &values, &record.fields).and_then(|mut body| {
                for (k, v) in &self.section.defaults {
                    body.entry(k.clone()).or_insert_with(|| v.clone());
                }
                let what = format!("creation in NetSuite of {} {} from Salesforce", self.sobject, record.id);
                let target = RecordRef::External(record.id.clone());
                // A repeat (the link failed, the run died before it) finds
                // the vendor made before: its billing line is keyed, or
                // NetSuite would add a second one (unkeyed lines append). A
                // look that fails on its data (a role that may create but
                // not view vendors) leaves the line unkeyed, as before.
                run.source.write_keyed(&self.section.record, &target, &body, &what, true)
            });
            let id = match outcome {
                Ok(id) => id,
                Err(e) if e.is_about_data() => {
                    audit.push(self.failed(AuditAction::NetSuiteCreate, "", &record.id, &e));
                    continue;
                }
                Err(e) => {
                    stopped = Some(e);
                    break 'records;
                }
            };
            // What NetSuite was sent.
            let detail: Vec<Value> =
                settled.iter().map(|(f, b)| json!({ "field": f, "rule": "writeback", "new": b.netsuite })).collect();
            audit.push(self.entry(AuditAction::NetSuiteCreate, &id, &record.id, "created", Value::Array(detail)));
            // Recorded at once: a run that dies before the link loses no row
            // (the next one links it, its PUT finding the same record).
            run.audit(std::mem::take(&mut audit));
            let link = Map::from_iter([(EXTERNAL_ID_FIELD.to_string(), Value::String(id.clone()))]);
            match run.sink.set_fields(self.sobject, &record.id, &link) {
                Ok(()) => audit.push(self.entry(AuditAction::Link, &id, &record.id, "updated", json!([]))),
                Err(e) if e.is_about_data() => {
                    // The next poll sees the record unlinked again (a link
                    // failure keeps no stamp, see `failed`, so it is tried
                    // again); the PUT by external id finds the same NetSuite
                    // record. This
                    // run's forward pass leaves the new record be, or it would
                    // upsert a second Vendor__c for it.
                    audit.push(self.failed(AuditAction::Link, &id, &record.id, &e));
                    self.run.hold_back(self.kind, &id);
                    continue;
                }
                Err(e) => {
                    stopped = Some(e);
                    break 'records;
                }
            }
            // Linked, Salesforce takes the forward mapping's form of what it
            // sent (a phone in E.164), as a merge gives it; refused (a
            // validation rule on that form), it keeps them as typed and the
            // base says so.
            let reform: Map<String, Value> = settled
                .iter()
                .filter(|(f, back)| !merge::same(Some(&back.salesforce), record.fields.get(f)))
                .map(|(f, back)| (f.clone(), back.salesforce.clone()))
                .collect();
            if !reform.is_empty() {
                let changes: Vec<Value> = reform
                    .iter()
                    .map(|(f, v)| json!({ "field": f, "rule": "merge", "old": record.fields.get(f), "new": v }))
                    .collect();
                let detail = Value::Array(changes);
                match run.sink.set_fields(self.sobject, &record.id, &reform) {
                    Ok(()) => audit.push(self.entry(AuditAction::Write, &id, &record.id, "updated", detail)),
                    Err(e) if e.is_about_data() => {
                        for (f, back) in settled.iter_mut().filter(|(f, _)| reform.contains_key(f)) {
                            back.salesforce = record.fields.get(f).cloned().unwrap_or(Value::Null);
                        }
                        audit.push(AuditEntry {
                            error: Some(e.to_string()),
                            ..self.entry(AuditAction::Write, &id, &record.id, "failed", detail)
                        });
                    }
                    Err(e) => {
                        // Created and linked: its state is still saved below,
                        // as Salesforce holding what it was sent.
                        for (f, back) in settled.iter_mut().filter(|(f, _)| reform.contains_key(f)) {
                            back.salesforce = record.fields.get(f).cloned().unwrap_or(Value::Null);
                        }
                        made.push((id, record, settled));
                        stopped = Some(e);
                        break 'records;
                    }
                }
            }
            self.done.borrow_mut().push(record.id.clone());
            self.merged(&id, false);
            made.push((id, record, settled));
        }
        // Audit first (see `stage`), and before the read below, which may fail.
        run.audit(audit);
        // Record states, so neither side's copy of the new record comes back
        // as a change: NetSuite's record as the mapping gives it, with the
        // values Salesforce holds.
        let ids: Vec<&str> = made.iter().map(|(id, _, _)| id.as_str()).collect();
        let columns = run.settings.mapping.columns(self.kind);
        let netsuite: HashMap<String, NetSuiteRecord> = if ids.is_empty() {
            HashMap::new()
        } else {
            // A failure here after one in the loop reports the first.
            match run.source.fetch_many(self.kind, &ids, &columns) {
                Ok(records) => records.into_iter().map(|r| (r.id.clone(), r)).collect(),
                Err(e) => return Err(stopped.unwrap_or(e)),
            }
        };
        let mut states = Vec::new();
        for (id, record, settled) in &made {
            let Some(Ok(mapped)) = netsuite.get(id).map(|r| run.settings.mapping.map(r)) else { continue };
            let mut holds = mapped.target;
            for f in &sources {
                let held = match settled.iter().find(|(s, _)| s == f) {
                    Some((_, back)) => back.salesforce.clone(),
                    None => record.fields.get(f).cloned().unwrap_or(Value::Null),
                };
                holds.fields.insert(f.clone(), held);
            }
            let (dst, fields) = hashed_payload(&holds);
            states.push((
                id.clone(),
                RecordState {
                    src: String::new(),
                    dst,
                    sf: Some(record.id.clone()),
                    fields: Some(fields),
                    org: None,
                    sf_deleted: false,
                },
            ));
        }
        run.state.save_records(self.kind, states)?;
        stopped.map_or(Ok(()), Err)
    }
}
