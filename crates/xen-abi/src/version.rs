//! `version.h`: `HYPERVISOR_xen_version` sub-ops and their buffers.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
pub const XENVER_COMPILE_INFO: u64 = 2;
pub const XENVER_CAPABILITIES: u64 = 3;
pub const XENVER_CHANGESET: u64 = 4;
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
pub const XENVER_GET_FEATURES: u64 = 6;
pub const XENVER_PAGESIZE: u64 = 7;
pub const XENVER_GUEST_HANDLE: u64 = 8;
pub const XENVER_COMMANDLINE: u64 = 9;
pub const XENVER_BUILD_ID: u64 = 10;

/// `xen_extraversion_t`: `char[16]`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `xen_capabilities_info_t`: `char[1024]`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `xen_changeset_info_t`: `char[64]`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// `xen_domain_handle_t`: `uint8_t[16]` (the domain's UUID).
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;
/// `xen_commandline_t`: `char[1024]`.
pub const XEN_COMMANDLINE_LEN: usize = 1024;

/// `struct xen_compile_info` (144 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenCompileInfo {
    pub compiler: [u8; 64],
    pub compile_by: [u8; 16],
    pub compile_domain: [u8; 32],
    pub compile_date: [u8; 32],
}

/// `struct xen_platform_parameters` for 64-bit guests.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPlatformParameters {
    pub virt_start: u64,
}

/// `struct xen_platform_parameters` for 32-bit guests.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPlatformParametersCompat {
    pub virt_start: u32,
}

/// `struct xen_feature_info` (8 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap.
    pub submap_idx: u32,
    /// OUT.
    pub submap: u32,
}

/// `struct xen_build_id` header (4 bytes, then `buf[len]`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenBuildId {
    /// IN: size of `buf`; OUT: bytes written.
    pub len: u32,
}

/// `HYPERVISOR_VIRT_START` for 64-bit PV guests (what Xen reports to every
/// 64-bit caller of `XENVER_platform_parameters`).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// `HYPERVISOR_COMPAT_VIRT_START` default for 32-bit callers (PAE).
pub const HYPERVISOR_COMPAT_VIRT_START: u32 = 0xF580_0000;
