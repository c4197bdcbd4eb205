//! Xen's public interface (Xen 4.17 `xen/include/public/`), written in Rust:
//! hypercall numbers, sub-op numbers, flags, errno values and `#[repr(C)]`
//! structures. Layouts are proven against Debian's `libxen-dev` headers by
//! `tests/layout.rs`, for 64-bit guests and (types suffixed `Compat`) for
//! 32-bit guests, whose structures Xen reads with i386 alignment rules.
//!
//! One module per public header, named for it.

pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod io;
pub mod memory;
pub mod physdev;
pub mod sched;
pub mod vcpu;
pub mod version;
pub mod xen;

/// Size of a guest page (x86: always 4 KiB for these interfaces).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// `domid_t`.
pub type DomId = u16;
/// `DOMID_SELF`: "the calling domain" in any `domid` field.
pub const DOMID_SELF: DomId = 0x7ff0;
/// `DOMID_IO`.
pub const DOMID_IO: DomId = 0x7ff1;
/// `DOMID_XEN`.
pub const DOMID_XEN: DomId = 0x7ff2;
/// `DOMID_COW`.
pub const DOMID_COW: DomId = 0x7ff3;
/// `DOMID_INVALID`.
pub const DOMID_INVALID: DomId = 0x7ff4;
/// `DOMID_IDLE`.
pub const DOMID_IDLE: DomId = 0x7fff;
/// `DOMID_FIRST_RESERVED`: domids at or above this are not real domains.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
