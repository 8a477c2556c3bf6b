//! The change-event listener: NetSuite's user-event script POSTs signed
//! events here; the component verifies and queues them (in the tenant's
//! key-value store, so none is lost), and a worker applies the queue with
//! runs of mode `events`, waiting its turn when a scheduled run holds the
//! tenant's lease. `POST /sync` (with the tenant's `sync_token`) runs an
//! incremental sync at once, for callers such as a Salesforce Flow.

use crate::host::{Runtime, SyncMode};
use crate::scheduler::Tenant;
use anyhow::Result;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// Path the SuiteScript posts to.
pub const EVENTS_PATH: &str = "/netsuite/events";
/// Runs an incremental sync on request.
pub const SYNC_PATH: &str = "/sync";
/// The multi-tenant listener's routes (`connector serve --tenants`).
pub const TENANT_EVENTS_PATH: &str = "/tenants/{tenant}/netsuite/events";
pub const TENANT_SYNC_PATH: &str = "/tenants/{tenant}/sync";
/// Prometheus metrics (both listeners).
pub const METRICS_PATH: &str = "/metrics";
/// Bodies beyond this are refused before they reach the component.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// What one client may hold of the listener. An event is a few hundred bytes
/// sent at once, so the defaults are generous for NetSuite and short for a
/// client that trickles bytes to keep a connection (slowloris).
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// From the start of a request (or of waiting for the next one on a
    /// kept-alive connection) until its headers are complete; then the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// From the headers until the whole body is in, however it trickles;
    /// then 408 and the connection is closed.
    pub body_read_timeout: Duration,
    /// Connections served at once. Beyond it the listener stops accepting:
    /// new connections wait in the kernel's accept queue until one ends
    /// (within the timeouts above), so a burst of events is delayed, not lost.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// One tenant as the listener serves it: its runs, the worker that applies
/// its queued events, and (multi-tenant routes) what the host checks before
/// any of the tenant's code runs.
pub struct Hosted {
    pub tenant: Arc<Tenant>,
    runtime: &'static Runtime,
    wake: Notify,
    applied_runs: AtomicU64,
    /// One event verified at a time: the component's check for a replayed
    /// signature and its record of a new one must not interleave.
    verifying: tokio::sync::Mutex<()>,
    /// Read from the sealed secrets when the tenant is loaded, so that a
    /// request for a tenant costs the same whether it exists or not.
    webhook_secret: Vec<u8>,
    /// `webhook_tolerance_secs`: how far from now an event may be signed
    /// (None: not a valid setting, which the component reports).
    tolerance_secs: Option<i64>,
    sync_token: Vec<u8>,
    events: RateLimit,
    stopping: std::sync::atomic::AtomicBool,
}

impl Hosted {
    /// Loads what the listener checks and starts the tenant's event worker.
    pub fn start(tenant: Arc<Tenant>, runtime: &'static Runtime) -> Result<Arc<Hosted>> {
        let values = tenant.sandbox()?.config;
        let secret = |name: &str| values.get(name).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        let per_minute = tenant.config.events_per_minute;
        // The component refuses what does not parse; the host then uses the default.
        // A value the component refuses (it names the setting) turns the
        // host's check off rather than refusing every event as stale.
        let setting = netsuite_salesforce::settings::catalog::find("webhook_tolerance_secs");
        let given = values.get("webhook_tolerance_secs").map(String::as_str).or(setting.and_then(|s| s.default));
        let tolerance_secs = given.and_then(|v| v.trim().parse::<i64>().ok()).filter(|t| *t >= 1);
        let hosted = Arc::new(Hosted {
            runtime,
            wake: Notify::new(),
            applied_runs: AtomicU64::new(0),
            verifying: Default::default(),
            webhook_secret: secret("webhook_secret"),
            tolerance_secs,
            sync_token: secret("sync_token"),
            events: RateLimit::per_minute(per_minute),
            stopping: Default::default(),
            tenant,
        });
        // Events accepted before the process stopped are applied now, not
        // at the next scheduled run.
        let tenant = &hosted.tenant;
        let conn = tenant.database.connect()?;
        if crate::ops::status::change_events_waiting(&conn, &tenant.config.tenant)? {
            hosted.wake.notify_one();
        }
        tokio::spawn(apply_queued(hosted.clone()));
        Ok(hosted)
    }

    /// Ends the event worker once its current run, if any, is over (the
    /// tenant was removed or replaced); events still queued stay in the
    /// tenant's store for its next run.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Runs of mode `events` that completed since start.
    pub fn applied_runs(&self) -> u64 {
        self.applied_runs.load(Ordering::SeqCst)
    }
}

/// A token bucket: `per_minute` requests a minute, bursts of as many.
struct RateLimit {
    per_minute: f64,
    state: std::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimit {
    fn per_minute(n: u32) -> RateLimit {
        RateLimit {
            per_minute: f64::from(n),
            state: std::sync::Mutex::new((f64::from(n), tokio::time::Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() * self.per_minute / 60.0;
        state.0 = (state.0 + refill).min(self.per_minute);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            return Ok(());
        }
        let wait = if self.per_minute > 0.0 { (1.0 - state.0) * 60.0 / self.per_minute } else { 60.0 };
        Err(Duration::from_secs_f64(wait))
    }
}

/// The tenants a multi-tenant listener serves: one by name (the routes),
/// all of them (`/metrics`).
#[derive(Clone)]
pub struct Directory {
    pub find: Arc<FindTenant>,
    pub all: Arc<dyn Fn() -> Vec<Arc<Tenant>> + Send + Sync>,
}

/// A hosted tenant by name.
pub type FindTenant = dyn Fn(&str) -> Option<Arc<Hosted>> + Send + Sync;

enum Tenants {
    One(Arc<Hosted>),
    Many(Directory),
}

/// `GET /metrics`: Prometheus text of this process's runs and its tenants' queues.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let tenants = match &shared.tenants {
        Tenants::One(hosted) => vec![hosted.tenant.clone()],
        Tenants::Many(directory) => (directory.all)(),
    };
    let text = tokio::task::spawn_blocking(move || crate::metrics::render(&tenants)).await.unwrap_or_default();
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

struct Shared {
    tenants: Tenants,
    body_read_timeout: Duration,
}

/// A running listener; clones share it.
#[derive(Clone)]
pub struct Webhook {
    shared: Arc<Shared>,
    pub url: String,
}

impl Webhook {
    /// Runs of mode `events` that completed since start (single-tenant listener).
    pub fn applied_runs(&self) -> u64 {
        match &self.shared.tenants {
            Tenants::One(hosted) => hosted.applied_runs(),
            Tenants::Many(_) => 0,
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], serde_json::json!({ "error": message }).to_string())
        .into_response()
}

/// The one answer of the multi-tenant routes to an unknown tenant and to a
/// known one's request that does not authenticate: the two must not be told
/// apart.
fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such tenant, or the request does not authenticate as it (an event signed with its webhook_secret, a \
         sync with its sync_token)",
    )
}

async fn read_body(shared: &Shared, body: Body) -> Result<bytes::Bytes, Response> {
    match tokio::time::timeout(shared.body_read_timeout, axum::body::to_bytes(body, MAX_REQUEST_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is over {MAX_REQUEST_BYTES} bytes, or was cut off"),
        )),
        Err(_) => {
            let mut answer = error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the request body took more than {:?} to arrive", shared.body_read_timeout),
            );
            answer.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
            Err(answer)
        }
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string()))).collect()
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let Tenants::One(hosted) = &shared.tenants else { return not_found() };
    let body = match read_body(&shared, body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let headers = header_pairs(&headers);
    // Refused here, as on the tenants' route: a flood of forged requests
    // takes none of the allowance and makes no instance of the component.
    if hosted.webhook_secret.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no webhook_secret is stored for this tenant, so no event can be verified: store the secret NetSuite \
             signs with (`connector secrets set --config <file> webhook_secret`) and restart serve",
        );
    }
    if !netsuite_salesforce::events::signature_matches(&headers, &body, &hosted.webhook_secret) {
        return unsigned(&headers, &body, &hosted.webhook_secret);
    }
    if let Some(answer) = stale(hosted, &headers, &body) {
        return answer;
    }
    if let Some(answer) = over_limit(hosted) {
        return answer;
    }
    deliver(hosted, headers, body).await
}

/// The answer to a request without a good signature: the component's own
/// check run here, so the sender still learns why (413, or 401 naming the
/// header, its form or the secret).
fn unsigned(headers: &[(String, String)], body: &[u8], secret: &[u8]) -> Response {
    let answer = match netsuite_salesforce::events::verify(headers, body, secret, 0, 0) {
        Err(answer) => answer,
        // Unreachable (the signature did not match), but never a 2xx.
        Ok(_) => netsuite_salesforce::events::Answer { status: 401, body: r#"{"error":"unsigned"}"#.into() },
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNAUTHORIZED);
    (status, [("content-type", "application/json")], answer.body).into_response()
}

/// The 401 for a signed event outside the tolerance window, before the
/// rate limit: a captured event sent again and again takes none of the
/// tenant's `events_per_minute` (the component checks it again).
fn stale(hosted: &Hosted, headers: &[(String, String)], body: &[u8]) -> Option<Response> {
    let tolerance = hosted.tolerance_secs?;
    let now = hosted.tenant.guest_now();
    match netsuite_salesforce::events::verify(headers, body, &hosted.webhook_secret, now, tolerance) {
        // Signed (checked before): a 401 now is about the time alone.
        Err(answer) if answer.status == 401 => {
            Some((StatusCode::UNAUTHORIZED, [("content-type", "application/json")], answer.body).into_response())
        }
        _ => None,
    }
}

/// The 429 for a tenant past its `events_per_minute`, if it is.
fn over_limit(hosted: &Hosted) -> Option<Response> {
    let wait = hosted.events.take().err()?;
    let mut answer = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "tenant `{}` sent more than {} events a minute (`events_per_minute` in its config)",
            hosted.tenant.config.tenant, hosted.tenant.config.events_per_minute
        ),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        answer.headers_mut().insert("retry-after", v);
    }
    Some(answer)
}

/// `POST /tenants/{tenant}/netsuite/events`: the host checks the signature
/// with the tenant's secret first (a made-up one for an unknown tenant, so
/// both cost one HMAC), then when it was signed, then the tenant's rate
/// limit, then the component
/// verifies and queues the event as on the single-tenant route.
async fn receive_for(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Tenants::Many(directory) = &shared.tenants else { return not_found() };
    let body = match read_body(&shared, body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let headers = header_pairs(&headers);
    let hosted = (directory.find)(&name);
    let secret = hosted.as_ref().map_or(UNKNOWN_TENANT_SECRET, |h| h.webhook_secret.as_slice());
    let signed = netsuite_salesforce::events::signature_matches(&headers, &body, secret);
    let Some(hosted) = hosted.filter(|h| signed && !h.webhook_secret.is_empty()) else { return not_found() };
    if let Some(answer) = stale(&hosted, &headers, &body) {
        return answer;
    }
    if let Some(answer) = over_limit(&hosted) {
        return answer;
    }
    deliver(&hosted, headers, body).await
}

/// What the HMAC of an unknown tenant's request is computed with.
const UNKNOWN_TENANT_SECRET: &[u8] = b"no-tenant-has-this-secret-0000000";

async fn deliver(hosted: &Arc<Hosted>, headers: Vec<(String, String)>, body: bytes::Bytes) -> Response {
    let mut sandbox = match hosted.tenant.sandbox() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    // The component checks with the secret the host let the request in
    // with (read when the tenant loaded), not one stored since: a rotated
    // secret takes effect for both at once, when the tenant is reloaded.
    sandbox.config.insert("webhook_secret".into(), String::from_utf8_lossy(&hosted.webhook_secret).into_owned());
    // One deadline for the wait behind the tenant's other events and for a slot.
    let deadline = tokio::time::Instant::now() + crate::host::EVENT_WAIT;
    let verified = match tokio::time::timeout_at(deadline, hosted.verifying.lock()).await {
        Ok(_one_at_a_time) => hosted.runtime.receive_event(sandbox, headers, body.to_vec(), deadline).await,
        Err(_) => Err(crate::host::NoSlot.into()),
    };
    match verified {
        Ok((status, answer)) => {
            if status == 202 {
                hosted.wake.notify_one();
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [("content-type", "application/json")], answer).into_response()
        }
        Err(e) if e.is::<crate::host::NoSlot>() => {
            let mut answer = error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}"));
            answer.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
            answer
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

fn bearer(headers: &HeaderMap) -> &[u8] {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(netsuite_salesforce::events::bearer_token)
        .unwrap_or_default()
        .as_bytes()
}

/// `POST /sync`: `Authorization: Bearer <sync_token>` (compared in constant
/// time) runs an incremental sync and answers its report, as the Spin build
/// does: 200 when it succeeded, 409 when another run holds the lease, 503
/// when it stopped before its end, 502 when NetSuite or Salesforce failed
/// it. Without a `sync_token` the route is off (404).
async fn sync_now(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Tenants::One(hosted) = &shared.tenants else { return not_found() };
    let sandbox = match hosted.tenant.sandbox() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    let Some(token) = sandbox.config.get("sync_token").filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::NOT_FOUND,
            "POST /sync is off: store a sync_token with `connector secrets set --config <file> sync_token`",
        );
    };
    use subtle::ConstantTimeEq;
    if !bool::from(token.as_bytes().ct_eq(bearer(&headers))) {
        return error(StatusCode::UNAUTHORIZED, "POST /sync needs Authorization: Bearer <sync_token>");
    }
    run_now(hosted.clone()).await
}

/// `POST /tenants/{tenant}/sync`: as `/sync`, but an unknown tenant, one
/// without a `sync_token` and a wrong token all answer the same 404.
async fn sync_now_for(State(shared): State<Arc<Shared>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Tenants::Many(directory) = &shared.tenants else { return not_found() };
    let hosted = (directory.find)(&name);
    let token = hosted.as_ref().map_or(UNKNOWN_TENANT_SECRET, |h| h.sync_token.as_slice());
    use subtle::ConstantTimeEq;
    let matches = bool::from(token.ct_eq(bearer(&headers)));
    match hosted.filter(|h| matches && !h.sync_token.is_empty()) {
        Some(hosted) => run_now(hosted).await,
        None => not_found(),
    }
}

async fn run_now(hosted: Arc<Hosted>) -> Response {
    // The run is a task of its own: a caller that hangs up (a Flow's
    // callout timing out) drops this handler, and would otherwise drop the
    // run half-way, its lease held and its row left `running`.
    let run = tokio::spawn(async move {
        let report = hosted.tenant.sync(hosted.runtime, SyncMode::Incremental, &[]).await;
        // Logged here: the caller may be gone.
        match &report {
            Ok(report) => crate::serve::log_run(report),
            Err(e) => tracing::error!(tenant = %hosted.tenant.config.tenant, "POST /sync: the run failed: {e:#}"),
        }
        report
    });
    let report = match run.await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the run ended abnormally: {e}")),
    };
    let status = match (report.status, report.error.as_deref()) {
        ("succeeded", _) => StatusCode::OK,
        (_, Some(e)) if e.starts_with("busy") => StatusCode::CONFLICT,
        // Stopped before its end (the API ceiling, a rate limit, a shutdown):
        // the next run resumes; no failure of NetSuite's or Salesforce's.
        ("stopped", _) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let body = serde_json::to_string(&report).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#));
    (status, [("content-type", "application/json")], body).into_response()
}

/// Applies queued events whenever woken; a burst of events coalesces into
/// one run, and a busy tenant (a scheduled run holds the lease) is retried.
async fn apply_queued(hosted: Arc<Hosted>) {
    loop {
        hosted.wake.notified().await;
        if hosted.stopping.load(Ordering::SeqCst) {
            return;
        }
        // Let the rest of a burst arrive.
        tokio::time::sleep(Duration::from_millis(25)).await;
        // A removed or replaced tenant's events wait for its successor (or
        // its return): none is applied under the old configuration.
        let stopping = || hosted.stopping.load(Ordering::SeqCst) || hosted.tenant.stopping();
        match hosted.tenant.sync_when_free(hosted.runtime, SyncMode::Events, true, &stopping).await {
            Ok(None) => return,
            Ok(Some(report)) => {
                crate::serve::log_run(&report);
                if report.status == "succeeded" {
                    hosted.applied_runs.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => tracing::error!(tenant = %hosted.tenant.config.tenant, "applying change events failed: {e:#}"),
        }
    }
}

/// Listens on `addr` (loopback by default in the CLI) with the default limits.
pub async fn serve(tenant: Arc<Tenant>, runtime: &'static Runtime, addr: SocketAddr) -> Result<Webhook> {
    serve_with(tenant, runtime, addr, ListenerLimits::default()).await
}

/// Listens on `addr` with `limits` for one tenant (`/netsuite/events`, `/sync`).
pub async fn serve_with(
    tenant: Arc<Tenant>,
    runtime: &'static Runtime,
    addr: SocketAddr,
    limits: ListenerLimits,
) -> Result<Webhook> {
    let hosted = Hosted::start(tenant, runtime)?;
    let router = Router::new()
        .route(EVENTS_PATH, post(receive))
        .route(SYNC_PATH, post(sync_now))
        .route(METRICS_PATH, axum::routing::get(metrics));
    listen(Tenants::One(hosted), router, addr, limits).await
}

/// Listens on `addr` for every tenant `directory` finds
/// (`/tenants/{tenant}/netsuite/events`, `/tenants/{tenant}/sync`).
pub async fn serve_tenants(directory: Directory, addr: SocketAddr, limits: ListenerLimits) -> Result<Webhook> {
    serve_tenants_on(directory, bind(addr).await?, limits)
}

/// As [`serve_tenants`], on an address bound already: `serve --tenants`
/// binds before it loads its tenants (a second one whose address is taken
/// stops there) and answers once they are loaded (a request arriving in
/// between waits, rather than finding no tenant).
pub fn serve_tenants_on(directory: Directory, listener: TcpListener, limits: ListenerLimits) -> Result<Webhook> {
    let router = Router::new()
        .route(TENANT_EVENTS_PATH, post(receive_for))
        .route(TENANT_SYNC_PATH, post(sync_now_for))
        .route(METRICS_PATH, axum::routing::get(metrics));
    listen_on(Tenants::Many(directory), router, listener, limits)
}

/// Binds `addr`, or says what to do when it cannot.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr} ({e}): stop what uses it, or give --listen another address")
    })
}

async fn listen(
    tenants: Tenants,
    router: Router<Arc<Shared>>,
    addr: SocketAddr,
    limits: ListenerLimits,
) -> Result<Webhook> {
    listen_on(tenants, router, bind(addr).await?, limits)
}

fn listen_on(
    tenants: Tenants,
    router: Router<Arc<Shared>>,
    listener: TcpListener,
    limits: ListenerLimits,
) -> Result<Webhook> {
    let shared = Arc::new(Shared { tenants, body_read_timeout: limits.body_read_timeout });
    let router = router.with_state(shared.clone());
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(accept(listener, router, limits));
    Ok(Webhook { shared, url })
}

/// Serves each connection with hyper's HTTP/1 server and its header read
/// timeout (axum::serve sets none), at most `max_connections` at once.
async fn accept(listener: TcpListener, router: Router, limits: ListenerLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    loop {
        // Waiting here (not after accept) leaves excess connections in the
        // kernel's queue, holding nothing of ours.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!("change-event listener could not accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        tokio::spawn(async move {
            // A client that breaks off or times out is no error of ours.
            let _ = connection.await;
            drop(slot);
        });
    }
}
