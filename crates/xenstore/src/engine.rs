//! The engine: one store shared by every connection, the request
//! dispatcher, watch delivery, domains, and the toolstack's (dom0's) Rust
//! API. Front ends (socket, ring) move bytes; everything else is here.

use crate::ops::{self, Caller};
use crate::path;
use crate::perms::Perms;
use crate::quota::{exceeds, Quota};
use crate::store::{Access, Store, TxView, Txn};
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

struct Conn {
    domid: DomId,
    watches: Vec<Watch>,
    txns: HashMap<u32, Txn>,
    next_txid: u32,
    out: Vec<u8>,
    waker: Option<Waker>,
    closed: bool,
}

#[derive(Clone, Debug)]
struct Domain {
    introduced: bool,
    shutdown_reported: bool,
    target: Option<DomId>,
    features: u32,
    quota: Option<Quota>,
}

impl Domain {
    fn new() -> Domain {
        Domain {
            introduced: false,
            shutdown_reported: false,
            target: None,
            features: SUPPORTED_FEATURES,
            quota: None,
        }
    }
}

struct State {
    store: Store,
    conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    domains: HashMap<DomId, Domain>,
    quota: Quota,
    nwatches: usize,
    wakes: Vec<Waker>,
    scratch: Vec<u8>,
    events: Vec<Event>,
    /// Initial watch events, queued right after the WATCH reply.
    deferred: Vec<(ConnId, Vec<u8>)>,
}

/// The XenStore engine: cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Mutex<State>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

/// Runs the wakers collected while the lock was held, after releasing it.
struct Guard<'a> {
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

    fn lock(&self) -> Guard<'_> {
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

    // ---- domains (the toolstack side) ----

    /// Marks `domid` as introduced (as XS_INTRODUCE does) and fires
    /// `@introduceDomain`. Call before creating its ring front end.
    pub fn introduce_domain(&self, domid: DomId) {
        let mut s = self.lock();
        s.introduce(domid);
    }

    /// Forgets `domid` (as XS_RELEASE): closes its connections, fires
    /// `@releaseDomain`. Its nodes stay (the toolstack removes them).
    pub fn release_domain(&self, domid: DomId) -> Result<(), XsError> {
        let mut s = self.lock();
        s.release(domid)
    }

    /// Reports that `domid` shut down: fires `@releaseDomain` once (until
    /// RESUME), as xenstored does when the hypervisor says so.
    pub fn domain_shutdown(&self, domid: DomId) {
        let mut s = self.lock();
        let fire = match s.domains.get_mut(&domid) {
            Some(d) if !d.shutdown_reported => {
                d.shutdown_reported = true;
                true
            }
            _ => false,
        };
        if fire {
            s.fire_special("@releaseDomain");
        }
    }

    /// How many bytes of replies may wait for `domid` before its requests
    /// stop being processed: the `outstanding` quota, counted in
    /// maximum-size messages (unlimited for dom0 and a 0 quota).
    pub fn output_limit(&self, domid: DomId) -> usize {
        let s = self.lock();
        let q = s.caller(domid);
        if q.privileged || q.quota.outstanding == 0 {
            return usize::MAX;
        }
        q.quota.outstanding as usize * (HEADER_LEN + PAYLOAD_MAX)
    }

    /// Is `domid` introduced?
    pub fn is_introduced(&self, domid: DomId) -> bool {
        self.lock()
            .domains
            .get(&domid)
            .is_some_and(|d| d.introduced)
    }

    /// The server features offered to `domid`'s ring (SET_FEATURE can
    /// restrict them).
    pub fn domain_features(&self, domid: DomId) -> u32 {
        self.lock()
            .domains
            .get(&domid)
            .map_or(SUPPORTED_FEATURES, |d| d.features)
    }

    // ---- the toolstack's Rust API (acts as dom0) ----

    fn dom0_path(p: &str) -> Result<String, XsError> {
        path::canonicalize(0, p.as_bytes(), false, None)
    }

    fn direct<T>(
        &self,
        f: impl FnOnce(&mut Store, &mut Vec<Event>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let mut s = self.lock();
        let st = &mut *s;
        let mut ev = std::mem::take(&mut st.events);
        let r = f(&mut st.store, &mut ev);
        st.deliver(&mut ev, None);
        st.events = ev;
        r
    }

    /// Reads a value.
    pub fn read(&self, p: &str) -> Result<Vec<u8>, XsError> {
        let p = Self::dom0_path(p)?;
        let mut out = Vec::new();
        self.direct(|st, _| ops::read(st, &Caller::dom0(), &p, &mut out))?;
        Ok(out)
    }

    /// Writes a value, creating the node and its ancestors.
    pub fn write(&self, p: &str, value: &[u8]) -> Result<(), XsError> {
        let p = Self::dom0_path(p)?;
        self.direct(|st, ev| ops::write(st, &Caller::dom0(), &p, value, ev))
    }

    /// Creates an empty node unless it exists.
    pub fn mkdir(&self, p: &str) -> Result<(), XsError> {
        let p = Self::dom0_path(p)?;
        self.direct(|st, ev| ops::mkdir(st, &Caller::dom0(), &p, ev))
    }

    /// Removes a subtree.
    pub fn rm(&self, p: &str) -> Result<(), XsError> {
        let p = Self::dom0_path(p)?;
        self.direct(|st, ev| ops::rm(st, &Caller::dom0(), &p, ev))
    }

    /// Lists a node's children.
    pub fn directory(&self, p: &str) -> Result<Vec<String>, XsError> {
        let p = Self::dom0_path(p)?;
        let mut out = Vec::new();
        self.direct(|st, _| ops::directory(st, &Caller::dom0(), &p, &mut out))?;
        Ok(split_names(&out))
    }

    /// Reads a node's permissions.
    pub fn get_perms(&self, p: &str) -> Result<Perms, XsError> {
        let p = Self::dom0_path(p)?;
        self.direct(|st, _| st.get(&p).map(|n| n.perms.clone()).ok_or(XsError::NoEnt))
    }

    /// Sets a node's permissions (e.g. `Perms::parse(["n5", "r0"])`).
    pub fn set_perms(&self, p: &str, perms: &Perms) -> Result<(), XsError> {
        let p = Self::dom0_path(p)?;
        self.direct(|st, ev| ops::set_perms(st, &Caller::dom0(), &p, perms.clone(), ev))
    }

    /// Runs `f` as one dom0 transaction and commits it, retrying from the
    /// start on EAGAIN (at most 100 times). `f` must not call back into
    /// this engine.
    pub fn transaction<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        for _ in 0..100 {
            let mut s = self.lock();
            let st = &mut *s;
            let mut txn = Txn::default();
            let caller = Caller::dom0();
            let (r, events) = {
                let mut t = Transaction {
                    view: TxView {
                        store: &st.store,
                        txn: &mut txn,
                    },
                    caller: &caller,
                    events: Vec::new(),
                };
                let r = f(&mut t);
                (r, t.events)
            };
            let value = match r {
                Ok(v) => v,
                Err(XsError::Again) => continue,
                Err(e) => return Err(e),
            };
            txn.events = events;
            match txn.commit(&mut st.store) {
                Ok(mut ev) => {
                    st.deliver(&mut ev, None);
                    return Ok(value);
                }
                Err(_) => continue,
            }
        }
        Err(XsError::Again)
    }

    /// Number of nodes in the store.
    pub fn node_count(&self) -> usize {
        self.lock().store.len()
    }
}

fn split_names(b: &[u8]) -> Vec<String> {
    wire::split_strings(b)
        .into_iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A dom0 transaction in progress (see [`Engine::transaction`]).
pub struct Transaction<'a> {
    view: TxView<'a>,
    caller: &'a Caller,
    events: Vec<Event>,
}

impl Transaction<'_> {
    /// Reads a value.
    pub fn read(&mut self, p: &str) -> Result<Vec<u8>, XsError> {
        let p = Engine::dom0_path(p)?;
        let mut out = Vec::new();
        ops::read(&mut self.view, self.caller, &p, &mut out)?;
        Ok(out)
    }
    /// Writes a value.
    pub fn write(&mut self, p: &str, value: &[u8]) -> Result<(), XsError> {
        let p = Engine::dom0_path(p)?;
        ops::write(&mut self.view, self.caller, &p, value, &mut self.events)
    }
    /// Creates an empty node unless it exists.
    pub fn mkdir(&mut self, p: &str) -> Result<(), XsError> {
        let p = Engine::dom0_path(p)?;
        ops::mkdir(&mut self.view, self.caller, &p, &mut self.events)
    }
    /// Removes a subtree.
    pub fn rm(&mut self, p: &str) -> Result<(), XsError> {
        let p = Engine::dom0_path(p)?;
        ops::rm(&mut self.view, self.caller, &p, &mut self.events)
    }
    /// Lists children.
    pub fn directory(&mut self, p: &str) -> Result<Vec<String>, XsError> {
        let p = Engine::dom0_path(p)?;
        let mut out = Vec::new();
        ops::directory(&mut self.view, self.caller, &p, &mut out)?;
        Ok(split_names(&out))
    }
    /// Sets permissions.
    pub fn set_perms(&mut self, p: &str, perms: &Perms) -> Result<(), XsError> {
        let p = Engine::dom0_path(p)?;
        ops::set_perms(
            &mut self.view,
            self.caller,
            &p,
            perms.clone(),
            &mut self.events,
        )
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

fn parse_domid(b: &[u8]) -> Result<DomId, XsError> {
    let s = std::str::from_utf8(b).map_err(|_| XsError::Inval)?;
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    s.parse().map_err(|_| XsError::Inval)
}

fn parse_u32(b: &[u8]) -> Result<u32, XsError> {
    let s = std::str::from_utf8(b).map_err(|_| XsError::Inval)?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    s.parse().map_err(|_| XsError::Inval)
}

fn utf8(b: &[u8]) -> Result<&str, XsError> {
    std::str::from_utf8(b).map_err(|_| XsError::Inval)
}

impl State {
    fn feed_locked(
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

    fn caller(&self, domid: DomId) -> Caller {
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

    fn introduce(&mut self, domid: DomId) {
        let d = self.domains.entry(domid).or_insert_with(Domain::new);
        d.introduced = true;
        d.shutdown_reported = false;
        self.fire_special("@introduceDomain");
    }

    fn release(&mut self, domid: DomId) -> Result<(), XsError> {
        match self.domains.get_mut(&domid) {
            Some(d) if d.introduced => d.introduced = false,
            _ => return Err(XsError::NoEnt),
        }
        let mut dropped = 0;
        for c in self.conns.values_mut().filter(|c| c.domid == domid) {
            dropped += c.watches.len();
            c.watches.clear();
            c.txns.clear();
            c.closed = true;
        }
        self.nwatches -= dropped;
        self.fire_special("@releaseDomain");
        Ok(())
    }

    fn fire_special(&mut self, name: &str) {
        let mut ev = vec![Event {
            path: name.to_owned(),
            exact: false,
            perms: None,
        }];
        self.deliver(&mut ev, None);
    }

    /// Queues WATCH_EVENTs for every watch the events match and the
    /// watcher may see; wakes connections other than `origin`.
    fn deliver(&mut self, events: &mut Vec<Event>, origin: Option<ConnId>) {
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

    fn domain_exists(&self, d: DomId) -> bool {
        self.domains.contains_key(&d)
    }

    fn control_request(
        &mut self,
        ty: MsgType,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), XsError> {
        let args = wire::split_strings(payload);
        match ty {
            MsgType::Introduce => {
                if args.len() < 3 {
                    return Err(XsError::Inval);
                }
                let d = parse_domid(args[0])?;
                if d == 0 || d >= 0x7ff0 {
                    return Err(XsError::Inval);
                }
                self.introduce(d);
                ack(out)
            }
            MsgType::Release => {
                let d = parse_domid(args.first().ok_or(XsError::Inval)?)?;
                if d == 0 {
                    return Err(XsError::Inval);
                }
                self.release(d)?;
                ack(out)
            }
            MsgType::IsDomainIntroduced => {
                let d = parse_domid(args.first().ok_or(XsError::Inval)?)?;
                let yes = self.domains.get(&d).is_some_and(|x| x.introduced);
                out.extend_from_slice(if yes { b"T\0" } else { b"F\0" });
                Ok(())
            }
            MsgType::Resume => {
                let d = parse_domid(args.first().ok_or(XsError::Inval)?)?;
                let dom = self.domains.get_mut(&d).ok_or(XsError::NoEnt)?;
                dom.shutdown_reported = false;
                ack(out)
            }
            MsgType::SetTarget => {
                if args.len() < 2 {
                    return Err(XsError::Inval);
                }
                let (d, t) = (parse_domid(args[0])?, parse_domid(args[1])?);
                if !self.domain_exists(t) {
                    return Err(XsError::NoEnt);
                }
                self.domains.get_mut(&d).ok_or(XsError::NoEnt)?.target = Some(t);
                ack(out)
            }
            MsgType::Control => self.control(&args, out),
            MsgType::GetFeature => {
                let f = match args.as_slice() {
                    [] => SUPPORTED_FEATURES,
                    [d] => {
                        self.domains
                            .get(&parse_domid(d)?)
                            .ok_or(XsError::NoEnt)?
                            .features
                    }
                    _ => return Err(XsError::Inval),
                };
                out.extend_from_slice(f.to_string().as_bytes());
                out.push(0);
                Ok(())
            }
            MsgType::SetFeature => {
                let [d, v] = args.as_slice() else {
                    return Err(XsError::Inval);
                };
                let v = parse_u32(v)?;
                if v & !SUPPORTED_FEATURES != 0 {
                    return Err(XsError::Inval);
                }
                self.domains
                    .get_mut(&parse_domid(d)?)
                    .ok_or(XsError::NoEnt)?
                    .features = v;
                ack(out)
            }
            MsgType::GetQuota => {
                let v = match args.as_slice() {
                    [] => {
                        out.extend_from_slice(crate::quota::NAMES.join(" ").as_bytes());
                        out.push(0);
                        return Ok(());
                    }
                    [name] => self.quota.get(utf8(name)?)?,
                    [d, name] => {
                        let dom = self.domains.get(&parse_domid(d)?).ok_or(XsError::NoEnt)?;
                        dom.quota.as_ref().unwrap_or(&self.quota).get(utf8(name)?)?
                    }
                    _ => return Err(XsError::Inval),
                };
                out.extend_from_slice(v.to_string().as_bytes());
                out.push(0);
                Ok(())
            }
            MsgType::SetQuota => {
                match args.as_slice() {
                    [name, v] => self.quota.set(utf8(name)?, parse_u32(v)?)?,
                    [d, name, v] => {
                        let global = self.quota.clone();
                        let dom = self
                            .domains
                            .get_mut(&parse_domid(d)?)
                            .ok_or(XsError::NoEnt)?;
                        dom.quota
                            .get_or_insert(global)
                            .set(utf8(name)?, parse_u32(v)?)?;
                    }
                    _ => return Err(XsError::Inval),
                }
                ack(out)
            }
            // WATCH_EVENT and ERROR are replies, never requests.
            _ => Err(XsError::Inval),
        }
    }

    fn control(&mut self, args: &[&[u8]], out: &mut Vec<u8>) -> Result<(), XsError> {
        let (cmd, rest) = args.split_first().ok_or(XsError::Inval)?;
        match *cmd {
            b"print" => {
                let [msg] = rest else {
                    return Err(XsError::Inval);
                };
                tracing::info!(target: "xenstored", "{}", String::from_utf8_lossy(msg));
                ack(out)
            }
            b"log" => match rest {
                [] => {
                    out.extend_from_slice(
                        b"Log switch settings:\nxenstored: on (RUST_LOG picks the level)\n\0",
                    );
                    Ok(())
                }
                [b"on"] | [b"off"] => ack(out),
                _ => Err(XsError::Inval),
            },
            b"check" => ack(out),
            b"help" => {
                out.extend_from_slice(
                    b"Available commands:\ncheck\nhelp\nlog [on|off]\nprint <string>\n\0",
                );
                Ok(())
            }
            _ => Err(XsError::Inval),
        }
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

fn ack(out: &mut Vec<u8>) -> Result<(), XsError> {
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
