//! qcow2 images checked against QEMU's own tools: images made by
//! `qemu-img create` / `qemu-io` / `qemu-img convert` read back the same
//! through us, and images we wrote pass `qemu-img check` and convert back
//! to the bytes we wrote.
//!
//! Needs `qemu-img` and `qemu-io` (Debian: qemu-utils); without them the
//! tests skip with the reason, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use xen_backends::blkback::disk::DiskImage;
use xen_backends::blkback::qcow2::{Qcow2, Qcow2Error};
use xen_backends::blkback::ImageFormat;

const MIB: u64 = 1 << 20;

fn have_qemu(test: &str) -> bool {
    let ok = ["qemu-img", "qemu-io"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: qemu-img/qemu-io (qemu-utils) missing under CI=true"
        );
        eprintln!("SKIP {test}: qemu-img/qemu-io (qemu-utils) not installed");
    }
    ok
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `qemu-img create -f qcow2 -o OPTS PATH SIZE`.
fn create(path: &Path, opts: &str, size: u64) {
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            opts,
            s(path),
            &size.to_string(),
        ],
    );
}

/// Runs `qemu-io` commands (e.g. `write -P 0x11 0 4k`) on a qcow2 image.
fn qemu_io(path: &Path, cmds: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(s(path));
    run("qemu-io", &args);
}

/// The image's virtual disk as QEMU sees it.
fn qemu_raw(path: &Path) -> Vec<u8> {
    let out = path.with_extension("convert.raw");
    run("qemu-img", &["convert", "-O", "raw", s(path), s(&out)]);
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}

/// `qemu-img check` finds neither corruptions nor leaks.
fn assert_clean(path: &Path) {
    let out = Command::new("qemu-img")
        .args(["check", s(path)])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("No errors were found"),
        "qemu-img check {}: {text}",
        path.display()
    );
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Reads the whole disk through us in odd-sized pieces.
fn read_all(q: &Qcow2) -> Vec<u8> {
    let mut out = vec![0u8; q.size() as usize];
    let mut at = 0usize;
    let mut step = 12_345usize;
    while at < out.len() {
        let n = step.min(out.len() - at);
        q.read_at(&mut out[at..at + n], at as u64).unwrap();
        at += n;
        step = step * 7 % 300_001 + 1;
    }
    out
}

/// Version 2 and 3, cluster sizes 4K, 64K, 2M, lazy refcounts, and
/// preallocated metadata.
const LAYOUTS: &[&str] = &[
    "compat=0.10,cluster_size=65536",
    "compat=0.10,cluster_size=4096",
    "compat=1.1,cluster_size=4096",
    "compat=1.1,cluster_size=65536",
    "compat=1.1,cluster_size=2097152",
    "compat=1.1,lazy_refcounts=on",
    "compat=1.1,preallocation=metadata",
    "compat=0.10,preallocation=metadata,cluster_size=4096",
];

#[test]
fn images_written_by_qemu_io_read_back_the_same() {
    if !have_qemu("images_written_by_qemu_io_read_back_the_same") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, opts) in LAYOUTS.iter().enumerate() {
        let img = dir.path().join(format!("q{i}.qcow2"));
        create(&img, opts, 9 * MIB);
        qemu_io(
            &img,
            &[
                "write -P 0x11 0 4k",
                "write -P 0x22 100k 200k",
                "write -P 0x33 1M 3M",
                "write -z 2M 64k",
                "write -P 0x44 8191k 1k",
                "write -P 0x55 9215k 1k",
            ],
        );
        let want = qemu_raw(&img);
        let q = Qcow2::open(&img, true).unwrap();
        assert_eq!(q.size(), 9 * MIB, "{opts}");
        assert!(
            read_all(&q) == want,
            "{opts}: contents differ from qemu-img convert"
        );
    }
}

#[test]
fn our_writes_pass_qemu_img_check_and_convert_back() {
    if !have_qemu("our_writes_pass_qemu_img_check_and_convert_back") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, opts) in LAYOUTS.iter().enumerate() {
        let img = dir.path().join(format!("w{i}.qcow2"));
        // Not a multiple of any cluster size: the last cluster is partial.
        let size = 5 * MIB + 3 * 4096;
        create(&img, opts, size);
        qemu_io(&img, &["write -P 0x5a 512k 128k"]);
        let mut model = qemu_raw(&img);
        let mut rng = Rng(0x9e37_79b9 + i as u64);
        {
            let q = Qcow2::open(&img, false).unwrap();
            for _ in 0..60 {
                let len = 1 + rng.below(200_000) as usize;
                let off = rng.below(size - len as u64);
                let data = rng.bytes(len);
                q.write_at(&data, off).unwrap();
                model[off as usize..off as usize + len].copy_from_slice(&data);
            }
            // The last bytes of the disk.
            q.write_at(&[0xee; 1000], size - 1000).unwrap();
            model[(size - 1000) as usize..].fill(0xee);
            assert!(read_all(&q) == model, "{opts}: our own reads");
            q.flush().unwrap();
        }
        assert_clean(&img);
        assert!(qemu_raw(&img) == model, "{opts}: qemu-img convert differs");
    }
}

#[test]
fn backing_chain_reads_through_and_partial_writes_copy_on_write() {
    if !have_qemu("backing_chain_reads_through_and_partial_writes_copy_on_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let mut rng = Rng(7);
    // Smaller than the overlays: past its end they read zeros.
    std::fs::write(&base, rng.bytes((3 * MIB) as usize)).unwrap();
    let mid = dir.path().join("mid.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            "base.raw",
            s(&mid),
            "6M",
        ],
    );
    qemu_io(&mid, &["write -P 0x66 64k 8k", "write -z 1M 64k"]);
    let top = dir.path().join("top.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4096",
            "-F",
            "qcow2",
            "-b",
            "mid.qcow2",
            s(&top),
            "6M",
        ],
    );
    let base_before = std::fs::read(&base).unwrap();
    let mid_before = std::fs::read(&mid).unwrap();
    let mut model = qemu_raw(&top);
    {
        let q = Qcow2::open(&top, false).unwrap();
        assert!(read_all(&q) == model, "reads through the chain");
        // Partial writes into clusters whose old data is in the raw base,
        // in mid, in a zero cluster of mid, and past the base's end.
        for (off, len) in [
            (100u64, 10usize),
            (65_536 + 5000, 3000),
            (MIB + 7, 9),
            (4 * MIB + 1, 3),
        ] {
            let data = rng.bytes(len);
            q.write_at(&data, off).unwrap();
            model[off as usize..off as usize + len].copy_from_slice(&data);
        }
        assert!(read_all(&q) == model);
        q.flush().unwrap();
    }
    assert_clean(&top);
    assert!(qemu_raw(&top) == model, "qemu-img sees our copy-on-write");
    assert!(
        std::fs::read(&base).unwrap() == base_before,
        "base untouched"
    );
    assert!(std::fs::read(&mid).unwrap() == mid_before, "mid untouched");
}

#[test]
fn compressed_clusters_read_and_writes_into_them_copy_on_write() {
    if !have_qemu("compressed_clusters_read_and_writes_into_them_copy_on_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let mut data: Vec<u8> = (0..4 * MIB).map(|i| (i / 1000) as u8).collect();
    data[(2 * MIB) as usize..(3 * MIB) as usize].fill(0);
    std::fs::write(&raw, &data).unwrap();
    for (i, cs) in ["4096", "65536"].iter().enumerate() {
        let img = dir.path().join(format!("c{i}.qcow2"));
        run(
            "qemu-img",
            &[
                "convert",
                "-c",
                "-O",
                "qcow2",
                "-o",
                &format!("cluster_size={cs}"),
                s(&raw),
                s(&img),
            ],
        );
        let mut model = data.clone();
        {
            let q = Qcow2::open(&img, false).unwrap();
            assert!(
                read_all(&q) == model,
                "compressed clusters inflate to the data"
            );
            // Partial writes into compressed clusters (the rest comes from
            // the inflated cluster), a whole-cluster write, a write into
            // the unstored zero range, and a discard of compressed ones.
            for (off, len) in [
                (4096 + 7, 512usize),
                (MIB + 3, 70_000),
                (2 * MIB + 512, 4096),
            ] {
                q.write_at(&vec![0xa5; len], off).unwrap();
                model[off as usize..off as usize + len].fill(0xa5);
            }
            q.write_at(&[0x5a; 65536], 3 * MIB).unwrap();
            model[(3 * MIB) as usize..(3 * MIB + 65536) as usize].fill(0x5a);
            q.discard(3 * MIB + 65536, 131_072).unwrap();
            model[(3 * MIB + 65536) as usize..(3 * MIB + 196_608) as usize].fill(0);
            assert!(read_all(&q) == model);
            q.flush().unwrap();
        }
        // No leaks: the rewritten compressed clusters were released.
        assert_clean(&img);
        assert!(qemu_raw(&img) == model, "cluster size {cs}");
    }
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn open_err(path: &Path, readonly: bool) -> Qcow2Error {
    Qcow2::open(path, readonly).unwrap_err()
}

#[test]
fn unsupported_images_are_refused_with_the_reason() {
    if !have_qemu("unsupported_images_are_refused_with_the_reason") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    std::fs::write(p("raw"), vec![0u8; 65536]).unwrap();
    assert!(matches!(open_err(&p("raw"), true), Qcow2Error::BadMagic));

    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow", s(&p("v1")), "1M"],
    );
    assert!(matches!(open_err(&p("v1"), true), Qcow2Error::Version(1)));

    create(&p("enc"), "compat=1.1", MIB);
    patch(&p("enc"), 32, &1u32.to_be_bytes());
    assert!(matches!(
        open_err(&p("enc"), true),
        Qcow2Error::Encrypted(1)
    ));

    create(&p("dirty"), "compat=1.1", MIB);
    qemu_io(&p("dirty"), &["write -P 0x77 0 4k"]);
    patch(&p("dirty"), 79, &[1]);
    assert!(matches!(open_err(&p("dirty"), false), Qcow2Error::Dirty));
    let mut b = [0u8; 4096];
    Qcow2::open(&p("dirty"), true)
        .unwrap()
        .read_at(&mut b, 0)
        .unwrap();
    assert_eq!(b, [0x77; 4096], "a dirty image still opens read-only");

    create(&p("corrupt"), "compat=1.1", MIB);
    patch(&p("corrupt"), 79, &[2]);
    assert!(matches!(
        open_err(&p("corrupt"), false),
        Qcow2Error::Corrupt
    ));

    create(&p("unknown"), "compat=1.1", MIB);
    patch(&p("unknown"), 78, &[4]); // bit 10
    let e = open_err(&p("unknown"), true);
    assert!(
        matches!(e, Qcow2Error::UnknownIncompatible { bits: 0x400, .. }),
        "{e}"
    );

    create(
        &p("ext"),
        &format!("compat=1.1,data_file={}", s(&p("ext.data"))),
        MIB,
    );
    assert!(matches!(
        open_err(&p("ext"), true),
        Qcow2Error::ExternalDataFile
    ));

    create(&p("extl2"), "compat=1.1,extended_l2=on", MIB);
    assert!(matches!(
        open_err(&p("extl2"), true),
        Qcow2Error::ExtendedL2
    ));

    let zstd = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-o", "compression_type=zstd"])
        .arg(p("zstd"))
        .arg("1M")
        .output()
        .unwrap();
    if zstd.status.success() {
        assert!(matches!(
            open_err(&p("zstd"), true),
            Qcow2Error::CompressionType(1)
        ));
    }

    create(&p("snap"), "compat=1.1", MIB);
    qemu_io(&p("snap"), &["write -P 0x78 0 4k"]);
    run("qemu-img", &["snapshot", "-c", "s1", s(&p("snap"))]);
    assert!(matches!(
        open_err(&p("snap"), false),
        Qcow2Error::Snapshots(1)
    ));
    Qcow2::open(&p("snap"), true)
        .unwrap()
        .read_at(&mut b, 0)
        .unwrap();
    assert_eq!(b, [0x78; 4096]);

    // A backing file whose format the image does not record is not
    // guessed: drop the backing format extension by renaming its type.
    std::fs::write(p("b.raw"), vec![0u8; 65536]).unwrap();
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            "b.raw",
            s(&p("nofmt")),
            "1M",
        ],
    );
    let head = std::fs::read(p("nofmt")).unwrap();
    let at = head
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .unwrap();
    patch(&p("nofmt"), at as u64, &[0x12, 0x34, 0x56, 0x78]);
    let e = open_err(&p("nofmt"), true);
    assert!(matches!(e, Qcow2Error::Backing { .. }), "{e}");
    assert!(e.to_string().contains("no backing format"), "{e}");
}

fn header_bytes(path: &Path, at: usize, len: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[at..at + len].to_vec()
}

#[test]
fn refcount_blocks_and_the_refcount_table_grow_as_the_image_does() {
    if !have_qemu("refcount_blocks_and_the_refcount_table_grow_as_the_image_does") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 512-byte clusters with 64-bit refcounts: one refcount block covers
    // 32 KiB and the initial one-cluster table 2 MiB, so 5 MiB of data
    // needs new blocks and a bigger table. 1-bit refcounts likewise.
    for (i, opts) in [
        "compat=1.1,cluster_size=512,refcount_bits=64",
        "compat=1.1,cluster_size=4096,refcount_bits=1",
        "compat=0.10,cluster_size=512",
    ]
    .iter()
    .enumerate()
    {
        let img = dir.path().join(format!("r{i}.qcow2"));
        create(&img, opts, 6 * MIB);
        let table_before = header_bytes(&img, 48, 12);
        let mut rng = Rng(99 + i as u64);
        let data = rng.bytes((5 * MIB) as usize);
        {
            let q = Qcow2::open(&img, false).unwrap();
            for (n, chunk) in data.chunks(65536).enumerate() {
                q.write_at(chunk, (n * 65536) as u64).unwrap();
            }
            q.flush().unwrap();
        }
        assert_clean(&img);
        if i == 0 {
            assert_ne!(header_bytes(&img, 48, 12), table_before, "table moved");
        }
        let got = qemu_raw(&img);
        assert!(got[..data.len()] == data[..], "{opts}");
        assert!(got[data.len()..].iter().all(|&b| b == 0), "{opts}");
    }
}

#[test]
fn concurrent_writers_into_the_same_new_clusters_lose_nothing() {
    if !have_qemu("concurrent_writers_into_the_same_new_clusters_lose_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let base_data = Rng(3).bytes((4 * MIB) as usize);
    std::fs::write(&base, &base_data).unwrap();
    let img = dir.path().join("c.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            "base.raw",
            s(&img),
            "4M",
        ],
    );
    const THREADS: usize = 4;
    let q = Arc::new(Qcow2::open(&img, false).unwrap());
    // Thread t writes 4K block t, t+4, t+8, ... of every 64K cluster of
    // the first 3 MiB: each new cluster is filled by four writers at once,
    // each copying the rest from the base.
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                for c in 0..48u64 {
                    for b in (t..16).step_by(THREADS) {
                        let off = c * 65536 + b as u64 * 4096;
                        q.write_at(&[t as u8 + 1; 4096], off).unwrap();
                        // Read back while the others allocate around it.
                        let mut back = [0u8; 4096];
                        q.read_at(&mut back, off).unwrap();
                        assert_eq!(back, [t as u8 + 1; 4096]);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut model = base_data;
    for c in 0..48usize {
        for b in 0..16usize {
            let off = c * 65536 + b * 4096;
            model[off..off + 4096].fill((b % THREADS) as u8 + 1);
        }
    }
    assert!(read_all(&q) == model);
    q.flush().unwrap();
    drop(q);
    assert_clean(&img);
    assert!(qemu_raw(&img) == model);
}

#[test]
fn discard_zeroes_whole_clusters_on_v3_and_is_a_no_op_on_v2() {
    if !have_qemu("discard_zeroes_whole_clusters_on_v3_and_is_a_no_op_on_v2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    std::fs::write(&base, vec![0xbb; (2 * MIB) as usize]).unwrap();
    for compat in ["1.1", "0.10"] {
        let img = dir.path().join(format!("d{compat}.qcow2"));
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &format!("compat={compat}"),
                "-F",
                "raw",
                "-b",
                "base.raw",
                s(&img),
                "2M",
            ],
        );
        let mut model = vec![0xbb; (2 * MIB) as usize];
        {
            let q = Qcow2::open(&img, false).unwrap();
            q.write_at(&[0xcc; 65536 * 4], 0).unwrap();
            model[..65536 * 4].fill(0xcc);
            // Clusters 1 and 2 whole (one allocated, one not yet written
            // here but in the backing file), cluster 0 and 3 in part.
            q.discard(60_000, 65536 * 4 - 60_000 - 100).unwrap();
            q.discard(5 * 65536, 65536).unwrap();
            if compat == "1.1" {
                model[65536..3 * 65536].fill(0);
                model[5 * 65536..6 * 65536].fill(0);
            }
            assert!(read_all(&q) == model, "compat {compat}");
            q.flush().unwrap();
        }
        assert_clean(&img);
        assert!(qemu_raw(&img) == model, "compat {compat}");
        // A discarded allocated cluster can be written again.
        let q = Qcow2::open(&img, false).unwrap();
        q.write_at(&[0xdd; 100], 65536 + 10).unwrap();
        model[65536 + 10..65536 + 110].fill(0xdd);
        q.flush().unwrap();
        drop(q);
        assert_clean(&img);
        assert!(qemu_raw(&img) == model, "compat {compat} rewrite");
    }
}

#[test]
fn random_reads_writes_discards_and_flushes_match_a_raw_model() {
    if !have_qemu("random_reads_writes_discards_and_flushes_match_a_raw_model") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let mut rng = Rng(0xdead_beef);
    let size = 3 * MIB;
    let mut model = rng.bytes(size as usize);
    std::fs::write(&base, &model).unwrap();
    let img = dir.path().join("p.qcow2");
    run(
        "qemu-img",
        &[
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
            s(&img),
            &size.to_string(),
        ],
    );
    for round in 0..3 {
        let q = Qcow2::open(&img, false).unwrap();
        for _ in 0..400 {
            let len = 1 + rng.below(40_000) as usize;
            let off = rng.below(size - len as u64);
            let range = off as usize..off as usize + len;
            match rng.below(10) {
                0..=4 => {
                    let data = rng.bytes(len);
                    q.write_at(&data, off).unwrap();
                    model[range].copy_from_slice(&data);
                }
                5..=7 => {
                    let mut got = vec![0u8; len];
                    q.read_at(&mut got, off).unwrap();
                    assert!(got == model[range], "round {round}: read {off}+{len}");
                }
                8 => {
                    q.discard(off, len as u64).unwrap();
                    let first = off.div_ceil(4096) * 4096;
                    let end = (off + len as u64) / 4096 * 4096;
                    if end > first {
                        model[first as usize..end as usize].fill(0);
                    }
                }
                _ => q.flush().unwrap(),
            }
        }
        q.flush().unwrap();
        drop(q);
        assert_clean(&img);
        assert!(qemu_raw(&img) == model, "round {round}");
    }
}

#[test]
fn disk_image_serves_qcow2_by_format_and_never_probes_raw() {
    if !have_qemu("disk_image_serves_qcow2_by_format_and_never_probes_raw") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img: PathBuf = dir.path().join("d.qcow2");
    create(&img, "compat=1.1", 10 * MIB);
    qemu_io(&img, &["write -P 0x42 1M 4k"]);
    {
        let d = DiskImage::open_as(&img, false, ImageFormat::Qcow2).unwrap();
        assert_eq!(d.sectors(), 10 * MIB / 512);
        let mut b = vec![0u8; 8192];
        d.read_at(&mut b, MIB - 4096).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0) && b[4096..].iter().all(|&x| x == 0x42));
        // The ring thread never blocks on qcow2 metadata.
        assert!(!d.read_cached_at(&mut b, MIB).unwrap());
        d.write_at(&[0x43; 512], 2 * MIB).unwrap();
        d.flush().unwrap();
    }
    assert_clean(&img);
    assert_eq!(
        &qemu_raw(&img)[(2 * MIB) as usize..(2 * MIB + 512) as usize],
        &[0x43; 512]
    );
    // format=raw on a qcow2 file serves the file's bytes as they are.
    let d = DiskImage::open_as(&img, true, ImageFormat::Raw).unwrap();
    let mut b = [0u8; 4];
    d.read_at(&mut b, 0).unwrap();
    assert_eq!(b, *b"QFI\xfb");
    assert_ne!(d.sectors(), 10 * MIB / 512);
}

#[test]
fn flushed_writes_survive_a_crash_without_the_final_flush() {
    if !have_qemu("flushed_writes_survive_a_crash_without_the_final_flush") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("k.qcow2");
    create(&img, "compat=1.1", 4 * MIB);
    let q = Qcow2::open(&img, false).unwrap();
    q.write_at(&[0x61; 70_000], 12_345).unwrap();
    q.flush().unwrap();
    // As if the process died here: no Drop, no further metadata writes.
    std::mem::forget(q);
    let mut b = vec![0u8; 70_000];
    Qcow2::open(&img, true)
        .unwrap()
        .read_at(&mut b, 12_345)
        .unwrap();
    assert!(b.iter().all(|&x| x == 0x61));
    assert_clean(&img);
}

#[test]
fn corrupted_metadata_gives_errors_not_panics() {
    if !have_qemu("corrupted_metadata_gives_errors_not_panics") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.qcow2");
    create(&good, "compat=1.1,cluster_size=4096", 2 * MIB);
    qemu_io(
        &good,
        &[
            "write -P 0x31 0 64k",
            "write -P 0x32 1M 12k",
            "write -z 1536k 8k",
        ],
    );
    let raw = dir.path().join("c.raw");
    run(
        "qemu-img",
        &["convert", "-c", "-O", "qcow2", s(&good), s(&raw)],
    );
    let pristine = [std::fs::read(&good).unwrap(), std::fs::read(&raw).unwrap()];
    let img = dir.path().join("bad.qcow2");
    let mut rng = Rng(0x5eed);
    let mut opened = 0;
    // QCOW2_CORRUPT_ROUNDS runs longer by hand.
    let rounds = std::env::var("QCOW2_CORRUPT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300);
    for round in 0..rounds {
        let mut bytes = pristine[round % 2].clone();
        // Metadata lives in the first clusters (header, refcount table
        // and block, L1, L2): corrupt a few bytes there.
        let meta = bytes.len().min(6 * 4096);
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(meta as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        std::fs::write(&img, &bytes).unwrap();
        let Ok(q) = Qcow2::open(&img, false) else {
            continue;
        };
        opened += 1;
        let mut buf = vec![0u8; 70_000];
        for off in [0u64, 60_000, MIB - 100, 1536 * 1024, 2 * MIB - 70_000] {
            let _ = q.read_at(&mut buf, off);
            let _ = q.write_at(&buf[..5000], off + 1);
        }
        let _ = q.discard(0, 2 * MIB);
        let _ = q.flush();
        drop(q);
        // Whatever happened, the file did not grow without bound.
        assert!(std::fs::metadata(&img).unwrap().len() < 64 * MIB);
    }
    assert!(opened > 50, "most corruptions still open ({opened})");
}

#[test]
fn data_clusters_on_the_main_tables_are_refused() {
    if !have_qemu("data_clusters_on_the_main_tables_are_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("o.qcow2");
    create(&img, "compat=1.1", 4 * MIB);
    qemu_io(&img, &["write -P 0x21 0 64k"]);
    let bytes = std::fs::read(&img).unwrap();
    let be = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    let l1 = be(40);
    let l2 = be(l1 as usize) & 0x00ff_ffff_ffff_fe00;
    // Point virtual cluster 0 at the cluster holding the L1 table.
    patch(&img, l2, &((1u64 << 63) | (l1 & !0xffff)).to_be_bytes());
    let q = Qcow2::open(&img, false).unwrap();
    let e = q.write_at(&[0xff; 512], 0).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    drop(q);
    let after = std::fs::read(&img).unwrap();
    assert_eq!(
        after[l1 as usize..l1 as usize + 8],
        bytes[l1 as usize..l1 as usize + 8]
    );
}
