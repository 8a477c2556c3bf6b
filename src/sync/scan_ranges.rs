//! A kind's scan by internal id, split into ranges read side by side. Keyset
//! pages of one range follow one another (each asks for the ids after the
//! last one read), so a single range waits out NetSuite's answer time once
//! per page — seconds per page on real accounts. Sans-IO: where each range
//! stands, how to split, and how far every id has been read.

/// Internal ids after `after`, up to `upto` (no bound: to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    after: u64,
    upto: Option<u64>,
    done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScanRanges {
    /// In id order, each starting where the one before ends.
    ranges: Vec<Range>,
}

impl ScanRanges {
    /// One range: every id after `after`.
    pub fn new(after: u64) -> Self {
        ScanRanges { ranges: vec![Range { after, upto: None, done: false }] }
    }

    /// Where range `i`'s next page starts (after this id) and ends (at this
    /// id, inclusive).
    pub fn bounds(&self, i: usize) -> (u64, Option<u64>) {
        (self.ranges[i].after, self.ranges[i].upto)
    }

    /// A page of range `i` was read: the highest id it held (None: it held
    /// none), and whether NetSuite has more in the range.
    pub fn read(&mut self, i: usize, last: Option<u64>, more: bool) {
        let range = &mut self.ranges[i];
        if let Some(last) = last {
            range.after = range.after.max(last);
        }
        range.done = !more || last.is_none();
    }

    #[cfg(test)]
    fn done(&self, i: usize) -> bool {
        self.ranges[i].done
    }

    /// Splits the one range there is, still open-ended, into `ways` ranges
    /// of equal id spans up to `highest` (the highest id NetSuite knew); the
    /// last stays open-ended, so ids given out after `highest` was asked are
    /// read too. Returns the new ranges' indices (none when there is nothing
    /// to split: one way, a range already bounded or done, or no id above
    /// where it stands).
    pub fn split(&mut self, ways: usize, highest: u64) -> std::ops::Range<usize> {
        let [Range { after, upto: None, done: false }] = self.ranges[..] else { return 1..1 };
        let span = highest.saturating_sub(after);
        let ways = (ways as u64).min(span);
        if ways < 2 {
            return 1..1;
        }
        let width = span / ways;
        let bound = |k: u64| after + k * width;
        self.ranges = (0..ways)
            .map(|k| Range { after: bound(k), upto: (k + 1 < ways).then(|| bound(k + 1)), done: false })
            .collect();
        1..self.ranges.len()
    }

    /// Every id up to this one has been read: where a scan stopped after
    /// the pages read so far are recorded goes on. Ranges read later than
    /// the first unfinished one are read again then (their rows, unchanged,
    /// are found so by their digests and not written).
    pub fn covered(&self) -> u64 {
        let last = self.ranges.last().map_or(0, |r| r.after);
        self.ranges.iter().find(|r| !r.done).map_or(last, |r| r.after)
    }
}

#[cfg(test)]
mod tests {
    use super::ScanRanges;

    #[test]
    fn the_rest_of_a_scan_splits_into_equal_spans_the_last_open_ended() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, Some(1000), true);
        assert_eq!(scan.split(3, 10_000), 1..3);
        assert_eq!(scan.bounds(0), (1000, Some(4000)));
        assert_eq!(scan.bounds(1), (4000, Some(7000)));
        assert_eq!(scan.bounds(2), (7000, None));
        // Once split, it is not split again.
        assert_eq!(scan.split(3, 20_000), 1..1);
    }

    #[test]
    fn nothing_splits_without_ids_to_share() {
        let mut scan = ScanRanges::new(500);
        assert_eq!(scan.split(1, 10_000), 1..1, "one way");
        assert_eq!(scan.split(4, 500), 1..1, "no id above");
        assert_eq!(scan.split(4, 502), 1..2, "as many ways as ids");
        assert_eq!(scan.bounds(0), (500, Some(501)));
        assert_eq!(scan.bounds(1), (501, None));
        let mut done = ScanRanges::new(0);
        done.read(0, None, false);
        assert_eq!(done.split(3, 10_000), 1..1, "a read range");
    }

    #[test]
    fn covered_stops_at_the_first_range_still_being_read() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, Some(100), true);
        scan.split(3, 400);
        assert_eq!(scan.covered(), 100);
        // Later ranges read ahead move nothing.
        scan.read(1, Some(250), false);
        scan.read(2, Some(350), true);
        assert_eq!(scan.covered(), 100);
        scan.read(0, Some(200), true);
        assert_eq!(scan.covered(), 200);
        // The first range ends: the second is read to its end, the third stands at 350.
        scan.read(0, Some(200), false);
        assert!(scan.done(0) && scan.done(1) && !scan.done(2));
        assert_eq!(scan.covered(), 350);
        scan.read(2, None, false);
        assert_eq!(scan.covered(), 350, "all read: as far as the last id");
    }

    #[test]
    fn an_empty_range_is_done_and_covered_up_to_its_end() {
        let mut scan = ScanRanges::new(0);
        scan.read(0, Some(10), true);
        scan.split(2, 30);
        scan.read(0, None, true);
        assert!(scan.done(0));
        assert_eq!(scan.covered(), 20, "the second range starts at 20");
    }
}
