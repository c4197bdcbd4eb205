//! CPUID and the hypercall MSR as the guest sees them on /dev/kvm, with and
//! without `viridian`: a hand-assembled 32-bit guest reads the hypervisor
//! leaves, installs the hypercall page through the MSR named in base+2 EBX,
//! and reports what it saw with console_io. Skips without /dev/kvm unless
//! CI=true.

use vmm::elf::build::{image, NoteVia};
use vmm::{ConsoleIo, DomainExit, VmConfig};

mod common;
use common::kvm_available;

const BASE: u32 = 0x10_0000;
const HCALL_PAGE: u32 = 0x20_0000;
const OUT: u32 = 0x800; // 16 bytes of results
const REASON: u32 = 0x900;

/// Stores EBX of leaf `first` and of `xen_base`, and EAX/EBX of
/// `xen_base + 2`, then uses that MSR for the hypercall page and prints the
/// 16 bytes.
fn guest(xen_base: u32) -> Vec<u8> {
    let mut c: Vec<u8> = Vec::new();
    let imm = |c: &mut Vec<u8>, op: &[u8], v: u32| {
        c.extend_from_slice(op);
        c.extend_from_slice(&v.to_le_bytes());
    };
    let cpuid_store = |c: &mut Vec<u8>, leaf: u32, reg_to_eax: &[u8], at: u32| {
        imm(c, &[0xb8], leaf); // mov eax, leaf
        c.extend_from_slice(&[0x31, 0xc9, 0x0f, 0xa2]); // xor ecx,ecx; cpuid
        c.extend_from_slice(reg_to_eax); // mov eax, <reg>
        imm(c, &[0xa3], BASE + at); // mov [at], eax
    };
    imm(&mut c, &[0xbc], 0x8_0000);
    cpuid_store(&mut c, 0x4000_0000, &[0x89, 0xd8], OUT); // ebx
    cpuid_store(&mut c, xen_base, &[0x89, 0xd8], OUT + 4); // ebx
    cpuid_store(&mut c, xen_base + 2, &[0x90, 0x90], OUT + 8); // eax (pages)
    cpuid_store(&mut c, xen_base + 2, &[0x89, 0xd8], OUT + 12); // ebx (MSR)
                                                                // wrmsr(MSR from base+2, page)
    c.extend_from_slice(&[0x89, 0xd9]); // mov ecx, ebx
    imm(&mut c, &[0xb8], HCALL_PAGE);
    c.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]);
    let call = |c: &mut Vec<u8>, nr: u32| {
        let next = BASE + c.len() as u32 + 5;
        imm(c, &[0xe8], (HCALL_PAGE + nr * 32).wrapping_sub(next));
    };
    imm(&mut c, &[0xbb], 0);
    imm(&mut c, &[0xb9], 16);
    imm(&mut c, &[0xba], BASE + OUT);
    call(&mut c, 18);
    imm(&mut c, &[0xbb], 2);
    imm(&mut c, &[0xb9], BASE + REASON);
    call(&mut c, 29);
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]);
    c.resize(0xa00, 0);
    c
}

/// Boots the hand-assembled guest `code` (loaded at `BASE`) with the
/// config `tune` adjusts.
fn run_code(
    name: &str,
    code: &[u8],
    tune: impl FnOnce(&mut VmConfig),
) -> Result<vmm::RunOutcome, vmm::VmmError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = dir.path().join("kernel");
    std::fs::write(
        &kernel,
        image(
            false,
            u64::from(BASE),
            code,
            0,
            BASE,
            NoteVia::ProgramHeader,
        ),
    )
    .expect("write kernel");
    let mut cfg = VmConfig::new(name, &kernel);
    tune(&mut cfg);
    vmm::run_domain(cfg, ConsoleIo::output_only(Box::new(std::io::sink())))
}

fn run(viridian: bool) -> Vec<u8> {
    let base = if viridian { 0x4000_0100 } else { 0x4000_0000 };
    let outcome = run_code("cpuid", &guest(base), |c| c.viridian = viridian).expect("run_domain");
    assert_eq!(outcome.exit, DomainExit::Poweroff);
    outcome.hypervisor_log
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

#[test]
fn xen_leaves_at_0x40000000_without_viridian() {
    if !kvm_available() {
        return;
    }
    let r = run(false);
    assert_eq!(r.len(), 16, "{r:x?}");
    assert_eq!(&r[0..4], b"XenV");
    assert_eq!(&r[4..8], b"XenV");
    assert_eq!(word(&r, 2), 1, "one hypercall page");
    assert_eq!(word(&r, 3), 0x4000_0000);
}

#[test]
fn viridian_puts_hyperv_first_and_moves_the_hypercall_msr() {
    if !kvm_available() {
        return;
    }
    let r = run(true);
    assert_eq!(r.len(), 16, "{r:x?}");
    assert_eq!(&r[0..4], b"Micr");
    assert_eq!(&r[4..8], b"XenV");
    assert_eq!(word(&r, 3), 0x4000_0200);
}

#[test]
fn apic_0_hides_the_apic_from_cpuid_at_run_time() {
    if !kvm_available() {
        return;
    }
    for (apic, expect) in [(true, true), (false, false)] {
        let o = run_code("apic", &features_guest(), |c| c.apic = apic).expect("run_domain");
        assert_eq!(o.hypervisor_log.len(), 16);
        let edx = word(&o.hypervisor_log, 2);
        assert_eq!(
            edx & (1 << 9) != 0,
            expect,
            "apic={apic}: CPUID.1:EDX {edx:#x}"
        );
    }
}

/// Prints CPUID.1 EBX, ECX, EDX and CPUID.7.0 EBX (16 bytes).
fn features_guest() -> Vec<u8> {
    let mut c: Vec<u8> = Vec::new();
    let imm = |c: &mut Vec<u8>, op: &[u8], v: u32| {
        c.extend_from_slice(op);
        c.extend_from_slice(&v.to_le_bytes());
    };
    imm(&mut c, &[0xbc], 0x8_0000);
    imm(&mut c, &[0xb9], 0x4000_0000);
    imm(&mut c, &[0xb8], HCALL_PAGE);
    c.extend_from_slice(&[0x31, 0xd2, 0x0f, 0x30]);
    imm(&mut c, &[0xb8], 1);
    c.extend_from_slice(&[0x31, 0xc9, 0x0f, 0xa2]); // cpuid
    imm(&mut c, &[0x89, 0x1d], BASE + OUT); // mov [OUT], ebx
    imm(&mut c, &[0x89, 0x0d], BASE + OUT + 4); // mov [OUT+4], ecx
    imm(&mut c, &[0x89, 0x15], BASE + OUT + 8); // mov [OUT+8], edx
    imm(&mut c, &[0xb8], 7);
    c.extend_from_slice(&[0x31, 0xc9, 0x0f, 0xa2]); // cpuid
    imm(&mut c, &[0x89, 0x1d], BASE + OUT + 12); // mov [OUT+12], ebx
    let call = |c: &mut Vec<u8>, nr: u32| {
        let next = BASE + c.len() as u32 + 5;
        imm(c, &[0xe8], (HCALL_PAGE + nr * 32).wrapping_sub(next));
    };
    imm(&mut c, &[0xbb], 0);
    imm(&mut c, &[0xb9], 16);
    imm(&mut c, &[0xba], BASE + OUT);
    call(&mut c, 18);
    imm(&mut c, &[0xbb], 2);
    imm(&mut c, &[0xb9], BASE + REASON);
    call(&mut c, 29);
    c.extend_from_slice(&[0xf4, 0xeb, 0xfd]);
    c.resize(0xa00, 0);
    c
}

/// `bits` (bit number → character) over all-`x`, bit 31 first: a register
/// of xl.cfg's `cpuid=` as libxl stores it.
fn policy(bits: &[(u32, char)]) -> Option<String> {
    let mut p = vec![b'x'; 32];
    for &(bit, c) in bits {
        p[31 - bit as usize] = c as u8;
    }
    Some(String::from_utf8(p).expect("ascii"))
}

fn features_with(p: Vec<vmm::cpuid::CpuidOverride>) -> Result<[u32; 4], vmm::VmmError> {
    let o = run_code("cpuid-policy", &features_guest(), |c| c.cpuid_policy = p)?;
    assert_eq!(o.exit, DomainExit::Poweroff);
    let r = &o.hypervisor_log;
    assert_eq!(r.len(), 16, "{r:x?}");
    Ok([word(r, 0), word(r, 1), word(r, 2), word(r, 3)])
}

/// KVM's own answer for leaf 7.0 EBX, to tell whether this host's KVM
/// hands the guest what KVM_SET_CPUID2 said there: some nested hosts
/// answer leaf 7 themselves, whatever the table holds.
fn supported_leaf7_ebx() -> Option<u32> {
    let kvm = kvm_ioctls::Kvm::new().ok()?;
    let c = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .ok()?;
    c.as_slice()
        .iter()
        .find(|e| e.function == 7 && e.index == 0)
        .map(|e| e.ebx)
}

#[test]
fn cpuid_policy_is_what_the_guest_sees() {
    if !kvm_available() {
        return;
    }
    let [ebx1, ecx1, edx1, ebx7] = features_with(Vec::new()).expect("default run");
    let o = |leaf, subleaf, regs| vmm::cpuid::CpuidOverride {
        leaf,
        subleaf,
        regs,
    };
    let p = vec![
        // cpuid = "host,bmi1=0,x2apic=0"
        o(7, Some(0), [None, policy(&[(3, '0')]), None, None]),
        // cpuid = ["0x1:ebx=...1..0.., ecx=0..., edx=kkk..."]: force the
        // CLFLUSH size's bit 8 on and bit 11 off, hide the hypervisor bit
        // and (as x2apic=0 does) x2APIC.
        o(
            1,
            None,
            [
                None,
                policy(&[(8, '1'), (11, '0')]),
                policy(&[(31, '0'), (21, '0')]),
                Some("k".repeat(32)),
            ],
        ),
    ];
    let [pebx1, pecx1, pedx1, pebx7] = features_with(p).expect("policy run");
    assert_eq!(pebx1, (ebx1 | 1 << 8) & !(1 << 11), "leaf 1 ebx");
    assert_ne!(
        ecx1 & (1 << 31 | 1 << 21),
        0,
        "default has hypervisor/x2apic"
    );
    assert_eq!(pecx1, ecx1 & !(1 << 31 | 1 << 21), "leaf 1 ecx");
    assert_eq!(pedx1, edx1, "leaf 1 edx");
    if supported_leaf7_ebx() == Some(ebx7) {
        assert_eq!(
            pebx7,
            ebx7 & !(1 << 3),
            "leaf 7 ebx (host bmi1: {})",
            ebx7 & 8 != 0
        );
    } else {
        eprintln!(
            "leaf 7 not checked: this KVM answers leaf 7.0 EBX {ebx7:#x} whatever \
             KVM_SET_CPUID2 says (nested host?)"
        );
    }
    // A hypervisor leaf is refused before the guest runs.
    let bad = vec![o(0x4000_0000, None, [policy(&[]), None, None, None])];
    let err = features_with(bad).expect_err("refused").to_string();
    assert!(err.contains("hypervisor leaf"), "{err}");
}
