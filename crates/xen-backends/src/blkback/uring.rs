//! The ring thread's page-cache reads of one batch, submitted together
//! through io_uring: one `io_uring_enter` for the whole batch instead of
//! one `preadv2` per request (for 4 KiB requests at queue depth 32 the
//! syscalls were most of the ring thread's cost).
//!
//! Every read is `READV` with `RWF_NOWAIT` straight into the granted
//! pages, exactly as the per-request path: a read the page cache cannot
//! serve at once completes with `EAGAIN` (or short) and goes to the I/O
//! workers, so the ring thread still never waits for the disk.
//!
//! The grants of the whole batch are held (one
//! [`GrantSession::with_host_pages`](crate::grant::GrantSession::with_host_pages)
//! call) until every submitted operation has completed: the kernel writes
//! into those pages until its completion is posted.
//!
//! Raw images only (qcow2 data goes through its cluster mapping); where
//! io_uring cannot be set up (old kernels, seccomp) the ring thread keeps
//! the per-request path.

use std::io as sio;
use std::os::unix::io::RawFd;

use io_uring::{opcode, types, IoUring};

use crate::blkif::{Request, RSP_OKAY};
use crate::grant::{GrantRange, HostIoVec};

use super::io::{self, Backing};

/// Submission queue size: requests per submission (a batch is cut into
/// pieces of this many).
const ENTRIES: u32 = 128;

/// A read of the batch: where its iovecs are and what it expects.
struct Plan {
    /// Index into the batch.
    req: usize,
    pos: u64,
    first: usize,
    n: usize,
    bytes: usize,
}

/// How a read of the batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The blkif status to answer with.
    Done(i16),
    /// Not (wholly) in the page cache: for the I/O workers.
    Again,
    /// Not run (the batch could not be mapped or submitted): for the
    /// per-request path.
    Unbatched,
}

/// One ring thread's io_uring.
pub(super) struct Reader {
    ring: IoUring,
    pieces: Vec<GrantRange>,
    iov: Vec<libc::iovec>,
    plans: Vec<Plan>,
    /// The outcomes of the last batch, one per request.
    out: Vec<Outcome>,
    /// A submission failed for good: stop using io_uring.
    broken: bool,
}

impl Reader {
    /// Sets up the ring for the calling thread, its only user.
    pub(super) fn new() -> sio::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_submit_all()
            .build(ENTRIES)
            .or_else(|_| IoUring::new(ENTRIES))?;
        Ok(Self {
            ring,
            pieces: Vec::new(),
            iov: Vec::new(),
            plans: Vec::new(),
            out: Vec::new(),
            broken: false,
        })
    }

    /// Whether batches can still go through the ring.
    pub(super) fn usable(&self) -> bool {
        !self.broken
    }

    /// Reads every request of `reads` (READs, see
    /// [`io::read_bytes`]) from the page cache of the raw image `fd` into
    /// its granted pages; returns one outcome per request, in order.
    pub(super) fn read_cached(&mut self, b: &Backing, fd: RawFd, reads: &[Request]) -> &[Outcome] {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.resize(reads.len(), Outcome::Unbatched);
        for (c, chunk) in reads.chunks(ENTRIES as usize).enumerate() {
            let base = c * ENTRIES as usize;
            self.pieces.clear();
            self.plans.clear();
            for (i, req) in chunk.iter().enumerate() {
                let first = self.pieces.len();
                match io::read_plan(b, req, &mut self.pieces) {
                    Err(status) => out[base + i] = Outcome::Done(status),
                    Ok(_) if self.pieces.len() == first => out[base + i] = Outcome::Done(RSP_OKAY),
                    Ok(pos) => {
                        let n = self.pieces.len() - first;
                        let bytes = self.pieces[first..].iter().map(|p| p.len as usize).sum();
                        self.plans.push(Plan {
                            req: base + i,
                            pos,
                            first,
                            n,
                            bytes,
                        });
                    }
                }
            }
            if self.plans.is_empty() || self.broken {
                continue;
            }
            let Self {
                ring,
                pieces,
                iov,
                plans,
                broken,
                ..
            } = self;
            let done = b.grants.with_host_pages(pieces, true, iov, |iov| {
                submit_all(ring, fd, iov, plans, &mut out, broken)
            });
            if let Err(e) = done {
                // Some request of the batch names a bad grant: let the
                // per-request path answer each on its own.
                tracing::debug!("batched read: {e}");
            }
        }
        self.out = out;
        &self.out
    }
}

/// Submits a READV per plan and waits until every submitted one has
/// completed (the grants are held only that long), recording outcomes.
fn submit_all(
    ring: &mut IoUring,
    fd: RawFd,
    iov: &[HostIoVec<'_>],
    plans: &[Plan],
    out: &mut [Outcome],
    broken: &mut bool,
) {
    let iov = HostIoVec::as_iovecs(iov);
    {
        let mut sq = ring.submission();
        for (k, p) in plans.iter().enumerate() {
            let v = &iov[p.first..p.first + p.n];
            // One piece (a 4 KiB request, say) is a plain READ: the
            // kernel need not import an iovec for it.
            let sqe = match v {
                [one] => opcode::Read::new(types::Fd(fd), one.iov_base.cast(), one.iov_len as u32)
                    .offset(p.pos)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build(),
                _ => opcode::Readv::new(types::Fd(fd), v.as_ptr(), p.n as u32)
                    .offset(p.pos)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build(),
            }
            .user_data(k as u64);
            // SAFETY: the iovecs and the host ranges they describe stay
            // valid until the operation completes: this function returns
            // only once every submitted operation's completion was reaped
            // (or none was submitted), and its caller holds the grants
            // until it returns. The queue has room: plans ≤ ENTRIES and
            // it is empty between batches.
            if unsafe { sq.push(&sqe) }.is_err() {
                break;
            }
        }
    }
    let pushed = ring.submission().len();
    let mut reaped = 0usize;
    while reaped < pushed {
        if let Err(e) = ring.submit_and_wait(pushed - reaped) {
            let transient = matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
            );
            let unsubmitted = ring.submission().len();
            if !transient && unsubmitted > 0 && reaped + unsubmitted == pushed {
                // Nothing is in flight and the kernel refuses the rest:
                // those never run. Drop this ring's use for good (the
                // entries left in its queue must never be submitted).
                tracing::warn!("block ring: io_uring submission failed: {e}");
                *broken = true;
                return;
            }
        }
        for cqe in ring.completion() {
            reaped += 1;
            let Some(p) = usize::try_from(cqe.user_data())
                .ok()
                .and_then(|k| plans.get(k))
            else {
                continue;
            };
            // A failed, short or would-block read is run again on the
            // per-request path, which reports real errors.
            out[p.req] = if usize::try_from(cqe.result()).is_ok_and(|r| r == p.bytes) {
                Outcome::Done(RSP_OKAY)
            } else {
                Outcome::Again
            };
        }
    }
}
