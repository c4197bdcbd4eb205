//! One domain's hypervisor state and the hypercall dispatcher.

use std::sync::Arc;

use crate::guest::{GuestMemory, VcpuContext};
use crate::platform::Platform;

/// What the toolstack decided about the domain that xen-emu needs to answer
/// the guest (filled from xl.cfg by the binary, via the VMM).
#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub domid: u32,
    pub max_vcpus: u32,
    /// `(major, minor)` of the Xen we pretend to be (`xen_version` key).
    pub xen_version: (u16, u16),
    pub max_grant_frames: u32,
    pub max_event_channels: u32,
    pub max_pirq: u32,
}

/// A Xen domain as the hypervisor sees it.
pub struct Domain {
    config: DomainConfig,
    mem: Arc<dyn GuestMemory>,
    platform: Arc<dyn Platform>,
}

impl Domain {
    pub fn new(config: DomainConfig, mem: Arc<dyn GuestMemory>, platform: Arc<dyn Platform>) -> Self {
        Self { config, mem, platform }
    }

    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// Runs hypercall `nr` with its (up to five) register arguments for the
    /// calling vCPU and returns the value for rax/eax (negative Xen errno on
    /// failure). Both trap paths call this; it never panics on guest input.
    pub fn hypercall(&self, vcpu: &mut dyn VcpuContext, nr: u64, args: [u64; 5]) -> i64 {
        let _ = (&self.mem, &self.platform, vcpu, nr, args);
        -38 // ENOSYS until the dispatcher lands (issue 4)
    }
}
