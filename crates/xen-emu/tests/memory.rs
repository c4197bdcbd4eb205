//! `memory_op`: memory map, reservations, add_to_physmap.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::errno::*;
use xen_abi::grant_table::GrantEntryV1;
use xen_abi::memory::*;
use xen_abi::xen::{SharedInfo, SharedInfoCompat, HYPERVISOR_MEMORY_OP as MO};
use xen_abi::DOMID_SELF;
use xen_emu::platform::SpecialPage;
use xen_emu::testing::Event;

#[test]
fn memory_map_copies_e820_and_count() {
    let mut t = h();
    t.mem.put(
        ARG,
        &XenMemoryMap {
            nr_entries: 16,
            pad: 0,
            buffer: BUF,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, ARG]), 0);
    let m: XenMemoryMap = t.mem.get(ARG);
    assert_eq!(m.nr_entries, 3);
    let e: [E820Entry; 3] = t.mem.get(BUF);
    assert_eq!(e.to_vec(), e820());
}

#[test]
fn memory_map_clips_to_callers_capacity() {
    let mut t = h();
    t.mem.put(BUF + 20, &[0xaau8; 20]);
    t.mem.put(
        ARG,
        &XenMemoryMap {
            nr_entries: 1,
            pad: 0,
            buffer: BUF,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, ARG]), 0);
    assert_eq!(t.mem.get::<XenMemoryMap>(ARG).nr_entries, 1);
    assert_eq!(
        t.mem.get::<[u8; 20]>(BUF + 20),
        [0xaa; 20],
        "second entry untouched"
    );
}

#[test]
fn memory_map_compat_layout() {
    let mut t = h32();
    t.mem.put(
        ARG,
        &XenMemoryMapCompat {
            nr_entries: 8,
            buffer: BUF as u32,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, ARG]), 0);
    assert_eq!(t.mem.get::<XenMemoryMapCompat>(ARG).nr_entries, 3);
    let e: [E820Entry; 3] = t.mem.get(BUF);
    assert_eq!(e.to_vec(), e820());
}

#[test]
fn memory_map_bad_pointers_fault() {
    let mut t = h();
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, UNMAPPED]), -EFAULT);
    t.mem.put(
        ARG,
        &XenMemoryMap {
            nr_entries: 3,
            pad: 0,
            buffer: BEYOND_RAM,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, ARG]), -EFAULT);
}

#[test]
fn memory_map_without_e820_is_enosys() {
    let mut t = h_with(
        xen_emu::DomainConfig {
            memory_map: vec![],
            ..config()
        },
        xen_emu::guest::GuestMode::Long64,
    );
    t.mem.put(
        ARG,
        &XenMemoryMap {
            nr_entries: 3,
            pad: 0,
            buffer: BUF,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, ARG]), -ENOSYS);
}

#[test]
fn set_memory_map_replaces_the_map() {
    let mut t = h();
    let new = [E820Entry {
        addr: 0,
        size: 0x1000,
        type_: E820_RAM,
    }];
    t.mem.put(BUF, &new);
    t.mem.put(
        ARG,
        &XenForeignMemoryMap {
            domid: DOMID_SELF,
            pad: [0; 3],
            map: XenMemoryMap {
                nr_entries: 1,
                pad: 0,
                buffer: BUF,
            },
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_SET_MEMORY_MAP, ARG]), 0);
    t.mem.put(
        ARG,
        &XenMemoryMap {
            nr_entries: 16,
            pad: 0,
            buffer: BUF + 0x100,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_MEMORY_MAP, ARG]), 0);
    assert_eq!(t.mem.get::<XenMemoryMap>(ARG).nr_entries, 1);
    assert_eq!(t.mem.get::<E820Entry>(BUF + 0x100), new[0]);
}

#[test]
fn set_memory_map_checks_size_and_domain() {
    let mut t = h();
    t.mem.put(
        ARG,
        &XenForeignMemoryMap {
            domid: DOMID_SELF,
            pad: [0; 3],
            map: XenMemoryMap {
                nr_entries: E820MAX + 1,
                pad: 0,
                buffer: BUF,
            },
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_SET_MEMORY_MAP, ARG]), -EINVAL);
    t.mem.put(
        ARG,
        &XenForeignMemoryMap {
            domid: 0,
            pad: [0; 3],
            map: XenMemoryMap {
                nr_entries: 1,
                pad: 0,
                buffer: BUF,
            },
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_SET_MEMORY_MAP, ARG]), -EPERM);
    t.mem.put(
        ARG,
        &XenForeignMemoryMap {
            domid: 77,
            pad: [0; 3],
            map: XenMemoryMap {
                nr_entries: 1,
                pad: 0,
                buffer: BUF,
            },
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_SET_MEMORY_MAP, ARG]), -ESRCH);
}

#[test]
fn reservations_report_config() {
    let mut t = h();
    t.mem.put(ARG, &DOMID_SELF);
    assert_eq!(
        t.call(MO, &[XENMEM_CURRENT_RESERVATION, ARG]),
        (RAM / 4096) as i64
    );
    assert_eq!(
        t.call(MO, &[XENMEM_MAXIMUM_RESERVATION, ARG]),
        (2 * RAM / 4096) as i64
    );
    assert_eq!(
        t.call(MO, &[XENMEM_MAXIMUM_GPFN, ARG]),
        ((RAM - 1) / 4096) as i64
    );
    t.mem.put(ARG, &5u16);
    assert_eq!(
        t.call(MO, &[XENMEM_CURRENT_RESERVATION, ARG]),
        (RAM / 4096) as i64
    );
    t.mem.put(ARG, &9u16);
    assert_eq!(t.call(MO, &[XENMEM_CURRENT_RESERVATION, ARG]), -ESRCH);
    assert_eq!(t.call(MO, &[XENMEM_CURRENT_RESERVATION, UNMAPPED]), -EFAULT);
}

fn atp(t: &mut H, space: u32, idx: u64, gpfn: u64) -> i64 {
    t.mem.put(
        ARG,
        &XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space,
            idx,
            gpfn,
        },
    );
    t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, ARG])
}

#[test]
fn shared_info_maps_at_frame_without_ram_and_gets_wallclock() {
    let mut t = h();
    let gfn = 0xf_0000; // far beyond the 4 MiB of RAM
    assert_eq!(atp(&mut t, XENMAPSPACE_SHARED_INFO, 0, gfn), 0);
    assert_eq!(t.mem.placed_at(SpecialPage::SharedInfo), Some(gfn));
    let s: SharedInfo = t.mem.get(gfn << 12);
    assert!(s.wc_version % 2 == 0 && s.wc_version > 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now as i64 - s.wc_sec as i64).abs() < 5,
        "wallclock {} vs {}",
        s.wc_sec,
        now
    );
    // Legacy vcpu_info slots get pvclocks.
    let ev = t.plat.events();
    assert!(ev.contains(&Event::Pvclock(0, (gfn << 12) + 32)));
    assert!(ev.contains(&Event::Pvclock(1, (gfn << 12) + 64 + 32)));
}

#[test]
fn shared_info_for_32bit_guest_uses_compat_wallclock() {
    let mut t = h32();
    t.mem.put(
        ARG,
        &XenAddToPhysmapCompat {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn: 0x300,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, ARG]), 0);
    let s: SharedInfoCompat = t.mem.get(0x300 << 12);
    assert!(s.wc_sec > 1_600_000_000);
    assert_eq!(s.wc_version % 2, 0);
}

#[test]
fn shared_info_moves_keep_contents() {
    let mut t = h();
    assert_eq!(atp(&mut t, XENMAPSPACE_SHARED_INFO, 0, 0x200), 0);
    t.mem.put((0x200 << 12) + 3000, &0x1234u32);
    assert_eq!(atp(&mut t, XENMAPSPACE_SHARED_INFO, 0, 0x5000), 0);
    assert_eq!(t.mem.read_u32((0x5000 << 12) + 3000), 0x1234);
}

#[test]
fn add_to_physmap_argument_errors() {
    let mut t = h();
    assert_eq!(atp(&mut t, XENMAPSPACE_SHARED_INFO, 1, 0x200), -EINVAL);
    assert_eq!(atp(&mut t, XENMAPSPACE_GRANT_TABLE, 64, 0x200), -EINVAL);
    assert_eq!(
        atp(
            &mut t,
            XENMAPSPACE_GRANT_TABLE,
            XENMAPIDX_GRANT_TABLE_STATUS,
            0x200
        ),
        -EINVAL
    );
    assert_eq!(atp(&mut t, XENMAPSPACE_GMFN_FOREIGN, 0, 0x200), -ENOSYS);
    assert_eq!(atp(&mut t, 99, 0, 0x200), -EINVAL);
    // The platform refuses a frame beyond the physical address width.
    assert_eq!(atp(&mut t, XENMAPSPACE_SHARED_INFO, 0, 1 << 40), -EINVAL);
    t.mem.put(
        ARG,
        &XenAddToPhysmap {
            domid: 0,
            size: 0,
            space: 0,
            idx: 0,
            gpfn: 0x200,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, ARG]), -EPERM);
    assert_eq!(t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, UNMAPPED]), -EFAULT);
    assert_eq!(t.call(MO, &[40, ARG]), -ENOSYS);
}

#[test]
fn grant_frame_zero_gets_seeded_entries_on_first_map() {
    let mut t = h();
    t.d.seed_grant(0, 0, 0xfeff8).unwrap();
    t.d.seed_grant(1, 0, 0xfeff9).unwrap();
    assert_eq!(atp(&mut t, XENMAPSPACE_GRANT_TABLE, 0, 0x7000), 0);
    let e: [GrantEntryV1; 2] = t.mem.get(0x7000 << 12);
    assert_eq!(
        e[0],
        GrantEntryV1 {
            flags: 1,
            domid: 0,
            frame: 0xfeff8
        }
    );
    assert_eq!(
        e[1],
        GrantEntryV1 {
            flags: 1,
            domid: 0,
            frame: 0xfeff9
        }
    );
    assert_eq!(atp(&mut t, XENMAPSPACE_GRANT_TABLE, 63, 0x7001), 0);
    assert!(t
        .plat
        .events()
        .contains(&Event::Map(SpecialPage::GrantFrame(63), 0x7001)));
    assert!(t.d.seed_grant(600, 0, 1).is_err());
}
