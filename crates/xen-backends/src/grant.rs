//! Backend access to pages a frontend granted (grant table v1), with
//! Xen's `GTF_reading`/`GTF_writing` protocol: before touching a granted
//! frame the backend checks the entry (`GTF_permit_access`, granted to the
//! backend's domain, not read-only for a write) and sets the in-use flags
//! with a compare-and-swap on the flags+domid word, exactly as Xen's
//! `_set_status_v1`; the frontend cannot revoke an entry while they are set.
//! Flags are cleared when the last user of an entry is done.
//!
//! Persistent grants (`feature-persistent`) stay pinned for the whole
//! connection and are released by [`GrantSession::release_all`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use xen_abi::grant_table::{
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_TYPE_MASK, GTF_WRITING,
};
use xen_emu::guest::{Gpa, GuestMemory};

const PAGE: u64 = 4096;

/// Where the frontend's grant entries are: implemented by the VMM (the
/// grant frames are special pages the guest placed where it liked).
pub trait GrantTable: Send + Sync {
    /// Guest-physical address of v1 entry `gref`, if its frame exists.
    fn entry_gpa(&self, gref: u32) -> Option<Gpa>;
}

/// Why a granted page could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("grant reference {0} is outside the grant table")]
    BadRef(u32),
    #[error("grant reference {0} does not grant access to this backend")]
    NotGranted(u32),
    #[error("grant reference {0} is read-only")]
    ReadOnly(u32),
    #[error("grant entry {0} keeps changing under the backend")]
    Unstable(u32),
    #[error("grant reference {0} names a frame outside guest memory")]
    BadFrame(u32),
    #[error("access past the end of granted page {0}")]
    Range(u32),
}

#[derive(Default)]
struct Pins {
    readers: u32,
    writers: u32,
}

/// The grants one frontend gives one backend connection.
pub struct GrantSession {
    mem: Arc<dyn GuestMemory>,
    table: Arc<dyn GrantTable>,
    backend_domid: u16,
    persistent: bool,
    pins: Mutex<HashMap<u32, Pins>>,
    /// Persistent grants already pinned: ref → (frame address, writable).
    cache: Mutex<HashMap<u32, (Gpa, bool)>>,
}

impl GrantSession {
    pub fn new(
        mem: Arc<dyn GuestMemory>,
        table: Arc<dyn GrantTable>,
        backend_domid: u16,
        persistent: bool,
    ) -> Self {
        Self {
            mem,
            table,
            backend_domid,
            persistent,
            pins: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn memory(&self) -> &Arc<dyn GuestMemory> {
        &self.mem
    }

    /// Pins `gref` (reading, and writing when `write`) and returns the
    /// granted frame's address.
    fn pin(&self, gref: u32, write: bool) -> Result<Gpa, GrantError> {
        let entry = self.table.entry_gpa(gref).ok_or(GrantError::BadRef(gref))?;
        let word = self
            .mem
            .atomic_u32(entry)
            .map_err(|_| GrantError::BadRef(gref))?;
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        let p = pins.entry(gref).or_default();
        let need_flag = (p.readers == 0) || (write && p.writers == 0);
        if need_flag {
            let mut cur = word.load(Ordering::Acquire);
            let mut tries = 0;
            loop {
                let flags = cur as u16;
                let domid = (cur >> 16) as u16;
                if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || domid != self.backend_domid {
                    return Err(GrantError::NotGranted(gref));
                }
                if write && flags & GTF_READONLY != 0 {
                    return Err(GrantError::ReadOnly(gref));
                }
                let mut nf = flags | GTF_READING;
                if write {
                    nf |= GTF_WRITING;
                }
                let new = (cur & 0xffff_0000) | u32::from(nf);
                match word.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => {
                        tries += 1;
                        if tries == 4 {
                            return Err(GrantError::Unstable(gref));
                        }
                        cur = now;
                    }
                }
            }
        }
        p.readers += 1;
        if write {
            p.writers += 1;
        }
        // The frame is read after the flags are set: from then on the
        // frontend may not change it (Xen reads it after the cmpxchg too).
        let frame = self
            .mem
            .atomic_u32(entry + 4)
            .map_err(|_| GrantError::BadRef(gref))?
            .load(Ordering::Acquire);
        Ok(u64::from(frame) * PAGE)
    }

    fn unpin(&self, gref: u32, write: bool) {
        let Some(entry) = self.table.entry_gpa(gref) else {
            return;
        };
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pins.get_mut(&gref) else {
            return;
        };
        p.readers = p.readers.saturating_sub(1);
        if write {
            p.writers = p.writers.saturating_sub(1);
        }
        let mut clear = 0u16;
        if write && p.writers == 0 {
            clear |= GTF_WRITING;
        }
        if p.readers == 0 {
            clear |= GTF_READING | GTF_WRITING;
            pins.remove(&gref);
        }
        if clear != 0 {
            if let Ok(f) = self.mem.atomic_u16(entry) {
                f.fetch_and(!clear, Ordering::AcqRel);
            }
        }
    }

    /// Runs `f` on the frame of `gref` pinned for `write`: pin, use, unpin;
    /// or, for a persistent session, pin once and keep it.
    fn with_frame<T>(
        &self,
        gref: u32,
        write: bool,
        f: impl FnOnce(Gpa) -> Result<T, GrantError>,
    ) -> Result<T, GrantError> {
        if self.persistent {
            let hit = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&gref)
                .copied();
            let frame = match hit {
                Some((frame, w)) if w || !write => frame,
                _ => {
                    // Pin writable if the entry allows it, so one pin
                    // serves both directions.
                    let (frame, w) = match self.pin(gref, true) {
                        Ok(fr) => (fr, true),
                        Err(GrantError::ReadOnly(_)) if !write => (self.pin(gref, false)?, false),
                        Err(e) => return Err(e),
                    };
                    let old = self
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(gref, (frame, w));
                    if let Some((_, ow)) = old {
                        self.unpin(gref, ow);
                    }
                    frame
                }
            };
            return f(frame);
        }
        let frame = self.pin(gref, write)?;
        let r = f(frame);
        self.unpin(gref, write);
        r
    }

    /// Copies `buf.len()` bytes from offset `off` of granted page `gref`.
    pub fn read(&self, gref: u32, off: u64, buf: &mut [u8]) -> Result<(), GrantError> {
        if off + buf.len() as u64 > PAGE {
            return Err(GrantError::Range(gref));
        }
        self.with_frame(gref, false, |frame| {
            self.mem
                .read(frame + off, buf)
                .map_err(|_| GrantError::BadFrame(gref))
        })
    }

    /// Copies `data` to offset `off` of granted page `gref`.
    pub fn write(&self, gref: u32, off: u64, data: &[u8]) -> Result<(), GrantError> {
        if off + data.len() as u64 > PAGE {
            return Err(GrantError::Range(gref));
        }
        self.with_frame(gref, true, |frame| {
            self.mem
                .write(frame + off, data)
                .map_err(|_| GrantError::BadFrame(gref))
        })
    }

    /// Maps ring pages for the whole connection (pinned writable, as a
    /// backend's `xenbus_map_ring_valloc`); returns their addresses.
    pub fn map_ring(&self, grefs: &[u32]) -> Result<Vec<Gpa>, GrantError> {
        let mut out = Vec::new();
        for (i, &g) in grefs.iter().enumerate() {
            match self.pin(g, true) {
                Ok(f) => out.push(f),
                Err(e) => {
                    for &done in &grefs[..i] {
                        self.unpin(done, true);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Unmaps ring pages mapped by [`Self::map_ring`].
    pub fn unmap_ring(&self, grefs: &[u32]) {
        for &g in grefs {
            self.unpin(g, true);
        }
    }

    /// Releases every persistent grant (connection teardown).
    pub fn release_all(&self) {
        let cached: Vec<(u32, bool)> = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(g, (_, w))| (g, w))
            .collect();
        for (g, w) in cached {
            self.unpin(g, w);
        }
    }
}
