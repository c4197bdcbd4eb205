//! The toolstack's side of the engine: domains (introduce, release,
//! shutdown, features) and the dom0 Rust API, including transactions that
//! retry on EAGAIN.

use crate::engine::{Engine, SUPPORTED_FEATURES};
use crate::ops::{self, Caller};
use crate::path;
use crate::perms::Perms;
use crate::store::{Store, TxView, Txn};
use crate::watch::Event;
use crate::wire::{self, XsError, HEADER_LEN, PAYLOAD_MAX};
use crate::DomId;

impl Engine {
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
        self.direct(|st, _| st.get(&p).map(|n| n.perms.to_perms()).ok_or(XsError::NoEnt))
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
