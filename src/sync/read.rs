//! Reading NetSuite's change and deletion streams a page at a time: where a
//! stream starts (the stored cursor, rewound by the overlap window unless
//! settled), the next page requested while this one is written, and the
//! cursor moved forward only over pages whose records are recorded.

use super::run::Run;
use super::state::{StoredCursor, is_after};
use crate::model::{Cursor, Page, RecordKind, Result};
use crate::netsuite::{DeletedPage, PendingDeleted, PendingPage, suiteql};
use std::collections::VecDeque;

/// One stream's position: the stored cursor, and where this run reads from.
pub(super) struct Position {
    kind: RecordKind,
    deleted: bool,
    stored: Option<StoredCursor>,
    /// Cursors after the pages read and not yet recorded, oldest first.
    unrecorded: VecDeque<Option<Cursor>>,
    started_at: i64,
}

impl Position {
    /// Where the stream of `kind` (its deletions when `deleted`) starts. An
    /// unsettled cursor is rewound by the overlap window to catch rows
    /// committed late with an earlier lastmodifieddate (record states drop
    /// what was handled); `full` starts at the beginning.
    pub fn start(run: &Run<'_>, kind: RecordKind, deleted: bool, full: bool) -> Result<(Position, Option<Cursor>)> {
        let stored = run.state.cursor(kind, deleted)?;
        let start = match &stored {
            _ if full => None,
            None => None,
            Some(s) if s.settled => Some(s.cursor.clone()),
            Some(s) => Some(suiteql::rewind(&s.cursor, run.settings.netsuite.overlap_secs)?),
        };
        let position =
            Position { kind, deleted, stored, unrecorded: VecDeque::new(), started_at: run.host.clock.now_unix() };
        Ok((position, start))
    }

    /// A page was read; its records are on their way.
    pub fn read(&mut self, next: Option<Cursor>) {
        self.unrecorded.push_back(next);
    }

    /// The oldest `pages` pages read are recorded: move the stored cursor
    /// past them (forward only: re-read pages end behind it).
    pub fn recorded(&mut self, run: &Run<'_>, pages: usize) -> Result<()> {
        let mut last = None;
        for _ in 0..pages {
            if let Some(Some(c)) = self.unrecorded.pop_front() {
                last = Some(c);
            }
        }
        let Some(next) = last else { return Ok(()) };
        if self.stored.as_ref().is_none_or(|s| is_after(&next, &s.cursor)) {
            let moved = StoredCursor { cursor: next, moved_at: run.host.clock.now_unix(), settled: false };
            run.state.save_cursor(self.kind, self.deleted, &moved)?;
            self.stored = Some(moved);
        }
        Ok(())
    }

    /// The stream was read to its end. Once a run that started more than
    /// the overlap window after the cursor last moved has re-read that
    /// window, no late commit can still land in it: later runs start at the
    /// cursor itself.
    pub fn settle(self, run: &Run<'_>) -> Result<()> {
        let window = i64::from(run.settings.netsuite.overlap_secs);
        if let Some(mut s) = self.stored.filter(|s| !s.settled && self.started_at > s.moved_at + window) {
            s.settled = true;
            run.state.save_cursor(self.kind, self.deleted, &s)?;
        }
        Ok(())
    }
}

/// Pages of changed records, the next one requested as soon as one arrives.
pub(super) struct Changes<'r, 'a> {
    run: &'r Run<'a>,
    kind: RecordKind,
    columns: Vec<String>,
    pending: Option<PendingPage<'r, 'a>>,
}

impl<'r, 'a> Changes<'r, 'a> {
    pub fn open(run: &'r Run<'a>, kind: RecordKind, after: Option<&Cursor>) -> Result<Self> {
        let columns = run.settings.mapping.columns(kind);
        let pending = Some(run.source.begin_changed(kind, after, &columns)?);
        Ok(Changes { run, kind, columns, pending })
    }

    /// The next page, or None after the last. The page after it is already
    /// on its way: it travels while this one is written.
    pub fn next_page(&mut self) -> Result<Option<Page>> {
        let Some(pending) = self.pending.take() else { return Ok(None) };
        let page = pending.finish()?;
        if page.has_more && !page.records.is_empty() {
            self.pending = Some(self.run.source.begin_changed(self.kind, page.next.as_ref(), &self.columns)?);
        }
        Ok(Some(page))
    }
}

/// Pages of deleted record ids.
pub(super) struct Deletions<'r, 'a> {
    run: &'r Run<'a>,
    kind: RecordKind,
    pending: Option<PendingDeleted<'r, 'a>>,
    after: Option<Cursor>,
    done: bool,
}

impl<'r, 'a> Deletions<'r, 'a> {
    /// Opens the stream; with room for two NetSuite requests, its first page
    /// is requested now and travels alongside the changes.
    pub fn open(run: &'r Run<'a>, kind: RecordKind, after: Option<Cursor>) -> Result<Self> {
        let pending = if run.settings.netsuite.max_in_flight >= 2 {
            Some(run.source.begin_deleted(kind, after.as_ref())?)
        } else {
            None
        };
        Ok(Deletions { run, kind, pending, after, done: false })
    }

    pub fn next_page(&mut self) -> Result<Option<DeletedPage>> {
        if self.done {
            return Ok(None);
        }
        let page = match self.pending.take() {
            Some(pending) => pending.finish()?,
            None => self.run.source.fetch_deleted(self.kind, self.after.as_ref())?,
        };
        if page.next.is_some() {
            self.after = page.next.clone();
        }
        self.done = !page.has_more || page.ids.is_empty();
        Ok(Some(page))
    }
}
