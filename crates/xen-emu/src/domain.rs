//! One domain's hypervisor state, the hypercall entry point and the API the
//! VMM uses as the toolstack and as the backend end of event channels.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use xen_abi::grant_table::{GrantEntryV1, GTF_PERMIT_ACCESS};
use xen_abi::hvm::params as hp;
use xen_abi::memory::E820Entry;
use xen_abi::xen::{SharedInfoLayout, VCPU_INFO_SIZE, XEN_LEGACY_MAX_VCPUS};

use crate::block::Parker;
use crate::evtchn::two_level::{self, Target};
use crate::evtchn::{Delivery, EvtchnHandler, EvtchnTable};
use crate::gnttab::GrantTable;
use crate::guest::{Gpa, GuestMemory, VcpuContext};
use crate::params::HvmParams;
use crate::platform::{Platform, Upcall};
use crate::types::{GrantRef, Port};

/// What the toolstack decided about the domain that xen-emu needs to answer
/// the guest (filled from xl.cfg by the binary, via the VMM). Start from
/// [`DomainConfig::default`] and set what you know.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    /// The guest's domain id (never 0 or a reserved id for a real guest).
    pub domid: u32,
    /// `maxvcpus`: vCPU ids `0..max_vcpus` exist.
    pub max_vcpus: u32,
    /// `(major, minor)` of the Xen we pretend to be (`xen_version` key).
    pub xen_version: (u16, u16),
    /// `XENVER_extraversion`, e.g. `".0"` (at most 15 bytes used).
    pub xen_extraversion: String,
    /// `max_grant_frames` (libxl default 64).
    pub max_grant_frames: u32,
    /// `event_channels`: the highest usable port (libxl's `max_evtchn_port`,
    /// default 1023); capped at 4095 (64-bit) / 1023 (32-bit shared_info).
    pub max_event_channels: u32,
    /// `xen_evtchn_max_pirq` (issue 5).
    pub max_pirq: u32,
    /// The domain's UUID (`XENVER_guest_handle`).
    pub uuid: [u8; 16],
    /// The e820 `XENMEM_memory_map` returns (libxl's PVH map: RAM, the
    /// special pages reserved, ACPI). The guest may replace it with
    /// `XENMEM_set_memory_map`.
    pub memory_map: Vec<E820Entry>,
    /// Pages of RAM the domain has (`XENMEM_current_reservation`, `memory`).
    pub current_pages: u64,
    /// Page limit (`XENMEM_maximum_reservation`, `maxmem`).
    pub max_pages: u64,
    /// `HVM_PARAM_TIMER_MODE` (`HVMPTM_*`, from `timer_mode`; libxl default 1).
    pub timer_mode: u64,
    /// Domain id the VMM's backends (console, XenStore) appear as.
    pub backend_domid: u16,
    /// HVM guest with PIRQ support (`XENFEAT_hvm_pirqs`); false for PVH.
    pub has_pirq: bool,
    /// `d->time_offset.seconds` (`XEN_DOMCTL_settimeoffset`, from xl.cfg's
    /// `rtc_timeoffset`/`localtime`): Xen adds it to the wallclock it
    /// publishes in shared_info (`update_domain_wallclock_time`), for
    /// every domain type.
    pub time_offset_seconds: i32,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            domid: 1,
            max_vcpus: 1,
            xen_version: (4, 17),
            xen_extraversion: ".0".to_string(),
            max_grant_frames: 64,
            max_event_channels: 1023,
            max_pirq: 256,
            uuid: [0; 16],
            memory_map: Vec::new(),
            current_pages: 0,
            max_pages: 0,
            timer_mode: hp::HVMPTM_NO_DELAY_FOR_MISSED_TICKS,
            backend_domid: 0,
            has_pirq: false,
            time_offset_seconds: 0,
        }
    }
}

/// Why a toolstack/backend request to the domain failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An event-channel operation failed with this Xen errno.
    #[error("event channel {port}: {what} failed (Xen errno {errno})")]
    Evtchn {
        port: u32,
        what: &'static str,
        errno: i64,
    },
    /// No free event-channel port (raise `event_channels`).
    #[error("no free event channel port (max port {0}); raise event_channels")]
    NoPorts(u32),
    /// HVM parameter index out of range.
    #[error("HVM parameter {0} does not exist (valid: 0..{max})", max = hp::HVM_NR_PARAMS)]
    BadParam(u32),
    /// Grant reference outside the first grant frame.
    #[error("grant reference {0} cannot be seeded (only refs 0..511 of frame 0)")]
    BadGrantRef(u32),
}

/// Per-domain state other than event channels. One lock; never held while
/// calling the platform or touching guest memory for long.
#[derive(Debug)]
pub(crate) struct State {
    pub params: HvmParams,
    pub gnttab: GrantTable,
    /// Where the guest put shared_info.
    pub shinfo_gfn: Option<u64>,
    /// 32-bit shared_info layout (latched like Xen's `has_32bit_shinfo`).
    pub compat: bool,
    /// `VCPUOP_register_vcpu_info` areas, per vCPU.
    pub vcpu_info: Vec<Option<Gpa>>,
    /// `HVMOP_set_evtchn_upcall_vector`, per vCPU.
    pub upcall_vector: Vec<Option<u8>>,
    pub e820: Vec<E820Entry>,
    /// `SCHEDOP_shutdown_code`.
    pub shutdown_code: Option<u32>,
    /// Ports raised before shared_info existed; replayed when it is mapped.
    pub early_pending: Vec<(Port, u32)>,
    /// Pages the domain holds (`d->tot_pages`): starts at `current_pages`,
    /// moved by the reservation calls.
    pub tot_pages: u64,
    /// RAM frames the guest gave back (`XENMEM_decrease_reservation`).
    pub ballooned: std::collections::BTreeSet<u64>,
    /// Page limit (`d->max_pages`): starts at the configured `max_pages`,
    /// moved by the toolstack (`XEN_DOMCTL_max_mem`, `xl mem-set/mem-max`).
    pub max_pages: u64,
    /// Per vCPU: host pointers to its 2-level event words, valid while its
    /// [`Target`] and the memory's layout generation are the ones recorded
    /// with them (see `Domain::set_pending`): an overlay or grant alias put
    /// over the frames re-resolves them, as the address-based path would.
    pub mapped: Vec<Option<(Target, u64, two_level::Mapped)>>,
}

impl State {
    pub fn shinfo_gpa(&self) -> Option<Gpa> {
        self.shinfo_gfn.map(|g| g << xen_abi::PAGE_SHIFT)
    }

    /// Where `vcpu`'s `vcpu_info` is: registered area, or its legacy slot
    /// in shared_info.
    pub fn vcpu_info_gpa(&self, vcpu: u32) -> Option<Gpa> {
        if let Some(Some(g)) = self.vcpu_info.get(vcpu as usize) {
            return Some(*g);
        }
        if (vcpu as usize) < XEN_LEGACY_MAX_VCPUS {
            return self
                .shinfo_gpa()
                .map(|s| s + u64::from(vcpu) * VCPU_INFO_SIZE as u64);
        }
        None
    }

    /// The cached host pointers for `vcpu` if they were resolved for `t`
    /// in layout generation `generation`.
    pub fn mapped_for(&self, vcpu: u32, t: Target, generation: u64) -> Option<two_level::Mapped> {
        match self.mapped.get(vcpu as usize) {
            Some(Some((k, g, m))) if *k == t && *g == generation => Some(*m),
            _ => None,
        }
    }

    pub fn target(&self, vcpu: u32) -> Option<Target> {
        Some(Target {
            shinfo: self.shinfo_gpa()?,
            vcpu_info: self.vcpu_info_gpa(vcpu)?,
            compat: self.compat,
        })
    }

    pub fn layout(&self) -> SharedInfoLayout {
        if self.compat {
            SharedInfoLayout::COMPAT
        } else {
            SharedInfoLayout::NATIVE
        }
    }

    /// How an upcall for `vcpu` is delivered right now.
    fn upcall_route(&self, vcpu: u32) -> Option<Upcall> {
        if let Some(Some(v)) = self.upcall_vector.get(vcpu as usize) {
            return Some(Upcall::Vector(*v));
        }
        let via = self.params.get_raw(hp::HVM_PARAM_CALLBACK_IRQ).unwrap_or(0);
        match via >> hp::HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT {
            _ if via == 0 => None,
            hp::HVM_PARAM_CALLBACK_TYPE_VECTOR => Some(Upcall::Vector(via as u8)),
            // The GSI reflects vCPU 0's pending state only (Xen's
            // hvm_assert_evtchn_irq).
            hp::HVM_PARAM_CALLBACK_TYPE_GSI if vcpu == 0 => Some(Upcall::Gsi {
                gsi: via as u32,
                level: true,
            }),
            // PCI INTx of the platform device: Xen routes it through the
            // fixed PCI-ISA link swizzle to a GSI (hvm_pci_intx_gsi).
            hp::HVM_PARAM_CALLBACK_TYPE_PCI_INTX if vcpu == 0 => {
                // Domain = val[47:32], Bus = val[31:16], DevFn = val[15:8].
                let dev = ((via >> 11) & 31) as u32;
                let intx = (via & 3) as u32;
                Some(Upcall::Gsi {
                    gsi: pci_intx_gsi(dev, intx),
                    level: true,
                })
            }
            _ => None,
        }
    }

    /// `is_hvm_pv_evtchn_domain`: upcalls arrive through a vector (the
    /// domain-wide callback or vCPU 0's own vector).
    pub fn callback_is_vector(&self) -> bool {
        let via = self.params.get_raw(hp::HVM_PARAM_CALLBACK_IRQ).unwrap_or(0);
        (via != 0
            && via >> hp::HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT == hp::HVM_PARAM_CALLBACK_TYPE_VECTOR)
            || self.upcall_vector.first().is_some_and(|v| v.is_some())
    }
}

/// Xen's `hvm_pci_intx_gsi`: the GSI PCI device `dev`'s pin `intx` (0 = A)
/// is wired to on an HVM guest's virtual chipset.
pub fn pci_intx_gsi(dev: u32, intx: u32) -> u32 {
    (((dev << 2) + (dev >> 3) + intx) & 31) + 16
}

/// A Xen domain as the hypervisor sees it. Shared by all vCPU threads and
/// the VMM's backends (`Arc<Domain>`); every method takes `&self`.
pub struct Domain {
    pub(crate) config: DomainConfig,
    pub(crate) mem: Arc<dyn GuestMemory>,
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) state: Mutex<State>,
    pub(crate) evtchn: Mutex<EvtchnTable>,
    /// Grant entries the backend (or the guest's own copies) hold pinned.
    pub(crate) active: Mutex<crate::gnttab::active::ActiveGrants>,
    pub(crate) parkers: Vec<Parker>,
    /// vCPUs inside `SCHEDOP_poll` (woken by any event, as Xen's poll_mask).
    pub(crate) polling: Vec<AtomicBool>,
    /// `(hypercall, sub-op)` pairs already reported as unimplemented.
    warned: Mutex<HashSet<(u64, u64)>>,
    /// This domain, for the timer thread (never upgraded while locked).
    pub(crate) me: Weak<Domain>,
    /// Singleshot and periodic timers (`VIRQ_TIMER`).
    pub(crate) timers: Arc<crate::timer::Timers>,
    /// Per-vCPU state beyond event channels: runstate, areas, up/down.
    pub(crate) vcpus: Vec<Mutex<crate::vcpu::VcpuState>>,
    /// PIRQs of an HVM guest with `has_pirq`.
    pub(crate) pirqs: Mutex<crate::pirq::PirqTable>,
    /// `HYPERVISOR_vm_assist` bits the guest enabled (Xen's
    /// `d->vm_assist`).
    pub(crate) vm_assist: AtomicU64,
}

impl Drop for Domain {
    fn drop(&mut self) {
        self.timers.shutdown();
    }
}

/// The wallclock seconds shared_info carries for a boot at `wc_ns` Unix
/// nanoseconds: Xen's `wc_sec + d->time_offset.seconds`. Never before
/// the epoch (the fields are unsigned).
fn wallclock_seconds(wc_ns: u64, offset: i32) -> u64 {
    (wc_ns / 1_000_000_000).saturating_add_signed(i64::from(offset))
}

impl Domain {
    /// Creates the domain's hypervisor state. HVM params that the
    /// toolstack presets from config (timer mode) are set here; the store
    /// and console ones with [`Domain::set_hvm_param`] once the VMM knows
    /// them. Returned in an `Arc` because the domain's timers hold a weak
    /// reference to it.
    pub fn new(
        config: DomainConfig,
        mem: Arc<dyn GuestMemory>,
        platform: Arc<dyn Platform>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self::build(config, mem, platform, me.clone()))
    }

    fn build(
        config: DomainConfig,
        mem: Arc<dyn GuestMemory>,
        platform: Arc<dyn Platform>,
        me: Weak<Domain>,
    ) -> Self {
        let n = config.max_vcpus.max(1) as usize;
        let mut params = HvmParams::new();
        let _ = params.preset(hp::HVM_PARAM_TIMER_MODE, config.timer_mode);
        // hvm_domain_initialise: a triple fault reboots unless changed.
        let _ = params.preset(
            hp::HVM_PARAM_TRIPLE_FAULT_REASON,
            u64::from(xen_abi::sched::SHUTDOWN_REBOOT),
        );
        let domid = config.domid as u16;
        let state = State {
            params,
            gnttab: GrantTable::new(config.max_grant_frames),
            shinfo_gfn: None,
            compat: false,
            vcpu_info: vec![None; n],
            upcall_vector: vec![None; n],
            e820: config.memory_map.clone(),
            shutdown_code: None,
            early_pending: Vec::new(),
            tot_pages: config.current_pages,
            ballooned: Default::default(),
            max_pages: config.max_pages,
            mapped: vec![None; n],
        };
        let evtchn = EvtchnTable::new(domid, config.max_event_channels, n as u32);
        let pirqs = crate::pirq::PirqTable::new(config.max_pirq);
        Self {
            me,
            timers: crate::timer::Timers::new(n as u32),
            vcpus: (0..n)
                .map(|i| Mutex::new(crate::vcpu::VcpuState::new(i == 0)))
                .collect(),
            pirqs: Mutex::new(pirqs),
            parkers: (0..n).map(|_| Parker::default()).collect(),
            polling: (0..n).map(|_| AtomicBool::new(false)).collect(),
            config,
            mem,
            platform,
            state: Mutex::new(state),
            evtchn: Mutex::new(evtchn),
            active: Mutex::new(Default::default()),
            warned: Mutex::new(HashSet::new()),
            vm_assist: AtomicU64::new(0),
        }
    }

    /// Whether an upcall for `vcpu` is delivered by interrupt right now.
    pub(crate) fn has_upcall_route(&self, vcpu: u32) -> bool {
        self.state().upcall_route(vcpu).is_some()
    }

    /// `is_hvm_pv_evtchn_domain` (see [`State::callback_is_vector`]).
    pub(crate) fn callback_is_vector(&self) -> bool {
        self.state().callback_is_vector()
    }

    /// The configuration the domain was created with.
    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// The guest's domain id as `domid_t`.
    pub fn domid(&self) -> u16 {
        self.config.domid as u16
    }

    /// Runs hypercall `nr` with its (up to five) register arguments for the
    /// calling vCPU and returns the value for rax/eax (negative Xen errno on
    /// failure). Both trap paths call this; it never panics on guest input.
    ///
    /// `SCHEDOP_block` and `SCHEDOP_poll` block the calling thread here
    /// until an event arrives for the vCPU, [`Domain::wake_vcpu`] is called
    /// for it, or the poll timeout passes.
    pub fn hypercall(&self, vcpu: &mut dyn VcpuContext, nr: u64, args: [u64; 5]) -> i64 {
        crate::hypercall::dispatch(self, vcpu, nr, args)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn evtchns(&self) -> MutexGuard<'_, EvtchnTable> {
        self.evtchn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs an unimplemented hypercall or sub-op once per domain.
    pub(crate) fn warn_once(&self, nr: u64, sub: u64, what: &str) {
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if w.insert((nr, sub)) {
            if sub == u64::MAX {
                // The whole hypercall, not one of its sub-ops.
                tracing::warn!(
                    domid = self.config.domid,
                    "unimplemented {what} (hypercall {nr}): -ENOSYS"
                );
            } else {
                tracing::warn!(
                    domid = self.config.domid,
                    "unimplemented {what} (hypercall {nr}, sub-op {sub}): -ENOSYS"
                );
            }
        }
    }

    // ---- toolstack API -------------------------------------------------

    /// Toolstack write of an HVM parameter (`xc_hvm_param_set`), bypassing
    /// the guest's access rules: `HVM_PARAM_STORE_PFN`/`_EVTCHN`,
    /// `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN`, ...
    pub fn set_hvm_param(&self, index: u32, value: u64) -> Result<(), Error> {
        self.state()
            .params
            .preset(index, value)
            .map_err(|_| Error::BadParam(index))
    }

    /// A vCPU triple-faulted. As Xen's `hvm_triple_fault`, the domain shuts
    /// down with `HVM_PARAM_TRIPLE_FAULT_REASON`, which is `SHUTDOWN_reboot`
    /// unless the toolstack set it (`hvm_domain_initialise`).
    pub fn triple_fault(&self, vcpu: u32) {
        let reason = self
            .hvm_param(hp::HVM_PARAM_TRIPLE_FAULT_REASON)
            .unwrap_or(u64::from(xen_abi::sched::SHUTDOWN_REBOOT)) as u8;
        tracing::warn!("vCPU {vcpu}: triple fault - invoking HVM shutdown action {reason}");
        self.platform
            .shutdown(crate::hypercall::sched_op::shutdown_reason(reason));
    }

    /// Toolstack read of an HVM parameter.
    pub fn hvm_param(&self, index: u32) -> Option<u64> {
        self.state().params.get_raw(index)
    }

    /// Seeds grant entry `gref` (in frame 0) as `GTF_permit_access` to
    /// `domid` for guest frame `gfn`, as libxl's `xc_dom_gnttab_seed` does
    /// for `GNTTAB_RESERVED_CONSOLE` (0) and `GNTTAB_RESERVED_XENSTORE` (1).
    /// Written into the grant frame when the guest first maps it.
    pub fn seed_grant(&self, gref: u32, domid: u16, gfn: u64) -> Result<(), Error> {
        let entry = GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid,
            frame: gfn as u32,
        };
        let mut st = self.state();
        st.gnttab
            .seed(GrantRef(gref), entry)
            .map_err(|_| Error::BadGrantRef(gref))?;
        // Already mapped (seeding late): write it now.
        if let Some((g, off)) = st.gnttab.entry_location(GrantRef(gref)) {
            let _ = crate::hypercall::gnttab::write_entry(&*self.mem, g, off, &entry);
        }
        Ok(())
    }

    /// The `SCHEDOP_shutdown_code` the guest set, if any.
    pub fn shutdown_code(&self) -> Option<u32> {
        self.state().shutdown_code
    }

    // ---- backend event-channel API -------------------------------------

    /// Creates a channel between the guest and a VMM backend (the console's
    /// or XenStore's, set up before the guest runs): a guest port, unbound
    /// for `backend_domid` and immediately bound by the backend. Put the
    /// returned port into `HVM_PARAM_CONSOLE_EVTCHN` /
    /// `HVM_PARAM_STORE_EVTCHN` with [`Domain::set_hvm_param`].
    ///
    /// `handler` runs (on the guest's vCPU thread, outside xen-emu's locks)
    /// whenever the guest does `EVTCHNOP_send` on the port.
    pub fn create_backend_channel(&self, handler: EvtchnHandler) -> Result<Port, Error> {
        let backend = self.config.backend_domid;
        let mut t = self.evtchns();
        let port = t
            .alloc_unbound(backend)
            .map_err(|_| Error::NoPorts(self.config.max_event_channels))?;
        t.bind_backend(port, backend, handler)
            .map_err(|e| Error::Evtchn {
                port: port.0,
                what: "bind_interdomain",
                errno: e.0,
            })?;
        Ok(port)
    }

    /// A backend binds to a port the guest allocated with
    /// `EVTCHNOP_alloc_unbound` for `backend_domid` (the frontend/backend
    /// handshake of PV devices; what a backend's `bind_interdomain` does).
    pub fn bind_backend_channel(&self, port: u32, handler: EvtchnHandler) -> Result<(), Error> {
        let backend = self.config.backend_domid;
        self.evtchns()
            .bind_backend(Port(port), backend, handler)
            .map(|_| ())
            .map_err(|e| Error::Evtchn {
                port,
                what: "bind_interdomain",
                errno: e.0,
            })
    }

    /// The backend allocates a port of its own, unbound for the guest
    /// (dom0's `EVTCHNOP_alloc_unbound(remote_dom = guest)`); the guest
    /// binds it with `EVTCHNOP_bind_interdomain(backend_domid, returned
    /// port)`. `handler` runs when the guest sends on its end; the guest's
    /// port number is what the handler receives and what
    /// [`Domain::backend_send`] takes (also [`Domain::backend_peer`]).
    pub fn offer_backend_channel(&self, handler: EvtchnHandler) -> u32 {
        let backend = self.config.backend_domid;
        self.evtchns().offer_backend(backend, handler).0
    }

    /// The guest port bound to backend port `backend_port` (from
    /// [`Domain::offer_backend_channel`]), once the guest has bound it.
    pub fn backend_peer(&self, backend_port: u32) -> Option<u32> {
        self.evtchns()
            .backend_peer(crate::evtchn::BackendId(backend_port))
            .map(|p| p.0)
    }

    /// The backend closes its end of guest port `port` (device
    /// disconnect): the guest's port becomes unbound for the backend domain
    /// again, and later guest sends on it are dropped, as in Xen.
    pub fn backend_unbind(&self, port: u32) -> Result<(), Error> {
        self.evtchns()
            .unbind_backend(Port(port))
            .map_err(|e| Error::Evtchn {
                port,
                what: "close",
                errno: e.0,
            })
    }

    /// The backend notifies the guest on `port` (sets it pending and raises
    /// the upcall). Fails if the port is not bound to a backend (e.g. the
    /// guest closed it).
    pub fn backend_send(&self, port: u32) -> Result<(), Error> {
        let d = self
            .evtchns()
            .backend_send(Port(port))
            .map_err(|e| Error::Evtchn {
                port,
                what: "send",
                errno: e.0,
            })?;
        self.deliver(d);
        Ok(())
    }

    /// Raises `virq` for `vcpu` (per-vCPU VIRQs such as `VIRQ_TIMER`; global
    /// ones go to vCPU 0's binding): sets the bound port pending. Returns
    /// `false` if the guest has not bound the VIRQ (Xen drops it then).
    pub fn raise_virq(&self, vcpu: u32, virq: u32) -> bool {
        let bound = {
            let t = self.evtchns();
            let owner = if crate::evtchn::virq_is_global(virq) {
                0
            } else {
                vcpu
            };
            t.virq_port(owner, virq)
                .and_then(|p| t.get(p).ok().map(|c| (p, c.vcpu)))
        };
        match bound {
            Some((port, notify)) => {
                self.set_pending(port, notify);
                true
            }
            None => false,
        }
    }

    // ---- vCPU blocking -------------------------------------------------

    /// Wakes vCPU `vcpu` if its thread is blocked in `SCHEDOP_block`/`poll`
    /// (or makes its next block return at once). The VMM calls this when it
    /// injects an interrupt into a vCPU by other means (LAPIC, MSI) and when
    /// it wants the vCPU thread back (pause, shutdown).
    pub fn wake_vcpu(&self, vcpu: u32) {
        if let Some(p) = self.parkers.get(vcpu as usize) {
            p.wake();
        }
    }

    /// An event reached `vcpu`: ends its `SCHEDOP_block` even with
    /// interrupts off (Xen's `vcpu_unblock` from `vcpu_kick`).
    pub(crate) fn event_for_vcpu(&self, vcpu: u32) {
        if let Some(p) = self.parkers.get(vcpu as usize) {
            p.notify_event();
        }
    }

    /// Whether a GSI/INTx callback line must be asserted now: vCPU 0 has
    /// `evtchn_upcall_pending` set (Xen's `hvm_maybe_deassert_evtchn_irq`
    /// deasserts it once the guest has cleared the flag). The VMM asks this
    /// after the guest's EOI of the line.
    pub fn callback_level(&self) -> bool {
        let vi = self.state().vcpu_info_gpa(0);
        vi.is_some_and(|g| two_level::upcall_pending(&*self.mem, g).unwrap_or(false))
    }

    /// [`Domain::wake_vcpu`] for every vCPU.
    pub fn wake_all(&self) {
        for p in &self.parkers {
            p.wake();
        }
    }

    // ---- delivery --------------------------------------------------------

    /// Carries out what an event-channel operation decided.
    pub(crate) fn deliver(&self, d: Delivery) {
        match d {
            Delivery::Nothing => {}
            Delivery::Backend { port, handler } => handler(port),
            Delivery::Guest { port, vcpu } => self.set_pending(port, vcpu),
        }
    }

    /// 2-level `evtchn_port_set_pending` plus the upcall and wake-ups.
    pub(crate) fn set_pending(&self, port: Port, vcpu: u32) {
        let generation = self.mem.layout_generation();
        let (target, route, mapped) = {
            let mut st = self.state();
            match st.target(vcpu) {
                Some(t) => (t, st.upcall_route(vcpu), st.mapped_for(vcpu, t, generation)),
                None => {
                    if !st.early_pending.contains(&(port, vcpu)) {
                        st.early_pending.push((port, vcpu));
                    }
                    return;
                }
            }
        };
        let mapped = mapped.or_else(|| self.map_target(vcpu, target));
        // SAFETY: `mapped` was resolved from `self.mem`, which lives as
        // long as `self`.
        let r = match mapped.and_then(|m| unsafe { m.set_pending(port) }) {
            Some(up) => Ok(up),
            None => two_level::set_pending(&*self.mem, target, port),
        };
        match r {
            Ok(true) => {
                if let Some(u) = route {
                    self.platform.upcall(vcpu, u);
                }
                // vcpu_mark_events_pending kicks only on 0 -> 1.
                self.event_for_vcpu(vcpu);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot mark {port} pending for vCPU {vcpu}: {e}"),
        }
        // evtchn_check_pollers: pollers re-check their ports.
        for (i, p) in self.polling.iter().enumerate() {
            if p.load(Ordering::SeqCst) {
                self.event_for_vcpu(i as u32);
            }
        }
    }

    /// `EVTCHNOP_unmask` of `port` notifying `vcpu` whose words are at
    /// `t`: through the same host pointers as sends (so both see the same
    /// pages), else by guest address. `Ok(true)`: raise the upcall.
    pub(crate) fn unmask_port(
        &self,
        vcpu: u32,
        t: Target,
        port: Port,
    ) -> Result<bool, crate::guest::MemError> {
        let cached = self
            .state()
            .mapped_for(vcpu, t, self.mem.layout_generation());
        let mapped = cached.or_else(|| self.map_target(vcpu, t));
        // SAFETY: `mapped` was resolved from `self.mem`, which lives as
        // long as `self`.
        match mapped.and_then(|m| unsafe { m.unmask(port) }) {
            Some(up) => Ok(up),
            None => two_level::unmask(&*self.mem, t, port),
        }
    }

    /// Resolves `vcpu`'s event words at `target` to host pointers and
    /// caches them (see [`two_level::Mapped`]); `None` if the memory gives
    /// no host pointers.
    fn map_target(&self, vcpu: u32, target: Target) -> Option<two_level::Mapped> {
        // Read before resolving: a layout change during the resolution
        // leaves a generation that no longer matches.
        let generation = self.mem.layout_generation();
        let m = two_level::Mapped::resolve(&*self.mem, target)?;
        if let Some(slot) = self.state().mapped.get_mut(vcpu as usize) {
            *slot = Some((target, generation, m));
        }
        Some(m)
    }

    /// Raises the upcall for `vcpu` after something other than a port made
    /// `evtchn_upcall_pending` go 0 → 1 (unmask, vcpu_info move).
    pub(crate) fn raise_upcall(&self, vcpu: u32) {
        let route = self.state().upcall_route(vcpu);
        if let Some(u) = route {
            self.platform.upcall(vcpu, u);
        }
        self.event_for_vcpu(vcpu);
    }

    /// Writes shared_info's wallclock (`update_domain_wallclock_time`):
    /// the Unix time at guest system time 0.
    pub(crate) fn write_wallclock(&self) {
        let (shinfo, layout) = {
            let st = self.state();
            match st.shinfo_gpa() {
                Some(s) => (s, st.layout()),
                None => return,
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let wc = now.saturating_sub(self.platform.system_time_ns());
        let sec = wallclock_seconds(wc, self.config.time_offset_seconds);
        let nsec = (wc % 1_000_000_000) as u32;
        let r = (|| -> Result<(), crate::guest::MemError> {
            let ver = self.mem.atomic_u32(shinfo + layout.wc_version as u64)?;
            let v = ver.load(Ordering::SeqCst) | 1;
            ver.store(v, Ordering::SeqCst);
            self.mem
                .atomic_u32(shinfo + layout.wc_sec as u64)?
                .store(sec as u32, Ordering::SeqCst);
            self.mem
                .atomic_u32(shinfo + layout.wc_nsec as u64)?
                .store(nsec, Ordering::SeqCst);
            self.mem
                .atomic_u32(shinfo + layout.wc_sec_hi as u64)?
                .store((sec >> 32) as u32, Ordering::SeqCst);
            ver.store(v.wrapping_add(1), Ordering::SeqCst);
            Ok(())
        })();
        if let Err(e) = r {
            tracing::warn!("cannot write wallclock: {e}");
        }
    }

    /// Latches the shared_info layout from the calling vCPU's mode (Xen's
    /// `hvm_latch_shinfo_size`), rewriting the wallclock if it changed.
    pub(crate) fn latch_shinfo_size(&self, compat: bool) {
        let changed = {
            let mut st = self.state();
            let changed = st.compat != compat;
            st.compat = compat;
            changed
        };
        if changed {
            let nr = if compat {
                SharedInfoLayout::COMPAT.nr_channels
            } else {
                SharedInfoLayout::NATIVE.nr_channels
            };
            self.evtchns().set_abi_limit(nr);
            self.write_wallclock();
        }
    }

    /// Called after shared_info was mapped at a new frame: wallclock,
    /// pvclock areas of vCPUs still using their legacy slot, and events
    /// raised before the guest could see them.
    pub(crate) fn shared_info_mapped(&self) {
        self.write_wallclock();
        let (slots, early) = {
            let mut st = self.state();
            let n = st.vcpu_info.len() as u32;
            let slots: Vec<(u32, Gpa)> = (0..n)
                .filter(|v| st.vcpu_info.get(*v as usize).is_some_and(|r| r.is_none()))
                .filter_map(|v| st.vcpu_info_gpa(v).map(|g| (v, g)))
                .collect();
            (slots, std::mem::take(&mut st.early_pending))
        };
        for (v, g) in slots {
            self.platform
                .set_pvclock_area(v, g + xen_abi::xen::vcpu_info_offsets::TIME as u64);
        }
        for (port, vcpu) in early {
            self.set_pending(port, vcpu);
        }
    }
}

#[cfg(test)]
mod wallclock_tests {
    use super::wallclock_seconds;

    #[test]
    fn the_time_offset_shifts_the_wallclock_both_ways() {
        let boot = 1_700_000_000 * 1_000_000_000 + 5;
        assert_eq!(wallclock_seconds(boot, 0), 1_700_000_000);
        assert_eq!(wallclock_seconds(boot, 3600), 1_700_003_600);
        assert_eq!(wallclock_seconds(boot, -7200), 1_699_992_800);
    }

    #[test]
    fn the_wallclock_never_goes_before_the_epoch() {
        assert_eq!(wallclock_seconds(10_000_000_000, i32::MIN), 0);
    }
}
