//! Hypercall continuations (Xen's `hypercall_create_continuation`): a long
//! reservation or grant-table batch stops after a bounded chunk, or as soon
//! as the platform wants the vCPU back, with the argument registers
//! rewritten as Xen rewrites them; re-issuing the call finishes the batch
//! with the same result as one uninterrupted call.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use xen_abi::grant_table::*;
use xen_abi::memory::*;
use xen_abi::xen::{HYPERVISOR_GRANT_TABLE_OP as GT, HYPERVISOR_MEMORY_OP as MO};
use xen_abi::DOMID_SELF;
use xen_emu::guest::GuestMode;

/// Puts a reservation for `gfns` at [`ARG`] (list at `list`).
fn put_reservation(t: &H, list: u64, gfns: &[u64], compat: bool) {
    if compat {
        let l: Vec<u32> = gfns.iter().map(|&g| g as u32).collect();
        t.mem.put(list, l.as_slice());
        t.mem.put(
            ARG,
            &XenMemoryReservationCompat {
                extent_start: list as u32,
                nr_extents: gfns.len() as u32,
                extent_order: 0,
                mem_flags: 0,
                domid: DOMID_SELF,
                pad: 0,
            },
        );
    } else {
        t.mem.put(list, gfns);
        t.mem.put(
            ARG,
            &XenMemoryReservation {
                extent_start: list,
                nr_extents: gfns.len() as u64,
                extent_order: 0,
                mem_flags: 0,
                domid: DOMID_SELF,
                pad: [0; 3],
            },
        );
    }
}

fn current_reservation(t: &mut H) -> i64 {
    t.mem.put(ARG + 0x100, &DOMID_SELF);
    t.call(MO, &[XENMEM_CURRENT_RESERVATION, ARG + 0x100])
}

/// Where the extent lists go (below FIRST's frame, above ARG).
const LIST: u64 = 0x10000;

#[test]
fn huge_decrease_stops_after_a_chunk_and_resumes_to_the_same_result() {
    let n = 8192u64;
    let gfns: Vec<u64> = (FIRST..FIRST + n).collect();
    // Reference: one uninterrupted call (a path that cannot re-run).
    let mut plain = big(GuestMode::Long64);
    let before = current_reservation(&mut plain);
    put_reservation(&plain, LIST, &gfns, false);
    let mut v = Restartable::new(plain.v.clone());
    v.can = false;
    let (r, conts) = run_to_end(&plain.d, &mut v, MO, &[XENMEM_DECREASE_RESERVATION, ARG]);
    assert_eq!(r, n as i64);
    assert!(conts.is_empty());
    let plain_after = current_reservation(&mut plain);
    assert_eq!(plain_after, before - n as i64);

    let mut t = big(GuestMode::Long64);
    t.mem.put((FIRST + n - 1) << 12, &[0x5au8; 8]);
    put_reservation(&t, LIST, &gfns, false);
    let mut v = Restartable::new(t.v.clone());
    // One invocation: a bounded chunk, then a continuation naming the next
    // extent in the command, the argument pointer unchanged.
    let r =
        t.d.hypercall(&mut v, MO, [XENMEM_DECREASE_RESERVATION, ARG, 0, 0, 0]);
    assert_eq!(r, MO as i64);
    let (nr, regs) = v.cont.take().expect("a continuation");
    assert_eq!(nr, MO);
    let chunk = 4096u64;
    assert_eq!(
        regs,
        vec![
            XENMEM_DECREASE_RESERVATION | (chunk << MEMOP_EXTENT_SHIFT),
            ARG
        ]
    );
    assert_eq!(current_reservation(&mut t), before - chunk as i64);
    assert_eq!(
        t.mem.get::<[u8; 8]>((FIRST + n - 1) << 12),
        [0x5a; 8],
        "not yet"
    );
    // The guest re-issues it: done, with the result of the single call.
    let (r, conts) = run_to_end(&t.d, &mut v, MO, &regs);
    assert_eq!(r, n as i64);
    assert!(conts.is_empty());
    assert_eq!(current_reservation(&mut t), plain_after);
    assert_eq!(t.mem.get::<[u8; 8]>((FIRST + n - 1) << 12), [0; 8]);

    // Populating them back goes the same way (two chunks).
    let (r, conts) = run_to_end(&t.d, &mut v, MO, &[XENMEM_POPULATE_PHYSMAP, ARG]);
    assert_eq!(r, n as i64);
    assert_eq!(
        conts,
        vec![vec![
            XENMEM_POPULATE_PHYSMAP | (chunk << MEMOP_EXTENT_SHIFT),
            ARG
        ]]
    );
    assert_eq!(current_reservation(&mut t), before);
}

#[test]
fn a_pending_stop_preempts_after_one_extent_and_a_failure_still_counts() {
    for compat in [false, true] {
        let mode = if compat {
            GuestMode::Protected32
        } else {
            GuestMode::Long64
        };
        let mut t = big(mode);
        let before = current_reservation(&mut t);
        // The sixth frame is not RAM: the batch ends there, as in one call.
        let gfns = [
            FIRST,
            FIRST + 1,
            FIRST + 2,
            FIRST + 3,
            FIRST + 4,
            0xf_ffff,
            FIRST + 6,
        ];
        put_reservation(&t, LIST, &gfns, compat);
        let mut v = Restartable::new(t.v.clone());
        v.pending.store(true, Ordering::SeqCst);
        let mut a = [XENMEM_DECREASE_RESERVATION, ARG];
        for done in 1..5u64 {
            assert_eq!(t.d.hypercall(&mut v, MO, [a[0], a[1], 0, 0, 0]), MO as i64);
            let (_, regs) = v.cont.take().expect("preempted");
            assert_eq!(
                regs,
                vec![
                    XENMEM_DECREASE_RESERVATION | (done << MEMOP_EXTENT_SHIFT),
                    ARG
                ],
                "compat {compat}"
            );
            a = [regs[0], regs[1]];
        }
        v.pending.store(false, Ordering::SeqCst);
        let (r, conts) = run_to_end(&t.d, &mut v, MO, &a);
        assert_eq!(r, 5, "compat {compat}");
        assert!(conts.is_empty());
        assert_eq!(current_reservation(&mut t), before - 5);
        // A small call with nothing pending is untouched.
        put_reservation(&t, LIST, &[FIRST + 10, FIRST + 11], compat);
        let (r, conts) = run_to_end(&t.d, &mut v, MO, &[XENMEM_DECREASE_RESERVATION, ARG]);
        assert_eq!((r, conts.len()), (2, 0));
    }
}

#[test]
fn a_count_too_big_to_continue_is_refused_as_in_xen() {
    let mut t = big(GuestMode::Long64);
    t.mem.put(
        ARG,
        &XenMemoryReservation {
            extent_start: LIST,
            nr_extents: u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) + 1,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            pad: [0; 3],
        },
    );
    let before = current_reservation(&mut t);
    let mut v = Restartable::new(t.v.clone());
    let (r, _) = run_to_end(&t.d, &mut v, MO, &[XENMEM_DECREASE_RESERVATION, ARG]);
    assert_eq!(r, 0);
    assert_eq!(current_reservation(&mut t), before);
}

#[test]
fn a_long_grant_copy_advances_uop_and_reduces_count() {
    let n = 600u64;
    let uop = 0x20000;
    let t = big(GuestMode::Long64);
    put_copies(&t, uop, n);
    let mut v = Restartable::new(t.v.clone());
    let (r, conts) = run_to_end(&t.d, &mut v, GT, &[GNTTABOP_COPY, uop, n]);
    assert_eq!(r, 0);
    assert_eq!(
        conts,
        vec![
            vec![GNTTABOP_COPY, uop + 40 * 256, n - 256],
            vec![GNTTABOP_COPY, uop + 40 * 512, n - 512],
        ]
    );
    for i in 0..n {
        let op: GnttabCopy = t.mem.get(uop + 40 * i);
        assert_eq!(op.status, GNTST_OKAY, "op {i}");
        assert_eq!(
            t.mem.get::<u64>((FIRST + 0x1000 + i) << 12),
            0x1111_0000 + i
        );
    }
    // The same batch on a path that cannot re-run: one call, same result.
    let t2 = big(GuestMode::Long64);
    put_copies(&t2, uop, n);
    let mut v2 = Restartable::new(t2.v.clone());
    v2.can = false;
    let (r2, conts2) = run_to_end(&t2.d, &mut v2, GT, &[GNTTABOP_COPY, uop, n]);
    assert_eq!((r2, conts2.len()), (0, 0));
    for i in 0..n {
        assert_eq!(
            t2.mem.get::<[u8; 40]>(uop + 40 * i),
            t.mem.get::<[u8; 40]>(uop + 40 * i)
        );
    }
}

#[test]
fn long_map_and_unmap_batches_continue_in_both_abis() {
    for mode in [GuestMode::Long64, GuestMode::Protected32] {
        let mut t = big(GuestMode::Long64);
        map_grant_frame(&mut t);
        t.v.mode = mode;
        let me = 5u16;
        let n = 300u64;
        let hole = 0x9000_0000u64;
        let uop = 0x20000u64;
        for i in 0..n {
            grant(&t, i as u32 + 8, GTF_PERMIT_ACCESS, me, FIRST + i);
            let mut raw = [0u8; 32];
            raw[0..8].copy_from_slice(&(hole + (i << 12)).to_le_bytes());
            raw[8..12].copy_from_slice(&2u32.to_le_bytes()); // GNTMAP_host_map
            raw[12..16].copy_from_slice(&(i as u32 + 8).to_le_bytes());
            raw[16..18].copy_from_slice(&me.to_le_bytes());
            t.mem.put(uop + 32 * i, &raw);
        }
        let mut v = Restartable::new(t.v.clone());
        let (r, conts) = run_to_end(&t.d, &mut v, GT, &[GNTTABOP_MAP_GRANT_REF, uop, n]);
        assert_eq!(r, 0);
        assert_eq!(
            conts,
            vec![vec![GNTTABOP_MAP_GRANT_REF, uop + 32 * 256, n - 256]],
            "{mode:?}"
        );
        let mut handles = Vec::new();
        for i in 0..n {
            let out: [u8; 32] = t.mem.get(uop + 32 * i);
            assert_eq!(i16::from_le_bytes([out[18], out[19]]), GNTST_OKAY, "op {i}");
            handles.push(u32::from_le_bytes(out[20..24].try_into().unwrap()));
        }
        handles.sort_unstable();
        handles.dedup();
        assert_eq!(handles.len() as u64, n, "each map its own handle");
        // Unmap them all in one batch (24-byte ops).
        let uop2 = 0x40000u64;
        for i in 0..n {
            let out: [u8; 32] = t.mem.get(uop + 32 * i);
            let mut raw = [0u8; 24];
            raw[0..8].copy_from_slice(&(hole + (i << 12)).to_le_bytes());
            raw[16..20].copy_from_slice(&out[20..24]);
            raw[20..22].copy_from_slice(&99i16.to_le_bytes());
            t.mem.put(uop2 + 24 * i, &raw);
        }
        let (r, conts) = run_to_end(&t.d, &mut v, GT, &[GNTTABOP_UNMAP_GRANT_REF, uop2, n]);
        assert_eq!(r, 0);
        assert_eq!(
            conts,
            vec![vec![GNTTABOP_UNMAP_GRANT_REF, uop2 + 24 * 256, n - 256]]
        );
        for i in 0..n {
            let raw: [u8; 24] = t.mem.get(uop2 + 24 * i);
            assert_eq!(i16::from_le_bytes([raw[20], raw[21]]), GNTST_OKAY, "op {i}");
            assert_eq!(grant_flags(&t, i as u32 + 8), GTF_PERMIT_ACCESS, "unpinned");
        }
    }
}
