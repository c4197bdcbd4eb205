//! vCPUs beyond `vcpus` (up to `maxvcpus`) exist but start offline, as in
//! Xen: the guest can bring them up with VCPUOP_initialise + VCPUOP_up.
//! Skips without /dev/kvm unless CI=true.

mod common;
use common::{kvm_available, Buf};

use vmm::{ConsoleIo, DomainExit, VmConfig};

#[test]
fn an_offline_vcpu_comes_up_through_vcpuop_up() {
    if !kvm_available() {
        return;
    }
    let mut cfg = VmConfig::new("offline-vcpu", xkvm_guests::path("smp"));
    cfg.memory_mib = 32;
    cfg.max_memory_mib = 32;
    cfg.vcpus = 1;
    cfg.max_vcpus = 2;
    let console = Buf::default();
    let out = console.clone();
    // A guest whose VCPUOP_up is refused waits for its AP forever: bound it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(vmm::run_domain(cfg, ConsoleIo::output_only(Box::new(out))));
    });
    let outcome = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("the guest never finished: {}", console.text()))
        .expect("the domain runs");
    let log = String::from_utf8_lossy(&outcome.hypervisor_log).into_owned();
    assert_eq!(outcome.exit, DomainExit::Poweroff, "{log}");
    assert!(log.contains("XKVM-TEST smp: PASS"), "{log}");
}
