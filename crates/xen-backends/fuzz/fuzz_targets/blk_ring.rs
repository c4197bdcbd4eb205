//! A hostile frontend: arbitrary ring slots and an arbitrary `req_prod`
//! pushed at a connected block backend. The backend must answer or stop
//! that ring, never panic, never touch memory outside the test guest.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use xen_backends::blkback::BlockSpec;
use xen_backends::blkif::Abi;
use xen_backends::testing::BlkHarness;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let abi = if data[0] & 1 == 0 {
        Abi::X86_32
    } else {
        Abi::X86_64
    };
    let prod = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let dir = std::env::temp_dir().join(format!("xkvm-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("disk.img");
    if std::fs::metadata(&img).is_err() {
        let _ = std::fs::write(&img, vec![0u8; 64 * 512]);
    }
    let spec = BlockSpec {
        path: img,
        vdev: "xvda".into(),
        readonly: data[0] & 2 != 0,
        cdrom: false,
        discard: true,
        format: Default::default(),
    };
    let Ok(mut h) = BlkHarness::connect(spec, abi, 0, data[0] & 4 != 0, 1 << 20) else {
        return;
    };
    for _ in 0..4 {
        let _ = h.data_page(false);
    }
    let size = abi.entry_size() as usize;
    let mut n = 0;
    for chunk in data[5..].chunks(size).take(32) {
        let mut slot = vec![0u8; size];
        slot[..chunk.len()].copy_from_slice(chunk);
        h.ring.put_request(&slot);
        n += 1;
    }
    h.ring.set_req_prod(if data[0] & 8 != 0 { prod } else { n });
    h.guest.evtchn.kick(h.port);
    let _ = h.wait_responses(n as usize, Duration::from_millis(200));
    h.poke();
});
