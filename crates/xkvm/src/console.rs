//! The guest's primary console as xenconsoled offers it: the VMM serves it
//! on `console.sock`, one client at a time (`xkvm console`); output written
//! while nobody is attached waits (up to [`BACKLOG`] bytes) for the next
//! client, as it would in a pty. The client leaves with Ctrl-].
//!
//! The socket's first line is `OK` or `ERR <reason>`; raw bytes follow.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

/// Output kept for a console client that has not attached yet.
const BACKLOG: usize = 64 * 1024;
/// Ctrl-], xl's console escape character.
pub const ESCAPE: u8 = 0x1d;

#[derive(Default)]
struct Output {
    client: Option<(u64, UnixStream)>,
    backlog: VecDeque<u8>,
    /// Why no client may attach (the console is elsewhere).
    refused: Option<String>,
}

#[derive(Default)]
struct Input {
    bytes: Mutex<VecDeque<u8>>,
    ready: Condvar,
}

/// The VMM side: the socket, the attached client and the buffered bytes.
#[derive(Clone, Default)]
pub struct ConsoleHub {
    out: Arc<Mutex<Output>>,
    input: Arc<Input>,
    next_id: Arc<AtomicU64>,
}

impl ConsoleHub {
    /// Serves `path` until `stop` is set.
    pub fn serve(&self, path: &Path, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let hub = self.clone();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => hub.attach(s),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(e) => {
                            tracing::warn!("console socket: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(())
    }

    fn attach(&self, mut s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = &out.refused {
            let _ = s.write_all(format!("ERR {reason}\n").as_bytes());
            return;
        }
        if out.client.is_some() {
            let _ = s.write_all(b"ERR the console is already in use by another client\n");
            return;
        }
        let backlog: Vec<u8> = out.backlog.drain(..).collect();
        if s.write_all(b"OK\n")
            .and_then(|()| s.write_all(&backlog))
            .is_err()
        {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let Ok(reader) = s.try_clone() else {
            return;
        };
        out.client = Some((id, s));
        drop(out);
        let hub = self.clone();
        let _ = std::thread::Builder::new()
            .name("console-client".into())
            .spawn(move || hub.read_client(id, reader));
    }

    /// Moves a client's keystrokes to the guest until it leaves.
    fn read_client(&self, id: u64, mut s: UnixStream) {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut q = self.input.bytes.lock().unwrap_or_else(|e| e.into_inner());
                    q.extend(&buf[..n]);
                    self.input.ready.notify_all();
                }
            }
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.client.as_ref().is_some_and(|(c, _)| *c == id) {
            out.client = None;
        }
    }

    /// Refuses every client with `reason` (e.g. the console is on the
    /// terminal of `xkvm create -F -c`).
    pub fn refuse_all(&self, reason: &str) {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).refused = Some(reason.to_owned());
    }

    /// The console for one run of the domain; the input side ends (EOF)
    /// when `ended` is set, so a later run's reader gets the next bytes.
    pub fn console_io(&self, ended: Arc<AtomicBool>) -> vmm::ConsoleIo {
        vmm::ConsoleIo {
            input: Some(Box::new(RunInput {
                input: self.input.clone(),
                ended,
            })),
            output: Box::new(HubWriter(self.out.clone())),
        }
    }
}

struct RunInput {
    input: Arc<Input>,
    ended: Arc<AtomicBool>,
}

impl Read for RunInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.input.bytes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.ended.load(Ordering::SeqCst) {
                return Ok(0);
            }
            if !q.is_empty() {
                let n = buf.len().min(q.len());
                for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
                    *b = v;
                }
                return Ok(n);
            }
            q = self
                .input
                .ready
                .wait_timeout(q, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

struct HubWriter(Arc<Mutex<Output>>);

impl Write for HubWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = &mut out.client {
            if s.write_all(buf).is_ok() {
                return Ok(buf.len());
            }
            // The client went away; keep the bytes for the next one.
            out.client = None;
        }
        out.backlog.extend(buf);
        let excess = out.backlog.len().saturating_sub(BACKLOG);
        out.backlog.drain(..excess);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client connected to a domain's console (the VMM said `OK`), not yet
/// copying: `create -c` connects before the guest runs, so that none of
/// its first words are missed, and only then lets it run.
pub struct Attached {
    socket: UnixStream,
    reader: BufReader<UnixStream>,
}

/// Connects to the console at `path` and takes the one client slot.
pub fn connect(path: &Path, domain: &str) -> anyhow::Result<Attached> {
    let socket = UnixStream::connect(path)
        .with_context(|| format!("domain {domain}: its console is not available"))?;
    let mut reader = BufReader::new(socket.try_clone()?);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .with_context(|| format!("domain {domain}: the console closed the connection"))?;
    match status.trim_end() {
        "OK" => Ok(Attached { socket, reader }),
        other => bail!(
            "domain {domain}: {}",
            other
                .strip_prefix("ERR ")
                .unwrap_or("the console refused the connection")
        ),
    }
}

impl Attached {
    /// Copies the console to this terminal and keystrokes back, until
    /// Ctrl-] or until the domain ends (its VMM closes the socket).
    pub fn run(self) -> anyhow::Result<()> {
        let Attached { socket, mut reader } = self;
        let _raw = crate::foreground::RawTerminal::enter()?;
        std::thread::Builder::new()
            .name("console-stdin".into())
            .spawn(move || copy_stdin(socket))?;
        let mut stdout = io::stdout();
        let mut buf = [0u8; 4096];
        loop {
            // What was buffered with the status line first, then the
            // socket. A reset is the VMM going away mid-write: the end.
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            stdout.write_all(&buf[..n])?;
            stdout.flush()?;
        }
        Ok(())
    }
}

/// `xkvm console`: attaches this terminal to the console at `path` until
/// Ctrl-] or until the domain ends.
pub fn attach(path: &Path, domain: &str) -> anyhow::Result<()> {
    connect(path, domain)?.run()
}

/// Keystrokes to the guest; Ctrl-] (or the end of input) detaches.
fn copy_stdin(mut s: UnixStream) {
    let mut stdin = io::stdin();
    let mut buf = [0u8; 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (data, escape) = match buf[..n].iter().position(|&b| b == ESCAPE) {
            Some(i) => (&buf[..i], true),
            None => (&buf[..n], false),
        };
        if s.write_all(data).is_err() || escape {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Both);
}
