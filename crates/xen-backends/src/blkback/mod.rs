//! The block backend (`vbd`): one [`BlockDevice`] per `disk=` entry. It
//! writes the device's XenStore directories as libxl and blkback do,
//! follows the frontend through the XenbusState handshake and runs a
//! [`conn::Connection`] while connected.

pub mod conn;
pub mod disk;
mod io;
pub mod qcow2;
mod uring;
mod vectored;

use std::path::PathBuf;
use std::sync::Arc;

use xenstore::Engine;

use crate::blkif::{Abi, MAX_INDIRECT_SEGMENTS};
use crate::xenbus::{self, DeviceKind, DevicePaths, XenbusDevice, XenbusState};
use conn::{ConnectParams, Connection, RingEnv};
use disk::DiskImage;
pub use disk::ImageFormat;

/// `max-ring-page-order` we offer (16 pages, as Linux blkback's default
/// maximum `xen_blkif_max_ring_order`).
pub const MAX_RING_PAGE_ORDER: u32 = 4;
/// `multi-queue-max-queues` we offer.
pub const MAX_QUEUES: u32 = 4;
/// `VDISK_*` bits of the `info` node.
const VDISK_CDROM: u32 = 1;
const VDISK_REMOVABLE: u32 = 2;
const VDISK_READONLY: u32 = 4;

/// One `disk=` entry as the backend needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    /// The image file or block device (`target=`).
    pub path: PathBuf,
    /// Guest device name (`vdev=`), e.g. `xvda`.
    pub vdev: String,
    pub readonly: bool,
    pub cdrom: bool,
    /// `discard` / `no-discard` (libxl default: enabled).
    pub discard: bool,
    /// `format=` (raw or qcow2; never probed from the content).
    pub format: ImageFormat,
}

/// Why a block device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("disk {vdev}: cannot open {path}: {source}")]
    Open {
        vdev: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk {0}: not a valid virtual device name (expected e.g. xvda, hda, sdb)")]
    Vdev(String),
    #[error("disk {vdev}: writing its XenStore nodes: {err}")]
    Store { vdev: String, err: String },
}

/// One virtual block device.
pub struct BlockDevice {
    bus: XenbusDevice,
    env: RingEnv,
    spec: BlockSpec,
    disk: Arc<DiskImage>,
    /// One connection per queue while connected.
    conns: Vec<Connection>,
}

impl BlockDevice {
    /// Opens the image and writes the device into XenStore, ending in
    /// InitWait (the frontend may connect from then on).
    pub fn create(
        store: &Engine,
        env: RingEnv,
        frontend_domid: u16,
        spec: BlockSpec,
    ) -> Result<Self, BlockError> {
        let devid =
            xenbus::vdev_to_devid(&spec.vdev).ok_or_else(|| BlockError::Vdev(spec.vdev.clone()))?;
        let disk =
            DiskImage::open_as(&spec.path, spec.readonly, spec.format).map_err(|source| {
                BlockError::Open {
                    vdev: spec.vdev.clone(),
                    path: spec.path.clone(),
                    source,
                }
            })?;
        let paths = DevicePaths::new(DeviceKind::Vbd, frontend_domid, env.backend_domid, devid);
        let dev = Self {
            bus: XenbusDevice {
                store: store.clone(),
                paths,
                state: XenbusState::Initialising,
            },
            env,
            spec,
            disk: Arc::new(disk),
            conns: Vec::new(),
        };
        dev.write_nodes().map_err(|err| BlockError::Store {
            vdev: dev.spec.vdev.clone(),
            err,
        })?;
        Ok(dev)
    }

    pub fn paths(&self) -> &DevicePaths {
        &self.bus.paths
    }

    pub fn state(&self) -> XenbusState {
        self.bus.state
    }

    fn write_nodes(&self) -> Result<(), String> {
        let s = &self.spec;
        let devtype = if s.cdrom { "cdrom" } else { "disk" };
        let discard = s.discard && !s.readonly;
        let front = [
            ("virtual-device", self.bus.paths.devid.to_string()),
            ("device-type", devtype.to_owned()),
            ("trusted", "1".to_owned()),
        ];
        let mut back = vec![
            ("params", s.path.display().to_string()),
            ("type", "phy".to_owned()),
            ("mode", if s.readonly { "r" } else { "w" }.to_owned()),
            ("device-type", devtype.to_owned()),
            ("removable", u32::from(s.cdrom).to_string()),
            ("bootable", "1".to_owned()),
            ("dev", s.vdev.clone()),
            ("discard-enable", u32::from(discard).to_string()),
            // What blkback adds in its probe and connect.
            ("feature-flush-cache", "1".to_owned()),
            ("feature-barrier", "1".to_owned()),
            ("feature-persistent", "1".to_owned()),
            (
                "feature-max-indirect-segments",
                MAX_INDIRECT_SEGMENTS.to_string(),
            ),
            ("max-ring-page-order", MAX_RING_PAGE_ORDER.to_string()),
            ("multi-queue-max-queues", MAX_QUEUES.to_string()),
        ];
        if discard {
            back.extend([
                ("feature-discard", "1".to_owned()),
                ("discard-granularity", "4096".to_owned()),
                ("discard-alignment", "0".to_owned()),
                ("discard-secure", "0".to_owned()),
            ]);
        }
        back.extend(self.size_nodes());
        xenbus::add_device(&self.bus.store, &self.bus.paths, &front, &back)
            .map_err(|e| e.to_string())?;
        xenbus::set_backend_state(&self.bus.store, &self.bus.paths, XenbusState::InitWait);
        Ok(())
    }

    fn size_nodes(&self) -> Vec<(&'static str, String)> {
        let mut info = 0;
        if self.spec.cdrom {
            info |= VDISK_CDROM | VDISK_REMOVABLE;
        }
        if self.spec.readonly {
            info |= VDISK_READONLY;
        }
        vec![
            ("sectors", self.disk.sectors().to_string()),
            ("sector-size", "512".to_owned()),
            ("physical-sector-size", "512".to_owned()),
            ("info", info.to_string()),
        ]
    }

    /// Reacts to the frontend's state (call on every watch event) and to a
    /// ring that failed: blkback's `frontend_changed`, the common handshake
    /// ([`xenbus::frontend_changed`]) after the ring check.
    pub fn frontend_changed(&mut self) {
        if let Some(msg) = self.conns.iter().find_map(Connection::fatal) {
            self.disconnect();
            xenbus::dev_fatal(&self.bus.store, &self.bus.paths, &msg);
            self.bus.state = XenbusState::Closing;
            return;
        }
        xenbus::frontend_changed(self);
    }

    fn read_front(&self, key: &str) -> Option<String> {
        xenbus::read_str(&self.bus.store, &self.bus.paths.frontend_key(key))
    }

    /// What the frontend wrote: one ring per queue (`multi-queue-num-queues`
    /// with `queue-<n>/` keys, or the keys at the top level for one queue).
    fn connect_params(&self) -> Result<Vec<ConnectParams>, String> {
        let num = |key: &str| -> Result<u32, String> {
            self.read_front(key)
                .ok_or_else(|| format!("frontend did not write {key}"))?
                .parse()
                .map_err(|_| format!("frontend's {key} is not a number"))
        };
        let queues = match self.read_front("multi-queue-num-queues") {
            None => 1,
            Some(_) => num("multi-queue-num-queues")?,
        };
        if queues == 0 || queues > MAX_QUEUES {
            return Err(format!(
                "multi-queue-num-queues {queues} is not within 1..={MAX_QUEUES}"
            ));
        }
        let order = match self.read_front("ring-page-order") {
            Some(_) => Some(num("ring-page-order")?),
            None => None,
        };
        if let Some(o) = order.filter(|&o| o > MAX_RING_PAGE_ORDER) {
            return Err(format!(
                "ring-page-order {o} exceeds max-ring-page-order {MAX_RING_PAGE_ORDER}"
            ));
        }
        let proto = self.read_front("protocol");
        let abi = Abi::from_protocol(proto.as_deref())
            .ok_or_else(|| format!("unknown protocol {proto:?}"))?;
        let persistent = self.read_front("feature-persistent").as_deref() == Some("1");
        let workers = (conn::WORKERS / queues as usize).max(1);
        (0..queues)
            .map(|q| {
                let dir = if queues == 1 {
                    String::new()
                } else {
                    format!("queue-{q}/")
                };
                let ring_refs = match order {
                    Some(o) => (0..1u32 << o)
                        .map(|i| num(&format!("{dir}ring-ref{i}")))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => vec![num(&format!("{dir}ring-ref"))?],
                };
                Ok(ConnectParams {
                    ring_refs,
                    workers,
                    port: num(&format!("{dir}event-channel"))?,
                    abi,
                    persistent,
                })
            })
            .collect()
    }

    fn connect(&mut self) -> Result<(), String> {
        self.disconnect();
        let params = self.connect_params()?;
        tracing::debug!("{}: connecting {params:?}", self.bus.paths);
        let discard = self.spec.discard && !self.spec.readonly;
        for p in params {
            match Connection::connect(&self.env, self.disk.clone(), discard, p) {
                Ok(c) => self.conns.push(c),
                Err(e) => {
                    self.disconnect();
                    return Err(e);
                }
            }
        }
        // Sizes again, as blkback's connect() writes them.
        for (k, v) in self.size_nodes() {
            let _ = self
                .bus
                .store
                .write(&self.bus.paths.backend_key(k), v.as_bytes());
        }
        Ok(())
    }

    fn disconnect(&mut self) {
        for c in self.conns.drain(..) {
            c.disconnect();
        }
    }

    /// Unplugs the device: disconnects and removes both directories.
    pub fn destroy(mut self) {
        self.disconnect();
        xenbus::remove_device(&self.bus.store, &self.bus.paths);
    }
}

impl xenbus::XenbusBackend for BlockDevice {
    const CONNECT_ON_INITIALISED: bool = true;
    fn xenbus(&self) -> &XenbusDevice {
        &self.bus
    }
    fn xenbus_mut(&mut self) -> &mut XenbusDevice {
        &mut self.bus
    }
    fn connect(&mut self) -> Result<(), String> {
        BlockDevice::connect(self)
    }
    fn disconnect(&mut self) {
        BlockDevice::disconnect(self)
    }
}
