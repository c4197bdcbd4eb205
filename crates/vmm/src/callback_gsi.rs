//! The level-triggered GSI (or PCI INTx) event-channel callback
//! (`HVM_PARAM_CALLBACK_IRQ` of type GSI/INTx) on KVM's in-kernel IOAPIC.
//!
//! Xen keeps the line asserted while vCPU 0's `evtchn_upcall_pending` is
//! set and deasserts it when the guest has cleared the flag. With KVM the
//! line is an irqfd with a resample eventfd: KVM deasserts it at the
//! guest's EOI and signals the resample fd; a small thread then decides
//! whether to re-assert it. Without the deassert a line left high would
//! make the IOAPIC re-deliver forever after every EOI.
//!
//! The resample must not simply re-assert whenever it finds
//! `evtchn_upcall_pending` set (the first version did, and delivered every
//! event twice). On the development machines the resample signal for an
//! assert arrives ~0.2 ms after it, before the guest has even run its
//! handler (evidently this KVM acks the line, dropping it and clearing the
//! pin's Remote IRR, when it injects the interrupt rather than at the
//! guest's EOI), so the flag it sees is the one of the event
//! being delivered; other signals reach the thread late and coalesced,
//! after the guest has handled the event and a new one has raised the
//! line. A flag-driven re-assert then raised the line a second time. So
//! the line keeps a small state under one lock, and the resample only
//! re-asserts for an event that the raised line absorbed:
//!
//! - an event's 0 → 1 of the flag asserts the line unless an earlier
//!   assert is still outstanding (no resample seen since); if one is, it
//!   looks at the IOAPIC pin's Remote IRR: clear means KVM has already
//!   dropped the line (only our notification is late), so it asserts at
//!   once; set means an interrupt is in service and its EOI will drop the
//!   line, so the event is recorded as `missed`;
//! - the resample clears `asserted` and re-asserts only for a `missed`
//!   event whose flag is still set.
//!
//! One deviation from Xen, whose line simply follows the flag: a guest
//! that EOIs without clearing `evtchn_upcall_pending` is not interrupted
//! again until the next event (Linux, the BSDs and Mini-OS clear it
//! first, as the test guest does).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use kvm_bindings::{kvm_irqchip, KVM_IRQCHIP_IOAPIC};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use xen_emu::Domain;

/// One registered callback line.
struct Line {
    gsi: u32,
    irqfd: Arc<EventFd>,
    resample: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<LineState>>,
}

/// See the module docs.
#[derive(Default)]
struct LineState {
    /// An irqfd write is outstanding and no resample has been seen since.
    asserted: bool,
    /// An event came while `asserted`; its assert was absorbed.
    missed: bool,
}

/// An event made vCPU 0's `evtchn_upcall_pending` go 0 → 1.
fn raise(vm: &VmFd, irqfd: &EventFd, state: &Mutex<LineState>, gsi: u32) {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if st.asserted && remote_irr(vm, gsi).unwrap_or(true) {
        st.missed = true;
        return;
    }
    match irqfd.write(1) {
        Ok(()) => st.asserted = true,
        Err(e) => tracing::warn!("callback GSI {gsi}: irqfd write: {e}"),
    }
}

/// The callback GSI of one domain (at most one line at a time).
#[derive(Default)]
pub(crate) struct CallbackGsi {
    line: Mutex<Option<Line>>,
    /// The domain, to ask whether the line must stay asserted.
    pub domain: std::sync::OnceLock<Weak<Domain>>,
}

impl CallbackGsi {
    /// Asserts `gsi` (registering its irqfd on first use, or moving the
    /// line if the guest picked another GSI).
    pub fn assert(&self, vm: &VmFd, gsi: u32) {
        let mut l = self.line.lock().unwrap_or_else(|e| e.into_inner());
        if l.as_ref().map(|x| x.gsi) != Some(gsi) {
            if let Some(old) = l.take() {
                old.stop.store(true, Ordering::SeqCst);
                let _ = vm.unregister_irqfd(&old.irqfd, old.gsi);
            }
            match self.register(vm, gsi) {
                Ok(line) => *l = Some(line),
                Err(e) => {
                    tracing::warn!(
                        "callback GSI {gsi}: irqfd with resample: {e}; using KVM_IRQ_LINE"
                    );
                    let _ = vm.set_irq_line(gsi, true);
                    return;
                }
            }
        }
        if let Some(line) = l.as_ref() {
            raise(vm, &line.irqfd, &line.state, gsi);
        }
    }

    fn register(&self, vm: &VmFd, gsi: u32) -> Result<Line, String> {
        let irqfd = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
        let resample = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
        vm.register_irqfd_with_resample(&irqfd, &resample, gsi)
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(LineState::default()));
        let thread_line = Line {
            gsi,
            irqfd: irqfd.clone(),
            resample: resample.clone(),
            stop: stop.clone(),
            state: state.clone(),
        };
        let domain = self.domain.get().cloned().unwrap_or_default();
        std::thread::Builder::new()
            .name(format!("callback-gsi{gsi}"))
            .spawn(move || resample_loop(&thread_line, &domain))
            .map_err(|e| e.to_string())?;
        Ok(Line {
            gsi,
            irqfd,
            resample,
            stop,
            state,
        })
    }

    /// Ends the resample thread (the domain is stopping).
    pub fn stop(&self) {
        if let Some(l) = self.line.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            l.stop.store(true, Ordering::SeqCst);
            let _ = l.resample.write(1);
        }
    }
}

/// The Remote IRR bit of IOAPIC pin `gsi` (a level interrupt delivered
/// and not yet EOI'd), or `None` if KVM cannot say.
fn remote_irr(vm: &VmFd, gsi: u32) -> Option<bool> {
    let mut chip = kvm_irqchip {
        chip_id: KVM_IRQCHIP_IOAPIC,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip).ok()?;
    // SAFETY: KVM filled `chip` for chip_id KVM_IRQCHIP_IOAPIC, so the
    // union holds a `kvm_ioapic_state`; every bit pattern is a valid one.
    let ioapic = unsafe { chip.chip.ioapic };
    let entry = ioapic.redirtbl.get(gsi as usize)?;
    // SAFETY: `bits` covers the whole 64-bit entry; any value is valid.
    let bits = unsafe { entry.bits };
    Some(bits & IOAPIC_REMOTE_IRR != 0)
}

/// Remote IRR in an IOAPIC redirection entry.
const IOAPIC_REMOTE_IRR: u64 = 1 << 14;

/// After each EOI (resample), re-assert for an event the raised line
/// absorbed, if vCPU 0's upcall is still pending.
fn resample_loop(line: &Line, domain: &Weak<Domain>) {
    loop {
        let mut p = libc::pollfd {
            fd: line.resample.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if line.stop.load(Ordering::SeqCst) {
            return;
        }
        if n <= 0 {
            if domain.strong_count() == 0 {
                return;
            }
            continue;
        }
        let _ = line.resample.read();
        let Some(d) = domain.upgrade() else {
            return;
        };
        // KVM has dropped the line. Decide under the lock, so that an
        // event's raise either sees the line down (and asserts it) or
        // happened before this (and is re-asserted here if still pending).
        let mut st = line.state.lock().unwrap_or_else(|e| e.into_inner());
        let missed = std::mem::take(&mut st.missed);
        st.asserted = false;
        if missed && d.callback_level() {
            match line.irqfd.write(1) {
                Ok(()) => st.asserted = true,
                Err(e) => tracing::warn!("callback GSI {}: irqfd write: {e}", line.gsi),
            }
        }
    }
}
