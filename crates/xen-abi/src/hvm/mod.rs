//! `hvm/*.h` and `arch-x86/hvm/*.h`: HVM parameters, `hvm_op`, PVH start info.

pub mod hvm_op;
pub mod params;
pub mod start_info;
