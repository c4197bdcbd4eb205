//! Two vCPUs giving back the same frames at once (`XENMEM_decrease_reservation`):
//! each frame leaves the domain once, so `tot_pages` drops by the number of
//! distinct frames, never more (the check "not ballooned yet" and the
//! marking must be one step).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use xen_abi::memory::*;
use xen_abi::xen::HYPERVISOR_MEMORY_OP as MO;
use xen_abi::DOMID_SELF;
use xen_emu::testing::FakeVcpu;
use xen_emu::Domain;

const FIRST: u64 = 0x200;
const PAGES: u64 = 256;

fn call(d: &Domain, v: &mut FakeVcpu, nr: u64, args: &[u64]) -> i64 {
    let mut a = [0u64; 5];
    a[..args.len()].copy_from_slice(args);
    d.hypercall(v, nr, a)
}

/// One-extent reservation op on `gfn` with its argument at `arg` and its
/// list at `list`; the number of extents done.
fn one(
    d: &Domain,
    mem: &xen_emu::testing::FakeMemory,
    v: &mut FakeVcpu,
    cmd: u64,
    (arg, list): (u64, u64),
    gfn: u64,
) -> i64 {
    mem.put(list, &gfn);
    mem.put(
        arg,
        &XenMemoryReservation {
            extent_start: list,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            pad: [0; 3],
        },
    );
    call(d, v, MO, &[cmd, arg])
}

#[test]
fn concurrent_decreases_of_one_frame_count_it_once() {
    let t = h();
    let (mem, d) = (t.mem.clone(), t.d.clone());
    let mut v0 = t.v;
    // XENMEM_current_reservation reads its domid from ARG.
    mem.put(ARG, &DOMID_SELF);
    let total = call(&d, &mut v0, MO, &[XENMEM_CURRENT_RESERVATION, ARG]);
    assert!(total > 0);
    for round in 0..10 {
        let start = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2u64)
            .map(|i| {
                let (mem, d, start) = (mem.clone(), d.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut v = FakeVcpu::long64(i as u32);
                    v.unmapped_from = UNMAPPED;
                    let at = (0x10_000 + 0x100 * i, 0x11_000 + 0x100 * i);
                    start.wait();
                    for gfn in FIRST..FIRST + PAGES {
                        one(&d, &mem, &mut v, XENMEM_DECREASE_RESERVATION, at, gfn);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(
            call(&d, &mut v0, MO, &[XENMEM_CURRENT_RESERVATION, ARG]),
            total - PAGES as i64,
            "round {round}: {PAGES} frames given back once each"
        );
        for gfn in FIRST..FIRST + PAGES {
            let r = one(
                &d,
                &mem,
                &mut v0,
                XENMEM_POPULATE_PHYSMAP,
                (0x12_000, 0x13_000),
                gfn,
            );
            assert_eq!(r, 1, "populate {gfn:#x}");
        }
        assert_eq!(
            call(&d, &mut v0, MO, &[XENMEM_CURRENT_RESERVATION, ARG]),
            total
        );
    }
}
