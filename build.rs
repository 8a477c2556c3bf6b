//! A linker workaround only; nothing is generated.
//!
//! Cargo links every crate type of a dependency, so the Spin build (spin/)
//! also links this package's cdylib, without the `component` glue, though it
//! uses only the rlib. rust-lld of Rust 1.95 crashes (SIGSEGV in
//! `lld::wasm::ElemSection::writeBody`) on that link depending on symbol
//! hashes (2 of 13 crate hashes tried), so any change to this crate or its
//! features can trigger it; with the indirect function table exported, none
//! crashed. Cargo passes the argument on to the cdylib that depends on this
//! crate (the Spin component), where the exported table stays inside the
//! component. The harness component (`component` on) links as ever.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    if wasm && std::env::var_os("CARGO_FEATURE_COMPONENT").is_none() {
        println!("cargo:rustc-cdylib-link-arg=--export-table");
    }
}
