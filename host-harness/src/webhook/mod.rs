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
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Path the SuiteScript posts to.
pub const EVENTS_PATH: &str = "/netsuite/events";
/// Runs an incremental sync on request.
pub const SYNC_PATH: &str = "/sync";
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

struct Shared {
    tenant: Arc<Tenant>,
    runtime: &'static Runtime,
    wake: Notify,
    applied_runs: AtomicU64,
    body_read_timeout: Duration,
    /// One event verified at a time: the component's check for a replayed
    /// signature and its record of a new one must not interleave.
    verifying: tokio::sync::Mutex<()>,
}

/// A running listener; clones share it.
#[derive(Clone)]
pub struct Webhook {
    shared: Arc<Shared>,
    pub url: String,
}

impl Webhook {
    /// Runs of mode `events` that completed since start.
    pub fn applied_runs(&self) -> u64 {
        self.shared.applied_runs.load(Ordering::SeqCst)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], serde_json::json!({ "error": message }).to_string())
        .into_response()
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let body = match tokio::time::timeout(shared.body_read_timeout, axum::body::to_bytes(body, MAX_REQUEST_BYTES)).await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is over {MAX_REQUEST_BYTES} bytes, or was cut off"),
            );
        }
        Err(_) => {
            let mut answer = error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the request body took more than {:?} to arrive", shared.body_read_timeout),
            );
            answer.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
            return answer;
        }
    };
    let headers: Vec<(String, String)> =
        headers.iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string()))).collect();
    let sandbox = match shared.tenant.sandbox() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    let verified = {
        let _one_at_a_time = shared.verifying.lock().await;
        shared.runtime.receive_event(sandbox, headers, body.to_vec()).await
    };
    match verified {
        Ok((status, answer)) => {
            if status == 202 {
                shared.wake.notify_one();
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [("content-type", "application/json")], answer).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// `POST /sync`: `Authorization: Bearer <sync_token>` (compared in constant
/// time) runs an incremental sync and answers its report, as the Spin build
/// does: 200 when it succeeded, 409 when another run holds the lease, 502
/// when NetSuite or Salesforce failed it. Without a `sync_token` the route
/// is off (404).
async fn sync_now(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let sandbox = match shared.tenant.sandbox() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e:#}")),
    };
    let Some(token) = sandbox.config.get("sync_token").filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::NOT_FOUND,
            "POST /sync is off: store a sync_token with `connector secrets set --config <file> sync_token`",
        );
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    use subtle::ConstantTimeEq;
    if !bool::from(token.as_bytes().ct_eq(presented.as_bytes())) {
        return error(StatusCode::UNAUTHORIZED, "POST /sync needs Authorization: Bearer <sync_token>");
    }
    let report = match shared.tenant.sync(shared.runtime, SyncMode::Incremental, &[]).await {
        Ok(report) => report,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    let status = match (report.status, report.error.as_deref()) {
        ("succeeded", _) => StatusCode::OK,
        (_, Some(e)) if e.starts_with("busy") => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let body = serde_json::to_string(&report).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#));
    (status, [("content-type", "application/json")], body).into_response()
}

/// Applies queued events whenever woken; a burst of events coalesces into
/// one run, and a busy tenant (a scheduled run holds the lease) is retried.
async fn apply_queued(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        // Let the rest of a burst arrive.
        tokio::time::sleep(Duration::from_millis(25)).await;
        loop {
            match shared.tenant.sync(shared.runtime, SyncMode::Events, &[]).await {
                Ok(report) if report.status == "succeeded" => {
                    shared.applied_runs.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(report) if report.error.as_deref().is_some_and(|e| e.starts_with("busy")) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(report) => {
                    eprintln!("applying change events failed: {}", report.error.unwrap_or_default());
                    break;
                }
                Err(e) => {
                    eprintln!("applying change events failed: {e:#}");
                    break;
                }
            }
        }
    }
}

/// Listens on `addr` (loopback by default in the CLI) with the default limits.
pub async fn serve(tenant: Arc<Tenant>, runtime: &'static Runtime, addr: SocketAddr) -> Result<Webhook> {
    serve_with(tenant, runtime, addr, ListenerLimits::default()).await
}

/// Listens on `addr` with `limits`.
pub async fn serve_with(
    tenant: Arc<Tenant>,
    runtime: &'static Runtime,
    addr: SocketAddr,
    limits: ListenerLimits,
) -> Result<Webhook> {
    let shared = Arc::new(Shared {
        tenant,
        runtime,
        wake: Notify::new(),
        applied_runs: AtomicU64::new(0),
        body_read_timeout: limits.body_read_timeout,
        verifying: Default::default(),
    });
    let router =
        Router::new().route(EVENTS_PATH, post(receive)).route(SYNC_PATH, post(sync_now)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(accept(listener, router, limits));
    tokio::spawn(apply_queued(shared.clone()));
    Ok(Webhook { shared, url })
}

/// Serves each connection with hyper's HTTP/1 server and its header read
/// timeout (axum::serve sets none), at most `max_connections` at once.
async fn accept(listener: tokio::net::TcpListener, router: Router, limits: ListenerLimits) {
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
                eprintln!("change-event listener could not accept a connection: {e}");
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
