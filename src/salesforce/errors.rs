//! How Salesforce fails: the classifier table for the retry policy and the
//! error-array body shape.

use crate::http::HttpResponse;
use crate::http::retry::{Action, Rule, Status};
use crate::model::{OutcomeKind, SalesforceError, UpsertOutcome};
use serde::Deserialize;

/// Salesforce's quirks as rows; the first match wins, so the specific 401 and
/// 403 rows come before the general ones.
pub const RULES: &[Rule] = &[
    Rule {
        status: Status::Exact(401),
        body_contains: Some("This session is not valid for use with the REST API"),
        action: Action::StopConfig,
        why: "the token is valid but its session may not use the REST API (API Client Control, IP restrictions \
              or a High Assurance requirement on the integration user); refreshing cannot fix that",
    },
    Rule {
        status: Status::Exact(401),
        body_contains: Some("INVALID_SESSION_ID"),
        action: Action::RefreshAuth,
        why: "the access token expired",
    },
    Rule {
        status: Status::Exact(403),
        body_contains: Some("TotalRequests"),
        action: Action::StopQuota,
        why: "the org's rolling 24-hour API request allocation is used up (REQUEST_LIMIT_EXCEEDED TotalRequests)",
    },
    Rule {
        status: Status::Exact(403),
        body_contains: Some("ConcurrentPerOrgLongTxn"),
        action: Action::Retry,
        why: "too many long-running requests in the org at once (REQUEST_LIMIT_EXCEEDED ConcurrentPerOrgLongTxn)",
    },
    Rule {
        status: Status::Exact(403),
        body_contains: Some("ConcurrentRequests"),
        action: Action::Retry,
        why: "too many requests in the org at once (REQUEST_LIMIT_EXCEEDED ConcurrentRequests)",
    },
    // Another limit, named otherwise: not every one passes in seconds, so
    // the run stops with its cursor kept rather than retrying blind.
    Rule {
        status: Status::Exact(403),
        body_contains: Some("REQUEST_LIMIT_EXCEEDED"),
        action: Action::StopQuota,
        why: "a Salesforce request limit is reached (REQUEST_LIMIT_EXCEEDED)",
    },
    Rule {
        status: Status::Exact(429),
        body_contains: None,
        action: Action::Retry,
        why: "Salesforce asked the connector to slow down (429)",
    },
    // The Salesforce edge answers 420 (an HTML page) while an org is being
    // set up or after it was deleted, and 406 with an empty body now and
    // then; peers (jsforce, Airbyte) retry both. A few tries, as a deleted
    // org's page never changes.
    Rule {
        status: Status::Exact(420),
        body_contains: None,
        action: Action::RetryFew(2),
        why: "the Salesforce edge answered 420 (the org is being set up, or no longer exists)",
    },
    Rule {
        status: Status::Exact(406),
        body_contains: None,
        action: Action::RetryFew(2),
        why: "the Salesforce edge answered 406, seen now and then with an empty body",
    },
    Rule {
        status: Status::Range(500, 599),
        body_contains: None,
        action: Action::Retry,
        why: "Salesforce is unavailable or had a server error (5xx, e.g. 503 SERVER_UNAVAILABLE)",
    },
    // A single-record write (write-back's PATCH by Id) refused for a lock
    // another transaction held past Salesforce's own wait: a few more tries.
    // Collections answer 200 with the code per record (see `worth_another_attempt`).
    Rule {
        status: Status::Exact(400),
        body_contains: Some("UNABLE_TO_LOCK_ROW"),
        action: Action::RetryFew(2),
        why: "another transaction held the record (UNABLE_TO_LOCK_ROW)",
    },
];

/// Record errors that say "try again later", not "this record is wrong": a
/// write refused only for these is sent again (see `sync::write`).
/// UNABLE_TO_LOCK_ROW: another transaction held the record, or the parent a
/// child's lookup names, past Salesforce's wait for the lock (about 10 s);
/// common when children of one parent are saved side by side.
const RECORD_RETRY_CODES: &[&str] = &["UNABLE_TO_LOCK_ROW"];

/// Whether a record failed only for reasons a later attempt may not meet.
pub fn worth_another_attempt(outcome: &UpsertOutcome) -> bool {
    outcome.outcome == OutcomeKind::Failed
        && !outcome.errors.is_empty()
        && outcome.errors.iter().all(|e| RECORD_RETRY_CODES.contains(&e.status_code.as_str()))
}

/// The connector's own codes for a Bulk API row the job did not process
/// or did not report: the next run's read writes it again.
pub const UNPROCESSED: &str = "UNPROCESSED";
pub const NOT_IN_RESULTS: &str = "NOT_IN_RESULTS";

/// Whether a kept failure's text (its errors, `CODE: message` joined by
/// "; ") names only passing reasons: those of [`worth_another_attempt`],
/// or a Bulk row left unprocessed or unreported.
pub fn passing_reason(text: &str) -> bool {
    let passing = |code: &str| RECORD_RETRY_CODES.contains(&code) || [UNPROCESSED, NOT_IN_RESULTS].contains(&code);
    !text.is_empty() && text.split("; ").all(|e| e.split_once(": ").is_some_and(|(code, _)| passing(code)))
}

/// Whether a write failed only for required fields it lacked: as a record
/// created with some of its fields, it needs them all.
pub fn missing_required(outcome: &UpsertOutcome) -> bool {
    outcome.outcome == OutcomeKind::Failed
        && !outcome.errors.is_empty()
        && outcome.errors.iter().all(|e| e.status_code == "REQUIRED_FIELD_MISSING")
}

/// The connector's own code for a deletion of a record it holds no
/// Salesforce id for: nothing to send, and nothing a later attempt changes.
pub const NO_SALESFORCE_ID: &str = "NO_SALESFORCE_ID";

/// Whether a delete or an update by id failed only because Salesforce no
/// longer has the record: in the Recycle Bin (`ENTITY_IS_DELETED`), or
/// emptied from it (`INVALID_CROSS_REFERENCE_KEY` naming no field; with a
/// field, it is a reference the write carries, or a trigger's, that fails).
pub fn already_deleted(outcome: &UpsertOutcome) -> bool {
    outcome.outcome == OutcomeKind::Failed
        && !outcome.errors.is_empty()
        && outcome.errors.iter().all(|e| {
            e.status_code == "ENTITY_IS_DELETED"
                || (e.status_code == "INVALID_CROSS_REFERENCE_KEY" && e.fields.is_empty())
        })
}

/// Whether a deletion that failed could land later (not one of a record
/// the connector never wrote).
pub fn deletion_may_land_later(outcome: &UpsertOutcome) -> bool {
    outcome.errors.iter().all(|e| e.status_code != NO_SALESFORCE_ID)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    #[serde(alias = "statusCode")]
    error_code: String,
    message: String,
    #[serde(default)]
    fields: Vec<String>,
}

/// The `[{"errorCode": ..., "message": ...}]` body of a failed REST call.
pub fn parse_errors(body: &[u8]) -> Option<Vec<SalesforceError>> {
    let errors: Vec<ApiError> = serde_json::from_slice(body).ok()?;
    Some(
        errors
            .into_iter()
            .map(|e| SalesforceError { status_code: e.error_code, message: e.message, fields: e.fields })
            .collect(),
    )
}

/// A one-line message for a failed call.
pub fn describe(what: &str, response: &HttpResponse) -> String {
    match parse_errors(&response.body) {
        Some(errors) if !errors.is_empty() => format!(
            "{what} returned HTTP {}: {}",
            response.status,
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        ),
        _ => format!("{what} returned HTTP {}: {}", response.status, response.snippet()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::retry::classify;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec(), pieces: vec![] }
    }

    #[test]
    fn table_separates_the_look_alike_errors() {
        let cases = [
            (
                401,
                r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
                Some(Action::RefreshAuth),
            ),
            (
                401,
                r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#,
                Some(Action::StopConfig),
            ),
            (
                403,
                r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
                Some(Action::StopQuota),
            ),
            (
                403,
                r#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
                Some(Action::Retry),
            ),
            (
                403,
                r#"[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
                Some(Action::Retry),
            ),
            (
                403,
                r#"[{"message":"Some other Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
                Some(Action::StopQuota),
            ),
            (403, r#"[{"message":"Insufficient access","errorCode":"INSUFFICIENT_ACCESS"}]"#, None),
            (503, r#"[{"message":"Server too busy","errorCode":"SERVER_UNAVAILABLE"}]"#, Some(Action::Retry)),
            (429, "", Some(Action::Retry)),
            (420, "<html>Org is being set up</html>", Some(Action::RetryFew(2))),
            (406, "", Some(Action::RetryFew(2))),
            (400, r#"[{"message":"No such column","errorCode":"INVALID_FIELD"}]"#, None),
            (
                400,
                r#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]"#,
                Some(Action::RetryFew(2)),
            ),
        ];
        for (status, body, expected) in cases {
            assert_eq!(classify(RULES, &response(status, body)).map(|r| r.action), expected, "{status} {body}");
        }
    }

    #[test]
    fn a_record_gone_from_salesforce_counts_as_deleted_but_a_bad_reference_does_not() {
        let outcome = |code: &str, fields: Vec<String>| UpsertOutcome {
            external_id: "7".into(),
            salesforce_id: None,
            outcome: OutcomeKind::Failed,
            errors: vec![SalesforceError { status_code: code.into(), message: "m".into(), fields }],
        };
        assert!(passing_reason("UNABLE_TO_LOCK_ROW: unable to obtain exclusive access to this record"));
        assert!(!passing_reason("UNABLE_TO_LOCK_ROW: busy; STRING_TOO_LONG: Name: data value too large"));
        assert!(!passing_reason("FIELD_CUSTOM_VALIDATION_EXCEPTION: Accounts under embargo need approval"));
        assert!(!passing_reason(""));
        assert!(passing_reason("UNPROCESSED: the Bulk API job ended before processing this row"));
        assert!(already_deleted(&outcome("ENTITY_IS_DELETED", vec![])));
        assert!(already_deleted(&outcome("INVALID_CROSS_REFERENCE_KEY", vec![])));
        assert!(!already_deleted(&outcome("INVALID_CROSS_REFERENCE_KEY", vec!["OwnerId".into()])));
        assert!(!already_deleted(&outcome("UNABLE_TO_LOCK_ROW", vec![])));
    }

    #[test]
    fn only_a_write_refused_for_a_lock_alone_is_worth_another_attempt() {
        let error = |code: &str| SalesforceError { status_code: code.into(), message: "m".into(), fields: vec![] };
        let outcome =
            |kind, errors| UpsertOutcome { external_id: "7".into(), salesforce_id: None, outcome: kind, errors };
        let lock = error("UNABLE_TO_LOCK_ROW");
        assert!(worth_another_attempt(&outcome(OutcomeKind::Failed, vec![lock.clone()])));
        assert!(!worth_another_attempt(&outcome(OutcomeKind::Failed, vec![lock.clone(), error("INVALID_FIELD")])));
        assert!(!worth_another_attempt(&outcome(OutcomeKind::Failed, vec![error("DUPLICATE_VALUE")])));
        assert!(!worth_another_attempt(&outcome(OutcomeKind::Failed, vec![])));
        assert!(!worth_another_attempt(&outcome(OutcomeKind::Updated, vec![lock])));
    }

    #[test]
    fn error_arrays_parse_with_either_code_key() {
        let e = parse_errors(
            br#"[{"message":"m","errorCode":"INVALID_FIELD"},{"statusCode":"X","message":"n","fields":["A"]}]"#,
        )
        .unwrap();
        assert_eq!(e[0].status_code, "INVALID_FIELD");
        assert_eq!(e[1].fields, vec!["A".to_string()]);
        let msg = describe(
            "upsert",
            &response(
                400,
                r#"[{"message":"No such column 'Foo__c' on sobject of type Account","errorCode":"INVALID_FIELD"}]"#,
            ),
        );
        assert_eq!(msg, "upsert returned HTTP 400: INVALID_FIELD: No such column 'Foo__c' on sobject of type Account");
    }
}
