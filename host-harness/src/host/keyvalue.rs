//! wasi:keyvalue over the SQLite store. A bucket handle is just its name;
//! the tenant comes from the store the run was given, never from the guest.

use super::bindings::ml_connector::netsuite_salesforce::key_swap;
use super::bindings::wasi::keyvalue::{batch, store};
use super::state::HostState;
use crate::store::kv::{CREDENTIALS_BUCKET, IN_FLIGHT_BUCKET, QUEUES_BUCKET, STATE_BUCKET};
use wasmtime::component::Resource;

pub struct BucketHandle {
    name: &'static str,
    /// The last key of each page listed, by the cursor handed out with it:
    /// the next page starts after that key, so keys the guest deletes
    /// between pages (a queue worked through as it is listed) shift nothing.
    cursors: std::collections::HashMap<u64, String>,
    next_cursor: u64,
}

const LIST_PAGE: u64 = 1000;

fn other(e: anyhow::Error) -> store::Error {
    store::Error::Other(format!("{e:#}"))
}

impl HostState {
    fn bucket_name(&self, bucket: &Resource<BucketHandle>) -> wasmtime::Result<&'static str> {
        Ok(self.table.get(bucket)?.name)
    }
}

impl store::Host for HostState {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<BucketHandle>, store::Error>> {
        let Some(name) =
            [STATE_BUCKET, CREDENTIALS_BUCKET, QUEUES_BUCKET, IN_FLIGHT_BUCKET].into_iter().find(|b| *b == identifier)
        else {
            return Ok(Err(store::Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(BucketHandle { name, cursors: Default::default(), next_cursor: 0 })?))
    }
}

impl store::HostBucket for HostState {
    fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.get(name, &key).map_err(other))
    }

    fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.set(name, &key, &value).map_err(other))
    }

    fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.delete(name, &key).map_err(other))
    }

    fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> wasmtime::Result<Result<bool, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.exists(name, &key).map_err(other))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let handle = self.table.get_mut(&bucket)?;
        let name = handle.name;
        let after = match cursor {
            None => None,
            Some(c) => match handle.cursors.remove(&c) {
                Some(key) => Some(key),
                None => return Ok(Err(store::Error::Other(format!("unknown list-keys cursor {c}")))),
            },
        };
        let keys = match self.kv.list_keys(name, after.as_deref(), LIST_PAGE) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(other(e))),
        };
        let handle = self.table.get_mut(&bucket)?;
        let cursor = match keys.last() {
            Some(last) if keys.len() as u64 == LIST_PAGE => {
                handle.next_cursor += 1;
                handle.cursors.insert(handle.next_cursor, last.clone());
                Some(handle.next_cursor)
            }
            _ => None,
        };
        Ok(Ok(store::KeyResponse { keys, cursor }))
    }

    fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl batch::Host for HostState {
    fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let found = self
            .kv
            .get_many(name, &keys)
            .map(|values| keys.into_iter().zip(values).map(|(k, v)| v.map(|v| (k, v))).collect::<Vec<_>>());
        Ok(found.map_err(other))
    }

    fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.set_many(name, key_values).map_err(other))
    }

    fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.delete_many(name, keys).map_err(other))
    }
}

impl key_swap::Host for HostState {
    fn swap_if(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        Ok(self.kv.swap_if(name, &key, expected.as_deref(), &value).map_err(other))
    }
}
