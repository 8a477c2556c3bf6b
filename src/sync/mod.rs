//! The sync engine, in stages a reader finds by name: `read` (NetSuite's
//! change and deletion streams), `stage` (map and diff), `write`
//! (Salesforce, or a plan in a dry run), `changes` (one kind, streamed),
//! `deletions`, `provenance` (what the records were written from),
//! `deferral` (children waiting for parents, replay), `queued_events` and
//! `zone` (the NetSuite user's time zone, which the cursors' times are in).
//! `run` holds one run's context.

mod changes;
mod children;
mod deferral;
mod deletions;
mod dry_host;
mod in_flight;
pub mod lease;
mod ledger;
mod live;
#[cfg(test)]
pub(crate) mod memory_kv;
pub mod merge;
mod provenance;
mod queued_events;
pub mod queues;
mod read;
mod run;
mod scan_ranges;
mod stage;
pub mod state;
mod write;
mod writeback;
mod zone;

use crate::events::{self, Answer};
use crate::model::{
    ApiCalls, ConnectorError, KindCounts, RecordKind, ReplayScope, Result, SyncMode, SyncReport, SyncRequest,
};
use crate::ports::Host;
use crate::settings::{EventSettings, Settings};
use lease::{Keeper, Lease};
use provenance::Provenance;
use queues::{QueuedEvent, Queues};
use run::Run;

/// A key-value store's failure while the sync was `what`.
fn kv_error(what: &str, e: String) -> ConnectorError {
    ConnectorError::Transport(format!("key-value store failed while {what}: {e}"))
}

/// Kinds in the order a run visits them: parents before children.
fn parents_first(kinds: &mut Vec<RecordKind>) {
    kinds.sort_by_key(|k| RecordKind::ALL.iter().position(|a| a == k));
    kinds.dedup();
}

/// `kinds` and the kinds the mapping makes their parents, parents first.
fn with_parents(mapping: &crate::mapping::Mapping, kinds: &[RecordKind]) -> Vec<RecordKind> {
    let parents = RecordKind::ALL
        .into_iter()
        .filter(|&p| mapping.maps(p) && mapping.children_of(p).iter().any(|(child, _)| kinds.contains(child)));
    let mut all: Vec<RecordKind> = kinds.iter().copied().chain(parents).collect();
    parents_first(&mut all);
    all
}

/// Runs one sync. The report covers what the run did even when it stopped
/// part-way (`error` says why).
pub fn run(host: &Host<'_>, request: &SyncRequest) -> SyncReport {
    let empty = |error| SyncReport {
        run_id: request.run_id.clone(),
        kinds: vec![],
        api_calls: ApiCalls::default(),
        plan: vec![],
        error: Some(error),
    };
    let settings = match Settings::load(host.config) {
        Ok(s) => s,
        Err(e) => return empty(e),
    };
    if request.dry_run && request.replay.is_some() {
        return empty(crate::model::ConnectorError::Config(
            "a replay cannot be a dry run: the failed writes are listed in the queue".into(),
        ));
    }
    // All kinds the mapping maps, unless the request names some.
    let mut kinds: Vec<RecordKind> = if request.kinds.is_empty() {
        RecordKind::ALL.into_iter().filter(|k| settings.mapping.maps(*k)).collect()
    } else {
        request.kinds.clone()
    };
    // A kind asked for and not mapped would fail record by record.
    if let Some(kind) = kinds.iter().find(|k| !settings.mapping.maps(**k)) {
        return empty(crate::model::ConnectorError::Config(format!(
            "the run asks for {kind} records, but the mapping has no [{kind}] section: add one, or leave {kind} out \
             of the kinds to sync"
        )));
    }
    parents_first(&mut kinds);

    // The lease, once taken, is kept while the run waits (see `Keeper`).
    let lease = Keeper::default();
    let kept = Host { meanwhile: &lease, ..*host };
    let host = &kept;
    let stores =
        (dry_host::ReadOnly(host.state), dry_host::Scratch::new(host.queues), dry_host::ReadOnly(host.in_flight));
    let dry_host = dry_host::dry(host, &stores);
    let (host, writer): (&Host<'_>, Box<dyn write::Writer>) = match request.dry_run {
        true => (&dry_host, Box::new(write::Plan::default())),
        false => (host, Box::new(write::Salesforce)),
    };
    let run = Run::new(host, request, &settings, writer, &lease);
    if let Some(usage) = run.state.api_usage() {
        run.sink.assume_usage(usage);
    }
    let outcome = if request.dry_run {
        all(&run, &kinds)
    } else {
        match Lease::acquire(host.state, host.clock, &request.run_id, settings.lease_ttl_secs) {
            Err(e) => Err(e),
            Ok(taken) => {
                lease.hold(taken);
                let outcome = all(&run, &kinds);
                // Give the lease back whatever happened, so the next run need not wait.
                outcome.and(lease.release())
            }
        }
    };
    // For the next run's quota guard (a dry run's store keeps nothing).
    if let Some(usage) = run.sink.usage() {
        run.state.save_api_usage(usage);
    }
    let mut counts = run.counts();
    let mut reported: Vec<(RecordKind, KindCounts)> =
        kinds.iter().map(|k| (*k, counts.remove(k).unwrap_or_default())).collect();
    // Kinds not asked for that the run still recorded outcomes of (a
    // parent's Bulk job a stopped run left: see `all`).
    reported.extend(RecordKind::ALL.into_iter().filter_map(|k| counts.remove(&k).map(|c| (k, c))));
    reported.retain(|(k, c)| kinds.contains(k) || *c != KindCounts::default());
    SyncReport {
        run_id: request.run_id.clone(),
        kinds: reported,
        api_calls: ApiCalls { netsuite: run.source.calls(), salesforce: run.sink.calls() },
        plan: run.writer.plan(),
        error: outcome.err(),
    }
}

fn all(run: &Run<'_>, kinds: &[RecordKind]) -> Result<()> {
    if let Some(scope) = &run.request.replay {
        deferral::refuse_unmapped(run, scope)?;
    }
    // Before anything is written or compared: what a stopped run's writes
    // left in doubt is written again when read (a dry run plans it so).
    let stopped = run.in_flight.recover(run)?;
    if let Some(scope) = &run.request.replay {
        run.target()?;
        let mut targeted = true;
        resume_ended(run, kinds)?;
        if let Some(policy) = run.settings.writeback {
            for &kind in kinds {
                writeback::replay(run, kind, policy, scope)?;
            }
        }
        deferral::replay(run, scope, kinds)?;
        // Deletions Salesforce refused wait as change events (see
        // `write::retry_deletion`): failed writes too, sent again when the
        // scope names them (a run's cannot: the event keeps no run).
        let refused = |e: &QueuedEvent| {
            write::is_refused_deletion(e)
                && !matches!(scope, ReplayScope::Run(_))
                && scope.covers(e.kind, "", |id| id == e.id)
        };
        apply_events(run, kinds, &mut targeted, &refused)?;
        // Children of parents the replay wrote anew where Salesforce had
        // deleted the old record follow in this run, as in a scheduled one;
        // events from NetSuite wait for the next sync.
        while run.take_queued_events() {
            apply_events(run, kinds, &mut targeted, &children::is_refresh)?;
        }
        return deferral::unmapped_left(run, scope);
    }
    // The NetSuite token is obtained by the run's first request and the
    // Salesforce session by the first need of it: an events run that finds
    // the queue empty calls neither.
    // A backlog (runs failed for hours while events kept coming) is applied
    // a page of records at a time (as many as fit a page's share of memory at
    // the widths seen so far): memory holds their records, not all of them.
    // Every kind's writes come before any kind's deletions, queued ones
    // included (see `queued_events::Pass`): a scheduled run applies the
    // queued deletions after its own reads' writes.
    let mut targeted = false;
    // A stopped run's Bulk jobs (ended: `recover` waited for them) are
    // recorded before any event is written: recorded after, a job's older
    // version would be taken for what Salesforce holds (or its refusal
    // queued over a newer write). Only then: listing them reads the whole
    // store on Spin.
    if stopped {
        run.target()?;
        targeted = true;
        // Their parents' too: children a run writes are deferred while the
        // parents a stopped run's job wrote are not recorded.
        for kind in with_parents(&run.settings.mapping, kinds) {
            run.resume(kind)?;
        }
    }
    let reversed: Vec<RecordKind> = kinds.iter().rev().copied().collect();
    apply_events_in(run, kinds, &mut targeted, queued_events::Pass::Writes, &any_event)?;
    // Events the run queued itself (children of parents deleted or written
    // anew in Salesforce) are applied before it ends.
    while run.take_queued_events() {
        apply_events_in(run, kinds, &mut targeted, queued_events::Pass::Writes, &any_event)?;
    }
    if run.request.mode == SyncMode::Events {
        apply_events_in(run, &reversed, &mut targeted, queued_events::Pass::Deletions, &any_event)?;
        while run.take_queued_events() {
            apply_events(run, kinds, &mut targeted, &any_event)?;
        }
        return Ok(());
    }
    if !targeted {
        run.target()?;
    }
    // Before any cursor is read: the times they hold are in the zone they
    // were read in.
    run.measure_zone(kinds)?;
    // A kind that fails on its data (a page NetSuite cannot serve, an object
    // Salesforce refuses) does not hold back the kinds after it; the run
    // still ends failed, naming each kind that did.
    let mut failed: Option<ConnectorError> = None;
    let mut note = |kind: RecordKind, e: ConnectorError| -> Result<()> {
        if !e.is_about_data() {
            return Err(e);
        }
        let e = name_mapped_column(&run.settings.mapping, kind, e).with_prefix(&format!("{kind} records: "));
        failed = Some(match failed.take() {
            None => e,
            Some(first) => first.with_suffix(&format!("; {e}")),
        });
        Ok(())
    };
    // Every kind's changes before any kind's deletions: a contact moved
    // away from a company NetSuite then deleted reaches its new Account
    // first, so Salesforce's cascade (an Account takes its Contacts along)
    // does not take it too.
    let mut unbegun = Vec::new();
    if run.request.mode == SyncMode::Full && !run.writer.plans() {
        for &kind in kinds {
            if let Err(e) = changes::begin_every(run, kind) {
                note(kind, e)?;
                unbegun.push(kind);
            }
        }
    }
    let mut written = Vec::with_capacity(kinds.len());
    for &kind in kinds.iter().filter(|k| !unbegun.contains(k)) {
        match changes_of(run, kind) {
            Ok(rest) => written.push(rest),
            Err(e) => note(kind, e)?,
        }
    }
    apply_events_in(run, &reversed, &mut targeted, queued_events::Pass::Deletions, &any_event)?;
    for rest in written {
        let kind = rest.kind;
        if let Err(e) = rest.finish(run) {
            note(kind, e)?;
        }
    }
    while run.take_queued_events() {
        apply_events(run, kinds, &mut targeted, &any_event)?;
    }
    failed.map_or(Ok(()), Err)
}

/// A replay first records the outcomes of Bulk jobs stopped runs left with
/// Salesforce, when they have ended: a failed or deferred write of a record
/// a job carries a newer version of is then settled by it, not sent after
/// it (Salesforce would hold the older version, and the job's recorded
/// state say the newer). A job still running stops the replay, naming it: a
/// scheduled run waits for it, a replay does not.
fn resume_ended(run: &Run<'_>, kinds: &[RecordKind]) -> Result<()> {
    // Parents' too: replayed children find the parents their jobs wrote.
    for kind in with_parents(&run.settings.mapping, kinds) {
        let (jobs, parked) = run.queues.leftovers(kind)?;
        if jobs.is_empty() && parked.is_empty() {
            continue;
        }
        for (_, job) in &jobs {
            // Gone (results are kept seven days) or unreadable: taking it up
            // writes its records again from their pages.
            let state = match run.sink.bulk_state(&job.id) {
                Ok(state) => state,
                Err(e) if e.is_about_data() => continue,
                Err(e) => return Err(e),
            };
            if matches!(state.as_str(), "Open" | "UploadComplete" | "InProgress") {
                return Err(ConnectorError::Salesforce(format!(
                    "a Bulk API 2.0 job a stopped run left ({}, {kind} records) is still {state} in Salesforce: \
                     replay once it has ended (its records' failed writes may be older than what it carries), or \
                     run `connector sync`, which waits for it and records its outcomes",
                    job.id
                )));
            }
        }
        run.resume(kind)?;
    }
    Ok(())
}

/// Applies the change events queued for `kinds` that `wanted` picks;
/// `targeted` says whether the Salesforce session is already there.
fn apply_events(
    run: &Run<'_>,
    kinds: &[RecordKind],
    targeted: &mut bool,
    wanted: &dyn Fn(&QueuedEvent) -> bool,
) -> Result<()> {
    let reversed: Vec<RecordKind> = kinds.iter().rev().copied().collect();
    apply_events_in(run, kinds, targeted, queued_events::Pass::Writes, wanted)?;
    apply_events_in(run, &reversed, targeted, queued_events::Pass::Deletions, wanted)
}

/// `wanted` picks the events applied; the rest stay queued.
fn apply_events_in(
    run: &Run<'_>,
    kinds: &[RecordKind],
    targeted: &mut bool,
    pass: queued_events::Pass,
    wanted: &dyn Fn(&QueuedEvent) -> bool,
) -> Result<()> {
    run.queues.event_keys(kinds, &mut |keys| {
        if !*targeted {
            run.target()?;
            *targeted = true;
        }
        let mut rest = &keys[..];
        while !rest.is_empty() {
            let rows = kinds.iter().map(|&k| run.source.rows_per_page(k)).min().unwrap_or(1);
            let (part, more) = rest.split_at(rows.clamp(1, rest.len()));
            let events = run.queues.events_at(part)?.into_iter().filter(|e| wanted(e)).collect();
            queued_events::apply(run, events, pass)?;
            rest = more;
        }
        Ok(())
    })
}

/// What is left of a kind's pass once its changes are written.
struct KindRest<'r, 'a> {
    kind: RecordKind,
    provenance: Provenance,
    position: read::Position,
    deleted: read::Deletions<'r, 'a>,
}

impl KindRest<'_, '_> {
    /// The kind's deletions, then its records waiting for a parent.
    fn finish(self, run: &Run<'_>) -> Result<()> {
        deletions::sync(run, self.kind, self.position, self.deleted)?;
        // Waiting records last: a record waits with its newest write only (a
        // newer one read, failed or found unchanged, replaced or cleared it)
        // and the deletions took out what NetSuite no longer has, so nothing
        // older or deleted is written.
        deferral::retry_deferred(run, self.kind)?;
        run.checkpoint()?;
        let mut provenance = self.provenance;
        provenance.settle(run)
    }
}

/// A kind's write-back merge and changes; its deletions are left for
/// [`KindRest::finish`].
fn changes_of<'r, 'a>(run: &'r Run<'a>, kind: RecordKind) -> Result<KindRest<'r, 'a>> {
    // Before any write of the kind, the write-back's merges included.
    let mut provenance = Provenance::check(run, kind)?;
    // Salesforce's edits reach NetSuite first: the forward pass then reads
    // NetSuite's merged records and writes Salesforce only what it lacks.
    // A dry run that merged already (before its events) would plan the same
    // merges again: it saves no cursor.
    if let Some(policy) = run.settings.writeback
        && (run.first_merge(kind) || !run.writer.plans())
    {
        writeback::sync(run, kind, policy)?;
        run.checkpoint()?;
    }
    // The deletions stream is independent of the changes stream: its
    // first page travels alongside the changes.
    let reach = match run.request.mode == SyncMode::Full || provenance.source_moved {
        true => read::Reach::Every { provenance: &provenance.current, live: false, anew: true },
        false => read::Reach::Changed,
    };
    let (position, start) = read::Position::start(run, kind, true, reach)?;
    let mut deleted = read::Deletions::open(run, kind, start)?;
    changes::sync(run, kind, &provenance)?;
    // Every record is written under this configuration: a run stopped on
    // the deletions, or on another kind, does not begin the re-read again.
    // Another account's deletions are read from its start first.
    if !provenance.source_moved {
        provenance.settle(run)?;
    }
    deleted.receive_first()?;
    run.checkpoint()?;
    Ok(KindRest { kind, provenance, position, deleted })
}

/// NetSuite's "Unknown identifier 'c.billcityy'" for a column the mapping
/// reads, completed with where the mapping reads it: most often a typo in
/// the mapping file, which NetSuite's text does not name.
fn name_mapped_column(mapping: &crate::mapping::Mapping, kind: RecordKind, e: ConnectorError) -> ConnectorError {
    let ConnectorError::NetSuite(message) = &e else { return e };
    let Some((_, rest)) = message.split_once("Unknown identifier '") else { return e };
    let Some((identifier, _)) = rest.split_once('\'') else { return e };
    let column = identifier.rsplit('.').next().unwrap_or(identifier).to_string();
    let readers = mapping.readers_of(kind, &column);
    if readers.is_empty() {
        return e;
    }
    e.with_suffix(&format!(
        " (the mapping's [{kind}] {} reads column `{column}`: check its name in the mapping file against NetSuite's \
         Records Catalog)",
        readers.join(", ")
    ))
}

/// Verifies a change event and queues it for the next run (coalesced per
/// record). Only a 202 means it was queued.
pub fn receive(host: &Host<'_>, headers: &[(String, String)], body: &[u8]) -> Answer {
    let settings = match EventSettings::load(host.config) {
        Ok(s) => s,
        Err(e) => return Answer { status: 500, body: serde_json::json!({ "error": e.to_string() }).to_string() },
    };
    let now = host.clock.now_unix();
    let event = match events::verify(headers, body, settings.secret.as_bytes(), now, settings.tolerance_secs) {
        Ok(e) => e,
        Err(answer) => return answer,
    };
    // Queued, it would wait for good: runs apply the kinds the mapping maps.
    if !settings.mapping.maps(event.kind) {
        let error = format!(
            "this tenant's mapping has no [{kind}] section, so it does not sync {kind} records: the event for {kind} \
             {} was not queued (stop sending {kind} events, or add the section)",
            event.id,
            kind = event.kind
        );
        return Answer { status: 422, body: serde_json::json!({ "error": error }).to_string() };
    }
    // A replay (or a sender's retry) of an accepted event: answered, no work.
    let seen = events::SeenEvents::new(host.queues);
    match seen.is_repeat(&event) {
        Ok(false) => {}
        Ok(true) => {
            let named = format!("{} {}", event.kind, event.id);
            return Answer { status: 200, body: serde_json::json!({ "duplicate": true, "event": named }).to_string() };
        }
        Err(e) => return Answer { status: 503, body: serde_json::json!({ "error": e }).to_string() },
    }
    let queued = QueuedEvent {
        kind: event.kind,
        id: event.id.clone(),
        event: event.event.clone(),
        received_at: now,
        nonce: host.clock.random(),
    };
    if let Err(e) = Queues::new(host.queues).put_event(&queued) {
        return Answer { status: 503, body: serde_json::json!({ "error": e.to_string() }).to_string() };
    }
    // Remembered once queued: a retry after a failed queueing is not a
    // replay. Failing to remember loses no event, so it is still 202.
    let _ = seen.remember(&event, now, settings.tolerance_secs);
    Answer { status: 202, body: serde_json::json!({ "queued": format!("{} {}", event.kind, event.id) }).to_string() }
}

fn any_event(_: &QueuedEvent) -> bool {
    true
}
