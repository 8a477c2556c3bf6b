//! Entity records (vendor, and through the same code customer and contact:
//! see [`RecordType`] and entity.rs) as the REST record API shows and takes
//! them (shared/reference/netsuite.md 5): camelCase fields matched without
//! regard to case, references as `{"id": ..}` objects, the `addressBook`
//! sublist with `addressBookAddress` subrecords, ISO 8601 UTC datetimes. The
//! data lives in the same tables SuiteQL reads (db.rs), so a write moves
//! `lastmodifieddate` and the connector's change reads see it.
//!
//! Simulated fields are a record type's `fields` plus `addressBook` where it
//! has one; other fields of NetSuite's schema are accepted and not stored,
//! read-only ones are ignored, any other name is unknown (refused when the
//! client asks for `X-NetSuite-PropertyNameValidation: Error`).
//!
//! request.rs reads a body into changes, store.rs writes them, render.rs
//! shows a record as GET answers it.

mod render;
mod request;
mod store;

pub use render::{Links, render, render_address_book, render_line_address};
pub use request::{Changes, Check, Checks, Replace, parse};
pub use store::{WriteContext, create, delete, ids_page, update};

use rusqlite::{Connection, OptionalExtension};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Text, with NetSuite's maximum length where the simulator knows it.
    Text(Option<usize>),
    /// Stored 'T'/'F' as SuiteQL shows it, a JSON boolean in REST.
    Bool,
    /// The internal id of a row of `table` (also the record type in links);
    /// [`ENTITY`]: a customer or a vendor.
    Reference(&'static str),
}

/// A reference to a company: a customer or a vendor (a contact's `company`).
pub(super) const ENTITY: &str = "entity";

/// What NetSuite requires of a record before it saves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Required {
    /// Company Name, or First and Last Name when `isPerson` (vendor, customer).
    CompanyOrPerson,
    /// A name: the entity id, or a Last Name to make one from (contact).
    PersonName,
}

/// A record type the record API writes: its table (also its name in URLs,
/// `deletedrecord.type` and links), fields and rules.
#[derive(Debug)]
pub struct RecordType {
    pub name: &'static str,
    pub fields: &'static [Field],
    /// Fields of NetSuite's schema accepted and not stored.
    pub(super) not_simulated: &'static [&'static str],
    /// Whether it has the `addressBook` sublist (tables `<name>addressbook`
    /// and `<name>addressbookentityaddress`).
    pub address_book: bool,
    pub(super) required: Required,
    /// What the role's permission is called on the Permissions subtab.
    pub permission: &'static str,
}

impl RecordType {
    pub fn field_named(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The `addressBook` lines' table (`customeraddressbook`, ...).
    pub(super) fn address_book_table(&self) -> String {
        format!("{}addressbook", self.name)
    }

    /// The `addressBookAddress` subrecords' table.
    pub(super) fn address_table(&self) -> String {
        format!("{}addressbookentityaddress", self.name)
    }
}

pub const VENDOR: RecordType = RecordType {
    name: "vendor",
    fields: FIELDS,
    not_simulated: NOT_SIMULATED,
    address_book: true,
    required: Required::CompanyOrPerson,
    permission: "Lists -> Vendors",
};

#[derive(Debug)]
pub struct Field {
    /// The REST name.
    pub name: &'static str,
    /// The SuiteQL column.
    pub column: &'static str,
    /// The label NetSuite names in "Please enter value(s) for".
    pub(super) label: &'static str,
    pub(super) kind: Kind,
}

pub(super) const fn field(name: &'static str, column: &'static str, label: &'static str, kind: Kind) -> Field {
    Field { name, column, label, kind }
}

pub const FIELDS: &[Field] = &[
    field("externalId", "externalid", "External ID", Kind::Text(None)),
    field("entityId", "entityid", "Vendor ID", Kind::Text(Some(83))),
    field("isPerson", "isperson", "Is Individual", Kind::Bool),
    field("companyName", "companyname", "Company Name", Kind::Text(Some(83))),
    field("firstName", "firstname", "First Name", Kind::Text(Some(32))),
    field("lastName", "lastname", "Last Name", Kind::Text(Some(32))),
    field("legalName", "legalname", "Legal Name", Kind::Text(None)),
    field("email", "email", "Email", Kind::Text(None)),
    field("phone", "phone", "Phone", Kind::Text(None)),
    field("altPhone", "altphone", "Alt. Phone", Kind::Text(None)),
    field("fax", "fax", "Fax", Kind::Text(None)),
    field("url", "url", "URL", Kind::Text(None)),
    field("accountNumber", "accountnumber", "Account Number", Kind::Text(None)),
    field("printOnCheckAs", "printoncheckas", "Print on Check As", Kind::Text(None)),
    field("comments", "comments", "Comments", Kind::Text(None)),
    field("isInactive", "isinactive", "Vendor is Inactive", Kind::Bool),
    field("terms", "terms", "Terms", Kind::Reference("term")),
    field("subsidiary", "subsidiary", "Primary Subsidiary", Kind::Reference("subsidiary")),
];

/// Set by NetSuite; a value sent for them is ignored.
pub(super) const READ_ONLY: &[&str] = &[
    "id",
    "links",
    "refName",
    "dateCreated",
    "lastModifiedDate",
    "defaultAddress",
    "defaultShippingAddress",
    "balance",
    "balancePrimary",
    "unbilledOrders",
    "unbilledOrdersPrimary",
    "prepaymentBalance",
    "predConfidence",
    "predictedDays",
];

/// Fields of NetSuite's vendor schema the simulator accepts and does not store.
const NOT_SIMULATED: &[&str] = &[
    "altEmail",
    "altName",
    "autoName",
    "bcn",
    "billingClass",
    "campaigns",
    "category",
    "contact",
    "contactList",
    "creditLimit",
    "currency",
    "currencyList",
    "customForm",
    "defaultBankAccount",
    "defaultTaxReg",
    "defaultVendorPaymentAccount",
    "eligibleForCommission",
    "emailPreference",
    "emailTransactions",
    "expenseAccount",
    "faxTransactions",
    "giveAccess",
    "globalSubscriptionStatus",
    "homePhone",
    "image",
    "incoterm",
    "is1099Eligible",
    "isAutogeneratedRepresentingEntity",
    "isJobResourceVend",
    "laborCost",
    "laborcategory",
    "manufacturingLocations",
    "middleName",
    "mobilePhone",
    "openingBalance",
    "openingBalanceAccount",
    "openingBalanceDate",
    "password",
    "password2",
    "payablesAccount",
    "phoneticName",
    "printTransactions",
    "purchaseOrderAmount",
    "purchaseOrderQuantity",
    "purchaseOrderQuantityDiff",
    "rate",
    "rates",
    "receiptAmount",
    "receiptQuantity",
    "receiptQuantityDiff",
    "representingSubsidiary",
    "requirePwdChange",
    "roles",
    "salutation",
    "sendEmail",
    "subscriptionMessageHistory",
    "subscriptions",
    "subsidiaryEdition",
    "taxIdNum",
    "taxItem",
    "taxRegistration",
    "title",
    "unsubscribe",
    "vatRegNumber",
    "workCalendar",
];

/// `addressBookAddress` fields: (REST name, column of `vendoraddressbookentityaddress`).
pub(super) const ADDRESS_FIELDS: &[(&str, &str)] = &[
    ("addressee", "addressee"),
    ("attention", "attention"),
    ("addr1", "addr1"),
    ("addr2", "addr2"),
    ("addr3", "addr3"),
    ("city", "city"),
    ("state", "state"),
    ("zip", "zip"),
    ("addrPhone", "addrphone"),
    ("country", "country"),
];
pub(super) const ADDRESS_IGNORED: &[&str] =
    &["addrText", "links", "refName", "lastModifiedDate", "externalId", "override"];
pub(super) const LINE_IGNORED: &[&str] =
    &["links", "addressBookAddress_text", "addressId", "refName", "lastModifiedDate"];
pub(super) const COLLECTION_IGNORED: &[&str] = &["links", "count", "hasMore", "offset", "totalResults"];

pub(super) fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// A record named in a URL: `123` or `eid:ABC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordId {
    Internal(i64),
    External(String),
}

impl RecordId {
    pub fn parse(segment: &str) -> Option<RecordId> {
        match segment.strip_prefix("eid:") {
            Some(eid) if !eid.is_empty() => Some(RecordId::External(eid.to_string())),
            Some(_) => None,
            None => segment.parse().ok().filter(|id| *id > 0).map(RecordId::Internal),
        }
    }
}

/// The internal id of the `rt` record `id` names, if there is one.
pub fn find(conn: &Connection, rt: &RecordType, id: &RecordId) -> rusqlite::Result<Option<i64>> {
    let table = rt.name;
    match id {
        RecordId::Internal(id) => {
            conn.query_row(&format!("SELECT id FROM {table} WHERE id = ?1"), [id], |r| r.get(0)).optional()
        }
        RecordId::External(eid) => {
            conn.query_row(&format!("SELECT id FROM {table} WHERE externalid = ?1"), [eid], |r| r.get(0)).optional()
        }
    }
}

/// An error a test asks NetSuite to raise for some vendor writes, as a
/// user event script or workflow validation would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorRejection {
    pub matches: VendorMatch,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorMatch {
    /// Updates of this internal id.
    Id(i64),
    /// Writes leaving the vendor with this external id.
    ExternalId(String),
    /// Writes leaving a field (REST name) holding this text.
    FieldContains { field: String, text: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netsuite::{db, suiteql};
    use render::iso;
    use serde_json::{Map, Value, json};

    fn ctx<'a>(now: i64, replace: &'a Replace) -> WriteContext<'a> {
        WriteContext { now, one_world: true, replace, rejections: &[] }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_created_vendor_reads_back_over_rest_and_suiteql() {
        let conn = db::open().unwrap();
        let changes = parse(
            &conn,
            &VENDOR,
            &body(json!({
                "companyname": "Acme Supply", "externalId": "SF-001", "email": "ap@acme.example",
                "terms": {"id": "2"}, "subsidiary": {"id": 1},
                "addressBook": {"items": [{"defaultBilling": true, "addressBookAddress":
                    {"addr1": "1 Main St", "city": "Austin", "state": "TX", "zip": "78701", "country": {"id": "US"}}}]}
            })),
            Checks::default(),
        )
        .unwrap();
        let replace = Replace::default();
        let id = create(&conn, &VENDOR, &changes, &ctx(1_767_225_600, &replace)).unwrap();
        let links = Links("http://sim/services/rest/record/v1");
        let v = render(&conn, &VENDOR, id, &links, true).unwrap().unwrap();
        assert_eq!(v["companyName"], "Acme Supply", "names match without regard to case");
        assert_eq!(v["entityId"], "Acme Supply", "the entity id defaults to the name");
        assert_eq!(v["terms"]["refName"], "Net 30");
        assert_eq!(v["terms"]["links"][0]["href"], "http://sim/services/rest/record/v1/term/2");
        assert_eq!(v["isInactive"], false);
        assert_eq!(v["lastModifiedDate"], "2026-01-01T00:00:00Z");
        assert_eq!(v["defaultAddress"], "1 Main St\nAustin TX 78701\nUnited States");
        let line = &v["addressBook"]["items"][0];
        assert_eq!((line["defaultBilling"].clone(), line["label"].clone()), (json!(true), json!("1 Main St")));
        assert_eq!(line["addressBookAddress"]["country"]["refName"], "United States");

        let page = suiteql::run(
            &conn,
            &format!(
                "SELECT v.externalid, BUILTIN.DF(v.terms) AS t, ba.city FROM vendor v
                 LEFT JOIN vendoraddressbookentityaddress ba ON ba.nkey = v.defaultbillingaddress WHERE v.id = {id}"
            ),
            10,
            0,
        )
        .unwrap();
        let items = page.items();
        assert_eq!(items[0]["externalid"], "SF-001");
        assert_eq!(items[0]["t"], "Net 30");
        assert_eq!(items[0]["city"], "Austin");
    }

    #[test]
    fn refusals_name_field_and_path() {
        let conn = db::open().unwrap();
        let strict = Checks { names: Check::Error, values: Check::Error };
        let e = parse(&conn, &VENDOR, &body(json!({"companyName": "A", "nope": 1, "terms": {"id": "99"}})), strict)
            .unwrap_err();
        let codes: Vec<(&str, &crate::netsuite::errors::At)> = e.details.iter().map(|d| (d.code, &d.at)).collect();
        assert!(codes.iter().any(|(c, _)| *c == "NONEXISTENT_FIELD"), "{e:?}");
        assert!(e.details.iter().any(|d| d.code == "INVALID_CONTENT" && d.detail.contains("Invalid Field Value 99")));
        // By default unknown names only warn; a read-only or unsimulated field is accepted.
        assert!(
            parse(&conn, &VENDOR, &body(json!({"nope": 1, "id": "5", "currency": {"id": "1"}})), Checks::default())
                .is_ok()
        );
        let e = parse(
            &conn,
            &VENDOR,
            &body(json!({"addressBook": {"items": [{"addressBookAddress": {"country": "usa"}}]}})),
            strict,
        )
        .unwrap_err();
        assert_eq!(
            e.details[0].at,
            crate::netsuite::errors::At::Path("addressBook.items[0].addressBookAddress.country".into())
        );

        let replace = Replace::default();
        let none = parse(&conn, &VENDOR, &body(json!({"email": "x@example.com"})), strict).unwrap();
        let e = create(&conn, &VENDOR, &none, &ctx(0, &replace)).unwrap_err();
        assert_eq!(e.details[0].code, "USER_ERROR");
        assert!(e.details[0].detail.ends_with("Please enter value(s) for: Company Name, Primary Subsidiary."), "{e:?}");
        let person =
            parse(&conn, &VENDOR, &body(json!({"isPerson": true, "subsidiary": {"id": "1"}})), strict).unwrap();
        let e = create(&conn, &VENDOR, &person, &ctx(0, &replace)).unwrap_err();
        assert!(e.details[0].detail.ends_with("Please enter value(s) for: First Name, Last Name."), "{e:?}");
        let long = parse(&conn, &VENDOR, &body(json!({"companyName": "x".repeat(84)})), strict).unwrap_err();
        assert!(long.details[0].detail.contains("maximum number ( 83 )"), "{long:?}");
    }

    #[test]
    fn updates_merge_address_lines_and_replace_them_when_asked() {
        let conn = db::open().unwrap();
        let replace = Replace::default();
        let first = parse(
            &conn,
            &VENDOR,
            &body(json!({"companyName": "A", "subsidiary": {"id": "1"},
                "addressBook": {"items": [{"defaultBilling": true, "addressBookAddress": {"addr1": "1 Old Rd", "city": "Leeds"}}]}})),
            Checks::default(),
        )
        .unwrap();
        let id = create(&conn, &VENDOR, &first, &ctx(10, &replace)).unwrap();
        let links = Links("");
        let line = render(&conn, &VENDOR, id, &links, true).unwrap().unwrap()["addressBook"]["items"][0]["id"].clone();
        let edit = parse(
            &conn,
            &VENDOR,
            &body(json!({"addressBook": {"items": [{"id": line, "addressBookAddress": {"city": "York"}}, {"addressBookAddress": {"addr1": "2 New St"}}]}})),
            Checks::default(),
        )
        .unwrap();
        update(&conn, &VENDOR, id, &edit, &ctx(20, &replace)).unwrap();
        let v = render(&conn, &VENDOR, id, &links, true).unwrap().unwrap();
        assert_eq!(v["addressBook"]["count"], 2, "a keyed line changes, an unkeyed one is added");
        assert_eq!(v["addressBook"]["items"][0]["addressBookAddress"]["city"], "York");
        assert_eq!(v["addressBook"]["items"][0]["addressBookAddress"]["addr1"], "1 Old Rd");
        assert_eq!(v["companyName"], "A", "fields the body leaves out stay");
        assert_eq!(v["lastModifiedDate"], iso(20));

        let replace_all = Replace::parse(&VENDOR, Some("addressBook"), false).unwrap();
        let only = parse(
            &conn,
            &VENDOR,
            &body(json!({"addressBook": {"items": [{"addressBookAddress": {"addr1": "3 Last Ln"}}]}})),
            Checks::default(),
        )
        .unwrap();
        update(&conn, &VENDOR, id, &only, &ctx(30, &replace_all)).unwrap();
        let v = render(&conn, &VENDOR, id, &links, true).unwrap().unwrap();
        assert_eq!(v["addressBook"]["count"], 1);
        assert!(v.get("defaultAddress").is_none(), "the default billing line was replaced");
        let bad_key =
            parse(&conn, &VENDOR, &body(json!({"addressBook": {"items": [{"id": 999}]}})), Checks::default()).unwrap();
        assert!(update(&conn, &VENDOR, id, &bad_key, &ctx(40, &replace)).is_err());
        assert!(Replace::parse(&VENDOR, Some("email"), false).is_err(), "a field needs replaceSelectedFields");
        let clear = Replace::parse(&VENDOR, Some("email"), true).unwrap();
        assert_eq!(clear.clear.len(), 1);
    }

    #[test]
    fn urls_name_records_by_internal_or_external_id() {
        assert_eq!(RecordId::parse("42"), Some(RecordId::Internal(42)));
        assert_eq!(RecordId::parse("eid:SF-1"), Some(RecordId::External("SF-1".into())));
        assert_eq!(RecordId::parse("eid:"), None);
        assert_eq!(RecordId::parse("abc"), None);
        assert_eq!(RecordId::parse("-3"), None);
    }
}
