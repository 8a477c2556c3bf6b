//! The simulated org's records and how writes treat them: upsert by
//! external id, create, update and delete by Id, with required fields, field
//! lengths, parent lookups by external id, unique external ids, validation
//! and matching rules. Every write stamps SystemModstamp (and
//! LastModifiedDate) as it writes the row; a delete keeps the row with
//! IsDeleted set, as the Recycle Bin does.

use super::datetime;
use super::schema::{Field, FieldType, SObject, normalize_id, objects, salesforce_id};
use super::table::{Record, Table};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

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
    pub table: Table,
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
    /// Bulk API internal batches (10,000 records each) processed since start.
    pub bulk_batches: u64,
    /// Closed jobs stay InProgress (their records are applied) while set,
    /// as a large job in a busy org does.
    pub hold_jobs: bool,
    /// Closed jobs not yet run, with the time each was closed.
    pub queued_jobs: Vec<(String, i64)>,
    /// Open query locators and their result snapshots.
    pub cursors: super::soql::Cursors,
    /// Records another transaction holds locked (an Apex job, a user's
    /// save), by Salesforce id, with the writing REST requests it outlives.
    pub row_locks: HashMap<String, u64>,
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
    /// Another transaction holds it (see [`Org::row_locks`]).
    Locked(RecordError),
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

/// A record's fields as the JSON text a row keeps (`to_string` on a `Value`
/// goes through `fmt::Write`: a third of an upsert's time in a profile).
fn stored_text(fields: &Map<String, Value>) -> Box<str> {
    serde_json::to_string(fields).expect("a JSON map serializes").into()
}

/// The field's name as stored: the request's key when it is spelled so
/// (as it nearly always is), saving a copy.
fn field_key(key: String, name: &str) -> String {
    if key == name { key } else { name.to_string() }
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
        Ok(Org {
            table: Table::default(),
            objects: objects(),
            validation_rule: None,
            duplicate_rule: None,
            next_id: 1,
            writes: 0,
            jobs: Default::default(),
            next_job: 0,
            bulk_batches: 0,
            hold_jobs: false,
            queued_jobs: Vec::new(),
            cursors: Default::default(),
            row_locks: HashMap::new(),
        })
    }

    /// One more writing REST request answered: locks held for their last one go.
    pub fn tick_row_locks(&mut self) {
        if !self.row_locks.is_empty() {
            self.row_locks.retain(|_, left| {
                *left = left.saturating_sub(1);
                *left > 0
            });
        }
    }

    /// The parents a record's lookups name, checked as [`Org::check_row_lock`].
    fn check_parent_locks(&self, object: &SObject, values: &Map<String, Value>) -> Result<(), RecordError> {
        if self.row_locks.is_empty() {
            return Ok(());
        }
        for (name, value) in values {
            if let (Some(field), Value::String(id)) = (object.field(name), value)
                && field.kind == FieldType::Reference
            {
                self.check_row_lock(id)?;
            }
        }
        Ok(())
    }

    /// A write that needs record `id` (itself, or a parent its lookup names:
    /// Salesforce locks the parent while a child is saved) while another
    /// transaction holds it fails, as Salesforce's does once its wait for
    /// the lock (about 10 s) runs out.
    fn check_row_lock(&self, id: &str) -> Result<(), RecordError> {
        if self.row_locks.is_empty() || !self.row_locks.contains_key(id) {
            return Ok(());
        }
        Err(RecordError::new(
            "UNABLE_TO_LOCK_ROW",
            format!("unable to obtain exclusive access to this record or 1 records: {id}"),
            &[],
        ))
    }

    pub fn object(&self, name: &str) -> Option<&SObject> {
        self.objects.iter().find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// (id, fields) of the live record with this external id.
    pub fn find(&self, sobject: &str, ext_id: &str) -> Option<(String, Map<String, Value>)> {
        self.live_with_ext(sobject, ext_id)
            .next()
            .map(|r| (r.id.clone(), serde_json::from_str(&r.fields).unwrap_or_default()))
    }

    /// Live records of `sobject` carrying this external id, oldest first.
    fn live_with_ext<'o>(&'o self, sobject: &str, ext_id: &str) -> impl Iterator<Item = &'o Record> + 'o {
        let slots = self.table.with_ext(sobject, ext_id);
        slots.iter().filter_map(|&s| self.table.get(s)).filter(|r| !r.deleted)
    }

    /// Ids of every live record carrying this external id (more than one
    /// only when the field is not Unique and people created duplicates).
    pub fn matches(&self, sobject: &str, ext_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self.live_with_ext(sobject, ext_id).map(|r| r.id.clone()).collect();
        ids.sort();
        ids
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
        self.table.insert(Record {
            id: id.clone(),
            sobject: object.name,
            ext_id: Some(ext_id.to_string()),
            fields: stored_text(&fields),
            created: now,
            modstamp: now,
            deleted: false,
        });
        id
    }

    /// Record `id` (15 or 18 characters) of `sobject` with its system fields
    /// (CreatedDate, LastModifiedDate, SystemModstamp, IsDeleted).
    pub fn read(&self, sobject: &str, id: &str) -> Read {
        let Some(id) = normalize_id(id) else { return Read::Missing };
        match self.table.by_id(&id).filter(|r| r.sobject == sobject) {
            None => Read::Missing,
            Some(r) if r.deleted => Read::Deleted,
            Some(r) => {
                let mut record: Map<String, Value> = serde_json::from_str(&r.fields).unwrap_or_default();
                with_system_fields(&mut record, r.created, r.modstamp, false);
                Read::Live(record)
            }
        }
    }

    /// The Salesforce id of the live record with this external id.
    pub fn find_id(&self, sobject: &str, ext_id: &str) -> Option<String> {
        self.live_with_ext(sobject, ext_id).next().map(|r| r.id.clone())
    }

    /// Ids of `sobject`'s records last changed within `[start, end]` (Unix
    /// seconds), with that time: live ones, or (`deleted`) those in the
    /// Recycle Bin, whose last change is their deletion. Oldest first.
    pub fn changed_between(&self, sobject: &str, start: i64, end: i64, deleted: bool) -> Vec<(String, i64)> {
        let mut found: Vec<(String, i64)> = self
            .table
            .of_object(sobject)
            .filter(|(_, r)| r.deleted == deleted && (start..=end).contains(&r.modstamp))
            .map(|(_, r)| (r.id.clone(), r.modstamp))
            .collect();
        found.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        found
    }

    /// Live records of `sobject` (the Recycle Bin not counted).
    pub fn count(&self, sobject: &str) -> u64 {
        self.table.of_object(sobject).filter(|(_, r)| !r.deleted).count() as u64
    }

    /// Moves record `id` to the Recycle Bin: the row stays with IsDeleted
    /// set and its SystemModstamp moved, so queryAll still finds it.
    pub fn delete(&mut self, id: &str, now: i64) -> Deleted {
        let Some(slot) = normalize_id(id).and_then(|id| self.table.slot(&id)) else { return Deleted::NoSuchId };
        if self.table.get(slot).is_some_and(|r| r.deleted) {
            return Deleted::AlreadyDeleted;
        }
        if let Some(Err(e)) = self.table.get(slot).map(|r| self.check_row_lock(&r.id)) {
            return Deleted::Locked(e);
        }
        self.table.modify(slot, |r| {
            r.deleted = true;
            r.modstamp = now;
        });
        self.writes += 1;
        self.follow_delete(slot, now);
        Deleted::Ok
    }

    /// What Salesforce does to the records that look up to a deleted one: an
    /// Account's Contacts go to the Recycle Bin with it; a lookup to any
    /// other record (a custom lookup's default, "clear the value of this
    /// field") is cleared, stamping the record.
    fn follow_delete(&mut self, slot: usize, now: i64) {
        let Some(parent) = self.table.get(slot).map(|r| (r.id.clone(), r.sobject)) else { return };
        let (id, sobject) = parent;
        let lookups: Vec<(&'static str, &'static str, bool)> = self
            .objects
            .iter()
            .flat_map(|o| o.fields.iter().map(move |f| (o.name, f)))
            .filter(|(_, f)| f.relationship.is_some_and(|(_, target)| target == sobject))
            .map(|(o, f)| (o, f.name, f.cascade_delete))
            .collect();
        for (child, field, cascade) in lookups {
            let linked: Vec<usize> = self
                .table
                .of_object(child)
                .filter(|(_, r)| !r.deleted && r.fields.contains(id.as_str()))
                .filter(|(_, r)| {
                    serde_json::from_str::<Map<String, Value>>(&r.fields)
                        .is_ok_and(|f| f.get(field).and_then(Value::as_str) == Some(id.as_str()))
                })
                .map(|(s, _)| s)
                .collect();
            for s in linked {
                if cascade {
                    self.table.modify(s, |r| {
                        r.deleted = true;
                        r.modstamp = now;
                    });
                } else {
                    self.table.modify(s, |r| {
                        if let Ok(mut fields) = serde_json::from_str::<Map<String, Value>>(&r.fields) {
                            fields.insert(field.to_string(), Value::Null);
                            r.fields = Value::Object(fields).to_string().into_boxed_str();
                        }
                        r.modstamp = now;
                    });
                }
                self.writes += 1;
            }
        }
    }

    /// Deletes record `id` for good (Bulk API hardDelete): queryAll no
    /// longer finds it either.
    pub fn hard_delete(&mut self, id: &str) -> Deleted {
        let Some(slot) = normalize_id(id).and_then(|id| self.table.slot(&id)) else { return Deleted::NoSuchId };
        if self.table.get(slot).is_some_and(|r| r.deleted) {
            return Deleted::AlreadyDeleted;
        }
        if let Some(Err(e)) = self.table.get(slot).map(|r| self.check_row_lock(&r.id)) {
            return Deleted::Locked(e);
        }
        self.table.remove(slot);
        self.writes += 1;
        Deleted::Ok
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
    /// Takes the record, so its values move into the result uncopied.
    fn field_values(&self, object: &SObject, record: Map<String, Value>) -> Result<Map<String, Value>, RecordError> {
        let mut values = Map::new();
        for (key, value) in record {
            if key == "attributes" {
                continue;
            }
            let (field, relationship) = object.named(&key);
            if let Some(rel) = relationship {
                let (_, target) = rel.relationship.expect("relationship fields carry their target");
                let Value::Object(parent_key) = &value else {
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
                // The parent is found by the field named, which must be its
                // External ID (the one field this simulator indexes).
                let target_ext = self.object(target).and_then(|o| o.external_id());
                if !target_ext.is_some_and(|f| f.name.eq_ignore_ascii_case(parent_field)) {
                    let named = self.object(target).and_then(|o| o.field(parent_field));
                    let message = match named {
                        Some(f) => format!(
                            "The field {} on entity {target} is not an External ID or indexed field: name the \
                             parent by its External ID field in {key}",
                            f.name
                        ),
                        None => format!("No such column '{parent_field}' on entity '{target}' (relationship {key})"),
                    };
                    return Err(RecordError::new("INVALID_FIELD", message, &[]));
                }
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
                        values.insert(field_key(key, field.name), value);
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
                let number = match &value {
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
                values.insert(field_key(key, field.name), number);
                continue;
            }
            let text = match value {
                Value::Null => {
                    values.insert(field_key(key, field.name), Value::Null);
                    continue;
                }
                Value::String(s) => s,
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
                values.insert(field_key(key, field.name), Value::String(self.lookup_id(field, &text)?));
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
            values.insert(field_key(key, field.name), Value::String(text));
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
        let taken = self.table.of_object(sobject).any(|(_, r)| {
            !r.deleted
                && serde_json::from_str::<Map<String, Value>>(&r.fields)
                    .is_ok_and(|f| f.get(field.as_str()).and_then(Value::as_str) == Some(v))
        });
        if taken {
            return Err(RecordError::new("DUPLICATES_DETECTED", "Use one of these records?", &[]));
        }
        Ok(())
    }

    /// A Unique external id may be held by one live record only.
    fn check_unique(&self, object: &SObject, ext: Option<&str>, except: Option<&str>) -> Result<(), RecordError> {
        let (Some(field), Some(ext)) = (object.external_id().filter(|f| f.unique), ext) else { return Ok(()) };
        let holder = self.live_with_ext(object.name, ext).find(|r| Some(r.id.as_str()) != except).map(|r| r.id.clone());
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
    pub fn create(&mut self, object: &SObject, record: Map<String, Value>, now: i64) -> Result<String, RecordError> {
        if record.iter().any(|(k, v)| k.eq_ignore_ascii_case("Id") && !v.is_null()) {
            return Err(RecordError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "cannot specify Id in an insert call",
                &["Id"],
            ));
        }
        let values = self.field_values(object, record)?;
        self.check_parent_locks(object, &values)?;
        self.check_duplicate_rule(object, &values)?;
        self.check_complete(object, &values)?;
        let ext = ext_text(object, &values);
        self.check_unique(object, ext.as_deref(), None)?;
        let id = self.next_id(object);
        self.table.insert(Record {
            id: id.clone(),
            sobject: object.name,
            ext_id: ext,
            fields: stored_text(&values),
            created: now,
            modstamp: now,
            deleted: false,
        });
        self.writes += 1;
        Ok(id)
    }

    /// Updates record `id` with the fields of `record`; the fields it leaves
    /// out keep their values. Answers the record's 18-character id.
    pub fn update(
        &mut self,
        object: &SObject,
        id: &str,
        record: Map<String, Value>,
        now: i64,
    ) -> Result<String, WriteError> {
        let id = normalize_id(id).ok_or(WriteError::NotFound)?;
        let slot = self.table.slot(&id).filter(|&s| self.table.get(s).is_some_and(|r| r.sobject == object.name));
        let Some(slot) = slot else { return Err(WriteError::NotFound) };
        let (fields, old_ext) = match self.table.get(slot) {
            None => return Err(WriteError::NotFound),
            Some(r) if r.deleted => return Err(WriteError::Deleted),
            Some(r) => (r.fields.clone(), r.ext_id.clone()),
        };
        let values = self.field_values(object, record)?;
        self.check_row_lock(&id)?;
        self.check_parent_locks(object, &values)?;
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
        let fields = stored_text(&merged);
        self.table.modify(slot, |r| {
            r.fields = fields;
            r.ext_id = ext;
            r.modstamp = now;
        });
        self.writes += 1;
        Ok(id)
    }

    /// Upserts one record by `ext_field`. `now` is simulated Unix seconds.
    pub fn upsert(
        &mut self,
        object: &SObject,
        ext_field: &str,
        record: Map<String, Value>,
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
        let matching: Vec<usize> = self
            .table
            .with_ext(object.name, &ext_value)
            .iter()
            .copied()
            .filter(|&s| self.table.get(s).is_some_and(|r| !r.deleted))
            .collect();
        if matching.len() > 1 {
            let mut ids: Vec<&str> =
                matching.iter().filter_map(|&s| self.table.get(s)).map(|r| r.id.as_str()).collect();
            ids.sort_unstable();
            return Err(RecordError::new(
                "DUPLICATE_EXTERNAL_ID",
                format!("{ext_field}: more than one record found for external id field: {}", ids.join(", ")),
                &[ext_field],
            ));
        }
        let existing = matching.first().and_then(|&s| self.table.get(s).map(|r| (s, r)));
        if let Some((_, row)) = existing {
            self.check_row_lock(&row.id)?;
        }
        self.check_parent_locks(object, &values)?;
        if existing.is_none() {
            self.check_duplicate_rule(object, &values)?;
        }
        let merged = match existing {
            Some((_, row)) => {
                let mut merged: Map<String, Value> = serde_json::from_str(&row.fields).unwrap_or_default();
                merged.extend(values);
                merged
            }
            None => values,
        };
        self.check_complete(object, &merged)?;

        let fields = stored_text(&merged);
        self.writes += 1;
        match existing.map(|(slot, row)| (slot, row.id.clone(), row.ext_id.as_deref() == Some(ext_value.as_str()))) {
            // The stamp moves even when no value changed, as Salesforce's does.
            Some((slot, id, same_ext)) => {
                self.table.modify(slot, |r| {
                    r.fields = fields;
                    if !same_ext {
                        r.ext_id = Some(ext_value);
                    }
                    r.modstamp = now;
                });
                Ok(Upserted { id, created: false })
            }
            None => {
                let id = self.next_id(object);
                self.table.insert(Record {
                    id: id.clone(),
                    sobject: object.name,
                    ext_id: Some(ext_value),
                    fields,
                    created: now,
                    modstamp: now,
                    deleted: false,
                });
                Ok(Upserted { id, created: true })
            }
        }
    }

    /// Upsert keyed on Id: update the record it names, or create one when
    /// the record carries no Id.
    fn upsert_by_id(
        &mut self,
        object: &SObject,
        mut record: Map<String, Value>,
        now: i64,
    ) -> Result<Upserted, RecordError> {
        let id =
            record.iter().find(|(k, _)| k.eq_ignore_ascii_case("Id")).and_then(|(_, v)| v.as_str()).map(String::from);
        record.retain(|k, _| !k.eq_ignore_ascii_case("Id"));
        let rest = record;
        match id.as_deref().filter(|id| !id.is_empty()) {
            None => self.create(object, rest, now).map(|id| Upserted { id, created: true }),
            Some(id) => match self.update(object, id, rest, now) {
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
