//! HTTP as the core sees it: plain request/response values, one retry policy
//! ([`retry`]) driven by a per-API classifier table.

pub mod retry;
pub mod wasi_transport;

use std::fmt;
use std::rc::Rc;

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
    /// Shared: a request is built again for every attempt, and a Bulk API
    /// upload's CSV should not be copied each time.
    pub body: Rc<Body>,
    /// A successful response's body is kept in the pieces it arrives in
    /// ([`HttpResponse::pieces`]): a Bulk API job's result file is ~10 MB,
    /// and one buffer that size found no room among the fragments a job's
    /// fill leaves, so it raised the component's peak by its size.
    pub in_pieces: bool,
    /// Not safe to apply twice (a NetSuite write that appends a sublist
    /// line): not sent again after an attempt that may have landed.
    pub once: bool,
}

/// A request's bytes, in one piece or several. A Bulk API upload is built in
/// pieces: one buffer grown to a job's size was copied at each doubling, and
/// the copy beside the buffer set the component's peak memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body(Vec<Vec<u8>>);

impl Body {
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    /// The bytes in one piece (tests and messages).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.concat()
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body(vec![bytes])
    }
}

impl From<Vec<Vec<u8>>> for Body {
    fn from(pieces: Vec<Vec<u8>>) -> Body {
        Body(pieces)
    }
}

/// Reads slices one after another.
struct PiecesReader<'a, I: Iterator<Item = &'a [u8]>> {
    pieces: I,
    current: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> std::io::Read for PiecesReader<'a, I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.pieces.next() {
                Some(next) => self.current = next,
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = &self.current[n..];
        Ok(n)
    }
}

impl HttpRequest {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        HttpRequest { method, url: url.into(), headers: Vec::new(), body: Rc::default(), in_pieces: false, once: false }
    }

    /// Marks the request as one to send again only after an answer that
    /// says it was not applied (see `once`).
    pub fn once(mut self, once: bool) -> Self {
        self.once = once;
        self
    }

    /// Asks for a successful response's body in pieces (see `in_pieces`).
    pub fn body_in_pieces(mut self) -> Self {
        self.in_pieces = true;
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn json(self, body: &serde_json::Value) -> Self {
        let mut req = self.header("Content-Type", "application/json");
        req.body = Rc::new(body.to_string().into_bytes().into());
        req
    }

    pub fn body(self, content_type: &str, body: Rc<Body>) -> Self {
        let mut req = self.header("Content-Type", content_type);
        req.body = body;
        req
    }

    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let mut req = self.header("Content-Type", "application/x-www-form-urlencoded");
        let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        req.body = Rc::new(form.into_bytes().into());
        req
    }

    /// `METHOD url` without the query and any user info, for error messages
    /// (queries can hold data, user info a password).
    pub fn describe(&self) -> String {
        let shown = match url::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.set_query(None);
                u.to_string()
            }
            Err(_) => self.url.split('?').next().unwrap_or(&self.url).to_string(),
        };
        format!("{} {}", self.method, shown)
    }
}

/// A URL split the way wasi:http wants a request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub https: bool,
    /// `host` or `host:port`.
    pub authority: String,
    pub path_with_query: String,
}

impl RequestTarget {
    pub fn parse(url: &str) -> Result<RequestTarget, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("`{url}` uses scheme {other}; only http and https are supported")),
        };
        let host = parsed.host_str().ok_or_else(|| format!("`{url}` has no host"))?;
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let path_with_query = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        Ok(RequestTarget { https, authority, path_with_query })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body of a successful response to a request that asked for it in
    /// pieces, in order (`body` is then empty); empty otherwise.
    pub pieces: Vec<Vec<u8>>,
}

impl HttpResponse {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body, whichever way it arrived, as a reader.
    pub fn body_reader(&self) -> impl std::io::Read + '_ {
        let pieces = std::iter::once(self.body.as_slice()).chain(self.pieces.iter().map(Vec::as_slice));
        PiecesReader { pieces, current: &[] }
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_splits_into_the_wasi_request_line() {
        let t = super::RequestTarget::parse(
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql?limit=1000&offset=0",
        )
        .unwrap();
        assert!(t.https);
        assert_eq!(t.authority, "1234567-sb1.suitetalk.api.netsuite.com");
        assert_eq!(t.path_with_query, "/services/rest/query/v1/suiteql?limit=1000&offset=0");
        let local = super::RequestTarget::parse("http://127.0.0.1:8080/x").unwrap();
        assert_eq!(
            (local.https, local.authority.as_str(), local.path_with_query.as_str()),
            (false, "127.0.0.1:8080", "/x")
        );
        assert!(super::RequestTarget::parse("ftp://example.com/").unwrap_err().contains("only http and https"));
        let secretive = super::HttpRequest::new(super::Method::Get, "https://user:pw@h.example/a?q=secret");
        assert_eq!(secretive.describe(), "GET https://h.example/a");
    }
}
