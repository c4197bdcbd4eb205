//! One module per `xkvm` verb (or family of verbs).

pub mod control;
pub mod create;
pub mod list;
pub mod shutdown;
pub mod xenstore;
pub mod xenstored;
