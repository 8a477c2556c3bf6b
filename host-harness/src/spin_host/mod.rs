//! A test host for the Spin build: wasmtime providing what Spin provides to
//! an HTTP component — WASI 0.2, outbound wasi:http, fermyon:spin key-value
//! and variables, wasi:keyvalue store and atomics over the same store — and
//! calling its wasi:http incoming handler. It runs the
//! Spin build end to end in tests without a Spin binary. Swaps behave as
//! those of the store chosen by [`SwapSemantics`].

mod bindings {
    wasmtime::component::bindgen!({
        path: "../spin/wit",
        inline: "
            package connector:spin-test-host;
            world services {
                import fermyon:spin/key-value@2.0.0;
                import fermyon:spin/variables@2.0.0;
                import wasi:keyvalue/store@0.2.0-draft2;
                import wasi:keyvalue/atomics@0.2.0-draft2;
            }
        ",
        world: "connector:spin-test-host/services",
        imports: { default: trappable },
        with: {
            "fermyon:spin/key-value.store": super::StoreHandle,
            "wasi:keyvalue/store.bucket": super::StoreHandle,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}

use anyhow::{Context, Result, anyhow};
use bindings::fermyon::spin2_0_0::{key_value, variables};
use bindings::wasi::keyvalue::{atomics, store as wasi_store};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Spin's default key-value store: one map, shared by every instance, as a
/// Spin app's `default` store is shared by its requests (and replicas).
pub type SharedStore = Arc<Mutex<HashMap<String, Vec<u8>>>>;

pub struct StoreHandle;

/// How `wasi:keyvalue/atomics` swaps behave: as in Spin 4.0.2 (and its main
/// branch) with the store a runtime config chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapSemantics {
    /// The default store (SQLite): a conditional UPDATE on the value
    /// `current` read when the key existed, an upsert otherwise; the answer
    /// is true.
    SpinSqlite,
    /// `[key_value_store.default] type = "redis"`: `current` is WATCH + GET
    /// on a connection of the swap's own; `swap` is MULTI/SET/EXEC (aborted
    /// when the key changed since the WATCH, unconditional without a
    /// `current`) and then `UNWATCH <key>`, which Redis refuses (UNWATCH takes
    /// no argument), so every swap answers cas-failed, applied or not.
    SpinRedis,
}

/// A compare-and-swap in progress: the key, and the value `current` read
/// (outer `None`: `current` was not called).
pub struct CasHandle {
    key: String,
    seen: Option<Option<Vec<u8>>>,
}

pub struct SpinState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    kv: SharedStore,
    swaps: Arc<AtomicU64>,
    semantics: SwapSemantics,
    variables: BTreeMap<String, String>,
    limits: wasmtime::StoreLimits,
}

/// Linear memory one request's instance may use here: what a run needs
/// many times over, so a request that makes the component buffer without
/// bound traps instead of taking the machine's memory.
const INSTANCE_MEMORY_BYTES: usize = 256 << 20;

impl WasiView for SpinState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for SpinState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: Default::default() }
    }
}

impl key_value::Host for SpinState {}

impl key_value::HostStore for SpinState {
    fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<StoreHandle>, key_value::Error>> {
        if label != "default" {
            return Ok(Err(key_value::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(StoreHandle)?))
    }
    fn get(
        &mut self,
        _: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        Ok(Ok(self.kv.lock().unwrap().get(&key).cloned()))
    }
    fn set(
        &mut self,
        _: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        self.kv.lock().unwrap().insert(key, value);
        Ok(Ok(()))
    }
    fn delete(&mut self, _: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<(), key_value::Error>> {
        self.kv.lock().unwrap().remove(&key);
        Ok(Ok(()))
    }
    fn exists(&mut self, _: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<bool, key_value::Error>> {
        Ok(Ok(self.kv.lock().unwrap().contains_key(&key)))
    }
    fn get_keys(&mut self, _: Resource<StoreHandle>) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        Ok(Ok(self.kv.lock().unwrap().keys().cloned().collect()))
    }
    fn drop(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl wasi_store::Host for SpinState {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<StoreHandle>, wasi_store::Error>> {
        if identifier != "default" {
            return Ok(Err(wasi_store::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(StoreHandle)?))
    }
}

impl wasi_store::HostBucket for SpinState {
    fn get(
        &mut self,
        _: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_store::Error>> {
        Ok(Ok(self.kv.lock().unwrap().get(&key).cloned()))
    }
    fn set(
        &mut self,
        _: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        self.kv.lock().unwrap().insert(key, value);
        Ok(Ok(()))
    }
    fn delete(&mut self, _: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        self.kv.lock().unwrap().remove(&key);
        Ok(Ok(()))
    }
    fn exists(&mut self, _: Resource<StoreHandle>, key: String) -> wasmtime::Result<Result<bool, wasi_store::Error>> {
        Ok(Ok(self.kv.lock().unwrap().contains_key(&key)))
    }
    fn list_keys(
        &mut self,
        _: Resource<StoreHandle>,
        _cursor: Option<String>,
    ) -> wasmtime::Result<Result<wasi_store::KeyResponse, wasi_store::Error>> {
        // Spin answers in one response, without a cursor.
        let keys = self.kv.lock().unwrap().keys().cloned().collect();
        Ok(Ok(wasi_store::KeyResponse { keys, cursor: None }))
    }
    fn drop(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

/// Swaps as the store of `semantics` does. Redis's WATCH notices any write
/// to the key, this compares values: the same for the connector, which
/// never writes a lease value twice.
impl atomics::Host for SpinState {
    fn increment(
        &mut self,
        _: Resource<StoreHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wasi_store::Error>> {
        let mut kv = self.kv.lock().unwrap();
        let now = match kv.get(&key) {
            None => 0,
            Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(b) => i64::from_le_bytes(b),
                Err(_) => return Ok(Err(wasi_store::Error::Other(format!("`{key}` is not a counter")))),
            },
        } + delta;
        kv.insert(key, now.to_le_bytes().to_vec());
        Ok(Ok(now))
    }
    fn swap(&mut self, cas: Resource<CasHandle>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.get(&cas)?;
        let (key, seen) = (handle.key.clone(), handle.seen.clone());
        let mut kv = self.kv.lock().unwrap();
        let unchanged = match (self.semantics, &seen) {
            // WATCH covers an absent key too: creating it aborts the EXEC.
            (SwapSemantics::SpinRedis, Some(seen)) => kv.get(&key) == seen.as_ref(),
            (SwapSemantics::SpinSqlite, Some(Some(seen))) => kv.get(&key) == Some(seen),
            // No `current`, or (SQLite) an absent key: written regardless.
            _ => true,
        };
        if unchanged {
            kv.insert(key, value);
            self.swaps.fetch_add(1, Ordering::SeqCst);
        }
        drop(kv);
        match self.semantics {
            SwapSemantics::SpinSqlite if unchanged => {
                self.table.delete(cas)?;
                Ok(Ok(()))
            }
            // Redis: the refused UNWATCH answers for applied swaps too.
            _ => Ok(Err(atomics::CasError::CasFailed(cas))),
        }
    }
}

impl atomics::HostCas for SpinState {
    fn new(
        &mut self,
        _: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, wasi_store::Error>> {
        Ok(Ok(self.table.push(CasHandle { key, seen: None })?))
    }
    fn current(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_store::Error>> {
        let key = self.table.get(&cas)?.key.clone();
        let value = self.kv.lock().unwrap().get(&key).cloned();
        self.table.get_mut(&cas)?.seen = Some(value.clone());
        Ok(Ok(value))
    }
    fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl variables::Host for SpinState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(self.variables.get(&name).cloned().ok_or(variables::Error::Undefined(name)))
    }
}

/// The Spin build, compiled once, with the services Spin gives it.
pub struct SpinHost {
    engine: Engine,
    pre: wasmtime::component::InstancePre<SpinState>,
    pub kv: SharedStore,
    /// Compare-and-swaps that wrote, across requests (and replicas),
    /// whatever they answered.
    pub swaps: Arc<AtomicU64>,
    pub semantics: SwapSemantics,
    pub variables: BTreeMap<String, String>,
    /// The component's log (its stdout), as Spin would collect it.
    pub log: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

/// A response from the component.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl SpinHost {
    pub fn load(wasm: &Path, variables: BTreeMap<String, String>, semantics: SwapSemantics) -> Result<SpinHost> {
        let engine = Engine::new(&Config::new())?;
        let component = Component::from_file(&engine, wasm)
            .map_err(|e| anyhow!("loading the Spin build {}: {e:?}", wasm.display()))?;
        let mut linker: Linker<SpinState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        key_value::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        variables::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        wasi_store::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        atomics::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let pre = linker.instantiate_pre(&component).map_err(|e| anyhow!("Spin would not run this build: {e:?}"))?;
        let log = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(64 << 20);
        Ok(SpinHost { engine, pre, kv: Default::default(), swaps: Default::default(), semantics, variables, log })
    }

    /// Another replica of the same app: its own instances and log, the same
    /// key-value store (and swap counter).
    pub fn replica(&self) -> SpinHost {
        SpinHost {
            engine: self.engine.clone(),
            pre: self.pre.clone(),
            kv: self.kv.clone(),
            swaps: self.swaps.clone(),
            semantics: self.semantics,
            variables: self.variables.clone(),
            log: wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(64 << 20),
        }
    }

    /// One HTTP request through the component's incoming handler.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Result<Answer> {
        use http_body_util::{BodyExt, Full};
        let mut wasi = WasiCtx::builder();
        wasi.stdout(self.log.clone()).inherit_stderr();
        let state = SpinState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            kv: self.kv.clone(),
            swaps: self.swaps.clone(),
            semantics: self.semantics,
            variables: self.variables.clone(),
            limits: wasmtime::StoreLimitsBuilder::new().memory_size(INSTANCE_MEMORY_BYTES).build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let proxy = wasmtime_wasi_http::p2::bindings::ProxyPre::new(self.pre.clone())
            .map_err(|e| anyhow!("the Spin build exports no wasi:http incoming handler: {e:?}"))?
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow!("instantiating the Spin build: {e:?}"))?;
        let mut builder = http::Request::builder().method(method).uri(format!("http://spin.local{path}"));
        for (n, v) in headers {
            builder = builder.header(*n, v.as_str());
        }
        let request = builder
            .body(Full::new(bytes::Bytes::from(body)).map_err(|never| -> wasmtime_wasi_http::Error { match never {} }))
            .context("building the request")?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let scheme = wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http;
        let req = store.data_mut().http().new_incoming_request(scheme, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
            .map_err(|e| anyhow!("the Spin build trapped: {e:?}"))?;
        let response = receiver.await.context("no response")?.map_err(|e| anyhow!("the handler failed: {e:?}"))?;
        let status = response.status().as_u16();
        let collected = response.into_body().collect().await.map_err(|e| anyhow!("reading the body: {e:?}"))?;
        Ok(Answer { status, body: String::from_utf8_lossy(&collected.to_bytes()).into_owned() })
    }
}

/// What a component imports: each interface's qualified name and the names
/// of the items (functions, types) it uses from it.
pub fn component_imports(wasm: &Path) -> Result<Vec<(String, Vec<String>)>> {
    use wasmtime::component::types::ComponentItem;
    let engine = Engine::default();
    let component = Component::from_file(&engine, wasm).map_err(|e| anyhow!("loading {}: {e:?}", wasm.display()))?;
    Ok(component
        .component_type()
        .imports(&engine)
        .map(|(name, item)| {
            let items = match item.ty {
                ComponentItem::ComponentInstance(instance) => {
                    instance.exports(&engine).map(|(n, _)| n.to_string()).collect()
                }
                _ => vec![],
            };
            (name.to_string(), items)
        })
        .collect())
}
