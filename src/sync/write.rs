//! Where a run's writes go. A real run writes to Salesforce and records
//! every outcome (state, audit, failed queue); a dry run records a plan and
//! touches nothing. The stages above call the same [`Writer`] either way.

use super::ledger::Ledger;
use super::live::live_changes;
use super::queues::{ParkedWrite, Queue, SavedJob};
use super::run::{ParentRef, Run, Staged};
use super::state::{DELETED, RecordState, flagged};
use crate::mapping::TargetSpec;
use crate::model::{
    AuditAction, AuditEntry, AuditTransformations, FieldChange, OutcomeKind, PlanAction, PlannedWrite, RecordKind,
    Result, SObjectRecord, UpsertOutcome,
};
use crate::salesforce::errors::{already_deleted, deletion_may_land_later, missing_required, worth_another_attempt};
use crate::salesforce::{BulkResults, CsvJob, PendingUpsert, csv_safe};
use crate::settings::DeleteAction;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

/// How the records of one kind reach Salesforce this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Path {
    /// sObject Collections packed into Composite requests.
    Composite,
    /// Bulk API 2.0 jobs (records CSV cannot carry faithfully go through Composite).
    Bulk,
}

pub(super) trait Writer {
    /// A batch that takes the records of `kind`, page by page.
    fn batch<'b>(
        &'b self,
        run: &Run<'_>,
        kind: RecordKind,
        path: Path,
        action: AuditAction,
    ) -> Result<Box<dyn Batch + 'b>>;

    /// Applies NetSuite deletions to records the connector wrote.
    fn delete(&self, run: &Run<'_>, kind: RecordKind, pending: Vec<(String, RecordState)>) -> Result<()>;

    /// Holds a record back until its parents are in Salesforce.
    fn defer(&self, run: &Run<'_>, staged: &Staged, missing: &[ParentRef]) -> Result<()>;

    /// Whether `parent` will be in Salesforce when its children are written
    /// where the record states cannot say (a dry run: planned this run,
    /// written or deleted); `None`: the states say.
    fn planned(&self, parent: &ParentRef) -> Option<bool>;

    /// `states` of `ids` as this run left them where it saved none (a dry
    /// run: the rows it planned, as a real run's states would name them, so
    /// a row read again is dropped as one already handled).
    fn as_planned(
        &self,
        _kind: RecordKind,
        _ids: &[&str],
        states: Vec<Option<RecordState>>,
    ) -> Vec<Option<RecordState>> {
        states
    }

    /// Takes up what stopped runs left with Salesforce before `kind` is
    /// read again (a plan has nothing to take up).
    fn resume(&self, _run: &Run<'_>, _kind: RecordKind) -> Result<()> {
        Ok(())
    }

    /// The parents a record this plan writes links to; None when it plans
    /// no write of it (a real run's links are in the states it saved).
    fn planned_links(&self, _kind: RecordKind, _id: &str) -> Option<Vec<ParentRef>> {
        None
    }

    /// The plan (dry runs).
    fn plan(&self) -> Vec<PlannedWrite>;

    /// Whether writes are only planned (a dry run): other stages (the
    /// Salesforce → NetSuite direction) then record them with [`Writer::note`].
    fn plans(&self) -> bool {
        false
    }

    /// Records a write another stage would make (dry runs).
    fn note(&self, _entry: PlannedWrite) {}

    /// A record another stage takes out of Salesforce's reach (a vendor
    /// deleted there, inactivated in NetSuite): its children wait, as the
    /// state a real run saves makes them (dry runs).
    fn note_absent(&self, _record: ParentRef) {}
}

/// Takes staged records a page at a time and writes what is due.
pub(super) trait Batch {
    /// Adds the records of one page. Returns how many of the pages added so
    /// far are now completely recorded (oldest first, each counted once).
    fn add(&mut self, run: &Run<'_>, records: Vec<Staged>) -> Result<usize>;
    /// Writes whatever waits; every page is recorded after it.
    fn finish(&mut self, run: &Run<'_>) -> Result<usize>;
    /// The run is stopping: record the outcome of a write already sent, so
    /// nothing Salesforce received goes without state and audit. Returns how
    /// many pages are now completely recorded, as `add` does.
    fn abandon(&mut self, _run: &Run<'_>) -> Result<usize> {
        Ok(0)
    }
}

// ---------------------------------------------------------------- Salesforce

/// Writes to Salesforce and records every outcome.
pub(super) struct Salesforce;

impl Writer for Salesforce {
    fn resume(&self, run: &Run<'_>, kind: RecordKind) -> Result<()> {
        resume_bulk_jobs(run, kind)
    }

    fn batch<'b>(
        &'b self,
        run: &Run<'_>,
        kind: RecordKind,
        path: Path,
        action: AuditAction,
    ) -> Result<Box<dyn Batch + 'b>> {
        let composite = CompositeBatch::new(run, kind, action);
        Ok(match path {
            Path::Composite => Box::new(composite),
            Path::Bulk => Box::new(BulkBatch::new(run, kind, composite)?),
        })
    }

    fn delete(&self, run: &Run<'_>, kind: RecordKind, pending: Vec<(String, RecordState)>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        run.validate_target(kind)?;
        let mapping = &run.settings.mapping;
        let sobject = mapping.object(kind)?.sobject.clone();
        let (action, (outcomes, ended)) = match run.settings.delete_action {
            // By Salesforce id, not upsert: a record deleted there by hand
            // is not made again as a flag alone (or refused for want of a
            // Name, every run).
            DeleteAction::Flag => {
                let flags: Vec<(String, SObjectRecord)> = pending
                    .iter()
                    .map(|(id, st)| Ok((st.sf.clone().unwrap_or_default(), mapping.deletion_flag(kind, id)?)))
                    .collect::<Result<_>>()?;
                (AuditAction::FlagDeleted, with_attempts(run, &flags, |part| run.sink.update(part))?)
            }
            DeleteAction::Delete => {
                let sf_ids: Vec<String> = pending.iter().map(|(_, s)| s.sf.clone().unwrap_or_default()).collect();
                (AuditAction::Delete, with_attempts(run, &sf_ids, |part| run.sink.delete(part))?)
            }
        };
        let mut audit = Vec::with_capacity(pending.len());
        let mut done = Vec::new();
        let mut gone = Vec::new();
        for ((id, st), outcome) in pending.iter().zip(outcomes) {
            // Deleted in Salesforce already (by hand, or a delete whose
            // outcome a stopped run never recorded): what the deletion
            // wanted, and nothing is left to flag.
            let binned = already_deleted(&outcome);
            let ok = outcome.outcome != OutcomeKind::Failed || binned;
            if !ok && deletion_may_land_later(&outcome) {
                retry_deletion(run, kind, id)?;
            }
            let counted = if ok { OutcomeKind::Deleted } else { OutcomeKind::Failed };
            run.count(kind, counted);
            audit.push(AuditEntry {
                run_id: run.request.run_id.clone(),
                kind,
                action,
                netsuite_id: id.clone(),
                salesforce_id: st.sf.clone(),
                outcome: counted.as_str().into(),
                transformations: AuditTransformations::Whole(
                    serde_json::json!([{
                        "field": sobject, "rule": action.as_str(), "detail": "deletedrecord"
                    }])
                    .to_string(),
                ),
                error: errors_text(&outcome),
            });
            if ok {
                // A flagged record stays in Salesforce as last written, plus
                // the flag: write-back tells a later edit of it from the
                // flag's echo by these fields.
                let fields = match action {
                    AuditAction::FlagDeleted => st.fields.as_deref().and_then(flagged),
                    _ => None,
                };
                let deleted = RecordState {
                    src: DELETED.into(),
                    dst: DELETED.into(),
                    sf: st.sf.clone(),
                    fields,
                    org: None,
                    sf_deleted: false,
                };
                done.push((id.as_str(), deleted));
                gone.push(id.as_str());
            }
        }
        // Audit first (see `stage`).
        run.audit(audit);
        // Their children are written again under no parent: deleted, the
        // parent took them (or the links to them) along; flagged, it stays,
        // but NetSuite no longer has it, and any later read of a child would
        // unlink it anyway (one rule, whenever the child is read). Queued
        // before the parents' states: a run killed in between reads these
        // deletions again, and would skip parents already marked deleted.
        super::children::refresh(run, kind, &gone, action == AuditAction::Delete, &mut |_, _| {})?;
        run.state.save_records(kind, done)?;
        ended
    }

    fn defer(&self, run: &Run<'_>, staged: &Staged, missing: &[ParentRef]) -> Result<()> {
        // A link the object cannot take (its lookup names another object)
        // would defer the record for good: checked as before a write.
        run.checked_only(staged.mapped.source_kind)?;
        let reason = defer_reason(missing);
        let mut queued = staged.queued(&run.request.run_id, reason.clone());
        queued.waits_for = missing.to_vec();
        run.queues.put(Queue::Deferred, &queued)?;
        run.count(staged.mapped.source_kind, OutcomeKind::Deferred);
        let entry =
            run.staged_entry(staged, AuditAction::Defer, OutcomeKind::Deferred, staged.state.sf.clone(), Some(reason));
        run.audit(vec![entry]);
        Ok(())
    }

    fn planned(&self, _: &ParentRef) -> Option<bool> {
        None
    }

    fn plan(&self) -> Vec<PlannedWrite> {
        Vec::new()
    }
}

/// Sends `items`, then again, after the retry policy's backoff, those
/// Salesforce refused only for a passing reason (see
/// [`CompositeBatch::again`]), up to its number of retries; one outcome per
/// item, the last. Deletions and flags have no newer versions in a run.
/// If the run must end between attempts (its lease, a stop, a failed
/// call), the outcomes so far come back with that error, for the caller to
/// record what Salesforce applied before passing it on.
fn with_attempts<T: Clone>(
    run: &Run<'_>,
    items: &[T],
    send: impl Fn(&[T]) -> Result<Vec<UpsertOutcome>>,
) -> Result<(Vec<UpsertOutcome>, Result<()>)> {
    let mut outcomes = send(items)?;
    for attempt in 0..run.sink.record_attempts() {
        let again: Vec<usize> = (0..outcomes.len()).filter(|&i| worth_another_attempt(&outcomes[i])).collect();
        if again.is_empty() {
            break;
        }
        run.sink.pause_before(attempt);
        let part: Vec<T> = again.iter().map(|&i| items[i].clone()).collect();
        match run.checkpoint().and_then(|()| send(&part)) {
            Ok(resent) => again.into_iter().zip(resent).for_each(|(i, outcome)| outcomes[i] = outcome),
            Err(e) => return Ok((outcomes, Err(e))),
        }
    }
    Ok((outcomes, Ok(())))
}

/// The name of the events [`retry_deletion`] queues.
const REFUSED_DELETION: &str = "deletion-failed";

/// Whether `event` is a deletion Salesforce refused, queued to go again.
pub(super) fn is_refused_deletion(event: &super::queues::QueuedEvent) -> bool {
    event.event == REFUSED_DELETION
}

/// A deletion Salesforce refused (a lock that outlasted the attempts, a
/// validation rule on the flag) is not lost once the deletions cursor moves
/// past it: it is queued as a change event, which the next run applies
/// first (the record is gone from NetSuite, so it gets the deletion again).
fn retry_deletion(run: &Run<'_>, kind: RecordKind, id: &str) -> Result<()> {
    run.queues.put_event(&super::queues::QueuedEvent {
        kind,
        id: id.to_string(),
        event: REFUSED_DELETION.into(),
        received_at: run.host.clock.now_unix(),
        nonce: run.host.clock.random(),
    })
}

fn defer_reason(missing: &[ParentRef]) -> String {
    format!(
        "waiting for {}: not in Salesforce yet (never synced, or its last write failed)",
        missing.iter().map(|(k, id)| format!("{k} {id}")).collect::<Vec<_>>().join(", ")
    )
}

pub(super) fn errors_text(outcome: &UpsertOutcome) -> Option<String> {
    (!outcome.errors.is_empty()).then(|| outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

/// Records the outcomes of one write: the new state on success, the exact
/// payload in the failed queue otherwise, and an audit entry either way.
fn record_outcomes(
    run: &Run<'_>,
    kind: RecordKind,
    written: Vec<Staged>,
    outcomes: &[UpsertOutcome],
    action: AuditAction,
) -> Result<()> {
    let mut audit = Vec::with_capacity(written.len());
    let mut new_states = Vec::with_capacity(written.len());
    let mut anew = Vec::new();
    // Records whose last version here failed.
    let mut refused: HashSet<String> = HashSet::new();
    for (staged, outcome) in written.into_iter().zip(outcomes) {
        // Created by its changed fields, completed by this write.
        let result = match outcome.outcome {
            OutcomeKind::Updated if staged.created => OutcomeKind::Created,
            other => other,
        };
        run.count(kind, result);
        // A record Salesforce holds under another id than the state knew
        // (created anew, or completed after a run stopped between its
        // creation and its relink) is relinked; one `again` created was.
        let moved = outcome
            .salesforce_id
            .as_deref()
            .is_some_and(|new| staged.state.sf.as_deref().is_some_and(|old| !same_id(new, old)));
        if staged.state.sf.is_some() && !staged.created && (result == OutcomeKind::Created || moved) {
            anew.push(staged.mapped.source_id.clone());
        }
        let error = errors_text(outcome);
        // A refused write names no record: the audit names the one it was for.
        let sf = outcome.salesforce_id.clone().or_else(|| staged.state.sf.clone());
        audit.push(run.staged_entry(&staged, action, result, sf, error.clone()));
        if result == OutcomeKind::Failed {
            let mut queued = staged.queued(&run.request.run_id, error.unwrap_or_default());
            queued.waits_for = vec![];
            run.queues.put_failed(queued, run.host.clock.now_unix())?;
            refused.insert(staged.mapped.source_id);
        } else {
            if !refused.is_empty() {
                refused.remove(staged.mapped.source_id.as_str());
            }
            // Created with its changed fields only, its whole newer version
            // on its way: in doubt until that lands.
            let partial = staged.changed_only.is_some() && result == OutcomeKind::Created;
            let Staged { mapped, state, payload, .. } = staged;
            let sf = outcome.salesforce_id.clone().or(state.sf);
            let held = match partial {
                true => super::in_flight::in_doubt(RecordState { sf, ..state }),
                false => RecordState { sf, fields: Some(payload), ..state },
            };
            new_states.push((mapped.source_id, held));
        }
    }
    // A record read twice (changed during the read) may be here twice: an
    // older version that landed does not take a newer one's failure out.
    let landed: Vec<String> = new_states
        .iter()
        .map(|(id, _)| id.clone())
        .filter(|id| refused.is_empty() || !refused.contains(id.as_str()))
        .collect();
    // Audit first (see `stage`).
    run.audit(audit);
    run.state.save_records(kind, new_states)?;
    run.queues.remove(kind, &landed)?;
    relink(run, kind, &anew)
}

/// Records created where their states knew an earlier Salesforce record
/// (deleted there): their children's links reached the old one.
fn relink(run: &Run<'_>, kind: RecordKind, anew: &[String]) -> Result<()> {
    let ids: Vec<&str> = anew.iter().map(String::as_str).collect();
    super::children::refresh(run, kind, &ids, true, &mut |_, _| {})
}

/// Records the outcomes of the records parked under `key`, as
/// [`record_outcomes`] does for written ones; returns how many, and the
/// records to send again instead (see [`CompositeBatch::again`]).
/// `resumed`: the job is a stopped run's (that run read the records).
/// `newer`: with it, a record refused only for a passing reason is sent
/// again, unless a newer version of it is on its way (`newer` of its
/// [`hash_id`]).
fn record_parked(
    run: &Run<'_>,
    kind: RecordKind,
    key: &str,
    results: &BulkResults,
    resumed: bool,
    newer: Option<&dyn Fn(u64) -> bool>,
) -> Result<(usize, Vec<ParkedWrite>)> {
    let parked = run.queues.take_parked(key)?;
    let mut n = 0;
    let mut audit = Vec::with_capacity(parked.len());
    let mut new_states = Vec::with_capacity(parked.len());
    let mut anew = Vec::new();
    let mut again = Vec::new();
    for p in parked {
        let outcome = results.outcome(&p.external_id);
        if worth_another_attempt(&outcome) && newer.is_some_and(|newer| !newer(hash_id(&p.external_id))) {
            again.push(p);
            continue;
        }
        n += 1;
        run.count(kind, outcome.outcome);
        if outcome.outcome == OutcomeKind::Created && p.state.sf.is_some() {
            anew.push(p.netsuite_id.clone());
        }
        if resumed {
            run.count_resumed(kind, 1);
        }
        let error = errors_text(&outcome);
        let action = if resumed { AuditAction::BulkResume } else { AuditAction::BulkWrite };
        let sf = outcome.salesforce_id.clone().or_else(|| p.state.sf.clone());
        audit.push(run.parked_entry(&p, action, outcome.outcome, sf, error.clone()));
        if outcome.outcome == OutcomeKind::Failed {
            let queued = p.queued(&run.request.run_id, error.unwrap_or_default())?;
            run.queues.put_failed(queued, run.host.clock.now_unix())?;
        } else {
            let sf = outcome.salesforce_id.or(p.state.sf);
            new_states.push((p.netsuite_id, RecordState { sf, fields: Some(p.fields), ..p.state }));
        }
    }
    let landed: Vec<String> = new_states.iter().map(|(id, _)| id.clone()).collect();
    // Audit first (see `stage`).
    run.audit(audit);
    run.state.save_records(kind, new_states)?;
    run.queues.remove(kind, &landed)?;
    relink(run, kind, &anew)?;
    Ok((n, again))
}

/// Takes up the Bulk API 2.0 jobs of `kind` that a stopped run submitted:
/// Salesforce applied them, so their results are read and recorded instead
/// of the records being sent again. Then drops whatever else stopped runs
/// left parked (their pages were not recorded, so they are read again).
fn resume_bulk_jobs(run: &Run<'_>, kind: RecordKind) -> Result<()> {
    let (jobs, parked) = run.queues.leftovers(kind)?;
    for (key, job) in jobs {
        match run.sink.bulk_results(&job.sobject, &job.external_id_field, &job.id, &|| run.renew()) {
            Ok(results) => {
                for parked in &job.parked {
                    record_parked(run, kind, parked, &results, true, None)?;
                    run.renew()?;
                }
            }
            // Gone from Salesforce (results are kept for seven days) or
            // unreadable: its records are written again from their pages.
            Err(e) if e.is_about_data() => {}
            Err(e) => return Err(e),
        }
        run.queues.forget_job(&key)?;
    }
    run.queues.clear_parked(&parked)
}

/// Records wait here until a full Composite request's worth (the sink's
/// slice) is ready, so sparse pages do not cost a call each. Up to
/// [`in_flight_cap`] requests travel at once: Salesforce works on some
/// while the outcomes of another are recorded and the next page is read and
/// staged. Outcomes are recorded in the order the requests went out.
struct CompositeBatch {
    kind: RecordKind,
    in_flight_cap: usize,
    action: AuditAction,
    slice: usize,
    /// Payload bytes a request carries at most (the sink's share of memory).
    max_bytes: usize,
    waiting: Vec<(usize, Staged)>,
    waiting_bytes: usize,
    in_flight: VecDeque<Sent>,
    ledger: Ledger,
    /// Records sent again after a refusal for a passing reason (see
    /// [`CompositeBatch::again`]), as [`id_hash`]es, with how often so far.
    attempts: HashMap<u64, u32>,
    /// Of a kind written both ways, the records added so far with their
    /// changed fields only, as [`id_hash`]es: a record added again (read
    /// twice, changed during the read) goes whole, since its changed fields
    /// were found against what Salesforce held before its earlier version
    /// (see `Staged::changed_only`).
    added: Option<HashSet<u64>>,
    /// Records went back to `waiting` whole (see [`CompositeBatch::again`]):
    /// due now, not after a backoff.
    whole_again: bool,
}

/// Records with their pages, and their outcomes, in the same order.
type Answered = (Vec<(usize, Staged)>, Vec<UpsertOutcome>);

/// A Composite request on its way: the records it carries, and the key of
/// their mark (see `in_flight`).
type Sent = (Vec<(usize, Staged)>, PendingUpsert, String);

/// Requests of `kind` in flight at once. Three keep Salesforce busy while
/// the connector records one's outcomes, when each call waits on the network
/// (50 ms a call: 100,000 customers 4.7–5.0 s with two, 3.3–3.4 s with
/// three); more would only queue in the org and hold more memory. Two when
/// records link to parents (children of one parent in requests side by side
/// contend for its row lock: each wait can last seconds before Salesforce
/// gives up with UNABLE_TO_LOCK_ROW, retried in [`CompositeBatch::again`])
/// or when memory is tight: a
/// request's share of it below [`ROOM_FOR_A_THIRD`] (a memory cap under 256
/// MB) keeps the requests' records within the share the cap was split for.
fn in_flight_cap(run: &Run<'_>, kind: RecordKind) -> usize {
    let tight = run.sink.composite_max_bytes() < ROOM_FOR_A_THIRD;
    if tight || run.settings.mapping.has_parents(kind) { 2 } else { 3 }
}

/// A Composite request's share of memory from which a third one in flight
/// is allowed (the default cap of 512 MB gives 8 MB).
const ROOM_FOR_A_THIRD: usize = 4 << 20;

impl CompositeBatch {
    fn new(run: &Run<'_>, kind: RecordKind, action: AuditAction) -> Self {
        CompositeBatch {
            kind,
            in_flight_cap: in_flight_cap(run, kind),
            action,
            slice: run.sink.composite_slice().max(1),
            max_bytes: run.sink.composite_max_bytes(),
            waiting: Vec::new(),
            waiting_bytes: 0,
            in_flight: VecDeque::new(),
            ledger: Ledger::default(),
            attempts: HashMap::new(),
            added: (run.settings.writeback.is_some() && run.settings.mapping.writeback(kind).is_some())
                .then(HashSet::new),
            whole_again: false,
        }
    }

    /// Waits for the oldest request in flight and records its outcomes.
    fn settle_oldest(&mut self, run: &Run<'_>) -> Result<()> {
        let Some((part, pending, mark)) = self.in_flight.pop_front() else { return Ok(()) };
        let outcomes = run.sink.finish_upsert(pending)?;
        let (part, outcomes) = self.again(run, part, outcomes)?;
        let (pages, staged): (Vec<usize>, Vec<Staged>) = part.into_iter().unzip();
        record_outcomes(run, self.kind, staged, &outcomes, self.action)?;
        run.in_flight.clear(&mark)?;
        for page in pages {
            self.ledger.done(page, 1);
        }
        Ok(())
    }

    /// Takes the records Salesforce refused only for a passing reason (a
    /// row lock, see [`worth_another_attempt`]) back into `waiting`, up to
    /// the retry policy's number of times each: they go with the next
    /// request, and their pages stay open until their outcomes are recorded.
    /// A record with a newer version waiting, in flight or later in this
    /// request is not sent again (that version would be overwritten): its
    /// failure stands until the newer one lands. Returns what is recorded now.
    fn again(&mut self, run: &Run<'_>, part: Vec<(usize, Staged)>, outcomes: Vec<UpsertOutcome>) -> Result<Answered> {
        // Sent with its changed fields only, a record Salesforce created
        // (gone from there since this run's poll, or given another NetSuite
        // id) or refused as one created without its required fields goes
        // again whole at once: the fields it lacks are written before its
        // outcome is recorded.
        let again_whole = |s: &Staged, o: &UpsertOutcome| {
            s.changed_only.is_some() && (o.outcome == OutcomeKind::Created || missing_required(o))
        };
        if self.attempts.is_empty()
            && !outcomes.iter().any(worth_another_attempt)
            && !part.iter().zip(&outcomes).any(|((_, s), o)| again_whole(s, o))
        {
            return Ok((part, outcomes));
        }
        let mut newer = self.holds();
        let most = run.sink.record_attempts();
        let mut now = Vec::with_capacity(part.len());
        // Created with some fields: in doubt until the whole lands, so a
        // run stopped before that writes it whole (see `in_flight`), and
        // relinked now (its children's links reached the record gone).
        let mut doubts = Vec::new();
        // Backwards, so `newer` holds the versions later in this request.
        for ((page, mut staged), outcome) in part.into_iter().zip(outcomes).rev() {
            let id = id_hash(&staged);
            // A newer version on its way is whole (see `push`): it completes it.
            if again_whole(&staged, &outcome) && !newer.contains(&id) {
                staged.changed_only = None;
                staged.created = outcome.outcome == OutcomeKind::Created;
                if staged.created {
                    // Kept with the id it had: a run stopped before the relink
                    // below relinks when it finds the new one (see `moved`).
                    doubts.push((staged.mapped.source_id.clone(), super::in_flight::in_doubt(staged.state.clone())));
                    if outcome.salesforce_id.is_some() {
                        staged.state.sf.clone_from(&outcome.salesforce_id);
                    }
                }
                self.whole_again = true;
                self.waiting_bytes += staged.payload.get().len();
                self.waiting.push((page, staged));
                newer.insert(id);
                continue;
            }
            let tried = self.attempts.get(&id).copied().unwrap_or(0);
            if worth_another_attempt(&outcome) && tried < most && !newer.contains(&id) {
                self.attempts.insert(id, tried + 1);
                self.waiting_bytes += staged.payload.get().len();
                self.waiting.push((page, staged));
            } else {
                // A newer version's count stays (it may have just been sent again).
                if !newer.contains(&id) {
                    self.attempts.remove(&id);
                }
                now.push(((page, staged), outcome));
            }
            newer.insert(id);
        }
        let created: Vec<String> = doubts.iter().map(|(id, _)| id.clone()).collect();
        run.state.save_records(self.kind, doubts)?;
        relink(run, self.kind, &created)?;
        now.reverse();
        Ok(now.into_iter().unzip())
    }

    /// Waits for every request in flight, oldest first.
    fn settle(&mut self, run: &Run<'_>) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_oldest(run)?;
        }
        Ok(())
    }

    /// How many of the waiting records the next request takes: a slice, or
    /// fewer when theirs would pass `max_bytes` (one at least); None while
    /// neither is reached and more may come.
    fn next_part(&self, everything: bool) -> Option<usize> {
        let full = self.waiting.len() >= self.slice || self.waiting_bytes >= self.max_bytes;
        if self.waiting.is_empty() || !(full || everything) {
            return None;
        }
        let mut bytes = 0;
        let take = self
            .waiting
            .iter()
            .take(self.slice)
            .take_while(|(_, s)| {
                bytes += s.payload.get().len();
                bytes <= self.max_bytes
            })
            .count();
        Some(take.max(1))
    }

    fn write_due(&mut self, run: &Run<'_>, everything: bool) -> Result<()> {
        let mut pauses = 0;
        loop {
            self.send_due(run, everything)?;
            if !everything {
                return Ok(());
            }
            self.settle(run)?;
            if self.waiting.is_empty() {
                return Ok(());
            }
            if std::mem::take(&mut self.whole_again) {
                continue;
            }
            // Only records sent again are left, and nothing else would
            // space their attempts: give what held them time to end.
            run.sink.pause_before(pauses);
            pauses += 1;
        }
    }

    fn send_due(&mut self, run: &Run<'_>, everything: bool) -> Result<()> {
        // What went back whole is sent now: no pause is owed for it.
        self.whole_again = false;
        while let Some(take) = self.next_part(everything) {
            run.renew()?;
            run.validate_target(self.kind)?;
            // A record read again this run (changed during the read) goes
            // after its request in flight is answered: Salesforce may run
            // two requests side by side, in either order. Settled while the
            // part still waits, so a refused older version sees it (`again`);
            // records sent again go to the end, after the part.
            if !self.in_flight.is_empty() {
                let ids: HashSet<u64> = self.waiting[..take].iter().map(|(_, s)| id_hash(s)).collect();
                if self.in_flight.iter().any(|(sent, ..)| sent.iter().any(|(_, s)| ids.contains(&id_hash(s)))) {
                    self.settle(run)?;
                }
            }
            let part: Vec<(usize, Staged)> = self.waiting.drain(..take).collect();
            self.waiting_bytes -= part.iter().map(|(_, s)| s.payload.get().len()).sum::<usize>();
            let targets: Vec<&SObjectRecord> =
                part.iter().map(|(_, s)| s.changed_only.as_deref().unwrap_or(&s.mapped.target)).collect();
            let texts: Vec<Option<&str>> =
                part.iter().map(|(_, s)| s.changed_only.is_none().then(|| s.payload.get())).collect();
            let mark = run.in_flight.mark(self.kind, true, part.iter().map(|(_, s)| s))?;
            let pending = run.sink.begin_upsert(&targets, &texts)?;
            self.in_flight.push_back((part, pending, mark));
            while self.in_flight.len() >= self.in_flight_cap {
                self.settle_oldest(run)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, page: usize, mut staged: Staged) {
        if let Some(added) = &mut self.added
            && staged.changed_only.is_some()
            && !added.insert(id_hash(&staged))
        {
            staged.changed_only = None;
        }
        self.ledger.expect(page, 1);
        self.waiting_bytes += staged.payload.get().len();
        self.waiting.push((page, staged));
    }

    /// The records waiting or in flight, as [`id_hash`]es.
    fn holds(&self) -> HashSet<u64> {
        let sent = self.in_flight.iter().flat_map(|(part, ..)| part);
        self.waiting.iter().chain(sent).map(|(_, s)| id_hash(s)).collect()
    }
}

/// A record's external id, hashed: what tells two versions of one record
/// apart from two records (a collision only costs an early write).
fn id_hash(staged: &Staged) -> u64 {
    hash_id(&staged.mapped.target.external_id)
}

/// Whether two Salesforce ids name one record (15 or 18 characters).
fn same_id(a: &str, b: &str) -> bool {
    use crate::salesforce::ids::full_id;
    a == b || full_id(a).is_some_and(|a| full_id(b) == Some(a))
}

fn hash_id(external_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(external_id.as_bytes())
}

impl Batch for CompositeBatch {
    fn add(&mut self, run: &Run<'_>, records: Vec<Staged>) -> Result<usize> {
        let page = self.ledger.open_page();
        for staged in records {
            self.push(page, staged);
        }
        self.write_due(run, false)?;
        Ok(self.ledger.take_completed())
    }

    fn finish(&mut self, run: &Run<'_>) -> Result<usize> {
        self.write_due(run, true)?;
        Ok(self.ledger.take_completed())
    }

    fn abandon(&mut self, run: &Run<'_>) -> Result<usize> {
        self.settle(run)?;
        Ok(self.ledger.take_completed())
    }
}

/// Records stream into Bulk API 2.0 jobs' CSV, one open job per record
/// shape (see [`CsvJob`]); what they need once a job's results are in waits
/// in the queues bucket, a page at a time, so memory holds the CSV and not
/// the records. A full job is submitted and left to Salesforce while the
/// next one fills; its results are read once the next one is uploaded (or
/// the read ends), so Salesforce works on a job while NetSuite is read, and
/// recorded once the next one is closed, so Salesforce works on that one
/// while they are.
/// Records CSV cannot carry faithfully (a literal `#N/A`, a NUL) go through
/// Composite. So do the parked records when the read ends
/// with no more to write than `salesforce_bulk_threshold` (NetSuite's count
/// included rows already handled, e.g. the overlap window), and a job too
/// small to be worth one.
struct BulkBatch {
    kind: RecordKind,
    spec: TargetSpec,
    jobs: Vec<OpenJob>,
    job_records: usize,
    max_bytes: usize,
    threshold: usize,
    /// Records given to this batch so far.
    staged: usize,
    composite: CompositeBatch,
    ledger: Ledger,
    /// Our page of each page given to the composite batch, in order.
    composite_pages: Vec<usize>,
    /// The job Salesforce is working on, its outcomes not yet recorded.
    submitted: Option<SubmittedJob>,
    /// Jobs closed so far: orders the saved jobs, so a stopped run's are
    /// recorded in the order Salesforce applied them.
    closed: usize,
    /// A close failed: that job may be running in Salesforce unrecorded.
    close_failed: bool,
}

struct OpenJob {
    shape: String,
    csv: CsvJob,
    /// Queue keys of the parked records in the job, by our page.
    parked: Vec<(usize, String)>,
    /// Its records, as [`id_hash`]es.
    ids: HashSet<u64>,
    /// Keys of its records' marks (see `in_flight`), a page's each.
    marks: Vec<String>,
}

impl OpenJob {
    fn new(spec: &TargetSpec, shape: String, first: &SObjectRecord) -> OpenJob {
        OpenJob { shape, csv: CsvJob::new(spec, first), parked: vec![], ids: HashSet::new(), marks: vec![] }
    }
}

/// A job uploaded and closed, kept in the queues bucket under `key` until
/// its outcomes are recorded (a run that stops first leaves it to the next,
/// see [`resume_bulk_jobs`]).
struct SubmittedJob {
    key: String,
    job: SavedJob,
    /// Queue keys of its parked records, by our page.
    parked: Vec<(usize, String)>,
    ids: HashSet<u64>,
    marks: Vec<String>,
}

/// What was closed while an ended job's outcomes are recorded.
#[derive(Clone, Copy)]
enum Closing<'a> {
    Nothing,
    /// The job with these records (as [`id_hash`]es).
    Job(&'a HashSet<u64>),
    /// A close that failed: it may have reached Salesforce or not.
    Unknown,
}

/// A submitted job that has ended, its results read, its outcomes not yet
/// recorded.
struct EndedJob {
    key: String,
    parked: Vec<(usize, String)>,
    results: BulkResults,
    marks: Vec<String>,
}

impl BulkBatch {
    fn new(run: &Run<'_>, kind: RecordKind, composite: CompositeBatch) -> Result<Self> {
        let spec = run.settings.mapping.target_spec(kind)?;
        Ok(BulkBatch {
            kind,
            spec,
            jobs: Vec::new(),
            job_records: run.sink.bulk_job_records(),
            max_bytes: run.sink.bulk_max_upload_bytes(),
            threshold: run.settings.salesforce.bulk_threshold as usize,
            staged: 0,
            composite,
            ledger: Ledger::default(),
            composite_pages: Vec::new(),
            submitted: None,
            closed: 0,
            close_failed: false,
        })
    }

    /// Sends job `n`: submits it to Bulk API 2.0, or, when `few` or when it
    /// is smaller than one Composite request, writes it through Composite.
    /// The job submitted before must have ended before this one is closed:
    /// a record read twice in a run (changed during the read) reaches
    /// Salesforce in the order it was read, which jobs running side by side
    /// would not keep. Its outcomes are recorded after the close, while
    /// Salesforce works on this one.
    fn run_job(&mut self, run: &Run<'_>, n: usize, few: bool) -> Result<()> {
        let job = self.jobs.swap_remove(n);
        run.renew()?;
        run.validate_target(self.kind)?;
        let tiny = job.csv.records() < run.sink.composite_slice().min(self.threshold.max(1));
        if few || tiny {
            self.collect(run)?;
            // At most the threshold's worth: written a Composite request at a time.
            let mut parked = Vec::new();
            for (page, key) in job.parked {
                parked.extend(run.queues.take_parked(&key)?.into_iter().map(|p| (page, p)));
            }
            self.write_through_composite(run, parked)?;
            return job.marks.iter().try_for_each(|mark| run.in_flight.clear(mark));
        }
        // Uploaded before the job before is waited for, so its CSV has left
        // memory by then.
        let mut marks = job.marks;
        let (id, sobject, ext) = self.upload(run, job.csv, &mut marks)?;
        let ended = match self.wait_submitted(run) {
            Ok(ended) => ended,
            Err(e) => {
                // Best effort: an Open job applies nothing, aborted or not.
                let _ = run.sink.bulk_abort(&id);
                return Err(e);
            }
        };
        let closed = run.sink.bulk_close(&id);
        // A close that failed may have reached Salesforce: that job may run.
        self.close_failed |= closed.is_err();
        let closed = closed.and_then(|()| {
            let (key, saved) = self.save_closed(run, id, sobject, ext, &job.parked)?;
            Ok(SubmittedJob { key, job: saved, parked: job.parked, ids: job.ids, marks })
        });
        // Recorded whether or not the close went through: the job before
        // was applied either way.
        if let Some(ended) = ended {
            // A close that failed may still have reached Salesforce: with its
            // records unknown, nothing is sent again (the run stops below).
            let closing = match &closed {
                Ok(c) => Closing::Job(&c.ids),
                Err(_) => Closing::Unknown,
            };
            self.record_ended(run, ended, closing)?;
        }
        self.submitted = Some(closed?);
        Ok(())
    }

    /// Uploads `csv` as a new job, marked as soon as it exists (its mark
    /// goes to `marks`): a process killed before the close leaves an Open
    /// job the next run aborts (it applies nothing). Returns the job's id,
    /// object and external id field.
    fn upload(&self, run: &Run<'_>, csv: CsvJob, marks: &mut Vec<String>) -> Result<(String, String, String)> {
        let (sobject, ext) = (csv.sobject.clone(), csv.external_id_field.clone());
        let id = run.sink.bulk_open(csv, &mut |id| {
            marks.push(run.in_flight.mark_job(self.kind, id, &sobject, &ext)?);
            Ok(())
        })?;
        Ok((id, sobject, ext))
    }

    /// Keeps a closed job with its parked records until its outcomes are
    /// recorded (by this run or, stopped first, the next); returns its key.
    fn save_closed(
        &mut self,
        run: &Run<'_>,
        id: String,
        sobject: String,
        external_id_field: String,
        parked: &[(usize, String)],
    ) -> Result<(String, SavedJob)> {
        let parked = parked.iter().map(|(_, key)| key.clone()).collect();
        let saved = SavedJob { id, sobject, external_id_field, parked };
        self.closed += 1;
        let key = run.queues.save_job(self.kind, &run.request.run_id, self.closed, &saved)?;
        Ok((key, saved))
    }

    /// Waits for the submitted job to end and reads its results.
    /// Until its results are read it stays submitted: it may still run.
    fn wait_submitted(&mut self, run: &Run<'_>) -> Result<Option<EndedJob>> {
        let Some(submitted) = self.submitted.take() else { return Ok(None) };
        let job = &submitted.job;
        match run.sink.bulk_results(&job.sobject, &job.external_id_field, &job.id, &|| run.renew()) {
            Ok(results) => {
                let SubmittedJob { key, parked, marks, .. } = submitted;
                Ok(Some(EndedJob { key, parked, results, marks }))
            }
            Err(e) => {
                self.submitted = Some(submitted);
                Err(e)
            }
        }
    }

    /// Records every outcome of an ended job. Records refused only for a
    /// passing reason (a row lock: Bulk API loads in parallel, so children
    /// of one parent in different internal batches contend for it) are
    /// sent again through Composite, unless a newer version of one is in
    /// an open job, in `closing` (the job closed meanwhile) or waits for
    /// Composite: then its failure stands until that version lands.
    fn record_ended(&mut self, run: &Run<'_>, ended: EndedJob, closing: Closing<'_>) -> Result<()> {
        let mut again = Vec::new();
        let mut recorded = Vec::with_capacity(ended.parked.len());
        {
            let held = self.composite.holds();
            let jobs = &self.jobs;
            let on_its_way = |h: u64| {
                held.contains(&h)
                    || jobs.iter().any(|j| j.ids.contains(&h))
                    || match closing {
                        Closing::Nothing => false,
                        Closing::Job(ids) => ids.contains(&h),
                        Closing::Unknown => true,
                    }
            };
            for (page, parked_key) in ended.parked {
                let (n, locked) = record_parked(run, self.kind, &parked_key, &ended.results, false, Some(&on_its_way))?;
                recorded.push((page, n));
                again.extend(locked.into_iter().map(|p| (page, p)));
                run.renew()?;
            }
        }
        for (page, n) in recorded {
            self.ledger.done(page, n);
        }
        self.write_through_composite(run, again)?;
        run.queues.forget_job(&ended.key)?;
        ended.marks.iter().try_for_each(|mark| run.in_flight.clear(mark))
    }

    /// Writes parked records through Composite, a request at a time, and
    /// records their outcomes (each counted done in its page).
    fn write_through_composite(&mut self, run: &Run<'_>, parked: Vec<(usize, ParkedWrite)>) -> Result<()> {
        if parked.is_empty() {
            return Ok(());
        }
        let mut composite = CompositeBatch::new(run, self.kind, AuditAction::Write);
        for (page, p) in parked {
            composite.push(page, Staged::from(p.queued(&run.request.run_id, String::new())?));
        }
        let pages = composite.waiting.iter().map(|(p, _)| *p).collect::<Vec<_>>();
        composite.write_due(run, true)?;
        for page in pages {
            self.ledger.done(page, 1);
        }
        Ok(())
    }

    /// Waits for the submitted job to end and records every outcome.
    fn collect(&mut self, run: &Run<'_>) -> Result<()> {
        match self.wait_submitted(run)? {
            Some(ended) => self.record_ended(run, ended, Closing::Nothing),
            None => Ok(()),
        }
    }

    /// Sends ahead whatever holds an earlier version of a record this page
    /// brings again (it changed during the read), so the versions reach
    /// Salesforce in the order they were read: two versions in one job
    /// would both fail (`DUPLICATE_VALUE`), and jobs and Composite requests
    /// run in no order of their own. Rare, so the cost (an early job, a
    /// wait) does not matter.
    fn keep_order(&mut self, run: &Run<'_>, to_jobs: &HashSet<u64>, to_composite: &HashSet<u64>) -> Result<()> {
        let again = |ids: &HashSet<u64>| to_jobs.iter().chain(to_composite).any(|h| ids.contains(h));
        // Sent now, it runs after the job before it and before any job after.
        while let Some(n) = self.jobs.iter().position(|j| again(&j.ids)) {
            self.run_job(run, n, false)?;
        }
        // Composite requests do not wait for jobs: this one must end first.
        if self.submitted.as_ref().is_some_and(|s| to_composite.iter().any(|h| s.ids.contains(h))) {
            self.collect(run)?;
        }
        // A job is closed whenever it fills: the request goes first.
        if !to_jobs.is_empty() && (!self.composite.waiting.is_empty() || !self.composite.in_flight.is_empty()) {
            let held = self.composite.holds();
            if to_jobs.iter().any(|h| held.contains(h)) {
                let completed = self.composite.finish(run)?;
                self.settle_composite(completed);
            }
        }
        Ok(())
    }

    /// Moves completed composite pages into our ledger.
    fn settle_composite(&mut self, completed: usize) {
        for ours in self.composite_pages.drain(..completed) {
            self.ledger.done(ours, 1);
        }
    }

    /// Adds records of one shape from `page` to their open job.
    fn add_shaped(&mut self, run: &Run<'_>, page: usize, shape: String, records: Vec<Staged>) -> Result<()> {
        let targets: Vec<&SObjectRecord> = records.iter().map(|s| &s.mapped.target).collect();
        let n = match self.jobs.iter().position(|j| j.shape == shape) {
            Some(n) => n,
            None => {
                self.jobs.push(OpenJob::new(&self.spec, shape.clone(), targets[0]));
                self.jobs.len() - 1
            }
        };
        let rows = self.jobs[n].csv.rows(&targets);
        let csv = &self.jobs[n].csv;
        let n = if csv.records() + records.len() > self.job_records || csv.bytes() + rows.len() > self.max_bytes {
            self.run_job(run, n, false)?;
            self.jobs.push(OpenJob::new(&self.spec, shape.clone(), targets[0]));
            self.jobs.len() - 1
        } else {
            n
        };
        // Marked before the job can be closed: from then on Salesforce may
        // apply it whatever becomes of this run.
        let mark = run.in_flight.mark(self.kind, false, &records)?;
        let job = &mut self.jobs[n];
        job.marks.push(mark);
        job.csv.append(rows, records.len());
        job.ids.extend(records.iter().map(id_hash));
        self.ledger.expect(page, records.len());
        let parked: Vec<ParkedWrite> = records.iter().map(Staged::parked).collect();
        let key = run.queues.park(self.kind, &run.request.run_id, &format!("{page:06}-{shape}"), parked)?;
        job.parked.push((page, key));
        Ok(())
    }
}

impl Batch for BulkBatch {
    fn add(&mut self, run: &Run<'_>, records: Vec<Staged>) -> Result<usize> {
        let page = self.ledger.open_page();
        self.staged += records.len();
        let mut shaped: Vec<(String, Vec<Staged>)> = Vec::new();
        let mut composite = Vec::new();
        for staged in records {
            // A record sent with its changed fields only goes through
            // Composite, which sends it again whole when it turns out new to
            // Salesforce (a Bulk job would leave it created with those alone).
            if !csv_safe(&staged.mapped.target) || staged.changed_only.is_some() {
                composite.push(staged);
                continue;
            }
            let shape = CsvJob::shape(&self.spec, &staged.mapped.target);
            match shaped.iter_mut().find(|(s, _)| *s == shape) {
                Some((_, group)) => group.push(staged),
                None => shaped.push((shape, vec![staged])),
            }
        }
        let to_jobs: HashSet<u64> = shaped.iter().flat_map(|(_, group)| group).map(id_hash).collect();
        let to_composite: HashSet<u64> = composite.iter().map(id_hash).collect();
        self.keep_order(run, &to_jobs, &to_composite)?;
        // The composite part of this page counts as one unit in our ledger.
        self.ledger.expect(page, 1);
        self.composite_pages.push(page);
        let completed = self.composite.add(run, composite)?;
        self.settle_composite(completed);
        for (shape, group) in shaped {
            self.add_shaped(run, page, shape, group)?;
        }
        Ok(self.ledger.take_completed())
    }

    fn finish(&mut self, run: &Run<'_>) -> Result<usize> {
        let few = self.staged <= self.threshold;
        while !self.jobs.is_empty() {
            self.run_job(run, 0, few)?;
        }
        self.collect(run)?;
        let completed = self.composite.finish(run)?;
        self.settle_composite(completed);
        Ok(self.ledger.take_completed())
    }

    fn abandon(&mut self, run: &Run<'_>) -> Result<usize> {
        let completed = self.composite.abandon(run)?;
        self.settle_composite(completed);
        // Best effort, the run's error stands: a job that fails to go is
        // read again by the next run (its mark, if any, has it aborted).
        let _ = self.leave_open_job(run);
        Ok(self.ledger.take_completed())
    }
}

impl BulkBatch {
    /// The run ends with no job of it that may still be running (none
    /// submitted, or each one's results read): the open job (if worth one)
    /// is uploaded, closed and left to the next run, which records its
    /// outcomes ([`resume_bulk_jobs`]) instead of reading its records again:
    /// runs stopped every few seconds never got past the first job. Beside
    /// a job that may run, it could land before it (an older version of a
    /// record last): it stays parked and is read again. Not once the lease
    /// is gone.
    fn leave_open_job(&mut self, run: &Run<'_>) -> Result<()> {
        let worth = run.sink.composite_slice().min(self.threshold.max(1));
        let Some(n) = self.jobs.iter().position(|j| j.csv.records() >= worth) else { return Ok(()) };
        if self.submitted.is_some() || self.close_failed {
            return Ok(());
        }
        run.renew()?;
        run.validate_target(self.kind)?;
        let job = self.jobs.swap_remove(n);
        let mut marks = job.marks;
        let (id, sobject, ext) = self.upload(run, job.csv, &mut marks)?;
        // Not closed: the mark has the next run abort it unapplied; a close
        // that landed unanswered, settle it (see `in_flight`).
        run.sink.bulk_close(&id)?;
        self.save_closed(run, id, sobject, ext, &job.parked).map(drop)
    }
}

// ---------------------------------------------------------------- dry run

/// Writes nothing: records what a real run would do, compared with what the
/// connector last wrote or, when asked, with the live Salesforce records.
#[derive(Default)]
pub(super) struct Plan {
    entries: RefCell<Vec<PlannedWrite>>,
    /// Records this plan writes (their children need not wait), with the
    /// digest of the NetSuite row each was planned from.
    planned: RefCell<HashMap<ParentRef, String>>,
    /// The parents planned records link to (those that link to any).
    links: RefCell<HashMap<ParentRef, Vec<ParentRef>>>,
    /// Records this plan deletes or flags deleted (their children lose them).
    gone: RefCell<HashSet<ParentRef>>,
    /// Records another stage takes out of Salesforce's reach (a vendor
    /// deleted there): their children wait (see [`Writer::note_absent`]).
    absent: RefCell<HashSet<ParentRef>>,
    /// Children Salesforce deletes along with a parent this plan deletes
    /// (an Account's Contacts): written again, they are created.
    cascaded: RefCell<HashSet<ParentRef>>,
}

impl Plan {
    fn push(&self, kind: RecordKind, netsuite_id: &str, action: PlanAction, changes: Vec<FieldChange>) {
        self.entries.borrow_mut().push(PlannedWrite {
            kind,
            netsuite_id: netsuite_id.into(),
            action,
            changes,
            error: None,
        });
    }

    /// Plans `part`; `queued`: writes waiting in a queue, which a real run
    /// drops once this run wrote a newer version of the record.
    fn plan_writes(&self, run: &Run<'_>, kind: RecordKind, part: &[Staged], queued: bool) -> Result<()> {
        let checked = run.checked(kind)?;
        let spec = run.settings.mapping.target_spec(kind)?;
        // Records staging found drifted were read live already.
        let live = if run.request.compare_live {
            let ids: Vec<&str> =
                part.iter().filter(|s| s.seen_live.is_none()).map(|s| s.mapped.target.external_id.as_str()).collect();
            Some(if ids.is_empty() { HashMap::new() } else { run.sink.live_records(&spec, &ids)? })
        } else {
            None
        };
        // Written last to the object the mapping wrote before (its `sobject`
        // changed since): what this object holds under their external ids
        // (a change back finds the records of the first time there).
        let elsewhere = |s: &Staged| !s.state.sf.as_deref().is_none_or(|sf| checked.holds(sf));
        let moved: Vec<&str> = match live {
            Some(_) => vec![],
            None => part.iter().filter(|s| elsewhere(s)).map(|s| s.mapped.target.external_id.as_str()).collect(),
        };
        let moved = if moved.is_empty() { HashMap::new() } else { run.sink.live_records(&spec, &moved)? };
        let mut anew: Vec<&str> = Vec::new();
        let mut relinked: Vec<&str> = Vec::new();
        for staged in part {
            let mapped = &staged.mapped;
            // Planned already from this very row (a deferred write whose
            // parent arrived, and the overlap's read of it), or a queued
            // write of a record this run writes anyway: a real run writes
            // it once (the read's write drops the queued one, or its state
            // matches the row read again).
            let key = (kind, mapped.source_id.clone());
            match self.planned.borrow().get(&key) {
                Some(src) if queued || *src == staged.state.src => continue,
                _ => {}
            }
            // Deleted along with a parent this plan deletes: the real run
            // finds it gone, live or not.
            let cascaded = self.cascaded.borrow_mut().remove(&key);
            let (exists, changes) = match &live {
                Some(records) => {
                    let before = match &staged.seen_live {
                        _ if cascaded => None,
                        Some(seen) => seen.as_ref(),
                        None => records.get(&mapped.target.external_id),
                    };
                    (before.is_some(), live_changes(&spec, &mapped.target.fields, before))
                }
                None if elsewhere(staged) => {
                    let before = moved.get(&mapped.target.external_id).filter(|_| !cascaded);
                    (before.is_some(), live_changes(&spec, &mapped.target.fields, before))
                }
                // The transformations carry old → new against the last write.
                None => (
                    staged.state.sf.is_some() && !cascaded && !matches!(staged.seen_live, Some(None)),
                    staged
                        .transformations()
                        .iter()
                        .filter(|t| t.old.is_some() || t.new.is_some())
                        .map(|t| FieldChange { field: t.field.to_string(), old: t.old.clone(), new: t.new.clone() })
                        .collect(),
                ),
            };
            // Put in doubt (relinked, or by a stopped run), it is written
            // whatever its fields show: Salesforce counts it updated.
            let doubted = run.in_flight.clear_doubt(kind, &mapped.source_id);
            // So is one whose state knew another object's record: the run
            // writes it, and relinks its children to the record it answers.
            let moved_here = elsewhere(staged);
            let doubted = doubted || moved_here;
            let (action, outcome) = match (exists, changes.is_empty()) {
                (false, _) => (PlanAction::Create, OutcomeKind::Created),
                (true, true) if !doubted => (PlanAction::Unchanged, OutcomeKind::Unchanged),
                (true, _) => (PlanAction::Update, OutcomeKind::Updated),
            };
            run.count(kind, outcome);
            // A real run writes it (its state says Salesforce may lack it), so
            // its children will find it there, changed or not.
            self.gone.borrow_mut().remove(&key);
            match staged.parents.is_empty() {
                true => self.links.borrow_mut().remove(&key),
                false => self.links.borrow_mut().insert(key.clone(), staged.parents.clone()),
            };
            self.planned.borrow_mut().insert(key, staged.state.src.clone());
            // Created where its state knew an earlier record, as a real run
            // finds it: its children are planned again (see `relink`).
            if action == PlanAction::Create && staged.state.sf.is_some() && !moved_here {
                anew.push(mapped.source_id.as_str());
            } else if moved_here {
                relinked.push(mapped.source_id.as_str());
            }
            self.push(kind, &mapped.source_id, action, changes);
        }
        // Its old record not deleted, only another object's: the children
        // stay where they are and are linked again, as the run relinks them.
        super::children::refresh(run, kind, &relinked, false, &mut |_, _| {})?;
        super::children::refresh(run, kind, &anew, true, &mut |child, children| {
            self.cascaded.borrow_mut().extend(children.iter().map(|id| (child, id.to_string())));
        })
    }
}

impl Writer for Plan {
    fn plans(&self) -> bool {
        true
    }

    fn note(&self, entry: PlannedWrite) {
        self.entries.borrow_mut().push(entry);
    }

    fn batch<'b>(&'b self, _: &Run<'_>, kind: RecordKind, _: Path, action: AuditAction) -> Result<Box<dyn Batch + 'b>> {
        let queued = matches!(action, AuditAction::WriteDeferred | AuditAction::Replay);
        Ok(Box::new(PlanBatch { plan: self, kind, queued }))
    }

    fn delete(&self, run: &Run<'_>, kind: RecordKind, pending: Vec<(String, RecordState)>) -> Result<()> {
        let action = match run.settings.delete_action {
            DeleteAction::Flag => PlanAction::FlagDeleted,
            DeleteAction::Delete => PlanAction::Delete,
        };
        // A deletion read twice (a queued event's, then NetSuite's list of
        // deletions) is planned once: a real run's state says it is done.
        let pending: Vec<String> = pending
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !self.gone.borrow().contains(&(kind, id.clone())))
            .collect();
        for id in &pending {
            run.count(kind, OutcomeKind::Deleted);
            self.push(kind, id, action, vec![]);
            let key = (kind, id.clone());
            self.planned.borrow_mut().remove(&key);
            self.links.borrow_mut().remove(&key);
            self.gone.borrow_mut().insert(key);
        }
        // As a real run does: their children are read again and planned at
        // the run's end (the queued events stay in the dry run's memory).
        let ids: Vec<&str> = pending.iter().map(String::as_str).collect();
        let deleted = action == PlanAction::Delete;
        super::children::refresh(run, kind, &ids, deleted, &mut |child, children| {
            self.cascaded.borrow_mut().extend(children.iter().map(|id| (child, id.to_string())));
        })
    }

    fn defer(&self, run: &Run<'_>, staged: &Staged, _: &[ParentRef]) -> Result<()> {
        run.checked_only(staged.mapped.source_kind)?;
        run.count(staged.mapped.source_kind, OutcomeKind::Deferred);
        self.push(staged.mapped.source_kind, &staged.mapped.source_id, PlanAction::Defer, vec![]);
        Ok(())
    }

    fn as_planned(
        &self,
        kind: RecordKind,
        ids: &[&str],
        mut states: Vec<Option<RecordState>>,
    ) -> Vec<Option<RecordState>> {
        let planned = self.planned.borrow();
        if planned.is_empty() {
            return states;
        }
        for (id, state) in ids.iter().zip(&mut states) {
            if let Some(src) = planned.get(&(kind, id.to_string())) {
                let old = state.take().unwrap_or(RecordState {
                    src: String::new(),
                    dst: String::new(),
                    sf: None,
                    fields: None,
                    org: None,
                    sf_deleted: false,
                });
                *state = Some(RecordState { src: src.clone(), ..old });
            }
        }
        states
    }

    fn note_absent(&self, record: ParentRef) {
        self.absent.borrow_mut().insert(record);
    }

    fn planned(&self, parent: &ParentRef) -> Option<bool> {
        match self.planned.borrow().contains_key(parent) {
            true => Some(true),
            false => (self.gone.borrow().contains(parent) || self.absent.borrow().contains(parent)).then_some(false),
        }
    }

    fn planned_links(&self, kind: RecordKind, id: &str) -> Option<Vec<ParentRef>> {
        let key = (kind, id.to_string());
        self.planned.borrow().contains_key(&key).then(|| self.links.borrow().get(&key).cloned().unwrap_or_default())
    }

    fn plan(&self) -> Vec<PlannedWrite> {
        self.entries.take()
    }
}

/// Plans each page as it comes (a SOQL read per page when comparing live).
struct PlanBatch<'p> {
    plan: &'p Plan,
    kind: RecordKind,
    /// Writes waiting in a queue (deferred, failed).
    queued: bool,
}

impl Batch for PlanBatch<'_> {
    fn add(&mut self, run: &Run<'_>, records: Vec<Staged>) -> Result<usize> {
        if !records.is_empty() {
            self.plan.plan_writes(run, self.kind, &records, self.queued)?;
        }
        Ok(1)
    }

    fn finish(&mut self, _: &Run<'_>) -> Result<usize> {
        Ok(0)
    }
}
