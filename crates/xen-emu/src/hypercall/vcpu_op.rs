//! `HYPERVISOR_vcpu_op` (Xen's `common/domain.c`): registering a vCPU's
//! `vcpu_info` (and with it its pvclock area). Timers and SMP bring-up are
//! issue 5.

use std::sync::atomic::Ordering;

use xen_abi::vcpu::*;
use xen_abi::xen::{vcpu_info_offsets as vio, HYPERVISOR_VCPU_OP, VCPU_INFO_SIZE};

use super::Call;
use crate::types::{Errno, Gfn, HcResult};

pub fn vcpu_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let vcpuid = c.args[1] as u32;
    let arg = c.args[2];
    if vcpuid >= c.d.config.max_vcpus.max(1) {
        return Err(Errno::ENOENT);
    }
    match cmd {
        VCPUOP_REGISTER_VCPU_INFO => register_vcpu_info(c, vcpuid, arg),
        _ => {
            c.d.warn_once(HYPERVISOR_VCPU_OP, cmd, "vcpu_op");
            Err(Errno::ENOSYS)
        }
    }
}

/// Moves `vcpu`'s `vcpu_info` into guest RAM (Xen's `map_vcpu_info`):
/// copies the current contents, then forces a full rescan (all selector
/// bits and `evtchn_upcall_pending` set) so no event is lost in the move.
fn register_vcpu_info(c: &mut Call<'_>, vcpu: u32, arg: u64) -> HcResult {
    let info: VcpuRegisterVcpuInfo = c.g.read(arg)?;
    if u64::from(info.offset) > (xen_abi::PAGE_SIZE - VCPU_INFO_SIZE) as u64 {
        return Err(Errno::EINVAL);
    }
    let base = Gfn(info.mfn).gpa().ok_or(Errno::EINVAL)?;
    let new = base + u64::from(info.offset);
    let mem = &*c.d.mem;
    let (old, compat) = {
        let st = c.d.state();
        if st.vcpu_info.get(vcpu as usize).is_some_and(|v| v.is_some()) {
            return Err(Errno::EINVAL);
        }
        (st.vcpu_info_gpa(vcpu), st.compat)
    };
    let mut contents = [0u8; VCPU_INFO_SIZE];
    if let Some(old) = old {
        mem.read(old, &mut contents).map_err(|_| Errno::EINVAL)?;
    }
    // The target must be guest memory (Xen: get_page_from_gfn fails → -EINVAL).
    mem.write(new, &contents).map_err(|_| Errno::EINVAL)?;
    let sel = if compat {
        vio::PENDING_SEL_COMPAT
    } else {
        vio::PENDING_SEL
    };
    let sel_words = if compat { 1 } else { 2 };
    for w in 0..sel_words {
        mem.atomic_u32(new + sel as u64 + 4 * w)
            .map_err(|_| Errno::EINVAL)?
            .store(u32::MAX, Ordering::SeqCst);
    }
    mem.atomic_u8(new + vio::UPCALL_PENDING as u64)
        .map_err(|_| Errno::EINVAL)?
        .store(1, Ordering::SeqCst);
    if let Some(slot) = c.d.state().vcpu_info.get_mut(vcpu as usize) {
        *slot = Some(new);
    }
    c.d.platform.set_pvclock_area(vcpu, new + vio::TIME as u64);
    c.d.raise_upcall(vcpu);
    Ok(0)
}
