//! One sync run over the requested record kinds, parents before children:
//! deferred records whose parents have arrived, then changes, then
//! deletions. A replay run sends failed writes again instead of reading.

use super::lease::Lease;
use super::queues::{Queue, QueuedEvent, QueuedWrite, Queues};
use super::state::{DELETED, RecordState, State, StoredCursor, annotate_changes, content_hash, is_after, source_hash};
use crate::model::{
    ApiCalls, AuditEntry, ConnectorError, Cursor, FieldChange, KindCounts, MappedRecord, OutcomeKind, PlannedWrite,
    RecordKind, ReplayScope, Result, SObjectRecord, SyncMode, SyncReport, SyncRequest, UpsertOutcome,
};
use crate::netsuite::{NetSuiteSource, suiteql};
use crate::ports::Host;
use crate::salesforce::SalesforceSink;
use crate::settings::{DeleteAction, Settings};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

struct Run<'a, 'h> {
    host: &'a Host<'h>,
    /// Kinds whose target object passed describe validation this run.
    validated: std::cell::RefCell<Vec<RecordKind>>,
    source: NetSuiteSource<'a>,
    sink: SalesforceSink<'a>,
    request: &'a SyncRequest,
    settings: &'a Settings,
    state: State<'a>,
    queues: Queues<'a>,
    /// A dry run reads and maps but writes nothing: no Salesforce write, no
    /// state, no queue, no audit, no lease. It collects a plan instead.
    dry: bool,
    plan: RefCell<Vec<PlannedWrite>>,
    /// Records a dry run plans to write: their children need not wait.
    planned: RefCell<HashSet<ParentRef>>,
}

fn parents_first(kinds: &mut Vec<RecordKind>) {
    kinds.sort_by_key(|k| RecordKind::ALL.iter().position(|a| a == k));
    kinds.dedup();
}

pub fn run(host: &Host<'_>, request: &SyncRequest) -> Result<SyncReport> {
    let settings = Settings::load(host.config)?;
    let run = Run {
        host,
        validated: Default::default(),
        source: NetSuiteSource::new(host, settings.netsuite.clone(), settings.backoff),
        sink: SalesforceSink::new(host, settings.salesforce.clone(), settings.backoff),
        request,
        settings: &settings,
        state: State::new(host.state, request.dry_run),
        queues: Queues::new(host.queues, request.dry_run),
        dry: request.dry_run,
        plan: Default::default(),
        planned: Default::default(),
    };
    if request.dry_run && request.replay.is_some() {
        return Err(ConnectorError::Config(
            "a replay cannot be a dry run: the failed writes are listed in the queue".into(),
        ));
    }
    // All kinds the mapping maps, unless the request names some.
    let mut kinds: Vec<RecordKind> = if request.kinds.is_empty() {
        RecordKind::ALL.into_iter().filter(|k| settings.mapping.maps(*k)).collect()
    } else {
        request.kinds.clone()
    };
    parents_first(&mut kinds);

    let mut counts: BTreeMap<RecordKind, KindCounts> = BTreeMap::new();
    if run.dry {
        run.all(&kinds, &mut counts, None)?;
    } else {
        let lease = Lease::acquire(host.state, host.clock, &request.run_id, settings.lease_ttl_secs)?;
        let outcome = run.all(&kinds, &mut counts, Some(&lease));
        // Give the lease back whatever happened, so the next run need not wait.
        let released = lease.release();
        outcome?;
        released?;
    }
    Ok(SyncReport {
        run_id: request.run_id.clone(),
        kinds: kinds.iter().map(|k| (*k, counts.remove(k).unwrap_or_default())).collect(),
        api_calls: ApiCalls { netsuite: run.source.calls(), salesforce: run.sink.calls() },
        plan: run.plan.take(),
    })
}

/// A parent a record links to: its kind and NetSuite id.
type ParentRef = (RecordKind, String);

/// A record to write once its parents are in Salesforce.
struct PendingWrite {
    mapped: MappedRecord,
    state: RecordState,
    parents: Vec<ParentRef>,
}

/// Records waiting to be written, and the cursor after their pages.
#[derive(Default)]
struct Batch {
    records: Vec<(MappedRecord, RecordState)>,
    cursor: Option<Cursor>,
}

fn errors_text(outcome: &UpsertOutcome) -> Option<String> {
    (!outcome.errors.is_empty()).then(|| outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

fn audit_entry(request: &SyncRequest, m: &MappedRecord, action: &str, outcome: &UpsertOutcome) -> AuditEntry {
    AuditEntry {
        run_id: request.run_id.clone(),
        kind: m.source_kind,
        action: action.into(),
        netsuite_id: m.source_id.clone(),
        salesforce_id: outcome.salesforce_id.clone(),
        outcome: outcome.outcome.as_str().into(),
        transformations_json: serde_json::to_string(&m.transformations).expect("transformations serialize"),
        error: errors_text(outcome),
    }
}

/// Renews the run's lease, when it has one (dry runs take none).
fn renew(lease: Option<&Lease<'_>>) -> Result<()> {
    lease.map_or(Ok(()), Lease::renew)
}

impl Run<'_, '_> {
    fn record_audit(&self, entries: &[AuditEntry]) {
        if !self.dry && !entries.is_empty() {
            self.host.audit.append(entries);
        }
    }

    /// What a real run would write for `part`: compared with what the
    /// connector last wrote, or with the live records when asked.
    fn plan_writes(
        &self,
        kind: RecordKind,
        part: &[(MappedRecord, RecordState)],
        counts: &mut KindCounts,
    ) -> Result<()> {
        let live = if self.request.compare_live {
            let spec = self.settings.mapping.target_spec(kind)?;
            let ids: Vec<&str> = part.iter().map(|(m, _)| m.target.external_id.as_str()).collect();
            Some(self.sink.live_records(&spec, &ids)?)
        } else {
            None
        };
        for (mapped, state) in part {
            let (exists, changes) = match &live {
                Some(records) => {
                    let before = records.get(&mapped.target.external_id);
                    let changes: Vec<FieldChange> = mapped
                        .target
                        .fields
                        .iter()
                        .filter(|(field, new)| before.and_then(|b| b.get(*field)) != Some(*new))
                        .map(|(field, new)| FieldChange {
                            field: field.clone(),
                            old: before.and_then(|b| b.get(field)).cloned(),
                            new: Some(new.clone()),
                        })
                        .collect();
                    (before.is_some(), changes)
                }
                // The transformations already carry old → new against the last write.
                None => (
                    state.sf.is_some(),
                    mapped
                        .transformations
                        .iter()
                        .filter(|t| t.old.is_some() || t.new.is_some())
                        .map(|t| FieldChange { field: t.field.clone(), old: t.old.clone(), new: t.new.clone() })
                        .collect(),
                ),
            };
            let (action, outcome) = match (exists, changes.is_empty()) {
                (false, _) => ("create", OutcomeKind::Created),
                (true, true) => ("unchanged", OutcomeKind::Unchanged),
                (true, false) => ("update", OutcomeKind::Updated),
            };
            counts.count(outcome);
            if outcome != OutcomeKind::Unchanged {
                self.planned.borrow_mut().insert((kind, mapped.source_id.clone()));
            }
            self.plan.borrow_mut().push(PlannedWrite {
                kind,
                netsuite_id: mapped.source_id.clone(),
                action: action.into(),
                changes,
            });
        }
        Ok(())
    }

    fn all(
        &self,
        kinds: &[RecordKind],
        counts: &mut BTreeMap<RecordKind, KindCounts>,
        lease: Option<&Lease<'_>>,
    ) -> Result<()> {
        if let Some(scope) = &self.request.replay {
            self.target()?;
            return self.replay(scope, kinds, counts);
        }
        // The NetSuite token is obtained by the run's first request and the
        // Salesforce session by the first need of it: an events run that
        // finds the queue empty calls neither.
        let events: Vec<QueuedEvent> = self.queues.events()?.into_iter().filter(|e| kinds.contains(&e.kind)).collect();
        if events.is_empty() && self.request.mode == SyncMode::Events {
            return Ok(());
        }
        self.target()?;
        self.apply_events(events, counts)?;
        if self.request.mode == SyncMode::Events {
            return Ok(());
        }
        for &kind in kinds {
            let c = counts.entry(kind).or_default();
            self.retry_deferred(kind, c)?;
            renew(lease)?;
            // The deletions stream is independent of the changes stream: with
            // room for two requests, its first page travels alongside.
            let deletions_started = self.host.clock.now_unix();
            let deletions = self.stream_start(kind, true, self.request.mode == SyncMode::Full)?;
            let first_deleted = if self.settings.netsuite.max_in_flight >= 2 {
                Some(self.source.begin_deleted(kind, deletions.1.as_ref())?)
            } else {
                None
            };
            self.sync_changes(kind, c, lease)?;
            renew(lease)?;
            self.sync_deletions(kind, c, deletions, first_deleted, deletions_started)?;
        }
        Ok(())
    }

    /// Learns which Salesforce org the run writes to: record states kept for
    /// another org (the settings point elsewhere now) count as absent.
    fn target(&self) -> Result<()> {
        self.state.set_org(self.sink.org()?);
        Ok(())
    }

    /// Checks the kind's object (and its parents' external ids) before the
    /// first write to it in this run.
    fn validate_target(&self, kind: RecordKind) -> Result<()> {
        if self.validated.borrow().contains(&kind) {
            return Ok(());
        }
        let extra: &[&str] = match self.settings.delete_action {
            DeleteAction::Flag => &[crate::mapping::DELETED_FIELD],
            DeleteAction::Delete => &[],
        };
        self.sink.validate(&self.settings.mapping.target_spec(kind)?, extra, !self.dry)?;
        self.validated.borrow_mut().push(kind);
        Ok(())
    }

    /// Where a stream (changes or deletions of `kind`) starts this run. An
    /// unsettled cursor is rewound by the overlap window to catch rows
    /// committed late with an earlier lastmodifieddate; record states drop
    /// what was already handled. A full read starts at the beginning.
    fn stream_start(
        &self,
        kind: RecordKind,
        deleted: bool,
        full: bool,
    ) -> Result<(Option<StoredCursor>, Option<Cursor>)> {
        let stored = self.state.cursor(kind, deleted)?;
        let start = match &stored {
            _ if full => None,
            None => None,
            Some(s) if s.settled => Some(s.cursor.clone()),
            Some(s) => Some(suiteql::rewind(&s.cursor, self.settings.netsuite.overlap_secs)?),
        };
        Ok((stored, start))
    }

    /// Moves the stored cursor forward (never back: re-read pages end
    /// behind it).
    fn advance(&self, kind: RecordKind, deleted: bool, stored: &mut Option<StoredCursor>, next: &Cursor) -> Result<()> {
        if stored.as_ref().is_none_or(|s| is_after(next, &s.cursor)) {
            let moved = StoredCursor { cursor: next.clone(), moved_at: self.host.clock.now_unix(), settled: false };
            self.state.save_cursor(kind, deleted, &moved)?;
            *stored = Some(moved);
        }
        Ok(())
    }

    /// Once a run that started more than the overlap window after the
    /// cursor last moved has re-read that window, no late commit can still
    /// land in it: later runs start at the cursor itself.
    fn settle(&self, kind: RecordKind, deleted: bool, stored: Option<StoredCursor>, started_at: i64) -> Result<()> {
        let window = i64::from(self.settings.netsuite.overlap_secs);
        if let Some(mut s) = stored.filter(|s| !s.settled && started_at > s.moved_at + window) {
            s.settled = true;
            self.state.save_cursor(kind, deleted, &s)?;
        }
        Ok(())
    }

    fn sync_deletions(
        &self,
        kind: RecordKind,
        counts: &mut KindCounts,
        (mut stored, mut cursor): (Option<StoredCursor>, Option<Cursor>),
        mut first: Option<crate::netsuite::PendingDeleted<'_, '_>>,
        started_at: i64,
    ) -> Result<()> {
        loop {
            let page = match first.take() {
                Some(pending) => pending.finish()?,
                None => self.source.fetch_deleted(kind, cursor.as_ref())?,
            };
            let ids: Vec<&str> = page.ids.iter().map(String::as_str).collect();
            let states = self.state.records(kind, &ids)?;
            // Only records the connector wrote have anything to remove in Salesforce.
            let pending: Vec<(&str, RecordState)> = ids
                .iter()
                .zip(states)
                .filter_map(|(id, st)| st.filter(|s| s.src != DELETED).map(|s| (*id, s)))
                .collect();
            if !pending.is_empty() {
                self.apply_deletions(kind, &pending, counts)?;
            }
            if let Some(next) = page.next {
                self.advance(kind, true, &mut stored, &next)?;
                cursor = Some(next);
            }
            if !page.has_more || page.ids.is_empty() {
                return self.settle(kind, true, stored, started_at);
            }
        }
    }

    fn apply_deletions(
        &self,
        kind: RecordKind,
        pending: &[(&str, RecordState)],
        counts: &mut KindCounts,
    ) -> Result<()> {
        let mapping = &self.settings.mapping;
        let sobject = mapping.object(kind)?.sobject.clone();
        if self.dry {
            let action = match self.settings.delete_action {
                DeleteAction::Flag => "flag-deleted",
                DeleteAction::Delete => "delete",
            };
            for (id, _) in pending {
                counts.count(OutcomeKind::Deleted);
                self.plan.borrow_mut().push(PlannedWrite {
                    kind,
                    netsuite_id: id.to_string(),
                    action: action.into(),
                    changes: vec![],
                });
            }
            return Ok(());
        }
        let (action, outcomes) = match self.settings.delete_action {
            DeleteAction::Flag => {
                let flags: Vec<SObjectRecord> =
                    pending.iter().map(|(id, _)| mapping.deletion_flag(kind, id)).collect::<Result<_>>()?;
                ("flag-deleted", self.sink.upsert(&flags)?)
            }
            DeleteAction::Delete => {
                let sf_ids: Vec<String> = pending.iter().map(|(_, s)| s.sf.clone().unwrap_or_default()).collect();
                ("delete", self.sink.delete(&sf_ids)?)
            }
        };
        let mut audit = Vec::new();
        let mut done = Vec::new();
        for ((id, st), outcome) in pending.iter().zip(outcomes) {
            let ok = outcome.outcome != OutcomeKind::Failed;
            counts.count(if ok { OutcomeKind::Deleted } else { OutcomeKind::Failed });
            audit.push(AuditEntry {
                run_id: self.request.run_id.clone(),
                kind,
                action: action.into(),
                netsuite_id: id.to_string(),
                salesforce_id: st.sf.clone(),
                outcome: if ok { OutcomeKind::Deleted.as_str().into() } else { OutcomeKind::Failed.as_str().into() },
                transformations_json: format!(
                    r#"[{{"field":"{sobject}","rule":"{action}","detail":"deletedrecord"}}]"#
                ),
                error: (!ok).then(|| outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
            });
            if ok {
                done.push((
                    *id,
                    RecordState {
                        src: DELETED.into(),
                        dst: DELETED.into(),
                        sf: st.sf.clone(),
                        fields: None,
                        org: None,
                    },
                ));
            }
        }
        self.state.save_records(kind, &done)?;
        self.record_audit(&audit);
        Ok(())
    }

    /// Parents of `records` that are not in Salesforce yet, per record.
    fn missing_parents(&self, records: &[&[ParentRef]]) -> Result<Vec<Vec<ParentRef>>> {
        let mut wanted: BTreeMap<RecordKind, Vec<String>> = BTreeMap::new();
        for parents in records {
            for (kind, id) in parents.iter() {
                wanted.entry(*kind).or_default().push(id.clone());
            }
        }
        let mut present: HashSet<(RecordKind, String)> = self.planned.borrow().clone();
        for (kind, mut ids) in wanted {
            ids.sort();
            ids.dedup();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            for (id, st) in ids.iter().zip(self.state.records(kind, &refs)?) {
                if st.is_some_and(|s| s.sf.is_some() && s.src != DELETED) {
                    present.insert((kind, id.clone()));
                }
            }
        }
        Ok(records.iter().map(|parents| parents.iter().filter(|p| !present.contains(p)).cloned().collect()).collect())
    }

    /// Queues a record whose parent is not in Salesforce yet; it is written
    /// as soon as a run finds the parent there, never before.
    fn defer(
        &self,
        mapped: &MappedRecord,
        state: &RecordState,
        missing: &[(RecordKind, String)],
        counts: &mut KindCounts,
    ) -> Result<AuditEntry> {
        let reason = format!(
            "waiting for {}: not in Salesforce yet (never synced, or its last write failed)",
            missing.iter().map(|(k, id)| format!("{k} {id}")).collect::<Vec<_>>().join(", ")
        );
        self.queues.put(
            Queue::Deferred,
            &QueuedWrite {
                run_id: self.request.run_id.clone(),
                kind: mapped.source_kind,
                netsuite_id: mapped.source_id.clone(),
                target: mapped.target.clone(),
                state: state.clone(),
                transformations: mapped.transformations.clone(),
                reason: reason.clone(),
                waits_for: missing.to_vec(),
            },
        )?;
        counts.count(OutcomeKind::Deferred);
        let outcome = UpsertOutcome {
            external_id: mapped.target.external_id.clone(),
            salesforce_id: state.sf.clone(),
            outcome: OutcomeKind::Deferred,
            errors: vec![],
        };
        let mut entry = audit_entry(self.request, mapped, "defer", &outcome);
        entry.error = Some(reason);
        if self.dry {
            self.plan.borrow_mut().push(PlannedWrite {
                kind: mapped.source_kind,
                netsuite_id: mapped.source_id.clone(),
                action: "defer".into(),
                changes: vec![],
            });
        }
        Ok(entry)
    }

    /// Splits writes into those whose parents are in Salesforce and those
    /// that must wait (queued as deferred, with audit entries).
    fn hold_back_orphans(
        &self,
        writes: Vec<PendingWrite>,
        counts: &mut KindCounts,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<Vec<(MappedRecord, RecordState)>> {
        let parents: Vec<&[ParentRef]> = writes.iter().map(|w| w.parents.as_slice()).collect();
        let missing = self.missing_parents(&parents)?;
        let mut ready = Vec::with_capacity(writes.len());
        for (w, missing) in writes.into_iter().zip(missing) {
            if missing.is_empty() {
                ready.push((w.mapped, w.state));
            } else {
                audit.push(self.defer(&w.mapped, &w.state, &missing, counts)?);
            }
        }
        Ok(ready)
    }

    /// Writes deferred records of `kind` whose parents have arrived.
    fn retry_deferred(&self, kind: RecordKind, counts: &mut KindCounts) -> Result<()> {
        let queued = self.queues.list(Queue::Deferred, Some(kind))?;
        if queued.is_empty() {
            return Ok(());
        }
        let parents: Vec<&[ParentRef]> = queued.iter().map(|q| q.waits_for.as_slice()).collect();
        let missing = self.missing_parents(&parents)?;
        let ready: Vec<(MappedRecord, RecordState)> = queued
            .into_iter()
            .zip(missing)
            .filter(|(_, m)| m.is_empty())
            .map(|(q, _)| (queued_record(&q), q.state))
            .collect();
        for part in ready.chunks(crate::salesforce::composite::RECORDS_PER_COMPOSITE) {
            self.write(kind, part, false, "write-deferred", counts)?;
        }
        Ok(())
    }

    /// Sends failed writes again, exactly as they were; a failed record whose
    /// parent is still missing is deferred instead. Then deferred records
    /// whose parents are now present follow.
    fn replay(
        &self,
        scope: &ReplayScope,
        kinds: &[RecordKind],
        counts: &mut BTreeMap<RecordKind, KindCounts>,
    ) -> Result<()> {
        for &kind in kinds {
            let queued: Vec<QueuedWrite> = self
                .queues
                .list(Queue::Failed, Some(kind))?
                .into_iter()
                .filter(|q| match scope {
                    ReplayScope::AllFailed => true,
                    ReplayScope::Run(run) => q.run_id == *run,
                    ReplayScope::Record(k, id) => *k == kind && q.netsuite_id == *id,
                })
                .collect();
            let c = counts.entry(kind).or_default();
            let mut audit = Vec::new();
            let writes = queued
                .into_iter()
                .map(|q| PendingWrite { mapped: queued_record(&q), state: q.state, parents: q.waits_for })
                .collect();
            let ready = self.hold_back_orphans(writes, c, &mut audit)?;
            self.record_audit(&audit);
            for part in ready.chunks(crate::salesforce::composite::RECORDS_PER_COMPOSITE) {
                self.write(kind, part, false, "replay", c)?;
            }
        }
        for &kind in kinds {
            self.retry_deferred(kind, counts.entry(kind).or_default())?;
        }
        Ok(())
    }

    fn sync_changes(&self, kind: RecordKind, counts: &mut KindCounts, lease: Option<&Lease<'_>>) -> Result<()> {
        let started_at = self.host.clock.now_unix();
        let mapping = &self.settings.mapping;
        // A changed mapping, or another Salesforce org, re-reads every record
        // once: exactly those whose mapped output Salesforce lacks are written.
        let fingerprint = format!("{}@{}", mapping.fingerprint(kind), self.state.org());
        let remapping = self.state.mapping_fingerprint(kind)?.is_some_and(|f| f != fingerprint);
        let full = self.request.mode == SyncMode::Full || remapping;
        let columns = mapping.columns(kind);
        let (mut stored, start) = self.stream_start(kind, false, full)?;
        let mut pending = Some(self.source.begin_changed(kind, start.as_ref(), &columns)?);
        // Records wait until the read ends (then Composite writes them) or
        // until more than the threshold wait: from then on the run writes
        // through Bulk API 2.0, a job at a time.
        let mut batch = Batch::default();
        let mut bulk = false;
        while let Some(next_page) = pending.take() {
            let page = next_page.finish()?;
            renew(lease)?;
            batch.records.extend(self.stage(kind, &page.records, full, counts)?);
            if page.next.is_some() {
                batch.cursor = page.next.clone();
            }

            let more = page.has_more && !page.records.is_empty();
            // Read the next page before writing: the request travels while
            // Salesforce works; the cursor still moves only after the write.
            if more {
                pending = Some(self.source.begin_changed(kind, page.next.as_ref(), &columns)?);
            }
            let waiting = batch.records.len();
            bulk |= waiting > self.settings.salesforce.bulk_threshold as usize;
            if !more || (bulk && waiting >= self.settings.salesforce.bulk_job_records as usize) {
                self.flush(kind, std::mem::take(&mut batch), bulk, &mut stored, counts, lease)?;
            }
        }
        self.state.save_mapping_fingerprint(kind, &fingerprint)?;
        self.settle(kind, false, stored, started_at)
    }

    /// Applies queued change events: reads the named records (and parents
    /// that are not in Salesforce yet) by id, writes them parents first,
    /// applies deletions for records NetSuite no longer has, then clears
    /// the events it handled.
    fn apply_events(&self, events: Vec<QueuedEvent>, counts: &mut BTreeMap<RecordKind, KindCounts>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mapping = &self.settings.mapping;
        let mut wanted: BTreeMap<RecordKind, Vec<String>> = BTreeMap::new();
        for e in &events {
            wanted.entry(e.kind).or_default().push(e.id.clone());
        }
        // Children first, to learn which parents must come along.
        let mut fetched: BTreeMap<RecordKind, Vec<crate::model::NetSuiteRecord>> = BTreeMap::new();
        for kind in [RecordKind::Contact, RecordKind::Vendor, RecordKind::Customer] {
            let Some(ids) = wanted.get(&kind).cloned() else { continue };
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let records = self.source.fetch_many(kind, &refs, &mapping.columns(kind))?;
            let parents: Vec<Vec<ParentRef>> = records.iter().map(|r| mapping.parents(r)).collect();
            let parent_refs: Vec<&[ParentRef]> = parents.iter().map(Vec::as_slice).collect();
            for (parent_kind, id) in self.missing_parents(&parent_refs)?.into_iter().flatten() {
                let list = wanted.entry(parent_kind).or_default();
                if !list.contains(&id) {
                    list.push(id);
                }
            }
            fetched.insert(kind, records);
        }
        let mut order: Vec<RecordKind> = wanted.keys().copied().collect();
        parents_first(&mut order);
        for kind in order {
            let ids = &wanted[&kind];
            let records = match fetched.remove(&kind) {
                Some(r) => r,
                None => {
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    self.source.fetch_many(kind, &refs, &mapping.columns(kind))?
                }
            };
            let c = counts.entry(kind).or_default();
            let ready = self.stage(kind, &records, false, c)?;
            for part in ready.chunks(crate::salesforce::composite::RECORDS_PER_COMPOSITE) {
                self.write(kind, part, false, "write-event", c)?;
            }
            // Named by an event but gone from NetSuite: deleted.
            let present: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
            let gone: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !present.contains(id)).collect();
            let states = self.state.records(kind, &gone)?;
            let pending: Vec<(&str, RecordState)> = gone
                .iter()
                .zip(states)
                .filter_map(|(id, st)| st.filter(|s| s.src != DELETED).map(|s| (*id, s)))
                .collect();
            if !pending.is_empty() {
                self.apply_deletions(kind, &pending, c)?;
            }
        }
        self.queues.remove_events(&events)
    }

    /// Turns records read from NetSuite into writes: drops rows already
    /// handled (unless `full`), maps, skips what Salesforce already holds,
    /// holds back records whose parents are missing. Returns what to write.
    fn stage(
        &self,
        kind: RecordKind,
        records: &[crate::model::NetSuiteRecord],
        full: bool,
        counts: &mut KindCounts,
    ) -> Result<Vec<(MappedRecord, RecordState)>> {
        let mapping = &self.settings.mapping;
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let states = self.state.records(kind, &ids)?;
        let mut audit = Vec::with_capacity(records.len());
        let mut unchanged_states: Vec<(&str, RecordState)> = Vec::new();
        let mut writes = Vec::new();
        for (record, old) in records.iter().zip(states) {
            let src = source_hash(record);
            // The same row read again (overlap window, repeated event): already handled.
            if !full && old.as_ref().is_some_and(|s| s.src == src) {
                continue;
            }
            counts.read += 1;
            let mut mapped = match mapping.map(record) {
                Ok(m) => m,
                Err(e) => {
                    counts.count(OutcomeKind::Failed);
                    audit.push(AuditEntry {
                        run_id: self.request.run_id.clone(),
                        kind,
                        action: "map".into(),
                        netsuite_id: record.id.clone(),
                        salesforce_id: old.and_then(|s| s.sf),
                        outcome: OutcomeKind::Failed.as_str().into(),
                        transformations_json: "[]".into(),
                        error: Some(e.to_string()),
                    });
                    continue;
                }
            };
            let dst = content_hash(&mapped.target);
            match old {
                // Salesforce already holds exactly this: no write.
                Some(old) if old.dst == dst => {
                    counts.count(OutcomeKind::Unchanged);
                    let unchanged = UpsertOutcome {
                        external_id: mapped.target.external_id.clone(),
                        salesforce_id: old.sf.clone(),
                        outcome: OutcomeKind::Unchanged,
                        errors: vec![],
                    };
                    audit.push(audit_entry(self.request, &mapped, "skip-unchanged", &unchanged));
                    unchanged_states.push((record.id.as_str(), RecordState { src, ..old }));
                }
                old => {
                    let (sf, before) = old.map(|s| (s.sf, s.fields)).unwrap_or_default();
                    annotate_changes(&mut mapped.transformations, before.as_ref(), &mapped.target.fields);
                    let fields = Some(mapped.target.fields.clone());
                    let parents = mapping.parents(record);
                    writes.push(PendingWrite {
                        mapped,
                        state: RecordState { src, dst, sf, fields, org: None },
                        parents,
                    });
                }
            }
        }
        let ready = self.hold_back_orphans(writes, counts, &mut audit)?;
        self.state.save_records(kind, &unchanged_states)?;
        self.record_audit(&audit);
        Ok(ready)
    }

    /// Writes a batch a slice at a time (one Composite request or one Bulk
    /// job), recording every outcome and state after each slice, then moves
    /// the cursor past the pages the batch came from. A run stopped part-way
    /// keeps what it wrote on record; the rest is read again next time.
    fn flush(
        &self,
        kind: RecordKind,
        batch: Batch,
        bulk: bool,
        stored: &mut Option<StoredCursor>,
        counts: &mut KindCounts,
        lease: Option<&Lease<'_>>,
    ) -> Result<()> {
        let (slice, action) = if bulk {
            (self.settings.salesforce.bulk_job_records.max(1) as usize, "bulk-write")
        } else {
            (crate::salesforce::composite::RECORDS_PER_COMPOSITE, "write")
        };
        for part in batch.records.chunks(slice) {
            renew(lease)?;
            self.write(kind, part, bulk, action, counts)?;
        }
        if let Some(next) = &batch.cursor {
            self.advance(kind, false, stored, next)?;
        }
        Ok(())
    }

    /// Upserts records and records every outcome: the new state on success,
    /// the exact payload in the failed queue otherwise.
    fn write(
        &self,
        kind: RecordKind,
        part: &[(MappedRecord, RecordState)],
        bulk: bool,
        action: &str,
        counts: &mut KindCounts,
    ) -> Result<()> {
        if part.is_empty() {
            return Ok(());
        }
        self.validate_target(kind)?;
        if self.dry {
            return self.plan_writes(kind, part, counts);
        }
        let targets: Vec<SObjectRecord> = part.iter().map(|(m, _)| m.target.clone()).collect();
        let outcomes = if bulk { self.sink.bulk_upsert(&targets)? } else { self.sink.upsert(&targets)? };
        let mut audit = Vec::with_capacity(outcomes.len());
        let mut new_states = Vec::with_capacity(outcomes.len());
        let mut landed = Vec::new();
        for ((mapped, new_state), outcome) in part.iter().zip(&outcomes) {
            counts.count(outcome.outcome);
            let entry = audit_entry(self.request, mapped, action, outcome);
            if outcome.outcome == OutcomeKind::Failed {
                self.queues.put(
                    Queue::Failed,
                    &QueuedWrite {
                        run_id: self.request.run_id.clone(),
                        kind,
                        netsuite_id: mapped.source_id.clone(),
                        target: mapped.target.clone(),
                        state: new_state.clone(),
                        transformations: mapped.transformations.clone(),
                        reason: entry.error.clone().unwrap_or_default(),
                        waits_for: vec![],
                    },
                )?;
            } else {
                let sf = outcome.salesforce_id.clone().or_else(|| new_state.sf.clone());
                new_states.push((mapped.source_id.as_str(), RecordState { sf, ..new_state.clone() }));
                landed.push(mapped.source_id.as_str());
            }
            audit.push(entry);
        }
        self.state.save_records(kind, &new_states)?;
        self.queues.remove(kind, &landed)?;
        self.record_audit(&audit);
        Ok(())
    }
}

/// A queued write as the record it was mapped to.
fn queued_record(q: &QueuedWrite) -> MappedRecord {
    MappedRecord {
        source_kind: q.kind,
        source_id: q.netsuite_id.clone(),
        target: q.target.clone(),
        transformations: q.transformations.clone(),
    }
}
