//! Audit rows written out for other tools: JSON Lines (one object per row,
//! the transformations as JSON) or CSV (the transformations as their JSON
//! text in one column). Rows are written as they are read, never gathered.

use super::query::{self, AuditFilter, AuditRecord};
use anyhow::Result;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines: one JSON object per row.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// The CSV header: the audit table's columns, in its order.
pub const CSV_HEADER: [&str; 12] = [
    "seq",
    "tenant",
    "run_id",
    "at",
    "kind",
    "action",
    "direction",
    "netsuite_id",
    "salesforce_id",
    "outcome",
    "transformations",
    "error",
];

/// A row as JSON: the stored transformations embedded as JSON (as text in
/// the unlikely case they are not).
#[derive(Serialize)]
pub struct JsonRecord<'a> {
    pub seq: i64,
    pub tenant: &'a str,
    pub run_id: &'a str,
    pub at: &'a str,
    pub kind: &'a str,
    pub action: &'a str,
    pub direction: &'a str,
    pub netsuite_id: &'a str,
    pub salesforce_id: Option<&'a str>,
    pub outcome: &'a str,
    pub transformations: Transformations<'a>,
    pub error: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Transformations<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl<'a> From<&'a AuditRecord> for JsonRecord<'a> {
    fn from(r: &'a AuditRecord) -> JsonRecord<'a> {
        JsonRecord {
            seq: r.seq,
            tenant: &r.tenant,
            run_id: &r.run_id,
            at: &r.at,
            kind: &r.kind,
            action: &r.action,
            direction: &r.direction,
            netsuite_id: &r.netsuite_id,
            salesforce_id: r.salesforce_id.as_deref(),
            outcome: &r.outcome,
            transformations: match serde_json::from_str::<&RawValue>(&r.transformations) {
                Ok(json) => Transformations::Json(json),
                Err(_) => Transformations::Text(&r.transformations),
            },
            error: r.error.as_deref(),
        }
    }
}

/// Writes every row `filter` matches to `out`, oldest first; returns how
/// many.
pub fn export(conn: &Connection, filter: &AuditFilter, format: ExportFormat, out: impl Write) -> Result<u64> {
    match format {
        ExportFormat::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            // Each line is made apart, so a failed write is the io::Error it is.
            let mut line = Vec::new();
            let n = query::for_each(conn, filter, |r| {
                line.clear();
                serde_json::to_writer(&mut line, &JsonRecord::from(r))?;
                line.push(b'\n');
                out.write_all(&line)?;
                Ok(())
            })?;
            out.flush()?;
            Ok(n)
        }
        ExportFormat::Csv => {
            // The csv writer buffers itself.
            let mut out = csv::Writer::from_writer(out);
            out.write_record(CSV_HEADER).map_err(io_first)?;
            let n = query::for_each(conn, filter, |r| {
                let seq = r.seq.to_string();
                out.write_record([
                    seq.as_str(),
                    r.tenant.as_str(),
                    r.run_id.as_str(),
                    r.at.as_str(),
                    r.kind.as_str(),
                    r.action.as_str(),
                    r.direction.as_str(),
                    r.netsuite_id.as_str(),
                    r.salesforce_id.as_deref().unwrap_or(""),
                    r.outcome.as_str(),
                    r.transformations.as_str(),
                    r.error.as_deref().unwrap_or(""),
                ])
                .map_err(io_first)?;
                Ok(())
            })?;
            out.flush()?;
            Ok(n)
        }
    }
}

/// A CSV write that failed writing as the io::Error it is (a closed pipe is
/// then told apart from a fault).
fn io_first(e: csv::Error) -> anyhow::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io.into(),
        other => anyhow::anyhow!("writing CSV: {other:?}"),
    }
}
