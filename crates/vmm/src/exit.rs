//! Decoding `kvm_run` after `KVM_RUN` returns, from the raw bytes of the
//! vCPU's run area (so recorded exits unit-test without `/dev/kvm`), and
//! writing the responses KVM reads back on the next entry.
//!
//! Offsets are those of `struct kvm_run` in `linux/kvm.h` (the union starts
//! at byte 32); a test checks them against kvm-bindings.

use kvm_bindings::{
    KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO,
    KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT, KVM_EXIT_X86_RDMSR,
    KVM_EXIT_X86_WRMSR, KVM_EXIT_XEN,
};

/// `KVM_EXIT_XEN_HCALL`: `kvm_xen_exit.type` for a hypercall.
pub const KVM_EXIT_XEN_HCALL: u32 = 1;

const EXIT_REASON: usize = 8;
const U: usize = 32;

/// One KVM exit, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Port I/O. For `out`, `data` holds what was written (`size * count`
    /// bytes); for `in` the VMM fills the area before the next entry.
    Io {
        port: u16,
        out: bool,
        size: u8,
        count: u32,
        data: Vec<u8>,
        data_offset: u64,
    },
    Mmio {
        addr: u64,
        write: bool,
        len: u32,
        data: [u8; 8],
    },
    /// A filtered `rdmsr` (`KVM_EXIT_X86_RDMSR`).
    RdMsr {
        index: u32,
    },
    /// A filtered `wrmsr` (`KVM_EXIT_X86_WRMSR`).
    WrMsr {
        index: u32,
        data: u64,
    },
    /// A Xen hypercall caught by KVM (`KVM_EXIT_XEN`, path 2).
    XenHypercall {
        long_mode: bool,
        cpl: u32,
        nr: u64,
        params: [u64; 6],
    },
    /// A `KVM_EXIT_XEN` of a type this VMM does not know.
    XenOther {
        kind: u32,
    },
    Hlt,
    /// Triple fault.
    Shutdown,
    InternalError {
        suberror: u32,
        data: Vec<u64>,
    },
    FailEntry {
        reason: u64,
    },
    SystemEvent {
        kind: u32,
    },
    /// A signal interrupted `KVM_RUN` (kick, immediate exit).
    Intr,
    Other(u32),
}

fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([u8_at(b, off), u8_at(b, off + 1)])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from(u16_at(b, off)) | (u32::from(u16_at(b, off + 2)) << 16)
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

/// Decodes the exit in `run` (the vCPU's whole mmap'ed run area).
pub fn decode(run: &[u8]) -> Exit {
    let reason = u32_at(run, EXIT_REASON);
    match reason {
        KVM_EXIT_IO => {
            let size = u8_at(run, U + 1);
            let count = u32_at(run, U + 4);
            let data_offset = u64_at(run, U + 8);
            let len = usize::from(size) * count as usize;
            let out = u8_at(run, U) == 1;
            let data = if out {
                usize::try_from(data_offset)
                    .ok()
                    .and_then(|o| run.get(o..o.checked_add(len)?))
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            Exit::Io {
                port: u16_at(run, U + 2),
                out,
                size,
                count,
                data,
                data_offset,
            }
        }
        KVM_EXIT_MMIO => {
            let mut data = [0u8; 8];
            for (i, d) in data.iter_mut().enumerate() {
                *d = u8_at(run, U + 8 + i);
            }
            Exit::Mmio {
                addr: u64_at(run, U),
                write: u8_at(run, U + 20) != 0,
                len: u32_at(run, U + 16),
                data,
            }
        }
        KVM_EXIT_X86_RDMSR => Exit::RdMsr {
            index: u32_at(run, U + 12),
        },
        KVM_EXIT_X86_WRMSR => Exit::WrMsr {
            index: u32_at(run, U + 12),
            data: u64_at(run, U + 16),
        },
        KVM_EXIT_XEN => {
            let kind = u32_at(run, U);
            if kind != KVM_EXIT_XEN_HCALL {
                return Exit::XenOther { kind };
            }
            let mut params = [0u64; 6];
            for (i, p) in params.iter_mut().enumerate() {
                *p = u64_at(run, U + 32 + 8 * i);
            }
            Exit::XenHypercall {
                long_mode: u32_at(run, U + 8) != 0,
                cpl: u32_at(run, U + 12),
                nr: u64_at(run, U + 16),
                params,
            }
        }
        KVM_EXIT_HLT => Exit::Hlt,
        KVM_EXIT_SHUTDOWN => Exit::Shutdown,
        KVM_EXIT_INTERNAL_ERROR => {
            let n = (u32_at(run, U + 4) as usize).min(16);
            Exit::InternalError {
                suberror: u32_at(run, U),
                data: (0..n).map(|i| u64_at(run, U + 8 + 8 * i)).collect(),
            }
        }
        KVM_EXIT_FAIL_ENTRY => Exit::FailEntry {
            reason: u64_at(run, U),
        },
        KVM_EXIT_SYSTEM_EVENT => Exit::SystemEvent {
            kind: u32_at(run, U),
        },
        KVM_EXIT_INTR => Exit::Intr,
        other => Exit::Other(other),
    }
}

/// Writes a Xen hypercall's result for KVM to put in RAX (`kvm_xen_exit.u.hcall.result`).
pub fn set_xen_result(run: &mut [u8], result: i64) {
    if let Some(s) = run.get_mut(U + 24..U + 32) {
        s.copy_from_slice(&result.to_le_bytes());
    }
}

/// Completes a filtered MSR access: `error` true makes the guest take #GP;
/// for reads, `data` is the value returned.
pub fn set_msr_result(run: &mut [u8], error: bool, data: u64) {
    if let Some(e) = run.get_mut(U) {
        *e = u8::from(error);
    }
    if let Some(s) = run.get_mut(U + 16..U + 24) {
        s.copy_from_slice(&data.to_le_bytes());
    }
}

/// Fills the data of an `in` exit.
pub fn set_io_in_data(run: &mut [u8], data_offset: u64, value: &[u8]) {
    if let Some(s) = usize::try_from(data_offset)
        .ok()
        .and_then(|o| run.get_mut(o..o.checked_add(value.len())?))
    {
        s.copy_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_run;

    /// A run area as KVM maps it: the struct, then the PIO data page.
    fn area() -> Vec<u8> {
        vec![0u8; 8192]
    }

    fn put(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }

    #[test]
    fn offsets_match_kvm_bindings() {
        assert_eq!(std::mem::offset_of!(kvm_run, exit_reason), EXIT_REASON);
        assert_eq!(std::mem::offset_of!(kvm_run, __bindgen_anon_1), U);
        assert_eq!(
            std::mem::offset_of!(
                kvm_bindings::kvm_xen_exit__bindgen_ty_1__bindgen_ty_1,
                result
            ),
            16
        );
        assert_eq!(std::mem::offset_of!(kvm_bindings::kvm_xen_exit, u), 8);
        assert_eq!(
            std::mem::offset_of!(kvm_bindings::kvm_run__bindgen_ty_1__bindgen_ty_23, index),
            12
        );
    }

    /// Recorded from a 64-bit Linux guest calling HYPERVISOR_xen_version(XENVER_version, NULL)
    /// through KVM's intercept (layout per xen_vmcall_test.c).
    #[test]
    fn xen_hypercall_exit_decodes_and_takes_a_result() {
        let mut r = area();
        put(&mut r, 8, &KVM_EXIT_XEN.to_le_bytes());
        put(&mut r, 32, &KVM_EXIT_XEN_HCALL.to_le_bytes());
        put(&mut r, 40, &1u32.to_le_bytes()); // longmode
        put(&mut r, 44, &0u32.to_le_bytes()); // cpl
        put(&mut r, 48, &17u64.to_le_bytes()); // __HYPERVISOR_xen_version
        for i in 0..6u64 {
            put(&mut r, 64 + 8 * i as usize, &(0x100 + i).to_le_bytes());
        }
        assert_eq!(
            decode(&r),
            Exit::XenHypercall {
                long_mode: true,
                cpl: 0,
                nr: 17,
                params: [0x100, 0x101, 0x102, 0x103, 0x104, 0x105]
            }
        );
        set_xen_result(&mut r, -38);
        assert_eq!(i64::from_le_bytes(r[56..64].try_into().expect("8")), -38);
        put(&mut r, 32, &2u32.to_le_bytes());
        assert_eq!(decode(&r), Exit::XenOther { kind: 2 });
    }

    #[test]
    fn hypercall_page_out_exit_decodes_port_and_number() {
        let mut r = area();
        put(&mut r, 8, &KVM_EXIT_IO.to_le_bytes());
        r[32] = 1; // out
        r[33] = 4;
        put(&mut r, 34, &0x5fu16.to_le_bytes());
        put(&mut r, 36, &1u32.to_le_bytes());
        put(&mut r, 40, &4096u64.to_le_bytes());
        put(&mut r, 4096, &29u32.to_le_bytes()); // __HYPERVISOR_sched_op
        assert_eq!(
            decode(&r),
            Exit::Io {
                port: 0x5f,
                out: true,
                size: 4,
                count: 1,
                data: 29u32.to_le_bytes().to_vec(),
                data_offset: 4096
            }
        );
    }

    #[test]
    fn msr_exits_and_responses() {
        let mut r = area();
        put(&mut r, 8, &KVM_EXIT_X86_WRMSR.to_le_bytes());
        put(&mut r, 40, &4u32.to_le_bytes()); // reason: filter
        put(&mut r, 44, &0x4000_0000u32.to_le_bytes());
        put(&mut r, 48, &0x12_3000u64.to_le_bytes());
        assert_eq!(
            decode(&r),
            Exit::WrMsr {
                index: 0x4000_0000,
                data: 0x12_3000
            }
        );
        set_msr_result(&mut r, true, 0);
        assert_eq!(r[32], 1);
    }

    #[test]
    fn failures_decode_with_their_details() {
        let mut r = area();
        put(&mut r, 8, &KVM_EXIT_INTERNAL_ERROR.to_le_bytes());
        put(&mut r, 32, &1u32.to_le_bytes());
        put(&mut r, 36, &2u32.to_le_bytes());
        put(&mut r, 40, &7u64.to_le_bytes());
        put(&mut r, 48, &9u64.to_le_bytes());
        assert_eq!(
            decode(&r),
            Exit::InternalError {
                suberror: 1,
                data: vec![7, 9]
            }
        );
        put(&mut r, 36, &1000u32.to_le_bytes());
        assert!(matches!(decode(&r), Exit::InternalError { data, .. } if data.len() == 16));
        put(&mut r, 8, &KVM_EXIT_SHUTDOWN.to_le_bytes());
        assert_eq!(decode(&r), Exit::Shutdown);
        put(&mut r, 8, &999u32.to_le_bytes());
        assert_eq!(decode(&r), Exit::Other(999));
        // A corrupt data_offset never panics.
        put(&mut r, 8, &KVM_EXIT_IO.to_le_bytes());
        r[32] = 1;
        put(&mut r, 40, &u64::MAX.to_le_bytes());
        assert!(matches!(decode(&r), Exit::Io { data, .. } if data.is_empty()));
        assert_eq!(decode(&[]), Exit::Other(0));
    }
}
