//! SOQL text into tokens, each with its byte offset for error messages.
//! String literals keep their raw text: what an escape means depends on
//! whether the literal is a LIKE pattern, which only the parser knows.

use super::error::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name or keyword; relative date literals keep their `:n`.
    Word(String),
    /// The text between single quotes, escapes undecoded.
    Str(String),
    /// Digits, maybe signed, maybe with a fraction.
    Number(String),
    /// `2026-12-01` or `2026-12-01T21:25:17Z` and its variants.
    Temporal(String),
    Op(Op),
    Comma,
    LParen,
    RParen,
    Dot,
    /// Starts an Apex bind variable, which REST queries cannot use.
    Colon,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub at: usize,
}

impl Tok {
    /// How an error names the token.
    pub fn shown(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Number(w) | Tok::Temporal(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Op(op) => op.text().to_string(),
            Tok::Comma => ",".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Dot => ".".into(),
            Tok::Colon => ":".into(),
            Tok::End => "<EOF>".into(),
        }
    }
}

impl Op {
    /// Whether `o` (a value compared with the operand) satisfies this operator.
    pub fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Op::Eq => o == Equal,
            Op::Ne => o != Equal,
            Op::Lt => o == Less,
            Op::Le => o != Greater,
            Op::Gt => o == Greater,
            Op::Ge => o != Less,
        }
    }

    /// Whether instant `v` satisfies this operator against a whole-day
    /// span `[from, to)` (a relative date literal such as TODAY).
    pub fn holds_in_span(self, v: i64, from: i64, to: i64) -> bool {
        match self {
            Op::Eq => (from..to).contains(&v),
            Op::Ne => !(from..to).contains(&v),
            Op::Lt => v < from,
            Op::Le => v < to,
            Op::Gt => v >= to,
            Op::Ge => v >= from,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

pub fn lex(q: &str) -> Result<Vec<Token>, QueryError> {
    let bytes = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let tok = match c {
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'\'' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(QueryError::malformed(start, "mismatched character '<EOF>' expecting '''")),
                        Some(b'\\') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                Tok::Str(q[start + 1..i - 1].to_string())
            }
            b'0'..=b'9' => {
                i = scan(bytes, i, |b| b.is_ascii_alphanumeric() || b".:+-".contains(&b));
                temporal_or_number(&q[start..i], start)?
            }
            b'-' | b'+' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = scan(bytes, i + 1, |b| b.is_ascii_digit() || b == b'.');
                Tok::Number(q[start..i].to_string())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                i = scan(bytes, i, |b| b.is_ascii_alphanumeric() || b == b'_');
                // LAST_N_DAYS:30 is one literal.
                if bytes.get(i) == Some(&b':') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i = scan(bytes, i + 1, |b| b.is_ascii_digit());
                }
                Tok::Word(q[start..i].to_string())
            }
            b'=' => {
                i += 1;
                Tok::Op(Op::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(Op::Ne)
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'>') => {
                    i += 2;
                    Tok::Op(Op::Ne)
                }
                Some(b'=') => {
                    i += 2;
                    Tok::Op(Op::Le)
                }
                _ => {
                    i += 1;
                    Tok::Op(Op::Lt)
                }
            },
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Op(Op::Ge)
                } else {
                    i += 1;
                    Tok::Op(Op::Gt)
                }
            }
            b',' | b'(' | b')' | b'.' | b':' => {
                i += 1;
                match c {
                    b',' => Tok::Comma,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'.' => Tok::Dot,
                    _ => Tok::Colon,
                }
            }
            _ => {
                let shown = q[i..].chars().next().unwrap_or(' ');
                return Err(QueryError::malformed(i, format!("no viable alternative at character '{shown}'")));
            }
        };
        out.push(Token { tok, at: start });
    }
    out.push(Token { tok: Tok::End, at: q.len() });
    Ok(out)
}

fn scan(bytes: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|b| keep(*b)) {
        i += 1;
    }
    i
}

/// Text that starts with a digit: a date, a dateTime or a number.
fn temporal_or_number(text: &str, at: usize) -> Result<Tok, QueryError> {
    let b = text.as_bytes();
    let date_shaped = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    if date_shaped {
        return Ok(Tok::Temporal(text.to_string()));
    }
    let mut parts = text.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(whole) && fraction.is_none_or(digits) {
        Ok(Tok::Number(text.to_string()))
    } else {
        Err(QueryError::malformed(at, format!("unexpected token: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(q: &str) -> Vec<Tok> {
        lex(q).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn splits_words_literals_and_operators() {
        assert_eq!(
            toks("SELECT Id FROM Vendor__c WHERE SystemModstamp >= 2026-12-01T21:25:17.000+0000 AND Name<>'O\\'B'"),
            vec![
                Tok::Word("SELECT".into()),
                Tok::Word("Id".into()),
                Tok::Word("FROM".into()),
                Tok::Word("Vendor__c".into()),
                Tok::Word("WHERE".into()),
                Tok::Word("SystemModstamp".into()),
                Tok::Op(Op::Ge),
                Tok::Temporal("2026-12-01T21:25:17.000+0000".into()),
                Tok::Word("AND".into()),
                Tok::Word("Name".into()),
                Tok::Op(Op::Ne),
                Tok::Str("O\\'B".into()),
                Tok::End,
            ]
        );
        assert_eq!(
            toks("a IN (1,-2.5) LAST_N_DAYS:30 Account.Name"),
            vec![
                Tok::Word("a".into()),
                Tok::Word("IN".into()),
                Tok::LParen,
                Tok::Number("1".into()),
                Tok::Comma,
                Tok::Number("-2.5".into()),
                Tok::RParen,
                Tok::Word("LAST_N_DAYS:30".into()),
                Tok::Word("Account".into()),
                Tok::Dot,
                Tok::Word("Name".into()),
                Tok::End,
            ]
        );
    }

    #[test]
    fn refuses_what_is_no_token() {
        assert_eq!(lex("Name = 'open").unwrap_err().code, "MALFORMED_QUERY");
        assert_eq!(lex("Name = 'a\\'").unwrap_err().code, "MALFORMED_QUERY", "an escaped quote ends nothing");
        assert_eq!(lex("Name = #").unwrap_err().at, 7);
        assert_eq!(lex("x = 12abc").unwrap_err().detail, "unexpected token: 12abc");
    }
}
