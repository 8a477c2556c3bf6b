//! Sync state in the host's key-value store: cursors, content hashes of what
//! Salesforce holds, and failed writes kept for replay.

use crate::model::{ConnectorError, Cursor, RecordKind, Result, SObjectRecord};
use crate::ports::KeyValue;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub fn cursor_key(kind: RecordKind) -> String {
    format!("cursor/{kind}")
}

pub fn hash_key(kind: RecordKind, id: &str) -> String {
    format!("hash/{kind}/{id}")
}

pub fn failed_key(kind: RecordKind, id: &str) -> String {
    format!("failed/{kind}/{id}")
}

/// A digest of what the connector would write. serde_json maps are sorted,
/// so the same fields always give the same hash.
pub fn content_hash(record: &SObjectRecord) -> String {
    let mut h = Sha256::new();
    h.update(record.sobject.as_bytes());
    h.update([0]);
    h.update(record.external_id.as_bytes());
    h.update([0]);
    h.update(serde_json::Value::Object(record.fields.clone()).to_string().as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A failed write, kept with its exact payload so it can be replayed.
#[derive(Serialize)]
pub struct FailedWrite<'a> {
    pub run_id: &'a str,
    pub sobject: &'a str,
    pub external_id: &'a str,
    pub fields: &'a serde_json::Map<String, serde_json::Value>,
    pub error: &'a str,
}

pub struct State<'a> {
    kv: &'a dyn KeyValue,
}

fn kv_error(what: &str, e: String) -> ConnectorError {
    ConnectorError::Transport(format!("key-value store failed while {what}: {e}"))
}

impl<'a> State<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        State { kv }
    }

    pub fn cursor(&self, kind: RecordKind) -> Result<Option<Cursor>> {
        let Some(bytes) = self.kv.get(&cursor_key(kind)).map_err(|e| kv_error("reading the cursor", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ConnectorError::Config(format!(
                "the stored {kind} cursor is unreadable ({e}); run a full sync to rebuild it"
            ))
        })
    }

    pub fn save_cursor(&self, kind: RecordKind, cursor: &Cursor) -> Result<()> {
        let bytes = serde_json::to_vec(cursor).expect("a cursor serializes");
        self.kv.set(&cursor_key(kind), &bytes).map_err(|e| kv_error("saving the cursor", e))
    }

    pub fn hashes(&self, kind: RecordKind, ids: &[&str]) -> Result<Vec<Option<String>>> {
        let keys: Vec<String> = ids.iter().map(|id| hash_key(kind, id)).collect();
        let values = self.kv.get_many(&keys).map_err(|e| kv_error("reading record hashes", e))?;
        Ok(values.into_iter().map(|v| v.and_then(|b| String::from_utf8(b).ok())).collect())
    }

    pub fn save_hashes(&self, kind: RecordKind, entries: &[(&str, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, Vec<u8>)> =
            entries.iter().map(|(id, h)| (hash_key(kind, id), h.clone().into_bytes())).collect();
        self.kv.set_many(&rows).map_err(|e| kv_error("saving record hashes", e))
    }

    pub fn save_failed(&self, kind: RecordKind, id: &str, failed: &FailedWrite<'_>) -> Result<()> {
        let bytes = serde_json::to_vec(failed).expect("a failed write serializes");
        self.kv.set(&failed_key(kind, id), &bytes).map_err(|e| kv_error("saving a failed write", e))
    }

    pub fn clear_failed(&self, kind: RecordKind, ids: &[&str]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = ids.iter().map(|id| failed_key(kind, id)).collect();
        self.kv.delete_many(&keys).map_err(|e| kv_error("clearing failed writes", e))
    }
}

#[cfg(test)]
mod tests {
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
    fn hash_ignores_field_order_and_sees_every_value() {
        let a = rec(json!({"Name": "A", "Phone": null}));
        let b = rec(json!({"Phone": null, "Name": "A"}));
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&rec(json!({"Name": "A", "Phone": "1"}))));
        assert_ne!(content_hash(&a), content_hash(&rec(json!({"Name": "B", "Phone": null}))));
    }
}
