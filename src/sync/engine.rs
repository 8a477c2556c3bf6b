//! One sync run over the requested record kinds.

use super::state::{FailedWrite, State, content_hash};
use crate::mapping;
use crate::model::{
    AuditEntry, KindCounts, MappedRecord, OutcomeKind, RecordKind, Result, SyncMode, SyncReport, SyncRequest,
    UpsertOutcome,
};
use crate::netsuite::NetSuiteSource;
use crate::ports::Host;
use crate::salesforce::SalesforceSink;
use crate::settings::Settings;

pub fn run(host: &Host<'_>, request: &SyncRequest) -> Result<SyncReport> {
    let settings = Settings::load(host.config)?;
    let source = NetSuiteSource::new(host, settings.netsuite.clone(), settings.backoff);
    let sink = SalesforceSink::new(host, settings.salesforce.clone(), settings.backoff);
    // A fresh NetSuite token for every run; renewed again inside the run
    // whenever it nears its 60 minutes.
    source.authenticate()?;

    let mut kinds: Vec<RecordKind> =
        if request.kinds.is_empty() { RecordKind::ALL.to_vec() } else { request.kinds.clone() };
    kinds.sort_by_key(|k| RecordKind::ALL.iter().position(|a| a == k));
    kinds.dedup();

    let mut report = Vec::new();
    for kind in kinds {
        let counts = sync_kind(host, &source, &sink, request, kind)?;
        report.push((kind, counts));
    }
    Ok(SyncReport {
        run_id: request.run_id.clone(),
        kinds: report,
        api_calls: crate::model::ApiCalls { netsuite: source.calls(), salesforce: sink.calls() },
    })
}

fn entry(request: &SyncRequest, m: &MappedRecord, action: &str, outcome: &UpsertOutcome) -> AuditEntry {
    let error = (!outcome.errors.is_empty())
        .then(|| outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    AuditEntry {
        run_id: request.run_id.clone(),
        kind: m.source_kind,
        action: action.into(),
        netsuite_id: m.source_id.clone(),
        salesforce_id: outcome.salesforce_id.clone(),
        outcome: outcome.outcome.as_str().into(),
        transformations_json: serde_json::to_string(&m.transformations).expect("transformations serialize"),
        error,
    }
}

fn sync_kind(
    host: &Host<'_>,
    source: &NetSuiteSource<'_>,
    sink: &SalesforceSink<'_>,
    request: &SyncRequest,
    kind: RecordKind,
) -> Result<KindCounts> {
    let state = State::new(host.state);
    let mut counts = KindCounts::default();
    let mut cursor = match request.mode {
        SyncMode::Incremental => state.cursor(kind)?,
        SyncMode::Full => None,
    };
    loop {
        let page = source.fetch_changed(kind, cursor.as_ref())?;
        counts.read += page.records.len() as u32;
        let mut audit = Vec::with_capacity(page.records.len());

        let mut mapped = Vec::with_capacity(page.records.len());
        for record in &page.records {
            match mapping::map(record) {
                Ok(m) => mapped.push(m),
                Err(e) => {
                    counts.count(OutcomeKind::Failed);
                    audit.push(AuditEntry {
                        run_id: request.run_id.clone(),
                        kind,
                        action: "map".into(),
                        netsuite_id: record.id.clone(),
                        salesforce_id: None,
                        outcome: OutcomeKind::Failed.as_str().into(),
                        transformations_json: "[]".into(),
                        error: Some(e.to_string()),
                    });
                }
            }
        }

        // Change detection: what Salesforce already holds costs no write.
        let ids: Vec<&str> = mapped.iter().map(|m| m.source_id.as_str()).collect();
        let stored = state.hashes(kind, &ids)?;
        let mut to_write: Vec<(&MappedRecord, String)> = Vec::new();
        for (m, old) in mapped.iter().zip(stored) {
            let hash = content_hash(&m.target);
            if old.as_deref() == Some(hash.as_str()) {
                counts.count(OutcomeKind::Unchanged);
                let unchanged = UpsertOutcome {
                    external_id: m.target.external_id.clone(),
                    salesforce_id: None,
                    outcome: OutcomeKind::Unchanged,
                    errors: vec![],
                };
                audit.push(entry(request, m, "skip-unchanged", &unchanged));
            } else {
                to_write.push((m, hash));
            }
        }

        let targets: Vec<_> = to_write.iter().map(|(m, _)| m.target.clone()).collect();
        let outcomes = if targets.is_empty() { Vec::new() } else { sink.upsert(&targets)? };
        let mut written = Vec::new();
        for ((m, hash), outcome) in to_write.iter().zip(&outcomes) {
            counts.count(outcome.outcome);
            let e = entry(request, m, "write", outcome);
            if outcome.outcome == OutcomeKind::Failed {
                state.save_failed(
                    kind,
                    &m.source_id,
                    &FailedWrite {
                        run_id: &request.run_id,
                        sobject: &m.target.sobject,
                        external_id: &m.target.external_id,
                        fields: &m.target.fields,
                        error: e.error.as_deref().unwrap_or(""),
                    },
                )?;
            } else {
                written.push((m.source_id.as_str(), hash.clone()));
            }
            audit.push(e);
        }
        state.save_hashes(kind, &written)?;
        let succeeded: Vec<&str> = written.iter().map(|(id, _)| *id).collect();
        state.clear_failed(kind, &succeeded)?;
        host.audit.append(&audit);

        // Only now, with every record of the page recorded, does the cursor move.
        if let Some(next) = &page.next {
            state.save_cursor(kind, next)?;
            cursor = Some(next.clone());
        }
        if !page.has_more || page.records.is_empty() {
            break;
        }
    }
    Ok(counts)
}
