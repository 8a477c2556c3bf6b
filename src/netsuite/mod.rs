//! The NetSuite source: authentication (OAuth 2.0 M2M or TBA) and SuiteQL reads.

pub mod auth;
pub mod errors;
pub mod records;
pub mod suiteql;
mod surrogates;
pub mod tba;

use crate::http::HttpResponse;
use crate::http::retry::{ApiClient, Backoff, InFlight, Sent};
use crate::model::{ConnectorError, Cursor, NetSuiteRecord, Page, ReadProblem, RecordKind, Result};
use crate::ports::Host;
use crate::settings::{M2mSettings, NetSuiteAuth, NetSuiteSettings};
use auth::AccessToken;
use std::cell::RefCell;
use std::collections::HashMap;

enum Auth {
    M2m { settings: M2mSettings, token: RefCell<Option<AccessToken>> },
    Tba(tba::TbaCredentials),
}

/// A page of deletions: ids and the cursor after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedPage {
    pub ids: Vec<String>,
    pub next: Option<Cursor>,
    pub has_more: bool,
}

/// The width a kind's rows are assumed to have before a page of them was
/// read: wider than any NetSuite row of standard fields (about 1 KB as JSON).
const FIRST_PAGE_ROW_BYTES: usize = 16 << 10;

pub struct NetSuiteSource<'h> {
    api: ApiClient<'h>,
    base_url: String,
    page_size: u32,
    /// Bytes a page of rows may take (see [`Self::limit`]).
    page_bytes: usize,
    /// Per kind, the rows its next page asks for: fewer than `page_size`
    /// once its rows turned out too wide for `page_bytes`.
    limits: RefCell<HashMap<RecordKind, u32>>,
    auth: Auth,
}

impl<'h> NetSuiteSource<'h> {
    pub fn new(host: &'h Host<'h>, settings: NetSuiteSettings, backoff: Backoff) -> Self {
        let auth = match settings.auth {
            NetSuiteAuth::M2m(m2m) => Auth::M2m { settings: m2m, token: RefCell::new(None) },
            NetSuiteAuth::Tba { consumer_key, consumer_secret, token_id, token_secret } => {
                Auth::Tba(tba::TbaCredentials {
                    consumer_key,
                    consumer_secret,
                    token_id,
                    token_secret,
                    realm: tba::realm(&settings.account_id),
                })
            }
        };
        NetSuiteSource {
            api: ApiClient::new(host, "NetSuite", errors::RULES, backoff).with_max_in_flight(settings.max_in_flight),
            base_url: settings.base_url,
            page_size: settings.page_size,
            page_bytes: settings.page_bytes,
            limits: RefCell::new(HashMap::new()),
            auth,
        }
    }

    /// HTTP requests sent to NetSuite so far.
    pub fn calls(&self) -> u32 {
        self.api.calls()
    }

    /// M2M: signs a new assertion and exchanges it for a fresh token. TBA
    /// signs every request instead, so there is nothing to do.
    pub fn authenticate(&self) -> Result<()> {
        let Auth::M2m { settings, token } = &self.auth else {
            return Ok(());
        };
        let clock = self.api.host.clock;
        let sent = self.api.send(&|| {
            let assertion = auth::client_assertion(settings, &self.base_url, clock.now_unix())?;
            Ok(auth::token_request(&self.base_url, &assertion))
        })?;
        let response = match sent {
            Sent::Response(r) | Sent::AuthExpired(r) => r,
        };
        let fresh = auth::parse_token_response(&response, clock.now_unix(), settings, &self.base_url)?;
        // Kept (sealed) for the runs of the next hour: each would sign an
        // assertion and ask for a token again.
        let cached = auth::CachedToken { login: auth::login_identity(settings, &self.base_url), token: fresh.clone() };
        let bytes = serde_json::to_vec(&cached).expect("a token serializes");
        self.api.host.credentials.set(auth::TOKEN_KEY, &bytes).map_err(|e| {
            ConnectorError::Transport(format!("could not save `{}` to the credentials store: {e}", auth::TOKEN_KEY))
        })?;
        *token.borrow_mut() = Some(fresh);
        Ok(())
    }

    /// The token an earlier run obtained under the same settings, while it
    /// has time left. A stored value that does not parse is as good as none;
    /// a store that cannot be read fails the run, as for the Salesforce session.
    fn cached_token(&self, settings: &M2mSettings, now: i64) -> Result<Option<AccessToken>> {
        let stored = self.api.host.credentials.get(auth::TOKEN_KEY).map_err(|e| {
            ConnectorError::Transport(format!("could not read `{}` from the credentials store: {e}", auth::TOKEN_KEY))
        })?;
        let login = auth::login_identity(settings, &self.base_url);
        Ok(stored
            .and_then(|b| serde_json::from_slice::<auth::CachedToken>(&b).ok())
            .filter(|c| c.login == login && !c.token.needs_renewal(now))
            .map(|c| c.token))
    }

    /// The Authorization header for one request: the M2M token (renewed
    /// first when it nears its 60 minutes) or a fresh TBA signature.
    fn authorization(&self, method: &str, url: &str) -> Result<String> {
        let clock = self.api.host.clock;
        match &self.auth {
            Auth::M2m { token, settings } => {
                let now = clock.now_unix();
                let fresh = token.borrow().as_ref().is_some_and(|t| !t.needs_renewal(now));
                if !fresh {
                    // A run's first request may use the token of a run before.
                    let cached = match token.borrow().is_none() {
                        true => self.cached_token(settings, now)?,
                        false => None,
                    };
                    match cached {
                        Some(t) => *token.borrow_mut() = Some(t),
                        None => self.authenticate()?,
                    }
                }
                let token = token.borrow();
                Ok(format!("Bearer {}", token.as_ref().map(|t| t.token.as_str()).unwrap_or_default()))
            }
            Auth::Tba(creds) => {
                let nonce = format!("{:016x}{:08x}", clock.random(), clock.random() as u32);
                Ok(tba::authorization(creds, method, url, &nonce, clock.now_unix()))
            }
        }
    }

    /// Rows of `kind` a page holds within its share of memory: what callers
    /// that gather records of a kind by id take at a time.
    pub fn rows_per_page(&self, kind: RecordKind) -> usize {
        self.limit(kind) as usize
    }

    /// Rows the next page of `kind` asks for: before any was read, as many
    /// as fit at a generous width (a whole page unless memory is tight).
    fn limit(&self, kind: RecordKind) -> u32 {
        let guess = || Self::fit(self.page_bytes, FIRST_PAGE_ROW_BYTES, self.page_size);
        self.limits.borrow().get(&kind).copied().unwrap_or_else(guess)
    }

    /// Rows of `width` bytes that fit in `bytes`: one at least, `page_size` at most.
    fn fit(bytes: usize, width: usize, page_size: u32) -> u32 {
        u32::try_from(bytes / width.max(1)).unwrap_or(u32::MAX).clamp(1, page_size.max(1))
    }

    /// A page of `kind` took `bytes` for `rows` rows: the next asks for as
    /// many rows of that width as fit in `page_bytes` (one at least, a page
    /// at most), so memory holds a page of wide rows as it would narrow ones.
    fn learn_width(&self, kind: RecordKind, bytes: usize, rows: usize) {
        if rows == 0 {
            return;
        }
        let fit = Self::fit(self.page_bytes, bytes.div_ceil(rows), self.page_size);
        self.limits.borrow_mut().insert(kind, fit);
    }

    /// Sends a SuiteQL query and returns at once; `finish` waits for the rows.
    fn begin_query(&self, query: String, what: String) -> Result<PendingQuery<'_, 'h>> {
        self.begin_page(query, what, self.page_size)
    }

    /// As `begin_query`, asking for at most `limit` rows.
    fn begin_page(&self, query: String, what: String, limit: u32) -> Result<PendingQuery<'_, 'h>> {
        let url = suiteql::suiteql_url(&self.base_url, limit, 0);
        let (q, u) = (query.clone(), url.clone());
        let inflight = self.api.begin(move || Ok(suiteql::request(&u, &q, self.authorization("POST", &u)?)))?;
        Ok(PendingQuery { source: self, url, query, what, inflight })
    }

    fn run_query(&self, query: String, what: String) -> Result<suiteql::RowPage> {
        self.begin_query(query, what)?.finish()
    }

    /// Starts reading one page of `kind` records changed after `after`.
    pub fn begin_changed(
        &self,
        kind: RecordKind,
        after: Option<&Cursor>,
        columns: &[String],
    ) -> Result<PendingPage<'_, 'h>> {
        let query = suiteql::changed_query(kind, after, columns)?;
        let what = format!("SuiteQL read of changed {kind} records");
        Ok(PendingPage { kind, query: self.begin_page(query, what, self.limit(kind))? })
    }

    /// Starts reading one page of every `kind` record after internal id
    /// `after` (up to `upto`, inclusive, when given), in id order (a first
    /// sync's read).
    pub fn begin_scan(
        &self,
        kind: RecordKind,
        after: u64,
        upto: Option<u64>,
        columns: &[String],
    ) -> Result<PendingPage<'_, 'h>> {
        let query = suiteql::scan_query(kind, after, upto, columns)?;
        let what = format!("SuiteQL read of all {kind} records");
        Ok(PendingPage { kind, query: self.begin_page(query, what, self.limit(kind))? })
    }

    /// Starts asking for the highest internal id of `kind`.
    pub fn begin_highest_id(&self, kind: RecordKind) -> Result<PendingHighest<'_, 'h>> {
        let what = format!("SuiteQL read of the highest {kind} id");
        Ok(PendingHighest { query: self.begin_query(suiteql::highest_id_query(kind), what)? })
    }

    /// The newest lastmodifieddate of `kind`'s records (None when it has
    /// none), in the form of a cursor's time.
    pub fn newest_change(&self, kind: RecordKind) -> Result<Option<String>> {
        let page =
            self.run_query(suiteql::newest_change_query(kind), format!("SuiteQL read of the newest {kind} change"))?;
        page.rows.first().and_then(|row| row.get("lastmodified")).map(suiteql::cursor_time).transpose()
    }

    /// The record of `kind` changed last and its lastmodifieddate in the
    /// cursor's form, as SuiteQL gives it (in the user's time zone); None
    /// when the kind has no records.
    pub fn zone_probe(&self, kind: RecordKind) -> Result<Option<(String, String)>> {
        let what = format!("SuiteQL read of the {kind} changed last");
        let page = self.begin_page(suiteql::zone_probe_query(kind), what, 1)?.finish()?;
        let Some(mut row) = page.rows.into_iter().next() else { return Ok(None) };
        let (Some(id), Some(time)) = (row.remove("id"), row.remove("lastmodified")) else {
            return Err(ConnectorError::NetSuite(format!(
                "SuiteQL read of the {kind} changed last answered a row without its id or time"
            )));
        };
        suiteql::internal_id(&id)?;
        Ok(Some((id, suiteql::cursor_time(&time)?)))
    }

    /// The lastmodifieddate of `kind` record `id` in the cursor's form, as
    /// SuiteQL gives it; None when NetSuite has no such record.
    pub fn modified_local(&self, kind: RecordKind, id: &str) -> Result<Option<String>> {
        let what = format!("SuiteQL read of {kind} {id}'s modification time");
        let page = self.run_query(suiteql::modified_query(kind, id)?, what)?;
        page.rows.first().and_then(|row| row.get("lastmodified")).map(suiteql::cursor_time).transpose()
    }

    /// One page of `kind` records changed after `after`, oldest first.
    pub fn fetch_changed(&self, kind: RecordKind, after: Option<&Cursor>, columns: &[String]) -> Result<Page> {
        self.begin_changed(kind, after, columns)?.finish()
    }

    /// Starts reading one page of `kind` deletions after `after`.
    pub fn begin_deleted(&self, kind: RecordKind, after: Option<&Cursor>) -> Result<PendingDeleted<'_, 'h>> {
        let query = suiteql::deleted_query(kind, after)?;
        Ok(PendingDeleted { kind, query: self.begin_query(query, format!("SuiteQL read of deleted {kind} records"))? })
    }

    /// One page of `kind` deletions after `after`.
    pub fn fetch_deleted(&self, kind: RecordKind, after: Option<&Cursor>) -> Result<DeletedPage> {
        self.begin_deleted(kind, after)?.finish()
    }

    /// Records of `kind` by internal id; ids NetSuite does not return (deleted,
    /// or never existed) are simply absent. Asked with the mapping's columns,
    /// a request asks for as many as fit in a page's share of memory (see
    /// [`Self::rows_per_page`]) and teaches the kind's width; ids alone (no
    /// columns) are narrow, a page at a time.
    pub fn fetch_many(&self, kind: RecordKind, ids: &[&str], columns: &[String]) -> Result<Vec<NetSuiteRecord>> {
        let mut records = Vec::with_capacity(ids.len());
        let group_size = if columns.is_empty() { self.page_size.max(1) as usize } else { self.rows_per_page(kind) };
        for group in ids.chunks(group_size) {
            let mut rest = group.to_vec();
            while !rest.is_empty() {
                let query = suiteql::ids_query(kind, &rest, columns)?;
                let what = format!("SuiteQL read of {} {kind} records by id", rest.len());
                let (page, bytes) = self.begin_query(query, what)?.finish_sized()?;
                if !columns.is_empty() {
                    self.learn_width(kind, bytes, page.rows.len());
                }
                let mut last = None;
                for row in page.rows {
                    let record = suiteql::to_record(kind, row)?;
                    last = Some(suiteql::internal_id(&record.id)?);
                    records.push(record);
                }
                if !page.has_more {
                    break;
                }
                // A page may hold fewer rows than asked: an id not returned
                // yet is not taken for deleted while NetSuite has more. The
                // rows come in id order, so the rest are those past the last.
                let Some(last) = last else {
                    return Err(ConnectorError::NetSuite(format!(
                        "SuiteQL read of {kind} records by id answered an empty page that says it has more"
                    )));
                };
                rest.retain(|id| suiteql::internal_id(id).is_ok_and(|n| n > last));
            }
        }
        Ok(records)
    }

    /// One record by internal id.
    pub fn fetch_one(&self, kind: RecordKind, id: &str, columns: &[String]) -> Result<Option<NetSuiteRecord>> {
        let query = suiteql::one_query(kind, id, columns)?;
        let page = self.run_query(query, format!("SuiteQL read of {kind} {id}"))?;
        page.rows.into_iter().next().map(|row| suiteql::to_record(kind, row)).transpose()
    }
}

/// A SuiteQL request under way.
struct PendingQuery<'s, 'h> {
    source: &'s NetSuiteSource<'h>,
    url: String,
    query: String,
    what: String,
    inflight: InFlight<'s, 'h>,
}

impl PendingQuery<'_, '_> {
    fn finish(self) -> Result<suiteql::RowPage> {
        Ok(self.finish_sized()?.0)
    }

    /// The rows, and the bytes of the response they came in.
    fn finish_sized(self) -> Result<(suiteql::RowPage, usize)> {
        let source = self.source;
        let mut sent = self.inflight.finish()?;
        let mut reauthenticated = false;
        loop {
            let response: HttpResponse = match sent {
                Sent::Response(r) | Sent::AuthExpired(r) => r,
            };
            if response.is_success() {
                return Ok((suiteql::parse_rows(&response.body)?, response.body.len()));
            }
            // A token NetSuite no longer honours (revoked, clock skew): sign a
            // new assertion once before calling it an authentication failure.
            if response.status == 401 && !reauthenticated && matches!(source.auth, Auth::M2m { .. }) {
                reauthenticated = true;
                source.authenticate()?;
                let (url, query) = (&self.url, &self.query);
                sent = source.api.send(&|| Ok(suiteql::request(url, query, source.authorization("POST", url)?)))?;
                continue;
            }
            let message = errors::describe(&self.what, &response);
            return Err(if response.status == 401 {
                ConnectorError::Auth(message)
            } else {
                ConnectorError::NetSuite(message)
            });
        }
    }
}

/// A page of changed records under way.
pub struct PendingPage<'s, 'h> {
    kind: RecordKind,
    query: PendingQuery<'s, 'h>,
}

impl PendingPage<'_, '_> {
    pub fn finish(self) -> Result<Page> {
        let kind = self.kind;
        let source = self.query.source;
        let (page, bytes) = self.query.finish_sized()?;
        source.learn_width(kind, bytes, page.rows.len());
        let mut records = Vec::with_capacity(page.rows.len());
        let mut problems = Vec::new();
        for (row, repaired) in page.rows.into_iter().zip(page.repaired) {
            // A row that is not a record is set aside with its reason; the
            // rest of the page goes on.
            let id = row.get("id").map(str::to_string);
            match suiteql::to_record(kind, row) {
                Ok(record) => {
                    if !repaired.is_empty() {
                        problems.push(ReadProblem {
                            id: record.id.clone(),
                            quarantined: false,
                            reason: format!(
                                "{} held a lone UTF-16 surrogate (half of a character pair), replaced by U+FFFD; \
                                 correct the value in NetSuite",
                                repaired.join(", ")
                            ),
                        });
                    }
                    records.push(record);
                }
                Err(e) => {
                    problems.push(ReadProblem { id: id.unwrap_or_default(), quarantined: true, reason: e.to_string() })
                }
            }
        }
        let next = records.last().map(|r| Cursor { last_modified: r.last_modified.clone(), id: r.id.clone() });
        Ok(Page { records, next, has_more: page.has_more, total: page.total_results, problems })
    }
}

/// The highest internal id of a kind, asked.
pub struct PendingHighest<'s, 'h> {
    query: PendingQuery<'s, 'h>,
}

impl PendingHighest<'_, '_> {
    /// None when the kind has no rows.
    pub fn finish(self) -> Result<Option<u64>> {
        let page = self.query.finish()?;
        page.rows
            .first()
            .and_then(|row| row.get("highest"))
            .filter(|v| !v.is_empty())
            .map(suiteql::internal_id)
            .transpose()
    }
}

/// A page of deletions under way.
pub struct PendingDeleted<'s, 'h> {
    kind: RecordKind,
    query: PendingQuery<'s, 'h>,
}

impl PendingDeleted<'_, '_> {
    pub fn finish(self) -> Result<DeletedPage> {
        let kind = self.kind;
        let page = self.query.finish()?;
        let rows = page.rows.into_iter().map(|row| suiteql::to_record(kind, row)).collect::<Result<Vec<_>>>()?;
        let next = rows.last().map(|r| Cursor { last_modified: r.last_modified.clone(), id: r.id.clone() });
        Ok(DeletedPage { ids: rows.into_iter().map(|r| r.id).collect(), next, has_more: page.has_more })
    }
}

#[cfg(test)]
mod tests {
    use super::NetSuiteSource;

    #[test]
    fn a_page_asks_for_as_many_rows_as_fit_in_its_share_of_memory() {
        // 4 MiB for rows of 30 KB: 139 rows; of 1 KB: the whole page.
        assert_eq!(NetSuiteSource::fit(4 << 20, 30_000, 1000), 139);
        assert_eq!(NetSuiteSource::fit(4 << 20, 1_000, 1000), 1000);
        // A row wider than the share is still read, alone.
        assert_eq!(NetSuiteSource::fit(4 << 20, 16 << 20, 1000), 1);
        // No cap given: the configured page.
        assert_eq!(NetSuiteSource::fit(usize::MAX, 16 << 10, 1000), 1000);
    }
}
