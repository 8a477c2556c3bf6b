//! Outbound HTTP policy for a tenant's sandbox: only the tenant's NetSuite
//! and Salesforce hosts are reachable, with bounded timeouts.

use http_body_util::BodyExt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The hosts a tenant's sandbox may reach. Entries are `host`, `host:port`,
/// `*.suffix`, each optionally after `http://` or `https://`. Both sides are
/// normalised the same way: a port left out is the scheme's default (443,
/// 80), so `https://h` and `https://h:443` are one destination, and an entry
/// never matches a port it does not name (a token response pointing at
/// another port of the login host gets no bearer token).
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    allowed: Vec<Pattern>,
    /// Requests answered, by `host:port`: the run's API calls even when the
    /// guest cannot report them (it trapped). As the component counts them,
    /// a request that never reached the API (a refused connection) is none.
    pub sent: Arc<Mutex<std::collections::BTreeMap<String, u32>>>,
    /// The Salesforce org's API usage from the last response that carried
    /// `Sforce-Limit-Info` (read with the component's own parser), for the
    /// run report and `connector status`.
    pub salesforce_usage: Arc<Mutex<Option<ApiUsage>>>,
}

/// The org's daily API usage, as Salesforce reports it on each response.
pub use netsuite_salesforce::salesforce::limits::ApiUsage;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    /// None: either scheme.
    https: Option<bool>,
    /// `host`, or `.suffix` for `*.suffix`.
    host: String,
    /// None: the default port of the request's scheme.
    port: Option<u16>,
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// `[scheme://][userinfo@]host[:port][/...]` in parts, lowercased; the
/// userinfo is dropped (it is never a destination, and never shown).
fn split(entry: &str) -> Option<(Option<bool>, String, Option<u16>)> {
    let entry = entry.trim().to_ascii_lowercase();
    let (https, rest) = match entry.split_once("://") {
        Some(("https", rest)) => (Some(true), rest),
        Some(("http", rest)) => (Some(false), rest),
        Some(_) => return None,
        None => (None, entry.as_str()),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(authority[i + 1..].parse::<u16>().ok()?)),
        _ => (authority, None),
    };
    (!host.is_empty()).then(|| (https, host.to_string(), port))
}

impl Pattern {
    fn parse(entry: &str) -> Option<Pattern> {
        let (https, host, port) = split(entry)?;
        let host = match host.strip_prefix("*.") {
            Some(suffix) => format!(".{suffix}"),
            None => host,
        };
        Some(Pattern { https, host, port })
    }

    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        let host_matches = if self.host.starts_with('.') { host.ends_with(&self.host) } else { self.host == host };
        self.https.is_none_or(|h| h == https) && host_matches && self.port.unwrap_or(default_port(https)) == port
    }
}

/// A request's destination as `host:port`, the port made explicit.
pub fn normalised_authority(https: bool, authority: &str) -> Option<String> {
    let (_, host, port) = split(authority)?;
    Some(format!("{host}:{}", port.unwrap_or(default_port(https))))
}

/// The allowlist entry for the destination of a setting's URL:
/// `scheme://host:port` (https when the URL names no scheme), port explicit.
pub fn entry_for_url(url: &str) -> Option<String> {
    let (https, host, port) = split(url)?;
    let https = https.unwrap_or(true);
    let scheme = if https { "https" } else { "http" };
    Some(format!("{scheme}://{host}:{}", port.unwrap_or(default_port(https))))
}

/// The `host:port` a setting's URL sends requests to (as `sent` counts them).
pub fn authority_of_url(url: &str) -> Option<String> {
    let (https, host, port) = split(url)?;
    Some(format!("{host}:{}", port.unwrap_or(default_port(https.unwrap_or(true)))))
}

impl OutboundPolicy {
    /// Entries that are not host patterns allow nothing.
    pub fn new(allowed: Vec<String>) -> OutboundPolicy {
        OutboundPolicy {
            allowed: allowed.iter().filter_map(|a| Pattern::parse(a)).collect(),
            sent: Default::default(),
            salesforce_usage: Default::default(),
        }
    }

    /// Whether a request over `https` (or http) to `authority` may go.
    pub fn allows(&self, https: bool, authority: &str) -> bool {
        let Some((_, host, port)) = split(authority) else {
            return false;
        };
        let port = port.unwrap_or(default_port(https));
        self.allowed.iter().any(|p| p.matches(https, &host, port))
    }
}

/// Timeouts for every outbound request: a hung peer fails the request, and
/// the retry policy decides what happens next.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type ResponseFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> ResponseFuture {
        let https = request.uri().scheme() != Some(&http::uri::Scheme::HTTP);
        let authority = request.uri().authority().map(|a| a.as_str()).unwrap_or_default();
        let (true, Some(destination)) = (self.allows(https, authority), normalised_authority(https, authority)) else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let sent = self.sent.clone();
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: Some(options.connect_timeout.unwrap_or(CONNECT_TIMEOUT).min(CONNECT_TIMEOUT)),
            first_byte_timeout: Some(options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT)),
            between_bytes_timeout: Some(options.between_bytes_timeout.unwrap_or(BETWEEN_BYTES_TIMEOUT)),
        };
        let usage = self.salesforce_usage.clone();
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            *sent.lock().unwrap_or_else(|p| p.into_inner()).entry(destination).or_default() += 1;
            note_usage(&usage, response.headers());
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

/// Keeps the usage a response reports (the latest response wins).
fn note_usage(usage: &Mutex<Option<ApiUsage>>, headers: &http::HeaderMap) {
    let reported = headers
        .get("sforce-limit-info")
        .and_then(|v| v.to_str().ok())
        .and_then(netsuite_salesforce::salesforce::limits::parse_limit_info);
    if let Some(reported) = reported {
        *usage.lock().unwrap_or_else(|p| p.into_inner()) = Some(reported);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_sforce_limit_info_is_kept_and_other_responses_leave_it() {
        let usage = Mutex::new(None);
        let mut headers = http::HeaderMap::new();
        headers.insert("Sforce-Limit-Info", "api-usage=120/15000; api-bursts=1/750".parse().unwrap());
        note_usage(&usage, &headers);
        assert_eq!(*usage.lock().unwrap(), Some(ApiUsage { used: 120, limit: 15000 }));
        note_usage(&usage, &http::HeaderMap::new());
        assert_eq!(*usage.lock().unwrap(), Some(ApiUsage { used: 120, limit: 15000 }), "a NetSuite response");
    }

    #[test]
    fn patterns_match_hosts_ports_and_suffixes() {
        let p = OutboundPolicy::new(vec![
            "1234567-sb1.suitetalk.api.netsuite.com".into(),
            "*.my.salesforce.com".into(),
            "127.0.0.1:8080".into(),
        ]);
        assert!(p.allows(true, "1234567-sb1.suitetalk.api.netsuite.com"));
        assert!(p.allows(true, "1234567-SB1.suitetalk.api.netsuite.com:443"));
        assert!(p.allows(true, "acme.my.salesforce.com"));
        assert!(!p.allows(true, "my.salesforce.com.evil.com"));
        assert!(!p.allows(true, "evil.com"));
        assert!(p.allows(false, "127.0.0.1:8080"));
        assert!(!p.allows(false, "127.0.0.1:8081"));
    }

    #[test]
    fn a_default_port_is_the_same_destination_written_or_not() {
        for (entry, https, authority) in [
            ("https://ns.example:443", true, "ns.example"),
            ("https://ns.example", true, "ns.example:443"),
            ("http://ns.example:80", false, "ns.example"),
            ("ns.example:443", true, "ns.example"),
            ("ns.example", false, "ns.example:80"),
            ("https://user:secret@ns.example:443/services/rest", true, "ns.example"),
        ] {
            assert!(OutboundPolicy::new(vec![entry.into()]).allows(https, authority), "{entry} allows {authority}");
        }
        assert_eq!(normalised_authority(true, "NS.example").as_deref(), Some("ns.example:443"));
        assert_eq!(normalised_authority(false, "ns.example:8080").as_deref(), Some("ns.example:8080"));
        let url = "https://user:pw@ns.example/services/rest?x=1";
        assert_eq!(entry_for_url(url).as_deref(), Some("https://ns.example:443"));
        assert_eq!(authority_of_url("http://127.0.0.1:80/").as_deref(), Some("127.0.0.1:80"));
    }

    #[test]
    fn an_entry_matches_only_the_port_it_names_or_implies() {
        // A token response naming another port of the login host gets no token.
        let login =
            OutboundPolicy::new(vec!["https://acme.my.salesforce.com".into(), "https://*.my.salesforce.com".into()]);
        assert!(login.allows(true, "acme.my.salesforce.com"));
        assert!(!login.allows(true, "acme.my.salesforce.com:8443"));
        assert!(!login.allows(true, "other.my.salesforce.com:8443"));
        assert!(!login.allows(false, "acme.my.salesforce.com"), "not over plain http either");
        let bare = OutboundPolicy::new(vec!["login.example".into()]);
        assert!(bare.allows(true, "login.example:443") && bare.allows(false, "login.example:80"));
        assert!(!bare.allows(true, "login.example:8443") && !bare.allows(true, "login.example:80"));
        let v6 = OutboundPolicy::new(vec!["[::1]:8080".into()]);
        assert!(v6.allows(false, "[::1]:8080") && !v6.allows(false, "[::1]:8081"));
        assert!(!OutboundPolicy::new(vec!["ftp://h".into(), "h:notaport".into()]).allows(true, "h"));
    }
}
