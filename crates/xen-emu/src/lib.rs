//! The Xen hypervisor personality: everything a Xen guest can ask of "Xen",
//! independent of how its hypercalls were trapped.
//!
//! The VMM owns KVM. This crate sees the guest only through the traits in
//! [`guest`] (memory, the calling vCPU) and [`platform`] (interrupts, special
//! pages, shutdown, console), so it unit-tests with a fake guest.
//!
//! One entry point serves both trap paths in DESIGN.md:
//! [`Domain::hypercall`]. The VMM, acting as toolstack and as the backend
//! domain, uses the rest of [`Domain`]'s API: HVM params, grant seeds, the
//! console/XenStore event channels ([`Domain::create_backend_channel`],
//! [`Domain::backend_send`]) and waking blocked vCPUs
//! ([`Domain::wake_vcpu`]).

pub mod copy;
pub mod evtchn;
pub mod gnttab;
pub mod guest;
pub mod hypercall;
pub mod params;
pub mod platform;
pub mod testing;
pub mod types;

mod block;
mod domain;

pub use domain::{Domain, DomainConfig, Error};
pub use evtchn::EvtchnHandler;
pub use types::{Errno, Gfn, GrantRef, Port};
