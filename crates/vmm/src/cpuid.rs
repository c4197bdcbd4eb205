//! CPUID as a Xen HVM/PVH guest sees it: the host's features (from
//! `KVM_GET_SUPPORTED_CPUID`), adjusted for `apic`/`nestedhvm`, with KVM's
//! own paravirt leaves removed and Xen's leaves (`arch-x86/cpuid.h`) in their
//! place — at 0x40000000, or at 0x40000100 behind Hyper-V's leaves with
//! `viridian`, exactly where Xen's `cpuid_hypervisor_leaves` puts them.
//! xl.cfg's `cpuid=` policy is then applied over that ([`apply_policy`]).

use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// "XenVMMXenVMM" in EBX, ECX, EDX.
pub const XEN_SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// "Microsoft Hv" in EBX, ECX, EDX.
pub const HYPERV_SIGNATURE: [u32; 3] = [0x7263_694d, 0x666f_736f, 0x7648_2074];

pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

const LEAF1_ECX_VMX: u32 = 1 << 5;
const LEAF1_ECX_X2APIC: u32 = 1 << 21;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_EDX_APIC: u32 = 1 << 9;
const EXT1_ECX_SVM: u32 = 1 << 2;

/// What decides the guest's CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidConfig {
    pub xen_version: (u16, u16),
    pub viridian: bool,
    pub apic: bool,
    pub nested_hvm: bool,
    pub xen_vapic: bool,
    pub domid: u32,
    pub tsc_khz: u32,
    /// MSR the guest writes to get the hypercall page (base+2 EBX).
    pub hypercall_msr: u32,
}

fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        flags: if index != 0 {
            KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        } else {
            0
        },
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

fn at_least(v: (u16, u16), major: u16, minor: u16) -> bool {
    v >= (major, minor)
}

/// Where Xen's leaves start.
pub fn xen_base(cfg: &CpuidConfig) -> u32 {
    if cfg.viridian {
        0x4000_0100
    } else {
        0x4000_0000
    }
}

/// Xen's leaves for `vcpu`, as `cpuid_hypervisor_leaves` in the configured
/// Xen version answers them.
pub fn xen_leaves(cfg: &CpuidConfig, vcpu: u32) -> Vec<kvm_cpuid_entry2> {
    let base = xen_base(cfg);
    let v = cfg.xen_version;
    // The HVM leaf (base+4) exists from Xen 4.5; before that the last leaf
    // is the time leaf (base+3).
    let has_hvm_leaf = at_least(v, 4, 5);
    let last = if has_hvm_leaf { base + 4 } else { base + 3 };
    let [sb, sc, sd] = XEN_SIGNATURE;
    let mut leaves = vec![
        entry(base, 0, [last, sb, sc, sd]),
        entry(
            base + 1,
            0,
            [(u32::from(v.0) << 16) | u32::from(v.1), 0, 0, 0],
        ),
        entry(base + 2, 0, [1, cfg.hypercall_msr, 0, 0]),
        // Time leaf, sub-leaf 0: no TSC emulation, TSC is safe; tsc_mode 0
        // (default); the guest's TSC frequency.
        entry(base + 3, 0, [1 << 1, 0, cfg.tsc_khz, 0]),
    ];
    if has_hvm_leaf {
        let mut a = 0;
        let (mut b, mut c) = (0, 0);
        if cfg.xen_vapic && cfg.apic {
            a |= XEN_HVM_CPUID_APIC_ACCESS_VIRT | XEN_HVM_CPUID_X2APIC_VIRT;
        }
        // No passthrough devices: mapped foreign memory needs no IOMMU care.
        if at_least(v, 4, 8) {
            a |= XEN_HVM_CPUID_IOMMU_MAPPINGS;
        }
        if at_least(v, 4, 6) {
            a |= XEN_HVM_CPUID_VCPU_ID_PRESENT;
            b = vcpu;
        }
        // Added for the PV shim (Xen 4.11).
        if at_least(v, 4, 11) {
            a |= XEN_HVM_CPUID_DOMID_PRESENT;
            c = cfg.domid;
        }
        if at_least(v, 4, 17) {
            a |= XEN_HVM_CPUID_UPCALL_VECTOR;
        }
        leaves.push(entry(base + 4, 0, [a, b, c, 0]));
    }
    leaves
}

/// Hyper-V's identification leaves when `viridian` is on (Xen's
/// `cpuid_viridian_leaves`, minimal feature set: no enlightenments yet).
pub fn viridian_leaves() -> Vec<kvm_cpuid_entry2> {
    let [b, c, d] = HYPERV_SIGNATURE;
    vec![
        entry(0x4000_0000, 0, [0x4000_0006, b, c, d]),
        entry(0x4000_0001, 0, [0x3123_7648, 0, 0, 0]), // "Hv#1"
        entry(0x4000_0002, 0, [0, 6 << 16, 0, 0]),     // Windows 6.0 build
        entry(0x4000_0003, 0, [0, 0, 0, 0]),
        entry(0x4000_0004, 0, [0, 0, 0, 0]),
        entry(0x4000_0005, 0, [0, 0, 0, 0]),
        entry(0x4000_0006, 0, [0, 0, 0, 0]),
    ]
}

/// Turns the host's supported CPUID into what vCPU `vcpu` (APIC id
/// `apic_id`) sees.
pub fn build(
    host: &[kvm_cpuid_entry2],
    cfg: &CpuidConfig,
    vcpu: u32,
    apic_id: u32,
) -> Vec<kvm_cpuid_entry2> {
    let mut out: Vec<kvm_cpuid_entry2> = host
        .iter()
        .copied()
        .filter(|e| !(0x4000_0000..0x5000_0000).contains(&e.function))
        .collect();
    for e in &mut out {
        match e.function {
            1 => {
                e.ecx |= LEAF1_ECX_HYPERVISOR;
                e.ebx = (e.ebx & 0x00ff_ffff) | (apic_id << 24);
                if !cfg.apic {
                    e.edx &= !LEAF1_EDX_APIC;
                    e.ecx &= !LEAF1_ECX_X2APIC;
                }
                if !cfg.nested_hvm {
                    e.ecx &= !LEAF1_ECX_VMX;
                }
            }
            0xb | 0x1f => e.edx = apic_id,
            0x8000_0001 if !cfg.nested_hvm => e.ecx &= !EXT1_ECX_SVM,
            _ => {}
        }
    }
    if cfg.viridian {
        out.extend(viridian_leaves());
    }
    out.extend(xen_leaves(cfg, vcpu));
    out
}

/// One leaf of xl.cfg's `cpuid=` policy as libxl hands it to libxc
/// (`struct xc_xend_cpuid`): per register, `None` or 32 characters, bit 31
/// first, each `1` (set), `0` (clear), `x` (the default policy's bit), or
/// `k`/`s` (the host's bit in Xen; here, like `x`, the default's: xkvm's
/// default already is the host's KVM-supported value, adjusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuidOverride {
    pub leaf: u32,
    /// `None`: a leaf without sub-leaves (`XEN_CPUID_NO_SUBLEAF`).
    pub subleaf: Option<u32>,
    /// eax, ebx, ecx, edx.
    pub regs: [Option<String>; 4],
}

/// The registers of Xen's featureset words (`cpufeatureset.h` word
/// numbers; words 16 and 17 are MSR_ARCH_CAPS, not CPUID): after the
/// policy, Xen's `recalculate_cpuid_policy` drops feature bits the host
/// cannot offer, so forcing one on does not invent it.
const FEATURE_WORDS: [(u32, u32, Option<u32>, usize); 17] = [
    (0, 0x1, None, 3),
    (1, 0x1, None, 2),
    (2, 0x8000_0001, None, 3),
    (3, 0x8000_0001, None, 2),
    (4, 0xd, Some(1), 0),
    (5, 0x7, Some(0), 1),
    (6, 0x7, Some(0), 2),
    (7, 0x8000_0007, None, 3),
    (8, 0x8000_0008, None, 1),
    (9, 0x7, Some(0), 3),
    (10, 0x7, Some(1), 0),
    (11, 0x8000_0021, None, 0),
    (12, 0x7, Some(1), 1),
    (13, 0x7, Some(2), 3),
    (14, 0x7, Some(1), 2),
    (15, 0x7, Some(1), 3),
    (18, 0x8000_0021, None, 2),
];

/// Xen's feature dependencies (`xen/tools/gen-cpuid.py`'s `deps`, bits as
/// in Xen 4.17.5's `cpufeatureset.h`, `word * 32 + bit`, commented
/// `NAME word:bit`): each feature is a
/// direct prerequisite of the listed ones. Xen clears every (transitive)
/// dependant of a disabled feature, so `avx=0` also hides AVX2 and AVX-512.
/// `ARCH_CAPS`'s dependants are MSR bits and are left out.
#[rustfmt::skip]
const DEEP_DEPS: &[(u32, &[u32])] = &[
    (/* FPU 0:0 */ 0, &[/* MMX 0:23 */ 23, /* RSTR_FP_ERR_PTRS 8:2 */ 258]),
    (/* PSE 0:3 */ 3, &[/* PSE36 0:17 */ 17]),
    (/* PAE 0:6 */ 6, &[/* LM 2:29 */ 93, /* NX 2:20 */ 84]),
    (/* TSC 0:4 */ 4, &[/* TSC_DEADLINE 1:24 */ 56, /* RDTSCP 2:27 */ 91, /* TSC_ADJUST 5:1 */ 161, /* ITSC 7:8 */ 232]),
    (/* APIC 0:9 */ 9, &[/* X2APIC 1:21 */ 53, /* TSC_DEADLINE 1:24 */ 56, /* EXTAPIC 3:3 */ 99]),
    (/* MMX 0:23 */ 23, &[/* MMXEXT 2:22 */ 86, /* 3DNOW 2:31 */ 95]),
    (/* FXSR 0:24 */ 24, &[/* FFXSR 2:25 */ 89, /* SSE 0:25 */ 25]),
    (/* SSE 0:25 */ 25, &[/* SSE2 0:26 */ 26, /* MISALIGNSSE 3:7 */ 103]),
    (/* SSE2 0:26 */ 26, &[/* SSE3 1:0 */ 32, /* LM 2:29 */ 93, /* AESNI 1:25 */ 57, /* PCLMULQDQ 1:1 */ 33, /* SHA 5:29 */ 189, /* GFNI 6:8 */ 200]),
    (/* SSE3 1:0 */ 32, &[/* SSSE3 1:9 */ 41, /* SSE4A 3:6 */ 102]),
    (/* SSSE3 1:9 */ 41, &[/* SSE4_1 1:19 */ 51]),
    (/* SSE4_1 1:19 */ 51, &[/* SSE4_2 1:20 */ 52]),
    (/* XSAVE 1:26 */ 58, &[/* XSAVEOPT 4:0 */ 128, /* XSAVEC 4:1 */ 129, /* XGETBV1 4:2 */ 130, /* XSAVES 4:3 */ 131, /* AVX 1:28 */ 60, /* MPX 5:14 */ 174, /* PKU 6:3 */ 195, /* LWP 3:15 */ 111]),
    (/* AVX 1:28 */ 60, &[/* FMA 1:12 */ 44, /* FMA4 3:16 */ 112, /* F16C 1:29 */ 61, /* AVX2 5:5 */ 165, /* XOP 3:11 */ 107]),
    (/* NX 2:20 */ 84, &[/* SMAP 5:20 */ 180]),
    (/* LM 2:29 */ 93, &[/* CX16 1:13 */ 45, /* PCID 1:17 */ 49, /* LAHF_LM 3:0 */ 96, /* PAGE1GB 2:26 */ 90, /* PKU 6:3 */ 195, /* NO_LMSL 8:20 */ 276]),
    (/* 3DNOW 2:31 */ 95, &[/* 3DNOWEXT 2:30 */ 94]),
    (/* AVX2 5:5 */ 165, &[/* AVX512F 5:16 */ 176, /* VAES 6:9 */ 201, /* VPCLMULQDQ 6:10 */ 202, /* AVX_VNNI 10:4 */ 324]),
    (/* AVX512F 5:16 */ 176, &[/* AVX512DQ 5:17 */ 177, /* AVX512_IFMA 5:21 */ 181, /* AVX512PF 5:26 */ 186, /* AVX512ER 5:27 */ 187, /* AVX512CD 5:28 */ 188, /* AVX512BW 5:30 */ 190, /* AVX512VL 5:31 */ 191, /* AVX512_4VNNIW 9:2 */ 290, /* AVX512_4FMAPS 9:3 */ 291, /* AVX512_VNNI 6:11 */ 203, /* AVX512_VPOPCNTDQ 6:14 */ 206, /* AVX512_VP2INTERSECT 9:8 */ 296]),
    (/* AVX512BW 5:30 */ 190, &[/* AVX512_VBMI 6:1 */ 193, /* AVX512_VBMI2 6:6 */ 198, /* AVX512_BITALG 6:12 */ 204, /* AVX512_BF16 10:5 */ 325, /* AVX512_FP16 9:23 */ 311]),
    (/* PCLMULQDQ 1:1 */ 33, &[/* VPCLMULQDQ 6:10 */ 202]),
    (/* AESNI 1:25 */ 57, &[/* VAES 6:9 */ 201]),
    (/* IBRSB 9:26 */ 314, &[/* STIBP 9:27 */ 315, /* SSBD 9:31 */ 319, /* INTEL_PSFD 13:0 */ 416, /* EIBRS 16:1 */ 513, /* IPRED_CTRL 13:1 */ 417, /* RRSBA_CTRL 13:2 */ 418, /* BHI_CTRL 13:4 */ 420]),
    (/* IBRS 8:14 */ 270, &[/* AMD_STIBP 8:15 */ 271, /* AMD_SSBD 8:24 */ 280, /* PSFD 8:28 */ 284, /* IBRS_ALWAYS 8:16 */ 272, /* IBRS_FAST 8:18 */ 274, /* IBRS_SAME_MODE 8:19 */ 275]),
    (/* IBPB 8:12 */ 268, &[/* IBPB_RET 8:30 */ 286, /* SBPB 11:27 */ 379, /* IBPB_BRTYPE 11:28 */ 380]),
    (/* AMD_STIBP 8:15 */ 271, &[/* STIBP_ALWAYS 8:17 */ 273]),
    (/* RTM 5:11 */ 171, &[/* TSXLDTRK 9:16 */ 304]),
    (/* EIBRS 16:1 */ 513, &[/* RRSBA 16:19 */ 531]),
];

/// Every feature that depends, directly or not, on `feature`.
fn dependants(feature: u32) -> Vec<u32> {
    let direct = |f: u32| {
        DEEP_DEPS
            .iter()
            .find(|(k, _)| *k == f)
            .map_or(&[][..], |(_, d)| d)
    };
    let mut out = Vec::new();
    let mut todo = direct(feature).to_vec();
    while let Some(f) = todo.pop() {
        if !out.contains(&f) {
            out.push(f);
            todo.extend_from_slice(direct(f));
        }
    }
    out
}

/// Leaves whose EAX is a maximum (basic leaf, leaf 7 sub-leaf, extended
/// leaf): Xen refuses a policy raising one above the host's
/// (`x86_cpu_policies_are_compatible`).
const MAX_LEAVES: [(u32, Option<u32>); 3] = [(0, None), (0x7, Some(0)), (0x8000_0000, None)];

fn find(entries: &[kvm_cpuid_entry2], leaf: u32, subleaf: Option<u32>) -> Option<usize> {
    entries.iter().position(|e| {
        e.function == leaf
            && match subleaf {
                None => e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0,
                Some(s) => e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0 && e.index == s,
            }
    })
}

fn reg(e: &kvm_cpuid_entry2, r: usize) -> u32 {
    [e.eax, e.ebx, e.ecx, e.edx][r]
}

fn reg_mut(e: &mut kvm_cpuid_entry2, r: usize) -> &mut u32 {
    match r {
        0 => &mut e.eax,
        1 => &mut e.ebx,
        2 => &mut e.ecx,
        _ => &mut e.edx,
    }
}

fn leaf_name(leaf: u32, subleaf: Option<u32>) -> String {
    match subleaf {
        Some(s) => format!("{leaf:#x},{s}"),
        None => format!("{leaf:#x}"),
    }
}

/// `(set, clear)` masks for one register's policy string, as
/// `xc_cpuid_xend_policy` reads it.
fn masks(policy: &str) -> Result<(u32, u32), String> {
    if policy.len() != 32 {
        return Err(format!(
            "policy string {policy:?} must be exactly 32 characters long"
        ));
    }
    let (mut set, mut clear) = (0u32, 0u32);
    for (j, c) in policy.bytes().enumerate() {
        let bit = 1u32 << (31 - j);
        match c {
            b'1' => set |= bit,
            b'0' => clear |= bit,
            b'x' | b'k' | b's' => {}
            _ => {
                return Err(format!(
                    "bad character {:?} in policy string {policy:?} (must be 0, 1, x, k or s)",
                    char::from(c)
                ))
            }
        }
    }
    Ok((set, clear))
}

/// Applies xl.cfg's `cpuid=` policy to one vCPU's table from [`build`], as
/// libxc's `xc_cpuid_xend_policy` then Xen's policy audit do: bit by bit
/// over the default; a leaf the default has no entry for (including the
/// hypervisor leaves, which are not part of Xen's policy) is refused as
/// Xen refuses it ("Missing leaf"), as is raising a maximum leaf above the
/// host's. Feature bits the host (`host`, KVM's supported CPUID) cannot
/// offer, or that the configuration hides (VMX/SVM without `nestedhvm`,
/// the APIC with `apic=0`), stay clear, as Xen's recalculation clears them;
/// so do the dependants of features the policy clears (`DEEP_DEPS`).
pub fn apply_policy(
    entries: &mut [kvm_cpuid_entry2],
    host: &[kvm_cpuid_entry2],
    cfg: &CpuidConfig,
    policy: &[CpuidOverride],
) -> Result<(), String> {
    if policy.is_empty() {
        return Ok(());
    }
    let default = entries.to_vec();
    for o in policy {
        let name = leaf_name(o.leaf, o.subleaf);
        if (0x4000_0000..0x5000_0000).contains(&o.leaf) {
            return Err(format!(
                "cpuid: leaf {name} is a hypervisor leaf; Xen's CPUID policy has none \
                 and refuses it (\"Missing leaf\")"
            ));
        }
        let i = find(entries, o.leaf, o.subleaf).ok_or_else(|| {
            format!(
                "cpuid: missing leaf {name}: the guest's CPUID has no such leaf{}",
                match entries.iter().find(|e| e.function == o.leaf) {
                    Some(e) if e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0 => {
                        " (it has sub-leaves: write LEAF,SUBLEAF)"
                    }
                    Some(_) => " (it has no sub-leaves: write LEAF alone)",
                    None => "",
                }
            )
        })?;
        for (r, p) in o.regs.iter().enumerate() {
            let Some(p) = p else { continue };
            let (set, clear) = masks(p).map_err(|e| format!("cpuid: leaf {name}: {e}"))?;
            let v = reg_mut(&mut entries[i], r);
            *v = (*v & !clear) | set;
        }
    }
    for (leaf, subleaf) in MAX_LEAVES {
        let (Some(i), Some(d)) = (find(entries, leaf, subleaf), find(&default, leaf, subleaf))
        else {
            continue;
        };
        let limit = find(host, leaf, subleaf)
            .map_or(0, |h| host[h].eax)
            .max(default[d].eax);
        if entries[i].eax > limit {
            return Err(format!(
                "cpuid: leaf {} eax {:#x} raises the maximum leaf above the host's {limit:#x}",
                leaf_name(leaf, subleaf),
                entries[i].eax
            ));
        }
    }
    // Features the policy turned off take their dependants with them (Xen's
    // `sanitise_featureset`; only these, so the default stays KVM's).
    let word_value = |l: &[kvm_cpuid_entry2], word: u32| {
        let (_, leaf, subleaf, r) = FEATURE_WORDS.iter().find(|w| w.0 == word)?;
        find(l, *leaf, *subleaf).map(|i| reg(&l[i], *r))
    };
    for &(feature, _) in DEEP_DEPS {
        let (word, bit) = (feature / 32, 1u32 << (feature % 32));
        let (Some(before), Some(after)) = (word_value(&default, word), word_value(entries, word))
        else {
            continue;
        };
        if before & bit == 0 || after & bit != 0 {
            continue;
        }
        for dep in dependants(feature) {
            let Some((_, leaf, subleaf, r)) = FEATURE_WORDS.iter().find(|w| w.0 == dep / 32) else {
                continue;
            };
            if let Some(i) = find(entries, *leaf, *subleaf) {
                *reg_mut(&mut entries[i], *r) &= !(1u32 << (dep % 32));
            }
        }
    }
    for (_, leaf, subleaf, r) in FEATURE_WORDS {
        let Some(i) = find(entries, leaf, subleaf) else {
            continue;
        };
        let mut allowed = find(host, leaf, subleaf).map_or(0, |h| reg(&host[h], r))
            | find(&default, leaf, subleaf).map_or(0, |d| reg(&default[d], r));
        match (leaf, r) {
            (1, 2) if !cfg.nested_hvm => allowed &= !LEAF1_ECX_VMX,
            (0x8000_0001, 2) if !cfg.nested_hvm => allowed &= !EXT1_ECX_SVM,
            _ => {}
        }
        match (leaf, r) {
            (1, 3) if !cfg.apic => allowed &= !LEAF1_EDX_APIC,
            (1, 2) if !cfg.apic => allowed &= !LEAF1_ECX_X2APIC,
            _ => {}
        }
        let v = reg_mut(&mut entries[i], r);
        let dropped = *v & !allowed;
        if dropped != 0 {
            tracing::warn!(
                "cpuid: leaf {} {}: bits {dropped:#x} are not available to this guest; left clear",
                leaf_name(leaf, subleaf),
                ["eax", "ebx", "ecx", "edx"][r]
            );
            *v &= allowed;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: (u16, u16)) -> CpuidConfig {
        CpuidConfig {
            xen_version: v,
            viridian: false,
            apic: true,
            nested_hvm: false,
            xen_vapic: false,
            domid: 7,
            tsc_khz: 2_000_000,
            hypercall_msr: 0x4000_0000,
        }
    }

    fn leaf(l: &[kvm_cpuid_entry2], f: u32) -> Option<[u32; 4]> {
        l.iter()
            .find(|e| e.function == f)
            .map(|e| [e.eax, e.ebx, e.ecx, e.edx])
    }

    #[test]
    fn xen_4_4_has_no_hvm_leaf() {
        let l = xen_leaves(&cfg((4, 4)), 0);
        assert_eq!(leaf(&l, 0x4000_0000).map(|r| r[0]), Some(0x4000_0003));
        assert_eq!(leaf(&l, 0x4000_0001).map(|r| r[0]), Some(0x0004_0004));
        assert_eq!(leaf(&l, 0x4000_0002), Some([1, 0x4000_0000, 0, 0]));
        assert!(leaf(&l, 0x4000_0004).is_none());
    }

    #[test]
    fn xen_4_5_has_hvm_leaf_without_vcpu_id() {
        let l = xen_leaves(&cfg((4, 5)), 3);
        assert_eq!(leaf(&l, 0x4000_0000).map(|r| r[0]), Some(0x4000_0004));
        let hvm = leaf(&l, 0x4000_0004).expect("hvm leaf");
        assert_eq!(hvm[0] & XEN_HVM_CPUID_VCPU_ID_PRESENT, 0);
        assert_eq!(hvm[1], 0);
    }

    #[test]
    fn xen_4_6_reports_vcpu_id() {
        let hvm = leaf(&xen_leaves(&cfg((4, 6)), 3), 0x4000_0004).expect("hvm leaf");
        assert_ne!(hvm[0] & XEN_HVM_CPUID_VCPU_ID_PRESENT, 0);
        assert_eq!(hvm[1], 3);
        assert_eq!(
            hvm[0] & (XEN_HVM_CPUID_UPCALL_VECTOR | XEN_HVM_CPUID_DOMID_PRESENT),
            0
        );
    }

    #[test]
    fn xen_4_17_reports_domid_and_upcall_vector() {
        let mut c = cfg((4, 17));
        c.xen_vapic = true;
        let l = xen_leaves(&c, 1);
        let [sig_max, b, cc, d] = leaf(&l, 0x4000_0000).expect("sig");
        assert_eq!(sig_max, 0x4000_0004);
        let sig: Vec<u8> = [b, cc, d].iter().flat_map(|r| r.to_le_bytes()).collect();
        assert_eq!(&sig, b"XenVMMXenVMM");
        let hvm = leaf(&l, 0x4000_0004).expect("hvm leaf");
        for bit in [
            XEN_HVM_CPUID_UPCALL_VECTOR,
            XEN_HVM_CPUID_DOMID_PRESENT,
            XEN_HVM_CPUID_VCPU_ID_PRESENT,
            XEN_HVM_CPUID_X2APIC_VIRT,
            XEN_HVM_CPUID_APIC_ACCESS_VIRT,
        ] {
            assert_ne!(hvm[0] & bit, 0, "bit {bit:#x}");
        }
        assert_eq!((hvm[1], hvm[2]), (1, 7));
    }

    #[test]
    fn viridian_moves_xen_leaves_behind_hyperv() {
        let mut c = cfg((4, 17));
        c.viridian = true;
        let host = vec![
            entry(0x4000_0000, 0, [0x4000_0001, 1, 2, 3]),
            entry(1, 0, [0; 4]),
        ];
        let l = build(&host, &c, 0, 0);
        let hv = leaf(&l, 0x4000_0000).expect("hyperv");
        assert_eq!([hv[1], hv[2], hv[3]], HYPERV_SIGNATURE);
        assert_eq!(
            l.iter().filter(|e| e.function == 0x4000_0000).count(),
            1,
            "KVM's leaf removed"
        );
        let xen = leaf(&l, 0x4000_0100).expect("xen");
        assert_eq!(xen[0], 0x4000_0104);
        assert_eq!([xen[1], xen[2], xen[3]], XEN_SIGNATURE);
    }

    #[test]
    fn apic_and_nested_flags_follow_config() {
        let host = vec![
            entry(
                1,
                0,
                [
                    0,
                    0x0001_0000,
                    LEAF1_ECX_VMX | LEAF1_ECX_X2APIC,
                    LEAF1_EDX_APIC,
                ],
            ),
            entry(0x8000_0001, 0, [0, 0, EXT1_ECX_SVM, 0]),
        ];
        let mut c = cfg((4, 17));
        let l = build(&host, &c, 1, 2);
        let l1 = leaf(&l, 1).expect("leaf 1");
        assert_ne!(l1[3] & LEAF1_EDX_APIC, 0);
        assert_eq!(l1[2] & LEAF1_ECX_VMX, 0, "no nestedhvm: VMX hidden");
        assert_ne!(l1[2] & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(l1[1] >> 24, 2, "initial APIC id");
        assert_eq!(leaf(&l, 0x8000_0001).map(|r| r[2] & EXT1_ECX_SVM), Some(0));
        c.apic = false;
        c.nested_hvm = true;
        let l1 = leaf(&build(&host, &c, 0, 0), 1).expect("leaf 1");
        assert_eq!(l1[3] & LEAF1_EDX_APIC, 0);
        assert_eq!(l1[2] & LEAF1_ECX_X2APIC, 0);
        assert_ne!(l1[2] & LEAF1_ECX_VMX, 0);
    }

    fn sub(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        let mut e = entry(function, index, regs);
        e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        e
    }

    /// `bits` (bit number → character) over all-`x`, bit 31 first.
    fn pol(bits: &[(u32, char)]) -> Option<String> {
        let mut p = vec![b'x'; 32];
        for &(bit, c) in bits {
            p[31 - bit as usize] = c as u8;
        }
        Some(String::from_utf8(p).expect("ascii"))
    }

    fn ov(leaf: u32, subleaf: Option<u32>, regs: [Option<String>; 4]) -> CpuidOverride {
        CpuidOverride {
            leaf,
            subleaf,
            regs,
        }
    }

    /// A host with leaves 0 (max 7), 1, 7.0, 7.1, 0x80000000/1.
    fn policy_host() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(0, 0, [7, 0, 0, 0]),
            entry(1, 0, [0x306c3, 0x0001_0800, 0x7ffa_fbbf, 0xbfeb_fbff]),
            sub(7, 0, [1, 0x0000_27ab, 0, 0]),
            sub(7, 1, [0, 0, 0, 0]),
            entry(0x8000_0000, 0, [0x8000_0001, 0, 0, 0]),
            entry(0x8000_0001, 0, [0, 0, 0x21, 0x2c10_0800]),
        ]
    }

    fn applied(policy: &[CpuidOverride]) -> Result<Vec<kvm_cpuid_entry2>, String> {
        let host = policy_host();
        let c = cfg((4, 17));
        let mut l = build(&host, &c, 0, 0);
        apply_policy(&mut l, &host, &c, policy)?;
        Ok(l)
    }

    fn sub_regs(l: &[kvm_cpuid_entry2], f: u32, i: u32) -> [u32; 4] {
        let e = &l[find(l, f, Some(i)).expect("sub-leaf")];
        [e.eax, e.ebx, e.ecx, e.edx]
    }

    #[test]
    fn each_policy_character() {
        let default = applied(&[]).expect("no policy");
        let d = leaf(&default, 1).expect("leaf 1");
        // ebx: '1' sets bit 8 (clear by default), '0' clears bit 11 (set),
        // 'x', 'k' and 's' keep bits 16, 0 and 11's neighbours.
        let p = [ov(
            1,
            None,
            [
                None,
                pol(&[(8, '1'), (11, '0'), (16, 'k'), (12, 's'), (0, '1')]),
                None,
                None,
            ],
        )];
        let l = applied(&p).expect("applies");
        let r = leaf(&l, 1).expect("leaf 1");
        assert_eq!(r[1], (d[1] | 1 << 8 | 1) & !(1 << 11));
        assert_eq!(r[1] & (1 << 16), d[1] & (1 << 16), "k keeps");
        assert_eq!([r[0], r[2], r[3]], [d[0], d[2], d[3]], "None keeps");
        let all_x = [ov(1, None, [pol(&[]), pol(&[]), pol(&[]), pol(&[])])];
        assert_eq!(applied(&all_x).expect("applies"), default);
    }

    #[test]
    fn subleaves_are_matched_exactly() {
        // bmi1 (7.0 ebx bit 3) off, as `cpuid="host,bmi1=0"` spells it.
        let p = [ov(7, Some(0), [None, pol(&[(3, '0')]), None, None])];
        let l = applied(&p).expect("applies");
        assert_eq!(sub_regs(&l, 7, 0)[1], 0x27ab & !(1 << 3));
        assert_eq!(sub_regs(&l, 7, 1), [0; 4], "sub-leaf 1 untouched");
        // Leaf 7 has sub-leaves, leaf 1 has none: Xen's "Missing leaf".
        for (leaf, subleaf) in [(7, None), (1, Some(0)), (7, Some(5)), (0x14, None)] {
            let p = [ov(leaf, subleaf, [pol(&[]), None, None, None])];
            let e = applied(&p).expect_err("refused");
            assert!(e.contains("missing leaf"), "{e}");
        }
        let p = [ov(7, None, [pol(&[]), None, None, None])];
        let e = applied(&p).expect_err("refused");
        assert!(e.contains("write LEAF,SUBLEAF"), "{e}");
    }

    #[test]
    fn hypervisor_leaves_are_refused() {
        for leaf in [0x4000_0000, 0x4000_0003, 0x4000_0100] {
            let p = [ov(leaf, None, [pol(&[(0, '1')]), None, None, None])];
            let e = applied(&p).expect_err("refused");
            assert!(e.contains("hypervisor leaf"), "{e}");
        }
    }

    #[test]
    fn bad_policy_strings_are_refused() {
        for bad in ["xxxx", &format!("{}y", "x".repeat(31))] {
            let p = [ov(1, None, [Some(bad.to_string()), None, None, None])];
            let e = applied(&p).expect_err("refused");
            assert!(e.contains("leaf 0x1"), "{e}");
        }
    }

    #[test]
    fn features_the_host_lacks_stay_clear() {
        let c = cfg((4, 17));
        // 7.0 ebx bit 4 (hle) is not in this host's 0x27ab; bit 0 is.
        let p = [
            ov(7, Some(0), [None, pol(&[(4, '1'), (0, '1')]), None, None]),
            // VMX without nestedhvm, and the hypervisor bit (ours) kept.
            ov(1, None, [None, None, pol(&[(5, '1'), (31, '1')]), None]),
        ];
        let mut host = policy_host();
        host[1].ecx |= LEAF1_ECX_VMX;
        let mut l = build(&host, &c, 0, 0);
        apply_policy(&mut l, &host, &c, &p).expect("applies");
        assert_eq!(sub_regs(&l, 7, 0)[1] & (1 << 4 | 1), 1);
        let r = leaf(&l, 1).expect("leaf 1");
        assert_eq!(r[2] & LEAF1_ECX_VMX, 0);
        assert_ne!(r[2] & LEAF1_ECX_HYPERVISOR, 0);
        // With nestedhvm the host's VMX can be forced back on.
        let mut n = c;
        n.nested_hvm = true;
        let mut l = build(&host, &n, 0, 0);
        l.iter_mut()
            .filter(|e| e.function == 1)
            .for_each(|e| e.ecx &= !LEAF1_ECX_VMX);
        apply_policy(&mut l, &host, &n, &p[1..]).expect("applies");
        assert_ne!(leaf(&l, 1).expect("leaf 1")[2] & LEAF1_ECX_VMX, 0);
    }

    #[test]
    fn clearing_a_feature_clears_its_dependants() {
        let c = cfg((4, 17));
        let mut host = policy_host();
        // 1 ecx: xsave (26), avx (28), fma (12), f16c (29); 7.0 ebx: avx2
        // (5), avx512f (16), avx512bw (30), bmi1 (3, independent).
        let avx = 1 << 26 | 1 << 28 | 1 << 12 | 1 << 29;
        host[1].ecx = avx;
        host[2].ebx = 1 << 5 | 1 << 16 | 1 << 30 | 1 << 3;
        let p = [ov(1, None, [None, None, pol(&[(28, '0')]), None])];
        let mut l = build(&host, &c, 0, 0);
        apply_policy(&mut l, &host, &c, &p).expect("applies");
        let r = leaf(&l, 1).expect("leaf 1");
        assert_eq!(r[2] & avx, 1 << 26, "only xsave is left");
        assert_eq!(sub_regs(&l, 7, 0)[1], 1 << 3, "avx2 and avx512 follow avx");
        // Features the default lacked trigger nothing.
        let mut l = build(&host, &c, 0, 0);
        let p = [ov(1, None, [None, None, pol(&[(0, '0')]), None])];
        apply_policy(&mut l, &host, &c, &p).expect("applies");
        assert_eq!(leaf(&l, 1).expect("leaf 1")[2] & avx, avx);
        // xsave: 8 direct, avx 5, avx2 4, avx512f 12, avx512bw 5.
        assert_eq!(dependants(32 + 26).len(), 34, "xsave's closure");
    }

    #[test]
    fn max_leaves_may_shrink_but_not_grow() {
        let shrink = [ov(0, None, [Some(format!("{:032b}", 1)), None, None, None])];
        let l = applied(&shrink).expect("applies");
        assert_eq!(leaf(&l, 0).expect("leaf 0")[0], 1);
        let grow = [ov(
            0,
            None,
            [Some(format!("{:032b}", 0x20)), None, None, None],
        )];
        let e = applied(&grow).expect_err("refused");
        assert!(e.contains("maximum leaf"), "{e}");
    }
}
