//! The mapping file (TOML): its shape, checked when it is loaded so that a
//! bad file fails before any record is read, with the place named.

use crate::model::{ConnectorError, RecordKind, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    pub customer: Option<ObjectMapping>,
    pub contact: Option<ObjectMapping>,
    pub vendor: Option<ObjectMapping>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMapping {
    pub sobject: String,
    #[serde(default)]
    pub field: Vec<FieldMapping>,
    #[serde(default)]
    pub parent: Vec<ParentMapping>,
    /// Salesforce → NetSuite, for vendors: see [`super::writeback`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writeback: Option<super::writeback::WritebackMapping>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    pub target: String,
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub required: bool,
}

/// A link to a parent record by the parent's external id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentMapping {
    /// Relationship name on the child, e.g. `Account` or `Vendor__r`.
    pub relationship: String,
    /// The parent's object.
    pub sobject: String,
    /// The NetSuite column holding the parent's internal id.
    pub column: String,
    /// The lookup field behind the relationship, set to null when NetSuite
    /// names no parent; by default `X__c` for `X__r`, else `<relationship>Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ParentMapping {
    /// The lookup field that holds the link (`AccountId`, `Vendor__c`).
    pub fn lookup_field(&self) -> String {
        match (&self.field, self.relationship.strip_suffix("__r")) {
            (Some(f), _) => f.clone(),
            (None, Some(custom)) => format!("{custom}__c"),
            (None, None) => format!("{}Id", self.relationship),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Constant {
    Text(String),
    Bool(bool),
}

/// One way to fill a field; exactly one of the kind keys is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub copy: Option<String>,
    pub join: Option<Vec<String>>,
    pub first: Option<Vec<String>>,
    pub constant: Option<Constant>,
    pub value_map: Option<String>,
    pub flag: Option<String>,
    pub split: Option<String>,
    pub separator: Option<String>,
    pub index: Option<usize>,
    pub map: Option<BTreeMap<String, String>>,
    pub default: Option<String>,
    pub equals: Option<String>,
    pub when: Option<Condition>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub column: String,
    pub equals: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Trim,
    Upper,
    Lower,
    Title,
    Phone,
    CountryIso,
}

impl Rule {
    /// The rule's kind and what it reads, for errors and the audit trail.
    pub fn describe(&self) -> (String, String) {
        if let Some(c) = &self.copy {
            ("copy".into(), c.clone())
        } else if let Some(cols) = &self.join {
            ("join".into(), cols.join(" + "))
        } else if let Some(cols) = &self.first {
            ("first".into(), cols.join(" | "))
        } else if let Some(c) = &self.constant {
            ("constant".into(), format!("{c:?}"))
        } else if let Some(c) = &self.value_map {
            ("value-map".into(), c.clone())
        } else if let Some(c) = &self.flag {
            ("flag".into(), format!("{c} = '{}'", self.equals.as_deref().unwrap_or("T")))
        } else if let Some(c) = &self.split {
            ("split".into(), format!("{c}[{}]", self.index.unwrap_or(0)))
        } else {
            ("none".into(), String::new())
        }
    }

    /// Every NetSuite column the rule reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut cols: Vec<&str> = Vec::new();
        cols.extend(self.copy.as_deref());
        cols.extend(self.join.iter().flatten().map(String::as_str));
        cols.extend(self.first.iter().flatten().map(String::as_str));
        cols.extend(self.value_map.as_deref());
        cols.extend(self.flag.as_deref());
        cols.extend(self.split.as_deref());
        cols.extend(self.when.as_ref().map(|w| w.column.as_str()));
        cols
    }

    fn kinds(&self) -> usize {
        [
            self.copy.is_some(),
            self.join.is_some(),
            self.first.is_some(),
            self.constant.is_some(),
            self.value_map.is_some(),
            self.flag.is_some(),
            self.split.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count()
    }
}

/// A SuiteQL column name: lower-case letters, digits and `_`, so a mapping
/// can never put anything but a column into a query.
pub fn valid_column(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_api_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bad(place: &str, what: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Config(format!("mapping {place}: {what}"))
}

impl MappingFile {
    pub fn parse(text: &str) -> Result<MappingFile> {
        let file: MappingFile = toml::from_str(text)
            .map_err(|e| ConnectorError::Config(format!("the mapping file is not valid: {}", e.to_string().trim())))?;
        file.check()?;
        Ok(file)
    }

    pub fn object(&self, kind: RecordKind) -> Option<&ObjectMapping> {
        match kind {
            RecordKind::Customer => self.customer.as_ref(),
            RecordKind::Contact => self.contact.as_ref(),
            RecordKind::Vendor => self.vendor.as_ref(),
        }
    }

    fn check(&self) -> Result<()> {
        if RecordKind::ALL.iter().all(|k| self.object(*k).is_none()) {
            return Err(ConnectorError::Config(
                "the mapping file maps nothing: give it a [customer], [contact] or [vendor] section (leave the \
                 mapping unset for the shipped one)"
                    .into(),
            ));
        }
        for kind in RecordKind::ALL {
            let Some(object) = self.object(kind) else { continue };
            if !valid_api_name(&object.sobject) {
                return Err(bad(&format!("[{kind}]"), format!("`{}` is not a Salesforce object name", object.sobject)));
            }
            let mut targets = std::collections::HashSet::new();
            for (i, field) in object.field.iter().enumerate() {
                let place = format!("[{kind}] field {} ({})", i + 1, field.target);
                if !valid_api_name(&field.target) {
                    return Err(bad(&place, "the target is not a Salesforce field name"));
                }
                // Salesforce field names are case-insensitive.
                let target = field.target.to_ascii_lowercase();
                if target == super::EXTERNAL_ID_FIELD.to_ascii_lowercase() {
                    return Err(bad(&place, "the external id field is set by the connector; remove this field"));
                }
                if target == super::DELETED_FIELD.to_ascii_lowercase() {
                    return Err(bad(
                        &place,
                        "the deletion flag is set by the connector (`delete_action`); remove this field",
                    ));
                }
                if target == "id" {
                    return Err(bad(
                        &place,
                        "`Id` is the record id Salesforce gives; it cannot be written: remove this field",
                    ));
                }
                if !targets.insert(target) {
                    return Err(bad(&place, "the target appears twice"));
                }
                if field.rules.is_empty() {
                    return Err(bad(&place, "it has no rules"));
                }
                for (j, rule) in field.rules.iter().enumerate() {
                    let place = format!("{place} rule {}", j + 1);
                    if rule.kinds() != 1 {
                        return Err(bad(
                            &place,
                            "give exactly one of copy, join, first, constant, value_map, flag, split",
                        ));
                    }
                    if let Some(col) = rule.columns().into_iter().find(|c| !valid_column(c)) {
                        return Err(bad(&place, format!("`{col}` is not a SuiteQL column name")));
                    }
                    if rule.value_map.is_some() && rule.map.is_none() {
                        return Err(bad(&place, "value_map needs a `map` table"));
                    }
                }
            }
            if let Some(writeback) = &object.writeback {
                let place = format!("[{kind}.writeback]");
                if kind != RecordKind::Vendor {
                    return Err(bad(&place, "Salesforce → NetSuite is available for vendors only; remove the section"));
                }
                let forward: Vec<&str> = object.field.iter().map(|f| f.target.as_str()).collect();
                writeback.check(&place, &forward)?;
            }
            let mut lookups = std::collections::HashSet::new();
            let reserved = [
                "id".to_string(),
                super::EXTERNAL_ID_FIELD.to_ascii_lowercase(),
                super::DELETED_FIELD.to_ascii_lowercase(),
            ];
            for (i, parent) in object.parent.iter().enumerate() {
                let place = format!("[{kind}] parent {} ({})", i + 1, parent.relationship);
                let lookup = parent.lookup_field().to_ascii_lowercase();
                if reserved.contains(&lookup) {
                    return Err(bad(&place, format!("`{}` is not a lookup field", parent.lookup_field())));
                }
                if !lookups.insert(lookup) {
                    return Err(bad(&place, format!("another parent sets `{}` too", parent.lookup_field())));
                }
                if !lookups.insert(format!("relationship {}", parent.relationship.to_ascii_lowercase())) {
                    return Err(bad(
                        &place,
                        format!("another parent names relationship `{}` too", parent.relationship),
                    ));
                }
                if !valid_api_name(&parent.relationship)
                    || !valid_api_name(&parent.sobject)
                    || !valid_api_name(&parent.lookup_field())
                {
                    return Err(bad(&place, "relationship, sobject and field must be Salesforce API names"));
                }
                if !valid_column(&parent.column) {
                    return Err(bad(&place, format!("`{}` is not a SuiteQL column name", parent.column)));
                }
                // Both would be sent: the field's value and the link's, and
                // Salesforce takes one of them without saying which.
                if let Some(set) = [parent.lookup_field(), parent.relationship.clone()]
                    .into_iter()
                    .find(|f| targets.contains(&f.to_ascii_lowercase()))
                {
                    return Err(bad(
                        &place,
                        format!("`{set}` is a field's target too, but the parent link sets it: remove that field"),
                    ));
                }
            }
        }
        Ok(())
    }
}
