//! The one retry policy. Each API supplies a classifier table ([`Rule`]s);
//! [`ApiClient::send`] applies it with exponential backoff and full jitter.

use super::{HttpRequest, HttpResponse};
use crate::model::ConnectorError;
use crate::ports::{Host, PendingResponse, TransportError};
use std::cell::Cell;
use std::time::Duration;

/// What a denied request's error says (see `Api::denied`): the host would
/// not send it, no answer came.
pub const DENIED: &str = "the host did not allow a request to";

/// What the error of a `once` request that may have been applied says.
pub const NOT_SENT_AGAIN: &str = "not sent again";

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back off and resend, within the retry budget.
    Retry,
    /// Back off and resend at most this many times, then hand the response back.
    RetryFew(u32),
    /// The credentials expired: the caller refreshes once and resends.
    RefreshAuth,
    /// A quota is used up: stop the run cleanly.
    StopQuota,
    /// Retrying cannot help until someone changes a setting.
    StopConfig,
}

#[derive(Debug, Clone, Copy)]
pub enum Status {
    Exact(u16),
    Range(u16, u16),
}

/// One row of an API's classifier table. The first matching row wins; a
/// response no row matches goes back to the caller as is.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub status: Status,
    /// Matched against the raw body text, when set.
    pub body_contains: Option<&'static str>,
    pub action: Action,
    /// Why, in words for the person on call.
    pub why: &'static str,
}

impl Rule {
    fn matches(&self, response: &HttpResponse) -> bool {
        let status_ok = match self.status {
            Status::Exact(s) => response.status == s,
            Status::Range(lo, hi) => (lo..=hi).contains(&response.status),
        };
        status_ok && self.body_contains.is_none_or(|needle| response.text().contains(needle))
    }
}

/// Counts one more answer of `rule` in `seen`; returns its count so far.
fn answers_of(seen: &mut Vec<(*const Rule, u32)>, rule: &Rule) -> u32 {
    match seen.iter_mut().find(|(r, _)| std::ptr::eq(*r, rule)) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            seen.push((rule, 1));
            1
        }
    }
}

pub fn classify<'r>(rules: &'r [Rule], response: &HttpResponse) -> Option<&'r Rule> {
    rules.iter().find(|rule| rule.matches(response))
}

/// Whether the rules call `response` transient (worth sending again).
pub fn is_transient(rules: &[Rule], response: &HttpResponse) -> bool {
    matches!(classify(rules, response).map(|r| r.action), Some(Action::Retry | Action::RetryFew(_)))
}

/// How long to wait before poll `n` of a long-running job: from 250 ms,
/// growing by half each time, at most 10 s.
pub fn poll_interval(n: u32) -> Duration {
    let ms = 250.0 * 1.5f64.powi(n.min(20) as i32);
    Duration::from_millis(ms.min(10_000.0) as u64)
}

/// Exponential backoff with full jitter: attempt n waits a uniformly random
/// time in [0, min(cap, base · 2^n)].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30), max_retries: 6 }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        let ceiling_ms = ceiling.as_millis() as u64;
        Duration::from_millis(random % (ceiling_ms + 1))
    }
}

/// `Retry-After` when the server sent one: seconds, or an HTTP date (RFC
/// 9110's IMF-fixdate, `Wed, 21 Oct 2015 07:28:00 GMT`) read against `now`
/// (Unix seconds); a date past is no wait.
pub fn retry_after(response: &HttpResponse, now: i64) -> Option<Duration> {
    let value = response.header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format).ok()?.assume_utc().unix_timestamp();
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// What a send produced.
#[derive(Debug)]
pub enum Sent {
    /// A response for the caller to interpret (success or a final error).
    Response(HttpResponse),
    /// The classifier asked for fresh credentials.
    AuthExpired(HttpResponse),
}

/// A client for one API: counts calls and applies the API's rules.
pub struct ApiClient<'h> {
    pub host: &'h Host<'h>,
    /// "NetSuite" or "Salesforce", for messages.
    pub api: &'static str,
    pub rules: &'static [Rule],
    pub backoff: Backoff,
    calls: Cell<u32>,
    /// Requests started with `begin` and not yet finished.
    in_flight: Cell<u32>,
    /// At most this many started at once (the account's concurrency share).
    max_in_flight: u32,
}

impl<'h> ApiClient<'h> {
    pub fn new(host: &'h Host<'h>, api: &'static str, rules: &'static [Rule], backoff: Backoff) -> Self {
        ApiClient { host, api, rules, backoff, calls: Cell::new(0), in_flight: Cell::new(0), max_in_flight: u32::MAX }
    }

    /// Caps how many requests `begin` keeps in flight together.
    pub fn with_max_in_flight(mut self, max: u32) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// HTTP requests answered so far, retries included: the API's calls. A
    /// request that never reached it (a refused connection, a timeout)
    /// is not one.
    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    /// Sends the request `build` makes, retrying what the rules call
    /// transient; every attempt is built afresh (signatures carry a nonce).
    /// Requests are safe to repeat (SuiteQL reads, token grants, upserts by
    /// external id land on the same record) unless marked `once`: those are
    /// resent only after an answer that says nothing was applied (401, 429).
    pub fn send(&self, build: &dyn Fn() -> Result<HttpRequest, ConnectorError>) -> Result<Sent, ConnectorError> {
        self.drive(build, None)
    }

    /// Starts the first attempt and returns at once, so the caller can do
    /// other work (write a page to Salesforce) while this request travels.
    /// At the in-flight cap the request is not started now but when
    /// `finish` is called.
    pub fn begin<'c>(
        &'c self,
        build: impl Fn() -> Result<HttpRequest, ConnectorError> + 'c,
    ) -> Result<InFlight<'c, 'h>, ConnectorError> {
        if self.in_flight.get() >= self.max_in_flight {
            return Ok(InFlight { client: self, build: Box::new(build), first: None });
        }
        let request = build()?;
        self.in_flight.set(self.in_flight.get() + 1);
        let pending = self.host.transport.start(&request, self.host.meanwhile);
        Ok(InFlight { client: self, build: Box::new(build), first: Some((request, pending)) })
    }

    /// Sends a first attempt and returns without waiting; [`ApiClient::complete`]
    /// waits for it and retries as `send` would. Owns nothing of the client,
    /// so the caller may keep it while it does other work.
    pub fn start(&self, request: HttpRequest) -> Started {
        let pending = self.host.transport.start(&request, self.host.meanwhile);
        Started { request, pending }
    }

    /// Waits for a started request, then applies the rules like `send`.
    pub fn complete(
        &self,
        started: Started,
        build: &dyn Fn() -> Result<HttpRequest, ConnectorError>,
    ) -> Result<Sent, ConnectorError> {
        let outcome = started.pending.and_then(|p| p.wait(self.host.meanwhile));
        self.drive(build, Some((started.request, outcome)))
    }

    /// The retry loop; `first` is an attempt already made.
    fn drive(
        &self,
        build: &dyn Fn() -> Result<HttpRequest, ConnectorError>,
        mut first: Option<(HttpRequest, Result<HttpResponse, TransportError>)>,
    ) -> Result<Sent, ConnectorError> {
        let mut attempt = 0u32;
        // Answers of each `RetryFew` rule so far: its limit counts its own
        // answers, not the other retries of this request.
        let mut few: Vec<(*const Rule, u32)> = Vec::new();
        loop {
            let (request, outcome) = match first.take() {
                Some(made) => made,
                None => {
                    let request = build()?;
                    let outcome = self.host.transport.send(&request, self.host.meanwhile);
                    (request, outcome)
                }
            };
            let response = match outcome {
                Ok(response) => {
                    self.calls.set(self.calls.get() + 1);
                    response
                }
                Err(TransportError::Denied { authority }) => {
                    return Err(ConnectorError::Config(self.denied(&request, &authority)));
                }
                Err(TransportError::Failed(err)) if request.once => {
                    return Err(ConnectorError::Transport(format!(
                        "{} {} got no answer ({err}); it may have been applied, and applying it twice would \
                         duplicate what it adds: {NOT_SENT_AGAIN} as it was",
                        self.api,
                        request.describe()
                    )));
                }
                Err(TransportError::Failed(err)) => {
                    if attempt >= self.backoff.max_retries {
                        return Err(ConnectorError::Transport(format!(
                            "{} {} failed after {} attempts: {err}. Check that the host is reachable and \
                             allowed for this tenant.",
                            self.api,
                            request.describe(),
                            attempt + 1
                        )));
                    }
                    self.wait(attempt, None);
                    attempt += 1;
                    continue;
                }
            };
            let Some(rule) = classify(self.rules, &response) else {
                return Ok(Sent::Response(response));
            };
            match rule.action {
                Action::RefreshAuth => return Ok(Sent::AuthExpired(response)),
                Action::StopQuota => {
                    return Err(ConnectorError::RateLimited(format!(
                        "{} {}: {}. Response: {}",
                        self.api,
                        request.describe(),
                        rule.why,
                        response.snippet()
                    )));
                }
                Action::StopConfig => {
                    return Err(ConnectorError::Config(format!(
                        "{} {}: {}. Response: {}",
                        self.api,
                        request.describe(),
                        rule.why,
                        response.snippet()
                    )));
                }
                Action::RetryFew(limit) if answers_of(&mut few, rule) > limit => return Ok(Sent::Response(response)),
                // A server error may come after the change was applied (a
                // gateway's, while it is still under way).
                Action::Retry | Action::RetryFew(_) if request.once && !matches!(response.status, 401 | 429) => {
                    return Ok(Sent::Response(response));
                }
                Action::Retry | Action::RetryFew(_) => {
                    if attempt >= self.backoff.max_retries {
                        return Err(ConnectorError::RateLimited(format!(
                            "{} {} still failing after {} attempts ({}; last status {}). The run stopped \
                             and kept its cursor; it resumes from there next time. Response: {}",
                            self.api,
                            request.describe(),
                            attempt + 1,
                            rule.why,
                            response.status,
                            response.snippet()
                        )));
                    }
                    self.wait(attempt, retry_after(&response, self.host.clock.now_unix()));
                    attempt += 1;
                }
            }
        }
    }

    /// Runs `round` again while it says some of its work should be redone
    /// (parts of a batch that failed for a transient reason), waiting
    /// between rounds as for a whole request. `round(last)`: on the last
    /// round allowed, what fails stands.
    pub fn rounds(&self, mut round: impl FnMut(bool) -> Result<bool, ConnectorError>) -> Result<(), ConnectorError> {
        let mut n = 0;
        loop {
            let last = n >= self.backoff.max_retries;
            if !round(last)? || last {
                return Ok(());
            }
            self.wait(n, None);
            n += 1;
        }
    }

    /// Asks `check` until it has an answer, waiting [`poll_interval`]
    /// between asks; after `timeout_secs` of the host's clock, `timed_out`.
    pub fn poll<T>(
        &self,
        timeout_secs: i64,
        mut check: impl FnMut() -> Result<Option<T>, ConnectorError>,
        timed_out: impl FnOnce() -> ConnectorError,
    ) -> Result<T, ConnectorError> {
        let started = self.host.clock.now_unix();
        let mut n = 0;
        loop {
            if let Some(answer) = check()? {
                return Ok(answer);
            }
            if self.host.clock.now_unix() - started > timeout_secs {
                return Err(timed_out());
            }
            self.host.sleep(poll_interval(n));
            n += 1;
        }
    }

    /// A request the host would not send: name the host and what allows it
    /// (the text holds [`DENIED`]).
    fn denied(&self, request: &HttpRequest, authority: &str) -> String {
        let setting = match self.api {
            "NetSuite" => "`netsuite_base_url` (or `netsuite_account_id`)",
            _ => "`salesforce_login_url` (Salesforce names the instance host in its token response)",
        };
        format!(
            "{} {}: {DENIED} {authority}; it is not among the hosts this tenant may \
             reach, so the run stopped without retrying. If {authority} is right, allow it (harness config: \
             `allowed_hosts`; Spin: `allowed_outbound_hosts` in spin.toml); if not, correct {setting}",
            self.api,
            request.describe()
        )
    }

    pub fn max_retries(&self) -> u32 {
        self.backoff.max_retries
    }

    /// Waits as before retry `attempt` of a request, for work the caller
    /// sends again itself.
    pub fn pause(&self, attempt: u32) {
        self.wait(attempt, None);
    }

    fn wait(&self, attempt: u32, retry_after: Option<Duration>) {
        let jittered = self.backoff.delay(attempt, self.host.clock.random());
        let delay = retry_after.map_or(jittered, |ra| ra.min(self.backoff.cap).max(jittered));
        self.host.sleep(delay);
    }
}

/// A first attempt: the request and its pending response.
type FirstAttempt = (HttpRequest, Result<Box<dyn PendingResponse>, TransportError>);

/// A first attempt started by [`ApiClient::start`].
pub struct Started {
    request: HttpRequest,
    pending: Result<Box<dyn PendingResponse>, TransportError>,
}

/// A request whose first attempt is under way.
pub struct InFlight<'c, 'h> {
    client: &'c ApiClient<'h>,
    build: Box<dyn Fn() -> Result<HttpRequest, ConnectorError> + 'c>,
    /// None when the cap held the request back: it is sent in `finish`.
    first: Option<FirstAttempt>,
}

impl InFlight<'_, '_> {
    /// Waits for the response, then retries like `send` would.
    pub fn finish(mut self) -> Result<Sent, ConnectorError> {
        let made = self.first.take().map(|(request, pending)| {
            let outcome = pending.and_then(|p| p.wait(self.client.host.meanwhile));
            self.client.in_flight.set(self.client.in_flight.get() - 1);
            (request, outcome)
        });
        self.client.drive(&*self.build, made)
    }
}

impl Drop for InFlight<'_, '_> {
    /// An abandoned request (the run stopped) frees its place.
    fn drop(&mut self) {
        if self.first.take().is_some() {
            self.client.in_flight.set(self.client.in_flight.get() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec(), pieces: vec![] }
    }

    const RULES: &[Rule] = &[
        Rule {
            status: Status::Exact(401),
            body_contains: Some("not valid for use with the REST API"),
            action: Action::StopConfig,
            why: "config",
        },
        Rule {
            status: Status::Exact(401),
            body_contains: Some("INVALID_SESSION_ID"),
            action: Action::RefreshAuth,
            why: "expired",
        },
        Rule { status: Status::Range(500, 599), body_contains: None, action: Action::Retry, why: "5xx" },
    ];

    #[test]
    fn first_matching_row_wins() {
        let config = response(
            401,
            r#"[{"message":"This session is not valid for use with the REST API","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(classify(RULES, &config).unwrap().action, Action::StopConfig);
        let expired = response(401, r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#);
        assert_eq!(classify(RULES, &expired).unwrap().action, Action::RefreshAuth);
        assert_eq!(classify(RULES, &response(502, "")).unwrap().action, Action::Retry);
        assert!(classify(RULES, &response(400, "bad")).is_none());
    }

    #[test]
    fn backoff_is_bounded_by_exponential_ceiling_and_cap() {
        let b = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), max_retries: 5 };
        assert_eq!(b.delay(0, u64::MAX), Duration::from_millis(u64::MAX % 101));
        for attempt in 0..40 {
            let ceiling = (100u64 << attempt.min(20)).min(1000);
            for r in [0, 1, 99, 12345, u64::MAX] {
                assert!(b.delay(attempt, r) <= Duration::from_millis(ceiling));
            }
        }
        assert_eq!(b.delay(3, 800), Duration::from_millis(800));
        assert_eq!(b.delay(30, 5000), Duration::from_millis(5000 % 1001));
    }

    #[test]
    fn polls_wait_longer_each_time_up_to_ten_seconds() {
        assert_eq!(poll_interval(0), Duration::from_millis(250));
        assert_eq!(poll_interval(1), Duration::from_millis(375));
        assert!(poll_interval(5) > poll_interval(4));
        assert_eq!(poll_interval(30), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut r = response(429, "");
        r.headers.push(("Retry-After".into(), "7".into()));
        assert_eq!(retry_after(&r, 0), Some(Duration::from_secs(7)));
        // An HTTP date, 20 s after now; one past is no wait.
        r.headers[0].1 = "Wed, 21 Oct 2015 07:28:00 GMT".into();
        let at = 1_445_412_480;
        assert_eq!(retry_after(&r, at - 20), Some(Duration::from_secs(20)));
        assert_eq!(retry_after(&r, at + 5), Some(Duration::ZERO));
        r.headers[0].1 = "soon".into();
        assert_eq!(retry_after(&r, 0), None);
    }
}
