//! The core's ports over what Spin provides: outbound wasi:http,
//! one key-value store (buckets become key prefixes), variables for
//! settings and secrets, the component log and key-value for the audit.

use base64::Engine as _;
use netsuite_salesforce::model::AuditEntry;
use netsuite_salesforce::ports::{AuditSink, Clock, Config, Host, Idle, KeyValue, NoControl, SystemClock};
use netsuite_salesforce::sealing::{SealError, SealingKey};
use spin_sdk::key_value::Store;
// spin-sdk 5 wraps only fermyon:spin/key-value, which has no compare-and-swap;
// its generated wasi:keyvalue bindings (same stores, same labels) do.
use spin_sdk::wit::wasi::keyvalue::{atomics, store as wasi_store};

// Outbound HTTP straight over wasi:http (what spin-sdk's `send` wraps), so a
// request is in flight from `start` and the core can overlap them.
netsuite_salesforce::wasi_http_transport!(wasi);

/// A bucket of the connector's: keys under `<prefix>/` in Spin's store;
/// the credentials bucket is sealed with the `credentials_key` variable.
struct Bucket<'s> {
    store: &'s Store,
    prefix: &'static str,
    sealed: Option<&'s SealingKey>,
    /// The same store through wasi:keyvalue, for compare-and-swap.
    atomic: Option<&'s wasi_store::Bucket>,
}

impl Bucket<'_> {
    fn key(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix)
    }

    /// The full key is the associated data, so a value copied under another
    /// key does not open.
    fn seal(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, String> {
        let Some(sealing) = self.sealed else { return Ok(value.to_vec()) };
        sealing.seal(key.as_bytes(), value).map_err(|e| format!("credential `{key}` not stored: {e}"))
    }

    fn open(&self, key: &str, sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        let Some(sealing) = self.sealed else { return Ok(sealed) };
        sealing.open(key.as_bytes(), &sealed).map_err(|e| match e {
            SealError::Truncated => format!("credential `{key}` is damaged; delete it"),
            _ => format!("credential `{key}` cannot be decrypted: credentials_key changed; delete it"),
        })
    }
}

fn kv(e: spin_sdk::key_value::Error) -> String {
    e.to_string()
}

impl KeyValue for Bucket<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let full = self.key(key);
        self.store.get(&full).map_err(kv)?.map(|v| self.open(&full, v)).transpose()
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let full = self.key(key);
        self.store.set(&full, &self.seal(&full, value)?).map_err(kv)
    }
    fn delete(&self, key: &str) -> Result<(), String> {
        self.store.delete(&self.key(key)).map_err(kv)
    }
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), String> {
        entries.iter().try_for_each(|(k, v)| self.set(k, v))
    }
    fn delete_many(&self, keys: &[String]) -> Result<(), String> {
        keys.iter().try_for_each(|k| self.delete(k))
    }
    fn list_keys_where(&self, wanted: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>, String> {
        let prefix = format!("{}/", self.prefix);
        // Spin answers every key of the store in one list: that much is held
        // here whatever `keep` says.
        let mut keys: Vec<String> = self
            .store
            .get_keys()
            .map_err(kv)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).filter(|k| k.starts_with(wanted) && keep(k)).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }
    fn lists_whole_store(&self) -> bool {
        true
    }
    fn swap_if(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Option<bool>, String> {
        // Sealed values carry a fresh nonce each write: nothing to compare.
        // An absent key is never swapped: the SQLite store would upsert it.
        let (Some(bucket), None, Some(expected)) = (self.atomic, &self.sealed, expected) else { return Ok(None) };
        let cas = atomics::Cas::new(bucket, &self.key(key)).map_err(|e| format!("{e:?}"))?;
        // `current` makes the swap conditional on the value it read (Redis:
        // WATCH).
        if cas.current().map_err(|e| format!("{e:?}"))?.as_deref() != Some(expected) {
            return Ok(Some(false));
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(Some(true)),
            // Only a hint: Spin 4.0.2's Redis store answers this for every
            // swap, written or not (its `UNWATCH <key>` is refused).
            Err(atomics::CasError::CasFailed(_)) => Ok(Some(false)),
            Err(atomics::CasError::StoreError(e)) => Err(format!("{e:?}")),
        }
    }
}

struct Variables;

impl Config for Variables {
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        match spin_sdk::variables::get(name) {
            Ok(v) => Ok(Some(v)),
            Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Audit entries go to the component log and to key-value: each append (one
/// page or write slice) is one key `audit/<run>/<seq>` of JSON lines, listed
/// in `audit/index` with the run's start, so runs older than the retention
/// are deleted without listing the store's keys. Only the run holding the
/// lease appends, so the index has one writer at a time.
struct Audit<'s> {
    store: &'s Store,
    retention_secs: i64,
}

pub const AUDIT_INDEX: &str = "audit/index";

#[derive(serde::Serialize, serde::Deserialize)]
struct AuditRun {
    run: String,
    at: i64,
    chunks: u32,
}

impl Audit<'_> {
    fn index(&self) -> Result<Vec<AuditRun>, String> {
        match self.store.get(AUDIT_INDEX).map_err(kv)? {
            None => Ok(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("`{AUDIT_INDEX}` is damaged ({e})")),
        }
    }

    /// Stores one chunk of `run`'s lines; a run's first chunk also prunes
    /// runs past the retention.
    fn store_chunk(&self, run: &str, lines: &str) -> Result<(), String> {
        let mut index = self.index()?;
        let now = SystemClock.now_unix();
        let chunk = match index.iter_mut().find(|r| r.run == run) {
            Some(r) => {
                r.chunks += 1;
                r.chunks - 1
            }
            None => {
                let (expired, kept): (Vec<_>, Vec<_>) =
                    index.into_iter().partition(|r| r.at < now - self.retention_secs);
                for old in &expired {
                    for n in 0..old.chunks {
                        self.store.delete(&format!("audit/{}/{n:06}", old.run)).map_err(kv)?;
                    }
                }
                index = kept;
                index.push(AuditRun { run: run.to_string(), at: now, chunks: 1 });
                0
            }
        };
        self.store.set(&format!("audit/{run}/{chunk:06}"), lines.as_bytes()).map_err(kv)?;
        let index = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
        self.store.set(AUDIT_INDEX, &index).map_err(kv)
    }
}

impl AuditSink for Audit<'_> {
    fn append(&self, entries: Vec<AuditEntry>) {
        let mut runs: Vec<(&str, String)> = Vec::new();
        for e in &entries {
            let line = serde_json::json!({
                "run_id": e.run_id,
                "kind": e.kind.as_str(),
                "action": e.action.as_str(),
                "direction": e.action.direction(),
                "netsuite_id": e.netsuite_id,
                "salesforce_id": e.salesforce_id,
                "outcome": e.outcome,
                "transformations": serde_json::from_str::<serde_json::Value>(&e.transformations.clone().joined()).unwrap_or_default(),
                "error": e.error,
            })
            .to_string();
            println!("audit {line}");
            match runs.iter_mut().find(|(r, _)| *r == e.run_id) {
                Some((_, lines)) => {
                    lines.push('\n');
                    lines.push_str(&line);
                }
                None => runs.push((&e.run_id, line)),
            }
        }
        for (run, lines) in runs {
            // The log above has every entry; say so rather than lose the run.
            if let Err(err) = self.store_chunk(run, &lines) {
                println!("audit entries of run {run} are in this log only: key-value failed ({err})");
            }
        }
    }
}

/// Everything one request's work runs against.
pub struct SpinHost {
    store: Store,
    atomic: wasi_store::Bucket,
    sealing: SealingKey,
    audit_retention_secs: i64,
}

/// `audit_retention_days`: empty means 30; whole days, at least 1.
fn audit_retention_secs() -> Result<i64, String> {
    let text = Variables.get("audit_retention_days")?.unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(30 * 86_400);
    }
    match text.trim().parse::<i64>() {
        Ok(days) if (1..=3650).contains(&days) => Ok(days * 86_400),
        _ => Err(format!(
            "variable `audit_retention_days` is {text:?}: give whole days from 1 to 3650, or leave it empty for 30"
        )),
    }
}

impl SpinHost {
    pub fn open() -> Result<SpinHost, String> {
        let store = Store::open_default().map_err(|e| format!("Spin key-value store `default`: {e}"))?;
        let atomic = wasi_store::open("default")
            .map_err(|e| format!("Spin key-value store `default` through wasi:keyvalue (Spin 3.0 or newer): {e:?}"))?;
        let key = Variables.get("credentials_key")?.ok_or(
            "variable `credentials_key` (32 random bytes, base64; secret) is not set: tokens are stored sealed with it",
        )?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| "variable `credentials_key` is not base64".to_string())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "variable `credentials_key` must be 32 bytes".to_string())?;
        Ok(SpinHost { store, atomic, sealing: SealingKey::new(&key), audit_retention_secs: audit_retention_secs()? })
    }

    pub fn host(&self) -> HostParts<'_> {
        HostParts {
            state: Bucket { store: &self.store, prefix: "state", sealed: None, atomic: Some(&self.atomic) },
            credentials: Bucket {
                store: &self.store,
                prefix: "credentials",
                sealed: Some(&self.sealing),
                atomic: None,
            },
            queues: Bucket { store: &self.store, prefix: "queues", sealed: None, atomic: Some(&self.atomic) },
            // Spin's writes are synchronous and in order: a set is durable
            // when it returns, and a delete follows every write before it.
            in_flight: Bucket { store: &self.store, prefix: "in-flight", sealed: None, atomic: None },
            audit: Audit { store: &self.store, retention_secs: self.audit_retention_secs },
        }
    }
}

/// The buckets and sinks borrowed from one store, lending out a `Host`.
pub struct HostParts<'s> {
    state: Bucket<'s>,
    credentials: Bucket<'s>,
    queues: Bucket<'s>,
    in_flight: Bucket<'s>,
    audit: Audit<'s>,
}

impl HostParts<'_> {
    pub fn as_host(&self) -> Host<'_> {
        Host {
            transport: &WasiTransport,
            state: &self.state,
            credentials: &self.credentials,
            queues: &self.queues,
            in_flight: &self.in_flight,
            config: &Variables,
            audit: &self.audit,
            clock: &SystemClock,
            control: &NoControl,
            meanwhile: &Idle,
        }
    }
}
