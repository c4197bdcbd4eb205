//! The host end of a virtual disk: a raw image file or a block device,
//! accessed with positioned reads and writes from any worker thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// An open disk image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    bytes: u64,
    readonly: bool,
    block_device: bool,
    /// The kernel refused `RWF_NOWAIT` for this file once: every read
    /// goes to the I/O workers from then on.
    no_nowait: AtomicBool,
    /// A qcow2 image: data goes through its cluster mapping.
    qcow2: Option<super::qcow2::Qcow2>,
}

/// How the image file is laid out (the `disk=` spec's `format=`). The
/// format is never guessed from the content: a raw guest disk may hold
/// anything, a qcow2 header included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageFormat {
    #[default]
    Raw,
    Qcow2,
}

/// `BLKGETSIZE64` (`_IOR(0x12, 114, size_t)`).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

impl DiskImage {
    /// Opens `path` read-only or read-write.
    pub fn open(path: &Path, readonly: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!readonly).open(path)?;
        let meta = file.metadata()?;
        let block_device = meta.file_type().is_block_device();
        let bytes = if block_device {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer,
            // which points at a live local.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            size
        } else {
            meta.len()
        };
        Ok(Self {
            file,
            path: path.to_owned(),
            bytes,
            readonly,
            block_device,
            no_nowait: AtomicBool::new(false),
            qcow2: None,
        })
    }

    /// Opens `path` as `format`.
    pub fn open_as(path: &Path, readonly: bool, format: ImageFormat) -> io::Result<Self> {
        if format == ImageFormat::Raw {
            return Self::open(path, readonly);
        }
        let q = super::qcow2::Qcow2::open(path, readonly)?;
        Ok(Self {
            file: q.file().try_clone()?,
            path: path.to_owned(),
            bytes: q.size(),
            readonly,
            block_device: false,
            // Reads of a qcow2 image always go to the I/O workers: a
            // lookup may need metadata I/O.
            no_nowait: AtomicBool::new(true),
            qcow2: Some(q),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in 512-byte sectors (a partial last sector is not visible).
    pub fn sectors(&self) -> u64 {
        self.bytes / crate::blkif::SECTOR
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The raw file's descriptor for batched page-cache reads through
    /// io_uring (`RWF_NOWAIT`), where those apply: not for qcow2 images
    /// (their data goes through the cluster mapping) nor once the kernel
    /// refused `RWF_NOWAIT` for the file.
    pub(super) fn nowait_read_fd(&self) -> Option<std::os::unix::io::RawFd> {
        if self.qcow2.is_some() || self.no_nowait.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.file.as_raw_fd())
    }

    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if let Some(q) = &self.qcow2 {
            return q.read_at(buf, off);
        }
        self.file.read_exact_at(buf, off)
    }

    /// Reads `buf.len()` bytes at `off` only if the page cache holds all
    /// of them (`preadv2` with `RWF_NOWAIT`): `Ok(false)` means nothing
    /// useful was read and the caller should read again with
    /// [`Self::read_at`] on a thread that may block.
    pub fn read_cached_at(&self, buf: &mut [u8], off: u64) -> io::Result<bool> {
        if self.no_nowait.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let Ok(pos) = libc::off_t::try_from(off) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        loop {
            // SAFETY: one iovec describing `buf`, which is live and
            // exclusively borrowed for the call; the descriptor is ours.
            let r = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, pos, libc::RWF_NOWAIT) };
            if r >= 0 {
                // A short read is a partly cached range (or the end of
                // the file, which callers rule out): read it again.
                return Ok(r as usize == buf.len());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(false),
                Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                    self.no_nowait.store(true, Ordering::Relaxed);
                    return Ok(false);
                }
                _ => return Err(e),
            }
        }
    }

    pub fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        if let Some(q) = &self.qcow2 {
            return q.write_at(data, off);
        }
        self.file.write_all_at(data, off)
    }

    /// Reads the total length of `iov` at `off` straight into those host
    /// ranges (granted guest pages; `preadv`), with no bounce buffer.
    pub fn read_vectored_at(
        &self,
        iov: &[crate::grant::HostIoVec<'_>],
        off: u64,
    ) -> io::Result<()> {
        if let Some(q) = &self.qcow2 {
            return q.read_vectored_at(iov, off);
        }
        super::vectored::read_all(&self.file, iov, off)
    }

    /// [`Self::read_vectored_at`] only if the page cache holds all of it,
    /// as [`Self::read_cached_at`]: `Ok(false)` means read again on a
    /// thread that may block (the ranges may hold part of the data).
    pub fn read_vectored_cached_at(
        &self,
        iov: &[crate::grant::HostIoVec<'_>],
        off: u64,
    ) -> io::Result<bool> {
        if self.no_nowait.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match super::vectored::read_cached(&self.file, iov, off) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
                ) =>
            {
                self.no_nowait.store(true, Ordering::Relaxed);
                Ok(false)
            }
            r => r,
        }
    }

    /// Writes the total length of `iov` at `off` straight from those host
    /// ranges (`pwritev`).
    pub fn write_vectored_at(
        &self,
        iov: &[crate::grant::HostIoVec<'_>],
        off: u64,
    ) -> io::Result<()> {
        if let Some(q) = &self.qcow2 {
            return q.write_vectored_at(iov, off);
        }
        super::vectored::write_all(&self.file, iov, off)
    }

    /// Reaches stable storage: everything written before is durable when
    /// this returns.
    pub fn flush(&self) -> io::Result<()> {
        if let Some(q) = &self.qcow2 {
            return q.flush();
        }
        self.file.sync_data()
    }

    /// Deallocates a range (reads return zeros afterwards).
    pub fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        if let Some(q) = &self.qcow2 {
            return q.discard(off, len);
        }
        let (Ok(o), Ok(l)) = (i64::try_from(off), i64::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: fallocate only acts on the descriptor we own; the
        // arguments are plain integers.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                o,
                l,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cached_read_returns_the_data_of_a_just_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.img");
        let data: Vec<u8> = (0..16384u32).map(|i| (i / 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let disk = DiskImage::open(&path, true).unwrap();
        let mut buf = vec![0u8; 4096];
        // Just written, so in the page cache: served without blocking
        // (or refused as a whole on kernels without RWF_NOWAIT).
        if disk.read_cached_at(&mut buf, 8192).unwrap() {
            assert_eq!(buf, data[8192..12288]);
        } else {
            assert!(disk.no_nowait.load(Ordering::Relaxed));
        }
        // Past the end: a short read is never reported as served.
        let mut tail = vec![0u8; 8192];
        assert!(!disk.read_cached_at(&mut tail, 12288).unwrap());
    }
}
