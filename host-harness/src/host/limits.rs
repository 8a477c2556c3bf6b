//! The guest's resource limits, with what the run used: its peak linear
//! memory, and whether it met the memory cap (so a trap after a refused
//! growth is reported as "out of memory", naming the setting).

use wasmtime::{ResourceLimiter, StoreLimits};

pub struct Limits {
    inner: StoreLimits,
    /// The largest linear memory the guest had (bytes).
    pub peak_memory: usize,
    /// A memory growth was refused: the guest hit `max_memory_mb`.
    pub memory_refused: bool,
}

impl Limits {
    pub fn new(max_memory_bytes: usize) -> Limits {
        let inner = wasmtime::StoreLimitsBuilder::new().memory_size(max_memory_bytes).build();
        Limits { inner, peak_memory: 0, memory_refused: false }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        } else {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}
