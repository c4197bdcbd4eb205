//! A test-only hypercall for benchmarks (`VmConfig::debug_hypercall`).
//!
//! The event-channel latency benchmark (docs/core-services.md) compares
//! `EVTCHNOP_send` on a loopback port with a hypercall that does nothing
//! but `KVM_SIGNAL_MSI` of the same vector, so that both pay one exit and
//! one MSI and differ only in the Xen event-channel work. That second
//! hypercall, and the host-side timing both are read back with, exist only
//! when the config flag is set: for any other guest the number is not a
//! Xen hypercall and reaches the dispatcher, which answers `-ENOSYS`.
//!
//! Guest tests use the same flag for test triggers and probes that only
//! the VMM can provide: an emulated device writing an MSI or driving a GSI
//! (the PIRQ test), and how much of a guest range is resident in host
//! memory (the balloon test).

use std::collections::BTreeMap;
use std::time::Instant;

use kvm_ioctls::VmFd;

/// An xkvm-private hypercall number (beyond Xen's last, below the 128
/// stubs of the hypercall page).
pub const DEBUG_HYPERCALL: u64 = 127;

/// `arg0` of [`DEBUG_HYPERCALL`]: `KVM_SIGNAL_MSI` of vector `arg1` to
/// vCPU `arg2`'s local APIC.
pub const OP_SIGNAL_MSI: u64 = 0;
/// Forget the host-side times recorded so far.
pub const OP_RESET_TIMES: u64 = 1;
/// Total host ns recorded for key `arg1` (see [`HostTimes`]).
pub const OP_TOTAL_NS: u64 = 2;
/// Number of exits recorded for key `arg1`.
pub const OP_COUNT: u64 = 3;
/// Test trigger (guest tests, see `crates/vmm/tests/guests_pirq.rs`): an
/// emulated device writes MSI address `arg1`, data `arg2`, exactly as a
/// VMM device model would: offered to [`xen_emu::Domain::deliver_msi`]
/// first (a PIRQ event; returns 1), else signalled to KVM (returns 0).
pub const OP_DEVICE_MSI: u64 = 16;
/// Test trigger: an emulated device drives GSI `arg1` to level `arg2`
/// (0/1): [`xen_emu::Domain::deliver_gsi`] first (returns 1), else
/// `KVM_IRQ_LINE` on the interrupt controller (returns 0).
pub const OP_DEVICE_GSI: u64 = 17;
/// Test probe: how many of the `arg2` guest pages from guest-physical
/// `arg1` are resident in host memory (`mincore`), to check that a
/// ballooned-out page went back to the host.
pub const OP_RESIDENT_PAGES: u64 = 18;

/// The sub-commands that act on the domain rather than on the benchmark's
/// timing; `None` for the others (then [`HostTimes::hypercall`]).
pub(crate) fn domain_op(
    vm: &VmFd,
    domain: &xen_emu::Domain,
    mem: &crate::memory::DomainMemory,
    args: [u64; 5],
) -> Option<i64> {
    const EINVAL: i64 = -22;
    let r = match args[0] {
        OP_DEVICE_MSI => {
            let Ok(data) = u32::try_from(args[2]) else {
                return Some(EINVAL);
            };
            if domain.deliver_msi(args[1], data) {
                1
            } else {
                let msi = kvm_bindings::kvm_msi {
                    address_lo: args[1] as u32,
                    address_hi: (args[1] >> 32) as u32,
                    data,
                    ..Default::default()
                };
                match vm.signal_msi(msi) {
                    Ok(_) => 0,
                    Err(e) => -i64::from(e.errno()),
                }
            }
        }
        OP_DEVICE_GSI => {
            let (Ok(gsi), Ok(level)) = (u32::try_from(args[1]), u8::try_from(args[2])) else {
                return Some(EINVAL);
            };
            if level > 1 {
                return Some(EINVAL);
            }
            if domain.deliver_gsi(gsi, level == 1) {
                1
            } else {
                match vm.set_irq_line(gsi, level == 1) {
                    Ok(()) => 0,
                    Err(e) => -i64::from(e.errno()),
                }
            }
        }
        OP_RESIDENT_PAGES => match mem.resident_pages(args[1], args[2]) {
            Ok(n) => n as i64,
            Err(_) => EINVAL,
        },
        _ => return None,
    };
    Some(r)
}

/// Host time per hypercall, from its exit being decoded (right after
/// `KVM_RUN` returned) to the next `KVM_RUN`, keyed by `nr << 8 | (arg0 & 0xff)` (the op or
/// sub-command, e.g. `event_channel_op << 8 | EVTCHNOP_send`).
#[derive(Debug, Default)]
pub(crate) struct HostTimes {
    /// The hypercall being serviced: its key and when its exit returned.
    current: Option<(u64, Instant)>,
    totals: BTreeMap<u64, (u64, u64)>,
}

impl HostTimes {
    /// A hypercall's exit came back from `KVM_RUN` at `at`.
    pub fn exit(&mut self, nr: u64, arg0: u64, at: Instant) {
        self.current = Some(((nr << 8) | (arg0 & 0xff), at));
    }

    /// The vCPU is about to enter `KVM_RUN` again.
    pub fn entering(&mut self) {
        if let Some((key, at)) = self.current.take() {
            let e = self.totals.entry(key).or_default();
            e.0 += at.elapsed().as_nanos() as u64;
            e.1 += 1;
        }
    }

    /// Services [`DEBUG_HYPERCALL`] for `vcpu`.
    pub fn hypercall(&mut self, vm: &VmFd, args: [u64; 5]) -> i64 {
        match args[0] {
            OP_SIGNAL_MSI => {
                let Ok(vector) = u8::try_from(args[1]) else {
                    return -22; // -EINVAL
                };
                let Ok(vcpu) = u32::try_from(args[2]) else {
                    return -22;
                };
                let msi = crate::platform::msi_for(crate::acpi::apic_id(vcpu), vector);
                match vm.signal_msi(msi) {
                    Ok(_) => 0,
                    Err(e) => -i64::from(e.errno()),
                }
            }
            OP_RESET_TIMES => {
                self.totals.clear();
                0
            }
            OP_TOTAL_NS => self.totals.get(&args[1]).map_or(0, |t| t.0 as i64),
            OP_COUNT => self.totals.get(&args[1]).map_or(0, |t| t.1 as i64),
            _ => -22,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_keyed_by_hypercall_and_sub_command_and_reset_clears_them() {
        let mut t = HostTimes::default();
        t.exit(32, 4, Instant::now());
        t.entering();
        t.exit(32, 4, Instant::now());
        t.entering();
        t.exit(17, 0, Instant::now());
        t.entering();
        // No exit in service: entering records nothing.
        t.entering();

        assert_eq!(t.totals.get(&((32 << 8) | 4)).map(|e| e.1), Some(2));
        assert_eq!(t.totals.get(&(17 << 8)).map(|e| e.1), Some(1));
        assert_eq!(t.totals.len(), 2);
        t.totals.clear();
        assert!(t.totals.is_empty());
    }
}
