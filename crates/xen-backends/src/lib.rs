//! Xenbus backends that talk to guest frontends through grant tables and
//! event channels, as a driver domain's backends do.
//!
//! * [`xenbus`]: device directories, permissions, the XenbusState handshake
//!   values and watches.
//! * [`grant`]: how long a connection holds granted pages (rings, copies,
//!   persistent grants); the pins and the `GTF_reading` / `GTF_writing`
//!   protocol are `xen_emu::Domain`'s ([`grant::GrantTable`]).
//! * [`evtchn`]: the backend's ports ([`evtchn::EventChannels`]).
//! * [`sring`]: shared rings (`io/ring.h`), multi-page.
//! * [`blkif`] + [`blkback`]: the block backend.
//! * [`netif`] + [`netback`]: the network backend (TAP).
//! * [`console`]: extra consoles and `channel=` entries (pty, socket, file).
//! * [`platform_pci`]: the Xen platform PCI device and unplug ports (HVM).
//! * [`testing`]: an in-process frontend environment for tests and benches.
//!
//! `xen_emu::Domain` implements [`grant::GrantTable`]; the VMM implements
//! [`evtchn::EventChannels`] over `xen-emu`; nothing here knows about KVM.

pub mod blkback;
pub mod blkif;
pub mod console;
mod doorbell;
pub mod evtchn;
pub mod grant;
pub mod netback;
pub mod netif;
pub mod platform_pci;
pub mod sring;
pub mod testing;
pub mod xenbus;
