//! Children whose links a parent's fate in Salesforce broke. Salesforce
//! deletes an Account's Contacts along with it and clears lookups to a
//! deleted custom-object record; and a parent written anew (deleted there,
//! then reactivated in NetSuite) is a new record, which the old links do not
//! reach. So after a parent's NetSuite deletion is applied (deleted there,
//! or flagged: the flagged record stays, but NetSuite no longer has the
//! parent, so its children are unlinked now rather than at whichever later
//! read), or a parent is created where its state knew an earlier record,
//! its children — read
//! from NetSuite by the column the mapping links them with — are put in
//! doubt and queued as change events. The run applies them at its end (a
//! run stopped first leaves them queued for the next): each is read by id
//! and written as NetSuite has it now, under its parent's new record or
//! under none.

use super::in_flight::{in_doubt, relinked};
use super::queues::QueuedEvent;
use super::run::Run;
use super::state::{DELETED, RecordState};
use crate::model::{RecordKind, Result};

/// Parents, and children, looked up at a time.
const PART: usize = 500;

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
        for group in parents.chunks(PART) {
            let children = run.source.children_ids(kind, &column, group)?;
            for part in children.chunks(PART) {
                let ids: Vec<&str> = part.iter().map(String::as_str).collect();
                if gone {
                    gone_along(kind, &ids);
                }
                let states = run.state.records(kind, &ids)?;
                let doubtful: Vec<(&str, RecordState)> = ids
                    .iter()
                    .zip(states)
                    .filter_map(|(id, st)| Some((*id, st.filter(|s| s.src != DELETED)?)))
                    .map(|(id, st)| (id, doubt(st)))
                    .collect();
                // Events first: a run killed before the states are saved
                // still has them to apply.
                for id in part {
                    let event = QueuedEvent {
                        kind,
                        id: id.clone(),
                        event: format!("{parent}-relinked"),
                        received_at: run.host.clock.now_unix(),
                        nonce: run.host.clock.random(),
                    };
                    run.queues.put_event(&event)?;
                }
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
