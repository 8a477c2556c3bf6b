//! The change-event listener: NetSuite's user-event script POSTs signed
//! events here; the component verifies and queues them (in the tenant's
//! key-value store, so none is lost), and a worker applies the queue with
//! runs of mode `events`, waiting its turn when a scheduled run holds the
//! tenant's lease.

use crate::host::{Runtime, SyncMode};
use crate::scheduler::Tenant;
use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Path the SuiteScript posts to.
pub const EVENTS_PATH: &str = "/netsuite/events";
/// Bodies beyond this are refused before they reach the component.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

struct Shared {
    tenant: Arc<Tenant>,
    runtime: &'static Runtime,
    wake: Notify,
    applied_runs: AtomicU64,
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

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<(String, String)> =
        headers.iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string()))).collect();
    let sandbox = match shared.tenant.sandbox() {
        Ok(s) => s,
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{{\"error\":{:?}}}", format!("{e:#}"))).into_response();
        }
    };
    match shared.runtime.receive_event(sandbox, headers, body.to_vec()).await {
        Ok((status, answer)) => {
            if status == 202 {
                shared.wake.notify_one();
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [("content-type", "application/json")], answer).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{{\"error\":{:?}}}", format!("{e:#}"))).into_response(),
    }
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

/// Listens on `addr` (loopback by default in the CLI).
pub async fn serve(tenant: Arc<Tenant>, runtime: &'static Runtime, addr: SocketAddr) -> Result<Webhook> {
    let shared = Arc::new(Shared { tenant, runtime, wake: Notify::new(), applied_runs: AtomicU64::new(0) });
    let router = Router::new()
        .route(EVENTS_PATH, post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("change-event listener stopped: {e}");
        }
    });
    tokio::spawn(apply_queued(shared.clone()));
    Ok(Webhook { shared, url })
}
