//! An in-memory key-value bucket for the core's unit tests.

use crate::ports::KeyValue;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// How a bucket compare-and-swaps. Every swap that has one is conditional
/// (it writes only where the key holds the expected value); they differ in
/// what they answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Swaps {
    /// None at all.
    #[default]
    Unsupported,
    /// Answers what happened, and swaps absent keys too, like the harness's
    /// SQLite store.
    Atomic,
    /// Answers what happened, like Spin's default (SQLite) store; absent
    /// keys it cannot swap (as every kind below).
    Truthful,
    /// Answers "someone wrote first" for every swap, written or not, like
    /// Spin 4.0.2's Redis store (its `UNWATCH <key>` is refused).
    AlwaysRefused,
    /// Answers an error for every swap, written or not.
    AlwaysFails,
}

/// A map; `intruder` is written just before the next swap or just after
/// the next set (a competitor getting in between); `dropped` swaps are not
/// written at all (a store that loses some) whatever they answer.
#[derive(Default)]
pub struct Memory {
    pub map: RefCell<HashMap<String, Vec<u8>>>,
    pub swaps: Swaps,
    pub intruder: RefCell<Option<Vec<u8>>>,
    pub dropped: Cell<u32>,
    /// Listings made so far.
    pub listings: Cell<u32>,
    /// Answers [`KeyValue::lists_whole_store`] (as Spin's store would).
    pub whole_store: bool,
}
impl Memory {
    pub fn with(swaps: Swaps) -> Memory {
        Memory { swaps, ..Memory::default() }
    }
    /// One of each kind of store.
    pub fn every_kind() -> [Memory; 5] {
        [Swaps::Unsupported, Swaps::Atomic, Swaps::Truthful, Swaps::AlwaysRefused, Swaps::AlwaysFails].map(Memory::with)
    }
}
impl KeyValue for Memory {
    fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        Ok(self.map.borrow().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8]) -> std::result::Result<(), String> {
        self.map.borrow_mut().insert(key.into(), value.to_vec());
        if let Some(v) = self.intruder.borrow_mut().take() {
            self.map.borrow_mut().insert(key.into(), v);
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> std::result::Result<(), String> {
        self.map.borrow_mut().remove(key);
        Ok(())
    }
    fn get_many(&self, keys: &[String]) -> std::result::Result<Vec<Option<Vec<u8>>>, String> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> std::result::Result<(), String> {
        entries.iter().try_for_each(|(k, v)| self.set(k, v))
    }
    fn delete_many(&self, keys: &[String]) -> std::result::Result<(), String> {
        keys.iter().try_for_each(|k| self.delete(k))
    }
    fn list_keys_where(
        &self,
        prefix: &str,
        keep: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<Vec<String>, String> {
        self.listings.set(self.listings.get() + 1);
        Ok(self.map.borrow().keys().filter(|k| k.starts_with(prefix) && keep(k)).cloned().collect())
    }
    fn lists_whole_store(&self) -> bool {
        self.whole_store
    }
    fn swap_if(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> std::result::Result<Option<bool>, String> {
        if self.swaps == Swaps::Unsupported || (expected.is_none() && self.swaps != Swaps::Atomic) {
            return Ok(None);
        }
        if let Some(v) = self.intruder.borrow_mut().take() {
            self.map.borrow_mut().insert(key.into(), v);
        }
        let dropped = self.dropped.get() > 0;
        self.dropped.set(self.dropped.get().saturating_sub(1));
        let mut map = self.map.borrow_mut();
        let written = !dropped && map.get(key).map(Vec::as_slice) == expected;
        if written {
            map.insert(key.into(), new.to_vec());
        }
        match self.swaps {
            Swaps::AlwaysRefused => Ok(Some(false)),
            Swaps::AlwaysFails => Err("the store failed".into()),
            _ => Ok(Some(written)),
        }
    }
}
