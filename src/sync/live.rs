//! Comparing the connector's output with the live Salesforce records (a
//! dry run compared live, drift repair).

use crate::mapping::{Link, TargetSpec};
use crate::model::FieldChange;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The fields of `after` that differ from the live record, links compared
/// by the parent's external id (a cleared link against a linked record is
/// a change; a lookup to a record without an external id is shown by id).
pub(super) fn live_changes(
    spec: &TargetSpec,
    after: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
) -> Vec<FieldChange> {
    let links: HashSet<&str> =
        spec.relationships.iter().flat_map(|l| [l.relationship.as_str(), l.field.as_str()]).collect();
    let mut changes: Vec<FieldChange> = after
        .iter()
        .filter(|(field, _)| !links.contains(field.as_str()))
        .filter(|(field, new)| !before.and_then(|b| b.get(*field)).is_some_and(|old| same_value(new, old)))
        .map(|(field, new)| FieldChange {
            field: field.clone(),
            old: before.and_then(|b| b.get(field)).cloned(),
            new: Some(new.clone()),
        })
        .collect();
    for link in &spec.relationships {
        let Some(wanted) = link.target(after) else { continue };
        let live = before.map(|b| live_link(link, b)).unwrap_or_default();
        if wanted.map(str::to_string) != live {
            let shown = |id: Option<String>| {
                id.map(|id| serde_json::json!({ crate::mapping::EXTERNAL_ID_FIELD: id })).unwrap_or(Value::Null)
            };
            changes.push(FieldChange {
                field: link.relationship.clone(),
                old: Some(shown(live)),
                new: Some(shown(wanted.map(str::to_string))),
            });
        }
    }
    changes
}

/// The parent a live record links to: its external id, or its Salesforce id
/// when the parent has none (linked by hand).
fn live_link(link: &Link, record: &Map<String, Value>) -> Option<String> {
    let id = record.get(&link.field).and_then(Value::as_str)?;
    let ext =
        record.get(&link.relationship).and_then(|p| p.get(crate::mapping::EXTERNAL_ID_FIELD)).and_then(Value::as_str);
    Some(ext.map_or_else(|| format!("Salesforce id {id}"), str::to_string))
}

/// Whether Salesforce holds `sent` as `live`: the same JSON, or the same
/// value in the form Salesforce answers with. A blank text is stored as
/// null, and a number field sent text (the mapping makes text) answers a
/// JSON number; neither is drift.
fn same_value(sent: &Value, live: &Value) -> bool {
    match (sent, live) {
        _ if sent == live => true,
        (Value::String(s), Value::Null) | (Value::Null, Value::String(s)) => s.is_empty(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => same_number(s.trim(), n),
        (Value::Number(a), Value::Number(b)) => same_number(&a.to_string(), b),
        _ => false,
    }
}

/// Whole numbers compare exactly (an 18-digit number edited in its last
/// digit differs, which f64 would hide); others as f64 (30 and 30.0).
fn same_number(text: &str, n: &serde_json::Number) -> bool {
    match (text.parse::<i128>(), n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))) {
        (Ok(a), Some(b)) => a == b,
        _ => text.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b && a.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_salesforce_stores_in_its_own_form_are_not_drift() {
        assert!(same_value(&json!("Acme"), &json!("Acme")));
        assert!(same_value(&json!(""), &Value::Null));
        assert!(same_value(&json!("30"), &json!(30)));
        assert!(same_value(&json!("30"), &json!(30.0)));
        assert!(same_value(&json!(2), &json!(2.0)));
        assert!(!same_value(&json!("Acme"), &Value::Null), "a value cleared in Salesforce is drift");
        assert!(!same_value(&json!("30"), &json!(31)));
        assert!(!same_value(&json!("123456789012345678"), &json!(123456789012345679u64)), "no f64 rounding");
        assert!(same_value(&json!("123456789012345678"), &json!(123456789012345678u64)));
        assert!(same_value(&json!("2.50"), &json!(2.5)));
        assert!(!same_value(&json!("thirty"), &json!(30)));
        assert!(!same_value(&json!(true), &json!("true")));
        assert!(!same_value(&json!("acme"), &json!("Acme")), "case counts");
    }

    #[test]
    fn only_fields_and_links_the_connector_writes_are_compared() {
        let spec = TargetSpec {
            sobject: "Contact".into(),
            fields: vec!["LastName".into(), "Phone".into()],
            relationships: vec![],
        };
        let sent = json!({ "LastName": "Doe", "Phone": "" }).as_object().unwrap().clone();
        let live = json!({ "LastName": "Doe", "Phone": null, "Title": "edited by hand" }).as_object().unwrap().clone();
        assert!(live_changes(&spec, &sent, Some(&live)).is_empty());
        let edited = json!({ "LastName": "Roe", "Phone": null }).as_object().unwrap().clone();
        let changes = live_changes(&spec, &sent, Some(&edited));
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].field.as_str(), &changes[0].old), ("LastName", &Some(json!("Roe"))));
        assert_eq!(live_changes(&spec, &sent, None).len(), 2, "no live record: every field");
    }
}
