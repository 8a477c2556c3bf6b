//! GET of customer and contact records from the record API
//! (shared/reference/netsuite.md 3 and 5): the body fields the SuiteQL
//! tables hold, under the record API's camelCase names, datetimes in ISO
//! 8601 UTC whatever the user's time zone, empty fields left out, `fields`
//! picking what comes back. The connector reads them only for their
//! `lastModifiedDate` (to learn the user's time zone); writes to these
//! record types are not simulated (answered 405).

use super::errors::RestError;
use super::vendor::{RecordId, iso};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};

/// A record type this module serves: its table, and (camelCase, column) of
/// its body fields beyond those every entity has ([`COMMON`]).
pub struct EntityType {
    pub table: &'static str,
    /// What the role's permission is called on the Permissions subtab.
    pub permission: &'static str,
    own: &'static [(&'static str, &'static str)],
}

impl EntityType {
    fn fields(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> + '_ {
        COMMON.iter().chain(self.own)
    }
}

const COMMON: [(&str, &str); 8] = [
    ("entityId", "entityid"),
    ("firstName", "firstname"),
    ("lastName", "lastname"),
    ("email", "email"),
    ("phone", "phone"),
    ("isInactive", "isinactive"),
    ("dateCreated", "datecreated"),
    ("lastModifiedDate", "lastmodifieddate"),
];

const CUSTOMER: EntityType = EntityType {
    table: "customer",
    permission: "Lists -> Customers",
    own: &[("companyName", "companyname"), ("isPerson", "isperson"), ("externalId", "externalid")],
};

const CONTACT: EntityType = EntityType {
    table: "contact",
    permission: "Lists -> Contacts",
    own: &[("title", "title"), ("externalId", "externalid")],
};

/// The record type named `name` in a record API path, when served here.
pub fn entity_type(name: &str) -> Option<&'static EntityType> {
    match name {
        "customer" => Some(&CUSTOMER),
        "contact" => Some(&CONTACT),
        _ => None,
    }
}

/// The record `id` (internal, or `eid:` external) as the record API shows
/// it; `wanted`: the `fields` asked for (lower case), all when None. None:
/// no such record.
pub fn render(
    conn: &Connection,
    kind: &EntityType,
    id: &RecordId,
    self_link: &str,
    wanted: Option<&[String]>,
) -> rusqlite::Result<Option<Map<String, Value>>> {
    let columns: Vec<&str> = kind.fields().map(|(_, c)| *c).collect();
    let (filter, key) = match id {
        RecordId::Internal(n) => ("id = ?1", Sql::Integer(*n)),
        RecordId::External(eid) => ("externalid = ?1", Sql::Text(eid.clone())),
    };
    let sql = format!("SELECT id, {} FROM {} WHERE {filter}", columns.join(", "), kind.table);
    let row = conn
        .query_row(&sql, [key], |r| {
            let mut values = Vec::with_capacity(columns.len() + 1);
            for i in 0..=columns.len() {
                values.push(r.get::<_, Sql>(i)?);
            }
            Ok(values)
        })
        .optional()?;
    let Some(values) = row else { return Ok(None) };
    let internal = match values[0] {
        Sql::Integer(n) => n,
        _ => 0,
    };
    let mut out = Map::new();
    out.insert("links".into(), json!([{ "rel": "self", "href": format!("{self_link}/{internal}") }]));
    out.insert("id".into(), json!(internal.to_string()));
    for ((name, column), value) in kind.fields().zip(&values[1..]) {
        if wanted.is_some_and(|w| !w.contains(&name.to_ascii_lowercase())) {
            continue;
        }
        let value = match value {
            Sql::Null => continue,
            Sql::Text(t) if t.is_empty() => continue,
            Sql::Text(t) if *column == "isinactive" || *column == "isperson" => json!(t == "T"),
            Sql::Text(t) => json!(t),
            Sql::Integer(secs) if column.ends_with("date") || *column == "datecreated" => json!(iso(*secs)),
            Sql::Integer(n) => json!(n),
            Sql::Real(x) => json!(x),
            Sql::Blob(_) => continue,
        };
        out.insert((*name).into(), value);
    }
    Ok(Some(out))
}

/// The answer to a role without view access to `kind`.
pub fn forbidden(kind: &EntityType) -> RestError {
    RestError::new(
        axum::http::StatusCode::FORBIDDEN,
        "INSUFFICIENT_PERMISSION",
        format!(
            "Permission Violation: You need the '{}' permission to access this page. Please contact your account \
             administrator.",
            kind.permission
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_reads_in_camel_case_with_utc_times_and_empty_fields_left_out() {
        let conn = super::super::db::open_in(&Default::default()).unwrap();
        conn.execute(
            "INSERT INTO customer (id, entityid, companyname, isperson, isinactive, datecreated, lastmodifieddate, \
             email) VALUES (7, 'CUST7', 'Acme', 'F', 'F', 0, 1765000000, '')",
            [],
        )
        .unwrap();
        let links = "https://sim/services/rest/record/v1/customer";
        let record = render(&conn, &CUSTOMER, &RecordId::Internal(7), links, None).unwrap().unwrap();
        assert_eq!(record["id"], json!("7"));
        assert_eq!(record["companyName"], json!("Acme"));
        assert_eq!(record["isPerson"], json!(false));
        assert_eq!(record["lastModifiedDate"], json!("2025-12-06T05:46:40Z"));
        assert!(!record.contains_key("email"), "{record:?}");
        let wanted = ["lastmodifieddate".to_string()];
        let picked = render(&conn, &CUSTOMER, &RecordId::Internal(7), links, Some(&wanted)).unwrap().unwrap();
        let keys: Vec<&str> = picked.keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "lastModifiedDate", "links"]);
        assert!(render(&conn, &CUSTOMER, &RecordId::Internal(8), links, None).unwrap().is_none());
    }
}
