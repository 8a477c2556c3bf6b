//! Bulk API 2.0 ingest jobs: create, upload CSV, close, poll, results. As in
//! Salesforce, a closed job runs in the background and the close answers at
//! once; every later request (and every look a test takes at the org) first
//! waits for the jobs closed before it, so what a client observes never
//! depends on thread timing. A poll then shows the job's final state
//! (`hold_jobs` keeps it InProgress). Result files list rows in an order of
//! their own, as Salesforce does, so clients must match on the external id.

use super::schema::FieldType;
use super::store::{Deleted, Org, Read, RecordError, RequestError, WriteError};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Failed results carry `sf__Id` from this version.
const FAILED_ID_VERSION: f64 = 53.0;

/// Salesforce takes 150 MB per upload after its own base64 encoding, which
/// grows data by 4/3: this much raw CSV.
pub const MAX_UPLOAD_BYTES: usize = 150 * 1024 * 1024 / 4 * 3;

/// Records per internal batch: each counts against the daily batch allocation.
const BATCH_RECORDS: usize = 10_000;

pub struct Job {
    pub id: String,
    object: String,
    operation: String,
    external_id_field: String,
    line_ending: String,
    /// `columnDelimiter` as the job was created with it, and its character.
    column_delimiter: String,
    delimiter: u8,
    pub state: String,
    /// Its rows are applied (it is then shown as ended unless held).
    processed: bool,
    created_at: i64,
    api_version: f64,
    error_message: Option<String>,
    data: Option<Vec<u8>>,
    headers: Vec<String>,
    successful: Vec<(String, bool, Vec<String>)>,
    failed: Vec<(String, Vec<String>)>,
    unprocessed: Vec<Vec<String>>,
}

fn iso(secs: i64) -> String {
    super::datetime::format(secs)
}

impl Job {
    pub fn info(&self) -> Value {
        json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "0058d000000SIMxAAA",
            "createdDate": iso(self.created_at),
            "systemModstamp": iso(self.created_at),
            "state": self.state,
            "externalIdFieldName": self.external_id_field,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version,
            "jobType": "V2Ingest",
            "contentUrl": format!("services/data/v{:.1}/jobs/ingest/{}/batches", self.api_version, self.id),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
            "numberRecordsProcessed": self.successful.len() + self.failed.len(),
            "numberRecordsFailed": self.failed.len(),
            "retries": 0,
            "totalProcessingTime": 0,
            "errorMessage": self.error_message,
        })
    }
}

/// The column delimiters a job may name, and their characters.
const DELIMITERS: [(&str, u8); 6] =
    [("COMMA", b','), ("TAB", b'\t'), ("PIPE", b'|'), ("SEMICOLON", b';'), ("CARET", b'^'), ("BACKQUOTE", b'`')];

fn delimiter_byte(name: &str) -> Option<u8> {
    DELIMITERS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn fail(e: RequestError) -> (u16, Option<Value>) {
    (e.status, Some(e.body()))
}

fn invalid_state(job: &Job) -> (u16, Option<Value>) {
    fail(RequestError::new(409, "INVALIDJOBSTATE", format!("Job {} is in state {}", job.id, job.state)))
}

pub fn create(org: &mut Org, version: f64, body: &[u8], now: i64) -> (u16, Option<Value>) {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return fail(RequestError::new(400, "JSON_PARSER_ERROR", "The request body must be a JSON object"));
    };
    let get = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (object, operation, ext) = (get("object"), get("operation"), get("externalIdFieldName"));
    let Some(sobject) = org.object(&object).cloned() else {
        return fail(RequestError::new(
            400,
            "INVALIDENTITY",
            format!("Entity '{object}' is not supported by the Bulk API"),
        ));
    };
    if !["insert", "update", "upsert", "delete", "hardDelete"].contains(&operation.as_str()) {
        return fail(RequestError::new(400, "INVALIDJOB", format!("Invalid operation: {operation}")));
    }
    // externalIdFieldName belongs to upsert alone.
    if operation != "upsert" && !ext.is_empty() {
        return fail(RequestError::new(
            400,
            "INVALIDJOB",
            format!("externalIdFieldName is only valid for upsert jobs, not {operation}"),
        ));
    }
    if operation == "upsert" && !sobject.field(&ext).is_some_and(|f| f.external_id) {
        return fail(RequestError::new(
            400,
            "INVALIDJOB",
            format!("Invalid externalIdFieldName for upsert: {ext} is not an External ID field of {object}"),
        ));
    }
    let content_type = req.get("contentType").and_then(Value::as_str).unwrap_or("CSV");
    if content_type != "CSV" {
        return fail(RequestError::new(400, "INVALIDJOB", format!("Invalid contentType: {content_type} (CSV only)")));
    }
    let column_delimiter = req.get("columnDelimiter").and_then(Value::as_str).unwrap_or("COMMA").to_string();
    let Some(delimiter) = delimiter_byte(&column_delimiter) else {
        return fail(RequestError::new(
            400,
            "INVALIDJOB",
            format!(
                "Invalid columnDelimiter: {column_delimiter} (one of {})",
                DELIMITERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let line_ending = req.get("lineEnding").and_then(Value::as_str).unwrap_or("LF").to_string();
    if !["LF", "CRLF"].contains(&line_ending.as_str()) {
        return fail(RequestError::new(400, "INVALIDJOB", format!("Invalid lineEnding: {line_ending} (LF or CRLF)")));
    }
    org.next_job += 1;
    let id = format!("7508d{:010}SIM", org.next_job);
    let job = Job {
        id: id.clone(),
        object: sobject.name.to_string(),
        operation,
        external_id_field: ext,
        line_ending,
        column_delimiter,
        delimiter,
        state: "Open".into(),
        processed: false,
        created_at: now,
        api_version: version,
        error_message: None,
        data: None,
        headers: vec![],
        successful: vec![],
        failed: vec![],
        unprocessed: vec![],
    };
    let info = job.info();
    org.jobs.insert(id, job);
    (200, Some(info))
}

pub fn upload(org: &mut Org, id: &str, body: &[u8]) -> (u16, Option<Value>) {
    let Some(job) = org.jobs.get_mut(id) else { return not_found(id) };
    if job.state != "Open" {
        return invalid_state(job);
    }
    if job.data.is_some() {
        return fail(RequestError::new(
            409,
            "INVALIDJOBSTATE",
            format!(
                "Job {id} already has its data: a job takes one upload (close it, or abort it and create a new job \
                 for the whole data)"
            ),
        ));
    }
    if body.len() > MAX_UPLOAD_BYTES {
        return fail(RequestError::new(413, "EXCEEDED_QUOTA", "Upload exceeds 150 MB once base64-encoded"));
    }
    job.data = Some(body.to_vec());
    (201, None)
}

fn not_found(id: &str) -> (u16, Option<Value>) {
    fail(RequestError::new(404, "NOT_FOUND", format!("The requested resource does not exist: job {id}")))
}

pub fn set_state(org: &mut Org, id: &str, body: &[u8], now: i64) -> (u16, Option<Value>) {
    let wanted = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["state"].as_str().map(str::to_string));
    let Some(job) = org.jobs.get_mut(id) else { return not_found(id) };
    match wanted.as_deref() {
        Some("UploadComplete") if job.state == "Open" => {
            job.state = "UploadComplete".into();
            org.queued_jobs.push((id.to_string(), now));
        }
        Some("Aborted") if ["Open", "UploadComplete", "InProgress"].contains(&job.state.as_str()) => {
            job.state = "Aborted".into();
        }
        Some(_) => return invalid_state(job),
        None => return fail(RequestError::new(400, "JSON_PARSER_ERROR", "state is required")),
    }
    (200, org.jobs.get(id).map(Job::info))
}

/// A poll: a closed job shows its final state once processed (always, by
/// the time a request is answered) unless jobs are held.
pub fn info(org: &mut Org, id: &str) -> (u16, Option<Value>) {
    let hold = org.hold_jobs;
    let Some(job) = org.jobs.get_mut(id) else { return not_found(id) };
    if matches!(job.state.as_str(), "UploadComplete" | "InProgress") {
        job.state = match (hold || !job.processed, job.error_message.is_some()) {
            (true, _) => "InProgress".into(),
            (false, true) => "Failed".into(),
            (false, false) => "JobComplete".into(),
        };
    }
    (200, Some(job.info()))
}

/// Runs the jobs closed since the last request, in the order they were
/// closed, with the time each was closed.
pub fn run_queued(org: &mut Org) {
    for (id, closed_at) in std::mem::take(&mut org.queued_jobs) {
        run(org, &id, closed_at);
    }
}

/// One line of a result file, its values separated by `delimiter`.
fn csv_line(values: &[String], delimiter: u8) -> String {
    let d = char::from(delimiter);
    values
        .iter()
        .map(|v| if v.contains([d, '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.clone() })
        .collect::<Vec<_>>()
        .join(&d.to_string())
}

/// The header line of a result file: Salesforce's own columns, quoted, then
/// the upload's.
fn result_header(own: &[&str], headers: &[String], delimiter: u8) -> String {
    let d = char::from(delimiter);
    let own: Vec<String> = own.iter().map(|c| format!("\"{c}\"")).collect();
    format!("{}{d}{}\n", own.join(&d.to_string()), csv_line(headers, delimiter))
}

/// Checks the line breaks that end records (those outside quotes) against
/// the job's lineEnding: CRLF data in an LF job, or LF data in a CRLF job,
/// fails the job as Salesforce fails it. So does a quoted value never
/// closed (the CSV reader would take the rest of the data as its text).
fn check_csv(data: &[u8], delimiter: u8, crlf: bool) -> Result<(), String> {
    let ending = if crlf { "CRLF" } else { "LF" };
    let (mut i, mut in_quotes, mut field_start) = (0, false, true);
    // Record line numbers (the header is line 1), and where the open quote began.
    let (mut line, mut opened_on) = (1, 0);
    while i < data.len() {
        let b = data[i];
        i += 1;
        if in_quotes {
            if b == b'"' {
                if data.get(i) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            }
            continue;
        }
        match b {
            b'"' if field_start => (in_quotes, opened_on) = (true, line),
            b'\n' if (i >= 2 && data[i - 2] == b'\r') != crlf => {
                return Err(format!(
                    "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {ending}"
                ));
            }
            b'\n' => line += 1,
            _ => {}
        }
        field_start = b == delimiter || b == b'\n';
    }
    if in_quotes {
        return Err(format!("InvalidBatch : the quote that opens a value on line {opened_on} is never closed"));
    }
    Ok(())
}

/// One of the result files as CSV text, or None for an unknown job.
pub fn results(org: &Org, id: &str, which: &str) -> Option<Result<String, RequestError>> {
    let job = org.jobs.get(id)?;
    if !["JobComplete", "Failed", "Aborted"].contains(&job.state.as_str()) {
        return Some(Err(RequestError::new(
            400,
            "INVALIDJOBSTATE",
            format!("Job {id} has not finished: {}", job.state),
        )));
    }
    let mut out = String::new();
    let d = job.delimiter;
    match which {
        "successfulResults" => {
            out.push_str(&result_header(&["sf__Id", "sf__Created"], &job.headers, d));
            for (sf_id, created, row) in job.successful.iter().rev() {
                out.push_str(&csv_line(&[&[sf_id.clone(), created.to_string()], &row[..]].concat(), d));
                out.push('\n');
            }
        }
        // `sf__Id` came to failed results in v53.0.
        "failedResults" if job.api_version >= FAILED_ID_VERSION => {
            out.push_str(&result_header(&["sf__Id", "sf__Error"], &job.headers, d));
            for (error, row) in job.failed.iter().rev() {
                out.push_str(&csv_line(&[&[String::new(), error.clone()], &row[..]].concat(), d));
                out.push('\n');
            }
        }
        "failedResults" => {
            out.push_str(&result_header(&["sf__Error"], &job.headers, d));
            for (error, row) in job.failed.iter().rev() {
                out.push_str(&csv_line(&[std::slice::from_ref(error), &row[..]].concat(), d));
                out.push('\n');
            }
        }
        "unprocessedrecords" => {
            out.push_str(&csv_line(&job.headers, d));
            out.push('\n');
            for row in &job.unprocessed {
                out.push_str(&csv_line(row, d));
                out.push('\n');
            }
        }
        _ => return None,
    }
    Some(Ok(out))
}

/// Processes an uploaded job: each row is upserted as Collections would.
fn run(org: &mut Org, id: &str, now: i64) {
    let Some(job) = org.jobs.get_mut(id) else { return };
    job.processed = true;
    let data = job.data.take().unwrap_or_default();
    let (object_name, ext, operation) = (job.object.clone(), job.external_id_field.clone(), job.operation.clone());
    if let Err(message) = check_csv(&data, job.delimiter, job.line_ending == "CRLF") {
        job.error_message = Some(message);
        return;
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(true).delimiter(job.delimiter).from_reader(data.as_slice());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => {
            job.error_message = Some(format!("InvalidBatch : {e}"));
            return;
        }
    };
    // A row the CSV rules cannot read (a field too many, a quote left
    // open) fails the job: a client's CSV defect shows, instead of rows
    // quietly missing from every result file.
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (n, record) in reader.records().enumerate() {
        match record {
            Ok(r) => rows.push(r.iter().map(str::to_string).collect()),
            Err(e) => {
                job.error_message = Some(format!("InvalidBatch : the CSV row {} cannot be read: {e}", n + 2));
                job.headers = headers;
                job.unprocessed = rows;
                return;
            }
        }
    }
    job.headers = headers.clone();
    org.bulk_batches += rows.len().div_ceil(BATCH_RECORDS) as u64;
    let Some(object) = org.object(&object_name).cloned() else { return };
    // Every column must name a field or a relationship's external id.
    for h in &headers {
        let known = match h.split_once('.') {
            Some((rel, _)) => object.relationship(rel).is_some(),
            None => object.field(h).is_some(),
        };
        if !known {
            let job = org.jobs.get_mut(id).expect("job exists");
            job.error_message = Some(format!("InvalidBatch : Field name not found : {h}"));
            job.unprocessed = rows;
            return;
        }
    }
    let ext_col = headers.iter().position(|h| !ext.is_empty() && h.eq_ignore_ascii_case(&ext));
    let mut seen: HashMap<String, usize> = HashMap::new();
    if let Some(c) = ext_col {
        for row in &rows {
            *seen.entry(row[c].to_ascii_lowercase()).or_default() += 1;
        }
    }
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for row in rows {
        let mut record = Map::new();
        for (h, v) in headers.iter().zip(&row) {
            if v.is_empty() {
                continue; // an empty cell leaves the field as it is
            }
            let value = if v == "#N/A" { Value::Null } else { Value::String(v.clone()) };
            match h.split_once('.') {
                Some((rel, field)) => {
                    record.insert(rel.to_string(), json!({ field: value }));
                }
                None => {
                    let typed = match (object.field(h).map(|f| f.kind), &value) {
                        (Some(FieldType::Boolean), Value::String(s)) => Value::Bool(s.eq_ignore_ascii_case("true")),
                        _ => value,
                    };
                    record.insert(h.clone(), typed);
                }
            }
        }
        let key = ext_col.map(|c| row[c].clone()).unwrap_or_default();
        let result = if seen.get(&key.to_ascii_lowercase()).copied().unwrap_or(0) > 1 {
            Err(RecordError {
                status_code: "DUPLICATE_VALUE",
                message: format!("Duplicate external id specified: {key}"),
                fields: vec![],
            })
        } else {
            apply(org, &object, &operation, &ext, record, now)
        };
        match result {
            Ok(u) => successful.push((u.id, u.created, row)),
            Err(e) => failed.push((format!("{}:{}", e.status_code, e.message), row)),
        }
    }
    let job = org.jobs.get_mut(id).expect("job exists");
    job.successful = successful;
    job.failed = failed;
}

/// One row of a job, as its operation says: upsert by the job's external
/// id, insert, update by Id, or delete by Id (to the Recycle Bin, or for
/// good with hardDelete).
fn apply(
    org: &mut Org,
    object: &super::schema::SObject,
    operation: &str,
    ext: &str,
    mut record: Map<String, Value>,
    now: i64,
) -> Result<super::store::Upserted, RecordError> {
    let by_id = |record: &mut Map<String, Value>| -> Result<String, RecordError> {
        let key = record.keys().find(|k| k.eq_ignore_ascii_case("Id")).cloned();
        match key.and_then(|k| record.remove(&k)) {
            Some(Value::String(id)) if !id.is_empty() => Ok(id),
            _ => Err(RecordError::new("MISSING_ARGUMENT", "Id not specified in an update call", &["Id"])),
        }
    };
    let gone = |d: Deleted, id: String| match d {
        Deleted::Ok => Ok(super::store::Upserted { id, created: false }),
        Deleted::AlreadyDeleted => Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[])),
        Deleted::NoSuchId => Err(RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[])),
        Deleted::Locked(e) => Err(e),
    };
    match operation {
        "insert" => org.create(object, record, now).map(|id| super::store::Upserted { id, created: true }),
        "update" => {
            let id = by_id(&mut record)?;
            org.update(object, &id, record, now).map(|id| super::store::Upserted { id, created: false }).map_err(|e| {
                match e {
                    WriteError::Record(e) => e,
                    WriteError::Deleted => RecordError::new("ENTITY_IS_DELETED", "entity is deleted", &[]),
                    WriteError::NotFound => {
                        RecordError::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[])
                    }
                }
            })
        }
        "delete" | "hardDelete" => {
            let id = by_id(&mut record)?;
            // Only this job's object: an id of another object is not found.
            let outcome = match org.read(object.name, &id) {
                Read::Live(_) if operation == "delete" => org.delete(&id, now),
                Read::Live(_) => org.hard_delete(&id),
                Read::Deleted => Deleted::AlreadyDeleted,
                Read::Missing => Deleted::NoSuchId,
            };
            gone(outcome, id)
        }
        _ => org.upsert(object, ext, record, now),
    }
}
