//! A record (vendor, customer, contact) as the record API shows it: links, references with `refName`,
//! ISO 8601 UTC datetimes, empty fields left out, the address book linked
//! or written out.

use super::store::load;
use super::{ADDRESS_FIELDS, ENTITY, Kind, RecordType};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where rendered records point: `<base>/services/rest/record/v1`.
pub struct Links<'a>(pub &'a str);

impl Links<'_> {
    fn href(&self, path: &str) -> String {
        format!("{}/{path}", self.0)
    }

    fn own(&self, path: &str) -> Value {
        json!([{ "rel": "self", "href": self.href(path) }])
    }

    /// Where a write's `Location` header points: record `id` of `rt`.
    pub fn record(&self, rt: &RecordType, id: i64) -> String {
        self.href(&format!("{}/{id}", rt.name))
    }
}

/// Unix seconds as the record API writes datetimes: ISO 8601, UTC.
pub fn iso(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|d| d.format(&Rfc3339).ok()).unwrap_or_default()
}

fn country_name(code: &str) -> &str {
    match code {
        "US" => "United States",
        "CA" => "Canada",
        "GB" => "United Kingdom",
        "DE" => "Germany",
        "AU" => "Australia",
        "FR" => "France",
        "NL" => "Netherlands",
        "IE" => "Ireland",
        "MX" => "Mexico",
        "JP" => "Japan",
        other => other,
    }
}

struct AddressRow {
    line: i64,
    nkey: i64,
    label: Option<String>,
    default_billing: bool,
    default_shipping: bool,
    fields: Vec<(&'static str, String)>,
    modified: Option<i64>,
}

impl AddressRow {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The address as NetSuite prints it, one line per part.
    fn text(&self) -> String {
        let mut lines: Vec<String> = ["addressee", "attention", "addr1", "addr2", "addr3"]
            .iter()
            .filter_map(|n| self.get(n))
            .map(str::to_string)
            .collect();
        let place: Vec<&str> = ["city", "state", "zip"].iter().filter_map(|n| self.get(n)).collect();
        if !place.is_empty() {
            lines.push(place.join(" "));
        }
        if let Some(c) = self.get("country") {
            lines.push(country_name(c).to_string());
        }
        lines.join("\n")
    }
}

fn address_rows(conn: &Connection, rt: &RecordType, entity: i64) -> rusqlite::Result<Vec<AddressRow>> {
    if !rt.address_book {
        return Ok(Vec::new());
    }
    let columns: Vec<&str> = ADDRESS_FIELDS.iter().map(|(_, c)| *c).collect();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT b.internalid, b.addressbookaddress, b.label, b.defaultbilling, b.defaultshipping, a.lastmodifieddate, {}
         FROM {} b JOIN {} a ON a.nkey = b.addressbookaddress
         WHERE b.entity = ?1 ORDER BY b.internalid",
        columns.iter().map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", "),
        rt.address_book_table(),
        rt.address_table(),
    ))?;
    let rows = stmt.query_map([entity], |r| {
        let mut fields = Vec::new();
        for (i, (name, _)) in ADDRESS_FIELDS.iter().enumerate() {
            if let Some(v) = r.get::<_, Option<String>>(6 + i)? {
                fields.push((*name, v));
            }
        }
        Ok(AddressRow {
            line: r.get(0)?,
            nkey: r.get(1)?,
            label: r.get(2)?,
            default_billing: r.get::<_, String>(3)? == "T",
            default_shipping: r.get::<_, String>(4)? == "T",
            modified: r.get(5)?,
            fields,
        })
    })?;
    rows.collect()
}

fn render_address(a: &AddressRow, record: &str, links: &Links<'_>) -> Value {
    let mut out = Map::new();
    out.insert("links".into(), links.own(&format!("{record}/addressBook/{}/addressBookAddress", a.line)));
    for (name, value) in &a.fields {
        let v = if *name == "country" { json!({"id": value, "refName": country_name(value)}) } else { json!(value) };
        out.insert((*name).into(), v);
    }
    out.insert("addrText".into(), json!(a.text()));
    if let Some(m) = a.modified {
        out.insert("lastModifiedDate".into(), json!(iso(m)));
    }
    Value::Object(out)
}

/// `record`: the record's path, `vendor/12`.
fn render_line(a: &AddressRow, record: &str, links: &Links<'_>, expand: bool) -> Value {
    let address = if expand {
        render_address(a, record, links)
    } else {
        json!({ "links": links.own(&format!("{record}/addressBook/{}/addressBookAddress", a.line)) })
    };
    let mut line = json!({
        "links": links.own(&format!("{record}/addressBook/{}", a.line)),
        "addressBookAddress": address,
        "addressBookAddress_text": a.text(),
        "addressId": a.nkey.to_string(),
        "defaultBilling": a.default_billing,
        "defaultShipping": a.default_shipping,
        "id": a.line,
        "internalId": a.line,
    });
    if let Some(label) = &a.label {
        line["label"] = json!(label);
    }
    line
}

/// The `addressBook` sublist of a record as a collection.
pub fn render_address_book(
    conn: &Connection,
    rt: &RecordType,
    id: i64,
    links: &Links<'_>,
    expand: bool,
) -> rusqlite::Result<Value> {
    let rows = address_rows(conn, rt, id)?;
    let record = format!("{}/{id}", rt.name);
    Ok(json!({
        "links": links.own(&format!("{record}/addressBook")),
        "count": rows.len(),
        "hasMore": false,
        "items": rows.iter().map(|a| render_line(a, &record, links, expand)).collect::<Vec<_>>(),
        "offset": 0,
        "totalResults": rows.len(),
    }))
}

/// One line's `addressBookAddress` subrecord, if the record has that line.
pub fn render_line_address(
    conn: &Connection,
    rt: &RecordType,
    id: i64,
    line: i64,
    links: &Links<'_>,
) -> rusqlite::Result<Option<Value>> {
    let record = format!("{}/{id}", rt.name);
    Ok(address_rows(conn, rt, id)?.iter().find(|a| a.line == line).map(|a| render_address(a, &record, links)))
}

fn reference(conn: &Connection, table: &str, id: i64, links: &Links<'_>) -> rusqlite::Result<Value> {
    let (table, name): (&str, Option<String>) = if table == ENTITY {
        // A company: whichever of customer and vendor holds the id (entities share one id space).
        conn.query_row(
            "SELECT 'customer', entityid FROM customer WHERE id = ?1
             UNION ALL SELECT 'vendor', entityid FROM vendor WHERE id = ?1",
            [id],
            |r| Ok((if r.get::<_, String>(0)? == "vendor" { "vendor" } else { "customer" }, r.get(1)?)),
        )
        .optional()?
        .unwrap_or(("customer", None))
    } else {
        (table, conn.query_row(&format!("SELECT name FROM {table} WHERE id = ?1"), [id], |r| r.get(0)).optional()?)
    };
    let mut out = json!({ "links": links.own(&format!("{table}/{id}")), "id": id.to_string() });
    if let Some(name) = name {
        out["refName"] = json!(name);
    }
    Ok(out)
}

/// The record as `GET /record/v1/<type>/{id}` answers it (empty fields left
/// out); `expand` writes the address book out instead of linking it.
pub fn render(
    conn: &Connection,
    rt: &RecordType,
    id: i64,
    links: &Links<'_>,
    expand: bool,
) -> rusqlite::Result<Option<Map<String, Value>>> {
    let Some(row) = load(conn, rt, id).optional()? else {
        return Ok(None);
    };
    let billing = if rt.address_book { "defaultbillingaddress" } else { "NULL" };
    let (created, modified, billing): (i64, i64, Option<i64>) = conn.query_row(
        &format!("SELECT datecreated, lastmodifieddate, {billing} FROM {} WHERE id = ?1", rt.name),
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let record = format!("{}/{id}", rt.name);
    let mut out = Map::new();
    out.insert("links".into(), links.own(&record));
    out.insert("id".into(), json!(id.to_string()));
    for f in rt.fields {
        let value = match (f.kind, row.get(f.column)) {
            (_, None | Some(Sql::Null)) => continue,
            (_, Some(Sql::Text(t))) if t.is_empty() => continue,
            (Kind::Bool, Some(v)) => json!(matches!(v, Sql::Text(t) if t == "T")),
            (Kind::Reference(table), Some(Sql::Integer(rid))) => reference(conn, table, *rid, links)?,
            (_, Some(Sql::Text(t))) => json!(t),
            (_, Some(Sql::Integer(n))) => json!(n.to_string()),
            _ => continue,
        };
        out.insert(f.name.into(), value);
    }
    out.insert("dateCreated".into(), json!(iso(created)));
    out.insert("lastModifiedDate".into(), json!(iso(modified)));
    if !rt.address_book {
        return Ok(Some(out));
    }
    let rows = address_rows(conn, rt, id)?;
    if let Some(default) = billing.and_then(|nkey| rows.iter().find(|a| a.nkey == nkey)) {
        out.insert("defaultAddress".into(), json!(default.text()));
    }
    let book = if expand {
        render_address_book(conn, rt, id, links, true)?
    } else {
        json!({ "links": links.own(&format!("{record}/addressBook")) })
    };
    out.insert("addressBook".into(), book);
    Ok(Some(out))
}
