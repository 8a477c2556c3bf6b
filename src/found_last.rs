//! Where a key was found last, remembered by the address of the string
//! asked with. The mapping asks every record for the same names by the same
//! strings (a mapping's column names, a field's shared `Rc<str>`), and
//! records of a kind hold the same names in the same places: a remembered
//! place, checked, replaces a binary search of string comparisons.

use std::cell::Cell;

/// Slots of remembered places, by a hash of the key's address.
const SLOTS: usize = 64;

pub struct FoundLast([Cell<(u32, u32)>; SLOTS]);

impl FoundLast {
    pub const fn new() -> Self {
        FoundLast([const { Cell::new((0, 0)) }; SLOTS])
    }

    /// `search`'s answer for `key`; `holds(i)` tells whether place `i` holds
    /// `key`, so a stale or colliding guess only costs the search.
    pub fn find(
        &self,
        key: &str,
        holds: impl Fn(usize) -> bool,
        search: impl FnOnce() -> Result<usize, usize>,
    ) -> Result<usize, usize> {
        // The low 32 bits suffice: a colliding address fails `holds`.
        let addr = key.as_ptr() as usize as u32;
        let slot = &self.0[(addr.wrapping_mul(0x9E37_79B1) >> 26) as usize % SLOTS];
        let (seen, at) = slot.get();
        if seen == addr {
            if holds(at as usize) {
                return Ok(at as usize);
            }
            // A row lacking a column or two before the key (SuiteQL leaves
            // NULLs out) holds it a place or two earlier, one with more later:
            // four checks cost less than the search (0.9% of a first sync's
            // component work).
            let near = [at.checked_sub(1), at.checked_add(1), at.checked_sub(2), at.checked_add(2)];
            if let Some(near) = near.into_iter().flatten().find(|&n| holds(n as usize)) {
                slot.set((addr, near));
                return Ok(near as usize);
            }
        }
        let found = search();
        if let Ok(at) = found {
            slot.set((addr, at as u32));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guess_is_used_only_when_it_holds() {
        let found = FoundLast::new();
        let key = String::from("phone");
        let rows = [vec!["a", "phone"], vec!["phone", "z"], vec!["a", "b"], vec!["a", "b", "phone"]];
        let mut answers = Vec::new();
        for _ in 0..2 {
            for row in &rows {
                let r = found.find(&key, |i| row.get(i) == Some(&"phone"), || row.binary_search(&"phone"));
                answers.push(r.ok());
            }
        }
        assert_eq!(answers, [Some(1), Some(0), None, Some(2), Some(1), Some(0), None, Some(2)]);
    }

    #[test]
    fn a_key_moved_by_a_place_or_two_is_found_without_a_search() {
        let found = FoundLast::new();
        let key = String::from("phone");
        let rows = [vec!["a", "b", "c", "phone"], vec!["a", "phone"], vec!["a", "b", "phone"], vec!["phone"]];
        let searches = Cell::new(0);
        let answers: Vec<Option<usize>> = rows
            .iter()
            .map(|row| {
                let search = || {
                    searches.set(searches.get() + 1);
                    row.binary_search(&"phone")
                };
                found.find(&key, |i| row.get(i) == Some(&"phone"), search).ok()
            })
            .collect();
        assert_eq!(answers, [Some(3), Some(1), Some(2), Some(0)]);
        assert_eq!(searches.get(), 1, "only the first row is searched");
    }
}
