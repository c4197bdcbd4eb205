//! `physdev.h`: `HYPERVISOR_physdev_op`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u64 = 4;
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u64 = 5;
pub const PHYSDEVOP_SET_IOPL: u64 = 6;
pub const PHYSDEVOP_SET_IOBITMAP: u64 = 7;
pub const PHYSDEVOP_APIC_READ: u64 = 8;
pub const PHYSDEVOP_APIC_WRITE: u64 = 9;
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u64 = 10;
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u64 = 11;
pub const PHYSDEVOP_EOI: u64 = 12;
pub const PHYSDEVOP_MAP_PIRQ: u64 = 13;
pub const PHYSDEVOP_UNMAP_PIRQ: u64 = 14;
pub const PHYSDEVOP_MANAGE_PCI_ADD: u64 = 15;
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u64 = 16;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u64 = 17;
pub const PHYSDEVOP_RESTORE_MSI: u64 = 19;
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u64 = 20;
pub const PHYSDEVOP_SETUP_GSI: u64 = 21;
pub const PHYSDEVOP_GET_FREE_PIRQ: u64 = 23;
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u64 = 24;
pub const PHYSDEVOP_PCI_DEVICE_ADD: u64 = 25;
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u64 = 26;
pub const PHYSDEVOP_RESTORE_MSI_EXT: u64 = 27;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u64 = 28;
pub const PHYSDEVOP_DBGP_OP: u64 = 29;
pub const PHYSDEVOP_PREPARE_MSIX: u64 = 30;
pub const PHYSDEVOP_RELEASE_MSIX: u64 = 31;

pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// `struct physdev_eoi`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevEoi {
    pub irq: u32,
}

/// `struct physdev_irq_status_query` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrqStatusQuery {
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*`.
    pub flags: u32,
}

/// `struct physdev_map_pirq` for 64-bit guests (40 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevMapPirq {
    pub domid: u16,
    pub pad0: u16,
    /// `MAP_PIRQ_TYPE_*`.
    pub type_: i32,
    pub index: i32,
    /// IN/OUT.
    pub pirq: i32,
    pub bus: i32,
    pub devfn: i32,
    pub entry_nr: i32,
    pub pad1: u32,
    pub table_base: u64,
}

/// `struct physdev_map_pirq` for 32-bit guests (36 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevMapPirqCompat {
    pub domid: u16,
    pub pad0: u16,
    pub type_: i32,
    pub index: i32,
    pub pirq: i32,
    pub bus: i32,
    pub devfn: i32,
    pub entry_nr: i32,
    pub table_base: [u32; 2],
}

/// `struct physdev_unmap_pirq` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevUnmapPirq {
    pub domid: u16,
    pub pad: u16,
    pub pirq: i32,
}

/// `struct physdev_get_free_pirq` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevGetFreePirq {
    /// IN: `MAP_PIRQ_TYPE_*`.
    pub type_: i32,
    /// OUT.
    pub pirq: u32,
}

/// `struct physdev_set_iopl`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIopl {
    pub iopl: u32,
}
