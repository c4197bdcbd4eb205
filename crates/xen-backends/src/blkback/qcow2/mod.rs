//! qcow2 images (versions 2 and 3, as `qemu-img create -f qcow2` makes
//! them; QEMU's `docs/interop/qcow2.txt`).
//!
//! Many I/O workers call [`Qcow2::read_at`] and [`Qcow2::write_at`] at
//! once. One lock guards the metadata (`l2::Tables`): a request takes it
//! to look a cluster up and drops it for the data I/O when the cluster is
//! already allocated and writable in place. A write that must allocate
//! (or copy a partly written cluster from the backing file or zeros) runs
//! entirely under the lock, so two writers into halves of the same new
//! cluster cannot undo each other's copy-on-write.
//!
//! Refused: encryption, external data files, extended L2 entries, zstd
//! compression, unknown incompatible features; for writing also dirty
//! (lazy refcounts) or corrupt images and internal snapshots. A write into
//! a compressed cluster inflates it into a new cluster. Discard on
//! version 3 marks whole clusters zero and punches the host range; on
//! version 2 it is accepted and does nothing. Not done: QEMU's overlap
//! checks against L2 tables and refcount blocks (we refuse data clusters
//! past the end of the image or on the header, L1 or refcount table) and
//! QEMU's image locking against a second process using the image.

mod backing;
pub mod header;
mod iovec;
mod l2;
mod refcount;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use backing::Backing;
pub use header::Qcow2Error;
use header::{Header, OFF_AUTOCLEAR};
use l2::{Mapping, Tables, COMPRESSED, COPIED, ZERO};

/// Host offset bits of L1, L2 and refcount table entries.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// Size of a file or block device (`metadata().len()` is 0 for a block
/// device; the end position is right for both).
fn file_size(file: &File) -> io::Result<u64> {
    use std::io::Seek;
    // All other I/O is positioned, so moving the file position is harmless.
    let mut f = file;
    f.seek(io::SeekFrom::End(0))
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("qcow2 image is corrupt: {what}"),
    )
}

/// An open qcow2 image.
pub struct Qcow2 {
    file: File,
    path: PathBuf,
    version: u32,
    cluster_bits: u32,
    size: u64,
    readonly: bool,
    backing: Option<Backing>,
    tables: Mutex<Tables>,
    /// The last inflated compressed cluster, by host offset: guests read
    /// a cluster in several requests, and a compressed stream's place is
    /// never rewritten while the image is open (clusters are not reused).
    inflated: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
}

impl std::fmt::Debug for Qcow2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("cluster_bits", &self.cluster_bits)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Qcow2 {
    /// Opens `path`; its backing chain is opened read-only.
    pub fn open(path: &Path, readonly: bool) -> Result<Self, Qcow2Error> {
        Self::open_chain(path, readonly, 0)
    }

    fn open_chain(path: &Path, readonly: bool, depth: u32) -> Result<Self, Qcow2Error> {
        let file = OpenOptions::new().read(true).write(!readonly).open(path)?;
        let h = Header::read(&file, !readonly)?;
        if readonly && h.incompatible & header::INCOMPAT_DIRTY != 0 {
            // Mappings are right in a dirty image; only refcounts lag.
            tracing::warn!("{}: qcow2 dirty bit set; reading only", path.display());
        }
        let backing = match &h.backing_file {
            Some(name) => Some(Backing::open(
                path,
                name,
                h.backing_format.as_deref(),
                depth,
            )?),
            None => None,
        };
        if !readonly && h.version >= 3 && h.autoclear != 0 {
            // Autoclear features (e.g. persistent bitmaps) we do not keep
            // up to date must be marked stale before we change the image.
            file.write_all_at(&0u64.to_be_bytes(), OFF_AUTOCLEAR)?;
            file.sync_data()?;
        }
        let tables = Tables::load(&file, &h)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            version: h.version,
            cluster_bits: h.cluster_bits,
            size: h.size,
            readonly,
            backing,
            tables: Mutex::new(tables),
            inflated: Mutex::new(None),
        })
    }

    /// Virtual disk size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The host file (for `fstat` and the like; data goes through us).
    pub fn file(&self) -> &File {
        &self.file
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves the tables as consistent
        // as any failed I/O would; keep serving.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_range(&self, len: usize, off: u64) -> io::Result<()> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "qcow2: access past the end of the virtual disk",
            )),
        }
    }

    /// Calls `f(vcluster, offset in cluster, piece)` for each cluster-sized
    /// piece of `[off, off + len)`.
    fn for_each_piece(
        &self,
        len: usize,
        off: u64,
        mut f: impl FnMut(u64, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.check_range(len, off)?;
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < len {
            let pos = off + done as u64;
            let in_cluster = pos & (cs - 1);
            let n = ((cs - in_cluster) as usize).min(len - done);
            f(pos >> self.cluster_bits, in_cluster, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    /// The mapping of `vcluster`.
    fn lookup(&self, vcluster: u64) -> io::Result<Mapping> {
        let mut t = self.lock();
        let e = t.entry(&self.file, vcluster)?;
        l2::decode(e, self.version, self.cluster_bits)
    }

    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        // Pieces in clusters that follow each other in the file too are
        // read with one pread (a mapping, once data, stays at its place).
        let mut run = Run::default();
        self.for_each_piece(buf.len(), off, |vc, at, r| {
            let map = self.lookup(vc)?;
            if let Mapping::Data(h) = map {
                if let Some((host, range)) = run.extend(h + at, r) {
                    self.file.read_exact_at(&mut buf[range], host)?;
                }
                return Ok(());
            }
            if let Some((host, range)) = run.take() {
                self.file.read_exact_at(&mut buf[range], host)?;
            }
            self.read_mapped(map, vc, at, &mut buf[r])
        })?;
        if let Some((host, range)) = run.take() {
            self.file.read_exact_at(&mut buf[range], host)?;
        }
        Ok(())
    }

    fn read_mapped(&self, map: Mapping, vc: u64, at: u64, buf: &mut [u8]) -> io::Result<()> {
        match map {
            Mapping::Zero => {
                buf.fill(0);
                Ok(())
            }
            Mapping::Unallocated => self.read_backing(buf, (vc << self.cluster_bits) + at),
            Mapping::Data(h) => self.file.read_exact_at(buf, h + at),
            Mapping::Compressed { offset, size } => {
                let cached = self
                    .inflated
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .filter(|(o, _)| *o == offset)
                    .map(|(_, c)| c.clone());
                let cluster = match cached {
                    Some(c) => c,
                    None => {
                        let c = Arc::new(self.decompress(offset, size)?);
                        *self.inflated.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((offset, c.clone()));
                        c
                    }
                };
                buf.copy_from_slice(&cluster[at as usize..at as usize + buf.len()]);
                Ok(())
            }
        }
    }

    fn read_backing(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        match &self.backing {
            Some(b) => b.read(buf, off),
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    /// Inflates one compressed cluster (raw deflate, as QEMU writes it).
    fn decompress(&self, offset: u64, size: u64) -> io::Result<Vec<u8>> {
        let mut input = vec![0u8; size as usize];
        // The stream's last sector may end past the end of the file.
        let mut got = 0;
        while got < input.len() {
            match self.file.read_at(&mut input[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut out = vec![0u8; self.cluster_size() as usize];
        match miniz_oxide::inflate::decompress_slice_iter_to_slice(
            &mut out,
            std::iter::once(&input[..got]),
            false,
            true,
        ) {
            Ok(n) if n == out.len() => Ok(out),
            Ok(_) | Err(_) => Err(corrupt(
                "compressed cluster does not inflate to one cluster",
            )),
        }
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.readonly {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "qcow2 image is open read-only",
            ));
        }
        Ok(())
    }

    pub fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        self.check_writable()?;
        // Pieces written in place that follow each other in the file are
        // one pwrite (as reads); the rest allocate under the lock.
        let mut run = Run::default();
        self.for_each_piece(data.len(), off, |vc, at, r| {
            let mut t = self.lock();
            let e = t.entry(&self.file, vc)?;
            if let Some(h) = in_place(e) {
                drop(t);
                if let Some((host, range)) = run.extend(h + at, r) {
                    self.file.write_all_at(&data[range], host)?;
                }
                return Ok(());
            }
            self.allocating_write(&mut t, vc, at, &data[r])
        })?;
        if let Some((host, range)) = run.take() {
            self.file.write_all_at(&data[range], host)?;
        }
        Ok(())
    }

    /// Writes into a cluster that is not writable in place: a new cluster
    /// (or the one a zero cluster keeps) gets the old contents around
    /// `data` and then the L2 entry points at it. Runs under the lock.
    fn allocating_write(&self, t: &mut Tables, vc: u64, at: u64, data: &[u8]) -> io::Result<()> {
        let cs = self.cluster_size();
        let slot = t.slot_or_alloc(&self.file, vc)?;
        let e = t.get(slot);
        let map = l2::decode(e, self.version, self.cluster_bits)?;
        let (target, source) = match map {
            Mapping::Compressed { offset, size } => (None, Source::Compressed(offset, size)),
            Mapping::Zero if e & COPIED != 0 && e & OFFSET_MASK != 0 => {
                (Some(e & OFFSET_MASK), Source::Zeros)
            }
            Mapping::Zero => (None, Source::Zeros),
            Mapping::Unallocated => (None, Source::Backing),
            Mapping::Data(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "qcow2: cluster is shared (refcount above one); copy-on-write of shared clusters is not supported",
                ))
            }
        };
        let target = match target {
            Some(h) => h,
            None => t.rc.alloc(&self.file, 1)?,
        };
        if data.len() as u64 == cs {
            self.file.write_all_at(data, target)?;
        } else {
            let mut cluster = match source {
                Source::Compressed(offset, size) => self.decompress(offset, size)?,
                _ => vec![0u8; cs as usize],
            };
            if source == Source::Backing {
                let start = vc << self.cluster_bits;
                let valid = (self.size - start).min(cs) as usize;
                self.read_backing(&mut cluster[..valid], start)?;
            }
            cluster[at as usize..at as usize + data.len()].copy_from_slice(data);
            self.file.write_all_at(&cluster, target)?;
        }
        t.set(slot, target | COPIED)?;
        if let Source::Compressed(offset, size) = source {
            // The compressed stream's clusters lose this reference.
            t.free_later(offset & !511, offset + size);
        }
        Ok(())
    }

    /// Makes every completed write durable, metadata in a safe order.
    pub fn flush(&self) -> io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        self.lock().flush(&self.file)
    }

    /// Version 3: whole clusters in the range become zero clusters (an
    /// allocated one keeps its cluster, whose host range is punched);
    /// partial clusters and version 2 images are left alone (discard is
    /// a hint).
    pub fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if self.version < 3 {
            return self.check_range(len, off);
        }
        let cs = self.cluster_size();
        self.for_each_piece(len, off, |vc, at, r| {
            let end = (vc << self.cluster_bits) + at + r.len() as u64;
            // The last cluster of a disk whose size is not a multiple of
            // the cluster size counts as whole when discarded to the end.
            let whole = at == 0 && (r.len() as u64 == cs || end == self.size);
            if !whole {
                return Ok(());
            }
            let mut t = self.lock();
            let e = t.entry(&self.file, vc)?;
            let new = match l2::decode(e, self.version, self.cluster_bits)? {
                Mapping::Zero => return Ok(()),
                Mapping::Unallocated if self.backing.is_none() => return Ok(()),
                Mapping::Unallocated => ZERO,
                Mapping::Data(h) if e & COPIED != 0 => h | COPIED | ZERO,
                Mapping::Compressed { .. } => ZERO,
                // Shared clusters keep their data.
                Mapping::Data(_) => return Ok(()),
            };
            let slot = t.slot_or_alloc(&self.file, vc)?;
            t.set(slot, new)?;
            if let Mapping::Compressed { offset, size } =
                l2::decode(e, self.version, self.cluster_bits)?
            {
                t.free_later(offset & !511, offset + size);
            }
            drop(t);
            if new & OFFSET_MASK != 0 {
                punch_hole(&self.file, new & OFFSET_MASK, cs);
            }
            Ok(())
        })
    }
}

/// Consecutive request pieces whose data is consecutive in the file.
#[derive(Default)]
struct Run(Option<(u64, std::ops::Range<usize>)>);

impl Run {
    /// Adds the piece `r` at host offset `host`; returns the run it ends
    /// when it does not continue it.
    fn extend(
        &mut self,
        host: u64,
        r: std::ops::Range<usize>,
    ) -> Option<(u64, std::ops::Range<usize>)> {
        if let Some((start, range)) = &mut self.0 {
            if *start + range.len() as u64 == host && range.end == r.start {
                range.end = r.end;
                return None;
            }
        }
        self.0.replace((host, r))
    }

    fn take(&mut self) -> Option<(u64, std::ops::Range<usize>)> {
        self.0.take()
    }
}

/// What a partly written new cluster holds around the new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Backing,
    Zeros,
    /// Offset and size of a compressed cluster.
    Compressed(u64, u64),
}

/// The host offset of a cluster that may be written in place: allocated,
/// refcount one, neither compressed nor a zero cluster.
fn in_place(entry: u64) -> Option<u64> {
    let h = entry & OFFSET_MASK;
    (entry & (COPIED | COMPRESSED | ZERO) == COPIED && h != 0).then_some(h)
}

/// Gives a discarded cluster's host blocks back (best effort: the zero
/// flag already makes it read as zeros).
fn punch_hole(file: &File, off: u64, len: u64) {
    let (Ok(o), Ok(l)) = (i64::try_from(off), i64::try_from(len)) else {
        return;
    };
    // SAFETY: fallocate only acts on the descriptor we own; the arguments
    // are plain integers.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    };
    if r < 0 {
        tracing::debug!("qcow2 discard: {}", io::Error::last_os_error());
    }
}

impl Drop for Qcow2 {
    fn drop(&mut self) {
        if !self.readonly {
            if let Err(e) = self.flush() {
                tracing::warn!("{}: qcow2 metadata flush: {e}", self.path.display());
            }
        }
    }
}
