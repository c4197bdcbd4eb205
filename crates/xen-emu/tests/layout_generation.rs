//! The per-vCPU cache of host pointers to the 2-level event words follows
//! the guest-physical layout: once something else is placed at the frame
//! holding a registered `vcpu_info` (the memory's layout generation moves),
//! sends reach the page the guest now sees there, not the old one.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use common::*;
use xen_abi::vcpu::{VcpuRegisterVcpuInfo, VCPUOP_REGISTER_VCPU_INFO};
use xen_abi::xen::{VcpuInfo, HYPERVISOR_VCPU_OP as VO};
use xen_emu::guest::{Gpa, GuestMemory, GuestMode, MemError};
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::Domain;

/// [`FakeMemory`] with host pointers (so the cache is used) and frames
/// that can be made to show another frame's page, as the VMM's overlays
/// and grant aliases do, bumping the layout generation.
struct Remappable {
    inner: Arc<FakeMemory>,
    redirect: RwLock<HashMap<u64, u64>>,
    generation: AtomicU64,
}

impl Remappable {
    fn at(&self, gpa: Gpa) -> Gpa {
        match self.redirect.read().unwrap().get(&(gpa >> 12)) {
            Some(g) => (g << 12) | (gpa & 0xfff),
            None => gpa,
        }
    }
    /// Shows `to`'s page at frame `gfn` from now on.
    fn show(&self, gfn: u64, to: u64, bump: bool) {
        self.redirect.write().unwrap().insert(gfn, to);
        if bump {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

impl GuestMemory for Remappable {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(self.at(gpa), buf)
    }
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        self.inner.write(self.at(gpa), data)
    }
    fn atomic_u8(&self, gpa: Gpa) -> Result<&AtomicU8, MemError> {
        self.inner.atomic_u8(self.at(gpa))
    }
    fn atomic_u16(&self, gpa: Gpa) -> Result<&AtomicU16, MemError> {
        self.inner.atomic_u16(self.at(gpa))
    }
    fn atomic_u32(&self, gpa: Gpa) -> Result<&AtomicU32, MemError> {
        self.inner.atomic_u32(self.at(gpa))
    }
    fn atomic_u64(&self, gpa: Gpa) -> Result<&AtomicU64, MemError> {
        self.inner.atomic_u64(self.at(gpa))
    }
    fn host_range(&self, gpa: Gpa, len: usize) -> Option<NonNull<u8>> {
        if (gpa & 0xfff) as usize + len > 4096 {
            return None;
        }
        // FakeMemory keeps each page's bytes contiguous.
        let b = self.inner.atomic_u8(self.at(gpa)).ok()?;
        Some(NonNull::from(b).cast())
    }
    fn layout_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

const AREA_GFN: u64 = 0x150;
/// Where the frame's new page comes from.
const OTHER_GFN: u64 = 0x300;
const OFF: u64 = 0x40;

fn setup() -> (H, Arc<Remappable>) {
    let cfg = config();
    let fake = Arc::new(FakeMemory::new(RAM, cfg.max_grant_frames));
    let mem = Arc::new(Remappable {
        inner: fake.clone(),
        redirect: RwLock::new(HashMap::new()),
        generation: AtomicU64::new(0),
    });
    let plat = Arc::new(FakePlatform::new(fake.clone()));
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.mode = GuestMode::Long64;
    v.unmapped_from = UNMAPPED;
    let mut t = H {
        mem: fake,
        plat,
        d,
        v,
    };
    map_shinfo(&mut t);
    t.mem.put(
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: AREA_GFN,
            offset: OFF as u32,
            rsvd: 0,
        },
    );
    assert_eq!(t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG]), 0);
    (t, mem)
}

fn vcpu_info(t: &H, gfn: u64) -> (u8, u64) {
    let vi: VcpuInfo = t.mem.get((gfn << 12) + OFF);
    (vi.evtchn_upcall_pending, vi.evtchn_pending_sel)
}

/// Clears what registration and earlier sends left pending.
fn clear(t: &H) {
    t.mem.put((AREA_GFN << 12) + OFF, &[0u8; 16]);
    t.mem.put((OTHER_GFN << 12) + OFF, &[0u8; 16]);
    t.mem.put(SHINFO + 2048, &[0u64; 2]);
}

#[test]
fn events_follow_a_page_placed_over_the_vcpu_info_frame() {
    let (t, mem) = setup();
    clear(&t);
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    // First send resolves and caches the host pointers.
    t.d.backend_send(port.0).unwrap();
    assert_eq!(vcpu_info(&t, AREA_GFN), (1, 1));
    clear(&t);
    // Another page is put at the frame: the layout generation moves, and
    // the next send goes to the page now there.
    mem.show(AREA_GFN, OTHER_GFN, true);
    t.d.backend_send(port.0).unwrap();
    assert_eq!(
        vcpu_info(&t, OTHER_GFN),
        (1, 1),
        "the page now at the frame"
    );
    assert_eq!(
        vcpu_info(&t, AREA_GFN),
        (0, 0),
        "not the page that was there"
    );
}

/// The generation is what invalidates: with it unchanged the cached
/// pointers are used as they are (this is what makes the check cheap).
#[test]
fn without_a_generation_change_the_cached_pointers_stay() {
    let (t, mem) = setup();
    clear(&t);
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    t.d.backend_send(port.0).unwrap();
    clear(&t);
    mem.show(AREA_GFN, OTHER_GFN, false);
    t.d.backend_send(port.0).unwrap();
    assert_eq!(vcpu_info(&t, AREA_GFN), (1, 1));
    assert_eq!(vcpu_info(&t, OTHER_GFN), (0, 0));
}
