//! `rtc_timeoffset` / `localtime`: the domain's time offset
//! (`XEN_DOMCTL_settimeoffset`) moves the wallclock in shared_info.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::memory::*;
use xen_abi::xen::{SharedInfo, HYPERVISOR_MEMORY_OP as MO};
use xen_abi::DOMID_SELF;
use xen_emu::guest::GuestMode;

fn wallclock_with_offset(offset: i32) -> (i64, i64) {
    let mut t = h_with(
        xen_emu::DomainConfig {
            time_offset_seconds: offset,
            ..config()
        },
        GuestMode::Long64,
    );
    let gfn = 0x300;
    t.mem.put(
        ARG,
        &XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: XENMAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn: gfn,
        },
    );
    assert_eq!(t.call(MO, &[XENMEM_ADD_TO_PHYSMAP, ARG]), 0);
    let s: SharedInfo = t.mem.get(gfn << 12);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sec = (u64::from(s.wc_sec_hi) << 32 | u64::from(s.wc_sec)) as i64;
    (sec, now)
}

#[test]
fn a_positive_time_offset_is_added_to_the_wallclock() {
    let (sec, now) = wallclock_with_offset(3600);
    assert!((sec - (now + 3600)).abs() < 5, "wallclock {sec}, now {now}");
}

#[test]
fn a_negative_time_offset_is_subtracted() {
    let (sec, now) = wallclock_with_offset(-86_400);
    assert!(
        (sec - (now - 86_400)).abs() < 5,
        "wallclock {sec}, now {now}"
    );
}

#[test]
fn no_offset_is_utc() {
    let (sec, now) = wallclock_with_offset(0);
    assert!((sec - now).abs() < 5, "wallclock {sec}, now {now}");
}
