//! `grant_table.h`: `HYPERVISOR_grant_table_op` and the v1 grant entry.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
pub const GNTTABOP_DUMP_TABLE: u64 = 3;
pub const GNTTABOP_TRANSFER: u64 = 4;
pub const GNTTABOP_COPY: u64 = 5;
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u64 = 7;
pub const GNTTABOP_SET_VERSION: u64 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u64 = 9;
pub const GNTTABOP_GET_VERSION: u64 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u64 = 11;
pub const GNTTABOP_CACHE_FLUSH: u64 = 12;

pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
pub const GTF_TRANSITIVE: u16 = 3;
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_READONLY: u16 = 1 << 2;
pub const GTF_READING: u16 = 1 << 3;
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
pub const GTF_SUB_PAGE: u16 = 1 << 8;

pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTST_*`: per-operation status codes in grant-table structures.
pub const GNTST_OKAY: i16 = 0;
pub const GNTST_GENERAL_ERROR: i16 = -1;
pub const GNTST_BAD_DOMAIN: i16 = -2;
pub const GNTST_BAD_GNTREF: i16 = -3;
pub const GNTST_BAD_HANDLE: i16 = -4;
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
pub const GNTST_PERMISSION_DENIED: i16 = -8;
pub const GNTST_BAD_PAGE: i16 = -9;
pub const GNTST_BAD_COPY_ARG: i16 = -10;
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
pub const GNTST_EAGAIN: i16 = -12;
pub const GNTST_NO_SPACE: i16 = -13;

/// `struct grant_entry_v1` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV1 {
    /// `GTF_*`.
    pub flags: u16,
    /// Domain allowed to use the grant.
    pub domid: u16,
    /// Guest frame the grant refers to.
    pub frame: u32,
}
/// v1 grant entries per 4 KiB frame.
pub const GRANT_ENTRIES_V1_PER_FRAME: u32 = 512;

/// `struct gnttab_setup_table` for 64-bit guests (24 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetupTable {
    pub dom: u16,
    pub pad0: u16,
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    pub pad1: [u8; 6],
    /// `XEN_GUEST_HANDLE(xen_pfn_t)`: guest-virtual address of a `u64` array.
    pub frame_list: u64,
}

/// `struct gnttab_setup_table` for 32-bit guests (16 bytes; `frame_list` is a
/// 32-bit handle to an array of 32-bit `xen_pfn_t`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetupTableCompat {
    pub dom: u16,
    pub pad0: u16,
    pub nr_frames: u32,
    pub status: i16,
    pub pad1: u16,
    pub frame_list: u32,
}

/// `struct gnttab_query_size` (16 bytes, both ABIs).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabQuerySize {
    pub dom: u16,
    pub pad0: u16,
    /// OUT.
    pub nr_frames: u32,
    /// OUT.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    pub pad1: u16,
}

/// `struct gnttab_set_version`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetVersion {
    pub version: u32,
}

/// `struct gnttab_get_version` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetVersion {
    pub dom: u16,
    pub pad: u16,
    /// OUT.
    pub version: u32,
}

/// One side of a `gnttab_copy` for 64-bit guests (16 bytes): `u` is a grant
/// ref or a GMFN (`xen_pfn_t`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyPtr {
    pub u: u64,
    pub domid: u16,
    pub offset: u16,
    pub pad: u32,
}

/// `struct gnttab_copy` for 64-bit guests (40 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    /// `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// One side of a `gnttab_copy` for 32-bit guests (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyPtrCompat {
    pub u: u32,
    pub domid: u16,
    pub offset: u16,
}

/// `struct gnttab_copy` for 32-bit guests (24 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyCompat {
    pub source: GnttabCopyPtrCompat,
    pub dest: GnttabCopyPtrCompat,
    pub len: u16,
    pub flags: u16,
    pub status: i16,
    pub pad: u16,
}
