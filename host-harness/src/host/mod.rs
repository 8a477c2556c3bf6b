//! The wasmtime host: compiles the component once, then instantiates it per
//! run in a store of its own with the tenant's imports and limits.

mod audit;
pub mod bindings;
mod clock;
mod compiled;
pub mod control;
mod cpu;
mod guest_stderr;
pub mod keyvalue;
mod limits;
pub mod outbound;
pub mod progress;
mod state;

pub use bindings::exports::ml_connector::netsuite_salesforce::source::DeletedPage;
pub use bindings::exports::ml_connector::netsuite_salesforce::sync::{
    RecordRef, ReplayScope, SyncMode, SyncReport, SyncRequest,
};
pub use bindings::ml_connector::netsuite_salesforce::types::{
    ConnectorError, Cursor, NetsuiteRecord, Page, RecordKind,
};
pub use clock::GuestClock;
use guest_stderr::GuestStderr;
pub use state::HostState;

use crate::secrets::Cipher;
use crate::store::{Database, RunStore};
use anyhow::Result;
use bindings::{Connector, ConnectorPre};
use outbound::OutboundPolicy;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::WasiHttpCtx;

/// How often the epoch ticks: run deadlines and CPU budgets are checked
/// this often while the guest runs its own code.
const EPOCH_TICK: Duration = Duration::from_millis(100);
/// Core instances (and tables) one connector instance may hold in a pool
/// slot: the component's module and the shims wit-component adds.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Linear memories per connector instance (it has one); each pooled memory
/// reserves address space up to the wasm32 maximum, so few are kept.
const MEMORIES_PER_COMPONENT: u32 = 2;

/// The compiled component and its linker, shared by every run.
pub struct Runtime {
    engine: Engine,
    pre: ConnectorPre<HostState>,
    ticking: Arc<AtomicBool>,
    /// With the pooling allocator: one permit per instance slot, so a run or
    /// an event check beyond them waits for a slot instead of failing; and
    /// the slots runs may take, fewer, so event checks (milliseconds) never
    /// queue behind a line of runs (minutes).
    slots: Option<(Arc<tokio::sync::Semaphore>, Arc<tokio::sync::Semaphore>)>,
}

/// How long a change event waits, in all, before it is answered 503.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);

/// Every pool slot stayed taken until the event's deadline: nothing was done.
#[derive(Debug)]
pub struct NoSlot;

impl std::fmt::Display for NoSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "every component instance (`--max-instances`) stayed busy for {} s: nothing was queued, send it again",
            EVENT_WAIT.as_secs()
        )
    }
}

impl std::error::Error for NoSlot {}

/// An instance, and the pool slot it holds. Fields drop in order: the store
/// (which frees the slot) before the permit that lets the next one in.
struct Instance {
    store: Store<HostState>,
    connector: Connector,
    _slot: Option<Slot>,
}

/// A pool slot: its permit, and a run's share of the slots runs may take.
struct Slot {
    _any: tokio::sync::OwnedSemaphorePermit,
    _run: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

/// What one run is allowed and given.
pub struct TenantRun {
    pub tenant: String,
    /// Settings and secrets, by name, exposed through wasi:config.
    pub config: BTreeMap<String, String>,
    /// Hosts the component may call.
    pub allowed_hosts: Vec<String>,
    pub database: Database,
    pub cipher: Cipher,
    /// The guest's wall clock; the real one unless a simulation drives time.
    pub wall_clock: Option<GuestClock>,
    pub max_memory_bytes: usize,
    pub deadline: Duration,
    /// Time the component may spend running its own code (host calls not
    /// counted); None: only the deadline bounds it.
    pub max_cpu: Option<Duration>,
    /// Counts the run's audit entries as they arrive, for a live display.
    pub progress: Option<Arc<progress::Progress>>,
    /// Asks the run to end at its next checkpoint once set.
    pub stop: Arc<control::StopRequest>,
}

/// `CONNECTOR_FUEL` is set: runs count the guest's operations and print them.
fn counting_fuel() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CONNECTOR_FUEL").is_some())
}

impl Runtime {
    /// Compiles `wasm` (a few seconds) and links every import.
    pub fn load(wasm: &Path) -> Result<Runtime> {
        Runtime::load_with(wasm, None)
    }

    /// As `load`; with `pooled_instances`, instances come from wasmtime's
    /// pooling allocator (memory slots reserved once and reused, so making an
    /// instance maps nothing new), at most that many at once.
    pub fn load_with(wasm: &Path, pooled_instances: Option<u32>) -> Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        if let Some(instances) = pooled_instances {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
                .total_memories(instances * MEMORIES_PER_COMPONENT)
                .total_tables(instances * CORE_INSTANCES_PER_COMPONENT)
                .max_memories_per_component(MEMORIES_PER_COMPONENT)
                .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
                // Each tenant's own cap (max_memory_mb) is enforced by its
                // store's limiter; a slot holds up to the wasm32 maximum.
                .max_memory_size(4 << 30);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        // `perf` can name the component's functions when asked to (profiling only).
        if std::env::var_os("CONNECTOR_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Counting the guest's wasm operations (fuel) gives a figure that,
        // unlike time, does not drift with the machine: for comparing builds
        // of the component (profiling only; it slows the guest).
        if counting_fuel() {
            config.consume_fuel(true);
        }
        let engine = Engine::new(&config)?;
        let component = compiled::load(&engine, wasm)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut HostState| WasiConfig::from(&s.config))?;
        bindings::wasi::keyvalue::store::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::wasi::keyvalue::batch::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::ml_connector::netsuite_salesforce::key_swap::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::ml_connector::netsuite_salesforce::audit::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::ml_connector::netsuite_salesforce::run_control::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let pre = ConnectorPre::new(linker.instantiate_pre(&component)?)?;

        let ticking = Arc::new(AtomicBool::new(true));
        let (flag, ticker) = (ticking.clone(), engine.clone());
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticker.increment_epoch();
            }
        })?;
        // One slot in sixteen (at least one, of two or more) is kept for event checks.
        let slots = pooled_instances.map(|n| {
            let kept = if n >= 2 { (n / 16).max(1) } else { 0 };
            let semaphore = |n: u32| Arc::new(tokio::sync::Semaphore::new(n as usize));
            (semaphore(n), semaphore(n - kept))
        });
        Ok(Runtime { engine, pre, ticking, slots })
    }

    async fn instantiate(&self, run: TenantRun) -> Result<Instance> {
        let slot = self.run_slot().await?;
        self.instantiate_timed(run, slot).await.map(|(instance, _)| instance)
    }

    /// A pool slot for a run (None without the pool), waited for as long as it takes.
    async fn run_slot(&self) -> Result<Option<Slot>> {
        let Some((any, runs)) = &self.slots else { return Ok(None) };
        let run = runs.clone().acquire_owned().await?;
        Ok(Some(Slot { _any: any.clone().acquire_owned().await?, _run: Some(run) }))
    }

    /// A pool slot for an event check, by `deadline` or [`NoSlot`].
    async fn event_slot(&self, deadline: tokio::time::Instant) -> Result<Option<Slot>> {
        let Some((any, _)) = &self.slots else { return Ok(None) };
        let any = tokio::time::timeout_at(deadline, any.clone().acquire_owned()).await.map_err(|_| NoSlot)??;
        Ok(Some(Slot { _any: any, _run: None }))
    }

    /// As `instantiate`, in `slot`, with how long the component's
    /// instantiation took.
    async fn instantiate_timed(&self, run: TenantRun, slot: Option<Slot>) -> Result<(Instance, Duration)> {
        let mut wasi = WasiCtx::builder();
        let stderr = GuestStderr::default();
        wasi.stderr(stderr.clone());
        if let Some(clock) = run.wall_clock {
            wasi.wall_clock(clock);
        }
        let kv = RunStore::open(&run.database, &run.tenant, &run.cipher)?;
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy::new(run.allowed_hosts),
            config: WasiConfigVariables::from_iter(
                run.config
                    .into_iter()
                    .chain([("component_memory_mb".into(), (run.max_memory_bytes >> 20).to_string())]),
            ),
            kv,
            limits: limits::Limits::new(run.max_memory_bytes),
            cpu: cpu::CpuMeter::new(run.max_cpu),
            progress: run.progress,
            stop: run.stop,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.call_hook(|mut s, hook| s.data_mut().cpu.crossed(hook));
        // Each tick the guest is running its own code, both limits are
        // checked; a loop that never calls out is stopped too.
        let deadline = std::time::Instant::now() + run.deadline;
        store.epoch_deadline_callback(move |mut s| {
            if std::time::Instant::now() >= deadline {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            s.data_mut().cpu.check()?;
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        if counting_fuel() {
            store.set_fuel(u64::MAX)?;
        }
        let limit_mb = run.max_memory_bytes >> 20;
        let started = std::time::Instant::now();
        let connector = self.pre.instantiate_async(&mut store).await.map_err(|e| -> anyhow::Error {
            // The limiter refuses the initial memory itself: say which setting.
            match store.data().limits.memory_refused {
                true => anyhow::anyhow!(
                    "the component needs more memory to start than the limit of {limit_mb} MB; raise `max_memory_mb` \
                     in the tenant's config ({e})"
                ),
                false => e.into(),
            }
        })?;
        Ok((Instance { store, connector, _slot: slot }, started.elapsed()))
    }

    /// Runs one sync. An error is a host failure; a trap (the sandbox
    /// stopped the guest) is in the output with what the run used.
    pub async fn sync(&self, run: TenantRun, request: SyncRequest) -> Result<RunOutput> {
        let limits = (run.max_memory_bytes, run.deadline);
        // Not taken apart: the store must go before the slot's permit.
        let slot = self.run_slot().await?;
        let (mut instance, instantiation) = self.instantiate_timed(run, slot).await?;
        let until = tokio::time::Instant::now() + limits.1.saturating_sub(instantiation);
        let Instance { store, connector, .. } = &mut instance;
        let call = connector.ml_connector_netsuite_salesforce_sync().call_run(&mut *store, &request);
        // The epoch stops the guest's own code at the deadline; a wait on
        // the host (a request Salesforce is slow to answer, a backoff) is
        // stopped here, the same way: dropped, the call ends as a trap would.
        let result = match tokio::time::timeout_at(until, call).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Trap::Interrupt.into()),
        };
        // The run's writes are committed before anyone looks at what it did.
        if let Err(e) = store.data_mut().kv.finish() {
            match &result {
                Ok(_) => return Err(e),
                // The trap says why the run stopped; this is what it left.
                Err(_) => tracing::warn!("after the component trapped: {e:#}"),
            }
        }
        if counting_fuel() {
            let used = u64::MAX - store.get_fuel().unwrap_or(u64::MAX);
            crate::errln!("guest fuel used (wasm operations): {used}");
        }
        let data = store.data();
        let report = result.map_err(|e| Trap::of(e, data, limits));
        if report.is_ok() {
            let said = data.stderr.text();
            if !said.is_empty() {
                tracing::warn!("the component wrote to its standard error: {}", said.trim_end());
            }
        }
        let salesforce_usage = *data.outbound.salesforce_usage.lock().unwrap_or_else(|p| p.into_inner());
        Ok(RunOutput {
            report,
            guest_peak_memory_bytes: data.limits.peak_memory,
            sent: data.outbound.sent.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            salesforce_usage,
            instantiation,
            guest_cpu: data.cpu.used(),
        })
    }
}

impl Runtime {
    /// Hands a received HTTP request to the component's `events.receive`:
    /// (status, JSON body) for the sender.
    pub async fn receive_event(
        &self,
        run: TenantRun,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<(u16, String)> {
        // The sender is answered within its patience: busy, it sends again.
        let slot = self.event_slot(deadline).await?;
        let limits = (run.max_memory_bytes, run.deadline);
        let mut instance = self.instantiate_timed(run, slot).await?.0;
        let Instance { store, connector, .. } = &mut instance;
        let called =
            connector.ml_connector_netsuite_salesforce_events().call_receive(&mut *store, &headers, &body).await;
        // One line for the sender, naming the limit hit; the backtrace to the log.
        let answer = called.map_err(|e| {
            let trap = Trap::of(e, store.data(), limits);
            tracing::debug!("the component trapped on an event: {}", trap.detail);
            anyhow::anyhow!("{}", trap.summary)
        })?;
        // The sender is told an event is queued only once it is.
        store.data_mut().kv.finish()?;
        Ok((answer.status, answer.body))
    }

    /// Calls the component's `source.fetch-changed` export directly.
    pub async fn fetch_changed(
        &self,
        run: TenantRun,
        kind: RecordKind,
        after: Option<Cursor>,
    ) -> Result<Result<Page, ConnectorError>> {
        let mut instance = self.instantiate(run).await?;
        let Instance { store, connector, .. } = &mut instance;
        connector
            .ml_connector_netsuite_salesforce_source()
            .call_fetch_changed(&mut *store, kind, after.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("the connector component trapped: {e:?}"))
    }

    /// Calls the component's `source.fetch-one` export directly.
    pub async fn fetch_one(
        &self,
        run: TenantRun,
        kind: RecordKind,
        id: &str,
    ) -> Result<Result<Option<NetsuiteRecord>, ConnectorError>> {
        let mut instance = self.instantiate(run).await?;
        let Instance { store, connector, .. } = &mut instance;
        connector
            .ml_connector_netsuite_salesforce_source()
            .call_fetch_one(&mut *store, kind, id)
            .await
            .map_err(|e| anyhow::anyhow!("the connector component trapped: {e:?}"))
    }
}

/// What one run produced, and what it used.
pub struct RunOutput {
    /// The connector's report, or the trap that stopped it.
    pub report: std::result::Result<SyncReport, Trap>,
    /// The largest linear memory the component had.
    pub guest_peak_memory_bytes: usize,
    /// HTTP requests sent, by authority.
    pub sent: BTreeMap<String, u32>,
    /// The Salesforce org's API usage as of the run's last response.
    pub salesforce_usage: Option<outbound::ApiUsage>,
    /// How long making the run's instance of the component took.
    pub instantiation: Duration,
    /// Time the component spent running its own code (host calls excluded).
    pub guest_cpu: Duration,
}

/// Why the sandbox stopped a run: a limit (named with the setting that
/// raises it) or a failure in the component.
#[derive(Debug)]
pub struct Trap {
    /// One line for the person running it.
    pub summary: String,
    /// Everything wasmtime said, backtrace included (the log, `--verbose`).
    pub detail: String,
}

impl Trap {
    fn of(error: wasmtime::Error, data: &HostState, (max_memory, deadline): (usize, Duration)) -> Trap {
        let said = data.stderr.text();
        let mut detail = format!("{error:?}");
        if !said.is_empty() {
            detail.push_str("\n\nthe component's standard error:\n");
            detail.push_str(&said);
        }
        let summary = if let (true, Some(budget)) = (data.cpu.exhausted, data.cpu.budget()) {
            format!(
                "the component used its CPU budget of {} ms running its own code and was stopped; raise \
                 `max_cpu_ms` in the config if runs this large are expected",
                budget.as_millis()
            )
        } else if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            format!(
                "the run took longer than its deadline of {} s and was stopped; raise `run_deadline_secs` in the \
                 config if runs this long are expected",
                deadline.as_secs()
            )
        } else if data.limits.memory_refused {
            format!(
                "the component ran out of memory (the limit is {} MB) and was stopped; raise `max_memory_mb` in the \
                 config",
                max_memory >> 20
            )
        } else {
            // wasmtime's own text leads with the backtrace; the cause is the
            // panic the guest printed, else the trap itself.
            let cause = guest_stderr::panic_message(&said)
                .unwrap_or_else(|| error.root_cause().to_string().lines().next().unwrap_or_default().to_string());
            format!(
                "the component failed ({cause}): a defect in the connector, not a limit; please report it with the \
                 run log (`connector status --verbose` prints it)"
            )
        };
        Trap { summary, detail }
    }
}

/// The built component: `CONNECTOR_COMPONENT`, else the release build in
/// the target directory this executable was built in.
pub fn find_component() -> Result<std::path::PathBuf> {
    if let Ok(path) = std::env::var("CONNECTOR_COMPONENT") {
        return Ok(std::path::PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors() {
        let candidate = dir.join("wasm32-wasip2/release/netsuite_salesforce.wasm");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "the connector component is not built: run `cargo build -p netsuite-salesforce --release --target \
         wasm32-wasip2` (or set CONNECTOR_COMPONENT to a .wasm file)"
    )
}

/// The connector's error as one line for the person on call.
pub fn describe_error(e: &ConnectorError) -> String {
    let (label, m) = match e {
        ConnectorError::Config(m) => ("configuration error", m),
        ConnectorError::Auth(m) => ("authentication failed", m),
        ConnectorError::Netsuite(m) => ("NetSuite error", m),
        ConnectorError::Salesforce(m) => ("Salesforce error", m),
        ConnectorError::RateLimited(m) => ("rate limited", m),
        ConnectorError::Transport(m) => ("network error", m),
        ConnectorError::Busy(m) => ("busy", m),
        ConnectorError::Stopped(m) => ("stopped", m),
    };
    format!("{label}: {m}")
}
