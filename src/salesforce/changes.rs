//! Reading what changed in Salesforce (the poll of the Salesforce →
//! NetSuite direction) and writing one record's fields by Id. SOQL over
//! `SystemModstamp` (changes by users and automation alike), oldest first
//! with `Id` breaking ties, pages followed through `nextRecordsUrl`. The
//! poll goes through `queryAll`, so records deleted since (in the Recycle
//! Bin, `IsDeleted = true`, their stamp moved by the deletion) come in the
//! same pages as edits, at no extra call.

use crate::http::{HttpRequest, Method};
use crate::model::{ConnectorError, Result};
use serde_json::{Map, Value};
use time::PrimitiveDateTime;
use time::macros::format_description;

/// One changed record: its Id, when it changed, and the fields asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub id: String,
    /// `SystemModstamp` as Salesforce gives it (`2026-12-01T10:00:00.000+0000`).
    pub modstamp: String,
    /// `LastModifiedDate`, the last change by a user.
    pub last_modified: String,
    /// Deleted (in the Recycle Bin).
    pub deleted: bool,
    pub fields: Map<String, Value>,
}

/// One page of changes; `next` continues the same query.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedPage {
    pub records: Vec<Changed>,
    pub next: Option<String>,
}

/// A Salesforce datetime as a SOQL literal (UTC, unquoted), `secs` earlier.
pub fn soql_datetime(value: &str, secs: i64) -> Result<String> {
    let bad = || ConnectorError::Salesforce(format!("`{}` is not a Salesforce datetime", value.escape_debug()));
    let head = value.get(..19).ok_or_else(bad)?;
    // Salesforce answers in UTC: `+0000` or `Z`.
    let rest = &value[19..];
    let zone = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    if !matches!(zone, "" | "Z" | "+0000" | "+00:00") {
        return Err(bad());
    }
    let parsed = PrimitiveDateTime::parse(head, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
        .map_err(|_| bad())?;
    let moved = parsed - time::Duration::seconds(secs);
    let text =
        moved.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).map_err(|_| bad())?;
    Ok(text)
}

/// `YYYY-MM-DD HH:MM:SS` of a Salesforce datetime, comparable with NetSuite's.
pub fn plain_datetime(value: &str) -> String {
    value.get(..19).unwrap_or(value).replace('T', " ")
}

/// `SELECT Id, SystemModstamp, LastModifiedDate, <fields> FROM <sobject>
/// [WHERE SystemModstamp >= <since>] ORDER BY SystemModstamp, Id`. Names
/// come from the validated mapping; the datetime is rebuilt from its parts.
pub fn changed_query(sobject: &str, fields: &[String], since: Option<&str>) -> String {
    let filter = since.map(|s| format!(" WHERE SystemModstamp >= {s}")).unwrap_or_default();
    format!("SELECT {} FROM {sobject}{filter} ORDER BY SystemModstamp, Id", select_list(fields).join(", "))
}

/// Id, the change stamps and `IsDeleted` first, then `fields` (each once).
fn select_list(fields: &[String]) -> Vec<String> {
    let mut select = vec!["Id".to_string(), "SystemModstamp".into(), "LastModifiedDate".into(), "IsDeleted".into()];
    select.extend(fields.iter().filter(|f| !select.contains(f)).cloned().collect::<Vec<_>>());
    select
}

impl super::SalesforceSink<'_> {
    /// The first page of `sobject` records changed at or after `since`
    /// (a SOQL datetime literal), or the page `next` points at.
    pub fn changed_page(
        &self,
        sobject: &str,
        fields: &[String],
        since: Option<&str>,
        next: Option<&str>,
    ) -> Result<ChangedPage> {
        let version = self.settings.api_version.clone();
        let path = match next {
            Some(url) => super::soql::next_records_path(url)?.to_string(),
            None => format!(
                "/services/data/v{version}/queryAll?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", &changed_query(sobject, fields, since))
                    .finish()
            ),
        };
        let what = format!("SOQL read of changed {sobject} records");
        let response = self.call(&what, |s| HttpRequest::new(Method::Get, format!("{}{path}", s.instance_url)))?;
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|e| ConnectorError::Salesforce(format!("{what} answered with an unexpected body ({e})")))?;
        let mut records = Vec::new();
        for record in body["records"].as_array().into_iter().flatten() {
            let Some(obj) = record.as_object() else { continue };
            let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(id), Some(modstamp)) = (text("Id"), text("SystemModstamp")) else {
                return Err(ConnectorError::Salesforce(format!("{what}: a record came without Id or SystemModstamp")));
            };
            let last_modified = text("LastModifiedDate").unwrap_or_else(|| modstamp.clone());
            let deleted = obj.get("IsDeleted").and_then(Value::as_bool).unwrap_or(false);
            let fields = fields.iter().map(|f| (f.clone(), obj.get(f).cloned().unwrap_or(Value::Null))).collect();
            records.push(Changed { id, modstamp, last_modified, deleted, fields });
        }
        let next = match (body["done"].as_bool(), body["nextRecordsUrl"].as_str()) {
            (Some(false), Some(url)) => Some(url.to_string()),
            _ => None,
        };
        Ok(ChangedPage { records, next })
    }

    /// The records with these Ids, deleted ones included, as
    /// [`Self::changed_page`] gives them.
    pub fn changed_by_id(&self, sobject: &str, fields: &[String], ids: &[&str]) -> Result<Vec<Changed>> {
        let mut out = Vec::new();
        let select = select_list(fields);
        // 200 ids keep the URL far below Salesforce's 16,384-byte limit.
        for group in ids.chunks(200) {
            let query = super::soql::select_in(sobject, &select, "Id", group);
            let path = format!(
                "/services/data/v{}/queryAll?{}",
                self.settings.api_version,
                form_urlencoded::Serializer::new(String::new()).append_pair("q", &query).finish()
            );
            let mut next = Some(path);
            while let Some(url) = next.take() {
                let page = self.changed_page(sobject, fields, None, Some(&url))?;
                out.extend(page.records);
                next = page.next;
            }
        }
        Ok(out)
    }

    /// Sets `fields` on one record by its Salesforce Id (PATCH, 204).
    pub fn set_fields(&self, sobject: &str, id: &str, fields: &Map<String, Value>) -> Result<()> {
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) || !(15..=18).contains(&id.len()) {
            return Err(ConnectorError::Salesforce(format!("`{}` is not a Salesforce Id", id.escape_debug())));
        }
        let body = Value::Object(fields.clone());
        let what = format!("update of {sobject} {id}");
        self.call(&what, |s| {
            HttpRequest::new(Method::Patch, self.api_url(s, &format!("/sobjects/{sobject}/{id}"))).json(&body)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_reads_oldest_first_from_the_rewound_cursor() {
        let since = soql_datetime("2026-12-01T10:00:30.000+0000", 60).unwrap();
        assert_eq!(since, "2026-12-01T09:59:30Z");
        let q = changed_query("Vendor__c", &["Name".into(), "Id".into()], Some(&since));
        assert_eq!(
            q,
            "SELECT Id, SystemModstamp, LastModifiedDate, IsDeleted, Name FROM Vendor__c \
             WHERE SystemModstamp >= 2026-12-01T09:59:30Z ORDER BY SystemModstamp, Id"
        );
        assert!(!changed_query("Vendor__c", &[], None).contains("WHERE"));
    }

    #[test]
    fn only_utc_datetimes_become_literals() {
        assert!(soql_datetime("2026-12-01T10:00:30.000-0500", 0).is_err());
        assert!(soql_datetime("2026-12-01T10:00:30Z OR Name != ''", 0).is_err());
        assert!(soql_datetime("yesterday", 0).is_err());
        assert_eq!(plain_datetime("2026-12-01T10:00:30.000+0000"), "2026-12-01 10:00:30");
    }
}
