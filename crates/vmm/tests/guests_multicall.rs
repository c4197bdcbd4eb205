//! Guest tests on `/dev/kvm` for `HYPERVISOR_multicall` (guest
//! `guests/c/multicall.c`, 64- and 32-bit): a mixed batch whose results
//! are Xen's, event channels driven by batches, a batch longer than the
//! VMM runs per exit (the multicall continues itself through the real
//! restart path), and a grant copy that continues inside a batch; no
//! entry may run twice.
//!
//! Without a usable `/dev/kvm` every test skips with a printed reason,
//! except when `CI=true`, where that is a failure.

use vmm::VmConfig;

mod common;
use common::guest_run::{boot, Run};
use common::kvm_usable;

fn run(name: &str) -> Option<Run> {
    if !kvm_usable(name) {
        return None;
    }
    let mut cfg = VmConfig::new(format!("xkvm-{name}"), xkvm_guests::path(name));
    cfg.memory_mib = 32;
    cfg.max_memory_mib = 32;
    Some(boot(name, cfg, None))
}

fn check(run: &Run) {
    run.assert_passed_and_powered_off();
    let once = |line: &str| {
        assert_eq!(
            run.log.matches(line).count(),
            1,
            "{line:?} must be written exactly once\n{}",
            run.report()
        );
    };
    // Console writes made by multicall entries: each entry ran once.
    once("multicall: entry 8 ran\n");
    once("multicall: copy-before\n");
    once("multicall: copy-after\n");
    assert!(
        run.value("multicall: mixed batch done").contains("port"),
        "{}",
        run.report()
    );
    assert!(
        run.log.contains("multicall: loopback done"),
        "{}",
        run.report()
    );
    assert_eq!(run.number("multicall: long batch"), 100, "{}", run.report());
    assert_eq!(run.number("multicall: copies"), 300, "{}", run.report());
}

#[test]
fn multicall_batches_continue_and_never_rerun_entries_64bit() {
    if let Some(r) = run("multicall") {
        check(&r);
    }
}

#[test]
fn multicall_batches_use_the_compat_layout_32bit() {
    if let Some(r) = run("multicall32") {
        check(&r);
    }
}
