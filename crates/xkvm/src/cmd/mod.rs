//! One module per `xkvm` verb.

pub mod create;
pub mod xenstored;
