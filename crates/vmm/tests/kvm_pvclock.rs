//! shared_info placed by the guest at a frame with no RAM behind it
//! (XENMEM_add_to_physmap), and KVM keeping a valid pvclock in vCPU 0's
//! vcpu_info there. Hand-assembled 32-bit guest; skips without /dev/kvm
//! unless CI=true.

use vmm::elf::build::{image, NoteVia};
use vmm::{ConsoleIo, DomainExit, VmConfig};

mod common;
use common::kvm_available;

const BASE: u32 = 0x10_0000;
const HCALL_PAGE: u32 = 0x20_0000;
/// 2 GiB: beyond the guest's 128 MiB of RAM.
const SHINFO_GFN: u32 = 0x8_0000;
const ATP: u32 = 0x900; // struct xen_add_to_physmap (compat, 16 bytes)
const OK_MSG: u32 = 0x800;
const BAD_MSG: u32 = 0x820;
const REASON: u32 = 0x940;

fn guest() -> Vec<u8> {
    let mut c: Vec<u8> = Vec::new();
    let imm = |c: &mut Vec<u8>, op: &[u8], v: u32| {
        c.extend_from_slice(op);
        c.extend_from_slice(&v.to_le_bytes());
    };
    let call = |c: &mut Vec<u8>, nr: u32| {
        let next = BASE + c.len() as u32 + 5;
        imm(c, &[0xe8], (HCALL_PAGE + nr * 32).wrapping_sub(next));
    };
    imm(&mut c, &[0xbc], 0x8_0000);
    imm(&mut c, &[0xb9], 0x4000_0000);
    imm(&mut c, &[0xb8], HCALL_PAGE);
    c.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]);
    imm(&mut c, &[0xbb], 7); // XENMEM_add_to_physmap
    imm(&mut c, &[0xb9], BASE + ATP);
    call(&mut c, 12); // memory_op
                      // eax must be 0, and vcpu_info[0].time.tsc_to_system_mul (shared_info + 32 + 24) set.
    c.extend_from_slice(&[0x85, 0xc0]); // test eax, eax
    c.extend_from_slice(&[0x75, 0x15]); // jnz bad (skip the 21 bytes below)
    imm(&mut c, &[0x83, 0x3d], (SHINFO_GFN << 12) + 56); // cmp dword [mul], 0
    c.push(0x00);
    c.extend_from_slice(&[0x74, 0x0c]); // je bad (skip the 12 bytes below)
    imm(&mut c, &[0xba], BASE + OK_MSG); // mov edx, ok
    imm(&mut c, &[0xb9], 11); // mov ecx, len
    c.extend_from_slice(&[0xeb, 0x0a]); // jmp print
                                        // bad:
    imm(&mut c, &[0xba], BASE + BAD_MSG);
    imm(&mut c, &[0xb9], 12);
    // print:
    imm(&mut c, &[0xbb], 0);
    call(&mut c, 18);
    imm(&mut c, &[0xbb], 2);
    imm(&mut c, &[0xb9], BASE + REASON);
    call(&mut c, 29);
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]);
    assert!(c.len() < OK_MSG as usize);
    c.resize(0xa00, 0);
    let put = |c: &mut Vec<u8>, off: u32, v: &[u8]| {
        c[off as usize..off as usize + v.len()].copy_from_slice(v)
    };
    put(&mut c, OK_MSG, b"pvclock ok\n");
    put(&mut c, BAD_MSG, b"pvclock bad\n");
    // xen_add_to_physmap (32-bit): domid, size, space, idx, gpfn.
    put(&mut c, ATP, &0x7ff0u16.to_le_bytes());
    put(&mut c, ATP + 4, &0u32.to_le_bytes()); // XENMAPSPACE_shared_info
    put(&mut c, ATP + 8, &0u32.to_le_bytes());
    put(&mut c, ATP + 12, &SHINFO_GFN.to_le_bytes());
    c
}

#[test]
fn shared_info_outside_ram_gets_a_live_pvclock() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    std::fs::write(
        &kernel,
        image(
            false,
            u64::from(BASE),
            &guest(),
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write kernel");
    let outcome = vmm::run_domain(
        VmConfig::new("pvclock", &kernel),
        ConsoleIo::output_only(Box::new(std::io::sink())),
    )
    .expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    assert_eq!(
        String::from_utf8_lossy(&outcome.hypervisor_log),
        "pvclock ok\n"
    );
}
