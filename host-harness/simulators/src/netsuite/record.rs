//! /services/rest/record/v1: the REST record API for vendors, customers
//! and contacts (shared/reference/netsuite.md 5; the record types in
//! [`entity`]). GET a record by internal or external id (`eid:`), POST to
//! create, PATCH to change the fields given, PUT `eid:<externalId>` to
//! upsert, DELETE; writes answer 204 No Content with a `Location` naming the
//! record. Requests share the account's concurrency limit and
//! authentication with SuiteQL, and the role's permission on the record
//! type decides what it may do.
//!
//! Not simulated: the asynchronous `Prefer: respond-async` jobs (calls run
//! synchronously), collection batch writes, `q` filters on collection GET,
//! and other record types.

use super::entity;
use super::errors::RestError;
use super::vendor::{self, Checks, Links, RecordId, RecordType, Replace, VENDOR, WriteContext};
use super::{NetSuiteSim, ScriptedFailure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// The role's permission on a record type (Lists > Vendors, Customers,
/// Contacts), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    View,
    Create,
    Edit,
    Full,
}

const SINGULAR: &str = "application/vnd.oracle.resource+json; type=singular";
const COLLECTION: &str = "application/vnd.oracle.resource+json; type=collection";

struct Request {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.param(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn checks(&self) -> Result<Checks, RestError> {
        let mut checks = Checks::default();
        for (header, slot) in [
            ("x-netsuite-propertynamevalidation", &mut checks.names),
            ("x-netsuite-propertyvaluevalidation", &mut checks.values),
        ] {
            let Some(value) = self.headers.get(header) else { continue };
            let text = value.to_str().unwrap_or_default();
            *slot = vendor::Check::parse(text).ok_or_else(|| {
                RestError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_HEADER",
                    format!("Invalid value for header {header}: {text}. Use Error, Warning or Ignore."),
                )
                .at_header(header)
            })?;
        }
        Ok(checks)
    }
}

fn not_found() -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "NONEXISTENT_ID",
        "The record instance does not exist. Provide a valid record instance ID.",
    )
}

pub(super) fn method_not_allowed(method: &Method, allowed: &str) -> Response {
    let mut resp = RestError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "INVALID_METHOD",
        format!("The {method} method is not allowed for this resource. Allowed methods: {allowed}."),
    )
    .into_response();
    resp.headers_mut().insert("allow", allowed.parse().expect("static method list"));
    resp
}

fn storage(e: impl std::fmt::Display) -> RestError {
    RestError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNEXPECTED_ERROR", format!("An unexpected error occurred: {e}"))
}

fn json_response(content_type: &'static str, body: Value) -> Response {
    (StatusCode::OK, [("content-type", content_type)], body.to_string()).into_response()
}

fn written(links: &Links<'_>, rt: &RecordType, id: i64) -> Response {
    (StatusCode::NO_CONTENT, [("location", links.record(rt, id))]).into_response()
}

impl NetSuiteSim {
    /// Whether the role may do what needs `needed` with records of `rt`: a
    /// table the role may not see is no permission at all.
    fn permit(&self, rt: &RecordType, needed: Permission) -> Result<(), RestError> {
        let denied = self.inner.denied_tables.lock().unwrap().iter().any(|t| t == rt.name);
        let level = if denied { Permission::None } else { self.record_permission(rt.name) };
        if level >= needed {
            return Ok(());
        }
        Err(entity::forbidden(rt, level == Permission::None))
    }

    fn record_links(&self) -> String {
        format!("{}/services/rest/record/v1", self.base_url())
    }
}

pub async fn handler(
    State(sim): State<NetSuiteSim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &sim.inner;
    inner.requests.fetch_add(1, Ordering::SeqCst);
    inner.record_requests.fetch_add(1, Ordering::SeqCst);
    let Some(_slot) = sim.take_slot() else {
        return RestError::too_many_requests().into_response();
    };
    sim.wait_latency().await;
    let mut scripted = inner.record_failures.lock().unwrap().pop_front();
    if scripted.is_none() && ![Method::GET, Method::OPTIONS].contains(&method) {
        scripted = inner.write_failures.lock().unwrap().pop_front();
    }
    let applied_first = scripted == Some(ScriptedFailure::UnexpectedAfterApplying);
    if let Some(failure) = scripted.filter(|_| !applied_first) {
        return failure.answer().into_response();
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    if let Err(reason) = sim.authorize(method.as_str(), &headers, &path_and_query) {
        inner.login_audit.lock().unwrap().push(format!("REST record request refused: {reason}"));
        return RestError::invalid_login().into_response();
    }
    let rest = uri.path().strip_prefix("/services/rest/record/v1/").unwrap_or_default();
    let segments =
        rest.split('/').map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    let query = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let request = Request { method, segments, query, headers, body };
    let response = route(&sim, &request).unwrap_or_else(IntoResponse::into_response);
    match applied_first {
        true => RestError::unexpected().into_response(),
        false => response,
    }
}

fn route(sim: &NetSuiteSim, req: &Request) -> Result<Response, RestError> {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let Some((&record_type, rest)) = segments.split_first() else {
        return Err(not_found());
    };
    let Some(rt) = entity::record_type(record_type) else {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "NONEXISTENT_RECORD_TYPE",
            format!(
                "Record type '{record_type}' does not exist in this account. Record types are camelCase (the \
                 simulator serves 'vendor', 'customer' and 'contact')."
            ),
        ));
    };
    let allowed = match rest {
        [] | [""] => "GET, POST",
        [_] => "GET, PATCH, PUT, DELETE",
        [_, "addressBook"] | [_, "addressBook", _, "addressBookAddress"] if rt.address_book => "GET",
        _ => return Err(not_found()),
    };
    let method = &req.method;
    if method == Method::OPTIONS {
        return Ok((StatusCode::NO_CONTENT, [("allow", allowed)]).into_response());
    }
    if !allowed.split(", ").any(|m| m == method.as_str()) {
        return Ok(method_not_allowed(method, allowed));
    }
    let base = sim.record_links();
    let links = Links(&base);
    match (rest, method.as_str()) {
        ([] | [""], "GET") => list(sim, rt, req, &links),
        ([] | [""], _) => write(sim, rt, req, &links, Target::Create),
        ([id], "GET") => get(sim, rt, req, &links, id),
        ([id], "DELETE") => delete(sim, rt, id),
        ([id], "PUT") => match RecordId::parse(id) {
            Some(RecordId::External(eid)) => write(sim, rt, req, &links, Target::Upsert(eid)),
            _ => Ok(method_not_allowed(method, "GET, PATCH, DELETE")),
        },
        ([id], _) => write(sim, rt, req, &links, Target::Update(RecordId::parse(id).ok_or_else(not_found)?)),
        ([id, _], _) => sublist(sim, rt, req, &links, id, None),
        ([id, _, line, _], _) => sublist(sim, rt, req, &links, id, Some(line)),
        _ => Err(not_found()),
    }
}

fn find(sim: &NetSuiteSim, rt: &RecordType, id: &str) -> Result<i64, RestError> {
    let rid = RecordId::parse(id).ok_or_else(not_found)?;
    vendor::find(&sim.db(), rt, &rid).map_err(storage)?.ok_or_else(not_found)
}

fn get(sim: &NetSuiteSim, rt: &RecordType, req: &Request, links: &Links<'_>, id: &str) -> Result<Response, RestError> {
    sim.permit(rt, Permission::View)?;
    let id = find(sim, rt, id)?;
    let expand = req.flag("expandSubResources");
    let mut record = vendor::render(&sim.db(), rt, id, links, expand).map_err(storage)?.ok_or_else(not_found)?;
    if let Some(fields) = req.param("fields") {
        // `fields` picks what comes back; links and id always do.
        let wanted: Vec<String> = fields.split(',').map(|f| f.trim().to_ascii_lowercase()).collect();
        record.retain(|k, _| k == "links" || k == "id" || wanted.contains(&k.to_ascii_lowercase()));
    }
    Ok(json_response(SINGULAR, Value::Object(record)))
}

fn sublist(
    sim: &NetSuiteSim,
    rt: &RecordType,
    req: &Request,
    links: &Links<'_>,
    id: &str,
    line: Option<&str>,
) -> Result<Response, RestError> {
    sim.permit(rt, Permission::View)?;
    let id = find(sim, rt, id)?;
    let db = sim.db();
    let body = match line {
        None => vendor::render_address_book(&db, rt, id, links, req.flag("expandSubResources")).map_err(storage)?,
        Some(line) => {
            let line: i64 = line.parse().map_err(|_| not_found())?;
            vendor::render_line_address(&db, rt, id, line, links).map_err(storage)?.ok_or_else(not_found)?
        }
    };
    Ok(json_response(if line.is_none() { COLLECTION } else { SINGULAR }, body))
}

fn list(sim: &NetSuiteSim, rt: &RecordType, req: &Request, links: &Links<'_>) -> Result<Response, RestError> {
    sim.permit(rt, Permission::View)?;
    if req.param("q").is_some() {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            "The NetSuite simulator does not evaluate record collection filters (q); read with SuiteQL instead.",
        )
        .at_query_param("q"));
    }
    let number = |name: &str, default: u64| -> Result<u64, RestError> {
        match req.param(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                RestError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER",
                    format!("Invalid value for query parameter {name}: {v}."),
                )
                .at_query_param(name)
            }),
        }
    };
    let (limit, offset) = (number("limit", 1000)?, number("offset", 0)?);
    if !(1..=1000).contains(&limit) {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!("Invalid value for query parameter limit: {limit}. The value must be between 1 and 1000."),
        )
        .at_query_param("limit"));
    }
    let (ids, total) = vendor::ids_page(&sim.db(), rt, limit, offset).map_err(storage)?;
    let page = |off: u64| format!("{}/{}?limit={limit}&offset={off}", links.0, rt.name);
    let has_more = offset + (ids.len() as u64) < total;
    let mut rels = vec![json!({"rel": "first", "href": page(0)})];
    if offset > 0 {
        rels.push(json!({"rel": "prev", "href": page(offset.saturating_sub(limit))}));
    }
    if has_more {
        rels.push(json!({"rel": "next", "href": page(offset + limit)}));
    }
    let last = if total == 0 { 0 } else { (total - 1) / limit * limit };
    rels.push(json!({"rel": "last", "href": page(last)}));
    rels.push(json!({"rel": "self", "href": page(offset)}));
    let items: Vec<Value> = ids
        .iter()
        .map(|id| json!({"links": [{"rel": "self", "href": links.record(rt, *id)}], "id": id.to_string()}))
        .collect();
    Ok(json_response(
        COLLECTION,
        json!({"links": rels, "count": items.len(), "hasMore": has_more, "items": items, "offset": offset, "totalResults": total}),
    ))
}

fn delete(sim: &NetSuiteSim, rt: &RecordType, id: &str) -> Result<Response, RestError> {
    sim.permit(rt, Permission::Full)?;
    let id = find(sim, rt, id)?;
    let now = sim.inner.clock.now_secs();
    let db = sim.db();
    let tx = db.unchecked_transaction().map_err(storage)?;
    vendor::delete(&tx, rt, id, now).map_err(storage)?;
    tx.commit().map_err(storage)?;
    sim.inner.record_writes.fetch_add(1, Ordering::SeqCst);
    Ok(StatusCode::NO_CONTENT.into_response())
}

enum Target {
    Create,
    Update(RecordId),
    /// PUT eid:<externalId>: create when missing, update otherwise.
    Upsert(String),
}

fn write(
    sim: &NetSuiteSim,
    rt: &RecordType,
    req: &Request,
    links: &Links<'_>,
    target: Target,
) -> Result<Response, RestError> {
    let checks = req.checks()?;
    let replace = Replace::parse(rt, req.param("replace"), req.flag("replaceSelectedFields"))?;
    let body: Value = serde_json::from_slice(&req.body).map_err(|e| {
        RestError::new(StatusCode::BAD_REQUEST, "INVALID_CONTENT", format!("The request body is not valid JSON: {e}."))
    })?;
    let Value::Object(body) = body else {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTENT",
            "The request body must be a JSON object of record fields.",
        ));
    };
    // Injected rejections are the vendor write-back's (NetSuiteSim::reject_vendor_writes).
    let rejections = match rt.name == VENDOR.name {
        true => sim.inner.vendor_rejections.lock().unwrap().clone(),
        false => Vec::new(),
    };
    let one_world = sim.inner.one_world.load(Ordering::SeqCst);
    // One lock for the whole write: a repeated upsert finds the record the first one made.
    let db = sim.db();
    let existing = match &target {
        Target::Create => None,
        Target::Update(rid) => Some(vendor::find(&db, rt, rid).map_err(storage)?.ok_or_else(not_found)?),
        Target::Upsert(eid) => vendor::find(&db, rt, &RecordId::External(eid.clone())).map_err(storage)?,
    };
    sim.permit(rt, if existing.is_some() { Permission::Edit } else { Permission::Create })?;
    let mut changes = vendor::parse(&db, rt, &body, checks)?;
    if let Target::Upsert(eid) = &target {
        match changes.value("externalId") {
            Some(rusqlite::types::Value::Text(given)) if given != eid => {
                return Err(RestError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_CONTENT",
                    format!("The body's externalId '{given}' differs from the external ID in the URL ('{eid}')."),
                )
                .at_path("externalId"));
            }
            _ => changes.set_external_id(rt, eid),
        }
    }
    let ctx = WriteContext { now: sim.inner.clock.now_secs(), one_world, replace: &replace, rejections: &rejections };
    let tx = db.unchecked_transaction().map_err(storage)?;
    let id = match existing {
        Some(id) => vendor::update(&tx, rt, id, &changes, &ctx).map(|()| id)?,
        None => vendor::create(&tx, rt, &changes, &ctx)?,
    };
    tx.commit().map_err(storage)?;
    sim.inner.record_writes.fetch_add(1, Ordering::SeqCst);
    match target {
        Target::Upsert(eid) if sim.inner.upsert_location_by_eid.load(Ordering::SeqCst) => {
            let location = format!("{}/{}/eid:{eid}", links.0, rt.name);
            Ok((StatusCode::NO_CONTENT, [("location", location)]).into_response())
        }
        _ => Ok(written(links, rt, id)),
    }
}

impl ScriptedFailure {
    /// The answer NetSuite gives for this failure.
    pub(super) fn answer(self) -> RestError {
        match self {
            ScriptedFailure::TooManyRequests => RestError::too_many_requests(),
            ScriptedFailure::InvalidLogin => RestError::invalid_login(),
            ScriptedFailure::Unexpected | ScriptedFailure::UnexpectedAfterApplying => RestError::unexpected(),
        }
    }
}
