//! A hostile guest: arbitrary page contents, indices and request bytes
//! on the xenstore_domain_interface ring. The consumer must never panic,
//! and must keep every access inside the page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use xenstore::ring::{offset, GuestSide, PageMemory, RingFrontend, RingMemory};
use xenstore::Engine;

fuzz_target!(|data: &[u8]| {
    let engine = Engine::default();
    engine.introduce_domain(3);
    let mem = Arc::new(PageMemory::default());
    let ring = RingFrontend::new(engine.clone(), 3, mem.clone(), Arc::new(|| {}));
    // Data layout: up to 24 bytes of index/connection words, then
    // request bytes pushed through the ring in rounds.
    let (head, body) = data.split_at(data.len().min(24));
    for (i, w) in head.chunks(4).enumerate() {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        let v = u32::from_le_bytes(b);
        let off = [
            offset::REQ_CONS,
            offset::REQ_PROD,
            offset::RSP_CONS,
            offset::RSP_PROD,
            offset::CONNECTION,
            offset::ERROR,
        ][i];
        mem.store_u32(off, v);
    }
    let guest = GuestSide { mem: &*mem };
    let mut rest = body;
    for _ in 0..64 {
        let n = guest.send(rest);
        rest = &rest[n..];
        ring.process();
        let _ = guest.receive();
        if rest.is_empty() {
            break;
        }
    }
    ring.process();
});
