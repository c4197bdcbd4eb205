//! Arbitrary bytes from a dom0 socket client and from an unprivileged
//! domain, fed to the engine's message decoder and dispatcher in random
//! chunkings. Must never panic; the store must stay usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::Engine;

fuzz_target!(|data: &[u8]| {
    let engine = Engine::default();
    engine.write("/local/domain/5/seed", b"x").ok();
    for domid in [0u16, 5] {
        let conn = engine.connect(domid, None);
        let mut pending = Vec::new();
        let mut out = Vec::new();
        // The first byte picks a chunk size, so split messages are covered.
        let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
        for piece in data.chunks(chunk) {
            pending.extend_from_slice(piece);
            match engine.exchange(conn, &pending, &mut out, 1 << 20) {
                Ok(used) => {
                    pending.drain(..used);
                }
                Err(_) => break,
            }
            out.clear();
        }
        engine.disconnect(conn);
    }
    // Whatever the clients did, the store still works for the toolstack.
    engine
        .write("/fuzz-check", b"ok")
        .expect("store still writable");
    assert_eq!(
        engine.read("/fuzz-check").expect("store still readable"),
        b"ok"
    );
});
