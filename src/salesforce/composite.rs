//! Upserts packed for API efficiency: sObject Collections requests of up to
//! 200 records, up to 5 of them in one Composite request, so 1,000 records
//! cost one counted API call.

use crate::http::retry::is_transient;
use crate::http::{Body, HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, OutcomeKind, Result, SObjectRecord, SalesforceError, UpsertOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::rc::Rc;

pub const MAX_RECORDS_PER_COLLECTION: usize = 200;
pub const MAX_COLLECTIONS_PER_COMPOSITE: usize = 5;
/// Records one Composite request carries: one counted API call.
pub const RECORDS_PER_COMPOSITE: usize = MAX_RECORDS_PER_COLLECTION * MAX_COLLECTIONS_PER_COMPOSITE;

/// One sObject Collections upsert: indices into the caller's records, all of
/// one sObject and external id field, no external id twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub sobject: String,
    pub external_id_field: String,
    pub indices: Vec<usize>,
    /// Started by an external id an earlier chunk holds: it must run after
    /// every chunk before it, so that the later version wins.
    pub repeats: bool,
}

/// Splits records into chunks in input order. A repeated external id starts a
/// new chunk (Salesforce fails both rows when one request holds it twice); a
/// chunk holding a record an earlier chunk holds is marked to run after the
/// chunks before it (see [`composite_body`]).
pub fn chunk(records: &[&SObjectRecord]) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    // Records of the chunks before the current one.
    let mut earlier: HashSet<(&str, &str)> = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        let fits = chunks.last().is_some_and(|c| {
            c.sobject == r.sobject
                && c.external_id_field == r.external_id_field
                && c.indices.len() < MAX_RECORDS_PER_COLLECTION
                && !seen.contains(r.external_id.as_str())
        });
        if !fits {
            if let Some(done) = chunks.last() {
                earlier.extend(
                    done.indices.iter().map(|&j| (records[j].sobject.as_str(), records[j].external_id.as_str())),
                );
            }
            chunks.push(Chunk {
                sobject: r.sobject.clone(),
                external_id_field: r.external_id_field.clone(),
                indices: Vec::new(),
                repeats: false,
            });
            seen.clear();
        }
        seen.insert(&r.external_id);
        let chunk = chunks.last_mut().expect("a chunk was just ensured");
        chunk.repeats |= earlier.contains(&(r.sobject.as_str(), r.external_id.as_str()));
        chunk.indices.push(i);
    }
    chunks
}

pub fn collection_path(api_version: &str, chunk: &Chunk) -> String {
    format!("/services/data/v{api_version}/composite/sobjects/{}/{}", chunk.sobject, chunk.external_id_field)
}

/// One Composite subrequest; its body is JSON text the connector wrote,
/// written once and sent as it is (again, when a transient failure makes it
/// go out twice), never parsed back.
#[derive(Debug)]
pub struct Subrequest {
    method: &'static str,
    url: String,
    body: Option<String>,
    /// Holds a later version of a record an earlier subrequest holds.
    repeats: bool,
}

/// A record as a Collections row: `attributes`, the external id, then the
/// fields, serialized from the record itself (no copy of its fields).
struct Row<'a>(&'a SObjectRecord);

impl Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Attributes<'a> {
            #[serde(rename = "type")]
            sobject: &'a str,
        }
        let r = self.0;
        let ext = r.external_id_field.as_str();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("attributes", &Attributes { sobject: &r.sobject })?;
        map.serialize_entry(ext, &r.external_id)?;
        for (k, v) in r.fields.iter().filter(|(k, _)| *k != ext && *k != "attributes") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One row's JSON text. `fields_json`, when given, is the record's fields
/// as serialized already (for the state's hash): it is copied after the
/// `attributes` instead of serializing the fields a second time, when it
/// holds the external id (the mapping puts it among the fields).
fn push_row(out: &mut String, record: &SObjectRecord, fields_json: Option<&str>) {
    let holds_key =
        || record.fields.get(&record.external_id_field).and_then(Value::as_str) == Some(record.external_id.as_str());
    match fields_json.and_then(|t| t.strip_prefix('{')).filter(|rest| rest != &"}" && holds_key()) {
        Some(rest) => {
            out.push_str(r#"{"attributes":{"type":"#);
            out.push_str(&serde_json::to_string(&record.sobject).expect("a string serializes"));
            out.push_str("},");
            out.push_str(rest);
        }
        None => out.push_str(&serde_json::to_string(&Row(record)).expect("records serialize")),
    }
}

/// One sObject Collections upsert, as a Composite subrequest. `texts` is
/// empty or holds each record's fields as JSON text (see [`push_row`]).
pub fn upsert_subrequest(
    api_version: &str,
    records: &[&SObjectRecord],
    texts: &[Option<&str>],
    chunk: &Chunk,
) -> Subrequest {
    let mut text = String::from(r#"{"allOrNone":false,"records":["#);
    for (n, &i) in chunk.indices.iter().enumerate() {
        if n > 0 {
            text.push(',');
        }
        push_row(&mut text, records[i], texts.get(i).copied().flatten());
    }
    text.push_str("]}");
    Subrequest { method: "PATCH", url: collection_path(api_version, chunk), body: Some(text), repeats: chunk.repeats }
}

/// One sObject Collections delete of up to 200 Salesforce ids.
pub fn delete_subrequest(api_version: &str, ids: &[&str]) -> Subrequest {
    Subrequest {
        method: "DELETE",
        url: format!("/services/data/v{api_version}/composite/sobjects?ids={}&allOrNone=false", ids.join(",")),
        body: None,
        repeats: false,
    }
}

/// One sObject Collections update by Salesforce id of up to 200 records:
/// unlike an upsert, it never creates one (a record deleted in Salesforce
/// fails `ENTITY_IS_DELETED`).
pub fn update_subrequest(api_version: &str, records: &[(&str, &SObjectRecord)]) -> Subrequest {
    let rows: Vec<Value> = records
        .iter()
        .map(|(id, r)| {
            let mut row = serde_json::Map::new();
            row.insert("attributes".into(), serde_json::json!({ "type": r.sobject }));
            row.insert("id".into(), Value::String(id.to_string()));
            row.extend(r.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(row)
        })
        .collect();
    let body = serde_json::json!({ "allOrNone": false, "records": rows });
    Subrequest {
        method: "PATCH",
        url: format!("/services/data/v{api_version}/composite/sobjects"),
        body: Some(body.to_string()),
        repeats: false,
    }
}

pub fn reference_id(n: usize) -> String {
    format!("c{n}")
}

/// Whether Salesforce would run `api_version`'s Composite subrequests in an
/// order of its own: from v49 it collates them (`collateSubrequests`, on by
/// default), keeping the order given only when told not to.
pub fn collates(api_version: &str) -> bool {
    api_version.split('.').next().and_then(|major| major.parse::<u32>().ok()).is_none_or(|major| major >= 49)
}

/// The Composite body for up to five subrequests, numbered `c0`…, as JSON
/// text written straight from the subrequests (their bodies are copied as
/// they are, not parsed again). Collated, Salesforce runs subrequests in no
/// promised order: a body holding a later version of a record after its
/// earlier one asks for them in order (`collateSubrequests: false`); any
/// other keeps the faster collated run.
pub fn composite_body(subrequests: &[&Subrequest], api_version: &str) -> Vec<u8> {
    let text = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let ordered = collates(api_version) && subrequests.iter().skip(1).any(|s| s.repeats);
    let mut out = String::from(r#"{"allOrNone":false,"#);
    if ordered {
        out.push_str(r#""collateSubrequests":false,"#);
    }
    out.push_str(r#""compositeRequest":["#);
    for (n, sub) in subrequests.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!(r#"{{"method":{},"url":{}"#, text(sub.method), text(&sub.url)));
        if let Some(body) = &sub.body {
            out.push_str(r#","body":"#);
            out.push_str(body);
        }
        out.push_str(&format!(r#","referenceId":{}}}"#, text(&reference_id(n))));
    }
    out.push_str("]}");
    out.into_bytes()
}

/// One Composite subresponse. Its body stays JSON text: it is read once, as
/// save results or as errors, so building a `Value` tree of every result
/// (and writing it back to text to classify it) was wasted work.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubResponse {
    pub body: Box<serde_json::value::RawValue>,
    pub http_status_code: u16,
    pub reference_id: String,
}

#[derive(Deserialize)]
struct CompositeResponse {
    #[serde(rename = "compositeResponse")]
    responses: Vec<SubResponse>,
}

pub fn parse_composite(body: &[u8]) -> Result<Vec<SubResponse>, String> {
    serde_json::from_slice::<CompositeResponse>(body).map(|c| c.responses).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct SaveResult {
    id: Option<String>,
    success: bool,
    #[serde(default)]
    errors: Vec<SalesforceError>,
    #[serde(default)]
    created: Option<bool>,
}

/// Whether a Collections subresponse saved every record it carried.
fn every_record_saved(sub: &SubResponse) -> bool {
    sub.http_status_code == 200
        && serde_json::from_str::<Vec<SaveResult>>(sub.body.get()).is_ok_and(|r| r.iter().all(|r| r.success))
}

fn failed(key: &str, error: SalesforceError) -> UpsertOutcome {
    UpsertOutcome {
        external_id: key.to_string(),
        salesforce_id: None,
        outcome: OutcomeKind::Failed,
        errors: vec![error],
    }
}

/// One outcome per key from a Collections subresponse. Results come back in
/// request order, so they are zipped with the keys; a failed subrequest
/// fails every key with its error. `upsert` reads `created`; deletes report
/// `Deleted`.
/// What an sObject Collections call does to the records it saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Upsert,
    Update,
    Delete,
}

pub fn outcomes(keys: &[&str], sub: &SubResponse, verb: Verb) -> Vec<UpsertOutcome> {
    let fail_all = |error: SalesforceError| keys.iter().map(|k| failed(k, error.clone())).collect();
    if sub.http_status_code != 200 {
        let body = sub.body.get();
        let error = crate::salesforce::errors::parse_errors(body.as_bytes())
            .and_then(|e| e.into_iter().next())
            .unwrap_or(SalesforceError {
                status_code: format!("HTTP_{}", sub.http_status_code),
                message: body.chars().take(400).collect(),
                fields: vec![],
            });
        return fail_all(error);
    }
    let results: Vec<SaveResult> = match serde_json::from_str(sub.body.get()) {
        Ok(r) => r,
        Err(e) => {
            return fail_all(SalesforceError {
                status_code: "UNEXPECTED_RESPONSE".into(),
                message: format!("sObject Collections answered 200 with an unexpected body: {e}"),
                fields: vec![],
            });
        }
    };
    if results.len() != keys.len() {
        return fail_all(SalesforceError {
            status_code: "UNEXPECTED_RESPONSE".into(),
            message: format!("{} results for {} records", results.len(), keys.len()),
            fields: vec![],
        });
    }
    keys.iter()
        .zip(results)
        .map(|(k, r)| UpsertOutcome {
            external_id: k.to_string(),
            salesforce_id: r.id,
            outcome: match (r.success, verb, r.created) {
                (false, _, _) => OutcomeKind::Failed,
                (true, Verb::Delete, _) => OutcomeKind::Deleted,
                (true, Verb::Upsert, Some(true)) => OutcomeKind::Created,
                (true, Verb::Upsert | Verb::Update, _) => OutcomeKind::Updated,
            },
            errors: r.errors,
        })
        .collect()
}

/// An upsert whose first Composite request is under way.
pub struct PendingUpsert {
    /// External ids per chunk, and each chunk's record positions.
    chunks: Vec<(Vec<String>, Vec<usize>)>,
    records: usize,
    subrequests: Vec<Subrequest>,
    /// The request carrying the first subrequests (up to five).
    first: Option<(usize, super::InFlight)>,
}

impl super::SalesforceSink<'_> {
    /// Sends Collections subrequests five to a Composite request (one
    /// counted API call each). Subrequests that failed for a transient
    /// reason are sent again under the one retry policy; upserts and deletes
    /// by id are safe to repeat. `first` is the request already carrying
    /// the first subrequests.
    fn composite_all(
        &self,
        subrequests: &[Subrequest],
        mut first: Option<(usize, super::InFlight)>,
    ) -> Result<Vec<SubResponse>> {
        let mut answers: Vec<Option<SubResponse>> = (0..subrequests.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..subrequests.len()).collect();
        // Sent again only to land after an earlier version sent again: their
        // first answer stands (a repeat would call a record it created updated).
        let mut reapplied: HashSet<usize> = HashSet::new();
        self.api.rounds(|last| {
            let mut redo = Vec::new();
            let mut groups: Vec<Vec<usize>> = Vec::new();
            let mut rest: &[usize] = &pending;
            if let Some((n, _)) = &first {
                groups.push(rest[..*n].to_vec());
                rest = &rest[*n..];
            }
            groups.extend(rest.chunks(MAX_COLLECTIONS_PER_COMPOSITE).map(<[usize]>::to_vec));
            for group in groups {
                let response = match first.take() {
                    Some((_, inflight)) => self.finish(inflight)?,
                    None => {
                        let group: Vec<&Subrequest> = group.iter().map(|&i| &subrequests[i]).collect();
                        let body = Rc::new(Body::from(composite_body(&group, &self.settings.api_version)));
                        self.send(|s| {
                            HttpRequest::new(Method::Post, self.api_url(s, "/composite"))
                                .body("application/json", body.clone())
                        })?
                    }
                };
                if !response.is_success() {
                    return Err(ConnectorError::Salesforce(super::errors::describe("Composite request", &response)));
                }
                let mut subs = parse_composite(&response.body).map_err(|e| {
                    ConnectorError::Salesforce(format!("Composite answered 200 with an unexpected body ({e})"))
                })?;
                for (n, &i) in group.iter().enumerate() {
                    let reference = reference_id(n);
                    let Some(pos) = subs.iter().position(|s| s.reference_id == reference) else {
                        return Err(ConnectorError::Salesforce(format!(
                            "Composite response has no result for subrequest {reference}"
                        )));
                    };
                    let sub = subs.swap_remove(pos);
                    let as_response = HttpResponse {
                        status: sub.http_status_code,
                        headers: vec![],
                        body: sub.body.get().as_bytes().to_vec(),
                        pieces: vec![],
                    };
                    if !last && is_transient(super::errors::RULES, &as_response) {
                        redo.push(i);
                    }
                    let kept = reapplied.remove(&i)
                        && every_record_saved(&sub)
                        && answers[i].as_ref().is_some_and(|a| a.http_status_code == 200);
                    if !kept {
                        answers[i] = Some(sub);
                    }
                }
            }
            // A later version of a record sent before an earlier one sent
            // again would be overwritten by it: it goes again, after it.
            if let Some(&first) = redo.iter().min() {
                let again: Vec<usize> =
                    (first + 1..subrequests.len()).filter(|j| subrequests[*j].repeats && !redo.contains(j)).collect();
                reapplied.extend(&again);
                redo.extend(again);
                redo.sort_unstable();
            }
            pending = redo;
            Ok(!pending.is_empty())
        })?;
        Ok(answers.into_iter().map(|a| a.expect("every subrequest was answered")).collect())
    }

    /// Starts an upsert by external id and returns while its first Composite
    /// request travels: the caller prepares the next records meanwhile.
    /// `texts` is empty or holds each record's fields as JSON text, as
    /// serialized for the state (copied into the request, not redone).
    pub fn begin_upsert(&self, records: &[&SObjectRecord], texts: &[Option<&str>]) -> Result<PendingUpsert> {
        let chunked = chunk(records);
        let version = &self.settings.api_version;
        let subrequests: Vec<Subrequest> =
            chunked.iter().map(|c| upsert_subrequest(version, records, texts, c)).collect();
        let n = subrequests.len().min(MAX_COLLECTIONS_PER_COMPOSITE);
        let first = if n == 0 {
            None
        } else {
            let first: Vec<&Subrequest> = subrequests[..n].iter().collect();
            let body = Rc::new(Body::from(composite_body(&first, version)));
            let url = format!("/services/data/v{version}/composite");
            let build = Box::new(move |s: &super::Session| {
                HttpRequest::new(Method::Post, format!("{}{url}", s.instance_url))
                    .body("application/json", body.clone())
            });
            Some((n, self.begin(build)?))
        };
        let chunks = chunked
            .into_iter()
            .map(|c| (c.indices.iter().map(|&i| records[i].external_id.clone()).collect(), c.indices))
            .collect();
        Ok(PendingUpsert { chunks, records: records.len(), subrequests, first })
    }

    /// Waits for an upsert: one outcome per record, in input order.
    pub fn finish_upsert(&self, pending: PendingUpsert) -> Result<Vec<UpsertOutcome>> {
        let answers = self.composite_all(&pending.subrequests, pending.first)?;
        let mut results: Vec<Option<UpsertOutcome>> = vec![None; pending.records];
        for ((keys, indices), sub) in pending.chunks.iter().zip(answers) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            for (&i, o) in indices.iter().zip(outcomes(&keys, &sub, Verb::Upsert)) {
                results[i] = Some(o);
            }
        }
        Ok(results.into_iter().map(|o| o.expect("every record is in one chunk")).collect())
    }

    /// Upserts by external id; one outcome per record, in input order.
    pub fn upsert(&self, records: &[SObjectRecord]) -> Result<Vec<UpsertOutcome>> {
        let refs: Vec<&SObjectRecord> = records.iter().collect();
        let pending = self.begin_upsert(&refs, &[])?;
        self.finish_upsert(pending)
    }

    /// Updates records by Salesforce id (`fields` of each, its external id
    /// left out); one outcome per record, in input order. An empty id (never
    /// written) fails without a request.
    pub fn update(&self, records: &[(String, SObjectRecord)]) -> Result<Vec<UpsertOutcome>> {
        let known: Vec<(&str, &SObjectRecord)> =
            records.iter().filter(|(id, _)| !id.is_empty()).map(|(id, r)| (id.as_str(), r)).collect();
        let groups: Vec<&[(&str, &SObjectRecord)]> = known.chunks(MAX_RECORDS_PER_COLLECTION).collect();
        let subrequests: Vec<Subrequest> =
            groups.iter().map(|g| update_subrequest(&self.settings.api_version, g)).collect();
        let answers = self.composite_all(&subrequests, None)?;
        let mut by_id = std::collections::HashMap::new();
        for (group, sub) in groups.iter().zip(answers) {
            let ids: Vec<&str> = group.iter().map(|(id, _)| *id).collect();
            for (id, o) in ids.iter().zip(outcomes(&ids, &sub, Verb::Update)) {
                by_id.insert(*id, o);
            }
        }
        Ok(records
            .iter()
            .map(|(id, r)| {
                let mut outcome = by_id.remove(id.as_str()).unwrap_or_else(|| no_salesforce_id(id));
                outcome.external_id.clone_from(&r.external_id);
                outcome
            })
            .collect())
    }

    /// Deletes records by Salesforce id; one outcome per id, in input order.
    /// An empty id (never written) fails without a request.
    pub fn delete(&self, ids: &[String]) -> Result<Vec<UpsertOutcome>> {
        let known: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !id.is_empty()).collect();
        let groups: Vec<&[&str]> = known.chunks(MAX_RECORDS_PER_COLLECTION).collect();
        let subrequests: Vec<Subrequest> =
            groups.iter().map(|g| delete_subrequest(&self.settings.api_version, g)).collect();
        let answers = self.composite_all(&subrequests, None)?;
        let mut by_id = std::collections::HashMap::new();
        for (group, sub) in groups.iter().zip(answers) {
            for (id, o) in group.iter().zip(outcomes(group, &sub, Verb::Delete)) {
                by_id.insert(*id, o);
            }
        }
        Ok(ids.iter().map(|id| by_id.remove(id.as_str()).unwrap_or_else(|| no_salesforce_id(id))).collect())
    }
}

/// The outcome of a record the connector holds no Salesforce id for.
fn no_salesforce_id(id: &str) -> UpsertOutcome {
    UpsertOutcome {
        external_id: id.to_string(),
        salesforce_id: None,
        outcome: OutcomeKind::Failed,
        errors: vec![SalesforceError {
            status_code: super::errors::NO_SALESFORCE_ID.into(),
            message: "the connector holds no Salesforce id for this record".into(),
            fields: vec![],
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(value: Value) -> Box<serde_json::value::RawValue> {
        serde_json::value::to_raw_value(&value).unwrap()
    }

    fn rec(sobject: &str, id: &str) -> SObjectRecord {
        SObjectRecord {
            sobject: sobject.into(),
            external_id_field: "NetSuite_Id__c".into(),
            external_id: id.into(),
            fields: serde_json::Map::from_iter([("Name".to_string(), json!(format!("n{id}")))]),
        }
    }

    #[test]
    fn thousand_records_fill_five_collections_of_two_hundred() {
        let owned: Vec<_> = (0..1000).map(|i| rec("Account", &i.to_string())).collect();
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        let chunks = chunk(&records);
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.indices.len() == 200));
        let subs: Vec<Subrequest> = chunks.iter().map(|c| upsert_subrequest("66.0", &records, &[], c)).collect();
        let body: Value = serde_json::from_slice(&composite_body(&subs.iter().collect::<Vec<_>>(), "66.0")).unwrap();
        assert!(body.get("collateSubrequests").is_none(), "independent subrequests stay collated");
        assert_eq!(body["compositeRequest"].as_array().unwrap().len(), 5);
        let first = &body["compositeRequest"][0];
        assert_eq!(first["referenceId"], "c0");
        assert_eq!(first["url"], "/services/data/v66.0/composite/sobjects/Account/NetSuite_Id__c");
        assert_eq!(first["body"]["records"][0]["attributes"]["type"], "Account");
        assert_eq!(first["body"]["records"][0]["NetSuite_Id__c"], "0");
    }

    #[test]
    fn rows_from_the_fields_text_equal_rows_serialized_from_the_fields() {
        let mut keyed = rec("Account", "7");
        keyed.fields.insert("NetSuite_Id__c".into(), json!("7"));
        keyed.fields.insert("Description".into(), json!("a \"quoted\"\nline"));
        let unkeyed = rec("Contact", "8");
        let empty = SObjectRecord { fields: serde_json::Map::new(), ..rec("Account", "9") };
        let owned = [keyed, unkeyed, empty];
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        for r in &owned {
            let text = serde_json::to_string(&r.fields).unwrap();
            let (mut from_text, mut serialized) = (String::new(), String::new());
            push_row(&mut from_text, r, Some(&text));
            push_row(&mut serialized, r, None);
            let parsed: Value = serde_json::from_str(&from_text).unwrap();
            assert_eq!(parsed, serde_json::from_str::<Value>(&serialized).unwrap(), "{from_text}");
            assert_eq!(parsed["NetSuite_Id__c"], json!(r.external_id), "{from_text}");
        }
        let texts: Vec<String> = owned.iter().map(|r| serde_json::to_string(&r.fields).unwrap()).collect();
        let texts: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
        let chunk = Chunk {
            sobject: "Account".into(),
            external_id_field: "NetSuite_Id__c".into(),
            indices: vec![0, 2],
            repeats: false,
        };
        let sub = upsert_subrequest("66.0", &records, &texts, &chunk);
        let body: Value = serde_json::from_str(&sub.body.unwrap()).unwrap();
        assert_eq!(body["allOrNone"], false);
        assert_eq!(body["records"][0]["Description"], "a \"quoted\"\nline");
        assert_eq!(body["records"][1], json!({"attributes": {"type": "Account"}, "NetSuite_Id__c": "9"}));
    }

    #[test]
    fn a_repeated_external_id_goes_to_a_later_chunk() {
        let owned = [rec("Account", "1"), rec("Account", "2"), rec("Account", "1"), rec("Contact", "9")];
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        let chunks = chunk(&records);
        let idx: Vec<Vec<usize>> = chunks.iter().map(|c| c.indices.clone()).collect();
        assert_eq!(idx, vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(chunks.iter().map(|c| c.repeats).collect::<Vec<_>>(), [false, true, false]);

        for c in &chunks {
            let ids: HashSet<_> = c.indices.iter().map(|&i| &records[i].external_id).collect();
            assert_eq!(ids.len(), c.indices.len());
        }

        // A chunk started because the one before was full, then joined by a
        // later version of a record in it, must run after it too.
        let owned: Vec<SObjectRecord> = (0..MAX_RECORDS_PER_COLLECTION + 2)
            .map(|i| rec("Account", &(i % (MAX_RECORDS_PER_COLLECTION + 1)).to_string()))
            .collect();
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        let chunks = chunk(&records);
        assert_eq!(chunks.iter().map(|c| (c.indices.len(), c.repeats)).collect::<Vec<_>>(), [(200, false), (2, true)]);
        // The same external id of another object is another record.
        let owned = [rec("Account", "1"), rec("Contact", "1")];
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        assert!(chunk(&records).iter().all(|c| !c.repeats));
    }

    #[test]
    fn a_later_version_in_the_same_composite_request_is_run_in_order() {
        let owned = [rec("Account", "1"), rec("Account", "1")];
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        let subs: Vec<Subrequest> =
            chunk(&records).iter().map(|c| upsert_subrequest("66.0", &records, &[], c)).collect();
        let all: Vec<&Subrequest> = subs.iter().collect();
        let body =
            |subs: &[&Subrequest], version| serde_json::from_slice::<Value>(&composite_body(subs, version)).unwrap();
        assert_eq!(body(&all, "66.0")["collateSubrequests"], json!(false));
        assert_eq!(body(&all, "66.0")["compositeRequest"].as_array().unwrap().len(), 2);
        // Before v49 Salesforce keeps the order given, and knows no such field.
        assert!(body(&all, "48.0").get("collateSubrequests").is_none());
        // Alone in its request, the later version follows a request answered before.
        assert!(body(&all[1..], "66.0").get("collateSubrequests").is_none());
    }

    #[test]
    fn results_zip_in_order_with_created_flag() {
        let owned = [rec("Account", "1"), rec("Account", "2"), rec("Account", "3")];
        let records: Vec<&SObjectRecord> = owned.iter().collect();
        let chunks = chunk(&records);
        let body = json!([
            {"id":"001A","success":true,"errors":[],"created":true},
            {"id":"001B","success":true,"errors":[],"created":false},
            {"id":null,"success":false,"errors":[{"statusCode":"REQUIRED_FIELD_MISSING","message":"Required fields are missing: [Name]","fields":["Name"]}]}
        ]);
        let keys: Vec<&str> = chunks[0].indices.iter().map(|&i| records[i].external_id.as_str()).collect();
        let sub = SubResponse { body: raw(body), http_status_code: 200, reference_id: "c0".into() };
        let out = outcomes(&keys, &sub, Verb::Upsert);
        assert_eq!(
            out.iter().map(|o| o.outcome).collect::<Vec<_>>(),
            vec![OutcomeKind::Created, OutcomeKind::Updated, OutcomeKind::Failed]
        );
        assert_eq!(out[2].errors[0].fields, vec!["Name".to_string()]);
        assert!(!every_record_saved(&sub), "a 200 with a failed record did not save every record");
        let saved = json!([{"id":"001A","success":true,"errors":[],"created":false}]);
        assert!(every_record_saved(&SubResponse {
            body: raw(saved),
            http_status_code: 200,
            reference_id: "c0".into()
        }));
        let short = SubResponse { body: raw(json!([])), http_status_code: 200, reference_id: "c0".into() };
        assert!(outcomes(&keys, &short, Verb::Upsert).iter().all(|o| o.outcome == OutcomeKind::Failed));
        let refused = SubResponse {
            body: raw(
                json!([{"message": "No such column 'X' on sobject of type Account", "errorCode": "INVALID_FIELD"}]),
            ),
            http_status_code: 400,
            reference_id: "c0".into(),
        };
        assert!(outcomes(&keys, &refused, Verb::Upsert).iter().all(|o| o.errors[0].status_code == "INVALID_FIELD"));
    }
}
