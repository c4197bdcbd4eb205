//! Backend grant map + unmap of the 16 grants of a 64 KiB frame (a GSO
//! TX frame or a 16-segment block request), the way a backend's data path
//! holds them for one I/O: one grant at a time (`grant_map` /
//! `grant_unmap`), and, when built with the batch API, in one batch
//! (`grant_map_batch` / `grant_unmap_batch`). Guest memory hands out host
//! pointers like the VMM's, so what is measured is the grant bookkeeping
//! and the entry atomics, not a fake memory's locks.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use xen_abi::memory::XenAddToPhysmap;
use xen_abi::xen::*;
use xen_emu::guest::GuestMemory;
use xen_emu::testing::{DirectMemory, DirectPlatform, FakeVcpu};
use xen_emu::{Domain, DomainConfig};

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
