//! Lone UTF-16 surrogates in NetSuite's JSON. NetSuite stores Java strings,
//! which can hold half of a surrogate pair (a truncated emoji, a bad import);
//! it then sends `"\ud800"`, which is not a Unicode scalar value and which a
//! strict JSON parser refuses, failing the whole page. The repair rewrites
//! each lone surrogate escape to a mark the row reader turns into U+FFFD and
//! reports against the record, so one value never stops a page.

/// Stands in for a repaired surrogate between the repair and the row reader:
/// a noncharacter, which no NetSuite text holds.
pub const MARK: char = '\u{FDD1}';
const MARK_ESCAPE: &[u8] = b"\\ufdd1";

/// Whether a value holds the mark. `str::contains` with a non-ASCII char
/// builds a substring searcher each call; values are checked by the
/// hundred thousand, and almost none holds the mark's lead byte.
pub fn marked(text: &str) -> bool {
    let mut lead = [0; 4];
    let lead = MARK.encode_utf8(&mut lead).as_bytes()[0];
    text.as_bytes().contains(&lead) && text.contains(MARK)
}

fn hex4(b: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(b.get(..4)?).ok()?;
    u16::from_str_radix(text, 16).ok()
}

fn is_high(u: u16) -> bool {
    (0xD800..0xDC00).contains(&u)
}

fn is_low(u: u16) -> bool {
    (0xDC00..0xE000).contains(&u)
}

/// The body with every lone surrogate escape replaced by the mark's escape,
/// or None when it holds none (the body is then bad for another reason).
pub fn repair(body: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] != b'\\' {
            i += 1;
            continue;
        }
        // A backslash only occurs inside strings and always starts an
        // escape: skip the escaped character, or read a \uXXXX.
        if body[i + 1] != b'u' {
            i += 2;
            continue;
        }
        let Some(unit) = hex4(&body[i + 2..]) else {
            i += 2;
            continue;
        };
        let paired =
            is_high(unit) && body.get(i + 6..i + 8) == Some(b"\\u") && hex4(&body[i + 8..]).is_some_and(is_low);
        if paired {
            i += 12;
        } else if is_high(unit) || is_low(unit) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
            out.extend_from_slice(&body[copied..i]);
            out.extend_from_slice(MARK_ESCAPE);
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    out.map(|mut out| {
        out.extend_from_slice(&body[copied..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(body: &str) -> Option<String> {
        repair(body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn lone_surrogates_become_the_mark_and_pairs_stay() {
        assert_eq!(repaired(r#"{"a":"x\ud800y"}"#).unwrap(), r#"{"a":"x\ufdd1y"}"#);
        assert_eq!(repaired(r#"{"a":"\udc00"}"#).unwrap(), r#"{"a":"\ufdd1"}"#);
        assert_eq!(repaired(r#"{"a":"\ud83d\ude00 \ud83d"}"#).unwrap(), r#"{"a":"\ud83d\ude00 \ufdd1"}"#);
        assert_eq!(repaired(r#"{"a":"\ud83d\u0041"}"#).unwrap(), r#"{"a":"\ufdd1\u0041"}"#);
    }

    #[test]
    fn escaped_backslashes_and_clean_bodies_are_left_alone() {
        assert_eq!(repaired(r#"{"a":"\\ud800 \u00e9 \ud83d\ude00"}"#), None);
        assert_eq!(repaired(r#"{"a":"plain"}"#), None);
        assert_eq!(repaired(r#"{"a":"\u12"}"#), None);
    }

    #[test]
    fn only_values_holding_the_mark_are_marked() {
        assert!(marked("x\u{FDD1}y") && marked("\u{FDD1}"));
        // U+FDD0 and U+F8FF share the mark's lead byte.
        for clean in ["", "plain", "\u{FDD0}", "\u{F8FF} Zürich", "\u{FFFD}"] {
            assert!(!marked(clean), "{clean}");
        }
    }
}
