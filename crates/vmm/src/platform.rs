//! xen-emu's [`Platform`] on KVM: upcalls as MSIs to the in-kernel LAPIC,
//! special pages as memslots, pvclock through KVM's `MSR_KVM_SYSTEM_TIME_NEW`,
//! shutdown recorded for the run loop, the hypervisor console log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;
use xen_emu::guest::Gpa;
use xen_emu::platform::{MapError, Platform, ShutdownReason, SpecialPage, Upcall};

use crate::memory::DomainMemory;

/// KVM's pvclock MSR: a guest-physical address (bit 0 = enable) where KVM
/// keeps a `pvclock_vcpu_time_info`, which is Xen's `vcpu_time_info`.
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

/// State shared between the vCPU threads, the platform and `run_domain`.
pub(crate) struct Shared {
    /// The first shutdown reason the guest gave.
    pub shutdown: Mutex<Option<ShutdownReason>>,
    /// Set when every vCPU must leave its run loop.
    pub stop: AtomicBool,
    /// `CONSOLEIO_write` output.
    pub hypervisor_log: Mutex<Vec<u8>>,
    /// MSR writes each vCPU applies to itself before its next `KVM_RUN`
    /// (vCPU ioctls belong on the vCPU's own thread).
    pub pending_msrs: Vec<Mutex<Vec<(u32, u64)>>>,
    /// Each vCPU thread, for kicks.
    pub threads: Mutex<Vec<Option<libc::pthread_t>>>,
    /// `VCPUOP_up`/`VCPUOP_down` requests, per vCPU.
    pub vcpu_ctl: Vec<crate::smp::VcpuCtl>,
    /// NMIs the toolstack asked for (`xl trigger nmi`), per vCPU; each
    /// vCPU injects its own with `KVM_NMI` before its next `KVM_RUN`.
    pub pending_nmi: Vec<AtomicBool>,
    /// Set only with `VmConfig::debug_hypercall`: the VM the benchmark's
    /// private hypercall signals MSIs on (crate::debug_hook).
    pub debug_vm: std::sync::OnceLock<Arc<VmFd>>,
}

impl Shared {
    pub fn new(vcpus: u32) -> Self {
        Self {
            shutdown: Mutex::new(None),
            stop: AtomicBool::new(false),
            hypervisor_log: Mutex::new(Vec::new()),
            pending_msrs: (0..vcpus).map(|_| Mutex::new(Vec::new())).collect(),
            threads: Mutex::new(vec![None; vcpus as usize]),
            vcpu_ctl: (0..vcpus).map(|_| Default::default()).collect(),
            pending_nmi: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
            debug_vm: std::sync::OnceLock::new(),
        }
    }

    /// Makes `vcpu` leave `KVM_RUN` (with `EINTR`) if it is in it.
    pub fn kick(&self, vcpu: u32) {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(t)) = threads.get(vcpu as usize) {
            // SAFETY: `t` is a live vCPU thread (entries are cleared before a
            // thread exits); the signal has a no-op handler installed.
            unsafe { libc::pthread_kill(*t, crate::vcpu::kick_signal()) };
        }
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in &self.vcpu_ctl {
            c.notify();
        }
        let n = self.pending_msrs.len() as u32;
        for v in 0..n {
            self.kick(v);
        }
    }
}

/// The [`Platform`] the VMM hands to xen-emu.
pub(crate) struct KvmPlatform {
    pub vm: Arc<VmFd>,
    pub mem: Arc<DomainMemory>,
    pub shared: Arc<Shared>,
    pub apic: bool,
    warned_no_apic: AtomicBool,
    /// The GSI/INTx event-channel callback line.
    pub callback_gsi: crate::callback_gsi::CallbackGsi,
}

impl KvmPlatform {
    pub fn new(vm: Arc<VmFd>, mem: Arc<DomainMemory>, shared: Arc<Shared>, apic: bool) -> Self {
        Self {
            vm,
            mem,
            shared,
            apic,
            warned_no_apic: AtomicBool::new(false),
            callback_gsi: Default::default(),
        }
    }
}

/// The MSI that delivers `vector` to the LAPIC with id `apic_id` (fixed,
/// edge, physical destination).
pub fn msi_for(apic_id: u32, vector: u8) -> kvm_msi {
    kvm_msi {
        address_lo: 0xfee0_0000 | ((apic_id & 0xff) << 12),
        address_hi: 0,
        data: u32::from(vector),
        ..Default::default()
    }
}

impl Platform for KvmPlatform {
    fn upcall(&self, vcpu: u32, upcall: Upcall) {
        match upcall {
            Upcall::Vector(v) => {
                if !self.apic {
                    if !self.warned_no_apic.swap(true, Ordering::Relaxed) {
                        tracing::warn!("vector upcall with apic=0: no local APIC to deliver it");
                    }
                    return;
                }
                if let Err(e) = self.vm.signal_msi(msi_for(crate::acpi::apic_id(vcpu), v)) {
                    tracing::warn!("KVM_SIGNAL_MSI vector {v} to vCPU {vcpu}: {e}");
                }
            }
            // Level-triggered while vCPU 0's upcall is pending: an irqfd
            // whose resample re-asserts it (callback_gsi.rs).
            Upcall::Gsi { gsi, level: true } => self.callback_gsi.assert(&self.vm, gsi),
            Upcall::Gsi { gsi, level: false } => {
                if let Err(e) = self.vm.set_irq_line(gsi, false) {
                    tracing::warn!("KVM_IRQ_LINE gsi {gsi}: {e}");
                }
            }
        }
    }

    fn map_special_page(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError> {
        self.mem.map_overlay(page, gfn)
    }

    fn map_grant_page(&self, gfn: u64, frame: Gpa) -> Result<(), MapError> {
        self.mem.map_grant_alias(gfn, frame)
    }

    fn unmap_grant_page(&self, gfn: u64) {
        self.mem.unmap_grant_alias(gfn)
    }

    fn set_pvclock_area(&self, vcpu: u32, gpa: Gpa) {
        if let Some(q) = self.shared.pending_msrs.get(vcpu as usize) {
            q.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((MSR_KVM_SYSTEM_TIME_NEW, gpa | 1));
            if crate::vcpu::current_vcpu() != Some(vcpu) {
                self.shared.kick(vcpu);
            }
        }
    }

    fn shutdown(&self, reason: ShutdownReason) {
        let mut s = self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            tracing::info!("guest requested shutdown: {reason:?}");
            *s = Some(reason);
        }
        drop(s);
        self.shared.request_stop();
    }

    fn console_io_write(&self, bytes: &[u8]) {
        tracing::info!(target: "xen_console", "{}", String::from_utf8_lossy(bytes).trim_end());
        self.shared
            .hypervisor_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
    }

    fn kick(&self, vcpu: u32) {
        if crate::vcpu::current_vcpu() != Some(vcpu) {
            self.shared.kick(vcpu);
        }
    }

    fn vcpu_up(&self, vcpu: u32, start: Option<xen_emu::platform::VcpuStart>) -> bool {
        let Some(c) = self.shared.vcpu_ctl.get(vcpu as usize) else {
            return false;
        };
        if !c.up(start) {
            return false;
        }
        if crate::vcpu::current_vcpu() != Some(vcpu) {
            self.shared.kick(vcpu);
        }
        true
    }

    fn vcpu_down(&self, vcpu: u32) {
        if let Some(c) = self.shared.vcpu_ctl.get(vcpu as usize) {
            c.down();
            if crate::vcpu::current_vcpu() != Some(vcpu) {
                self.shared.kick(vcpu);
            }
        }
    }

    fn system_time_ns(&self) -> u64 {
        // The VM's kvmclock is what the guest's pvclock computes.
        match self.vm.get_clock() {
            Ok(c) => c.clock,
            Err(e) => {
                tracing::warn!("KVM_GET_CLOCK: {e}");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_targets_xen_apic_ids() {
        let m = msi_for(crate::acpi::apic_id(3), 0xf3);
        assert_eq!(m.address_lo, 0xfee0_6000);
        assert_eq!(m.data, 0xf3);
    }
}
