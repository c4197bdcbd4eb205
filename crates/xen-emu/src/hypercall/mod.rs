//! The hypercall dispatcher: one entry for both trap paths and both guest
//! ABIs. Each Xen hypercall family lives in its own file, named for it.

pub mod console_io;
pub mod evtchn;
pub mod gnttab;
pub mod hvm_op;
pub mod memory_op;
pub mod physdev_op;
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
        self.g.vcpu.create_continuation(nr, &args);
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
    };
    let r: HcResult = match nr {
        x::HYPERVISOR_XEN_VERSION => version::xen_version(&mut call),
        x::HYPERVISOR_CONSOLE_IO => console_io::console_io(&mut call),
        x::HYPERVISOR_SCHED_OP => sched_op::sched_op(&mut call),
        x::HYPERVISOR_MEMORY_OP => memory_op::memory_op(&mut call),
        x::HYPERVISOR_HVM_OP => hvm_op::hvm_op(&mut call),
        x::HYPERVISOR_GRANT_TABLE_OP => gnttab::grant_table_op(&mut call),
        x::HYPERVISOR_EVENT_CHANNEL_OP => evtchn::event_channel_op(&mut call),
        x::HYPERVISOR_VCPU_OP => vcpu_op::vcpu_op(&mut call),
        x::HYPERVISOR_PHYSDEV_OP => physdev_op::physdev_op(&mut call),
        x::HYPERVISOR_VM_ASSIST => vm_assist::vm_assist(&mut call),
        x::HYPERVISOR_SET_TIMER_OP => {
            let timeout = match mode {
                GuestMode::Long64 => args[0] as i64,
                // 32-bit: (lo, hi) halves of the s_time_t.
                GuestMode::Protected32 => (args[0] | (args[1] << 32)) as i64,
            };
            d.set_timer_op(vcpu_id, timeout);
            Ok(0)
        }
        _ => {
            d.warn_once(nr, u64::MAX, "hypercall");
            Err(Errno::ENOSYS)
        }
    };
    match r {
        Ok(v) => v,
        Err(e) => e.to_ret(),
    }
}
