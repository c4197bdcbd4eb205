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
//!
//! Issue 5's services, one module each: [`timer`]-driven `VIRQ_TIMER`
//! (singleshot, periodic, `set_timer_op`), [`vcpu`] state (up/down,
//! runstate, guest areas), [`pirq`]s, event channels ([`evtchn`]) and grant
//! tables ([`gnttab`]); `docs/core-services.md` summarises behaviour and
//! measurements.
//!
//! # The backend API (the VMM as dom0)
//!
//! The VMM's PV backends (console, XenStore, block, net) act as the
//! backend domain `DomainConfig::backend_domid`. They use:
//!
//! **Grants** ([`gnttab::backend`], Xen's `GNTTABOP_map_grant_ref` /
//! `unmap_grant_ref` / `copy` as done by a backend in dom0, v1 entries,
//! `GTF_reading`/`GTF_writing` protocol, errors as [`GrantError`] whose
//! [`GrantError::status`] is the `GNTST_*` code):
//! - [`Domain::grant_map`]`(gref, writable)` → [`GrantMapping`] (`handle`,
//!   `frame` GPA). Fails `GNTST_bad_gntref` past the table,
//!   `GNTST_general_error` if the entry is not `GTF_permit_access` for the
//!   backend domid, is `GTF_readonly` and `writable` was asked, or keeps
//!   changing; `GNTST_bad_page` if the frame is not guest memory. While
//!   mapped, the guest's entry has `GTF_reading` (and `GTF_writing`) set.
//! - [`Domain::grant_read`] / [`Domain::grant_write`]`(handle, offset, ..)`:
//!   bounds-checked access within the page (`GNTST_bad_copy_arg` past its
//!   end, `GNTST_permission_denied` writing a read-only mapping).
//! - [`Domain::grant_unmap`]`(handle)` (`GNTST_bad_handle` if unknown);
//!   the last mapping of an entry clears the flags.
//!   [`Domain::grant_unmap_all`] on teardown.
//! - [`Domain::grant_map_batch`] / [`Domain::grant_unmap_batch`]: the same
//!   for many grants under one lock (a map batch is all or nothing), as a
//!   backend maps a request's segments or a frame's slots.
//! - [`Domain::grant_copy_from_guest`]`(CopyEnd, &mut buf)`,
//!   [`Domain::grant_copy_to_guest`]`(CopyEnd, &data)`,
//!   [`Domain::grant_copy`]`(src, dst, len)`: `GNTTABOP_copy`; a
//!   [`CopyEnd`] is a grant (`gref`, `offset`) or a guest frame; the grant
//!   is pinned only for the copy; `offset + len > 4096` is
//!   `GNTST_bad_copy_arg`.
//! - [`Domain::grant_entry_gpa`]: where an entry lives, for code that
//!   inspects entries itself.
//!
//! **Event channels** (ports are the guest's; the backend end has no port
//! number of its own):
//! - Guest allocates, backend binds (PV frontends: the guest does
//!   `EVTCHNOP_alloc_unbound` with `remote_dom = backend_domid` and writes
//!   the port to XenStore): [`Domain::bind_backend_channel`]`(port,
//!   handler)`. `-EINVAL` (as [`Error::Evtchn`]) unless the port is unbound
//!   for the backend domain.
//! - Backend allocates, guest binds (console/XenStore style, or a
//!   backend offering a port): [`Domain::create_backend_channel`]`(handler)`
//!   makes a guest port already connected to the backend; or
//!   [`Domain::offer_backend_channel`]`(handler)` makes a backend port
//!   unbound for the guest, which the guest binds with
//!   `EVTCHNOP_bind_interdomain(remote_dom = backend_domid, remote_port)`.
//! - [`Domain::backend_send`]`(port)` notifies the guest; `handler(port)`
//!   runs (on the sending vCPU thread, outside xen-emu's locks) when the
//!   guest sends. [`Domain::backend_unbind`]`(port)` drops the backend end
//!   (the guest's port becomes unbound for the backend again, as when dom0
//!   closes its end).

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
mod domctl;
pub mod pirq;
pub mod timer;
pub mod vcpu;

pub use domain::{Domain, DomainConfig, Error};
pub use domctl::VcpuInfo;
pub use evtchn::EvtchnHandler;
pub use gnttab::active::GrantError;
pub use gnttab::backend::{CopyEnd, GrantMapping};
pub use types::{Errno, Gfn, GrantRef, Port};
