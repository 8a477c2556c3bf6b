//! The guest's wall clock: the real one, or any other the host is given
//! (the simulations drive time forward; production never sets one).

use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi::HostWallClock;

/// A wall clock shared by the runs of a tenant.
#[derive(Clone)]
pub struct GuestClock(Arc<dyn HostWallClock + Send + Sync>);

impl GuestClock {
    pub fn new(clock: impl HostWallClock + Sync + 'static) -> GuestClock {
        GuestClock(Arc::new(clock))
    }
}

impl HostWallClock for GuestClock {
    fn resolution(&self) -> Duration {
        self.0.resolution()
    }

    fn now(&self) -> Duration {
        self.0.now()
    }
}

impl std::fmt::Debug for GuestClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestClock")
    }
}
