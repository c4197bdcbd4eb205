//! The guest's own `GNTTABOP_map_grant_ref` / `unmap_grant_ref`: per-op
//! `GNTST_*` status in Xen's order of checks, the `GTF_reading` /
//! `GTF_writing` pins, and the platform asked to show the granted frame at
//! `host_addr` (and to take it away again).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use xen_abi::grant_table::*;
use xen_abi::memory::*;
use xen_abi::xen::{HYPERVISOR_GRANT_TABLE_OP as GT, HYPERVISOR_MEMORY_OP as MO};
use xen_abi::DOMID_SELF;
use xen_emu::guest::GuestMode;
use xen_emu::testing::{Event, FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::Domain;

const DATA_GFN: u64 = 0x100;
/// Not RAM (4 MiB of it): where the guest asks for its mapping.
const HOLE: u64 = 0x9000_0000;
const ME: u16 = 5;

/// A domain whose platform can alias grants, with grant frame 0 mapped.
fn setup(mode: GuestMode) -> H {
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
    let mut t = H { mem, plat, d, v };
    map_grant_frame(&mut t);
    t.v.mode = mode;
    t
}

/// The grant maps and unmaps the platform was asked for.
fn ops(t: &H) -> Vec<Event> {
    t.plat
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::GrantMap(..) | Event::GrantUnmap(_)))
        .collect()
}

#[test]
fn bad_map_ops_get_xen_status_codes_and_leave_no_pin() {
    let mut t = setup(GuestMode::Long64);
    grant(&t, 10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
    grant(&t, 11, GTF_PERMIT_ACCESS | GTF_READONLY, ME, DATA_GFN + 1);
    grant(&t, 12, GTF_PERMIT_ACCESS, 0, DATA_GFN);
    let host = 2; // GNTMAP_host_map
    let cases: [(u64, u32, u32, u16, i16); 11] = [
        (HOLE, 0, 10, ME, GNTST_BAD_GNTREF),
        (HOLE, host | 1, 10, ME, GNTST_GENERAL_ERROR),
        (HOLE, host | 8, 10, ME, GNTST_GENERAL_ERROR),
        (HOLE, host | 16, 10, ME, GNTST_GENERAL_ERROR),
        (HOLE, host, 10, DOMID_SELF, GNTST_BAD_DOMAIN),
        (HOLE, host, 10, 77, GNTST_BAD_DOMAIN),
        (HOLE, host, 1 << 20, ME, GNTST_BAD_GNTREF),
        (HOLE, host, 12, ME, GNTST_GENERAL_ERROR),
        (HOLE, host, 11, ME, GNTST_GENERAL_ERROR),
        // populated RAM, and the grant frame itself
        (0x5000, host, 10, ME, GNTST_GENERAL_ERROR),
        (GT_GFN << 12, host, 10, ME, GNTST_GENERAL_ERROR),
    ];
    for (i, (h, f, r, d, want)) in cases.into_iter().enumerate() {
        let (status, handle, _) = t.map_own(h, f, r, d);
        assert_eq!(status, want, "case {i}");
        assert_eq!(handle, 0xabcd, "case {i}: handle untouched on failure");
    }
    assert_eq!(grant_flags(&t, 10), GTF_PERMIT_ACCESS, "no pin left behind");
    assert_eq!(grant_flags(&t, 11), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert!(ops(&t).is_empty(), "nothing mapped: {:?}", ops(&t));
    // The backend domain grants nothing to guests.
    assert_eq!(t.map_own(HOLE, host, 10, 0).0, GNTST_BAD_GNTREF);
}

#[test]
fn map_pins_and_asks_the_platform_and_unmap_undoes_both() {
    let mut t = setup(GuestMode::Long64);
    grant(&t, 10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
    grant(&t, 11, GTF_PERMIT_ACCESS | GTF_READONLY, ME, DATA_GFN + 1);
    let (s, ha, dev) = t.map_own(HOLE, 2, 10, ME);
    assert_eq!((s, dev), (GNTST_OKAY, DATA_GFN << 12));
    assert_eq!(
        grant_flags(&t, 10),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    let (s, hb, _) = t.map_own(HOLE + 0x1000, 2 | 4, 11, ME);
    assert_eq!(s, GNTST_OKAY);
    assert_ne!(ha, hb);
    assert_eq!(
        grant_flags(&t, 11),
        GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
    );
    assert_eq!(
        ops(&t),
        vec![
            Event::GrantMap(HOLE >> 12, DATA_GFN << 12),
            Event::GrantMap((HOLE >> 12) + 1, (DATA_GFN + 1) << 12)
        ]
    );
    // The frame is taken.
    assert_eq!(t.map_own(HOLE, 2, 10, ME).0, GNTST_GENERAL_ERROR);
    // A ballooned RAM frame is a hole: mapping there is fine.
    let gfn = 0x200u64;
    t.mem.put(BUF, &gfn);
    t.mem.put(
        ARG,
        &XenMemoryReservation {
            extent_start: BUF,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            pad: [0; 3],
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_DECREASE_RESERVATION, ARG]), 1);
    let (s, hc, _) = t.map_own(gfn << 12, 2, 10, ME);
    assert_eq!(s, GNTST_OKAY);
    // Unmap errors.
    assert_eq!(t.unmap_own(HOLE, 0, 999), GNTST_BAD_HANDLE);
    assert_eq!(t.unmap_own(HOLE, 0x1234_5000, ha), GNTST_BAD_DEV_ADDR);
    assert_eq!(t.unmap_own(HOLE + 0x1000, 0, ha), GNTST_GENERAL_ERROR);
    assert_eq!(
        t.unmap_own(0, 0, ha),
        GNTST_OKAY,
        "no host_addr: nothing done"
    );
    assert_eq!(ops(&t).len(), 3);
    // Real unmaps: the pins go with the last one.
    assert_eq!(t.unmap_own(HOLE, DATA_GFN << 12, ha), GNTST_OKAY);
    assert_eq!(
        grant_flags(&t, 10),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        "still mapped at the ballooned frame"
    );
    assert_eq!(t.unmap_own(0x200 << 12, 0, hc), GNTST_OKAY);
    assert_eq!(grant_flags(&t, 10), GTF_PERMIT_ACCESS);
    assert_eq!(t.unmap_own(HOLE, 0, ha), GNTST_BAD_HANDLE);
    assert_eq!(t.unmap_own(HOLE + 0x1000, 0, hb), GNTST_OKAY);
    assert_eq!(grant_flags(&t, 11), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(
        &ops(&t)[3..],
        &[
            Event::GrantUnmap(HOLE >> 12),
            Event::GrantUnmap(0x200),
            Event::GrantUnmap((HOLE >> 12) + 1)
        ]
    );
}

#[test]
fn batched_unmaps_are_24_bytes_apart_in_both_abis() {
    for mode in [GuestMode::Long64, GuestMode::Protected32] {
        let mut t = setup(mode);
        grant(&t, 10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
        let (s, h, _) = t.map_own(HOLE, 2, 10, ME);
        assert_eq!(s, GNTST_OKAY, "{mode:?}");
        // Two unmap ops: an unknown handle, then the real one.
        let mut raw = [0u8; 48];
        raw[0..8].copy_from_slice(&HOLE.to_le_bytes());
        raw[16..20].copy_from_slice(&777u32.to_le_bytes());
        raw[24..32].copy_from_slice(&HOLE.to_le_bytes());
        raw[40..44].copy_from_slice(&h.to_le_bytes());
        t.mem.put(ARG, &raw);
        assert_eq!(t.call(GT, &[GNTTABOP_UNMAP_GRANT_REF, ARG, 2]), 0);
        let out: [u8; 48] = t.mem.get(ARG);
        assert_eq!(i16::from_le_bytes([out[20], out[21]]), GNTST_BAD_HANDLE);
        assert_eq!(i16::from_le_bytes([out[44], out[45]]), GNTST_OKAY);
        assert_eq!(
            grant_flags(&t, 10),
            GTF_PERMIT_ACCESS,
            "{mode:?}: second op unmapped it"
        );
    }
}

#[test]
fn a_platform_that_cannot_alias_gives_general_error_and_unpins() {
    let mut t = h();
    map_grant_frame(&mut t);
    grant(&t, 10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
    let (status, _, _) = t.map_own(HOLE, 2, 10, ME);
    assert_eq!(status, GNTST_GENERAL_ERROR);
    assert_eq!(grant_flags(&t, 10), GTF_PERMIT_ACCESS);
}
