//! `sched.h`: `HYPERVISOR_sched_op`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const SCHEDOP_YIELD: u64 = 0;
pub const SCHEDOP_BLOCK: u64 = 1;
pub const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SCHEDOP_POLL: u64 = 3;
pub const SCHEDOP_REMOTE_SHUTDOWN: u64 = 4;
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
pub const SCHEDOP_WATCHDOG: u64 = 6;
pub const SCHEDOP_PIN_OVERRIDE: u64 = 7;

pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_SUSPEND: u32 = 2;
pub const SHUTDOWN_CRASH: u32 = 3;
pub const SHUTDOWN_WATCHDOG: u32 = 4;
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
pub const SHUTDOWN_MAX: u32 = 5;

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll` for 64-bit guests (24 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPoll {
    /// `XEN_GUEST_HANDLE(evtchn_port_t)`.
    pub ports: u64,
    pub nr_ports: u32,
    pub pad: u32,
    /// Absolute system time (ns) to give up at; 0 = never.
    pub timeout: u64,
}

/// `struct sched_poll` for 32-bit guests (16 bytes: `timeout` is only
/// 4-byte aligned on i386).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPollCompat {
    pub ports: u32,
    pub nr_ports: u32,
    pub timeout_lo: u32,
    pub timeout_hi: u32,
}

/// `struct sched_remote_shutdown` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedRemoteShutdown {
    pub domain_id: u16,
    pub pad: u16,
    pub reason: u32,
}

/// `struct sched_watchdog` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedWatchdog {
    pub id: u32,
    pub timeout: u32,
}
