//! The qcow2 header (QEMU's `docs/interop/qcow2.txt`): the fixed fields of
//! versions 2 and 3, the header extensions we need (backing file format,
//! feature names, external data file) and every reason we refuse an image.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;
/// QEMU's limits (`block/qcow2.h`): 2 MiB clusters at most, 512 bytes at
/// least, 32 MiB of L1 table, 8 MiB of refcount table.
pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// A backing file name longer than this is refused (QEMU: 1023).
const MAX_BACKING_NAME: u32 = 1023;

/// Incompatible feature bits.
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

/// Header extension types.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Byte offsets of the fields we rewrite.
pub const OFF_REFCOUNT_TABLE: u64 = 48;
pub const OFF_INCOMPATIBLE: u64 = 72;
pub const OFF_AUTOCLEAR: u64 = 88;

/// Why an image cannot be opened (the message is what the user sees).
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("reading the qcow2 image: {0}")]
    Io(#[from] io::Error),
    #[error("not a qcow2 image (bad magic); use format=raw for raw images")]
    BadMagic,
    #[error("qcow2 version {0} is not supported (versions 2 and 3 are; `qemu-img amend -o compat=1.1` upgrades)")]
    Version(u32),
    #[error("encrypted qcow2 images (crypt_method {0}) are not supported")]
    Encrypted(u32),
    #[error("qcow2 image uses an external data file, which is not supported")]
    ExternalDataFile,
    #[error("qcow2 image uses extended L2 entries (subclusters), which are not supported")]
    ExtendedL2,
    #[error("qcow2 image uses compression type {0} (only zlib/deflate is supported)")]
    CompressionType(u8),
    #[error("qcow2 image has unknown incompatible features {bits:#x} ({names})")]
    UnknownIncompatible { bits: u64, names: String },
    #[error("qcow2 image is dirty (lazy refcounts not written back); repair it with `qemu-img check -r all` or open it read-only")]
    Dirty,
    #[error("qcow2 image is marked corrupt; repair it with `qemu-img check -r all` or open it read-only")]
    Corrupt,
    #[error("qcow2 image has {0} internal snapshot(s), which can only be opened read-only")]
    Snapshots(u32),
    #[error("invalid qcow2 header: {0}")]
    Invalid(String),
    #[error("qcow2 backing file {name:?}: {reason}")]
    Backing { name: String, reason: String },
}

impl From<Qcow2Error> for io::Error {
    fn from(e: Qcow2Error) -> Self {
        let kind = match &e {
            Qcow2Error::Io(e) => e.kind(),
            Qcow2Error::Dirty | Qcow2Error::Corrupt | Qcow2Error::Snapshots(_) => {
                io::ErrorKind::PermissionDenied
            }
            Qcow2Error::BadMagic | Qcow2Error::Invalid(_) | Qcow2Error::Backing { .. } => {
                io::ErrorKind::InvalidData
            }
            _ => io::ErrorKind::Unsupported,
        };
        io::Error::new(kind, e)
    }
}

/// The parsed header.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u32,
    pub backing_file: Option<String>,
    /// From the backing file format extension (`-F` of `qemu-img create`).
    pub backing_format: Option<String>,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub incompatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn invalid(msg: impl Into<String>) -> Qcow2Error {
    Qcow2Error::Invalid(msg.into())
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Reads and validates the header of `file`. `writable` adds the
    /// refusals that only matter when we would change the image.
    pub fn read(file: &File, writable: bool) -> Result<Self, Qcow2Error> {
        let mut fixed = [0u8; 104];
        let file_len = super::file_size(file)?;
        let n = (file_len.min(104)) as usize;
        file.read_exact_at(&mut fixed[..n], 0)?;
        if n < 72 || be32(&fixed, 0) != MAGIC {
            return Err(Qcow2Error::BadMagic);
        }
        let version = be32(&fixed, 4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Version(version));
        }
        let (incompatible, autoclear, refcount_order, header_length) = if version == 3 {
            if n < 104 {
                return Err(invalid("version 3 header is truncated"));
            }
            (
                be64(&fixed, 72),
                be64(&fixed, 88),
                be32(&fixed, 96),
                be32(&fixed, 100),
            )
        } else {
            (0, 0, 4, 72)
        };
        let crypt = be32(&fixed, 32);
        if crypt != 0 {
            return Err(Qcow2Error::Encrypted(crypt));
        }
        let cluster_bits = be32(&fixed, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(invalid(format!(
                "cluster_bits {cluster_bits} is not within 9..=21"
            )));
        }
        if version == 3 && (header_length < 104 || header_length % 8 != 0) {
            return Err(invalid(format!("header_length {header_length}")));
        }
        if u64::from(header_length) > 1 << cluster_bits {
            return Err(invalid("header is larger than one cluster"));
        }
        if refcount_order > 6 {
            return Err(invalid(format!(
                "refcount_order {refcount_order} exceeds 6"
            )));
        }
        let mut h = Header {
            version,
            backing_file: None,
            backing_format: None,
            cluster_bits,
            size: be64(&fixed, 24),
            l1_size: be32(&fixed, 36),
            l1_table_offset: be64(&fixed, 40),
            refcount_table_offset: be64(&fixed, 48),
            refcount_table_clusters: be32(&fixed, 56),
            nb_snapshots: be32(&fixed, 60),
            incompatible,
            autoclear,
            refcount_order,
        };
        // The whole first cluster holds the header, its extensions and
        // the backing file name (QEMU keeps them there).
        let cs = h.cluster_size();
        let mut first = vec![0u8; cs.min(file_len) as usize];
        file.read_exact_at(&mut first, 0)?;
        let names = h.read_extensions(&first, header_length as usize)?;
        h.read_backing_name(&first, &fixed)?;
        h.check_features(&names, writable)?;
        h.check_tables(file_len)?;
        if writable && h.nb_snapshots != 0 {
            return Err(Qcow2Error::Snapshots(h.nb_snapshots));
        }
        if h.incompatible & INCOMPAT_COMPRESSION != 0 {
            let ct = first.get(104).copied().unwrap_or(0);
            if ct != 0 {
                return Err(Qcow2Error::CompressionType(ct));
            }
        }
        Ok(h)
    }

    /// Walks the header extensions; returns the feature name table
    /// (type, bit, name) for error messages.
    fn read_extensions(
        &mut self,
        first: &[u8],
        mut at: usize,
    ) -> Result<Vec<(u8, u8, String)>, Qcow2Error> {
        let mut names = Vec::new();
        while at + 8 <= first.len() {
            let ty = be32(first, at);
            let len = be32(first, at + 4) as usize;
            at += 8;
            if ty == EXT_END {
                break;
            }
            let Some(data) = first.get(at..at.saturating_add(len)) else {
                return Err(invalid("header extension runs past the first cluster"));
            };
            match ty {
                EXT_BACKING_FORMAT => {
                    self.backing_format = Some(String::from_utf8_lossy(data).into_owned());
                }
                EXT_FEATURE_NAMES => {
                    for e in data.chunks_exact(48) {
                        let name = e[2..].split(|&b| b == 0).next().unwrap_or(&[]);
                        names.push((e[0], e[1], String::from_utf8_lossy(name).into_owned()));
                    }
                }
                EXT_DATA_FILE => return Err(Qcow2Error::ExternalDataFile),
                _ => {}
            }
            at += len.div_ceil(8) * 8;
        }
        Ok(names)
    }

    fn read_backing_name(&mut self, first: &[u8], fixed: &[u8]) -> Result<(), Qcow2Error> {
        let off = be64(fixed, 8);
        let len = be32(fixed, 16);
        if off == 0 || len == 0 {
            return Ok(());
        }
        if len > MAX_BACKING_NAME {
            return Err(invalid(format!("backing file name of {len} bytes")));
        }
        let name = usize::try_from(off)
            .ok()
            .and_then(|o| first.get(o..o + len as usize))
            .ok_or_else(|| invalid("backing file name lies outside the first cluster"))?;
        self.backing_file = Some(String::from_utf8_lossy(name).into_owned());
        Ok(())
    }

    fn check_features(&self, names: &[(u8, u8, String)], writable: bool) -> Result<(), Qcow2Error> {
        let inc = self.incompatible;
        let unknown = inc & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let named: Vec<String> = (0..64)
                .filter(|b| unknown & (1 << b) != 0)
                .map(|b| {
                    names
                        .iter()
                        .find(|(t, bit, _)| *t == 0 && u32::from(*bit) == b)
                        .map_or_else(|| format!("bit {b}"), |(_, _, n)| n.clone())
                })
                .collect();
            return Err(Qcow2Error::UnknownIncompatible {
                bits: unknown,
                names: named.join(", "),
            });
        }
        if inc & INCOMPAT_DATA_FILE != 0 {
            return Err(Qcow2Error::ExternalDataFile);
        }
        if inc & INCOMPAT_EXTL2 != 0 {
            return Err(Qcow2Error::ExtendedL2);
        }
        if writable && inc & INCOMPAT_CORRUPT != 0 {
            return Err(Qcow2Error::Corrupt);
        }
        if writable && inc & INCOMPAT_DIRTY != 0 {
            return Err(Qcow2Error::Dirty);
        }
        Ok(())
    }

    fn check_tables(&self, file_len: u64) -> Result<(), Qcow2Error> {
        let cs = self.cluster_size();
        let aligned = |o: u64| o % cs == 0 && o != 0;
        if !aligned(self.l1_table_offset) && self.l1_size != 0 {
            return Err(invalid("L1 table offset is not cluster aligned"));
        }
        if !aligned(self.refcount_table_offset) {
            return Err(invalid("refcount table offset is not cluster aligned"));
        }
        let l1_bytes = u64::from(self.l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(invalid(format!(
                "L1 table of {l1_bytes} bytes is too large"
            )));
        }
        let rt_bytes = u64::from(self.refcount_table_clusters) * cs;
        if rt_bytes > MAX_REFTABLE_BYTES || rt_bytes == 0 {
            return Err(invalid(format!("refcount table of {rt_bytes} bytes")));
        }
        // Every virtual cluster needs an L1 slot.
        let l2_entries = cs / 8;
        let needed = self.size.div_ceil(cs).div_ceil(l2_entries);
        if u64::from(self.l1_size) < needed {
            return Err(invalid(format!(
                "L1 table has {} entries, the {}-byte disk needs {needed}",
                self.l1_size, self.size
            )));
        }
        let end = |o: u64, n: u64| o.checked_add(n).is_some_and(|e| e <= file_len);
        if !end(self.l1_table_offset, l1_bytes) || !end(self.refcount_table_offset, rt_bytes) {
            return Err(invalid(
                "L1 or refcount table lies past the end of the file",
            ));
        }
        Ok(())
    }
}
