//! SOQL: every value placed in a query is quoted and escaped here; nothing
//! builds SOQL by pasting raw input.

/// A SOQL string literal: backslash first, then quotes and control
/// characters, each escaped with a backslash.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `SELECT <fields> FROM <sobject> WHERE <key> IN (<quoted values>)`. Field
/// and object names come from the validated mapping, values are quoted.
pub fn select_in(sobject: &str, fields: &[String], key: &str, values: &[&str]) -> String {
    let list = values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",");
    format!("SELECT {} FROM {sobject} WHERE {key} IN ({list})", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_inside_their_literal() {
        assert_eq!(quote("O'Brien"), r"'O\'Brien'");
        assert_eq!(quote(r"a\' OR Id != '"), r"'a\\\' OR Id != \''");
        assert_eq!(quote("x\ny"), r"'x\ny'");
        assert_eq!(quote("北京 ✓"), "'北京 ✓'");
        let q = select_in("Account", &["Id".into(), "Name".into()], "NetSuite_Id__c", &["1", "2') OR (Name != '"]);
        assert_eq!(q, r"SELECT Id, Name FROM Account WHERE NetSuite_Id__c IN ('1','2\') OR (Name != \'')");
    }
}
