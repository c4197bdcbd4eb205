//! The toolstack's domctls: a memory limit moved while the guest runs
//! (`xl mem-set` / `mem-max`) and the per-vCPU info behind `xl vcpu-list`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use common::*;
use xen_abi::memory::*;
use xen_abi::xen::HYPERVISOR_MEMORY_OP as MO;
use xen_abi::DOMID_SELF;

fn reservation(t: &mut H, cmd: u64, gfns: &[u64]) -> i64 {
    t.mem.put(BUF, gfns);
    t.mem.put(
        ARG,
        &XenMemoryReservation {
            extent_start: BUF,
            nr_extents: gfns.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            pad: [0; 3],
        },
    );
    t.call(MO, &[cmd, ARG])
}

#[test]
fn a_lowered_limit_refuses_repopulating_until_it_is_raised() {
    let mut t = h();
    let held = t.d.tot_pages();
    assert_eq!(
        reservation(&mut t, XENMEM_DECREASE_RESERVATION, &[0x200, 0x201]),
        2
    );
    assert_eq!(t.d.tot_pages(), held - 2);
    // As `xl mem-set` with enforce: the limit follows the new target.
    t.d.set_max_pages(held - 2);
    t.mem.put(ARG, &DOMID_SELF);
    assert_eq!(
        t.call(MO, &[XENMEM_MAXIMUM_RESERVATION, ARG]),
        (held - 2) as i64
    );
    assert_eq!(reservation(&mut t, XENMEM_POPULATE_PHYSMAP, &[0x200]), 0);
    assert_eq!(t.d.tot_pages(), held - 2);
    t.d.set_max_pages(held);
    assert_eq!(t.d.max_pages(), held);
    assert_eq!(
        reservation(&mut t, XENMEM_POPULATE_PHYSMAP, &[0x200, 0x201]),
        2
    );
    assert_eq!(t.d.tot_pages(), held);
}

#[test]
fn a_limit_below_what_the_guest_holds_leaves_its_pages() {
    let t = h();
    let held = t.d.tot_pages();
    t.d.set_max_pages(1);
    assert_eq!(t.d.tot_pages(), held);
}

#[test]
fn only_the_boot_vcpu_is_online_at_start() {
    let t = h();
    assert_eq!(t.d.max_vcpus(), 2);
    assert!(t.d.vcpu_info(0).unwrap().online);
    let v1 = t.d.vcpu_info(1).unwrap();
    assert!(!v1.online && !v1.running && !v1.blocked, "{v1:?}");
    assert!(t.d.vcpu_info(2).is_none());
}
