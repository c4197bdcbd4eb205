//! `xen.h` and `arch-x86/xen*.h`: hypercall numbers, VIRQs, console_io,
//! `shared_info`, `vcpu_info`, `vcpu_time_info` and their 32-bit forms.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// Hypercall numbers (`__HYPERVISOR_*`).
pub const HYPERVISOR_SET_TRAP_TABLE: u64 = 0;
pub const HYPERVISOR_MMU_UPDATE: u64 = 1;
pub const HYPERVISOR_SET_GDT: u64 = 2;
pub const HYPERVISOR_STACK_SWITCH: u64 = 3;
pub const HYPERVISOR_SET_CALLBACKS: u64 = 4;
pub const HYPERVISOR_FPU_TASKSWITCH: u64 = 5;
pub const HYPERVISOR_SCHED_OP_COMPAT: u64 = 6;
pub const HYPERVISOR_PLATFORM_OP: u64 = 7;
pub const HYPERVISOR_SET_DEBUGREG: u64 = 8;
pub const HYPERVISOR_GET_DEBUGREG: u64 = 9;
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u64 = 10;
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
pub const HYPERVISOR_MULTICALL: u64 = 13;
pub const HYPERVISOR_UPDATE_VA_MAPPING: u64 = 14;
pub const HYPERVISOR_SET_TIMER_OP: u64 = 15;
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u64 = 16;
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u64 = 19;
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = 20;
pub const HYPERVISOR_VM_ASSIST: u64 = 21;
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
pub const HYPERVISOR_IRET: u64 = 23;
pub const HYPERVISOR_VCPU_OP: u64 = 24;
pub const HYPERVISOR_SET_SEGMENT_BASE: u64 = 25;
pub const HYPERVISOR_MMUEXT_OP: u64 = 26;
pub const HYPERVISOR_XSM_OP: u64 = 27;
pub const HYPERVISOR_NMI_OP: u64 = 28;
pub const HYPERVISOR_SCHED_OP: u64 = 29;
pub const HYPERVISOR_CALLBACK_OP: u64 = 30;
pub const HYPERVISOR_XENOPROF_OP: u64 = 31;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;
pub const HYPERVISOR_HVM_OP: u64 = 34;
pub const HYPERVISOR_SYSCTL: u64 = 35;
pub const HYPERVISOR_DOMCTL: u64 = 36;
pub const HYPERVISOR_KEXEC_OP: u64 = 37;
pub const HYPERVISOR_TMEM_OP: u64 = 38;
pub const HYPERVISOR_ARGO_OP: u64 = 39;
pub const HYPERVISOR_XENPMU_OP: u64 = 40;
pub const HYPERVISOR_DM_OP: u64 = 41;
pub const HYPERVISOR_HYPFS_OP: u64 = 42;
/// Xen's hypercall table has 64 entries (`NR_hypercalls`).
pub const NR_HYPERCALLS: u64 = 64;

// Virtual interrupts (`VIRQ_*`).
pub const VIRQ_TIMER: u32 = 0;
pub const VIRQ_DEBUG: u32 = 1;
pub const VIRQ_CONSOLE: u32 = 2;
pub const VIRQ_DOM_EXC: u32 = 3;
pub const VIRQ_TBUF: u32 = 4;
pub const VIRQ_DEBUGGER: u32 = 6;
pub const VIRQ_XENOPROF: u32 = 7;
pub const VIRQ_CON_RING: u32 = 8;
pub const VIRQ_PCPU_STATE: u32 = 9;
pub const VIRQ_MEM_EVENT: u32 = 10;
pub const VIRQ_ARGO: u32 = 11;
pub const VIRQ_ENOMEM: u32 = 12;
pub const VIRQ_XENPMU: u32 = 13;
pub const VIRQ_ARCH_0: u32 = 16;
/// `NR_VIRQS`.
pub const NR_VIRQS: u32 = 24;

// console_io commands (`CONSOLEIO_*`).
pub const CONSOLEIO_WRITE: u64 = 0;
pub const CONSOLEIO_READ: u64 = 1;

// vm_assist (`VMASST_*`).
pub const VMASST_CMD_ENABLE: u64 = 0;
pub const VMASST_CMD_DISABLE: u64 = 1;
/// The one assist an HVM/PVH guest may use: Xen sets
/// [`XEN_RUNSTATE_UPDATE`] in `state_entry_time` while it rewrites the
/// runstate area, so other vCPUs can read it consistently.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u64 = 5;
/// Bit 63 of `vcpu_runstate_info.state_entry_time`: an update is under way.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

// start_info flags (`SIF_*`), also used in `hvm_start_info.flags`.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
pub const SIF_INITDOMAIN: u32 = 1 << 1;
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;

/// `XEN_LEGACY_MAX_VCPUS` (x86): vCPUs whose `vcpu_info` lives in `shared_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

// `vcpu_time_info.flags`.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info` (32 bytes, same for 32-bit guests): a pvclock.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuTimeInfo {
    /// Odd while an update is in progress (seqlock).
    pub version: u32,
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` for 64-bit guests.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}

/// `struct arch_vcpu_info` for 32-bit guests.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchVcpuInfoCompat {
    pub cr2: u32,
    pub pad: [u32; 5],
}

/// `struct vcpu_info` for 64-bit guests (64 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuInfo {
    /// Set non-zero by Xen when an event is pending for this vCPU.
    pub evtchn_upcall_pending: u8,
    /// Set by the guest to hold off upcalls.
    pub evtchn_upcall_mask: u8,
    pub pad0: [u8; 6],
    /// One bit per word of `shared_info.evtchn_pending` with news.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// `struct vcpu_info` for 32-bit guests (64 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuInfoCompat {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub pad0: [u8; 2],
    /// One bit per 32-bit word of `evtchn_pending`.
    pub evtchn_pending_sel: u32,
    pub arch: ArchVcpuInfoCompat,
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` for 64-bit guests.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// `struct arch_shared_info` for 32-bit guests (holds `wc_sec_hi`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchSharedInfoCompat {
    pub max_pfn: u32,
    pub pfn_to_mfn_frame_list_list: u32,
    pub nmi_reason: u32,
    pub p2m_cr3: u32,
    pub p2m_vaddr: u32,
    pub p2m_generation: u32,
    pub wc_sec_hi: u32,
}

/// `struct shared_info` for 64-bit guests (3136 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bitmap (4096 ports).
    pub evtchn_pending: [u64; 64],
    pub evtchn_mask: [u64; 64],
    /// Wallclock seqlock.
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

/// `struct shared_info` as a 32-bit guest sees it (2344 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedInfoCompat {
    pub vcpu_info: [VcpuInfoCompat; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channel pending bitmap (1024 ports).
    pub evtchn_pending: [u32; 32],
    pub evtchn_mask: [u32; 32],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub arch: ArchSharedInfoCompat,
}

/// Byte offsets inside `shared_info` that differ between the two ABIs, so
/// code that updates a live page can address fields without a typed copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedInfoLayout {
    pub evtchn_pending: usize,
    pub evtchn_mask: usize,
    pub wc_version: usize,
    pub wc_sec: usize,
    pub wc_nsec: usize,
    pub wc_sec_hi: usize,
    /// Bytes per word of the pending/mask bitmaps and of `evtchn_pending_sel`.
    pub word_bytes: usize,
    /// Number of 2-level ports (`EVTCHN_2L_NR_CHANNELS`).
    pub nr_channels: u32,
}

impl SharedInfoLayout {
    /// Layout for 64-bit guests.
    pub const NATIVE: Self = Self {
        evtchn_pending: core::mem::offset_of!(SharedInfo, evtchn_pending),
        evtchn_mask: core::mem::offset_of!(SharedInfo, evtchn_mask),
        wc_version: core::mem::offset_of!(SharedInfo, wc_version),
        wc_sec: core::mem::offset_of!(SharedInfo, wc_sec),
        wc_nsec: core::mem::offset_of!(SharedInfo, wc_nsec),
        wc_sec_hi: core::mem::offset_of!(SharedInfo, wc_sec_hi),
        word_bytes: 8,
        nr_channels: 4096,
    };
    /// Layout for 32-bit guests.
    pub const COMPAT: Self = Self {
        evtchn_pending: core::mem::offset_of!(SharedInfoCompat, evtchn_pending),
        evtchn_mask: core::mem::offset_of!(SharedInfoCompat, evtchn_mask),
        wc_version: core::mem::offset_of!(SharedInfoCompat, wc_version),
        wc_sec: core::mem::offset_of!(SharedInfoCompat, wc_sec),
        wc_nsec: core::mem::offset_of!(SharedInfoCompat, wc_nsec),
        wc_sec_hi: core::mem::offset_of!(SharedInfoCompat, arch)
            + core::mem::offset_of!(ArchSharedInfoCompat, wc_sec_hi),
        word_bytes: 4,
        nr_channels: 1024,
    };
}

/// Offsets inside `vcpu_info` (identical placement of `time` in both ABIs).
pub mod vcpu_info_offsets {
    /// `evtchn_upcall_pending`.
    pub const UPCALL_PENDING: usize = 0;
    /// `evtchn_upcall_mask`.
    pub const UPCALL_MASK: usize = 1;
    /// `evtchn_pending_sel` for 64-bit guests.
    pub const PENDING_SEL: usize = 8;
    /// `evtchn_pending_sel` for 32-bit guests.
    pub const PENDING_SEL_COMPAT: usize = 4;
    /// `time`.
    pub const TIME: usize = 32;
}
/// `sizeof(struct vcpu_info)` in both ABIs.
pub const VCPU_INFO_SIZE: usize = 64;

/// `struct multicall_entry` for 64-bit callers (64 bytes): one hypercall
/// of a `HYPERVISOR_multicall` batch. Xen writes only `result` back
/// (and, for an entry that was preempted, the whole entry with the
/// continuation's arguments).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MulticallEntry {
    pub op: u64,
    pub result: u64,
    pub args: [u64; 6],
}

/// `struct multicall_entry` for 32-bit callers (`compat_multicall_entry`,
/// 32 bytes: `xen_ulong_t` is 32 bits wide there).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MulticallEntryCompat {
    pub op: u32,
    pub result: u32,
    pub args: [u32; 6],
}

/// Xen-internal flag in `HYPERVISOR_mmuext_op`'s `count` marking a
/// continuation (`MMU_UPDATE_PREEMPTED`, `~(~0U >> 1)`).
pub const MMU_UPDATE_PREEMPTED: u32 = 0x8000_0000;
/// `MMUEXT_PIN_L1_TABLE` .. `MMUEXT_UNPIN_TABLE`: the only `mmuext_op`
/// commands Xen lets an HVM guest name.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `sizeof(struct mmuext_op)`: 24 bytes (64-bit), 12 (32-bit).
pub const MMUEXT_OP_SIZE: u64 = 24;
pub const MMUEXT_OP_SIZE_COMPAT: u64 = 12;

// Toolstack interfaces (`domctl.h`, `sysctl.h`, `platform.h`, Xen 4.17):
// only what it takes to refuse them to a domU as Xen does.
/// `XEN_DOMCTL_INTERFACE_VERSION` (Xen 4.17).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;
/// `XEN_SYSCTL_INTERFACE_VERSION` (Xen 4.17).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// `XENPF_INTERFACE_VERSION`.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;
/// `sizeof(struct xen_domctl)` (both ABIs: its union is 64-bit aligned).
pub const XEN_DOMCTL_SIZE: usize = 144;
/// `sizeof(struct xen_sysctl)`.
pub const XEN_SYSCTL_SIZE: usize = 136;
/// `sizeof(struct xen_platform_op)`.
pub const XEN_PLATFORM_OP_SIZE: usize = 136;
/// `offsetof(struct xen_domctl, domain)`.
pub const XEN_DOMCTL_DOMAIN_OFFSET: usize = 8;
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
pub const XEN_DOMCTL_ASSIGN_DEVICE: u32 = 37;
pub const XEN_DOMCTL_TEST_ASSIGN_DEVICE: u32 = 45;
pub const XEN_DOMCTL_DEASSIGN_DEVICE: u32 = 47;
pub const XEN_DOMCTL_VM_EVENT_OP: u32 = 56;
/// `__HYPERVISOR_paging_domctl_cont` (`__HYPERVISOR_arch_1` on x86).
pub const HYPERVISOR_PAGING_DOMCTL_CONT: u64 = 49;
/// `struct xen_dm_op_buf` (handle + `xen_ulong_t` size): 16 bytes, 8 for
/// 32-bit callers. `HYPERVISOR_dm_op` takes at most 2 of them.
pub const XEN_DM_OP_BUF_SIZE: u64 = 16;
pub const XEN_DM_OP_BUF_SIZE_COMPAT: u64 = 8;
pub const XEN_DM_OP_MAX_BUFS: u64 = 2;
