//! `event_channel_op`, 2-level delivery, the backend API, `vcpu_op`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod common;
use std::sync::{Arc, Mutex};

use common::*;
use xen_abi::errno::*;
use xen_abi::event_channel::*;
use xen_abi::hvm::params::*;
use xen_abi::memory::{XenAddToPhysmap, XenAddToPhysmapCompat};
use xen_abi::vcpu::*;
use xen_abi::xen::{
    SharedInfo, SharedInfoCompat, HYPERVISOR_EVENT_CHANNEL_OP as EO, HYPERVISOR_HVM_OP,
    HYPERVISOR_MEMORY_OP, HYPERVISOR_VCPU_OP as VO,
};
use xen_abi::DOMID_SELF;
use xen_emu::platform::Upcall;
use xen_emu::testing::Event;
use xen_emu::{DomainConfig, Port};

const SHINFO_GFN: u64 = 0x10000;
const SHINFO: u64 = SHINFO_GFN << 12;

fn map_shinfo(t: &mut H) {
    if t.v.mode == xen_emu::guest::GuestMode::Protected32 {
        t.mem.put(
            ARG,
            &XenAddToPhysmapCompat {
                domid: DOMID_SELF,
                size: 0,
                space: 0,
                idx: 0,
                gpfn: SHINFO_GFN as u32,
            },
        );
    } else {
        t.mem.put(
            ARG,
            &XenAddToPhysmap {
                domid: DOMID_SELF,
                size: 0,
                space: 0,
                idx: 0,
                gpfn: SHINFO_GFN,
            },
        );
    }
    assert_eq!(t.call(HYPERVISOR_MEMORY_OP, &[7, ARG]), 0);
}

fn set_callback_vector(t: &mut H, vector: u64) {
    t.mem.put(
        ARG,
        &xen_abi::hvm::hvm_op::XenHvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index: HVM_PARAM_CALLBACK_IRQ,
            value: (HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | vector,
        },
    );
    assert_eq!(t.call(HYPERVISOR_HVM_OP, &[0, ARG]), 0);
}

fn alloc_unbound(t: &mut H, remote: u16) -> i64 {
    t.mem.put(
        ARG,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: remote,
            port: 0,
        },
    );
    let r = t.call(EO, &[EVTCHNOP_ALLOC_UNBOUND, ARG]);
    if r == 0 {
        t.mem.get::<EvtchnAllocUnbound>(ARG).port as i64
    } else {
        r
    }
}

fn status(t: &mut H, port: u32) -> (i64, EvtchnStatus) {
    t.mem.put(
        ARG,
        &EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        },
    );
    let r = t.call(EO, &[EVTCHNOP_STATUS, ARG]);
    (r, t.mem.get(ARG))
}

fn port_op(t: &mut H, cmd: u64, port: u32) -> i64 {
    t.mem.put(ARG, &EvtchnPort { port });
    t.call(EO, &[cmd, ARG])
}

/// Loopback pair: (unbound-then-bound port, new local port).
fn loopback(t: &mut H) -> (u32, u32) {
    let a = alloc_unbound(t, DOMID_SELF) as u32;
    t.mem.put(
        ARG,
        &EvtchnBindInterdomain {
            remote_dom: DOMID_SELF,
            pad: 0,
            remote_port: a,
            local_port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_INTERDOMAIN, ARG]), 0);
    (a, t.mem.get::<EvtchnBindInterdomain>(ARG).local_port)
}

#[test]
fn alloc_unbound_gives_lowest_free_port_and_status_unbound() {
    let mut t = h();
    assert_eq!(alloc_unbound(&mut t, 0), 1);
    assert_eq!(alloc_unbound(&mut t, 0), 2);
    let (r, s) = status(&mut t, 1);
    assert_eq!(r, 0);
    assert_eq!((s.status, s.u0), (EVTCHNSTAT_UNBOUND, 0));
    let (_, s) = status(&mut t, 3);
    assert_eq!(s.status, EVTCHNSTAT_CLOSED);
}

#[test]
fn alloc_unbound_errors() {
    let mut t = h();
    t.mem.put(
        ARG,
        &EvtchnAllocUnbound {
            dom: 0,
            remote_dom: 0,
            port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_ALLOC_UNBOUND, ARG]), -EPERM);
    t.mem.put(
        ARG,
        &EvtchnAllocUnbound {
            dom: 300,
            remote_dom: 0,
            port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_ALLOC_UNBOUND, ARG]), -ESRCH);
    assert_eq!(t.call(EO, &[EVTCHNOP_ALLOC_UNBOUND, UNMAPPED]), -EFAULT);
}

#[test]
fn ports_run_out_at_configured_maximum() {
    let mut t = h_with(
        DomainConfig {
            max_event_channels: 5,
            ..config()
        },
        xen_emu::guest::GuestMode::Long64,
    );
    for want in 1..=5 {
        assert_eq!(alloc_unbound(&mut t, 0), want);
    }
    assert_eq!(alloc_unbound(&mut t, 0), -ENOSPC);
    assert_eq!(port_op(&mut t, EVTCHNOP_CLOSE, 3), 0);
    assert_eq!(alloc_unbound(&mut t, 0), 3);
    assert_eq!(status(&mut t, 6).0, -EINVAL, "beyond max port is not valid");
}

#[test]
fn bad_ports_are_einval() {
    let mut t = h();
    assert_eq!(
        port_op(&mut t, EVTCHNOP_SEND, 0),
        -EINVAL,
        "port 0 is reserved"
    );
    assert_eq!(port_op(&mut t, EVTCHNOP_CLOSE, 0), -EINVAL);
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, 5000), -EINVAL);
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, 3), -EINVAL, "free port");
    assert_eq!(port_op(&mut t, EVTCHNOP_CLOSE, 3), -EINVAL);
    assert_eq!(port_op(&mut t, EVTCHNOP_UNMASK, 5000), -EINVAL);
    assert_eq!(status(&mut t, u32::MAX).0, -EINVAL);
    assert_eq!(t.call(EO, &[99, ARG]), -ENOSYS);
}

#[test]
fn send_on_unbound_port_is_dropped_silently() {
    let mut t = h();
    map_shinfo(&mut t);
    let p = alloc_unbound(&mut t, 0) as u32;
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, p), 0);
    let s: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(s.evtchn_pending[0], 0);
}

#[test]
fn loopback_send_sets_pending_selector_and_upcall() {
    let mut t = h();
    map_shinfo(&mut t);
    set_callback_vector(&mut t, 0xf3);
    let (a, b) = loopback(&mut t);
    let (_, s) = status(&mut t, b);
    assert_eq!((s.status, s.u0, s.u1), (EVTCHNSTAT_INTERDOMAIN, 5, a));
    // Binding sets the new local port pending (Xen: lost notifications).
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0], 1 << b);
    // Clear as a guest would, then send on b: a becomes pending.
    t.mem.put(SHINFO, &[0u8; 64]);
    t.mem.put(SHINFO + 2048, &0u64);
    let before = t.plat.upcalls().len();
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, b), 0);
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0] & (1 << a), 1 << a);
    assert_eq!(si.vcpu_info[0].evtchn_pending_sel, 1);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 1);
    assert_eq!(t.plat.upcalls()[before..], [(0, Upcall::Vector(0xf3))]);
    // Already pending: no second upcall.
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, b), 0);
    assert_eq!(t.plat.upcalls().len(), before + 1);
}

#[test]
fn send_on_masked_port_leaves_it_pending_until_unmask() {
    let mut t = h();
    map_shinfo(&mut t);
    set_callback_vector(&mut t, 0xf3);
    let (a, b) = loopback(&mut t);
    t.mem.put(SHINFO, &[0u8; 64]);
    t.mem.put(SHINFO + 2048, &0u64);
    // Mask a.
    t.mem.put(SHINFO + 2048 + 512, &(1u64 << a));
    let before = t.plat.upcalls().len();
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, b), 0);
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0] & (1 << a), 1 << a);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 0);
    assert_eq!(t.plat.upcalls().len(), before);
    assert_eq!(port_op(&mut t, EVTCHNOP_UNMASK, a), 0);
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_mask[0], 0);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 1);
    assert_eq!(t.plat.upcalls().len(), before + 1);
}

#[test]
fn close_frees_port_and_partner_becomes_unbound() {
    let mut t = h();
    map_shinfo(&mut t);
    let (a, b) = loopback(&mut t);
    assert_eq!(port_op(&mut t, EVTCHNOP_CLOSE, b), 0);
    let (_, s) = status(&mut t, b);
    assert_eq!(s.status, EVTCHNSTAT_CLOSED);
    let (_, s) = status(&mut t, a);
    assert_eq!((s.status, s.u0), (EVTCHNSTAT_UNBOUND, 5));
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(
        si.evtchn_pending[0] & (1 << b),
        0,
        "pending cleared on close"
    );
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, b), -EINVAL);
}

#[test]
fn bind_interdomain_errors() {
    let mut t = h();
    let p = alloc_unbound(&mut t, 0) as u32;
    // Unbound for dom0, not for us.
    t.mem.put(
        ARG,
        &EvtchnBindInterdomain {
            remote_dom: DOMID_SELF,
            pad: 0,
            remote_port: p,
            local_port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_INTERDOMAIN, ARG]), -EINVAL);
    t.mem.put(
        ARG,
        &EvtchnBindInterdomain {
            remote_dom: 0,
            pad: 0,
            remote_port: 1,
            local_port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_INTERDOMAIN, ARG]), -EINVAL);
    t.mem.put(
        ARG,
        &EvtchnBindInterdomain {
            remote_dom: 44,
            pad: 0,
            remote_port: 1,
            local_port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_INTERDOMAIN, ARG]), -ESRCH);
}

#[test]
fn backend_channel_notifies_handler_and_backend_send_reaches_guest() {
    let mut t = h();
    map_shinfo(&mut t);
    set_callback_vector(&mut t, 0xf3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let port =
        t.d.create_backend_channel(Arc::new(move |p: Port| s2.lock().unwrap().push(p.0)))
            .unwrap();
    let (_, s) = status(&mut t, port.0);
    assert_eq!((s.status, s.u0), (EVTCHNSTAT_INTERDOMAIN, 0));
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, port.0), 0);
    assert_eq!(*seen.lock().unwrap(), vec![port.0]);
    t.d.backend_send(port.0).unwrap();
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0], 1 << port.0);
    assert!(t.plat.upcalls().contains(&(0, Upcall::Vector(0xf3))));
    // After the guest closes it, the backend can no longer send.
    assert_eq!(port_op(&mut t, EVTCHNOP_CLOSE, port.0), 0);
    assert!(t.d.backend_send(port.0).is_err());
}

#[test]
fn backend_binds_to_guest_allocated_port() {
    let mut t = h();
    let p = alloc_unbound(&mut t, 0) as u32;
    t.d.bind_backend_channel(p, Arc::new(|_| {})).unwrap();
    assert_eq!(status(&mut t, p).1.status, EVTCHNSTAT_INTERDOMAIN);
    let q = alloc_unbound(&mut t, DOMID_SELF) as u32;
    assert!(
        t.d.bind_backend_channel(q, Arc::new(|_| {})).is_err(),
        "unbound for self, not dom0"
    );
}

#[test]
fn events_before_shared_info_are_replayed_when_it_is_mapped() {
    let mut t = h();
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    t.d.backend_send(port.0).unwrap();
    map_shinfo(&mut t);
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0], 1 << port.0);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 1);
}

#[test]
fn compat_guest_gets_32bit_selector_and_bitmaps() {
    let mut t = h32();
    map_shinfo(&mut t);
    // Ports 33.. live in the second 32-bit word.
    for _ in 0..40 {
        alloc_unbound(&mut t, 0);
    }
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    assert_eq!(port.0, 41);
    t.d.backend_send(port.0).unwrap();
    let si: SharedInfoCompat = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[1], 1 << (41 - 32));
    assert_eq!(si.vcpu_info[0].evtchn_pending_sel, 1 << 1);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 1);
}

#[test]
fn ipi_and_virq_binding() {
    let mut t = h();
    map_shinfo(&mut t);
    t.mem.put(ARG, &EvtchnBindIpi { vcpu: 1, port: 0 });
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_IPI, ARG]), 0);
    let ipi = t.mem.get::<EvtchnBindIpi>(ARG).port;
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, ipi), 0);
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(
        si.vcpu_info[1].evtchn_upcall_pending, 1,
        "IPI goes to vCPU 1"
    );
    t.mem.put(ARG, &EvtchnBindIpi { vcpu: 9, port: 0 });
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_IPI, ARG]), -ENOENT);
    t.mem.put(
        ARG,
        &EvtchnBindVirq {
            virq: 0,
            vcpu: 1,
            port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_VIRQ, ARG]), 0);
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_VIRQ, ARG]), -EEXIST);
    t.mem.put(
        ARG,
        &EvtchnBindVirq {
            virq: 2,
            vcpu: 1,
            port: 0,
        },
    );
    assert_eq!(
        t.call(EO, &[EVTCHNOP_BIND_VIRQ, ARG]),
        -EINVAL,
        "global VIRQ on vCPU 1"
    );
    t.mem.put(
        ARG,
        &EvtchnBindVirq {
            virq: 24,
            vcpu: 0,
            port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_VIRQ, ARG]), -EINVAL);
    assert_eq!(
        port_op(&mut t, EVTCHNOP_SEND, ipi + 1),
        -EINVAL,
        "cannot send on a VIRQ"
    );
}

#[test]
fn register_vcpu_info_moves_it_and_forces_rescan() {
    let mut t = h();
    map_shinfo(&mut t);
    let area = 0x5000u64;
    t.mem.put(
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: area >> 12,
            offset: 0x40,
            rsvd: 0,
        },
    );
    assert_eq!(t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG]), 0);
    let vi: xen_abi::xen::VcpuInfo = t.mem.get(area + 0x40);
    assert_eq!(vi.evtchn_upcall_pending, 1);
    assert_eq!(vi.evtchn_pending_sel, u64::MAX);
    assert!(t
        .plat
        .events()
        .contains(&Event::Pvclock(0, area + 0x40 + 32)));
    // Events now land in the new area.
    t.mem.put(area + 0x40, &[0u8; 16]);
    let port = t.d.create_backend_channel(Arc::new(|_| {})).unwrap();
    t.d.backend_send(port.0).unwrap();
    let vi: xen_abi::xen::VcpuInfo = t.mem.get(area + 0x40);
    assert_eq!(vi.evtchn_upcall_pending, 1);
    assert_eq!(vi.evtchn_pending_sel, 1);
    assert_eq!(
        t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG]),
        -EINVAL,
        "only once"
    );
}

#[test]
fn register_vcpu_info_errors() {
    let mut t = h();
    t.mem.put(
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: 5,
            offset: 4096 - 63,
            rsvd: 0,
        },
    );
    assert_eq!(t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]), -EINVAL);
    for offset in [4096 - 56, 4] {
        t.mem.put(
            ARG,
            &VcpuRegisterVcpuInfo {
                mfn: 5,
                offset,
                rsvd: 0,
            },
        );
        assert_eq!(
            t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]),
            -EINVAL,
            "offset {offset}"
        );
    }
    // Nothing was registered by the failures: a good call still works.
    t.mem.put(
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: 5,
            offset: 8,
            rsvd: 0,
        },
    );
    assert_eq!(t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]), 0);
    t.mem.put(
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: BEYOND_RAM >> 12,
            offset: 0,
            rsvd: 0,
        },
    );
    assert_eq!(
        t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG]),
        -EINVAL,
        "no RAM behind it"
    );
    assert_eq!(t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 2, ARG]), -ENOENT);
    assert_eq!(
        t.call(VO, &[VCPUOP_REGISTER_VCPU_INFO, 0, UNMAPPED]),
        -EFAULT
    );
}

#[test]
fn raised_virq_reaches_its_bound_port() {
    let mut t = h();
    map_shinfo(&mut t);
    assert!(!t.d.raise_virq(1, 0), "unbound VIRQ is dropped");
    t.mem.put(
        ARG,
        &EvtchnBindVirq {
            virq: 0,
            vcpu: 1,
            port: 0,
        },
    );
    assert_eq!(t.call(EO, &[EVTCHNOP_BIND_VIRQ, ARG]), 0);
    let port = t.mem.get::<EvtchnBindVirq>(ARG).port;
    assert!(t.d.raise_virq(1, 0));
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0], 1 << port);
    assert_eq!(si.vcpu_info[1].evtchn_upcall_pending, 1);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 0);
    assert_eq!(port_op(&mut t, EVTCHNOP_CLOSE, port), 0);
    assert!(!t.d.raise_virq(1, 0), "closing unbinds the VIRQ");
}

#[test]
fn guest_binds_port_the_backend_offered_and_backend_can_unbind() {
    let mut t = h();
    map_shinfo(&mut t);
    set_callback_vector(&mut t, 0xf3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let bport =
        t.d.offer_backend_channel(Arc::new(move |p: Port| s2.lock().unwrap().push(p.0)));
    assert_eq!(t.d.backend_peer(bport), None);
    let bind = |t: &mut H, dom: u16, port: u32| {
        t.mem.put(
            ARG,
            &EvtchnBindInterdomain {
                remote_dom: dom,
                pad: 0,
                remote_port: port,
                local_port: 0,
            },
        );
        let r = t.call(EO, &[EVTCHNOP_BIND_INTERDOMAIN, ARG]);
        (r, t.mem.get::<EvtchnBindInterdomain>(ARG).local_port)
    };
    // Wrong backend port: not unbound for us.
    assert_eq!(bind(&mut t, 0, bport + 100).0, -EINVAL);
    let (r, lport) = bind(&mut t, 0, bport);
    assert_eq!(r, 0);
    assert_eq!(t.d.backend_peer(bport), Some(lport));
    // Xen sets the new local port pending ("we may have lost notifications").
    let si: SharedInfo = t.mem.get(SHINFO);
    assert_eq!(si.evtchn_pending[0] & (1 << lport), 1 << lport);
    let (_, s) = status(&mut t, lport);
    assert_eq!((s.status, s.u0, s.u1), (EVTCHNSTAT_INTERDOMAIN, 0, bport));
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, lport), 0);
    assert_eq!(*seen.lock().unwrap(), vec![lport]);
    // Offered ports are bound once.
    assert_eq!(bind(&mut t, 0, bport).0, -EINVAL);
    // The backend closes its end: the guest's port is unbound for dom0.
    t.d.backend_unbind(lport).unwrap();
    let (_, s) = status(&mut t, lport);
    assert_eq!((s.status, s.u0), (EVTCHNSTAT_UNBOUND, 0));
    assert_eq!(port_op(&mut t, EVTCHNOP_SEND, lport), 0, "dropped");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(t.d.backend_send(lport).is_err());
    // ...and the backend may bind it again (reconnect).
    t.d.bind_backend_channel(lport, Arc::new(|_| {})).unwrap();
}
