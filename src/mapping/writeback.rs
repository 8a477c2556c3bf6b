//! The reverse direction of a mapping: which Salesforce fields go back to
//! which NetSuite REST record fields (`[vendor.writeback]`), checked when
//! the file loads, and the PATCH/PUT body built from the fields to send.

use crate::model::{ConnectorError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// `[<kind>.writeback]`: Salesforce edits of the kind's records reach NetSuite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritebackMapping {
    /// The NetSuite REST record type (camelCase), e.g. `vendor`.
    pub record: String,
    pub field: Vec<WritebackField>,
    /// Fields a new NetSuite record needs that Salesforce does not carry,
    /// in REST shape, e.g. `subsidiary = { id = "1" }`.
    #[serde(default)]
    pub defaults: Map<String, Value>,
}

/// One Salesforce field and where it lands in NetSuite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritebackField {
    /// A field the forward mapping writes, so both sides compare.
    pub source: String,
    /// The REST field (`companyName`), or `address.<field>` for the
    /// record's default billing address (`address.city`).
    pub target: String,
    /// `id`: sent as a reference `{ "id": value }` (country codes);
    /// `term`: the value is a payment term's name, sent as that term's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// For multi-line text (a street joined from addr1 and addr2): 1 takes
    /// the first line, 2 everything after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    Id,
    Term,
}

/// Address fields of NetSuite's `addressBookAddress` subrecord.
const ADDRESS_FIELDS: &[&str] =
    &["addr1", "addr2", "addr3", "addressee", "attention", "city", "state", "zip", "country"];

fn valid_rest_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

impl WritebackMapping {
    /// Checks the section against the forward fields of the same kind.
    pub fn check(&self, place: &str, forward: &[&str]) -> Result<()> {
        let bad = |what: String| ConnectorError::Config(format!("mapping {place}: {what}"));
        if !valid_rest_name(&self.record) {
            return Err(bad(format!("`{}` is not a NetSuite REST record type (camelCase, e.g. vendor)", self.record)));
        }
        if self.field.is_empty() {
            return Err(bad("it has no fields; add [[…writeback.field]] entries or remove the section".into()));
        }
        let mut targets = std::collections::HashSet::new();
        for (i, f) in self.field.iter().enumerate() {
            let place = format!("field {} ({} → {})", i + 1, f.source, f.target);
            if !forward.contains(&f.source.as_str()) {
                return Err(bad(format!(
                    "{place}: `{}` is not a field the forward mapping writes; both directions must map it",
                    f.source
                )));
            }
            let name_ok = match f.target.strip_prefix("address.") {
                Some(part) => ADDRESS_FIELDS.contains(&part),
                None => valid_rest_name(&f.target),
            };
            if !name_ok {
                return Err(bad(format!(
                    "{place}: the target is not a NetSuite REST field name (or address.<{}>)",
                    ADDRESS_FIELDS.join("|")
                )));
            }
            if !matches!(f.line, None | Some(1) | Some(2)) {
                return Err(bad(format!("{place}: line is 1 (the first line) or 2 (the lines after it)")));
            }
            if !targets.insert((f.target.as_str(), f.line)) {
                return Err(bad(format!("{place}: the target appears twice")));
            }
        }
        // One line of a multi-line value written back without the other
        // would lose the other: Salesforce's text gets the forward join of
        // what NetSuite then holds.
        for (i, f) in self.field.iter().enumerate() {
            let Some(line) = f.line else { continue };
            let other = if line == 1 { 2 } else { 1 };
            if !self.field.iter().any(|g| g.source == f.source && g.line == Some(other)) {
                return Err(bad(format!(
                    "field {} ({} → {}): line {line} of {} is written back but not line {other}, which would be \
                     lost; add an entry for line {other} (addr1 takes line 1, addr2 line 2) or remove `line`",
                    i + 1,
                    f.source,
                    f.target,
                    f.source
                )));
            }
        }
        Ok(())
    }

    /// The Salesforce fields this section sends back.
    pub fn sources(&self) -> Vec<String> {
        let mut s: Vec<String> = self.field.iter().map(|f| f.source.clone()).collect();
        s.dedup();
        s
    }

    /// The REST body for the Salesforce fields in `changed`; `agreed` (the
    /// whole record as both sides will hold it) completes the address,
    /// which NetSuite takes as one line. `term_id` resolves a term's name.
    /// A name no term has fails, naming the field and the value.
    pub fn body(
        &self,
        changed: &Map<String, Value>,
        agreed: &Map<String, Value>,
        term_id: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Map<String, Value>> {
        let mut body = Map::new();
        let address_changed =
            self.field.iter().any(|f| f.target.starts_with("address.") && changed.contains_key(&f.source));
        let mut address = Map::new();
        for f in &self.field {
            let is_address = f.target.starts_with("address.");
            let value = match (changed.get(&f.source), is_address && address_changed) {
                (Some(v), _) => v,
                (None, true) => agreed.get(&f.source).unwrap_or(&Value::Null),
                (None, false) => continue,
            };
            let text = match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            let text = match (text, f.line) {
                // Each part trimmed, as Salesforce gets it back joined.
                (Some(t), Some(1)) => Some(t.lines().next().unwrap_or_default().trim().to_string()),
                (Some(t), Some(_)) => Some(t.lines().skip(1).collect::<Vec<_>>().join("\n").trim().to_string()),
                (t, _) => t,
            };
            let out = match (text, f.reference) {
                (None, _) => Value::Null,
                (Some(t), _) if t.is_empty() => Value::Null,
                (Some(t), Some(Reference::Id)) => json!({ "id": t }),
                (Some(t), Some(Reference::Term)) => match term_id(&t) {
                    Some(id) => json!({ "id": id }),
                    None => {
                        // The record's value, not the setup, is wrong: that
                        // record fails (queued for replay), the others go on.
                        return Err(ConnectorError::NetSuite(format!(
                            "{}: no NetSuite payment term is named `{t}`; use one of the names in Setup > \
                             Accounting > Accounting Lists > Term, or add the term in NetSuite",
                            f.source
                        )));
                    }
                },
                (Some(t), None) => Value::String(t),
            };
            match f.target.strip_prefix("address.") {
                Some(part) => {
                    address.insert(part.to_string(), out);
                }
                None => {
                    body.insert(f.target.clone(), out);
                }
            }
        }
        if !address.is_empty() {
            // The default billing line; its other flags stay as they are.
            // Unkeyed it is added: see `address_line` for an update.
            body.insert(
                "addressBook".into(),
                json!({ "items": [{ "defaultBilling": true, "addressBookAddress": address }] }),
            );
        }
        Ok(body)
    }
}

/// The address line a body sets, if any. An update keys it (`id`) to the
/// record's default billing line, changed in place: NetSuite merges keyed
/// lines and adds unkeyed ones, and `replace=addressBook` would drop the
/// record's other addresses.
pub fn address_line(body: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    body.get_mut("addressBook")?.get_mut("items")?.get_mut(0)?.as_object_mut()
}

/// Whether `body` sends an address line without its key, which NetSuite
/// appends rather than matches.
pub fn unkeyed_line(body: &Map<String, Value>) -> bool {
    let lines = body.get("addressBook").and_then(|b| b.get("items")).and_then(Value::as_array);
    lines.is_some_and(|lines| lines.iter().any(|l| l.get("id").is_none() && l.get("internalId").is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> WritebackMapping {
        toml::from_str(
            r#"
            record = "vendor"
            defaults = { subsidiary = { id = "1" } }
            field = [
              { source = "Name", target = "companyName" },
              { source = "Phone__c", target = "phone" },
              { source = "Payment_Terms__c", target = "terms", reference = "term" },
              { source = "Street__c", target = "address.addr1", line = 1 },
              { source = "Street__c", target = "address.addr2", line = 2 },
              { source = "City__c", target = "address.city" },
              { source = "Country__c", target = "address.country", reference = "id" },
            ]
            "#,
        )
        .unwrap()
    }

    const FORWARD: &[&str] = &["Name", "Phone__c", "Payment_Terms__c", "Street__c", "City__c", "Country__c"];

    fn terms(name: &str) -> Option<String> {
        (name == "Net 30").then(|| "2".to_string())
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn only_changed_fields_are_sent_and_references_are_resolved() {
        let changed = obj(json!({"Phone__c": "+15550100", "Payment_Terms__c": "Net 30"}));
        let body = section().body(&changed, &Map::new(), &terms).unwrap();
        assert_eq!(Value::Object(body), json!({"phone": "+15550100", "terms": {"id": "2"}}));
    }

    #[test]
    fn an_address_edit_sends_the_whole_default_address() {
        let agreed = obj(json!({"Street__c": "1 Main St\nSuite 5", "City__c": "Austin", "Country__c": "US"}));
        let changed = obj(json!({"City__c": "Dallas"}));
        let mut body = section().body(&changed, &agreed, &terms).unwrap();
        assert_eq!(address_line(&mut body).map(|l| l.len()), Some(2));
        assert_eq!(
            body["addressBook"]["items"][0]["addressBookAddress"],
            json!({"addr1": "1 Main St", "addr2": "Suite 5", "city": "Dallas", "country": {"id": "US"}})
        );
        assert_eq!(body["addressBook"]["items"][0]["defaultBilling"], json!(true));
        // Each line trimmed, as the forward join gives it back.
        let changed = obj(json!({"Street__c": "  10 Downing St \n  Unit 4 "}));
        let body = section().body(&changed, &agreed, &terms).unwrap();
        let line = &body["addressBook"]["items"][0]["addressBookAddress"];
        assert_eq!((&line["addr1"], &line["addr2"]), (&json!("10 Downing St"), &json!("Unit 4")));
    }

    #[test]
    fn a_cleared_field_is_sent_as_null() {
        let body = section().body(&obj(json!({"Phone__c": null})), &Map::new(), &terms).unwrap();
        assert_eq!(Value::Object(body), json!({"phone": null}));
    }

    #[test]
    fn an_unknown_term_names_the_field_and_the_value() {
        let e = section().body(&obj(json!({"Payment_Terms__c": "Net 99"})), &Map::new(), &terms).unwrap_err();
        assert!(e.to_string().contains("Payment_Terms__c: no NetSuite payment term is named `Net 99`"), "{e}");
    }

    #[test]
    fn checks_name_the_place_and_the_fix() {
        let s = section();
        assert!(s.check("[vendor.writeback]", FORWARD).is_ok());
        let e = s.check("[vendor.writeback]", &FORWARD[1..]).unwrap_err().to_string();
        assert!(e.contains("`Name` is not a field the forward mapping writes"), "{e}");
        let mut bad = section();
        bad.field[1].target = "address.planet".into();
        let e = bad.check("[vendor.writeback]", FORWARD).unwrap_err().to_string();
        assert!(e.contains("field 2 (Phone__c → address.planet)"), "{e}");
        let mut twice = section();
        twice.field[1].target = "companyName".into();
        assert!(twice.check("[vendor.writeback]", FORWARD).unwrap_err().to_string().contains("appears twice"));
        for line in [1, 2] {
            let mut alone = section();
            alone.field.retain(|f| f.line != Some(3 - line));
            let e = alone.check("[vendor.writeback]", FORWARD).unwrap_err().to_string();
            assert!(e.contains(&format!("line {line} of Street__c is written back but not line {}", 3 - line)), "{e}");
        }
        let mut record = section();
        record.record = "Vendor Bill".into();
        assert!(record.check("[vendor.writeback]", FORWARD).is_err());
    }
}
