//! `HYPERVISOR_grant_table_op` (Xen's `common/grant_table.c`), v1:
//! set_version, get_version, setup_table, query_size, copy, and the
//! guest's own map_grant_ref / unmap_grant_ref. The batch sub-ops (copy,
//! map, unmap) are preempted as in Xen: after [`CHUNK_OPS`] ops, or sooner
//! when the platform wants the vCPU, the guest re-issues the call for the
//! rest (`uop` advanced, `count` reduced).
//!
//! The only domain a guest can map grants of here is itself (named by its
//! domid: Xen's `map_grant_ref` looks the domain up with
//! `rcu_lock_domain_by_id`, which does not know `DOMID_SELF`, so that is
//! `GNTST_bad_domain` as in Xen). The VMM's backends are the backend
//! domain but grant nothing to guests. With `GNTMAP_host_map` Xen puts the
//! granted frame at guest-physical `host_addr` (`create_grant_p2m_mapping`);
//! here the VMM aliases the page's host memory there with a memslot of its
//! own ([`crate::platform::Platform::map_grant_page`]). Deviations: a
//! `host_addr` on populated RAM is refused with `GNTST_general_error`
//! (Xen would replace the RAM page in its p2m), as is one already holding
//! a grant mapping (Xen crashes the domain); a read-only mapping is
//! writable through the alias (it is the guest's own page either way).

use std::sync::atomic::Ordering;

use xen_abi::grant_table::*;
use xen_abi::xen::HYPERVISOR_GRANT_TABLE_OP;

use super::Call;
use crate::guest::{GuestMemory, MemError};
use crate::types::{Errno, HcResult};

/// Writes a v1 grant entry into a mapped grant frame: frame and domid
/// first, flags last, so a reader never sees a valid entry half written.
pub fn write_entry(
    mem: &dyn GuestMemory,
    gfn: u64,
    off: u64,
    e: &GrantEntryV1,
) -> Result<(), MemError> {
    let gpa = (gfn << xen_abi::PAGE_SHIFT) + off;
    mem.atomic_u32(gpa + 4)?.store(e.frame, Ordering::SeqCst);
    mem.atomic_u16(gpa + 2)?.store(e.domid, Ordering::SeqCst);
    mem.atomic_u16(gpa)?.store(e.flags, Ordering::SeqCst);
    Ok(())
}

/// Offset of `status` in `gnttab_setup_table` (both ABIs).
const SETUP_STATUS: usize = 8;

pub fn grant_table_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let uop = c.args[1];
    let count = c.args[2] as u32;
    if (count as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        GNTTABOP_SETUP_TABLE => one(count).and_then(|_| setup_table(c, uop)),
        GNTTABOP_QUERY_SIZE => one(count).and_then(|_| query_size(c, uop)),
        GNTTABOP_SET_VERSION => one(count).and_then(|_| set_version(c, uop)),
        GNTTABOP_GET_VERSION => one(count).and_then(|_| get_version(c, uop)),
        GNTTABOP_COPY => copy(c, uop, count),
        GNTTABOP_MAP_GRANT_REF => map_grant_refs(c, uop, count),
        GNTTABOP_UNMAP_GRANT_REF => unmap_grant_refs(c, uop, count),
        GNTTABOP_SWAP_GRANT_REF
        | GNTTABOP_TRANSFER
        | GNTTABOP_UNMAP_AND_REPLACE
        | GNTTABOP_GET_STATUS_FRAMES
        | GNTTABOP_CACHE_FLUSH => {
            c.d.warn_once(HYPERVISOR_GRANT_TABLE_OP, cmd, "grant_table_op");
            Err(Errno::ENOSYS)
        }
        // Not offered to HVM guests (hvm_grant_table_op).
        _ => Err(Errno::ENOSYS),
    }
}

/// Ops of a batch one invocation handles before it makes a continuation
/// (when the trap path can).
pub const CHUNK_OPS: u64 = 256;

/// Xen's preemption of a batch sub-op before op `i` (never before the
/// first): `do_grant_table_op` then makes the guest re-issue `cmd` with
/// `uop` advanced past the `i` ops done (`size` bytes each) and `count - i`.
fn preempted(
    c: &mut Call<'_>,
    cmd: u64,
    uop: u64,
    count: u32,
    i: u64,
    size: u64,
) -> Option<HcResult> {
    if i == 0 || !c.preempt(i, CHUNK_OPS) {
        return None;
    }
    let next = uop.wrapping_add(i * size);
    Some(c.create_continuation(
        HYPERVISOR_GRANT_TABLE_OP,
        &[cmd, next, u64::from(count) - i],
    ))
}

/// These sub-ops take exactly one structure.
fn one(count: u32) -> Result<(), Errno> {
    if count != 1 {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

/// Maps a domid argument to a `GNTST_*` failure, or `None` for the caller.
fn dom_status(c: &Call<'_>, dom: u16) -> Option<i16> {
    match c.self_domid(dom) {
        Ok(_) => None,
        Err(Errno::EPERM) => Some(GNTST_PERMISSION_DENIED),
        Err(_) => Some(GNTST_BAD_DOMAIN),
    }
}

fn setup_table(c: &mut Call<'_>, uop: u64) -> HcResult {
    let (dom, nr_frames, list) = if c.compat() {
        let op: GnttabSetupTableCompat = c.g.read(uop)?;
        (op.dom, op.nr_frames, u64::from(op.frame_list))
    } else {
        let op: GnttabSetupTable = c.g.read(uop)?;
        (op.dom, op.nr_frames, op.frame_list)
    };
    let status = match dom_status(c, dom) {
        Some(s) => s,
        None => {
            let gfns = {
                let mut st = c.d.state();
                if nr_frames > st.gnttab.max_frames() {
                    None
                } else {
                    st.gnttab.grow(nr_frames).ok().map(|_| {
                        (0..nr_frames)
                            .map(|i| st.gnttab.gfn(i).unwrap_or(u64::MAX))
                            .collect::<Vec<_>>()
                    })
                }
            };
            match gfns {
                None => GNTST_GENERAL_ERROR,
                Some(gfns) => {
                    let mut s = GNTST_OKAY;
                    for (i, g) in gfns.into_iter().enumerate() {
                        let r = if c.compat() {
                            let g32 = u32::try_from(g).unwrap_or(u32::MAX);
                            c.g.write(list.wrapping_add(4 * i as u64), &g32)
                        } else {
                            c.g.write(list.wrapping_add(8 * i as u64), &g)
                        };
                        if r.is_err() {
                            s = GNTST_BAD_VIRT_ADDR;
                        }
                    }
                    s
                }
            }
        }
    };
    c.g.write_at(uop, SETUP_STATUS, &status)?;
    Ok(0)
}

fn query_size(c: &mut Call<'_>, uop: u64) -> HcResult {
    let mut op: GnttabQuerySize = c.g.read(uop)?;
    match dom_status(c, op.dom) {
        Some(s) => op.status = s,
        None => {
            let st = c.d.state();
            op.nr_frames = st.gnttab.nr_frames();
            op.max_nr_frames = st.gnttab.max_frames();
            op.status = GNTST_OKAY;
        }
    }
    c.g.write(uop, &op)?;
    Ok(0)
}

/// `GNTTABOP_set_version` always reports the version in force, even when
/// it refuses the change.
fn set_version(c: &mut Call<'_>, uop: u64) -> HcResult {
    let op: GnttabSetVersion = c.g.read(uop)?;
    let (r, v) = {
        let mut st = c.d.state();
        let r = st.gnttab.set_version(op.version);
        (r, st.gnttab.version())
    };
    c.g.write(uop, &GnttabSetVersion { version: v })?;
    r.map(|_| 0)
}

fn get_version(c: &mut Call<'_>, uop: u64) -> HcResult {
    let mut op: GnttabGetVersion = c.g.read(uop)?;
    c.self_domid(op.dom)?;
    op.version = c.d.state().gnttab.version();
    c.g.write(uop, &op)?;
    Ok(0)
}

/// One side of a guest's `gnttab_copy`, decoded.
struct Side {
    u: u64,
    domid: u16,
    offset: u16,
    gref: bool,
}

/// `GNTTABOP_copy` by the guest on its own memory: each side is a frame of
/// its own (`DOMID_SELF` only) or one of its own grant entries granted to
/// itself. Per-op status; `-EFAULT` if an op cannot be read.
fn copy(c: &mut Call<'_>, uop: u64, count: u32) -> HcResult {
    let (size, status_off) = if c.compat() {
        (24u64, 20usize)
    } else {
        (40, 36)
    };
    for i in 0..u64::from(count) {
        if let Some(r) = preempted(c, GNTTABOP_COPY, uop, count, i, size) {
            return r;
        }
        let at = uop.checked_add(i * size).ok_or(Errno::EFAULT)?;
        let (src, dst, len, flags) = if c.compat() {
            let op: GnttabCopyCompat = c.g.read(at)?;
            let side = |p: GnttabCopyPtrCompat, g| Side {
                u: u64::from(p.u),
                domid: p.domid,
                offset: p.offset,
                gref: g,
            };
            (
                side(op.source, op.flags & GNTCOPY_SOURCE_GREF != 0),
                side(op.dest, op.flags & GNTCOPY_DEST_GREF != 0),
                op.len,
                op.flags,
            )
        } else {
            let op: GnttabCopy = c.g.read(at)?;
            let side = |p: GnttabCopyPtr, g| Side {
                u: p.u,
                domid: p.domid,
                offset: p.offset,
                gref: g,
            };
            (
                side(op.source, op.flags & GNTCOPY_SOURCE_GREF != 0),
                side(op.dest, op.flags & GNTCOPY_DEST_GREF != 0),
                op.len,
                op.flags,
            )
        };
        let _ = flags;
        let status = match copy_one(c, &src, &dst, len) {
            Ok(()) => GNTST_OKAY,
            Err(e) => e.status(),
        };
        c.g.write_at(at, status_off, &status)?;
    }
    Ok(0)
}

fn copy_end(c: &Call<'_>, s: &Side) -> Result<crate::CopyEnd, crate::GrantError> {
    use crate::GrantError;
    let me = c.d.domid();
    // gnttab_copy_lock_domain: only DOMID_SELF may name a frame.
    if !s.gref {
        if s.domid != xen_abi::DOMID_SELF {
            return Err(GrantError::PermissionDenied(
                "copy by frame of another domain",
            ));
        }
        return Ok(crate::CopyEnd::Gfn {
            gfn: s.u,
            offset: s.offset,
        });
    }
    if s.domid == xen_abi::DOMID_SELF || s.domid == me {
        let gref = u32::try_from(s.u).map_err(|_| GrantError::BadGntref(u32::MAX))?;
        return Ok(crate::CopyEnd::Grant {
            gref,
            offset: s.offset,
        });
    }
    if s.domid == c.d.config.backend_domid {
        // The backend domain grants us nothing.
        return Err(GrantError::BadGntref(s.u as u32));
    }
    Err(GrantError::BadDomain(s.domid))
}

fn copy_one(c: &Call<'_>, src: &Side, dst: &Side, len: u16) -> Result<(), crate::GrantError> {
    let s = copy_end(c, src)?;
    let d = copy_end(c, dst)?;
    c.d.guest_grant_copy(s, d, len)
}

/// `GNTMAP_*` flags of `gnttab_map_grant_ref`.
const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
const GNTMAP_HOST_MAP: u32 = 1 << 1;
const GNTMAP_READONLY: u32 = 1 << 2;
const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// `struct gnttab_map_grant_ref`: the same 32 bytes in both ABIs
/// (host_addr, flags, ref, dom, status, handle, dev_bus_addr).
const MAP_SIZE: u64 = 32;

/// `GNTTABOP_map_grant_ref`: per-op status in the op (Xen's
/// `gnttab_map_grant_ref` copies the whole op back); `-EFAULT` only when an
/// op cannot be read or written.
fn map_grant_refs(c: &mut Call<'_>, uop: u64, count: u32) -> HcResult {
    for i in 0..u64::from(count) {
        if let Some(r) = preempted(c, GNTTABOP_MAP_GRANT_REF, uop, count, i, MAP_SIZE) {
            return r;
        }
        let at = uop.checked_add(i * MAP_SIZE).ok_or(Errno::EFAULT)?;
        let mut raw = [0u8; MAP_SIZE as usize];
        c.g.read_bytes(at, &mut raw)?;
        let u64_at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap_or([0; 4]));
        let host_addr = u64_at(0);
        let flags = u32_at(8);
        let gref = u32_at(12);
        let dom = u16::from_le_bytes([raw[16], raw[17]]);
        match map_one(c, host_addr, flags, gref, dom) {
            Ok((handle, frame)) => {
                raw[18..20].copy_from_slice(&GNTST_OKAY.to_le_bytes());
                raw[20..24].copy_from_slice(&handle.to_le_bytes());
                // mfn_to_maddr(mfn): guest frames are the "machine" frames here.
                raw[24..32].copy_from_slice(&frame.to_le_bytes());
            }
            Err(status) => raw[18..20].copy_from_slice(&status.to_le_bytes()),
        }
        c.g.write_bytes(at, &raw)?;
    }
    Ok(0)
}

/// Xen's `map_grant_ref` for an HVM guest, in its order of checks.
/// Returns the handle and the granted frame's address.
fn map_one(
    c: &Call<'_>,
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
) -> Result<(u32, u64), i16> {
    if flags & (GNTMAP_DEVICE_MAP | GNTMAP_HOST_MAP) == 0 {
        return Err(GNTST_BAD_GNTREF);
    }
    // paging_mode_external: no device, application or PTE mappings.
    if flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    let me = c.d.domid();
    if dom == c.d.config.backend_domid && dom != me {
        // The backend domain exists but grants nothing to guests (as
        // for GNTTABOP_copy).
        return Err(GNTST_BAD_GNTREF);
    }
    if dom != me {
        return Err(GNTST_BAD_DOMAIN);
    }
    let writable = flags & GNTMAP_READONLY == 0;
    let entry = c.d.grant_entry(gref).map_err(|e| e.status())?;
    let frame =
        c.d.active_grants()
            .pin(&*c.d.mem, entry, gref, me, writable)
            .map_err(|e| e.status())?;
    let undo = |status: i16| {
        let entry = c.d.grant_entry_gpa(gref);
        c.d.active_grants().unpin(&*c.d.mem, entry, gref, writable);
        status
    };
    // create_grant_p2m_mapping at host_addr's frame.
    let gfn = host_addr >> xen_abi::PAGE_SHIFT;
    if super::reservation::is_populated_ram(c.d, gfn)
        || super::reservation::is_special_frame(c.d, gfn)
        || c.d.active_grants().own_at(gfn)
    {
        return Err(undo(GNTST_GENERAL_ERROR));
    }
    if c.d.platform.map_grant_page(gfn, frame).is_err() {
        return Err(undo(GNTST_GENERAL_ERROR));
    }
    let m = crate::gnttab::active::OwnMapping {
        gref,
        frame,
        writable,
        gfn,
    };
    let added = c.d.active_grants().add_own(m);
    match added {
        Ok(handle) => Ok((handle, frame)),
        Err(e) => {
            c.d.platform.unmap_grant_page(gfn);
            Err(undo(e.status()))
        }
    }
}

/// `struct gnttab_unmap_grant_ref` (host_addr, dev_bus_addr, handle,
/// status): 22 bytes padded to 24 in both ABIs.
const UNMAP_SIZE: u64 = 24;

/// `GNTTABOP_unmap_grant_ref`. Only `status` is written back.
fn unmap_grant_refs(c: &mut Call<'_>, uop: u64, count: u32) -> HcResult {
    for i in 0..u64::from(count) {
        if let Some(r) = preempted(c, GNTTABOP_UNMAP_GRANT_REF, uop, count, i, UNMAP_SIZE) {
            return r;
        }
        let at = uop.checked_add(i * UNMAP_SIZE).ok_or(Errno::EFAULT)?;
        let mut raw = [0u8; 20];
        c.g.read_bytes(at, &mut raw)?;
        let host_addr = u64::from_le_bytes(raw[0..8].try_into().unwrap_or([0; 8]));
        let dev_bus_addr = u64::from_le_bytes(raw[8..16].try_into().unwrap_or([0; 8]));
        let handle = u32::from_le_bytes(raw[16..20].try_into().unwrap_or([0; 4]));
        let status = match unmap_one(c, host_addr, dev_bus_addr, handle) {
            Ok(()) => GNTST_OKAY,
            Err(s) => s,
        };
        c.g.write_at(at, 20, &status)?;
    }
    Ok(0)
}

/// Xen's `unmap_common` + `unmap_common_complete` for the guest's own
/// mapping `handle`.
fn unmap_one(c: &Call<'_>, host_addr: u64, dev_bus_addr: u64, handle: u32) -> Result<(), i16> {
    // Checks and the claim of the handle under one lock hold: of two
    // vCPUs unmapping the same handle only one gets past here (the other
    // gets GNTST_bad_handle), so the alias is removed and the pin dropped
    // once, and no later mapping at m.gfn can be unmapped on its behalf.
    let m = {
        let mut ag = c.d.active_grants();
        let m = ag.own(handle).map_err(|e| e.status())?;
        if dev_bus_addr != 0 && dev_bus_addr != m.frame {
            return Err(GNTST_BAD_DEV_ADDR);
        }
        // No host address: nothing is unmapped and the handle stays live.
        if host_addr == 0 {
            return Ok(());
        }
        // replace_grant_p2m_mapping: the frame at host_addr must be this grant.
        if host_addr >> xen_abi::PAGE_SHIFT != m.gfn {
            return Err(GNTST_GENERAL_ERROR);
        }
        ag.remove_own(handle).map_err(|e| e.status())?
    };
    c.d.platform.unmap_grant_page(m.gfn);
    let entry = c.d.grant_entry_gpa(m.gref);
    c.d.active_grants()
        .unpin(&*c.d.mem, entry, m.gref, m.writable);
    Ok(())
}
