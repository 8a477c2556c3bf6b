//! One run per tenant at a time: a lease in the key-value store with an
//! expiry, renewed while the run works, so a crashed run blocks the next one
//! only until its lease runs out.
//!
//! Every value a run writes names the run and carries a nonce fresh for that
//! write, so reading the key back tells exactly whether that write is there.
//! Where the store has compare-and-swap (the harness's `key-swap`, Spin's
//! wasi:keyvalue atomics), the lease is taken, renewed and given back by
//! swapping the value this run read. The swaps are conditional on every
//! store, but their answers are not to be believed (Spin 4.0.2's Redis store
//! answers cas-failed for every swap, applied or not), so after each swap the
//! run reads the key back and goes by what it finds: its own value means its
//! swap landed, and since a competitor's swap expected the value this one
//! replaced, none can land after it. The lease key is kept (holding an
//! expired lease) after release because Spin's stores cannot swap an absent
//! key. Without compare-and-swap, or for the very first lease where absent
//! keys cannot be swapped: check, write, wait a moment (so a competitor's
//! write lands too), read back; the run whose write landed last keeps the
//! lease. Key-value operations are far shorter than the wait.

use super::kv_error;
use crate::model::{ConnectorError, Result};
use crate::ports::{Clock, KeyValue, Meanwhile};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};

pub const LEASE_KEY: &str = "lease";

/// How a run refused the lease ends its error: it did no work (`connector
/// status` tells such attempts from runs by it).
pub const RAN_NOTHING: &str = "this run did nothing";
/// Between writing the lease and reading it back.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);
/// Swaps tried while the store applies none of them and no other run holds
/// the lease (a store that drops a swap now and then).
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    run_id: String,
    /// Fresh for every write, so a run knows its own write from any other.
    /// Absent in leases of builds before it.
    #[serde(default)]
    nonce: String,
    expires_at: i64,
}

pub struct Lease<'a> {
    kv: &'a dyn KeyValue,
    clock: &'a dyn Clock,
    run_id: String,
    ttl_secs: i64,
    expires_at: Cell<i64>,
    /// The value this run last wrote and found there: what a swap expects.
    written: RefCell<Vec<u8>>,
}

/// An expiry as RFC 3339 text, for messages.
pub fn expiry_text(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

fn parse(bytes: &[u8]) -> Option<Holder> {
    serde_json::from_slice(bytes).ok()
}

/// The run a lease value names, for messages.
fn holder_of(value: Option<&[u8]>) -> String {
    value.and_then(parse).map(|h| h.run_id).unwrap_or_else(|| "another".into())
}

fn raced(holder: String) -> ConnectorError {
    ConnectorError::Busy(format!("run {holder} took this tenant's lease at the same moment; {RAN_NOTHING}"))
}

fn taken(holder: String) -> ConnectorError {
    ConnectorError::Busy(format!(
        "run {holder} took over this tenant's lease after this run's expired; this run stopped. Raise \
         lease_ttl_secs if pages take longer than it"
    ))
}

/// What the lease key held when read back after this run swapped it.
enum ReadBack {
    /// The value this run swapped in: the swap landed.
    Mine,
    /// Still the value this run expected: no swap landed, its own neither.
    Unchanged,
    /// Anything else: another run's swap landed first.
    Other(Option<Vec<u8>>),
}

impl<'a> Lease<'a> {
    fn current(kv: &dyn KeyValue) -> Result<Option<Vec<u8>>> {
        kv.get(LEASE_KEY).map_err(|e| kv_error("reading the run lease", e))
    }

    /// A value of this run's, expiring at `expires_at`, with a fresh nonce.
    fn value(&self, expires_at: i64) -> Vec<u8> {
        let holder = Holder { run_id: self.run_id.clone(), nonce: format!("{:016x}", self.clock.random()), expires_at };
        serde_json::to_vec(&holder).expect("a lease serializes")
    }

    fn took(&self, value: Vec<u8>, expires_at: i64) {
        self.expires_at.set(expires_at);
        *self.written.borrow_mut() = value;
    }

    /// Swaps `expected` (`None`: no lease at all) for `mine`, then reads the
    /// key back: what is there decides, the store's answer does not. `None`
    /// when the store cannot make this swap. An error only when the store
    /// failed and nothing changed, or when it cannot be read back (then
    /// `mine` is withdrawn if it landed).
    fn swap(&self, expected: Option<&[u8]>, mine: &[u8]) -> Result<Option<ReadBack>> {
        let answer = self.kv.swap_if(LEASE_KEY, expected, mine);
        if let Ok(None) = answer {
            return Ok(None);
        }
        let there = match Self::current(self.kv) {
            Ok(there) => there,
            Err(e) => {
                self.withdraw(mine);
                return Err(e);
            }
        };
        Ok(Some(match there {
            Some(v) if v == mine => ReadBack::Mine,
            there if there.as_deref() == expected => match answer {
                Err(e) => return Err(kv_error("swapping the run lease", e)),
                Ok(_) => ReadBack::Unchanged,
            },
            other => ReadBack::Other(other),
        }))
    }

    /// Best effort, when this run cannot tell whether its value `mine` is in
    /// the store: if it is, replace it with an expired lease so it blocks
    /// no one. Only ever touches this run's own value.
    fn withdraw(&self, mine: &[u8]) {
        // With compare-and-swap this lands only where `mine` is; if the
        // store cannot even do that, the lease runs out by itself.
        let swapped = self.kv.swap_if(LEASE_KEY, Some(mine), &self.value(0));
        if let Ok(None) = swapped
            && matches!(self.kv.get(LEASE_KEY), Ok(Some(v)) if v == mine)
        {
            let _ = self.kv.delete(LEASE_KEY);
        }
    }

    /// Writes `mine` unconditionally, waits for competitors' writes to land,
    /// and keeps the lease if `mine` is what the store then holds.
    fn write_and_settle(self, mine: Vec<u8>, expires_at: i64) -> Result<Lease<'a>> {
        if let Err(e) = self.kv.set(LEASE_KEY, &mine) {
            self.withdraw(&mine);
            return Err(kv_error("writing the run lease", e));
        }
        self.clock.sleep(SETTLE);
        match self.kv.get(LEASE_KEY) {
            Ok(Some(v)) if v == mine => {
                self.took(mine, expires_at);
                Ok(self)
            }
            // A competitor's write landed after this run's: its value is gone.
            Ok(other) => Err(raced(holder_of(other.as_deref()))),
            Err(e) => {
                self.withdraw(&mine);
                Err(kv_error("reading the run lease back", e))
            }
        }
    }

    /// Takes the tenant's lease, or says who holds it and until when.
    pub fn acquire(kv: &'a dyn KeyValue, clock: &'a dyn Clock, run_id: &str, ttl_secs: i64) -> Result<Lease<'a>> {
        let lease = Lease {
            kv,
            clock,
            run_id: run_id.to_string(),
            ttl_secs,
            expires_at: Cell::new(0),
            written: RefCell::new(Vec::new()),
        };
        let mut found = Self::current(kv)?;
        for attempt in 0..ATTEMPTS {
            let now = clock.now_unix();
            if let Some(h) = found.as_deref().and_then(parse).filter(|h| h.run_id != run_id && h.expires_at > now) {
                return Err(if attempt > 0 {
                    raced(h.run_id)
                } else {
                    ConnectorError::Busy(format!(
                        "run {} holds this tenant's lease until {}; {RAN_NOTHING}. Try again in {} s (a run \
                         gives its lease back when it ends; a crashed run's lease runs out by then)",
                        h.run_id,
                        expiry_text(h.expires_at),
                        h.expires_at - now
                    ))
                });
            }
            let expires_at = now + ttl_secs;
            let mine = lease.value(expires_at);
            match lease.swap(found.as_deref(), &mine)? {
                None => return lease.write_and_settle(mine, expires_at),
                Some(ReadBack::Mine) => {
                    lease.took(mine, expires_at);
                    return Ok(lease);
                }
                // Nothing landed: try again with what the store holds.
                Some(ReadBack::Unchanged) => {}
                // Another run's value, live (refused above) or not (a run
                // that came and went meanwhile: swap that).
                Some(ReadBack::Other(there)) => found = there,
            }
        }
        Err(ConnectorError::Transport(format!(
            "key-value store did not apply {ATTEMPTS} swaps of the run lease though no other run holds it; this \
             run did nothing. Try again"
        )))
    }

    /// Extends the lease once half of it is used; fails if another run took
    /// it meanwhile (this run was too slow and must stop writing).
    pub fn renew(&self) -> Result<()> {
        let now = self.clock.now_unix();
        if now < self.expires_at.get() - self.ttl_secs / 2 {
            return Ok(());
        }
        let expected = self.written.borrow().clone();
        let expires_at = now + self.ttl_secs;
        for _ in 0..ATTEMPTS {
            let mine = self.value(expires_at);
            match self.swap(Some(&expected), &mine)? {
                None => return self.renew_without_swap(now, expires_at),
                Some(ReadBack::Mine) => {
                    self.took(mine, expires_at);
                    return Ok(());
                }
                Some(ReadBack::Unchanged) => {}
                Some(ReadBack::Other(there)) => return Err(taken(holder_of(there.as_deref()))),
            }
        }
        // The lease this run holds still runs: the next renewal tries again.
        if now < self.expires_at.get() {
            return Ok(());
        }
        Err(ConnectorError::Transport(format!(
            "key-value store did not apply {ATTEMPTS} renewals of the run lease before it ran out; this run stopped"
        )))
    }

    /// Writes a renewed lease unless another run holds it now.
    fn renew_without_swap(&self, now: i64, expires_at: i64) -> Result<()> {
        match Self::current(self.kv)?.as_deref().and_then(parse) {
            Some(h) if h.run_id != self.run_id && h.expires_at > now => Err(taken(h.run_id)),
            _ => {
                let mine = self.value(expires_at);
                self.kv.set(LEASE_KEY, &mine).map_err(|e| kv_error("writing the run lease", e))?;
                self.took(mine, expires_at);
                Ok(())
            }
        }
    }

    /// Gives the lease back so the next run need not wait for it to expire.
    pub fn release(self) -> Result<()> {
        let expected = self.written.borrow().clone();
        for _ in 0..ATTEMPTS {
            // Swapped for an expired lease (kept, so the next run swaps too).
            match self.swap(Some(&expected), &self.value(0))? {
                None => {
                    if Self::current(self.kv)?.as_deref().and_then(parse).is_some_and(|h| h.run_id == self.run_id) {
                        self.kv.delete(LEASE_KEY).map_err(|e| kv_error("releasing the run lease", e))?;
                    }
                    return Ok(());
                }
                // Another run holds it now (or nobody): leave that alone.
                Some(ReadBack::Mine | ReadBack::Other(_)) => return Ok(()),
                Some(ReadBack::Unchanged) => {}
            }
        }
        Err(ConnectorError::Transport(format!(
            "key-value store did not take back this run's lease in {ATTEMPTS} swaps; it runs out by itself at {}",
            expiry_text(self.expires_at.get())
        )))
    }
}

/// Where a run holds its lease: renewed at its checkpoints and, as its
/// [`Meanwhile`], while it waits on a request or a backoff, so no other run
/// takes the tenant while one of this run's writes may still land. The
/// run's deadline bounds how long that keeps it.
#[derive(Default)]
pub struct Keeper<'a> {
    held: RefCell<Option<Lease<'a>>>,
}

impl<'a> Keeper<'a> {
    pub fn hold(&self, lease: Lease<'a>) {
        *self.held.borrow_mut() = Some(lease);
    }

    /// Keeps the lease alive; fails when another run took it over.
    pub fn renew(&self) -> Result<()> {
        self.held.borrow().as_ref().map_or(Ok(()), Lease::renew)
    }

    /// Gives the lease back, if one is held.
    pub fn release(&self) -> Result<()> {
        let held = self.held.borrow_mut().take();
        held.map_or(Ok(()), Lease::release)
    }
}

impl Meanwhile for Keeper<'_> {
    fn tick(&self) {
        // A renewal that fails here (the lease taken, the store down) fails
        // again at the next checkpoint, which ends the run: a request under
        // way is seen to its answer first.
        if let Some(lease) = self.held.borrow().as_ref() {
            let _ = lease.renew();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory_kv::{Memory, Swaps};
    use std::time::Duration;

    /// A settable clock that counts sleeps (each one a settle wait) and
    /// draws a new random number each time.
    struct At(Cell<i64>, Cell<u32>, Cell<u64>);
    impl Clock for At {
        fn now_unix(&self) -> i64 {
            self.0.get()
        }
        fn sleep(&self, _: Duration) {
            self.1.set(self.1.get() + 1);
        }
        fn random(&self) -> u64 {
            self.2.set(self.2.get() + 1);
            self.2.get()
        }
    }

    fn at(t: i64) -> At {
        At(Cell::new(t), Cell::new(0), Cell::new(0))
    }

    fn take<'a>(kv: &'a Memory, clock: &'a At, run: &str) -> Lease<'a> {
        Lease::acquire(kv, clock, run, 60).unwrap_or_else(|e| panic!("{:?}: {run}: {e}", kv.swaps))
    }

    fn refused(result: Result<Lease<'_>>) -> String {
        result.err().expect("the lease was refused").to_string()
    }

    fn stored(kv: &Memory) -> Option<Holder> {
        kv.get(LEASE_KEY).unwrap().as_deref().and_then(parse)
    }

    const WITH_CAS: [Swaps; 3] = [Swaps::Truthful, Swaps::AlwaysRefused, Swaps::AlwaysFails];

    #[test]
    fn a_held_lease_blocks_until_it_expires_or_is_released() {
        for kv in Memory::every_kind() {
            let clock = at(1_000);
            let first = take(&kv, &clock, "run-a");
            clock.0.set(1_015);
            let err = refused(Lease::acquire(&kv, &clock, "run-b", 60));
            assert!(err.contains("run run-a holds this tenant's lease until"), "{:?}: {err}", kv.swaps);
            assert!(err.contains("Try again in 45 s"), "when to retry: {err}");
            // A crashed holder: after expiry the next run takes over.
            clock.0.set(1_061);
            let second = take(&kv, &clock, "run-b");
            // The slow first run notices when it tries to renew.
            let err = first.renew().err().unwrap().to_string();
            assert!(err.contains("run run-b took over"), "{:?}: {err}", kv.swaps);
            second.release().unwrap();
            take(&kv, &clock, "run-c");
        }
    }

    #[test]
    fn renewal_extends_only_after_half_the_lease() {
        for kv in Memory::every_kind() {
            let clock = at(0);
            let lease = Lease::acquire(&kv, &clock, "run-a", 100).unwrap();
            clock.0.set(40);
            lease.renew().unwrap();
            assert_eq!(lease.expires_at.get(), 100);
            clock.0.set(60);
            lease.renew().unwrap();
            assert_eq!(lease.expires_at.get(), 160, "{:?}", kv.swaps);
            assert_eq!(stored(&kv).unwrap().expires_at, 160, "{:?}", kv.swaps);
        }
    }

    #[test]
    fn a_kept_lease_is_renewed_while_the_run_waits_and_not_after_release() {
        for kv in Memory::every_kind() {
            let clock = at(0);
            let keeper = Keeper::default();
            keeper.tick();
            assert!(stored(&kv).is_none(), "nothing held, nothing written");
            keeper.hold(Lease::acquire(&kv, &clock, "run-a", 100).unwrap());
            clock.0.set(60);
            keeper.tick();
            assert_eq!(stored(&kv).unwrap().expires_at, 160, "{:?}", kv.swaps);
            keeper.release().unwrap();
            clock.0.set(200);
            keeper.tick();
            assert_eq!(stored(&kv).map(|h| h.expires_at).unwrap_or(0), 0, "given back stays given back");
            // Taken over by another run: the wait goes on, the checkpoint stops the run.
            keeper.hold(Lease::acquire(&kv, &clock, "run-b", 100).unwrap());
            clock.0.set(301);
            let other = take(&kv, &clock, "run-c");
            keeper.tick();
            assert_eq!(stored(&kv).unwrap().run_id, "run-c");
            assert!(keeper.renew().is_err());
            other.release().unwrap();
        }
    }

    #[test]
    fn with_compare_and_swap_only_the_first_lease_waits_to_settle() {
        for swaps in WITH_CAS {
            let (kv, clock) = (Memory::with(swaps), at(0));
            take(&kv, &clock, "run-a").release().unwrap();
            assert_eq!(clock.1.get(), 1, "the first lease is written and read back");
            // Released means kept, expired: the next runs swap it without waiting.
            let kept = stored(&kv).unwrap();
            assert_eq!((kept.run_id.as_str(), kept.expires_at), ("run-a", 0), "{swaps:?}");
            take(&kv, &clock, "run-b").release().unwrap();
            take(&kv, &clock, "run-c");
            assert_eq!(clock.1.get(), 1, "{swaps:?}");
        }
    }

    #[test]
    fn a_store_that_swaps_absent_keys_never_waits_to_settle() {
        let (kv, clock) = (Memory::with(Swaps::Atomic), at(0));
        let first = take(&kv, &clock, "run-a");
        assert_eq!(stored(&kv).unwrap().run_id, "run-a");
        assert!(refused(Lease::acquire(&kv, &clock, "run-b", 60)).contains("run run-a holds"));
        first.release().unwrap();
        take(&kv, &clock, "run-b").release().unwrap();
        assert_eq!(clock.1.get(), 0, "no lease was written and read back after a wait");
        // A rival's first lease lands between this run's read and its swap.
        let (kv, clock) = (Memory::with(Swaps::Atomic), at(0));
        let rival = Holder { run_id: "run-rival".into(), nonce: "1".into(), expires_at: 60 };
        *kv.intruder.borrow_mut() = Some(serde_json::to_vec(&rival).unwrap());
        let err = refused(Lease::acquire(&kv, &clock, "run-b", 60));
        assert!(err.contains("run run-rival took this tenant's lease at the same moment"), "{err}");
        assert_eq!((stored(&kv).unwrap(), clock.1.get()), (rival, 0));
    }

    /// Spin 4.0.2's Redis store writes a swap when the key is unchanged and
    /// answers cas-failed all the same.
    #[test]
    fn when_every_swap_is_answered_refused_the_value_read_back_decides() {
        let (kv, clock) = (Memory::with(Swaps::AlwaysRefused), at(0));
        take(&kv, &clock, "run-a").release().unwrap();
        for (n, run) in ["run-b", "run-c", "run-d"].into_iter().enumerate() {
            let now = 10 * (n as i64 + 1);
            clock.0.set(now);
            let lease = take(&kv, &clock, run);
            let held = stored(&kv).unwrap();
            assert_eq!((held.run_id.as_str(), held.expires_at), (run, now + 60));
            let err = refused(Lease::acquire(&kv, &clock, "run-x", 60));
            assert!(err.contains(&format!("run {run} holds this tenant's lease")), "{err}");
            lease.release().unwrap();
            let kept = stored(&kv).unwrap();
            assert_eq!((kept.run_id.as_str(), kept.expires_at), (run, 0), "given back, not left live");
        }
        assert_eq!(clock.1.get(), 1, "only the very first lease settled");
    }

    #[test]
    fn every_write_carries_a_fresh_nonce() {
        for kv in Memory::every_kind() {
            let clock = at(0);
            let lease = take(&kv, &clock, "run-a");
            let taken = stored(&kv).unwrap();
            clock.0.set(30);
            lease.renew().unwrap();
            let renewed = stored(&kv).unwrap();
            assert_ne!(taken.nonce, renewed.nonce, "{:?}", kv.swaps);
            assert!(!taken.nonce.is_empty());
            if kv.swaps != Swaps::Unsupported {
                lease.release().unwrap();
                assert_ne!(stored(&kv).unwrap().nonce, renewed.nonce);
            }
        }
    }

    #[test]
    fn a_competitor_swapping_first_wins_and_this_run_does_nothing() {
        for swaps in WITH_CAS {
            let (kv, clock) = (Memory::with(swaps), at(0));
            take(&kv, &clock, "run-a").release().unwrap();
            let rival = Holder { run_id: "run-rival".into(), nonce: "1".into(), expires_at: 60 };
            *kv.intruder.borrow_mut() = Some(serde_json::to_vec(&rival).unwrap());
            let err = refused(Lease::acquire(&kv, &clock, "run-b", 60));
            assert!(err.contains("run run-rival took this tenant's lease at the same moment"), "{swaps:?}: {err}");
            assert_eq!(stored(&kv).unwrap(), rival, "{swaps:?}");
        }
    }

    #[test]
    fn a_competitor_writing_last_wins_the_first_lease_and_nothing_of_this_run_remains() {
        for kv in Memory::every_kind() {
            let clock = at(0);
            let rival = Holder { run_id: "run-rival".into(), nonce: "1".into(), expires_at: 60 };
            *kv.intruder.borrow_mut() = Some(serde_json::to_vec(&rival).unwrap());
            let err = refused(Lease::acquire(&kv, &clock, "run-b", 60));
            assert!(err.contains("run run-rival took this tenant's lease at the same moment"), "{:?}: {err}", kv.swaps);
            assert_eq!(stored(&kv).unwrap(), rival, "{:?}", kv.swaps);
        }
    }

    #[test]
    fn a_run_whose_lease_was_swapped_away_stops_and_leaves_the_new_holder_alone() {
        for kv in Memory::every_kind() {
            let clock = at(0);
            let slow = take(&kv, &clock, "run-slow");
            let rival = Holder { run_id: "run-rival".into(), nonce: "1".into(), expires_at: 200 };
            kv.map.borrow_mut().insert(LEASE_KEY.into(), serde_json::to_vec(&rival).unwrap());
            clock.0.set(45);
            assert!(slow.renew().err().unwrap().to_string().contains("run run-rival took over"), "{:?}", kv.swaps);
            slow.release().unwrap();
            assert_eq!(stored(&kv).unwrap(), rival, "{:?}", kv.swaps);
        }
    }

    #[test]
    fn swaps_the_store_did_not_write_are_tried_again() {
        for swaps in [Swaps::Atomic, Swaps::Truthful, Swaps::AlwaysRefused] {
            let (kv, clock) = (Memory::with(swaps), at(0));
            take(&kv, &clock, "run-a").release().unwrap();
            kv.dropped.set(ATTEMPTS - 1);
            let lease = take(&kv, &clock, "run-b");
            assert_eq!(stored(&kv).unwrap().expires_at, 60, "{swaps:?}");
            // A renewal that does not land leaves the running lease be.
            clock.0.set(31);
            kv.dropped.set(ATTEMPTS);
            lease.renew().unwrap();
            assert_eq!((lease.expires_at.get(), stored(&kv).unwrap().expires_at), (60, 60), "{swaps:?}");
            kv.dropped.set(ATTEMPTS - 1);
            lease.renew().unwrap();
            assert_eq!(stored(&kv).unwrap().expires_at, 91, "{swaps:?}");
            kv.dropped.set(ATTEMPTS - 1);
            lease.release().unwrap();
            assert_eq!(stored(&kv).unwrap().expires_at, 0, "{swaps:?}");
            // A store that writes none: an error, and nothing of this run's.
            kv.dropped.set(ATTEMPTS);
            let err = refused(Lease::acquire(&kv, &clock, "run-c", 60));
            assert!(err.contains("did not apply 3 swaps"), "{swaps:?}: {err}");
            assert_eq!(stored(&kv).unwrap().run_id, "run-b", "{swaps:?}");
        }
        // An error answer and nothing written: the store failed.
        let (kv, clock) = (Memory::with(Swaps::AlwaysFails), at(0));
        take(&kv, &clock, "run-a").release().unwrap();
        kv.dropped.set(1);
        let err = refused(Lease::acquire(&kv, &clock, "run-b", 60));
        assert!(err.contains("key-value store failed while swapping the run lease"), "{err}");
        assert_eq!(stored(&kv).unwrap().run_id, "run-a");
    }
}
