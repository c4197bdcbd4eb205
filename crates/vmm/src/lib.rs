//! One Xen domain on KVM: guest memory, vCPU threads, CPUID, the PVH loader,
//! platform devices and hypercall trapping. Wires `xen-emu`, `xenstore` and
//! `xen-backends` to KVM.
//!
//! The public surface is small: fill a [`VmConfig`], hand over a
//! [`ConsoleIo`], call [`run_domain`]; it returns when the guest shuts down.

use std::io::{Read, Write};
use std::path::PathBuf;

pub mod acpi;
pub mod affinity;
pub mod control;
pub mod cpuid;
pub mod e820;
pub mod elf;
pub mod error;
pub mod exit;
pub mod hypercall_page;
pub mod kvm_xen;
pub mod layout;
pub mod memory;
pub mod pagewalk;
pub mod rings;
pub mod start_info;
pub mod vcpu;
pub mod xenstore_nodes;

mod backends;
mod callback_gsi;
mod debug_hook;
mod devices;
mod platform;
mod run;
mod smp;

pub use control::{CoreDump, DomainControl, Ended, MemoryRange, VcpuRegisters};
pub use devices::{
    vdev_to_devid, ConsoleHost, ConsoleSpec, DeviceClass, DiskImageFormat, DiskSpec, HotplugError,
    NetHotplug, NetSpec, PvDevice, UnplugMode, Unplugged, VifSpec, REMOVE_TIMEOUT,
};
pub use error::VmmError;
pub use run::{run_domain, run_domain_controlled, run_domain_with_store};

/// How the guest's timers behave when it is descheduled (`timer_mode`,
/// xl.cfg(5)); handed to xen-emu for `HVM_PARAM_TIMER_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimerMode {
    DelayForMissedTicks,
    #[default]
    NoDelayForMissedTicks,
    NoMissedTicksPending,
    OneMissedTickPending,
}

/// A boot module (`ramdisk`, or for `pvshim` the PV kernel) placed in guest
/// memory and listed in `hvm_start_info.modlist_paddr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    pub path: PathBuf,
    /// The module's own command line (empty: none).
    pub cmdline: String,
}

/// Everything the VMM needs to build and run one PVH domain. The binary maps
/// xl.cfg onto this; [`VmConfig::new`] gives libxl's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Domain name (`name`), written to XenStore.
    pub name: String,
    /// Domain id the guest sees (`DOMID_PRESENT` CPUID, XenStore paths).
    pub domid: u32,
    /// The domain's UUID as 16 bytes (`/vm/<uuid>`).
    pub uuid: [u8; 16],
    /// RAM at boot (`memory`), MiB.
    pub memory_mib: u64,
    /// Maximum RAM (`maxmem`), MiB; at least `memory_mib`.
    pub max_memory_mib: u64,
    /// vCPUs online at boot (`vcpus`).
    pub vcpus: u32,
    /// vCPUs the domain may ever have (`maxvcpus`).
    pub max_vcpus: u32,
    /// The PVH kernel (ELF with `XEN_ELFNOTE_PHYS32_ENTRY`). For `pvshim`
    /// this is the shim and the PV kernel is `modules[0]`.
    pub kernel: PathBuf,
    /// Kernel command line (`cmdline`, or `root`/`extra` joined as libxl does).
    pub cmdline: String,
    /// Boot modules in order (ramdisk; for pvshim the PV kernel first).
    pub modules: Vec<ModuleSpec>,
    /// The Xen version the guest sees, `(major, minor)`; default (4, 17).
    pub xen_version: (u16, u16),
    /// Hyper-V enlightenments: Xen's CPUID leaves move to 0x40000100.
    pub viridian: bool,
    /// Local APIC present (`apic`); false removes it from CPUID and MADT.
    pub apic: bool,
    /// Nested virtualisation (`nestedhvm`): VMX/SVM in CPUID.
    pub nested_hvm: bool,
    /// Advertise x2APIC/APIC-access virtualisation in the HVM leaf (`xen_vapic`).
    pub xen_vapic: bool,
    /// xl.cfg's `cpuid=` policy, applied over the default CPUID per vCPU
    /// ([`cpuid::apply_policy`]); empty: the default as is.
    pub cpuid_policy: Vec<cpuid::CpuidOverride>,
    pub timer_mode: TimerMode,
    /// `max_grant_frames` (libxl default 64).
    pub max_grant_frames: u32,
    /// `max_event_channels` (libxl default 1023).
    pub max_event_channels: u32,
    /// `xen_evtchn_max_pirq` (default 256).
    pub max_pirq: u32,
    /// Xen's `XEN_X86_EMU_USE_PIRQ` emulation flag (`xen_arch_domainconfig`),
    /// which libxl sets for HVM guests: PIRQs (`physdev_op` map/unmap/eoi,
    /// `EVTCHNOP_bind_pirq`, `XENFEAT_hvm_pirqs`). Xen never gives it to a
    /// PVH guest; since xkvm boots only PVH kernels, setting it is a
    /// test-only divergence from Xen that lets a PVH test kernel exercise
    /// the HVM PIRQ path. Never set from xl.cfg. Default off.
    pub emu_use_pirq: bool,
    /// PV block devices (`disk=`), served by `xen-backends`.
    pub disks: Vec<DiskSpec>,
    /// Extra PV consoles and `channel=` entries (device ids from 1).
    pub consoles: Vec<ConsoleSpec>,
    /// PV network interfaces (`vif=`), each on a host TAP device.
    pub vifs: Vec<VifSpec>,
    /// Benchmarks and tests only, never set from xl.cfg: enables an
    /// xkvm-private hypercall (number 127) that signals an MSI, reads back
    /// host-side times, and offers test triggers/probes (device MSI/GSI,
    /// resident guest pages; see `crates/vmm/src/debug_hook.rs` and
    /// `docs/core-services.md`). Off, a guest calling 127 gets Xen's
    /// `-ENOSYS`.
    pub debug_hypercall: bool,
    /// Hard affinity per vCPU (xl.cfg `cpus=`): host CPU numbers, indexed
    /// by vCPU id; a missing or empty entry leaves that vCPU unpinned. Each
    /// vCPU thread restricts itself to its set before it first runs
    /// ([`affinity`]).
    pub vcpu_affinity: Vec<Vec<u32>>,
    /// Seconds added to the wallclock the guest reads from shared_info
    /// (libxl's `rtc_timeoffset` plus, with `localtime`, the host's UTC
    /// offset: `XEN_DOMCTL_settimeoffset`). 0: UTC.
    pub time_offset_seconds: i32,
}

impl VmConfig {
    /// A config with libxl's defaults for everything but the kernel.
    pub fn new(name: impl Into<String>, kernel: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            domid: 1,
            uuid: [0; 16],
            memory_mib: 128,
            max_memory_mib: 128,
            vcpus: 1,
            max_vcpus: 1,
            kernel: kernel.into(),
            cmdline: String::new(),
            modules: Vec::new(),
            xen_version: (4, 17),
            viridian: false,
            apic: true,
            nested_hvm: false,
            xen_vapic: false,
            cpuid_policy: Vec::new(),
            timer_mode: TimerMode::default(),
            max_grant_frames: 64,
            max_event_channels: 1023,
            max_pirq: 256,
            emu_use_pirq: false,
            disks: Vec::new(),
            consoles: Vec::new(),
            vifs: Vec::new(),
            debug_hypercall: false,
            vcpu_affinity: Vec::new(),
            time_offset_seconds: 0,
        }
    }
}

/// Where the guest's primary PV console goes and comes from.
pub struct ConsoleIo {
    /// Bytes typed at the console, delivered to the guest's ring (None: no input).
    pub input: Option<Box<dyn Read + Send>>,
    /// Everything the guest writes to its console ring.
    pub output: Box<dyn Write + Send>,
}

impl ConsoleIo {
    /// Output only, e.g. into a buffer for tests.
    pub fn output_only(output: Box<dyn Write + Send>) -> Self {
        Self {
            input: None,
            output,
        }
    }
}

/// Why the domain ended: the guest's `SCHEDOP_shutdown` reason, as
/// xen-emu reports it (one type, so nothing has to translate it).
pub use xen_emu::platform::ShutdownReason as DomainExit;

/// What [`run_domain`] returns after a guest-initiated shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub exit: DomainExit,
    /// Everything the guest wrote with `HYPERVISOR_console_io` (`xl dmesg`).
    pub hypervisor_log: Vec<u8>,
    /// Measurements for the benchmark (never asserted on in tests).
    pub stats: RunStats,
}

/// What the boot vCPU measured while the domain ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// From entering [`run_domain`] to the first `KVM_RUN` of the boot vCPU
    /// (the guest's first instruction follows immediately).
    pub time_to_first_entry: std::time::Duration,
    /// KVM exits the boot vCPU took to userspace.
    pub exits: u64,
    /// Hypercalls the boot vCPU made.
    pub hypercalls: u64,
    /// Total VMM time spent servicing them (exit decoded to result written).
    pub hypercall_service_ns: u64,
}
