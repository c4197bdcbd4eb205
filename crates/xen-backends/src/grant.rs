//! Backend access to pages a frontend granted (grant table v1).
//!
//! The grant state has one owner, `xen-emu`: its [`Domain`] implements
//! Xen's `GNTTABOP_map_grant_ref` / `unmap_grant_ref` / `copy` for the
//! backend domain, with the `GTF_reading` / `GTF_writing` protocol
//! (`_set_status_v1`), one pin count per entry and `GNTST_*` codes. This
//! module only decides *how long* a backend holds a grant:
//!
//! * ring pages are mapped for the connection ([`GrantSession::map_ring`]);
//! * data pages are copied through the grant (pinned for the copy only);
//! * persistent grants (`feature-persistent`) keep their mapping handle
//!   until [`GrantSession::release_all`] (connection teardown).
//!
//! Because every pin goes through the domain, a page held here and also by
//! the guest's own `GNTTABOP_copy` or another backend keeps its in-use
//! flags until the last holder lets go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
}

/// The grants one frontend gives one backend connection.
pub struct GrantSession {
    mem: Arc<dyn GuestMemory>,
    table: Arc<dyn GrantTable>,
    persistent: bool,
    /// Ring pages mapped for the connection: (gref, handle).
    rings: Mutex<Vec<(u32, u32)>>,
    /// Persistent grants mapped so far, by reference.
    cache: Mutex<HashMap<u32, GrantMapping>>,
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
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn memory(&self) -> &Arc<dyn GuestMemory> {
        &self.mem
    }

    /// The persistent mapping of `gref`, made on first use: writable when
    /// the entry allows it, so one mapping serves both directions.
    fn persistent_map(&self, gref: u32) -> Result<GrantMapping, GrantError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(&gref) {
            return Ok(*m);
        }
        let m = match self.table.map(gref, true) {
            Ok(m) => m,
            Err(_) => self.table.map(gref, false)?,
        };
        cache.insert(gref, m);
        Ok(m)
    }

    /// Copies `buf.len()` bytes from offset `off` of granted page `gref`.
    pub fn read(&self, gref: u32, off: u64, buf: &mut [u8]) -> Result<(), GrantError> {
        let off = in_page(off, buf.len())?;
        if self.persistent {
            let m = self.persistent_map(gref)?;
            return self.table.read(m.handle, u32::from(off), buf);
        }
        self.table.copy_from(gref, off, buf)
    }

    /// Copies `data` to offset `off` of granted page `gref`.
    pub fn write(&self, gref: u32, off: u64, data: &[u8]) -> Result<(), GrantError> {
        let off = in_page(off, data.len())?;
        if self.persistent {
            let m = self.persistent_map(gref)?;
            return self.table.write(m.handle, u32::from(off), data);
        }
        self.table.copy_to(gref, off, data)
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

    /// Releases every persistent grant (connection teardown).
    pub fn release_all(&self) {
        let cached: Vec<GrantMapping> = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, m)| m)
            .collect();
        for m in cached {
            let _ = self.table.unmap(m.handle);
        }
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
}
