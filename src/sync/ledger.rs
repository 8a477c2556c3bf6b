//! Which pages of a read are completely recorded: the cursor may move past a
//! page only when every record read from it (and from the pages before it)
//! has its outcome, state and audit entry stored.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// (page number, records still outstanding), oldest first.
    pages: VecDeque<(usize, usize)>,
    next: usize,
}

impl Ledger {
    /// Starts the next page; returns its number.
    pub fn open_page(&mut self) -> usize {
        let page = self.next;
        self.next += 1;
        self.pages.push_back((page, 0));
        page
    }

    pub fn expect(&mut self, page: usize, records: usize) {
        if let Some(entry) = self.pages.iter_mut().find(|(p, _)| *p == page) {
            entry.1 += records;
        }
    }

    pub fn done(&mut self, page: usize, records: usize) {
        if let Some(entry) = self.pages.iter_mut().find(|(p, _)| *p == page) {
            entry.1 = entry.1.saturating_sub(records);
        }
    }

    /// How many of the oldest pages are now complete; they leave the ledger.
    pub fn take_completed(&mut self) -> usize {
        let mut n = 0;
        while self.pages.front().is_some_and(|(_, outstanding)| *outstanding == 0) {
            self.pages.pop_front();
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn a_page_completes_only_after_the_pages_before_it() {
        let mut l = Ledger::default();
        let (a, b, c) = (l.open_page(), l.open_page(), l.open_page());
        l.expect(a, 2);
        l.expect(b, 1);
        l.done(b, 1);
        assert_eq!(l.take_completed(), 0, "b is done but a is not");
        l.done(a, 2);
        assert_eq!(l.take_completed(), 3, "a, b and the empty c");
        let _ = c;
        assert_eq!(l.take_completed(), 0);
    }
}
