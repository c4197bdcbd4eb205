//! Guest tests on `/dev/kvm` for the guest's own memory (issue 5):
//! ballooned pages go back to the host (`balloon`), and the guest maps its
//! own grants at a guest-physical address of its choosing with
//! `GNTTABOP_map_grant_ref` and unmaps them (`gntmap`), with Xen's
//! `GNTST_*` codes for bad arguments.
//!
//! Without a usable `/dev/kvm` every test skips with a printed reason,
//! except when `CI=true`, where that is a failure.

use vmm::VmConfig;

mod common;
use common::guest_run::boot;
use common::kvm_usable;

fn config(name: &str) -> VmConfig {
    let mut cfg = VmConfig::new(format!("xkvm-mem-{name}"), xkvm_guests::path(name));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    cfg
}

/// The guest touches 16 MiB (4096 pages), balloons them out, and reads back
/// through the test probe how many are still resident in the VMM's memory
/// (`mincore` on the host range): all before, none after.
#[test]
fn ballooned_pages_go_back_to_the_host_and_come_back_zeroed() {
    if !kvm_usable("balloon") {
        return;
    }
    let mut cfg = config("balloon");
    cfg.debug_hypercall = true;
    let run = boot("balloon", cfg, None);
    run.assert_passed_and_powered_off();
    let before = run.number("balloon: resident before");
    let v = run.value("balloon: resident before");
    let words: Vec<&str> = v.split_whitespace().collect();
    let after: u64 = words
        .get(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no 'after' count\n{}", run.report()));
    let repopulated: u64 = words
        .get(4)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no 'repopulated' count\n{}", run.report()));
    assert_eq!(before, 4096, "all touched pages resident\n{}", run.report());
    assert_eq!(after, 0, "ballooned pages freed\n{}", run.report());
    // The guest reads a few zero pages after the probe; before it, nothing
    // of the range was touched again.
    assert_eq!(repopulated, 0, "{}", run.report());
}

#[test]
fn guest_maps_and_unmaps_its_own_grants_with_xen_status_codes() {
    if !kvm_usable("gntmap") {
        return;
    }
    let run = boot("gntmap", config("gntmap"), None);
    run.assert_passed_and_powered_off();
    assert_eq!(run.number("gntmap: mapped"), 4, "{}", run.report());
}
