//! The NetSuite simulator: the OAuth 2.0 M2M token endpoint (verifying the
//! client assertion's signature, issuer, audience and lifetime) and the
//! SuiteQL endpoint (executing queries, enforcing paging rules, the
//! 100,000-row ceiling and the account's concurrency limit).

mod auth;
pub mod db;
pub mod suiteql;
mod tba;

pub use tba::TbaConfig;

use super::SimClock;
use super::seed::Seeder;
use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Clone)]
pub struct NetSuiteSimConfig {
    pub account_id: String,
    /// The integration record's client id (the JWT's `iss`).
    pub client_id: String,
    /// The certificate id of the M2M mapping (the JWT's `kid`).
    pub certificate_id: String,
    /// The uploaded certificate's public key, PEM (RSA for PS*, EC for ES*).
    pub public_key_pem: String,
    /// Concurrent REST requests the account allows; more get 429.
    pub concurrency_limit: usize,
    pub token_lifetime: Duration,
    /// Token-Based Authentication credentials the account accepts, if any.
    pub tba: Option<TbaConfig>,
}

type Hook = Box<dyn FnOnce(&NetSuiteSim) + Send>;

struct Inner {
    config: NetSuiteSimConfig,
    clock: SimClock,
    db: Mutex<Connection>,
    /// access token → expiry (simulated Unix seconds)
    tokens: Mutex<HashMap<String, i64>>,
    base_url: OnceLock<String>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    token_requests: AtomicU64,
    queries: AtomicU64,
    max_offset: AtomicU64,
    /// Requests refused with 429 because the concurrency limit was reached.
    over_limit: AtomicU64,
    login_audit: Mutex<Vec<String>>,
    used_nonces: Mutex<std::collections::HashSet<(String, String)>>,
    /// Simulated time each SuiteQL request takes.
    query_duration: Mutex<Duration>,
    /// Real time each SuiteQL request takes (holding a concurrency slot).
    latency: Mutex<Duration>,
    /// Edits to make once a number of queries has been served.
    hooks: Mutex<Vec<(u64, Hook)>>,
    /// Tables the integration role may not see.
    denied_tables: Mutex<Vec<String>>,
    /// Answers to give the next SuiteQL requests instead of running them.
    scripted_failures: Mutex<std::collections::VecDeque<ScriptedFailure>>,
}

/// A failure the simulator answers a SuiteQL request with, as NetSuite would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptedFailure {
    /// 429: the account's concurrency limit is in use.
    TooManyRequests,
    /// 401 INVALID_LOGIN that a retry clears (concurrency pressure).
    InvalidLogin,
    /// 500 UNEXPECTED_ERROR.
    Unexpected,
}

/// A running simulator; clones share it.
#[derive(Clone)]
pub struct NetSuiteSim {
    inner: Arc<Inner>,
}

fn error_body(status: StatusCode, code: &str, detail: &str) -> Response {
    error_body_for(status, code, detail, None)
}

/// NetSuite's error shape; `query_param` names the URL or body parameter at fault.
fn error_body_for(status: StatusCode, code: &str, detail: &str, query_param: Option<&str>) -> Response {
    let anchor = match status.as_u16() {
        400 => "section-15.5.1",
        401 => "section-15.5.2",
        403 => "section-15.5.4",
        404 => "section-15.5.5",
        429 => "section-15.5.29",
        _ => "section-15.6.1",
    };
    let mut detail = json!({ "detail": detail, "o:errorCode": code });
    if let Some(param) = query_param {
        detail["o:errorQueryParam"] = json!(param);
    }
    let body = json!({
        "type": format!("https://www.rfc-editor.org/rfc/rfc9110.html#{anchor}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "o:errorDetails": [detail],
    });
    (status, [("content-type", "application/vnd.oracle.resource+json; type=error")], body.to_string()).into_response()
}

fn invalid_login() -> Response {
    error_body(
        StatusCode::UNAUTHORIZED,
        "INVALID_LOGIN",
        "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at Setup > Users/Roles > \
         User Management > View Login Audit Trail.",
    )
}

/// Holds a concurrency slot for the life of a request.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl NetSuiteSim {
    /// Starts the simulator on 127.0.0.1 (`port` 0 picks a free one).
    pub async fn start(config: NetSuiteSimConfig, clock: SimClock, port: u16) -> Result<NetSuiteSim> {
        let sim = NetSuiteSim {
            inner: Arc::new(Inner {
                config,
                clock,
                db: Mutex::new(db::open()?),
                tokens: Mutex::new(HashMap::new()),
                base_url: OnceLock::new(),
                in_flight: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                token_requests: AtomicU64::new(0),
                queries: AtomicU64::new(0),
                max_offset: AtomicU64::new(0),
                over_limit: AtomicU64::new(0),
                login_audit: Mutex::new(Vec::new()),
                used_nonces: Mutex::new(Default::default()),
                query_duration: Mutex::new(Duration::ZERO),
                latency: Mutex::new(Duration::ZERO),
                hooks: Mutex::new(Vec::new()),
                denied_tables: Mutex::new(Vec::new()),
                scripted_failures: Mutex::new(Default::default()),
            }),
        };
        let router = Router::new()
            .route("/services/rest/auth/oauth2/v1/token", post(auth::token))
            .route("/services/rest/query/v1/suiteql", post(suiteql_handler))
            .with_state(sim.clone());
        let (url, _task) = super::serve(router, port).await?;
        let _ = sim.inner.base_url.set(url);
        Ok(sim)
    }

    pub fn base_url(&self) -> &str {
        self.inner.base_url.get().map(String::as_str).unwrap_or_default()
    }

    pub fn account_id(&self) -> &str {
        &self.inner.config.account_id
    }

    /// Every HTTP request served, token requests included.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// Why logins were refused, newest last (NetSuite's Login Audit Trail).
    pub fn login_audit(&self) -> Vec<String> {
        self.inner.login_audit.lock().unwrap().clone()
    }

    /// Each SuiteQL request from now on moves simulated time forward by `d`.
    pub fn set_query_duration(&self, d: Duration) {
        *self.inner.query_duration.lock().unwrap() = d;
    }

    /// Each SuiteQL request from now on takes `d` of real time.
    pub fn set_latency(&self, d: Duration) {
        *self.inner.latency.lock().unwrap() = d;
    }

    /// Runs `edit` once the `n`-th SuiteQL request has been answered (counted
    /// from the simulator's start), as a user editing during a sync would.
    pub fn after_queries(&self, n: u64, edit: impl FnOnce(&NetSuiteSim) + Send + 'static) {
        self.inner.hooks.lock().unwrap().push((n, Box::new(edit)));
    }

    /// The integration role loses view access to `table`.
    pub fn deny_table(&self, table: &str) {
        self.inner.denied_tables.lock().unwrap().push(table.to_ascii_lowercase());
    }

    /// The next SuiteQL requests are answered with these failures, in order.
    pub fn fail_next(&self, failures: &[ScriptedFailure]) {
        self.inner.scripted_failures.lock().unwrap().extend(failures.iter().copied());
    }

    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::SeqCst)
    }

    fn run_hooks(&self) {
        let served = self.queries();
        let due: Vec<Hook> = {
            let mut hooks = self.inner.hooks.lock().unwrap();
            let (due, later): (Vec<_>, Vec<_>) = hooks.drain(..).partition(|(n, _)| *n <= served);
            *hooks = later;
            due.into_iter().map(|(_, h)| h).collect()
        };
        for hook in due {
            hook(self);
        }
    }

    /// Checks the Authorization header: an M2M bearer token or a TBA signature.
    fn authorize(&self, headers: &HeaderMap, path_and_query: &str) -> Result<(), String> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let now = self.inner.clock.now_secs();
        if let Some(token) = header.strip_prefix("Bearer ") {
            let valid = self.inner.tokens.lock().unwrap().get(token).is_some_and(|&exp| now < exp);
            return if valid { Ok(()) } else { Err("missing, unknown or expired access token".into()) };
        }
        let Some(tba) = &self.inner.config.tba else {
            return Err("no supported credentials in the Authorization header".into());
        };
        let params = tba::parse_header(header).ok_or("malformed OAuth header")?;
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let url = format!("{}{path}", self.base_url());
        let request = tba::SignedRequest { method: "POST", base_url: &url, query, now };
        tba::verify(tba, &self.inner.config.account_id, &params, &request, &mut |nonce, ts| {
            self.inner.used_nonces.lock().unwrap().insert((nonce.to_string(), ts.to_string()))
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `count` customers (or vendors: `table`), modified at spread-out
    /// times in the past year.
    fn seed_companies(&self, table: &str, prefix: &str, count: u64, seed: u64) -> Result<Vec<i64>> {
        let now = self.inner.clock.now_secs();
        let mut seeder = Seeder::new(seed);
        let db = self.db();
        let tx = db.unchecked_transaction()?;
        let mut ids = Vec::with_capacity(count as usize);
        for n in 1..=count {
            let company = seeder.company(n, prefix);
            let at = now - seeder.range(3600, 365 * 86400);
            ids.push(db::insert_company(&tx, table, &company, at)?);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Adds `count` customers: companies and people, with addresses and terms.
    pub fn seed_customers(&self, count: u64, seed: u64) -> Result<Vec<i64>> {
        self.seed_companies("customer", "CUST", count, seed)
    }

    /// Adds `count` contacts spread over `companies`, all modified at `at`
    /// (simulated seconds; a bulk import gives many rows one timestamp).
    pub fn seed_contacts(&self, count: u64, companies: &[i64], at: i64, seed: u64) -> Result<()> {
        let mut seeder = Seeder::new(seed);
        let db = self.db();
        let tx = db.unchecked_transaction()?;
        for n in 1..=count {
            let person = seeder.person(n);
            let company = (!companies.is_empty()).then(|| companies[(n as usize) % companies.len()]);
            db::insert_contact(&tx, &person, company, at)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn touch(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        let changed = self.db().execute(sql, params)?;
        anyhow::ensure!(changed > 0, "no such record in the NetSuite simulator");
        Ok(())
    }

    /// Renames a customer as a user editing it in NetSuite would.
    pub fn rename_customer(&self, id: i64, name: &str) -> Result<()> {
        let now = self.inner.clock.now_secs();
        self.touch(
            "UPDATE customer SET companyname = ?1, lastmodifieddate = ?2 WHERE id = ?3 AND isperson = 'F'",
            rusqlite::params![name, now, id],
        )
    }

    /// Stores raw bytes as a customer's text column, as NetSuite can hold a
    /// lone UTF-16 surrogate (give it WTF-8: `ED A0 80` for U+D800).
    pub fn set_customer_text_bytes(&self, id: i64, column: &str, bytes: &[u8]) -> Result<()> {
        let now = self.inner.clock.now_secs();
        self.touch(
            &format!("UPDATE customer SET {column} = CAST(?1 AS TEXT), lastmodifieddate = ?2 WHERE id = ?3"),
            rusqlite::params![bytes, now, id],
        )
    }

    /// Changes the city and street of a customer's default billing address;
    /// editing the address book also modifies the customer.
    pub fn move_customer_billing(&self, id: i64, addr1: &str, city: &str, zip: &str) -> Result<()> {
        let now = self.inner.clock.now_secs();
        self.touch(
            "UPDATE customeraddressbookentityaddress SET addr1 = ?1, city = ?2, zip = ?3, lastmodifieddate = ?4
             WHERE nkey = (SELECT defaultbillingaddress FROM customer WHERE id = ?5)",
            rusqlite::params![addr1, city, zip, now, id],
        )?;
        self.touch("UPDATE customer SET lastmodifieddate = ?1 WHERE id = ?2", rusqlite::params![now, id])
    }

    /// Adds `count` vendors with addresses and terms.
    pub fn seed_vendors(&self, count: u64, seed: u64) -> Result<Vec<i64>> {
        self.seed_companies("vendor", "VEND", count, seed)
    }

    /// Marks a customer inactive (or active again).
    pub fn set_customer_inactive(&self, id: i64, inactive: bool) -> Result<()> {
        let now = self.inner.clock.now_secs();
        self.touch(
            "UPDATE customer SET isinactive = ?1, lastmodifieddate = ?2 WHERE id = ?3",
            rusqlite::params![if inactive { "T" } else { "F" }, now, id],
        )
    }

    /// Deletes a record of `table` (customer, contact, vendor) the way
    /// NetSuite does: the row goes, a deletedrecord row appears.
    pub fn delete_record(&self, table: &str, id: i64) -> Result<()> {
        anyhow::ensure!(["customer", "contact", "vendor"].contains(&table), "no such record type {table}");
        let now = self.inner.clock.now_secs();
        let db = self.db();
        let name: Option<String> =
            db.query_row(&format!("SELECT entityid FROM {table} WHERE id = ?1"), [id], |r| r.get(0)).ok();
        anyhow::ensure!(name.is_some(), "no {table} {id} in the NetSuite simulator");
        db.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])?;
        db.execute(
            "INSERT INTO deletedrecord (recordid, name, type, deleteddate, context, iscustomrecord)
             VALUES (?1, ?2, ?3, ?4, 'UI', 'F')",
            rusqlite::params![id, name, table, now],
        )?;
        Ok(())
    }

    /// Pairs of integers from a query against the simulated account.
    pub fn id_pairs(&self, sql: &str) -> Result<Vec<(i64, i64)>> {
        let db = self.db();
        let mut stmt = db.prepare(sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn customer_count(&self) -> Result<i64> {
        Ok(self.db().query_row("SELECT COUNT(*) FROM customer", [], |r| r.get(0))?)
    }

    /// Requests refused because the account's concurrency limit was in use.
    pub fn over_limit(&self) -> u64 {
        self.inner.over_limit.load(Ordering::SeqCst)
    }

    /// The largest `offset` any SuiteQL request asked for.
    pub fn max_offset_requested(&self) -> u64 {
        self.inner.max_offset.load(Ordering::SeqCst)
    }

    /// Sets a customer's company name, whatever it held before.
    pub fn rename_customer_any(&self, id: i64, name: &str) -> Result<()> {
        let now = self.inner.clock.now_secs();
        self.touch(
            "UPDATE customer SET companyname = ?1, isperson = 'F', lastmodifieddate = ?2 WHERE id = ?3",
            rusqlite::params![name, now, id],
        )
    }

    /// Any statement against the simulated account (test setup).
    pub fn execute(&self, sql: &str) -> Result<usize> {
        Ok(self.db().execute(sql, [])?)
    }

    pub fn set_customer_phone(&self, id: i64, phone: &str) -> Result<()> {
        let now = self.inner.clock.now_secs();
        self.touch(
            "UPDATE customer SET phone = ?1, lastmodifieddate = ?2 WHERE id = ?3",
            rusqlite::params![phone, now, id],
        )
    }

    /// Customer ids that have a default billing address, ascending.
    pub fn customers_with_billing_address(&self) -> Result<Vec<i64>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT id FROM customer WHERE defaultbillingaddress IS NOT NULL AND isperson = 'F' ORDER BY id",
        )?;
        let ids = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(ids)
    }

    /// One column of one customer, as SuiteQL would return it.
    pub fn customer_field(&self, id: i64, column: &str) -> Result<Option<String>> {
        let page = suiteql::run(&self.db(), &format!("SELECT {column} FROM customer WHERE id = {id}"), 1, 0)
            .map_err(|e| anyhow::anyhow!(e.0))?;
        Ok(page.items.first().and_then(|row| row.get(column)).and_then(Value::as_str).map(str::to_string))
    }
}

#[derive(serde::Deserialize)]
struct PageParams {
    limit: Option<String>,
    offset: Option<String>,
}

async fn suiteql_handler(
    State(sim): State<NetSuiteSim>,
    Query(params): Query<PageParams>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &sim.inner;
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let slot = Slot(&inner.in_flight);
    if inner.in_flight.fetch_add(1, Ordering::SeqCst) >= inner.config.concurrency_limit {
        inner.over_limit.fetch_add(1, Ordering::SeqCst);
        drop(slot);
        return error_body(
            StatusCode::TOO_MANY_REQUESTS,
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Concurrent request limit exceeded. Request blocked.",
        );
    }

    let latency = *inner.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let scripted = inner.scripted_failures.lock().unwrap().pop_front();
    match scripted {
        Some(ScriptedFailure::TooManyRequests) => {
            return error_body(
                StatusCode::TOO_MANY_REQUESTS,
                "CONCURRENCY_LIMIT_EXCEEDED",
                "Concurrent request limit exceeded. Request blocked.",
            );
        }
        Some(ScriptedFailure::InvalidLogin) => return invalid_login(),
        Some(ScriptedFailure::Unexpected) => {
            return error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNEXPECTED_ERROR",
                "An unexpected error occurred. Error ID: sim",
            );
        }
        None => {}
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    if let Err(reason) = sim.authorize(&headers, &path_and_query) {
        inner.login_audit.lock().unwrap().push(format!("SuiteQL request refused: {reason}"));
        return invalid_login();
    }
    if !headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("transient")) {
        return error_body(
            StatusCode::BAD_REQUEST,
            "INVALID_HEADER",
            "SuiteQL queries require the header 'Prefer: transient'.",
        );
    }

    let parse = |name: &str, value: &Option<String>, default: u64| -> Result<u64, String> {
        match value {
            None => Ok(default),
            Some(v) => v.parse::<u64>().map_err(|_| format!("Invalid value for query parameter {name}: {v}.")),
        }
    };
    let (limit, offset) = match (parse("limit", &params.limit, 1000), parse("offset", &params.offset, 0)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err(e), _) | (_, Err(e)) => return error_body(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", &e),
    };
    inner.max_offset.fetch_max(offset, Ordering::SeqCst);
    if !(1..=1000).contains(&limit) {
        return error_body(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            &format!("Invalid value for query parameter limit: {limit}. The value must be between 1 and 1000."),
        );
    }
    if offset % limit != 0 {
        return error_body(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            &format!(
                "Invalid value for query parameter offset: {offset}. The offset must be a multiple of the limit ({limit})."
            ),
        );
    }
    if offset >= suiteql::RESULT_CEILING {
        return error_body(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            &format!(
                "Invalid value for query parameter offset: {offset}. A SuiteQL query returns at most {} results.",
                suiteql::RESULT_CEILING
            ),
        );
    }

    let query = match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("q")?.as_str().map(str::to_string))
    {
        Some(q) => q,
        None => {
            return error_body(
                StatusCode::BAD_REQUEST,
                "INVALID_CONTENT",
                "The request body must be a JSON object with the query in the field 'q'.",
            );
        }
    };
    let denied = inner.denied_tables.lock().unwrap().clone();
    let result = suiteql::run_as_role(&sim.db(), &query, limit, offset, &denied);
    inner.queries.fetch_add(1, Ordering::SeqCst);
    let duration = *inner.query_duration.lock().unwrap();
    inner.clock.advance(duration);
    sim.run_hooks();
    let page = match result {
        Ok(p) => p,
        Err(e) => return error_body_for(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", &e.0, Some("q")),
    };
    let served_total = page.total.min(suiteql::RESULT_CEILING);
    let count = page.items.len() as u64;
    let has_more = offset + count < served_total;
    let link = |off: u64| format!("{}/services/rest/query/v1/suiteql?limit={limit}&offset={off}", sim.base_url());
    let mut links = vec![json!({"rel": "first", "href": link(0)})];
    if offset > 0 {
        links.push(json!({"rel": "prev", "href": link(offset.saturating_sub(limit))}));
    }
    if has_more {
        links.push(json!({"rel": "next", "href": link(offset + limit)}));
    }
    let last = if served_total == 0 { 0 } else { (served_total - 1) / limit * limit };
    links.push(json!({"rel": "last", "href": link(last)}));
    links.push(json!({"rel": "self", "href": link(offset)}));
    let body = json!({
        "links": links,
        "count": count,
        "hasMore": has_more,
        "offset": offset,
        "totalResults": page.total,
        "items": page.items,
    });
    drop(slot);
    let body = suiteql::serialize_page(&body);
    (StatusCode::OK, [("content-type", "application/vnd.oracle.resource+json; type=collection")], body).into_response()
}
