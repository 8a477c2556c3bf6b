//! The installation's SQLite database: key-value state per tenant and bucket,
//! the audit trail and the run log. One file, inspectable with any SQLite tool.

pub mod kv;

pub use kv::KvStore;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    tenant TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, bucket, key)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    netsuite_id TEXT NOT NULL,
    salesforce_id TEXT,
    outcome TEXT NOT NULL,
    transformations TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit (tenant, run_id);
CREATE INDEX IF NOT EXISTS audit_by_record ON audit (tenant, kind, netsuite_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    report TEXT,
    error TEXT,
    detail TEXT
);
-- Which local process runs a run, so that a later run can tell it ended.
CREATE TABLE IF NOT EXISTS run_processes (
    run_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    pid INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    pid_ns TEXT NOT NULL,
    started INTEGER NOT NULL
);
";

/// Where the database lives; each run opens its own connection.
#[derive(Clone, Debug)]
pub struct Database {
    path: PathBuf,
}

impl Database {
    pub fn open(path: &Path) -> Result<Database> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = Database { path: path.to_path_buf() };
        let conn = db.connect()?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate_kv_to_rowid(&conn)?;
        conn.execute_batch(SCHEMA).context("creating the database schema")?;
        // Databases made before runs kept the full text of a failure.
        let has_detail: bool =
            conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = 'detail'", [], |r| {
                r.get(0)
            })?;
        if !has_detail {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN detail TEXT")?;
        }
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path).with_context(|| format!("opening database {}", self.path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL + NORMAL: durable at checkpoints, fast enough for a write per record.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }
}

/// The first databases kept key-value rows in a WITHOUT ROWID table. There
/// a value is part of the key's B-tree, so interior pages hold whole values
/// and a lookup passing a large one (a page of parked records, megabytes)
/// reads its overflow chain: rows go to a rowid table, keyed by an index.
fn migrate_kv_to_rowid(conn: &Connection) -> Result<()> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kv'", [], |r| r.get(0))
        .optional()?;
    if !sql.is_some_and(|s| s.to_ascii_uppercase().contains("WITHOUT ROWID")) {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         ALTER TABLE kv RENAME TO kv_without_rowid;
         CREATE TABLE kv (tenant TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                          updated_at TEXT NOT NULL, PRIMARY KEY (tenant, bucket, key));
         INSERT INTO kv SELECT tenant, bucket, key, value, updated_at FROM kv_without_rowid;
         DROP TABLE kv_without_rowid;
         COMMIT;",
    )
    .context("moving key-value rows to a rowid table")
}

/// Now, as the ISO-8601 text stored in the database.
pub fn now_text() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
