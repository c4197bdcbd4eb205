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
            if rdom != me {
                // The backend domain's ports are never unbound for us (its
                // channels are set up from its side); others do not exist.
                return Err(if rdom == c.d.config.backend_domid {
                    Errno::EINVAL
                } else {
                    Errno::ESRCH
                });
            }
            let (port, delivery) = c.d.evtchns().bind_loopback(Port(op.remote_port))?;
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
            let port = Port(op.port);
            c.d.evtchns().close(port)?;
            // evtchn_free clears the pending bit.
            let (shinfo, compat) = {
                let st = c.d.state();
                (st.shinfo_gpa(), st.compat)
            };
            if let Some(s) = shinfo {
                let _ = two_level::clear_pending(&*c.d.mem, s, compat, port);
            }
            Ok(0)
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
                if two_level::unmask(&*c.d.mem, t, port)? {
                    c.d.raise_upcall(vcpu);
                }
            }
            Ok(0)
        }
        EVTCHNOP_BIND_PIRQ
        | EVTCHNOP_RESET
        | EVTCHNOP_INIT_CONTROL
        | EVTCHNOP_EXPAND_ARRAY
        | EVTCHNOP_SET_PRIORITY => {
            c.d.warn_once(HYPERVISOR_EVENT_CHANNEL_OP, cmd, "event_channel_op");
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}
