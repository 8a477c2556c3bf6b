//! Every setting the connector knows, declared once: name, type, default,
//! whether it is a secret, and one line of help. The typed loader
//! (`super::Settings`), the harness config check, `spin.toml` and the
//! README's settings table all derive from this list; tests fail on drift.

/// What a setting's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Url,
    /// A whole number.
    Integer,
    /// A decimal number.
    Decimal,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A PEM private key.
    Pem,
    /// A whole TOML document.
    Toml,
}

/// Which host reads the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The component reads it, under either host.
    Connector,
    /// Only the Spin build's entry point reads it (a Spin variable).
    Spin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    /// The value used when the setting is absent or empty.
    pub default: Option<&'static str>,
    /// Needed by every configuration (others may be needed by some, e.g. TBA).
    pub required: bool,
    /// A credential: kept sealed, never in a config file or a log.
    pub secret: bool,
    pub scope: Scope,
    pub help: &'static str,
    /// The smallest value an `Integer` takes.
    pub min: Option<i64>,
    /// The largest value an `Integer` takes.
    pub max: Option<i64>,
}

const fn setting(name: &'static str, kind: Kind, help: &'static str) -> Setting {
    Setting {
        name,
        kind,
        default: None,
        required: false,
        secret: false,
        scope: Scope::Connector,
        help,
        min: None,
        max: None,
    }
}

impl Setting {
    const fn default(mut self, value: &'static str) -> Setting {
        self.default = Some(value);
        self
    }
    const fn required(mut self) -> Setting {
        self.required = true;
        self
    }
    const fn secret(mut self) -> Setting {
        self.secret = true;
        self
    }
    const fn at_least(mut self, min: i64) -> Setting {
        self.min = Some(min);
        self
    }
    const fn at_most(mut self, max: i64) -> Setting {
        self.max = Some(max);
        self
    }
    const fn spin(mut self) -> Setting {
        self.scope = Scope::Spin;
        self
    }
}

use Kind::{Choice, Decimal, Integer, Pem, Text, Toml, Url};

pub const SETTINGS: &[Setting] = &[
    setting("netsuite_account_id", Text, "NetSuite account id, e.g. 1234567 or 1234567_SB1").required(),
    setting("netsuite_base_url", Url, "REST host; derived from the account id when unset"),
    setting(
        "netsuite_auth",
        Choice(&["m2m", "tba"]),
        "OAuth 2.0 client credentials (m2m) or Token-Based Authentication",
    )
    .default("m2m"),
    setting("netsuite_client_id", Text, "M2M: the integration record's client id"),
    setting("netsuite_certificate_id", Text, "M2M: the certificate id from OAuth 2.0 Client Credentials (M2M) Setup"),
    setting(
        "netsuite_signing_algorithm",
        Choice(&["PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]),
        "M2M: how the client assertion is signed",
    )
    .default("PS256"),
    setting("netsuite_private_key", Pem, "M2M: the private key whose certificate NetSuite holds").secret(),
    setting("netsuite_consumer_key", Text, "TBA: the integration record's consumer key"),
    setting("netsuite_consumer_secret", Text, "TBA: the integration record's consumer secret").secret(),
    setting("netsuite_token_id", Text, "TBA: the access token's id"),
    setting("netsuite_token_secret", Text, "TBA: the access token's secret").secret(),
    setting("netsuite_page_size", Integer, "SuiteQL rows per page, 1 to 1000")
        .default("1000")
        .at_least(1)
        .at_most(1000),
    setting("netsuite_overlap_secs", Integer, "incremental reads re-read this window before the cursor (late commits)")
        .default("600")
        .at_least(0)
        .at_most(7 * 86_400),
    setting("netsuite_max_in_flight", Integer, "the connector's share of the account's concurrency limit")
        .default("4")
        .at_least(1),
    setting("salesforce_login_url", Url, "where the token endpoint lives, e.g. https://acme.my.salesforce.com")
        .required(),
    setting(
        "salesforce_grant",
        Choice(&["client_credentials", "refresh_token", "jwt_bearer"]),
        "the OAuth 2.0 grant the connector logs in with",
    )
    .default("client_credentials"),
    setting("salesforce_client_id", Text, "the connected app's consumer key").required(),
    setting("salesforce_client_secret", Text, "the connected app's consumer secret (client credentials)").secret(),
    setting("salesforce_refresh_token", Text, "refresh token grant: a token from the web-server flow").secret(),
    setting("salesforce_username", Text, "JWT bearer: the integration user's username"),
    setting("salesforce_private_key", Pem, "JWT bearer: the RSA key whose certificate the connected app holds")
        .secret(),
    setting(
        "salesforce_jwt_audience",
        Url,
        "JWT bearer: the assertion's aud; by default https://login.salesforce.com, or https://test.salesforce.com \
         when the login URL is a sandbox's (an Experience Cloud site or other host: the login URL itself)",
    ),
    setting("salesforce_api_version", Text, "REST API version, 46.0 or newer (sObject Collections upserts)")
        .default("66.0"),
    setting("salesforce_bulk_threshold", Integer, "above this many records of one object in a run, use Bulk API 2.0")
        .default("10000"),
    setting("salesforce_bulk_job_records", Integer, "records per Bulk API 2.0 job").default("50000").at_least(1),
    setting("salesforce_bulk_max_upload_bytes", Integer, "largest Bulk API 2.0 CSV upload")
        .default("100000000")
        .at_least(65536),
    setting(
        "component_memory_mb",
        Integer,
        "the component's memory cap (the harness sets it from `max_memory_mb`): a Bulk API job's CSV stays within a fifth, \
         a page of rows within a thirty-second, a Composite request's records within a sixty-fourth",
    ),
    setting("salesforce_bulk_poll_timeout_secs", Integer, "how long a run waits for one Bulk API 2.0 job")
        .default("3600")
        .at_least(1),
    setting("salesforce_max_api_share", Decimal, "stop before the org's daily API usage reaches this share (0-1)")
        .default("0.9"),
    setting("salesforce_describe_ttl_secs", Integer, "how long a passed describe check of an object holds")
        .default("3600")
        .at_least(0),
    setting(
        "vendor_writeback",
        Choice(&["false", "true"]),
        "Vendor__c edits and new Vendor__c records in Salesforce reach NetSuite ([vendor.writeback] of the mapping)",
    )
    .default("false"),
    setting(
        "vendor_conflict",
        Choice(&["netsuite", "salesforce", "newest"]),
        "who wins a vendor field changed on both sides since the last sync",
    )
    .default("netsuite"),
    setting("delete_action", Choice(&["flag", "delete"]), "a NetSuite deletion sets NetSuite_Deleted__c, or deletes")
        .default("flag"),
    setting(
        "lease_ttl_secs",
        Integer,
        "renewed every page, write and Bulk poll and while a request or backoff waits; a crashed run blocks the next one at most this long",
    )
    .default("60")
    .at_least(2)
    .at_most(86_400),
    setting("http_max_retries", Integer, "retries of a transient HTTP failure").default("6"),
    setting("http_backoff_base_ms", Integer, "first retry waits up to this long (exponential, full jitter)")
        .default("500"),
    setting("http_backoff_cap_ms", Integer, "longest wait between retries").default("30000"),
    setting("mapping_toml", Toml, "the mapping; the shipped one when unset (harness: `mapping_file`)"),
    setting("webhook_secret", Text, "the secret NetSuite signs change events with").secret(),
    setting("webhook_tolerance_secs", Integer, "change events older or newer than this are refused")
        .default("300")
        .at_least(1),
    setting("credentials_key", Text, "Spin: 32 random bytes, base64; seals cached tokens in key-value").secret().spin(),
    setting("sync_token", Text, "bearer token `POST /sync` requires (harness `serve`, Spin)").secret(),
    setting("audit_retention_days", Integer, "Spin: days of audit kept in key-value").default("30").spin(),
];

/// The declaration of `name`, if it is a setting.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The known setting closest in spelling to `name`, for "did you mean".
pub fn closest(name: &str, scope: Scope) -> Option<&'static str> {
    SETTINGS
        .iter()
        .filter(|s| s.scope == scope)
        .map(|s| (edit_distance(name, s.name), s.name))
        .filter(|(d, candidate)| *d <= candidate.len().max(name.len()) / 3 + 1)
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance over chars; the names are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Text => "text".into(),
            Url => "URL".into(),
            Integer => "integer".into(),
            Decimal => "number".into(),
            Choice(words) => words.join(" \\| "),
            Pem => "PEM key".into(),
            Toml => "TOML".into(),
        }
    }
}

/// The settings reference as a Markdown table (the README carries it).
pub fn markdown_table() -> String {
    let mut out = String::from("| setting | type | default | secret | what it is |\n|---|---|---|---|---|\n");
    for s in SETTINGS {
        let default = match (s.default, s.required) {
            (Some(d), _) => format!("`{d}`"),
            (None, true) => "required".into(),
            (None, false) => String::new(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            s.name,
            s.kind.describe(),
            default,
            if s.secret { "yes" } else { "" },
            s.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_their_kind_and_names_are_unique() {
        for s in SETTINGS {
            assert_eq!(SETTINGS.iter().filter(|o| o.name == s.name).count(), 1, "{} twice", s.name);
            assert!(!(s.required && s.default.is_some()), "{}: required with a default", s.name);
            assert!(!(s.secret && s.default.is_some()), "{}: a secret with a default", s.name);
            if let Some(d) = s.default {
                let ok = match s.kind {
                    Integer => d.parse::<i64>().is_ok(),
                    Decimal => d.parse::<f64>().is_ok(),
                    Choice(words) => words.contains(&d),
                    _ => true,
                };
                assert!(ok, "{}: default `{d}` is not a {:?}", s.name, s.kind);
            }
        }
    }

    #[test]
    fn misspellings_find_the_intended_setting() {
        assert_eq!(closest("netsuite_page_sise", Scope::Connector), Some("netsuite_page_size"));
        assert_eq!(closest("salesforce_loginurl", Scope::Connector), Some("salesforce_login_url"));
        assert_eq!(closest("colour", Scope::Connector), None);
    }

    #[test]
    fn the_readme_carries_the_settings_table() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's settings table differs from src/settings/catalog.rs; replace it with:\n{table}"
        );
    }
}
