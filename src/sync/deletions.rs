//! NetSuite deletions: read page by page from `deletedrecord` and applied
//! to the records the connector wrote (flagged or deleted, `delete_action`).

use super::read::{Deletions, Position};
use super::run::Run;
use super::state::{DELETED, RecordState};
use crate::model::{AuditAction, AuditEntry, RecordKind, Result};

/// Reads the deletions of `kind` to the end, applying each page before the
/// cursor moves past it.
pub(super) fn sync(
    run: &Run<'_>,
    kind: RecordKind,
    mut position: Position,
    mut stream: Deletions<'_, '_>,
) -> Result<()> {
    while let Some(page) = stream.next_page()? {
        position.read(page.next.clone(), None);
        let ids: Vec<&str> = page.ids.iter().map(String::as_str).collect();
        // Deletions of records never synced are NetSuite's everyday news.
        apply(run, kind, &ids)?;
        position.recorded(run, 1)?;
        run.renew()?;
    }
    position.settle(run)
}

/// Applies the deletion of `ids` to the records the connector wrote (to
/// the current org) and has not yet marked deleted. A record without a state
/// may still be in Salesforce (a run wrote it and was killed before
/// recording it): once writes of the kind began, such ids are looked up by
/// external id, and those found follow the deletion too; nothing is created.
/// Writes of deleted records waiting to be replayed or to follow a parent
/// are dropped, so no replay brings them back. Returns the ids that asked
/// nothing of the connector (see [`Untouched`]).
pub(super) fn apply<'i>(run: &Run<'_>, kind: RecordKind, ids: &[&'i str]) -> Result<Untouched<'i>> {
    let states = run.state.records(kind, ids)?;
    let mut recorded = Vec::with_capacity(ids.len());
    let mut unknown = Vec::new();
    let mut done = Vec::new();
    for (id, st) in ids.iter().zip(states) {
        match st {
            Some(s) if s.src == DELETED => done.push((*id, s.sf)),
            Some(s) => recorded.push((*id, s)),
            None => unknown.push(*id),
        }
    }
    // An id kept from when the mapping wrote another object (its `sobject`
    // changed since) names nothing in this one: the record is looked up by
    // external id like one never recorded. The other object's copy is left
    // as it is (README: changing a kind's object).
    if !recorded.is_empty() {
        let checked = run.checked(kind)?;
        let (here, elsewhere): (Vec<_>, Vec<_>) =
            recorded.into_iter().partition(|(_, s)| s.sf.as_deref().is_none_or(|sf| checked.holds(sf)));
        unknown.extend(elsewhere.into_iter().map(|(id, _)| id));
        recorded = here;
    }
    let mut pending: Vec<(String, RecordState)> = recorded.into_iter().map(|(id, s)| (id.to_string(), s)).collect();
    let mut found = Vec::new();
    if !unknown.is_empty() && run.state.writes_began(kind)? {
        let sobject = &run.settings.mapping.object(kind)?.sobject;
        for (id, sf) in run.sink.ids_by_external_id(sobject, &unknown)? {
            found.push(id.clone());
            pending.push((
                id,
                RecordState {
                    src: String::new(),
                    dst: String::new(),
                    sf: Some(sf),
                    fields: None,
                    org: None,
                    sf_deleted: false,
                },
            ));
        }
    }
    let dropped = run.queues.remove(kind, ids)?;
    run.audit(dropped.iter().map(|id| run.dropped_entry(kind, id)).collect::<Vec<_>>());
    // A Salesforce edit of the record waiting to reach NetSuite never will.
    if run.settings.writeback.is_some() {
        let linked = pending
            .iter()
            .map(|(id, s)| (id.as_str(), s.sf.as_deref()))
            .chain(done.iter().map(|(id, sf)| (*id, sf.as_deref())));
        let linked: Vec<(&str, &str)> = linked.filter_map(|(id, sf)| sf.map(|sf| (id, sf))).collect();
        let sf_ids: Vec<&str> = linked.iter().map(|(_, sf)| *sf).collect();
        let waiting = run.queues.writebacks_of(kind, &sf_ids)?;
        let gone: Vec<(&str, &str)> =
            linked.iter().zip(&waiting).filter(|(_, w)| w.is_some()).map(|(pair, _)| *pair).collect();
        run.queues.remove_writebacks(kind, &gone.iter().map(|(_, sf)| *sf).collect::<Vec<_>>())?;
        // As a write-back run audits an edit of a vendor NetSuite deleted.
        run.audit(
            gone.iter()
                .map(|(id, sf)| AuditEntry {
                    action: AuditAction::SkipDeletedInNetSuite,
                    salesforce_id: Some(sf.to_string()),
                    error: Some(
                        "the record was deleted in NetSuite while its Salesforce edit waited to be written back".into(),
                    ),
                    ..run.dropped_entry(kind, id)
                })
                .collect::<Vec<_>>(),
        );
    }
    // A record whose write waited and never reached Salesforce may have
    // children deferred until it does: never now. They are read again
    // (NetSuite no longer names it their parent) and written unlinked.
    let never_there: Vec<&str> = dropped
        .iter()
        .map(String::as_str)
        .filter(|id| unknown.contains(id) && !found.iter().any(|f| f == id))
        .collect();
    super::children::refresh(run, kind, &never_there, false, &mut |_, _| {})?;
    run.writer.delete(run, kind, pending)?;
    let unknown =
        unknown.into_iter().filter(|id| !found.iter().any(|f| f == id) && !dropped.iter().any(|d| d == id)).collect();
    Ok(Untouched { unknown, done })
}

/// Ids a deletion named that asked nothing of the connector.
pub(super) struct Untouched<'i> {
    /// No state, not found in Salesforce, nothing queued.
    pub unknown: Vec<&'i str>,
    /// Deleted already by an earlier run (flagged or deleted in
    /// Salesforce), with the Salesforce id.
    pub done: Vec<(&'i str, Option<String>)>,
}
