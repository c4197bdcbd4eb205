//! The guest ring front end, driven through `PageMemory` like a guest's
//! xenbus driver would drive a real page.
#![allow(clippy::unwrap_used)]

mod common;
use common::{parse, z};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use xenstore::ring::{
    offset, GuestSide, PageMemory, RingFrontend, RingMemory, ERROR_PROTO, ERROR_RINGIDX,
};
use xenstore::wire::{self, MsgType};
use xenstore::Engine;

struct Guest {
    mem: Arc<PageMemory>,
    ring: Arc<RingFrontend>,
    kicks: Arc<AtomicUsize>,
}

fn guest(e: &Engine, domid: u16) -> Guest {
    e.introduce_domain(domid);
    e.mkdir(&format!("/local/domain/{domid}")).unwrap();
    e.set_perms(
        &format!("/local/domain/{domid}"),
        &xenstore::perms::Perms::owned_by(domid),
    )
    .unwrap();
    let mem = Arc::new(PageMemory::default());
    let kicks = Arc::new(AtomicUsize::new(0));
    let k = kicks.clone();
    let ring = RingFrontend::new(
        e.clone(),
        domid,
        mem.clone(),
        Arc::new(move || {
            k.fetch_add(1, Ordering::SeqCst);
        }),
    );
    Guest { mem, ring, kicks }
}

impl Guest {
    fn side(&self) -> GuestSide<'_> {
        GuestSide { mem: &*self.mem }
    }

    /// Sends a request, runs the back end until the full reply arrived.
    fn call(&self, ty: MsgType, payload: &[u8]) -> (u32, Vec<u8>) {
        let mut msg = Vec::new();
        wire::push_msg(&mut msg, ty as u32, 9, 0, &[payload]);
        let mut sent = 0;
        let mut got = Vec::new();
        for _ in 0..100 {
            sent += self.side().send(&msg[sent..]);
            self.ring.process();
            got.extend(self.side().receive());
            if sent == msg.len() && got.len() >= 16 {
                let h = wire::Header::decode(got[..16].try_into().unwrap());
                if got.len() >= 16 + h.len as usize {
                    let all = parse(&got);
                    let (h, b) = all.into_iter().find(|(h, _)| h.req_id == 9).unwrap();
                    return (h.ty, b);
                }
            }
        }
        panic!("no reply");
    }
}

#[test]
fn ring_serves_requests_and_advertises_features() {
    let e = Engine::default();
    let g = guest(&e, 3);
    assert_eq!(g.mem.load_u32(offset::SERVER_FEATURES), 3);
    let mut w = z("data/x");
    w.extend_from_slice(b"hello");
    assert_eq!(
        g.call(MsgType::Write, &w),
        (MsgType::Write as u32, b"OK\0".to_vec())
    );
    assert_eq!(e.read("/local/domain/3/data/x").unwrap(), b"hello");
    assert_eq!(
        g.call(MsgType::Read, &z("/local/domain/3/data/x")).1,
        b"hello"
    );
    assert_eq!(
        g.call(MsgType::Read, &z("/tool")),
        (MsgType::Error as u32, b"EACCES\0".to_vec())
    );
    assert!(g.kicks.load(Ordering::SeqCst) > 0);
}

#[test]
fn replies_larger_than_the_ring_arrive_in_pieces() {
    let e = Engine::default();
    let g = guest(&e, 4);
    let big = vec![b'v'; 3000];
    e.write("/local/domain/4/big", &big).unwrap();
    let (ty, body) = g.call(MsgType::Read, &z("big"));
    assert_eq!(ty, MsgType::Read as u32);
    assert_eq!(body, big);
}

#[test]
fn watch_events_reach_the_ring_without_the_vmm() {
    let e = Engine::default();
    let g = guest(&e, 5);
    let mut req = z("dev");
    req.extend_from_slice(&z("tok"));
    g.call(MsgType::Watch, &req);
    let _ = g.side().receive();
    let kicks = g.kicks.load(Ordering::SeqCst);
    // dom0 writes through the Rust API: the engine pushes the event.
    e.write("/local/domain/5/dev/vif", b"1").unwrap();
    let msgs = parse(&g.side().receive());
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.ty, MsgType::WatchEvent as u32);
    assert_eq!(msgs[0].1, b"dev/vif\0tok\0");
    assert!(g.kicks.load(Ordering::SeqCst) > kicks);
}

#[test]
fn bad_indices_set_the_error_field_until_reconnect() {
    let e = Engine::default();
    let g = guest(&e, 6);
    g.mem.store_u32(offset::REQ_PROD, 5000);
    g.ring.process();
    assert_eq!(g.mem.load_u32(offset::ERROR), ERROR_RINGIDX);
    // Reconnect: the server resets the rings and clears the error.
    g.mem
        .store_u32(offset::CONNECTION, xenstore::ring::RECONNECT);
    g.ring.process();
    assert_eq!(
        g.mem.load_u32(offset::CONNECTION),
        xenstore::ring::CONNECTED
    );
    assert_eq!(g.mem.load_u32(offset::ERROR), 0);
    assert_eq!(g.mem.load_u32(offset::REQ_PROD), 0);
    assert_eq!(g.call(MsgType::Read, &z("/local/domain/6")).1, b"");
}

#[test]
fn oversized_payload_is_a_protocol_error_for_that_ring_only() {
    let e = Engine::default();
    let bad = guest(&e, 7);
    let good = guest(&e, 8);
    let h = wire::Header {
        ty: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 5000,
    };
    bad.side().send(&h.encode());
    bad.ring.process();
    assert_eq!(bad.mem.load_u32(offset::ERROR), ERROR_PROTO);
    assert_eq!(
        good.call(MsgType::Read, &z("/local/domain/8")).0,
        MsgType::Read as u32
    );
}

#[test]
fn reconnect_drops_watches() {
    let e = Engine::default();
    let g = guest(&e, 9);
    let mut req = z("w");
    req.extend_from_slice(&z("t"));
    g.call(MsgType::Watch, &req);
    let _ = g.side().receive();
    g.mem
        .store_u32(offset::CONNECTION, xenstore::ring::RECONNECT);
    g.ring.process();
    e.write("/local/domain/9/w", b"1").unwrap();
    g.ring.process();
    assert!(g.side().receive().is_empty());
}

#[test]
fn released_domain_ring_goes_quiet() {
    let e = Engine::default();
    let g = guest(&e, 10);
    e.release_domain(10).unwrap();
    let mut msg = Vec::new();
    wire::push_msg(&mut msg, MsgType::Read as u32, 1, 0, &[&z("x")]);
    g.side().send(&msg);
    g.ring.process();
    assert!(g.side().receive().is_empty());
}

#[test]
fn a_guest_that_never_reads_is_throttled_by_the_outstanding_quota() {
    let mut quota = xenstore::Quota::default();
    quota.apply_spec("outstanding=2").unwrap();
    let e = Engine::new(xenstore::Config { quota });
    let g = guest(&e, 11);
    e.write("/local/domain/11/v", &vec![b'x'; 3000]).unwrap();
    let mut msg = Vec::new();
    wire::push_msg(&mut msg, MsgType::Read as u32, 1, 0, &[&z("v")]);
    // Keep sending reads, never consuming replies.
    // Keep sending reads, never consuming replies: after a bounded
    // amount of buffered requests and replies we stop consuming.
    for _ in 0..400 {
        g.side().send(&msg);
        g.ring.process();
    }
    // The request ring filled up and stayed full: we stopped consuming.
    let cons = g.mem.load_u32(offset::REQ_CONS);
    let prod = g.mem.load_u32(offset::REQ_PROD);
    assert_eq!(prod.wrapping_sub(cons), 1024);
    g.ring.process();
    assert_eq!(g.mem.load_u32(offset::REQ_CONS), cons);
    // Another domain is unaffected.
    let other = guest(&e, 12);
    assert_eq!(
        other.call(MsgType::Read, &z("/local/domain/12")).0,
        MsgType::Read as u32
    );
    // Once the guest drains its replies, service resumes.
    let mut total = 0;
    for _ in 0..100 {
        total += g.side().receive().len();
        g.ring.process();
    }
    assert!(total > 3 * 3000);
    assert!(g.mem.load_u32(offset::REQ_CONS) != cons);
}
