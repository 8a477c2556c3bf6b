//! `connector`: run the NetSuite → Salesforce connector component.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use host_harness::audit;
use host_harness::audit::export::{self, ExportFormat, JsonRecord};
use host_harness::audit::query::{self, FilterArgs, RecordKey};
use host_harness::config::{HarnessConfig, secret_names};
use host_harness::console::{init_logs, print_report, show_progress};
use host_harness::host::{ReplayScope, Runtime, SyncMode};
use host_harness::ops;
use host_harness::scheduler::serve_schedule;
use host_harness::scheduler::{Tenant, parse_kind};
use host_harness::secrets::{Cipher, MASTER_KEY_ENV, SecretFile};
use host_harness::shutdown;
use host_harness::store::Database;
use host_harness::store::kv::KvStore;
use host_harness::{errln, outln};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc, not glibc's malloc: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process (what mimalloc's own
/// `MIMALLOC_ALLOW_THP=0` does). mimalloc asks for them on its arenas; every
/// buffer it frees and hands out again then faults in and zeroes whole 2 MiB
/// pages. A 100,000-customer sync spent a quarter of the simulators' CPU in
/// that zeroing; without them the run took ~12% less CPU in all.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; its
    // result is ignored since a kernel without it just keeps the default.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[derive(Parser)]
#[command(name = "connector", version, about = "Keeps Salesforce aligned with NetSuite master data")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// With a --config file of [[tenant]] tables: the tenant (its `name`) the command is for.
    #[arg(long, global = true)]
    table: Option<String>,
    /// Debug logs on standard error, a failed run's whole account (a trap's backtrace) among them.
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "simulators")]
    /// Run the connector against built-in NetSuite and Salesforce simulators (no accounts needed).
    Demo {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Customers to seed (twice as many contacts); the simulators hold
        /// them in memory.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=200_000))]
        customers: u64,
        /// Keep the demo's database here instead of a fresh temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The connector component (.wasm); found next to the build by default.
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
    },
    #[cfg(feature = "simulators")]
    /// Sync the same customers through Composite and through Bulk API 2.0 on the simulators and
    /// print Salesforce API calls per 1,000 records and records per second.
    Bench {
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
        #[arg(long, default_value_t = 0)]
        contacts: u64,
        #[arg(long, default_value_t = 0)]
        vendors: u64,
        /// Milliseconds added to every NetSuite and Salesforce API call.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// auto (the connector's choice), composite, bulk; several run one after another.
        #[arg(long, value_delimiter = ',', default_value = "auto")]
        paths: Vec<String>,
        /// The component's memory cap (1–4096, as the `max_memory_mb` setting).
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=4096))]
        max_memory_mb: u32,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
    },
    /// Host many tenants (each with its own simulators) in one runtime, sync them all at once and
    /// print how long making each run's instance of the component takes (p50, p99).
    #[cfg(feature = "simulators")]
    BenchTenants {
        #[arg(long, default_value_t = 50)]
        tenants: usize,
        #[arg(long, default_value_t = 20)]
        customers: u64,
        /// Rounds of idle incremental runs of every tenant after the first sync.
        #[arg(long, default_value_t = 5)]
        idle_rounds: usize,
        /// off (instances allocated on demand), on (wasmtime's pooling allocator); both by default.
        #[arg(long, value_delimiter = ',', default_value = "off,on")]
        pooling: Vec<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
    },
    #[cfg(feature = "simulators")]
    /// Post signed change events to the harness listener on the simulators and print the time
    /// from each POST until Salesforce holds the edit (p50, p99, max).
    BenchEvents {
        #[arg(long, default_value_t = 200)]
        events: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
        /// Send the events to the Spin build (this .wasm, built with `spin build`) in a host offering what Spin
        /// offers, instead of the harness listener.
        #[arg(long)]
        spin: Option<PathBuf>,
    },
    /// Run both simulators standalone, seeded, and write a ready config and the credentials, to point
    /// the connector or your own scripts and clients at them.
    #[cfg(feature = "simulators")]
    Sim {
        #[arg(long, default_value_t = 1000)]
        customers: u64,
        #[arg(long, default_value_t = 2000)]
        contacts: u64,
        #[arg(long, default_value_t = 100)]
        vendors: u64,
        /// The NetSuite and Salesforce simulators' ports on 127.0.0.1 (0 picks a free one).
        #[arg(long, num_args = 1..=2, value_delimiter = ',', default_values_t = [8701, 8702])]
        ports: Vec<u16>,
        /// Where the config, its master key, sealed secrets and the M2M private key are written.
        #[arg(long, default_value = "connector-sim")]
        dir: PathBuf,
        /// Print the endpoints and credentials as one JSON document.
        #[arg(long)]
        json: bool,
        /// Milliseconds both simulators wait before answering each API call, as a remote service's round
        /// trip would take.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Run one sync for the tenant in a config file.
    Sync {
        #[arg(long)]
        config: PathBuf,
        /// Ignore the stored cursor and read everything.
        #[arg(long)]
        full: bool,
        /// Record kinds to sync (customer, contact, vendor); all by default.
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// Report what would be written (record by record, field by field) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Compare with the live Salesforce records, not only the connector's last writes: records
        /// edited or deleted in Salesforce since are written again (drift repair; with --full,
        /// every record is checked). With --dry-run, shows what that run would write.
        #[arg(long)]
        compare_live: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
    },
    /// Listen for NetSuite change events and run incremental syncs on a schedule: one tenant
    /// (--config), or every tenant file in a directory (--tenants), picked up as files change.
    Serve {
        #[arg(long, required_unless_present = "tenants", conflicts_with = "tenants")]
        config: Option<PathBuf>,
        /// A directory of tenant configs (*.toml; a file may hold several [[tenant]] tables), or
        /// one such file, each tenant with its own [schedule]; events go to
        /// POST /tenants/{tenant}/netsuite/events and POST /tenants/{tenant}/sync.
        #[arg(long)]
        tenants: Option<PathBuf>,
        /// Where the change-event listener binds (POST /netsuite/events).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// With --config: seconds between scheduled incremental syncs (with --tenants each
        /// tenant's [schedule] says).
        #[arg(long, default_value_t = 900, conflicts_with = "tenants", value_parser = clap::value_parser!(u64).range(1..=host_harness::serve::schedule::MAX_INTERVAL_SECS))]
        every: u64,
        /// Logs on standard error: text, or json (one JSON object per line, for a log collector).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
        /// With --tenants: instances of the component alive at once (runs, event checks), kept in
        /// wasmtime's pooling allocator; runs leave one in sixteen (at least one) to event checks.
        /// A run beyond them waits for one, an event up to 5 s, then 503 with Retry-After (nothing
        /// queued: the sender sends it again). [default: 128]
        #[arg(long, conflicts_with = "config", value_parser = clap::value_parser!(u32).range(1..))]
        max_instances: Option<u32>,
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
    },
    /// Send failed writes again, exactly as they were recorded (all by default).
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// Only the failed writes of this run.
        #[arg(long, conflicts_with = "record")]
        run: Option<String>,
        /// Only this record, as kind:id (e.g. customer:42).
        #[arg(long)]
        record: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "CONNECTOR_COMPONENT")]
        component: Option<PathBuf>,
    },
    /// Each tenant's last run, next run, cursors, waiting writes and Salesforce API usage, read from the
    /// database (runs nothing, needs no network).
    Status {
        #[arg(long)]
        config: PathBuf,
        /// Every tenant in the config's database, not only the config's.
        #[arg(long)]
        all_tenants: bool,
        #[arg(long)]
        json: bool,
    },
    /// Read the audit trail: list rows, show one record's history, export.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// List every setting: type, default, whether it is a secret, what it is.
    Settings,
    /// Manage the sealed secrets file of a config.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest matching rows, a page at a time.
    List {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        filters: FilterArgs,
        /// Rows per page (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only rows older than this one (the last `#seq` of the previous page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// One record's whole history across runs, oldest first, with the mapping rules that fired.
    Show {
        #[arg(long)]
        config: PathBuf,
        /// The record as kind:id with its NetSuite id (e.g. customer:42).
        #[arg(required_unless_present = "salesforce_id")]
        record: Option<String>,
        /// The record by its Salesforce id instead.
        #[arg(long, conflicts_with = "record")]
        salesforce_id: Option<String>,
        /// Another tenant of the same database (the config's by default).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every matching row, oldest first, as JSON Lines or CSV.
    Export {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        filters: FilterArgs,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Write to this new file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace --out if it exists (never the tenant's database, secrets, master key or config).
        #[arg(long, requires = "out")]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Make a new random master key: written to --out (created readable by you only, never replacing a
    /// file), else printed for CONNECTOR_MASTER_KEY.
    Init {
        /// The key file to create (mode 0600), e.g. .connector/master.key.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Store a secret, read from standard input.
    Set {
        #[arg(long)]
        config: PathBuf,
        name: String,
    },
    /// List the names of stored secrets (never their values).
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// Delete a stored secret.
    Remove {
        #[arg(long)]
        config: PathBuf,
        name: String,
    },
    /// Seal the secrets and the cached tokens again under a new master key: written to --out (created
    /// readable by you only, never replacing a file), else printed for CONNECTOR_MASTER_KEY. Then point
    /// master_key_file (or CONNECTOR_MASTER_KEY) at it; the old key opens nothing any more.
    Rekey {
        #[arg(long)]
        config: PathBuf,
        /// The new key file to create (mode 0600), e.g. .connector/master-2.key.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn component_path(explicit: Option<PathBuf>) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p),
        None => host_harness::host::find_component(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let (table, verbose) = (cli.table, cli.verbose);
    let load = |path: &std::path::Path| HarnessConfig::load_selected(path, table.as_deref());
    match cli.command {
        #[cfg(feature = "simulators")]
        Command::Demo { json, customers, data_dir, component } => {
            let out = host_harness::demo::run(host_harness::demo::DemoOptions {
                customers,
                data_dir,
                component: component_path(component)?,
            })
            .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?)?;
            } else {
                host_harness::demo::print_text(&out)?;
            }
            let failed = out.runs.iter().any(|r| r.report.status != "succeeded");
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        #[cfg(feature = "simulators")]
        Command::Bench { customers, contacts, vendors, latency_ms, paths, max_memory_mb, json, component } => {
            let options = host_harness::bench::BenchOptions {
                customers,
                contacts,
                vendors,
                latency_ms,
                paths,
                max_memory_mb: max_memory_mb as usize,
            };
            let results = host_harness::bench::run(component_path(component)?, options).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&results)?)?;
            } else {
                host_harness::bench::print_text(&results)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "simulators")]
        Command::BenchTenants { tenants, customers, idle_rounds, pooling, json, component } => {
            use host_harness::bench_tenants::{TenantsBenchOptions, print_text, run};
            let component = component_path(component)?;
            let mut results = Vec::new();
            for choice in &pooling {
                let pooling = match choice.as_str() {
                    "on" => true,
                    "off" => false,
                    other => bail!("--pooling takes on and off, not `{other}`"),
                };
                let options = TenantsBenchOptions { tenants, customers, idle_rounds, pooling };
                results.push(run(component.clone(), options).await?);
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&results)?)?;
            } else {
                print_text(&results)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "simulators")]
        Command::BenchEvents { events, json, component, spin } => {
            if events == 0 {
                anyhow::bail!("--events must be at least 1");
            }
            let target = match spin {
                Some(wasm) if !wasm.is_file() => anyhow::bail!(
                    "--spin {}: no such file; build it with `spin build` (or cargo build -p netsuite-salesforce-spin \
                     --release --target wasm32-wasip2 --target-dir target/spin)",
                    wasm.display()
                ),
                Some(wasm) => host_harness::bench::EventHost::Spin(wasm),
                None => host_harness::bench::EventHost::Harness(component_path(component)?),
            };
            let latency = host_harness::bench::event_latency(target, events).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&latency)?)?;
            } else {
                outln!(
                    "change event -> Salesforce write ({}) over {} events: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    latency.host,
                    latency.events,
                    latency.p50_ms,
                    latency.p99_ms,
                    latency.max_ms
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "simulators")]
        Command::Sim { customers, contacts, vendors, ports, dir, json, latency_ms } => {
            let [netsuite_port, salesforce_port] = ports[..] else {
                bail!(
                    "--ports takes two ports, NetSuite's then Salesforce's, e.g. --ports 8701,8702 (0 picks a free one)"
                );
            };
            let options = host_harness::simulate::SimOptions {
                customers,
                contacts,
                vendors,
                netsuite_port,
                salesforce_port,
                dir,
                latency: std::time::Duration::from_millis(latency_ms),
            };
            let running = host_harness::simulate::start(options).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&running.endpoints)?)?;
            } else {
                host_harness::simulate::print_text(&running.endpoints)?;
            }
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
            drop(running);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { config, full, kinds, dry_run, compare_live, json, component } => {
            let config = load(&config)?;
            let cipher = Cipher::load(config.master_key_file.as_deref())?;
            let kinds = kinds.iter().map(|k| parse_kind(k)).collect::<Result<Vec<_>>>()?;
            let tenant = Arc::new(Tenant::open(config, cipher, None)?);
            tokio::spawn(shutdown::on_signal_for(vec![tenant.clone()], false));
            let path = component_path(component)?;
            let runtime = tokio::task::spawn_blocking(move || Runtime::load(&path)).await??;
            let mode = if full { SyncMode::Full } else { SyncMode::Incremental };
            // On a terminal (and not --json): what the run has done so far.
            let display = (!json).then(|| show_progress(&tenant));
            let report = match (dry_run, compare_live) {
                (true, _) => tenant.dry_run(&runtime, mode, &kinds, compare_live).await,
                (false, true) => tenant.sync_compared_live(&runtime, mode, &kinds).await,
                (false, false) => tenant.sync(&runtime, mode, &kinds).await,
            };
            if let Some((bar, ticker)) = display {
                ticker.abort();
                bar.finish_and_clear();
            }
            print_report(&report?, json)
        }
        Command::Serve { config, tenants, listen, every, log_format, max_instances, component } => {
            init_logs(log_format == "json", verbose, true);
            let path = component_path(component)?;
            let pooled = tenants.is_some().then_some(max_instances.unwrap_or(128));
            // One runtime for the life of the process.
            let runtime: &'static Runtime =
                Box::leak(Box::new(tokio::task::spawn_blocking(move || Runtime::load_with(&path, pooled)).await??));
            if let Some(dir) = tenants {
                return serve_tenants(dir, runtime, listen).await;
            }
            let config = load(&config.context("--config or --tenants is required")?)?;
            let cipher = Cipher::load(config.master_key_file.as_deref())?;
            let tenant = Arc::new(Tenant::open(config, cipher, None)?);
            // Read once, like the config: a mapping edited while serving would
            // otherwise change (or, mistyped, fail) the runs that follow unseen.
            tenant.pin_mapping()?;
            tokio::spawn(shutdown::on_signal_for(vec![tenant.clone()], true));
            let hook = host_harness::webhook::serve(tenant.clone(), runtime, listen).await?;
            // Once listening: a serve that cannot start notes no schedule.
            serve_schedule::claim(&tenant.database.connect()?, &tenant.config.tenant, every)?;
            outln!("listening for change events on {}{}", hook.url, host_harness::webhook::EVENTS_PATH)?;
            // Until SIGINT or SIGTERM ends the process (stop_on_signal).
            let every = std::time::Duration::from_secs(every);
            // A scheduled run is logged like an events run (standard error,
            // for the log collector); as text, its report is printed too.
            let json = log_format == "json";
            serve_schedule::run_every(&tenant, runtime, every, |report| {
                host_harness::serve::log_run(report);
                match json {
                    true => Ok(()),
                    false => print_report(report, false).map(drop),
                }
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, all_tenants, json } => {
            let (config, conn) = open_database(&config, table.as_deref())?;
            let names = if all_tenants { ops::status::tenants(&conn)? } else { vec![config.tenant.clone()] };
            let now = time::OffsetDateTime::now_utc();
            let mut statuses = Vec::new();
            for name in &names {
                // The config's ceiling belongs to the config's tenant only.
                let ceiling = (*name == config.tenant).then(|| ops::api_ceiling(&config)).flatten();
                let mut status = ops::status::tenant_status(&conn, name, ceiling, now)?;
                if !verbose && let Some(run) = &mut status.last_run {
                    run.detail = None;
                }
                statuses.push(status);
            }
            let mut stdout = std::io::stdout().lock();
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&serde_json::json!({ "tenants": statuses }))?)?;
            } else {
                write!(stdout, "{}", statuses.iter().map(ops::status::text).collect::<Vec<_>>().join("\n"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { action } => audit_command(action, table.as_deref()),
        Command::Replay { config, run, record, json, component } => {
            let config = load(&config)?;
            let cipher = Cipher::load(config.master_key_file.as_deref())?;
            let whole_queue = run.is_none() && record.is_none();
            let scope = match (run, record) {
                (Some(run), _) => ReplayScope::Run(run),
                (None, Some(r)) => ReplayScope::One(host_harness::scheduler::parse_record_ref(&r)?),
                (None, None) => ReplayScope::AllFailed,
            };
            let named = match &scope {
                ReplayScope::One(r) => Some((host_harness::scheduler::kind_name(r.kind), r.id.clone())),
                _ => None,
            };
            let run_named = match &scope {
                ReplayScope::Run(run) => Some(run.clone()),
                _ => None,
            };
            let tenant = Arc::new(Tenant::open(config, cipher, None)?);
            tokio::spawn(shutdown::on_signal_for(vec![tenant.clone()], false));
            let path = component_path(component)?;
            let runtime = tokio::task::spawn_blocking(move || Runtime::load(&path)).await??;
            let report = tenant.replay(&runtime, scope).await?;
            // Nothing audited: no write waited in the scope (a dropped one is audited).
            let touched: bool = tenant.database.connect()?.query_row(
                "SELECT EXISTS (SELECT 1 FROM audit WHERE tenant = ?1 AND run_id = ?2)",
                [&tenant.config.tenant, &report.run_id],
                |r| r.get(0),
            )?;
            if !touched && report.status == "succeeded" && !json {
                // Deferred writes whose parent is still missing stay put: say so.
                let conn = tenant.database.connect()?;
                let now = time::OffsetDateTime::now_utc();
                let status = ops::status::tenant_status(&conn, &tenant.config.tenant, None, now)?;
                let deferred = status.waiting.iter().map(|w| w.deferred).sum::<u64>();
                // A record named by --record: whether its own write waits.
                let waits = |kind: &str, id: &str| -> Result<bool> {
                    use netsuite_salesforce::sync::queues::{Queue, key};
                    let Some(kind) =
                        netsuite_salesforce::model::RecordKind::ALL.into_iter().find(|k| k.as_str() == kind)
                    else {
                        return Ok(false);
                    };
                    Ok(conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM kv WHERE tenant = ?1 AND bucket = 'queues' AND key = ?2)",
                        [&tenant.config.tenant, &key(Queue::Deferred, kind, id)],
                        |row| row.get(0),
                    )?)
                };
                match (&named, whole_queue) {
                    (Some((kind, id)), _) if waits(kind, id)? => errln!(
                        "nothing replayed: {kind} {id} is deferred until its parent reaches Salesforce; it goes \
                         once the parent is there (`connector status` lists deferred writes)"
                    ),
                    _ if let Some(run) = &run_named
                        && let refailed = failed_again(&conn, &tenant.config.tenant, run)?
                        && refailed > 0 =>
                    {
                        errln!(
                            "nothing replayed: of the writes run {run} failed, {refailed} failed again in later runs, \
                             so they wait under those runs now: replay them all with \
                             `connector replay`, or one with `--record kind:id` (`connector audit list --outcome \
                             failed` names them)"
                        )
                    }
                    (_, true) if deferred > 0 => errln!(
                        "nothing replayed: {deferred} deferred writes still wait for their parent to reach \
                         Salesforce; they go once it is there (`connector status` lists them)"
                    ),
                    _ => errln!(
                        "nothing to replay: no failed or deferred write waits in this scope (`connector status` \
                         counts them)"
                    ),
                }
            }
            print_report(&report, json)
        }
        Command::Settings => {
            outln!("{}", netsuite_salesforce::settings::catalog::markdown_table().trim_end())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets { action } => {
            match action {
                SecretsAction::Init { out: None } => outln!("{}", Cipher::generate_key_b64())?,
                SecretsAction::Init { out: Some(path) } => {
                    host_harness::secrets::write_key_file(&path, &Cipher::generate_key_b64())?;
                    outln!("wrote a new master key to {} (mode 0600); set master_key_file to it", path.display())?;
                }
                SecretsAction::Set { config, name } => {
                    let config = load(&config)?;
                    if !secret_names().any(|s| s == name) {
                        bail!(
                            "`{name}` is not a secret the connector reads; secrets are: {}",
                            secret_names().collect::<Vec<_>>().join(", ")
                        );
                    }
                    let cipher = Cipher::load(config.master_key_file.as_deref())?;
                    let mut value = String::new();
                    std::io::stdin().read_to_string(&mut value).context("reading the secret from standard input")?;
                    let value = value.trim_end_matches(['\r', '\n']).to_string();
                    if value.is_empty() {
                        bail!("no value on standard input for `{name}`");
                    }
                    // A key the component cannot read would fail only when a token is next
                    // obtained (up to an hour later): refused now, nothing stored.
                    let (readable, wanted) = match name.as_str() {
                        "netsuite_private_key" => (
                            netsuite_salesforce::netsuite::auth::readable_private_key(&value),
                            "an RSA or EC (P-256, P-384, P-521) private key",
                        ),
                        "salesforce_private_key" => {
                            (netsuite_salesforce::salesforce::auth::readable_private_key(&value), "an RSA private key")
                        }
                        _ => (true, ""),
                    };
                    if name == "netsuite_private_key"
                        && let Some(problem) = netsuite_salesforce::netsuite::auth::rsa_size_problem(&value)
                    {
                        bail!("{problem}. Nothing was stored");
                    }
                    if !readable {
                        bail!(
                            "`{name}` must be {wanted} in PEM form, unencrypted (PKCS#8 `BEGIN PRIVATE KEY`, or PKCS#1 \
                             / SEC1); a passphrase-protected key is decrypted with `openssl pkey -in key.pem -out \
                             plain.pem`. Nothing was stored"
                        );
                    }
                    let path = config.secrets_path();
                    SecretFile::update(&path, &cipher, |secrets| {
                        secrets.insert(name.clone(), value);
                    })?;
                    outln!("stored `{name}` in {}", path.display())?;
                }
                SecretsAction::Remove { config, name } => {
                    let config = load(&config)?;
                    let cipher = Cipher::load(config.master_key_file.as_deref())?;
                    let path = config.secrets_path();
                    let mut removed = false;
                    SecretFile::update(&path, &cipher, |secrets| removed = secrets.remove(&name).is_some())?;
                    if !removed {
                        bail!(
                            "`{name}` is not stored in {}; nothing changed (`secrets list` shows what is)",
                            path.display()
                        );
                    }
                    outln!("removed `{name}` from {}", path.display())?;
                }
                SecretsAction::Rekey { config, out } => {
                    let config = load(&config)?;
                    let old = Cipher::load(config.master_key_file.as_deref())?;
                    let secrets = config.secrets_path();
                    SecretFile::read(&secrets, &old)?;
                    let db_path = config.database_path();
                    // Asked again under the write lock below; first, before a key is made.
                    if db_path.is_file() {
                        let conn = Database::open(&db_path)?.connect()?;
                        KvStore::new(conn, &config.tenant, old.clone()).refuse_while_leased()?;
                    }
                    // The new key is kept (or shown) before anything is sealed under it.
                    let key_b64 = Cipher::generate_key_b64();
                    let new = Cipher::from_b64(&key_b64)?;
                    match &out {
                        Some(path) => host_harness::secrets::write_key_file(path, &key_b64)?,
                        None => {
                            outln!("{key_b64}")?;
                            std::io::stdout().flush()?;
                        }
                    }
                    let (names, resealed) = SecretFile::reseal(&secrets, &old, &new)?;
                    // Tokens first, in a transaction that also checks no run
                    // holds the lease; the secrets file is put in place after.
                    let (tokens, journal) = match db_path.is_file() {
                        true => {
                            let conn = Database::open(&db_path)?.connect()?;
                            let mut kv = KvStore::new(conn, &config.tenant, old);
                            let (tokens, _, journal) = kv
                                .reseal_credentials(&new, || resealed.install())
                                .with_context(|| format!("resealing the cached tokens in {}", db_path.display()))?;
                            (tokens, journal)
                        }
                        false => {
                            resealed.install()?;
                            (0, true)
                        }
                    };
                    outln!(
                        "sealed {} secret(s) in {} and {tokens} cached token(s) of tenant `{}` under the new key",
                        names.len(),
                        secrets.display(),
                        config.tenant
                    )?;
                    if !journal {
                        outln!("(the database's journal keeps the old sealed copies until its next checkpoint)")?;
                    }
                    let key_at = match &out {
                        Some(path) => format!("the new key in {} (mode 0600)", path.display()),
                        None => "the key printed above".into(),
                    };
                    outln!(
                        "point master_key_file (or {MASTER_KEY_ENV}) at {key_at}; runs fail until you do. The old \
                         key opens neither any more, but copies made before (backups) still open with it: after a \
                         leak, also replace the secrets themselves at NetSuite and Salesforce"
                    )?;
                }
                SecretsAction::List { config } => {
                    let config = load(&config)?;
                    let cipher = Cipher::load(config.master_key_file.as_deref())
                        .with_context(|| format!("set {MASTER_KEY_ENV} or master_key_file"))?;
                    for name in SecretFile::read(&config.secrets_path(), &cipher)?.keys() {
                        outln!("{name}")?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The config and a connection to its database, which must exist: these
/// commands read what runs wrote and start none.
fn open_database(path: &std::path::Path, table: Option<&str>) -> Result<(HarnessConfig, rusqlite::Connection)> {
    let config = HarnessConfig::load_selected(path, table)?;
    let db_path = config.database_path();
    if !db_path.is_file() {
        bail!(
            "no database at {} (data_dir of {}): nothing has run for tenant `{}` yet; run `connector sync --config {}` \
             first",
            db_path.display(),
            path.display(),
            config.tenant,
            path.display()
        );
    }
    // Opening migrates (the indexes the audit filters use are made here)
    // unless the file is read-only.
    let conn = host_harness::store::connect_to_read(&db_path)?;
    Ok((config, conn))
}

fn audit_command(action: AuditCommand, table: Option<&str>) -> Result<ExitCode> {
    // Written with errors returned, not panics: a closed pipe (`| head`) ends the command quietly (see main).
    let mut stdout = std::io::stdout().lock();
    match action {
        AuditCommand::List { config, filters, limit, before, json } => {
            let (config, conn) = open_database(&config, table)?;
            let filter = filters.filter(&config.tenant)?;
            query::ensure_run_known(&conn, &filter)?;
            let rows = query::list(&conn, &filter, limit, before)?;
            if json {
                let rows: Vec<JsonRecord<'_>> = rows.iter().map(JsonRecord::from).collect();
                writeln!(stdout, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                errln!("no audit rows of tenant `{}` match", filter.tenant);
                // An outcome no row holds may be a typo: say which ones there are.
                if let Some(outcome) = &filter.outcome {
                    let known = query::outcomes(&conn, &filter.tenant)?;
                    if !known.contains(outcome) {
                        errln!(
                            "(no row has outcome `{outcome}`; its rows have: {})",
                            if known.is_empty() { "none yet".to_string() } else { known.join(", ") }
                        );
                    }
                }
            } else {
                for r in &rows {
                    writeln!(stdout, "{}", audit::text::line(r))?;
                }
                if let (true, Some(last)) = (rows.len() == limit as usize, rows.last()) {
                    errln!(
                        "{} {}, newest first; older ones: add --before {}",
                        rows.len(),
                        if rows.len() == 1 { "row" } else { "rows" },
                        last.seq
                    );
                }
            }
        }
        AuditCommand::Show { config, record, salesforce_id, tenant, json } => {
            let (config, conn) = open_database(&config, table)?;
            let key = match (record, salesforce_id) {
                (_, Some(id)) => RecordKey::Salesforce(query::salesforce_id_text(&id)),
                (Some(r), None) => RecordKey::parse(&r)?,
                (None, None) => bail!("name the record as kind:id (e.g. customer:42) or with --salesforce-id"),
            };
            let tenant = tenant.unwrap_or(config.tenant);
            let rows = query::history(&conn, &tenant, &key)?;
            let named = match &key {
                RecordKey::NetSuite { kind, id } => format!("{kind} {id}"),
                RecordKey::Salesforce(id) => format!("Salesforce record {id}"),
            };
            if json {
                let rows: Vec<JsonRecord<'_>> = rows.iter().map(JsonRecord::from).collect();
                writeln!(stdout, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if rows.is_empty() {
                bail!(
                    "no audit rows of tenant `{tenant}` name {named}: check the id (`connector audit list` shows recent rows)"
                );
            } else {
                writeln!(stdout, "{named}: {} audit rows, oldest first", rows.len())?;
                for r in &rows {
                    write!(stdout, "{}", audit::text::history_entry(r))?;
                }
            }
        }
        AuditCommand::Export { config: config_path, filters, format, out, force } => {
            let (config, conn) = open_database(&config_path, table)?;
            let filter = filters.filter(&config.tenant)?;
            query::ensure_run_known(&conn, &filter)?;
            match out {
                None => {
                    let n = export::export(&conn, &filter, format, &mut stdout)?;
                    errln!("exported {n} audit rows");
                }
                Some(path) => {
                    let database = config.database_path();
                    let mut owned = vec![config.secrets_path(), config_path.clone()];
                    owned.extend(config.master_key_file.clone());
                    owned.extend(config.mapping_file.clone());
                    for file in [database.clone(), host_harness::store::marks_path_of(&database)] {
                        owned.extend(["-wal", "-shm", "-journal"].map(|end| {
                            let mut name = file.clone().into_os_string();
                            name.push(end);
                            PathBuf::from(name)
                        }));
                        owned.push(file);
                    }
                    let n =
                        export::export_to(&path, force, &owned, |file| export::export(&conn, &filter, format, file))?;
                    errln!("exported {n} audit rows to {}", path.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Hosts every tenant file of `dir` until a signal ends the process.
async fn serve_tenants(dir: PathBuf, runtime: &'static Runtime, listen: std::net::SocketAddr) -> Result<ExitCode> {
    use host_harness::serve::{Server, print_reload};
    let server = Server::new(dir.clone(), runtime);
    // Bound first: a second `serve` whose address is taken must not start
    // (and record as its own) the schedules of the one already serving.
    // Answering waits for the tenants: a request meanwhile waits for them.
    let listener = host_harness::webhook::bind(listen).await?;
    let first = server.reload();
    print_reload(&first);
    if server.tenants().is_empty() {
        bail!(
            "{} holds no tenant that loads (one TOML config per tenant, e.g. acme.toml, or [[tenant]] tables)",
            dir.display()
        );
    }
    let limits = host_harness::webhook::ListenerLimits::default();
    let hook = host_harness::webhook::serve_tenants_on(server.directory(), listener, limits)?;
    tracing::info!(url = %hook.url, "listening: POST /tenants/{{tenant}}/netsuite/events, POST /tenants/{{tenant}}/sync, GET /metrics");
    let signals = {
        let server = server.clone();
        tokio::spawn(async move {
            let (all, retire) = (server.clone(), server.clone());
            shutdown::on_signal(move || all.tenants_with_runs(), true, move || retire.shutdown()).await
        })
    };
    server.watch(std::time::Duration::from_secs(2)).await;
    signals.abort();
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logs(false, cli.verbose, false);
    }
    match run(cli).await {
        Ok(code) => code,
        // The reader went away (`connector audit export | head`): nothing is wrong.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes run `run` failed that still wait in the failed queue, under a
/// later run's id (a later run tried them again and they failed again).
fn failed_again(conn: &rusqlite::Connection, tenant: &str, run: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(DISTINCT a.kind || '/' || a.netsuite_id) FROM audit a JOIN kv k ON k.tenant = a.tenant \
         AND k.bucket = 'queues' AND k.key = 'failed/' || a.kind || '/' || a.netsuite_id \
         WHERE a.tenant = ?1 AND a.run_id = ?2 AND a.outcome = 'failed'",
        [tenant, run],
        |r| r.get(0),
    )?)
}
