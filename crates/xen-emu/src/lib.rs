//! The Xen hypervisor personality: everything a Xen guest can ask of "Xen",
//! independent of how its hypercalls were trapped.
//!
//! The VMM owns KVM. This crate sees the guest only through the traits in
//! [`guest`] (memory, the calling vCPU) and [`platform`] (interrupts, special
//! pages, shutdown, console), so it unit-tests with a fake guest.
//!
//! One entry point serves both trap paths in DESIGN.md:
//! [`Domain::hypercall`].

pub mod guest;
pub mod platform;

mod domain;

pub use domain::{Domain, DomainConfig};
