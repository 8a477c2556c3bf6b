//! NetSuite and Salesforce simulators: real HTTP servers on 127.0.0.1 that
//! follow the documented APIs (shared/reference/): same paths, JSON shapes,
//! status codes and quirks. They power the demo, the tests and benchmarks,
//! and let users try the connector before pointing it at real accounts.

pub mod clock;
pub mod keys;
pub mod netsuite;
pub mod pair;
pub mod salesforce;
pub mod seed;

pub use clock::SimClock;

use anyhow::Result;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds 127.0.0.1 on a free port (or `port`) and serves `router` on the
/// current tokio runtime. Returns the base URL.
pub(crate) async fn serve(router: axum::Router, port: u16) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(at).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {at} ({e}): stop what uses it, or give --ports other ports (0 picks a free one)"
        )
    })?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("simulator on {addr} stopped: {e}");
        }
    });
    Ok((format!("http://{addr}"), handle))
}
