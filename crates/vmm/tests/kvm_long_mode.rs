//! A hand-assembled guest that switches from the PVH entry state to 64-bit
//! long mode (PAE 4-level paging, 2 MiB pages, the low GiB mapped both at 0
//! and at 0xffff_8000_0000_0000) and makes its hypercalls with the 64-bit
//! ABI (rdi, rsi, rdx), passing higher-half pointers, so the VMM must walk
//! the guest's page tables. Skips without /dev/kvm unless CI=true.

use vmm::elf::build::{image, NoteVia};
use vmm::{ConsoleIo, DomainExit, VmConfig};

mod common;
use common::kvm_available;

const BASE: u32 = 0x10_0000;
const HCALL_PAGE: u32 = 0x20_0000;
const HIGH: u64 = 0xffff_8000_0000_0000;
const MSG: u32 = 0x800;
const REASON: u32 = 0x8f0;
const GDT: u32 = 0x900;
const GDTR: u32 = 0x940;
const PML4: u32 = 0x1000;
const PDPT: u32 = 0x2000;
const PD: u32 = 0x3000;

fn put(b: &mut [u8], off: u32, v: &[u8]) {
    b[off as usize..off as usize + v.len()].copy_from_slice(v);
}

fn guest(msg: &[u8]) -> Vec<u8> {
    let mut c: Vec<u8> = Vec::new();
    let imm = |c: &mut Vec<u8>, op: &[u8], v: u32| {
        c.extend_from_slice(op);
        c.extend_from_slice(&v.to_le_bytes());
    };
    // 32-bit: paging structures, PAE, EFER.LME, CR0.PG, 64-bit GDT, far jump.
    imm(&mut c, &[0xbc], 0x8_0000); // mov esp, 0x80000
    imm(&mut c, &[0xb8], BASE + PML4); // mov eax, pml4
    c.extend_from_slice(&[0x0f, 0x22, 0xd8]); // mov cr3, eax
    c.extend_from_slice(&[0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0]); // cr4 |= PAE
    imm(&mut c, &[0xb9], 0xc000_0080); // mov ecx, EFER
    c.extend_from_slice(&[0x0f, 0x32]); // rdmsr
    imm(&mut c, &[0x0d], 0x100); // or eax, LME
    c.extend_from_slice(&[0x0f, 0x30]); // wrmsr
    imm(&mut c, &[0x0f, 0x01, 0x15], BASE + GDTR); // lgdt [gdtr]
    c.extend_from_slice(&[0x0f, 0x20, 0xc0]); // mov eax, cr0
    imm(&mut c, &[0x0d], 0x8000_0001); // or eax, PG|PE
    c.extend_from_slice(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    let long_entry = BASE + c.len() as u32 + 7;
    imm(&mut c, &[0xea], long_entry); // ljmp 0x08:long_entry
    c.extend_from_slice(&0x08u16.to_le_bytes());
    assert_eq!(BASE + c.len() as u32, long_entry);
    // 64-bit.
    imm(&mut c, &[0xb9], 0x4000_0000); // mov ecx, hypercall MSR
    imm(&mut c, &[0xb8], HCALL_PAGE);
    c.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]); // xor edx,edx; wrmsr
    let call = |c: &mut Vec<u8>, nr: u32| {
        let next = BASE + c.len() as u32 + 5;
        imm(c, &[0xe8], (HCALL_PAGE + nr * 32).wrapping_sub(next));
    };
    c.extend_from_slice(&[0x31, 0xff]); // xor edi, edi (CONSOLEIO_write)
    imm(&mut c, &[0xbe], msg.len() as u32); // mov esi, len
    c.extend_from_slice(&[0x48, 0xba]); // mov rdx, imm64
    c.extend_from_slice(&(HIGH + u64::from(BASE + MSG)).to_le_bytes());
    call(&mut c, 18);
    imm(&mut c, &[0xbf], 2); // mov edi, SCHEDOP_shutdown
    c.extend_from_slice(&[0x48, 0xbe]); // mov rsi, imm64
    c.extend_from_slice(&(HIGH + u64::from(BASE + REASON)).to_le_bytes());
    call(&mut c, 29);
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]);
    assert!(c.len() < MSG as usize);

    let mut img = c;
    img.resize(0x4000, 0);
    put(&mut img, MSG, msg);
    put(&mut img, REASON, &0u32.to_le_bytes());
    put(&mut img, GDT + 8, &0x00af_9a00_0000_ffffu64.to_le_bytes()); // 64-bit code
    put(&mut img, GDT + 16, &0x00cf_9200_0000_ffffu64.to_le_bytes()); // data
    put(&mut img, GDTR, &23u16.to_le_bytes());
    put(&mut img, GDTR + 2, &(BASE + GDT).to_le_bytes());
    let pdpt = u64::from(BASE + PDPT) | 3;
    put(&mut img, PML4, &pdpt.to_le_bytes()); // 0
    put(&mut img, PML4 + 256 * 8, &pdpt.to_le_bytes()); // 0xffff_8000_0000_0000
    put(&mut img, PDPT, &(u64::from(BASE + PD) | 3).to_le_bytes());
    for i in 0..512u32 {
        put(
            &mut img,
            PD + i * 8,
            &((u64::from(i) << 21) | 0x83).to_le_bytes(),
        );
    }
    img
}

#[test]
fn long_mode_guest_uses_the_64bit_abi_with_virtual_pointers() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    let msg = b"hello from long mode\n";
    std::fs::write(
        &kernel,
        image(
            true,
            u64::from(BASE),
            &guest(msg),
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write kernel");
    let outcome = vmm::run_domain(
        VmConfig::new("long", &kernel),
        ConsoleIo::output_only(Box::new(std::io::sink())),
    )
    .expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    assert_eq!(outcome.hypervisor_log, msg);
}
