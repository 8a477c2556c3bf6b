//! What a run has done so far, counted from its audit entries as the guest
//! hands them over (page by page), for a live display.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Progress {
    /// Audit entries by record kind, then outcome (created, updated, failed, ...).
    counts: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// Records each kind's read holds, as NetSuite counted them.
    expected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Progress {
    pub fn record(&self, kind: &'static str, outcome: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(kind).or_default().entry(outcome.to_string()).or_default() += 1;
    }

    /// NetSuite's count of the records the run reads of `kind`.
    pub fn expect(&self, kind: &'static str, records: u64) {
        self.expected.lock().unwrap_or_else(|p| p.into_inner()).insert(kind, records);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One line: per kind, records done (of those NetSuite counted) and
    /// their outcomes, the rate, and when the kind should be done.
    pub fn line(&self, elapsed_secs: f64) -> String {
        let snapshot = self.snapshot();
        if snapshot.is_empty() {
            return "reading NetSuite…".into();
        }
        let expected = self.expected.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let parts: Vec<String> = snapshot
            .iter()
            .map(|(kind, outcomes)| {
                let done: u64 = outcomes.values().sum();
                let rate = if elapsed_secs > 0.0 { done as f64 / elapsed_secs } else { 0.0 };
                let detail: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
                let (of, eta) = match expected.get(kind) {
                    Some(&total) if total > done && rate > 0.0 => {
                        (format!("/{total}"), format!(", ETA {}", eta_text((total - done) as f64 / rate)))
                    }
                    Some(&total) => (format!("/{total}"), String::new()),
                    None => (String::new(), String::new()),
                };
                format!("{kind} {done}{of} ({}; {rate:.0}/s{eta})", detail.join(", "))
            })
            .collect();
        parts.join(" · ")
    }
}

/// Seconds to go as `42 s` or `3 min 05 s`.
fn eta_text(secs: f64) -> String {
    let secs = secs.ceil() as u64;
    match secs {
        0..60 => format!("{secs} s"),
        _ => format!("{} min {:02} s", secs / 60, secs % 60),
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

    #[test]
    fn netsuites_count_gives_the_share_done_and_an_eta() {
        let p = Progress::default();
        p.expect("customer", 1000);
        for _ in 0..100 {
            p.record("customer", "created");
        }
        assert_eq!(p.line(2.0), "customer 100/1000 (created 100; 50/s, ETA 18 s)");
        assert_eq!(p.line(20.0), "customer 100/1000 (created 100; 5/s, ETA 3 min 00 s)");
        p.expect("customer", 100);
        assert_eq!(p.line(2.0), "customer 100/100 (created 100; 50/s)");
    }
}
