//! Backend access to pages a frontend granted (grant table v1).
//!
//! The grant state has one owner, `xen-emu`: its [`Domain`] implements
//! Xen's `GNTTABOP_map_grant_ref` / `unmap_grant_ref` / `copy` for the
//! backend domain, with the `GTF_reading` / `GTF_writing` protocol
//! (`_set_status_v1`), one pin count per entry and `GNTST_*` codes. This
//! module only decides *how long* a backend holds a grant:
//!
//! * ring pages are mapped for the connection ([`GrantSession::map_ring`]);
//! * data pages are copied through the grant (pinned for the copy only),
//!   or, for direct I/O between a file and the page
//!   ([`GrantSession::with_host_pages`]), mapped for the I/O and unmapped
//!   after it;
//! * persistent grants (`feature-persistent`) keep their mapping handle
//!   until [`GrantSession::release_all`] (connection teardown).
//!
//! Because every pin goes through the domain, a page held here and also by
//! the guest's own `GNTTABOP_copy` or another backend keeps its in-use
//! flags until the last holder lets go.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use xen_emu::guest::{Gpa, GuestMemory};
use xen_emu::{CopyEnd, Domain};

pub use xen_emu::{GrantError, GrantMapping};

const PAGE: u64 = xen_abi::PAGE_SIZE as u64;

/// The backend domain's grant operations on one frontend's grants: the
/// seam between the backends and the hypervisor personality. Implemented
/// by [`xen_emu::Domain`] (in production and in [`crate::testing`]).
pub trait GrantTable: Send + Sync {
    /// `GNTTABOP_map_grant_ref`: pins `gref` until [`Self::unmap`].
    fn map(&self, gref: u32, writable: bool) -> Result<GrantMapping, GrantError>;
    /// `GNTTABOP_unmap_grant_ref`.
    fn unmap(&self, handle: u32) -> Result<(), GrantError>;
    /// Reads from a mapped page.
    fn read(&self, handle: u32, offset: u32, buf: &mut [u8]) -> Result<(), GrantError>;
    /// Writes to a page mapped writable.
    fn write(&self, handle: u32, offset: u32, data: &[u8]) -> Result<(), GrantError>;
    /// `GNTTABOP_copy` from granted page `gref` into `buf`.
    fn copy_from(&self, gref: u32, offset: u16, buf: &mut [u8]) -> Result<(), GrantError>;
    /// `GNTTABOP_copy` from `data` into granted page `gref`.
    fn copy_to(&self, gref: u32, offset: u16, data: &[u8]) -> Result<(), GrantError>;
    /// [`Self::map`] of every `(gref, writable)`, all or nothing: on the
    /// first failure (index and error) nothing of the batch stays mapped.
    fn map_batch(&self, grants: &[(u32, bool)]) -> Result<Vec<GrantMapping>, (usize, GrantError)> {
        let mut done: Vec<GrantMapping> = Vec::with_capacity(grants.len());
        for (i, &(gref, writable)) in grants.iter().enumerate() {
            match self.map(gref, writable) {
                Ok(m) => done.push(m),
                Err(e) => {
                    for m in done.iter().rev() {
                        let _ = self.unmap(m.handle);
                    }
                    return Err((i, e));
                }
            }
        }
        Ok(done)
    }
    /// [`Self::unmap`] of every handle; the first failure is reported.
    fn unmap_batch(&self, handles: &[u32]) -> Result<(), (usize, GrantError)> {
        let mut first = None;
        for (i, &h) in handles.iter().enumerate() {
            if let Err(e) = self.unmap(h) {
                first.get_or_insert((i, e));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl GrantTable for Domain {
    fn map(&self, gref: u32, writable: bool) -> Result<GrantMapping, GrantError> {
        self.grant_map(gref, writable)
    }
    fn unmap(&self, handle: u32) -> Result<(), GrantError> {
        self.grant_unmap(handle)
    }
    fn read(&self, handle: u32, offset: u32, buf: &mut [u8]) -> Result<(), GrantError> {
        self.grant_read(handle, offset, buf)
    }
    fn write(&self, handle: u32, offset: u32, data: &[u8]) -> Result<(), GrantError> {
        self.grant_write(handle, offset, data)
    }
    fn copy_from(&self, gref: u32, offset: u16, buf: &mut [u8]) -> Result<(), GrantError> {
        self.grant_copy_from_guest(CopyEnd::Grant { gref, offset }, buf)
    }
    fn copy_to(&self, gref: u32, offset: u16, data: &[u8]) -> Result<(), GrantError> {
        self.grant_copy_to_guest(CopyEnd::Grant { gref, offset }, data)
    }
    fn map_batch(&self, grants: &[(u32, bool)]) -> Result<Vec<GrantMapping>, (usize, GrantError)> {
        self.grant_map_batch(grants)
    }
    fn unmap_batch(&self, handles: &[u32]) -> Result<(), (usize, GrantError)> {
        self.grant_unmap_batch(handles)
    }
}

/// One piece of a request's data: `len` bytes at `offset` in the page
/// granted as `gref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantRange {
    pub gref: u32,
    pub offset: u64,
    pub len: u64,
}

/// A host address range inside a granted page the backend holds, laid out
/// as the kernel's `struct iovec` so a slice of them goes straight to
/// `preadv`/`pwritev`. Only [`GrantSession::with_host_pages`] makes them,
/// and the lifetime keeps them inside that call, i.e. inside the time the
/// grants are held (`GTF_reading`/`GTF_writing` set).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct HostIoVec<'a> {
    iov: libc::iovec,
    _held: PhantomData<&'a ()>,
}

impl<'a> HostIoVec<'a> {
    pub fn len(&self) -> usize {
        self.iov.iov_len
    }

    pub fn is_empty(&self) -> bool {
        self.iov.iov_len == 0
    }

    /// The `len` bytes from `start` of this range (e.g. to split a request
    /// at an image's cluster boundary), or `None` past its end.
    pub fn sub(&self, start: usize, len: usize) -> Option<HostIoVec<'a>> {
        if start.checked_add(len)? > self.len() {
            return None;
        }
        Some(Self {
            iov: libc::iovec {
                iov_base: self.iov.iov_base.cast::<u8>().wrapping_add(start).cast(),
                iov_len: len,
            },
            _held: PhantomData,
        })
    }

    /// Fills the range with `byte` (e.g. for an unallocated image cluster).
    pub fn fill(&self, byte: u8) {
        // SAFETY: the range is host memory of a page whose grant is held
        // for `'a` (only `with_host_pages` makes these, from
        // `GuestMemory::host_range`); raw writes, no reference to memory
        // the guest shares.
        unsafe { std::ptr::write_bytes(self.iov.iov_base.cast::<u8>(), byte, self.len()) }
    }

    /// Copies `data` to the start of the range; `false` if it does not fit.
    pub fn copy_from(&self, data: &[u8]) -> bool {
        if data.len() > self.len() {
            return false;
        }
        // SAFETY: as in `fill`; `data` is host memory of our own, so the
        // two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.iov.iov_base.cast(), data.len())
        };
        true
    }

    /// Copies the start of the range into `buf`; `false` if `buf` is longer.
    pub fn copy_to(&self, buf: &mut [u8]) -> bool {
        if buf.len() > self.len() {
            return false;
        }
        // SAFETY: as in `copy_from`, in the other direction.
        unsafe {
            std::ptr::copy_nonoverlapping(self.iov.iov_base.cast(), buf.as_mut_ptr(), buf.len())
        };
        true
    }

    /// The ranges as the kernel's `iovec` array.
    pub fn as_iovecs<'s>(v: &'s [HostIoVec<'a>]) -> &'s [libc::iovec] {
        // SAFETY: `HostIoVec` is `repr(transparent)` over `libc::iovec`
        // (the other field is zero-sized), so the layouts are identical.
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
    }
}

/// Persistent grants by reference: a flat table indexed by `gref` (only
/// references that mapped are stored, so it is at most the frontend's
/// grant table long: 32768 entries with libxl's 64 frames),
/// so a lookup is one index under a shared lock instead of a hash probe
/// under a mutex. Entries are only added while the connection runs and
/// all removed at teardown ([`GrantSession::release_all`]), which takes
/// the lock exclusively and so waits for I/O still using a page.
type PersistentTable = Vec<Option<GrantMapping>>;

/// The grants one frontend gives one backend connection.
pub struct GrantSession {
    mem: Arc<dyn GuestMemory>,
    table: Arc<dyn GrantTable>,
    persistent: bool,
    /// Ring pages mapped for the connection: (gref, handle).
    rings: Mutex<Vec<(u32, u32)>>,
    /// Persistent grants mapped so far.
    cache: RwLock<PersistentTable>,
}

impl GrantSession {
    /// A session on `table`'s grants. The backend domain is the one the
    /// table's domain was configured with (`DomainConfig::backend_domid`);
    /// `_backend_domid` is kept for callers that name it.
    pub fn new(
        mem: Arc<dyn GuestMemory>,
        table: Arc<dyn GrantTable>,
        _backend_domid: u16,
        persistent: bool,
    ) -> Self {
        Self {
            mem,
            table,
            persistent,
            rings: Mutex::new(Vec::new()),
            cache: RwLock::new(Vec::new()),
        }
    }

    pub fn memory(&self) -> &Arc<dyn GuestMemory> {
        &self.mem
    }

    /// The persistent table with every grant of `grefs` in it, mapped on
    /// first use: writable when the entry allows it, so one mapping serves
    /// both directions.
    fn persistent_hold<I>(
        &self,
        grefs: I,
    ) -> Result<RwLockReadGuard<'_, PersistentTable>, GrantError>
    where
        I: Iterator<Item = u32> + Clone,
    {
        let present = |t: &PersistentTable, g: u32| t.get(g as usize).is_some_and(Option::is_some);
        for _ in 0..2 {
            let t = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if grefs.clone().all(|g| present(&t, g)) {
                return Ok(t);
            }
            drop(t);
            let mut t = self.cache.write().unwrap_or_else(|e| e.into_inner());
            for g in grefs.clone() {
                if present(&t, g) {
                    continue;
                }
                let m = match self.table.map(g, true) {
                    Ok(m) => m,
                    Err(_) => self.table.map(g, false)?,
                };
                // The map succeeded, so `g` is inside the frontend's grant
                // table: the growth is bounded by its size.
                let i = g as usize;
                if t.len() <= i {
                    t.resize(i + 1, None);
                }
                t[i] = Some(m);
            }
        }
        // Only a teardown racing with I/O gets here.
        Err(GrantError::General {
            gref: grefs.clone().next().unwrap_or(0),
            why: "persistent grants were released",
        })
    }

    /// Copies `buf.len()` bytes from offset `off` of granted page `gref`.
    pub fn read(&self, gref: u32, off: u64, buf: &mut [u8]) -> Result<(), GrantError> {
        let off = in_page(off, buf.len())?;
        if !self.persistent {
            return self.table.copy_from(gref, off, buf);
        }
        let t = self.persistent_hold(std::iter::once(gref))?;
        let m = t
            .get(gref as usize)
            .copied()
            .flatten()
            .ok_or(GrantError::BadGntref(gref))?;
        match self.mem.host_range(m.frame + u64::from(off), buf.len()) {
            Some(p) => {
                // SAFETY: `p` covers `buf.len()` bytes of the granted page,
                // valid while the mapping is held (the guard `t`); `buf` is
                // our own memory, so they do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), buf.as_mut_ptr(), buf.len()) };
                Ok(())
            }
            None => self.table.read(m.handle, u32::from(off), buf),
        }
    }

    /// Copies `data` to offset `off` of granted page `gref`.
    pub fn write(&self, gref: u32, off: u64, data: &[u8]) -> Result<(), GrantError> {
        let off = in_page(off, data.len())?;
        if !self.persistent {
            return self.table.copy_to(gref, off, data);
        }
        let t = self.persistent_hold(std::iter::once(gref))?;
        let m = t
            .get(gref as usize)
            .copied()
            .flatten()
            .ok_or(GrantError::BadGntref(gref))?;
        if !m.writable {
            return Err(GrantError::PermissionDenied(
                "write through a read-only grant mapping",
            ));
        }
        match self.mem.host_range(m.frame + u64::from(off), data.len()) {
            Some(p) => {
                // SAFETY: as in `read`, in the other direction (the mapping
                // is writable).
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), data.len()) };
                Ok(())
            }
            None => self.table.write(m.handle, u32::from(off), data),
        }
    }

    /// Runs `f` with one host range per piece, in order, while every grant
    /// of `pieces` is held: `to_guest` pieces need writable grants (data
    /// goes into the guest), the others readable ones. With persistent
    /// grants the connection's mappings are used (and the teardown waits
    /// for `f`); otherwise each grant is mapped for the call and unmapped
    /// after it, as a grant copy would pin it. `scratch` is reused storage
    /// for the iovecs (kept by the caller to save an allocation per call).
    ///
    /// `Ok(None)` when guest memory offers no host pointers
    /// ([`GuestMemory::host_range`]); `f` did not run and the caller
    /// copies through [`Self::read`]/[`Self::write`] instead.
    pub fn with_host_pages<R>(
        &self,
        pieces: &[GrantRange],
        to_guest: bool,
        scratch: &mut Vec<libc::iovec>,
        f: impl for<'a> FnOnce(&'a [HostIoVec<'a>]) -> R,
    ) -> Result<Option<R>, GrantError> {
        for p in pieces {
            in_page(p.offset, p.len as usize)?;
        }
        scratch.clear();
        // Whichever holds the grants lives until the end of this function,
        // past `f`: the persistent table's shared guard or the mappings.
        let _guard;
        let _held;
        if self.persistent {
            let t = self.persistent_hold(pieces.iter().map(|p| p.gref))?;
            let maps = pieces
                .iter()
                .map(|p| t.get(p.gref as usize).copied().flatten());
            let ok = self.host_iovecs(pieces, maps, to_guest, scratch)?;
            _guard = t;
            if !ok {
                return Ok(None);
            }
        } else {
            let held = Held::map(&*self.table, pieces, to_guest)?;
            let ok =
                self.host_iovecs(pieces, held.0.iter().map(|m| Some(*m)), to_guest, scratch)?;
            _held = held;
            if !ok {
                return Ok(None);
            }
        }
        // SAFETY: `HostIoVec` is `repr(transparent)` over `libc::iovec`,
        // and every iovec in `scratch` was made from `host_range` for a
        // range of a page whose grant is held until this function returns
        // (`_guard`/`_held`), which outlives the borrow given to `f`.
        let iov: &[HostIoVec<'_>] =
            unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast(), scratch.len()) };
        Ok(Some(f(iov)))
    }

    /// Pushes the host ranges of `pieces` in their mappings `maps` (one per
    /// piece) to `out`; `false` when guest memory gives no host pointer.
    fn host_iovecs(
        &self,
        pieces: &[GrantRange],
        maps: impl Iterator<Item = Option<GrantMapping>>,
        to_guest: bool,
        out: &mut Vec<libc::iovec>,
    ) -> Result<bool, GrantError> {
        for (p, m) in pieces.iter().zip(maps) {
            let m = m.ok_or(GrantError::BadGntref(p.gref))?;
            if to_guest && !m.writable {
                return Err(GrantError::PermissionDenied(
                    "write through a read-only grant mapping",
                ));
            }
            // `in_page` held for every piece: the range is inside the frame.
            let Some(ptr) = self.mem.host_range(m.frame + p.offset, p.len as usize) else {
                return Ok(false);
            };
            out.push(libc::iovec {
                iov_base: ptr.as_ptr().cast(),
                iov_len: p.len as usize,
            });
        }
        Ok(true)
    }

    /// Maps ring pages writable for the whole connection (as a backend's
    /// `xenbus_map_ring_valloc`); returns their addresses.
    pub fn map_ring(&self, grefs: &[u32]) -> Result<Vec<Gpa>, GrantError> {
        let mut maps = Vec::with_capacity(grefs.len());
        for &g in grefs {
            match self.table.map(g, true) {
                Ok(m) => maps.push(m),
                Err(e) => {
                    for m in maps {
                        let _ = self.table.unmap(m.handle);
                    }
                    return Err(e);
                }
            }
        }
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.extend(maps.iter().map(|m| (m.gref, m.handle)));
        Ok(maps.iter().map(|m| m.frame).collect())
    }

    /// Unmaps ring pages mapped by [`Self::map_ring`].
    pub fn unmap_ring(&self, grefs: &[u32]) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        for &g in grefs {
            if let Some(i) = rings.iter().position(|&(r, _)| r == g) {
                let (_, handle) = rings.swap_remove(i);
                let _ = self.table.unmap(handle);
            }
        }
    }

    /// Releases every persistent grant (connection teardown). Waits for
    /// I/O that still uses one ([`Self::with_host_pages`]).
    pub fn release_all(&self) {
        let cached: Vec<GrantMapping> =
            std::mem::take(&mut *self.cache.write().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .flatten()
                .collect();
        for m in cached {
            let _ = self.table.unmap(m.handle);
        }
    }
}

/// Grants mapped for one [`GrantSession::with_host_pages`] call; unmapped
/// when dropped, so no exit path leaves them pinned.
struct Held<'t>(Vec<GrantMapping>, &'t dyn GrantTable);

impl<'t> Held<'t> {
    fn map(
        table: &'t dyn GrantTable,
        pieces: &[GrantRange],
        writable: bool,
    ) -> Result<Self, GrantError> {
        // One batch: the grant locks are taken once for all the pages.
        let grants: Vec<(u32, bool)> = pieces.iter().map(|p| (p.gref, writable)).collect();
        let maps = table.map_batch(&grants).map_err(|(_, e)| e)?;
        Ok(Held(maps, table))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let handles: Vec<u32> = self.0.drain(..).map(|m| m.handle).collect();
        let _ = self.1.unmap_batch(&handles);
    }
}

impl Drop for GrantSession {
    /// A session never leaves pins behind, even on an error path that
    /// skipped its teardown.
    fn drop(&mut self) {
        self.release_all();
        let rings = std::mem::take(self.rings.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (_, handle) in rings {
            let _ = self.table.unmap(handle);
        }
    }
}

/// `off + len` must stay inside the page (`GNTST_bad_copy_arg`); returns
/// the offset as a copy takes it.
fn in_page(off: u64, len: usize) -> Result<u16, GrantError> {
    let bad = || GrantError::BadCopyArg {
        offset: u32::try_from(off).unwrap_or(u32::MAX),
        len: u32::try_from(len).unwrap_or(u32::MAX),
    };
    let end = off.checked_add(len as u64).ok_or_else(bad)?;
    if end > PAGE {
        return Err(bad());
    }
    u16::try_from(off).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestGuest;
    use xen_abi::grant_table::{
        GNTST_BAD_COPY_ARG, GNTST_BAD_GNTREF, GNTST_GENERAL_ERROR, GNTST_PERMISSION_DENIED,
        GTF_READING, GTF_WRITING,
    };

    const DATA: u64 = TestGuest::FIRST_FREE_PAGE + 1;

    fn session(g: &TestGuest, persistent: bool) -> GrantSession {
        GrantSession::new(g.mem.clone(), g.grants.clone(), 0, persistent)
    }

    #[test]
    fn persistent_grant_and_a_second_mapping_keep_reading_until_both_are_released() {
        let g = TestGuest::new(1 << 20);
        g.grant(20, 0, DATA, false);
        let s = session(&g, true);
        s.write(20, 8, b"abc").expect("persistent write");
        let other = g.grants.grant_map(20, false).expect("second mapping");

        s.release_all();
        assert_eq!(
            g.grant_flags(20) & (GTF_READING | GTF_WRITING),
            GTF_READING,
            "the other mapping still holds the page"
        );
        g.grants.grant_unmap(other.handle).expect("unmap");
        assert_eq!(g.grant_flags(20) & (GTF_READING | GTF_WRITING), 0);
    }

    #[test]
    fn ring_unmap_leaves_flags_of_a_page_the_domain_still_holds() {
        let g = TestGuest::new(1 << 20);
        g.grant(21, 0, DATA, false);
        let other = g.grants.grant_map(21, true).expect("first mapping");
        let s = session(&g, false);
        assert_eq!(s.map_ring(&[21]).expect("ring"), vec![DATA * 4096]);

        s.unmap_ring(&[21]);
        assert_eq!(
            g.grant_flags(21) & (GTF_READING | GTF_WRITING),
            GTF_READING | GTF_WRITING
        );
        g.grants.grant_unmap(other.handle).expect("unmap");
        assert_eq!(g.grant_flags(21) & (GTF_READING | GTF_WRITING), 0);
    }

    #[test]
    fn copies_pin_only_for_the_copy_and_carry_xens_status() {
        let g = TestGuest::new(1 << 20);
        g.grant(22, 0, DATA, false);
        g.grant(23, 0, DATA + 1, true);
        let s = session(&g, false);
        s.write(22, 100, b"xyz").expect("write");
        let mut back = [0u8; 3];
        s.read(22, 100, &mut back).expect("read");
        assert_eq!(&back, b"xyz");
        assert_eq!(g.grant_flags(22) & (GTF_READING | GTF_WRITING), 0);

        let status = |r: Result<(), GrantError>| r.map_err(|e| e.status());
        assert_eq!(status(s.write(23, 0, b"x")), Err(GNTST_GENERAL_ERROR));
        assert_eq!(status(s.read(24, 0, &mut back)), Err(GNTST_GENERAL_ERROR));
        assert_eq!(status(s.read(1 << 20, 0, &mut back)), Err(GNTST_BAD_GNTREF));
        assert_eq!(status(s.read(22, 4094, &mut back)), Err(GNTST_BAD_COPY_ARG));
        assert_eq!(g.grant_flags(23) & (GTF_READING | GTF_WRITING), 0);
    }

    #[test]
    fn persistent_read_only_grant_is_read_but_not_written() {
        let g = TestGuest::new(1 << 20);
        g.grant(25, 0, DATA, true);
        let s = session(&g, true);
        let mut b = [0u8; 4];
        s.read(25, 0, &mut b).expect("read");
        assert_eq!(g.grant_flags(25) & (GTF_READING | GTF_WRITING), GTF_READING);
        let e = s.write(25, 0, b"x").expect_err("read-only");
        assert_eq!(e.status(), GNTST_PERMISSION_DENIED);
        drop(s);
        assert_eq!(g.grant_flags(25) & (GTF_READING | GTF_WRITING), 0);
    }

    fn range(gref: u32, offset: u64, len: u64) -> GrantRange {
        GrantRange { gref, offset, len }
    }

    fn page(g: &TestGuest, gfn: u64) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        g.mem.read(gfn * 4096, &mut b).expect("read page");
        b
    }

    #[test]
    fn host_pages_are_pinned_only_during_the_call_and_hit_only_the_ranges() {
        let g = TestGuest::new(1 << 20);
        for gfn in DATA - 1..=DATA + 2 {
            g.mem.write(gfn * 4096, &[0xee; 4096]).expect("canary");
        }
        g.grant(30, 0, DATA, false);
        g.grant(31, 0, DATA + 1, false);
        let s = session(&g, false);
        let pieces = [range(30, 512, 1024), range(31, 0, 4096)];
        let flags = s
            .with_host_pages(&pieces, true, &mut Vec::new(), |iov| {
                assert_eq!(iov.len(), 2);
                assert_eq!((iov[0].len(), iov[1].len()), (1024, 4096));
                assert!(iov[0].copy_from(&[1u8; 1024]));
                iov[1].fill(2);
                assert!(iov[0].sub(1000, 25).is_none(), "sub past the end");
                let tail = iov[0].sub(1000, 24).expect("sub");
                tail.fill(3);
                (g.grant_flags(30), g.grant_flags(31))
            })
            .expect("grants held")
            .expect("test memory has host pointers");
        let both = GTF_READING | GTF_WRITING;
        assert_eq!(
            (flags.0 & both, flags.1 & both),
            (both, both),
            "held during I/O"
        );
        assert_eq!(g.grant_flags(30) & both, 0, "released after");
        assert_eq!(g.grant_flags(31) & both, 0);
        let a = page(&g, DATA);
        assert!(a[..512].iter().all(|&b| b == 0xee));
        assert!(a[512..1512].iter().all(|&b| b == 1));
        assert!(a[1512..1536].iter().all(|&b| b == 3));
        assert!(a[1536..].iter().all(|&b| b == 0xee));
        assert!(page(&g, DATA + 1).iter().all(|&b| b == 2));
        assert!(page(&g, DATA - 1).iter().all(|&b| b == 0xee), "page before");
        assert!(page(&g, DATA + 2).iter().all(|&b| b == 0xee), "page after");
    }

    #[test]
    fn host_pages_refuse_revoked_read_only_and_out_of_page_grants() {
        let g = TestGuest::new(1 << 20);
        g.grant(32, 0, DATA, false);
        g.grant(33, 0, DATA + 1, true);
        for persistent in [false, true] {
            let s = session(&g, persistent);
            let ran = std::cell::Cell::new(false);
            let run = |p: &[GrantRange], to_guest: bool| {
                s.with_host_pages(p, to_guest, &mut Vec::new(), |_| ran.set(true))
                    .map_err(|e| e.status())
            };
            // Revoked (never granted): GNTST_general_error.
            assert_eq!(run(&[range(34, 0, 512)], false), Err(GNTST_GENERAL_ERROR));
            // Data into a read-only grant.
            assert!(run(&[range(32, 0, 512), range(33, 0, 512)], true).is_err());
            assert_eq!(run(&[range(32, 4000, 512)], false), Err(GNTST_BAD_COPY_ARG));
            assert_eq!(run(&[range(1 << 20, 0, 512)], false), Err(GNTST_BAD_GNTREF));
            assert!(!ran.get(), "nothing ran on a refused grant ({persistent})");
            // Reading from a read-only grant is fine.
            assert_eq!(run(&[range(33, 0, 512)], false), Ok(Some(())));
            assert!(ran.get());
            drop(s);
            assert_eq!(g.grant_flags(32) & (GTF_READING | GTF_WRITING), 0);
            assert_eq!(g.grant_flags(33) & (GTF_READING | GTF_WRITING), 0);
        }
    }

    #[test]
    fn persistent_host_pages_stay_pinned_until_release_and_a_revoked_grant_is_refused() {
        let g = TestGuest::new(1 << 20);
        g.grant(35, 0, DATA, false);
        let s = session(&g, true);
        s.with_host_pages(&[range(35, 0, 8)], true, &mut Vec::new(), |iov| {
            iov[0].fill(9)
        })
        .expect("held")
        .expect("direct");
        let both = GTF_READING | GTF_WRITING;
        assert_eq!(g.grant_flags(35) & both, both, "kept for the connection");
        s.release_all();
        assert_eq!(g.grant_flags(35) & both, 0);
        // The frontend ends access (clears the entry) after the release:
        // the next request must map again, and fails.
        g.mem
            .atomic_u16(35 * 8)
            .expect("entry")
            .store(0, std::sync::atomic::Ordering::Release);
        let r = s.with_host_pages(&[range(35, 0, 8)], true, &mut Vec::new(), |iov| {
            iov[0].fill(7)
        });
        assert_eq!(r.map_err(|e| e.status()), Err(GNTST_GENERAL_ERROR));
        assert!(
            page(&g, DATA)[..8].iter().all(|&b| b == 9),
            "page untouched"
        );
    }

    #[test]
    fn without_host_pointers_nothing_runs_and_nothing_stays_pinned() {
        let g = TestGuest::new(1 << 20);
        g.mem.set_direct(false);
        g.grant(36, 0, DATA, false);
        for persistent in [false, true] {
            let s = session(&g, persistent);
            let r = s.with_host_pages(
                &[range(36, 0, 8)],
                true,
                &mut Vec::new(),
                |_| unreachable!(),
            );
            assert_eq!(r.map_err(|e| e.status()), Ok(None));
            // The copy path still works.
            s.write(36, 0, b"copy").expect("copy");
            drop(s);
            assert_eq!(g.grant_flags(36) & (GTF_READING | GTF_WRITING), 0);
        }
        assert_eq!(&page(&g, DATA)[..4], b"copy");
    }
}
