//! What the toolstack asks of a running domain through Xen's domctls:
//! the memory limit (`XEN_DOMCTL_max_mem`, behind `xl mem-set` and
//! `xl mem-max`), the pages the domain holds (`getdomaininfo`'s
//! `tot_pages`, `xl list`'s Mem column) and each vCPU's state
//! (`XEN_DOMCTL_getvcpuinfo`, `xl vcpu-list`).

use xen_abi::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_RUNNING};

use crate::Domain;

/// One vCPU as `XEN_DOMCTL_getvcpuinfo` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Not `_VPF_down`: started and not taken down with `VCPUOP_down`.
    pub online: bool,
    /// In runstate running.
    pub running: bool,
    /// In runstate blocked (`SCHEDOP_block` / `poll`).
    pub blocked: bool,
    /// Guest system time spent running, nanoseconds (Xen's `cpu_time`).
    pub time_ns: u64,
}

impl Domain {
    /// `d->max_pages`: the most pages the guest may hold; the reservation
    /// hypercalls fail beyond it.
    pub fn max_pages(&self) -> u64 {
        self.state().max_pages
    }

    /// `XEN_DOMCTL_max_mem`: a new page limit. As in Xen, pages the guest
    /// already holds above it stay; only growing is refused.
    pub fn set_max_pages(&self, pages: u64) {
        self.state().max_pages = pages;
    }

    /// `d->tot_pages`: pages the domain holds now (ballooned-out frames
    /// are not counted).
    pub fn tot_pages(&self) -> u64 {
        self.state().tot_pages
    }

    /// `XEN_DOMCTL_getvcpuinfo` for `vcpu` (`None` beyond `max_vcpus`).
    pub fn vcpu_info(&self, vcpu: u32) -> Option<VcpuInfo> {
        let now = self.platform.system_time_ns();
        let v = self.vcpu_state(vcpu)?;
        let mut time_ns = v.runstate.time[RUNSTATE_RUNNING as usize];
        if v.runstate.state == RUNSTATE_RUNNING {
            time_ns = time_ns.saturating_add(now.saturating_sub(v.runstate.entry_ns));
        }
        Some(VcpuInfo {
            online: v.up,
            running: v.up && v.runstate.state == RUNSTATE_RUNNING,
            blocked: v.up && v.runstate.state == RUNSTATE_BLOCKED,
            time_ns,
        })
    }

    /// `max_vcpus`: vCPU ids `0..n` exist.
    pub fn max_vcpus(&self) -> u32 {
        self.vcpus.len() as u32
    }
}
