//! The engine: one store shared by every connection, the request
//! dispatcher, watch delivery, domains, and the toolstack's (dom0's) Rust
//! API. Front ends (socket, ring) move bytes; everything else is here.

use crate::control::{parse_domid, parse_u32};
use crate::ops::{self, Caller};
use crate::path;
use crate::perms::Perms;
use crate::quota::{exceeds, Quota};
use crate::store::{Access, Store, TxView, Txn};
pub use crate::toolstack::Transaction;
use crate::watch::{self, Event, Watch};
use crate::wire::{self, Header, MsgType, XsError, HEADER_LEN, PAYLOAD_MAX};
use crate::DomId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Called (without the engine lock held) when output was queued for a
/// connection by something other than its own request: a watch event
/// fired by another client or by the Rust API.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Identifies one client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// Server features we offer (`XENSTORE_SERVER_FEATURE_RECONNECTION |
/// XENSTORE_SERVER_FEATURE_ERROR`).
pub const SUPPORTED_FEATURES: u32 = 3;

/// Watch events queued beyond this many bytes for one connection are
/// dropped (a client that never reads must not make us grow forever).
pub const EVENT_BACKLOG_MAX: usize = 1 << 20;

/// A connection-fatal protocol violation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The header announced more than `XENSTORE_PAYLOAD_MAX` bytes.
    #[error("message payload of {0} bytes exceeds XENSTORE_PAYLOAD_MAX (4096)")]
    TooLong(u32),
    /// The connection was closed (its domain was released).
    #[error("connection closed")]
    Closed,
}

/// Engine settings.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Quotas for unprivileged domains.
    pub quota: Quota,
}

pub(crate) struct Conn {
    pub(crate) domid: DomId,
    pub(crate) watches: Vec<Watch>,
    pub(crate) txns: HashMap<u32, Txn>,
    pub(crate) next_txid: u32,
    pub(crate) out: Vec<u8>,
    pub(crate) waker: Option<Waker>,
    pub(crate) closed: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Domain {
    pub(crate) introduced: bool,
    pub(crate) shutdown_reported: bool,
    pub(crate) target: Option<DomId>,
    pub(crate) features: u32,
    pub(crate) quota: Option<Quota>,
}

impl Domain {
    pub(crate) fn new() -> Domain {
        Domain {
            introduced: false,
            shutdown_reported: false,
            target: None,
            features: SUPPORTED_FEATURES,
            quota: None,
        }
    }
}

pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) next_conn: u64,
    pub(crate) domains: HashMap<DomId, Domain>,
    pub(crate) quota: Quota,
    pub(crate) nwatches: usize,
    pub(crate) wakes: Vec<Waker>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) events: Vec<Event>,
    /// Initial watch events, queued right after the WATCH reply.
    pub(crate) deferred: Vec<(ConnId, Vec<u8>)>,
}

/// The XenStore engine: cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Mutex<State>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

/// Runs the wakers collected while the lock was held, after releasing it.
pub(crate) struct Guard<'a> {
    state: Option<MutexGuard<'a, State>>,
}

impl std::ops::Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.state.as_ref().expect("guard is live")
    }
}
impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.state.as_mut().expect("guard is live")
    }
}
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let wakes = match self.state.as_mut() {
            Some(s) if !s.wakes.is_empty() => std::mem::take(&mut s.wakes),
            _ => return,
        };
        drop(self.state.take());
        for w in wakes {
            w();
        }
    }
}

impl Engine {
    /// A new engine with Xen's initial tree.
    pub fn new(config: Config) -> Engine {
        let mut domains = HashMap::new();
        domains.insert(
            0,
            Domain {
                introduced: true,
                ..Domain::new()
            },
        );
        let state = State {
            store: Store::new(),
            conns: HashMap::new(),
            next_conn: 1,
            domains,
            quota: config.quota,
            nwatches: 0,
            wakes: Vec::new(),
            scratch: Vec::with_capacity(PAYLOAD_MAX),
            events: Vec::new(),
            deferred: Vec::new(),
        };
        Engine {
            inner: Arc::new(Mutex::new(state)),
        }
    }

    pub(crate) fn lock(&self) -> Guard<'_> {
        Guard {
            state: Some(self.inner.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    // ---- connections (used by the front ends) ----

    /// Opens a connection for `domid` (0 = a privileged toolstack client).
    pub fn connect(&self, domid: DomId, waker: Option<Waker>) -> ConnId {
        let mut s = self.lock();
        let id = ConnId(s.next_conn);
        s.next_conn += 1;
        s.domains.entry(domid).or_insert_with(Domain::new);
        s.conns.insert(
            id,
            Conn {
                domid,
                watches: Vec::new(),
                txns: HashMap::new(),
                next_txid: 1,
                out: Vec::new(),
                waker,
                closed: false,
            },
        );
        id
    }

    /// Closes a connection: its watches and open transactions go away.
    pub fn disconnect(&self, conn: ConnId) {
        let mut s = self.lock();
        if let Some(c) = s.conns.remove(&conn) {
            s.nwatches -= c.watches.len();
        }
    }

    /// Drops a connection's watches and transactions and its queued
    /// output (the ring's reconnect protocol), keeping the connection.
    pub fn reset_connection(&self, conn: ConnId) {
        let mut s = self.lock();
        let mut n = 0;
        if let Some(c) = s.conns.get_mut(&conn) {
            n = c.watches.len();
            c.watches.clear();
            c.txns.clear();
            c.out.clear();
        }
        s.nwatches -= n;
    }

    /// Processes every complete message at the front of `input`; returns
    /// how many bytes were consumed. Replies (and events) are queued for
    /// [`Engine::take_output`]. Stops early once `max_output` bytes are
    /// queued for this connection (back-pressure). A protocol violation
    /// is fatal for this connection only.
    pub fn feed(
        &self,
        conn: ConnId,
        input: &[u8],
        max_output: usize,
    ) -> Result<usize, ProtocolError> {
        self.lock().feed_locked(conn, input, max_output)
    }

    /// [`Engine::feed`] then [`Engine::take_output`] under one lock (what
    /// a front end does for every batch of input). Processing stops once
    /// `max_new_output` bytes of new output are queued.
    pub fn exchange(
        &self,
        conn: ConnId,
        input: &[u8],
        out: &mut Vec<u8>,
        max_new_output: usize,
    ) -> Result<usize, ProtocolError> {
        let mut s = self.lock();
        let used = s.feed_locked(conn, input, max_new_output)?;
        if let Some(c) = s.conns.get_mut(&conn) {
            if out.is_empty() {
                std::mem::swap(out, &mut c.out);
            } else {
                out.append(&mut c.out);
            }
        }
        Ok(used)
    }

    /// Moves the connection's queued output to the end of `buf`; returns
    /// whether there was any.
    pub fn take_output(&self, conn: ConnId, buf: &mut Vec<u8>) -> bool {
        let mut s = self.lock();
        let Some(c) = s.conns.get_mut(&conn) else {
            return false;
        };
        if c.out.is_empty() {
            return false;
        }
        if buf.is_empty() {
            std::mem::swap(buf, &mut c.out);
        } else {
            buf.append(&mut c.out);
        }
        true
    }

    /// Is the connection closed (released domain) or gone?
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.lock().conns.get(&conn).is_none_or(|c| c.closed)
    }
}

/// Which requests run inside a transaction when tx_id is set.
fn transactional(ty: MsgType) -> bool {
    use MsgType::*;
    matches!(
        ty,
        Read | Write
            | Mkdir
            | Rm
            | Directory
            | DirectoryPart
            | GetPerms
            | SetPerms
            | TransactionEnd
    )
}

fn privileged_only(ty: MsgType) -> bool {
    use MsgType::*;
    matches!(
        ty,
        Introduce
            | Release
            | IsDomainIntroduced
            | Resume
            | SetTarget
            | Control
            | GetFeature
            | SetFeature
            | GetQuota
            | SetQuota
    )
}

impl State {
    pub(crate) fn feed_locked(
        &mut self,
        conn: ConnId,
        input: &[u8],
        max_output: usize,
    ) -> Result<usize, ProtocolError> {
        let s = self;
        let mut used = 0;
        loop {
            match s.conns.get(&conn) {
                None => return Err(ProtocolError::Closed),
                Some(c) if c.closed => return Err(ProtocolError::Closed),
                Some(c) if c.out.len() >= max_output => break,
                Some(_) => {}
            }
            let rest = &input[used..];
            let Some(hdr_bytes) = rest.first_chunk::<HEADER_LEN>() else {
                break;
            };
            let hdr = Header::decode(hdr_bytes);
            if hdr.len as usize > PAYLOAD_MAX {
                return Err(ProtocolError::TooLong(hdr.len));
            }
            let total = HEADER_LEN + hdr.len as usize;
            if rest.len() < total {
                break;
            }
            s.handle(conn, hdr, &rest[HEADER_LEN..total]);
            used += total;
        }
        Ok(used)
    }

    pub(crate) fn caller(&self, domid: DomId) -> Caller {
        let d = self.domains.get(&domid);
        Caller {
            domid,
            privileged: domid == 0,
            target: d.and_then(|d| d.target),
            quota: d
                .and_then(|d| d.quota.clone())
                .unwrap_or_else(|| self.quota.clone()),
        }
    }

    /// Queues WATCH_EVENTs for every watch the events match and the
    /// watcher may see; wakes connections other than `origin`.
    pub(crate) fn deliver(&mut self, events: &mut Vec<Event>, origin: Option<ConnId>) {
        if self.nwatches == 0 || events.is_empty() {
            events.clear();
            return;
        }
        let mut payload = Vec::new();
        for (&id, c) in self.conns.iter_mut() {
            if c.watches.is_empty() || c.closed {
                continue;
            }
            let privileged = c.domid == 0;
            let target = self.domains.get(&c.domid).and_then(|d| d.target);
            let mut queued = false;
            for e in events.iter() {
                let visible = match &e.perms {
                    _ if privileged => true,
                    Some(p) => {
                        p.access_for(c.domid, false, target) & crate::perms::access::READ != 0
                    }
                    None => false,
                };
                if !visible {
                    continue;
                }
                for w in c.watches.iter().filter(|w| w.matches(&e.path, e.exact)) {
                    if c.out.len() > EVENT_BACKLOG_MAX {
                        tracing::warn!(domid = c.domid, path = %e.path, "watch event dropped: client is not reading");
                        continue;
                    }
                    payload.clear();
                    watch::event_payload(&mut payload, w.event_path(&e.path), &w.token);
                    wire::push_msg(&mut c.out, MsgType::WatchEvent as u32, 0, 0, &[&payload]);
                    queued = true;
                }
            }
            if queued && Some(id) != origin {
                if let Some(w) = &c.waker {
                    self.wakes.push(w.clone());
                }
            }
        }
        events.clear();
    }

    fn handle(&mut self, conn: ConnId, hdr: Header, payload: &[u8]) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let mut events = std::mem::take(&mut self.events);
        let result = self.dispatch(conn, hdr, payload, &mut out, &mut events);
        if let Some(c) = self.conns.get_mut(&conn) {
            match result {
                Ok(()) if out.len() > PAYLOAD_MAX => {
                    push_error(&mut c.out, hdr, XsError::TooBig);
                }
                Ok(()) => wire::push_msg(&mut c.out, hdr.ty, hdr.req_id, hdr.tx_id, &[&out]),
                Err(e) => push_error(&mut c.out, hdr, e),
            }
        }
        for (id, payload) in std::mem::take(&mut self.deferred) {
            if let Some(c) = self.conns.get_mut(&id) {
                wire::push_msg(&mut c.out, MsgType::WatchEvent as u32, 0, 0, &[&payload]);
            }
        }
        self.deliver(&mut events, Some(conn));
        self.events = events;
        self.scratch = out;
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        hdr: Header,
        payload: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<(), XsError> {
        let domid = self
            .conns
            .get(&conn)
            .map(|c| c.domid)
            .ok_or(XsError::Inval)?;
        let Some(ty) = MsgType::from_u32(hdr.ty) else {
            tracing::debug!(domid, ty = hdr.ty, "unknown request type");
            return Err(XsError::Inval);
        };
        let caller = self.caller(domid);
        if privileged_only(ty) && !caller.privileged {
            return Err(XsError::Acces);
        }
        if hdr.tx_id != 0 && transactional(ty) {
            return self.in_transaction(conn, ty, hdr.tx_id, &caller, payload, out);
        }
        let st = &mut self.store;
        match ty {
            MsgType::TransactionEnd => Err(XsError::NoEnt),
            _ if node_op(ty) => node_request(st, &caller, ty, payload, out, events),
            MsgType::Watch => self.watch(conn, &caller, payload, out),
            MsgType::Unwatch => self.unwatch(conn, &caller, payload, out),
            MsgType::TransactionStart => {
                self.transaction_start(conn, &caller, hdr.tx_id, payload, out)
            }
            MsgType::ResetWatches => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    self.nwatches -= c.watches.len();
                    c.watches.clear();
                    c.txns.clear();
                }
                ack(out)
            }
            MsgType::GetDomainPath => {
                let d = parse_domid(wire::one_arg(payload).ok_or(XsError::Inval)?)?;
                out.extend_from_slice(path::domain_path(d).as_bytes());
                out.push(0);
                Ok(())
            }
            _ => self.control_request(ty, payload, out),
        }
    }

    fn in_transaction(
        &mut self,
        conn: ConnId,
        ty: MsgType,
        tx_id: u32,
        caller: &Caller,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), XsError> {
        let c = self.conns.get_mut(&conn).ok_or(XsError::Inval)?;
        let mut txn = c.txns.remove(&tx_id).ok_or(XsError::NoEnt)?;
        if ty == MsgType::TransactionEnd {
            let arg = wire::one_arg(payload).ok_or(XsError::Inval)?;
            let commit = match arg {
                b"T" => true,
                b"F" => false,
                _ => {
                    c.txns.insert(tx_id, txn);
                    return Err(XsError::Inval);
                }
            };
            if !commit {
                return ack(out);
            }
            return match txn.commit(&mut self.store) {
                Ok(mut ev) => {
                    self.deliver(&mut ev, Some(conn));
                    ack(out)
                }
                Err(_) => Err(XsError::Again),
            };
        }
        let mut ev = std::mem::take(&mut txn.events);
        let r = {
            let mut view = TxView {
                store: &self.store,
                txn: &mut txn,
            };
            node_request(&mut view, caller, ty, payload, out, &mut ev)
        };
        txn.events = ev;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.txns.insert(tx_id, txn);
        }
        r
    }

    fn watch(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), XsError> {
        let args = wire::split_strings(payload);
        if args.len() != 2 || payload.last() != Some(&0) {
            return Err(XsError::Inval);
        }
        let (raw, token) = (args[0], args[1]);
        let limit = (!caller.privileged).then_some(caller.quota.path_length as usize);
        let p = path::canonicalize(caller.domid, raw, true, limit)?;
        let relative_prefix: Box<str> = if raw.first() != Some(&b'/') && raw.first() != Some(&b'@')
        {
            format!("{}/", path::domain_path(caller.domid)).into()
        } else {
            "".into()
        };
        let c = self.conns.get_mut(&conn).ok_or(XsError::Inval)?;
        if c.watches
            .iter()
            .any(|w| *w.path == *p && *w.token == *token)
        {
            return Err(XsError::Exist);
        }
        if !caller.privileged && exceeds(c.watches.len() + 1, caller.quota.watches) {
            return Err(XsError::TooBig);
        }
        let w = Watch {
            path: p.as_str().into(),
            token: token.into(),
            relative_prefix,
        };
        // The reply goes out first, then the initial event (Xen fires
        // every new watch once, straight away).
        ack(out)?;
        let mut ev_payload = Vec::new();
        watch::event_payload(&mut ev_payload, w.event_path(&p), &w.token);
        c.watches.push(w);
        self.nwatches += 1;
        self.pending_initial_event(conn, ev_payload);
        Ok(())
    }

    /// Queues a watch's initial event after the WATCH reply, which
    /// `handle` appends once dispatch returns; so park it and let `handle`
    /// flush it via the deferred list.
    fn pending_initial_event(&mut self, conn: ConnId, payload: Vec<u8>) {
        self.deferred.push((conn, payload));
    }

    fn unwatch(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), XsError> {
        let args = wire::split_strings(payload);
        if args.len() != 2 {
            return Err(XsError::Inval);
        }
        let p = path::canonicalize(caller.domid, args[0], true, None)?;
        let c = self.conns.get_mut(&conn).ok_or(XsError::Inval)?;
        let i = c
            .watches
            .iter()
            .position(|w| *w.path == *p && *w.token == *args[1])
            .ok_or(XsError::NoEnt)?;
        c.watches.remove(i);
        self.nwatches -= 1;
        ack(out)
    }

    fn transaction_start(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        tx_id: u32,
        _payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), XsError> {
        if tx_id != 0 {
            return Err(XsError::Busy);
        }
        let c = self.conns.get_mut(&conn).ok_or(XsError::Inval)?;
        if !caller.privileged && exceeds(c.txns.len() + 1, caller.quota.transactions) {
            return Err(XsError::NoSpc);
        }
        let mut id = c.next_txid;
        while id == 0 || c.txns.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        c.next_txid = id.wrapping_add(1);
        c.txns.insert(id, Txn::default());
        out.extend_from_slice(id.to_string().as_bytes());
        out.push(0);
        Ok(())
    }
}

fn node_op(ty: MsgType) -> bool {
    use MsgType::*;
    matches!(
        ty,
        Read | Write | Mkdir | Rm | Directory | DirectoryPart | GetPerms | SetPerms
    )
}

/// The node requests, on the store or a transaction view.
fn node_request(
    v: &mut dyn Access,
    caller: &Caller,
    ty: MsgType,
    payload: &[u8],
    out: &mut Vec<u8>,
    events: &mut Vec<Event>,
) -> Result<(), XsError> {
    let limit = (!caller.privileged).then_some(caller.quota.path_length as usize);
    let canon = |raw: &[u8]| path::canonicalize(caller.domid, raw, false, limit);
    match ty {
        MsgType::Write => {
            let nul = payload.iter().position(|&b| b == 0).ok_or(XsError::Inval)?;
            let p = canon(&payload[..nul])?;
            ops::write(v, caller, &p, &payload[nul + 1..], events)?;
            ack(out)
        }
        MsgType::SetPerms => {
            let args = wire::split_strings(payload);
            if args.len() < 2 || payload.last() != Some(&0) {
                return Err(XsError::Inval);
            }
            let p = canon(args[0])?;
            let perms = Perms::parse(args[1..].iter().copied())?;
            ops::set_perms(v, caller, &p, perms, events)?;
            ack(out)
        }
        MsgType::DirectoryPart => {
            let args = wire::split_strings(payload);
            if args.len() != 2 || payload.last() != Some(&0) {
                return Err(XsError::Inval);
            }
            let p = canon(args[0])?;
            let off = parse_u32(args[1])? as usize;
            ops::directory_part(v, caller, &p, off, out)
        }
        _ => {
            let p = canon(wire::one_arg(payload).ok_or(XsError::Inval)?)?;
            match ty {
                MsgType::Read => ops::read(v, caller, &p, out),
                MsgType::Mkdir => ops::mkdir(v, caller, &p, events).and_then(|_| ack(out)),
                MsgType::Rm => ops::rm(v, caller, &p, events).and_then(|_| ack(out)),
                MsgType::Directory => ops::directory(v, caller, &p, out),
                MsgType::GetPerms => ops::get_perms(v, caller, &p, out),
                _ => Err(XsError::Inval),
            }
        }
    }
}

pub(crate) fn ack(out: &mut Vec<u8>) -> Result<(), XsError> {
    out.extend_from_slice(b"OK\0");
    Ok(())
}

fn push_error(out: &mut Vec<u8>, hdr: Header, e: XsError) {
    let mut body = [0u8; 16];
    let name = e.name().as_bytes();
    body[..name.len()].copy_from_slice(name);
    wire::push_msg(
        out,
        MsgType::Error as u32,
        hdr.req_id,
        hdr.tx_id,
        &[&body[..name.len() + 1]],
    );
}
