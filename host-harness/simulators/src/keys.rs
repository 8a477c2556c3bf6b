//! Signing keys for the simulated NetSuite account's M2M certificates: the
//! private half signs the connector's JWT assertions, the public half is what
//! the account holds.

use anyhow::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Ps256,
    Es256,
}

/// A signing key and the public key NetSuite holds in its certificate.
#[derive(Clone)]
pub struct KeyPair {
    pub signing: Signing,
    pub private_pem: String,
    pub public_pem: String,
}

impl KeyPair {
    /// RSA 3072 for PS256 (NetSuite's minimum), P-256 for ES256.
    pub fn generate(signing: Signing) -> Result<KeyPair> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let mut rng = rand::rngs::OsRng;
        match signing {
            Signing::Ps256 => {
                let key = rsa::RsaPrivateKey::new(&mut rng, 3072)?;
                Ok(KeyPair {
                    signing,
                    private_pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
                    public_pem: key.to_public_key().to_public_key_pem(LineEnding::LF)?,
                })
            }
            Signing::Es256 => {
                let key = p256::SecretKey::random(&mut rng);
                Ok(KeyPair {
                    signing,
                    private_pem: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
                    public_pem: key.public_key().to_public_key_pem(LineEnding::LF)?,
                })
            }
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self.signing {
            Signing::Ps256 => "PS256",
            Signing::Es256 => "ES256",
        }
    }
}
