//! `io/xs_wire.h`: the XenStore ring page (the message format itself lives
//! in the `xenstore` crate).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XENSTORE_RING_SIZE`.
pub const XENSTORE_RING_SIZE: usize = 1024;
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
pub const XENSTORE_REL_PATH_MAX: usize = 2048;
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
pub const XENSTORE_CONNECTED: u32 = 0;
pub const XENSTORE_RECONNECT: u32 = 1;
pub const XENSTORE_ERROR_NONE: u32 = 0;
pub const XENSTORE_ERROR_COMM: u32 = 1;
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `struct xenstore_domain_interface` (2068 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenstoreDomainInterface {
    /// Requests, guest → xenstored.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events, xenstored → guest.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    pub req_cons: u32,
    pub req_prod: u32,
    pub rsp_cons: u32,
    pub rsp_prod: u32,
    pub server_features: u32,
    pub connection: u32,
    pub error: u32,
}

pub const XENSTORE_REQ_CONS: usize = core::mem::offset_of!(XenstoreDomainInterface, req_cons);
pub const XENSTORE_REQ_PROD: usize = core::mem::offset_of!(XenstoreDomainInterface, req_prod);
pub const XENSTORE_RSP_CONS: usize = core::mem::offset_of!(XenstoreDomainInterface, rsp_cons);
pub const XENSTORE_RSP_PROD: usize = core::mem::offset_of!(XenstoreDomainInterface, rsp_prod);
