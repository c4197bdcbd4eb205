//! `HYPERVISOR_physdev_op` (Xen's `arch/x86/physdev.c`, `hvm_physdev_op`).
//! A guest without `has_pirq` (PVH) gets `-ENOSYS` for everything; an HVM
//! guest with PIRQs gets map_pirq / unmap_pirq / eoi / irq_status_query /
//! get_free_pirq on its emulated GSIs and MSIs.
//!
//! As in Xen 4.17, an HVM guest maps only GSIs with `PHYSDEVOP_map_pirq`
//! (`physdev_hvm_map_pirq` refuses every other type with `-EINVAL`); an
//! MSI PIRQ is reserved with `PHYSDEVOP_get_free_pirq` and mapped when the
//! device first writes an MSI with vector 0 and the PIRQ in the
//! destination id ([`crate::Domain::deliver_msi`], `hvm_inject_msi`).

use xen_abi::physdev::*;
use xen_abi::xen::HYPERVISOR_PHYSDEV_OP;

use super::Call;
use crate::pirq::{Emuirq, NR_HVM_IRQS};
use crate::types::{Errno, HcResult};

pub fn physdev_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let arg = c.args[1];
    let pirq_op = matches!(
        cmd,
        PHYSDEVOP_MAP_PIRQ
            | PHYSDEVOP_UNMAP_PIRQ
            | PHYSDEVOP_EOI
            | PHYSDEVOP_IRQ_STATUS_QUERY
            | PHYSDEVOP_GET_FREE_PIRQ
    );
    if !pirq_op || !c.d.config.has_pirq {
        if pirq_op || cmd == PHYSDEVOP_PIRQ_EOI_GMFN_V1 || cmd == PHYSDEVOP_PIRQ_EOI_GMFN_V2 {
            c.d.warn_once(HYPERVISOR_PHYSDEV_OP, cmd, "physdev_op");
        }
        return Err(Errno::ENOSYS);
    }
    match cmd {
        PHYSDEVOP_MAP_PIRQ => map_pirq(c, arg),
        PHYSDEVOP_UNMAP_PIRQ => {
            let u: PhysdevUnmapPirq = c.g.read(arg)?;
            if u.domid != xen_abi::DOMID_SELF {
                // `physdev_unmap_pirq`: any domid but DOMID_SELF (its own
                // id included) takes the privileged path (XSM_DM_PRIV).
                c.self_domid(u.domid)?;
                return Err(Errno::EPERM);
            }
            // Only a PIRQ with an emuirq is unmapped; for any other
            // (never mapped, only reserved, out of range) Xen does nothing
            // and returns 0 for DOMID_SELF.
            let mut t = c.d.pirq_table();
            let mapped = u32::try_from(u.pirq)
                .ok()
                .and_then(|p| t.emuirq(p))
                .is_some_and(|e| e != Emuirq::Allocated);
            if mapped {
                t.unmap(u.pirq)?;
            }
            Ok(0)
        }
        PHYSDEVOP_EOI => {
            let e: PhysdevEoi = c.g.read(arg)?;
            let (gsi, port) = {
                let t = c.d.pirq_table();
                if e.irq >= t.nr() {
                    return Err(Errno::EINVAL);
                }
                match t.emuirq(e.irq) {
                    None => return Err(Errno::EINVAL),
                    Some(Emuirq::Gsi(g)) => (Some(g), t.port(e.irq)),
                    Some(_) => (None, 0),
                }
            };
            // A level GSI still asserted fires again (ISA IRQs are edge).
            if let Some(g) = gsi {
                if g >= 16 && port != 0 && c.d.gsi_asserted(g) {
                    c.d.send_pirq(e.irq);
                }
            }
            Ok(0)
        }
        PHYSDEVOP_IRQ_STATUS_QUERY => {
            let mut q: PhysdevIrqStatusQuery = c.g.read(arg)?;
            {
                let t = c.d.pirq_table();
                if q.irq >= t.nr() {
                    return Err(Errno::EINVAL);
                }
                if !matches!(t.emuirq(q.irq), Some(Emuirq::Gsi(_) | Emuirq::Msi)) {
                    return Err(Errno::EINVAL);
                }
            }
            q.flags = XENIRQSTAT_NEEDS_EOI;
            c.g.write(arg, &q)?;
            Ok(0)
        }
        PHYSDEVOP_GET_FREE_PIRQ => {
            let mut f: PhysdevGetFreePirq = c.g.read(arg)?;
            f.pirq = c.d.pirq_table().allocate(f.type_ == MAP_PIRQ_TYPE_GSI)?;
            c.g.write(arg, &f)?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `PHYSDEVOP_map_pirq` on itself (`physdev_hvm_map_pirq`).
fn map_pirq(c: &mut Call<'_>, arg: u64) -> HcResult {
    let (domid, type_, index, pirq) = if c.compat() {
        let m: PhysdevMapPirqCompat = c.g.read(arg)?;
        (m.domid, m.type_, m.index, m.pirq)
    } else {
        let m: PhysdevMapPirq = c.g.read(arg)?;
        (m.domid, m.type_, m.index, m.pirq)
    };
    if domid != xen_abi::DOMID_SELF {
        // Mapping for another domain (or naming itself by id) is the
        // privileged path (XSM_DM_PRIV): a domU is refused.
        c.self_domid(domid)?;
        return Err(Errno::EPERM);
    }
    // Only with the vector callback (is_hvm_pv_evtchn_domain).
    if !c.d.callback_is_vector() {
        return Err(Errno::EINVAL);
    }
    // `physdev_hvm_map_pirq` handles MAP_PIRQ_TYPE_GSI only ("map type
    // not supported yet" for MSI and the rest).
    if type_ != MAP_PIRQ_TYPE_GSI || !(0..NR_HVM_IRQS).contains(&index) {
        return Err(Errno::EINVAL);
    }
    let pirq = {
        let mut t = c.d.pirq_table();
        // No free PIRQ: Xen passes get_free_pirq's -ENOSPC on as the PIRQ
        // and map_domain_emuirq_pirq rejects it with -EINVAL.
        let p = if pirq < 0 {
            t.free_pirq(true).map_err(|_| Errno::EINVAL)? as i32
        } else {
            pirq
        };
        t.map(p, Emuirq::Gsi(index as u32))?;
        p
    };
    // OUT: pirq (same offset in both layouts).
    c.g.write_at(arg, 12, &pirq)?;
    Ok(0)
}
