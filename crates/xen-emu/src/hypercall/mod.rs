//! The hypercall dispatcher: one entry for both trap paths and both guest
//! ABIs. Each Xen hypercall family lives in its own file, named for it.

pub mod console_io;
pub mod evtchn;
pub mod gnttab;
pub mod hvm_op;
pub mod memory_op;
pub mod multicall;
pub mod physdev_op;
pub mod privileged;
pub mod reservation;
pub mod sched_op;
pub mod vcpu_op;
pub mod version;
pub mod vm_assist;

use xen_abi::xen as x;

use crate::copy::GuestAccess;
use crate::guest::{GuestMode, VcpuContext};
use crate::types::{Errno, HcResult};
use crate::Domain;

/// Everything one hypercall invocation sees.
pub struct Call<'a> {
    pub d: &'a Domain,
    pub g: GuestAccess<'a>,
    pub vcpu_id: u32,
    pub args: [u64; 5],
    /// Set while this call runs as an entry of a multicall (Xen's
    /// `MCSF_in_multicall`): a continuation it makes is kept here for the
    /// multicall to write into the entry instead of going to the vCPU.
    pub(crate) multicall: Option<multicall::EntryState>,
}

impl Call<'_> {
    /// True for a 32-bit caller.
    pub fn compat(&self) -> bool {
        self.g.compat()
    }

    /// Xen's `hypercall_preempt_check` between the items of a batch: true
    /// when the call should stop here and continue later, because the
    /// platform wants the vCPU back or this invocation has done a chunk of
    /// `chunk` work units (`done` so far) and the remainder goes in the
    /// next one, so that no single exit runs unbounded. Never true when the
    /// trap path cannot re-run the call.
    pub fn preempt(&self, done: u64, chunk: u64) -> bool {
        self.g.vcpu.can_continue() && (done >= chunk || self.g.vcpu.preempt_pending())
    }

    /// Xen's `hypercall_create_continuation(nr, ..., args)`: the vCPU makes
    /// hypercall `nr` again with `args` in its first argument registers
    /// (32-bit callers get the low halves).
    pub fn create_continuation(&mut self, nr: u64, args: &[u64]) -> HcResult {
        let args: Vec<u64> = if self.compat() {
            args.iter().map(|a| a & 0xffff_ffff).collect()
        } else {
            args.to_vec()
        };
        match &mut self.multicall {
            // Xen's hypercall_create_continuation inside a multicall: the
            // arguments go into the entry (`mcs->call.args`), not the
            // registers.
            Some(entry) => entry.continuation = Some(args),
            None => self.g.vcpu.create_continuation(nr, &args),
        }
        Ok(nr as i64)
    }

    /// Resolves a `domid_t` argument that must name the caller: `DOMID_SELF`
    /// or its own id. Another existing domain (the backend domain) is
    /// `-EPERM` (XSM denies a domU), anything else `-ESRCH`.
    pub fn self_domid(&self, dom: u16) -> Result<u16, Errno> {
        let me = self.d.domid();
        if dom == xen_abi::DOMID_SELF || dom == me {
            Ok(me)
        } else if dom == self.d.config.backend_domid {
            Err(Errno::EPERM)
        } else {
            Err(Errno::ESRCH)
        }
    }
}

/// See [`Domain::hypercall`].
pub(crate) fn dispatch(d: &Domain, vcpu: &mut dyn VcpuContext, nr: u64, args: [u64; 5]) -> i64 {
    let mode = vcpu.mode();
    let (nr, args) = match mode {
        // A 32-bit caller's registers are 32 bits wide; whatever the upper
        // halves hold is not part of its call.
        GuestMode::Protected32 => (nr & 0xffff_ffff, args.map(|a| a & 0xffff_ffff)),
        GuestMode::Long64 => (nr, args),
    };
    // Xen: HVM hypercalls from user mode fail (hvm_hypercall).
    if vcpu.cpl() != 0 {
        return Errno::EPERM.to_ret();
    }
    let vcpu_id = vcpu.vcpu_id();
    if vcpu_id >= d.config.max_vcpus.max(1) {
        return Errno::EINVAL.to_ret();
    }
    // A vCPU making hypercalls is running, however it was started (the
    // LAPIC's INIT/SIPI bypasses VCPUOP_up).
    d.note_running(vcpu_id);
    let mut call = Call {
        d,
        g: GuestAccess {
            mem: &*d.mem,
            vcpu,
            mode,
        },
        vcpu_id,
        args,
        multicall: None,
    };
    match call_handler(&mut call, nr) {
        Ok(v) => v,
        Err(e) => e.to_ret(),
    }
}

/// Runs hypercall `nr` with `c.args`: Xen 4.17's `call_handlers_hvm64` /
/// `call_handlers_hvm32` (the HVM/PVH hypercall table of
/// `include/hypercall-defs.c`). Shared by a direct call and each entry of
/// a multicall. Numbers outside the table are `-ENOSYS`.
pub(crate) fn call_handler(c: &mut Call<'_>, nr: u64) -> HcResult {
    match nr {
        x::HYPERVISOR_XEN_VERSION => version::xen_version(c),
        x::HYPERVISOR_CONSOLE_IO => console_io::console_io(c),
        x::HYPERVISOR_SCHED_OP => sched_op::sched_op(c),
        x::HYPERVISOR_MEMORY_OP => memory_op::memory_op(c),
        x::HYPERVISOR_HVM_OP => hvm_op::hvm_op(c),
        x::HYPERVISOR_GRANT_TABLE_OP => gnttab::grant_table_op(c),
        x::HYPERVISOR_EVENT_CHANNEL_OP => evtchn::event_channel_op(c),
        x::HYPERVISOR_VCPU_OP => vcpu_op::vcpu_op(c),
        x::HYPERVISOR_PHYSDEV_OP => physdev_op::physdev_op(c),
        x::HYPERVISOR_VM_ASSIST => vm_assist::vm_assist(c),
        x::HYPERVISOR_MULTICALL => multicall::multicall(c),
        x::HYPERVISOR_SET_TIMER_OP => {
            let timeout = if c.compat() {
                // 32-bit: (lo, hi) halves of the s_time_t.
                (c.args[0] | (c.args[1] << 32)) as i64
            } else {
                c.args[0] as i64
            };
            c.d.set_timer_op(c.vcpu_id, timeout);
            Ok(0)
        }
        // In Xen's HVM table, but only for privileged domains or with
        // features Xen leaves off by default: refused as Xen refuses a domU.
        x::HYPERVISOR_PLATFORM_OP => privileged::platform_op(c),
        x::HYPERVISOR_MMUEXT_OP => privileged::mmuext_op(c),
        x::HYPERVISOR_SYSCTL => privileged::sysctl(c),
        x::HYPERVISOR_DOMCTL => privileged::domctl(c),
        x::HYPERVISOR_PAGING_DOMCTL_CONT => privileged::paging_domctl_cont(c),
        x::HYPERVISOR_XENPMU_OP => privileged::xenpmu_op(c),
        x::HYPERVISOR_DM_OP => privileged::dm_op(c),
        x::HYPERVISOR_HYPFS_OP => privileged::hypfs_op(c),
        // xsm_op (dummy XSM module, Xen's default build), argo_op
        // (CONFIG_ARGO off by default) and numbers outside the HVM table.
        _ => {
            c.d.warn_once(nr, u64::MAX, "hypercall");
            Err(Errno::ENOSYS)
        }
    }
}
