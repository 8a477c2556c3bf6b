//! Simulated time: real time plus an offset the tests can move forward. The
//! simulators and the guest's wall clock (in the harness) share one, so "60 minutes later"
//! takes no time at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Default, Debug)]
pub struct SimClock {
    offset_secs: Arc<AtomicI64>,
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock::default()
    }

    pub fn advance(&self, by: Duration) {
        self.offset_secs.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }

    pub fn now(&self) -> Duration {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let offset = self.offset_secs.load(Ordering::SeqCst);
        if offset >= 0 {
            real + Duration::from_secs(offset as u64)
        } else {
            real.saturating_sub(Duration::from_secs(offset.unsigned_abs()))
        }
    }

    pub fn now_secs(&self) -> i64 {
        self.now().as_secs() as i64
    }
}
