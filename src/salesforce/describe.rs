//! Describe: what Salesforce says about an object's fields, and the checks a
//! mapping must pass before the first write of a run.

use crate::http::{HttpRequest, Method};
use crate::mapping::TargetSpec;
use crate::model::{ConnectorError, Result};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Describe {
    pub name: String,
    /// The first three characters of the object's record ids.
    #[serde(default)]
    pub key_prefix: Option<String>,
    pub fields: Vec<FieldDescribe>,
    #[serde(default)]
    pub child_relationships: Vec<ChildRelationship>,
}

/// A lookup from another object to the described one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRelationship {
    #[serde(rename = "childSObject")]
    pub child_sobject: String,
    pub field: String,
    #[serde(default)]
    pub cascade_delete: bool,
}

/// A lookup (child object, field) whose records Salesforce deletes along
/// with the record they look up to (an Account's Contacts, master-detail).
pub type Cascade = (String, String);

/// What a passed check learned of the object.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub cascades: Vec<Cascade>,
    /// Its ids' first three characters, when Salesforce gives them: an id
    /// kept from when the mapping wrote another object does not have them.
    pub key_prefix: Option<String>,
}

impl Checked {
    /// Whether `id` may be a record of this object (true when unknown).
    /// Prefixes are case-sensitive (`a0A` and `a0a` are two objects), and
    /// the first three characters of an id are the same in both its forms.
    pub fn holds(&self, id: &str) -> bool {
        self.key_prefix.as_deref().is_none_or(|p| id.starts_with(p))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    pub name: String,
    /// `string` for Text; absent in a trimmed answer (then not checked).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub relationship_name: Option<String>,
    #[serde(default)]
    pub reference_to: Vec<String>,
}

impl Describe {
    /// The lookups to this object that deletion cascades along.
    pub fn cascades(&self) -> Vec<Cascade> {
        self.child_relationships
            .iter()
            .filter(|c| c.cascade_delete)
            .map(|c| (c.child_sobject.clone(), c.field.clone()))
            .collect()
    }

    fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// Problems with writing `spec` (plus `extra` fields) into the described
/// object, each naming the object and field and saying what to change.
pub fn check(describe: &Describe, spec: &TargetSpec, extra: &[&str], external_id_field: &str) -> Vec<String> {
    let object = &describe.name;
    let mut problems = Vec::new();
    match describe.field(external_id_field) {
        None => problems.push(format!(
            "{object}.{external_id_field} does not exist or is not visible to the integration user: create it as \
             Text(18), External ID, Unique"
        )),
        Some(f) if !f.external_id => problems.push(format!(
            "{object}.{external_id_field} is not an External ID field: mark it External ID and Unique, or upserts \
             cannot key on it"
        )),
        Some(f) if !f.unique => problems.push(format!(
            "{object}.{external_id_field} is an External ID but not Unique: mark it Unique, or duplicates become \
             possible and upserts answer 300 Multiple Choices"
        )),
        // Ids are written, queried (`IN ('42')`) and read back as text: a
        // Number field would refuse the quoted values of every lookup.
        Some(FieldDescribe { kind: Some(kind), .. }) if kind != "string" => problems.push(format!(
            "{object}.{external_id_field} is a field of type {kind}: NetSuite ids are written and matched as text; \
             create it as Text(18), External ID, Unique"
        )),
        // Every row carries it: read-only, every record would fail on its own.
        Some(f) if !(f.createable && f.updateable) => problems.push(format!(
            "{object}.{external_id_field} is not createable and updateable by the integration user: grant edit \
             access in field-level security (every upsert writes the NetSuite id into it)"
        )),
        Some(_) => {}
    }
    for name in spec.fields.iter().map(String::as_str).chain(extra.iter().copied()).filter(|f| *f != external_id_field)
    {
        match describe.field(name) {
            None => problems.push(format!(
                "{object}.{name} does not exist or is not visible to the integration user: create it or grant \
                 field-level security"
            )),
            Some(f) if !(f.createable && f.updateable) => problems.push(format!(
                "{object}.{name} is not createable and updateable by the integration user: grant edit access in \
                 field-level security"
            )),
            Some(_) => {}
        }
    }
    for link in &spec.relationships {
        let (relationship, parent) = (&link.relationship, &link.sobject);
        let found = describe.fields.iter().find(|f| {
            f.relationship_name.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(relationship))
                && f.reference_to.iter().any(|t| t.eq_ignore_ascii_case(parent))
        });
        match found {
            None => problems.push(format!(
                "{object} has no lookup with relationship name {relationship} to {parent}: create the lookup field"
            )),
            Some(f) if !(f.createable && f.updateable) => problems.push(format!(
                "{object}.{} (relationship {relationship}) is not editable by the integration user",
                f.name
            )),
            Some(f) if !f.name.eq_ignore_ascii_case(&link.field) => problems.push(format!(
                "{object}.{} is the lookup behind relationship {relationship}, but the mapping clears {} when \
                 NetSuite names no parent: set `field = \"{}\"` on that parent in the mapping",
                f.name, link.field, f.name
            )),
            Some(_) => {}
        }
    }
    problems
}

impl super::SalesforceSink<'_> {
    /// Fails before any write if the object cannot take what the mapping
    /// writes; else answers the lookups to it that its deletion cascades
    /// along and its ids' prefix. A passed check is remembered for
    /// `describe_ttl_secs` (in a dry run's read-only state: not at all).
    pub fn validate(&self, spec: &TargetSpec, extra: &[&str]) -> Result<Checked> {
        let key = format!("describe/{}", spec.sobject);
        // A check passed in one org says nothing about another.
        let fingerprint = format!("{}{:?}{:?}", self.org()?, spec, extra);
        let now = self.api.host.clock.now_unix();
        let cached =
            self.api.host.state.get(&key).ok().flatten().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(c) = cached {
            let fresh = c["checked_at"].as_i64().is_some_and(|t| now - t < self.settings.describe_ttl_secs);
            // A stamp from before cascades or key prefixes were kept is
            // checked afresh.
            let cascades = serde_json::from_value::<Vec<Cascade>>(c["cascades"].clone());
            let key_prefix = c.get("key_prefix").map(|p| p.as_str().map(str::to_string));
            if let (true, true, Ok(cascades), Some(key_prefix)) =
                (fresh, c["fingerprint"].as_str() == Some(fingerprint.as_str()), cascades, key_prefix)
            {
                return Ok(Checked { cascades, key_prefix });
            }
        }
        let response = self.send(|s| {
            HttpRequest::new(Method::Get, self.api_url(s, &format!("/sobjects/{}/describe", spec.sobject)))
        })?;
        if !response.is_success() {
            return Err(ConnectorError::Config(super::errors::describe(
                &format!(
                    "Describe of {} (is the object deployed and visible to the integration user, and is \
                     `salesforce_api_version` {} one the org offers?)",
                    spec.sobject, self.settings.api_version
                ),
                &response,
            )));
        }
        let described: Describe = serde_json::from_slice(&response.body).map_err(|e| {
            ConnectorError::Salesforce(format!("describe of {} answered with an unexpected body ({e})", spec.sobject))
        })?;
        let problems = check(&described, spec, extra, crate::mapping::EXTERNAL_ID_FIELD);
        if !problems.is_empty() {
            return Err(ConnectorError::Config(format!(
                "Salesforce cannot take what the mapping writes, so nothing was written: {}",
                problems.join("; ")
            )));
        }
        let cascades = described.cascades();
        let key_prefix = described.key_prefix.filter(|p| !p.is_empty());
        let stamp = serde_json::json!({
            "checked_at": now, "fingerprint": fingerprint, "cascades": cascades, "key_prefix": key_prefix,
        })
        .to_string();
        self.api
            .host
            .state
            .set(&key, stamp.as_bytes())
            .map_err(|e| ConnectorError::Transport(format!("could not save `{key}` to the state store: {e}")))?;
        Ok(Checked { cascades, key_prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use crate::model::RecordKind;
    use serde_json::json;

    fn describe(fields: serde_json::Value) -> Describe {
        serde_json::from_value(json!({ "name": "Contact", "fields": fields })).unwrap()
    }

    fn field(name: &str) -> serde_json::Value {
        json!({ "name": name, "createable": true, "updateable": true })
    }

    #[test]
    fn cascades_are_the_child_relationships_deletion_takes_along() {
        let account: Describe = serde_json::from_value(json!({
            "name": "Account",
            "fields": [],
            "childRelationships": [
                {"cascadeDelete": true, "childSObject": "Contact", "field": "AccountId", "relationshipName": "Contacts"},
                {"cascadeDelete": false, "childSObject": "Vendor__c", "field": "Account__c", "relationshipName": null},
            ],
        }))
        .unwrap();
        assert_eq!(account.cascades(), vec![("Contact".to_string(), "AccountId".to_string())]);
        // An older API version, or a trimmed answer, lists none.
        assert!(describe(json!([])).cascades().is_empty());
    }

    #[test]
    fn a_complete_object_passes_and_each_gap_is_named() {
        let spec = Mapping::default().target_spec(RecordKind::Contact).unwrap();
        let mut fields: Vec<serde_json::Value> = spec.fields.iter().map(|f| field(f)).collect();
        fields.retain(|f| f["name"] != "NetSuite_Id__c");
        fields.push(json!({"name": "NetSuite_Id__c", "createable": true, "updateable": true, "externalId": true, "unique": true}));
        fields.push(json!({"name": "AccountId", "createable": true, "updateable": true, "relationshipName": "Account", "referenceTo": ["Account"]}));
        fields.push(json!({"name": "Vendor__c", "createable": true, "updateable": true, "relationshipName": "Vendor__r", "referenceTo": ["Vendor__c"]}));
        assert!(check(&describe(json!(fields.clone())), &spec, &[], "NetSuite_Id__c").is_empty());

        let mut broken = fields.clone();
        broken.retain(|f| f["name"] != "Title" && f["name"] != "Vendor__c");
        for f in broken.iter_mut() {
            if f["name"] == "NetSuite_Id__c" {
                f["unique"] = json!(false);
            }
            if f["name"] == "Email" {
                f["updateable"] = json!(false);
            }
        }
        let problems = check(&describe(json!(broken)), &spec, &["NetSuite_Deleted__c"], "NetSuite_Id__c");
        let text = problems.join("\n");
        assert!(text.contains("Contact.NetSuite_Id__c is an External ID but not Unique"), "{text}");
        assert!(text.contains("Contact.Title does not exist"), "{text}");
        assert!(text.contains("Contact.Email is not createable and updateable"), "{text}");
        assert!(text.contains("no lookup with relationship name Vendor__r to Vendor__c"), "{text}");
        assert!(text.contains("Contact.NetSuite_Deleted__c does not exist"), "{text}");
        assert_eq!(problems.len(), 5, "{text}");

        // The lookup behind a relationship is named otherwise than the mapping assumes.
        let mut renamed = fields.clone();
        for f in renamed.iter_mut().filter(|f| f["name"] == "Vendor__c") {
            f["name"] = json!("Supplier__c");
        }
        let problems = check(&describe(json!(renamed)), &spec, &[], "NetSuite_Id__c");
        assert!(problems.len() == 1 && problems[0].contains(r#"set `field = "Supplier__c"`"#), "{problems:?}");

        // Every upsert writes the external id: read-only, each record would fail alone.
        let mut locked = fields.clone();
        for f in locked.iter_mut().filter(|f| f["name"] == "NetSuite_Id__c") {
            f["updateable"] = json!(false);
        }
        let problems = check(&describe(json!(locked)), &spec, &[], "NetSuite_Id__c");
        assert!(
            problems.len() == 1 && problems[0].contains("Contact.NetSuite_Id__c is not createable and updateable"),
            "{problems:?}"
        );

        // A Number external id passes Salesforce but not the text lookups.
        let mut numeric = fields.clone();
        for f in numeric.iter_mut().filter(|f| f["name"] == "NetSuite_Id__c") {
            f["type"] = json!("double");
        }
        let problems = check(&describe(json!(numeric)), &spec, &[], "NetSuite_Id__c");
        assert!(
            problems.len() == 1 && problems[0].contains("Contact.NetSuite_Id__c is a field of type double"),
            "{problems:?}"
        );
        for f in numeric.iter_mut().filter(|f| f["name"] == "NetSuite_Id__c") {
            f["type"] = json!("string");
        }
        assert!(check(&describe(json!(numeric)), &spec, &[], "NetSuite_Id__c").is_empty());
    }
}
