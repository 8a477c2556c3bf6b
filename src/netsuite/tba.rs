//! Token-Based Authentication (OAuth 1.0a, HMAC-SHA256) for accounts that
//! use it. The realm is the account id upper-cased with `_` kept; the
//! signature covers the oauth_* parameters and every URL query parameter.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// RFC 3986 unreserved characters stay; everything else is encoded.
const RESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

pub fn realm(account_id: &str) -> String {
    account_id.trim().to_ascii_uppercase().replace('-', "_")
}

pub struct TbaCredentials {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub token_id: String,
    pub token_secret: String,
    pub realm: String,
}

/// The signature base string: METHOD & enc(url without query) & enc(sorted params).
pub fn base_string(method: &str, url: &str, oauth_params: &[(&str, &str)]) -> String {
    let (base_url, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (encode(&k), encode(&v)))
        .chain(oauth_params.iter().map(|(k, v)| (encode(k), encode(v))))
        .collect();
    pairs.sort();
    let params = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    format!("{}&{}&{}", method.to_ascii_uppercase(), encode(base_url), encode(&params))
}

pub fn signature(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization: OAuth ...` header for one request. `nonce` must be
/// fresh for every request, retries included.
pub fn authorization(creds: &TbaCredentials, method: &str, url: &str, nonce: &str, timestamp: i64) -> String {
    let timestamp = timestamp.to_string();
    let oauth = [
        ("oauth_consumer_key", creds.consumer_key.as_str()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", timestamp.as_str()),
        ("oauth_token", creds.token_id.as_str()),
        ("oauth_version", "1.0"),
    ];
    let sig = signature(&base_string(method, url, &oauth), &creds.consumer_secret, &creds.token_secret);
    let mut header = format!("OAuth realm=\"{}\"", creds.realm);
    for (k, v) in oauth.iter().chain([("oauth_signature", sig.as_str())].iter()) {
        header.push_str(&format!(", {k}=\"{}\"", encode(v)));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_is_upper_case_with_underscores() {
        assert_eq!(realm("1234567_sb1"), "1234567_SB1");
        assert_eq!(realm("tstdrv123456"), "TSTDRV123456");
    }

    #[test]
    fn query_parameters_are_part_of_the_signature() {
        let oauth = [("oauth_nonce", "abcdefgh"), ("oauth_timestamp", "1700000000")];
        let base = base_string(
            "post",
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql?limit=1000&offset=0",
            &oauth,
        );
        assert_eq!(
            base,
            "POST&https%3A%2F%2F1234567-sb1.suitetalk.api.netsuite.com%2Fservices%2Frest%2Fquery%2Fv1%2Fsuiteql&\
             limit%3D1000%26oauth_nonce%3Dabcdefgh%26oauth_timestamp%3D1700000000%26offset%3D0"
        );
        let other = base_string("POST", "https://h/services/rest/query/v1/suiteql?limit=1000&offset=1000", &oauth);
        assert_ne!(signature(&base, "cs", "ts"), signature(&other, "cs", "ts"));
    }

    #[test]
    fn header_carries_realm_first_and_every_oauth_field() {
        let creds = TbaCredentials {
            consumer_key: "ck".into(),
            consumer_secret: "cs".into(),
            token_id: "tk".into(),
            token_secret: "ts".into(),
            realm: "1234567_SB1".into(),
        };
        let h = authorization(&creds, "POST", "https://h/x?limit=1", "nonce123", 1_700_000_000);
        assert!(h.starts_with("OAuth realm=\"1234567_SB1\", oauth_consumer_key=\"ck\""), "{h}");
        for field in ["oauth_nonce=\"nonce123\"", "oauth_signature_method=\"HMAC-SHA256\"", "oauth_signature=\""] {
            assert!(h.contains(field), "{h}");
        }
        assert!(!h.contains("\"cs\"") && !h.contains("\"ts\""), "secrets must not appear: {h}");
    }
}
