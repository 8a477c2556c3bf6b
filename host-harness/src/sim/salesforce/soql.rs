//! The SOQL the connector sends (`SELECT fields FROM object WHERE field IN
//! (...)`), executed against the simulated org, with `nextRecordsUrl`
//! paging and Salesforce's error shapes for what it does not understand.

use super::store::{Org, RequestError};
use regex::Regex;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

static SELECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)^\s*SELECT\s+(.+?)\s+FROM\s+([A-Za-z0-9_]+)(?:\s+WHERE\s+([A-Za-z0-9_]+)\s+IN\s*\((.*)\))?\s*$")
        .expect("a valid pattern")
});

/// Remaining rows of a query, by locator.
pub type Cursors = std::collections::HashMap<String, (Vec<Value>, usize, usize)>;

fn malformed(message: impl Into<String>) -> RequestError {
    RequestError::new(400, "MALFORMED_QUERY", message)
}

/// Quoted literals separated by commas; only the escapes SOQL defines.
fn literals(list: &str) -> Result<Vec<String>, RequestError> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('\'') => {}
            Some(c) => return Err(malformed(format!("unexpected token: {c}"))),
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(malformed("unterminated string literal")),
                Some('\'') => break,
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('\'') => value.push('\''),
                    Some('"') => value.push('"'),
                    Some('n' | 'N') => value.push('\n'),
                    Some('r' | 'R') => value.push('\r'),
                    Some('t' | 'T') => value.push('\t'),
                    Some('b' | 'B') => value.push('\u{8}'),
                    Some('f' | 'F') => value.push('\u{c}'),
                    other => {
                        return Err(malformed(format!(
                            "Invalid string literal: illegal escape sequence \\{}",
                            other.unwrap_or(' ')
                        )));
                    }
                },
                Some(c) => value.push(c),
            }
        }
        out.push(value);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(c) => return Err(malformed(format!("unexpected token: {c}"))),
        }
    }
    Ok(out)
}

pub fn query(org: &Org, cursors: &mut Cursors, version: f64, q: &str, batch: usize) -> Result<Value, RequestError> {
    let caps = SELECT.captures(q).ok_or_else(|| malformed(format!("unexpected token in query: {q}")))?;
    let object = org.object(&caps[2]).cloned().ok_or_else(|| {
        RequestError::new(400, "INVALID_TYPE", format!("sObject type '{}' is not supported.", &caps[2]))
    })?;
    let fields: Vec<String> = caps[1].split(',').map(|f| f.trim().to_string()).collect();
    for f in &fields {
        let known = match f.split_once('.') {
            Some((rel, field)) => object
                .relationship(rel)
                .and_then(|r| r.relationship)
                .and_then(|(_, target)| org.object(target))
                .is_some_and(|t| t.field(field).is_some()),
            None => object.field(f).is_some(),
        };
        if !known {
            return Err(RequestError::new(
                400,
                "INVALID_FIELD",
                format!(
                    "No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.",
                    object.name
                ),
            ));
        }
    }
    let keys = match (caps.get(3), caps.get(4)) {
        (Some(field), Some(list)) => {
            if !object.field(field.as_str()).is_some_and(|f| f.external_id || f.name == "Id") {
                return Err(malformed(format!("filtering on {} is not supported by the simulator", field.as_str())));
            }
            Some(literals(list.as_str())?)
        }
        _ => None,
    };
    let mut rows: Vec<Value> = Vec::new();
    let mut stmt = org
        .conn
        .prepare("SELECT id, ext_id, fields FROM record WHERE sobject = ?1 ORDER BY id")
        .map_err(|e| malformed(e.to_string()))?;
    let all = stmt
        .query_map([object.name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?))
        })
        .map_err(|e| malformed(e.to_string()))?;
    for (id, ext, text) in all.flatten() {
        if let Some(keys) = &keys
            && !keys.iter().any(|k| Some(k.to_ascii_lowercase()) == ext.as_ref().map(|e| e.to_ascii_lowercase()))
        {
            continue;
        }
        let stored: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
        let mut record = Map::new();
        record.insert(
            "attributes".into(),
            json!({"type": object.name, "url": format!("/services/data/v{version:.1}/sobjects/{}/{id}", object.name)}),
        );
        for f in &fields {
            match f.split_once('.') {
                Some((rel, field)) => {
                    let lookup = object.relationship(rel).expect("checked above");
                    let (_, target) = lookup.relationship.expect("relationship fields carry their target");
                    let parent = stored.get(lookup.name).and_then(Value::as_str).and_then(|pid| {
                        org.conn
                            .query_row("SELECT fields FROM record WHERE id = ?1", [pid], |r| r.get::<_, String>(0))
                            .ok()
                            .and_then(|t| serde_json::from_str::<Map<String, Value>>(&t).ok())
                    });
                    let value = parent.map(|p| {
                        json!({"attributes": {"type": target}, field: p.get(field).cloned().unwrap_or(Value::Null)})
                    });
                    record.insert(rel.to_string(), value.unwrap_or(Value::Null));
                }
                None if f == "Id" => {
                    record.insert("Id".into(), Value::String(id.clone()));
                }
                None => {
                    let name = object.field(f).expect("checked above").name;
                    record.insert(name.into(), stored.get(name).cloned().unwrap_or(Value::Null));
                }
            }
        }
        rows.push(Value::Object(record));
    }
    Ok(page(cursors, version, rows, 0, batch))
}

fn page(cursors: &mut Cursors, version: f64, rows: Vec<Value>, offset: usize, batch: usize) -> Value {
    let total = rows.len();
    let end = (offset + batch).min(total);
    let records: Vec<Value> = rows[offset..end].to_vec();
    if end < total {
        let locator = format!("01gSIM{:08}", cursors.len() + 1);
        let url = format!("/services/data/v{version:.1}/query/{locator}-{end}");
        cursors.insert(format!("{locator}-{end}"), (rows, end, batch));
        json!({ "totalSize": total, "done": false, "nextRecordsUrl": url, "records": records })
    } else {
        json!({ "totalSize": total, "done": true, "records": records })
    }
}

/// The page after a `nextRecordsUrl`.
pub fn more(cursors: &mut Cursors, version: f64, locator: &str) -> Result<Value, RequestError> {
    let (rows, offset, batch) = cursors
        .remove(locator)
        .ok_or_else(|| RequestError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator"))?;
    Ok(page(cursors, version, rows, offset, batch))
}
