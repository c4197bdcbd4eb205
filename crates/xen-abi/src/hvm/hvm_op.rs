//! `hvm/hvm_op.h`: `HYPERVISOR_hvm_op` sub-ops and their arguments.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const HVMOP_SET_PARAM: u64 = 0;
pub const HVMOP_GET_PARAM: u64 = 1;
pub const HVMOP_SET_PCI_INTX_LEVEL: u64 = 2;
pub const HVMOP_SET_ISA_IRQ_LEVEL: u64 = 3;
pub const HVMOP_SET_PCI_LINK_ROUTE: u64 = 4;
pub const HVMOP_FLUSH_TLBS: u64 = 5;
pub const HVMOP_PAGETABLE_DYING: u64 = 9;
pub const HVMOP_GET_TIME: u64 = 10;
pub const HVMOP_XENTRACE: u64 = 11;
pub const HVMOP_SET_MEM_ACCESS: u64 = 12;
pub const HVMOP_GET_MEM_ACCESS: u64 = 13;
pub const HVMOP_GET_MEM_TYPE: u64 = 15;
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u64 = 24;
pub const HVMOP_ALTP2M: u64 = 25;

/// `struct xen_hvm_param` (16 bytes, both ABIs).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenHvmParam {
    pub domid: u16,
    pub pad: u16,
    pub index: u32,
    pub value: u64,
}

/// `struct xen_hvm_get_time`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenHvmGetTime {
    pub now: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
    pub pad: [u8; 3],
}
