//! NetSuite record → Salesforce record. Pure functions: every target field
//! is written (null when NetSuite has no value, so clearing a value in
//! NetSuite clears it in Salesforce) and every rule that fired is recorded.

mod contact;
mod customer;
mod vendor;

use crate::model::{ConnectorError, MappedRecord, NetSuiteRecord, RecordKind, Result, SObjectRecord, Transformation};
use serde_json::{Map, Value};

/// The external id field on every target object.
pub const EXTERNAL_ID_FIELD: &str = "NetSuite_Id__c";
/// Checkbox set from NetSuite's `isinactive`.
pub const INACTIVE_FIELD: &str = "NetSuite_Inactive__c";
/// Checkbox set when the record is deleted in NetSuite (delete_action = flag).
pub const DELETED_FIELD: &str = "NetSuite_Deleted__c";

/// What the mapping of one kind writes, checked against Salesforce's
/// describe before the first write of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSpec {
    pub sobject: &'static str,
    /// Fields the mapping sets (the external id field included).
    pub fields: &'static [&'static str],
    /// Parent links: (relationship name, parent object).
    pub relationships: &'static [(&'static str, &'static str)],
}

pub fn target_spec(kind: RecordKind) -> TargetSpec {
    match kind {
        RecordKind::Customer => TargetSpec {
            sobject: "Account",
            fields: &[
                "Name",
                "Phone",
                "Email__c",
                "Payment_Terms__c",
                "BillingStreet",
                "BillingCity",
                "BillingState",
                "BillingPostalCode",
                "BillingCountry",
                "ShippingStreet",
                "ShippingCity",
                "ShippingState",
                "ShippingPostalCode",
                "ShippingCountry",
                INACTIVE_FIELD,
                EXTERNAL_ID_FIELD,
            ],
            relationships: &[],
        },
        RecordKind::Contact => TargetSpec {
            sobject: "Contact",
            fields: &["FirstName", "LastName", "Email", "Phone", "Title", INACTIVE_FIELD, EXTERNAL_ID_FIELD],
            relationships: &[("Account", "Account"), ("Vendor__r", "Vendor__c")],
        },
        RecordKind::Vendor => TargetSpec {
            sobject: "Vendor__c",
            fields: &[
                "Name",
                "Email__c",
                "Phone__c",
                "Payment_Terms__c",
                "Street__c",
                "City__c",
                "State__c",
                "Postal_Code__c",
                "Country__c",
                INACTIVE_FIELD,
                EXTERNAL_ID_FIELD,
            ],
            relationships: &[],
        },
    }
}

/// The Salesforce object a NetSuite record kind lands in.
pub fn target_sobject(kind: RecordKind) -> &'static str {
    target_spec(kind).sobject
}

/// The partial record that marks a NetSuite deletion: only the flag changes.
pub fn deletion_flag(kind: RecordKind, id: &str) -> SObjectRecord {
    let mut fields = Map::new();
    fields.insert(DELETED_FIELD.into(), Value::Bool(true));
    fields.insert(EXTERNAL_ID_FIELD.into(), Value::String(id.into()));
    SObjectRecord {
        sobject: target_sobject(kind).into(),
        external_id_field: EXTERNAL_ID_FIELD.into(),
        external_id: id.into(),
        fields,
    }
}

pub fn map(record: &NetSuiteRecord) -> Result<MappedRecord> {
    match record.kind {
        RecordKind::Customer => customer::map(record),
        RecordKind::Contact => contact::map(record),
        RecordKind::Vendor => vendor::map(record),
    }
}

/// Collects target fields and the transformations that produced them.
struct Target<'r> {
    source: &'r NetSuiteRecord,
    fields: Map<String, Value>,
    transformations: Vec<Transformation>,
}

impl<'r> Target<'r> {
    fn new(source: &'r NetSuiteRecord) -> Self {
        Target { source, fields: Map::new(), transformations: Vec::new() }
    }

    fn set(&mut self, field: &str, value: Option<String>, rule: &str, detail: impl Into<String>) {
        self.fields.insert(field.to_string(), value.map_or(Value::Null, Value::String));
        self.transformations.push(Transformation { field: field.into(), rule: rule.into(), detail: detail.into() });
    }

    /// Copies a column, trimmed.
    fn copy(&mut self, field: &str, column: &str) {
        let value = self.source.field(column).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        self.set(field, value, "copy", column);
    }

    /// Joins address lines with a newline, skipping empty ones.
    fn join_lines(&mut self, field: &str, columns: &[&str]) {
        let lines: Vec<&str> =
            columns.iter().filter_map(|c| self.source.field(c)).map(str::trim).filter(|l| !l.is_empty()).collect();
        let value = (!lines.is_empty()).then(|| lines.join("\n"));
        self.set(field, value, "join-lines", columns.join(" + "));
    }

    /// A billing or shipping address from the `<prefix>addr1`... columns.
    fn address(&mut self, target_prefix: &str, column_prefix: &str) {
        let c = |name: &str| format!("{column_prefix}{name}");
        self.join_lines(&format!("{target_prefix}Street"), &[&c("addr1"), &c("addr2")]);
        self.copy(&format!("{target_prefix}City"), &c("city"));
        self.copy(&format!("{target_prefix}State"), &c("state"));
        self.copy(&format!("{target_prefix}PostalCode"), &c("zip"));
        self.copy(&format!("{target_prefix}Country"), &c("country"));
    }

    fn finish(mut self, sobject: &str) -> MappedRecord {
        let inactive = self.source.field("isinactive") == Some("T");
        self.fields.insert(INACTIVE_FIELD.into(), Value::Bool(inactive));
        self.transformations.push(Transformation {
            field: INACTIVE_FIELD.into(),
            rule: "flag".into(),
            detail: "isinactive = 'T'".into(),
        });
        let mut fields = self.fields;
        fields.insert(EXTERNAL_ID_FIELD.into(), Value::String(self.source.id.clone()));
        let mut transformations = self.transformations;
        transformations.push(Transformation {
            field: EXTERNAL_ID_FIELD.into(),
            rule: "external-id".into(),
            detail: "id".into(),
        });
        MappedRecord {
            source_kind: self.source.kind,
            source_id: self.source.id.clone(),
            target: SObjectRecord {
                sobject: sobject.into(),
                external_id_field: EXTERNAL_ID_FIELD.into(),
                external_id: self.source.id.clone(),
                fields,
            },
            transformations,
        }
    }
}

fn required_missing(record: &NetSuiteRecord, target: &str, tried: &str) -> ConnectorError {
    ConnectorError::NetSuite(format!(
        "{} {} cannot be mapped: {target} is required in Salesforce but {tried} are all empty in NetSuite. \
         Fill one of them in NetSuite; the record is retried on its next change",
        record.kind, record.id
    ))
}

#[cfg(test)]
pub(crate) fn record(kind: RecordKind, id: &str, fields: &[(&str, &str)]) -> NetSuiteRecord {
    NetSuiteRecord {
        kind,
        id: id.into(),
        last_modified: "2026-01-01 00:00:00".into(),
        fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn each_spec_lists_exactly_what_the_mapping_writes() {
        let full = [
            ("companyname", "Acme"),
            ("entityid", "E"),
            ("lastname", "L"),
            ("companycustomer", "1"),
            ("companyvendor", "2"),
        ];
        for kind in RecordKind::ALL {
            let spec = target_spec(kind);
            let m = map(&record(kind, "1", &full)).unwrap();
            assert_eq!(m.target.sobject, spec.sobject);
            let mut written: Vec<&str> = m.target.fields.keys().map(String::as_str).collect();
            let relationships: Vec<&str> = spec.relationships.iter().map(|(r, _)| *r).collect();
            written.retain(|f| !relationships.contains(f));
            let mut expected = spec.fields.to_vec();
            written.sort_unstable();
            expected.sort_unstable();
            assert_eq!(written, expected, "{kind}");
        }
    }
}
