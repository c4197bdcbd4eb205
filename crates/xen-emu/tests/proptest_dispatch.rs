//! Random hypercall numbers and arguments through the dispatcher: it never
//! panics, only returns 0.. or a Xen errno, and touches memory only where
//! the fake RAM or a placed special page is.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use proptest::prelude::*;
use xen_abi::xen::*;
use xen_emu::guest::GuestMode;

/// Values that hit interesting paths more often than uniform u64s do.
fn arg() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        Just(ARG),
        Just(BUF),
        Just(UNMAPPED),
        Just(BEYOND_RAM),
        Just(xen_abi::DOMID_SELF as u64),
        Just(u64::MAX >> 12),
        Just((1u64 << 40) - 1),
        (0u64..(64 << 10)),
        any::<u64>(),
    ]
}

/// A sub-op: mostly the small numbers Xen uses.
fn sub_op() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..14, 1 => any::<u64>()]
}

/// 64-bit words for argument structures: domids, pointers, huge frames.
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(5),
        Just(xen_abi::DOMID_SELF as u64),
        Just(BUF),
        Just(u64::MAX >> 12),
        Just(0x1_0000),
        any::<u64>(),
    ]
}

fn nr() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(HYPERVISOR_XEN_VERSION),
        Just(HYPERVISOR_CONSOLE_IO),
        Just(HYPERVISOR_MEMORY_OP),
        Just(HYPERVISOR_HVM_OP),
        Just(HYPERVISOR_GRANT_TABLE_OP),
        Just(HYPERVISOR_EVENT_CHANNEL_OP),
        Just(HYPERVISOR_VCPU_OP),
        Just(HYPERVISOR_PHYSDEV_OP),
        Just(HYPERVISOR_SCHED_OP),
        0u64..64,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]
    #[test]
    fn random_calls_never_panic_or_escape_memory(
        calls in prop::collection::vec((nr(), sub_op(), [arg(), arg(), arg(), arg()], any::<bool>(), prop::collection::vec(word(), 8)), 1..8)
    ) {
        for (nr, sub, rest, compat, fill) in calls {
            let args = [sub, rest[0], rest[1], rest[2], rest[3]];
            let mut t = h_small(if compat { GuestMode::Protected32 } else { GuestMode::Long64 });
            // Random argument structures at ARG.
            t.mem.put(ARG, &fill[..]);
            t.mem.put(ARG + 64, &fill[..]);
            // Never block: SCHEDOP_block/poll would wait for an event.
            if (nr & 0xffff_ffff) == HYPERVISOR_SCHED_OP && matches!(args[0] & 0xffff_ffff, 1 | 3) {
                continue;
            }
            let r = t.call(nr, &args);
            prop_assert!(r >= 0 || (-133..0).contains(&r), "nr {nr} args {args:x?} -> {r}");
            for (gpa, len, _) in t.mem.accesses() {
                prop_assert!(len == 0 || t.mem.backed(gpa, 1), "access at {gpa:#x}");
            }
        }
    }
}

/// The case proptest found: a 32-bit GNTTABOP_copy batch whose ops copy
/// zero bytes at gpa 0 (a zero-length access touches nothing, so it is
/// no escape).
#[test]
fn zero_length_grant_copies_are_not_escapes() {
    let mut t = h_small(GuestMode::Protected32);
    let fill: [u64; 8] = [0, 0, 65536, 32752, 32752, 0, 0, 0];
    t.mem.put(ARG, &fill[..]);
    t.mem.put(ARG + 64, &fill[..]);
    let r = t.call(HYPERVISOR_GRANT_TABLE_OP, &[5, 4, 4096, 0, 0]);
    assert!(r >= 0 || (-133..0).contains(&r), "-> {r}");
    for (gpa, len, _) in t.mem.accesses() {
        assert!(len == 0 || t.mem.backed(gpa, 1), "access at {gpa:#x}");
    }
}
