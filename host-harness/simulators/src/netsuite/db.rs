//! The simulated account's data: NetSuite's SuiteQL tables in an in-memory
//! SQLite database, with the Oracle functions SuiteQL offers (TO_TIMESTAMP,
//! TO_CHAR, TO_DATE, NVL) registered, so the connector's queries really run.
//!
//! Datetimes are stored as Unix seconds in columns declared TIMESTAMP; a raw
//! TIMESTAMP column comes back in the user's date format preference (M/D/YYYY),
//! as in NetSuite, so only TO_CHAR gives a sortable, exact timestamp.
//! SuiteQL evaluates them in the integration user's time zone (reference
//! section 3, "Time zone"): [`UserZone`], UTC unless a test sets it.

use crate::seed::{Address, Company, Person, TERMS};
use anyhow::Result;
use rusqlite::functions::{Context as FnContext, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The integration user's time zone preference as seconds east of UTC
/// (a fixed offset: no daylight saving), shared with the SQL functions.
pub type UserZone = Arc<AtomicI64>;

const SCHEMA: &str = "
CREATE TABLE term (id INTEGER PRIMARY KEY, name TEXT NOT NULL, isinactive TEXT NOT NULL DEFAULT 'F',
    daysuntilnetdue INTEGER, lastmodifieddate TIMESTAMP, discountpercent REAL, externalid TEXT);
CREATE TABLE subsidiary (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
-- Lists the entity columns below refer to (BUILTIN.DF reads their display values).
CREATE TABLE currency (id INTEGER PRIMARY KEY, name TEXT NOT NULL, symbol TEXT NOT NULL);
CREATE TABLE customercategory (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE entitystatus (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE employee (id INTEGER PRIMARY KEY, entityid TEXT NOT NULL, firstname TEXT, lastname TEXT, email TEXT);
CREATE TABLE customer (id INTEGER PRIMARY KEY, entityid TEXT NOT NULL, companyname TEXT, isperson TEXT NOT NULL,
    firstname TEXT, lastname TEXT, email TEXT, phone TEXT, terms INTEGER, subsidiary INTEGER, isinactive TEXT NOT NULL,
    datecreated TIMESTAMP NOT NULL, lastmodifieddate TIMESTAMP NOT NULL, defaultbillingaddress INTEGER,
    defaultshippingaddress INTEGER, externalid TEXT, altphone TEXT, fax TEXT, url TEXT, creditlimit REAL,
    balance REAL, currency INTEGER, category INTEGER, entitystatus INTEGER, salesrep INTEGER, parent INTEGER);
CREATE TABLE customeraddressbook (internalid INTEGER PRIMARY KEY, entity INTEGER NOT NULL,
    addressbookaddress INTEGER NOT NULL, defaultbilling TEXT NOT NULL, defaultshipping TEXT NOT NULL, label TEXT);
CREATE TABLE customeraddressbookentityaddress (nkey INTEGER PRIMARY KEY, addressee TEXT, attention TEXT,
    addr1 TEXT, addr2 TEXT, addr3 TEXT, city TEXT, state TEXT, zip TEXT, country TEXT, addrphone TEXT,
    lastmodifieddate TIMESTAMP);
CREATE TABLE vendor (id INTEGER PRIMARY KEY, entityid TEXT NOT NULL, companyname TEXT, isperson TEXT NOT NULL,
    firstname TEXT, lastname TEXT, email TEXT, phone TEXT, terms INTEGER, subsidiary INTEGER, isinactive TEXT NOT NULL,
    datecreated TIMESTAMP NOT NULL, lastmodifieddate TIMESTAMP NOT NULL, defaultbillingaddress INTEGER,
    defaultshippingaddress INTEGER, externalid TEXT, legalname TEXT, altphone TEXT, fax TEXT, url TEXT,
    accountnumber TEXT, printoncheckas TEXT, comments TEXT, currency INTEGER);
-- External ids are unique per record type; the record API finds vendors by them.
CREATE UNIQUE INDEX vendor_externalid ON vendor (externalid) WHERE externalid IS NOT NULL;
CREATE TABLE vendoraddressbook (internalid INTEGER PRIMARY KEY, entity INTEGER NOT NULL,
    addressbookaddress INTEGER NOT NULL, defaultbilling TEXT NOT NULL, defaultshipping TEXT NOT NULL, label TEXT);
CREATE TABLE vendoraddressbookentityaddress (nkey INTEGER PRIMARY KEY, addressee TEXT, attention TEXT,
    addr1 TEXT, addr2 TEXT, addr3 TEXT, city TEXT, state TEXT, zip TEXT, country TEXT, addrphone TEXT,
    lastmodifieddate TIMESTAMP);
CREATE TABLE contact (id INTEGER PRIMARY KEY, entityid TEXT NOT NULL, company INTEGER, firstname TEXT,
    lastname TEXT, email TEXT, phone TEXT, title TEXT, subsidiary INTEGER, isinactive TEXT NOT NULL,
    datecreated TIMESTAMP NOT NULL, lastmodifieddate TIMESTAMP NOT NULL, mobilephone TEXT, officephone TEXT,
    externalid TEXT);
CREATE TABLE deletedrecord (recordid INTEGER NOT NULL, recordtypeid INTEGER, scriptid TEXT, name TEXT,
    type TEXT NOT NULL, deleteddate TIMESTAMP NOT NULL, deletedby INTEGER, context TEXT, iscustomrecord TEXT);
-- Incremental reads order by the second-truncated text form; index it as NetSuite would index its own.
CREATE INDEX customer_modified ON customer (TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'), id);
CREATE INDEX customer_modified_raw ON customer (lastmodifieddate, id);
CREATE INDEX vendor_modified ON vendor (TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'), id);
CREATE INDEX vendor_modified_raw ON vendor (lastmodifieddate, id);
CREATE INDEX contact_modified ON contact (TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'), id);
CREATE INDEX contact_modified_raw ON contact (lastmodifieddate, id);
";

/// Oracle datetime format elements the simulator understands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Element {
    Year,
    Month,
    Day,
    Hour24,
    Minute,
    Second,
    /// `FF1` to `FF9`; bare `FF` (None) prints six digits and reads one to nine.
    Fraction(Option<u8>),
    /// `X`: the radix character, a full stop.
    Radix,
    /// Punctuation, or text in double quotes (`"T"`), copied as it is.
    Literal(char),
}

fn format_elements(fmt: &str) -> Result<Vec<Element>, String> {
    let bad = || format!("ORA-01821: date format not recognized: {fmt}");
    let starts = |rest: &str, p: &str| rest.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
    let mut rest = fmt;
    let mut out = Vec::new();
    while let Some(c) = rest.chars().next() {
        let (el, len) = if starts(rest, "YYYY") {
            (Element::Year, 4)
        } else if starts(rest, "HH24") {
            (Element::Hour24, 4)
        } else if starts(rest, "MM") {
            (Element::Month, 2)
        } else if starts(rest, "DD") {
            (Element::Day, 2)
        } else if starts(rest, "MI") {
            (Element::Minute, 2)
        } else if starts(rest, "SS") {
            (Element::Second, 2)
        } else if starts(rest, "FF") {
            match rest[2..].chars().next().and_then(|c| c.to_digit(10)).filter(|d| (1..=9).contains(d)) {
                Some(d) => (Element::Fraction(Some(d as u8)), 3),
                None => (Element::Fraction(None), 2),
            }
        } else if c == 'X' || c == 'x' {
            (Element::Radix, 1)
        } else if c == '"' {
            let end = rest[1..].find('"').ok_or_else(bad)?;
            out.extend(rest[1..1 + end].chars().map(Element::Literal));
            rest = &rest[end + 2..];
            continue;
        } else if c.is_ascii_alphabetic() {
            return Err(bad());
        } else {
            (Element::Literal(c), c.len_utf8())
        };
        out.push(el);
        rest = &rest[len..];
    }
    Ok(out)
}

pub fn format_secs(secs: i64, fmt: &str) -> Result<String, String> {
    format_instant(secs, 0, fmt)
}

/// `secs` and `nanos` (the fraction of that second) in an Oracle format.
fn format_instant(secs: i64, nanos: u32, fmt: &str) -> Result<String, String> {
    use std::fmt::Write;
    let dt = OffsetDateTime::from_unix_timestamp(secs).map_err(|e| e.to_string())?;
    // Written in place: a page's select list formats a timestamp per row.
    let mut s = String::with_capacity(fmt.len() + 8);
    for el in format_elements(fmt)? {
        let _ = match el {
            Element::Year => write!(s, "{:04}", dt.year()),
            Element::Month => write!(s, "{:02}", u8::from(dt.month())),
            Element::Day => write!(s, "{:02}", dt.day()),
            Element::Hour24 => write!(s, "{:02}", dt.hour()),
            Element::Minute => write!(s, "{:02}", dt.minute()),
            Element::Second => write!(s, "{:02}", dt.second()),
            Element::Fraction(n) => {
                let digits = usize::from(n.unwrap_or(6));
                s.push_str(&format!("{nanos:09}")[..digits]);
                Ok(())
            }
            Element::Radix => {
                s.push('.');
                Ok(())
            }
            Element::Literal(c) => {
                s.push(c);
                Ok(())
            }
        };
    }
    Ok(s)
}

pub fn parse_secs(text: &str, fmt: &str) -> Result<i64, String> {
    parse_instant(text, fmt).map(|(secs, _)| secs)
}

/// `text` read with an Oracle format: Unix seconds and the nanoseconds of
/// a fraction (`FF`).
fn parse_instant(text: &str, fmt: &str) -> Result<(i64, u32), String> {
    let bad = || format!("ORA-01861: literal does not match format string: '{text}' for '{fmt}'");
    let (mut y, mut mo, mut d, mut h, mut mi, mut se, mut nanos) = (1970i32, 1u8, 1u8, 0u8, 0u8, 0u8, 0u32);
    let mut rest = text;
    let take = |n: usize, rest: &mut &str| -> Result<(u32, usize), String> {
        let digits: String = rest.chars().take(n).take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(bad());
        }
        *rest = &rest[digits.len()..];
        Ok((digits.parse().map_err(|_| bad())?, digits.len()))
    };
    for el in format_elements(fmt)? {
        match el {
            Element::Year => y = take(4, &mut rest)?.0 as i32,
            Element::Month => mo = take(2, &mut rest)?.0 as u8,
            Element::Day => d = take(2, &mut rest)?.0 as u8,
            Element::Hour24 => h = take(2, &mut rest)?.0 as u8,
            Element::Minute => mi = take(2, &mut rest)?.0 as u8,
            Element::Second => se = take(2, &mut rest)?.0 as u8,
            Element::Fraction(n) => {
                let (value, len) = take(usize::from(n.unwrap_or(9)), &mut rest)?;
                nanos = value * 10u32.pow(9 - len as u32);
            }
            Element::Radix => rest = rest.strip_prefix('.').ok_or_else(bad)?,
            Element::Literal(c) => rest = rest.strip_prefix(c).ok_or_else(bad)?,
        }
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    let month = Month::try_from(mo).map_err(|_| bad())?;
    let date = Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    let time = Time::from_hms(h, mi, se).map_err(|_| bad())?;
    Ok((PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp(), nanos))
}

/// How a raw TIMESTAMP column prints: the user's date format preference.
pub fn preference_date(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(|d| format!("{}/{}/{}", u8::from(d.month()), d.day(), d.year()))
        .unwrap_or_default()
}

fn user_error(msg: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(msg.into())
}

fn text_arg(ctx: &FnContext<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match ctx.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Blob(_) => return Err(user_error("a binary value cannot be used here".into())),
    })
}

fn register_functions(conn: &Connection, zone: &UserZone) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    for name in ["TO_TIMESTAMP", "TO_DATE"] {
        let zone = zone.clone();
        conn.create_scalar_function(name, 2, flags, move |ctx| {
            let (Some(text), Some(fmt)) = (text_arg(ctx, 0)?, text_arg(ctx, 1)?) else {
                return Ok(None);
            };
            // A DATE has no fractional seconds: Oracle refuses FF and X in TO_DATE's format.
            if name == "TO_DATE"
                && format_elements(&fmt)
                    .map_err(user_error)?
                    .iter()
                    .any(|e| matches!(e, Element::Fraction(_) | Element::Radix))
            {
                return Err(user_error(format!("ORA-01821: date format not recognized: {fmt}")));
            }
            // A literal is the user's local time; seconds stay whole numbers
            // (as the columns are) unless the literal holds a fraction.
            let (secs, nanos) = parse_instant(&text, &fmt).map_err(user_error)?;
            let utc = secs - zone.load(Ordering::Relaxed);
            Ok(Some(if nanos == 0 {
                rusqlite::types::Value::Integer(utc)
            } else {
                rusqlite::types::Value::Real(utc as f64 + f64::from(nanos) / 1e9)
            }))
        })?;
    }
    let zone = zone.clone();
    conn.create_scalar_function("TO_CHAR", 2, flags, move |ctx| {
        let (secs, nanos) = match ctx.get_raw(0) {
            ValueRef::Null => return Ok(None),
            ValueRef::Integer(secs) => (secs, 0),
            ValueRef::Real(r) => (r.floor() as i64, ((r - r.floor()) * 1e9).round().min(999_999_999.0) as u32),
            _ => return text_arg(ctx, 0),
        };
        let local = secs + zone.load(Ordering::Relaxed);
        match ctx.get_raw(1) {
            // The format borrowed, not copied: TO_CHAR runs once per row read.
            ValueRef::Text(fmt) => {
                format_instant(local, nanos, &String::from_utf8_lossy(fmt)).map(Some).map_err(user_error)
            }
            _ => format_instant(local, nanos, &text_arg(ctx, 1)?.unwrap_or_default()).map(Some).map_err(user_error),
        }
    })?;
    // DECODE(expr, search, result, ..., default): the result of the first
    // search equal to expr (NULL equal to NULL, as in Oracle), else the
    // default or NULL.
    conn.create_scalar_function("DECODE", -1, flags, |ctx| {
        let n = ctx.len();
        if n < 3 {
            return Err(user_error(format!("ORA-00938: not enough arguments for function DECODE ({n} given)")));
        }
        let key = ctx.get_raw(0);
        let same = |other: ValueRef<'_>| match (key, other) {
            (ValueRef::Null, ValueRef::Null) => true,
            (ValueRef::Integer(a), ValueRef::Integer(b)) => a == b,
            (ValueRef::Real(a), ValueRef::Real(b)) => a == b,
            (ValueRef::Integer(a), ValueRef::Real(b)) | (ValueRef::Real(b), ValueRef::Integer(a)) => a as f64 == b,
            (ValueRef::Text(a), ValueRef::Text(b)) => a == b,
            // A number against text compares as text, as Oracle converts one to the other.
            (ValueRef::Text(t), ValueRef::Integer(i)) | (ValueRef::Integer(i), ValueRef::Text(t)) => {
                t == i.to_string().as_bytes()
            }
            _ => false,
        };
        let mut pick = if n % 2 == 0 { Some(n - 1) } else { None };
        for i in (1..n - 1).step_by(2) {
            if same(ctx.get_raw(i)) {
                pick = Some(i + 1);
                break;
            }
        }
        Ok(match pick.map(|i| ctx.get_raw(i)) {
            None | Some(ValueRef::Null) => rusqlite::types::Value::Null,
            Some(ValueRef::Integer(i)) => rusqlite::types::Value::Integer(i),
            Some(ValueRef::Real(r)) => rusqlite::types::Value::Real(r),
            Some(ValueRef::Text(t)) => rusqlite::types::Value::Text(String::from_utf8_lossy(t).into_owned()),
            Some(ValueRef::Blob(b)) => rusqlite::types::Value::Blob(b.to_vec()),
        })
    })?;
    conn.create_scalar_function("NVL", 2, flags, |ctx| {
        let first = ctx.get_raw(0);
        let pick = if matches!(first, ValueRef::Null) { 1 } else { 0 };
        Ok(match ctx.get_raw(pick) {
            ValueRef::Null => rusqlite::types::Value::Null,
            ValueRef::Integer(i) => rusqlite::types::Value::Integer(i),
            ValueRef::Real(r) => rusqlite::types::Value::Real(r),
            ValueRef::Text(t) => rusqlite::types::Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => rusqlite::types::Value::Blob(b.to_vec()),
        })
    })?;
    Ok(())
}

pub fn open() -> Result<Connection> {
    open_in(&UserZone::default())
}

/// A database whose SuiteQL datetimes are in `zone`.
pub fn open_in(zone: &UserZone) -> Result<Connection> {
    let conn = Connection::open_in_memory()?;
    register_functions(&conn, zone)?;
    // Like Oracle: a double-quoted token is an identifier, never a string.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.execute_batch(SCHEMA)?;
    let mut stmt =
        conn.prepare("INSERT INTO term (id, name, daysuntilnetdue, lastmodifieddate) VALUES (?1, ?2, ?3, 0)")?;
    for (id, name, days) in TERMS {
        stmt.execute(params![id, name, days])?;
    }
    drop(stmt);
    conn.execute("INSERT INTO subsidiary (id, name) VALUES (1, 'Parent Company')", [])?;
    conn.execute_batch(
        "INSERT INTO currency (id, name, symbol) VALUES (1, 'US Dollar', 'USD'), (2, 'British pound', 'GBP'),
             (3, 'Canadian Dollar', 'CAD'), (4, 'Euro', 'EUR');",
    )?;
    Ok(conn)
}

fn bool_text(b: bool) -> &'static str {
    if b { "T" } else { "F" }
}

fn insert_address(conn: &Connection, table: &str, a: &Address, at: i64) -> Result<i64> {
    conn.prepare_cached(&format!(
        "INSERT INTO {table}addressbookentityaddress (addressee, addr1, addr2, city, state, zip, country, lastmodifieddate)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![a.addressee, a.addr1, a.addr2, a.city, a.state, a.zip, a.country, at])?;
    Ok(conn.last_insert_rowid())
}

/// The next entity id: customers, vendors and contacts share one id space,
/// as NetSuite's entities do.
pub fn next_entity_id(conn: &Connection) -> Result<i64> {
    let max: Option<i64> = conn.query_row(
        "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM customer UNION ALL SELECT MAX(id) FROM vendor
             UNION ALL SELECT MAX(id) FROM contact UNION ALL SELECT MAX(recordid) FROM deletedrecord)",
        [],
        |r| r.get(0),
    )?;
    Ok(max.unwrap_or(0) + 1)
}

/// Inserts a customer or vendor (`table`) with its address book; returns its id.
pub fn insert_company(conn: &Connection, table: &str, c: &Company, at: i64) -> Result<i64> {
    let id = next_entity_id(conn)?;
    conn.prepare_cached(&format!(
        "INSERT INTO {table} (id, entityid, companyname, isperson, firstname, lastname, email, phone, terms, subsidiary,
             isinactive, datecreated, lastmodifieddate)
         VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?10)"
    ))?
    .execute(params![
        c.entityid,
        c.companyname,
        bool_text(c.isperson),
        c.firstname,
        c.lastname,
        c.email,
        c.phone,
        c.terms,
        bool_text(c.isinactive),
        at,
        id
    ])?;
    let same = matches!((&c.billing, &c.shipping), (Some(b), Some(s)) if b.addr1 == s.addr1 && b.zip == s.zip);
    let mut lines: Vec<(&Address, bool, bool)> = Vec::new();
    if let Some(b) = &c.billing {
        lines.push((b, true, same));
    }
    if let Some(s) = &c.shipping.as_ref().filter(|_| !same) {
        lines.push((s, false, true));
    }
    for (address, billing, shipping) in lines {
        let nkey = insert_address(conn, table, address, at)?;
        conn.prepare_cached(&format!(
            "INSERT INTO {table}addressbook (entity, addressbookaddress, defaultbilling, defaultshipping, label)
             VALUES (?1, ?2, ?3, ?4, ?5)"
        ))?
        .execute(params![id, nkey, bool_text(billing), bool_text(shipping), address.addr1])?;
        if billing {
            conn.execute(&format!("UPDATE {table} SET defaultbillingaddress = ?1 WHERE id = ?2"), params![nkey, id])?;
        }
        if shipping {
            conn.execute(&format!("UPDATE {table} SET defaultshippingaddress = ?1 WHERE id = ?2"), params![nkey, id])?;
        }
    }
    Ok(id)
}

pub fn insert_contact(conn: &Connection, p: &Person, company: Option<i64>, at: i64) -> Result<i64> {
    let id = next_entity_id(conn)?;
    conn.prepare_cached(
        "INSERT INTO contact (id, entityid, company, firstname, lastname, email, phone, title, subsidiary, isinactive,
             datecreated, lastmodifieddate)
         VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, 'F', ?8, ?8)",
    )?
    .execute(params![p.entityid, company, p.firstname, p.lastname, p.email, p.phone, p.title, at, id])?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_formats_round_trip() {
        let secs = parse_secs("2026-03-31 23:59:58", "YYYY-MM-DD HH24:MI:SS").unwrap();
        assert_eq!(format_secs(secs, "YYYY-MM-DD HH24:MI:SS").unwrap(), "2026-03-31 23:59:58");
        assert_eq!(preference_date(secs), "3/31/2026");
        assert!(parse_secs("03/31/2026", "YYYY-MM-DD HH24:MI:SS").is_err());
        assert!(format_secs(secs, "YYYY-Q").is_err());
        // Oracle's radix element, fractions and double-quoted text.
        let fmt = "YYYY-MM-DD HH24:MI:SSxFF";
        assert_eq!(parse_instant("2026-03-31 23:59:58.250000000", fmt).unwrap(), (secs, 250_000_000));
        assert_eq!(parse_instant("2026-03-31 23:59:58.5", fmt).unwrap(), (secs, 500_000_000));
        assert!(parse_secs("2026-03-31 23:59:58,5", fmt).is_err());
        assert_eq!(
            format_instant(secs, 250_000_000, "YYYY-MM-DD\"T\"HH24:MI:SS.FF3").unwrap(),
            "2026-03-31T23:59:58.250"
        );
        assert_eq!(format_secs(secs, "yyyy-mm-dd\"t at \"hh24").unwrap(), "2026-03-31t at 23");
        assert!(format_secs(secs, "YYYY\"T").is_err(), "an unclosed quote");
        assert!(format_secs(secs, "YYYY-MM-DDTHH24").is_err(), "T outside quotes is no element");
    }

    #[test]
    fn functions_run_inside_queries() {
        let conn = open().unwrap();
        let v: String = conn
            .query_row(
                "SELECT TO_CHAR(TO_TIMESTAMP('2026-01-02 03:04:05', 'YYYY-MM-DD HH24:MI:SS'), 'YYYY-MM-DD HH24:MI:SS')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, "2026-01-02 03:04:05");
        assert!(conn.query_row("SELECT \"abc\"", [], |r| r.get::<_, String>(0)).is_err());
    }
}
