//! Positioned vectored I/O between a file and host ranges of granted guest
//! pages (`preadv2`/`pwritev`): the data moves between the page cache (or
//! the device) and the guest's pages in one copy, with no bounce buffer.
//! Short transfers are resumed where they stopped.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

use crate::grant::HostIoVec;

/// The kernel's `UIO_MAXIOV`: iovecs per call.
const IOV_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    /// A read that only succeeds from the page cache (`RWF_NOWAIT`).
    ReadCached,
    Write,
}

/// Reads the total length of `iov` at `off` into it.
pub(super) fn read_all(file: &File, iov: &[HostIoVec<'_>], off: u64) -> io::Result<()> {
    transfer(file, iov, off, Dir::Read).map(|_| ())
}

/// As [`read_all`] but only from the page cache: `Ok(false)` when some of
/// it would have to wait for the disk (what was read is then unspecified,
/// and the caller reads again with [`read_all`] on a thread that may
/// block). `EOPNOTSUPP`/`EINVAL`/`ENOSYS` come back as errors, for the
/// caller to stop trying.
pub(super) fn read_cached(file: &File, iov: &[HostIoVec<'_>], off: u64) -> io::Result<bool> {
    transfer(file, iov, off, Dir::ReadCached)
}

/// Writes the total length of `iov` at `off` from it.
pub(super) fn write_all(file: &File, iov: &[HostIoVec<'_>], off: u64) -> io::Result<()> {
    transfer(file, iov, off, Dir::Write).map(|_| ())
}

/// `Ok(false)` only for [`Dir::ReadCached`] that would block.
fn transfer(file: &File, iov: &[HostIoVec<'_>], off: u64, dir: Dir) -> io::Result<bool> {
    let fd = file.as_raw_fd();
    let mut rest: Cow<'_, [libc::iovec]> = Cow::Borrowed(HostIoVec::as_iovecs(iov));
    let mut pos = off;
    while !rest.is_empty() {
        let n = rest.len().min(IOV_MAX);
        let want: usize = rest[..n].iter().map(|v| v.iov_len).sum();
        let at =
            libc::off_t::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `rest[..n]` are iovecs of host ranges that stay valid for
        // the call (each made by `HostIoVec`, whose lifetime covers this
        // function, or a tail of one); the descriptor is the caller's.
        let r = unsafe {
            match dir {
                Dir::Read => libc::preadv2(fd, rest.as_ptr(), n as libc::c_int, at, 0),
                Dir::ReadCached => {
                    libc::preadv2(fd, rest.as_ptr(), n as libc::c_int, at, libc::RWF_NOWAIT)
                }
                Dir::Write => libc::pwritev(fd, rest.as_ptr(), n as libc::c_int, at),
            }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) if dir == Dir::ReadCached => return Ok(false),
                _ => return Err(e),
            }
        }
        let done = r as usize;
        if done == 0 && want > 0 {
            return Err(match dir {
                Dir::Write => io::Error::from(io::ErrorKind::WriteZero),
                _ => io::Error::from(io::ErrorKind::UnexpectedEof),
            });
        }
        if done < want && dir == Dir::ReadCached {
            // Partly cached (the end of the file is ruled out by callers).
            return Ok(false);
        }
        advance(&mut rest, done);
        pos += done as u64;
    }
    Ok(true)
}

/// Drops the first `n` bytes from the iovecs.
fn advance(rest: &mut Cow<'_, [libc::iovec]>, mut n: usize) {
    let whole = rest.iter().take_while(|v| {
        let skip = v.iov_len <= n;
        if skip {
            n -= v.iov_len;
        }
        skip
    });
    let skip = whole.count();
    match rest {
        Cow::Borrowed(s) => *s = &s[skip..],
        Cow::Owned(v) => {
            v.drain(..skip);
        }
    }
    if n > 0 {
        let v = rest.to_mut();
        // A partial iovec: its tail stays inside the same host range.
        v[0].iov_base = v[0].iov_base.cast::<u8>().wrapping_add(n).cast();
        v[0].iov_len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(lens: &[usize]) -> Vec<libc::iovec> {
        lens.iter()
            .map(|&l| libc::iovec {
                iov_base: std::ptr::null_mut::<u8>().wrapping_add(0x1000).cast(),
                iov_len: l,
            })
            .collect()
    }

    #[test]
    fn advance_skips_whole_iovecs_and_trims_a_partial_one() {
        let v = iov(&[100, 200, 300]);
        let mut rest = Cow::Borrowed(&v[..]);
        advance(&mut rest, 100);
        assert_eq!(rest.len(), 2);
        assert!(matches!(rest, Cow::Borrowed(_)));
        advance(&mut rest, 50);
        assert_eq!(rest[0].iov_len, 150);
        assert_eq!(rest[0].iov_base as usize, 0x1000 + 50);
        advance(&mut rest, 150 + 300);
        assert!(rest.is_empty());
    }
}
