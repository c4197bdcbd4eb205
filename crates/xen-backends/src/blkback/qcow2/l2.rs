//! The two-level cluster mapping: the L1 table (in memory, written whole
//! at flush) and L2 tables behind a write-back cache. A dirty L2 table is
//! written only after the refcounts of the clusters it points at are
//! durable, and the L1 table only after the L2 tables it points at are:
//! QEMU's ordering, so a crash loses unflushed writes but never leaves an
//! entry pointing at a cluster with refcount 0.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::header::Header;
use super::refcount::Refcounts;
use super::{corrupt, OFFSET_MASK};

/// The cluster's refcount is exactly one: it may be written in place.
pub const COPIED: u64 = 1 << 63;
pub const COMPRESSED: u64 = 1 << 62;
/// Version 3: the cluster reads as zeros (its offset, if any, stays
/// allocated).
pub const ZERO: u64 = 1;

/// L2 tables kept in memory, in bytes (at least 16 tables).
const L2_CACHE_BYTES: u64 = 32 << 20;

/// Where a virtual cluster's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Not in this image: the backing file's data, or zeros.
    Unallocated,
    /// Reads as zeros (version 3 zero flag).
    Zero,
    /// At this host offset.
    Data(u64),
    /// Deflate stream at `offset`, `size` bytes at most.
    Compressed { offset: u64, size: u64 },
}

/// Decodes an L2 entry (`cluster_bits` for the compressed layout).
pub fn decode(entry: u64, version: u32, cluster_bits: u32) -> io::Result<Mapping> {
    if entry & COMPRESSED != 0 {
        let shift = 62 - (cluster_bits - 8);
        let offset = entry & ((1 << shift) - 1);
        let sectors = ((entry >> shift) & ((1 << (cluster_bits - 8)) - 1)) + 1;
        let size = sectors * 512 - (offset & 511);
        return Ok(Mapping::Compressed { offset, size });
    }
    if version >= 3 && entry & ZERO != 0 {
        return Ok(Mapping::Zero);
    }
    let off = entry & OFFSET_MASK;
    if off == 0 {
        return Ok(Mapping::Unallocated);
    }
    if off % (1 << cluster_bits) != 0 {
        return Err(corrupt("data cluster offset is not cluster aligned"));
    }
    Ok(Mapping::Data(off))
}

struct L2Table {
    entries: Vec<u64>,
    dirty: bool,
    used: u64,
}

/// All mutable metadata of an image, behind the image's lock.
pub(super) struct Tables {
    cluster_bits: u32,
    l1_offset: u64,
    l1: Vec<u64>,
    l1_dirty: bool,
    l2: HashMap<u64, L2Table>,
    l2_cap: usize,
    tick: u64,
    pub rc: Refcounts,
    /// Host byte ranges whose clusters lose one reference once the L2
    /// entries that dropped them are durable (at the next flush).
    pending_frees: Vec<(u64, u64)>,
}

/// Where an L2 entry sits: the table's host offset and the index in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    table: u64,
    index: usize,
}

impl Tables {
    pub fn load(file: &File, h: &Header) -> io::Result<Self> {
        let mut raw = vec![0u8; h.l1_size as usize * 8];
        file.read_exact_at(&mut raw, h.l1_table_offset)?;
        Ok(Self {
            cluster_bits: h.cluster_bits,
            l1_offset: h.l1_table_offset,
            l1: raw.chunks_exact(8).map(be64).collect(),
            l1_dirty: false,
            l2: HashMap::new(),
            l2_cap: (L2_CACHE_BYTES >> h.cluster_bits).max(16) as usize,
            tick: 0,
            rc: Refcounts::load(file, h)?,
            pending_frees: Vec::new(),
        })
    }

    fn split(&self, vcluster: u64) -> (usize, usize) {
        let bits = self.cluster_bits - 3;
        (
            (vcluster >> bits) as usize,
            (vcluster & ((1 << bits) - 1)) as usize,
        )
    }

    /// The L2 slot of `vcluster`, or `None` when it has no L2 table.
    pub fn slot(&mut self, file: &File, vcluster: u64) -> io::Result<Option<Slot>> {
        let (i1, index) = self.split(vcluster);
        let l1e = *self
            .l1
            .get(i1)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let table = l1e & OFFSET_MASK;
        if table == 0 {
            return Ok(None);
        }
        if table % (1 << self.cluster_bits) != 0 {
            return Err(corrupt("L2 table offset is not cluster aligned"));
        }
        if table >= self.rc.end() {
            return Err(corrupt("L2 table lies past the end of the image"));
        }
        self.load_l2(file, table)?;
        Ok(Some(Slot { table, index }))
    }

    /// The raw L2 entry of `vcluster` (0 without an L2 table); a data
    /// cluster past the end of the image is refused (writing there would
    /// grow the file without bound).
    pub fn entry(&mut self, file: &File, vcluster: u64) -> io::Result<u64> {
        let e = match self.slot(file, vcluster)? {
            Some(s) => self.get(s),
            None => 0,
        };
        if e & COMPRESSED == 0 && e & OFFSET_MASK != 0 {
            self.check_data_cluster(e & OFFSET_MASK)?;
        }
        Ok(e)
    }

    /// QEMU's cheapest overlap checks: a data cluster is not past the end
    /// of the image, the header, the L1 table or the refcount table, so a
    /// corrupt image does not get its main tables overwritten by data.
    fn check_data_cluster(&self, h: u64) -> io::Result<()> {
        let cs = 1u64 << self.cluster_bits;
        let l1 = self.l1_offset..self.l1_offset + self.l1.len() as u64 * 8;
        let rt = self.rc.table_range();
        let overlaps = |r: &std::ops::Range<u64>| h < r.end && r.start < h + cs;
        if h >= self.rc.end() {
            return Err(corrupt("data cluster lies past the end of the image"));
        }
        if h < cs || overlaps(&l1) || overlaps(&rt) {
            return Err(corrupt(
                "data cluster overlaps the header, L1 or refcount table",
            ));
        }
        Ok(())
    }

    pub fn get(&self, s: Slot) -> u64 {
        self.l2.get(&s.table).map_or(0, |t| t.entries[s.index])
    }

    pub fn set(&mut self, s: Slot, entry: u64) -> io::Result<()> {
        let t = self
            .l2
            .get_mut(&s.table)
            .ok_or_else(|| io::Error::other("qcow2: L2 table left the cache mid-update"))?;
        t.entries[s.index] = entry;
        t.dirty = true;
        Ok(())
    }

    /// The slot of `vcluster`, allocating a zeroed L2 table if needed.
    pub fn slot_or_alloc(&mut self, file: &File, vcluster: u64) -> io::Result<Slot> {
        if let Some(s) = self.slot(file, vcluster)? {
            let (i1, _) = self.split(vcluster);
            if self.l1[i1] & COPIED == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "qcow2: L2 table is shared (internal snapshot); writing would need copy-on-write of the table",
                ));
            }
            return Ok(s);
        }
        let (i1, index) = self.split(vcluster);
        let table = self.rc.alloc(file, 1)?;
        self.make_room(file)?;
        self.tick += 1;
        self.l2.insert(
            table,
            L2Table {
                entries: vec![0; 1 << (self.cluster_bits - 3)],
                dirty: true,
                used: self.tick,
            },
        );
        self.l1[i1] = table | COPIED;
        self.l1_dirty = true;
        Ok(Slot { table, index })
    }

    fn load_l2(&mut self, file: &File, table: u64) -> io::Result<()> {
        self.tick += 1;
        if let Some(t) = self.l2.get_mut(&table) {
            t.used = self.tick;
            return Ok(());
        }
        self.make_room(file)?;
        let mut raw = vec![0u8; 1 << self.cluster_bits];
        file.read_exact_at(&mut raw, table)?;
        self.l2.insert(
            table,
            L2Table {
                entries: raw.chunks_exact(8).map(be64).collect(),
                dirty: false,
                used: self.tick,
            },
        );
        Ok(())
    }

    /// Evicts the least recently used table when the cache is full.
    fn make_room(&mut self, file: &File) -> io::Result<()> {
        if self.l2.len() < self.l2_cap {
            return Ok(());
        }
        let Some((&off, _)) = self.l2.iter().min_by_key(|(_, t)| t.used) else {
            return Ok(());
        };
        if let Some(t) = self.l2.get(&off) {
            if t.dirty {
                if self.rc.unsynced {
                    file.sync_data()?;
                    self.rc.unsynced = false;
                }
                file.write_all_at(&table_bytes(&t.entries), off)?;
            }
        }
        self.l2.remove(&off);
        Ok(())
    }

    /// Writes dirty metadata in a safe order (refcounts and data durable,
    /// then L2 tables, durable, then L1) and makes it all durable.
    pub fn flush(&mut self, file: &File) -> io::Result<()> {
        let dirty_l2 = self.l2.values().any(|t| t.dirty);
        if dirty_l2 || self.l1_dirty {
            file.sync_data()?;
            self.rc.unsynced = false;
        }
        if dirty_l2 {
            for (&off, t) in self.l2.iter_mut().filter(|(_, t)| t.dirty) {
                file.write_all_at(&table_bytes(&t.entries), off)?;
                t.dirty = false;
            }
            if self.l1_dirty {
                file.sync_data()?;
            }
        }
        if self.l1_dirty {
            file.write_all_at(&table_bytes(&self.l1), self.l1_offset)?;
            self.l1_dirty = false;
        }
        file.sync_data()?;
        // Nothing durable points at these any more: a crash from here on
        // leaks them at worst.
        for (start, end) in std::mem::take(&mut self.pending_frees) {
            let cb = self.cluster_bits;
            for c in (start >> cb)..=((end - 1) >> cb) {
                match self.rc.get(file, c)? {
                    0 => tracing::warn!("qcow2: freeing cluster {c:#x} with refcount 0"),
                    n => self.rc.set(file, c, n - 1)?,
                }
            }
        }
        Ok(())
    }

    /// Drops one reference to the host clusters of `[start, end)` once the
    /// entry that held it is durable.
    pub fn free_later(&mut self, start: u64, end: u64) {
        if end > start {
            self.pending_frees.push((start, end));
        }
    }
}

fn be64(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(c);
    u64::from_be_bytes(a)
}

fn table_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_be_bytes()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_each_kind_of_l2_entry() {
        assert_eq!(decode(0, 3, 16).unwrap(), Mapping::Unallocated);
        assert_eq!(
            decode(COPIED | 0x3_0000, 3, 16).unwrap(),
            Mapping::Data(0x3_0000)
        );
        assert_eq!(decode(ZERO, 3, 16).unwrap(), Mapping::Zero);
        assert_eq!(
            decode(COPIED | 0x3_0000 | ZERO, 3, 16).unwrap(),
            Mapping::Zero
        );
        // Version 2 has no zero flag.
        assert_eq!(
            decode(0x3_0000 | ZERO, 2, 16).unwrap(),
            Mapping::Data(0x3_0000)
        );
        assert!(decode(COPIED | 0x3_0200, 3, 16).is_err());
        // 64K clusters: offset in bits 0..54, sector count - 1 above.
        let e = COMPRESSED | (2u64 << 54) | 0x1_0100;
        assert_eq!(
            decode(e, 3, 16).unwrap(),
            Mapping::Compressed {
                offset: 0x1_0100,
                size: 3 * 512 - 0x100
            }
        );
    }
}
