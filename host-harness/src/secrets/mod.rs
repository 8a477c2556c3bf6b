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
use std::io::Write;
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
                "no master key: set {MASTER_KEY_ENV} or `master_key_file` in the config (create one with `connector secrets init --out <file>`)"
            );
        };
        refuse_shared_key_file(path)?;
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading master key file {} (create it with `connector secrets init --out <file>`)", path.display())
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
        let plain = cipher.open(FILE_MAGIC, body).with_context(|| {
            format!(
                "decrypting secrets file {}: is this its master key? (after `connector secrets rekey`, point \
                     master_key_file or {MASTER_KEY_ENV} at the new key and restart a `serve --config`, which reads \
                     its config once)",
                path.display()
            )
        })?;
        serde_json::from_slice(&plain).with_context(|| format!("secrets file {} is damaged", path.display()))
    }

    /// Reads, changes and writes the file under an exclusive lock, so two
    /// `connector secrets set` at once both land (each would otherwise
    /// write back what it read, without the other's secret).
    pub fn update(path: &Path, cipher: &Cipher, change: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<()> {
        let _lock = Self::lock(path)?;
        let mut secrets = Self::read(path, cipher)?;
        change(&mut secrets);
        Self::write(path, cipher, &secrets)
    }

    /// Seals the file again under `new` (read with `old`), under the same
    /// lock as [`SecretFile::update`], written aside: [`Resealed::install`]
    /// puts it in place. The names it holds.
    pub fn reseal(path: &Path, old: &Cipher, new: &Cipher) -> Result<(Vec<String>, Resealed)> {
        let lock = Self::lock(path)?;
        let secrets = Self::read(path, old)?;
        let aside = path.with_extension(format!("rekey.{}", std::process::id()));
        Self::write(&aside, new, &secrets)?;
        Ok((secrets.into_keys().collect(), Resealed { aside, path: path.to_path_buf(), _lock: lock }))
    }

    /// The exclusive lock on `<file>.lock`, held until the handle drops.
    fn lock(path: &Path) -> Result<std::fs::File> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let lock_path = path.with_file_name(name);
        let lock = private_options()
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(lock)
    }

    pub fn write(path: &Path, cipher: &Cipher, secrets: &BTreeMap<String, String>) -> Result<()> {
        let plain = serde_json::to_vec(secrets)?;
        let mut out = FILE_MAGIC.to_vec();
        out.extend(cipher.seal(FILE_MAGIC, &plain)?);
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        // Write then rename, so a crash never leaves half a file. The file is
        // made fresh (a stale one may have other permissions), owner-only.
        // Named per process: a writer that does not lock (an older build)
        // cannot replace another's file half-written.
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut file =
            private_options().create_new(true).open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&out).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

/// A secrets file sealed under a new key, beside the one it replaces
/// (removed unless installed); the file's lock is held meanwhile.
pub struct Resealed {
    aside: std::path::PathBuf,
    path: std::path::PathBuf,
    _lock: std::fs::File,
}

impl Resealed {
    pub fn install(&self) -> Result<()> {
        std::fs::rename(&self.aside, &self.path).with_context(|| format!("replacing {}", self.path.display()))
    }
}

impl Drop for Resealed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.aside);
    }
}

/// Writes a new master key to `path`, readable by its owner only (0600).
/// An existing file is never replaced: the secrets sealed with the key in it
/// would become unreadable.
pub fn write_key_file(path: &Path, key_b64: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut file = match private_options().create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} exists and is kept: the secrets sealed with that key need it. Move it away first if you really want a new key",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("creating master key file {}", path.display())),
    };
    file.write_all(format!("{key_b64}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing master key file {}", path.display()))
}

/// Creates `dir` (and missing parents) readable by its owner only (0700).
/// A directory that exists keeps its permissions: it is the user's.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// `path` as a shell word, so the `chmod` in a message can be pasted.
fn shell_quoted(path: &Path) -> String {
    let text = path.display().to_string();
    if text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@".contains(&b)) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Options for a new file only its owner may read and write (0600).
/// Opens files for writing readable by their owner only (0600).
pub(crate) fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// As ssh does with private keys: a master key file that group or others may
/// read (or write) is refused, since anyone who can read it can open every
/// secret and token of the installation.
fn refuse_shared_key_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(()); // reading it reports what is wrong
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "master key file {} has mode {mode:04o}: other users of this machine can read it. \
                 Run `chmod 600 {}` (and consider the key exposed if others may have read it)",
                path.display(),
                shell_quoted(path)
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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
    fn updates_at_the_same_time_all_land() {
        let dir = std::env::temp_dir().join(format!("secrets-update-{}", std::process::id()));
        let path = dir.join("secrets.enc");
        let c = Cipher::from_b64(&Cipher::generate_key_b64()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..6 {
                let (path, c) = (&path, &c);
                scope.spawn(move || {
                    for i in 0..5 {
                        SecretFile::update(path, c, |s| {
                            s.insert(format!("name-{t}-{i}"), "v".into());
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(SecretFile::read(&path, &c).unwrap().len(), 30);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_and_secrets_files_are_owner_only_and_a_shared_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = std::env::temp_dir().join(format!("secrets-modes-{}", std::process::id()));
        let dir = root.join("data dir");
        let key_file = dir.join("master.key");
        let key = Cipher::generate_key_b64();
        write_key_file(&key_file, &key).unwrap();
        assert_eq!((mode(&dir), mode(&key_file)), (0o700, 0o600));
        let again = write_key_file(&key_file, &Cipher::generate_key_b64()).unwrap_err().to_string();
        assert!(again.contains("exists and is kept"), "{again}");
        assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key, "the first key stays");

        let secrets = dir.join("secrets.enc");
        let cipher = Cipher::load(Some(&key_file)).unwrap();
        // A file left by an older version, readable by all, comes back owner-only.
        std::fs::write(&secrets, b"old").unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
        SecretFile::write(&secrets, &cipher, &BTreeMap::new()).unwrap();
        assert_eq!(mode(&secrets), 0o600);

        for shared in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(shared)).unwrap();
            let err = format!("{:#}", Cipher::load(Some(&key_file)).unwrap_err());
            let chmod = format!("chmod 600 '{}'", key_file.display());
            assert!(err.contains(&chmod) && err.contains(&format!("{shared:04o}")), "{err}");
        }
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Cipher::load(Some(&key_file)).is_ok(), "owner-only read is enough");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        assert!(Cipher::from_b64("not base64!").unwrap_err().to_string().contains("base64"));
        assert!(Cipher::from_b64("AAAA").unwrap_err().to_string().contains("32"));
    }
}
