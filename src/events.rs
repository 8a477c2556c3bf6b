//! NetSuite change events, sans-IO: a user-event script POSTs
//! `{"recordType": "customer", "id": "42", ...}` signed with HMAC-SHA256 over
//! `<timestamp>.<body>` under the tenant's webhook secret, in the header
//! `X-Connector-Signature: t=<unix seconds>,v1=<hex digest>`. A verified
//! event only names a record; the connector reads the record itself.
//! A signature is accepted once: `SeenEvents` remembers the ones verified
//! within the tolerance window, so a replayed event causes no work.

use crate::model::RecordKind;
use crate::ports::KeyValue;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-connector-signature";
/// Events are a few hundred bytes; anything much larger is not one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The token of an `Authorization: Bearer <token>` header value (`POST
/// /sync`); the scheme is case-insensitive (RFC 7235), as proxies and
/// clients may lowercase it.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// An HTTP answer for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    fn error(status: u16, message: impl Into<String>) -> Answer {
        Answer { status, body: serde_json::json!({ "error": message.into() }).to_string() }
    }
}

/// What a verified event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub kind: RecordKind,
    pub id: String,
    /// create, edit, xedit, delete, ... as NetSuite named it.
    pub event: String,
    pub signed_at: i64,
    /// The v1 digest (hex): what makes this delivery this one.
    pub signature: String,
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "recordType")]
    record_type: String,
    id: serde_json::Value,
    #[serde(default, rename = "type", alias = "event")]
    event: Option<String>,
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The value to put in the signature header, for senders and tests.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `t=<unix seconds>,v1=<hex digest>`, parsed.
fn parse_signature(signature: &str) -> Option<(i64, Vec<u8>)> {
    let mut timestamp = None;
    let mut digest = None;
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.trim().parse::<i64>().ok(),
            Some(("v1", v)) => digest = hex::decode(v.trim()).ok(),
            _ => {}
        }
    }
    Some((timestamp?, digest?))
}

fn digest_matches(secret: &[u8], timestamp: i64, body: &[u8], digest: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(digest).is_ok()
}

/// Whether the request carries a signature of `body` under `secret`, and
/// nothing else (no freshness, no shape): what a host checks before it lets
/// a tenant's code see the request. The cost does not depend on the secret.
pub fn signature_matches(headers: &[(String, String)], body: &[u8], secret: &[u8]) -> bool {
    let Some((timestamp, digest)) = header(headers, SIGNATURE_HEADER).and_then(parse_signature) else {
        return false;
    };
    digest_matches(secret, timestamp, body, &digest)
}

/// Checks size, signature (in constant time), freshness and shape, in that
/// order: nothing of an unauthenticated body is parsed.
pub fn verify(
    headers: &[(String, String)],
    body: &[u8],
    secret: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<ChangeEvent, Answer> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Answer::error(
            413,
            format!("the event is {} bytes; events are at most {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let signature = header(headers, SIGNATURE_HEADER).ok_or_else(|| {
        Answer::error(401, "missing X-Connector-Signature header: sign the event (see the SuiteScript in netsuite/)")
    })?;
    let Some((timestamp, digest)) = parse_signature(signature) else {
        return Err(Answer::error(401, "X-Connector-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256>"));
    };
    if !digest_matches(secret, timestamp, body, &digest) {
        return Err(Answer::error(401, "the signature does not match: check the webhook secret on both sides"));
    }
    // Checked: a timestamp far from now (t = now - 2^63) must not wrap
    // into the window.
    let skew = now.checked_sub(timestamp);
    if skew.is_none_or(|s| s.unsigned_abs() > tolerance_secs.max(0).unsigned_abs()) {
        // The age is now - t: positive is in the past. It overflows only for
        // a t far below now (now itself is a sane clock).
        let when = match skew {
            None => format!("at t={timestamp}, centuries ago"),
            Some(age) if age >= 0 => format!("{age} s ago"),
            Some(age) => format!("{} s in the future", age.unsigned_abs()),
        };
        // A time in milliseconds (`Date.now()`) reads as ~50,000 years ahead.
        let cause = match timestamp / 1000 - now {
            d if d.abs() <= tolerance_secs.max(0) => "t is in milliseconds: give Unix seconds",
            _ => "check the clocks of NetSuite and this host",
        };
        return Err(Answer::error(
            401,
            format!(
                "the event was signed {when}; more than {tolerance_secs} s either way is refused as a replay: {cause}"
            ),
        ));
    }
    if header(headers, "content-type").is_some_and(|c| !c.to_ascii_lowercase().starts_with("application/json")) {
        return Err(Answer::error(415, "events are JSON: send Content-Type: application/json"));
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        Answer::error(400, format!("the event is not the expected JSON ({e}): send {{\"recordType\", \"id\"}}"))
    })?;
    let kind = match parsed.record_type.to_ascii_lowercase().as_str() {
        "customer" => RecordKind::Customer,
        "contact" => RecordKind::Contact,
        "vendor" => RecordKind::Vendor,
        // Well-formed, but no run would apply it: 422, as for a kind this
        // tenant's mapping leaves out.
        other => {
            return Err(Answer::error(
                422,
                format!("recordType `{}` is not synced: send customer, contact or vendor", other.escape_debug()),
            ));
        }
    };
    let id = match &parsed.id {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(Answer::error(400, format!("id is {other}: send the internal id as a string or number"))),
    };
    // Read as a number, so `011` and `11` are one record (one queue entry,
    // one audit identity).
    let Ok(number) = crate::netsuite::suiteql::internal_id(&id) else {
        return Err(Answer::error(400, format!("id `{}` is not a NetSuite internal id", id.escape_debug())));
    };
    Ok(ChangeEvent {
        kind,
        id: number.to_string(),
        event: parsed.event.unwrap_or_else(|| "edit".into()).to_ascii_lowercase(),
        signed_at: timestamp,
        signature: hex::encode(&digest),
    })
}

/// Key prefix of remembered signatures in the `queues` bucket (small and
/// listable, so expired ones can be found and dropped).
pub const SEEN_PREFIX: &str = "seen-event/";

/// When expired signatures were last dropped (unix seconds; outside
/// [`SEEN_PREFIX`]).
const PRUNED_AT_KEY: &str = "seen-events-pruned-at";

/// The signatures of events verified within the tolerance window, per
/// tenant (in its key-value store): a second delivery of one is a replay.
/// Bounded: an entry goes once its event would be refused as stale anyway.
pub struct SeenEvents<'a> {
    kv: &'a dyn KeyValue,
}

impl<'a> SeenEvents<'a> {
    pub fn new(kv: &'a dyn KeyValue) -> Self {
        SeenEvents { kv }
    }

    fn key(event: &ChangeEvent) -> String {
        format!("{SEEN_PREFIX}{}/{}", event.signed_at, event.signature)
    }

    /// Whether this exact signed event was accepted before.
    pub fn is_repeat(&self, event: &ChangeEvent) -> Result<bool, String> {
        Ok(self.kv.get(&Self::key(event))?.is_some())
    }

    /// Remembers an accepted event, and forgets those whose signing time is
    /// more than `tolerance_secs` before `now` (they are refused as stale):
    /// at most once per `tolerance_secs`, since finding them lists the
    /// bucket (a backlog of queued writes and events; on Spin, the whole
    /// store) and a burst of events must not list it once each. An expired
    /// one kept up to one window longer changes nothing: it is refused all
    /// the same. The time is noted once the pruning succeeded.
    pub fn remember(&self, event: &ChangeEvent, now: i64, tolerance_secs: i64) -> Result<(), String> {
        self.kv.set(&Self::key(event), b"")?;
        let pruned_at = self.kv.get(PRUNED_AT_KEY)?.and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok());
        if pruned_at.is_some_and(|t| now.checked_sub(t).is_some_and(|since| (0..tolerance_secs).contains(&since))) {
            return Ok(());
        }
        // Only the expired are held, not every remembered signature.
        let expired = self.kv.list_keys_where(SEEN_PREFIX, &mut |k| {
            let signed_at = k.strip_prefix(SEEN_PREFIX).and_then(|rest| rest.split('/').next()?.parse::<i64>().ok());
            signed_at.is_some_and(|t| now.checked_sub(t).is_none_or(|age| age > tolerance_secs))
        })?;
        if !expired.is_empty() {
            self.kv.delete_many(&expired)?;
        }
        self.kv.set(PRUNED_AT_KEY, now.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_bearer_scheme_is_read_in_any_case() {
        for header in ["Bearer tok", "bearer tok", "BEARER tok"] {
            assert_eq!(bearer_token(header), Some("tok"), "{header}");
        }
        for header in ["Basic tok", "Bearertok", "tok", ""] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }

    fn signed(body: &str, t: i64) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Connector-Signature".into(), sign(SECRET, t, body.as_bytes())),
        ]
    }

    #[test]
    fn a_signed_fresh_event_names_its_record() {
        let body = r#"{"recordType":"customer","id":"42","type":"edit"}"#;
        let e = verify(&signed(body, 1000), body.as_bytes(), SECRET, 1010, 300).unwrap();
        assert_eq!((e.kind, e.id.as_str(), e.event.as_str()), (RecordKind::Customer, "42", "edit"));
        let numeric = r#"{"recordType":"CONTACT","id":7}"#;
        assert_eq!(verify(&signed(numeric, 1000), numeric.as_bytes(), SECRET, 1000, 300).unwrap().id, "7");
        // Leading zeros name the same record, so one queue entry and one audit identity.
        let padded = r#"{"recordType":"customer","id":"0042"}"#;
        assert_eq!(verify(&signed(padded, 1000), padded.as_bytes(), SECRET, 1000, 300).unwrap().id, "42");
    }

    #[test]
    fn a_timestamp_that_would_overflow_the_age_is_stale() {
        let body = r#"{"recordType":"customer","id":"42"}"#;
        let now = 1_700_000_000;
        for t in [now + i64::MIN, i64::MIN, i64::MAX, now - 301, now + 301] {
            let answer = verify(&signed(body, t), body.as_bytes(), SECRET, now, 300).unwrap_err();
            assert!(answer.status == 401 && answer.body.contains("replay"), "t={t}: {answer:?}");
        }
        assert!(verify(&signed(body, now + 300), body.as_bytes(), SECRET, now, 300).is_ok());
        // The message says which way the clocks are apart.
        let past = verify(&signed(body, now - 1000), body.as_bytes(), SECRET, now, 300).unwrap_err();
        assert!(past.body.contains("signed 1000 s ago;"), "{past:?}");
        let future = verify(&signed(body, now + 1000), body.as_bytes(), SECRET, now, 300).unwrap_err();
        assert!(future.body.contains("signed 1000 s in the future;") && future.body.contains("clocks"), "{future:?}");
        let millis = verify(&signed(body, now * 1000 + 250), body.as_bytes(), SECRET, now, 300).unwrap_err();
        assert!(millis.body.contains("t is in milliseconds: give Unix seconds"), "{millis:?}");
        let ancient = verify(&signed(body, i64::MIN), body.as_bytes(), SECRET, now, 300).unwrap_err();
        assert!(ancient.body.contains("centuries ago"), "{ancient:?}");
        assert!(verify(&signed(body, i64::MIN + 1), body.as_bytes(), SECRET, i64::MIN, 300).is_ok());
    }

    #[test]
    fn an_event_is_accepted_once_and_remembered_only_within_the_window() {
        let kv = crate::sync::memory_kv::Memory::default();
        let seen = SeenEvents::new(&kv);
        let body = r#"{"recordType":"customer","id":"42"}"#;
        let first = verify(&signed(body, 1000), body.as_bytes(), SECRET, 1000, 300).unwrap();
        assert!(!seen.is_repeat(&first).unwrap());
        seen.remember(&first, 1000, 300).unwrap();
        let again = verify(&signed(body, 1000), body.as_bytes(), SECRET, 1010, 300).unwrap();
        assert!(seen.is_repeat(&again).unwrap(), "the same signed event is a replay");
        let later = verify(&signed(body, 1001), body.as_bytes(), SECRET, 1010, 300).unwrap();
        assert!(!seen.is_repeat(&later).unwrap(), "the same record signed again is a new event");
        seen.remember(&later, 1010, 300).unwrap();
        // Once the first is past the window it is forgotten (and refused as stale).
        let next = verify(&signed(body, 1290), body.as_bytes(), SECRET, 1300, 300).unwrap();
        seen.remember(&next, 1301, 300).unwrap();
        let keys = kv.list_keys(SEEN_PREFIX).unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(!keys.iter().any(|k| k.starts_with("seen-event/1000/")), "{keys:?}");
    }

    #[test]
    fn a_burst_of_events_lists_the_bucket_once_per_window_not_once_each() {
        let kv = crate::sync::memory_kv::Memory::default();
        let seen = SeenEvents::new(&kv);
        for n in 0..100 {
            let body = format!(r#"{{"recordType":"customer","id":"{n}"}}"#);
            let event = verify(&signed(&body, 1000 + n), body.as_bytes(), SECRET, 1000 + n, 300).unwrap();
            seen.remember(&event, 1000 + n, 300).unwrap();
        }
        assert_eq!(kv.listings.get(), 1);
        assert_eq!(kv.list_keys(SEEN_PREFIX).unwrap().len(), 100);
        // Past the window, the expired ones are forgotten.
        let body = r#"{"recordType":"customer","id":"500"}"#;
        let event = verify(&signed(body, 2000), body.as_bytes(), SECRET, 2000, 300).unwrap();
        seen.remember(&event, 2000, 300).unwrap();
        assert_eq!(kv.list_keys(SEEN_PREFIX).unwrap(), [format!("{SEEN_PREFIX}2000/{}", event.signature)]);
    }

    #[test]
    fn forged_stale_oversized_and_malformed_events_get_clear_4xx() {
        let body = r#"{"recordType":"customer","id":"42"}"#;
        let mut forged = signed(body, 1000);
        forged[1].1 = sign(b"wrong secret", 1000, body.as_bytes());
        assert_eq!(verify(&forged, body.as_bytes(), SECRET, 1000, 300).unwrap_err().status, 401);
        let tampered = r#"{"recordType":"customer","id":"43"}"#;
        assert_eq!(verify(&signed(body, 1000), tampered.as_bytes(), SECRET, 1000, 300).unwrap_err().status, 401);
        let stale = verify(&signed(body, 1000), body.as_bytes(), SECRET, 1400, 300).unwrap_err();
        assert!(stale.status == 401 && stale.body.contains("replay"), "{stale:?}");
        assert_eq!(verify(&[], body.as_bytes(), SECRET, 1000, 300).unwrap_err().status, 401);
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        assert_eq!(verify(&signed(&big, 1000), big.as_bytes(), SECRET, 1000, 300).unwrap_err().status, 413);
        for bad in [
            r#"{"id":"1"}"#,
            r#"{"recordType":"customer","id":"1 OR 1=1"}"#,
            r#"{"recordType":"customer","id":{"n":1}}"#,
            "not json",
        ] {
            let answer = verify(&signed(bad, 1000), bad.as_bytes(), SECRET, 1000, 300).unwrap_err();
            assert_eq!(answer.status, 400, "{bad}: {answer:?}");
        }
        // Well-formed, but of a kind no run applies.
        let other = r#"{"recordType":"salesorder","id":"1"}"#;
        let answer = verify(&signed(other, 1000), other.as_bytes(), SECRET, 1000, 300).unwrap_err();
        assert!(answer.status == 422 && answer.body.contains("salesorder"), "{answer:?}");
        let object_id = r#"{"recordType":"customer","id":{"n":1}}"#;
        let answer = verify(&signed(object_id, 1000), object_id.as_bytes(), SECRET, 1000, 300).unwrap_err();
        assert!(answer.body.contains(r#"{\"n\":1}"#), "names the id sent: {answer:?}");
        let mut xml = signed(body, 1000);
        xml[0].1 = "text/xml".into();
        assert_eq!(verify(&xml, body.as_bytes(), SECRET, 1000, 300).unwrap_err().status, 415);
    }
}
