//! The VMM's ends of the guest's console and XenStore rings, driven by one
//! thread: it wakes when the guest notifies either event channel, when
//! console input arrives, when XenStore queues a watch event, or every
//! [`POLL`] as a safety net, and moves bytes between the rings and the
//! terminal / the XenStore engine.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use xen_abi::hvm::params::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use xen_emu::guest::GuestMemory;
use xen_emu::Domain;

use crate::layout::{special_pfn, PAGE_SIZE, SPECIALPAGE_CONSOLE, SPECIALPAGE_XENSTORE};
use crate::memory::DomainMemory;
use crate::rings::{self, RingError};
use crate::xenstore_nodes::{self, RingInfo};
use crate::{ConsoleIo, VmConfig, VmmError};

/// How often the rings are checked without a notification.
const POLL: Duration = Duration::from_millis(20);
/// Output the XenStore engine may queue for the guest before we stop
/// feeding it requests.
const XS_MAX_OUTPUT: usize = 64 * 1024;
/// `GNTTAB_RESERVED_CONSOLE` / `GNTTAB_RESERVED_XENSTORE`.
const GNTTAB_RESERVED_CONSOLE: u32 = 0;
const GNTTAB_RESERVED_XENSTORE: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR`.
const XS_FEATURES: u32 = 3;
const XENSTORE_RECONNECT: u32 = 1;
const XENSTORE_ERROR_COMM: u32 = 1;

enum Msg {
    Wake,
    Input(Vec<u8>),
    Stop,
}

/// The running backend thread.
pub(crate) struct Backends {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<Result<(), VmmError>>>,
}

struct State {
    domain: Arc<Domain>,
    mem: Arc<DomainMemory>,
    config: VmConfig,
    output: Box<dyn Write + Send>,
    console_page: u64,
    console_port: u32,
    pending_input: Vec<u8>,
    store: Arc<xenstore::Engine>,
    conn: xenstore::ConnId,
    store_page: u64,
    store_port: u32,
    xs_in: Vec<u8>,
    xs_out: Vec<u8>,
    xs_broken: bool,
    warned_console: bool,
    /// The first console output failure; reported when the domain ends.
    console_error: Option<std::io::Error>,
}

impl Backends {
    /// Sets up both rings (pages, event channels, HVM params, seeded grant
    /// entries, XenStore nodes) and starts the thread.
    pub fn start(
        config: &VmConfig,
        domain: Arc<Domain>,
        mem: Arc<DomainMemory>,
        store: Arc<xenstore::Engine>,
        console: ConsoleIo,
    ) -> Result<Self, VmmError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let console_gfn = special_pfn(SPECIALPAGE_CONSOLE);
        let store_gfn = special_pfn(SPECIALPAGE_XENSTORE);
        let wake = |tx: &Sender<Msg>| {
            let tx = tx.clone();
            Arc::new(move |_| {
                let _ = tx.send(Msg::Wake);
            })
        };
        let xs_err = |e: xen_emu::Error| VmmError::Config(e.to_string());
        let console_port = domain.create_backend_channel(wake(&tx)).map_err(xs_err)?.0;
        let store_port = domain.create_backend_channel(wake(&tx)).map_err(xs_err)?.0;
        let params = [
            (HVM_PARAM_CONSOLE_PFN, console_gfn),
            (HVM_PARAM_CONSOLE_EVTCHN, u64::from(console_port)),
            (HVM_PARAM_STORE_PFN, store_gfn),
            (HVM_PARAM_STORE_EVTCHN, u64::from(store_port)),
        ];
        for (index, value) in params {
            domain.set_hvm_param(index, value).map_err(xs_err)?;
        }
        let backend = domain.config().backend_domid;
        domain
            .seed_grant(GNTTAB_RESERVED_CONSOLE, backend, console_gfn)
            .map_err(xs_err)?;
        domain
            .seed_grant(GNTTAB_RESERVED_XENSTORE, backend, store_gfn)
            .map_err(xs_err)?;

        let store_page = store_gfn * PAGE_SIZE;
        mem.write(
            store_page + rings::XS_SERVER_FEATURES,
            &XS_FEATURES.to_le_bytes(),
        )
        .map_err(|e| VmmError::Memory(e.to_string()))?;
        let rings_info = RingInfo {
            store_port,
            store_gfn,
            console_port,
            console_gfn,
        };
        xenstore_nodes::write(&store, config, &rings_info)
            .map_err(|e| VmmError::Config(format!("writing the domain's XenStore nodes: {e}")))?;
        let waker_tx = tx.clone();
        let conn = store.connect(
            config.domid as u16,
            Some(Arc::new(move || {
                let _ = waker_tx.send(Msg::Wake);
            })),
        );

        if let Some(input) = console.input {
            spawn_input_reader(input, tx.clone())?;
        }
        let state = State {
            domain,
            mem,
            config: config.clone(),
            output: console.output,
            console_page: console_gfn * PAGE_SIZE,
            console_port,
            pending_input: Vec::new(),
            store,
            conn,
            store_page,
            store_port,
            xs_in: Vec::new(),
            xs_out: Vec::new(),
            xs_broken: false,
            warned_console: false,
            console_error: None,
        };
        let thread = std::thread::Builder::new()
            .name("backends".into())
            .spawn(move || backend_loop(state, rx))
            .map_err(|e| VmmError::Thread(format!("spawning the console/XenStore thread: {e}")))?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Drains the rings one last time and stops the thread.
    pub fn stop(mut self) -> Result<(), VmmError> {
        let _ = self.tx.send(Msg::Stop);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(VmmError::Thread("console/XenStore thread panicked".into())),
            None => Ok(()),
        }
    }
}

fn spawn_input_reader(mut input: Box<dyn Read + Send>, tx: Sender<Msg>) -> Result<(), VmmError> {
    // Detached: a blocking read on a terminal cannot be interrupted; the
    // thread ends at the next byte or EOF after the domain is gone.
    std::thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(Msg::Input(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|e| VmmError::Thread(format!("spawning the console input thread: {e}")))
}

fn backend_loop(mut st: State, rx: Receiver<Msg>) -> Result<(), VmmError> {
    loop {
        let stop = match rx.recv_timeout(POLL) {
            Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Ok(Msg::Input(b)) => {
                st.pending_input.extend_from_slice(&b);
                false
            }
            Ok(Msg::Wake) | Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        st.service_console();
        st.service_store();
        if stop {
            st.store.disconnect(st.conn);
            xenstore_nodes::remove(&st.store, &st.config);
            if st.console_error.is_none() {
                if let Err(e) = st.output.flush() {
                    st.console_error = Some(e);
                }
            }
            return st
                .console_error
                .map_or(Ok(()), |e| Err(VmmError::Console(e)));
        }
    }
}

impl State {
    fn notify(&self, port: u32) {
        if let Err(e) = self.domain.backend_send(port) {
            tracing::debug!("notifying the guest on port {port}: {e}");
        }
    }

    fn service_console(&mut self) {
        let mut notify = false;
        match rings::consume(
            &*self.mem,
            self.console_page,
            rings::CONSOLE_OUT,
            usize::MAX,
        ) {
            Ok(out) if !out.is_empty() => {
                // The ring is consumed even when the terminal is gone, so
                // the guest never stalls on a full console.
                if self.console_error.is_none() {
                    if let Err(e) = self
                        .output
                        .write_all(&out)
                        .and_then(|()| self.output.flush())
                    {
                        tracing::warn!("console output failed: {e}; discarding further output");
                        self.console_error = Some(e);
                    }
                }
                notify = true;
            }
            Ok(_) => {}
            Err(e) => self.console_broken(e),
        }
        if !self.pending_input.is_empty() {
            match rings::produce(
                &*self.mem,
                self.console_page,
                rings::CONSOLE_IN,
                &self.pending_input,
            ) {
                Ok(n) if n > 0 => {
                    self.pending_input.drain(..n);
                    notify = true;
                }
                Ok(_) => {}
                Err(e) => self.console_broken(e),
            }
        }
        if notify {
            self.notify(self.console_port);
        }
    }

    fn console_broken(&mut self, e: RingError) {
        if !self.warned_console {
            self.warned_console = true;
            tracing::warn!("console ring: {e}; ignoring it until it recovers");
        }
    }

    fn service_store(&mut self) {
        if self.xs_broken {
            return;
        }
        let page = self.store_page;
        // The reconnection protocol (docs/misc/xenstore-ring.txt).
        if let Ok(c) = self.mem.atomic_u32(page + rings::XS_CONNECTION) {
            if c.load(Ordering::Acquire) == XENSTORE_RECONNECT {
                self.store.reset_connection(self.conn);
                self.xs_in.clear();
                self.xs_out.clear();
                for off in [
                    rings::XS_REQ.cons,
                    rings::XS_REQ.prod,
                    rings::XS_RSP.cons,
                    rings::XS_RSP.prod,
                ] {
                    if let Ok(a) = self.mem.atomic_u32(page + off) {
                        a.store(0, Ordering::Release);
                    }
                }
                c.store(0, Ordering::Release);
                self.notify(self.store_port);
                return;
            }
        }
        let mut notify = false;
        if self.xs_out.len() < XS_MAX_OUTPUT {
            match rings::consume(&*self.mem, page, rings::XS_REQ, usize::MAX) {
                Ok(b) => {
                    notify |= !b.is_empty();
                    self.xs_in.extend_from_slice(&b);
                }
                Err(e) => return self.store_broken(e),
            }
        }
        if !self.xs_in.is_empty() {
            match self
                .store
                .exchange(self.conn, &self.xs_in, &mut self.xs_out, XS_MAX_OUTPUT)
            {
                Ok(used) => {
                    self.xs_in.drain(..used);
                }
                Err(e) => {
                    tracing::warn!("XenStore ring of domain {}: {e}", self.domain.domid());
                    return self.store_broken(RingError::Corrupt { prod: 0, cons: 0 });
                }
            }
        }
        self.store.take_output(self.conn, &mut self.xs_out);
        if !self.xs_out.is_empty() {
            match rings::produce(&*self.mem, page, rings::XS_RSP, &self.xs_out) {
                Ok(n) => {
                    notify |= n > 0;
                    self.xs_out.drain(..n);
                }
                Err(e) => return self.store_broken(e),
            }
        }
        if notify {
            self.notify(self.store_port);
        }
    }

    fn store_broken(&mut self, e: RingError) {
        tracing::warn!(
            "XenStore ring of domain {}: {e}; connection stopped",
            self.domain.domid()
        );
        self.xs_broken = true;
        if let Ok(a) = self.mem.atomic_u32(self.store_page + rings::XS_ERROR) {
            a.store(XENSTORE_ERROR_COMM, Ordering::Release);
        }
    }
}
