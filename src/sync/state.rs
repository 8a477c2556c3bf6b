//! Sync state in the host's key-value store: cursors, content hashes of what
//! Salesforce holds, and failed writes kept for replay.

use super::kv_error;
use crate::model::{ConnectorError, Cursor, NetSuiteRecord, RecordKind, Result, SObjectRecord};
use crate::ports::KeyValue;
use crate::salesforce::limits::ApiUsage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub fn cursor_key(kind: RecordKind) -> String {
    format!("cursor/{kind}")
}

pub fn deleted_cursor_key(kind: RecordKind) -> String {
    format!("cursor/deleted/{kind}")
}

/// A stored Salesforce cursor's modstamp, org and the tag of the fields it
/// polled for (see [`State::salesforce_cursor`]): `{modstamp}@{org}#{tag}`;
/// earlier builds stored `{modstamp}@{org}` or the modstamp alone.
pub fn salesforce_cursor_parts(text: &str) -> (&str, Option<&str>, Option<&str>) {
    match text.split_once('@') {
        Some((modstamp, rest)) => match rest.split_once('#') {
            Some((org, tag)) => (modstamp, Some(org), Some(tag)),
            None => (modstamp, Some(rest), None),
        },
        None => (text, None, None),
    }
}

/// The org's API usage the last run saw last, `{used}/{limit}`.
const API_USAGE_KEY: &str = "salesforce/api-usage";

pub fn salesforce_cursor_key(kind: RecordKind) -> String {
    format!("cursor/salesforce/{kind}")
}

pub fn record_key(kind: RecordKind, id: &str) -> String {
    // Pieces pushed, not `format!`: its machinery cost 170 ns a key, two
    // keys a record of a first sync.
    let kind = kind.as_str();
    let mut key = String::with_capacity("record//".len() + kind.len() + id.len());
    for piece in ["record/", kind, "/", id] {
        key.push_str(piece);
    }
    key
}

/// A cursor as stored: where reading continues, when it last moved (host
/// wall clock), and whether its overlap window has been re-read after late
/// commits could no longer land in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCursor {
    #[serde(flatten)]
    pub cursor: Cursor,
    #[serde(default)]
    pub moved_at: i64,
    #[serde(default)]
    pub settled: bool,
    /// Set while a first sync reads the kind by internal id; `cursor` then
    /// is the epoch, settled, so a build that predates scans reads from the
    /// start by time instead (the same rows, in another order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<IdScan>,
    /// A first sync's hand-over window, still to be re-read once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck: Option<Recheck>,
    /// The NetSuite user's UTC offset (seconds east) the times above are
    /// in, when known (see `sync::zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<i64>,
}

/// The overlap window before the point a long first sync handed over at. A
/// row committed late into it, or changed in that point's second after the
/// read passed it, is found by re-reading it once, when late commits can no
/// longer land in it; runs before then read from past that second and do not
/// rewind behind it, so a kind whose rows share one time (a bulk import) is
/// not read whole again by each of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recheck {
    /// The hand-over point: the window before it is re-read.
    pub from: Cursor,
    /// Host wall clock (Unix seconds) after which a run starting re-reads it.
    pub due: i64,
}

/// A first sync's read of a kind in internal id order, under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdScan {
    /// The last internal id whose page is recorded.
    pub after: String,
    /// Where the kind's change stream continues once the scan has read every
    /// row: the newest lastmodifieddate when the scan began (rows changed
    /// after that may have been passed already; they are read again then).
    /// None: the kind had no rows then.
    pub then: Option<Cursor>,
    /// Host wall clock (Unix seconds) when the scan began, once `then` was
    /// answered (0 in states kept before it was recorded: long ago).
    #[serde(default)]
    pub began_at: i64,
    /// The ranges still to read, each from where it stands: every id outside
    /// them up to the last one's start is recorded, so the next run reads
    /// only these. Empty (states kept before ranges were stored, or a scan
    /// whose ranges were all read): one range, every id after `after` —
    /// also how a build that knows only `after` goes on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenRange>,
    /// The highest id NetSuite knew when the scan split, so a resumed scan
    /// can split its open-ended range again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<u64>,
    /// A read of every row (`--full`, or a re-read after the mapping, the org
    /// or the account changed): the provenance its records are to follow
    /// (see `Provenance`). A run after a stop goes on counting every row,
    /// not only changed ones, while that provenance holds. None: a first
    /// sync, where every row is new anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// That read also compares each record with its live Salesforce copy
    /// (`--compare-live`), and so does the run that goes on with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}

/// A scan's range not read to its end: ids after `after`, up to `upto`
/// (inclusive; None: no end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRange {
    pub after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<u64>,
}

/// Whether `a` lies strictly after `b` in (lastmodified, id) order.
pub fn is_after(a: &Cursor, b: &Cursor) -> bool {
    let id = |c: &Cursor| c.id.parse::<u64>().unwrap_or(0);
    (a.last_modified.as_str(), id(a)) > (b.last_modified.as_str(), id(b))
}

/// A stored state's bytes beyond its fields' text: keys, two digests, a
/// Salesforce id and an org id (about 190), with room to spare.
const STATE_OVERHEAD: usize = 256;

/// What the connector last did with one NetSuite record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordState {
    /// Digest of the NetSuite row as read: an identical re-read (the
    /// overlap window) is a duplicate and is dropped.
    pub src: String,
    /// Digest of what Salesforce holds: an identical mapping costs no write.
    pub dst: String,
    /// The Salesforce record id.
    pub sf: Option<String>,
    /// What Salesforce was last given (the fields' JSON text, kept as it was
    /// hashed and read back without being taken apart): the audit shows
    /// old → new per field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Box<serde_json::value::RawValue>>,
    /// The Salesforce org `dst` and `sf` refer to (stamped when saved).
    /// States kept before orgs were recorded have none and count as the
    /// current org's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The Salesforce record was deleted there (a write-back kind): the
    /// NetSuite record was made inactive, and stays out of Salesforce while
    /// it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sf_deleted: bool,
}

impl PartialEq for RecordState {
    fn eq(&self, other: &Self) -> bool {
        (&self.src, &self.dst, &self.sf, &self.org, self.sf_deleted)
            == (&other.src, &other.dst, &other.sf, &other.org, other.sf_deleted)
            && self.fields.as_ref().map(|f| f.get()) == other.fields.as_ref().map(|f| f.get())
    }
}

impl Eq for RecordState {}

/// Marks, on each transformation whose field changes, the old and new value.
pub fn annotate_changes(
    transformations: &mut [crate::model::Transformation],
    before: Option<&serde_json::Map<String, serde_json::Value>>,
    after: &serde_json::Map<String, serde_json::Value>,
) {
    for t in transformations {
        let (old, new) = (before.and_then(|b| b.get(&*t.field)), after.get(&*t.field));
        if old != new {
            t.old = old.cloned();
            t.new = new.cloned();
        }
    }
}

pub fn mapping_key(kind: RecordKind) -> String {
    format!("mapping/{kind}")
}

fn written_key(kind: RecordKind, org: &str) -> String {
    format!("written/{kind}@{org}")
}

/// The `src`/`dst` value of a record whose deletion was handled.
pub const DELETED: &str = "deleted";

/// A digest of a NetSuite row as read. It only tells a re-read of the
/// same row (the overlap window, a repeated event) from a change, so a fast
/// 128-bit hash does (XXH3; SHA-256 cost a large first sync a twentieth of
/// the component's time). States saved with the SHA-256 digest of earlier
/// builds do not match it: such a row, when read again, is mapped once
/// more and found unchanged against `dst` (see `holds_same`).
pub fn source_hash(record: &NetSuiteRecord) -> String {
    // Hashed in one piece: the streaming hasher's buffering of small
    // updates cost as much as the hash.
    let size = record.fields.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
    let mut bytes = Vec::with_capacity(record.last_modified.len() + size);
    bytes.extend_from_slice(record.last_modified.as_bytes());
    for (k, v) in record.fields.iter() {
        bytes.push(0);
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(1);
        bytes.extend_from_slice(v.as_bytes());
    }
    let mut hash = String::with_capacity(32);
    push_hex(&mut hash, xxhash_rust::xxh3::xxh3_128(&bytes));
    hash
}

/// Appends `digest` as 32 lowercase hex digits: `hex::encode` builds its
/// string a `char` at a time, a hundredth of a first sync in the component.
fn push_hex(dst: &mut String, digest: u128) {
    let mut digits = [0u8; 32];
    hex::encode_to_slice(digest.to_be_bytes(), &mut digits).expect("32 digits hold 16 bytes");
    dst.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
}

/// A digest of what the connector would write. serde_json maps are sorted,
/// so the same fields always give the same hash.
pub fn content_hash(record: &SObjectRecord) -> String {
    hashed_payload(record).0
}

/// Marks a `dst` digest as XXH3's. Builds before it kept the first 16
/// bytes of SHA-256 as 32 hex digits; such states still compare right
/// (`holds_same`), so nothing is rewritten for the change of hash.
const XXH3_DST: &str = "x";

/// The digest of what the connector would write and the fields' JSON text
/// it covers (kept in the state once the write lands). XXH3, not SHA-256:
/// like `source_hash`, it only tells whether Salesforce already holds this
/// output, and SHA-256 was a twentieth of a first sync's time in the
/// component.
pub fn hashed_payload(record: &SObjectRecord) -> (String, Box<serde_json::value::RawValue>) {
    // Written as raw JSON directly: `RawValue::from_string` would parse the
    // text serde_json just wrote once more, for every record.
    let payload = serde_json::value::to_raw_value(&record.fields).expect("a field map serializes");
    (payload_digest(&record.sobject, &record.external_id, payload.get()), payload)
}

/// The `dst` digest of the fields' JSON text `payload` written to `sobject`
/// under `external_id`.
pub fn payload_digest(sobject: &str, external_id: &str, payload: &str) -> String {
    let mut bytes = Vec::with_capacity(sobject.len() + external_id.len() + payload.len() + 2);
    for part in [sobject.as_bytes(), b"\0", external_id.as_bytes(), b"\0", payload.as_bytes()] {
        bytes.extend_from_slice(part);
    }
    let mut dst = String::with_capacity(XXH3_DST.len() + 32);
    dst.push_str(XXH3_DST);
    push_hex(&mut dst, xxhash_rust::xxh3::xxh3_128(&bytes));
    dst
}

/// Whether a stored `dst` digest is the one of `record` (whose digest and
/// payload `hashed_payload` gave as `dst` and `payload`), in either form.
pub fn holds_same(stored: &str, record: &SObjectRecord, dst: &str, payload: &serde_json::value::RawValue) -> bool {
    if stored.starts_with(XXH3_DST) {
        return stored == dst;
    }
    // Only an earlier build's digest (32 hex digits) is worth hashing for.
    if stored.len() != 32 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(record.sobject.as_bytes());
    h.update([0]);
    h.update(record.external_id.as_bytes());
    h.update([0]);
    h.update(payload.get().as_bytes());
    stored == hex::encode(&h.finalize()[..16])
}

/// The fields a state says Salesforce was last given; None when it kept
/// none (or they do not read as an object).
pub fn given_fields(state: &RecordState) -> Option<serde_json::Map<String, serde_json::Value>> {
    state.fields.as_ref().and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// `fields` (a state's) with the deletion flag set, as a flagged record
/// stands in Salesforce; None when they do not read as an object.
pub fn flagged(fields: &serde_json::value::RawValue) -> Option<Box<serde_json::value::RawValue>> {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(fields.get()).ok()?;
    map.insert(crate::mapping::DELETED_FIELD.into(), serde_json::Value::Bool(true));
    serde_json::value::to_raw_value(&map).ok()
}

pub struct State<'a> {
    kv: &'a dyn KeyValue,
    /// A dry run reads state and writes none.
    /// The Salesforce org the run writes to, once known: states of another
    /// org read as absent, and saved states are stamped with it.
    org: std::cell::OnceCell<String>,
}

impl<'a> State<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        State { kv, org: Default::default() }
    }

    fn read_cursor(&self, key: &str, what: &str) -> Result<Option<StoredCursor>> {
        let Some(bytes) = self.kv.get(key).map_err(|e| kv_error("reading a cursor", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ConnectorError::Config(format!(
                "the stored {what} cursor `{key}` is unreadable ({e}); run a full sync to rebuild it"
            ))
        })
    }

    fn write_cursor(&self, key: &str, cursor: &StoredCursor) -> Result<()> {
        let bytes = serde_json::to_vec(cursor).expect("a cursor serializes");
        self.kv.set(key, &bytes).map_err(|e| kv_error("saving a cursor", e))
    }

    /// The org's API usage as the last run saw it last.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        let bytes = self.kv.get(API_USAGE_KEY).ok()??;
        let (used, limit) = std::str::from_utf8(&bytes).ok()?.split_once('/')?;
        Some(ApiUsage { used: used.parse().ok()?, limit: limit.parse().ok()? })
    }

    /// Keeps `usage` for the next run; a store that fails only costs that
    /// run's early check.
    pub fn save_api_usage(&self, usage: ApiUsage) {
        let _ = self.kv.set(API_USAGE_KEY, format!("{}/{}", usage.used, usage.limit).as_bytes());
    }

    /// Where the poll of Salesforce changes to `kind` records continues:
    /// the `SystemModstamp` of the last record handled, in the org the run
    /// writes to, for the fields `tag` names. A cursor from another org is
    /// none: its times say nothing of this one's edits, which must reach
    /// NetSuite before the forward pass writes every record there. Nor one
    /// polled for other fields: values entered in a field while it was not
    /// written back were passed over (a cursor of earlier builds, untagged,
    /// is taken as the current fields').
    pub fn salesforce_cursor(&self, kind: RecordKind, tag: &str) -> Result<Option<String>> {
        let key = salesforce_cursor_key(kind);
        let Some(bytes) = self.kv.get(&key).map_err(|e| kv_error("reading a cursor", e))? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            ConnectorError::Config(format!("the stored Salesforce cursor `{key}` is unreadable; delete it to re-read"))
        })?;
        Ok(match salesforce_cursor_parts(&text) {
            (modstamp, Some(org), polled) => {
                (org == self.org() && polled.is_none_or(|p| p == tag)).then(|| modstamp.to_string())
            }
            // An earlier build's: the org it wrote to.
            (modstamp, None, _) => Some(modstamp.to_string()),
        })
    }

    pub fn save_salesforce_cursor(&self, kind: RecordKind, modstamp: &str, tag: &str) -> Result<()> {
        let value = format!("{modstamp}@{}#{tag}", self.org());
        self.kv.set(&salesforce_cursor_key(kind), value.as_bytes()).map_err(|e| kv_error("saving a cursor", e))
    }

    /// The cursor of a stream: `deleted` selects the deletions of `kind`.
    pub fn cursor(&self, kind: RecordKind, deleted: bool) -> Result<Option<StoredCursor>> {
        if deleted {
            self.read_cursor(&deleted_cursor_key(kind), &format!("deleted {kind}"))
        } else {
            self.read_cursor(&cursor_key(kind), kind.as_str())
        }
    }

    pub fn save_cursor(&self, kind: RecordKind, deleted: bool, cursor: &StoredCursor) -> Result<()> {
        let key = if deleted { deleted_cursor_key(kind) } else { cursor_key(kind) };
        self.write_cursor(&key, cursor)
    }

    /// Ties record states to the Salesforce org the run writes to.
    pub fn set_org(&self, org: String) {
        let _ = self.org.set(org);
    }

    /// The org set by [`State::set_org`] ("" before).
    pub fn org(&self) -> &str {
        self.org.get().map_or("", String::as_str)
    }

    /// States of `ids`, in order; `None` for records never synced (to the
    /// current org).
    pub fn records(&self, kind: RecordKind, ids: &[&str]) -> Result<Vec<Option<RecordState>>> {
        let keys: Vec<String> = ids.iter().map(|id| record_key(kind, id)).collect();
        let values = self.kv.get_many(&keys).map_err(|e| kv_error("reading record states", e))?;
        // An unreadable state only costs a rewrite of that record.
        let ours = |st: &RecordState| match (&st.org, self.org.get()) {
            (Some(theirs), Some(current)) => theirs == current,
            _ => true,
        };
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|b| serde_json::from_slice::<RecordState>(&b).ok()).filter(ours))
            .collect())
    }

    pub fn save_records<K: AsRef<str>>(&self, kind: RecordKind, entries: Vec<(K, RecordState)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(id, mut st)| {
                if let Some(org) = self.org.get() {
                    st.org = Some(org.clone());
                }
                // Sized up front: the fields' text is most of it, and growing
                // a vector by doubling copied it several times over.
                let room = st.fields.as_ref().map_or(0, |f| f.get().len()) + STATE_OVERHEAD;
                let mut value = Vec::with_capacity(room);
                serde_json::to_writer(&mut value, &st).expect("a record state serializes");
                (record_key(kind, id.as_ref()), value)
            })
            .collect();
        self.kv.set_many(&rows).map_err(|e| kv_error("saving record states", e))
    }

    /// What the stored states were written from (see `sync::provenance`).
    pub fn mapping_fingerprint(&self, kind: RecordKind) -> Result<Option<String>> {
        let value = self.kv.get(&mapping_key(kind)).map_err(|e| kv_error("reading the mapping fingerprint", e))?;
        Ok(value.and_then(|b| String::from_utf8(b).ok()))
    }

    /// Notes, before the first write of `kind` to the current org, that
    /// records of it may exist there from now on, even ones a run wrote but
    /// did not live to record.
    pub fn note_writes(&self, kind: RecordKind) -> Result<()> {
        if self.writes_began(kind)? {
            return Ok(());
        }
        self.kv.set(&written_key(kind, self.org()), b"1").map_err(|e| kv_error("noting the first write", e))
    }

    /// Whether records of `kind` may exist in the current org's Salesforce
    /// without a state here (see [`State::note_writes`]).
    pub fn writes_began(&self, kind: RecordKind) -> Result<bool> {
        let noted =
            self.kv.get(&written_key(kind, self.org())).map_err(|e| kv_error("reading the first-write note", e))?;
        Ok(noted.is_some())
    }

    pub fn save_mapping_fingerprint(&self, kind: RecordKind, fingerprint: &str) -> Result<()> {
        self.kv
            .set(&mapping_key(kind), fingerprint.as_bytes())
            .map_err(|e| kv_error("saving the mapping fingerprint", e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_salesforce_cursor_belongs_to_the_org_it_was_read_from() {
        use crate::model::RecordKind::Vendor;
        let kv = crate::sync::memory_kv::Memory::default();
        let sandbox = super::State::new(&kv);
        sandbox.set_org("00DSANDBOX".into());
        sandbox.save_salesforce_cursor(Vendor, "2026-12-02T11:58:00.000+0000", "f1").unwrap();
        let at = Some("2026-12-02T11:58:00.000+0000");
        assert_eq!(sandbox.salesforce_cursor(Vendor, "f1").unwrap().as_deref(), at);
        assert_eq!(sandbox.salesforce_cursor(Vendor, "f2").unwrap(), None, "polled for other fields");
        let production = super::State::new(&kv);
        production.set_org("00DPRODUCTION".into());
        assert_eq!(production.salesforce_cursor(Vendor, "f1").unwrap(), None, "another org's times say nothing here");
        // Earlier builds stored no tag, or the modstamp alone: the org it wrote to.
        let untagged = b"2026-12-01T00:00:00.000+0000@00DSANDBOX".to_vec();
        kv.map.borrow_mut().insert(super::salesforce_cursor_key(Vendor), untagged);
        assert_eq!(sandbox.salesforce_cursor(Vendor, "f2").unwrap().as_deref(), Some("2026-12-01T00:00:00.000+0000"));
        kv.map.borrow_mut().insert(super::salesforce_cursor_key(Vendor), b"2026-12-01T00:00:00.000+0000".to_vec());
        assert_eq!(
            production.salesforce_cursor(Vendor, "f1").unwrap().as_deref(),
            Some("2026-12-01T00:00:00.000+0000")
        );
    }

    #[test]
    fn record_keys_name_the_kind_and_the_netsuite_id() {
        use crate::model::RecordKind;
        assert_eq!(super::record_key(RecordKind::Customer, "742"), "record/customer/742");
        assert_eq!(super::record_key(RecordKind::Vendor, "1/2"), "record/vendor/1/2");
    }

    fn unicode_record() -> crate::model::SObjectRecord {
        crate::model::SObjectRecord {
            sobject: "Account".into(),
            external_id_field: "NetSuite_Id__c".into(),
            external_id: "7".into(),
            fields: serde_json::json!({"Name": "Ünïcode \"Co\"", "Phone": null, "Account": {"NetSuite_Id__c": "4"}})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn the_content_hash_of_a_record_never_changes_its_bytes() {
        // Stored digests decide what is written: the hash must stay the one
        // of the fields' JSON text, or every record would be rewritten.
        let record = unicode_record();
        let mut bytes = b"Account\x007\x00".to_vec();
        bytes.extend_from_slice(serde_json::Value::Object(record.fields.clone()).to_string().as_bytes());
        let expected = format!("x{}", hex::encode(xxhash_rust::xxh3::xxh3_128(&bytes).to_be_bytes()));
        assert_eq!(content_hash(&record), expected);
    }

    #[test]
    fn a_state_kept_with_the_earlier_sha256_digest_still_holds_the_same_output() {
        let record = unicode_record();
        let (dst, payload) = hashed_payload(&record);
        let mut h = Sha256::new();
        h.update(b"Account\x007\x00");
        h.update(payload.get().as_bytes());
        let legacy = hex::encode(&h.finalize()[..16]);
        assert!(holds_same(&legacy, &record, &dst, &payload), "earlier builds' digest of this output");
        assert!(holds_same(&dst, &record, &dst, &payload));
        let mut other = record.clone();
        other.fields.insert("Phone".into(), serde_json::json!("1"));
        let (other_dst, other_payload) = hashed_payload(&other);
        assert!(!holds_same(&legacy, &other, &other_dst, &other_payload), "a changed output, earlier digest");
        assert!(!holds_same(&dst, &other, &other_dst, &other_payload), "a changed output");
        assert!(!holds_same(DELETED, &record, &dst, &payload));
    }

    use super::*;
    use serde_json::json;

    fn rec(fields: serde_json::Value) -> SObjectRecord {
        SObjectRecord {
            sobject: "Account".into(),
            external_id_field: "NetSuite_Id__c".into(),
            external_id: "1".into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn cursor_order_is_time_then_numeric_id() {
        let c = |t: &str, id: &str| Cursor { last_modified: t.into(), id: id.into() };
        assert!(is_after(&c("2026-01-01 00:00:01", "1"), &c("2026-01-01 00:00:00", "99")));
        assert!(is_after(&c("2026-01-01 00:00:00", "100"), &c("2026-01-01 00:00:00", "99")));
        assert!(!is_after(&c("2026-01-01 00:00:00", "99"), &c("2026-01-01 00:00:00", "99")));
    }

    #[test]
    fn stored_cursors_without_settling_fields_still_read() {
        let old: StoredCursor = serde_json::from_str(r#"{"last_modified":"2026-01-01 00:00:00","id":"5"}"#).unwrap();
        assert_eq!((old.moved_at, old.settled), (0, false));
    }

    #[test]
    fn hash_ignores_field_order_and_sees_every_value() {
        let a = rec(json!({"Name": "A", "Phone": null}));
        let b = rec(json!({"Phone": null, "Name": "A"}));
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&rec(json!({"Name": "A", "Phone": "1"}))));
        assert_ne!(content_hash(&a), content_hash(&rec(json!({"Name": "B", "Phone": null}))));
    }
}
