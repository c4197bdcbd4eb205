//! The typed domain configuration, shaped like libxl's
//! `libxl_domain_config` (`libxl_types.idl`). `None` means "not set", which
//! is what libxl's JSON leaves out and what [`crate::defaults`] fills in.

/// `libxl_domain_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DomainType {
    Hvm,
    #[default]
    Pv,
    Pvh,
}

impl DomainType {
    pub fn name(self) -> &'static str {
        match self {
            DomainType::Hvm => "hvm",
            DomainType::Pv => "pv",
            DomainType::Pvh => "pvh",
        }
    }
}

/// `libxl_action_on_shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Destroy,
    Restart,
    RestartRename,
    Preserve,
    CoredumpDestroy,
    CoredumpRestart,
    SoftReset,
}

impl Action {
    /// Spellings accepted in xl.cfg (`on_*` keys), in xl's table order.
    pub const CFG_NAMES: [(&'static str, Action); 7] = [
        ("destroy", Action::Destroy),
        ("restart", Action::Restart),
        ("rename-restart", Action::RestartRename),
        ("preserve", Action::Preserve),
        ("coredump-destroy", Action::CoredumpDestroy),
        ("coredump-restart", Action::CoredumpRestart),
        ("soft-reset", Action::SoftReset),
    ];

    /// libxl's JSON spelling.
    pub fn json_name(self) -> &'static str {
        match self {
            Action::Destroy => "destroy",
            Action::Restart => "restart",
            Action::RestartRename => "restart_rename",
            Action::Preserve => "preserve",
            Action::CoredumpDestroy => "coredump_destroy",
            Action::CoredumpRestart => "coredump_restart",
            Action::SoftReset => "soft_reset",
        }
    }
}

/// `libxl_timer_mode` (values as HVM_PARAM_TIMER_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    DelayForMissedTicks = 0,
    NoDelayForMissedTicks = 1,
    NoMissedTicksPending = 2,
    OneMissedTickPending = 3,
}

impl TimerMode {
    pub const NAMES: [(&'static str, TimerMode); 4] = [
        ("delay_for_missed_ticks", TimerMode::DelayForMissedTicks),
        (
            "no_delay_for_missed_ticks",
            TimerMode::NoDelayForMissedTicks,
        ),
        ("no_missed_ticks_pending", TimerMode::NoMissedTicksPending),
        ("one_missed_tick_pending", TimerMode::OneMissedTickPending),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }

    pub fn from_int(v: i64) -> Option<TimerMode> {
        Self::NAMES.get(usize::try_from(v).ok()?).map(|(_, m)| *m)
    }
}

/// `libxl_tsc_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TscMode {
    #[default]
    Default = 0,
    AlwaysEmulate = 1,
    Native = 2,
    NativeParavirt = 3,
}

impl TscMode {
    pub const NAMES: [(&'static str, TscMode); 4] = [
        ("default", TscMode::Default),
        ("always_emulate", TscMode::AlwaysEmulate),
        ("native", TscMode::Native),
        ("native_paravirt", TscMode::NativeParavirt),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }
}

/// `libxl_domain_create_info`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateInfo {
    pub type_: DomainType,
    pub hap: Option<bool>,
    pub oos: Option<bool>,
    pub ssid_label: Option<String>,
    pub name: String,
    /// The domain's UUID; xl generates one when the file has none.
    pub uuid: String,
    /// Whether `uuid` came from the file.
    pub uuid_from_config: bool,
    pub pool_name: Option<String>,
    pub run_hotplug_scripts: Option<bool>,
    pub driver_domain: Option<bool>,
    /// `passthrough` (libxl_passthrough name), when set.
    pub passthrough: Option<String>,
    pub xend_suspend_evtchn_compat: Option<bool>,
}

/// `libxl_domain_sched_params` (libxl's "-1 = default" as `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedParams {
    pub weight: Option<i64>,
    pub cap: Option<i64>,
    pub period: Option<i64>,
    pub extratime: Option<i64>,
    pub slice: Option<i64>,
    pub latency: Option<i64>,
}

/// `libxl_vnc_info`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VncInfo {
    pub enable: Option<bool>,
    pub listen: Option<String>,
    pub passwd: Option<String>,
    pub display: i64,
    pub findunused: Option<bool>,
}

/// `libxl_sdl_info`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SdlInfo {
    pub enable: Option<bool>,
    pub opengl: Option<bool>,
    pub display: Option<String>,
    pub xauthority: Option<String>,
}

/// `libxl_spice_info`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpiceInfo {
    pub enable: Option<bool>,
    pub port: i64,
    pub tls_port: i64,
    pub host: Option<String>,
    pub disable_ticketing: Option<bool>,
    pub passwd: Option<String>,
    pub agent_mouse: Option<bool>,
    pub vdagent: Option<bool>,
    pub clipboard_sharing: Option<bool>,
    pub usbredirection: i64,
    pub image_compression: Option<String>,
    pub streaming_video: Option<String>,
}

/// The HVM arm of `b_info.u`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HvmInfo {
    pub firmware: Option<String>,
    /// `libxl_bios_type` name.
    pub bios: Option<String>,
    pub pae: Option<bool>,
    pub acpi_s3: Option<bool>,
    pub acpi_s4: Option<bool>,
    pub acpi_laptop_slate: Option<bool>,
    pub nx: Option<bool>,
    pub viridian: Option<bool>,
    /// Enlightenment bit numbers (`libxl_viridian_enlightenment`).
    pub viridian_enable: Vec<u32>,
    pub viridian_disable: Vec<u32>,
    pub hpet: Option<bool>,
    pub vpt_align: Option<bool>,
    pub mmio_hole_memkb: Option<u64>,
    pub altp2m: Option<bool>,
    pub system_firmware: Option<String>,
    pub smbios_firmware: Option<String>,
    pub acpi_firmware: Option<String>,
    /// `ahci` when set (ide is libxl's init value).
    pub hdtype: Option<String>,
    pub nographic: Option<bool>,
    /// `libxl_vga_interface_type` name.
    pub vga_kind: Option<String>,
    pub vnc: VncInfo,
    pub keymap: Option<String>,
    pub sdl: SdlInfo,
    pub spice: SpiceInfo,
    pub gfx_passthru: Option<bool>,
    pub gfx_passthru_kind: Option<String>,
    pub serial: Option<String>,
    pub boot: Option<String>,
    pub usb: Option<bool>,
    pub usbversion: i64,
    pub usbdevice: Option<String>,
    pub vkb_device: Option<bool>,
    pub soundhw: Option<String>,
    pub xen_platform_pci: Option<bool>,
    pub usbdevice_list: Vec<String>,
    pub vendor_device: Option<String>,
    pub serial_list: Vec<String>,
    pub rdm_mem_boundary_memkb: Option<u64>,
    pub mca_caps: u64,
    pub rdm_strategy: RdmStrategy,
    pub rdm_policy: RdmPolicy,
}

/// The PV arm of `b_info.u`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PvInfo {
    pub e820_host: Option<bool>,
}

/// The PVH arm of `b_info.u`: the PV shim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PvhInfo {
    pub pvshim: Option<bool>,
    pub pvshim_path: Option<String>,
    pub pvshim_cmdline: Option<String>,
    pub pvshim_extra: Option<String>,
}

/// `b_info.u`, keyed by the domain type.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeInfo {
    Hvm(Box<HvmInfo>),
    Pv(PvInfo),
    Pvh(PvhInfo),
}

impl Default for TypeInfo {
    fn default() -> Self {
        TypeInfo::Pv(PvInfo::default())
    }
}

/// `libxl_ioport_range`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoportRange {
    pub first: u32,
    pub number: u32,
}

/// `libxl_iomem_range` (in pages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IomemRange {
    pub start: u64,
    pub number: u64,
    /// Guest frame the range maps at; `None` = same as `start`.
    pub gfn: Option<u64>,
}

/// `libxl_rdm_reserve_strategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RdmStrategy {
    #[default]
    Ignore,
    Host,
    /// Copied by xl from uninitialised memory (see [`RdmPolicy`]).
    Indeterminate,
}

/// `libxl_rdm_reserve_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RdmPolicy {
    /// libxl's "not set".
    #[default]
    Invalid,
    Strict,
    Relaxed,
    /// What xl copies from uninitialised memory after `rdm = "..."` (see
    /// [`crate::pci::parse_rdm`]); xl's JSON shows `null`.
    Indeterminate,
}

/// `libxl_device_pci` (xl-pci-configuration(5)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PciDevice {
    pub func: u8,
    pub dev: u8,
    pub bus: u8,
    pub domain: u32,
    /// Virtual slot << 3 (`@VSLOT` / `vslot=`).
    pub vdevfn: u32,
    pub vfunc_mask: u32,
    pub msitranslate: bool,
    pub power_mgmt: bool,
    pub permissive: bool,
    pub seize: bool,
    pub rdm_policy: RdmPolicy,
    /// An assignable device's name instead of a BDF.
    pub name: Option<String>,
}

/// `libxl_device_pvcallsif`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PvCallsIf {
    pub devid: i64,
    pub backend_domname: Option<String>,
}

/// `libxl_connector_param`: one display of a `vdispl`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connector {
    /// `None` for connectors xl left unset after a resolution it could
    /// not read.
    pub unique_id: Option<String>,
    pub width: u32,
    pub height: u32,
}

/// `libxl_device_vdispl` (`vdispl=`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vdispl {
    pub backend_domname: Option<String>,
    pub devid: i64,
    pub be_alloc: bool,
    pub connectors: Vec<Connector>,
}

/// `libxl_vsnd_params`: what a card, PCM or stream supports (0 / empty =
/// unset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VsndParams {
    pub sample_rates: Vec<u32>,
    /// `libxl_vsnd_pcm_format` names, lower case (`s16_le`, ...).
    pub sample_formats: Vec<&'static str>,
    pub channels_min: u32,
    pub channels_max: u32,
    pub buffer_size: u32,
}

/// `libxl_vsnd_pcm_format` names.
pub const VSND_PCM_FORMATS: [&str; 25] = [
    "s8",
    "u8",
    "s16_le",
    "s16_be",
    "u16_le",
    "u16_be",
    "s24_le",
    "s24_be",
    "u24_le",
    "u24_be",
    "s32_le",
    "s32_be",
    "u32_le",
    "u32_be",
    "f32_le",
    "f32_be",
    "f64_le",
    "f64_be",
    "iec958_subframe_le",
    "iec958_subframe_be",
    "mu_law",
    "a_law",
    "ima_adpcm",
    "mpeg",
    "gsm",
];

/// `libxl_vsnd_stream`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VsndStream {
    pub unique_id: Option<String>,
    /// `libxl_vsnd_stream_type`: `"p"` (playback) or `"c"` (capture).
    pub type_: Option<&'static str>,
    pub params: VsndParams,
}

/// `libxl_vsnd_pcm`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VsndPcm {
    pub name: Option<String>,
    pub params: VsndParams,
    pub streams: Vec<VsndStream>,
}

/// `libxl_device_vsnd` (`vsnd=`: one card per list).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vsnd {
    pub backend_domname: Option<String>,
    pub devid: i64,
    pub short_name: Option<String>,
    pub long_name: Option<String>,
    pub params: VsndParams,
    pub pcms: Vec<VsndPcm>,
}

/// `libxl_usbctrl_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsbCtrlType {
    #[default]
    Auto,
    Pv,
    DeviceModel,
    Qusb,
}

impl UsbCtrlType {
    /// libxl's names (`libxl_usbctrl_type_from_string` ignores case).
    pub const NAMES: [(&'static str, UsbCtrlType); 4] = [
        ("auto", UsbCtrlType::Auto),
        ("pv", UsbCtrlType::Pv),
        ("devicemodel", UsbCtrlType::DeviceModel),
        ("qusb", UsbCtrlType::Qusb),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("auto", |(n, _)| n)
    }
}

/// `libxl_device_usbctrl` (`usbctrl=`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsbCtrl {
    pub type_: UsbCtrlType,
    pub devid: i64,
    /// USB version (C `int`, from `atoi`; 0 = libxl picks).
    pub version: i32,
    /// Number of ports (C `int`, from `atoi`; 0 = libxl picks).
    pub ports: i32,
}

/// `libxl_device_usbdev` (`usbdev=`).
#[derive(Debug, Clone, PartialEq)]
pub struct UsbDev {
    /// Controller devid; -1 = libxl picks.
    pub ctrl: i64,
    /// Port on the controller (C `int`); 0 = libxl picks.
    pub port: i32,
    /// Whether `type=hostdev` was given. libxl's union key starts out as
    /// no valid type, and only a set key makes `hostbus`/`hostaddr` count.
    pub hostdev: bool,
    /// Written whatever the type, as xl writes the union's fields.
    pub hostbus: u8,
    pub hostaddr: u8,
}

impl Default for UsbDev {
    fn default() -> UsbDev {
        UsbDev {
            ctrl: -1,
            port: 0,
            hostdev: false,
            hostbus: 0,
            hostaddr: 0,
        }
    }
}

/// `libxl_vnode_info`: one virtual NUMA node (`vnuma`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VnodeInfo {
    /// `size=` in KiB; `None` when the node names none (libxl's default).
    pub memkb: Option<u64>,
    /// Distance to each node (`vdistances=`), one entry per node.
    pub distances: Vec<u32>,
    /// The host node backing it (`pnode=`).
    pub pnode: u32,
    /// Its vCPUs (set bit numbers).
    pub vcpus: Vec<u32>,
}

/// `libxl_domain_build_info` (the parts xl.cfg reaches on x86).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildInfo {
    pub max_vcpus: u32,
    /// Online vCPUs at boot (set bit numbers).
    pub avail_vcpus: Vec<u32>,
    /// Per-vCPU hard affinity: pCPU numbers per vCPU (of the modelled
    /// host, as `create -n` prints them; see [`crate::cpus::HOST_CPUS`]).
    pub vcpu_hard_affinity: Vec<Vec<u32>>,
    /// The cpu-range string each of [`Self::vcpu_hard_affinity`]'s maps
    /// came from, for the VMM to read again against the host it runs on
    /// ([`crate::cpus::parse_cpurange_for`]). Not part of libxl's JSON.
    pub vcpu_hard_affinity_specs: Vec<String>,
    pub vcpu_soft_affinity: Vec<Vec<u32>>,
    pub numa_placement: Option<bool>,
    pub tsc_mode: TscMode,
    pub max_memkb: Option<u64>,
    pub target_memkb: Option<u64>,
    pub video_memkb: Option<u64>,
    pub shadow_memkb: Option<u64>,
    pub rtc_timeoffset: u32,
    pub exec_ssid_label: Option<String>,
    pub localtime: Option<bool>,
    pub disable_migrate: Option<bool>,
    /// `cpuid=`: empty when not set.
    pub cpuid: crate::cpuid::CpuidPolicy,
    pub blkdev_start: Option<String>,
    /// `vnuma`: empty when not set.
    pub vnuma_nodes: Vec<VnodeInfo>,
    pub max_grant_frames: Option<u32>,
    pub max_maptrack_frames: Option<u32>,
    /// `qemu_xen_traditional` / `qemu_xen` when set.
    pub device_model_version: Option<String>,
    pub device_model_stubdomain: Option<bool>,
    pub stubdomain_memkb: Option<u64>,
    pub stubdomain_kernel: Option<String>,
    pub stubdomain_ramdisk: Option<String>,
    pub device_model: Option<String>,
    pub device_model_ssid_label: Option<String>,
    pub device_model_user: Option<String>,
    pub extra: Vec<String>,
    pub extra_pv: Vec<String>,
    pub extra_hvm: Vec<String>,
    pub sched_params: SchedParams,
    pub ioports: Vec<IoportRange>,
    pub irqs: Vec<u32>,
    pub iomem: Vec<IomemRange>,
    pub claim_mode: Option<bool>,
    /// `max_event_channels`; 0 = libxl's default.
    pub event_channels: u32,
    pub kernel: Option<String>,
    pub cmdline: Option<String>,
    pub ramdisk: Option<String>,
    pub device_tree: Option<String>,
    pub acpi: Option<bool>,
    pub bootloader: Option<String>,
    pub bootloader_args: Vec<String>,
    pub timer_mode: Option<TimerMode>,
    pub nested_hvm: Option<bool>,
    /// Kept for PVH too (xkvm gives PVH guests a local APIC by choice).
    pub apic: Option<bool>,
    pub dm_restrict: Option<bool>,
    pub u: TypeInfo,
    /// `tee` (Arm) when set and not `none`.
    pub tee: Option<String>,
    /// `gic_version` (Arm) when set and not `default`.
    pub arch_arm_gic_version: Option<String>,
    /// `vuart` (arm only; `sbsa_uart`).
    pub arch_arm_vuart: Option<String>,
    pub arch_x86_msr_relaxed: Option<bool>,
    /// `libxl_altp2m_mode` name when set.
    pub altp2m: Option<String>,
    pub vmtrace_buf_kb: i64,
}

/// `libxl_disk_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Qcow,
    Qcow2,
    Vhd,
    Raw,
    Empty,
    Qed,
}

impl DiskFormat {
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Raw => "raw",
            DiskFormat::Empty => "empty",
            DiskFormat::Qed => "qed",
        }
    }
}

/// `libxl_disk_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBackend {
    Phy,
    Tap,
    Qdisk,
    Standalone,
}

impl DiskBackend {
    pub fn name(self) -> &'static str {
        match self {
            DiskBackend::Phy => "phy",
            DiskBackend::Tap => "tap",
            DiskBackend::Qdisk => "qdisk",
            DiskBackend::Standalone => "standalone",
        }
    }
}

/// `libxl_device_disk` (xl-disk-configuration(5)).
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub backend_domname: Option<String>,
    pub pdev_path: Option<String>,
    pub vdev: Option<String>,
    pub backend: Option<DiskBackend>,
    pub format: Option<DiskFormat>,
    pub script: Option<String>,
    pub removable: i64,
    pub readwrite: i64,
    pub is_cdrom: i64,
    pub direct_io_safe: bool,
    pub discard_enable: Option<bool>,
    pub colo_enable: Option<bool>,
    pub colo_host: Option<String>,
    pub colo_port: i64,
    pub colo_export: Option<String>,
    pub active_disk: Option<String>,
    pub hidden_disk: Option<String>,
    /// `xen` / `virtio` when set.
    pub specification: Option<&'static str>,
}

/// `libxl_nic_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicType {
    VifIoemu,
    Vif,
}

/// `libxl_device_nic` (xl-network-configuration(5)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nic {
    pub backend_domname: Option<String>,
    pub devid: i64,
    pub mtu: i64,
    pub model: Option<String>,
    /// All zero = unset (libxl generates one).
    pub mac: [u8; 6],
    pub ip: Option<String>,
    pub bridge: Option<String>,
    pub ifname: Option<String>,
    pub script: Option<String>,
    pub nictype: Option<NicType>,
    pub rate_bytes_per_interval: u64,
    pub rate_interval_usecs: u32,
    pub gatewaydev: Option<String>,
    /// COLO and other rarely used string keys, by libxl field name.
    pub extra: Vec<(&'static str, String)>,
}

/// `libxl_device_vfb`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vfb {
    pub devid: i64,
    pub vnc: VncInfo,
    pub sdl: SdlInfo,
    pub keymap: Option<String>,
}

/// `libxl_device_vkb`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vkb {
    pub devid: i64,
    pub backend_domname: Option<String>,
    /// `qemu` / `linux` when set.
    pub backend_type: Option<String>,
    pub unique_id: Option<String>,
    pub feature_disable_keyboard: bool,
    pub feature_disable_pointer: bool,
    pub feature_abs_pointer: bool,
    pub feature_raw_pointer: bool,
    pub feature_multi_touch: bool,
    pub width: u32,
    pub height: u32,
    pub multi_touch_width: u32,
    pub multi_touch_height: u32,
    pub multi_touch_num_contacts: u32,
}

/// `libxl_device_p9`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct P9 {
    pub backend_domname: Option<String>,
    pub tag: String,
    pub path: String,
    pub security_model: String,
}

/// `libxl_channel_connection` with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelConnection {
    Pty,
    Socket { path: String },
}

/// `libxl_device_channel` (docs/misc/channels.txt).
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub devid: i64,
    pub backend_domname: Option<String>,
    pub name: Option<String>,
    pub connection: ChannelConnection,
}

/// `libxl_device_vtpm`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vtpm {
    pub devid: i64,
    pub backend_domname: Option<String>,
    pub uuid: Option<String>,
}

/// xkvm's own keys (xl ignores them; they never appear in xl's JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct XkvmOptions {
    /// The Xen version the guest is told it runs on (`xen_version`).
    pub xen_version: (u32, u32),
    /// Offer the virtual-APIC acceleration CPUID bits (`xen_vapic`).
    pub xen_vapic: Option<bool>,
    /// PIRQs available for event-channel binding (`xen_evtchn_max_pirq`).
    pub xen_evtchn_max_pirq: u32,
}

impl Default for XkvmOptions {
    fn default() -> Self {
        XkvmOptions {
            xen_version: (4, 17),
            xen_vapic: None,
            xen_evtchn_max_pirq: 256,
        }
    }
}

/// `libxl_domain_config` plus xkvm's own keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainConfig {
    pub c_info: CreateInfo,
    pub b_info: BuildInfo,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub pcidevs: Vec<PciDevice>,
    pub dtdevs: Vec<String>,
    pub vfbs: Vec<Vfb>,
    pub vkbs: Vec<Vkb>,
    pub vtpms: Vec<Vtpm>,
    pub p9s: Vec<P9>,
    pub pvcallsifs: Vec<PvCallsIf>,
    pub vdispls: Vec<Vdispl>,
    pub vsnds: Vec<Vsnd>,
    pub channels: Vec<Channel>,
    pub usbctrls: Vec<UsbCtrl>,
    pub usbdevs: Vec<UsbDev>,
    pub on_poweroff: Action,
    pub on_reboot: Action,
    pub on_watchdog: Action,
    pub on_crash: Action,
    pub on_soft_reset: Action,
    pub xkvm: XkvmOptions,
    /// Whether [`DomainConfig::with_defaults`] has run.
    pub defaults_applied: bool,
}

impl BuildInfo {
    /// The HVM settings, for HVM guests.
    pub fn hvm(&self) -> Option<&HvmInfo> {
        match &self.u {
            TypeInfo::Hvm(h) => Some(h),
            _ => None,
        }
    }

    /// The PVH settings, for PVH guests.
    pub fn pvh(&self) -> Option<&PvhInfo> {
        match &self.u {
            TypeInfo::Pvh(p) => Some(p),
            _ => None,
        }
    }

    /// The PV settings, for PV guests.
    pub fn pv(&self) -> Option<&PvInfo> {
        match &self.u {
            TypeInfo::Pv(p) => Some(p),
            _ => None,
        }
    }

    /// The PV shim settings when the guest runs under the shim
    /// (`type = "pvh"` with `pvshim = 1`).
    pub fn pvh_shim(&self) -> Option<&PvhInfo> {
        self.pvh().filter(|p| p.pvshim == Some(true))
    }

    /// HVM `viridian` (Hyper-V enlightenments) as a plain switch.
    pub fn viridian(&self) -> Option<bool> {
        self.hvm().and_then(|h| h.viridian)
    }
}
