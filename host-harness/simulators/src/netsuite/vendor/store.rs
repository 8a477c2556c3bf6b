//! Vendor writes: the changes merged into the record, checked as NetSuite
//! checks a save (required fields, external id unique, injected
//! rejections), then written with the address book lines and a new
//! `lastmodifieddate`, in the caller's transaction.

use super::request::{AddressLine, invalid_value};
use super::{Changes, FIELDS, Kind, Replace, VendorMatch, VendorRejection, field_named};
use crate::netsuite::errors::RestError;
use axum::http::StatusCode;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// What a write needs besides the body.
pub struct WriteContext<'a> {
    /// Simulated Unix seconds.
    pub now: i64,
    /// OneWorld accounts need a subsidiary on every entity.
    pub one_world: bool,
    pub replace: &'a Replace,
    pub rejections: &'a [VendorRejection],
}

pub(super) type Row = HashMap<&'static str, Sql>;

pub(super) fn load(conn: &Connection, id: i64) -> rusqlite::Result<Row> {
    let columns: Vec<&str> = FIELDS.iter().map(|f| f.column).collect();
    conn.query_row(&format!("SELECT {} FROM vendor WHERE id = ?1", columns.join(", ")), [id], |r| {
        let mut row = Row::new();
        for (i, f) in FIELDS.iter().enumerate() {
            row.insert(f.column, r.get::<_, Sql>(i)?);
        }
        Ok(row)
    })
}

fn text(row: &Row, column: &str) -> Option<String> {
    match row.get(column)? {
        Sql::Text(s) => Some(s.clone()),
        Sql::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

fn user_error(detail: String) -> RestError {
    RestError::new(StatusCode::BAD_REQUEST, "USER_ERROR", format!("Error while accessing a resource. {detail}"))
}

fn storage_error(e: rusqlite::Error) -> RestError {
    RestError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNEXPECTED_ERROR", format!("An unexpected error occurred: {e}"))
}

fn check_record(conn: &Connection, id: Option<i64>, row: &mut Row, ctx: &WriteContext<'_>) -> Result<(), RestError> {
    let is_person = text(row, "isperson").as_deref() == Some("T");
    let mut missing: Vec<&str> = Vec::new();
    let required: &[&str] = if is_person { &["firstname", "lastname"] } else { &["companyname"] };
    for column in required {
        if text(row, column).is_none() {
            missing.extend(FIELDS.iter().filter(|f| f.column == *column).map(|f| f.label));
        }
    }
    if ctx.one_world && text(row, "subsidiary").is_none() {
        missing.push("Primary Subsidiary");
    }
    if !missing.is_empty() {
        return Err(user_error(format!("Please enter value(s) for: {}.", missing.join(", "))));
    }
    if text(row, "entityid").is_none() {
        // Without auto-generated numbers the entity id is the vendor's name.
        let name = if is_person {
            format!("{} {}", text(row, "firstname").unwrap_or_default(), text(row, "lastname").unwrap_or_default())
        } else {
            text(row, "companyname").unwrap_or_default()
        };
        row.insert("entityid", Sql::Text(name));
    }
    for rejection in ctx.rejections {
        let hit = match &rejection.matches {
            VendorMatch::Id(rid) => id == Some(*rid),
            VendorMatch::ExternalId(eid) => text(row, "externalid").as_deref() == Some(eid.as_str()),
            VendorMatch::FieldContains { field, text: needle } => {
                field_named(field).and_then(|f| text(row, f.column)).is_some_and(|v| v.contains(needle.as_str()))
            }
        };
        if hit {
            return Err(user_error(rejection.message.clone()));
        }
    }
    if let Some(eid) = text(row, "externalid") {
        let other: Option<i64> = conn
            .query_row("SELECT id FROM vendor WHERE externalid = ?1 AND id IS NOT ?2", params![eid, id], |r| r.get(0))
            .optional()
            .map_err(storage_error)?;
        if let Some(other) = other {
            return Err(user_error(format!(
                "A record with external ID '{eid}' already exists (vendor {other}); external IDs are unique per record type."
            ))
            .at_path("externalId"));
        }
    }
    Ok(())
}

fn merged(row: &mut Row, changes: &Changes, replace: &Replace) {
    for f in &replace.clear {
        row.insert(f.column, Sql::Null);
    }
    for (f, v) in &changes.fields {
        row.insert(f.column, v.clone());
    }
    // A cleared checkbox is an unticked one.
    for f in FIELDS.iter().filter(|f| f.kind == Kind::Bool) {
        if matches!(row.get(f.column), None | Some(Sql::Null)) {
            row.insert(f.column, Sql::Text("F".into()));
        }
    }
}

/// Creates a vendor; returns its internal id.
pub fn create(conn: &Connection, changes: &Changes, ctx: &WriteContext<'_>) -> Result<i64, RestError> {
    let mut row: Row = FIELDS.iter().map(|f| (f.column, Sql::Null)).collect();
    merged(&mut row, changes, ctx.replace);
    check_record(conn, None, &mut row, ctx)?;
    let id = crate::netsuite::db::next_entity_id(conn).map_err(|e| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            format!("An unexpected error occurred: {e}"),
        )
    })?;
    let columns: Vec<&str> = FIELDS.iter().map(|f| f.column).collect();
    let mut values: Vec<Sql> = FIELDS.iter().map(|f| row.get(f.column).cloned().unwrap_or(Sql::Null)).collect();
    values.extend([Sql::Integer(id), Sql::Integer(ctx.now), Sql::Integer(ctx.now)]);
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
    conn.execute(
        &format!(
            "INSERT INTO vendor ({}, id, datecreated, lastmodifieddate) VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        ),
        rusqlite::params_from_iter(values),
    )
    .map_err(storage_error)?;
    if let Some(lines) = &changes.address_book {
        apply_address_book(conn, id, lines, false, ctx.now)?;
    }
    Ok(id)
}

/// Updates the fields the body names (and the lines of `addressBook`).
pub fn update(conn: &Connection, id: i64, changes: &Changes, ctx: &WriteContext<'_>) -> Result<(), RestError> {
    let mut row = load(conn, id).map_err(storage_error)?;
    merged(&mut row, changes, ctx.replace);
    check_record(conn, Some(id), &mut row, ctx)?;
    let mut sets = Vec::new();
    let mut values = Vec::new();
    for f in FIELDS {
        sets.push(format!("{} = ?{}", f.column, sets.len() + 1));
        values.push(row.get(f.column).cloned().unwrap_or(Sql::Null));
    }
    values.extend([Sql::Integer(ctx.now), Sql::Integer(id)]);
    let n = values.len();
    conn.execute(
        &format!("UPDATE vendor SET {}, lastmodifieddate = ?{} WHERE id = ?{n}", sets.join(", "), n - 1),
        rusqlite::params_from_iter(values),
    )
    .map_err(storage_error)?;
    if changes.address_book.is_some() || ctx.replace.address_book {
        let lines = changes.address_book.as_deref().unwrap_or_default();
        apply_address_book(conn, id, lines, ctx.replace.address_book, ctx.now)?;
    }
    Ok(())
}

fn apply_address_book(
    conn: &Connection,
    vendor: i64,
    lines: &[AddressLine],
    replace: bool,
    now: i64,
) -> Result<(), RestError> {
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| conn.execute(sql, p).map_err(storage_error);
    if replace {
        run(
            "DELETE FROM vendoraddressbookentityaddress
             WHERE nkey IN (SELECT addressbookaddress FROM vendoraddressbook WHERE entity = ?1)",
            &[&vendor],
        )?;
        run("DELETE FROM vendoraddressbook WHERE entity = ?1", &[&vendor])?;
        run("UPDATE vendor SET defaultbillingaddress = NULL, defaultshippingaddress = NULL WHERE id = ?1", &[&vendor])?;
    }
    for line in lines {
        let existing = match line.key.filter(|_| !replace) {
            Some(key) => {
                let found: Option<(i64, i64)> = conn
                    .query_row(
                        "SELECT internalid, addressbookaddress FROM vendoraddressbook WHERE internalid = ?1 AND entity = ?2",
                        params![key, vendor],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(storage_error)?;
                match found {
                    Some(ids) => Some(ids),
                    None => {
                        return Err(RestError::many(
                            StatusCode::BAD_REQUEST,
                            vec![invalid_value(&key.to_string(), "id", &format!("{}.id", line.path))],
                        ));
                    }
                }
            }
            None => None,
        };
        let (line_id, nkey) = match existing {
            Some(ids) => ids,
            None => {
                run("INSERT INTO vendoraddressbookentityaddress (lastmodifieddate) VALUES (?1)", &[&now])?;
                let nkey = conn.last_insert_rowid();
                run(
                    "INSERT INTO vendoraddressbook (entity, addressbookaddress, defaultbilling, defaultshipping)
                     VALUES (?1, ?2, 'F', 'F')",
                    &[&vendor, &nkey],
                )?;
                (conn.last_insert_rowid(), nkey)
            }
        };
        for (column, value) in &line.address {
            run(&format!("UPDATE vendoraddressbookentityaddress SET {column} = ?1 WHERE nkey = ?2"), &[value, &nkey])?;
        }
        run("UPDATE vendoraddressbookentityaddress SET lastmodifieddate = ?1 WHERE nkey = ?2", &[&now, &nkey])?;
        match &line.label {
            Some(label) => run("UPDATE vendoraddressbook SET label = ?1 WHERE internalid = ?2", &[label, &line_id])?,
            // NetSuite labels a line with its first address line unless told otherwise.
            None => run(
                "UPDATE vendoraddressbook SET label = (SELECT addr1 FROM vendoraddressbookentityaddress WHERE nkey = ?1)
                 WHERE internalid = ?2 AND label IS NULL",
                &[&nkey, &line_id],
            )?,
        };
        for (flag, pointer, wanted) in [
            ("defaultbilling", "defaultbillingaddress", line.default_billing),
            ("defaultshipping", "defaultshippingaddress", line.default_shipping),
        ] {
            match wanted {
                Some(true) => {
                    run(&format!("UPDATE vendoraddressbook SET {flag} = 'F' WHERE entity = ?1"), &[&vendor])?;
                    run(&format!("UPDATE vendoraddressbook SET {flag} = 'T' WHERE internalid = ?1"), &[&line_id])?;
                    run(&format!("UPDATE vendor SET {pointer} = ?1 WHERE id = ?2"), &[&nkey, &vendor])?;
                }
                Some(false) => {
                    run(&format!("UPDATE vendoraddressbook SET {flag} = 'F' WHERE internalid = ?1"), &[&line_id])?;
                    run(
                        &format!("UPDATE vendor SET {pointer} = NULL WHERE id = ?1 AND {pointer} = ?2"),
                        &[&vendor, &nkey],
                    )?;
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Deletes a vendor as NetSuite does: the record goes, a `deletedrecord` row appears.
pub fn delete(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    let name: String = conn.query_row("SELECT entityid FROM vendor WHERE id = ?1", [id], |r| r.get(0))?;
    conn.execute(
        "DELETE FROM vendoraddressbookentityaddress
         WHERE nkey IN (SELECT addressbookaddress FROM vendoraddressbook WHERE entity = ?1)",
        [id],
    )?;
    conn.execute("DELETE FROM vendoraddressbook WHERE entity = ?1", [id])?;
    conn.execute("DELETE FROM vendor WHERE id = ?1", [id])?;
    conn.execute(
        "INSERT INTO deletedrecord (recordid, name, type, deleteddate, context, iscustomrecord)
         VALUES (?1, ?2, 'vendor', ?3, 'RESTWEBSERVICES', 'F')",
        params![id, name, now],
    )?;
    Ok(())
}

/// Internal ids of one page of vendors, and how many there are.
pub fn ids_page(conn: &Connection, limit: u64, offset: u64) -> rusqlite::Result<(Vec<i64>, u64)> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM vendor", [], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached("SELECT id FROM vendor ORDER BY id LIMIT ?1 OFFSET ?2")?;
    let ids = stmt.query_map(params![limit as i64, offset as i64], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok((ids, total.max(0) as u64))
}
