//! The simulated org's records and how writes treat them: upsert by
//! external id, create, update and delete by Id, with required fields, field
//! lengths, parent lookups by external id, unique external ids, validation
//! and matching rules. Every write stamps SystemModstamp (and
//! LastModifiedDate) in the statement that writes the row; a delete keeps
//! the row with IsDeleted set, as the Recycle Bin does.

use super::datetime;
use super::schema::{Field, FieldType, SObject, normalize_id, objects, salesforce_id};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

/// A configurable validation rule: records of `sobject` whose `field`
/// contains `contains` are refused with `message`.
#[derive(Clone, Debug)]
pub struct ValidationRule {
    pub sobject: String,
    pub field: String,
    pub contains: String,
    pub message: String,
}

pub struct Org {
    pub conn: Connection,
    pub objects: Vec<SObject>,
    pub validation_rule: Option<ValidationRule>,
    /// A matching rule: a new record whose (sobject, field) value equals an
    /// existing record's is blocked as a duplicate.
    pub duplicate_rule: Option<(String, String)>,
    next_id: u64,
    /// Record writes (inserts, updates and deletes) since start.
    pub writes: u64,
    pub jobs: std::collections::HashMap<String, super::bulk::Job>,
    pub next_job: u64,
    /// Closed jobs stay InProgress (their records are applied) while set,
    /// as a large job in a busy org does.
    pub hold_jobs: bool,
    /// Open query locators and their result snapshots.
    pub cursors: super::soql::Cursors,
}

/// A per-record failure, as Salesforce reports it.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub status_code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn new(status_code: &'static str, message: impl Into<String>, fields: &[&str]) -> RecordError {
        RecordError { status_code, message: message.into(), fields: fields.iter().map(|f| f.to_string()).collect() }
    }

    pub fn to_json(&self) -> Value {
        json!({ "statusCode": self.status_code, "message": self.message, "fields": self.fields })
    }
}

/// A failure of the whole request (HTTP 4xx with an error array).
#[derive(Debug, Clone)]
pub struct RequestError {
    pub status: u16,
    pub error_code: &'static str,
    pub message: String,
}

impl RequestError {
    pub fn new(status: u16, error_code: &'static str, message: impl Into<String>) -> RequestError {
        RequestError { status, error_code, message: message.into() }
    }

    pub fn body(&self) -> Value {
        json!([{ "message": self.message, "errorCode": self.error_code }])
    }
}

/// The outcome of deleting one record by id.
pub enum Deleted {
    Ok,
    AlreadyDeleted,
    NoSuchId,
}

/// Why a write by Id did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// No record of the object has this id (or it is no id at all).
    NotFound,
    /// The record is in the Recycle Bin.
    Deleted,
    Record(RecordError),
}

impl From<RecordError> for WriteError {
    fn from(e: RecordError) -> WriteError {
        WriteError::Record(e)
    }
}

/// A record read by Id.
pub enum Read {
    /// Its stored fields plus the system fields.
    Live(Map<String, Value>),
    Deleted,
    Missing,
}

pub struct Upserted {
    pub id: String,
    pub created: bool,
}

/// The text of the object's external id in `fields`: the value the store
/// keeps beside the record and indexes case-insensitively.
fn ext_text(object: &SObject, fields: &Map<String, Value>) -> Option<String> {
    match fields.get(object.external_id()?.name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds the system fields of a stored row to its fields, as reads show them.
pub fn with_system_fields(record: &mut Map<String, Value>, created: i64, modstamp: i64, deleted: bool) {
    record.insert("CreatedDate".into(), Value::String(datetime::format(created)));
    record.insert("LastModifiedDate".into(), Value::String(datetime::format(modstamp)));
    record.insert("SystemModstamp".into(), Value::String(datetime::format(modstamp)));
    record.insert("IsDeleted".into(), Value::Bool(deleted));
}

impl Org {
    pub fn new() -> anyhow::Result<Org> {
        let conn = Connection::open_in_memory()?;
        // created_at and modstamp are Unix seconds of the simulated clock;
        // LastModifiedDate and SystemModstamp both read modstamp.
        conn.execute_batch(
            "CREATE TABLE record (id TEXT PRIMARY KEY, sobject TEXT NOT NULL, ext_id TEXT, fields TEXT NOT NULL,
                 created_at INTEGER NOT NULL, modstamp INTEGER NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX record_ext ON record (sobject, ext_id COLLATE NOCASE);",
        )?;
        Ok(Org {
            conn,
            objects: objects(),
            validation_rule: None,
            duplicate_rule: None,
            next_id: 1,
            writes: 0,
            jobs: Default::default(),
            next_job: 0,
            hold_jobs: false,
            cursors: Default::default(),
        })
    }

    pub fn object(&self, name: &str) -> Option<&SObject> {
        self.objects.iter().find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// (id, fields) of the live record with this external id.
    pub fn find(&self, sobject: &str, ext_id: &str) -> Option<(String, Map<String, Value>)> {
        self.conn
            .prepare_cached(
                "SELECT id, fields FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE AND is_deleted = 0",
            )
            .and_then(|mut s| {
                s.query_row(params![sobject, ext_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .optional()
            })
            .ok()
            .flatten()
            .map(|(id, f)| (id, serde_json::from_str(&f).unwrap_or_default()))
    }

    /// Ids of every live record carrying this external id (more than one
    /// only when the field is not Unique and people created duplicates).
    pub fn matches(&self, sobject: &str, ext_id: &str) -> Vec<String> {
        self.conn
            .prepare_cached(
                "SELECT id FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE AND is_deleted = 0",
            )
            .and_then(|mut s| s.query_map(params![sobject, ext_id], |r| r.get(0))?.collect())
            .map(|mut ids: Vec<String>| {
                ids.sort();
                ids
            })
            .unwrap_or_default()
    }

    fn next_id(&mut self, object: &SObject) -> String {
        let id = salesforce_id(object.key_prefix, self.next_id);
        self.next_id += 1;
        id
    }

    /// Creates a record directly, as a person in the Salesforce UI would,
    /// without the connector's checks.
    pub fn insert_raw(&mut self, object: &SObject, ext_id: &str, fields: Map<String, Value>, now: i64) -> String {
        let id = self.next_id(object);
        let _ = self.conn.execute(
            "INSERT INTO record (id, sobject, ext_id, fields, created_at, modstamp) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![id, object.name, ext_id, Value::Object(fields).to_string(), now],
        );
        id
    }

    /// Record `id` (15 or 18 characters) of `sobject` with its system fields
    /// (CreatedDate, LastModifiedDate, SystemModstamp, IsDeleted).
    pub fn read(&self, sobject: &str, id: &str) -> Read {
        let Some(id) = normalize_id(id) else { return Read::Missing };
        let row: Option<(String, i64, i64, bool)> = self
            .conn
            .prepare_cached(
                "SELECT fields, created_at, modstamp, is_deleted FROM record WHERE sobject = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![sobject, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
            })
            .ok()
            .flatten();
        match row {
            None => Read::Missing,
            Some((_, _, _, true)) => Read::Deleted,
            Some((fields, created, modstamp, false)) => {
                let mut record: Map<String, Value> = serde_json::from_str(&fields).unwrap_or_default();
                with_system_fields(&mut record, created, modstamp, false);
                Read::Live(record)
            }
        }
    }

    /// The Salesforce id of the live record with this external id.
    pub fn find_id(&self, sobject: &str, ext_id: &str) -> Option<String> {
        self.conn
            .prepare_cached(
                "SELECT id FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE AND is_deleted = 0",
            )
            .and_then(|mut s| s.query_row(params![sobject, ext_id], |r| r.get(0)).optional())
            .ok()
            .flatten()
    }

    /// Live records of `sobject` (the Recycle Bin not counted).
    pub fn count(&self, sobject: &str) -> u64 {
        self.conn
            .query_row("SELECT COUNT(*) FROM record WHERE sobject = ?1 AND is_deleted = 0", params![sobject], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0) as u64
    }

    /// Moves record `id` to the Recycle Bin: the row stays with IsDeleted
    /// set and its SystemModstamp moved, so queryAll still finds it.
    pub fn delete(&mut self, id: &str, now: i64) -> Deleted {
        let Some(id) = normalize_id(id) else { return Deleted::NoSuchId };
        let moved = self
            .conn
            .prepare_cached("UPDATE record SET is_deleted = 1, modstamp = ?2 WHERE id = ?1 AND is_deleted = 0")
            .and_then(|mut s| s.execute(params![id, now]))
            .unwrap_or(0);
        self.deleted_outcome(&id, moved)
    }

    /// Deletes record `id` for good (Bulk API hardDelete): queryAll no
    /// longer finds it either.
    pub fn hard_delete(&mut self, id: &str) -> Deleted {
        let Some(id) = normalize_id(id) else { return Deleted::NoSuchId };
        let removed =
            self.conn.execute("DELETE FROM record WHERE id = ?1 AND is_deleted = 0", params![id]).unwrap_or(0);
        self.deleted_outcome(&id, removed)
    }

    fn deleted_outcome(&mut self, id: &str, changed: usize) -> Deleted {
        if changed > 0 {
            self.writes += 1;
            return Deleted::Ok;
        }
        let held: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM record WHERE id = ?1)", params![id], |r| r.get(0))
            .unwrap_or(false);
        if held { Deleted::AlreadyDeleted } else { Deleted::NoSuchId }
    }

    /// Refuses the whole request when a record names a field the object
    /// lacks, as Salesforce does while deserializing.
    pub fn check_fields(&self, object: &SObject, record: &Map<String, Value>) -> Result<(), RequestError> {
        for key in record.keys() {
            if key == "attributes" || matches!(object.named(key), (Some(_), _) | (_, Some(_))) {
                continue;
            }
            return Err(RequestError::new(
                400,
                "INVALID_FIELD",
                format!("No such column '{key}' on sobject of type {}", object.name),
            ));
        }
        Ok(())
    }

    /// The values a write sets, checked field by field: writable, of the
    /// right type and length; parents named by external id (or lookups set
    /// to an Id) resolved to live records' ids.
    fn field_values(&self, object: &SObject, record: &Map<String, Value>) -> Result<Map<String, Value>, RecordError> {
        let mut values = Map::new();
        for (key, value) in record {
            if key == "attributes" {
                continue;
            }
            let (field, relationship) = object.named(key);
            if let Some(rel) = relationship {
                let (_, target) = rel.relationship.expect("relationship fields carry their target");
                let Value::Object(parent_key) = value else {
                    return Err(RecordError::new(
                        "INVALID_FIELD",
                        format!("Invalid value for relationship {key}"),
                        &[],
                    ));
                };
                let Some((parent_field, parent_value)) = parent_key.iter().find(|(k, _)| *k != "attributes") else {
                    return Err(RecordError::new(
                        "INVALID_FIELD",
                        format!("Foreign key external ID: not found for field {key}"),
                        &[],
                    ));
                };
                let parent_value =
                    parent_value.as_str().map(str::to_string).unwrap_or_else(|| parent_value.to_string());
                match self.find_id(target, &parent_value) {
                    Some(parent_id) => {
                        values.insert(rel.name.to_string(), Value::String(parent_id));
                    }
                    None => {
                        return Err(RecordError::new(
                            "INVALID_FIELD",
                            format!(
                                "Foreign key external ID: {parent_value} not found for field {parent_field} in entity {target}"
                            ),
                            &[],
                        ));
                    }
                }
                continue;
            }
            let field = field.expect("fields were checked before the write");
            if !field.updateable {
                return Err(RecordError::new(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field.",
                        field.name
                    ),
                    &[field.name],
                ));
            }
            if field.kind == FieldType::Boolean {
                match value {
                    Value::Bool(_) => {
                        values.insert(field.name.to_string(), value.clone());
                        continue;
                    }
                    _ => {
                        return Err(RecordError::new(
                            "JSON_PARSER_ERROR",
                            format!("Cannot deserialize instance of boolean from {value} for {}", field.name),
                            &[field.name],
                        ));
                    }
                }
            }
            if field.kind == FieldType::Int {
                let number = match value {
                    Value::Null => Some(Value::Null),
                    Value::Number(n) if n.is_i64() => Some(value.clone()),
                    Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
                    _ => None,
                };
                let Some(number) = number else {
                    return Err(RecordError::new(
                        "JSON_PARSER_ERROR",
                        format!("Cannot deserialize instance of int from {value} for {}", field.name),
                        &[field.name],
                    ));
                };
                values.insert(field.name.to_string(), number);
                continue;
            }
            let text = match value {
                Value::Null => {
                    values.insert(field.name.to_string(), Value::Null);
                    continue;
                }
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    return Err(RecordError::new(
                        "JSON_PARSER_ERROR",
                        format!("Cannot deserialize instance of {:?} from {value}", field.kind),
                        &[field.name],
                    ));
                }
            };
            if field.kind == FieldType::Reference && !text.is_empty() {
                values.insert(field.name.to_string(), Value::String(self.lookup_id(field, &text)?));
                continue;
            }
            if text.chars().count() > field.length {
                let shown: String = text.chars().take(40).collect();
                return Err(RecordError::new(
                    "STRING_TOO_LONG",
                    format!("{}: data value too large: {shown} (max length={})", field.name, field.length),
                    &[field.name],
                ));
            }
            if field.kind == FieldType::Email && !text.contains('@') {
                return Err(RecordError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {text}", field.name),
                    &[field.name],
                ));
            }
            values.insert(field.name.to_string(), Value::String(text));
        }
        Ok(values)
    }

    /// A lookup set to an Id: it must name a live record of the target object.
    fn lookup_id(&self, field: &Field, text: &str) -> Result<String, RecordError> {
        let (_, target) = field.relationship.expect("lookup fields carry their target");
        let prefix = self.object(target).map_or("", |o| o.key_prefix);
        let Some(id) = normalize_id(text).filter(|id| id.starts_with(prefix)) else {
            return Err(RecordError::new(
                "FIELD_INTEGRITY_EXCEPTION",
                format!("{target} ID: id value of incorrect type: {text}"),
                &[field.name],
            ));
        };
        match self.read(target, &id) {
            Read::Live(_) => Ok(id),
            Read::Deleted => Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[field.name])),
            Read::Missing => {
                Err(RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[field.name]))
            }
        }
    }

    /// What a record must satisfy once its new values are merged in:
    /// required fields and the validation rule.
    fn check_complete(&self, object: &SObject, merged: &Map<String, Value>) -> Result<(), RecordError> {
        let missing: Vec<&str> = object
            .fields
            .iter()
            .filter(|f| f.required && merged.get(f.name).is_none_or(|v| v.is_null() || v.as_str() == Some("")))
            .map(|f| f.name)
            .collect();
        if !missing.is_empty() {
            return Err(RecordError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
                &missing,
            ));
        }
        if let Some(rule) = self.validation_rule.as_ref().filter(|r| r.sobject == object.name) {
            let hit = merged.get(&rule.field).and_then(Value::as_str).is_some_and(|v| v.contains(&rule.contains));
            if hit {
                return Err(RecordError::new("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message.clone(), &[]));
            }
        }
        Ok(())
    }

    /// The matching rule: a new record may not repeat an existing one's value.
    fn check_duplicate_rule(&self, object: &SObject, values: &Map<String, Value>) -> Result<(), RecordError> {
        let Some((sobject, field)) = self.duplicate_rule.as_ref().filter(|(o, _)| o == object.name) else {
            return Ok(());
        };
        let Some(v) = values.get(field).and_then(Value::as_str) else { return Ok(()) };
        let taken: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM record WHERE sobject = ?1 AND is_deleted = 0
                     AND json_extract(fields, '$.' || ?2) = ?3)",
                params![sobject, field, v],
                |r| r.get(0),
            )
            .unwrap_or(false);
        if taken {
            return Err(RecordError::new("DUPLICATES_DETECTED", "Use one of these records?", &[]));
        }
        Ok(())
    }

    /// A Unique external id may be held by one live record only.
    fn check_unique(&self, object: &SObject, ext: Option<&str>, except: Option<&str>) -> Result<(), RecordError> {
        let (Some(field), Some(ext)) = (object.external_id().filter(|f| f.unique), ext) else { return Ok(()) };
        let holder: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT id FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE AND is_deleted = 0
                     AND id != ?3 LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![object.name, ext, except.unwrap_or("")], |r| r.get(0)).optional())
            .ok()
            .flatten();
        match holder {
            Some(id) => Err(RecordError::new(
                "DUPLICATE_VALUE",
                format!("duplicate value found: {} duplicates value on record with id: {id}", field.name),
                &[field.name],
            )),
            None => Ok(()),
        }
    }

    /// Creates a record (REST `POST sobjects/{SObject}`, Bulk insert).
    pub fn create(&mut self, object: &SObject, record: &Map<String, Value>, now: i64) -> Result<String, RecordError> {
        if record.iter().any(|(k, v)| k.eq_ignore_ascii_case("Id") && !v.is_null()) {
            return Err(RecordError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "cannot specify Id in an insert call",
                &["Id"],
            ));
        }
        let values = self.field_values(object, record)?;
        self.check_duplicate_rule(object, &values)?;
        self.check_complete(object, &values)?;
        let ext = ext_text(object, &values);
        self.check_unique(object, ext.as_deref(), None)?;
        let id = self.next_id(object);
        self.conn
            .prepare_cached(
                "INSERT INTO record (id, sobject, ext_id, fields, created_at, modstamp) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, object.name, ext, Value::Object(values).to_string(), now]))
            .map_err(|e| RecordError::new("UNKNOWN_EXCEPTION", e.to_string(), &[]))?;
        self.writes += 1;
        Ok(id)
    }

    /// Updates record `id` with the fields of `record`; the fields it leaves
    /// out keep their values. Answers the record's 18-character id.
    pub fn update(
        &mut self,
        object: &SObject,
        id: &str,
        record: &Map<String, Value>,
        now: i64,
    ) -> Result<String, WriteError> {
        let id = normalize_id(id).ok_or(WriteError::NotFound)?;
        let row: Option<(String, bool, Option<String>)> = self
            .conn
            .prepare_cached("SELECT fields, is_deleted, ext_id FROM record WHERE sobject = ?1 AND id = ?2")
            .and_then(|mut s| {
                s.query_row(params![object.name, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
            })
            .ok()
            .flatten();
        let (fields, old_ext) = match row {
            None => return Err(WriteError::NotFound),
            Some((_, true, _)) => return Err(WriteError::Deleted),
            Some((fields, false, ext)) => (fields, ext),
        };
        let values = self.field_values(object, record)?;
        let mut merged: Map<String, Value> = serde_json::from_str(&fields).unwrap_or_default();
        merged.extend(values);
        self.check_complete(object, &merged)?;
        let ext = ext_text(object, &merged);
        let same_key = match (&ext, &old_ext) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same_key {
            self.check_unique(object, ext.as_deref(), Some(&id))?;
        }
        self.conn
            .prepare_cached("UPDATE record SET fields = ?1, ext_id = ?2, modstamp = ?3 WHERE id = ?4")
            .and_then(|mut s| s.execute(params![Value::Object(merged).to_string(), ext, now, id]))
            .map_err(|e| RecordError::new("UNKNOWN_EXCEPTION", e.to_string(), &[]))?;
        self.writes += 1;
        Ok(id)
    }

    /// Upserts one record by `ext_field`. `now` is simulated Unix seconds.
    pub fn upsert(
        &mut self,
        object: &SObject,
        ext_field: &str,
        record: &Map<String, Value>,
        now: i64,
    ) -> Result<Upserted, RecordError> {
        if ext_field.eq_ignore_ascii_case("Id") {
            return self.upsert_by_id(object, record, now);
        }
        let ext_value = match record.get(ext_field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(RecordError::new("MISSING_ARGUMENT", format!("{ext_field} not specified"), &[ext_field])),
        };
        let values = self.field_values(object, record)?;

        // One lookup gives both the duplicates check and the record to update;
        // records in the Recycle Bin do not match, so their key makes a new record.
        // Sorted here, not by ORDER BY: with ORDER BY, SQLite re-prepares the
        // statement on every run (a third of this call's time).
        let mut matching: Vec<(String, String, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT id, fields, ext_id FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE
                     AND is_deleted = 0",
            )
            .and_then(|mut st| {
                st.query_map(params![object.name, ext_value], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
            })
            .unwrap_or_default();
        if matching.len() > 1 {
            matching.sort();
            let ids: Vec<&str> = matching.iter().map(|(id, _, _)| id.as_str()).collect();
            return Err(RecordError::new(
                "DUPLICATE_EXTERNAL_ID",
                format!("{ext_field}: more than one record found for external id field: {}", ids.join(", ")),
                &[ext_field],
            ));
        }
        let existing = matching.into_iter().next();
        if existing.is_none() {
            self.check_duplicate_rule(object, &values)?;
        }
        let merged = match &existing {
            Some((_, fields, _)) => {
                let mut merged: Map<String, Value> = serde_json::from_str(fields).unwrap_or_default();
                merged.extend(values);
                merged
            }
            None => values,
        };
        self.check_complete(object, &merged)?;

        let fields_text = Value::Object(merged).to_string();
        let failed = |e: rusqlite::Error| RecordError::new("UNKNOWN_EXCEPTION", e.to_string(), &[]);
        self.writes += 1;
        match existing {
            // The stamp moves even when no value changed, as Salesforce's does.
            Some((id, _, old_ext)) if old_ext.as_deref() == Some(ext_value.as_str()) => {
                self.conn
                    .prepare_cached("UPDATE record SET fields = ?1, modstamp = ?2 WHERE id = ?3")
                    .and_then(|mut s| s.execute(params![fields_text, now, id]))
                    .map_err(failed)?;
                Ok(Upserted { id, created: false })
            }
            Some((id, _, _)) => {
                self.conn
                    .prepare_cached("UPDATE record SET fields = ?1, ext_id = ?2, modstamp = ?3 WHERE id = ?4")
                    .and_then(|mut s| s.execute(params![fields_text, ext_value, now, id]))
                    .map_err(failed)?;
                Ok(Upserted { id, created: false })
            }
            None => {
                let id = self.next_id(object);
                self.conn
                    .prepare_cached(
                        "INSERT INTO record (id, sobject, ext_id, fields, created_at, modstamp) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    )
                    .and_then(|mut s| s.execute(params![id, object.name, ext_value, fields_text, now]))
                    .map_err(failed)?;
                Ok(Upserted { id, created: true })
            }
        }
    }

    /// Upsert keyed on Id: update the record it names, or create one when
    /// the record carries no Id.
    fn upsert_by_id(
        &mut self,
        object: &SObject,
        record: &Map<String, Value>,
        now: i64,
    ) -> Result<Upserted, RecordError> {
        let id = record.iter().find(|(k, _)| k.eq_ignore_ascii_case("Id")).and_then(|(_, v)| v.as_str());
        let rest: Map<String, Value> =
            record.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("Id")).map(|(k, v)| (k.clone(), v.clone())).collect();
        match id.filter(|id| !id.is_empty()) {
            None => self.create(object, &rest, now).map(|id| Upserted { id, created: true }),
            Some(id) => match self.update(object, id, &rest, now) {
                Ok(id) => Ok(Upserted { id, created: false }),
                Err(WriteError::Record(e)) => Err(e),
                Err(WriteError::Deleted) => Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[])),
                Err(WriteError::NotFound) => Err(RecordError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    format!("invalid cross reference id: {id}"),
                    &[],
                )),
            },
        }
    }
}
