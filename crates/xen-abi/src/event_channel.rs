//! `event_channel.h`: `HYPERVISOR_event_channel_op` (identical layouts for
//! 32-bit and 64-bit guests).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
pub const EVTCHNOP_BIND_PIRQ: u64 = 2;
pub const EVTCHNOP_CLOSE: u64 = 3;
pub const EVTCHNOP_SEND: u64 = 4;
pub const EVTCHNOP_STATUS: u64 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
pub const EVTCHNOP_BIND_IPI: u64 = 7;
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
pub const EVTCHNOP_UNMASK: u64 = 9;
pub const EVTCHNOP_RESET: u64 = 10;
pub const EVTCHNOP_INIT_CONTROL: u64 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u64 = 12;
pub const EVTCHNOP_SET_PRIORITY: u64 = 13;

pub const EVTCHNSTAT_CLOSED: u32 = 0;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHNSTAT_PIRQ: u32 = 3;
pub const EVTCHNSTAT_VIRQ: u32 = 4;
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `EVTCHN_2L_NR_CHANNELS` for 64-bit guests (32-bit guests: 1024).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;
/// `EVTCHN_2L_NR_CHANNELS` for 32-bit guests.
pub const EVTCHN_2L_NR_CHANNELS_COMPAT: u32 = 1024;
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `struct evtchn_alloc_unbound` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnAllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    /// OUT.
    pub port: u32,
}

/// `struct evtchn_bind_interdomain` (12 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: u16,
    pub pad: u16,
    pub remote_port: u32,
    /// OUT.
    pub local_port: u32,
}

/// `struct evtchn_bind_virq` (12 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// OUT.
    pub port: u32,
}

/// `struct evtchn_bind_pirq` (12 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindPirq {
    pub pirq: u32,
    pub flags: u32,
    /// OUT.
    pub port: u32,
}

/// `struct evtchn_bind_ipi` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    /// OUT.
    pub port: u32,
}

/// `struct evtchn_close`, `evtchn_send`, `evtchn_unmask`: just a port.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnPort {
    pub port: u32,
}
pub type EvtchnClose = EvtchnPort;
pub type EvtchnSend = EvtchnPort;
pub type EvtchnUnmask = EvtchnPort;

/// `struct evtchn_status` (24 bytes). The union `u` is 8 bytes:
/// unbound `{dom}`, interdomain `{dom, port}`, pirq, virq or ipi (unused).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnStatus {
    pub dom: u16,
    pub pad: u16,
    pub port: u32,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the channel notifies.
    pub vcpu: u32,
    /// OUT: first word of the union (remote dom / pirq / virq).
    pub u0: u32,
    /// OUT: second word (interdomain remote port).
    pub u1: u32,
}

/// `struct evtchn_bind_vcpu` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVcpu {
    pub port: u32,
    pub vcpu: u32,
}

/// `struct evtchn_reset`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnReset {
    pub dom: u16,
}

/// `struct evtchn_init_control` (24 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnInitControl {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    /// OUT.
    pub link_bits: u8,
    pub pad: [u8; 7],
}

/// `struct evtchn_op`: the argument of the old `event_channel_op_compat`
/// (a command word then the union, 4 + up to 24 bytes, padded to 32).
pub const EVTCHN_OP_UNION_OFFSET: usize = 8;
