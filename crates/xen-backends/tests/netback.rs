//! The network backend against a real TAP device in a network namespace
//! the test creates (`ip netns add`; needs root, `/dev/net/tun` and
//! iproute2, else it skips with the reason, or fails under CI=true). An
//! in-process netfront sends an ARP request (answered by the namespace's
//! kernel) and a UDP datagram split over two TX slots with its checksum left
//! blank (answered with ICMP port unreachable only if the backend completed
//! the checksum); the answers arrive through the RX ring.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_backends::blkback::conn::RingEnv;
use xen_backends::netback::{NetDevice, NetSpec};
use xen_backends::netif::{self, TxRequest};
use xen_backends::sring::FrontRing;
use xen_backends::testing::TestGuest;
use xen_backends::xenbus::XenbusState;
use xen_emu::guest::GuestMemory;

const GUEST_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x01];
const GUEST_IP: [u8; 4] = [10, 99, 0, 2];
const HOST_IP: [u8; 4] = [10, 99, 0, 1];

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

struct Front {
    guest: TestGuest,
    tx: FrontRing,
    rx: FrontRing,
    rx_pages: Vec<(u32, u64)>,
    next_page: u64,
    next_gref: u32,
}

const PORT: u32 = 5;

impl Front {
    fn page(&mut self) -> (u32, u64) {
        let (g, p) = (self.next_gref, self.next_page);
        self.next_gref += 1;
        self.next_page += 1;
        self.guest.grant(g, 0, p, false);
        (g, p)
    }

    fn post_rx(&mut self) {
        for i in 0..16u16 {
            let (g, p) = self.page();
            let mut req = [0u8; 8];
            req[0..2].copy_from_slice(&i.to_le_bytes());
            req[4..8].copy_from_slice(&g.to_le_bytes());
            self.rx.put_request(&req);
            self.rx_pages.push((g, p));
        }
        self.rx.push_requests();
        self.guest.evtchn.kick(PORT);
    }

    /// Sends `frame` split into slots of at most `chunk` bytes.
    fn send(&mut self, frame: &[u8], chunk: usize, flags: u16) {
        let parts: Vec<&[u8]> = frame.chunks(chunk).collect();
        for (k, part) in parts.iter().enumerate() {
            let (g, p) = self.page();
            self.guest.mem.write(p * 4096 + 100, part).unwrap();
            let mut f = if k == 0 { flags } else { 0 };
            if k + 1 < parts.len() {
                f |= netif::NETTXF_MORE_DATA;
            }
            let size = if k == 0 { frame.len() } else { part.len() } as u16;
            self.tx.put_request(
                &TxRequest {
                    gref: g,
                    offset: 100,
                    flags: f,
                    id: k as u16,
                    size,
                }
                .encode(),
            );
        }
        self.tx.push_requests();
        self.guest.evtchn.kick(PORT);
    }

    /// Waits for a received frame `want` accepts.
    fn receive(&mut self, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            // Consume responses so the ring keeps moving; the frames are
            // read from the posted pages themselves.
            let _ = self.rx.take_responses();
            std::thread::sleep(Duration::from_millis(20));
            for &(_, p) in &self.rx_pages {
                let mut b = vec![0u8; 1514];
                self.guest.mem.read(p * 4096, &mut b).unwrap();
                if b.iter().any(|&x| x != 0) && want(&b) {
                    return Some(b);
                }
            }
        }
        None
    }
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&HOST_IP);
    f
}

fn udp_to(host_mac: &[u8], payload_len: usize) -> Vec<u8> {
    let mut f = host_mac[..6].to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 8 + payload_len;
    let mut iph = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    iph.extend_from_slice(&GUEST_IP);
    iph.extend_from_slice(&HOST_IP);
    let c = netif::ipv4_header_checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    let ulen = 8 + payload_len;
    // Port 9 (discard) is closed in the namespace: the kernel answers
    // ICMP port unreachable, but only to a datagram whose checksum is right.
    f.extend_from_slice(&[0x30, 0x39, 0, 9, (ulen >> 8) as u8, ulen as u8, 0xde, 0xad]);
    f.extend((0..payload_len).map(|i| i as u8));
    f
}

#[test]
fn frames_cross_a_tap_in_a_netns_both_ways() {
    let why = if unsafe_is_root() {
        None
    } else {
        Some("not root".to_owned())
    }
    .or_else(|| {
        (!std::path::Path::new("/dev/net/tun").exists()).then(|| "no /dev/net/tun".to_owned())
    })
    .or_else(|| ip(&["-V"]).err());
    if let Some(why) = why {
        if ci() {
            panic!("netback test cannot run ({why}) and CI=true");
        }
        eprintln!("netback: skipped: {why}");
        return;
    }
    let pid = std::process::id();
    let ns = Netns(format!("xkvm-nb-{pid}"));
    ip(&["netns", "add", &ns.0]).unwrap();
    let ifname = format!("xkvmtap{}", pid % 100_000);

    let guest = TestGuest::new(4 << 20);
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
        ifname: Some(ifname.clone()),
        mtu: 1500,
        bridge: None,
        rate: None,
    };
    let mut dev = NetDevice::create(&store, env, 1, spec).unwrap();
    assert_eq!(dev.state(), XenbusState::InitWait);
    ip(&["link", "set", &ifname, "netns", &ns.0]).unwrap();
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", "10.99.0.1/24", "dev", &ifname],
        vec!["link", "set", &ifname, "up"],
    ] {
        let mut a = vec!["netns", "exec", &ns.0, "ip"];
        a.extend(args);
        ip(&a).unwrap();
    }

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
        ("state", "4"),
    ] {
        store.write(&p.frontend_key(k), v.as_bytes()).unwrap();
    }
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Connected);
    let mut f = Front {
        guest,
        tx,
        rx,
        rx_pages: Vec::new(),
        next_page: base + 2,
        next_gref: 10,
    };
    f.post_rx();

    f.send(&arp_request(), 2048, 0);
    let reply = f
        .receive(|b| b[12..14] == [0x08, 0x06] && b[20..22] == [0, 2])
        .expect("ARP reply from the namespace's kernel");
    assert_eq!(&reply[0..6], &GUEST_MAC, "addressed to the guest");
    assert_eq!(&reply[28..32], &HOST_IP);
    let host_mac = reply[6..12].to_vec();

    // UDP in two slots, checksum blank (garbage in the field).
    f.send(&udp_to(&host_mac, 300), 200, netif::NETTXF_CSUM_BLANK);
    let icmp = f
        .receive(|b| b[12..14] == [0x08, 0x00] && b[23] == 1 && b[34] == 3 && b[35] == 3)
        .expect("ICMP port unreachable: the datagram arrived with a valid checksum");
    assert_eq!(&icmp[26..30], &HOST_IP);
    let tx_rsps = f.tx.take_responses();
    assert!(!tx_rsps.is_empty(), "TX responses posted");
    dev.destroy();
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
