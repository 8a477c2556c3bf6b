//! The harness config file (TOML): which tenant, where its state lives, its
//! settings; secrets live in the sealed secrets file, never here.

use crate::host::outbound;
use anyhow::{Context, Result, bail};
use netsuite_salesforce::settings::catalog::{self, Scope};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Names of the settings that are credentials: they belong in the secrets
/// file (declared in the connector's settings catalog).
pub fn secret_names() -> impl Iterator<Item = &'static str> {
    catalog::SETTINGS.iter().filter(|s| s.secret && s.scope == Scope::Connector).map(|s| s.name)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessConfig {
    pub tenant: String,
    /// Holds connector.db (state and audit); relative to the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Used when CONNECTOR_MASTER_KEY is not set.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// The mapping (TOML); the shipped default when unset.
    #[serde(default)]
    pub mapping_file: Option<PathBuf>,
    /// Extra outbound hosts; the NetSuite and Salesforce hosts are added from the settings.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default = "default_memory_mb")]
    pub max_memory_mb: usize,
    #[serde(default = "default_deadline")]
    pub run_deadline_secs: u64,
    /// Milliseconds a run's component may spend running its own code (host
    /// calls and API waits not counted); unset: only the deadline bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_ms: Option<u64>,
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// When `connector serve` runs the tenant's incremental syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConfig>,
    /// Change events `connector serve` accepts from this tenant per minute
    /// (bursts up to the same number); more are answered 429.
    #[serde(default = "default_events_per_minute")]
    pub events_per_minute: u32,
}

/// The largest memory cap a wasm32 component can use.
pub const MAX_MEMORY_MB: u64 = 4096;
/// The longest deadline (or CPU time) a run may be given: 30 days.
pub const MAX_RUN_SECS: u64 = 30 * 86_400;

/// The keys of [`HarnessConfig`] (what a file holds outside [settings]).
const TOP_LEVEL_KEYS: &[&str] = &[
    "tenant",
    "data_dir",
    "master_key_file",
    "secrets_file",
    "mapping_file",
    "allowed_hosts",
    "max_memory_mb",
    "run_deadline_secs",
    "max_cpu_ms",
    "settings",
    "schedule",
    "events_per_minute",
];

/// `[schedule]`: a cron expression (five fields, or six with seconds first)
/// or a fixed interval, plus a random delay that spreads tenants apart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    #[serde(default)]
    pub jitter_secs: u64,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".connector")
}
fn default_memory_mb() -> usize {
    512
}
fn default_deadline() -> u64 {
    4 * 3600
}
fn default_events_per_minute() -> u32 {
    600
}

/// A config file's TOML, naming the file when it cannot be read or parsed.
fn read_table(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {} is not valid", path.display()))
}

/// The NetSuite `host:port` `settings` name: `netsuite_base_url`'s, else
/// the one derived from the account id.
pub fn netsuite_authority(settings: &BTreeMap<String, String>) -> Option<String> {
    netsuite_url(settings).as_deref().and_then(outbound::authority_of_url)
}

fn netsuite_url(settings: &BTreeMap<String, String>) -> Option<String> {
    match settings.get("netsuite_base_url") {
        Some(url) => Some(url.clone()),
        None => settings.get("netsuite_account_id").map(|account| {
            format!("https://{}.suitetalk.api.netsuite.com", account.to_ascii_lowercase().replace('_', "-"))
        }),
    }
}

impl HarnessConfig {
    /// A file of one tenant (`tenant = "acme"`).
    pub fn load(path: &Path) -> Result<HarnessConfig> {
        let table = read_table(path)?;
        if table.get("tenant").is_some_and(toml::Value::is_array) {
            bail!(
                "{} defines its tenants as [[tenant]] tables: name the one to use with `--table <name>`; \
                 `connector serve --tenants {}` hosts them all",
                path.display(),
                path.display()
            );
        }
        HarnessConfig::from_table(table, path)
    }

    /// One tenant's keys, read from the file at `path`.
    fn from_table(table: toml::Table, path: &Path) -> Result<HarnessConfig> {
        let config: HarnessConfig =
            table.try_into().with_context(|| format!("config {} is not valid", path.display()))?;
        config.resolved(path)
    }

    /// The tenant a command is for: the file's, or with `table`, that
    /// `[[tenant]]` table of it.
    pub fn load_selected(path: &Path, table: Option<&str>) -> Result<HarnessConfig> {
        let Some(name) = table else { return HarnessConfig::load(path) };
        let all = HarnessConfig::load_all(path)?;
        let names: Vec<String> = all.iter().map(|c| format!("`{}`", c.tenant)).collect();
        all.into_iter().find(|c| c.tenant == name).with_context(|| {
            format!("{} has no tenant `{name}` (--table); it has {}", path.display(), names.join(", "))
        })
    }

    /// The tenants a file defines: the file itself when it names one
    /// (`tenant = "acme"`), else each of its `[[tenant]]` tables, which take
    /// the same keys with the tenant's `name`; a table that names no
    /// `data_dir` keeps its state in `.connector/<name>`.
    pub fn load_all(path: &Path) -> Result<Vec<HarnessConfig>> {
        let mut table = read_table(path)?;
        let tenants = match table.remove("tenant") {
            Some(toml::Value::Array(tenants)) => tenants,
            // A file of one tenant (its name, or a missing one the parse names).
            one => {
                table.extend(one.map(|name| ("tenant".to_string(), name)));
                return Ok(vec![HarnessConfig::from_table(table, path)?]);
            }
        };
        if let Some(key) = table.keys().next() {
            bail!(
                "{}: a file of [[tenant]] tables holds nothing else; move `{key}` into each [[tenant]] that needs it",
                path.display()
            );
        }
        let mut configs = Vec::with_capacity(tenants.len());
        for (i, tenant) in tenants.into_iter().enumerate() {
            let toml::Value::Table(mut tenant) = tenant else {
                bail!("{}: `tenant` entry {} is not a table; write each as [[tenant]]", path.display(), i + 1);
            };
            let Some(toml::Value::String(name)) = tenant.remove("name") else {
                bail!(
                    "{}: [[tenant]] number {} has no `name = \"...\"`; give each tenant its name",
                    path.display(),
                    i + 1
                );
            };
            tenant.insert("tenant".into(), toml::Value::String(name.clone()));
            tenant.entry("data_dir").or_insert_with(|| toml::Value::String(format!(".connector/{name}")));
            let config: HarnessConfig =
                tenant.try_into().with_context(|| format!("{}: [[tenant]] `{name}` is not valid", path.display()))?;
            configs.push(config.resolved(path).with_context(|| format!("{}: [[tenant]] `{name}`", path.display()))?);
        }
        Ok(configs)
    }

    /// Paths made relative to the config file's directory, then validated.
    fn resolved(mut self, path: &Path) -> Result<HarnessConfig> {
        let base = path.parent().unwrap_or(Path::new("."));
        self.data_dir = base.join(&self.data_dir);
        self.master_key_file = self.master_key_file.map(|p| base.join(p));
        self.secrets_file = self.secrets_file.map(|p| base.join(p));
        self.mapping_file = self.mapping_file.map(|p| base.join(p));
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<()> {
        if self.tenant.is_empty() || !self.tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("config `tenant` is `{}`: use letters, digits, `-` and `_`", self.tenant);
        }
        for name in self.settings.keys() {
            match catalog::find(name) {
                Some(s) if s.scope != Scope::Connector => bail!(
                    "config [settings] holds `{name}`, which only the Spin build reads (a Spin variable): remove it"
                ),
                // The harness sets it from `max_memory_mb` for each run.
                Some(_) if name == "component_memory_mb" => bail!(
                    "config [settings] holds `component_memory_mb`, which the harness sets from `max_memory_mb` for \
                     each run: remove it, and set `max_memory_mb` (above the [settings] line) instead"
                ),
                Some(s) if s.secret => bail!(
                    "config [settings] holds `{name}`, which is a secret: remove it and store it with \
                     `connector secrets set --config <file> {name}` (it is kept encrypted)"
                ),
                Some(_) => {}
                // A key of the file itself indented into [settings]: its
                // nearest setting (`mapping_file` → `mapping_toml`) would
                // take a different value, so name where it goes instead.
                None if TOP_LEVEL_KEYS.contains(&name.as_str()) => bail!(
                    "config [settings] holds `{name}`, which is not a setting but a key of the config file itself: \
                     move it above the [settings] line (in a [[tenant]] table, above its [tenant.settings])"
                ),
                None => match catalog::closest(name, Scope::Connector) {
                    Some(known) => {
                        bail!("config [settings] holds `{name}`, which is not a setting: did you mean `{known}`?")
                    }
                    None => bail!(
                        "config [settings] holds `{name}`, which is not a setting (`connector settings` lists them)"
                    ),
                },
            }
        }
        // Past these, arithmetic on them (a deadline's instant, the memory
        // cap in bytes) would overflow, and no run needs more.
        let limits = [
            ("max_memory_mb", self.max_memory_mb as u64, MAX_MEMORY_MB, "a wasm32 component addresses at most 4096 MB"),
            ("run_deadline_secs", self.run_deadline_secs, MAX_RUN_SECS, "30 days"),
            ("max_cpu_ms", self.max_cpu_ms.unwrap_or(1), MAX_RUN_SECS * 1000, "30 days"),
        ];
        for (key, value, max, why) in limits {
            if value == 0 || value > max {
                bail!("tenant `{}`: `{key}` is {value}: give 1 to {max} ({why})", self.tenant);
            }
        }
        if let Some(schedule) = &self.schedule {
            crate::serve::schedule::Schedule::from_config(schedule)
                .with_context(|| format!("tenant `{}`: [schedule] is not valid", self.tenant))?;
        }
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("connector.db")
    }

    pub fn secrets_path(&self) -> PathBuf {
        self.secrets_file.clone().unwrap_or_else(|| self.data_dir.join("secrets.enc"))
    }

    /// Settings as the strings the component reads.
    pub fn settings_text(&self) -> BTreeMap<String, String> {
        self.settings
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }

    /// The tenant's NetSuite and Salesforce hosts, plus any extra ones.
    pub fn outbound_hosts(&self) -> Vec<String> {
        self.outbound_hosts_for(&self.settings_text())
    }

    /// The hosts `settings` (the values a run gets) name, plus the extra ones.
    pub fn outbound_hosts_for(&self, settings: &BTreeMap<String, String>) -> Vec<String> {
        // Entries from the settings name scheme, host and port exactly,
        // however the URL was written (`https://h` and `https://h:443` alike).
        let mut hosts = self.allowed_hosts.clone();
        hosts.extend(netsuite_url(settings).as_deref().and_then(outbound::entry_for_url));
        if let Some(url) = settings.get("salesforce_login_url") {
            hosts.extend(outbound::entry_for_url(url));
            if url.contains("salesforce.com") {
                // Sessions may be served from the org's instance host.
                hosts.push("https://*.my.salesforce.com".into());
            }
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HarnessConfig> {
        let c: HarnessConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn tenant_tables_each_become_a_tenant_with_a_data_dir_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("group.toml");
        std::fs::write(
            &file,
            "[[tenant]]\nname = \"acme\"\nmax_cpu_ms = 500\n[tenant.settings]\nnetsuite_page_size = 200\n\n\
             [[tenant]]\nname = \"globex\"\ndata_dir = \"state/globex\"\n",
        )
        .unwrap();
        let configs = HarnessConfig::load_all(&file).unwrap();
        let names: Vec<&str> = configs.iter().map(|c| c.tenant.as_str()).collect();
        assert_eq!(names, ["acme", "globex"]);
        assert_eq!(configs[0].data_dir, dir.path().join(".connector/acme"));
        assert_eq!(configs[0].max_cpu_ms, Some(500));
        assert_eq!(configs[0].settings_text()["netsuite_page_size"], "200");
        assert_eq!(configs[1].data_dir, dir.path().join("state/globex"));
        let err = HarnessConfig::load(&file).unwrap_err().to_string();
        assert!(err.contains("defines its tenants as [[tenant]] tables") && err.contains("--table <name>"), "{err}");
        assert_eq!(HarnessConfig::load_selected(&file, Some("globex")).unwrap().tenant, "globex");
        let err = format!("{:#}", HarnessConfig::load_selected(&file, Some("initech")).unwrap_err());
        assert!(err.contains("no tenant `initech`") && err.contains("`acme`, `globex`"), "{err}");

        std::fs::write(&file, "max_memory_mb = 64\n[[tenant]]\nname = \"acme\"\n").unwrap();
        let err = format!("{:#}", HarnessConfig::load_all(&file).unwrap_err());
        assert!(err.contains("move `max_memory_mb` into each [[tenant]]"), "{err}");
        std::fs::write(&file, "[[tenant]]\ndata_dir = \"x\"\n").unwrap();
        let err = format!("{:#}", HarnessConfig::load_all(&file).unwrap_err());
        assert!(err.contains("[[tenant]] number 1 has no `name"), "{err}");
        std::fs::write(&file, "[[tenant]]\nname = \"a b\"\n").unwrap();
        let err = format!("{:#}", HarnessConfig::load_all(&file).unwrap_err());
        assert!(err.contains("[[tenant]] `a b`") && err.contains("use letters, digits"), "{err}");
        // A file of one tenant is one tenant.
        std::fs::write(&file, "tenant = \"solo\"\n").unwrap();
        assert_eq!(HarnessConfig::load_all(&file).unwrap()[0].tenant, "solo");
    }

    /// Limits whose arithmetic would overflow (a deadline's instant, the
    /// memory cap in bytes), or that no run can meet, are refused by name.
    #[test]
    fn limits_past_what_a_run_can_use_are_refused_by_name() {
        for (line, said) in [
            ("max_memory_mb = 17592186044416", "`max_memory_mb` is 17592186044416: give 1 to 4096"),
            ("max_memory_mb = 0", "`max_memory_mb` is 0"),
            ("run_deadline_secs = 9223372036854775807", "`run_deadline_secs` is 9223372036854775807: give 1 to"),
            ("run_deadline_secs = 0", "`run_deadline_secs` is 0"),
            ("max_cpu_ms = 0", "`max_cpu_ms` is 0"),
        ] {
            let err = parse(&format!("tenant = \"acme\"\n{line}\n")).unwrap_err().to_string();
            assert!(err.contains(said), "{line}: {err}");
        }
        assert!(parse("tenant = \"acme\"\nmax_memory_mb = 4096\nrun_deadline_secs = 2592000\n").is_ok());
    }

    #[test]
    fn secrets_in_settings_are_refused_by_name() {
        let err = parse("tenant = \"acme\"\n[settings]\nsalesforce_client_secret = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("`salesforce_client_secret`") && err.contains("secrets set"), "{err}");
    }

    #[test]
    fn unknown_settings_name_the_closest_known_one() {
        let err = parse("tenant = \"acme\"\n[settings]\nnetsuite_page_sise = 500\n").unwrap_err().to_string();
        assert!(err.contains("`netsuite_page_sise`") && err.contains("did you mean `netsuite_page_size`"), "{err}");
        let err = parse("tenant = \"acme\"\n[settings]\naudit_retention_days = 3\n").unwrap_err().to_string();
        assert!(err.contains("only the Spin build reads"), "{err}");
        let err = parse("tenant = \"acme\"\n[settings]\nsync_token = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("is a secret"), "{err}");
        let err = parse("tenant = \"acme\"\n[settings]\nsalesforce_private_key = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("is a secret"), "{err}");
        // Set by the harness for each run: taken, it would be overridden unseen.
        let err = parse("tenant = \"acme\"\n[settings]\ncomponent_memory_mb = 0\n").unwrap_err().to_string();
        assert!(err.contains("`component_memory_mb`") && err.contains("`max_memory_mb`"), "{err}");
    }

    #[test]
    fn a_config_key_put_under_settings_is_sent_back_to_the_top_level() {
        let err = parse("tenant = \"acme\"\n[settings]\nmapping_file = \"mapping.toml\"\n").unwrap_err().to_string();
        assert!(err.contains("`mapping_file`") && err.contains("move it above the [settings] line"), "{err}");
        assert!(!err.contains("mapping_toml"), "{err}");
        // The list is the struct's keys: serde names them all when refusing
        // an unknown one.
        let err = toml::from_str::<HarnessConfig>("no_such_key = 0").unwrap_err().to_string();
        let expected = err.split_once("expected one of").map(|(_, keys)| keys).unwrap_or_else(|| panic!("{err}"));
        let fields: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        assert_eq!(fields, TOP_LEVEL_KEYS, "{err}");
    }

    #[test]
    fn outbound_hosts_come_from_settings() {
        let c = parse(
            "tenant = \"acme\"\n[settings]\nnetsuite_account_id = \"1234567_SB1\"\nsalesforce_login_url = \"https://acme.my.salesforce.com\"\n",
        )
        .unwrap();
        assert_eq!(
            c.outbound_hosts(),
            vec![
                "https://*.my.salesforce.com",
                "https://1234567-sb1.suitetalk.api.netsuite.com:443",
                "https://acme.my.salesforce.com:443"
            ]
        );
        assert_eq!(
            netsuite_authority(&c.settings_text()).as_deref(),
            Some("1234567-sb1.suitetalk.api.netsuite.com:443")
        );
    }

    #[test]
    fn a_url_with_its_default_port_is_allowed_and_no_other_port_is() {
        let c = parse(
            "tenant = \"acme\"\n[settings]\nnetsuite_base_url = \"https://ns.example:443/\"\n\
             salesforce_login_url = \"https://user:pw@login.example\"\n",
        )
        .unwrap();
        let hosts = c.outbound_hosts();
        assert_eq!(hosts, vec!["https://login.example:443", "https://ns.example:443"], "no userinfo kept");
        // The component's URL parser drops a default port: the host sees `ns.example`.
        let policy = outbound::OutboundPolicy::new(hosts);
        assert!(policy.allows(true, "ns.example") && policy.allows(true, "ns.example:443"));
        assert!(policy.allows(true, "login.example"));
        assert!(!policy.allows(true, "login.example:8443"), "another port of the login host");
        assert!(!policy.allows(false, "ns.example:443"), "nor plain http");
    }
}
