//! `io/*.h`: shared-memory ring layouts.

pub mod console;
pub mod xs_wire;
