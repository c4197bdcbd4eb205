//! One Xen domain on KVM: guest memory, vCPU threads, CPUID, the PVH loader,
//! platform devices and hypercall trapping. Wires `xen-emu`, `xenstore` and
//! `xen-backends` to KVM.
