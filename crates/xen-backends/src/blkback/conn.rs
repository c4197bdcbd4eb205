//! One connected block ring: a ring thread that takes requests off the
//! shared ring and hands them to a small pool of I/O workers, which copy
//! through the frontend's grants, do the file I/O and post responses.
//! Nothing here runs inside the guest's `EVTCHNOP_send`: the notification
//! only rings a doorbell.
//!
//! Ordering: WRITE_BARRIER and FLUSH_DISKCACHE wait for every request taken
//! before them to complete, then run alone, and are answered only after
//! `fdatasync` returned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_emu::guest::GuestMemory;

use crate::blkif::{
    self, Abi, Body, Request, Segment, OP_DISCARD, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE,
    OP_WRITE_BARRIER, RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY, SECTOR,
};
use crate::evtchn::{EventChannels, Notify};
use crate::grant::{GrantSession, GrantTable};
use crate::sring::{BackRing, RingError};

use super::disk::DiskImage;

/// I/O worker threads per device, shared out among its rings (the
/// machines have 2 cores; more workers keep a queue-depth-32 frontend's
/// requests in flight on the file).
pub const WORKERS: usize = 4;
/// Safety-net poll of the ring without a notification.
const POLL: Duration = Duration::from_millis(100);

/// What the frontend wrote for this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    pub ring_refs: Vec<u32>,
    /// I/O workers for this ring (at least 1).
    pub workers: usize,
    pub port: u32,
    pub abi: Abi,
    pub persistent: bool,
}

/// The environment a connection lives in.
#[derive(Clone)]
pub struct RingEnv {
    pub mem: Arc<dyn GuestMemory>,
    pub grants: Arc<dyn GrantTable>,
    pub evtchn: Arc<dyn EventChannels>,
    pub backend_domid: u16,
    /// Called (from a backend thread) when the ring failed for good, so the
    /// owner can take the device to Closing.
    pub on_fatal: Notify,
}

#[derive(Default)]
struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    fn wait(&self, t: Duration) {
        let mut r = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        if !*r {
            r = self
                .cv
                .wait_timeout(r, t)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *r = false;
    }
}

struct Shared {
    workers: usize,
    disk: Arc<DiskImage>,
    discard: bool,
    grants: GrantSession,
    ring: Mutex<BackRing>,
    abi: Abi,
    port: u32,
    evtchn: Arc<dyn EventChannels>,
    doorbell: Doorbell,
    inflight: Mutex<usize>,
    idle: Condvar,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    on_fatal: Notify,
}

/// A live ring. Dropping it without [`Connection::disconnect`] leaks the
/// threads until the ring is stopped; always disconnect.
pub struct Connection {
    shared: Arc<Shared>,
    params: ConnectParams,
    thread: Option<JoinHandle<()>>,
}

impl Connection {
    /// Maps the ring, binds the event channel and starts the threads.
    pub fn connect(
        env: &RingEnv,
        disk: Arc<DiskImage>,
        discard: bool,
        params: ConnectParams,
    ) -> Result<Self, String> {
        let grants = GrantSession::new(
            env.mem.clone(),
            env.grants.clone(),
            env.backend_domid,
            params.persistent,
        );
        let pages = grants
            .map_ring(&params.ring_refs)
            .map_err(|e| format!("mapping ring: {e}"))?;
        let ring = match BackRing::new(env.mem.clone(), pages, params.abi.entry_size()) {
            Ok(r) => r,
            Err(e) => {
                grants.unmap_ring(&params.ring_refs);
                return Err(format!("ring: {e}"));
            }
        };
        let shared = Arc::new(Shared {
            workers: params.workers,
            disk,
            discard,
            grants,
            ring: Mutex::new(ring),
            abi: params.abi,
            port: params.port,
            evtchn: env.evtchn.clone(),
            doorbell: Doorbell::default(),
            inflight: Mutex::new(0),
            idle: Condvar::new(),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            on_fatal: env.on_fatal.clone(),
        });
        let bell = Arc::downgrade(&shared);
        let notify: Notify = Arc::new(move || {
            if let Some(s) = bell.upgrade() {
                s.doorbell.ring();
            }
        });
        if let Err(e) = env.evtchn.bind(params.port, notify) {
            shared.grants.unmap_ring(&params.ring_refs);
            return Err(format!("binding event channel {}: {e}", params.port));
        }
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("blkback-ring".into())
            .spawn(move || ring_loop(s))
            .map_err(|e| format!("spawning the ring thread: {e}"))?;
        // Requests queued before we connected.
        shared.doorbell.ring();
        Ok(Self {
            shared,
            params,
            thread: Some(thread),
        })
    }

    /// Why the ring stopped, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops taking requests, waits for those in flight, and gives every
    /// grant and the event channel back.
    pub fn disconnect(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.doorbell.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.evtchn.unbind(self.params.port);
        self.shared.grants.release_all();
        self.shared.grants.unmap_ring(&self.params.ring_refs);
    }
}

fn ring_loop(s: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<Request>();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..s.workers.max(1))
        .filter_map(|i| {
            let s = s.clone();
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("blkback-io{i}"))
                .spawn(move || worker(s, rx))
                .ok()
        })
        .collect();
    if workers.is_empty() {
        set_fatal(&s, "no I/O worker thread could be started".into());
    } else {
        serve(&s, &tx);
    }
    drop(tx);
    for w in workers {
        let _ = w.join();
    }
    wait_idle(&s);
}

fn set_fatal(s: &Shared, msg: String) {
    tracing::warn!("block ring stopped: {msg}");
    *s.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    (s.on_fatal)();
}

fn serve(s: &Shared, tx: &Sender<Request>) {
    while !s.stop.load(Ordering::SeqCst) {
        let batch = match take_batch(s) {
            Ok(b) => b,
            Err(e) => {
                set_fatal(s, e.to_string());
                return;
            }
        };
        if batch.is_empty() {
            s.doorbell.wait(POLL);
            continue;
        }
        for raw in batch {
            match blkif::parse_request(s.abi, &raw) {
                Err(e) => {
                    tracing::debug!("block request refused: {e}");
                    respond(s, e.id(), raw[0], RSP_ERROR);
                }
                Ok(req) if matches!(req.op, OP_WRITE_BARRIER | OP_FLUSH_DISKCACHE) => {
                    // Everything before it must be complete first.
                    wait_idle(s);
                    let status = execute(s, &req, &mut Vec::new());
                    respond(s, req.id, req.op, status);
                }
                Ok(req) => {
                    *s.inflight.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    if let Err(mpsc::SendError(req)) = tx.send(req) {
                        finish(s);
                        respond(s, req.id, req.op, RSP_ERROR);
                    }
                }
            }
        }
    }
}

/// Takes every request the ring may give now.
fn take_batch(s: &Shared) -> Result<Vec<Vec<u8>>, RingError> {
    let mut ring = s.ring.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    loop {
        let mut n = ring.pending_requests()?;
        if n == 0 {
            if !ring.final_check()? {
                return Ok(out);
            }
            n = ring.pending_requests()?;
        }
        for _ in 0..n {
            if !ring.can_consume() {
                // Responses owed fill the ring; a worker's completion
                // rings the doorbell again.
                return Ok(out);
            }
            out.push(ring.take_request()?);
        }
    }
}

fn wait_idle(s: &Shared) {
    let mut n = s.inflight.lock().unwrap_or_else(|e| e.into_inner());
    while *n > 0 {
        n = s.idle.wait(n).unwrap_or_else(|e| e.into_inner());
    }
}

fn finish(s: &Shared) {
    let mut n = s.inflight.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(1);
    if *n == 0 {
        s.idle.notify_all();
    }
}

fn worker(s: Arc<Shared>, rx: Arc<Mutex<Receiver<Request>>>) {
    // Reused across requests: zeroing a fresh megabyte per request costs
    // more than the copy itself.
    let mut buf = Vec::new();
    loop {
        let req = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(req) = req else { return };
        let status = execute(&s, &req, &mut buf);
        respond(&s, req.id, req.op, status);
        finish(&s);
        s.doorbell.ring();
    }
}

fn respond(s: &Shared, id: u64, op: u8, status: i16) {
    let mut ring = s.ring.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = blkif::encode_response(id, op, status);
    let notify = ring
        .put_response(&bytes)
        .and_then(|()| ring.push_responses());
    drop(ring);
    match notify {
        Ok(true) => s.evtchn.notify(s.port),
        Ok(false) => {}
        Err(e) => tracing::warn!("block ring: posting a response: {e}"),
    }
}

/// Runs one request with `buf` as bounce buffer; returns the blkif status.
fn execute(s: &Shared, req: &Request, buf: &mut Vec<u8>) -> i16 {
    match (&req.body, req.op) {
        (Body::Flush, _) => sync(s),
        (Body::Discard { nr_sectors, secure }, OP_DISCARD) => {
            if !s.discard || s.disk.readonly() || *secure {
                return RSP_EOPNOTSUPP;
            }
            if !in_range(s, req.sector, *nr_sectors) {
                return RSP_ERROR;
            }
            match s.disk.discard(req.sector * SECTOR, nr_sectors * SECTOR) {
                Ok(()) => RSP_OKAY,
                Err(e) => {
                    tracing::debug!("discard: {e}");
                    RSP_ERROR
                }
            }
        }
        (Body::Rw { segs }, op) => {
            let status = data_io(s, op, req.sector, segs, buf);
            if op == OP_WRITE_BARRIER && status == RSP_OKAY {
                sync(s)
            } else {
                status
            }
        }
        (
            Body::Indirect {
                op,
                nr_segments,
                pages,
            },
            _,
        ) => match indirect_segments(s, *nr_segments, pages) {
            Some(segs) => data_io(s, *op, req.sector, &segs, buf),
            None => RSP_ERROR,
        },
        _ => RSP_ERROR,
    }
}

fn sync(s: &Shared) -> i16 {
    match s.disk.flush() {
        Ok(()) => RSP_OKAY,
        Err(e) => {
            tracing::warn!("{}: fdatasync: {e}", s.disk.path().display());
            RSP_ERROR
        }
    }
}

fn in_range(s: &Shared, sector: u64, n: u64) -> bool {
    sector
        .checked_add(n)
        .is_some_and(|end| end <= s.disk.sectors())
}

/// Reads the segment descriptors of an indirect request from its pages.
fn indirect_segments(s: &Shared, nr: u16, pages: &[u32]) -> Option<Vec<Segment>> {
    let mut segs = Vec::with_capacity(usize::from(nr));
    let mut left = usize::from(nr);
    for &g in pages {
        let n = left.min(blkif::SEGS_PER_INDIRECT_PAGE);
        let mut buf = vec![0u8; n * 8];
        if let Err(e) = s.grants.read(g, 0, &mut buf) {
            tracing::debug!("indirect page: {e}");
            return None;
        }
        segs.extend(buf.chunks_exact(8).map(|b| Segment {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            first_sect: b[4],
            last_sect: b[5],
        }));
        left -= n;
    }
    Some(segs)
}

/// READ / WRITE / WRITE_BARRIER data: the segments are consecutive on
/// disk, so one positioned read or write covers them all.
fn data_io(s: &Shared, op: u8, sector: u64, segs: &[Segment], buf: &mut Vec<u8>) -> i16 {
    let mut ranges = Vec::with_capacity(segs.len());
    let mut total = 0u64;
    for seg in segs {
        let Some((off, len)) = seg.range() else {
            return RSP_ERROR;
        };
        ranges.push((seg.gref, off, len));
        total += len;
    }
    if !in_range(s, sector, total / SECTOR) {
        return RSP_ERROR;
    }
    let pos = sector * SECTOR;
    buf.resize(total as usize, 0);
    let buf = &mut buf[..];
    let write = op == OP_WRITE || op == OP_WRITE_BARRIER;
    if write {
        if s.disk.readonly() {
            return RSP_ERROR;
        }
        let mut at = 0usize;
        for &(g, off, len) in &ranges {
            if let Err(e) = s.grants.read(g, off, &mut buf[at..at + len as usize]) {
                tracing::debug!("write segment: {e}");
                return RSP_ERROR;
            }
            at += len as usize;
        }
        if let Err(e) = s.disk.write_at(buf, pos) {
            tracing::warn!("{}: write: {e}", s.disk.path().display());
            return RSP_ERROR;
        }
        RSP_OKAY
    } else if op == OP_READ {
        if let Err(e) = s.disk.read_at(buf, pos) {
            tracing::warn!("{}: read: {e}", s.disk.path().display());
            return RSP_ERROR;
        }
        let mut at = 0usize;
        for &(g, off, len) in &ranges {
            if let Err(e) = s.grants.write(g, off, &buf[at..at + len as usize]) {
                tracing::debug!("read segment: {e}");
                return RSP_ERROR;
            }
            at += len as usize;
        }
        RSP_OKAY
    } else {
        RSP_ERROR
    }
}
