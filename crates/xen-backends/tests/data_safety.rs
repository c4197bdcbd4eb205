//! Data safety: a write the backend acknowledged, followed by a
//! FLUSH_DISKCACHE it acknowledged, is in the image after the backend's
//! process is killed with SIGKILL (no chance to flush anything itself).
//!
//! The test re-runs its own binary as the "VMM": the child connects an
//! in-process frontend, writes, flushes, reports the acknowledgements on
//! stdout and then hangs until the parent kills it with `kill -9`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use xen_backends::blkback::BlockSpec;
use xen_backends::blkif::{encode, Abi, Segment, OP_FLUSH_DISKCACHE, OP_WRITE, RSP_OKAY};
use xen_backends::testing::BlkHarness;
use xen_emu::guest::GuestMemory;

const CHILD_ENV: &str = "XKVM_BLK_SAFETY_CHILD";
const PATTERN: u8 = 0xc3;
/// Where the child writes (sectors 128..=135).
const SECTOR: u64 = 128;

fn child(image: &str) {
    let spec = BlockSpec {
        path: image.into(),
        vdev: "xvda".into(),
        readonly: false,
        cdrom: false,
        discard: false,
        format: Default::default(),
    };
    let mut h = BlkHarness::connect(spec, Abi::X86_64, 0, false, 8 << 20).unwrap();
    let (g, p) = h.data_page(false);
    h.guest.mem.write(p * 4096, &[PATTERN; 4096]).unwrap();
    let seg = Segment {
        gref: g,
        first_sect: 0,
        last_sect: 7,
    };
    h.submit(&encode::rw(Abi::X86_64, OP_WRITE, 1, SECTOR, &[seg]));
    let w = h.wait_responses(1, Duration::from_secs(10));
    h.submit(&encode::rw(Abi::X86_64, OP_FLUSH_DISKCACHE, 2, 0, &[]));
    let f = h.wait_responses(1, Duration::from_secs(10));
    let ok = w == [(1, OP_WRITE, RSP_OKAY)] && f == [(2, OP_FLUSH_DISKCACHE, RSP_OKAY)];
    let mut out = std::io::stdout();
    writeln!(out, "{}", if ok { "ACKED" } else { "NOT-ACKED" }).unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn flushed_write_survives_kill_9() {
    if let Ok(image) = std::env::var(CHILD_ENV) {
        return child(&image);
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("safety.img");
    std::fs::write(&image, vec![0u8; 512 * 1024]).unwrap();
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "flushed_write_survives_kill_9", "--nocapture"])
        .env(CHILD_ENV, &image)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    let verdict = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("ACKED"));
    c.kill().unwrap(); // SIGKILL
    let status = c.wait().unwrap();
    assert!(!status.success(), "child was killed");
    assert_eq!(verdict.as_deref(), Some("ACKED"), "child's verdict");
    let data = std::fs::read(&image).unwrap();
    let at = (SECTOR * 512) as usize;
    assert!(
        data[at..at + 4096].iter().all(|&b| b == PATTERN),
        "acknowledged, flushed write missing after kill -9"
    );
    assert!(data[..at].iter().all(|&b| b == 0));
}
