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
    Fraction(u8),
    Literal(char),
}

fn format_elements(fmt: &str) -> Result<Vec<Element>, String> {
    let upper = fmt.to_ascii_uppercase();
    let mut rest = upper.as_str();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (el, len) = if rest.starts_with("YYYY") {
            (Element::Year, 4)
        } else if rest.starts_with("HH24") {
            (Element::Hour24, 4)
        } else if rest.starts_with("MM") {
            (Element::Month, 2)
        } else if rest.starts_with("DD") {
            (Element::Day, 2)
        } else if rest.starts_with("MI") {
            (Element::Minute, 2)
        } else if rest.starts_with("SS") {
            (Element::Second, 2)
        } else if let Some(after) = rest.strip_prefix("FF") {
            let digits = after.chars().next().and_then(|c| c.to_digit(10)).filter(|d| (1..=9).contains(d));
            match digits {
                Some(d) => (Element::Fraction(d as u8), 3),
                None => (Element::Fraction(6), 2),
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            if c.is_ascii_alphabetic() {
                return Err(format!("ORA-01821: date format not recognized: {fmt}"));
            }
            (Element::Literal(c), c.len_utf8())
        };
        out.push(el);
        rest = &rest[len..];
    }
    Ok(out)
}

pub fn format_secs(secs: i64, fmt: &str) -> Result<String, String> {
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
                s.extend(std::iter::repeat_n('0', usize::from(n)));
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
    let bad = || format!("ORA-01861: literal does not match format string: '{text}' for '{fmt}'");
    let (mut y, mut mo, mut d, mut h, mut mi, mut se) = (1970i32, 1u8, 1u8, 0u8, 0u8, 0u8);
    let mut rest = text;
    let take = |n: usize, rest: &mut &str| -> Result<u32, String> {
        let digits: String = rest.chars().take(n).take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(bad());
        }
        *rest = &rest[digits.len()..];
        digits.parse().map_err(|_| bad())
    };
    for el in format_elements(fmt)? {
        match el {
            Element::Year => y = take(4, &mut rest)? as i32,
            Element::Month => mo = take(2, &mut rest)? as u8,
            Element::Day => d = take(2, &mut rest)? as u8,
            Element::Hour24 => h = take(2, &mut rest)? as u8,
            Element::Minute => mi = take(2, &mut rest)? as u8,
            Element::Second => se = take(2, &mut rest)? as u8,
            Element::Fraction(n) => {
                take(n as usize, &mut rest)?;
            }
            Element::Literal(c) => rest = rest.strip_prefix(c).ok_or_else(bad)?,
        }
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    let month = Month::try_from(mo).map_err(|_| bad())?;
    let date = Date::from_calendar_date(y, month, d).map_err(|_| bad())?;
    let time = Time::from_hms(h, mi, se).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp())
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
            // A literal is the user's local time.
            parse_secs(&text, &fmt).map(|secs| Some(secs - zone.load(Ordering::Relaxed))).map_err(user_error)
        })?;
    }
    let zone = zone.clone();
    conn.create_scalar_function("TO_CHAR", 2, flags, move |ctx| match ctx.get_raw(0) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(secs) => {
            let local = secs + zone.load(Ordering::Relaxed);
            match ctx.get_raw(1) {
                // The format borrowed, not copied: TO_CHAR runs once per row read.
                ValueRef::Text(fmt) => format_secs(local, &String::from_utf8_lossy(fmt)).map(Some).map_err(user_error),
                _ => format_secs(local, &text_arg(ctx, 1)?.unwrap_or_default()).map(Some).map_err(user_error),
            }
        }
        _ => text_arg(ctx, 0),
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
