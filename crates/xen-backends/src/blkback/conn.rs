//! One connected block ring: a ring thread that takes every request the
//! ring offers per wake-up and a small pool of I/O workers.
//!
//! Per batch the ring thread runs the READs the page cache can serve
//! without blocking (`RWF_NOWAIT`, straight into the granted pages)
//! itself (submitted together through io_uring, see [`super::uring`]; one
//! `preadv2` each where io_uring is unavailable or for qcow2 images), all
//! of them when they add up to less than [`MIN_SPLIT_BYTES`], else its
//! share beside one helper worker per spare CPU (a batch of one large
//! READ, as a frontend that answers each 1 MiB response at once sends, is
//! cut into two parts by segments: see [`share_read`]); the rest (writes,
//! discards, reads that would wait for the disk) goes to the workers as a
//! few jobs of several requests. Whoever ran a group of requests posts
//! their responses together and notifies once; the ring thread answers a
//! long batch in pieces of [`POST_EVERY`], so that the frontend refills
//! the ring while the rest is read. Hand-offs per request (a channel
//! message, a wake-up, a lock round) cost more than a cached 4 KiB read,
//! which is why this is batched.
//!
//! A ring thread that found the ring empty, with nothing left on the
//! workers but helpers' cached reads, watches it for [`POLL_SPIN`] before
//! it sleeps: a frontend that answers responses with new requests at once
//! is then served without the ring thread sleeping and being woken (a
//! futex round and often an IPI, more than a batch of cached 4 KiB reads
//! costs; QEMU's iothreads poll for the same reason).
//!
//! Nothing here runs inside the guest's `EVTCHNOP_send`: the notification
//! only rings a doorbell.
//!
//! Ordering: WRITE_BARRIER and FLUSH_DISKCACHE wait for every request taken
//! before them to complete, then run alone, and are answered only after
//! `fdatasync` returned.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::doorbell::Doorbell;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_emu::guest::GuestMemory;

use crate::blkif::{
    self, Abi, Request, Segment, OP_FLUSH_DISKCACHE, OP_WRITE_BARRIER, RSP_ERROR, RSP_OKAY,
};
use crate::evtchn::{EventChannels, Notify};
use crate::grant::{GrantSession, GrantTable};
use crate::sring::{BackRing, RingError};

use super::disk::DiskImage;
use super::io::{self, Backing, Wait};
use super::uring::{Outcome, Reader};

/// I/O worker threads per device, shared out among its rings (the
/// machines have 2 cores; more workers keep a queue-depth-32 frontend's
/// requests in flight on the file).
pub const WORKERS: usize = 4;
/// Safety-net poll of the ring without a notification.
const POLL: Duration = Duration::from_millis(100);
/// How long an idle ring thread watches the ring before it sleeps.
const POLL_SPIN: Duration = Duration::from_micros(30);
/// Cached reads of a batch that add up to fewer bytes than this are all
/// run on the ring thread: waking a worker (a futex wake and often an IPI,
/// 10-20 µs on the development VMs) costs more than copying them. A full
/// queue of 32 × 4 KiB stays below it; a 1 MiB read is shared out.
const MIN_SPLIT_BYTES: u64 = 256 << 10;

/// A long batch is run and answered in pieces of this many requests, so
/// the frontend can take the first responses and queue new requests while
/// the ring thread works on the rest (for 4 KiB random reads at queue
/// depth 32 this gained 5-10 points of fio-like throughput over answering
/// the whole batch at once; 8 was no better than 16; docs/backends.md).
const POST_EVERY: usize = 16;

/// A response owed: id, operation, status.
type Rsp = (u64, u8, i16);

/// What the ring thread hands to the I/O workers.
struct Job {
    work: Work,
    /// A helper's share of cached reads (see [`Shared::sharing`]).
    cached: bool,
}

enum Work {
    /// Requests run one after the other, answered together.
    Requests(Vec<Request>),
    /// One part of a shared READ.
    Part(Part),
}

impl Job {
    fn requests(reqs: Vec<Request>, cached: bool) -> Self {
        Self {
            work: Work::Requests(reqs),
            cached,
        }
    }

    fn part(part: Part, cached: bool) -> Self {
        Self {
            work: Work::Part(part),
            cached,
        }
    }

    /// What it adds to [`Shared::inflight`].
    fn len(&self) -> usize {
        match &self.work {
            Work::Requests(reqs) => reqs.len(),
            Work::Part(_) => 1,
        }
    }
}

/// A READ run in parts on different threads: answered once, by whichever
/// part ends last, with an error if any part failed.
struct SharedRead {
    id: u64,
    op: u8,
    left: AtomicUsize,
    failed: AtomicBool,
}

impl SharedRead {
    /// Records that a part ended with `status`; the response, if it was
    /// the last part.
    fn end(&self, status: i16) -> Option<Rsp> {
        if status != RSP_OKAY {
            self.failed.store(true, Ordering::Relaxed);
        }
        // AcqRel: the last part sees every other part's failure.
        if self.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let failed = self.failed.load(Ordering::Relaxed);
        Some((self.id, self.op, if failed { RSP_ERROR } else { RSP_OKAY }))
    }
}

/// Segments of a shared READ, consecutive on disk from `sector`.
struct Part {
    sector: u64,
    segs: Vec<Segment>,
    read: Arc<SharedRead>,
}

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
    /// Of those, requests and parts that helpers read from the page cache
    /// beside the ring thread (see [`poll_requests`]).
    sharing: AtomicUsize,
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
            sharing: AtomicUsize::new(0),
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
    let (tx, rx) = mpsc::channel::<Job>();
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

fn serve(s: &Shared, tx: &Sender<Job>) {
    let mut rsps: Vec<Rsp> = Vec::new();
    let mut run: Vec<Request> = Vec::new();
    let mut buf = io::Scratch::default();
    // Batched page-cache reads; the per-request path where io_uring is
    // missing or forbidden.
    let mut reader = match Reader::new() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!("block ring: no io_uring ({e}); reading per request");
            None
        }
    };
    // The slots of one batch, copied out of the ring (reused).
    let mut batch: Vec<u8> = Vec::new();
    let entry = s.abi.entry_size() as usize;
    while !s.stop.load(Ordering::SeqCst) {
        if let Err(e) = take_batch(s, &mut batch) {
            set_fatal(s, e.to_string());
            return;
        }
        if batch.is_empty() {
            if !poll_requests(s) {
                s.doorbell.wait(POLL);
            }
            continue;
        }
        for raw in batch.chunks_exact(entry) {
            match blkif::parse_request(s.abi, raw) {
                Err(e) => {
                    tracing::debug!("block request refused: {e}");
                    rsps.push((e.id(), blkif::response_op(raw), RSP_ERROR));
                }
                Ok(req) if matches!(req.op, OP_WRITE_BARRIER | OP_FLUSH_DISKCACHE) => {
                    // Everything before it must be complete first.
                    dispatch(s, tx, &mut run, &mut rsps, &mut buf, &mut reader);
                    post(s, &mut rsps);
                    wait_idle(s);
                    let status = io::execute(&s.io, &req, &mut buf, Wait::Block);
                    rsps.push((req.id, req.op, status.unwrap_or(RSP_ERROR)));
                }
                Ok(req) => {
                    run.push(req);
                    if run.len() >= POST_EVERY {
                        dispatch(s, tx, &mut run, &mut rsps, &mut buf, &mut reader);
                        post(s, &mut rsps);
                    }
                }
            }
        }
        dispatch(s, tx, &mut run, &mut rsps, &mut buf, &mut reader);
        post(s, &mut rsps);
    }
}

/// Runs or hands out the requests in `run` (emptied): see the module
/// comment. Responses of requests run here are added to `rsps`.
fn dispatch(
    s: &Shared,
    tx: &Sender<Job>,
    run: &mut Vec<Request>,
    rsps: &mut Vec<Rsp>,
    buf: &mut io::Scratch,
    reader: &mut Option<Reader>,
) {
    if run.is_empty() {
        return;
    }
    // `run` keeps the reads (allocation-free when there is nothing else,
    // the usual case on the hot path).
    let other: Vec<Request> = if run.iter().all(|r| io::read_bytes(r).is_some()) {
        Vec::new()
    } else {
        let (reads, other) = run.drain(..).partition(|r| io::read_bytes(r).is_some());
        *run = reads;
        other
    };
    let reads = run;
    let bytes: u64 = reads.iter().filter_map(io::read_bytes).sum();
    // The helpers' share of the reads, from the end of the batch; a lone
    // large READ is shared out by segments instead.
    let mut jobs: Vec<Vec<Request>> = Vec::new();
    let mut one_large = None;
    if bytes >= MIN_SPLIT_BYTES && s.helpers > 0 {
        if let [req] = reads.as_slice() {
            one_large = io::read_segments(&s.io, req)
                .filter(|segs| segs.len() >= 2)
                .and_then(|segs| Some((reads.pop()?, segs)));
        } else {
            let keep = reads.len().div_ceil(s.helpers + 1);
            let shared_out = reads.split_off(keep);
            jobs.extend(split(shared_out, s.helpers));
        }
    }
    let shares = jobs.into_iter().map(|job| Job::requests(job, true));
    let other = split(other, s.workers).into_iter();
    send_jobs(
        s,
        tx,
        shares.chain(other.map(|job| Job::requests(job, false))),
        rsps,
    );
    if let Some((req, segs)) = one_large {
        share_read(s, tx, &req, segs, rsps, buf);
    }
    let mut missed = Vec::new();
    let batched: &[Outcome] = match (
        reader.as_mut().filter(|r| r.usable()),
        s.io.disk.nowait_read_fd(),
    ) {
        (Some(r), Some(fd)) if !reads.is_empty() => r.read_cached(&s.io, fd, reads),
        _ => &[],
    };
    let mut outcomes = batched.iter().copied();
    for req in reads.drain(..) {
        match outcomes.next().unwrap_or(Outcome::Unbatched) {
            Outcome::Done(status) => rsps.push((req.id, req.op, status)),
            Outcome::Again => missed.push(vec![req]),
            Outcome::Unbatched => match io::execute(&s.io, &req, buf, Wait::Never) {
                Some(status) => rsps.push((req.id, req.op, status)),
                None => missed.push(vec![req]),
            },
        }
    }
    // Reads the disk has to serve: one job each, so they wait in parallel.
    let missed = missed.into_iter().map(|job| Job::requests(job, false));
    send_jobs(s, tx, missed, rsps);
}

/// Runs the READ `req` (whose segments are `segs`, at least 2) in two
/// parts: the tail on a helper worker, the head here, from the page
/// cache only (a head that would wait for the disk goes to the workers
/// as a part of its own). One 1 MiB copy then uses both cores, as a batch
/// of several does. Each part holds its own grants for as long as its
/// read runs; the response waits for both.
fn share_read(
    s: &Shared,
    tx: &Sender<Job>,
    req: &Request,
    mut segs: Vec<Segment>,
    rsps: &mut Vec<Rsp>,
    buf: &mut io::Scratch,
) {
    let read = Arc::new(SharedRead {
        id: req.id,
        op: req.op,
        left: AtomicUsize::new(2),
        failed: AtomicBool::new(false),
    });
    let tail = segs.split_off(segs.len() / 2);
    // A bad segment fails its part (and so the request); the tail's
    // position only has to be right when the head is valid.
    let head_sectors: u64 = segs
        .iter()
        .map(|seg| seg.range().map_or(0, |(_, len)| len) / blkif::SECTOR)
        .sum();
    let helper = Part {
        sector: req.sector + head_sectors,
        segs: tail,
        read: read.clone(),
    };
    send_jobs(s, tx, [Job::part(helper, true)], rsps);
    match io::read_part(&s.io, req.sector, &segs, buf, Wait::Never) {
        Some(status) => rsps.extend(read.end(status)),
        None => {
            let head = Part {
                sector: req.sector,
                segs,
                read,
            };
            send_jobs(s, tx, [Job::part(head, false)], rsps);
        }
    }
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

fn send_jobs(
    s: &Shared,
    tx: &Sender<Job>,
    jobs: impl IntoIterator<Item = Job>,
    rsps: &mut Vec<Rsp>,
) {
    for job in jobs {
        let n = job.len();
        // Counted before `inflight` and uncounted after it (`finish`): a
        // racing `poll_requests` may see a helper's share as other work
        // (it then sleeps once), never the reverse.
        if job.cached {
            s.sharing.fetch_add(n, Ordering::SeqCst);
        }
        *s.inflight.lock().unwrap_or_else(|e| e.into_inner()) += n;
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            finish(s, &job);
            match job.work {
                Work::Requests(reqs) => rsps.extend(reqs.iter().map(|r| (r.id, r.op, RSP_ERROR))),
                Work::Part(part) => rsps.extend(part.read.end(RSP_ERROR)),
            }
        }
    }
}

/// Watches the ring for up to [`POLL_SPIN`] for requests the ring thread
/// may take (see the module comment), unless workers have requests in
/// flight that are not helpers' cached reads; whether some came.
fn poll_requests(s: &Shared) -> bool {
    // While workers run requests, their responses bring the next ones,
    // and on two cores a spinning ring thread would take their CPU.
    // Helpers copying cached reads run on the spare CPUs and are done
    // within tens of µs: the ring thread then still catches the request
    // the frontend answers their response with instead of sleeping and
    // being woken (1 MiB reads, frontend polling: +50 %, docs/backends.md).
    let sharing = s.sharing.load(Ordering::SeqCst);
    if *s.inflight.lock().unwrap_or_else(|e| e.into_inner()) > sharing {
        return false;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < POLL_SPIN && !s.stop.load(Ordering::Relaxed) {
        let ring = s.ring.lock().unwrap_or_else(|e| e.into_inner());
        // Only requests we may take now count: while responses owed fill
        // the ring, the worker that posts one rings the doorbell.
        match ring.pending_requests() {
            Ok(0) => {}
            Ok(_) => return ring.can_consume(),
            Err(_) => return true,
        }
        drop(ring);
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
    false
}

/// Copies every request the ring may give now into `out` (cleared
/// first), one slot after the other.
fn take_batch(s: &Shared, out: &mut Vec<u8>) -> Result<(), RingError> {
    let mut ring = s.ring.lock().unwrap_or_else(|e| e.into_inner());
    let entry = s.abi.entry_size() as usize;
    out.clear();
    loop {
        let mut n = ring.pending_requests()?;
        if n == 0 {
            if !ring.final_check()? {
                return Ok(());
            }
            n = ring.pending_requests()?;
        }
        for _ in 0..n {
            if !ring.can_consume() {
                // Responses owed fill the ring; the next response a
                // worker posts rings the doorbell again.
                s.stalled.store(true, Ordering::SeqCst);
                return Ok(());
            }
            let at = out.len();
            out.resize(at + entry, 0);
            ring.take_request_into(&mut out[at..])?;
        }
    }
}

fn wait_idle(s: &Shared) {
    let mut n = s.inflight.lock().unwrap_or_else(|e| e.into_inner());
    while *n > 0 {
        n = s.idle.wait(n).unwrap_or_else(|e| e.into_inner());
    }
}

/// Takes `job` off the requests in flight.
fn finish(s: &Shared, job: &Job) {
    let done = job.len();
    let mut n = s.inflight.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(done);
    if *n == 0 {
        s.idle.notify_all();
    }
    drop(n);
    if job.cached {
        s.sharing.fetch_sub(done, Ordering::SeqCst);
    }
}

fn worker(s: Arc<Shared>, rx: Arc<Mutex<Receiver<Job>>>) {
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
        match &job.work {
            Work::Requests(reqs) => {
                for req in reqs {
                    let status = io::execute(&s.io, req, &mut buf, Wait::Block);
                    rsps.push((req.id, req.op, status.unwrap_or(RSP_ERROR)));
                }
            }
            Work::Part(p) => {
                let status = io::read_part(&s.io, p.sector, &p.segs, &mut buf, Wait::Block);
                rsps.extend(p.read.end(status.unwrap_or(RSP_ERROR)));
            }
        }
        post(&s, &mut rsps);
        finish(&s, &job);
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
                body: Body::Rw {
                    segs: crate::blkif::Segments::new(&[]),
                },
            })
            .collect()
    }

    /// A batch of cached reads (the io_uring path where available),
    /// optionally with a bad grant and an out-of-range request among them:
    /// every good read lands in its own pages, the bad ones fail alone,
    /// each under its id.
    #[allow(clippy::unwrap_used)]
    fn batch_of_reads_each_answered_under_its_id(persistent: bool, with_bad: bool) {
        use crate::blkif::{encode, Segment, RSP_OKAY};
        use crate::testing::BlkHarness;
        use xen_emu::guest::GuestMemory;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.img");
        // Sector `i` holds bytes `i as u8`; the file is fresh in the page cache.
        let sectors = 512u64;
        let data: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let spec = crate::blkback::BlockSpec {
            path: path.clone(),
            vdev: "xvda".into(),
            readonly: false,
            cdrom: false,
            discard: false,
            format: Default::default(),
        };
        let abi = Abi::X86_64;
        let mut h = BlkHarness::connect(spec, abi, 1, persistent, 16 << 20).unwrap();
        let seg = |gref, first_sect, last_sect| Segment {
            gref,
            first_sect,
            last_sect,
        };
        let mut pages = Vec::new();
        for id in 0..24u64 {
            let (g, p) = h.data_page(false);
            // Two segments: sectors 1..=7 of one page, then the next page's 0..=3.
            let (g2, p2) = h.data_page(false);
            let sector = (id * 37) % (sectors - 11);
            let req = match id {
                5 if with_bad => encode::rw(abi, OP_READ, id, sector, &[seg(9999, 0, 7)]),
                9 if with_bad => encode::rw(abi, OP_READ, id, sectors - 2, &[seg(g, 1, 7)]),
                _ => encode::rw(abi, OP_READ, id, sector, &[seg(g, 1, 7), seg(g2, 0, 3)]),
            };
            h.ring.put_request(&req);
            pages.push((sector, p, p2));
        }
        if h.ring.push_requests() {
            h.guest.evtchn.kick(h.port);
        }
        let mut rsps = h.wait_responses(24, Duration::from_secs(10));
        rsps.sort_unstable();
        assert_eq!(rsps.len(), 24, "{rsps:?}");
        for (id, op, status) in rsps {
            assert_eq!(op, OP_READ);
            let want = if with_bad && matches!(id, 5 | 9) {
                RSP_ERROR
            } else {
                RSP_OKAY
            };
            assert_eq!(status, want, "request {id}");
            if want != RSP_OKAY {
                continue;
            }
            let (sector, p, p2) = pages[id as usize];
            let mut got = vec![0u8; 8192];
            h.guest.mem.read(p * 4096, &mut got).unwrap();
            for (k, chunk) in got[512..4096 + 2048].chunks(512).enumerate() {
                let s = (sector + k as u64) as u8;
                assert!(chunk.iter().all(|&b| b == s), "request {id} sector {k}");
            }
            assert!(got[..512].iter().all(|&b| b == 0), "first_sect respected");
            assert!(
                got[4096 + 2048..].iter().all(|&b| b == 0),
                "last_sect respected"
            );
            assert_eq!(p2, p + 1);
        }
    }

    #[test]
    fn batch_of_reads_each_answered_under_its_id_persistent() {
        batch_of_reads_each_answered_under_its_id(true, false);
        batch_of_reads_each_answered_under_its_id(true, true);
    }

    #[test]
    fn batch_of_reads_each_answered_under_its_id_mapped() {
        batch_of_reads_each_answered_under_its_id(false, false);
        batch_of_reads_each_answered_under_its_id(false, true);
    }

    #[test]
    fn a_shared_read_is_answered_once_by_its_last_part_with_any_failure() {
        let read = |left| SharedRead {
            id: 7,
            op: OP_READ,
            left: AtomicUsize::new(left),
            failed: AtomicBool::new(false),
        };
        let ok = read(2);
        assert_eq!(ok.end(RSP_OKAY), None);
        assert_eq!(ok.end(RSP_OKAY), Some((7, OP_READ, RSP_OKAY)));
        for first in [RSP_ERROR, RSP_OKAY] {
            let bad = read(2);
            let second = if first == RSP_OKAY {
                RSP_ERROR
            } else {
                RSP_OKAY
            };
            assert_eq!(bad.end(first), None);
            assert_eq!(bad.end(second), Some((7, OP_READ, RSP_ERROR)));
        }
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
