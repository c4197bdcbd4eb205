//! Shared harness: a domain on fake memory/vCPU/platform.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};
use xen_abi::grant_table::{GrantEntryV1, GNTTABOP_MAP_GRANT_REF, GNTTABOP_UNMAP_GRANT_REF};
use xen_abi::memory::{
    E820Entry, XenAddToPhysmap, E820_RAM, E820_RESERVED, XENMAPSPACE_GRANT_TABLE,
    XENMEM_ADD_TO_PHYSMAP,
};
use xen_abi::xen::{HYPERVISOR_GRANT_TABLE_OP, HYPERVISOR_MEMORY_OP};
use xen_abi::DOMID_SELF;

use xen_abi::grant_table::{GnttabCopy, GnttabCopyPtr};
use xen_emu::guest::{Gpa, GuestMode, Gva, MemError, VcpuContext};
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::{Domain, DomainConfig};

/// 4 MiB of RAM.
pub const RAM: u64 = 4 << 20;
/// Where tests put hypercall argument structures.
pub const ARG: u64 = 0x1000;
/// Where tests put buffers the hypercall fills.
pub const BUF: u64 = 0x2000;
/// A guest-virtual address with no translation.
pub const UNMAPPED: u64 = 0x8000_0000;
/// A guest-physical address beyond RAM (translates, but nothing is there).
pub const BEYOND_RAM: u64 = RAM + 0x10_0000;
/// Where [`map_grant_frame`] puts grant frame 0.
pub const GT_GFN: u64 = 0x7000;

pub struct H {
    pub mem: Arc<FakeMemory>,
    pub plat: Arc<FakePlatform>,
    pub d: Arc<Domain>,
    pub v: FakeVcpu,
}

pub fn e820() -> Vec<E820Entry> {
    vec![
        E820Entry {
            addr: 0,
            size: 0xa0000,
            type_: E820_RAM,
        },
        E820Entry {
            addr: 0x100000,
            size: RAM - 0x100000,
            type_: E820_RAM,
        },
        E820Entry {
            addr: 0xfeff_8000,
            size: 0x8000,
            type_: E820_RESERVED,
        },
    ]
}

pub fn config() -> DomainConfig {
    DomainConfig {
        domid: 5,
        max_vcpus: 2,
        uuid: *b"0123456789abcdef",
        memory_map: e820(),
        current_pages: RAM / 4096,
        max_pages: 2 * RAM / 4096,
        ..DomainConfig::default()
    }
}

pub fn h_with(cfg: DomainConfig, mode: GuestMode) -> H {
    let mem = Arc::new(FakeMemory::new(RAM, cfg.max_grant_frames));
    let plat = Arc::new(FakePlatform::new(mem.clone()));
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.mode = mode;
    v.unmapped_from = UNMAPPED;
    H { mem, plat, d, v }
}

/// A domain with only 64 KiB of RAM (cheap to create, for property tests).
pub fn h_small(mode: GuestMode) -> H {
    let cfg = config();
    let mem = Arc::new(FakeMemory::new(64 << 10, cfg.max_grant_frames));
    // Accept any frame, so xen-emu's own bounds are what is exercised.
    let plat = Arc::new(FakePlatform {
        max_gfn: u64::MAX,
        ..FakePlatform::new(mem.clone())
    });
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.mode = mode;
    v.unmapped_from = UNMAPPED;
    H { mem, plat, d, v }
}

pub fn h() -> H {
    h_with(config(), GuestMode::Long64)
}

pub fn h32() -> H {
    h_with(config(), GuestMode::Protected32)
}

impl H {
    pub fn call(&mut self, nr: u64, args: &[u64]) -> i64 {
        let mut a = [0u64; 5];
        a[..args.len()].copy_from_slice(args);
        self.d.hypercall(&mut self.v, nr, a)
    }
}

pub fn neg(e: i64) -> i64 {
    -e
}

/// Where the core-services tests map shared_info.
pub const SHINFO_GFN: u64 = 0x10000;
pub const SHINFO: u64 = SHINFO_GFN << 12;

/// `XENMEM_add_to_physmap(shared_info)` at [`SHINFO_GFN`] (64-bit caller).
pub fn map_shinfo(t: &mut H) {
    t.mem.put(
        ARG,
        &xen_abi::memory::XenAddToPhysmap {
            domid: xen_abi::DOMID_SELF,
            size: 0,
            space: 0,
            idx: 0,
            gpfn: SHINFO_GFN,
        },
    );
    assert_eq!(t.call(xen_abi::xen::HYPERVISOR_MEMORY_OP, &[7, ARG]), 0);
}

/// `HVM_PARAM_CALLBACK_IRQ` = vector.
pub fn set_callback_vector(t: &mut H, vector: u64) {
    use xen_abi::hvm::params::*;
    t.mem.put(
        ARG,
        &xen_abi::hvm::hvm_op::XenHvmParam {
            domid: xen_abi::DOMID_SELF,
            pad: 0,
            index: HVM_PARAM_CALLBACK_IRQ,
            value: (HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | vector,
        },
    );
    assert_eq!(t.call(xen_abi::xen::HYPERVISOR_HVM_OP, &[0, ARG]), 0);
}

/// Runs an event-channel op on `op` at [`ARG`]; returns (rax, op after).
pub fn evtchn_op<T>(t: &mut H, cmd: u64, op: &T) -> (i64, T)
where
    T: zerocopy::IntoBytes + zerocopy::FromBytes + zerocopy::Immutable,
{
    t.mem.put(ARG, op);
    let r = t.call(xen_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP, &[cmd, ARG]);
    (r, t.mem.get(ARG))
}

/// Maps grant frame 0 at [`GT_GFN`] (`XENMEM_add_to_physmap`).
pub fn map_grant_frame(t: &mut H) {
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
    assert_eq!(
        t.call(HYPERVISOR_MEMORY_OP, &[XENMEM_ADD_TO_PHYSMAP, ARG]),
        0
    );
}

/// Writes grant entry `gref` (v1) in the frame at [`GT_GFN`].
pub fn grant(t: &H, gref: u32, flags: u16, domid: u16, frame: u64) {
    t.mem.put(
        (GT_GFN << 12) + 8 * u64::from(gref),
        &GrantEntryV1 {
            flags,
            domid,
            frame: frame as u32,
        },
    );
}

/// The flags of grant entry `gref`.
pub fn grant_flags(t: &H, gref: u32) -> u16 {
    t.mem
        .get::<GrantEntryV1>((GT_GFN << 12) + 8 * u64::from(gref))
        .flags
}

impl H {
    /// One `GNTTABOP_map_grant_ref` op of the guest's own; returns
    /// (status, handle, dev_bus_addr). The handle reads 0xabcd when the op
    /// left it alone.
    pub fn map_own(&mut self, host: u64, flags: u32, gref: u32, dom: u16) -> (i16, u32, u64) {
        let mut raw = [0u8; 32];
        raw[0..8].copy_from_slice(&host.to_le_bytes());
        raw[8..12].copy_from_slice(&flags.to_le_bytes());
        raw[12..16].copy_from_slice(&gref.to_le_bytes());
        raw[16..18].copy_from_slice(&dom.to_le_bytes());
        raw[18..20].copy_from_slice(&99i16.to_le_bytes());
        raw[20..24].copy_from_slice(&0xabcdu32.to_le_bytes());
        self.mem.put(ARG, &raw);
        assert_eq!(
            self.call(HYPERVISOR_GRANT_TABLE_OP, &[GNTTABOP_MAP_GRANT_REF, ARG, 1]),
            0
        );
        let out: [u8; 32] = self.mem.get(ARG);
        (
            i16::from_le_bytes([out[18], out[19]]),
            u32::from_le_bytes(out[20..24].try_into().unwrap()),
            u64::from_le_bytes(out[24..32].try_into().unwrap()),
        )
    }

    /// One `GNTTABOP_unmap_grant_ref` op at [`ARG`]; its status.
    pub fn unmap_own(&mut self, host: u64, dev: u64, handle: u32) -> i16 {
        unmap_own_on(&self.d, &self.mem, &mut self.v, ARG, host, dev, handle)
    }
}

/// One `GNTTABOP_unmap_grant_ref` op in the native layout (24 bytes) at
/// `at`, by vCPU `v`; its status.
pub fn unmap_own_on(
    d: &Domain,
    mem: &FakeMemory,
    v: &mut FakeVcpu,
    at: u64,
    host: u64,
    dev: u64,
    handle: u32,
) -> i16 {
    let mut raw = [0u8; 24];
    raw[0..8].copy_from_slice(&host.to_le_bytes());
    raw[8..16].copy_from_slice(&dev.to_le_bytes());
    raw[16..20].copy_from_slice(&handle.to_le_bytes());
    raw[20..22].copy_from_slice(&99i16.to_le_bytes());
    mem.put(at, &raw);
    let mut a = [0u64; 5];
    a[..3].copy_from_slice(&[GNTTABOP_UNMAP_GRANT_REF, at, 1]);
    assert_eq!(d.hypercall(v, HYPERVISOR_GRANT_TABLE_OP, a), 0);
    let out: [u8; 24] = mem.get(at);
    i16::from_le_bytes([out[20], out[21]])
}

// ---- continuations: a vCPU that re-runs calls, a big-RAM domain ----

/// A vCPU whose trap path can re-run hypercalls (as the VMM's).
pub struct Restartable {
    pub inner: FakeVcpu,
    pub can: bool,
    pub pending: Arc<AtomicBool>,
    /// The last continuation asked for: (hypercall, argument registers).
    pub cont: Option<(u64, Vec<u64>)>,
}

impl Restartable {
    pub fn new(inner: FakeVcpu) -> Self {
        Self {
            inner,
            can: true,
            pending: Arc::new(AtomicBool::new(false)),
            cont: None,
        }
    }
}

impl VcpuContext for Restartable {
    fn vcpu_id(&self) -> u32 {
        self.inner.vcpu_id()
    }
    fn mode(&self) -> GuestMode {
        self.inner.mode()
    }
    fn translate(&mut self, gva: Gva) -> Result<Gpa, MemError> {
        self.inner.translate(gva)
    }
    fn can_continue(&self) -> bool {
        self.can
    }
    fn preempt_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }
    fn create_continuation(&mut self, nr: u64, args: &[u64]) {
        assert!(self.can, "continuation on a path that cannot re-run");
        assert!(self.cont.is_none(), "one continuation per call");
        self.cont = Some((nr, args.to_vec()));
    }
}

/// Runs hypercall `nr` the way a guest would: whenever it comes back as a
/// continuation, re-issue it with the rewritten registers. Returns the
/// final result and every continuation's registers.
pub fn run_to_end(d: &Domain, v: &mut Restartable, nr: u64, args: &[u64]) -> (i64, Vec<Vec<u64>>) {
    let mut a = [0u64; 5];
    a[..args.len()].copy_from_slice(args);
    let mut conts = Vec::new();
    for _ in 0..10_000 {
        let r = d.hypercall(v, nr, a);
        match v.cont.take() {
            None => return (r, conts),
            Some((n, regs)) => {
                assert_eq!(n, nr, "the same hypercall again");
                assert_eq!(r, nr as i64, "Xen's continuation returns the op");
                a[..regs.len()].copy_from_slice(&regs);
                conts.push(regs);
            }
        }
    }
    panic!("no progress");
}

/// 40 MiB of RAM: room for batches longer than a chunk.
pub const BIG_RAM: u64 = 40 << 20;
pub const FIRST: u64 = 0x100;

pub fn big(mode: GuestMode) -> H {
    let cfg = DomainConfig {
        memory_map: vec![E820Entry {
            addr: 0x100000,
            size: BIG_RAM - 0x100000,
            type_: E820_RAM,
        }],
        current_pages: BIG_RAM / 4096,
        max_pages: BIG_RAM / 4096,
        ..config()
    };
    let mem = Arc::new(FakeMemory::new(BIG_RAM, cfg.max_grant_frames));
    mem.logging.store(false, Ordering::SeqCst);
    let plat = Arc::new(FakePlatform {
        can_map_grants: true,
        ..FakePlatform::new(mem.clone())
    });
    let d = Domain::new(cfg, mem.clone(), plat.clone());
    let mut v = FakeVcpu::long64(0);
    v.mode = mode;
    v.unmapped_from = UNMAPPED;
    H { mem, plat, d, v }
}

/// `n` 64-bit `gnttab_copy` ops at `uop`, op `i` copying 8 bytes from
/// frame `FIRST + i` to frame `FIRST + 0x1000 + i`.
pub fn put_copies(t: &H, uop: u64, n: u64) {
    for i in 0..n {
        t.mem.put((FIRST + i) << 12, &(0x1111_0000 + i));
        let side = |gfn: u64| GnttabCopyPtr {
            u: gfn,
            domid: DOMID_SELF,
            offset: 0,
            pad: 0,
        };
        t.mem.put(
            uop + 40 * i,
            &GnttabCopy {
                source: side(FIRST + i),
                dest: side(FIRST + 0x1000 + i),
                len: 8,
                flags: 0,
                status: 99,
                pad: 0,
            },
        );
    }
}
