//! The audit trail in SQLite: one row per action on a record. `query`
//! reads it back for `connector audit`, `text` shows it to a person and
//! `export` writes it out for other tools.

pub mod export;
pub mod query;
pub mod text;

use anyhow::Result;
use netsuite_salesforce::model::AuditTransformations;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// The transformations as a JSON array; with `shape`, only their values,
    /// or a fresh write's payload (see [`AuditTransformations`]). Rows read
    /// back are always whole.
    pub transformations: String,
    /// The transformations' shared part, kept once in `audit_shapes`; rows
    /// of one call share its text.
    #[serde(skip)]
    pub shape: Option<Arc<str>>,
    pub error: Option<String>,
}

/// Inserts `rows` stamped `at`, in the caller's transaction. A shape is
/// stored once and rows name it by id: a first sync's records share a few
/// shapes, and the shape is most of a row's bytes.
pub fn insert(conn: &Connection, tenant: &str, at: &str, rows: &[AuditRow]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit (tenant, run_id, at, kind, action, direction, netsuite_id, salesforce_id, outcome,
             transformations, error, shape)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    // Rows of one call share their shape's text (one `Arc` per shape): ids
    // are found by its address, not by hashing the ~1 KB text, which rows
    // alternating between a few shapes did for most rows (a fortieth of a
    // run's writer).
    let mut shapes: HashMap<*const u8, i64> = HashMap::new();
    let mut last: Option<(&Arc<str>, i64)> = None;
    for r in rows {
        let shape = match &r.shape {
            None => None,
            Some(text) => Some(match last {
                Some((before, id)) if Arc::ptr_eq(before, text) => id,
                _ => {
                    let id = match shapes.get(&text.as_ptr()) {
                        Some(id) => *id,
                        None => {
                            let id = shape_id(conn, text)?;
                            shapes.insert(text.as_ptr(), id);
                            id
                        }
                    };
                    last = Some((text, id));
                    id
                }
            }),
        };
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
            r.error,
            shape
        ])?;
    }
    Ok(())
}

/// The id of a stored shape, stored now if new.
fn shape_id(conn: &Connection, text: &str) -> Result<i64> {
    conn.prepare_cached("INSERT INTO audit_shapes (json) VALUES (?1) ON CONFLICT (json) DO NOTHING")?
        .execute([text])?;
    Ok(conn.prepare_cached("SELECT id FROM audit_shapes WHERE json = ?1")?.query_row([text], |r| r.get(0))?)
}

/// A select list's transformations: the stored text and its shape's (a
/// macro, so column lists can `concat!` it).
macro_rules! transformation_columns {
    () => {
        "transformations, (SELECT json FROM audit_shapes WHERE audit_shapes.id = audit.shape)"
    };
}
pub(crate) use transformation_columns;

/// A row's transformations whole, from the two columns of
/// [`transformation_columns`] at `at` and `at + 1`.
pub fn transformations_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<String> {
    let stored: String = r.get(at)?;
    Ok(match r.get::<_, Option<String>>(at + 1)? {
        None => stored,
        Some(shape) => AuditTransformations::Split { shape: shape.into(), values: stored }.joined(),
    })
}

/// Audit rows of one run, oldest first.
pub fn for_run(conn: &Connection, tenant: &str, run_id: &str) -> Result<Vec<AuditRow>> {
    let mut stmt = conn.prepare(concat!(
        "SELECT run_id, kind, action, direction, netsuite_id, salesforce_id, outcome, error, ",
        transformation_columns!(),
        " FROM audit WHERE tenant = ?1 AND run_id = ?2 ORDER BY seq"
    ))?;
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
                error: r.get(7)?,
                transformations: transformations_at(r, 8)?,
                shape: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
