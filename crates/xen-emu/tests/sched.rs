//! `sched_op`: yield, shutdown reasons, block and poll.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xen_abi::errno::*;
use xen_abi::sched::*;
use xen_abi::xen::HYPERVISOR_SCHED_OP as SO;
use xen_emu::platform::ShutdownReason;
use xen_emu::testing::Event;

#[test]
fn yield_returns_zero() {
    let mut t = h();
    assert_eq!(t.call(SO, &[SCHEDOP_YIELD, 0]), 0);
}

#[test]
fn shutdown_reasons_map_to_platform() {
    for (code, want) in [
        (SHUTDOWN_POWEROFF, ShutdownReason::Poweroff),
        (SHUTDOWN_REBOOT, ShutdownReason::Reboot),
        (SHUTDOWN_SUSPEND, ShutdownReason::Suspend),
        (SHUTDOWN_CRASH, ShutdownReason::Crash),
        (SHUTDOWN_WATCHDOG, ShutdownReason::Watchdog),
        (SHUTDOWN_SOFT_RESET, ShutdownReason::SoftReset),
        (77, ShutdownReason::Crash),
        // Xen keeps the reason as u8: 256 is poweroff.
        (256, ShutdownReason::Poweroff),
    ] {
        let mut t = h();
        t.mem.put(ARG, &SchedShutdown { reason: code });
        assert_eq!(t.call(SO, &[SCHEDOP_SHUTDOWN, ARG]), 0);
        assert_eq!(t.plat.events(), vec![Event::Shutdown(want)], "code {code}");
    }
}

#[test]
fn shutdown_code_set_earlier_wins() {
    let mut t = h();
    t.mem.put(
        ARG,
        &SchedShutdown {
            reason: SHUTDOWN_CRASH,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_SHUTDOWN_CODE, ARG]), 0);
    assert!(t.plat.events().is_empty());
    t.mem.put(
        ARG,
        &SchedShutdown {
            reason: SHUTDOWN_POWEROFF,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_SHUTDOWN, ARG]), 0);
    assert_eq!(
        t.plat.events(),
        vec![Event::Shutdown(ShutdownReason::Crash)]
    );
    assert_eq!(t.d.shutdown_code(), Some(SHUTDOWN_CRASH));
}

#[test]
fn shutdown_bad_pointer_and_bad_cmd() {
    let mut t = h();
    assert_eq!(t.call(SO, &[SCHEDOP_SHUTDOWN, UNMAPPED]), -EFAULT);
    assert!(t.plat.events().is_empty());
    assert_eq!(t.call(SO, &[99, ARG]), -ENOSYS);
    t.mem.put(
        ARG,
        &SchedRemoteShutdown {
            domain_id: 0,
            pad: 0,
            reason: 0,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_REMOTE_SHUTDOWN, ARG]), -ESRCH);
}

#[test]
fn block_returns_when_backend_sends() {
    let mut t = h();
    // shared_info at a frame beyond RAM, callback vector 0xf3.
    t.mem.put(
        ARG,
        &xen_abi::memory::XenAddToPhysmap {
            domid: 0x7ff0,
            size: 0,
            space: 0,
            idx: 0,
            gpfn: 0x10000,
        },
    );
    assert_eq!(t.call(xen_abi::xen::HYPERVISOR_MEMORY_OP, &[7, ARG]), 0);
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    let d = t.d.clone();
    // Before the spawn: the sender's 50 ms start there.
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        d.backend_send(port.0).unwrap();
    });
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    assert!(start.elapsed() >= Duration::from_millis(40));
    sender.join().unwrap();
}

#[test]
fn block_returns_on_wake_vcpu() {
    let mut t = h();
    let d = t.d.clone();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        d.wake_vcpu(0);
    });
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    waker.join().unwrap();
}

fn setup_shinfo(t: &mut H) {
    t.mem.put(
        ARG,
        &xen_abi::memory::XenAddToPhysmap {
            domid: 0x7ff0,
            size: 0,
            space: 0,
            idx: 0,
            gpfn: 0x10000,
        },
    );
    assert_eq!(t.call(xen_abi::xen::HYPERVISOR_MEMORY_OP, &[7, ARG]), 0);
}

#[test]
fn poll_times_out_at_absolute_deadline() {
    let mut t = h();
    setup_shinfo(&mut t);
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    t.mem.put(BUF, &port.0);
    let now = t.plat.now_ns.load(std::sync::atomic::Ordering::SeqCst);
    t.mem.put(
        ARG,
        &SchedPoll {
            ports: BUF,
            nr_ports: 1,
            pad: 0,
            timeout: now + 30_000_000,
        },
    );
    let start = Instant::now();
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), 0);
    assert!(start.elapsed() >= Duration::from_millis(25));
}

#[test]
fn poll_on_pending_port_returns_at_once() {
    let mut t = h();
    setup_shinfo(&mut t);
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    t.d.backend_send(port.0).unwrap();
    t.mem.put(BUF, &port.0);
    // No timeout: would block forever if the pending bit were missed.
    t.mem.put(
        ARG,
        &SchedPoll {
            ports: BUF,
            nr_ports: 1,
            pad: 0,
            timeout: 0,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), 0);
}

#[test]
fn poll_rejects_too_many_and_invalid_ports() {
    let mut t = h();
    t.mem.put(
        ARG,
        &SchedPoll {
            ports: BUF,
            nr_ports: 129,
            pad: 0,
            timeout: 1,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), -EINVAL);
    t.mem.put(BUF, &5000u32);
    t.mem.put(
        ARG,
        &SchedPoll {
            ports: BUF,
            nr_ports: 1,
            pad: 0,
            timeout: 1,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), -EINVAL);
    t.mem.put(
        ARG,
        &SchedPoll {
            ports: UNMAPPED,
            nr_ports: 1,
            pad: 0,
            timeout: 1,
        },
    );
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), -EFAULT);
}

#[test]
fn poll_compat_layout_reads_split_timeout() {
    let mut t = h32();
    setup_shinfo(&mut t);
    let now = t.plat.now_ns.load(std::sync::atomic::Ordering::SeqCst) + 20_000_000;
    t.mem.put(
        ARG,
        &SchedPollCompat {
            ports: BUF as u32,
            nr_ports: 0,
            timeout_lo: now as u32,
            timeout_hi: (now >> 32) as u32,
        },
    );
    let start = Instant::now();
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), 0);
    assert!(start.elapsed() >= Duration::from_millis(15));
}
