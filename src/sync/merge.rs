//! Three-way merge of one vendor edited on both sides. Both sides are
//! compared in Salesforce's field space (NetSuite's record through the
//! forward mapping), against the base: what the two last agreed on. A field
//! changed on one side only takes that side's value; a field changed on
//! both sides to different values is a conflict the policy decides.

use serde::Serialize;
use serde_json::{Map, Value};

/// Who wins a field both sides changed since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// NetSuite is the system of record (the default).
    NetSuite,
    Salesforce,
    /// The side whose record was modified last; NetSuite on a tie.
    Newest,
}

impl ConflictPolicy {
    pub fn parse(text: &str) -> Option<ConflictPolicy> {
        match text.trim().to_ascii_lowercase().as_str() {
            "netsuite" => Some(ConflictPolicy::NetSuite),
            "salesforce" => Some(ConflictPolicy::Salesforce),
            "newest" => Some(ConflictPolicy::Newest),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    NetSuite,
    Salesforce,
}

/// One field both sides changed to different values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    pub field: String,
    /// None: the two sides never agreed on the field.
    pub base: Option<Value>,
    pub netsuite: Value,
    pub salesforce: Value,
    pub winner: Side,
}

/// The merge of one record: what each side must be given, and the new base.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Merged {
    /// Fields NetSuite must take (Salesforce field names and values).
    pub to_netsuite: Map<String, Value>,
    /// Fields Salesforce must take.
    pub to_salesforce: Map<String, Value>,
    pub conflicts: Vec<Conflict>,
    /// What both sides hold once the writes land.
    pub agreed: Map<String, Value>,
}

/// When each side last changed the record (any comparable text of one
/// format, e.g. `2026-12-01 10:00:00` UTC for both).
#[derive(Debug, Clone, Copy)]
pub struct Modified<'a> {
    pub netsuite: &'a str,
    pub salesforce: &'a str,
}

fn value<'m>(map: Option<&'m Map<String, Value>>, field: &str) -> &'m Value {
    map.and_then(|m| m.get(field)).unwrap_or(&Value::Null)
}

/// Whether two values of a field agree. Salesforce gives `""` or leaves
/// out what the connector writes as null.
pub fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let blank = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    a == b || (blank(a) && blank(b))
}

/// Merges `fields` of a record. `base` is None when the two sides never
/// agreed (a first sync of a record that exists on both): every difference
/// then counts as a conflict. A field the base lacks (mapped, or put back,
/// since they last agreed) is taken as blank there: NetSuite's value fills
/// Salesforce's blank (a field newly mapped is blank in Salesforce, which
/// must not erase NetSuite's value); Salesforce's value fills NetSuite's
/// blank, except under `netsuite`: NetSuite is the system of record, and
/// its blank may be a clear made while the field was out (which cannot be
/// told from never set), so it is a conflict NetSuite wins. Two values are
/// a conflict. Such conflicts show no base.
///
/// `retyped(field, s, n)` says whether Salesforce's value `s` is NetSuite's
/// `n` in another form (the forward mapping makes `n` of it: `Buyer@X.com`
/// for `buyer@x.com`): both sides changed so made the same edit, no
/// conflict, and Salesforce is given the mapped form.
pub fn merge(
    fields: &[String],
    base: Option<&Map<String, Value>>,
    netsuite: &Map<String, Value>,
    salesforce: &Map<String, Value>,
    policy: ConflictPolicy,
    modified: Modified<'_>,
    retyped: &dyn Fn(&str, &Value, &Value) -> bool,
) -> Merged {
    let mut merged = Merged::default();
    for field in fields {
        let (b, n, s) = (value(base, field), value(Some(netsuite), field), value(Some(salesforce), field));
        let known = base.is_some();
        let lacked = base.is_some_and(|b| !b.contains_key(field.as_str()));
        let ns_cleared = lacked && policy == ConflictPolicy::NetSuite && same(Some(n), None);
        let ns_changed = !known || ns_cleared || !same(Some(n), Some(b));
        let sf_changed = !known || !same(Some(s), Some(b));
        if ns_changed && sf_changed && !same(Some(n), Some(s)) && retyped(field, s, n) {
            merged.to_salesforce.insert(field.clone(), n.clone());
            merged.agreed.insert(field.clone(), n.clone());
            continue;
        }
        let winner = match (ns_changed, sf_changed) {
            _ if same(Some(n), Some(s)) => None,
            (true, false) => Some(Side::NetSuite),
            (false, true) => Some(Side::Salesforce),
            _ => {
                let winner = match policy {
                    ConflictPolicy::NetSuite => Side::NetSuite,
                    ConflictPolicy::Salesforce => Side::Salesforce,
                    ConflictPolicy::Newest if modified.salesforce > modified.netsuite => Side::Salesforce,
                    ConflictPolicy::Newest => Side::NetSuite,
                };
                merged.conflicts.push(Conflict {
                    field: field.clone(),
                    base: base.and_then(|b| b.get(field)).cloned(),
                    netsuite: n.clone(),
                    salesforce: s.clone(),
                    winner,
                });
                Some(winner)
            }
        };
        let agreed = match winner {
            None => n.clone(),
            Some(Side::NetSuite) => {
                merged.to_salesforce.insert(field.clone(), n.clone());
                n.clone()
            }
            Some(Side::Salesforce) => {
                merged.to_netsuite.insert(field.clone(), s.clone());
                s.clone()
            }
        };
        merged.agreed.insert(field.clone(), agreed);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// No value is another's in another form.
    fn plain(_: &str, _: &Value, _: &Value) -> bool {
        false
    }

    fn fields() -> Vec<String> {
        ["Name", "Phone__c", "Email__c"].iter().map(|s| s.to_string()).collect()
    }

    const AT: Modified<'static> = Modified { netsuite: "2026-12-01 10:00:00", salesforce: "2026-12-01 11:00:00" };

    #[test]
    fn one_sided_edits_merge_without_conflict() {
        let base = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "a@x"}));
        let ns = map(json!({"Name": "Acme Ltd", "Phone__c": "+1555", "Email__c": "a@x"}));
        let sf = map(json!({"Name": "Acme", "Phone__c": "+1666", "Email__c": "a@x"}));
        let m = merge(&fields(), Some(&base), &ns, &sf, ConflictPolicy::NetSuite, AT, &plain);
        assert!(m.conflicts.is_empty());
        assert_eq!(m.to_netsuite, map(json!({"Phone__c": "+1666"})));
        assert_eq!(m.to_salesforce, map(json!({"Name": "Acme Ltd"})));
        assert_eq!(m.agreed, map(json!({"Name": "Acme Ltd", "Phone__c": "+1666", "Email__c": "a@x"})));
    }

    #[test]
    fn the_same_edit_on_both_sides_in_another_form_is_no_conflict() {
        let base = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "a@x"}));
        let ns = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "buyer@x"}));
        let sf = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "Buyer@X"}));
        let lower = |_: &str, s: &Value, n: &Value| s.as_str().map(str::to_lowercase).as_deref() == n.as_str();
        for policy in [ConflictPolicy::NetSuite, ConflictPolicy::Salesforce, ConflictPolicy::Newest] {
            let m = merge(&fields(), Some(&base), &ns, &sf, policy, AT, &lower);
            assert!(m.conflicts.is_empty() && m.to_netsuite.is_empty(), "{m:?}");
            assert_eq!(m.to_salesforce, map(json!({"Email__c": "buyer@x"})));
            assert_eq!(m.agreed["Email__c"], json!("buyer@x"));
        }
        // Retyped on Salesforce's side only: an edit, sent as typed.
        let m = merge(
            &fields(),
            Some(&base),
            &base,
            &map(json!({"Email__c": "A@X"})),
            ConflictPolicy::NetSuite,
            AT,
            &lower,
        );
        assert_eq!(m.to_netsuite["Email__c"], json!("A@X"));
    }

    #[test]
    fn nothing_changed_means_nothing_to_write() {
        let base = map(json!({"Name": "Acme", "Phone__c": null, "Email__c": "a@x"}));
        // Salesforce leaves out a blank field; that is not an edit.
        let sf = map(json!({"Name": "Acme", "Phone__c": "", "Email__c": "a@x"}));
        let m = merge(&fields(), Some(&base), &base, &sf, ConflictPolicy::Salesforce, AT, &plain);
        assert!(m.to_netsuite.is_empty() && m.to_salesforce.is_empty() && m.conflicts.is_empty());
    }

    #[test]
    fn the_same_field_on_both_sides_follows_each_policy() {
        let base = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "a@x"}));
        let ns = map(json!({"Name": "Acme", "Phone__c": "+1777", "Email__c": "a@x"}));
        let sf = map(json!({"Name": "Acme", "Phone__c": "+1666", "Email__c": "a@x"}));
        let ns_wins = merge(&fields(), Some(&base), &ns, &sf, ConflictPolicy::NetSuite, AT, &plain);
        assert_eq!(ns_wins.to_salesforce, map(json!({"Phone__c": "+1777"})));
        assert!(ns_wins.to_netsuite.is_empty());
        assert_eq!(ns_wins.conflicts.len(), 1);
        let c = &ns_wins.conflicts[0];
        assert_eq!(
            (c.netsuite.clone(), c.salesforce.clone(), c.winner),
            (json!("+1777"), json!("+1666"), Side::NetSuite)
        );

        let sf_wins = merge(&fields(), Some(&base), &ns, &sf, ConflictPolicy::Salesforce, AT, &plain);
        assert_eq!(sf_wins.to_netsuite, map(json!({"Phone__c": "+1666"})));
        assert!(sf_wins.to_salesforce.is_empty());

        // Salesforce changed last in AT.
        let newest = merge(&fields(), Some(&base), &ns, &sf, ConflictPolicy::Newest, AT, &plain);
        assert_eq!(newest.conflicts[0].winner, Side::Salesforce);
        let later_ns = Modified { netsuite: "2026-12-01 12:00:00", salesforce: "2026-12-01 11:00:00" };
        let newest = merge(&fields(), Some(&base), &ns, &sf, ConflictPolicy::Newest, later_ns, &plain);
        assert_eq!(newest.conflicts[0].winner, Side::NetSuite);
        let tie = Modified { netsuite: "2026-12-01 11:00:00", salesforce: "2026-12-01 11:00:00" };
        assert_eq!(
            merge(&fields(), Some(&base), &ns, &sf, ConflictPolicy::Newest, tie, &plain).conflicts[0].winner,
            Side::NetSuite
        );
    }

    #[test]
    fn the_same_new_value_on_both_sides_is_no_conflict() {
        let base = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "a@x"}));
        let both = map(json!({"Name": "Acme", "Phone__c": "+1666", "Email__c": "a@x"}));
        let m = merge(&fields(), Some(&base), &both, &both, ConflictPolicy::NetSuite, AT, &plain);
        assert!(m.conflicts.is_empty() && m.to_netsuite.is_empty() && m.to_salesforce.is_empty());
        assert_eq!(m.agreed["Phone__c"], json!("+1666"));
    }

    #[test]
    fn without_a_base_every_difference_is_a_conflict() {
        let ns = map(json!({"Name": "Acme", "Phone__c": "+1777", "Email__c": "a@x"}));
        let sf = map(json!({"Name": "Acme", "Phone__c": "+1666", "Email__c": "a@x"}));
        let m = merge(&fields(), None, &ns, &sf, ConflictPolicy::NetSuite, AT, &plain);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.to_salesforce, map(json!({"Phone__c": "+1777"})));
    }

    /// A field mapped since the base was stored (or put back): a value
    /// fills Salesforce's blank whatever the policy (a field newly mapped is
    /// blank in Salesforce, which must not erase NetSuite's), Salesforce's
    /// value NetSuite's blank except under `netsuite` (a conflict NetSuite
    /// wins), and two values are a conflict shown without a base.
    #[test]
    fn a_field_the_base_lacks_is_filled_from_the_side_with_a_value() {
        let base = map(json!({"Name": "Acme", "Email__c": "a@x"}));
        let ns = map(json!({"Name": "Acme", "Phone__c": "+1555", "Email__c": "a@x"}));
        let sf = map(json!({"Name": "Acme", "Phone__c": "", "Email__c": "a@x"}));
        for policy in [ConflictPolicy::NetSuite, ConflictPolicy::Salesforce, ConflictPolicy::Newest] {
            let m = merge(&fields(), Some(&base), &ns, &sf, policy, AT, &plain);
            assert!(m.conflicts.is_empty() && m.to_netsuite.is_empty(), "{policy:?}: {m:?}");
            assert_eq!(m.to_salesforce, map(json!({"Phone__c": "+1555"})));
        }
        let other = map(json!({"Name": "Acme", "Phone__c": "+1666", "Email__c": "a@x"}));
        let m = merge(&fields(), Some(&base), &ns, &other, ConflictPolicy::Salesforce, AT, &plain);
        assert_eq!(m.conflicts.len(), 1, "{m:?}");
        assert_eq!((m.conflicts[0].base.clone(), m.conflicts[0].winner), (None, Side::Salesforce));
        assert_eq!(m.to_netsuite, map(json!({"Phone__c": "+1666"})));
        let blank = map(json!({"Name": "Acme", "Phone__c": null, "Email__c": "a@x"}));
        for policy in [ConflictPolicy::Salesforce, ConflictPolicy::Newest] {
            let m = merge(&fields(), Some(&base), &blank, &other, policy, AT, &plain);
            assert!(m.conflicts.is_empty() && m.to_salesforce.is_empty(), "{policy:?}: {m:?}");
            assert_eq!(m.to_netsuite, map(json!({"Phone__c": "+1666"})));
        }
        let m = merge(&fields(), Some(&base), &blank, &other, ConflictPolicy::NetSuite, AT, &plain);
        assert_eq!(m.conflicts.len(), 1, "{m:?}");
        assert_eq!((m.conflicts[0].base.clone(), m.conflicts[0].winner), (None, Side::NetSuite));
        assert!(m.to_netsuite.is_empty());
        assert_eq!(m.to_salesforce, map(json!({"Phone__c": null})));
    }

    #[test]
    fn policies_parse_from_settings_text() {
        assert_eq!(ConflictPolicy::parse(" NetSuite "), Some(ConflictPolicy::NetSuite));
        assert_eq!(ConflictPolicy::parse("newest"), Some(ConflictPolicy::Newest));
        assert_eq!(ConflictPolicy::parse("latest"), None);
    }
}
