//! One run's context: what it reads from and writes to, its lease, and what
//! it has done so far (kept even when the run stops part-way).

use super::in_flight::InFlight;
use super::lease::Keeper;
use super::queues::{ParkedWrite, QueuedWrite, Queues};
use super::state::{RecordState, State, hashed_payload};
use super::write::Writer;
use super::zone::Zone;
use crate::model::{
    AuditAction, AuditEntry, AuditTransformations, ConnectorError, KindCounts, MappedRecord, OutcomeKind, PlanAction,
    PlannedWrite, ReadProblem, RecordKind, Result, SObjectRecord, SyncRequest, Transformation,
};
use crate::netsuite::NetSuiteSource;
use crate::ports::Host;
use crate::salesforce::SalesforceSink;
use crate::salesforce::describe::{Cascade, Checked};
use crate::settings::{DeleteAction, Settings};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};

/// A parent a record links to: its kind and NetSuite id.
pub(super) type ParentRef = (RecordKind, String);

/// A record ready to write: what to send, the state to keep once it lands
/// (its `fields` are the target's, filled in then), and the parents that
/// must be in Salesforce first.
#[derive(Debug, Clone)]
pub(super) struct Staged {
    pub mapped: MappedRecord,
    pub state: RecordState,
    pub parents: Vec<ParentRef>,
    /// The target's fields as JSON text, as hashed into `state.dst`: the
    /// state keeps it once the write lands.
    pub payload: Box<RawValue>,
    /// Salesforce was never given this record: the transformations carry no
    /// `old` or `new` yet, every `new` being the target's field (written
    /// from the payload when audited, set by [`Staged::transformations`]
    /// where the values are kept) — most of a first sync's records, whose
    /// every value copied once more cost a twentieth of the component's time.
    pub fresh: bool,
    /// Set by a dry run compared live that read the live record already
    /// (to find it drifted): what Salesforce holds, None when it has no
    /// record under the external id. The plan uses it instead of reading
    /// the record a second time.
    pub seen_live: Option<Option<Map<String, Value>>>,
    /// Of a kind written both ways, a record Salesforce holds: the target
    /// with only the fields NetSuite changed since what both last agreed on.
    /// Sent instead of the whole target, so a Salesforce edit to another
    /// field made after this run's poll stays for the next poll to take to
    /// NetSuite; a record this creates (gone from Salesforce meanwhile) is
    /// sent again whole (see `CompositeBatch::again`).
    pub changed_only: Option<Box<SObjectRecord>>,
    /// Sent as `changed_only`, Salesforce created it: counted and relinked
    /// as created when the whole record sent again lands.
    pub created: bool,
}

impl Staged {
    /// As kept in a queue: `reason` says why it waits. The state's copy of
    /// the payload is left out (it is the target's fields).
    pub fn queued(&self, run_id: &str, reason: String) -> QueuedWrite {
        debug_assert!(self.state.fields.is_none(), "a staged state's payload is the target's");
        QueuedWrite {
            run_id: run_id.into(),
            kind: self.mapped.source_kind,
            netsuite_id: self.mapped.source_id.clone(),
            target: self.mapped.target.clone(),
            state: self.state.clone(),
            transformations: self.transformations(),
            reason,
            waits_for: self.parents.clone(),
            failing_since: None,
        }
    }
}

impl Staged {
    /// Its transformations with their `old` and `new` values set.
    pub fn transformations(&self) -> Vec<Transformation> {
        let mut list = self.mapped.transformations.clone();
        if self.fresh {
            super::state::annotate_changes(&mut list, None, &self.mapped.target.fields);
        }
        list
    }

    /// The target's fields when the transformations' `new` values are
    /// still to be taken from them (see [`Staged::fresh`]).
    pub fn fresh_fields(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.fresh.then_some(&self.mapped.target.fields)
    }

    /// As parked while its Bulk API job runs: its transformations split as
    /// the audit keeps them.
    pub fn parked(&self) -> ParkedWrite {
        let list = &self.mapped.transformations;
        // None: the values are the payload, parked once as `fields`.
        let transformations = (!Transformation::payload_holds_values(list, self.fresh_fields())).then(|| {
            let values = Transformation::write_values(list, self.payload.get(), self.fresh_fields());
            RawValue::from_string(values).expect("serde_json wrote valid JSON")
        });
        let target = &self.mapped.target;
        ParkedWrite {
            kind: self.mapped.source_kind,
            netsuite_id: self.mapped.source_id.clone(),
            sobject: target.sobject.clone(),
            external_id_field: target.external_id_field.clone(),
            external_id: target.external_id.clone(),
            state: self.state.clone(),
            fields: self.payload.clone(),
            transformations,
            shape: None,
            shape_at: None,
            shared_shape: Some(Transformation::shared_shape(list)),
        }
    }
}

impl From<QueuedWrite> for Staged {
    fn from(mut q: QueuedWrite) -> Staged {
        q.state.fields = None;
        let (_, payload) = hashed_payload(&q.target);
        Staged {
            mapped: MappedRecord {
                source_kind: q.kind,
                source_id: q.netsuite_id,
                target: q.target,
                transformations: q.transformations,
            },
            state: q.state,
            parents: q.waits_for,
            payload,
            fresh: false,
            seen_live: None,
            changed_only: None,
            created: false,
        }
    }
}

pub(super) struct Run<'a> {
    pub host: &'a Host<'a>,
    pub request: &'a SyncRequest,
    pub settings: &'a Settings,
    pub source: NetSuiteSource<'a>,
    pub sink: SalesforceSink<'a>,
    pub state: State<'a>,
    pub queues: Queues<'a>,
    /// Marks of this run's writes on their way to Salesforce.
    pub in_flight: InFlight<'a>,
    /// Salesforce, or a plan (dry run).
    pub writer: Box<dyn Writer + 'a>,
    /// Empty in a dry run: it changes nothing, so it takes no lease.
    pub lease: &'a Keeper<'a>,
    counts: RefCell<BTreeMap<RecordKind, KindCounts>>,
    /// Kinds whose target object passed describe validation this run, with
    /// the lookups to it that its deletion cascades along.
    validated: RefCell<Vec<(RecordKind, Checked)>>,
    /// Kinds whose first write this run noted (see `State::note_writes`).
    noted: RefCell<Vec<RecordKind>>,
    /// Change events this run queued itself (see `children`).
    queued_events: std::cell::Cell<bool>,
    /// Kinds whose Salesforce edits this run merged before applying events.
    merged: RefCell<Vec<RecordKind>>,
    /// Records write-back merged (or created, or inactivated) this run: it
    /// counted them, and the forward pass, reading NetSuite's copy its
    /// writes changed, neither counts them again nor (in a plan, which
    /// changed nothing) writes the unmerged copy. At most [`MERGED_KEPT`].
    merged_records: RefCell<HashSet<(RecordKind, String)>>,
    /// Kinds whose stopped runs' leftovers this run took up already.
    resumed: RefCell<HashSet<RecordKind>>,
    /// Records this run's forward pass leaves alone (see [`Run::hold_back`]).
    held_back: RefCell<HashSet<(RecordKind, String)>>,
    /// The NetSuite user's time zone, measured when a scheduled run starts.
    zone: Cell<Zone>,
}

/// Records [`Run::note_merged`] keeps: a mass edit in Salesforce past it is
/// merged all the same, its records past it counted twice.
const MERGED_KEPT: usize = 100_000;

impl<'a> Run<'a> {
    pub fn new(
        host: &'a Host<'a>,
        request: &'a SyncRequest,
        settings: &'a Settings,
        writer: Box<dyn Writer + 'a>,
        lease: &'a Keeper<'a>,
    ) -> Self {
        Run {
            host,
            request,
            settings,
            source: NetSuiteSource::new(host, settings.netsuite.clone(), settings.backoff),
            sink: SalesforceSink::new(host, settings.salesforce.clone(), settings.backoff),
            state: State::new(host.state),
            queues: Queues::new(host.queues),
            in_flight: InFlight::new(host.in_flight, &request.run_id),
            writer,
            lease,
            counts: Default::default(),
            validated: Default::default(),
            noted: Default::default(),
            merged: Default::default(),
            merged_records: Default::default(),
            resumed: Default::default(),
            held_back: Default::default(),
            zone: Default::default(),
            queued_events: Default::default(),
        }
    }

    /// The NetSuite user's time zone as this run knows it.
    pub fn zone(&self) -> Zone {
        self.zone.get()
    }

    /// Measures the NetSuite user's time zone on the first of `kinds` with
    /// records (see [`super::zone`]), before any cursor is read.
    pub fn measure_zone(&self, kinds: &[RecordKind]) -> Result<()> {
        self.zone.set(super::zone::measure(self, kinds)?);
        Ok(())
    }

    /// Takes up what stopped runs left with Salesforce for `kind` (their
    /// Bulk jobs' outcomes), once per run.
    pub fn resume(&self, kind: RecordKind) -> Result<()> {
        if self.resumed.borrow_mut().insert(kind) {
            self.writer.resume(self, kind)?;
        }
        Ok(())
    }

    /// Keeps NetSuite record `id` out of this run's forward pass: a vendor
    /// just created from a Salesforce record whose link back failed, which
    /// the forward pass would take for one Salesforce lacks.
    pub fn hold_back(&self, kind: RecordKind, id: &str) {
        self.held_back.borrow_mut().insert((kind, id.to_string()));
    }

    /// Whether [`Run::hold_back`] named the record.
    pub fn held_back(&self, kind: RecordKind, id: &str) -> bool {
        let held = self.held_back.borrow();
        !held.is_empty() && held.contains(&(kind, id.to_string()))
    }

    /// Write-back merged NetSuite record `id` this run, and counted it.
    pub fn note_merged(&self, kind: RecordKind, id: &str) {
        let mut merged = self.merged_records.borrow_mut();
        if merged.len() < MERGED_KEPT {
            merged.insert((kind, id.to_string()));
        }
    }

    /// Whether write-back merged NetSuite record `id` this run.
    pub fn was_merged(&self, kind: RecordKind, id: &str) -> bool {
        let merged = self.merged_records.borrow();
        !merged.is_empty() && merged.contains(&(kind, id.to_string()))
    }

    /// True the first time it is asked for `kind`: whether Salesforce's
    /// edits of `kind` are still to be merged this run (see `queued_events`).
    pub fn first_merge(&self, kind: RecordKind) -> bool {
        let mut merged = self.merged.borrow_mut();
        let first = !merged.contains(&kind);
        if first {
            merged.push(kind);
        }
        first
    }

    /// The run queued change events of its own, to apply before it ends.
    pub fn note_queued_events(&self) {
        self.queued_events.set(true);
    }

    /// Whether it did, since the last time this was asked.
    pub fn take_queued_events(&self) -> bool {
        self.queued_events.replace(false)
    }

    pub fn count(&self, kind: RecordKind, outcome: OutcomeKind) {
        self.counts.borrow_mut().entry(kind).or_default().count(outcome);
    }

    /// Outcomes taken from a stopped run's Bulk jobs (counted as well).
    pub fn count_resumed(&self, kind: RecordKind, n: u32) {
        self.counts.borrow_mut().entry(kind).or_default().resumed += n;
    }

    /// Counts a Salesforce edit of `kind` written to NetSuite.
    pub fn count_written_back(&self, kind: RecordKind) {
        self.counts.borrow_mut().entry(kind).or_default().written_back += 1;
    }

    pub fn count_read(&self, kind: RecordKind, n: u32) {
        self.counts.borrow_mut().entry(kind).or_default().read += n;
    }

    pub fn counts(&self) -> BTreeMap<RecordKind, KindCounts> {
        self.counts.borrow().clone()
    }

    /// Queued writes are taken a page (`netsuite_page_size`) at a time:
    /// memory holds that many records, however long the queue grew.
    pub fn queue_part(&self) -> usize {
        self.settings.netsuite.page_size.max(1) as usize
    }

    /// Keeps the lease alive; fails when another run took it over.
    pub fn renew(&self) -> Result<()> {
        self.lease.renew()
    }

    /// A point where the run may end with nothing lost (a page recorded, a
    /// stage done): renews the lease, and ends the run here when the host
    /// asks (it is shutting down); the cursor stays where it is.
    pub fn checkpoint(&self) -> Result<()> {
        self.renew()?;
        match self.host.control.stop_requested() {
            None => Ok(()),
            Some(reason) => Err(ConnectorError::Stopped(format!(
                "{reason}; the run ended at a checkpoint with everything so far recorded, and the next run \
                 resumes from there"
            ))),
        }
    }

    pub fn audit(&self, entries: Vec<AuditEntry>) {
        // A dry run keeps no audit: what would fail is in its plan instead.
        if self.writer.plans() {
            for e in entries.iter().filter(|e| e.outcome == OutcomeKind::Failed.as_str()) {
                self.writer.note(PlannedWrite {
                    kind: e.kind,
                    // A record new in Salesforce has no NetSuite id yet.
                    netsuite_id: match e.netsuite_id.is_empty() {
                        true => e.salesforce_id.clone().unwrap_or_default(),
                        false => e.netsuite_id.clone(),
                    },
                    action: PlanAction::Fail,
                    changes: Vec::new(),
                    error: e.error.clone(),
                });
            }
        }
        if !entries.is_empty() {
            self.host.audit.append(entries);
        }
    }

    /// The audit entry of a parked record: its transformations are JSON
    /// text already, split as the audit keeps them.
    pub fn parked_entry(
        &self,
        parked: &ParkedWrite,
        action: AuditAction,
        outcome: OutcomeKind,
        salesforce_id: Option<String>,
        error: Option<String>,
    ) -> AuditEntry {
        let transformations = parked.audit_transformations();
        self.record_entry(parked.kind, &parked.netsuite_id, action, outcome, salesforce_id, transformations, error)
    }

    pub fn entry(
        &self,
        mapped: &MappedRecord,
        action: AuditAction,
        outcome: OutcomeKind,
        salesforce_id: Option<String>,
        error: Option<String>,
    ) -> AuditEntry {
        let transformations = AuditTransformations::split(&mapped.transformations, None, None);
        self.record_entry(mapped.source_kind, &mapped.source_id, action, outcome, salesforce_id, transformations, error)
    }

    /// As [`Run::entry`] for a staged write, whose `new` values are its
    /// payload's fields.
    pub fn staged_entry(
        &self,
        staged: &Staged,
        action: AuditAction,
        outcome: OutcomeKind,
        salesforce_id: Option<String>,
        error: Option<String>,
    ) -> AuditEntry {
        let mapped = &staged.mapped;
        let list = &mapped.transformations;
        let transformations = AuditTransformations::Split {
            shape: Transformation::shared_shape(list),
            values: Transformation::write_values(list, staged.payload.get(), staged.fresh_fields()),
        };
        self.record_entry(mapped.source_kind, &mapped.source_id, action, outcome, salesforce_id, transformations, error)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_entry(
        &self,
        kind: RecordKind,
        netsuite_id: &str,
        action: AuditAction,
        outcome: OutcomeKind,
        salesforce_id: Option<String>,
        transformations: AuditTransformations,
        error: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            run_id: self.request.run_id.clone(),
            kind,
            action,
            netsuite_id: netsuite_id.to_string(),
            salesforce_id,
            outcome: outcome.as_str().into(),
            transformations,
            error,
        }
    }

    /// Audits the rows of a page that did not read cleanly; a row set aside
    /// counts as failed (it is read again when NetSuite next changes it).
    pub fn read_problems(&self, kind: RecordKind, problems: &[ReadProblem]) {
        let entries: Vec<AuditEntry> = problems
            .iter()
            .map(|p| {
                let outcome = if p.quarantined {
                    self.count(kind, OutcomeKind::Failed);
                    OutcomeKind::Failed.as_str()
                } else {
                    "repaired"
                };
                AuditEntry {
                    run_id: self.request.run_id.clone(),
                    kind,
                    action: AuditAction::Read,
                    netsuite_id: p.id.clone(),
                    salesforce_id: None,
                    outcome: outcome.into(),
                    transformations: AuditTransformations::Whole("[]".into()),
                    error: Some(p.reason.clone()),
                }
            })
            .collect();
        self.audit(entries);
    }

    /// The row of a change event for a record NetSuite does not have (deleted,
    /// or never created) and Salesforce never got (`done` None), or has the
    /// deletion of already (Some: its Salesforce id, if known): nothing to do.
    pub fn nothing_to_do_entry(&self, kind: RecordKind, netsuite_id: &str, done: Option<Option<&str>>) -> AuditEntry {
        let detail = match done {
            None => "not in NetSuite, never written to Salesforce: nothing to do",
            Some(_) => "not in NetSuite; an earlier run applied its deletion to Salesforce: nothing to do",
        };
        let detail = serde_json::json!([{
            "field": crate::mapping::EXTERNAL_ID_FIELD, "rule": "event", "detail": detail
        }]);
        AuditEntry {
            run_id: self.request.run_id.clone(),
            kind,
            action: AuditAction::SkipUnchanged,
            netsuite_id: netsuite_id.into(),
            salesforce_id: done.flatten().map(str::to_string),
            outcome: OutcomeKind::Unchanged.as_str().into(),
            transformations: AuditTransformations::Whole(detail.to_string()),
            error: None,
        }
    }

    /// A queued write given up: NetSuite deleted its record.
    pub fn dropped_entry(&self, kind: RecordKind, netsuite_id: &str) -> AuditEntry {
        AuditEntry {
            run_id: self.request.run_id.clone(),
            kind,
            action: AuditAction::Drop,
            netsuite_id: netsuite_id.into(),
            salesforce_id: None,
            outcome: "dropped".into(),
            transformations: AuditTransformations::Whole("[]".into()),
            error: Some("the record was deleted in NetSuite while its write waited in a queue".into()),
        }
    }

    /// Learns which Salesforce org the run writes to: record states kept for
    /// another org (the settings point elsewhere now) count as absent.
    pub fn target(&self) -> Result<()> {
        self.state.set_org(self.sink.org()?);
        Ok(())
    }

    /// Checks the kind's object (and its parents' external ids) before the
    /// first write to it in this run.
    pub fn validate_target(&self, kind: RecordKind) -> Result<()> {
        self.cascades(kind).map(drop)
    }

    /// The lookups (child object, field) to `kind`'s object whose records
    /// Salesforce deletes along with it; validates the target first.
    pub fn cascades(&self, kind: RecordKind) -> Result<Vec<Cascade>> {
        self.checked(kind).map(|c| c.cascades)
    }

    /// What the check of `kind`'s object learned; validates it first.
    pub fn checked(&self, kind: RecordKind) -> Result<Checked> {
        let checked = self.checked_only(kind)?;
        if !self.noted.borrow().contains(&kind) {
            self.state.note_writes(kind)?;
            self.noted.borrow_mut().push(kind);
        }
        Ok(checked)
    }

    /// Like [`Run::checked`], for a run that only defers records of `kind`:
    /// records of it may exist in Salesforce only once one is written.
    pub fn checked_only(&self, kind: RecordKind) -> Result<Checked> {
        if let Some((_, checked)) = self.validated.borrow().iter().find(|(k, _)| *k == kind) {
            return Ok(checked.clone());
        }
        let extra: &[&str] = match self.settings.delete_action {
            DeleteAction::Flag => &[crate::mapping::DELETED_FIELD],
            DeleteAction::Delete => &[],
        };
        let checked = self.sink.validate(&self.settings.mapping.target_spec(kind)?, extra)?;
        self.validated.borrow_mut().push((kind, checked.clone()));
        Ok(checked)
    }
}
