//! Children whose links a parent's fate in Salesforce broke. Salesforce
//! deletes an Account's Contacts along with it and clears lookups to a
//! deleted custom-object record; and a parent written anew (deleted there,
//! then reactivated in NetSuite) is a new record, which the old links do not
//! reach. So after a parent's NetSuite deletion is applied (deleted there,
//! or flagged: the flagged record stays, but NetSuite no longer has the
//! parent, so its children are unlinked now rather than at whichever later
//! read), or a parent is created where its state knew an earlier record,
//! its children — read
//! from NetSuite by the column the mapping links them with, those whose
//! Salesforce records link to it — are put in doubt and queued as change
//! events. The run applies them at its end (a
//! run stopped first leaves them queued for the next): each is read by id
//! and written as NetSuite has it now, under its parent's new record or
//! under none.

use super::in_flight::{in_doubt, relinked};
use super::queues::QueuedEvent;
use super::run::Run;
use super::state::{DELETED, RecordState, given_fields};
use crate::mapping::Link;
use crate::model::{RecordKind, Result};

/// Parents, and children, looked up at a time.
const PART: usize = 500;

/// The end of the name of the events this queues (`customer-relinked`).
const RELINKED: &str = "-relinked";

/// Whether `event` is one of this refresh's own: nothing outside asked for
/// it, so a record written since it was queued needs nothing more.
pub(super) fn is_refresh(event: &QueuedEvent) -> bool {
    event.event.ends_with(RELINKED)
}

/// Queues the children of `parents` (of kind `parent`) to be written again.
/// `deleted`: Salesforce deleted the parents (this run, under `delete`, or
/// earlier, by hand: a parent written anew); else they were flagged.
/// `gone_along` hears the children Salesforce deleted with them (an
/// Account's Contacts): those are written anew, in full.
pub(super) fn refresh(
    run: &Run<'_>,
    parent: RecordKind,
    parents: &[&str],
    deleted: bool,
    gone_along: &mut dyn FnMut(RecordKind, &[&str]),
) -> Result<()> {
    if parents.is_empty() {
        return Ok(());
    }
    let cascading = if deleted { cascading_links(run, parent)? } else { Vec::new() };
    for (kind, column) in run.settings.mapping.children_of(parent) {
        let gone = cascading.iter().any(|(k, c)| *k == kind && *c == column);
        // Still in Salesforce as last written, their writes show what
        // changed (the link); gone, everything is new.
        let doubt: fn(RecordState) -> RecordState = if gone { in_doubt } else { relinked };
        let link = run.settings.mapping.link(kind, &column, parent);
        for group in parents.chunks(PART) {
            let children = run.source.children_ids(kind, &column, group)?;
            for part in children.chunks(PART) {
                let ids: Vec<&str> = part.iter().map(String::as_str).collect();
                let states = run.state.records(kind, &ids)?;
                let reached: Vec<(&str, Option<RecordState>)> = ids
                    .iter()
                    .zip(states)
                    .filter(|(id, st)| reaches(run, (kind, id), st.as_ref(), link.as_ref(), parent, group))
                    .map(|(id, st)| (*id, st))
                    .collect();
                let ids: Vec<&str> = reached.iter().map(|(id, _)| *id).collect();
                if gone && !ids.is_empty() {
                    gone_along(kind, &ids);
                }
                // Events first: a run killed before the states are saved
                // still has them to apply.
                for id in &ids {
                    let event = QueuedEvent {
                        kind,
                        id: id.to_string(),
                        event: format!("{parent}{RELINKED}"),
                        received_at: run.host.clock.now_unix(),
                        nonce: run.host.clock.random(),
                    };
                    run.queues.put_event(&event)?;
                }
                let doubtful: Vec<(&str, RecordState)> = reached
                    .into_iter()
                    .filter_map(|(id, st)| Some((id, doubt(st.filter(|s| s.src != DELETED)?))))
                    .collect();
                if run.writer.plans() {
                    let ids: Vec<&str> = doubtful.iter().map(|(id, _)| *id).collect();
                    run.in_flight.note_doubts(kind, &ids, !gone);
                }
                run.state.save_records(kind, doubtful)?;
                run.note_queued_events();
            }
        }
    }
    Ok(())
}

/// Whether the Salesforce record of `child` links to one of `parents` (of
/// kind `parent`) through `link`: as this plan writes it, or as the run
/// that wrote it last left it. A child written already unlinked, or under
/// another parent (NetSuite's row changed, and this run or an earlier one
/// read it), lost nothing. Not known (never written, no fields kept): yes.
fn reaches(
    run: &Run<'_>,
    (kind, id): (RecordKind, &str),
    state: Option<&RecordState>,
    link: Option<&Link>,
    parent: RecordKind,
    parents: &[&str],
) -> bool {
    if let Some(links) = run.writer.planned_links(kind, id) {
        return links.iter().any(|(k, p)| *k == parent && parents.contains(&p.as_str()));
    }
    let (Some(state), Some(link)) = (state.filter(|s| s.src != DELETED), link) else { return true };
    match given_fields(state).as_ref().and_then(|fields| link.target(fields)) {
        Some(Some(to)) => parents.contains(&to),
        Some(None) => false,
        None => true,
    }
}

/// The links (child kind, NetSuite column) of `parent`'s children whose
/// Salesforce records its deletion takes along, as its describe says.
fn cascading_links(run: &Run<'_>, parent: RecordKind) -> Result<Vec<(RecordKind, String)>> {
    let cascades = run.cascades(parent)?;
    let mapping = &run.settings.mapping;
    let sobject = &mapping.object(parent)?.sobject;
    let mut links = Vec::new();
    for (kind, column) in mapping.children_of(parent) {
        let child = mapping.object(kind)?;
        let cascades_along = child.parent.iter().filter(|p| p.column == column && p.sobject == *sobject).any(|p| {
            let field = p.lookup_field();
            cascades.iter().any(|(o, f)| o.eq_ignore_ascii_case(&child.sobject) && f.eq_ignore_ascii_case(&field))
        });
        if cascades_along {
            links.push((kind, column));
        }
    }
    Ok(links)
}
