//! Random multicall entry arrays, in both layouts, on a path that cannot
//! continue and on one that can (with random preemption): the multicall
//! never panics, returns 0 or a Xen errno, every `result` it writes is a
//! value or an errno, it only touches guest memory, and re-issuing its
//! continuations always ends.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use xen_abi::xen::*;
use xen_emu::guest::{Gpa, GuestMode, Gva, MemError, VcpuContext};
use xen_emu::testing::FakeVcpu;

const LIST: u64 = 0x4000;

fn op() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(HYPERVISOR_XEN_VERSION),
        Just(HYPERVISOR_CONSOLE_IO),
        Just(HYPERVISOR_MEMORY_OP),
        Just(HYPERVISOR_HVM_OP),
        Just(HYPERVISOR_GRANT_TABLE_OP),
        Just(HYPERVISOR_EVENT_CHANNEL_OP),
        Just(HYPERVISOR_VCPU_OP),
        Just(HYPERVISOR_PHYSDEV_OP),
        Just(HYPERVISOR_SET_TIMER_OP),
        Just(HYPERVISOR_MULTICALL),
        Just(HYPERVISOR_DOMCTL),
        Just(HYPERVISOR_MMUEXT_OP),
        Just(HYPERVISOR_DM_OP),
        0u64..64,
        any::<u64>(),
    ]
}

fn arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        Just(ARG),
        Just(BUF),
        Just(LIST),
        Just(UNMAPPED),
        Just(BEYOND_RAM),
        Just(u64::from(xen_abi::DOMID_SELF)),
        (0u64..(64 << 10)),
        any::<u64>(),
    ]
}

fn entry() -> impl Strategy<Value = (u64, [u64; 6])> {
    (op(), [arg(), arg(), arg(), arg(), arg(), arg()])
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..12, 1 => Just(u64::from(u32::MAX)), 1 => any::<u64>()]
}

fn list() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => Just(LIST),
        1 => Just(UNMAPPED - 64),
        1 => Just(BEYOND_RAM),
        1 => any::<u64>(),
    ]
}

/// A vCPU that can re-run calls, with a preemption request that flips at
/// random (from a seed) on every question.
struct Flaky {
    inner: FakeVcpu,
    seed: std::cell::Cell<u64>,
    cont: Option<(u64, Vec<u64>)>,
    /// Set: no more preemption requests (the chunk bound still applies).
    calm: Arc<AtomicBool>,
}

impl VcpuContext for Flaky {
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
        true
    }
    fn preempt_pending(&self) -> bool {
        let s = self
            .seed
            .get()
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed.set(s);
        !self.calm.load(Ordering::SeqCst) && (s >> 61) == 0
    }
    fn create_continuation(&mut self, nr: u64, args: &[u64]) {
        assert!(self.cont.is_none(), "one continuation per call");
        self.cont = Some((nr, args.to_vec()));
    }
}

fn is_errno_or_value(r: i64) -> bool {
    r >= 0 || (-133..0).contains(&r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]
    #[test]
    fn random_entry_arrays_never_panic_or_escape_memory(
        entries in prop::collection::vec(entry(), 0..10),
        fill in prop::collection::vec(any::<u64>(), 16),
        n in count(),
        at in list(),
        compat in any::<bool>(),
        restartable in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mode = if compat { GuestMode::Protected32 } else { GuestMode::Long64 };
        let mut t = h_small(mode);
        t.mem.put(ARG, &fill[..]);
        t.mem.put(BUF, &fill[..]);
        let size = if compat { 32 } else { 64 };
        for (i, (op, args)) in entries.iter().enumerate() {
            // SCHEDOP_block/poll would wait for an event that never comes.
            let op = if *op & 0xffff_ffff == HYPERVISOR_SCHED_OP { HYPERVISOR_XEN_VERSION } else { *op };
            let at = LIST + size * i as u64;
            if compat {
                let e = MulticallEntryCompat {
                    op: op as u32,
                    result: 0x5a5a,
                    args: args.map(|a| a as u32),
                };
                t.mem.put(at, &e);
            } else {
                t.mem.put(at, &MulticallEntry { op, result: 0x5a5a, args: *args });
            }
        }
        let n_written = entries.len().min(n as usize);
        let args = [at, n, 0, 0, 0];
        let r = if restartable {
            let mut v = Flaky {
                inner: t.v.clone(),
                seed: std::cell::Cell::new(seed),
                cont: None,
                calm: Arc::new(AtomicBool::new(false)),
            };
            let mut a = args;
            let mut rounds = 0;
            loop {
                let r = t.d.hypercall(&mut v, HYPERVISOR_MULTICALL, a);
                let Some((nr, regs)) = v.cont.take() else { break r };
                prop_assert_eq!(nr, HYPERVISOR_MULTICALL);
                prop_assert_eq!(regs.len(), 2);
                // Each continuation names a later (or the same, continued)
                // entry and fewer or as many entries left.
                prop_assert!(regs[1] <= a[1] & 0xffff_ffff);
                a[0] = regs[0];
                a[1] = regs[1];
                rounds += 1;
                // Past this many rounds, only the chunk bound preempts.
                if rounds > 256 {
                    v.calm.store(true, Ordering::SeqCst);
                }
                prop_assert!(rounds < 100_000, "no progress");
            }
        } else {
            t.call(HYPERVISOR_MULTICALL, &args)
        };
        prop_assert!(is_errno_or_value(r), "multicall -> {}", r);
        // An entry's own call may write into the list (a grant copy
        // whose op array is the list, say), as it could under Xen: the
        // results are then whatever it wrote.
        let list_end = LIST + size * entries.len() as u64;
        let aliased = entries.iter().any(|(_, args)| {
            args.iter().any(|&a| {
                let a = if compat { a & 0xffff_ffff } else { a };
                a < list_end + 4096 && a.saturating_add(4096) > LIST
            })
        });
        if at == LIST && r == 0 && !aliased {
            for i in 0..n_written {
                let at = LIST + size * i as u64;
                let res = if compat {
                    i64::from(t.mem.get::<MulticallEntryCompat>(at).result as i32)
                } else {
                    t.mem.get::<MulticallEntry>(at).result as i64
                };
                prop_assert!(res == 0x5a5a || is_errno_or_value(res), "entry {} -> {}", i, res);
            }
        }
        for (gpa, len, _) in t.mem.accesses() {
            prop_assert!(len == 0 || t.mem.backed(gpa, 1), "access at {gpa:#x}");
        }
    }
}
