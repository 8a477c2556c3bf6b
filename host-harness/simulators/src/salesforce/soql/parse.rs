//! The SOQL the simulator understands, parsed into a tree:
//! `SELECT f1, f2 | COUNT() FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC]
//! [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]`, where cond combines
//! comparisons, `[NOT] IN (...)` and `LIKE` with AND, OR, NOT and
//! parentheses. Like Salesforce, AND and OR may not be mixed at one level
//! without parentheses. Names are checked against the schema later (plan).

use super::error::QueryError;
use super::lex::{Op, Tok, Token, lex};
use crate::salesforce::datetime;

/// A field as written: `Name`, or `Account.NetSuite_Id__c` through a relationship.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub parts: Vec<String>,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    /// Unix milliseconds.
    DateTime(i64),
    /// Days since 1970-01-01.
    Date(i64),
    /// TODAY, LAST_N_DAYS:n...: a span of whole UTC days around today.
    Relative(Relative),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Relative {
    Yesterday,
    Today,
    Tomorrow,
    LastNDays(i64),
    NextNDays(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub at: usize,
}

/// One piece of a LIKE pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `%`: any run of characters.
    Any,
    /// `_`: exactly one character.
    One,
    Char(char),
}

/// A WHERE clause over fields `F` and values `V` (as parsed, then as
/// resolved against the schema).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition<F, V> {
    And(Vec<Condition<F, V>>),
    Or(Vec<Condition<F, V>>),
    Not(Box<Condition<F, V>>),
    Compare { field: F, op: Op, value: V },
    In { field: F, negated: bool, values: Vec<V> },
    Like { field: F, pattern: Vec<Pattern> },
}

pub type Parsed = Condition<Path, Spanned<Literal>>;

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy<F> {
    pub field: F,
    pub descending: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Selection<F> {
    /// `SELECT COUNT()`: only totalSize.
    Count,
    Fields(Vec<F>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Selection<Path>,
    pub from: Spanned<String>,
    pub filter: Option<Parsed>,
    pub order: Vec<OrderBy<Path>>,
    pub limit: Option<usize>,
    pub offset: Option<Spanned<usize>>,
}

/// Words that end a field list or condition rather than name a field.
const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET", "GROUP", "HAVING",
    "WITH", "FOR", "USING", "TYPEOF", "NULL", "TRUE", "FALSE", "INCLUDES", "EXCLUDES",
];

/// Clauses of real SOQL this simulator does not implement.
const UNSUPPORTED: &[&str] = &["GROUP", "HAVING", "WITH", "FOR", "USING", "TYPEOF", "INCLUDES", "EXCLUDES"];

pub fn parse(q: &str) -> Result<Query, QueryError> {
    let mut p = Parser { tokens: lex(q)?, pos: 0 };
    let query = p.query()?;
    Ok(query)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let hit = self.at_word(word);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn unexpected(&self) -> QueryError {
        let t = self.peek();
        if let Tok::Word(w) = &t.tok
            && UNSUPPORTED.iter().any(|u| u.eq_ignore_ascii_case(w))
        {
            return QueryError::malformed(t.at, format!("{w} is valid SOQL that this simulator does not support"));
        }
        if t.tok == Tok::Colon {
            return QueryError::malformed(t.at, "Bind variables only allowed in Apex code");
        }
        QueryError::malformed(t.at, format!("unexpected token: {}", t.tok.shown()))
    }

    fn expect_word(&mut self, word: &str) -> Result<(), QueryError> {
        if self.eat_word(word) { Ok(()) } else { Err(self.unexpected()) }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), QueryError> {
        if self.peek().tok == tok {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.expect_word("SELECT")?;
        let select = if self.at_word("COUNT") && self.tokens.get(self.pos + 1).is_some_and(|t| t.tok == Tok::LParen) {
            self.pos += 1;
            self.expect(Tok::LParen)?;
            self.expect(Tok::RParen)?;
            Selection::Count
        } else {
            let mut fields = vec![self.path()?];
            while self.peek().tok == Tok::Comma {
                self.pos += 1;
                fields.push(self.path()?);
            }
            Selection::Fields(fields)
        };
        self.expect_word("FROM")?;
        let from = match self.next() {
            Token { tok: Tok::Word(w), at } if !is_reserved(&w) => Spanned { value: w, at },
            _ => {
                self.pos -= 1;
                return Err(self.unexpected());
            }
        };
        let filter = if self.eat_word("WHERE") { Some(self.condition()?) } else { None };
        let mut order = Vec::new();
        if self.eat_word("ORDER") {
            self.expect_word("BY")?;
            loop {
                let field = self.path()?;
                let descending = if self.eat_word("DESC") {
                    true
                } else {
                    self.eat_word("ASC");
                    false
                };
                // Salesforce's default: nulls first ascending, last descending.
                let nulls_first = if self.eat_word("NULLS") {
                    if self.eat_word("FIRST") {
                        true
                    } else {
                        self.expect_word("LAST")?;
                        false
                    }
                } else {
                    !descending
                };
                order.push(OrderBy { field, descending, nulls_first });
                if self.peek().tok != Tok::Comma {
                    break;
                }
                self.pos += 1;
            }
        }
        let limit = if self.eat_word("LIMIT") { Some(self.count()?.value) } else { None };
        let offset = if self.eat_word("OFFSET") { Some(self.count()?) } else { None };
        if self.peek().tok != Tok::End {
            return Err(self.unexpected());
        }
        Ok(Query { select, from, filter, order, limit, offset })
    }

    /// A non-negative whole number (LIMIT, OFFSET).
    fn count(&mut self) -> Result<Spanned<usize>, QueryError> {
        match self.next() {
            Token { tok: Tok::Number(n), at } => n
                .parse()
                .map(|value| Spanned { value, at })
                .map_err(|_| QueryError::malformed(at, format!("unexpected token: {n}"))),
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }

    fn path(&mut self) -> Result<Path, QueryError> {
        let at = self.peek().at;
        let mut parts = Vec::new();
        loop {
            match self.next().tok {
                Tok::Word(w) if !is_reserved(&w) => parts.push(w),
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            }
            if self.peek().tok != Tok::Dot {
                break;
            }
            self.pos += 1;
        }
        Ok(Path { parts, at })
    }

    /// Units joined by AND only or by OR only; mixing needs parentheses.
    fn condition(&mut self) -> Result<Parsed, QueryError> {
        let first = self.unit()?;
        let joiner = if self.at_word("AND") {
            "AND"
        } else if self.at_word("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let mut units = vec![first];
        while self.eat_word(joiner) {
            units.push(self.unit()?);
        }
        if self.at_word("AND") || self.at_word("OR") {
            return Err(self.unexpected());
        }
        Ok(if joiner == "AND" { Condition::And(units) } else { Condition::Or(units) })
    }

    fn unit(&mut self) -> Result<Parsed, QueryError> {
        if self.eat_word("NOT") {
            return Ok(Condition::Not(Box::new(self.unit()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.pos += 1;
            let inner = self.condition()?;
            self.expect(Tok::RParen)?;
            return Ok(inner);
        }
        let field = self.path()?;
        if let Tok::Op(op) = self.peek().tok {
            self.pos += 1;
            let value = self.literal()?;
            return Ok(Condition::Compare { field, op, value });
        }
        let negated = self.eat_word("NOT");
        if self.eat_word("IN") {
            self.expect(Tok::LParen)?;
            if self.at_word("SELECT") {
                return Err(QueryError::malformed(
                    self.peek().at,
                    "semi-join subqueries are valid SOQL that this simulator does not support",
                ));
            }
            let mut values = vec![self.literal()?];
            while self.peek().tok == Tok::Comma {
                self.pos += 1;
                values.push(self.literal()?);
            }
            self.expect(Tok::RParen)?;
            return Ok(Condition::In { field, negated, values });
        }
        if !negated && self.eat_word("LIKE") {
            return match self.next() {
                Token { tok: Tok::Str(raw), at } => Ok(Condition::Like { field, pattern: like_pattern(&raw, at)? }),
                _ => {
                    self.pos -= 1;
                    Err(self.unexpected())
                }
            };
        }
        Err(self.unexpected())
    }

    fn literal(&mut self) -> Result<Spanned<Literal>, QueryError> {
        let Token { tok, at } = self.next();
        let value = match tok {
            Tok::Str(raw) => Literal::Text(decode(&raw, at)?),
            Tok::Number(n) => {
                Literal::Number(n.parse().map_err(|_| QueryError::malformed(at, format!("unexpected token: {n}")))?)
            }
            Tok::Temporal(t) => {
                let parsed = if t.len() == 10 {
                    datetime::parse_date(&t).map(Literal::Date)
                } else {
                    datetime::parse_datetime(&t).map(Literal::DateTime)
                };
                parsed.ok_or_else(|| QueryError::malformed(at, format!("no viable alternative at character '{t}'")))?
            }
            Tok::Word(w) => {
                word_literal(&w).ok_or_else(|| QueryError::malformed(at, format!("unexpected token: {w}")))?
            }
            _ => {
                self.pos -= 1;
                return Err(self.unexpected());
            }
        };
        Ok(Spanned { value, at })
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// true, false, null and the relative date literals.
fn word_literal(word: &str) -> Option<Literal> {
    let upper = word.to_ascii_uppercase();
    let relative = |r| Some(Literal::Relative(r));
    match upper.as_str() {
        "TRUE" => Some(Literal::Bool(true)),
        "FALSE" => Some(Literal::Bool(false)),
        "NULL" => Some(Literal::Null),
        "YESTERDAY" => relative(Relative::Yesterday),
        "TODAY" => relative(Relative::Today),
        "TOMORROW" => relative(Relative::Tomorrow),
        _ => {
            let (name, n) = upper.split_once(':')?;
            let n: i64 = n.parse().ok()?;
            match name {
                "LAST_N_DAYS" => relative(Relative::LastNDays(n)),
                "NEXT_N_DAYS" => relative(Relative::NextNDays(n)),
                _ => None,
            }
        }
    }
}

/// A string literal's value: SOQL's escapes decoded, any other backslash
/// refused (`\%` and `\_` only mean something inside LIKE).
pub fn decode(raw: &str, at: usize) -> Result<String, QueryError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(escape(&mut chars, raw, at)?);
    }
    Ok(out)
}

/// A LIKE pattern: `%` and `_` are wildcards unless escaped.
fn like_pattern(raw: &str, at: usize) -> Result<Vec<Pattern>, QueryError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '%' => Pattern::Any,
            '_' => Pattern::One,
            '\\' if matches!(chars.peek(), Some('%' | '_')) => Pattern::Char(chars.next().unwrap_or_default()),
            '\\' => Pattern::Char(escape(&mut chars, raw, at)?),
            c => Pattern::Char(c),
        });
    }
    Ok(out)
}

fn escape(chars: &mut impl Iterator<Item = char>, raw: &str, at: usize) -> Result<char, QueryError> {
    let illegal = |seq: &str| {
        QueryError::malformed(
            at,
            format!("Invalid string literal '{raw}'. Illegal character sequence '\\{seq}' in string literal."),
        )
    };
    Ok(match chars.next() {
        Some('\\') => '\\',
        Some('\'') => '\'',
        Some('"') => '"',
        Some('n' | 'N') => '\n',
        Some('r' | 'R') => '\r',
        Some('t' | 'T') => '\t',
        Some('b' | 'B') => '\u{8}',
        Some('f' | 'F') => '\u{c}',
        Some(u @ ('u' | 'U')) => {
            let hex: String = chars.by_ref().take(4).collect();
            u32::from_str_radix(&hex, 16)
                .ok()
                .filter(|_| hex.len() == 4)
                .and_then(char::from_u32)
                .ok_or_else(|| illegal(&format!("{u}{hex}")))?
        }
        Some(other) => return Err(illegal(&other.to_string())),
        None => return Err(illegal("")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str], at: usize) -> Path {
        Path { parts: parts.iter().map(|p| p.to_string()).collect(), at }
    }

    fn where_of(q: &str) -> Parsed {
        parse(q).unwrap().filter.unwrap()
    }

    #[test]
    fn parses_a_keyset_page_query() {
        let q = "select Id, Name, Account.NetSuite_Id__c FROM Contact \
                 WHERE SystemModstamp > 2026-12-01T21:25:17Z OR (SystemModstamp = 2026-12-01T21:25:17Z AND Id > '0038d0000000001AAA') \
                 ORDER BY SystemModstamp, Id DESC NULLS FIRST LIMIT 200";
        let parsed = parse(q).unwrap();
        assert_eq!(
            parsed.select,
            Selection::Fields(vec![path(&["Id"], 7), path(&["Name"], 11), path(&["Account", "NetSuite_Id__c"], 17)])
        );
        assert_eq!(parsed.from.value, "Contact");
        let stamp = 1_796_160_317_000;
        let Some(Condition::Or(branches)) = &parsed.filter else { panic!("{:?}", parsed.filter) };
        assert!(
            matches!(&branches[0], Condition::Compare { op: Op::Gt, value, .. } if value.value == Literal::DateTime(stamp))
        );
        let Condition::And(inner) = &branches[1] else { panic!("{branches:?}") };
        assert!(
            matches!(&inner[1], Condition::Compare { op: Op::Gt, value, .. } if value.value == Literal::Text("0038d0000000001AAA".into()))
        );
        assert_eq!(parsed.order.len(), 2);
        assert!(!parsed.order[0].descending && parsed.order[0].nulls_first, "ASC NULLS FIRST by default");
        assert!(parsed.order[1].descending && parsed.order[1].nulls_first);
        assert_eq!(parsed.limit, Some(200));
    }

    #[test]
    fn reads_every_kind_of_literal() {
        let q = "SELECT Id FROM Account WHERE Name IN ('a\\'b', 'c\\\\d', 'e\\nf', '\\u00e9') AND NOT Phone = null \
                 AND X__c = 12.5 AND F__c = TRUE AND D__c = 2026-12-01 AND CreatedDate = LAST_N_DAYS:7 \
                 AND Email__c NOT IN ('x') AND Name LIKE 'Ac\\_me%'";
        let Condition::And(parts) = where_of(q) else { panic!() };
        let Condition::In { values, negated: false, .. } = &parts[0] else { panic!("{:?}", parts[0]) };
        let texts: Vec<&Literal> = values.iter().map(|v| &v.value).collect();
        assert_eq!(
            texts,
            vec![
                &Literal::Text("a'b".into()),
                &Literal::Text("c\\d".into()),
                &Literal::Text("e\nf".into()),
                &Literal::Text("é".into())
            ]
        );
        assert!(
            matches!(&parts[1], Condition::Not(inner) if matches!(**inner, Condition::Compare { ref value, .. } if value.value == Literal::Null))
        );
        assert!(matches!(&parts[2], Condition::Compare { value, .. } if value.value == Literal::Number(12.5)));
        assert!(matches!(&parts[3], Condition::Compare { value, .. } if value.value == Literal::Bool(true)));
        assert!(matches!(&parts[4], Condition::Compare { value, .. } if value.value == Literal::Date(20_788)));
        assert!(
            matches!(&parts[5], Condition::Compare { value, .. } if value.value == Literal::Relative(Relative::LastNDays(7)))
        );
        assert!(matches!(&parts[6], Condition::In { negated: true, .. }));
        let Condition::Like { pattern, .. } = &parts[7] else { panic!() };
        assert_eq!(
            pattern,
            &vec![
                Pattern::Char('A'),
                Pattern::Char('c'),
                Pattern::Char('_'),
                Pattern::Char('m'),
                Pattern::Char('e'),
                Pattern::Any
            ]
        );
    }

    #[test]
    fn parentheses_group_and_not_binds_tightest() {
        let c = where_of("SELECT Id FROM Account WHERE NOT (Name = 'a' OR Name = 'b') AND Phone != null");
        let Condition::And(parts) = c else { panic!() };
        assert!(matches!(&parts[0], Condition::Not(inner) if matches!(**inner, Condition::Or(_))));
        assert!(matches!(&parts[1], Condition::Compare { op: Op::Ne, .. }));
        let c = where_of("SELECT Id FROM Account WHERE Name <> 'a'");
        assert!(matches!(c, Condition::Compare { op: Op::Ne, .. }));
    }

    #[test]
    fn refuses_malformed_queries_at_the_offending_token() {
        let cases = [
            ("SELECT Id FROM", 14, "unexpected token: <EOF>"),
            ("SELECT Id, FROM Account", 11, "unexpected token: FROM"),
            ("SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", 55, "unexpected token: OR"),
            ("SELECT Id FROM Account WHERE Name = 'a\\q'", 36, "Illegal character sequence '\\q'"),
            ("SELECT Id FROM Account WHERE Name = 'a\\%'", 36, "Illegal character sequence '\\%'"),
            ("SELECT Id FROM Account WHERE Name IN ()", 38, "unexpected token: )"),
            ("SELECT Id FROM Account WHERE Name = :x", 36, "Bind variables"),
            ("SELECT Id FROM Account LIMIT x", 29, "unexpected token: x"),
            ("SELECT Id FROM Account GROUP BY Name", 23, "does not support"),
            ("SELECT Id FROM Account WHERE CreatedDate > 2026-13-01T00:00:00Z", 43, "no viable alternative"),
            ("SELECT Id FROM Account WHERE Name = SOMEDAY", 36, "unexpected token: SOMEDAY"),
            ("SELECT Id FROM Account extra", 23, "unexpected token: extra"),
        ];
        for (q, at, detail) in cases {
            let e = parse(q).unwrap_err();
            assert_eq!(e.code, "MALFORMED_QUERY", "{q}");
            assert_eq!(e.at, at, "{q}: {e:?}");
            assert!(e.detail.contains(detail), "{q}: {}", e.detail);
        }
    }

    #[test]
    fn count_limit_and_offset() {
        let q = parse("SELECT COUNT() FROM Vendor__c LIMIT 10 OFFSET 5").unwrap();
        assert_eq!(q.select, Selection::Count);
        assert_eq!((q.limit, q.offset.map(|o| o.value)), (Some(10), Some(5)));
    }
}
