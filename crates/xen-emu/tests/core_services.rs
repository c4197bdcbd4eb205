//! Issue 5 services against fake memory: timers, block/poll with IF,
//! vCPU bring-up, runstate, PIRQs, event-channel extras, reservations,
//! the guest's own grant copy.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use xen_abi::errno::*;
use xen_abi::event_channel::*;
use xen_abi::physdev::*;
use xen_abi::sched::*;
use xen_abi::vcpu::*;
use xen_abi::xen::{
    SharedInfo, HYPERVISOR_HVM_OP as HO, HYPERVISOR_MEMORY_OP as MO, HYPERVISOR_PHYSDEV_OP as PO,
    HYPERVISOR_SCHED_OP as SO, HYPERVISOR_SET_TIMER_OP as TO, HYPERVISOR_VCPU_OP as VO, VIRQ_TIMER,
};
use xen_abi::DOMID_SELF;
use xen_emu::platform::{ShutdownReason, Upcall};
use xen_emu::testing::Event;
use xen_emu::DomainConfig;

fn bind_timer(t: &mut H, vcpu: u32) -> u32 {
    let (r, op) = evtchn_op(
        t,
        EVTCHNOP_BIND_VIRQ,
        &EvtchnBindVirq {
            virq: VIRQ_TIMER,
            vcpu,
            port: 0,
        },
    );
    assert_eq!(r, 0);
    op.port
}

fn pending(t: &H, port: u32) -> bool {
    let si: SharedInfo = t.mem.get(SHINFO);
    si.evtchn_pending[(port / 64) as usize] & (1 << (port % 64)) != 0
}

fn wait_pending(t: &H, port: u32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pending(t, port) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn now(t: &H) -> u64 {
    t.plat.now_ns.load(std::sync::atomic::Ordering::SeqCst)
}

fn singleshot(t: &mut H, vcpu: u32, at: u64, flags: u32) -> i64 {
    t.mem.put(
        ARG,
        &VcpuSetSingleshotTimer {
            timeout_abs_ns: at,
            flags,
            pad: 0,
        },
    );
    t.call(VO, &[VCPUOP_SET_SINGLESHOT_TIMER, u64::from(vcpu), ARG])
}

#[test]
fn singleshot_timer_raises_virq_timer_after_its_deadline() {
    let mut t = h();
    map_shinfo(&mut t);
    set_callback_vector(&mut t, 0xf3);
    let port = bind_timer(&mut t, 0);
    let n = now(&t);
    assert_eq!(singleshot(&mut t, 0, n + 30_000_000, 0), 0);
    assert!(t.d.singleshot_deadline(0).is_some());
    assert!(!pending(&t, port), "not before its deadline");
    let took = wait_pending(&t, port, Duration::from_secs(5)).expect("timer fired");
    assert!(took >= Duration::from_millis(20), "fired after {took:?}");
    assert!(t.plat.upcalls().contains(&(0, Upcall::Vector(0xf3))));
    assert!(t.d.singleshot_deadline(0).is_none(), "one shot");
}

#[test]
fn singleshot_in_the_past_fires_at_once_or_is_etime_with_future_flag() {
    let mut t = h();
    map_shinfo(&mut t);
    let port = bind_timer(&mut t, 0);
    let n = now(&t);
    assert_eq!(singleshot(&mut t, 0, n - 1, VCPU_SSHOTTMR_FUTURE), -ETIME);
    assert!(!pending(&t, port));
    assert_eq!(singleshot(&mut t, 0, n - 1, 0), 0);
    assert!(wait_pending(&t, port, Duration::from_secs(2)).is_some());
}

#[test]
fn singleshot_for_another_vcpu_is_einval_and_stop_cancels() {
    let mut t = h();
    map_shinfo(&mut t);
    let port = bind_timer(&mut t, 0);
    let n = now(&t);
    assert_eq!(singleshot(&mut t, 1, n + 1000, 0), -EINVAL);
    assert_eq!(t.call(VO, &[VCPUOP_STOP_SINGLESHOT_TIMER, 1, 0]), -EINVAL);
    assert_eq!(singleshot(&mut t, 0, n + 20_000_000, 0), 0);
    assert_eq!(t.call(VO, &[VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0]), 0);
    assert!(wait_pending(&t, port, Duration::from_millis(80)).is_none());
    assert_eq!(singleshot(&mut t, 5, n, 0), -ENOENT);
}

#[test]
fn set_timer_op_zero_stops_and_huge_deadline_fires_in_100ms() {
    let mut t = h();
    map_shinfo(&mut t);
    let port = bind_timer(&mut t, 0);
    let n = now(&t);
    assert_eq!(t.call(TO, &[n + 10_000_000]), 0);
    assert_eq!(t.call(TO, &[0]), 0);
    assert!(t.d.singleshot_deadline(0).is_none());
    // 2^51 ns ahead: Xen's "Linux workaround" fires after 100 ms.
    assert_eq!(t.call(TO, &[n + (1 << 51)]), 0);
    let due = t.d.singleshot_deadline(0).unwrap();
    let left = due.saturating_duration_since(Instant::now());
    assert!(left <= Duration::from_millis(100) && left > Duration::from_millis(50));
    // Negative deadline: same.
    assert_eq!(t.call(TO, &[u64::MAX - 5]), 0);
    assert!(wait_pending(&t, port, Duration::from_secs(2)).is_some());
}

#[test]
fn periodic_timer_ticks_repeatedly_and_checks_its_period() {
    let mut t = h();
    map_shinfo(&mut t);
    let port = bind_timer(&mut t, 1);
    let set = |t: &mut H, vcpu: u64, period_ns: u64| {
        t.mem.put(ARG, &VcpuSetPeriodicTimer { period_ns });
        t.call(VO, &[VCPUOP_SET_PERIODIC_TIMER, vcpu, ARG])
    };
    assert_eq!(set(&mut t, 1, 999_999), -EINVAL);
    assert_eq!(set(&mut t, 1, u64::MAX), -EINVAL);
    assert_eq!(set(&mut t, 1, 10_000_000), 0);
    assert_eq!(t.d.periodic_period(1), Some(Duration::from_millis(10)));
    for _ in 0..3 {
        assert!(wait_pending(&t, port, Duration::from_secs(2)).is_some());
        // The guest handles it: clear pending.
        let si: SharedInfo = t.mem.get(SHINFO);
        let mut words = si.evtchn_pending;
        words[(port / 64) as usize] &= !(1 << (port % 64));
        t.mem.put(SHINFO + 0x800, &words);
        assert!(!pending(&t, port));
    }
    assert_eq!(t.call(VO, &[VCPUOP_STOP_PERIODIC_TIMER, 1, 0]), 0);
    assert_eq!(t.d.periodic_period(1), None);
}

#[test]
fn block_with_interrupts_off_ignores_a_pending_upcall_until_the_next_event() {
    let mut t = h();
    map_shinfo(&mut t);
    set_callback_vector(&mut t, 0xf3);
    let port =
        t.d.create_backend_channel(std::sync::Arc::new(|_| {}))
            .unwrap();
    t.d.backend_send(port.0).unwrap();
    // IF=1: a pending upcall returns at once.
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    // IF=0: it sleeps until something else happens (here a kick, as a
    // LAPIC interrupt would be).
    t.v.interrupts = false;
    let d = t.d.clone();
    // Before the spawn: the waker's 50 ms start there, and a loaded
    // machine may not run this thread again for a while.
    let t0 = Instant::now();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        d.wake_vcpu(0);
    });
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    assert!(
        t0.elapsed() >= Duration::from_millis(40),
        "{:?}",
        t0.elapsed()
    );
    waker.join().unwrap();
    // IF=0 and a new event (upcall 0 -> 1 after the guest acked): wakes.
    let mut si: SharedInfo = t.mem.get(SHINFO);
    si.vcpu_info[0].evtchn_upcall_pending = 0;
    si.vcpu_info[0].evtchn_pending_sel = 0;
    si.evtchn_pending = [0; 64];
    t.mem.put(SHINFO, &si);
    let d = t.d.clone();
    // Before the spawn: the waker's 50 ms start there, and a loaded
    // machine may not run this thread again for a while.
    let t0 = Instant::now();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        d.backend_send(port.0).unwrap();
    });
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    assert!(
        t0.elapsed() >= Duration::from_millis(40),
        "{:?}",
        t0.elapsed()
    );
    waker.join().unwrap();
}

#[test]
fn block_is_handed_to_the_platform_when_it_can_halt() {
    let mut t = h();
    map_shinfo(&mut t);
    t.v.halts = true;
    // No upcall route yet: xen-emu must park (woken here at once).
    t.d.wake_vcpu(0);
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    assert!(!t.v.halted);
    set_callback_vector(&mut t, 0xf3);
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    assert!(t.v.halted);
    // Blocking enabled event delivery (evtchn_upcall_mask cleared).
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_mask, 0);
}

#[test]
fn block_wakes_on_virq_timer() {
    let mut t = h();
    map_shinfo(&mut t);
    bind_timer(&mut t, 0);
    let n = now(&t);
    // Before arming: the deadline is 20 ms from the arm, and a loaded
    // machine may not run this thread again for a while.
    let t0 = Instant::now();
    assert_eq!(singleshot(&mut t, 0, n + 20_000_000, 0), 0);
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    let e = t0.elapsed();
    assert!(
        e >= Duration::from_millis(15) && e < Duration::from_secs(2),
        "{e:?}"
    );
}

#[test]
fn poll_times_out_and_reports_runstate_blocked_time() {
    let mut t = h();
    map_shinfo(&mut t);
    let (r, op) = evtchn_op(
        &mut t,
        EVTCHNOP_ALLOC_UNBOUND,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0,
        },
    );
    assert_eq!(r, 0);
    t.mem.put(BUF, &op.port);
    let n = now(&t);
    t.mem.put(
        ARG,
        &SchedPoll {
            ports: BUF,
            nr_ports: 1,
            pad: 0,
            timeout: n + 30_000_000,
        },
    );
    let t0 = Instant::now();
    assert_eq!(t.call(SO, &[SCHEDOP_POLL, ARG]), 0);
    assert!(t0.elapsed() >= Duration::from_millis(25));
    // Runstate: the fake clock does not move, but the state is back to
    // running and the info is readable.
    assert_eq!(t.call(VO, &[VCPUOP_GET_RUNSTATE_INFO, 0, ARG]), 0);
    let rs: VcpuRunstateInfo = t.mem.get(ARG);
    assert_eq!(rs.state, RUNSTATE_RUNNING);
}

#[test]
fn runstate_area_is_written_and_accounts_time() {
    let mut t = h();
    map_shinfo(&mut t);
    let area = 0x3000u64;
    t.mem.put(ARG, &area);
    assert_eq!(
        t.call(VO, &[VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, ARG]),
        0
    );
    let rs: VcpuRunstateInfo = t.mem.get(area);
    assert_eq!(rs.state, RUNSTATE_RUNNING);
    // Time passes while blocked (the fake clock moves 5 ms during block).
    let plat = t.plat.clone();
    let d = t.d.clone();
    let h2 = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        plat.now_ns
            .fetch_add(5_000_000, std::sync::atomic::Ordering::SeqCst);
        d.wake_vcpu(0);
    });
    assert_eq!(t.call(SO, &[SCHEDOP_BLOCK, 0]), 0);
    h2.join().unwrap();
    let rs: VcpuRunstateInfo = t.mem.get(area);
    assert_eq!(rs.state, RUNSTATE_RUNNING);
    assert_eq!(rs.time[RUNSTATE_BLOCKED as usize], 5_000_000);
    // vCPU 1 is offline until brought up.
    assert_eq!(t.call(VO, &[VCPUOP_GET_RUNSTATE_INFO, 1, ARG]), 0);
    assert_eq!(t.mem.get::<VcpuRunstateInfo>(ARG).state, RUNSTATE_OFFLINE);
}

/// A valid 64-bit `vcpu_hvm_context` starting at `rip`.
fn hvm_ctx64(rip: u64) -> [u8; 128] {
    let mut c = [0u8; 128];
    c[0..4].copy_from_slice(&1u32.to_le_bytes());
    let r = |c: &mut [u8; 128], i: usize, v: u64| {
        c[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes())
    };
    r(&mut c, 4, 0x9000); // rsp
    r(&mut c, 8, rip);
    r(&mut c, 9, 2); // rflags
    r(&mut c, 10, 0x8000_0011); // cr0 PG|ET|PE
    r(&mut c, 11, 0x5000); // cr3
    r(&mut c, 12, 0x20); // cr4 PAE
    r(&mut c, 13, 0x500); // efer LME|LMA
    c
}

#[test]
fn vcpu_initialise_up_down_is_up() {
    let mut t = h();
    assert_eq!(t.call(VO, &[VCPUOP_IS_UP, 0, 0]), 1);
    assert_eq!(t.call(VO, &[VCPUOP_IS_UP, 1, 0]), 0);
    assert_eq!(t.call(VO, &[VCPUOP_IS_UP, 2, 0]), -ENOENT);
    // Up before initialise.
    assert_eq!(t.call(VO, &[VCPUOP_UP, 1, 0]), -EINVAL);
    // Bad contexts.
    let mut bad = hvm_ctx64(0x1000);
    bad[0] = 7;
    t.mem.put(ARG, &bad);
    assert_eq!(t.call(VO, &[VCPUOP_INITIALISE, 1, ARG]), -EINVAL);
    let mut bad = hvm_ctx64(0x1000);
    bad[8 + 8 * 10..8 + 8 * 10 + 8].copy_from_slice(&1u64.to_le_bytes()); // no paging
    t.mem.put(ARG, &bad);
    assert_eq!(t.call(VO, &[VCPUOP_INITIALISE, 1, ARG]), -EINVAL);
    let bad = hvm_ctx64(0x8000_0000_0000_0000);
    t.mem.put(ARG, &bad);
    assert_eq!(t.call(VO, &[VCPUOP_INITIALISE, 1, ARG]), -EINVAL);
    assert_eq!(t.call(VO, &[VCPUOP_INITIALISE, 1, UNMAPPED]), -EFAULT);
    // Good one.
    t.mem.put(ARG, &hvm_ctx64(0x1234));
    assert_eq!(t.call(VO, &[VCPUOP_INITIALISE, 1, ARG]), 0);
    assert_eq!(t.call(VO, &[VCPUOP_INITIALISE, 1, ARG]), -EEXIST);
    assert_eq!(t.call(VO, &[VCPUOP_UP, 1, 0]), 0);
    assert_eq!(t.call(VO, &[VCPUOP_IS_UP, 1, 0]), 1);
    let start = t
        .plat
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::VcpuUp(1, Some(s)) => Some(s),
            _ => None,
        })
        .unwrap();
    assert!(start.long_mode);
    assert_eq!(
        (start.rip, start.gprs[4], start.cr3),
        (0x1234, 0x9000, 0x5000)
    );
    // Down, then up again resumes (no new state).
    assert_eq!(t.call(VO, &[VCPUOP_DOWN, 1, 0]), 0);
    assert_eq!(t.call(VO, &[VCPUOP_IS_UP, 1, 0]), 0);
    assert!(t.plat.events().contains(&Event::VcpuDown(1)));
    assert_eq!(t.call(VO, &[VCPUOP_UP, 1, 0]), 0);
    assert!(t.plat.events().contains(&Event::VcpuUp(1, None)));
    // The last vCPU going down powers off.
    assert_eq!(t.call(VO, &[VCPUOP_DOWN, 1, 0]), 0);
    assert_eq!(t.call(VO, &[VCPUOP_DOWN, 0, 0]), 0);
    assert!(t
        .plat
        .events()
        .contains(&Event::Shutdown(ShutdownReason::Poweroff)));
}

#[test]
fn vcpu_up_fails_when_the_platform_cannot_run_it() {
    let mem = std::sync::Arc::new(xen_emu::testing::FakeMemory::new(RAM, 4));
    let mut plat = xen_emu::testing::FakePlatform::new(mem.clone());
    plat.can_start_vcpus = false;
    let plat = std::sync::Arc::new(plat);
    let d = xen_emu::Domain::new(config(), mem.clone(), plat);
    let mut v = xen_emu::testing::FakeVcpu::long64(0);
    mem.put(ARG, &hvm_ctx64(0x1000));
    assert_eq!(
        d.hypercall(&mut v, VO, [VCPUOP_INITIALISE, 1, ARG, 0, 0]),
        0
    );
    assert_eq!(d.hypercall(&mut v, VO, [VCPUOP_UP, 1, 0, 0, 0]), -EINVAL);
    assert_eq!(d.hypercall(&mut v, VO, [VCPUOP_IS_UP, 1, 0, 0, 0]), 0);
}

fn pirq_h() -> H {
    let mut t = h_with(
        DomainConfig {
            has_pirq: true,
            max_pirq: 64,
            ..config()
        },
        xen_emu::guest::GuestMode::Long64,
    );
    map_shinfo(&mut t);
    t
}

fn map_pirq(t: &mut H, type_: i32, index: i32, pirq: i32) -> (i64, i32) {
    t.mem.put(
        ARG,
        &PhysdevMapPirq {
            domid: DOMID_SELF,
            type_,
            index,
            pirq,
            ..Default::default()
        },
    );
    let r = t.call(PO, &[PHYSDEVOP_MAP_PIRQ, ARG]);
    (r, t.mem.get::<PhysdevMapPirq>(ARG).pirq)
}

#[test]
fn pirq_ops_are_enosys_without_has_pirq() {
    let mut t = h();
    for cmd in [
        PHYSDEVOP_MAP_PIRQ,
        PHYSDEVOP_UNMAP_PIRQ,
        PHYSDEVOP_EOI,
        PHYSDEVOP_IRQ_STATUS_QUERY,
        PHYSDEVOP_GET_FREE_PIRQ,
    ] {
        assert_eq!(t.call(PO, &[cmd, ARG]), -ENOSYS);
    }
}

#[test]
fn gsi_mapped_to_pirq_is_delivered_as_an_event() {
    let mut t = pirq_h();
    // Needs the vector callback first.
    assert_eq!(map_pirq(&mut t, MAP_PIRQ_TYPE_GSI, 10, -1).0, -EINVAL);
    set_callback_vector(&mut t, 0xf3);
    assert_eq!(map_pirq(&mut t, MAP_PIRQ_TYPE_GSI, 48, -1).0, -EINVAL);
    assert_eq!(map_pirq(&mut t, 9, 10, -1).0, -EINVAL);
    assert_eq!(map_pirq(&mut t, MAP_PIRQ_TYPE_MSI, 3, -1).0, -EINVAL);
    let (r, pirq) = map_pirq(&mut t, MAP_PIRQ_TYPE_GSI, 20, -1);
    assert_eq!((r, pirq), (0, 16), "lowest free GSI pirq from 16");
    // Foreign domid is privileged.
    t.mem.put(
        ARG,
        &PhysdevMapPirq {
            domid: 5,
            type_: MAP_PIRQ_TYPE_GSI,
            index: 20,
            pirq: -1,
            ..Default::default()
        },
    );
    assert_eq!(t.call(PO, &[PHYSDEVOP_MAP_PIRQ, ARG]), -EPERM);
    // Status query on an unmapped pirq is -EINVAL, mapped needs EOI.
    t.mem.put(ARG, &PhysdevIrqStatusQuery { irq: 17, flags: 0 });
    assert_eq!(t.call(PO, &[PHYSDEVOP_IRQ_STATUS_QUERY, ARG]), -EINVAL);
    t.mem.put(ARG, &PhysdevIrqStatusQuery { irq: 16, flags: 0 });
    assert_eq!(t.call(PO, &[PHYSDEVOP_IRQ_STATUS_QUERY, ARG]), 0);
    assert_eq!(
        t.mem.get::<PhysdevIrqStatusQuery>(ARG).flags,
        XENIRQSTAT_NEEDS_EOI
    );
    t.mem.put(ARG, &PhysdevIrqStatusQuery { irq: 64, flags: 0 });
    assert_eq!(t.call(PO, &[PHYSDEVOP_IRQ_STATUS_QUERY, ARG]), -EINVAL);
    // Bind it.
    let (r, op) = evtchn_op(
        &mut t,
        EVTCHNOP_BIND_PIRQ,
        &EvtchnBindPirq {
            pirq: 16,
            flags: 0,
            port: 0,
        },
    );
    assert_eq!(r, 0);
    let port = op.port;
    let (r, _) = evtchn_op(
        &mut t,
        EVTCHNOP_BIND_PIRQ,
        &EvtchnBindPirq {
            pirq: 16,
            flags: 0,
            port: 0,
        },
    );
    assert_eq!(r, -EEXIST);
    let (r, _) = evtchn_op(
        &mut t,
        EVTCHNOP_BIND_PIRQ,
        &EvtchnBindPirq {
            pirq: 64,
            flags: 0,
            port: 0,
        },
    );
    assert_eq!(r, -EINVAL);
    let (_, st) = evtchn_op(
        &mut t,
        EVTCHNOP_STATUS,
        &EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        },
    );
    assert_eq!((st.status, st.u0), (EVTCHNSTAT_PIRQ, 16));
    // The VMM raises GSI 20: an event, not an IOAPIC interrupt.
    assert!(t.d.deliver_gsi(20, true));
    assert!(
        !t.d.deliver_gsi(21, true),
        "unmapped GSI goes the normal way"
    );
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_ne!(si.evtchn_pending[0] & (1 << port), 0);
    // EOI while still asserted re-fires (level GSI >= 16).
    t.mem.put(SHINFO + 0x800, &[0u64; 64]);
    t.mem.put(ARG, &PhysdevEoi { irq: 16 });
    assert_eq!(t.call(PO, &[PHYSDEVOP_EOI, ARG]), 0);
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_ne!(si.evtchn_pending[0] & (1 << port), 0);
    t.mem.put(ARG, &PhysdevEoi { irq: 30 });
    assert_eq!(t.call(PO, &[PHYSDEVOP_EOI, ARG]), -EINVAL);
    // Unmap.
    t.mem.put(
        ARG,
        &PhysdevUnmapPirq {
            domid: DOMID_SELF,
            pad: 0,
            pirq: 16,
        },
    );
    assert_eq!(t.call(PO, &[PHYSDEVOP_UNMAP_PIRQ, ARG]), 0);
    assert!(!t.d.deliver_gsi(20, false), "unmapped: the normal way");
    // Unmapping what is not mapped does nothing and succeeds for
    // DOMID_SELF (physdev_unmap_pirq); naming any domid is privileged.
    assert_eq!(t.call(PO, &[PHYSDEVOP_UNMAP_PIRQ, ARG]), 0);
    for (domid, want) in [(t.d.domid(), -EPERM), (7, -ESRCH)] {
        t.mem.put(
            ARG,
            &PhysdevUnmapPirq {
                domid,
                pad: 0,
                pirq: 16,
            },
        );
        assert_eq!(t.call(PO, &[PHYSDEVOP_UNMAP_PIRQ, ARG]), want);
    }
}

#[test]
fn msi_pirqs_and_get_free_pirq() {
    let mut t = pirq_h();
    set_callback_vector(&mut t, 0xf3);
    t.mem.put(
        ARG,
        &PhysdevGetFreePirq {
            type_: MAP_PIRQ_TYPE_MSI,
            pirq: 0,
        },
    );
    assert_eq!(t.call(PO, &[PHYSDEVOP_GET_FREE_PIRQ, ARG]), 0);
    assert_eq!(
        t.mem.get::<PhysdevGetFreePirq>(ARG).pirq,
        63,
        "highest first"
    );
    // HVM map_pirq maps GSIs only (Xen 4.17 physdev_hvm_map_pirq).
    for type_ in [
        MAP_PIRQ_TYPE_MSI,
        MAP_PIRQ_TYPE_MSI_SEG,
        MAP_PIRQ_TYPE_MULTI_MSI,
    ] {
        assert_eq!(map_pirq(&mut t, type_, -1, -1).0, -EINVAL);
    }
    let (_, op) = evtchn_op(
        &mut t,
        EVTCHNOP_BIND_PIRQ,
        &EvtchnBindPirq {
            pirq: 62,
            flags: 0,
            port: 0,
        },
    );
    // Vector 0, pirq in the destination id: an event on the channel.
    assert!(t.d.deliver_msi(0xfee0_0000 | (62 << 12), 0));
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_ne!(si.evtchn_pending[0] & (1 << op.port), 0);
    assert!(!t.d.deliver_msi(0xfee0_0000, 0x31), "a real vector");
    // Run out of pirqs: ENOSPC.
    let mut last = 0;
    for _ in 0..100 {
        t.mem.put(
            ARG,
            &PhysdevGetFreePirq {
                type_: MAP_PIRQ_TYPE_GSI,
                pirq: 0,
            },
        );
        last = t.call(PO, &[PHYSDEVOP_GET_FREE_PIRQ, ARG]);
        if last != 0 {
            break;
        }
    }
    assert_eq!(last, -ENOSPC);
    // map_pirq without a free PIRQ: -EINVAL (the -ENOSPC becomes the PIRQ
    // map_domain_emuirq_pirq rejects).
    assert_eq!(map_pirq(&mut t, MAP_PIRQ_TYPE_GSI, 30, -1).0, -EINVAL);
}

#[test]
fn fifo_init_control_checks_arguments_then_enosys() {
    let mut t = h();
    let ic = |vcpu, offset| EvtchnInitControl {
        control_gfn: 0x100,
        offset,
        vcpu,
        link_bits: 0,
        pad: [0; 7],
    };
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_INIT_CONTROL, &ic(9, 0)).0,
        -ENOENT
    );
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_INIT_CONTROL, &ic(0, 4096 - 64)).0,
        -EINVAL
    );
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_INIT_CONTROL, &ic(0, 4)).0,
        -EINVAL
    );
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_INIT_CONTROL, &ic(0, 8)).0,
        -ENOSYS
    );
    assert_eq!(
        t.call(
            xen_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP,
            &[EVTCHNOP_INIT_CONTROL, UNMAPPED]
        ),
        -EFAULT
    );
    assert_eq!(
        t.call(
            xen_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP,
            &[EVTCHNOP_EXPAND_ARRAY, ARG]
        ),
        -EOPNOTSUPP
    );
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_SET_PRIORITY, &[5000u32, 0]).0,
        -EINVAL
    );
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_SET_PRIORITY, &[0u32, 0]).0,
        -ENOSYS
    );
}

#[test]
fn reset_closes_every_port() {
    let mut t = h();
    map_shinfo(&mut t);
    let p =
        t.d.create_backend_channel(std::sync::Arc::new(|_| {}))
            .unwrap();
    let v = bind_timer(&mut t, 0);
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_RESET, &EvtchnReset { dom: 77 }).0,
        -ESRCH
    );
    assert_eq!(
        evtchn_op(&mut t, EVTCHNOP_RESET, &EvtchnReset { dom: DOMID_SELF }).0,
        0
    );
    for port in [p.0, v] {
        let (_, st) = evtchn_op(
            &mut t,
            EVTCHNOP_STATUS,
            &EvtchnStatus {
                dom: DOMID_SELF,
                port,
                ..Default::default()
            },
        );
        assert_eq!(st.status, EVTCHNSTAT_CLOSED);
    }
    // VIRQ_TIMER can be bound again.
    bind_timer(&mut t, 0);
}

#[test]
fn bind_vcpu_follows_xen_rules() {
    let mut t = h();
    map_shinfo(&mut t);
    let timer = bind_timer(&mut t, 0);
    let bv =
        |t: &mut H, port, vcpu| evtchn_op(t, EVTCHNOP_BIND_VCPU, &EvtchnBindVcpu { port, vcpu }).0;
    assert_eq!(bv(&mut t, timer, 1), -EINVAL, "per-vCPU VIRQ");
    let (_, ipi) = evtchn_op(
        &mut t,
        EVTCHNOP_BIND_IPI,
        &EvtchnBindIpi { vcpu: 0, port: 0 },
    );
    assert_eq!(bv(&mut t, ipi.port, 1), -EINVAL, "IPI");
    let (_, unb) = evtchn_op(
        &mut t,
        EVTCHNOP_ALLOC_UNBOUND,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0,
        },
    );
    assert_eq!(bv(&mut t, unb.port, 1), 0);
    assert_eq!(bv(&mut t, unb.port, 2), -ENOENT);
    assert_eq!(bv(&mut t, 4000, 1), -EINVAL);
}

fn reservation(t: &mut H, cmd: u64, gfns: &[u64], order: u32, domid: u16) -> i64 {
    t.mem.put(BUF, gfns);
    t.mem.put(
        ARG,
        &xen_abi::memory::XenMemoryReservation {
            extent_start: BUF,
            nr_extents: gfns.len() as u64,
            extent_order: order,
            mem_flags: 0,
            domid,
            pad: [0; 3],
        },
    );
    t.call(MO, &[cmd, ARG])
}

#[test]
fn balloon_decrease_then_populate_moves_current_reservation() {
    use xen_abi::memory::*;
    let mut t = h();
    let cur = |t: &mut H| {
        t.mem.put(ARG, &DOMID_SELF);
        t.call(MO, &[XENMEM_CURRENT_RESERVATION, ARG])
    };
    let start = cur(&mut t);
    t.mem.put(0x200 << 12, &[0xaau8; 16]);
    assert_eq!(
        reservation(
            &mut t,
            XENMEM_DECREASE_RESERVATION,
            &[0x200, 0x201],
            0,
            DOMID_SELF
        ),
        2
    );
    assert_eq!(cur(&mut t), start - 2);
    assert_eq!(t.mem.get::<[u8; 16]>(0x200 << 12), [0; 16], "scrubbed");
    // Giving back the same frame again stops there.
    assert_eq!(
        reservation(
            &mut t,
            XENMEM_DECREASE_RESERVATION,
            &[0x202, 0x200],
            0,
            DOMID_SELF
        ),
        1
    );
    assert_eq!(cur(&mut t), start - 3);
    // Not RAM (beyond the map): populate stops at it.
    assert_eq!(
        reservation(
            &mut t,
            XENMEM_POPULATE_PHYSMAP,
            &[0x200, 0xfffff],
            0,
            DOMID_SELF
        ),
        1
    );
    assert_eq!(
        reservation(
            &mut t,
            XENMEM_POPULATE_PHYSMAP,
            &[0x201, 0x202],
            0,
            DOMID_SELF
        ),
        2
    );
    assert_eq!(cur(&mut t), start);
    // Order above 9 and foreign domids: nothing done.
    assert_eq!(
        reservation(&mut t, XENMEM_POPULATE_PHYSMAP, &[0x200], 10, DOMID_SELF),
        0
    );
    assert_eq!(
        reservation(&mut t, XENMEM_DECREASE_RESERVATION, &[0x200], 0, 0),
        0
    );
    // increase_reservation only counts, up to maxmem.
    let max = t.d.config().max_pages as i64;
    assert_eq!(
        reservation(&mut t, XENMEM_INCREASE_RESERVATION, &[0; 4], 0, DOMID_SELF),
        4
    );
    assert_eq!(cur(&mut t), start + 4);
    let room = (max - start - 4) as usize;
    let many = vec![0u64; room + 3];
    assert_eq!(
        reservation(
            &mut t,
            XENMEM_INCREASE_RESERVATION,
            &many[..(room + 3).min(500)],
            0,
            DOMID_SELF
        ),
        (room.min(500)) as i64
    );
    // Continuation index past the end returns it.
    t.mem.put(
        ARG,
        &XenMemoryReservation {
            extent_start: BUF,
            nr_extents: 2,
            ..Default::default()
        },
    );
    assert_eq!(
        t.call(
            MO,
            &[XENMEM_POPULATE_PHYSMAP | (5 << MEMOP_EXTENT_SHIFT), ARG]
        ),
        5
    );
}

#[test]
fn guest_grant_copy_between_its_own_grants_and_frames() {
    use xen_abi::grant_table::*;
    let mut t = h();
    t.mem.put(
        ARG,
        &xen_abi::memory::XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: 1,
            idx: 0,
            gpfn: 0x7000,
        },
    );
    assert_eq!(t.call(MO, &[7, ARG]), 0);
    // gref 9 grants frame 0x300 to ourselves (domid 5).
    t.mem.put(
        (0x7000 << 12) + 72,
        &GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: 5,
            frame: 0x300,
        },
    );
    t.mem.put(0x300 << 12, b"granted!");
    let op = |src: GnttabCopyPtr, dst: GnttabCopyPtr, flags: u16, len: u16| GnttabCopy {
        source: src,
        dest: dst,
        len,
        flags,
        status: 99,
        pad: 0,
    };
    let gref = |u: u64, domid: u16| GnttabCopyPtr {
        u,
        domid,
        offset: 0,
        pad: 0,
    };
    let ops = [
        op(
            gref(9, DOMID_SELF),
            gref(0x301, DOMID_SELF),
            GNTCOPY_SOURCE_GREF,
            8,
        ),
        op(gref(0x300, 0), gref(0x301, DOMID_SELF), 0, 8),
        op(
            gref(9, DOMID_SELF),
            gref(0x301, DOMID_SELF),
            GNTCOPY_SOURCE_GREF,
            4097,
        ),
        op(
            gref(10, DOMID_SELF),
            gref(0x301, DOMID_SELF),
            GNTCOPY_SOURCE_GREF,
            8,
        ),
        op(gref(9, 33), gref(0x301, DOMID_SELF), GNTCOPY_SOURCE_GREF, 8),
        op(
            gref(600, DOMID_SELF),
            gref(0x301, DOMID_SELF),
            GNTCOPY_SOURCE_GREF,
            8,
        ),
    ];
    t.mem.put(BUF, &ops);
    assert_eq!(
        t.call(
            xen_abi::xen::HYPERVISOR_GRANT_TABLE_OP,
            &[GNTTABOP_COPY, BUF, 6]
        ),
        0
    );
    let out: [GnttabCopy; 6] = t.mem.get(BUF);
    let st: Vec<i16> = out.iter().map(|o| o.status).collect();
    assert_eq!(
        st,
        vec![
            GNTST_OKAY,
            GNTST_PERMISSION_DENIED,
            GNTST_BAD_COPY_ARG,
            GNTST_GENERAL_ERROR,
            GNTST_BAD_DOMAIN,
            GNTST_BAD_GNTREF
        ]
    );
    assert_eq!(&t.mem.get::<[u8; 8]>(0x301 << 12), b"granted!");
    let e: GrantEntryV1 = t.mem.get((0x7000 << 12) + 72);
    assert_eq!(e.flags, GTF_PERMIT_ACCESS, "pins released after the copy");
}

#[test]
fn pagetable_dying_is_einval_on_hap_and_esrch_for_unknown_domains() {
    let mut t = h();
    t.mem.put(ARG, &[DOMID_SELF, 0, 0, 0]);
    assert_eq!(
        t.call(HO, &[xen_abi::hvm::hvm_op::HVMOP_PAGETABLE_DYING, ARG]),
        -EINVAL
    );
    t.mem.put(ARG, &[77u16, 0, 0, 0]);
    assert_eq!(
        t.call(HO, &[xen_abi::hvm::hvm_op::HVMOP_PAGETABLE_DYING, ARG]),
        -ESRCH
    );
}

#[test]
fn vm_assist_allows_only_the_runstate_update_flag() {
    use xen_abi::xen::{HYPERVISOR_VM_ASSIST as VA, VMASST_CMD_DISABLE, VMASST_CMD_ENABLE};
    let mut t = h();
    assert_eq!(t.call(VA, &[VMASST_CMD_ENABLE, 5]), 0);
    assert_eq!(t.call(VA, &[VMASST_CMD_DISABLE, 5]), 0);
    // `unsigned int` arguments: the upper halves are ignored.
    assert_eq!(
        t.call(VA, &[(1 << 32) | VMASST_CMD_ENABLE, (1 << 32) | 5]),
        0
    );
    for ty in [0, 1, 2, 3, 4, 6, 32, 63, 64, 1000] {
        assert_eq!(t.call(VA, &[VMASST_CMD_ENABLE, ty]), neg(22), "type {ty}");
    }
    assert_eq!(t.call(VA, &[7, 5]), neg(38), "unknown command");
}
