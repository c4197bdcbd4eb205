//! CPUID as a Xen HVM/PVH guest sees it: the host's features (from
//! `KVM_GET_SUPPORTED_CPUID`), adjusted for `apic`/`nestedhvm`, with KVM's
//! own paravirt leaves removed and Xen's leaves (`arch-x86/cpuid.h`) in their
//! place — at 0x40000000, or at 0x40000100 behind Hyper-V's leaves with
//! `viridian`, exactly where Xen's `cpuid_hypervisor_leaves` puts them.

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
}
