//! Everything one run's store holds: WASI, wasi-http with the tenant's
//! outbound policy, config, the tenant's key-value store, and limits.

use super::outbound::OutboundPolicy;
use crate::store::RunStore;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub outbound: OutboundPolicy,
    pub config: WasiConfigVariables,
    pub kv: RunStore,
    pub limits: super::limits::Limits,
    pub cpu: super::cpu::CpuMeter,
    pub progress: Option<std::sync::Arc<super::progress::Progress>>,
    /// Set when the host wants the run to end at its next checkpoint.
    pub stop: std::sync::Arc<super::control::StopRequest>,
    /// What the component wrote to its standard error (the run log's).
    pub stderr: super::guest_stderr::GuestStderr,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}
