//! Reading NetSuite's change and deletion streams a page at a time: where a
//! stream starts (the stored cursor, rewound by the overlap window unless
//! settled), the next page requested while this one is written, and the
//! cursor moved forward only over pages whose records are recorded.

use super::run::Run;
use super::scan_ranges::ScanRanges;
use super::state::{IdScan, OpenRange, Recheck, StoredCursor, is_after};
use crate::model::{Cursor, Page, RecordKind, Result};
use crate::netsuite::{DeletedPage, PendingDeleted, PendingHighest, PendingPage, suiteql};
use std::collections::VecDeque;

/// Host seconds from a scan's start after which the second of NetSuite's
/// newest change, asked then, can take no more saves: it was at most the
/// current second when asked, and whole seconds on both clocks leave one more
/// of margin. Only a late commit lands in it after that (see [`Recheck`]).
const SECOND_OVER_AFTER: i64 = 3;

/// Where a stream's read begins.
pub(super) enum Start {
    /// Rows changed after the cursor (every row when None), oldest first.
    After(Option<Cursor>),
    /// Every row after this internal id (from the first when None), in id
    /// order: how a kind is read in full (a first sync), in the order the
    /// account stores its rows rather than one random seek per row by time.
    /// A stopped scan goes on in the ranges it left open, when it stored
    /// them.
    Scan(Option<String>, ScanPoint),
}

/// What a stream's read must reach this run.
#[derive(Clone, Copy)]
pub(super) enum Reach<'p> {
    /// Rows changed since the cursor. A read of every row a run left
    /// unfinished goes on as it began.
    Changed,
    /// Every row, for records to follow `provenance` (see `Provenance`),
    /// each compared with its live Salesforce copy when `live`. `anew`: from
    /// the first row (`--full`); else a read of every row for the same
    /// provenance that a run left unfinished goes on.
    Every { provenance: &'p str, live: bool, anew: bool },
}

/// Where a scan's ranges stand: those still to read, and the highest id
/// NetSuite knew when it split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ScanPoint {
    pub open: Vec<OpenRange>,
    pub highest: Option<u64>,
}

/// One stream's position: the stored cursor, and where this run reads from.
pub(super) struct Position {
    kind: RecordKind,
    deleted: bool,
    stored: Option<StoredCursor>,
    /// While the kind is read by id: the scan as stored (where its change
    /// stream goes on once every row is recorded, when it began, what it
    /// reads for), its ranges filled in as pages are recorded.
    scan: Option<IdScan>,
    /// Every row read counts, not only changed ones; Some(true): each is
    /// compared with its live Salesforce copy too.
    every: Option<bool>,
    /// Cursors after the pages read and not yet recorded, oldest first,
    /// with where a scan's ranges stood then.
    unrecorded: VecDeque<(Option<Cursor>, Option<ScanPoint>)>,
    started_at: i64,
    /// This run re-reads a first sync's hand-over window (see [`Recheck`]).
    rechecking: bool,
}

impl Position {
    /// Where the stream of `kind` (its deletions when `deleted`) starts. An
    /// unsettled cursor is rewound by the overlap window to catch rows
    /// committed late with an earlier lastmodifieddate (record states drop
    /// what was handled), though not behind a hand-over whose window is still
    /// to be re-read ([`Recheck`]); a run starting after that is due reads it.
    /// Reading every row starts at the beginning. A kind read from the
    /// beginning is scanned by id, and a scan a run left unfinished goes on
    /// (see [`Reach`]); deletions are read by time only.
    pub fn start(run: &Run<'_>, kind: RecordKind, deleted: bool, reach: Reach<'_>) -> Result<(Position, Start)> {
        let mut stored = run.state.cursor(kind, deleted)?;
        if let Some(s) = &mut stored {
            run.zone().align(s)?;
        }
        let started_at = run.host.clock.now_unix();
        let window = run.settings.netsuite.overlap_secs;
        let (every, live) = match reach {
            Reach::Changed => (None, run.request.compare_live),
            Reach::Every { provenance, live, .. } => (Some(provenance), live),
        };
        let goes_on = |scan: &IdScan| match reach {
            Reach::Changed => true,
            Reach::Every { provenance, anew, .. } => !anew && scan.every.as_deref() == Some(provenance),
        };
        // No cursor yet, or one naming a scan: the stream has not been read through.
        let from_start = every.is_some() || stored.as_ref().is_none_or(|s| s.scan.is_some());
        let (start, scan) = match &stored {
            // A scan a run left unfinished goes on, as it began (a first
            // sync, or a read of every row for the records' provenance then).
            Some(StoredCursor { scan: Some(scan), .. }) if goes_on(scan) => {
                let point = ScanPoint { open: scan.open.clone(), highest: scan.highest };
                (Start::Scan(Some(scan.after.clone()), point), Some(scan.clone()))
            }
            // Deletions are keyed by time alone.
            _ if from_start && deleted => (Start::After(None), None),
            Some(s) if !from_start && s.settled => (Start::After(Some(s.cursor.clone())), None),
            Some(s) if !from_start => {
                let mut from = suiteql::rewind(&s.cursor, window)?;
                if let Some(r) = &s.recheck {
                    let floor = suiteql::past_second(&r.from)?;
                    if is_after(&floor, &from) {
                        from = floor;
                    }
                }
                (Start::After(Some(from)), None)
            }
            // Timed once the answer is in: the newest change's second is at most
            // NetSuite's current one by then.
            _ => {
                let then = Self::newest(run, kind)?;
                let scan = IdScan {
                    after: "0".into(),
                    then,
                    began_at: run.host.clock.now_unix(),
                    open: vec![],
                    highest: None,
                    every: every.map(str::to_string),
                    live: live && every.is_some(),
                };
                (Start::Scan(None, ScanPoint::default()), Some(scan))
            }
        };
        // Read from the start over a cursor that stays (`--full`, a changed
        // mapping): the scan is stored as begun, or a run stopped before its
        // first page is recorded (Bulk pages wait for their job's results)
        // leaves the old cursor, and the next run reads on from it as if
        // everything had been read again.
        let begun = match (&start, &scan, &stored) {
            (Start::Scan(None, _), Some(scan), Some(_)) => Some(StoredCursor {
                cursor: Cursor { last_modified: suiteql::EPOCH.into(), id: "0".into() },
                moved_at: scan.began_at,
                settled: true,
                scan: Some(scan.clone()),
                recheck: None,
                zone: run.zone().of_new_cursors(),
            }),
            _ => None,
        };
        if let Some(begun) = begun {
            run.state.save_cursor(kind, deleted, &begun)?;
            stored = Some(begun);
        }
        // Compared live as the read began, or as this run asks (not kept
        // for the runs after it).
        let every = scan.as_ref().filter(|s| s.every.is_some()).map(|s| s.live || live);
        // A hand-over window due for its re-read: from its start, if earlier.
        let due = stored.as_ref().and_then(|s| s.recheck.as_ref()).filter(|r| started_at > r.due);
        let (start, rechecking) = match (start, due) {
            (Start::After(after), Some(r)) => {
                let window = suiteql::rewind(&r.from, window)?;
                let earlier = match after {
                    Some(after) if !is_after(&after, &window) => after,
                    _ => window,
                };
                (Start::After(Some(earlier)), true)
            }
            (start, _) => (start, false),
        };
        let position =
            Position { kind, deleted, stored, scan, every, unrecorded: VecDeque::new(), started_at, rechecking };
        Ok((position, start))
    }

    /// Whether every row read counts (not only changed ones), and whether
    /// each is compared with its live Salesforce copy: Some(live) while
    /// every row is read again for the records' provenance.
    pub fn every(&self) -> Option<bool> {
        self.every
    }

    /// Where the change stream is to go on after a scan that begins now:
    /// asked before the scan's first page, so any row changed after it
    /// carries a later time, whether the scan passed it already or not.
    fn newest(run: &Run<'_>, kind: RecordKind) -> Result<Option<Cursor>> {
        Ok(run.source.newest_change(kind)?.map(|time| Cursor { last_modified: time, id: "0".into() }))
    }

    /// A page was read; its records are on their way. `point`: where the
    /// scan's ranges stand with it read.
    pub fn read(&mut self, next: Option<Cursor>, point: Option<ScanPoint>) {
        self.unrecorded.push_back((next, point));
    }

    /// The oldest `pages` pages read are recorded: move the stored cursor
    /// past them (forward only: re-read pages end behind it).
    pub fn recorded(&mut self, run: &Run<'_>, pages: usize) -> Result<()> {
        let mut last = None;
        for _ in 0..pages {
            if let Some((Some(c), point)) = self.unrecorded.pop_front() {
                last = Some((c, point));
            }
        }
        let Some((next, point)) = last else { return Ok(()) };
        let now = run.host.clock.now_unix();
        if let Some(scan) = &self.scan {
            // The epoch, settled: a build without scans reads from the start.
            let moved = StoredCursor {
                cursor: Cursor { last_modified: suiteql::EPOCH.into(), id: "0".into() },
                moved_at: now,
                settled: true,
                scan: Some(IdScan {
                    after: next.id,
                    open: point.as_ref().map(|p| p.open.clone()).unwrap_or_default(),
                    highest: point.and_then(|p| p.highest),
                    ..scan.clone()
                }),
                recheck: None,
                zone: run.zone().of_new_cursors(),
            };
            run.state.save_cursor(self.kind, self.deleted, &moved)?;
            self.stored = Some(moved);
        } else if self.stored.as_ref().is_none_or(|s| is_after(&next, &s.cursor)) {
            let recheck = self.stored.as_ref().and_then(|s| s.recheck.clone());
            let zone = run.zone().of_new_cursors();
            let moved = StoredCursor { cursor: next, moved_at: now, settled: false, scan: None, recheck, zone };
            run.state.save_cursor(self.kind, self.deleted, &moved)?;
            self.stored = Some(moved);
        }
        Ok(())
    }

    /// The stream was read to its end. A scan with every page recorded
    /// hands over to the change stream where changes stood when it began.
    /// After a short scan that second may still take saves: the change
    /// stream goes on at its start, unsettled, and the next runs re-read the
    /// overlap window before it. After a longer one the second is over: the
    /// stream goes on past it, and the window is re-read once, by the first
    /// run starting more than the overlap window later ([`Recheck`]), so a
    /// kind bulk-imported in one second is not read whole again by every run
    /// until then. Once a run that started more than the overlap window after
    /// the cursor last moved has re-read that window, no late commit can
    /// still land in it: later runs start at the cursor itself.
    pub fn settle(self, run: &Run<'_>) -> Result<()> {
        let window = i64::from(run.settings.netsuite.overlap_secs);
        if let Some(IdScan { then, began_at, .. }) = self.scan {
            // Unrecorded pages are read again: the scan goes on next run.
            if !self.unrecorded.is_empty() {
                return Ok(());
            }
            let now = run.host.clock.now_unix();
            let zone = run.zone().of_new_cursors();
            let handed = match then {
                Some(then) if now - began_at >= SECOND_OVER_AFTER => StoredCursor {
                    cursor: suiteql::past_second(&then)?,
                    moved_at: now,
                    settled: true,
                    scan: None,
                    recheck: Some(Recheck { from: then, due: now + window }),
                    zone,
                },
                Some(then) => {
                    StoredCursor { cursor: then, moved_at: now, settled: false, scan: None, recheck: None, zone }
                }
                // A kind that had no rows goes on from the epoch (nothing
                // before it), so its idle runs cost one request, not a
                // newest-change query and a scan each.
                None => StoredCursor {
                    cursor: Cursor { last_modified: suiteql::EPOCH.into(), id: "0".into() },
                    moved_at: now,
                    settled: true,
                    scan: None,
                    recheck: None,
                    zone,
                },
            };
            return run.state.save_cursor(self.kind, self.deleted, &handed);
        }
        let Some(mut s) = self.stored else { return Ok(()) };
        let mut changed = false;
        if self.rechecking {
            s.recheck = None;
            changed = true;
        }
        if !s.settled && self.started_at > s.moved_at + window {
            s.settled = true;
            changed = true;
        }
        if changed {
            run.state.save_cursor(self.kind, self.deleted, &s)?;
        }
        Ok(())
    }
}

/// Pages of changed records, the next one requested as soon as one arrives.
/// A scan by internal id with pages left after its first is split into up
/// to `netsuite_max_in_flight - 1` ranges (one request stays for the
/// deletions) whose pages travel side by side; a range that ends hands its
/// request to a half of the fullest one still read. Pages come out in the
/// order they were asked for.
pub(super) struct Changes<'r, 'a> {
    run: &'r Run<'a>,
    kind: RecordKind,
    columns: Vec<String>,
    /// A scan's ranges; None: changes after a cursor, a page at a time.
    ranges: Option<ScanRanges>,
    /// Pages under way, oldest first, with their range's key.
    pending: VecDeque<(usize, PendingPage<'r, 'a>)>,
    /// The highest id, asked once the scan's first page showed pages left,
    /// with how many ways to split: it travels while that page is written.
    highest: Option<(PendingHighest<'r, 'a>, usize)>,
    /// The scan's first page is in (or it goes on from stored ranges).
    started: bool,
}

impl<'r, 'a> Changes<'r, 'a> {
    pub fn open(run: &'r Run<'a>, kind: RecordKind, start: Start) -> Result<Self> {
        let columns = run.settings.mapping.columns(kind);
        let mut changes =
            Changes { run, kind, columns, ranges: None, pending: VecDeque::new(), highest: None, started: false };
        match start {
            Start::After(after) => {
                let first = run.source.begin_changed(kind, after.as_ref(), &changes.columns)?;
                changes.pending.push_back((0, first));
            }
            Start::Scan(_, point) if !point.open.is_empty() => {
                changes.ranges = Some(ScanRanges::resume(&point.open, point.highest));
                changes.started = true;
                changes.fill()?;
            }
            Start::Scan(after, _) => {
                let after = after.as_deref().map(suiteql::internal_id).transpose()?.unwrap_or(0);
                changes.ranges = Some(ScanRanges::new(after));
                changes.begin_range(0)?;
            }
        }
        Ok(changes)
    }

    /// Ranges a scan may read side by side.
    fn ways(&self) -> usize {
        self.run.settings.netsuite.max_in_flight.saturating_sub(1).max(1) as usize
    }

    fn begin_range(&mut self, key: usize) -> Result<()> {
        let Some(ranges) = self.ranges.as_mut() else { return Ok(()) };
        let Some((after, upto)) = ranges.begin(key) else {
            return Err(crate::model::ConnectorError::NetSuite(format!(
                "the scan of {} records lost track of one of its ranges; the next run goes on where every id \
                 before is recorded",
                self.kind
            )));
        };
        let pending = self.run.source.begin_scan(self.kind, after, upto, &self.columns)?;
        self.pending.push_back((key, pending));
        Ok(())
    }

    /// Asks a page of each range that may be read now (waiting ones, or
    /// halves split off the fullest), up to the requests there are.
    fn fill(&mut self) -> Result<()> {
        let (ways, rows_per_page) = (self.ways(), self.run.source.rows_per_page(self.kind));
        let keys = self.ranges.as_mut().map(|r| r.ranges_to_read(ways, rows_per_page)).unwrap_or_default();
        keys.into_iter().try_for_each(|key| self.begin_range(key))
    }

    /// Where the scan's ranges stand with the pages given out so far read
    /// (None: not a scan); stored with the page last given out once it is
    /// recorded.
    pub fn scan_point(&self) -> Option<ScanPoint> {
        self.ranges.as_ref().map(|r| ScanPoint { open: r.open(), highest: r.highest() })
    }

    /// Splits the scan by the highest id asked after its first page, and
    /// sends the ranges' first pages. Without an answer (only a quicker read
    /// is at stake, so its error ends nothing) the split goes by the rows
    /// NetSuite counted left at the density of the first page.
    fn split(&mut self) -> Result<()> {
        let Some((highest, ways)) = self.highest.take() else { return Ok(()) };
        let split = match (highest.finish(), self.ranges.as_mut()) {
            (Ok(Some(highest)), Some(ranges)) => ranges.split(ways, highest),
            _ => return self.fill(),
        };
        self.begin_range(0)?;
        split.into_iter().try_for_each(|key| self.begin_range(key))
    }

    /// The next page, or None after the last. The page after it is already
    /// on its way: it travels while this one is written.
    pub fn next_page(&mut self) -> Result<Option<Page>> {
        self.split()?;
        loop {
            let Some((key, pending)) = self.pending.pop_front() else { return Ok(None) };
            let mut page = pending.finish()?;
            let (ways, rows_per_page) = (self.ways(), self.run.source.rows_per_page(self.kind) as u64);
            let Some(ranges) = self.ranges.as_mut() else {
                if page.has_more && !page.records.is_empty() {
                    let next = self.run.source.begin_changed(self.kind, page.next.as_ref(), &self.columns)?;
                    self.pending.push_back((0, next));
                }
                return Ok(Some(page));
            };
            // If the range was split while this page travelled, rows past
            // its new end are the new range's, read there (rows past it mean
            // every id up to it is in this page). The same pass finds the
            // highest id kept; quarantined rows count: the range goes on
            // after them.
            let (upto, before) = (ranges.upto(key), page.records.len() + page.problems.len());
            let mut last = None;
            let mut keep = |id: &str| match suiteql::internal_id(id) {
                Ok(id) if upto.is_some_and(|upto| id > upto) => false,
                Ok(id) => {
                    last = last.max(Some(id));
                    true
                }
                Err(_) => true,
            };
            page.records.retain(|r| keep(&r.id));
            page.problems.retain(|p| p.id.is_empty() || keep(&p.id));
            let past_end = page.records.len() + page.problems.len() < before;
            if page.has_more && !past_end && last.is_none() {
                // Without an id the range cannot go on, and ending it would skip its rest.
                return Err(crate::model::ConnectorError::NetSuite(format!(
                    "a SuiteQL page of {} records came without a readable internal id while NetSuite said more \
                     rows follow; the scan stops here, where the next run goes on",
                    self.kind
                )));
            }
            let more = page.has_more && !past_end;
            let read = page.records.len() + page.problems.len();
            ranges.read(key, read, last, more, page.total.map(u64::from));
            if more {
                // After the first page: as many ways as there are requests
                // to spare, no more than the pages NetSuite counts left.
                let pages_left = page
                    .total
                    .map_or(u64::MAX, |t| u64::from(t).saturating_sub(read as u64).div_ceil(rows_per_page.max(1)));
                let ways = (ways as u64).min(pages_left) as usize;
                if !self.started && ways > 1 {
                    self.highest = Some((self.run.source.begin_highest_id(self.kind)?, ways));
                } else {
                    self.begin_range(key)?;
                }
            } else if self.started {
                // Its request goes to a range waiting, or to half of the fullest.
                self.fill()?;
            }
            self.started = true;
            // Where the scan goes on once this page and those before it are recorded.
            let covered = self.ranges.as_ref().map_or(0, ScanRanges::covered);
            page.next = Some(Cursor { last_modified: suiteql::EPOCH.into(), id: covered.to_string() });
            if page.records.is_empty() && page.problems.is_empty() {
                continue;
            }
            return Ok(Some(page));
        }
    }
}

/// Pages of deleted record ids.
pub(super) struct Deletions<'r, 'a> {
    run: &'r Run<'a>,
    kind: RecordKind,
    pending: Option<PendingDeleted<'r, 'a>>,
    /// The first page, answered and kept (see [`Deletions::receive_first`]).
    received: Option<DeletedPage>,
    after: Option<Cursor>,
    done: bool,
}

impl<'r, 'a> Deletions<'r, 'a> {
    /// Opens the stream; with room for two NetSuite requests, its first page
    /// is requested now and travels alongside the changes.
    pub fn open(run: &'r Run<'a>, kind: RecordKind, start: Start) -> Result<Self> {
        // Deletions are keyed by time alone: a start "from the first" is the epoch.
        let after = match start {
            Start::After(after) => after,
            Start::Scan(..) => None,
        };
        let pending = if run.settings.netsuite.max_in_flight >= 2 {
            Some(run.source.begin_deleted(kind, after.as_ref())?)
        } else {
            None
        };
        Ok(Deletions { run, kind, pending, received: None, after, done: false })
    }

    /// Takes in the first page's answer now and keeps it (one page of ids):
    /// the stream is read after every kind's changes, and a request left
    /// pending that long would hold one of NetSuite's in-flight slots.
    pub fn receive_first(&mut self) -> Result<()> {
        if let Some(pending) = self.pending.take() {
            self.received = Some(pending.finish()?);
        }
        Ok(())
    }

    pub fn next_page(&mut self) -> Result<Option<DeletedPage>> {
        if self.done {
            return Ok(None);
        }
        let page = match (self.received.take(), self.pending.take()) {
            (Some(page), _) => page,
            (None, Some(pending)) => pending.finish()?,
            (None, None) => self.run.source.fetch_deleted(self.kind, self.after.as_ref())?,
        };
        if page.next.is_some() {
            self.after = page.next.clone();
        }
        self.done = !page.has_more || page.ids.is_empty();
        Ok(Some(page))
    }
}
