//! One sync run over the requested record kinds: changes first, then
//! deletions, parents before children.

use super::state::{
    DELETED, FailedWrite, RecordState, State, StoredCursor, annotate_changes, content_hash, is_after, source_hash,
};
use crate::mapping;
use crate::model::{
    ApiCalls, AuditEntry, Cursor, KindCounts, MappedRecord, OutcomeKind, RecordKind, Result, SObjectRecord, SyncMode,
    SyncReport, SyncRequest, UpsertOutcome,
};
use crate::netsuite::{NetSuiteSource, suiteql};
use crate::ports::Host;
use crate::salesforce::SalesforceSink;
use crate::settings::{DeleteAction, Settings};

struct Run<'a, 'h> {
    host: &'a Host<'h>,
    /// Kinds whose target object passed describe validation this run.
    validated: std::cell::RefCell<Vec<RecordKind>>,
    source: NetSuiteSource<'a>,
    sink: SalesforceSink<'a>,
    request: &'a SyncRequest,
    settings: &'a Settings,
    state: State<'a>,
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
        state: State::new(host.state),
    };
    // A fresh NetSuite token for every run; renewed again inside the run
    // whenever it nears its 60 minutes.
    run.source.authenticate()?;

    // All kinds the mapping maps, unless the request names some.
    let mut kinds: Vec<RecordKind> = if request.kinds.is_empty() {
        RecordKind::ALL.into_iter().filter(|k| settings.mapping.maps(*k)).collect()
    } else {
        request.kinds.clone()
    };
    kinds.sort_by_key(|k| RecordKind::ALL.iter().position(|a| a == k));
    kinds.dedup();

    let mut report = Vec::new();
    for kind in kinds {
        let mut counts = KindCounts::default();
        run.sync_changes(kind, &mut counts)?;
        run.sync_deletions(kind, &mut counts)?;
        report.push((kind, counts));
    }
    Ok(SyncReport {
        run_id: request.run_id.clone(),
        kinds: report,
        api_calls: ApiCalls { netsuite: run.source.calls(), salesforce: run.sink.calls() },
    })
}

/// Records waiting to be written, and the cursor after their pages.
#[derive(Default)]
struct Batch {
    records: Vec<(MappedRecord, RecordState)>,
    cursor: Option<Cursor>,
}

fn audit_entry(request: &SyncRequest, m: &MappedRecord, action: &str, outcome: &UpsertOutcome) -> AuditEntry {
    let error = (!outcome.errors.is_empty())
        .then(|| outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    AuditEntry {
        run_id: request.run_id.clone(),
        kind: m.source_kind,
        action: action.into(),
        netsuite_id: m.source_id.clone(),
        salesforce_id: outcome.salesforce_id.clone(),
        outcome: outcome.outcome.as_str().into(),
        transformations_json: serde_json::to_string(&m.transformations).expect("transformations serialize"),
        error,
    }
}

impl Run<'_, '_> {
    /// Checks the kind's object (and its parents' external ids) before the
    /// first write to it in this run.
    fn validate_target(&self, kind: RecordKind) -> Result<()> {
        if self.validated.borrow().contains(&kind) {
            return Ok(());
        }
        let extra: &[&str] = match self.settings.delete_action {
            DeleteAction::Flag => &[mapping::DELETED_FIELD],
            DeleteAction::Delete => &[],
        };
        self.sink.validate(&self.settings.mapping.target_spec(kind)?, extra)?;
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

    fn sync_changes(&self, kind: RecordKind, counts: &mut KindCounts) -> Result<()> {
        let started_at = self.host.clock.now_unix();
        let mapping = &self.settings.mapping;
        // A changed mapping re-reads every record once: exactly those whose
        // mapped output changed are written.
        let fingerprint = mapping.fingerprint(kind);
        let remapping = self.state.mapping_fingerprint(kind)?.is_some_and(|f| f != fingerprint);
        let full = self.request.mode == SyncMode::Full || remapping;
        let columns = mapping.columns(kind);
        let (mut stored, start) = self.stream_start(kind, false, full)?;
        let mut pending = Some(self.source.begin_changed(kind, start.as_ref(), &columns)?);
        // Records to write and the cursor that becomes safe once they are written.
        let mut batch = Batch::default();
        // Records wait until the read ends (then Composite writes them) or
        // until more than the threshold wait: from then on the run writes
        // through Bulk API 2.0, a job at a time.
        let mut bulk = false;
        while let Some(next_page) = pending.take() {
            let page = next_page.finish()?;
            let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
            let states = self.state.records(kind, &ids)?;
            let mut audit = Vec::with_capacity(page.records.len());
            let mut unchanged_states: Vec<(&str, RecordState)> = Vec::new();

            for (record, old) in page.records.iter().zip(states) {
                let src = source_hash(record);
                // The same row read again in the overlap window: already handled.
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
                        batch.records.push((mapped, RecordState { src, dst, sf, fields }));
                    }
                }
            }
            self.state.save_records(kind, &unchanged_states)?;
            self.host.audit.append(&audit);
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
                self.flush(kind, std::mem::take(&mut batch), bulk, &mut stored, counts)?;
            }
        }
        self.state.save_mapping_fingerprint(kind, &fingerprint)?;
        self.settle(kind, false, stored, started_at)
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
    ) -> Result<()> {
        let slice = if bulk {
            self.settings.salesforce.bulk_job_records.max(1) as usize
        } else {
            crate::salesforce::composite::RECORDS_PER_COMPOSITE
        };
        for part in batch.records.chunks(slice) {
            self.write(kind, part, bulk, counts)?;
        }
        if let Some(next) = &batch.cursor {
            self.advance(kind, false, stored, next)?;
        }
        Ok(())
    }

    fn write(
        &self,
        kind: RecordKind,
        part: &[(MappedRecord, RecordState)],
        bulk: bool,
        counts: &mut KindCounts,
    ) -> Result<()> {
        let targets: Vec<SObjectRecord> = part.iter().map(|(m, _)| m.target.clone()).collect();
        self.validate_target(kind)?;
        let (action, outcomes) = if bulk {
            ("bulk-write", self.sink.bulk_upsert(&targets)?)
        } else {
            ("write", self.sink.upsert(&targets)?)
        };
        let mut audit = Vec::with_capacity(outcomes.len());
        let mut new_states = Vec::with_capacity(outcomes.len());
        let mut succeeded = Vec::new();
        for ((mapped, new_state), outcome) in part.iter().zip(&outcomes) {
            counts.count(outcome.outcome);
            let entry = audit_entry(self.request, mapped, action, outcome);
            if outcome.outcome == OutcomeKind::Failed {
                self.state.save_failed(
                    kind,
                    &mapped.source_id,
                    &FailedWrite {
                        run_id: &self.request.run_id,
                        sobject: &mapped.target.sobject,
                        external_id: &mapped.target.external_id,
                        fields: &mapped.target.fields,
                        error: entry.error.as_deref().unwrap_or(""),
                    },
                )?;
            } else {
                let sf = outcome.salesforce_id.clone().or_else(|| new_state.sf.clone());
                new_states.push((mapped.source_id.as_str(), RecordState { sf, ..new_state.clone() }));
                succeeded.push(mapped.source_id.as_str());
            }
            audit.push(entry);
        }
        self.state.save_records(kind, &new_states)?;
        self.state.clear_failed(kind, &succeeded)?;
        self.host.audit.append(&audit);
        Ok(())
    }

    fn sync_deletions(&self, kind: RecordKind, counts: &mut KindCounts) -> Result<()> {
        let started_at = self.host.clock.now_unix();
        let (mut stored, mut cursor) = self.stream_start(kind, true, self.request.mode == SyncMode::Full)?;
        loop {
            let page = self.source.fetch_deleted(kind, cursor.as_ref())?;
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
                    RecordState { src: DELETED.into(), dst: DELETED.into(), sf: st.sf.clone(), fields: None },
                ));
            }
        }
        self.state.save_records(kind, &done)?;
        self.host.audit.append(&audit);
        Ok(())
    }
}
