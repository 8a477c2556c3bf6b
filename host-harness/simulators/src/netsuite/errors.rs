//! NetSuite's REST error body (shared/reference/netsuite.md 2.4): `type`,
//! `title`, `status` and `o:errorDetails`, each detail naming where the
//! request went wrong (`o:errorPath` into the body, `o:errorQueryParam`,
//! `o:errorHeader`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Where in the request a detail points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Nowhere,
    /// A JSON path into the request body (`addressBook.items[0].label`).
    Path(String),
    QueryParam(String),
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub code: &'static str,
    pub detail: String,
    pub at: At,
}

impl Detail {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Detail {
        Detail { code, detail: detail.into(), at: At::Nowhere }
    }

    pub fn at_path(mut self, path: impl Into<String>) -> Detail {
        self.at = At::Path(path.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut d = json!({ "detail": self.detail, "o:errorCode": self.code });
        match &self.at {
            At::Nowhere => {}
            At::Path(p) => d["o:errorPath"] = json!(p),
            At::QueryParam(p) => d["o:errorQueryParam"] = json!(p),
            At::Header(h) => d["o:errorHeader"] = json!(h),
        }
        d
    }
}

/// An error answer; one response may carry several details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub status: StatusCode,
    pub details: Vec<Detail>,
}

impl RestError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> RestError {
        RestError { status, details: vec![Detail::new(code, detail)] }
    }

    pub fn many(status: StatusCode, details: Vec<Detail>) -> RestError {
        RestError { status, details }
    }

    fn at(mut self, at: At) -> RestError {
        if let Some(d) = self.details.first_mut() {
            d.at = at;
        }
        self
    }

    pub fn at_path(self, path: impl Into<String>) -> RestError {
        self.at(At::Path(path.into()))
    }

    pub fn at_query_param(self, param: impl Into<String>) -> RestError {
        self.at(At::QueryParam(param.into()))
    }

    pub fn at_header(self, header: impl Into<String>) -> RestError {
        self.at(At::Header(header.into()))
    }

    pub fn invalid_login() -> RestError {
        RestError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_LOGIN",
            "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at Setup > \
             Users/Roles > User Management > View Login Audit Trail.",
        )
    }

    pub fn too_many_requests() -> RestError {
        RestError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Concurrent request limit exceeded. Request blocked.",
        )
    }

    pub fn unexpected() -> RestError {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            "An unexpected error occurred. Error ID: sim",
        )
    }

    pub fn body(&self) -> Value {
        // Newer accounts answer rfc9110 anchors (older ones rfc2616); clients must not match on it.
        let anchor = match self.status.as_u16() {
            400 => "section-15.5.1",
            401 => "section-15.5.2",
            403 => "section-15.5.4",
            404 => "section-15.5.5",
            405 => "section-15.5.6",
            429 => "section-15.5.29",
            _ => "section-15.6.1",
        };
        json!({
            "type": format!("https://www.rfc-editor.org/rfc/rfc9110.html#{anchor}"),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "o:errorDetails": self.details.iter().map(Detail::to_json).collect::<Vec<_>>(),
        })
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        (self.status, [("content-type", "application/vnd.oracle.resource+json; type=error")], body).into_response()
    }
}
