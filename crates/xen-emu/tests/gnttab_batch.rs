//! The batched backend grant API (`grant_map_batch` / `grant_unmap_batch`)
//! against the one-at-a-time model: a batch maps exactly when every grant
//! in it would map, in order; a failing batch reports the index `grant_map`
//! would have failed at and leaves nothing mapped or pinned; pins are
//! counted per reference across overlapping batches, so `GTF_reading` /
//! `GTF_writing` stay set exactly while some mapping holds the entry.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use xen_abi::grant_table::*;
use xen_emu::GrantError;

const REFS: u32 = 4;
/// A handle no batch ever hands out.
const BOGUS: u32 = 999_999;

fn setup() -> H {
    let mut t = h();
    map_grant_frame(&mut t);
    t
}

fn held_flags(t: &H, gref: u32) -> u16 {
    grant_flags(t, gref) & (GTF_READING | GTF_WRITING)
}

#[test]
fn a_bad_grant_in_the_middle_leaves_no_pin_behind() {
    let t = setup();
    grant(&t, 1, GTF_PERMIT_ACCESS, 0, 0x101);
    grant(&t, 2, GTF_PERMIT_ACCESS, 0, 0x102);
    grant(&t, 3, GTF_PERMIT_ACCESS | GTF_READONLY, 0, 0x103);
    grant(&t, 4, GTF_PERMIT_ACCESS, 0, 0x104);

    // Writable map of a read-only grant at index 2.
    let r =
        t.d.grant_map_batch(&[(1, true), (2, false), (3, true), (4, true)]);
    let (i, e) = r.unwrap_err();
    assert_eq!((i, e.status()), (2, GNTST_GENERAL_ERROR));
    // A reference past the table at index 1.
    let (i, e) =
        t.d.grant_map_batch(&[(1, true), (1 << 20, false), (4, true)])
            .unwrap_err();
    assert_eq!((i, e), (1, GrantError::BadGntref(1 << 20)));
    for gref in 1..=4 {
        assert_eq!(held_flags(&t, gref), 0, "gref {gref} left pinned");
    }
    // Nothing stayed pinned: each entry can be revoked and maps fresh.
    let ms = t.d.grant_map_batch(&[(1, true), (2, false)]).unwrap();
    assert_eq!(held_flags(&t, 1), GTF_READING | GTF_WRITING);
    assert_eq!(held_flags(&t, 2), GTF_READING);
    let hs: Vec<u32> = ms.iter().map(|m| m.handle).collect();
    t.d.grant_unmap_batch(&hs).unwrap();
    assert_eq!((held_flags(&t, 1), held_flags(&t, 2)), (0, 0));
}

#[test]
fn overlapping_batches_count_pins_per_reference() {
    let t = setup();
    grant(&t, 5, GTF_PERMIT_ACCESS, 0, 0x105);
    grant(&t, 6, GTF_PERMIT_ACCESS, 0, 0x106);
    let a = t.d.grant_map_batch(&[(5, true), (6, false)]).unwrap();
    // The same reference twice in one batch, and again in a second one.
    let b =
        t.d.grant_map_batch(&[(6, true), (5, false), (6, false)])
            .unwrap();
    assert_eq!(a[0].frame, 0x105 << 12);
    assert_eq!(b[0].frame, 0x106 << 12);
    let mut all: Vec<u32> = a.iter().chain(&b).map(|m| m.handle).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 5, "every mapping its own handle");

    let handles = |v: &[xen_emu::GrantMapping]| v.iter().map(|m| m.handle).collect::<Vec<_>>();
    t.d.grant_unmap_batch(&handles(&a)).unwrap();
    // b still holds 5 read-only and 6 writable.
    assert_eq!(held_flags(&t, 5), GTF_READING);
    assert_eq!(held_flags(&t, 6), GTF_READING | GTF_WRITING);
    // A bad handle in the middle: the others are still unmapped.
    let mut hb = handles(&b);
    hb.insert(1, BOGUS);
    let (i, e) = t.d.grant_unmap_batch(&hb).unwrap_err();
    assert_eq!((i, e), (1, GrantError::BadHandle(BOGUS)));
    assert_eq!((held_flags(&t, 5), held_flags(&t, 6)), (0, 0));
    // Unmapping again: every handle is gone.
    assert_eq!(
        t.d.grant_unmap_batch(&handles(&b)).unwrap_err().1.status(),
        GNTST_BAD_HANDLE
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// The guest (re)writes an entry the backend does not hold.
    Grant {
        gref: u32,
        to_backend: bool,
        readonly: bool,
    },
    MapBatch(Vec<(u32, bool)>),
    /// Unmaps the held mappings picked by index (modulo), with a bogus
    /// handle at `bogus` (an index into the batch) if given.
    UnmapBatch {
        picks: Vec<usize>,
        bogus: Option<usize>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..REFS, any::<bool>(), any::<bool>()).prop_map(|(gref, to_backend, readonly)| {
            Op::Grant {
                gref,
                to_backend,
                readonly,
            }
        }),
        // REFS itself is never granted.
        proptest::collection::vec((0..REFS + 1, any::<bool>()), 1..6).prop_map(Op::MapBatch),
        (
            proptest::collection::vec(0..16usize, 0..5),
            proptest::option::of(0..5usize)
        )
            .prop_map(|(picks, bogus)| Op::UnmapBatch { picks, bogus }),
    ]
}

#[derive(Default, Clone, Copy)]
struct Entry {
    granted: bool,
    readonly: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn batches_match_the_one_at_a_time_model(ops in proptest::collection::vec(op(), 1..30)) {
        let t = setup();
        let mut model = [Entry::default(); REFS as usize];
        // Live mappings: (handle, gref, writable).
        let mut maps: Vec<(u32, u32, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Grant { gref, to_backend, readonly } => {
                    if maps.iter().any(|m| m.1 == gref) {
                        continue; // the guest cannot revoke while in use
                    }
                    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
                    grant(&t, gref, flags, if to_backend { 0 } else { 9 }, 0x100 + u64::from(gref));
                    model[gref as usize] = Entry { granted: to_backend, readonly };
                }
                Op::MapBatch(batch) => {
                    // Where one grant_map at a time would first fail.
                    let fails = batch.iter().position(|&(gref, w)| {
                        let Some(e) = model.get(gref as usize) else { return true };
                        let held = maps.iter().any(|m| m.1 == gref);
                        !((e.granted || held) && !(w && e.readonly))
                    });
                    match t.d.grant_map_batch(&batch) {
                        Ok(ms) => {
                            prop_assert_eq!(fails, None, "batch {:?} mapped", batch);
                            prop_assert_eq!(ms.len(), batch.len());
                            for (m, &(gref, w)) in ms.iter().zip(&batch) {
                                prop_assert_eq!((m.gref, m.writable), (gref, w));
                                prop_assert_eq!(m.frame, (0x100 + u64::from(gref)) << 12);
                                prop_assert!(maps.iter().all(|x| x.0 != m.handle), "handle reused while live");
                                maps.push((m.handle, gref, w));
                            }
                        }
                        Err((i, _)) => prop_assert_eq!(fails, Some(i), "batch {:?}", batch),
                    }
                }
                Op::UnmapBatch { picks, bogus } => {
                    let mut handles = Vec::new();
                    for p in picks {
                        if maps.is_empty() {
                            break;
                        }
                        let (h, _, _) = maps.remove(p % maps.len());
                        handles.push(h);
                    }
                    let bad_at = bogus.map(|b| b.min(handles.len()));
                    if let Some(b) = bad_at {
                        handles.insert(b, BOGUS);
                    }
                    let r = t.d.grant_unmap_batch(&handles);
                    match bad_at {
                        Some(b) => prop_assert_eq!(r, Err((b, GrantError::BadHandle(BOGUS)))),
                        None => prop_assert_eq!(r, Ok(())),
                    }
                    for h in handles {
                        prop_assert!(t.d.grant_unmap(h).is_err(), "handle {} still mapped", h);
                    }
                }
            }
            // Flags reflect exactly what the backend holds: a failed batch
            // left nothing, overlapping mappings keep theirs.
            for gref in 0..REFS {
                let flags = grant_flags(&t, gref);
                let readers = maps.iter().filter(|m| m.1 == gref).count();
                let writers = maps.iter().filter(|m| m.1 == gref && m.2).count();
                prop_assert_eq!(flags & GTF_READING != 0, readers > 0, "gref {} flags {:#x}", gref, flags);
                prop_assert_eq!(flags & GTF_WRITING != 0, writers > 0, "gref {} flags {:#x}", gref, flags);
            }
        }
    }
}
