//! Per-vCPU hypervisor state other than event channels: whether the vCPU
//! is up (`_VPF_down`), its runstate accounting and the guest areas Xen
//! keeps updated for it (`VCPUOP_register_runstate_memory_area`,
//! `VCPUOP_register_vcpu_time_memory_area`).

use std::sync::atomic::Ordering;

use xen_abi::vcpu::*;
use xen_abi::xen::vcpu_info_offsets as vio;
use zerocopy::IntoBytes;

use crate::guest::Gpa;
use crate::Domain;

/// Size of `struct vcpu_time_info`.
const TIME_INFO_SIZE: usize = 32;

/// A guest area registered by guest-virtual address, translated when it
/// was registered (Linux and the BSDs register kernel addresses whose
/// mapping never changes). `second` is the page after, if it crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub first: Gpa,
    /// Bytes in the first page.
    pub first_len: usize,
    pub second: Option<Gpa>,
}

/// Xen's `struct vcpu_runstate_info`, kept in guest system time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runstate {
    pub state: i32,
    pub entry_ns: u64,
    pub time: [u64; 4],
}

/// One vCPU.
#[derive(Debug, Clone)]
pub struct VcpuState {
    /// Running or startable (not `_VPF_down`).
    pub up: bool,
    /// Has a register context (boot vCPU, `VCPUOP_initialise`, SIPI).
    pub initialised: bool,
    pub runstate: Runstate,
    pub runstate_area: Option<(Area, bool)>,
    pub time_area: Option<Area>,
    /// Register state from `VCPUOP_initialise`, applied at `VCPUOP_up`.
    pub pending_start: Option<crate::platform::VcpuStart>,
}

impl VcpuState {
    pub fn new(boot: bool) -> Self {
        Self {
            up: boot,
            initialised: boot,
            runstate: Runstate {
                state: if boot {
                    RUNSTATE_RUNNING
                } else {
                    RUNSTATE_OFFLINE
                },
                entry_ns: 0,
                time: [0; 4],
            },
            runstate_area: None,
            time_area: None,
            pending_start: None,
        }
    }
}

impl Runstate {
    /// Moves to `state` at `now`, accounting the time spent in the old one.
    pub fn enter(&mut self, state: i32, now: u64) {
        if let Some(t) = self.time.get_mut(self.state as usize) {
            *t = t.saturating_add(now.saturating_sub(self.entry_ns));
        }
        self.state = state;
        self.entry_ns = now;
    }

    /// The guest's view (native layout).
    pub fn info(&self) -> VcpuRunstateInfo {
        VcpuRunstateInfo {
            state: self.state,
            pad: 0,
            state_entry_time: self.entry_ns,
            time: self.time,
        }
    }

    /// The guest's view (32-bit layout).
    pub fn info_compat(&self) -> VcpuRunstateInfoCompat {
        let split = |v: u64| [v as u32, (v >> 32) as u32];
        VcpuRunstateInfoCompat {
            state: self.state,
            state_entry_time: split(self.entry_ns),
            time: self.time.map(split),
        }
    }
}

impl Domain {
    pub(crate) fn vcpu_state(&self, vcpu: u32) -> Option<std::sync::MutexGuard<'_, VcpuState>> {
        self.vcpus
            .get(vcpu as usize)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `vcpu` is executing guest code: mark it up if it was not (started
    /// by INIT/SIPI), and running if it was blocked in the platform (a
    /// `SCHEDOP_block` handed to KVM ends without telling us; its blocked
    /// time runs until the vCPU's next hypercall).
    pub(crate) fn note_running(&self, vcpu: u32) {
        let change = match self.vcpu_state(vcpu) {
            Some(mut v) if !v.up => {
                v.up = true;
                v.initialised = true;
                true
            }
            Some(v) => v.runstate.state != RUNSTATE_RUNNING,
            None => false,
        };
        if change {
            self.set_runstate(vcpu, RUNSTATE_RUNNING);
        }
    }

    /// Moves `vcpu` to runstate `state` and updates its guest area.
    pub(crate) fn set_runstate(&self, vcpu: u32, state: i32) {
        let now = self.platform.system_time_ns();
        let area = {
            let Some(mut v) = self.vcpu_state(vcpu) else {
                return;
            };
            v.runstate.enter(state, now);
            v.runstate_area.map(|(a, compat)| (a, compat, v.runstate))
        };
        if let Some((a, compat, rs)) = area {
            self.write_runstate(a, compat, &rs);
        }
    }

    pub(crate) fn write_runstate(&self, a: Area, compat: bool, rs: &Runstate) {
        let r = if compat {
            self.write_area(a, rs.info_compat().as_bytes())
        } else {
            self.write_area(a, rs.info().as_bytes())
        };
        if r.is_err() {
            tracing::debug!("runstate area at {:#x} is not guest memory", a.first);
        }
    }

    pub(crate) fn write_area(&self, a: Area, bytes: &[u8]) -> Result<(), crate::guest::MemError> {
        let n = a.first_len.min(bytes.len());
        self.mem.write(a.first, &bytes[..n])?;
        if let (Some(s), true) = (a.second, bytes.len() > n) {
            self.mem.write(s, &bytes[n..])?;
        }
        Ok(())
    }

    /// Copies `vcpu`'s pvclock (kept by the platform in its `vcpu_info`)
    /// to its secondary time area, if registered and the pvclock is valid.
    pub(crate) fn update_time_area(&self, vcpu: u32) {
        let Some(area) = self.vcpu_state(vcpu).and_then(|v| v.time_area) else {
            return;
        };
        let Some(vi) = self.state().vcpu_info_gpa(vcpu) else {
            return;
        };
        let mut t = [0u8; TIME_INFO_SIZE];
        let src = vi + vio::TIME as u64;
        for _ in 0..4 {
            let v1 = match self.mem.atomic_u32(src) {
                Ok(v) => v.load(Ordering::SeqCst),
                Err(_) => return,
            };
            if v1 == 0 || v1 & 1 != 0 {
                std::thread::yield_now();
                continue;
            }
            if self.mem.read(src, &mut t).is_err() {
                return;
            }
            let v2 = self.mem.atomic_u32(src).map(|v| v.load(Ordering::SeqCst));
            if v2 == Ok(v1) {
                let _ = self.write_area(area, &t);
                return;
            }
        }
    }
}
