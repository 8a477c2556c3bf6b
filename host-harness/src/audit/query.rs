//! Reading the audit trail back for `connector audit`: filters (every value
//! a bound parameter), a page of the newest rows, one record's history, and
//! every matching row streamed one at a time.

use anyhow::{Context, Result, bail};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One stored audit row, as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub tenant: String,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub kind: String,
    pub action: String,
    pub direction: String,
    pub netsuite_id: String,
    pub salesforce_id: Option<String>,
    pub outcome: String,
    /// The mapping rules that fired, as the component wrote them (JSON).
    pub transformations: String,
    pub error: Option<String>,
}

/// The transformations' two columns last (see [`super::transformations_at`]).
const COLUMNS: &str = concat!(
    "seq, tenant, run_id, at, kind, action, direction, netsuite_id, salesforce_id, outcome, error, ",
    super::transformation_columns!()
);

fn record(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        tenant: r.get(1)?,
        run_id: r.get(2)?,
        at: r.get(3)?,
        kind: r.get(4)?,
        action: r.get(5)?,
        direction: r.get(6)?,
        netsuite_id: r.get(7)?,
        salesforce_id: r.get(8)?,
        outcome: r.get(9)?,
        error: r.get(10)?,
        transformations: super::transformations_at(r, 11)?,
    })
}

/// The filters `audit list` and `audit export` take, as typed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Another tenant of the same database (the config's by default).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only the rows of this run (e.g. run-1764600000-0a1b2c3d).
    #[arg(long)]
    pub run: Option<String>,
    /// customer, contact or vendor.
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub netsuite_id: Option<String>,
    #[arg(long)]
    pub salesforce_id: Option<String>,
    /// write, bulk-write, skip-unchanged, defer, replay, delete, ... (README, Audit).
    #[arg(long)]
    pub action: Option<String>,
    /// created, updated, unchanged, failed, deferred, deleted, ...
    #[arg(long)]
    pub outcome: Option<String>,
    /// Rows at or after this RFC 3339 time (e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Rows before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

/// Checked filters: only rows matching every one given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant: String,
    pub run_id: Option<String>,
    /// A kind's name as stored (`customer`, ...).
    pub kind: Option<String>,
    pub netsuite_id: Option<String>,
    pub salesforce_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// RFC 3339 in UTC as stored (`store::utc_text`), inclusive.
    pub since: Option<String>,
    /// RFC 3339 in UTC as stored, exclusive.
    pub until: Option<String>,
}

/// A kind as the audit stores it, from what a person typed.
pub fn kind_name(typed: &str) -> Result<&'static str> {
    Ok(crate::scheduler::kind_name(crate::scheduler::parse_kind(typed)?))
}

/// An audit action as stored, from what a person typed.
fn action_name(typed: &str) -> Result<String> {
    let typed = typed.trim();
    match netsuite_salesforce::model::AuditAction::ALL.iter().find(|a| a.as_str().eq_ignore_ascii_case(typed)) {
        Some(a) => Ok(a.as_str().to_string()),
        None => {
            let all: Vec<&str> = netsuite_salesforce::model::AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            bail!("--action `{typed}` is not an audit action: use one of {}", all.join(", "))
        }
    }
}

/// A NetSuite id as the audit stores it: `011` is record 11, as change
/// events and `replay --record` read it. Other text (a Salesforce id that
/// names a record created there) is kept as typed.
pub fn netsuite_id_text(typed: &str) -> String {
    let typed = typed.trim();
    netsuite_salesforce::netsuite::suiteql::internal_id(typed).map_or_else(|_| typed.to_string(), |n| n.to_string())
}

/// A Salesforce id as the audit stores it: the 18-character form, also
/// for the 15-character one the Salesforce UI shows.
pub fn salesforce_id_text(typed: &str) -> String {
    let typed = typed.trim();
    netsuite_salesforce::salesforce::ids::full_id(typed).unwrap_or_else(|| typed.to_string())
}

/// The outcomes tenant `tenant`'s audit rows hold, sorted.
pub fn outcomes(conn: &Connection, tenant: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT outcome FROM audit WHERE tenant = ?1 ORDER BY outcome")?;
    let rows = stmt.query_map([tenant], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Refuses a `--run` the tenant never had: a mistyped id would otherwise
/// list or export nothing, successfully.
pub fn ensure_run_known(conn: &Connection, filter: &AuditFilter) -> Result<()> {
    let Some(run) = &filter.run_id else { return Ok(()) };
    let known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE tenant = ?1 AND run_id = ?2)
             OR EXISTS (SELECT 1 FROM audit WHERE tenant = ?1 AND run_id = ?2)",
        rusqlite::params![filter.tenant, run],
        |r| r.get(0),
    )?;
    anyhow::ensure!(
        known,
        "no run `{run}` of tenant `{}` in the run log: `connector status` shows the last run, `connector audit \
         list` every row with its run id",
        filter.tenant
    );
    Ok(())
}

/// An RFC 3339 time from a flag, in UTC.
fn utc_time(flag: &str, value: &str) -> Result<String> {
    let t = OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|e| {
        anyhow::anyhow!(
            "{flag} `{value}` is not an RFC 3339 time ({e}): write it as 2026-12-01T00:00:00Z or \
             2026-12-01T09:30:00+02:00"
        )
    })?;
    // Stored times end at microseconds: a bound between two is the next
    // one, so `--since` keeps rows at or after it and `--until` rows before.
    let below = t.nanosecond() % 1000;
    let t = match below {
        0 => t,
        _ => t.checked_add(time::Duration::nanoseconds(i64::from(1000 - below))).unwrap_or(t),
    };
    Ok(crate::store::utc_text(t))
}

impl FilterArgs {
    /// Checks the flags; `tenant` is the config's, used unless `--tenant` names another.
    pub fn filter(self, tenant: &str) -> Result<AuditFilter> {
        let non_empty = |flag: &str, v: Option<String>| -> Result<Option<String>> {
            match v {
                Some(v) if v.trim().is_empty() => bail!("{flag} is empty: give a value or leave the flag out"),
                v => Ok(v),
            }
        };
        let since = self.since.as_deref().map(|v| utc_time("--since", v)).transpose()?;
        let until = self.until.as_deref().map(|v| utc_time("--until", v)).transpose()?;
        if let (Some(s), Some(u)) = (&self.since, &self.until)
            && OffsetDateTime::parse(s.trim(), &Rfc3339)? >= OffsetDateTime::parse(u.trim(), &Rfc3339)?
        {
            bail!("--since `{s}` is not before --until `{u}`: no row can match; swap them or widen the range");
        }
        let kind = match self.kind {
            Some(k) => Some(kind_name(&k).context("--kind")?.to_string()),
            None => None,
        };
        Ok(AuditFilter {
            tenant: non_empty("--tenant", self.tenant)?.unwrap_or_else(|| tenant.to_string()),
            run_id: non_empty("--run", self.run)?,
            kind,
            netsuite_id: non_empty("--netsuite-id", self.netsuite_id)?.map(|id| netsuite_id_text(&id)),
            salesforce_id: non_empty("--salesforce-id", self.salesforce_id)?.map(|id| salesforce_id_text(&id)),
            action: non_empty("--action", self.action)?.map(|a| action_name(&a)).transpose()?,
            outcome: non_empty("--outcome", self.outcome)?.map(|o| o.trim().to_ascii_lowercase()),
            since,
            until,
        })
    }
}

impl AuditFilter {
    /// The WHERE clause (fixed text) and its bound values.
    fn clause(&self) -> (String, Vec<Value>) {
        let mut terms: Vec<String> = vec!["tenant = ?".into()];
        let mut values: Vec<Value> = vec![Value::Text(self.tenant.clone())];
        let mut add = |term: &str, value: &Option<String>| {
            if let Some(v) = value {
                terms.push(term.into());
                values.push(Value::Text(v.clone()));
            }
        };
        add("run_id = ?", &self.run_id);
        add("kind = ?", &self.kind);
        add("netsuite_id = ?", &self.netsuite_id);
        add("salesforce_id = ?", &self.salesforce_id);
        add("action = ?", &self.action);
        add("outcome = ?", &self.outcome);
        // Stored times and these bounds share one width (`store::utc_text`),
        // so text order is time order and audit_by_time answers.
        add("at >= ?", &self.since);
        add("at < ?", &self.until);
        if self.netsuite_id.is_some() && self.kind.is_none() {
            // A NetSuite id without its kind: naming every kind lets the
            // (tenant, kind, netsuite_id) index answer instead of a scan.
            let kinds = netsuite_salesforce::model::RecordKind::ALL;
            terms.push(format!("kind IN ({})", vec!["?"; kinds.len()].join(", ")));
            values.extend(kinds.iter().map(|k| Value::Text(k.as_str().to_string())));
        }
        (terms.join(" AND "), values)
    }
}

/// The most rows one `audit list` shows; more is an export.
pub const MAX_PAGE: u32 = 10_000;

/// A page of matching rows, newest first: at most `limit`, all older than
/// row `before` when given (the last row's `seq` of the previous page).
pub fn list(conn: &Connection, filter: &AuditFilter, limit: u32, before: Option<i64>) -> Result<Vec<AuditRecord>> {
    if limit == 0 || limit > MAX_PAGE {
        bail!("--limit {limit}: give 1 to {MAX_PAGE}; for more rows use `connector audit export`");
    }
    let (sql, values) = page_statement(filter, limit, before);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), record)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn page_statement(filter: &AuditFilter, limit: u32, before: Option<i64>) -> (String, Vec<Value>) {
    let (mut clause, mut values) = filter.clause();
    if let Some(before) = before {
        clause.push_str(" AND seq < ?");
        values.push(Value::Integer(before));
    }
    values.push(Value::Integer(limit.into()));
    (format!("SELECT {COLUMNS} FROM audit WHERE {clause} ORDER BY seq DESC LIMIT ?"), values)
}

/// Calls `each` with every matching row, oldest first, one row in memory at
/// a time; returns how many there were.
pub fn for_each(
    conn: &Connection,
    filter: &AuditFilter,
    mut each: impl FnMut(&AuditRecord) -> Result<()>,
) -> Result<u64> {
    let (clause, values) = filter.clause();
    let sql = format!("SELECT {COLUMNS} FROM audit WHERE {clause} ORDER BY seq");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(values))?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        each(&record(row)?)?;
        n += 1;
    }
    Ok(n)
}

/// Which record `audit show` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A NetSuite record: kind and internal id.
    NetSuite { kind: &'static str, id: String },
    /// A Salesforce record id.
    Salesforce(String),
}

impl RecordKey {
    /// `kind:id`, e.g. `customer:42`.
    pub fn parse(text: &str) -> Result<RecordKey> {
        let Some((kind, id)) = text.split_once(':') else {
            bail!(
                "`{text}` is not a record: write it as kind:id with the NetSuite id (e.g. customer:42), or use --salesforce-id"
            );
        };
        if id.trim().is_empty() {
            bail!("`{text}` names no NetSuite id: write it as kind:id (e.g. customer:42)");
        }
        let kind = kind_name(kind).with_context(|| format!("record `{text}`"))?;
        Ok(RecordKey::NetSuite { kind, id: netsuite_id_text(id) })
    }
}

/// Every audit row of one record across all runs, oldest first: the rows
/// naming it by the id given, and those naming it by its id on the other
/// side (a Salesforce id it was written to, or the NetSuite record a
/// Salesforce record was created as).
pub fn history(conn: &Connection, tenant: &str, key: &RecordKey) -> Result<Vec<AuditRecord>> {
    let (netsuite, salesforce): (Vec<(String, String)>, Vec<String>) = match key {
        RecordKey::NetSuite { kind, id } => {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT salesforce_id FROM audit
                 WHERE tenant = ?1 AND kind = ?2 AND netsuite_id = ?3 AND salesforce_id IS NOT NULL",
            )?;
            let ids = stmt.query_map(params![tenant, kind, id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            (vec![(kind.to_string(), id.clone())], ids)
        }
        RecordKey::Salesforce(id) => {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT kind, netsuite_id FROM audit
                 WHERE tenant = ?1 AND salesforce_id = ?2 AND netsuite_id <> ''",
            )?;
            let pairs = stmt
                .query_map(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            (pairs, vec![id.clone()])
        }
    };
    // One indexed query per id, merged in order (a row named both ways once).
    let mut rows: BTreeMap<i64, AuditRecord> = BTreeMap::new();
    let mut by_netsuite = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE tenant = ?1 AND kind = ?2 AND netsuite_id = ?3 ORDER BY seq"
    ))?;
    for (kind, id) in &netsuite {
        for row in by_netsuite.query_map(params![tenant, kind, id], record)? {
            let row = row?;
            rows.insert(row.seq, row);
        }
    }
    let mut by_salesforce = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE tenant = ?1 AND salesforce_id = ?2 ORDER BY seq"
    ))?;
    for id in &salesforce {
        for row in by_salesforce.query_map(params![tenant, id], record)? {
            let row = row?;
            rows.insert(row.seq, row);
        }
    }
    Ok(rows.into_values().collect())
}

#[cfg(test)]
mod tests;
