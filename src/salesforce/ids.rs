//! Salesforce record ids as people type them: the 15-character form (case
//! sensitive, what the UI shows) and the 18-character one the API returns
//! name the same record; the 18-character one survives a change of case.

/// Each 5-character block's capitals, as one character of the suffix.
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character form of a Salesforce id given in either form, the
/// 18-character one in any case; None for text that is neither (wrong
/// length, not letters and digits, a suffix no id has).
pub fn full_id(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => {
            // Each 5-character block adds one character naming which of its
            // characters are upper case, so the id survives case folding.
            let mut full = id.to_string();
            for block in id.as_bytes().chunks(5) {
                let bits = block
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.is_ascii_uppercase())
                    .map(|(i, _)| 1 << i)
                    .sum::<usize>();
                full.push(char::from(SUFFIX[bits]));
            }
            Some(full)
        }
        // The suffix says which letters are capitals: typed in another
        // case, the id is put back as Salesforce wrote it.
        18 => {
            let (head, suffix) = id.as_bytes().split_at(15);
            let mut full = String::with_capacity(18);
            for (block, s) in head.chunks(5).zip(suffix) {
                let bits = SUFFIX.iter().position(|c| *c == s.to_ascii_uppercase())?;
                for (i, b) in block.iter().enumerate() {
                    let upper = bits & (1 << i) != 0;
                    full.push(char::from(if upper { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() }));
                }
            }
            full.extend(suffix.iter().map(|s| char::from(s.to_ascii_uppercase())));
            Some(full)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_form_gains_its_case_suffix() {
        // Blocks `001x0`, `00000` (no capitals: A, A) and `aBcDe` (capitals
        // 2nd and 4th: 2 + 8 = 10, K).
        assert_eq!(full_id("001x000000aBcDe").as_deref(), Some("001x000000aBcDeAAK"));
        assert_eq!(full_id("0018d0000000001").as_deref(), Some("0018d0000000001AAA"));
        assert_eq!(full_id("0018d0000000001AAA").as_deref(), Some("0018d0000000001AAA"));
        assert_eq!(full_id("0018d00000000"), None);
        assert_eq!(full_id("0018d0000000 01"), None);
    }

    #[test]
    fn the_long_form_in_another_case_is_put_back_as_written() {
        assert_eq!(full_id("001X000000ABCDEAAK").as_deref(), Some("001x000000aBcDeAAK"));
        assert_eq!(full_id("001x000000abcdeaak").as_deref(), Some("001x000000aBcDeAAK"));
        assert_eq!(full_id("0018D0000000001aaa").as_deref(), Some("0018d0000000001AAA"));
        // `9` is no suffix character.
        assert_eq!(full_id("0018d00000000019AA"), None);
    }
}
