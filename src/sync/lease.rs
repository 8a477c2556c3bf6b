//! One run per tenant at a time: a lease in the key-value store with an
//! expiry, renewed while the run works, so a crashed run blocks the next one
//! only until its lease runs out.
//!
//! Where the store has compare-and-swap (Spin's wasi:keyvalue atomics), the
//! lease is taken, renewed and given back by swapping the value this run
//! read, so of two runs only one can win. The lease key is kept (holding an
//! expired lease) after release because Spin's default store does not check
//! swaps of absent keys. Without compare-and-swap, or for the very first
//! lease: check, write, wait a moment (so a competitor's write lands too),
//! read back; the run whose write landed last keeps the lease. Key-value
//! operations are far shorter than the wait.

use crate::model::{ConnectorError, Result};
use crate::ports::{Clock, KeyValue};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};

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
    /// The value this run last wrote: what a swap expects to find.
    written: RefCell<Vec<u8>>,
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

fn parse(bytes: &[u8]) -> Option<Holder> {
    serde_json::from_slice(bytes).ok()
}

impl<'a> Lease<'a> {
    fn current(kv: &dyn KeyValue) -> Result<Option<Holder>> {
        let bytes = kv.get(LEASE_KEY).map_err(|e| kv_error("reading the run lease", e))?;
        Ok(bytes.as_deref().and_then(parse))
    }

    fn holder_id(kv: &dyn KeyValue) -> String {
        Self::current(kv).ok().flatten().map(|h| h.run_id).unwrap_or_else(|| "another".into())
    }

    fn value(&self, expires_at: i64) -> Vec<u8> {
        let holder = Holder { run_id: self.run_id.clone(), expires_at };
        serde_json::to_vec(&holder).expect("a lease serializes")
    }

    fn write(&self, expires_at: i64) -> Result<()> {
        let value = self.value(expires_at);
        self.kv.set(LEASE_KEY, &value).map_err(|e| kv_error("writing the run lease", e))?;
        self.took(value, expires_at);
        Ok(())
    }

    fn took(&self, value: Vec<u8>, expires_at: i64) {
        self.expires_at.set(expires_at);
        *self.written.borrow_mut() = value;
    }

    /// Swaps the lease value `expected` for one expiring at `expires_at`;
    /// `None` when the store cannot swap.
    fn swap(&self, expected: &[u8], expires_at: i64) -> Result<Option<bool>> {
        let value = self.value(expires_at);
        let swapped =
            self.kv.swap_if(LEASE_KEY, expected, &value).map_err(|e| kv_error("swapping the run lease", e))?;
        if swapped == Some(true) {
            self.took(value, expires_at);
        }
        Ok(swapped)
    }

    /// Takes the tenant's lease, or says who holds it and until when.
    pub fn acquire(kv: &'a dyn KeyValue, clock: &'a dyn Clock, run_id: &str, ttl_secs: i64) -> Result<Lease<'a>> {
        let now = clock.now_unix();
        let found = kv.get(LEASE_KEY).map_err(|e| kv_error("reading the run lease", e))?;
        if let Some(h) = found.as_deref().and_then(parse).filter(|h| h.run_id != run_id && h.expires_at > now) {
            return Err(ConnectorError::Busy(format!(
                "run {} holds this tenant's lease until {}; this run did nothing. If that run crashed, its lease \
                 runs out by itself then",
                h.run_id,
                expiry_text(h.expires_at)
            )));
        }
        let lease = Lease {
            kv,
            clock,
            run_id: run_id.to_string(),
            ttl_secs,
            expires_at: Cell::new(0),
            written: RefCell::new(Vec::new()),
        };
        let raced = || {
            ConnectorError::Busy(format!(
                "run {} took this tenant's lease at the same moment; this run did nothing",
                Self::holder_id(kv)
            ))
        };
        if let Some(seen) = &found {
            match lease.swap(seen, now + ttl_secs)? {
                Some(true) => return Ok(lease),
                Some(false) => return Err(raced()),
                None => {}
            }
        }
        lease.write(now + ttl_secs)?;
        clock.sleep(SETTLE);
        match Self::current(kv)? {
            Some(h) if h.run_id == run_id => Ok(lease),
            _ => Err(raced()),
        }
    }

    /// Extends the lease once half of it is used; fails if another run took
    /// it meanwhile (this run was too slow and must stop writing).
    pub fn renew(&self) -> Result<()> {
        let now = self.clock.now_unix();
        if now < self.expires_at.get() - self.ttl_secs / 2 {
            return Ok(());
        }
        let taken = |by: String| {
            ConnectorError::Busy(format!(
                "run {by} took over this tenant's lease after this run's expired; this run stopped. Raise \
                 lease_ttl_secs if pages take longer than it"
            ))
        };
        let expected = self.written.borrow().clone();
        match self.swap(&expected, now + self.ttl_secs)? {
            Some(true) => return Ok(()),
            Some(false) => return Err(taken(Self::holder_id(self.kv))),
            None => {}
        }
        match Self::current(self.kv)? {
            Some(h) if h.run_id != self.run_id && h.expires_at > now => Err(taken(h.run_id)),
            _ => self.write(now + self.ttl_secs),
        }
    }

    /// Gives the lease back so the next run need not wait for it to expire.
    pub fn release(self) -> Result<()> {
        let expected = self.written.borrow().clone();
        // Swapped for an expired lease (kept, so the next run swaps too);
        // refused means another run holds it now: leave that alone.
        if self.swap(&expected, 0)?.is_some() {
            return Ok(());
        }
        if Self::current(self.kv)?.is_some_and(|h| h.run_id == self.run_id) {
            self.kv.delete(LEASE_KEY).map_err(|e| kv_error("releasing the run lease", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory_kv::Memory;
    use std::time::Duration;

    /// A settable clock that counts sleeps (each one a settle wait).
    struct At(Cell<i64>, Cell<u32>);
    impl Clock for At {
        fn now_unix(&self) -> i64 {
            self.0.get()
        }
        fn sleep(&self, _: Duration) {
            self.1.set(self.1.get() + 1);
        }
        fn random(&self) -> u64 {
            4
        }
    }

    fn at(t: i64) -> At {
        At(Cell::new(t), Cell::new(0))
    }

    #[test]
    fn a_held_lease_blocks_until_it_expires_or_is_released() {
        for kv in [Memory::default(), Memory::with_cas()] {
            let clock = at(1_000);
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
    }

    #[test]
    fn renewal_extends_only_after_half_the_lease() {
        for kv in [Memory::default(), Memory::with_cas()] {
            let clock = at(0);
            let lease = Lease::acquire(&kv, &clock, "run-a", 100).unwrap();
            clock.0.set(40);
            lease.renew().unwrap();
            assert_eq!(lease.expires_at.get(), 100);
            clock.0.set(60);
            lease.renew().unwrap();
            assert_eq!(lease.expires_at.get(), 160);
        }
    }

    #[test]
    fn with_compare_and_swap_only_the_first_lease_waits_to_settle() {
        let (kv, clock) = (Memory::with_cas(), at(0));
        Lease::acquire(&kv, &clock, "run-a", 60).unwrap().release().unwrap();
        assert_eq!(clock.1.get(), 1, "the first lease is written and read back");
        // Released means kept, expired: the next runs swap it without waiting.
        let kept = parse(&kv.get(LEASE_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(kept, Holder { run_id: "run-a".into(), expires_at: 0 });
        Lease::acquire(&kv, &clock, "run-b", 60).unwrap().release().unwrap();
        Lease::acquire(&kv, &clock, "run-c", 60).unwrap();
        assert_eq!(clock.1.get(), 1);
    }

    #[test]
    fn a_competitor_swapping_first_wins_and_this_run_does_nothing() {
        let (kv, clock) = (Memory::with_cas(), at(0));
        Lease::acquire(&kv, &clock, "run-a", 60).unwrap().release().unwrap();
        let rival = Holder { run_id: "run-rival".into(), expires_at: 60 };
        *kv.intruder.borrow_mut() = Some(serde_json::to_vec(&rival).unwrap());
        let err = Lease::acquire(&kv, &clock, "run-b", 60).err().unwrap().to_string();
        assert!(err.contains("run run-rival took this tenant's lease at the same moment"), "{err}");
        assert_eq!(parse(&kv.get(LEASE_KEY).unwrap().unwrap()).unwrap(), rival);
    }

    #[test]
    fn a_run_whose_lease_was_swapped_away_stops_and_leaves_the_new_holder_alone() {
        let (kv, clock) = (Memory::with_cas(), at(0));
        let slow = Lease::acquire(&kv, &clock, "run-slow", 60).unwrap();
        let rival = Holder { run_id: "run-rival".into(), expires_at: 200 };
        kv.set(LEASE_KEY, &serde_json::to_vec(&rival).unwrap()).unwrap();
        clock.0.set(45);
        assert!(slow.renew().err().unwrap().to_string().contains("run run-rival took over"));
        slow.release().unwrap();
        assert_eq!(parse(&kv.get(LEASE_KEY).unwrap().unwrap()).unwrap(), rival);
    }
}
