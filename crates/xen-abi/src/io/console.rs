//! `io/console.h`: the PV console ring page.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of [`XenconsInterface::input`].
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of [`XenconsInterface::output`].
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `struct xencons_interface` (3088 bytes). Indices are free-running
/// `u32`s; mask with the ring size to index.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// `in`: backend → guest.
    pub input: [u8; XENCONS_IN_SIZE],
    /// `out`: guest → backend.
    pub output: [u8; XENCONS_OUT_SIZE],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

/// Byte offsets of the ring indices, for atomic access on a live page.
pub const XENCONS_IN_CONS: usize = core::mem::offset_of!(XenconsInterface, in_cons);
pub const XENCONS_IN_PROD: usize = core::mem::offset_of!(XenconsInterface, in_prod);
pub const XENCONS_OUT_CONS: usize = core::mem::offset_of!(XenconsInterface, out_cons);
pub const XENCONS_OUT_PROD: usize = core::mem::offset_of!(XenconsInterface, out_prod);
