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
//!
//! The backend maps and unmaps every data page of every request (16 grants
//! for a 64 KiB frame), so the pin counts and the backend's handles are
//! flat tables: pins a `Vec` indexed by reference (bounded by the grant
//! table, see [`FLAT_PINS`]), handles a slab with a FIFO free list (Xen's
//! maptrack free list, which also puts freed handles at the tail).

use std::collections::{HashMap, VecDeque};
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

/// References below this have their pin in the flat table (128 grant
/// frames, twice libxl's default `max_grant_frames`; at most 1.5 MiB when
/// all are used); a guest configured with a larger table pins the rest in
/// a map. The table only grows to the highest reference pinned.
pub const FLAT_PINS: u32 = 128 * GRANT_ENTRIES_V1_PER_FRAME;

/// Pin counts of one entry; `readers == 0` is a free slot.
#[derive(Debug, Clone, Copy, Default)]
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
    /// Pins of references below [`FLAT_PINS`], by reference.
    pins: Vec<Pin>,
    /// Pins of references from [`FLAT_PINS`] on.
    pins_high: HashMap<u32, Pin>,
    /// The backend's mappings, by handle.
    maps: Vec<Option<Mapping>>,
    /// Free handles in `maps`, oldest first.
    free: VecDeque<u32>,
    /// Live mappings in `maps`.
    nr_maps: u32,
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
        let cur = self.pin_slot(gref).filter(|p| p.readers != 0).copied();
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
        let p = self.pin_slot_mut(gref);
        if p.readers == 0 {
            *p = Pin {
                readers: 0,
                writers: 0,
                frame,
                domid,
            };
        }
        p.readers += 1;
        if writable {
            p.writers += 1;
        }
        Ok(frame)
    }

    /// Maps every `(entry, gref, writable)` of `grants` for `domid`, in
    /// order, as [`Self::pin`] + [`Self::add_mapping`] each, pushing
    /// `(handle, frame)` to `out`; `entry` is the entry's address or the
    /// error finding it. All or nothing: on the first failure the mappings
    /// already made are removed and their pins dropped again (clearing the
    /// flags they set), `out` is left as it was, and the failing index is
    /// returned with the error.
    pub fn map_batch(
        &mut self,
        mem: &dyn GuestMemory,
        grants: &[(Result<Gpa, GrantError>, u32, bool)],
        domid: u16,
        out: &mut Vec<(u32, Gpa)>,
    ) -> Result<(), (usize, GrantError)> {
        let base = out.len();
        for (i, &(entry, gref, writable)) in grants.iter().enumerate() {
            let r = entry.and_then(|e| {
                let frame = self.pin(mem, e, gref, domid, writable)?;
                let m = Mapping {
                    gref,
                    frame,
                    writable,
                };
                match self.add_mapping(m) {
                    Ok(h) => Ok((h, frame)),
                    Err(err) => {
                        self.unpin(mem, Some(e), gref, writable);
                        Err(err)
                    }
                }
            });
            match r {
                Ok(hf) => out.push(hf),
                Err(err) => {
                    let done = grants[..i].iter().zip(&out[base..]).rev();
                    for (&(entry, gref, writable), &(h, _)) in done {
                        // Made above, so present.
                        let _ = self.remove_mapping(h);
                        self.unpin(mem, entry.ok(), gref, writable);
                    }
                    out.truncate(base);
                    return Err((i, err));
                }
            }
        }
        Ok(())
    }

    /// Unmaps every handle of `handles` (as a batch of
    /// `GNTTABOP_unmap_grant_ref`, each on its own): removes the mapping
    /// and drops its pin, `entry` giving the entry's address for a
    /// reference (to clear its flags). Every valid handle is unmapped; the
    /// first bad one is returned with its index.
    pub fn unmap_batch(
        &mut self,
        mem: &dyn GuestMemory,
        handles: &[u32],
        entry: impl Fn(u32) -> Option<Gpa>,
    ) -> Result<(), (usize, GrantError)> {
        let mut first = None;
        for (i, &h) in handles.iter().enumerate() {
            match self.remove_mapping(h) {
                Ok(m) => self.unpin(mem, entry(m.gref), m.gref, m.writable),
                Err(e) => {
                    first.get_or_insert((i, e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Drops one pin of `gref`, clearing the guest-visible flags when the
    /// last (writable) user is gone.
    pub fn unpin(&mut self, mem: &dyn GuestMemory, entry: Option<Gpa>, gref: u32, writable: bool) {
        let Some(p) = self.pin_slot_mut_existing(gref) else {
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
            *p = Pin::default();
            if gref >= FLAT_PINS {
                self.pins_high.remove(&gref);
            }
        }
        if let (Some(e), true) = (entry, clear != 0) {
            clear_flags(mem, e, clear);
        }
    }

    /// The pin slot of `gref`, if the tables have one (it may be free).
    fn pin_slot(&self, gref: u32) -> Option<&Pin> {
        if gref < FLAT_PINS {
            self.pins.get(gref as usize)
        } else {
            self.pins_high.get(&gref)
        }
    }

    /// The pin of `gref` if it is pinned.
    fn pin_slot_mut_existing(&mut self, gref: u32) -> Option<&mut Pin> {
        let p = if gref < FLAT_PINS {
            self.pins.get_mut(gref as usize)
        } else {
            self.pins_high.get_mut(&gref)
        };
        p.filter(|p| p.readers != 0)
    }

    /// The pin slot of `gref`, made if missing (free: `readers == 0`).
    fn pin_slot_mut(&mut self, gref: u32) -> &mut Pin {
        if gref < FLAT_PINS {
            let i = gref as usize;
            if self.pins.len() <= i {
                self.pins.resize(i + 1, Pin::default());
            }
            &mut self.pins[i]
        } else {
            self.pins_high.entry(gref).or_default()
        }
    }

    /// Records a long-lived mapping and returns its handle.
    pub fn add_mapping(&mut self, m: Mapping) -> Result<u32, GrantError> {
        if self.nr_maps >= MAX_MAPPINGS {
            return Err(GrantError::NoSpace(MAX_MAPPINGS));
        }
        let h = match self.free.pop_front() {
            Some(h) => h,
            None => {
                // Fewer than MAX_MAPPINGS live and none free: the slab is
                // shorter than MAX_MAPPINGS, so the new handle fits in u32.
                self.maps.push(None);
                (self.maps.len() - 1) as u32
            }
        };
        self.maps[h as usize] = Some(m);
        self.nr_maps += 1;
        Ok(h)
    }

    /// The mapping behind `handle`.
    pub fn mapping(&self, handle: u32) -> Result<Mapping, GrantError> {
        self.maps
            .get(handle as usize)
            .copied()
            .flatten()
            .ok_or(GrantError::BadHandle(handle))
    }

    /// Forgets `handle` (the caller unpins).
    pub fn remove_mapping(&mut self, handle: u32) -> Result<Mapping, GrantError> {
        let m = self
            .maps
            .get_mut(handle as usize)
            .and_then(Option::take)
            .ok_or(GrantError::BadHandle(handle))?;
        self.nr_maps -= 1;
        self.free.push_back(handle);
        Ok(m)
    }

    /// Number of live mappings.
    pub fn mappings(&self) -> usize {
        self.nr_maps as usize
    }

    /// Whether `gref` is pinned (for tests and for the guest's own
    /// `GNTTABOP_*` to know what the backend holds).
    pub fn pinned(&self, gref: u32) -> Option<(u32, u32)> {
        self.pin_slot(gref)
            .filter(|p| p.readers != 0)
            .map(|p| (p.readers, p.writers))
    }

    /// Every live mapping (handle, mapping).
    pub fn all_mappings(&self) -> Vec<(u32, Mapping)> {
        self.maps
            .iter()
            .enumerate()
            .filter_map(|(h, m)| m.map(|m| (h as u32, m)))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeMemory;

    /// Entries at 0x1000 + 8 * i (a table that is just guest memory here),
    /// granting frame 0x10 + i to domain 0.
    fn mem(entries: u32) -> FakeMemory {
        let m = FakeMemory::new(1 << 20, 1);
        for i in 0..entries {
            m.put(
                entry(i),
                &GrantEntryV1 {
                    flags: GTF_PERMIT_ACCESS,
                    domid: 0,
                    frame: 0x10 + i,
                },
            );
        }
        m
    }

    fn entry(i: u32) -> Gpa {
        0x1000 + 8 * u64::from(i)
    }

    fn flags(m: &FakeMemory, i: u32) -> u16 {
        m.get::<GrantEntryV1>(entry(i)).flags & (GTF_READING | GTF_WRITING)
    }

    #[test]
    fn references_past_the_flat_table_pin_and_unpin_alike() {
        let m = mem(2);
        let mut a = ActiveGrants::default();
        // The same entry under a low and a high reference number: the
        // counts are kept per reference, wherever they live.
        for gref in [1, FLAT_PINS, FLAT_PINS + 7, u32::MAX] {
            assert_eq!(a.pin(&m, entry(1), gref, 0, true), Ok(0x11 << 12));
            assert_eq!(a.pin(&m, entry(1), gref, 0, false), Ok(0x11 << 12));
            assert_eq!(a.pinned(gref), Some((2, 1)), "gref {gref}");
            a.unpin(&m, Some(entry(1)), gref, true);
            assert_eq!(a.pinned(gref), Some((1, 0)));
            assert_eq!(flags(&m, 1), GTF_READING);
            a.unpin(&m, Some(entry(1)), gref, false);
            assert_eq!(a.pinned(gref), None);
            assert_eq!(flags(&m, 1), 0);
        }
        assert!(
            a.pins.len() <= 2,
            "the flat table only grows to what it holds"
        );
        assert!(a.pins_high.is_empty());
    }

    #[test]
    fn handles_are_reused_oldest_first_and_never_while_live() {
        let mut a = ActiveGrants::default();
        let m = |gref| Mapping {
            gref,
            frame: 0,
            writable: false,
        };
        let h: Vec<u32> = (0..3).map(|g| a.add_mapping(m(g)).expect("room")).collect();
        assert_eq!(h, [0, 1, 2]);
        assert_eq!(a.remove_mapping(1), Ok(m(1)));
        assert_eq!(a.remove_mapping(0), Ok(m(0)));
        assert_eq!(a.remove_mapping(0), Err(GrantError::BadHandle(0)));
        assert_eq!(a.mapping(7), Err(GrantError::BadHandle(7)));
        // Freed 1 then 0: reused in that order, then a new one.
        assert_eq!(a.add_mapping(m(5)), Ok(1));
        assert_eq!(a.add_mapping(m(6)), Ok(0));
        assert_eq!(a.add_mapping(m(7)), Ok(3));
        assert_eq!(a.mappings(), 4);
        assert_eq!(a.mapping(0), Ok(m(6)));
        let mut all = a.all_mappings();
        all.sort_unstable_by_key(|x| x.0);
        assert_eq!(all, [(0, m(6)), (1, m(5)), (2, m(2)), (3, m(7))]);
    }

    #[test]
    fn a_failed_batch_undoes_its_pins_and_handles() {
        let m = mem(3);
        let mut a = ActiveGrants::default();
        let e = |i: u32| Ok(entry(i));
        let mut out = vec![(99, 0)];
        // Entry 2 now grants domain 9, not 0: the last grant fails.
        m.put(
            entry(2),
            &GrantEntryV1 {
                flags: GTF_PERMIT_ACCESS,
                domid: 9,
                frame: 0x12,
            },
        );
        let batch = [
            (e(0), 0, true),
            (e(1), 1, false),
            (e(1), 1, true),
            (e(2), 2, false),
        ];
        let r = a.map_batch(&m, &batch, 0, &mut out);
        assert!(matches!(r, Err((3, GrantError::General { gref: 2, .. }))));
        assert_eq!(out, [(99, 0)], "out left as it was");
        assert_eq!((a.pinned(0), a.pinned(1), a.mappings()), (None, None, 0));
        assert_eq!((flags(&m, 0), flags(&m, 1), flags(&m, 2)), (0, 0, 0));

        out.clear();
        a.map_batch(&m, &batch[..3], 0, &mut out)
            .expect("all granted");
        assert_eq!(out.len(), 3);
        assert_eq!(a.pinned(1), Some((2, 1)));
        let hs: Vec<u32> = out.iter().map(|x| x.0).collect();
        assert_eq!(a.unmap_batch(&m, &hs, |g| Some(entry(g))), Ok(()));
        assert_eq!((a.pinned(0), a.pinned(1), a.mappings()), (None, None, 0));
        assert_eq!((flags(&m, 0), flags(&m, 1)), (0, 0));
    }
}
