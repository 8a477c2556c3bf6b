//! How NetSuite fails: the classifier table for the retry policy, and the
//! `o:errorDetails` error shape turned into a message for the person on call.

use crate::http::HttpResponse;
use crate::http::retry::{Action, Rule, Status};
use serde::Deserialize;

/// NetSuite's quirks as rows. Concurrency overflow shows up as 429, and
/// sometimes as a 401 "Invalid login attempt" that succeeds when retried.
pub const RULES: &[Rule] = &[
    Rule {
        status: Status::Exact(429),
        body_contains: None,
        action: Action::Retry,
        why: "NetSuite refused the request: the account's concurrency limit is in use (429 Too Many Requests)",
    },
    Rule {
        status: Status::Exact(401),
        body_contains: Some("INVALID_LOGIN"),
        action: Action::RetryFew(2),
        why: "NetSuite answered 401 Invalid login attempt, which it also does under concurrency pressure",
    },
    // Also NetSuite's answer to a query naming a field it cannot read
    // (reference section 2): tried again a few times, then reported as the
    // query's error, not as throttling that could pass.
    Rule {
        status: Status::Exact(500),
        body_contains: Some("UNEXPECTED_ERROR"),
        action: Action::RetryFew(2),
        why: "NetSuite answered 500 UNEXPECTED_ERROR",
    },
    Rule {
        status: Status::Range(500, 599),
        body_contains: None,
        action: Action::Retry,
        why: "NetSuite had a server error",
    },
];

#[derive(Debug, Deserialize)]
struct ErrorBody {
    title: Option<String>,
    #[serde(rename = "o:errorDetails", default)]
    details: Vec<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    detail: String,
    #[serde(rename = "o:errorCode")]
    code: Option<String>,
    /// The field a record write failed on.
    #[serde(rename = "o:errorPath")]
    path: Option<String>,
}

/// A message for a failed NetSuite REST call: status, NetSuite's own codes and
/// details, and the likely fix. `what` names the call (e.g. the query).
pub fn describe(what: &str, response: &HttpResponse) -> String {
    let parsed: Option<ErrorBody> = serde_json::from_slice(&response.body).ok();
    let Some(body) = parsed.filter(|b| !b.details.is_empty()) else {
        return format!("{what} returned HTTP {}: {}", response.status, response.snippet());
    };
    let details: Vec<String> = body
        .details
        .iter()
        .map(|d| {
            let text = match &d.code {
                Some(code) => format!("{code}: {}", d.detail),
                None => d.detail.clone(),
            };
            match &d.path {
                Some(path) => format!("{text} (field `{path}`)"),
                None => text,
            }
        })
        .collect();
    let mut msg =
        format!("{what} returned HTTP {} {}: {}", response.status, body.title.unwrap_or_default(), details.join("; "));
    if let Some(hint) = hint(response.status, &details.join(" ")) {
        msg.push_str(". ");
        msg.push_str(hint);
    }
    msg
}

fn hint(status: u16, details: &str) -> Option<&'static str> {
    if details.contains("INVALID_LOGIN") || status == 401 {
        Some(
            "Check that the integration role has the REST Web Services and SuiteAnalytics Workbook permissions, \
             and that the token is for this account",
        )
    } else if details.contains("INSUFFICIENT_PERMISSION") || details.contains("was not found") {
        // One code for a query's table, a write's record type, and a record
        // of a subsidiary outside the role's: the last is why a write-back
        // refused so fails alone rather than stopping the run.
        Some(
            "The integration role lacks permission: a query needs view access to each record type it reads, \
             a write-back needs Edit (Create for new records) on its record type, and the role reaches only \
             records of its own subsidiaries",
        )
    } else if details.contains("Unknown identifier") || details.contains("Field '") {
        Some("A column in the query is not exposed to SuiteQL for this role or account: check the Records Catalog")
    } else if details.contains("UNEXPECTED_ERROR") {
        Some(
            "NetSuite gives this for a column it cannot read as well as for a passing fault: if it persists, \
             check the mapping's NetSuite columns (custom ones first) against the Records Catalog",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_become_a_message_with_a_hint() {
        let body = r#"{"type":"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1","title":"Bad Request","status":400,
            "o:errorDetails":[{"detail":"Invalid search query. Detailed unprocessed description follows. Search error occurred: Unknown identifier 'foo'.","o:errorCode":"INVALID_PARAMETER","o:errorQueryParam":"q"}]}"#;
        let response = HttpResponse { status: 400, headers: vec![], body: body.as_bytes().to_vec(), pieces: vec![] };
        let msg = describe("SuiteQL query on customer", &response);
        assert!(
            msg.starts_with(
                "SuiteQL query on customer returned HTTP 400 Bad Request: INVALID_PARAMETER: Invalid search query"
            ),
            "{msg}"
        );
        assert!(msg.contains("Records Catalog"), "{msg}");
    }

    #[test]
    fn an_unexpected_error_is_tried_a_few_times_then_explained() {
        let body = r#"{"title":"Internal Server Error","status":500,
            "o:errorDetails":[{"detail":"An unexpected error occurred.","o:errorCode":"UNEXPECTED_ERROR"}]}"#;
        let response = HttpResponse { status: 500, headers: vec![], body: body.as_bytes().to_vec(), pieces: vec![] };
        let rule = crate::http::retry::classify(RULES, &response).expect("a rule applies");
        assert_eq!(rule.action, Action::RetryFew(2));
        let msg = describe("SuiteQL query on customer", &response);
        assert!(msg.contains("UNEXPECTED_ERROR") && msg.contains("Records Catalog"), "{msg}");
        // Any other server error is retried as long as the policy allows.
        let response = HttpResponse { status: 503, headers: vec![], body: b"busy".to_vec(), pieces: vec![] };
        assert_eq!(crate::http::retry::classify(RULES, &response).unwrap().action, Action::Retry);
    }

    #[test]
    fn unparseable_bodies_are_shown_raw() {
        let response =
            HttpResponse { status: 502, headers: vec![], body: b"<html>bad gateway</html>".to_vec(), pieces: vec![] };
        assert_eq!(describe("x", &response), "x returned HTTP 502: <html>bad gateway</html>");
    }
}
