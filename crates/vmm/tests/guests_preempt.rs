//! Guest tests on `/dev/kvm` for hypercall continuations (`preempt`): a
//! reservation batch longer than one chunk comes back as a continuation
//! the vCPU re-issues (in both ABIs) and still returns its full count; and
//! a call that would run for minutes in one exit does not hold up
//! `destroy`.
//!
//! Without a usable `/dev/kvm` every test skips with a printed reason,
//! except when `CI=true`, where that is a failure.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use vmm::{ConsoleIo, DomainControl, Ended, VmConfig};

mod common;
use common::guest_run::{boot, TIMEOUT};
use common::kvm_usable;

fn config(name: &str) -> VmConfig {
    let mut cfg = VmConfig::new(format!("xkvm-preempt-{name}"), xkvm_guests::path(name));
    cfg.memory_mib = 64;
    // Room above the current reservation, so populating a populated frame
    // again is allowed (and costs a page's worth of work each time).
    cfg.max_memory_mib = 128;
    cfg
}

/// 32-bit: the batch of 6144 extents is cut at the VMM's chunk and
/// resumed through EBX/ECX; the guest sees one call's result.
#[test]
fn a_batch_longer_than_a_chunk_resumes_in_32_bit() {
    if !kvm_usable("preempt32") {
        return;
    }
    let run = boot("preempt32", config("preempt32"), None);
    run.assert_passed_and_powered_off();
    assert!(run.log.contains("preempt: resumed ok"), "{}", run.report());
}

/// 64-bit: the same batch, then a populate_physmap of 2^26 - 1 extents
/// (minutes of work in one exit without continuations). Destroying the
/// domain while the guest is in that call ends the run promptly.
#[test]
fn destroy_during_a_huge_batch_returns_promptly() {
    if !kvm_usable("preempt") {
        return;
    }
    let control = DomainControl::new();
    let (tx, rx) = mpsc::channel();
    let c = control.clone();
    let cfg = config("preempt");
    std::thread::spawn(move || {
        let io = ConsoleIo {
            input: None,
            output: Box::new(std::io::sink()),
        };
        let store = Arc::new(xenstore::Engine::new(xenstore::Config::default()));
        let _ = tx.send(vmm::run_domain_controlled(cfg, io, store, &c));
    });
    let log = |c: &DomainControl| String::from_utf8_lossy(&c.hypervisor_log()).into_owned();
    let t0 = Instant::now();
    while !log(&control).contains("preempt: huge call") {
        if let Ok(r) = rx.try_recv() {
            panic!(
                "the guest ended before its huge call: {r:?}\n{}",
                log(&control)
            );
        }
        assert!(
            t0.elapsed() < TIMEOUT,
            "the guest never reached its huge call\n{}",
            log(&control)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the vCPU get well into the call.
    std::thread::sleep(Duration::from_millis(500));
    let before = log(&control);
    assert!(before.contains("preempt: resumed ok"), "{before}");
    assert!(!before.contains("huge call returned"), "{before}");
    let t = Instant::now();
    control.destroy();
    let ended = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run did not end within a minute of destroy");
    let took = t.elapsed();
    eprintln!("destroy took {took:?}");
    match ended {
        Ok(Ended::Destroyed { hypervisor_log }) => {
            let log = String::from_utf8_lossy(&hypervisor_log);
            assert!(!log.contains("huge call returned"), "{log}");
        }
        other => panic!("want Destroyed, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(1),
        "destroy waited {took:?} for the hypercall"
    );
}
