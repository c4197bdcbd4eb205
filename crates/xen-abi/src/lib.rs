//! Xen's public interface (Xen 4.17 `xen/include/public/`), written in Rust:
//! hypercall numbers, sub-op numbers, flags, errno values and `#[repr(C)]`
//! structures. Layouts are proven against Debian's `libxen-dev` headers by
//! `tests/layout.rs`.
//!
//! One module per public header, named for it.
