//! `HYPERVISOR_event_channel_op` (Xen's `common/event_channel.c`):
//! argument parsing and copy-back around [`crate::evtchn::EvtchnTable`].

use xen_abi::event_channel::*;
use xen_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP;

use super::Call;
use crate::evtchn::two_level;
use crate::types::{Errno, HcResult, Port};

pub fn event_channel_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let arg = c.args[1];
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => {
            let mut op: EvtchnAllocUnbound = c.g.read(arg)?;
            c.self_domid(op.dom)?;
            let remote = if op.remote_dom == xen_abi::DOMID_SELF {
                c.d.domid()
            } else {
                op.remote_dom
            };
            op.port = c.d.evtchns().alloc_unbound(remote)?.0;
            c.g.write(arg, &op)?;
            Ok(0)
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            let mut op: EvtchnBindInterdomain = c.g.read(arg)?;
            let me = c.d.domid();
            let rdom = if op.remote_dom == xen_abi::DOMID_SELF {
                me
            } else {
                op.remote_dom
            };
            let (port, delivery) = if rdom == me {
                c.d.evtchns().bind_loopback(Port(op.remote_port))?
            } else if rdom == c.d.config.backend_domid {
                // A port the backend offered us (offer_backend_channel).
                c.d.evtchns().bind_to_backend(rdom, op.remote_port)?
            } else {
                return Err(Errno::ESRCH);
            };
            op.local_port = port.0;
            c.d.deliver(delivery);
            c.g.write(arg, &op)?;
            Ok(0)
        }
        EVTCHNOP_BIND_VIRQ => {
            let mut op: EvtchnBindVirq = c.g.read(arg)?;
            op.port = c.d.evtchns().bind_virq(op.virq, op.vcpu)?.0;
            c.g.write(arg, &op)?;
            Ok(0)
        }
        EVTCHNOP_BIND_IPI => {
            let mut op: EvtchnBindIpi = c.g.read(arg)?;
            op.port = c.d.evtchns().bind_ipi(op.vcpu)?.0;
            c.g.write(arg, &op)?;
            Ok(0)
        }
        EVTCHNOP_BIND_VCPU => {
            let op: EvtchnBindVcpu = c.g.read(arg)?;
            c.d.evtchns().bind_vcpu(Port(op.port), op.vcpu)?;
            Ok(0)
        }
        EVTCHNOP_CLOSE => {
            let op: EvtchnClose = c.g.read(arg)?;
            close_port(c.d, Port(op.port))?;
            Ok(0)
        }
        EVTCHNOP_BIND_PIRQ => {
            let mut op: EvtchnBindPirq = c.g.read(arg)?;
            let mut pirqs = c.d.pirq_table();
            pirqs.check_bind(op.pirq)?;
            let port = c.d.evtchns().bind_pirq(op.pirq)?;
            pirqs.bind(op.pirq, port.0);
            drop(pirqs);
            op.port = port.0;
            c.g.write(arg, &op)?;
            Ok(0)
        }
        EVTCHNOP_RESET => {
            let op: EvtchnReset = c.g.read(arg)?;
            c.self_domid(op.dom)?;
            let ports = c.d.evtchns().used_ports();
            for p in ports {
                let _ = close_port(c.d, p);
            }
            Ok(0)
        }
        EVTCHNOP_INIT_CONTROL => {
            // evtchn_fifo_init_control's argument checks, then the answer of
            // a Xen without the FIFO ABI.
            let op: EvtchnInitControl = c.g.read(arg)?;
            if op.vcpu >= c.d.config.max_vcpus.max(1) {
                return Err(Errno::ENOENT);
            }
            if u64::from(op.offset) > xen_abi::PAGE_SIZE as u64 - FIFO_CONTROL_BLOCK_SIZE {
                return Err(Errno::EINVAL);
            }
            if op.offset & 7 != 0 {
                return Err(Errno::EINVAL);
            }
            Err(Errno::ENOSYS)
        }
        // No FIFO ABI in use: evtchn_fifo_expand_array.
        EVTCHNOP_EXPAND_ARRAY => Err(Errno::EOPNOTSUPP),
        EVTCHNOP_SET_PRIORITY => {
            // struct evtchn_set_priority { port, priority }.
            let op: [u32; 2] = c.g.read(arg)?;
            c.d.evtchns().get(Port(op[0]))?;
            // The 2-level ABI has no priorities.
            Err(Errno::ENOSYS)
        }
        EVTCHNOP_SEND => {
            let op: EvtchnSend = c.g.read(arg)?;
            let delivery = c.d.evtchns().send(Port(op.port))?;
            c.d.deliver(delivery);
            Ok(0)
        }
        EVTCHNOP_STATUS => {
            let mut op: EvtchnStatus = c.g.read(arg)?;
            c.self_domid(op.dom)?;
            let s = c.d.evtchns().status(Port(op.port))?;
            op.status = s.status;
            op.vcpu = s.vcpu;
            op.u0 = s.u0;
            op.u1 = s.u1;
            c.g.write(arg, &op)?;
            Ok(0)
        }
        EVTCHNOP_UNMASK => {
            let op: EvtchnUnmask = c.g.read(arg)?;
            let port = Port(op.port);
            let vcpu = c.d.evtchns().get(port)?.vcpu;
            let target = c.d.state().target(vcpu);
            if let Some(t) = target {
                if c.d.unmask_port(vcpu, t, port)? {
                    c.d.raise_upcall(vcpu);
                }
            }
            Ok(0)
        }
        _ => {
            c.d.warn_once(HYPERVISOR_EVENT_CHANNEL_OP, cmd, "event_channel_op");
            Err(Errno::ENOSYS)
        }
    }
}

/// `sizeof(evtchn_fifo_control_block_t)`: `ready`, `_rsvd`, 16 queue heads.
const FIFO_CONTROL_BLOCK_SIZE: u64 = 8 + 16 * 4;

/// `evtchn_close` for the guest: frees the port (a PIRQ binding is
/// unlinked) and clears its pending bit (`evtchn_free`).
pub(crate) fn close_port(d: &crate::Domain, port: Port) -> Result<(), Errno> {
    let pirq = match d.evtchns().get(port)?.state {
        crate::evtchn::State::Pirq(p) => Some(p),
        _ => None,
    };
    d.evtchns().close(port)?;
    if let Some(p) = pirq {
        d.pirq_table().unbind(p);
    }
    let (shinfo, compat) = {
        let st = d.state();
        (st.shinfo_gpa(), st.compat)
    };
    if let Some(s) = shinfo {
        let _ = two_level::clear_pending(&*d.mem, s, compat, port);
    }
    Ok(())
}
