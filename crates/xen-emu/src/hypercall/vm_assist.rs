//! `HYPERVISOR_vm_assist`: optional hypervisor behaviours a guest turns on.
//! An HVM/PVH guest may only use `VMASST_TYPE_runstate_update_flag`
//! (Xen's `HVM_VM_ASSIST_MASK`, since 4.14); Linux enables it at boot to
//! read other vCPUs' runstate areas consistently.

use std::sync::atomic::Ordering;

use xen_abi::xen::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG};

use super::Call;
use crate::types::{Errno, HcResult};

/// The assists an HVM domain may set (`arch_vm_assist_valid_mask`).
const VALID: u64 = 1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG;

/// Xen's `do_vm_assist(unsigned int cmd, unsigned int type)`.
pub fn vm_assist(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0] & 0xffff_ffff;
    let ty = c.args[1] & 0xffff_ffff;
    if ty >= 64 || VALID & (1 << ty) == 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        VMASST_CMD_ENABLE => {
            c.d.vm_assist.fetch_or(1 << ty, Ordering::SeqCst);
            Ok(0)
        }
        VMASST_CMD_DISABLE => {
            c.d.vm_assist.fetch_and(!(1 << ty), Ordering::SeqCst);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
