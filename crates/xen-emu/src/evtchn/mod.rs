//! Event channels: the per-domain port table (Xen's `struct evtchn` states)
//! and its operations, independent of how pending bits reach the guest
//! ([`two_level`] does that).
//!
//! Every operation returns what must be delivered (a port to set pending
//! on a vCPU, or a backend to notify) instead of delivering under the lock,
//! so the table stays a plain, testable state machine.

pub mod two_level;

use std::sync::Arc;

use xen_abi::event_channel as ec;

use crate::types::{Errno, Port};

/// Called (on the sending vCPU's thread, outside all xen-emu locks) when the
/// guest sends on a port connected to a VMM backend. Keep it short: signal
/// an eventfd or a channel.
pub type EvtchnHandler = Arc<dyn Fn(Port) + Send + Sync>;

/// Identifies one backend end (the VMM plays the remote domain, usually
/// dom0). Shown to the guest as the remote port in `EVTCHNOP_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub u32);

/// The other end of an interdomain channel.
#[derive(Clone)]
pub enum Remote {
    /// A port of this same domain (loopback interdomain).
    Local(Port),
    /// A VMM backend acting as domain `domid`.
    Backend {
        domid: u16,
        id: BackendId,
        handler: EvtchnHandler,
    },
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Local(p) => write!(f, "Local({})", p.0),
            Remote::Backend { domid, id, .. } => write!(f, "Backend(dom{domid}, {})", id.0),
        }
    }
}

/// Xen's `ECS_*` channel states.
#[derive(Debug, Clone)]
pub enum State {
    /// `ECS_FREE`.
    Free,
    /// `ECS_RESERVED`: port 0, never usable.
    Reserved,
    /// `ECS_UNBOUND`: waiting for `remote_dom` to bind.
    Unbound { remote_dom: u16 },
    /// `ECS_INTERDOMAIN`.
    Interdomain(Remote),
    /// `ECS_VIRQ`.
    Virq(u32),
    /// `ECS_IPI`.
    Ipi,
    /// `ECS_PIRQ`.
    Pirq(u32),
}

/// One port.
#[derive(Debug, Clone)]
pub struct Channel {
    pub state: State,
    /// `notify_vcpu_id`.
    pub vcpu: u32,
}

/// What the caller must do after a table operation.
#[derive(Clone)]
pub enum Delivery {
    Nothing,
    /// Set `port` pending and notify `vcpu` (2-level bits + upcall).
    Guest {
        port: Port,
        vcpu: u32,
    },
    /// Tell a backend that the guest sent on `port`.
    Backend {
        port: Port,
        handler: EvtchnHandler,
    },
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Nothing => write!(f, "Nothing"),
            Delivery::Guest { port, vcpu } => write!(f, "Guest({}, vcpu {vcpu})", port.0),
            Delivery::Backend { port, .. } => write!(f, "Backend({})", port.0),
        }
    }
}

/// Ports are allocated in buckets like Xen's (`EVTCHNS_PER_BUCKET`); a port
/// past the allocated buckets is "not valid" (`-EINVAL`), not "closed".
const BUCKET: u32 = 64;

/// A domain's event channels.
#[derive(Debug)]
pub struct EvtchnTable {
    chans: Vec<Channel>,
    /// `max_evtchn_port` from config, capped by the ABI.
    max_port: u32,
    domid: u16,
    max_vcpus: u32,
    next_backend: u32,
    /// `virq_to_evtchn[vcpu][virq]`.
    virqs: Vec<[u32; xen_abi::xen::NR_VIRQS as usize]>,
    /// Backend ports offered unbound to this domain
    /// ([`EvtchnTable::offer_backend`]), by backend port number.
    offered: std::collections::HashMap<u32, Remote>,
}

/// What `EVTCHNOP_status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub status: u32,
    pub vcpu: u32,
    pub u0: u32,
    pub u1: u32,
}

impl EvtchnTable {
    /// A table for domain `domid` whose highest usable port is `max_port`.
    pub fn new(domid: u16, max_port: u32, max_vcpus: u32) -> Self {
        let mut t = Self {
            chans: Vec::new(),
            max_port: max_port.min(ec::EVTCHN_2L_NR_CHANNELS - 1),
            domid,
            max_vcpus,
            next_backend: 1,
            virqs: vec![[0; xen_abi::xen::NR_VIRQS as usize]; max_vcpus as usize],
            offered: std::collections::HashMap::new(),
        };
        t.grow_to(0);
        t.chans[0].state = State::Reserved;
        t
    }

    /// Lowers the port limit to what the guest's 2-level ABI can address
    /// (1024 ports for 32-bit shared_info).
    pub fn set_abi_limit(&mut self, nr_channels: u32) {
        self.max_port = self.max_port.min(nr_channels.saturating_sub(1));
    }

    fn grow_to(&mut self, port: u32) {
        let want = ((port / BUCKET) + 1) * BUCKET;
        while (self.chans.len() as u32) < want {
            self.chans.push(Channel {
                state: State::Free,
                vcpu: 0,
            });
        }
    }

    /// Xen's `port_is_valid`.
    pub fn valid(&self, port: Port) -> bool {
        port.0 <= self.max_port && (port.0 as usize) < self.chans.len()
    }

    /// The channel at a valid port.
    pub fn get(&self, port: Port) -> Result<&Channel, Errno> {
        if !self.valid(port) {
            return Err(Errno::EINVAL);
        }
        self.chans.get(port.0 as usize).ok_or(Errno::EINVAL)
    }

    fn get_mut(&mut self, port: Port) -> Result<&mut Channel, Errno> {
        if !self.valid(port) {
            return Err(Errno::EINVAL);
        }
        self.chans.get_mut(port.0 as usize).ok_or(Errno::EINVAL)
    }

    /// Xen's `get_free_port`: lowest free port, allocating a bucket if needed.
    fn free_port(&mut self) -> Result<Port, Errno> {
        for p in 0..=self.max_port {
            if (p as usize) >= self.chans.len() {
                self.grow_to(p);
            }
            if matches!(self.chans[p as usize].state, State::Free) {
                return Ok(Port(p));
            }
        }
        Err(Errno::ENOSPC)
    }

    fn occupy(&mut self, state: State, vcpu: u32) -> Result<Port, Errno> {
        let port = self.free_port()?;
        self.chans[port.0 as usize] = Channel { state, vcpu };
        Ok(port)
    }

    /// `EVTCHNOP_alloc_unbound` (after the caller resolved `DOMID_SELF`).
    pub fn alloc_unbound(&mut self, remote_dom: u16) -> Result<Port, Errno> {
        self.occupy(State::Unbound { remote_dom }, 0)
    }

    /// `EVTCHNOP_bind_interdomain` to a port of this same domain.
    /// Returns the new local port and the delivery Xen makes on it
    /// ("we may have lost notifications": always set pending).
    pub fn bind_loopback(&mut self, remote_port: Port) -> Result<(Port, Delivery), Errno> {
        let domid = self.domid;
        match self.get(remote_port)?.state {
            State::Unbound { remote_dom } if remote_dom == domid => {}
            _ => return Err(Errno::EINVAL),
        }
        let lport = self.free_port()?;
        self.chans[lport.0 as usize] = Channel {
            state: State::Interdomain(Remote::Local(remote_port)),
            vcpu: 0,
        };
        let r = self.get_mut(remote_port)?;
        r.state = State::Interdomain(Remote::Local(lport));
        Ok((
            lport,
            Delivery::Guest {
                port: lport,
                vcpu: 0,
            },
        ))
    }

    /// The backend side binds to a guest port that is unbound for
    /// `backend_domid` (what xenstored/xenconsoled do with
    /// `bind_interdomain`). Xen sets the *backend's* new port pending; here
    /// that is a notification of the backend.
    pub fn bind_backend(
        &mut self,
        port: Port,
        backend_domid: u16,
        handler: EvtchnHandler,
    ) -> Result<BackendId, Errno> {
        match self.get(port)?.state {
            State::Unbound { remote_dom } if remote_dom == backend_domid => {}
            _ => return Err(Errno::EINVAL),
        }
        let id = BackendId(self.next_backend);
        self.next_backend += 1;
        self.get_mut(port)?.state = State::Interdomain(Remote::Backend {
            domid: backend_domid,
            id,
            handler,
        });
        Ok(id)
    }

    /// A backend (acting as `backend_domid`) allocates a port of its own
    /// unbound for this domain; the guest binds it with
    /// `EVTCHNOP_bind_interdomain`. Returns the backend port number.
    pub fn offer_backend(&mut self, backend_domid: u16, handler: EvtchnHandler) -> BackendId {
        let id = BackendId(self.next_backend);
        self.next_backend += 1;
        self.offered.insert(
            id.0,
            Remote::Backend {
                domid: backend_domid,
                id,
                handler,
            },
        );
        id
    }

    /// Withdraws an offered backend port the guest has not bound.
    pub fn withdraw_backend(&mut self, id: BackendId) -> bool {
        self.offered.remove(&id.0).is_some()
    }

    /// `EVTCHNOP_bind_interdomain` from the guest to backend port
    /// `remote_port` of domain `rdom`: it must be an offered port (else
    /// `-EINVAL`, Xen's "remote port not unbound for us"). Like Xen, the
    /// new local port is set pending (notifications may have been lost).
    pub fn bind_to_backend(
        &mut self,
        rdom: u16,
        remote_port: u32,
    ) -> Result<(Port, Delivery), Errno> {
        match self.offered.get(&remote_port) {
            Some(Remote::Backend { domid, .. }) if *domid == rdom => {}
            _ => return Err(Errno::EINVAL),
        }
        let lport = self.free_port()?;
        let Some(remote) = self.offered.remove(&remote_port) else {
            return Err(Errno::EINVAL);
        };
        self.chans[lport.0 as usize] = Channel {
            state: State::Interdomain(remote),
            vcpu: 0,
        };
        Ok((
            lport,
            Delivery::Guest {
                port: lport,
                vcpu: 0,
            },
        ))
    }

    /// The backend closes its end of the channel on guest port `port`:
    /// the guest's port goes back to unbound for the backend domain (Xen's
    /// `evtchn_close` of the remote end).
    pub fn unbind_backend(&mut self, port: Port) -> Result<(), Errno> {
        let chan = self.get_mut(port)?;
        match chan.state {
            State::Interdomain(Remote::Backend { domid, .. }) => {
                chan.state = State::Unbound { remote_dom: domid };
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// The guest port bound to backend port `id`, if any.
    pub fn backend_peer(&self, id: BackendId) -> Option<Port> {
        self.chans
            .iter()
            .enumerate()
            .find_map(|(i, c)| match &c.state {
                State::Interdomain(Remote::Backend { id: b, .. }) if *b == id => {
                    Some(Port(i as u32))
                }
                _ => None,
            })
    }

    /// `EVTCHNOP_bind_virq`.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<Port, Errno> {
        if virq >= xen_abi::xen::NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if virq_is_global(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        if vcpu >= self.max_vcpus {
            return Err(Errno::ENOENT);
        }
        if self.virqs[vcpu as usize][virq as usize] != 0 {
            return Err(Errno::EEXIST);
        }
        let port = self.occupy(State::Virq(virq), vcpu)?;
        self.virqs[vcpu as usize][virq as usize] = port.0;
        Ok(port)
    }

    /// The port bound to `virq` on `vcpu`, if any (for raising the VIRQ).
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<Port> {
        let p = *self.virqs.get(vcpu as usize)?.get(virq as usize)?;
        (p != 0).then_some(Port(p))
    }

    /// `EVTCHNOP_bind_pirq` (after the caller checked the PIRQ): a new
    /// port notifying vCPU 0.
    pub fn bind_pirq(&mut self, pirq: u32) -> Result<Port, Errno> {
        self.occupy(State::Pirq(pirq), 0)
    }

    /// Every port in use, for `EVTCHNOP_reset`.
    pub fn used_ports(&self) -> Vec<Port> {
        (1..self.chans.len() as u32)
            .map(Port)
            .filter(|p| self.valid(*p))
            .filter(|p| {
                !matches!(
                    self.chans[p.0 as usize].state,
                    State::Free | State::Reserved
                )
            })
            .collect()
    }

    /// `EVTCHNOP_bind_ipi`.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<Port, Errno> {
        if vcpu >= self.max_vcpus {
            return Err(Errno::ENOENT);
        }
        self.occupy(State::Ipi, vcpu)
    }

    /// `EVTCHNOP_bind_vcpu`: only VIRQ (per-domain), unbound, interdomain
    /// and PIRQ channels may move.
    pub fn bind_vcpu(&mut self, port: Port, vcpu: u32) -> Result<(), Errno> {
        if vcpu >= self.max_vcpus {
            return Err(Errno::ENOENT);
        }
        let chan = self.get_mut(port)?;
        match chan.state {
            State::Virq(v) if virq_is_global(v) => chan.vcpu = vcpu,
            State::Unbound { .. } | State::Interdomain(_) | State::Pirq(_) => chan.vcpu = vcpu,
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    /// `EVTCHNOP_close` (guest-initiated). A loopback partner goes back to
    /// unbound for this domain, as Xen does for the remote end.
    pub fn close(&mut self, port: Port) -> Result<(), Errno> {
        let chan = self.get(port)?.clone();
        match chan.state {
            State::Free | State::Reserved => return Err(Errno::EINVAL),
            State::Virq(virq) => {
                for per_vcpu in &mut self.virqs {
                    if per_vcpu[virq as usize] == port.0 {
                        per_vcpu[virq as usize] = 0;
                    }
                }
            }
            State::Interdomain(Remote::Local(other)) if other != port => {
                let domid = self.domid;
                self.get_mut(other)?.state = State::Unbound { remote_dom: domid };
            }
            _ => {}
        }
        let c = self.get_mut(port)?;
        c.state = State::Free;
        c.vcpu = 0;
        Ok(())
    }

    /// `EVTCHNOP_send` from the guest.
    pub fn send(&self, port: Port) -> Result<Delivery, Errno> {
        let chan = self.get(port)?;
        Ok(match &chan.state {
            State::Interdomain(Remote::Local(other)) => {
                let vcpu = self.get(*other)?.vcpu;
                Delivery::Guest { port: *other, vcpu }
            }
            State::Interdomain(Remote::Backend { handler, .. }) => Delivery::Backend {
                port,
                handler: handler.clone(),
            },
            State::Ipi => Delivery::Guest {
                port,
                vcpu: chan.vcpu,
            },
            // Xen silently drops notifications on unbound ports.
            State::Unbound { .. } => Delivery::Nothing,
            _ => return Err(Errno::EINVAL),
        })
    }

    /// A send from the backend end of `port` towards the guest.
    pub fn backend_send(&self, port: Port) -> Result<Delivery, Errno> {
        let chan = self.get(port)?;
        match chan.state {
            State::Interdomain(Remote::Backend { .. }) => Ok(Delivery::Guest {
                port,
                vcpu: chan.vcpu,
            }),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `EVTCHNOP_status` for a port of this domain.
    pub fn status(&self, port: Port) -> Result<Status, Errno> {
        let chan = self.get(port)?;
        let (status, u0, u1) = match &chan.state {
            State::Free | State::Reserved => (ec::EVTCHNSTAT_CLOSED, 0, 0),
            State::Unbound { remote_dom } => (ec::EVTCHNSTAT_UNBOUND, u32::from(*remote_dom), 0),
            State::Interdomain(Remote::Local(p)) => {
                (ec::EVTCHNSTAT_INTERDOMAIN, u32::from(self.domid), p.0)
            }
            State::Interdomain(Remote::Backend { domid, id, .. }) => {
                (ec::EVTCHNSTAT_INTERDOMAIN, u32::from(*domid), id.0)
            }
            State::Pirq(p) => (ec::EVTCHNSTAT_PIRQ, *p, 0),
            State::Virq(v) => (ec::EVTCHNSTAT_VIRQ, *v, 0),
            State::Ipi => (ec::EVTCHNSTAT_IPI, 0, 0),
        };
        Ok(Status {
            status,
            vcpu: chan.vcpu,
            u0,
            u1,
        })
    }

    /// Number of ports currently in use (not free, not reserved).
    pub fn in_use(&self) -> usize {
        self.chans
            .iter()
            .filter(|c| !matches!(c.state, State::Free | State::Reserved))
            .count()
    }
}

/// Xen's `virq_is_global` on x86: every VIRQ except the per-vCPU ones.
pub fn virq_is_global(virq: u32) -> bool {
    use xen_abi::xen::*;
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}
