//! The domain's PV devices: one xenbus backend per `disk=` entry and per
//! extra console / `channel=` entry and per `vif=` entry, served by
//! one thread that follows the frontends through XenStore watches, plus the
//! glue that gives `xen-backends` the guest's grants and event channels
//! (`xen_emu::Domain`'s backend API; the domain is the one owner of grant
//! pins and the `GTF_reading`/`GTF_writing` flags).
//!
//! The same thread plugs disks and vifs in and out while the guest runs
//! (`xl block-attach`, `network-detach`, ...): an attach creates the
//! backend exactly as at boot; a detach follows libxl's
//! `libxl__initiate_device_generic_remove` (backend `online` = 0 and
//! Closing, wait up to [`REMOVE_TIMEOUT`] for the frontend to close, then
//! release everything and remove the XenStore directories).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xen_backends::blkback::conn::RingEnv;
use xen_backends::blkback::BlockDevice;
use xen_backends::console::ConsoleDevice;
use xen_backends::evtchn::{EventChannels, Notify};
use xen_backends::netback::NetDevice;
use xen_backends::xenbus::{self, DeviceKind, DevicePaths, Watch, XenbusBackend, XenbusState};
use xen_emu::Domain;

use crate::memory::DomainMemory;
use crate::{VmConfig, VmmError};

/// One `disk=` entry (see [`xen_backends::blkback::BlockSpec`]).
pub type DiskSpec = xen_backends::blkback::BlockSpec;
/// A disk's `format=` (raw or qcow2).
pub use xen_backends::blkback::ImageFormat as DiskImageFormat;
/// One extra console or `channel=` entry (see
/// [`xen_backends::console::ConsoleSpec`]).
pub type ConsoleSpec = xen_backends::console::ConsoleSpec;
/// Where a console's bytes go on the host.
pub type ConsoleHost = xen_backends::console::HostEnd;
/// One `vif=` entry (see [`xen_backends::netback::NetSpec`]).
pub use xen_backends::netback::hotplug::NetHotplug;
pub use xen_backends::netback::NetSpec;
/// The Xen device number of a disk's `vdev` (`xvdb` → 51728), as libxl
/// computes it; `None` for a name Xen would refuse.
pub use xen_backends::xenbus::vdev_to_devid;

/// One `vif=` entry: what the network backend serves, and how libxl would
/// plug the host end in (`script=`, `gatewaydev=`, the store's socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifSpec {
    pub net: NetSpec,
    pub hotplug: NetHotplug,
}

/// A device to plug into the running domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvDevice {
    Disk(DiskSpec),
    Vif(VifSpec),
}

/// The device classes that can be plugged and unplugged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClass {
    /// A block device (`vbd`).
    Vbd,
    /// A network interface (`vif`).
    Vif,
}

impl std::fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vbd => "vbd",
            Self::Vif => "vif",
        })
    }
}

/// How hard an unplug tries (libxl's `libxl__force` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnplugMode {
    /// Wait for the frontend; if it does not close in time the unplug fails
    /// and the device stays, offline (`libxl_device_disk_safe_remove`, what
    /// `xl block-detach` does).
    Safe,
    /// Wait for the frontend, then force the removal if it did not close in
    /// time (`libxl_device_<type>_remove`, what `xl network-detach` does).
    Auto,
    /// Tear the device down at once (`libxl_device_<type>_destroy`,
    /// `xl block-detach --force`).
    Force,
}

/// How an unplug ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplugged {
    /// The frontend closed its end, then the device went.
    Closed,
    /// Torn down without waiting (`--force`), or after the frontend did not
    /// close within [`REMOVE_TIMEOUT`] (libxl then forces the removal too).
    Forced,
}

/// Why a hot-plug request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotplugError {
    /// No run is attached (the domain is starting, stopping or shut down).
    #[error("the domain is not running")]
    NotRunning,
    /// libxl's wording for a device whose directory is already there.
    #[error("device already exists in xenstore")]
    Exists,
    #[error("no {class} device with id {devid}")]
    NotFound { class: DeviceClass, devid: u32 },
    #[error("{class} device {devid} is already being removed")]
    Busy { class: DeviceClass, devid: u32 },
    /// The backend could not be created (image, TAP, script, vdev).
    #[error("{0}")]
    Create(String),
    /// libxl's wording when a safe unplug timed out.
    #[error("unable to remove device with path {0}")]
    TimedOut(String),
    #[error("the device thread did not answer within {0:?}")]
    NoReply(Duration),
}

/// How long an unplug waits for the frontend to close before it forces the
/// removal (`LIBXL_DESTROY_TIMEOUT`).
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for the device thread: a vif script may take up to
/// libxl's hotplug timeout (40 s) on either side of a removal.
const REPLY_BOUND: Duration = Duration::from_secs(100);

/// Safety-net re-check of the frontends without a watch event.
const POLL: Duration = Duration::from_millis(250);
/// The guest's event channels, from the backend domain's side.
struct DomainEvtchn {
    domain: Arc<Domain>,
}

impl EventChannels for DomainEvtchn {
    fn bind(&self, port: u32, on_notify: Notify) -> Result<(), String> {
        self.domain
            .bind_backend_channel(port, Arc::new(move |_| on_notify()))
            .map_err(|e| e.to_string())
    }

    fn notify(&self, port: u32) {
        if let Err(e) = self.domain.backend_send(port) {
            tracing::debug!("PV device notify on port {port}: {e}");
        }
    }

    fn unbind(&self, port: u32) {
        if let Err(e) = self.domain.backend_unbind(port) {
            tracing::debug!("PV device unbind of port {port}: {e}");
        }
    }
}

enum Msg {
    Wake,
    Stop,
    Attach(PvDevice, Sender<Result<u32, HotplugError>>),
    Detach {
        class: DeviceClass,
        devid: u32,
        mode: UnplugMode,
        reply: Sender<Result<Unplugged, HotplugError>>,
    },
}

/// The toolstack's way into the device thread (held by
/// [`DomainControl`](crate::DomainControl) while a run is attached).
#[derive(Clone)]
pub(crate) struct Hotplug(Sender<Msg>);

impl Hotplug {
    /// Plugs `dev` in; returns its device id.
    pub fn attach(&self, dev: PvDevice) -> Result<u32, HotplugError> {
        let (tx, rx) = mpsc::channel();
        self.0
            .send(Msg::Attach(dev, tx))
            .map_err(|_| HotplugError::NotRunning)?;
        wait(&rx)
    }

    /// Unplugs device `devid` of `class` (see [`Unplugged`]).
    pub fn detach(
        &self,
        class: DeviceClass,
        devid: u32,
        mode: UnplugMode,
    ) -> Result<Unplugged, HotplugError> {
        let (reply, rx) = mpsc::channel();
        self.0
            .send(Msg::Detach {
                class,
                devid,
                mode,
                reply,
            })
            .map_err(|_| HotplugError::NotRunning)?;
        wait(&rx)
    }
}

fn wait<T>(rx: &Receiver<Result<T, HotplugError>>) -> Result<T, HotplugError> {
    match rx.recv_timeout(REPLY_BOUND) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(HotplugError::NoReply(REPLY_BOUND)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(HotplugError::NotRunning),
    }
}

/// The running device thread.
pub(crate) struct Devices {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// A detach waiting for its frontend.
struct Removal {
    class: DeviceClass,
    devid: u32,
    mode: UnplugMode,
    deadline: Instant,
    reply: Sender<Result<Unplugged, HotplugError>>,
}

/// Everything the device thread owns.
struct Bus {
    store: xenstore::Engine,
    env: RingEnv,
    domid: u16,
    disks: Vec<BlockDevice>,
    consoles: Vec<ConsoleDevice>,
    vifs: Vec<NetDevice>,
    removals: Vec<Removal>,
    /// Set while a [`Msg::Wake`] is queued (see [`coalescing_wake`]).
    wake_pending: Arc<AtomicBool>,
}

/// The device thread's wake-up for watch events and fatal ring errors.
/// At most one [`Msg::Wake`] is queued at a time: every guest write under
/// its `device` directory fires the watch, and one queued message per
/// write would let a guest that writes faster than the thread re-reads
/// its devices grow the queue without bound (and delay hot-plug requests
/// behind it). The thread clears `pending` before it re-reads, so an
/// event after that queues a new wake.
fn coalescing_wake(tx: Sender<Msg>, pending: Arc<AtomicBool>) -> Notify {
    Arc::new(move || {
        if !pending.swap(true, Ordering::SeqCst) {
            let _ = tx.send(Msg::Wake);
        }
    })
}

impl Devices {
    /// Creates every configured device (XenStore nodes, images opened) and
    /// starts the thread that runs their handshakes and takes hot-plug
    /// requests (see [`Devices::hotplug`]).
    pub fn start(
        config: &VmConfig,
        domain: Arc<Domain>,
        mem: Arc<DomainMemory>,
        store: &xenstore::Engine,
    ) -> Result<Self, VmmError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let wake = coalescing_wake(tx.clone(), wake_pending.clone());
        let env = RingEnv {
            mem,
            grants: domain.clone(),
            evtchn: Arc::new(DomainEvtchn {
                domain: domain.clone(),
            }),
            backend_domid: domain.config().backend_domid,
            on_fatal: wake.clone(),
        };
        let mut bus = Bus {
            store: store.clone(),
            env,
            domid: config.domid as u16,
            disks: Vec::new(),
            consoles: Vec::new(),
            vifs: Vec::new(),
            removals: Vec::new(),
            wake_pending,
        };
        let created = config
            .disks
            .iter()
            .try_for_each(|spec| bus.add(PvDevice::Disk(spec.clone())).map(drop))
            .and_then(|()| {
                config.consoles.iter().try_for_each(|spec| {
                    ConsoleDevice::create(store, bus.env.clone(), bus.domid, spec.clone())
                        .map(|d| bus.consoles.push(d))
                        .map_err(HotplugError::Create)
                })
            })
            .and_then(|()| {
                config
                    .vifs
                    .iter()
                    .try_for_each(|spec| bus.add(PvDevice::Vif(spec.clone())).map(drop))
            });
        if let Err(e) = created {
            bus.destroy_all();
            return Err(VmmError::Config(e.to_string()));
        }
        let watch = Watch::new(store, &format!("/local/domain/{}/device", bus.domid), wake)
            .map_err(VmmError::Config)?;
        let thread = std::thread::Builder::new()
            .name("xenbus".into())
            .spawn(move || bus.run(&rx, watch))
            .map_err(|e| VmmError::Thread(format!("spawning the xenbus thread: {e}")))?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// A handle that plugs devices in and out while the thread runs.
    pub fn hotplug(&self) -> Hotplug {
        Hotplug(self.tx.clone())
    }

    /// Disconnects every device (waiting for I/O in flight) and removes it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Bus {
    fn run(mut self, rx: &Receiver<Msg>, watch: Watch) {
        loop {
            let msg = match rx.recv_timeout(POLL) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => Some(Msg::Stop),
            };
            self.wake_pending.store(false, Ordering::SeqCst);
            watch.drain();
            match msg {
                Some(Msg::Stop) => break,
                Some(Msg::Attach(dev, reply)) => {
                    let _ = reply.send(self.add(dev));
                }
                Some(Msg::Detach {
                    class,
                    devid,
                    mode,
                    reply,
                }) => self.begin_removal(class, devid, mode, reply),
                Some(Msg::Wake) | None => {}
            }
            for d in &mut self.disks {
                d.frontend_changed();
            }
            for c in &mut self.consoles {
                c.frontend_changed();
            }
            for v in &mut self.vifs {
                v.frontend_changed();
            }
            self.finish_removals();
        }
        drop(watch);
        for r in std::mem::take(&mut self.removals) {
            let _ = r.reply.send(Ok(Unplugged::Forced));
        }
        self.destroy_all();
    }

    fn destroy_all(&mut self) {
        self.disks.drain(..).for_each(BlockDevice::destroy);
        self.consoles.drain(..).for_each(ConsoleDevice::destroy);
        self.vifs.drain(..).for_each(NetDevice::destroy);
    }

    /// The device's XenStore directories, if it is plugged in.
    fn paths(&self, class: DeviceClass, devid: u32) -> Option<&DevicePaths> {
        match class {
            DeviceClass::Vbd => self
                .disks
                .iter()
                .map(BlockDevice::paths)
                .find(|p| p.devid == devid),
            DeviceClass::Vif => self
                .vifs
                .iter()
                .map(NetDevice::paths)
                .find(|p| p.devid == devid),
        }
    }

    /// Creates a backend as at boot (the same constructors write the same
    /// nodes); refuses a device id that is in use, as libxl does when the
    /// frontend directory already exists.
    fn add(&mut self, dev: PvDevice) -> Result<u32, HotplugError> {
        let (class, devid) = match &dev {
            PvDevice::Disk(spec) => (
                DeviceClass::Vbd,
                vdev_to_devid(&spec.vdev).ok_or_else(|| {
                    HotplugError::Create(format!(
                        "Invalid or unsupported virtual disk identifier {}",
                        spec.vdev
                    ))
                })?,
            ),
            PvDevice::Vif(spec) => (DeviceClass::Vif, spec.net.devid),
        };
        let kind = match class {
            DeviceClass::Vbd => DeviceKind::Vbd,
            DeviceClass::Vif => DeviceKind::Vif,
        };
        let paths = DevicePaths::new(kind, self.domid, self.env.backend_domid, devid);
        if self.paths(class, devid).is_some()
            || self.store.read(&paths.frontend_key("backend")).is_ok()
        {
            return Err(HotplugError::Exists);
        }
        match dev {
            PvDevice::Disk(spec) => {
                let d = BlockDevice::create(&self.store, self.env.clone(), self.domid, spec)
                    .map_err(|e| HotplugError::Create(e.to_string()))?;
                self.disks.push(d);
            }
            PvDevice::Vif(spec) => {
                let v = NetDevice::create_with_hotplug(
                    &self.store,
                    self.env.clone(),
                    self.domid,
                    spec.net,
                    &spec.hotplug,
                )
                .map_err(HotplugError::Create)?;
                self.vifs.push(v);
            }
        }
        tracing::info!("{class} {devid} plugged in");
        Ok(devid)
    }

    fn begin_removal(
        &mut self,
        class: DeviceClass,
        devid: u32,
        mode: UnplugMode,
        reply: Sender<Result<Unplugged, HotplugError>>,
    ) {
        if self.paths(class, devid).is_none() {
            let _ = reply.send(Err(HotplugError::NotFound { class, devid }));
            return;
        }
        if self
            .removals
            .iter()
            .any(|r| r.class == class && r.devid == devid)
        {
            let _ = reply.send(Err(HotplugError::Busy { class, devid }));
            return;
        }
        if mode == UnplugMode::Force {
            self.destroy(class, devid);
            let _ = reply.send(Ok(Unplugged::Forced));
            return;
        }
        match class {
            DeviceClass::Vbd => {
                if let Some(d) = self.disks.iter_mut().find(|d| d.paths().devid == devid) {
                    xenbus::begin_removal(d);
                }
            }
            DeviceClass::Vif => {
                if let Some(v) = self.vifs.iter_mut().find(|v| v.paths().devid == devid) {
                    xenbus::begin_removal(v);
                }
            }
        }
        tracing::info!("{class} {devid}: unplugging, waiting for the frontend to close");
        self.removals.push(Removal {
            class,
            devid,
            mode,
            deadline: Instant::now() + REMOVE_TIMEOUT,
            reply,
        });
    }

    /// Destroys the devices whose frontend closed, or whose time is up.
    fn finish_removals(&mut self) {
        let now = Instant::now();
        for r in std::mem::take(&mut self.removals) {
            let state = match r.class {
                DeviceClass::Vbd => self
                    .disks
                    .iter()
                    .find(|d| d.paths().devid == r.devid)
                    .map(XenbusBackend::backend_state),
                DeviceClass::Vif => self
                    .vifs
                    .iter()
                    .find(|v| v.paths().devid == r.devid)
                    .map(XenbusBackend::backend_state),
            };
            let outcome = match state {
                Some(XenbusState::Closed) | None => Unplugged::Closed,
                Some(_) if now >= r.deadline && r.mode == UnplugMode::Safe => {
                    // The device stays, offline: a later unplug (or the
                    // frontend closing after all) can still finish it.
                    let path = self
                        .paths(r.class, r.devid)
                        .map(|p| p.backend.clone())
                        .unwrap_or_default();
                    tracing::warn!(
                        "{} {}: the frontend did not close within {REMOVE_TIMEOUT:?}",
                        r.class,
                        r.devid
                    );
                    let _ = r.reply.send(Err(HotplugError::TimedOut(path)));
                    continue;
                }
                Some(_) if now >= r.deadline => {
                    tracing::warn!(
                        "{} {}: the frontend did not close within {REMOVE_TIMEOUT:?}; forcing the removal",
                        r.class,
                        r.devid
                    );
                    Unplugged::Forced
                }
                Some(_) => {
                    self.removals.push(r);
                    continue;
                }
            };
            self.destroy(r.class, r.devid);
            tracing::info!("{} {} unplugged ({outcome:?})", r.class, r.devid);
            let _ = r.reply.send(Ok(outcome));
        }
    }

    /// Releases the device (grants, event channels, image or TAP, the vif
    /// script's `offline`) and removes its XenStore directories.
    fn destroy(&mut self, class: DeviceClass, devid: u32) {
        match class {
            DeviceClass::Vbd => {
                if let Some(i) = self.disks.iter().position(|d| d.paths().devid == devid) {
                    self.disks.remove(i).destroy();
                }
            }
            DeviceClass::Vif => {
                if let Some(i) = self.vifs.iter().position(|v| v.paths().devid == devid) {
                    self.vifs.remove(i).destroy();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_watch_events_queues_one_wake() {
        let (tx, rx) = mpsc::channel();
        let pending = Arc::new(AtomicBool::new(false));
        let wake = coalescing_wake(tx, pending.clone());
        for _ in 0..10_000 {
            wake();
        }
        assert!(matches!(rx.try_recv(), Ok(Msg::Wake)));
        assert!(rx.try_recv().is_err(), "one wake for the burst");
        // The thread took it and re-reads: the next event wakes it again.
        pending.store(false, Ordering::SeqCst);
        wake();
        wake();
        assert!(matches!(rx.try_recv(), Ok(Msg::Wake)));
        assert!(rx.try_recv().is_err());
    }
}
