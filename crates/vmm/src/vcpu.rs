//! One vCPU: its start-of-day state (docs/misc/pvh.pandoc), its CPUID, and
//! its run loop, which turns every KVM exit into either a serviced request
//! (hypercall, hypercall-page MSR, absent-device I/O) or a typed error.
//!
//! Issue 4 runs the boot vCPU only; the loop is written to run on its own
//! thread per vCPU (issue 5 adds the APs).

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};
use std::time::Instant;

use kvm_bindings::{kvm_msr_entry, kvm_segment, Msrs, KVM_SYNC_X86_REGS};
use kvm_ioctls::{SyncReg, VcpuFd};
use xen_emu::guest::{Gpa, GuestMode, Gva, MemError, VcpuContext};
use xen_emu::Domain;

use crate::exit::{self, Exit};
use crate::memory::DomainMemory;
use crate::pagewalk::{self, PagingState};
use crate::platform::Shared;
use crate::{hypercall_page, layout, VmmError};

const EFER_LMA: u64 = 1 << 10;

thread_local! {
    static CURRENT_VCPU: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The vCPU whose thread this is, if any.
pub(crate) fn current_vcpu() -> Option<u32> {
    CURRENT_VCPU.with(Cell::get)
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub(crate) fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick) {
            tracing::warn!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// How hypercalls reach the VMM (DESIGN.md "How a hypercall travels").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapPath {
    /// Hypercall page of `out` stubs, MSR filter, `KVM_EXIT_IO`.
    PortIo,
    /// `KVM_CAP_XEN_HVM` with `INTERCEPT_HCALL`, `KVM_EXIT_XEN`.
    KvmXen,
}

/// Counters for the benchmark (not for behaviour).
#[derive(Debug, Default)]
pub(crate) struct VcpuStats {
    pub hypercalls: u64,
    pub hypercall_service_ns: u64,
    pub exits: u64,
    /// Per-hypercall host times, kept only with `VmConfig::debug_hypercall`.
    pub host_times: crate::debug_hook::HostTimes,
}

/// The flat 32-bit segments of the PVH entry state.
fn flat_segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Puts `fd` in the PVH entry state: 32-bit flat protected mode, CR0.PE
/// only, paging off, CR4 clear, CS/DS/ES/SS flat, TR a 32-bit TSS,
/// EFLAGS with IF/TF/VM clear, EBX = start info, EIP = entry.
pub fn set_pvh_entry_state(fd: &VcpuFd, entry: u32, start_info: u32) -> Result<(), VmmError> {
    let mut sregs = fd.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
    let code = flat_segment(0x08, 0xb); // execute/read, accessed
    let data = flat_segment(0x10, 0x3); // read/write, accessed
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.ss = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.tr = kvm_segment {
        base: 0,
        limit: 0x67,
        selector: 0x18,
        type_: 0xb, // 32-bit busy TSS
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.cr0 = 1; // PE
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    fd.set_sregs(&sregs)
        .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: u64::from(entry),
        rbx: u64::from(start_info),
        rflags: 0x2, // reserved bit 1; IF, TF, VM clear
        ..Default::default()
    };
    fd.set_regs(&regs).map_err(VmmError::kvm("KVM_SET_REGS"))?;
    let fpu = kvm_bindings::kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(VmmError::kvm("KVM_SET_FPU"))?;
    Ok(())
}

/// `IA32_APIC_BASE`.
const MSR_IA32_APICBASE: u32 = 0x1b;
const APICBASE_BSP: u64 = 1 << 8;

/// For `apic = 0`: marks the vCPU's local APIC disabled in
/// `IA32_APIC_BASE`. KVM derives CPUID.1:EDX.APIC from that MSR's enable
/// bit at run time, so clearing the bit in the CPUID table alone is not
/// enough.
pub fn disable_lapic(fd: &VcpuFd, bsp: bool) -> Result<(), VmmError> {
    let value = crate::layout::LAPIC_BASE | if bsp { APICBASE_BSP } else { 0 };
    let entry = kvm_msr_entry {
        index: MSR_IA32_APICBASE,
        data: value,
        ..Default::default()
    };
    let msrs =
        Msrs::from_entries(&[entry]).map_err(|e| VmmError::Config(format!("MSR list: {e:?}")))?;
    match fd.set_msrs(&msrs) {
        Ok(1) => Ok(()),
        Ok(_) => Err(VmmError::Config(
            "KVM refused to disable the local APIC (IA32_APIC_BASE)".into(),
        )),
        Err(e) => Err(VmmError::Kvm {
            what: "KVM_SET_MSRS(IA32_APIC_BASE)",
            source: e,
        }),
    }
}

/// The calling vCPU as xen-emu sees it during one hypercall.
struct HypercallCtx<'a> {
    id: u32,
    mode: GuestMode,
    cpl: u8,
    paging: PagingState,
    mem: &'a DomainMemory,
    /// `RFLAGS.IF` at the call.
    interrupts: bool,
    /// Whether KVM can halt this vCPU (in-kernel LAPIC).
    can_halt: bool,
    /// Set when xen-emu handed a `SCHEDOP_block` to us.
    halt: bool,
    /// What makes xen-emu preempt a long batch: the domain stopping or
    /// being paused.
    stop: &'a std::sync::atomic::AtomicBool,
    control: Option<&'a crate::control::DomainControl>,
    /// Set when xen-emu made the call a continuation: the argument
    /// registers to rewrite before the vCPU re-runs it.
    continuation: Option<Vec<u64>>,
}

impl VcpuContext for HypercallCtx<'_> {
    fn vcpu_id(&self) -> u32 {
        self.id
    }
    fn mode(&self) -> GuestMode {
        self.mode
    }
    fn translate(&mut self, gva: Gva) -> Result<Gpa, MemError> {
        pagewalk::translate(self.mem, &self.paging, gva)
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn interrupts_enabled(&self) -> bool {
        self.interrupts
    }
    fn block_in_platform(&mut self) -> bool {
        self.halt = self.can_halt;
        self.halt
    }
    fn can_continue(&self) -> bool {
        // Both trap paths can put the vCPU back on its hypercall
        // instruction (see `Vcpu::restart_hypercall`).
        true
    }
    fn preempt_pending(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.is_some_and(|c| c.is_paused())
    }
    fn create_continuation(&mut self, _nr: u64, args: &[u64]) {
        self.continuation = Some(args.to_vec());
    }
}

/// Writes a continuation's argument registers (`args[i]` into the i-th
/// argument register of the ABI, as Xen's `hypercall_create_continuation`)
/// and RAX = the hypercall number.
pub fn continuation_regs(
    regs: &mut kvm_bindings::kvm_regs,
    mode: GuestMode,
    nr: u64,
    args: &[u64],
) {
    regs.rax = nr;
    for (i, &a) in args.iter().enumerate() {
        let r = match (mode, i) {
            (GuestMode::Long64, 0) => &mut regs.rdi,
            (GuestMode::Long64, 1) => &mut regs.rsi,
            (GuestMode::Long64, 2) => &mut regs.rdx,
            (GuestMode::Long64, 3) => &mut regs.r10,
            (GuestMode::Long64, 4) => &mut regs.r8,
            (GuestMode::Protected32, 0) => &mut regs.rbx,
            (GuestMode::Protected32, 1) => &mut regs.rcx,
            (GuestMode::Protected32, 2) => &mut regs.rdx,
            (GuestMode::Protected32, 3) => &mut regs.rsi,
            (GuestMode::Protected32, 4) => &mut regs.rdi,
            _ => continue,
        };
        *r = a;
    }
}

/// Length of the trapping instruction of each path: `out %eax, $imm8`
/// (hypercall page) and `vmcall` / `vmmcall` (KVM_EXIT_XEN).
const OUT_IMM8_LEN: u64 = 2;
const VMCALL_LEN: u64 = 3;

/// `RFLAGS.IF`.
const RFLAGS_IF: u64 = 1 << 9;

/// Hypercall arguments from the registers of a page-stub call.
pub fn args_from_regs(regs: &kvm_bindings::kvm_regs, mode: GuestMode) -> [u64; 5] {
    match mode {
        GuestMode::Long64 => [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8],
        GuestMode::Protected32 => {
            [regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi].map(|r| r & 0xffff_ffff)
        }
    }
}

/// The guest mode from the segment state.
pub fn mode_of(sregs: &kvm_bindings::kvm_sregs) -> GuestMode {
    if sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0 {
        GuestMode::Long64
    } else {
        GuestMode::Protected32
    }
}

/// A vCPU with everything its run loop needs.
pub(crate) struct Vcpu {
    pub id: u32,
    pub fd: VcpuFd,
    pub run_size: usize,
    pub domain: Arc<Domain>,
    pub mem: Arc<DomainMemory>,
    pub shared: Arc<Shared>,
    pub path: TrapPath,
    pub hypercall_msr: u32,
    pub sync_regs: bool,
    pub stats: VcpuStats,
    /// The toolstack's pause/destroy handle, if any.
    pub control: Option<crate::control::DomainControl>,
    /// An in-kernel LAPIC (`apic = 1`): KVM can halt the vCPU.
    pub apic: bool,
}

impl Vcpu {
    fn run_area(&mut self) -> &mut [u8] {
        let p = self.fd.get_kvm_run() as *mut kvm_bindings::kvm_run as *mut u8;
        // SAFETY: the vCPU's run area is an mmap of `run_size` bytes
        // (KVM_GET_VCPU_MMAP_SIZE) owned by `fd`, which `&mut self` borrows
        // exclusively for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(p, self.run_size) }
    }

    /// `KVM_NMI` for an NMI the toolstack queued (`xl trigger nmi`).
    fn inject_pending_nmi(&mut self) -> Result<(), VmmError> {
        let queued = self
            .shared
            .pending_nmi
            .get(self.id as usize)
            .is_some_and(|f| f.swap(false, Ordering::SeqCst));
        if queued {
            self.fd.nmi().map_err(VmmError::kvm("KVM_NMI"))?;
        }
        Ok(())
    }

    fn apply_pending_msrs(&mut self) -> Result<(), VmmError> {
        let Some(q) = self.shared.pending_msrs.get(self.id as usize) else {
            return Ok(());
        };
        let pending: Vec<(u32, u64)> =
            std::mem::take(&mut *q.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        let entries: Vec<kvm_msr_entry> = pending
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|e| VmmError::Config(format!("MSR list: {e:?}")))?;
        let n = self
            .fd
            .set_msrs(&msrs)
            .map_err(VmmError::kvm("KVM_SET_MSRS"))?;
        if n != entries.len() {
            tracing::warn!(
                "vCPU {}: KVM accepted {n} of {} MSR writes {pending:x?}",
                self.id,
                entries.len()
            );
        }
        Ok(())
    }

    /// Runs until the domain stops. Errors are VMM failures; a guest
    /// shutdown is recorded in `shared` and returns `Ok`.
    pub fn run(
        &mut self,
        started: Instant,
        first_entry: &mut Option<std::time::Duration>,
    ) -> Result<(), VmmError> {
        install_kick_handler();
        CURRENT_VCPU.with(|c| c.set(Some(self.id)));
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Some(slot) = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(self.id as usize)
        {
            *slot = Some(me);
        }
        let result = self.run_loop(started, first_entry);
        if result.is_ok() {
            self.save_final_state();
        }
        if let Some(slot) = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(self.id as usize)
        {
            *slot = None;
        }
        result
    }

    fn run_loop(
        &mut self,
        started: Instant,
        first_entry: &mut Option<std::time::Duration>,
    ) -> Result<(), VmmError> {
        if self.sync_regs {
            self.fd.set_sync_valid_reg(SyncReg::Register);
            self.fd.set_sync_valid_reg(SyncReg::SystemRegister);
        }
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if let Some(ctl) = self.shared.vcpu_ctl.get(self.id as usize) {
                let stop = &self.shared.stop;
                if ctl.service(&self.fd, || stop.load(Ordering::SeqCst))? {
                    continue;
                }
            }
            self.apply_pending_msrs()?;
            self.inject_pending_nmi()?;
            // Paused by the toolstack: complete the last exit, then wait.
            if let Some(control) = self.control.clone() {
                if !control.enter_guest() {
                    self.complete_pending_exit()?;
                    control.park(&self.shared.stop);
                    continue;
                }
            }
            if first_entry.is_none() {
                *first_entry = Some(started.elapsed());
            }
            self.stats.host_times.entering();
            let ran = self.fd.run().map(|_| ());
            if let Some(control) = &self.control {
                control.leave_guest();
            }
            match ran {
                Ok(()) => {}
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    continue;
                }
                Err(e) => {
                    return Err(VmmError::Kvm {
                        what: "KVM_RUN",
                        source: e,
                    })
                }
            }
            let t0 = Instant::now();
            self.stats.exits += 1;
            let exit = exit::decode(self.run_area());
            self.handle(exit)?;
            if t0.elapsed().as_nanos() > 0 {
                // Only hypercalls are timed (see handle_hypercall).
            }
        }
    }

    /// Re-enters KVM once with `immediate_exit` so that an exit we already
    /// serviced (an `in` result, a hypercall's rax) is completed before
    /// the vCPU parks or its state is read.
    fn complete_pending_exit(&mut self) -> Result<(), VmmError> {
        self.fd.set_kvm_immediate_exit(1);
        let r = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match r {
            Ok(()) => {
                // KVM ran to a new exit before seeing the flag: service it
                // so the guest does not lose it.
                let exit = exit::decode(self.run_area());
                self.handle(exit)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(()),
            Err(e) => Err(VmmError::Kvm {
                what: "KVM_RUN (immediate_exit)",
                source: e,
            }),
        }
    }

    /// Records the vCPU's registers for a core dump when the domain stops.
    fn save_final_state(&mut self) {
        let Some(control) = self.control.clone() else {
            return;
        };
        if let Err(e) = self.complete_pending_exit() {
            tracing::debug!("vCPU {}: completing the last exit: {e}", self.id);
        }
        match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(r), Ok(s)) => {
                control.save_registers(self.id, crate::control::VcpuRegisters::from_kvm(&r, &s))
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("vCPU {}: reading registers for a core dump: {e}", self.id)
            }
        }
    }

    fn rip(&self) -> u64 {
        if self.sync_regs {
            self.fd.sync_regs().regs.rip
        } else {
            self.fd.get_regs().map(|r| r.rip).unwrap_or(0)
        }
    }

    fn handle(&mut self, exit: Exit) -> Result<(), VmmError> {
        let id = self.id;
        match exit {
            Exit::Io {
                port,
                out: true,
                size: 4,
                data,
                ..
            } if port == u16::from(layout::HYPERCALL_PORT) && self.path == TrapPath::PortIo => {
                let mut nr = [0u8; 4];
                if let Some(d) = data.get(..4) {
                    nr.copy_from_slice(d);
                }
                self.port_hypercall(u64::from(u32::from_le_bytes(nr)))
            }
            Exit::Io {
                port,
                out,
                size,
                count,
                data_offset,
                ..
            } => {
                // No device behind the port: reads float high, writes vanish.
                tracing::debug!("vCPU {id}: I/O to absent port {port:#x} (out={out})");
                if !out {
                    let ones = vec![0xff; usize::from(size) * count as usize];
                    exit::set_io_in_data(self.run_area(), data_offset, &ones);
                }
                Ok(())
            }
            Exit::Mmio {
                addr, write, len, ..
            } => {
                tracing::debug!("vCPU {id}: MMIO to absent device at {addr:#x} (write={write})");
                if !write {
                    let area = self.run_area();
                    let n = (len as usize).min(8);
                    // mmio.data is at union offset 8.
                    area[40..40 + n].fill(0xff);
                }
                Ok(())
            }
            Exit::WrMsr { index, data } if index == self.hypercall_msr => {
                let ok = self.write_hypercall_page(data);
                exit::set_msr_result(self.run_area(), !ok, 0);
                Ok(())
            }
            Exit::WrMsr { index, .. } | Exit::RdMsr { index } => {
                tracing::debug!("vCPU {id}: filtered access to MSR {index:#x}: #GP");
                exit::set_msr_result(self.run_area(), true, 0);
                Ok(())
            }
            Exit::XenHypercall {
                long_mode,
                cpl,
                nr,
                params,
            } if self.path == TrapPath::KvmXen => {
                let mode = if long_mode {
                    GuestMode::Long64
                } else {
                    GuestMode::Protected32
                };
                let args = [params[0], params[1], params[2], params[3], params[4]];
                let t0 = Instant::now();
                let (ret, continuation) = self.dispatch(mode, cpl as u8, nr, args);
                exit::set_xen_result(self.run_area(), ret);
                if let Some(c) = continuation {
                    self.restart_hypercall(mode, nr, VMCALL_LEN, &c)?;
                }
                self.stats.hypercalls += 1;
                self.stats.hypercall_service_ns += t0.elapsed().as_nanos() as u64;
                Ok(())
            }
            Exit::Hlt => {
                // Only without an in-kernel LAPIC (apic=0): nothing can wake
                // the vCPU but a stop; poll for it gently.
                std::thread::sleep(std::time::Duration::from_millis(1));
                Ok(())
            }
            Exit::Intr => Ok(()),
            Exit::Shutdown => {
                // Not a VMM failure: Xen turns a guest's triple fault into a
                // domain shutdown (reboot by default), so on_reboot decides.
                tracing::warn!("vCPU {id}: triple fault at rip {:#x}", self.rip());
                self.domain.triple_fault(id);
                Ok(())
            }
            Exit::InternalError { suberror, data } => Err(VmmError::InternalError {
                vcpu: id,
                suberror,
                data,
                rip: self.rip(),
            }),
            Exit::FailEntry { reason } => Err(VmmError::FailEntry { vcpu: id, reason }),
            other => Err(VmmError::UnexpectedExit {
                vcpu: id,
                reason: format!("{other:?}"),
            }),
        }
    }

    fn paging(sregs: &kvm_bindings::kvm_sregs) -> PagingState {
        PagingState {
            cr0: sregs.cr0,
            cr3: sregs.cr3,
            cr4: sregs.cr4,
            efer: sregs.efer,
        }
    }

    /// Runs a `KVM_EXIT_XEN` hypercall: its result, and the argument
    /// registers of a continuation if xen-emu made one.
    fn dispatch(
        &mut self,
        mode: GuestMode,
        cpl: u8,
        nr: u64,
        args: [u64; 5],
    ) -> (i64, Option<Vec<u64>>) {
        let sregs = if self.sync_regs {
            self.fd.sync_regs().sregs
        } else {
            match self.fd.get_sregs() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("vCPU {}: KVM_GET_SREGS: {e}", self.id);
                    return (-14, None); // -EFAULT: arguments unreadable
                }
            }
        };
        let rflags = if self.sync_regs {
            self.fd.sync_regs().regs.rflags
        } else {
            self.fd.get_regs().map(|r| r.rflags).unwrap_or(RFLAGS_IF)
        };
        let mut ctx = HypercallCtx {
            id: self.id,
            mode,
            cpl,
            paging: Self::paging(&sregs),
            mem: &self.mem,
            interrupts: rflags & RFLAGS_IF != 0,
            can_halt: self.apic,
            halt: false,
            stop: &self.shared.stop,
            control: self.control.as_ref(),
            continuation: None,
        };
        let ret = self.domain.hypercall(&mut ctx, nr, args);
        if ctx.halt {
            if let Err(e) = crate::smp::halt(&self.fd) {
                tracing::warn!("vCPU {}: {e}", self.id);
            }
        }
        (ret, ctx.continuation.take())
    }

    fn port_hypercall(&mut self, nr: u64) -> Result<(), VmmError> {
        let t0 = Instant::now();
        let (regs, sregs) = if self.sync_regs {
            let s = self.fd.sync_regs();
            (s.regs, s.sregs)
        } else {
            (
                self.fd.get_regs().map_err(VmmError::kvm("KVM_GET_REGS"))?,
                self.fd
                    .get_sregs()
                    .map_err(VmmError::kvm("KVM_GET_SREGS"))?,
            )
        };
        let mode = mode_of(&sregs);
        let args = args_from_regs(&regs, mode);
        let mut ctx = HypercallCtx {
            id: self.id,
            mode,
            cpl: sregs.cs.dpl,
            paging: Self::paging(&sregs),
            mem: &self.mem,
            interrupts: regs.rflags & RFLAGS_IF != 0,
            can_halt: self.apic,
            halt: false,
            stop: &self.shared.stop,
            control: self.control.as_ref(),
            continuation: None,
        };
        let ret = match self.shared.debug_vm.get() {
            Some(vm) => {
                self.stats.host_times.exit(nr, args[0], t0);
                if nr == crate::debug_hook::DEBUG_HYPERCALL {
                    crate::debug_hook::domain_op(vm, &self.domain, &self.mem, args)
                        .unwrap_or_else(|| self.stats.host_times.hypercall(vm, args))
                } else {
                    self.domain.hypercall(&mut ctx, nr, args)
                }
            }
            None => self.domain.hypercall(&mut ctx, nr, args),
        };
        let halt = ctx.halt;
        if let Some(c) = ctx.continuation.take() {
            self.restart_hypercall(mode, nr, OUT_IMM8_LEN, &c)?;
            self.stats.hypercalls += 1;
            self.stats.hypercall_service_ns += t0.elapsed().as_nanos() as u64;
            return Ok(());
        }
        if self.sync_regs {
            let s = self.fd.sync_regs_mut();
            s.regs.rax = ret as u64;
            self.fd.set_sync_dirty_reg(SyncReg::Register);
            debug_assert_eq!(
                self.fd.get_kvm_run().kvm_dirty_regs & u64::from(KVM_SYNC_X86_REGS),
                u64::from(KVM_SYNC_X86_REGS)
            );
        } else {
            let mut r = regs;
            r.rax = ret as u64;
            self.fd
                .set_regs(&r)
                .map_err(VmmError::kvm("KVM_SET_REGS"))?;
        }
        if halt {
            crate::smp::halt(&self.fd)?;
        }
        self.stats.hypercalls += 1;
        self.stats.hypercall_service_ns += t0.elapsed().as_nanos() as u64;
        Ok(())
    }

    /// Makes the vCPU re-run the hypercall it trapped with (Xen's
    /// continuation): RIP back on the `insn_len`-byte trapping instruction,
    /// RAX = `nr`, the argument registers from `args`. The run loop then
    /// looks at stop and pause requests before the guest makes the call
    /// again, which is what bounds a long batch's hold on the vCPU.
    ///
    /// KVM finishes an I/O or Xen-hypercall exit on the next `KVM_RUN`:
    /// it skips the instruction (and for `KVM_EXIT_XEN` writes RAX), unless
    /// RIP was changed meanwhile; older kernels skipped an `out` before
    /// exiting. Completing the exit now with `immediate_exit` leaves RIP
    /// past the instruction on every kernel, so stepping back by its length
    /// lands on it.
    fn restart_hypercall(
        &mut self,
        mode: GuestMode,
        nr: u64,
        insn_len: u64,
        args: &[u64],
    ) -> Result<(), VmmError> {
        self.fd.set_kvm_immediate_exit(1);
        let r = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => {
                return Err(VmmError::Kvm {
                    what: "KVM_RUN (immediate_exit)",
                    source: e,
                })
            }
            Ok(()) => {
                // The guest ran on past the call: only a kernel that
                // ignores immediate_exit does that.
                return Err(VmmError::UnexpectedExit {
                    vcpu: self.id,
                    reason: "KVM entered the guest despite immediate_exit".into(),
                });
            }
        }
        let mut regs = self.fd.get_regs().map_err(VmmError::kvm("KVM_GET_REGS"))?;
        regs.rip = regs.rip.wrapping_sub(insn_len);
        if mode == GuestMode::Protected32 {
            regs.rip &= 0xffff_ffff;
        }
        continuation_regs(&mut regs, mode, nr, args);
        self.fd
            .set_regs(&regs)
            .map_err(VmmError::kvm("KVM_SET_REGS"))
    }

    /// The guest asked for the hypercall page at `value` (GPA | page index).
    /// Returns false to give it #GP, as Xen does for a bad index or frame.
    fn write_hypercall_page(&mut self, value: u64) -> bool {
        let index = value & 0xfff;
        let gpa = value & !0xfff;
        if index != 0 {
            tracing::debug!("vCPU {}: hypercall page index {index} > 0", self.id);
            return false;
        }
        let page = hypercall_page::build(layout::HYPERCALL_PORT);
        match xen_emu::guest::GuestMemory::write(&*self.mem, gpa, &page) {
            Ok(()) => {
                tracing::debug!("vCPU {}: hypercall page at {gpa:#x}", self.id);
                true
            }
            Err(e) => {
                tracing::debug!("vCPU {}: hypercall page at {gpa:#x}: {e}", self.id);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_come_from_the_abi_registers() {
        let regs = kvm_bindings::kvm_regs {
            rdi: 1,
            rsi: 2,
            rdx: 3,
            r10: 4,
            r8: 5,
            rbx: 0x1_0000_0006,
            rcx: 7,
            ..Default::default()
        };
        assert_eq!(args_from_regs(&regs, GuestMode::Long64), [1, 2, 3, 4, 5]);
        assert_eq!(
            args_from_regs(&regs, GuestMode::Protected32),
            [6, 7, 3, 2, 1]
        );
    }

    #[test]
    fn continuation_rewrites_rax_and_the_named_argument_registers_only() {
        let base = kvm_bindings::kvm_regs {
            rax: 0x1234,
            rdi: 1,
            rsi: 2,
            rdx: 3,
            r10: 4,
            r8: 5,
            rbx: 6,
            rcx: 7,
            rip: 0x1005,
            ..Default::default()
        };
        let mut r = base;
        continuation_regs(&mut r, GuestMode::Long64, 12, &[0x1001, 0x2000]);
        assert_eq!((r.rax, r.rdi, r.rsi), (12, 0x1001, 0x2000));
        assert_eq!((r.rdx, r.r10, r.r8, r.rbx, r.rcx), (3, 4, 5, 6, 7));
        assert_eq!(r.rip, base.rip, "RIP is the caller's business");
        let mut r = base;
        continuation_regs(&mut r, GuestMode::Protected32, 20, &[5, 0x3000, 44]);
        assert_eq!((r.rax, r.rbx, r.rcx, r.rdx), (20, 5, 0x3000, 44));
        assert_eq!((r.rsi, r.rdi, r.r10), (2, 1, 4));
        assert_eq!(
            args_from_regs(&r, GuestMode::Protected32)[..3],
            [5, 0x3000, 44]
        );
    }

    #[test]
    fn mode_needs_lma_and_cs_l() {
        let mut s = kvm_bindings::kvm_sregs::default();
        assert_eq!(mode_of(&s), GuestMode::Protected32);
        s.efer = EFER_LMA;
        assert_eq!(mode_of(&s), GuestMode::Protected32, "compat mode");
        s.cs.l = 1;
        assert_eq!(mode_of(&s), GuestMode::Long64);
    }
}
