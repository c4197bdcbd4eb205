//! The dispatcher itself: unknown calls, privilege, 32-bit truncation.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::errno::*;
use xen_abi::xen::*;

#[test]
fn unknown_hypercall_is_enosys() {
    let mut t = h();
    assert_eq!(t.call(HYPERVISOR_MMU_UPDATE, &[0, 0, 0]), -ENOSYS);
    assert_eq!(t.call(63, &[]), -ENOSYS);
    assert_eq!(t.call(u64::MAX, &[]), -ENOSYS);
}

#[test]
fn user_mode_hypercall_is_eperm() {
    let mut t = h();
    t.v.cpl = 3;
    assert_eq!(t.call(HYPERVISOR_XEN_VERSION, &[0, 0]), -EPERM);
}

#[test]
fn compat_caller_registers_are_truncated() {
    let mut t = h32();
    let hi = 0xdead_beef_0000_0000u64;
    assert_eq!(
        t.call(hi | HYPERVISOR_XEN_VERSION, &[hi, 0]),
        (4 << 16) | 17
    );
}

#[test]
fn vcpu_id_beyond_domain_is_einval() {
    let mut t = h();
    t.v.id = 2;
    assert_eq!(t.call(HYPERVISOR_XEN_VERSION, &[0, 0]), -EINVAL);
}
