//! POST /services/rest/auth/oauth2/v1/token: the client credentials (M2M)
//! grant. The assertion's `kid` picks one of the account's mapped
//! certificates (unknown, revoked or expired: refused), whose key verifies
//! the signature; `iss`, `aud`, `scope` and lifetime are checked.

use super::certificates::{JwsAlgorithm, Unusable};
use super::{IssuedToken, NetSuiteSim};
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The scopes an assertion may ask for (reference 4.1); `mcp` only alone.
const SCOPES: [&str; 4] = ["restlets", "rest_webservices", "suite_analytics", "mcp"];

/// The JOSE header as sent: `alg` is read as text, since jsonwebtoken has no
/// name for ES512.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// The claims NetSuite requires (`iss`, `aud`, `iat`, `exp`; a missing one is
/// refused) and the scope.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: serde_json::Value,
    iat: i64,
    exp: i64,
    #[serde(default)]
    scope: Option<serde_json::Value>,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, String> {
    let raw = URL_SAFE_NO_PAD.decode(part).map_err(|e| format!("not base64url ({e})"))?;
    serde_json::from_slice(&raw).map_err(|e| e.to_string())
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    let mut resp =
        (status, [("content-type", "application/json")], json!({ "error": error }).to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert("www-authenticate", "Basic realm=\"NetSuite\"".parse().expect("static header"));
    }
    resp
}

fn scopes(value: &Option<serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(s)) => {
            s.split([' ', ',']).filter(|p| !p.is_empty()).map(str::to_string).collect()
        }
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

/// Why an assertion was refused: the OAuth error code the client sees, and
/// the reason only the Login Audit Trail shows (as in NetSuite).
struct Refusal {
    error: &'static str,
    reason: String,
}

impl NetSuiteSim {
    fn refuse(&self, reason: String, error: &'static str) -> Refusal {
        Refusal { error, reason }
    }

    /// Checks a client assertion; returns the certificate id it was signed
    /// under and the scopes it asked for.
    fn verify_assertion(&self, assertion: &str) -> Result<(String, Vec<String>), Refusal> {
        let cfg = &self.inner.config;
        let not_a_jwt = |why: &str| self.refuse(format!("client assertion is not a JWT: {why}"), "invalid_request");
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header_b64, claims_b64, signature] = parts[..] else {
            return Err(not_a_jwt("it does not have three dot-separated parts"));
        };
        let header: JoseHeader = decode_part(header_b64).map_err(|e| not_a_jwt(&format!("header: {e}")))?;
        let Some(alg) = JwsAlgorithm::parse(&header.alg) else {
            return Err(self.refuse(
                format!(
                    "signature algorithm {:?} is not accepted (use PS256, PS384, PS512, ES256, ES384 or ES512)",
                    header.alg
                ),
                "invalid_request",
            ));
        };
        if header.typ.as_deref() != Some("JWT") {
            return Err(self.refuse(
                format!("client assertion header typ is {:?}; NetSuite requires \"JWT\"", header.typ),
                "invalid_request",
            ));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let now = self.inner.clock.now_secs();
        let certificates = self.inner.certificates.lock().unwrap_or_else(|p| p.into_inner());
        let (key_type, key) = certificates.usable(&kid, now).map_err(|why| {
            let reason = match why {
                Unusable::Unknown => format!("kid {:?} is not the certificate id of any M2M mapping", header.kid),
                Unusable::Revoked => {
                    format!("certificate {kid:?} was revoked; a revoked certificate needs a new M2M mapping")
                }
                Unusable::Expired(at) => format!(
                    "certificate {kid:?} expired at {at} (Unix seconds); an expired certificate needs a new M2M mapping"
                ),
            };
            self.refuse(reason, "invalid_grant")
        })?;
        if !key_type.signs(alg) {
            return Err(self.refuse(
                format!(
                    "certificate {kid:?} holds a {key_type:?} key, which verifies {} JWTs, not {alg:?}",
                    key_type.algorithms()
                ),
                "invalid_grant",
            ));
        }
        let key = key.clone();
        drop(certificates);
        let signed = &assertion[..header_b64.len() + 1 + claims_b64.len()];
        if !key.verifies(alg, signed.as_bytes(), signature) {
            return Err(self.refuse(
                format!("client assertion rejected: the signature does not verify with certificate {kid:?}"),
                "invalid_grant",
            ));
        }
        let claims: Claims = decode_part(claims_b64)
            .map_err(|e| self.refuse(format!("client assertion rejected: claims: {e}"), "invalid_grant"))?;
        let token_url = format!("{}/services/rest/auth/oauth2/v1/token", self.base_url());
        if claims.iss != cfg.client_id {
            return Err(self.refuse(
                format!("client assertion rejected: iss {:?} is not the integration's client id", claims.iss),
                "invalid_grant",
            ));
        }
        let audiences = match &claims.aud {
            serde_json::Value::String(one) => vec![one.as_str()],
            serde_json::Value::Array(many) => many.iter().filter_map(|v| v.as_str()).collect(),
            _ => vec![],
        };
        if !audiences.contains(&token_url.as_str()) {
            return Err(self.refuse(
                format!("client assertion rejected: aud {} is not the token endpoint {token_url}", claims.aud),
                "invalid_grant",
            ));
        }
        // `exp` must be less than 60 minutes after `iat`.
        if claims.exp.saturating_sub(claims.iat) >= 3600 {
            return Err(self.refuse("client assertion lives 60 minutes or longer".into(), "invalid_grant"));
        }
        if claims.exp <= now || claims.iat > now + 60 {
            return Err(self.refuse("client assertion is expired or issued in the future".into(), "invalid_grant"));
        }
        let mut asked = scopes(&claims.scope);
        let mut seen = std::collections::HashSet::new();
        asked.retain(|s| seen.insert(s.clone()));
        if asked.is_empty() {
            return Err(self.refuse("client assertion asks for no scope".into(), "invalid_scope"));
        }
        if let Some(unknown) = asked.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(self.refuse(
                format!("client assertion asks for scope {unknown:?}; valid scopes are {}", SCOPES.join(", ")),
                "invalid_scope",
            ));
        }
        if asked.len() > 1 && asked.iter().any(|s| s == "mcp") {
            return Err(self.refuse("the mcp scope cannot be combined with other scopes".into(), "invalid_scope"));
        }
        Ok((kid, asked))
    }
}

pub async fn token(
    State(sim): State<NetSuiteSim>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    sim.inner.requests.fetch_add(1, Ordering::SeqCst);
    sim.inner.token_requests.fetch_add(1, Ordering::SeqCst);
    // A body that is not a form is an OAuth invalid_request, as any other malformed request.
    let Ok(Form(form)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
    }
    if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let Some(assertion) = form.get("client_assertion") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let (certificate_id, scopes) = match sim.verify_assertion(assertion) {
        Ok(granted) => granted,
        Err(refusal) => {
            sim.inner.login_audit.lock().unwrap().push(refusal.reason);
            return oauth_error(StatusCode::BAD_REQUEST, refusal.error);
        }
    };
    // A JWT, as NetSuite's access tokens are (clients may read its `exp`),
    // signed with a key only this process knows; the table below is what
    // decides whether it is good.
    let mut raw = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut raw);
    let lifetime = sim.inner.config.token_lifetime.as_secs() as i64;
    let now = sim.inner.clock.now_secs();
    let claims = json!({
        "iss": "https://system.netsuite.com",
        "sub": sim.inner.config.client_id,
        "aud": sim.inner.config.account_id,
        "scope": scopes,
        "iat": now,
        "exp": now + lifetime,
        "jti": raw.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    });
    let key = jsonwebtoken::EncodingKey::from_secret(token_signing_key());
    let Ok(access_token) = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let issued = IssuedToken { expires_at: now + lifetime, certificate_id, scopes };
    sim.inner.tokens.lock().unwrap().insert(access_token.clone(), issued);
    let body = json!({ "access_token": access_token, "expires_in": lifetime.to_string(), "token_type": "bearer" });
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

/// The key this process signs its access tokens with (random per process).
fn token_signing_key() -> &'static [u8] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        key
    })
}
