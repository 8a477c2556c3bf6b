//! The installation's SQLite database: key-value state per tenant and bucket,
//! the audit trail and the run log. One file, inspectable with any SQLite tool,
//! and beside it a small one for the marks of writes on their way to
//! Salesforce (the `in-flight` bucket: see [`Database::marks_path`]).

mod absent;
pub mod kv;
pub mod run_store;

pub use kv::KvStore;
pub use run_store::RunStore;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Key-value rows, in the database and in the marks' file alike.
const KV_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    tenant TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, bucket, key)
);
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    direction TEXT NOT NULL DEFAULT 'netsuite-to-salesforce',
    netsuite_id TEXT NOT NULL,
    salesforce_id TEXT,
    outcome TEXT NOT NULL,
    transformations TEXT NOT NULL,
    error TEXT,
    -- Set: `transformations` holds only the values (or, for a record
    -- written fresh, its payload), and the shape they fill is this row of
    -- audit_shapes (see audit::insert).
    shape INTEGER REFERENCES audit_shapes (id)
);
CREATE TABLE IF NOT EXISTS audit_shapes (
    id INTEGER PRIMARY KEY,
    json TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS audit_by_run ON audit (tenant, run_id);
CREATE INDEX IF NOT EXISTS audit_by_record ON audit (tenant, kind, netsuite_id);
-- `connector audit` filters: by Salesforce id, and by time (`at` is RFC 3339
-- UTC text with six digits of fraction, see `utc_text`, so it orders as the
-- time does; an index on an expression of it cost a large sync a tenth).
CREATE INDEX IF NOT EXISTS audit_by_salesforce_id ON audit (tenant, salesforce_id);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (tenant, at);
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
-- When `connector serve` runs the tenant's next scheduled sync, and which
-- process promised it (written by the harness, never by the component).
CREATE TABLE IF NOT EXISTS serve_schedule (
    tenant TEXT PRIMARY KEY,
    next_run_at TEXT NOT NULL,
    every_secs INTEGER NOT NULL,
    pid INTEGER,
    boot_id TEXT,
    pid_ns TEXT,
    started INTEGER,
    updated_at TEXT NOT NULL
);
-- The tenant name each secrets file last ran under: a name changed in a
-- config (its files kept) is told from another tenant sharing the database.
CREATE TABLE IF NOT EXISTS tenant_secrets (
    secrets_path TEXT PRIMARY KEY,
    tenant TEXT NOT NULL
);
";

/// The marks' file of the database at `path` (see [`Database::marks_path`]).
pub fn marks_path_of(path: &Path) -> PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_os_string();
    name.push("-in-flight.db");
    path.with_file_name(name)
}

/// `PRAGMA user_version` of a database whose schema and marks' file are
/// this version's: raise it with every change to [`Database::open`]'s work.
const SCHEMA_VERSION: i64 = 1;

/// Where the database lives; each run opens its own connection.
#[derive(Clone, Debug)]
pub struct Database {
    path: PathBuf,
}

impl Database {
    /// Opens (creating when new) and migrates the database. Safe to run in
    /// several processes at once on a new data directory: the journal mode
    /// is switched with retries and the schema is made in one write
    /// transaction, so a competitor waits instead of failing.
    pub fn open(path: &Path) -> Result<Database> {
        if let Some(dir) = path.parent() {
            crate::secrets::create_private_dir(dir)?;
        }
        let db = Database { path: path.to_path_buf() };
        let mut conn = db.connect()?;
        // A database this version made or migrated is opened with a read:
        // `status` and `audit` need not queue for the write lock a large
        // run keeps most of the time.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version_of_marks = || -> Result<i64> {
            let marks = db.connect_marks()?;
            Ok(marks.query_row("PRAGMA user_version", [], |r| r.get(0))?)
        };
        if version == SCHEMA_VERSION && version_of_marks().is_ok_and(|v| v == SCHEMA_VERSION) {
            return Ok(db);
        }
        // Before the database's version is set: a database of this version
        // has its marks' file (one deleted since is made again).
        let marks = db.connect_marks()?;
        use_wal(&marks).with_context(|| format!("switching {} to WAL", db.marks_path().display()))?;
        marks.execute_batch(KV_SCHEMA).with_context(|| format!("creating {}", db.marks_path().display()))?;
        marks.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        // Before the file's first write, so new databases only (an existing
        // one keeps its size): 8 KiB pages took a 100,000-customer sync
        // ~7% less time than 4 KiB ones, fewer page splits and WAL frames
        // for the state and audit rows each commit appends.
        conn.pragma_update(None, "page_size", 8192)?;
        use_wal(&conn).with_context(|| format!("switching {} to WAL", db.path.display()))?;
        // IMMEDIATE: the write lock is taken before anything is read, so two
        // migrating connections queue on the busy timeout; a deferred
        // transaction reading first could only be told SQLITE_BUSY.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        migrate_kv_to_rowid(&tx)?;
        migrate_audit_time(&tx)?;
        tx.execute_batch(KV_SCHEMA).context("creating the database schema")?;
        tx.execute_batch(SCHEMA).context("creating the database schema")?;
        // Databases made before runs kept the full text of a failure.
        let has_detail: bool =
            tx.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = 'detail'", [], |r| r.get(0))?;
        if !has_detail {
            tx.execute_batch("ALTER TABLE runs ADD COLUMN detail TEXT")?;
        }
        // Audit rows carry the direction since vendors sync both ways; the
        // write-back actions of the version before went Salesforce → NetSuite.
        let has_direction: bool =
            tx.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'direction'", [], |r| {
                r.get(0)
            })?;
        if !has_direction {
            tx.execute_batch(
                "ALTER TABLE audit ADD COLUMN direction TEXT NOT NULL DEFAULT 'netsuite-to-salesforce';
                 UPDATE audit SET direction = 'salesforce-to-netsuite'
                     WHERE action IN ('netsuite-write', 'netsuite-create', 'link');",
            )?;
        }
        // Audit rows name their transformations' shape since it is kept once.
        let has_shape: bool =
            tx.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'shape'", [], |r| r.get(0))?;
        if !has_shape {
            tx.execute_batch("ALTER TABLE audit ADD COLUMN shape INTEGER REFERENCES audit_shapes (id)")?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit().with_context(|| format!("creating the schema of {}", db.path.display()))?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file of the `in-flight` bucket, beside the database. A mark must
    /// be committed before its write goes out, while a run's writer keeps
    /// the database's write lock for up to [`run_store`]'s group time: in a
    /// file of its own a mark is one small commit, never waiting for it.
    pub fn marks_path(&self) -> PathBuf {
        marks_path_of(&self.path)
    }

    /// A connection to the marks' file (same `kv` table, same tenants).
    pub fn connect_marks(&self) -> Result<Connection> {
        open_connection(&self.marks_path())
    }

    /// A connection for a run's reads: 32 MiB of page cache (2 MiB by
    /// default), so a large run's state index stays in memory instead of
    /// being read back page by page.
    pub fn connect_for_run_reads(&self) -> Result<Connection> {
        let conn = self.connect()?;
        conn.pragma_update(None, "cache_size", -32 * 1024)?;
        Ok(conn)
    }

    /// The connection of a run's writer thread ([`RunStore`]). It
    /// checkpoints the WAL itself, after the commit that takes the log past
    /// [`CHECKPOINT_PAGES`]: being the only writer, its checkpoints finish,
    /// so the log starts over instead of growing (a checkpointer beside a
    /// writer that never pauses never caught up: a 100,000-customer sync
    /// left a 250 MB log, a million-record one would leave 2.5 GB).
    pub fn connect_for_run_writes(&self) -> Result<Connection> {
        let conn = self.connect_for_run_reads()?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        Ok(conn)
    }

    pub fn connect(&self) -> Result<Connection> {
        open_connection(&self.path)
    }
}

/// How long a connection waits for another's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `e` is SQLite giving up on a lock another connection held past
/// [`BUSY_TIMEOUT`].
pub fn locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<rusqlite::Error>(), Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
    })
}

/// A connection to the file at `path` (the database, or the marks' file).
/// A connection for commands that only read (`status`, `audit`): the
/// database is migrated when it can be written; one that cannot (a backup
/// copy, a read-only mount) is read as it is, without its WAL files when
/// they cannot be made.
pub fn connect_to_read(path: &Path) -> Result<Connection> {
    let writable = Database::open(path).and_then(|db| db.connect());
    let err = match writable {
        Ok(conn) => return Ok(conn),
        Err(e) if read_only(&e, path) => e,
        Err(e) => return Err(e.context(format!("opening database {}", path.display()))),
    };
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open = |uri: String| -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(uri, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
        Ok(conn)
    };
    let uri = format!("file:{}", uri_path(path));
    let shared = match open(uri.clone()) {
        Ok(conn) => return Ok(conn),
        Err(e) => e,
    };
    // No -shm to share and none can be made (a read-only directory): the
    // file is read as a snapshot, safe only when no log holds commits it
    // lacks (a live writer's WAL, a copy taken with its WAL).
    let cannot_share = matches!(&shared, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly));
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    let logged = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if !cannot_share || logged {
        return Err(anyhow::Error::new(shared)).with_context(|| {
            format!(
                "reading database {} (read-only: {err:#}){}",
                path.display(),
                if logged {
                    "; its WAL holds commits a read-only reader cannot share: run as the database's owner, or read \
                     a copy made with `sqlite3 <db> \".backup <copy>\"`"
                } else {
                    ""
                }
            )
        });
    }
    open(format!("{uri}?immutable=1")).with_context(|| format!("reading database {} (read-only)", path.display()))
}

/// Whether opening the database at `path` failed only because the file or
/// its directory is read-only (SQLite says "cannot open" when it is a WAL
/// file beside it that cannot be opened for writing).
fn read_only(e: &anyhow::Error, path: &Path) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ReadOnly
                || (f.code == rusqlite::ErrorCode::CannotOpen && path.exists()))
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// `path` for a `file:` URI: `?`, `#` and `%` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '?' | '#' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening database {}", path.display()))?;
    // Before any statement: every later one waits for a competitor's lock.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL + NORMAL: durable at checkpoints, fast enough for a write per
    // record; a commit survives the process being killed, only a crash of
    // the machine can lose the last ones.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// WAL pages (8 KiB each in new databases) between a run's checkpoints:
/// fewer checkpoints, each an fsync, against a longer log.
const CHECKPOINT_PAGES: i64 = 4096;

/// Switches a database to WAL (once; it stays so). Switching needs an
/// exclusive lock, and SQLite answers SQLITE_BUSY at once, without waiting,
/// to a connection that read the file while another one wants to write it
/// (its deadlock rule): so busy answers are retried here, up to the busy
/// timeout.
fn use_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => anyhow::bail!("SQLite kept journal mode `{mode}` instead of WAL"),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The first databases kept key-value rows in a WITHOUT ROWID table. There
/// a value is part of the key's B-tree, so interior pages hold whole values
/// and a lookup passing a large one (a page of parked records, megabytes)
/// reads its overflow chain: rows go to a rowid table, keyed by an index.
/// Runs inside the caller's write transaction.
fn migrate_kv_to_rowid(conn: &Connection) -> Result<()> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kv'", [], |r| r.get(0))
        .optional()?;
    if !sql.is_some_and(|s| s.to_ascii_uppercase().contains("WITHOUT ROWID")) {
        return Ok(());
    }
    conn.execute_batch(
        "ALTER TABLE kv RENAME TO kv_without_rowid;
         CREATE TABLE kv (tenant TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                          updated_at TEXT NOT NULL, PRIMARY KEY (tenant, bucket, key));
         INSERT INTO kv SELECT tenant, bucket, key, value, updated_at FROM kv_without_rowid;
         DROP TABLE kv_without_rowid;",
    )
    .context("moving key-value rows to a rowid table")
}

/// Databases before fixed-width times indexed the audit by `julianday(at)`:
/// their rows' times are rewritten in the fixed width (to the millisecond
/// SQLite reads; a time it cannot read stays as it is) and the index is
/// replaced by one on the column. Runs inside the caller's write transaction.
fn migrate_audit_time(conn: &Connection) -> Result<()> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'audit_by_time'", [], |r| r.get(0))
        .optional()?;
    if !sql.is_some_and(|s| s.contains("julianday")) {
        return Ok(());
    }
    conn.execute_batch(
        "UPDATE audit SET at = strftime('%Y-%m-%dT%H:%M:%f', at) || '000Z'
             WHERE length(at) <> 27 AND julianday(at) IS NOT NULL;
         DROP INDEX audit_by_time;",
    )
    .context("rewriting audit times in a fixed width")
}

/// `t` as the text the database stores: RFC 3339 in UTC with exactly six
/// digits of fraction, so that text order is time order.
pub fn utc_text(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Now, as the text stored in the database (see [`utc_text`]).
pub fn now_text() -> String {
    utc_text(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two `connector sync` started together on a new data directory both
    /// open and migrate the database: neither may see SQLITE_BUSY.
    #[test]
    fn concurrent_opens_of_a_new_database_all_succeed() {
        let root = std::env::temp_dir().join(format!("store-race-{}", std::process::id()));
        for round in 0..40 {
            let path = root.join(format!("{round}/connector.db"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Database::open(&path).map(|_| ()).map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            for opener in openers {
                let outcome = opener.join().expect("an opener panicked");
                assert!(outcome.is_ok(), "round {round}: {outcome:?}");
            }
            let conn = Database { path: path.clone() }.connect().unwrap();
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    /// The audit table as the first databases made it (no direction column).
    const FIRST_AUDIT_TABLE: &str = "CREATE TABLE audit (seq INTEGER PRIMARY KEY, tenant TEXT NOT NULL,
        run_id TEXT NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL, action TEXT NOT NULL, netsuite_id TEXT NOT NULL,
        salesforce_id TEXT, outcome TEXT NOT NULL, transformations TEXT NOT NULL, error TEXT);";

    /// A database file an older version left: `sql` run on a new file, in a
    /// directory removed when the test ends, however it ends.
    fn older_database(sql: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.db");
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, path)
    }

    #[test]
    fn new_databases_use_8_kib_pages_and_older_ones_keep_theirs() {
        let page_size = |path: &Path| -> i64 {
            Connection::open(path).unwrap().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.db");
        Database::open(&new).unwrap();
        assert_eq!(page_size(&new), 8192);
        let (_old_dir, old) = older_database("PRAGMA page_size = 4096; CREATE TABLE t (x); PRAGMA journal_mode = WAL;");
        Database::open(&old).unwrap();
        assert_eq!(page_size(&old), 4096);
    }

    #[test]
    fn a_current_database_opens_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.db");
        Database::open(&path).unwrap();
        // A run's writer holding the write lock, as it does most of a sync.
        let writer = Database::open(&path).unwrap().connect().unwrap();
        writer
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO runs (run_id, tenant, started_at, mode, status) \
                              VALUES ('r1', 'acme', 'now', 'full', 'running');",
            )
            .unwrap();
        let started = std::time::Instant::now();
        let db = Database::open(&path).expect("opened while the lock is held");
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
        let runs: i64 = db.connect().unwrap().query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0)).unwrap();
        assert_eq!(runs, 0, "reads the last commit");
        writer.execute_batch("COMMIT").unwrap();
        // Without its marks' file the schema is made again (the file with
        // it), also when a connection made the file anew, empty, since.
        let open = Database::open(&path).unwrap();
        std::fs::remove_file(marks_path_of(&path)).unwrap();
        open.connect_marks().unwrap();
        Database::open(&path).unwrap();
        let marks = Database::open(&path).unwrap().connect_marks().unwrap();
        marks.execute("INSERT INTO kv VALUES ('acme', 'in-flight', 'k', x'00', 'now')", []).unwrap();
    }

    #[test]
    fn stored_times_have_one_width_and_order_as_text() {
        use time::macros::datetime;
        assert_eq!(utc_text(datetime!(2026-12-02 06:53:37.8 UTC)), "2026-12-02T06:53:37.800000Z");
        assert_eq!(utc_text(datetime!(2026-12-02 08:53:37.843171602 +02:00)), "2026-12-02T06:53:37.843171Z");
        assert!(utc_text(datetime!(2026-12-02 06:53:37.8 UTC)) < utc_text(datetime!(2026-12-02 06:53:37.84 UTC)));
        assert_eq!(now_text().len(), 27);
    }

    #[test]
    fn audit_times_of_an_older_database_are_rewritten_and_indexed_as_text() {
        let (_dir, path) = older_database(&format!(
            "{FIRST_AUDIT_TABLE}
             CREATE INDEX audit_by_time ON audit (tenant, julianday(at));
             INSERT INTO audit (tenant, run_id, at, kind, action, netsuite_id, outcome, transformations)
                 VALUES ('t', 'r', '2026-12-01T10:00:00.8Z', 'customer', 'write', '7', 'updated', '[]'),
                        ('t', 'r', '2026-12-01T10:00:00.84Z', 'customer', 'write', '8', 'updated', '[]'),
                        ('t', 'r', 'then', 'customer', 'write', '9', 'updated', '[]');"
        ));
        let conn = Database::open(&path).unwrap().connect().unwrap();
        let times: Vec<String> = conn
            .prepare("SELECT at FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(times, ["2026-12-01T10:00:00.800000Z", "2026-12-01T10:00:00.840000Z", "then"]);
        let index: String =
            conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'audit_by_time'", [], |r| r.get(0)).unwrap();
        assert!(!index.contains("julianday"), "{index}");
    }

    /// A customer's audit row of run `r`.
    fn audit_row(
        id: &str,
        outcome: &str,
        transformations: String,
        shape: Option<std::sync::Arc<str>>,
    ) -> crate::audit::AuditRow {
        crate::audit::AuditRow {
            run_id: "r".into(),
            kind: "customer".into(),
            action: "write".into(),
            direction: "netsuite-to-salesforce".into(),
            netsuite_id: id.into(),
            salesforce_id: None,
            outcome: outcome.into(),
            transformations,
            shape,
            error: None,
        }
    }

    #[test]
    fn audit_shapes_are_kept_once_and_every_row_reads_back_whole() {
        let whole = r#"[{"field":"Name","rule":"copy","detail":"companyname","new":"Old Co"}]"#;
        let (_dir, path) = older_database(&format!(
            "{FIRST_AUDIT_TABLE}
             INSERT INTO audit (tenant, run_id, at, kind, action, netsuite_id, outcome, transformations)
                 VALUES ('t', 'r', 'then', 'customer', 'write', '7', 'created', '{whole}');"
        ));
        let conn = Database::open(&path).unwrap().connect().unwrap();
        let shape =
            r#"[{"field":"Name","rule":"copy","detail":"companyname"},{"field":"Phone","rule":"empty","detail":""}]"#;
        let row = |id: &str, shape: Option<&str>, transformations: &str| {
            audit_row(id, "updated", transformations.into(), shape.map(std::sync::Arc::from))
        };
        let rows = [
            row("7", Some(shape), r#"[{"old":"Old Co","new":"New Co"},{"new":null}]"#),
            row("8", Some(shape), r#"[{"new":"Eight"},{}]"#),
            row("9", None, "[]"),
        ];
        for part in rows.chunks(1) {
            crate::audit::insert(&conn, "t", "now", part).unwrap();
        }
        let kept: i64 = conn.query_row("SELECT COUNT(*) FROM audit_shapes", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1);
        let read: Vec<String> =
            crate::audit::for_run(&conn, "t", "r").unwrap().into_iter().map(|r| r.transformations).collect();
        assert_eq!(
            read,
            [
                whole,
                r#"[{"field":"Name","rule":"copy","detail":"companyname","old":"Old Co","new":"New Co"},{"field":"Phone","rule":"empty","detail":"","new":null}]"#,
                r#"[{"field":"Name","rule":"copy","detail":"companyname","new":"Eight"},{"field":"Phone","rule":"empty","detail":""}]"#,
                "[]",
            ]
        );
        let key = crate::audit::query::RecordKey::parse("customer:8").unwrap();
        let history = crate::audit::query::history(&conn, "t", &key).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].transformations, read[2]);
    }

    #[test]
    fn rows_of_one_call_alternating_between_shapes_each_read_back_with_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Database::open(&dir.path().join("state.db")).unwrap().connect().unwrap();
        let (copied, empty) = (
            r#"[{"field":"Phone","rule":"copy+phone","detail":"phone"}]"#,
            r#"[{"field":"Phone","rule":"empty","detail":""}]"#,
        );
        // As one call's rows arrive: one Arc per shape; and the same text
        // again in an Arc of its own (another call's, say).
        use std::sync::Arc;
        let (a, b, a_again): (Arc<str>, Arc<str>, Arc<str>) = (copied.into(), empty.into(), copied.into());
        let row = |id: &str, shape: &Arc<str>, value: &str| {
            audit_row(id, "created", format!(r#"[{{"new":{value}}}]"#), Some(shape.clone()))
        };
        let rows = [
            row("1", &a, r#""+1 555""#),
            row("2", &b, "null"),
            row("3", &a, r#""+1 556""#),
            row("4", &b, "null"),
            row("5", &a_again, r#""+1 557""#),
        ];
        crate::audit::insert(&conn, "t", "now", &rows).unwrap();
        let kept: i64 = conn.query_row("SELECT COUNT(*) FROM audit_shapes", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 2, "each text stored once");
        let read: Vec<String> =
            crate::audit::for_run(&conn, "t", "r").unwrap().into_iter().map(|r| r.transformations).collect();
        let phone = |n: u32| format!(r#"[{{"field":"Phone","rule":"copy+phone","detail":"phone","new":"+1 55{n}"}}]"#);
        let none = r#"[{"field":"Phone","rule":"empty","detail":"","new":null}]"#.to_string();
        assert_eq!(read, [phone(5), none.clone(), phone(6), none, phone(7)]);
    }

    #[test]
    fn audit_rows_of_an_older_database_get_their_direction() {
        let (_dir, path) = older_database(&format!(
            "{FIRST_AUDIT_TABLE}
             INSERT INTO audit (tenant, run_id, at, kind, action, netsuite_id, outcome, transformations)
                 VALUES ('t', 'r', 'then', 'vendor', 'netsuite-write', '7', 'updated', '[]'),
                        ('t', 'r', 'then', 'vendor', 'write', '7', 'updated', '[]');"
        ));
        let conn = Database::open(&path).unwrap().connect().unwrap();
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT action, direction FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [
                ("netsuite-write".to_string(), "salesforce-to-netsuite".to_string()),
                ("write".to_string(), "netsuite-to-salesforce".to_string())
            ]
        );
    }
}
