//! The network backend against a real TAP device in a network namespace
//! the test creates (`ip netns add`; needs root, `/dev/net/tun` and
//! iproute2, else it skips with the reason, or fails under CI=true). An
//! in-process netfront sends an ARP request (answered by the namespace's
//! kernel) and a UDP datagram split over two TX slots with its checksum left
//! blank (answered with ICMP port unreachable only if the backend completed
//! the checksum); the answers arrive through the RX ring. A 6000-byte ping
//! (jumbo MTU on the TAP) crosses three TX slots, and its reply comes back
//! over two RX slots chained with `NETRXF_more_data`.
//!
//! GSO: the namespace forwards a TCP frame the guest sends to 10.99.0.3
//! straight back to the guest. Sent as one 4000-byte GSO frame, it comes
//! back as four checksummed segments to a frontend without GSO, and whole,
//! with its GSO extra-info slot and a partial checksum, to one with
//! `feature-gso-tcpv4`. Hotplug: a `script=` runs online/offline with
//! libxl's arguments and environment; a failing one fails the device;
//! without a script the TAP joins `bridge=`.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xen_backends::blkback::conn::RingEnv;
use xen_backends::netback::hotplug::NetHotplug;
use xen_backends::netback::{NetDevice, NetSpec};
use xen_backends::netif::{self, ExtraInfo, TxRequest};
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
    guest: Arc<TestGuest>,
    /// This queue's event channel.
    port: u32,
    tx: FrontRing,
    rx: FrontRing,
    /// Guest-physical address of the RX ring (responses are read by hand:
    /// `FrontRing::take_responses` knows blkif's layout only).
    rx_base: u64,
    rx_cons: u32,
    /// Posted RX buffers by request id: `(gref, page)`.
    rx_pages: Vec<(u32, u64)>,
    /// Ids of posted RX buffers in ring order: a GSO extra-info response
    /// uses up the buffer at its ring position without naming it.
    posted: std::collections::VecDeque<u16>,
    /// The frame being reassembled from `NETRXF_more_data` slots.
    partial: Rx,
    /// The next response is an extra-info slot.
    extra_next: bool,
    /// The last data slot said `NETRXF_more_data`.
    data_more: bool,
    next_page: u64,
    next_gref: u32,
}

/// One received frame, how many RX slots it took (extras included), its
/// first slot's flags and its GSO extra info.
#[derive(Default)]
struct Rx {
    frame: Vec<u8>,
    slots: usize,
    flags: u16,
    gso: Option<ExtraInfo>,
}

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
            let page = self.page();
            self.rx_pages.push(page);
            self.repost(i);
        }
        self.rx.push_requests();
        self.guest.evtchn.kick(self.port);
    }

    /// Offers buffer `id` (its page, zeroed) to the backend again.
    fn repost(&mut self, id: u16) {
        let (g, p) = self.rx_pages[usize::from(id)];
        self.guest.mem.write(p * 4096, &[0u8; 4096]).unwrap();
        let mut req = [0u8; 8];
        req[0..2].copy_from_slice(&id.to_le_bytes());
        req[4..8].copy_from_slice(&g.to_le_bytes());
        self.rx.put_request(&req);
        self.posted.push_back(id);
    }

    /// Consumes RX responses, reassembling frames; reposts each buffer.
    fn take_frames(&mut self) -> Vec<Rx> {
        let mut out = Vec::new();
        let prod = self
            .guest
            .mem
            .atomic_u32(self.rx_base + 8)
            .unwrap()
            .load(std::sync::atomic::Ordering::Acquire);
        while self.rx_cons != prod {
            let mut r = [0u8; 8];
            let slot = u64::from(self.rx_cons & (self.rx.size() - 1));
            self.guest
                .mem
                .read(self.rx_base + 64 + slot * 8, &mut r)
                .unwrap();
            self.rx_cons = self.rx_cons.wrapping_add(1);
            let posted = self.posted.pop_front().unwrap();
            self.partial.slots += 1;
            if self.extra_next {
                let e = ExtraInfo::parse(&r).unwrap();
                self.extra_next = e.flags & netif::XEN_NETIF_EXTRA_FLAG_MORE != 0;
                if e.kind == netif::XEN_NETIF_EXTRA_TYPE_GSO {
                    self.partial.gso = Some(e);
                }
                self.repost(posted);
                if !self.extra_next && !self.data_more {
                    out.push(std::mem::take(&mut self.partial));
                }
                continue;
            }
            let id = u16::from_le_bytes([r[0], r[1]]);
            assert_eq!(id, posted, "responses in request order");
            let offset = u64::from(u16::from_le_bytes([r[2], r[3]]));
            let flags = u16::from_le_bytes([r[4], r[5]]);
            let status = i16::from_le_bytes([r[6], r[7]]);
            assert!(status > 0, "RX slot {id} answered with error {status}");
            let (_, p) = self.rx_pages[usize::from(id)];
            let mut b = vec![0u8; status as usize];
            self.guest.mem.read(p * 4096 + offset, &mut b).unwrap();
            if self.partial.frame.is_empty() {
                self.partial.flags = flags;
                self.extra_next = flags & netif::NETRXF_EXTRA_INFO != 0;
            }
            self.partial.frame.extend_from_slice(&b);
            self.repost(id);
            self.data_more = flags & netif::NETRXF_MORE_DATA != 0;
            if !self.data_more && !self.extra_next {
                out.push(std::mem::take(&mut self.partial));
            }
        }
        self.rx.push_requests();
        self.guest.evtchn.kick(self.port);
        out
    }

    /// Sends `frame` split into slots of at most `chunk` bytes.
    fn send(&mut self, frame: &[u8], chunk: usize, flags: u16) {
        self.send_with(frame, chunk, flags, None);
    }

    /// Sends `frame`, with an extra-info slot after the first when given.
    fn send_with(&mut self, frame: &[u8], chunk: usize, flags: u16, extra: Option<ExtraInfo>) {
        let parts: Vec<&[u8]> = frame.chunks(chunk).collect();
        for (k, part) in parts.iter().enumerate() {
            let (g, p) = self.page();
            self.guest.mem.write(p * 4096 + 100, part).unwrap();
            let mut f = if k == 0 { flags } else { 0 };
            if k == 0 && extra.is_some() {
                f |= netif::NETTXF_EXTRA_INFO;
            }
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
            if k == 0 {
                if let Some(e) = extra {
                    let mut slot = [0u8; 12];
                    slot[..8].copy_from_slice(&e.encode());
                    self.tx.put_request(&slot);
                }
            }
        }
        self.tx.push_requests();
        self.guest.evtchn.kick(self.port);
    }

    /// Waits (up to 10 s) for a received frame `want` accepts.
    fn receive(&mut self, want: impl Fn(&[u8]) -> bool) -> Option<Rx> {
        self.receive_within(Duration::from_secs(10), want)
    }

    fn receive_within(&mut self, t: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Rx> {
        let end = Instant::now() + t;
        while Instant::now() < end {
            if let Some(rx) = self.take_frames().into_iter().find(|r| want(&r.frame)) {
                return Some(rx);
            }
            std::thread::sleep(Duration::from_millis(20));
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

/// An IPv4 frame from the guest to the host: Ethernet header, an IP header
/// (protocol `proto`, id `id`, right checksum), then `body`.
fn ipv4_to(host_mac: &[u8], proto: u8, id: u8, body: &[u8]) -> Vec<u8> {
    let mut f = host_mac[..6].to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + body.len();
    let mut iph = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        id,
        0,
        0,
        64,
        proto,
        0,
        0,
    ];
    iph.extend_from_slice(&GUEST_IP);
    iph.extend_from_slice(&HOST_IP);
    let c = netif::ipv4_header_checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(body);
    f
}

fn udp_to(host_mac: &[u8], payload_len: usize) -> Vec<u8> {
    let ulen = 8 + payload_len;
    // Port 9 (discard) is closed in the namespace: the kernel answers
    // ICMP port unreachable, but only to a datagram whose checksum is right.
    let mut udp = vec![0x30, 0x39, 0, 9, (ulen >> 8) as u8, ulen as u8, 0xde, 0xad];
    udp.extend((0..payload_len).map(|i| i as u8));
    ipv4_to(host_mac, 17, 1, &udp)
}

/// An ICMP echo request from the guest with `payload_len` bytes of data.
fn ping_to(host_mac: &[u8], payload_len: usize) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend((0..payload_len).map(|i| (i * 7) as u8));
    let c = netif::ipv4_header_checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_to(host_mac, 1, 2, &icmp)
}

#[test]
fn frames_cross_a_tap_in_a_netns_both_ways() {
    if skip() {
        return;
    }
    // Jumbo frames, so that a frame larger than a page crosses the TAP in
    // both directions without IP fragmentation.
    let (_ns, dev, mut f) = rig("a", "9000", &[]);

    f.send(&arp_request(), 2048, 0);
    let reply = f
        .receive(|b| b[12..14] == [0x08, 0x06] && b[20..22] == [0, 2])
        .expect("ARP reply from the namespace's kernel")
        .frame;
    assert_eq!(&reply[0..6], &GUEST_MAC, "addressed to the guest");
    assert_eq!(&reply[28..32], &HOST_IP);
    let host_mac = reply[6..12].to_vec();

    // UDP in two slots, checksum blank (garbage in the field).
    f.send(&udp_to(&host_mac, 300), 200, netif::NETTXF_CSUM_BLANK);
    let icmp = f
        .receive(|b| b[12..14] == [0x08, 0x00] && b[23] == 1 && b[34] == 3 && b[35] == 3)
        .expect("ICMP port unreachable: the datagram arrived with a valid checksum")
        .frame;
    assert_eq!(&icmp[26..30], &HOST_IP);

    // A 6042-byte echo request over three TX slots; the 6042-byte reply
    // needs two RX slots (feature-sg, NETRXF_more_data).
    let ping = ping_to(&host_mac, 6000);
    f.send(&ping, 2048, 0);
    let pong = f
        .receive(|b| b[12..14] == [0x08, 0x00] && b[23] == 1 && b[34] == 0)
        .expect("ICMP echo reply larger than a page");
    assert_eq!(pong.frame.len(), ping.len(), "whole reply reassembled");
    assert_eq!(pong.slots, 2, "spread over two RX slots");
    assert_eq!(&pong.frame[42..], &ping[42..], "echoed payload intact");
    let tx_rsps = f.tx.take_responses();
    assert!(!tx_rsps.is_empty(), "TX responses posted");
    dev.destroy();
}

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// A TAP for a connected backend, moved into a fresh namespace where it has
/// 10.99.0.1/24, `mtu`, [`HOST_MAC`] and the guest as a permanent
/// neighbour; the in-process frontend connects with `feature-sg` plus
/// `front_keys` and posts 16 RX buffers.
fn rig(tag: &str, mtu: &str, front_keys: &[(&str, &str)]) -> (Netns, NetDevice, Front) {
    let (ns, dev, mut fronts, _) = rig_queues(tag, mtu, 1, front_keys);
    (ns, dev, fronts.remove(0))
}

/// [`rig`] with `queues` queues (`multi-queue-num-queues` and `queue-N/`
/// keys when more than one), one [`Front`] each, on ports 5, 6, ...
fn rig_queues(
    tag: &str,
    mtu: &str,
    queues: u32,
    front_keys: &[(&str, &str)],
) -> (Netns, NetDevice, Vec<Front>, xenstore::Engine) {
    let pid = std::process::id();
    let ns = Netns(format!("xkvm-nb{tag}-{pid}"));
    ip(&["netns", "add", &ns.0]).unwrap();
    let ifname = format!("xkvmt{tag}{}", pid % 100_000);
    let guest = Arc::new(TestGuest::new(4 << 20));
    let (store, env) = test_env(&guest);
    let mut dev = NetDevice::create(&store, env, 1, spec(&ifname, None)).unwrap();
    assert_eq!(dev.state(), XenbusState::InitWait);
    ip(&["link", "set", &ifname, "netns", &ns.0]).unwrap();
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["addr", "add", "10.99.0.1/24", "dev", &ifname],
        vec!["link", "set", &ifname, "address", "02:00:00:00:00:01"],
        vec!["link", "set", &ifname, "mtu", mtu],
        vec!["link", "set", &ifname, "up"],
        vec![
            "neigh",
            "add",
            "10.99.0.2",
            "lladdr",
            "00:16:3e:00:00:01",
            "dev",
            &ifname,
            "nud",
            "permanent",
        ],
    ] {
        let mut a = vec!["netns", "exec", &ns.0, "ip"];
        a.extend(args);
        ip(&a).unwrap();
    }
    let p = dev.paths().clone();
    let top = [("request-rx-copy", "1"), ("feature-sg", "1")];
    for (k, v) in top.iter().chain(front_keys) {
        store.write(&p.frontend_key(k), v.as_bytes()).unwrap();
    }
    if queues > 1 {
        let n = queues.to_string();
        store
            .write(&p.frontend_key("multi-queue-num-queues"), n.as_bytes())
            .unwrap();
    }
    let base = TestGuest::FIRST_FREE_PAGE;
    let mut fronts = Vec::new();
    for q in 0..queues {
        let (txp, rxp) = (base + 2 * u64::from(q), base + 2 * u64::from(q) + 1);
        let (txg, rxg) = (8 + 2 * q, 9 + 2 * q);
        guest.grant(txg, 0, txp, false);
        guest.grant(rxg, 0, rxp, false);
        let dir = if queues > 1 {
            format!("queue-{q}/")
        } else {
            String::new()
        };
        let port = 5 + q;
        for (k, v) in [
            ("tx-ring-ref", txg.to_string()),
            ("rx-ring-ref", rxg.to_string()),
            ("event-channel", port.to_string()),
        ] {
            store
                .write(&p.frontend_key(&format!("{dir}{k}")), v.as_bytes())
                .unwrap();
        }
        fronts.push(Front {
            guest: guest.clone(),
            port,
            tx: FrontRing::init(guest.mem.clone(), txp * 4096, 1, netif::TX_SLOT),
            rx: FrontRing::init(guest.mem.clone(), rxp * 4096, 1, netif::RX_SLOT),
            rx_base: rxp * 4096,
            rx_cons: 0,
            rx_pages: Vec::new(),
            posted: Default::default(),
            partial: Rx::default(),
            extra_next: false,
            data_more: false,
            next_page: base + 16 + 300 * u64::from(q),
            next_gref: 100 + 300 * q,
        });
    }
    store.write(&p.frontend_key("state"), b"4").unwrap();
    dev.frontend_changed();
    assert_eq!(dev.state(), XenbusState::Connected);
    for f in &mut fronts {
        f.post_rx();
    }
    (ns, dev, fronts, store)
}

/// True (with the reason printed) when TAP tests cannot run here; under
/// CI=true that is a failure instead.
fn skip() -> bool {
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
        return true;
    }
    false
}

fn test_env(guest: &TestGuest) -> (xenstore::Engine, RingEnv) {
    let store = xenstore::Engine::default();
    store.introduce_domain(1);
    let env = RingEnv {
        mem: guest.mem.clone(),
        grants: guest.grants.clone(),
        evtchn: guest.evtchn.clone(),
        backend_domid: 0,
        on_fatal: Arc::new(|| {}),
    };
    (store, env)
}

fn spec(ifname: &str, bridge: Option<&str>) -> NetSpec {
    NetSpec {
        devid: 0,
        mac: "00:16:3e:00:00:01".into(),
        ifname: Some(ifname.to_owned()),
        mtu: 1500,
        bridge: bridge.map(str::to_owned),
        rate: None,
    }
}

/// A host interface deleted when the test ends.
struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.0]);
    }
}

#[test]
fn vif_script_runs_online_and_offline_with_libxls_environment() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = dir.path().join("vif-test");
    // Records its arguments and environment, and brings the TAP up as a
    // real vif script would (so it must exist when the script runs).
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$1 $2 script=$script type=$XENBUS_TYPE path=$XENBUS_PATH \
             base=$XENBUS_BASE_PATH netdev=[$netdev] vif=$vif\" >> {}\n\
             [ \"$1\" = online ] && ip link set dev \"$vif\" up\n\
             exit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ifname = format!("xkscr{}", std::process::id() % 100_000);
    let guest = TestGuest::new(1 << 20);
    let (store, env) = test_env(&guest);
    let hp = NetHotplug {
        script: Some(script.display().to_string()),
        ..Default::default()
    };
    let dev = NetDevice::create_with_hotplug(&store, env, 1, spec(&ifname, None), &hp).unwrap();

    let s = script.display();
    let online = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        online.trim(),
        format!(
            "online type_if=vif script={s} type=vif path=backend/vif/1/0 \
             base=backend netdev=[] vif={ifname}"
        )
    );
    let flags = std::fs::read_to_string(format!("/sys/class/net/{ifname}/flags")).unwrap();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "the script brought the TAP up");
    let node = store
        .read(&dev.paths().backend_key("script"))
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    assert_eq!(
        node.ok().as_deref(),
        Some(&*s.to_string()),
        "backend's script node"
    );

    dev.destroy();
    let all = std::fs::read_to_string(&log).unwrap();
    assert!(
        all.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("offline type_if=vif ")),
        "offline run on destroy: {all}"
    );
}

#[test]
fn a_failing_vif_script_fails_the_device() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("vif-fail");
    std::fs::write(&script, "#!/bin/sh\necho no bridge here >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ifname = format!("xkfail{}", std::process::id() % 100_000);
    let guest = TestGuest::new(1 << 20);
    let (store, env) = test_env(&guest);
    let hp = NetHotplug {
        script: Some(script.display().to_string()),
        ..Default::default()
    };
    let err = NetDevice::create_with_hotplug(&store, env, 1, spec(&ifname, None), &hp)
        .err()
        .expect("device refused");
    assert!(err.contains("no bridge here"), "{err}");
    assert!(
        store.read("/local/domain/0/backend/vif/1/0/state").is_err(),
        "backend directory removed"
    );
}

#[test]
fn without_a_script_the_tap_joins_the_bridge() {
    if skip() {
        return;
    }
    let pid = std::process::id() % 100_000;
    let bridge = Link(format!("xkbr{pid}"));
    ip(&["link", "add", &bridge.0, "type", "bridge"]).unwrap();
    let ifname = format!("xkbrt{pid}");
    let guest = TestGuest::new(1 << 20);
    let (store, env) = test_env(&guest);
    let dev = NetDevice::create(&store, env, 1, spec(&ifname, Some(&bridge.0))).unwrap();
    let master = std::fs::read_link(format!("/sys/class/net/{ifname}/master")).unwrap();
    assert_eq!(master.file_name().unwrap().to_str(), Some(&*bridge.0));
    dev.destroy();
}

/// A TCP segment (ACK|PSH, `payload` bytes, seq 1000) from the guest to
/// 10.99.0.3, an address the namespace routes straight back out of the TAP
/// to the guest's MAC.
fn tcp_through(payload: usize) -> Vec<u8> {
    let mut f = HOST_MAC.to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 20 + payload;
    let mut iph = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        3,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    iph.extend_from_slice(&GUEST_IP);
    iph.extend_from_slice(&[10, 99, 0, 3]);
    let c = netif::ipv4_header_checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    let mut tcp = vec![0x9c, 0x40, 0x13, 0x89];
    tcp.extend_from_slice(&1000u32.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0xee, 0xee, 0, 0]);
    f.extend_from_slice(&tcp);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    f
}

/// [`rig`] with MTU 1500, forwarding on, and 10.99.0.3 a static neighbour
/// at the guest's MAC, so what the guest sends there comes back.
fn forward_rig(tag: &str, front_keys: &[(&str, &str)]) -> (Netns, NetDevice, Front) {
    let (ns, dev, f) = rig(tag, "1500", front_keys);
    let ifname = dev.ifname().to_owned();
    let mac = "00:16:3e:00:00:01";
    for args in [
        vec![
            "ip",
            "neigh",
            "add",
            "10.99.0.3",
            "lladdr",
            mac,
            "dev",
            &ifname,
            "nud",
            "permanent",
        ],
        vec!["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
    ] {
        let mut a = vec!["netns", "exec", &ns.0];
        a.extend(args);
        ip(&a).unwrap();
    }
    (ns, dev, f)
}

fn is_forwarded_tcp(b: &[u8]) -> bool {
    b.len() > 54 && b[12..14] == [0x08, 0x00] && b[23] == 6 && b[30..34] == [10, 99, 0, 3]
}

/// The TCP checksum of an IPv4 frame verifies (sums to zero).
fn tcp_checksum_ok(b: &[u8]) -> bool {
    let total = usize::from(u16::from_be_bytes([b[16], b[17]]));
    let l4 = &b[34..14 + total];
    let mut v = b[26..34].to_vec();
    v.extend_from_slice(&[0, 6]);
    v.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    v.extend_from_slice(l4);
    netif::ipv4_header_checksum(&v) == 0
}

#[test]
fn gso_frames_from_the_guest_are_segmented_by_the_host() {
    if skip() {
        return;
    }
    // The frontend takes neither GSO nor partial checksums: what comes
    // back has been segmented and checksummed by the kernel, which it can
    // only do right from a correct virtio_net_hdr.
    let (_ns, dev, mut f) = forward_rig("g", &[("feature-no-csum-offload", "1")]);
    let sent = tcp_through(4000);
    let gso = ExtraInfo::gso(netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000);
    f.send_with(&sent, 2048, netif::NETTXF_CSUM_BLANK, Some(gso));
    let mut segs = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while segs.len() < 4 && Instant::now() < end {
        segs.extend(
            f.take_frames()
                .into_iter()
                .filter(|r| is_forwarded_tcp(&r.frame)),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(segs.len(), 4, "4000 bytes at gso_size 1000");
    for (k, s) in segs.iter().enumerate() {
        let b = &s.frame;
        assert_eq!(b.len(), 14 + 40 + 1000, "segment {k} size");
        let seq = u32::from_be_bytes([b[38], b[39], b[40], b[41]]);
        assert_eq!(seq, 1000 + 1000 * k as u32, "segment {k} sequence");
        assert!(tcp_checksum_ok(b), "segment {k} TCP checksum");
        assert_eq!(&b[54..], &sent[54 + 1000 * k..54 + 1000 * (k + 1)]);
        assert!(s.gso.is_none() && s.flags & netif::NETRXF_CSUM_BLANK == 0);
    }
    dev.destroy();
}

#[test]
fn gso_headers_spread_over_small_slots_are_still_fixed_up() {
    if skip() {
        return;
    }
    // The backend copies only a GSO frame's headers (to fix the partial
    // checksum up) and hands the rest to the TAP from the guest's pages:
    // headers split over 30-byte slots, and a payload over 136 slots, must
    // come out the same as from one slot.
    let (_ns, dev, mut f) = forward_rig("s", &[("feature-no-csum-offload", "1")]);
    let mut sent = tcp_through(4000);
    // Garbage where the pseudo-header sum belongs: the backend rewrites it.
    sent[50..52].copy_from_slice(&[0xde, 0xad]);
    let gso = ExtraInfo::gso(netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000);
    f.send_with(&sent, 30, netif::NETTXF_CSUM_BLANK, Some(gso));
    let mut segs = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while segs.len() < 4 && Instant::now() < end {
        segs.extend(
            f.take_frames()
                .into_iter()
                .filter(|r| is_forwarded_tcp(&r.frame)),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(segs.len(), 4, "4000 bytes at gso_size 1000");
    for (k, s) in segs.iter().enumerate() {
        let b = &s.frame;
        let seq = u32::from_be_bytes([b[38], b[39], b[40], b[41]]);
        assert_eq!(seq, 1000 + 1000 * k as u32, "segment {k} sequence");
        assert!(tcp_checksum_ok(b), "segment {k} TCP checksum");
        assert_eq!(&b[54..], &sent[54 + 1000 * k..54 + 1000 * (k + 1)]);
    }
    let st = tx_statuses(&mut f);
    assert!(
        st.iter()
            .all(|&s| s == netif::NETIF_RSP_OKAY || s == netif::NETIF_RSP_NULL),
        "{st:?}"
    );
    dev.destroy();
}

#[test]
fn gso_frames_reach_a_gso_frontend_whole() {
    if skip() {
        return;
    }
    let (_ns, dev, mut f) = forward_rig("w", &[("feature-gso-tcpv4", "1")]);
    let sent = tcp_through(6000);
    let gso = ExtraInfo::gso(netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000);
    f.send_with(&sent, 2048, netif::NETTXF_CSUM_BLANK, Some(gso));
    let got = f
        .receive(is_forwarded_tcp)
        .expect("the forwarded TCP frame");
    assert_eq!(got.frame.len(), sent.len(), "one frame, not segments");
    assert_eq!(got.gso, Some(gso), "GSO extra info: TCPv4, size 1000");
    assert_ne!(got.flags & netif::NETRXF_EXTRA_INFO, 0);
    assert_ne!(got.flags & netif::NETRXF_CSUM_BLANK, 0, "partial checksum");
    assert_eq!(got.slots, 3, "two data slots and the extra-info slot");
    assert_eq!(&got.frame[54..], &sent[54..], "payload intact");
    dev.destroy();
}

/// A TCP SYN from the guest's `sport` to the namespace's closed port 7
/// (answered with RST), its checksum left to the backend.
fn syn_to_closed_port(sport: u16) -> Vec<u8> {
    let mut f = HOST_MAC.to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut iph = vec![0x45, 0, 0, 40, 0, 4, 0x40, 0, 64, 6, 0, 0];
    iph.extend_from_slice(&GUEST_IP);
    iph.extend_from_slice(&HOST_IP);
    let c = netif::ipv4_header_checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[
        0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

#[test]
fn two_queues_carry_frames_both_ways() {
    if skip() {
        return;
    }
    let (_ns, dev, mut fronts, store) = rig_queues("q", "1500", 2, &[]);
    let max = store
        .read(&dev.paths().backend_key("multi-queue-max-queues"))
        .unwrap();
    let max: u32 = String::from_utf8(max).unwrap().parse().unwrap();
    assert!(max >= 2, "offers {max} queues");
    // Sixteen flows, alternating queues; each SYN is answered with a RST.
    // The TAP steers a flow's answers to the queue it came from (or
    // spreads them by hash), so both RX rings see some.
    let sports: Vec<u16> = (40000..40016).collect();
    for (i, &sp) in sports.iter().enumerate() {
        fronts[i % 2].send(&syn_to_closed_port(sp), 2048, netif::NETTXF_CSUM_BLANK);
    }
    let mut got: Vec<Vec<u16>> = vec![Vec::new(), Vec::new()];
    let end = Instant::now() + Duration::from_secs(10);
    while got.iter().map(Vec::len).sum::<usize>() < sports.len() && Instant::now() < end {
        for (q, f) in fronts.iter_mut().enumerate() {
            for r in f.take_frames() {
                let b = &r.frame;
                if b.len() >= 54 && b[12..14] == [0x08, 0x00] && b[23] == 6 && b[47] & 4 != 0 {
                    got[q].push(u16::from_be_bytes([b[36], b[37]]));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut all: Vec<u16> = got.concat();
    all.sort_unstable();
    assert_eq!(all, sports, "every SYN answered (so every TX queue sent)");
    assert!(
        got.iter().all(|g| !g.is_empty()),
        "both RX queues used: {got:?}"
    );
    for f in &mut fronts {
        assert!(
            !f.tx.take_responses().is_empty(),
            "TX responses on each queue"
        );
    }
    dev.destroy();
}

/// TX responses' statuses. `FrontRing::take_responses` reads blkif's
/// layout; netif's `{ u16 id; i16 status; }` lands in the low 32 bits of
/// what it calls the id.
fn tx_statuses(f: &mut Front) -> Vec<i16> {
    f.tx.take_responses()
        .into_iter()
        .map(|(id, _, _)| (id >> 16) as u16 as i16)
        .collect()
}

#[test]
fn bad_tx_slots_are_answered_with_errors_and_the_vif_keeps_working() {
    if skip() {
        return;
    }
    let (_ns, dev, mut f) = rig("h", "1500", &[]);
    // An ungranted reference, then a slot running past its page.
    for (gref, offset) in [(4000u32, 0u16), (100, 4000)] {
        f.tx.put_request(
            &TxRequest {
                gref,
                offset,
                flags: 0,
                id: 1,
                size: 200,
            }
            .encode(),
        );
        f.tx.push_requests();
        f.guest.evtchn.kick(f.port);
        let end = Instant::now() + Duration::from_secs(5);
        let mut st = Vec::new();
        while st.is_empty() && Instant::now() < end {
            st = tx_statuses(&mut f);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            st,
            vec![netif::NETIF_RSP_ERROR],
            "gref {gref} offset {offset}"
        );
    }
    // A GSO extra on a frame that is not TCP.
    let gso = ExtraInfo::gso(netif::XEN_NETIF_GSO_TYPE_TCPV4, 1000);
    f.send_with(&arp_request(), 2048, 0, Some(gso));
    let end = Instant::now() + Duration::from_secs(5);
    let mut st = Vec::new();
    while st.len() < 2 && Instant::now() < end {
        st.extend(tx_statuses(&mut f));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(st, vec![netif::NETIF_RSP_ERROR, netif::NETIF_RSP_NULL]);
    f.send(&arp_request(), 2048, 0);
    f.receive(|b| b[12..14] == [0x08, 0x06] && b[20..22] == [0, 2])
        .expect("ARP still answered");
    dev.destroy();
}

#[test]
fn without_feature_sg_frames_over_a_page_are_dropped() {
    if skip() {
        return;
    }
    let (_ns, dev, mut f) = rig("n", "9000", &[("feature-sg", "0")]);
    f.send(&ping_to(&HOST_MAC, 6000), 2048, 0);
    let big = f.receive_within(Duration::from_secs(2), |b| {
        b[12..14] == [0x08, 0x00] && b[23] == 1 && b[34] == 0
    });
    assert!(big.is_none(), "a 6042-byte reply needs feature-sg");
    f.send(&ping_to(&HOST_MAC, 1000), 2048, 0);
    let small = f
        .receive(|b| b[12..14] == [0x08, 0x00] && b[23] == 1 && b[34] == 0)
        .expect("a reply that fits a page still arrives");
    assert_eq!(small.slots, 1);
    dev.destroy();
}

/// `fd00::2` (guest) → `fd00::1` (namespace) TCP SYN to closed port 7.
fn syn6_to_closed_port() -> Vec<u8> {
    let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut f = HOST_MAC.to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let mut tcp = vec![
        0x9c, 0x41, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];
    let c = tcp6_sum(&src, &dst, &tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&tcp);
    f
}

/// The folded one's complement over the IPv6 pseudo header and `l4`.
fn tcp6_sum(src: &[u8], dst: &[u8], l4: &[u8]) -> u16 {
    let mut v = src.to_vec();
    v.extend_from_slice(dst);
    v.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 6]);
    v.extend_from_slice(l4);
    netif::ipv4_header_checksum(&v)
}

#[test]
fn ipv6_partial_checksums_are_completed_for_frontends_that_need_it() {
    if skip() {
        return;
    }
    // The namespace's TCP/IPv6 RST leaves its checksum partial for the
    // TAP (which offers checksum offload); this frontend did not write
    // feature-ipv6-csum-offload, so the backend must finish it.
    let (ns, dev, mut f) = rig("6", "1500", &[]);
    let ifname = dev.ifname().to_owned();
    for args in [
        vec!["addr", "add", "fd00::1/64", "dev", &ifname, "nodad"],
        vec![
            "neigh",
            "add",
            "fd00::2",
            "lladdr",
            "00:16:3e:00:00:01",
            "dev",
            &ifname,
            "nud",
            "permanent",
        ],
    ] {
        let mut a = vec!["netns", "exec", &ns.0, "ip"];
        a.extend(args);
        ip(&a).unwrap();
    }
    f.send(&syn6_to_closed_port(), 2048, 0);
    let rst = f
        .receive(|b| b.len() >= 74 && b[12..14] == [0x86, 0xdd] && b[20] == 6 && b[67] & 4 != 0)
        .expect("TCP RST over IPv6");
    let b = &rst.frame;
    assert_eq!(
        tcp6_sum(&b[22..38], &b[38..54], &b[54..]),
        0,
        "checksum complete"
    );
    assert_eq!(rst.flags & netif::NETRXF_CSUM_BLANK, 0);
    dev.destroy();
}

#[test]
fn an_existing_single_queue_tap_is_used_with_one_queue() {
    if skip() {
        return;
    }
    let tap = Link(format!("xkper{}", std::process::id() % 100_000));
    ip(&["tuntap", "add", "dev", &tap.0, "mode", "tap"]).unwrap();
    let guest = TestGuest::new(1 << 20);
    let (store, env) = test_env(&guest);
    let dev = NetDevice::create(&store, env, 1, spec(&tap.0, None)).unwrap();
    let max = store
        .read(&dev.paths().backend_key("multi-queue-max-queues"))
        .unwrap();
    assert_eq!(max, b"1");
    dev.destroy();
}

#[test]
fn a_frame_published_in_two_steps_waits_for_its_last_slot() {
    if skip() {
        return;
    }
    let (_ns, dev, mut f) = rig("p", "1500", &[]);
    let arp = arp_request();
    // The first slot says more data follows; the frontend publishes the
    // second one only later.
    let (g0, p0) = f.page();
    let (g1, p1) = f.page();
    f.guest.mem.write(p0 * 4096, &arp[..20]).unwrap();
    f.guest.mem.write(p1 * 4096, &arp[20..]).unwrap();
    let slot = |gref, flags, id, size: usize| {
        TxRequest {
            gref,
            offset: 0,
            flags,
            id,
            size: size as u16,
        }
        .encode()
    };
    f.tx.put_request(&slot(g0, netif::NETTXF_MORE_DATA, 0, arp.len()));
    f.tx.push_requests();
    f.guest.evtchn.kick(f.port);
    std::thread::sleep(Duration::from_millis(200));
    assert!(tx_statuses(&mut f).is_empty(), "no answer for half a frame");
    f.tx.put_request(&slot(g1, 0, 1, arp.len() - 20));
    f.tx.push_requests();
    f.guest.evtchn.kick(f.port);
    f.receive(|b| b[12..14] == [0x08, 0x06] && b[20..22] == [0, 2])
        .expect("the ARP request arrived whole and was answered");
    dev.destroy();
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
