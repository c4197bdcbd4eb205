//! Running one block request against the image: reads and writes
//! straight between the file and the granted pages (`preadv`/`pwritev`
//! with one iovec per segment, while the grants are held), or through a
//! bounce buffer and grant copies where guest memory has no host
//! pointers, `fdatasync` for flushes and barriers, and
//! hole punching for discards. Called from the ring thread (reads the
//! page cache can serve without blocking) and from the I/O workers.

use std::sync::Arc;

use crate::blkif::{
    self, Body, Request, Segment, OP_DISCARD, OP_READ, OP_WRITE, OP_WRITE_BARRIER, RSP_EOPNOTSUPP,
    RSP_ERROR, RSP_OKAY, SECTOR,
};
use crate::grant::{GrantRange, GrantSession};

use super::disk::DiskImage;

/// Bounce-buffer reads larger than this go in pieces of this size, so
/// the buffer stays in the CPU cache between the `pread` that fills it
/// and the grant copies that empty it.
const READ_CHUNK: u64 = 128 << 10;

/// Per-thread storage reused from request to request, so a request
/// allocates no segment list or iovec array of its own.
#[derive(Default)]
pub(super) struct Scratch {
    /// The bounce buffer, where guest memory has no host pointers.
    bounce: Vec<u8>,
    pieces: Vec<GrantRange>,
    iov: Vec<libc::iovec>,
}

/// What a connection's requests act on.
pub(super) struct Backing {
    pub disk: Arc<DiskImage>,
    pub discard: bool,
    pub grants: GrantSession,
}

/// How a request may wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Block as long as the I/O takes (I/O workers).
    Block,
    /// Only if the page cache holds the data (the ring thread); otherwise
    /// [`execute`] returns `None` and nothing was changed.
    Never,
}

/// Data bytes a READ would move, if it is a READ (inline or indirect).
pub(super) fn read_bytes(req: &Request) -> Option<u64> {
    match &req.body {
        Body::Rw { segs } if req.op == OP_READ => Some(segs.len() as u64 * 4096),
        Body::Indirect {
            op: OP_READ,
            nr_segments,
            ..
        } => Some(u64::from(*nr_segments) * 4096),
        _ => None,
    }
}

/// The grant ranges (appended to `pieces`) and byte position of a READ
/// (inline or indirect), checked as [`execute`] checks them; `Err` holds
/// the status of a READ that is refused without touching the file.
/// Callers only pass requests [`read_bytes`] accepted.
pub(super) fn read_plan(
    b: &Backing,
    req: &Request,
    pieces: &mut Vec<GrantRange>,
) -> Result<u64, i16> {
    let indirect;
    let segs: &[Segment] = match &req.body {
        Body::Rw { segs } if req.op == OP_READ => segs,
        Body::Indirect {
            op: OP_READ,
            nr_segments,
            pages,
        } => {
            indirect = indirect_segments(b, *nr_segments, pages).ok_or(RSP_ERROR)?;
            &indirect
        }
        _ => return Err(RSP_ERROR),
    };
    let mut total = 0u64;
    for seg in segs {
        let (offset, len) = seg.range().ok_or(RSP_ERROR)?;
        pieces.push(GrantRange {
            gref: seg.gref,
            offset,
            len,
        });
        total += len;
    }
    if !in_range(b, req.sector, total / SECTOR) {
        return Err(RSP_ERROR);
    }
    Ok(req.sector * SECTOR)
}

/// The segments of a READ (inline or indirect), consecutive on disk from
/// its sector; `None` when an indirect page cannot be read. For sharing
/// one large READ out in parts (see [`read_part`]).
pub(super) fn read_segments(b: &Backing, req: &Request) -> Option<Vec<Segment>> {
    match &req.body {
        Body::Rw { segs } if req.op == OP_READ => Some(segs.to_vec()),
        Body::Indirect {
            op: OP_READ,
            nr_segments,
            pages,
        } => indirect_segments(b, *nr_segments, pages),
        _ => None,
    }
}

/// Reads one part of a READ: `segs` from `sector` on, into their granted
/// pages (held until this read returned), checked as [`execute`] checks
/// a whole request; `None` as for [`execute`].
pub(super) fn read_part(
    b: &Backing,
    sector: u64,
    segs: &[Segment],
    buf: &mut Scratch,
    wait: Wait,
) -> Option<i16> {
    data_io(b, OP_READ, sector, segs, buf, wait)
}

/// Runs one request with `buf`'s storage; returns the blkif status,
/// or `None` when `wait` is [`Wait::Never`] and the data is not cached
/// (only READs are run that way).
pub(super) fn execute(b: &Backing, req: &Request, buf: &mut Scratch, wait: Wait) -> Option<i16> {
    let status = match (&req.body, req.op) {
        (Body::Flush, _) => sync(b),
        (Body::Discard { nr_sectors, secure }, OP_DISCARD) => {
            discard(b, req.sector, *nr_sectors, *secure)
        }
        (Body::Rw { segs }, op) => {
            let status = data_io(b, op, req.sector, segs, buf, wait)?;
            if op == OP_WRITE_BARRIER && status == RSP_OKAY {
                sync(b)
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
        ) => match indirect_segments(b, *nr_segments, pages) {
            Some(segs) => data_io(b, *op, req.sector, &segs, buf, wait)?,
            None => RSP_ERROR,
        },
        _ => RSP_ERROR,
    };
    Some(status)
}

fn discard(b: &Backing, sector: u64, nr_sectors: u64, secure: bool) -> i16 {
    if !b.discard || b.disk.readonly() || secure {
        return RSP_EOPNOTSUPP;
    }
    if !in_range(b, sector, nr_sectors) {
        return RSP_ERROR;
    }
    match b.disk.discard(sector * SECTOR, nr_sectors * SECTOR) {
        Ok(()) => RSP_OKAY,
        Err(e) => {
            tracing::debug!("discard: {e}");
            RSP_ERROR
        }
    }
}

pub(super) fn sync(b: &Backing) -> i16 {
    match b.disk.flush() {
        Ok(()) => RSP_OKAY,
        Err(e) => {
            tracing::warn!("{}: fdatasync: {e}", b.disk.path().display());
            RSP_ERROR
        }
    }
}

fn in_range(b: &Backing, sector: u64, n: u64) -> bool {
    sector
        .checked_add(n)
        .is_some_and(|end| end <= b.disk.sectors())
}

/// Reads the segment descriptors of an indirect request from its pages.
fn indirect_segments(b: &Backing, nr: u16, pages: &[u32]) -> Option<Vec<Segment>> {
    let mut segs = Vec::with_capacity(usize::from(nr));
    let mut left = usize::from(nr);
    let mut raw = [0u8; 4096];
    for &g in pages {
        let n = left.min(blkif::SEGS_PER_INDIRECT_PAGE);
        let raw = &mut raw[..n * 8];
        if let Err(e) = b.grants.read(g, 0, raw) {
            tracing::debug!("indirect page: {e}");
            return None;
        }
        segs.extend(raw.chunks_exact(8).map(|d| Segment {
            gref: u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
            first_sect: d[4],
            last_sect: d[5],
        }));
        left -= n;
    }
    Some(segs)
}

/// READ / WRITE / WRITE_BARRIER data: the segments are consecutive on
/// disk, so positioned reads and writes cover them in order.
fn data_io(
    b: &Backing,
    op: u8,
    sector: u64,
    segs: &[Segment],
    buf: &mut Scratch,
    wait: Wait,
) -> Option<i16> {
    let mut pieces = std::mem::take(&mut buf.pieces);
    pieces.clear();
    let status = data_pieces(b, op, sector, segs, &mut pieces, buf, wait);
    buf.pieces = pieces;
    status
}

fn data_pieces(
    b: &Backing,
    op: u8,
    sector: u64,
    segs: &[Segment],
    pieces: &mut Vec<GrantRange>,
    buf: &mut Scratch,
    wait: Wait,
) -> Option<i16> {
    let mut total = 0u64;
    for seg in segs {
        let Some((offset, len)) = seg.range() else {
            return Some(RSP_ERROR);
        };
        pieces.push(GrantRange {
            gref: seg.gref,
            offset,
            len,
        });
        total += len;
    }
    if !in_range(b, sector, total / SECTOR) {
        return Some(RSP_ERROR);
    }
    let pos = sector * SECTOR;
    match op {
        OP_WRITE | OP_WRITE_BARRIER => match wait {
            Wait::Block => Some(write(b, pieces, total, pos, buf)),
            Wait::Never => None,
        },
        OP_READ => read(b, pieces, pos, buf, wait),
        _ => Some(RSP_ERROR),
    }
}

fn write(b: &Backing, pieces: &[GrantRange], total: u64, pos: u64, buf: &mut Scratch) -> i16 {
    if b.disk.readonly() {
        return RSP_ERROR;
    }
    // Straight from the granted pages to the file.
    let direct = b
        .grants
        .with_host_pages(pieces, false, &mut buf.iov, |iov| {
            b.disk.write_vectored_at(iov, pos)
        });
    let result = match direct {
        Ok(Some(r)) => r,
        Ok(None) => bounce_write(b, pieces, total, pos, &mut buf.bounce),
        Err(e) => {
            tracing::debug!("write segment: {e}");
            return RSP_ERROR;
        }
    };
    match result {
        Ok(()) => RSP_OKAY,
        Err(e) => {
            tracing::warn!("{}: write: {e}", b.disk.path().display());
            RSP_ERROR
        }
    }
}

/// The copy path for guest memory without host pointers.
fn bounce_write(
    b: &Backing,
    pieces: &[GrantRange],
    total: u64,
    pos: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.resize(total as usize, 0);
    let mut at = 0usize;
    for p in pieces {
        let len = p.len as usize;
        b.grants
            .read(p.gref, p.offset, &mut buf[at..at + len])
            .map_err(std::io::Error::other)?;
        at += len;
    }
    b.disk.write_at(&buf[..at], pos)
}

/// Reads straight into the granted pages (one iovec per segment).
fn read(
    b: &Backing,
    pieces: &[GrantRange],
    pos: u64,
    buf: &mut Scratch,
    wait: Wait,
) -> Option<i16> {
    let direct = b
        .grants
        .with_host_pages(pieces, true, &mut buf.iov, |iov| match wait {
            Wait::Block => b.disk.read_vectored_at(iov, pos).map(|()| true),
            Wait::Never => b.disk.read_vectored_cached_at(iov, pos),
        });
    let got = match direct {
        Ok(Some(got)) => got,
        Ok(None) => return bounce_read(b, pieces, pos, &mut buf.bounce, wait),
        Err(e) => {
            tracing::debug!("read segment: {e}");
            return Some(RSP_ERROR);
        }
    };
    match got {
        Ok(true) => Some(RSP_OKAY),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!("{}: read: {e}", b.disk.path().display());
            Some(RSP_ERROR)
        }
    }
}

/// The copy path for guest memory without host pointers: reads in chunks
/// of at most [`READ_CHUNK`] (whole segments each), each chunk copied out
/// to its grants before the next is read.
fn bounce_read(
    b: &Backing,
    pieces: &[GrantRange],
    mut pos: u64,
    buf: &mut Vec<u8>,
    wait: Wait,
) -> Option<i16> {
    let mut rest = pieces;
    while !rest.is_empty() {
        let mut n = 0;
        let mut len = 0u64;
        while n < rest.len() && (n == 0 || len + rest[n].len <= READ_CHUNK) {
            len += rest[n].len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.resize(len as usize, 0);
        let data = &mut buf[..len as usize];
        let got = match wait {
            Wait::Block => b.disk.read_at(data, pos).map(|()| true),
            Wait::Never => b.disk.read_cached_at(data, pos),
        };
        match got {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!("{}: read: {e}", b.disk.path().display());
                return Some(RSP_ERROR);
            }
        }
        let mut at = 0usize;
        for p in chunk {
            let l = p.len as usize;
            if let Err(e) = b.grants.write(p.gref, p.offset, &data[at..at + l]) {
                tracing::debug!("read segment: {e}");
                return Some(RSP_ERROR);
            }
            at += l;
        }
        pos += len;
    }
    Some(RSP_OKAY)
}
