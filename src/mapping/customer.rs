//! customer → Account.

use super::{Target, required_missing};
use crate::model::{MappedRecord, NetSuiteRecord, Result};

pub fn map(record: &NetSuiteRecord) -> Result<MappedRecord> {
    let mut t = Target::new(record);
    let person = record.field("isperson") == Some("T");
    let name = if person {
        let parts: Vec<&str> =
            ["firstname", "lastname"].iter().filter_map(|c| record.field(c)).map(str::trim).collect();
        (!parts.is_empty()).then(|| (parts.join(" "), "join-name", "firstname + lastname"))
    } else {
        record.field("companyname").map(|n| (n.trim().to_string(), "copy", "companyname"))
    };
    let (name, rule, detail) = match name.filter(|(n, _, _)| !n.is_empty()) {
        Some(found) => found,
        None => match record.field("entityid") {
            Some(entity) => (entity.trim().to_string(), "fallback", "entityid"),
            None => {
                return Err(required_missing(record, "Account.Name", "companyname, firstname/lastname and entityid"));
            }
        },
    };
    t.set("Name", Some(name), rule, detail);
    t.copy("Phone", "phone");
    t.copy("Email__c", "email");
    t.copy("Payment_Terms__c", "termsname");
    t.address("Billing", "bill");
    t.address("Shipping", "ship");
    Ok(t.finish("Account"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::record;
    use crate::model::RecordKind;
    use serde_json::json;

    #[test]
    fn company_with_addresses_and_terms() {
        let r = record(
            RecordKind::Customer,
            "42",
            &[
                ("companyname", " Acme Corp "),
                ("isperson", "F"),
                ("phone", "+1 555 0100"),
                ("termsname", "Net 30"),
                ("billaddr1", "1 Main St"),
                ("billaddr2", "Suite 5"),
                ("billcity", "Springfield"),
                ("billcountry", "US"),
                ("shipaddr1", "2 Dock Rd"),
            ],
        );
        let m = map(&r).unwrap();
        let f = &m.target.fields;
        assert_eq!(m.target.sobject, "Account");
        assert_eq!(m.target.external_id, "42");
        assert_eq!(f["Name"], json!("Acme Corp"));
        assert_eq!(f["BillingStreet"], json!("1 Main St\nSuite 5"));
        assert_eq!(f["ShippingStreet"], json!("2 Dock Rd"));
        assert_eq!(f["ShippingCity"], json!(null));
        assert_eq!(f["Payment_Terms__c"], json!("Net 30"));
        assert_eq!(f["NetSuite_Id__c"], json!("42"));
        assert!(m.transformations.iter().any(|t| t.field == "BillingStreet" && t.rule == "join-lines"));
    }

    #[test]
    fn person_customer_uses_first_and_last_name() {
        let r = record(RecordKind::Customer, "7", &[("isperson", "T"), ("firstname", "Ada"), ("lastname", "Lovelace")]);
        let m = map(&r).unwrap();
        assert_eq!(m.target.fields["Name"], json!("Ada Lovelace"));
    }

    #[test]
    fn nameless_customer_falls_back_then_fails_clearly() {
        let r = record(RecordKind::Customer, "8", &[("entityid", "CUST-8")]);
        assert_eq!(map(&r).unwrap().target.fields["Name"], json!("CUST-8"));
        let err = map(&record(RecordKind::Customer, "9", &[])).unwrap_err().to_string();
        assert!(err.contains("customer 9") && err.contains("Account.Name"), "{err}");
    }
}
