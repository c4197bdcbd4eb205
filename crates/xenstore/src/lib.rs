//! A xenstored: the store, the `xsd_sockmsg` wire protocol, and the Unix
//! socket and guest ring front ends sharing one engine.
//!
//! # For the VMM
//!
//! * [`Engine`] is the store. It is a cheap cloneable handle
//!   (`Arc<Mutex<..>>` inside), usable from any thread. As dom0 the
//!   toolstack calls [`Engine::read`], [`Engine::write`],
//!   [`Engine::mkdir`], [`Engine::rm`], [`Engine::directory`],
//!   [`Engine::set_perms`] and [`Engine::transaction`] (retries on
//!   EAGAIN), and manages domains with [`Engine::introduce_domain`],
//!   [`Engine::release_domain`] and [`Engine::domain_shutdown`].
//! * [`ring::RingFrontend`] serves one guest's `xenstore_domain_interface`
//!   page: build it with the engine, the domid, a [`ring::RingMemory`]
//!   (the 4 KiB page in guest memory) and a notify callback that signals
//!   the guest's XenStore event channel. Call [`ring::RingFrontend::process`]
//!   whenever the guest kicks that event channel. Watch events fired by
//!   other clients are pushed to the ring by the engine itself: it calls
//!   `process()` on the front end (from the thread that caused the event,
//!   outside the engine lock), so the VMM needs no extra wiring for them.
//!   Consequently, do not call engine methods while holding a lock that
//!   the `RingMemory` or notify callback takes.
//! * Custom front ends use [`Engine::connect`] (with an optional
//!   [`Waker`]), [`Engine::exchange`] (decode and run every complete
//!   message, collect replies), [`Engine::take_output`],
//!   [`Engine::reset_connection`] and [`Engine::disconnect`].
//! * [`socket::SocketServer`] serves the Unix socket protocol (every
//!   connection is dom0) on its own thread; `SocketServer::shutdown` (or
//!   drop) stops it. `docs/xenstore.md` has the semantics and benchmark.
//!
//! ```no_run
//! use xenstore::{Engine, perms::Perms};
//! let xs = Engine::default();
//! xs.introduce_domain(5);
//! xs.transaction(|t| {
//!     t.write("/libxl/5/type", b"pvh")?;
//!     t.mkdir("/local/domain/5")?;
//!     t.set_perms("/local/domain/5", &Perms::owned_by(5))
//! }).unwrap();
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod control;
pub mod engine;
pub mod ops;
pub mod path;
pub mod perms;
pub mod quota;
pub mod ring;
pub mod socket;
pub mod store;
mod toolstack;
mod uring;
pub mod watch;
pub mod wire;

/// A domain id.
pub type DomId = u16;

pub use engine::{Config, ConnId, Engine, ProtocolError, Waker};
pub use quota::Quota;
pub use toolstack::Transaction;
pub use wire::XsError;
