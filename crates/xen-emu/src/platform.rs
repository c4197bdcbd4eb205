//! What xen-emu asks of the VMM: the things only the owner of the KVM VM can do.
//!
//! The VMM implements this; tests implement it with a recording fake.

use crate::guest::Gpa;

/// Why the guest asked to stop (`SCHEDOP_shutdown` reasons, `sched.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff` → `on_poweroff`.
    Poweroff,
    /// `SHUTDOWN_reboot` → `on_reboot`.
    Reboot,
    /// `SHUTDOWN_suspend` (save/restore; no toolstack here, treat as stop).
    Suspend,
    /// `SHUTDOWN_crash` → `on_crash`.
    Crash,
    /// `SHUTDOWN_watchdog` → `on_watchdog`.
    Watchdog,
    /// `SHUTDOWN_soft_reset` → `on_soft_reset`.
    SoftReset,
}

/// How an event-channel upcall reaches a vCPU (`HVM_PARAM_CALLBACK_IRQ`,
/// `HVMOP_set_evtchn_upcall_vector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcall {
    /// Inject this vector on the vCPU's local APIC (edge, fixed delivery).
    Vector(u8),
    /// Assert (`true`) or deassert a GSI on the interrupt controller
    /// (`HVM_PARAM_CALLBACK_IRQ` of type GSI; only vCPU 0's events drive it).
    /// PCI INTx callbacks are stored but not delivered yet (issue 5).
    Gsi { gsi: u32, level: bool },
}

/// A page xen-emu wants placed at a guest frame the guest chose
/// (`XENMEM_add_to_physmap`), possibly where no RAM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialPage {
    /// The domain's `shared_info` page.
    SharedInfo,
    /// Grant-table frame `idx` (v1 entries, 512 per frame).
    GrantFrame(u32),
}

/// Services of the VMM that owns the domain. All methods may be called from
/// any vCPU thread concurrently, and from VMM threads that call the
/// [`crate::Domain`] backend API.
pub trait Platform: Send + Sync {
    /// Deliver an upcall to `vcpu`: inject the vector / set the GSI level,
    /// and make the vCPU notice it (kick it out of `KVM_RUN` if it is in
    /// the guest, or let its next entry see it). xen-emu itself wakes a vCPU
    /// that is blocked inside [`crate::Domain::hypercall`].
    fn upcall(&self, vcpu: u32, upcall: Upcall);
    /// Map the host page behind `page` at guest frame `gfn`, replacing what
    /// was there; after it returns, [`crate::guest::GuestMemory`] reaches the
    /// page at `gfn << 12`. The first call for a page allocates it zeroed;
    /// later calls move it, keeping its contents (and give the RAM page, if
    /// any, back at the old frame).
    fn map_special_page(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError>;
    /// The guest moved (or first placed) vCPU `vcpu`'s `vcpu_time_info` to
    /// `gpa`: keep a valid pvclock there (KVM's `MSR_KVM_SYSTEM_TIME_NEW`).
    /// `gpa` is 32-byte aligned and lies in guest RAM or shared_info.
    fn set_pvclock_area(&self, vcpu: u32, gpa: Gpa);
    /// Guest wants to stop; the VMM applies the matching `on_*` action.
    /// Called once per `SCHEDOP_shutdown`; the calling vCPU then returns
    /// from the hypercall normally and the VMM stops it.
    fn shutdown(&self, reason: ShutdownReason);
    /// Bytes the guest wrote with `CONSOLEIO_write` (the hypervisor log, `xl dmesg`).
    fn console_io_write(&self, bytes: &[u8]);
    /// Make `vcpu` leave `KVM_RUN` and re-enter so it notices new state.
    /// xen-emu does not call this today (its upcalls go through
    /// [`Platform::upcall`], which must already make the vCPU notice); it
    /// is reserved for Xen timers (issue 5).
    fn kick(&self, vcpu: u32);
    /// Nanoseconds of the guest's system time (the same clock as its pvclock).
    fn system_time_ns(&self) -> u64;
    /// `VCPUOP_up`: let `vcpu` run. `start` is the state from
    /// `VCPUOP_initialise` on its first start; `None` resumes a vCPU that
    /// `VCPUOP_down` stopped where it was. Returns `false` if the platform
    /// cannot run that vCPU (then the guest gets `-EINVAL`).
    fn vcpu_up(&self, vcpu: u32, start: Option<VcpuStart>) -> bool {
        let _ = (vcpu, start);
        false
    }
    /// `VCPUOP_down`: stop running `vcpu` (at its next exit, or now if it
    /// is the caller) until [`Platform::vcpu_up`].
    fn vcpu_down(&self, vcpu: u32) {
        let _ = vcpu;
    }
    /// `GNTTABOP_map_grant_ref` with `GNTMAP_host_map` by the guest on its
    /// own grant: make the page at guest-physical `frame` (the granted
    /// frame, guest memory) appear a second time at guest frame `gfn`,
    /// where xen-emu found no populated RAM and no special page. After it
    /// returns, [`crate::guest::GuestMemory`] reaches the page at `gfn << 12`
    /// too. Default: not supported (the guest gets `GNTST_general_error`).
    fn map_grant_page(&self, gfn: u64, frame: Gpa) -> Result<(), MapError> {
        let _ = frame;
        Err(MapError::BadGfn(gfn))
    }
    /// Undoes [`Platform::map_grant_page`] at `gfn` (giving back the RAM
    /// page behind it, if any).
    fn unmap_grant_page(&self, gfn: u64) {
        let _ = gfn;
    }
}

/// Why a special page could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The frame is beyond what the VMM can map (guest physical-address width).
    #[error("guest frame {0:#x} cannot hold a special page")]
    BadGfn(u64),
}

/// 32-bit segment state of a [`VcpuStart`] (`vcpu_hvm_x86_32`), in the
/// order CS, DS, SS, ES, TR. `ar` is Xen's packed attribute format
/// (type:4 s:1 dpl:2 p:1 avl:1 l:1 db:1 g:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segments32 {
    pub base: [u32; 5],
    pub limit: [u32; 5],
    pub ar: [u16; 5],
}

/// The register state `VCPUOP_initialise` gives a vCPU (Xen's
/// `vcpu_hvm_context`), validated by xen-emu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VcpuStart {
    /// `VCPU_HVM_MODE_64B`: flat 64-bit code/data segments, 32-bit TSS.
    pub long_mode: bool,
    /// rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi.
    pub gprs: [u64; 8],
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// Segments of a 32-bit start (`None` for 64-bit).
    pub segments: Option<Segments32>,
}
