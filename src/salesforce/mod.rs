//! The Salesforce sink: OAuth session handling and upserts by external id.

pub mod auth;
pub mod composite;
pub mod errors;
pub mod limits;

use crate::http::retry::{Action, ApiClient, Backoff, Sent, classify};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, OutcomeKind, Result, SObjectRecord, SalesforceError, UpsertOutcome};
use crate::ports::Host;
use crate::settings::SalesforceSettings;
use auth::Session;
use composite::Chunk;
use limits::ApiUsage;
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

    /// The cached session, from memory or the credentials store, else a new one.
    fn session(&self) -> Result<Session> {
        if let Some(s) = self.session.borrow().as_ref() {
            return Ok(s.clone());
        }
        // An unreadable cached session is as good as none: log in again.
        let cached = self.credential(auth::SESSION_KEY)?.and_then(|b| serde_json::from_slice::<Session>(&b).ok());
        if let Some(s) = cached {
            *self.session.borrow_mut() = Some(s.clone());
            return Ok(s);
        }
        self.login()
    }

    /// Runs the configured grant and caches the session (and a rotated
    /// refresh token) in the credentials store.
    pub fn login(&self) -> Result<Session> {
        let rotated = self.credential(auth::ROTATED_REFRESH_TOKEN_KEY)?.and_then(|b| String::from_utf8(b).ok());
        let request = auth::token_request(&self.settings, rotated.as_deref());
        let response = match self.api.send(&request)? {
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
            store(auth::ROTATED_REFRESH_TOKEN_KEY, token.as_bytes())?;
        }
        store(auth::SESSION_KEY, &serde_json::to_vec(&session).expect("a session serializes"))?;
        *self.session.borrow_mut() = Some(session.clone());
        Ok(session)
    }

    /// Sends an authenticated request; on 401 "Session expired or invalid"
    /// refreshes once and resends, never more.
    fn send(&self, build: impl Fn(&Session) -> HttpRequest) -> Result<HttpResponse> {
        let mut refreshed = false;
        loop {
            let session = self.session()?;
            let request = build(&session).header("Authorization", format!("Bearer {}", session.access_token));
            match self.api.send(&request)? {
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
                        errors::describe(&request.describe(), &response)
                    )));
                }
                Sent::AuthExpired(_) => {
                    refreshed = true;
                    *self.session.borrow_mut() = None;
                    self.login()?;
                }
            }
        }
    }

    /// Upserts by external id through Composite + sObject Collections; one
    /// outcome per record, in input order. Subrequests that failed for a
    /// transient reason are sent again (safe: an upsert by external id lands
    /// on the same record however often it is repeated).
    pub fn upsert(&self, records: &[SObjectRecord]) -> Result<Vec<UpsertOutcome>> {
        let mut outcomes: Vec<Option<UpsertOutcome>> = vec![None; records.len()];
        let mut pending: Vec<Chunk> = composite::chunk(records);
        let mut round = 0u32;
        while !pending.is_empty() {
            let mut retry: Vec<Chunk> = Vec::new();
            for group in pending.chunks(composite::MAX_COLLECTIONS_PER_COMPOSITE) {
                let refs: Vec<&Chunk> = group.iter().collect();
                let body = composite::composite_body(&self.settings.api_version, records, &refs);
                let url_version = self.settings.api_version.clone();
                let response = self.send(|s| {
                    HttpRequest::new(Method::Post, format!("{}/services/data/v{url_version}/composite", s.instance_url))
                        .json(&body)
                })?;
                if !response.is_success() {
                    return Err(ConnectorError::Salesforce(errors::describe("Composite upsert request", &response)));
                }
                let subs = composite::parse_composite(&response.body).map_err(|e| {
                    ConnectorError::Salesforce(format!("Composite upsert answered 200 with an unexpected body ({e})"))
                })?;
                for (i, chunk) in group.iter().enumerate() {
                    let reference = format!("c{i}");
                    let sub = subs.iter().find(|s| s.reference_id == reference);
                    match self.chunk_outcome(records, chunk, sub, round) {
                        ChunkOutcome::Done(list) => {
                            for (&idx, o) in chunk.indices.iter().zip(list) {
                                outcomes[idx] = Some(o);
                            }
                        }
                        ChunkOutcome::Retry => retry.push(chunk.clone()),
                    }
                }
            }
            if !retry.is_empty() {
                self.api.host.clock.sleep(self.api.backoff.delay(round, self.api.host.clock.random()));
            }
            round += 1;
            pending = retry;
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every chunk ends with outcomes")).collect())
    }

    fn chunk_outcome(
        &self,
        records: &[SObjectRecord],
        chunk: &Chunk,
        sub: Option<&composite::SubResponse>,
        round: u32,
    ) -> ChunkOutcome {
        let fail_all = |error: SalesforceError| {
            ChunkOutcome::Done(
                chunk
                    .indices
                    .iter()
                    .map(|&i| UpsertOutcome {
                        external_id: records[i].external_id.clone(),
                        salesforce_id: None,
                        outcome: OutcomeKind::Failed,
                        errors: vec![error.clone()],
                    })
                    .collect(),
            )
        };
        let Some(sub) = sub else {
            return fail_all(SalesforceError {
                status_code: "MISSING_SUBRESPONSE".into(),
                message: "Composite response had no result for this collection".into(),
                fields: vec![],
            });
        };
        let body_bytes = sub.body.to_string().into_bytes();
        if sub.http_status_code == 200 {
            return match composite::outcomes_from_results(records, chunk, &sub.body) {
                Ok(list) => ChunkOutcome::Done(list),
                Err(e) => fail_all(SalesforceError {
                    status_code: "UNEXPECTED_RESPONSE".into(),
                    message: format!("sObject Collections answered 200 with an unexpected body: {e}"),
                    fields: vec![],
                }),
            };
        }
        // The same classifier decides for a subrequest as for a whole request.
        let as_response = HttpResponse { status: sub.http_status_code, headers: vec![], body: body_bytes };
        let transient = matches!(
            classify(errors::RULES, &as_response).map(|r| r.action),
            Some(Action::Retry | Action::RetryFew(_))
        );
        if transient && round < self.api.backoff.max_retries {
            return ChunkOutcome::Retry;
        }
        let errors = errors::parse_errors(&as_response.body).unwrap_or_default();
        fail_all(errors.into_iter().next().unwrap_or(SalesforceError {
            status_code: format!("HTTP_{}", sub.http_status_code),
            message: as_response.snippet(),
            fields: vec![],
        }))
    }
}

enum ChunkOutcome {
    Done(Vec<UpsertOutcome>),
    Retry,
}
