//! xl.cfg keys at run time: `cpus=` pins the vCPU threads, keys xkvm
//! cannot honour are warned about on stderr (or refused) by `create`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
mod common;
use common::Host;

/// `Cpus_allowed_list` of every thread of `pid`, by thread name.
fn thread_affinity(pid: i32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        out.push((name.trim().to_owned(), allowed));
    }
    out.sort();
    out
}

#[test]
fn cpus_pins_each_vcpu_thread_and_unhonoured_keys_warn() {
    let Some(h) = Host::new("cpus_pins_each_vcpu_thread_and_unhonoured_keys_warn") else {
        return;
    };
    // The highest CPU this test may use (CPU 1 on a 2-core machine).
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    // "0-N,^0-(N-1)": xl's range and exclusion syntax, leaving CPU N.
    let cpus = match cpu {
        0 => "0".to_owned(),
        n => format!("0-{n},^0-{}", n - 1),
    };
    let cfg = h.cfg(
        "pinned",
        "idle",
        &format!("vcpus = 2\ncpus = \"{cpus}\"\ncpu_weight = 512\nvfb = ['vnc=1']\n"),
    );
    let out = h.xkvm(&["create", &cfg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "create failed: {stderr}\n{}",
        h.logs()
    );
    assert!(
        stderr.contains("WARNING: cpu_weight: Xen scheduler parameter"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARNING: vfb: no PV framebuffer"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("WARNING: cpus"),
        "cpus= is applied: {stderr}"
    );
    h.wait_dmesg("pinned", "idle: running until destroyed", 1);
    let pid = *h.vmm_pids().first().expect("a VMM process");
    let threads = thread_affinity(pid);
    let vcpus: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("vcpu"))
        .collect();
    assert_eq!(vcpus.len(), 2, "{threads:?}");
    for (name, allowed) in &vcpus {
        assert_eq!(allowed, &cpu.to_string(), "{name} in {threads:?}");
    }
    // Only the vCPUs are pinned: the VMM's other threads keep the host's CPUs.
    if cpu > 0 {
        assert!(
            threads
                .iter()
                .any(|(n, a)| !n.starts_with("vcpu") && a != &cpu.to_string()),
            "{threads:?}"
        );
    }
    h.ok(&["destroy", "pinned"]);
}

#[test]
fn passthrough_devices_are_refused_before_anything_runs() {
    let Some(h) = Host::new("passthrough_devices_are_refused_before_anything_runs") else {
        return;
    };
    let cfg = h.cfg("pt", "idle", "pci = ['01:00.0']\n");
    let err = h.fails(&["create", &cfg]);
    assert!(
        err.contains("pci: host device passthrough is not supported"),
        "{err}"
    );
    assert!(h.vmm_pids().is_empty(), "no VMM started");
}
