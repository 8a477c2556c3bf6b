//! What a run has done so far, counted from its audit entries as the guest
//! hands them over (page by page), for a live display.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Progress {
    /// Audit entries by record kind, then outcome (created, updated, failed, ...).
    counts: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
}

impl Progress {
    pub fn record(&self, kind: &'static str, outcome: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(kind).or_default().entry(outcome.to_string()).or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One line: per kind, records done and their outcomes, and the rate.
    pub fn line(&self, elapsed_secs: f64) -> String {
        let snapshot = self.snapshot();
        if snapshot.is_empty() {
            return "reading NetSuite…".into();
        }
        let parts: Vec<String> = snapshot
            .iter()
            .map(|(kind, outcomes)| {
                let total: u64 = outcomes.values().sum();
                let rate = if elapsed_secs > 0.0 { total as f64 / elapsed_secs } else { 0.0 };
                let detail: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
                format!("{kind} {total} ({}; {rate:.0}/s)", detail.join(", "))
            })
            .collect();
        parts.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_outcome_with_a_rate() {
        let p = Progress::default();
        assert_eq!(p.line(1.0), "reading NetSuite…");
        for _ in 0..3 {
            p.record("customer", "created");
        }
        p.record("customer", "failed");
        p.record("contact", "deferred");
        assert_eq!(p.line(2.0), "contact 1 (deferred 1; 0/s) · customer 4 (created 3, failed 1; 2/s)");
    }
}
