//! The event-channel table against a simple model: random sequences of
//! alloc_unbound / bind_loopback / close / send / status agree with what a
//! map from port to state predicts.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use proptest::prelude::*;
use xen_abi::event_channel::*;
use xen_emu::evtchn::{Delivery, EvtchnTable};
use xen_emu::{Errno, Port};

const DOMID: u16 = 5;
const MAX_PORT: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum M {
    Unbound(u16),
    Loop(u32),
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(u16),
    Bind(u32),
    Close(u32),
    Send(u32),
    Status(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop_oneof![Just(0u16), Just(DOMID)].prop_map(Op::Alloc),
        (0..MAX_PORT + 3).prop_map(Op::Bind),
        (0..MAX_PORT + 3).prop_map(Op::Close),
        (0..MAX_PORT + 3).prop_map(Op::Send),
        (0..MAX_PORT + 3).prop_map(Op::Status),
    ]
}

proptest! {
    #[test]
    fn table_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut t = EvtchnTable::new(DOMID, MAX_PORT, 1);
        let mut m: BTreeMap<u32, M> = BTreeMap::new();
        let free = |m: &BTreeMap<u32, M>| (1..=MAX_PORT).find(|p| !m.contains_key(p));
        for op in ops {
            match op {
                Op::Alloc(remote) => {
                    let r = t.alloc_unbound(remote);
                    match free(&m) {
                        Some(p) => {
                            prop_assert_eq!(r, Ok(Port(p)));
                            m.insert(p, M::Unbound(remote));
                        }
                        None => prop_assert_eq!(r, Err(Errno::ENOSPC)),
                    }
                }
                Op::Bind(rp) => {
                    let r = t.bind_loopback(Port(rp));
                    let ok = m.get(&rp) == Some(&M::Unbound(DOMID));
                    match (ok, free(&m)) {
                        (true, Some(lp)) => {
                            let (p, d) = r.unwrap();
                            prop_assert_eq!(p, Port(lp));
                            let hit = matches!(d, Delivery::Guest { port, .. } if port == Port(lp));
                            prop_assert!(hit, "binding notifies the new port");
                            m.insert(lp, M::Loop(rp));
                            m.insert(rp, M::Loop(lp));
                        }
                        (true, None) => prop_assert_eq!(r.err(), Some(Errno::ENOSPC)),
                        (false, _) => prop_assert_eq!(r.err(), Some(Errno::EINVAL)),
                    }
                }
                Op::Close(p) => {
                    let r = t.close(Port(p));
                    match m.remove(&p) {
                        None => prop_assert_eq!(r, Err(Errno::EINVAL)),
                        Some(st) => {
                            prop_assert_eq!(r, Ok(()));
                            if let M::Loop(other) = st {
                                if other != p {
                                    m.insert(other, M::Unbound(DOMID));
                                }
                            }
                        }
                    }
                }
                Op::Send(p) => {
                    let r = t.send(Port(p));
                    match m.get(&p) {
                        None => prop_assert!(r.is_err()),
                        Some(M::Unbound(_)) => prop_assert!(matches!(r, Ok(Delivery::Nothing))),
                        Some(M::Loop(o)) => {
                            let hit = matches!(r, Ok(Delivery::Guest { port, .. }) if port == Port(*o));
                            prop_assert!(hit, "send reaches the partner");
                        }
                    }
                }
                Op::Status(p) => {
                    let r = t.status(Port(p));
                    if p > MAX_PORT {
                        prop_assert!(r.is_err());
                        continue;
                    }
                    let Ok(s) = r else {
                        // Valid ports are those in allocated buckets.
                        continue;
                    };
                    match m.get(&p) {
                        None => prop_assert_eq!(s.status, EVTCHNSTAT_CLOSED),
                        Some(M::Unbound(d)) => {
                            prop_assert_eq!(s.status, EVTCHNSTAT_UNBOUND);
                            prop_assert_eq!(s.u0, u32::from(*d));
                        }
                        Some(M::Loop(o)) => {
                            prop_assert_eq!(s.status, EVTCHNSTAT_INTERDOMAIN);
                            prop_assert_eq!(s.u1, *o);
                        }
                    }
                }
            }
        }
        prop_assert_eq!(t.in_use(), m.len());
    }
}
