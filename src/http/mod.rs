//! HTTP as the core sees it: plain request/response values, one retry policy
//! ([`retry`]) driven by a per-API classifier table.

pub mod retry;

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    /// Absolute URL: scheme, host, path and query.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        HttpRequest { method, url: url.into(), headers: Vec::new(), body: Vec::new() }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn json(self, body: &serde_json::Value) -> Self {
        let mut req = self.header("Content-Type", "application/json");
        req.body = body.to_string().into_bytes();
        req
    }

    pub fn body(self, content_type: &str, body: Vec<u8>) -> Self {
        let mut req = self.header("Content-Type", content_type);
        req.body = body;
        req
    }

    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let mut req = self.header("Content-Type", "application/x-www-form-urlencoded");
        req.body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes();
        req
    }

    /// `METHOD url` without the query, for error messages (queries can hold data).
    pub fn describe(&self) -> String {
        let path = self.url.split('?').next().unwrap_or(&self.url);
        format!("{} {}", self.method, path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body cut to a length fit for an error message.
    pub fn snippet(&self) -> String {
        let text = self.text();
        let mut cut: String = text.chars().take(400).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        cut
    }
}
