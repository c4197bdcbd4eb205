//! The network backend (`vif`): one [`NetDevice`] per `vif=` entry, a TAP
//! device on the host, and the frontend's TX and RX rings with copy
//! semantics (`feature-rx-copy`; the backend copies through grants, as
//! netback's grant-copy path). TX frames may span several slots
//! (`NETTXF_more_data`) and carry extra-info slots, which are answered
//! `NETIF_RSP_NULL`; frames sent with `NETTXF_csum_blank` get their TCP/UDP
//! checksum filled in before they reach the TAP.
//!
//! `rate=` is applied to what the guest sends (netback's credit).
//!
//! Not done: GSO, multiple queues, running `script=`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xenstore::Engine;

use crate::blkback::conn::RingEnv;
use crate::evtchn::Notify;
use crate::grant::GrantSession;
use crate::netif::{self, TxRequest};
use crate::sring::BackRing;
use crate::xenbus::{self, DeviceKind, DevicePaths, XenbusState};

/// One `vif=` entry as the backend needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    pub devid: u32,
    /// `mac=` as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Host interface name (`vifname=`, default `vif<domid>.<devid>`).
    pub ifname: Option<String>,
    /// `mtu=` (default 1500).
    pub mtu: u32,
    /// `bridge=`, recorded in XenStore (the VMM does not run `script=`).
    pub bridge: Option<String>,
    /// `rate=` as libxl stores it: `(bytes per interval, interval in µs)`;
    /// limits what the guest sends, as netback's credit scheduler.
    pub rate: Option<(u64, u32)>,
}

/// netback's transmit credit: `bytes` every `interval`. A frame larger than
/// the whole credit may go once the credit is full (so it cannot stall
/// forever), as netback allows.
#[derive(Debug, Clone)]
pub struct Credit {
    bytes: u64,
    interval: Duration,
    left: u64,
    next: std::time::Instant,
}

impl Credit {
    pub fn new(bytes: u64, interval: Duration, now: std::time::Instant) -> Self {
        Self {
            bytes,
            interval,
            left: bytes,
            next: now + interval,
        }
    }

    /// Takes `len` bytes of credit at `now`, or says how long to wait.
    pub fn take(&mut self, len: u64, now: std::time::Instant) -> Result<(), Duration> {
        if now >= self.next {
            self.left = self.bytes;
            self.next = now + self.interval;
        }
        if len <= self.left || self.left == self.bytes {
            self.left = self.left.saturating_sub(len);
            Ok(())
        } else {
            Err(self.next - now)
        }
    }
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const POLL: Duration = Duration::from_millis(50);

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// Creates (or attaches to) TAP interface `name`.
pub fn open_tap(name: &str) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    let n = name.len().min(15);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req`
    // is laid out as (16-byte name, flags, padding to 40 bytes).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(f)
}

/// One virtual network interface.
pub struct NetDevice {
    store: Engine,
    env: RingEnv,
    spec: NetSpec,
    paths: DevicePaths,
    tap: Arc<File>,
    ifname: String,
    state: XenbusState,
    conn: Option<NetConn>,
}

struct NetConn {
    stop: Arc<AtomicBool>,
    bell: Arc<Bell>,
    threads: Vec<JoinHandle<()>>,
    grants: Arc<GrantSession>,
    ring_refs: Vec<u32>,
    ports: Vec<u32>,
}

#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }
    fn wait(&self, t: Duration) {
        let mut r = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        if !*r {
            r = self
                .cv
                .wait_timeout(r, t)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *r = false;
    }
}

impl NetDevice {
    /// Creates the TAP device and writes the device into XenStore.
    pub fn create(
        store: &Engine,
        env: RingEnv,
        frontend_domid: u16,
        spec: NetSpec,
    ) -> Result<Self, String> {
        let paths = DevicePaths::new(
            DeviceKind::Vif,
            frontend_domid,
            env.backend_domid,
            spec.devid,
        );
        let ifname = spec
            .ifname
            .clone()
            .unwrap_or_else(|| format!("vif{frontend_domid}.{}", spec.devid));
        let tap =
            open_tap(&ifname).map_err(|e| format!("vif {}: TAP {ifname}: {e}", spec.devid))?;
        let front = [
            ("handle", spec.devid.to_string()),
            ("mac", spec.mac.clone()),
            ("mtu", spec.mtu.to_string()),
        ];
        let mut back = vec![
            ("handle", spec.devid.to_string()),
            ("mac", spec.mac.clone()),
            ("mtu", spec.mtu.to_string()),
            ("type", "vif".to_owned()),
            ("vifname", ifname.clone()),
            ("feature-rx-copy", "1".to_owned()),
            ("feature-rx-flip", "0".to_owned()),
            ("feature-sg", "1".to_owned()),
            ("hotplug-status", "connected".to_owned()),
        ];
        if let Some(b) = &spec.bridge {
            back.push(("bridge", b.clone()));
        }
        if let Some((bytes, usecs)) = spec.rate {
            back.push(("rate", format!("{bytes},{usecs}")));
        }
        xenbus::add_device(store, &paths, &front, &back).map_err(|e| e.to_string())?;
        xenbus::set_backend_state(store, &paths, XenbusState::InitWait);
        Ok(Self {
            store: store.clone(),
            env,
            spec,
            paths,
            tap: Arc::new(tap),
            ifname,
            state: XenbusState::InitWait,
            conn: None,
        })
    }

    pub fn paths(&self) -> &DevicePaths {
        &self.paths
    }

    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The host interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    fn set_state(&mut self, s: XenbusState) {
        self.state = s;
        xenbus::set_backend_state(&self.store, &self.paths, s);
    }

    /// The xenbus rules (netback's `frontend_changed`).
    pub fn frontend_changed(&mut self) {
        match xenbus::frontend_state(&self.store, &self.paths) {
            XenbusState::Initialising => {
                if matches!(self.state, XenbusState::Closed | XenbusState::Closing) {
                    self.disconnect();
                    self.set_state(XenbusState::InitWait);
                }
            }
            XenbusState::Connected => {
                if matches!(self.state, XenbusState::Connected | XenbusState::Closing) {
                    return;
                }
                match self.connect() {
                    Ok(()) => self.set_state(XenbusState::Connected),
                    Err(e) => {
                        xenbus::dev_fatal(&self.store, &self.paths, &e);
                        self.state = XenbusState::Closing;
                    }
                }
            }
            XenbusState::Closing => {
                self.disconnect();
                if self.state != XenbusState::Closing {
                    self.set_state(XenbusState::Closing);
                }
            }
            XenbusState::Closed | XenbusState::Unknown => {
                self.disconnect();
                if self.state != XenbusState::Closed {
                    self.set_state(XenbusState::Closed);
                }
            }
            _ => {}
        }
    }

    fn front(&self, key: &str) -> Option<String> {
        xenbus::read_str(&self.store, &self.paths.frontend_key(key))
    }

    fn num(&self, key: &str) -> Result<u32, String> {
        self.front(key)
            .ok_or_else(|| format!("frontend did not write {key}"))?
            .parse()
            .map_err(|_| format!("frontend's {key} is not a number"))
    }

    fn connect(&mut self) -> Result<(), String> {
        self.disconnect();
        if self.front("request-rx-copy").as_deref() != Some("1") {
            return Err(
                "frontend does not request rx-copy (page flipping is not supported)".into(),
            );
        }
        if self
            .front("multi-queue-num-queues")
            .is_some_and(|n| n != "1")
        {
            return Err("multiple queues are not supported".into());
        }
        let tx_ref = self.num("tx-ring-ref")?;
        let rx_ref = self.num("rx-ring-ref")?;
        let (tx_port, rx_port) = match self.num("event-channel") {
            Ok(p) => (p, p),
            Err(_) => (self.num("event-channel-tx")?, self.num("event-channel-rx")?),
        };
        let grants = Arc::new(GrantSession::new(
            self.env.mem.clone(),
            self.env.grants.clone(),
            self.env.backend_domid,
            false,
        ));
        let pages = grants
            .map_ring(&[tx_ref, rx_ref])
            .map_err(|e| format!("mapping rings: {e}"))?;
        let fail = |e: String| {
            grants.unmap_ring(&[tx_ref, rx_ref]);
            e
        };
        let tx = BackRing::new(self.env.mem.clone(), vec![pages[0]], netif::TX_SLOT)
            .map_err(|e| fail(e.to_string()))?;
        let rx = BackRing::new(self.env.mem.clone(), vec![pages[1]], netif::RX_SLOT)
            .map_err(|e| fail(e.to_string()))?;
        let bell = Arc::new(Bell::default());
        let b = Arc::downgrade(&bell);
        let notify: Notify = Arc::new(move || {
            if let Some(b) = b.upgrade() {
                b.ring();
            }
        });
        let mut ports = vec![tx_port];
        if rx_port != tx_port {
            ports.push(rx_port);
        }
        for &p in &ports {
            self.env
                .evtchn
                .bind(p, notify.clone())
                .map_err(|e| fail(format!("binding port {p}: {e}")))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let credit = self
            .spec
            .rate
            .filter(|&(b, u)| b > 0 && u > 0)
            .map(|(b, u)| {
                Mutex::new(Credit::new(
                    b,
                    Duration::from_micros(u64::from(u)),
                    std::time::Instant::now(),
                ))
            });
        let ctx = Arc::new(Ctx {
            credit,
            grants: grants.clone(),
            tap: self.tap.clone(),
            env: self.env.clone(),
            stop: stop.clone(),
            bell: bell.clone(),
            tx_port,
            rx_port,
        });
        let mut threads = Vec::new();
        let c = ctx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("netback-tx{}", self.spec.devid))
                .spawn(move || tx_loop(&c, tx))
                .map_err(|e| e.to_string())?,
        );
        let c = ctx;
        threads.push(
            std::thread::Builder::new()
                .name(format!("netback-rx{}", self.spec.devid))
                .spawn(move || rx_loop(&c, rx))
                .map_err(|e| e.to_string())?,
        );
        self.conn = Some(NetConn {
            stop,
            bell,
            threads,
            grants,
            ring_refs: vec![tx_ref, rx_ref],
            ports,
        });
        Ok(())
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            c.stop.store(true, Ordering::SeqCst);
            c.bell.ring();
            for t in c.threads {
                let _ = t.join();
            }
            for p in c.ports {
                self.env.evtchn.unbind(p);
            }
            c.grants.unmap_ring(&c.ring_refs);
        }
    }

    /// Removes the device (the TAP goes away with its descriptor).
    pub fn destroy(mut self) {
        self.disconnect();
        xenbus::remove_device(&self.store, &self.paths);
    }
}

struct Ctx {
    credit: Option<Mutex<Credit>>,
    grants: Arc<GrantSession>,
    tap: Arc<File>,
    env: RingEnv,
    stop: Arc<AtomicBool>,
    bell: Arc<Bell>,
    tx_port: u32,
    rx_port: u32,
}

/// Guest → host: frames from the TX ring to the TAP.
fn tx_loop(c: &Ctx, mut ring: BackRing) {
    let mut frame = Vec::with_capacity(netif::MAX_FRAME);
    while !c.stop.load(Ordering::SeqCst) {
        let mut reqs = Vec::new();
        let more = (|| -> Result<(), crate::sring::RingError> {
            loop {
                let n = ring.pending_requests()?;
                if n == 0 && !ring.final_check()? {
                    return Ok(());
                }
                for _ in 0..ring.pending_requests()? {
                    if !ring.can_consume() {
                        return Ok(());
                    }
                    reqs.push(TxRequest::parse(&ring.take_request()?));
                }
            }
        })();
        if let Err(e) = more {
            tracing::warn!("vif TX ring: {e}; stopped");
            (c.env.on_fatal)();
            return;
        }
        if reqs.is_empty() {
            c.bell.wait(POLL);
            continue;
        }
        let mut i = 0;
        while i < reqs.len() {
            // One frame: the first slot, its extra-info slots, then
            // continuation slots while NETTXF_more_data is set.
            let first = reqs[i];
            let mut slots = vec![first];
            let mut extras = Vec::new();
            let mut j = i + 1;
            if first.flags & netif::NETTXF_EXTRA_INFO != 0 {
                while j < reqs.len() {
                    let e = reqs[j];
                    extras.push(e.id);
                    j += 1;
                    // extra_info: type u8, flags u8 — flags is the 2nd byte
                    // of the slot (gref's second byte in TxRequest terms).
                    if (e.gref >> 8) as u8 & netif::XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                        break;
                    }
                }
            }
            let mut last = first;
            while last.flags & netif::NETTXF_MORE_DATA != 0 && j < reqs.len() {
                last = reqs[j];
                slots.push(last);
                j += 1;
            }
            let ok = gather(c, &slots, &mut frame);
            if ok && first.flags & netif::NETTXF_CSUM_BLANK != 0 {
                netif::complete_checksum(&mut frame);
            }
            if ok {
                throttle(c, frame.len() as u64);
            }
            let status = if ok {
                // A TAP takes one frame per write; a short write would be
                // a truncated frame.
                match (&*c.tap).write(&frame) {
                    Ok(n) if n == frame.len() => netif::NETIF_RSP_OKAY,
                    Ok(_) => netif::NETIF_RSP_DROPPED,
                    Err(e) => {
                        tracing::debug!("TAP write: {e}");
                        netif::NETIF_RSP_DROPPED
                    }
                }
            } else {
                netif::NETIF_RSP_ERROR
            };
            for s in &slots {
                let _ = ring.put_response(&pad(&netif::tx_response(s.id, status), 12));
            }
            for id in extras {
                let _ = ring.put_response(&pad(&netif::tx_response(id, netif::NETIF_RSP_NULL), 12));
            }
            i = j;
        }
        if ring.push_responses().unwrap_or(false) {
            c.env.evtchn.notify(c.tx_port);
        }
    }
}

/// Waits until `rate=` allows `len` more bytes.
fn throttle(c: &Ctx, len: u64) {
    let Some(credit) = &c.credit else { return };
    loop {
        let r = credit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(len, std::time::Instant::now());
        match r {
            Ok(()) => return,
            Err(wait) if !c.stop.load(Ordering::SeqCst) => std::thread::sleep(wait),
            Err(_) => return,
        }
    }
}

fn pad(b: &[u8], n: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    v.resize(n, 0);
    v
}

/// Copies one frame out of the guest's TX slots.
fn gather(c: &Ctx, slots: &[TxRequest], frame: &mut Vec<u8>) -> bool {
    frame.clear();
    let total = usize::from(slots[0].size);
    let mut rest: usize = slots[1..].iter().map(|s| usize::from(s.size)).sum();
    if rest > total {
        return false;
    }
    for (k, s) in slots.iter().enumerate() {
        // The first slot's size is the whole frame; its own share is what
        // the continuation slots do not cover.
        let len = if k == 0 {
            total - rest
        } else {
            usize::from(s.size)
        };
        if k > 0 {
            rest -= len;
        }
        let start = frame.len();
        frame.resize(start + len, 0);
        if c.grants
            .read(s.gref, u64::from(s.offset), &mut frame[start..])
            .is_err()
        {
            return false;
        }
    }
    !frame.is_empty()
}

/// Host → guest: frames from the TAP into buffers the RX ring offers.
fn rx_loop(c: &Ctx, mut ring: BackRing) {
    let mut buf = vec![0u8; netif::MAX_FRAME];
    let fd = c.tap.as_raw_fd();
    while !c.stop.load(Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
        if r <= 0 {
            continue;
        }
        let n = match (&*c.tap).read(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        if n == 0 || n > 4096 {
            continue; // No RX scatter-gather: a frame must fit one page.
        }
        // Wait (briefly) for the frontend to post a buffer.
        let mut tries = 0;
        let req = loop {
            match ring.pending_requests() {
                Ok(p) if p > 0 && ring.can_consume() => break ring.take_request().ok(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("vif RX ring: {e}; stopped");
                    (c.env.on_fatal)();
                    return;
                }
            }
            let _ = ring.final_check();
            tries += 1;
            if tries > 4 || c.stop.load(Ordering::SeqCst) {
                break None;
            }
            c.bell.wait(Duration::from_millis(25));
        };
        let Some(req) = req else { continue }; // dropped: no buffer
        let (id, gref) = netif::parse_rx_request(&req);
        let status = match c.grants.write(gref, 0, &buf[..n]) {
            Ok(()) => n as i16,
            Err(_) => netif::NETIF_RSP_ERROR,
        };
        let _ = ring.put_response(&netif::rx_response(id, 0, 0, status));
        if ring.push_responses().unwrap_or(false) {
            c.env.evtchn.notify(c.rx_port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn credit_refills_every_interval() {
        let t0 = Instant::now();
        let mut c = Credit::new(3000, Duration::from_millis(10), t0);
        assert_eq!(c.take(1500, t0), Ok(()));
        assert_eq!(c.take(1500, t0), Ok(()));
        assert_eq!(c.take(1500, t0), Err(Duration::from_millis(10)));
        let later = t0 + Duration::from_millis(10);
        assert_eq!(c.take(1500, later), Ok(()));
    }

    #[test]
    fn a_frame_larger_than_the_credit_goes_when_it_is_full() {
        let t0 = Instant::now();
        let mut c = Credit::new(1000, Duration::from_millis(5), t0);
        assert_eq!(c.take(1500, t0), Ok(()));
        assert!(c.take(10, t0).is_err());
    }
}
