//! NetSuite deletions: read page by page from `deletedrecord` and applied
//! to the records the connector wrote (flagged or deleted, `delete_action`).

use super::read::{Deletions, Position};
use super::run::Run;
use super::state::{DELETED, RecordState};
use crate::model::{RecordKind, Result};

/// Reads the deletions of `kind` to the end, applying each page before the
/// cursor moves past it.
pub(super) fn sync(
    run: &Run<'_>,
    kind: RecordKind,
    mut position: Position,
    mut stream: Deletions<'_, '_>,
) -> Result<()> {
    while let Some(page) = stream.next_page()? {
        position.read(page.next.clone());
        let ids: Vec<&str> = page.ids.iter().map(String::as_str).collect();
        apply(run, kind, &ids)?;
        position.recorded(run, 1)?;
        run.renew()?;
    }
    position.settle(run)
}

/// Applies the deletion of `ids` to those the connector wrote (to the
/// current org) and has not yet marked deleted.
pub(super) fn apply(run: &Run<'_>, kind: RecordKind, ids: &[&str]) -> Result<()> {
    let states = run.state.records(kind, ids)?;
    let pending: Vec<(String, RecordState)> = ids
        .iter()
        .zip(states)
        .filter_map(|(id, st)| st.filter(|s| s.src != DELETED).map(|s| (id.to_string(), s)))
        .collect();
    run.writer.delete(run, kind, pending)
}
