//! Calls in Xen 4.17's HVM hypercall table that Xen refuses to a domU
//! (dummy XSM): each gets Xen's error, in Xen's order of checks, in both
//! ABIs; numbers outside the table are `-ENOSYS`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::errno::*;
use xen_abi::xen::*;
use xen_abi::{DOMID_INVALID, DOMID_IO, DOMID_SELF, DOMID_XEN};

/// A toolstack op header: (cmd, interface_version, domain) in a zeroed
/// `size`-byte structure at [`ARG`].
fn put_op(t: &H, size: usize, cmd: u32, version: u32, domain: u16) {
    let mut raw = vec![0u8; size];
    raw[0..4].copy_from_slice(&cmd.to_le_bytes());
    raw[4..8].copy_from_slice(&version.to_le_bytes());
    raw[8..10].copy_from_slice(&domain.to_le_bytes());
    t.mem.put(ARG, &raw[..]);
}

fn both() -> [H; 2] {
    [h(), h32()]
}

#[test]
fn numbers_outside_the_hvm_table_are_enosys() {
    for mut t in both() {
        // PV-only calls, removed ones, unused numbers and the top of the
        // table; xsm_op (dummy XSM) and argo_op (not built by default).
        for nr in [
            0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 14, 16, 19, 22, 23, 25, 28, 30,
        ]
        .into_iter()
        .chain([31, 37, 38, 39, 27, 43, 48, 50, 55, 63, 64, 127])
        {
            assert_eq!(t.call(nr, &[0, ARG, 1, 0, 0]), -ENOSYS, "nr {nr}");
        }
    }
}

#[test]
fn domctl_is_refused_after_xens_argument_checks() {
    for mut t in both() {
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let call = |t: &mut H| t.call(HYPERVISOR_DOMCTL, &[ARG]);
        // The whole structure is copied first.
        assert_eq!(t.call(HYPERVISOR_DOMCTL, &[UNMAPPED - 100]), -EFAULT);
        put_op(&t, XEN_DOMCTL_SIZE, 2, v - 1, 5);
        assert_eq!(call(&mut t), -EACCES);
        // getdomaininfo (5) on itself, on dom0: XSM says no.
        put_op(&t, XEN_DOMCTL_SIZE, 5, v, 5);
        assert_eq!(call(&mut t), -EPERM);
        put_op(&t, XEN_DOMCTL_SIZE, 5, v, 0);
        assert_eq!(call(&mut t), -EPERM);
        // No such domain; DOMID_SELF is not looked up by id.
        put_op(&t, XEN_DOMCTL_SIZE, 5, v, 9);
        assert_eq!(call(&mut t), -ESRCH);
        put_op(&t, XEN_DOMCTL_SIZE, 5, v, DOMID_SELF);
        assert_eq!(call(&mut t), -ESRCH);
        // Commands that need no domain.
        put_op(&t, XEN_DOMCTL_SIZE, XEN_DOMCTL_CREATEDOMAIN, v, 9);
        assert_eq!(call(&mut t), -EPERM);
        put_op(&t, XEN_DOMCTL_SIZE, XEN_DOMCTL_ASSIGN_DEVICE, v, DOMID_IO);
        assert_eq!(call(&mut t), -EPERM);
        put_op(
            &t,
            XEN_DOMCTL_SIZE,
            XEN_DOMCTL_ASSIGN_DEVICE,
            v,
            DOMID_INVALID,
        );
        assert_eq!(call(&mut t), -ESRCH);
        put_op(
            &t,
            XEN_DOMCTL_SIZE,
            XEN_DOMCTL_TEST_ASSIGN_DEVICE,
            v,
            DOMID_INVALID,
        );
        assert_eq!(call(&mut t), -EPERM);
    }
}

#[test]
fn sysctl_and_platform_op_are_efault_eacces_or_eperm() {
    for mut t in both() {
        for (nr, size, v) in [
            (
                HYPERVISOR_SYSCTL,
                XEN_SYSCTL_SIZE,
                XEN_SYSCTL_INTERFACE_VERSION,
            ),
            (
                HYPERVISOR_PLATFORM_OP,
                XEN_PLATFORM_OP_SIZE,
                XENPF_INTERFACE_VERSION,
            ),
        ] {
            // 100 readable bytes are not a whole structure.
            assert_eq!(t.call(nr, &[UNMAPPED - 100]), -EFAULT, "nr {nr}");
            put_op(&t, size, 1, v ^ 1, 0);
            assert_eq!(t.call(nr, &[ARG]), -EACCES, "nr {nr}");
            put_op(&t, size, 1, v, 0);
            assert_eq!(t.call(nr, &[ARG]), -EPERM, "nr {nr}");
        }
    }
}

#[test]
fn paging_domctl_cont_takes_only_shadow_op() {
    for mut t in both() {
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let nr = HYPERVISOR_PAGING_DOMCTL_CONT;
        assert_eq!(t.call(nr, &[UNMAPPED - 8]), -EFAULT);
        put_op(&t, XEN_DOMCTL_SIZE, 5, v, 5);
        assert_eq!(t.call(nr, &[ARG]), -EOPNOTSUPP);
        put_op(&t, XEN_DOMCTL_SIZE, XEN_DOMCTL_SHADOW_OP, v - 1, 5);
        assert_eq!(t.call(nr, &[ARG]), -EOPNOTSUPP);
        put_op(&t, XEN_DOMCTL_SIZE, XEN_DOMCTL_SHADOW_OP, v, 9);
        assert_eq!(t.call(nr, &[ARG]), -ESRCH);
        put_op(&t, XEN_DOMCTL_SIZE, XEN_DOMCTL_SHADOW_OP, v, 5);
        assert_eq!(t.call(nr, &[ARG]), -EPERM);
    }
}

#[test]
fn hypfs_is_eperm_and_xenpmu_eopnotsupp_whatever_the_arguments() {
    for mut t in both() {
        assert_eq!(t.call(HYPERVISOR_HYPFS_OP, &[0, 0, 0, 0, 0]), -EPERM);
        assert_eq!(t.call(HYPERVISOR_HYPFS_OP, &[7, UNMAPPED, 1, 2, 3]), -EPERM);
        assert_eq!(t.call(HYPERVISOR_XENPMU_OP, &[0, ARG]), -EOPNOTSUPP);
        assert_eq!(t.call(HYPERVISOR_XENPMU_OP, &[9, UNMAPPED]), -EOPNOTSUPP);
    }
}

#[test]
fn dm_op_checks_buffers_then_the_target_domain() {
    for mut t in both() {
        assert_eq!(t.call(HYPERVISOR_DM_OP, &[5, 3, ARG]), -E2BIG);
        assert_eq!(t.call(HYPERVISOR_DM_OP, &[5, 2, UNMAPPED - 8]), -EFAULT);
        // No buffers: nothing to read.
        assert_eq!(t.call(HYPERVISOR_DM_OP, &[5, 0, UNMAPPED]), -EPERM);
        // Itself: a device model works on another domain.
        assert_eq!(t.call(HYPERVISOR_DM_OP, &[5, 1, ARG]), -EPERM);
        assert_eq!(
            t.call(HYPERVISOR_DM_OP, &[u64::from(DOMID_SELF), 1, ARG]),
            -ESRCH
        );
        assert_eq!(t.call(HYPERVISOR_DM_OP, &[9, 1, ARG]), -ESRCH);
        // dom0 is not an HVM domain: Xen's dm_op returns the lookup's 0.
        assert_eq!(t.call(HYPERVISOR_DM_OP, &[0, 1, ARG]), 0);
    }
}

#[test]
fn mmuext_op_finds_no_pv_page_owner() {
    for mut t in both() {
        let nr = HYPERVISOR_MMUEXT_OP;
        let self_ = u64::from(DOMID_SELF);
        assert_eq!(t.call(nr, &[ARG, 1, 0, self_]), -EINVAL);
        assert_eq!(t.call(nr, &[ARG, 1, 0, 5]), -ESRCH);
        assert_eq!(t.call(nr, &[ARG, 1, 0, 9]), -ESRCH);
        assert_eq!(t.call(nr, &[ARG, 1, 0, 0]), -EPERM);
        assert_eq!(t.call(nr, &[ARG, 1, 0, u64::from(DOMID_IO)]), -EPERM);
        assert_eq!(t.call(nr, &[ARG, 1, 0, u64::from(DOMID_XEN)]), -EPERM);
        // The continuation form with no ops hands back `foreigndom`.
        let preempted = u64::from(MMU_UPDATE_PREEMPTED);
        assert_eq!(t.call(nr, &[0, preempted, 0, 0xffff_fff2]), -14);
        assert_eq!(t.call(nr, &[0, preempted, 0, 3]), 3);
    }
    // A 32-bit caller's ops are read (translated) first.
    let mut t = h32();
    let self_ = u64::from(DOMID_SELF);
    assert_eq!(t.call(HYPERVISOR_MMUEXT_OP, &[ARG, 0, 0, self_]), 0);
    assert_eq!(
        t.call(HYPERVISOR_MMUEXT_OP, &[UNMAPPED - 4, 1, 0, self_]),
        -EFAULT
    );
    // ... a 64-bit caller's are not.
    let mut t = h();
    assert_eq!(t.call(HYPERVISOR_MMUEXT_OP, &[ARG, 0, 0, self_]), -EINVAL);
    assert_eq!(
        t.call(HYPERVISOR_MMUEXT_OP, &[UNMAPPED - 4, 1, 0, self_]),
        -EINVAL
    );
}
