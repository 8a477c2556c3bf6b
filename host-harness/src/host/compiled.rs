//! Compiling the component takes seconds; a run takes milliseconds. The
//! compiled artifact is kept in a cache directory, keyed by the .wasm's
//! SHA-256 and the engine's compatibility hash (wasmtime version and
//! settings), so each `connector` invocation after the first loads it in
//! milliseconds.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept: `CONNECTOR_CACHE_DIR`, else the
/// user's cache directory; None when there is none (then: compile).
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONNECTOR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("netsuite-salesforce-connector"))
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let digest: String = Sha256::digest(wasm)[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{digest}-{:016x}", engine_hash.finish())
}

/// The component in `wasm`, from the cache when it was compiled before.
pub fn load(engine: &Engine, wasm: &Path) -> Result<Component> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading the connector component {}", wasm.display()))?;
    let Some(dir) = cache_dir() else {
        return compile(engine, &bytes, wasm);
    };
    let cached = dir.join(format!("{}.cwasm", cache_key(engine, &bytes)));
    if !private(&dir) {
        tracing::warn!(
            "not using the compiled-component cache {}: it must be a directory of yours that no one else can write \
             (mode 0700); compiling instead",
            dir.display()
        );
        return compile(engine, &bytes, wasm);
    }
    if cached.is_file() {
        // SAFETY: the file is one this function wrote (into a directory only
        // the user can write, keyed by the source's hash); wasmtime checks
        // that it was compiled by this version with these settings and
        // refuses it otherwise, and then it is compiled again.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &cached) } {
            return Ok(component);
        }
    }
    let component = compile(engine, &bytes, wasm)?;
    // The cache is an optimisation: failing to write it costs the next run
    // a compile, nothing else.
    let _ = store(&dir, &cached, &component);
    Ok(component)
}

fn compile(engine: &Engine, bytes: &[u8], wasm: &Path) -> Result<Component> {
    Component::new(engine, bytes)
        .map_err(|e| anyhow::anyhow!("loading the connector component {}: {e:?}", wasm.display()))
}

fn store(dir: &Path, path: &Path, component: &Component) -> Result<()> {
    create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Whether `dir` is (or will be created as) the user's own, writable by no
/// one else: a compiled component is native code this process runs.
#[cfg(unix)]
fn private(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Ok(meta) => meta.is_dir() && meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o022 == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(not(unix))]
fn private(_: &Path) -> bool {
    true
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    Ok(())
}
