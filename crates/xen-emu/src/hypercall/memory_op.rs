//! `HYPERVISOR_memory_op` (Xen's `common/memory.c`, `arch/x86/mm.c`): the
//! memory map, reservation sizes and placing shared_info / grant frames.

use xen_abi::memory::*;
use xen_abi::xen::HYPERVISOR_MEMORY_OP;

use super::Call;
use crate::platform::SpecialPage;
use crate::types::{Errno, Gfn, HcResult};

pub fn memory_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0] & MEMOP_CMD_MASK;
    let arg = c.args[1];
    match cmd {
        XENMEM_MEMORY_MAP => memory_map(c, arg),
        XENMEM_SET_MEMORY_MAP => set_memory_map(c, arg),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION | XENMEM_MAXIMUM_GPFN => {
            let domid: u16 = c.g.read(arg)?;
            c.self_domid(domid)?;
            Ok(match cmd {
                XENMEM_CURRENT_RESERVATION => c.d.state().tot_pages as i64,
                XENMEM_MAXIMUM_RESERVATION => c.d.state().max_pages as i64,
                _ => max_gpfn(&c.d.state().e820) as i64,
            })
        }
        XENMEM_ADD_TO_PHYSMAP => add_to_physmap(c, arg),
        XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            let start = c.args[0] >> MEMOP_EXTENT_SHIFT;
            super::reservation::reservation(c, cmd, start, arg)
        }
        // HVM guests never see the host's map (hvm_memory_op).
        XENMEM_MACHINE_MEMORY_MAP | XENMEM_MACHPHYS_MAPPING => Err(Errno::ENOSYS),
        _ => {
            c.d.warn_once(HYPERVISOR_MEMORY_OP, cmd, "memory_op");
            Err(Errno::ENOSYS)
        }
    }
}

/// Highest guest frame backed by RAM in the map (`domain_get_maximum_gpfn`).
fn max_gpfn(e820: &[E820Entry]) -> u64 {
    e820.iter()
        .filter(|e| e.type_ == E820_RAM && e.size > 0)
        .map(|e| (e.addr.saturating_add(e.size) - 1) >> xen_abi::PAGE_SHIFT)
        .max()
        .unwrap_or(0)
}

/// `XENMEM_memory_map`: copies `min(nr_entries, ours)` entries and writes
/// back the count.
fn memory_map(c: &mut Call<'_>, arg: u64) -> HcResult {
    let (cap, buffer) = if c.compat() {
        let m: XenMemoryMapCompat = c.g.read(arg)?;
        (m.nr_entries, u64::from(m.buffer))
    } else {
        let m: XenMemoryMap = c.g.read(arg)?;
        (m.nr_entries, m.buffer)
    };
    let e820 = c.d.state().e820.clone();
    if e820.is_empty() {
        return Err(Errno::ENOSYS);
    }
    let n = (cap as usize).min(e820.len());
    let bytes: Vec<u8> = e820[..n]
        .iter()
        .flat_map(|e| zerocopy::IntoBytes::as_bytes(e).to_vec())
        .collect();
    c.g.write_bytes(buffer, &bytes)?;
    // nr_entries is the first field in both layouts.
    c.g.write_at(arg, 0, &(n as u32))?;
    Ok(0)
}

/// `XENMEM_set_memory_map` on the caller itself (XSM_TARGET allows it).
fn set_memory_map(c: &mut Call<'_>, arg: u64) -> HcResult {
    let (domid, nr, buffer) = if c.compat() {
        let m: XenForeignMemoryMapCompat = c.g.read(arg)?;
        (m.domid, m.map.nr_entries, u64::from(m.map.buffer))
    } else {
        let m: XenForeignMemoryMap = c.g.read(arg)?;
        (m.domid, m.map.nr_entries, m.map.buffer)
    };
    if nr > E820MAX {
        return Err(Errno::EINVAL);
    }
    c.self_domid(domid)?;
    let mut bytes = vec![0u8; nr as usize * core::mem::size_of::<E820Entry>()];
    c.g.read_bytes(buffer, &mut bytes)?;
    let entries: Vec<E820Entry> = bytes
        .chunks_exact(core::mem::size_of::<E820Entry>())
        .filter_map(|ch| <E820Entry as zerocopy::FromBytes>::read_from_bytes(ch).ok())
        .collect();
    c.d.state().e820 = entries;
    Ok(0)
}

/// `XENMEM_add_to_physmap` for `XENMAPSPACE_shared_info` and
/// `XENMAPSPACE_grant_table`, at any frame the guest picks.
fn add_to_physmap(c: &mut Call<'_>, arg: u64) -> HcResult {
    let (domid, space, idx, gpfn) = if c.compat() {
        let x: XenAddToPhysmapCompat = c.g.read(arg)?;
        (x.domid, x.space, u64::from(x.idx), u64::from(x.gpfn))
    } else {
        let x: XenAddToPhysmap = c.g.read(arg)?;
        (x.domid, x.space, x.idx, x.gpfn)
    };
    // Foreign mappings only via add_to_physmap_batch.
    if space == XENMAPSPACE_GMFN_FOREIGN {
        return Err(Errno::ENOSYS);
    }
    c.self_domid(domid)?;
    let gpfn = Gfn::parse(gpfn)?.0;
    match space {
        XENMAPSPACE_SHARED_INFO => {
            if idx != 0 {
                return Err(Errno::EINVAL);
            }
            c.d.platform
                .map_special_page(SpecialPage::SharedInfo, gpfn)
                .map_err(|_| Errno::EINVAL)?;
            c.d.state().shinfo_gfn = Some(gpfn);
            c.d.latch_shinfo_size(c.compat());
            c.d.shared_info_mapped();
            Ok(0)
        }
        XENMAPSPACE_GRANT_TABLE => {
            let frame = c.d.state().gnttab.frame_for_map(idx)?;
            c.d.platform
                .map_special_page(SpecialPage::GrantFrame(frame), gpfn)
                .map_err(|_| Errno::EINVAL)?;
            let seeds = c.d.state().gnttab.mapped(frame, gpfn);
            for (gref, entry) in seeds {
                if let Some((g, off)) = c.d.state().gnttab.entry_location(gref) {
                    super::gnttab::write_entry(&*c.d.mem, g, off, &entry)?;
                }
            }
            Ok(0)
        }
        XENMAPSPACE_GMFN | XENMAPSPACE_GMFN_RANGE | XENMAPSPACE_DEV_MMIO => {
            c.d.warn_once(
                HYPERVISOR_MEMORY_OP,
                0x100 | u64::from(space),
                "add_to_physmap space",
            );
            Err(Errno::ENOSYS)
        }
        // No page behind an unknown space: Xen fails with -EINVAL.
        _ => Err(Errno::EINVAL),
    }
}
