//! `HYPERVISOR_hvm_op` (Xen's `arch/x86/hvm/hvm.c`): parameters, the
//! per-vCPU upcall vector, the time.

use xen_abi::hvm::hvm_op::*;
use xen_abi::hvm::params::{HVM_NR_PARAMS, HVM_PARAM_CALLBACK_IRQ};
use xen_abi::xen::HYPERVISOR_HVM_OP;

use super::Call;
use crate::evtchn::two_level;
use crate::types::{Errno, HcResult};

/// Vectors below this are exceptions, not usable for upcalls.
const MIN_UPCALL_VECTOR: u8 = 0x10;

pub fn hvm_op(c: &mut Call<'_>) -> HcResult {
    let op = c.args[0];
    let arg = c.args[1];
    match op {
        HVMOP_SET_PARAM | HVMOP_GET_PARAM => param(c, op, arg),
        HVMOP_SET_EVTCHN_UPCALL_VECTOR => upcall_vector(c, arg),
        HVMOP_GET_TIME => {
            c.g.write(
                arg,
                &XenHvmGetTime {
                    now: c.d.platform.system_time_ns(),
                },
            )?;
            Ok(0)
        }
        HVMOP_PAGETABLE_DYING => {
            // struct xen_hvm_pagetable_dying: domid first in both ABIs.
            let domid: u16 = c.g.read(arg)?;
            let me = c.d.domid();
            if domid != xen_abi::DOMID_SELF && domid != me && domid != c.d.config.backend_domid {
                return Err(Errno::ESRCH);
            }
            // Only shadow paging cares; on a HAP host (which KVM's
            // two-dimensional paging is) Xen answers -EINVAL.
            Err(Errno::EINVAL)
        }
        HVMOP_FLUSH_TLBS => {
            // Our vCPUs' TLBs are KVM's; nothing cached here to flush.
            if arg != 0 {
                Err(Errno::EINVAL)
            } else {
                Ok(0)
            }
        }
        _ => {
            c.d.warn_once(HYPERVISOR_HVM_OP, op, "hvm_op");
            Err(Errno::ENOSYS)
        }
    }
}

fn param(c: &mut Call<'_>, op: u64, arg: u64) -> HcResult {
    let mut a: XenHvmParam = c.g.read(arg)?;
    if a.index >= HVM_NR_PARAMS {
        return Err(Errno::EINVAL);
    }
    c.self_domid(a.domid)?;
    if op == HVMOP_GET_PARAM {
        a.value = c.d.state().params.guest_get(a.index)?;
        c.g.write(arg, &a)?;
        return Ok(0);
    }
    c.d.state().params.guest_check_set(a.index, a.value)?;
    c.d.state().params.commit(a.index, a.value);
    if a.index == HVM_PARAM_CALLBACK_IRQ {
        c.d.latch_shinfo_size(c.compat());
    }
    Ok(0)
}

fn upcall_vector(c: &mut Call<'_>, arg: u64) -> HcResult {
    let op: XenHvmEvtchnUpcallVector = c.g.read(arg)?;
    if op.vector < MIN_UPCALL_VECTOR {
        return Err(Errno::EINVAL);
    }
    let vi = {
        let mut st = c.d.state();
        let slot = st
            .upcall_vector
            .get_mut(op.vcpu as usize)
            .ok_or(Errno::ENOENT)?;
        *slot = Some(op.vector);
        st.vcpu_info_gpa(op.vcpu)
    };
    c.d.latch_shinfo_size(c.compat());
    // An event that is already pending gets its upcall now.
    if vi.is_some_and(|g| two_level::upcall_pending(&*c.d.mem, g).unwrap_or(false)) {
        c.d.raise_upcall(op.vcpu);
    }
    Ok(0)
}
