//! The guest's CPU budget (`max_cpu_ms`): time spent running the
//! component's own code, with host calls (HTTP waits, SQLite, key-value)
//! left out, so a run waiting on slow APIs is not charged for them. It is
//! counted at every crossing of the component boundary and checked on each
//! epoch tick as well, so a loop that never calls out is stopped too.

use std::time::{Duration, Instant};
use wasmtime::CallHook;

#[derive(Debug)]
pub struct CpuMeter {
    budget: Option<Duration>,
    used: Duration,
    /// When the guest last started running its own code, while it does.
    running_since: Option<Instant>,
    /// The budget ran out and the run was stopped for it.
    pub exhausted: bool,
}

/// What a trap raised for the budget carries; the summary is made from the
/// meter (see `Trap::of`).
#[derive(Debug)]
pub struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run's CPU budget (max_cpu_ms) ran out")
    }
}

impl std::error::Error for OverBudget {}

impl CpuMeter {
    pub fn new(budget: Option<Duration>) -> CpuMeter {
        CpuMeter { budget, used: Duration::ZERO, running_since: None, exhausted: false }
    }

    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Guest time so far, the stretch running now included.
    pub fn used(&self) -> Duration {
        self.used + self.running_since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// A crossing of the component boundary; an error stops the run.
    pub fn crossed(&mut self, hook: CallHook) -> wasmtime::Result<()> {
        self.crossed_at(hook, Instant::now())
    }

    fn crossed_at(&mut self, hook: CallHook, now: Instant) -> wasmtime::Result<()> {
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => self.running_since = Some(now),
            CallHook::CallingHost | CallHook::ReturningFromWasm => {
                if let Some(since) = self.running_since.take() {
                    self.used += now.saturating_duration_since(since);
                }
            }
        }
        self.check()
    }

    /// Fails once the budget is spent (an epoch tick asks, as does every crossing).
    pub fn check(&mut self) -> wasmtime::Result<()> {
        match self.budget {
            Some(budget) if self.used() > budget => {
                self.exhausted = true;
                Err(OverBudget.into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_guests_own_stretches_count() {
        let mut meter = CpuMeter::new(Some(Duration::from_millis(10)));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        meter.crossed_at(CallHook::CallingWasm, at(0)).unwrap();
        meter.crossed_at(CallHook::CallingHost, at(4)).unwrap();
        // 100 ms waiting on the host are not charged.
        meter.crossed_at(CallHook::ReturningFromHost, at(104)).unwrap();
        meter.crossed_at(CallHook::ReturningFromWasm, at(109)).unwrap();
        assert_eq!(meter.used, Duration::from_millis(9));
        assert!(!meter.exhausted);
        meter.crossed_at(CallHook::CallingWasm, at(200)).unwrap();
        let over = meter.crossed_at(CallHook::CallingHost, at(202)).unwrap_err();
        assert!(over.downcast_ref::<OverBudget>().is_some());
        assert!(meter.exhausted);
    }

    #[test]
    fn without_a_budget_nothing_stops() {
        let mut meter = CpuMeter::new(None);
        let t0 = Instant::now();
        meter.crossed_at(CallHook::CallingWasm, t0).unwrap();
        meter.crossed_at(CallHook::ReturningFromWasm, t0 + Duration::from_secs(3600)).unwrap();
        assert!(meter.check().is_ok());
        assert_eq!(meter.used(), Duration::from_secs(3600));
    }
}
