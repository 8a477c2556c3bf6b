//! The Salesforce sink: OAuth session handling and upserts by external id.

pub mod auth;
pub mod bulk;
pub mod composite;
pub mod describe;
pub mod errors;
pub mod limits;
pub mod soql;

use crate::http::retry::{Action, ApiClient, Backoff, Sent, classify};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, OutcomeKind, Result, SObjectRecord, SalesforceError, UpsertOutcome};
use crate::ports::Host;
use crate::settings::SalesforceSettings;
use auth::Session;
use limits::ApiUsage;
use serde_json::Value;
use std::cell::{Cell, RefCell};

pub struct SalesforceSink<'h> {
    api: ApiClient<'h>,
    settings: SalesforceSettings,
    session: RefCell<Option<Session>>,
    usage: Cell<Option<ApiUsage>>,
}

impl<'h> SalesforceSink<'h> {
    pub fn new(host: &'h Host<'h>, settings: SalesforceSettings, backoff: Backoff) -> Self {
        SalesforceSink {
            api: ApiClient::new(host, "Salesforce", errors::RULES, backoff),
            settings,
            session: RefCell::new(None),
            usage: Cell::new(None),
        }
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
        Ok(session)
    }

    /// Sends an authenticated request; on 401 "Session expired or invalid"
    /// refreshes once and resends, never more.
    fn send(&self, build: impl Fn(&Session) -> HttpRequest) -> Result<HttpResponse> {
        self.check_quota()?;
        let mut refreshed = false;
        loop {
            let sent = self.api.send(&|| {
                let session = self.session()?;
                Ok(build(&session).header("Authorization", format!("Bearer {}", session.access_token)))
            })?;
            match sent {
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
                    // The same login now reaches another org (a refreshed sandbox):
                    // the records this run planned against the old one do not apply.
                    if let Some(before) = before.filter(|b| *b != after) {
                        return Err(ConnectorError::Config(format!(
                            "the Salesforce org behind `salesforce_login_url` changed during the run (from {before} \
                             to {after}, e.g. a sandbox refresh); the run stopped, and the next run writes every \
                             record to the new org"
                        )));
                    }
                }
            }
        }
    }

    /// Stops before the org's daily allocation reaches the configured share,
    /// leaving room for the org's other integrations and users.
    fn check_quota(&self) -> Result<()> {
        let Some(usage) = self.usage.get() else { return Ok(()) };
        let ceiling = (usage.limit as f64 * self.settings.max_api_share).floor() as u64;
        if usage.limit > 0 && usage.used >= ceiling {
            return Err(ConnectorError::RateLimited(format!(
                "Salesforce API usage is {}/{} ({:.0}%), at the ceiling of {:.0}% set by `salesforce_max_api_share`. \
                 The run stopped before using more and kept its cursor; it resumes when usage falls or the \
                 ceiling is raised",
                usage.used,
                usage.limit,
                usage.used as f64 * 100.0 / usage.limit as f64,
                self.settings.max_api_share * 100.0
            )));
        }
        Ok(())
    }

    /// The live records carrying these external ids, as the connector would
    /// write them (relationships as `{field: parent external id}`), by
    /// external id. Pages through `nextRecordsUrl`.
    pub fn live_records(
        &self,
        spec: &crate::mapping::TargetSpec,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, serde_json::Map<String, Value>>> {
        let ext = crate::mapping::EXTERNAL_ID_FIELD;
        let mut fields: Vec<String> = spec.fields.clone();
        for link in &spec.relationships {
            fields.push(link.field.clone());
            fields.push(format!("{}.{ext}", link.relationship));
        }
        let version = self.settings.api_version.clone();
        let mut found = std::collections::HashMap::new();
        // 200 ids keep the URL far below Salesforce's 16,384-byte limit.
        for group in ids.chunks(200) {
            let query = soql::select_in(&spec.sobject, &fields, ext, group);
            let mut next: Option<String> = None;
            loop {
                let path = match &next {
                    Some(url) => url.clone(),
                    None => format!(
                        "/services/data/v{version}/query?{}",
                        form_urlencoded::Serializer::new(String::new()).append_pair("q", &query).finish()
                    ),
                };
                let response = self.send(|s| HttpRequest::new(Method::Get, format!("{}{path}", s.instance_url)))?;
                if !response.is_success() {
                    return Err(ConnectorError::Salesforce(errors::describe(
                        &format!("SOQL read of live {} records", spec.sobject),
                        &response,
                    )));
                }
                let body: Value = serde_json::from_slice(&response.body)
                    .map_err(|e| ConnectorError::Salesforce(format!("SOQL answered with an unexpected body ({e})")))?;
                for record in body["records"].as_array().into_iter().flatten() {
                    let Some(obj) = record.as_object() else { continue };
                    let mut clean = serde_json::Map::new();
                    for (k, v) in obj.iter().filter(|(k, _)| *k != "attributes" && *k != "Id") {
                        let value = match v {
                            Value::Object(parent) => {
                                let mut p = parent.clone();
                                p.remove("attributes");
                                Value::Object(p)
                            }
                            other => other.clone(),
                        };
                        clean.insert(k.clone(), value);
                    }
                    if let Some(key) = clean.get(ext).and_then(Value::as_str).map(str::to_string) {
                        found.insert(key, clean);
                    }
                }
                match (body["done"].as_bool(), body["nextRecordsUrl"].as_str()) {
                    (Some(false), Some(url)) => next = Some(url.to_string()),
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// Fails before any write if the object cannot take what the mapping
    /// writes. A passed check is remembered for `describe_ttl_secs` unless
    /// `remember` is off (dry runs write nothing).
    pub fn validate(&self, spec: &crate::mapping::TargetSpec, extra: &[&str], remember: bool) -> Result<()> {
        let key = format!("describe/{}", spec.sobject);
        // A check passed in one org says nothing about another.
        let fingerprint = format!("{}{:?}{:?}", self.org()?, spec, extra);
        let now = self.api.host.clock.now_unix();
        let cached =
            self.api.host.state.get(&key).ok().flatten().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(c) = cached {
            let fresh = c["checked_at"].as_i64().is_some_and(|t| now - t < self.settings.describe_ttl_secs);
            if fresh && c["fingerprint"].as_str() == Some(fingerprint.as_str()) {
                return Ok(());
            }
        }
        let version = &self.settings.api_version;
        let response = self.send(|s| {
            HttpRequest::new(
                Method::Get,
                format!("{}/services/data/v{version}/sobjects/{}/describe", s.instance_url, spec.sobject),
            )
        })?;
        if !response.is_success() {
            return Err(ConnectorError::Config(errors::describe(
                &format!("Describe of {} (is the object deployed and visible to the integration user?)", spec.sobject),
                &response,
            )));
        }
        let described: describe::Describe = serde_json::from_slice(&response.body).map_err(|e| {
            ConnectorError::Salesforce(format!("describe of {} answered with an unexpected body ({e})", spec.sobject))
        })?;
        let problems = describe::check(&described, spec, extra, crate::mapping::EXTERNAL_ID_FIELD);
        if !problems.is_empty() {
            return Err(ConnectorError::Config(format!(
                "Salesforce cannot take what the mapping writes, so nothing was written: {}",
                problems.join("; ")
            )));
        }
        if !remember {
            return Ok(());
        }
        let stamp = serde_json::json!({ "checked_at": now, "fingerprint": fingerprint }).to_string();
        self.api
            .host
            .state
            .set(&key, stamp.as_bytes())
            .map_err(|e| ConnectorError::Transport(format!("could not save `{key}` to the state store: {e}")))
    }

    /// Sends Collections subrequests five to a Composite request (one
    /// counted API call each). Subrequests that failed for a transient
    /// reason are sent again, judged by the same classifier as whole
    /// requests; upserts and deletes by id are safe to repeat.
    fn composite_all(&self, subrequests: &[Value]) -> Result<Vec<composite::SubResponse>> {
        let mut answers: Vec<Option<composite::SubResponse>> = (0..subrequests.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..subrequests.len()).collect();
        let version = self.settings.api_version.clone();
        let mut round = 0u32;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            for group in pending.chunks(composite::MAX_COLLECTIONS_PER_COMPOSITE) {
                let body = composite::composite_body(group.iter().map(|&i| &subrequests[i]));
                let response = self.send(|s| {
                    HttpRequest::new(Method::Post, format!("{}/services/data/v{version}/composite", s.instance_url))
                        .json(&body)
                })?;
                if !response.is_success() {
                    return Err(ConnectorError::Salesforce(errors::describe("Composite request", &response)));
                }
                let mut subs = composite::parse_composite(&response.body).map_err(|e| {
                    ConnectorError::Salesforce(format!("Composite answered 200 with an unexpected body ({e})"))
                })?;
                for (n, &i) in group.iter().enumerate() {
                    let reference = composite::reference_id(n);
                    let Some(pos) = subs.iter().position(|s| s.reference_id == reference) else {
                        return Err(ConnectorError::Salesforce(format!(
                            "Composite response has no result for subrequest {reference}"
                        )));
                    };
                    let sub = subs.swap_remove(pos);
                    let as_response = HttpResponse {
                        status: sub.http_status_code,
                        headers: vec![],
                        body: sub.body.to_string().into_bytes(),
                    };
                    let transient = matches!(
                        classify(errors::RULES, &as_response).map(|r| r.action),
                        Some(Action::Retry | Action::RetryFew(_))
                    );
                    if transient && round < self.api.backoff.max_retries {
                        retry.push(i);
                    }
                    answers[i] = Some(sub);
                }
            }
            if !retry.is_empty() {
                self.api.host.clock.sleep(self.api.backoff.delay(round, self.api.host.clock.random()));
            }
            round += 1;
            pending = retry;
        }
        Ok(answers.into_iter().map(|a| a.expect("every subrequest was answered")).collect())
    }

    /// Upserts by external id; one outcome per record, in input order.
    pub fn upsert(&self, records: &[SObjectRecord]) -> Result<Vec<UpsertOutcome>> {
        let chunks = composite::chunk(records);
        let subrequests: Vec<Value> =
            chunks.iter().map(|c| composite::upsert_subrequest(&self.settings.api_version, records, c)).collect();
        let answers = self.composite_all(&subrequests)?;
        let mut outcomes: Vec<Option<UpsertOutcome>> = vec![None; records.len()];
        for (chunk, sub) in chunks.iter().zip(answers) {
            let keys: Vec<&str> = chunk.indices.iter().map(|&i| records[i].external_id.as_str()).collect();
            for (&i, o) in chunk.indices.iter().zip(composite::outcomes(&keys, &sub, true)) {
                outcomes[i] = Some(o);
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every chunk ends with outcomes")).collect())
    }

    /// Upserts through Bulk API 2.0: one job per upload-sized group; one
    /// outcome per record, in input order, matched by external id.
    pub fn bulk_upsert(&self, records: &[SObjectRecord]) -> Result<Vec<UpsertOutcome>> {
        let mut outcomes: Vec<Option<UpsertOutcome>> = vec![None; records.len()];
        for group in bulk::jobs(records, self.settings.bulk_max_upload_bytes) {
            let refs: Vec<&SObjectRecord> = group.iter().map(|&i| &records[i]).collect();
            for (&i, o) in group.iter().zip(self.run_bulk_job(&refs)?) {
                outcomes[i] = Some(o);
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every record is in one job")).collect())
    }

    fn bulk_call(&self, what: &str, build: impl Fn(&Session) -> HttpRequest) -> Result<HttpResponse> {
        let response = self.send(build)?;
        if !response.is_success() {
            return Err(ConnectorError::Salesforce(errors::describe(what, &response)));
        }
        Ok(response)
    }

    fn run_bulk_job(&self, records: &[&SObjectRecord]) -> Result<Vec<UpsertOutcome>> {
        let (sobject, ext) = (records[0].sobject.as_str(), records[0].external_id_field.as_str());
        let version = &self.settings.api_version;
        let jobs = |s: &Session| format!("{}/services/data/v{version}/jobs/ingest", s.instance_url);
        let created = self.bulk_call(&format!("Bulk API 2.0 job creation for {sobject}"), |s| {
            HttpRequest::new(Method::Post, jobs(s)).json(&bulk::create_job_body(sobject, ext))
        })?;
        let job: Value = serde_json::from_slice(&created.body).unwrap_or_default();
        let Some(id) = job["id"].as_str().map(str::to_string) else {
            return Err(ConnectorError::Salesforce(format!(
                "Bulk API 2.0 created a job without an id: {}",
                created.snippet()
            )));
        };
        let data = bulk::csv(records);
        self.bulk_call(&format!("Bulk API 2.0 upload to job {id}"), |s| {
            HttpRequest::new(Method::Put, format!("{}/{id}/batches", jobs(s))).body("text/csv", data.clone())
        })?;
        self.bulk_call(&format!("closing Bulk API 2.0 job {id}"), |s| {
            HttpRequest::new(Method::Patch, format!("{}/{id}", jobs(s)))
                .json(&serde_json::json!({"state": "UploadComplete"}))
        })?;

        // Poll with a growing interval; a job that outlives the timeout keeps
        // running in Salesforce, and the next run writes the same records
        // again, which an upsert by external id makes harmless.
        let clock = self.api.host.clock;
        let started = clock.now_unix();
        let mut interval = std::time::Duration::from_millis(250);
        let state = loop {
            let info = self.bulk_call(&format!("polling Bulk API 2.0 job {id}"), |s| {
                HttpRequest::new(Method::Get, format!("{}/{id}", jobs(s)))
            })?;
            let info: Value = serde_json::from_slice(&info.body).unwrap_or_default();
            let state = info["state"].as_str().unwrap_or_default().to_string();
            match state.as_str() {
                "JobComplete" | "Failed" => break (state, info["errorMessage"].as_str().map(str::to_string)),
                "Aborted" => {
                    return Err(ConnectorError::Salesforce(format!(
                        "Bulk API 2.0 job {id} for {sobject} was aborted in Salesforce; its records are written again next run"
                    )));
                }
                _ => {}
            }
            if clock.now_unix() - started > self.settings.bulk_poll_timeout_secs {
                return Err(ConnectorError::Salesforce(format!(
                    "Bulk API 2.0 job {id} for {sobject} is still {state} after {} s \
                     (salesforce_bulk_poll_timeout_secs); it keeps running in Salesforce and the run kept its cursor",
                    self.settings.bulk_poll_timeout_secs
                )));
            }
            clock.sleep(interval);
            interval = (interval * 3 / 2).min(std::time::Duration::from_secs(10));
        };
        let result = |name: &str| {
            let path = format!("{id}/{name}/");
            self.bulk_call(&format!("reading {name} of Bulk API 2.0 job {id}"), |s| {
                HttpRequest::new(Method::Get, format!("{}/{path}", jobs(s))).header("Accept", "text/csv")
            })
            .map(|r| r.body)
        };
        let (ok, failed, unprocessed) =
            (result("successfulResults")?, result("failedResults")?, result("unprocessedrecords")?);
        let mut outcomes = bulk::outcomes(records, ext, &ok, &failed, &unprocessed).map_err(|e| {
            ConnectorError::Salesforce(format!("the results of Bulk API 2.0 job {id} could not be read: {e}"))
        })?;
        if let (_, Some(message)) = &state {
            for o in outcomes.iter_mut().filter(|o| o.errors.iter().any(|e| e.status_code == "UNPROCESSED")) {
                o.errors[0].message = format!("{} (job failed: {message})", o.errors[0].message);
            }
        }
        Ok(outcomes)
    }

    /// Deletes records by Salesforce id; one outcome per id, in input order.
    /// An empty id (never written) fails without a request.
    pub fn delete(&self, ids: &[String]) -> Result<Vec<UpsertOutcome>> {
        let known: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !id.is_empty()).collect();
        let groups: Vec<&[&str]> = known.chunks(composite::MAX_RECORDS_PER_COLLECTION).collect();
        let subrequests: Vec<Value> =
            groups.iter().map(|g| composite::delete_subrequest(&self.settings.api_version, g)).collect();
        let answers = self.composite_all(&subrequests)?;
        let mut by_id = std::collections::HashMap::new();
        for (group, sub) in groups.iter().zip(answers) {
            for (id, o) in group.iter().zip(composite::outcomes(group, &sub, false)) {
                by_id.insert(*id, o);
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                by_id.remove(id.as_str()).unwrap_or_else(|| UpsertOutcome {
                    external_id: id.clone(),
                    salesforce_id: None,
                    outcome: OutcomeKind::Failed,
                    errors: vec![SalesforceError {
                        status_code: "NO_SALESFORCE_ID".into(),
                        message: "the connector holds no Salesforce id for this record".into(),
                        fields: vec![],
                    }],
                })
            })
            .collect())
    }
}
