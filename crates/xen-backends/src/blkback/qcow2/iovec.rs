//! The zero-copy entry points: requests described by host iovecs (granted
//! guest pages) are split at cluster boundaries; each piece of an
//! allocated cluster is one `preadv`/`pwritev` at its host offset, and
//! only pieces that need the backing file, decompression or allocation go
//! through a bounce buffer.

use std::io;

use super::l2::Mapping;
use super::{Qcow2, Run};
use crate::blkback::vectored;
use crate::grant::HostIoVec;

/// The ranges of `iov` that cover bytes `start..start + len` of their
/// concatenation.
fn slice<'a>(iov: &[HostIoVec<'a>], mut start: usize, mut len: usize) -> Vec<HostIoVec<'a>> {
    let mut out = Vec::new();
    for v in iov {
        if len == 0 {
            break;
        }
        if start >= v.len() {
            start -= v.len();
            continue;
        }
        let n = (v.len() - start).min(len);
        if let Some(s) = v.sub(start, n) {
            out.push(s);
        }
        start = 0;
        len -= n;
    }
    out
}

fn total(iov: &[HostIoVec<'_>]) -> usize {
    iov.iter().map(HostIoVec::len).sum()
}

impl Qcow2 {
    /// Reads the total length of `iov` at `off` into those ranges.
    pub fn read_vectored_at(&self, iov: &[HostIoVec<'_>], off: u64) -> io::Result<()> {
        // As `read_at`: consecutive data clusters are one `preadv`.
        let mut run = Run::default();
        let flush = |run: Option<(u64, std::ops::Range<usize>)>| match run {
            Some((host, r)) => vectored::read_all(&self.file, &slice(iov, r.start, r.len()), host),
            None => Ok(()),
        };
        self.for_each_piece(total(iov), off, |vc, at, r| {
            let map = self.lookup(vc)?;
            if let Mapping::Data(h) = map {
                return flush(run.extend(h + at, r));
            }
            flush(run.take())?;
            let parts = slice(iov, r.start, r.len());
            match map {
                Mapping::Zero => {
                    parts.iter().for_each(|p| p.fill(0));
                    Ok(())
                }
                Mapping::Unallocated if self.backing.is_none() => {
                    parts.iter().for_each(|p| p.fill(0));
                    Ok(())
                }
                _ => {
                    let mut buf = vec![0u8; r.len()];
                    self.read_mapped(map, vc, at, &mut buf)?;
                    let mut done = 0;
                    for p in &parts {
                        p.copy_from(&buf[done..done + p.len()]);
                        done += p.len();
                    }
                    Ok(())
                }
            }
        })?;
        flush(run.take())
    }

    /// Writes the total length of `iov` at `off` from those ranges.
    pub fn write_vectored_at(&self, iov: &[HostIoVec<'_>], off: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut run = Run::default();
        let flush = |run: Option<(u64, std::ops::Range<usize>)>| match run {
            Some((host, r)) => vectored::write_all(&self.file, &slice(iov, r.start, r.len()), host),
            None => Ok(()),
        };
        self.for_each_piece(total(iov), off, |vc, at, r| {
            let mut t = self.lock();
            let e = t.entry(&self.file, vc)?;
            if let Some(h) = super::in_place(e) {
                drop(t);
                return flush(run.extend(h + at, r));
            }
            let mut buf = vec![0u8; r.len()];
            let mut done = 0;
            for p in &slice(iov, r.start, r.len()) {
                p.copy_to(&mut buf[done..done + p.len()]);
                done += p.len();
            }
            self.allocating_write(&mut t, vc, at, &buf)
        })?;
        flush(run.take())
    }
}
