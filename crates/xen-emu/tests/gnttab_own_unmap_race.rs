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
use xen_abi::memory::*;
use xen_abi::xen::{HYPERVISOR_GRANT_TABLE_OP as GT, HYPERVISOR_MEMORY_OP as MO};
use xen_abi::DOMID_SELF;
use xen_emu::guest::Gpa;
use xen_emu::platform::{MapError, Platform, ShutdownReason, SpecialPage, Upcall};
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::Domain;

const GT_GFN: u64 = 0x7000;
const DATA_GFN: u64 = 0x100;
const HOLE: u64 = 0x9000_0000;
const ME: u16 = 5;
/// Where the nested (second vCPU's) unmap op lives.
const ARG2: u64 = ARG + 0x100;

type Hook = Box<dyn FnOnce() + Send>;

struct RacePlatform {
    inner: FakePlatform,
    unmaps: Mutex<u32>,
    /// Run (once) inside the first `unmap_grant_page`.
    hook: Mutex<Option<Hook>>,
}

impl Platform for RacePlatform {
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
    fn map_grant_page(&self, _gfn: u64, _frame: Gpa) -> Result<(), MapError> {
        Ok(())
    }
    fn unmap_grant_page(&self, _gfn: u64) {
        *self.unmaps.lock().unwrap() += 1;
        let hook = self.hook.lock().unwrap().take();
        if let Some(h) = hook {
            h();
        }
    }
}

fn call(d: &Domain, v: &mut FakeVcpu, nr: u64, args: &[u64]) -> i64 {
    let mut a = [0u64; 5];
    a[..args.len()].copy_from_slice(args);
    d.hypercall(v, nr, a)
}

/// One native unmap op at `at`; its status.
fn unmap(d: &Domain, mem: &FakeMemory, v: &mut FakeVcpu, at: u64, handle: u32) -> i16 {
    let mut raw = [0u8; 24];
    raw[0..8].copy_from_slice(&HOLE.to_le_bytes());
    raw[16..20].copy_from_slice(&handle.to_le_bytes());
    raw[20..22].copy_from_slice(&99i16.to_le_bytes());
    mem.put(at, &raw);
    assert_eq!(call(d, v, GT, &[GNTTABOP_UNMAP_GRANT_REF, at, 1]), 0);
    let out: [u8; 24] = mem.get(at);
    i16::from_le_bytes([out[20], out[21]])
}

#[test]
fn concurrent_unmaps_of_one_handle_free_it_once() {
    let cfg = config();
    assert_eq!(cfg.domid, u32::from(ME));
    let mem = Arc::new(FakeMemory::new(RAM, cfg.max_grant_frames));
    let plat = Arc::new(RacePlatform {
        inner: FakePlatform::new(mem.clone()),
        unmaps: Mutex::new(0),
        hook: Mutex::new(None),
    });
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.unmapped_from = UNMAPPED;
    mem.put(
        ARG,
        &XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_GRANT_TABLE,
            idx: 0,
            gpfn: GT_GFN,
        },
    );
    assert_eq!(call(&d, &mut v, MO, &[XENMEM_ADD_TO_PHYSMAP, ARG]), 0);
    let entry = GT_GFN << 12;
    mem.put(
        entry,
        &GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: ME,
            frame: DATA_GFN as u32,
        },
    );
    let mut raw = [0u8; 32];
    raw[0..8].copy_from_slice(&HOLE.to_le_bytes());
    raw[8..12].copy_from_slice(&2u32.to_le_bytes()); // GNTMAP_host_map
    raw[12..16].copy_from_slice(&0u32.to_le_bytes());
    raw[16..18].copy_from_slice(&ME.to_le_bytes());
    mem.put(ARG, &raw);
    assert_eq!(call(&d, &mut v, GT, &[GNTTABOP_MAP_GRANT_REF, ARG, 1]), 0);
    let out: [u8; 32] = mem.get(ARG);
    assert_eq!(i16::from_le_bytes([out[18], out[19]]), GNTST_OKAY);
    let handle = u32::from_le_bytes(out[20..24].try_into().unwrap());

    // vCPU 1 unmaps the same handle while vCPU 0 is inside its unmap.
    let second = Arc::new(Mutex::new(None));
    {
        let second = second.clone();
        let dw: Weak<Domain> = Arc::downgrade(&d);
        let mem = mem.clone();
        *plat.hook.lock().unwrap() = Some(Box::new(move || {
            let d = dw.upgrade().unwrap();
            let mut v1 = FakeVcpu::long64(1);
            v1.unmapped_from = UNMAPPED;
            *second.lock().unwrap() = Some(unmap(&d, &mem, &mut v1, ARG2, handle));
        }));
    }
    let first = unmap(&d, &mem, &mut v, ARG, handle);
    let second = second.lock().unwrap().expect("the nested unmap ran");
    let mut statuses = [first, second];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [GNTST_BAD_HANDLE, GNTST_OKAY],
        "exactly one unmap of a handle succeeds (got {first}, {second})"
    );
    assert_eq!(
        mem.get::<GrantEntryV1>(entry).flags,
        GTF_PERMIT_ACCESS,
        "the pin is gone"
    );
    assert_eq!(unmap(&d, &mem, &mut v, ARG, handle), GNTST_BAD_HANDLE);
}
