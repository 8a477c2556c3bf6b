//! What a dry run runs against: the tenant's stored state and queues as
//! they are, with no write to them, and no audit entry, landing. The stages
//! write as in a real run; this host is what keeps them from landing. The
//! queues' writes are kept in memory for the run (what a real run queues
//! for itself it applies before it ends); the states' are dropped (there
//! could be one per record read).

use crate::model::AuditEntry;
use crate::ports::{AuditSink, Host, KeyValue};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A store that answers reads and forgets writes.
pub(super) struct ReadOnly<'a>(pub &'a dyn KeyValue);

impl KeyValue for ReadOnly<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.get(key)
    }

    fn set(&self, _: &str, _: &[u8]) -> Result<(), String> {
        Ok(())
    }

    fn delete(&self, _: &str) -> Result<(), String> {
        Ok(())
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.0.get_many(keys)
    }

    fn set_many(&self, _: &[(String, Vec<u8>)]) -> Result<(), String> {
        Ok(())
    }

    fn delete_many(&self, _: &[String]) -> Result<(), String> {
        Ok(())
    }

    fn list_keys_where(&self, prefix: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>, String> {
        self.0.list_keys_where(prefix, keep)
    }

    fn lists_whole_store(&self) -> bool {
        self.0.lists_whole_store()
    }

    // `swap_if`: the default, "cannot swap"; a dry run takes no lease.
}

/// A store that answers reads with its own writes over the tenant's
/// (`None`: deleted), which it never changes.
pub(super) struct Scratch<'a> {
    base: &'a dyn KeyValue,
    written: RefCell<BTreeMap<String, Option<Vec<u8>>>>,
}

impl<'a> Scratch<'a> {
    pub fn new(base: &'a dyn KeyValue) -> Self {
        Scratch { base, written: RefCell::default() }
    }

    fn put(&self, key: &str, value: Option<&[u8]>) {
        self.written.borrow_mut().insert(key.to_string(), value.map(<[u8]>::to_vec));
    }
}

impl KeyValue for Scratch<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.written.borrow().get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.put(key, Some(value));
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), String> {
        self.put(key, None);
        Ok(())
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let mut values = self.base.get_many(keys)?;
        let written = self.written.borrow();
        for (key, value) in keys.iter().zip(&mut values) {
            if let Some(mine) = written.get(key) {
                value.clone_from(mine);
            }
        }
        Ok(values)
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), String> {
        entries.iter().for_each(|(k, v)| self.put(k, Some(v)));
        Ok(())
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), String> {
        keys.iter().for_each(|k| self.put(k, None));
        Ok(())
    }

    fn list_keys_where(&self, prefix: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>, String> {
        let written = self.written.borrow();
        let mut keys = self.base.list_keys_where(prefix, &mut |k| !written.contains_key(k) && keep(k))?;
        let mine = written.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        keys.extend(mine.filter(|(k, v)| v.is_some() && keep(k)).map(|(k, _)| k.clone()));
        Ok(keys)
    }

    fn lists_whole_store(&self) -> bool {
        self.base.lists_whole_store()
    }
}

/// An audit trail that keeps nothing: a dry run's plan is its report.
pub(super) struct NoAudit;

impl AuditSink for NoAudit {
    fn append(&self, _: Vec<AuditEntry>) {}
}

/// `host` with its state and marks read-only, its queues written in memory
/// and its audit discarded.
pub(super) fn dry<'a>(host: &Host<'a>, stores: &'a (ReadOnly<'a>, Scratch<'a>, ReadOnly<'a>)) -> Host<'a> {
    let (state, queues, in_flight) = stores;
    Host { state, queues, in_flight, audit: &NoAudit, ..*host }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory_kv::Memory;

    #[test]
    fn the_scratch_store_shows_its_own_writes_and_leaves_the_tenants_alone() {
        let base = Memory::default();
        base.set("event/contact/1", b"a").unwrap();
        base.set("event/contact/2", b"b").unwrap();
        base.set("other/1", b"c").unwrap();
        let scratch = Scratch::new(&base);
        scratch.delete("event/contact/1").unwrap();
        scratch.set_many(&[("event/contact/3".into(), b"d".to_vec())]).unwrap();
        scratch.set("event/contact/2", b"e").unwrap();

        let mut keys = scratch.list_keys("event/").unwrap();
        keys.sort();
        assert_eq!(keys, ["event/contact/2", "event/contact/3"]);
        let mut seen = 0;
        assert!(
            scratch
                .list_keys_where("event/", &mut |_| {
                    seen += 1;
                    false
                })
                .unwrap()
                .is_empty()
        );
        assert_eq!(seen, 2, "each key offered once");
        let keys: Vec<String> = ["event/contact/1", "event/contact/2", "other/1"].map(String::from).into();
        assert_eq!(scratch.get_many(&keys).unwrap(), [None, Some(b"e".to_vec()), Some(b"c".to_vec())]);
        assert_eq!(scratch.get("event/contact/3").unwrap(), Some(b"d".to_vec()));

        assert_eq!(base.get("event/contact/1").unwrap(), Some(b"a".to_vec()), "the tenant's store is untouched");
        assert_eq!(base.get("event/contact/3").unwrap(), None);
    }
}
