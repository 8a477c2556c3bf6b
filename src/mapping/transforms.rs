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
pub fn apply(transform: Transform, value: &str) -> Result<String, String> {
    Ok(match transform {
        Transform::Trim => value.trim().to_string(),
        Transform::Upper => value.to_uppercase(),
        Transform::Lower => value.to_lowercase(),
        Transform::Title => value
            .split(' ')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect()).unwrap_or_default()
            })
            .collect::<Vec<String>>()
            .join(" "),
        Transform::Phone => phone(value)?,
        Transform::CountryIso => country(value)?,
    })
}

/// E.164: `+` and digits. Ten digits are taken as North American.
fn phone(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    let plus = trimmed.starts_with('+');
    // An extension ("x123", "ext. 4") is not part of the number: cutting at
    // the first x cuts "ext" too (its "e" is no digit).
    let main = trimmed.split(['x', 'X']).next().unwrap_or(trimmed);
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let number = match (plus, digits.len()) {
        (true, 8..=15) => format!("+{digits}"),
        (false, 10) => format!("+1{digits}"),
        (false, 11) if digits.starts_with('1') => format!("+{digits}"),
        (false, 12..=17) if digits.starts_with("00") => format!("+{}", &digits[2..]),
        _ => return Err(format!("`{value}` is not a phone number this transform can put in E.164 form")),
    };
    Ok(number)
}

fn country(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) {
        return Ok(v.to_ascii_uppercase());
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
        assert_eq!(apply(Transform::Phone, "+1 415-555-0199").unwrap(), "+14155550199");
        assert_eq!(apply(Transform::Phone, "(415) 555.0199").unwrap(), "+14155550199");
        assert_eq!(apply(Transform::Phone, "0044 20 7946 0958").unwrap(), "+442079460958");
        assert_eq!(apply(Transform::Phone, "+49 30 1234567 x12").unwrap(), "+49301234567");
        assert_eq!(apply(Transform::Phone, "(415) 555-0199 ext. 89").unwrap(), "+14155550199");
        assert_eq!(apply(Transform::Phone, "415.555.0199 EXT 7").unwrap(), "+14155550199");
        assert!(apply(Transform::Phone, "call me").unwrap_err().contains("E.164"));
    }

    #[test]
    fn countries_become_iso_codes() {
        assert_eq!(apply(Transform::CountryIso, "us").unwrap(), "US");
        assert_eq!(apply(Transform::CountryIso, "United Kingdom").unwrap(), "GB");
        assert!(apply(Transform::CountryIso, "Narnia").unwrap_err().contains("value_map"));
    }

    #[test]
    fn case_transforms() {
        assert_eq!(apply(Transform::Title, "mÜLLER gmbh").unwrap(), "Müller Gmbh");
        assert_eq!(apply(Transform::Lower, "AP@Example.COM").unwrap(), "ap@example.com");
    }
}
