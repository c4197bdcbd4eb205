//! The byte-stream rings of Xen's shared-page protocols (`io/console.h`'s
//! `xencons_interface`, `io/xs_wire.h`'s `xenstore_domain_interface`): one
//! ring per direction, free-running 32-bit indices, the consumer index
//! written by the reader and the producer index by the writer, barriers as
//! in Xen (read the producer index before the data, publish data before the
//! index).

use std::sync::atomic::{fence, Ordering};

use xen_emu::guest::{Gpa, GuestMemory, MemError};

/// Where one ring and its indices sit in the shared page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingDesc {
    /// Offset of the data area in the page.
    pub data: u64,
    /// Size of the data area (a power of two).
    pub size: u32,
    /// Offset of the consumer index.
    pub cons: u64,
    /// Offset of the producer index.
    pub prod: u64,
}

/// Guest → console backend (`out`, 2048 bytes).
pub const CONSOLE_OUT: RingDesc = RingDesc {
    data: 1024,
    size: 2048,
    cons: 3080,
    prod: 3084,
};
/// Console backend → guest (`in`, 1024 bytes).
pub const CONSOLE_IN: RingDesc = RingDesc {
    data: 0,
    size: 1024,
    cons: 3072,
    prod: 3076,
};
/// Guest → xenstored (`req`).
pub const XS_REQ: RingDesc = RingDesc {
    data: 0,
    size: 1024,
    cons: 2048,
    prod: 2052,
};
/// xenstored → guest (`rsp`).
pub const XS_RSP: RingDesc = RingDesc {
    data: 1024,
    size: 1024,
    cons: 2056,
    prod: 2060,
};
/// `xenstore_domain_interface.server_features`.
pub const XS_SERVER_FEATURES: u64 = 2064;
/// `xenstore_domain_interface.connection`.
pub const XS_CONNECTION: u64 = 2068;
/// `xenstore_domain_interface.error`.
pub const XS_ERROR: u64 = 2072;

/// Why a ring cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring page not accessible: {0}")]
    Memory(#[from] MemError),
    /// The guest wrote indices that claim more data than the ring holds.
    #[error("ring indices corrupt (prod {prod:#x}, cons {cons:#x})")]
    Corrupt { prod: u32, cons: u32 },
}

/// Reads what the guest produced on `ring` (at most `max` bytes) and
/// advances the consumer index.
pub fn consume(
    mem: &dyn GuestMemory,
    page: Gpa,
    ring: RingDesc,
    max: usize,
) -> Result<Vec<u8>, RingError> {
    let prod_a = mem.atomic_u32(page + ring.prod)?;
    let cons_a = mem.atomic_u32(page + ring.cons)?;
    let prod = prod_a.load(Ordering::Acquire);
    let cons = cons_a.load(Ordering::Relaxed);
    let avail = prod.wrapping_sub(cons);
    if avail > ring.size {
        return Err(RingError::Corrupt { prod, cons });
    }
    let n = (avail as usize).min(max);
    let mut out = vec![0u8; n];
    let start = (cons % ring.size) as usize;
    let first = n.min(ring.size as usize - start);
    mem.read(page + ring.data + start as u64, &mut out[..first])?;
    if first < n {
        mem.read(page + ring.data, &mut out[first..])?;
    }
    fence(Ordering::SeqCst);
    cons_a.store(cons.wrapping_add(n as u32), Ordering::Release);
    Ok(out)
}

/// Writes as much of `data` as fits into `ring` for the guest and
/// advances the producer index; returns how many bytes went in.
pub fn produce(
    mem: &dyn GuestMemory,
    page: Gpa,
    ring: RingDesc,
    data: &[u8],
) -> Result<usize, RingError> {
    let prod_a = mem.atomic_u32(page + ring.prod)?;
    let cons_a = mem.atomic_u32(page + ring.cons)?;
    let cons = cons_a.load(Ordering::Acquire);
    let prod = prod_a.load(Ordering::Relaxed);
    let used = prod.wrapping_sub(cons);
    if used > ring.size {
        return Err(RingError::Corrupt { prod, cons });
    }
    let n = data.len().min((ring.size - used) as usize);
    let start = (prod % ring.size) as usize;
    let first = n.min(ring.size as usize - start);
    mem.write(page + ring.data + start as u64, &data[..first])?;
    if first < n {
        mem.write(page + ring.data, &data[first..n])?;
    }
    fence(Ordering::SeqCst);
    prod_a.store(prod.wrapping_add(n as u32), Ordering::Release);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{test_memory, DomainMemory};

    fn mem() -> DomainMemory {
        test_memory(&[(0, 1 << 16)])
    }

    /// Plays the guest: writes `data` into `ring` as a frontend would.
    fn guest_write(m: &DomainMemory, ring: RingDesc, data: &[u8]) {
        produce(m, 0x1000, ring, data).expect("guest produce");
    }

    #[test]
    fn console_output_wraps_around_the_ring() {
        let m = mem();
        // Start near the end so the data wraps.
        m.write(0x1000 + CONSOLE_OUT.prod, &2040u32.to_le_bytes())
            .expect("w");
        m.write(0x1000 + CONSOLE_OUT.cons, &2040u32.to_le_bytes())
            .expect("w");
        guest_write(&m, CONSOLE_OUT, b"hello, world");
        assert_eq!(
            consume(&m, 0x1000, CONSOLE_OUT, 4096).expect("consume"),
            b"hello, world"
        );
        assert_eq!(
            consume(&m, 0x1000, CONSOLE_OUT, 4096).expect("consume"),
            b""
        );
    }

    #[test]
    fn produce_stops_when_full_and_max_limits_consume() {
        let m = mem();
        assert_eq!(produce(&m, 0x1000, XS_RSP, &[1u8; 1500]).expect("p"), 1024);
        assert_eq!(produce(&m, 0x1000, XS_RSP, &[1u8; 10]).expect("p"), 0);
        assert_eq!(consume(&m, 0x1000, XS_RSP, 100).expect("c").len(), 100);
        assert_eq!(produce(&m, 0x1000, XS_RSP, &[2u8; 200]).expect("p"), 100);
    }

    #[test]
    fn corrupt_indices_are_an_error() {
        let m = mem();
        m.write(0x1000 + XS_REQ.prod, &5000u32.to_le_bytes())
            .expect("w");
        assert_eq!(
            consume(&m, 0x1000, XS_REQ, 10),
            Err(RingError::Corrupt {
                prod: 5000,
                cons: 0
            })
        );
    }
}
