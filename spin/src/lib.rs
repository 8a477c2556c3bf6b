//! The Spin build of the connector. Spin gives it HTTP (the trigger and
//! outbound requests), a key-value store and variables; the whole sync core
//! (source, mapping, sink, engine, events) is the shared library.
//!
//! Routes: `POST /netsuite/events` (a signed change event: verified, queued,
//! applied at once if no run holds the tenant's lease) and `POST /sync` (an
//! incremental sync, for an external scheduler or Spin's cron trigger).

#![cfg(target_arch = "wasm32")]

mod ports;

use netsuite_salesforce::model::{ConnectorError, SyncMode, SyncRequest};
use netsuite_salesforce::ports::Host;
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

fn json(status: u16, body: String) -> Response {
    Response::builder().status(status).header("content-type", "application/json").body(body).build()
}

fn run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("run-{now}-{:08x}", getrandom::u32().unwrap_or(0))
}

fn sync_request(mode: SyncMode) -> SyncRequest {
    SyncRequest { run_id: run_id(), mode, kinds: vec![], replay: None, dry_run: false, compare_live: false }
}

/// The run's report as the answer: 200 when it ran to its end, otherwise
/// the status its error calls for, with everything it did up to the stop.
fn report_response(report: &netsuite_salesforce::model::SyncReport) -> Response {
    let kinds: serde_json::Map<String, serde_json::Value> = report
        .kinds
        .iter()
        .map(|(k, c)| (k.as_str().to_string(), serde_json::to_value(c).unwrap_or_default()))
        .collect();
    let status = match &report.error {
        None => 200,
        Some(ConnectorError::Busy(_)) => 409,
        Some(ConnectorError::Config(_)) => 500,
        // Stopped before its end (a quota, the API ceiling): the next run
        // resumes; no failure of NetSuite's or Salesforce's.
        Some(ConnectorError::Stopped(_) | ConnectorError::RateLimited(_)) => 503,
        Some(_) => 502,
    };
    let body = serde_json::json!({
        "run_id": report.run_id,
        "objects": kinds,
        "api_calls": report.api_calls,
        "error": report.error.as_ref().map(ToString::to_string),
    });
    json(status, body.to_string())
}

/// `Authorization: Bearer <sync_token>`, compared in constant time.
fn authorized(host: &Host<'_>, headers: &[(String, String)]) -> bool {
    let Ok(Some(token)) = host.config.get("sync_token") else { return false };
    let presented = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| netsuite_salesforce::events::bearer_token(v))
        .unwrap_or_default();
    use subtle::ConstantTimeEq;
    !token.is_empty() && bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
}

fn with_host<T>(f: impl FnOnce(&Host<'_>) -> T) -> Result<T, String> {
    let spin = ports::SpinHost::open()?;
    let parts = spin.host();
    Ok(f(&parts.as_host()))
}

/// The request body, read up to `cap` bytes: None past it (an announced
/// length over it is refused before anything is read), so an unauthenticated
/// sender cannot make the component buffer more.
fn body_within(request: IncomingRequest, headers: &[(String, String)], cap: usize) -> Result<Option<Vec<u8>>, String> {
    let announced = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if announced.and_then(|(_, v)| v.trim().parse::<u64>().ok()).is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let body = request.consume().map_err(|()| "the request body was already taken".to_string())?;
    let stream = body.stream().map_err(|()| "the request body has no stream".to_string())?;
    let mut read = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) if read.len() + chunk.len() > cap => return Ok(None),
            Ok(chunk) => read.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the request body: {}", e.to_debug_string()));
            }
        }
    }
    drop(stream);
    Ok(Some(read))
}

#[http_component]
fn handle(request: IncomingRequest) -> Response {
    let headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .filter_map(|(n, v)| String::from_utf8(v).ok().map(|v| (n, v)))
        .collect();
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split_once('?').map_or(path.as_str(), |(p, _)| p).to_string();
    let outcome = match (request.method(), path.as_str()) {
        (Method::Post, "/netsuite/events") => {
            // One byte past the events' limit is enough for the check to refuse it.
            let cap = netsuite_salesforce::events::MAX_BODY_BYTES + 1;
            match body_within(request, &headers, cap) {
                Ok(Some(body)) => with_host(|host| {
                    let answer = netsuite_salesforce::sync::receive(host, &headers, &body);
                    if answer.status == 202 {
                        // Apply now when no run holds the lease; otherwise the
                        // queued event waits for the next run.
                        if let Some(e) = netsuite_salesforce::sync::run(host, &sync_request(SyncMode::Events)).error {
                            println!("change event queued, not applied yet: {e}");
                        }
                    }
                    json(answer.status, answer.body)
                }),
                Ok(None) => Ok(json(
                    413,
                    serde_json::json!({
                        "error": format!("events are at most {} bytes", netsuite_salesforce::events::MAX_BODY_BYTES)
                    })
                    .to_string(),
                )),
                Err(e) => Ok(json(400, serde_json::json!({ "error": e }).to_string())),
            }
        }
        // The body is not read: nothing of it is used.
        (Method::Post, "/sync") => with_host(|host| {
            if !authorized(host, &headers) {
                return json(401, r#"{"error":"POST /sync needs Authorization: Bearer <sync_token>"}"#.into());
            }
            report_response(&netsuite_salesforce::sync::run(host, &sync_request(SyncMode::Incremental)))
        }),
        _ => Ok(json(404, r#"{"error":"POST /netsuite/events or POST /sync"}"#.into())),
    };
    outcome.unwrap_or_else(|e| json(500, serde_json::json!({ "error": e }).to_string()))
}
