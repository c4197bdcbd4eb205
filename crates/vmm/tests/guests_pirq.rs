//! Guest test on `/dev/kvm` for PIRQs (issue 5): guest `pirq` maps GSIs to
//! PIRQs, reserves an MSI PIRQ, binds them to event channels and receives
//! the events the VMM raises as an emulated device would (through the
//! test-only sub-commands of the debug hypercall, `debug_hook.rs`), with
//! Xen's error codes for every bad argument.
//!
//! The domain is booted with `VmConfig::emu_use_pirq`: Xen gives PIRQs
//! (`XEN_X86_EMU_USE_PIRQ`) only to HVM guests, so for this PVH test kernel
//! that is a test-only divergence from Xen.
//!
//! Without a usable `/dev/kvm` every test skips with a printed reason,
//! except when `CI=true`, where that is a failure.

use vmm::VmConfig;

mod common;
use common::guest_run::boot;
use common::kvm_usable;

fn config(name: &str) -> VmConfig {
    let mut cfg = VmConfig::new(format!("xkvm-pirq-{name}"), xkvm_guests::path(name));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    cfg
}

#[test]
fn pirqs_map_bind_eoi_unmap_and_deliver_gsi_and_msi_events() {
    if !kvm_usable("pirq") {
        return;
    }
    let mut cfg = config("pirq");
    cfg.emu_use_pirq = true;
    cfg.debug_hypercall = true;
    // xen_evtchn_max_pirq: the guest finds it as the highest MSI PIRQ + 1.
    cfg.max_pirq = 64;
    let run = boot("pirq", cfg, None);
    run.assert_passed_and_powered_off();
    let line = run.value("pirq: nr_pirqs");
    assert_eq!(line, "64 gsi_events 2 msi_events 2", "{}", run.report());
}

#[test]
fn without_emu_use_pirq_the_guest_sees_no_pirqs() {
    if !kvm_usable("pirq") {
        return;
    }
    let mut cfg = config("pirq");
    cfg.debug_hypercall = true;
    let run = boot("pirq", cfg, None);
    // A PVH guest (Xen's default): no XENFEAT_hvm_pirqs, physdev_op -ENOSYS.
    assert!(
        run.log.contains("XENFEAT_hvm_pirqs missing"),
        "{}",
        run.report()
    );
    assert!(
        run.log
            .contains("map_pirq before the vector callback: got -38, want -22"),
        "{}",
        run.report()
    );
}
