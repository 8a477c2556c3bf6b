//! Marks of writes on their way to Salesforce. Salesforce may apply a write
//! whose outcome the connector never records (the process killed, the
//! machine gone); the record's state then still says what Salesforce held
//! before, and a later read that maps to that again (a mapping change put
//! back, a NetSuite edit undone) would be skipped as unchanged, leaving the
//! abandoned output in Salesforce for good.
//!
//! So before records go out, they are marked: their ids and the digest each
//! carries, in a bucket whose writes are durable when they return. Once
//! their outcomes are recorded the mark is deleted; the host lands that
//! delete after the states saved before it. A run that finds another run's
//! marks (that run stopped: the lease allows one at a time) forgets what
//! the state says Salesforce holds of each marked record whose saved digest
//! is not the one sent — its next read writes it again — and deletes them.
//! A dry run, which saves nothing, keeps those records in memory instead,
//! so its plan writes them as the run would.

use super::kv_error;
use super::queues::Queue;
use super::run::{Run, Staged};
use super::state::{DELETED, RecordState};
use crate::model::{AuditAction, AuditEntry, AuditTransformations, RecordKind, Result};
use crate::ports::KeyValue;
use crate::salesforce::BulkResults;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

/// One run's marks.
pub(super) struct InFlight<'a> {
    kv: &'a dyn KeyValue,
    run_id: &'a str,
    /// Marks made so far: numbers the next one's key.
    made: Cell<u64>,
    /// A dry run's records in doubt (a real run saves them so).
    /// With whether each keeps what Salesforce was last given (see [`relinked`]).
    doubts: RefCell<HashMap<(RecordKind, String), bool>>,
}

/// How a job's mark begins (a record mark begins with an id, digits).
const JOB: &str = "job";

/// How the number in the key of a Composite request's mark begins (a Bulk
/// job page's has none): its records' answers came back with the request,
/// so a stopped run that left the mark lost them.
const UPSERTS: &str = "upserts-";

/// A stopped run's Bulk API job, ended, with what it did.
struct SettledJob {
    kind: Option<RecordKind>,
    id: String,
    sobject: String,
    results: BulkResults,
}

/// Waits for the job a stopped run closed (or aborts it, never closed) so
/// that nothing of it lands after this run. A job that outlasts
/// `salesforce_bulk_poll_timeout_secs` stops this run, mark kept, as it
/// would have stopped that one. Returns the ended job's results, when
/// they can be read: the records that run never recorded are audited
/// from them (see [`InFlight::redo`]).
fn settle_job(run: &Run<'_>, kind: Option<RecordKind>, mark: &str) -> Result<Option<SettledJob>> {
    if run.writer.plans() {
        return Ok(None);
    }
    let mut parts = mark.split(' ').skip(1);
    let (Some(id), Some(sobject), Some(ext)) = (parts.next(), parts.next(), parts.next()) else { return Ok(None) };
    run.target()?;
    let state = match run.sink.bulk_state(id) {
        Ok(state) => state,
        // Gone (results are kept for seven days): nothing of it runs.
        Err(e) if e.is_about_data() => return Ok(None),
        Err(e) => return Err(e),
    };
    let results = match state.as_str() {
        "Open" => return run.sink.bulk_abort(id).map(|()| None),
        "UploadComplete" | "InProgress" | "JobComplete" | "Failed" => {
            match run.sink.bulk_results(sobject, ext, id, &|| run.renew()) {
                Ok(results) => results,
                // Aborted meanwhile is ended too; still running is not.
                Err(e) => match run.sink.bulk_state(id)?.as_str() {
                    "JobComplete" | "Failed" | "Aborted" => return Ok(None),
                    _ => return Err(e),
                },
            }
        }
        _ => return Ok(None),
    };
    // Kept with its records: the writer takes up its results (`bulk-resume`).
    if let Some(kind) = kind
        && run.queues.leftovers(kind)?.0.iter().any(|(_, saved)| saved.id == id)
    {
        return Ok(None);
    }
    Ok(Some(SettledJob { kind, id: id.to_string(), sobject: sobject.to_string(), results }))
}

/// States looked up at a time while marks are taken up.
const PART: usize = 1000;

/// The audit entry of record `id` if a settled job of its kind wrote it.
fn applied_by_job(
    run: &Run<'_>,
    kind: RecordKind,
    id: &str,
    state: &Option<RecordState>,
    settled: &[SettledJob],
) -> Option<AuditEntry> {
    let job = settled.iter().find(|j| j.kind == Some(kind) && j.results.has(id))?;
    let outcome = job.results.outcome(id);
    // Counted as a parked record's resumed outcome is: the report's
    // `resumed` is a part of its outcomes, as its audit rows say.
    run.count(kind, outcome.outcome);
    run.count_resumed(kind, 1);
    let detail = format!(
        "Bulk API job {} of a stopped run applied it; that run's record of it was lost, so this run writes it again",
        job.id
    );
    Some(AuditEntry {
        run_id: run.request.run_id.clone(),
        kind,
        action: AuditAction::BulkResume,
        netsuite_id: id.to_string(),
        salesforce_id: outcome.salesforce_id.clone().or_else(|| state.as_ref().and_then(|s| s.sf.clone())),
        outcome: outcome.outcome.as_str().into(),
        transformations: AuditTransformations::Whole(
            serde_json::json!([{ "field": job.sobject, "rule": "bulk-resume", "detail": detail }]).to_string(),
        ),
        error: super::write::errors_text(&outcome),
    })
}

/// The run that left Composite request mark `key` (`None`: not one).
fn stopped_run(key: &str) -> Option<&str> {
    let (_, rest) = key.split_once('/')?;
    let (run, number) = rest.rsplit_once('/')?;
    number.starts_with(UPSERTS).then_some(run)
}

/// The audit entry of record `id`, sent by run `stopped` in a Composite
/// request whose answer that run never recorded.
fn interrupted(run: &Run<'_>, kind: RecordKind, id: &str, state: &Option<RecordState>, stopped: &str) -> AuditEntry {
    let sobject = run.settings.mapping.object(kind).map_or_else(|_| kind.to_string(), |o| o.sobject.clone());
    let detail = format!(
        "run {stopped} sent this upsert and was stopped before it recorded Salesforce's answer (applied or not is \
         unknown), so this run writes the record again"
    );
    AuditEntry {
        run_id: run.request.run_id.clone(),
        kind,
        action: AuditAction::Interrupted,
        netsuite_id: id.to_string(),
        salesforce_id: state.as_ref().and_then(|s| s.sf.clone()),
        outcome: "unknown".into(),
        transformations: AuditTransformations::Whole(
            serde_json::json!([{ "field": sobject, "rule": "interrupted", "detail": detail }]).to_string(),
        ),
        error: None,
    }
}

impl<'a> InFlight<'a> {
    pub fn new(kv: &'a dyn KeyValue, run_id: &'a str) -> Self {
        InFlight { kv, run_id, made: Cell::new(0), doubts: Default::default() }
    }

    /// Marks `records` before they go out; the key is [`InFlight::clear`]'s
    /// once their outcomes are recorded.
    /// The key of this run's next mark of `kind` (`tag` names a job's).
    fn next_key(&self, kind: RecordKind, tag: &str) -> String {
        let n = self.made.get() + 1;
        self.made.set(n);
        format!("{kind}/{}/{tag}{n:08}", self.run_id)
    }

    /// `upserts`: a Composite request's records (else a Bulk job page's).
    pub fn mark<'s>(
        &self,
        kind: RecordKind,
        upserts: bool,
        records: impl IntoIterator<Item = &'s Staged>,
    ) -> Result<String> {
        let key = self.next_key(kind, if upserts { UPSERTS } else { "" });
        let mut value = String::new();
        for staged in records {
            // Ids are digits and digests hex: neither holds a space or a newline.
            for piece in [staged.mapped.source_id.as_str(), " ", staged.state.dst.as_str(), "\n"] {
                value.push_str(piece);
            }
        }
        self.kv.set(&key, value.as_bytes()).map_err(|e| kv_error("marking writes on their way", e))?;
        Ok(key)
    }

    /// Marks Bulk API 2.0 job `id` before it is closed: a run taking up the
    /// marks waits for it to end first, so it cannot land on top of what
    /// that run writes again (Salesforce may still be applying it).
    pub fn mark_job(&self, kind: RecordKind, id: &str, sobject: &str, external_id_field: &str) -> Result<String> {
        let key = self.next_key(kind, "job-");
        let value = format!("{JOB} {id} {sobject} {external_id_field}");
        self.kv.set(&key, value.as_bytes()).map_err(|e| kv_error("marking a Bulk API job on its way", e))?;
        Ok(key)
    }

    /// The records of mark `key` are recorded.
    pub fn clear(&self, key: &str) -> Result<()> {
        self.kv.delete(key).map_err(|e| kv_error("clearing a mark of writes recorded", e))
    }

    /// Takes up the marks stopped runs left: each marked record whose saved
    /// state is not what was sent is made to be written again. Returns how
    /// many were. One listing for every kind (on Spin a listing reads the
    /// whole store, whatever it asks for).
    pub fn recover(&self, run: &Run<'_>) -> Result<bool> {
        let ours = format!("/{}/", self.run_id);
        let mut keys = self
            .kv
            .list_keys_where("", &mut |k| !k.contains(&ours))
            .map_err(|e| kv_error("listing marks of writes on their way", e))?;
        // Jobs first: each has ended before its records are looked at.
        // Then Composite requests' marks: a record parked for a Bulk job
        // page and then sent in a request is in both, and the page's mark
        // puts it in doubt, which must not hide the request's send.
        let rank = |k: &str| match (k.contains("/job-"), k.contains(&format!("/{UPSERTS}"))) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        };
        keys.sort_by_cached_key(|k| (rank(k), k.clone()));
        let stopped = !keys.is_empty();
        let mut settled = Vec::new();
        for key in keys {
            let kind = RecordKind::ALL.into_iter().find(|k| key.split('/').next() == Some(k.as_str()));
            let value = self.kv.get(&key).map_err(|e| kv_error("reading a mark of writes", e))?;
            let text = value.map(|v| String::from_utf8_lossy(&v).into_owned());
            match (kind, text) {
                (_, Some(job)) if job.starts_with(JOB) => settled.extend(settle_job(run, kind, &job)?),
                (Some(kind), Some(text)) => {
                    self.redo(run, kind, &key, &text, &settled)?;
                }
                _ => {}
            }
            self.clear(&key)?;
        }
        Ok(stopped)
    }

    /// Makes the records of one mark (`key`) whose states say another write
    /// landed (or none) be written again; returns how many. That run never
    /// recorded them (its record was lost with the process), so they are
    /// audited before this run writes them again: those its ended Bulk job
    /// (`settled`) wrote from the job's results, as `bulk-resume`; those of
    /// a Composite request as `interrupted`, outcome unknown (the answer
    /// is gone).
    fn redo(&self, run: &Run<'_>, kind: RecordKind, key: &str, mark: &str, settled: &[SettledJob]) -> Result<usize> {
        let stopped = stopped_run(key);
        let marked: Vec<(&str, &str)> = mark.lines().filter_map(|l| l.split_once(' ')).collect();
        let mut redone = 0;
        for part in marked.chunks(PART) {
            let ids: Vec<&str> = part.iter().map(|(id, _)| *id).collect();
            let states = run.state.records(kind, &ids)?;
            // A record sent in a Composite request whose state is in doubt
            // (or relinked) was sent all the same: that send has no row yet.
            let unrecorded = part.iter().zip(&states).filter(|((_, sent), state)| {
                state
                    .as_ref()
                    .is_none_or(|st| st.dst != *sent && st.dst != DELETED && (stopped.is_some() || !st.dst.is_empty()))
            });
            let audit: Vec<AuditEntry> = match stopped {
                Some(stopped) => {
                    let unrecorded: Vec<_> = unrecorded.collect();
                    // A refusal that run recorded (audited, kept for replay)
                    // before it stopped is no unknown outcome.
                    let keys: Vec<String> =
                        unrecorded.iter().map(|((id, _), _)| super::queues::key(Queue::Failed, kind, id)).collect();
                    let refused: HashSet<String> = run
                        .queues
                        .read(&keys)?
                        .into_iter()
                        .filter(|q| q.run_id == stopped)
                        .map(|q| q.netsuite_id)
                        .collect();
                    unrecorded
                        .into_iter()
                        .filter(|((id, _), _)| !refused.contains(*id))
                        .map(|((id, _), state)| interrupted(run, kind, id, state, stopped))
                        .collect()
                }
                None => {
                    unrecorded.filter_map(|((id, _), state)| applied_by_job(run, kind, id, state, settled)).collect()
                }
            };
            let doubtful: Vec<(&str, RecordState)> = part
                .iter()
                .zip(states)
                .filter_map(|(&(id, sent), state)| Some((id, sent, state?)))
                .filter(|(_, sent, st)| st.dst != *sent && st.dst != DELETED && !st.dst.is_empty())
                .map(|(id, _, st)| (id, in_doubt(st)))
                .collect();
            redone += doubtful.len();
            // Audit first (see `stage`).
            if !run.writer.plans() {
                run.audit(audit);
            }
            if run.writer.plans() {
                self.doubts.borrow_mut().extend(doubtful.iter().map(|(id, _)| ((kind, id.to_string()), false)));
            } else {
                run.state.save_records(kind, doubtful)?;
            }
        }
        Ok(redone)
    }

    /// Takes `ids` to be in doubt for the rest of the run, as a dry run
    /// must where a real run saves their states so (it saves none).
    /// `relinked`: as [`relinked`] leaves them, else as [`in_doubt`].
    pub fn note_doubts(&self, kind: RecordKind, ids: &[&str], relinked: bool) {
        self.doubts.borrow_mut().extend(ids.iter().map(|id| ((kind, id.to_string()), relinked)));
    }

    /// Takes `id` to be written (planned) since it was put in doubt, as a
    /// dry run must where a real run saves its new state. Returns whether
    /// it was in doubt.
    pub fn clear_doubt(&self, kind: RecordKind, id: &str) -> bool {
        let mut doubts = self.doubts.borrow_mut();
        !doubts.is_empty() && doubts.remove(&(kind, id.to_string())).is_some()
    }

    /// `states` of `ids` as a dry run takes them: those it found in doubt
    /// as [`InFlight::recover`] leaves them in a real run.
    pub fn as_recovered(
        &self,
        kind: RecordKind,
        ids: &[&str],
        mut states: Vec<Option<RecordState>>,
    ) -> Vec<Option<RecordState>> {
        let doubts = self.doubts.borrow();
        if !doubts.is_empty() {
            for (id, state) in ids.iter().zip(&mut states) {
                if let Some(&kept) = doubts.get(&(kind, id.to_string())) {
                    *state = state.take().map(if kept { relinked } else { in_doubt });
                }
            }
        }
        states
    }
}

/// A state whose record Salesforce may hold another version of: neither
/// digest matches anything, so the next read maps and writes the record,
/// and what Salesforce was last given is unknown (the write is audited, and
/// planned, as one of every field). The Salesforce id stays the record's.
pub(super) fn in_doubt(state: RecordState) -> RecordState {
    RecordState { src: String::new(), dst: String::new(), fields: None, ..state }
}

/// A state whose record Salesforce holds as it was last given (`fields`),
/// but whose link its parent's fate broke: neither digest matches, so the
/// next read writes it again, and the write is audited (and planned) as the
/// change against what Salesforce was given.
pub(super) fn relinked(state: RecordState) -> RecordState {
    RecordState { src: String::new(), dst: String::new(), ..state }
}

/// Whether `state` is one [`in_doubt`] left.
pub(super) fn is_in_doubt(state: &RecordState) -> bool {
    state.src.is_empty() && state.dst.is_empty() && state.fields.is_none()
}
