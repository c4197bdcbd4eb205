//! Guest tests on `/dev/kvm` for the Xen core services (issue 5): event
//! channels through the vector callback, timers and SCHEDOP_poll, and a
//! second vCPU with IPIs. Each boots one guest from `xkvm-guests`, asserts
//! its verdict line and the numbers it printed.
//!
//! Without a usable `/dev/kvm` every test skips with a printed reason,
//! except when `CI=true`, where that is a failure.

use vmm::VmConfig;

mod common;
use common::guest_run::boot;
use common::kvm_usable;

fn config(name: &str) -> VmConfig {
    let mut cfg = VmConfig::new(format!("xkvm-core-{name}"), xkvm_guests::path(name));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    cfg
}

#[test]
fn loopback_event_channels_reach_the_vector_callback_with_if_and_masks() {
    if !kvm_usable("evtchn") {
        return;
    }
    let run = boot("evtchn", config("evtchn"), None);
    run.assert_passed_and_powered_off();
    assert_eq!(run.number("evtchn: upcalls"), 6, "{}", run.report());
}

#[test]
fn virq_timer_from_singleshot_periodic_and_set_timer_op_and_poll_timeouts() {
    if !kvm_usable("timers") {
        return;
    }
    let mut cfg = config("timers");
    cfg.vcpus = 2;
    cfg.max_vcpus = 2;
    // vCPU 1 stays in wait-for-SIPI; the guest only reads its runstate.
    let run = boot("timers", cfg, None);
    run.assert_passed_and_powered_off();
    let single = run.number("timers: singleshot");
    assert!(
        single >= 20_000,
        "singleshot after {single} us\n{}",
        run.report()
    );
    assert!(run.number("timers: periodic 3 ticks") >= 30_000);
    assert!(run.number("timers: poll timeout") >= 15_000);
}

#[test]
fn second_vcpu_via_vcpuop_initialise_and_ipis_over_event_channels() {
    if !kvm_usable("smp") {
        return;
    }
    let mut cfg = config("smp");
    cfg.vcpus = 2;
    cfg.max_vcpus = 2;
    let run = boot("smp", cfg, None);
    run.assert_passed_and_powered_off();
    assert_eq!(run.number("smp: ipis"), 2, "{}", run.report());
}

/// Benchmark, not a test (ignored; run with `cargo test --release -p vmm
/// --test guests_core -- --ignored --nocapture bench_`): `EVTCHNOP_send`
/// on a loopback port to its upcall, against the benchmark-only hypercall
/// that does nothing but `KVM_SIGNAL_MSI` of the same vector, in the same
/// guest (see docs/core-services.md). Prints per-round numbers and the
/// median ratio; asserts only that the guest ran.
#[test]
#[ignore = "benchmark: prints numbers, asserts only that it ran"]
fn bench_evtchn_send_to_upcall_latency() {
    if !kvm_usable("evtbench") {
        return;
    }
    let mut cfg = config("evtbench");
    cfg.debug_hypercall = true;
    let run = boot("evtbench", cfg, None);
    run.assert_passed_and_powered_off();
    // "evtbench: round R <loop> G ns host H ns"
    let mut by_loop: std::collections::BTreeMap<&str, (Vec<u64>, Vec<u64>)> = Default::default();
    for l in run.log.lines().filter(|l| l.starts_with("evtbench:")) {
        println!("{l}");
        let w: Vec<&str> = l.split_whitespace().collect();
        if let [_, "round", _, name, g, "ns", "host", h, "ns"] = w[..] {
            let e = by_loop.entry(name).or_default();
            e.0.extend(g.parse::<u64>().ok());
            e.1.extend(h.parse::<u64>().ok());
        }
    }
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let m = |name: &str, host: bool| {
        by_loop
            .get(name)
            .map_or(0, |(g, h)| median(if host { h } else { g }))
    };
    for name in ["send", "msi", "bare"] {
        println!(
            "median {name}: guest {} ns/iteration, host {} ns/exit",
            m(name, false),
            m(name, true)
        );
    }
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    println!(
        "send/msi: guest {:.2}, host {:.2}",
        ratio(m("send", false), m("msi", false)),
        ratio(m("send", true), m("msi", true))
    );
    println!(
        "send-msi: guest {} ns, host {} ns",
        m("send", false).saturating_sub(m("msi", false)),
        m("send", true).saturating_sub(m("msi", true))
    );
    assert!(
        m("send", false) > 0 && m("msi", false) > 0,
        "{}",
        run.report()
    );
}

/// The benchmark's private hypercall exists only with the config flag: a
/// normal guest calling it gets Xen's `-ENOSYS` and no interrupt.
#[test]
fn debug_hypercall_is_enosys_without_the_config_flag() {
    if !kvm_usable("evtbench") {
        return;
    }
    let run = boot("evtbench", config("evtbench"), None);
    assert!(
        run.log.contains("debug hypercall enabled: got -38, want 0"),
        "{}",
        run.report()
    );
}

#[test]
fn grant_frames_on_demand_guest_copy_balloon_and_remaining_hvm_ops() {
    if !kvm_usable("services") {
        return;
    }
    let run = boot("services", config("services"), None);
    run.assert_passed_and_powered_off();
    assert_eq!(run.number("services: nr_frames"), 4, "{}", run.report());
}

/// One interrupt per event on the level-triggered GSI callback, with a
/// 30 ms quiet period after each. A resample thread that re-asserts the
/// line whenever it finds `evtchn_upcall_pending` set (the bug fixed in
/// `callback_gsi.rs`) delivers most events twice here.
#[test]
fn gsi_callback_fires_once_per_event_and_is_deasserted() {
    if !kvm_usable("gsicb") {
        return;
    }
    let run = boot("gsicb", config("gsicb"), None);
    run.assert_passed_and_powered_off();
    assert_eq!(run.number("gsicb: upcalls"), 10, "{}", run.report());
}
