//! Additional PV consoles and `channel=` entries (`docs/misc/channels.txt`,
//! `docs/misc/console.txt`): a `console` xenbus device whose frontend
//! grants one `xencons_interface` page (`ring-ref`) and an event channel
//! (`port`). The backend moves bytes between that page and a host end: a
//! pty (its path in the backend's `tty` node), a Unix socket the VMM
//! listens on (one client at a time), or a file (output only).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use xen_emu::guest::{Gpa, GuestMemory};
use xenstore::Engine;

use crate::blkback::conn::RingEnv;
use crate::evtchn::Notify;
use crate::grant::GrantSession;
use crate::xenbus::{self, DeviceKind, DevicePaths, XenbusDevice, XenbusState};

/// Where a console's bytes go on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// A new pseudo-terminal; its path is written to the backend's `tty`.
    Pty,
    /// A Unix socket the backend listens on (`connection=socket,path=`).
    Socket(PathBuf),
    /// Guest output appended to a file; no input.
    File(PathBuf),
}

/// One extra console or channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSpec {
    /// Device id (1.. ; 0 is the primary console, served elsewhere).
    pub devid: u32,
    /// Channel name (`name=`); `None` for a plain extra console.
    pub name: Option<String>,
    pub host: HostEnd,
}

/// `xencons_interface` offsets (`io/console.h`).
const IN: (u64, u32) = (0, 1024);
const OUT: (u64, u32) = (1024, 2048);
const IN_CONS: u64 = 3072;
const IN_PROD: u64 = 3076;
const OUT_CONS: u64 = 3080;
const OUT_PROD: u64 = 3084;
const POLL: Duration = Duration::from_millis(50);

/// Guest output read from the ring, or None when the indices are corrupt.
fn consume_out(mem: &dyn GuestMemory, page: Gpa) -> Option<Vec<u8>> {
    let prod = mem
        .atomic_u32(page + OUT_PROD)
        .ok()?
        .load(Ordering::Acquire);
    let cons_a = mem.atomic_u32(page + OUT_CONS).ok()?;
    let cons = cons_a.load(Ordering::Relaxed);
    let n = prod.wrapping_sub(cons);
    if n > OUT.1 {
        return None;
    }
    let mut out = vec![0u8; n as usize];
    for (i, b) in out.iter_mut().enumerate() {
        let idx = u64::from(cons.wrapping_add(i as u32) % OUT.1);
        let mut one = [0u8];
        mem.read(page + OUT.0 + idx, &mut one).ok()?;
        *b = one[0];
    }
    fence(Ordering::SeqCst);
    cons_a.store(prod, Ordering::Release);
    Some(out)
}

/// Puts host input into the guest's `in` ring; returns how much fitted.
fn produce_in(mem: &dyn GuestMemory, page: Gpa, data: &[u8]) -> Option<usize> {
    let cons = mem.atomic_u32(page + IN_CONS).ok()?.load(Ordering::Acquire);
    let prod_a = mem.atomic_u32(page + IN_PROD).ok()?;
    let prod = prod_a.load(Ordering::Relaxed);
    let used = prod.wrapping_sub(cons);
    if used > IN.1 {
        return None;
    }
    let n = data.len().min((IN.1 - used) as usize);
    for (i, b) in data[..n].iter().enumerate() {
        let idx = u64::from(prod.wrapping_add(i as u32) % IN.1);
        mem.write(page + IN.0 + idx, &[*b]).ok()?;
    }
    fence(Ordering::SeqCst);
    prod_a.store(prod.wrapping_add(n as u32), Ordering::Release);
    Some(n)
}

/// The host end, opened.
enum Host {
    Pty {
        master: File,
    },
    Socket {
        client: Arc<Mutex<Option<UnixStream>>>,
    },
    File(File),
}

fn open_pty() -> std::io::Result<(File, String)> {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: plain calls on our descriptor; ptsname_r writes at most
    // name.len() bytes into the buffer.
    let ok = unsafe {
        libc::grantpt(fd) == 0
            && libc::unlockpt(fd) == 0
            && libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) == 0
    };
    if !ok {
        return Err(std::io::Error::last_os_error());
    }
    // Raw mode, as xenconsoled sets it: bytes pass unchanged and reads on
    // the slave do not wait for a newline.
    // SAFETY: termios is plain data; tcgetattr fills it for our descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
    // SAFETY: ptsname_r NUL-terminated the buffer on success.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((File::from(owned), path))
}

/// One console device.
pub struct ConsoleDevice {
    bus: XenbusDevice,
    env: RingEnv,
    spec: ConsoleSpec,
    host: Option<Arc<Host>>,
    input_rx: Option<Arc<Mutex<Receiver<Vec<u8>>>>>,
    conn: Option<ConsoleConn>,
}

struct ConsoleConn {
    stop: Arc<AtomicBool>,
    wake: Notify,
    thread: Option<JoinHandle<()>>,
    grants: Arc<GrantSession>,
    gref: u32,
    port: u32,
}

impl ConsoleDevice {
    /// Opens the host end and writes the device (frontend and backend
    /// directories, as libxl's `libxl__device_console_add` / channel code).
    pub fn create(
        store: &Engine,
        env: RingEnv,
        frontend_domid: u16,
        spec: ConsoleSpec,
    ) -> Result<Self, String> {
        let paths = DevicePaths::new(
            DeviceKind::Console,
            frontend_domid,
            env.backend_domid,
            spec.devid,
        );
        let (input_tx, input_rx) = mpsc::channel::<Vec<u8>>();
        let mut tty = None;
        let host = match &spec.host {
            HostEnd::Pty => {
                let (master, path) =
                    open_pty().map_err(|e| format!("console {}: pty: {e}", spec.devid))?;
                spawn_reader(master.try_clone().map_err(|e| e.to_string())?, input_tx);
                tty = Some(path);
                Host::Pty { master }
            }
            HostEnd::Socket(path) => {
                let _ = std::fs::remove_file(path);
                let l = UnixListener::bind(path).map_err(|e| {
                    format!(
                        "console {}: listening on {}: {e}",
                        spec.devid,
                        path.display()
                    )
                })?;
                let client = Arc::new(Mutex::new(None));
                spawn_acceptor(l, client.clone(), input_tx);
                Host::Socket { client }
            }
            HostEnd::File(path) => Host::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("console {}: {}: {e}", spec.devid, path.display()))?,
            ),
        };
        let (connection, sock_path) = match &spec.host {
            HostEnd::Socket(p) => ("socket", Some(p.display().to_string())),
            HostEnd::Pty => ("pty", None),
            HostEnd::File(_) => ("file", None),
        };
        let mut front = vec![
            ("limit", "1048576".to_owned()),
            (
                "type",
                if spec.name.is_some() {
                    "ioemu"
                } else {
                    "xenconsoled"
                }
                .to_owned(),
            ),
            ("output", connection.to_owned()),
            ("tty", String::new()),
        ];
        if let Some(n) = &spec.name {
            front.push(("name", n.clone()));
        }
        let mut back = vec![
            ("protocol", "vt100".to_owned()),
            ("connection", connection.to_owned()),
        ];
        if let Some(p) = sock_path {
            back.push(("path", p));
        }
        if let Some(n) = &spec.name {
            back.push(("name", n.clone()));
        }
        if let Some(t) = &tty {
            back.push(("tty", t.clone()));
        }
        xenbus::add_device(store, &paths, &front, &back).map_err(|e| e.to_string())?;
        xenbus::set_backend_state(store, &paths, XenbusState::InitWait);
        Ok(Self {
            bus: XenbusDevice {
                store: store.clone(),
                paths,
                state: XenbusState::InitWait,
            },
            env,
            spec,
            host: Some(Arc::new(host)),
            input_rx: Some(Arc::new(Mutex::new(input_rx))),
            conn: None,
        })
    }

    pub fn paths(&self) -> &DevicePaths {
        &self.bus.paths
    }

    pub fn state(&self) -> XenbusState {
        self.bus.state
    }

    /// The pty's path, if the host end is a pty.
    pub fn tty(&self) -> Option<String> {
        xenbus::read_str(&self.bus.store, &self.bus.paths.backend_key("tty"))
            .filter(|s| !s.is_empty())
    }

    /// The xenbus handshake ([`xenbus::frontend_changed`]); call on every
    /// change of the frontend's state.
    pub fn frontend_changed(&mut self) {
        xenbus::frontend_changed(self);
    }

    fn read_num(&self, key: &str) -> Result<u32, String> {
        xenbus::read_str(&self.bus.store, &self.bus.paths.frontend_key(key))
            .ok_or_else(|| format!("frontend did not write {key}"))?
            .parse()
            .map_err(|_| format!("frontend's {key} is not a number"))
    }

    fn connect(&mut self) -> Result<(), String> {
        self.disconnect();
        let gref = self.read_num("ring-ref")?;
        let port = self.read_num("port")?;
        let grants = Arc::new(GrantSession::new(
            self.env.mem.clone(),
            self.env.grants.clone(),
            self.env.backend_domid,
            false,
        ));
        let page = grants
            .map_ring(&[gref])
            .map_err(|e| format!("mapping the console ring: {e}"))?[0];
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        let wake: Notify = Arc::new(move || {
            let _ = wake_tx.send(());
        });
        if let Err(e) = self.env.evtchn.bind(port, wake.clone()) {
            grants.unmap_ring(&[gref]);
            return Err(format!("binding port {port}: {e}"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (Some(host), Some(input)) = (self.host.clone(), self.input_rx.clone()) else {
            return Err("console host end is gone".into());
        };
        let mem = self.env.mem.clone();
        let evtchn = self.env.evtchn.clone();
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("console{}", self.spec.devid))
            .spawn(move || {
                let mut pending: Vec<u8> = Vec::new();
                while !st.load(Ordering::SeqCst) {
                    let _ = wake_rx.recv_timeout(POLL);
                    let mut notify = false;
                    match consume_out(&*mem, page) {
                        Some(out) if !out.is_empty() => {
                            host.write(&out);
                            notify = true;
                        }
                        Some(_) => {}
                        None => tracing::debug!("console ring indices corrupt"),
                    }
                    if let Ok(rx) = input.lock() {
                        while let Ok(b) = rx.try_recv() {
                            pending.extend_from_slice(&b);
                        }
                    }
                    if !pending.is_empty() {
                        if let Some(n) = produce_in(&*mem, page, &pending) {
                            pending.drain(..n);
                            notify |= n > 0;
                        }
                    }
                    if notify {
                        evtchn.notify(port);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        self.conn = Some(ConsoleConn {
            stop,
            wake,
            thread: Some(thread),
            grants,
            gref,
            port,
        });
        Ok(())
    }

    fn disconnect(&mut self) {
        if let Some(mut c) = self.conn.take() {
            c.stop.store(true, Ordering::SeqCst);
            (c.wake)();
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
            self.env.evtchn.unbind(c.port);
            c.grants.unmap_ring(&[c.gref]);
        }
    }

    /// Removes the device.
    pub fn destroy(mut self) {
        self.disconnect();
        if let (HostEnd::Socket(p), Some(_)) = (&self.spec.host, self.host.take()) {
            let _ = std::fs::remove_file(p);
        }
        xenbus::remove_device(&self.bus.store, &self.bus.paths);
    }
}

impl Host {
    fn write(&self, data: &[u8]) {
        let r = match self {
            Host::Pty { master } => (&*master).write_all(data),
            Host::File(f) => (&*f).write_all(data),
            Host::Socket { client } => {
                let mut c = client.lock().unwrap_or_else(|e| e.into_inner());
                match c.as_mut() {
                    Some(s) => {
                        let r = s.write_all(data);
                        if r.is_err() {
                            *c = None;
                        }
                        r
                    }
                    // Nobody connected: output is dropped, as a pty's
                    // would be with nobody reading.
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = r {
            tracing::debug!("console host end: {e}");
        }
    }
}

/// Reads what is typed at the pty. The thread ends when a read fails; the
/// master stays open as long as the device, so it is detached like the
/// primary console's input reader.
fn spawn_reader(mut f: File, tx: Sender<Vec<u8>>) {
    let _ = std::thread::Builder::new()
        .name("console-pty".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            // Ends when the device (and the master) is gone: read fails.
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
}

fn spawn_acceptor(l: UnixListener, client: Arc<Mutex<Option<UnixStream>>>, tx: Sender<Vec<u8>>) {
    let _ = std::thread::Builder::new()
        .name("console-socket".into())
        .spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let Ok(mut reader) = s.try_clone() else {
                    continue;
                };
                *client.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                let mut buf = [0u8; 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        });
}

impl xenbus::XenbusBackend for ConsoleDevice {
    const CONNECT_ON_INITIALISED: bool = true;
    fn xenbus(&self) -> &XenbusDevice {
        &self.bus
    }
    fn xenbus_mut(&mut self) -> &mut XenbusDevice {
        &mut self.bus
    }
    fn connect(&mut self) -> Result<(), String> {
        ConsoleDevice::connect(self)
    }
    fn disconnect(&mut self) {
        ConsoleDevice::disconnect(self)
    }
}
