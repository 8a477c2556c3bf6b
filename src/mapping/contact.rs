//! contact → Contact, linked to its parent Account by the parent's external id.

use super::{EXTERNAL_ID_FIELD, Target, required_missing};
use crate::model::{MappedRecord, NetSuiteRecord, Result};
use serde_json::json;

pub fn map(record: &NetSuiteRecord) -> Result<MappedRecord> {
    let mut t = Target::new(record);
    t.copy("FirstName", "firstname");
    match (record.field("lastname"), record.field("entityid")) {
        (Some(last), _) => t.set("LastName", Some(last.trim().to_string()), "copy", "lastname"),
        (None, Some(entity)) => t.set("LastName", Some(entity.trim().to_string()), "fallback", "entityid"),
        (None, None) => return Err(required_missing(record, "Contact.LastName", "lastname and entityid")),
    }
    t.copy("Email", "email");
    t.copy("Phone", "phone");
    t.copy("Title", "title");
    // Parents by external id: Salesforce resolves them, no Salesforce id needed.
    let parent = match (record.field("companycustomer"), record.field("companyvendor")) {
        (Some(customer), _) => Some(("Account", customer, "company (a customer) → Account")),
        (None, Some(vendor)) => Some(("Vendor__r", vendor, "company (a vendor) → Vendor__c")),
        _ => None,
    };
    if let Some((relationship, id, detail)) = parent {
        t.fields.insert(relationship.into(), json!({ EXTERNAL_ID_FIELD: id }));
        t.transformations.push(crate::model::Transformation {
            field: relationship.into(),
            rule: "parent-link".into(),
            detail: format!("{detail}.{EXTERNAL_ID_FIELD}"),
        });
    }
    Ok(t.finish("Contact"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::record;
    use crate::model::RecordKind;

    #[test]
    fn contact_links_to_parent_by_external_id() {
        let r = record(
            RecordKind::Contact,
            "5",
            &[("firstname", "Grace"), ("lastname", "Hopper"), ("company", "42"), ("companycustomer", "42")],
        );
        let m = map(&r).unwrap();
        assert_eq!(m.target.fields["Account"], json!({"NetSuite_Id__c": "42"}));
        assert_eq!(m.target.fields["LastName"], json!("Hopper"));

        let v = record(RecordKind::Contact, "6", &[("lastname", "Ng"), ("company", "77"), ("companyvendor", "77")]);
        let m = map(&v).unwrap();
        assert_eq!(m.target.fields["Vendor__r"], json!({"NetSuite_Id__c": "77"}));
        assert!(!m.target.fields.contains_key("Account"));
    }

    #[test]
    fn contact_without_last_name_or_entity_id_is_refused() {
        let err = map(&record(RecordKind::Contact, "6", &[("firstname", "X")])).unwrap_err().to_string();
        assert!(err.contains("Contact.LastName"), "{err}");
    }
}
