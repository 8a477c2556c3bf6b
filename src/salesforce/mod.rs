//! The Salesforce sink: the session (OAuth, refresh on expiry, the quota
//! guard) and one module per API surface, each owning its requests:
//! `composite` (upserts and deletes), `bulk` (Bulk API 2.0 jobs), `soql`
//! (live reads), `describe` (checks before writing).

pub mod auth;
pub mod bulk;
pub mod changes;
pub mod composite;
pub mod describe;
pub mod errors;
pub mod ids;
pub mod limits;
pub mod soql;

// What a writer holds between calls: an open Bulk job, a Composite request
// in flight, a job's results.
pub use bulk::{BulkResults, CsvJob, csv_safe};
pub use composite::PendingUpsert;

use crate::http::retry::{ApiClient, Backoff, Sent, Started};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, Result};
use crate::ports::Host;
use crate::settings::SalesforceSettings;
use auth::Session;
use limits::ApiUsage;
use std::cell::{Cell, RefCell};

/// A Salesforce request whose first attempt is under way.
struct InFlight {
    started: Started,
    build: Box<dyn Fn(&Session) -> HttpRequest>,
    /// [`SalesforceSink::logins`] when it went out.
    logins: u64,
}

pub struct SalesforceSink<'h> {
    api: ApiClient<'h>,
    settings: SalesforceSettings,
    session: RefCell<Option<Session>>,
    usage: Cell<Option<ApiUsage>>,
    /// Logins so far: a request that went out before the latest one carried
    /// a token already replaced, and is resent without logging in again.
    logins: Cell<u64>,
    /// Requests started and not yet finished; the quota guard counts them.
    in_flight: Cell<u64>,
    /// The org's usage as the last run left it: at the ceiling, this run
    /// learns where usage stands before its first request.
    assumed: Cell<Option<ApiUsage>>,
}

impl<'h> SalesforceSink<'h> {
    pub fn new(host: &'h Host<'h>, settings: SalesforceSettings, backoff: Backoff) -> Self {
        SalesforceSink {
            api: ApiClient::new(host, "Salesforce", errors::RULES, backoff),
            settings,
            session: RefCell::new(None),
            usage: Cell::new(None),
            logins: Cell::new(0),
            in_flight: Cell::new(0),
            assumed: Cell::new(None),
        }
    }

    /// The org's usage as the last run saw it last (see `check_quota`).
    pub fn assume_usage(&self, usage: ApiUsage) {
        self.assumed.set(Some(usage));
    }

    pub fn calls(&self) -> u32 {
        self.api.calls()
    }

    /// The org's API usage as of the last response.
    pub fn usage(&self) -> Option<ApiUsage> {
        self.usage.get()
    }

    fn credential(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.api
            .host
            .credentials
            .get(key)
            .map_err(|e| ConnectorError::Transport(format!("could not read `{key}` from the credentials store: {e}")))
    }

    /// The cached session, from memory or the credentials store, else a new
    /// one. A stored session obtained under other login settings (another
    /// org, app, grant or user) is never used.
    fn session(&self) -> Result<Session> {
        if let Some(s) = self.session.borrow().as_ref() {
            return Ok(s.clone());
        }
        let login = auth::login_identity(&self.settings);
        // An unreadable cached session is as good as none: log in again.
        let cached = self
            .credential(auth::SESSION_KEY)?
            .and_then(|b| serde_json::from_slice::<Session>(&b).ok())
            .filter(|s| s.login == login);
        if let Some(s) = cached {
            *self.session.borrow_mut() = Some(s.clone());
            return Ok(s);
        }
        self.login()
    }

    /// The org the connector writes to (its id, from the session): record
    /// states kept for one org say nothing about another.
    pub fn org(&self) -> Result<String> {
        Ok(self.session()?.org)
    }

    /// Runs the configured grant and caches the session (and a rotated
    /// refresh token) in the credentials store.
    pub fn login(&self) -> Result<Session> {
        let login = auth::login_identity(&self.settings);
        let rotated =
            self.credential(auth::ROTATED_REFRESH_TOKEN_KEY)?.and_then(|b| auth::RotatedToken::for_login(&b, &login));
        let clock = self.api.host.clock;
        let response =
            match self.api.send(&|| auth::token_request(&self.settings, rotated.as_deref(), clock.now_unix()))? {
                Sent::Response(r) | Sent::AuthExpired(r) => r,
            };
        let (session, new_refresh_token) = auth::parse_token_response(&response, &self.settings)?;
        let store =
            |key: &str, value: &[u8]| {
                self.api.host.credentials.set(key, value).map_err(|e| {
                    ConnectorError::Transport(format!("could not save `{key}` to the credentials store: {e}"))
                })
            };
        if let Some(token) = new_refresh_token.filter(|t| Some(t) != rotated.as_ref()) {
            let bound = auth::RotatedToken { login: login.clone(), token };
            store(auth::ROTATED_REFRESH_TOKEN_KEY, &serde_json::to_vec(&bound).expect("a token serializes"))?;
        }
        store(auth::SESSION_KEY, &serde_json::to_vec(&session).expect("a session serializes"))?;
        *self.session.borrow_mut() = Some(session.clone());
        self.logins.set(self.logins.get() + 1);
        Ok(session)
    }

    /// `build`'s request with the session's bearer token.
    fn authorized(&self, build: &dyn Fn(&Session) -> HttpRequest) -> Result<HttpRequest> {
        let session = self.session()?;
        Ok(build(&session).header("Authorization", format!("Bearer {}", session.access_token)))
    }

    /// Sends an authenticated request; on 401 "Session expired or invalid"
    /// refreshes once and resends, never more.
    fn send(&self, build: impl Fn(&Session) -> HttpRequest) -> Result<HttpResponse> {
        self.check_quota()?;
        let sent = self.unreached(self.api.send(&|| self.authorized(&build)))?;
        self.unreached(self.settle(sent, &build, self.logins.get()))
    }

    /// A request that got no answer at all (its host unreachable, refusing
    /// or not allowed) drops the session, so the next run logs in afresh and
    /// is told the instance anew: a stored one whose instance URL no longer
    /// answers would otherwise fail every run, since only a 401 replaced it.
    fn unreached<T>(&self, result: Result<T>) -> Result<T> {
        let unanswered = |e: &ConnectorError| match e {
            ConnectorError::Transport(_) => true,
            ConnectorError::Config(m) => m.contains(crate::http::retry::DENIED),
            _ => false,
        };
        match result {
            Err(e) if unanswered(&e) && self.session.borrow().is_some() => {
                *self.session.borrow_mut() = None;
                let dropped = match self.api.host.credentials.delete(auth::SESSION_KEY) {
                    Ok(()) => "the stored Salesforce session was dropped: the next run logs in again",
                    Err(_) => "the stored Salesforce session could not be dropped",
                };
                Err(match e {
                    ConnectorError::Config(m) => ConnectorError::Config(format!("{m} ({dropped})")),
                    ConnectorError::Transport(m) => ConnectorError::Transport(format!("{m} ({dropped})")),
                    other => other,
                })
            }
            other => other,
        }
    }

    /// Starts an authenticated request and returns without waiting; the
    /// caller does other work, then [`SalesforceSink::finish`]es it.
    fn begin(&self, build: Box<dyn Fn(&Session) -> HttpRequest>) -> Result<InFlight> {
        self.check_quota()?;
        let started = self.api.start(self.authorized(&*build)?);
        self.in_flight.set(self.in_flight.get() + 1);
        Ok(InFlight { started, build, logins: self.logins.get() })
    }

    /// Waits for a request [`SalesforceSink::begin`] started.
    fn finish(&self, request: InFlight) -> Result<HttpResponse> {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        let build = request.build;
        let sent = self.unreached(self.api.complete(request.started, &|| self.authorized(&*build)))?;
        self.unreached(self.settle(sent, &*build, request.logins))
    }

    /// Reads the org's usage off a response; on an expired session, logs in
    /// again once and resends.
    fn settle(&self, mut sent: Sent, build: &dyn Fn(&Session) -> HttpRequest, logins: u64) -> Result<HttpResponse> {
        let mut refreshed = false;
        let mut logins = logins;
        loop {
            match sent {
                // Sent before another request's login replaced the token.
                Sent::AuthExpired(_) if self.logins.get() != logins => {
                    logins = self.logins.get();
                    sent = self.api.send(&|| self.authorized(build))?;
                }
                Sent::Response(response) => {
                    if let Some(usage) = response.header("sforce-limit-info").and_then(limits::parse_limit_info) {
                        self.usage.set(Some(usage));
                    }
                    return Ok(response);
                }
                Sent::AuthExpired(response) if refreshed => {
                    return Err(ConnectorError::Auth(format!(
                        "Salesforce rejected a token it had just issued ({}). Check the connected app's session \
                         policies and the integration user's profile",
                        errors::describe("the retried request", &response)
                    )));
                }
                Sent::AuthExpired(_) => {
                    refreshed = true;
                    let before = self.session.borrow_mut().take().map(|s| s.org);
                    let after = self.login()?.org;
                    logins = self.logins.get();
                    // The same login now reaches another org (a refreshed sandbox):
                    // the records this run planned against the old one do not apply.
                    if let Some(before) = before.filter(|b| *b != after) {
                        return Err(ConnectorError::Config(format!(
                            "the Salesforce org behind `salesforce_login_url` changed during the run (from {before} \
                             to {after}, e.g. a sandbox refresh); the run stopped, and the next run writes every \
                             record to the new org"
                        )));
                    }
                    sent = self.api.send(&|| self.authorized(build))?;
                }
            }
        }
    }

    /// Stops before the org's daily allocation reaches the configured share,
    /// leaving room for the org's other integrations and users.
    fn check_quota(&self) -> Result<()> {
        // A run knows the usage from its own responses only: when the last
        // run left it at the ceiling, one `/limits` request says where it
        // stands now (it may have fallen since), before anything is sent.
        if self.usage.get().is_none()
            && let Some(last) = self.assumed.take()
            && last.limit > 0
            && last.used >= self.ceiling(last)
        {
            self.read_usage()?;
        }
        let Some(usage) = self.usage.get() else { return Ok(()) };
        let ceiling = self.ceiling(usage);
        // Requests on their way may not be in the org's last figure yet: counting
        // them keeps the guard from stopping late.
        let on_the_way = self.in_flight.get();
        if usage.limit > 0 && usage.used.saturating_add(on_the_way) >= ceiling {
            // The message gives both numbers: their sum can overstate the usage.
            let pending = match on_the_way {
                0 => String::new(),
                1 => " with 1 request on its way".to_string(),
                n => format!(" with {n} requests on their way"),
            };
            return Err(ConnectorError::RateLimited(format!(
                "Salesforce API usage is {}/{} ({:.0}%){pending}, at the ceiling of {:.0}% set by \
                 `salesforce_max_api_share`. The run stopped before using more and kept its cursor; it resumes \
                 when usage falls or the ceiling is raised",
                usage.used,
                usage.limit,
                usage.used as f64 * 100.0 / usage.limit as f64,
                self.settings.max_api_share * 100.0
            )));
        }
        Ok(())
    }

    fn ceiling(&self, usage: ApiUsage) -> u64 {
        (usage.limit as f64 * self.settings.max_api_share).floor() as u64
    }

    /// The org's usage now, from a `GET …/limits` (its `Sforce-Limit-Info`,
    /// or the body's `DailyApiRequests`).
    fn read_usage(&self) -> Result<()> {
        let build = |s: &Session| HttpRequest::new(Method::Get, self.api_url(s, "/limits"));
        let sent = self.api.send(&|| self.authorized(&build))?;
        let response = self.settle(sent, &build, self.logins.get())?;
        if self.usage.get().is_none()
            && response.is_success()
            && let Ok(body) = serde_json::from_slice::<serde_json::Value>(&response.body)
            && let Some(daily) = body.get("DailyApiRequests")
            && let (Some(max), Some(remaining)) = (daily["Max"].as_u64(), daily["Remaining"].as_u64())
        {
            self.usage.set(Some(ApiUsage { used: max.saturating_sub(remaining), limit: max }));
        }
        Ok(())
    }

    /// Records one Composite request carries (one counted API call).
    pub fn composite_slice(&self) -> usize {
        composite::RECORDS_PER_COMPOSITE
    }

    /// Bytes of record payloads one Composite request carries at most
    /// (within the memory cap's share; at least one record a request).
    pub fn composite_max_bytes(&self) -> usize {
        self.settings.composite_max_bytes
    }

    /// How many more times a record refused for a passing reason (see
    /// [`errors::worth_another_attempt`]) is sent: the one retry policy's.
    pub fn record_attempts(&self) -> u32 {
        self.api.max_retries()
    }

    /// Waits before attempt `n` of records sent again, as between retries
    /// of a request (exponential backoff with jitter).
    pub fn pause_before(&self, attempt: u32) {
        self.api.pause(attempt);
    }

    /// Records one Bulk API 2.0 job carries at most.
    pub fn bulk_job_records(&self) -> usize {
        self.settings.bulk_job_records.max(1) as usize
    }

    /// The largest CSV one Bulk API 2.0 job uploads.
    pub fn bulk_max_upload_bytes(&self) -> usize {
        self.settings.bulk_max_upload_bytes.min(bulk::MAX_UPLOAD_BYTES)
    }

    /// Sends a request that must succeed; `what` names it in the error.
    fn call(&self, what: &str, build: impl Fn(&Session) -> HttpRequest) -> Result<HttpResponse> {
        let response = self.send(build)?;
        if !response.is_success() {
            return Err(ConnectorError::Salesforce(errors::describe(what, &response)));
        }
        Ok(response)
    }

    /// `/services/data/v<version>` on the session's instance.
    fn api_url(&self, session: &Session, path: &str) -> String {
        format!("{}/services/data/v{}{path}", session.instance_url, self.settings.api_version)
    }
}
