//! `connector bench`: a first sync of a simulated account (customers,
//! contacts, vendors; optional latency per API call), through the path the
//! connector picks or a forced one, reporting throughput, API calls and the
//! memory the component and the process used.

use crate::host::{Runtime, SyncMode};
use crate::spin_host::{SpinHost, SwapSemantics};
use crate::testbed::{KeyPair, Signing, Testbed, TestbedOptions};
use anyhow::{Result, bail};
use serde::Serialize;
use simulators::salesforce::{Faults, SalesforceSimConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// What one benchmark run measured.
#[derive(Debug, Serialize)]
pub struct PathResult {
    /// `auto` (the connector's own choice by `salesforce_bulk_threshold`),
    /// `composite` or `bulk` (forced).
    pub path: &'static str,
    pub records: u64,
    /// Wall time of the `connector sync --full` process, from its start to
    /// its exit: loading the cached component, tokens and the run.
    pub seconds: f64,
    pub records_per_second: f64,
    pub micros_per_record: f64,
    /// Requests counted against the org's daily allocation (token requests are not).
    pub salesforce_api_calls: u64,
    pub netsuite_requests: u64,
    pub bulk_jobs: u64,
    /// The component's largest linear memory during the run.
    pub guest_peak_memory_bytes: u64,
    /// Time the component spent running its own code (host calls, the
    /// host's SQLite and the simulators excluded): where the run's time goes.
    pub guest_cpu_seconds: f64,
    /// CPU time of the connector's process (every thread) and of the
    /// simulators' during the run. With two cores, the run cannot take less
    /// than half of it.
    pub process_cpu_seconds: f64,
    /// The connector process's share of `process_cpu_seconds`.
    pub connector_cpu_seconds: f64,
    /// The simulators' share (the bench process: the stand-ins for the two
    /// remote services).
    pub simulator_cpu_seconds: f64,
    /// The connector process's CPU by thread name (`connector` runs the
    /// component and the host calls it makes, `state-writer` the run's
    /// SQLite writer, `tokio-rt-worker` the host's HTTP client), sampled
    /// every 20 ms, and the simulators' as `simulators`.
    pub cpu_seconds_by_thread: BTreeMap<String, f64>,
    /// Seconds each thread (by name, as above) was ready to run but waited
    /// for a core (`/proc/.../schedstat`): on two cores the component's
    /// thread waits while the simulators and the writer run.
    pub core_wait_seconds_by_thread: BTreeMap<String, f64>,
    /// The connector process's peak resident memory (its `VmHWM`, read
    /// every 20 ms): the host, its SQLite, wasmtime and the component's
    /// linear memory.
    pub host_peak_rss_bytes: u64,
    /// The simulators' process's peak resident memory during the run: they
    /// keep every record, so it grows with the load.
    pub simulator_peak_rss_bytes: u64,
    /// Wall time of `connector sync` run right after, with nothing to do
    /// (process start, cached component, tokens, the reads that find nothing).
    pub idle_cli_sync_ms: f64,
}

/// What to sync.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub customers: u64,
    pub contacts: u64,
    pub vendors: u64,
    /// Injected into every NetSuite and Salesforce API call.
    pub latency_ms: u64,
    pub paths: Vec<String>,
    pub max_memory_mb: usize,
}

/// The process's resident memory high-water mark, reset: Linux only (0 elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time (user + system) of this process so far, every thread counted.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_cpu_seconds(&stat).1
}

/// The command (thread) name and the CPU seconds of a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> (String, f64) {
    // The name is in brackets and may hold spaces; utime and stime are the
    // 14th and 15th fields, in clock ticks.
    let Some((head, rest)) = stat.rsplit_once(')') else { return (String::new(), 0.0) };
    let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (name, (ticks(14) + ticks(15)) / CLOCK_TICKS_PER_SECOND)
}

/// CPU seconds so far of each live thread of process `pid` (`self` or a
/// number), by thread id (Linux only).
fn thread_cpu_seconds(pid: &str) -> BTreeMap<u64, (String, f64)> {
    per_thread(pid, |task| Some(stat_cpu_seconds(&std::fs::read_to_string(task.join("stat")).ok()?)))
}

/// Seconds each live thread of `pid` has waited on a run queue so far, by
/// thread id (Linux with schedstats; empty elsewhere).
fn thread_core_wait_seconds(pid: &str) -> BTreeMap<u64, (String, f64)> {
    per_thread(pid, |task| {
        let name = std::fs::read_to_string(task.join("comm")).ok()?.trim_end().to_string();
        Some((name, schedstat_wait_seconds(&std::fs::read_to_string(task.join("schedstat")).ok()?)?))
    })
}

/// The second field of a `schedstat` line: nanoseconds spent runnable, waiting for a core.
fn schedstat_wait_seconds(line: &str) -> Option<f64> {
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|ns| ns as f64 / 1e9)
}

fn per_thread(pid: &str, read: impl Fn(&std::path::Path) -> Option<(String, f64)>) -> BTreeMap<u64, (String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return BTreeMap::new() };
    tasks
        .flatten()
        .filter_map(|task| Some((task.file_name().to_str()?.parse::<u64>().ok()?, read(&task.path())?)))
        .collect()
}

/// Seconds (CPU used, or waited for a core) between two snapshots, summed by
/// thread name, in whole clock ticks. Threads that ended in between are
/// missing (the bench's threads outlive a run).
fn seconds_by_thread(
    before: &BTreeMap<u64, (String, f64)>,
    after: &BTreeMap<u64, (String, f64)>,
) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    for (tid, (name, seconds)) in after {
        let earlier = before.get(tid).map_or(0.0, |(_, s)| *s);
        *by_name.entry(name.clone()).or_insert(0.0) += seconds - earlier;
    }
    by_name.retain(|_, s| *s > 0.0);
    by_name.values_mut().for_each(|s| *s = ticks(*s));
    by_name
}

/// Seconds rounded to whole clock ticks (differences of tick counts carry
/// floating-point residue otherwise).
fn ticks(seconds: f64) -> f64 {
    (seconds * CLOCK_TICKS_PER_SECOND).round() / CLOCK_TICKS_PER_SECOND
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux the harness runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The resident memory high-water mark of process `pid` (`self` or a number).
fn peak_rss(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A `connector` process that ran to its end, as measured from outside.
struct Finished {
    stdout: String,
    stderr: String,
    status: std::process::ExitStatus,
    seconds: f64,
    /// User + system CPU of every thread (`wait4`'s rusage).
    cpu_seconds: f64,
    /// The largest `VmHWM` sampled.
    peak_rss_bytes: u64,
    /// CPU and core waits by thread name, from the last sample before exit.
    cpu_by_thread: BTreeMap<String, f64>,
    core_wait_by_thread: BTreeMap<String, f64>,
}

/// Runs this executable with `args` as its own process, as a user runs the
/// connector, sampling its threads every 20 ms until it exits (Linux only:
/// the bench reads `/proc` and reaps the child with `wait4`).
fn run_measured(args: &[std::ffi::OsString]) -> Result<Finished> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(&exe);
    command.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    // No `pre_exec` (say, PR_SET_PDEATHSIG): it turns std's vfork-like spawn
    // into a fork, which copies this process's page tables (the simulators'
    // gigabytes) inside the measured time. Ctrl-C reaches the child anyway
    // (same process group); a bench killed alone leaves the sync to fail
    // once the simulators are gone.
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    // A thread blocks in wait4 so the end is timed when it happens, not at
    // the next sample.
    let (ended, end) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: rusage is plain data, filled in by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = loop {
            // SAFETY: reaps only our own child, whose id we hold; the std
            // `Child` is waited on only if this thread dies.
            let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
            if reaped >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break reaped;
            }
        };
        let outcome = if reaped == pid as libc::pid_t {
            Ok((status, usage, Instant::now()))
        } else {
            Err(std::io::Error::last_os_error())
        };
        let _ = ended.send(outcome);
    });
    let pid_text = pid.to_string();
    let (mut cpu, mut waits, mut peak_rss_bytes) = (BTreeMap::new(), BTreeMap::new(), 0);
    let (status, usage, at) = loop {
        // Each thread's last sample stands for it: the run's writer ends
        // before the process does.
        cpu.extend(thread_cpu_seconds(&pid_text));
        waits.extend(thread_core_wait_seconds(&pid_text));
        // Not `ru_maxrss`: a child started by vfork and exec carries its
        // parent's high-water mark (here the simulators' data) into it.
        peak_rss_bytes = peak_rss_bytes.max(peak_rss(&pid_text));
        match end.recv_timeout(std::time::Duration::from_millis(20)) {
            Ok(Ok(done)) => break done,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            // Only ECHILD: something else reaped it (its pid may be reused:
            // nothing to kill).
            Ok(Err(e)) => bail!("waiting for the connector process: {e}"),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Not left running, nor unreaped.
                let _ = child.kill();
                let _ = child.wait();
                bail!("the thread waiting for the connector process died")
            }
        }
    };
    let timeval = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Finished {
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        status: std::process::ExitStatus::from_raw(status),
        seconds: at.duration_since(started).as_secs_f64(),
        cpu_seconds: ticks(timeval(usage.ru_utime) + timeval(usage.ru_stime)),
        peak_rss_bytes,
        cpu_by_thread: seconds_by_thread(&BTreeMap::new(), &cpu),
        core_wait_by_thread: seconds_by_thread(&BTreeMap::new(), &waits),
    })
}

/// What the bench reads of `connector sync --json`'s report.
#[derive(serde::Deserialize)]
struct SyncReport {
    status: String,
    error: Option<String>,
    guest_peak_memory_bytes: u64,
    guest_cpu_ms: u64,
}

pub async fn run(component: PathBuf, options: BenchOptions) -> Result<Vec<PathResult>> {
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    // Compiles the component into the cache every `connector` process
    // reads, so no measured run compiles it.
    let wasm = component.clone();
    tokio::task::spawn_blocking(move || Runtime::load(&wasm)).await??;
    let records = options.customers + options.contacts + options.vendors;
    let mut results = Vec::new();
    for path in &options.paths {
        let (path, threshold): (&'static str, Option<u64>) = match path.as_str() {
            "auto" => ("auto", None),
            "composite" => ("composite", Some(records + 1)),
            "bulk" => ("bulk", Some(0)),
            other => bail!("--paths takes auto, composite and bulk, not `{other}`"),
        };
        let dir = std::env::temp_dir().join(format!("connector-bench-{}", crate::scheduler::new_run_id()));
        let mut settings = BTreeMap::new();
        if let Some(t) = threshold {
            settings.insert("salesforce_bulk_threshold".to_string(), t.to_string());
        }
        let latency = std::time::Duration::from_millis(options.latency_ms);
        let bed = Testbed::start(TestbedOptions {
            customers: options.customers,
            key: key.clone(),
            data_dir: dir.clone(),
            salesforce: SalesforceSimConfig { daily_api_limit: 1_000_000_000, ..Default::default() },
            settings,
            netsuite_concurrency: 15,
            max_memory_mb: options.max_memory_mb,
        })
        .await?;
        let vendors = bed.netsuite.seed_vendors(options.vendors, 17)?;
        if options.contacts > 0 {
            let companies: Vec<i64> = bed.customer_ids.iter().chain(&vendors).copied().collect();
            let at = bed.clock.now_secs() - 3600;
            bed.netsuite.seed_contacts(options.contacts, &companies, at, 19)?;
        }
        bed.netsuite.set_latency(latency);
        bed.salesforce.set_faults(Faults { latency, ..Default::default() });
        let config = dir.join("bench.toml");
        bed.write_config(&config)?;
        let args: Vec<std::ffi::OsString> =
            vec!["sync".into(), "--full".into(), "--json".into(), "--config".into(), config.clone().into_os_string()]
                .into_iter()
                .chain(["--component".into(), component.clone().into_os_string()])
                .collect();
        // The simulators (this process) are measured around the connector's
        // process, which runs the sync as a user would run it.
        reset_peak_rss();
        let (sim_cpu_before, sim_threads_before) = (process_cpu_seconds(), thread_cpu_seconds("self"));
        let sim_waits_before = thread_core_wait_seconds("self");
        let sync = tokio::task::spawn_blocking(move || run_measured(&args)).await??;
        let simulator_cpu_seconds = ticks(process_cpu_seconds() - sim_cpu_before);
        let sim_waits = seconds_by_thread(&sim_waits_before, &thread_core_wait_seconds("self"));
        let sim_threads = seconds_by_thread(&sim_threads_before, &thread_cpu_seconds("self"));
        let simulator_peak_rss_bytes = peak_rss("self");
        let report: SyncReport = serde_json::from_str(&sync.stdout).map_err(|e| {
            // "exit status: 1", "signal: 9 (SIGKILL)", ...
            let (status, out, err) = (sync.status, sync.stdout.trim(), sync.stderr.trim());
            anyhow::anyhow!("the {path} run's process ended ({status}) with no report ({e}): {out}{err}")
        })?;
        if !sync.status.success() || report.status != "succeeded" {
            bail!("the {path} run {}: {}", report.status, report.error.unwrap_or_else(|| sync.stderr.clone()));
        }
        let mut cpu_seconds_by_thread = sync.cpu_by_thread.clone();
        let mut core_wait_seconds_by_thread = sync.core_wait_by_thread.clone();
        // The simulators' threads (tokio workers) and the thread waiting
        // for the child, as one: the bench's stand-ins for remote services.
        cpu_seconds_by_thread.insert("simulators".into(), ticks(sim_threads.values().sum::<f64>().max(0.0)));
        core_wait_seconds_by_thread.insert("simulators".into(), ticks(sim_waits.values().sum::<f64>().max(0.0)));
        // Counted before the idle syncs, whose requests are not the run's.
        let (salesforce_api_calls, netsuite_requests, bulk_jobs) =
            (bed.salesforce.api_requests(), bed.netsuite.requests(), bed.salesforce.bulk_jobs());
        let idle_cli_sync_ms = idle_cli_sync(&config, &component).await?;
        let seconds = sync.seconds;
        results.push(PathResult {
            path,
            records,
            seconds,
            records_per_second: records as f64 / seconds,
            // A run with no records has no time per record.
            micros_per_record: if records == 0 { 0.0 } else { seconds * 1e6 / records as f64 },
            salesforce_api_calls,
            netsuite_requests,
            bulk_jobs,
            guest_peak_memory_bytes: report.guest_peak_memory_bytes,
            guest_cpu_seconds: report.guest_cpu_ms as f64 / 1000.0,
            process_cpu_seconds: ticks(sync.cpu_seconds + simulator_cpu_seconds),
            connector_cpu_seconds: sync.cpu_seconds,
            simulator_cpu_seconds,
            cpu_seconds_by_thread,
            core_wait_seconds_by_thread,
            host_peak_rss_bytes: sync.peak_rss_bytes,
            simulator_peak_rss_bytes,
            idle_cli_sync_ms,
        });
        drop(bed);
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(results)
}

/// Times `connector sync --config` (this executable) against the bench's
/// simulators once nothing is left to do.
async fn idle_cli_sync(config: &std::path::Path, component: &std::path::Path) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let out = tokio::process::Command::new(&exe)
        .args(["sync", "--json", "--config"])
        .arg(config)
        .arg("--component")
        .arg(component)
        .output()
        .await?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!("the idle `connector sync` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(elapsed)
}

pub fn print_text(results: &[PathResult]) -> std::io::Result<()> {
    crate::outln!(
        "{:<10} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>5} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "path",
        "records",
        "seconds",
        "records/s",
        "µs/rec",
        "SF calls",
        "NS reqs",
        "jobs",
        "guest MB",
        "host MB",
        "sims MB",
        "guest s",
        "CPU s"
    )?;
    for r in results {
        crate::outln!(
            "{:<10} {:>9} {:>8.2} {:>10.0} {:>9.1} {:>9} {:>9} {:>5} {:>10.1} {:>10.1} {:>9.1} {:>9.2} {:>7.2}  (idle sync {:.0} ms)",
            r.path,
            r.records,
            r.seconds,
            r.records_per_second,
            r.micros_per_record,
            r.salesforce_api_calls,
            r.netsuite_requests,
            r.bulk_jobs,
            r.guest_peak_memory_bytes as f64 / 1048576.0,
            r.host_peak_rss_bytes as f64 / 1048576.0,
            r.simulator_peak_rss_bytes as f64 / 1048576.0,
            r.guest_cpu_seconds,
            r.process_cpu_seconds,
            r.idle_cli_sync_ms
        )?;
    }
    for r in results {
        let threads: Vec<String> = r.cpu_seconds_by_thread.iter().map(|(name, s)| format!("{name} {s:.2}")).collect();
        crate::outln!("{:<10} CPU s by thread: {}", r.path, threads.join(", "))?;
        if !r.core_wait_seconds_by_thread.is_empty() {
            let waits: Vec<String> =
                r.core_wait_seconds_by_thread.iter().map(|(name, s)| format!("{name} {s:.2}")).collect();
            crate::outln!("{:<10} waiting for a core, s: {}", r.path, waits.join(", "))?;
        }
    }
    Ok(())
}

/// Change-event-to-Salesforce-write latency, through the harness's listener
/// or through the Spin build in the Spin test host.
#[derive(Debug, Serialize)]
pub struct EventLatency {
    pub host: &'static str,
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Which build receives the events.
pub enum EventHost {
    /// The harness component (this path) behind `connector serve`'s listener.
    Harness(PathBuf),
    /// The Spin build (this path) in a wasmtime host offering what Spin offers.
    Spin(PathBuf),
}

/// Where a signed event is POSTed.
enum Receiver {
    Listener { client: reqwest::Client, url: String },
    Spin(SpinHost),
}

impl Receiver {
    async fn post(&self, body: String, signature: String) -> Result<u16> {
        let header = netsuite_salesforce::events::SIGNATURE_HEADER;
        Ok(match self {
            Receiver::Listener { client, url } => client
                .post(url)
                .header("content-type", "application/json")
                .header(header, signature)
                .body(body)
                .send()
                .await?
                .status()
                .as_u16(),
            Receiver::Spin(host) => {
                let headers = [("content-type", "application/json".to_string()), (header, signature)];
                host.request("POST", "/netsuite/events", &headers, body.into_bytes()).await?.status
            }
        })
    }
}

/// Sends `events` signed change events one after another, each for a
/// freshly renamed customer, and times each from POST to the Salesforce
/// record carrying the new name.
pub async fn event_latency(target: EventHost, events: usize) -> Result<EventLatency> {
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    let dir = std::env::temp_dir().join(format!("connector-bench-{}", crate::scheduler::new_run_id()));
    let bed = Testbed::start(TestbedOptions {
        customers: 1000,
        key,
        data_dir: dir.clone(),
        salesforce: SalesforceSimConfig::default(),
        settings: BTreeMap::new(),
        netsuite_concurrency: 15,
        max_memory_mb: 512,
    })
    .await?;
    let (host, receiver, _listener) = match target {
        EventHost::Harness(component) => {
            let runtime: &'static Runtime =
                Box::leak(Box::new(tokio::task::spawn_blocking(move || Runtime::load(&component)).await??));
            let first = bed.sync_kinds(runtime, SyncMode::Incremental, &[]).await?;
            if first.status != "succeeded" {
                bail!("the initial sync failed: {:?}", first.error);
            }
            let hook = crate::webhook::serve(bed.tenant.clone(), runtime, "127.0.0.1:0".parse()?).await?;
            let url = format!("{}{}", hook.url, crate::webhook::EVENTS_PATH);
            ("harness listener", Receiver::Listener { client: reqwest::Client::new(), url }, Some(hook))
        }
        EventHost::Spin(wasm) => {
            let mut variables = bed.tenant.sandbox()?.config;
            variables.insert("credentials_key".into(), random_key());
            variables.insert("sync_token".into(), "bench".into());
            // Spin's default store, as `spin up` without a runtime config.
            let host = tokio::task::spawn_blocking(move || SpinHost::load(&wasm, variables, SwapSemantics::SpinSqlite))
                .await??;
            let first = host.request("POST", "/sync", &[("authorization", "Bearer bench".into())], vec![]).await?;
            if first.status != 200 {
                bail!("the initial sync through the Spin build failed ({}): {}", first.status, first.body);
            }
            ("spin build", Receiver::Spin(host), None)
        }
    };
    let mut samples = Vec::with_capacity(events);
    for i in 0..events {
        let id = bed.customer_ids[i % bed.customer_ids.len()];
        let name = format!("Latency probe {i}");
        bed.netsuite.rename_customer_any(id, &name)?;
        // `sentAt` as the SuiteScript sends it: each probe is its own event,
        // never a replay of an earlier one for the same customer.
        let body = format!(r#"{{"recordType":"customer","id":"{id}","type":"edit","sentAt":{i}}}"#);
        let signature = netsuite_salesforce::events::sign(
            crate::testbed::WEBHOOK_SECRET.as_bytes(),
            bed.clock.now_secs(),
            body.as_bytes(),
        );
        let started = Instant::now();
        let status = receiver.post(body, signature).await?;
        if status != 202 {
            bail!("the {host} answered {status}");
        }
        loop {
            let landed =
                bed.salesforce.find("Account", &id.to_string()).is_some_and(|(_, f)| f["Name"] == name.as_str());
            if landed {
                break;
            }
            if started.elapsed().as_secs() > 10 {
                bail!("event {i} did not reach Salesforce within 10 s");
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // The run that wrote the last event is still ending (its audit, its
    // lease): its database goes once it has, not under it.
    let ended = Instant::now();
    while bed.tenant.running() > 0 && ended.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok(EventLatency { host, events, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: *samples.last().unwrap_or(&0.0) })
}

/// A random 32-byte sealing key (base64) for the bench's throwaway store.
fn random_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_stat_line_gives_its_name_and_cpu_seconds() {
        // utime 250 and stime 31 ticks; the name holds a space and a bracket.
        let line = "4242 (state (w) r) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0 100 0 0";
        assert_eq!(stat_cpu_seconds(line), ("state (w) r".to_string(), 2.81));
        assert_eq!(stat_cpu_seconds("garbage"), (String::new(), 0.0));
    }

    #[test]
    fn a_schedstat_line_gives_the_seconds_spent_waiting_for_a_core() {
        assert_eq!(schedstat_wait_seconds("2640000000 585000000 1586\n"), Some(0.585));
        assert_eq!(schedstat_wait_seconds("garbage"), None);
    }

    #[test]
    fn seconds_by_thread_sums_what_each_name_used_between_snapshots() {
        let before = BTreeMap::from([(1, ("connector".to_string(), 1.0)), (2, ("tokio-rt-worker".to_string(), 0.5))]);
        let after = BTreeMap::from([
            (1, ("connector".to_string(), 3.25)),
            (2, ("tokio-rt-worker".to_string(), 1.5)),
            (3, ("tokio-rt-worker".to_string(), 0.75)),
            (4, ("epoch-ticker".to_string(), 0.0)),
        ]);
        let by_name = seconds_by_thread(&before, &after);
        assert_eq!(by_name, BTreeMap::from([("connector".to_string(), 2.25), ("tokio-rt-worker".to_string(), 1.75)]));
    }
}
