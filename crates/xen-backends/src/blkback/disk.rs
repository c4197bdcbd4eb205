//! The host end of a virtual disk: a raw image file or a block device,
//! accessed with positioned reads and writes from any worker thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An open disk image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    bytes: u64,
    readonly: bool,
    block_device: bool,
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

    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }

    pub fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(data, off)
    }

    /// Reaches stable storage: everything written before is durable when
    /// this returns.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocates a range (reads return zeros afterwards).
    pub fn discard(&self, off: u64, len: u64) -> io::Result<()> {
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
