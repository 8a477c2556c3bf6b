//! OAuth 2.0 client credentials (machine to machine): a JWT signed with the
//! key whose certificate is mapped in NetSuite is exchanged for a 60-minute
//! access token. There is no refresh token; renewing means signing again.

use crate::http::{HttpRequest, HttpResponse, Method};
use crate::model::{ConnectorError, Result};
use crate::settings::{M2mSettings, SigningAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// The assertion only has to outlive the token request.
const ASSERTION_LIFETIME_SECS: i64 = 300;
/// Renew this long before the token's end so no request carries a dying token.
pub const RENEWAL_MARGIN_SECS: i64 = 300;

pub fn token_url(base_url: &str) -> String {
    format!("{base_url}/services/rest/auth/oauth2/v1/token")
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    /// Oracle's own sample sends the scope as an array.
    scope: [&'a str; 1],
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// The signed client assertion. The key is used here and nowhere else; it
/// never appears in an error message.
pub fn client_assertion(settings: &M2mSettings, base_url: &str, now: i64) -> Result<String> {
    let url = token_url(base_url);
    let claims = Claims {
        iss: &settings.client_id,
        scope: ["rest_webservices"],
        aud: &url,
        iat: now,
        exp: now + ASSERTION_LIFETIME_SECS,
    };
    let (alg, key) = match settings.algorithm {
        SigningAlgorithm::Ps256 => (Algorithm::PS256, EncodingKey::from_rsa_pem(settings.private_key_pem.as_bytes())),
        SigningAlgorithm::Es256 => (Algorithm::ES256, EncodingKey::from_ec_pem(settings.private_key_pem.as_bytes())),
    };
    let key = key.map_err(|e| {
        ConnectorError::Config(format!(
            "secret `netsuite_private_key` is not a usable {alg:?} private key in PEM form ({e}). PS256 needs an \
             RSA key of 3072 or 4096 bits, ES256 a P-256 key"
        ))
    })?;
    let mut header = Header::new(alg);
    header.typ = Some("JWT".into());
    header.kid = Some(settings.certificate_id.clone());
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| ConnectorError::Config(format!("could not sign the NetSuite client assertion: {e}")))
}

pub fn token_request(base_url: &str, assertion: &str) -> HttpRequest {
    HttpRequest::new(Method::Post, token_url(base_url)).form(&[
        ("grant_type", "client_credentials"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion),
    ])
}

/// Key of the M2M access token kept between runs in the credentials bucket.
pub const TOKEN_KEY: &str = "netsuite_token";

/// A NetSuite access token and when it stops working.
#[derive(Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub token: String,
    pub expires_at: i64,
}

/// An access token as kept between runs, with the login it was issued to:
/// a run under other settings (another account, integration or
/// certificate) never uses it.
#[derive(Serialize, Deserialize)]
pub struct CachedToken {
    pub login: String,
    #[serde(flatten)]
    pub token: AccessToken,
}

/// Who a token was issued to: the account's endpoint, the integration's
/// client id and the certificate that signed for it.
pub fn login_identity(settings: &M2mSettings, base_url: &str) -> String {
    format!("{base_url} {} {}", settings.client_id, settings.certificate_id)
}

// The token never reaches Debug output.
impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl AccessToken {
    pub fn needs_renewal(&self, now: i64) -> bool {
        now + RENEWAL_MARGIN_SECS >= self.expires_at
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

pub fn parse_token_response(
    response: &HttpResponse,
    now: i64,
    settings: &M2mSettings,
    base_url: &str,
) -> Result<AccessToken> {
    if response.is_success() {
        let body: TokenResponse = serde_json::from_slice(&response.body).map_err(|e| {
            ConnectorError::NetSuite(format!("the token endpoint answered 200 with an unexpected body ({e})"))
        })?;
        let expires_in = match body.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3600);
        return Ok(AccessToken { token: body.access_token, expires_at: now + expires_in });
    }
    let token_url = token_url(base_url);
    let Ok(err) = serde_json::from_slice::<OAuthError>(&response.body) else {
        return Err(ConnectorError::Auth(format!(
            "NetSuite token endpoint {token_url} answered HTTP {}: {}",
            response.status,
            response.snippet()
        )));
    };
    let description = err.error_description.map(|d| format!(" ({d})")).unwrap_or_default();
    let advice = match err.error.as_str() {
        "invalid_grant" | "invalid_client" => format!(
            "NetSuite did not accept the client assertion. Check that `netsuite_private_key` is the private key \
             of the certificate uploaded for certificate id `{}` (a JWT signed with any other key is rejected), \
             that `netsuite_client_id` is the integration record's client id, that the M2M mapping still exists \
             (a sandbox refresh removes it) and that the certificate has not expired or been revoked",
            settings.certificate_id
        ),
        "unauthorized_client" => "The integration record does not allow the client credentials (M2M) grant: \
             tick it under Setup > Integration > Manage Integrations"
            .to_string(),
        _ => "See Setup > Users/Roles > View Login Audit Trail in NetSuite for the reason".to_string(),
    };
    Err(ConnectorError::Auth(format!(
        "NetSuite token endpoint {token_url} answered HTTP {} {}{description}. {advice}.",
        response.status, err.error
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://123.suitetalk.api.netsuite.com";

    fn settings(algorithm: SigningAlgorithm, pem: &str) -> M2mSettings {
        M2mSettings {
            client_id: "client".into(),
            certificate_id: "cert-1".into(),
            private_key_pem: pem.into(),
            algorithm,
        }
    }

    #[test]
    fn a_bad_key_is_a_config_error_that_does_not_echo_the_key() {
        let err =
            client_assertion(&settings(SigningAlgorithm::Ps256, "not a key SECRET-MATERIAL"), BASE, 0).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`netsuite_private_key`"), "{msg}");
        assert!(!msg.contains("SECRET-MATERIAL"), "{msg}");
    }

    #[test]
    fn token_renews_inside_the_margin() {
        let t = AccessToken { token: "t".into(), expires_at: 10_000 };
        assert!(!t.needs_renewal(10_000 - RENEWAL_MARGIN_SECS - 1));
        assert!(t.needs_renewal(10_000 - RENEWAL_MARGIN_SECS));
    }

    #[test]
    fn invalid_grant_names_the_certificate() {
        let s = settings(SigningAlgorithm::Ps256, "");
        let response = HttpResponse {
            status: 400,
            headers: vec![],
            body: br#"{"error":"invalid_grant"}"#.to_vec(),
            pieces: vec![],
        };
        let msg = parse_token_response(&response, 0, &s, BASE).unwrap_err().to_string();
        assert!(msg.contains("invalid_grant") && msg.contains("cert-1") && msg.contains("private key"), "{msg}");
    }

    #[test]
    fn token_lifetime_comes_from_expires_in() {
        let s = settings(SigningAlgorithm::Ps256, "");
        let response = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"access_token":"abc","expires_in":"3600","token_type":"bearer"}"#.to_vec(),
            pieces: vec![],
        };
        let t = parse_token_response(&response, 100, &s, BASE).unwrap();
        assert_eq!((t.token.as_str(), t.expires_at), ("abc", 3700));
    }
}
