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
    /// One scope as a plain string: Oracle's text says scopes are
    /// "separated by a comma" (a string), as peers send them; its sample
    /// sends an array. One value reads the same either way.
    scope: &'a str,
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
        scope: "rest_webservices",
        aud: &url,
        iat: now,
        exp: now + ASSERTION_LIFETIME_SECS,
    };
    let key = SigningKey::read(settings.algorithm, &settings.private_key_pem)?;
    key.sign(settings.algorithm, &settings.certificate_id, &claims)
}

/// The private key as the chosen algorithm signs with it.
enum SigningKey {
    Jwt(Algorithm, EncodingKey),
    /// jsonwebtoken has no ES512.
    P521(Box<p521::ecdsa::SigningKey>),
}

impl SigningKey {
    fn read(alg: SigningAlgorithm, pem: &str) -> Result<SigningKey> {
        if let Some(problem) = rsa_size_problem(pem) {
            return Err(ConnectorError::Config(problem));
        }
        let rsa = |a| EncodingKey::from_rsa_pem(pem.as_bytes()).ok().map(|k| SigningKey::Jwt(a, k));
        let ec = |a, der: Option<Vec<u8>>| der.map(|der| SigningKey::Jwt(a, EncodingKey::from_ec_der(&der)));
        let key = match alg {
            SigningAlgorithm::Ps256 => rsa(Algorithm::PS256),
            SigningAlgorithm::Ps384 => rsa(Algorithm::PS384),
            SigningAlgorithm::Ps512 => rsa(Algorithm::PS512),
            SigningAlgorithm::Es256 => ec(Algorithm::ES256, p256_pkcs8(pem)),
            SigningAlgorithm::Es384 => ec(Algorithm::ES384, p384_pkcs8(pem)),
            SigningAlgorithm::Es512 => p521_key(pem).map(|k| SigningKey::P521(Box::new(k))),
        };
        key.ok_or_else(|| ConnectorError::Config(unusable_key(alg, pem)))
    }

    fn sign(&self, alg: SigningAlgorithm, kid: &str, claims: &Claims) -> Result<String> {
        let failed = |e: &dyn std::fmt::Display| {
            ConnectorError::Config(format!("could not sign the NetSuite client assertion with {}: {e}", alg.name()))
        };
        match self {
            SigningKey::Jwt(alg, key) => {
                let mut header = Header::new(*alg);
                header.typ = Some("JWT".into());
                header.kid = Some(kid.to_string());
                jsonwebtoken::encode(&header, claims, key).map_err(|e| failed(&e))
            }
            SigningKey::P521(key) => {
                use base64::Engine;
                use base64::engine::general_purpose::URL_SAFE_NO_PAD;
                use p521::ecdsa::signature::RandomizedSigner;
                let header = serde_json::json!({ "typ": "JWT", "alg": "ES512", "kid": kid });
                let claims = serde_json::to_vec(claims).map_err(|e| failed(&e))?;
                let input =
                    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims));
                // JWS (RFC 7518 3.4): R and S, 66 bytes each, not DER.
                let mut random = HostRandom::default();
                let signed: std::result::Result<p521::ecdsa::Signature, _> =
                    key.try_sign_with_rng(&mut random, input.as_bytes());
                // A nonce made of the zeros put in for failed randomness signs nothing that is kept.
                if let Some(e) = random.failed {
                    return Err(failed(&format!("the host gave no randomness for the nonce ({e})")));
                }
                let signature = signed.map_err(|e| failed(&e))?;
                Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes())))
            }
        }
    }
}

/// p521 0.13 draws its nonce from a rand_core RNG; this one asks the host
/// (getrandom, WASI's random interface) and remembers a failure instead of
/// panicking, so the signature made without randomness is thrown away.
#[derive(Default)]
struct HostRandom {
    failed: Option<getrandom::Error>,
}

impl rand_core::RngCore for HostRandom {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = getrandom::fill(dest) {
            dest.fill(0);
            self.failed = Some(e);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for HostRandom {}

// EC keys come as PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl req -newkey ec`
// writes) or SEC1 (`BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey`
// writes); jsonwebtoken reads only the first, so both are read here. PKCS#8
// names its curve and is checked against it; SEC1's curve is not checked by
// the reader, which pads a shorter key, so a SEC1 key that reads on a
// smaller curve is that curve's (SEC1 keys have their curve's full length).
fn p256_pkcs8(pem: &str) -> Option<Vec<u8>> {
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let key = p256::SecretKey::from_pkcs8_pem(pem).or_else(|_| p256::SecretKey::from_sec1_pem(pem)).ok()?;
    Some(key.to_pkcs8_der().ok()?.as_bytes().to_vec())
}

fn p384_pkcs8(pem: &str) -> Option<Vec<u8>> {
    use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let sec1 = || p384::SecretKey::from_sec1_pem(pem).ok().filter(|_| p256::SecretKey::from_sec1_pem(pem).is_err());
    let key = p384::SecretKey::from_pkcs8_pem(pem).ok().or_else(sec1)?;
    Some(key.to_pkcs8_der().ok()?.as_bytes().to_vec())
}

/// Why an RSA key NetSuite's M2M setup refuses (with a bare invalid_grant)
/// cannot be used: it takes 3072 or 4096 bits. `None` for other keys.
pub fn rsa_size_problem(pem: &str) -> Option<String> {
    let bits = rsa_bits(pem).filter(|b| ![3072, 4096].contains(b))?;
    Some(format!(
        "secret `netsuite_private_key` is a {bits}-bit RSA key; NetSuite's M2M setup takes RSA keys of 3072 \
         or 4096 bits (or EC keys), and refuses others with a bare invalid_grant: make a new key and \
         certificate (e.g. `openssl req -x509 -newkey rsa:3072 -sha256 -days 730 -nodes`), upload the \
         certificate to the integration's M2M setup and store the key"
    ))
}

/// The size of an RSA private key in PEM (PKCS#8 or PKCS#1); None for
/// anything else.
fn rsa_bits(pem: &str) -> Option<usize> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem)).ok()?;
    Some(key.size() * 8)
}

fn p521_key(pem: &str) -> Option<p521::ecdsa::SigningKey> {
    use p521::pkcs8::DecodePrivateKey;
    let smaller = || p256::SecretKey::from_sec1_pem(pem).is_ok() || p384::SecretKey::from_sec1_pem(pem).is_ok();
    let sec1 = || p521::SecretKey::from_sec1_pem(pem).ok().filter(|_| !smaller());
    let key = p521::SecretKey::from_pkcs8_pem(pem).ok().or_else(sec1)?;
    p521::ecdsa::SigningKey::from_bytes(&key.to_bytes()).ok()
}

/// Whether `pem` is a private key the connector can sign NetSuite's client
/// assertion with (RSA, or EC on P-256, P-384 or P-521), whatever the
/// algorithm set: checked when the secret is stored, long before the token
/// it signs is renewed.
pub fn readable_private_key(pem: &str) -> bool {
    EncodingKey::from_rsa_pem(pem.as_bytes()).is_ok()
        || p256_pkcs8(pem).is_some()
        || p384_pkcs8(pem).is_some()
        || p521_key(pem).is_some()
}

/// Why the key cannot sign with the chosen algorithm, and what to set: the
/// algorithm has to be the one of the certificate uploaded to NetSuite. The
/// key itself is never quoted.
fn unusable_key(alg: SigningAlgorithm, pem: &str) -> String {
    let held = if EncodingKey::from_rsa_pem(pem.as_bytes()).is_ok() {
        Some(("an RSA key", "PS256, PS384 or PS512"))
    } else if p256_pkcs8(pem).is_some() {
        Some(("an EC P-256 key", "ES256"))
    } else if p384_pkcs8(pem).is_some() {
        Some(("an EC P-384 key", "ES384"))
    } else if p521_key(pem).is_some() {
        Some(("an EC P-521 key", "ES512"))
    } else {
        None
    };
    match held {
        Some((kind, fits)) => format!(
            "secret `netsuite_private_key` holds {kind}, which signs {fits}, but setting `netsuite_signing_algorithm` \
             is {}: set it to {fits} (the algorithm of the certificate uploaded to NetSuite)",
            alg.name()
        ),
        None => "secret `netsuite_private_key` is not a private key in PEM form the connector can read: use the \
             key whose certificate NetSuite holds, as PKCS#8 (`-----BEGIN PRIVATE KEY-----`), or PKCS#1 for RSA, or \
             SEC1 for EC. NetSuite M2M takes RSA keys of 3072 or 4096 bits (PS256, PS384, PS512) and EC keys on \
             P-256 (ES256), P-384 (ES384) or P-521 (ES512)"
            .to_string(),
    }
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
    // The key and algorithm too: a token cached under the old key would hide
    // a new key NetSuite refuses until it expired, up to an hour later.
    use sha2::{Digest, Sha256};
    let key = hex::encode(&Sha256::digest(settings.private_key_pem.as_bytes())[..16]);
    format!("{base_url} {} {} {:?} {key}", settings.client_id, settings.certificate_id, settings.algorithm)
}

// The token never reaches Debug output.
impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl AccessToken {
    pub fn needs_renewal(&self, now: i64) -> bool {
        now.saturating_add(RENEWAL_MARGIN_SECS) >= self.expires_at
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
        // Wrapping arithmetic on a hostile expires_in would make a token
        // that never expires (or already has).
        return Ok(AccessToken { token: body.access_token, expires_at: now.saturating_add(expires_in) });
    }
    let token_url = token_url(base_url);
    let Ok(err) = serde_json::from_slice::<OAuthError>(&response.body) else {
        // Not there at all: the URL setting, not the credentials, is wrong.
        let advice = match response.status {
            404 | 405 => {
                ". No OAuth 2.0 token endpoint is there: check `netsuite_base_url` (or `netsuite_account_id`), the \
                 account's REST host https://<account id>.suitetalk.api.netsuite.com without a path"
            }
            _ => "",
        };
        return Err(ConnectorError::Auth(format!(
            "NetSuite token endpoint {token_url} answered HTTP {}: {}{advice}",
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

    /// The assertion's header and claims, once its signature verified with
    /// the public key (jsonwebtoken, or p521 for ES512).
    fn verified(jwt: &str, key: &simulators::keys::KeyPair) -> (serde_json::Value, serde_json::Value) {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = jwt.split('.').collect();
        let part = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[i]).unwrap()).unwrap()
        };
        let signed = format!("{}.{}", parts[0], parts[1]);
        let ok = match key.algorithm() {
            "ES512" => {
                use p521::ecdsa::signature::Verifier;
                use p521::pkcs8::DecodePublicKey;
                let public = p521::PublicKey::from_public_key_pem(&key.public_pem).unwrap();
                let verifying = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
                let raw = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
                assert_eq!(raw.len(), 132, "ES512 signatures are R and S of 66 bytes each");
                verifying.verify(signed.as_bytes(), &p521::ecdsa::Signature::from_slice(&raw).unwrap()).is_ok()
            }
            name => {
                let alg: Algorithm = name.parse().unwrap();
                let public = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => {
                        jsonwebtoken::DecodingKey::from_ec_pem(key.public_pem.as_bytes()).unwrap()
                    }
                    _ => jsonwebtoken::DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).unwrap(),
                };
                jsonwebtoken::crypto::verify(parts[2], signed.as_bytes(), &public, alg).unwrap()
            }
        };
        assert!(ok, "{} signature does not verify", key.algorithm());
        (part(0), part(1))
    }

    fn algorithm_of(key: &simulators::keys::KeyPair) -> SigningAlgorithm {
        SigningAlgorithm::ALL.into_iter().find(|a| a.name() == key.algorithm()).unwrap()
    }

    #[test]
    fn every_algorithm_netsuite_accepts_signs_a_verifiable_assertion() {
        use simulators::keys::{KeyPair, Signing};
        let rsa = KeyPair::generate(Signing::Ps256).unwrap();
        for signing in Signing::ALL {
            let key = match signing {
                Signing::Ps256 | Signing::Ps384 | Signing::Ps512 => rsa.signing_as(signing),
                _ => KeyPair::generate(signing).unwrap(),
            };
            let jwt = client_assertion(&settings(algorithm_of(&key), &key.private_pem), BASE, 1_000).unwrap();
            let (header, claims) = verified(&jwt, &key);
            assert_eq!(header["alg"], key.algorithm());
            assert_eq!((header["typ"].as_str(), header["kid"].as_str()), (Some("JWT"), Some("cert-1")));
            assert_eq!(claims["aud"], format!("{BASE}/services/rest/auth/oauth2/v1/token"));
            assert_eq!((claims["iss"].as_str(), claims["iat"].as_i64()), (Some("client"), Some(1_000)));
            assert_eq!(claims["scope"], serde_json::json!("rest_webservices"));
        }
    }

    #[test]
    fn an_ec_key_in_sec1_form_signs_as_well_as_pkcs8() {
        use p256::pkcs8::{DecodePrivateKey, LineEnding};
        use simulators::keys::{KeyPair, Signing};
        for signing in [Signing::Es256, Signing::Es384, Signing::Es512] {
            let key = KeyPair::generate(signing).unwrap();
            let sec1 = match signing {
                Signing::Es256 => {
                    p256::SecretKey::from_pkcs8_pem(&key.private_pem).unwrap().to_sec1_pem(LineEnding::LF)
                }
                Signing::Es384 => {
                    p384::SecretKey::from_pkcs8_pem(&key.private_pem).unwrap().to_sec1_pem(LineEnding::LF)
                }
                _ => p521::SecretKey::from_pkcs8_pem(&key.private_pem).unwrap().to_sec1_pem(LineEnding::LF),
            }
            .unwrap();
            assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
            let jwt = client_assertion(&settings(algorithm_of(&key), &sec1), BASE, 0).unwrap();
            verified(&jwt, &key);
        }
    }

    #[test]
    fn a_sec1_key_without_its_public_key_is_read_on_its_own_curve_only() {
        use p256::pkcs8::DecodePrivateKey;
        use simulators::keys::{KeyPair, Signing};
        let key = KeyPair::generate(Signing::Es256).unwrap();
        let secret = p256::SecretKey::from_pkcs8_pem(&key.private_pem).unwrap();
        // SEC1 with the private key and the curve only (`openssl ec -no_public`).
        let scalar: Vec<u8> = secret.to_bytes().iter().copied().collect();
        let der = [
            &[0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20][..],
            &scalar,
            &[0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        ]
        .concat();
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        let (first, rest) = body.split_at(64);
        let pem = format!("-----BEGIN EC PRIVATE KEY-----\n{first}\n{rest}\n-----END EC PRIVATE KEY-----\n");
        verified(&client_assertion(&settings(SigningAlgorithm::Es256, &pem), BASE, 0).unwrap(), &key);
        for alg in [SigningAlgorithm::Es384, SigningAlgorithm::Es512] {
            let msg = client_assertion(&settings(alg, &pem), BASE, 0).unwrap_err().to_string();
            assert!(msg.contains("holds an EC P-256 key") && msg.contains("set it to ES256"), "{msg}");
        }
    }

    /// NetSuite refuses RSA keys other than 3072 or 4096 bits with a bare
    /// invalid_grant: the connector says so before sending one.
    #[test]
    fn an_rsa_key_of_a_size_netsuite_refuses_is_named_before_it_is_sent() {
        use simulators::keys::KeyPair;
        let small = KeyPair::rsa_of(2048).unwrap();
        let msg =
            client_assertion(&settings(SigningAlgorithm::Ps256, &small.private_pem), BASE, 0).unwrap_err().to_string();
        assert!(msg.contains("2048-bit RSA key") && msg.contains("3072 or 4096"), "{msg}");
        assert!(!msg.contains("PRIVATE KEY"), "{msg}");
        let pkcs1 = {
            use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
            use rsa::pkcs8::DecodePrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(&small.private_pem).unwrap();
            key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string()
        };
        assert_eq!(rsa_bits(&pkcs1), Some(2048), "PKCS#1 too");
        assert_eq!(rsa_bits("not a key"), None);
    }

    #[test]
    fn a_key_of_another_kind_than_the_algorithm_says_what_to_set() {
        use simulators::keys::{KeyPair, Signing};
        let p384 = KeyPair::generate(Signing::Es384).unwrap();
        for alg in [SigningAlgorithm::Es256, SigningAlgorithm::Es512, SigningAlgorithm::Ps256] {
            let msg = client_assertion(&settings(alg, &p384.private_pem), BASE, 0).unwrap_err().to_string();
            assert!(msg.contains("holds an EC P-384 key") && msg.contains("set it to ES384"), "{msg}");
            assert!(msg.contains(&format!("`netsuite_signing_algorithm` is {}", alg.name())), "{msg}");
        }
        let p521 = KeyPair::generate(Signing::Es512).unwrap();
        let msg = client_assertion(&settings(SigningAlgorithm::Es384, &p521.private_pem), BASE, 0).unwrap_err();
        assert!(msg.to_string().contains("set it to ES512"), "{msg}");
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
    fn a_token_endpoint_not_found_names_the_url_setting() {
        let s = settings(SigningAlgorithm::Ps256, "");
        let response = HttpResponse { status: 404, headers: vec![], body: vec![], pieces: vec![] };
        let msg = parse_token_response(&response, 0, &s, BASE).unwrap_err().to_string();
        assert!(msg.contains("HTTP 404") && msg.contains("`netsuite_base_url`"), "{msg}");
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

    /// A token cached under one key is not reused once the key or the
    /// algorithm changed: the new key is tried at the next run.
    #[test]
    fn the_login_identity_changes_with_the_key_and_the_algorithm() {
        let settings = |pem: &str, algorithm| M2mSettings {
            client_id: "client".into(),
            certificate_id: "cert".into(),
            private_key_pem: pem.into(),
            algorithm,
        };
        let one = login_identity(&settings("key one", SigningAlgorithm::Ps256), "https://a");
        assert_eq!(one, login_identity(&settings("key one", SigningAlgorithm::Ps256), "https://a"));
        assert_ne!(one, login_identity(&settings("key two", SigningAlgorithm::Ps256), "https://a"));
        assert_ne!(one, login_identity(&settings("key one", SigningAlgorithm::Es256), "https://a"));
        assert!(!one.contains("key one"), "the key itself is never kept: {one}");
    }
}
