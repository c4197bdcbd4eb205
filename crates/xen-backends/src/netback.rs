//! The network backend (`vif`): one [`NetDevice`] per `vif=` entry, a TAP
//! device on the host, and the frontend's TX and RX rings with copy
//! semantics (`feature-rx-copy`; the backend copies through grants, as
//! netback's grant-copy path). TX frames may span several slots
//! (`NETTXF_more_data`) and carry extra-info slots, which are answered
//! `NETIF_RSP_NULL`; frames sent with `NETTXF_csum_blank` get their TCP/UDP
//! checksum filled in before they reach the TAP.
//!
//! RX frames larger than a page span several posted buffers
//! (`NETRXF_more_data`) when the frontend offers `feature-sg`.
//!
//! `rate=` is applied to what the guest sends (netback's credit).
//! `script=` runs as libxl runs vif scripts, or the TAP is attached to
//! `bridge=` directly ([`hotplug`]).
//!
//! The TAP carries a `virtio_net_hdr` per frame ([`offload`]): GSO frames
//! the guest sends (`feature-gso-tcpv4`/`-tcpv6` in the backend) go to the
//! kernel as GSO, and the kernel hands us GSO frames and partial checksums
//! when the frontend says it takes them (`TUNSETOFFLOAD`).
//!
//! Multiple queues (`multi-queue-num-queues`, keys under `queue-N/`): each
//! queue has its own rings, ports, threads and TAP queue
//! (`IFF_MULTI_QUEUE`).
//!
//! Here: the device, its xenbus handshake and the TAP; the data paths are
//! `tx` (guest → TAP) and `rx` (TAP → guest).

pub mod hotplug;
pub mod offload;
mod rx;
mod tx;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::doorbell::Doorbell;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xenstore::Engine;

use crate::blkback::conn::RingEnv;
use crate::evtchn::Notify;
use crate::grant::GrantSession;
use crate::netif;
use crate::sring::BackRing;
use crate::xenbus::{self, DeviceKind, DevicePaths, XenbusDevice, XenbusState};
use hotplug::{Action, NetHotplug, Plan};

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
    /// `bridge=`: written to XenStore for the script, or the TAP is
    /// attached to it directly when no script runs ([`hotplug`]).
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
const IFF_VNET_HDR: i16 = 0x4000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const IFF_ATTACH_QUEUE: i16 = 0x0200;
const IFF_DETACH_QUEUE: i16 = 0x0400;
const TUNSETQUEUE: libc::c_ulong = 0x4004_54d9;
/// The most queues a vif offers (`multi-queue-max-queues`): one per host
/// CPU as netback, at least two (so a multi-queue frontend can always
/// connect), at most eight.
const MAX_QUEUES: usize = 8;
const POLL: Duration = Duration::from_millis(50);

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// Creates (or attaches to) TAP interface `name`: plain frames.
pub fn open_tap(name: &str) -> std::io::Result<File> {
    open_tap_flags(name, IFF_TAP | IFF_NO_PI)
}

/// Creates multi-queue TAP interface `name` with `queues` queues (one
/// descriptor each) whose frames carry a `virtio_net_hdr`
/// ([`offload::VnetHdr`]) in front: the backend's own kind. All queues are
/// opened now, while the name still resolves in our namespace (the TAP
/// may be moved to another one later); all but the first are detached
/// until a frontend asks for them. An existing single-queue TAP of that
/// name is used as it is, with one queue.
pub fn open_tap_queues(name: &str, queues: usize) -> std::io::Result<Vec<File>> {
    let flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    let first = match open_tap_flags(name, flags | IFF_MULTI_QUEUE) {
        Ok(f) => f,
        // An existing single-queue TAP (made by the user, `vifname=`): use
        // it with one queue.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Ok(vec![open_tap_flags(name, flags)?]);
        }
        Err(e) => return Err(e),
    };
    let mut taps = vec![first];
    for _ in 1..queues {
        taps.push(open_tap_flags(name, flags | IFF_MULTI_QUEUE)?);
    }
    for t in &taps[1..] {
        set_queue(t, IFF_DETACH_QUEUE)?;
    }
    Ok(taps)
}

/// `TUNSETQUEUE`: attaches or detaches one queue's descriptor.
fn set_queue(tap: &File, flag: i16) -> std::io::Result<()> {
    let mut req = IfReq {
        name: [0; 16],
        flags: flag,
        _pad: [0; 22],
    };
    // SAFETY: TUNSETQUEUE reads one `struct ifreq` (only its flags), which
    // `req` is laid out as.
    let r = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETQUEUE, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes a TAP queue's reads return `EAGAIN` instead of blocking, so the
/// RX thread reads until the queue is empty and polls only then. Writes
/// are unaffected in practice: a TAP's send buffer is unlimited
/// (`INT_MAX`) unless `TUNSETSNDBUF` lowers it, so a write never waits.
fn set_nonblocking(tap: &File) -> std::io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no memory passed.
    let r = unsafe {
        let fl = libc::fcntl(tap.as_raw_fd(), libc::F_GETFL);
        if fl < 0 {
            fl
        } else {
            libc::fcntl(tap.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn open_tap_flags(name: &str, flags: i16) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags,
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
    bus: XenbusDevice,
    env: RingEnv,
    spec: NetSpec,
    /// One descriptor per TAP queue; queue 0 is always attached.
    taps: Vec<Arc<File>>,
    ifname: String,
    conn: Option<NetConn>,
    /// The script that ran `online`, to run `offline` on destroy.
    script: Option<(std::path::PathBuf, Vec<(String, String)>)>,
}

struct NetConn {
    stop: Arc<AtomicBool>,
    /// One per queue.
    bells: Vec<Arc<Doorbell>>,
    threads: Vec<JoinHandle<()>>,
    grants: Arc<GrantSession>,
    ring_refs: Vec<u32>,
    ports: Vec<u32>,
    /// TAP queues attached (queue 0 always is).
    attached: usize,
}

impl NetDevice {
    /// Creates the TAP device and writes the device into XenStore, with
    /// xl's default host setup (see [`NetDevice::create_with_hotplug`]).
    pub fn create(
        store: &Engine,
        env: RingEnv,
        frontend_domid: u16,
        spec: NetSpec,
    ) -> Result<Self, String> {
        Self::create_with_hotplug(store, env, frontend_domid, spec, &NetHotplug::default())
    }

    /// Creates the TAP device, writes the device into XenStore, and sets up
    /// the host side as libxl would: runs the vif script `online` (an
    /// explicit `script=` that does not exist or fails is an error, as in
    /// libxl), or, when no script runs, attaches the TAP to `bridge=`.
    pub fn create_with_hotplug(
        store: &Engine,
        env: RingEnv,
        frontend_domid: u16,
        spec: NetSpec,
        hp: &NetHotplug,
    ) -> Result<Self, String> {
        let plan = hotplug::plan(hp, spec.bridge.as_deref())
            .map_err(|e| format!("vif {}: {e}", spec.devid))?;
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
        let queues = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(2, MAX_QUEUES);
        let taps = open_tap_queues(&ifname, queues)
            .map_err(|e| format!("vif {}: TAP {ifname}: {e}", spec.devid))?;
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
            ("feature-gso-tcpv4", "1".to_owned()),
            ("feature-gso-tcpv6", "1".to_owned()),
            ("multi-queue-max-queues", taps.len().to_string()),
            ("hotplug-status", "connected".to_owned()),
        ];
        if let Some(b) = &spec.bridge {
            back.push(("bridge", b.clone()));
        }
        if let Some((bytes, usecs)) = spec.rate {
            back.push(("rate", format!("{bytes},{usecs}")));
        }
        if let Plan::Script(p) = &plan {
            back.push(("script", p.display().to_string()));
        }
        xenbus::add_device(store, &paths, &front, &back).map_err(|e| e.to_string())?;
        xenbus::set_backend_state(store, &paths, XenbusState::InitWait);
        // libxl runs the script once the backend waits in InitWait.
        let setup = match &plan {
            Plan::Script(p) => {
                let env = hotplug::script_env(p, &paths, &ifname, hp);
                hotplug::run_script(p, Action::Online, &env).map(|()| Some((p.clone(), env)))
            }
            Plan::Bridge(b) => hotplug::attach_to_bridge(&ifname, b).map(|()| None),
            Plan::Nothing => Ok(None),
        };
        let script = match setup {
            Ok(s) => s,
            Err(e) => {
                xenbus::remove_device(store, &paths);
                return Err(format!("vif {}: {e}", spec.devid));
            }
        };
        Ok(Self {
            bus: XenbusDevice {
                store: store.clone(),
                paths,
                state: XenbusState::InitWait,
            },
            env,
            spec,
            taps: taps.into_iter().map(Arc::new).collect(),
            ifname,
            conn: None,
            script,
        })
    }

    pub fn paths(&self) -> &DevicePaths {
        &self.bus.paths
    }

    pub fn state(&self) -> XenbusState {
        self.bus.state
    }

    /// The host interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The xenbus handshake ([`xenbus::frontend_changed`]); call on every
    /// change of the frontend's state.
    pub fn frontend_changed(&mut self) {
        xenbus::frontend_changed(self);
    }

    fn front(&self, key: &str) -> Option<String> {
        xenbus::read_str(&self.bus.store, &self.bus.paths.frontend_key(key))
    }

    fn num(&self, key: &str) -> Result<u32, String> {
        self.front(key)
            .ok_or_else(|| format!("frontend did not write {key}"))?
            .parse()
            .map_err(|_| format!("frontend's {key} is not a number"))
    }

    /// The frontend's queue count (`multi-queue-num-queues`, 1 when
    /// absent), checked against what we offered.
    fn num_queues(&self) -> Result<usize, String> {
        let Some(n) = self.front("multi-queue-num-queues") else {
            return Ok(1);
        };
        match n.parse::<usize>() {
            Ok(q) if (1..=self.taps.len()).contains(&q) => Ok(q),
            _ => Err(format!(
                "frontend asks for {n} queues (multi-queue-max-queues is {})",
                self.taps.len()
            )),
        }
    }

    fn connect(&mut self) -> Result<(), String> {
        self.disconnect();
        if self.front("request-rx-copy").as_deref() != Some("1") {
            return Err(
                "frontend does not request rx-copy (page flipping is not supported)".into(),
            );
        }
        let queues = self.num_queues()?;
        let grants = Arc::new(GrantSession::new(
            self.env.mem.clone(),
            self.env.grants.clone(),
            self.env.backend_domid,
            false,
        ));
        let yes = |k: &str| self.front(k).as_deref() == Some("1");
        let rx_sg = yes("feature-sg");
        let rx_ipv6_csum = yes("feature-ipv6-csum-offload");
        let offload = offload::rx_offload_flags(
            !yes("feature-no-csum-offload"),
            rx_sg,
            yes("feature-gso-tcpv4"),
            yes("feature-gso-tcpv6"),
        );
        let credit = self
            .spec
            .rate
            .filter(|&(b, u)| b > 0 && u > 0)
            .map(|(b, u)| {
                Arc::new(Mutex::new(Credit::new(
                    b,
                    Duration::from_micros(u64::from(u)),
                    std::time::Instant::now(),
                )))
            });
        // Whatever is built goes into `conn` at once, so that a failure
        // half-way is undone by `disconnect` like a normal teardown.
        self.conn = Some(NetConn {
            stop: Arc::new(AtomicBool::new(false)),
            bells: Vec::new(),
            threads: Vec::new(),
            grants: grants.clone(),
            ring_refs: Vec::new(),
            ports: Vec::new(),
            attached: 1,
        });
        let r = offload::set_offload(&self.taps[0], offload)
            .map_err(|e| format!("TUNSETOFFLOAD {offload:#x}: {e}"))
            .and_then(|()| {
                (0..queues).try_for_each(|q| {
                    // One queue keeps the keys at the top level (netif.h).
                    let dir = if queues == 1 {
                        String::new()
                    } else {
                        format!("queue-{q}/")
                    };
                    let f = RxFeatures {
                        sg: rx_sg,
                        ipv6_csum: rx_ipv6_csum,
                    };
                    self.connect_queue(q, &dir, &grants, credit.clone(), f)
                })
            });
        if let Err(e) = r {
            self.disconnect();
            return Err(e);
        }
        Ok(())
    }

    /// Maps queue `q`'s rings (keys under `dir`), binds its ports, attaches
    /// its TAP queue and starts its TX and RX threads.
    fn connect_queue(
        &mut self,
        q: usize,
        dir: &str,
        grants: &Arc<GrantSession>,
        credit: Option<Arc<Mutex<Credit>>>,
        feat: RxFeatures,
    ) -> Result<(), String> {
        let tx_ref = self.num(&format!("{dir}tx-ring-ref"))?;
        let rx_ref = self.num(&format!("{dir}rx-ring-ref"))?;
        let (tx_port, rx_port) = match self.num(&format!("{dir}event-channel")) {
            Ok(p) => (p, p),
            Err(_) => (
                self.num(&format!("{dir}event-channel-tx"))?,
                self.num(&format!("{dir}event-channel-rx"))?,
            ),
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connecting".into());
        };
        let pages = grants
            .map_ring(&[tx_ref, rx_ref])
            .map_err(|e| format!("queue {q}: mapping rings: {e}"))?;
        conn.ring_refs.extend([tx_ref, rx_ref]);
        let tx = BackRing::new(self.env.mem.clone(), vec![pages[0]], netif::TX_SLOT)
            .map_err(|e| e.to_string())?;
        let rx = BackRing::new(self.env.mem.clone(), vec![pages[1]], netif::RX_SLOT)
            .map_err(|e| e.to_string())?;
        let bell = Arc::new(Doorbell::default());
        conn.bells.push(bell.clone());
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
        for p in ports {
            self.env
                .evtchn
                .bind(p, notify.clone())
                .map_err(|e| format!("queue {q}: binding port {p}: {e}"))?;
            conn.ports.push(p);
        }
        let tap = self.taps[q].clone();
        set_nonblocking(&tap).map_err(|e| format!("queue {q}: O_NONBLOCK: {e}"))?;
        if q > 0 {
            set_queue(&tap, IFF_ATTACH_QUEUE).map_err(|e| format!("queue {q}: attach: {e}"))?;
            conn.attached = q + 1;
        }
        let ctx = Arc::new(Ctx {
            credit,
            grants: grants.clone(),
            tap,
            env: self.env.clone(),
            stop: conn.stop.clone(),
            bell,
            tx_port,
            rx_port,
            rx_sg: feat.sg,
            rx_ipv6_csum: feat.ipv6_csum,
        });
        let devid = self.spec.devid;
        let c = ctx.clone();
        conn.threads.push(
            std::thread::Builder::new()
                .name(format!("netback-tx{devid}.{q}"))
                .spawn(move || tx::tx_loop(&c, tx))
                .map_err(|e| e.to_string())?,
        );
        conn.threads.push(
            std::thread::Builder::new()
                .name(format!("netback-rx{devid}.{q}"))
                .spawn(move || rx::rx_loop(&ctx, rx))
                .map_err(|e| e.to_string())?,
        );
        Ok(())
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            c.stop.store(true, Ordering::SeqCst);
            for b in &c.bells {
                b.ring();
            }
            for t in c.threads {
                let _ = t.join();
            }
            for p in c.ports {
                self.env.evtchn.unbind(p);
            }
            c.grants.unmap_ring(&c.ring_refs);
            // Queues beyond the first stop taking the kernel's frames.
            for tap in &self.taps[1..c.attached] {
                if let Err(e) = set_queue(tap, IFF_DETACH_QUEUE) {
                    tracing::warn!("vif {}: detaching a TAP queue: {e}", self.spec.devid);
                }
            }
            // Until a frontend says otherwise, it takes plain frames only.
            if let Err(e) = offload::set_offload(&self.taps[0], 0) {
                tracing::warn!("vif {}: TUNSETOFFLOAD 0: {e}", self.spec.devid);
            }
        }
    }

    /// Removes the device (the TAP goes away with its descriptor), after
    /// running the vif script `offline` (a failure there is only logged:
    /// the device goes regardless, as in libxl).
    pub fn destroy(mut self) {
        self.disconnect();
        if let Some((p, env)) = self.script.take() {
            if let Err(e) = hotplug::run_script(&p, Action::Offline, &env) {
                tracing::warn!("vif {}: {e}", self.spec.devid);
            }
        }
        xenbus::remove_device(&self.bus.store, &self.bus.paths);
    }
}

/// What the frontend said it takes on RX.
#[derive(Clone, Copy)]
struct RxFeatures {
    sg: bool,
    ipv6_csum: bool,
}

struct Ctx {
    /// Shared by the queues: `rate=` is per vif.
    credit: Option<Arc<Mutex<Credit>>>,
    grants: Arc<GrantSession>,
    tap: Arc<File>,
    env: RingEnv,
    stop: Arc<AtomicBool>,
    bell: Arc<Doorbell>,
    tx_port: u32,
    rx_port: u32,
    /// The frontend wrote `feature-sg`=1: RX frames may span slots.
    rx_sg: bool,
    /// The frontend takes IPv6 frames with partial checksums
    /// (`feature-ipv6-csum-offload`); otherwise we complete them.
    rx_ipv6_csum: bool,
}

impl xenbus::XenbusBackend for NetDevice {
    const CONNECT_ON_INITIALISED: bool = false;
    fn xenbus(&self) -> &XenbusDevice {
        &self.bus
    }
    fn xenbus_mut(&mut self) -> &mut XenbusDevice {
        &mut self.bus
    }
    fn connect(&mut self) -> Result<(), String> {
        NetDevice::connect(self)
    }
    fn disconnect(&mut self) {
        NetDevice::disconnect(self)
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
