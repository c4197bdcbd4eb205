//! The xenbus side of a PV device: where its frontend and backend
//! directories live in XenStore, the keys and permissions libxl writes there
//! (`libxl__device_generic_add`), the `XenbusState` handshake values, and a
//! watch that wakes the backend when the frontend changes.

use std::fmt;

use xenstore::perms::Perms;
use xenstore::wire::{push_msg, MsgType};
use xenstore::{ConnId, DomId, Engine, Waker, XsError};

/// `enum xenbus_state` (`io/xenbus.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    /// Parses a `state` node; anything unparsable is `Unknown`, as
    /// `xenbus_read_driver_state` makes of it.
    pub fn parse(bytes: &[u8]) -> Self {
        let n = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        match n {
            Some(1) => Self::Initialising,
            Some(2) => Self::InitWait,
            Some(3) => Self::Initialised,
            Some(4) => Self::Connected,
            Some(5) => Self::Closing,
            Some(6) => Self::Closed,
            Some(7) => Self::Reconfiguring,
            Some(8) => Self::Reconfigured,
            _ => Self::Unknown,
        }
    }

    /// The node's text.
    pub fn as_str(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }
}

/// The device classes this crate serves (the XenStore directory names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Block device (`vbd`, blkif).
    Vbd,
    /// Network interface (`vif`, netif).
    Vif,
    /// Additional console (`console`).
    Console,
}

impl DeviceKind {
    pub fn dir(self) -> &'static str {
        match self {
            Self::Vbd => "vbd",
            Self::Vif => "vif",
            Self::Console => "console",
        }
    }
}

/// One device's two XenStore directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePaths {
    pub kind: DeviceKind,
    pub frontend_domid: DomId,
    pub backend_domid: DomId,
    pub devid: u32,
    /// `/local/domain/<domid>/device/<kind>/<devid>`.
    pub frontend: String,
    /// `/local/domain/<backend>/backend/<kind>/<domid>/<devid>`.
    pub backend: String,
}

impl DevicePaths {
    pub fn new(kind: DeviceKind, frontend_domid: DomId, backend_domid: DomId, devid: u32) -> Self {
        let k = kind.dir();
        Self {
            kind,
            frontend_domid,
            backend_domid,
            devid,
            frontend: format!("/local/domain/{frontend_domid}/device/{k}/{devid}"),
            backend: format!("/local/domain/{backend_domid}/backend/{k}/{frontend_domid}/{devid}"),
        }
    }

    pub fn frontend_key(&self, key: &str) -> String {
        format!("{}/{key}", self.frontend)
    }

    pub fn backend_key(&self, key: &str) -> String {
        format!("{}/{key}", self.backend)
    }
}

impl fmt::Display for DevicePaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.dir(), self.devid)
    }
}

/// Creates both directories as `libxl__device_generic_add` does: the
/// frontend owned by the guest and readable by the backend, the backend
/// owned by the backend domain and readable by the guest; the cross links
/// (`backend`, `backend-id`, `frontend`, `frontend-id`) and `state` =
/// Initialising on both sides; then the device class's own keys. One
/// transaction, so a frontend never sees half a device.
pub fn add_device(
    store: &Engine,
    paths: &DevicePaths,
    front: &[(&str, String)],
    back: &[(&str, String)],
) -> Result<(), XsError> {
    // Owner first (with everybody else's access), then the other side.
    let perms = |owner: DomId, reader: DomId| {
        let o = format!("n{owner}");
        let r = format!("r{reader}");
        Perms::parse([o.as_bytes(), r.as_bytes()])
    };
    let front_perms = perms(paths.frontend_domid, paths.backend_domid)?;
    let back_perms = perms(paths.backend_domid, paths.frontend_domid)?;
    store.transaction(|t| {
        let _ = t.rm(&paths.frontend);
        let _ = t.rm(&paths.backend);
        t.mkdir(&paths.frontend)?;
        t.set_perms(&paths.frontend, &front_perms)?;
        t.mkdir(&paths.backend)?;
        t.set_perms(&paths.backend, &back_perms)?;
        let init = XenbusState::Initialising.as_str().as_bytes();
        t.write(&paths.frontend_key("backend"), paths.backend.as_bytes())?;
        t.write(
            &paths.frontend_key("backend-id"),
            paths.backend_domid.to_string().as_bytes(),
        )?;
        t.write(&paths.frontend_key("state"), init)?;
        for (k, v) in front {
            t.write(&paths.frontend_key(k), v.as_bytes())?;
        }
        t.write(&paths.backend_key("frontend"), paths.frontend.as_bytes())?;
        t.write(
            &paths.backend_key("frontend-id"),
            paths.frontend_domid.to_string().as_bytes(),
        )?;
        t.write(&paths.backend_key("online"), b"1")?;
        t.write(&paths.backend_key("state"), init)?;
        for (k, v) in back {
            t.write(&paths.backend_key(k), v.as_bytes())?;
        }
        Ok(())
    })
}

/// Removes both directories (device unplug / domain teardown) and, as
/// libxl's `libxl__xs_path_cleanup` does, the parents left empty
/// (`device/vbd`, `backend/vbd/<domid>`, `backend/vbd`), stopping at the
/// domain's `device` and the backend domain's `backend` directories.
pub fn remove_device(store: &Engine, paths: &DevicePaths) {
    let front_top = format!("/local/domain/{}/device", paths.frontend_domid);
    let back_top = format!("/local/domain/{}/backend", paths.backend_domid);
    for (path, top) in [(&paths.frontend, front_top), (&paths.backend, back_top)] {
        let _ = store.rm(path);
        let mut dir = path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if parent.len() <= top.len() || !store.directory(parent).is_ok_and(|d| d.is_empty()) {
                break;
            }
            let _ = store.rm(parent);
            dir = parent;
        }
    }
}

/// Reads a node as trimmed text.
pub fn read_str(store: &Engine, path: &str) -> Option<String> {
    let v = store.read(path).ok()?;
    String::from_utf8(v)
        .ok()
        .map(|s| s.trim_end_matches('\0').trim().to_owned())
}

/// Reads a node as an unsigned number.
pub fn read_u64(store: &Engine, path: &str) -> Option<u64> {
    read_str(store, path)?.parse().ok()
}

/// The frontend's state (`Unknown` when the node is missing: the
/// frontend directory went away).
pub fn frontend_state(store: &Engine, paths: &DevicePaths) -> XenbusState {
    store
        .read(&paths.frontend_key("state"))
        .map_or(XenbusState::Unknown, |v| XenbusState::parse(&v))
}

/// Sets the backend's `state` node.
pub fn set_backend_state(store: &Engine, paths: &DevicePaths, s: XenbusState) {
    if let Err(e) = store.write(&paths.backend_key("state"), s.as_str().as_bytes()) {
        tracing::warn!("{paths}: writing backend state {s:?}: {e}");
    }
}

/// A backend device as the xenbus handshake sees it: where its nodes are,
/// the state it last published, and the two things only the device knows
/// how to do. [`frontend_changed`] runs the protocol for every backend.
/// The xenbus side of a backend device: the store it lives in, its paths
/// and the backend state it last published.
pub struct XenbusDevice {
    pub store: Engine,
    pub paths: DevicePaths,
    pub state: XenbusState,
}

pub trait XenbusBackend {
    /// Whether the frontend's `Initialised` starts the connection (blkback,
    /// console) or only its `Connected` does (netback, whose frontend
    /// publishes its rings before switching to Connected).
    const CONNECT_ON_INITIALISED: bool;
    fn xenbus(&self) -> &XenbusDevice;
    fn xenbus_mut(&mut self) -> &mut XenbusDevice;
    /// Maps the frontend's rings and event channels.
    fn connect(&mut self) -> Result<(), String>;
    /// Stops serving and unmaps everything `connect` mapped; idempotent.
    fn disconnect(&mut self);

    fn store(&self) -> &Engine {
        &self.xenbus().store
    }
    fn paths(&self) -> &DevicePaths {
        &self.xenbus().paths
    }
    fn backend_state(&self) -> XenbusState {
        self.xenbus().state
    }
    /// Records `s` as the state last published (or implied, after a
    /// [`dev_fatal`]).
    fn record_state(&mut self, s: XenbusState) {
        self.xenbus_mut().state = s;
    }
}

/// Publishes backend state `s` and records it.
fn publish<B: XenbusBackend>(dev: &mut B, s: XenbusState) {
    dev.record_state(s);
    set_backend_state(dev.store(), dev.paths(), s);
}

/// Whether the toolstack still wants the device (the backend's `online`
/// node is not `0`). An offline device that closes stays closed: Linux's
/// backends unregister it instead of offering InitWait again.
pub fn is_online(store: &Engine, paths: &DevicePaths) -> bool {
    read_str(store, &paths.backend_key("online")).as_deref() != Some("0")
}

/// Starts an unplug as libxl's `libxl__initiate_device_generic_remove`
/// does: `online` = 0 and the backend in Closing, so the frontend closes
/// its end. The device is ready to be destroyed once
/// [`backend_state`](XenbusBackend::backend_state) is Closed, which
/// [`frontend_changed`] publishes when the frontend reaches Closed (or its
/// directory is gone). A frontend that is already closed finishes at once.
pub fn begin_removal<B: XenbusBackend>(dev: &mut B) {
    if let Err(e) = dev.store().write(&dev.paths().backend_key("online"), b"0") {
        tracing::warn!("{}: writing online=0: {e}", dev.paths());
    }
    if dev.backend_state() != XenbusState::Closed {
        publish(dev, XenbusState::Closing);
    }
    frontend_changed(dev);
}

/// The backend side of the XenbusState handshake, run on every change of
/// the frontend's `state` (Linux's `frontend_changed` in blkback/netback):
/// connect when the frontend is ready, follow it to Closing and Closed, and
/// offer InitWait again when a closed frontend starts over (a bootloader
/// handing the device to the kernel, a frontend reset).
pub fn frontend_changed<B: XenbusBackend>(dev: &mut B) {
    let ours = dev.backend_state();
    match frontend_state(dev.store(), dev.paths()) {
        XenbusState::Initialising
            if matches!(ours, XenbusState::Closed | XenbusState::Closing)
                && is_online(dev.store(), dev.paths()) =>
        {
            dev.disconnect();
            publish(dev, XenbusState::InitWait);
        }
        XenbusState::Initialised if !B::CONNECT_ON_INITIALISED => {}
        XenbusState::Initialised | XenbusState::Connected => {
            if matches!(ours, XenbusState::Connected | XenbusState::Closing)
                || !is_online(dev.store(), dev.paths())
            {
                return;
            }
            match dev.connect() {
                Ok(()) => publish(dev, XenbusState::Connected),
                Err(e) => {
                    dev_fatal(dev.store(), dev.paths(), &e);
                    dev.record_state(XenbusState::Closing);
                }
            }
        }
        XenbusState::Closing => {
            dev.disconnect();
            if ours != XenbusState::Closing {
                publish(dev, XenbusState::Closing);
            }
        }
        XenbusState::Closed | XenbusState::Unknown => {
            dev.disconnect();
            if ours != XenbusState::Closed {
                publish(dev, XenbusState::Closed);
            }
        }
        _ => {}
    }
}

/// Reports a fatal device error as `xenbus_dev_fatal` does: the message in
/// `error/<backend path>/error` of the backend domain, and the device
/// moves to Closing.
pub fn dev_fatal(store: &Engine, paths: &DevicePaths, msg: &str) {
    tracing::warn!("{paths}: {msg}");
    let node = format!(
        "/local/domain/{}/error{}/error",
        paths.backend_domid, paths.backend
    );
    let _ = store.write(&node, msg.as_bytes());
    set_backend_state(store, paths, XenbusState::Closing);
}

/// A XenStore watch held by a backend (a privileged connection of its
/// own). The engine calls `waker` whenever an event is queued; the owner
/// then calls [`Watch::drain`] and re-reads whatever it watches.
pub struct Watch {
    store: Engine,
    conn: ConnId,
}

impl Watch {
    /// Watches `path` (and everything below it).
    pub fn new(store: &Engine, path: &str, waker: Waker) -> Result<Self, String> {
        let conn = store.connect(0, Some(waker));
        let mut msg = Vec::new();
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        push_msg(&mut msg, MsgType::Watch as u32, 1, 0, &[&p, b"xkvm\0"]);
        store
            .feed(conn, &msg, usize::MAX)
            .map_err(|e| format!("watching {path}: {e:?}"))?;
        let w = Self {
            store: store.clone(),
            conn,
        };
        w.drain();
        Ok(w)
    }

    /// Throws away the queued replies and events (the owner re-reads state).
    pub fn drain(&self) -> bool {
        let mut out = Vec::new();
        self.store.take_output(self.conn, &mut out)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.store.disconnect(self.conn);
    }
}

/// The Xen device number of a virtual device name, as
/// `libxl__device_disk_dev_number` computes it (`xen-vbd-interface(7)`):
/// `xvdX[N]`, `hdX[N]`, `sdX[N]`, `dN[pM]` or a plain number.
pub fn vdev_to_devid(vdev: &str) -> Option<u32> {
    if let Ok(n) = vdev.parse::<u32>() {
        return Some(n);
    }
    if let Some(rest) = vdev.strip_prefix('d') {
        let (disk, part) = match rest.split_once('p') {
            Some((d, p)) => (d.parse::<u32>().ok()?, p.parse::<u32>().ok()?),
            None => (rest.parse::<u32>().ok()?, 0),
        };
        return xvd_number(disk, part);
    }
    let (prefix, rest) = ["xvd", "hd", "sd"]
        .iter()
        .find_map(|p| vdev.strip_prefix(p).map(|r| (*p, r)))?;
    let letters: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    let digits = &rest[letters.len()..];
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    // Bijective base 26: a=0 .. z=25, aa=26 ...
    let mut disk: u32 = 0;
    for c in letters.bytes() {
        disk = disk * 26 + u32::from(c - b'a' + 1);
    }
    let disk = disk - 1;
    let part = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().ok()?
    };
    match prefix {
        "xvd" => xvd_number(disk, part),
        "hd" if disk < 4 && part < 64 => {
            let major = [3, 3, 22, 22][disk as usize];
            Some((major << 8) | ((disk % 2) << 6) | part)
        }
        "sd" if disk < 16 && part < 16 => Some((8 << 8) | (disk << 4) | part),
        _ => None,
    }
}

fn xvd_number(disk: u32, part: u32) -> Option<u32> {
    if disk < 16 && part < 16 {
        Some((202 << 8) | (disk << 4) | part)
    } else if disk < (1 << 20) && part < 256 {
        Some((1 << 28) | (disk << 8) | part)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenstore::perms::access;

    #[test]
    fn vdev_names_map_to_xen_device_numbers() {
        assert_eq!(vdev_to_devid("xvda"), Some(51712));
        assert_eq!(vdev_to_devid("xvdb"), Some(51728));
        assert_eq!(vdev_to_devid("xvda1"), Some(51713));
        assert_eq!(vdev_to_devid("hda"), Some(768));
        assert_eq!(vdev_to_devid("hdc"), Some(5632));
        assert_eq!(vdev_to_devid("sdb"), Some(2064));
        assert_eq!(vdev_to_devid("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(vdev_to_devid("d0p1"), Some(51713));
        assert_eq!(vdev_to_devid("51712"), Some(51712));
        assert_eq!(vdev_to_devid("xvd"), None);
        assert_eq!(vdev_to_devid("floppy"), None);
    }

    #[test]
    fn device_directories_get_libxls_permissions() {
        let xs = Engine::default();
        xs.introduce_domain(3);
        let p = DevicePaths::new(DeviceKind::Vbd, 3, 0, 51712);
        add_device(&xs, &p, &[("virtual-device", "51712".into())], &[]).expect("add");
        assert_eq!(
            read_str(&xs, "/local/domain/3/device/vbd/51712/backend").as_deref(),
            Some("/local/domain/0/backend/vbd/3/51712")
        );
        assert_eq!(frontend_state(&xs, &p), XenbusState::Initialising);
        let fp = xs.get_perms(&p.frontend).expect("perms");
        assert_eq!(fp.owner(), 3);
        assert_eq!(fp.access_for(0, false, None) & access::READ, access::READ);
        let bp = xs.get_perms(&p.backend).expect("perms");
        assert_eq!(bp.owner(), 0);
        assert_eq!(bp.access_for(3, false, None) & access::WRITE, 0);
        assert_eq!(bp.access_for(3, false, None) & access::READ, access::READ);
    }

    #[test]
    fn removing_the_last_device_cleans_empty_parents_only() {
        let xs = Engine::default();
        let a = DevicePaths::new(DeviceKind::Vbd, 3, 0, 51712);
        let b = DevicePaths::new(DeviceKind::Vbd, 3, 0, 51728);
        add_device(&xs, &a, &[], &[]).expect("add");
        add_device(&xs, &b, &[], &[]).expect("add");
        remove_device(&xs, &a);
        assert!(xs.read(&a.frontend_key("state")).is_err());
        assert!(xs.read(&b.frontend_key("state")).is_ok(), "the other stays");
        remove_device(&xs, &b);
        assert!(xs.directory("/local/domain/3/device/vbd").is_err());
        assert!(xs.directory("/local/domain/0/backend/vbd").is_err());
        assert!(xs.directory("/local/domain/3/device").is_ok());
        assert!(xs.directory("/local/domain/0/backend").is_ok());
    }

    #[test]
    fn watch_wakes_on_frontend_state_change() {
        let xs = Engine::default();
        let p = DevicePaths::new(DeviceKind::Vbd, 3, 0, 51712);
        add_device(&xs, &p, &[], &[]).expect("add");
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        let w = Watch::new(
            &xs,
            &p.frontend_key("state"),
            std::sync::Arc::new(move || {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
        )
        .expect("watch");
        let before = hits.load(std::sync::atomic::Ordering::SeqCst);
        xs.write(&p.frontend_key("state"), b"3").expect("write");
        assert!(hits.load(std::sync::atomic::Ordering::SeqCst) > before);
        assert!(w.drain());
        assert_eq!(frontend_state(&xs, &p), XenbusState::Initialised);
    }

    /// A device that only counts what the handshake asks of it.
    struct Probe<const ON_INIT: bool> {
        bus: XenbusDevice,
        connects: u32,
        disconnects: u32,
        fail: bool,
    }

    impl<const ON_INIT: bool> XenbusBackend for Probe<ON_INIT> {
        const CONNECT_ON_INITIALISED: bool = ON_INIT;
        fn xenbus(&self) -> &XenbusDevice {
            &self.bus
        }
        fn xenbus_mut(&mut self) -> &mut XenbusDevice {
            &mut self.bus
        }
        fn connect(&mut self) -> Result<(), String> {
            self.connects += 1;
            if self.fail {
                Err("ring-ref missing".into())
            } else {
                Ok(())
            }
        }
        fn disconnect(&mut self) {
            self.disconnects += 1;
        }
    }

    fn probe<const ON_INIT: bool>(fail: bool) -> Probe<ON_INIT> {
        let store = Engine::default();
        let paths = DevicePaths::new(DeviceKind::Vif, 3, 0, 0);
        add_device(&store, &paths, &[], &[]).expect("add");
        set_backend_state(&store, &paths, XenbusState::InitWait);
        Probe {
            bus: XenbusDevice {
                store,
                paths,
                state: XenbusState::InitWait,
            },
            connects: 0,
            disconnects: 0,
            fail,
        }
    }

    fn frontend_moves_to<const ON_INIT: bool>(p: &mut Probe<ON_INIT>, s: XenbusState) {
        let key = p.bus.paths.frontend_key("state");
        p.bus
            .store
            .write(&key, s.as_str().as_bytes())
            .expect("write");
        frontend_changed(p);
    }

    fn published<const ON_INIT: bool>(p: &Probe<ON_INIT>) -> String {
        read_str(&p.bus.store, &p.bus.paths.backend_key("state")).unwrap_or_default()
    }

    #[test]
    fn handshake_connects_once_then_follows_the_frontend_down_and_back() {
        let mut p = probe::<true>(false);
        frontend_moves_to(&mut p, XenbusState::Initialised);
        assert_eq!((p.connects, p.bus.state), (1, XenbusState::Connected));
        assert_eq!(published(&p), XenbusState::Connected.as_str());
        frontend_moves_to(&mut p, XenbusState::Connected);
        assert_eq!(p.connects, 1, "connected once, not per frontend change");
        frontend_moves_to(&mut p, XenbusState::Closing);
        assert_eq!(p.bus.state, XenbusState::Closing);
        frontend_moves_to(&mut p, XenbusState::Closed);
        assert_eq!(published(&p), XenbusState::Closed.as_str());
        // A frontend that starts over (bootloader to kernel) gets InitWait.
        frontend_moves_to(&mut p, XenbusState::Initialising);
        assert_eq!(published(&p), XenbusState::InitWait.as_str());
        frontend_moves_to(&mut p, XenbusState::Initialised);
        assert_eq!((p.connects, p.bus.state), (2, XenbusState::Connected));
        assert!(p.disconnects >= 2);
    }

    #[test]
    fn a_backend_that_waits_for_connected_ignores_initialised() {
        let mut p = probe::<false>(false);
        frontend_moves_to(&mut p, XenbusState::Initialised);
        assert_eq!((p.connects, p.bus.state), (0, XenbusState::InitWait));
        frontend_moves_to(&mut p, XenbusState::Connected);
        assert_eq!((p.connects, p.bus.state), (1, XenbusState::Connected));
    }

    #[test]
    fn removal_waits_for_the_frontend_to_close_and_never_reopens() {
        let mut p = probe::<true>(false);
        frontend_moves_to(&mut p, XenbusState::Initialised);
        assert_eq!(p.bus.state, XenbusState::Connected);
        begin_removal(&mut p);
        assert_eq!(
            read_str(&p.bus.store, &p.bus.paths.backend_key("online")).as_deref(),
            Some("0")
        );
        assert_eq!(published(&p), XenbusState::Closing.as_str());
        assert_eq!(p.disconnects, 0, "I/O goes on until the frontend closes");
        frontend_moves_to(&mut p, XenbusState::Connected);
        assert_eq!(p.bus.state, XenbusState::Closing, "still waiting");
        frontend_moves_to(&mut p, XenbusState::Closed);
        assert_eq!(p.bus.state, XenbusState::Closed);
        assert_eq!(published(&p), XenbusState::Closed.as_str());
        assert!(p.disconnects >= 1);
        // An offline device is not offered again, whatever the frontend does.
        frontend_moves_to(&mut p, XenbusState::Initialising);
        assert_eq!(published(&p), XenbusState::Closed.as_str());
        frontend_moves_to(&mut p, XenbusState::Initialised);
        assert_eq!((p.connects, p.bus.state), (1, XenbusState::Closed));
    }

    #[test]
    fn removing_a_device_whose_frontend_is_gone_finishes_at_once() {
        let mut p = probe::<false>(false);
        p.bus.store.rm(&p.bus.paths.frontend).expect("rm frontend");
        begin_removal(&mut p);
        assert_eq!(p.bus.state, XenbusState::Closed);
        assert_eq!(published(&p), XenbusState::Closed.as_str());
    }

    #[test]
    fn a_failed_connect_is_fatal_and_does_not_retry_until_a_reset() {
        let mut p = probe::<true>(true);
        frontend_moves_to(&mut p, XenbusState::Initialised);
        assert_eq!(p.bus.state, XenbusState::Closing);
        assert_eq!(published(&p), XenbusState::Closing.as_str());
        let err = read_str(
            &p.bus.store,
            "/local/domain/0/error/local/domain/0/backend/vif/3/0/error",
        );
        assert_eq!(err.as_deref(), Some("ring-ref missing"));
        frontend_moves_to(&mut p, XenbusState::Connected);
        assert_eq!(p.connects, 1, "no retry while Closing");
    }
}
