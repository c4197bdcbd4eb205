//! One module per `xkvm` verb (or family of verbs).

pub mod block;
pub mod control;
pub mod create;
pub mod list;
pub mod network;
pub mod shutdown;
pub mod xenstore;
pub mod xenstored;
