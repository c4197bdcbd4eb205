//! The guest's own `GNTTABOP_map_grant_ref` / `unmap_grant_ref`: per-op
//! `GNTST_*` status in Xen's order of checks, the `GTF_reading` /
//! `GTF_writing` pins, and the platform asked to show the granted frame at
//! `host_addr` (and to take it away again).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use xen_abi::grant_table::*;
use xen_abi::memory::*;
use xen_abi::xen::{HYPERVISOR_GRANT_TABLE_OP as GT, HYPERVISOR_MEMORY_OP as MO};
use xen_abi::DOMID_SELF;
use xen_emu::guest::{Gpa, GuestMode};
use xen_emu::platform::{MapError, Platform, ShutdownReason, SpecialPage, Upcall};
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::Domain;

const GT_GFN: u64 = 0x7000;
const DATA_GFN: u64 = 0x100;
/// Not RAM (4 MiB of it): where the guest asks for its mapping.
const HOLE: u64 = 0x9000_0000;
const ME: u16 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Map(u64, Gpa),
    Unmap(u64),
}

/// FakePlatform plus grant mappings, recorded.
struct GrantPlatform {
    inner: FakePlatform,
    ops: Mutex<Vec<Op>>,
}

impl Platform for GrantPlatform {
    fn upcall(&self, vcpu: u32, upcall: Upcall) {
        self.inner.upcall(vcpu, upcall)
    }
    fn map_special_page(&self, page: SpecialPage, gfn: u64) -> Result<(), MapError> {
        self.inner.map_special_page(page, gfn)
    }
    fn set_pvclock_area(&self, vcpu: u32, gpa: Gpa) {
        self.inner.set_pvclock_area(vcpu, gpa)
    }
    fn shutdown(&self, reason: ShutdownReason) {
        self.inner.shutdown(reason)
    }
    fn console_io_write(&self, bytes: &[u8]) {
        self.inner.console_io_write(bytes)
    }
    fn kick(&self, vcpu: u32) {
        self.inner.kick(vcpu)
    }
    fn system_time_ns(&self) -> u64 {
        self.inner.system_time_ns()
    }
    fn map_grant_page(&self, gfn: u64, frame: Gpa) -> Result<(), MapError> {
        self.ops.lock().unwrap().push(Op::Map(gfn, frame));
        Ok(())
    }
    fn unmap_grant_page(&self, gfn: u64) {
        self.ops.lock().unwrap().push(Op::Unmap(gfn));
    }
}

struct T {
    mem: Arc<FakeMemory>,
    plat: Arc<GrantPlatform>,
    d: Arc<Domain>,
    v: FakeVcpu,
}

impl T {
    fn call(&mut self, nr: u64, args: &[u64]) -> i64 {
        let mut a = [0u64; 5];
        a[..args.len()].copy_from_slice(args);
        self.d.hypercall(&mut self.v, nr, a)
    }
    fn ops(&self) -> Vec<Op> {
        self.plat.ops.lock().unwrap().clone()
    }
    fn grant(&self, gref: u32, flags: u16, domid: u16, frame: u64) {
        self.mem.put(
            (GT_GFN << 12) + 8 * u64::from(gref),
            &GrantEntryV1 {
                flags,
                domid,
                frame: frame as u32,
            },
        );
    }
    fn flags(&self, gref: u32) -> u16 {
        self.mem
            .get::<GrantEntryV1>((GT_GFN << 12) + 8 * u64::from(gref))
            .flags
    }
    /// One map op; returns (status, handle, dev_bus_addr).
    fn map(&mut self, host: u64, flags: u32, gref: u32, dom: u16) -> (i16, u32, u64) {
        let mut raw = [0u8; 32];
        raw[0..8].copy_from_slice(&host.to_le_bytes());
        raw[8..12].copy_from_slice(&flags.to_le_bytes());
        raw[12..16].copy_from_slice(&gref.to_le_bytes());
        raw[16..18].copy_from_slice(&dom.to_le_bytes());
        raw[18..20].copy_from_slice(&99i16.to_le_bytes());
        raw[20..24].copy_from_slice(&0xabcdu32.to_le_bytes());
        self.mem.put(ARG, &raw);
        assert_eq!(self.call(GT, &[GNTTABOP_MAP_GRANT_REF, ARG, 1]), 0);
        let out: [u8; 32] = self.mem.get(ARG);
        (
            i16::from_le_bytes([out[18], out[19]]),
            u32::from_le_bytes(out[20..24].try_into().unwrap()),
            u64::from_le_bytes(out[24..32].try_into().unwrap()),
        )
    }
    /// One unmap op in the native layout (24 bytes); its status.
    fn unmap(&mut self, host: u64, dev: u64, handle: u32) -> i16 {
        let mut raw = [0u8; 24];
        raw[0..8].copy_from_slice(&host.to_le_bytes());
        raw[8..16].copy_from_slice(&dev.to_le_bytes());
        raw[16..20].copy_from_slice(&handle.to_le_bytes());
        raw[20..22].copy_from_slice(&99i16.to_le_bytes());
        self.mem.put(ARG, &raw);
        assert_eq!(self.call(GT, &[GNTTABOP_UNMAP_GRANT_REF, ARG, 1]), 0);
        let out: [u8; 24] = self.mem.get(ARG);
        i16::from_le_bytes([out[20], out[21]])
    }
}

fn setup(mode: GuestMode) -> T {
    let cfg = config();
    assert_eq!(cfg.domid, u32::from(ME));
    let mem = Arc::new(FakeMemory::new(RAM, cfg.max_grant_frames));
    let plat = Arc::new(GrantPlatform {
        inner: FakePlatform::new(mem.clone()),
        ops: Mutex::new(Vec::new()),
    });
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.unmapped_from = UNMAPPED;
    let mut t = T { mem, plat, d, v };
    t.mem.put(
        ARG,
        &XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_GRANT_TABLE,
            idx: 0,
            gpfn: GT_GFN,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, ARG]), 0);
    t.v.mode = mode;
    t
}

#[test]
fn bad_map_ops_get_xen_status_codes_and_leave_no_pin() {
    let mut t = setup(GuestMode::Long64);
    t.grant(10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
    t.grant(11, GTF_PERMIT_ACCESS | GTF_READONLY, ME, DATA_GFN + 1);
    t.grant(12, GTF_PERMIT_ACCESS, 0, DATA_GFN);
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
        let (status, handle, _) = t.map(h, f, r, d);
        assert_eq!(status, want, "case {i}");
        assert_eq!(handle, 0xabcd, "case {i}: handle untouched on failure");
    }
    assert_eq!(t.flags(10), GTF_PERMIT_ACCESS, "no pin left behind");
    assert_eq!(t.flags(11), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert!(t.ops().is_empty(), "nothing mapped: {:?}", t.ops());
    // The backend domain grants nothing to guests.
    assert_eq!(t.map(HOLE, host, 10, 0).0, GNTST_BAD_GNTREF);
}

#[test]
fn map_pins_and_asks_the_platform_and_unmap_undoes_both() {
    let mut t = setup(GuestMode::Long64);
    t.grant(10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
    t.grant(11, GTF_PERMIT_ACCESS | GTF_READONLY, ME, DATA_GFN + 1);
    let (s, ha, dev) = t.map(HOLE, 2, 10, ME);
    assert_eq!((s, dev), (GNTST_OKAY, DATA_GFN << 12));
    assert_eq!(t.flags(10), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
    let (s, hb, _) = t.map(HOLE + 0x1000, 2 | 4, 11, ME);
    assert_eq!(s, GNTST_OKAY);
    assert_ne!(ha, hb);
    assert_eq!(t.flags(11), GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING);
    assert_eq!(
        t.ops(),
        vec![
            Op::Map(HOLE >> 12, DATA_GFN << 12),
            Op::Map((HOLE >> 12) + 1, (DATA_GFN + 1) << 12)
        ]
    );
    // The frame is taken.
    assert_eq!(t.map(HOLE, 2, 10, ME).0, GNTST_GENERAL_ERROR);
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
    let (s, hc, _) = t.map(gfn << 12, 2, 10, ME);
    assert_eq!(s, GNTST_OKAY);
    // Unmap errors.
    assert_eq!(t.unmap(HOLE, 0, 999), GNTST_BAD_HANDLE);
    assert_eq!(t.unmap(HOLE, 0x1234_5000, ha), GNTST_BAD_DEV_ADDR);
    assert_eq!(t.unmap(HOLE + 0x1000, 0, ha), GNTST_GENERAL_ERROR);
    assert_eq!(t.unmap(0, 0, ha), GNTST_OKAY, "no host_addr: nothing done");
    assert_eq!(t.ops().len(), 3);
    // Real unmaps: the pins go with the last one.
    assert_eq!(t.unmap(HOLE, DATA_GFN << 12, ha), GNTST_OKAY);
    assert_eq!(
        t.flags(10),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        "still mapped at the ballooned frame"
    );
    assert_eq!(t.unmap(0x200 << 12, 0, hc), GNTST_OKAY);
    assert_eq!(t.flags(10), GTF_PERMIT_ACCESS);
    assert_eq!(t.unmap(HOLE, 0, ha), GNTST_BAD_HANDLE);
    assert_eq!(t.unmap(HOLE + 0x1000, 0, hb), GNTST_OKAY);
    assert_eq!(t.flags(11), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(
        &t.ops()[3..],
        &[
            Op::Unmap(HOLE >> 12),
            Op::Unmap(0x200),
            Op::Unmap((HOLE >> 12) + 1)
        ]
    );
}

#[test]
fn batched_unmaps_are_24_bytes_apart_in_both_abis() {
    for mode in [GuestMode::Long64, GuestMode::Protected32] {
        let mut t = setup(mode);
        t.grant(10, GTF_PERMIT_ACCESS, ME, DATA_GFN);
        let (s, h, _) = t.map(HOLE, 2, 10, ME);
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
            t.flags(10),
            GTF_PERMIT_ACCESS,
            "{mode:?}: second op unmapped it"
        );
    }
}

#[test]
fn a_platform_that_cannot_alias_gives_general_error_and_unpins() {
    let mut t = h();
    t.mem.put(
        ARG,
        &XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_GRANT_TABLE,
            idx: 0,
            gpfn: GT_GFN,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, ARG]), 0);
    t.mem.put(
        (GT_GFN << 12) + 80,
        &GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: ME,
            frame: DATA_GFN as u32,
        },
    );
    let mut raw = [0u8; 32];
    raw[0..8].copy_from_slice(&HOLE.to_le_bytes());
    raw[8..12].copy_from_slice(&2u32.to_le_bytes());
    raw[12..16].copy_from_slice(&10u32.to_le_bytes());
    raw[16..18].copy_from_slice(&ME.to_le_bytes());
    t.mem.put(ARG, &raw);
    assert_eq!(t.call(GT, &[GNTTABOP_MAP_GRANT_REF, ARG, 1]), 0);
    let out: [u8; 32] = t.mem.get(ARG);
    assert_eq!(i16::from_le_bytes([out[18], out[19]]), GNTST_GENERAL_ERROR);
    let e: GrantEntryV1 = t.mem.get((GT_GFN << 12) + 80);
    assert_eq!(e.flags, GTF_PERMIT_ACCESS);
}
