//! Evaluating a planned query on stored rows: values as SOQL sees them,
//! WHERE with SOQL's rules (text compares case-insensitively; ids compare
//! exactly in their 18-character form; `!= x` and `NOT IN` keep null
//! values, other comparisons drop them), LIKE, ORDER BY with NULLS
//! FIRST/LAST, and a selected row rendered as the REST API shows it.

use super::lex::Op;
use super::parse::{Condition, OrderBy, Pattern};
use super::plan::{Column, Filter, Operand};
use crate::salesforce::datetime;
use crate::salesforce::schema::{Field, FieldType, SObject};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::rc::Rc;

/// A stored record with its system columns and the parents the query reads.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub modstamp: i64,
    pub deleted: bool,
    pub fields: Map<String, Value>,
    /// By lookup field name: the live parent, or None when the lookup is empty.
    pub parents: Vec<(&'static str, Option<Rc<Row>>)>,
}

impl Row {
    fn parent(&self, lookup: &str) -> Option<&Row> {
        self.parents.iter().find(|(name, _)| *name == lookup).and_then(|(_, p)| p.as_deref())
    }
}

/// One field's value in a row, typed for comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'r> {
    Null,
    Text(&'r str),
    Id(&'r str),
    Bool(bool),
    Number(f64),
    /// Unix milliseconds.
    Instant(i64),
}

pub fn cell<'r>(row: &'r Row, column: &Column<'_>) -> Cell<'r> {
    match &column.via {
        None => own_cell(row, column.field),
        Some(via) => row.parent(via.lookup.name).map_or(Cell::Null, |p| own_cell(p, column.field)),
    }
}

fn own_cell<'r>(row: &'r Row, field: &Field) -> Cell<'r> {
    if field.system {
        return match field.name {
            "Id" => Cell::Id(&row.id),
            "CreatedDate" => Cell::Instant(row.created * 1000),
            "IsDeleted" => Cell::Bool(row.deleted),
            _ => Cell::Instant(row.modstamp * 1000),
        };
    }
    match (field.kind, row.fields.get(field.name)) {
        // A checkbox is never null: unset reads as false.
        (FieldType::Boolean, v) => Cell::Bool(v.and_then(Value::as_bool).unwrap_or(false)),
        (FieldType::Id | FieldType::Reference, Some(Value::String(s))) => Cell::Id(s),
        (_, Some(Value::String(s))) => Cell::Text(s),
        (_, Some(Value::Number(n))) => n.as_f64().map_or(Cell::Null, Cell::Number),
        _ => Cell::Null,
    }
}

pub fn matches(filter: &Filter<'_>, row: &Row) -> bool {
    match filter {
        Condition::And(parts) => parts.iter().all(|p| matches(p, row)),
        Condition::Or(parts) => parts.iter().any(|p| matches(p, row)),
        Condition::Not(inner) => !matches(inner, row),
        Condition::Compare { field, op, value } => compare(cell(row, field), *op, value),
        Condition::In { field, negated, values } => {
            let c = cell(row, field);
            values.iter().any(|v| compare(c, Op::Eq, v)) != *negated
        }
        Condition::Like { field, pattern } => match cell(row, field) {
            Cell::Text(text) => like(pattern, text),
            _ => false,
        },
    }
}

fn compare(cell: Cell<'_>, op: Op, operand: &Operand) -> bool {
    if let Operand::Null = operand {
        return match op {
            Op::Eq => cell == Cell::Null,
            Op::Ne => cell != Cell::Null,
            _ => false,
        };
    }
    if cell == Cell::Null {
        // In SOQL a null differs from every value.
        return op == Op::Ne;
    }
    if let (Operand::Span(from, to), Cell::Instant(v)) = (operand, cell) {
        return op.holds_in_span(v, *from, *to);
    }
    let ordering = match (cell, operand) {
        (Cell::Text(a), Operand::Text(b)) => Some(fold_cmp(a, b)),
        (Cell::Id(a), Operand::Id(b)) => Some(a.cmp(b.as_str())),
        (Cell::Bool(a), Operand::Bool(b)) => Some(a.cmp(b)),
        (Cell::Number(a), Operand::Number(b)) => a.partial_cmp(b),
        (Cell::Instant(a), Operand::Instant(b)) => Some(a.cmp(b)),
        _ => None,
    };
    ordering.is_some_and(|o| op.holds(o))
}

/// Case-insensitive order of two texts, without allocating.
fn fold_cmp(a: &str, b: &str) -> Ordering {
    a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase))
}

/// LIKE: `%` any run, `_` one character, case-insensitive.
fn like(pattern: &[Pattern], text: &str) -> bool {
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let lower = |c: char| c.to_lowercase().next().unwrap_or(c);
    let (mut p, mut t) = (0, 0);
    // Where the last % was and how much text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Pattern::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Pattern::One) => {
                p += 1;
                t += 1;
            }
            Some(Pattern::Char(c)) if lower(*c) == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|x| *x == Pattern::Any)
}

/// The order of two rows under ORDER BY; ties keep their stored order.
pub fn order(keys: &[OrderBy<Column<'_>>], a: &Row, b: &Row) -> Ordering {
    for key in keys {
        let (x, y) = (cell(a, &key.field), cell(b, &key.field));
        let o = match (x == Cell::Null, y == Cell::Null) {
            (true, true) => Ordering::Equal,
            (true, false) => nulls(key.nulls_first),
            (false, true) => nulls(key.nulls_first).reverse(),
            (false, false) => {
                let o = cell_order(x, y);
                if key.descending { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn nulls(first: bool) -> Ordering {
    if first { Ordering::Less } else { Ordering::Greater }
}

fn cell_order(x: Cell<'_>, y: Cell<'_>) -> Ordering {
    match (x, y) {
        (Cell::Text(a), Cell::Text(b)) => fold_cmp(a, b).then_with(|| a.cmp(b)),
        (Cell::Id(a), Cell::Id(b)) => a.cmp(b),
        (Cell::Bool(a), Cell::Bool(b)) => a.cmp(&b),
        (Cell::Number(a), Cell::Number(b)) => a.total_cmp(&b),
        (Cell::Instant(a), Cell::Instant(b)) => a.cmp(&b),
        _ => Ordering::Equal,
    }
}

fn attributes(object: &SObject, id: &str, version: f64) -> Value {
    json!({ "type": object.name, "url": format!("/services/data/v{version:.1}/sobjects/{}/{id}", object.name) })
}

/// A row as the REST API returns it: `attributes`, then the selected
/// fields; parent fields nested under the relationship name (null when
/// the lookup is empty).
pub fn render(object: &SObject, columns: &[Column<'_>], row: &Row, version: f64) -> Value {
    let mut out = Map::new();
    out.insert("attributes".into(), attributes(object, &row.id, version));
    for column in columns {
        match &column.via {
            None => {
                out.insert(column.field.name.into(), value(row, column.field));
            }
            Some(via) => {
                let slot = out.entry(via.relationship).or_insert_with(|| match row.parent(via.lookup.name) {
                    Some(parent) => {
                        let mut m = Map::new();
                        m.insert("attributes".into(), attributes(via.parent, &parent.id, version));
                        Value::Object(m)
                    }
                    None => Value::Null,
                });
                if let (Value::Object(m), Some(parent)) = (slot, row.parent(via.lookup.name)) {
                    m.insert(column.field.name.into(), value(parent, column.field));
                }
            }
        }
    }
    Value::Object(out)
}

fn value(row: &Row, field: &Field) -> Value {
    match own_cell(row, field) {
        Cell::Instant(ms) => Value::String(datetime::format(ms.div_euclid(1000))),
        Cell::Bool(b) => Value::Bool(b),
        Cell::Id(s) => Value::String(s.to_string()),
        _ => row.fields.get(field.name).cloned().unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::schema::{objects, salesforce_id};
    use crate::salesforce::soql::{parse::parse, plan::plan};

    const NOW_MS: i64 = 1_796_160_317_000;

    fn row(n: u64, modstamp: i64, fields: Value) -> Row {
        Row {
            id: salesforce_id("003", n),
            created: modstamp - 60,
            modstamp,
            deleted: false,
            fields: fields.as_object().cloned().unwrap_or_default(),
            parents: vec![],
        }
    }

    fn with_account(mut r: Row, account: Option<Row>) -> Row {
        r.parents.push(("AccountId", account.map(Rc::new)));
        r
    }

    /// Numbers of the rows (the n of their ids) that `soql` selects, in order.
    fn run(soql: &str, rows: &[Row]) -> Vec<u64> {
        let objects = objects();
        let parsed = parse(soql).unwrap();
        let plan = plan(&parsed, &objects, NOW_MS).unwrap_or_else(|e| panic!("{soql}: {e:?}"));
        let mut hits: Vec<&Row> = rows.iter().filter(|r| plan.filter.as_ref().is_none_or(|f| matches(f, r))).collect();
        hits.sort_by(|a, b| order(&plan.order, a, b));
        let number = |r: &Row| rows.iter().position(|x| x.id == r.id).unwrap() as u64;
        hits.into_iter().map(number).collect()
    }

    fn people() -> Vec<Row> {
        let t = NOW_MS / 1000;
        vec![
            row(0, t - 100, json!({"LastName": "Ng", "Email": "ng@example.com", "NetSuite_Id__c": "10"})),
            row(1, t - 50, json!({"LastName": "O'Brien", "NetSuite_Id__c": "11", "NetSuite_Inactive__c": true})),
            row(2, t - 50, json!({"LastName": "acme_x", "Email": null, "NetSuite_Id__c": "12"})),
            row(3, t - 3 * 86_400, json!({"LastName": "Zed", "Title": "CEO"})),
        ]
    }

    #[test]
    fn comparisons_follow_soql_rules() {
        let rows = people();
        let q = |w: &str| run(&format!("SELECT Id FROM Contact WHERE {w}"), &rows);
        assert_eq!(q("LastName = 'NG'"), vec![0], "text compares case-insensitively");
        assert_eq!(q("LastName = 'O\\'Brien'"), vec![1]);
        assert_eq!(q("Email = null"), vec![1, 2, 3]);
        assert_eq!(q("Email != null"), vec![0]);
        assert_eq!(q("Title != 'CEO'"), vec![0, 1, 2], "!= keeps nulls");
        assert_eq!(q("Title < 'Z'"), vec![3], "< drops nulls");
        assert_eq!(q("NetSuite_Id__c IN ('10', '12')"), vec![0, 2]);
        assert_eq!(q("NetSuite_Id__c NOT IN ('10', '12')"), vec![1, 3], "NOT IN keeps nulls");
        assert_eq!(q("NetSuite_Inactive__c = false"), vec![0, 2, 3], "an unset checkbox is false");
        assert_eq!(q("LastName LIKE 'acme\\_%'"), vec![2]);
        assert_eq!(q("LastName LIKE '%e%'"), vec![1, 2, 3]);
        assert_eq!(q("LastName LIKE 'n_'"), vec![0]);
        assert_eq!(q("NOT LastName LIKE '%e%'"), vec![0]);
        assert_eq!(q("(LastName = 'Ng' OR LastName = 'Zed') AND Title = null"), vec![0]);
        assert_eq!(q("LastName = 'Ng' OR (LastName = 'Zed' AND Title = 'CEO')"), vec![0, 3]);
        let id1 = salesforce_id("003", 1);
        assert_eq!(q(&format!("Id IN ('{id1}')")), vec![1], "Id IN finds the record");
        assert_eq!(q(&format!("Id = '{}'", &id1[..15])), vec![1], "a 15-character id is the same id");
        assert_eq!(q(&format!("Id = '{}'", id1.to_ascii_lowercase())), vec![1], "18 characters in any case");
        assert_eq!(q(&format!("Id > '{id1}'")), vec![2, 3]);
    }

    #[test]
    fn datetimes_compare_as_instants_and_relative_days_as_spans() {
        let rows = people();
        let q = |w: &str| run(&format!("SELECT Id FROM Contact WHERE {w}"), &rows);
        let t = NOW_MS / 1000;
        let stamp = |secs: i64| datetime::format(secs);
        assert_eq!(q(&format!("SystemModstamp > {}", stamp(t - 60))), vec![1, 2]);
        assert_eq!(q(&format!("SystemModstamp >= {}", stamp(t - 100).replace(".000+0000", "Z"))), vec![0, 1, 2]);
        assert_eq!(q("SystemModstamp = TODAY"), vec![0, 1, 2]);
        assert_eq!(q("SystemModstamp < TODAY"), vec![3]);
        assert_eq!(q("SystemModstamp = LAST_N_DAYS:3"), vec![0, 1, 2, 3]);
        assert_eq!(q("SystemModstamp = YESTERDAY"), Vec::<u64>::new());
        assert_eq!(q("CreatedDate > TODAY"), Vec::<u64>::new());
        // The keyset page after (t - 50, row 1).
        let id1 = salesforce_id("003", 1);
        let s = stamp(t - 50);
        let keyset = format!(
            "SELECT Id FROM Contact WHERE SystemModstamp > {s} OR (SystemModstamp = {s} AND Id > '{id1}') ORDER BY SystemModstamp, Id"
        );
        assert_eq!(run(&keyset, &rows), vec![2]);
    }

    #[test]
    fn numbers_compare_numerically() {
        let sized = |n: u64, employees: Value| Row {
            id: salesforce_id("001", n),
            fields: json!({ "Name": "A", "NumberOfEmployees": employees }).as_object().cloned().unwrap(),
            ..Row::default()
        };
        let rows = vec![sized(0, json!(9)), sized(1, json!(120)), sized(2, Value::Null), sized(3, json!(50))];
        let q = |w: &str| run(&format!("SELECT Id FROM Account WHERE {w}"), &rows);
        assert_eq!(q("NumberOfEmployees >= 50"), vec![1, 3], "120 > 50 as numbers, not as text");
        assert_eq!(q("NumberOfEmployees < 10.5"), vec![0]);
        assert_eq!(q("NumberOfEmployees IN (9, 50)"), vec![0, 3]);
        assert_eq!(run("SELECT Id FROM Account ORDER BY NumberOfEmployees DESC", &rows), vec![1, 3, 0, 2]);
    }

    #[test]
    fn order_by_with_directions_and_nulls() {
        let rows = people();
        let q = |o: &str| run(&format!("SELECT Id FROM Contact ORDER BY {o}"), &rows);
        assert_eq!(q("SystemModstamp, Id"), vec![3, 0, 1, 2]);
        assert_eq!(q("SystemModstamp DESC, Id DESC"), vec![2, 1, 0, 3]);
        assert_eq!(q("LastName"), vec![2, 0, 1, 3], "case-insensitive");
        assert_eq!(q("Title, LastName"), vec![2, 0, 1, 3], "nulls first ascending");
        assert_eq!(q("Title NULLS LAST, LastName"), vec![3, 2, 0, 1]);
        assert_eq!(q("Title DESC, LastName"), vec![3, 2, 0, 1], "nulls last descending");
        assert_eq!(q("Title DESC NULLS FIRST, LastName DESC"), vec![1, 0, 2, 3]);
    }

    #[test]
    fn parent_fields_filter_and_render() {
        let acme = Row {
            id: salesforce_id("001", 5),
            fields: json!({"Name": "Acme", "NetSuite_Id__c": "42"}).as_object().cloned().unwrap(),
            ..Row::default()
        };
        let rows = vec![
            with_account(row(0, 1, json!({"LastName": "A", "AccountId": acme.id.clone()})), Some(acme.clone())),
            with_account(row(1, 1, json!({"LastName": "B"})), None),
        ];
        assert_eq!(run("SELECT Id FROM Contact WHERE Account.NetSuite_Id__c = '42'", &rows), vec![0]);
        assert_eq!(run("SELECT Id FROM Contact WHERE Account.Name = null", &rows), vec![1]);
        let objects = objects();
        let parsed =
            parse("SELECT LastName, Account.NetSuite_Id__c, Account.Name, IsDeleted, SystemModstamp FROM Contact")
                .unwrap();
        let plan = plan(&parsed, &objects, NOW_MS).unwrap();
        let super::super::parse::Selection::Fields(columns) = &plan.select else { panic!() };
        let linked = render(plan.object, columns, &rows[0], 66.0);
        assert_eq!(linked["Account"]["NetSuite_Id__c"], "42");
        assert_eq!(linked["Account"]["Name"], "Acme");
        assert_eq!(linked["Account"]["attributes"]["type"], "Account");
        assert_eq!(linked["attributes"]["url"], format!("/services/data/v66.0/sobjects/Contact/{}", rows[0].id));
        assert_eq!(linked["IsDeleted"], false);
        assert_eq!(linked["SystemModstamp"], "1970-01-01T00:00:01.000+0000");
        let unlinked = render(plan.object, columns, &rows[1], 66.0);
        assert_eq!(unlinked["Account"], Value::Null);
    }
}
