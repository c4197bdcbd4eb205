//! `XENMEM_increase_reservation`, `XENMEM_decrease_reservation` and
//! `XENMEM_populate_physmap` (Xen's `common/memory.c`) on the guest's own
//! memory, as a balloon driver uses them.
//!
//! Guest RAM is a fixed set of KVM memslots here, so a frame the guest
//! gives back stays in the guest-physical map, but its host memory goes
//! back to the host ([`GuestMemory::discard_page`], `MADV_DONTNEED` in the
//! VMM) and it is counted out of `tot_pages` (Xen frees the page and
//! removes it from the p2m). Populating it again counts it back in and the
//! guest finds it zeroed, as a fresh Xen page. Frames outside guest RAM
//! cannot be populated. A guest that touches a frame it gave back gets a
//! fresh zero page here (Xen: an unpopulated frame).
//!
//! [`GuestMemory::discard_page`]: crate::guest::GuestMemory::discard_page
//!
//! Like Xen, the return value is the number of extents done (a partial
//! count on failure, never an errno), and a bad domid, a refused order
//! or a continuation index past the end returns the start index. A long
//! batch is preempted as in Xen: after [`CHUNK_PAGES`] pages, or sooner when
//! the platform wants the vCPU, the call becomes a continuation with the
//! next extent's index in the command (`cmd | i << MEMOP_EXTENT_SHIFT`).

use xen_abi::memory::*;
use xen_abi::xen::HYPERVISOR_MEMORY_OP;

use super::Call;
use crate::types::HcResult;

/// `multipage_allocation_permitted` for a domU: up to 2 MiB extents.
const MAX_ORDER: u32 = 9;

/// Pages one invocation handles before it makes a continuation (when the
/// trap path can): 16 MiB, a few milliseconds of `MADV_DONTNEED`.
pub const CHUNK_PAGES: u64 = 4096;

pub fn reservation(c: &mut Call<'_>, cmd: u64, start: u64, arg: u64) -> HcResult {
    let (list, nr, order, domid) = if c.compat() {
        let r: XenMemoryReservationCompat = c.g.read(arg)?;
        (
            u64::from(r.extent_start),
            u64::from(r.nr_extents),
            r.extent_order,
            r.domid,
        )
    } else {
        let r: XenMemoryReservation = c.g.read(arg)?;
        (r.extent_start, r.nr_extents, r.extent_order, r.domid)
    };
    let done = start as i64;
    // Xen: a count whose continuation index would not fit beside the
    // command in the first argument is refused.
    if nr > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) {
        return Ok(done);
    }
    if start >= nr {
        return Ok(done);
    }
    if cmd != XENMEM_DECREASE_RESERVATION && order > MAX_ORDER {
        return Ok(done);
    }
    // Decrease of a huge order would loop forever over pages we do not
    // have; Xen bounds it by the domain's pages too.
    if order >= 32 {
        return Ok(done);
    }
    if c.self_domid(domid).is_err() {
        return Ok(done);
    }
    let pages = 1u64 << order;
    let mut i = start;
    while i < nr {
        // As Xen's loops: at least one extent per invocation, then stop
        // when preempted and let the guest re-issue the call from `i`.
        if i != start && c.preempt((i - start) * pages, CHUNK_PAGES) {
            return c.create_continuation(
                HYPERVISOR_MEMORY_OP,
                &[cmd | (i << MEMOP_EXTENT_SHIFT), arg],
            );
        }
        let ok = match cmd {
            XENMEM_INCREASE_RESERVATION => increase(c, pages),
            _ => {
                let Ok(gfn) = read_pfn(c, list, i) else {
                    break;
                };
                if cmd == XENMEM_POPULATE_PHYSMAP {
                    populate(c, gfn, pages)
                } else {
                    decrease(c, gfn, pages)
                }
            }
        };
        if !ok {
            break;
        }
        i += 1;
    }
    Ok(i as i64)
}

fn read_pfn(c: &mut Call<'_>, list: u64, i: u64) -> Result<u64, crate::types::Errno> {
    if c.compat() {
        let v: u32 = c.g.read(list.wrapping_add(4 * i))?;
        Ok(u64::from(v))
    } else {
        c.g.read(list.wrapping_add(8 * i))
    }
}

/// HVM `increase_reservation` allocates pages without mapping them: only
/// the count moves (up to `max_pages`).
fn increase(c: &mut Call<'_>, pages: u64) -> bool {
    let mut st = c.d.state();
    if st.tot_pages + pages > st.max_pages {
        return false;
    }
    st.tot_pages += pages;
    true
}

/// Whether `gfn` is ordinary guest RAM (not a special page, not a hole).
fn is_ram(c: &Call<'_>, gfn: u64) -> bool {
    is_ram_frame(c.d, gfn)
}

/// [`is_ram`] for any caller: in an E820 RAM range, not a special page
/// (shared_info, a grant frame), backed by guest memory.
pub(crate) fn is_ram_frame(d: &crate::Domain, gfn: u64) -> bool {
    let Some(gpa) = gfn.checked_mul(xen_abi::PAGE_SIZE as u64) else {
        return false;
    };
    let st = d.state();
    let in_map = st
        .e820
        .iter()
        .any(|e| e.type_ == E820_RAM && gpa >= e.addr && gpa < e.addr.saturating_add(e.size));
    drop(st);
    in_map && !is_special_frame(d, gfn) && d.mem.atomic_u8(gpa).is_ok()
}

/// Whether the guest placed shared_info or a grant frame at `gfn`.
pub(crate) fn is_special_frame(d: &crate::Domain, gfn: u64) -> bool {
    let st = d.state();
    st.shinfo_gfn == Some(gfn) || (0..st.gnttab.max_frames()).any(|f| st.gnttab.gfn(f) == Some(gfn))
}

/// Whether `gfn` holds a populated RAM page: RAM the guest has not given
/// back with `XENMEM_decrease_reservation` (a ballooned frame is a hole in
/// Xen's p2m, where e.g. grant mappings may go).
pub(crate) fn is_populated_ram(d: &crate::Domain, gfn: u64) -> bool {
    is_ram_frame(d, gfn) && !d.state().ballooned.contains(&gfn)
}

/// Makes `gfn` a zero page, giving its host memory back where the VMM
/// can (a discarded page reads zero), else writing zeroes.
fn zero_page(c: &Call<'_>, gfn: u64) -> bool {
    let gpa = gfn << xen_abi::PAGE_SHIFT;
    match c.d.mem.discard_page(gpa) {
        Ok(true) => true,
        Ok(false) => {
            let page = [0u8; xen_abi::PAGE_SIZE];
            c.d.mem.write(gpa, &page).is_ok()
        }
        Err(_) => false,
    }
}

fn populate(c: &mut Call<'_>, gfn: u64, pages: u64) -> bool {
    let Some(end) = gfn.checked_add(pages) else {
        return false;
    };
    if !(gfn..end).all(|g| is_ram(c, g)) {
        return false;
    }
    {
        let mut st = c.d.state();
        // assign_pages checks the limit before the old pages are freed.
        if st.tot_pages + pages > st.max_pages {
            return false;
        }
        for g in gfn..end {
            if st.ballooned.remove(&g) {
                st.tot_pages += 1;
            }
        }
    }
    (gfn..end).all(|g| zero_page(c, g))
}

fn decrease(c: &mut Call<'_>, gfn: u64, pages: u64) -> bool {
    let Some(end) = gfn.checked_add(pages) else {
        return false;
    };
    for g in gfn..end {
        if !is_ram(c, g) {
            return false;
        }
        // Claim the frame under one lock hold: of two vCPUs giving back
        // the same frame only one counts it out.
        if !c.d.state().ballooned.insert(g) {
            return false;
        }
        if !zero_page(c, g) {
            c.d.state().ballooned.remove(&g);
            return false;
        }
        let mut st = c.d.state();
        st.tot_pages = st.tot_pages.saturating_sub(1);
    }
    true
}
