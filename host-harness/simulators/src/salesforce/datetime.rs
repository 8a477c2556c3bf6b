//! Salesforce's datetime text: what records and job infos show
//! (`2026-12-01T21:25:17.000+0000`, always UTC) and the literals SOQL
//! accepts (`2026-12-01T21:25:17Z`, `...17.000Z`, `...17+01:00`, `...17+0100`;
//! dates `2026-12-01`).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// `secs` (Unix seconds) as Salesforce writes a dateTime in JSON.
pub fn format(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000+0000")).ok())
        .unwrap_or_default()
}

/// A SOQL dateTime literal as Unix milliseconds; None when `text` is not one.
pub fn parse_datetime(text: &str) -> Option<i64> {
    // SOQL takes the offset with or without its colon; RFC 3339 wants it.
    let bytes = text.as_bytes();
    let n = bytes.len();
    let normalized;
    let text = if n > 5
        && matches!(bytes[n - 5], b'+' | b'-')
        && bytes[n - 4..].iter().all(u8::is_ascii_digit)
        && text[..n - 5].contains('T')
    {
        normalized = format!("{}:{}", &text[..n - 2], &text[n - 2..]);
        &normalized
    } else {
        text
    };
    // RFC 3339 also allows a space or a lower-case t between date and time; SOQL does not.
    if text.len() < 11 || text.as_bytes()[10] != b'T' {
        return None;
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A SOQL date literal (`2026-12-01`) as days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    let date = Date::parse(text, format_description!("[year]-[month]-[day]")).ok()?;
    Some(i64::from(
        date.to_julian_day() - Date::from_calendar_date(1970, time::Month::January, 1).ok()?.to_julian_day(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_salesforce_shows_datetimes() {
        assert_eq!(format(1_796_160_317), "2026-12-01T21:25:17.000+0000");
        assert_eq!(format(0), "1970-01-01T00:00:00.000+0000");
    }

    #[test]
    fn parses_every_literal_form_soql_accepts() {
        let ms = 1_796_160_317_000;
        assert_eq!(parse_datetime("2026-12-01T21:25:17Z"), Some(ms));
        assert_eq!(parse_datetime("2026-12-01T21:25:17.000Z"), Some(ms));
        assert_eq!(parse_datetime("2026-12-01T21:25:17.250Z"), Some(ms + 250));
        assert_eq!(parse_datetime("2026-12-01T21:25:17.000+0000"), Some(ms));
        assert_eq!(parse_datetime("2026-12-01T22:25:17+01:00"), Some(ms));
        assert_eq!(parse_datetime("2026-12-01T16:25:17-0500"), Some(ms));
        for bad in ["2026-12-01", "2026-12-01 21:25:17Z", "2026-13-01T21:25:17Z", "2026-12-01T21:25Z", "x"] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2026-02-30"), None);
    }
}
