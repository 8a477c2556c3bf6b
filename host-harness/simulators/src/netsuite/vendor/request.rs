//! A request body read into the changes it asks for, with every reason
//! NetSuite would refuse it (unknown names and invalid values as the
//! request's validation headers ask; over-long text always).

use super::{
    ADDRESS_FIELDS, ADDRESS_IGNORED, COLLECTION_IGNORED, ENTITY, Field, Kind, LINE_IGNORED, READ_ONLY, RecordType,
    listed,
};
use crate::netsuite::errors::{Detail, RestError};
use axum::http::StatusCode;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};

/// How the client asked NetSuite to treat unknown names and invalid values
/// (`X-NetSuite-PropertyNameValidation` / `...PropertyValueValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Error,
    Warning,
    Ignore,
}

impl Check {
    pub fn parse(value: &str) -> Option<Check> {
        match value.to_ascii_lowercase().as_str() {
            "error" => Some(Check::Error),
            "warning" => Some(Check::Warning),
            "ignore" => Some(Check::Ignore),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub names: Check,
    pub values: Check,
}

impl Default for Checks {
    /// The vendor operations' defaults: names Warning, values Error.
    fn default() -> Checks {
        Checks { names: Check::Warning, values: Check::Error }
    }
}

/// One `addressBook` line of a request.
#[derive(Debug, Default)]
pub(super) struct AddressLine {
    /// The line's key (`id` / `internalId`): an existing line to change.
    pub(super) key: Option<i64>,
    pub(super) label: Option<Sql>,
    pub(super) default_billing: Option<bool>,
    pub(super) default_shipping: Option<bool>,
    pub(super) address: Vec<(&'static str, Sql)>,
    pub(super) path: String,
}

/// What a request body asks to change.
#[derive(Debug, Default)]
pub struct Changes {
    pub(super) fields: Vec<(&'static Field, Sql)>,
    pub(super) address_book: Option<Vec<AddressLine>>,
}

impl Changes {
    /// The value the body gives a field (REST name), if it names it (Null: clear).
    pub fn value(&self, name: &str) -> Option<&Sql> {
        self.fields.iter().rev().find(|(f, _)| f.name == name).map(|(_, v)| v)
    }

    /// An upsert's external id comes from its URL.
    pub fn set_external_id(&mut self, rt: &RecordType, eid: &str) {
        if let Some(f) = rt.field_named("externalId") {
            self.fields.push((f, Sql::Text(eid.to_string())));
        }
    }
}

/// `replace` and `replaceSelectedFields`: sublists whose lines the body
/// replaces, and fields to clear when the body leaves them out.
#[derive(Debug, Default)]
pub struct Replace {
    pub address_book: bool,
    pub clear: Vec<&'static Field>,
}

impl Replace {
    pub fn parse(rt: &RecordType, replace: Option<&str>, selected_fields: bool) -> Result<Replace, RestError> {
        let mut out = Replace::default();
        for name in replace.unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if rt.address_book && name.eq_ignore_ascii_case("addressBook") {
                out.address_book = true;
            } else if let Some(f) = rt.field_named(name).filter(|_| selected_fields) {
                out.clear.push(f);
            } else {
                return Err(RestError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER",
                    format!(
                        "Invalid value for query parameter replace: {name}. Name a sublist (addressBook), or a body \
                         field together with replaceSelectedFields=true."
                    ),
                )
                .at_query_param("replace"));
            }
        }
        Ok(out)
    }
}

pub(super) fn invalid_value(shown: &str, name: &str, path: &str) -> Detail {
    Detail::new(
        "INVALID_CONTENT",
        format!("Error while accessing a resource. You have entered an Invalid Field Value {shown} for the following field: {name}"),
    )
    .at_path(path)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn reference_exists(conn: &Connection, table: &str, id: i64) -> rusqlite::Result<bool> {
    let sql = match table {
        "term" => "SELECT 1 FROM term WHERE id = ?1 AND isinactive = 'F'",
        // A contact's company: a customer or a vendor (reference 3.2).
        ENTITY => "SELECT 1 FROM customer WHERE id = ?1 UNION ALL SELECT 1 FROM vendor WHERE id = ?1",
        "currency" => "SELECT 1 FROM currency WHERE id = ?1",
        _ => "SELECT 1 FROM subsidiary WHERE id = ?1",
    };
    Ok(conn.prepare_cached(sql)?.query_row([id], |_| Ok(())).optional()?.is_some())
}

fn id_value(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A field's value as stored, or why NetSuite refuses it (`record` errors
/// stop the write whatever the value validation asks).
enum Refused {
    Value(Detail),
    Record(Detail),
}

fn field_value(conn: &Connection, field: &Field, value: &Value, path: &str) -> Result<Sql, Refused> {
    let bad = || Refused::Value(invalid_value(&shown(value), field.name, path));
    match (field.kind, value) {
        (_, Value::Null) => Ok(Sql::Null),
        (Kind::Text(_), Value::String(s)) if s.is_empty() => Ok(Sql::Null),
        (Kind::Text(max), Value::String(s)) => match max.filter(|m| s.chars().count() > *m) {
            Some(m) => Err(Refused::Record(
                Detail::new(
                    "USER_ERROR",
                    format!(
                        "Error while accessing a resource. The field {} contained more than the maximum number ( {m} ) \
                         of characters allowed.",
                        field.column
                    ),
                )
                .at_path(path),
            )),
            None => Ok(Sql::Text(s.clone())),
        },
        (Kind::Bool, Value::Bool(b)) => Ok(Sql::Text(if *b { "T" } else { "F" }.into())),
        (Kind::Reference(table), Value::Object(reference)) => {
            let shown_id = reference.get("id").or_else(|| reference.get("externalId")).map(shown).unwrap_or_default();
            let Some(id) = id_value(reference.get("id")) else {
                // The simulated terms, subsidiaries and currencies have no external ids
                // (nor do companies named by one: the reference shows references by id only).
                return Err(Refused::Value(invalid_value(&shown_id, field.name, path)));
            };
            match reference_exists(conn, table, id) {
                Ok(true) => Ok(Sql::Integer(id)),
                _ => Err(Refused::Value(invalid_value(&shown_id, field.name, path))),
            }
        }
        _ => Err(bad()),
    }
}

fn unknown_name(name: &str, path: &str) -> Detail {
    Detail::new(
        "NONEXISTENT_FIELD",
        format!("Error while accessing a resource. Invalid field name '{name}': the field does not exist on this record type."),
    )
    .at_path(path)
}

/// Collects details as the request's validation headers ask.
struct Findings {
    checks: Checks,
    errors: Vec<Detail>,
}

impl Findings {
    fn unknown(&mut self, name: &str, path: &str) {
        if self.checks.names == Check::Error {
            self.errors.push(unknown_name(name, path));
        }
    }

    fn refused(&mut self, refused: Refused) {
        match refused {
            Refused::Value(d) if self.checks.values == Check::Error => self.errors.push(d),
            Refused::Value(_) => {}
            Refused::Record(d) => self.errors.push(d),
        }
    }
}

fn text_or_null(value: &Value) -> Option<Sql> {
    match value {
        Value::Null => Some(Sql::Null),
        Value::String(s) if s.is_empty() => Some(Sql::Null),
        Value::String(s) => Some(Sql::Text(s.clone())),
        _ => None,
    }
}

fn address(value: &Value, path: &str, found: &mut Findings) -> Vec<(&'static str, Sql)> {
    let Value::Object(fields) = value else {
        found.refused(Refused::Value(invalid_value(&shown(value), "addressBookAddress", path)));
        return vec![];
    };
    let mut out = Vec::new();
    for (key, value) in fields {
        let here = format!("{path}.{key}");
        let Some((name, column)) = ADDRESS_FIELDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)) else {
            if !listed(ADDRESS_IGNORED, key) {
                found.unknown(key, &here);
            }
            continue;
        };
        let parsed = if *name == "country" {
            // An enumeration: {"id": "US"} (a bare "US" is taken too).
            let code = match value {
                Value::Object(o) => o.get("id").cloned().unwrap_or(Value::Null),
                other => other.clone(),
            };
            match code {
                Value::Null => Some(Sql::Null),
                Value::String(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => Some(Sql::Text(c)),
                _ => None,
            }
        } else {
            text_or_null(value)
        };
        match parsed {
            Some(v) => out.push((*column, v)),
            None => found.refused(Refused::Value(invalid_value(&shown(value), name, &here))),
        }
    }
    out
}

fn address_line(item: &Value, path: &str, found: &mut Findings) -> AddressLine {
    let mut line = AddressLine { path: path.to_string(), ..Default::default() };
    let Value::Object(keys) = item else {
        found.refused(Refused::Value(invalid_value(&shown(item), "addressBook", path)));
        return line;
    };
    for (key, value) in keys {
        let here = format!("{path}.{key}");
        let bool_value = |found: &mut Findings, name: &str| match value {
            Value::Bool(b) => Some(*b),
            other => {
                found.refused(Refused::Value(invalid_value(&shown(other), name, &here)));
                None
            }
        };
        match key.to_ascii_lowercase().as_str() {
            "addressbookaddress" => line.address = address(value, &here, found),
            "defaultbilling" => line.default_billing = bool_value(found, "defaultBilling"),
            "defaultshipping" => line.default_shipping = bool_value(found, "defaultShipping"),
            "label" => match text_or_null(value) {
                Some(v) => line.label = Some(v),
                None => found.refused(Refused::Value(invalid_value(&shown(value), "label", &here))),
            },
            "id" | "internalid" => match id_value(Some(value)) {
                Some(k) => line.key = Some(k),
                None => found.refused(Refused::Value(invalid_value(&shown(value), key, &here))),
            },
            _ if listed(LINE_IGNORED, key) => {}
            _ => found.unknown(key, &here),
        }
    }
    line
}

fn address_book(value: &Value, path: &str, found: &mut Findings) -> Option<Vec<AddressLine>> {
    let Value::Object(collection) = value else {
        found.refused(Refused::Value(invalid_value(&shown(value), "addressBook", path)));
        return None;
    };
    let mut lines = Vec::new();
    for (key, value) in collection {
        if key == "items" {
            let Value::Array(items) = value else {
                found.refused(Refused::Value(invalid_value(&shown(value), "items", &format!("{path}.items"))));
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                lines.push(address_line(item, &format!("{path}.items[{i}]"), found));
            }
        } else if !listed(COLLECTION_IGNORED, key) {
            found.unknown(key, &format!("{path}.{key}"));
        }
    }
    Some(lines)
}

/// Reads a request body for a record of `rt` into changes, or every reason
/// NetSuite refuses it.
pub fn parse(
    conn: &Connection,
    rt: &RecordType,
    body: &Map<String, Value>,
    checks: Checks,
) -> Result<Changes, RestError> {
    let mut found = Findings { checks, errors: Vec::new() };
    let mut changes = Changes::default();
    for (key, value) in body {
        if let Some(field) = rt.field_named(key) {
            match field_value(conn, field, value, key) {
                Ok(v) => changes.fields.push((field, v)),
                Err(refused) => found.refused(refused),
            }
        } else if rt.address_book && key.eq_ignore_ascii_case("addressBook") {
            changes.address_book = address_book(value, key, &mut found);
        } else if !listed(READ_ONLY, key) && !listed(rt.not_simulated, key) {
            found.unknown(key, key);
        }
    }
    if found.errors.is_empty() { Ok(changes) } else { Err(RestError::many(StatusCode::BAD_REQUEST, found.errors)) }
}
