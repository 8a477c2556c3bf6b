//! A parsed query checked against the org's schema, as Salesforce checks
//! it before reading anything: the object exists, every field exists (on
//! the object or, one relationship up, on its parent), is filterable and
//! sortable where used, and each literal has its field's type. Relative
//! date literals become spans of the simulated clock's UTC days.

use super::error::QueryError;
use super::lex::Op;
use super::parse::{Condition, Literal, OrderBy, Path, Query, Relative, Selection, Spanned};
use crate::salesforce::schema::{Field, FieldType, SObject, normalize_id};

/// A field the query reads: on the queried object, or through a lookup on its parent.
#[derive(Debug, Clone)]
pub struct Column<'o> {
    pub field: &'o Field,
    pub via: Option<Via<'o>>,
}

#[derive(Debug, Clone)]
pub struct Via<'o> {
    /// The relationship name as records show it (`Account`, `Vendor__r`).
    pub relationship: &'static str,
    /// The lookup field holding the parent's id (`AccountId`, `Vendor__c`).
    pub lookup: &'o Field,
    pub parent: &'o SObject,
}

/// A literal as the evaluator compares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Null,
    Text(String),
    /// An 18-character id.
    Id(String),
    Bool(bool),
    Number(f64),
    /// Unix milliseconds.
    Instant(i64),
    /// Whole days [from, to) in Unix milliseconds, from a relative date literal.
    Span(i64, i64),
}

pub type Filter<'o> = Condition<Column<'o>, Operand>;

pub struct Plan<'o> {
    pub object: &'o SObject,
    pub select: Selection<Column<'o>>,
    pub filter: Option<Filter<'o>>,
    pub order: Vec<OrderBy<Column<'o>>>,
    pub limit: Option<usize>,
    pub offset: usize,
}

impl<'o> Plan<'o> {
    /// The lookups whose parents the query reads, each once.
    pub fn lookups(&self) -> Vec<&'o Field> {
        let mut out: Vec<&'o Field> = Vec::new();
        let mut add = |c: &Column<'o>| {
            if let Some(via) = &c.via
                && !out.iter().any(|f| f.name == via.lookup.name)
            {
                out.push(via.lookup);
            }
        };
        if let Selection::Fields(columns) = &self.select {
            columns.iter().for_each(&mut add);
        }
        self.order.iter().for_each(|o| add(&o.field));
        if let Some(filter) = &self.filter {
            visit(filter, &mut add);
        }
        out
    }
}

fn visit<'a, 'o: 'a>(filter: &'a Filter<'o>, add: &mut impl FnMut(&'a Column<'o>)) {
    match filter {
        Condition::And(parts) | Condition::Or(parts) => parts.iter().for_each(|p| visit(p, add)),
        Condition::Not(inner) => visit(inner, add),
        Condition::Compare { field, .. } | Condition::In { field, .. } | Condition::Like { field, .. } => add(field),
    }
}

/// Salesforce's limit on OFFSET.
const MAX_OFFSET: usize = 2000;
const DAY_MS: i64 = 86_400_000;

pub fn plan<'o>(query: &Query, objects: &'o [SObject], now_ms: i64) -> Result<Plan<'o>, QueryError> {
    let object = objects.iter().find(|o| o.name.eq_ignore_ascii_case(&query.from.value)).ok_or_else(|| {
        QueryError::new(
            "INVALID_TYPE",
            query.from.at,
            format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to \
                 append the '__c' after the entity name. Please reference your WSDL or the describe call for the \
                 appropriate names.",
                query.from.value
            ),
        )
    })?;
    let resolver = Resolver { object, objects, now_ms };
    let select = match &query.select {
        Selection::Count => Selection::Count,
        Selection::Fields(paths) => {
            let mut columns: Vec<Column<'o>> = Vec::with_capacity(paths.len());
            for path in paths {
                let column = resolver.column(path)?;
                let same = |c: &Column<'_>| {
                    c.field.name == column.field.name
                        && c.via.as_ref().map(|v| v.lookup.name) == column.via.as_ref().map(|v| v.lookup.name)
                };
                if columns.iter().any(same) {
                    return Err(QueryError::malformed(
                        path.at,
                        format!("duplicate field selected: {}", path.parts.join(".")),
                    ));
                }
                columns.push(column);
            }
            Selection::Fields(columns)
        }
    };
    let filter = query.filter.as_ref().map(|f| resolver.condition(f)).transpose()?;
    let mut order = Vec::with_capacity(query.order.len());
    for o in &query.order {
        let field = resolver.column(&o.field)?;
        if long_text(field.field) {
            return Err(QueryError::invalid_field(
                o.field.at,
                format!("field '{}' can not be sorted in a query call", field.field.name),
            ));
        }
        order.push(OrderBy { field, descending: o.descending, nulls_first: o.nulls_first });
    }
    let offset = match &query.offset {
        Some(o) if o.value > MAX_OFFSET => {
            return Err(QueryError::new(
                "NUMBER_OUTSIDE_VALID_RANGE",
                o.at,
                format!("Maximum SOQL offset allowed is {MAX_OFFSET}"),
            ));
        }
        Some(o) => o.value,
        None => 0,
    };
    Ok(Plan { object, select, filter, order, limit: query.limit, offset })
}

/// Long text areas can be read but neither filtered nor sorted.
fn long_text(field: &Field) -> bool {
    field.kind == FieldType::TextArea && field.length > 255
}

struct Resolver<'o> {
    object: &'o SObject,
    objects: &'o [SObject],
    now_ms: i64,
}

impl<'o> Resolver<'o> {
    fn column(&self, path: &Path) -> Result<Column<'o>, QueryError> {
        let no_column = |name: &str, on: &str| {
            QueryError::invalid_field(
                path.at,
                format!(
                    "No such column '{name}' on entity '{on}'. If you are attempting to use a custom field, be sure \
                     to append the '__c' after the custom field name. Please reference your WSDL or the describe \
                     call for the appropriate names."
                ),
            )
        };
        let no_relationship = |name: &str| {
            QueryError::invalid_field(
                path.at,
                format!(
                    "Didn't understand relationship '{name}' in field path. If you are attempting to use a custom \
                     relationship, be sure to append the '__r' after the custom relationship name. Please reference \
                     your WSDL or the describe call for the appropriate names."
                ),
            )
        };
        match path.parts.as_slice() {
            [name] => self
                .object
                .field(name)
                .map(|field| Column { field, via: None })
                .ok_or_else(|| no_column(name, self.object.name)),
            [first, name] => {
                if let Some(lookup) = self.object.relationship(first) {
                    let (relationship, target) = lookup.relationship.expect("relationship fields carry their target");
                    let parent =
                        self.objects.iter().find(|o| o.name == target).ok_or_else(|| no_relationship(first))?;
                    let field = parent.field(name).ok_or_else(|| no_column(name, parent.name))?;
                    return Ok(Column { field, via: Some(Via { relationship, lookup, parent }) });
                }
                // A field may be prefixed with its own object's name.
                if first.eq_ignore_ascii_case(self.object.name) {
                    return self.column(&Path { parts: vec![name.clone()], at: path.at });
                }
                Err(no_relationship(first))
            }
            [.., rel, _] => Err(no_relationship(rel)),
            [] => Err(QueryError::malformed(path.at, "unexpected token: <EOF>")),
        }
    }

    fn condition(&self, c: &super::parse::Parsed) -> Result<Filter<'o>, QueryError> {
        Ok(match c {
            Condition::And(parts) => Condition::And(parts.iter().map(|p| self.condition(p)).collect::<Result<_, _>>()?),
            Condition::Or(parts) => Condition::Or(parts.iter().map(|p| self.condition(p)).collect::<Result<_, _>>()?),
            Condition::Not(inner) => Condition::Not(Box::new(self.condition(inner)?)),
            Condition::Compare { field, op, value } => {
                let column = self.filterable(field)?;
                let value = self.operand(&column, value)?;
                if column.field.kind == FieldType::Boolean && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(QueryError::filter(field.at, "invalid operator on boolean field"));
                }
                Condition::Compare { field: column, op: *op, value }
            }
            Condition::In { field, negated, values } => {
                let column = self.filterable(field)?;
                let values = values.iter().map(|v| self.operand(&column, v)).collect::<Result<Vec<_>, _>>()?;
                if values.iter().any(|v| matches!(v, Operand::Span(..))) {
                    return Err(QueryError::filter(field.at, "date literals are not allowed in an IN list"));
                }
                Condition::In { field: column, negated: *negated, values }
            }
            Condition::Like { field, pattern } => {
                let column = self.filterable(field)?;
                if !textual(column.field.kind) {
                    return Err(QueryError::filter(
                        field.at,
                        format!("invalid operator on {} field", type_name(column.field.kind)),
                    ));
                }
                Condition::Like { field: column, pattern: pattern.clone() }
            }
        })
    }

    fn filterable(&self, path: &Path) -> Result<Column<'o>, QueryError> {
        let column = self.column(path)?;
        if long_text(column.field) {
            return Err(QueryError::invalid_field(
                path.at,
                format!("field '{}' can not be filtered in a query call", column.field.name),
            ));
        }
        Ok(column)
    }

    /// The literal as a value of the field's type, or Salesforce's refusal.
    fn operand(&self, column: &Column<'_>, literal: &Spanned<Literal>) -> Result<Operand, QueryError> {
        let field = column.field;
        let wrong_type = || {
            let quoting = if textual(field.kind) || matches!(field.kind, FieldType::Id | FieldType::Reference) {
                "should be enclosed in quotes"
            } else {
                "should not be enclosed in quotes"
            };
            QueryError::filter(
                literal.at,
                format!(
                    "value of filter criterion for field '{}' must be of type {} and {quoting}",
                    field.name,
                    type_name(field.kind)
                ),
            )
        };
        if literal.value == Literal::Null {
            return Ok(Operand::Null);
        }
        Ok(match (field.kind, &literal.value) {
            (FieldType::Id | FieldType::Reference, Literal::Text(text)) => Operand::Id(
                normalize_id(text)
                    .ok_or_else(|| QueryError::filter(literal.at, format!("invalid ID field: {text}")))?,
            ),
            (kind, Literal::Text(text)) if textual(kind) => Operand::Text(text.clone()),
            (FieldType::Boolean, Literal::Bool(b)) => Operand::Bool(*b),
            (FieldType::Int, Literal::Number(n)) => Operand::Number(*n),
            (FieldType::DateTime, Literal::DateTime(ms)) => Operand::Instant(*ms),
            (FieldType::DateTime, Literal::Relative(r)) => {
                let today = self.now_ms.div_euclid(DAY_MS) * DAY_MS;
                let (from, to) = match *r {
                    Relative::Yesterday => (today - DAY_MS, today),
                    Relative::Today => (today, today + DAY_MS),
                    Relative::Tomorrow => (today + DAY_MS, today + 2 * DAY_MS),
                    // Both count today as one of their days' span, as Salesforce does.
                    Relative::LastNDays(n) => (today - n * DAY_MS, today + DAY_MS),
                    Relative::NextNDays(n) => (today, today + (n + 1) * DAY_MS),
                };
                Operand::Span(from, to)
            }
            _ => return Err(wrong_type()),
        })
    }
}

fn textual(kind: FieldType) -> bool {
    matches!(kind, FieldType::String | FieldType::TextArea | FieldType::Email | FieldType::Phone)
}

fn type_name(kind: FieldType) -> &'static str {
    match kind {
        FieldType::Id | FieldType::Reference => "id",
        FieldType::String | FieldType::Email | FieldType::Phone => "string",
        FieldType::TextArea => "textarea",
        FieldType::Boolean => "boolean",
        FieldType::DateTime => "dateTime",
        FieldType::Int => "integer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::schema::objects;
    use crate::salesforce::soql::parse::parse;

    fn planned(q: &str) -> Result<(), QueryError> {
        let objects = objects();
        let parsed = parse(q)?;
        plan(&parsed, &objects, 1_796_160_317_000).map(|_| ())
    }

    fn refused(q: &str) -> QueryError {
        planned(q).expect_err(q)
    }

    #[test]
    fn resolves_fields_relationships_and_the_connectors_queries() {
        for ok in [
            "SELECT Id, Name, NetSuite_Id__c FROM Account WHERE NetSuite_Id__c IN ('1','2')",
            "SELECT LastName, AccountId, Account.NetSuite_Id__c, Vendor__c, Vendor__r.NetSuite_Id__c FROM Contact WHERE NetSuite_Id__c IN ('7')",
            "select id, name from vendor__c where systemmodstamp > 2026-12-01T00:00:00Z order by systemmodstamp, id",
            "SELECT Account.Name FROM Account WHERE Id = '0018d0000000001AAA'",
            "SELECT Id FROM Contact WHERE Account.Name LIKE 'Acme%' AND IsDeleted = false",
            "SELECT Id FROM Vendor__c WHERE CreatedDate = LAST_N_DAYS:30 AND Name != null",
            "SELECT COUNT() FROM Vendor__c",
            "SELECT Id FROM Account WHERE NumberOfEmployees >= 50 AND NumberOfEmployees != null",
        ] {
            planned(ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
    }

    #[test]
    fn refuses_unknown_names_with_salesforces_codes() {
        let e = refused("SELECT Id, Nope__c FROM Account");
        assert_eq!((e.code, e.at), ("INVALID_FIELD", 11));
        assert!(e.detail.starts_with("No such column 'Nope__c' on entity 'Account'."), "{}", e.detail);
        let e = refused("SELECT Id FROM Nope__c");
        assert_eq!((e.code, e.at), ("INVALID_TYPE", 15));
        let e = refused("SELECT Owner.Name FROM Account");
        assert!(e.detail.starts_with("Didn't understand relationship 'Owner'"), "{}", e.detail);
        let e = refused("SELECT Id FROM Account WHERE Nope = 'x'");
        assert_eq!((e.code, e.at), ("INVALID_FIELD", 29));
        let e = refused("SELECT Id FROM Account ORDER BY Nope");
        assert_eq!(e.code, "INVALID_FIELD");
        let e = refused("SELECT Id, Name, name FROM Account");
        assert_eq!((e.code, e.detail.as_str()), ("MALFORMED_QUERY", "duplicate field selected: name"));
    }

    #[test]
    fn refuses_literals_of_the_wrong_type() {
        let cases = [
            ("SELECT Id FROM Account WHERE SystemModstamp > '2026-12-01T00:00:00Z'", "must be of type dateTime"),
            ("SELECT Id FROM Account WHERE SystemModstamp > 2026-12-01", "must be of type dateTime"),
            ("SELECT Id FROM Account WHERE Name = 5", "must be of type string and should be enclosed in quotes"),
            ("SELECT Id FROM Account WHERE NumberOfEmployees = '5'", "must be of type integer and should not be"),
            ("SELECT Id FROM Account WHERE IsDeleted = 'true'", "must be of type boolean"),
            ("SELECT Id FROM Account WHERE IsDeleted > true", "invalid operator on boolean field"),
            ("SELECT Id FROM Account WHERE Id = 'nope'", "invalid ID field: nope"),
            ("SELECT Id FROM Account WHERE CreatedDate LIKE 'x'", "invalid operator on dateTime field"),
        ];
        for (q, detail) in cases {
            let e = refused(q);
            assert_eq!(e.code, "INVALID_QUERY_FILTER_OPERATOR", "{q}");
            assert!(e.detail.contains(detail), "{q}: {}", e.detail);
        }
        let e = refused("SELECT Id FROM Account WHERE Description = 'x'");
        assert_eq!(
            (e.code, e.detail.as_str()),
            ("INVALID_FIELD", "field 'Description' can not be filtered in a query call")
        );
        let e = refused("SELECT Id FROM Account OFFSET 2001");
        assert_eq!(e.code, "NUMBER_OUTSIDE_VALID_RANGE");
    }
}
