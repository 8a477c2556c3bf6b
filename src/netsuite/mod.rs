//! The NetSuite source: M2M authentication and SuiteQL reads.

pub mod auth;
pub mod errors;
pub mod suiteql;

use crate::http::HttpResponse;
use crate::http::retry::{ApiClient, Backoff, Sent};
use crate::model::{ConnectorError, Cursor, NetSuiteRecord, Page, RecordKind, Result};
use crate::ports::Host;
use crate::settings::NetSuiteSettings;
use auth::AccessToken;
use std::cell::RefCell;

pub struct NetSuiteSource<'h> {
    api: ApiClient<'h>,
    settings: NetSuiteSettings,
    token: RefCell<Option<AccessToken>>,
}

impl<'h> NetSuiteSource<'h> {
    pub fn new(host: &'h Host<'h>, settings: NetSuiteSettings, backoff: Backoff) -> Self {
        NetSuiteSource {
            api: ApiClient::new(host, "NetSuite", errors::RULES, backoff),
            settings,
            token: RefCell::new(None),
        }
    }

    /// HTTP requests sent to NetSuite so far.
    pub fn calls(&self) -> u32 {
        self.api.calls()
    }

    /// Signs a new assertion and exchanges it for a fresh access token.
    pub fn authenticate(&self) -> Result<()> {
        let now = self.api.host.clock.now_unix();
        let assertion = auth::client_assertion(&self.settings, now)?;
        let request = auth::token_request(&self.settings.base_url, &assertion);
        let response = match self.api.send(&request)? {
            Sent::Response(r) | Sent::AuthExpired(r) => r,
        };
        let token = auth::parse_token_response(&response, now, &self.settings)?;
        *self.token.borrow_mut() = Some(token);
        Ok(())
    }

    /// The current token, renewed first when it is close to its 60 minutes.
    fn bearer(&self) -> Result<String> {
        let now = self.api.host.clock.now_unix();
        let fresh = self.token.borrow().as_ref().is_some_and(|t| !t.needs_renewal(now));
        if !fresh {
            self.authenticate()?;
        }
        Ok(self.token.borrow().as_ref().map(|t| t.token.clone()).unwrap_or_default())
    }

    fn run_query(&self, query: &str, what: &str) -> Result<suiteql::RowPage> {
        let url = suiteql::suiteql_url(&self.settings.base_url, self.settings.page_size, 0);
        let mut reauthenticated = false;
        loop {
            let request = suiteql::request(&url, query, &self.bearer()?);
            let response: HttpResponse = match self.api.send(&request)? {
                Sent::Response(r) | Sent::AuthExpired(r) => r,
            };
            if response.is_success() {
                return suiteql::parse_rows(&response.body);
            }
            // A token NetSuite no longer honours (revoked, clock skew): sign a
            // new assertion once before calling it an authentication failure.
            if response.status == 401 && !reauthenticated {
                reauthenticated = true;
                self.authenticate()?;
                continue;
            }
            let message = errors::describe(what, &response);
            return Err(if response.status == 401 {
                ConnectorError::Auth(message)
            } else {
                ConnectorError::NetSuite(message)
            });
        }
    }

    /// One page of `kind` records changed after `after`, oldest first.
    pub fn fetch_changed(&self, kind: RecordKind, after: Option<&Cursor>) -> Result<Page> {
        let query = suiteql::changed_query(kind, after)?;
        let page = self.run_query(&query, &format!("SuiteQL read of changed {kind} records"))?;
        let records = page.rows.into_iter().map(|row| suiteql::to_record(kind, row)).collect::<Result<Vec<_>>>()?;
        let next = records.last().map(|r| Cursor { last_modified: r.last_modified.clone(), id: r.id.clone() });
        Ok(Page { records, next, has_more: page.has_more })
    }

    /// One record by internal id.
    pub fn fetch_one(&self, kind: RecordKind, id: &str) -> Result<Option<NetSuiteRecord>> {
        let query = suiteql::one_query(kind, id)?;
        let page = self.run_query(&query, &format!("SuiteQL read of {kind} {id}"))?;
        page.rows.into_iter().next().map(|row| suiteql::to_record(kind, row)).transpose()
    }
}
