//! The simulated org's records and the upsert-by-external-id semantics:
//! create or update, required fields, field lengths, parent lookups by
//! external id, duplicate external ids in one request, validation rules.

use super::schema::{FieldType, SObject, objects, salesforce_id};
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
    tombstones: std::collections::HashSet<String>,
    pub jobs: std::collections::HashMap<String, super::bulk::Job>,
    pub next_job: u64,
    /// Closed jobs stay InProgress (their records are applied) while set,
    /// as a large job in a busy org does.
    pub hold_jobs: bool,
}

/// A per-record failure, as Salesforce reports it.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub status_code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    fn new(status_code: &'static str, message: impl Into<String>, fields: &[&str]) -> RecordError {
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

pub struct Upserted {
    pub id: String,
    pub created: bool,
}

impl Org {
    pub fn new() -> anyhow::Result<Org> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE record (id TEXT PRIMARY KEY, sobject TEXT NOT NULL, ext_id TEXT, fields TEXT NOT NULL,
                 created_at INTEGER NOT NULL, modstamp INTEGER NOT NULL);
             CREATE INDEX record_ext ON record (sobject, ext_id COLLATE NOCASE);",
        )?;
        Ok(Org {
            conn,
            objects: objects(),
            validation_rule: None,
            duplicate_rule: None,
            next_id: 1,
            writes: 0,
            tombstones: Default::default(),
            jobs: Default::default(),
            next_job: 0,
            hold_jobs: false,
        })
    }

    pub fn object(&self, name: &str) -> Option<&SObject> {
        self.objects.iter().find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// (id, fields) of the record with this external id.
    pub fn find(&self, sobject: &str, ext_id: &str) -> Option<(String, Map<String, Value>)> {
        self.conn
            .prepare_cached("SELECT id, fields FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE")
            .and_then(|mut s| {
                s.query_row(params![sobject, ext_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .optional()
            })
            .ok()
            .flatten()
            .map(|(id, f)| (id, serde_json::from_str(&f).unwrap_or_default()))
    }

    /// Ids of every record carrying this external id (more than one only
    /// when the field is not Unique and people created duplicates).
    pub fn matches(&self, sobject: &str, ext_id: &str) -> Vec<String> {
        self.conn
            .prepare_cached("SELECT id FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE ORDER BY id")
            .and_then(|mut s| s.query_map(params![sobject, ext_id], |r| r.get(0))?.collect())
            .unwrap_or_default()
    }

    /// Creates a record directly, as a person in the Salesforce UI would,
    /// without the connector's checks.
    pub fn insert_raw(&mut self, object: &SObject, ext_id: &str, fields: Map<String, Value>, now: i64) -> String {
        let id = salesforce_id(object.key_prefix, self.next_id);
        self.next_id += 1;
        let _ = self.conn.execute(
            "INSERT INTO record (id, sobject, ext_id, fields, created_at, modstamp) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![id, object.name, ext_id, Value::Object(fields).to_string(), now],
        );
        id
    }

    /// The fields of record `id` of `sobject` with its system fields
    /// (CreatedDate, SystemModstamp, LastModifiedDate, IsDeleted).
    pub fn record(&self, sobject: &str, id: &str) -> Option<Map<String, Value>> {
        let (fields, created, modstamp): (String, i64, i64) = self
            .conn
            .prepare_cached("SELECT fields, created_at, modstamp FROM record WHERE sobject = ?1 AND id = ?2")
            .and_then(|mut s| s.query_row(params![sobject, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .ok()?;
        let mut record: Map<String, Value> = serde_json::from_str(&fields).unwrap_or_default();
        let stamp = |secs: i64| {
            time::OffsetDateTime::from_unix_timestamp(secs)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .map(|t| Value::String(t.replace('Z', ".000+0000")))
                .unwrap_or(Value::Null)
        };
        record.insert("CreatedDate".into(), stamp(created));
        record.insert("LastModifiedDate".into(), stamp(modstamp));
        record.insert("SystemModstamp".into(), stamp(modstamp));
        record.insert("IsDeleted".into(), Value::Bool(false));
        Some(record)
    }

    /// The Salesforce id of the record with this external id.
    pub fn find_id(&self, sobject: &str, ext_id: &str) -> Option<String> {
        self.conn
            .prepare_cached("SELECT id FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE")
            .and_then(|mut s| s.query_row(params![sobject, ext_id], |r| r.get(0)).optional())
            .ok()
            .flatten()
    }

    pub fn count(&self, sobject: &str) -> u64 {
        self.conn
            .query_row("SELECT COUNT(*) FROM record WHERE sobject = ?1", params![sobject], |r| r.get::<_, i64>(0))
            .unwrap_or(0) as u64
    }

    /// Deletes by Salesforce id, keeping a tombstone as the recycle bin does.
    pub fn delete(&mut self, id: &str) -> Deleted {
        let removed = self.conn.execute("DELETE FROM record WHERE id = ?1", params![id]).unwrap_or(0);
        if removed > 0 {
            self.writes += 1;
            self.tombstones.insert(id.to_string());
            Deleted::Ok
        } else if self.tombstones.contains(id) {
            Deleted::AlreadyDeleted
        } else {
            Deleted::NoSuchId
        }
    }

    /// Refuses the whole request when a record names a field the object
    /// lacks, as Salesforce does while deserializing.
    pub fn check_fields(&self, object: &SObject, record: &Map<String, Value>) -> Result<(), RequestError> {
        for key in record.keys() {
            if key == "attributes" || object.field(key).is_some() || object.relationship(key).is_some() {
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

    /// Upserts one record by `ext_field`. `now` is simulated Unix seconds.
    pub fn upsert(
        &mut self,
        object: &SObject,
        ext_field: &str,
        record: &Map<String, Value>,
        now: i64,
    ) -> Result<Upserted, RecordError> {
        let ext_value = match record.get(ext_field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(RecordError::new("MISSING_ARGUMENT", format!("{ext_field} not specified"), &[ext_field])),
        };
        let mut values = Map::new();
        for (key, value) in record {
            if key == "attributes" {
                continue;
            }
            if let Some(rel) = object.relationship(key) {
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
            let field = object.field(key).expect("fields were checked before the upsert");
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

        // One lookup gives both the duplicates check and the record to update.
        let matching: Vec<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT id, fields FROM record WHERE sobject = ?1 AND ext_id = ?2 COLLATE NOCASE ORDER BY id",
            )
            .and_then(|mut st| st.query_map(params![object.name, ext_value], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .unwrap_or_default();
        if matching.len() > 1 {
            let ids: Vec<&str> = matching.iter().map(|(id, _)| id.as_str()).collect();
            return Err(RecordError::new(
                "DUPLICATE_EXTERNAL_ID",
                format!("{ext_field}: more than one record found for external id field: {}", ids.join(", ")),
                &[ext_field],
            ));
        }
        let existing: Option<(String, Map<String, Value>)> =
            matching.into_iter().next().map(|(id, f)| (id, serde_json::from_str(&f).unwrap_or_default()));
        let rule = self.duplicate_rule.clone().filter(|(o, _)| existing.is_none() && o == object.name);
        if let Some((sobject, field)) = rule
            && let Some(v) = values.get(&field).and_then(Value::as_str)
        {
            let taken: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM record WHERE sobject = ?1 AND json_extract(fields, '$.' || ?2) = ?3)",
                    params![sobject, field, v],
                    |r| r.get(0),
                )
                .unwrap_or(false);
            if taken {
                return Err(RecordError::new("DUPLICATES_DETECTED", "Use one of these records?", &[]));
            }
        }
        let mut merged = existing.as_ref().map(|(_, f)| f.clone()).unwrap_or_default();
        for (k, v) in values {
            merged.insert(k, v);
        }
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

        let fields_text = Value::Object(merged).to_string();
        self.writes += 1;
        match existing {
            Some((id, _)) => {
                self.conn
                    .prepare_cached("UPDATE record SET fields = ?1, modstamp = ?2 WHERE id = ?3")
                    .and_then(|mut s| s.execute(params![fields_text, now, id]))
                    .map_err(|e| RecordError::new("UNKNOWN_EXCEPTION", e.to_string(), &[]))?;
                Ok(Upserted { id, created: false })
            }
            None => {
                let id = salesforce_id(object.key_prefix, self.next_id);
                self.next_id += 1;
                self.conn
                    .prepare_cached(
                        "INSERT INTO record (id, sobject, ext_id, fields, created_at, modstamp) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    )
                    .and_then(|mut s| s.execute(params![id, object.name, ext_value, fields_text, now]))
                    .map_err(|e| RecordError::new("UNKNOWN_EXCEPTION", e.to_string(), &[]))?;
                Ok(Upserted { id, created: true })
            }
        }
    }
}
