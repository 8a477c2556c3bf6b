//! One run's key-value state and audit rows. Writes are committed by a thread
//! of the run's own, several calls to a transaction, while the component
//! goes on (a large first sync spent a quarter of its time waiting for SQLite
//! on the component's thread). Reads see every write made before them: a
//! value not committed yet is answered from the pending ones.
//!
//! Writes keep their order, and after one fails none later lands (a cursor
//! never moves past a record whose state was not saved); the failure is the
//! answer to the run's next call. The lease key is written at once, straight
//! to the database: other processes must see it when the run reads it back.
//! [`RunStore::finish`] waits for everything, so a run ends with its writes
//! committed or failed.
//!
//! The `in-flight` bucket (marks of writes on their way to Salesforce) lives
//! in a file of its own: a mark set is committed there before the call
//! returns, and a mark deleted is deleted by the writer once everything
//! before it is committed — so a run killed at any point leaves a mark for
//! each write Salesforce may have applied without its outcome saved.

use super::absent::KnownAbsent;
use super::kv::{IN_FLIGHT_BUCKET, KvStore, STATE_BUCKET};
use crate::audit::AuditRow;
use anyhow::{Result, anyhow};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const LEASE_KEY: &str = netsuite_salesforce::sync::lease::LEASE_KEY;

/// Calls waiting for the writer before the run's next write waits (a call is
/// at most a page of records): with the group the writer is gathering
/// ([`GROUP_BYTES`]), it bounds the memory pending writes hold.
const QUEUE_DEPTH: usize = 16;

type Key = (&'static str, String);

/// A value written: shared by the queue and the pending writes, not copied.
type Value = Arc<Vec<u8>>;

enum Op {
    /// Key-value writes of one call (`None` deletes), all or nothing.
    Write {
        seq: u64,
        writes: Vec<(Key, Option<Value>)>,
    },
    Audit {
        at: String,
        rows: Vec<AuditRow>,
    },
    /// Answered once everything sent before it is committed or failed.
    Flush(SyncSender<()>),
}

/// What readers share with the writer thread.
#[derive(Default)]
struct Shared {
    /// Values written and not committed yet (`None`: deleted), with the
    /// number of the write that set them; by bucket, then key, so a read
    /// looks a key up without making one.
    pending: HashMap<&'static str, HashMap<String, (u64, Option<Value>)>>,
    /// The first failure; nothing is written after it.
    failed: Option<String>,
}

pub struct RunStore {
    /// Reads, and the lease's writes.
    kv: KvStore,
    /// The marks' file: sets, and reads of the marks.
    marks: KvStore,
    shared: Arc<Mutex<Shared>>,
    queue: Option<SyncSender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
    seq: u64,
    /// Record state keys that need no read (the state bucket's only).
    absent: RefCell<KnownAbsent>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The writer never panics holding the lock; a poisoned one is still consistent.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunStore {
    /// `kv` answers reads; `writer` (its own connection to the same
    /// database, same tenant) commits the writes. `marks` and `unmark` are
    /// two connections to the marks' file: the run's, and the writer's.
    pub fn start(kv: KvStore, writer: KvStore, marks: KvStore, unmark: KvStore) -> Result<RunStore> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (queue, ops) = sync_channel(QUEUE_DEPTH);
        let theirs = shared.clone();
        let writer = std::thread::Builder::new().name("state-writer".into()).spawn(move || {
            yield_to_the_run();
            write_all(&writer, &unmark, &theirs, ops)
        })?;
        Ok(RunStore {
            kv,
            marks,
            shared,
            queue: Some(queue),
            writer: Some(writer),
            seq: 0,
            absent: RefCell::new(KnownAbsent::default()),
        })
    }

    /// A run's store over `db` for `tenant`: the run's reads, its writer,
    /// and the two connections to the marks' file.
    pub fn open(db: &super::Database, tenant: &str, cipher: &crate::secrets::Cipher) -> Result<RunStore> {
        let kv = |conn| KvStore::new(conn, tenant, cipher.clone());
        RunStore::start(
            kv(db.connect_for_run_reads()?),
            kv(db.connect_for_run_writes()?),
            kv(db.connect_marks()?),
            kv(db.connect_marks()?),
        )
    }

    fn failure(&self) -> Result<()> {
        match &lock(&self.shared).failed {
            Some(e) => Err(anyhow!("{e}")),
            None => Ok(()),
        }
    }

    fn send(&self, op: Op) -> Result<()> {
        let sent = self.queue.as_ref().map(|q| q.send(op));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(anyhow!("the run's state writer has stopped")),
        }
    }

    /// Waits until every write so far is committed; the first failure, if any.
    pub fn flush(&self) -> Result<()> {
        let (done, wait) = sync_channel(1);
        self.send(Op::Flush(done))?;
        wait.recv().map_err(|_| anyhow!("the run's state writer has stopped"))?;
        self.failure()
    }

    /// Commits everything and stops the writer: the run's writes are all in
    /// the database, or this says which failed.
    pub fn finish(&mut self) -> Result<()> {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            writer.join().map_err(|_| anyhow!("the run's state writer panicked"))?;
        }
        self.failure()
    }

    fn write(&mut self, bucket: &'static str, mut writes: Vec<(String, Option<Vec<u8>>)>) -> Result<()> {
        self.failure()?;
        if bucket == IN_FLIGHT_BUCKET {
            // Marks set go to their file now; deletes wait their turn below.
            let (sets, deletes): (Vec<_>, Vec<_>) = writes.into_iter().partition(|(_, v)| v.is_some());
            if sets.iter().any(|(k, _)| self.pending(bucket, k).is_some()) {
                // A delete of the key still queued would undo the set.
                self.flush()?;
            }
            if !sets.is_empty() {
                self.marks.batch(|kv| {
                    sets.iter().try_for_each(|(k, v)| kv.set(bucket, k, v.as_deref().unwrap_or_default()))
                })?;
            }
            if deletes.is_empty() {
                return Ok(());
            }
            writes = deletes;
        }
        if bucket == STATE_BUCKET {
            let absent = self.absent.get_mut();
            writes.iter().for_each(|(k, _)| absent.note_written(k));
        }
        if bucket == STATE_BUCKET && writes.iter().any(|(k, _)| k == LEASE_KEY) {
            // Other runs read the lease from the database: it goes there now.
            self.flush()?;
            return self.kv.batch(|kv| {
                writes.iter().try_for_each(|(k, v)| match v {
                    Some(v) => kv.set(bucket, k, v),
                    None => kv.delete(bucket, k),
                })
            });
        }
        self.seq += 1;
        let seq = self.seq;
        let writes: Vec<(Key, Option<Value>)> =
            writes.into_iter().map(|(k, v)| ((bucket, k), v.map(Arc::new))).collect();
        {
            let mut shared = lock(&self.shared);
            let pending = shared.pending.entry(bucket).or_default();
            for ((_, key), value) in &writes {
                pending.insert(key.clone(), (seq, value.clone()));
            }
        }
        self.send(Op::Write { seq, writes })
    }

    pub fn set(&mut self, bucket: &'static str, key: &str, value: &[u8]) -> Result<()> {
        self.write(bucket, vec![(key.to_string(), Some(value.to_vec()))])
    }

    pub fn delete(&mut self, bucket: &'static str, key: &str) -> Result<()> {
        self.write(bucket, vec![(key.to_string(), None)])
    }

    pub fn set_many(&mut self, bucket: &'static str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.write(bucket, entries.into_iter().map(|(k, v)| (k, Some(v))).collect())
    }

    pub fn delete_many(&mut self, bucket: &'static str, keys: Vec<String>) -> Result<()> {
        self.write(bucket, keys.into_iter().map(|k| (k, None)).collect())
    }

    /// Sets `key` to `value` if it holds `expected` (`None`: if it is
    /// absent), in one transaction of its own: the database's write lock
    /// makes the check and the write one step for every process sharing it.
    /// True when it did. Like the lease's other writes, it goes to the
    /// database at once, after everything before it.
    pub fn swap_if(&mut self, bucket: &'static str, key: &str, expected: Option<&[u8]>, value: &[u8]) -> Result<bool> {
        self.failure()?;
        if bucket == STATE_BUCKET {
            self.absent.get_mut().note_written(key);
        }
        self.flush()?;
        self.kv.batch(|kv| {
            let holds = kv.get(bucket, key)?;
            if holds.as_deref() != expected {
                return Ok(false);
            }
            kv.set(bucket, key, value)?;
            Ok(true)
        })
    }

    /// The pending value of `key`: `Some(None)` when it is being deleted.
    fn pending(&self, bucket: &'static str, key: &str) -> Option<Option<Vec<u8>>> {
        lock(&self.shared).pending.get(bucket)?.get(key).map(|(_, v)| v.as_deref().cloned())
    }

    /// Whether `key` is surely not in the database (see [`KnownAbsent`]).
    fn known_absent(&self, bucket: &'static str, key: &str) -> Result<bool> {
        if bucket != STATE_BUCKET {
            return Ok(false);
        }
        self.absent.borrow_mut().absent(key, |from, below| {
            let held: bool = self
                .kv
                .connection()
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key >= ?3 AND key < ?4)",
                )?
                .query_row(rusqlite::params![self.kv.tenant(), bucket, from, below], |r| r.get(0))?;
            Ok(!held)
        })
    }

    /// The connection a bucket's committed values are read from.
    fn reads(&self, bucket: &str) -> &KvStore {
        if bucket == IN_FLIGHT_BUCKET { &self.marks } else { &self.kv }
    }

    pub fn get(&self, bucket: &'static str, key: &str) -> Result<Option<Vec<u8>>> {
        self.failure()?;
        match self.pending(bucket, key) {
            Some(value) => Ok(value),
            None if bucket == IN_FLIGHT_BUCKET => self.marks.get(bucket, key),
            None if self.known_absent(bucket, key)? => Ok(None),
            // Committed meanwhile or never written: the database has it.
            None => self.kv.get(bucket, key),
        }
    }

    pub fn get_many(&self, bucket: &'static str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.failure()?;
        let mut found: Vec<Option<Option<Vec<u8>>>> = {
            // One lock for the batch, not one per key.
            let shared = lock(&self.shared);
            let pending = shared.pending.get(bucket);
            keys.iter().map(|k| pending.and_then(|p| p.get(k)).map(|(_, v)| v.as_deref().cloned())).collect()
        };
        for (key, slot) in keys.iter().zip(&mut found) {
            if slot.is_none() && self.known_absent(bucket, key)? {
                *slot = Some(None);
            }
        }
        let missing: Vec<String> =
            keys.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(k, _)| k.clone()).collect();
        if !missing.is_empty() {
            let mut read = self.reads(bucket).get_many(bucket, &missing)?.into_iter();
            for slot in found.iter_mut().filter(|f| f.is_none()) {
                *slot = Some(read.next().flatten());
            }
        }
        Ok(found.into_iter().map(Option::flatten).collect())
    }

    pub fn exists(&self, bucket: &'static str, key: &str) -> Result<bool> {
        Ok(self.get(bucket, key)?.is_some())
    }

    /// Up to `page` keys after `after`, in order.
    pub fn list_keys(&self, bucket: &'static str, after: Option<&str>, page: u64) -> Result<Vec<String>> {
        if bucket == IN_FLIGHT_BUCKET {
            // Listed by every run: not worth a flush. Its pending writes are
            // deletes (sets are committed at once): a key being deleted may
            // still be listed, and reads as absent.
            self.failure()?;
            return self.marks.list_keys(bucket, after, page);
        }
        // Rare (queued events, parked records): merging pending keys into an
        // ordered listing is not worth it, waiting for them is.
        self.flush()?;
        self.kv.list_keys(bucket, after, page)
    }

    /// Appends audit rows, stamped with the time of this call.
    pub fn append_audit(&mut self, rows: Vec<AuditRow>) -> Result<()> {
        self.failure()?;
        self.send(Op::Audit { at: super::now_text(), rows })
    }
}

impl Drop for RunStore {
    fn drop(&mut self) {
        // A run's writes are committed even when nobody called `finish`
        // (an early return); a failure then is the next run's to find.
        let _ = self.finish();
    }
}

/// How much nicer than the run the writer thread is.
const WRITER_NICE: i32 = 10;

/// Lowers the calling (writer) thread's priority. The component's thread is
/// the run's critical path: when both want a core, it should get it first
/// (a 100,000-customer sync on two cores: 3.5-3.7 s -> 3.2-3.5 s). The
/// writer cannot starve: once the queue is full the run waits for it.
#[cfg(target_os = "linux")]
fn yield_to_the_run() {
    // SAFETY: plain system calls without pointers. On Linux a nice value
    // belongs to a thread, and `who = 0` names the calling one.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + WRITER_NICE).min(19));
    }
}

/// Elsewhere `setpriority(PRIO_PROCESS, 0)` would lower the whole process.
#[cfg(not(target_os = "linux"))]
fn yield_to_the_run() {}

/// How long a transaction stays open for more calls, and how many bytes of
/// values it gathers before it commits. Each commit writes every page it
/// touched to the log once more, and the state's key index takes a first
/// sync's records in no order: committing a page of records at a time
/// rewrote most of the index's pages each time.
const GROUP_TIME: Duration = Duration::from_millis(500);
const GROUP_BYTES: usize = 16 << 20;

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Write { writes, .. } => {
                writes.iter().map(|((_, k), v)| k.len() + v.as_ref().map_or(0, |v| v.len())).sum()
            }
            // A shape is held once by the rows of its call.
            Op::Audit { rows, .. } => {
                let mut before: Option<&Arc<str>> = None;
                rows.iter()
                    .map(|r| {
                        let shared = matches!((before, &r.shape), (Some(b), Some(s)) if Arc::ptr_eq(b, s));
                        before = r.shape.as_ref();
                        r.transformations.len() + if shared { 0 } else { r.shape.as_ref().map_or(0, |s| s.len()) } + 64
                    })
                    .sum()
            }
            Op::Flush(_) => 0,
        }
    }
}

/// The group of calls `first` starts, each handed to `apply` as it arrives:
/// what comes within [`GROUP_TIME`] of the first, up to [`GROUP_BYTES`],
/// ended early by a flush or the run's end.
fn gather(ops: &Receiver<Op>, first: Op, mut apply: impl FnMut(&Op)) -> Vec<Op> {
    let started = Instant::now();
    let mut bytes = 0;
    let mut group = Vec::new();
    let mut next = Some(first);
    while let Some(op) = next.take() {
        apply(&op);
        bytes += op.bytes();
        let flush = matches!(op, Op::Flush(_));
        group.push(op);
        if flush || bytes >= GROUP_BYTES {
            break;
        }
        next = ops.recv_timeout(GROUP_TIME.saturating_sub(started.elapsed())).ok();
    }
    group
}

/// The writer thread: one transaction per group of calls, in order, until
/// the run ends. Calls are written as they arrive, so the writer keeps pace
/// with the run instead of working in bursts the run would wait for.
fn write_all(kv: &KvStore, marks: &KvStore, shared: &Mutex<Shared>, ops: Receiver<Op>) {
    let conn = kv.connection();
    while let Ok(first) = ops.recv() {
        let at = super::now_text();
        // After a failure nothing is written; flushes are still answered.
        let mut written: Option<Result<()>> =
            lock(shared).failed.is_none().then(|| conn.execute_batch("BEGIN IMMEDIATE").map_err(Into::into));
        let group = gather(&ops, first, |op| {
            if let Some(Ok(())) = written {
                written = Some(write(kv, op, &at));
            }
        });
        let committed = written.map(|w| {
            w.and_then(|()| conn.execute_batch("COMMIT").map_err(Into::into))
                // Marks go once what was saved before them is committed.
                .and_then(|()| unmark(marks, &group))
        });
        match committed {
            None => {}
            Some(Ok(())) => {
                let mut shared = lock(shared);
                for op in &group {
                    let Op::Write { seq, writes } = op else { continue };
                    for ((bucket, key), _) in writes {
                        let Some(pending) = shared.pending.get_mut(bucket) else { continue };
                        // A later write of the same key stays pending.
                        if pending.get(key).is_some_and(|(s, _)| s == seq) {
                            pending.remove(key);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                let _ = conn.execute_batch("ROLLBACK");
                lock(shared).failed = Some(format!(
                    "saving the run's state to {} failed: {e:#}; nothing after it was saved and the next run \
                     repeats what was not",
                    conn.path().unwrap_or("the database")
                ))
            }
        }
        for op in group {
            if let Op::Flush(done) = op {
                let _ = done.send(());
            }
        }
    }
}

/// Deletes the marks a group of calls deleted, in the marks' file.
fn unmark(marks: &KvStore, group: &[Op]) -> Result<()> {
    let keys: Vec<&str> = group
        .iter()
        .filter_map(|op| match op {
            Op::Write { writes, .. } => Some(writes),
            _ => None,
        })
        .flatten()
        .filter(|((bucket, _), _)| *bucket == IN_FLIGHT_BUCKET)
        .map(|((_, key), _)| key.as_str())
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    marks.batch(|kv| kv.write_at(keys.iter().map(|k| (IN_FLIGHT_BUCKET, *k, None)), "")).map_err(|e| {
        // What came before is committed; the marks stay, so the next run
        // writes their records again.
        e.context(format!(
            "the state is committed, but clearing the marks of its writes in {} failed",
            marks.connection().path().unwrap_or("the marks' file")
        ))
    })
}

/// One call's writes, in the open transaction (marks aside: see [`unmark`]).
fn write(kv: &KvStore, op: &Op, at: &str) -> Result<()> {
    match op {
        Op::Write { writes, .. } => kv.write_at(
            writes
                .iter()
                .filter(|((bucket, _), _)| *bucket != IN_FLIGHT_BUCKET)
                .map(|((bucket, key), value)| (*bucket, key.as_str(), value.as_deref().map(Vec::as_slice))),
            at,
        )?,
        Op::Audit { at, rows } => crate::audit::insert(kv.connection(), kv.tenant(), at, rows)?,
        Op::Flush(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Cipher;
    use crate::store::Database;
    use crate::store::kv::{IN_FLIGHT_BUCKET, QUEUES_BUCKET};

    #[test]
    fn a_mark_is_committed_at_once_and_its_delete_lands_only_after_what_was_saved_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = store(dir.path());
        let cipher = Cipher::from_key(&[7; 32]);
        let marks = KvStore::new(db.connect_marks().unwrap(), "acme", cipher.clone());
        let saved = KvStore::new(db.connect().unwrap(), "acme", cipher);
        store.set(STATE_BUCKET, "record/customer/1", b"before").unwrap();
        store.set(IN_FLIGHT_BUCKET, "customer/run-1/00000001", b"1 x3:ab").unwrap();
        // In its file before the call returned, whatever the writer holds.
        assert_eq!(marks.get(IN_FLIGHT_BUCKET, "customer/run-1/00000001").unwrap(), Some(b"1 x3:ab".to_vec()));
        assert!(saved.get(IN_FLIGHT_BUCKET, "customer/run-1/00000001").unwrap().is_none(), "not in the database");
        store.set(STATE_BUCKET, "record/customer/1", b"after").unwrap();
        store.delete(IN_FLIGHT_BUCKET, "customer/run-1/00000001").unwrap();
        // The run sees its delete at once ...
        assert_eq!(store.get(IN_FLIGHT_BUCKET, "customer/run-1/00000001").unwrap(), None);
        assert!(
            store
                .list_keys(IN_FLIGHT_BUCKET, None, 10)
                .unwrap()
                .iter()
                .all(|k| store.get(IN_FLIGHT_BUCKET, k).unwrap().is_none()),
            "listed while its delete waits, it reads as absent"
        );
        // ... and the mark leaves its file only once the state saved before
        // the delete is committed: never gone with "before" still saved.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let marked = marks.get(IN_FLIGHT_BUCKET, "customer/run-1/00000001").unwrap().is_some();
            let state = saved.get(STATE_BUCKET, "record/customer/1").unwrap();
            if !marked {
                assert_eq!(state.as_deref(), Some(&b"after"[..]), "the mark went before the state it covers");
                break;
            }
            assert!(Instant::now() < deadline, "the mark was never deleted");
            std::thread::sleep(Duration::from_millis(1));
        }
        store.finish().unwrap();
    }

    fn store(dir: &std::path::Path) -> (Database, RunStore) {
        let db = Database::open(&dir.join("state.db")).unwrap();
        let store = RunStore::open(&db, "acme", &Cipher::from_key(&[7; 32])).unwrap();
        (db, store)
    }

    fn row(id: &str) -> AuditRow {
        AuditRow {
            run_id: "run-1".into(),
            kind: "customer".into(),
            action: "upsert".into(),
            direction: "netsuite-to-salesforce".into(),
            netsuite_id: id.into(),
            salesforce_id: None,
            outcome: "created".into(),
            transformations: "[]".into(),
            shape: None,
            error: None,
        }
    }

    fn write_of(bytes: usize) -> Op {
        Op::Write { seq: 1, writes: vec![((STATE_BUCKET, "k".into()), Some(Arc::new(vec![0; bytes])))] }
    }

    #[test]
    fn a_group_ends_at_a_flush_at_its_size_or_when_the_run_ends() {
        let (queue, ops) = sync_channel(QUEUE_DEPTH);
        let (done, _wait) = sync_channel(1);
        queue.send(write_of(10)).unwrap();
        queue.send(Op::Flush(done)).unwrap();
        queue.send(write_of(10)).unwrap();
        let next_group = |ops: &Receiver<Op>| Some(gather(ops, ops.recv().ok()?, |_| {}));
        let group = next_group(&ops).unwrap();
        assert_eq!(group.len(), 2, "the flush is answered with what came before it");
        assert!(matches!(group[1], Op::Flush(_)));

        queue.send(write_of(GROUP_BYTES / 2)).unwrap();
        queue.send(write_of(GROUP_BYTES / 2)).unwrap();
        queue.send(write_of(10)).unwrap();
        drop(queue);
        let group = next_group(&ops).unwrap();
        assert_eq!(group.len(), 3, "the write after the flush, then two that reach the size");
        assert!(group.iter().map(Op::bytes).sum::<usize>() >= GROUP_BYTES);
        assert_eq!(next_group(&ops).unwrap().len(), 1, "the rest, once the run has ended");
        assert!(next_group(&ops).is_none());
    }

    #[test]
    fn reads_see_writes_before_and_after_they_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut run) = store(dir.path());
        run.set_many(STATE_BUCKET, (0..500).map(|i| (format!("record/{i}"), vec![i as u8])).collect()).unwrap();
        run.delete(STATE_BUCKET, "record/7").unwrap();
        run.set(STATE_BUCKET, "record/8", b"again").unwrap();
        let keys: Vec<String> = ["record/6", "record/7", "record/8", "record/none"].map(String::from).to_vec();
        let expect = vec![Some(vec![6]), None, Some(b"again".to_vec()), None];
        // Whether or not the writer got there yet.
        assert_eq!(run.get_many(STATE_BUCKET, &keys).unwrap(), expect);
        assert_eq!(run.get(STATE_BUCKET, "record/8").unwrap(), Some(b"again".to_vec()));
        assert!(!run.exists(STATE_BUCKET, "record/7").unwrap());
        run.append_audit(vec![row("1"), row("2")]).unwrap();
        run.finish().unwrap();
        let other = KvStore::new(db.connect().unwrap(), "acme", Cipher::from_key(&[7; 32]));
        assert_eq!(other.get_many(STATE_BUCKET, &keys).unwrap(), expect);
        assert_eq!(crate::audit::for_run(other.connection(), "acme", "run-1").unwrap().len(), 2);
        assert_eq!(other.list_keys(STATE_BUCKET, None, 1000).unwrap().len(), 499);
    }

    #[test]
    fn a_listing_worked_through_page_by_page_sees_every_key_once_though_each_page_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut run) = store(dir.path());
        run.set_many(QUEUES_BUCKET, (0..2500).map(|i| (format!("event/customer/{i:05}"), vec![1])).collect()).unwrap();
        let (mut seen, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = run.list_keys(QUEUES_BUCKET, after.as_deref(), 1000).unwrap();
            // A queue applied as it is listed: each page is gone before the next.
            for key in &page {
                run.delete(QUEUES_BUCKET, key).unwrap();
            }
            after = page.last().cloned();
            seen.extend(page);
            if after.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 2500);
        seen.dedup();
        assert_eq!(seen.len(), 2500, "in key order, none twice");
        assert!(run.list_keys(QUEUES_BUCKET, None, 1000).unwrap().is_empty());
    }

    #[test]
    fn record_keys_of_a_family_that_was_empty_are_answered_without_reading_and_still_right() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut first) = store(dir.path());
        let keys = |ids: &[&str]| ids.iter().map(|i| format!("record/customer/{i}")).collect::<Vec<_>>();
        // Empty when first read; then this run's own writes, committed or not.
        assert_eq!(first.get_many(STATE_BUCKET, &keys(&["1", "2"])).unwrap(), [None, None]);
        first.set(STATE_BUCKET, "record/customer/1", b"one").unwrap();
        first.flush().unwrap();
        first.set(STATE_BUCKET, "record/customer/2", b"two").unwrap();
        assert_eq!(
            first.get_many(STATE_BUCKET, &keys(&["1", "2", "3"])).unwrap(),
            [Some(b"one".to_vec()), Some(b"two".to_vec()), None]
        );
        // Record state has one writer, the lease holder: a key written
        // behind its back is not looked for (this is what saves the reads).
        let other = KvStore::new(db.connect().unwrap(), "acme", Cipher::from_key(&[7; 32]));
        other.set(STATE_BUCKET, "record/customer/9", b"stranger").unwrap();
        assert_eq!(first.get(STATE_BUCKET, "record/customer/9").unwrap(), None);
        first.delete(STATE_BUCKET, "record/customer/1").unwrap();
        first.flush().unwrap();
        assert_eq!(first.get(STATE_BUCKET, "record/customer/1").unwrap(), None);
        first.finish().unwrap();
        // The next run finds the family holding keys and reads them.
        let mut next = RunStore::open(&db, "acme", &Cipher::from_key(&[7; 32])).unwrap();
        assert_eq!(next.get_many(STATE_BUCKET, &keys(&["1", "2", "3"])).unwrap(), [None, Some(b"two".to_vec()), None]);
        assert_eq!(next.get(STATE_BUCKET, "record/customer/9").unwrap(), Some(b"stranger".to_vec()));
        assert_eq!(next.get(STATE_BUCKET, "record/customer/2").unwrap(), Some(b"two".to_vec()));
        next.finish().unwrap();
    }

    #[test]
    fn the_log_starts_over_instead_of_growing_with_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("state.db")).unwrap();
        let mut run = RunStore::open(&db, "acme", &Cipher::from_key(&[7; 32])).unwrap();
        // 96 MB of state, 400 KB a call (a page of records): three times
        // what the writer lets the log hold before it checkpoints.
        let value = vec![b'x'; 8 * 1024];
        for page in 0..240 {
            run.set_many(STATE_BUCKET, (0..50).map(|i| (format!("record/{page}/{i}"), value.clone())).collect())
                .unwrap();
        }
        run.finish().unwrap();
        // The checkpoint follows the commit that passes 32 MB: the log is at
        // most that and one group of queued calls.
        let log = std::fs::metadata(dir.path().join("state.db-wal")).unwrap().len();
        assert!(log < 48 << 20, "the WAL grew to {} MB", log >> 20);
        assert_eq!(
            KvStore::new(db.connect().unwrap(), "acme", Cipher::from_key(&[7; 32]))
                .list_keys(STATE_BUCKET, None, 20_000)
                .unwrap()
                .len(),
            240 * 50
        );
    }

    #[test]
    fn the_lease_is_in_the_database_when_its_write_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut run) = store(dir.path());
        run.set(QUEUES_BUCKET, "event/1", b"queued").unwrap();
        run.set(STATE_BUCKET, LEASE_KEY, b"mine").unwrap();
        let other = KvStore::new(db.connect().unwrap(), "acme", Cipher::from_key(&[7; 32]));
        assert_eq!(other.get(STATE_BUCKET, LEASE_KEY).unwrap(), Some(b"mine".to_vec()));
        // Written in order: what came before the lease is there too.
        assert_eq!(other.get(QUEUES_BUCKET, "event/1").unwrap(), Some(b"queued".to_vec()));
        run.delete(STATE_BUCKET, LEASE_KEY).unwrap();
        assert_eq!(other.get(STATE_BUCKET, LEASE_KEY).unwrap(), None);
    }

    #[test]
    fn a_swap_lands_only_over_the_value_it_expects_and_is_in_the_database_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut run) = store(dir.path());
        let other = KvStore::new(db.connect().unwrap(), "acme", Cipher::from_key(&[7; 32]));
        let held = || other.get(STATE_BUCKET, LEASE_KEY).unwrap();
        assert!(run.swap_if(STATE_BUCKET, LEASE_KEY, None, b"a").unwrap(), "absent, as expected");
        assert_eq!(held().as_deref(), Some(&b"a"[..]));
        assert!(!run.swap_if(STATE_BUCKET, LEASE_KEY, None, b"b").unwrap(), "no longer absent");
        assert!(!run.swap_if(STATE_BUCKET, LEASE_KEY, Some(b"x"), b"b").unwrap());
        // Another process wrote in between: a swap expecting the old value does nothing.
        other.set(STATE_BUCKET, LEASE_KEY, b"theirs").unwrap();
        assert!(!run.swap_if(STATE_BUCKET, LEASE_KEY, Some(b"a"), b"c").unwrap());
        assert_eq!(held().as_deref(), Some(&b"theirs"[..]));
        // Written in order: what was queued before the swap is there too.
        run.set(QUEUES_BUCKET, "event/1", b"queued").unwrap();
        assert!(run.swap_if(STATE_BUCKET, LEASE_KEY, Some(b"theirs"), b"c").unwrap());
        assert_eq!(held().as_deref(), Some(&b"c"[..]));
        assert_eq!(other.get(QUEUES_BUCKET, "event/1").unwrap(), Some(b"queued".to_vec()));
        assert_eq!(run.get(STATE_BUCKET, LEASE_KEY).unwrap(), Some(b"c".to_vec()));
    }

    #[test]
    fn after_a_failed_commit_nothing_later_lands_and_every_call_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut run) = store(dir.path());
        run.set(STATE_BUCKET, "cursor/a", b"1").unwrap();
        run.flush().unwrap();
        // A commit that fails: the audit table is gone.
        db.connect().unwrap().execute_batch("DROP TABLE audit").unwrap();
        run.append_audit(vec![row("1")]).unwrap();
        let _ = run.set(STATE_BUCKET, "cursor/a", b"2");
        let err = run.flush().unwrap_err().to_string();
        assert!(err.contains("saving the run's state") && err.contains("audit"), "{err}");
        assert!(run.get(STATE_BUCKET, "cursor/a").is_err());
        assert!(run.finish().is_err());
        let other = KvStore::new(db.connect().unwrap(), "acme", Cipher::from_key(&[7; 32]));
        assert_eq!(other.get(STATE_BUCKET, "cursor/a").unwrap(), Some(b"1".to_vec()));
    }
}
