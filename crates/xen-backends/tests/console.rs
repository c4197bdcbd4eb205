//! Extra consoles and channels driven by an in-process frontend: the
//! xenbus handshake, guest output reaching the host end (file, Unix socket,
//! pty) and host input reaching the guest's `in` ring.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_backends::blkback::conn::RingEnv;
use xen_backends::console::{ConsoleDevice, ConsoleSpec, HostEnd};
use xen_backends::testing::TestGuest;
use xen_backends::xenbus::{self, XenbusState};
use xen_emu::guest::GuestMemory;

const PAGE: u64 = TestGuest::FIRST_FREE_PAGE * 4096;
const PORT: u32 = 9;

fn setup(spec: ConsoleSpec) -> (TestGuest, xenstore::Engine, ConsoleDevice) {
    let guest = TestGuest::new(1 << 20);
    let store = xenstore::Engine::default();
    store.introduce_domain(1);
    let env = RingEnv {
        mem: guest.mem.clone(),
        grants: guest.grants.clone(),
        evtchn: guest.evtchn.clone(),
        backend_domid: 0,
        on_fatal: Arc::new(|| {}),
    };
    let mut dev = ConsoleDevice::create(&store, env, 1, spec).unwrap();
    assert_eq!(dev.state(), XenbusState::InitWait);
    let p = dev.paths().clone();
    guest.grant(8, 0, TestGuest::FIRST_FREE_PAGE, false);
    store.write(&p.frontend_key("ring-ref"), b"8").unwrap();
    store
        .write(&p.frontend_key("port"), PORT.to_string().as_bytes())
        .unwrap();
    store.write(&p.frontend_key("state"), b"3").unwrap();
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Connected);
    assert_ne!(guest.grant_flags(8) & 0x18, 0, "ring page mapped");
    (guest, store, dev)
}

/// The guest writes `data` to its `out` ring and kicks the backend.
fn guest_out(g: &TestGuest, data: &[u8]) {
    let prod = g.mem.atomic_u32(PAGE + 3084).unwrap();
    let p = prod.load(Ordering::Acquire);
    for (i, b) in data.iter().enumerate() {
        let idx = (p as usize + i) % 2048;
        g.mem.write(PAGE + 1024 + idx as u64, &[*b]).unwrap();
    }
    prod.store(p + data.len() as u32, Ordering::Release);
    g.evtchn.kick(PORT);
}

/// What the backend put into the guest's `in` ring so far.
fn guest_in(g: &TestGuest) -> Vec<u8> {
    let prod = g
        .mem
        .atomic_u32(PAGE + 3076)
        .unwrap()
        .load(Ordering::Acquire);
    let mut out = vec![0u8; prod as usize];
    g.mem.read(PAGE, &mut out).unwrap();
    out
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn channel_output_goes_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("chan.log");
    let (g, store, dev) = setup(ConsoleSpec {
        devid: 1,
        name: Some("org.xkvm.test".into()),
        host: HostEnd::File(log.clone()),
    });
    let p = dev.paths().clone();
    assert_eq!(p.frontend, "/local/domain/1/device/console/1");
    assert_eq!(
        xenbus::read_str(&store, &p.frontend_key("name")).as_deref(),
        Some("org.xkvm.test")
    );
    guest_out(&g, b"hello from the guest\n");
    assert!(eventually(|| std::fs::read(&log)
        .unwrap_or_default()
        .ends_with(b"hello from the guest\n")));
    assert_eq!(
        g.mem
            .atomic_u32(PAGE + 3080)
            .unwrap()
            .load(Ordering::Acquire),
        21,
        "out_cons advanced"
    );
    dev.destroy();
    assert_eq!(g.grant_flags(8) & 0x18, 0, "ring page unmapped");
    assert!(store.read(&p.backend).is_err(), "device removed");
}

#[test]
fn channel_over_a_unix_socket_carries_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("chan.sock");
    let (g, store, dev) = setup(ConsoleSpec {
        devid: 2,
        name: Some("org.xkvm.sock".into()),
        host: HostEnd::Socket(sock.clone()),
    });
    let p = dev.paths().clone();
    assert_eq!(
        xenbus::read_str(&store, &p.backend_key("connection")).as_deref(),
        Some("socket")
    );
    let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    c.write_all(b"ping").unwrap();
    assert!(
        eventually(|| guest_in(&g) == b"ping"),
        "host input reached the guest"
    );
    // The acceptor registers the client before it reads; output after
    // that reaches it.
    guest_out(&g, b"pong");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    dev.destroy();
}

#[test]
fn console_on_a_pty_reports_its_tty() {
    let (g, _store, dev) = setup(ConsoleSpec {
        devid: 3,
        name: None,
        host: HostEnd::Pty,
    });
    let tty = dev.tty().expect("tty node");
    assert!(tty.starts_with("/dev/pts/"), "{tty}");
    let mut slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tty)
        .unwrap();
    guest_out(&g, b"pty-out");
    let mut buf = [0u8; 7];
    slave.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pty-out");
    dev.destroy();
}

#[test]
fn frontend_close_and_reset_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let (g, store, mut dev) = setup(ConsoleSpec {
        devid: 4,
        name: None,
        host: HostEnd::File(dir.path().join("c.log")),
    });
    let p = dev.paths().clone();
    store.write(&p.frontend_key("state"), b"6").unwrap();
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Closed);
    assert_eq!(g.grant_flags(8) & 0x18, 0);
    store.write(&p.frontend_key("state"), b"1").unwrap();
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::InitWait);
    store.write(&p.frontend_key("state"), b"3").unwrap();
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Connected);
    store.write(&p.frontend_key("port"), b"x").unwrap();
    store.write(&p.frontend_key("state"), b"6").unwrap();
    dev.frontend_changed();
    store.write(&p.frontend_key("state"), b"1").unwrap();
    dev.frontend_changed();
    store.write(&p.frontend_key("state"), b"3").unwrap();
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Closing, "bad port is fatal");
    dev.destroy();
}
