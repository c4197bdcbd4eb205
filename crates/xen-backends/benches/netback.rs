//! Network backend throughput and packets per second against the TAP
//! device's raw rate. Needs root (TAP devices and a network namespace to
//! keep the host's own stack out of it); prints why it skips otherwise.
//! Run: `cargo bench -p xen-backends --bench netback`. Results are printed,
//! never asserted; see docs/backends.md. `NETBENCH_CASES` (comma list of
//! `tx64,tx1514,txgso,rx64,rx1514`), `NETBENCH_ROUNDS` (default 5) and
//! `NETBENCH_SECS` (default 2) pick what runs.
//!
//! * TX (guest → host): an in-process netfront keeps the TX ring full; the
//!   baseline writes the same frames to the same kind of TAP (multi-queue,
//!   `IFF_VNET_HDR`) from one thread, one `writev` of header + frame each.
//!   Frames are 64 B, 1514 B, and 64 KiB TCP GSO frames (17 slots,
//!   `gso_size` 1448), which the baseline writes with the same
//!   `virtio_net_hdr`. Only frames answered `NETIF_RSP_OKAY` count.
//! * RX (host → guest): a thread in the namespace sends frames into the
//!   TAP through an `AF_PACKET` socket as fast as it can; the in-process
//!   netfront keeps 256 RX buffers posted and counts what arrives; the
//!   baseline reads the same kind of TAP directly (non-blocking, polling
//!   when empty, as the backend).
//!
//! Each case runs paired rounds (backend and baseline back to back) and
//! prints medians, with the CPU time per frame of the working thread: on
//! a loaded machine that, not the wall-clock rate, is the comparable cost.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_backends::blkback::conn::RingEnv;
use xen_backends::netback::offload::{self, VnetHdr};
use xen_backends::netback::{open_tap_queues, NetDevice, NetSpec};
use xen_backends::netif::{self, ExtraInfo, TxRequest};
use xen_backends::sring::FrontRing;
use xen_backends::testing::TestGuest;
use xen_emu::guest::GuestMemory;

/// Seconds per measurement (`NETBENCH_SECS`, default 2).
fn run_time() -> Duration {
    Duration::from_secs_f64(env_num("NETBENCH_SECS", 2.0))
}

fn env_num(key: &str, default: f64) -> f64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const PAGE: usize = 4096;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// A frame to a MAC nobody has: the namespace's kernel drops it right
/// after the TAP.
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x99, 0x00, 0x16, 0x3e, 0, 0, 1, 0x88, 0xb5,
    ];
    f.resize(len, 0x5a);
    f
}

/// A 64 KiB TCP/IPv4 GSO frame (to the same unknown MAC) and its header.
fn gso_frame() -> (Vec<u8>, VnetHdr) {
    let payload = 65535 - 14 - 40 - 1;
    let mut f = frame(14);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (40 + payload) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let c = netif::ipv4_header_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = vec![0u8; 20];
    tcp[12] = 0x50;
    tcp[13] = 0x18;
    f.extend_from_slice(&tcp);
    f.resize(f.len() + payload, 0x5a);
    let h = offload::tx_gso_header(&mut f, netif::XEN_NETIF_GSO_TYPE_TCPV4, 1448).unwrap();
    (f, h)
}

fn into_netns(ns: &str, ifname: &str) {
    assert!(ip(&["link", "set", ifname, "netns", ns]));
    assert!(ip(&[
        "netns", "exec", ns, "ip", "link", "set", ifname, "up"
    ]));
}

fn tap_name(tag: &str) -> String {
    format!("xkb{tag}{}", std::process::id() % 100_000)
}

/// Result of one run.
#[derive(Clone, Copy)]
struct Rate {
    /// Frames per second (wall clock).
    pps: f64,
    /// Frame bytes per second (wall clock).
    bps: f64,
    /// CPU time of the thread doing the work (the backend's TX or RX
    /// thread; the direct writer or reader), in ns per frame.
    cpu_ns: f64,
}

fn rate(n: u64, bytes: u64, start: Instant, cpu: CpuClock) -> Rate {
    let s = start.elapsed().as_secs_f64();
    Rate {
        pps: n as f64 / s,
        bps: bytes as f64 / s,
        cpu_ns: cpu.elapsed_ns() as f64 / n.max(1) as f64,
    }
}

/// A thread's run time so far (`/proc/.../schedstat`, in ns): on a loaded
/// machine wall-clock rates mostly say how much of the CPUs the run got,
/// while the CPU time per frame says what each frame costs.
struct CpuClock {
    path: String,
    start: u64,
}

impl CpuClock {
    /// The calling thread.
    fn this_thread() -> Self {
        Self::at("/proc/thread-self/schedstat".into())
    }

    /// This process's thread whose name starts with `prefix` (a new
    /// thread names itself once it runs: wait for that).
    fn thread_named(prefix: &str) -> Self {
        for _ in 0..1000 {
            let tid = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .find(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with(prefix))
                });
            if let Some(t) = tid {
                let tid = t.file_name();
                return Self::at(format!(
                    "/proc/self/task/{}/schedstat",
                    tid.to_string_lossy()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("no thread {prefix}*");
    }

    fn at(path: String) -> Self {
        let start = Self::read(&path);
        Self { path, start }
    }

    fn read(path: &str) -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn elapsed_ns(&self) -> u64 {
        Self::read(&self.path).saturating_sub(self.start)
    }
}

/// The baseline: the same frames written straight to the same kind of TAP
/// (multi-queue, `IFF_VNET_HDR`), one `writev` of header + frame each, as
/// the backend does.
fn tx_direct(ns: &str, f: &[u8], hdr: Option<VnetHdr>) -> Rate {
    let name = tap_name("d");
    let tap = open_tap_queues(&name, 1).unwrap().remove(0);
    into_netns(ns, &name);
    let h = hdr.unwrap_or_default().encode();
    let iov = [
        libc::iovec {
            iov_base: h.as_ptr() as *mut libc::c_void,
            iov_len: h.len(),
        },
        libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        },
    ];
    let cpu = CpuClock::this_thread();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_time() {
        // SAFETY: two iovecs over `h` and `f`, live for the call.
        if unsafe { libc::writev(tap.as_raw_fd(), iov.as_ptr(), 2) } > 0 {
            n += 1;
        }
    }
    rate(n, n * f.len() as u64, start, cpu)
}

/// A backend for a TAP in `ns`, connected to an in-process frontend with
/// rings on the first two free pages and port 5.
struct Rig {
    guest: TestGuest,
    dev: NetDevice,
    tx: FrontRing,
    rx: FrontRing,
}

fn rig(ns: &str, tag: &str) -> Rig {
    let name = tap_name(tag);
    let guest = TestGuest::new(16 << 20);
    let store = xenstore::Engine::default();
    store.introduce_domain(1);
    let env = RingEnv {
        mem: guest.mem.clone(),
        grants: guest.grants.clone(),
        evtchn: guest.evtchn.clone(),
        backend_domid: 0,
        on_fatal: Arc::new(|| {}),
    };
    let spec = NetSpec {
        devid: 0,
        mac: "00:16:3e:00:00:01".into(),
        ifname: Some(name.clone()),
        mtu: 1500,
        bridge: None,
        rate: None,
    };
    let mut dev = NetDevice::create(&store, env, 1, spec).unwrap();
    into_netns(ns, &name);
    let base = TestGuest::FIRST_FREE_PAGE;
    guest.grant(8, 0, base, false);
    guest.grant(9, 0, base + 1, false);
    let tx = FrontRing::init(guest.mem.clone(), base * 4096, 1, netif::TX_SLOT);
    let rx = FrontRing::init(guest.mem.clone(), (base + 1) * 4096, 1, netif::RX_SLOT);
    let p = dev.paths().clone();
    for (k, v) in [
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel", "5"),
        ("request-rx-copy", "1"),
        ("feature-sg", "1"),
        ("state", "4"),
    ] {
        store.write(&p.frontend_key(k), v.as_bytes()).unwrap();
    }
    dev.frontend_changed();
    Rig { guest, dev, tx, rx }
}

/// Data pages for TX: one frame's slots per page run, starting here.
const DATA: u64 = TestGuest::FIRST_FREE_PAGE + 2;

fn tx_backend(ns: &str, f: &[u8], gso: Option<ExtraInfo>) -> Rate {
    let Rig {
        guest,
        dev,
        mut tx,
        rx: _,
    } = rig(ns, "b");
    // Every frame in flight has its own pages: `per` slots of one page
    // each (plus the extra-info slot for GSO).
    let per = f.len().div_ceil(PAGE);
    let slots_per_frame = per as u32 + u32::from(gso.is_some());
    let frames_in_flight = tx.size() / slots_per_frame;
    for k in 0..frames_in_flight * per as u32 {
        let page = DATA + u64::from(k);
        guest.grant(10 + k, 0, page, false);
        let chunk = f.chunks(PAGE).nth(k as usize % per).unwrap_or_default();
        guest.mem.write(page * 4096, chunk).unwrap();
    }
    let mut next = 0u32;
    let mut fill = |tx: &mut FrontRing| {
        while tx.free_slots() >= slots_per_frame {
            let slot = next % frames_in_flight;
            for (k, chunk) in f.chunks(PAGE).enumerate() {
                let mut flags = 0;
                if k + 1 < per {
                    flags |= netif::NETTXF_MORE_DATA;
                }
                if k == 0 && gso.is_some() {
                    flags |= netif::NETTXF_EXTRA_INFO | netif::NETTXF_CSUM_BLANK;
                }
                tx.put_request(
                    &TxRequest {
                        gref: 10 + slot * per as u32 + k as u32,
                        offset: 0,
                        flags,
                        id: (slot * slots_per_frame) as u16 + k as u16,
                        size: if k == 0 { f.len() } else { chunk.len() } as u16,
                    }
                    .encode(),
                );
                if let (0, Some(e)) = (k, gso) {
                    let mut b = [0u8; 12];
                    b[..8].copy_from_slice(&e.encode());
                    tx.put_request(&b);
                }
            }
            next = next.wrapping_add(1);
        }
    };
    fill(&mut tx);
    tx.push_requests();
    guest.evtchn.kick(5);
    let cpu = CpuClock::thread_named("netback-tx");
    let start = Instant::now();
    let (mut n, mut failed) = (0u64, 0u64);
    while start.elapsed() < run_time() {
        let seen = guest.evtchn.notifications();
        let rsps = tx.take_responses();
        if rsps.is_empty() {
            guest.evtchn.wait_beyond(seen, Duration::from_millis(5));
            continue;
        }
        // The ring's TX responses read as blkif ones: the status is bits
        // 16..32 of the "id". Only frames the TAP took count (their data
        // slots OKAY, the GSO extra's slot NULL).
        let okay = rsps
            .iter()
            .filter(|&&(id, _, _)| {
                let st = (id >> 16) as u16 as i16;
                st == netif::NETIF_RSP_OKAY || st == netif::NETIF_RSP_NULL
            })
            .count() as u64;
        failed += rsps.len() as u64 - okay;
        n += okay;
        fill(&mut tx);
        if tx.push_requests() {
            guest.evtchn.kick(5);
        }
    }
    if failed > 0 {
        eprintln!("TX backend: {failed} slots not answered NETIF_RSP_OKAY");
    }
    let frames = n / u64::from(slots_per_frame);
    let r = rate(frames, frames * f.len() as u64, start, cpu);
    dev.destroy();
    r
}

/// Sends `len`-byte frames into TAP `ifname` from inside `ns` until `stop`
/// (through an `AF_PACKET` socket, 64 per `sendmmsg`).
fn generator(
    ns: &str,
    ifname: &str,
    len: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (ns, ifname) = (ns.to_owned(), ifname.to_owned());
    std::thread::spawn(move || {
        let nsf = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
        // SAFETY: setns on a namespace file we hold; affects this thread.
        let r = unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns into {ns}");
        let cname = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert_ne!(ifindex, 0);
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(fd >= 0);
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        let mut f = frame(len);
        f[0..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1]);
        // 64 frames per `sendmmsg`, so the generator outruns the readers.
        let mut iov = libc::iovec {
            iov_base: f.as_mut_ptr().cast(),
            iov_len: f.len(),
        };
        // SAFETY: mmsghdr is plain data; zeroed is a valid value.
        let mut msgs: Vec<libc::mmsghdr> = (0..64).map(|_| unsafe { std::mem::zeroed() }).collect();
        for m in &mut msgs {
            m.msg_hdr.msg_name = (&mut sa as *mut libc::sockaddr_ll).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: the headers point at `sa`, `iov` and `f`, which
            // outlive the call.
            unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    })
}

/// The baseline: the same frames read straight from the same kind of
/// TAP, non-blocking, polling only when it is empty (as the backend).
fn rx_direct(ns: &str, len: usize) -> Rate {
    let name = tap_name("r");
    let mut tap = open_tap_queues(&name, 1).unwrap().remove(0);
    into_netns(ns, &name);
    // SAFETY: F_GETFL/F_SETFL on our own descriptor.
    unsafe {
        let fl = libc::fcntl(tap.as_raw_fd(), libc::F_GETFL);
        assert!(libc::fcntl(tap.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) >= 0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let g = generator(ns, &name, len, stop.clone());
    let mut buf = vec![0u8; 65536];
    let cpu = CpuClock::this_thread();
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while start.elapsed() < run_time() {
        match tap.read(&mut buf) {
            Ok(k) => {
                n += 1;
                bytes += k.saturating_sub(offload::VNET_HDR_LEN) as u64;
            }
            Err(_) => {
                let mut pfd = libc::pollfd {
                    fd: tap.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 50) };
            }
        }
    }
    let r = rate(n, bytes, start, cpu);
    stop.store(true, Ordering::Relaxed);
    g.join().unwrap();
    r
}

fn rx_backend(ns: &str, len: usize) -> Rate {
    let Rig {
        guest,
        dev,
        tx: _,
        mut rx,
    } = rig(ns, "x");
    let rx_base = (TestGuest::FIRST_FREE_PAGE + 1) * 4096;
    let size = rx.size();
    let post = |rx: &mut FrontRing, id: u32| {
        let mut req = [0u8; 8];
        req[0..2].copy_from_slice(&(id as u16).to_le_bytes());
        req[4..8].copy_from_slice(&(10 + id).to_le_bytes());
        rx.put_request(&req);
    };
    for id in 0..size {
        guest.grant(10 + id, 0, DATA + u64::from(id), false);
        post(&mut rx, id);
    }
    rx.push_requests();
    guest.evtchn.kick(5);
    let stop = Arc::new(AtomicBool::new(false));
    let g = generator(ns, dev.ifname(), len, stop.clone());
    let prod = guest.mem.atomic_u32(rx_base + 8).unwrap();
    let event = guest.mem.atomic_u32(rx_base + 12).unwrap();
    let mut cons = 0u32;
    let cpu = CpuClock::thread_named("netback-rx");
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while start.elapsed() < run_time() {
        let seen = guest.evtchn.notifications();
        let p = prod.load(Ordering::Acquire);
        if p == cons {
            event.store(cons.wrapping_add(1), Ordering::Release);
            if prod.load(Ordering::Acquire) == cons {
                guest.evtchn.wait_beyond(seen, Duration::from_millis(5));
            }
            continue;
        }
        while cons != p {
            let mut r = [0u8; 8];
            let slot = u64::from(cons & (size - 1));
            guest.mem.read(rx_base + 64 + slot * 8, &mut r).unwrap();
            let id = u16::from_le_bytes([r[0], r[1]]);
            let flags = u16::from_le_bytes([r[4], r[5]]);
            let status = i16::from_le_bytes([r[6], r[7]]);
            if status > 0 {
                bytes += status as u64;
            }
            if flags & netif::NETRXF_MORE_DATA == 0 {
                n += 1;
            }
            post(&mut rx, u32::from(id));
            cons = cons.wrapping_add(1);
        }
        if rx.push_requests() {
            guest.evtchn.kick(5);
        }
    }
    let r = rate(n, bytes, start, cpu);
    stop.store(true, Ordering::Relaxed);
    g.join().unwrap();
    dev.destroy();
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One line of the table from `rounds` paired measurements: the medians,
/// and the medians of the per-round ratios (a round's backend and direct
/// runs are back to back, so the ratio sees the same load).
fn row(what: &str, rounds: &[(Rate, Rate)]) {
    let med = |f: &dyn Fn(&(Rate, Rate)) -> f64| median(rounds.iter().map(f).collect());
    let mbit = 8.0 / 1e6;
    println!(
        "| {what} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} % | {:.0} | {:.0} | {:.0} % |",
        med(&|r| r.0.pps) / 1e3,
        med(&|r| r.1.pps) / 1e3,
        med(&|r| r.0.bps) * mbit,
        med(&|r| r.1.bps) * mbit,
        100.0 * med(&|r| r.0.bps / r.1.bps),
        med(&|r| r.0.cpu_ns),
        med(&|r| r.1.cpu_ns),
        100.0 * med(&|r| r.1.cpu_ns / r.0.cpu_ns),
    );
}

/// Runs `backend` and `direct` `rounds` times, alternating which goes
/// first, and prints each round to stderr.
fn measure(
    what: &str,
    rounds: usize,
    backend: impl Fn() -> Rate,
    direct: impl Fn() -> Rate,
) -> Vec<(Rate, Rate)> {
    (0..rounds)
        .map(|i| {
            let (b, d) = if i % 2 == 0 {
                let b = backend();
                (b, direct())
            } else {
                let d = direct();
                (backend(), d)
            };
            eprintln!(
                "{what} round {i}: backend {:.0} kpps {:.0} ns/frame, direct {:.0} kpps {:.0} ns/frame",
                b.pps / 1e3,
                b.cpu_ns,
                d.pps / 1e3,
                d.cpu_ns,
            );
            (b, d)
        })
        .collect()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !ip(&["-V"]) {
        println!("netback bench: skipped (needs root and iproute2)");
        return;
    }
    // `NETBENCH_CASES=tx64,tx1514,txgso,rx64,rx1514` picks cases (default:
    // all); `NETBENCH_ROUNDS` paired rounds each (default 5).
    let cases =
        std::env::var("NETBENCH_CASES").unwrap_or_else(|_| "tx64,tx1514,txgso,rx64,rx1514".into());
    let want = |c: &str| cases.split(',').any(|x| x == c);
    let rounds = env_num("NETBENCH_ROUNDS", 5.0).max(1.0) as usize;
    let ns = format!("xkvm-nbb-{}", std::process::id());
    assert!(ip(&["netns", "add", &ns]));
    let mut table = Vec::new();
    for len in [64usize, 1514] {
        if want(&format!("tx{len}")) {
            let f = frame(len);
            let what = format!("TX {len} B");
            let r = measure(
                &what,
                rounds,
                || tx_backend(&ns, &f, None),
                || tx_direct(&ns, &f, None),
            );
            table.push((what, r));
        }
    }
    if want("txgso") {
        let (g, h) = gso_frame();
        let e = ExtraInfo::gso(netif::XEN_NETIF_GSO_TYPE_TCPV4, 1448);
        let what = "TX 64 KiB GSO".to_owned();
        let r = measure(
            &what,
            rounds,
            || tx_backend(&ns, &g, Some(e)),
            || tx_direct(&ns, &g, Some(h)),
        );
        table.push((what, r));
    }
    for len in [64usize, 1514] {
        if want(&format!("rx{len}")) {
            let what = format!("RX {len} B");
            let r = measure(
                &what,
                rounds,
                || rx_backend(&ns, len),
                || rx_direct(&ns, len),
            );
            table.push((what, r));
        }
    }
    println!("median of {rounds} rounds of {:?} each", run_time());
    println!(
        "| direction, frame | backend kpps | direct kpps | backend Mbit/s | direct Mbit/s \
         | backend/direct | backend CPU ns/frame | direct CPU ns/frame | direct/backend CPU |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (what, r) in &table {
        row(what, r);
    }
    let _ = ip(&["netns", "del", &ns]);
}
