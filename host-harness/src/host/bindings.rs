//! Host-side bindings of the `connector` world. WASI packages map to
//! wasmtime-wasi's implementations; key-value, config and audit are ours.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connector",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:keyvalue/store.bucket": crate::host::keyvalue::BucketHandle,
    },
});
