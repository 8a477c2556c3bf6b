//! Value transforms a mapping can apply after a rule.

use super::file::Transform;

/// ISO 3166-1 alpha-2 codes for country names NetSuite users type.
const COUNTRIES: &[(&str, &str)] = &[
    ("united states", "US"),
    ("united states of america", "US"),
    ("usa", "US"),
    ("u.s.a.", "US"),
    ("canada", "CA"),
    ("mexico", "MX"),
    ("united kingdom", "GB"),
    ("great britain", "GB"),
    ("uk", "GB"),
    ("england", "GB"),
    ("ireland", "IE"),
    ("germany", "DE"),
    ("deutschland", "DE"),
    ("france", "FR"),
    ("spain", "ES"),
    ("españa", "ES"),
    ("italy", "IT"),
    ("netherlands", "NL"),
    ("belgium", "BE"),
    ("switzerland", "CH"),
    ("austria", "AT"),
    ("sweden", "SE"),
    ("norway", "NO"),
    ("denmark", "DK"),
    ("finland", "FI"),
    ("poland", "PL"),
    ("portugal", "PT"),
    ("australia", "AU"),
    ("new zealand", "NZ"),
    ("japan", "JP"),
    ("china", "CN"),
    ("india", "IN"),
    ("singapore", "SG"),
    ("brazil", "BR"),
    ("south africa", "ZA"),
    ("israel", "IL"),
    ("united arab emirates", "AE"),
    ("south korea", "KR"),
    ("hong kong", "HK"),
    ("argentina", "AR"),
    ("chile", "CL"),
    ("colombia", "CO"),
];

/// Applies one transform; an error says what was wrong with the value.
/// Takes the value, so one already in the wanted form (trimmed, in the
/// wanted case) comes back as it is instead of as a copy: transforms run for
/// every record.
pub fn apply(transform: Transform, value: String) -> Result<String, String> {
    Ok(match transform {
        Transform::Trim => match value.trim() {
            trimmed if trimmed.len() == value.len() => value,
            trimmed => trimmed.to_string(),
        },
        Transform::Upper if value.is_ascii() => ascii_case(value, u8::is_ascii_lowercase, str::make_ascii_uppercase),
        Transform::Upper => value.to_uppercase(),
        Transform::Lower if value.is_ascii() => ascii_case(value, u8::is_ascii_uppercase, str::make_ascii_lowercase),
        Transform::Lower => value.to_lowercase(),
        Transform::Title => value
            .split(' ')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect()).unwrap_or_default()
            })
            .collect::<Vec<String>>()
            .join(" "),
        Transform::Phone => phone(&value)?,
        Transform::CountryIso => country(value)?,
    })
}

/// An ASCII value in the other case, changed in place when it has a byte
/// to change (`to_*case` of ASCII text is exactly that).
fn ascii_case(mut value: String, changes: fn(&u8) -> bool, change: fn(&mut str)) -> String {
    if value.as_bytes().iter().any(changes) {
        change(&mut value);
    }
    value
}

/// E.164: `+` and digits. Ten digits are taken as North American.
fn phone(value: &str) -> Result<String, String> {
    // A label before the number ("tel:", "Phone: ", "(cell) ") is not part
    // of it; an area code's parenthesis holds no digit to lose.
    let start = value.find(|c: char| c.is_ascii_digit() || c == '+').unwrap_or(value.len());
    let text = &value[start..];
    let plus = text.starts_with('+');
    // "+44 (0)20 …": the trunk zero is dialled at home only, never after
    // the country code — except in Italy and San Marino, which keep it.
    let keeps_zero = ["+39", "0039", "+378", "00378"].iter().any(|p| text.starts_with(p));
    let international = (plus || text.starts_with("00")) && !keeps_zero;
    // Written once, with room for the prefix: `+`, or `+1`. One pass: the
    // number ends where an extension or a note begins ("x123", "ext. 4",
    // "poste 123", "#42", ";ext=5"), whose digits are not its.
    let mut number = String::with_capacity(text.len() + 2);
    number.push('+');
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '0'..='9' => number.push(c),
            '(' if international && text[i..].starts_with("(0)") => {
                chars.nth(1);
            }
            '#' | ';' | ',' | '*' => break,
            c if c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic()) => break,
            _ => {}
        }
    }
    let digits = number.len() - 1;
    match (plus, digits) {
        (true, 8..=15) => {}
        (false, 10) => number.insert(1, '1'),
        (false, 11) if number[1..].starts_with('1') => {}
        (false, 12..=17) if number[1..].starts_with("00") => number.replace_range(1..3, ""),
        _ => return Err(format!("`{value}` is not a phone number this transform can put in E.164 form")),
    }
    Ok(number)
}

fn country(value: String) -> Result<String, String> {
    let v = value.trim();
    // The one two-letter name that is not its country's code.
    if v.eq_ignore_ascii_case("uk") {
        return Ok("GB".into());
    }
    if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) {
        let code = match v.len() == value.len() {
            true => value,
            false => v.to_string(),
        };
        return Ok(ascii_case(code, u8::is_ascii_lowercase, str::make_ascii_uppercase));
    }
    let lower = v.to_lowercase();
    COUNTRIES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, code)| code.to_string())
        .ok_or_else(|| format!("`{value}` is not a country this transform knows: map it with value_map"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_become_e164() {
        assert_eq!(apply(Transform::Phone, "+1 415-555-0199".into()).unwrap(), "+14155550199");
        assert_eq!(apply(Transform::Phone, "(415) 555.0199".into()).unwrap(), "+14155550199");
        assert_eq!(apply(Transform::Phone, "0044 20 7946 0958".into()).unwrap(), "+442079460958");
        assert_eq!(apply(Transform::Phone, "+49 30 1234567 x12".into()).unwrap(), "+49301234567");
        assert_eq!(apply(Transform::Phone, "(415) 555-0199 ext. 89".into()).unwrap(), "+14155550199");
        assert_eq!(apply(Transform::Phone, "415.555.0199 EXT 7".into()).unwrap(), "+14155550199");
        assert!(apply(Transform::Phone, "call me".into()).unwrap_err().contains("E.164"));
        // The trunk zero after a country code, and extensions however written.
        for (written, e164) in [
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("+33 (0)1 23 45 67 89", "+33123456789"),
            ("0049 (0)30 1234567", "+49301234567"),
            ("+1 (555) 010-0000 #42", "+15550100000"),
            ("+1 514 555 0100 poste 123", "+15145550100"),
            ("+1 514 555 0100;ext=7", "+15145550100"),
            ("(415) 555-0199, 2", "+14155550199"),
            ("tel:+14155550199", "+14155550199"),
            ("Phone: 415-555-0199", "+14155550199"),
            ("Tel. +1 415 555 0199", "+14155550199"),
            ("(cell) 415-555-0199", "+14155550199"),
            ("+39 (0)6 1234 5678", "+390612345678"),
        ] {
            assert_eq!(apply(Transform::Phone, written.into()).unwrap(), e164, "{written}");
        }
        // Letters in the number itself leave too few digits: refused, not guessed.
        assert!(apply(Transform::Phone, "1-800-FLOWERS".into()).unwrap_err().contains("E.164"));
    }

    #[test]
    fn countries_become_iso_codes() {
        assert_eq!(apply(Transform::CountryIso, "us".into()).unwrap(), "US");
        assert_eq!(apply(Transform::CountryIso, "United Kingdom".into()).unwrap(), "GB");
        assert_eq!(apply(Transform::CountryIso, " UK ".into()).unwrap(), "GB", "a name, not a code");
        assert!(apply(Transform::CountryIso, "Narnia".into()).unwrap_err().contains("value_map"));
    }

    #[test]
    fn case_transforms() {
        assert_eq!(apply(Transform::Title, "mÜLLER gmbh".into()).unwrap(), "Müller Gmbh");
        assert_eq!(apply(Transform::Lower, "AP@Example.COM".into()).unwrap(), "ap@example.com");
        for (t, value, expected) in [
            (Transform::Lower, "ap@example.com", "ap@example.com"),
            (Transform::Lower, "ÄRGER GmbH", "ärger gmbh"),
            (Transform::Upper, "abc-1", "ABC-1"),
            (Transform::Upper, "ABC", "ABC"),
            (Transform::Upper, "straße", "STRASSE"),
            (Transform::Trim, "  x y ", "x y"),
            (Transform::Trim, "x", "x"),
            (Transform::CountryIso, " gb ", "GB"),
            (Transform::CountryIso, "De", "DE"),
            (Transform::CountryIso, "España", "ES"),
            (Transform::Phone, "4155550199", "+14155550199"),
            (Transform::Phone, "1 415 555 0199", "+14155550199"),
        ] {
            assert_eq!(apply(t, value.into()).unwrap(), expected, "{t:?} {value}");
        }
    }
}
