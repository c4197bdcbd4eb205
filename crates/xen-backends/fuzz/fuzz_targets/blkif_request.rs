//! Any ring slot, in either ABI, parses to a request or an error, never a
//! panic; every segment range accepted lies inside one page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_backends::blkif::{parse_request, Abi, Body};

fuzz_target!(|data: &[u8]| {
    for abi in [Abi::X86_32, Abi::X86_64] {
        let mut slot = vec![0u8; abi.entry_size() as usize];
        let n = data.len().min(slot.len());
        slot[..n].copy_from_slice(&data[..n]);
        if let Ok(req) = parse_request(abi, &slot) {
            if let Body::Rw { segs } = req.body {
                for s in segs.iter() {
                    if let Some((off, len)) = s.range() {
                        assert!(off + len <= 4096);
                    }
                }
            }
        }
    }
});
