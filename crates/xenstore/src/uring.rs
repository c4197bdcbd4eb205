//! The Unix socket front end's io_uring event loop (the default; the
//! epoll loop in `socket.rs` is the fallback where io_uring is missing or
//! forbidden).
//!
//! Why: with clients that keep one request in flight, the daemon's CPU per
//! request is kernel crossings and wake-ups, not the store. Here a request
//! costs one `io_uring_enter`, which sends the previous reply, consumes
//! the request and waits for the next one; with many clients, one enter
//! covers every client that was ready.
//!
//! A request is first *peeked* (`MSG_PEEK`) and only consumed, queued
//! behind the reply's send, once the reply is out. Consuming a Unix
//! socket message frees the sender's buffer, which wakes a sender blocked
//! in `recv` waiting for its reply — a wake-up for nothing (on an idle
//! machine, a cross-CPU interrupt) if it comes before the reply. After the
//! reply, the client is already awake and nothing is woken twice.
//!
//! Ownership of buffers: every queued operation points into its client's
//! heap buffers (`rbuf`, `out`), which are neither moved nor touched until
//! the operation completes; a closing client is shut down (so its
//! operations complete at once) and freed only when none is in flight.

use crate::engine::{ConnId, Engine};
use io_uring::{opcode, squeue, types, IoUring};
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::socket::{client_waker, EventFd};

/// Stop reading a client's requests while this many reply bytes wait for
/// it to read them (as the epoll loop).
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// A receive buffer holds at least one maximal message (header plus 4096
/// payload bytes); a client that pipelines more is served a buffer at a
/// time.
const RBUF_LEN: usize = 8192;
const RING_ENTRIES: u32 = 256;

// What a completion is for: the low byte of its user data; the rest is
// the client's token.
const K_PEEK: u64 = 1;
const K_RECV: u64 = 2;
const K_CONSUME: u64 = 3;
const K_SEND: u64 = 4;
const K_ACCEPT: u64 = 5;
const K_WAKE: u64 = 6;
const LISTENER: u64 = 0;

fn ud(token: u64, kind: u64) -> u64 {
    (token << 8) | kind
}

/// Creates the ring for the calling thread (which must be the only one
/// to use it: SINGLE_ISSUER lets the kernel skip locking, DEFER_TASKRUN
/// runs completions only when we wait for them, in one batch). Fails
/// where io_uring is unavailable; the caller then uses epoll.
pub(crate) fn ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(RING_ENTRIES)
}

struct Client {
    stream: UnixStream,
    conn: ConnId,
    /// Consumed bytes that do not yet form a whole message.
    input: Vec<u8>,
    /// Target of the in-flight peek, receive or consume.
    rbuf: Box<[u8]>,
    /// The reply bytes being sent (untouched while a send is in flight).
    out: Vec<u8>,
    out_pos: usize,
    /// Replies produced while a send is in flight.
    pending: Vec<u8>,
    /// A peek or receive is queued (possibly behind a consume).
    reading: bool,
    /// A consume of peeked bytes is queued.
    consuming: bool,
    /// How many bytes that consume must take.
    consume_len: u32,
    sending: bool,
    /// Operations queued and not completed.
    inflight: u32,
    closing: bool,
}

impl Client {
    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos + self.pending.len()
    }
}

pub(crate) struct UringLoop {
    ring: IoUring,
    engine: Engine,
    listener: UnixListener,
    wake: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    clients: HashMap<u64, Client>,
    next_token: u64,
    woken: Arc<Mutex<Vec<u64>>>,
    cqes: Vec<(u64, i32)>,
}

impl UringLoop {
    pub(crate) fn new(
        ring: IoUring,
        engine: Engine,
        listener: UnixListener,
        wake: Arc<EventFd>,
        stop: Arc<AtomicBool>,
    ) -> UringLoop {
        UringLoop {
            ring,
            engine,
            listener,
            wake,
            stop,
            clients: HashMap::new(),
            next_token: 1,
            woken: Arc::new(Mutex::new(Vec::new())),
            cqes: Vec::new(),
        }
    }

    /// Queues one operation, submitting first if the queue is full.
    ///
    /// Every caller passes an entry whose buffers belong to a client that
    /// stays alive (and leaves them alone) until the entry's completion.
    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entry's buffers outlive the operation (see the
            // caller's contract above and the module comment).
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_listener(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let e = opcode::PollAdd::new(fd, libc::POLLIN as u32)
            .build()
            .user_data(ud(LISTENER, K_ACCEPT));
        self.push(e)
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.wake.0.as_raw_fd());
        let e = opcode::PollAdd::new(fd, libc::POLLIN as u32)
            .build()
            .user_data(ud(LISTENER, K_WAKE));
        self.push(e)
    }

    pub(crate) fn run(&mut self) -> io::Result<()> {
        self.arm_listener()?;
        self.arm_wake()?;
        while !self.stop.load(Ordering::SeqCst) {
            self.wait()?;
            let cqes = std::mem::take(&mut self.cqes);
            for &(data, res) in &cqes {
                self.complete(data >> 8, data & 0xff, res);
            }
            self.cqes = cqes;
            self.on_woken();
        }
        self.drain();
        Ok(())
    }

    /// Submits what is queued and waits for at least one completion.
    fn wait(&mut self) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // EBUSY: completions must be reaped before more can be posted.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        self.cqes.clear();
        self.cqes
            .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        Ok(())
    }

    /// Closes every client and waits until none of their operations can
    /// still touch their buffers.
    fn drain(&mut self) {
        let tokens: Vec<u64> = self.clients.keys().copied().collect();
        for t in tokens {
            self.close(t);
        }
        let mut rounds = 0;
        while !self.clients.is_empty() && rounds < 1000 {
            rounds += 1;
            if self.wait().is_err() {
                break;
            }
            let cqes = std::mem::take(&mut self.cqes);
            for &(data, res) in &cqes {
                self.complete(data >> 8, data & 0xff, res);
            }
        }
        if !self.clients.is_empty() {
            // Cannot happen after shutdown(2); never free buffers the
            // kernel may still write.
            tracing::error!("xenstore socket: operations outstanding at exit");
            std::mem::forget(std::mem::take(&mut self.clients));
        }
    }

    fn complete(&mut self, token: u64, kind: u64, res: i32) {
        match kind {
            K_ACCEPT => {
                self.accept();
                if let Err(e) = self.arm_listener() {
                    tracing::error!("xenstore socket: cannot poll the listener: {e}");
                }
                return;
            }
            K_WAKE => {
                self.wake.drain();
                if let Err(e) = self.arm_wake() {
                    tracing::error!("xenstore socket: cannot poll the waker: {e}");
                }
                return;
            }
            _ => {}
        }
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        c.inflight -= 1;
        if c.closing {
            if kind == K_SEND {
                c.sending = false;
            }
            if c.inflight == 0 {
                self.clients.remove(&token);
                tracing::debug!(token, "xenstore socket: client gone");
            }
            return;
        }
        let ok = match kind {
            K_PEEK | K_RECV => self.on_read(token, kind == K_PEEK, res),
            K_CONSUME => {
                c.consuming = false;
                res >= 0 && res as u32 == c.consume_len && self.read(token).is_ok()
            }
            K_SEND => self.on_sent(token, res),
            _ => true,
        };
        if !ok {
            self.close(token);
        }
    }

    /// A peek or receive completed with `res` bytes in `rbuf`.
    fn on_read(&mut self, token: u64, peeked: bool, res: i32) -> bool {
        let Some(c) = self.clients.get_mut(&token) else {
            return false;
        };
        c.reading = false;
        if peeked && c.consuming {
            // Peeked before the previous consume completed: these may be
            // old bytes. The consume's completion peeks again.
            return true;
        }
        if res == -libc::EINTR || res == -libc::EAGAIN {
            return self.read(token).is_ok();
        }
        if res <= 0 {
            return false;
        }
        let n = res as usize;
        let budget = OUTPUT_HIGH_WATER.saturating_sub(c.pending_out());
        let result = if peeked {
            // Peeks happen only with `input` empty: the buffer is the
            // whole input.
            let r = self
                .engine
                .exchange(c.conn, &c.rbuf[..n], &mut c.pending, budget);
            if let Ok(used) = r {
                c.input.extend_from_slice(&c.rbuf[used.min(n)..n]);
            }
            r.map(|_| ())
        } else {
            c.input.extend_from_slice(&c.rbuf[..n]);
            let r = self
                .engine
                .exchange(c.conn, &c.input, &mut c.pending, budget);
            if let Ok(used) = r {
                c.input.drain(..used.min(c.input.len()));
            }
            r.map(|_| ())
        };
        if let Err(e) = result {
            tracing::warn!(token, "xenstore socket: closing client: {e}");
            return false;
        }
        // The reply first, then the consume of the peeked bytes and the
        // next read: see the module comment.
        if self.send(token).is_err() {
            return false;
        }
        let Some(c) = self.clients.get_mut(&token) else {
            return false;
        };
        let more = c.pending_out() < OUTPUT_HIGH_WATER;
        if peeked {
            let fd = types::Fd(c.stream.as_raw_fd());
            // The peeked bytes are in the socket, so the consume takes all
            // `n` at once (a short one would be a kernel bug; the client is
            // then closed rather than served twice). MSG_WAITALL would say
            // so too, but makes io_uring hand the receive to a worker thread.
            // Not linked to the next peek (io_uring hands linked receives
            // to a worker thread): queued in order, the consume completes
            // inline before the peek is tried, and a peek that completes
            // before its consume did is discarded (see `on_read`).
            let e = opcode::Recv::new(fd, c.rbuf.as_mut_ptr(), n as u32)
                .build()
                .user_data(ud(token, K_CONSUME));
            c.inflight += 1;
            c.consuming = true;
            c.consume_len = n as u32;
            if self.push(e).is_err() {
                return false;
            }
        }
        if more {
            return self.read(token).is_ok();
        }
        true
    }

    /// Queues the next peek (or receive, when a partial message is
    /// waiting for the rest) unless one is queued or output is backed up.
    fn read(&mut self, token: u64) -> io::Result<()> {
        let Some(c) = self.clients.get_mut(&token) else {
            return Ok(());
        };
        if c.reading || c.closing || c.pending_out() >= OUTPUT_HIGH_WATER {
            return Ok(());
        }
        let (flags, kind) = if c.input.is_empty() {
            (libc::MSG_PEEK, K_PEEK)
        } else if c.consuming {
            // A receive must not overtake the consume (it would take the
            // consume's bytes); the consume's completion reads again.
            return Ok(());
        } else {
            (0, K_RECV)
        };
        let fd = types::Fd(c.stream.as_raw_fd());
        let e = opcode::Recv::new(fd, c.rbuf.as_mut_ptr(), c.rbuf.len() as u32)
            .flags(flags)
            .build()
            .user_data(ud(token, kind));
        c.reading = true;
        c.inflight += 1;
        self.push(e)
    }

    /// Starts sending queued replies unless a send is in flight.
    fn send(&mut self, token: u64) -> io::Result<()> {
        let Some(c) = self.clients.get_mut(&token) else {
            return Ok(());
        };
        if c.sending || c.closing {
            return Ok(());
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
            if c.pending.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut c.out, &mut c.pending);
        }
        let rest = &c.out[c.out_pos..];
        let fd = types::Fd(c.stream.as_raw_fd());
        let e = opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(token, K_SEND));
        c.sending = true;
        c.inflight += 1;
        self.push(e)
    }

    fn on_sent(&mut self, token: u64, res: i32) -> bool {
        let Some(c) = self.clients.get_mut(&token) else {
            return false;
        };
        c.sending = false;
        if res < 0 && res != -libc::EINTR && res != -libc::EAGAIN {
            return false;
        }
        c.out_pos += res.max(0) as usize;
        // Whole requests left waiting for output room go now; then more
        // to send, and reading may resume below the high-water mark.
        if !c.input.is_empty() && c.pending_out() < OUTPUT_HIGH_WATER {
            let budget = OUTPUT_HIGH_WATER - c.pending_out();
            match self
                .engine
                .exchange(c.conn, &c.input, &mut c.pending, budget)
            {
                Ok(used) => {
                    c.input.drain(..used.min(c.input.len()));
                }
                Err(e) => {
                    tracing::warn!(token, "xenstore socket: closing client: {e}");
                    return false;
                }
            }
        }
        self.send(token).is_ok() && self.read(token).is_ok()
    }

    /// Sends watch events and other output the engine queued for clients
    /// outside their own requests.
    fn on_woken(&mut self) {
        let tokens = {
            let mut w = self.woken.lock().unwrap_or_else(|e| e.into_inner());
            if w.is_empty() {
                return;
            }
            std::mem::take(&mut *w)
        };
        for t in tokens {
            let Some(c) = self.clients.get_mut(&t) else {
                continue;
            };
            if c.closing {
                continue;
            }
            self.engine.take_output(c.conn, &mut c.pending);
            if self.send(t).is_err() {
                self.close(t);
            }
        }
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
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
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
        self.clients.insert(
            token,
            Client {
                stream,
                conn,
                input: Vec::new(),
                rbuf: vec![0; RBUF_LEN].into_boxed_slice(),
                out: Vec::new(),
                out_pos: 0,
                pending: Vec::new(),
                reading: false,
                consuming: false,
                consume_len: 0,
                sending: false,
                inflight: 0,
                closing: false,
            },
        );
        tracing::debug!(token, "xenstore socket: client connected");
        self.read(token)
    }

    /// Disconnects a client; its memory goes once its operations are done
    /// (shutting the socket down makes them complete).
    fn close(&mut self, token: u64) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        self.engine.disconnect(c.conn);
        // Take in what was only peeked, so the peer sees an orderly end of
        // stream rather than ECONNRESET (as with the epoll loop, which
        // reads before it parses).
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            // SAFETY: scratch is valid for its length; non-blocking recv.
            let n = unsafe {
                libc::recv(
                    c.stream.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
        }
        // SAFETY: shutdown(2) on a socket we own; no pointers.
        unsafe { libc::shutdown(c.stream.as_raw_fd(), libc::SHUT_RDWR) };
        if c.inflight == 0 {
            self.clients.remove(&token);
            tracing::debug!(token, "xenstore socket: client gone");
        }
    }
}
