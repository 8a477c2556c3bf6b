//! Salesforce OAuth: the client-credentials and refresh-token grants. Tokens
//! carry no expiry, so a cached session is used until a call answers 401
//! INVALID_SESSION_ID, then refreshed once.

use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, Result};
use crate::settings::{SalesforceGrant, SalesforceSettings};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Key of the cached session in the credentials bucket.
pub const SESSION_KEY: &str = "salesforce_session";
/// Key of the newest refresh token when the org rotates them.
pub const ROTATED_REFRESH_TOKEN_KEY: &str = "salesforce_refresh_token";

#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    /// Where API calls go; already includes the scheme.
    pub instance_url: String,
    /// The [`login_identity`] it was obtained with: a cached session is used
    /// only while the settings still name the same login.
    #[serde(default)]
    pub login: String,
    /// The org's id (from the identity URL), or the instance URL when the
    /// token response named none: what "the Salesforce side" of the
    /// connector's record states refers to.
    #[serde(default)]
    pub org: String,
}

/// What identifies a login: the token endpoint, the grant, the client and
/// the user (JWT bearer: the username; refresh token: the configured token).
/// A session or a rotated refresh token obtained under other settings
/// belongs to another org or user and is never reused.
pub fn login_identity(settings: &SalesforceSettings) -> String {
    let (grant, client_id, user) = match &settings.grant {
        SalesforceGrant::ClientCredentials { client_id, .. } => ("client_credentials", client_id, String::new()),
        SalesforceGrant::RefreshToken { client_id, refresh_token, .. } => {
            ("refresh_token", client_id, hex::encode(Sha256::digest(refresh_token.as_bytes())))
        }
        SalesforceGrant::JwtBearer { client_id, username, .. } => ("jwt_bearer", client_id, username.clone()),
    };
    let mut h = Sha256::new();
    for part in [settings.login_url.as_str(), grant, client_id, &user] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The org id in an identity URL (`https://login.salesforce.com/id/<org>/<user>`).
fn org_from_identity_url(id: &str) -> Option<String> {
    let mut parts = id.trim_end_matches('/').rsplit('/');
    let _user = parts.next()?;
    let org = parts.next()?;
    (parts.next() == Some("id") && !org.is_empty()).then(|| org.to_string())
}

/// A rotated refresh token as stored: bound to the login it belongs to.
#[derive(Serialize, Deserialize)]
pub struct RotatedToken {
    pub login: String,
    pub token: String,
}

impl RotatedToken {
    /// The stored token if it belongs to `login`. A bare token (stored before
    /// tokens were bound) is taken as the current login's.
    pub fn for_login(stored: &[u8], login: &str) -> Option<String> {
        match serde_json::from_slice::<RotatedToken>(stored) {
            Ok(t) => (t.login == login).then_some(t.token),
            Err(_) => String::from_utf8(stored.to_vec()).ok().filter(|t| !t.is_empty() && !t.starts_with('{')),
        }
    }
}

// The token never reaches Debug output.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("instance_url", &self.instance_url).finish_non_exhaustive()
    }
}

pub fn token_url(settings: &SalesforceSettings) -> String {
    format!("{}/services/oauth2/token", settings.login_url)
}

#[derive(Serialize)]
struct BearerClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// The JWT bearer assertion's audience for a login URL. Salesforce takes
/// only its login hosts (or an Experience Cloud site) as `aud`, whichever
/// host the assertion is posted to: a My Domain URL names
/// login.salesforce.com, a sandbox's (`--` in its name, or under
/// `sandbox.` / `scratch.my.salesforce.com`) test.salesforce.com. Any other
/// host is taken as the audience itself.
pub fn bearer_audience(login_url: &str) -> String {
    let Some(host) = url::Url::parse(login_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)) else {
        return login_url.to_string();
    };
    let Some(name) = host.strip_suffix(".salesforce.com") else { return login_url.to_string() };
    if name == "login" || name == "test" {
        return login_url.to_string();
    }
    let sandbox = name.split('.').next().is_some_and(|first| first.contains("--"))
        || name.ends_with(".sandbox.my")
        || name.ends_with(".scratch.my");
    if sandbox { "https://test.salesforce.com" } else { "https://login.salesforce.com" }.to_string()
}

/// Whether `pem` is an RSA private key the JWT bearer grant can sign with
/// (checked when the secret is stored).
pub fn readable_private_key(pem: &str) -> bool {
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).is_ok()
}

/// The JWT bearer assertion: RS256 (the only algorithm Salesforce takes),
/// audience [`bearer_audience`] unless set, three minutes to live.
pub fn bearer_assertion(settings: &SalesforceSettings, now: i64) -> Result<String> {
    let SalesforceGrant::JwtBearer { client_id, username, private_key_pem, audience } = &settings.grant else {
        return Err(ConnectorError::Config("the JWT bearer assertion needs salesforce_grant = jwt_bearer".into()));
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| {
        ConnectorError::Config(format!("secret `salesforce_private_key` is not an RSA private key in PEM form ({e})"))
    })?;
    let aud = audience.clone().unwrap_or_else(|| bearer_audience(&settings.login_url));
    let claims = BearerClaims { iss: client_id, sub: username, aud: &aud, exp: now + 180 };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)
        .map_err(|e| ConnectorError::Config(format!("could not sign the Salesforce JWT bearer assertion: {e}")))
}

/// The token request for the configured grant. `rotated` is a refresh token
/// the org issued in place of the configured one.
pub fn token_request(settings: &SalesforceSettings, rotated: Option<&str>, now: i64) -> Result<HttpRequest> {
    let url = token_url(settings);
    Ok(match &settings.grant {
        SalesforceGrant::ClientCredentials { client_id, client_secret } => HttpRequest::new(Method::Post, url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ]),
        SalesforceGrant::RefreshToken { client_id, client_secret, refresh_token } => {
            let token = rotated.unwrap_or(refresh_token);
            let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", client_id)];
            if let Some(secret) = client_secret {
                pairs.push(("client_secret", secret));
            }
            HttpRequest::new(Method::Post, url).form(&pairs)
        }
        SalesforceGrant::JwtBearer { .. } => {
            let assertion = bearer_assertion(settings, now)?;
            HttpRequest::new(Method::Post, url)
                .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])
        }
    }
    .header("Accept", "application/json"))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    /// The identity URL, naming org and user.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A session, plus the new refresh token when the org rotated it.
pub fn parse_token_response(
    response: &HttpResponse,
    settings: &SalesforceSettings,
) -> Result<(Session, Option<String>)> {
    let url = token_url(settings);
    if response.is_success() {
        let body: TokenResponse = serde_json::from_slice(&response.body)
            .map_err(|e| ConnectorError::Salesforce(format!("{url} answered 200 with an unexpected body ({e})")))?;
        let instance_url = body.instance_url.trim_end_matches('/').to_string();
        let org = body.id.as_deref().and_then(org_from_identity_url).unwrap_or_else(|| instance_url.clone());
        let session = Session { access_token: body.access_token, instance_url, login: login_identity(settings), org };
        return Ok((session, body.refresh_token));
    }
    let Ok(err) = serde_json::from_slice::<OAuthError>(&response.body) else {
        // Not there at all: the URL setting, not the credentials, is wrong.
        let advice = match response.status {
            404 | 405 => {
                ". No OAuth 2.0 token endpoint is there: check `salesforce_login_url`, the org's My Domain URL \
                 (https://<domain>.my.salesforce.com) or https://login.salesforce.com (test.salesforce.com for a \
                 sandbox), without a path"
            }
            _ => "",
        };
        return Err(ConnectorError::Auth(format!(
            "{url} answered HTTP {}: {}{advice}",
            response.status,
            response.snippet()
        )));
    };
    let description = err.error_description.unwrap_or_default();
    let advice = match (err.error.as_str(), &settings.grant) {
        ("invalid_client_id" | "invalid_client", _) => {
            "check `salesforce_client_id` and `salesforce_client_secret` against the connected app"
        }
        ("invalid_grant", SalesforceGrant::ClientCredentials { .. }) => {
            "enable the Client Credentials Flow on the connected app, pick its Run As user, and make sure \
             `salesforce_login_url` is the org's My Domain URL"
        }
        ("invalid_grant", SalesforceGrant::RefreshToken { .. }) => {
            "the refresh token was revoked or expired: authorize the connected app again and store the new \
             `salesforce_refresh_token`"
        }
        ("invalid_grant", SalesforceGrant::JwtBearer { .. }) => {
            "check that the certificate of `salesforce_private_key` is uploaded to the connected app, that \
             `salesforce_username` exists and is pre-authorized for the app (Admin approved users are \
             pre-authorized), and that the assertion's audience is the one the org takes: login.salesforce.com \
             for production, test.salesforce.com for a sandbox (derived from `salesforce_login_url`; set \
             `salesforce_jwt_audience` to name it, e.g. for an Experience Cloud site)"
        }
        ("unsupported_grant_type", _) => "the connected app does not allow this grant",
        _ => "see Setup > Login History in Salesforce for the reason",
    };
    Err(ConnectorError::Auth(format!(
        "Salesforce token endpoint {url} answered HTTP {} {} ({description}): {advice}",
        response.status, err.error
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(grant: SalesforceGrant) -> SalesforceSettings {
        SalesforceSettings {
            login_url: "https://acme.my.salesforce.com".into(),
            grant,
            api_version: "66.0".into(),
            max_api_share: 0.9,
            describe_ttl_secs: 3600,
            bulk_threshold: 10_000,
            bulk_job_records: 50_000,
            bulk_max_upload_bytes: 100 << 20,
            composite_max_bytes: usize::MAX,
            bulk_poll_timeout_secs: 3600,
        }
    }

    #[test]
    fn refresh_grant_prefers_the_rotated_token() {
        let s = settings(SalesforceGrant::RefreshToken {
            client_id: "id".into(),
            client_secret: None,
            refresh_token: "old".into(),
        });
        let body = String::from_utf8(token_request(&s, Some("new+1"), 0).unwrap().body.to_vec()).unwrap();
        assert_eq!(body, "grant_type=refresh_token&refresh_token=new%2B1&client_id=id");
    }

    #[test]
    fn a_login_is_identified_by_url_grant_client_and_user() {
        let cc = |url: &str, id: &str| {
            let mut s =
                settings(SalesforceGrant::ClientCredentials { client_id: id.into(), client_secret: "x".into() });
            s.login_url = url.into();
            login_identity(&s)
        };
        let a = cc("https://a.my.salesforce.com", "id");
        assert_eq!(a, cc("https://a.my.salesforce.com", "id"));
        assert_ne!(a, cc("https://b.my.salesforce.com", "id"), "another org");
        assert_ne!(a, cc("https://a.my.salesforce.com", "other"), "another connected app");
        let jwt = |user: &str| {
            login_identity(&settings(SalesforceGrant::JwtBearer {
                client_id: "id".into(),
                username: user.into(),
                private_key_pem: String::new(),
                audience: None,
            }))
        };
        assert_ne!(jwt("a@x"), jwt("b@x"), "another user");
        assert_ne!(jwt("a@x"), cc("https://acme.my.salesforce.com", "id"), "another grant");
        assert_eq!(
            org_from_identity_url("https://login.salesforce.com/id/00D8d000000SIMxEAA/0058d000000SIMxAAA"),
            Some("00D8d000000SIMxEAA".into())
        );
        assert_eq!(org_from_identity_url("https://x/elsewhere"), None);
        let bound = serde_json::to_vec(&RotatedToken { login: "L".into(), token: "t".into() }).unwrap();
        assert_eq!(RotatedToken::for_login(&bound, "L").as_deref(), Some("t"));
        assert_eq!(RotatedToken::for_login(&bound, "other"), None);
        assert_eq!(RotatedToken::for_login(b"bare-token", "L").as_deref(), Some("bare-token"));
    }

    #[test]
    fn the_bearer_audience_is_a_login_host_salesforce_takes() {
        for (login_url, audience) in [
            ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
            ("https://ACME.my.salesforce.com/", "https://login.salesforce.com"),
            ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
            ("https://acme--uat.my.salesforce.com", "https://test.salesforce.com"),
            ("https://fun-dream-1234.scratch.my.salesforce.com", "https://test.salesforce.com"),
            ("https://login.salesforce.com", "https://login.salesforce.com"),
            ("https://test.salesforce.com", "https://test.salesforce.com"),
            // An Experience Cloud site, or a simulator: the URL itself.
            ("https://acme.my.site.com/partners", "https://acme.my.site.com/partners"),
            ("http://127.0.0.1:8443", "http://127.0.0.1:8443"),
        ] {
            assert_eq!(bearer_audience(login_url), audience, "{login_url}");
        }
    }

    #[test]
    fn token_response_parses_and_errors_explain() {
        let s = settings(SalesforceGrant::ClientCredentials { client_id: "id".into(), client_secret: "s".into() });
        let ok = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"access_token":"00D!x","instance_url":"https://acme.my.salesforce.com/","id":"i","token_type":"Bearer","issued_at":"1","signature":"s"}"#.to_vec(),
            pieces: vec![],
        };
        let (session, rotated) = parse_token_response(&ok, &s).unwrap();
        assert_eq!(session.instance_url, "https://acme.my.salesforce.com");
        assert_eq!(session.org, "https://acme.my.salesforce.com", "no identity URL: the instance stands for the org");
        assert!(rotated.is_none());
        let bad = HttpResponse {
            status: 400,
            headers: vec![],
            body: br#"{"error":"invalid_client","error_description":"invalid client credentials"}"#.to_vec(),
            pieces: vec![],
        };
        let msg = parse_token_response(&bad, &s).unwrap_err().to_string();
        assert!(msg.contains("salesforce_client_secret") && !msg.contains("\"s\""), "{msg}");
        let nothing = HttpResponse { status: 404, headers: vec![], body: vec![], pieces: vec![] };
        let msg = parse_token_response(&nothing, &s).unwrap_err().to_string();
        assert!(msg.contains("HTTP 404") && msg.contains("`salesforce_login_url`"), "{msg}");
    }
}
