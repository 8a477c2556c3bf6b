//! Outbound HTTP policy for a tenant's sandbox: only the tenant's NetSuite
//! and Salesforce hosts are reachable, with bounded timeouts.

use http_body_util::BodyExt;
use std::future::Future;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// `host`, `host:port` or `*.suffix` patterns; a pattern without a port
/// matches any port.
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    allowed: Vec<String>,
    /// Requests sent, by authority: the run's API calls even when the guest
    /// cannot report them (it trapped).
    pub sent: std::collections::BTreeMap<String, u32>,
}

impl OutboundPolicy {
    pub fn new(allowed: Vec<String>) -> OutboundPolicy {
        OutboundPolicy {
            allowed: allowed.into_iter().map(|a| a.to_ascii_lowercase()).collect(),
            sent: Default::default(),
        }
    }

    pub fn allows(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
        self.allowed.iter().any(|pattern| {
            if let Some(suffix) = pattern.strip_prefix("*.") {
                host.ends_with(&format!(".{suffix}"))
            } else if pattern.contains(':') {
                *pattern == authority
            } else {
                *pattern == host
            }
        })
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
        let authority = request.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        if !self.allows(&authority) {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        *self.sent.entry(authority.to_ascii_lowercase()).or_default() += 1;
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: Some(options.connect_timeout.unwrap_or(CONNECT_TIMEOUT).min(CONNECT_TIMEOUT)),
            first_byte_timeout: Some(options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT)),
            between_bytes_timeout: Some(options.between_bytes_timeout.unwrap_or(BETWEEN_BYTES_TIMEOUT)),
        };
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_hosts_ports_and_suffixes() {
        let p = OutboundPolicy::new(vec![
            "1234567-sb1.suitetalk.api.netsuite.com".into(),
            "*.my.salesforce.com".into(),
            "127.0.0.1:8080".into(),
        ]);
        assert!(p.allows("1234567-sb1.suitetalk.api.netsuite.com"));
        assert!(p.allows("1234567-SB1.suitetalk.api.netsuite.com:443"));
        assert!(p.allows("acme.my.salesforce.com"));
        assert!(!p.allows("my.salesforce.com.evil.com"));
        assert!(!p.allows("evil.com"));
        assert!(p.allows("127.0.0.1:8080"));
        assert!(!p.allows("127.0.0.1:8081"));
    }
}
