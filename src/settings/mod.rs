//! Settings and secrets, read once per run from the host's config store and
//! checked into typed values. What settings exist is declared once, in
//! [`catalog`]. Names are lower-case with underscores so they are valid Spin
//! variables too.

use crate::http::retry::Backoff;
use crate::model::{ConnectorError, Result};
use crate::ports::Config;
use std::time::Duration;

pub mod catalog;

pub use catalog::SETTINGS;

/// The JWS algorithms NetSuite accepts for a client assertion: RSA-PSS for
/// an RSA certificate, ECDSA on the certificate's curve for an EC one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 6] = [
        SigningAlgorithm::Ps256,
        SigningAlgorithm::Ps384,
        SigningAlgorithm::Ps512,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::Es512,
    ];

    /// The name in a JWT header and in the setting.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Ps256 => "PS256",
            SigningAlgorithm::Ps384 => "PS384",
            SigningAlgorithm::Ps512 => "PS512",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Es384 => "ES384",
            SigningAlgorithm::Es512 => "ES512",
        }
    }
}

/// OAuth 2.0 client credentials (machine to machine).
#[derive(Clone)]
pub struct M2mSettings {
    pub client_id: String,
    pub certificate_id: String,
    pub private_key_pem: String,
    pub algorithm: SigningAlgorithm,
}

#[derive(Clone)]
pub enum NetSuiteAuth {
    M2m(M2mSettings),
    /// Token-Based Authentication (OAuth 1.0a).
    Tba {
        consumer_key: String,
        consumer_secret: String,
        token_id: String,
        token_secret: String,
    },
}

#[derive(Clone)]
pub struct NetSuiteSettings {
    pub account_id: String,
    /// `https://<account>.suitetalk.api.netsuite.com` unless overridden.
    pub base_url: String,
    pub auth: NetSuiteAuth,
    pub page_size: u32,
    /// Incremental reads start this far before the cursor, to catch rows
    /// committed late with an earlier lastmodifieddate.
    pub overlap_secs: u32,
    /// The share of the account's concurrency limit this connector may use.
    pub max_in_flight: u32,
    /// A page of rows is asked for with fewer than `page_size` rows when the
    /// kind's rows are so wide that it would pass this many bytes.
    pub page_bytes: usize,
}

#[derive(Clone)]
pub enum SalesforceGrant {
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    RefreshToken {
        client_id: String,
        client_secret: Option<String>,
        refresh_token: String,
    },
    /// OAuth 2.0 JWT bearer: an RS256 assertion for a user who pre-approved the app.
    JwtBearer {
        client_id: String,
        username: String,
        private_key_pem: String,
        /// The assertion's `aud` when set; derived from the login URL
        /// otherwise (see `salesforce::auth::bearer_audience`).
        audience: Option<String>,
    },
}

#[derive(Clone)]
pub struct SalesforceSettings {
    /// Where the token endpoint lives: the org's My Domain URL for client
    /// credentials, login.salesforce.com or test.salesforce.com otherwise.
    pub login_url: String,
    pub grant: SalesforceGrant,
    /// e.g. `66.0`
    pub api_version: String,
    /// Stop before the org's daily API usage reaches this share (0–1).
    pub max_api_share: f64,
    /// How long a passed describe check holds before it is repeated.
    pub describe_ttl_secs: i64,
    /// Above this many records of one object in a run, writes go through Bulk API 2.0.
    pub bulk_threshold: u32,
    /// Records per Bulk API 2.0 job; the cursor moves after each job.
    pub bulk_job_records: u32,
    pub bulk_max_upload_bytes: usize,
    /// A Composite request carries fewer records than its slice when theirs
    /// would pass this many bytes.
    pub composite_max_bytes: usize,
    pub bulk_poll_timeout_secs: i64,
}

/// What a NetSuite deletion does in Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAction {
    /// Set `NetSuite_Deleted__c` on the record and keep it.
    Flag,
    /// Delete the Salesforce record.
    Delete,
}

#[derive(Clone)]
pub struct Settings {
    pub mapping: crate::mapping::Mapping,
    pub netsuite: NetSuiteSettings,
    pub salesforce: SalesforceSettings,
    pub backoff: Backoff,
    pub delete_action: DeleteAction,
    /// How long a run's lease lasts without renewal (a crashed run blocks the next this long at most).
    pub lease_ttl_secs: i64,
    /// Salesforce → NetSuite for vendors, and who wins a conflict.
    pub writeback: Option<crate::sync::merge::ConflictPolicy>,
}

/// What change events need: read without the rest of the settings, so a
/// bad event is refused even when NetSuite or Salesforce settings are not
/// complete.
pub struct EventSettings {
    pub secret: String,
    pub tolerance_secs: i64,
    /// An event for a kind it lacks is refused: no run would apply it.
    pub mapping: crate::mapping::Mapping,
}

impl EventSettings {
    pub fn load(config: &dyn Config) -> Result<EventSettings> {
        let r = Reader { config };
        Ok(EventSettings {
            secret: r.required("webhook_secret")?,
            tolerance_secs: r.number("webhook_tolerance_secs")?,
            mapping: crate::mapping::Mapping::load(r.optional("mapping_toml")?.as_deref())?,
        })
    }
}

// Secrets never reach Debug output.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("netsuite_account_id", &self.netsuite.account_id)
            .field("netsuite_base_url", &self.netsuite.base_url)
            .field("salesforce_login_url", &self.salesforce.login_url)
            .finish_non_exhaustive()
    }
}

/// The account-specific REST host: lower-case, `_` → `-` (`1234567_SB1` →
/// `1234567-sb1`).
pub fn netsuite_host_for_account(account_id: &str) -> String {
    format!("https://{}.suitetalk.api.netsuite.com", account_id.trim().to_ascii_lowercase().replace('_', "-"))
}

struct Reader<'a> {
    config: &'a dyn Config,
}

/// The declaration of a setting the loader reads; every read name is declared.
fn declared(name: &str) -> &'static catalog::Setting {
    catalog::find(name).unwrap_or_else(|| panic!("setting `{name}` is read but not declared in settings::catalog"))
}

impl Reader<'_> {
    fn optional(&self, name: &str) -> Result<Option<String>> {
        declared(name);
        self.config
            .get(name)
            .map(|v| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
            .map_err(|e| ConnectorError::Config(format!("could not read setting `{name}`: {e}")))
    }

    /// The value, else the declared default.
    fn text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.optional(name)?.or_else(|| declared(name).default.map(str::to_string)))
    }

    fn required(&self, name: &str) -> Result<String> {
        self.optional(name)?.ok_or_else(|| {
            let setting = declared(name);
            let how = if setting.secret {
                format!(
                    "it is a secret: store it with `connector secrets set --config <file> {name}`, or set the \
                     Spin variable `{name}`"
                )
            } else {
                format!("put it under [settings] in the harness config, or set the Spin variable `{name}`")
            };
            ConnectorError::Config(format!("setting `{name}` is missing ({}): {how}", setting.help))
        })
    }

    /// A URL setting, if set: http or https with a host, its trailing `/`
    /// cut. Checked here, else a typo is retried as a network outage.
    fn url(&self, name: &str) -> Result<Option<String>> {
        let Some(text) = self.optional(name)? else { return Ok(None) };
        let bad = |why: &str| {
            ConnectorError::Config(format!(
                "setting `{name}` is `{}`: {why}; give a URL such as https://host.example ({})",
                text.escape_debug(),
                declared(name).help
            ))
        };
        let parsed = url::Url::parse(&text).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https are spoken"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("it names no host"));
        }
        Ok(Some(text.trim_end_matches('/').to_string()))
    }

    /// A number: the value, else the declared default.
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T> {
        let text = self
            .text(name)?
            .ok_or_else(|| ConnectorError::Config(format!("setting `{name}` is missing ({})", declared(name).help)))?;
        let setting = declared(name);
        let bound = match text.trim().parse::<i64>() {
            Ok(n) if setting.min.is_some_and(|min| n < min) => Some((n, "at least", setting.min)),
            Ok(n) if setting.max.is_some_and(|max| n > max) => Some((n, "at most", setting.max)),
            _ => None,
        };
        if let Some((n, which, Some(limit))) = bound {
            return Err(ConnectorError::Config(format!(
                "setting `{name}` is {n}: give {which} {limit} ({}; default {})",
                setting.help,
                setting.default.unwrap_or("none")
            )));
        }
        text.parse().map_err(|_| {
            let why = match (text.trim().parse::<i64>(), setting.kind) {
                (Ok(n), _) if n < 0 => "give 0 or more".to_string(),
                (Ok(_), _) => "that is more than this setting can hold".to_string(),
                (Err(_), catalog::Kind::Decimal) => {
                    format!("give a number such as {}", setting.default.unwrap_or("1.5"))
                }
                (Err(_), _) => "give a whole number".to_string(),
            };
            ConnectorError::Config(format!(
                "setting `{name}` is `{text}`: {why} ({}; default {})",
                setting.help,
                setting.default.unwrap_or("none")
            ))
        })
    }

    /// One of the declared words, else the declared default.
    fn choice(&self, name: &str) -> Result<String> {
        let value = self.text(name)?.unwrap_or_default();
        match declared(name).kind {
            catalog::Kind::Choice(words) if words.contains(&value.as_str()) => Ok(value),
            catalog::Kind::Choice(words) => Err(ConnectorError::Config(format!(
                "setting `{name}` is `{value}`: use {} ({})",
                words.join(" or "),
                declared(name).help
            ))),
            _ => Ok(value),
        }
    }
}

/// A job's CSV is held whole until uploaded, while the results of the job
/// before it are read: a fifth of the memory cap leaves room for both and
/// the pages in between, however wide the records.
const MEMORY_PER_UPLOAD: usize = 5;

/// A page of rows is held about six times over (its JSON, its rows, their
/// mapped fields, payloads, states and audit values): a thirty-second of the
/// memory cap for its JSON keeps that near a fifth of it, however wide the
/// records.
const MEMORY_PER_PAGE: usize = 32;

/// A Composite request's records are held waiting and twice in flight (three
/// times only under a cap of 256 MB or more), each several times over
/// (payload, fields, state, request body): a sixty-fourth of the memory cap
/// each keeps them within about a quarter of it (1 MB at a 64 MB cap: a
/// thousand records of usual width still make one request).
const MEMORY_PER_REQUEST: usize = 64;

/// The memory cap's `divisor`th part, in bytes (unlimited when the host
/// gave no cap).
fn memory_share(r: &Reader<'_>, divisor: usize) -> Result<usize> {
    Ok(match r.text("component_memory_mb")? {
        None => usize::MAX,
        Some(_) => r.number::<usize>("component_memory_mb")?.saturating_mul(1 << 20) / divisor,
    })
}

/// The oldest REST API version with what the connector writes through:
/// sObject Collections upserts by external id came in v46.0.
const OLDEST_API_VERSION: u32 = 46;

/// `salesforce_api_version` as the URL takes it (`66.0`; a leading `v` is
/// allowed), refused when older than the connector can write with.
fn api_version(r: &Reader<'_>) -> Result<String> {
    let text = r.text("salesforce_api_version")?.unwrap_or_default();
    let version = text.trim().trim_start_matches(['v', 'V']);
    let major = version
        .strip_suffix(".0")
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| {
            ConnectorError::Config(format!(
                "salesforce_api_version `{}` is not a Salesforce REST API version: write it as `66.0`",
                text.escape_debug()
            ))
        })?;
    if major < OLDEST_API_VERSION {
        return Err(ConnectorError::Config(format!(
            "salesforce_api_version {version} is older than {OLDEST_API_VERSION}.0, the first with sObject \
             Collections upserts by external id, which every write uses: set {OLDEST_API_VERSION}.0 or newer \
             (default 66.0)"
        )));
    }
    Ok(version.to_string())
}

/// The largest Bulk API upload: the setting, within the memory cap's share.
fn bulk_upload_bytes(r: &Reader<'_>) -> Result<usize> {
    let setting: usize = r.number("salesforce_bulk_max_upload_bytes")?;
    Ok(setting.min(memory_share(r, MEMORY_PER_UPLOAD)?))
}

impl Settings {
    pub fn load(config: &dyn Config) -> Result<Settings> {
        let r = Reader { config };
        let account_id = r.required("netsuite_account_id")?;
        if !account_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ConnectorError::Config(format!(
                "setting `netsuite_account_id` is `{account_id}`: an account id has only letters, digits and `_`"
            )));
        }
        let base_url = match r.url("netsuite_base_url")? {
            Some(url) => url,
            None => netsuite_host_for_account(&account_id),
        };
        let page_size: u32 = r.number("netsuite_page_size")?;
        let auth = match r.choice("netsuite_auth")?.as_str() {
            "tba" => NetSuiteAuth::Tba {
                consumer_key: r.required("netsuite_consumer_key")?,
                consumer_secret: r.required("netsuite_consumer_secret")?,
                token_id: r.required("netsuite_token_id")?,
                token_secret: r.required("netsuite_token_secret")?,
            },
            _ => {
                let algorithm = match r.optional("netsuite_signing_algorithm")?.as_deref() {
                    Some("RS256") => {
                        return Err(ConnectorError::Config(
                            "setting `netsuite_signing_algorithm` is `RS256`: NetSuite M2M accepts PS256, PS384, PS512, \
                             ES256, ES384 or ES512 (RS256 is no longer accepted)"
                                .into(),
                        ));
                    }
                    _ => {
                        let chosen = r.choice("netsuite_signing_algorithm")?;
                        SigningAlgorithm::ALL.into_iter().find(|a| a.name() == chosen).ok_or_else(|| {
                            ConnectorError::Config(format!(
                                "setting `netsuite_signing_algorithm` is `{chosen}`, which the connector cannot sign"
                            ))
                        })?
                    }
                };
                NetSuiteAuth::M2m(M2mSettings {
                    client_id: r.required("netsuite_client_id")?,
                    certificate_id: r.required("netsuite_certificate_id")?,
                    private_key_pem: r.required("netsuite_private_key")?,
                    algorithm,
                })
            }
        };
        let netsuite = NetSuiteSettings {
            account_id,
            base_url,
            auth,
            page_size,
            overlap_secs: r.number("netsuite_overlap_secs")?,
            max_in_flight: r.number("netsuite_max_in_flight")?,
            page_bytes: memory_share(&r, MEMORY_PER_PAGE)?,
        };
        let client_id = r.required("salesforce_client_id")?;
        let grant = match r.choice("salesforce_grant")?.as_str() {
            "refresh_token" => SalesforceGrant::RefreshToken {
                client_id,
                client_secret: r.optional("salesforce_client_secret")?,
                refresh_token: r.required("salesforce_refresh_token")?,
            },
            "jwt_bearer" => SalesforceGrant::JwtBearer {
                client_id,
                username: r.required("salesforce_username")?,
                private_key_pem: r.required("salesforce_private_key")?,
                audience: r.url("salesforce_jwt_audience")?,
            },
            _ => {
                SalesforceGrant::ClientCredentials { client_id, client_secret: r.required("salesforce_client_secret")? }
            }
        };
        let salesforce = SalesforceSettings {
            login_url: match r.url("salesforce_login_url")? {
                Some(url) => url,
                None => r.required("salesforce_login_url")?,
            },
            grant,
            api_version: api_version(&r)?,
            max_api_share: r.number("salesforce_max_api_share")?,
            describe_ttl_secs: r.number("salesforce_describe_ttl_secs")?,
            bulk_threshold: r.number("salesforce_bulk_threshold")?,
            bulk_job_records: r.number("salesforce_bulk_job_records")?,
            bulk_max_upload_bytes: bulk_upload_bytes(&r)?,
            composite_max_bytes: memory_share(&r, MEMORY_PER_REQUEST)?,
            bulk_poll_timeout_secs: r.number("salesforce_bulk_poll_timeout_secs")?,
        };
        // 0 would stop every run at its first request.
        if !(salesforce.max_api_share > 0.0 && salesforce.max_api_share <= 1.0) {
            return Err(ConnectorError::Config(format!(
                "setting `salesforce_max_api_share` is {}: give a share above 0 and at most 1, e.g. 0.9",
                salesforce.max_api_share
            )));
        }

        let backoff = Backoff {
            base: Duration::from_millis(r.number("http_backoff_base_ms")?),
            cap: Duration::from_millis(r.number("http_backoff_cap_ms")?),
            max_retries: r.number("http_max_retries")?,
        };
        if backoff.cap < backoff.base {
            return Err(ConnectorError::Config(format!(
                "setting `http_backoff_cap_ms` is {} and `http_backoff_base_ms` {}: the longest wait cannot be \
                 shorter than the first; raise the cap or lower the base",
                backoff.cap.as_millis(),
                backoff.base.as_millis()
            )));
        }
        let delete_action = match r.choice("delete_action")?.as_str() {
            "delete" => DeleteAction::Delete,
            _ => DeleteAction::Flag,
        };
        let mapping = crate::mapping::Mapping::load(r.optional("mapping_toml")?.as_deref())?;
        let lease_ttl_secs: i64 = r.number("lease_ttl_secs")?;
        // Checked while write-back is off too: a typo shows when it is set,
        // not on the day write-back is turned on.
        let conflict = r.choice("vendor_conflict")?;
        let writeback = match r.choice("vendor_writeback")?.as_str() {
            "true" => {
                if mapping.writeback(crate::model::RecordKind::Vendor).is_none() {
                    return Err(ConnectorError::Config(
                        "setting `vendor_writeback` is true but the mapping has no [vendor.writeback] section: add \
                         one (the shipped mapping has an example) or turn the setting off"
                            .into(),
                    ));
                }
                crate::sync::merge::ConflictPolicy::parse(&conflict)
            }
            _ => None,
        };
        Ok(Settings { mapping, netsuite, salesforce, backoff, delete_action, lease_ttl_secs, writeback })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>);
    impl Config for Map {
        fn get(&self, name: &str) -> std::result::Result<Option<String>, String> {
            Ok(self.0.get(name).map(|s| s.to_string()))
        }
    }

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("netsuite_account_id", "1234567_SB1"),
            ("netsuite_client_id", "cid"),
            ("netsuite_certificate_id", "kid"),
            ("netsuite_private_key", "-----BEGIN PRIVATE KEY-----"),
            ("salesforce_client_id", "sfcid"),
            ("salesforce_client_secret", "sfsecret"),
            ("salesforce_login_url", "https://acme.my.salesforce.com/"),
        ])
    }

    #[test]
    fn tba_needs_its_four_credentials() {
        let mut m = base();
        m.insert("netsuite_auth", "tba");
        m.insert("netsuite_consumer_key", "ck");
        m.insert("netsuite_consumer_secret", "cs");
        m.insert("netsuite_token_id", "tk");
        let err = Settings::load(&Map(m.clone())).unwrap_err().to_string();
        assert!(err.contains("`netsuite_token_secret` is missing"), "{err}");
        m.insert("netsuite_token_secret", "ts");
        assert!(matches!(Settings::load(&Map(m)).unwrap().netsuite.auth, NetSuiteAuth::Tba { .. }));
    }

    #[test]
    fn a_url_setting_that_is_no_http_url_is_refused_naming_it() {
        for (name, value, why) in [
            ("salesforce_login_url", "not a url", "not a URL"),
            ("netsuite_base_url", "127.0.0.1", "not a URL"),
            ("netsuite_base_url", "ftp://files.example", "only http and https"),
            ("salesforce_jwt_audience", "https://", "not a URL"),
        ] {
            let mut m = base();
            m.insert(name, value);
            if name == "salesforce_jwt_audience" {
                m.extend([
                    ("salesforce_grant", "jwt_bearer"),
                    ("salesforce_username", "u"),
                    ("salesforce_private_key", "k"),
                ]);
            }
            let err = Settings::load(&Map(m)).unwrap_err().to_string();
            assert!(err.contains(&format!("setting `{name}` is `{value}`")) && err.contains(why), "{err}");
        }
    }

    #[test]
    fn sandbox_account_maps_to_lowercase_dashed_host() {
        assert_eq!(netsuite_host_for_account("1234567_SB1"), "https://1234567-sb1.suitetalk.api.netsuite.com");
        let s = Settings::load(&Map(base())).unwrap();
        assert_eq!(s.netsuite.base_url, "https://1234567-sb1.suitetalk.api.netsuite.com");
        assert_eq!(s.salesforce.login_url, "https://acme.my.salesforce.com");
        assert_eq!(s.salesforce.api_version, "66.0");
    }

    #[test]
    fn a_bulk_upload_stays_within_a_fifth_of_the_memory_cap() {
        let upload = |memory: Option<&'static str>, setting: Option<&'static str>| {
            let mut m = base();
            memory.map(|v| m.insert("component_memory_mb", v));
            setting.map(|v| m.insert("salesforce_bulk_max_upload_bytes", v));
            Settings::load(&Map(m)).map(|s| s.salesforce.bulk_max_upload_bytes)
        };
        assert_eq!(upload(None, None).unwrap(), 100_000_000, "no cap given: the setting");
        assert_eq!(upload(Some("512"), None).unwrap(), 100_000_000);
        assert_eq!(upload(Some("64"), None).unwrap(), (64 << 20) / 5);
        assert_eq!(upload(Some("64"), Some("1000000")).unwrap(), 1_000_000, "a smaller setting stays");
        let err = upload(Some("lots"), None).unwrap_err().to_string();
        assert!(err.contains("`component_memory_mb` is `lots`"), "{err}");
    }

    #[test]
    fn explicit_base_url_overrides_derived_host() {
        let mut m = base();
        m.insert("netsuite_base_url", "http://127.0.0.1:9000/");
        assert_eq!(Settings::load(&Map(m)).unwrap().netsuite.base_url, "http://127.0.0.1:9000");
    }

    #[test]
    fn missing_and_bad_settings_are_named() {
        let mut m = base();
        m.remove("netsuite_client_id");
        let err = Settings::load(&Map(m)).unwrap_err().to_string();
        assert!(err.contains("`netsuite_client_id` is missing"), "{err}");

        // One setting set to `value` on the base: the load's error.
        let refused = |name: &'static str, value: &'static str| {
            let mut m = base();
            m.insert(name, value);
            Settings::load(&Map(m)).unwrap_err().to_string()
        };
        for (name, value, said) in [
            ("netsuite_signing_algorithm", "RS256", "RS256 is no longer accepted"),
            ("netsuite_page_size", "5000", "1 to 1000"),
            ("netsuite_page_size", "-1", "`netsuite_page_size` is -1: give at least 1"),
            ("salesforce_max_api_share", "90%", "`90%`: give a number such as 0.9"),
            ("salesforce_max_api_share", "0", "is 0: give a share above 0 and at most 1"),
            ("lease_ttl_secs", "0", "is 0: give at least 2 (renewed every page"),
            ("lease_ttl_secs", "99999999999", "give at most 86400"),
            ("netsuite_overlap_secs", "4000000000", "give at most 604800"),
            ("netsuite_max_in_flight", "0", "`netsuite_max_in_flight` is 0: give at least 1"),
            ("salesforce_bulk_job_records", "0", "`salesforce_bulk_job_records` is 0: give at least 1"),
            ("salesforce_bulk_poll_timeout_secs", "0", "`salesforce_bulk_poll_timeout_secs` is 0: give at least 1"),
            ("salesforce_bulk_max_upload_bytes", "0", "give at least 65536"),
            ("salesforce_describe_ttl_secs", "-1", "`salesforce_describe_ttl_secs` is -1: give at least 0"),
            ("http_backoff_cap_ms", "10", "the longest wait cannot be shorter than the first"),
            // Refused while write-back is off, not first on the day it is turned on.
            ("vendor_conflict", "NetSuite", "vendor_conflict"),
            ("salesforce_api_version", "45.0", "salesforce_api_version 45.0 is older than 46.0"),
            ("salesforce_api_version", "latest", "`latest` is not a Salesforce REST API version"),
        ] {
            let err = refused(name, value);
            assert!(err.contains(said), "{name} = {value}: {err}");
        }

        // The listener's own settings.
        for tolerance in ["0", "-1"] {
            let config = Map(HashMap::from([("webhook_secret", "s"), ("webhook_tolerance_secs", tolerance)]));
            let err = EventSettings::load(&config).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(&format!("`webhook_tolerance_secs` is {tolerance}: give at least 1")), "{err}");
        }

        for (given, taken) in [("v62.0", "62.0"), (" 46.0 ", "46.0")] {
            let mut m = base();
            m.insert("salesforce_api_version", given);
            assert_eq!(Settings::load(&Map(m)).unwrap().salesforce.api_version, taken);
        }
    }

    #[test]
    fn every_setting_read_is_listed() {
        struct Recording(std::cell::RefCell<Vec<String>>, HashMap<&'static str, &'static str>);
        impl Config for Recording {
            fn get(&self, name: &str) -> std::result::Result<Option<String>, String> {
                self.0.borrow_mut().push(name.to_string());
                Ok(self.1.get(name).map(|s| s.to_string()))
            }
        }
        for (auth, grant) in [("m2m", "client_credentials"), ("tba", "refresh_token"), ("m2m", "jwt_bearer")] {
            let mut m = base();
            for s in SETTINGS {
                m.entry(s.name).or_insert("1");
            }
            m.insert("netsuite_auth", auth);
            m.insert("salesforce_grant", grant);
            m.insert("netsuite_signing_algorithm", "PS256");
            m.insert("delete_action", "flag");
            m.insert("salesforce_max_api_share", "0.5");
            m.insert("salesforce_api_version", "66.0");
            m.remove("mapping_toml");
            let recording = Recording(Default::default(), m);
            let _ = Settings::load(&recording);
            let _ = EventSettings::load(&recording);
            for name in recording.0.borrow().iter() {
                assert!(catalog::find(name).is_some(), "`{name}` is read but not declared");
            }
        }
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let s = Settings::load(&Map(base())).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("sfsecret") && !dbg.contains("PRIVATE KEY"), "{dbg}");
    }
}
