//! Secrets at rest: an XChaCha20-Poly1305 sealed file of named secrets, and
//! the same cipher for the credentials bucket (the sealing is the core's,
//! shared with the Spin build). The master key comes from
//! `CONNECTOR_MASTER_KEY` (base64 of 32 bytes) or a key file; it is never
//! logged, and neither is any secret.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use netsuite_salesforce::sealing::{SealError, SealingKey};
use std::collections::BTreeMap;
use std::path::Path;

pub const MASTER_KEY_ENV: &str = "CONNECTOR_MASTER_KEY";
const FILE_MAGIC: &[u8] = b"NSSFSEC1";

/// A sealing key. Clone is cheap; Debug shows nothing.
#[derive(Clone, Debug)]
pub struct Cipher {
    key: SealingKey,
}

impl Cipher {
    pub fn from_key(key: &[u8; 32]) -> Cipher {
        Cipher { key: SealingKey::new(key) }
    }

    /// A fresh random key, base64-encoded, for `connector secrets init`.
    /// Panics when the OS random source fails: there is no key to be had.
    pub fn generate_key_b64() -> String {
        match SealingKey::generate() {
            Ok(key) => B64.encode(key),
            Err(e) => panic!("cannot generate a master key: {e}"),
        }
    }

    pub fn from_b64(text: &str) -> Result<Cipher> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| anyhow!("the master key is not valid base64 (expected 32 random bytes, base64-encoded)"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow!("the master key is {} bytes long; it must be 32", b.len()))?;
        Ok(Cipher::from_key(&key))
    }

    /// The key from `CONNECTOR_MASTER_KEY`, else from `key_file`.
    pub fn load(key_file: Option<&Path>) -> Result<Cipher> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return Cipher::from_b64(&text).with_context(|| format!("reading {MASTER_KEY_ENV}"));
        }
        let Some(path) = key_file else {
            bail!(
                "no master key: set {MASTER_KEY_ENV} or `master_key_file` in the config (create one with `connector secrets init`)"
            );
        };
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading master key file {} (create it with `connector secrets init`)", path.display())
        })?;
        Cipher::from_b64(&text).with_context(|| format!("reading master key file {}", path.display()))
    }

    /// nonce ‖ ciphertext, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.key.seal(aad, plaintext).map_err(|e| anyhow!("sealing failed: {e}"))
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.key.open(aad, sealed).map_err(|e| match e {
            SealError::Truncated => anyhow!("sealed value is truncated"),
            _ => anyhow!("wrong master key or damaged data"),
        })
    }
}

/// Named secrets, sealed as one file.
pub struct SecretFile;

impl SecretFile {
    pub fn read(path: &Path, cipher: &Cipher) -> Result<BTreeMap<String, String>> {
        if !path.exists() {
            return Ok(BTreeMap::new());
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading secrets file {}", path.display()))?;
        let body = bytes
            .strip_prefix(FILE_MAGIC)
            .ok_or_else(|| anyhow!("{} is not a connector secrets file", path.display()))?;
        let plain = cipher
            .open(FILE_MAGIC, body)
            .with_context(|| format!("decrypting secrets file {}: is this its master key?", path.display()))?;
        serde_json::from_slice(&plain).with_context(|| format!("secrets file {} is damaged", path.display()))
    }

    pub fn write(path: &Path, cipher: &Cipher, secrets: &BTreeMap<String, String>) -> Result<()> {
        let plain = serde_json::to_vec(secrets)?;
        let mut out = FILE_MAGIC.to_vec();
        out.extend(cipher.seal(FILE_MAGIC, &plain)?);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename, so a crash never leaves half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, out).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_aad() {
        let c = Cipher::from_b64(&Cipher::generate_key_b64()).unwrap();
        let sealed = c.seal(b"t\0credentials\0k", b"token").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"token"));
        assert_eq!(c.open(b"t\0credentials\0k", &sealed).unwrap(), b"token");
        assert!(c.open(b"other\0credentials\0k", &sealed).is_err());
        let other = Cipher::from_b64(&Cipher::generate_key_b64()).unwrap();
        assert!(other.open(b"t\0credentials\0k", &sealed).is_err());
    }

    #[test]
    fn secret_file_round_trips_and_hides_values() {
        let dir = std::env::temp_dir().join(format!("secrets-test-{}", std::process::id()));
        let path = dir.join("secrets.enc");
        let c = Cipher::from_b64(&Cipher::generate_key_b64()).unwrap();
        let map = BTreeMap::from([("salesforce_client_secret".to_string(), "hunter2".to_string())]);
        SecretFile::write(&path, &c, &map).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(SecretFile::read(&path, &c).unwrap(), map);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        assert!(Cipher::from_b64("not base64!").unwrap_err().to_string().contains("base64"));
        assert!(Cipher::from_b64("AAAA").unwrap_err().to_string().contains("32"));
    }
}
