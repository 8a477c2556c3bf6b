//! SOQL against the simulated org (`query` and `queryAll`): parse, check
//! against the schema, read the matching rows, answer the first page and
//! keep the rest behind a query locator that `nextRecordsUrl` names.
//!
//! Conditions on Id and the external id pick rows by the table's indexes,
//! conditions on system columns (Id, the audit dates, IsDeleted) are checked
//! before a row's fields are parsed, and an ORDER BY of system columns is
//! sorted on them alone, so a keyset page over many records parses only
//! what it returns; the full condition is always evaluated on each row.

mod error;
mod eval;
mod lex;
mod parse;
mod plan;

use super::store::{Org, RequestError};
use super::table::{Record, Table};
use eval::Row;
use lex::Op;
use parse::{Condition, Selection};
use plan::{Column, Filter, Operand, Plan};
use serde_json::{Value, json};
use std::cmp::Ordering;
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
        select(&org.table, &plan, call)
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
fn select(table: &Table, plan: &Plan<'_>, call: &QueryCall<'_>) -> Selected {
    let object = plan.object;
    let mut slots: Vec<usize> = match plan.filter.as_ref().and_then(|f| indexed(f, object, table)) {
        Some(slots) => slots,
        None => table.of_object(object.name).map(|(s, _)| s).collect(),
    };
    slots.retain(|&s| {
        table.get(s).is_some_and(|r| {
            r.sobject == object.name
                && (call.all_rows || !r.deleted)
                && plan.filter.as_ref().is_none_or(|f| admits(f, object, r))
        })
    });
    // Sorted on the stored columns when the ORDER BY names only those (a
    // stable sort: ties, and no ORDER BY, follow creation order, as the
    // in-memory sort does), so a LIMIT stops the reading early.
    let system_order: Option<Vec<(&'static str, bool)>> =
        plan.order.iter().map(|o| sql_column(&o.field).map(|c| (c, o.descending))).collect();
    if let Some(keys) = system_order.as_ref().filter(|k| !k.is_empty()) {
        slots.sort_by(|&a, &b| match (table.get(a), table.get(b)) {
            (Some(a), Some(b)) => stored_order(keys, a, b),
            _ => Ordering::Equal,
        });
    }
    let in_order = system_order.is_some();
    let wanted = plan.limit.map(|l| plan.offset.saturating_add(l)).filter(|_| in_order);

    let lookups = plan.lookups();
    let mut parents: HashMap<String, Option<Rc<Row>>> = HashMap::new();
    let mut hits: Vec<Row> = Vec::new();
    for record in slots.iter().filter_map(|&s| table.get(s)) {
        if wanted.is_some_and(|w| hits.len() >= w) {
            break;
        }
        let mut row = row_of(record);
        for lookup in &lookups {
            let parent = match row.fields.get(lookup.name).and_then(Value::as_str) {
                None => None,
                Some(pid) => match parents.get(pid) {
                    Some(p) => p.clone(),
                    None => {
                        let p = table.by_id(pid).filter(|r| !r.deleted).map(|r| Rc::new(row_of(r)));
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
    match &plan.select {
        Selection::Count => Selected::Count(chosen.count()),
        Selection::Fields(columns) => {
            Selected::Rows(chosen.map(|row| eval::render(plan.object, columns, &row, call.version)).collect())
        }
    }
}

/// A stored record as the evaluator reads it (its parents not yet attached).
fn row_of(record: &Record) -> Row {
    Row {
        id: record.id.clone(),
        created: record.created,
        modstamp: record.modstamp,
        deleted: record.deleted,
        fields: serde_json::from_str(&record.fields).unwrap_or_default(),
        parents: Vec::new(),
    }
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

fn stored_order(keys: &[(&'static str, bool)], a: &Record, b: &Record) -> Ordering {
    for &(column, descending) in keys {
        let o = match column {
            "id" => a.id.cmp(&b.id),
            "created_at" => a.created.cmp(&b.created),
            "is_deleted" => a.deleted.cmp(&b.deleted),
            _ => a.modstamp.cmp(&b.modstamp),
        };
        let o = if descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn is_external(object: &super::schema::SObject, c: &Column<'_>) -> bool {
    c.via.is_none() && object.external_id().is_some_and(|f| f.name == c.field.name)
}

/// The rows, in creation order, that an index says may match `filter`: it
/// pins Id or the external id (None: it does not, read them all).
fn indexed(filter: &Filter<'_>, object: &super::schema::SObject, table: &Table) -> Option<Vec<usize>> {
    let mut slots: Vec<usize> = match filter {
        Condition::And(parts) => return parts.iter().find_map(|p| indexed(p, object, table)),
        Condition::Or(parts) => {
            let each: Option<Vec<Vec<usize>>> = parts.iter().map(|p| indexed(p, object, table)).collect();
            each?.concat()
        }
        Condition::Compare { field, op: Op::Eq, value } => match (sql_column(field), value) {
            (Some("id"), Operand::Id(id)) => table.slot(id).into_iter().collect(),
            (None, Operand::Text(t)) if is_external(object, field) && t.is_ascii() => {
                table.with_ext(object.name, t).to_vec()
            }
            _ => return None,
        },
        Condition::In { field, negated: false, values } => {
            let mut slots = Vec::new();
            for v in values {
                match (sql_column(field), v) {
                    (Some("id"), Operand::Id(id)) => slots.extend(table.slot(id)),
                    (None, Operand::Text(t)) if is_external(object, field) && t.is_ascii() => {
                        slots.extend_from_slice(table.with_ext(object.name, t))
                    }
                    _ => return None,
                }
            }
            slots
        }
        _ => return None,
    };
    slots.sort_unstable();
    slots.dedup();
    Some(slots)
}

/// Whether `record` may match `filter`, judged on its stored columns alone
/// (true whenever they cannot tell), before its fields are parsed.
fn admits(filter: &Filter<'_>, object: &super::schema::SObject, record: &Record) -> bool {
    match filter {
        Condition::And(parts) => parts.iter().all(|p| admits(p, object, record)),
        Condition::Or(parts) => parts.iter().any(|p| admits(p, object, record)),
        Condition::Compare { field, op, value } => match (sql_column(field), value) {
            (Some(c @ ("modstamp" | "created_at")), Operand::Instant(ms)) => op.holds(stamp_ms(record, c).cmp(ms)),
            (Some(c @ ("modstamp" | "created_at")), Operand::Span(from, to)) => {
                op.holds_in_span(stamp_ms(record, c), *from, *to)
            }
            (Some("id"), Operand::Id(id)) => op.holds(record.id.as_str().cmp(id.as_str())),
            (Some("is_deleted"), Operand::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => op.holds(record.deleted.cmp(b)),
            (None, Operand::Text(t)) if *op == Op::Eq && is_external(object, field) && t.is_ascii() => {
                record.ext_id.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(t))
            }
            _ => true,
        },
        Condition::In { field, negated: false, values } => match sql_column(field) {
            Some("id") if values.iter().all(|v| matches!(v, Operand::Id(_))) => {
                values.iter().any(|v| matches!(v, Operand::Id(id) if *id == record.id))
            }
            None if is_external(object, field)
                && values.iter().all(|v| matches!(v, Operand::Text(t) if t.is_ascii())) =>
            {
                let ext = record.ext_id.as_deref().unwrap_or_default();
                record.ext_id.is_some()
                    && values.iter().any(|v| matches!(v, Operand::Text(t) if t.eq_ignore_ascii_case(ext)))
            }
            _ => true,
        },
        _ => true,
    }
}

fn stamp_ms(record: &Record, column: &str) -> i64 {
    (if column == "created_at" { record.created } else { record.modstamp }) * 1000
}

#[cfg(test)]
mod tests;
