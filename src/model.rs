//! Domain types shared by the source, the mapper, the sink and the engine.
//! They mirror the WIT `types` interface; `component` converts between them.

use crate::payload_index::PayloadIndex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

/// The NetSuite record types the connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Customer,
    Contact,
    Vendor,
}

impl RecordKind {
    /// Parents first: the order a full sync visits kinds in.
    pub const ALL: [RecordKind; 3] = [RecordKind::Customer, RecordKind::Vendor, RecordKind::Contact];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Customer => "customer",
            RecordKind::Contact => "contact",
            RecordKind::Vendor => "vendor",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One NetSuite row. SuiteQL returns every value as a string and may omit
/// NULL columns, so `fields` is a plain string map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSuiteRecord {
    pub kind: RecordKind,
    pub id: String,
    /// `YYYY-MM-DD HH24:MI:SS`, in the integration user's time zone.
    pub last_modified: String,
    pub fields: crate::columns::Columns,
}

impl NetSuiteRecord {
    /// A column's value, treating a missing column and an empty string alike.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).filter(|v| !v.is_empty())
    }
}

/// A position in NetSuite's change stream: reads continue strictly after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub last_modified: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<NetSuiteRecord>,
    pub next: Option<Cursor>,
    pub has_more: bool,
    /// Rows the whole query matches (NetSuite's totalResults), when known.
    pub total: Option<u32>,
    /// Rows read with a defect: repaired, or set aside.
    pub problems: Vec<ReadProblem>,
}

/// A row that did not read cleanly: `quarantined` rows are left out of the
/// page (their reason is audited), the others were repaired and go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadProblem {
    /// Empty when the row did not even carry an id.
    pub id: String,
    pub quarantined: bool,
    pub reason: String,
}

/// A record ready to upsert into Salesforce by external id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SObjectRecord {
    pub sobject: String,
    pub external_id_field: String,
    pub external_id: String,
    /// Field API name → value; never `attributes` or `Id`.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// One mapping rule that produced a target field; `old` and `new` are set
/// when the value differs from what Salesforce was last given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Transformation {
    // Shared with the mapping: the same names for every record.
    pub field: std::rc::Rc<str>,
    pub rule: std::rc::Rc<str>,
    pub detail: std::rc::Rc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<serde_json::Value>,
    /// `field`, `rule` and `detail` as the start of this transformation's
    /// JSON object, when the mapping wrote it once for every record.
    #[serde(skip)]
    pub json_start: Option<std::rc::Rc<str>>,
}

impl PartialEq for Transformation {
    fn eq(&self, other: &Self) -> bool {
        (&self.field, &self.rule, &self.detail, &self.old, &self.new)
            == (&other.field, &other.rule, &other.detail, &other.old, &other.new)
    }
}

impl Eq for Transformation {}

impl Transformation {
    /// `{"field":…,"rule":…,"detail":…`: how every serialized
    /// transformation starts (what [`Transformation::json_start`] holds).
    pub fn start_json(field: &str, rule: &str, detail: &str) -> String {
        let text = |s: &str| serde_json::to_string(s).expect("a string serializes");
        format!(r#"{{"field":{},"rule":{},"detail":{}"#, text(field), text(rule), text(detail))
    }

    /// Transformations as a JSON array, exactly as serde writes them; the
    /// audit keeps one per record, so the parts the mapping shares are
    /// written once, not escaped again for every record.
    pub fn list_json(list: &[Transformation]) -> String {
        Transformation::list_json_over(list, None)
    }

    /// As [`Transformation::list_json`], for transformations whose `new`
    /// values are the fields of `payload` (the target's fields as written):
    /// those are copied from its text instead of being escaped again.
    pub fn list_json_over(list: &[Transformation], payload: Option<&PayloadIndex<'_>>) -> String {
        Transformation::json_array(list, 96, |out, t| {
            t.push_start(out);
            t.push_values(out, payload, false, None);
            out.push('}');
        })
    }

    /// [`Transformation::shape_json`], shared: transformations made of the
    /// same `json_start` texts (the mapping's, one per rule and field) have
    /// the same shape, so each distinct one is written once per run and its
    /// entries share it (they cross to the host once per call, see
    /// `component::HostAudit`).
    pub fn shared_shape(list: &[Transformation]) -> std::rc::Rc<str> {
        let mut hash = list.len() as u64;
        for t in list {
            let Some(start) = &t.json_start else { return Transformation::shape_json(list).into() };
            hash = (hash.rotate_left(5) ^ start.as_ptr() as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        SHAPES.with_borrow_mut(|shapes| {
            let same = |key: &[std::rc::Rc<str>]| {
                key.len() == list.len()
                    && key
                        .iter()
                        .zip(list)
                        .all(|(k, t)| t.json_start.as_ref().is_some_and(|s| std::rc::Rc::ptr_eq(k, s)))
            };
            if let Some((key, shape)) = shapes.get(&hash) {
                return match same(key) {
                    true => shape.clone(),
                    // Another shape with the same hash: written, not kept.
                    false => Transformation::shape_json(list).into(),
                };
            }
            // Bounded: a mapping makes a few hundred shapes at most.
            if shapes.len() >= SHAPES_KEPT {
                shapes.clear();
            }
            let shape: std::rc::Rc<str> = Transformation::shape_json(list).into();
            // The key holds the texts, so no address is reused while kept.
            let key = list.iter().filter_map(|t| t.json_start.clone()).collect();
            shapes.insert(hash, (key, shape.clone()));
            shape
        })
    }

    /// The `field`, `rule` and `detail` of each transformation, as a JSON
    /// array of objects: the part of [`Transformation::list_json`] every
    /// record a mapping treats alike shares, which a host stores once.
    pub fn shape_json(list: &[Transformation]) -> String {
        Transformation::json_array(list, 64, |out, t| {
            t.push_start(out);
            out.push('}');
        })
    }

    /// The rest of [`Transformation::list_json_over`]: each transformation's
    /// `old` and `new` values (where set) as a JSON array of objects, in the
    /// order of [`Transformation::shape_json`]. With `fresh`, the list was
    /// never compared with what Salesforce holds (a record it was never
    /// given): each `new` is written as [`crate::sync::state::annotate_changes`]
    /// against nothing would set it — the field's value in `fresh` (the
    /// target's fields), where it has one — without a copy of each value.
    pub fn values_json(
        list: &[Transformation],
        payload: Option<&PayloadIndex<'_>>,
        fresh: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> String {
        Transformation::json_array(list, 32, |out, t| {
            out.push('{');
            t.push_values(out, payload, true, fresh);
            out.push('}');
        })
    }

    /// The values part of a write's audit entry: [`Transformation::values_json`]
    /// with `new` values copied from `payload`'s text, or, for a record
    /// Salesforce was never given (`fresh`) whose list holds no values of
    /// its own, `payload` itself: each `new` is then its field's value
    /// there, which [`AuditTransformations::joined`] puts back. A first
    /// sync's records skip indexing the payload and writing each value
    /// again (a tenth of a Bulk run's component time), and a parked record
    /// holds its values once.
    pub fn write_values(
        list: &[Transformation],
        payload: &str,
        fresh: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> String {
        match Transformation::payload_holds_values(list, fresh) {
            true => payload.to_string(),
            false => Transformation::values_json(list, Some(&PayloadIndex::new(payload)), fresh),
        }
    }

    /// Whether [`Transformation::write_values`] is the payload itself.
    pub fn payload_holds_values(
        list: &[Transformation],
        fresh: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> bool {
        fresh.is_some() && list.iter().all(|t| t.old.is_none() && t.new.is_none())
    }

    /// `[` each one's JSON, as `write` puts it, between commas `]`.
    fn json_array(list: &[Transformation], each_bytes: usize, mut write: impl FnMut(&mut String, &Self)) -> String {
        let mut out = String::with_capacity(list.len() * each_bytes + 2);
        out.push('[');
        for (n, t) in list.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            write(&mut out, t);
        }
        out.push(']');
        out
    }

    fn push_start(&self, out: &mut String) {
        match &self.json_start {
            Some(start) => out.push_str(start),
            None => out.push_str(&Transformation::start_json(&self.field, &self.rule, &self.detail)),
        }
    }

    /// `"old":…,"new":…` for the values set, after a comma unless `first`;
    /// with `fresh` (see [`Transformation::values_json`]) an unset `new` is
    /// the field's value there.
    fn push_values(
        &self,
        out: &mut String,
        payload: Option<&PayloadIndex<'_>>,
        mut first: bool,
        fresh: Option<&serde_json::Map<String, serde_json::Value>>,
    ) {
        let mut put = |name: &str, text: Option<&str>, value: Option<&serde_json::Value>| {
            if text.is_none() && value.is_none() {
                return;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            match (text, value) {
                (Some(text), _) => out.push_str(text),
                // A value's Display is its compact JSON, written in place.
                (None, Some(value)) => {
                    let _ = write!(out, "{value}");
                }
                (None, None) => {}
            }
        };
        put("old", None, self.old.as_ref());
        // A `new` value is the payload's: copied from its text when found.
        let copied = || payload.and_then(|p| p.value(&self.field));
        match (&self.new, fresh) {
            (Some(value), _) => put("new", copied(), Some(value)),
            (None, Some(fields)) => match copied() {
                Some(text) => put("new", Some(text), None),
                None => put("new", None, fields.get(&*self.field)),
            },
            (None, None) => {}
        }
    }
}

/// An audit entry's transformations as JSON: the whole array, or split
/// into the shape records mapped alike share and each record's values
/// ([`Transformation::shape_json`], [`Transformation::values_json`]), so a
/// host can keep the shape once instead of once per record. The values of
/// a record written fresh may be its payload instead (an object, not an
/// array: see [`Transformation::write_values`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTransformations {
    Whole(String),
    Split { shape: std::rc::Rc<str>, values: String },
}

/// Shapes kept by [`Transformation::shared_shape`] before it starts over.
const SHAPES_KEPT: usize = 1024;

/// A hash of a shape's `json_start` addresses, taken as it is.
#[derive(Default)]
struct AddressHash(u64);

impl std::hash::Hasher for AddressHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Shapes written so far, by the hash of their `json_start` addresses: the
/// starts (kept, so no address is reused while the entry is) and the text.
type ShapeMap = std::collections::HashMap<
    u64,
    (Vec<std::rc::Rc<str>>, std::rc::Rc<str>),
    std::hash::BuildHasherDefault<AddressHash>,
>;

thread_local! {
    // Sized once, first thing: a table grown mid-run landed above a Bulk
    // job's growing CSV buffer and kept it from growing in place (a
    // 100,000-customer Bulk run's peak memory 28.4 MB -> 40.9 MB).
    static SHAPES: std::cell::RefCell<ShapeMap> =
        std::cell::RefCell::new(ShapeMap::with_capacity_and_hasher(SHAPES_KEPT, Default::default()));
}

impl AuditTransformations {
    /// `list` split into its shape and its values (`new` values copied from
    /// `payload`'s text where it has them; `fresh` as for
    /// [`Transformation::values_json`]).
    pub fn split(
        list: &[Transformation],
        payload: Option<&PayloadIndex<'_>>,
        fresh: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> AuditTransformations {
        AuditTransformations::Split {
            shape: Transformation::shared_shape(list),
            values: Transformation::values_json(list, payload, fresh),
        }
    }

    /// The whole array: the split parts joined object by object, exactly as
    /// [`Transformation::list_json_over`] writes it. Parts that do not fit
    /// together (a damaged store) come back side by side, not lost.
    pub fn joined(self) -> String {
        match self {
            AuditTransformations::Whole(json) => json,
            AuditTransformations::Split { shape, values } => Self::join(&shape, &values)
                .unwrap_or_else(|| serde_json::json!({ "shape": shape, "values": values }).to_string()),
        }
    }

    fn join(shape: &str, values: &str) -> Option<String> {
        let shape: Vec<&RawValue> = serde_json::from_str(shape).ok()?;
        let values: Vec<BTreeMap<String, &RawValue>> = match values.trim_start().starts_with('{') {
            // A payload: each transformation's `new` is its field's value.
            true => {
                #[derive(Deserialize)]
                struct Entry<'a> {
                    #[serde(borrow)]
                    field: std::borrow::Cow<'a, str>,
                }
                let payload: BTreeMap<String, &RawValue> = serde_json::from_str(values).ok()?;
                let mut all = Vec::with_capacity(shape.len());
                for start in &shape {
                    let entry: Entry = serde_json::from_str(start.get()).ok()?;
                    let new = payload.get(&*entry.field).map(|value| ("new".to_string(), *value));
                    all.push(new.into_iter().collect());
                }
                all
            }
            false => serde_json::from_str(values).ok()?,
        };
        if shape.len() != values.len() {
            return None;
        }
        let mut out = String::with_capacity(shape.iter().map(|s| s.get().len()).sum::<usize>() * 2 + 2);
        out.push('[');
        for (n, (start, values)) in shape.iter().zip(&values).enumerate() {
            if n > 0 {
                out.push(',');
            }
            let open = start.get().strip_suffix('}').filter(|s| s.starts_with('{'))?;
            out.push_str(open);
            let mut first = open.trim_end() == "{";
            // `old` before `new`, as the transformation serializes them.
            let ordered = ["old", "new"].into_iter().filter_map(|k| values.get_key_value(k));
            let others = values.iter().filter(|(k, _)| k.as_str() != "old" && k.as_str() != "new");
            for (key, value) in ordered.chain(others) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&serde_json::to_string(key).ok()?);
                out.push(':');
                out.push_str(value.get());
            }
            out.push('}');
        }
        out.push(']');
        Some(out)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MappedRecord {
    pub source_kind: RecordKind,
    pub source_id: String,
    pub target: SObjectRecord,
    pub transformations: Vec<Transformation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    Created,
    Updated,
    Unchanged,
    Failed,
    Deferred,
    Deleted,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Created => "created",
            OutcomeKind::Updated => "updated",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Deferred => "deferred",
            OutcomeKind::Deleted => "deleted",
        }
    }
}

/// An error Salesforce reported for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SalesforceError {
    pub status_code: String,
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

impl fmt::Display for SalesforceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status_code, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertOutcome {
    pub external_id: String,
    pub salesforce_id: Option<String>,
    pub outcome: OutcomeKind,
    pub errors: Vec<SalesforceError>,
}

/// Why a call failed as a whole. Messages name the setting, record or
/// endpoint involved and say what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorError {
    Config(String),
    Auth(String),
    NetSuite(String),
    Salesforce(String),
    RateLimited(String),
    Transport(String),
    /// Another run of the same tenant is under way.
    Busy(String),
    /// The host asked the run to end at a checkpoint (it is shutting down).
    Stopped(String),
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (label, msg) = match self {
            ConnectorError::Config(m) => ("configuration error", m),
            ConnectorError::Auth(m) => ("authentication failed", m),
            ConnectorError::NetSuite(m) => ("NetSuite error", m),
            ConnectorError::Salesforce(m) => ("Salesforce error", m),
            ConnectorError::RateLimited(m) => ("rate limited", m),
            ConnectorError::Transport(m) => ("network error", m),
            ConnectorError::Busy(m) => ("busy", m),
            ConnectorError::Stopped(m) => ("stopped", m),
        };
        write!(f, "{label}: {msg}")
    }
}

impl std::error::Error for ConnectorError {}

impl ConnectorError {
    /// An error about what one system holds or answered for some records,
    /// as opposed to the connection, the login, the quota or the settings,
    /// which every kind would meet alike.
    pub fn is_about_data(&self) -> bool {
        matches!(self, ConnectorError::NetSuite(_) | ConnectorError::Salesforce(_))
    }

    fn map_message(self, f: impl FnOnce(String) -> String) -> ConnectorError {
        match self {
            ConnectorError::Config(m) => ConnectorError::Config(f(m)),
            ConnectorError::Auth(m) => ConnectorError::Auth(f(m)),
            ConnectorError::NetSuite(m) => ConnectorError::NetSuite(f(m)),
            ConnectorError::Salesforce(m) => ConnectorError::Salesforce(f(m)),
            ConnectorError::RateLimited(m) => ConnectorError::RateLimited(f(m)),
            ConnectorError::Transport(m) => ConnectorError::Transport(f(m)),
            ConnectorError::Busy(m) => ConnectorError::Busy(f(m)),
            ConnectorError::Stopped(m) => ConnectorError::Stopped(f(m)),
        }
    }

    pub fn with_prefix(self, prefix: &str) -> ConnectorError {
        self.map_message(|m| format!("{prefix}{m}"))
    }

    pub fn with_suffix(self, suffix: &str) -> ConnectorError {
        self.map_message(|m| format!("{m}{suffix}"))
    }
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Incremental,
    Full,
    /// Only the queued change events.
    Events,
}

/// Which failed writes a replay sends again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayScope {
    AllFailed,
    /// Failed writes recorded by this run.
    Run(String),
    /// One record.
    Record(RecordKind, String),
}

impl ReplayScope {
    /// Whether a failed write of `kind`, recorded by run `run_id`, is in
    /// scope; `names` tells whether the write is of the record an id names.
    pub fn covers(&self, kind: RecordKind, run_id: &str, names: impl Fn(&str) -> bool) -> bool {
        match self {
            ReplayScope::AllFailed => true,
            ReplayScope::Run(id) => run_id == id,
            ReplayScope::Record(k, id) => *k == kind && names(id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub run_id: String,
    pub mode: SyncMode,
    pub kinds: Vec<RecordKind>,
    /// Send failed writes again instead of reading NetSuite.
    pub replay: Option<ReplayScope>,
    /// Read and map, report what would be written, write nothing anywhere.
    pub dry_run: bool,
    /// Compare with the live Salesforce records as well as with what the
    /// connector last wrote: records edited or deleted in Salesforce since
    /// are written again (drift repair; a dry run plans it).
    pub compare_live: bool,
}

/// One change to one field, as a dry run reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<serde_json::Value>,
    pub new: Option<serde_json::Value>,
}

/// What a dry run found a real run would do to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWrite {
    pub kind: RecordKind,
    pub netsuite_id: String,
    pub action: PlanAction,
    pub changes: Vec<FieldChange>,
    /// `Fail` only: why the run would fail the record.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub read: u32,
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub failed: u32,
    pub deleted: u32,
    pub deferred: u32,
    /// Of the outcomes above, those taken from the Bulk API 2.0 jobs a
    /// stopped run submitted: that run read the records, this one read the
    /// jobs' results (so outcomes can outnumber `read`).
    pub resumed: u32,
    /// Salesforce edits written to NetSuite (write-back).
    pub written_back: u32,
}

impl KindCounts {
    pub fn count(&mut self, outcome: OutcomeKind) {
        match outcome {
            OutcomeKind::Created => self.created += 1,
            OutcomeKind::Updated => self.updated += 1,
            OutcomeKind::Unchanged => self.unchanged += 1,
            OutcomeKind::Failed => self.failed += 1,
            OutcomeKind::Deleted => self.deleted += 1,
            OutcomeKind::Deferred => self.deferred += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApiCalls {
    pub netsuite: u32,
    pub salesforce: u32,
}

/// What a run did, up to its end or the point where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub run_id: String,
    pub kinds: Vec<(RecordKind, KindCounts)>,
    pub api_calls: ApiCalls,
    /// Dry runs only: every write a real run would make.
    pub plan: Vec<PlannedWrite>,
    /// Why the run stopped before the end; the counts cover what it did.
    pub error: Option<ConnectorError>,
}

/// What the connector did to a record, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// Upserted through Composite / sObject Collections.
    Write,
    /// Upserted through a Bulk API 2.0 job.
    BulkWrite,
    /// Upserted through a Bulk API 2.0 job a stopped run submitted: this
    /// run read the job's results (that run read the record).
    BulkResume,
    /// Upserted through Composite by a stopped run that never recorded
    /// Salesforce's answer (stopped first): whether it landed is unknown;
    /// this run writes the record again.
    Interrupted,
    /// Salesforce already holds exactly what the mapping gives.
    SkipUnchanged,
    /// Held back until its parent is in Salesforce.
    Defer,
    /// Written after waiting for its parent.
    WriteDeferred,
    /// Written because a NetSuite change event named it.
    WriteEvent,
    /// A failed write sent again.
    Replay,
    /// A NetSuite deletion marked with NetSuite_Deleted__c.
    FlagDeleted,
    /// A NetSuite deletion applied by deleting the Salesforce record.
    Delete,
    /// The mapping could not turn the record into a Salesforce record.
    Map,
    /// The NetSuite row had a defect: repaired, or set aside.
    Read,
    /// A queued write given up because NetSuite deleted its record.
    Drop,
    /// Salesforce → NetSuite: a Salesforce edit written to NetSuite.
    NetSuiteWrite,
    /// Salesforce → NetSuite: a record new in Salesforce created in NetSuite.
    NetSuiteCreate,
    /// Salesforce → NetSuite: the new NetSuite id written to the Salesforce record.
    Link,
    /// Salesforce → NetSuite: a record deleted in Salesforce; its NetSuite
    /// record is made inactive (NetSuite keeps its master data).
    NetSuiteInactivate,
    /// A NetSuite change not written: the record was deleted in Salesforce
    /// and is inactive in NetSuite.
    SkipDeletedInSalesforce,
    /// Salesforce → NetSuite: a Salesforce edit not written back: NetSuite
    /// deleted the record.
    SkipDeletedInNetSuite,
    /// A field both sides changed: both values and the winner.
    Conflict,
    /// The NetSuite user's time zone moved, or could not be measured (see
    /// `sync::zone`); about the run's cursors, not a record.
    TimeZone,
}

impl AuditAction {
    /// Every action, for those who list them (the README).
    pub const ALL: [AuditAction; 22] = [
        AuditAction::Write,
        AuditAction::BulkWrite,
        AuditAction::BulkResume,
        AuditAction::Interrupted,
        AuditAction::SkipUnchanged,
        AuditAction::Defer,
        AuditAction::WriteDeferred,
        AuditAction::WriteEvent,
        AuditAction::Replay,
        AuditAction::FlagDeleted,
        AuditAction::Delete,
        AuditAction::Map,
        AuditAction::Read,
        AuditAction::Drop,
        AuditAction::NetSuiteWrite,
        AuditAction::NetSuiteCreate,
        AuditAction::Link,
        AuditAction::NetSuiteInactivate,
        AuditAction::SkipDeletedInSalesforce,
        AuditAction::SkipDeletedInNetSuite,
        AuditAction::Conflict,
        AuditAction::TimeZone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Write => "write",
            AuditAction::BulkWrite => "bulk-write",
            AuditAction::BulkResume => "bulk-resume",
            AuditAction::Interrupted => "interrupted",
            AuditAction::SkipUnchanged => "skip-unchanged",
            AuditAction::Defer => "defer",
            AuditAction::WriteDeferred => "write-deferred",
            AuditAction::WriteEvent => "write-event",
            AuditAction::Replay => "replay",
            AuditAction::FlagDeleted => "flag-deleted",
            AuditAction::Delete => "delete",
            AuditAction::Map => "map",
            AuditAction::Read => "read",
            AuditAction::Drop => "drop",
            AuditAction::NetSuiteWrite => "netsuite-write",
            AuditAction::NetSuiteCreate => "netsuite-create",
            AuditAction::Link => "link",
            AuditAction::NetSuiteInactivate => "netsuite-inactivate",
            AuditAction::SkipDeletedInSalesforce => "skip-deleted-in-salesforce",
            AuditAction::SkipDeletedInNetSuite => "skip-deleted-in-netsuite",
            AuditAction::Conflict => "conflict",
            AuditAction::TimeZone => "time-zone",
        }
    }

    /// Which way the action moved data.
    pub fn direction(self) -> &'static str {
        match self {
            AuditAction::NetSuiteWrite
            | AuditAction::NetSuiteCreate
            | AuditAction::Link
            | AuditAction::NetSuiteInactivate
            | AuditAction::SkipDeletedInNetSuite => "salesforce-to-netsuite",
            _ => "netsuite-to-salesforce",
        }
    }
}

/// What a dry run says a real run would do to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAction {
    Create,
    Update,
    /// Live compare only: Salesforce already holds it.
    Unchanged,
    Defer,
    Delete,
    FlagDeleted,
    /// Salesforce → NetSuite: fields a Salesforce edit would write to NetSuite.
    NetSuiteUpdate,
    /// Salesforce → NetSuite: a record new in Salesforce NetSuite would get.
    NetSuiteCreate,
    /// The run would fail the record (the mapping cannot take a value,
    /// NetSuite would refuse a Salesforce edit): `error` says why.
    Fail,
}

impl PlanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Create => "create",
            PlanAction::Update => "update",
            PlanAction::Unchanged => "unchanged",
            PlanAction::Defer => "defer",
            PlanAction::Delete => "delete",
            PlanAction::FlagDeleted => "flag-deleted",
            PlanAction::NetSuiteUpdate => "netsuite-update",
            PlanAction::NetSuiteCreate => "netsuite-create",
            PlanAction::Fail => "fail",
        }
    }
}

/// One line of the audit trail; the host adds tenant and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub run_id: String,
    pub kind: RecordKind,
    pub action: AuditAction,
    pub netsuite_id: String,
    pub salesforce_id: Option<String>,
    pub outcome: String,
    pub transformations: AuditTransformations,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{AuditAction, AuditTransformations, Transformation};
    use serde_json::json;

    #[test]
    fn the_readme_lists_every_audit_action() {
        let readme = include_str!("../README.md");
        for action in AuditAction::ALL {
            assert!(readme.contains(&format!("`{}`", action.as_str())), "{}", action.as_str());
        }
    }

    #[test]
    fn transformations_as_json_are_what_serde_writes() {
        let written = |field: &str, rule: &str, detail: &str| Transformation {
            field: field.into(),
            rule: rule.into(),
            detail: detail.into(),
            ..Default::default()
        };
        let mut shared = written("Name", "copy+phone", "companyname \"quoted\" → ü");
        shared.json_start = Some(Transformation::start_json(&shared.field, &shared.rule, &shared.detail).into());
        shared.new = Some(json!("Ünïcode \"Co\"\n\u{1}\t\\ \u{2028}"));
        let mut changed = written("Phone", "copy", "phone");
        (changed.old, changed.new) = (Some(json!(null)), Some(json!({"NetSuite_Id__c": "4"})));
        let list = vec![shared, changed, written("NetSuite_Id__c", "external-id", "id")];
        assert_eq!(Transformation::list_json(&list), serde_json::to_string(&list).unwrap());
        assert_eq!(Transformation::list_json(&[]), "[]");
        // New values copied from the payload's text come out the same; a
        // field the payload lacks is written from its value.
        let mut fields = serde_json::Map::new();
        for t in &list[..2] {
            fields.insert(t.field.to_string(), t.new.clone().unwrap());
        }
        let payload = serde_json::to_string(&fields).unwrap();
        let index = crate::payload_index::PayloadIndex::new(&payload);
        assert_eq!(Transformation::list_json_over(&list, Some(&index)), serde_json::to_string(&list).unwrap());
        let index = crate::payload_index::PayloadIndex::new("{}");
        assert_eq!(Transformation::list_json_over(&list, Some(&index)), serde_json::to_string(&list).unwrap());
    }

    #[test]
    fn a_fresh_list_writes_the_new_values_annotating_would_set() {
        let t = |field: &str| Transformation { field: field.into(), rule: "copy".into(), ..Default::default() };
        let list = vec![t("Name"), t("Phone"), t("Fax"), t("Account")];
        let fields = json!({"Name": "Ünïcode \"Co\"", "Phone": null, "Fax": "+1 555", "Website": "x"});
        let fields = fields.as_object().unwrap();
        let mut annotated = list.clone();
        crate::sync::state::annotate_changes(&mut annotated, None, fields);
        let payload = serde_json::to_string(fields).unwrap();
        let index = crate::payload_index::PayloadIndex::new(&payload);
        let missing = crate::payload_index::PayloadIndex::new("{}");
        for index in [Some(&index), Some(&missing), None] {
            let fresh = Transformation::values_json(&list, index, Some(fields));
            assert_eq!(fresh, Transformation::values_json(&annotated, index, None));
        }
        assert_eq!(
            Transformation::values_json(&list, Some(&index), Some(fields)),
            r#"[{"new":"Ünïcode \"Co\""},{"new":null},{"new":"+1 555"},{}]"#,
            "a field the target lacks has no new value"
        );
    }

    #[test]
    fn a_fresh_records_payload_stands_for_its_values_and_joins_into_the_same_array() {
        let t = |field: &str| {
            let mut t =
                Transformation { field: field.into(), rule: "copy".into(), detail: "d".into(), ..Default::default() };
            t.json_start = Some(Transformation::start_json(&t.field, &t.rule, &t.detail).into());
            t
        };
        let list = vec![t("Name"), t("Phone"), t("Account"), t("Fax"), t("Gone")];
        let fields = json!({
            "Name": "Ünïcode \"Co\"\n\u{1}", "Phone": null, "Account": {"NetSuite_Id__c": "4"}, "Fax": "+1 555",
            "Website": "x"
        });
        let fields = fields.as_object().unwrap();
        let payload = serde_json::to_string(fields).unwrap();
        let values = Transformation::write_values(&list, &payload, Some(fields));
        assert_eq!(values, payload, "the payload stands for the values");
        let shape: std::rc::Rc<str> = Transformation::shape_json(&list).into();
        let index = crate::payload_index::PayloadIndex::new(&payload);
        let listed = Transformation::values_json(&list, Some(&index), Some(fields));
        let whole = AuditTransformations::Split { shape: shape.clone(), values: listed }.joined();
        assert_eq!(AuditTransformations::Split { shape: shape.clone(), values }.joined(), whole);
        let mut annotated = list.clone();
        crate::sync::state::annotate_changes(&mut annotated, None, fields);
        assert_eq!(whole, serde_json::to_string(&annotated).unwrap());
        // Values of its own (compared with an earlier write), or not fresh: listed.
        let own = Transformation::write_values(&annotated, &payload, Some(fields));
        assert_eq!(own, Transformation::values_json(&annotated, Some(&index), Some(fields)));
        assert!(Transformation::write_values(&list, &payload, None).starts_with('['));
        // A payload that does not fit its shape is kept beside it, not lost.
        let bad = AuditTransformations::Split { shape: "[{\"rule\":\"copy\"}]".into(), values: payload.clone() };
        assert!(bad.joined().contains("Website"));
    }

    #[test]
    fn records_mapped_alike_share_one_shape_text() {
        let start =
            |field: &str, rule: &str| -> std::rc::Rc<str> { Transformation::start_json(field, rule, "d").into() };
        let (name, phone, empty) = (start("Name", "copy"), start("Phone", "copy"), start("Phone", "empty"));
        let list = |starts: &[&std::rc::Rc<str>]| -> Vec<Transformation> {
            starts.iter().map(|s| Transformation { json_start: Some((*s).clone()), ..Default::default() }).collect()
        };
        let a = Transformation::shared_shape(&list(&[&name, &phone]));
        let b = Transformation::shared_shape(&list(&[&name, &phone]));
        let other = Transformation::shared_shape(&list(&[&name, &empty]));
        assert!(std::rc::Rc::ptr_eq(&a, &b), "one text for both records");
        assert!(!std::rc::Rc::ptr_eq(&a, &other) && a != other);
        assert_eq!(&*a, Transformation::shape_json(&list(&[&name, &phone])));
        assert_eq!(&*other, Transformation::shape_json(&list(&[&name, &empty])));
        // The same text from other strings (another mapping) is not taken for it.
        let again = Transformation::shared_shape(&list(&[&start("Name", "copy"), &start("Phone", "copy")]));
        assert!(!std::rc::Rc::ptr_eq(&a, &again) && a == again);
        // Without the mapping's starts, the shape is written as it is.
        let plain = vec![Transformation { field: "Name".into(), rule: "copy".into(), ..Default::default() }];
        assert_eq!(&*Transformation::shared_shape(&plain), Transformation::shape_json(&plain));
    }

    #[test]
    fn split_transformations_join_into_the_whole_array() {
        let mut name = Transformation {
            field: "Name".into(),
            rule: "copy".into(),
            detail: "companyname".into(),
            ..Default::default()
        };
        name.json_start = Some(Transformation::start_json(&name.field, &name.rule, &name.detail).into());
        name.new = Some(json!("Ünïcode \"Co\"\n\u{1}"));
        let mut phone = Transformation { field: "Phone".into(), rule: "empty".into(), ..Default::default() };
        (phone.old, phone.new) = (Some(json!("+1 555")), Some(json!(null)));
        let untouched = Transformation { field: "Id".into(), rule: "external-id".into(), ..Default::default() };
        let only_old = Transformation { field: "Gone".into(), old: Some(json!(12.5)), ..Default::default() };
        let list = vec![name, phone, untouched, only_old];
        let payload = r#"{"Name":"Ünïcode \"Co\"\n\u0001","Phone":null}"#;
        let index = crate::payload_index::PayloadIndex::new(payload);
        for index in [None, Some(&index)] {
            let (shape, values) = (Transformation::shape_json(&list), Transformation::values_json(&list, index, None));
            assert!(!shape.contains("+1 555") && !values.contains("companyname"), "{shape} / {values}");
            let whole = AuditTransformations::Split { shape: shape.into(), values }.joined();
            assert_eq!(whole, Transformation::list_json_over(&list, index));
            assert_eq!(whole, serde_json::to_string(&list).unwrap());
        }
        let empty = AuditTransformations::Split { shape: "[]".into(), values: "[]".into() };
        assert_eq!(empty.joined(), "[]");
        // Parts that do not fit together are kept side by side, not lost.
        for (shape, values) in [("[{\"field\":\"A\"}]", "[]"), ("not json", "[{}]"), ("[1]", "[{}]")] {
            let kept = AuditTransformations::Split { shape: shape.into(), values: values.into() }.joined();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&kept).unwrap(),
                json!({"shape": shape, "values": values})
            );
        }
    }
}
