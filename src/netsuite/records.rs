//! Writes through NetSuite's REST record API (`/services/rest/record/v1`):
//! PATCH by internal id, and PUT by external id, which creates the record
//! when it is missing and updates it otherwise, so a create repeated after
//! a crash finds the record it made instead of making a second one.

use super::{Auth, NetSuiteSource, errors, suiteql};
use crate::http::retry::Sent;
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, RecordKind, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::rc::Rc;

/// Which record a write goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRef {
    /// An internal id (digits).
    Id(String),
    /// An external id (letters, digits, `_` and `-`): PUT upserts by it.
    External(String),
}

impl RecordRef {
    fn path(&self) -> Result<String> {
        match self {
            RecordRef::Id(id) => Ok(super::suiteql::internal_id(id)?.to_string()),
            RecordRef::External(eid) => {
                // NetSuite reads other characters (a pipe, say) as syntax.
                if eid.is_empty() || !eid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(ConnectorError::Config(format!(
                        "`{}` cannot be a NetSuite external id: use letters, digits, `_` and `-` only",
                        eid.escape_debug()
                    )));
                }
                Ok(format!("eid:{eid}"))
            }
        }
    }
}

/// The internal id at the end of a `Location` header.
pub fn id_from_location(location: &str) -> Option<String> {
    let last = location.trim_end_matches('/').rsplit('/').next()?;
    let last = last.split(['?', '#']).next()?;
    (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit())).then(|| last.to_string())
}

impl NetSuiteSource<'_> {
    /// Writes `body` to one record: PATCH updates only the fields given,
    /// PUT (by external id) creates or updates. `replace` names a sublist
    /// whose lines the body replaces. Returns the record's internal id.
    pub fn write_record(
        &self,
        record_type: &str,
        target: &RecordRef,
        body: &Map<String, Value>,
        replace: Option<&str>,
        what: &str,
    ) -> Result<String> {
        let method = match target {
            RecordRef::Id(_) => Method::Patch,
            RecordRef::External(_) => Method::Put,
        };
        let mut url = format!("{}/services/rest/record/v1/{record_type}/{}", self.base_url, target.path()?);
        if let Some(sublist) = replace {
            url.push_str(&format!("?replace={sublist}"));
        }
        let payload = Rc::new(crate::http::Body::from(serde_json::to_vec(body).expect("a JSON map serializes")));
        let verb = if method == Method::Patch { "PATCH" } else { "PUT" };
        let build = || -> Result<HttpRequest> {
            Ok(HttpRequest::new(method, url.clone())
                .body("application/json", payload.clone())
                // A misspelt field fails instead of being dropped with a warning.
                .header("X-NetSuite-PropertyNameValidation", "Error")
                .header("Authorization", self.authorization(verb, &url)?))
        };
        let mut sent = self.api.send(&build)?;
        let mut reauthenticated = false;
        loop {
            let response: HttpResponse = match sent {
                Sent::Response(r) | Sent::AuthExpired(r) => r,
            };
            if response.is_success() {
                let id = response.header("location").and_then(id_from_location);
                return match (id, target) {
                    (Some(id), _) => Ok(id),
                    (None, RecordRef::Id(id)) => Ok(id.clone()),
                    (None, RecordRef::External(_)) => Err(ConnectorError::NetSuite(format!(
                        "{what}: NetSuite answered HTTP {} without the record's Location",
                        response.status
                    ))),
                };
            }
            if response.status == 401 && !reauthenticated && matches!(self.auth, Auth::M2m { .. }) {
                reauthenticated = true;
                self.authenticate()?;
                sent = self.api.send(&build)?;
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

    /// Payment terms by name (name → internal id), read once per run, page
    /// by page by id until a page says there is no more.
    /// Internal ids of the `kind` records whose `column` names one of
    /// `parents` (a contact's company, say), read page by page by id.
    pub fn children_ids(&self, kind: RecordKind, column: &str, parents: &[&str]) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut after = 0;
        loop {
            let query = suiteql::children_query(kind, column, parents, after)?;
            let page = self.run_query(query, format!("SuiteQL read of {kind} records under {column}"))?;
            let mut last = None;
            for mut row in page.rows {
                let Some(id) = row.remove("id") else { continue };
                last = Some(suiteql::internal_id(&id)?);
                ids.push(id);
            }
            match last {
                Some(last) if page.has_more && last > after => after = last,
                _ => return Ok(ids),
            }
        }
    }

    pub fn term_ids(&self) -> Result<HashMap<String, String>> {
        let mut terms = HashMap::new();
        let mut after = 0;
        loop {
            let page = self.run_query(suiteql::terms_query(after), "SuiteQL read of payment terms".into())?;
            let mut last = None;
            for mut row in page.rows {
                let Some(id) = row.remove("id") else { continue };
                last = Some(suiteql::internal_id(&id)?);
                if let Some(name) = row.remove("name") {
                    terms.insert(name, id);
                }
            }
            match last {
                // A page that ends no further on has nothing after it to read.
                Some(last) if page.has_more && last > after => after = last,
                _ => return Ok(terms),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_id_is_read_from_the_location() {
        let l = "https://123456.suitetalk.api.netsuite.com/services/rest/record/v1/vendor/4711";
        assert_eq!(id_from_location(l).as_deref(), Some("4711"));
        assert_eq!(id_from_location("/services/rest/record/v1/vendor/12/").as_deref(), Some("12"));
        assert_eq!(id_from_location("/services/rest/record/v1/vendor/eid:abc"), None);
    }

    #[test]
    fn external_ids_are_checked_before_they_reach_a_url() {
        assert_eq!(RecordRef::External("a0B5g00000XyZ_1-2".into()).path().unwrap(), "eid:a0B5g00000XyZ_1-2");
        assert!(RecordRef::External("a|b".into()).path().is_err());
        assert!(RecordRef::External("../x".into()).path().is_err());
        assert!(RecordRef::Id("12 OR 1".into()).path().is_err());
        assert_eq!(RecordRef::Id("42".into()).path().unwrap(), "42");
    }
}
