//! The NetSuite simulator: the OAuth 2.0 M2M token endpoint (the assertion's
//! `kid` picks one of the account's certificates, whose key verifies the
//! signature; issuer, audience and lifetime checked), the SuiteQL endpoint
//! (executing queries, enforcing paging rules and the 100,000-row ceiling)
//! and the REST record API for vendors, customers and contacts, all under
//! the account's concurrency limit.

mod auth;
pub mod certificates;
pub mod db;
mod entity;
pub mod errors;
mod record;
pub mod suiteql;
mod tba;
pub mod vendor;

pub use certificates::{CertificateKey, CertificateStatus};
pub use record::Permission;
pub use tba::TbaConfig;
pub use vendor::{VendorMatch, VendorRejection};

use super::SimClock;
use super::seed::Seeder;
use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use certificates::Certificates;
use errors::RestError;
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How many of the latest SuiteQL texts the simulator keeps.
const RECENT_QUERIES: usize = 64;

#[derive(Clone)]
pub struct NetSuiteSimConfig {
    pub account_id: String,
    /// The integration record's client id (the JWT's `iss`).
    pub client_id: String,
    /// The certificate id of the first M2M mapping (a JWT's `kid`); more
    /// are added with [`NetSuiteSim::add_certificate`].
    pub certificate_id: String,
    /// That certificate's public key, PEM (RSA 3072/4096 for PS*, EC P-256
    /// or P-384 for ES256/ES384); empty: the account starts with none.
    pub public_key_pem: String,
    /// Concurrent REST requests the account allows; more get 429.
    pub concurrency_limit: usize,
    pub token_lifetime: Duration,
    /// Token-Based Authentication credentials the account accepts, if any.
    pub tba: Option<TbaConfig>,
}

type Hook = Box<dyn FnOnce(&NetSuiteSim) + Send>;

/// An access token the token endpoint issued.
struct IssuedToken {
    /// Simulated Unix seconds.
    expires_at: i64,
    /// The certificate the assertion was signed under: revoking or removing
    /// it ends the token too.
    certificate_id: String,
    /// The scopes granted (those the assertion asked for).
    scopes: Vec<String>,
}

struct Inner {
    config: NetSuiteSimConfig,
    clock: SimClock,
    db: Mutex<Connection>,
    /// The integration user's time zone, seconds east of UTC.
    zone: db::UserZone,
    certificates: Mutex<Certificates>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    base_url: OnceLock<String>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    token_requests: AtomicU64,
    queries: AtomicU64,
    /// The latest SuiteQL texts, oldest first (at most [`RECENT_QUERIES`]).
    recent_queries: Mutex<std::collections::VecDeque<String>>,
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
    scripted_failures: Mutex<VecDeque<ScriptedFailure>>,
    /// Answers to give queries whose text holds a string, and how many times.
    query_failures: Mutex<Vec<(String, ScriptedFailure, usize)>>,
    /// Answers to give the next record API requests.
    record_failures: Mutex<VecDeque<ScriptedFailure>>,
    /// As `record_failures`, for writes only (reads pass).
    write_failures: Mutex<VecDeque<ScriptedFailure>>,
    record_requests: AtomicU64,
    /// Record writes (creates, updates, deletes) that succeeded.
    record_writes: AtomicU64,
    /// The role's permission per record type (`vendor`, ...); Full unless set.
    record_permissions: Mutex<HashMap<String, Permission>>,
    vendor_rejections: Mutex<Vec<VendorRejection>>,
    /// OneWorld: every entity needs a (primary) subsidiary.
    one_world: AtomicBool,
    /// An upsert's Location names the record by its external id.
    upsert_location_by_eid: AtomicBool,
    /// At most this many rows per SuiteQL page whatever `limit` asks (0: as
    /// asked): a page may hold fewer rows than its limit while `hasMore` is
    /// true, and clients go on from `offset + count`.
    page_rows: AtomicU64,
}

/// A failure the simulator answers a request with, as NetSuite would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptedFailure {
    /// 429: the account's concurrency limit is in use.
    TooManyRequests,
    /// 401 INVALID_LOGIN that a retry clears (concurrency pressure).
    InvalidLogin,
    /// 500 UNEXPECTED_ERROR.
    Unexpected,
    /// 500 UNEXPECTED_ERROR after the request was applied (a record write
    /// that landed while its answer failed).
    UnexpectedAfterApplying,
}

/// A running simulator; clones share it.
#[derive(Clone)]
pub struct NetSuiteSim {
    inner: Arc<Inner>,
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
        let mut certificates = Certificates::default();
        if !config.public_key_pem.trim().is_empty() {
            certificates.add(&config.certificate_id, &config.public_key_pem)?;
        }
        let zone = db::UserZone::default();
        let sim = NetSuiteSim {
            inner: Arc::new(Inner {
                config,
                clock,
                db: Mutex::new(db::open_in(&zone)?),
                zone,
                certificates: Mutex::new(certificates),
                tokens: Mutex::new(HashMap::new()),
                base_url: OnceLock::new(),
                in_flight: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                token_requests: AtomicU64::new(0),
                queries: AtomicU64::new(0),
                recent_queries: Mutex::default(),
                max_offset: AtomicU64::new(0),
                over_limit: AtomicU64::new(0),
                page_rows: AtomicU64::new(0),
                login_audit: Mutex::new(Vec::new()),
                used_nonces: Mutex::new(Default::default()),
                query_duration: Mutex::new(Duration::ZERO),
                latency: Mutex::new(Duration::ZERO),
                hooks: Mutex::new(Vec::new()),
                denied_tables: Mutex::new(Vec::new()),
                scripted_failures: Mutex::new(Default::default()),
                query_failures: Mutex::new(Vec::new()),
                record_failures: Mutex::new(Default::default()),
                write_failures: Mutex::new(Default::default()),
                record_requests: AtomicU64::new(0),
                record_writes: AtomicU64::new(0),
                record_permissions: Mutex::new(HashMap::new()),
                vendor_rejections: Mutex::new(Vec::new()),
                one_world: AtomicBool::new(true),
                upsert_location_by_eid: AtomicBool::new(false),
            }),
        };
        let router = Router::new()
            .route("/services/rest/auth/oauth2/v1/token", post(auth::token))
            .route("/services/rest/query/v1/suiteql", post(suiteql_handler).fallback(suiteql_wrong_method))
            .route("/services/rest/record/v1/{*rest}", any(record::handler))
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

    /// Revokes every access token issued so far, as an administrator
    /// revoking the integration's tokens does: requests bearing one answer
    /// 401 until a new token is obtained.
    pub fn revoke_tokens(&self) {
        self.inner.tokens.lock().unwrap().clear();
    }

    /// Why logins were refused, newest last (NetSuite's Login Audit Trail).
    pub fn login_audit(&self) -> Vec<String> {
        self.inner.login_audit.lock().unwrap().clone()
    }

    /// SuiteQL pages from now on hold at most `rows` rows whatever their
    /// `limit` (0: as many as asked), with `hasMore` true while rows remain
    /// and a `next` link at `offset + count`, which is then accepted though
    /// not a multiple of `limit`.
    pub fn set_page_rows(&self, rows: u64) {
        self.inner.page_rows.store(rows, Ordering::Relaxed);
    }

    /// Each SuiteQL request from now on moves simulated time forward by `d`.
    pub fn set_query_duration(&self, d: Duration) {
        *self.inner.query_duration.lock().unwrap() = d;
    }

    /// Each SuiteQL and record API request from now on takes `d` of real
    /// time (holding a concurrency slot).
    pub fn set_latency(&self, d: Duration) {
        *self.inner.latency.lock().unwrap() = d;
    }

    /// Sets the integration user's time zone preference to a fixed offset,
    /// `secs` east of UTC: SuiteQL's TO_CHAR, TO_TIMESTAMP/TO_DATE literals
    /// and raw datetime columns are in it from now on, while the record
    /// API's `lastModifiedDate` stays ISO 8601 UTC (reference section 3,
    /// "Time zone").
    pub fn set_user_time_zone(&self, secs: i64) {
        let db = self.db();
        self.inner.zone.store(secs, Ordering::Relaxed);
        // Indexes on TO_CHAR(...) hold the old zone's text: rebuilt, or the
        // next edit of a row finds no index entry for its old key.
        db.execute_batch("REINDEX").expect("the simulator's tables reindex");
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

    /// The next `times` SuiteQL queries whose text contains `text` are
    /// answered with `failure`; other queries run.
    pub fn fail_queries_containing(&self, text: &str, failure: ScriptedFailure, times: usize) {
        self.inner.query_failures.lock().unwrap().push((text.to_string(), failure, times));
    }

    /// How many of the failures scripted for queries containing `text` are
    /// still to be given.
    pub fn query_failures_left(&self, text: &str) -> usize {
        self.inner.query_failures.lock().unwrap().iter().filter(|(t, _, _)| t == text).map(|(_, _, n)| n).sum()
    }

    /// The failure scripted for this query's text, if any (counted down).
    fn query_failure(&self, body: &[u8]) -> Option<ScriptedFailure> {
        let mut failures = self.inner.query_failures.lock().unwrap();
        if failures.is_empty() {
            return None;
        }
        let q = serde_json::from_slice::<serde_json::Value>(body).ok()?;
        let q = q.get("q")?.as_str()?;
        let (_, failure, times) =
            failures.iter_mut().find(|(text, _, times)| *times > 0 && q.contains(text.as_str()))?;
        *times -= 1;
        Some(*failure)
    }

    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::SeqCst)
    }

    /// The latest SuiteQL queries received, oldest first (for tests of how a
    /// client reads).
    pub fn recent_queries(&self) -> Vec<String> {
        self.inner.recent_queries.lock().unwrap().iter().cloned().collect()
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

    /// Takes one of the account's concurrent-request slots for the life of
    /// a request; None when all are in use (the request gets 429).
    fn take_slot(&self) -> Option<Slot<'_>> {
        let inner = &self.inner;
        let slot = Slot(&inner.in_flight);
        if inner.in_flight.fetch_add(1, Ordering::SeqCst) >= inner.config.concurrency_limit {
            inner.over_limit.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        Some(slot)
    }

    async fn wait_latency(&self) {
        let latency = *self.inner.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// Checks the Authorization header: an M2M bearer token (whose
    /// certificate is still mapped) or a TBA signature over `method` and URL.
    fn authorize(&self, method: &str, headers: &HeaderMap, path_and_query: &str) -> Result<(), String> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let now = self.inner.clock.now_secs();
        if let Some(token) = header.strip_prefix("Bearer ") {
            let tokens = self.inner.tokens.lock().unwrap();
            let Some(issued) = tokens.get(token).filter(|t| now < t.expires_at) else {
                return Err("missing, unknown or expired access token".into());
            };
            // Only the rest_webservices scope opens REST web services (SuiteQL included).
            if !issued.scopes.iter().any(|s| s == "rest_webservices") {
                return Err(format!(
                    "the access token was granted the scopes {:?}, without rest_webservices",
                    issued.scopes
                ));
            }
            let certificates = self.inner.certificates.lock().unwrap_or_else(|p| p.into_inner());
            return match certificates.usable(&issued.certificate_id, now) {
                Ok(_) => Ok(()),
                Err(why) => Err(format!(
                    "the access token was issued under certificate {:?}, which is now {why:?}",
                    issued.certificate_id
                )),
            };
        }
        let Some(tba) = &self.inner.config.tba else {
            return Err("no supported credentials in the Authorization header".into());
        };
        let params = tba::parse_header(header).ok_or("malformed OAuth header")?;
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let url = format!("{}{path}", self.base_url());
        let request = tba::SignedRequest { method, base_url: &url, query, now };
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
        Ok(page.items().first().and_then(|row| row.get(column)).and_then(Value::as_str).map(str::to_string))
    }
}

/// The account's M2M certificate mappings (OAuth 2.0 Client Credentials Setup).
impl NetSuiteSim {
    /// Maps another certificate: its public key (PEM) verifies assertions
    /// whose `kid` is `certificate_id`. Refused like NetSuite refuses an
    /// upload: a key other than RSA 3072/4096 or EC P-256/P-384, an id or a
    /// key already mapped.
    pub fn add_certificate(&self, certificate_id: &str, public_key_pem: &str) -> Result<()> {
        self.certificates().add(certificate_id, public_key_pem)
    }

    /// Revokes a certificate: it stays listed; assertions naming it, and
    /// tokens issued under it, are refused from now on.
    pub fn revoke_certificate(&self, certificate_id: &str) -> Result<()> {
        self.certificates().revoke(certificate_id)
    }

    /// Deletes a certificate's mapping.
    pub fn remove_certificate(&self, certificate_id: &str) -> Result<()> {
        self.certificates().remove(certificate_id)
    }

    /// The certificate stops working at `at` (simulated Unix seconds; None: never).
    pub fn set_certificate_expiry(&self, certificate_id: &str, at: Option<i64>) -> Result<()> {
        self.certificates().set_expiry(certificate_id, at)
    }

    /// The mappings, as the setup page lists them (revoked ones included).
    pub fn certificate_list(&self) -> Vec<CertificateStatus> {
        self.certificates().list()
    }

    fn certificates(&self) -> std::sync::MutexGuard<'_, Certificates> {
        self.inner.certificates.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The REST record API's vendors, for tests and the harness.
impl NetSuiteSim {
    pub fn vendor_count(&self) -> Result<i64> {
        Ok(self.db().query_row("SELECT COUNT(*) FROM vendor", [], |r| r.get(0))?)
    }

    /// A vendor as `GET /record/v1/vendor/{id}?expandSubResources=true`
    /// answers it (without the request), None if there is none.
    pub fn vendor(&self, id: i64) -> Result<Option<Value>> {
        let base = format!("{}/services/rest/record/v1", self.base_url());
        Ok(vendor::render(&self.db(), &vendor::VENDOR, id, &vendor::Links(&base), true)?.map(Value::Object))
    }

    /// The internal id of the vendor with this external id.
    pub fn vendor_id_by_external_id(&self, external_id: &str) -> Result<Option<i64>> {
        Ok(vendor::find(&self.db(), &vendor::VENDOR, &vendor::RecordId::External(external_id.to_string()))?)
    }

    /// One column of one vendor, as SuiteQL returns it.
    pub fn vendor_field(&self, id: i64, column: &str) -> Result<Option<String>> {
        let page = suiteql::run(&self.db(), &format!("SELECT {column} FROM vendor WHERE id = {id}"), 1, 0)
            .map_err(|e| anyhow::anyhow!(e.0))?;
        Ok(page.items().first().and_then(|row| row.get(column)).and_then(Value::as_str).map(str::to_string))
    }

    /// Record API requests served (all methods, refused ones included).
    pub fn record_requests(&self) -> u64 {
        self.inner.record_requests.load(Ordering::SeqCst)
    }

    /// Record writes (creates, updates, upserts, deletes) that succeeded.
    pub fn record_writes(&self) -> u64 {
        self.inner.record_writes.load(Ordering::SeqCst)
    }

    /// Vendor writes matching `rejection` fail with 400 USER_ERROR and its
    /// message, as a user event script or workflow validation makes them.
    pub fn reject_vendor_writes(&self, rejection: VendorRejection) {
        self.inner.vendor_rejections.lock().unwrap().push(rejection);
    }

    pub fn clear_vendor_rejections(&self) {
        self.inner.vendor_rejections.lock().unwrap().clear();
    }

    /// The next record API requests are answered with these failures, in order.
    pub fn fail_next_record_requests(&self, failures: &[ScriptedFailure]) {
        self.inner.record_failures.lock().unwrap().extend(failures.iter().copied());
    }

    /// As [`NetSuiteSim::fail_next_record_requests`], for the next record
    /// writes (POST, PUT, PATCH, DELETE); reads pass.
    pub fn fail_next_record_writes(&self, failures: &[ScriptedFailure]) {
        self.inner.write_failures.lock().unwrap().extend(failures.iter().copied());
    }

    /// The integration role's permission on vendors (default Full).
    pub fn set_vendor_permission(&self, level: Permission) {
        self.set_record_permission("vendor", level);
    }

    /// The integration role's permission on a record type the record API
    /// serves (`vendor`, `customer`, `contact`; default Full).
    pub fn set_record_permission(&self, record_type: &str, level: Permission) {
        self.inner.record_permissions.lock().unwrap().insert(record_type.to_string(), level);
    }

    fn record_permission(&self, record_type: &str) -> Permission {
        self.inner.record_permissions.lock().unwrap().get(record_type).copied().unwrap_or(Permission::Full)
    }

    /// Whether the account is OneWorld, where a new vendor, customer or
    /// contact needs a subsidiary (default true).
    pub fn set_one_world(&self, one_world: bool) {
        self.inner.one_world.store(one_world, Ordering::SeqCst);
    }

    /// Whether an upsert (`PUT …/eid:<id>`) answers with a Location naming
    /// the record by that external id instead of its internal id (default
    /// false). The reference documents the Location of a create only; a
    /// client must find the record either way.
    pub fn set_upsert_location_by_external_id(&self, on: bool) {
        self.inner.upsert_location_by_eid.store(on, Ordering::SeqCst);
    }
}

#[derive(serde::Deserialize)]
struct PageParams {
    limit: Option<String>,
    offset: Option<String>,
}

/// SuiteQL is POST only: anything else gets 405 in NetSuite's error shape.
async fn suiteql_wrong_method(State(sim): State<NetSuiteSim>, method: axum::http::Method) -> Response {
    sim.inner.requests.fetch_add(1, Ordering::SeqCst);
    record::method_not_allowed(&method, "POST")
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
    let Some(slot) = sim.take_slot() else {
        return RestError::too_many_requests().into_response();
    };
    sim.wait_latency().await;
    let scripted = inner.scripted_failures.lock().unwrap().pop_front();
    if let Some(failure) = scripted.or_else(|| sim.query_failure(&body)) {
        return failure.answer().into_response();
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    if let Err(reason) = sim.authorize("POST", &headers, &path_and_query) {
        inner.login_audit.lock().unwrap().push(format!("SuiteQL request refused: {reason}"));
        return RestError::invalid_login().into_response();
    }
    if !headers.get("prefer").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("transient")) {
        return RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_HEADER",
            "SuiteQL queries require the header 'Prefer: transient'.",
        )
        .at_header("Prefer")
        .into_response();
    }

    let parse = |name: &str, value: &Option<String>, default: u64| -> Result<u64, (String, String)> {
        match value {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| (name.to_string(), format!("Invalid value for query parameter {name}: {v}."))),
        }
    };
    let (limit, offset) = match (parse("limit", &params.limit, 1000), parse("offset", &params.offset, 0)) {
        (Ok(l), Ok(o)) => (l, o),
        (Err((param, e)), _) | (_, Err((param, e))) => {
            return RestError::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", e)
                .at_query_param(param)
                .into_response();
        }
    };
    inner.max_offset.fetch_max(offset, Ordering::SeqCst);
    if !(1..=1000).contains(&limit) {
        return RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!("Invalid value for query parameter limit: {limit}. The value must be between 1 and 1000."),
        )
        .at_query_param("limit")
        .into_response();
    }
    // Short pages (a test knob) put `offset + count` in their `next` link,
    // the peers' rule: that offset is then followable too.
    if offset % limit != 0 && inner.page_rows.load(Ordering::Relaxed) == 0 {
        return RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!(
                "Invalid value for query parameter offset: {offset}. The offset must be a multiple of the limit ({limit})."
            ),
        )
        .at_query_param("offset")
        .into_response();
    }
    let ceiling = suiteql::result_ceiling(limit);
    if offset >= ceiling {
        return RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!(
                "Invalid value for query parameter offset: {offset}. A SuiteQL query returns at most {ceiling} \
                 results ({} pages of {limit}, and at most {} rows in all).",
                suiteql::PAGE_CEILING,
                suiteql::RESULT_CEILING
            ),
        )
        .at_query_param("offset")
        .into_response();
    }

    let query = match serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("q")?.as_str().map(str::to_string))
    {
        Some(q) => q,
        None => {
            return RestError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_CONTENT",
                "The request body must be a JSON object with the query in the field 'q'.",
            )
            .into_response();
        }
    };
    let denied = inner.denied_tables.lock().unwrap().clone();
    let zone = inner.zone.load(Ordering::Relaxed);
    let served = match inner.page_rows.load(Ordering::Relaxed) {
        0 => limit,
        rows => rows.min(limit),
    };
    let at = suiteql::Evaluation { zone, now: inner.clock.now_secs() };
    let result = suiteql::run_as_role(&sim.db(), &query, served, offset, &denied, at);
    inner.queries.fetch_add(1, Ordering::SeqCst);
    {
        let mut recent = inner.recent_queries.lock().unwrap();
        if recent.len() == RECENT_QUERIES {
            recent.pop_front();
        }
        recent.push_back(query);
    }
    let duration = *inner.query_duration.lock().unwrap();
    inner.clock.advance(duration);
    sim.run_hooks();
    let page = match result {
        Ok(p) => p,
        Err(e) => {
            return RestError::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", e.0)
                .at_query_param("q")
                .into_response();
        }
    };
    let served_total = page.total.min(ceiling);
    let count = page.count;
    let has_more = offset + count < served_total;
    let link = |off: u64| format!("{}/services/rest/query/v1/suiteql?limit={limit}&offset={off}", sim.base_url());
    let mut links = vec![json!({"rel": "first", "href": link(0)})];
    if offset > 0 {
        links.push(json!({"rel": "prev", "href": link(offset.saturating_sub(limit))}));
    }
    if has_more {
        links.push(json!({"rel": "next", "href": link(offset + count)}));
    }
    let last = if served_total == 0 { 0 } else { (served_total - 1) / limit * limit };
    links.push(json!({"rel": "last", "href": link(last)}));
    links.push(json!({"rel": "self", "href": link(offset)}));
    // The rows are JSON text already: the envelope is written around them.
    let mut body = format!(
        r#"{{"links":{},"count":{count},"hasMore":{has_more},"offset":{offset},"totalResults":{},"items":"#,
        Value::Array(links),
        page.total,
    );
    body.reserve_exact(page.items_json.len() + 1);
    body.push_str(&page.items_json);
    body.push('}');
    drop(slot);
    let body = suiteql::serialize_page(body);
    (StatusCode::OK, [("content-type", "application/vnd.oracle.resource+json; type=collection")], body).into_response()
}
