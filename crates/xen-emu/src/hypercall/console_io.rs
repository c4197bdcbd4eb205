//! `HYPERVISOR_console_io`: the hypervisor console (`xl dmesg`). Answers as
//! Xen does for a domain XSM lets use it (`is_console`, or a debug build):
//! writes go to the domain's log, reads find no input.

use xen_abi::xen::{CONSOLEIO_READ, CONSOLEIO_WRITE};

use super::Call;
use crate::types::{Errno, HcResult};

/// Xen copies guest console output in chunks of this size.
const CHUNK: usize = 128;

pub fn console_io(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    // `count` is an `unsigned int`.
    let count = c.args[1] & 0xffff_ffff;
    let buf = c.args[2];
    match cmd {
        CONSOLEIO_WRITE => {
            let mut done = 0u64;
            let mut chunk = [0u8; CHUNK];
            while done < count {
                let n = ((count - done) as usize).min(CHUNK);
                c.g.read_bytes(buf.wrapping_add(done), &mut chunk[..n])?;
                c.d.platform.console_io_write(&chunk[..n]);
                done += n as u64;
            }
            Ok(0)
        }
        // Reading needs console input focus, which a domU never has.
        CONSOLEIO_READ => Ok(0),
        _ => Err(Errno::ENOSYS),
    }
}
