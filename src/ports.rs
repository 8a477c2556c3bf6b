//! What the core needs from its host. `component` implements these over the
//! WIT imports; nothing else in the crate touches the host.

use crate::http::{HttpRequest, HttpResponse};
use crate::model::AuditEntry;
use std::time::Duration;

/// Why a request got no response at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host refused to send it: `authority` is not a destination this
    /// tenant may reach. Final: retrying cannot help.
    Denied { authority: String },
    /// DNS, refused, reset, timed out: the network failed; may be retried.
    Failed(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Denied { authority } => write!(f, "the host denied a request to {authority}"),
            TransportError::Failed(m) => f.write_str(m),
        }
    }
}

/// What a run does while it is blocked on the network or sleeps out a
/// backoff: it keeps its lease (see `sync::lease::Keeper`), so a request
/// Salesforce is slow to answer cannot outlive it and land after a newer
/// run's write. Called at each wake-up of such a wait, and at least every
/// [`MEANWHILE_EVERY`] of it: cheap when there is nothing to do.
pub trait Meanwhile {
    fn tick(&self);
}

/// How often a blocked run does its [`Meanwhile`]: a lease lasts 2 s at the
/// least and is renewed once half of it is used.
pub const MEANWHILE_EVERY: Duration = Duration::from_millis(250);

/// Nothing to keep (a dry run, a host call outside a run).
pub struct Idle;

impl Meanwhile for Idle {
    fn tick(&self) {}
}

/// A request under way: the host carries it on while the guest does other
/// work; `wait` blocks until the response is complete, doing `meanwhile`.
pub trait PendingResponse {
    fn wait(self: Box<Self>, meanwhile: &dyn Meanwhile) -> Result<HttpResponse, TransportError>;
}

/// HTTP out. Errors are for requests that got no response at all.
pub trait Transport {
    /// Sends the request (its body written, doing `meanwhile` while the host
    /// cannot take more of it) and returns without waiting for the response.
    fn start(
        &self,
        request: &HttpRequest,
        meanwhile: &dyn Meanwhile,
    ) -> Result<Box<dyn PendingResponse>, TransportError>;

    fn send(&self, request: &HttpRequest, meanwhile: &dyn Meanwhile) -> Result<HttpResponse, TransportError> {
        self.start(request, meanwhile)?.wait(meanwhile)
    }
}

/// A key-value bucket. Values are opaque bytes.
pub trait KeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&self, key: &str) -> Result<(), String>;
    /// Values for `keys`, in order; `None` where a key is absent.
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String>;
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), String>;
    fn delete_many(&self, keys: &[String]) -> Result<(), String>;
    /// The keys in the bucket that start with `prefix` (`""`: every key) and
    /// that `keep` accepts, in no promised order; `keep` is called only with
    /// keys that start with `prefix` (callers count with it). Only those are held while
    /// the bucket is listed, so a short queue is found without holding the
    /// keys of a long one, and a long one can be taken a part at a time.
    fn list_keys_where(&self, prefix: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>, String>;
    /// Every key that starts with `prefix`.
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.list_keys_where(prefix, &mut |_| true)
    }
    /// True where every listing fetches the whole store at once whatever
    /// `prefix` and `keep` say (Spin's `get_keys`): taking a long list a part
    /// at a time there would hold no less and fetch it again for each part.
    fn lists_whole_store(&self) -> bool {
        false
    }
    /// Replaces the value of `key` with `new` only if it still is `expected`
    /// (`None`: only if it is absent), atomically; never writes otherwise.
    /// The answer is a hint, not a verdict: `Some(true)` says written,
    /// `Some(false)` says someone wrote first, an error says the store
    /// failed, and any of them may be wrong (Spin 4.0.2's Redis store answers
    /// `Some(false)` for every swap, written or not). A caller that must know
    /// reads the key back. `None`: this store cannot make this swap (none at
    /// all, or none of an absent key); callers fall back.
    fn swap_if(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Option<bool>, String> {
        let _ = (key, expected, new);
        Ok(None)
    }
}

/// Settings and secrets by name (`netsuite_account_id`, ...).
pub trait Config {
    fn get(&self, name: &str) -> Result<Option<String>, String>;
}

pub trait AuditSink {
    /// Takes the entries: a host may move their text instead of copying it.
    fn append(&self, entries: Vec<AuditEntry>);
}

/// What the host tells a run while it runs, and learns of its progress.
/// A host that never stops runs early and shows no progress (the Spin
/// build: a request is its run) keeps both defaults.
pub trait RunControl {
    /// Asked at each checkpoint: a reason when the host wants the run to end
    /// there (it is shutting down).
    fn stop_requested(&self) -> Option<String> {
        None
    }
    /// How many records of `kind` this run's read holds (NetSuite's count).
    fn expect(&self, _kind: crate::model::RecordKind, _records: u64) {}
}

/// The defaults: never stop early, show nothing.
pub struct NoControl;

impl RunControl for NoControl {}

/// Time as the host sees it; the harness may run it faster than real time.
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
    fn sleep(&self, duration: Duration);
    /// A uniformly random u64, for jitter.
    fn random(&self) -> u64;
}

/// The clock of a wasm guest (either build): WASI wall clock, real sleeps,
/// WASI randomness. The harness's simulated time reaches it through its host.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
    fn random(&self) -> u64 {
        getrandom::u64().unwrap_or(0)
    }
}

/// Everything the shell of the connector runs against.
pub struct Host<'a> {
    pub transport: &'a dyn Transport,
    /// Cursors, record hashes and other sync state.
    pub state: &'a dyn KeyValue,
    /// Tokens and rotated refresh tokens; the host keeps this bucket encrypted.
    pub credentials: &'a dyn KeyValue,
    /// Failed writes kept for replay and records deferred until their parent
    /// is in Salesforce; small, so it can be listed.
    pub queues: &'a dyn KeyValue,
    /// Marks of writes on their way to Salesforce (see `sync::in_flight`):
    /// a `set` is durable when it returns, and a `delete` lands only after
    /// every write made before it to the other buckets.
    pub in_flight: &'a dyn KeyValue,
    pub config: &'a dyn Config,
    pub audit: &'a dyn AuditSink,
    pub clock: &'a dyn Clock,
    pub control: &'a dyn RunControl,
    /// What a run does while blocked (see [`Meanwhile`]).
    pub meanwhile: &'a dyn Meanwhile,
}

impl Host<'_> {
    /// Sleeps `duration` (a backoff), doing the run's [`Meanwhile`] on the way.
    pub fn sleep(&self, duration: Duration) {
        sleep_meanwhile(self.clock, self.meanwhile, duration);
    }
}

fn sleep_meanwhile(clock: &dyn Clock, meanwhile: &dyn Meanwhile, duration: Duration) {
    let mut left = duration;
    while !left.is_zero() {
        let step = left.min(MEANWHILE_EVERY);
        clock.sleep(step);
        left -= step;
        meanwhile.tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Log(RefCell<Vec<String>>);
    impl Clock for Log {
        fn now_unix(&self) -> i64 {
            0
        }
        fn sleep(&self, duration: Duration) {
            self.0.borrow_mut().push(format!("sleep {}", duration.as_millis()));
        }
        fn random(&self) -> u64 {
            0
        }
    }
    impl Meanwhile for Log {
        fn tick(&self) {
            self.0.borrow_mut().push("tick".into());
        }
    }

    #[test]
    fn a_long_sleep_is_cut_into_pieces_with_the_runs_work_between() {
        let log = Log::default();
        sleep_meanwhile(&log, &log, Duration::from_millis(600));
        assert_eq!(log.0.take(), ["sleep 250", "tick", "sleep 250", "tick", "sleep 100", "tick"]);
        sleep_meanwhile(&log, &log, Duration::ZERO);
        assert!(log.0.take().is_empty());
    }
}
