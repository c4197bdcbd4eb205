//! Backend grant map + unmap of the 16 grants of a 64 KiB frame (a GSO
//! TX frame or a 16-segment block request), the way a backend's data path
//! holds them for one I/O: one grant at a time (`grant_map` /
//! `grant_unmap`), and, when built with the batch API, in one batch
//! (`grant_map_batch` / `grant_unmap_batch`). Guest memory hands out host
//! pointers like the VMM's, so what is measured is the grant bookkeeping
//! and the entry atomics, not a fake memory's locks.

use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use xen_abi::memory::XenAddToPhysmap;
use xen_abi::xen::*;
use xen_emu::guest::{Gpa, GuestMemory, MemError};
use xen_emu::platform::{MapError, Platform, ShutdownReason, SpecialPage, Upcall};
use xen_emu::testing::FakeVcpu;
use xen_emu::{Domain, DomainConfig};

/// Flat guest RAM with host pointers (`host_range`), the way the VMM's
/// memory behaves for shared_info and vcpu_info.
struct DirectMemory {
    words: Box<[AtomicU64]>,
}

impl DirectMemory {
    fn new(bytes: usize) -> Self {
        Self {
            words: (0..bytes / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn ptr(&self, gpa: Gpa, len: usize) -> Result<*mut u8, MemError> {
        let end = gpa.checked_add(len as u64).ok_or(MemError::Unbacked(gpa))?;
        if len == 0 || end > self.words.len() as u64 * 8 {
            return Err(MemError::Unbacked(gpa));
        }
        Ok((self.words.as_ptr() as *mut u8).wrapping_add(gpa as usize))
    }

    fn atomic<T>(&self, gpa: Gpa) -> Result<&T, MemError> {
        let size = std::mem::size_of::<T>();
        if gpa % size as u64 != 0 {
            return Err(MemError::Misaligned(gpa));
        }
        let p = self.ptr(gpa, size)?;
        // SAFETY: `size` aligned bytes inside `words`, which live as long
        // as `self`; every access to them is atomic.
        Ok(unsafe { &*(p as *const T) })
    }
}

impl GuestMemory for DirectMemory {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self
                .atomic::<AtomicU8>(gpa + i as u64)?
                .load(Ordering::Relaxed);
        }
        Ok(())
    }
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        for (i, b) in data.iter().enumerate() {
            self.atomic::<AtomicU8>(gpa + i as u64)?
                .store(*b, Ordering::Relaxed);
        }
        Ok(())
    }
    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError> {
        self.atomic(gpa)
    }
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError> {
        self.atomic(gpa)
    }
    fn host_range(&self, gpa: Gpa, len: usize) -> Option<NonNull<u8>> {
        if gpa / 4096 != (gpa + len.max(1) as u64 - 1) / 4096 {
            return None;
        }
        NonNull::new(self.ptr(gpa, len).ok()?)
    }
}

/// A platform whose special pages are the RAM frames the guest names
/// (enough for shared_info) and whose upcalls cost nothing.
struct DirectPlatform;

impl Platform for DirectPlatform {
    fn upcall(&self, vcpu: u32, upcall: Upcall) {
        black_box((vcpu, upcall));
    }
    fn map_special_page(&self, _: SpecialPage, _: u64) -> Result<(), MapError> {
        Ok(())
    }
    fn set_pvclock_area(&self, _: u32, _: Gpa) {}
    fn shutdown(&self, _: ShutdownReason) {}
    fn console_io_write(&self, _: &[u8]) {}
    fn kick(&self, _: u32) {}
    fn system_time_ns(&self) -> u64 {
        1_000_000
    }
}

/// Grant frame 0 at this guest frame.
const GT_GFN: u64 = 0x90;
/// The granted data pages start here.
const DATA_GFN: u64 = 0x100;
/// Grants of one 64 KiB frame.
const N: u32 = 16;

fn domain() -> (Arc<DirectMemory>, Arc<Domain>) {
    let mem = Arc::new(DirectMemory::new(4 << 20));
    let d = Domain::new(
        DomainConfig {
            max_grant_frames: 4,
            ..DomainConfig::default()
        },
        mem.clone(),
        Arc::new(DirectPlatform),
    );
    let mut v = FakeVcpu::long64(0);
    let map = XenAddToPhysmap {
        domid: 0x7ff0,
        size: 0,
        space: 1,
        idx: 0,
        gpfn: GT_GFN,
    };
    mem.write(0x1000, zerocopy::IntoBytes::as_bytes(&map))
        .expect("put");
    assert_eq!(
        d.hypercall(&mut v, HYPERVISOR_MEMORY_OP, [7, 0x1000, 0, 0, 0]),
        0
    );
    for i in 0..N {
        let gref = 8 + i;
        let e = xen_abi::grant_table::GrantEntryV1 {
            flags: 1,
            domid: 0,
            frame: (DATA_GFN + u64::from(i)) as u32,
        };
        mem.write(
            (GT_GFN << 12) + u64::from(gref) * 8,
            zerocopy::IntoBytes::as_bytes(&e),
        )
        .expect("entry");
    }
    (mem, d)
}

fn bench(c: &mut Criterion) {
    let (_mem, d) = domain();
    let mut handles = Vec::with_capacity(N as usize);
    c.bench_function("16 grants: grant_map x16 + grant_unmap x16 (rw)", |b| {
        b.iter(|| {
            handles.clear();
            for i in 0..N {
                handles.push(d.grant_map(8 + i, true).expect("map").handle);
            }
            for &h in &handles {
                d.grant_unmap(h).expect("unmap");
            }
            black_box(&handles);
        })
    });
    let grants: Vec<(u32, bool)> = (0..N).map(|i| (8 + i, true)).collect();
    c.bench_function("16 grants: grant_map_batch + grant_unmap_batch (rw)", |b| {
        b.iter(|| {
            let ms = d.grant_map_batch(&grants).expect("map");
            handles.clear();
            handles.extend(ms.iter().map(|m| m.handle));
            d.grant_unmap_batch(&handles).expect("unmap");
            black_box(&handles);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
