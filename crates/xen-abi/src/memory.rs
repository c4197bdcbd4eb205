//! `memory.h` and `hvm/e820.h`: `HYPERVISOR_memory_op`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
pub const XENMEM_MACHPHYS_MFN_LIST: u64 = 5;
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMEM_MEMORY_MAP: u64 = 9;
pub const XENMEM_MACHINE_MEMORY_MAP: u64 = 10;
pub const XENMEM_EXCHANGE: u64 = 11;
pub const XENMEM_MACHPHYS_MAPPING: u64 = 12;
pub const XENMEM_SET_MEMORY_MAP: u64 = 13;
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
pub const XENMEM_SET_POD_TARGET: u64 = 16;
pub const XENMEM_GET_POD_TARGET: u64 = 17;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
pub const XENMEM_CLAIM_PAGES: u64 = 24;
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u64 = 25;
pub const XENMEM_GET_VNUMAINFO: u64 = 26;
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u64 = 27;
pub const XENMEM_ACQUIRE_RESOURCE: u64 = 28;
/// The memory_op command is the low bits of the first argument; the rest
/// is a continuation start index (`MEMOP_EXTENT_SHIFT`).
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN: u32 = 2;
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// In `idx` for `XENMAPSPACE_grant_table`: a v2 status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `struct xen_memory_reservation` for 64-bit guests (32 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryReservation {
    /// `XEN_GUEST_HANDLE(xen_pfn_t)`: guest-virtual address of the extent list.
    pub extent_start: u64,
    pub nr_extents: u64,
    pub extent_order: u32,
    /// `XENMEMF_*` (replaced `address_bits` in interface 0x00030209).
    pub mem_flags: u32,
    pub domid: u16,
    pub pad: [u16; 3],
}

/// `struct xen_memory_reservation` for 32-bit guests (20 bytes: 32-bit handle
/// and `xen_ulong_t`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryReservationCompat {
    pub extent_start: u32,
    pub nr_extents: u32,
    pub extent_order: u32,
    pub mem_flags: u32,
    pub domid: u16,
    pub pad: u16,
}

/// `struct xen_add_to_physmap` for 64-bit guests (24 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmap {
    pub domid: u16,
    /// Number of pages, for `XENMAPSPACE_gmfn_range` only.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space (grant frame number, ...).
    pub idx: u64,
    /// Guest frame to map at.
    pub gpfn: u64,
}

/// `struct xen_add_to_physmap` for 32-bit guests (16 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmapCompat {
    pub domid: u16,
    pub size: u16,
    pub space: u32,
    pub idx: u32,
    pub gpfn: u32,
}

/// `struct xen_memory_map` for 64-bit guests (16 bytes); also the body of
/// `xen_foreign_memory_map`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries written.
    pub nr_entries: u32,
    pub pad: u32,
    /// `XEN_GUEST_HANDLE(void)`: guest-virtual address of an e820 array.
    pub buffer: u64,
}

/// `struct xen_memory_map` for 32-bit guests (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryMapCompat {
    pub nr_entries: u32,
    pub buffer: u32,
}

/// `struct xen_foreign_memory_map` for 64-bit guests (24 bytes): the
/// argument of `XENMEM_set_memory_map`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenForeignMemoryMap {
    pub domid: u16,
    pub pad: [u16; 3],
    pub map: XenMemoryMap,
}

/// `struct xen_foreign_memory_map` for 32-bit guests (12 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenForeignMemoryMapCompat {
    pub domid: u16,
    pub pad: u16,
    pub map: XenMemoryMapCompat,
}

/// `struct xen_memory_domain`: the argument of current/maximum_reservation
/// (a bare `domid_t` in the guest).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryDomain {
    pub domid: u16,
}

/// An e820 entry as `XENMEM_memory_map` writes it (20 bytes, packed: the
/// BIOS INT 15h E820 format).
#[repr(C, packed)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// `E820_*`.
    pub type_: u32,
}
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;
pub const E820_NVS: u32 = 4;
pub const E820_UNUSABLE: u32 = 5;
/// Xen caps the e820 a guest may set with `XENMEM_set_memory_map` (`E820MAX`).
pub const E820MAX: u32 = 1024;

/// `HVM_E820_PAGE` etc. from `hvm/e820.h` (where hvmloader puts its e820).
pub const HVM_E820_PAGE: u64 = 0x0009_0000;
pub const HVM_E820_NR_OFFSET: u64 = 0x1e8;
pub const HVM_E820_OFFSET: u64 = 0x2d0;
