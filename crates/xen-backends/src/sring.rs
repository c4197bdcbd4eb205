//! The backend end of a Xen shared ring (`io/ring.h`) that may span several
//! granted pages (`ring-page-order`): `req_prod`, `req_event`, `rsp_prod`,
//! `rsp_event` at the start of page 0, then fixed-size slots, the count
//! `__RING_SIZE` (the largest power of two that fits). The backend keeps
//! `req_cons` and `rsp_prod_pvt` privately, as Xen's `BACK_RING` does.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use xen_emu::guest::{Gpa, GuestMemory};

const PAGE: u64 = 4096;
const HEADER: u64 = 64;
const REQ_PROD: u64 = 0;
const REQ_EVENT: u64 = 4;
const RSP_PROD: u64 = 8;
const RSP_EVENT: u64 = 12;

/// Why the ring cannot be used any more (the device is disconnected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring page not accessible")]
    Memory,
    #[error("frontend's req_prod {prod:#x} is {ahead} requests ahead of req_cons {cons:#x} (ring holds {size})")]
    Overflow {
        prod: u32,
        cons: u32,
        ahead: u32,
        size: u32,
    },
}

/// `__RING_SIZE` for `pages` pages of `entry` bytes each slot.
pub fn ring_size(pages: usize, entry: u64) -> u32 {
    let n = (pages as u64 * PAGE - HEADER) / entry;
    if n == 0 {
        return 0;
    }
    1u32 << (63 - n.leading_zeros())
}

/// A back ring over guest pages.
pub struct BackRing {
    mem: Arc<dyn GuestMemory>,
    pages: Vec<Gpa>,
    entry: u64,
    size: u32,
    pub req_cons: u32,
    pub rsp_prod_pvt: u32,
}

impl BackRing {
    /// `BACK_RING_INIT` (indices from what the frontend initialised).
    pub fn new(mem: Arc<dyn GuestMemory>, pages: Vec<Gpa>, entry: u64) -> Result<Self, RingError> {
        let size = ring_size(pages.len(), entry);
        let mut r = Self {
            mem,
            pages,
            entry,
            size,
            req_cons: 0,
            rsp_prod_pvt: 0,
        };
        // A ring the frontend re-used after a reset may not start at 0;
        // like BACK_RING_ATTACH, start from the current response index.
        let rsp = r.load(RSP_PROD)?;
        r.req_cons = rsp;
        r.rsp_prod_pvt = rsp;
        Ok(r)
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    fn header(&self, off: u64) -> Result<&std::sync::atomic::AtomicU32, RingError> {
        let p = *self.pages.first().ok_or(RingError::Memory)?;
        self.mem.atomic_u32(p + off).map_err(|_| RingError::Memory)
    }

    fn load(&self, off: u64) -> Result<u32, RingError> {
        Ok(self.header(off)?.load(Ordering::Acquire))
    }

    /// Copies bytes at ring offset `off` (may cross pages).
    fn access(
        &self,
        mut off: u64,
        len: usize,
        mut f: impl FnMut(Gpa, usize, usize) -> bool,
    ) -> Result<(), RingError> {
        let mut done = 0usize;
        while done < len {
            let page = (off / PAGE) as usize;
            let in_page = off % PAGE;
            let n = ((PAGE - in_page) as usize).min(len - done);
            let base = *self.pages.get(page).ok_or(RingError::Memory)?;
            if !f(base + in_page, done, n) {
                return Err(RingError::Memory);
            }
            done += n;
            off += n as u64;
        }
        Ok(())
    }

    fn slot_off(&self, idx: u32) -> u64 {
        HEADER + u64::from(idx & (self.size - 1)) * self.entry
    }

    /// Unconsumed requests, checked: a frontend that claims more than the
    /// ring can hold beyond the responses still owed is broken
    /// (`RING_REQUEST_PROD_OVERFLOW`).
    pub fn pending_requests(&self) -> Result<u32, RingError> {
        let prod = self.load(REQ_PROD)?;
        fence(Ordering::SeqCst);
        let ahead = prod.wrapping_sub(self.req_cons);
        if prod.wrapping_sub(self.rsp_prod_pvt) > self.size {
            return Err(RingError::Overflow {
                prod,
                cons: self.req_cons,
                ahead,
                size: self.size,
            });
        }
        Ok(ahead)
    }

    /// Requests the backend may take now without overrunning the response
    /// slots it still owes (`RING_REQUEST_CONS_OVERFLOW`).
    pub fn can_consume(&self) -> bool {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt) < self.size
    }

    /// Reads the request at `req_cons` and advances it.
    pub fn take_request(&mut self) -> Result<Vec<u8>, RingError> {
        let mut buf = vec![0u8; self.entry as usize];
        let off = self.slot_off(self.req_cons);
        let mem = &self.mem;
        self.access(off, buf.len(), |gpa, at, n| {
            mem.read(gpa, &mut buf[at..at + n]).is_ok()
        })?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(buf)
    }

    /// Reads the request at `req_cons` into `buf` (one slot's bytes) and
    /// advances it; [`Self::take_request`] without the allocation, for hot
    /// paths.
    pub fn take_request_into(&mut self, buf: &mut [u8]) -> Result<(), RingError> {
        let len = buf.len().min(self.entry as usize);
        let off = self.slot_off(self.req_cons);
        let mem = &self.mem;
        self.access(off, len, |gpa, at, n| {
            mem.read(gpa, &mut buf[at..at + n]).is_ok()
        })?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(())
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: re-arms `req_event` and says
    /// whether more arrived meanwhile.
    pub fn final_check(&self) -> Result<bool, RingError> {
        if self.pending_requests()? > 0 {
            return Ok(true);
        }
        self.header(REQ_EVENT)?
            .store(self.req_cons.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        Ok(self.pending_requests()? > 0)
    }

    /// Writes a response into the next slot (not yet published).
    pub fn put_response(&mut self, bytes: &[u8]) -> Result<(), RingError> {
        let off = self.slot_off(self.rsp_prod_pvt);
        let mem = &self.mem;
        self.access(off, bytes.len(), |gpa, at, n| {
            mem.write(gpa, &bytes[at..at + n]).is_ok()
        })?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
    pub fn push_responses(&self) -> Result<bool, RingError> {
        let prod = self.header(RSP_PROD)?;
        let old = prod.load(Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        fence(Ordering::SeqCst);
        prod.store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self.load(RSP_EVENT)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }
}

/// The frontend's side, for tests and benchmarks (`FRONT_RING`).
pub struct FrontRing {
    mem: Arc<dyn GuestMemory>,
    base: Gpa,
    entry: u64,
    size: u32,
    pub req_prod_pvt: u32,
    pub rsp_cons: u32,
}

impl FrontRing {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT` on contiguous pages at `base`.
    pub fn init(mem: Arc<dyn GuestMemory>, base: Gpa, pages: usize, entry: u64) -> Self {
        let _ = mem.write(base, &[0u8; HEADER as usize]);
        if let Ok(a) = mem.atomic_u32(base + REQ_EVENT) {
            a.store(1, Ordering::Release);
        }
        if let Ok(a) = mem.atomic_u32(base + RSP_EVENT) {
            a.store(1, Ordering::Release);
        }
        Self {
            mem,
            base,
            entry,
            size: ring_size(pages, entry),
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn free_slots(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes a request into the next slot.
    pub fn put_request(&mut self, bytes: &[u8]) {
        let off = HEADER + u64::from(self.req_prod_pvt & (self.size - 1)) * self.entry;
        let _ = self.mem.write(self.base + off, bytes);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
    }

    /// Publishes requests; true when the backend wants a notification.
    pub fn push_requests(&self) -> bool {
        self.set_req_prod(self.req_prod_pvt)
    }

    /// Stores any `req_prod` (a hostile frontend uses this directly).
    pub fn set_req_prod(&self, new: u32) -> bool {
        let Ok(prod) = self.mem.atomic_u32(self.base + REQ_PROD) else {
            return false;
        };
        let old = prod.load(Ordering::Relaxed);
        fence(Ordering::SeqCst);
        prod.store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self
            .mem
            .atomic_u32(self.base + REQ_EVENT)
            .map_or(0, |a| a.load(Ordering::Acquire));
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Takes every published response: `(id, op, status)`.
    pub fn take_responses(&mut self) -> Vec<(u64, u8, i16)> {
        let mut out = Vec::new();
        loop {
            let prod = self
                .mem
                .atomic_u32(self.base + RSP_PROD)
                .map_or(self.rsp_cons, |a| a.load(Ordering::Acquire));
            while self.rsp_cons != prod {
                let off = HEADER + u64::from(self.rsp_cons & (self.size - 1)) * self.entry;
                let mut b = [0u8; 12];
                let _ = self.mem.read(self.base + off, &mut b);
                let mut id = [0u8; 8];
                id.copy_from_slice(&b[0..8]);
                out.push((
                    u64::from_le_bytes(id),
                    b[8],
                    i16::from_le_bytes([b[10], b[11]]),
                ));
                self.rsp_cons = self.rsp_cons.wrapping_add(1);
            }
            // RING_FINAL_CHECK_FOR_RESPONSES.
            if let Ok(a) = self.mem.atomic_u32(self.base + RSP_EVENT) {
                a.store(self.rsp_cons.wrapping_add(1), Ordering::Release);
            }
            fence(Ordering::SeqCst);
            let again = self
                .mem
                .atomic_u32(self.base + RSP_PROD)
                .map_or(self.rsp_cons, |a| a.load(Ordering::Acquire));
            if again == self.rsp_cons {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_match_xens_macro() {
        // One page of 64-bit blkif slots holds 32, of 32-bit slots 32.
        assert_eq!(ring_size(1, 112), 32);
        assert_eq!(ring_size(1, 108), 32);
        assert_eq!(ring_size(2, 112), 64);
        assert_eq!(ring_size(4, 112), 128);
    }
}
