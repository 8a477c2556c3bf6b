//! Salesforce record ids as people type them: the 15-character form (case
//! sensitive, what the UI shows) and the 18-character one the API returns
//! name the same record.

/// The 18-character form of a Salesforce id given in either form; None for
/// text that is neither (wrong length, not letters and digits).
pub fn full_id(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        18 => Some(id.to_string()),
        15 => {
            // Each 5-character block adds one character naming which of its
            // characters are upper case, so the id survives case folding.
            const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
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
}
