//! The WIT glue: generated bindings, the host ports over the imports, and the
//! exports over the core. Nothing else in the crate knows it runs in wasm.

wit_bindgen::generate!({
    world: "connector",
    path: "wit",
    generate_all,
});

use crate::model;
use crate::ports::{self, Host};
use exports::ml_connector::netsuite_salesforce::{events, mapper, sink, source, sync};
use ml_connector::netsuite_salesforce::{audit, key_swap, run_control, types};
use wasi::keyvalue::{batch, store};

struct Component;
export!(Component);

// ---- ports over the imports ----

crate::wasi_http_transport!(wasi);

struct Bucket(store::Bucket);

fn kv_err(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

impl Bucket {
    fn open(name: &str) -> Result<Bucket, model::ConnectorError> {
        store::open(name).map(Bucket).map_err(|e| {
            model::ConnectorError::Config(format!("the host has no key-value store `{name}`: {}", kv_err(e)))
        })
    }
}

impl ports::KeyValue for Bucket {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.get(key).map_err(kv_err)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.0.set(key, value).map_err(kv_err)
    }
    fn delete(&self, key: &str) -> Result<(), String> {
        self.0.delete(key).map_err(kv_err)
    }
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let found = batch::get_many(&self.0, keys).map_err(kv_err)?;
        Ok(found.into_iter().map(|kv| kv.map(|(_, v)| v)).collect())
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), String> {
        batch::set_many(&self.0, entries).map_err(kv_err)
    }
    fn delete_many(&self, keys: &[String]) -> Result<(), String> {
        batch::delete_many(&self.0, keys).map_err(kv_err)
    }
    fn list_keys_where(&self, prefix: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.0.list_keys(cursor).map_err(kv_err)?;
            keys.extend(page.keys.into_iter().filter(|k| k.starts_with(prefix) && keep(k)));
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }
    fn swap_if(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Option<bool>, String> {
        key_swap::swap_if(&self.0, key, expected, new).map(Some).map_err(kv_err)
    }
}

struct WasiConfig;

impl ports::Config for WasiConfig {
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        wasi::config::store::get(name).map_err(|e| format!("{e:?}"))
    }
}

struct HostAudit;

impl ports::AuditSink for HostAudit {
    fn append(&self, entries: Vec<model::AuditEntry>) {
        // A page's records share a few shapes (~1 KB each, one `Rc` each):
        // each crosses once, not once per entry.
        let mut shapes: Vec<std::rc::Rc<str>> = Vec::new();
        let mut found: std::collections::HashMap<*const u8, u32> = std::collections::HashMap::new();
        let converted: Vec<audit::AuditEntry> = entries
            .into_iter()
            .map(|e| {
                let (transformations_shape, transformations_json) = match e.transformations {
                    model::AuditTransformations::Whole(json) => (None, json),
                    model::AuditTransformations::Split { shape, values } => {
                        let n = *found.entry(shape.as_ptr()).or_insert_with(|| {
                            shapes.push(shape.clone());
                            shapes.len() as u32 - 1
                        });
                        (Some(n), values)
                    }
                };
                audit::AuditEntry {
                    run_id: e.run_id,
                    kind: kind_to_wit(e.kind),
                    action: e.action.as_str().into(),
                    direction: e.action.direction().into(),
                    netsuite_id: e.netsuite_id,
                    salesforce_id: e.salesforce_id,
                    outcome: e.outcome,
                    transformations_json,
                    transformations_shape,
                    error: e.error,
                }
            })
            .collect();
        // Each distinct shape copied once for the call (the bindings take `String`s).
        let shapes: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
        audit::append(&shapes, &converted);
    }
}

struct HostControl;

impl ports::RunControl for HostControl {
    fn stop_requested(&self) -> Option<String> {
        run_control::stop_requested()
    }
    fn expect(&self, kind: model::RecordKind, records: u64) {
        run_control::expect(kind_to_wit(kind), records);
    }
}

/// Runs `f` against the host's imports.
fn with_host<T>(f: impl FnOnce(&Host<'_>) -> model::Result<T>) -> Result<T, types::ConnectorError> {
    let state = Bucket::open("state").map_err(error_to_wit)?;
    let credentials = Bucket::open("credentials").map_err(error_to_wit)?;
    let queues = Bucket::open("queues").map_err(error_to_wit)?;
    let in_flight = Bucket::open("in-flight").map_err(error_to_wit)?;
    let host = Host {
        transport: &WasiTransport,
        state: &state,
        credentials: &credentials,
        queues: &queues,
        in_flight: &in_flight,
        config: &WasiConfig,
        audit: &HostAudit,
        clock: &ports::SystemClock,
        control: &HostControl,
        meanwhile: &ports::Idle,
    };
    f(&host).map_err(error_to_wit)
}

// ---- conversions ----

fn kind_to_wit(kind: model::RecordKind) -> types::RecordKind {
    match kind {
        model::RecordKind::Customer => types::RecordKind::Customer,
        model::RecordKind::Contact => types::RecordKind::Contact,
        model::RecordKind::Vendor => types::RecordKind::Vendor,
    }
}

fn kind_from_wit(kind: types::RecordKind) -> model::RecordKind {
    match kind {
        types::RecordKind::Customer => model::RecordKind::Customer,
        types::RecordKind::Contact => model::RecordKind::Contact,
        types::RecordKind::Vendor => model::RecordKind::Vendor,
    }
}

fn error_to_wit(e: model::ConnectorError) -> types::ConnectorError {
    match e {
        model::ConnectorError::Config(m) => types::ConnectorError::Config(m),
        model::ConnectorError::Auth(m) => types::ConnectorError::Auth(m),
        model::ConnectorError::NetSuite(m) => types::ConnectorError::Netsuite(m),
        model::ConnectorError::Salesforce(m) => types::ConnectorError::Salesforce(m),
        model::ConnectorError::RateLimited(m) => types::ConnectorError::RateLimited(m),
        model::ConnectorError::Transport(m) => types::ConnectorError::Transport(m),
        model::ConnectorError::Busy(m) => types::ConnectorError::Busy(m),
        model::ConnectorError::Stopped(m) => types::ConnectorError::Stopped(m),
    }
}

fn bad_json(what: &str, e: serde_json::Error) -> types::ConnectorError {
    types::ConnectorError::Config(format!("{what} is not a JSON object: {e}"))
}

fn record_to_wit(r: model::NetSuiteRecord) -> types::NetsuiteRecord {
    types::NetsuiteRecord {
        kind: kind_to_wit(r.kind),
        id: r.id,
        last_modified: r.last_modified,
        fields_json: serde_json::to_string(&r.fields).expect("a string map serializes"),
    }
}

fn record_from_wit(r: types::NetsuiteRecord) -> Result<model::NetSuiteRecord, types::ConnectorError> {
    let fields = serde_json::from_str(&r.fields_json).map_err(|e| bad_json("netsuite-record.fields-json", e))?;
    Ok(model::NetSuiteRecord { kind: kind_from_wit(r.kind), id: r.id, last_modified: r.last_modified, fields })
}

fn sobject_to_wit(r: model::SObjectRecord) -> types::SobjectRecord {
    types::SobjectRecord {
        sobject: r.sobject,
        external_id_field: r.external_id_field,
        external_id: r.external_id,
        fields_json: serde_json::Value::Object(r.fields).to_string(),
    }
}

fn sobject_from_wit(r: types::SobjectRecord) -> Result<model::SObjectRecord, types::ConnectorError> {
    let fields = serde_json::from_str(&r.fields_json).map_err(|e| bad_json("sobject-record.fields-json", e))?;
    Ok(model::SObjectRecord {
        sobject: r.sobject,
        external_id_field: r.external_id_field,
        external_id: r.external_id,
        fields,
    })
}

fn outcome_to_wit(o: model::UpsertOutcome) -> types::UpsertOutcome {
    types::UpsertOutcome {
        external_id: o.external_id,
        salesforce_id: o.salesforce_id,
        outcome: match o.outcome {
            model::OutcomeKind::Created => types::OutcomeKind::Created,
            model::OutcomeKind::Updated => types::OutcomeKind::Updated,
            model::OutcomeKind::Unchanged => types::OutcomeKind::Unchanged,
            model::OutcomeKind::Failed => types::OutcomeKind::Failed,
            model::OutcomeKind::Deferred => types::OutcomeKind::Deferred,
            model::OutcomeKind::Deleted => types::OutcomeKind::Deleted,
        },
        errors: o
            .errors
            .into_iter()
            .map(|e| types::SalesforceError { status_code: e.status_code, message: e.message, fields: e.fields })
            .collect(),
    }
}

/// A source, and the columns the configured mapping reads for `kind`.
fn source_for<'h>(
    host: &'h Host<'h>,
    kind: types::RecordKind,
) -> model::Result<(crate::netsuite::NetSuiteSource<'h>, Vec<String>)> {
    let settings = crate::settings::Settings::load(host.config)?;
    let columns = settings.mapping.columns(kind_from_wit(kind));
    Ok((crate::netsuite::NetSuiteSource::new(host, settings.netsuite, settings.backoff), columns))
}

// ---- exports ----

impl source::Guest for Component {
    fn fetch_changed(
        kind: types::RecordKind,
        after: Option<types::Cursor>,
    ) -> Result<types::Page, types::ConnectorError> {
        let after = after.map(|c| model::Cursor { last_modified: c.last_modified, id: c.id });
        with_host(|host| {
            let (source, columns) = source_for(host, kind)?;
            let page = source.fetch_changed(kind_from_wit(kind), after.as_ref(), &columns)?;
            Ok(types::Page {
                records: page.records.into_iter().map(record_to_wit).collect(),
                next: page.next.map(|c| types::Cursor { last_modified: c.last_modified, id: c.id }),
                has_more: page.has_more,
                total: page.total,
            })
        })
    }

    fn fetch_deleted(
        kind: types::RecordKind,
        after: Option<types::Cursor>,
    ) -> Result<source::DeletedPage, types::ConnectorError> {
        let after = after.map(|c| model::Cursor { last_modified: c.last_modified, id: c.id });
        with_host(|host| {
            let (source, _) = source_for(host, kind)?;
            let page = source.fetch_deleted(kind_from_wit(kind), after.as_ref())?;
            Ok(source::DeletedPage {
                ids: page.ids,
                next: page.next.map(|c| types::Cursor { last_modified: c.last_modified, id: c.id }),
                has_more: page.has_more,
            })
        })
    }

    fn fetch_one(kind: types::RecordKind, id: String) -> Result<Option<types::NetsuiteRecord>, types::ConnectorError> {
        with_host(|host| {
            let (source, columns) = source_for(host, kind)?;
            Ok(source.fetch_one(kind_from_wit(kind), &id, &columns)?.map(record_to_wit))
        })
    }
}

impl mapper::Guest for Component {
    fn map_record(source: types::NetsuiteRecord) -> Result<types::MappedRecord, types::ConnectorError> {
        let record = record_from_wit(source)?;
        let text = ports::Config::get(&WasiConfig, "mapping_toml").map_err(|e| {
            types::ConnectorError::Config(format!("could not read setting `mapping_toml` from the host: {e}"))
        })?;
        let m = crate::mapping::Mapping::load(text.as_deref())
            .and_then(|mapping| mapping.map(&record))
            .map_err(error_to_wit)?;
        Ok(types::MappedRecord {
            source_kind: kind_to_wit(m.source_kind),
            source_id: m.source_id,
            target: sobject_to_wit(m.target),
            transformations: m
                .transformations
                .into_iter()
                .map(|t| types::Transformation {
                    field: t.field.to_string(),
                    rule: t.rule.to_string(),
                    detail: t.detail.to_string(),
                })
                .collect(),
        })
    }
}

impl sink::Guest for Component {
    fn upsert(records: Vec<types::SobjectRecord>) -> Result<Vec<types::UpsertOutcome>, types::ConnectorError> {
        let records = records.into_iter().map(sobject_from_wit).collect::<Result<Vec<_>, _>>()?;
        with_host(|host| {
            let settings = crate::settings::Settings::load(host.config)?;
            let sink = crate::salesforce::SalesforceSink::new(host, settings.salesforce, settings.backoff);
            Ok(sink.upsert(&records)?.into_iter().map(outcome_to_wit).collect())
        })
    }
}

impl sync::Guest for Component {
    fn run(request: sync::SyncRequest) -> sync::SyncReport {
        let request = model::SyncRequest {
            run_id: request.run_id,
            mode: match request.mode {
                sync::SyncMode::Incremental => model::SyncMode::Incremental,
                sync::SyncMode::Full => model::SyncMode::Full,
                sync::SyncMode::Events => model::SyncMode::Events,
            },
            kinds: request.kinds.into_iter().map(kind_from_wit).collect(),
            replay: request.replay.map(|scope| match scope {
                sync::ReplayScope::AllFailed => model::ReplayScope::AllFailed,
                sync::ReplayScope::Run(run) => model::ReplayScope::Run(run),
                sync::ReplayScope::One(r) => model::ReplayScope::Record(kind_from_wit(r.kind), r.id),
            }),
            dry_run: request.dry_run,
            compare_live: request.compare_live,
        };
        let report = match with_host(|host| Ok(crate::sync::run(host, &request))) {
            Ok(report) => report,
            Err(error) => {
                return sync::SyncReport {
                    run_id: request.run_id,
                    kinds: vec![],
                    api_calls: sync::ApiCalls { netsuite: 0, salesforce: 0 },
                    plan: vec![],
                    error: Some(error),
                };
            }
        };
        sync::SyncReport {
            run_id: report.run_id,
            kinds: report
                .kinds
                .into_iter()
                .map(|(kind, c)| sync::KindReport {
                    kind: kind_to_wit(kind),
                    read: c.read,
                    created: c.created,
                    updated: c.updated,
                    unchanged: c.unchanged,
                    failed: c.failed,
                    deleted: c.deleted,
                    deferred: c.deferred,
                    resumed: c.resumed,
                    written_back: c.written_back,
                })
                .collect(),
            api_calls: sync::ApiCalls { netsuite: report.api_calls.netsuite, salesforce: report.api_calls.salesforce },
            plan: report
                .plan
                .into_iter()
                .map(|p| sync::PlannedWrite {
                    kind: kind_to_wit(p.kind),
                    netsuite_id: p.netsuite_id,
                    action: p.action.as_str().into(),
                    changes_json: serde_json::to_string(&p.changes).expect("changes serialize"),
                    error: p.error,
                })
                .collect(),
            error: report.error.map(error_to_wit),
        }
    }
}

impl events::Guest for Component {
    fn receive(headers: Vec<(String, String)>, body: Vec<u8>) -> events::Answer {
        let answer = with_host(|host| Ok(crate::sync::receive(host, &headers, &body))).unwrap_or_else(|e| {
            crate::events::Answer { status: 503, body: serde_json::json!({ "error": format!("{e:?}") }).to_string() }
        });
        events::Answer { status: answer.status, body: answer.body }
    }
}
