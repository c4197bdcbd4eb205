//! Two vCPUs unmapping the same handle of the guest's own grant mapping at
//! once: the handle is freed exactly once (Xen's maptrack), so one gets
//! `GNTST_okay` and the other `GNTST_bad_handle`, and the pin goes once.
//! The second unmap runs from inside the platform's `unmap_grant_page` of
//! the first, which is the window where both used to see the handle live.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex, Weak};

use common::*;
use xen_abi::grant_table::*;
use xen_emu::testing::{Event, FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::Domain;

const DATA_GFN: u64 = 0x100;
const HOLE: u64 = 0x9000_0000;
const ME: u16 = 5;
/// Where the nested (second vCPU's) unmap op lives.
const ARG2: u64 = ARG + 0x100;

#[test]
fn concurrent_unmaps_of_one_handle_free_it_once() {
    let cfg = config();
    assert_eq!(cfg.domid, u32::from(ME));
    let mem = Arc::new(FakeMemory::new(RAM, cfg.max_grant_frames));
    let plat = Arc::new(FakePlatform {
        can_map_grants: true,
        ..FakePlatform::new(mem.clone())
    });
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.unmapped_from = UNMAPPED;
    let mut t = H {
        mem: mem.clone(),
        plat: plat.clone(),
        d: d.clone(),
        v,
    };
    map_grant_frame(&mut t);
    grant(&t, 0, GTF_PERMIT_ACCESS, ME, DATA_GFN);
    let (status, handle, _) = t.map_own(HOLE, 2, 0, ME);
    assert_eq!(status, GNTST_OKAY);

    // vCPU 1 unmaps the same handle while vCPU 0 is inside its unmap.
    let second = Arc::new(Mutex::new(None));
    {
        let second = second.clone();
        let dw: Weak<Domain> = Arc::downgrade(&d);
        let mem = mem.clone();
        *plat.on_unmap_grant.lock().unwrap() = Some(Box::new(move || {
            let d = dw.upgrade().unwrap();
            let mut v1 = FakeVcpu::long64(1);
            v1.unmapped_from = UNMAPPED;
            *second.lock().unwrap() = Some(unmap_own_on(&d, &mem, &mut v1, ARG2, HOLE, 0, handle));
        }));
    }
    let first = t.unmap_own(HOLE, 0, handle);
    let second = second.lock().unwrap().expect("the nested unmap ran");
    let mut statuses = [first, second];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [GNTST_BAD_HANDLE, GNTST_OKAY],
        "exactly one unmap of a handle succeeds (got {first}, {second})"
    );
    assert_eq!(grant_flags(&t, 0), GTF_PERMIT_ACCESS, "the pin is gone");
    assert_eq!(t.unmap_own(HOLE, 0, handle), GNTST_BAD_HANDLE);
    let unmaps = plat
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::GrantUnmap(_)))
        .count();
    assert_eq!(unmaps, 1, "the platform was asked to unmap once");
}
