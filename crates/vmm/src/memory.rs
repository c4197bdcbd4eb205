//! Guest-physical memory of one domain: the RAM regions and fixed regions
//! (special pages, ACPI) in a `vm-memory` `GuestMemoryMmap`, plus the
//! overlay pages (shared_info, grant frames) that the guest places at frames
//! of its choosing with `XENMEM_add_to_physmap`.
//!
//! Every overlay is a host page of its own with a KVM memslot of its own.
//! When the guest puts one inside RAM, the RAM memslot is split around it
//! (as QEMU does for its Xen overlay pages); when it moves away, the RAM page
//! behind it comes back. Moving an overlay keeps its contents because the
//! host page itself never changes.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Mutex, RwLock};

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryMmap, GuestMemoryRegion, MmapRegion,
};
use xen_emu::guest::{Gpa, GuestMemory, MemError};
use xen_emu::platform::{MapError, SpecialPage};

use crate::layout::PAGE_SIZE;
use crate::VmmError;

/// Highest guest frame an overlay may use: 46 physical address bits, what
/// every x86-64 KVM host accepts.
const MAX_OVERLAY_GFN: u64 = (1 << (46 - 12)) - 1;

/// Installs and removes KVM memslots (`KVM_SET_USER_MEMORY_REGION`). A trait
/// so the slot bookkeeping unit-tests without `/dev/kvm`.
pub trait MemslotSink: Send + Sync {
    /// Sets slot `slot` to map `size` bytes at `gpa` to host address `host`;
    /// `size == 0` deletes the slot.
    fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    gpa: u64,
    size: u64,
    host: u64,
}

/// Which KVM slot ids map what. RAM-backed slots and overlay slots alike.
#[derive(Debug, Default)]
struct SlotTable {
    slots: Vec<Option<Slot>>,
}

impl SlotTable {
    fn alloc(&mut self, slot: Slot) -> u32 {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(slot);
            i as u32
        } else {
            self.slots.push(Some(slot));
            (self.slots.len() - 1) as u32
        }
    }

    fn covering(&self, gpa: u64) -> Option<(u32, Slot)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            s.filter(|s| gpa >= s.gpa && gpa < s.gpa + s.size)
                .map(|s| (i as u32, s))
        })
    }
}

struct Overlay {
    page: SpecialPage,
    host: MmapRegion,
    /// Where the guest currently sees it, and the KVM slot doing so.
    placed: Option<(u64, u32)>,
}

/// The domain's guest memory. Implements xen-emu's [`GuestMemory`].
pub struct DomainMemory {
    ram: GuestMemoryMmap,
    overlays: RwLock<Vec<Overlay>>,
    /// The guest's mappings of its own grants (`GNTTABOP_map_grant_ref`
    /// with `GNTMAP_host_map`): gfn → (host address of the granted page,
    /// KVM slot aliasing it there).
    grant_aliases: RwLock<std::collections::BTreeMap<u64, (u64, u32)>>,
    /// Held across every change of the guest-physical layout (overlay
    /// moves, grant aliases): they check what is at a frame, then punch
    /// and install slots, and two of them interleaving would split the
    /// same RAM slot twice or leave a recorded slot id that another
    /// placement has reused. Taken before `overlays` and `grant_aliases`.
    layout: Mutex<()>,
    /// Bumped after every layout change ([`GuestMemory::layout_generation`]).
    generation: AtomicU64,
    slots: Mutex<SlotTable>,
    sink: Box<dyn MemslotSink>,
}

/// Bumps the layout generation when dropped: declared right after the
/// `layout` lock is taken, it runs once the change is complete (and on
/// every error path), before the lock is released.
struct BumpGeneration<'a>(&'a AtomicU64);

impl Drop for BumpGeneration<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

/// What [`DomainMemory::punch`] took apart, so a failed placement can put
/// it back ([`DomainMemory::unpunch`]).
struct Punched {
    /// The slot that covered the page.
    was: Slot,
    /// The ids of the pieces left on either side of the page.
    pieces: Vec<u32>,
}

impl DomainMemory {
    /// Allocates `regions` (`(gpa, size)`, page aligned, disjoint) and maps
    /// each with a memslot through `sink`.
    pub fn new(regions: &[(u64, u64)], sink: Box<dyn MemslotSink>) -> Result<Self, VmmError> {
        let mut sorted = regions.to_vec();
        sorted.sort_unstable();
        let ranges: Vec<(GuestAddress, usize)> = sorted
            .iter()
            .map(|&(gpa, size)| {
                usize::try_from(size)
                    .map(|s| (GuestAddress(gpa), s))
                    .map_err(|_| VmmError::Memory(format!("region of {size:#x} bytes too big")))
            })
            .collect::<Result<_, _>>()?;
        let ram = GuestMemoryMmap::from_ranges(&ranges)
            .map_err(|e| VmmError::Memory(format!("cannot allocate guest RAM: {e}")))?;
        let mem = Self {
            ram,
            overlays: RwLock::new(Vec::new()),
            grant_aliases: RwLock::new(std::collections::BTreeMap::new()),
            layout: Mutex::new(()),
            generation: AtomicU64::new(0),
            slots: Mutex::new(SlotTable::default()),
            sink,
        };
        for region in mem.ram.iter() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| VmmError::Memory(e.to_string()))? as u64;
            let slot = Slot {
                gpa: region.start_addr().0,
                size: region.len(),
                host,
            };
            mem.install(slot).map_err(VmmError::Memory)?;
        }
        Ok(mem)
    }

    /// The RAM and fixed regions, for the loaders.
    pub fn ram(&self) -> &GuestMemoryMmap {
        &self.ram
    }

    fn install(&self, slot: Slot) -> Result<u32, String> {
        let mut table = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let id = table.alloc(slot);
        if let Err(e) = self.sink.set_slot(id, slot.gpa, slot.size, slot.host) {
            table.slots[id as usize] = None;
            return Err(e);
        }
        Ok(id)
    }

    fn remove(&self, id: u32) -> Result<(), String> {
        let mut table = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = table.slots.get(id as usize).copied().flatten() else {
            return Ok(());
        };
        self.sink.set_slot(id, slot.gpa, 0, slot.host)?;
        table.slots[id as usize] = None;
        Ok(())
    }

    /// Removes whatever slot covers `gpa`'s page and re-adds the parts of it
    /// on either side. All or nothing: if a piece cannot be added (e.g. KVM
    /// is out of memslots) the covering slot is put back.
    fn punch(&self, gpa: u64) -> Result<Option<Punched>, String> {
        let covering = {
            let table = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            table.covering(gpa)
        };
        let Some((id, slot)) = covering else {
            return Ok(None);
        };
        self.remove(id)?;
        let mut punched = Punched {
            was: slot,
            pieces: Vec::new(),
        };
        let end = slot.gpa + slot.size;
        let left = (gpa > slot.gpa).then(|| Slot {
            gpa: slot.gpa,
            size: gpa - slot.gpa,
            host: slot.host,
        });
        let right = (gpa + PAGE_SIZE < end).then(|| Slot {
            gpa: gpa + PAGE_SIZE,
            size: end - gpa - PAGE_SIZE,
            host: slot.host + (gpa + PAGE_SIZE - slot.gpa),
        });
        for piece in [left, right].into_iter().flatten() {
            match self.install(piece) {
                Ok(id) => punched.pieces.push(id),
                Err(e) => {
                    self.unpunch(punched);
                    return Err(e);
                }
            }
        }
        Ok(Some(punched))
    }

    /// Undoes [`Self::punch`]: the pieces go, the covering slot comes back.
    fn unpunch(&self, p: Punched) {
        for id in p.pieces {
            if let Err(e) = self.remove(id) {
                tracing::warn!("restoring slot at {:#x}: {e}", p.was.gpa);
            }
        }
        if let Err(e) = self.install(p.was) {
            tracing::warn!("restoring slot at {:#x}: {e}", p.was.gpa);
        }
    }

    /// Gives page `gpa` back to the RAM (or fixed region) behind it, if any.
    fn restore(&self, gpa: u64) -> Result<(), String> {
        if let Ok(host) = self.ram.get_host_address(GuestAddress(gpa)) {
            self.install(Slot {
                gpa,
                size: PAGE_SIZE,
                host: host as u64,
            })?;
        }
        Ok(())
    }

    /// Where the guest currently sees overlay `page` (e.g. a grant frame,
    /// for the PV backends to find grant entries), if it placed it.
    pub fn overlay_gfn(&self, page: SpecialPage) -> Option<u64> {
        let overlays = self.overlays.read().unwrap_or_else(|e| e.into_inner());
        overlays
            .iter()
            .find(|o| o.page == page)
            .and_then(|o| o.placed.map(|(g, _)| g))
    }

    /// Places overlay `page` at `gfn` (allocating it on first use), replacing
    /// whatever the guest saw there. See [`xen_emu::platform::Platform::map_special_page`].
    pub fn map_overlay(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError> {
        if gfn > MAX_OVERLAY_GFN {
            return Err(MapError::BadGfn(gfn));
        }
        let gpa = gfn * PAGE_SIZE;
        let _layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let _bump = BumpGeneration(&self.generation);
        let mut overlays = self.overlays.write().unwrap_or_else(|e| e.into_inner());
        let idx = match overlays.iter().position(|o| o.page == page) {
            Some(i) => i,
            None => {
                let host =
                    MmapRegion::new(PAGE_SIZE as usize).map_err(|_| MapError::BadGfn(gfn))?;
                overlays.push(Overlay {
                    page,
                    host,
                    placed: None,
                });
                overlays.len() - 1
            }
        };
        if overlays[idx].placed.map(|(g, _)| g) == Some(gfn) {
            return Ok(());
        }
        let bad = |e: String| {
            tracing::warn!("mapping {page:?} at gfn {gfn:#x}: {e}");
            MapError::BadGfn(gfn)
        };
        // A grant alias the guest left here goes first (Xen would crash
        // the domain); the guest's later unmap of it finds nothing to do.
        let alias = self
            .grant_aliases
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&gfn);
        if let Some((_, slot)) = alias {
            self.remove(slot).map_err(bad)?;
        }
        // Take the page away from the overlay that is there now, if any.
        if let Some(other) = overlays
            .iter()
            .position(|o| o.placed.map(|(g, _)| g) == Some(gfn))
        {
            if let Some((_, slot)) = overlays[other].placed.take() {
                self.remove(slot).map_err(bad)?;
            }
        } else {
            self.punch(gpa).map_err(bad)?;
        }
        // Leave the old place, giving it back to RAM.
        if let Some((old_gfn, slot)) = overlays[idx].placed.take() {
            self.remove(slot).map_err(bad)?;
            self.restore(old_gfn * PAGE_SIZE).map_err(bad)?;
        }
        let host = overlays[idx].host.as_ptr() as u64;
        let slot = self
            .install(Slot {
                gpa,
                size: PAGE_SIZE,
                host,
            })
            .map_err(bad)?;
        overlays[idx].placed = Some((gfn, slot));
        Ok(())
    }

    /// How many of the `pages` RAM pages from `gpa` (page aligned, within
    /// one RAM region) are resident in host memory (`mincore`): lets tests
    /// see that a discarded page went back to the host.
    pub fn resident_pages(&self, gpa: u64, pages: u64) -> Result<u64, MemError> {
        if gpa % PAGE_SIZE != 0 {
            return Err(MemError::Misaligned(gpa));
        }
        let len = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or(MemError::Unbacked(gpa))?;
        if len == 0 {
            return Ok(0);
        }
        // `get_slice` fails unless the whole range is in one region.
        let slice = self
            .ram
            .get_slice(GuestAddress(gpa), len)
            .map_err(|_| MemError::Unbacked(gpa))?;
        let host = slice.ptr_guard_mut().as_ptr();
        let mut vec = vec![0u8; pages as usize];
        // SAFETY: `host..host + len` is one mapped, page-aligned range of
        // guest RAM (checked above); `vec` has one byte per page.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(MemError::Unbacked(gpa));
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64)
    }

    /// Shows the page at guest-physical `frame` (RAM or an overlay) a
    /// second time at `gfn`, with a KVM memslot aliasing its host memory
    /// (KVM allows slots to share host memory). A RAM slot covering `gfn`
    /// (a frame the guest ballooned out) is split around it. See
    /// [`xen_emu::platform::Platform::map_grant_page`].
    pub fn map_grant_alias(&self, gfn: u64, frame: Gpa) -> Result<(), MapError> {
        if gfn > MAX_OVERLAY_GFN || frame % PAGE_SIZE != 0 {
            return Err(MapError::BadGfn(gfn));
        }
        let bad = |e: String| {
            tracing::warn!("grant mapping at gfn {gfn:#x}: {e}");
            MapError::BadGfn(gfn)
        };
        let _layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let _bump = BumpGeneration(&self.generation);
        // Resolve the source before taking the alias lock (host_ptr reads it).
        let host = self
            .host_ptr(frame, PAGE_SIZE)
            .map_err(|_| MapError::BadGfn(gfn))? as u64;
        if self.overlay_host(gfn).is_some() {
            return Err(MapError::BadGfn(gfn));
        }
        let mut aliases = self
            .grant_aliases
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if aliases.contains_key(&gfn) {
            return Err(MapError::BadGfn(gfn));
        }
        let gpa = gfn * PAGE_SIZE;
        let punched = self.punch(gpa).map_err(bad)?;
        let slot = match self.install(Slot {
            gpa,
            size: PAGE_SIZE,
            host,
        }) {
            Ok(s) => s,
            Err(e) => {
                if let Some(p) = punched {
                    self.unpunch(p);
                }
                return Err(bad(e));
            }
        };
        aliases.insert(gfn, (host, slot));
        Ok(())
    }

    /// Removes the grant alias at `gfn`, giving back the RAM behind it.
    pub fn unmap_grant_alias(&self, gfn: u64) {
        let _layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let _bump = BumpGeneration(&self.generation);
        let mut aliases = self
            .grant_aliases
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, slot)) = aliases.remove(&gfn) {
            if let Err(e) = self
                .remove(slot)
                .and_then(|_| self.restore(gfn * PAGE_SIZE))
            {
                tracing::warn!("grant unmapping at gfn {gfn:#x}: {e}");
            }
        }
    }

    /// Host address of the overlay (or grant alias) currently at `gfn`.
    fn overlay_host(&self, gfn: u64) -> Option<*mut u8> {
        {
            let aliases = self.grant_aliases.read().unwrap_or_else(|e| e.into_inner());
            if let Some((host, _)) = aliases.get(&gfn) {
                return Some(*host as *mut u8);
            }
        }
        let overlays = self.overlays.read().unwrap_or_else(|e| e.into_inner());
        overlays
            .iter()
            .find(|o| o.placed.map(|(g, _)| g) == Some(gfn))
            .map(|o| o.host.as_ptr())
    }

    /// Host pointer for an access of `len` bytes at `gpa` within one page.
    fn host_ptr(&self, gpa: Gpa, len: u64) -> Result<*mut u8, MemError> {
        let off = gpa % PAGE_SIZE;
        if off + len > PAGE_SIZE {
            return Err(MemError::Misaligned(gpa));
        }
        if let Some(p) = self.overlay_host(gpa / PAGE_SIZE) {
            // SAFETY: `off + len <= PAGE_SIZE`, within the overlay's page.
            return Ok(unsafe { p.add(off as usize) });
        }
        // Check that the whole access is backed, then take the start.
        self.ram
            .get_slice(GuestAddress(gpa), len as usize)
            .map_err(|_| MemError::Unbacked(gpa))?;
        self.ram
            .get_host_address(GuestAddress(gpa))
            .map_err(|_| MemError::Unbacked(gpa))
    }

    fn atomic<T>(&self, gpa: Gpa) -> Result<&T, MemError> {
        let size = std::mem::size_of::<T>() as u64;
        if gpa % size != 0 {
            return Err(MemError::Misaligned(gpa));
        }
        let p = self.host_ptr(gpa, size)?;
        // SAFETY: `p` points at `size` bytes of guest memory, naturally
        // aligned (guest pages are page aligned in the host and `gpa` is
        // aligned), mapped for as long as `self` lives (RAM and overlay pages
        // are never unmapped while the domain exists). Atomic types have the
        // size and alignment of the integer.
        Ok(unsafe { &*(p as *const T) })
    }

    /// Calls `f(gpa, page_offset_in_buf, len)` for each page-bounded chunk.
    fn chunks(
        gpa: Gpa,
        len: usize,
        mut f: impl FnMut(Gpa, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < len {
            let at = gpa
                .checked_add(done as u64)
                .ok_or(MemError::Unbacked(gpa))?;
            let room = (PAGE_SIZE - at % PAGE_SIZE) as usize;
            let n = room.min(len - done);
            f(at, done, n)?;
            done += n;
        }
        Ok(())
    }
}

impl GuestMemory for DomainMemory {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len();
        Self::chunks(gpa, len, |at, off, n| {
            let dst = &mut buf[off..off + n];
            if let Some(p) = self.overlay_host(at / PAGE_SIZE) {
                // SAFETY: the chunk lies within one overlay page.
                let src =
                    unsafe { std::slice::from_raw_parts(p.add((at % PAGE_SIZE) as usize), n) };
                dst.copy_from_slice(src);
                Ok(())
            } else {
                self.ram
                    .read_slice(dst, GuestAddress(at))
                    .map_err(|_| MemError::Unbacked(at))
            }
        })
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        Self::chunks(gpa, data.len(), |at, off, n| {
            let src = &data[off..off + n];
            if let Some(p) = self.overlay_host(at / PAGE_SIZE) {
                // SAFETY: the chunk lies within one overlay page; the guest
                // may race on it, which is the shared-memory contract.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), p.add((at % PAGE_SIZE) as usize), n)
                };
                Ok(())
            } else {
                self.ram
                    .write_slice(src, GuestAddress(at))
                    .map_err(|_| MemError::Unbacked(at))
            }
        })
    }

    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError> {
        self.atomic(gpa)
    }

    fn host_range(&self, gpa: Gpa, len: usize) -> Option<std::ptr::NonNull<u8>> {
        // `host_ptr` checks that the range stays in `gpa`'s page and is
        // backed (RAM or an overlay page, both mapped while we live).
        let len = u64::try_from(len).ok().filter(|&l| l <= PAGE_SIZE)?;
        std::ptr::NonNull::new(self.host_ptr(gpa, len).ok()?)
    }

    fn layout_generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
    fn discard_page(&self, gpa: Gpa) -> Result<bool, MemError> {
        if gpa % PAGE_SIZE != 0 {
            return Err(MemError::Misaligned(gpa));
        }
        // An overlay's host page is not RAM and must keep its contents.
        if self.overlay_host(gpa / PAGE_SIZE).is_some() {
            return Err(MemError::Unbacked(gpa));
        }
        self.ram
            .get_slice(GuestAddress(gpa), PAGE_SIZE as usize)
            .map_err(|_| MemError::Unbacked(gpa))?;
        let host = self
            .ram
            .get_host_address(GuestAddress(gpa))
            .map_err(|_| MemError::Unbacked(gpa))?;
        // Guest RAM is anonymous private memory (`GuestMemoryMmap::from_ranges`),
        // so MADV_DONTNEED frees the page and the next touch (guest or VMM)
        // finds a fresh zero page; KVM drops its mapping through the MMU
        // notifier. References from the atomic accessors stay valid: the
        // mapping itself remains.
        // SAFETY: `host` is the page-aligned start of one page inside a
        // mapping this object owns (checked by `get_slice` above); dropping
        // its contents is what the guest asked for.
        let rc = unsafe { libc::madvise(host.cast(), PAGE_SIZE as usize, libc::MADV_DONTNEED) };
        Ok(rc == 0)
    }
}

/// Guest RAM with no VM behind it, for unit tests of code that only reads
/// and writes guest memory.
#[cfg(test)]
pub(crate) fn test_memory(ranges: &[(u64, u64)]) -> DomainMemory {
    struct NoSlots;
    impl MemslotSink for NoSlots {
        fn set_slot(&self, _: u32, _: u64, _: u64, _: u64) -> Result<(), String> {
            Ok(())
        }
    }
    DomainMemory::new(ranges, Box::new(NoSlots)).expect("test guest memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default, Clone)]
    struct FakeSlots(Arc<Mutex<std::collections::BTreeMap<u32, Slot>>>);

    impl MemslotSink for FakeSlots {
        fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> Result<(), String> {
            let mut m = self.0.lock().map_err(|e| e.to_string())?;
            if size == 0 {
                m.remove(&slot);
                return Ok(());
            }
            for (id, s) in m.iter() {
                if *id != slot && gpa < s.gpa + s.size && s.gpa < gpa + size {
                    return Err(format!("slot {slot} overlaps slot {id}"));
                }
            }
            m.insert(slot, Slot { gpa, size, host });
            Ok(())
        }
    }

    fn mem(size: u64) -> (DomainMemory, FakeSlots) {
        let sink = FakeSlots::default();
        let m = DomainMemory::new(&[(0, size)], Box::new(sink.clone())).expect("alloc");
        (m, sink)
    }

    fn slot_at(sink: &FakeSlots, gpa: u64) -> Option<Slot> {
        let m = sink.0.lock().expect("lock");
        m.values()
            .copied()
            .find(|s| gpa >= s.gpa && gpa < s.gpa + s.size)
    }

    /// [`FakeSlots`] that, like KVM, refuses slot ids at or above `limit`
    /// (`KVM_CAP_NR_MEMSLOTS`).
    #[derive(Clone)]
    struct LimitedSlots(FakeSlots, u32);

    impl MemslotSink for LimitedSlots {
        fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> Result<(), String> {
            if size != 0 && slot >= self.1 {
                return Err(format!("slot {slot}: out of memslots"));
            }
            self.0.set_slot(slot, gpa, size, host)
        }
    }

    /// Every RAM page of `m` (one region from 0) not in `except` is mapped
    /// by exactly the KVM slot the VMM thinks, to its own host page.
    fn assert_ram_mapped(m: &DomainMemory, sink: &FakeSlots, except: &[u64]) {
        let base = m.ram().get_host_address(GuestAddress(0)).expect("host") as u64;
        let size = m.ram().iter().map(|r| r.len()).sum::<u64>();
        for gpa in (0..size).step_by(PAGE_SIZE as usize) {
            if except.contains(&(gpa / PAGE_SIZE)) {
                continue;
            }
            let s = slot_at(sink, gpa).unwrap_or_else(|| panic!("RAM page {gpa:#x} unmapped"));
            assert_eq!(s.host + (gpa - s.gpa), base + gpa, "page {gpa:#x}");
        }
        let table = m.slots.lock().expect("slots");
        let live: Vec<(u32, Slot)> = table
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i as u32, s)))
            .collect();
        let kvm: Vec<(u32, Slot)> = sink
            .0
            .lock()
            .expect("sink")
            .iter()
            .map(|(i, s)| (*i, *s))
            .collect();
        assert_eq!(live, kvm, "the VMM's slot table is KVM's");
        drop(table);
        for (gfn, (host, id)) in m.grant_aliases.read().expect("aliases").iter() {
            let s = kvm
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, s)| (s.gpa, s.host));
            assert_eq!(
                s,
                Some((gfn * PAGE_SIZE, *host)),
                "alias at {gfn:#x} owns its slot"
            );
        }
        for o in m.overlays.read().expect("overlays").iter() {
            if let Some((gfn, id)) = o.placed {
                let s = kvm
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, s)| (s.gpa, s.host));
                let want = (gfn * PAGE_SIZE, o.host.as_ptr() as u64);
                assert_eq!(s, Some(want), "overlay at {gfn:#x} owns its slot");
            }
        }
    }

    #[test]
    fn a_grant_alias_refused_for_want_of_memslots_leaves_ram_as_it_was() {
        for limit in [1, 2] {
            let fake = FakeSlots::default();
            let m = DomainMemory::new(&[(0, 1 << 20)], Box::new(LimitedSlots(fake.clone(), limit)))
                .expect("alloc");
            // Splitting the RAM slot around gfn 0x80 needs two slots and
            // the alias a third: one of them is refused.
            assert!(m.map_grant_alias(0x80, 0x3000).is_err(), "limit {limit}");
            assert_ram_mapped(&m, &fake, &[]);
        }
    }

    #[test]
    fn overlays_and_grant_aliases_changing_at_once_keep_the_slots_consistent() {
        let (m, sink) = mem(1 << 20);
        let m = Arc::new(m);
        const X: u64 = 0x40;
        let mover = {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..3000u64 {
                    // shared_info back and forth between X and another frame.
                    let gfn = if i % 2 == 0 { X } else { 0x50 + (i % 16) };
                    let _ = m.map_overlay(SpecialPage::SharedInfo, gfn);
                }
            })
        };
        for i in 0..3000u64 {
            let gfn = if i % 3 == 0 { X } else { 0x60 + (i % 16) };
            if m.map_grant_alias(gfn, 0x3000).is_ok() {
                m.unmap_grant_alias(gfn);
            }
        }
        mover.join().expect("mover");
        let at = m.overlay_gfn(SpecialPage::SharedInfo).expect("placed");
        assert_ram_mapped(&m, &sink, &[at]);
        m.map_overlay(SpecialPage::SharedInfo, 0x90).expect("park");
        assert_ram_mapped(&m, &sink, &[0x90]);
    }

    #[test]
    fn overlay_inside_ram_splits_the_slot_and_hides_ram() {
        let (m, sink) = mem(1 << 20);
        m.write(0x5000, &[0xaa; 8]).expect("write ram");
        m.map_overlay(SpecialPage::SharedInfo, 5).expect("map");
        let mut b = [0u8; 8];
        m.read(0x5000, &mut b).expect("read");
        assert_eq!(b, [0; 8], "overlay page starts zeroed, RAM hidden");
        assert_eq!(slot_at(&sink, 0x4fff).map(|s| s.size), Some(0x5000));
        assert_eq!(slot_at(&sink, 0x5000).map(|s| s.size), Some(PAGE_SIZE));
        assert_eq!(slot_at(&sink, 0x6000).map(|s| s.gpa), Some(0x6000));
    }

    #[test]
    fn moving_an_overlay_keeps_contents_and_restores_ram() {
        let (m, sink) = mem(1 << 20);
        m.write(0x5000, &[0xaa; 4]).expect("write ram");
        m.map_overlay(SpecialPage::SharedInfo, 5).expect("map");
        m.write(0x5010, &[1, 2, 3, 4]).expect("write overlay");
        m.map_overlay(SpecialPage::SharedInfo, 0x80).expect("move");
        let mut b = [0u8; 4];
        m.read(0x80010, &mut b).expect("read moved");
        assert_eq!(b, [1, 2, 3, 4]);
        m.read(0x5000, &mut b).expect("read ram again");
        assert_eq!(b, [0xaa; 4]);
        assert!(slot_at(&sink, 0x5000).is_some());
    }

    #[test]
    fn overlay_outside_ram_gets_its_own_slot() {
        let (m, sink) = mem(1 << 20);
        m.map_overlay(SpecialPage::GrantFrame(0), 0xf0000)
            .expect("map in hole");
        assert!(slot_at(&sink, 0xf000_0000).is_some());
        m.atomic_u32(0xf000_0008)
            .expect("atomic")
            .store(7, std::sync::atomic::Ordering::SeqCst);
        let mut b = [0u8; 4];
        m.read(0xf000_0008, &mut b).expect("read");
        assert_eq!(u32::from_le_bytes(b), 7);
    }

    /// Resident bytes of the host mapping that contains `addr`, from
    /// `/proc/self/smaps`.
    fn mapping_rss(addr: u64) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = head.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    inside = addr >= a && addr < b;
                    continue;
                }
            }
            if inside {
                if let Some(kb) = line.strip_prefix("Rss:") {
                    let kb = kb.trim().trim_end_matches("kB").trim();
                    return kb.parse::<u64>().expect("Rss value") * 1024;
                }
            }
        }
        panic!("no mapping contains {addr:#x}");
    }

    #[test]
    fn discarded_pages_leave_the_host_and_read_zero() {
        const SIZE: u64 = 64 << 20;
        const GONE: u64 = 32 << 20;
        let (m, _) = mem(SIZE);
        let host = m.ram().get_host_address(GuestAddress(0)).expect("host") as u64;
        for gpa in (0..SIZE).step_by(PAGE_SIZE as usize) {
            m.write(gpa, &[0x5a; 8]).expect("touch");
        }
        let before = mapping_rss(host);
        assert!(before >= SIZE - (1 << 20), "all pages resident: {before}");
        for gpa in (0x10_0000..0x10_0000 + GONE).step_by(PAGE_SIZE as usize) {
            assert_eq!(m.discard_page(gpa), Ok(true));
        }
        let after = mapping_rss(host);
        assert!(
            before.saturating_sub(after) >= GONE - (1 << 20),
            "RSS {before} -> {after} should drop by about {GONE}"
        );
        let mut b = [0xffu8; 8];
        m.read(0x20_0000, &mut b).expect("read discarded");
        assert_eq!(b, [0; 8], "a discarded page reads zero");
        m.read(0x0, &mut b).expect("read kept");
        assert_eq!(b, [0x5a; 8], "pages outside the range keep their data");
        m.read(0x10_0000 + GONE, &mut b).expect("read kept");
        assert_eq!(b, [0x5a; 8]);
        // mincore agrees (the page read above may be mapped again, as the
        // shared zero page).
        let gone_pages = GONE / PAGE_SIZE;
        let back = m.resident_pages(0x10_0000, gone_pages).expect("mincore");
        assert!(back <= 1, "{back} discarded pages resident");
        assert_eq!(m.resident_pages(0, 0x100), Ok(0x100));
        assert!(m.resident_pages(0, SIZE / PAGE_SIZE + 1).is_err());
    }

    #[test]
    fn discard_refuses_overlays_and_bad_addresses() {
        let (m, _) = mem(1 << 20);
        m.map_overlay(SpecialPage::SharedInfo, 5).expect("map");
        m.write(0x5000, &[7; 4]).expect("write overlay");
        assert_eq!(m.discard_page(0x5000), Err(MemError::Unbacked(0x5000)));
        let mut b = [0u8; 4];
        m.read(0x5000, &mut b).expect("read");
        assert_eq!(b, [7; 4], "overlay contents kept");
        assert_eq!(m.discard_page(0x6001), Err(MemError::Misaligned(0x6001)));
        assert_eq!(
            m.discard_page(1 << 20),
            Err(MemError::Unbacked(1 << 20)),
            "beyond RAM"
        );
    }

    #[test]
    fn grant_alias_shows_the_same_page_elsewhere_and_unmap_restores_ram() {
        let (m, sink) = mem(1 << 20);
        m.write(0x3000, b"granted!").expect("write source");
        // Outside RAM: a slot of its own on the source's host page.
        m.map_grant_alias(0xe0000, 0x3000).expect("alias in a hole");
        let mut b = [0u8; 8];
        m.read(0xe000_0000, &mut b).expect("read alias");
        assert_eq!(&b, b"granted!");
        m.write(0xe000_0004, b"ALIA").expect("write alias");
        m.read(0x3000, &mut b).expect("read source");
        assert_eq!(&b, b"granALIA", "one page behind both frames");
        let host3 = slot_at(&sink, 0x3000).map(|s| s.host + (0x3000 - s.gpa));
        assert_eq!(slot_at(&sink, 0xe000_0000).map(|s| s.host), host3);
        m.unmap_grant_alias(0xe0000);
        assert!(slot_at(&sink, 0xe000_0000).is_none());
        assert!(m.read(0xe000_0000, &mut b).is_err());
        // Inside RAM (a ballooned frame): the RAM slot is split and comes back.
        m.write(0x8000, &[0x11; 8]).expect("ram");
        m.map_grant_alias(8, 0x3000).expect("alias over RAM");
        m.read(0x8000, &mut b).expect("read alias");
        assert_eq!(&b[..4], b"gran");
        assert_eq!(slot_at(&sink, 0x8000).map(|s| s.size), Some(PAGE_SIZE));
        m.unmap_grant_alias(8);
        m.read(0x8000, &mut b).expect("read ram");
        assert_eq!(b, [0x11; 8]);
        // Bad: taken, source not memory, target an overlay, gfn too high.
        m.map_grant_alias(0xe0002, 0x3000).expect("alias");
        assert!(m.map_grant_alias(0xe0002, 0x4000).is_err());
        // An overlay placed on an alias replaces it.
        m.map_overlay(SpecialPage::GrantFrame(1), 0xe0002)
            .expect("overlay on alias");
        m.read(0xe000_2000, &mut b).expect("read overlay");
        assert_eq!(b, [0; 8], "the overlay's page, not the alias's");
        m.unmap_grant_alias(0xe0002);
        assert!(slot_at(&sink, 0xe000_2000).is_some(), "overlay slot kept");
        assert!(m.map_grant_alias(0xe0001, 1 << 20).is_err());
        m.map_overlay(SpecialPage::SharedInfo, 9).expect("overlay");
        assert!(m.map_grant_alias(9, 0x3000).is_err());
        assert!(m.map_grant_alias(MAX_OVERLAY_GFN + 1, 0x3000).is_err());
    }

    #[test]
    fn host_range_points_into_the_page_and_refuses_crossing_or_unbacked_ranges() {
        let (m, _) = mem(1 << 20);
        let p = m.host_range(0x5100, 0x100).expect("RAM range");
        // SAFETY: `p` covers 0x100 bytes of guest RAM that `m` keeps mapped.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0x5a, 0x100) };
        let mut b = [0u8; 0x102];
        m.read(0x50ff, &mut b).expect("read back");
        assert_eq!((b[0], b[1], b[0x100], b[0x101]), (0, 0x5a, 0x5a, 0));
        assert!(m.host_range(0x5f00, 0x101).is_none(), "crosses a page");
        assert!(m.host_range(0x5000, usize::MAX).is_none());
        assert!(m.host_range(1 << 20, 1).is_none(), "past RAM");
        // An overlay page is reached at its current place.
        m.map_overlay(SpecialPage::SharedInfo, 7).expect("overlay");
        let o = m.host_range(0x7008, 8).expect("overlay range");
        // SAFETY: 8 bytes inside the overlay page, mapped while `m` lives.
        unsafe { std::ptr::write_bytes(o.as_ptr(), 0x77, 8) };
        let mut c = [0u8; 8];
        m.read(0x7008, &mut c).expect("read overlay");
        assert_eq!(c, [0x77; 8]);
    }

    #[test]
    fn every_layout_change_bumps_the_generation() {
        let (m, _) = mem(1 << 20);
        let g0 = m.layout_generation();
        m.map_overlay(SpecialPage::SharedInfo, 7).expect("overlay");
        let g1 = m.layout_generation();
        assert!(g1 > g0, "overlay placed");
        m.map_overlay(SpecialPage::SharedInfo, 9)
            .expect("overlay moved");
        let g2 = m.layout_generation();
        assert!(g2 > g1, "overlay moved");
        m.map_grant_alias(0x20, 0x5000).expect("alias");
        let g3 = m.layout_generation();
        assert!(g3 > g2, "grant alias placed");
        m.unmap_grant_alias(0x20);
        let g4 = m.layout_generation();
        assert!(g4 > g3, "grant alias removed");
        // Plain accesses and discards leave the layout alone.
        m.write(0x5000, &[1, 2, 3]).expect("write");
        m.discard_page(0x6000).expect("discard");
        assert_eq!(m.layout_generation(), g4);
    }

    #[test]
    fn bad_accesses_are_errors() {
        let (m, _) = mem(1 << 20);
        let mut b = [0u8; 4];
        assert_eq!(m.read(1 << 20, &mut b), Err(MemError::Unbacked(1 << 20)));
        assert!(m.atomic_u32(0x1001).is_err());
        assert!(m
            .map_overlay(SpecialPage::SharedInfo, u64::MAX / 4096)
            .is_err());
        assert!(m.read(u64::MAX - 1, &mut b).is_err());
    }
}
