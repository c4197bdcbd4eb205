//! vCPU bring-up and take-down requested through Xen's `VCPUOP_up` /
//! `VCPUOP_down` (`VCPUOP_initialise` gives the register state), on top of
//! the LAPIC's INIT/SIPI that KVM handles by itself.
//!
//! Requests are posted by whichever thread made the hypercall and applied
//! by the target vCPU's own thread (vCPU ioctls belong there): it is
//! kicked out of `KVM_RUN`, loads the state and becomes runnable, or parks
//! until it is brought up again.

use std::sync::{Condvar, Mutex};

use kvm_bindings::{kvm_mp_state, kvm_segment, KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE};
use kvm_ioctls::VcpuFd;
use xen_emu::platform::{Segments32, VcpuStart};

use crate::VmmError;

/// One vCPU's pending bring-up/take-down request.
#[derive(Debug, Default)]
pub(crate) struct VcpuCtl {
    req: Mutex<Req>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Req {
    /// A thread runs this vCPU (only those can be brought up).
    exists: bool,
    /// Register state to load before the next entry.
    start: Option<VcpuStart>,
    /// Stay out of `KVM_RUN` until brought up.
    down: bool,
}

impl VcpuCtl {
    fn lock(&self) -> std::sync::MutexGuard<'_, Req> {
        self.req.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vCPU's thread is running it.
    pub fn set_exists(&self, exists: bool) {
        self.lock().exists = exists;
        self.cv.notify_all();
    }

    /// `VCPUOP_up`: false if no thread runs this vCPU.
    pub fn up(&self, start: Option<VcpuStart>) -> bool {
        let mut r = self.lock();
        if !r.exists {
            return false;
        }
        if start.is_some() {
            r.start = start;
        }
        r.down = false;
        self.cv.notify_all();
        true
    }

    /// `VCPUOP_down`.
    pub fn down(&self) {
        self.lock().down = true;
        self.cv.notify_all();
    }

    /// Wakes a parked vCPU thread (domain stopping).
    pub fn notify(&self) {
        self.cv.notify_all();
    }

    /// On the vCPU's thread before `KVM_RUN`: parks while down (until up
    /// or `stopping()`), then applies a pending start. Returns whether the
    /// caller should re-check its stop flag first.
    pub fn service(&self, fd: &VcpuFd, stopping: impl Fn() -> bool) -> Result<bool, VmmError> {
        let mut r = self.lock();
        let mut parked = false;
        while r.down && !stopping() {
            parked = true;
            r = self
                .cv
                .wait_timeout(r, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let start = r.start.take();
        drop(r);
        if let Some(s) = start {
            load_start_state(fd, &s)?;
        }
        Ok(parked)
    }
}

/// Xen's packed segment attributes → KVM's segment fields.
fn segment(base: u32, limit: u32, ar: u16, selector: u16) -> kvm_segment {
    kvm_segment {
        base: u64::from(base),
        limit,
        selector,
        type_: (ar & 0xf) as u8,
        s: ((ar >> 4) & 1) as u8,
        dpl: ((ar >> 5) & 3) as u8,
        present: ((ar >> 7) & 1) as u8,
        avl: ((ar >> 8) & 1) as u8,
        l: ((ar >> 9) & 1) as u8,
        db: ((ar >> 10) & 1) as u8,
        g: ((ar >> 11) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// The segments Xen loads for a 64-bit `vcpu_hvm_context`
/// (`arch_set_info_hvm_guest`): flat 64-bit code, flat data, 32-bit busy TSS.
fn long_mode_segments() -> Segments32 {
    Segments32 {
        base: [0; 5],
        limit: [u32::MAX, u32::MAX, u32::MAX, u32::MAX, 0x67],
        ar: [0xa9b, 0xc93, 0xc93, 0xc93, 0x8b],
    }
}

/// Loads `s` into the vCPU and makes it runnable (leaving the
/// wait-for-SIPI state).
pub(crate) fn load_start_state(fd: &VcpuFd, s: &VcpuStart) -> Result<(), VmmError> {
    let mut sregs = fd.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
    let seg = s.segments.unwrap_or_else(long_mode_segments);
    sregs.cs = segment(seg.base[0], seg.limit[0], seg.ar[0], 0);
    sregs.ds = segment(seg.base[1], seg.limit[1], seg.ar[1], 0);
    sregs.ss = segment(seg.base[2], seg.limit[2], seg.ar[2], 0);
    sregs.es = segment(seg.base[3], seg.limit[3], seg.ar[3], 0);
    sregs.fs = sregs.ds;
    sregs.gs = sregs.ds;
    sregs.tr = segment(seg.base[4], seg.limit[4], seg.ar[4], 0);
    sregs.cr0 = s.cr0;
    sregs.cr3 = s.cr3;
    sregs.cr4 = s.cr4;
    sregs.efer = s.efer;
    fd.set_sregs(&sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
    let g = &s.gprs;
    let regs = kvm_bindings::kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        rip: s.rip,
        rflags: s.rflags | 2,
        ..Default::default()
    };
    fd.set_regs(&regs).map_err(VmmError::kvm("KVM_SET_REGS"))?;
    fd.set_mp_state(kvm_mp_state {
        mp_state: KVM_MP_STATE_RUNNABLE,
    })
    .map_err(VmmError::kvm("KVM_SET_MP_STATE"))
}

/// `SCHEDOP_block` handed to KVM: the vCPU halts in the kernel after the
/// hypercall completes, woken by any interrupt it can take (the upcall
/// vector, its LAPIC timer, IPIs).
pub(crate) fn halt(fd: &VcpuFd) -> Result<(), VmmError> {
    fd.set_mp_state(kvm_mp_state {
        mp_state: KVM_MP_STATE_HALTED,
    })
    .map_err(VmmError::kvm("KVM_SET_MP_STATE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_segment_attributes_decode() {
        let cs = segment(0, u32::MAX, 0xa9b, 0);
        assert_eq!(
            (cs.type_, cs.s, cs.present, cs.l, cs.db, cs.g),
            (0xb, 1, 1, 1, 0, 1)
        );
        let tr = segment(0x1000, 0x67, 0x8b, 0);
        assert_eq!((tr.type_, tr.s, tr.present, tr.base), (0xb, 0, 1, 0x1000));
    }

    #[test]
    fn up_needs_a_thread_and_down_parks_until_up() {
        let c = VcpuCtl::default();
        assert!(!c.up(None));
        c.set_exists(true);
        assert!(c.up(Some(VcpuStart::default())));
        c.down();
        assert!(c.lock().down);
        assert!(c.up(None));
        let r = c.lock();
        assert!(
            !r.down && r.start.is_some(),
            "up(None) keeps a pending start"
        );
    }
}
