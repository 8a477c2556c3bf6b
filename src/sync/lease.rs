//! One run per tenant at a time: a lease in the key-value store with an
//! expiry, renewed while the run works, so a crashed run blocks the next one
//! only until its lease runs out.
//!
//! The store offers no compare-and-swap, so taking the lease is: check, write,
//! wait a moment (so a competitor's write lands too), read back. Of two runs
//! that start together, the one whose write landed last keeps the lease and
//! the other stops. Key-value operations are far shorter than the wait.

use crate::model::{ConnectorError, Result};
use crate::ports::{Clock, KeyValue};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

pub const LEASE_KEY: &str = "lease";
/// Between writing the lease and reading it back.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    run_id: String,
    expires_at: i64,
}

pub struct Lease<'a> {
    kv: &'a dyn KeyValue,
    clock: &'a dyn Clock,
    run_id: String,
    ttl_secs: i64,
    expires_at: Cell<i64>,
}

fn kv_error(what: &str, e: String) -> ConnectorError {
    ConnectorError::Transport(format!("key-value store failed while {what}: {e}"))
}

fn expiry_text(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

impl<'a> Lease<'a> {
    fn current(kv: &dyn KeyValue) -> Result<Option<Holder>> {
        let bytes = kv.get(LEASE_KEY).map_err(|e| kv_error("reading the run lease", e))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    fn write(&self, expires_at: i64) -> Result<()> {
        let holder = Holder { run_id: self.run_id.clone(), expires_at };
        self.kv
            .set(LEASE_KEY, &serde_json::to_vec(&holder).expect("a lease serializes"))
            .map_err(|e| kv_error("writing the run lease", e))?;
        self.expires_at.set(expires_at);
        Ok(())
    }

    /// Takes the tenant's lease, or says who holds it and until when.
    pub fn acquire(kv: &'a dyn KeyValue, clock: &'a dyn Clock, run_id: &str, ttl_secs: i64) -> Result<Lease<'a>> {
        let now = clock.now_unix();
        if let Some(h) = Self::current(kv)?.filter(|h| h.run_id != run_id && h.expires_at > now) {
            return Err(ConnectorError::Busy(format!(
                "run {} holds this tenant's lease until {}; this run did nothing. If that run crashed, its lease \
                 runs out by itself then",
                h.run_id,
                expiry_text(h.expires_at)
            )));
        }
        let lease = Lease { kv, clock, run_id: run_id.to_string(), ttl_secs, expires_at: Cell::new(0) };
        lease.write(now + ttl_secs)?;
        clock.sleep(SETTLE);
        match Self::current(kv)? {
            Some(h) if h.run_id == run_id => Ok(lease),
            other => Err(ConnectorError::Busy(format!(
                "run {} took this tenant's lease at the same moment; this run did nothing",
                other.map(|h| h.run_id).unwrap_or_default()
            ))),
        }
    }

    /// Extends the lease once half of it is used; fails if another run took
    /// it meanwhile (this run was too slow and must stop writing).
    pub fn renew(&self) -> Result<()> {
        let now = self.clock.now_unix();
        if now < self.expires_at.get() - self.ttl_secs / 2 {
            return Ok(());
        }
        match Self::current(self.kv)? {
            Some(h) if h.run_id != self.run_id && h.expires_at > now => Err(ConnectorError::Busy(format!(
                "run {} took over this tenant's lease after this run's expired; this run stopped. Raise \
                 lease_ttl_secs if pages take longer than it",
                h.run_id
            ))),
            _ => self.write(now + self.ttl_secs),
        }
    }

    /// Gives the lease back so the next run need not wait for it to expire.
    pub fn release(self) -> Result<()> {
        if Self::current(self.kv)?.is_some_and(|h| h.run_id == self.run_id) {
            self.kv.delete(LEASE_KEY).map_err(|e| kv_error("releasing the run lease", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Duration;

    #[derive(Default)]
    struct Memory(RefCell<HashMap<String, Vec<u8>>>);
    impl KeyValue for Memory {
        fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, String> {
            Ok(self.0.borrow().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8]) -> std::result::Result<(), String> {
            self.0.borrow_mut().insert(key.into(), value.to_vec());
            Ok(())
        }
        fn delete(&self, key: &str) -> std::result::Result<(), String> {
            self.0.borrow_mut().remove(key);
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
            Ok(self.0.borrow().keys().cloned().collect())
        }
    }

    struct At(Cell<i64>);
    impl Clock for At {
        fn now_unix(&self) -> i64 {
            self.0.get()
        }
        fn sleep(&self, _: Duration) {}
        fn random(&self) -> u64 {
            4
        }
    }

    #[test]
    fn a_held_lease_blocks_until_it_expires_or_is_released() {
        let (kv, clock) = (Memory::default(), At(Cell::new(1_000)));
        let first = Lease::acquire(&kv, &clock, "run-a", 60).unwrap();
        let err = Lease::acquire(&kv, &clock, "run-b", 60).err().unwrap().to_string();
        assert!(err.contains("run run-a holds this tenant's lease until"), "{err}");
        // A crashed holder: after expiry the next run takes over.
        clock.0.set(1_061);
        let second = Lease::acquire(&kv, &clock, "run-b", 60).unwrap();
        // The slow first run notices when it tries to renew.
        assert!(first.renew().err().unwrap().to_string().contains("run run-b took over"));
        second.release().unwrap();
        assert!(Lease::acquire(&kv, &clock, "run-c", 60).is_ok());
    }

    #[test]
    fn renewal_extends_only_after_half_the_lease() {
        let (kv, clock) = (Memory::default(), At(Cell::new(0)));
        let lease = Lease::acquire(&kv, &clock, "run-a", 100).unwrap();
        clock.0.set(40);
        lease.renew().unwrap();
        assert_eq!(lease.expires_at.get(), 100);
        clock.0.set(60);
        lease.renew().unwrap();
        assert_eq!(lease.expires_at.get(), 160);
    }
}
