//! Bulk API 2.0 ingest, sans-IO: the job request, the CSV the job uploads,
//! and the result CSVs matched back to records by external id (Salesforce
//! does not keep row order).

use super::auth::Session;
use crate::http::{HttpRequest, Method};
use crate::mapping::{EXTERNAL_ID_FIELD, TargetSpec};
use crate::model::{ConnectorError, OutcomeKind, SObjectRecord, SalesforceError, UpsertOutcome};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Salesforce accepts at most 150 MB per upload after base64; keep raw CSV
/// at or below 100 MB (decimal, as the upload guide counts; base64 adds up to half).
pub const MAX_UPLOAD_BYTES: usize = 100_000_000;

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

/// Writes one CSV cell: `#N/A` sets null (an empty cell would mean "leave
/// as is"), NUL bytes are dropped, and values with a delimiter, quote, line
/// break or edge spaces are quoted with inner quotes doubled.
fn write_cell(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(v) = value else { return out.extend_from_slice(b"#N/A") };
    if v.contains('\0') {
        return write_cell(out, Some(&v.replace('\0', "")));
    }
    if v.is_empty() {
        return out.extend_from_slice(b"#N/A");
    }
    let needs_quotes = v.contains([',', '"', '\n', '\r']) || v.starts_with(' ') || v.ends_with(' ');
    if !needs_quotes {
        return out.extend_from_slice(v.as_bytes());
    }
    out.push(b'"');
    for piece in v.split_inclusive('"') {
        out.extend_from_slice(piece.as_bytes());
        if piece.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// Writes the cell of a value as [`text`] reads it; `None` (the record
/// lacks the column) is an empty cell, which leaves the field as it is.
fn write_value(out: &mut Vec<u8>, value: Option<&Value>) {
    match value {
        None => {}
        Some(Value::String(s)) => write_cell(out, Some(s)),
        Some(Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(other) => write_cell(out, text(other).as_deref()),
    }
}

/// Whether CSV carries every value of `record` as JSON would: no value is
/// the text `#N/A` (Bulk API's "set null", which no quoting turns back into
/// text) and none holds a NUL (CSV cannot carry one).
pub fn csv_safe(record: &SObjectRecord) -> bool {
    fn safe(v: &Value) -> bool {
        match v {
            Value::String(s) => s != "#N/A" && !s.contains('\0'),
            Value::Object(o) => o.values().all(safe),
            _ => true,
        }
    }
    record.fields.values().all(safe)
}

/// One job's CSV, built a page at a time. Its header is fixed by the shape
/// of its records ([`CsvJob::shape`]): the mapped fields, and per link either
/// `Relationship.NetSuite_Id__c` (the record names a parent) or the lookup
/// field itself, set to `#N/A` (the record clears it). An empty cell would
/// leave a field as it is, so records of another shape go to another job.
pub struct CsvJob {
    pub sobject: String,
    pub external_id_field: String,
    columns: Vec<String>,
    /// Where each column's value is in a record: a field, or a field of the
    /// parent reference a field holds (`Account.NetSuite_Id__c`).
    sources: Vec<(String, Option<String>)>,
    /// The CSV text in pieces of about [`PIECE`]: a job of 50,000 records
    /// is ~8 MB, and one buffer grown to it was copied at each doubling
    /// (5 MB beside its new 10 MB at the last), which set the component's
    /// peak in a Bulk run.
    data: Vec<Vec<u8>>,
    bytes: usize,
    records: usize,
}

/// The size of a job's CSV pieces.
const PIECE: usize = 1 << 20;

impl CsvJob {
    /// Which links `record` sets and which it clears, e.g. `Account+,Vendor__r-`.
    pub fn shape(spec: &TargetSpec, record: &SObjectRecord) -> String {
        spec.relationships
            .iter()
            .map(|l| match l.target(&record.fields) {
                Some(Some(_)) => format!("{}+", l.relationship),
                Some(None) => format!("{}-", l.relationship),
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An empty job for records shaped like `record`.
    pub fn new(spec: &TargetSpec, record: &SObjectRecord) -> CsvJob {
        let mut columns: Vec<String> = spec.fields.clone();
        for link in &spec.relationships {
            match link.target(&record.fields) {
                Some(Some(_)) => columns.push(format!("{}.{EXTERNAL_ID_FIELD}", link.relationship)),
                Some(None) => columns.push(link.field.clone()),
                None => {}
            }
        }
        let mut header = Vec::new();
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                header.push(b',');
            }
            write_cell(&mut header, Some(column));
        }
        header.push(b'\n');
        // Field API names hold no dot: one names a parent's field.
        let sources = columns
            .iter()
            .map(|c| match c.split_once('.') {
                Some((field, parent_field)) => (field.to_string(), Some(parent_field.to_string())),
                None => (c.clone(), None),
            })
            .collect();
        CsvJob {
            sobject: spec.sobject.clone(),
            external_id_field: EXTERNAL_ID_FIELD.into(),
            columns,
            sources,
            bytes: header.len(),
            data: vec![header],
            records: 0,
        }
    }

    /// Whether this job carries `record` exactly as a JSON write would:
    /// every field has a column, and its values are [`csv_safe`].
    pub fn faithful(&self, record: &SObjectRecord) -> bool {
        csv_safe(record) && cells(record).iter().all(|(column, _)| self.columns.contains(column))
    }

    /// The CSV rows of `records`, in the job's columns: a value as
    /// [`cells`] names it, written straight into the rows (a page of 1,000
    /// records makes 20,000 cells).
    pub fn rows(&self, records: &[&SObjectRecord]) -> Vec<u8> {
        let per_record = self.bytes / (self.records + 1) + 16;
        let mut out = Vec::with_capacity(records.len() * per_record);
        for record in records {
            for (i, (field, parent_field)) in self.sources.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let value = record.fields.get(field);
                match (parent_field, value) {
                    // A parent reference spreads over its fields' columns.
                    (None, Some(Value::Object(_))) => {}
                    (None, value) => write_value(&mut out, value),
                    (Some(parent_field), Some(Value::Object(parent))) if parent_field != "attributes" => {
                        write_value(&mut out, parent.get(parent_field))
                    }
                    (Some(_), _) => {}
                }
            }
            out.push(b'\n');
        }
        out
    }

    /// Adds `rows` (from [`CsvJob::rows`]) holding `n` records.
    pub fn append(&mut self, rows: Vec<u8>, n: usize) {
        self.bytes += rows.len();
        self.records += n;
        match self.data.last_mut() {
            Some(piece) if piece.len() + rows.len() <= piece.capacity() => piece.extend_from_slice(&rows),
            // A new piece, never a grown one: rows are never split, so a
            // piece is at most PIECE or one call's rows.
            _ => {
                let mut piece = Vec::with_capacity(PIECE.max(rows.len()));
                piece.extend_from_slice(&rows);
                self.data.push(piece);
            }
        }
    }

    pub fn records(&self) -> usize {
        self.records
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The CSV, as the upload's body.
    pub fn into_body(self) -> crate::http::Body {
        self.data.into()
    }
}

/// How one row of a finished job ended, kept compact: a job's results hold
/// tens of thousands of rows.
#[derive(Debug, Clone)]
enum RowResult {
    Written { id: String, created: bool },
    Failed { code: String, message: String },
    Unprocessed,
}

/// A finished job's outcomes by external id, read from its result files one
/// row at a time (Salesforce keeps no row order, so rows are matched on the
/// external id column).
#[derive(Debug, Default)]
pub struct BulkResults {
    by_id: HashMap<String, RowResult>,
    /// Why the job failed, when it did.
    failure: Option<String>,
}

impl BulkResults {
    /// Adds the rows of `successfulResults`.
    pub fn add_successful(&mut self, external_id_field: &str, body: impl std::io::Read) -> Result<(), String> {
        self.read(body, "successfulResults", &["sf__Id", "sf__Created", external_id_field], |cols, by_id| {
            let created = cols[1].eq_ignore_ascii_case("true");
            by_id.insert(cols[2].to_string(), RowResult::Written { id: cols[0].to_string(), created });
        })
    }

    /// Adds the rows of `failedResults` (`sf__Error` is `CODE:message`).
    pub fn add_failed(&mut self, external_id_field: &str, body: impl std::io::Read) -> Result<(), String> {
        self.read(body, "failedResults", &["sf__Error", external_id_field], |cols, by_id| {
            let (code, message) = cols[0].split_once(':').unwrap_or(("UNKNOWN_EXCEPTION", cols[0]));
            by_id.insert(
                cols[1].to_string(),
                RowResult::Failed { code: code.trim().to_string(), message: message.trim().to_string() },
            );
        })
    }

    /// Adds the rows of `unprocessedrecords` (rows a failed job never reached).
    pub fn add_unprocessed(&mut self, external_id_field: &str, body: impl std::io::Read) -> Result<(), String> {
        self.read(body, "unprocessedrecords", &[external_id_field], |cols, by_id| {
            by_id.entry(cols[0].to_string()).or_insert(RowResult::Unprocessed);
        })
    }

    /// Reads `body` row by row, handing the `wanted` columns to `add`. A file
    /// without rows may lack the columns.
    fn read(
        &mut self,
        body: impl std::io::Read,
        what: &str,
        wanted: &[&str],
        mut add: impl FnMut(&[&str], &mut HashMap<String, RowResult>),
    ) -> Result<(), String> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
        let headers = reader.headers().map_err(|e| format!("{what}: {e}"))?.clone();
        let mut positions = Vec::with_capacity(wanted.len());
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(|e| format!("{what}: {e}"))? {
            if positions.is_empty() {
                for name in wanted {
                    let Some(p) = headers.iter().position(|h| h == *name) else {
                        return Err(format!("{what} lacks the column {name}: {headers:?}"));
                    };
                    positions.push(p);
                }
            }
            let cols: Vec<&str> = positions.iter().map(|&p| record.get(p).unwrap_or_default()).collect();
            add(&cols, &mut self.by_id);
        }
        Ok(())
    }

    /// Adds why the job failed to the rows it never processed.
    pub fn job_failed(&mut self, message: &str) {
        self.failure = Some(message.to_string());
    }

    /// The outcome of the record with this external id.
    /// Whether the job's result files name this record.
    pub fn has(&self, external_id: &str) -> bool {
        self.by_id.contains_key(external_id)
    }

    pub fn outcome(&self, external_id: &str) -> UpsertOutcome {
        let failed = |code: &str, message: String| UpsertOutcome {
            external_id: external_id.to_string(),
            salesforce_id: None,
            outcome: OutcomeKind::Failed,
            errors: vec![SalesforceError { status_code: code.into(), message, fields: vec![] }],
        };
        match self.by_id.get(external_id) {
            Some(RowResult::Written { id, created }) => UpsertOutcome {
                external_id: external_id.to_string(),
                salesforce_id: Some(id.clone()),
                outcome: if *created { OutcomeKind::Created } else { OutcomeKind::Updated },
                errors: vec![],
            },
            Some(RowResult::Failed { code, message }) => failed(code, message.clone()),
            Some(RowResult::Unprocessed) => {
                let why = "the Bulk API job ended before processing this row; it is retried next run";
                failed(
                    super::errors::UNPROCESSED,
                    match &self.failure {
                        Some(m) => format!("{why} (job failed: {m})"),
                        None => why.to_string(),
                    },
                )
            }
            None => failed(
                super::errors::NOT_IN_RESULTS,
                "the Bulk API job reported nothing for this row; it is written again next time".into(),
            ),
        }
    }
}

/// A job-info body's `state`, one of the six documented. Anything else (a
/// body that is not job info, a state this client does not know) ends the
/// wait with what came back, rather than polling until the timeout.
fn job_state<'v>(id: &str, info: &'v Value) -> Result<&'v str, ConnectorError> {
    match info["state"].as_str() {
        Some(state @ ("Open" | "UploadComplete" | "InProgress" | "JobComplete" | "Failed" | "Aborted")) => Ok(state),
        Some(other) => Err(ConnectorError::Salesforce(format!(
            "Bulk API 2.0 job {id} is in state `{}`, which this connector does not know; its records are \
             written again by the next run",
            other.escape_debug()
        ))),
        None => Err(ConnectorError::Salesforce(format!(
            "Bulk API 2.0 job {id}: Salesforce answered its job info without a `state`; its records are written again by \
             the next run"
        ))),
    }
}

impl super::SalesforceSink<'_> {
    /// Creates a Bulk API 2.0 upsert job and uploads `job`'s CSV; the job
    /// stays Open (Salesforce runs nothing) until [`Self::bulk_close`].
    /// Returns the job's id.
    /// `opened` is told the job's id as soon as Salesforce gives it (before
    /// the upload), so a process killed from then on leaves a job the next
    /// run can find and abort; if it fails, the job is aborted.
    pub fn bulk_open(
        &self,
        job: CsvJob,
        opened: &mut dyn FnMut(&str) -> Result<(), ConnectorError>,
    ) -> Result<String, ConnectorError> {
        let sobject = job.sobject.clone();
        let ext = job.external_id_field.clone();
        let jobs = |s: &Session| self.api_url(s, "/jobs/ingest");
        let created = self.call(&format!("Bulk API 2.0 job creation for {sobject}"), |s| {
            HttpRequest::new(Method::Post, jobs(s)).json(&create_job_body(&sobject, &ext))
        })?;
        let info: Value = serde_json::from_slice(&created.body).unwrap_or_default();
        let Some(id) = info["id"].as_str().map(str::to_string) else {
            return Err(ConnectorError::Salesforce(format!(
                "Bulk API 2.0 created a job without an id: {}",
                created.snippet()
            )));
        };
        if let Err(e) = opened(&id) {
            let _ = self.bulk_abort(&id);
            return Err(e);
        }
        let data = std::rc::Rc::new(job.into_body());
        let uploaded = self.call(&format!("Bulk API 2.0 upload to job {id}"), |s| {
            HttpRequest::new(Method::Put, format!("{}/{id}/batches", jobs(s))).body("text/csv", data.clone())
        });
        if let Err(e) = uploaded {
            // The caller never learns the id: an Open job, which applies
            // nothing, refused its upload is aborted here (best effort)
            // rather than left to Salesforce's cleanup; not after the
            // retries of an outage, which the abort would only repeat.
            if e.is_about_data() {
                let _ = self.bulk_abort(&id);
            }
            return Err(e);
        }
        Ok(id)
    }

    /// Closes job `id` (`UploadComplete`): Salesforce then applies it
    /// whatever becomes of this run.
    pub fn bulk_close(&self, id: &str) -> Result<(), ConnectorError> {
        self.set_job_state(id, "UploadComplete", "closing")
    }

    /// Aborts job `id`, still Open: its records were never applied.
    pub fn bulk_abort(&self, id: &str) -> Result<(), ConnectorError> {
        self.set_job_state(id, "Aborted", "aborting")
    }

    /// Job `id`'s state (`Open`, `UploadComplete`, `InProgress`,
    /// `JobComplete`, `Failed`, `Aborted`).
    pub fn bulk_state(&self, id: &str) -> Result<String, ConnectorError> {
        let info = self.call(&format!("reading Bulk API 2.0 job {id}"), |s| {
            HttpRequest::new(Method::Get, format!("{}/{id}", self.api_url(s, "/jobs/ingest")))
        })?;
        let info: Value = serde_json::from_slice(&info.body).unwrap_or_default();
        job_state(id, &info).map(str::to_string)
    }

    fn set_job_state(&self, id: &str, state: &str, doing: &str) -> Result<(), ConnectorError> {
        self.call(&format!("{doing} Bulk API 2.0 job {id}"), |s| {
            HttpRequest::new(Method::Patch, format!("{}/{id}", self.api_url(s, "/jobs/ingest")))
                .json(&json!({ "state": state }))
        })
        .map(drop)
    }

    /// Polls job `id` until it ends, then reads its three result files.
    /// `keep_alive` runs at every poll: a job can outlast the run's lease
    /// many times over.
    pub fn bulk_results(
        &self,
        sobject: &str,
        ext: &str,
        id: &str,
        keep_alive: &dyn Fn() -> Result<(), ConnectorError>,
    ) -> Result<BulkResults, ConnectorError> {
        let jobs = |s: &Session| self.api_url(s, "/jobs/ingest");
        // A job that outlives the timeout keeps running in Salesforce; the
        // next run takes up its results (the job id is kept with its records).
        let timeout = self.settings.bulk_poll_timeout_secs;
        let failure = self.api.poll(
            timeout,
            || {
                keep_alive()?;
                let response = self.call(&format!("polling Bulk API 2.0 job {id}"), |s| {
                    HttpRequest::new(Method::Get, format!("{}/{id}", jobs(s)))
                })?;
                let info: Value = serde_json::from_slice(&response.body).unwrap_or_default();
                match job_state(id, &info)? {
                    "JobComplete" => Ok(Some(None)),
                    "Failed" => Ok(Some(Some(info["errorMessage"].as_str().unwrap_or("no reason given").to_string()))),
                    "Aborted" => Err(ConnectorError::Salesforce(format!(
                        "Bulk API 2.0 job {id} for {sobject} was aborted in Salesforce; its records are written again \
                         next run"
                    ))),
                    _ => Ok(None),
                }
            },
            || {
                ConnectorError::Salesforce(format!(
                    "Bulk API 2.0 job {id} for {sobject} did not finish within {timeout} s \
                     (salesforce_bulk_poll_timeout_secs); it keeps running in Salesforce and the next run reads its \
                     results"
                ))
            },
        )?;
        // One result file at a time, each dropped once read.
        let result = |name: &str| {
            self.call(&format!("reading {name} of Bulk API 2.0 job {id}"), |s| {
                HttpRequest::new(Method::Get, format!("{}/{id}/{name}/", jobs(s)))
                    .header("Accept", "text/csv")
                    .body_in_pieces()
            })
        };
        let unreadable = |e: String| {
            ConnectorError::Salesforce(format!("the results of Bulk API 2.0 job {id} could not be read: {e}"))
        };
        let mut results = BulkResults::default();
        results.add_successful(ext, result("successfulResults")?.body_reader()).map_err(unreadable)?;
        results.add_failed(ext, result("failedResults")?.body_reader()).map_err(unreadable)?;
        results.add_unprocessed(ext, result("unprocessedrecords")?.body_reader()).map_err(unreadable)?;
        if let Some(message) = failure {
            results.job_failed(&message);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_state_outside_the_documented_six_ends_the_wait() {
        assert_eq!(job_state("750", &json!({"id": "750", "state": "InProgress"})).unwrap(), "InProgress");
        let unknown = job_state("750", &json!({"state": "Paused"})).unwrap_err().to_string();
        assert!(unknown.contains("750") && unknown.contains("`Paused`"), "{unknown}");
        let none = job_state("750", &json!([{"errorCode": "NOT_FOUND"}])).unwrap_err().to_string();
        assert!(none.contains("without a `state`"), "{none}");
    }

    fn rec(id: &str, fields: Value) -> SObjectRecord {
        SObjectRecord {
            sobject: "Contact".into(),
            external_id_field: "NetSuite_Id__c".into(),
            external_id: id.into(),
            fields: fields.as_object().unwrap().clone(),
        }
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

    fn spec() -> TargetSpec {
        crate::mapping::Mapping::default().target_spec(crate::model::RecordKind::Contact).unwrap()
    }

    #[test]
    fn a_job_grows_in_pieces_of_bounded_size_and_uploads_its_rows_in_order() {
        let records: Vec<SObjectRecord> = (0..20_000)
            .map(|i| rec(&i.to_string(), json!({"NetSuite_Id__c": i.to_string(), "LastName": format!("Name {i}")})))
            .collect();
        let mut expected = CsvJob::new(&spec(), &records[0]).into_body().to_vec();
        let mut job = CsvJob::new(&spec(), &records[0]);
        for page in records.chunks(1000) {
            let refs: Vec<&SObjectRecord> = page.iter().collect();
            let rows = job.rows(&refs);
            expected.extend_from_slice(&rows);
            job.append(rows, page.len());
        }
        assert_eq!((job.records(), job.bytes()), (20_000, expected.len()));
        let body = job.into_body();
        assert!(body.pieces().count() > 1, "more than a piece's worth of rows");
        // No piece was ever grown past its first size, so none was copied.
        assert!(body.pieces().all(|p| p.len() <= PIECE), "{:?}", body.pieces().map(<[u8]>::len).collect::<Vec<_>>());
        assert_eq!(body.to_vec(), expected);
        let (_, rows) = parse_csv(&expected).unwrap();
        assert_eq!(rows.len(), 20_000);
    }

    #[test]
    fn csv_quotes_nulls_relationships_and_keeps_the_header_fixed() {
        let a = rec(
            "1",
            json!({"NetSuite_Id__c": "1", "LastName": "O\"Neil, Jr.", "Title": null, "Account": {"NetSuite_Id__c": "42"}}),
        );
        let b = rec(
            "2",
            json!({"NetSuite_Id__c": "2", "LastName": "Multi\nLine", "FirstName": " padded ", "NetSuite_Inactive__c": true}),
        );
        let mut job = CsvJob::new(&spec(), &a);
        let rows = job.rows(&[&a, &b]);
        job.append(rows, 2);
        assert_eq!(job.records(), 2);
        let text = String::from_utf8(job.into_body().to_vec()).unwrap();
        let (headers, rows) = parse_csv(text.as_bytes()).unwrap();
        let col =
            |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("{name} in {headers:?}"));
        assert_eq!(rows[0][col("LastName")], "O\"Neil, Jr.");
        assert_eq!(rows[0][col("Title")], "#N/A", "null is #N/A");
        assert_eq!(rows[0][col("Account.NetSuite_Id__c")], "42");
        assert_eq!(rows[1][col("LastName")], "Multi\nLine");
        assert_eq!(rows[1][col("FirstName")], " padded ");
        assert_eq!(rows[1][col("NetSuite_Inactive__c")], "true");
        assert_eq!(rows[1][col("Email")], "", "a field the record lacks stays as it is");
    }

    #[test]
    fn cells_are_written_as_salesforce_reads_them() {
        let a = rec(
            "1",
            json!({"NetSuite_Id__c": "1", "LastName": "ends with \"", "FirstName": "nul\u{0}", "Title": "",
                   "Phone": 5551234, "Email": {"nested": true},
                   "Account": {"attributes": {"type": "Account"}, "NetSuite_Id__c": "4,2"}}),
        );
        let mut job = CsvJob::new(&spec(), &a);
        let rows = job.rows(&[&a]);
        job.append(rows, 1);
        let body = job.into_body().to_vec();
        let (headers, rows) = parse_csv(&body).unwrap();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        assert_eq!(rows[0][col("LastName")], "ends with \"");
        assert_eq!(rows[0][col("FirstName")], "nul", "NUL bytes are dropped");
        assert_eq!(rows[0][col("Title")], "#N/A", "empty text sets null");
        assert_eq!(rows[0][col("Phone")], "5551234");
        assert_eq!(rows[0][col("Email")], "", "an object is no value of a plain column");
        assert_eq!(rows[0][col("Account.NetSuite_Id__c")], "4,2");
        assert!(String::from_utf8(body).unwrap().contains(",\"4,2\"\n"), "quoted");
    }

    #[test]
    fn a_cleared_lookup_is_a_column_of_its_own_and_jobs_follow_the_shape() {
        let linked = rec("1", json!({"LastName": "A", "Account": {"NetSuite_Id__c": "4"}, "Vendor__c": null}));
        let moved = rec("2", json!({"LastName": "B", "AccountId": null, "Vendor__r": {"NetSuite_Id__c": "7"}}));
        assert_eq!(CsvJob::shape(&spec(), &linked), "Account+,Vendor__r-");
        assert_eq!(CsvJob::shape(&spec(), &moved), "Account-,Vendor__r+");
        let mut job = CsvJob::new(&spec(), &linked);
        assert!(job.faithful(&linked));
        assert!(!job.faithful(&moved), "another shape, another job");
        let rows = job.rows(&[&linked]);
        job.append(rows, 1);
        let (headers, rows) = parse_csv(&job.into_body().to_vec()).unwrap();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        assert_eq!(rows[0][col("Account.NetSuite_Id__c")], "4");
        assert_eq!(rows[0][col("Vendor__c")], "#N/A", "the vendor lookup is cleared");
        assert!(
            !headers.contains(&"AccountId".to_string()) && !headers.contains(&"Vendor__r.NetSuite_Id__c".to_string())
        );
    }

    #[test]
    fn values_csv_would_change_go_elsewhere() {
        let job = CsvJob::new(&spec(), &rec("1", json!({})));
        assert!(job.faithful(&rec("1", json!({"LastName": "A"}))));
        assert!(!job.faithful(&rec("1", json!({"LastName": "#N/A"}))), "text that Bulk API reads as null");
        assert!(!job.faithful(&rec("1", json!({"LastName": "nul\u{0}byte"}))), "a NUL CSV cannot carry");
    }

    #[test]
    fn results_match_by_external_id_whatever_the_order() {
        let ok: &[u8] = b"\"sf__Id\",\"sf__Created\",NetSuite_Id__c,LastName\n0038d000000002AAA,false,12,B\n\
            0038d000000003AAA,false,14,\"Line one\nline, two\"\n0038d000000001AAA,true,10,A\n";
        let failed: &[u8] = b"\"sf__Id\",\"sf__Error\",NetSuite_Id__c,LastName\n,REQUIRED_FIELD_MISSING:Required fields are missing: [LastName],11,\n";
        let unprocessed: &[u8] = b"NetSuite_Id__c,LastName\n";
        // As a response asked for in pieces arrives: cut mid-row, mid-field, inside quotes.
        let pieces = ok.chunks(7).map(<[u8]>::to_vec).collect();
        let response = crate::http::HttpResponse { status: 200, headers: vec![], body: vec![], pieces };
        let mut out = BulkResults::default();
        out.add_successful("NetSuite_Id__c", response.body_reader()).unwrap();
        out.add_failed("NetSuite_Id__c", failed).unwrap();
        out.add_unprocessed("NetSuite_Id__c", unprocessed).unwrap();
        assert_eq!(out.outcome("14").salesforce_id.as_deref(), Some("0038d000000003AAA"));
        assert_eq!(out.outcome("10").outcome, OutcomeKind::Created);
        assert_eq!(out.outcome("10").salesforce_id.as_deref(), Some("0038d000000001AAA"));
        assert_eq!(out.outcome("11").errors[0].status_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(out.outcome("11").errors[0].message, "Required fields are missing: [LastName]");
        assert_eq!(out.outcome("12").outcome, OutcomeKind::Updated);
        assert_eq!(out.outcome("13").errors[0].status_code, "NOT_IN_RESULTS");
    }
}
