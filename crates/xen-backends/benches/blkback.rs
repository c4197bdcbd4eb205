//! Block backend throughput against direct file I/O on the same file.
//!
//! The frontend is played in-process on a shared ring ([`BlkHarness`]),
//! with persistent grants and a 4-page ring as Linux's blkfront uses them.
//! Workloads: 1 MiB sequential reads and writes (indirect requests of 256
//! segments, queue depth 4), 4 KiB random reads and writes at queue depth
//! 32. The baseline does the same I/O with `pread`/`pwrite` from as many
//! threads as the backend has workers (4; sequential ones on interleaved
//! stripes). Run: `cargo bench -p xen-backends`.
//! Results are printed, never asserted; see docs/backends.md.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use xen_backends::blkback::BlockSpec;
use xen_backends::blkif::{encode, Abi, Segment, OP_READ, OP_WRITE, RSP_OKAY};
use xen_backends::testing::BlkHarness;
use xen_emu::guest::GuestMemory;

const FILE_MIB: u64 = 256;
const RUN: Duration = Duration::from_secs(2);
/// Alternating repetitions; the median of each side is reported (the
/// development machines are shared, single runs are noisy).
const REPS: usize = 5;
const WORKERS: usize = 4;

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Result_ {
    name: &'static str,
    backend: f64,
    direct: f64,
}

fn backend_run(path: &Path, op: u8, big: bool) -> f64 {
    let spec = BlockSpec {
        path: path.to_owned(),
        vdev: "xvda".into(),
        readonly: false,
        cdrom: false,
        discard: false,
    };
    let mut h = BlkHarness::connect(spec, Abi::X86_64, 2, true, 160 << 20).unwrap();
    let qd: usize = if big { 4 } else { 32 };
    let segs_per_req = if big { 256 } else { 1 };
    // Per slot: its data pages and (for 1 MiB) one indirect page.
    let mut slots = Vec::new();
    for _ in 0..qd {
        let pages: Vec<(u32, u64)> = (0..segs_per_req).map(|_| h.data_page(false)).collect();
        let ind = if big {
            let (g, p) = h.data_page(false);
            let mut d = Vec::new();
            for (pg, _) in &pages {
                d.extend_from_slice(&pg.to_le_bytes());
                d.extend_from_slice(&[0, 7, 0, 0]);
            }
            h.guest.mem.write(p * 4096, &d).unwrap();
            Some(g)
        } else {
            None
        };
        slots.push((pages, ind));
    }
    let sectors = FILE_MIB * 2048;
    let req_sectors = (segs_per_req * 8) as u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_seq = 0u64;
    let mut mk = |slot: usize, seed: &mut u64| -> Vec<u8> {
        let sector = if big {
            let s = next_seq;
            next_seq = (next_seq + req_sectors) % sectors;
            s
        } else {
            (rng(seed) % (sectors / 8)) * 8
        };
        let (pages, ind) = &slots[slot];
        match ind {
            Some(g) => encode::indirect(Abi::X86_64, op, slot as u64, sector, 256, &[*g]),
            None => encode::rw(
                Abi::X86_64,
                op,
                slot as u64,
                sector,
                &[Segment {
                    gref: pages[0].0,
                    first_sect: 0,
                    last_sect: 7,
                }],
            ),
        }
    };
    for slot in 0..qd {
        let r = mk(slot, &mut seed);
        h.ring.put_request(&r);
    }
    if h.ring.push_requests() {
        h.guest.evtchn.kick(h.port);
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < RUN {
        let seen = h.guest.evtchn.notifications();
        let rs = h.ring.take_responses();
        if rs.is_empty() {
            h.guest.evtchn.wait_beyond(seen, Duration::from_millis(5));
            continue;
        }
        for (id, _, st) in rs {
            assert_eq!(st, RSP_OKAY);
            done += 1;
            let r = mk(id as usize, &mut seed);
            h.ring.put_request(&r);
        }
        if h.ring.push_requests() {
            h.guest.evtchn.kick(h.port);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = h.wait_responses(qd, Duration::from_secs(10));
    done as f64 * req_sectors as f64 * 512.0 / secs
}

fn direct_run(path: &Path, write: bool, big: bool) -> f64 {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len: usize = if big { 1 << 20 } else { 4096 };
    let threads = WORKERS;
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let file = &file;
                s.spawn(move || {
                    let mut buf = vec![0x11u8; len];
                    let mut seed = 0x1234_5678u64 + t as u64;
                    let mut off = t as u64 * len as u64;
                    let mut n = 0u64;
                    let start = Instant::now();
                    while start.elapsed() < RUN {
                        let pos = if big {
                            let p = off;
                            off = (off + (threads * len) as u64) % (FILE_MIB << 20);
                            p
                        } else {
                            (rng(&mut seed) % ((FILE_MIB << 20) / 4096)) * 4096
                        };
                        if write {
                            file.write_all_at(&buf, pos).unwrap();
                        } else {
                            file.read_exact_at(&mut buf, pos).unwrap();
                        }
                        n += len as u64;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / RUN.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.img");
    std::fs::write(&path, vec![0x5au8; (FILE_MIB << 20) as usize]).unwrap();
    let mut results = Vec::new();
    for (name, op, big) in [
        ("1 MiB sequential read", OP_READ, true),
        ("1 MiB sequential write", OP_WRITE, true),
        ("4 KiB random read, QD32", OP_READ, false),
        ("4 KiB random write, QD32", OP_WRITE, false),
    ] {
        let mut d = Vec::new();
        let mut b = Vec::new();
        for _ in 0..REPS {
            d.push(direct_run(&path, op == OP_WRITE, big));
            b.push(backend_run(&path, op, big));
        }
        let direct = median(d);
        let backend = median(b);
        results.push(Result_ {
            name,
            backend,
            direct,
        });
    }
    println!("| workload | backend MiB/s | direct MiB/s | backend/direct |");
    println!("| --- | ---: | ---: | ---: |");
    for r in results {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} % |",
            r.name,
            r.backend / (1 << 20) as f64,
            r.direct / (1 << 20) as f64,
            100.0 * r.backend / r.direct
        );
    }
}
