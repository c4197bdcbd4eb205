//! Random hypercall numbers, register arguments and argument structures
//! (through a fake guest memory) into the dispatcher. It must never panic,
//! must return 0.. or a Xen errno, and the fake memory refuses (and would
//! report) any access outside guest RAM and placed special pages.
//!
//! Blocking calls end when a waker thread wakes the vCPU (as the VMM does
//! on pause or destroy), so they are fuzzed too.
//!
//! Input: byte 0 = flags (bit 0: 32-bit guest), then 6 little-endian u64
//! (nr + 5 args), then bytes copied to guest memory at 0x1000.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock, Weak};

use libfuzzer_sys::fuzz_target;
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::{Domain, DomainConfig};

/// The domain under test, which the waker thread keeps waking.
fn current() -> &'static Mutex<Weak<Domain>> {
    static CURRENT: OnceLock<Mutex<Weak<Domain>>> = OnceLock::new();
    CURRENT.get_or_init(|| {
        std::thread::spawn(|| loop {
            let d = current()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .upgrade();
            if let Some(d) = d {
                d.wake_all();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        });
        Mutex::new(Weak::new())
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 1 + 48 {
        return;
    }
    let compat = data[0] & 1 != 0;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[1 + 8 * i..9 + 8 * i]);
        u64::from_le_bytes(b)
    };
    let nr = word(0);
    let args = [word(1), word(2), word(3), word(4), word(5)];
    let mem = Arc::new(FakeMemory::new(64 << 10, 4));
    mem.put(0x1000, &data[49..data.len().min(49 + 0x4000)]);
    let plat = Arc::new(FakePlatform::new(mem.clone()));
    let d = Domain::new(
        DomainConfig {
            max_grant_frames: 4,
            max_vcpus: 2,
            ..DomainConfig::default()
        },
        mem.clone(),
        plat,
    );
    let mut v = if compat {
        FakeVcpu::prot32(0)
    } else {
        FakeVcpu::long64(0)
    };
    v.unmapped_from = 0x8000_0000;
    // RFLAGS.IF and whether the platform takes SCHEDOP_block over.
    v.interrupts = data[0] & 2 != 0;
    v.halts = data[0] & 4 != 0;
    // SCHEDOP_block / SCHEDOP_poll (directly or as multicall entries) wait
    // for an event no one sends here: one waker thread for the whole run
    // stands in for the VMM, which wakes a blocked vCPU when it wants its
    // thread back.
    *current().lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&d);
    let r = d.hypercall(&mut v, nr, args);
    assert!(r >= 0 || (-133..0).contains(&r), "bad return {r}");
    for (gpa, len, _) in mem.accesses() {
        assert!(
            len == 0 || mem.backed(gpa, 1),
            "access outside guest memory at {gpa:#x}"
        );
    }
});
