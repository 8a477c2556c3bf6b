//! A kind's scan by internal id, split into ranges read side by side. Keyset
//! pages of one range follow one another (each asks for the ids after the
//! last one read), so a single range waits out NetSuite's answer time once
//! per page — seconds per page on real accounts. Sans-IO: where each range
//! stands, how to split, which ranges to read next, and how far every id has
//! been read.

use super::state::OpenRange;

/// Internal ids after `after`, up to `upto` (no bound: to the end).
#[derive(Debug, Clone, PartialEq)]
struct Range {
    /// Stable while ranges split and end: pages in flight name their range.
    key: usize,
    /// Where this range's reading began, for its row density.
    start: u64,
    after: u64,
    upto: Option<u64>,
    done: bool,
    /// A page of it is on its way.
    active: bool,
    rows: u64,
    /// Rows NetSuite counted left in it after its last page (each page's
    /// `totalResults` counts the rows its query matches), or estimated
    /// when it was split off.
    left: Option<u64>,
    /// The end its page under way was asked with: a count made up to an
    /// end since moved (a split) is not this range's.
    asked: Option<Option<u64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScanRanges {
    /// Disjoint; every id outside them below the last one's end is read.
    ranges: Vec<Range>,
    next_key: usize,
    /// The highest id NetSuite knew when asked (ids given out later lie
    /// beyond it, in the open-ended range).
    highest: Option<u64>,
}

/// A range is split for a spare request only if it looks to hold this many
/// pages or more: a split costs a request and a page that ends short.
const PAGES_WORTH_A_SPLIT: f64 = 2.0;

impl ScanRanges {
    /// One range: every id after `after`.
    pub fn new(after: u64) -> Self {
        let mut ranges = ScanRanges { ranges: vec![], next_key: 0, highest: None };
        ranges.push(after, None);
        ranges
    }

    /// The ranges a stopped scan left to read (see [`Self::open`]).
    pub fn resume(open: &[OpenRange], highest: Option<u64>) -> Self {
        let mut ranges = ScanRanges { ranges: vec![], next_key: 0, highest };
        for r in open {
            ranges.push(r.after, r.upto);
        }
        ranges.ranges.sort_by_key(|r| r.after);
        ranges
    }

    fn push(&mut self, after: u64, upto: Option<u64>) -> usize {
        let key = self.next_key;
        self.next_key += 1;
        self.ranges.push(Range {
            key,
            start: after,
            after,
            upto,
            done: false,
            active: false,
            rows: 0,
            left: None,
            asked: None,
        });
        key
    }

    fn range(&mut self, key: usize) -> Option<&mut Range> {
        self.ranges.iter_mut().find(|r| r.key == key)
    }

    /// A page of range `key` is asked for: after this id, up to this one
    /// (inclusive).
    pub fn begin(&mut self, key: usize) -> Option<(u64, Option<u64>)> {
        let r = self.range(key)?;
        r.active = true;
        r.asked = Some(r.upto);
        Some((r.after, r.upto))
    }

    /// Where range `key` ends now: rows of a page asked before it was split
    /// that lie past it belong to the new range and are read there.
    pub fn upto(&self, key: usize) -> Option<u64> {
        self.ranges.iter().find(|r| r.key == key).and_then(|r| r.upto)
    }

    /// A page of range `key` was read: `rows` rows, the highest id among
    /// them (None: it held none), whether the range has more, and how many
    /// rows NetSuite counted for the page's query (this page's and after).
    pub fn read(&mut self, key: usize, rows: usize, last: Option<u64>, more: bool, total: Option<u64>) {
        let Some(range) = self.range(key) else { return };
        range.active = false;
        range.rows += rows as u64;
        if let Some(last) = last {
            range.after = range.after.max(last);
        }
        range.done = !more || last.is_none();
        let counted = if range.asked.take() == Some(range.upto) { total } else { None };
        range.left = match (range.done, counted) {
            (true, _) => Some(0),
            (false, Some(total)) => Some(total.saturating_sub(rows as u64)),
            (false, None) => range.left.map(|left| left.saturating_sub(rows as u64)),
        };
    }

    #[cfg(test)]
    fn done(&self, key: usize) -> bool {
        self.ranges.iter().any(|r| r.key == key && r.done)
    }

    /// Splits the one range there is, still open-ended, into `ways` ranges
    /// of equal id spans up to `highest` (the highest id NetSuite knew); the
    /// last stays open-ended, so ids given out after `highest` was asked are
    /// read too. Returns the new ranges' keys (none when there is nothing to
    /// split: one way, a range already bounded or done, or no id above where
    /// it stands).
    pub fn split(&mut self, ways: usize, highest: u64) -> Vec<usize> {
        self.highest = Some(highest);
        let [Range { after, upto: None, done: false, .. }] = self.ranges[..] else { return vec![] };
        let span = highest.saturating_sub(after);
        let ways = (ways as u64).min(span);
        if ways < 2 {
            return vec![];
        }
        let width = span / ways;
        let bound = |k: u64| after + k * width;
        self.ranges[0].upto = Some(bound(1));
        (1..ways).map(|k| self.push(bound(k), (k + 1 < ways).then(|| bound(k + 1)))).collect()
    }

    /// Ranges to ask a page of now, so that up to `ways` are read side by
    /// side: first those waiting (a resumed scan with more ranges than
    /// requests to spare), lowest ids first so the covered point moves; then
    /// halves split off the range that looks to hold the most rows, while one
    /// holds enough to be worth it. A range ending early (ids clustered
    /// unevenly) so hands its requests to the rest.
    pub fn ranges_to_read(&mut self, ways: usize, rows_per_page: usize) -> Vec<usize> {
        let mut keys = vec![];
        while self.ranges.iter().filter(|r| r.active).count() + keys.len() < ways {
            if let Some(r) = self.ranges.iter().find(|r| !r.done && !r.active && !keys.contains(&r.key)) {
                keys.push(r.key);
                continue;
            }
            match self.split_largest(rows_per_page) {
                Some(key) => keys.push(key),
                None => break,
            }
        }
        keys
    }

    /// Rows per id read so far over the whole scan, a range read to its end
    /// counting its whole span (one per id before any is read: splitting
    /// too eagerly costs a request, too late a tail).
    fn density(&self) -> f64 {
        let read = |r: &Range| match (r.done, r.upto) {
            (true, Some(upto)) => upto.saturating_sub(r.start),
            _ => r.after - r.start,
        };
        let (rows, ids) = self.ranges.iter().fold((0u64, 0u64), |(rows, ids), r| (rows + r.rows, ids + read(r)));
        if rows == 0 || ids == 0 { 1.0 } else { (rows as f64 / ids as f64).min(1.0) }
    }

    /// Splits the open range with the most rows left (as NetSuite counted
    /// them, else its span at the density read so far) in two, if that is
    /// worth a request: where half its rows should lie at the density its
    /// own pages showed (ids cluster: a bulk import's run of ids, then a
    /// gap), not half its span. Returns the new upper half's key.
    fn split_largest(&mut self, rows_per_page: usize) -> Option<usize> {
        let overall = self.density();
        let highest = self.highest;
        let (i, span, rows, density) = self
            .ranges
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.done)
            .map(|(i, r)| {
                let density = if r.rows > 0 && r.after > r.start {
                    (r.rows as f64 / (r.after - r.start) as f64).min(1.0)
                } else {
                    overall
                };
                // An open-ended range with no highest id known (its query
                // failed) ends, as far as can be told, where its counted
                // rows would at that density.
                let end = r.upto.or(highest).or_else(|| {
                    r.left.map(|left| r.after.saturating_add((left as f64 / density.max(f64::MIN_POSITIVE)) as u64))
                });
                let span = end.unwrap_or(r.after).saturating_sub(r.after);
                let rows = r.left.map_or(span as f64 * density, |left| left as f64);
                (i, span, rows, density)
            })
            // A range too narrow to split leaves the request to the next fullest.
            .filter(|&(_, span, _, _)| span >= 2)
            .max_by(|a, b| a.2.total_cmp(&b.2))?;
        if rows < PAGES_WORTH_A_SPLIT * rows_per_page.max(1) as f64 {
            return None;
        }
        let half = ((rows / 2.0 / density.max(f64::MIN_POSITIVE)) as u64).clamp(1, span - 1);
        let range = &mut self.ranges[i];
        let mid = range.after + half;
        let upto = range.upto.replace(mid);
        let lower = (rows / 2.0) as u64;
        range.left = Some(lower);
        let key = self.push(mid, upto);
        if let Some(r) = self.range(key) {
            r.left = Some((rows as u64).saturating_sub(lower));
        }
        self.ranges.sort_by_key(|r| r.after);
        Some(key)
    }

    /// Every id up to this one has been read: where a build that knows only
    /// one position goes on.
    pub fn covered(&self) -> u64 {
        let last = self.ranges.iter().map(|r| r.after).max().unwrap_or(0);
        self.ranges.iter().filter(|r| !r.done).map(|r| r.after).min().unwrap_or(last)
    }

    /// The ranges still to read, as the scan's stored position: each from
    /// where it stands. Every id outside them up to the last one's start has
    /// been read.
    pub fn open(&self) -> Vec<OpenRange> {
        self.ranges.iter().filter(|r| !r.done).map(|r| OpenRange { after: r.after, upto: r.upto }).collect()
    }

    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::{OpenRange, ScanRanges};

    #[test]
    fn the_rest_of_a_scan_splits_into_equal_spans_the_last_open_ended() {
        let mut scan = ScanRanges::new(0);
        scan.begin(0);
        scan.read(0, 100, Some(1000), true, None);
        assert_eq!(scan.split(3, 10_000), [1, 2]);
        assert_eq!(scan.begin(0), Some((1000, Some(4000))));
        assert_eq!(scan.begin(1), Some((4000, Some(7000))));
        assert_eq!(scan.begin(2), Some((7000, None)));
        // Once split, it is not split again.
        assert_eq!(scan.split(3, 20_000), Vec::<usize>::new());
    }

    #[test]
    fn nothing_splits_without_ids_to_share() {
        let mut scan = ScanRanges::new(500);
        assert!(scan.split(1, 10_000).is_empty(), "one way");
        assert!(scan.split(4, 500).is_empty(), "no id above");
        assert_eq!(scan.split(4, 502), [1], "as many ways as ids");
        assert_eq!(scan.begin(0), Some((500, Some(501))));
        assert_eq!(scan.begin(1), Some((501, None)));
        let mut done = ScanRanges::new(0);
        done.read(0, 0, None, false, None);
        assert!(done.split(3, 10_000).is_empty(), "a read range");
    }

    #[test]
    fn covered_stops_at_the_first_range_still_being_read() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, 10, Some(100), true, None);
        scan.split(3, 400);
        assert_eq!(scan.covered(), 100);
        // Later ranges read ahead move nothing.
        scan.read(1, 10, Some(250), false, None);
        scan.read(2, 10, Some(350), true, None);
        assert_eq!(scan.covered(), 100);
        scan.read(0, 10, Some(200), true, None);
        assert_eq!(scan.covered(), 200);
        // The first range ends: the second is read to its end, the third stands at 350.
        scan.read(0, 10, Some(200), false, None);
        assert!(scan.done(0) && scan.done(1) && !scan.done(2));
        assert_eq!(scan.covered(), 350);
        assert_eq!(scan.open(), [OpenRange { after: 350, upto: None }]);
        scan.read(2, 0, None, false, None);
        assert_eq!(scan.covered(), 350, "all read: as far as the last id");
        assert!(scan.open().is_empty());
    }

    #[test]
    fn an_empty_range_is_done_and_covered_up_to_its_end() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, 10, Some(10), true, None);
        scan.split(2, 30);
        scan.read(0, 0, None, true, None);
        assert!(scan.done(0));
        assert_eq!(scan.covered(), 20, "the second range starts at 20");
    }

    #[test]
    fn a_range_that_ends_early_hands_its_request_to_the_fullest_one() {
        // Pages of 10; ranges (100, 400], (400, 700], (700, …) up to 1000.
        let mut scan = ScanRanges::new(0);
        scan.read(0, 100, Some(100), true, None);
        assert_eq!(scan.split(3, 1000), [1, 2]);
        for key in [0, 1, 2] {
            scan.begin(key);
        }
        // The first range held a page's worth; the second had ids only to 450 (dense: one row per id).
        scan.read(0, 10, Some(400), false, None);
        scan.read(1, 10, Some(410), true, None);
        scan.begin(1);
        scan.read(2, 3, Some(710), true, None);
        scan.begin(2);
        // One request is spare: the range with the most rows left is split (the open-ended one holds 290
        // ids at about a row every three, the second 290 ids at a row each).
        let new = scan.ranges_to_read(3, 10);
        assert_eq!(new, [3]);
        assert_eq!(scan.upto(1), Some(555), "the second range now ends half-way");
        assert_eq!(scan.begin(3), Some((555, Some(700))));
        assert_eq!(scan.upto(3), Some(700));
        // All three read side by side again: nothing more to begin.
        assert!(scan.ranges_to_read(3, 10).is_empty());
    }

    #[test]
    fn a_resumed_scan_reads_its_open_ranges_no_more_at_once_than_allowed() {
        let open = [
            OpenRange { after: 700, upto: None },
            OpenRange { after: 150, upto: Some(400) },
            OpenRange { after: 420, upto: Some(700) },
        ];
        let mut scan = ScanRanges::resume(&open, Some(1000));
        assert_eq!(scan.covered(), 150);
        // One request: the lowest range first.
        let first = scan.ranges_to_read(1, 10);
        assert_eq!(first.len(), 1);
        assert_eq!(scan.begin(first[0]), Some((150, Some(400))));
        scan.read(first[0], 10, Some(400), false, None);
        let second = scan.ranges_to_read(1, 10);
        assert_eq!(scan.begin(second[0]), Some((420, Some(700))));
        assert_eq!(scan.covered(), 420);
        // Nothing is split while ranges wait.
        scan.read(second[0], 10, Some(430), true, None);
        let again = scan.ranges_to_read(2, 10);
        assert_eq!(again.len(), 2);
        let bounds: Vec<_> = again.iter().filter_map(|&k| scan.begin(k)).collect();
        assert!(bounds.contains(&(430, Some(700))) && bounds.contains(&(700, None)), "{bounds:?}");
    }

    #[test]
    fn a_split_falls_where_half_the_counted_rows_should_lie() {
        // Ids 1 to 1,500 dense, then a gap to the highest at a million: the equal spans put every row in the
        // first range.
        let mut scan = ScanRanges::new(0);
        scan.read(0, 100, Some(100), true, Some(2000));
        assert_eq!(scan.split(3, 1_000_000), [1, 2]);
        for key in 0..3 {
            scan.begin(key);
        }
        scan.read(0, 100, Some(200), true, Some(1400));
        scan.begin(0);
        scan.read(1, 0, None, true, Some(0));
        // NetSuite counted 1,300 rows left after id 200, one per id so far: the split is 650 ids on.
        assert_eq!(scan.ranges_to_read(3, 100), [3]);
        assert_eq!(scan.upto(0), Some(850));
        assert_eq!(scan.begin(3), Some((850, Some(333_400))));
    }

    #[test]
    fn without_the_highest_id_the_counted_rows_split_the_scan() {
        let mut scan = ScanRanges::new(0);
        // A row every other id, 1,000 rows counted after the first page's 100.
        scan.begin(0);
        scan.read(0, 100, Some(200), true, Some(1100));
        let keys = scan.ranges_to_read(3, 100);
        assert_eq!(keys.len(), 3, "the open-ended range is split twice");
        let mut bounds: Vec<_> = keys.iter().filter_map(|&k| scan.begin(k)).collect();
        bounds.sort();
        // Half the 1,000 rows lie 1,000 ids on; then the upper half is halved (a tie goes to the later range).
        assert_eq!(bounds, [(200, Some(1200)), (1200, Some(1700)), (1700, None)]);
    }

    #[test]
    fn a_count_made_before_a_split_is_not_taken_for_the_shrunken_range() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, 100, Some(100), true, Some(2000));
        scan.split(2, 2100);
        scan.begin(0);
        scan.begin(1);
        scan.read(1, 0, None, true, Some(0));
        // The first range (100, 1100], 1,000 ids at a row each, is split while its page travels.
        assert_eq!(scan.ranges_to_read(2, 100), [2]);
        assert_eq!(scan.upto(0), Some(600));
        // That page counted the 1,000 rows up to 1,100; its range now ends at 600: 500 less its page.
        scan.read(0, 100, Some(200), true, Some(1000));
        assert_eq!(scan.ranges.iter().find(|r| r.key == 0).and_then(|r| r.left), Some(400));
        // A page asked with the new end counts for it.
        scan.begin(0);
        scan.read(0, 100, Some(300), true, Some(300));
        assert_eq!(scan.ranges.iter().find(|r| r.key == 0).and_then(|r| r.left), Some(200));
    }

    #[test]
    fn sparse_ranges_are_not_split_below_two_pages() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, 10, Some(1000), true, None);
        scan.split(2, 3000);
        scan.begin(0);
        scan.begin(1);
        // Ten rows in 500 ids: the 500 ids left of the second range hold about ten rows, the scan's
        // twenty rows in 2,500 ids agree.
        scan.read(0, 10, Some(2000), false, None);
        scan.read(1, 10, Some(2500), true, None);
        scan.begin(1);
        assert!(scan.ranges_to_read(2, 10).is_empty());
    }

    /// Reads `ids` the way `Changes` does (pages asked in FIFO order, each
    /// answered from the ids in its bounds as they were asked, rows past a
    /// range's end since then dropped), stopping after `stop_after` pages
    /// and resuming from the open ranges. Returns every id given out.
    fn scan(ids: &[u64], page: usize, ways: usize, highest: Option<u64>, stop_after: usize) -> Vec<u64> {
        use std::collections::VecDeque;
        let answer = |after: u64, upto: Option<u64>| {
            let matching: Vec<u64> =
                ids.iter().copied().filter(|&id| id > after && upto.is_none_or(|u| id <= u)).collect();
            let rows: Vec<u64> = matching.iter().copied().take(page).collect();
            (rows, matching.len() > page, matching.len() as u64)
        };
        let mut given = vec![];
        let mut scan = ScanRanges::new(0);
        let mut pending = VecDeque::new();
        let first = scan.begin(0).unwrap();
        pending.push_back((0, first));
        let mut started = false;
        let mut pages = 0;
        let mut stored: Option<Vec<OpenRange>> = None;
        loop {
            while let Some((key, (after, upto))) = pending.pop_front() {
                let (mut rows, has_more, total) = answer(after, upto);
                let before = rows.len();
                if let Some(end) = scan.upto(key) {
                    rows.retain(|&id| id <= end);
                }
                let past_end = rows.len() < before;
                let more = has_more && !past_end;
                scan.read(key, rows.len(), rows.last().copied(), more, Some(total));
                let mut keys = vec![];
                if more && !started && ways > 1 {
                    keys.push(0);
                    keys.extend(highest.map(|h| scan.split(ways, h)).unwrap_or_default());
                    if highest.is_none() {
                        keys = scan.ranges_to_read(ways, page);
                    }
                } else if more {
                    keys.push(key);
                } else if started {
                    keys = scan.ranges_to_read(ways, page);
                }
                started = true;
                for k in keys {
                    let bounds = scan.begin(k).unwrap();
                    pending.push_back((k, bounds));
                }
                given.extend(rows);
                // Every id up to `covered`, and every id outside the open ranges below the highest given, is out.
                let covered = scan.covered();
                let open = scan.open();
                let top = given.iter().copied().max().unwrap_or(0);
                for &id in ids.iter().filter(|&&id| id <= top) {
                    let inside = open.iter().any(|r| id > r.after && r.upto.is_none_or(|u| id <= u));
                    assert!(given.contains(&id) || (inside && id > covered), "id {id} skipped: {open:?}");
                }
                pages += 1;
                if pages == stop_after {
                    stored = Some(open);
                    break;
                }
            }
            match stored.take() {
                Some(open) if !open.is_empty() => {
                    scan = ScanRanges::resume(&open, highest);
                    pending.clear();
                    for k in scan.ranges_to_read(ways, page) {
                        let bounds = scan.begin(k).unwrap();
                        pending.push_back((k, bounds));
                    }
                }
                _ => return given,
            }
        }
    }

    #[test]
    fn every_id_is_given_out_once_however_ids_cluster_and_wherever_the_scan_stops() {
        // Deterministic pseudo-random id sets: runs of ids with gaps of every size.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..200 {
            let mut ids = vec![];
            let mut id = 0;
            // From a jump every few ids to long dense runs.
            let runs = 2 + next(300);
            while ids.len() < 500 + next(1500) as usize {
                id += if next(runs) == 0 { 1 + next(100_000) } else { 1 + next(2) };
                ids.push(id);
            }
            let page = 10 + next(90) as usize;
            let ways = 1 + next(5) as usize;
            let highest = (next(4) > 0).then(|| *ids.last().unwrap() - next(50));
            let stop_after = if next(2) == 0 { usize::MAX } else { 1 + next(30) as usize };
            let mut given = scan(&ids, page, ways, highest, stop_after);
            let read_twice = given.len();
            given.sort();
            given.dedup();
            assert_eq!(given, ids, "case {case}: every id given out");
            if stop_after == usize::MAX {
                assert_eq!(read_twice, ids.len(), "case {case}: none given out twice without a stop");
            }
        }
    }
}
