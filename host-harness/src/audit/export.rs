//! Audit rows written out for other tools: JSON Lines (one object per row,
//! the transformations as JSON) or CSV (the transformations as their JSON
//! text in one column). Rows are written as they are read, never gathered.

use super::query::{self, AuditFilter, AuditRecord};
use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;
use std::path::{Path, PathBuf};

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
/// Writes an export to the file `path` (`write` does, to the file it is
/// given): into a new file beside it, renamed to `path` once whole, so a
/// failed export leaves no half file. An existing `path` is replaced only
/// with `force`, and never when it is one of `owned` (the tenant's
/// database and its journals, secrets, master key, config): an export
/// written over the database would leave neither.
pub fn export_to(
    path: &Path,
    force: bool,
    owned: &[PathBuf],
    write: impl FnOnce(&mut std::fs::File) -> Result<u64>,
) -> Result<u64> {
    let target = resolved(path);
    if owned.iter().any(|o| resolved(o) == target) {
        bail!("--out {}: that is one of the tenant's own files; name a new file for the export", path.display());
    }
    if path.exists() && !force {
        bail!("--out {}: the file exists; name a new file, or add --force to replace it", path.display());
    }
    let name = path.file_name().with_context(|| format!("--out {}: name a file", path.display()))?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(".{}.partial", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .with_context(|| format!("--out {}: cannot create {}", path.display(), temporary.display()))?;
    let written = write(&mut file).and_then(|n| {
        file.sync_all()?;
        if force {
            std::fs::rename(&temporary, path)?;
        } else {
            // A link fails where a file appeared since the check: never replaced.
            match std::fs::hard_link(&temporary, path) {
                Ok(()) => std::fs::remove_file(&temporary)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    bail!("--out {}: the file exists; name a new file, or add --force to replace it", path.display())
                }
                // A file system without hard links: renamed (checked above).
                Err(_) => std::fs::rename(&temporary, path)?,
            }
        }
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// `path` with its directory's links resolved (the file itself too, when
/// it exists), to tell whether two names reach one file.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_text(text: &'static str) -> impl FnOnce(&mut std::fs::File) -> Result<u64> {
        move |file| {
            file.write_all(text.as_bytes())?;
            Ok(1)
        }
    }

    #[test]
    fn an_export_makes_a_new_file_and_never_replaces_the_tenants_own() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("connector.db");
        std::fs::write(&database, "SQLite format 3").unwrap();
        let owned = vec![database.clone()];
        let out = dir.path().join("rows.csv");
        assert_eq!(export_to(&out, false, &owned, write_text("a")).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a");
        // Existing: refused, then replaced with --force.
        let refused = export_to(&out, false, &owned, write_text("b")).unwrap_err().to_string();
        assert!(refused.contains("add --force"), "{refused}");
        export_to(&out, true, &owned, write_text("b")).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "b");
        // The database, by its name, another spelling or a link: never.
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&database, &link).unwrap();
        let dotted = dir.path().join(".").join("connector.db");
        for target in [&database, &dotted, &link] {
            let refused = export_to(target, true, &owned, write_text("c")).unwrap_err().to_string();
            assert!(refused.contains("tenant's own files"), "{refused}");
        }
        assert_eq!(std::fs::read_to_string(&database).unwrap(), "SQLite format 3");
        // A failed export leaves the old file and no partial one.
        let failed = export_to(&out, true, &owned, |_| anyhow::bail!("disk full"));
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "b");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
