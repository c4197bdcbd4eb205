//! The Unix socket front end: every connection is a dom0 client. One
//! thread runs an event loop over all connections (no per-request thread
//! hand-off, no blocking writes): a client that never reads its replies
//! only stops being read from, everybody else carries on. The loop is
//! io_uring's (`uring.rs`) where the kernel allows it, else epoll's
//! (here).

use crate::engine::{ConnId, Engine, ProtocolError, Waker};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Stop reading a client's requests while this many reply bytes wait for
/// it to read them.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;
const LISTENER: u64 = 0;
const WAKER: u64 = 1;

/// A running socket server; [`SocketServer::shutdown`] or drop stops it.
pub struct SocketServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

/// Starts serving `engine` on a new socket at `path` (an existing socket
/// file there is replaced).
pub fn serve(engine: Engine, path: &Path) -> io::Result<SocketServer> {
    SocketServer::start(engine, path)
}

/// Which event loop serves the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// io_uring if the kernel allows it, else epoll.
    #[default]
    Auto,
    /// Always epoll.
    Epoll,
    /// Always io_uring (fails to start without it).
    Uring,
}

impl SocketServer {
    /// Binds `path` and starts the server thread.
    pub fn start(engine: Engine, path: &Path) -> io::Result<SocketServer> {
        Self::start_with(engine, path, Backend::Auto)
    }

    /// [`SocketServer::start`] with a chosen event loop.
    pub fn start_with(engine: Engine, path: &Path, backend: Backend) -> io::Result<SocketServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let wake = Arc::new(EventFd::new()?);
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (wake.clone(), stop.clone());
        // The ring is made on the thread that uses it (SINGLE_ISSUER);
        // the thread reports whether it could start.
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("xenstored-socket".into())
            .spawn(move || {
                let ring = match backend {
                    Backend::Epoll => None,
                    Backend::Uring => match crate::uring::ring() {
                        Ok(r) => Some(r),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    },
                    Backend::Auto => match crate::uring::ring() {
                        Ok(r) => Some(r),
                        Err(e) => {
                            tracing::info!("xenstore socket: no io_uring ({e}); using epoll");
                            None
                        }
                    },
                };
                let result = match ring {
                    Some(ring) => {
                        let _ = tx.send(Ok(()));
                        crate::uring::UringLoop::new(ring, engine, listener, w, s).run()
                    }
                    None => match Loop::new(engine, listener, w, s) {
                        Ok(mut lp) => {
                            let _ = tx.send(Ok(()));
                            lp.run()
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    },
                };
                if let Err(e) = result {
                    tracing::error!("xenstore socket server stopped: {e}");
                }
            })?;
        let started = rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("xenstore socket thread ended at start")));
        if let Err(e) = started {
            let _ = thread.join();
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(SocketServer {
            path: path.to_owned(),
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the server, closes every connection and removes the socket.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    /// Blocks until the server thread ends (after `shutdown` from another
    /// handle, or a fatal error).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// A handle that can stop the server from elsewhere (e.g. a signal
    /// thread).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let (stop, wake) = (self.stop.clone(), self.wake.clone());
        move || {
            stop.store(true, Ordering::SeqCst);
            wake.signal();
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

/// A Linux eventfd used to wake the event loop.
pub(crate) struct EventFd(pub(crate) OwnedFd);

impl EventFd {
    fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our eventfd.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// The engine's waker for client `token` of a socket loop: records the
/// client as having output and signals the loop's eventfd when the list
/// goes from empty to not (one wake-up per batch of watch events).
pub(crate) fn client_waker(woken: &Arc<Mutex<Vec<u64>>>, wake: &Arc<EventFd>, token: u64) -> Waker {
    let (woken, wake) = (woken.clone(), wake.clone());
    Arc::new(move || {
        let mut w = woken.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_empty() {
            wake.signal();
        }
        w.push(token);
    })
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; result checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        // SAFETY: the buffer is valid for events.len() entries.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

/// recv(2) with flags, non-blocking.
fn recv(stream: &UnixStream, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() writable bytes.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

struct Client {
    stream: UnixStream,
    conn: ConnId,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    interest: u32,
}

struct Loop {
    engine: Engine,
    listener: UnixListener,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    epoll: Epoll,
    clients: HashMap<u64, Client>,
    next_token: u64,
    woken: Arc<Mutex<Vec<u64>>>,
    buf: Vec<u8>,
}

impl Loop {
    fn new(
        engine: Engine,
        listener: UnixListener,
        wake: Arc<EventFd>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Loop> {
        let epoll = Epoll::new()?;
        epoll.ctl(
            libc::EPOLL_CTL_ADD,
            listener.as_raw_fd(),
            libc::EPOLLIN as u32,
            LISTENER,
        )?;
        epoll.ctl(
            libc::EPOLL_CTL_ADD,
            wake.0.as_raw_fd(),
            libc::EPOLLIN as u32,
            WAKER,
        )?;
        Ok(Loop {
            engine,
            listener,
            wake,
            stop,
            epoll,
            clients: HashMap::new(),
            next_token: 2,
            woken: Arc::new(Mutex::new(Vec::new())),
            buf: vec![0; READ_CHUNK],
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        while !self.stop.load(Ordering::SeqCst) {
            let n = self.epoll.wait(&mut events)?;
            for ev in &events[..n] {
                let (token, bits) = (ev.u64, ev.events);
                match token {
                    LISTENER => self.accept(),
                    WAKER => self.on_wake(),
                    t => self.on_client(t, bits),
                }
            }
        }
        for (_, c) in self.clients.drain() {
            self.engine.disconnect(c.conn);
        }
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = self.add_client(stream) {
                        tracing::warn!("xenstore socket: cannot add client: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("xenstore socket: accept: {e}");
                    return;
                }
            }
        }
    }

    fn add_client(&mut self, stream: UnixStream) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        let token = self.next_token;
        self.next_token += 1;
        let waker = client_waker(&self.woken, &self.wake, token);
        let conn = self.engine.connect(0, Some(waker));
        let interest = libc::EPOLLIN as u32;
        if let Err(e) = self
            .epoll
            .ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), interest, token)
        {
            self.engine.disconnect(conn);
            return Err(e);
        }
        self.clients.insert(
            token,
            Client {
                stream,
                conn,
                input: Vec::new(),
                output: Vec::new(),
                out_pos: 0,
                interest,
            },
        );
        tracing::debug!(token, "xenstore socket: client connected");
        Ok(())
    }

    fn on_wake(&mut self) {
        self.wake.drain();
        let tokens = std::mem::take(&mut *self.woken.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tokens {
            self.pump(t, false);
        }
    }

    fn on_client(&mut self, token: u64, bits: u32) {
        let readable = bits & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
        self.pump(token, readable);
    }

    /// Reads what is there (if `readable`), processes complete requests,
    /// writes what it can; closes the client on EOF, error or protocol
    /// violation.
    fn pump(&mut self, token: u64, readable: bool) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        let mut eof = false;
        if readable && c.pending_out() < OUTPUT_HIGH_WATER {
            match recv(&c.stream, &mut self.buf, 0) {
                Ok(0) => eof = true,
                Ok(n) => c.input.extend_from_slice(&self.buf[..n]),
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => eof = true,
            }
        }
        let result = c.process(&self.engine);
        let write_ok = c.flush();
        if let Err(e) = &result {
            tracing::warn!(token, "xenstore socket: closing client: {e}");
        }
        if eof || result.is_err() || !write_ok {
            self.close(token);
            return;
        }
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        let mut want = 0;
        if c.pending_out() < OUTPUT_HIGH_WATER {
            want |= libc::EPOLLIN as u32;
        }
        if c.pending_out() > 0 {
            want |= libc::EPOLLOUT as u32;
        }
        if want != c.interest {
            c.interest = want;
            let _ = self
                .epoll
                .ctl(libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), want, token);
        }
    }

    fn close(&mut self, token: u64) {
        if let Some(c) = self.clients.remove(&token) {
            let _ = self
                .epoll
                .ctl(libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), 0, token);
            self.engine.disconnect(c.conn);
            tracing::debug!(token, "xenstore socket: client gone");
        }
    }
}

impl Client {
    fn pending_out(&self) -> usize {
        self.output.len() - self.out_pos
    }

    fn process(&mut self, engine: &Engine) -> Result<(), ProtocolError> {
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
        }
        let budget = OUTPUT_HIGH_WATER.saturating_sub(self.pending_out());
        let used = engine.exchange(self.conn, &self.input, &mut self.output, budget)?;
        self.input.drain(..used);
        Ok(())
    }

    /// Writes as much queued output as the socket takes; false on error.
    fn flush(&mut self) -> bool {
        while self.out_pos < self.output.len() {
            match self.stream.write(&self.output[self.out_pos..]) {
                Ok(0) => return false,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
        }
        true
    }
}
