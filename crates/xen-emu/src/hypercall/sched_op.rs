//! `HYPERVISOR_sched_op` (Xen's `common/sched/core.c`): yield, block,
//! shutdown, shutdown_code, poll.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xen_abi::sched::*;

use super::Call;
use crate::evtchn::two_level;
use crate::platform::ShutdownReason;
use crate::types::{Errno, HcResult, Port};

/// Xen's "fairly arbitrary" limit on `sched_poll.nr_ports`.
const MAX_POLL_PORTS: u32 = 128;

/// Maps a `SHUTDOWN_*` code (Xen keeps it as `u8`) to the VMM's reason.
/// Codes libxl does not know make it destroy the domain; we report that
/// as a crash so the caller sees a failure.
pub fn shutdown_reason(code: u8) -> ShutdownReason {
    match u32::from(code) {
        SHUTDOWN_POWEROFF => ShutdownReason::Poweroff,
        SHUTDOWN_REBOOT => ShutdownReason::Reboot,
        SHUTDOWN_SUSPEND => ShutdownReason::Suspend,
        SHUTDOWN_WATCHDOG => ShutdownReason::Watchdog,
        SHUTDOWN_SOFT_RESET => ShutdownReason::SoftReset,
        _ => ShutdownReason::Crash,
    }
}

pub fn sched_op(c: &mut Call<'_>) -> HcResult {
    let cmd = c.args[0];
    let arg = c.args[1];
    match cmd {
        SCHEDOP_YIELD => Ok(0),
        SCHEDOP_BLOCK => block(c),
        SCHEDOP_SHUTDOWN => {
            let s: SchedShutdown = c.g.read(arg)?;
            // A shutdown_code set earlier wins (domain_shutdown).
            let code = c.d.state().shutdown_code.unwrap_or(s.reason) as u8;
            c.d.platform.shutdown(shutdown_reason(code));
            Ok(0)
        }
        SCHEDOP_SHUTDOWN_CODE => {
            let s: SchedShutdown = c.g.read(arg)?;
            let mut st = c.d.state();
            if st.shutdown_code.is_none() {
                st.shutdown_code = Some(u32::from(s.reason as u8));
            }
            Ok(0)
        }
        SCHEDOP_POLL => poll(c),
        SCHEDOP_REMOTE_SHUTDOWN => {
            // Only a privileged domain may shut another one down.
            let r: SchedRemoteShutdown = c.g.read(arg)?;
            if r.domain_id == c.d.domid() || r.domain_id == xen_abi::DOMID_SELF {
                Err(Errno::EPERM)
            } else {
                Err(Errno::ESRCH)
            }
        }
        SCHEDOP_WATCHDOG | SCHEDOP_PIN_OVERRIDE => {
            c.d.warn_once(xen_abi::xen::HYPERVISOR_SCHED_OP, cmd, "sched_op");
            Err(Errno::ENOSYS)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `SCHEDOP_block` (`vcpu_block_enable_events`): enable event delivery,
/// then sleep until an event is pending for this vCPU (or the VMM wakes
/// it). With interrupts off (IF=0) a pending upcall does not count
/// (`hvm_local_events_need_delivery`): the vCPU sleeps until the next
/// event or wake-up.
fn block(c: &mut Call<'_>) -> HcResult {
    let parker = c.d.parkers.get(c.vcpu_id as usize).ok_or(Errno::EINVAL)?;
    let since = parker.events();
    let vi = c.d.state().vcpu_info_gpa(c.vcpu_id);
    if let Some(vi) = vi {
        two_level::clear_upcall_mask(&*c.d.mem, vi)?;
    }
    let if_on = c.g.vcpu.interrupts_enabled();
    let mem = &*c.d.mem;
    let pending = || vi.is_some_and(|g| two_level::upcall_pending(mem, g).unwrap_or(false));
    if if_on && pending() {
        return Ok(0);
    }
    // With an interrupt route, the platform can halt the vCPU itself, so
    // that its LAPIC timer and IPIs wake it too.
    if if_on && c.d.has_upcall_route(c.vcpu_id) && c.g.vcpu.block_in_platform() {
        c.d.set_runstate(c.vcpu_id, xen_abi::vcpu::RUNSTATE_BLOCKED);
        return Ok(0);
    }
    c.d.set_runstate(c.vcpu_id, xen_abi::vcpu::RUNSTATE_BLOCKED);
    parker.park(None, Some(since), || if_on && pending());
    c.d.set_runstate(c.vcpu_id, xen_abi::vcpu::RUNSTATE_RUNNING);
    Ok(0)
}

/// `SCHEDOP_poll`: sleep until one of the ports is pending or the timeout
/// (absolute guest system time, 0 = none) passes.
fn poll(c: &mut Call<'_>) -> HcResult {
    let arg = c.args[1];
    let (ports_gva, nr, timeout) = if c.compat() {
        let p: SchedPollCompat = c.g.read(arg)?;
        (
            u64::from(p.ports),
            p.nr_ports,
            u64::from(p.timeout_lo) | (u64::from(p.timeout_hi) << 32),
        )
    } else {
        let p: SchedPoll = c.g.read(arg)?;
        (p.ports, p.nr_ports, p.timeout)
    };
    if nr > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let (shinfo, compat) = {
        let st = c.d.state();
        (st.shinfo_gpa(), st.compat)
    };
    let mut ports = Vec::with_capacity(nr as usize);
    for i in 0..u64::from(nr) {
        let p: u32 = c.g.read(ports_gva.wrapping_add(4 * i))?;
        let port = Port(p);
        if !c.d.evtchns().valid(port) {
            return Err(Errno::EINVAL);
        }
        ports.push(port);
    }
    let mem = &*c.d.mem;
    // do_poll also returns for an upcall the vCPU can take now.
    let if_on = c.g.vcpu.interrupts_enabled();
    let vi = c.d.state().vcpu_info_gpa(c.vcpu_id);
    let any_pending = || {
        let upcall =
            if_on && vi.is_some_and(|g| two_level::upcall_pending(mem, g).unwrap_or(false));
        upcall
            || shinfo.is_some_and(|s| {
                ports
                    .iter()
                    .any(|p| two_level::is_pending(mem, s, compat, *p).unwrap_or(false))
            })
    };
    if any_pending() {
        return Ok(0);
    }
    let deadline = (timeout != 0).then(|| {
        let now = c.d.platform.system_time_ns();
        Instant::now() + Duration::from_nanos(timeout.saturating_sub(now))
    });
    let parker = c.d.parkers.get(c.vcpu_id as usize).ok_or(Errno::EINVAL)?;
    let flag = c.d.polling.get(c.vcpu_id as usize).ok_or(Errno::EINVAL)?;
    flag.store(true, Ordering::SeqCst);
    c.d.set_runstate(c.vcpu_id, xen_abi::vcpu::RUNSTATE_BLOCKED);
    parker.park(deadline, None, any_pending);
    c.d.set_runstate(c.vcpu_id, xen_abi::vcpu::RUNSTATE_RUNNING);
    flag.store(false, Ordering::SeqCst);
    Ok(0)
}
