//! The toolstack's handle on a running domain (what libxl gets from Xen's
//! domctls): pause and unpause every vCPU, destroy, a forced shutdown with a
//! reason, the live `console_io` log (`xl dmesg`) and a core dump of guest
//! memory and vCPU registers taken when the domain stops, and hot-plug of
//! disks and network interfaces while the guest runs (`xl block-attach`,
//! `block-detach`, `network-attach`, `network-detach`).
//!
//! A [`DomainControl`] is created by the caller, handed to
//! [`run_domain_controlled`](crate::run_domain_controlled) and may be used
//! from any thread, before, during and between runs (a restarted domain
//! reuses it).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xen_emu::Domain;
pub use xen_emu::VcpuInfo;

use crate::devices::{DeviceClass, Hotplug, HotplugError, PvDevice, UnplugMode, Unplugged};
use crate::platform::Shared;
use crate::{DomainExit, RunOutcome};

/// How [`run_domain_controlled`](crate::run_domain_controlled) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The guest shut down (or was forced to, see [`DomainControl::shutdown`]).
    Shutdown(RunOutcome),
    /// [`DomainControl::destroy`] ended it; no `on_*` action applies.
    Destroyed {
        /// What the guest wrote with `console_io` in this run.
        hypervisor_log: Vec<u8>,
    },
}

/// One guest-physical range of RAM and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRange {
    pub gpa: u64,
    pub data: Vec<u8>,
}

/// A vCPU's architectural state as a core file records it (the x86-64
/// `user_regs_struct` fields plus the control registers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    /// Selectors: cs, ss, ds, es, fs, gs.
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub fs_base: u64,
    pub gs_base: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl VcpuRegisters {
    pub(crate) fn from_kvm(r: &kvm_bindings::kvm_regs, s: &kvm_bindings::kvm_sregs) -> Self {
        Self {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rsp: r.rsp,
            rbp: r.rbp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: r.rip,
            rflags: r.rflags,
            cs: s.cs.selector,
            ss: s.ss.selector,
            ds: s.ds.selector,
            es: s.es.selector,
            fs: s.fs.selector,
            gs: s.gs.selector,
            fs_base: s.fs.base,
            gs_base: s.gs.base,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        }
    }
}

/// Guest memory and vCPU state at the moment the domain stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreDump {
    pub memory: Vec<MemoryRange>,
    /// Index = vCPU id; `None` for a vCPU that never ran.
    pub vcpus: Vec<Option<VcpuRegisters>>,
}

/// Decides from the exit reason whether the stopping domain is dumped.
pub type DumpPolicy = Box<dyn Fn(DomainExit) -> bool + Send>;

/// The run currently attached (None between runs).
struct Attached {
    shared: Arc<Shared>,
    domain: Arc<Domain>,
    online: u32,
}

#[derive(Default)]
struct State {
    paused: bool,
    destroyed: bool,
    /// A forced shutdown asked for before the run attached.
    forced: Option<DomainExit>,
    /// vCPUs inside `KVM_RUN` (between `enter_guest` and `leave_guest`).
    in_guest: u32,
    run: Option<Attached>,
    /// The running domain's device thread.
    hotplug: Option<Hotplug>,
    registers: Vec<Option<VcpuRegisters>>,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
    policy: Mutex<Option<DumpPolicy>>,
    dump: Mutex<Option<CoreDump>>,
}

/// A cloneable handle on a domain's run; see the module docs.
#[derive(Clone)]
pub struct DomainControl(Arc<Inner>);

impl Default for DomainControl {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DomainControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state();
        f.debug_struct("DomainControl")
            .field("paused", &s.paused)
            .field("destroyed", &s.destroyed)
            .field("running", &s.run.is_some())
            .finish()
    }
}

/// How long [`DomainControl::pause`] waits for running vCPUs to leave
/// `KVM_RUN`.
const PAUSE_WAIT: Duration = Duration::from_secs(2);

impl DomainControl {
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            policy: Mutex::new(None),
            dump: Mutex::new(None),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every vCPU before its next guest instruction (`xl pause`).
    /// Each vCPU in `KVM_RUN` is kicked out, re-enters it once with
    /// `immediate_exit` so a pending I/O or hypercall completes, then
    /// parks; a vCPU blocked in `SCHEDOP_block`/`poll` parks when it wakes,
    /// before it runs guest code again. Returns once no vCPU is in
    /// `KVM_RUN` (or after a bound).
    pub fn pause(&self) {
        let mut s = self.state();
        s.paused = true;
        let deadline = Instant::now() + PAUSE_WAIT;
        while s.in_guest > 0 && s.paused {
            // Kick on every round: a vCPU that was between its check and
            // the ioctl when the previous kick came missed it.
            if let Some(run) = &s.run {
                for v in 0..run.online {
                    run.shared.kick(v);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("pause: {} vCPU(s) did not leave KVM_RUN", s.in_guest);
                break;
            }
            s = self
                .0
                .cond
                .wait_timeout(s, left.min(Duration::from_millis(10)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lets the parked vCPUs run again (`xl unpause`).
    pub fn unpause(&self) {
        self.state().paused = false;
        self.0.cond.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.state().paused
    }

    /// Ends the domain at once, whatever the guest is doing (`xl destroy`).
    pub fn destroy(&self) {
        let mut s = self.state();
        s.destroyed = true;
        if let Some(run) = &s.run {
            run.shared.request_stop();
            run.domain.wake_all();
        }
        drop(s);
        self.0.cond.notify_all();
    }

    pub fn is_destroyed(&self) -> bool {
        self.state().destroyed
    }

    /// The VMM ends the domain as if the guest had shut down with `exit`
    /// (`xl shutdown -F` for a guest without PV drivers): the `on_*` action
    /// for that reason follows.
    pub fn shutdown(&self, exit: DomainExit) {
        let mut s = self.state();
        match &s.run {
            Some(run) => {
                let mut r = run
                    .shared
                    .shutdown
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if r.is_none() {
                    *r = Some(exit);
                }
                drop(r);
                run.shared.request_stop();
                run.domain.wake_all();
            }
            None => s.forced = Some(exit),
        }
        drop(s);
        self.0.cond.notify_all();
    }

    /// What the guest has written with `console_io` in the current run.
    pub fn hypervisor_log(&self) -> Vec<u8> {
        match &self.state().run {
            Some(run) => run
                .shared
                .hypervisor_log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            None => Vec::new(),
        }
    }

    /// An HVM param of the running domain (e.g. `HVM_PARAM_CALLBACK_IRQ`,
    /// which tells libxl the guest has PV drivers).
    pub fn hvm_param(&self, index: u32) -> Option<u64> {
        self.state()
            .run
            .as_ref()
            .and_then(|r| r.domain.hvm_param(index))
    }

    /// Whether a run is attached (the guest's vCPUs exist).
    pub fn is_running(&self) -> bool {
        self.state().run.is_some()
    }

    /// Plugs a disk or network interface into the running domain, with the
    /// same backend and XenStore nodes a `disk=` / `vif=` entry gets at
    /// boot. Returns the device id. Refused when the device id is in use
    /// ([`HotplugError::Exists`]).
    pub fn attach_device(&self, dev: PvDevice) -> Result<u32, HotplugError> {
        self.hotplug()?.attach(dev)
    }

    /// Unplugs device `devid` of `class` as libxl does: the backend goes
    /// offline and Closing, the frontend gets up to
    /// [`REMOVE_TIMEOUT`](crate::REMOVE_TIMEOUT) to close, then the
    /// backend releases everything and removes the XenStore directories.
    /// `mode` says what happens when the frontend does not close (see
    /// [`UnplugMode`]). Blocks until the device is gone or the unplug failed.
    pub fn detach_device(
        &self,
        class: DeviceClass,
        devid: u32,
        mode: UnplugMode,
    ) -> Result<Unplugged, HotplugError> {
        self.hotplug()?.detach(class, devid, mode)
    }

    fn hotplug(&self) -> Result<Hotplug, HotplugError> {
        self.state().hotplug.clone().ok_or(HotplugError::NotRunning)
    }

    /// `(tot_pages, max_pages)` of the running domain: the pages it holds
    /// (`xl list`'s Mem) and its limit (`XEN_DOMCTL_max_mem`).
    pub fn memory_pages(&self) -> Option<(u64, u64)> {
        self.state()
            .run
            .as_ref()
            .map(|r| (r.domain.tot_pages(), r.domain.max_pages()))
    }

    /// `XEN_DOMCTL_max_mem` (`xl mem-set`, `xl mem-max`): the most pages
    /// the guest may hold from now on. False when no run is attached.
    pub fn set_max_pages(&self, pages: u64) -> bool {
        match &self.state().run {
            Some(r) => {
                r.domain.set_max_pages(pages);
                true
            }
            None => false,
        }
    }

    /// `XEN_DOMCTL_getvcpuinfo` for every vCPU id `0..max_vcpus` of the
    /// running domain (empty between runs).
    pub fn vcpu_infos(&self) -> Vec<VcpuInfo> {
        match &self.state().run {
            Some(r) => (0..r.domain.max_vcpus())
                .filter_map(|v| r.domain.vcpu_info(v))
                .collect(),
            None => Vec::new(),
        }
    }

    /// `XEN_DOMCTL_SENDTRIGGER_NMI` (`xl trigger DOM nmi VCPU`): queues an
    /// NMI for `vcpu`, which injects it (`KVM_NMI`) before it next enters
    /// the guest; a vCPU halted or blocked is woken for it. False when no
    /// run is attached or there is no such vCPU.
    pub fn nmi(&self, vcpu: u32) -> bool {
        let s = self.state();
        let Some(run) = &s.run else {
            return false;
        };
        let Some(flag) = run.shared.pending_nmi.get(vcpu as usize) else {
            return false;
        };
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        run.shared.kick(vcpu);
        run.domain.wake_vcpu(vcpu);
        true
    }

    /// Sets which exit reasons make the next runs record a [`CoreDump`].
    pub fn set_dump_policy(&self, policy: DumpPolicy) {
        *self.0.policy.lock().unwrap_or_else(|e| e.into_inner()) = Some(policy);
    }

    /// The core dump recorded when the last run stopped, if its policy
    /// asked for one.
    pub fn take_core_dump(&self) -> Option<CoreDump> {
        self.0.dump.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    // --- for run.rs and vcpu.rs ---

    pub(crate) fn attach(&self, shared: Arc<Shared>, domain: Arc<Domain>, online: u32) {
        let mut s = self.state();
        s.in_guest = 0;
        s.registers = vec![None; online as usize];
        s.run = Some(Attached {
            shared,
            domain,
            online,
        });
        if let Some(exit) = s.forced.take() {
            drop(s);
            self.shutdown(exit);
            s = self.state();
        }
        if s.destroyed {
            if let Some(run) = &s.run {
                run.shared.request_stop();
            }
        }
    }

    /// Connects hot-plug requests to this run's device thread.
    pub(crate) fn attach_devices(&self, hotplug: Hotplug) {
        self.state().hotplug = Some(hotplug);
    }

    pub(crate) fn detach(&self) {
        let mut s = self.state();
        s.run = None;
        s.hotplug = None;
        drop(s);
        self.0.cond.notify_all();
    }

    /// Wakes parked vCPUs so they see a stop request.
    pub(crate) fn notify(&self) {
        self.0.cond.notify_all();
    }

    /// Called by a vCPU right before `KVM_RUN`: false when it must park
    /// instead; true records it as running guest code.
    pub(crate) fn enter_guest(&self) -> bool {
        let mut s = self.state();
        if s.paused {
            return false;
        }
        s.in_guest += 1;
        true
    }

    /// Called by a vCPU when `KVM_RUN` returned after [`Self::enter_guest`].
    pub(crate) fn leave_guest(&self) {
        let mut s = self.state();
        s.in_guest = s.in_guest.saturating_sub(1);
        if s.paused {
            self.0.cond.notify_all();
        }
    }

    /// Blocks the calling vCPU while the domain is paused and not stopping.
    pub(crate) fn park(&self, stop: &std::sync::atomic::AtomicBool) {
        let mut s = self.state();
        while s.paused && !s.destroyed && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            s = self
                .0
                .cond
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(crate) fn save_registers(&self, vcpu: u32, regs: VcpuRegisters) {
        if let Some(slot) = self.state().registers.get_mut(vcpu as usize) {
            *slot = Some(regs);
        }
    }

    pub(crate) fn wants_dump(&self, exit: DomainExit) -> bool {
        self.0
            .policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|p| p(exit))
    }

    pub(crate) fn record_dump(&self, memory: Vec<MemoryRange>) {
        let vcpus = std::mem::take(&mut self.state().registers);
        *self.0.dump.lock().unwrap_or_else(|e| e.into_inner()) = Some(CoreDump { memory, vcpus });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_destroy_are_recorded_without_a_run() {
        let c = DomainControl::new();
        c.pause();
        assert!(c.is_paused());
        c.unpause();
        assert!(!c.is_paused());
        c.destroy();
        assert!(c.is_destroyed());
        assert!(c.hypervisor_log().is_empty());
    }

    #[test]
    fn hotplug_without_a_run_is_refused() {
        let c = DomainControl::new();
        assert_eq!(
            c.detach_device(DeviceClass::Vbd, 51712, UnplugMode::Safe),
            Err(HotplugError::NotRunning)
        );
    }

    #[test]
    fn memory_and_vcpu_requests_without_a_run_report_nothing() {
        let c = DomainControl::new();
        assert_eq!(c.memory_pages(), None);
        assert!(!c.set_max_pages(1));
        assert!(c.vcpu_infos().is_empty());
        assert!(!c.nmi(0));
    }

    #[test]
    fn dump_policy_picks_exit_reasons() {
        let c = DomainControl::new();
        assert!(!c.wants_dump(DomainExit::Crash));
        c.set_dump_policy(Box::new(|e| e == DomainExit::Crash));
        assert!(c.wants_dump(DomainExit::Crash));
        assert!(!c.wants_dump(DomainExit::Poweroff));
    }
}
