//! Writes through NetSuite's REST record API (`/services/rest/record/v1`):
//! PATCH by internal id, and PUT by external id, which creates the record
//! when it is missing and updates it otherwise, so a create repeated after
//! a crash finds the record it made instead of making a second one. Also a
//! record's modification time in UTC, which SuiteQL does not give.

use super::{Auth, NetSuiteSource, errors, suiteql};
use crate::http::retry::{NOT_SENT_AGAIN, Sent};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, RecordKind, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::rc::Rc;

/// A record's default billing address line, as a write-back keys it.
#[derive(Debug)]
pub enum BillingLine {
    /// No such line, or no such record (the write that follows says which):
    /// the line sent is added.
    Absent,
    /// The line's key, under the name it was read (`id` or `internalId`).
    Keyed(String, Value),
    /// A line shown without a key: sent unkeyed, the address would be added
    /// as a second line, so the record's write fails with this.
    Keyless(ConnectorError),
}

/// The default billing line of a record as the record API shows it.
fn billing_line(record: &Map<String, Value>, what: &str) -> BillingLine {
    let lines = record.get("addressBook").and_then(|b| b.get("items")).and_then(Value::as_array);
    let line = lines.into_iter().flatten().find(|l| l.get("defaultBilling") == Some(&Value::Bool(true)));
    let Some(line) = line else { return BillingLine::Absent };
    let key = |name: &str| line.get(name).filter(|k| !k.is_null()).map(|k| (name.to_string(), k.clone()));
    match key("id").or_else(|| key("internalId")) {
        Some((name, key)) => BillingLine::Keyed(name, key),
        None => BillingLine::Keyless(ConnectorError::NetSuite(format!(
            "{what}: the record API shows the default billing address line without an `id` or `internalId` key, \
             so the address cannot be changed in place (sent unkeyed, NetSuite would add a second line); change \
             the address in NetSuite, or take the address fields out of [vendor.writeback]"
        ))),
    }
}

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

/// A record API refusal, described for `what`.
fn record_error(what: &str, response: &HttpResponse) -> ConnectorError {
    let message = errors::describe(what, response);
    if response.status == 401 { ConnectorError::Auth(message) } else { ConnectorError::NetSuite(message) }
}

/// Whether `e` is a `once` write NetSuite answered with a server error, so
/// may have applied. One that got no answer may still be under way there:
/// a look at the record now could miss what it adds, so it is not repeated.
fn not_sent_again(e: &ConnectorError) -> bool {
    matches!(e, ConnectorError::NetSuite(m) if m.contains(NOT_SENT_AGAIN))
}

/// The internal id at the end of a `Location` header naming a
/// `record_type` record (`…/record/v1/vendor/4711`). Any other Location
/// (an asynchronous job's, an external id) gives none.
pub fn id_from_location(location: &str, record_type: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?.trim_end_matches('/');
    let mut segments = path.rsplit('/');
    let (last, kind, version, api) = (segments.next()?, segments.next()?, segments.next()?, segments.next()?);
    let record_path = api == "record" && version == "v1" && kind.eq_ignore_ascii_case(record_type);
    (record_path && !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())).then(|| last.to_string())
}

impl NetSuiteSource<'_> {
    /// Writes `body` to one record: PATCH updates only the fields given,
    /// PUT (by external id) creates or updates. Returns the record's
    /// internal id.
    pub fn write_record(
        &self,
        record_type: &str,
        target: &RecordRef,
        body: &Map<String, Value>,
        what: &str,
    ) -> Result<String> {
        let method = match target {
            RecordRef::Id(_) => Method::Patch,
            RecordRef::External(_) => Method::Put,
        };
        let url = format!("{}/services/rest/record/v1/{record_type}/{}", self.base_url, target.path()?);
        let payload = Rc::new(crate::http::Body::from(serde_json::to_vec(body).expect("a JSON map serializes")));
        // NetSuite appends a sublist line sent without its key: such a write
        // applied twice adds the line twice.
        let once = crate::mapping::writeback::unkeyed_line(body);
        let response = self.record_call(method, &url, Some(&payload), once)?;
        if !response.is_success() {
            let error = record_error(what, &response);
            // A gateway's 502/503/504 may come while the write is still under
            // way: not repeated in this run, as for no answer at all.
            if once && response.status >= 500 && !matches!(response.status, 502..=504) {
                return Err(error.with_suffix(&format!(
                    " ({NOT_SENT_AGAIN} as it was: it may have been applied, and a resend would add its address \
                     line twice)"
                )));
            }
            return Err(error);
        }
        let id = response.header("location").and_then(|l| id_from_location(l, record_type));
        match (id, target) {
            (Some(id), _) => Ok(id),
            (None, RecordRef::Id(id)) => Ok(id.clone()),
            // The documented answer names the record; whatever else came
            // back, the external id finds it.
            (None, RecordRef::External(eid)) => self.id_by_external_id(record_type, eid)?.ok_or_else(|| {
                ConnectorError::NetSuite(format!(
                    "{what}: NetSuite answered HTTP {} but has no {record_type} with external id {eid} yet; the \
                     next run sends it again and finds the record by that id",
                    response.status
                ))
            }),
        }
    }

    /// PATCHes `body` to record `id`; false when NetSuite has no such
    /// record (404: deleted there too).
    pub fn patch_if_present(&self, record_type: &str, id: &str, body: &Map<String, Value>, what: &str) -> Result<bool> {
        let url = format!("{}/services/rest/record/v1/{record_type}/{}", self.base_url, suiteql::internal_id(id)?);
        let payload = Rc::new(crate::http::Body::from(serde_json::to_vec(body).expect("a JSON map serializes")));
        let response = self.record_call(Method::Patch, &url, Some(&payload), false)?;
        match response.status {
            404 => Ok(false),
            _ if response.is_success() => Ok(true),
            _ => Err(record_error(what, &response)),
        }
    }

    /// The internal id of the `record_type` record with external id `eid`.
    fn id_by_external_id(&self, record_type: &str, eid: &str) -> Result<Option<String>> {
        let query = suiteql::external_id_query(record_type, eid)?;
        let page = self.run_query(query, format!("SuiteQL read of the {record_type} with external id {eid}"))?;
        Ok(page.rows.into_iter().find_map(|mut row| row.remove("id")))
    }

    /// When a record was last modified, in UTC (`YYYY-MM-DD HH:MM:SS`), from
    /// the record API: SuiteQL gives its times in the integration user's
    /// time zone, the record API in UTC, as Salesforce does. None: no such
    /// record.
    pub fn modified_utc(&self, record_type: &str, id: &str, what: &str) -> Result<Option<String>> {
        let url = format!(
            "{}/services/rest/record/v1/{record_type}/{}?fields=lastModifiedDate",
            self.base_url,
            suiteql::internal_id(id)?
        );
        let Some(record) = self.read_record(&url, what)? else { return Ok(None) };
        let stamp = record.get("lastModifiedDate").and_then(Value::as_str).unwrap_or_default();
        utc_timestamp(stamp, what).map(Some)
    }

    /// The key of a record's default billing address line (its `addressBook`
    /// sublist), so a write changes that line in place: replacing the book
    /// would drop the record's other addresses. The key comes with the name
    /// it was read under (`id`, or `internalId`), sent back so.
    pub fn default_billing_line(&self, record_type: &str, record: &RecordRef, what: &str) -> Result<BillingLine> {
        let url = format!(
            "{}/services/rest/record/v1/{record_type}/{}?expandSubResources=true",
            self.base_url,
            record.path()?
        );
        Ok(match self.read_record(&url, what)? {
            Some(record) => billing_line(&record, what),
            None => BillingLine::Absent,
        })
    }

    /// Writes `body` (see [`Self::write_record`]) with its address line
    /// keyed by the record's default billing line when it has one: NetSuite
    /// appends a line sent without its key. A write that may have been
    /// applied before its answer failed is sent again only with the line
    /// looked up again, so the repeat updates the line the first one made.
    /// `unkeyed_if_unreadable`: a lookup refused on its data (a role that may
    /// create but not view) leaves the line unkeyed, and such a write is
    /// not repeated.
    pub fn write_keyed(
        &self,
        record_type: &str,
        target: &RecordRef,
        body: &Map<String, Value>,
        what: &str,
        unkeyed_if_unreadable: bool,
    ) -> Result<String> {
        let mut attempt = 0;
        loop {
            let mut sent = body.clone();
            let mut looked = true;
            if let Some(line) = crate::mapping::writeback::address_line(&mut sent) {
                match self.default_billing_line(record_type, target, what) {
                    Ok(BillingLine::Keyed(name, key)) => drop(line.insert(name, key)),
                    Ok(BillingLine::Absent) => {}
                    Ok(BillingLine::Keyless(e)) => return Err(e),
                    Err(e) if unkeyed_if_unreadable && e.is_about_data() => looked = false,
                    Err(e) => return Err(e),
                }
            }
            match self.write_record(record_type, target, &sent, what) {
                Err(e) if looked && not_sent_again(&e) && attempt < self.api.max_retries() => {
                    self.api.pause(attempt);
                    attempt += 1;
                }
                written => return written,
            }
        }
    }

    /// One record, read through the record API. None: no such record.
    fn read_record(&self, url: &str, what: &str) -> Result<Option<Map<String, Value>>> {
        let response = self.record_call(Method::Get, url, None, false)?;
        if response.status == 404 {
            return Ok(None);
        }
        if !response.is_success() {
            return Err(record_error(what, &response));
        }
        serde_json::from_slice(&response.body)
            .map(Some)
            .map_err(|e| ConnectorError::NetSuite(format!("{what}: the record API answered with no JSON object ({e})")))
    }

    /// One record API call; a 401 under M2M gets a new token and one more
    /// try. The answer comes back whatever its status.
    fn record_call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Rc<crate::http::Body>>,
        once: bool,
    ) -> Result<HttpResponse> {
        let verb = method.to_string();
        let build = || -> Result<HttpRequest> {
            let mut request = HttpRequest::new(method, url.to_string()).once(once);
            if let Some(body) = body {
                // A misspelt field fails instead of being dropped with a warning.
                request =
                    request.body("application/json", body.clone()).header("X-NetSuite-PropertyNameValidation", "Error");
            }
            Ok(request.header("Authorization", self.authorization(&verb, url)?))
        };
        let mut reauthenticated = false;
        loop {
            let response = match self.api.send(&build)? {
                Sent::Response(r) | Sent::AuthExpired(r) => r,
            };
            if response.status == 401 && !reauthenticated && matches!(self.auth, Auth::M2m { .. }) {
                reauthenticated = true;
                self.authenticate()?;
                continue;
            }
            return Ok(response);
        }
    }

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

    /// Payment terms by name (name → internal id), read once per run, page
    /// by page by id until a page says there is no more.
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

/// The record API's `lastModifiedDate` (ISO 8601 with an offset) in UTC,
/// in a cursor's form.
fn utc_timestamp(stamp: &str, what: &str) -> Result<String> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    // RFC 3339 is the usual form; ISO 8601 also allows a time to the minute
    // (`10:15Z`) and an offset without its colon (`+0000`).
    let utc = time::OffsetDateTime::parse(stamp, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(stamp, &Iso8601::DEFAULT))
        .ok()
        // In UTC, a date near year 9999 could leave `time`'s range.
        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
        .map(|t| time::PrimitiveDateTime::new(t.date(), t.time()))
        .filter(|t| t.year() >= 1 && suiteql::steppable(*t))
        .ok_or_else(|| {
            ConnectorError::NetSuite(format!(
                "{what}: the record's lastModifiedDate `{}` is not an ISO 8601 datetime of years 0001 to 9998",
                stamp.escape_debug()
            ))
        })?;
    Ok(suiteql::format_timestamp(utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modification_times_are_read_in_utc_and_the_calendar_s_end_is_an_error() {
        assert_eq!(utc_timestamp("2026-12-06T10:00:00-08:00", "vendor 7").unwrap(), "2026-12-06 18:00:00");
        for iso in ["2026-12-06T18:00Z", "2026-12-06T10:00:00.000-0800", "2026-12-06T19:00:00+01"] {
            assert_eq!(utc_timestamp(iso, "vendor 7").unwrap(), "2026-12-06 18:00:00", "{iso}");
        }
        for bad in ["9999-12-31T23:59:59-01:00", "9999-06-01T00:00:00Z", "yesterday", ""] {
            let e = utc_timestamp(bad, "vendor 7").unwrap_err().to_string();
            assert!(e.contains("vendor 7") && e.contains("lastModifiedDate"), "{bad}: {e}");
        }
    }

    /// The default billing line is keyed by the name it is shown under; one
    /// shown without a key fails rather than being added again.
    #[test]
    fn the_default_billing_line_is_keyed_as_shown_or_refused() {
        let line = |items: serde_json::Value| {
            let record = serde_json::json!({ "addressBook": { "items": items } });
            billing_line(record.as_object().unwrap(), "update of NetSuite vendor 7")
        };
        let other = serde_json::json!({ "id": 1, "defaultBilling": false });
        assert!(matches!(line(serde_json::json!([other, { "id": 2, "defaultBilling": true }])),
                         BillingLine::Keyed(name, key) if name == "id" && key == 2));
        assert!(matches!(line(serde_json::json!([{ "internalId": "9", "defaultBilling": true }])),
                         BillingLine::Keyed(name, key) if name == "internalId" && key == "9"));
        assert!(matches!(line(serde_json::json!([other])), BillingLine::Absent));
        assert!(matches!(billing_line(&Map::new(), "x"), BillingLine::Absent));
        let BillingLine::Keyless(e) = line(serde_json::json!([{ "id": null, "defaultBilling": true }])) else {
            panic!("a line without a key is refused")
        };
        assert!(e.to_string().contains("vendor 7") && e.to_string().contains("second line"), "{e}");
    }

    #[test]
    fn the_new_id_is_read_from_the_location() {
        let l = "https://123456.suitetalk.api.netsuite.com/services/rest/record/v1/vendor/4711";
        assert_eq!(id_from_location(l, "vendor").as_deref(), Some("4711"));
        assert_eq!(id_from_location("/services/rest/record/v1/vendor/12/", "vendor").as_deref(), Some("12"));
        assert_eq!(id_from_location("/services/rest/record/v1/vendor/eid:abc", "vendor"), None);
        // An asynchronous job's Location, or another record type's, names no vendor.
        assert_eq!(id_from_location("https://h/services/rest/async/v1/job/42", "vendor"), None);
        assert_eq!(id_from_location("/services/rest/record/v1/customer/12", "vendor"), None);
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
