//! Running one block request against the image: the grant copies, the
//! positioned reads and writes, `fdatasync` for flushes and barriers, and
//! hole punching for discards. Called from the ring thread (small reads
//! the page cache can serve without blocking) and from the I/O workers.

use std::sync::Arc;

use crate::blkif::{
    self, Body, Request, Segment, OP_DISCARD, OP_READ, OP_WRITE, OP_WRITE_BARRIER, RSP_EOPNOTSUPP,
    RSP_ERROR, RSP_OKAY, SECTOR,
};
use crate::grant::GrantSession;

use super::disk::DiskImage;

/// Reads larger than this go through the bounce buffer in pieces of this
/// size, so the buffer stays in the CPU cache between the `pread` that
/// fills it and the grant copies that empty it.
const READ_CHUNK: u64 = 128 << 10;

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

/// Runs one request with `buf` as bounce buffer; returns the blkif status,
/// or `None` when `wait` is [`Wait::Never`] and the data is not cached
/// (only READs are run that way).
pub(super) fn execute(b: &Backing, req: &Request, buf: &mut Vec<u8>, wait: Wait) -> Option<i16> {
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

/// One segment's place: grant, offset in the page, length.
type Piece = (u32, u64, u64);

/// READ / WRITE / WRITE_BARRIER data: the segments are consecutive on
/// disk, so positioned reads and writes cover them in order.
fn data_io(
    b: &Backing,
    op: u8,
    sector: u64,
    segs: &[Segment],
    buf: &mut Vec<u8>,
    wait: Wait,
) -> Option<i16> {
    let mut pieces = Vec::with_capacity(segs.len());
    let mut total = 0u64;
    for seg in segs {
        let Some((off, len)) = seg.range() else {
            return Some(RSP_ERROR);
        };
        pieces.push((seg.gref, off, len));
        total += len;
    }
    if !in_range(b, sector, total / SECTOR) {
        return Some(RSP_ERROR);
    }
    let pos = sector * SECTOR;
    match op {
        OP_WRITE | OP_WRITE_BARRIER => match wait {
            Wait::Block => Some(write(b, &pieces, total, pos, buf)),
            Wait::Never => None,
        },
        OP_READ => read(b, &pieces, pos, buf, wait),
        _ => Some(RSP_ERROR),
    }
}

fn write(b: &Backing, pieces: &[Piece], total: u64, pos: u64, buf: &mut Vec<u8>) -> i16 {
    if b.disk.readonly() {
        return RSP_ERROR;
    }
    buf.resize(total as usize, 0);
    let mut at = 0usize;
    for &(g, off, len) in pieces {
        if let Err(e) = b.grants.read(g, off, &mut buf[at..at + len as usize]) {
            tracing::debug!("write segment: {e}");
            return RSP_ERROR;
        }
        at += len as usize;
    }
    if let Err(e) = b.disk.write_at(&buf[..at], pos) {
        tracing::warn!("{}: write: {e}", b.disk.path().display());
        return RSP_ERROR;
    }
    RSP_OKAY
}

/// Reads in chunks of at most [`READ_CHUNK`] (whole segments each), each
/// chunk copied out to its grants before the next is read.
fn read(b: &Backing, pieces: &[Piece], mut pos: u64, buf: &mut Vec<u8>, wait: Wait) -> Option<i16> {
    let mut rest = pieces;
    while !rest.is_empty() {
        let mut n = 0;
        let mut len = 0u64;
        while n < rest.len() && (n == 0 || len + rest[n].2 <= READ_CHUNK) {
            len += rest[n].2;
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
        for &(g, off, l) in chunk {
            if let Err(e) = b.grants.write(g, off, &data[at..at + l as usize]) {
                tracing::debug!("read segment: {e}");
                return Some(RSP_ERROR);
            }
            at += l as usize;
        }
        pos += len;
    }
    Some(RSP_OKAY)
}
