//! Random sequences of backend grant operations (map r/w, unmap, copies)
//! and guest changes to entries, against a simple model: after every step
//! an entry has `GTF_reading` exactly while the backend holds it and
//! `GTF_writing` exactly while it holds it writable, maps succeed exactly
//! when the entry grants what was asked, and handles behave.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use xen_abi::grant_table::*;
use xen_abi::memory::*;
use xen_abi::DOMID_SELF;
use xen_emu::CopyEnd;

const GT: u64 = 0x7000;
const REFS: u32 = 4;

#[derive(Debug, Clone)]
enum Op {
    /// The guest (re)writes entry `gref` when the backend does not hold it:
    /// permit access to dom0 or to someone else, read-only or not.
    Grant {
        gref: u32,
        to_backend: bool,
        readonly: bool,
    },
    Map {
        gref: u32,
        writable: bool,
    },
    Unmap {
        nth: usize,
    },
    CopyFrom {
        gref: u32,
    },
    CopyTo {
        gref: u32,
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
        (0..REFS + 1, any::<bool>()).prop_map(|(gref, writable)| Op::Map { gref, writable }),
        (0..8usize).prop_map(|nth| Op::Unmap { nth }),
        (0..REFS).prop_map(|gref| Op::CopyFrom { gref }),
        (0..REFS).prop_map(|gref| Op::CopyTo { gref }),
    ]
}

#[derive(Default, Clone, Copy)]
struct Entry {
    granted: bool,
    readonly: bool,
}

fn entry_addr(gref: u32) -> u64 {
    (GT << 12) + 8 * u64::from(gref)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn pins_and_flags_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut t = h();
        t.mem.put(ARG, &XenAddToPhysmap { domid: DOMID_SELF, size: 0, space: XENMAPSPACE_GRANT_TABLE, idx: 0, gpfn: GT });
        prop_assert_eq!(t.call(xen_abi::xen::HYPERVISOR_MEMORY_OP, &[XENMEM_ADD_TO_PHYSMAP, ARG]), 0);
        let mut model = [Entry::default(); REFS as usize];
        // handle -> (gref, writable)
        let mut maps: Vec<(u32, u32, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Grant { gref, to_backend, readonly } => {
                    if maps.iter().any(|m| m.1 == gref) {
                        continue; // the guest cannot revoke while in use
                    }
                    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
                    t.mem.put(entry_addr(gref), &GrantEntryV1 { flags, domid: if to_backend { 0 } else { 9 }, frame: 0x100 + gref });
                    model[gref as usize] = Entry { granted: to_backend, readonly };
                }
                Op::Map { gref, writable } => {
                    let r = t.d.grant_map(gref, writable);
                    if gref >= REFS {
                        // Entries the guest never wrote are not granted.
                        prop_assert!(r.is_err());
                        continue;
                    }
                    let e = model[gref as usize];
                    let held = maps.iter().any(|m| m.1 == gref);
                    let ok = (e.granted || held) && !(writable && e.readonly);
                    prop_assert_eq!(r.is_ok(), ok, "map {} w={} model granted={} ro={} held={}", gref, writable, e.granted, e.readonly, held);
                    if let Ok(m) = r {
                        prop_assert_eq!(m.frame, u64::from(0x100 + gref) << 12);
                        maps.push((m.handle, gref, writable));
                    }
                }
                Op::Unmap { nth } => {
                    if maps.is_empty() {
                        prop_assert!(t.d.grant_unmap(123_456).is_err());
                        continue;
                    }
                    let (h, _, _) = maps.remove(nth % maps.len());
                    prop_assert!(t.d.grant_unmap(h).is_ok());
                    prop_assert!(t.d.grant_unmap(h).is_err());
                }
                Op::CopyFrom { gref } => {
                    let e = model[gref as usize];
                    let held = maps.iter().any(|m| m.1 == gref);
                    let mut buf = [0u8; 16];
                    let r = t.d.grant_copy_from_guest(CopyEnd::Grant { gref, offset: 8 }, &mut buf);
                    prop_assert_eq!(r.is_ok(), e.granted || held);
                }
                Op::CopyTo { gref } => {
                    let e = model[gref as usize];
                    let held = maps.iter().any(|m| m.1 == gref);
                    let r = t.d.grant_copy_to_guest(CopyEnd::Grant { gref, offset: 8 }, &[1u8; 16]);
                    prop_assert_eq!(r.is_ok(), (e.granted || held) && !e.readonly);
                }
            }
            // Invariant: flags reflect exactly what the backend holds.
            for gref in 0..REFS {
                let flags = t.mem.get::<GrantEntryV1>(entry_addr(gref)).flags;
                let readers = maps.iter().filter(|m| m.1 == gref).count();
                let writers = maps.iter().filter(|m| m.1 == gref && m.2).count();
                prop_assert_eq!(flags & GTF_READING != 0, readers > 0, "gref {} flags {:#x}", gref, flags);
                prop_assert_eq!(flags & GTF_WRITING != 0, writers > 0, "gref {} flags {:#x}", gref, flags);
            }
        }
    }
}
