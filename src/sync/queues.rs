//! Writes that wait: failed writes kept with their exact payload for replay,
//! and records deferred until their parent is in Salesforce. They live in
//! the host's small `queues` bucket so they can be listed.

use super::kv_error;
use super::state::RecordState;
use crate::model::{AuditTransformations, ConnectorError, RecordKind, Result, SObjectRecord, Transformation};
use crate::ports::KeyValue;
use crate::salesforce::errors::passing_reason;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Failed,
    Deferred,
}

impl Queue {
    fn prefix(self) -> &'static str {
        match self {
            Queue::Failed => "failed",
            Queue::Deferred => "deferred",
        }
    }
}

/// A write that has not landed: what to send, and the record state to keep
/// once it does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedWrite {
    /// The run that queued it.
    pub run_id: String,
    pub kind: RecordKind,
    pub netsuite_id: String,
    pub target: SObjectRecord,
    pub state: RecordState,
    pub transformations: Vec<Transformation>,
    /// Why it waits: Salesforce's error, or the missing parent.
    pub reason: String,
    /// Parents (kind, NetSuite id) that must be in Salesforce first.
    #[serde(default)]
    pub waits_for: Vec<(RecordKind, String)>,
    /// A failed write: when the record's writes began failing (host clock,
    /// Unix seconds), kept while replays fail again, so `connector status`
    /// shows how long it has waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
}

/// A record given to a Bulk API job, kept in the host until the job's
/// results are in: only what recording its outcome needs, with the fields
/// and the transformations as the JSON text they were written from (read
/// back without being taken apart; a page of 10,000 of these is parked and
/// taken back per job).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParkedWrite {
    pub kind: RecordKind,
    pub netsuite_id: String,
    pub sobject: String,
    pub external_id_field: String,
    pub external_id: String,
    pub state: RecordState,
    pub fields: Box<RawValue>,
    /// The transformations as JSON; with `shape`, only their values (see
    /// [`AuditTransformations`]), the form the audit keeps. None: the
    /// values are `fields` (a record written fresh, see
    /// [`Transformation::write_values`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformations: Option<Box<RawValue>>,
    /// JSON as it is (not a string: escaping it cost a large Bulk run
    /// a tenth of the component's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Box<RawValue>>,
    /// Stored in a page: the position of its shape in the page's shapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) shape_at: Option<usize>,
    /// The shape as the records of a page share it in memory (one text for
    /// the page, not a copy each); taken before `shape` when set.
    #[serde(skip)]
    pub shared_shape: Option<Rc<str>>,
}

/// A parked record's bytes besides its fields and transformations: its
/// ids, state digests and keys (about 250), with room to spare.
const PARKED_OVERHEAD: usize = 320;

/// A page of parked records as stored: the few shapes its records share
/// once, not once per record.
#[derive(Serialize, Deserialize)]
struct ParkedPage {
    shapes: Vec<Box<RawValue>>,
    records: Vec<ParkedWrite>,
}

impl ParkedWrite {
    /// As taken from a page: its shape from the page's shapes.
    fn with_shape(mut self, shapes: &[Rc<str>], key: &str) -> Result<ParkedWrite> {
        if let Some(at) = self.shape_at.take() {
            let shape = shapes.get(at).ok_or_else(|| {
                ConnectorError::Config(format!(
                    "parked Bulk API records `{key}` are unreadable (record {} names shape {at} of {})",
                    self.netsuite_id,
                    shapes.len()
                ))
            })?;
            self.shared_shape = Some(shape.clone());
        }
        Ok(self)
    }

    /// Its shape, shared when it came from a page or a mapping.
    fn shape_text(&self) -> Option<Rc<str>> {
        self.shared_shape.clone().or_else(|| self.shape.as_ref().map(|s| s.get().into()))
    }

    /// Its transformations as its audit entry records them.
    pub fn audit_transformations(&self) -> AuditTransformations {
        let text = self.transformations.as_ref().unwrap_or(&self.fields).get().to_string();
        match self.shape_text() {
            Some(shape) => AuditTransformations::Split { shape, values: text },
            None => AuditTransformations::Whole(text),
        }
    }
}

impl From<QueuedWrite> for ParkedWrite {
    fn from(q: QueuedWrite) -> ParkedWrite {
        let json = |text: String| RawValue::from_string(text).expect("serde_json wrote valid JSON");
        ParkedWrite {
            kind: q.kind,
            netsuite_id: q.netsuite_id,
            fields: json(serde_json::to_string(&q.target.fields).expect("a field map serializes")),
            sobject: q.target.sobject,
            external_id_field: q.target.external_id_field,
            external_id: q.target.external_id,
            state: RecordState { fields: None, ..q.state },
            transformations: Some(json(crate::model::Transformation::list_json(&q.transformations))),
            shape: None,
            shape_at: None,
            shared_shape: None,
        }
    }
}

impl ParkedWrite {
    /// As a queued write (its fields and transformations taken apart).
    pub fn queued(&self, run_id: &str, reason: String) -> Result<QueuedWrite> {
        let unreadable = |what: &str, e: serde_json::Error| {
            ConnectorError::Config(format!(
                "the parked {what} of {} {} are unreadable ({e})",
                self.kind, self.netsuite_id
            ))
        };
        Ok(QueuedWrite {
            run_id: run_id.into(),
            kind: self.kind,
            netsuite_id: self.netsuite_id.clone(),
            target: SObjectRecord {
                sobject: self.sobject.clone(),
                external_id_field: self.external_id_field.clone(),
                external_id: self.external_id.clone(),
                fields: serde_json::from_str(self.fields.get()).map_err(|e| unreadable("fields", e))?,
            },
            state: self.state.clone(),
            transformations: serde_json::from_str(&self.audit_transformations().joined())
                .map_err(|e| unreadable("transformations", e))?,
            reason,
            waits_for: Vec::new(),
            failing_since: None,
        })
    }
}

/// A NetSuite change event waiting to be applied; one per record, so a
/// burst of events for the same record becomes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub kind: RecordKind,
    pub id: String,
    pub event: String,
    pub received_at: i64,
    /// Random per arrival: tells a re-sent event from the one a run read.
    #[serde(default)]
    pub nonce: u64,
}

pub fn event_key(kind: RecordKind, id: &str) -> String {
    format!("event/{kind}/{id}")
}

/// A Salesforce → NetSuite write that failed on its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedWriteback {
    pub kind: RecordKind,
    pub salesforce_id: String,
    /// None for a record new in Salesforce that NetSuite did not create.
    pub netsuite_id: Option<String>,
    pub run_id: String,
    pub error: String,
    /// The record's `SystemModstamp` when it failed: read again unchanged
    /// (the poll's overlap window), it waits for replay instead of failing
    /// once more every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modstamp: Option<String>,
    /// The record's fields as the failing run left them, when it then wrote
    /// NetSuite's side to Salesforce (which moves `SystemModstamp`): read
    /// again holding them, nobody edited it since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<serde_json::Map<String, serde_json::Value>>,
}

impl FailedWriteback {
    /// Whether `record`, read again, is as it was left when this failed.
    pub fn unchanged_since(&self, modstamp: &str, fields: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.modstamp.as_deref() == Some(modstamp)
            || self.holds.as_ref().is_some_and(|holds| {
                // Salesforce leaves out a field made blank: compared as blank.
                let same = |f: &String| super::merge::same(fields.get(f), holds.get(f));
                holds.keys().all(same) && fields.keys().all(same)
            })
    }
}

pub fn writeback_key(kind: RecordKind, salesforce_id: &str) -> String {
    format!("failed-writeback/{kind}/{salesforce_id}")
}

pub fn key(queue: Queue, kind: RecordKind, id: &str) -> String {
    format!("{}/{kind}/{id}", queue.prefix())
}

/// Where the digest of a row the mapping refused is kept (see
/// [`Queues::note_unmapped`]).
const UNMAPPED: &str = "unmapped";

fn unmapped_key(kind: RecordKind, id: &str) -> String {
    format!("{UNMAPPED}/{kind}/{id}")
}

/// Where a run keeps the ids of the Bulk API jobs it submitted for `kind`.
pub fn bulk_job_prefix(kind: RecordKind) -> String {
    format!("bulkjob/{kind}/")
}

/// Where a run parks `kind` records given to Bulk API jobs.
pub fn parked_prefix(kind: RecordKind) -> String {
    format!("bulk/{kind}/")
}

/// Submitted jobs (by key) and parked-page keys left by stopped runs.
pub type Leftovers = (Vec<(String, SavedJob)>, Vec<String>);

/// A submitted Bulk API 2.0 job and where its records are parked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedJob {
    pub id: String,
    pub sobject: String,
    pub external_id_field: String,
    pub parked: Vec<String>,
}

/// Most keys of one queue held at once (a few dozen bytes each, ~1 MB): a
/// longer queue is listed and worked through in parts.
const KEYS_HELD: usize = 20_000;

/// The ids a kind has in the failed or deferred queue, once listed; `None`
/// when there are more than [`KEYS_HELD`]: each id is then looked up.
type Held = Option<std::rc::Rc<RefCell<HeldIds>>>;

/// The ids of one kind a listing found: waiting in either queue, and rows
/// the mapping refused (see [`Queues::note_unmapped`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct HeldIds {
    queued: HashSet<String>,
    unmapped: HashSet<String>,
}

impl HeldIds {
    fn any(&self, id: &str) -> bool {
        self.queued.contains(id) || self.unmapped.contains(id)
    }
}

pub struct Queues<'a> {
    kv: &'a dyn KeyValue,
    held: RefCell<std::collections::HashMap<RecordKind, Held>>,
    /// [`KEYS_HELD`], smaller in tests.
    keys_held: usize,
}

impl<'a> Queues<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        Queues { kv, held: Default::default(), keys_held: KEYS_HELD }
    }

    /// Calls `each` with the keys that start with `prefix`, at most about
    /// [`KEYS_HELD`] at a time, never with none. A short queue takes one
    /// listing. A longer one takes one listing to count it, then one per
    /// part, each keeping the keys whose hash falls in that part: listings
    /// come in no promised order and a part's work deletes or rewrites keys,
    /// so nothing else could say where the last part ended. No key is given
    /// twice; one added meanwhile comes in its part or waits for the next run.
    /// A store that fetches every key for any listing gets one listing.
    fn key_parts(&self, prefix: &str, what: &str, each: &mut dyn FnMut(Vec<String>) -> Result<()>) -> Result<()> {
        let mut counted = 0usize;
        let limit = self.limit();
        let first = self
            .kv
            .list_keys_where(prefix, &mut |_| {
                counted += 1;
                counted <= limit
            })
            .map_err(|e| kv_error(what, e))?;
        if counted <= limit {
            return if first.is_empty() { Ok(()) } else { each(first) };
        }
        drop(first);
        let parts = counted.div_ceil(limit) as u64;
        for part in 0..parts {
            let in_part = |key: &str| xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % parts == part;
            let keys = self.kv.list_keys_where(prefix, &mut |k| in_part(k)).map_err(|e| kv_error(what, e))?;
            if !keys.is_empty() {
                each(keys)?;
            }
        }
        Ok(())
    }

    /// Queues `write`. A record waits in one queue at most, with its newest
    /// write: whatever the other queue held of it (an older version) goes.
    /// Queues a failed write at `now`, or at when the record's queued
    /// failure it replaces began failing.
    pub fn put_failed(&self, mut write: QueuedWrite, now: i64) -> Result<()> {
        #[derive(Deserialize)]
        struct Since {
            failing_since: Option<i64>,
        }
        let old = self
            .kv
            .get(&key(Queue::Failed, write.kind, &write.netsuite_id))
            .map_err(|e| kv_error("reading a queued write", e))?;
        let since = old.and_then(|b| serde_json::from_slice::<Since>(&b).ok()).and_then(|s| s.failing_since);
        write.failing_since = Some(since.unwrap_or(now));
        self.put(Queue::Failed, &write)
    }

    pub fn put(&self, queue: Queue, write: &QueuedWrite) -> Result<()> {
        let bytes = serde_json::to_vec(write).expect("a queued write serializes");
        self.kv
            .set(&key(queue, write.kind, &write.netsuite_id), &bytes)
            .map_err(|e| kv_error("queueing a write", e))?;
        let held = self.held.borrow().get(&write.kind).cloned().flatten();
        // Held ids are those waiting in either queue: one not held waited nowhere.
        if held.as_ref().is_none_or(|set| set.borrow().any(&write.netsuite_id)) {
            let other = match queue {
                Queue::Failed => Queue::Deferred,
                Queue::Deferred => Queue::Failed,
            };
            let older = [key(other, write.kind, &write.netsuite_id), unmapped_key(write.kind, &write.netsuite_id)];
            self.kv.delete_many(&older).map_err(|e| kv_error("clearing an older queued write", e))?;
        }
        if let Some(set) = held {
            let mut set = set.borrow_mut();
            set.unmapped.remove(&write.netsuite_id);
            set.queued.insert(write.netsuite_id.clone());
        }
        Ok(())
    }

    /// Keeps the digests of rows the mapping refused (`(id, digest)`): read
    /// again unchanged, such a row is handled already (see
    /// [`Queues::waiting_as_read`]). Taken out like a queued write.
    pub fn note_unmapped(&self, kind: RecordKind, rows: &[(&str, &str)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, Vec<u8>)> =
            rows.iter().map(|(id, src)| (unmapped_key(kind, id), src.as_bytes().to_vec())).collect();
        self.kv.set_many(&entries).map_err(|e| kv_error("noting rows the mapping refused", e))?;
        if let Some(set) = self.held(kind)? {
            set.borrow_mut().unmapped.extend(rows.iter().map(|(id, _)| id.to_string()));
        }
        Ok(())
    }

    /// Of `rows` (`(id, digest)` of NetSuite rows), which wait as they are:
    /// a write of that very row Salesforce refused (failed, kept for
    /// replay; not one refused only for a passing reason, a row lock: the
    /// re-read tries it again), one deferred for its parent, or the row the
    /// mapping refused.
    /// Read again unchanged (the overlap window behind the cursor), such a
    /// row is handled: it waits for a replay, its parent, its next change or
    /// a mapping change, and is not sent, deferred or refused once more.
    pub fn waiting_as_read(&self, kind: RecordKind, rows: &[(&str, &str)]) -> Result<Vec<bool>> {
        let mut waiting = vec![false; rows.len()];
        let mut asked: Vec<usize> = Vec::new();
        let held = self.held(kind)?;
        for (n, (id, _)) in rows.iter().enumerate() {
            if held.as_ref().is_none_or(|set| set.borrow().any(id)) {
                asked.push(n);
            }
        }
        if asked.is_empty() {
            return Ok(waiting);
        }
        #[derive(Deserialize)]
        struct Queued {
            state: Src,
            #[serde(default)]
            reason: String,
        }
        #[derive(Deserialize)]
        struct Src {
            src: String,
        }
        let keys: Vec<String> = asked
            .iter()
            .flat_map(|&n| {
                let id = rows[n].0;
                [key(Queue::Failed, kind, id), key(Queue::Deferred, kind, id), unmapped_key(kind, id)]
            })
            .collect();
        let found = self.kv.get_many(&keys).map_err(|e| kv_error("reading queued writes", e))?;
        for (&n, values) in asked.iter().zip(found.chunks(3)) {
            let src = rows[n].1;
            let queued = |v: &Option<Vec<u8>>| {
                v.as_deref().and_then(|b| serde_json::from_slice::<Queued>(b).ok()).filter(|q| q.state.src == src)
            };
            let failed = queued(&values[0]).is_some_and(|q| !passing_reason(&q.reason));
            waiting[n] = failed || queued(&values[1]).is_some() || values[2].as_deref() == Some(src.as_bytes());
        }
        Ok(waiting)
    }

    /// Whether no id of `kind` waits in a queue or was refused by the
    /// mapping (false when they are too many to hold).
    pub fn holds_nothing(&self, kind: RecordKind) -> Result<bool> {
        Ok(self.held(kind)?.is_some_and(|held| {
            let held = held.borrow();
            held.queued.is_empty() && held.unmapped.is_empty()
        }))
    }

    /// Whether `id` of `kind` may still wait in a queue: false once this run
    /// took it out (a dry run's in memory: see `dry_host::Scratch`), true
    /// where the queues are too many to hold.
    pub fn may_wait(&self, kind: RecordKind, id: &str) -> Result<bool> {
        Ok(self.held(kind)?.is_none_or(|held| held.borrow().queued.contains(id)))
    }

    /// Takes records out of both queues (they were written, or superseded),
    /// and their rows out of those the mapping refused. Only ids held cost
    /// a delete: the bucket's keys are listed once per run and kind, and
    /// kept up to date by this run's own puts. Returns the ids that were
    /// queued (not those only noted as refused by the mapping).
    pub fn remove<K: AsRef<str>>(&self, kind: RecordKind, ids: &[K]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys_of = |id: &str| [key(Queue::Failed, kind, id), key(Queue::Deferred, kind, id), unmapped_key(kind, id)];
        // Ids held: queued, or noted only.
        let (queued, noted): (Vec<String>, Vec<String>) = match self.held(kind)? {
            Some(held) => {
                let mut held = held.borrow_mut();
                let mut found = (Vec::new(), Vec::new());
                // Looked up before taken out: a look-up in an empty set
                // hashes nothing (most runs hold nothing).
                for id in ids.iter().map(AsRef::as_ref) {
                    if held.queued.contains(id) {
                        held.queued.remove(id);
                        held.unmapped.remove(id);
                        found.0.push(id.to_string());
                    } else if held.unmapped.contains(id) {
                        held.unmapped.remove(id);
                        found.1.push(id.to_string());
                    }
                }
                found
            }
            None => {
                let keys: Vec<String> = ids.iter().flat_map(|id| keys_of(id.as_ref())).collect();
                let values = self.kv.get_many(&keys).map_err(|e| kv_error("reading queued writes", e))?;
                let mut found = (Vec::new(), Vec::new());
                for (id, values) in ids.iter().zip(values.chunks(3)) {
                    let id = id.as_ref().to_string();
                    if values[..2].iter().any(Option::is_some) {
                        found.0.push(id);
                    } else if values[2].is_some() {
                        found.1.push(id);
                    }
                }
                found
            }
        };
        if queued.is_empty() && noted.is_empty() {
            return Ok(queued);
        }
        let keys: Vec<String> = queued.iter().chain(&noted).flat_map(|id| keys_of(id)).collect();
        self.kv.delete_many(&keys).map_err(|e| kv_error("clearing queued writes", e))?;
        Ok(queued)
    }

    /// How many keys a listing may hold: any number where every listing
    /// fetches them all anyway.
    fn limit(&self) -> usize {
        if self.kv.lists_whole_store() { usize::MAX } else { self.keys_held }
    }

    /// Ids of `kind` waiting in either queue, or `None` when they are too
    /// many to hold.
    fn held(&self, kind: RecordKind) -> Result<Held> {
        if let Some(held) = self.held.borrow().get(&kind) {
            return Ok(held.clone());
        }
        // Both queues, and the rows the mapping refused, in one listing
        // (each lists the bucket; on Spin, the store).
        let prefixes =
            [Queue::Failed.prefix(), Queue::Deferred.prefix(), UNMAPPED].map(|prefix| format!("{prefix}/{kind}/"));
        let (mut counted, limit) = (0usize, self.limit());
        let keys = self
            .kv
            .list_keys_where("", &mut |k| {
                let queued = prefixes.iter().any(|p| k.starts_with(p.as_str()));
                counted += usize::from(queued);
                queued && counted <= limit
            })
            .map_err(|e| kv_error("listing queued writes", e))?;
        let mut ids = HeldIds::default();
        for k in keys {
            if let Some(id) = k.strip_prefix(prefixes[2].as_str()) {
                ids.unmapped.insert(id.to_string());
            } else if let Some(id) = prefixes[..2].iter().find_map(|p| k.strip_prefix(p.as_str())) {
                ids.queued.insert(id.to_string());
            }
        }
        let held = (counted <= limit).then(|| std::rc::Rc::new(RefCell::new(ids)));
        self.held.borrow_mut().insert(kind, held.clone());
        Ok(held)
    }

    /// Keeps a failed Salesforce → NetSuite write for inspection and replay
    /// (the replay reads the Salesforce record again and merges afresh).
    pub fn put_writeback(&self, failed: &FailedWriteback) -> Result<()> {
        let bytes = serde_json::to_vec(failed).expect("a failed write-back serializes");
        self.kv
            .set(&writeback_key(failed.kind, &failed.salesforce_id), &bytes)
            .map_err(|e| kv_error("queueing a failed write-back", e))
    }

    /// Calls `each` with the keys of `kind`'s failed Salesforce → NetSuite
    /// writes, a part at a time ([`Self::writebacks_at`] reads them).
    pub fn writeback_keys(&self, kind: RecordKind, each: &mut dyn FnMut(Vec<String>) -> Result<()>) -> Result<()> {
        self.key_parts(&writeback_key(kind, ""), "listing failed write-backs", each)
    }

    /// The failed write-backs under `keys` (one gone meanwhile is skipped).
    pub fn writebacks_at(&self, keys: &[String]) -> Result<Vec<FailedWriteback>> {
        let values = self.kv.get_many(keys).map_err(|e| kv_error("reading failed write-backs", e))?;
        Ok(values.into_iter().flatten().filter_map(|v| serde_json::from_slice(&v).ok()).collect())
    }

    /// The failed write-back of each of these Salesforce records, if one waits.
    pub fn writebacks_of(&self, kind: RecordKind, salesforce_ids: &[&str]) -> Result<Vec<Option<FailedWriteback>>> {
        if salesforce_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = salesforce_ids.iter().map(|id| writeback_key(kind, id)).collect();
        let found = self.kv.get_many(&keys).map_err(|e| kv_error("reading failed write-backs", e))?;
        Ok(found.into_iter().map(|v| v.and_then(|v| serde_json::from_slice(&v).ok())).collect())
    }

    /// Drops the failed write-backs of these Salesforce records (written since).
    pub fn remove_writebacks(&self, kind: RecordKind, salesforce_ids: &[&str]) -> Result<()> {
        if salesforce_ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = salesforce_ids.iter().map(|id| writeback_key(kind, id)).collect();
        self.kv.delete_many(&keys).map_err(|e| kv_error("clearing failed write-backs", e))
    }

    pub fn put_event(&self, event: &QueuedEvent) -> Result<()> {
        let bytes = serde_json::to_vec(event).expect("an event serializes");
        self.kv.set(&event_key(event.kind, &event.id), &bytes).map_err(|e| kv_error("queueing a change event", e))
    }

    /// Calls `each` with the keys of the change events waiting for records
    /// of `kinds`, kind by kind in that order, a part at a time: a backlog is
    /// read ([`Self::events_at`]) and cleared as it is listed.
    pub fn event_keys(&self, kinds: &[RecordKind], each: &mut dyn FnMut(Vec<String>) -> Result<()>) -> Result<()> {
        for kind in kinds {
            self.key_parts(&event_key(*kind, ""), "listing change events", each)?;
        }
        Ok(())
    }

    /// The change events under `keys` (one gone meanwhile is skipped).
    pub fn events_at(&self, keys: &[String]) -> Result<Vec<QueuedEvent>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values = self.kv.get_many(keys).map_err(|e| kv_error("reading change events", e))?;
        Ok(values.into_iter().flatten().filter_map(|v| serde_json::from_slice(&v).ok()).collect())
    }

    /// Clears the applied `events`, except those replaced meanwhile by a
    /// newer event for the same record: that one still has to be applied.
    pub fn remove_events(&self, events: &[QueuedEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = events.iter().map(|e| event_key(e.kind, &e.id)).collect();
        let now = self.kv.get_many(&keys).map_err(|e| kv_error("re-reading applied change events", e))?;
        let applied: Vec<String> = keys
            .into_iter()
            .zip(now)
            .zip(events)
            .filter(|((_, stored), event)| {
                stored.as_deref().and_then(|b| serde_json::from_slice::<QueuedEvent>(b).ok()).as_ref() == Some(*event)
            })
            .map(|((key, _), _)| key)
            .collect();
        self.kv.delete_many(&applied).map_err(|e| kv_error("clearing applied change events", e))
    }

    /// Parks the records of one page of an open Bulk API 2.0 job until the
    /// job's results are in; returns the key to take them back with.
    pub fn park(&self, kind: RecordKind, run_id: &str, part: &str, mut records: Vec<ParkedWrite>) -> Result<String> {
        let key = format!("{}{run_id}/{part}", parked_prefix(kind));
        let mut shared: Vec<Rc<str>> = Vec::new();
        for r in &mut records {
            let Some(shape) = r.shape_text() else { continue };
            (r.shape, r.shared_shape) = (None, None);
            // The same text, shared as a rule: found by address first.
            let found =
                shared.iter().position(|s| Rc::ptr_eq(s, &shape)).or_else(|| shared.iter().position(|s| *s == shape));
            r.shape_at = Some(found.unwrap_or_else(|| {
                shared.push(shape);
                shared.len() - 1
            }));
        }
        let shapes = shared
            .iter()
            .map(|s| RawValue::from_string(s.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ConnectorError::Config(format!("an audit shape of parked records is not JSON ({e})")))?;
        // Sized up front: grown by doubling, a page's text was copied several
        // times and left holes of every size under the job's CSV.
        let room: usize = records
            .iter()
            .map(|r| r.fields.get().len() + r.transformations.as_ref().map_or(0, |t| t.get().len()) + PARKED_OVERHEAD)
            .sum::<usize>()
            + shapes.iter().map(|s| s.get().len()).sum::<usize>();
        let mut bytes = Vec::with_capacity(room);
        serde_json::to_writer(&mut bytes, &ParkedPage { shapes, records }).expect("parked writes serialize");
        self.kv.set(&key, &bytes).map_err(|e| kv_error("parking records of a Bulk API job", e))?;
        Ok(key)
    }

    /// Takes parked records back (and removes them).
    pub fn take_parked(&self, key: &str) -> Result<Vec<ParkedWrite>> {
        let bytes = self.kv.get(key).map_err(|e| kv_error("reading records of a Bulk API job", e))?;
        let unreadable = |e: serde_json::Error| {
            ConnectorError::Config(format!("parked Bulk API records `{key}` are unreadable ({e})"))
        };
        let records = match bytes {
            Some(b) if b.first() == Some(&b'{') => {
                let page: ParkedPage = serde_json::from_slice(&b).map_err(unreadable)?;
                let shapes: Vec<Rc<str>> = page.shapes.iter().map(|s| Rc::from(s.get())).collect();
                page.records.into_iter().map(|r| r.with_shape(&shapes, key)).collect::<Result<_>>()?
            }
            // Versions before pages kept their shapes parked a list of
            // records, and before those whole queued writes: a job they left
            // is still taken up. (Not an untagged enum: serde buffers those,
            // and raw JSON values cannot come from a buffer.)
            Some(b) => match serde_json::from_slice::<Vec<ParkedWrite>>(&b) {
                Ok(records) => records,
                Err(e) => match serde_json::from_slice::<Vec<QueuedWrite>>(&b) {
                    Ok(queued) => queued.into_iter().map(ParkedWrite::from).collect(),
                    Err(_) => return Err(unreadable(e)),
                },
            },
            None => Vec::new(),
        };
        self.kv.delete(key).map_err(|e| kv_error("clearing records of a Bulk API job", e))?;
        Ok(records)
    }

    /// Keeps a submitted job's id with the keys of its parked records, so a
    /// run that stops before its results are in leaves them to the next.
    /// `seq` counts the run's jobs: [`Queues::leftovers`] lists them in
    /// that order.
    pub fn save_job(&self, kind: RecordKind, run_id: &str, seq: usize, job: &SavedJob) -> Result<String> {
        let key = format!("{}{run_id}/{seq:06}-{}", bulk_job_prefix(kind), job.id);
        let bytes = serde_json::to_vec(job).expect("a saved job serializes");
        self.kv.set(&key, &bytes).map_err(|e| kv_error("keeping a Bulk API job id", e))?;
        Ok(key)
    }

    /// What runs that stopped part-way left for `kind`, from one listing of
    /// the bucket: the jobs they submitted, in the order they were closed (a
    /// run leaves two when it stops while recording one job and Salesforce
    /// applies the next), and the keys of every parked page.
    pub fn leftovers(&self, kind: RecordKind) -> Result<Leftovers> {
        let (job_prefix, parked_prefix) = (bulk_job_prefix(kind), parked_prefix(kind));
        // One listing for both (each lists the bucket; on Spin, the store).
        let (mut job_keys, parked): (Vec<String>, Vec<String>) = self
            .kv
            .list_keys_where("bulk", &mut |k| k.starts_with(&job_prefix) || k.starts_with(&parked_prefix))
            .map_err(|e| kv_error("listing Bulk API jobs and parked records", e))?
            .into_iter()
            .partition(|k| k.starts_with(&job_prefix));
        // Listings come in no promised order (a Redis-backed host's do not).
        job_keys.sort_unstable();
        let mut jobs = Vec::with_capacity(job_keys.len());
        for key in job_keys {
            let bytes = self.kv.get(&key).map_err(|e| kv_error("reading a Bulk API job id", e))?;
            // An unreadable entry only costs a rewrite of its records.
            if let Some(job) = bytes.and_then(|b| serde_json::from_slice::<SavedJob>(&b).ok()) {
                jobs.push((key, job));
            }
        }
        Ok((jobs, parked))
    }

    pub fn forget_job(&self, key: &str) -> Result<()> {
        self.kv.delete(key).map_err(|e| kv_error("clearing a Bulk API job id", e))
    }

    /// Drops parked records (listed by [`Queues::leftovers`]) that no job's
    /// results took back: their pages were not recorded, so they are read again.
    pub fn clear_parked(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.kv.delete_many(keys).map_err(|e| kv_error("clearing parked Bulk API records", e))
    }

    /// Calls `each` with the keys of `queue`'s writes of `kind`, a part at
    /// a time; [`Self::read`] reads them.
    pub fn keys(&self, queue: Queue, kind: RecordKind, each: &mut dyn FnMut(Vec<String>) -> Result<()>) -> Result<()> {
        self.key_parts(&format!("{}/{kind}/", queue.prefix()), "listing queued writes", each)
    }

    /// The queued writes under `keys` (one gone meanwhile is skipped).
    pub fn read(&self, keys: &[String]) -> Result<Vec<QueuedWrite>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values = self.kv.get_many(keys).map_err(|e| kv_error("reading queued writes", e))?;
        values
            .into_iter()
            .zip(keys)
            .filter_map(|(v, k)| v.map(|v| (v, k)))
            .map(|(v, k)| {
                serde_json::from_slice(&v).map_err(|e| {
                    ConnectorError::Config(format!(
                        "queued write `{k}` is unreadable ({e}); delete it and run a full sync"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory_kv::Memory;

    /// Every key a listing gives, its parts joined.
    type Listing<'l> = &'l mut dyn FnMut(Vec<String>) -> Result<()>;

    fn all_parts(list: impl FnOnce(Listing) -> Result<()>) -> Vec<Vec<String>> {
        let mut parts = Vec::new();
        list(&mut |part| {
            parts.push(part);
            Ok(())
        })
        .unwrap();
        parts
    }

    fn all_keys(list: impl FnOnce(Listing) -> Result<()>) -> Vec<String> {
        all_parts(list).concat()
    }

    fn event(id: &str, nonce: u64) -> QueuedEvent {
        QueuedEvent { kind: RecordKind::Customer, id: id.into(), event: "edit".into(), received_at: 100, nonce }
    }

    /// [`queued`]'s write of `id`, refused, of the row with digest `src`.
    fn failed(id: &str, src: &str) -> QueuedWrite {
        let write = queued(id);
        QueuedWrite { state: RecordState { src: src.into(), ..write.state.clone() }, reason: "refused".into(), ..write }
    }

    #[test]
    fn rows_waiting_as_read_are_those_a_queue_or_the_mapping_refusal_holds_with_the_same_digest() {
        for keys_held in [KEYS_HELD, 0] {
            let kv = Memory::default();
            let mut queues = Queues::new(&kv);
            queues.keys_held = keys_held;
            let customer = RecordKind::Customer;
            queues.put_failed(failed("1", "a"), 10).unwrap();
            queues.put(Queue::Deferred, &failed("2", "b")).unwrap();
            queues.note_unmapped(customer, &[("3", "c")]).unwrap();
            // Refused only for a row lock: the re-read tries it again.
            let locked =
                QueuedWrite { reason: "UNABLE_TO_LOCK_ROW: unable to obtain access".into(), ..failed("5", "e") };
            queues.put_failed(locked, 10).unwrap();
            let rows = [("1", "a"), ("1", "x"), ("2", "b"), ("3", "c"), ("3", "y"), ("4", "a"), ("5", "e")];
            let waiting = queues.waiting_as_read(customer, &rows).unwrap();
            assert_eq!(waiting, [true, false, true, true, false, false, false], "{keys_held}");
            // Written (or deleted), a record waits no more; queued, its
            // mapping refusal is over.
            // A row only noted as refused by the mapping was not queued.
            assert!(queues.remove(customer, &["3"]).unwrap().is_empty(), "{keys_held}");
            queues.note_unmapped(customer, &[("1", "a")]).unwrap();
            queues.put_failed(failed("1", "z"), 11).unwrap();
            let waiting = queues.waiting_as_read(customer, &[("3", "c"), ("1", "a"), ("1", "z")]).unwrap();
            assert_eq!(waiting, [false, false, true], "{keys_held}");
        }
    }

    #[test]
    fn an_event_resent_while_a_run_applied_the_first_stays_queued() {
        let kv = Memory::default();
        let queues = Queues::new(&kv);
        queues.put_event(&event("7", 1)).unwrap();
        queues.put_event(&event("8", 2)).unwrap();
        let events = || queues.events_at(&all_keys(|each| queues.event_keys(&RecordKind::ALL, each))).unwrap();
        let read = events();
        assert_eq!(read.len(), 2);
        // NetSuite sends another event for 7 (same second) while the run works.
        queues.put_event(&event("7", 3)).unwrap();
        queues.remove_events(&read).unwrap();
        assert_eq!(events(), vec![event("7", 3)]);
    }

    #[test]
    fn a_queue_longer_than_can_be_held_is_worked_through_in_parts_each_key_once() {
        let kv = Memory::default();
        let mut queues = Queues::new(&kv);
        queues.keys_held = 10;
        for i in 0..95 {
            queues.put_event(&event(&i.to_string(), i)).unwrap();
        }
        let (mut parts, mut seen) = (0, Vec::new());
        queues
            .event_keys(&[RecordKind::Customer], &mut |keys| {
                parts += 1;
                assert!(keys.len() <= 30, "a part of {} keys", keys.len());
                // Applied and cleared as listed; one comes back (sent again).
                let events = queues.events_at(&keys)?;
                queues.remove_events(&events)?;
                if keys.contains(&event_key(RecordKind::Customer, "7")) {
                    queues.put_event(&event("7", 1000))?;
                }
                seen.extend(keys);
                Ok(())
            })
            .unwrap();
        assert!(parts >= 9, "{parts} parts");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 95, "every key once, none twice");
        // What came back meanwhile waits for the next run.
        let left = all_keys(|each| queues.event_keys(&[RecordKind::Customer], each));
        assert_eq!(left, vec![event_key(RecordKind::Customer, "7")]);
    }

    #[test]
    fn a_store_that_fetches_every_key_for_any_listing_is_listed_once_however_long_the_queue() {
        let kv = Memory { whole_store: true, ..Memory::default() };
        let mut queues = Queues::new(&kv);
        queues.keys_held = 10;
        for i in 0..95 {
            queues.put_event(&event(&i.to_string(), i)).unwrap();
        }
        let before = kv.listings.get();
        let parts = all_parts(|each| queues.event_keys(&[RecordKind::Customer], each));
        assert_eq!((parts.len(), parts[0].len()), (1, 95), "one part holding every key");
        assert_eq!(kv.listings.get() - before, 1, "one listing, no counting pass");
        // Queued writes past the limit are held too: no per-id lookups.
        for i in 0..25 {
            kv.set(&key(Queue::Failed, RecordKind::Customer, &i.to_string()), b"{}").unwrap();
        }
        let ids: Vec<String> = (20..30).map(|i| i.to_string()).collect();
        assert_eq!(queues.remove(RecordKind::Customer, &ids).unwrap(), ["20", "21", "22", "23", "24"]);
        assert!(matches!(queues.held.borrow().get(&RecordKind::Customer), Some(Some(_))), "held, not looked up");
        assert_eq!(kv.listings.get() - before, 2);
    }

    #[test]
    fn ids_queued_beyond_what_can_be_held_are_looked_up_and_still_cleared() {
        let kv = Memory::default();
        let mut queues = Queues::new(&kv);
        queues.keys_held = 10;
        for i in 0..25 {
            let queue = if i % 2 == 0 { Queue::Failed } else { Queue::Deferred };
            kv.set(&key(queue, RecordKind::Customer, &i.to_string()), b"{}").unwrap();
        }
        let ids: Vec<String> = (20..30).map(|i| i.to_string()).collect();
        assert_eq!(queues.remove(RecordKind::Customer, &ids).unwrap(), ["20", "21", "22", "23", "24"]);
        assert_eq!(queues.held.borrow().get(&RecordKind::Customer), Some(&None), "too many to hold");
        let left = all_keys(|each| queues.keys(Queue::Failed, RecordKind::Customer, each)).len()
            + all_keys(|each| queues.keys(Queue::Deferred, RecordKind::Customer, each)).len();
        assert_eq!(left, 20);
    }

    #[test]
    fn a_stopped_runs_jobs_come_back_in_the_order_they_were_closed() {
        let kv = Memory::default();
        let queues = Queues::new(&kv);
        // Salesforce's job ids need not sort as the jobs were made; the
        // bucket lists keys in no order.
        let made: Vec<String> = (1..=12).map(|n| format!("750{:02}", 13 - n)).collect();
        for (seq, id) in made.iter().enumerate() {
            let job = SavedJob {
                id: id.clone(),
                sobject: "Account".into(),
                external_id_field: "NetSuite_Id__c".into(),
                parked: vec![],
            };
            queues.save_job(RecordKind::Customer, "r1", seq + 1, &job).unwrap();
        }
        let (jobs, _) = queues.leftovers(RecordKind::Customer).unwrap();
        let ids: Vec<&String> = jobs.iter().map(|(_, job)| &job.id).collect();
        assert_eq!(ids, made.iter().collect::<Vec<_>>());
    }

    fn queued(id: &str) -> QueuedWrite {
        QueuedWrite {
            run_id: "r1".into(),
            kind: RecordKind::Customer,
            netsuite_id: id.into(),
            target: SObjectRecord {
                sobject: "Account".into(),
                external_id_field: "NetSuite_Id__c".into(),
                external_id: id.into(),
                fields: serde_json::Map::from_iter([("Name".to_string(), serde_json::json!("Acme \"A\""))]),
            },
            state: RecordState {
                src: "s".into(),
                dst: "d".into(),
                sf: Some("001A".into()),
                fields: None,
                org: None,
                sf_deleted: false,
            },
            transformations: vec![Transformation { field: "Name".into(), ..Default::default() }],
            reason: String::new(),
            waits_for: vec![],
            failing_since: None,
        }
    }

    /// A failure queued again (a replay refused once more) keeps when the
    /// record began failing; a record that failed anew after it landed
    /// starts again.
    #[test]
    fn a_failure_queued_again_keeps_when_it_began() {
        let kv = Memory::default();
        let queues = Queues::new(&kv);
        let since = |id: &str| {
            let bytes = kv.get(&key(Queue::Failed, RecordKind::Customer, id)).unwrap().unwrap();
            serde_json::from_slice::<QueuedWrite>(&bytes).unwrap().failing_since
        };
        queues.put_failed(queued("7"), 1_000).unwrap();
        queues.put_failed(queued("7"), 2_000).unwrap();
        assert_eq!(since("7"), Some(1_000));
        queues.remove(RecordKind::Customer, &["7"]).unwrap();
        queues.put_failed(queued("7"), 3_000).unwrap();
        assert_eq!(since("7"), Some(3_000));
    }

    #[test]
    fn parked_records_come_back_whole_in_either_format() {
        let kv = Memory::default();
        let queues = Queues::new(&kv);
        let parked: Vec<ParkedWrite> = vec![queued("7").into(), queued("8").into()];
        let key = queues.park(RecordKind::Customer, "r1", "000001-a", parked).unwrap();
        let back = queues.take_parked(&key).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].queued("r1", String::new()).unwrap().target, queued("8").target);
        assert_eq!(back[0].queued("r1", String::new()).unwrap().transformations, queued("7").transformations);
        assert!(queues.take_parked(&key).unwrap().is_empty(), "taking removes them");
        // A page parked by an earlier version: whole queued writes.
        kv.set("bulk/customer/r0/000001-a", &serde_json::to_vec(&[queued("9")]).unwrap()).unwrap();
        let old = queues.take_parked("bulk/customer/r0/000001-a").unwrap();
        assert_eq!(old[0].queued("r0", String::new()).unwrap().target, queued("9").target);
        assert_eq!(old[0].state, RecordState { fields: None, ..queued("9").state });
        // A page parked by the version before pages kept their shapes: a list.
        let listed: Vec<ParkedWrite> = vec![queued("10").into()];
        kv.set("bulk/customer/r0/000002-a", &serde_json::to_vec(&listed).unwrap()).unwrap();
        let back = queues.take_parked("bulk/customer/r0/000002-a").unwrap();
        assert_eq!(back[0].queued("r0", String::new()).unwrap().transformations, queued("10").transformations);
    }

    #[test]
    fn a_fresh_records_parked_values_are_its_fields_parked_once() {
        let list = queued("9").transformations;
        let mut parked: ParkedWrite = queued("9").into();
        parked.transformations = None;
        parked.shape = Some(RawValue::from_string(Transformation::shape_json(&list)).unwrap());
        let kv = Memory::default();
        let queues = Queues::new(&kv);
        let key = queues.park(RecordKind::Customer, "r1", "000001-a", vec![parked]).unwrap();
        let stored = String::from_utf8(kv.get(&key).unwrap().unwrap()).unwrap();
        assert_eq!(stored.matches("Acme").count(), 1, "the payload is parked once: {stored}");
        let back = queues.take_parked(&key).unwrap().remove(0);
        let mut written = list.clone();
        written[0].new = Some(serde_json::json!("Acme \"A\""));
        assert_eq!(back.audit_transformations().joined(), Transformation::list_json(&written));
        assert_eq!(back.queued("r1", String::new()).unwrap().transformations, written);
    }

    #[test]
    fn parked_transformations_split_for_the_audit_come_back_whole() {
        let mut list = queued("7").transformations;
        list[0].new = Some(serde_json::json!("Acme \"A\""));
        let mut parked: ParkedWrite = queued("7").into();
        let values = Transformation::values_json(&list, None, None);
        parked.transformations = Some(RawValue::from_string(values).unwrap());
        parked.shape = Some(RawValue::from_string(Transformation::shape_json(&list)).unwrap());
        let kv = Memory::default();
        let queues = Queues::new(&kv);
        let mut other = parked.clone();
        other.shape = Some(RawValue::from_string("[{\"field\":\"Other\"}]".into()).unwrap());
        other.transformations = Some(RawValue::from_string("[{}]".into()).unwrap());
        let key = queues.park(RecordKind::Customer, "r1", "000001-a", vec![parked.clone(), other, parked]).unwrap();
        let stored = String::from_utf8(kv.get(&key).unwrap().unwrap()).unwrap();
        assert_eq!(stored.matches("\"field\":\"Name\"").count(), 1, "a shape is stored once a page: {stored}");
        let back = queues.take_parked(&key).unwrap();
        assert_eq!(back[1].audit_transformations().joined(), "[{\"field\":\"Other\"}]");
        let back = back.into_iter().nth(2).unwrap();
        assert_eq!(back.audit_transformations().joined(), Transformation::list_json(&list));
        assert_eq!(back.queued("r1", String::new()).unwrap().transformations, list);
        // Parked whole (as before the split): read as they are.
        let whole: ParkedWrite = queued("8").into();
        assert!(!serde_json::to_string(&whole).unwrap().contains("shape"));
        let expected = AuditTransformations::Whole(Transformation::list_json(&queued("8").transformations));
        assert_eq!(whole.audit_transformations(), expected);
    }
}
