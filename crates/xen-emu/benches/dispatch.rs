//! Per-call dispatcher cost (the VMM's service time minus the exit):
//! `xen_version(XENVER_version)` and `EVTCHNOP_send` on a backend channel
//! and on a loopback channel (set pending + selector + upcall), and the
//! other common calls of issue 5 (yield, get_time, runstate, set_timer_op,
//! backend grant map/unmap and copy).
//!
//! The loopback send is measured twice: on the test fake memory (a lock
//! and a map lookup per access, no host pointers) and on [`DirectMemory`],
//! flat RAM that hands out host pointers like the VMM's `DomainMemory`, so
//! that the 2-level bits go through `two_level::Mapped` as in a real VM.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use xen_abi::event_channel::*;
use xen_abi::memory::XenAddToPhysmap;
use xen_abi::xen::*;
use xen_emu::guest::{Gpa, GuestMemory};
use xen_emu::testing::{DirectMemory, DirectPlatform, FakeMemory, FakePlatform, FakeVcpu};
use xen_emu::{Domain, DomainConfig};

/// `EVTCHNOP_send` on a loopback channel with [`DirectMemory`]: shared_info
/// at frame 0x80, the bits cleared before each send so each does the full
/// 0 -> 1 path.
fn bench_direct_loopback(c: &mut Criterion) {
    let mem = Arc::new(DirectMemory::new(1 << 20));
    let d = Domain::new(
        DomainConfig::default(),
        mem.clone(),
        Arc::new(DirectPlatform),
    );
    let mut v = FakeVcpu::long64(0);
    let put = |gpa: Gpa, bytes: &[u8]| mem.write(gpa, bytes).expect("put");
    let map = XenAddToPhysmap {
        domid: 0x7ff0,
        size: 0,
        space: 0,
        idx: 0,
        gpfn: 0x80,
    };
    put(0x1000, zerocopy::IntoBytes::as_bytes(&map));
    assert_eq!(
        d.hypercall(&mut v, HYPERVISOR_MEMORY_OP, [7, 0x1000, 0, 0, 0]),
        0
    );
    let op = |v: &mut FakeVcpu, cmd: u64| {
        d.hypercall(v, HYPERVISOR_EVENT_CHANNEL_OP, [cmd, 0x3000, 0, 0, 0])
    };
    let unbound = EvtchnAllocUnbound {
        dom: 0x7ff0,
        remote_dom: 0x7ff0,
        port: 0,
    };
    put(0x3000, zerocopy::IntoBytes::as_bytes(&unbound));
    assert_eq!(op(&mut v, EVTCHNOP_ALLOC_UNBOUND), 0);
    let mut port = [0u8; 4];
    mem.read(0x3004, &mut port).expect("port");
    let bind = EvtchnBindInterdomain {
        remote_dom: 0x7ff0,
        pad: 0,
        remote_port: u32::from_le_bytes(port),
        local_port: 0,
    };
    put(0x3000, zerocopy::IntoBytes::as_bytes(&bind));
    assert_eq!(op(&mut v, EVTCHNOP_BIND_INTERDOMAIN), 0);
    mem.read(0x3008, &mut port).expect("local port");
    put(0x2100, &port);
    let shinfo: Gpa = 0x80 << 12;
    let clear = || {
        // evtchn_upcall_pending, the selector and the pending bitmap.
        mem.atomic_u64(shinfo)
            .expect("vcpu_info")
            .store(0, Ordering::Relaxed);
        mem.atomic_u64(shinfo + 8)
            .expect("sel")
            .store(0, Ordering::Relaxed);
        mem.atomic_u64(shinfo + 2048)
            .expect("pending")
            .store(0, Ordering::Relaxed);
    };
    clear();
    assert_eq!(
        d.hypercall(
            &mut v,
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_SEND, 0x2100, 0, 0, 0]
        ),
        0
    );
    assert_eq!(
        mem.atomic_u8(shinfo)
            .expect("upcall")
            .load(Ordering::Relaxed),
        1,
        "the send reached vcpu_info"
    );
    c.bench_function("baseline: clearing the bits (direct memory)", |b| {
        b.iter(clear)
    });
    c.bench_function("evtchn send (loopback, host-pointer memory)", |b| {
        b.iter(|| {
            clear();
            black_box(d.hypercall(
                &mut v,
                HYPERVISOR_EVENT_CHANNEL_OP,
                [EVTCHNOP_SEND, 0x2100, 0, 0, 0],
            ))
        })
    });
}

fn bench(c: &mut Criterion) {
    let mem = Arc::new(FakeMemory::new(1 << 20, 4));
    mem.logging
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let plat = Arc::new(FakePlatform::new(mem.clone()));
    let d = Domain::new(
        DomainConfig {
            max_grant_frames: 4,
            ..DomainConfig::default()
        },
        mem.clone(),
        plat.clone(),
    );
    let mut v = FakeVcpu::long64(0);

    c.bench_function("xen_version(XENVER_version)", |b| {
        b.iter(|| black_box(d.hypercall(&mut v, HYPERVISOR_XEN_VERSION, [0, 0, 0, 0, 0])))
    });

    mem.put(
        0x1000,
        &XenAddToPhysmap {
            domid: 0x7ff0,
            size: 0,
            space: 0,
            idx: 0,
            gpfn: 0x80,
        },
    );
    assert_eq!(
        d.hypercall(&mut v, HYPERVISOR_MEMORY_OP, [7, 0x1000, 0, 0, 0]),
        0
    );
    let port = d
        .create_backend_channel(Arc::new(|p| {
            black_box(p);
        }))
        .expect("port");
    mem.put(0x2000, &EvtchnPort { port: port.0 });
    c.bench_function("evtchn send (to backend)", |b| {
        b.iter(|| {
            black_box(d.hypercall(
                &mut v,
                HYPERVISOR_EVENT_CHANNEL_OP,
                [EVTCHNOP_SEND, 0x2000, 0, 0, 0],
            ))
        })
    });

    // Loopback: the send sets guest-visible bits; clear them each time so
    // every iteration does the full 0 -> 1 path.
    mem.put(
        0x3000,
        &EvtchnAllocUnbound {
            dom: 0x7ff0,
            remote_dom: 0x7ff0,
            port: 0,
        },
    );
    assert_eq!(
        d.hypercall(
            &mut v,
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_ALLOC_UNBOUND, 0x3000, 0, 0, 0]
        ),
        0
    );
    let a: EvtchnAllocUnbound = mem.get(0x3000);
    mem.put(
        0x3000,
        &EvtchnBindInterdomain {
            remote_dom: 0x7ff0,
            pad: 0,
            remote_port: a.port,
            local_port: 0,
        },
    );
    assert_eq!(
        d.hypercall(
            &mut v,
            HYPERVISOR_EVENT_CHANNEL_OP,
            [EVTCHNOP_BIND_INTERDOMAIN, 0x3000, 0, 0, 0]
        ),
        0
    );
    let bnd: EvtchnBindInterdomain = mem.get(0x3000);
    mem.put(
        0x2100,
        &EvtchnPort {
            port: bnd.local_port,
        },
    );
    // Baseline: the per-iteration reset alone, to subtract from the next one.
    c.bench_function("baseline: clearing the bits (fake memory writes)", |b| {
        b.iter(|| {
            mem.put(0x80 << 12, &[0u8; 16]);
            mem.put((0x80 << 12) + 2048, &0u64);
        })
    });
    c.bench_function("evtchn send (loopback, full set_pending)", |b| {
        b.iter(|| {
            mem.put(0x80 << 12, &[0u8; 16]);
            mem.put((0x80 << 12) + 2048, &0u64);
            black_box(d.hypercall(
                &mut v,
                HYPERVISOR_EVENT_CHANNEL_OP,
                [EVTCHNOP_SEND, 0x2100, 0, 0, 0],
            ))
        })
    });

    c.bench_function("sched_op(SCHEDOP_yield)", |b| {
        b.iter(|| black_box(d.hypercall(&mut v, HYPERVISOR_SCHED_OP, [0, 0, 0, 0, 0])))
    });
    c.bench_function("hvm_op(HVMOP_get_time)", |b| {
        b.iter(|| black_box(d.hypercall(&mut v, HYPERVISOR_HVM_OP, [10, 0x4000, 0, 0, 0])))
    });
    c.bench_function("vcpu_op(VCPUOP_get_runstate_info)", |b| {
        b.iter(|| black_box(d.hypercall(&mut v, HYPERVISOR_VCPU_OP, [4, 0, 0x4000, 0, 0])))
    });
    c.bench_function("set_timer_op (re-arm 1 s ahead)", |b| {
        b.iter(|| {
            black_box(d.hypercall(&mut v, HYPERVISOR_SET_TIMER_OP, [2_000_000_000, 0, 0, 0, 0]))
        })
    });
    // Backend grant API: grant ref 8 of frame 0 (at 0x90) grants 0x50.
    mem.put(
        0x1000,
        &XenAddToPhysmap {
            domid: 0x7ff0,
            size: 0,
            space: 1,
            idx: 0,
            gpfn: 0x90,
        },
    );
    assert_eq!(
        d.hypercall(&mut v, HYPERVISOR_MEMORY_OP, [7, 0x1000, 0, 0, 0]),
        0
    );
    mem.put(
        (0x90 << 12) + 64,
        &xen_abi::grant_table::GrantEntryV1 {
            flags: 1,
            domid: 0,
            frame: 0x50,
        },
    );
    c.bench_function("backend grant_map + grant_unmap (rw)", |b| {
        b.iter(|| {
            let m = d.grant_map(8, true).expect("map");
            d.grant_unmap(m.handle).expect("unmap");
        })
    });
    let mut buf = [0u8; 512];
    c.bench_function("backend grant_copy_from_guest 512 B", |b| {
        b.iter(|| {
            d.grant_copy_from_guest(xen_emu::CopyEnd::Grant { gref: 8, offset: 0 }, &mut buf)
                .expect("copy");
            black_box(&buf);
        })
    });
}

criterion_group!(benches, bench, bench_direct_loopback);
criterion_main!(benches);
