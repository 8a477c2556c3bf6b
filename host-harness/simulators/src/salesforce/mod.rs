//! The Salesforce simulator: the OAuth token endpoint (client credentials and
//! refresh token, with optional rotation), REST resources under
//! /services/data (Composite, sObject Collections, record create, read,
//! update, delete and upsert, query and queryAll with paging, Bulk API 2.0
//! ingest), the 401 INVALID_SESSION_ID of an expired session,
//! Sforce-Limit-Info on every response, the daily API allocation and
//! injectable faults.

mod api;
mod bulk;
mod datetime;
pub mod schema;
mod soql;
pub mod store;
mod table;

use super::SimClock;
use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use store::Org;
pub use store::ValidationRule;

#[derive(Clone)]
pub struct SalesforceSimConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Refresh tokens the org accepts (web-server flow grants).
    pub refresh_tokens: Vec<String>,
    /// Issue a new refresh token on every refresh and revoke the old one.
    pub rotate_refresh_tokens: bool,
    /// Sessions end after this long without a request (Salesforce's default: 2 h).
    pub session_timeout: Duration,
    /// The rolling 24-hour API request allocation.
    pub daily_api_limit: u64,
    /// The certificate (public key, PEM) uploaded for the JWT bearer flow.
    pub jwt_public_key_pem: Option<String>,
    /// The pre-authorized user the JWT bearer flow may log in as.
    pub username: String,
    /// The org's id, named in tokens and identity URLs.
    pub org_id: String,
    /// The host the token response names as the instance (the simulator
    /// answers on every name of its address), as a real org names its My
    /// Domain host after a login at login.salesforce.com. None: the host
    /// the simulator was started on.
    pub instance_host: Option<String>,
}

impl Default for SalesforceSimConfig {
    fn default() -> Self {
        SalesforceSimConfig {
            client_id: "3MVG9sim.connector.client".into(),
            client_secret: "sim-client-secret".into(),
            refresh_tokens: vec![],
            rotate_refresh_tokens: false,
            session_timeout: Duration::from_secs(2 * 3600),
            daily_api_limit: 100_000,
            jwt_public_key_pem: None,
            username: "integration@acme.example".into(),
            org_id: ORG_ID.into(),
            instance_host: None,
        }
    }
}

/// Faults injected into API requests (not the token endpoint).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub latency: Duration,
    /// Share of requests answered 503 SERVER_UNAVAILABLE.
    pub unavailable_rate: f64,
    /// Share answered 429.
    pub too_many_requests_rate: f64,
    /// Share answered 403 REQUEST_LIMIT_EXCEEDED ConcurrentPerOrgLongTxn.
    pub concurrent_limit_rate: f64,
}

struct Session {
    last_used: i64,
}

struct Inner {
    config: SalesforceSimConfig,
    clock: SimClock,
    org: Mutex<Org>,
    sessions: Mutex<HashMap<String, Session>>,
    refresh_tokens: Mutex<Vec<String>>,
    base_url: OnceLock<String>,
    api_requests: AtomicU64,
    token_requests: AtomicU64,
    /// After this many more API requests, every session expires (u64::MAX = never).
    expire_after: AtomicU64,
    /// When set, sessions expire again every this many API requests.
    expire_every: AtomicU64,
    /// Sessions are valid but may not use the REST API (API Client Control, IP locks).
    refuse_rest: std::sync::atomic::AtomicBool,
    faults: Mutex<(Faults, StdRng)>,
    /// Called before each Bulk API 2.0 job poll is answered (tests).
    on_bulk_poll: Mutex<Option<BulkPollHook>>,
    after_query: Mutex<Option<QueryHook>>,
    /// An instance URL the token response names instead of this org's own.
    instance_override: Mutex<Option<String>>,
    /// REST API requests being answered now, and the most there were at once.
    api_in_flight: std::sync::atomic::AtomicUsize,
    api_peak: std::sync::atomic::AtomicUsize,
    /// API requests whose body came chunked (no Content-Length).
    chunked_bodies: AtomicU64,
}

/// Counts a REST API request as being answered while it lives.
struct Answering<'a>(&'a Inner);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.api_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type BulkPollHook = Arc<dyn Fn() + Send + Sync>;
type QueryHook = (String, Box<dyn FnOnce(&SalesforceSim) + Send>);

#[derive(Clone)]
pub struct SalesforceSim {
    inner: Arc<Inner>,
}

const ORG_ID: &str = "00D8d000000SIMxEAA";

fn error_array(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!([{ "message": message, "errorCode": code }]))
}

impl SalesforceSim {
    pub async fn start(config: SalesforceSimConfig, clock: SimClock, port: u16) -> Result<SalesforceSim> {
        let refresh = config.refresh_tokens.clone();
        let sim = SalesforceSim {
            inner: Arc::new(Inner {
                config,
                clock,
                org: Mutex::new(Org::new()?),
                sessions: Mutex::new(HashMap::new()),
                refresh_tokens: Mutex::new(refresh),
                base_url: OnceLock::new(),
                instance_override: Mutex::new(None),
                api_requests: AtomicU64::new(0),
                token_requests: AtomicU64::new(0),
                expire_after: AtomicU64::new(u64::MAX),
                expire_every: AtomicU64::new(0),
                refuse_rest: Default::default(),
                faults: Mutex::new((Faults::default(), StdRng::seed_from_u64(7))),
                on_bulk_poll: Mutex::new(None),
                after_query: Mutex::new(None),
                api_in_flight: Default::default(),
                api_peak: Default::default(),
                chunked_bodies: Default::default(),
            }),
        };
        let router = Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data", get(versions))
            .route("/services/data/", get(versions))
            .route("/services/data/{version}", get(resources))
            .route("/services/data/{version}/", get(resources))
            .route("/services/data/{version}/{*rest}", any(api_handler))
            // Bulk API 2.0 takes uploads of up to 150 MB.
            .layer(axum::extract::DefaultBodyLimit::max(150 * 1024 * 1024))
            .with_state(sim.clone());
        let (url, _task) = super::serve(router, port).await?;
        let _ = sim.inner.base_url.set(url);
        Ok(sim)
    }

    /// From now on the token response names `url` as the instance: an org
    /// (or a man in the middle) sending the client somewhere else, such as
    /// another tenant's org.
    pub fn send_api_calls_to(&self, url: &str) {
        *self.inner.instance_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.to_string());
    }

    /// Where the token response sends API calls.
    pub fn instance_url(&self) -> String {
        if let Some(url) = self.inner.instance_override.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return url;
        }
        match &self.inner.config.instance_host {
            None => self.base_url().to_string(),
            Some(host) => {
                let port = self.base_url().rsplit(':').next().unwrap_or_default();
                format!("http://{host}:{port}")
            }
        }
    }

    pub fn base_url(&self) -> &str {
        self.inner.base_url.get().map(String::as_str).unwrap_or_default()
    }

    pub fn client_id(&self) -> &str {
        &self.inner.config.client_id
    }

    /// The connected app's consumer secret (public: it only opens the simulator).
    pub fn client_secret(&self) -> &str {
        &self.inner.config.client_secret
    }

    /// The org, once the Bulk API jobs closed so far have run.
    fn org(&self) -> MutexGuard<'_, Org> {
        let mut org = self.inner.org.lock().unwrap_or_else(|p| p.into_inner());
        bulk::run_queued(&mut org);
        org
    }

    /// Requests counted against the API allocation.
    pub fn api_requests(&self) -> u64 {
        self.inner.api_requests.load(Ordering::SeqCst)
    }

    /// API requests whose body came chunked instead of with a Content-Length.
    pub fn chunked_bodies(&self) -> u64 {
        self.inner.chunked_bodies.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// Bulk API 2.0 jobs created since start.
    pub fn bulk_jobs(&self) -> u64 {
        self.org().next_job
    }

    /// The state of each Bulk API job as last shown, oldest first.
    pub fn bulk_job_states(&self) -> Vec<String> {
        let org = self.org();
        let mut jobs: Vec<(&String, &String)> = org.jobs.values().map(|j| (&j.id, &j.state)).collect();
        jobs.sort();
        jobs.into_iter().map(|(_, state)| state.clone()).collect()
    }

    /// Record writes (creates and updates) since start.
    pub fn writes(&self) -> u64 {
        self.org().writes
    }

    /// The most REST API requests answered at once since the last call
    /// (which starts counting again).
    pub fn take_peak_concurrent_requests(&self) -> usize {
        self.inner.api_peak.swap(self.inner.api_in_flight.load(Ordering::SeqCst), Ordering::SeqCst)
    }

    pub fn count(&self, sobject: &str) -> u64 {
        self.org().count(sobject)
    }

    /// (Salesforce id, fields) of the record with this NetSuite id.
    pub fn find(&self, sobject: &str, netsuite_id: &str) -> Option<(String, Map<String, Value>)> {
        self.org().find(sobject, netsuite_id)
    }

    /// Every session expires once `n` more API requests have been served.
    pub fn expire_sessions_after(&self, n: u64) {
        self.inner.expire_after.store(n, Ordering::SeqCst);
    }

    /// Every session expires after each `n` API requests, over and over.
    pub fn expire_sessions_every(&self, n: u64) {
        self.inner.expire_every.store(n, Ordering::SeqCst);
        self.inner.expire_after.store(n, Ordering::SeqCst);
    }

    /// Sessions stay valid but may no longer use the REST API.
    pub fn refuse_rest_sessions(&self, refuse: bool) {
        self.inner.refuse_rest.store(refuse, Ordering::SeqCst);
    }

    /// Runs `edit` once, right after the next SOQL query of `sobject`
    /// has been run and before it is answered, as a user editing during a
    /// sync would (after the connector's read, before its write).
    pub fn after_query_of(&self, sobject: &str, edit: impl FnOnce(&SalesforceSim) + Send + 'static) {
        *self.inner.after_query.lock().unwrap() = Some((sobject.to_string(), Box::new(edit)));
    }

    /// Runs `hook` before answering each poll of a Bulk API 2.0 job, while
    /// the connector waits for the answer (a test's window into a long job).
    pub fn on_bulk_poll(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.inner.on_bulk_poll.lock().unwrap() = Some(Arc::new(hook));
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner.faults.lock().unwrap().0 = faults;
    }

    /// Changes a field's definition, as an admin editing it in Setup would.
    pub fn alter_field(&self, sobject: &str, field: &str, change: impl FnOnce(&mut schema::Field)) {
        let mut org = self.org();
        if let Some(object) = org.objects.iter_mut().find(|o| o.name == sobject)
            && let Some(f) = object.fields.iter_mut().find(|f| f.name == field)
        {
            change(f);
            object.fields_changed();
        }
    }

    /// Deletes a field from an object.
    pub fn remove_field(&self, sobject: &str, field: &str) {
        let mut org = self.org();
        if let Some(object) = org.objects.iter_mut().find(|o| o.name == sobject) {
            object.fields.retain(|f| f.name != field);
            object.fields_changed();
        }
    }

    /// A duplicate (matching) rule: new records of `sobject` whose `field`
    /// equals an existing record's are blocked with DUPLICATES_DETECTED.
    pub fn set_duplicate_rule(&self, sobject: &str, field: &str) {
        self.org().duplicate_rule = Some((sobject.to_string(), field.to_string()));
    }

    /// Creates a record as a person would in the UI, bypassing uniqueness.
    pub fn insert_by_hand(&self, sobject: &str, netsuite_id: &str, fields: Map<String, Value>) -> String {
        let now = self.inner.clock.now_secs();
        let mut org = self.org();
        let object = org.object(sobject).cloned().expect("a simulated object");
        org.insert_raw(&object, netsuite_id, fields, now)
    }

    /// Creates a record as a person in the Salesforce UI would, checked as
    /// an API create is, stamped with the simulated clock. Answers its Id;
    /// a record the org refuses is a bug in the test, named in the panic.
    pub fn create_by_hand(&self, sobject: &str, fields: Map<String, Value>) -> String {
        let now = self.inner.clock.now_secs();
        let mut org = self.org();
        let object = org.object(sobject).cloned().unwrap_or_else(|| panic!("the simulated org has no {sobject}"));
        let created = org
            .check_fields(&object, &fields)
            .map_err(|e| e.message)
            .and_then(|()| org.create(&object, fields, now).map_err(|e| format!("{}: {}", e.status_code, e.message)));
        created.unwrap_or_else(|e| panic!("creating a {sobject} by hand was refused: {e}"))
    }

    /// Edits record `id` as a person in the Salesforce UI would: checked as
    /// an API update is; LastModifiedDate and SystemModstamp move to the
    /// simulated clock's now.
    pub fn edit_by_hand(&self, sobject: &str, id: &str, fields: Map<String, Value>) {
        let now = self.inner.clock.now_secs();
        let mut org = self.org();
        let object = org.object(sobject).cloned().unwrap_or_else(|| panic!("the simulated org has no {sobject}"));
        let edited = org
            .check_fields(&object, &fields)
            .map_err(|e| e.message)
            .and_then(|()| org.update(&object, id, fields, now).map_err(|e| format!("{e:?}")));
        if let Err(e) = edited {
            panic!("editing {sobject} {id} by hand was refused: {e}");
        }
    }

    /// Deletes record `id` as a person would: it goes to the Recycle Bin.
    pub fn delete_by_hand(&self, id: &str) {
        let now = self.inner.clock.now_secs();
        if !matches!(self.org().delete(id, now), store::Deleted::Ok) {
            panic!("deleting {id} by hand: no live record has this id");
        }
    }

    pub fn set_validation_rule(&self, rule: Option<ValidationRule>) {
        self.org().validation_rule = rule;
    }

    /// Another transaction locks the record of `sobject` with this NetSuite
    /// id during the next `requests` REST API requests that write (any
    /// method but GET); 0 releases it. Writes to the record, and inserts or
    /// updates that set a lookup to it, fail UNABLE_TO_LOCK_ROW meanwhile
    /// (not modelled: a child's delete, or an update leaving its lookup
    /// out, which lock the parent in Salesforce too).
    pub fn hold_row_lock(&self, sobject: &str, netsuite_id: &str, requests: u64) {
        let mut org = self.org();
        let (id, _) = org.find(sobject, netsuite_id).expect("the record to lock exists");
        if requests == 0 {
            org.row_locks.remove(&id);
        } else {
            org.row_locks.insert(id, requests);
        }
    }

    /// While set, closed Bulk API jobs report InProgress however often they
    /// are polled (their records are already applied).
    pub fn hold_bulk_jobs(&self, hold: bool) {
        self.org().hold_jobs = hold;
    }

    fn limit_header(&self) -> String {
        format!("api-usage={}/{}", self.api_requests(), self.inner.config.daily_api_limit)
    }

    fn respond(&self, status: StatusCode, body: Option<Value>) -> Response {
        let mut resp = match body {
            // serde_json's writer, not `Display`: the same text without a
            // trip through `fmt` for every piece.
            Some(b) => {
                let text = serde_json::to_vec(&b).expect("a JSON value serializes");
                (status, [("content-type", "application/json;charset=UTF-8")], text).into_response()
            }
            None => status.into_response(),
        };
        resp.headers_mut().insert("sforce-limit-info", self.limit_header().parse().expect("ascii header"));
        resp
    }

    /// Checks the bearer token and keeps its session alive.
    fn authenticate(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
            .unwrap_or_default();
        let now = self.inner.clock.now_secs();
        let timeout = self.inner.config.session_timeout.as_secs() as i64;
        let mut sessions = self.inner.sessions.lock().unwrap();
        // Forced expiry: a countdown of API requests, then every session ends.
        // Requests that carry no live session (say, one sent before a
        // refresh) do not count: they would end the session just issued.
        let live = sessions.get(token).is_some_and(|s| now - s.last_used < timeout);
        let left = self.inner.expire_after.load(Ordering::SeqCst);
        if live && left != u64::MAX {
            if left == 0 {
                sessions.clear();
                let every = self.inner.expire_every.load(Ordering::SeqCst);
                self.inner.expire_after.store(if every > 0 { every } else { u64::MAX }, Ordering::SeqCst);
            } else {
                self.inner.expire_after.store(left - 1, Ordering::SeqCst);
            }
        }
        match sessions.get_mut(token) {
            Some(s) if now - s.last_used < timeout => {
                s.last_used = now;
                true
            }
            Some(_) => {
                sessions.remove(token);
                false
            }
            None => false,
        }
    }

    fn injected_fault(&self) -> Option<(StatusCode, Value)> {
        let mut guard = self.inner.faults.lock().unwrap();
        let (faults, rng) = &mut *guard;
        let roll: f64 = rng.r#gen();
        let mut edge = faults.unavailable_rate;
        if roll < edge {
            return Some(error_array(StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE", "Server too busy"));
        }
        edge += faults.too_many_requests_rate;
        if roll < edge {
            return Some(error_array(StatusCode::TOO_MANY_REQUESTS, "REQUEST_LIMIT_EXCEEDED", "Too many requests"));
        }
        edge += faults.concurrent_limit_rate;
        if roll < edge {
            return Some(error_array(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentPerOrgLongTxn Limit exceeded.",
            ));
        }
        None
    }

    fn issue_session(&self) -> Value {
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        let org = &self.inner.config.org_id;
        let token = format!("{org}!{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        let now = self.inner.clock.now_secs();
        self.inner.sessions.lock().unwrap().insert(token.clone(), Session { last_used: now });
        let issued_at = (self.inner.clock.now().as_millis()).to_string();
        let id = format!("{}/id/{org}/0058d000000SIMxAAA", self.base_url());
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.inner.config.client_secret.as_bytes()).expect("any key length");
        mac.update(format!("{id}{issued_at}").as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        json!({
            "access_token": token,
            "signature": signature,
            "scope": "api",
            "instance_url": self.instance_url(),
            "id": id,
            "token_type": "Bearer",
            "issued_at": issued_at,
        })
    }
}

#[derive(serde::Deserialize)]
struct BearerClaims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    exp: i64,
}

impl SalesforceSim {
    /// The JWT bearer flow: an RS256 assertion signed with the key of the
    /// app's certificate, for a pre-authorized user, for this login host.
    fn verify_bearer(&self, assertion: &str) -> Result<(), (&'static str, &'static str)> {
        let cfg = &self.inner.config;
        let pem = cfg.jwt_public_key_pem.as_deref().ok_or(("invalid_grant", "invalid assertion"))?;
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| ("invalid_grant", "invalid assertion"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims = jsonwebtoken::decode::<BearerClaims>(assertion, &key, &validation)
            .map_err(|_| ("invalid_grant", "invalid assertion"))?
            .claims;
        if claims.iss != cfg.client_id {
            return Err(("invalid_client_id", "client identifier invalid"));
        }
        // A production org's audience, or the simulator's own URL (standing
        // in for the login host, as an Experience Cloud site would).
        let matches = |a: &serde_json::Value| {
            a.as_str()
                .map(|a| a.trim_end_matches('/'))
                .is_some_and(|a| a == self.base_url() || a == PRODUCTION_AUDIENCE)
        };
        let aud_ok = match &claims.aud {
            serde_json::Value::Array(list) => list.iter().any(matches),
            single => matches(single),
        };
        if !aud_ok {
            return Err(("invalid_grant", "audience is invalid"));
        }
        if claims.sub != cfg.username {
            return Err(("invalid_grant", "user hasn't approved this consumer"));
        }
        if claims.exp <= self.inner.clock.now_secs() {
            return Err(("invalid_grant", "expired authorization code"));
        }
        Ok(())
    }
}

/// The JWT bearer audience of a production org; a sandbox's,
/// https://test.salesforce.com, is refused as it would be there.
const PRODUCTION_AUDIENCE: &str = "https://login.salesforce.com";

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json;charset=UTF-8")],
        json!({ "error": error, "error_description": description }).to_string(),
    )
        .into_response()
}

/// Client id and secret from HTTP Basic or the form body.
fn client_credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> (Option<String>, Option<String>) {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_string(), b.to_string())));
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (form.get("client_id").cloned(), form.get("client_secret").cloned()),
    }
}

async fn token(State(sim): State<SalesforceSim>, headers: HeaderMap, body: Bytes) -> Response {
    sim.inner.token_requests.fetch_add(1, Ordering::SeqCst);
    let cfg = &sim.inner.config;
    // The endpoint takes a form; any other body gets the OAuth error shape.
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return oauth_error("invalid_request", "the token request body must be application/x-www-form-urlencoded");
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) == Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        // The bearer flow carries no client secret: the signed assertion is the credential.
        return match sim.verify_bearer(form.get("assertion").map(String::as_str).unwrap_or_default()) {
            Ok(()) => (StatusCode::OK, axum::Json(sim.issue_session())).into_response(),
            Err((error, description)) => oauth_error(error, description),
        };
    }
    let (client_id, client_secret) = client_credentials(&headers, &form);
    if client_id.as_deref() != Some(cfg.client_id.as_str()) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if client_secret.as_deref() != Some(cfg.client_secret.as_str()) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            (StatusCode::OK, axum::Json(sim.issue_session())).into_response()
        }
        Some("refresh_token") => {
            if client_secret.as_ref().is_some_and(|s| *s != cfg.client_secret) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let mut known = sim.inner.refresh_tokens.lock().unwrap();
            let Some(pos) = known.iter().position(|t| *t == presented) else {
                return oauth_error("invalid_grant", "expired access/refresh token");
            };
            let mut body = sim.issue_session();
            if cfg.rotate_refresh_tokens {
                let mut raw = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut raw);
                let next = format!("5Aep861{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
                known[pos] = next.clone();
                body["refresh_token"] = json!(next);
            }
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Some(_) => oauth_error("unsupported_grant_type", "grant type not supported"),
        None => oauth_error("invalid_request", "grant_type is required"),
    }
}

async fn versions(State(sim): State<SalesforceSim>) -> Response {
    // Every version the org serves (api::version), oldest first.
    let latest = api::LATEST_VERSION.trim_end_matches(".0").parse::<u32>().unwrap_or(66);
    let list: Vec<Value> = (api::OLDEST_VERSION..=latest)
        .map(|v| json!({ "label": format!("v{v}.0"), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0") }))
        .collect();
    let _ = &sim;
    (StatusCode::OK, axum::Json(Value::Array(list))).into_response()
}

/// `GET /services/data/vXX.X/`: the resources of a version, by name.
async fn resources(State(sim): State<SalesforceSim>, Path(version): Path<String>, headers: HeaderMap) -> Response {
    if !sim.authenticate(&headers) {
        let (status, body) = error_array(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid");
        return sim.respond(status, Some(body));
    }
    if api::version(&version).is_none() {
        let (status, body) = error_array(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist");
        return sim.respond(status, Some(body));
    }
    let names = ["sobjects", "query", "queryAll", "composite", "limits", "jobs"];
    let map: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.to_string(), Value::String(format!("/services/data/{version}/{n}")))).collect();
    sim.respond(StatusCode::OK, Some(Value::Object(map)))
}

async fn api_handler(
    State(sim): State<SalesforceSim>,
    Path((version, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = sim.inner.api_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    sim.inner.api_peak.fetch_max(now, Ordering::SeqCst);
    let _answering = Answering(&sim.inner);
    let latency = sim.inner.faults.lock().unwrap().0.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !sim.authenticate(&headers) {
        let (status, body) = error_array(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid");
        return sim.respond(status, Some(body));
    }
    if sim.inner.refuse_rest.load(Ordering::SeqCst) {
        let (status, body) = error_array(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
        );
        return sim.respond(status, Some(body));
    }
    if sim.api_requests() >= sim.inner.config.daily_api_limit {
        let (status, body) =
            error_array(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.");
        return sim.respond(status, Some(body));
    }
    sim.inner.api_requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("transfer-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        sim.inner.chunked_bodies.fetch_add(1, Ordering::SeqCst);
    }
    if let Some((status, body)) = sim.injected_fault() {
        return sim.respond(status, Some(body));
    }
    let Some(v) = api::version(&version) else {
        let (status, body) = error_array(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist");
        return sim.respond(status, Some(body));
    };
    let now = sim.inner.clock.now_secs();
    if method == Method::GET && rest.trim_matches('/') == "limits" {
        let max = sim.inner.config.daily_api_limit;
        let body = json!({
            "DailyApiRequests": { "Max": max, "Remaining": max.saturating_sub(sim.api_requests()) },
            "DailyBulkV2QueryJobs": { "Max": 10000, "Remaining": 10000 },
            "DailyBulkApiBatches": { "Max": 15000, "Remaining": 15000u64.saturating_sub(sim.org().bulk_batches) },
        });
        return sim.respond(StatusCode::OK, Some(body));
    }
    // Bulk API 2.0 result files are CSV, not JSON.
    if method == Method::GET {
        let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
        if let ["jobs", "ingest", id, which] = parts.as_slice() {
            let org = sim.org();
            if let Some(result) = bulk::results(&org, id, which) {
                drop(org);
                return match result {
                    Ok(text) => {
                        let mut resp = (StatusCode::OK, [("content-type", "text/csv")], text).into_response();
                        resp.headers_mut().insert("sforce-limit-info", sim.limit_header().parse().expect("ascii"));
                        resp
                    }
                    Err(e) => {
                        sim.respond(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), Some(e.body()))
                    }
                };
            }
        }
    }
    if method == Method::GET
        && let ["jobs", "ingest", _] = rest.trim_matches('/').split('/').collect::<Vec<_>>().as_slice()
    {
        let hook = sim.inner.on_bulk_poll.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook();
        }
    }
    // Bulk API 2.0 data is CSV: an upload of another media type is refused
    // (415, the REST status for an unsupported format), the job left as it was.
    if method == Method::PUT
        && let ["jobs", "ingest", _, "batches"] = rest.trim_matches('/').split('/').collect::<Vec<_>>().as_slice()
    {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("text/csv") {
            let message = format!("Unsupported Content-Type '{content_type}': Bulk API 2.0 job data must be text/csv");
            let (status, body) = error_array(StatusCode::UNSUPPORTED_MEDIA_TYPE, "INVALIDCONTENTTYPE", &message);
            return sim.respond(status, Some(body));
        }
    }
    let queried = method == Method::GET && rest.starts_with("query");
    let (status, answer, closed_a_job) = {
        let mut org = sim.org();
        let target = match &query {
            Some(q) => format!("{rest}?{q}"),
            None => rest,
        };
        let batch = api::query_batch(headers.get("sforce-query-options").and_then(|v| v.to_str().ok()));
        let (status, answer) =
            api::dispatch(&mut org, method.as_str(), v, &target, api::Body::Bytes(&body), now, batch);
        if method != Method::GET {
            org.tick_row_locks();
        }
        (status, answer, !org.queued_jobs.is_empty())
    };
    if queried {
        let mut hook = sim.inner.after_query.lock().unwrap();
        // The query's text as sent (`FROM+Vendor__c`, or `%20`).
        let from = |sobject: &str| {
            let q = query.as_deref().unwrap_or_default();
            ["+", "%20"].iter().any(|space| q.contains(&format!("FROM{space}{sobject}")))
        };
        if hook.as_ref().is_some_and(|(sobject, _)| from(sobject)) {
            let (_, edit) = hook.take().expect("checked");
            drop(hook);
            edit(&sim);
        }
    }
    // A job just closed runs now, beside the client rather than in its way.
    if closed_a_job {
        let sim = sim.clone();
        tokio::task::spawn_blocking(move || drop(sim.org()));
    }
    sim.respond(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), answer)
}
