//! Grant table v1 state: version, frames in use, where the guest mapped
//! them, and the entries the toolstack seeds (console and XenStore).
//!
//! Entries themselves live in the grant frames (special pages shared with
//! the guest); this module only knows which frames exist and where.

pub mod active;
pub mod backend;

use xen_abi::grant_table::{GrantEntryV1, GRANT_ENTRIES_V1_PER_FRAME};

use crate::types::{Errno, GrantRef};

/// Xen starts every domain with one grant frame (`INITIAL_NR_GRANT_FRAMES`).
const INITIAL_FRAMES: u32 = 1;

/// One domain's grant table.
#[derive(Debug, Clone)]
pub struct GrantTable {
    version: u32,
    nr_frames: u32,
    max_frames: u32,
    /// Guest frame each grant frame is mapped at (`None`: not mapped).
    gfns: Vec<Option<u64>>,
    /// Entries to write into frame 0 the first time it is mapped
    /// (Xen's toolstack seeds them before the guest runs).
    seeds: Vec<(GrantRef, GrantEntryV1)>,
}

impl GrantTable {
    pub fn new(max_frames: u32) -> Self {
        let max_frames = max_frames.max(INITIAL_FRAMES);
        Self {
            version: 1,
            nr_frames: INITIAL_FRAMES,
            max_frames,
            gfns: vec![None; max_frames as usize],
            seeds: Vec::new(),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }
    pub fn nr_frames(&self) -> u32 {
        self.nr_frames
    }
    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// `GNTTABOP_set_version`: v1 only (a host whose `max_grant_version` is
    /// 1); v2 gets `-ENOSYS` like such a Xen, anything else `-EINVAL`.
    pub fn set_version(&mut self, v: u32) -> Result<(), Errno> {
        match v {
            1 => {
                self.version = 1;
                Ok(())
            }
            2 => Err(Errno::ENOSYS),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Grows the table to at least `n` frames (`gnttab_grow_table`).
    pub fn grow(&mut self, n: u32) -> Result<(), Errno> {
        if n > self.max_frames {
            return Err(Errno::EINVAL);
        }
        self.nr_frames = self.nr_frames.max(n);
        Ok(())
    }

    /// Validates frame `idx` for `XENMAPSPACE_grant_table` (growing the
    /// table to include it, as `gnttab_map_frame` does).
    pub fn frame_for_map(&mut self, idx: u64) -> Result<u32, Errno> {
        let idx = u32::try_from(idx).map_err(|_| Errno::EINVAL)?;
        if idx >= self.max_frames {
            return Err(Errno::EINVAL);
        }
        self.grow(idx + 1)?;
        Ok(idx)
    }

    /// Records where frame `idx` now is. Returns the seeds to write if
    /// this is frame 0's first mapping.
    pub fn mapped(&mut self, idx: u32, gfn: u64) -> Vec<(GrantRef, GrantEntryV1)> {
        let first = self.gfns.get(idx as usize).is_some_and(|g| g.is_none());
        if let Some(slot) = self.gfns.get_mut(idx as usize) {
            *slot = Some(gfn);
        }
        if idx == 0 && first {
            std::mem::take(&mut self.seeds)
        } else {
            Vec::new()
        }
    }

    /// Where frame `idx` is mapped.
    pub fn gfn(&self, idx: u32) -> Option<u64> {
        self.gfns.get(idx as usize).copied().flatten()
    }

    /// Xen's `nr_grant_entries`: v1 entries in the frames the table has.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames.saturating_mul(GRANT_ENTRIES_V1_PER_FRAME)
    }

    /// Guest-physical address of entry `gref` for a grant operation:
    /// `Err(())` past the table (`GNTST_bad_gntref`), `Ok(None)` when its
    /// frame exists but the guest never mapped it (so it cannot have
    /// granted anything there).
    #[allow(clippy::result_unit_err)]
    pub fn entry_gpa(&self, gref: GrantRef) -> Result<Option<u64>, ()> {
        if gref.0 >= self.nr_entries() {
            return Err(());
        }
        Ok(self
            .entry_location(gref)
            .map(|(g, off)| (g << xen_abi::PAGE_SHIFT) + off))
    }

    /// Guest frame and byte offset of grant entry `gref`, if its frame is mapped.
    pub fn entry_location(&self, gref: GrantRef) -> Option<(u64, u64)> {
        let frame = gref.0 / GRANT_ENTRIES_V1_PER_FRAME;
        if frame >= self.nr_frames {
            return None;
        }
        let off = u64::from(gref.0 % GRANT_ENTRIES_V1_PER_FRAME) * 8;
        self.gfn(frame).map(|g| (g, off))
    }

    /// Queues a seed entry for frame 0 (only refs in frame 0 can be seeded).
    pub fn seed(&mut self, gref: GrantRef, entry: GrantEntryV1) -> Result<(), Errno> {
        if gref.0 >= GRANT_ENTRIES_V1_PER_FRAME {
            return Err(Errno::EINVAL);
        }
        self.seeds.retain(|(r, _)| *r != gref);
        self.seeds.push((gref, entry));
        Ok(())
    }
}
