//! The guest ring front end: one domain's `struct xenstore_domain_interface`
//! (a 1 KiB request ring, a 1 KiB response ring, their indices, and the
//! `server_features` / `connection` / `error` words) in a page of guest
//! memory, plus an event channel in each direction.
//!
//! The VMM supplies the page through [`RingMemory`] and the event channel
//! through a notify callback, and calls [`RingFrontend::process`] when the
//! guest signals. Watch events fired by other clients reach the ring
//! without VMM involvement: the engine calls `process()` itself (outside
//! its lock) from whichever thread caused them.

use crate::engine::{ConnId, Engine, ProtocolError, Waker};
use crate::wire::{HEADER_LEN, PAYLOAD_MAX};
use crate::DomId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// `XENSTORE_RING_SIZE`.
pub const RING_SIZE: u32 = 1024;
/// Offsets of the fields in `struct xenstore_domain_interface`.
pub mod offset {
    /// `char req[1024]`.
    pub const REQ: usize = 0;
    /// `char rsp[1024]`.
    pub const RSP: usize = 1024;
    /// `req_cons` (ours).
    pub const REQ_CONS: usize = 2048;
    /// `req_prod` (the guest's).
    pub const REQ_PROD: usize = 2052;
    /// `rsp_cons` (the guest's).
    pub const RSP_CONS: usize = 2056;
    /// `rsp_prod` (ours).
    pub const RSP_PROD: usize = 2060;
    /// `server_features`.
    pub const SERVER_FEATURES: usize = 2064;
    /// `connection`.
    pub const CONNECTION: usize = 2068;
    /// `error`.
    pub const ERROR: usize = 2072;
}
/// `XENSTORE_CONNECTED`.
pub const CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`.
pub const RECONNECT: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX`.
pub const ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`.
pub const ERROR_PROTO: u32 = 3;

/// Output buffered for a privileged ring (dom0 has no `outstanding`
/// quota) is still bounded.
const OUTPUT_MAX_PRIVILEGED: usize = 64 * (HEADER_LEN + PAYLOAD_MAX);

/// Access to the shared page. Offsets are from the page start and always
/// lie inside the 4 KiB `xenstore_domain_interface` page.
pub trait RingMemory: Send + Sync {
    /// Copies `buf.len()` bytes at `offset` out of the page.
    fn read(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` into the page at `offset`.
    fn write(&self, offset: usize, data: &[u8]);
    /// Loads an index with acquire ordering (data the guest wrote before
    /// publishing it is visible afterwards).
    fn load_u32(&self, offset: usize) -> u32;
    /// Stores an index with release ordering (data we wrote before is
    /// visible to the guest once it sees the index).
    fn store_u32(&self, offset: usize, value: u32);
}

struct RingState {
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    failed: bool,
}

/// Serves one domain's XenStore ring.
pub struct RingFrontend {
    engine: Engine,
    domid: DomId,
    conn: ConnId,
    mem: Arc<dyn RingMemory>,
    notify: Arc<dyn Fn() + Send + Sync>,
    state: Mutex<RingState>,
    again: AtomicBool,
}

impl RingFrontend {
    /// Connects domain `domid`'s ring to the engine and advertises the
    /// server features (`Engine::domain_features`). `notify` signals the
    /// guest's XenStore event channel.
    pub fn new(
        engine: Engine,
        domid: DomId,
        mem: Arc<dyn RingMemory>,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Arc<RingFrontend> {
        mem.store_u32(offset::SERVER_FEATURES, engine.domain_features(domid));
        Arc::new_cyclic(|weak: &Weak<RingFrontend>| {
            let weak = weak.clone();
            let waker: Waker = Arc::new(move || {
                if let Some(f) = weak.upgrade() {
                    f.process();
                }
            });
            let conn = engine.connect(domid, Some(waker));
            RingFrontend {
                engine,
                domid,
                conn,
                mem,
                notify,
                state: Mutex::new(RingState {
                    input: Vec::new(),
                    output: Vec::new(),
                    out_pos: 0,
                    failed: false,
                }),
                again: AtomicBool::new(false),
            }
        })
    }

    /// The domain served.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Consumes requests, queues replies and events into the response
    /// ring, notifies the guest if anything moved. Returns whether it did
    /// anything. Safe to call from any thread at any time; concurrent
    /// calls coalesce.
    pub fn process(&self) -> bool {
        let mut did = false;
        loop {
            let Ok(mut st) = self.state.try_lock() else {
                self.again.store(true, Ordering::SeqCst);
                return did;
            };
            self.again.store(false, Ordering::SeqCst);
            let mut notify = false;
            for _ in 0..64 {
                let progress = self.step(&mut st, &mut notify);
                did |= progress;
                if !progress {
                    break;
                }
            }
            drop(st);
            if notify {
                (self.notify)();
            }
            if !self.again.load(Ordering::SeqCst) {
                return did;
            }
        }
    }

    fn fail(&self, st: &mut RingState, code: u32, notify: &mut bool) {
        tracing::warn!(
            domid = self.domid,
            code,
            "xenstore ring: guest broke the protocol; ignoring it until it reconnects"
        );
        self.mem.store_u32(offset::ERROR, code);
        st.failed = true;
        *notify = true;
    }

    /// One round: reconnect handling, requests in, replies out.
    fn step(&self, st: &mut RingState, notify: &mut bool) -> bool {
        if self.mem.load_u32(offset::CONNECTION) == RECONNECT {
            self.engine.reset_connection(self.conn);
            st.input.clear();
            st.output.clear();
            st.out_pos = 0;
            st.failed = false;
            for o in [
                offset::REQ_CONS,
                offset::REQ_PROD,
                offset::RSP_CONS,
                offset::RSP_PROD,
                offset::ERROR,
            ] {
                self.mem.store_u32(o, 0);
            }
            self.mem.store_u32(offset::CONNECTION, CONNECTED);
            *notify = true;
            return true;
        }
        if st.failed || self.engine.is_closed(self.conn) {
            return false;
        }
        let mut progress = false;
        // A guest that never reads its replies cannot make us buffer
        // without bound: past the `outstanding` quota we stop taking
        // requests (they stay on its ring).
        let limit = self
            .engine
            .output_limit(self.domid)
            .min(OUTPUT_MAX_PRIVILEGED);
        let throttled = st.output.len() - st.out_pos >= limit;
        match if throttled {
            Ok(0)
        } else {
            self.read_requests(st)
        } {
            Ok(n) if n > 0 => {
                progress = true;
                *notify = true;
            }
            Ok(_) => {}
            Err(code) => {
                self.fail(st, code, notify);
                return true;
            }
        }
        if st.out_pos == st.output.len() {
            st.output.clear();
            st.out_pos = 0;
        }
        let budget = limit.saturating_sub(st.output.len() - st.out_pos);
        match self
            .engine
            .exchange(self.conn, &st.input, &mut st.output, budget)
        {
            Ok(used) => {
                if used > 0 {
                    progress = true;
                }
                st.input.drain(..used);
            }
            Err(ProtocolError::TooLong(_)) => {
                self.fail(st, ERROR_PROTO, notify);
                return true;
            }
            Err(ProtocolError::Closed) => return progress,
        }
        match self.write_responses(st) {
            Ok(n) if n > 0 => {
                progress = true;
                *notify = true;
            }
            Ok(_) => {}
            Err(code) => {
                self.fail(st, code, notify);
                return true;
            }
        }
        progress
    }

    /// Copies request bytes off the ring (no more than one maximal
    /// message beyond what is already buffered).
    fn read_requests(&self, st: &mut RingState) -> Result<usize, u32> {
        let cons = self.mem.load_u32(offset::REQ_CONS);
        let prod = self.mem.load_u32(offset::REQ_PROD);
        let avail = prod.wrapping_sub(cons);
        if avail > RING_SIZE {
            return Err(ERROR_RINGIDX);
        }
        let room = (HEADER_LEN + PAYLOAD_MAX).saturating_sub(st.input.len());
        let n = (avail as usize).min(room);
        if n == 0 {
            return Ok(0);
        }
        let start = (cons % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - start);
        let old = st.input.len();
        st.input.resize(old + n, 0);
        self.mem
            .read(offset::REQ + start, &mut st.input[old..old + first]);
        if first < n {
            self.mem.read(offset::REQ, &mut st.input[old + first..]);
        }
        self.mem
            .store_u32(offset::REQ_CONS, cons.wrapping_add(n as u32));
        Ok(n)
    }

    /// Copies as much pending output as fits into the response ring.
    fn write_responses(&self, st: &mut RingState) -> Result<usize, u32> {
        let pending = st.output.len() - st.out_pos;
        if pending == 0 {
            return Ok(0);
        }
        let cons = self.mem.load_u32(offset::RSP_CONS);
        let prod = self.mem.load_u32(offset::RSP_PROD);
        let used = prod.wrapping_sub(cons);
        if used > RING_SIZE {
            return Err(ERROR_RINGIDX);
        }
        let n = pending.min((RING_SIZE - used) as usize);
        if n == 0 {
            return Ok(0);
        }
        let start = (prod % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - start);
        let src = &st.output[st.out_pos..st.out_pos + n];
        self.mem.write(offset::RSP + start, &src[..first]);
        if first < n {
            self.mem.write(offset::RSP, &src[first..]);
        }
        self.mem
            .store_u32(offset::RSP_PROD, prod.wrapping_add(n as u32));
        st.out_pos += n;
        Ok(n)
    }
}

impl Drop for RingFrontend {
    fn drop(&mut self) {
        self.engine.disconnect(self.conn);
    }
}

/// A [`RingMemory`] backed by an ordinary 4 KiB buffer: for tests, fuzzing
/// and guests simulated in-process.
pub struct PageMemory {
    page: Mutex<Box<[u8; 4096]>>,
}

impl Default for PageMemory {
    fn default() -> Self {
        PageMemory {
            page: Mutex::new(Box::new([0; 4096])),
        }
    }
}

impl PageMemory {
    fn page(&self) -> std::sync::MutexGuard<'_, Box<[u8; 4096]>> {
        self.page.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RingMemory for PageMemory {
    fn read(&self, offset: usize, buf: &mut [u8]) {
        let p = self.page();
        if let Some(src) = p.get(offset..offset + buf.len()) {
            buf.copy_from_slice(src);
        }
    }
    fn write(&self, offset: usize, data: &[u8]) {
        let mut p = self.page();
        if let Some(dst) = p.get_mut(offset..offset + data.len()) {
            dst.copy_from_slice(data);
        }
    }
    fn load_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.write(offset, &value.to_le_bytes());
    }
}

/// The guest's side of the ring protocol over a [`RingMemory`] (what a
/// guest's xenbus driver does): for tests and fuzzing.
pub struct GuestSide<'a> {
    /// The shared page.
    pub mem: &'a dyn RingMemory,
}

impl GuestSide<'_> {
    /// Puts as many of `bytes` on the request ring as fit; returns how
    /// many.
    pub fn send(&self, bytes: &[u8]) -> usize {
        let cons = self.mem.load_u32(offset::REQ_CONS);
        let prod = self.mem.load_u32(offset::REQ_PROD);
        let space = RING_SIZE.saturating_sub(prod.wrapping_sub(cons)) as usize;
        let n = bytes.len().min(space);
        for (i, b) in bytes[..n].iter().enumerate() {
            let at = (prod.wrapping_add(i as u32) % RING_SIZE) as usize;
            self.mem.write(offset::REQ + at, &[*b]);
        }
        self.mem
            .store_u32(offset::REQ_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Takes everything on the response ring.
    pub fn receive(&self) -> Vec<u8> {
        let cons = self.mem.load_u32(offset::RSP_CONS);
        let prod = self.mem.load_u32(offset::RSP_PROD);
        let n = prod.wrapping_sub(cons).min(RING_SIZE);
        let mut out = vec![0u8; n as usize];
        for (i, b) in out.iter_mut().enumerate() {
            let at = (cons.wrapping_add(i as u32) % RING_SIZE) as usize;
            let mut one = [0u8];
            self.mem.read(offset::RSP + at, &mut one);
            *b = one[0];
        }
        self.mem.store_u32(offset::RSP_CONS, cons.wrapping_add(n));
        out
    }
}
