//! Shared harness: a domain on fake memory/vCPU/platform.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use std::sync::Arc;

use xen_abi::memory::{E820Entry, E820_RAM, E820_RESERVED};
use xen_emu::guest::GuestMode;
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
