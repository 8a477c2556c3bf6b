//! vendor → Vendor__c.

use super::{Target, required_missing};
use crate::model::{MappedRecord, NetSuiteRecord, Result};

pub fn map(record: &NetSuiteRecord) -> Result<MappedRecord> {
    let mut t = Target::new(record);
    let name = match (record.field("companyname"), record.field("entityid")) {
        (Some(n), _) => (n.trim().to_string(), "copy", "companyname"),
        (None, Some(e)) => (e.trim().to_string(), "fallback", "entityid"),
        (None, None) => return Err(required_missing(record, "Vendor__c.Name", "companyname and entityid")),
    };
    t.set("Name", Some(name.0), name.1, name.2);
    t.copy("Email__c", "email");
    t.copy("Phone__c", "phone");
    t.copy("Payment_Terms__c", "termsname");
    t.join_lines("Street__c", &["billaddr1", "billaddr2"]);
    t.copy("City__c", "billcity");
    t.copy("State__c", "billstate");
    t.copy("Postal_Code__c", "billzip");
    t.copy("Country__c", "billcountry");
    Ok(t.finish("Vendor__c"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::record;
    use crate::model::RecordKind;
    use serde_json::json;

    #[test]
    fn vendor_maps_to_custom_object() {
        let m = map(&record(RecordKind::Vendor, "3", &[("companyname", "Parts Ltd"), ("billcity", "Leeds")])).unwrap();
        assert_eq!(m.target.sobject, "Vendor__c");
        assert_eq!(m.target.fields["City__c"], json!("Leeds"));
    }
}
