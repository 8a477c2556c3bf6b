//! `connector serve --tenants DIR`: every tenant file (`*.toml`) in a
//! directory (or one file of `[[tenant]]` tables), hosted by one process. Each tenant keeps its own config,
//! sealed secrets, database, allowlist, limits and schedule; a file that is
//! added, edited or removed (or whose secrets, key or mapping change) is
//! picked up within a few seconds, without a restart. A tenant's runs never
//! overlap (its lease), and a replaced tenant's run in progress finishes
//! before the old schedule ends.

pub mod schedule;

use crate::config::HarnessConfig;
use crate::host::{Runtime, SyncMode};
use crate::scheduler::{Tenant, serve_schedule};
use crate::secrets::Cipher;
use crate::webhook::{Directory, Hosted};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use schedule::Schedule;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One hosted tenant and what it was loaded from.
struct Entry {
    file: PathBuf,
    fingerprint: [u8; 32],
    hosted: Arc<Hosted>,
    schedule: Option<Arc<Stop>>,
}

/// Ends a schedule loop between runs, never during one.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    /// The tenant is gone (not replaced): its noted next run goes too.
    removed: AtomicBool,
    wake: Notify,
}

impl Stop {
    fn stop(&self, removed: bool) {
        self.removed.store(removed, Ordering::SeqCst);
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reload {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Files that could not be loaded, with why; a tenant that was running
    /// from an earlier version of the file keeps running from it.
    pub errors: Vec<String>,
    /// Those of `errors` the previous reload did not report, or whose files
    /// changed since (content or modification time): what is logged, so a
    /// broken file is not logged again at every reload.
    pub new_errors: Vec<String>,
}

pub struct Server {
    dir: PathBuf,
    runtime: &'static Runtime,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Shutting down: reloads start nothing any more.
    closing: AtomicBool,
    /// The stamps (see [`stamp`]) of the previous reload's errors.
    reported: Mutex<BTreeSet<[u8; 32]>>,
    /// Tenants removed or replaced whose run may still be under way: a
    /// shutdown waits for it too (see [`Server::tenants_with_runs`]).
    retired: Mutex<Vec<Arc<Tenant>>>,
}

impl Server {
    pub fn new(dir: PathBuf, runtime: &'static Runtime) -> Arc<Server> {
        Arc::new(Server {
            dir,
            runtime,
            entries: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
            reported: Mutex::new(BTreeSet::new()),
            retired: Mutex::new(Vec::new()),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds a hosted tenant by name, for the listener.
    pub fn directory(self: &Arc<Self>) -> Directory {
        let (one, all) = (Arc::downgrade(self), Arc::downgrade(self));
        Directory {
            find: Arc::new(move |name: &str| one.upgrade()?.entries().get(name).map(|e| e.hosted.clone())),
            all: Arc::new(move || all.upgrade().map(|s| s.tenants()).unwrap_or_default()),
        }
    }

    /// The tenants hosted now, by name.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.entries().values().map(|e| e.hosted.tenant.clone()).collect()
    }

    /// The tenants hosted now, and those removed or replaced whose run is
    /// still under way: what a shutdown stops and waits for.
    pub fn tenants_with_runs(&self) -> Vec<Arc<Tenant>> {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|t| t.running() > 0);
        let mut all = self.tenants();
        all.extend(retired.iter().cloned());
        all
    }

    fn retire(&self, entry: &Entry, removed: bool) {
        retire(entry, removed);
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|t| t.running() > 0);
        retired.push(entry.hosted.tenant.clone());
    }

    /// Reads the directory again and starts, replaces or stops tenants.
    pub fn reload(&self) -> Reload {
        let mut report = Reload::default();
        if self.closing.load(Ordering::SeqCst) {
            return report;
        }
        let mut found: BTreeMap<String, (PathBuf, [u8; 32], HarnessConfig)> = BTreeMap::new();
        // Files that do not load: the tenants hosted from them stay as they run.
        let mut unreadable = BTreeSet::new();
        // Tenants refused by name (another file keeps the name, or their
        // data directory is another's): hosted ones stay as they run; the
        // other tenants of their file are not held by it.
        let mut refused: BTreeSet<String> = BTreeSet::new();
        // Each error with its stamp.
        let mut errors: Vec<(String, [u8; 32])> = Vec::new();
        let mut dir_errors = Vec::new();
        let files = tenant_files(&self.dir, &mut dir_errors);
        errors.extend(dir_errors.into_iter().map(|e| (e.clone(), stamp(&e, &[], None))));
        // Files that do not load, told once every tenant is known: one that
        // is a tenant's mapping file (kept next to its config) is no error.
        let mut failed_files: Vec<(PathBuf, String)> = Vec::new();
        // Every file naming each tenant, in file order.
        let mut claims: BTreeMap<String, Vec<(PathBuf, [u8; 32], HarnessConfig)>> = BTreeMap::new();
        for file in files {
            let loaded = HarnessConfig::load_all(&file).and_then(|configs| {
                configs.into_iter().map(|config| Ok((fingerprint(&config)?, config))).collect::<Result<Vec<_>>>()
            });
            match loaded {
                Ok(configs) => {
                    for (print, config) in configs {
                        claims.entry(config.tenant.clone()).or_default().push((file.clone(), print, config));
                    }
                }
                Err(e) => failed_files.push((file, format!("{e:#}"))),
            }
        }
        // A tenant named by several files: a hosted one stays with the file
        // it runs from, or the file it was renamed to (the same content);
        // while that file does not load, none takes it over. Otherwise the
        // first by name.
        let hosted_from: BTreeMap<String, (PathBuf, [u8; 32])> =
            self.entries().iter().map(|(name, e)| (name.clone(), (e.file.clone(), e.fingerprint))).collect();
        for (name, mut candidates) in claims {
            let pick = match hosted_from.get(&name) {
                Some((file, print)) => candidates
                    .iter()
                    .position(|c| &c.0 == file)
                    .or_else(|| candidates.iter().position(|c| &c.1 == print))
                    .or_else(|| (!failed_files.iter().any(|(f, _)| f == file)).then_some(0)),
                None => Some(0),
            };
            let kept = pick.map(|i| candidates.remove(i));
            for (file, _, _) in &candidates {
                let message = match (&kept, hosted_from.get(&name)) {
                    (Some((by, _, _)), _) => format!(
                        "{}: tenant `{name}` is already defined by {}, which keeps it; rename one of them",
                        file.display(),
                        by.display()
                    ),
                    (None, Some((runs_from, _))) => format!(
                        "{}: tenant `{name}` runs from {}, which does not load now: this file does not take it \
                         over; rename one of them",
                        file.display(),
                        runs_from.display()
                    ),
                    (None, None) => continue,
                };
                let by = kept.as_ref().map_or_else(|| hosted_from[&name].0.clone(), |k| k.0.clone());
                errors.push((message.clone(), stamp(&message, &[file, &by], None)));
                refused.insert(name.clone());
            }
            if let Some(kept) = kept {
                found.insert(name, kept);
            }
        }
        // Mapping files of the tenants loaded now, and of those hosted (whose
        // own file may be the one that stopped loading).
        let mut mappings: Vec<PathBuf> = found.values().filter_map(|(_, _, c)| c.mapping_file.clone()).collect();
        mappings.extend(self.entries().values().filter_map(|e| e.hosted.tenant.config.mapping_file.clone()));
        let mappings: BTreeSet<PathBuf> = mappings.iter().map(|m| place_of(m)).collect();
        for (file, e) in failed_files {
            if mappings.contains(&place_of(&file)) {
                continue;
            }
            // A [[tenant]] table's error names its file already.
            let named = file.display().to_string();
            let message = if e.starts_with(&named) { e } else { format!("{named}: {e}") };
            errors.push((message.clone(), stamp(&message, &[&file], None)));
            unreadable.insert(file);
        }
        // Two tenants in one data directory would share a database and
        // secrets: one hosted already keeps it, else the first by name; the
        // other is not started, and says so.
        // Tenants that stay as they run (their file does not load) hold
        // their directories first; then hosted tenants unchanged, hosted ones
        // changed, new ones.
        let mut places: Vec<(PathBuf, String, PathBuf)> = Vec::new();
        let prints: BTreeMap<String, [u8; 32]> =
            self.entries().iter().map(|(name, e)| (name.clone(), e.fingerprint)).collect();
        for (name, e) in self.entries().iter() {
            if !found.contains_key(name) && (unreadable.contains(&e.file) || refused.contains(name)) {
                places.push((place_of(&e.hosted.tenant.config.data_dir), name.clone(), e.file.clone()));
            }
        }
        let mut names: Vec<String> = found.keys().cloned().collect();
        names.sort_by_key(|name| (!prints.contains_key(name), prints.get(name) != Some(&found[name].1)));
        for name in names {
            let (file, _, config) = &found[&name];
            let place = place_of(&config.data_dir);
            match places.iter().find(|(p, _, _)| *p == place) {
                Some((_, other, other_file)) => {
                    let message = format!(
                        "{}: tenant `{name}` keeps its data in {}, as tenant `{other}` ({}) does: give each its own \
                         `data_dir`, or they share one database and one set of secrets",
                        file.display(),
                        config.data_dir.display(),
                        other_file.display()
                    );
                    errors.push((message.clone(), stamp(&message, &[file, other_file], None)));
                    refused.insert(name.clone());
                    found.remove(&name);
                }
                None => places.push((place, name.clone(), file.clone())),
            }
        }
        let mut entries = self.entries();
        // A file that stopped loading keeps its tenant as it was: only a
        // removed file removes one.
        let gone: Vec<String> = entries
            .iter()
            .filter(|(name, e)| !found.contains_key(*name) && !unreadable.contains(&e.file) && !refused.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(entry) = entries.remove(&name) {
                self.retire(&entry, true);
                report.removed.push(name);
            }
        }
        for (name, (file, print, config)) in found {
            if let Some(e) = entries.get_mut(&name).filter(|e| e.fingerprint == print) {
                // Renamed, unchanged: a later typo in it keeps the tenant.
                e.file = file;
                continue;
            }
            match self.start(file.clone(), print, config) {
                Ok(entry) => {
                    match entries.insert(name.clone(), entry) {
                        Some(old) => {
                            self.retire(&old, false);
                            report.changed.push(name);
                        }
                        None => report.added.push(name),
                    };
                }
                Err(e) => {
                    let message = format!("tenant `{name}`: {e:#}");
                    errors.push((message.clone(), stamp(&message, &[&file], Some(&print))));
                }
            }
        }
        drop(entries);
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let stamps: BTreeSet<[u8; 32]> = errors.iter().map(|(_, s)| *s).collect();
        for (message, stamp) in errors {
            if !reported.contains(&stamp) {
                report.new_errors.push(message.clone());
            }
            report.errors.push(message);
        }
        *reported = stamps;
        report
    }

    fn start(&self, file: PathBuf, fingerprint: [u8; 32], config: HarnessConfig) -> Result<Entry> {
        let cipher = Cipher::load(config.master_key_file.as_deref())?;
        let schedule = config.schedule.as_ref().map(Schedule::from_config).transpose()?;
        let tenant = Arc::new(Tenant::open(config, cipher, None)?);
        // A mapping file that stops loading keeps the tenant on its last good one.
        tenant.pin_mapping()?;
        let hosted = Hosted::start(tenant.clone(), self.runtime)?;
        let schedule = schedule.map(|schedule| {
            let stop = Arc::new(Stop::default());
            tokio::spawn(scheduled(tenant, self.runtime, schedule, stop.clone()));
            stop
        });
        Ok(Entry { file, fingerprint, hosted, schedule })
    }

    /// Stops every tenant's schedule and listener routes (the process is
    /// shutting down); runs under way go on to their next checkpoint.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for entry in self.entries().values() {
            retire(entry, false);
        }
    }

    /// Reloads every `every` until the process ends, printing what changed.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            print_reload(&self.reload());
        }
    }
}

pub fn print_reload(r: &Reload) {
    for name in &r.added {
        tracing::info!(tenant = %name, "tenant added");
    }
    for name in &r.changed {
        tracing::info!(tenant = %name, "tenant reloaded: its config, secrets, key or mapping changed");
    }
    for name in &r.removed {
        tracing::info!(tenant = %name, "tenant removed");
    }
    for e in &r.new_errors {
        tracing::error!("{e}");
    }
}

fn retire(entry: &Entry, removed: bool) {
    entry.hosted.stop();
    if let Some(stop) = &entry.schedule {
        stop.stop(removed);
    }
}

/// Where `dir` (or a file) is, however it is spelled (it may not exist yet).
fn place_of(dir: &Path) -> PathBuf {
    // The directory itself when it exists (a symlink to another tenant's
    // is that one); else its parent's place and its name.
    if let Ok(place) = std::fs::canonicalize(dir) {
        return place;
    }
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::canonicalize(parent).map_or_else(|_| dir.to_path_buf(), |p| p.join(name))
        }
        _ => dir.to_path_buf(),
    }
}

/// The `*.toml` files of `dir`, sorted; `dir` itself when it is a file
/// (of `[[tenant]]` tables).
fn tenant_files(dir: &Path, errors: &mut Vec<String>) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => {
            errors.push(format!("{}: cannot read the tenants directory: {e}", dir.display()));
            return vec![];
        }
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
}

/// What an error arose from: its message, the state of the files it is
/// about (content and modification time: saving a file again, even as it
/// was, logs its error again for the one who saved it) and the tenant's
/// fingerprint when it has one (its secrets, key or mapping changed).
fn stamp(message: &str, files: &[&Path], fingerprint: Option<&[u8; 32]>) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update((message.len() as u64).to_le_bytes());
    digest.update(message.as_bytes());
    for file in files {
        let modified = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        digest.update(modified.to_le_bytes());
        match std::fs::read(file) {
            Ok(bytes) => {
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(&bytes);
            }
            Err(_) => digest.update(u64::MAX.to_le_bytes()),
        }
    }
    if let Some(fingerprint) = fingerprint {
        digest.update(fingerprint);
    }
    digest.finalize().into()
}

/// A digest of everything a tenant is loaded from: its config (its own
/// table, where a file holds several), secrets, master key file and
/// mapping file.
fn fingerprint(config: &HarnessConfig) -> Result<[u8; 32]> {
    let mut digest = Sha256::new();
    let text = toml::to_string(config).context("serializing the tenant's config")?;
    digest.update((text.len() as u64).to_le_bytes());
    digest.update(text.as_bytes());
    let paths = [Some(config.secrets_path()), config.master_key_file.clone(), config.mapping_file.clone()];
    for path in paths.into_iter().flatten() {
        match std::fs::read(&path) {
            Ok(bytes) => {
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => digest.update(u64::MAX.to_le_bytes()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(digest.finalize().into())
}

/// When the tenant's last scheduled-kind run (incremental or full) started;
/// None when it never ran or its last run did not end.
fn last_started(tenant: &Tenant) -> Result<Option<DateTime<Utc>>> {
    use rusqlite::OptionalExtension;
    let conn = tenant.database.connect()?;
    let last: Option<(String, String, String, String)> = conn
        .query_row(
            "SELECT run_id, started_at, status, COALESCE(error, '') FROM runs
             WHERE tenant = ?1 AND mode IN ('incremental', 'full') ORDER BY started_at DESC, rowid DESC LIMIT 1",
            [&tenant.config.tenant],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    // A run cut short (stopped by a signal, or its process gone: marked
    // crashed, or still marked running) left its read part-way: the next one
    // is due at once, not an interval after it began. Not one stopped by a
    // quota, nor one running in a live process (a reload during its run).
    let ended = crate::scheduler::recovery::ended_processes(&conn, &tenant.config.tenant)?;
    let cut_short = |(run, _, status, error): &(String, String, String, String)| match status.as_str() {
        "crashed" => true,
        "stopped" => error.contains("interrupted by"),
        "running" => ended.contains_key(run),
        _ => false,
    };
    let text = last.filter(|l| !cut_short(l)).map(|l| l.1);
    match text {
        None => Ok(None),
        Some(t) => match DateTime::parse_from_rfc3339(&t) {
            Ok(at) => Ok(Some(at.with_timezone(&Utc))),
            Err(e) => bail!("the run log's start time {t:?} is not RFC 3339: {e}"),
        },
    }
}

/// The tenant's schedule: a start missed while the process was down runs
/// at once (once), then each start after the last run, plus jitter.
async fn scheduled(tenant: Arc<Tenant>, runtime: &'static Runtime, schedule: Schedule, stop: Arc<Stop>) {
    let name = tenant.config.tenant.clone();
    let mut last = match last_started(&tenant) {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(tenant = %name, "reading its run log: {e:#}; scheduling from now");
            Some(Utc::now())
        }
    };
    // Another live serve schedules it already: two would run its schedule
    // and the first to stop would clear the other's next run. Asked again
    // each minute: once that one stops, this one takes the schedule over.
    let mut said: Option<String> = None;
    // The next run this loop noted last.
    let mut noted_at;
    loop {
        if stop.stopped.load(Ordering::SeqCst) {
            return;
        }
        match tenant.database.connect().and_then(|conn| serve_schedule::claim(&conn, &name, schedule.interval_secs())) {
            Ok(at) => {
                noted_at = Some(at);
                break;
            }
            // Each new reason once (the database may also be locked or fail).
            Err(e) => {
                let text = format!("{e:#}");
                if said.as_deref() != Some(text.as_str()) {
                    match text.contains("is already served by") {
                        true => tracing::error!(tenant = %name, "not scheduled while another serve runs it: {text}"),
                        false => tracing::error!(tenant = %name, "not scheduled yet, asked again each minute: {text}"),
                    }
                    said = Some(text);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = stop.wake.notified() => {}
        }
    }
    loop {
        // Stopped while a run was under way: no next run is noted (the
        // shutdown clears the notes once the runs end; noting one after
        // that would leave it behind).
        if stop.stopped.load(Ordering::SeqCst) {
            return retired(&tenant, &stop, noted_at);
        }
        let Some(wait) = schedule.until_next(last, Utc::now()) else {
            tracing::warn!(tenant = %name, "its cron expression has no further start");
            return;
        };
        let wait = wait + schedule.jitter();
        // `connector status` shows it; the runs go on if it cannot be noted.
        let at = time::OffsetDateTime::now_utc() + wait;
        noted_at = Some(at);
        let noted = tenant
            .database
            .connect()
            .and_then(|conn| serve_schedule::record(&conn, &name, at, schedule.interval_secs()));
        if let Err(e) = noted {
            tracing::warn!(tenant = %name, "{e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wake.notified() => {}
        }
        if stop.stopped.load(Ordering::SeqCst) {
            return retired(&tenant, &stop, noted_at);
        }
        last = Some(Utc::now());
        // After the run of this process under way, if any (an events run):
        // a steady stream of events must not make every sweep find the
        // tenant busy and wait a whole interval.
        let stopped = || stop.stopped.load(Ordering::SeqCst);
        match tenant.sync_when_free(runtime, SyncMode::Incremental, false, &stopped).await {
            Ok(Some(report)) => log_run(&report),
            Ok(None) => {}
            Err(e) => tracing::error!(tenant = %name, "scheduled run failed: {e:#}"),
        }
    }
}

/// A schedule loop ends: nothing schedules a removed tenant any more (a
/// replaced one's successor notes its own next run, as does the tenant
/// added back while this loop's last run went on: its note stays).
fn retired(tenant: &Tenant, stop: &Stop, noted_at: Option<time::OffsetDateTime>) {
    let name = &tenant.config.tenant;
    let Some(at) = noted_at.filter(|_| stop.removed.load(Ordering::SeqCst)) else { return };
    if let Err(e) = tenant.database.connect().and_then(|c| serve_schedule::clear_noted(&c, name, at)) {
        tracing::warn!(tenant = %name, "{e:#}");
    }
}

/// The log target of finished runs (see `console::init_logs`).
pub const RUNS_LOG: &str = "host_harness::runs";

/// One event per finished run: its outcome and counts as fields.
pub fn log_run(report: &crate::scheduler::RunReport) {
    let counts: Vec<String> = report.objects.iter().map(|(kind, c)| format!("{kind} {}", c.summary())).collect();
    let counts = counts.join(", ");
    let outcome = report.outcome();
    match &report.error {
        Some(error) if outcome != "busy" => tracing::warn!(
            target: RUNS_LOG,
            tenant = %report.tenant, run = %report.run_id, mode = report.mode, outcome,
            duration_ms = report.duration_ms, %counts, %error, "run finished"
        ),
        // Busy: the lease was held, nothing was done.
        Some(error) => tracing::info!(
            target: RUNS_LOG,
            tenant = %report.tenant, run = %report.run_id, mode = report.mode, outcome,
            duration_ms = report.duration_ms, %counts, %error, "run finished"
        ),
        None => tracing::info!(
            target: RUNS_LOG,
            tenant = %report.tenant, run = %report.run_id, mode = report.mode, outcome,
            duration_ms = report.duration_ms, %counts, "run finished"
        ),
    }
}
