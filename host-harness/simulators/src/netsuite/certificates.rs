//! The account's OAuth 2.0 Client Credentials (M2M) mappings: each holds an
//! uploaded certificate's public key under its certificate id, which a
//! client assertion names in its `kid` header. An account may hold several
//! (one PS256 and one ES256 side by side, or an old and a new one during a
//! rotation); a key may be mapped once only, a mapping can be revoked (it
//! stays listed, refused) or removed, and a certificate stops working when it
//! expires (shared/reference/netsuite.md 4.1).

use anyhow::{Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};

/// The JWS algorithms NetSuite accepts in a client assertion's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlgorithm {
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
}

impl JwsAlgorithm {
    pub fn parse(name: &str) -> Option<JwsAlgorithm> {
        Some(match name {
            "PS256" => JwsAlgorithm::PS256,
            "PS384" => JwsAlgorithm::PS384,
            "PS512" => JwsAlgorithm::PS512,
            "ES256" => JwsAlgorithm::ES256,
            "ES384" => JwsAlgorithm::ES384,
            "ES512" => JwsAlgorithm::ES512,
            _ => return None,
        })
    }

    /// jsonwebtoken's name for it; it has no ES512.
    fn jwt(self) -> Option<Algorithm> {
        match self {
            JwsAlgorithm::PS256 => Some(Algorithm::PS256),
            JwsAlgorithm::PS384 => Some(Algorithm::PS384),
            JwsAlgorithm::PS512 => Some(Algorithm::PS512),
            JwsAlgorithm::ES256 => Some(Algorithm::ES256),
            JwsAlgorithm::ES384 => Some(Algorithm::ES384),
            JwsAlgorithm::ES512 => None,
        }
    }
}

/// The key a certificate holds, as NetSuite accepts them: RSA 3072 or 4096
/// bits (PS256/384/512), EC P-256 (ES256), P-384 (ES384) or P-521 (ES512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKey {
    Rsa { bits: usize },
    EcP256,
    EcP384,
    EcP521,
}

impl CertificateKey {
    /// Whether a JWT signed with `alg` can be verified with this key.
    pub fn signs(self, alg: JwsAlgorithm) -> bool {
        use JwsAlgorithm::*;
        match self {
            CertificateKey::Rsa { .. } => matches!(alg, PS256 | PS384 | PS512),
            CertificateKey::EcP256 => alg == ES256,
            CertificateKey::EcP384 => alg == ES384,
            CertificateKey::EcP521 => alg == ES512,
        }
    }

    pub fn algorithms(self) -> &'static str {
        match self {
            CertificateKey::Rsa { .. } => "PS256, PS384 or PS512",
            CertificateKey::EcP256 => "ES256",
            CertificateKey::EcP384 => "ES384",
            CertificateKey::EcP521 => "ES512",
        }
    }
}

/// A certificate's public key, ready to verify signatures.
#[derive(Clone)]
pub enum PublicKey {
    Jwt(DecodingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Whether `signature` (base64url, as in a JWS) signs `message` with `alg`.
    pub fn verifies(&self, alg: JwsAlgorithm, message: &[u8], signature: &str) -> bool {
        match self {
            PublicKey::Jwt(key) => {
                alg.jwt().is_some_and(|alg| jsonwebtoken::crypto::verify(signature, message, key, alg).unwrap_or(false))
            }
            PublicKey::P521(key) => {
                use p521::ecdsa::signature::Verifier;
                // R and S, 66 bytes each (RFC 7518 3.4), not DER.
                let Some(signature) = URL_SAFE_NO_PAD
                    .decode(signature)
                    .ok()
                    .and_then(|raw| p521::ecdsa::Signature::from_slice(&raw).ok())
                else {
                    return false;
                };
                alg == JwsAlgorithm::ES512 && key.verify(message, &signature).is_ok()
            }
        }
    }
}

/// One row of the OAuth 2.0 Client Credentials (M2M) Setup page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateStatus {
    pub certificate_id: String,
    pub key: CertificateKey,
    pub revoked: bool,
    /// Simulated Unix seconds after which the certificate is refused.
    pub expires_at: Option<i64>,
}

struct Mapping {
    status: CertificateStatus,
    /// The public key's DER (SubjectPublicKeyInfo): one mapping per key.
    spki: Vec<u8>,
    public: PublicKey,
}

/// Why a certificate named by a `kid` cannot verify an assertion now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    Unknown,
    Revoked,
    Expired(i64),
}

#[derive(Default)]
pub struct Certificates {
    mappings: Vec<Mapping>,
}

fn classify(pem: &str) -> Result<(CertificateKey, Vec<u8>, PublicKey)> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    use rsa::traits::PublicKeyParts;

    let rsa = rsa::RsaPublicKey::from_public_key_pem(pem).or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem));
    if let Ok(key) = rsa {
        let bits = key.size() * 8;
        if bits != 3072 && bits != 4096 {
            bail!("the RSA key has {bits} bits; NetSuite accepts RSA keys of 3072 or 4096 bits");
        }
        let der = key.to_public_key_der()?.into_vec();
        return Ok((CertificateKey::Rsa { bits }, der, PublicKey::Jwt(DecodingKey::from_rsa_pem(pem.as_bytes())?)));
    }
    if let Ok(key) = p256::PublicKey::from_public_key_pem(pem) {
        let der = key.to_public_key_der()?.into_vec();
        return Ok((CertificateKey::EcP256, der, PublicKey::Jwt(DecodingKey::from_ec_pem(pem.as_bytes())?)));
    }
    if let Ok(key) = p384::PublicKey::from_public_key_pem(pem) {
        let der = key.to_public_key_der()?.into_vec();
        return Ok((CertificateKey::EcP384, der, PublicKey::Jwt(DecodingKey::from_ec_pem(pem.as_bytes())?)));
    }
    if let Ok(key) = p521::PublicKey::from_public_key_pem(pem) {
        let der = key.to_public_key_der()?.into_vec();
        let verifying = p521::ecdsa::VerifyingKey::from_affine(*key.as_affine())?;
        return Ok((CertificateKey::EcP521, der, PublicKey::P521(verifying)));
    }
    bail!("not a PEM public key NetSuite accepts: RSA 3072/4096, EC P-256, P-384 or P-521")
}

impl Certificates {
    /// Maps a certificate's public key (PEM) under `certificate_id`.
    pub fn add(&mut self, certificate_id: &str, public_key_pem: &str) -> Result<()> {
        if certificate_id.trim().is_empty() {
            bail!("a certificate id must not be empty");
        }
        if self.mappings.iter().any(|m| m.status.certificate_id == certificate_id) {
            bail!("certificate id {certificate_id:?} is already mapped");
        }
        let (key, spki, public) =
            classify(public_key_pem).map_err(|e| anyhow::anyhow!("certificate {certificate_id:?}: {e}"))?;
        if let Some(other) = self.mappings.iter().find(|m| m.spki == spki) {
            bail!(
                "certificate {certificate_id:?}: this key is already mapped as {:?}; NetSuite uses one certificate \
                 for one combination of integration record, role and entity",
                other.status.certificate_id
            );
        }
        let status =
            CertificateStatus { certificate_id: certificate_id.to_string(), key, revoked: false, expires_at: None };
        self.mappings.push(Mapping { status, spki, public });
        Ok(())
    }

    fn mapping_mut(&mut self, certificate_id: &str) -> Result<&mut Mapping> {
        self.mappings
            .iter_mut()
            .find(|m| m.status.certificate_id == certificate_id)
            .ok_or_else(|| anyhow::anyhow!("no M2M mapping has certificate id {certificate_id:?}"))
    }

    /// Revokes a certificate: it stays listed and is refused from now on.
    pub fn revoke(&mut self, certificate_id: &str) -> Result<()> {
        self.mapping_mut(certificate_id)?.status.revoked = true;
        Ok(())
    }

    /// Deletes a mapping.
    pub fn remove(&mut self, certificate_id: &str) -> Result<()> {
        let before = self.mappings.len();
        self.mappings.retain(|m| m.status.certificate_id != certificate_id);
        if self.mappings.len() == before {
            bail!("no M2M mapping has certificate id {certificate_id:?}");
        }
        Ok(())
    }

    pub fn set_expiry(&mut self, certificate_id: &str, expires_at: Option<i64>) -> Result<()> {
        self.mapping_mut(certificate_id)?.status.expires_at = expires_at;
        Ok(())
    }

    pub fn list(&self) -> Vec<CertificateStatus> {
        self.mappings.iter().map(|m| m.status.clone()).collect()
    }

    /// The key of a certificate that may sign in now (simulated seconds).
    pub fn usable(&self, certificate_id: &str, now: i64) -> Result<(CertificateKey, &PublicKey), Unusable> {
        let m = self.mappings.iter().find(|m| m.status.certificate_id == certificate_id).ok_or(Unusable::Unknown)?;
        if m.status.revoked {
            return Err(Unusable::Revoked);
        }
        if let Some(at) = m.status.expires_at.filter(|at| now >= *at) {
            return Err(Unusable::Expired(at));
        }
        Ok((m.status.key, &m.public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyPair, Signing};

    #[test]
    fn several_certificates_each_key_once() {
        let (rsa, ec) = (KeyPair::generate(Signing::Ps256).unwrap(), KeyPair::generate(Signing::Es256).unwrap());
        let mut certs = Certificates::default();
        certs.add("ps", &rsa.public_pem).unwrap();
        certs.add("es", &ec.public_pem).unwrap();
        assert!(certs.add("ps", &ec.public_pem).is_err(), "ids are unique");
        let e = certs.add("again", &rsa.public_pem).unwrap_err().to_string();
        assert!(e.contains("already mapped as \"ps\""), "{e}");
        assert_eq!(certs.usable("ps", 0).map(|(k, _)| k), Ok(CertificateKey::Rsa { bits: 3072 }));
        assert_eq!(certs.usable("es", 0).map(|(k, _)| k), Ok(CertificateKey::EcP256));
        assert!(
            CertificateKey::EcP256.signs(JwsAlgorithm::ES256) && !CertificateKey::EcP256.signs(JwsAlgorithm::PS256)
        );

        certs.revoke("ps").unwrap();
        assert_eq!(certs.usable("ps", 0).err(), Some(Unusable::Revoked));
        assert!(certs.list().iter().any(|c| c.certificate_id == "ps" && c.revoked), "a revoked mapping stays listed");
        certs.set_expiry("es", Some(100)).unwrap();
        assert!(certs.usable("es", 99).is_ok());
        assert_eq!(certs.usable("es", 100).err(), Some(Unusable::Expired(100)));
        certs.remove("es").unwrap();
        assert_eq!(certs.usable("es", 0).err(), Some(Unusable::Unknown));
        assert!(certs.remove("es").is_err());
    }

    #[test]
    fn keys_netsuite_refuses_are_refused() {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let pem = small.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let mut certs = Certificates::default();
        let e = certs.add("small", &pem).unwrap_err().to_string();
        assert!(e.contains("2048 bits"), "{e}");
        assert!(certs.add("junk", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
        assert!(certs.add("", &pem).is_err());
    }
}
