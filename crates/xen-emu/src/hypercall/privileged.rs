//! Hypercalls that are in Xen 4.17's HVM/PVH table but that Xen refuses
//! to an unprivileged guest (a domU under the default, dummy XSM policy,
//! `xsm/dummy.h`): the toolstack's `domctl`/`sysctl`/`platform_op`, the
//! device model's `dm_op`, `hypfs_op`, `paging_domctl_cont`, PV page-table
//! `mmuext_op` and `xenpmu_op`. Each returns what Xen returns, checked in
//! Xen's order, so a guest probing for them (as Linux does for some) sees
//! the same answers: argument faults and interface-version mismatches
//! first, then the domain lookup, then the permission check.

use xen_abi::xen as x;
use xen_abi::{DOMID_INVALID, DOMID_IO, DOMID_SELF, DOMID_XEN};

use super::Call;
use crate::types::{Errno, HcResult};

/// Xen's `rcu_lock_domain_by_id(domid)` seen from this guest: the domains
/// that exist are the guest itself and the backend domain (dom0); any
/// other id, `DOMID_SELF` included, is `-ESRCH`.
fn domain_exists(c: &Call<'_>, domid: u16) -> Result<(), Errno> {
    if domid == c.d.domid() || domid == c.d.config.backend_domid {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

/// Reads the `(cmd, interface_version)` header of a `size`-byte toolstack
/// structure at `arg`; Xen copies the whole structure first, so an
/// unreadable tail is `-EFAULT` too.
fn read_op(c: &mut Call<'_>, arg: u64, size: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; size];
    c.g.read_bytes(arg, &mut buf)?;
    Ok(buf)
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(off..off + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

fn u16_at(buf: &[u8], off: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(s) = buf.get(off..off + 2) {
        b.copy_from_slice(s);
    }
    u16::from_le_bytes(b)
}

/// `HYPERVISOR_platform_op(op)`: `do_platform_op` / `compat_platform_op`
/// copy the op (`-EFAULT`), check `XENPF_INTERFACE_VERSION` (`-EACCES`),
/// then `xsm_platform_op(XSM_PRIV)` refuses a domU (`-EPERM`).
pub fn platform_op(c: &mut Call<'_>) -> HcResult {
    let op = read_op(c, c.args[0], x::XEN_PLATFORM_OP_SIZE)?;
    if u32_at(&op, 4) != x::XENPF_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    Err(Errno::EPERM)
}

/// `HYPERVISOR_sysctl(op)`: copy (`-EFAULT`), `XEN_SYSCTL_INTERFACE_VERSION`
/// (`-EACCES`), `xsm_sysctl(XSM_PRIV)` (`-EPERM`).
pub fn sysctl(c: &mut Call<'_>) -> HcResult {
    let op = read_op(c, c.args[0], x::XEN_SYSCTL_SIZE)?;
    if u32_at(&op, 4) != x::XEN_SYSCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    Err(Errno::EPERM)
}

/// `HYPERVISOR_domctl(op)`: copy (`-EFAULT`), version (`-EACCES`), the
/// target domain (`-ESRCH` if there is none; `createdomain` and a few
/// device ops with `DOMID_IO`/`DOMID_INVALID` need none), then
/// `xsm_domctl` refuses a domU every command, on itself included (`-EPERM`).
pub fn domctl(c: &mut Call<'_>) -> HcResult {
    let op = read_op(c, c.args[0], x::XEN_DOMCTL_SIZE)?;
    if u32_at(&op, 4) != x::XEN_DOMCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    let cmd = u32_at(&op, 0);
    let domid = u16_at(&op, x::XEN_DOMCTL_DOMAIN_OFFSET);
    match cmd {
        x::XEN_DOMCTL_CREATEDOMAIN => {}
        x::XEN_DOMCTL_ASSIGN_DEVICE | x::XEN_DOMCTL_DEASSIGN_DEVICE if domid == DOMID_IO => {}
        x::XEN_DOMCTL_ASSIGN_DEVICE | x::XEN_DOMCTL_DEASSIGN_DEVICE if domid == DOMID_INVALID => {
            return Err(Errno::ESRCH)
        }
        x::XEN_DOMCTL_ASSIGN_DEVICE
        | x::XEN_DOMCTL_DEASSIGN_DEVICE
        | x::XEN_DOMCTL_TEST_ASSIGN_DEVICE
        | x::XEN_DOMCTL_VM_EVENT_OP
            if domid == DOMID_INVALID => {}
        _ => domain_exists(c, domid)?,
    }
    Err(Errno::EPERM)
}

/// `HYPERVISOR_paging_domctl_cont(op)` (`do_paging_domctl_cont`): copy
/// (`-EFAULT`), anything but a current-version `XEN_DOMCTL_shadow_op` is
/// `-EOPNOTSUPP`, then the domain (`-ESRCH`) and `xsm_domctl` (`-EPERM`).
pub fn paging_domctl_cont(c: &mut Call<'_>) -> HcResult {
    let op = read_op(c, c.args[0], x::XEN_DOMCTL_SIZE)?;
    if u32_at(&op, 4) != x::XEN_DOMCTL_INTERFACE_VERSION
        || u32_at(&op, 0) != x::XEN_DOMCTL_SHADOW_OP
    {
        return Err(Errno::EOPNOTSUPP);
    }
    domain_exists(c, u16_at(&op, x::XEN_DOMCTL_DOMAIN_OFFSET))?;
    Err(Errno::EPERM)
}

/// `HYPERVISOR_hypfs_op(cmd, ...)`: `xsm_hypfs_op(XSM_PRIV)` comes first
/// (`-EPERM`), for every command (CONFIG_HYPFS is on by default).
pub fn hypfs_op(_c: &mut Call<'_>) -> HcResult {
    Err(Errno::EPERM)
}

/// `HYPERVISOR_xenpmu_op(op, arg)`: the virtual PMU is off unless Xen
/// boots with `vpmu=`, and never offered to a guest with a virtual LAPIC
/// (HVM/PVH): `-EOPNOTSUPP` before anything is read.
pub fn xenpmu_op(_c: &mut Call<'_>) -> HcResult {
    Err(Errno::EOPNOTSUPP)
}

/// `HYPERVISOR_dm_op(domid, nr_bufs, bufs)` (`do_dm_op` / `compat_dm_op`):
/// more than two buffers is `-E2BIG`, unreadable buffer descriptors
/// `-EFAULT`; then `rcu_lock_remote_domain_by_id`: no such domain (also
/// `DOMID_SELF`) `-ESRCH`, the caller itself `-EPERM`. The backend domain
/// (dom0, a PV domain under Xen) is not HVM, and Xen's `dm_op` leaves
/// that check with the lookup's 0 still in `rc`: it returns 0, doing
/// nothing. (Whoever is left would be refused by `xsm_dm_op`, `-EPERM`.)
pub fn dm_op(c: &mut Call<'_>) -> HcResult {
    let domid = c.args[0] as u16;
    let nr_bufs = c.args[1] & 0xffff_ffff;
    if nr_bufs > x::XEN_DM_OP_MAX_BUFS {
        return Err(Errno::E2BIG);
    }
    let size = if c.compat() {
        x::XEN_DM_OP_BUF_SIZE_COMPAT
    } else {
        x::XEN_DM_OP_BUF_SIZE
    };
    let mut bufs = vec![0u8; (nr_bufs * size) as usize];
    c.g.read_bytes(c.args[2], &mut bufs)?;
    if domid == c.d.domid() {
        return Err(Errno::EPERM);
    }
    domain_exists(c, domid)?;
    Ok(0)
}

/// `HYPERVISOR_mmuext_op(uops, count, pdone, foreigndom)`: PV page-table
/// management; an HVM guest reaches `do_mmuext_op` but its own domain is
/// not PV. In Xen's order: the preempted-with-null-`uops` form returns
/// `foreigndom` (the continuation protocol of an old-guest-table put);
/// `get_pg_owner(foreigndom)`: `DOMID_SELF` is the caller, not PV
/// (`-EINVAL`); its own id by number, or an unknown domain, `-ESRCH`;
/// `DOMID_IO`, `DOMID_XEN` and dom0 are PV but `xsm_mmuext_op(XSM_TARGET)`
/// refuses them (`-EPERM`).
///
/// A 32-bit caller goes through `compat_mmuext_op`, which first reads
/// (translates) the ops: `count` 0 does nothing (0) and an unreadable
/// first op is `-EFAULT`. Xen also reads further ops of a long batch
/// before failing; only the first is checked here.
pub fn mmuext_op(c: &mut Call<'_>) -> HcResult {
    let uops = c.args[0];
    let count = (c.args[1] & 0xffff_ffff) as u32;
    let foreigndom = (c.args[3] & 0xffff_ffff) as u32;
    if count == x::MMU_UPDATE_PREEMPTED && uops == 0 {
        return Ok(i64::from(foreigndom as i32));
    }
    if c.compat() {
        if count & !x::MMU_UPDATE_PREEMPTED == 0 {
            return Ok(0);
        }
        let mut op = [0u8; x::MMUEXT_OP_SIZE_COMPAT as usize];
        c.g.read_bytes(uops, &mut op)?;
    }
    // `get_pg_owner` takes a domid_t.
    let dom = foreigndom as u16;
    match dom {
        DOMID_SELF => Err(Errno::EINVAL),
        DOMID_IO | DOMID_XEN => Err(Errno::EPERM),
        _ if dom == c.d.domid() => Err(Errno::ESRCH),
        _ if dom == c.d.config.backend_domid => Err(Errno::EPERM),
        _ => Err(Errno::ESRCH),
    }
}
