//! Boots hand-assembled 32-bit PVH guests on /dev/kvm: the hypercall page
//! through the MSR filter and port-I/O stubs, start info in EBX, console_io,
//! sched_op shutdown, and a guest that triple-faults (Xen reboots it).
//! Skips (with a reason) without /dev/kvm unless CI=true.

use vmm::elf::build::{image, NoteVia};
use vmm::{ConsoleIo, DomainExit, VmConfig};

mod common;
use common::{kvm_available, write_kernel, Buf};

const BASE: u32 = 0x10_0000;
const HCALL_PAGE: u32 = 0x20_0000;
const MSG_OFF: u32 = 0x800;
const REASON_OFF: u32 = 0x900;
const CRASH_REASON_OFF: u32 = 0x904;

/// A tiny 32-bit assembler for the few instructions these guests need.
struct Asm {
    code: Vec<u8>,
}

impl Asm {
    fn here(&self) -> u32 {
        BASE + self.code.len() as u32
    }
    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }
    fn imm(&mut self, opcode: &[u8], v: u32) -> &mut Self {
        self.code.extend_from_slice(opcode);
        self.code.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn call(&mut self, target: u32) -> &mut Self {
        let next = self.here() + 5;
        self.imm(&[0xe8], target.wrapping_sub(next))
    }
    fn hypercall(&mut self, nr: u32) -> &mut Self {
        self.call(HCALL_PAGE + nr * 32)
    }
}

/// The guest: checks the start-info magic, installs the hypercall page,
/// prints `msg` with console_io, then shuts down with `reason` (or crash
/// if the magic was wrong).
fn guest(msg: &[u8], reason: u32) -> Vec<u8> {
    let mut a = Asm { code: Vec::new() };
    a.imm(&[0xbc], 0x8_0000); // mov esp, 0x80000
    a.imm(&[0x81, 0x3b], 0x336e_c578); // cmp dword [ebx], XEN_HVM_START_MAGIC_VALUE
    a.op(&[0x0f, 0x85]); // jne crash (rel32, patched)
    let jne_at = a.code.len();
    a.op(&[0, 0, 0, 0]);
    a.imm(&[0xb9], 0x4000_0000); // mov ecx, hypercall MSR
    a.imm(&[0xb8], HCALL_PAGE); // mov eax, page
    a.op(&[0x31, 0xd2]); // xor edx, edx
    a.op(&[0x0f, 0x30]); // wrmsr
    a.imm(&[0xbb], 0); // mov ebx, CONSOLEIO_write
    a.imm(&[0xb9], msg.len() as u32); // mov ecx, len
    a.imm(&[0xba], BASE + MSG_OFF); // mov edx, msg
    a.hypercall(18); // console_io
    a.imm(&[0xbb], 2); // mov ebx, SCHEDOP_shutdown
    a.imm(&[0xb9], BASE + REASON_OFF);
    a.hypercall(29); // sched_op
    a.op(&[0xf4, 0xeb, 0xfd]); // hlt; jmp hlt
    let crash = a.code.len();
    let rel = (crash - (jne_at + 4)) as u32;
    a.code[jne_at..jne_at + 4].copy_from_slice(&rel.to_le_bytes());
    // Without a hypercall page we cannot report; triple-fault instead.
    a.op(&[0x0f, 0x0b]); // ud2, no IDT
    let mut code = a.code;
    code.resize(0xa00, 0x90);
    code[MSG_OFF as usize..MSG_OFF as usize + msg.len()].copy_from_slice(msg);
    code[REASON_OFF as usize..REASON_OFF as usize + 4].copy_from_slice(&reason.to_le_bytes());
    code[CRASH_REASON_OFF as usize..CRASH_REASON_OFF as usize + 4]
        .copy_from_slice(&3u32.to_le_bytes());
    code
}

#[test]
fn hypercall_page_guest_prints_and_powers_off() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let elf = image(
        false,
        u64::from(BASE),
        &guest(b"hello from a PVH guest\n", 0),
        0x1000,
        BASE,
        NoteVia::ProgramHeader,
    );
    let cfg = VmConfig::new("kvm-boot", write_kernel(&dir, &elf));
    let out = Buf::default();
    let outcome =
        vmm::run_domain(cfg, ConsoleIo::output_only(Box::new(out.clone()))).expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    assert_eq!(
        String::from_utf8_lossy(&outcome.hypervisor_log),
        "hello from a PVH guest\n"
    );
    assert_eq!(outcome.stats.hypercalls, 2);
}

#[test]
fn shutdown_reason_reaches_the_outcome() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let elf = image(
        false,
        u64::from(BASE),
        &guest(b"bye\n", 1),
        0,
        BASE,
        NoteVia::SectionHeader,
    );
    let outcome = vmm::run_domain(
        VmConfig::new("kvm-reboot", write_kernel(&dir, &elf)),
        ConsoleIo::output_only(Box::new(std::io::sink())),
    )
    .expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Reboot);
}

#[test]
fn triple_fault_shuts_the_domain_down_with_reboot_as_xen_does() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // ud2 at the entry with no IDT: #UD -> #GP -> #DF -> triple fault.
    // Xen's hvm_triple_fault() shuts the domain down with
    // HVM_PARAM_TRIPLE_FAULT_REASON, SHUTDOWN_reboot by default.
    let elf = image(
        false,
        u64::from(BASE),
        &[0x0f, 0x0b],
        0,
        BASE,
        NoteVia::ProgramHeader,
    );
    let outcome = vmm::run_domain(
        VmConfig::new("kvm-fault", write_kernel(&dir, &elf)),
        ConsoleIo::output_only(Box::new(std::io::sink())),
    )
    .expect("a triple fault is a guest shutdown, not a VMM failure");
    assert_eq!(outcome.exit, DomainExit::Reboot);
}

#[test]
fn non_pvh_kernel_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elf = image(true, u64::from(BASE), &[0xf4], 0, BASE, NoteVia::Nowhere);
    let err = vmm::run_domain(
        VmConfig::new("not-pvh", write_kernel(&dir, &elf)),
        ConsoleIo::output_only(Box::new(std::io::sink())),
    )
    .expect_err("must fail");
    assert!(
        err.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"),
        "{err}"
    );
}

#[test]
fn waiting_application_processors_stop_with_the_domain() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let elf = image(
        false,
        u64::from(BASE),
        &guest(b"smp\n", 0),
        0,
        BASE,
        NoteVia::ProgramHeader,
    );
    let mut cfg = VmConfig::new("kvm-smp", write_kernel(&dir, &elf));
    cfg.vcpus = 3;
    cfg.max_vcpus = 4;
    let outcome = vmm::run_domain(cfg, ConsoleIo::output_only(Box::new(std::io::sink())))
        .expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    assert_eq!(outcome.hypervisor_log, b"smp\n");
}

#[test]
fn domain_without_apic_still_boots() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let elf = image(
        false,
        u64::from(BASE),
        &guest(b"no apic\n", 0),
        0,
        BASE,
        NoteVia::ProgramHeader,
    );
    let mut cfg = VmConfig::new("kvm-noapic", write_kernel(&dir, &elf));
    cfg.apic = false;
    let outcome = vmm::run_domain(cfg, ConsoleIo::output_only(Box::new(std::io::sink())))
        .expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
}
