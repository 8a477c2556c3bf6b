//! SOQL against the simulated org (`query` and `queryAll`): parse, check
//! against the schema, read the matching rows, answer the first page and
//! keep the rest behind a query locator that `nextRecordsUrl` names.
//!
//! Conditions on system columns (Id, the audit dates, IsDeleted) and on the
//! external id go to SQLite as a prefilter, and an ORDER BY of system
//! columns is read in order, so a keyset page over many records reads only
//! what it returns; the full condition is always evaluated on each row.

mod error;
mod eval;
mod lex;
mod parse;
mod plan;

use super::store::{Org, RequestError};
use eval::Row;
use lex::Op;
use parse::{Condition, Selection};
use plan::{Column, Filter, Operand, Plan};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// One `query`/`queryAll` call.
pub struct QueryCall<'a> {
    pub soql: &'a str,
    /// queryAll: records in the Recycle Bin too.
    pub all_rows: bool,
    /// Rows per page (Sforce-Query-Options batchSize, 200..=2000).
    pub batch: usize,
    pub version: f64,
    /// Unix seconds of the simulated clock.
    pub now: i64,
}

/// Salesforce keeps a locator's results for two days after the query.
const CURSOR_LIFETIME_SECS: i64 = 2 * 86_400;
/// The simulator's own bound on snapshot rows held for all open locators;
/// beyond it the oldest locators are released (and answer INVALID_QUERY_LOCATOR).
const MAX_HELD_ROWS: usize = 500_000;

/// Results of open queries beyond their first page, oldest first. Each
/// holds the rows as they were when the query ran, so later pages stay
/// consistent while records change.
#[derive(Default)]
pub struct Cursors {
    open: VecDeque<Cursor>,
    opened: u64,
    held: usize,
}

struct Cursor {
    locator: String,
    /// Rows from `base` on, as JSON text.
    rows: Vec<Box<str>>,
    base: usize,
    batch: usize,
    opened_at: i64,
}

impl Cursor {
    fn total(&self) -> usize {
        self.base + self.rows.len()
    }
}

impl Cursors {
    fn open(&mut self, rows: Vec<Box<str>>, base: usize, batch: usize, now: i64) -> String {
        self.opened += 1;
        let locator = super::schema::salesforce_id("01g", self.opened);
        self.held += rows.len();
        self.open.push_back(Cursor { locator: locator.clone(), rows, base, batch, opened_at: now });
        while self.held > MAX_HELD_ROWS && self.open.len() > 1 {
            if let Some(old) = self.open.pop_front() {
                self.held -= old.rows.len();
            }
        }
        locator
    }

    fn find(&mut self, locator: &str, now: i64) -> Option<&Cursor> {
        while self.open.front().is_some_and(|c| now - c.opened_at > CURSOR_LIFETIME_SECS) {
            if let Some(old) = self.open.pop_front() {
                self.held -= old.rows.len();
            }
        }
        self.open.iter().find(|c| c.locator == locator)
    }
}

fn internal(e: rusqlite::Error) -> RequestError {
    RequestError::new(500, "UNKNOWN_EXCEPTION", e.to_string())
}

fn invalid_locator() -> RequestError {
    RequestError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
}

/// Runs a query and answers its first page.
pub fn query(org: &mut Org, call: &QueryCall<'_>) -> Result<Value, RequestError> {
    let q = call.soql;
    if q.trim().is_empty() {
        return Err(RequestError::new(400, "MALFORMED_QUERY", "A query string has to be specified"));
    }
    let parsed = parse::parse(q).map_err(|e| e.into_request(q))?;
    let selected = {
        let plan = plan::plan(&parsed, &org.objects, call.now * 1000).map_err(|e| e.into_request(q))?;
        select(&org.conn, &plan, call)?
    };
    let rows = match selected {
        Selected::Count(n) => return Ok(json!({ "totalSize": n, "done": true, "records": [] })),
        Selected::Rows(rows) => rows,
    };
    let total = rows.len();
    if total <= call.batch {
        return Ok(json!({ "totalSize": total, "done": true, "records": rows }));
    }
    let mut rows = rows;
    let rest: Vec<Box<str>> = rows.split_off(call.batch).into_iter().map(|r| r.to_string().into_boxed_str()).collect();
    let locator = org.cursors.open(rest, call.batch, call.batch, call.now);
    Ok(json!({
        "totalSize": total,
        "done": false,
        "nextRecordsUrl": format!("/services/data/v{:.1}/query/{locator}-{}", call.version, call.batch),
        "records": rows,
    }))
}

/// The page a `nextRecordsUrl` names: `{locator}-{offset}`.
pub fn more(org: &mut Org, version: f64, locator_and_offset: &str, now: i64) -> Result<Value, RequestError> {
    let (locator, offset) = locator_and_offset.rsplit_once('-').ok_or_else(invalid_locator)?;
    let offset: usize = offset.parse().map_err(|_| invalid_locator())?;
    let cursor = org.cursors.find(locator, now).ok_or_else(invalid_locator)?;
    if offset < cursor.base || offset > cursor.total() {
        return Err(invalid_locator());
    }
    let from = offset - cursor.base;
    let to = (from + cursor.batch).min(cursor.rows.len());
    let records: Vec<Value> =
        cursor.rows[from..to].iter().map(|r| serde_json::from_str(r).unwrap_or(Value::Null)).collect();
    let next = offset + records.len();
    let mut page = json!({ "totalSize": cursor.total(), "done": next >= cursor.total(), "records": records });
    if next < cursor.total() {
        page["nextRecordsUrl"] = json!(format!("/services/data/v{version:.1}/query/{locator}-{next}"));
    }
    Ok(page)
}

enum Selected {
    Count(usize),
    Rows(Vec<Value>),
}

/// Reads the rows the plan selects, in order, offset and limit applied.
fn select(conn: &Connection, plan: &Plan<'_>, call: &QueryCall<'_>) -> Result<Selected, RequestError> {
    let mut sql = String::from("SELECT id, created_at, modstamp, is_deleted, fields FROM record WHERE sobject = ?");
    let mut params: Vec<SqlValue> = vec![SqlValue::Text(plan.object.name.to_string())];
    if !call.all_rows {
        sql.push_str(" AND is_deleted = 0");
    }
    if let Some((predicate, values)) = plan.filter.as_ref().and_then(|f| pushdown(f, plan.object)) {
        sql.push_str(&format!(" AND ({predicate})"));
        params.extend(values);
    }
    // Read in final order when SQLite can order by the stored columns; ties
    // (and no ORDER BY) follow creation order, as the in-memory sort does.
    let sql_order: Option<Vec<String>> = plan
        .order
        .iter()
        .map(|o| sql_column(&o.field).map(|c| format!("{c} {}", if o.descending { "DESC" } else { "ASC" })))
        .collect();
    let in_order = sql_order.is_some();
    let mut keys = sql_order.unwrap_or_default();
    keys.push("rowid".into());
    sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    let wanted = plan.limit.map(|l| plan.offset.saturating_add(l)).filter(|_| in_order);

    let lookups = plan.lookups();
    let mut parents: HashMap<String, Option<Rc<Row>>> = HashMap::new();
    let mut stmt = conn.prepare_cached(&sql).map_err(internal)?;
    let mut cursor = stmt.query(rusqlite::params_from_iter(params)).map_err(internal)?;
    let mut hits: Vec<Row> = Vec::new();
    while let Some(r) = cursor.next().map_err(internal)? {
        if wanted.is_some_and(|w| hits.len() >= w) {
            break;
        }
        let text: String = r.get(4).map_err(internal)?;
        let mut row = Row {
            id: r.get(0).map_err(internal)?,
            created: r.get(1).map_err(internal)?,
            modstamp: r.get(2).map_err(internal)?,
            deleted: r.get(3).map_err(internal)?,
            fields: serde_json::from_str(&text).unwrap_or_default(),
            parents: Vec::with_capacity(lookups.len()),
        };
        for lookup in &lookups {
            let parent = match row.fields.get(lookup.name).and_then(Value::as_str) {
                None => None,
                Some(pid) => match parents.get(pid) {
                    Some(p) => p.clone(),
                    None => {
                        let p = live_row(conn, pid)?.map(Rc::new);
                        parents.insert(pid.to_string(), p.clone());
                        p
                    }
                },
            };
            row.parents.push((lookup.name, parent));
        }
        if plan.filter.as_ref().is_none_or(|f| eval::matches(f, &row)) {
            hits.push(row);
        }
    }
    if !in_order {
        hits.sort_by(|a, b| eval::order(&plan.order, a, b));
    }
    let chosen = hits.into_iter().skip(plan.offset).take(plan.limit.unwrap_or(usize::MAX));
    Ok(match &plan.select {
        Selection::Count => Selected::Count(chosen.count()),
        Selection::Fields(columns) => {
            Selected::Rows(chosen.map(|row| eval::render(plan.object, columns, &row, call.version)).collect())
        }
    })
}

/// A live record by id (a parent a query reads through a lookup).
fn live_row(conn: &Connection, id: &str) -> Result<Option<Row>, RequestError> {
    let mut stmt = conn
        .prepare_cached("SELECT created_at, modstamp, fields FROM record WHERE id = ?1 AND is_deleted = 0")
        .map_err(internal)?;
    let mut rows = stmt.query([id]).map_err(internal)?;
    let Some(r) = rows.next().map_err(internal)? else { return Ok(None) };
    let text: String = r.get(2).map_err(internal)?;
    Ok(Some(Row {
        id: id.to_string(),
        created: r.get(0).map_err(internal)?,
        modstamp: r.get(1).map_err(internal)?,
        deleted: false,
        fields: serde_json::from_str(&text).unwrap_or_default(),
        parents: vec![],
    }))
}

/// The stored column behind a system field of the queried object.
fn sql_column(column: &Column<'_>) -> Option<&'static str> {
    if column.via.is_some() || !column.field.system {
        return None;
    }
    Some(match column.field.name {
        "Id" => "id",
        "CreatedDate" => "created_at",
        "IsDeleted" => "is_deleted",
        _ => "modstamp",
    })
}

/// A SQL predicate every row matching `filter` satisfies (None: no cheap
/// one), with its parameters.
fn pushdown(filter: &Filter<'_>, object: &super::schema::SObject) -> Option<(String, Vec<SqlValue>)> {
    let external = |c: &Column<'_>| c.via.is_none() && object.external_id().is_some_and(|f| f.name == c.field.name);
    let ascii_text = |v: &Operand| matches!(v, Operand::Text(t) if t.is_ascii());
    match filter {
        Condition::And(parts) => {
            let pushed: Vec<(String, Vec<SqlValue>)> = parts.iter().filter_map(|p| pushdown(p, object)).collect();
            (!pushed.is_empty()).then(|| join(pushed, " AND "))
        }
        Condition::Or(parts) => {
            let pushed: Option<Vec<(String, Vec<SqlValue>)>> = parts.iter().map(|p| pushdown(p, object)).collect();
            pushed.map(|p| join(p, " OR "))
        }
        Condition::Compare { field, op, value } => match (sql_column(field), value) {
            (Some(c @ ("modstamp" | "created_at")), Operand::Instant(ms)) => {
                Some((format!("{c} * 1000 {} ?", Op::text(*op)), vec![SqlValue::Integer(*ms)]))
            }
            (Some(c @ ("modstamp" | "created_at")), Operand::Span(from, to)) => {
                let (from, to) = (SqlValue::Integer(*from), SqlValue::Integer(*to));
                Some(match op {
                    Op::Eq => (format!("{c} * 1000 >= ? AND {c} * 1000 < ?"), vec![from, to]),
                    Op::Ne => (format!("{c} * 1000 < ? OR {c} * 1000 >= ?"), vec![from, to]),
                    Op::Lt => (format!("{c} * 1000 < ?"), vec![from]),
                    Op::Le => (format!("{c} * 1000 < ?"), vec![to]),
                    Op::Gt => (format!("{c} * 1000 >= ?"), vec![to]),
                    Op::Ge => (format!("{c} * 1000 >= ?"), vec![from]),
                })
            }
            (Some("id"), Operand::Id(id)) => {
                Some((format!("id {} ?", Op::text(*op)), vec![SqlValue::Text(id.clone())]))
            }
            (Some("is_deleted"), Operand::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => {
                Some((format!("is_deleted {} ?", Op::text(*op)), vec![SqlValue::Integer(i64::from(*b))]))
            }
            (None, Operand::Text(t)) if *op == Op::Eq && external(field) && t.is_ascii() => {
                Some(("ext_id = ? COLLATE NOCASE".into(), vec![SqlValue::Text(t.clone())]))
            }
            _ => None,
        },
        Condition::In { field, negated: false, values } => {
            let marks = vec!["?"; values.len()].join(", ");
            if sql_column(field) == Some("id") && values.iter().all(|v| matches!(v, Operand::Id(_))) {
                let ids = values.iter().filter_map(|v| if let Operand::Id(id) = v { Some(id.clone()) } else { None });
                Some((format!("id IN ({marks})"), ids.map(SqlValue::Text).collect()))
            } else if external(field) && values.iter().all(ascii_text) {
                let keys = values.iter().filter_map(|v| if let Operand::Text(t) = v { Some(t.clone()) } else { None });
                Some((format!("ext_id COLLATE NOCASE IN ({marks})"), keys.map(SqlValue::Text).collect()))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn join(parts: Vec<(String, Vec<SqlValue>)>, with: &str) -> (String, Vec<SqlValue>) {
    let mut sql = Vec::with_capacity(parts.len());
    let mut values = Vec::new();
    for (s, v) in parts {
        sql.push(format!("({s})"));
        values.extend(v);
    }
    (sql.join(with), values)
}

#[cfg(test)]
mod tests;
