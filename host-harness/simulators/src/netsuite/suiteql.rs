//! Runs the SuiteQL the connector sends against the simulated account. The
//! query really executes (translated only where Oracle SQL and SQLite
//! differ), so a wrong WHERE or ORDER BY returns wrong rows, as in NetSuite.

use super::db::preference_date;
use regex::Regex;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// NetSuite serves at most this many rows of one query across all pages.
pub const RESULT_CEILING: u64 = 100_000;

/// NetSuite serves at most this many pages of one query.
pub const PAGE_CEILING: u64 = 1_000;

/// The rows a query paged `limit` at a time can reach: 100,000, or fewer
/// when a page is smaller than 100 rows (no page past the thousandth).
pub fn result_ceiling(limit: u64) -> u64 {
    RESULT_CEILING.min(PAGE_CEILING * limit)
}

pub struct QueryPage {
    /// The page's rows as a JSON array, written straight from SQLite (lone
    /// surrogates still marked; [`serialize_page`] writes their escapes).
    pub items_json: String,
    pub count: u64,
    pub total: u64,
}

impl QueryPage {
    /// The rows as JSON objects (for the simulator's own lookups and tests).
    pub fn items(&self) -> Vec<Map<String, Value>> {
        serde_json::from_str(&self.items_json).unwrap_or_default()
    }
}

/// A query NetSuite would refuse, with NetSuite's wording.
#[derive(Debug)]
pub struct InvalidQuery(pub String);

/// `BUILTIN.DF(alias.field)` or `BUILTIN.DF(field)`.
static BUILTIN_DF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)BUILTIN\.DF\(\s*(?:([a-z_][a-z0-9_]*)\.)?([a-z_][a-z0-9_]*)\s*\)").unwrap());
/// A table in a FROM or JOIN, and its alias if it has one (a keyword after
/// the table is no alias).
static FROM_TABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)(?:\s+(?:AS\s+)?([a-z_][a-z0-9_]*))?").unwrap()
});
const NOT_ALIASES: [&str; 20] = [
    "where",
    "left",
    "right",
    "inner",
    "outer",
    "full",
    "cross",
    "join",
    "on",
    "order",
    "group",
    "having",
    "union",
    "minus",
    "intersect",
    "except",
    "fetch",
    "offset",
    "start",
    "connect",
];
/// The current date and time, and `± n` or `± n/m` days from it.
static SYSDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:SYSDATE|SYSTIMESTAMP|CURRENT_DATE|CURRENT_TIMESTAMP)\b(?:\s*([+-])\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?)?",
    )
    .unwrap()
});
/// Oracle's row limiting clause (12c): `OFFSET m ROWS`, `FETCH FIRST n ROWS ONLY`.
static OFFSET_ROWS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bOFFSET\s+(\d+)\s+ROWS?\b(?:\s+FETCH\s+(?:FIRST|NEXT)\s+(\d+)\s+ROWS?\s+ONLY\b)?").unwrap()
});
static FETCH_FIRST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bFETCH\s+(?:FIRST|NEXT)\s+(\d+)\s+ROWS?\s+ONLY\b").unwrap());
static ROWNUM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\bROWNUM\b").unwrap());
/// `ROWNUM <= n` (or `<`, `=`) as a condition of its own in a WHERE clause:
/// after WHERE and before AND or the clause's end, or after AND.
static ROWNUM_CONDITION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\bWHERE\s+ROWNUM\s*(<=|<|=)\s*(\d+)(\s+AND\b)?|\s+AND\s+ROWNUM\s*(<=|<|=)\s*(\d+))\b").unwrap()
});
static STRING_LITERAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"'(?:[^']|'')*'").unwrap());
/// `ORDER BY TO_CHAR(x.col, 'YYYY-MM-DD HH24:MI:SS')`: this account keeps
/// whole seconds, so the text orders exactly as the column does.
static ORDER_BY_SECOND_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)ORDER BY TO_CHAR\(\s*([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)\s*,\s*'YYYY-MM-DD HH24:MI:SS'\s*\)")
        .unwrap()
});
/// A name called as a function, or SQLite's own tables and table-valued
/// pragmas anywhere.
static CALLED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\b([a-z_][a-z0-9_]*)\s*\(").unwrap());
static SQLITE_TABLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\b(?:sqlite_|pragma_)[a-z0-9_]*").unwrap());
/// SQLite's built-in functions that Oracle SQL does not have (SuiteQL's
/// ones, such as SUBSTR, INSTR or COALESCE, run as they are).
const SQLITE_ONLY_FUNCTIONS: [&str; 34] = [
    "changes",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "ifnull",
    "iif",
    "last_insert_rowid",
    "likelihood",
    "likely",
    "load_extension",
    "octet_length",
    "printf",
    "quote",
    "random",
    "randomblob",
    "substring",
    "total_changes",
    "typeof",
    "unhex",
    "unicode",
    "unlikely",
    "zeroblob",
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
    "group_concat",
    "string_agg",
    "total",
    "pow",
];
static NOT_SUITEQL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\b(LIMIT|PRAGMA|ATTACH|GLOB)\b").unwrap());

/// The tables and column a referenced field's display value comes from
/// (a contact's company is a customer or a vendor).
fn display_table(field: &str) -> Option<&'static [(&'static str, &'static str)]> {
    Some(match field {
        "terms" => &[("term", "name")],
        "subsidiary" => &[("subsidiary", "name")],
        "currency" => &[("currency", "name")],
        "category" => &[("customercategory", "name")],
        "entitystatus" => &[("entitystatus", "name")],
        "salesrep" => &[("employee", "entityid")],
        "parent" => &[("customer", "entityid")],
        "company" => &[("customer", "entityid"), ("vendor", "entityid")],
        _ => return None,
    })
}

/// `q` with each match of `re` outside string literals replaced by what
/// `f` makes of its captures (read in the masked text: no literal text).
fn replace_outside_literals(
    q: &str,
    re: &Regex,
    mut f: impl FnMut(&regex::Captures<'_>) -> Result<String, InvalidQuery>,
) -> Result<String, InvalidQuery> {
    let masked = mask_literals(q);
    let mut out = String::with_capacity(q.len());
    let mut copied = 0;
    for c in re.captures_iter(&masked) {
        let whole = c.get(0).expect("a match");
        out.push_str(&q[copied..whole.start()]);
        out.push_str(&f(&c)?);
        copied = whole.end();
    }
    out.push_str(&q[copied..]);
    Ok(out)
}

/// The alias (or name) of the table in the query's FROM or JOINs that has
/// column `field`, for `BUILTIN.DF(field)` written without one.
fn owner_of(conn: &Connection, masked: &str, field: &str) -> Option<String> {
    FROM_TABLE.captures_iter(masked).find_map(|c| {
        let table = c[1].to_ascii_lowercase();
        let has = conn
            .prepare_cached("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")
            .and_then(|mut s| s.exists([table.as_str(), &field.to_ascii_lowercase()]))
            .unwrap_or(false);
        let alias = c.get(2).map(|a| a.as_str()).filter(|a| !NOT_ALIASES.contains(&a.to_ascii_lowercase().as_str()));
        has.then(|| alias.map_or(table.clone(), str::to_string))
    })
}

/// `WHERE ROWNUM <= n` (or `AND ROWNUM <= n`) as a LIMIT at the end of its
/// SELECT, taken after that SELECT's ORDER BY; any other ROWNUM is refused.
fn rownum(q: &str) -> Result<String, InvalidQuery> {
    let mut q = q.to_string();
    loop {
        let masked = mask_literals(&q);
        if !ROWNUM.is_match(&masked) {
            return Ok(q);
        }
        let Some(c) = ROWNUM_CONDITION.captures(&masked) else {
            return Err(invalid(
                "ROWNUM is supported here only as a condition ROWNUM <= n, ROWNUM < n or ROWNUM = n ANDed into a \
                 WHERE clause.",
            ));
        };
        let whole = c.get(0).expect("a match");
        let next_word = masked[whole.end()..].trim_start();
        if next_word.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("or"))
            && !next_word.as_bytes().get(2).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            return Err(invalid("ROWNUM is supported here only as a condition ANDed into a WHERE clause, not ORed."));
        }
        let (op, n, and_after) = match c.get(1) {
            Some(op) => (op.as_str(), &c[2], c.get(3).is_some()),
            None => (&c[4], &c[5], false),
        };
        let n: u64 = n.parse().map_err(|_| invalid(format!("Invalid number '{n}'.")))?;
        let rows = match op {
            "<=" => n,
            "<" => n.saturating_sub(1),
            _ => u64::from(n == 1),
        };
        // WHERE ROWNUM <= n AND x: keep the WHERE; WHERE ROWNUM <= n: drop it.
        let kept = if and_after { "WHERE " } else { "" };
        // The end of this SELECT: a closing bracket at its depth, or the end.
        let mut depth = 0i32;
        let end = masked[whole.end()..]
            .bytes()
            .position(|b| {
                match b {
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ => {}
                }
                depth < 0
            })
            .map_or(masked.len(), |i| whole.end() + i);
        q = format!("{}{kept}{} LIMIT {rows}{}", &q[..whole.start()], q[whole.end()..end].trim_end(), &q[end..]);
    }
}

fn invalid(detail: impl std::fmt::Display) -> InvalidQuery {
    InvalidQuery(format!(
        "Invalid search query. Detailed unprocessed description follows. Search error occurred: {detail}"
    ))
}

/// Columns stored as Unix seconds (declared TIMESTAMP in the schema).
const DATE_COLUMNS: [&str; 3] = ["datecreated", "lastmodifieddate", "deleteddate"];

static DATE_COLUMN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)\b(?:[a-z_][a-z0-9_]*\.)?({})\b", DATE_COLUMNS.join("|"))).unwrap());
/// In the masked text (literals' contents as `x`): an operator and a literal after a column ...
static OP_LITERAL_AFTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*(?:<>|!=|<=|>=|=|<|>)\s*('x*')").unwrap());
/// ... or a literal and an operator before it.
static LITERAL_OP_BEFORE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"('x*')\s*(?:<>|!=|<=|>=|=|<|>)\s*$").unwrap());
static BETWEEN_AFTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^\s*(?:NOT\s+)?BETWEEN\s").unwrap());
static LEADING_LITERAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^'x*'").unwrap());
static IN_AFTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^\s*(?:NOT\s+)?IN\s*\(").unwrap());
/// The user's date format preference, M/D/YYYY (zero-padded or not),
/// optionally with the time as NetSuite's default time format writes it.
static PREFERENCE_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))? ?([ap]m))?$").unwrap()
});

/// `q` with each literal's contents replaced by as many `x` bytes: the same
/// byte positions, and no words or brackets inside literals.
fn mask_literals(q: &str) -> String {
    STRING_LITERAL.replace_all(q, |c: &regex::Captures<'_>| format!("'{}'", "x".repeat(c[0].len() - 2))).into_owned()
}

/// A bare literal in the user's date format preference as local Unix
/// seconds, or None when it is not one.
fn preference_literal(text: &str) -> Option<i64> {
    let c = PREFERENCE_DATE.captures(text)?;
    let num = |i: usize| c.get(i).map(|m| m.as_str().parse::<u8>()).transpose().ok().flatten();
    let year: i32 = c[3].parse().ok()?;
    let date = time::Date::from_calendar_date(year, time::Month::try_from(num(1)?).ok()?, num(2)?).ok()?;
    let time = match c.get(7) {
        None => time::Time::MIDNIGHT,
        Some(half) => {
            let hour = num(4)?;
            if !(1..=12).contains(&hour) {
                return None;
            }
            let hour = hour % 12 + if half.as_str().eq_ignore_ascii_case("pm") { 12 } else { 0 };
            time::Time::from_hms(hour, num(5)?, num(6).unwrap_or(0)).ok()?
        }
    };
    Some(time::PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp())
}

/// Where the `AND` that ends a BETWEEN's first operand starts in `rest`:
/// the first one outside brackets, None past the enclosing bracket.
fn top_level_and(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let boundary = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_');
    let mut depth = 0i32;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' if depth == 0 => return None,
            b')' => depth -= 1,
            b'a' | b'A'
                if depth == 0
                    && rest.get(i..i + 3).is_some_and(|w| w.eq_ignore_ascii_case("and"))
                    && boundary(i.checked_sub(1).and_then(|j| bytes.get(j)))
                    && boundary(bytes.get(i + 3)) =>
            {
                return Some(i);
            }
            _ => {}
        }
    }
    None
}

/// Bare string literals compared with a date column (`=`, `<>`, `<`, ...,
/// `BETWEEN`, `IN`), as Unix seconds: NetSuite reads them in the user's date
/// format preference and time zone (`zone` seconds east of UTC), and refuses
/// any other literal there. Anything else is left as it is.
fn date_literals(q: &str, zone: i64) -> Result<String, InvalidQuery> {
    let masked = mask_literals(q);
    // Byte ranges of the literals to replace, quotes included, and their column.
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    for m in DATE_COLUMN.captures_iter(&masked) {
        let (whole, column) = (m.get(0).expect("a match"), m[1].to_ascii_lowercase());
        let after = &masked[whole.end()..];
        if after.starts_with(['(', '.']) {
            continue;
        }
        let mut push = |start: usize, end: usize| found.push((start, end, column.clone()));
        if let Some(lit) = OP_LITERAL_AFTER.captures(after).and_then(|c| c.get(1)) {
            push(whole.end() + lit.start(), whole.end() + lit.end());
        } else if let Some(between) = BETWEEN_AFTER.find(after) {
            // Operands: up to the AND at this depth, then the next operand.
            let from = whole.end() + between.end();
            let rest = &masked[from..];
            let Some(and) = top_level_and(rest) else { continue };
            let first = rest[..and].trim();
            if first.starts_with('\'') && first.ends_with('\'') && first.len() >= 2 {
                let start = from + rest[..and].find('\'').expect("a quote");
                push(start, start + first.len());
            }
            let second = &rest[and + 3..];
            let skipped = second.len() - second.trim_start().len();
            if let Some(lit) = LEADING_LITERAL.find(&second[skipped..]) {
                let start = from + and + 3 + skipped;
                push(start, start + lit.end());
            }
        } else if let Some(open) = IN_AFTER.find(after) {
            // The list's items at its own depth; only bare literals among them.
            let from = whole.end() + open.end();
            let (mut depth, mut item_start) = (0i32, from);
            for (i, b) in masked.bytes().enumerate().skip(from) {
                let end_of_item = match b {
                    b'(' => {
                        depth += 1;
                        false
                    }
                    b')' if depth > 0 => {
                        depth -= 1;
                        false
                    }
                    b')' => true,
                    b',' => depth == 0,
                    _ => false,
                };
                if end_of_item {
                    let item = &masked[item_start..i];
                    let trimmed = item.trim();
                    if trimmed.len() >= 2 && LEADING_LITERAL.find(trimmed).is_some_and(|m| m.len() == trimmed.len()) {
                        let start = item_start + item.find('\'').expect("a quote");
                        push(start, start + trimmed.len());
                    }
                    item_start = i + 1;
                    if b == b')' {
                        break;
                    }
                }
            }
        } else if let Some(lit) = LITERAL_OP_BEFORE.captures(&masked[..whole.start()]).and_then(|c| c.get(1)) {
            push(lit.start(), lit.end());
        }
    }
    if found.is_empty() {
        return Ok(q.to_string());
    }
    found.sort_by_key(|(start, _, _)| *start);
    found.dedup_by_key(|(start, _, _)| *start);
    let mut out = String::with_capacity(q.len());
    let mut copied = 0;
    for (start, end, column) in found {
        let literal = &q[start..end];
        let text = literal[1..literal.len() - 1].replace("''", "'");
        let Some(local) = preference_literal(&text) else {
            return Err(invalid(format!(
                "Unparseable date {literal} compared with {column}: a date literal must be in the user's date \
                 format preference, M/D/YYYY (for example 1/31/2026, or 1/31/2026 2:05 pm with a time), or be \
                 converted with TO_DATE or TO_TIMESTAMP and an explicit format."
            )));
        };
        out.push_str(&q[copied..start]);
        out.push_str(&format!("({})", local - zone));
        copied = end;
    }
    out.push_str(&q[copied..]);
    Ok(out)
}

/// What a query is read against besides the data: the user's time zone
/// (seconds east of UTC) and the time now (Unix seconds, for SYSDATE).
#[derive(Debug, Clone, Copy, Default)]
pub struct Evaluation {
    pub zone: i64,
    pub now: i64,
}

fn translate(conn: &Connection, q: &str, at: Evaluation) -> Result<String, InvalidQuery> {
    let trimmed = q.trim();
    if !trimmed.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("select")) {
        return Err(invalid("Only SELECT queries are supported."));
    }
    let without_literals = STRING_LITERAL.replace_all(trimmed, "''");
    if let Some(m) = NOT_SUITEQL.find(&without_literals) {
        return Err(invalid(format!("Invalid or unsupported keyword '{}'.", m.as_str())));
    }
    if without_literals.contains(';') {
        return Err(invalid("Unexpected ';'."));
    }
    // SQLite's own functions and tables are no part of NetSuite.
    for c in CALLED.captures_iter(&without_literals) {
        let name = c[1].to_ascii_lowercase();
        if name.starts_with("sqlite_") || name.starts_with("json") || SQLITE_ONLY_FUNCTIONS.contains(&name.as_str()) {
            return Err(invalid(format!("Unknown identifier '{}'.", &c[1])));
        }
    }
    if let Some(m) = SQLITE_TABLE.find(&without_literals) {
        return Err(invalid(format!("Record '{}' was not found.", m.as_str())));
    }
    let q = date_literals(trimmed, at.zone)?;
    let q = replace_outside_literals(&q, &SYSDATE, |c| {
        let days = match (c.get(1), c.get(2)) {
            (Some(sign), Some(n)) => {
                let n: f64 = n.as_str().parse().unwrap_or(0.0);
                let per: f64 = c.get(3).and_then(|m| m.as_str().parse().ok()).unwrap_or(1.0);
                if per == 0.0 {
                    return Err(invalid("ORA-01476: divisor is equal to zero"));
                }
                if sign.as_str() == "-" { -n / per } else { n / per }
            }
            _ => 0.0,
        };
        // Beyond Oracle's dates (year 9999): refused, not wrapped.
        let seconds = days * 86400.0;
        match (seconds.abs() < 1e12).then(|| at.now.checked_add(seconds.round() as i64)).flatten() {
            Some(t) => Ok(format!("({t})")),
            None => Err(invalid("ORA-01841: (full) year must be between -4713 and +9999, and not be 0")),
        }
    })?;
    let q = replace_outside_literals(&q, &OFFSET_ROWS, |c| {
        Ok(format!("LIMIT {} OFFSET {}", c.get(2).map_or("-1", |n| n.as_str()), &c[1]))
    })?;
    let q = replace_outside_literals(&q, &FETCH_FIRST, |c| Ok(format!("LIMIT {}", &c[1])))?;
    let q = rownum(&q)?;
    let masked = mask_literals(&q);
    let rewritten = replace_outside_literals(&q, &BUILTIN_DF, |c| {
        let field = &c[2];
        let Some(sources) = display_table(&field.to_ascii_lowercase()) else {
            return Err(invalid(format!("BUILTIN.DF is not available for field '{field}'.")));
        };
        let owner = match c.get(1) {
            Some(alias) => alias.as_str().to_string(),
            None => owner_of(conn, &masked, field).ok_or_else(|| invalid(format!("Unknown identifier '{field}'.")))?,
        };
        // The looked-up table under an alias of its own, so that the field
        // is read from the query's table even where both have that column.
        let lookups: Vec<String> = sources
            .iter()
            .map(|(table, column)| {
                format!("(SELECT builtin_df.{column} FROM {table} builtin_df WHERE builtin_df.id = {owner}.{field})")
            })
            .collect();
        Ok(match &lookups[..] {
            [one] => one.clone(),
            many => format!("COALESCE({})", many.join(", ")),
        })
    })?;
    // Ordering by the column lets SQLite read the (column, id) index from
    // the keyset's lower bound on, as Oracle would, instead of scanning
    // from the oldest row for every page.
    Ok(ORDER_BY_SECOND_TEXT.replace_all(&rewritten, "ORDER BY $1").into_owned())
}

/// A failure SQLite reports, in NetSuite's words: unknown columns,
/// functions and tables are named as NetSuite names them, the simulator's
/// own ORA- errors pass, and anything else says only that the query is
/// invalid, with none of SQLite's wording.
fn sqlite_error(e: rusqlite::Error) -> InvalidQuery {
    let text = match e {
        rusqlite::Error::SqlInputError { msg, .. } => msg,
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg,
        rusqlite::Error::UserFunctionError(e) => e.to_string(),
        other => other.to_string(),
    };
    let unsupported = |why: &str| invalid(format!("Invalid or unsupported search: {why}."));
    if let Some(col) = text.strip_prefix("no such column: ") {
        invalid(format!("Unknown identifier '{col}'."))
    } else if let Some(function) = text.strip_prefix("no such function: ") {
        invalid(format!("Unknown identifier '{function}'."))
    } else if let Some(table) = text.strip_prefix("no such table: ") {
        invalid(format!("Record '{}' was not found.", table.strip_prefix("main.").unwrap_or(table)))
    } else if let Some(function) = text.strip_prefix("wrong number of arguments to function ") {
        unsupported(&format!("wrong number of arguments for {}", function.trim_end_matches("()")))
    } else if let Some(col) = text.strip_prefix("ambiguous column name: ") {
        invalid(format!("Ambiguous identifier '{col}'."))
    } else if let Some(near) = text.strip_prefix("near \"").and_then(|t| t.strip_suffix("\": syntax error")) {
        unsupported(&format!("unexpected '{near}'"))
    } else if text == "incomplete input" {
        unsupported("the query ends unexpectedly")
    } else if text.starts_with("ORA-") {
        invalid(text)
    } else {
        invalid("Invalid or unsupported search.")
    }
}

pub fn run(conn: &Connection, q: &str, limit: u64, offset: u64) -> Result<QueryPage, InvalidQuery> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    run_as_role(conn, q, limit, offset, &[], Evaluation { zone: 0, now })
}

/// Runs a query for a role that cannot see `denied` tables: NetSuite then
/// reports the record type as not found. Raw datetime columns print in the
/// user's time zone, and SYSDATE is `at.now`.
pub fn run_as_role(
    conn: &Connection,
    q: &str,
    limit: u64,
    offset: u64,
    denied: &[String],
    at: Evaluation,
) -> Result<QueryPage, InvalidQuery> {
    let zone = at.zone;
    let lowered = q.to_ascii_lowercase();
    for table in denied {
        let pattern = Regex::new(&format!(r"\b{}\b", regex::escape(table))).expect("escaped table name");
        if pattern.is_match(&lowered) {
            return Err(invalid(format!("Record '{table}' was not found.")));
        }
    }
    let sql = translate(conn, q, at)?;
    let mut stmt =
        conn.prepare(&format!("SELECT * FROM ({sql}) LIMIT {limit} OFFSET {offset}")).map_err(sqlite_error)?;
    let columns: Vec<(String, bool)> = stmt
        .columns()
        .map(|c| {
            let name = c.name().to_ascii_lowercase();
            // The key as JSON text, with its comma and colon, written once per page.
            let key = format!(",{}:", Value::String(name));
            (key, c.decl_type().is_some_and(|t| t.eq_ignore_ascii_case("TIMESTAMP")))
        })
        .collect();
    let mut rows = stmt.query([]).map_err(sqlite_error)?;
    // Rows go straight to JSON text: building a map per row cost more than the query.
    let mut items: Vec<u8> = b"[".to_vec();
    let mut count = 0u64;
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        if count > 0 {
            items.push(b',');
        }
        count += 1;
        items.extend_from_slice(br#"{"links":[]"#);
        for (i, (key, is_timestamp)) in columns.iter().enumerate() {
            // Every value is a string; NULL columns are left out.
            let text = match row.get_ref(i).map_err(sqlite_error)? {
                ValueRef::Null | ValueRef::Blob(_) => continue,
                ValueRef::Integer(n) if *is_timestamp => preference_date(n + zone),
                ValueRef::Integer(n) => n.to_string(),
                ValueRef::Real(r) => r.to_string(),
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(text) => {
                        items.extend_from_slice(key.as_bytes());
                        push_json_string(&mut items, text);
                        continue;
                    }
                    Err(_) => wtf8_text(t),
                },
            };
            items.extend_from_slice(key.as_bytes());
            push_json_string(&mut items, &text);
        }
        items.push(b'}');
        if count == 1 {
            // Room for the page from its first row (growing a megabyte by
            // doubling copied it twice over), at most 8 MiB up front.
            let rows = usize::try_from(limit.saturating_sub(1)).unwrap_or(usize::MAX);
            items.reserve(items.len().saturating_mul(rows).min(8 << 20));
        }
    }
    items.push(b']');
    let items = String::from_utf8(items).expect("serde_json writes UTF-8");
    drop(rows);
    drop(stmt);
    // A first page that is not full holds every row: no count needed.
    let total = if offset == 0 && count < limit {
        count
    } else {
        let total: i64 = conn
            .prepare_cached(&count_sql(conn, &sql))
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sqlite_error)?;
        total.max(0) as u64
    };
    Ok(QueryPage { items_json: items, count, total })
}

/// A query counting the rows `sql` returns. For a plain `SELECT list FROM
/// ... WHERE ... ORDER BY ...` that is the rows of its FROM and WHERE, less
/// the left joins that cannot change their number (on the joined table's
/// primary key, and read nowhere but in the select list): a large first
/// sync's pages each counted every remaining row through both address
/// joins, now from an index alone. Anything else is counted as it is.
fn count_sql(conn: &Connection, sql: &str) -> String {
    static NOT_PLAIN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(DISTINCT|UNIQUE|GROUP|HAVING|UNION|INTERSECT|MINUS|EXCEPT|FETCH|OFFSET|LIMIT|OVER|ROWNUM|COUNT|SUM|AVG|MIN|MAX|LISTAGG|STDDEV|VARIANCE|MEDIAN)\b",
        )
        .unwrap()
    });
    static LEFT_JOIN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\s+LEFT\s+(?:OUTER\s+)?JOIN\s+([a-z_][a-z0-9_]*)\s+([a-z_][a-z0-9_]*)\s+ON\s+([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\s*=\s*[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*\s*$",
        )
        .unwrap()
    });
    let whole = format!("SELECT COUNT(*) FROM ({sql})");
    // Literals blanked (same length): their words and brackets do not count.
    let masked = mask_literals(sql);
    if masked.len() != sql.len() || NOT_PLAIN.is_match(&masked) {
        return whole;
    }
    // Where the top-level clauses start.
    let bytes = masked.as_bytes();
    let word_at = |i: usize, w: &str| {
        let boundary = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_');
        masked.get(i..i + w.len()).is_some_and(|s| s.eq_ignore_ascii_case(w))
            && boundary(i.checked_sub(1).and_then(|j| bytes.get(j)))
            && boundary(bytes.get(i + w.len()))
    };
    let (mut depth, mut from, mut filter, mut order) = (0i32, None, None, None);
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ if depth != 0 => {}
            _ if from.is_none() && word_at(i, "FROM") => from = Some(i),
            _ if from.is_some() && filter.is_none() && word_at(i, "WHERE") => filter = Some(i),
            _ if from.is_some() && word_at(i, "ORDER") => order = Some(i),
            _ => {}
        }
    }
    let Some(from) = from.filter(|_| depth == 0) else { return whole };
    let end = order.unwrap_or(sql.len());
    let filter = filter.unwrap_or(end);
    // Joins one at a time from the last: each is `... LEFT JOIN t a ON a.pk = x.col`.
    let mut joins: Vec<&str> = Vec::new();
    let mut tables = &sql[from + 4..filter];
    while let Some(join) = LEFT_JOIN.captures(tables) {
        let whole_join = join.get(0).expect("a match");
        joins.push(&tables[whole_join.start()..]);
        tables = &tables[..whole_join.start()];
    }
    let mut kept: Vec<&str> = Vec::new();
    let others = |skip: usize| -> String {
        joins.iter().enumerate().filter(|(n, _)| *n != skip).map(|(_, j)| *j).chain([&sql[filter..end]]).collect()
    };
    for (n, join) in joins.iter().enumerate() {
        let c = LEFT_JOIN.captures(join).expect("matched before");
        let (table, alias, on_alias, on_column) = (&c[1], &c[2], &c[3], &c[4]);
        let unique = on_alias.eq_ignore_ascii_case(alias)
            && conn
                .prepare_cached("SELECT name FROM pragma_table_info(?1) WHERE pk = 1")
                .and_then(|mut s| s.query_row([table], |r| r.get::<_, String>(0)))
                .is_ok_and(|pk| pk.eq_ignore_ascii_case(on_column));
        let read = reads_alias(&others(n), alias);
        if !unique || read {
            kept.push(join);
        }
    }
    kept.reverse();
    let parts: Vec<&str> = [tables].into_iter().chain(kept).chain([&sql[filter..end]]).map(str::trim).collect();
    format!("SELECT COUNT(*) FROM {}", parts.join(" ").trim_end())
}

/// Whether `text` reads a column of the table aliased `alias` (`alias.`
/// after anything but a word character, in any case).
fn reads_alias(text: &str, alias: &str) -> bool {
    let (text, needle) = (text.to_ascii_lowercase(), format!("{}.", alias.to_ascii_lowercase()));
    text.match_indices(&needle)
        .any(|(i, _)| text[..i].bytes().next_back().is_none_or(|b| !b.is_ascii_alphanumeric() && b != b'_'))
}

/// `text` as a JSON string (serde_json's escaping, without a Value).
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string serializes");
}

/// Stands in for a lone UTF-16 surrogate until the page is serialized: a
/// noncharacter followed by the code unit in hex.
const SURROGATE_MARK: char = '\u{FDD0}';

/// Text stored as WTF-8 (a lone surrogate encoded like a scalar value, as a
/// Java string holding one ends up in NetSuite): each surrogate becomes a
/// mark that [`serialize_page`] turns into the `\udXXX` escape NetSuite
/// sends; other invalid bytes become U+FFFD.
fn wtf8_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).expect("checked valid"));
                if let [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] = after {
                    let unit = 0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
                    out.push(SURROGATE_MARK);
                    out.push_str(&format!("{unit:04x}"));
                    rest = &after[3..];
                } else {
                    out.push(char::REPLACEMENT_CHARACTER);
                    rest = &after[e.error_len().unwrap_or(after.len())..];
                }
            }
        }
    }
    out
}

/// The page's JSON text with lone surrogates written as the escapes
/// NetSuite sends (`"\ud800"`), which no Rust string can hold.
pub fn serialize_page(text: String) -> String {
    if !text.contains(SURROGATE_MARK) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == SURROGATE_MARK {
            let unit: String = chars.by_ref().take(4).collect();
            out.push_str("\\u");
            out.push_str(&unit);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netsuite::db;

    #[test]
    fn queries_run_with_netsuite_value_shapes() {
        let conn = db::open().unwrap();
        conn.execute(
            "INSERT INTO customer (entityid, companyname, isperson, isinactive, terms, datecreated, lastmodifieddate)
             VALUES ('C1', 'Acme', 'F', 'F', 2, 1767225600, 1767225600)",
            [],
        )
        .unwrap();
        let page = run(
            &conn,
            "SELECT c.id, c.companyname, c.isinactive, c.email, c.lastmodifieddate, BUILTIN.DF(c.terms) AS TermsName, \
             TO_CHAR(c.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lm FROM customer c ORDER BY c.id",
            1000,
            0,
        )
        .unwrap();
        assert_eq!(page.total, 1);
        let items = page.items();
        let row = &items[0];
        assert_eq!(row["id"], "1");
        assert_eq!(row["isinactive"], "F");
        assert_eq!(row["termsname"], "Net 30");
        assert_eq!(row["lastmodifieddate"], "1/1/2026");
        assert_eq!(row["lm"], "2026-01-01 00:00:00");
        assert!(!row.contains_key("email"));
        assert_eq!(row["links"], Value::Array(vec![]));
    }

    #[test]
    fn totals_leave_out_joins_that_cannot_change_them() {
        let conn = db::open().unwrap();
        let q = "SELECT c.id, (SELECT name FROM term WHERE id = c.terms) AS t, 'FROM (x' AS odd, ba.city, sa.city \
                 FROM customer c LEFT JOIN customeraddressbookentityaddress ba ON ba.nkey = c.defaultbillingaddress \
                 LEFT JOIN customeraddressbookentityaddress sa ON sa.nkey = c.defaultshippingaddress \
                 LEFT JOIN customeraddressbook ab ON ab.entity = c.id \
                 WHERE c.companyname = 'ORDER BY' AND sa.city IS NULL ORDER BY c.id";
        // `ba` goes (its key, read only by the list); `sa` is read by the
        // filter and `ab` is not joined on its key: both stay.
        assert_eq!(
            count_sql(&conn, q),
            "SELECT COUNT(*) FROM customer c \
             LEFT JOIN customeraddressbookentityaddress sa ON sa.nkey = c.defaultshippingaddress \
             LEFT JOIN customeraddressbook ab ON ab.entity = c.id WHERE c.companyname = 'ORDER BY' AND sa.city IS NULL"
        );
        assert!(reads_alias(" WHERE (BA.city = 'x')", "ba") && !reads_alias(" WHERE xba.city = 1", "ba"));
        for q in [
            "SELECT DISTINCT c.email FROM customer c",
            "SELECT c.terms, COUNT(*) FROM customer c GROUP BY c.terms",
            "SELECT c.id FROM customer c UNION SELECT v.id FROM vendor v",
        ] {
            assert_eq!(count_sql(&conn, q), format!("SELECT COUNT(*) FROM ({q})"));
        }
        assert_eq!(
            count_sql(
                &conn,
                "SELECT c.id, ba.city FROM customer c LEFT JOIN customeraddressbookentityaddress ba ON ba.nkey = c.defaultbillingaddress WHERE c.id > 0 ORDER BY c.id"
            ),
            "SELECT COUNT(*) FROM customer c WHERE c.id > 0"
        );
        // Either way the total is the number of rows the query returns.
        for (n, email) in ["a@x", "a@x", "b@x"].into_iter().enumerate() {
            conn.execute(
                "INSERT INTO customer (entityid, companyname, isperson, isinactive, email, datecreated, lastmodifieddate)
                 VALUES (?1, 'Co', 'F', 'F', ?2, 1767225600, 1767225600)",
                rusqlite::params![format!("C{n}"), email],
            )
            .unwrap();
        }
        let total = |q: &str| run(&conn, q, 1, 0).unwrap().total;
        assert_eq!(
            total(
                "SELECT c.id, ba.city FROM customer c LEFT JOIN customeraddressbookentityaddress ba \
                 ON ba.nkey = c.defaultbillingaddress WHERE c.email = 'a@x' ORDER BY c.id"
            ),
            2
        );
        assert_eq!(total("SELECT DISTINCT c.email FROM customer c"), 2);
    }

    #[test]
    fn bare_date_literals_are_the_columns_declared_timestamp() {
        let conn = db::open().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND p.type = 'TIMESTAMP' ORDER BY p.name",
            )
            .unwrap();
        let declared: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        let mut known = DATE_COLUMNS.to_vec();
        known.sort();
        assert_eq!(declared, known);
        // Literals that are not compared with a date column stay as they are.
        let q = "SELECT 'x' AS lastmodifieddate FROM customer c WHERE c.companyname = '1/1/2026' \
                 AND TO_CHAR(c.lastmodifieddate, 'YYYY') = '2026' AND c.datecreated IN (TO_DATE('1', 'DD'), '1/2/2026')";
        let out = date_literals(q, 0).unwrap();
        assert!(out.contains("TO_DATE('1', 'DD'), (1767312000))") && out.contains("'1/1/2026' AND TO_CHAR"), "{out}");
        assert!(
            date_literals("SELECT id FROM customer WHERE (lastmodifieddate BETWEEN 1 AND 2) AND x = 'a'", 0).is_ok()
        );
        assert_eq!(preference_literal("12/31/2025 12:05 am"), Some(1767139500));
        assert_eq!(preference_literal("1/1/2026 12:00 pm"), Some(1767268800));
        assert_eq!(preference_literal("1/1/2026 13:00 pm"), None);
    }

    #[test]
    fn refusals_use_netsuite_wording() {
        let conn = db::open().unwrap();
        let e = run(&conn, "SELECT foo FROM customer", 10, 0).err().unwrap().0;
        assert!(e.contains("Unknown identifier 'foo'"), "{e}");
        let e = run(&conn, "SELECT id FROM nosuch", 10, 0).err().unwrap().0;
        assert!(e.contains("Record 'nosuch' was not found"), "{e}");
        let e = run(&conn, "SELECT id FROM customer WHERE id IN (SELECT id, id FROM vendor)", 10, 0).err().unwrap().0;
        assert!(e.ends_with("Search error occurred: Invalid or unsupported search."), "{e}");
        let e = run(&conn, "SELECT TO_CHAR(datecreated, 'Q') AS q FROM customer", 10, 0);
        assert!(e.is_ok(), "no rows: the format is not read");
        conn.execute(
            "INSERT INTO customer (entityid, isperson, isinactive, datecreated, lastmodifieddate) VALUES ('C', 'F', 'F', 0, 0)",
            [],
        )
        .unwrap();
        let e = run(&conn, "SELECT TO_CHAR(datecreated, 'Q') AS q FROM customer", 10, 0).err().unwrap().0;
        assert!(e.ends_with("ORA-01821: date format not recognized: Q"), "{e}");
        assert!(run(&conn, "SELECT 'sqlite_master' AS t, 'typeof(x)' AS f FROM customer", 10, 0).is_ok());
        assert!(run(&conn, "DELETE FROM customer", 10, 0).is_err());
        assert!(run(&conn, "SELECT id FROM customer LIMIT 5", 10, 0).is_err());
        assert!(run(&conn, "SELECT id FROM customer; DELETE FROM customer", 10, 0).is_err());
        assert!(run(&conn, "SELECT 'a;LIMIT' AS x FROM customer", 10, 0).is_ok());
    }
}
