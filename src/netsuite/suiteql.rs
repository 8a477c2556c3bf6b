//! SuiteQL: query text, the request that carries it, and the response shape.
//!
//! Incremental reads use keyset pagination on (lastmodifieddate, id) with
//! offset 0, so no run ever meets the 100,000-row offset ceiling. Timestamps
//! go through TO_TIMESTAMP/TO_CHAR with explicit formats, never the NetSuite
//! user's date-format preference. Every value placed in a query is either a
//! validated number, a validated timestamp, or a quoted literal.

use super::surrogates;
use crate::columns::{Columns, ColumnsBuilder};
use crate::http::{HttpRequest, Method};
use crate::model::{ConnectorError, Cursor, NetSuiteRecord, RecordKind, Result};
use serde::Deserialize;
use std::borrow::Cow;
use std::rc::Rc;
use time::PrimitiveDateTime;
use time::macros::format_description;

/// The one timestamp format used both ways.
pub const TIMESTAMP_FORMAT: &str = "YYYY-MM-DD HH24:MI:SS";
/// Where a first run starts.
pub const EPOCH: &str = "1970-01-01 00:00:00";

/// An Oracle string literal: single quotes, inner quotes doubled. NUL cannot
/// be represented and is refused.
pub fn quote_literal(value: &str) -> Result<String> {
    if value.contains('\0') {
        return Err(ConnectorError::Config(
            "a value for a SuiteQL query contains a NUL character, which SuiteQL cannot carry".into(),
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// A NetSuite internal id: decimal digits only, so it can be placed bare.
pub fn internal_id(value: &str) -> Result<u64> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConnectorError::Config(format!(
            "`{}` is not a NetSuite internal id (expected decimal digits)",
            value.escape_debug()
        )));
    }
    value.parse().map_err(|_| ConnectorError::Config(format!("`{value}` is out of range for a NetSuite internal id")))
}

fn parse_timestamp(value: &str) -> Result<PrimitiveDateTime> {
    PrimitiveDateTime::parse(value, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .ok()
        .filter(|t| (1..=9999).contains(&t.year()))
        .ok_or_else(|| {
            ConnectorError::Config(format!(
                "`{}` is not a timestamp in the form YYYY-MM-DD HH24:MI:SS (years 0001 to 9999)",
                value.escape_debug()
            ))
        })
}

/// Whether a record's time leaves a cursor a second past it that is still
/// a timestamp (records are read up to year 9998).
pub fn steppable(time: PrimitiveDateTime) -> bool {
    time.year() <= 9998
}

/// `value` as a cursor's time, checked (it goes into later queries).
pub fn cursor_time(value: &str) -> Result<String> {
    parse_timestamp(value).map(format_timestamp)
}

pub fn format_timestamp(value: PrimitiveDateTime) -> String {
    value
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .expect("formatting a valid PrimitiveDateTime cannot fail")
}

fn to_timestamp(value: &str) -> Result<String> {
    let checked = format_timestamp(parse_timestamp(value)?);
    Ok(format!("TO_TIMESTAMP({}, '{TIMESTAMP_FORMAT}')", quote_literal(&checked)?))
}

/// What the connector reads of one record type.
struct Table {
    /// The record type's own table, and its alias in `from`.
    name: &'static str,
    alias: &'static str,
    /// In the order of the output names: NetSuite answers each item's
    /// columns in select order, so a row arrives sorted and building its
    /// columns is one pass instead of a sort (3.5% of a first sync's
    /// component work). Any order reads the same rows.
    select: &'static str,
    from: &'static str,
}

const CUSTOMER: Table = Table {
    name: "customer",
    alias: "c",
    select: "ba.addr1 AS billaddr1, ba.addr2 AS billaddr2, ba.addressee AS billaddressee, ba.city AS billcity, \
             ba.country AS billcountry, ba.state AS billstate, ba.zip AS billzip, c.companyname, c.email, \
             c.entityid, c.firstname, c.id, c.isinactive, c.isperson, \
             TO_CHAR(c.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lastmodified, c.lastname, c.phone, \
             sa.addr1 AS shipaddr1, sa.addr2 AS shipaddr2, sa.addressee AS shipaddressee, sa.city AS shipcity, \
             sa.country AS shipcountry, sa.state AS shipstate, sa.zip AS shipzip, c.subsidiary, c.terms, \
             BUILTIN.DF(c.terms) AS termsname",
    from: "customer c \
           LEFT JOIN customeraddressbookentityaddress ba ON ba.nkey = c.defaultbillingaddress \
           LEFT JOIN customeraddressbookentityaddress sa ON sa.nkey = c.defaultshippingaddress",
};

const CONTACT: Table = Table {
    name: "contact",
    alias: "ct",
    select: "ct.company, pc.id AS companycustomer, pv.id AS companyvendor, ct.email, ct.entityid, ct.firstname, \
             ct.id, ct.isinactive, TO_CHAR(ct.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lastmodified, \
             ct.lastname, ct.phone, ct.title",
    // The company is an entity: a customer or a vendor (or neither, for other entity types).
    from: "contact ct LEFT JOIN customer pc ON pc.id = ct.company LEFT JOIN vendor pv ON pv.id = ct.company",
};

const VENDOR: Table = Table {
    name: "vendor",
    alias: "v",
    select: "ba.addr1 AS billaddr1, ba.addr2 AS billaddr2, ba.addressee AS billaddressee, ba.city AS billcity, \
             ba.country AS billcountry, ba.state AS billstate, ba.zip AS billzip, v.companyname, v.email, \
             v.entityid, v.id, v.isinactive, TO_CHAR(v.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lastmodified, \
             v.phone, v.terms, BUILTIN.DF(v.terms) AS termsname",
    from: "vendor v \
           LEFT JOIN vendoraddressbookentityaddress ba ON ba.nkey = v.defaultbillingaddress",
};

fn table(kind: RecordKind) -> &'static Table {
    match kind {
        RecordKind::Customer => &CUSTOMER,
        RecordKind::Contact => &CONTACT,
        RecordKind::Vendor => &VENDOR,
    }
}

/// `(time, id) > after` on the second-truncated time: rows in later seconds,
/// or in the cursor's second with a greater id.
///
/// Ordering and comparison work on the second-truncated timestamp, so rows
/// with sub-second differences inside one second are still ordered by id
/// and none is skipped or repeated across pages. The lower bound on the time
/// stands alone (`time >= since AND (time >= next OR id > after)`, the same
/// rows as `time >= next OR (time >= since AND id > after)`), so a database
/// reads from an index range instead of scanning from the oldest row.
fn keyset(time: &str, id: &str, after: Option<&Cursor>) -> Result<(String, String)> {
    let (since, after_id) = match after {
        Some(c) => (c.last_modified.as_str(), internal_id(&c.id)?),
        None => (EPOCH, 0),
    };
    let next_second = second_after(since)?;
    let filter = format!(
        "{time} >= {since} AND ({time} >= {next} OR {id} > {after_id})",
        next = to_timestamp(&next_second)?,
        since = to_timestamp(since)?,
    );
    let order = format!("TO_CHAR({time}, '{TIMESTAMP_FORMAT}'), {id}");
    Ok((filter, order))
}

/// The output names of the columns the connector always selects.
pub fn base_columns(kind: RecordKind) -> Vec<&'static str> {
    // Items end at commas outside parentheses (TO_CHAR's format is an argument).
    let mut depth = 0i32;
    table(kind)
        .select
        .split(|c: char| {
            depth += i32::from(c == '(') - i32::from(c == ')');
            c == ',' && depth == 0
        })
        .map(|item| {
            let item = item.trim();
            match item.rsplit_once(" AS ") {
                Some((_, alias)) => alias.trim(),
                None => item.rsplit_once('.').map_or(item, |(_, c)| c),
            }
        })
        .collect()
}

/// The select list: the base columns plus `extra` columns of the record's
/// own table (custom fields a mapping reads, e.g. custentity_segment).
fn select_list(kind: RecordKind, extra: &[String]) -> Result<String> {
    let t = table(kind);
    let base = base_columns(kind);
    let mut select = t.select.to_string();
    for col in extra.iter().filter(|c| !base.contains(&c.as_str())) {
        if !crate::mapping::file::valid_column(col) {
            return Err(ConnectorError::Config(format!("`{}` is not a SuiteQL column name", col.escape_debug())));
        }
        select.push_str(&format!(", {}.{col}", t.alias));
    }
    Ok(select)
}

/// Rows of `kind` changed strictly after `after`, oldest first, with the
/// `extra` columns a mapping reads.
pub fn changed_query(kind: RecordKind, after: Option<&Cursor>, extra: &[String]) -> Result<String> {
    let t = table(kind);
    let a = t.alias;
    let (filter, order) = keyset(&format!("{a}.lastmodifieddate"), &format!("{a}.id"), after)?;
    Ok(format!("SELECT {} FROM {} WHERE {filter} ORDER BY {order}", select_list(kind, extra)?, t.from))
}

/// Every row of `kind` after internal id `after` (up to `upto`, inclusive,
/// when given), in id order: a first sync reads this way, in the order the
/// account stores its rows, instead of one random seek per row in
/// lastmodifieddate order.
pub fn scan_query(kind: RecordKind, after: u64, upto: Option<u64>, extra: &[String]) -> Result<String> {
    let t = table(kind);
    let upto = upto.map(|u| format!(" AND {}.id <= {u}", t.alias)).unwrap_or_default();
    Ok(format!(
        "SELECT {} FROM {} WHERE {a}.id > {after}{upto} ORDER BY {a}.id",
        select_list(kind, extra)?,
        t.from,
        a = t.alias
    ))
}

/// The highest internal id among `kind`'s rows: one row, its `highest`
/// absent when there are none.
pub fn highest_id_query(kind: RecordKind) -> String {
    let t = table(kind);
    format!("SELECT MAX({a}.id) AS highest FROM {} {a}", t.name, a = t.alias)
}

/// The newest lastmodifieddate among `kind`'s rows, in the cursor's form:
/// one row, its `lastmodified` absent when there are none.
pub fn newest_change_query(kind: RecordKind) -> String {
    let t = table(kind);
    format!(
        "SELECT TO_CHAR(MAX({a}.lastmodifieddate), '{TIMESTAMP_FORMAT}') AS lastmodified FROM {} {a}",
        t.name,
        a = t.alias
    )
}

/// The record of `kind` changed last (by instant, not by the text of its
/// time) with its lastmodifieddate in the cursor's form (asked for one
/// row): the user's offset from UTC now is measured on it.
pub fn zone_probe_query(kind: RecordKind) -> String {
    let t = table(kind);
    format!(
        "SELECT {a}.id, TO_CHAR({a}.lastmodifieddate, '{TIMESTAMP_FORMAT}') AS lastmodified FROM {} {a} WHERE \
         {a}.lastmodifieddate IS NOT NULL ORDER BY {a}.lastmodifieddate DESC, {a}.id DESC",
        t.name,
        a = t.alias
    )
}

/// The lastmodifieddate of record `id` of `kind`, in the cursor's form.
pub fn modified_query(kind: RecordKind, id: &str) -> Result<String> {
    let t = table(kind);
    Ok(format!(
        "SELECT TO_CHAR({a}.lastmodifieddate, '{TIMESTAMP_FORMAT}') AS lastmodified FROM {} {a} WHERE {a}.id = {}",
        t.name,
        internal_id(id)?,
        a = t.alias
    ))
}

/// Seconds from `earlier` to `later`, both in the cursor's form.
pub fn seconds_between(earlier: &str, later: &str) -> Result<i64> {
    Ok((parse_timestamp(later)? - parse_timestamp(earlier)?).whole_seconds())
}

/// One page of payment terms after internal id `after`, in id order: an
/// account's terms can outnumber a page, and paged SuiteQL needs a unique
/// order to miss none.
pub fn terms_query(after: u64) -> String {
    format!("SELECT t.id, t.name FROM term t WHERE t.id > {after} ORDER BY t.id")
}

/// The internal id of the `record_type` record (its table in SuiteQL, e.g.
/// `vendor`) that carries external id `external_id`.
pub fn external_id_query(record_type: &str, external_id: &str) -> Result<String> {
    if record_type.is_empty() || !record_type.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ConnectorError::Config(format!(
            "`{}` is not a NetSuite record type SuiteQL can read (letters only, such as `vendor`)",
            record_type.escape_debug()
        )));
    }
    let table = record_type.to_ascii_lowercase();
    Ok(format!("SELECT r.id FROM {table} r WHERE r.externalid = {}", quote_literal(external_id)?))
}

/// NetSuite's record type name in `deletedrecord.type`, compared in lower
/// case: the reference lists the column, not the case of its values.
fn deleted_type(kind: RecordKind) -> &'static str {
    kind.as_str()
}

/// Deletions of `kind` after `after`, oldest first; `lastmodified` is the
/// deletion time.
pub fn deleted_query(kind: RecordKind, after: Option<&Cursor>) -> Result<String> {
    let (filter, order) = keyset("d.deleteddate", "d.recordid", after)?;
    Ok(format!(
        "SELECT d.recordid AS id, TO_CHAR(d.deleteddate, '{TIMESTAMP_FORMAT}') AS lastmodified FROM deletedrecord d \
         WHERE LOWER(d.type) = {} AND {filter} ORDER BY {order}",
        quote_literal(deleted_type(kind))?
    ))
}

/// A cursor moved back by `secs`, to re-read a window for late commits.
pub fn rewind(cursor: &Cursor, secs: u32) -> Result<Cursor> {
    // Not before the first timestamp there is (no record is older).
    let first =
        PrimitiveDateTime::new(time::Date::MIN.replace_year(1).unwrap_or(time::Date::MIN), time::Time::MIDNIGHT);
    let then = parse_timestamp(&cursor.last_modified)?;
    let earlier = then.checked_sub(time::Duration::seconds(i64::from(secs))).map_or(first, |t| t.max(first));
    Ok(Cursor { last_modified: format_timestamp(earlier), id: "0".into() })
}

/// A cursor past every row of `cursor`'s second.
pub fn past_second(cursor: &Cursor) -> Result<Cursor> {
    Ok(Cursor { last_modified: second_after(&cursor.last_modified)?, id: "0".into() })
}

/// The timestamp one second after `timestamp`, in the cursor's form.
fn second_after(timestamp: &str) -> Result<String> {
    let later = parse_timestamp(timestamp)?.checked_add(time::Duration::SECOND);
    later.map(format_timestamp).ok_or_else(|| ConnectorError::Config(format!("no second follows {timestamp}")))
}

/// Rows of `kind` by internal id (at most a page of ids).
pub fn ids_query(kind: RecordKind, ids: &[&str], extra: &[String]) -> Result<String> {
    let t = table(kind);
    let list = ids.iter().map(|id| internal_id(id).map(|n| n.to_string())).collect::<Result<Vec<_>>>()?;
    Ok(format!(
        "SELECT {} FROM {} WHERE {}.id IN ({}) ORDER BY {}.id",
        select_list(kind, extra)?,
        t.from,
        t.alias,
        list.join(", "),
        t.alias
    ))
}

/// The expression behind `column` of `kind`'s rows: the select list's (for
/// `companyvendor`, the `ct.company` its join reads), or the table's own
/// column of that name.
fn column_expr(kind: RecordKind, column: &str) -> Result<String> {
    let t = table(kind);
    // Items split at top-level commas (TO_CHAR's arguments hold one).
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in t.select.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&t.select[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&t.select[start..]);
    for item in items {
        let item = item.trim();
        let (expr, name) = match item.rsplit_once(" AS ") {
            Some((expr, alias)) => (expr, alias),
            None => (item, item.rsplit_once('.').map_or(item, |(_, c)| c)),
        };
        if name == column {
            // A joined row's id (`pv.id`) is gone once that row is deleted:
            // the column it was joined on still holds it.
            let joined = expr.strip_suffix(".id").and_then(|alias| {
                let on = format!("ON {alias}.id = ");
                let at = t.from.find(&on)? + on.len();
                t.from[at..].split_whitespace().next()
            });
            return Ok(joined.unwrap_or(expr).to_string());
        }
    }
    if !crate::mapping::file::valid_column(column) {
        return Err(ConnectorError::Config(format!("`{}` is not a SuiteQL column name", column.escape_debug())));
    }
    Ok(format!("{}.{column}", t.alias))
}

/// Internal ids of `kind` rows whose `column` holds one of `parents`, after
/// internal id `after`, in id order (paged by id, as `terms_query`).
pub fn children_query(kind: RecordKind, column: &str, parents: &[&str], after: u64) -> Result<String> {
    let t = table(kind);
    let list = parents.iter().map(|id| internal_id(id).map(|n| n.to_string())).collect::<Result<Vec<_>>>()?;
    Ok(format!(
        "SELECT {a}.id FROM {} WHERE {} IN ({}) AND {a}.id > {after} ORDER BY {a}.id",
        t.from,
        column_expr(kind, column)?,
        list.join(", "),
        a = t.alias
    ))
}

/// One row of `kind` by internal id.
pub fn one_query(kind: RecordKind, id: &str, extra: &[String]) -> Result<String> {
    let t = table(kind);
    Ok(format!("SELECT {} FROM {} WHERE {}.id = {}", select_list(kind, extra)?, t.from, t.alias, internal_id(id)?))
}

pub fn suiteql_url(base_url: &str, limit: u32, offset: u32) -> String {
    format!("{base_url}/services/rest/query/v1/suiteql?limit={limit}&offset={offset}")
}

/// POST with `Prefer: transient`; the query travels in a JSON body.
pub fn request(url: &str, query: &str, authorization: String) -> HttpRequest {
    HttpRequest::new(Method::Post, url)
        .header("Authorization", authorization)
        .header("Prefer", "transient")
        .header("Accept", "application/json")
        .json(&serde_json::json!({ "q": query }))
}

#[derive(Debug, Deserialize)]
struct Link {
    rel: String,
    href: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    links: Vec<Link>,
    count: u32,
    has_more: bool,
    #[serde(default)]
    total_results: Option<u32>,
    items: Vec<Row>,
}

/// One item of a page, read straight into column → text (every SuiteQL value
/// is text; NULL columns are left out, so is the per-row `links`), with the
/// columns whose lone surrogates were replaced.
#[derive(Debug)]
struct Row(Columns, Vec<String>);

/// Column names beyond which `shared_name` stops remembering new ones (a
/// mapping selects a few dozen; this only bounds the memory).
const NAMES_KEPT: usize = 1024;

thread_local! {
    /// Column names seen in pages, and where the last one was found.
    static NAMES: std::cell::RefCell<(Vec<Rc<str>>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// The one `Rc` of a column name that every row holding it shares. Rows
/// name their columns in one order, so the search starts after the name
/// found last: one comparison per column, as a rule.
fn shared_name(name: &str) -> Rc<str> {
    NAMES.with_borrow_mut(|(names, next)| {
        let n = names.len();
        for step in 0..n {
            let i = (*next + step) % n;
            if &*names[i] == name {
                *next = i + 1;
                return names[i].clone();
            }
        }
        let shared: Rc<str> = Rc::from(name);
        if n < NAMES_KEPT {
            names.push(shared.clone());
            *next = n + 1;
        }
        shared
    })
}

/// A key of a SuiteQL item, borrowed from the page when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The most room a row reserves up front (beyond it, it grows as needed).
const ROOM_COLUMNS: usize = 256;
const ROOM_BYTES: usize = 16 * 1024;

thread_local! {
    /// Columns and text bytes of the row read last: the next row's room.
    static ROW_SIZE: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Row, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Row;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a SuiteQL result item (an object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Row, A::Error> {
                // Capped: one row with a huge value must not make every
                // later row of the page reserve as much.
                let (columns, bytes) = ROW_SIZE.get();
                let mut row = ColumnsBuilder::with_capacity(columns.min(ROOM_COLUMNS), bytes.min(ROOM_BYTES));
                let mut repaired = Vec::new();
                let mut count = 0;
                while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
                    if key == "links" {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    let start = row.text().len();
                    if !map.next_value_seed(Text(row.text()))? {
                        continue;
                    }
                    let key = match key.bytes().any(|b| b.is_ascii_uppercase()) {
                        true => shared_name(&key.to_ascii_lowercase()),
                        false => shared_name(&key),
                    };
                    if surrogates::marked(&row.text()[start..]) {
                        let text = row.text()[start..].replace(surrogates::MARK, "\u{FFFD}");
                        row.discard(start);
                        row.text().push_str(&text);
                        repaired.push(key.to_string());
                    }
                    row.close(key, start);
                    count += 1;
                }
                ROW_SIZE.set((count, row.text().len()));
                Ok(Row(row.build(), repaired))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A SuiteQL value as text, appended to a row's text: a string as it is,
/// another scalar as JSON writes it. Read straight from the page, without
/// building a `serde_json::Value` (or a `String`) for each of a page's tens
/// of thousands of values. `false`: the value is NULL (nothing appended).
struct Text<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for Text<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Text<'_> {
    fn put(self, v: &str) -> bool {
        self.0.push_str(v);
        true
    }
}

impl<'de> serde::de::Visitor<'de> for Text<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a SuiteQL value")
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<bool, E> {
        Ok(self.put(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<bool, E> {
        Ok(self.put(if v { "true" } else { "false" }))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<bool, E> {
        Ok(self.put(&v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<bool, E> {
        Ok(self.put(&v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<bool, E> {
        Ok(self.put(&serde_json::Value::from(v).to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> std::result::Result<bool, A::Error> {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.put(&value.to_string()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<bool, A::Error> {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(self.put(&value.to_string()))
    }
}

/// One parsed page of SuiteQL rows.
#[derive(Debug)]
pub struct RowPage {
    pub rows: Vec<Columns>,
    /// Per row (same order), the columns whose lone surrogates became U+FFFD.
    pub repaired: Vec<Vec<String>>,
    pub has_more: bool,
    pub total_results: Option<u32>,
    /// The `next` link NetSuite offered, if any.
    pub next_url: Option<String>,
}

/// A page read from its bytes: their UTF-8 checked once, as a whole (serde_json
/// checks each string it reads from bytes, but none it reads from a `str`);
/// bytes that are not UTF-8 are read as bytes, so the error names the place.
fn parse_page(body: &[u8]) -> serde_json::Result<Response> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

pub fn parse_rows(body: &[u8]) -> Result<RowPage> {
    let response: Response = match parse_page(body) {
        Ok(r) => r,
        // Lone surrogates are the one defect a value can bring into an
        // otherwise sound page: repair them rather than lose the page.
        Err(e) => surrogates::repair(body).and_then(|b| parse_page(&b).ok()).ok_or_else(|| {
            ConnectorError::NetSuite(format!(
                "SuiteQL answered 200 with a body that is not a SuiteQL result page ({e})"
            ))
        })?,
    };
    if response.count as usize != response.items.len() {
        return Err(ConnectorError::NetSuite(format!(
            "SuiteQL page says count {} but holds {} items",
            response.count,
            response.items.len()
        )));
    }
    let (rows, repaired) = response.items.into_iter().map(|row| (row.0, row.1)).unzip();
    let next_url = response.links.into_iter().find(|l| l.rel == "next").map(|l| l.href);
    Ok(RowPage { rows, repaired, has_more: response.has_more, total_results: response.total_results, next_url })
}

/// A row as a record; `id` and `lastmodified` must be present.
pub fn to_record(kind: RecordKind, mut row: Columns) -> Result<NetSuiteRecord> {
    let id = row
        .get("id")
        .map(str::to_string)
        .ok_or_else(|| ConnectorError::NetSuite(format!("a {kind} row came back without an id column: {row:?}")))?;
    let last_modified = row
        .remove("lastmodified")
        .ok_or_else(|| ConnectorError::NetSuite(format!("{kind} {id} came back without lastmodifieddate")))?;
    parse_timestamp(&last_modified).ok().filter(|t| steppable(*t)).ok_or_else(|| {
        ConnectorError::NetSuite(format!(
            "{kind} {id} has lastmodifieddate `{last_modified}`, not in the requested YYYY-MM-DD HH24:MI:SS form \
             (years 0001 to 9998): correct the record's dates in NetSuite"
        ))
    })?;
    Ok(NetSuiteRecord { kind, id, last_modified, fields: row })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_found_by_the_column_a_join_reads_and_ids_are_checked() {
        let q = children_query(RecordKind::Contact, "companyvendor", &["7", "12"], 40).unwrap();
        assert!(q.contains("WHERE ct.company IN (7, 12) AND ct.id > 40 ORDER BY ct.id"), "{q}");
        let q = children_query(RecordKind::Contact, "company", &["7"], 0).unwrap();
        assert!(q.contains("WHERE ct.company IN (7)"), "{q}");
        let q = children_query(RecordKind::Contact, "custentity_parent", &["7"], 0).unwrap();
        assert!(q.contains("WHERE ct.custentity_parent IN (7)"), "{q}");
        assert!(children_query(RecordKind::Contact, "company", &["7) OR (1=1"], 0).is_err());
        assert!(children_query(RecordKind::Contact, "x; DROP", &["7"], 0).is_err());
    }

    /// A date at the edge of what dates can hold is an error naming the
    /// record, never a panic stepping a cursor past it (a trap that would
    /// end every run after it).
    #[test]
    fn timestamps_at_the_ends_of_the_calendar_are_refused_not_stepped_past() {
        let row: Columns =
            [("id", "42".to_string()), ("lastmodified", "9999-12-31 23:59:59".into())].into_iter().collect();
        let e = to_record(RecordKind::Customer, row).unwrap_err().to_string();
        assert!(e.contains("customer 42") && e.contains("9999-12-31 23:59:59"), "{e}");
        for bad in ["9999-12-31 23:59:59", "-9999-01-01 00:00:00", "+10000-01-01 00:00:00"] {
            let cursor = Cursor { last_modified: bad.into(), id: "1".into() };
            assert!(past_second(&cursor).is_err(), "{bad}");
            assert!(changed_query(RecordKind::Customer, Some(&cursor), &[]).is_err(), "{bad}");
        }
        // The latest record read leaves a cursor the next run can use.
        let last = Cursor { last_modified: "9998-12-31 23:59:59".into(), id: "1".into() };
        let past = past_second(&last).unwrap();
        assert_eq!(past.last_modified, "9999-01-01 00:00:00");
        assert!(changed_query(RecordKind::Customer, Some(&past), &[]).is_ok());
        assert!(changed_query(RecordKind::Customer, Some(&last), &[]).is_ok());
        let first = Cursor { last_modified: "0001-01-01 00:00:10".into(), id: "1".into() };
        assert_eq!(rewind(&first, u32::MAX).unwrap().last_modified, "0001-01-01 00:00:00");
    }

    #[test]
    fn literals_double_quotes_and_refuse_nul() {
        assert_eq!(quote_literal("O'Brien").unwrap(), "'O''Brien'");
        assert_eq!(quote_literal("a'' OR 1=1 --").unwrap(), "'a'''' OR 1=1 --'");
        assert_eq!(quote_literal("Zürich ✓").unwrap(), "'Zürich ✓'");
        assert!(quote_literal("a\0b").is_err());
    }

    #[test]
    fn rows_in_any_column_order_or_case_read_alike_and_share_their_column_names() {
        let body = br#"{"count":3,"hasMore":false,"items":[
            {"id":"1","companyname":"Acme","lastmodified":"2026-01-01 00:00:00"},
            {"lastmodified":"2026-01-01 00:00:01","CompanyName":"Beta","\u0069d":"2"},
            {"companyname":"Gamma","id":"3","companyname":"Gamma 2","lastmodified":"2026-01-01 00:00:02"}]}"#;
        let page = parse_rows(body).unwrap();
        let names: Vec<Vec<(&str, &str)>> = page.rows.iter().map(|r| r.iter().collect()).collect();
        assert_eq!(names[1], [("companyname", "Beta"), ("id", "2"), ("lastmodified", "2026-01-01 00:00:01")]);
        assert_eq!(names[2][0], ("companyname", "Gamma 2"), "a repeated key keeps its last value, as JSON readers do");
        let ids: Vec<&str> = page.rows.iter().map(|r| r.get("id").unwrap()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert!(Rc::ptr_eq(&shared_name("companyname"), &shared_name("companyname")), "one allocation per name");
    }

    #[test]
    fn ids_must_be_digits() {
        assert_eq!(internal_id("42").unwrap(), 42);
        for bad in ["", "4 2", "1 OR 1=1", "-1", "1e3", "٣", "99999999999999999999"] {
            assert!(internal_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_cursor_values_never_reach_the_query() {
        let evil = Cursor { last_modified: "2024-01-01 00:00:00' OR '1'='1".into(), id: "1".into() };
        assert!(changed_query(RecordKind::Customer, Some(&evil), &[]).is_err());
        let evil = Cursor { last_modified: "2024-01-01 00:00:00".into(), id: "1) OR (1=1".into() };
        assert!(changed_query(RecordKind::Customer, Some(&evil), &[]).is_err());
        assert!(one_query(RecordKind::Contact, "1; DELETE", &[]).is_err());
        assert!(changed_query(RecordKind::Contact, None, &["x FROM y --".to_string()]).is_err());
    }

    #[test]
    fn keyset_query_continues_after_the_cursor() {
        let cursor = Cursor { last_modified: "2026-03-31 23:59:59".into(), id: "17".into() };
        let q = changed_query(RecordKind::Contact, Some(&cursor), &["custentity_role".into(), "email".into()]).unwrap();
        assert!(q.contains(", ct.custentity_role FROM"), "{q}");
        assert_eq!(q.matches("ct.email").count(), 1, "{q}");
        assert!(
            q.contains(
                "WHERE ct.lastmodifieddate >= TO_TIMESTAMP('2026-03-31 23:59:59', 'YYYY-MM-DD HH24:MI:SS') \
             AND (ct.lastmodifieddate >= TO_TIMESTAMP('2026-04-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS') OR ct.id > 17)"
            ),
            "{q}"
        );
        assert!(q.ends_with("ORDER BY TO_CHAR(ct.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'), ct.id"), "{q}");
        let first = changed_query(RecordKind::Customer, None, &[]).unwrap();
        for kind in RecordKind::ALL {
            let names = base_columns(kind);
            assert!(names.is_sorted(), "{kind:?}'s select list is in name order: {names:?}");
            assert!(names.contains(&"lastmodified") && !names.contains(&"lastmodifieddate"), "{names:?}");
        }
        assert!(base_columns(RecordKind::Customer).contains(&"billcity"));
        assert!(base_columns(RecordKind::Customer).contains(&"termsname"));
        assert!(first.contains("c.id > 0"), "{first}");
    }

    #[test]
    fn a_scan_reads_in_id_order_after_a_validated_id() {
        let first = scan_query(RecordKind::Customer, 0, None, &[]).unwrap();
        assert!(first.ends_with("WHERE c.id > 0 ORDER BY c.id"), "{first}");
        assert!(first.contains("LEFT JOIN customeraddressbookentityaddress ba"), "{first}");
        let next = scan_query(RecordKind::Contact, 1200, Some(5000), &["custentity_role".into()]).unwrap();
        assert!(next.contains(", ct.custentity_role FROM contact ct"), "{next}");
        assert!(next.ends_with("WHERE ct.id > 1200 AND ct.id <= 5000 ORDER BY ct.id"), "{next}");
        assert_eq!(highest_id_query(RecordKind::Contact), "SELECT MAX(ct.id) AS highest FROM contact ct");
        assert_eq!(
            newest_change_query(RecordKind::Vendor),
            "SELECT TO_CHAR(MAX(v.lastmodifieddate), 'YYYY-MM-DD HH24:MI:SS') AS lastmodified FROM vendor v"
        );
    }

    #[test]
    fn records_by_id_take_only_validated_ids() {
        let q = ids_query(RecordKind::Vendor, &["3", "17"], &[]).unwrap();
        assert!(q.ends_with("WHERE v.id IN (3, 17) ORDER BY v.id"), "{q}");
        assert!(ids_query(RecordKind::Vendor, &["3", "4) OR (1=1"], &[]).is_err());
    }

    #[test]
    fn deletions_are_read_by_type_with_the_same_keyset() {
        let q = deleted_query(RecordKind::Vendor, None).unwrap();
        assert!(
            q.contains("WHERE LOWER(d.type) = 'vendor' AND d.deleteddate >= TO_TIMESTAMP('1970-01-01 00:00:00'"),
            "{q}"
        );
        assert!(q.ends_with("ORDER BY TO_CHAR(d.deleteddate, 'YYYY-MM-DD HH24:MI:SS'), d.recordid"), "{q}");
    }

    #[test]
    fn rewind_moves_back_and_restarts_the_second() {
        let c = Cursor { last_modified: "2026-01-01 00:05:00".into(), id: "99".into() };
        assert_eq!(rewind(&c, 600).unwrap(), Cursor { last_modified: "2025-12-31 23:55:00".into(), id: "0".into() });
    }

    #[test]
    fn rows_parse_with_lower_case_keys_and_without_links() {
        let body = br#"{"links":[{"rel":"next","href":"https://x/services/rest/query/v1/suiteql?limit=2&offset=2"}],
            "count":2,"hasMore":true,"offset":0,"totalResults":5,
            "items":[{"links":[],"id":"1","companyname":"Acme","lastmodified":"2026-01-01 10:00:00","phone":null},
                     {"links":[],"ID":"2","lastmodified":"2026-01-01 10:00:01"}]}"#;
        let page = parse_rows(body).unwrap();
        assert!(page.has_more);
        assert_eq!(page.total_results, Some(5));
        assert_eq!(page.next_url.as_deref(), Some("https://x/services/rest/query/v1/suiteql?limit=2&offset=2"));
        assert_eq!(page.rows[0].get("companyname").unwrap(), "Acme");
        assert!(!page.rows[0].contains_key("phone") && !page.rows[0].contains_key("links"));
        let rec = to_record(RecordKind::Customer, page.rows[1].clone()).unwrap();
        assert_eq!((rec.id.as_str(), rec.last_modified.as_str()), ("2", "2026-01-01 10:00:01"));
    }

    #[test]
    fn values_that_are_not_strings_read_as_their_json_text() {
        let body = br#"{"links":[],"count":1,"hasMore":false,"items":[{"links":[],"id":1,"n":-5,"f":1.5,"b":true,
            "a":[1,"x"],"o":{"k":null},"z":null,"s":"tab\there"}]}"#;
        let row = &parse_rows(body).unwrap().rows[0];
        let text = |k: &str| row.get(k);
        assert_eq!([text("id"), text("n"), text("f"), text("b")], [Some("1"), Some("-5"), Some("1.5"), Some("true")]);
        assert_eq!([text("a"), text("o"), text("s")], [Some(r#"[1,"x"]"#), Some(r#"{"k":null}"#), Some("tab\there")]);
        assert_eq!(text("z"), None);
    }

    #[test]
    fn a_repaired_value_keeps_its_neighbours_whole() {
        let body = br#"{"count":2,"hasMore":false,"items":[
            {"a":"before","companyname":"Acme \ud800 Ltd","z":"after"},
            {"z":"2","companyname":"Fine","a":"1"}]}"#;
        let page = parse_rows(body).unwrap();
        let rows: Vec<Vec<(&str, &str)>> = page.rows.iter().map(|r| r.iter().collect()).collect();
        assert_eq!(rows[0], [("a", "before"), ("companyname", "Acme \u{FFFD} Ltd"), ("z", "after")]);
        assert_eq!(rows[1], [("a", "1"), ("companyname", "Fine"), ("z", "2")]);
        assert_eq!(page.repaired, [vec!["companyname".to_string()], vec![]]);
    }

    #[test]
    fn a_page_reads_alike_from_checked_text_and_bytes_that_are_not_utf8_are_an_error() {
        let page =
            "{\"count\":1,\"hasMore\":false,\"items\":[{\"id\":\"7\",\"companyname\":\"Zürich \\\"Ost\\\" 東京\"}]}";
        let rows = parse_rows(page.as_bytes()).unwrap().rows;
        assert_eq!(rows[0].get("companyname"), Some("Zürich \"Ost\" 東京"));
        let mut bad = page.as_bytes().to_vec();
        let at = page.find('ü').unwrap();
        bad[at + 1] = b'x'; // the second byte of `ü`: no longer UTF-8
        let e = parse_rows(&bad).unwrap_err().to_string();
        assert!(e.contains("not a SuiteQL result page") && e.contains("column"), "{e}");
    }

    #[test]
    fn count_mismatch_and_bad_timestamps_are_errors() {
        assert!(parse_rows(br#"{"count":3,"hasMore":false,"items":[]}"#).is_err());
        let row = Columns::from_iter([("id", "1".to_string()), ("lastmodified", "1/2/2026".into())]);
        assert!(to_record(RecordKind::Customer, row).unwrap_err().to_string().contains("YYYY-MM-DD"));
    }
}
