//! One connected block ring: a ring thread that takes every request the
//! ring offers per wake-up and a small pool of I/O workers.
//!
//! Per batch the ring thread runs the READs the page cache can serve
//! without blocking (`RWF_NOWAIT`, straight into the granted pages)
//! itself, all of them when they add up to less than
//! [`MIN_SPLIT_BYTES`], else its share beside one helper worker per spare
//! CPU; the rest (writes, discards, reads that would wait for the disk)
//! goes to the workers as a few jobs of several requests. Whoever ran a group of requests posts their
//! responses together and notifies once. Hand-offs per request (a channel
//! message, a wake-up, a lock round) cost more than a cached 4 KiB read,
//! which is why this is batched.
//!
//! Nothing here runs inside the guest's `EVTCHNOP_send`: the notification
//! only rings a doorbell.
//!
//! Ordering: WRITE_BARRIER and FLUSH_DISKCACHE wait for every request taken
//! before them to complete, then run alone, and are answered only after
//! `fdatasync` returned.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::doorbell::Doorbell;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_emu::guest::GuestMemory;

use crate::blkif::{self, Abi, Request, OP_FLUSH_DISKCACHE, OP_WRITE_BARRIER, RSP_ERROR};
use crate::evtchn::{EventChannels, Notify};
use crate::grant::{GrantSession, GrantTable};
use crate::sring::{BackRing, RingError};

use super::disk::DiskImage;
use super::io::{self, Backing, Wait};

/// I/O worker threads per device, shared out among its rings (the
/// machines have 2 cores; more workers keep a queue-depth-32 frontend's
/// requests in flight on the file).
pub const WORKERS: usize = 4;
/// Safety-net poll of the ring without a notification.
const POLL: Duration = Duration::from_millis(100);
/// Cached reads of a batch that add up to fewer bytes than this are all
/// run on the ring thread: waking a worker (a futex wake and often an IPI,
/// 10-20 µs on the development VMs) costs more than copying them. A full
/// queue of 32 × 4 KiB stays below it; a 1 MiB read is shared out.
const MIN_SPLIT_BYTES: u64 = 256 << 10;

/// A response owed: id, operation, status.
type Rsp = (u64, u8, i16);

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

struct Shared {
    workers: usize,
    /// Workers that run a share of a batch's cached reads beside the ring
    /// thread: one per spare CPU (the ring thread uses one).
    helpers: usize,
    io: Backing,
    ring: Mutex<BackRing>,
    /// The ring thread stopped taking requests because the ring holds
    /// as many as it has response slots; the next response posted must
    /// wake it.
    stalled: AtomicBool,
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
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = params.workers.max(1);
        let shared = Arc::new(Shared {
            workers,
            helpers: workers.min(cpus.saturating_sub(1)),
            io: Backing {
                disk,
                discard,
                grants,
            },
            ring: Mutex::new(ring),
            stalled: AtomicBool::new(false),
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
            shared.io.grants.unmap_ring(&params.ring_refs);
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
        self.shared.io.grants.release_all();
        self.shared.io.grants.unmap_ring(&self.params.ring_refs);
    }
}

fn ring_loop(s: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<Vec<Request>>();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..s.workers)
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

fn serve(s: &Shared, tx: &Sender<Vec<Request>>) {
    let mut rsps: Vec<Rsp> = Vec::new();
    let mut run: Vec<Request> = Vec::new();
    let mut buf = io::Scratch::default();
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
                    rsps.push((e.id(), raw[0], RSP_ERROR));
                }
                Ok(req) if matches!(req.op, OP_WRITE_BARRIER | OP_FLUSH_DISKCACHE) => {
                    // Everything before it must be complete first.
                    dispatch(s, tx, &mut run, &mut rsps, &mut buf);
                    post(s, &mut rsps);
                    wait_idle(s);
                    let status = io::execute(&s.io, &req, &mut buf, Wait::Block);
                    rsps.push((req.id, req.op, status.unwrap_or(RSP_ERROR)));
                }
                Ok(req) => run.push(req),
            }
        }
        dispatch(s, tx, &mut run, &mut rsps, &mut buf);
        post(s, &mut rsps);
    }
}

/// Runs or hands out the requests in `run` (emptied): see the module
/// comment. Responses of requests run here are added to `rsps`.
fn dispatch(
    s: &Shared,
    tx: &Sender<Vec<Request>>,
    run: &mut Vec<Request>,
    rsps: &mut Vec<Rsp>,
    buf: &mut io::Scratch,
) {
    if run.is_empty() {
        return;
    }
    let (mut reads, other): (Vec<Request>, Vec<Request>) =
        run.drain(..).partition(|r| io::read_bytes(r).is_some());
    let bytes: u64 = reads.iter().filter_map(io::read_bytes).sum();
    // The helpers' share of the reads, from the end of the batch.
    let mut jobs: Vec<Vec<Request>> = Vec::new();
    if bytes >= MIN_SPLIT_BYTES && s.helpers > 0 {
        let keep = reads.len().div_ceil(s.helpers + 1);
        let shared_out = reads.split_off(keep);
        jobs.extend(split(shared_out, s.helpers));
    }
    jobs.extend(split(other, s.workers));
    send_jobs(s, tx, jobs, rsps);
    let mut missed = Vec::new();
    for req in reads {
        match io::execute(&s.io, &req, buf, Wait::Never) {
            Some(status) => rsps.push((req.id, req.op, status)),
            None => missed.push(vec![req]),
        }
    }
    // Reads the disk has to serve: one job each, so they wait in parallel.
    send_jobs(s, tx, missed, rsps);
}

/// Splits `reqs` into at most `parts` jobs of nearly equal size.
fn split(mut reqs: Vec<Request>, parts: usize) -> Vec<Vec<Request>> {
    let mut out = Vec::new();
    let parts = parts.max(1).min(reqs.len());
    for i in 0..parts {
        let n = reqs.len().div_ceil(parts - i);
        let rest = reqs.split_off(n);
        out.push(std::mem::replace(&mut reqs, rest));
    }
    out
}

fn send_jobs(s: &Shared, tx: &Sender<Vec<Request>>, jobs: Vec<Vec<Request>>, rsps: &mut Vec<Rsp>) {
    for job in jobs {
        let n = job.len();
        *s.inflight.lock().unwrap_or_else(|e| e.into_inner()) += n;
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            finish(s, n);
            rsps.extend(job.iter().map(|r| (r.id, r.op, RSP_ERROR)));
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
                // Responses owed fill the ring; the next response a
                // worker posts rings the doorbell again.
                s.stalled.store(true, Ordering::SeqCst);
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

fn finish(s: &Shared, done: usize) {
    let mut n = s.inflight.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(done);
    if *n == 0 {
        s.idle.notify_all();
    }
}

fn worker(s: Arc<Shared>, rx: Arc<Mutex<Receiver<Vec<Request>>>>) {
    // Reused across requests: zeroing a fresh megabyte per request costs
    // more than the copy itself.
    let mut buf = io::Scratch::default();
    let mut rsps = Vec::new();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        for req in &job {
            let status = io::execute(&s.io, req, &mut buf, Wait::Block);
            rsps.push((req.id, req.op, status.unwrap_or(RSP_ERROR)));
        }
        post(&s, &mut rsps);
        finish(&s, job.len());
    }
}

/// Posts `rsps` (emptied) on the ring with one push and at most one
/// notification, and wakes a ring thread that waits for response slots.
fn post(s: &Shared, rsps: &mut Vec<Rsp>) {
    if rsps.is_empty() {
        return;
    }
    let mut ring = s.ring.lock().unwrap_or_else(|e| e.into_inner());
    let mut result = Ok(());
    for (id, op, status) in rsps.drain(..) {
        result = result.and_then(|()| ring.put_response(&blkif::encode_response(id, op, status)));
    }
    let notify = result.and_then(|()| ring.push_responses());
    let wake = s.stalled.swap(false, Ordering::SeqCst);
    drop(ring);
    match notify {
        Ok(true) => s.evtchn.notify(s.port),
        Ok(false) => {}
        Err(e) => tracing::warn!("block ring: posting a response: {e}"),
    }
    if wake {
        s.doorbell.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blkif::{Body, OP_READ};

    fn reqs(n: u64) -> Vec<Request> {
        (0..n)
            .map(|id| Request {
                op: OP_READ,
                id,
                sector: 0,
                body: Body::Rw { segs: Vec::new() },
            })
            .collect()
    }

    #[test]
    fn split_cuts_into_near_equal_jobs_keeping_every_request_once() {
        let jobs = split(reqs(10), 4);
        let sizes: Vec<usize> = jobs.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        let ids: Vec<u64> = jobs.iter().flatten().map(|r| r.id).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert_eq!(split(reqs(2), 4).len(), 2);
        assert!(split(Vec::new(), 4).is_empty());
        assert_eq!(split(reqs(3), 0).len(), 1);
    }
}
