//! Bulk API 2.0 ingest, sans-IO: the job request, the CSV the job uploads,
//! and the result CSVs matched back to records by external id (Salesforce
//! does not keep row order).

use crate::model::{OutcomeKind, SObjectRecord, SalesforceError, UpsertOutcome};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

/// Salesforce accepts at most 150 MB per upload after base64; keep raw CSV
/// at or below 100 MB.
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;

pub fn create_job_body(sobject: &str, external_id_field: &str) -> Value {
    json!({
        "object": sobject,
        "operation": "upsert",
        "externalIdFieldName": external_id_field,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    })
}

/// The column of a field: relationships by external id become
/// `Relationship.Field` (e.g. `Account.NetSuite_Id__c`).
fn cells(record: &SObjectRecord) -> Vec<(String, Option<String>)> {
    let mut out = Vec::with_capacity(record.fields.len());
    for (name, value) in &record.fields {
        match value {
            Value::Object(parent) => {
                for (field, v) in parent.iter().filter(|(k, _)| *k != "attributes") {
                    out.push((format!("{name}.{field}"), text(v)));
                }
            }
            other => out.push((name.clone(), text(other))),
        }
    }
    out
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// One CSV cell: `#N/A` sets null (an empty cell would mean "leave as is"),
/// NUL bytes are dropped, and values with a delimiter, quote, line break or
/// edge spaces are quoted with inner quotes doubled.
fn cell(value: Option<&str>) -> String {
    let Some(v) = value else { return "#N/A".to_string() };
    let v: String = v.chars().filter(|c| *c != '\0').collect();
    if v.is_empty() {
        return "#N/A".to_string();
    }
    let needs_quotes = v.contains([',', '"', '\n', '\r']) || v.starts_with(' ') || v.ends_with(' ');
    if needs_quotes { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

/// The CSV for `records` (one object), header first, LF line endings.
/// A column a record lacks is left empty, which leaves the field unchanged.
pub fn csv(records: &[&SObjectRecord]) -> Vec<u8> {
    let rows: Vec<HashMap<String, Option<String>>> = records.iter().map(|r| cells(r).into_iter().collect()).collect();
    let columns: Vec<String> =
        rows.iter().flat_map(|r| r.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut out = String::new();
    out.push_str(&columns.iter().map(|c| cell(Some(c))).collect::<Vec<_>>().join(","));
    out.push('\n');
    for row in &rows {
        let line: Vec<String> = columns
            .iter()
            .map(|c| match row.get(c) {
                None => String::new(),
                Some(v) => cell(v.as_deref()),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// Splits records into groups whose CSV stays under `max_bytes`, and whose
/// external ids are unique (the later version of a repeated record goes to
/// a later job, so it wins).
pub fn jobs(records: &[SObjectRecord], max_bytes: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut seen = std::collections::HashSet::new();
    let mut size = 0usize;
    for (i, r) in records.iter().enumerate() {
        let row = csv(&[r]).len();
        let current = groups.last().expect("one group at least");
        if !current.is_empty() && (size + row > max_bytes || seen.contains(r.external_id.as_str())) {
            groups.push(Vec::new());
            seen.clear();
            size = 0;
        }
        seen.insert(r.external_id.as_str());
        size += row;
        groups.last_mut().expect("one group at least").push(i);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn parse_csv(body: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let headers: Vec<String> = reader.headers().map_err(|e| e.to_string())?.iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_string).collect()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((headers, rows))
}

/// The job's three result files turned into one outcome per record of the
/// job, in input order. Rows are matched on the external id column.
pub fn outcomes(
    records: &[&SObjectRecord],
    external_id_field: &str,
    successful: &[u8],
    failed: &[u8],
    unprocessed: &[u8],
) -> Result<Vec<UpsertOutcome>, String> {
    let mut by_id: HashMap<String, UpsertOutcome> = HashMap::new();
    let column = |headers: &[String], name: &str| headers.iter().position(|h| h == name);

    let (headers, rows) = parse_csv(successful)?;
    if !rows.is_empty() {
        let (id, created, ext) =
            (column(&headers, "sf__Id"), column(&headers, "sf__Created"), column(&headers, external_id_field));
        let (Some(id), Some(created), Some(ext)) = (id, created, ext) else {
            return Err(format!("successfulResults lacks sf__Id, sf__Created or {external_id_field}: {headers:?}"));
        };
        for row in rows {
            let outcome =
                if row[created].eq_ignore_ascii_case("true") { OutcomeKind::Created } else { OutcomeKind::Updated };
            by_id.insert(
                row[ext].clone(),
                UpsertOutcome {
                    external_id: row[ext].clone(),
                    salesforce_id: Some(row[id].clone()),
                    outcome,
                    errors: vec![],
                },
            );
        }
    }
    let (headers, rows) = parse_csv(failed)?;
    if !rows.is_empty() {
        let (error, ext) = (column(&headers, "sf__Error"), column(&headers, external_id_field));
        let (Some(error), Some(ext)) = (error, ext) else {
            return Err(format!("failedResults lacks sf__Error or {external_id_field}: {headers:?}"));
        };
        for row in rows {
            let (code, message) = row[error].split_once(':').unwrap_or(("UNKNOWN_EXCEPTION", row[error].as_str()));
            by_id.insert(
                row[ext].clone(),
                UpsertOutcome {
                    external_id: row[ext].clone(),
                    salesforce_id: None,
                    outcome: OutcomeKind::Failed,
                    errors: vec![SalesforceError {
                        status_code: code.trim().to_string(),
                        message: message.trim().to_string(),
                        fields: vec![],
                    }],
                },
            );
        }
    }
    let (headers, rows) = parse_csv(unprocessed)?;
    if let Some(ext) = column(&headers, external_id_field) {
        for row in rows {
            by_id.entry(row[ext].clone()).or_insert_with(|| UpsertOutcome {
                external_id: row[ext].clone(),
                salesforce_id: None,
                outcome: OutcomeKind::Failed,
                errors: vec![SalesforceError {
                    status_code: "UNPROCESSED".into(),
                    message: "the Bulk API job ended before processing this row; it is retried next run".into(),
                    fields: vec![],
                }],
            });
        }
    }
    Ok(records
        .iter()
        .map(|r| {
            by_id.get(&r.external_id).cloned().unwrap_or_else(|| UpsertOutcome {
                external_id: r.external_id.clone(),
                salesforce_id: None,
                outcome: OutcomeKind::Failed,
                errors: vec![SalesforceError {
                    status_code: "NOT_IN_RESULTS".into(),
                    message: "the Bulk API job reported nothing for this row".into(),
                    fields: vec![],
                }],
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, fields: Value) -> SObjectRecord {
        SObjectRecord {
            sobject: "Contact".into(),
            external_id_field: "NetSuite_Id__c".into(),
            external_id: id.into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn csv_quotes_nulls_relationships_and_nul_bytes() {
        let a = rec(
            "1",
            json!({"NetSuite_Id__c": "1", "LastName": "O\"Neil, Jr.", "Title": null, "Account": {"NetSuite_Id__c": "42"}}),
        );
        let b = rec(
            "2",
            json!({"NetSuite_Id__c": "2", "LastName": "Multi\nLine\u{0}", "FirstName": " padded ", "NetSuite_Inactive__c": true}),
        );
        let text = String::from_utf8(csv(&[&a, &b])).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines[0], "Account.NetSuite_Id__c,FirstName,LastName,NetSuite_Id__c,NetSuite_Inactive__c,Title");
        assert_eq!(lines[1], "42,,\"O\"\"Neil, Jr.\",1,,#N/A");
        assert!(text.contains("\"Multi\nLine\""), "{text}");
        assert!(text.contains("\" padded \""));
        assert!(text.contains(",true,"), "{text}");
        assert!(!text.contains('\0'));
        // Round trip through a CSV reader: the values survive.
        let (headers, rows) = parse_csv(text.as_bytes()).unwrap();
        assert_eq!(rows[0][headers.iter().position(|h| h == "LastName").unwrap()], "O\"Neil, Jr.");
        assert_eq!(rows[1][headers.iter().position(|h| h == "LastName").unwrap()], "Multi\nLine");
    }

    #[test]
    fn jobs_split_on_size_and_repeated_ids() {
        let records: Vec<_> = (0..10).map(|i| rec(&i.to_string(), json!({"LastName": "x".repeat(50)}))).collect();
        let one_row = csv(&[&records[0]]).len();
        let groups = jobs(&records, one_row * 4);
        assert!(groups.iter().all(|g| g.len() <= 4), "{groups:?}");
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 10);
        let dup = vec![rec("1", json!({})), rec("2", json!({})), rec("1", json!({}))];
        assert_eq!(jobs(&dup, MAX_UPLOAD_BYTES), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn results_match_by_external_id_whatever_the_order() {
        let records = [rec("10", json!({})), rec("11", json!({})), rec("12", json!({})), rec("13", json!({}))];
        let refs: Vec<&SObjectRecord> = records.iter().collect();
        let ok = b"\"sf__Id\",\"sf__Created\",NetSuite_Id__c,LastName\n0038d000000002AAA,false,12,B\n0038d000000001AAA,true,10,A\n";
        let failed = b"\"sf__Id\",\"sf__Error\",NetSuite_Id__c,LastName\n,REQUIRED_FIELD_MISSING:Required fields are missing: [LastName],11,\n";
        let unprocessed = b"NetSuite_Id__c,LastName\n";
        let out = outcomes(&refs, "NetSuite_Id__c", ok, failed, unprocessed).unwrap();
        assert_eq!(out[0].outcome, OutcomeKind::Created);
        assert_eq!(out[0].salesforce_id.as_deref(), Some("0038d000000001AAA"));
        assert_eq!(out[1].errors[0].status_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(out[1].errors[0].message, "Required fields are missing: [LastName]");
        assert_eq!(out[2].outcome, OutcomeKind::Updated);
        assert_eq!(out[3].errors[0].status_code, "NOT_IN_RESULTS");
    }
}
