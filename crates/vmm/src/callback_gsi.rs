//! The level-triggered GSI (or PCI INTx) event-channel callback
//! (`HVM_PARAM_CALLBACK_IRQ` of type GSI/INTx) on KVM's in-kernel IOAPIC.
//!
//! Xen keeps the line asserted while vCPU 0's `evtchn_upcall_pending` is
//! set and deasserts it when the guest has cleared the flag. With KVM the
//! line is an irqfd with a resample eventfd: KVM deasserts it at the
//! guest's EOI and signals the resample fd; a small thread then re-asserts
//! it if vCPU 0 still has an upcall pending (QEMU's Xen emulation does
//! the same). Without this a line left high would make the IOAPIC
//! re-deliver forever after every EOI.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use xen_emu::Domain;

/// One registered callback line.
struct Line {
    gsi: u32,
    irqfd: Arc<EventFd>,
    resample: Arc<EventFd>,
    stop: Arc<AtomicBool>,
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
            if let Err(e) = line.irqfd.write(1) {
                tracing::warn!("callback GSI {gsi}: irqfd write: {e}");
            }
        }
    }

    fn register(&self, vm: &VmFd, gsi: u32) -> Result<Line, String> {
        let irqfd = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
        let resample = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?);
        vm.register_irqfd_with_resample(&irqfd, &resample, gsi)
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (fd2, rs2, st2) = (irqfd.clone(), resample.clone(), stop.clone());
        let domain = self.domain.get().cloned().unwrap_or_default();
        std::thread::Builder::new()
            .name(format!("callback-gsi{gsi}"))
            .spawn(move || resample_loop(&fd2, &rs2, &st2, &domain))
            .map_err(|e| e.to_string())?;
        Ok(Line {
            gsi,
            irqfd,
            resample,
            stop,
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

/// After each EOI (resample), re-assert while vCPU 0's upcall is pending.
fn resample_loop(irqfd: &EventFd, resample: &EventFd, stop: &AtomicBool, domain: &Weak<Domain>) {
    loop {
        let mut p = libc::pollfd {
            fd: resample.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if n <= 0 {
            if domain.strong_count() == 0 {
                return;
            }
            continue;
        }
        let _ = resample.read();
        let Some(d) = domain.upgrade() else {
            return;
        };
        if d.callback_level() {
            let _ = irqfd.write(1);
        }
    }
}
