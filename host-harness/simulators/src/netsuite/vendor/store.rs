//! Record writes (vendor, customer, contact): the changes merged into the
//! record, checked as NetSuite checks a save (required fields, external id
//! unique per record type, injected rejections), then written with the
//! address book lines and a new `lastmodifieddate`, in the caller's
//! transaction.

use super::request::{AddressLine, invalid_value};
use super::{Changes, Kind, RecordType, Replace, Required, VendorMatch, VendorRejection};
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
    /// Rejections injected for this write's record type (vendors only).
    pub rejections: &'a [VendorRejection],
}

pub(super) type Row = HashMap<&'static str, Sql>;

pub(super) fn load(conn: &Connection, rt: &RecordType, id: i64) -> rusqlite::Result<Row> {
    let columns: Vec<&str> = rt.fields.iter().map(|f| f.column).collect();
    conn.query_row(&format!("SELECT {} FROM {} WHERE id = ?1", columns.join(", "), rt.name), [id], |r| {
        let mut row = Row::new();
        for (i, f) in rt.fields.iter().enumerate() {
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

fn check_record(
    conn: &Connection,
    rt: &RecordType,
    id: Option<i64>,
    row: &mut Row,
    ctx: &WriteContext<'_>,
) -> Result<(), RestError> {
    let is_person = match rt.required {
        Required::CompanyOrPerson => text(row, "isperson").as_deref() == Some("T"),
        Required::PersonName => true,
    };
    let required: &[&str] = match rt.required {
        _ if !is_person => &["companyname"],
        Required::CompanyOrPerson => &["firstname", "lastname"],
        // A contact's name: its entity id, or a last name to make one from
        // (the reference is silent; as a vendor person needs a last name).
        Required::PersonName if text(row, "entityid").is_some() => &[],
        Required::PersonName => &["lastname"],
    };
    let mut missing: Vec<&str> = Vec::new();
    for column in required {
        if text(row, column).is_none() {
            missing.extend(rt.fields.iter().filter(|f| f.column == *column).map(|f| f.label));
        }
    }
    // OneWorld: every entity needs its subsidiary (reference 5, "Body shapes").
    if ctx.one_world && text(row, "subsidiary").is_none() {
        missing.extend(rt.fields.iter().filter(|f| f.column == "subsidiary").map(|f| f.label));
    }
    if !missing.is_empty() {
        return Err(user_error(format!("Please enter value(s) for: {}.", missing.join(", "))));
    }
    if text(row, "entityid").is_none() {
        // Without auto-generated numbers the entity id is the record's name.
        let name = if is_person {
            let first = text(row, "firstname").unwrap_or_default();
            format!("{first} {}", text(row, "lastname").unwrap_or_default()).trim().to_string()
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
                rt.field_named(field).and_then(|f| text(row, f.column)).is_some_and(|v| v.contains(needle.as_str()))
            }
        };
        if hit {
            return Err(user_error(rejection.message.clone()));
        }
    }
    if let Some(eid) = text(row, "externalid") {
        let table = rt.name;
        let other: Option<i64> = conn
            .query_row(
                &format!("SELECT id FROM {table} WHERE externalid = ?1 AND id IS NOT ?2"),
                params![eid, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage_error)?;
        if let Some(other) = other {
            return Err(user_error(format!(
                "A record with external ID '{eid}' already exists ({table} {other}); external IDs are unique per record type."
            ))
            .at_path("externalId"));
        }
    }
    Ok(())
}

fn merged(rt: &RecordType, row: &mut Row, changes: &Changes, replace: &Replace) {
    for f in &replace.clear {
        row.insert(f.column, Sql::Null);
    }
    for (f, v) in &changes.fields {
        row.insert(f.column, v.clone());
    }
    // A cleared checkbox is an unticked one.
    for f in rt.fields.iter().filter(|f| f.kind == Kind::Bool) {
        if matches!(row.get(f.column), None | Some(Sql::Null)) {
            row.insert(f.column, Sql::Text("F".into()));
        }
    }
}

/// Creates a record of `rt`; returns its internal id.
pub fn create(conn: &Connection, rt: &RecordType, changes: &Changes, ctx: &WriteContext<'_>) -> Result<i64, RestError> {
    let mut row: Row = rt.fields.iter().map(|f| (f.column, Sql::Null)).collect();
    merged(rt, &mut row, changes, ctx.replace);
    check_record(conn, rt, None, &mut row, ctx)?;
    let id = crate::netsuite::db::next_entity_id(conn).map_err(|e| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            format!("An unexpected error occurred: {e}"),
        )
    })?;
    let columns: Vec<&str> = rt.fields.iter().map(|f| f.column).collect();
    let mut values: Vec<Sql> = rt.fields.iter().map(|f| row.get(f.column).cloned().unwrap_or(Sql::Null)).collect();
    values.extend([Sql::Integer(id), Sql::Integer(ctx.now), Sql::Integer(ctx.now)]);
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
    conn.execute(
        &format!(
            "INSERT INTO {} ({}, id, datecreated, lastmodifieddate) VALUES ({})",
            rt.name,
            columns.join(", "),
            placeholders.join(", ")
        ),
        rusqlite::params_from_iter(values),
    )
    .map_err(storage_error)?;
    if let Some(lines) = &changes.address_book {
        apply_address_book(conn, rt, id, lines, false, ctx.now)?;
    }
    Ok(id)
}

/// Updates the fields the body names (and the lines of `addressBook`).
pub fn update(
    conn: &Connection,
    rt: &RecordType,
    id: i64,
    changes: &Changes,
    ctx: &WriteContext<'_>,
) -> Result<(), RestError> {
    let mut row = load(conn, rt, id).map_err(storage_error)?;
    merged(rt, &mut row, changes, ctx.replace);
    check_record(conn, rt, Some(id), &mut row, ctx)?;
    let mut sets = Vec::new();
    let mut values = Vec::new();
    for f in rt.fields {
        sets.push(format!("{} = ?{}", f.column, sets.len() + 1));
        values.push(row.get(f.column).cloned().unwrap_or(Sql::Null));
    }
    values.extend([Sql::Integer(ctx.now), Sql::Integer(id)]);
    let n = values.len();
    conn.execute(
        &format!("UPDATE {} SET {}, lastmodifieddate = ?{} WHERE id = ?{n}", rt.name, sets.join(", "), n - 1),
        rusqlite::params_from_iter(values),
    )
    .map_err(storage_error)?;
    if changes.address_book.is_some() || ctx.replace.address_book {
        let lines = changes.address_book.as_deref().unwrap_or_default();
        apply_address_book(conn, rt, id, lines, ctx.replace.address_book, ctx.now)?;
    }
    Ok(())
}

fn apply_address_book(
    conn: &Connection,
    rt: &RecordType,
    entity: i64,
    lines: &[AddressLine],
    replace: bool,
    now: i64,
) -> Result<(), RestError> {
    let (table, book, addr) = (rt.name, rt.address_book_table(), rt.address_table());
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| conn.execute(sql, p).map_err(storage_error);
    if replace {
        run(
            &format!("DELETE FROM {addr} WHERE nkey IN (SELECT addressbookaddress FROM {book} WHERE entity = ?1)"),
            &[&entity],
        )?;
        run(&format!("DELETE FROM {book} WHERE entity = ?1"), &[&entity])?;
        run(
            &format!("UPDATE {table} SET defaultbillingaddress = NULL, defaultshippingaddress = NULL WHERE id = ?1"),
            &[&entity],
        )?;
    }
    for line in lines {
        let existing = match line.key.filter(|_| !replace) {
            Some(key) => {
                let found: Option<(i64, i64)> = conn
                    .query_row(
                        &format!(
                            "SELECT internalid, addressbookaddress FROM {book} WHERE internalid = ?1 AND entity = ?2"
                        ),
                        params![key, entity],
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
                run(&format!("INSERT INTO {addr} (lastmodifieddate) VALUES (?1)"), &[&now])?;
                let nkey = conn.last_insert_rowid();
                run(
                    &format!(
                        "INSERT INTO {book} (entity, addressbookaddress, defaultbilling, defaultshipping)
                         VALUES (?1, ?2, 'F', 'F')"
                    ),
                    &[&entity, &nkey],
                )?;
                (conn.last_insert_rowid(), nkey)
            }
        };
        for (column, value) in &line.address {
            run(&format!("UPDATE {addr} SET {column} = ?1 WHERE nkey = ?2"), &[value, &nkey])?;
        }
        run(&format!("UPDATE {addr} SET lastmodifieddate = ?1 WHERE nkey = ?2"), &[&now, &nkey])?;
        match &line.label {
            Some(label) => run(&format!("UPDATE {book} SET label = ?1 WHERE internalid = ?2"), &[label, &line_id])?,
            // NetSuite labels a line with its first address line unless told otherwise.
            None => run(
                &format!(
                    "UPDATE {book} SET label = (SELECT addr1 FROM {addr} WHERE nkey = ?1)
                     WHERE internalid = ?2 AND label IS NULL"
                ),
                &[&nkey, &line_id],
            )?,
        };
        for (flag, pointer, wanted) in [
            ("defaultbilling", "defaultbillingaddress", line.default_billing),
            ("defaultshipping", "defaultshippingaddress", line.default_shipping),
        ] {
            match wanted {
                Some(true) => {
                    run(&format!("UPDATE {book} SET {flag} = 'F' WHERE entity = ?1"), &[&entity])?;
                    run(&format!("UPDATE {book} SET {flag} = 'T' WHERE internalid = ?1"), &[&line_id])?;
                    run(&format!("UPDATE {table} SET {pointer} = ?1 WHERE id = ?2"), &[&nkey, &entity])?;
                }
                Some(false) => {
                    run(&format!("UPDATE {book} SET {flag} = 'F' WHERE internalid = ?1"), &[&line_id])?;
                    run(
                        &format!("UPDATE {table} SET {pointer} = NULL WHERE id = ?1 AND {pointer} = ?2"),
                        &[&entity, &nkey],
                    )?;
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Deletes a record of `rt` as NetSuite does: the record and its address
/// book go, a `deletedrecord` row appears (the row `NetSuiteSim::delete_record`
/// writes, made by web services). Contacts of a deleted company keep their
/// `company` (the reference is silent; the vendor path never touched them).
pub fn delete(conn: &Connection, rt: &RecordType, id: i64, now: i64) -> rusqlite::Result<()> {
    let table = rt.name;
    let name: String = conn.query_row(&format!("SELECT entityid FROM {table} WHERE id = ?1"), [id], |r| r.get(0))?;
    if rt.address_book {
        let (book, addr) = (rt.address_book_table(), rt.address_table());
        conn.execute(
            &format!("DELETE FROM {addr} WHERE nkey IN (SELECT addressbookaddress FROM {book} WHERE entity = ?1)"),
            [id],
        )?;
        conn.execute(&format!("DELETE FROM {book} WHERE entity = ?1"), [id])?;
    }
    conn.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])?;
    conn.execute(
        "INSERT INTO deletedrecord (recordid, name, type, deleteddate, context, iscustomrecord)
         VALUES (?1, ?2, ?3, ?4, 'RESTWEBSERVICES', 'F')",
        params![id, name, table, now],
    )?;
    Ok(())
}

/// Internal ids of one page of `rt` records, and how many there are.
pub fn ids_page(conn: &Connection, rt: &RecordType, limit: u64, offset: u64) -> rusqlite::Result<(Vec<i64>, u64)> {
    let table = rt.name;
    let total: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!("SELECT id FROM {table} ORDER BY id LIMIT ?1 OFFSET ?2"))?;
    let ids = stmt.query_map(params![limit as i64, offset as i64], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok((ids, total.max(0) as u64))
}
