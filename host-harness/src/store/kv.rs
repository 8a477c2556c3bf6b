//! Key-value buckets for one tenant. The `credentials` bucket is sealed with
//! the installation's master key; the others are plain, for inspection.

use super::now_text;
use crate::secrets::Cipher;
use anyhow::{Result, anyhow};
use rusqlite::{Connection, OptionalExtension, params};

/// The buckets a connector may open.
pub const STATE_BUCKET: &str = "state";
pub const CREDENTIALS_BUCKET: &str = "credentials";
pub const QUEUES_BUCKET: &str = "queues";
/// Marks of writes on their way to Salesforce: kept in a file of their own
/// (see `Database::marks_path`), a set committed before it returns.
pub const IN_FLIGHT_BUCKET: &str = "in-flight";

pub struct KvStore {
    conn: Connection,
    tenant: String,
    cipher: Cipher,
}

impl KvStore {
    pub fn new(conn: Connection, tenant: &str, cipher: Cipher) -> KvStore {
        KvStore { conn, tenant: tenant.to_string(), cipher }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn aad(&self, bucket: &str, key: &str) -> Vec<u8> {
        format!("{}\0{bucket}\0{key}", self.tenant).into_bytes()
    }

    fn seal<'v>(&self, bucket: &str, key: &str, value: &'v [u8]) -> Result<std::borrow::Cow<'v, [u8]>> {
        if bucket == CREDENTIALS_BUCKET {
            self.cipher.seal(&self.aad(bucket, key), value).map(std::borrow::Cow::Owned)
        } else {
            Ok(std::borrow::Cow::Borrowed(value))
        }
    }

    /// The value as stored, opened for the credentials bucket. That bucket
    /// only caches tokens: one sealed under another master key (the key was
    /// replaced) reads as absent, so the run obtains a new token and its
    /// write replaces the value, instead of every run failing on it.
    fn unseal(&self, bucket: &str, key: &str, value: Vec<u8>) -> Option<Vec<u8>> {
        if bucket != CREDENTIALS_BUCKET {
            return Some(value);
        }
        match self.cipher.open(&self.aad(bucket, key), &value) {
            Ok(plain) => Some(plain),
            Err(_) => {
                tracing::warn!(
                    tenant = %self.tenant,
                    "cached credential `{key}` was sealed with another master key; a new one is obtained"
                );
                None
            }
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let value: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?
            .query_row(params![self.tenant, bucket, key], |r| r.get(0))
            .optional()?;
        Ok(value.and_then(|v| self.unseal(bucket, key, v)))
    }

    /// Values of `keys`, in order; one query per few hundred keys.
    pub fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        const GROUP: usize = 500;
        // Grown by what is found, not sized for every key: a first sync
        // finds nothing, and a table sized per call took fresh pages each time.
        let mut found: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
        for group in keys.chunks(GROUP) {
            let placeholders = vec!["?"; group.len()].join(",");
            let sql = format!("SELECT key, value FROM kv WHERE tenant = ? AND bucket = ? AND key IN ({placeholders})");
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let params: Vec<&dyn rusqlite::ToSql> =
                [&self.tenant as &dyn rusqlite::ToSql, &bucket as &dyn rusqlite::ToSql]
                    .into_iter()
                    .chain(group.iter().map(|k| k as &dyn rusqlite::ToSql))
                    .collect();
            let mut rows = stmt.query(params.as_slice())?;
            while let Some(row) = rows.next()? {
                found.insert(row.get(0)?, row.get(1)?);
            }
        }
        Ok(keys.iter().map(|k| found.remove(k).and_then(|v| self.unseal(bucket, k, v))).collect())
    }

    pub fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<()> {
        self.set_at(bucket, key, value, &now_text())
    }

    /// As [`KvStore::set`], stamped `at` (one time for a whole batch).
    pub fn set_at(&self, bucket: &str, key: &str, value: &[u8], at: &str) -> Result<()> {
        self.write_at([(bucket, key, Some(value))], at)
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.write_at([(bucket, key, None)], "")
    }

    /// Sets (`Some`) and deletes (`None`), in order, sets stamped `at`. The
    /// statements are looked up once for all of them: the cache hashes the
    /// SQL text at each lookup, a thirtieth of a run's writer per row.
    pub fn write_at<'w>(
        &self,
        writes: impl IntoIterator<Item = (&'w str, &'w str, Option<&'w [u8]>)>,
        at: &str,
    ) -> Result<()> {
        let mut upsert = None;
        let mut delete = None;
        for (bucket, key, value) in writes {
            match value {
                Some(value) => {
                    let sealed = self.seal(bucket, key, value)?;
                    let stmt = match &mut upsert {
                        Some(stmt) => stmt,
                        None => upsert.insert(self.conn.prepare_cached(
                            "INSERT INTO kv (tenant, bucket, key, value, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (tenant, bucket, key) DO UPDATE SET value = excluded.value,
                                 updated_at = excluded.updated_at",
                        )?),
                    };
                    stmt.execute(params![self.tenant, bucket, key, sealed.as_ref(), at])?;
                }
                None => {
                    let stmt = match &mut delete {
                        Some(stmt) => stmt,
                        None => delete.insert(
                            self.conn
                                .prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?,
                        ),
                    };
                    stmt.execute(params![self.tenant, bucket, key])?;
                }
            }
        }
        Ok(())
    }

    /// Seals this tenant's credentials again under `new`, in one
    /// transaction (`connector secrets rekey`): the cached tokens and a
    /// rotated refresh token stay usable under the new key and no longer
    /// open with the old one. A value the current key does not open is
    /// deleted (it read as absent already). Refused while a run holds the
    /// lease (checked under the write lock, so none takes it meanwhile).
    /// `install` runs once the transaction is committed (the secrets file
    /// is put in place then: should it fail, tokens read as absent under
    /// the old key, while the secrets still open with it). Overwritten
    /// values are zeroed on disk (`secure_delete`); the third count says
    /// whether the journal's copies went too (checkpoint not blocked).
    pub fn reseal_credentials(
        &mut self,
        new: &Cipher,
        install: impl FnOnce() -> Result<()>,
    ) -> Result<(usize, usize, bool)> {
        let (tenant, old) = (self.tenant.clone(), self.cipher.clone());
        let aad = |key: &str| format!("{tenant}\0{CREDENTIALS_BUCKET}\0{key}").into_bytes();
        self.conn.pragma_update(None, "secure_delete", true)?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        refuse_while_leased(&tx, &tenant)?;
        let rows: Vec<(String, Vec<u8>)> = tx
            .prepare("SELECT key, value FROM kv WHERE tenant = ?1 AND bucket = ?2")?
            .query_map(params![tenant, CREDENTIALS_BUCKET], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let (mut resealed, mut deleted) = (0, 0);
        for (key, value) in rows {
            match old.open(&aad(&key), &value) {
                Ok(plain) => {
                    tx.execute(
                        "UPDATE kv SET value = ?4 WHERE tenant = ?1 AND bucket = ?2 AND key = ?3",
                        params![tenant, CREDENTIALS_BUCKET, key, new.seal(&aad(&key), &plain)?],
                    )?;
                    resealed += 1;
                }
                Err(_) => {
                    tx.execute(
                        "DELETE FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3",
                        params![tenant, CREDENTIALS_BUCKET, key],
                    )?;
                    deleted += 1;
                }
            }
        }
        tx.commit()?;
        self.cipher = new.clone();
        install().map_err(|e| {
            e.context(
                "the cached tokens are sealed under the new key, but the secrets file was not replaced: it still \
                 opens with the old key (keep it; the tokens are obtained again)",
            )
        })?;
        // Busy (a reader in the way): the journal keeps old copies until its next checkpoint.
        let busy: i64 = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).unwrap_or(1);
        Ok((resealed, deleted, busy == 0))
    }

    /// Fails while a run of this tenant holds its lease (see
    /// [`KvStore::reseal_credentials`]).
    pub fn refuse_while_leased(&self) -> Result<()> {
        refuse_while_leased(&self.conn, &self.tenant)
    }

    /// Deletes `key` only while it still holds `expected`, as read from an
    /// unsealed bucket: true when it did.
    pub fn delete_if(&self, bucket: &str, key: &str, expected: &[u8]) -> Result<bool> {
        if bucket == CREDENTIALS_BUCKET {
            return Err(anyhow!("sealed values cannot be compared: bucket `{bucket}`"));
        }
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3 AND value = ?4")?
            .execute(params![self.tenant, bucket, key, expected])?;
        Ok(deleted > 0)
    }

    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?
            .exists(params![self.tenant, bucket, key])?)
    }

    /// Up to `page` keys of `bucket` in key order, after `after` (from the
    /// first when `None`). Keyset paging: each page is a seek in the key
    /// index, and deleting keys already listed moves nothing that is not.
    pub fn list_keys(&self, bucket: &str, after: Option<&str>, page: u64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(if after.is_some() {
            "SELECT key FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key > ?4 ORDER BY key LIMIT ?3"
        } else {
            "SELECT key FROM kv WHERE tenant = ?1 AND bucket = ?2 ORDER BY key LIMIT ?3"
        })?;
        let keys: rusqlite::Result<Vec<String>> = match after {
            Some(after) => stmt.query_map(params![self.tenant, bucket, page as i64, after], |r| r.get(0))?.collect(),
            None => stmt.query_map(params![self.tenant, bucket, page as i64], |r| r.get(0))?.collect(),
        };
        Ok(keys?)
    }

    /// Runs `f` in one transaction: a batch is all-or-nothing and one fsync.
    pub fn batch<T>(&self, f: impl FnOnce(&KvStore) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Fails while a run of `tenant` holds its lease (`state/lease`, see the
/// component's `sync::lease`): a token it obtains would be sealed under the
/// old key.
fn refuse_while_leased(conn: &Connection, tenant: &str) -> Result<()> {
    let lease: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = 'lease'",
            params![tenant, STATE_BUCKET],
            |r| r.get(0),
        )
        .optional()?;
    let lease: serde_json::Value = lease.and_then(|l| serde_json::from_slice(&l).ok()).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if lease["expires_at"].as_i64().is_some_and(|at| at > now) {
        return Err(anyhow!(
            "run {} of tenant `{tenant}` holds its lease: stop `serve` (or wait for the run to end) and rekey then, \
             or a token it obtains would be sealed under the old key. Nothing changed",
            lease["run_id"].as_str().unwrap_or("?")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path, cipher: &Cipher) -> KvStore {
        let db = crate::store::Database::open(&dir.join("connector.db")).unwrap();
        KvStore::new(db.connect().unwrap(), "acme", cipher.clone())
    }

    #[test]
    fn credentials_sealed_under_another_key_read_as_absent_and_a_rekey_keeps_them() {
        let (old, new) = (Cipher::from_key(&[1; 32]), Cipher::from_key(&[2; 32]));
        let dir = tempfile::tempdir().unwrap();
        let mut kv = store(dir.path(), &old);
        kv.set(CREDENTIALS_BUCKET, "salesforce_session", b"session").unwrap();
        kv.set(STATE_BUCKET, "customer:1", b"state").unwrap();

        // The key replaced by hand: the cached token is as good as none, not an error.
        kv.cipher = new.clone();
        assert_eq!(kv.get(CREDENTIALS_BUCKET, "salesforce_session").unwrap(), None);
        let keys = ["salesforce_session".to_string()];
        assert_eq!(kv.get_many(CREDENTIALS_BUCKET, &keys).unwrap(), vec![None]);
        assert_eq!(kv.get(STATE_BUCKET, "customer:1").unwrap().as_deref(), Some(&b"state"[..]), "state is plain");

        // A rekey from the key that sealed it carries it over; stale values go.
        kv.cipher = old.clone();
        kv.set(CREDENTIALS_BUCKET, "salesforce_refresh_token", b"rotated").unwrap();
        let stale = Cipher::from_key(&[3; 32]).seal(&kv.aad(CREDENTIALS_BUCKET, "stale"), b"x").unwrap();
        kv.conn.execute("INSERT INTO kv VALUES ('acme', 'credentials', 'stale', ?1, '')", params![stale]).unwrap();
        // A run holds the lease: nothing moves.
        let lease = serde_json::json!({"run_id": "run-1", "expires_at": i64::MAX}).to_string();
        kv.set(STATE_BUCKET, "lease", lease.as_bytes()).unwrap();
        let busy = kv.reseal_credentials(&new, || Ok(())).unwrap_err().to_string();
        assert!(busy.contains("run-1"), "{busy}");
        assert_eq!(kv.get(CREDENTIALS_BUCKET, "salesforce_refresh_token").unwrap().as_deref(), Some(&b"rotated"[..]));
        kv.delete(STATE_BUCKET, "lease").unwrap();
        let (resealed, deleted, _) = kv.reseal_credentials(&new, || Ok(())).unwrap();
        assert_eq!((resealed, deleted), (2, 1));
        assert_eq!(kv.get(CREDENTIALS_BUCKET, "salesforce_refresh_token").unwrap().as_deref(), Some(&b"rotated"[..]));
        assert!(!kv.exists(CREDENTIALS_BUCKET, "stale").unwrap());
        kv.cipher = old;
        assert_eq!(kv.get(CREDENTIALS_BUCKET, "salesforce_session").unwrap(), None, "the old key opens nothing");
    }
}
