//! Xenbus backends that talk to guest frontends through grant tables and
//! event channels, as a driver domain's backends do.
//!
//! * [`xenbus`]: device directories, permissions, the XenbusState handshake
//!   values and watches.
//! * [`grant`]: copying through granted pages with the `GTF_reading` /
//!   `GTF_writing` protocol ([`grant::GrantTable`] locates entries).
//! * [`evtchn`]: the backend's ports ([`evtchn::EventChannels`]).
//! * [`sring`]: shared rings (`io/ring.h`), multi-page.
//! * [`blkif`] + [`blkback`]: the block backend.
//! * [`netif`] + [`netback`]: the network backend (TAP).
//! * [`console`]: extra consoles and `channel=` entries (pty, socket, file).
//! * [`platform_pci`]: the Xen platform PCI device and unplug ports (HVM).
//! * [`testing`]: an in-process frontend environment for tests and benches.
//!
//! The VMM implements [`grant::GrantTable`] and [`evtchn::EventChannels`]
//! over `xen-emu`; nothing here knows about KVM.

pub mod blkback;
pub mod blkif;
pub mod console;
pub mod evtchn;
pub mod grant;
pub mod netback;
pub mod netif;
pub mod platform_pci;
pub mod sring;
pub mod testing;
pub mod xenbus;
