//! Trap path 2 (DESIGN.md): KVM's in-kernel Xen support
//! (`KVM_CAP_XEN_HVM`). kvm-ioctls has no wrappers, so the six ioctls are
//! declared here. With `KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL` the kernel writes
//! the hypercall page itself when the guest writes the MSR, catches
//! `vmcall`/`vmmcall` directly, and reports each hypercall as
//! `KVM_EXIT_XEN`; see `exit::Exit::XenHypercall`.

use std::os::fd::AsRawFd;

use kvm_bindings::{
    kvm_irq_routing_xen_evtchn, kvm_xen_hvm_attr, kvm_xen_hvm_config, kvm_xen_vcpu_attr, KVMIO,
    KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
};
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref};
use vmm_sys_util::{ioctl_iow_nr, ioctl_iowr_nr};

ioctl_iow_nr!(KVM_XEN_HVM_CONFIG, KVMIO, 0x7a, kvm_xen_hvm_config);
ioctl_iowr_nr!(KVM_XEN_HVM_GET_ATTR, KVMIO, 0xc8, kvm_xen_hvm_attr);
ioctl_iow_nr!(KVM_XEN_HVM_SET_ATTR, KVMIO, 0xc9, kvm_xen_hvm_attr);
ioctl_iowr_nr!(KVM_XEN_VCPU_GET_ATTR, KVMIO, 0xca, kvm_xen_vcpu_attr);
ioctl_iow_nr!(KVM_XEN_VCPU_SET_ATTR, KVMIO, 0xcb, kvm_xen_vcpu_attr);
ioctl_iow_nr!(
    KVM_XEN_HVM_EVTCHN_SEND,
    KVMIO,
    0xd0,
    kvm_irq_routing_xen_evtchn
);

/// `KVM_CHECK_EXTENSION(KVM_CAP_XEN_HVM)` bits (`KVM_XEN_HVM_CONFIG_*`).
pub const KVM_XEN_HVM_CONFIG_EVTCHN_SEND: u32 = 1 << 5;

fn check(ret: i32) -> errno::Result<()> {
    if ret < 0 {
        Err(errno::Error::last())
    } else {
        Ok(())
    }
}

/// The `KVM_XEN_HVM_CONFIG` that makes KVM intercept hypercalls and build
/// the hypercall page on a write to `msr`.
pub fn intercept_config(msr: u32) -> kvm_xen_hvm_config {
    kvm_xen_hvm_config {
        flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL,
        msr,
        ..Default::default()
    }
}

/// `KVM_XEN_HVM_CONFIG` on the VM.
pub fn hvm_config(vm: &impl AsRawFd, cfg: &kvm_xen_hvm_config) -> errno::Result<()> {
    // SAFETY: the ioctl reads a `kvm_xen_hvm_config` we own, of the size the
    // request number encodes.
    check(unsafe { ioctl_with_ref(&Fd(vm.as_raw_fd()), KVM_XEN_HVM_CONFIG(), cfg) })
}

/// `KVM_XEN_HVM_GET_ATTR` on the VM (`attr.type_` selects what).
pub fn hvm_get_attr(vm: &impl AsRawFd, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()> {
    // SAFETY: the kernel fills the `kvm_xen_hvm_attr` we own.
    check(unsafe { ioctl_with_mut_ref(&Fd(vm.as_raw_fd()), KVM_XEN_HVM_GET_ATTR(), attr) })
}

/// `KVM_XEN_HVM_SET_ATTR` on the VM.
pub fn hvm_set_attr(vm: &impl AsRawFd, attr: &kvm_xen_hvm_attr) -> errno::Result<()> {
    // SAFETY: the ioctl reads the `kvm_xen_hvm_attr` we own.
    check(unsafe { ioctl_with_ref(&Fd(vm.as_raw_fd()), KVM_XEN_HVM_SET_ATTR(), attr) })
}

/// `KVM_XEN_VCPU_GET_ATTR` on a vCPU.
pub fn vcpu_get_attr(vcpu: &impl AsRawFd, attr: &mut kvm_xen_vcpu_attr) -> errno::Result<()> {
    // SAFETY: the kernel fills the `kvm_xen_vcpu_attr` we own.
    check(unsafe { ioctl_with_mut_ref(&Fd(vcpu.as_raw_fd()), KVM_XEN_VCPU_GET_ATTR(), attr) })
}

/// `KVM_XEN_VCPU_SET_ATTR` on a vCPU.
pub fn vcpu_set_attr(vcpu: &impl AsRawFd, attr: &kvm_xen_vcpu_attr) -> errno::Result<()> {
    // SAFETY: the ioctl reads the `kvm_xen_vcpu_attr` we own.
    check(unsafe { ioctl_with_ref(&Fd(vcpu.as_raw_fd()), KVM_XEN_VCPU_SET_ATTR(), attr) })
}

/// `KVM_XEN_HVM_EVTCHN_SEND`: raise `port` in the kernel's event-channel
/// emulation (requires [`KVM_XEN_HVM_CONFIG_EVTCHN_SEND`]).
pub fn evtchn_send(vm: &impl AsRawFd, ev: &kvm_irq_routing_xen_evtchn) -> errno::Result<()> {
    // SAFETY: the ioctl reads the `kvm_irq_routing_xen_evtchn` we own.
    check(unsafe { ioctl_with_ref(&Fd(vm.as_raw_fd()), KVM_XEN_HVM_EVTCHN_SEND(), ev) })
}

/// A borrowed raw fd, so the helpers take any `AsRawFd`.
struct Fd(i32);
impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // Values from linux/kvm.h on x86-64 (_IOW/_IOWR with the struct sizes).
        assert_eq!(KVM_XEN_HVM_CONFIG(), 0x4038_ae7a);
        assert_eq!(KVM_XEN_HVM_GET_ATTR(), 0xc048_aec8);
        assert_eq!(KVM_XEN_HVM_SET_ATTR(), 0x4048_aec9);
        assert_eq!(KVM_XEN_VCPU_GET_ATTR(), 0xc048_aeca);
        assert_eq!(KVM_XEN_VCPU_SET_ATTR(), 0x4048_aecb);
        assert_eq!(KVM_XEN_HVM_EVTCHN_SEND(), 0x400c_aed0);
    }

    #[test]
    fn intercept_config_names_the_msr() {
        let c = intercept_config(0x4000_0000);
        assert_eq!(c.flags, KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL);
        assert_eq!(c.msr, 0x4000_0000);
        assert_eq!(c.blob_size_32, 0);
    }
}
