//! The audit trail in SQLite: one row per action on a record. `query`
//! reads it back for `connector audit`, `text` shows it to a person and
//! `export` writes it out for other tools.

pub mod export;
pub mod query;
pub mod text;

use anyhow::Result;
use rusqlite::{Connection, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub run_id: String,
    pub kind: String,
    pub action: String,
    /// `netsuite-to-salesforce` or `salesforce-to-netsuite`.
    pub direction: String,
    pub netsuite_id: String,
    pub salesforce_id: Option<String>,
    pub outcome: String,
    pub transformations: String,
    pub error: Option<String>,
}

/// Inserts `rows` stamped `at`, in the caller's transaction.
pub fn insert(conn: &Connection, tenant: &str, at: &str, rows: &[AuditRow]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit (tenant, run_id, at, kind, action, direction, netsuite_id, salesforce_id, outcome,
             transformations, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for r in rows {
        stmt.execute(params![
            tenant,
            r.run_id,
            at,
            r.kind,
            r.action,
            r.direction,
            r.netsuite_id,
            r.salesforce_id,
            r.outcome,
            r.transformations,
            r.error
        ])?;
    }
    Ok(())
}

/// Audit rows of one run, oldest first.
pub fn for_run(conn: &Connection, tenant: &str, run_id: &str) -> Result<Vec<AuditRow>> {
    let mut stmt = conn.prepare(
        "SELECT run_id, kind, action, direction, netsuite_id, salesforce_id, outcome, transformations, error
         FROM audit WHERE tenant = ?1 AND run_id = ?2 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map(params![tenant, run_id], |r| {
            Ok(AuditRow {
                run_id: r.get(0)?,
                kind: r.get(1)?,
                action: r.get(2)?,
                direction: r.get(3)?,
                netsuite_id: r.get(4)?,
                salesforce_id: r.get(5)?,
                outcome: r.get(6)?,
                transformations: r.get(7)?,
                error: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
