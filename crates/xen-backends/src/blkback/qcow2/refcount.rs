//! Refcounts: the refcount table, its refcount blocks and cluster
//! allocation. Every host cluster in use has a refcount of at least one;
//! we allocate by appending (the first free cluster at or after the end
//! of what is in use) and never reuse a cluster in the same session, so a
//! reader that looked a mapping up without the lock never finds its
//! cluster handed to someone else.
//!
//! Refcount updates are written through to the file at once; callers make
//! them durable (fdatasync) before any L1/L2 entry that points at the new
//! clusters is written, so a crash leaks clusters at worst.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::header::{Header, OFF_REFCOUNT_TABLE};
use super::{corrupt, OFFSET_MASK};

/// Refcount blocks kept in memory (they are write-through, so dropping
/// one only costs a re-read).
const BLOCK_CACHE_BYTES: u64 = 4 << 20;

pub(super) struct Refcounts {
    cluster_bits: u32,
    order: u32,
    table: Vec<u64>,
    table_offset: u64,
    blocks: HashMap<u64, Vec<u8>>,
    block_cap: usize,
    /// First candidate cluster (index) for the next allocation.
    next_free: u64,
    /// Refcount writes not yet made durable.
    pub unsynced: bool,
    /// Growing the table: new blocks go into the in-memory table only.
    relocating: bool,
}

/// Byte range of entry `idx` in a block of `2^order`-bit entries.
fn entry_bytes(idx: u64, order: u32) -> (usize, usize) {
    if order < 3 {
        (((idx << order) / 8) as usize, 1)
    } else {
        let w = 1usize << (order - 3);
        (idx as usize * w, w)
    }
}

fn entry_get(block: &[u8], idx: u64, order: u32) -> u64 {
    let (at, w) = entry_bytes(idx, order);
    if order < 3 {
        let bits = 1u64 << order;
        let shift = (idx << order) % 8;
        (u64::from(block[at]) >> shift) & ((1 << bits) - 1)
    } else {
        block[at..at + w]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }
}

fn entry_set(block: &mut [u8], idx: u64, order: u32, value: u64) -> (usize, usize) {
    let (at, w) = entry_bytes(idx, order);
    if order < 3 {
        let mask = ((1u64 << (1u64 << order)) - 1) as u8;
        let shift = (idx << order) % 8;
        block[at] = (block[at] & !(mask << shift)) | (((value as u8) & mask) << shift);
    } else {
        for (i, b) in block[at..at + w].iter_mut().enumerate() {
            *b = (value >> (8 * (w - 1 - i))) as u8;
        }
    }
    (at, w)
}

impl Refcounts {
    pub fn load(file: &File, h: &Header) -> io::Result<Self> {
        let cs = h.cluster_size();
        let mut raw = vec![0u8; (u64::from(h.refcount_table_clusters) * cs) as usize];
        file.read_exact_at(&mut raw, h.refcount_table_offset)?;
        let table = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let file_len = super::file_size(file)?;
        Ok(Self {
            cluster_bits: h.cluster_bits,
            order: h.refcount_order,
            table,
            table_offset: h.refcount_table_offset,
            blocks: HashMap::new(),
            block_cap: (BLOCK_CACHE_BYTES / cs).max(4) as usize,
            next_free: file_len.div_ceil(cs),
            unsynced: false,
            relocating: false,
        })
    }

    /// End of the image as far as clusters go: the file as opened plus
    /// what we allocated. Metadata pointing past it is corrupt.
    pub fn end(&self) -> u64 {
        self.next_free << self.cluster_bits
    }

    /// Host byte range of the refcount table.
    pub fn table_range(&self) -> std::ops::Range<u64> {
        self.table_offset..self.table_offset + self.table.len() as u64 * 8
    }

    fn cs(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Refcount entries per block.
    fn per_block(&self) -> u64 {
        (self.cs() * 8) >> self.order
    }

    fn block_offset(&self, j: u64) -> io::Result<u64> {
        let Some(&e) = self.table.get(j as usize) else {
            return Ok(0);
        };
        let off = e & OFFSET_MASK;
        if off % self.cs() != 0 {
            return Err(corrupt("refcount block offset is not cluster aligned"));
        }
        Ok(off)
    }

    fn block(&mut self, file: &File, off: u64) -> io::Result<&mut Vec<u8>> {
        if !self.blocks.contains_key(&off) {
            if self.blocks.len() >= self.block_cap {
                self.blocks.clear();
            }
            let mut b = vec![0u8; self.cs() as usize];
            file.read_exact_at(&mut b, off)?;
            self.blocks.insert(off, b);
        }
        self.blocks
            .get_mut(&off)
            .ok_or_else(|| io::Error::other("refcount block cache"))
    }

    pub fn get(&mut self, file: &File, cluster: u64) -> io::Result<u64> {
        let pb = self.per_block();
        let off = self.block_offset(cluster / pb)?;
        if off == 0 {
            return Ok(0);
        }
        let order = self.order;
        let b = self.block(file, off)?;
        Ok(entry_get(b, cluster % pb, order))
    }

    pub fn set(&mut self, file: &File, cluster: u64, value: u64) -> io::Result<()> {
        let pb = self.per_block();
        let j = cluster / pb;
        self.ensure_block(file, j)?;
        let off = self.block_offset(j)?;
        let order = self.order;
        let b = self.block(file, off)?;
        let (at, w) = entry_set(b, cluster % pb, order, value);
        file.write_all_at(&b[at..at + w], off + at as u64)?;
        self.unsynced = true;
        Ok(())
    }

    /// One free cluster (index), taken off the allocation front.
    fn take_free(&mut self, file: &File) -> io::Result<u64> {
        loop {
            let c = self.next_free;
            self.next_free += 1;
            if self.get(file, c)? == 0 {
                return Ok(c);
            }
        }
    }

    /// Makes sure refcount block `j` exists. A new block goes to the first
    /// free cluster; when that cluster is one it covers, it counts itself.
    fn ensure_block(&mut self, file: &File, j: u64) -> io::Result<()> {
        if j >= self.table.len() as u64 {
            self.grow_table(file, j)?;
        }
        if self.block_offset(j)? != 0 {
            return Ok(());
        }
        let r = self.take_free(file)?;
        let pb = self.per_block();
        let off = r << self.cluster_bits;
        let mut b = vec![0u8; self.cs() as usize];
        let self_counting = r / pb == j;
        if self_counting {
            entry_set(&mut b, r % pb, self.order, 1);
        }
        file.write_all_at(&b, off)?;
        if self.blocks.len() >= self.block_cap {
            self.blocks.clear();
        }
        self.blocks.insert(off, b);
        self.table[j as usize] = off;
        if !self.relocating {
            // The block is durable before the table points at it.
            file.sync_data()?;
            file.write_all_at(&off.to_be_bytes(), self.table_offset + j * 8)?;
        }
        self.unsynced = true;
        if !self_counting {
            self.set(file, r, 1)?;
        }
        Ok(())
    }

    /// Start (index) of `n` contiguous free clusters at or after the
    /// allocation front; the front moves past them.
    fn free_run(&mut self, file: &File, n: u64) -> io::Result<u64> {
        'search: loop {
            let start = self.next_free;
            for c in start..start + n {
                if self.get(file, c)? != 0 {
                    self.next_free = c + 1;
                    continue 'search;
                }
            }
            self.next_free = start + n;
            return Ok(start);
        }
    }

    /// Allocates `n` contiguous clusters with refcount 1; returns the host
    /// offset of the first.
    pub fn alloc(&mut self, file: &File, n: u64) -> io::Result<u64> {
        let start = self.free_run(file, n)?;
        for c in start..start + n {
            self.set(file, c, 1)?;
        }
        Ok(start << self.cluster_bits)
    }

    /// Moves the refcount table to a larger one at the allocation front
    /// that covers block `j`, its own clusters and the blocks they need;
    /// then points the header at it and frees the old table.
    fn grow_table(&mut self, file: &File, j: u64) -> io::Result<()> {
        let cs = self.cs();
        let per_cluster = cs / 8;
        let old_clusters = (self.table.len() as u64).div_ceil(per_cluster);
        let mut n = (old_clusters * 2).max((j + 1).div_ceil(per_cluster));
        let start = loop {
            let saved = self.next_free;
            let t = self.free_run(file, n)?;
            let covered = n * per_cluster * self.per_block();
            if covered >= t + n + 64 && n * per_cluster > j {
                break t;
            }
            self.next_free = saved;
            n *= 2;
        };
        let count = u32::try_from(n).map_err(|_| io::Error::other("refcount table too large"))?;
        self.table.resize((n * per_cluster) as usize, 0);
        self.relocating = true;
        let counted = (start..start + n).try_for_each(|c| self.set(file, c, 1));
        self.relocating = false;
        counted?;
        let bytes: Vec<u8> = self.table.iter().flat_map(|e| e.to_be_bytes()).collect();
        let new_off = start << self.cluster_bits;
        file.write_all_at(&bytes, new_off)?;
        file.sync_data()?;
        let mut hdr = [0u8; 12];
        hdr[..8].copy_from_slice(&new_off.to_be_bytes());
        hdr[8..].copy_from_slice(&count.to_be_bytes());
        file.write_all_at(&hdr, OFF_REFCOUNT_TABLE)?;
        file.sync_data()?;
        let old = self.table_offset >> self.cluster_bits;
        self.table_offset = new_off;
        for c in old..old + old_clusters {
            self.set(file, c, 0)?;
        }
        tracing::debug!("qcow2: refcount table grown to {n} clusters at {new_off:#x}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_every_width_round_trip_without_touching_neighbours() {
        for order in 0..=6u32 {
            let mut b = vec![0u8; 64];
            let max = if order == 6 {
                u64::MAX
            } else {
                (1u64 << (1 << order)) - 1
            };
            entry_set(&mut b, 3, order, max);
            entry_set(&mut b, 4, order, 1);
            assert_eq!(entry_get(&b, 2, order), 0, "order {order}");
            assert_eq!(entry_get(&b, 3, order), max, "order {order}");
            assert_eq!(entry_get(&b, 4, order), 1, "order {order}");
            assert_eq!(entry_get(&b, 5, order), 0, "order {order}");
        }
        // 16-bit entries are big-endian, as QEMU writes them.
        let mut b = vec![0u8; 8];
        entry_set(&mut b, 1, 4, 0x0102);
        assert_eq!(b[2..4], [1, 2]);
    }
}
