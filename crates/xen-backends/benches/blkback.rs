//! Block backend throughput against direct file I/O on the same file.
//!
//! The frontend is played in-process on a shared ring ([`BlkHarness`]),
//! with persistent grants and a 4-page ring as Linux's blkfront uses them.
//! Workloads: 1 MiB sequential reads and writes (indirect requests of 256
//! segments, queue depth 4), 4 KiB random reads and writes at queue depth
//! 32. Two baselines on the same file with the same (warm) page cache:
//! - "fio-like": what `fio --ioengine=io_uring --iodepth=<QD> --numjobs=1`
//!   does, one thread keeping the same number of requests in flight as the
//!   harness (4 × 1 MiB sequential, 32 × 4 KiB random) through io_uring;
//! - "psync ×4": `pread`/`pwrite` from as many threads as the backend has
//!   workers (4; sequential ones on interleaved stripes), as
//!   `fio --ioengine=psync --numjobs=4` would.
//!
//! Run: `cargo bench -p xen-backends --bench blkback`
//! (`BLKBENCH_ONLY`, `BLKBENCH_REPS`, `BLKBENCH_SECS`, `BLKBENCH_SIDE`
//! narrow it down). Besides throughput it reports bytes per CPU-second of
//! the whole process (backend and frontend threads, or the baseline's),
//! which the load of a shared machine disturbs much less than wall time.
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
/// Length of one run (`BLKBENCH_SECS` overrides).
fn run_len() -> Duration {
    Duration::from_secs_f64(env_num("BLKBENCH_SECS", 2.0))
}
/// Alternating repetitions; the median of each side is reported (the
/// development machines are shared, single runs are noisy;
/// `BLKBENCH_REPS` overrides).
fn reps() -> usize {
    env_num("BLKBENCH_REPS", 5.0) as usize
}

fn env_num(key: &str, default: f64) -> f64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const WORKERS: usize = 4;

/// How long the frontend's vCPU stands in for KVM's halt polling
/// (`BLKBENCH_HALT_POLL_US`, default 200 µs, KVM's `halt_poll_ns`
/// default on x86).
fn halt_poll() -> Duration {
    Duration::from_secs_f64(env_num("BLKBENCH_HALT_POLL_US", 200.0) * 1e-6)
}

/// The frontend has nothing to do until the backend's next notification.
/// The frontend is a guest vCPU, which halts: KVM polls for the interrupt
/// for up to `halt_poll_ns` before it puts the vCPU thread to sleep, so
/// this watches the notification count for `halt_poll` (pausing between
/// looks and giving way to any other runnable thread, as KVM's poll loop
/// does) and only then sleeps on the event channel. `halt_poll` zero is a vCPU that always sleeps.
///
/// `seen` is the notification and send counts from before the ring was
/// found empty.
fn frontend_wait(h: &BlkHarness, (seen, sends): (u64, usize), halt_poll: Duration) {
    use std::sync::atomic::Ordering;
    let until = Instant::now() + halt_poll;
    while Instant::now() < until {
        for _ in 0..64 {
            if h.guest.evtchn.sends.load(Ordering::Acquire) != sends {
                return;
            }
            std::hint::spin_loop();
        }
        // KVM polls only while nothing else wants this CPU
        // (`single_task_running()`, `need_resched()`).
        std::thread::yield_now();
    }
    h.guest.evtchn.wait_beyond(seen, Duration::from_millis(5));
}

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Result_ {
    name: &'static str,
    fio: Rate,
    /// Frontend halt-polling before it sleeps ([`halt_poll`]).
    polling: Rate,
    /// Frontend sleeping at once.
    sleeping: Rate,
    psync: Rate,
}

/// One run: bytes per wall-clock second and per CPU-second.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

/// User + system CPU time of the whole process so far, in seconds: the
/// backend's threads and the frontend's, or the baseline's.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Measures `run` (which returns the bytes it moved) over wall and CPU time.
fn rate(run: impl FnOnce() -> (u64, f64)) -> Rate {
    let cpu0 = cpu_secs();
    let (bytes, secs) = run();
    let cpu = (cpu_secs() - cpu0).max(1e-9);
    Rate {
        wall: bytes as f64 / secs,
        cpu: bytes as f64 / cpu,
    }
}

fn backend_run(path: &Path, op: u8, big: bool, halt_poll: Duration) -> Rate {
    let spec = BlockSpec {
        path: path.to_owned(),
        vdev: "xvda".into(),
        readonly: false,
        cdrom: false,
        discard: false,
        format: Default::default(),
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
    let r = rate(|| {
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < run_len() {
            // Noted before the ring is read, so a notification that comes
            // in between is not waited for.
            let seen = (
                h.guest.evtchn.notifications(),
                h.guest
                    .evtchn
                    .sends
                    .load(std::sync::atomic::Ordering::Acquire),
            );
            let rs = h.ring.take_responses();
            if rs.is_empty() {
                frontend_wait(&h, seen, halt_poll);
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
        (done * req_sectors * 512, secs)
    });
    let _ = h.wait_responses(qd, Duration::from_secs(10));
    r
}

fn psync_run(path: &Path, write: bool, big: bool, threads: usize) -> Rate {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len: usize = if big { 1 << 20 } else { 4096 };
    rate(|| {
        // Wall time of the whole run: under a real-time policy (`chrt`)
        // threads beyond the core count run after the others, not beside.
        let start = Instant::now();
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
                        while start.elapsed() < run_len() {
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
        (total, start.elapsed().as_secs_f64())
    })
}

/// One thread, `qd` requests in flight through io_uring, as fio's io_uring
/// engine with `--iodepth=qd --numjobs=1` (buffered, like the backend).
/// Falls back to one thread of `pread`/`pwrite` where io_uring is refused.
fn fio_run(path: &Path, write: bool, big: bool) -> Rate {
    use io_uring::{opcode, types, IoUring};
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len: usize = if big { 1 << 20 } else { 4096 };
    let qd: usize = if big { 4 } else { 32 };
    let Ok(mut ring) = IoUring::new(64) else {
        eprintln!("io_uring unavailable: fio-like baseline runs pread from one thread");
        return psync_run(path, write, big, 1);
    };
    let fd = types::Fd(file.as_raw_fd());
    let mut bufs: Vec<Vec<u8>> = (0..qd).map(|_| vec![0x22u8; len]).collect();
    let mut seed = 0x0bad_cafe_u64;
    let mut next = 0u64;
    let mut pos = |seed: &mut u64| -> u64 {
        if big {
            let p = next;
            next = (next + len as u64) % (FILE_MIB << 20);
            p
        } else {
            (rng(seed) % ((FILE_MIB << 20) / 4096)) * 4096
        }
    };
    let mut submit = |ring: &mut IoUring, slot: usize, at: u64| {
        let ptr = bufs[slot].as_mut_ptr();
        let e = if write {
            opcode::Write::new(fd, ptr, len as u32).offset(at).build()
        } else {
            opcode::Read::new(fd, ptr, len as u32).offset(at).build()
        };
        // SAFETY: the buffer of `slot` lives until the end of this
        // function and is not reused before its completion was reaped.
        unsafe { ring.submission().push(&e.user_data(slot as u64)) }.unwrap();
    };
    rate(|| {
        for slot in 0..qd {
            let at = pos(&mut seed);
            submit(&mut ring, slot, at);
        }
        let start = Instant::now();
        let mut n = 0u64;
        let mut outstanding = qd;
        while outstanding > 0 {
            ring.submit_and_wait(1).unwrap();
            let done: Vec<(u64, i32)> = ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (slot, res) in done {
                assert_eq!(res, len as i32, "io_uring I/O failed");
                n += len as u64;
                if start.elapsed() < run_len() {
                    let at = pos(&mut seed);
                    submit(&mut ring, slot as usize, at);
                } else {
                    outstanding -= 1;
                }
            }
        }
        (n, start.elapsed().as_secs_f64())
    })
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
        // `BLKBENCH_ONLY=random` runs only workloads whose name has it.
        if let Ok(only) = std::env::var("BLKBENCH_ONLY") {
            if !name.contains(only.as_str()) {
                continue;
            }
        }
        // `BLKBENCH_SIDE=backend` (or `backend-sleep`, `fio`, `psync`)
        // runs one side only, for profiling; the table then has zeros
        // for the others.
        let side = std::env::var("BLKBENCH_SIDE").unwrap_or_default();
        let runs = |name: &str| side.is_empty() || side == name;
        let zero = Rate {
            wall: 0.0,
            cpu: 0.0,
        };
        let mut sides: [Vec<Rate>; 4] = Default::default();
        for _ in 0..reps() {
            let [f, p, s, d] = &mut sides;
            f.push(if runs("fio") {
                fio_run(&path, op == OP_WRITE, big)
            } else {
                zero
            });
            p.push(if runs("backend") {
                backend_run(&path, op, big, halt_poll())
            } else {
                zero
            });
            s.push(if runs("backend-sleep") {
                backend_run(&path, op, big, Duration::ZERO)
            } else {
                zero
            });
            d.push(if runs("psync") {
                psync_run(&path, op == OP_WRITE, big, WORKERS)
            } else {
                zero
            });
        }
        let med = |v: &[Rate]| Rate {
            wall: median(v.iter().map(|r| r.wall).collect()),
            cpu: median(v.iter().map(|r| r.cpu).collect()),
        };
        let [f, p, s, d] = &sides;
        results.push(Result_ {
            name,
            fio: med(f),
            polling: med(p),
            sleeping: med(s),
            psync: med(d),
        });
    }
    let mib = |x: f64| x / (1 << 20) as f64;
    let pct = |a: f64, b: f64| 100.0 * a / b;
    println!(
        "| workload | fio-like MiB/s | backend, frontend polls, MiB/s | % of fio-like | per CPU-s | backend, frontend sleeps, MiB/s | % of fio-like | per CPU-s | psync ×4 MiB/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in results {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} % | {:.0} % | {:.0} | {:.0} % | {:.0} % | {:.0} |",
            r.name,
            mib(r.fio.wall),
            mib(r.polling.wall),
            pct(r.polling.wall, r.fio.wall),
            pct(r.polling.cpu, r.fio.cpu),
            mib(r.sleeping.wall),
            pct(r.sleeping.wall, r.fio.wall),
            pct(r.sleeping.cpu, r.fio.cpu),
            mib(r.psync.wall),
        );
    }
}
