//! Random sequences of the backend grant API (map, read, write, unmap,
//! copies) over grant entries and frames the fuzzer writes into a fake
//! guest: never a panic, never an access outside guest memory, and a
//! grant's `GTF_reading`/`GTF_writing` are clear once nothing holds it.
//!
//! Input: byte 0 = how many 8-byte grant entries follow (they start the
//! grant frame at guest frame 0x7), the rest is a list of 8-byte operations.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use xen_emu::testing::{FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::{CopyEnd, Domain, DomainConfig};

const GT_GFN: u64 = 0x7;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let head = (usize::from(n) * 8).min(rest.len());
    let (entries, ops) = rest.split_at(head);
    let mem = Arc::new(FakeMemory::new(64 << 10, 2));
    let plat = Arc::new(FakePlatform::new(mem.clone()));
    let d = Domain::new(
        DomainConfig {
            max_grant_frames: 2,
            ..DomainConfig::default()
        },
        mem.clone(),
        plat,
    );
    let mut v = FakeVcpu::long64(0);
    // XENMEM_add_to_physmap(grant_table, 0, GT_GFN)
    let mut xatp = [0u8; 24];
    xatp[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    xatp[4..8].copy_from_slice(&1u32.to_le_bytes());
    xatp[16..24].copy_from_slice(&GT_GFN.to_le_bytes());
    mem.put(0x1000, &xatp[..]);
    assert_eq!(d.hypercall(&mut v, 12, [7, 0x1000, 0, 0, 0]), 0);
    // The guest's own in-use bits would hide ours: start with them clear.
    let mut frame = entries.to_vec();
    for e in frame.chunks_mut(8) {
        e[0] &= !(0x8 | 0x10);
    }
    mem.put(GT_GFN << 12, &frame[..]);
    let mut handles = Vec::new();
    let mut buf = [0u8; 64];
    for op in ops.chunks_exact(8) {
        let gref = u32::from(u16::from_le_bytes([op[1], op[2]]));
        let off = u16::from_le_bytes([op[3], op[4]]);
        let len = usize::from(op[5] % 65);
        match op[0] % 7 {
            0 | 1 => {
                if let Ok(m) = d.grant_map(gref, op[0] % 7 == 1) {
                    handles.push(m.handle);
                }
            }
            2 => {
                if !handles.is_empty() {
                    let h = handles.remove(usize::from(op[6]) % handles.len());
                    assert!(d.grant_unmap(h).is_ok());
                } else {
                    assert!(d.grant_unmap(u32::from(op[6])).is_err());
                }
            }
            3 => {
                if let Some(h) = handles.first() {
                    let _ = d.grant_read(*h, u32::from(off), &mut buf[..len]);
                    let _ = d.grant_write(*h, u32::from(off), &buf[..len]);
                }
            }
            4 => {
                let _ =
                    d.grant_copy_from_guest(CopyEnd::Grant { gref, offset: off }, &mut buf[..len]);
            }
            5 => {
                let _ = d.grant_copy_to_guest(CopyEnd::Grant { gref, offset: off }, &buf[..len]);
            }
            _ => {
                let _ = d.grant_copy(
                    CopyEnd::Gfn {
                        gfn: u64::from(op[6]),
                        offset: off,
                    },
                    CopyEnd::Grant { gref, offset: off },
                    len as u16,
                );
            }
        }
    }
    d.grant_unmap_all();
    for gref in 0..512u64 {
        let flags = mem.read_u32((GT_GFN << 12) + 8 * gref) as u16;
        assert_eq!(flags & (0x8 | 0x10), 0, "gref {gref} still in use");
    }
    for (gpa, len, _) in mem.accesses() {
        assert!(
            len == 0 || mem.backed(gpa, 1),
            "access outside guest memory at {gpa:#x}"
        );
    }
});
