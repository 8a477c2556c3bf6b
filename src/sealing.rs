//! Values sealed at rest with XChaCha20-Poly1305, the one implementation both
//! hosts use: the harness for its secrets file and credentials bucket, the
//! Spin build for its credentials. A sealed value is nonce ‖ ciphertext,
//! bound to associated data the caller names (which tenant, which key), so a
//! value copied under another key does not open. Every seal draws a full
//! 24-byte random nonce; a random source that fails is an error, never a
//! fixed nonce (one nonce reused under a key gives the plaintexts away).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The random source failed; nothing was sealed.
    RandomSource(String),
    /// The cipher refused the plaintext (longer than it can seal).
    Encryption,
    /// Shorter than a nonce: cut off, or never sealed.
    Truncated,
    /// Another key, other associated data, or damaged bytes.
    Unopenable,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::RandomSource(e) => write!(f, "the random source failed ({e}); nothing was sealed"),
            SealError::Encryption => f.write_str("encryption failed"),
            SealError::Truncated => f.write_str("the sealed value is truncated"),
            SealError::Unopenable => f.write_str("wrong key or damaged data"),
        }
    }
}

impl std::error::Error for SealError {}

/// A sealing key. Clone is cheap; Debug shows nothing.
#[derive(Clone)]
pub struct SealingKey {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// The system's random source (WASI random in a component).
fn system_random(bytes: &mut [u8]) -> Result<(), String> {
    getrandom::fill(bytes).map_err(|e| e.to_string())
}

impl SealingKey {
    pub fn new(key: &[u8; KEY_LEN]) -> SealingKey {
        SealingKey { aead: XChaCha20Poly1305::new(key.into()) }
    }

    /// Fresh random key bytes.
    pub fn generate() -> Result<[u8; KEY_LEN], SealError> {
        let mut key = [0u8; KEY_LEN];
        system_random(&mut key).map_err(SealError::RandomSource)?;
        Ok(key)
    }

    /// nonce ‖ ciphertext of `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with_nonce_source(aad, plaintext, system_random)
    }

    /// As [`SealingKey::seal`], the nonce filled by `fill`.
    pub fn seal_with_nonce_source(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        fill: impl FnOnce(&mut [u8]) -> Result<(), String>,
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill(&mut nonce).map_err(SealError::RandomSource)?;
        let sealed = self
            .aead
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| SealError::Encryption)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend(sealed);
        Ok(out)
    }

    /// The plaintext of a value [`SealingKey::seal`] made with this key and `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let Some((nonce, body)) = sealed.split_first_chunk::<NONCE_LEN>() else {
            return Err(SealError::Truncated);
        };
        self.aead.decrypt(&XNonce::from(*nonce), Payload { msg: body, aad }).map_err(|_| SealError::Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::new(&SealingKey::generate().unwrap())
    }

    #[test]
    fn sealing_twice_draws_two_nonces_and_both_open() {
        let key = key();
        let a = key.seal(b"credentials/session", b"token").unwrap();
        let b = key.seal(b"credentials/session", b"token").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a[..NONCE_LEN], [0u8; NONCE_LEN]);
        assert!(!a.windows(5).any(|w| w == b"token"));
        assert_eq!(key.open(b"credentials/session", &a).unwrap(), b"token");
        assert_eq!(key.open(b"credentials/session", &b).unwrap(), b"token");
    }

    #[test]
    fn a_failing_random_source_seals_nothing() {
        let failed = key().seal_with_nonce_source(b"aad", b"token", |_| Err("no entropy".into()));
        assert_eq!(failed, Err(SealError::RandomSource("no entropy".into())));
    }

    /// What both hosts stored before this module: nonce ‖ XChaCha20-Poly1305
    /// of the value with the caller's associated data. Still opens.
    #[test]
    fn the_sealed_format_is_the_nonce_then_the_ciphertext() {
        let bytes = [7u8; KEY_LEN];
        let nonce = [3u8; NONCE_LEN];
        let key = SealingKey::new(&bytes);
        let sealed = key
            .seal_with_nonce_source(b"t\0credentials\0k", b"token", |n| {
                n.copy_from_slice(&nonce);
                Ok(())
            })
            .unwrap();
        let direct = XChaCha20Poly1305::new(&bytes.into())
            .encrypt(&XNonce::from(nonce), Payload { msg: b"token", aad: b"t\0credentials\0k" })
            .unwrap();
        assert_eq!(sealed, [nonce.as_slice(), &direct].concat());
        assert_eq!(key.open(b"t\0credentials\0k", &sealed).unwrap(), b"token");
    }

    #[test]
    fn only_the_same_key_and_associated_data_open_it() {
        let key = key();
        let sealed = key.seal(b"tenant-a\0k", b"token").unwrap();
        assert_eq!(key.open(b"tenant-b\0k", &sealed), Err(SealError::Unopenable));
        assert_eq!(self::key().open(b"tenant-a\0k", &sealed), Err(SealError::Unopenable));
        assert_eq!(key.open(b"tenant-a\0k", &sealed[..NONCE_LEN - 1]), Err(SealError::Truncated));
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(b"tenant-a\0k", &damaged), Err(SealError::Unopenable));
    }
}
