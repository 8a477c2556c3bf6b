//! SOQL: every value placed in a query is quoted and escaped here; nothing
//! builds SOQL by pasting raw input.

use crate::http::{HttpRequest, Method};
use crate::model::{ConnectorError, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A SOQL string literal: backslash first, then quotes and control
/// characters, each escaped with a backslash.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `SELECT <fields> FROM <sobject> WHERE <key> IN (<quoted values>)`. Field
/// and object names come from the validated mapping, values are quoted.
pub fn select_in(sobject: &str, fields: &[String], key: &str, values: &[&str]) -> String {
    let list = values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",");
    format!("SELECT {} FROM {sobject} WHERE {key} IN ({list})", fields.join(", "))
}

impl super::SalesforceSink<'_> {
    /// The live records carrying these external ids, as the connector would
    /// write them (relationships as `{field: parent external id}`), by
    /// external id. Pages through `nextRecordsUrl`.
    pub fn live_records(
        &self,
        spec: &crate::mapping::TargetSpec,
        ids: &[&str],
    ) -> Result<HashMap<String, Map<String, Value>>> {
        let ext = crate::mapping::EXTERNAL_ID_FIELD;
        let mut fields: Vec<String> = spec.fields.clone();
        for link in &spec.relationships {
            fields.push(link.field.clone());
            fields.push(format!("{}.{ext}", link.relationship));
        }
        let mut found = HashMap::new();
        self.select_by_external_id(&spec.sobject, &fields, ids, |obj| {
            let mut clean = Map::new();
            for (k, v) in obj.iter().filter(|(k, _)| *k != "attributes" && *k != "Id") {
                let value = match v {
                    Value::Object(parent) => {
                        let mut p = parent.clone();
                        p.remove("attributes");
                        Value::Object(p)
                    }
                    other => other.clone(),
                };
                clean.insert(k.clone(), value);
            }
            if let Some(key) = clean.get(ext).and_then(Value::as_str).map(str::to_string) {
                found.insert(key, clean);
            }
        })?;
        Ok(found)
    }

    /// Salesforce Ids of the `sobject` records carrying these external ids
    /// (external id → Id); ids Salesforce does not hold are absent.
    pub fn ids_by_external_id(&self, sobject: &str, ids: &[&str]) -> Result<Vec<(String, String)>> {
        let ext = crate::mapping::EXTERNAL_ID_FIELD;
        let mut found = Vec::new();
        self.select_by_external_id(sobject, &["Id".to_string(), ext.to_string()], ids, |obj| {
            if let (Some(key), Some(id)) = (obj.get(ext).and_then(Value::as_str), obj.get("Id").and_then(Value::as_str))
            {
                found.push((key.to_string(), id.to_string()));
            }
        })?;
        Ok(found)
    }

    /// Runs `SELECT fields FROM sobject WHERE <external id> IN (ids)` in
    /// groups, following `nextRecordsUrl`, handing each record to `each`.
    fn select_by_external_id(
        &self,
        sobject: &str,
        fields: &[String],
        ids: &[&str],
        mut each: impl FnMut(&Map<String, Value>),
    ) -> Result<()> {
        let ext = crate::mapping::EXTERNAL_ID_FIELD;
        let version = self.settings.api_version.clone();
        // 200 ids keep the URL far below Salesforce's 16,384-byte limit.
        for group in ids.chunks(200) {
            let query = select_in(sobject, fields, ext, group);
            let mut next: Option<String> = None;
            loop {
                let path = match &next {
                    Some(url) => url.clone(),
                    None => format!(
                        "/services/data/v{version}/query?{}",
                        form_urlencoded::Serializer::new(String::new()).append_pair("q", &query).finish()
                    ),
                };
                let what = format!("SOQL read of {sobject} records by {ext}");
                let response =
                    self.call(&what, |s| HttpRequest::new(Method::Get, format!("{}{path}", s.instance_url)))?;
                let body: Value = serde_json::from_slice(&response.body)
                    .map_err(|e| ConnectorError::Salesforce(format!("SOQL answered with an unexpected body ({e})")))?;
                for record in body["records"].as_array().into_iter().flatten() {
                    if let Some(obj) = record.as_object() {
                        each(obj);
                    }
                }
                match (body["done"].as_bool(), body["nextRecordsUrl"].as_str()) {
                    (Some(false), Some(url)) if next.as_deref() == Some(url) => {
                        return Err(ConnectorError::Salesforce(format!(
                            "SOQL answered the same nextRecordsUrl twice (`{}`): the query would never end",
                            url.escape_debug()
                        )));
                    }
                    (Some(false), Some(url)) => next = Some(next_records_path(url)?.to_string()),
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

/// A query's `nextRecordsUrl`, checked to be a path of the REST API: it is
/// put after the instance URL and sent with the session's token, so
/// anything else (`@host/...`) could carry the token to another host.
pub(super) fn next_records_path(url: &str) -> Result<&str> {
    if url.starts_with("/services/data/") {
        return Ok(url);
    }
    Err(ConnectorError::Salesforce(format!(
        "Salesforce gave a nextRecordsUrl outside the REST API: `{}`",
        url.escape_debug()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rest_api_paths_are_followed_as_next_pages() {
        assert!(next_records_path("/services/data/v66.0/query/01gD-2000").is_ok());
        for url in ["@evil.example/x", "https://evil.example/services/data/", "//evil.example/services/data/", ""] {
            assert!(next_records_path(url).is_err(), "{url}");
        }
    }

    #[test]
    fn hostile_values_stay_inside_their_literal() {
        assert_eq!(quote("O'Brien"), r"'O\'Brien'");
        assert_eq!(quote(r"a\' OR Id != '"), r"'a\\\' OR Id != \''");
        assert_eq!(quote("x\ny"), r"'x\ny'");
        assert_eq!(quote("北京 ✓"), "'北京 ✓'");
        let q = select_in("Account", &["Id".into(), "Name".into()], "NetSuite_Id__c", &["1", "2') OR (Name != '"]);
        assert_eq!(q, r"SELECT Id, Name FROM Account WHERE NetSuite_Id__c IN ('1','2\') OR (Name != \'')");
    }
}
