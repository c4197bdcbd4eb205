//! The xl.cfg key table: every key xl reads, in the order xl's
//! `parse_config_data` reads it (which decides which error wins and the
//! order of warnings), with the domain types it applies to and what it does.
//! Simple keys are one table row; keys with a sub-grammar name a function.

mod build;
mod devices;
mod hvm;
mod usb;
mod vdispl;
mod vsnd;
mod xkvm;

use crate::error::{Error, XlExit};
use crate::model::*;
use crate::syntax::store::{string_items, GetError, Store};
use build::*;
use devices::*;
use hvm::*;
use usb::*;
use vdispl::*;
use vsnd::*;
use xkvm::*;

pub use build::XENFIRMWAREDIR;
pub use xkvm::XKVM_WARNING;

/// Which domain types read a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    All,
    Hvm,
    Pvh,
    Pv,
    /// PV and PVH (xl's `case PVH: case PV:`).
    NotHvm,
}

type StrSlot = for<'a> fn(&'a mut DomainConfig) -> Option<&'a mut Option<String>>;
type BoolSlot = for<'a> fn(&'a mut DomainConfig) -> Option<&'a mut Option<bool>>;
type Custom = fn(&mut Ctx<'_>) -> Result<(), Error>;
type ActionSlot = fn(&mut DomainConfig) -> &mut Action;

/// What reading a key does.
#[derive(Clone, Copy)]
pub enum Kind {
    /// `xlu_cfg_replace_string` into a string field.
    Str(StrSlot),
    /// `xlu_cfg_get_defbool` into a boolean field.
    Bool(BoolSlot),
    /// A number of MiB stored as KiB (`memory`, `videoram`, ...).
    MemKb(for<'a> fn(&'a mut DomainConfig) -> Option<&'a mut Option<u64>>),
    /// A plain `xlu_cfg_get_long`.
    Long(fn(&mut DomainConfig, i64)),
    /// A sub-grammar or a key with side conditions.
    Custom(Custom),
}

/// One row of the table.
pub struct Key {
    /// The xl.cfg key.
    pub name: &'static str,
    /// Further keys a `Custom` row's function reads.
    pub also: &'static [&'static str],
    pub applies: Applies,
    pub kind: Kind,
}

/// State while reading one configuration.
pub struct Ctx<'a> {
    pub cfg: &'a Store,
    pub d: DomainConfig,
    pub warnings: Vec<String>,
    /// vCPUs from `vcpus` (xl's local `vcpus`).
    vcpus: i64,
}

impl Ctx<'_> {
    fn file(&self) -> String {
        self.cfg.source.clone()
    }

    fn key_err(&self, key: &str, message: impl Into<String>) -> Error {
        Error::Key {
            file: self.file(),
            key: key.into(),
            line: self.cfg.line_of(key),
            message: message.into(),
            exit: XlExit::Failure,
        }
    }

    fn invalid(&self, key: &str, value: &str, names: &[&str]) -> Error {
        Error::InvalidValue {
            file: self.file(),
            key: key.into(),
            line: self.cfg.line_of(key),
            value: value.into(),
            expected: format!("one of {}", names.join(", ")),
            exit: XlExit::Failure,
        }
    }

    fn config_err(&self, message: impl Into<String>) -> Error {
        Error::Config {
            file: self.file(),
            message: message.into(),
            exit: XlExit::Failure,
        }
    }

    /// Adds a warning after any the getters have queued, so they come
    /// out in the order xl prints them.
    fn warn(&mut self, m: impl Into<String>) {
        self.warnings.extend(self.cfg.take_warnings());
        self.warnings.push(m.into());
    }

    fn warn_all(&mut self, ms: Vec<String>) {
        self.warnings.extend(self.cfg.take_warnings());
        self.warnings.extend(ms);
    }
}

fn hvm(d: &mut DomainConfig) -> Option<&mut HvmInfo> {
    match &mut d.b_info.u {
        TypeInfo::Hvm(h) => Some(h),
        _ => None,
    }
}

fn pvh(d: &mut DomainConfig) -> Option<&mut PvhInfo> {
    match &mut d.b_info.u {
        TypeInfo::Pvh(p) => Some(p),
        _ => None,
    }
}

macro_rules! s {
    ($name:literal, $applies:ident, |$d:ident| $e:expr) => {
        Key {
            name: $name,
            also: &[],
            applies: Applies::$applies,
            kind: Kind::Str(|$d| $e),
        }
    };
}
macro_rules! b {
    ($name:literal, $applies:ident, |$d:ident| $e:expr) => {
        Key {
            name: $name,
            also: &[],
            applies: Applies::$applies,
            kind: Kind::Bool(|$d| $e),
        }
    };
}
macro_rules! m {
    ($name:literal, $applies:ident, |$d:ident| $e:expr) => {
        Key {
            name: $name,
            also: &[],
            applies: Applies::$applies,
            kind: Kind::MemKb(|$d| $e),
        }
    };
}
macro_rules! l {
    ($name:literal, $applies:ident, |$d:ident, $v:ident| $e:expr) => {
        Key {
            name: $name,
            also: &[],
            applies: Applies::$applies,
            kind: Kind::Long(|$d, $v| $e),
        }
    };
}
macro_rules! c {
    ([$name:literal $(, $more:literal)*], $applies:ident, $f:expr) => {
        Key {
            name: $name,
            also: &[$($more),*],
            applies: Applies::$applies,
            kind: Kind::Custom($f),
        }
    };
}

/// Every key, in xl's reading order. `init_seclabel`, `seclabel`, `type`,
/// `builder`, `hap`, `name` and `uuid` come first, in `identity` (they
/// decide the rest).
pub static KEYS: &[Key] = &[
    b!("oos", All, |d| Some(&mut d.c_info.oos)),
    s!("pool", All, |d| Some(&mut d.c_info.pool_name)),
    b!("pvshim", Pvh, |d| pvh(d).map(|p| &mut p.pvshim)),
    s!("pvshim_path", Pvh, |d| pvh(d).map(|p| &mut p.pvshim_path)),
    s!("pvshim_cmdline", Pvh, |d| pvh(d)
        .map(|p| &mut p.pvshim_cmdline)),
    s!("pvshim_extra", Pvh, |d| pvh(d).map(|p| &mut p.pvshim_extra)),
    l!("cpu_weight", All, |d, v| d.b_info.sched_params.weight =
        Some(v)),
    l!("cap", All, |d, v| d.b_info.sched_params.cap = Some(v)),
    l!("period", All, |d, v| d.b_info.sched_params.period = Some(v)),
    l!("slice", All, |d, v| d.b_info.sched_params.slice = Some(v)),
    l!("latency", All, |d, v| d.b_info.sched_params.latency =
        Some(v)),
    l!("extratime", All, |d, v| d.b_info.sched_params.extratime =
        Some(v)),
    m!("memory", All, |d| Some(&mut d.b_info.target_memkb)),
    m!("maxmem", All, |d| Some(&mut d.b_info.max_memkb)),
    c!(["vcpus", "maxvcpus"], All, vcpus),
    c!(["vuart", "vnuma"], All, vuart),
    c!(["cpus", "cpus_soft"], All, affinity),
    c!(
        ["max_grant_frames", "max_maptrack_frames"],
        All,
        grant_frames
    ),
    c!(
        [
            "on_poweroff",
            "on_reboot",
            "on_watchdog",
            "on_crash",
            "on_soft_reset"
        ],
        All,
        actions
    ),
    b!("e820_host", Pv, |d| match &mut d.b_info.u {
        TypeInfo::Pv(p) => Some(&mut p.e820_host),
        _ => None,
    }),
    c!(
        [
            "pci_msitranslate",
            "pci_power_mgmt",
            "pci_permissive",
            "pci_seize",
            "rdm",
            "pci"
        ],
        All,
        pci_devices
    ),
    c!(["usbctrl"], All, usbctrls),
    c!(["usbdev"], All, usbdevs),
    c!(["cpuid"], All, cpuid),
    c!(["dtdev"], All, dtdevs),
    c!(["passthrough"], All, passthrough),
    m!("shadow_memory", All, |d| Some(&mut d.b_info.shadow_memkb)),
    b!("nomigrate", All, |d| Some(&mut d.b_info.disable_migrate)),
    c!(["tsc_mode"], All, tsc_mode),
    l!("rtc_timeoffset", All, |d, v| d.b_info.rtc_timeoffset =
        v as u32),
    c!(["vncviewer"], All, vncviewer),
    b!("localtime", All, |d| Some(&mut d.b_info.localtime)),
    m!("videoram", All, |d| Some(&mut d.b_info.video_memkb)),
    l!("max_event_channels", All, |d, v| d.b_info.event_channels =
        v as u32),
    s!("kernel", All, |d| Some(&mut d.b_info.kernel)),
    s!("ramdisk", All, |d| Some(&mut d.b_info.ramdisk)),
    s!("device_tree", All, |d| Some(&mut d.b_info.device_tree)),
    c!(["cmdline", "root", "extra"], All, cmdline),
    b!("driver_domain", All, |d| Some(&mut d.c_info.driver_domain)),
    b!("acpi", All, |d| Some(&mut d.b_info.acpi)),
    s!("bootloader", All, |d| Some(&mut d.b_info.bootloader)),
    c!(["bootloader_args"], All, bootloader_args),
    c!(["timer_mode"], All, timer_mode),
    b!("nestedhvm", All, |d| Some(&mut d.b_info.nested_hvm)),
    c!(["kernel"], Hvm, hvmloader_kernel),
    s!("firmware_override", Hvm, |d| hvm(d)
        .map(|h| &mut h.firmware)),
    s!("bios_path_override", Hvm, |d| hvm(d)
        .map(|h| &mut h.system_firmware)),
    c!(["bios"], Hvm, bios),
    b!("pae", Hvm, |d| hvm(d).map(|h| &mut h.pae)),
    b!("acpi_s3", Hvm, |d| hvm(d).map(|h| &mut h.acpi_s3)),
    b!("acpi_s4", Hvm, |d| hvm(d).map(|h| &mut h.acpi_s4)),
    b!("acpi_laptop_slate", Hvm, |d| hvm(d)
        .map(|h| &mut h.acpi_laptop_slate)),
    b!("nx", Hvm, |d| hvm(d).map(|h| &mut h.nx)),
    b!("hpet", Hvm, |d| hvm(d).map(|h| &mut h.hpet)),
    b!("vpt_align", Hvm, |d| hvm(d).map(|h| &mut h.vpt_align)),
    // xl 4.17 reads `apic` for HVM only; xkvm also keeps it for PVH (the
    // JSON printer hides it there to stay identical to xl).
    b!("apic", Hvm, |d| Some(&mut d.b_info.apic)),
    c!(["apic"], Pvh, pvh_apic),
    c!(["viridian"], Hvm, viridian),
    c!(["mmio_hole"], Hvm, mmio_hole),
    c!(["altp2mhvm"], Hvm, altp2mhvm),
    s!("smbios_firmware", Hvm, |d| hvm(d)
        .map(|h| &mut h.smbios_firmware)),
    s!("acpi_firmware", Hvm, |d| hvm(d)
        .map(|h| &mut h.acpi_firmware)),
    c!(["ms_vm_genid"], Hvm, ms_vm_genid),
    m!("rdm_mem_boundary", Hvm, |d| hvm(d)
        .map(|h| &mut h.rdm_mem_boundary_memkb)),
    c!(["mca_caps"], Hvm, mca_caps),
    c!(["firmware"], Hvm, hvm_firmware),
    c!(["firmware"], NotHvm, pv_firmware),
    c!(["altp2m"], All, altp2m),
    l!("vmtrace_buf_kb", All, |d, v| if v != 0 {
        d.b_info.vmtrace_buf_kb = v
    }),
    c!(["ioports", "irqs", "iomem"], All, resources),
    c!(["disk"], All, disks),
    c!(["p9"], All, p9s),
    c!(["vtpm"], All, vtpms),
    c!(["vdispl"], All, vdispls),
    c!(["pvcalls"], All, pvcalls),
    c!(["vsnd"], All, vsnds),
    c!(["channel"], All, channels),
    c!(["vif", "vif2"], All, vifs),
    c!(["vfb"], All, vfbs),
    c!(
        [
            "device_model",
            "device_model_override",
            "device_model_version",
            "device_model_stubdomain_override",
            "device_model_stubdomain_seclabel",
            "device_model_user",
            "stubdomain_kernel",
            "stubdomain_ramdisk",
            "stubdomain_memory",
            "device_model_args",
            "device_model_args_pv",
            "device_model_args_hvm"
        ],
        All,
        device_model
    ),
    c!(
        [
            "vnc",
            "vnclisten",
            "vncpasswd",
            "vncdisplay",
            "vncunused",
            "sdl",
            "opengl",
            "display",
            "xauthority",
            "keymap"
        ],
        All,
        top_level_display
    ),
    b!("dm_restrict", All, |d| Some(&mut d.b_info.dm_restrict)),
    c!(
        [
            "vga",
            "stdvga",
            "hdtype",
            "keymap",
            "spice",
            "spiceport",
            "spicetls_port",
            "spicehost",
            "spicedisable_ticketing",
            "spicepasswd",
            "spiceagent_mouse",
            "spicevdagent",
            "spice_clipboard_sharing",
            "spiceusbredirection",
            "spice_image_compression",
            "spice_streaming_video",
            "nographic",
            "gfx_passthru",
            "serial",
            "boot",
            "usb",
            "usbversion",
            "usbdevice",
            "vkb_device",
            "soundhw",
            "xen_platform_pci",
            "vendor_device"
        ],
        Hvm,
        hvm_display
    ),
    c!(["gic_version", "tee"], All, arm_enums),
    c!(["vkb"], All, vkbs),
    b!("xend_suspend_evtchn_compat", All, |d| Some(
        &mut d.c_info.xend_suspend_evtchn_compat
    )),
    c!(["msr_relaxed"], All, msr_relaxed),
    c!(
        ["xen_version", "xen_vapic", "xen_evtchn_max_pirq"],
        All,
        xkvm_keys
    ),
];

/// Keys read before the table (they decide which rows apply).
pub const IDENTITY_KEYS: [&str; 7] = [
    "init_seclabel",
    "seclabel",
    "type",
    "builder",
    "hap",
    "name",
    "uuid",
];

/// Whether xl (or xkvm) reads `name` at all. xl silently ignores every
/// other key.
pub fn is_known(name: &str) -> bool {
    IDENTITY_KEYS.contains(&name)
        || KEYS
            .iter()
            .any(|k| k.name == name || k.also.contains(&name))
}

fn applies(a: Applies, t: DomainType) -> bool {
    match a {
        Applies::All => true,
        Applies::Hvm => t == DomainType::Hvm,
        Applies::Pvh => t == DomainType::Pvh,
        Applies::Pv => t == DomainType::Pv,
        Applies::NotHvm => t != DomainType::Hvm,
    }
}

/// Reads a parsed store into a domain configuration, as xl does. The
/// warnings (one entry per line) come back whether or not it succeeded,
/// since xl prints them before its error.
pub fn read(cfg: &Store) -> (Result<DomainConfig, Error>, Vec<String>) {
    let mut ctx = Ctx {
        cfg,
        d: DomainConfig::default(),
        warnings: Vec::new(),
        vcpus: 0,
    };
    for s in cfg.settings() {
        if !is_known(&s.name) {
            // xl ignores unknown keys without a word; say so in the log.
            tracing::debug!(
                "{}:{}: ignoring unknown key `{}'",
                cfg.source,
                s.line,
                s.name
            );
        }
    }
    let result = read_all(&mut ctx);
    ctx.warnings.extend(cfg.take_warnings());
    (result.map(|()| ctx.d), printed_lines(&ctx.warnings))
}

/// Marks a message libxlu prints without a newline: the next message
/// continues its line.
pub(crate) const NO_NEWLINE: char = '\u{1}';

/// The warnings as the lines xl's stderr shows.
fn printed_lines(warnings: &[String]) -> Vec<String> {
    let mut text = String::new();
    for w in warnings {
        match w.strip_suffix(NO_NEWLINE) {
            Some(partial) => text.push_str(partial),
            None => {
                text.push_str(w);
                text.push('\n');
            }
        }
    }
    text.lines().map(str::to_owned).collect()
}

fn read_all(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let cfg = ctx.cfg;
    identity(ctx)?;
    let t = ctx.d.c_info.type_;
    for key in KEYS.iter().filter(|k| applies(k.applies, t)) {
        match key.kind {
            Kind::Str(slot) => {
                if let Some(v) = cfg.string(key.name) {
                    if let Some(s) = slot(&mut ctx.d) {
                        *s = Some(v);
                    }
                }
            }
            Kind::Bool(slot) => {
                if let Some(v) = cfg.defbool(key.name) {
                    if let Some(s) = slot(&mut ctx.d) {
                        *s = Some(v);
                    }
                }
            }
            Kind::MemKb(slot) => {
                if let Some(v) = cfg.long(key.name) {
                    if let Some(s) = slot(&mut ctx.d) {
                        *s = Some((v as u64).wrapping_mul(1024));
                    }
                }
            }
            Kind::Long(set) => {
                if let Some(v) = cfg.long(key.name) {
                    set(&mut ctx.d, v);
                }
            }
            Kind::Custom(f) => f(ctx)?,
        }
        ctx.warnings.extend(cfg.take_warnings());
    }
    Ok(())
}

/// `type`, `builder`, `name`, `uuid`: what the rest depends on.
fn identity(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let cfg = ctx.cfg;
    if let Some(v) = cfg.string("init_seclabel") {
        ctx.d.c_info.ssid_label = Some(v);
    }
    seclabels(ctx)?;
    ctx.d.c_info.run_hotplug_scripts = Some(true);
    // xl compares with strncmp over the given length: any prefix matches.
    let is_prefix = |v: &str, of: &str| of.starts_with(v);
    let mut t = None;
    if let Some(v) = cfg.string("type") {
        t = Some(if is_prefix(&v, "hvm") {
            DomainType::Hvm
        } else if is_prefix(&v, "pv") {
            DomainType::Pv
        } else if is_prefix(&v, "pvh") {
            DomainType::Pvh
        } else {
            return Err(ctx.invalid("type", &v, &["hvm", "pv", "pvh"]));
        });
    }
    if let Some(v) = cfg.string("builder") {
        let b = if is_prefix(&v, "hvm") {
            DomainType::Hvm
        } else if is_prefix(&v, "generic") {
            DomainType::Pv
        } else {
            return Err(ctx.invalid("builder", &v, &["hvm", "generic"]));
        };
        if t.is_some_and(|t| t != b) {
            return Err(ctx.config_err("Contradicting \"builder\" and \"type\" options specified."));
        }
        t = Some(b);
    }
    let t = t.unwrap_or(DomainType::Pv);
    ctx.d.c_info.type_ = t;
    ctx.d.b_info.u = match t {
        DomainType::Hvm => TypeInfo::Hvm(Box::default()),
        DomainType::Pv => TypeInfo::Pv(PvInfo::default()),
        DomainType::Pvh => TypeInfo::Pvh(PvhInfo::default()),
    };
    if let Some(v) = cfg.defbool("hap") {
        ctx.d.c_info.hap = Some(v);
    }
    match cfg.string("name") {
        Some(n) => ctx.d.c_info.name = n,
        None => return Err(ctx.key_err("name", "Domain name must be specified.")),
    }
    match cfg.string("uuid") {
        Some(u) => {
            ctx.d.c_info.uuid = crate::uuid::parse(&u)
                .ok_or_else(|| ctx.key_err("uuid", format!("Failed to parse UUID: {u}")))?;
            ctx.d.c_info.uuid_from_config = true;
        }
        None => ctx.d.c_info.uuid = crate::uuid::generate(),
    }
    ctx.warnings.extend(cfg.take_warnings());
    Ok(())
}

fn list_strings(ctx: &Ctx<'_>, key: &str) -> Option<Vec<String>> {
    ctx.cfg
        .get_list(key, false)
        .ok()
        .map(|items| string_items(items).into_iter().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_xl_reads_is_in_the_table() {
        for k in [
            "name",
            "type",
            "builder",
            "memory",
            "maxmem",
            "vcpus",
            "maxvcpus",
            "cpus",
            "cpus_soft",
            "on_crash",
            "on_soft_reset",
            "timer_mode",
            "apic",
            "nestedhvm",
            "viridian",
            "kernel",
            "ramdisk",
            "cmdline",
            "root",
            "extra",
            "bootloader",
            "bootloader_args",
            "disk",
            "vif",
            "vif2",
            "channel",
            "p9",
            "vfb",
            "vkb",
            "pvshim",
            "pvshim_path",
            "pvshim_cmdline",
            "pvshim_extra",
            "max_grant_frames",
            "max_maptrack_frames",
            "max_event_channels",
            "spiceport",
            "stubdomain_memory",
            "xen_version",
            "xen_vapic",
            "xen_evtchn_max_pirq",
        ] {
            assert!(is_known(k), "{k} missing from the key table");
        }
        assert!(!is_known("frobnicate"));
    }

    #[test]
    fn table_rows_are_unique_per_domain_type() {
        for t in [DomainType::Hvm, DomainType::Pv, DomainType::Pvh] {
            let mut seen = std::collections::HashSet::new();
            for k in KEYS.iter().filter(|k| applies(k.applies, t)) {
                // `kernel` is read twice for HVM on purpose (the hvmloader
                // check after the generic read), as xl does.
                if k.name != "kernel" {
                    assert!(seen.insert(k.name), "{} read twice for {t:?}", k.name);
                }
            }
        }
    }
}
