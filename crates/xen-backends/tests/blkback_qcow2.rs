//! The block backend serving a qcow2 image to the in-process frontend
//! ([`xen_backends::testing::BlkHarness`]): multi-segment requests that
//! cross cluster boundaries, with guest pages read and written in place
//! (host iovecs) and through the bounce buffer, flush and discard; then
//! `qemu-img check` and `qemu-img convert` agree with what the guest did.
//!
//! Needs `qemu-img` (Debian: qemu-utils); without it the test skips with
//! the reason, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use xen_backends::blkback::{BlockSpec, ImageFormat};
use xen_backends::blkif::{encode, Abi, Segment, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, RSP_OKAY};
use xen_backends::testing::BlkHarness;
use xen_emu::guest::GuestMemory;

const T: Duration = Duration::from_secs(10);
const SIZE: usize = 4 << 20;

fn qemu_img(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("qemu-img").args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "qemu-img (qemu-utils) missing under CI=true: {e}"
            );
            eprintln!("SKIP blkback_qcow2: qemu-img (qemu-utils) not installed: {e}");
            None
        }
    }
}

fn ok(out: std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn one(h: &mut BlkHarness, req: &[u8]) -> i16 {
    h.submit(req);
    let r = h.wait_responses(1, T);
    assert_eq!(r.len(), 1, "one response expected, got {r:?}");
    r[0].2
}

fn serve(dir: &Path, direct: bool) {
    let base = dir.join("base.raw");
    let base_data: Vec<u8> = (0..SIZE).map(|i| (i * 7 / 512) as u8).collect();
    std::fs::write(&base, &base_data).unwrap();
    let img = dir.join("disk.qcow2");
    let s = img.to_str().unwrap();
    let Some(out) = qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        "-F",
        "raw",
        "-b",
        "base.raw",
        s,
        "4M",
    ]) else {
        return;
    };
    ok(out);
    let spec = BlockSpec {
        path: img.clone(),
        vdev: "xvda".into(),
        readonly: false,
        cdrom: false,
        discard: true,
        format: ImageFormat::Qcow2,
    };
    let mut model = base_data;
    {
        let mut h = BlkHarness::connect(spec, Abi::X86_64, 0, true, 16 << 20).unwrap();
        h.guest.mem.set_direct(direct);
        // Eleven pages of sectors 1..=6 each, from sector 3: every piece
        // starts mid-cluster and the request crosses many clusters.
        let mut segs = Vec::new();
        let mut want = Vec::new();
        for k in 0..11u8 {
            let (g, p) = h.data_page(false);
            let page: Vec<u8> = (0..4096).map(|i| k.wrapping_mul(31) ^ (i as u8)).collect();
            h.guest.mem.write(p * 4096, &page).unwrap();
            want.extend_from_slice(&page[512..7 * 512]);
            segs.push(Segment {
                gref: g,
                first_sect: 1,
                last_sect: 6,
            });
        }
        let w = encode::rw(Abi::X86_64, OP_WRITE, 1, 3, &segs);
        assert_eq!(one(&mut h, &w), RSP_OKAY);
        model[3 * 512..3 * 512 + want.len()].copy_from_slice(&want);

        // Read sectors 0..88 back into fresh pages.
        let mut rsegs = Vec::new();
        let mut pages = Vec::new();
        for _ in 0..11 {
            let (g, p) = h.data_page(false);
            rsegs.push(Segment {
                gref: g,
                first_sect: 0,
                last_sect: 7,
            });
            pages.push(p);
        }
        let r = encode::rw(Abi::X86_64, OP_READ, 2, 0, &rsegs);
        assert_eq!(one(&mut h, &r), RSP_OKAY);
        let mut got = Vec::new();
        for p in pages {
            let mut b = vec![0u8; 4096];
            h.guest.mem.read(p * 4096, &mut b).unwrap();
            got.extend(b);
        }
        assert!(got == model[..got.len()], "read back (direct={direct})");

        // Discard clusters 64..=66 (sectors 512..536): they read zeros.
        let d = encode::discard(Abi::X86_64, 3, 512, 24);
        assert_eq!(one(&mut h, &d), RSP_OKAY);
        model[512 * 512..536 * 512].fill(0);
        let f = encode::rw(Abi::X86_64, OP_FLUSH_DISKCACHE, 4, 0, &[]);
        assert_eq!(one(&mut h, &f), RSP_OKAY);
        // The flushed image is consistent while still open.
        ok(qemu_img(&["check", s]).unwrap());
    }
    let text = ok(qemu_img(&["check", s]).unwrap());
    assert!(text.contains("No errors were found"), "{text}");
    let raw = dir.join("out.raw");
    ok(qemu_img(&["convert", "-O", "raw", s, raw.to_str().unwrap()]).unwrap());
    assert!(std::fs::read(&raw).unwrap() == model, "direct={direct}");
}

#[test]
fn blkback_serves_a_qcow2_image_with_guest_pages_in_place() {
    serve(tempfile::tempdir().unwrap().path(), true);
}

#[test]
fn blkback_serves_a_qcow2_image_through_the_bounce_buffer() {
    serve(tempfile::tempdir().unwrap().path(), false);
}
