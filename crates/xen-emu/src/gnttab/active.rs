//! Active grant entries (Xen's `struct active_grant_entry` and maptrack):
//! which of the guest's grant entries the backend domain is using right
//! now, and the `GTF_reading` / `GTF_writing` flags that tell the guest so.
//!
//! The protocol is Xen's `_set_status_v1`: on the first pin of an entry the
//! flags+domid word is checked (`GTF_permit_access`, granted to the backend's
//! domid, not `GTF_readonly` for a writable pin) and `GTF_reading` (and
//! `GTF_writing`) are set with a compare-and-swap, retried up to five times
//! against a guest that keeps changing it. The frame is read after the
//! flags are set (the guest may not change it from then on). While the
//! flags are set the guest's `gnttab_end_foreign_access` fails, so the page
//! cannot be reused under the backend. The last writable unpin clears
//! `GTF_writing`, the last unpin `GTF_reading`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use xen_abi::grant_table::*;

use crate::guest::{Gpa, GuestMemory};

/// Why a grant operation failed; [`GrantError::status`] is the `GNTST_*`
/// code Xen puts in the operation's `status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// `GNTST_bad_gntref`: the reference is past the guest's grant table.
    #[error("grant reference {0} is outside the grant table")]
    BadGntref(u32),
    /// `GNTST_general_error`: the entry does not grant access to the
    /// backend domain (wrong type or domid), or is read-only and a write
    /// was asked for, or it kept changing.
    #[error("grant reference {gref}: {why}")]
    General { gref: u32, why: &'static str },
    /// `GNTST_bad_page`: the granted frame is not guest memory.
    #[error("grant reference {0} names a frame that is not guest memory")]
    BadPage(u32),
    /// `GNTST_bad_handle`: no such mapping.
    #[error("grant handle {0} is not mapped")]
    BadHandle(u32),
    /// `GNTST_bad_copy_arg`: offset + length past the end of a page.
    #[error("grant copy: offset {offset} + length {len} crosses a page boundary")]
    BadCopyArg { offset: u32, len: u32 },
    /// `GNTST_permission_denied`: a read-only mapping was written, or a
    /// copy named a frame it may not touch.
    #[error("grant access denied: {0}")]
    PermissionDenied(&'static str),
    /// `GNTST_no_device_space`: too many mappings at once.
    #[error("too many grant mappings (limit {0})")]
    NoSpace(u32),
    /// `GNTST_bad_domain`: the operation named a domain that does not exist.
    #[error("grant operation names unknown domain {0}")]
    BadDomain(u16),
}

impl GrantError {
    /// The `GNTST_*` status Xen reports for this failure.
    pub fn status(&self) -> i16 {
        match self {
            GrantError::BadGntref(_) => GNTST_BAD_GNTREF,
            GrantError::General { .. } => GNTST_GENERAL_ERROR,
            GrantError::BadPage(_) => GNTST_BAD_PAGE,
            GrantError::BadHandle(_) => GNTST_BAD_HANDLE,
            GrantError::BadCopyArg { .. } => GNTST_BAD_COPY_ARG,
            GrantError::PermissionDenied(_) => GNTST_PERMISSION_DENIED,
            GrantError::NoSpace(_) => GNTST_NO_DEVICE_SPACE,
            GrantError::BadDomain(_) => GNTST_BAD_DOMAIN,
        }
    }
}

/// Xen's default `max_maptrack_frames` (1024) × 256 handles per frame.
pub const MAX_MAPPINGS: u32 = 1024 * 256;

/// One mapping made by the backend (a maptrack entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub gref: u32,
    /// Guest-physical address of the granted frame.
    pub frame: Gpa,
    pub writable: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    readers: u32,
    writers: u32,
    frame: Gpa,
    /// The domain using the entry (Xen's `act->domid`).
    domid: u16,
}

/// A mapping the guest made of its own grant (its own maptrack entry,
/// separate from the backend's: handles are per mapping domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnMapping {
    pub gref: u32,
    /// Guest-physical address of the granted frame.
    pub frame: Gpa,
    pub writable: bool,
    /// Where the guest sees it (`host_addr >> 12`).
    pub gfn: u64,
}

/// The backend's pins on one guest's grant entries.
#[derive(Debug, Default)]
pub struct ActiveGrants {
    pins: HashMap<u32, Pin>,
    maps: HashMap<u32, Mapping>,
    next_handle: u32,
    /// The guest's own `GNTTABOP_map_grant_ref` mappings, by handle.
    own: HashMap<u32, OwnMapping>,
    next_own: u32,
}

impl ActiveGrants {
    /// Pins entry `gref` (at `entry` in guest memory) for domain `domid`;
    /// returns the frame's guest-physical address. A transient pin (copy)
    /// is undone with [`Self::unpin`].
    pub fn pin(
        &mut self,
        mem: &dyn GuestMemory,
        entry: Gpa,
        gref: u32,
        domid: u16,
        writable: bool,
    ) -> Result<Gpa, GrantError> {
        let cur = self.pins.get(&gref).copied();
        if cur.is_some_and(|p| p.domid != domid) {
            return Err(GrantError::General {
                gref,
                why: "entry is in use by another domain",
            });
        }
        let need_flags = match cur {
            None => true,
            Some(p) => writable && p.writers == 0,
        };
        if need_flags {
            set_status(mem, entry, gref, domid, writable, cur.is_some())?;
        }
        let frame = match cur {
            Some(p) => p.frame,
            None => {
                let raw = mem
                    .atomic_u32(entry + 4)
                    .map_err(|_| GrantError::BadGntref(gref))?
                    .load(Ordering::SeqCst);
                let frame = u64::from(raw) << xen_abi::PAGE_SHIFT;
                // get_paged_frame: the frame must be the guest's memory.
                let backed = mem.atomic_u8(frame).is_ok()
                    && mem.atomic_u8(frame + xen_abi::PAGE_SIZE as u64 - 1).is_ok();
                if !backed {
                    clear_flags(mem, entry, GTF_READING | GTF_WRITING);
                    return Err(GrantError::BadPage(gref));
                }
                frame
            }
        };
        let p = self.pins.entry(gref).or_insert(Pin {
            readers: 0,
            writers: 0,
            frame,
            domid,
        });
        p.readers += 1;
        if writable {
            p.writers += 1;
        }
        Ok(frame)
    }

    /// Drops one pin of `gref`, clearing the guest-visible flags when the
    /// last (writable) user is gone.
    pub fn unpin(&mut self, mem: &dyn GuestMemory, entry: Option<Gpa>, gref: u32, writable: bool) {
        let Some(p) = self.pins.get_mut(&gref) else {
            return;
        };
        p.readers = p.readers.saturating_sub(1);
        if writable {
            p.writers = p.writers.saturating_sub(1);
        }
        let mut clear = 0;
        if writable && p.writers == 0 {
            clear |= GTF_WRITING;
        }
        if p.readers == 0 {
            clear |= GTF_READING;
            self.pins.remove(&gref);
        }
        if let (Some(e), true) = (entry, clear != 0) {
            clear_flags(mem, e, clear);
        }
    }

    /// Records a long-lived mapping and returns its handle.
    pub fn add_mapping(&mut self, m: Mapping) -> Result<u32, GrantError> {
        if self.maps.len() as u32 >= MAX_MAPPINGS {
            return Err(GrantError::NoSpace(MAX_MAPPINGS));
        }
        loop {
            let h = self.next_handle;
            self.next_handle = (self.next_handle + 1) % MAX_MAPPINGS;
            if let std::collections::hash_map::Entry::Vacant(v) = self.maps.entry(h) {
                v.insert(m);
                return Ok(h);
            }
        }
    }

    /// The mapping behind `handle`.
    pub fn mapping(&self, handle: u32) -> Result<Mapping, GrantError> {
        self.maps
            .get(&handle)
            .copied()
            .ok_or(GrantError::BadHandle(handle))
    }

    /// Forgets `handle` (the caller unpins).
    pub fn remove_mapping(&mut self, handle: u32) -> Result<Mapping, GrantError> {
        self.maps
            .remove(&handle)
            .ok_or(GrantError::BadHandle(handle))
    }

    /// Number of live mappings.
    pub fn mappings(&self) -> usize {
        self.maps.len()
    }

    /// Whether `gref` is pinned (for tests and for the guest's own
    /// `GNTTABOP_*` to know what the backend holds).
    pub fn pinned(&self, gref: u32) -> Option<(u32, u32)> {
        self.pins.get(&gref).map(|p| (p.readers, p.writers))
    }

    /// Every live mapping (handle, mapping).
    pub fn all_mappings(&self) -> Vec<(u32, Mapping)> {
        self.maps.iter().map(|(h, m)| (*h, *m)).collect()
    }

    /// Records a mapping the guest made of its own grant; its handle.
    pub fn add_own(&mut self, m: OwnMapping) -> Result<u32, GrantError> {
        if self.own.len() as u32 >= MAX_MAPPINGS {
            return Err(GrantError::NoSpace(MAX_MAPPINGS));
        }
        loop {
            let h = self.next_own;
            self.next_own = (self.next_own + 1) % MAX_MAPPINGS;
            if let std::collections::hash_map::Entry::Vacant(v) = self.own.entry(h) {
                v.insert(m);
                return Ok(h);
            }
        }
    }

    /// The guest's own mapping behind `handle`.
    pub fn own(&self, handle: u32) -> Result<OwnMapping, GrantError> {
        self.own
            .get(&handle)
            .copied()
            .ok_or(GrantError::BadHandle(handle))
    }

    /// Forgets the guest's own mapping `handle` (the caller unpins).
    pub fn remove_own(&mut self, handle: u32) -> Result<OwnMapping, GrantError> {
        self.own
            .remove(&handle)
            .ok_or(GrantError::BadHandle(handle))
    }

    /// Whether the guest has one of its own grants mapped at `gfn`.
    pub fn own_at(&self, gfn: u64) -> bool {
        self.own.values().any(|m| m.gfn == gfn)
    }
}

/// Xen's `_set_status_v1`.
fn set_status(
    mem: &dyn GuestMemory,
    entry: Gpa,
    gref: u32,
    domid: u16,
    writable: bool,
    pinned: bool,
) -> Result<(), GrantError> {
    let word = mem
        .atomic_u32(entry)
        .map_err(|_| GrantError::BadGntref(gref))?;
    let mut cur = word.load(Ordering::SeqCst);
    let mut retries = 0;
    loop {
        let flags = cur as u16;
        let edom = (cur >> 16) as u16;
        if !pinned && (flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || edom != domid) {
            return Err(GrantError::General {
                gref,
                why: "entry does not grant access to the backend domain",
            });
        }
        let mut nf = flags | GTF_READING;
        if writable {
            if flags & GTF_READONLY != 0 {
                return Err(GrantError::General {
                    gref,
                    why: "write access to a read-only grant",
                });
            }
            nf |= GTF_WRITING;
        }
        let new = (cur & 0xffff_0000) | u32::from(nf);
        match word.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Ok(()),
            Err(now) => {
                if retries == 4 {
                    return Err(GrantError::General {
                        gref,
                        why: "grant entry is unstable",
                    });
                }
                retries += 1;
                cur = now;
            }
        }
    }
}

/// `gnttab_clear_flags`: atomically clears `clear` in the entry's flags.
fn clear_flags(mem: &dyn GuestMemory, entry: Gpa, clear: u16) {
    if let Ok(w) = mem.atomic_u32(entry) {
        w.fetch_and(!u32::from(clear), Ordering::SeqCst);
    }
}
