//! Audit rows as text for a person: one line per row for `audit list`, and
//! for `audit show` each row followed by the mapping rules that fired, with
//! old → new for the fields that changed.

use super::query::AuditRecord;
use netsuite_salesforce::model::Transformation;
use std::borrow::Cow;
use std::fmt::Write;

/// Text that came from records or an API's answer (a vendor's name inside
/// Salesforce's error) as a terminal should show it: control characters
/// escaped, so a newline does not split a row and an escape sequence does
/// not reach the terminal.
fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.into() }).collect())
}

/// One line: `#seq at run kind id → sf action outcome [error]`.
pub fn line(r: &AuditRecord) -> String {
    // A record Salesforce created that NetSuite has not taken has no id there yet.
    let netsuite = if r.netsuite_id.is_empty() { "-" } else { r.netsuite_id.as_str() };
    let mut s = format!("#{} {} {} {} {netsuite} {}", r.seq, r.at, r.run_id, r.kind, arrow(r));
    let _ = write!(s, " {} {}", r.action, r.outcome);
    if let Some(e) = &r.error {
        let _ = write!(s, ": {}", shown(e));
    }
    s
}

fn arrow(r: &AuditRecord) -> String {
    let sf = r.salesforce_id.as_deref().unwrap_or("-");
    if r.direction == "salesforce-to-netsuite" { format!("← {sf}") } else { format!("→ {sf}") }
}

/// A row and its transformations, for `audit show`.
pub fn history_entry(r: &AuditRecord) -> String {
    let mut s = line(r);
    s.push('\n');
    match serde_json::from_str::<Vec<Transformation>>(&r.transformations) {
        Ok(ts) => {
            for t in ts {
                s.push_str(&transformation(&t));
                s.push('\n');
            }
        }
        // Other details (a write-back's fields, a conflict): a list of
        // changes one per line, an object's entries one per line, anything
        // else as it is.
        Err(_) => match serde_json::from_str::<serde_json::Value>(&r.transformations) {
            Ok(serde_json::Value::Array(changes)) if changes.iter().all(|c| c.get("field").is_some()) => {
                for c in &changes {
                    s.push_str(&change(c));
                    s.push('\n');
                }
            }
            Ok(serde_json::Value::Object(detail)) => {
                for (name, value) in detail {
                    let _ = writeln!(s, "    {}: {value}", shown(&name));
                }
            }
            _ if r.transformations.trim().is_empty() => {}
            _ => {
                let _ = writeln!(s, "    detail: {}", shown(&r.transformations));
            }
        },
    }
    s
}

/// One change entry: as a transformation, with whatever else it holds (a
/// conflict's base, both sides' values and the winner) as `name: value`.
fn change(c: &serde_json::Value) -> String {
    const KNOWN: [&str; 5] = ["field", "rule", "detail", "old", "new"];
    let mut s = transformation(&loose(c));
    let rest: Vec<String> = c
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !KNOWN.contains(&name.as_str()))
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    if !rest.is_empty() {
        let _ = write!(s, "{}{}", if s.ends_with("← ") { "" } else { "; " }, rest.join(", "));
    }
    s
}

/// A change entry that is not quite a [`Transformation`] (no `detail`, say).
fn loose(change: &serde_json::Value) -> Transformation {
    let text = |name: &str| match change.get(name) {
        Some(serde_json::Value::String(s)) => s.as_str().into(),
        Some(other) => other.to_string().into(),
        None => "".into(),
    };
    Transformation {
        field: text("field"),
        rule: text("rule"),
        detail: text("detail"),
        old: change.get("old").cloned(),
        new: change.get("new").cloned(),
        json_start: None,
    }
}

/// `    Field ← rule (detail): old → new`; the values only when they changed.
pub fn transformation(t: &Transformation) -> String {
    let mut s = format!("    {} ← {}", shown(&t.field), shown(&t.rule));
    if !t.detail.is_empty() {
        let _ = write!(s, " ({})", shown(&t.detail));
    }
    if t.old.is_some() || t.new.is_some() {
        let shown = |v: &Option<serde_json::Value>| v.as_ref().map_or("(none)".to_string(), |v| v.to_string());
        let _ = write!(s, ": {} → {}", shown(&t.old), shown(&t.new));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_from_records_are_escaped_and_the_rest_left_as_it_is() {
        assert_eq!(shown("Müller \u{1b}[2J\nGmbH"), "Müller \\u{1b}[2J\\nGmbH");
        assert!(matches!(shown("Łódź \"Ltd\""), Cow::Borrowed("Łódź \"Ltd\"")));
    }

    #[test]
    fn a_conflict_shows_both_sides_and_the_winner() {
        let conflict = json!({"field": "Phone__c", "base": "+1555", "netsuite": "+1777", "salesforce": "+1666", "winner": "netsuite"});
        assert_eq!(
            change(&conflict),
            r#"    Phone__c ← base: "+1555", netsuite: "+1777", salesforce: "+1666", winner: "netsuite""#
        );
        let written = json!({"field": "Phone__c", "rule": "writeback", "old": "+1555", "new": "+1666"});
        assert_eq!(change(&written), r#"    Phone__c ← writeback: "+1555" → "+1666""#);
    }
}
