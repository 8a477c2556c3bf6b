//! Records that wait: children held back until their parents are in
//! Salesforce (written by the first run that finds them there, never
//! before), and failed writes sent again on request (replay).

use super::queues::Queue;
use super::run::{ParentRef, Run, Staged};
use super::stage;
use super::state::DELETED;
use super::write::Path;
use crate::model::{AuditAction, NetSuiteRecord, RecordKind, ReplayScope, Result};
use std::collections::{BTreeMap, HashSet};

/// Parents of each record that are not in Salesforce (per the record
/// states, or planned by this run), per record.
fn missing_parents(run: &Run<'_>, records: &[&[ParentRef]]) -> Result<Vec<Vec<ParentRef>>> {
    let mut wanted: BTreeMap<RecordKind, Vec<String>> = BTreeMap::new();
    for parents in records {
        for (kind, id) in parents.iter() {
            wanted.entry(*kind).or_default().push(id.clone());
        }
    }
    let mut present: HashSet<ParentRef> = HashSet::new();
    for (kind, mut ids) in wanted {
        ids.sort();
        ids.dedup();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        for (id, st) in ids.iter().zip(run.state.records(kind, &refs)?) {
            let parent = (kind, id.clone());
            // Deleted in Salesforce (a written-back kind): out of it while
            // NetSuite's record stays inactive, so links to it cannot land.
            let there = st.is_some_and(|s| s.sf.is_some() && s.src != DELETED && !s.sf_deleted);
            if run.writer.planned(&parent).unwrap_or(there) {
                present.insert(parent);
            }
        }
    }
    Ok(records.iter().map(|parents| parents.iter().filter(|p| !present.contains(*p)).cloned().collect()).collect())
}

/// Parents of `records` not in Salesforce, flattened.
pub(super) fn absent_parents(run: &Run<'_>, records: &[Vec<ParentRef>]) -> Result<Vec<ParentRef>> {
    let refs: Vec<&[ParentRef]> = records.iter().map(Vec::as_slice).collect();
    let mut all: Vec<ParentRef> = missing_parents(run, &refs)?.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    Ok(all)
}

/// Defers the records whose parents are missing; returns the others.
pub(super) fn hold_back_orphans(run: &Run<'_>, staged: Vec<Staged>) -> Result<Vec<Staged>> {
    if staged.iter().all(|s| s.parents.is_empty()) {
        return Ok(staged);
    }
    let parents: Vec<&[ParentRef]> = staged.iter().map(|s| s.parents.as_slice()).collect();
    let missing = missing_parents(run, &parents)?;
    let mut ready = Vec::with_capacity(staged.len());
    for (s, missing) in staged.into_iter().zip(missing) {
        if missing.is_empty() {
            ready.push(s);
        } else {
            run.writer.defer(run, &s, &missing)?;
        }
    }
    Ok(ready)
}

/// Writes the deferred records of `kind` whose parents have arrived.
pub(super) fn retry_deferred(run: &Run<'_>, kind: RecordKind) -> Result<()> {
    run.queues.keys(Queue::Deferred, kind, &mut |keys| {
        for part in keys.chunks(run.queue_part()) {
            let mut staged: Vec<Staged> = Vec::with_capacity(part.len());
            for write in run.queues.read(part)? {
                if run.queues.may_wait(kind, &write.netsuite_id)? {
                    staged.push(Staged::from(write));
                }
            }
            let parents: Vec<&[ParentRef]> = staged.iter().map(|s| s.parents.as_slice()).collect();
            let missing = missing_parents(run, &parents)?;
            let ready: Vec<Staged> =
                staged.into_iter().zip(missing).filter(|(_, m)| m.is_empty()).map(|(s, _)| s).collect();
            if ready.is_empty() {
                continue;
            }
            let mut batch = run.writer.batch(run, kind, Path::Composite, AuditAction::WriteDeferred)?;
            batch.add(run, ready)?;
            batch.finish(run)?;
        }
        Ok(())
    })
}

/// A replay of one record of a kind the mapping no longer maps is refused
/// before anything is done: its write could not be sent.
pub(super) fn refuse_unmapped(run: &Run<'_>, scope: &ReplayScope) -> Result<()> {
    match scope {
        ReplayScope::Record(kind, id) if !run.settings.mapping.maps(*kind) => {
            Err(crate::model::ConnectorError::Config(format!(
                "the mapping has no [{kind}] section, so {kind} {id} cannot be replayed: put the section back to \
                 replay it; this run did nothing and its write stays queued"
            )))
        }
        _ => Ok(()),
    }
}

/// After a replay of the mapped kinds: failed writes in its scope of kinds
/// the mapping no longer maps were left queued, which the run's error says
/// (a replay that reported nothing to do would hide them).
pub(super) fn unmapped_left(run: &Run<'_>, scope: &ReplayScope) -> Result<()> {
    // One record's replay covers nothing else (`refuse_unmapped` took the
    // case of an unmapped one).
    if let ReplayScope::Record(..) = scope {
        return Ok(());
    }
    let mapping = &run.settings.mapping;
    let mut left = Vec::new();
    for kind in RecordKind::ALL.into_iter().filter(|k| !mapping.maps(*k)) {
        for (queue, what) in [(Queue::Failed, "failed"), (Queue::Deferred, "deferred")] {
            let mut waiting = 0usize;
            run.queues.keys(queue, kind, &mut |keys| {
                waiting += match scope {
                    ReplayScope::Run(_) => run
                        .queues
                        .read(&keys)?
                        .iter()
                        .filter(|q| scope.covers(kind, &q.run_id, |id| q.netsuite_id == id))
                        .count(),
                    _ => keys.len(),
                };
                Ok(())
            })?;
            if waiting > 0 {
                left.push(format!("{waiting} {what} {kind} writes (the mapping has no [{kind}] section)"));
            }
        }
    }
    match left.is_empty() {
        true => Ok(()),
        false => Err(crate::model::ConnectorError::Config(format!(
            "not replayed, they stay queued: {}; put the section back to replay them",
            left.join(", ")
        ))),
    }
}

/// Sends failed writes again, exactly as they were; a failed record whose
/// parent is still missing is deferred instead. Then deferred records whose
/// parents are now present follow.
pub(super) fn replay(run: &Run<'_>, scope: &ReplayScope, kinds: &[RecordKind]) -> Result<()> {
    for &kind in kinds {
        let policy = run.settings.writeback.filter(|_| run.settings.mapping.writeback(kind).is_some());
        let written_back = policy.is_some();
        run.queues.keys(Queue::Failed, kind, &mut |keys| {
            for part in keys.chunks(run.queue_part()) {
                let queued: Vec<Staged> = run
                    .queues
                    .read(part)?
                    .into_iter()
                    .filter(|q| scope.covers(kind, &q.run_id, |id| q.netsuite_id == id))
                    .map(Staged::from)
                    .collect();
                // Salesforce's edits merged first, once, and only when the
                // scope holds a failed write of the kind.
                if let Some(policy) = policy
                    && !queued.is_empty()
                    && run.first_merge(kind)
                {
                    super::provenance::Provenance::check(run, kind)?;
                    super::writeback::sync(run, kind, policy)?;
                    run.checkpoint()?;
                }
                let ready = match written_back {
                    false => hold_back_orphans(run, still_in_netsuite(run, kind, queued, &[])?.0)?,
                    // Salesforce's edits since the write failed are NetSuite's
                    // now (merged first): the record is written as NetSuite has
                    // it, not as recorded, so a merged edit is not overwritten.
                    true => {
                        let columns = run.settings.mapping.columns(kind);
                        let (_, records) = still_in_netsuite(run, kind, queued, &columns)?;
                        hold_back_orphans(
                            run,
                            stage::stage(run, kind, &records, stage::Rows::All { live: run.request.compare_live })?,
                        )?
                    }
                };
                if !ready.is_empty() {
                    let mut batch = run.writer.batch(run, kind, Path::Composite, AuditAction::Replay)?;
                    batch.add(run, ready)?;
                    batch.finish(run)?;
                }
            }
            Ok(())
        })?;
    }
    for &kind in kinds {
        retry_deferred(run, kind)?;
    }
    Ok(())
}

/// The failed writes whose records NetSuite still has, with those records
/// (read with `columns`). A record deleted since its write failed is
/// dropped from the queue (audited) instead of being brought back to life
/// by the replay.
fn still_in_netsuite(
    run: &Run<'_>,
    kind: RecordKind,
    queued: Vec<Staged>,
    columns: &[String],
) -> Result<(Vec<Staged>, Vec<NetSuiteRecord>)> {
    if queued.is_empty() {
        return Ok((queued, Vec::new()));
    }
    let ids: Vec<&str> = queued.iter().map(|s| s.mapped.source_id.as_str()).collect();
    let records = run.source.fetch_many(kind, &ids, columns)?;
    let present: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let (live, gone): (Vec<Staged>, Vec<Staged>) =
        queued.into_iter().partition(|s| present.contains(s.mapped.source_id.as_str()));
    let gone: Vec<&str> = gone.iter().map(|s| s.mapped.source_id.as_str()).collect();
    let dropped = run.queues.remove(kind, &gone)?;
    run.audit(dropped.iter().map(|id| run.dropped_entry(kind, id)).collect::<Vec<_>>());
    Ok((live, records))
}
