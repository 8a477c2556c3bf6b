//! POST /services/rest/auth/oauth2/v1/token: the client credentials (M2M)
//! grant. The client assertion's signature is verified against the uploaded
//! certificate's key; `kid`, `iss`, `aud`, `scope` and lifetime are checked.

use super::NetSuiteSim;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    exp: i64,
    #[serde(default)]
    scope: Option<serde_json::Value>,
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

    fn verify_assertion(&self, assertion: &str) -> Result<(), Refusal> {
        let cfg = &self.inner.config;
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|e| self.refuse(format!("client assertion is not a JWT: {e}"), "invalid_request"))?;
        let family_key = match header.alg {
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => {
                DecodingKey::from_rsa_pem(cfg.public_key_pem.as_bytes())
            }
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(cfg.public_key_pem.as_bytes()),
            other => {
                return Err(self.refuse(
                    format!("signature algorithm {other:?} is not accepted (use PS256/384/512 or ES256/384/512)"),
                    "invalid_request",
                ));
            }
        };
        if header.kid.as_deref() != Some(cfg.certificate_id.as_str()) {
            return Err(self.refuse(
                format!("kid {:?} is not the certificate id of any M2M mapping", header.kid),
                "invalid_grant",
            ));
        }
        let key = family_key.map_err(|_| {
            self.refuse("the mapped certificate's key does not match the JWT algorithm family".into(), "invalid_grant")
        })?;
        let token_url = format!("{}/services/rest/auth/oauth2/v1/token", self.base_url());
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[token_url.as_str()]);
        validation.set_issuer(&[cfg.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        // Lifetimes are checked below against simulated time.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &validation)
            .map_err(|e| self.refuse(format!("client assertion rejected: {e}"), "invalid_grant"))?
            .claims;
        let now = self.inner.clock.now_secs();
        if claims.exp - claims.iat > 3600 {
            return Err(self.refuse("client assertion lives longer than 60 minutes".into(), "invalid_grant"));
        }
        if claims.exp <= now || claims.iat > now + 60 {
            return Err(self.refuse("client assertion is expired or issued in the future".into(), "invalid_grant"));
        }
        if !scopes(&claims.scope).iter().any(|s| s == "rest_webservices") {
            return Err(
                self.refuse("client assertion does not ask for the rest_webservices scope".into(), "invalid_scope")
            );
        }
        Ok(())
    }
}

pub async fn token(State(sim): State<NetSuiteSim>, Form(form): Form<HashMap<String, String>>) -> Response {
    sim.inner.requests.fetch_add(1, Ordering::SeqCst);
    sim.inner.token_requests.fetch_add(1, Ordering::SeqCst);
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
    if let Err(refusal) = sim.verify_assertion(assertion) {
        sim.inner.login_audit.lock().unwrap().push(refusal.reason);
        return oauth_error(StatusCode::BAD_REQUEST, refusal.error);
    }
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let access_token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let lifetime = sim.inner.config.token_lifetime.as_secs() as i64;
    sim.inner.tokens.lock().unwrap().insert(access_token.clone(), sim.inner.clock.now_secs() + lifetime);
    let body = json!({ "access_token": access_token, "expires_in": lifetime.to_string(), "token_type": "bearer" });
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}
