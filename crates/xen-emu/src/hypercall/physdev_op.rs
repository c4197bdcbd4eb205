//! `HYPERVISOR_physdev_op`: a PVH domU has no PIRQs and no physical
//! devices, so Xen answers every sub-op with `-ENOSYS` (`hvm_physdev_op`).
//! HVM PIRQs (`has_pirq`) are issue 5.

use xen_abi::physdev::*;
use xen_abi::xen::HYPERVISOR_PHYSDEV_OP;

use super::Call;
use crate::types::{Errno, HcResult};

pub fn physdev_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let pirq_op = matches!(
        cmd,
        PHYSDEVOP_MAP_PIRQ
            | PHYSDEVOP_UNMAP_PIRQ
            | PHYSDEVOP_EOI
            | PHYSDEVOP_IRQ_STATUS_QUERY
            | PHYSDEVOP_GET_FREE_PIRQ
    );
    if pirq_op && c.d.config.has_pirq {
        c.d.warn_once(HYPERVISOR_PHYSDEV_OP, cmd, "physdev_op");
    }
    Err(Errno::ENOSYS)
}
