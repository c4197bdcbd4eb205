//! What xen-emu asks of the VMM: the things only the owner of the KVM VM can do.
//!
//! The VMM implements this; tests implement it with a recording fake.

use crate::guest::Gpa;

/// Why the guest asked to stop (`SCHEDOP_shutdown` reasons, `sched.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
}

/// How an event-channel upcall reaches a vCPU (`HVM_PARAM_CALLBACK_IRQ`,
/// `HVMOP_set_evtchn_upcall_vector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcall {
    /// Inject this vector on the vCPU's local APIC (edge, fixed delivery).
    Vector(u8),
    /// Assert (`true`) or deassert a GSI on the interrupt controller.
    Gsi { gsi: u32, level: bool },
}

/// A page xen-emu wants placed at a guest frame the guest chose
/// (`XENMEM_add_to_physmap`), possibly where no RAM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialPage {
    SharedInfo,
    /// Grant-table frame `idx`.
    GrantFrame(u32),
}

/// Services of the VMM that owns the domain. All methods may be called from
/// any vCPU thread concurrently.
pub trait Platform: Send + Sync {
    /// Deliver an upcall to `vcpu` (wakes it if it is halted or blocked).
    fn upcall(&self, vcpu: u32, upcall: Upcall);
    /// Map the host page behind `page` at guest frame `gfn`, replacing what
    /// was there; after it returns, [`crate::guest::GuestMemory`] reaches the
    /// page at `gfn << 12`.
    fn map_special_page(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError>;
    /// The guest moved (or first placed) vCPU `vcpu`'s `vcpu_time_info` to
    /// `gpa`: keep a valid pvclock there (KVM's `MSR_KVM_SYSTEM_TIME_NEW`).
    fn set_pvclock_area(&self, vcpu: u32, gpa: Gpa);
    /// Guest wants to stop; the VMM applies the matching `on_*` action.
    fn shutdown(&self, reason: ShutdownReason);
    /// Bytes the guest wrote with `CONSOLEIO_write` (the hypervisor log, `xl dmesg`).
    fn console_io_write(&self, bytes: &[u8]);
    /// Wake `vcpu` if it is blocked in `SCHEDOP_block`/`poll` so it rechecks its state.
    fn kick(&self, vcpu: u32);
    /// Nanoseconds of the guest's system time (the same clock as its pvclock).
    fn system_time_ns(&self) -> u64;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("guest frame {0:#x} cannot hold a special page")]
    BadGfn(u64),
}
