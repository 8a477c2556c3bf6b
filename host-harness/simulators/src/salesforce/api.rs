//! The REST resources under /services/data/vXX.X: Composite, sObject
//! Collections (create, retrieve, update, upsert, delete), the record resources (create, read,
//! update, delete by Id; upsert by external id), query and queryAll, and
//! Bulk API 2.0 ingest. Composite subrequests go through the same dispatch
//! as top-level requests.

use super::schema::FieldType;
use super::soql::{self, QueryCall};
use super::store::{Deleted, Org, Read, RecordError, RequestError, WriteError};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub const MAX_COLLECTION_RECORDS: usize = 200;
pub const MAX_COMPOSITE_SUBREQUESTS: usize = 25;
pub const MAX_COMPOSITE_COLLECTIONS: usize = 5;
/// Collections upsert and `created` in upsert results exist from v46.0.
const MIN_UPSERT_VERSION: f64 = 46.0;
/// Summer '26; the versions before 31.0 are retired.
pub const LATEST_VERSION: &str = "67.0";
pub const OLDEST_VERSION: u32 = 31;

/// An API answer: status and JSON body (None = no body).
pub type Answer = (u16, Option<Value>);

fn fail(e: RequestError) -> Answer {
    (e.status, Some(e.body()))
}

fn not_found(path: &str) -> Answer {
    fail(RequestError::new(404, "NOT_FOUND", format!("The requested resource does not exist: {path}")))
}

/// Parses `vNN.N` and checks it is a version the org serves.
pub fn version(segment: &str) -> Option<f64> {
    let v: f64 = segment.strip_prefix('v')?.parse().ok()?;
    (f64::from(OLDEST_VERSION)..=LATEST_VERSION.parse::<f64>().ok()?).contains(&v).then_some(v)
}

/// A request body: as received, or a Composite subrequest's, already parsed
/// (and moved out of the request, so its records are stored without a copy).
pub enum Body<'a> {
    Bytes(&'a [u8]),
    Parsed(Option<Value>),
}

impl Body<'_> {
    /// The body as a JSON object.
    fn into_object(self) -> Result<Map<String, Value>, RequestError> {
        match self {
            Body::Bytes(bytes) => parse_object(bytes),
            Body::Parsed(Some(Value::Object(m))) => Ok(m),
            Body::Parsed(_) => {
                Err(RequestError::new(400, "JSON_PARSER_ERROR", "The request body must be a JSON object"))
            }
        }
    }

    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Body::Bytes(b) => std::borrow::Cow::Borrowed(b),
            Body::Parsed(v) => {
                std::borrow::Cow::Owned(v.as_ref().map(|v| v.to_string().into_bytes()).unwrap_or_default())
            }
        }
    }
}

/// Rows per query page unless Sforce-Query-Options asks otherwise.
pub const DEFAULT_QUERY_BATCH: usize = 2000;

/// The batch size a `Sforce-Query-Options` header value asks for, kept
/// within what Salesforce honours (200..=2000).
pub fn query_batch(options: Option<&str>) -> usize {
    options
        .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("batchSize=")?.trim().parse::<usize>().ok()))
        .map_or(DEFAULT_QUERY_BATCH, |b| b.clamp(200, 2000))
}

/// Routes `method path[?query]` (below /services/data/vXX.X) to a resource.
/// `batch` is the query page size the request asked for.
pub fn dispatch(
    org: &mut Org,
    method: &str,
    version: f64,
    path: &str,
    body: Body<'_>,
    now: i64,
    batch: usize,
) -> Answer {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", [which @ ("query" | "queryAll")]) => {
            let soql = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "q").map(|(_, v)| v.into_owned());
            let call = QueryCall {
                soql: soql.as_deref().unwrap_or_default(),
                all_rows: *which == "queryAll",
                batch,
                version,
                now,
            };
            answer(soql::query(org, &call).map(Some), 200)
        }
        ("GET", ["query" | "queryAll", locator]) => answer(soql::more(org, version, locator, now).map(Some), 200),
        ("DELETE", ["composite", "sobjects"]) => collections_delete(org, query, now),
        ("PATCH", ["composite", "sobjects"]) => collections_update(org, body, now),
        ("POST", ["composite", "sobjects"]) => collections_create(org, body, now),
        ("GET", ["composite", "sobjects", sobject]) => {
            let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let list = |name: &str| {
                params.get(name).map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            };
            collections_retrieve(org, version, sobject, list("ids"), list("fields"))
        }
        ("POST", ["composite", "sobjects", sobject]) => {
            let request = match body.into_object() {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let list = |name: &str| {
                request
                    .get(name)
                    .and_then(Value::as_array)
                    .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<String>>())
            };
            collections_retrieve(org, version, sobject, list("ids"), list("fields"))
        }
        ("POST", ["composite"]) => composite(org, version, body, now),
        ("PATCH", ["composite", "sobjects", sobject, ext_field]) if version >= MIN_UPSERT_VERSION => {
            collections_upsert(org, sobject, ext_field, body, now)
        }
        ("GET", ["sobjects", sobject, "describe"]) => describe(org, sobject),
        ("GET", ["sobjects"]) => describe_global(org),
        ("GET", ["sobjects", sobject]) => basic_info(org, sobject),
        ("GET", ["sobjects", sobject, which @ ("updated" | "deleted")]) => {
            changed_between(org, sobject, query, *which == "deleted", now)
        }
        ("GET", ["sobjects", sobject, id]) => record_by_id(org, version, sobject, id),
        ("GET", ["sobjects", sobject, ext_field, value]) => {
            record_by_external_id(org, version, sobject, ext_field, &path_value(value))
        }
        ("POST", ["sobjects", sobject] | ["sobjects", sobject, "Id"]) => create(org, sobject, body, now),
        ("PATCH" | "DELETE", ["sobjects", _, "Id"]) => fail(RequestError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD,POST"),
        )),
        ("PATCH", ["sobjects", sobject, id]) => update_by_id(org, sobject, id, body, now),
        ("DELETE", ["sobjects", sobject, id]) => delete_by_id(org, sobject, id, now),
        ("POST", ["jobs", "ingest"]) => super::bulk::create(org, version, &body.bytes(), now),
        ("PUT", ["jobs", "ingest", id, "batches"]) => super::bulk::upload(org, id, &body.bytes()),
        ("PATCH", ["jobs", "ingest", id]) => super::bulk::set_state(org, id, &body.bytes(), now),
        ("GET", ["jobs", "ingest", id]) => super::bulk::info(org, id),
        ("PATCH", ["sobjects", sobject, ext_field, value]) => {
            let update_only = form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "updateOnly" && v == "true");
            let upsert = SingleUpsert { sobject, ext_field, value: &path_value(value), update_only };
            single_upsert(org, version, &upsert, body, now)
        }
        _ => not_found(path),
    }
}

/// An answer from a result: `status` with its body, or the error's.
fn answer(result: Result<Option<Value>, RequestError>, status: u16) -> Answer {
    match result {
        Ok(body) => (status, body),
        Err(e) => fail(e),
    }
}

/// A record error as the record resources answer it: 400 with an error array.
fn record_failure(e: RecordError) -> Answer {
    (400, Some(json!([{ "message": e.message, "errorCode": e.status_code, "fields": e.fields }])))
}

fn no_such_object(sobject: &str) -> RequestError {
    RequestError::new(404, "NOT_FOUND", format!("The requested resource does not exist: sobject type '{sobject}'"))
}

fn no_such_record() -> Answer {
    fail(RequestError::new(404, "NOT_FOUND", "The requested resource does not exist"))
}

fn entity_is_deleted() -> Answer {
    (404, Some(json!([{ "message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": [] }])))
}

/// The object named in the path and the request's fields, both checked.
fn object_and_fields(
    org: &Org,
    sobject: &str,
    body: Body<'_>,
) -> Result<(super::schema::SObject, Map<String, Value>), RequestError> {
    let object = org.object(sobject).cloned().ok_or_else(|| no_such_object(sobject))?;
    let record = body.into_object()?;
    org.check_fields(&object, &record)?;
    Ok((object, record))
}

/// `POST sobjects/{SObject}`: 201 with the new record's id.
fn create(org: &mut Org, sobject: &str, body: Body<'_>, now: i64) -> Answer {
    let (object, record) = match object_and_fields(org, sobject, body) {
        Ok(checked) => checked,
        Err(e) => return fail(e),
    };
    match org.create(&object, record, now) {
        Ok(id) => (201, Some(json!({ "id": id, "success": true, "errors": [] }))),
        Err(e) => record_failure(e),
    }
}

/// `PATCH sobjects/{SObject}/{Id}`: 204 with no body.
fn update_by_id(org: &mut Org, sobject: &str, id: &str, body: Body<'_>, now: i64) -> Answer {
    let (object, record) = match object_and_fields(org, sobject, body) {
        Ok(checked) => checked,
        Err(e) => return fail(e),
    };
    match org.update(&object, id, record, now) {
        Ok(_) => (204, None),
        Err(WriteError::NotFound) => no_such_record(),
        Err(WriteError::Deleted) => entity_is_deleted(),
        Err(WriteError::Record(e)) => record_failure(e),
    }
}

/// `DELETE sobjects/{SObject}/{Id}`: 204, the record going to the Recycle Bin.
fn delete_by_id(org: &mut Org, sobject: &str, id: &str, now: i64) -> Answer {
    let Some(object) = org.object(sobject) else { return fail(no_such_object(sobject)) };
    match org.read(object.name, id) {
        Read::Missing => no_such_record(),
        Read::Deleted => entity_is_deleted(),
        Read::Live(_) => match org.delete(id, now) {
            Deleted::Ok => (204, None),
            Deleted::AlreadyDeleted => entity_is_deleted(),
            Deleted::NoSuchId => no_such_record(),
            Deleted::Locked(e) => record_failure(e),
        },
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, RequestError> {
    // UTF-8 checked once for the whole body: serde_json checks every string
    // it reads from bytes (an eighth of a Composite call's parse), none it
    // reads from a str. Bytes that are not UTF-8 get the byte reader's error.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<Value>(text),
        Err(_) => serde_json::from_slice::<Value>(body),
    };
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RequestError::new(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")),
        Err(e) => Err(RequestError::new(400, "JSON_PARSER_ERROR", format!("Unexpected character: {e}"))),
    }
}

/// The object of an upsert by `ext_field`, which must be an External ID
/// field (or, for a single-record upsert only, `Id`: sObject Collections
/// upsert takes external ids alone).
fn check_external_id_field<'o>(
    org: &'o Org,
    sobject: &str,
    ext_field: &str,
    id_allowed: bool,
) -> Result<&'o super::schema::SObject, RequestError> {
    let object = org.object(sobject).ok_or_else(|| {
        RequestError::new(404, "NOT_FOUND", format!("The requested resource does not exist: sobject type '{sobject}'"))
    })?;
    if !object.field(ext_field).is_some_and(|f| f.external_id || (id_allowed && f.name == "Id")) {
        return Err(RequestError::new(
            404,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {ext_field}"),
        ));
    }
    Ok(object)
}

fn result_json(r: Result<super::store::Upserted, RecordError>) -> Value {
    match r {
        Ok(u) => json!({ "id": u.id, "success": true, "errors": [], "created": u.created }),
        Err(e) => json!({ "id": null, "success": false, "errors": [e.to_json()] }),
    }
}

/// An sObject Collections request body: its `allOrNone` and its records,
/// each a JSON object, at most 200 of them.
fn collection_request(body: Body<'_>) -> Result<(bool, Vec<Map<String, Value>>), RequestError> {
    let mut request = body.into_object()?;
    let all_or_none = request.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let Some(Value::Array(records)) = request.remove("records") else {
        return Err(RequestError::new(400, "JSON_PARSER_ERROR", "The request body must include a records array"));
    };
    if records.len() > MAX_COLLECTION_RECORDS {
        return Err(RequestError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!("record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"),
        ));
    }
    records
        .into_iter()
        .map(|r| match r {
            Value::Object(m) => Ok(m),
            _ => Err(RequestError::new(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")),
        })
        .collect::<Result<_, _>>()
        .map(|records| (all_or_none, records))
}

/// What allOrNone answers for a record that would have saved.
fn rolled_back() -> RecordError {
    RecordError {
        status_code: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        message: "Record rolled back because not all records were valid and the request was using AllOrNone header"
            .into(),
        fields: vec![],
    }
}

fn collections_upsert(org: &mut Org, sobject: &str, ext_field: &str, body: Body<'_>, now: i64) -> Answer {
    let object = match check_external_id_field(org, sobject, ext_field, false) {
        Ok(o) => o.clone(),
        Err(e) => return fail(e),
    };
    let (all_or_none, records) = match collection_request(body) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut parsed = Vec::with_capacity(records.len());
    for m in records {
        if let Err(e) = org.check_fields(&object, &m) {
            return fail(e);
        }
        parsed.push(m);
    }
    // The same external id twice in one request fails every row that has it.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &parsed {
        if let Some(v) = m.get(ext_field).and_then(Value::as_str) {
            *seen.entry(v.to_ascii_lowercase()).or_default() += 1;
        }
    }
    // The request's changes are undone together for allOrNone when a row fails.
    org.table.begin();
    let writes_before = org.writes;
    let mut results: Vec<Result<super::store::Upserted, RecordError>> = Vec::with_capacity(parsed.len());
    for m in parsed {
        let dup = m
            .get(ext_field)
            .and_then(Value::as_str)
            .filter(|v| seen.get(&v.to_ascii_lowercase()).copied().unwrap_or(0) > 1);
        let typed = m.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str);
        let refused = match (dup, typed) {
            (Some(v), _) => Some(RecordError {
                status_code: "DUPLICATE_VALUE",
                message: format!("Duplicate external id specified: {v}"),
                fields: vec![],
            }),
            (None, None) => Some(RecordError {
                status_code: "INVALID_TYPE",
                message: "Must specify a type in attributes".into(),
                fields: vec![],
            }),
            (None, Some(t)) if !t.eq_ignore_ascii_case(object.name) => Some(RecordError {
                status_code: "INVALID_TYPE",
                message: format!("Record type {t} does not match the request's sObject {}", object.name),
                fields: vec![],
            }),
            (None, Some(_)) => None,
        };
        results.push(match refused {
            Some(e) => Err(e),
            None => org.upsert(&object, ext_field, m, now),
        });
    }
    if all_or_none && results.iter().any(Result::is_err) {
        org.table.rollback();
        org.writes = writes_before;
        let rolled: Vec<Value> = results
            .into_iter()
            .map(|r| match r {
                Err(e) => result_json(Err(e)),
                Ok(_) => result_json(Err(rolled_back())),
            })
            .collect();
        return (200, Some(Value::Array(rolled)));
    }
    org.table.release();
    (200, Some(Value::Array(results.into_iter().map(result_json).collect())))
}

/// GET /sobjects/{SObject}/describe: the object and its fields.
/// `GET sobjects/`: the objects the org has, as describeGlobal lists them.
fn describe_global(org: &Org) -> Answer {
    let sobjects: Vec<Value> = org.objects.iter().map(object_summary).collect();
    (200, Some(json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects })))
}

/// An object as describeGlobal and its basic information list it.
fn object_summary(o: &super::schema::SObject) -> Value {
    json!({
        "name": o.name,
        "label": o.name.trim_end_matches("__c").replace('_', " "),
        "custom": o.name.ends_with("__c"),
        "keyPrefix": o.key_prefix,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
    })
}

/// `GET sobjects/{SObject}/{Id}`: the record with its system fields; 404
/// ENTITY_IS_DELETED for a record in the Recycle Bin, NOT_FOUND for an id
/// the org does not hold.
fn record_by_id(org: &Org, version: f64, sobject: &str, id: &str) -> Answer {
    let Some(object) = org.object(sobject) else { return fail(no_such_object(sobject)) };
    let record = match org.read(object.name, id) {
        Read::Live(record) => record,
        Read::Deleted => return entity_is_deleted(),
        Read::Missing => return no_such_record(),
    };
    let id = super::schema::normalize_id(id).unwrap_or_else(|| id.to_string());
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({ "type": object.name, "url": format!("/services/data/v{version:.1}/sobjects/{}/{id}", object.name) }),
    );
    out.insert("Id".into(), Value::String(id));
    out.extend(record);
    (200, Some(Value::Object(out)))
}

/// A path segment as the client meant it: clients percent-encode an
/// external id's value (simple-salesforce quotes every character).
fn path_value(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// `GET sobjects/{SObject}/{ExtIdField}/{value}`: the record carrying that
/// value; 300 with their locations when several do.
fn record_by_external_id(org: &Org, version: f64, sobject: &str, ext_field: &str, value: &str) -> Answer {
    let object = match check_external_id_field(org, sobject, ext_field, false) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    match org.matches(object.name, value).as_slice() {
        [] => no_such_record(),
        [id] => record_by_id(org, version, object.name, id),
        several => {
            let urls: Vec<String> = several
                .iter()
                .map(|id| format!("/services/data/v{version:.1}/sobjects/{}/{id}", object.name))
                .collect();
            (300, Some(json!(urls)))
        }
    }
}

/// `GET sobjects/{SObject}`: the object's basic information.
fn basic_info(org: &Org, sobject: &str) -> Answer {
    let Some(object) = org.object(sobject) else { return fail(no_such_object(sobject)) };
    (200, Some(json!({ "objectDescribe": object_summary(object), "recentItems": [] })))
}

/// How far back getUpdated (30 days) and getDeleted (15 days) look.
const UPDATED_WINDOW_SECS: i64 = 30 * 86_400;
const DELETED_WINDOW_SECS: i64 = 15 * 86_400;
/// getUpdated refuses a window holding this many ids or more.
const UPDATED_ID_LIMIT: usize = 600_000;

/// `GET sobjects/{SObject}/updated/?start=&end=` (getUpdated) and
/// `.../deleted/?start=&end=` (getDeleted): the records changed, or sent
/// to the Recycle Bin, in the window.
fn changed_between(org: &Org, sobject: &str, query: &str, deleted: bool, now: i64) -> Answer {
    let Some(object) = org.object(sobject) else { return fail(no_such_object(sobject)) };
    let bound = |name: &str| {
        let text = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let text = text.ok_or_else(|| {
            RequestError::new(
                400,
                "MISSING_ARGUMENT",
                format!("The '{name}' parameter is required (an ISO 8601 dateTime)"),
            )
        })?;
        super::datetime::parse_datetime(&text).map(|ms| ms.div_euclid(1000)).ok_or_else(|| {
            RequestError::new(400, "INVALID_REPLICATION_DATE", format!("'{text}' is not a valid dateTime for {name}"))
        })
    };
    let (start, end) = match (bound("start"), bound("end")) {
        (Ok(start), Ok(end)) => (start, end.min(now)),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let window = if deleted { DELETED_WINDOW_SECS } else { UPDATED_WINDOW_SECS };
    if start > end || start < now - window {
        return fail(RequestError::new(
            400,
            "INVALID_REPLICATION_DATE",
            format!("startDate must be before endDate and no more than {} days ago", window / 86_400),
        ));
    }
    let found = org.changed_between(object.name, start, end, deleted);
    let covered = super::datetime::format(end);
    if deleted {
        let records: Vec<Value> =
            found.iter().map(|(id, at)| json!({ "id": id, "deletedDate": super::datetime::format(*at) })).collect();
        let earliest = super::datetime::format(now - window);
        return (
            200,
            Some(json!({ "deletedRecords": records, "earliestDateAvailable": earliest, "latestDateCovered": covered })),
        );
    }
    if found.len() >= UPDATED_ID_LIMIT {
        return fail(RequestError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!("The window holds {} or more ids: ask for a shorter one", UPDATED_ID_LIMIT),
        ));
    }
    let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    (200, Some(json!({ "ids": ids, "latestDateCovered": covered })))
}

fn describe(org: &Org, sobject: &str) -> Answer {
    let Some(object) = org.object(sobject) else {
        return fail(RequestError::new(
            404,
            "NOT_FOUND",
            format!("The requested resource does not exist: sobject type '{sobject}'"),
        ));
    };
    let fields: Vec<Value> = object
        .fields
        .iter()
        .map(|f| {
            let (soap, kind) = match f.kind {
                FieldType::Id => ("tns:ID", "id"),
                FieldType::String => ("xsd:string", "string"),
                FieldType::TextArea => ("xsd:string", "textarea"),
                FieldType::Email => ("xsd:string", "email"),
                FieldType::Phone => ("xsd:string", "phone"),
                FieldType::Reference => ("tns:ID", "reference"),
                FieldType::Boolean => ("xsd:boolean", "boolean"),
                FieldType::DateTime => ("xsd:dateTime", "datetime"),
                FieldType::Int => ("xsd:int", "int"),
            };
            json!({
                "name": f.name,
                "label": f.name.trim_end_matches("__c").replace('_', " "),
                "type": kind,
                "soapType": soap,
                "length": if matches!(f.kind, FieldType::Boolean | FieldType::DateTime | FieldType::Int) { 0 } else { f.length },
                "digits": if f.kind == FieldType::Int { f.length } else { 0 },
                "externalId": f.external_id,
                "idLookup": f.external_id || f.kind == FieldType::Id,
                "unique": f.unique,
                "caseSensitive": false,
                "createable": f.updateable,
                "updateable": f.updateable,
                "nillable": !f.required && !f.system && f.kind != FieldType::Boolean,
                "defaultedOnCreate": f.system || f.kind == FieldType::Boolean,
                "calculated": false,
                "autoNumber": false,
                "custom": f.name.ends_with("__c"),
                "relationshipName": f.relationship.map(|(r, _)| r),
                "referenceTo": f.relationship.map(|(_, t)| vec![t]).unwrap_or_default(),
                "picklistValues": [],
                "restrictedPicklist": false,
            })
        })
        .collect();
    (
        200,
        Some(json!({
            "name": object.name,
            "label": object.name.trim_end_matches("__c"),
            "custom": object.name.ends_with("__c"),
            "keyPrefix": object.key_prefix,
            "createable": true,
            "updateable": true,
            "deletable": true,
            "queryable": true,
            "fields": fields,
            "childRelationships": child_relationships(org, object.name),
        })),
    )
}

/// The lookups of every object to `sobject`, as describe lists them.
fn child_relationships(org: &Org, sobject: &str) -> Vec<Value> {
    org.objects
        .iter()
        .flat_map(|o| o.fields.iter().map(move |f| (o.name, f)))
        .filter(|(_, f)| f.relationship.is_some_and(|(_, target)| target == sobject))
        .map(|(child, f)| {
            // Salesforce's defaults: `Contacts` on Account, `<Label>s__r` for a custom lookup.
            let name = match (child, f.name) {
                ("Contact", "AccountId") => "Contacts".to_string(),
                _ => format!("{}s__r", child.trim_end_matches("__c")),
            };
            json!({
                "cascadeDelete": f.cascade_delete,
                "childSObject": child,
                "deprecatedAndHidden": false,
                "field": f.name,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": name,
                "restrictedDelete": false,
            })
        })
        .collect()
}

fn collections_delete(org: &mut Org, query: &str, now: i64) -> Answer {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let ids: Vec<&str> =
        params.get("ids").map(|v| v.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    if ids.is_empty() {
        return fail(RequestError::new(400, "MISSING_ARGUMENT", "ids parameter is required"));
    }
    if ids.len() > MAX_COLLECTION_RECORDS {
        return fail(RequestError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!("record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"),
        ));
    }
    let results: Vec<Value> = ids
        .iter()
        .map(|id| match org.delete(id, now) {
            Deleted::Ok => json!({ "id": id, "success": true, "errors": [] }),
            Deleted::AlreadyDeleted => json!({ "id": id, "success": false,
                "errors": [{ "statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": [] }] }),
            Deleted::NoSuchId => json!({ "id": id, "success": false,
                "errors": [{ "statusCode": "INVALID_CROSS_REFERENCE_KEY", "message": "invalid cross reference id", "fields": [] }] }),
            Deleted::Locked(e) => json!({ "id": id, "success": false, "errors": [e.to_json()] }),
        })
        .collect();
    (200, Some(Value::Array(results)))
}

/// `PATCH composite/sobjects`: up to 200 records updated by their `id`,
/// in order, each `attributes.type` naming its object; SaveResults in the
/// same order. A record in the Recycle Bin fails ENTITY_IS_DELETED, an id
/// the org does not hold INVALID_CROSS_REFERENCE_KEY; nothing is created.
fn collections_update(org: &mut Org, body: Body<'_>, now: i64) -> Answer {
    let (all_or_none, records) = match collection_request(body) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut parsed = Vec::with_capacity(records.len());
    for mut m in records {
        let typed = m.remove("attributes").and_then(|a| a.get("type").and_then(Value::as_str).map(str::to_string));
        let id = m.remove("id").or_else(|| m.remove("Id")).and_then(|v| v.as_str().map(str::to_string));
        let object = typed.as_deref().and_then(|t| org.object(t)).cloned();
        if let Some(object) = &object
            && let Err(e) = org.check_fields(object, &m)
        {
            return fail(e);
        }
        parsed.push((object, id, m));
    }
    let error =
        |code: &'static str, message: &str| RecordError { status_code: code, message: message.into(), fields: vec![] };
    org.table.begin();
    let writes_before = org.writes;
    let mut results: Vec<(Option<String>, Result<(), RecordError>)> = Vec::with_capacity(parsed.len());
    for (object, id, m) in parsed {
        let outcome = match (object, &id) {
            (None, _) => Err(error("INVALID_TYPE", "Must specify a valid type in attributes")),
            (Some(_), None) => Err(error("MISSING_ARGUMENT", "id not specified in an update call")),
            (Some(object), Some(id)) => match org.update(&object, id, m, now) {
                Ok(_) => Ok(()),
                Err(WriteError::NotFound) => Err(error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")),
                Err(WriteError::Deleted) => Err(error("ENTITY_IS_DELETED", "entity is deleted")),
                Err(WriteError::Record(e)) => Err(e),
            },
        };
        results.push((id, outcome));
    }
    let failed = results.iter().any(|(_, r)| r.is_err());
    if all_or_none && failed {
        org.table.rollback();
        org.writes = writes_before;
    } else {
        org.table.release();
    }
    let undone = all_or_none && failed;
    let answers: Vec<Value> = results
        .into_iter()
        .map(|(id, r)| match r {
            Ok(()) if !undone => json!({ "id": id, "success": true, "errors": [] }),
            Ok(()) => json!({ "id": id, "success": false, "errors": [rolled_back().to_json()] }),
            Err(e) => json!({ "id": id, "success": false, "errors": [e.to_json()] }),
        })
        .collect();
    (200, Some(Value::Array(answers)))
}

/// `POST composite/sobjects`: up to 200 records created in order, each
/// `attributes.type` naming its object (types may mix); SaveResults
/// `{id, success, errors}` in the same order. A record naming an `Id` fails
/// as a single create does; allOrNone undoes the request when any fails.
fn collections_create(org: &mut Org, body: Body<'_>, now: i64) -> Answer {
    let (all_or_none, records) = match collection_request(body) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut parsed = Vec::with_capacity(records.len());
    for mut m in records {
        let typed = m.remove("attributes").and_then(|a| a.get("type").and_then(Value::as_str).map(str::to_string));
        let object = typed.as_deref().and_then(|t| org.object(t)).cloned();
        if let Some(object) = &object
            && let Err(e) = org.check_fields(object, &m)
        {
            return fail(e);
        }
        parsed.push((object, m));
    }
    org.table.begin();
    let writes_before = org.writes;
    let results: Vec<Result<String, RecordError>> = parsed
        .into_iter()
        .map(|(object, m)| match object {
            None => Err(RecordError::new("INVALID_TYPE", "Must specify a valid type in attributes", &[])),
            Some(object) => org.create(&object, m, now),
        })
        .collect();
    let undone = all_or_none && results.iter().any(Result::is_err);
    if undone {
        org.table.rollback();
        org.writes = writes_before;
    } else {
        org.table.release();
    }
    let answers: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(id) if !undone => json!({ "id": id, "success": true, "errors": [] }),
            Ok(_) => json!({ "id": null, "success": false, "errors": [rolled_back().to_json()] }),
            Err(e) => json!({ "id": null, "success": false, "errors": [e.to_json()] }),
        })
        .collect();
    (200, Some(Value::Array(answers)))
}

/// Ids a Collections retrieve takes at most (the POST form; a GET runs
/// into the URL length first, at about 800).
pub const MAX_RETRIEVE_IDS: usize = 2000;

/// `GET composite/sobjects/{SObject}?ids=&fields=` and its POST form with
/// `{ids, fields}`: the records of one object, in the order of the ids,
/// with the fields asked for; null for an id the org does not hold as a
/// live record of that object. A field the object lacks fails the request.
fn collections_retrieve(
    org: &Org,
    version: f64,
    sobject: &str,
    ids: Option<Vec<String>>,
    fields: Option<Vec<String>>,
) -> Answer {
    let Some(object) = org.object(sobject) else { return fail(no_such_object(sobject)) };
    let (Some(ids), Some(fields)) = (ids.filter(|i| !i.is_empty()), fields.filter(|f| !f.is_empty())) else {
        return fail(RequestError::new(400, "MISSING_ARGUMENT", "ids and fields are required"));
    };
    if ids.len() > MAX_RETRIEVE_IDS {
        return fail(RequestError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!("cannot retrieve more than {MAX_RETRIEVE_IDS} records in one call"),
        ));
    }
    let mut names = Vec::with_capacity(fields.len());
    for f in &fields {
        match object.field(f) {
            Some(field) => names.push(field.name),
            None => {
                return fail(RequestError::new(
                    400,
                    "INVALID_FIELD",
                    format!("No such column '{f}' on entity '{}'", object.name),
                ));
            }
        }
    }
    let records: Vec<Value> = ids
        .iter()
        .map(|id| {
            let Read::Live(record) = org.read(object.name, id) else { return Value::Null };
            let id = super::schema::normalize_id(id).unwrap_or_else(|| id.clone());
            let mut out = Map::new();
            out.insert(
                "attributes".into(),
                json!({ "type": object.name, "url": format!("/services/data/v{version:.1}/sobjects/{}/{id}", object.name) }),
            );
            for name in &names {
                let value = if *name == "Id" { Value::String(id.clone()) } else { record.get(*name).cloned().unwrap_or(Value::Null) };
                out.insert(name.to_string(), value);
            }
            Value::Object(out)
        })
        .collect();
    (200, Some(Value::Array(records)))
}

/// `PATCH sobjects/{SObject}/{ExtIdField}/{value}[?updateOnly=true]`.
struct SingleUpsert<'a> {
    sobject: &'a str,
    ext_field: &'a str,
    /// The path's value, percent-decoded (clients encode it).
    value: &'a str,
    /// No record is created: a value nothing carries is 404.
    update_only: bool,
}

fn single_upsert(org: &mut Org, version: f64, upsert: &SingleUpsert<'_>, body: Body<'_>, now: i64) -> Answer {
    let SingleUpsert { sobject, ext_field, value, update_only } = *upsert;
    let object = match check_external_id_field(org, sobject, ext_field, true) {
        Ok(o) => o.clone(),
        Err(e) => return fail(e),
    };
    let mut record = match body.into_object() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Err(e) = org.check_fields(&object, &record) {
        return fail(e);
    }
    record.insert(ext_field.to_string(), Value::String(value.to_string()));
    // Several records share the value: 300 with their locations, nothing written.
    let matching = org.matches(object.name, value);
    if matching.len() > 1 {
        let urls: Vec<String> =
            matching.iter().map(|id| format!("/services/data/v{version:.1}/sobjects/{}/{id}", object.name)).collect();
        return (300, Some(json!(urls)));
    }
    if update_only && matching.is_empty() {
        return no_such_record();
    }
    match org.upsert(&object, ext_field, record, now) {
        // `created` is in the answer from v46.0 on.
        Ok(u) if u.created && version < MIN_UPSERT_VERSION => {
            (201, Some(json!({ "id": u.id, "success": true, "errors": [] })))
        }
        Ok(u) if u.created => (201, Some(json!({ "id": u.id, "success": true, "errors": [], "created": true }))),
        Ok(_) if version < MIN_UPSERT_VERSION => (204, None),
        Ok(u) => (200, Some(json!({ "id": u.id, "success": true, "errors": [], "created": false }))),
        Err(e) => record_failure(e),
    }
}

/// From this version Salesforce collates Composite subrequests unless told
/// not to (`collateSubrequests`), and then runs them in no promised order.
const COLLATING_VERSION: f64 = 49.0;

/// A subrequest's answer as the part of a failed allOrNone Composite request
/// that was rolled back or never run.
fn processing_halted() -> Answer {
    (
        400,
        Some(json!([{
            "errorCode": "PROCESSING_HALTED",
            "message": "The transaction was rolled back since another operation in the same transaction failed."
        }])),
    )
}

/// Whether a subrequest's answer is a failure: an error status, or
/// Collections results with a record that failed.
fn subrequest_failed(answer: &Answer) -> bool {
    answer.0 >= 400
        || answer
            .1
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|results| results.iter().any(|r| r.get("success").and_then(Value::as_bool) == Some(false)))
}

fn composite(org: &mut Org, api_version: f64, body: Body<'_>, now: i64) -> Answer {
    let may_reference = may_reference(&body);
    let mut request = match body.into_object() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Some(Value::Array(subrequests)) = request.remove("compositeRequest") else {
        return fail(RequestError::new(400, "JSON_PARSER_ERROR", "The request body must include compositeRequest"));
    };
    if subrequests.len() > MAX_COMPOSITE_SUBREQUESTS {
        return fail(RequestError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Composite requests may contain at most {MAX_COMPOSITE_SUBREQUESTS} subrequests"),
        ));
    }
    let heavy = subrequests
        .iter()
        .filter(|s| {
            s.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.contains("/composite/sobjects") || u.contains("/query"))
        })
        .count();
    if heavy > MAX_COMPOSITE_COLLECTIONS {
        return fail(RequestError::new(
            400,
            "LIMIT_EXCEEDED",
            format!(
                "Composite requests may contain at most {MAX_COMPOSITE_COLLECTIONS} sObject Collections or query subrequests"
            ),
        ));
    }
    let all_or_none = request.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let mut earlier: HashMap<String, Value> = HashMap::new();
    // Answers are kept for `@{ref}` only when some subrequest has one (a
    // copy of each upsert's 200 results cost a tenth of a Composite call).
    let referenced = may_reference && subrequests.iter().skip(1).any(has_reference);
    // Collated, Salesforce promises no order but that of references: this
    // org runs such subrequests last to first, so a client that counts on
    // the order it gave finds out here rather than in production.
    let collated = api_version >= COLLATING_VERSION
        && request.get("collateSubrequests").and_then(Value::as_bool).unwrap_or(true)
        && !referenced;
    let order: Vec<usize> =
        if collated { (0..subrequests.len()).rev().collect() } else { (0..subrequests.len()).collect() };
    let references: Vec<Value> =
        subrequests.iter().map(|s| s.get("referenceId").cloned().unwrap_or(Value::Null)).collect();
    let mut answers: Vec<Option<Answer>> = subrequests.iter().map(|_| None).collect();
    let mut subrequests: Vec<Option<Value>> = subrequests.into_iter().map(Some).collect();
    if all_or_none {
        org.table.begin();
    }
    let writes_before = org.writes;
    let mut halted = false;
    for i in order {
        let Some(mut sub) = subrequests[i].take() else { continue };
        let reference = references[i].clone();
        // The request's allOrNone holds for its Collections too.
        if all_or_none
            && let Some(inner) = sub.get_mut("body").and_then(Value::as_object_mut)
            && inner.contains_key("records")
        {
            inner.insert("allOrNone".into(), Value::Bool(true));
        }
        let method = sub.get("method").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
        // `@{ref.field}` names a value of an earlier subrequest's answer.
        let mut sub = if !referenced || earlier.is_empty() || !has_reference(&sub) {
            sub
        } else {
            resolve_references(&sub, &earlier)
        };
        let body = Body::Parsed(sub.get_mut("body").map(Value::take));
        let url = sub.get("url").and_then(Value::as_str).unwrap_or_default();
        let batch = query_batch(
            sub.get("httpHeaders")
                .and_then(Value::as_object)
                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("Sforce-Query-Options")))
                .and_then(|(_, v)| v.as_str()),
        );
        // Subrequest URLs carry their own version: /services/data/vXX.X/...
        let answer = url
            .strip_prefix("/services/data/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(v, rest)| Some((version(v)?, rest)))
            .map(|(v, rest)| dispatch(org, &method, v, rest, body, now, batch))
            .unwrap_or_else(|| not_found(url));
        if let Some(name) = reference.as_str().filter(|_| referenced) {
            earlier.insert(name.to_string(), answer.1.clone().unwrap_or(Value::Null));
        }
        let failed = all_or_none && subrequest_failed(&answer);
        answers[i] = Some(answer);
        if failed {
            halted = true;
            break;
        }
    }
    if halted {
        org.table.rollback();
        org.writes = writes_before;
        for answer in &mut answers {
            if !answer.as_ref().is_some_and(subrequest_failed) {
                *answer = Some(processing_halted());
            }
        }
    } else if all_or_none {
        org.table.release();
    }
    let responses: Vec<Value> = answers
        .into_iter()
        .zip(references)
        .map(|(answer, reference)| {
            let (status, body) = answer.unwrap_or_else(processing_halted);
            json!({
                "body": body.unwrap_or(Value::Null),
                "httpHeaders": {},
                "httpStatusCode": status,
                "referenceId": reference,
            })
        })
        .collect();
    (200, Some(json!({ "compositeResponse": responses })))
}

/// Whether a request body may hold an `@{…}` reference: the text has `@{`
/// or a `\u` escape (which could spell it). Most bodies have neither, and
/// are not searched value by value.
fn may_reference(body: &Body<'_>) -> bool {
    match body {
        Body::Bytes(text) => {
            memchr::memmem::find(text, b"@{").is_some() || memchr::memmem::find(text, b"\\u").is_some()
        }
        Body::Parsed(_) => true,
    }
}

/// Whether any string in `value` holds an `@{…}` reference: most
/// subrequests have none and are used as they are, without a copy.
fn has_reference(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("@{"),
        Value::Array(items) => items.iter().any(has_reference),
        Value::Object(map) => map.values().any(has_reference),
        _ => false,
    }
}

/// A copy of `value` whose strings have each `@{ref.path}` replaced by the
/// value at `path` (`field`, `records[0].Id`) in the answer of the earlier
/// subrequest `ref`; a reference that names nothing is left as written.
fn resolve_references(value: &Value, earlier: &HashMap<String, Value>) -> Value {
    match value {
        Value::String(s) if s.contains("@{") => Value::String(resolve_text(s, earlier)),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_references(v, earlier)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), resolve_references(v, earlier))).collect())
        }
        other => other.clone(),
    }
}

fn resolve_text(text: &str, earlier: &HashMap<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expression = &rest[start + 2..start + len];
        match lookup(expression, earlier) {
            Some(Value::String(s)) => out.push_str(&s),
            Some(other) => out.push_str(&other.to_string()),
            None => out.push_str(&rest[start..=start + len]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

fn lookup(expression: &str, earlier: &HashMap<String, Value>) -> Option<Value> {
    let mut parts = expression.split('.');
    let mut at = earlier.get(parts.next()?)?;
    for part in parts {
        let (name, index) = match part.split_once('[') {
            Some((name, idx)) => (name, Some(idx.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (part, None),
        };
        if !name.is_empty() {
            at = at.get(name)?;
        }
        if let Some(i) = index {
            at = at.get(i)?;
        }
    }
    Some(at.clone())
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn only_bodies_that_could_spell_a_reference_are_searched() {
        assert!(!may_reference(&Body::Bytes(br#"{"compositeRequest":[{"url":"/x","body":{"a":"b"}}]}"#)));
        assert!(may_reference(&Body::Bytes(br#"{"url":"/sobjects/Account/@{acct.id}"}"#)));
        // `\u0040{` is `@{` once parsed.
        let escaped = br#"{"url":"/sobjects/Account/\u0040{acct.id}"}"#;
        assert!(may_reference(&Body::Bytes(escaped)));
        let parsed: Value = serde_json::from_slice(escaped).unwrap();
        assert!(has_reference(&parsed));
    }

    #[test]
    fn references_resolve_to_earlier_answers_and_unknown_ones_stay() {
        let earlier = HashMap::from([
            ("acct".to_string(), json!({"id": "001A", "n": 3})),
            ("q".to_string(), json!({"records": [{"Id": "003B"}]})),
        ]);
        assert_eq!(resolve_text("/sobjects/Account/@{acct.id}", &earlier), "/sobjects/Account/001A");
        assert_eq!(resolve_text("@{q.records[0].Id}-@{acct.n}", &earlier), "003B-3");
        assert_eq!(resolve_text("@{nope.id} and @{acct", &earlier), "@{nope.id} and @{acct");
    }
}
