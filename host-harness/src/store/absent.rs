//! Which record-state keys a run can answer as absent without asking SQLite.
//!
//! A first sync reads the state of every record it meets and finds none: a
//! hundred thousand index lookups for nothing. Record state is written only
//! by the run holding the tenant's lease, so once a run has seen that a
//! family of keys (`record/customer/`) held nothing when first read, a key
//! of that family is absent unless this run wrote it. The keys written are
//! remembered in a Bloom filter of fixed size: memory does not grow with the
//! run, and a key the filter may hold is read from the database as before.
//! (A dry run holds no lease: beside a running sync it may plan from the
//! state as it was when it first looked, as it could anyway.)

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The keys this applies to (in the state bucket). Others (the lease, cursors,
/// parked writes) may be written by other processes or are read rarely.
const RECORD_PREFIX: &str = "record/";

/// 2^23 bits (1 MiB, allocated on the first write): false positives stay
/// under 1 in 40 up to a million keys written.
const BITS: usize = 1 << 23;
const PROBES: usize = 4;

#[derive(Default)]
pub struct KnownAbsent {
    /// Family (a key up to its last `/`) → it held no key when first read.
    families: HashMap<String, bool>,
    written: Vec<u64>,
}

/// The family of a record key, or None for keys this does not cover.
fn family(key: &str) -> Option<&str> {
    key.starts_with(RECORD_PREFIX).then(|| &key[..=key.rfind('/').expect("the prefix ends with /")])
}

fn probes(key: &str) -> impl Iterator<Item = usize> {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let h = h.finish();
    // Double hashing: the two halves of one 64-bit hash give every probe.
    let (a, b) = (h as u32 as usize, (h >> 32) as usize | 1);
    (0..PROBES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) % BITS)
}

impl KnownAbsent {
    /// Called for every key the run writes or deletes, before the write.
    pub fn note_written(&mut self, key: &str) {
        if family(key).is_none() {
            return;
        }
        if self.written.is_empty() {
            self.written = vec![0; BITS / 64];
        }
        for p in probes(key) {
            self.written[p / 64] |= 1 << (p % 64);
        }
    }

    fn may_be_written(&self, key: &str) -> bool {
        !self.written.is_empty() && probes(key).all(|p| self.written[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Whether `key` is surely absent from the database. `is_empty` tells
    /// whether the database holds no key from a family up to (excluding) a
    /// bound; it is asked once per family and run.
    pub fn absent<E>(&mut self, key: &str, is_empty: impl FnOnce(&str, &str) -> Result<bool, E>) -> Result<bool, E> {
        let Some(family) = family(key) else { return Ok(false) };
        let empty = match self.families.get(family) {
            Some(&empty) => empty,
            None => {
                // Keys of the family sort from `family` up to the same text
                // with its final `/` raised to `0`.
                let bound = format!("{}0", &family[..family.len() - 1]);
                let empty = is_empty(family, &bound)?;
                self.families.insert(family.to_string(), empty);
                empty
            }
        };
        Ok(empty && !self.may_be_written(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_an_empty_family_is_absent_until_the_run_writes_it() {
        let mut known = KnownAbsent::default();
        let mut asked = Vec::new();
        let mut ask = |k: &str| {
            known.absent(k, |family: &str, bound: &str| -> Result<bool, ()> {
                asked.push((family.to_string(), bound.to_string()));
                Ok(family == "record/customer/")
            })
        };
        assert_eq!(ask("record/customer/1"), Ok(true));
        assert_eq!(ask("record/customer/2"), Ok(true));
        assert_eq!(ask("record/contact/1"), Ok(false), "a family that held keys is read from the database");
        assert_eq!(ask("cursor/customer"), Ok(false), "only record keys are covered");
        assert_eq!(
            asked,
            [
                ("record/customer/".into(), "record/customer0".into()),
                ("record/contact/".into(), "record/contact0".into())
            ],
            "each family is asked once"
        );
        known.note_written("record/customer/2");
        let absent =
            |known: &mut KnownAbsent, k: &str| known.absent(k, |_: &str, _: &str| -> Result<bool, ()> { Ok(true) });
        assert_eq!(absent(&mut known, "record/customer/2"), Ok(false), "written by this run");
        assert_eq!(absent(&mut known, "record/customer/1"), Ok(true));
    }

    #[test]
    fn a_failed_question_is_asked_again() {
        let mut known = KnownAbsent::default();
        assert_eq!(known.absent("record/vendor/1", |_: &str, _: &str| Err("locked")), Err("locked"));
        assert_eq!(known.absent("record/vendor/1", |_: &str, _: &str| -> Result<bool, &str> { Ok(true) }), Ok(true));
    }

    #[test]
    fn the_filter_answers_no_false_negatives_and_few_false_positives() {
        let mut known = KnownAbsent::default();
        for i in 0..200_000 {
            known.note_written(&format!("record/customer/{i}"));
        }
        assert!((0..200_000).all(|i| known.may_be_written(&format!("record/customer/{i}"))));
        let false_positives =
            (200_000..300_000).filter(|i| known.may_be_written(&format!("record/customer/{i}"))).count();
        assert!(false_positives < 100, "{false_positives} of 100,000");
    }
}
