//! The domain's PV devices: one xenbus backend per `disk=` entry and per
//! extra console / `channel=` entry and per `vif=` entry, served by
//! one thread that follows the frontends through XenStore watches, plus the
//! glue that gives `xen-backends` the guest's grants and event channels
//! (`xen_emu::Domain`'s backend API; the domain is the one owner of grant
//! pins and the `GTF_reading`/`GTF_writing` flags).

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use xen_backends::blkback::conn::RingEnv;
use xen_backends::blkback::BlockDevice;
use xen_backends::console::ConsoleDevice;
use xen_backends::evtchn::{EventChannels, Notify};
use xen_backends::netback::NetDevice;
use xen_backends::xenbus::Watch;
use xen_emu::Domain;

use crate::memory::DomainMemory;
use crate::{VmConfig, VmmError};

/// One `disk=` entry (see [`xen_backends::blkback::BlockSpec`]).
pub type DiskSpec = xen_backends::blkback::BlockSpec;
/// One extra console or `channel=` entry (see
/// [`xen_backends::console::ConsoleSpec`]).
pub type ConsoleSpec = xen_backends::console::ConsoleSpec;
/// Where a console's bytes go on the host.
pub type ConsoleHost = xen_backends::console::HostEnd;
/// One `vif=` entry (see [`xen_backends::netback::NetSpec`]).
pub use xen_backends::netback::hotplug::NetHotplug;
pub use xen_backends::netback::NetSpec;

/// One `vif=` entry: what the network backend serves, and how libxl would
/// plug the host end in (`script=`, `gatewaydev=`, the store's socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifSpec {
    pub net: NetSpec,
    pub hotplug: NetHotplug,
}

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
}

/// The running device thread.
pub(crate) struct Devices {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Devices {
    /// Creates every configured device (XenStore nodes, images opened) and
    /// starts the thread that runs their handshakes. Nothing to do without
    /// devices.
    pub fn start(
        config: &VmConfig,
        domain: Arc<Domain>,
        mem: Arc<DomainMemory>,
        store: &xenstore::Engine,
    ) -> Result<Option<Self>, VmmError> {
        if config.disks.is_empty() && config.consoles.is_empty() && config.vifs.is_empty() {
            return Ok(None);
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let wake_tx = tx.clone();
        let wake: Notify = Arc::new(move || {
            let _ = wake_tx.send(Msg::Wake);
        });
        let env = RingEnv {
            mem,
            grants: domain.clone(),
            evtchn: Arc::new(DomainEvtchn {
                domain: domain.clone(),
            }),
            backend_domid: domain.config().backend_domid,
            on_fatal: wake.clone(),
        };
        let domid = config.domid as u16;
        let mut disks = Vec::new();
        let mut consoles = Vec::new();
        let mut vifs = Vec::new();
        let created = config
            .disks
            .iter()
            .try_for_each(|spec| {
                BlockDevice::create(store, env.clone(), domid, spec.clone())
                    .map(|d| disks.push(d))
                    .map_err(|e| e.to_string())
            })
            .and_then(|()| {
                config.consoles.iter().try_for_each(|spec| {
                    ConsoleDevice::create(store, env.clone(), domid, spec.clone())
                        .map(|d| consoles.push(d))
                })
            })
            .and_then(|()| {
                config.vifs.iter().try_for_each(|spec| {
                    NetDevice::create_with_hotplug(
                        store,
                        env.clone(),
                        domid,
                        spec.net.clone(),
                        &spec.hotplug,
                    )
                    .map(|d| vifs.push(d))
                })
            });
        if let Err(e) = created {
            disks.into_iter().for_each(BlockDevice::destroy);
            consoles.into_iter().for_each(ConsoleDevice::destroy);
            vifs.into_iter().for_each(NetDevice::destroy);
            return Err(VmmError::Config(e));
        }
        let watch = Watch::new(store, &format!("/local/domain/{domid}/device"), wake)
            .map_err(VmmError::Config)?;
        let thread = std::thread::Builder::new()
            .name("xenbus".into())
            .spawn(move || {
                loop {
                    let stop = matches!(
                        rx.recv_timeout(POLL),
                        Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected)
                    );
                    watch.drain();
                    if stop {
                        break;
                    }
                    for d in &mut disks {
                        d.frontend_changed();
                    }
                    for c in &mut consoles {
                        c.frontend_changed();
                    }
                    for v in &mut vifs {
                        v.frontend_changed();
                    }
                }
                drop(watch);
                disks.into_iter().for_each(BlockDevice::destroy);
                consoles.into_iter().for_each(ConsoleDevice::destroy);
                vifs.into_iter().for_each(NetDevice::destroy);
            })
            .map_err(|e| VmmError::Thread(format!("spawning the xenbus thread: {e}")))?;
        Ok(Some(Self {
            tx,
            thread: Some(thread),
        }))
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
