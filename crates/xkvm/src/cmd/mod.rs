//! One module per `xkvm` verb (or family of verbs).

pub mod block;
pub mod cdrom;
pub mod control;
pub mod create;
pub mod info;
pub mod list;
pub mod mem;
pub mod misc;
pub mod network;
pub mod shutdown;
pub mod vcpu;
pub mod xenstore;
pub mod xenstored;
