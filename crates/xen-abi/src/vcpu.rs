//! `vcpu.h`: `HYPERVISOR_vcpu_op`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const VCPUOP_INITIALISE: u64 = 0;
pub const VCPUOP_UP: u64 = 1;
pub const VCPUOP_DOWN: u64 = 2;
pub const VCPUOP_IS_UP: u64 = 3;
pub const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
pub const VCPUOP_SEND_NMI: u64 = 11;
pub const VCPUOP_GET_PHYSID: u64 = 12;
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;

pub const RUNSTATE_RUNNING: i32 = 0;
pub const RUNSTATE_RUNNABLE: i32 = 1;
pub const RUNSTATE_BLOCKED: i32 = 2;
pub const RUNSTATE_OFFLINE: i32 = 3;
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `struct vcpu_runstate_info` for 64-bit guests (48 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRunstateInfo {
    pub state: i32,
    pub pad: u32,
    pub state_entry_time: u64,
    pub time: [u64; 4],
}

/// `struct vcpu_runstate_info` for 32-bit guests (44 bytes: `u64` is only
/// 4-byte aligned on i386, so the fields are split).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRunstateInfoCompat {
    pub state: i32,
    pub state_entry_time: [u32; 2],
    pub time: [[u32; 2]; 4],
}

/// `struct vcpu_set_periodic_timer`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}

/// `struct vcpu_set_singleshot_timer` for 64-bit guests (16 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetSingleshotTimer {
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    pub pad: u32,
}

/// `struct vcpu_set_singleshot_timer` for 32-bit guests (12 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetSingleshotTimerCompat {
    pub timeout_abs_ns: [u32; 2],
    pub flags: u32,
}

/// `struct vcpu_register_vcpu_info` (16 bytes, both ABIs).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterVcpuInfo {
    /// Guest frame of the page holding the new `vcpu_info`.
    pub mfn: u64,
    /// Byte offset of the `vcpu_info` in that page.
    pub offset: u32,
    pub rsvd: u32,
}

/// `struct vcpu_register_time_memory_area` / `runstate_memory_area` for
/// 64-bit guests: one guest handle (or physical address with
/// `VMASST_TYPE_runstate_update_flag`...; HVM guests pass a virtual address).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterMemoryArea {
    pub addr: u64,
}
