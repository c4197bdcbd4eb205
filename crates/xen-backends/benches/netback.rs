//! Network backend TX throughput and packets per second against writing
//! the same frames straight to a TAP device. Needs root (TAP devices and a
//! network namespace to keep the host's own stack out of it); prints why
//! it skips otherwise. Run: `cargo bench -p xen-backends --bench netback`.
//! Results are printed, never asserted; see docs/backends.md.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_backends::blkback::conn::RingEnv;
use xen_backends::netback::{open_tap, NetDevice, NetSpec};
use xen_backends::netif::{self, TxRequest};
use xen_backends::sring::FrontRing;
use xen_backends::testing::TestGuest;
use xen_emu::guest::GuestMemory;

const RUN: Duration = Duration::from_secs(2);

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn frame(len: usize) -> Vec<u8> {
    // To a MAC nobody has: the namespace's kernel drops it after the TAP.
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x99, 0x00, 0x16, 0x3e, 0, 0, 1, 0x88, 0xb5,
    ];
    f.resize(len, 0x5a);
    f
}

fn into_netns(ns: &str, ifname: &str) {
    assert!(ip(&["link", "set", ifname, "netns", ns]));
    assert!(ip(&[
        "netns", "exec", ns, "ip", "link", "set", ifname, "up"
    ]));
}

fn direct(ns: &str, len: usize) -> (f64, f64) {
    let name = format!("xkbd{}", std::process::id() % 100_000);
    let mut tap = open_tap(&name).unwrap();
    into_netns(ns, &name);
    let f = frame(len);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        if tap.write(&f).is_ok() {
            n += 1;
        }
    }
    let s = start.elapsed().as_secs_f64();
    (n as f64 / s, n as f64 * len as f64 / s)
}

fn backend(ns: &str, len: usize) -> (f64, f64) {
    let name = format!("xkbb{}", std::process::id() % 100_000);
    let guest = TestGuest::new(8 << 20);
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
    let mut tx = FrontRing::init(guest.mem.clone(), base * 4096, 1, netif::TX_SLOT);
    let p = dev.paths().clone();
    for (k, v) in [
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel", "5"),
        ("request-rx-copy", "1"),
        ("state", "4"),
    ] {
        store.write(&p.frontend_key(k), v.as_bytes()).unwrap();
    }
    dev.frontend_changed();
    // One data page per ring slot, each holding the frame.
    let f = frame(len);
    let slots = tx.size();
    for i in 0..slots {
        guest.grant(10 + i, 0, base + 2 + u64::from(i), false);
        guest
            .mem
            .write((base + 2 + u64::from(i)) * 4096, &f)
            .unwrap();
    }
    let mut id = 0u32;
    let mut fill = |tx: &mut FrontRing| {
        while tx.free_slots() > 0 {
            let slot = id % slots;
            tx.put_request(
                &TxRequest {
                    gref: 10 + slot,
                    offset: 0,
                    flags: 0,
                    id: slot as u16,
                    size: len as u16,
                }
                .encode(),
            );
            id = id.wrapping_add(1);
        }
    };
    fill(&mut tx);
    tx.push_requests();
    guest.evtchn.kick(5);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let seen = guest.evtchn.notifications();
        let done = tx.take_responses().len() as u64;
        if done == 0 {
            guest.evtchn.wait_beyond(seen, Duration::from_millis(5));
            continue;
        }
        n += done;
        fill(&mut tx);
        if tx.push_requests() {
            guest.evtchn.kick(5);
        }
    }
    let s = start.elapsed().as_secs_f64();
    dev.destroy();
    (n as f64 / s, n as f64 * len as f64 / s)
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !ip(&["-V"]) {
        println!("netback bench: skipped (needs root and iproute2)");
        return;
    }
    let ns = format!("xkvm-nbb-{}", std::process::id());
    assert!(ip(&["netns", "add", &ns]));
    println!(
        "| frame | backend kpps | direct kpps | backend MiB/s | direct MiB/s | backend/direct |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for len in [64usize, 1514] {
        let (dp, db) = direct(&ns, len);
        let (bp, bb) = backend(&ns, len);
        println!(
            "| {len} B | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} % |",
            bp / 1e3,
            dp / 1e3,
            bb / (1 << 20) as f64,
            db / (1 << 20) as f64,
            100.0 * bp / dp
        );
    }
    let _ = ip(&["netns", "del", &ns]);
}
