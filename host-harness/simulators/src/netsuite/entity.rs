//! The customer and contact record types of the record API
//! (shared/reference/netsuite.md 3.1, 3.2 and 5): their fields, read and
//! written by the same code as vendors ([`super::vendor`]) in the tables
//! SuiteQL reads. Customers have the `addressBook` sublist
//! (`customeraddressbook`, `customeraddressbookentityaddress`); a contact's
//! `company` is a customer or a vendor. A contact's own address book is not
//! simulated (accepted and not stored).

use super::errors::RestError;
use super::vendor::{ENTITY, Field, Kind, RecordType, Required, VENDOR, field};

const CUSTOMER_FIELDS: &[Field] = &[
    field("externalId", "externalid", "External ID", Kind::Text(None)),
    field("entityId", "entityid", "Customer ID", Kind::Text(Some(83))),
    field("isPerson", "isperson", "Is Individual", Kind::Bool),
    field("companyName", "companyname", "Company Name", Kind::Text(Some(83))),
    field("firstName", "firstname", "First Name", Kind::Text(Some(32))),
    field("lastName", "lastname", "Last Name", Kind::Text(Some(32))),
    field("email", "email", "Email", Kind::Text(None)),
    field("phone", "phone", "Phone", Kind::Text(None)),
    field("altPhone", "altphone", "Alt. Phone", Kind::Text(None)),
    field("fax", "fax", "Fax", Kind::Text(None)),
    field("url", "url", "Web Address", Kind::Text(None)),
    field("isInactive", "isinactive", "Inactive", Kind::Bool),
    field("terms", "terms", "Terms", Kind::Reference("term")),
    field("currency", "currency", "Currency", Kind::Reference("currency")),
    field("subsidiary", "subsidiary", "Primary Subsidiary", Kind::Reference("subsidiary")),
];

/// Fields of NetSuite's customer schema the simulator accepts and does not store.
const CUSTOMER_NOT_SIMULATED: &[&str] = &[
    "accountNumber",
    "altEmail",
    "category",
    "comments",
    "contactList",
    "creditHoldOverride",
    "creditLimit",
    "currencyList",
    "customForm",
    "emailPreference",
    "emailTransactions",
    "entityStatus",
    "faxTransactions",
    "globalSubscriptionStatus",
    "homePhone",
    "isBudgetApproved",
    "language",
    "middleName",
    "mobilePhone",
    "parent",
    "priceLevel",
    "printTransactions",
    "receivablesAccount",
    "salesRep",
    "salutation",
    "shipComplete",
    "taxable",
    "territory",
    "title",
    "vatRegNumber",
];

const CONTACT_FIELDS: &[Field] = &[
    field("externalId", "externalid", "External ID", Kind::Text(None)),
    field("entityId", "entityid", "Contact", Kind::Text(Some(83))),
    field("firstName", "firstname", "First Name", Kind::Text(Some(32))),
    field("lastName", "lastname", "Last Name", Kind::Text(Some(32))),
    field("email", "email", "Email", Kind::Text(None)),
    field("phone", "phone", "Phone", Kind::Text(None)),
    field("mobilePhone", "mobilephone", "Mobile Phone", Kind::Text(None)),
    field("officePhone", "officephone", "Office Phone", Kind::Text(None)),
    field("title", "title", "Job Title", Kind::Text(None)),
    field("isInactive", "isinactive", "Inactive", Kind::Bool),
    field("company", "company", "Company", Kind::Reference(ENTITY)),
    field("subsidiary", "subsidiary", "Subsidiary", Kind::Reference("subsidiary")),
];

/// Fields of NetSuite's contact schema the simulator accepts and does not store.
const CONTACT_NOT_SIMULATED: &[&str] = &[
    "addressBook",
    "altEmail",
    "assistant",
    "assistantPhone",
    "category",
    "comments",
    "contactRole",
    "contactSource",
    "customForm",
    "fax",
    "globalSubscriptionStatus",
    "homePhone",
    "image",
    "middleName",
    "salutation",
    "supervisor",
    "supervisorPhone",
];

pub const CUSTOMER: RecordType = RecordType {
    name: "customer",
    fields: CUSTOMER_FIELDS,
    not_simulated: CUSTOMER_NOT_SIMULATED,
    address_book: true,
    required: Required::CompanyOrPerson,
    permission: "Lists -> Customers",
};

pub const CONTACT: RecordType = RecordType {
    name: "contact",
    fields: CONTACT_FIELDS,
    not_simulated: CONTACT_NOT_SIMULATED,
    address_book: false,
    required: Required::PersonName,
    permission: "Lists -> Contacts",
};

/// The record type named `name` in a record API path, when served here.
pub fn record_type(name: &str) -> Option<&'static RecordType> {
    match name {
        "vendor" => Some(&VENDOR),
        "customer" => Some(&CUSTOMER),
        "contact" => Some(&CONTACT),
        _ => None,
    }
}

/// The answer to a role whose permission on `rt` is below what a request needs.
pub fn forbidden(rt: &RecordType, none: bool) -> RestError {
    let detail = if none {
        format!(
            "Permission Violation: You need the '{}' permission to access this page. Please contact your account \
             administrator.",
            rt.permission
        )
    } else {
        format!(
            "Permission Violation: You need a higher level of the '{}' permission to access this page. Please \
             contact your account administrator.",
            rt.permission
        )
    };
    RestError::new(axum::http::StatusCode::FORBIDDEN, "INSUFFICIENT_PERMISSION", detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netsuite::vendor::{Links, render};
    use serde_json::json;

    #[test]
    fn a_customer_reads_in_camel_case_with_utc_times_and_empty_fields_left_out() {
        let conn = super::super::db::open_in(&Default::default()).unwrap();
        conn.execute(
            "INSERT INTO customer (id, entityid, companyname, isperson, isinactive, datecreated, lastmodifieddate, \
             email) VALUES (7, 'CUST7', 'Acme', 'F', 'F', 0, 1765000000, '')",
            [],
        )
        .unwrap();
        let links = Links("https://sim/services/rest/record/v1");
        let record = render(&conn, &CUSTOMER, 7, &links, false).unwrap().unwrap();
        assert_eq!(record["id"], json!("7"));
        assert_eq!(record["companyName"], json!("Acme"));
        assert_eq!(record["isPerson"], json!(false));
        assert_eq!(record["lastModifiedDate"], json!("2025-12-06T05:46:40Z"));
        assert_eq!(record["links"][0]["href"], json!("https://sim/services/rest/record/v1/customer/7"));
        assert!(!record.contains_key("email"), "{record:?}");
        assert!(render(&conn, &CUSTOMER, 8, &links, false).unwrap().is_none());
    }
}
