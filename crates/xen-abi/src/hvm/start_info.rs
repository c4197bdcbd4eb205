//! `arch-x86/hvm/start_info.h`: the start-of-day structure a PVH guest finds
//! in `%ebx`, with its module list and memory map.
//!
//! All three structures have the same layout for 32-bit and 64-bit guests
//! (only fixed-width fields, explicit padding).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_HVM_START_MAGIC_VALUE`: `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `hvm_start_info.version` written by Xen 4.10+ (adds the memory map).
pub const HVM_START_INFO_VERSION: u32 = 1;

/// `XEN_HVM_MEMMAP_TYPE_*`: `hvm_memmap_table_entry.type` (same values as e820).
pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// `struct hvm_start_info` (version 1: 56 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// [`HVM_START_INFO_VERSION`].
    pub version: u32,
    /// `SIF_*` flags (`xen.h`), e.g. [`crate::xen::SIF_PRIVILEGED`].
    pub flags: u32,
    /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    /// Guest-physical address of the module array (0 if none).
    pub modlist_paddr: u64,
    /// Guest-physical address of the NUL-terminated command line (0 if none).
    pub cmdline_paddr: u64,
    /// Guest-physical address of the ACPI RSDP (0 if none).
    pub rsdp_paddr: u64,
    /// Guest-physical address of the [`HvmMemmapTableEntry`] array (version 1).
    pub memmap_paddr: u64,
    /// Number of memory map entries (version 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry` (32 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvmModlistEntry {
    /// Guest-physical address of the module.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// Guest-physical address of the module's command line (0 if none).
    pub cmdline_paddr: u64,
    /// Must be zero.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry` (24 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvmMemmapTableEntry {
    /// Base address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`.
    pub type_: u32,
    /// Must be zero.
    pub reserved: u32,
}
