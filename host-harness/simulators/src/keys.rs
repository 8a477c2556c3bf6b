//! Signing keys for the simulated NetSuite account's M2M certificates: the
//! private half signs the connector's JWT assertions, the public half is what
//! the account holds.

use anyhow::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Signing {
    pub const ALL: [Signing; 6] =
        [Signing::Ps256, Signing::Ps384, Signing::Ps512, Signing::Es256, Signing::Es384, Signing::Es512];
}

/// A signing key and the public key NetSuite holds in its certificate.
#[derive(Clone)]
pub struct KeyPair {
    pub signing: Signing,
    pub private_pem: String,
    pub public_pem: String,
}

impl KeyPair {
    /// RSA 3072 for PS256/384/512 (NetSuite's minimum), P-256 for ES256,
    /// P-384 for ES384, P-521 for ES512.
    pub fn generate(signing: Signing) -> Result<KeyPair> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let mut rng = rand::rngs::OsRng;
        let (private_pem, public_pem) = match signing {
            Signing::Ps256 | Signing::Ps384 | Signing::Ps512 => {
                let key = rsa::RsaPrivateKey::new(&mut rng, 3072)?;
                (key.to_pkcs8_pem(LineEnding::LF)?.to_string(), key.to_public_key().to_public_key_pem(LineEnding::LF)?)
            }
            Signing::Es256 => {
                let key = p256::SecretKey::random(&mut rng);
                (key.to_pkcs8_pem(LineEnding::LF)?.to_string(), key.public_key().to_public_key_pem(LineEnding::LF)?)
            }
            Signing::Es384 => {
                let key = p384::SecretKey::random(&mut rng);
                (key.to_pkcs8_pem(LineEnding::LF)?.to_string(), key.public_key().to_public_key_pem(LineEnding::LF)?)
            }
            Signing::Es512 => {
                let key = p521::SecretKey::random(&mut rng);
                (key.to_pkcs8_pem(LineEnding::LF)?.to_string(), key.public_key().to_public_key_pem(LineEnding::LF)?)
            }
        };
        Ok(KeyPair { signing, private_pem, public_pem })
    }

    /// An RSA key of `bits` signing PS256: what a user might hold, such as
    /// a 2048-bit key NetSuite's M2M setup does not take.
    pub fn rsa_of(bits: usize) -> Result<KeyPair> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)?;
        let private_pem = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
        Ok(KeyPair {
            signing: Signing::Ps256,
            private_pem,
            public_pem: key.to_public_key().to_public_key_pem(LineEnding::LF)?,
        })
    }

    /// The same key, signing with another algorithm of its kind (PS256,
    /// PS384 and PS512 share an RSA key).
    pub fn signing_as(&self, signing: Signing) -> KeyPair {
        KeyPair { signing, ..self.clone() }
    }

    pub fn algorithm(&self) -> &'static str {
        match self.signing {
            Signing::Ps256 => "PS256",
            Signing::Ps384 => "PS384",
            Signing::Ps512 => "PS512",
            Signing::Es256 => "ES256",
            Signing::Es384 => "ES384",
            Signing::Es512 => "ES512",
        }
    }
}
