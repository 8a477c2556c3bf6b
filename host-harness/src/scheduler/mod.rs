//! Starting runs: build the tenant's sandbox from its config, run the
//! component, record the run in the `runs` table and return its report.

mod process;
pub mod recovery;
pub mod serve_schedule;

pub use process::Liveness;

use crate::config::HarnessConfig;
use crate::host::{
    ConnectorError, GuestClock, RecordKind, RecordRef, ReplayScope, RunOutput, Runtime, SyncMode, SyncRequest,
    TenantRun,
};
use crate::secrets::{Cipher, SecretFile};
use crate::store::{Database, now_text};
use anyhow::{Context, Result};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the component keeps the tenant's lease in its state bucket.
const LEASE_KEY: &str = netsuite_salesforce::sync::lease::LEASE_KEY;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectCounts {
    pub read: u32,
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub failed: u32,
    pub deleted: u32,
    pub deferred: u32,
    /// Of the outcomes, those taken from a stopped run's Bulk jobs (that
    /// run read the records).
    pub resumed: u32,
    /// Salesforce edits written to NetSuite (vendor write-back), apart
    /// from the outcomes above.
    pub written_back: u32,
}

impl ObjectCounts {
    /// The counts as one line's tail: `read 3 created 2 ...`, and how many
    /// came from a stopped run's Bulk jobs when any did.
    pub fn text(&self) -> String {
        let c = self;
        let mut line = format!(
            "read {} created {} updated {} unchanged {} deferred {} failed {} deleted {}",
            c.read, c.created, c.updated, c.unchanged, c.deferred, c.failed, c.deleted
        );
        if c.resumed > 0 {
            line.push_str(&format!(" ({} of them from the Bulk jobs of a stopped run, which read them)", c.resumed));
        }
        if c.written_back > 0 {
            line.push_str(&format!("; written back to NetSuite {}", c.written_back));
        }
        line
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiCalls {
    pub netsuite: u32,
    pub salesforce: u32,
}

/// The Salesforce org's daily API usage (all its integrations and users),
/// from the `Sforce-Limit-Info` of the run's last Salesforce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceApiUsage {
    pub used: u64,
    pub limit: u64,
}

/// What a run did, as printed by `demo --json` and `sync --json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub tenant: String,
    pub mode: &'static str,
    /// `succeeded`, `stopped` (a quota or rate limit ended it early; the
    /// cursor is kept and the next run resumes) or `failed`. The run log
    /// also has `stopped` for a run a signal interrupted and `crashed` for
    /// one whose process ended without finishing it (see [`recovery`]).
    pub status: &'static str,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Per NetSuite record kind (customer, contact, vendor).
    pub objects: BTreeMap<&'static str, ObjectCounts>,
    pub api_calls: ApiCalls,
    /// The largest linear memory the component had during the run.
    pub guest_peak_memory_bytes: u64,
    /// How long making the run's instance of the component took.
    pub instantiation_micros: u64,
    /// Time the component spent running its own code (what `max_cpu_ms` caps).
    pub guest_cpu_ms: u64,
    /// None when the run had no answer from Salesforce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salesforce_api_usage: Option<SalesforceApiUsage>,
    /// Dry runs: what a real run would write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlanEntry>,
}

/// One record a dry run would write.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub kind: &'static str,
    pub netsuite_id: String,
    pub action: String,
    pub changes: serde_json::Value,
    /// `fail` only: why the run would fail the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run's report as the run log keeps it (`runs.report`, the JSON of a
/// [`RunReport`]), read back: the figures `connector status` shows. Reports
/// of older versions lack some; those read as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StoredRunReport {
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub objects: BTreeMap<String, ObjectCounts>,
    #[serde(default)]
    pub api_calls: Option<ApiCalls>,
    #[serde(default)]
    pub salesforce_api_usage: Option<SalesforceApiUsage>,
}

impl StoredRunReport {
    pub fn parse(json: &str) -> Result<StoredRunReport> {
        serde_json::from_str(json).context("the run log holds a report that is not a run report")
    }
}

impl RunReport {
    pub fn counts(&self, kind: &str) -> ObjectCounts {
        self.objects.get(kind).copied().unwrap_or_default()
    }

    /// The status, or `busy` for a run that found the lease held and did
    /// nothing: not a failure to alert on (one whose lease another run took
    /// half-way did work, and failed).
    pub fn outcome(&self) -> &'static str {
        let busy = self.status == "failed"
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("busy") && e.contains(netsuite_salesforce::sync::lease::RAN_NOTHING));
        if busy { "busy" } else { self.status }
    }
}

impl ObjectCounts {
    /// `read N written N`, then each other outcome a run had (failed,
    /// deferred, deleted, written back), as a log line shows a kind.
    pub fn summary(&self) -> String {
        let mut line = format!("read {} written {}", self.read, self.created + self.updated);
        for (what, n) in [
            ("failed", self.failed),
            ("deferred", self.deferred),
            ("deleted", self.deleted),
            ("written back", self.written_back),
        ] {
            if n > 0 {
                line.push_str(&format!(" {what} {n}"));
            }
        }
        line
    }
}

/// The runs of one tenant (its name on its database) under way in this
/// process, shared by every [`Tenant`] loaded for it: a replaced tenant's
/// run still under way keeps its successor waiting.
#[derive(Default)]
struct Activity {
    running: std::sync::atomic::AtomicUsize,
    /// Woken when the last of them ends.
    idle: tokio::sync::Notify,
}

impl Activity {
    fn of(database: &std::path::Path, tenant: &str) -> Arc<Activity> {
        type Registry = std::sync::Mutex<HashMap<(std::path::PathBuf, String), std::sync::Weak<Activity>>>;
        static ALL: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        let mut all = ALL.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, a| a.strong_count() > 0);
        // One database however its path is spelt (relative, a symlink).
        let place = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_path_buf());
        let key = (place, tenant.to_string());
        if let Some(shared) = all.get(&key).and_then(std::sync::Weak::upgrade) {
            return shared;
        }
        let activity = Arc::new(Activity::default());
        all.insert(key, Arc::downgrade(&activity));
        activity
    }
}

/// Counts a run as under way for as long as it lives; the last one to end
/// wakes those waiting for the tenant to be free ([`Tenant::until_idle`]).
struct Running<'a>(&'a Activity);

impl<'a> Running<'a> {
    fn new(activity: &'a Activity) -> Running<'a> {
        activity.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(activity)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The longest a run waiting for a lease another process holds waits
/// between asks (each ask is a run that finds it busy, in the run log).
const BUSY_PAUSE_MAX: Duration = Duration::from_secs(10);

pub fn new_run_id() -> String {
    let mut raw = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut raw);
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    format!("run-{stamp}-{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Customer => "customer",
        RecordKind::Contact => "contact",
        RecordKind::Vendor => "vendor",
    }
}

pub fn parse_kind(name: &str) -> Result<RecordKind> {
    // `--kinds "customer, contact"` splits at the comma only.
    match name.trim() {
        "customer" | "customers" => Ok(RecordKind::Customer),
        "contact" | "contacts" => Ok(RecordKind::Contact),
        "vendor" | "vendors" => Ok(RecordKind::Vendor),
        other => anyhow::bail!("unknown record kind `{other}`: use customer, contact or vendor"),
    }
}

/// The record `replay --record kind:id` names. The id reads as a number,
/// as change events do (`011` is record 11); a vendor Salesforce created that
/// NetSuite has not taken yet is named by its Salesforce id (15 or 18
/// characters).
pub fn parse_record_ref(text: &str) -> Result<RecordRef> {
    let (kind, id) = text.split_once(':').context("--record takes kind:id, e.g. customer:42")?;
    let kind = parse_kind(kind.trim())?;
    let id = id.trim();
    let id = match netsuite_salesforce::netsuite::suiteql::internal_id(id) {
        Ok(n) => n.to_string(),
        Err(_) if id.is_empty() => {
            anyhow::bail!("--record `{text}` names no id: write it as kind:id (e.g. customer:42)")
        }
        Err(_) if !id.bytes().all(|b| b.is_ascii_digit()) => netsuite_salesforce::salesforce::ids::full_id(id)
            .with_context(|| {
                format!(
                    "--record `{text}`: name the record by its NetSuite internal id (digits, e.g. customer:42), or a \
                     vendor created in Salesforce by its Salesforce id"
                )
            })?,
        Err(_) => anyhow::bail!("--record `{text}`: {id} is past the largest NetSuite internal id; check the number"),
    };
    Ok(RecordRef { kind, id })
}

/// What a run is asked to do.
struct Request {
    mode: SyncMode,
    kinds: Vec<RecordKind>,
    replay: Option<ReplayScope>,
    dry_run: bool,
    compare_live: bool,
}

impl Default for Request {
    fn default() -> Self {
        Request { mode: SyncMode::Incremental, kinds: vec![], replay: None, dry_run: false, compare_live: false }
    }
}

/// A tenant ready to run: its config, decrypted secrets and database.
pub struct Tenant {
    pub config: HarnessConfig,
    pub cipher: Cipher,
    pub database: Database,
    /// Simulated time for the guest; None for the real clock.
    pub clock: Option<GuestClock>,
    /// Settings that replace the config file's from the next run on.
    overrides: std::sync::Mutex<BTreeMap<String, String>>,
    /// A memory cap (MB) that replaces the config's from the next run on.
    memory_override: std::sync::Mutex<Option<usize>>,
    /// Where the runs that follow count their progress, when someone watches.
    progress: std::sync::Mutex<Option<std::sync::Arc<crate::host::progress::Progress>>>,
    /// Once set, this tenant's runs end at their next checkpoint.
    stop: std::sync::Arc<crate::host::control::StopRequest>,
    /// Runs of this tenant under way in this process.
    activity: Arc<Activity>,
    /// The mapping its runs use, when fixed at load (see [`Tenant::pin_mapping`]);
    /// else each run reads `mapping_file`.
    pinned_mapping: std::sync::OnceLock<String>,
}

impl Tenant {
    pub fn open(config: HarnessConfig, cipher: Cipher, clock: Option<GuestClock>) -> Result<Tenant> {
        let database = Database::open(&config.database_path())?;
        let activity = Activity::of(&config.database_path(), &config.tenant);
        Ok(Tenant {
            config,
            cipher,
            database,
            clock,
            overrides: Default::default(),
            memory_override: Default::default(),
            progress: Default::default(),
            stop: Default::default(),
            activity,
            pinned_mapping: Default::default(),
        })
    }

    /// Reads and checks the mapping file now, and has every run use what
    /// was read: a host that reloads the file on change keeps a tenant on
    /// its last good mapping when the file stops loading.
    pub fn pin_mapping(&self) -> Result<()> {
        let Some(text) = self.read_mapping()? else { return Ok(()) };
        let _ = self.pinned_mapping.set(text);
        Ok(())
    }

    /// The mapping file's text (None: the shipped mapping).
    fn read_mapping(&self) -> Result<Option<String>> {
        let Some(path) = &self.config.mapping_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the mapping file {} (setting mapping_file)", path.display()))?;
        // Blank, it would read as no mapping at all: the shipped one.
        if text.trim().is_empty() {
            anyhow::bail!(
                "the mapping file {} (setting mapping_file) is empty: write the mapping there (start from \
                 src/mapping/default.toml), or remove the setting to use the shipped mapping",
                path.display()
            );
        }
        // Checked here too, so the error names the file the run never sees.
        if let Err(e) = netsuite_salesforce::mapping::Mapping::load(Some(&text)) {
            let why = match &e {
                netsuite_salesforce::model::ConnectorError::Config(m) => {
                    m.strip_prefix("the mapping file is not valid: ").unwrap_or(m).to_string()
                }
                other => other.to_string(),
            };
            // TOML's error draws the line with a caret: one line says it.
            let lines: Vec<&str> = why.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let why = match (lines.first(), lines.last()) {
                (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
                _ => why.trim().to_string(),
            };
            anyhow::bail!("the mapping file {} (setting mapping_file) is not valid: {why}", path.display());
        }
        Ok(Some(text))
    }

    /// Asks this tenant's runs, those under way and any that start later,
    /// to end at their next checkpoint (the host is shutting down).
    pub fn request_stop(&self, reason: &str) {
        self.stop.request(reason);
    }

    /// Whether this tenant's runs were asked to stop (the host is shutting down).
    pub fn stopping(&self) -> bool {
        self.stop.reason().is_some()
    }

    /// How many runs of this tenant are under way in this process.
    pub fn running(&self) -> usize {
        self.activity.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once no run of this tenant is under way in this process.
    pub async fn until_idle(&self) {
        loop {
            // Registered before the count is read: an end in between wakes it.
            let ended = self.activity.idle.notified();
            if self.running() == 0 {
                return;
            }
            ended.await;
        }
    }

    /// Runs a sync once no other run holds the tenant's lease. One under
    /// way in this process is waited for (no run is started to find it
    /// busy); one elsewhere (another process) is asked again, less often
    /// each time up to [`BUSY_PAUSE_MAX`], when `elsewhere_too`, else its
    /// busy report is the answer. None when `stop` says to give up (the
    /// tenant was removed or replaced, or the host is shutting down)
    /// before it ran.
    pub async fn sync_when_free(
        &self,
        runtime: &Runtime,
        mode: SyncMode,
        elsewhere_too: bool,
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Option<RunReport>> {
        let mut pause = Duration::from_millis(250);
        loop {
            self.until_idle().await;
            if stop() {
                return Ok(None);
            }
            let report = self.sync(runtime, mode, &[]).await?;
            // Busy, or the lease taken over half-way (the rest is done again).
            if !report.error.as_deref().is_some_and(|e| e.starts_with("busy")) {
                return Ok(Some(report));
            }
            // Lost to a run of this process that started at the same moment.
            if self.running() > 0 {
                continue;
            }
            if !elsewhere_too {
                return Ok(Some(report));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(BUSY_PAUSE_MAX);
        }
    }

    /// Replaces a setting for the runs that follow (the config file is
    /// left as it is).
    pub fn set_override(&self, name: &str, value: &str) {
        self.overrides.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into(), value.into());
    }

    /// The runs that follow count their audit entries into the returned
    /// progress (a display reads it while they run).
    pub fn watch_progress(&self) -> std::sync::Arc<crate::host::progress::Progress> {
        let progress = std::sync::Arc::new(crate::host::progress::Progress::default());
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(progress.clone());
        progress
    }

    /// Replaces the component's memory cap for the runs that follow.
    pub fn set_max_memory_mb(&self, mb: usize) {
        *self.memory_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(mb);
    }

    /// The sandbox one run of this tenant gets: settings and secrets,
    /// allowed hosts, the database, limits.
    pub fn sandbox(&self) -> Result<TenantRun> {
        let mut values = self.config.settings_text();
        let mapping = match self.pinned_mapping.get() {
            Some(text) => Some(text.clone()),
            None => self.read_mapping()?,
        };
        if let Some(text) = mapping {
            values.insert("mapping_toml".into(), text);
        }
        let path = self.config.secrets_path();
        let secrets = SecretFile::read(&path, &self.cipher).map_err(|e| {
            // The key this process read at start may be the old one of a rekey.
            let now = crate::secrets::Cipher::load(self.config.master_key_file.as_deref());
            if now.is_ok_and(|key| SecretFile::read(&path, &key).is_ok()) {
                return anyhow::anyhow!(
                    "the master key in {} changed since this process read it at start, and the secrets are \
                     sealed under the new one: restart it to use the new key",
                    self.key_source()
                );
            }
            e.context(format!("reading the tenant's secrets with the master key from {}", self.key_source()))
        })?;
        values.extend(secrets);
        values.extend(self.overrides.lock().unwrap_or_else(|p| p.into_inner()).clone());
        Ok(TenantRun {
            tenant: self.config.tenant.clone(),
            allowed_hosts: self.config.outbound_hosts_for(&values),
            config: values,
            database: self.database.clone(),
            cipher: self.cipher.clone(),
            wall_clock: self.clock.clone(),
            progress: self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            stop: self.stop.clone(),
            max_memory_bytes: self
                .memory_override
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or(self.config.max_memory_mb)
                << 20,
            deadline: Duration::from_secs(self.config.run_deadline_secs),
            max_cpu: self.config.max_cpu_ms.map(Duration::from_millis),
        })
    }

    /// Where the master key came from, for messages (never the key).
    fn key_source(&self) -> String {
        match (&self.config.master_key_file, std::env::var(crate::secrets::MASTER_KEY_ENV).is_ok()) {
            (_, true) => crate::secrets::MASTER_KEY_ENV.to_string(),
            (Some(path), false) => format!("master_key_file {}", path.display()),
            (None, false) => "nowhere".into(),
        }
    }

    /// Runs one sync and records it. A failed sync is a report with status
    /// `failed` and the connector's message; only host faults are errors.
    pub async fn sync(&self, runtime: &Runtime, mode: SyncMode, kinds: &[RecordKind]) -> Result<RunReport> {
        self.start(runtime, Request { mode, kinds: kinds.to_vec(), ..Default::default() }).await
    }

    /// Runs one sync that also compares the records Salesforce should hold
    /// already with the live ones, and writes again those edited or deleted
    /// there since the connector wrote them (drift repair).
    pub async fn sync_compared_live(
        &self,
        runtime: &Runtime,
        mode: SyncMode,
        kinds: &[RecordKind],
    ) -> Result<RunReport> {
        self.start(runtime, Request { mode, kinds: kinds.to_vec(), compare_live: true, ..Default::default() }).await
    }

    /// Sends failed writes again (all, a run's, or one record's). A run id
    /// the run log lacks is refused (a typo would otherwise replay nothing,
    /// successfully).
    pub async fn replay(&self, runtime: &Runtime, scope: ReplayScope) -> Result<RunReport> {
        if let ReplayScope::Run(run) = &scope {
            let known: bool = self.database.connect()?.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE tenant = ?1 AND run_id = ?2)",
                params![self.config.tenant, run],
                |r| r.get(0),
            )?;
            anyhow::ensure!(
                known,
                "no run `{run}` of tenant `{}` in the run log: `connector audit list --outcome failed` shows the runs \
                 whose writes failed",
                self.config.tenant
            );
        }
        self.start(runtime, Request { replay: Some(scope), ..Default::default() }).await
    }

    /// Reads and maps, reports what a run would write, writes nothing.
    /// `mode` Full plans from every record, as `sync --full` would write.
    pub async fn dry_run(
        &self,
        runtime: &Runtime,
        mode: SyncMode,
        kinds: &[RecordKind],
        compare_live: bool,
    ) -> Result<RunReport> {
        self.start(runtime, Request { mode, kinds: kinds.to_vec(), dry_run: true, compare_live, ..Default::default() })
            .await
    }

    /// Refuses a tenant renamed in its config: its secrets file ran under
    /// another name on this database, and this name never ran here. State is
    /// kept by name, so it would start again from nothing — every record
    /// written again, past deletions applied again with today's settings.
    /// Nothing is recorded, so the refusal stands until the name is put back
    /// or the tenant gets files of its own. Another tenant sharing the
    /// database with secrets of its own runs as before.
    fn check_not_renamed(&self, conn: &rusqlite::Connection) -> Result<()> {
        let tenant = &self.config.tenant;
        let secrets = self.config.secrets_path();
        let secrets = std::fs::canonicalize(&secrets).unwrap_or(secrets).to_string_lossy().into_owned();
        let ours: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM runs WHERE tenant = ?1)", [tenant], |r| r.get(0))?;
        let before: Option<String> = conn
            .query_row("SELECT tenant FROM tenant_secrets WHERE secrets_path = ?1", [&secrets], |r| r.get(0))
            .optional()?;
        if let Some(other) = before.filter(|other| other != tenant && !ours) {
            anyhow::bail!(
                "the secrets file {secrets} ran as tenant `{other}` on the database {}, whose state is kept by tenant \
                 name: as `{tenant}` the connector would start again from nothing, writing every record again and \
                 applying past deletions again. If you renamed the tenant, put its name back (`tenant = \"{other}\"`, \
                 or `name = \"{other}\"` in a [[tenant]] table); if \
                 `{tenant}` is another tenant, give it a secrets_file (or data_dir) of its own",
                self.config.database_path().display()
            );
        }
        conn.execute(
            "INSERT INTO tenant_secrets (secrets_path, tenant) VALUES (?1, ?2)
             ON CONFLICT (secrets_path) DO UPDATE SET tenant = excluded.tenant",
            params![secrets, tenant],
        )?;
        Ok(())
    }

    async fn start(&self, runtime: &Runtime, req: Request) -> Result<RunReport> {
        let _running = Running::new(&self.activity);
        let run_id = new_run_id();
        let mode_name = match (&req.replay, req.dry_run, req.mode, req.compare_live) {
            (Some(_), ..) => "replay",
            (None, true, SyncMode::Full, false) => "dry-run full",
            (None, true, SyncMode::Full, true) => "dry-run full compare-live",
            (None, true, _, false) => "dry-run",
            (None, true, _, true) => "dry-run compare-live",
            (None, false, SyncMode::Incremental, false) => "incremental",
            (None, false, SyncMode::Incremental, true) => "incremental compare-live",
            (None, false, SyncMode::Full, false) => "full",
            (None, false, SyncMode::Full, true) => "full compare-live",
            (None, false, SyncMode::Events, _) => "events",
        };
        let conn = self.database.connect()?;
        let started = Instant::now();
        let mut report = RunReport {
            run_id: run_id.clone(),
            tenant: self.config.tenant.clone(),
            mode: mode_name,
            status: "succeeded",
            error: None,
            duration_ms: 0,
            objects: BTreeMap::new(),
            api_calls: ApiCalls::default(),
            guest_peak_memory_bytes: 0,
            instantiation_micros: 0,
            guest_cpu_ms: 0,
            salesforce_api_usage: None,
            plan: Vec::new(),
        };
        // Refused without a row (a row under the new name would let the
        // next run pass the check), but counted failed where alerts look.
        if let Err(e) = self.check_not_renamed(&conn) {
            if crate::store::locked(&e) {
                return self.locked_out(report, e);
            }
            report.status = "failed";
            report.error = Some(format!("{e:#}"));
            crate::metrics::observe(&report);
            return Err(e);
        }
        // The row and the process running it together: a run starting
        // meanwhile never sees one without the other.
        let recorded = (|| -> Result<()> {
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO runs (run_id, tenant, started_at, mode, status) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![run_id, self.config.tenant, now_text(), mode_name],
            )?;
            recovery::record(&tx, &self.config.tenant, &run_id)?;
            Ok(tx.commit()?)
        })();
        if let Err(e) = recorded {
            return self.locked_out(report, e);
        }
        // From here on every outcome, a failure to even start included, ends
        // the run's row: none stays "running".
        let detail = match self.execute(runtime, &run_id, req).await {
            Ok((output, settings)) => self.fill(&mut report, output, &settings, &conn),
            Err(e) => {
                report.status = "failed";
                report.error = Some(format!("{e:#}"));
                None
            }
        };
        report.duration_ms = started.elapsed().as_millis() as u64;
        conn.execute(
            "UPDATE runs SET finished_at = ?1, status = ?2, report = ?3, error = ?4, detail = ?5 WHERE run_id = ?6",
            params![now_text(), report.status, serde_json::to_string(&report)?, report.error, detail, run_id],
        )?;
        recovery::finished(&self.kv()?, &run_id)?;
        crate::metrics::observe(&report);
        Ok(report)
    }

    /// A run that could not be recorded: `e` when it is not another
    /// process keeping the write lock past the busy timeout (a run paused or
    /// stuck), else a busy report. Nothing was done, as when the lease is
    /// held, so it is told as busy (exit 4), not as a failure.
    fn locked_out(&self, mut report: RunReport, e: anyhow::Error) -> Result<RunReport> {
        if !crate::store::locked(&e) {
            return Err(e);
        }
        report.status = "failed";
        report.error = Some(format!(
            "busy: another process has held the write lock of {} for over {} s (a run paused or stuck, which \
             `connector status` shows, or a tool such as a `sqlite3` shell); {}. Try again once it lets go",
            self.database.path().display(),
            crate::store::BUSY_TIMEOUT.as_secs(),
            netsuite_salesforce::sync::lease::RAN_NOTHING
        ));
        crate::metrics::observe(&report);
        Ok(report)
    }

    fn kv(&self) -> Result<crate::store::KvStore> {
        Ok(crate::store::KvStore::new(self.database.connect()?, &self.config.tenant, self.cipher.clone()))
    }

    /// Now on the clock the component writes its leases in (and checks
    /// events' signing times against).
    pub fn guest_now(&self) -> i64 {
        use wasmtime_wasi::HostWallClock;
        match &self.clock {
            Some(clock) => clock.now().as_secs() as i64,
            None => time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    }

    /// Ends the runs this process was running as `stopped` (a signal asked
    /// it to stop); returns their ids.
    pub fn interrupted(&self, signal: &str) -> Result<Vec<String>> {
        recovery::interrupted(&self.database.connect()?, signal)
    }

    /// Runs the component in the tenant's sandbox.
    async fn execute(
        &self,
        runtime: &Runtime,
        run_id: &str,
        req: Request,
    ) -> Result<(RunOutput, BTreeMap<String, String>)> {
        recovery::recover(&self.kv()?, run_id, self.guest_now())
            .context("looking for runs of this tenant whose process ended without finishing them")?;
        let sandbox = self.sandbox()?;
        let settings = sandbox.config.clone();
        let request = SyncRequest {
            run_id: run_id.to_string(),
            mode: req.mode,
            kinds: req.kinds,
            replay: req.replay,
            dry_run: req.dry_run,
            compare_live: req.compare_live,
        };
        Ok((runtime.sync(sandbox, request).await?, settings))
    }

    /// Fills the report from what the run produced; returns the full text
    /// of a trap for the run log.
    fn fill(
        &self,
        report: &mut RunReport,
        output: RunOutput,
        settings: &BTreeMap<String, String>,
        conn: &rusqlite::Connection,
    ) -> Option<String> {
        report.guest_peak_memory_bytes = output.guest_peak_memory_bytes as u64;
        report.instantiation_micros = output.instantiation.as_micros() as u64;
        report.guest_cpu_ms = output.guest_cpu.as_millis() as u64;
        report.salesforce_api_usage =
            output.salesforce_usage.map(|u| SalesforceApiUsage { used: u.used, limit: u.limit });
        let r = match output.report {
            Ok(r) => r,
            Err(trap) => {
                // The component is gone: what it did is in the audit trail and
                // in the requests the host sent for it; its lease is freed so
                // the next run need not wait for it to expire.
                report.status = "failed";
                report.error = Some(trap.summary);
                report.objects = counts_from_audit(conn, &self.config.tenant, &report.run_id).unwrap_or_default();
                let netsuite = crate::config::netsuite_authority(settings).map(|a| a.to_ascii_lowercase());
                for (authority, n) in &output.sent {
                    if Some(authority) == netsuite.as_ref() {
                        report.api_calls.netsuite += n;
                    } else {
                        report.api_calls.salesforce += n;
                    }
                }
                if let Err(e) = self.free_lease(&report.run_id) {
                    report.error = Some(format!(
                        "{}; its lease could not be freed: {e:#}",
                        report.error.take().unwrap_or_default()
                    ));
                }
                tracing::debug!(run_id = %report.run_id, "the component trapped: {}", trap.detail);
                return Some(trap.detail);
            }
        };
        for k in r.kinds {
            report.objects.insert(
                kind_name(k.kind),
                ObjectCounts {
                    read: k.read,
                    created: k.created,
                    updated: k.updated,
                    unchanged: k.unchanged,
                    failed: k.failed,
                    deleted: k.deleted,
                    deferred: k.deferred,
                    resumed: k.resumed,
                    written_back: k.written_back,
                },
            );
        }
        report.api_calls = ApiCalls { netsuite: r.api_calls.netsuite, salesforce: r.api_calls.salesforce };
        report.plan = r
            .plan
            .into_iter()
            .map(|p| PlanEntry {
                kind: kind_name(p.kind),
                netsuite_id: p.netsuite_id,
                action: p.action,
                changes: serde_json::from_str(&p.changes_json).unwrap_or_default(),
                error: p.error,
            })
            .collect();
        if let Some(e) = r.error {
            // A quota or a limit that outlasted the retries, or the host
            // shutting down, stops a run cleanly (cursor kept); anything
            // else is a failure.
            report.status = match e {
                ConnectorError::RateLimited(_) | ConnectorError::Stopped(_) => "stopped",
                _ => "failed",
            };
            report.error = Some(crate::host::describe_error(&e));
        }
        None
    }

    /// Frees the tenant's lease if `run_id` holds it (its component trapped
    /// before giving it back).
    fn free_lease(&self, run_id: &str) -> Result<()> {
        let kv = self.kv()?;
        let Some(value) = kv.get(crate::store::kv::STATE_BUCKET, LEASE_KEY)? else { return Ok(()) };
        let holder: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
        if holder["run_id"].as_str() == Some(run_id) {
            kv.delete(crate::store::kv::STATE_BUCKET, LEASE_KEY)?;
        }
        Ok(())
    }
}

/// A run's counts from its audit rows (when the component could not report them).
fn counts_from_audit(
    conn: &rusqlite::Connection,
    tenant: &str,
    run_id: &str,
) -> Result<BTreeMap<&'static str, ObjectCounts>> {
    let mut stmt = conn.prepare(
        "SELECT kind, outcome, action, COUNT(*) FROM audit WHERE tenant = ?1 AND run_id = ?2 GROUP BY 1, 2, 3",
    )?;
    let mut counts: BTreeMap<&'static str, ObjectCounts> = BTreeMap::new();
    let rows = stmt.query_map(params![tenant, run_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, u32>(3)?))
    })?;
    for row in rows {
        let (kind, outcome, action, n) = row?;
        let Ok(kind) = parse_kind(&kind) else { continue };
        let c = counts.entry(kind_name(kind)).or_default();
        // Write-back rows: Salesforce's edits reaching NetSuite, counted
        // apart (their failures are failures of the run like any other).
        let written_back = matches!(action.as_str(), "netsuite-write" | "netsuite-create" | "netsuite-inactivate");
        let back = written_back || matches!(action.as_str(), "link" | "skip-deleted-in-netsuite" | "conflict");
        if back {
            match outcome.as_str() {
                "failed" => c.failed += n,
                _ if written_back => c.written_back += n,
                _ => {}
            }
            continue;
        }
        let resumed = action == "bulk-resume";
        match outcome.as_str() {
            "created" => c.created += n,
            "updated" => c.updated += n,
            "unchanged" => c.unchanged += n,
            "failed" => c.failed += n,
            "deleted" => c.deleted += n,
            "deferred" => c.deferred += n,
            _ => continue,
        }
        // A stopped run's Bulk jobs: that run read their records.
        if resumed {
            c.resumed += n;
        } else if outcome != "deleted" {
            c.read += n;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_named_by_its_netsuite_id_or_a_salesforce_created_vendor_by_its_salesforce_id() {
        let named = |t: &str| parse_record_ref(t).map(|r| (r.kind, r.id)).map_err(|e| format!("{e:#}"));
        assert_eq!(named("customer:011"), Ok((RecordKind::Customer, "11".into())));
        assert_eq!(named("vendor: a018d0000000015"), Ok((RecordKind::Vendor, "a018d0000000015AAA".into())));
        assert_eq!(named("vendor:a018d0000000015AAA"), Ok((RecordKind::Vendor, "a018d0000000015AAA".into())));
        assert!(named("customer:").unwrap_err().contains("names no id"));
        assert!(named("customer:99999999999999999999").unwrap_err().contains("past the largest"));
        assert!(named("customer:-5").unwrap_err().contains("NetSuite internal id (digits"));
        assert!(named("customer42").unwrap_err().contains("kind:id"));
        assert!(named("account:4").unwrap_err().contains("unknown record kind"));
    }

    #[test]
    fn kinds_listed_with_spaces_after_the_commas_are_read() {
        let kinds: Vec<RecordKind> = "customer, contact , vendor".split(',').map(|k| parse_kind(k).unwrap()).collect();
        assert_eq!(kinds, [RecordKind::Customer, RecordKind::Contact, RecordKind::Vendor]);
        assert!(format!("{:#}", parse_kind("acount").unwrap_err()).contains("use customer, contact or vendor"));
    }

    /// The run log's line of a kind names every outcome the run had, not
    /// only reads and writes (a failed write hidden there is missed).
    #[test]
    fn a_kind_s_summary_names_failures_deferrals_and_deletions() {
        let quiet = ObjectCounts { read: 3, unchanged: 3, ..Default::default() };
        assert_eq!(quiet.summary(), "read 3 written 0");
        let busy = ObjectCounts {
            read: 200,
            created: 150,
            updated: 31,
            failed: 19,
            deferred: 35,
            deleted: 2,
            written_back: 4,
            ..Default::default()
        };
        assert_eq!(busy.summary(), "read 200 written 181 failed 19 deferred 35 deleted 2 written back 4");
    }

    #[test]
    fn a_stored_report_reads_back_what_a_run_report_wrote() {
        let report = RunReport {
            run_id: "run-1".into(),
            tenant: "acme".into(),
            mode: "incremental",
            status: "succeeded",
            error: None,
            duration_ms: 1234,
            objects: BTreeMap::from([(
                "customer",
                ObjectCounts { read: 5, created: 2, deferred: 1, ..Default::default() },
            )]),
            api_calls: ApiCalls { netsuite: 3, salesforce: 4 },
            guest_peak_memory_bytes: 1 << 20,
            instantiation_micros: 0,
            guest_cpu_ms: 0,
            salesforce_api_usage: Some(SalesforceApiUsage { used: 120, limit: 15000 }),
            plan: vec![],
        };
        let stored = StoredRunReport::parse(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(stored.duration_ms, Some(1234));
        assert_eq!(stored.objects["customer"], report.objects["customer"]);
        assert_eq!(stored.api_calls, Some(report.api_calls));
        assert_eq!(stored.salesforce_api_usage, report.salesforce_api_usage);
        // A report of a version before the usage was kept.
        let old = StoredRunReport::parse(r#"{"duration_ms":5,"objects":{"contact":{"read":1}}}"#).unwrap();
        assert_eq!((old.objects["contact"].read, old.salesforce_api_usage), (1, None));
    }

    #[test]
    fn a_trapped_runs_counts_from_its_audit_tell_a_stopped_runs_bulk_jobs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::Database::open(&dir.path().join("state.db")).unwrap().connect().unwrap();
        let row = |id: &str, action: &str, outcome: &str| crate::audit::AuditRow {
            run_id: "run-2".into(),
            kind: "customer".into(),
            action: action.into(),
            direction: "netsuite-to-salesforce".into(),
            netsuite_id: id.into(),
            salesforce_id: None,
            outcome: outcome.into(),
            transformations: "[]".into(),
            shape: None,
            error: None,
        };
        let rows = [
            row("1", "bulk-resume", "created"),
            row("2", "bulk-resume", "failed"),
            row("3", "write", "created"),
            row("4", "skip-unchanged", "unchanged"),
            row("5", "delete", "deleted"),
            // Write-back: counted apart, failures as failures.
            row("6", "netsuite-write", "updated"),
            row("7", "netsuite-create", "created"),
            row("7", "link", "updated"),
            row("8", "netsuite-inactivate", "updated"),
            row("9", "netsuite-write", "failed"),
            row("10", "skip-deleted-in-netsuite", "unchanged"),
        ];
        crate::audit::insert(&conn, "acme", "2026-12-05T00:00:00.000000Z", &rows).unwrap();
        let counts = counts_from_audit(&conn, "acme", "run-2").unwrap();
        let expected = ObjectCounts {
            read: 2,
            created: 2,
            unchanged: 1,
            failed: 2,
            deleted: 1,
            resumed: 2,
            written_back: 3,
            ..Default::default()
        };
        assert_eq!(counts["customer"], expected);
    }
}
