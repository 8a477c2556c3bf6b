//! An in-memory key-value bucket for the core's unit tests.

use crate::ports::KeyValue;
use std::cell::RefCell;
use std::collections::HashMap;

/// A map; with `cas`, it swaps like Spin's stores, and `intruder` is
/// written just before the next swap (a competitor getting in between).
#[derive(Default)]
pub struct Memory {
    pub map: RefCell<HashMap<String, Vec<u8>>>,
    pub cas: bool,
    pub intruder: RefCell<Option<Vec<u8>>>,
}
impl Memory {
    pub fn with_cas() -> Memory {
        Memory { cas: true, ..Memory::default() }
    }
}
impl KeyValue for Memory {
    fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        Ok(self.map.borrow().get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8]) -> std::result::Result<(), String> {
        self.map.borrow_mut().insert(key.into(), value.to_vec());
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
    fn list_keys(&self) -> std::result::Result<Vec<String>, String> {
        Ok(self.map.borrow().keys().cloned().collect())
    }
    fn swap_if(&self, key: &str, expected: &[u8], new: &[u8]) -> std::result::Result<Option<bool>, String> {
        if !self.cas {
            return Ok(None);
        }
        if let Some(v) = self.intruder.borrow_mut().take() {
            self.set(key, &v)?;
        }
        let mut map = self.map.borrow_mut();
        if map.get(key).map(Vec::as_slice) != Some(expected) {
            return Ok(Some(false));
        }
        map.insert(key.into(), new.to_vec());
        Ok(Some(true))
    }
}
