//! The grant-table API for the VMM's backends (the VMM plays the backend
//! domain, `DomainConfig::backend_domid`): what Xen's
//! `GNTTABOP_map_grant_ref` / `unmap_grant_ref` / `copy` do for a backend
//! in dom0, against the guest's v1 grant entries, with Xen's checks and
//! `GNTST_*` codes (see [`GrantError::status`]).
//!
//! Typical use by a PV backend:
//! ```ignore
//! // ring page granted by the frontend: keep it mapped for the connection
//! let ring = domain.grant_map(ring_ref, true)?;
//! domain.grant_read(ring.handle, 0, &mut header)?;
//! // data pages of one request: copy through the grant
//! domain.grant_copy_from_guest(CopyEnd::Grant { gref, offset }, &mut buf)?;
//! domain.grant_copy_to_guest(CopyEnd::Grant { gref, offset }, &data)?;
//! domain.grant_unmap(ring.handle)?;
//! ```

use crate::domain::Domain;
use crate::gnttab::active::{GrantError, Mapping};
use crate::gnttab::GrantTable;
use crate::guest::Gpa;
use crate::types::GrantRef;

const PAGE: u64 = xen_abi::PAGE_SIZE as u64;

/// A live backend mapping of a granted page, returned by
/// [`Domain::grant_map`]. Its `handle` is what the other calls take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantMapping {
    /// Xen's `grant_handle_t`.
    pub handle: u32,
    pub gref: u32,
    /// Guest-physical address of the granted frame (the page is reachable
    /// through the domain's `GuestMemory` there while mapped).
    pub frame: Gpa,
    pub writable: bool,
}

/// One end of a backend grant copy (`struct gnttab_copy_ptr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEnd {
    /// A page the guest granted to the backend (`GNTCOPY_*_gref`).
    Grant { gref: u32, offset: u16 },
    /// A guest frame by number. Xen allows copy-by-frame only for the
    /// caller's own memory; the VMM, being the toolstack, may use it for
    /// the guest's (e.g. pages it set up itself, like the console ring).
    Gfn { gfn: u64, offset: u16 },
}

impl CopyEnd {
    /// The grant reference (or 0 for a frame), for error reports.
    fn gref(&self) -> u32 {
        match self {
            CopyEnd::Grant { gref, .. } => *gref,
            CopyEnd::Gfn { .. } => 0,
        }
    }

    fn offset(&self) -> u16 {
        match self {
            CopyEnd::Grant { offset, .. } | CopyEnd::Gfn { offset, .. } => *offset,
        }
    }
}

/// A copy end after pinning: its address and what to unpin.
pub(crate) struct Held {
    gpa: Gpa,
    pin: Option<(u32, bool)>,
}

impl Domain {
    /// Guest-physical address of the guest's v1 grant entry `gref`, if the
    /// table has it and the guest mapped its frame (for backends that read
    /// entries themselves; prefer [`Domain::grant_map`], which also sets
    /// `GTF_reading`/`GTF_writing`).
    pub fn grant_entry_gpa(&self, gref: u32) -> Option<Gpa> {
        self.state().gnttab.entry_gpa(GrantRef(gref)).ok().flatten()
    }

    /// `GNTTABOP_map_grant_ref` by the backend domain for the guest's
    /// `gref`: checks the entry grants access to `backend_domid` (and is not
    /// `GTF_readonly` when `writable`), sets `GTF_reading` (+`GTF_writing`)
    /// so the guest cannot end access while mapped, and returns the frame.
    pub fn grant_map(&self, gref: u32, writable: bool) -> Result<GrantMapping, GrantError> {
        let entry = self.grant_entry(gref)?;
        let backend = self.config.backend_domid;
        let mut act = self.active_grants();
        let frame = act.pin(&*self.mem, entry, gref, backend, writable)?;
        let m = Mapping {
            gref,
            frame,
            writable,
        };
        match act.add_mapping(m) {
            Ok(handle) => Ok(GrantMapping {
                handle,
                gref,
                frame,
                writable,
            }),
            Err(e) => {
                act.unpin(&*self.mem, Some(entry), gref, writable);
                Err(e)
            }
        }
    }

    /// `GNTTABOP_unmap_grant_ref`: drops the mapping; the last one on an
    /// entry clears its `GTF_writing`/`GTF_reading`.
    pub fn grant_unmap(&self, handle: u32) -> Result<(), GrantError> {
        let mut act = self.active_grants();
        let m = act.remove_mapping(handle)?;
        let entry = self.grant_entry_gpa(m.gref);
        act.unpin(&*self.mem, entry, m.gref, m.writable);
        Ok(())
    }

    /// [`Self::grant_map`] of every `(gref, writable)` of `grants`, in
    /// order, under one hold of the grant locks (a backend maps all the
    /// pages of one request or frame at once). All or nothing: on the first
    /// failure nothing stays mapped or pinned (flags set by the batch are
    /// cleared again) and the failing index is returned with its error,
    /// the one `grant_map` would have given.
    pub fn grant_map_batch(
        &self,
        grants: &[(u32, bool)],
    ) -> Result<Vec<GrantMapping>, (usize, GrantError)> {
        let pins: Vec<(Result<Gpa, GrantError>, u32, bool)> = {
            let st = self.state();
            grants
                .iter()
                .map(|&(gref, w)| (entry_in(&st.gnttab, gref), gref, w))
                .collect()
        };
        let mut made = Vec::with_capacity(grants.len());
        self.active_grants()
            .map_batch(&*self.mem, &pins, self.config.backend_domid, &mut made)?;
        Ok(grants
            .iter()
            .zip(made)
            .map(|(&(gref, writable), (handle, frame))| GrantMapping {
                handle,
                gref,
                frame,
                writable,
            })
            .collect())
    }

    /// [`Self::grant_unmap`] of every handle of `handles` under one hold of
    /// the grant locks. Every valid handle is unmapped; the first bad one
    /// (`GNTST_bad_handle`) is returned with its index.
    pub fn grant_unmap_batch(&self, handles: &[u32]) -> Result<(), (usize, GrantError)> {
        // Lock order as in `grant_unmap`: the active grants, then the table.
        let mut act = self.active_grants();
        let st = self.state();
        act.unmap_batch(&*self.mem, handles, |gref| {
            st.gnttab.entry_gpa(GrantRef(gref)).ok().flatten()
        })
    }

    /// Unmaps every backend mapping (backend teardown, domain destruction).
    pub fn grant_unmap_all(&self) {
        let handles: Vec<u32> = self
            .active_grants()
            .all_mappings()
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        for h in handles {
            let _ = self.grant_unmap(h);
        }
    }

    /// Reads `buf.len()` bytes at `offset` in a mapped granted page.
    pub fn grant_read(&self, handle: u32, offset: u32, buf: &mut [u8]) -> Result<(), GrantError> {
        let m = self.active_grants().mapping(handle)?;
        let gpa = in_page(m.frame, offset, buf.len())?;
        self.mem
            .read(gpa, buf)
            .map_err(|_| GrantError::BadPage(m.gref))
    }

    /// Writes `data` at `offset` in a mapped granted page (which must have
    /// been mapped writable).
    pub fn grant_write(&self, handle: u32, offset: u32, data: &[u8]) -> Result<(), GrantError> {
        let m = self.active_grants().mapping(handle)?;
        if !m.writable {
            return Err(GrantError::PermissionDenied(
                "write through a read-only grant mapping",
            ));
        }
        let gpa = in_page(m.frame, offset, data.len())?;
        self.mem
            .write(gpa, data)
            .map_err(|_| GrantError::BadPage(m.gref))
    }

    /// `GNTTABOP_copy` from the guest into a backend buffer: `buf.len()`
    /// bytes from `src` (the grant is pinned read-only for the copy).
    pub fn grant_copy_from_guest(&self, src: CopyEnd, buf: &mut [u8]) -> Result<(), GrantError> {
        check_copy(src.offset(), buf.len())?;
        let held = self.hold(src, false)?;
        let r = self
            .mem
            .read(held.gpa, buf)
            .map_err(|_| GrantError::BadPage(src.gref()));
        self.release(held);
        r
    }

    /// `GNTTABOP_copy` from a backend buffer into the guest at `dst` (the
    /// grant must be writable; it is pinned for the copy).
    pub fn grant_copy_to_guest(&self, dst: CopyEnd, data: &[u8]) -> Result<(), GrantError> {
        check_copy(dst.offset(), data.len())?;
        let held = self.hold(dst, true)?;
        let r = self
            .mem
            .write(held.gpa, data)
            .map_err(|_| GrantError::BadPage(dst.gref()));
        self.release(held);
        r
    }

    /// `GNTTABOP_copy` between two guest pages (both named by grants the
    /// guest gave the backend, or by frame).
    pub fn grant_copy(&self, src: CopyEnd, dst: CopyEnd, len: u16) -> Result<(), GrantError> {
        self.copy_as(src, dst, len, self.config.backend_domid)
    }

    /// The guest's own `GNTTABOP_copy`: grants must be granted to itself.
    pub(crate) fn guest_grant_copy(
        &self,
        src: CopyEnd,
        dst: CopyEnd,
        len: u16,
    ) -> Result<(), GrantError> {
        self.copy_as(src, dst, len, self.domid())
    }

    /// A copy between two guest pages performed by domain `domid`.
    fn copy_as(&self, src: CopyEnd, dst: CopyEnd, len: u16, domid: u16) -> Result<(), GrantError> {
        let mut buf = vec![0u8; usize::from(len)];
        check_copy(src.offset(), buf.len())?;
        check_copy(dst.offset(), buf.len())?;
        let s = self.hold_as(src, false, domid)?;
        let d = match self.hold_as(dst, true, domid) {
            Ok(d) => d,
            Err(e) => {
                self.release(s);
                return Err(e);
            }
        };
        let r = self
            .mem
            .read(s.gpa, &mut buf)
            .map_err(|_| GrantError::BadPage(src.gref()))
            .and_then(|_| {
                self.mem
                    .write(d.gpa, &buf)
                    .map_err(|_| GrantError::BadPage(dst.gref()))
            });
        self.release(s);
        self.release(d);
        r
    }

    // ---- internals -----------------------------------------------------

    /// The entry of `gref`: past the table → `GNTST_bad_gntref`; in a frame
    /// the guest never mapped → not granted (`GNTST_general_error`).
    pub(crate) fn grant_entry(&self, gref: u32) -> Result<Gpa, GrantError> {
        entry_in(&self.state().gnttab, gref)
    }

    pub(crate) fn active_grants(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::gnttab::active::ActiveGrants> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins a copy end for the backend domain.
    fn hold(&self, end: CopyEnd, writable: bool) -> Result<Held, GrantError> {
        self.hold_as(end, writable, self.config.backend_domid)
    }

    /// Pins a copy end for domain `domid` (the backend, or the guest itself
    /// for its own `GNTTABOP_copy`).
    pub(crate) fn hold_as(
        &self,
        end: CopyEnd,
        writable: bool,
        domid: u16,
    ) -> Result<Held, GrantError> {
        match end {
            CopyEnd::Grant { gref, offset } => {
                let entry = self.grant_entry(gref)?;
                let frame = self
                    .active_grants()
                    .pin(&*self.mem, entry, gref, domid, writable)?;
                Ok(Held {
                    gpa: frame + u64::from(offset),
                    pin: Some((gref, writable)),
                })
            }
            CopyEnd::Gfn { gfn, offset } => {
                let base = crate::types::Gfn::parse(gfn)
                    .ok()
                    .and_then(|g| g.gpa())
                    .ok_or(GrantError::BadPage(0))?;
                if self.mem.atomic_u8(base).is_err() {
                    return Err(GrantError::BadPage(0));
                }
                Ok(Held {
                    gpa: base + u64::from(offset),
                    pin: None,
                })
            }
        }
    }

    pub(crate) fn release(&self, h: Held) {
        if let Some((gref, w)) = h.pin {
            let entry = self.grant_entry_gpa(gref);
            self.active_grants().unpin(&*self.mem, entry, gref, w);
        }
    }
}

/// The entry of `gref` in `gt` (see [`Domain::grant_entry`]).
fn entry_in(gt: &GrantTable, gref: u32) -> Result<Gpa, GrantError> {
    match gt.entry_gpa(GrantRef(gref)) {
        Err(()) => Err(GrantError::BadGntref(gref)),
        Ok(None) => Err(GrantError::General {
            gref,
            why: "entry does not grant access to the backend domain",
        }),
        Ok(Some(g)) => Ok(g),
    }
}

/// `offset + len` must stay inside one page (`GNTST_bad_copy_arg`).
fn check_copy(offset: u16, len: usize) -> Result<(), GrantError> {
    if u64::from(offset) + len as u64 > PAGE {
        return Err(GrantError::BadCopyArg {
            offset: u32::from(offset),
            len: len as u32,
        });
    }
    Ok(())
}

fn in_page(frame: Gpa, offset: u32, len: usize) -> Result<Gpa, GrantError> {
    if u64::from(offset) + len as u64 > PAGE {
        return Err(GrantError::BadCopyArg {
            offset,
            len: len as u32,
        });
    }
    Ok(frame + u64::from(offset))
}
