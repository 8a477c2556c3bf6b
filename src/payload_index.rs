//! Where each field's value sits in a payload's compact JSON text, so the
//! audit can copy a value serde_json already escaped for the write instead
//! of escaping it again (a first sync puts every value in both).

use std::ops::Range;

thread_local! {
    static FOUND: crate::found_last::FoundLast = const { crate::found_last::FoundLast::new() };
}

/// The members of one compact JSON object as serde_json writes it: each
/// key's text between its quotes (as escaped) and its value's text.
pub struct PayloadIndex<'a> {
    text: &'a str,
    members: Vec<(Range<usize>, Range<usize>)>,
}

impl<'a> PayloadIndex<'a> {
    /// Indexes `text`, the compact JSON of an object (serde_json's output).
    /// Anything else indexes as empty, so every lookup misses.
    pub fn new(text: &'a str) -> PayloadIndex<'a> {
        let members = members(text.as_bytes()).unwrap_or_default();
        PayloadIndex { text, members }
    }

    /// The JSON text of `key`'s value, when the key was written without
    /// escapes (API names always are). Keys are sorted when the object came
    /// from a `serde_json::Map`; a miss only means the caller writes the
    /// value itself.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        let text = self.text;
        let found = FOUND
            .with(|found| {
                found.find(
                    key,
                    |at| self.members.get(at).is_some_and(|(k, _)| &text[k.clone()] == key),
                    || self.members.binary_search_by(|(k, _)| text[k.clone()].cmp(key)),
                )
            })
            .ok()?;
        Some(&text[self.members[found].1.clone()])
    }
}

/// The members of the object `bytes` holds, or None when it is not one
/// object in compact form.
fn members(bytes: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    let next = |expected: u8, at: &mut usize| -> Option<()> { (bytes.get(*at) == Some(&expected)).then(|| *at += 1) };
    let mut at = 0;
    next(b'{', &mut at)?;
    let mut out = Vec::with_capacity(16);
    if bytes.get(at) == Some(&b'}') {
        return (at + 1 == bytes.len()).then_some(out);
    }
    loop {
        next(b'"', &mut at)?;
        let key_start = at;
        at = string_end(bytes, at)?;
        let key = key_start..at;
        at += 1;
        next(b':', &mut at)?;
        let value_start = at;
        at = value_end(bytes, at).filter(|end| *end > value_start)?;
        out.push((key, value_start..at));
        match bytes.get(at)? {
            b',' => at += 1,
            b'}' if at + 1 == bytes.len() => return Some(out),
            _ => return None,
        }
    }
}

/// Whether any byte of `word` is `byte` (the classic zero-byte test on
/// `word ^ byte…byte`; exact, no false answers).
fn holds(word: u64, byte: u8) -> bool {
    let x = word ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 != 0
}

/// The index of the quote closing the string whose text starts at `at`.
fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        // Eight bytes a step while none is a quote or a backslash: most of
        // a payload is string text (this scan was a twentieth of the
        // component's time a byte at a time).
        while let Some(chunk) = bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            if holds(word, b'"') || holds(word, b'\\') {
                break;
            }
            at += 8;
        }
        match bytes.get(at)? {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// Where the value starting at `at` ends: past a string's closing quote,
/// arrays and objects by their depth, scalars at the next `,`, `}` or `]`.
fn value_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match bytes.get(at)? {
            b'"' => at = string_end(bytes, at + 1)? + 1,
            b'[' | b'{' => {
                depth += 1;
                at += 1;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                at += 1;
            }
            b',' | b']' | b'}' if depth == 0 => return Some(at),
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    #[test]
    fn finds_every_value_as_serde_json_wrote_it() {
        let Value::Object(map) = json!({
            "Name": "Acme \"Quoted\" \\ Co\n",
            "Phone": null,
            "Active": false,
            "Count": 12.5,
            "Nested": {"a": [1, "]}", {"b": "{"}], "c": "x"},
            "List": [],
            "Street": "Bahnhofstraße\u{2028}",
        }) else {
            unreachable!()
        };
        let text = serde_json::to_string(&map).unwrap();
        let index = PayloadIndex::new(&text);
        for (key, value) in &map {
            assert_eq!(index.value(key), Some(value.to_string().as_str()), "{key}");
        }
        assert_eq!(index.value("Missing"), None);
    }

    #[test]
    fn anything_but_one_compact_object_indexes_as_empty() {
        for text in ["", "{", "[]", "{}", "{\"a\":1", "{\"a\":1}x", "{\"a\" :1}", "\"a\"", "{\"a\":\"1}"] {
            let index = PayloadIndex::new(text);
            assert_eq!(index.value("a"), None, "{text}");
        }
        assert_eq!(PayloadIndex::new(&serde_json::to_string(&Map::new()).unwrap()).value(""), None);
    }

    #[test]
    fn the_word_test_finds_a_byte_in_any_position_and_only_then() {
        for at in 0..8 {
            for byte in [b'"', b'\\', 0, 0x80, 0xff] {
                let mut word = [b'a'; 8];
                word[at] = byte;
                assert!(holds(u64::from_le_bytes(word), byte), "{byte:#x} at {at}");
                assert!(!holds(u64::from_le_bytes([b'a'; 8]), byte));
            }
        }
        let long = format!("{{\"k\":\"{}\\\"{}\"}}", "x".repeat(21), "y".repeat(13));
        assert_eq!(PayloadIndex::new(&long).value("k").map(str::len), Some(21 + 2 + 13 + 2));
    }

    #[test]
    fn an_escaped_key_misses_instead_of_matching_wrongly() {
        let text = r#"{"a\"b":1,"ab":2}"#;
        let index = PayloadIndex::new(text);
        assert_eq!(index.value("ab"), Some("2"));
        assert_eq!(index.value("a\"b"), None);
    }
}
