//! Applying queued NetSuite change events: the named records are read by
//! id (with parents Salesforce lacks), written parents first, and records
//! NetSuite no longer has get the deletion; then the events are cleared.

use super::deferral::absent_parents;
use super::provenance::Provenance;
use super::queues::QueuedEvent;
use super::run::Run;
use super::write::Path;
use super::{deletions, parents_first, stage, writeback};
use crate::model::{AuditAction, NetSuiteRecord, RecordKind, Result};
use std::collections::{BTreeMap, HashSet};

/// Which events a pass over the queue applies. Every kind's writes come
/// before any kind's deletions (children first), as in a scheduled run: a
/// contact moved away from a company NetSuite then deleted reaches its new
/// Account before Salesforce's cascade (an Account takes its Contacts
/// along) could take it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// Records NetSuite has are written; events of records gone stay queued.
    Writes,
    /// Everything still queued, deletions included.
    Deletions,
}

pub(super) fn apply(run: &Run<'_>, events: Vec<QueuedEvent>, pass: Pass) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mapping = &run.settings.mapping;
    let mut wanted: BTreeMap<RecordKind, Vec<String>> = BTreeMap::new();
    for e in &events {
        let ids = wanted.entry(e.kind).or_default();
        if !ids.contains(&e.id) {
            ids.push(e.id.clone());
        }
    }
    // A kind written back takes Salesforce's edits and deletions first, as
    // a scheduled run does (see `changes_of`): the records read below are then
    // NetSuite's merged ones, and one deleted in Salesforce stays out.
    // Deletions Salesforce refused (a replay applies them alone) read no
    // NetSuite record: nothing to merge first.
    let only_deletions = events.iter().all(super::write::is_refused_deletion);
    if let Some(policy) = run.settings.writeback.filter(|_| !only_deletions) {
        for &kind in wanted.keys() {
            if mapping.writeback(kind).is_some() && run.first_merge(kind) {
                Provenance::check(run, kind)?;
                writeback::sync(run, kind, policy)?;
                run.checkpoint()?;
            }
        }
    }
    // Children first (reverse of parents-first), to learn which parents
    // must come along; a parent kind already read is read again for them.
    let mut order: Vec<RecordKind> = wanted.keys().copied().collect();
    parents_first(&mut order);
    let mut fetched: BTreeMap<RecordKind, Vec<NetSuiteRecord>> = BTreeMap::new();
    for kind in order.iter().rev().copied() {
        let ids: Vec<&str> = wanted[&kind].iter().map(String::as_str).collect();
        let records = run.source.fetch_many(kind, &ids, &mapping.columns(kind))?;
        let parents: Vec<_> = records.iter().map(|r| mapping.parents(r)).collect();
        for (parent_kind, id) in absent_parents(run, &parents)? {
            let list = wanted.entry(parent_kind).or_default();
            if !list.contains(&id) {
                list.push(id);
                fetched.remove(&parent_kind);
            }
        }
        fetched.insert(kind, records);
    }
    let mut order: Vec<RecordKind> = wanted.keys().copied().collect();
    parents_first(&mut order);
    let mut kept: Vec<&QueuedEvent> = Vec::new();
    for kind in order {
        let ids = &wanted[&kind];
        let records = match fetched.remove(&kind) {
            Some(r) => r,
            None => {
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                run.source.fetch_many(kind, &refs, &mapping.columns(kind))?
            }
        };
        // What these writes follow is noted as a scheduled run notes it, so a
        // mapping changed before the first such run still reaches them.
        Provenance::check(run, kind)?;
        // Records only a refresh of children named (see `children`) need
        // nothing once written since: handled, they are dropped unnoticed,
        // as a scheduled read drops rows it read before. Records an event
        // from NetSuite named leave a row either way.
        let refreshed: HashSet<&str> =
            events.iter().filter(|e| e.kind == kind && super::children::is_refresh(e)).map(|e| e.id.as_str()).collect();
        let (refreshed, named): (Vec<NetSuiteRecord>, Vec<NetSuiteRecord>) =
            records.into_iter().partition(|r| refreshed.contains(r.id.as_str()));
        let mut staged = stage::stage(run, kind, &named, stage::Rows::Named)?;
        staged.extend(stage::stage(run, kind, &refreshed, stage::Rows::Refreshed)?);
        let records: Vec<NetSuiteRecord> = named.into_iter().chain(refreshed).collect();
        let ready = super::deferral::hold_back_orphans(run, staged)?;
        let mut batch = run.writer.batch(run, kind, Path::Composite, AuditAction::WriteEvent)?;
        batch.add(run, ready)?;
        batch.finish(run)?;
        run.renew()?;
        // Named by an event but gone from NetSuite: deleted, or left queued
        // for the pass that deletes (see `Pass`).
        let present: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let gone: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !present.contains(id)).collect();
        match pass {
            Pass::Deletions => {
                // An event leaves a row even when it names nothing to do.
                let nothing = deletions::apply(run, kind, &gone)?;
                // Only records an event named: not parents the pass added.
                let named = |id: &&str| events.iter().any(|e| e.kind == kind && e.id == *id);
                let never =
                    nothing.unknown.iter().filter(|id| named(id)).map(|id| run.nothing_to_do_entry(kind, id, None));
                let done = (nothing.done.iter().filter(|(id, _)| named(id)))
                    .map(|(id, sf)| run.nothing_to_do_entry(kind, id, Some(sf.as_deref())));
                run.audit(never.chain(done).collect::<Vec<_>>());
            }
            Pass::Writes => kept.extend(events.iter().filter(|e| e.kind == kind && gone.contains(&e.id.as_str()))),
        }
    }
    let applied: Vec<QueuedEvent> = events.iter().filter(|e| !kept.contains(e)).cloned().collect();
    run.queues.remove_events(&applied)
}
