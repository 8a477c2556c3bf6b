//! The `connector` command line as a user types it: settings and secrets.

mod support;

use std::process::Command;
use support::{connector_binary, succeeded};

fn connector(args: &[&str], dir: &std::path::Path, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(connector_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("CONNECTOR_MASTER_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the connector CLI starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_secret_the_connector_reads_can_be_stored_and_none_may_sit_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let key = connector(&["secrets", "init", "--out", "master.key"], dir.path(), "");
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let config = dir.path().join("connector.toml");
    std::fs::write(&config, "tenant = \"acme\"\nmaster_key_file = \"master.key\"\n[settings]\n").unwrap();
    let config = config.to_str().unwrap();
    let secrets: Vec<&str> = netsuite_salesforce::settings::SETTINGS
        .iter()
        .filter(|s| s.secret && s.scope == netsuite_salesforce::settings::catalog::Scope::Connector)
        .map(|s| s.name)
        .collect();
    assert!(secrets.contains(&"salesforce_private_key"), "the JWT bearer key is a secret");
    let key = support::ps256_key().private_pem;
    for name in &secrets {
        // A private key must read as one; any text does for the others.
        let value = if name.ends_with("_private_key") { key.as_str() } else { "-----BEGIN PRIVATE KEY-----\n" };
        let out = connector(&["secrets", "set", "--config", config, name], dir.path(), value);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // One that does not (cut short, or passphrase-protected) is refused, nothing stored over the good one.
    for bad in [
        "-----BEGIN PRIVATE KEY-----\n",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    ] {
        let out = connector(&["secrets", "set", "--config", config, "netsuite_private_key"], dir.path(), bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("Nothing was stored"), "{stderr}");
    }
    let listed = connector(&["secrets", "list", "--config", config], dir.path(), "");
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in &secrets {
        assert!(listed.lines().any(|l| l == *name), "{name} is listed: {listed}");
    }
    assert!(!listed.contains("BEGIN"), "values are never shown");

    // A key pasted into [settings] is refused, naming the way to store it.
    std::fs::write(
        dir.path().join("connector.toml"),
        "tenant = \"acme\"\nmaster_key_file = \"master.key\"\n[settings]\nsalesforce_private_key = \"-----BEGIN\"\n",
    )
    .unwrap();
    let out = connector(&["secrets", "list", "--config", config], dir.path(), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("connector secrets set"), "{stderr}");
}

#[test]
fn a_misspelled_setting_is_refused_naming_the_intended_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("connector.toml");
    std::fs::write(&config, "tenant = \"acme\"\n[settings]\nsalesforce_bulk_treshold = 5000\n").unwrap();
    let out = connector(&["sync", "--config", config.to_str().unwrap()], dir.path(), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("did you mean `salesforce_bulk_threshold`"), "{stderr}");
}

#[test]
fn the_settings_command_lists_what_the_readme_lists() {
    let dir = tempfile::tempdir().unwrap();
    let out = connector(&["settings"], dir.path(), "");
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed, netsuite_salesforce::settings::catalog::markdown_table());
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(listed.as_ref()));
}

/// The master key and the sealed secrets are readable by their owner only,
/// and a key file others may read stops every command that needs it.
#[cfg(unix)]
#[test]
fn key_and_secrets_are_owner_only_and_a_readable_key_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key_file = dir.path().join(".connector/master.key");
    let out = connector(&["secrets", "init", "--out", ".connector/master.key"], dir.path(), "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&dir.path().join(".connector")), 0o700);
    let first_key = std::fs::read(&key_file).unwrap();
    let again = connector(&["secrets", "init", "--out", ".connector/master.key"], dir.path(), "");
    assert!(!again.status.success(), "an existing key file is never replaced");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(&key_file).unwrap(), first_key);

    let config = dir.path().join("connector.toml");
    std::fs::write(&config, "tenant = \"acme\"\nmaster_key_file = \".connector/master.key\"\n[settings]\n").unwrap();
    let config = config.to_str().unwrap();
    let out = connector(&["secrets", "set", "--config", config, "salesforce_client_secret"], dir.path(), "hunter2");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&dir.path().join(".connector/secrets.enc")), 0o600);

    // `secrets init > master.key` as the README once said: 0644 by the umask.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [vec!["secrets", "list", "--config", config], vec!["sync", "--config", config]] {
        let out = connector(&args, dir.path(), "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran with a readable key: {stderr}");
        assert!(stderr.contains(&format!("chmod 600 {}", key_file.display())), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2") && !String::from_utf8_lossy(&out.stdout).contains("hunter2"));
    }
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listed = connector(&["secrets", "list", "--config", config], dir.path(), "");
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "salesforce_client_secret");
}

/// A run that cannot start (a missing mapping file, a master key that does
/// not open the secrets) ends `failed` in the run log, and the CLI says why
/// in one line naming the file.
/// Runs `connector` (a `serve` expected to stop at start) in `dir` until it
/// ends, or kills it after a minute; its output.
fn serve_until_it_ends(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let mut serve = Command::new(connector_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("CONNECTOR_MASTER_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while serve.try_wait().unwrap().is_none() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = serve.kill();
    serve.wait_with_output().unwrap()
}

#[test]
fn a_run_that_cannot_start_ends_failed_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = connector(&["secrets", "init", "--out", "master.key"], dir.path(), "");
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let config = dir.path().join("connector.toml");
    let text = "tenant = \"acme\"\ndata_dir = \"data\"\nmaster_key_file = \"master.key\"\n[settings]\n\
                netsuite_account_id = \"123\"\nnetsuite_base_url = \"http://127.0.0.1:9\"\n\
                salesforce_login_url = \"http://127.0.0.1:9\"\nsalesforce_client_id = \"x\"\n";
    std::fs::write(&config, format!("mapping_file = \"missing-mapping.toml\"\n{text}")).unwrap();
    let config = config.to_str().unwrap();
    let stored = connector(&["secrets", "set", "--config", config, "salesforce_client_secret"], dir.path(), "s");
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    let component = support::component_path().to_str().unwrap();
    let sync = || connector(&["sync", "--config", config, "--component", component], dir.path(), "");
    let last_run = || {
        let db = host_harness::store::Database::open(&dir.path().join("data/connector.db")).unwrap();
        db.connect()
            .unwrap()
            .query_row("SELECT status, error FROM runs ORDER BY rowid DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .unwrap()
    };
    let one_line = |out: &std::process::Output| {
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        stderr
    };

    let stderr = one_line(&sync());
    let (status, error) = last_run();
    assert_eq!(status, "failed");
    assert!(error.contains("missing-mapping.toml") && error.contains("mapping_file"), "{error}");
    assert!(stderr.contains(&error), "{stderr}");

    // An empty one is refused too, not taken for the shipped mapping.
    std::fs::write(dir.path().join("missing-mapping.toml"), "\n  \n").unwrap();
    let stderr = one_line(&sync());
    let (status, error) = last_run();
    assert_eq!(status, "failed");
    assert!(error.contains("missing-mapping.toml") && error.contains("is empty"), "{error}");
    assert!(stderr.contains(&error), "{stderr}");

    // A file that does not parse is named too (the run sees only its text).
    std::fs::write(dir.path().join("missing-mapping.toml"), "[customer]\n[[customer.field]\n").unwrap();
    let stderr = one_line(&sync());
    assert!(stderr.contains("missing-mapping.toml (setting mapping_file) is not valid: TOML parse error"), "{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains("unclosed array table"), "{stderr}");

    // `serve --config` reads the mapping once, at start, as it reads the
    // config: one it cannot use stops it there, not each run after.
    std::fs::write(dir.path().join("missing-mapping.toml"), "[customer]\nsobject = 3\n").unwrap();
    let out = serve_until_it_ends(
        &["serve", "--config", config, "--component", component, "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("missing-mapping.toml"), "{stderr}");
    assert!(stderr.contains("is not valid") && !String::from_utf8_lossy(&out.stdout).contains("listening"), "{stderr}");

    // An address in use is named, with the flag that changes it.
    std::fs::write(dir.path().join("missing-mapping.toml"), netsuite_salesforce::mapping::DEFAULT_MAPPING).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out =
        serve_until_it_ends(&["serve", "--config", config, "--component", component, "--listen", &addr], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&addr) && stderr.contains("--listen"), "{stderr}");
    // So under --tenants, before it plans (as its own) the runs of tenants
    // the `serve` holding the address runs.
    let scheduled = dir.path().join("scheduled.toml");
    std::fs::write(&scheduled, format!("{text}[schedule]\nevery_secs = 60\n")).unwrap();
    let scheduled = scheduled.to_str().unwrap();
    let out = serve_until_it_ends(
        &["serve", "--tenants", scheduled, "--component", component, "--listen", &addr],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&addr) && stderr.contains("--listen"), "{stderr}");
    let db = host_harness::store::Database::open(&dir.path().join("data/connector.db")).unwrap();
    let planned: i64 =
        db.connect().unwrap().query_row("SELECT COUNT(*) FROM serve_schedule", [], |r| r.get(0)).unwrap();
    assert_eq!(planned, 0, "{stderr}");
    drop(taken);

    std::fs::write(dir.path().join("connector.toml"), text).unwrap();
    // Another key (owner-only, as `secrets init --out` writes it).
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    assert!(connector(&["secrets", "init", "--out", "master.key"], dir.path(), "").status.success());
    let stderr = one_line(&sync());
    let (status, error) = last_run();
    assert_eq!(status, "failed");
    assert!(error.contains("master_key_file") && error.contains("master.key"), "names the key's source: {error}");
    assert!(error.contains("secrets.enc"), "{error}");
    assert!(stderr.contains(&error), "{stderr}");
}

/// A file of `[[tenant]]` tables: `--table` says which tenant a command is
/// for; each table's secrets are sealed in its own data directory.
#[test]
fn tenant_tables_are_addressed_by_table_and_keep_their_secrets_apart() {
    let dir = tempfile::tempdir().unwrap();
    assert!(connector(&["secrets", "init", "--out", "master.key"], dir.path(), "").status.success());
    let group = dir.path().join("group.toml");
    std::fs::write(
        &group,
        "[[tenant]]\nname = \"acme\"\nmaster_key_file = \"master.key\"\n\n\
         [[tenant]]\nname = \"globex\"\nmaster_key_file = \"master.key\"\n",
    )
    .unwrap();
    let group = group.to_str().unwrap();
    let out = connector(&["secrets", "list", "--config", group], dir.path(), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--table <name>"), "{stderr}");

    let stored =
        connector(&["secrets", "set", "--config", group, "--table", "globex", "webhook_secret"], dir.path(), "w");
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    assert!(dir.path().join(".connector/globex/secrets.enc").is_file(), "sealed in globex's own data directory");
    let listed = |table: &str| {
        let out = connector(&["secrets", "list", "--config", group, "--table", table], dir.path(), "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(listed("globex"), "webhook_secret\n");
    assert_eq!(listed("acme"), "", "acme's secrets are its own");
    let out = connector(&["secrets", "list", "--config", group, "--table", "initech"], dir.path(), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no tenant `initech`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_run_the_log_lacks_is_refused_and_an_empty_one_says_so() {
    let bed = support::bed(5).start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    bed.write_config(&file).unwrap();
    let (config, component) = (file.to_str().unwrap(), support::component_path().to_str().unwrap());
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--config", config, "--component", component];
        args.extend_from_slice(extra);
        connector(&args, dir.path(), "")
    };
    let typo = replay(&["--run", "run-1764600000-0a1b2c3x"]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success(), "{stderr}");
    assert!(stderr.contains("no run `run-1764600000-0a1b2c3x` of tenant `demo` in the run log"), "{stderr}");

    // One write refused by a validation rule waits; replayed (the rule
    // still there), it is sent and fails again: not "nothing".
    bed.salesforce.set_validation_rule(Some(simulators::salesforce::ValidationRule {
        sobject: "Account".into(),
        field: "Name".into(),
        contains: "Embargoed".into(),
        message: "Accounts under embargo need approval".into(),
    }));
    bed.netsuite.rename_customer_any(bed.customer_ids[0], "Embargoed Holdings").unwrap();
    let first = bed.sync().await;
    assert_eq!(first.counts("customer").failed, 1, "{first:?}");
    let again = replay(&[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("nothing to replay"), "{stderr}");
    assert_eq!(again.status.code(), Some(2), "a record failed: {stderr}");
    assert!(stderr.contains("1 record failed (audited, kept for replay): `connector audit list"), "{stderr}");
    assert!(stderr.contains("--outcome failed` says why; `connector replay --config <file> --run run-"), "{stderr}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("failed 1"), "{}", String::from_utf8_lossy(&again.stdout));

    // The first run's failure now waits under the replay's run id.
    let older = replay(&["--run", &first.run_id]);
    let stderr = String::from_utf8_lossy(&older.stderr);
    assert!(
        stderr.contains(&format!("of the writes run {} failed, 1 failed again in later runs", first.run_id)),
        "{stderr}"
    );

    // A contact under that customer waits for it; named, the replay says so.
    let at = bed.clock.now_secs();
    bed.netsuite.seed_contacts(1, &bed.customer_ids[..1], at, 3).unwrap();
    let (contact, _) = bed.netsuite.id_pairs("SELECT id, company FROM contact").unwrap()[0];
    assert_eq!(bed.sync_all().await.counts("contact").deferred, 1);
    // Leading zeros name the same record, as in change events.
    let named = replay(&["--record", &format!("contact:00{contact}")]);
    let stderr = String::from_utf8_lossy(&named.stderr);
    assert!(stderr.contains(&format!("contact {contact} is deferred until its parent")), "{stderr}");

    bed.salesforce.set_validation_rule(None);
    let sent = replay(&[]);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let empty = replay(&[]);
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(empty.status.success(), "{stderr}");
    assert!(stderr.contains("nothing to replay"), "{stderr}");
}

/// `sync --compare-live` works without `--dry-run` (drift repair), with and
/// without it, as the README gives the commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_compare_live_repairs_from_the_command_line_and_its_dry_run_plans_it() {
    let bed = support::bed(5).start().await;
    succeeded(&bed.sync().await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    bed.write_config(&file).unwrap();
    let (config, component) = (file.to_str().unwrap(), support::component_path().to_str().unwrap());
    let id = bed.customer_ids[1];
    let (sf_id, before) = bed.sf("Account", id);
    let name = serde_json::Map::from_iter([("Name".to_string(), serde_json::Value::from("Edited By Hand"))]);
    bed.salesforce.edit_by_hand("Account", &sf_id, name);
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--config", config, "--component", component, "--full", "--compare-live", "--json"];
        args.extend_from_slice(extra);
        let out = connector(&args, dir.path(), "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let plan = sync(&["--dry-run"]);
    assert_eq!(plan["mode"], "dry-run full compare-live");
    assert_eq!(plan["plan"][0]["action"], "update", "{plan}");
    assert_eq!(bed.sf("Account", id).1["Name"], "Edited By Hand", "a dry run writes nothing");
    let run = sync(&[]);
    assert_eq!(run["mode"], "full compare-live");
    assert_eq!(run["objects"]["customer"]["updated"], 1, "{run}");
    assert_eq!(bed.sf("Account", id).1["Name"], before["Name"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compiled_component_is_cached_a_damaged_entry_replaced_and_a_shared_directory_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let bed = support::bed(5).start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    bed.write_config(&config).unwrap();
    let cache = dir.path().join("cache");
    let sync = || {
        let out = Command::new(connector_binary())
            .args(["sync", "--config"])
            .arg(&config)
            .env("CONNECTOR_COMPONENT", support::component_path())
            .env("CONNECTOR_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    sync();
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.extension().unwrap(), "cwasm");
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700);
    let written = std::fs::metadata(entry).unwrap().modified().unwrap();

    // The next invocation loads it rather than compiling and writing it again.
    sync();
    assert_eq!(std::fs::metadata(entry).unwrap().modified().unwrap(), written);

    // A damaged entry is refused by wasmtime, compiled again and replaced.
    std::fs::write(entry, b"not a compiled component").unwrap();
    sync();
    assert!(std::fs::metadata(entry).unwrap().len() > 100_000);

    // Native code others could have written is never loaded.
    std::fs::write(entry, b"not a compiled component").unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let stderr = sync();
    assert!(stderr.contains("not using the compiled-component cache"), "{stderr}");
    assert_eq!(std::fs::read(entry).unwrap(), b"not a compiled component");
}

/// A failing command whose standard error is a closed pipe (`2>&1
/// >/dev/null | true`) exits with its error code, not a panic's.
#[test]
fn an_error_written_to_a_closed_standard_error_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "tenant = \"acme\"\n[settings\n").unwrap();
    // Closed before the child starts: its first write to stderr fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(connector_binary())
        .args(["sync", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .env_remove("CONNECTOR_MASTER_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}");
}

/// `connector serve` reloads its tenants directory every few seconds: a
/// broken file is logged when it appears or changes, not at every reload.
#[test]
fn a_broken_tenant_file_is_logged_once_per_change_not_at_every_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, "tenant = \"acme\"\n[settings\n").unwrap();
    let server = host_harness::serve::Server::new(dir.path().to_path_buf(), support::runtime());
    let logged = |server: &host_harness::serve::Server| {
        let reload = server.reload();
        assert_eq!(reload.errors.len(), 1, "still reported: {reload:?}");
        assert!(reload.errors[0].contains("broken.toml"), "{reload:?}");
        reload.new_errors.len()
    };
    assert_eq!(logged(&server), 1, "logged when found");
    assert_eq!(logged(&server), 0, "not again while the file is as it was");
    assert_eq!(logged(&server), 0);
    // Saved again as it was: whoever saved it sees the error again.
    let touched = std::fs::metadata(&file).unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(touched).unwrap();
    assert_eq!(logged(&server), 1, "logged when saved again");
    assert_eq!(logged(&server), 0);
    std::fs::write(&file, "tenant = \"acme\"\n[schedule\n").unwrap();
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(touched).unwrap();
    assert_eq!(logged(&server), 1, "logged when its content changes, whatever its time");
    assert_eq!(logged(&server), 0);
}

/// `serve` refuses a schedule of no interval, `--every` where each tenant's
/// own [schedule] decides, and an instance pool of none or without the
/// tenants it is for, instead of running flat out or silently ignoring it.
#[test]
fn serve_refuses_an_every_of_zero_and_flags_of_the_other_mode() {
    let dir = tempfile::tempdir().unwrap();
    for (args, said) in [
        (["serve", "--config", "connector.toml", "--every", "0"], "invalid value '0' for '--every"),
        (["serve", "--tenants", "tenants", "--every", "60"], "'--tenants <TENANTS>' cannot be used with '--every"),
        (["serve", "--tenants", "tenants", "--max-instances", "0"], "invalid value '0' for '--max-instances"),
        (
            ["serve", "--config", "connector.toml", "--max-instances", "8"],
            "'--config <CONFIG>' cannot be used with '--max-instances",
        ),
    ] {
        let out = connector(&args, dir.path(), "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(said), "{args:?}: {err}");
    }
}

/// A master key replaced with `secrets rekey`: the secrets and the cached
/// tokens move to the new key (no new login), the old key opens nothing,
/// and `secrets remove` deletes one secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_moves_the_secrets_and_cached_tokens_to_a_new_key_and_remove_deletes_one() {
    let bed = support::bed(5).start().await;
    succeeded(&bed.sync().await);
    let logins = bed.salesforce.token_requests();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    bed.write_config(&file).unwrap();
    let config = file.to_str().unwrap();
    let sync = || {
        let component = support::component_path();
        connector(&["sync", "--config", config, "--component", component.to_str().unwrap()], dir.path(), "")
    };

    // A run holding the lease could seal a new token under the old key.
    let conn = bed.tenant.database.connect().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let lease = serde_json::json!({"run_id": "run-under-way", "expires_at": now + 600}).to_string();
    let set = "INSERT OR REPLACE INTO kv VALUES ('demo', 'state', 'lease', ?1, '')";
    conn.execute(set, [lease.as_bytes()]).unwrap();
    let busy = connector(&["secrets", "rekey", "--config", config, "--out", "new.key"], dir.path(), "");
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(!busy.status.success() && stderr.contains("run-under-way"), "{stderr}");
    assert!(!dir.path().join("new.key").exists(), "nothing made");
    conn.execute("DELETE FROM kv WHERE bucket = 'state' AND key = 'lease'", []).unwrap();

    let rekey = connector(&["secrets", "rekey", "--config", config, "--out", "new.key"], dir.path(), "");
    let stdout = String::from_utf8_lossy(&rekey.stdout);
    assert!(rekey.status.success(), "{}", String::from_utf8_lossy(&rekey.stderr));
    assert!(stdout.contains("and 2 cached token(s) of tenant"), "the Salesforce session and NetSuite token: {stdout}");
    let refused = sync();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("connector secrets rekey"), "the old key: {stderr}");

    let mut text: toml::Table = std::fs::read_to_string(&file).unwrap().parse().unwrap();
    text.insert("master_key_file".into(), dir.path().join("new.key").to_str().unwrap().into());
    std::fs::write(&file, toml::to_string(&text).unwrap()).unwrap();
    let out = sync();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bed.salesforce.token_requests(), logins, "the cached session opened under the new key");

    let removed = connector(&["secrets", "remove", "--config", config, "webhook_secret"], dir.path(), "");
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let listed = connector(&["secrets", "list", "--config", config], dir.path(), "");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("netsuite_private_key") && !listed.contains("webhook_secret"), "{listed}");
    let again = connector(&["secrets", "remove", "--config", config, "webhook_secret"], dir.path(), "");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("is not stored"), "{stderr}");
}

/// `connector sim` starts its simulators with new data: a directory holding
/// an earlier run's database or config is refused, never overwritten.
#[test]
fn sim_refuses_a_directory_an_earlier_run_left_its_state_in() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("connector-sim");
    std::fs::create_dir(&sim).unwrap();
    std::fs::write(sim.join("connector.toml"), "tenant = \"mine\"\n").unwrap();
    // Started, the simulators would run until Ctrl-C: given 20 s to refuse.
    let mut child = Command::new(connector_binary())
        .args(["sim", "--ports", "0,0", "--customers", "1", "--dir", "connector-sim"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Pick another --dir"), "{stderr}");
    assert_eq!(std::fs::read_to_string(sim.join("connector.toml")).unwrap(), "tenant = \"mine\"\n", "kept");
    assert!(!sim.join("master.key").exists());
}

/// `serve --config --log-format json` logs a scheduled run as a JSON line,
/// as it does an events run, not as a text report on standard output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_scheduled_runs_as_json_lines_when_asked() {
    let bed = support::bed(3).start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    bed.write_config(&file).unwrap();
    let component = support::component_path();
    let mut serve = Command::new(connector_binary())
        .args(["serve", "--config", file.to_str().unwrap(), "--component", component.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--every", "1", "--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Two runs finished: the first one's line is written by then.
    let finished = || -> i64 {
        let sql = "SELECT COUNT(*) FROM runs WHERE finished_at IS NOT NULL";
        bed.tenant.database.connect().unwrap().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    };
    for _ in 0..600 {
        if finished() >= 2 || serve.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = serve.kill();
    let out = serve.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let logged = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| l["fields"]["message"] == "run finished" && l["fields"]["mode"] == "incremental");
    assert!(logged, "stderr: {stderr}");
    assert!(!stdout.contains("API calls"), "no text report: {stdout}");
}

/// `serve` with text logs logs each scheduled run on standard error, as it
/// does events runs (its report goes to standard output), and a second
/// `serve` of the same database is refused while the first one runs: both
/// would run the schedule, and the first to stop would clear the other's
/// next run from `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_scheduled_runs_on_stderr_and_refuses_a_second_serve_of_its_database() {
    let bed = support::bed(3).start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    bed.write_config(&file).unwrap();
    let component = support::component_path();
    let serve = || {
        let mut command = Command::new(connector_binary());
        command
            .args(["serve", "--config", file.to_str().unwrap(), "--component", component.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--every", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let mut first = serve().spawn().unwrap();
    let finished = || -> i64 {
        let sql = "SELECT COUNT(*) FROM runs WHERE finished_at IS NOT NULL";
        bed.tenant.database.connect().unwrap().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    };
    for _ in 0..600 {
        if finished() >= 2 || first.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // An old build served on: the wait is bounded, so the test fails.
    let mut second = serve().spawn().unwrap();
    for _ in 0..400 {
        if second.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = second.kill();
    let second = second.wait_with_output().unwrap();
    let refused = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{refused}");
    assert!(refused.contains(&format!("already served by `connector serve` (pid {})", first.id())), "{refused}");
    let _ = first.kill();
    let out = first.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("run finished") && stderr.contains("mode=\"incremental\""), "stderr: {stderr}");
    assert!(stdout.contains("API calls"), "the report too: {stdout}");
}
