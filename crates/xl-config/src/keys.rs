//! The xl.cfg key table: every key xl reads, in the order xl's
//! `parse_config_data` reads it (which decides which error wins and the
//! order of warnings), with the domain types it applies to and what it does.
//! Simple keys are one table row; keys with a sub-grammar name a function.

use crate::error::Error;
use crate::model::*;
use crate::syntax::store::{string_items, GetError, Store};

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
    /// The xl.cfg key (for `Custom` rows, the first key the function reads).
    pub name: &'static str,
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
        }
    }

    fn invalid(&self, key: &str, value: &str, names: &[&str]) -> Error {
        Error::InvalidValue {
            file: self.file(),
            key: key.into(),
            line: self.cfg.line_of(key),
            value: value.into(),
            expected: format!("one of {}", names.join(", ")),
        }
    }

    fn config_err(&self, message: impl Into<String>) -> Error {
        Error::Config {
            file: self.file(),
            message: message.into(),
        }
    }

    fn warn(&mut self, m: impl Into<String>) {
        self.warnings.push(m.into());
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
            applies: Applies::$applies,
            kind: Kind::Str(|$d| $e),
        }
    };
}
macro_rules! b {
    ($name:literal, $applies:ident, |$d:ident| $e:expr) => {
        Key {
            name: $name,
            applies: Applies::$applies,
            kind: Kind::Bool(|$d| $e),
        }
    };
}
macro_rules! m {
    ($name:literal, $applies:ident, |$d:ident| $e:expr) => {
        Key {
            name: $name,
            applies: Applies::$applies,
            kind: Kind::MemKb(|$d| $e),
        }
    };
}
macro_rules! l {
    ($name:literal, $applies:ident, |$d:ident, $v:ident| $e:expr) => {
        Key {
            name: $name,
            applies: Applies::$applies,
            kind: Kind::Long(|$d, $v| $e),
        }
    };
}
macro_rules! c {
    ($name:literal, $applies:ident, $f:expr) => {
        Key {
            name: $name,
            applies: Applies::$applies,
            kind: Kind::Custom($f),
        }
    };
}

/// Every key, in xl's reading order. `type`/`builder`/`name`/`uuid` are
/// read before the table (they decide the rest).
pub static KEYS: &[Key] = &[
    c!("seclabel", All, seclabels),
    b!("hap", All, |d| Some(&mut d.c_info.hap)),
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
    c!("vcpus", All, vcpus),
    c!("vuart", All, vuart),
    c!("cpus", All, affinity),
    c!("max_grant_frames", All, grant_frames),
    c!("on_poweroff", All, actions),
    b!("e820_host", Pv, |d| match &mut d.b_info.u {
        TypeInfo::Pv(p) => Some(&mut p.e820_host),
        _ => None,
    }),
    c!("pci", All, unsupported_lists),
    c!("dtdev", All, dtdevs),
    c!("passthrough", All, passthrough),
    m!("shadow_memory", All, |d| Some(&mut d.b_info.shadow_memkb)),
    b!("nomigrate", All, |d| Some(&mut d.b_info.disable_migrate)),
    c!("tsc_mode", All, tsc_mode),
    l!("rtc_timeoffset", All, |d, v| d.b_info.rtc_timeoffset =
        v as u32),
    c!("vncviewer", All, vncviewer),
    b!("localtime", All, |d| Some(&mut d.b_info.localtime)),
    m!("videoram", All, |d| Some(&mut d.b_info.video_memkb)),
    l!("max_event_channels", All, |d, v| d.b_info.event_channels =
        v as u32),
    s!("kernel", All, |d| Some(&mut d.b_info.kernel)),
    s!("ramdisk", All, |d| Some(&mut d.b_info.ramdisk)),
    s!("device_tree", All, |d| Some(&mut d.b_info.device_tree)),
    c!("cmdline", All, cmdline),
    b!("driver_domain", All, |d| Some(&mut d.c_info.driver_domain)),
    b!("acpi", All, |d| Some(&mut d.b_info.acpi)),
    s!("bootloader", All, |d| Some(&mut d.b_info.bootloader)),
    c!("bootloader_args", All, bootloader_args),
    c!("timer_mode", All, timer_mode),
    b!("nestedhvm", All, |d| Some(&mut d.b_info.nested_hvm)),
    c!("kernel", Hvm, hvmloader_kernel),
    s!("firmware_override", Hvm, |d| hvm(d)
        .map(|h| &mut h.firmware)),
    s!("bios_path_override", Hvm, |d| hvm(d)
        .map(|h| &mut h.system_firmware)),
    c!("bios", Hvm, bios),
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
    b!("apic", Pvh, |d| Some(&mut d.b_info.apic)),
    c!("viridian", Hvm, viridian),
    c!("mmio_hole", Hvm, mmio_hole),
    c!("altp2mhvm", Hvm, altp2mhvm),
    s!("smbios_firmware", Hvm, |d| hvm(d)
        .map(|h| &mut h.smbios_firmware)),
    s!("acpi_firmware", Hvm, |d| hvm(d)
        .map(|h| &mut h.acpi_firmware)),
    c!("ms_vm_genid", Hvm, ms_vm_genid),
    m!("rdm_mem_boundary", Hvm, |d| hvm(d)
        .map(|h| &mut h.rdm_mem_boundary_memkb)),
    c!("mca_caps", Hvm, mca_caps),
    c!("firmware", Hvm, hvm_firmware),
    c!("firmware", NotHvm, pv_firmware),
    c!("altp2m", All, altp2m),
    l!("vmtrace_buf_kb", All, |d, v| if v != 0 {
        d.b_info.vmtrace_buf_kb = v
    }),
    c!("ioports", All, resources),
    c!("disk", All, disks),
    c!("p9", All, p9s),
    c!("vtpm", All, vtpms),
    c!("pvcalls", All, pvcalls),
    c!("channel", All, channels),
    c!("vif", All, vifs),
    c!("vfb", All, vfbs),
    c!("device_model", All, device_model),
    c!("vnc", All, top_level_display),
    b!("dm_restrict", All, |d| Some(&mut d.b_info.dm_restrict)),
    c!("vga", Hvm, hvm_display),
    c!("gic_version", All, arm_enums),
    c!("vkb", All, vkbs),
    b!("xend_suspend_evtchn_compat", All, |d| Some(
        &mut d.c_info.xend_suspend_evtchn_compat
    )),
    c!("msr_relaxed", All, msr_relaxed),
    c!("xen_version", All, xkvm_keys),
];

fn applies(a: Applies, t: DomainType) -> bool {
    match a {
        Applies::All => true,
        Applies::Hvm => t == DomainType::Hvm,
        Applies::Pvh => t == DomainType::Pvh,
        Applies::Pv => t == DomainType::Pv,
        Applies::NotHvm => t != DomainType::Hvm,
    }
}

/// Reads a parsed store into a domain configuration, as xl does.
pub fn read(cfg: &Store) -> Result<(DomainConfig, Vec<String>), Error> {
    let mut ctx = Ctx {
        cfg,
        d: DomainConfig::default(),
        warnings: Vec::new(),
        vcpus: 0,
    };
    identity(&mut ctx)?;
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
            Kind::Custom(f) => f(&mut ctx)?,
        }
        ctx.warnings.extend(cfg.take_warnings());
    }
    ctx.warnings.extend(cfg.take_warnings());
    // One entry per printed line.
    let lines = ctx
        .warnings
        .iter()
        .flat_map(|w| w.lines().map(str::to_owned))
        .collect();
    Ok((ctx.d, lines))
}

/// `type`, `builder`, `name`, `uuid`: what the rest depends on.
fn identity(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let cfg = ctx.cfg;
    if let Some(v) = cfg.string("init_seclabel") {
        ctx.d.c_info.ssid_label = Some(v);
    }
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
    // xl reads hap before name; its warnings come first.
    match cfg.string("name") {
        Some(n) => ctx.d.c_info.name = n,
        None => {
            ctx.warnings.extend(cfg.take_warnings());
            return Err(ctx.key_err("name", "Domain name must be specified."));
        }
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

fn seclabels(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("seclabel") {
        if ctx.d.c_info.ssid_label.is_some() {
            ctx.d.b_info.exec_ssid_label = Some(v);
        } else {
            ctx.d.c_info.ssid_label = Some(v);
        }
    }
    Ok(())
}

fn vcpus(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(l) = ctx.cfg.long("vcpus") {
        if l < 0 {
            return Err(ctx.key_err("vcpus", format!("invalid number of vCPUs {l}")));
        }
        ctx.vcpus = l;
        let n = u32::try_from(l.clamp(0, 4096)).unwrap_or(0);
        ctx.d.b_info.avail_vcpus = (0..n).collect();
    }
    if let Some(l) = ctx.cfg.long("maxvcpus") {
        ctx.d.b_info.max_vcpus = l as u32;
    }
    Ok(())
}

fn vuart(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("vuart") {
        if !v.eq_ignore_ascii_case("sbsa_uart") {
            return Err(ctx.invalid("vuart", &v, &["sbsa_uart"]));
        }
        ctx.d.b_info.arch_arm_vuart = Some("sbsa_uart".into());
    }
    // xl settles memory and vCPU counts right after vuart/vnuma.
    let b = &mut ctx.d.b_info;
    if b.max_memkb.is_none() {
        b.max_memkb = b.target_memkb;
    }
    if b.max_vcpus == 0 {
        b.max_vcpus = ctx.vcpus as u32;
    }
    if i64::from(b.max_vcpus) < ctx.vcpus {
        return Err(ctx.key_err("maxvcpus", "xl: maxvcpus < vcpus"));
    }
    Ok(())
}

fn affinity(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    for (key, hard) in [("cpus", true), ("cpus_soft", false)] {
        let max = ctx.d.b_info.max_vcpus as usize;
        let maps: Vec<Vec<u32>> = match ctx.cfg.get_list(key, true) {
            Ok(items) => {
                let wanted = items.len().min(max);
                let items = string_items(items);
                if items.len() < wanted {
                    // xl leaves the maps after a non-string item
                    // uninitialised and fails.
                    return Err(ctx.key_err(key, "every list item must be a cpu range string"));
                }
                let mut maps = Vec::new();
                for item in items.iter().take(max) {
                    maps.push(crate::cpus::parse_cpurange(item).map_err(|m| ctx.key_err(key, m))?);
                }
                // A list of cpumaps always disables automatic placement.
                ctx.d.b_info.numa_placement = Some(false);
                maps
            }
            Err(GetError::Invalid) => match ctx.cfg.get_string(key, false) {
                Ok(s) => {
                    let map = crate::cpus::parse_cpurange(s).map_err(|m| ctx.key_err(key, m))?;
                    if !hard {
                        ctx.d.b_info.numa_placement = Some(false);
                    }
                    vec![map; max]
                }
                Err(_) => continue,
            },
            Err(GetError::Absent) => continue,
        };
        if hard {
            if maps.iter().any(Vec::is_empty) {
                return Err(ctx.key_err(key, "vcpu hard affinity map is empty"));
            }
            ctx.d.b_info.vcpu_hard_affinity = maps;
        } else {
            ctx.d.b_info.vcpu_soft_affinity = maps;
        }
    }
    Ok(())
}

fn grant_frames(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    for key in ["max_grant_frames", "max_maptrack_frames"] {
        match ctx.cfg.get_bounded_long(key, 0, i64::from(i32::MAX), true) {
            Ok(v) => {
                let v = Some(v as u32);
                if key == "max_grant_frames" {
                    ctx.d.b_info.max_grant_frames = v;
                } else {
                    ctx.d.b_info.max_maptrack_frames = v;
                }
            }
            Err(GetError::Absent) => {}
            // xl exits without a word here; we say why.
            Err(GetError::Invalid) => {
                return Err(ctx.key_err(key, "expected a number from 0 to 2147483647"))
            }
        }
    }
    ctx.d.b_info.claim_mode = Some(true);
    Ok(())
}

fn actions(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let keys: [(&str, &str, ActionSlot); 5] = [
        ("on_poweroff", "destroy", |d| &mut d.on_poweroff),
        ("on_reboot", "restart", |d| &mut d.on_reboot),
        ("on_watchdog", "destroy", |d| &mut d.on_watchdog),
        ("on_crash", "destroy", |d| &mut d.on_crash),
        ("on_soft_reset", "soft-reset", |d| &mut d.on_soft_reset),
    ];
    for (key, default, slot) in keys {
        let v = ctx.cfg.string(key).unwrap_or_else(|| default.to_string());
        let Some((_, a)) = Action::CFG_NAMES.iter().find(|(n, _)| *n == v) else {
            let names: Vec<&str> = Action::CFG_NAMES.iter().map(|(n, _)| *n).collect();
            return Err(ctx.invalid(key, &v, &names));
        };
        *slot(&mut ctx.d) = *a;
    }
    Ok(())
}

/// Keys xl acts on that xkvm does not model: warn instead of silently
/// dropping them.
fn unsupported_lists(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    for key in [
        "pci", "rdm", "vdispl", "vsnd", "usbctrl", "usbdev", "cpuid", "vnuma",
    ] {
        if ctx.cfg.find(key).is_some() {
            ctx.warn(format!("xkvm: `{key}' is not supported and is ignored"));
        }
    }
    Ok(())
}

fn dtdevs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Ok(items) = ctx.cfg.get_list("dtdev", false) {
        ctx.d.dtdevs = string_items(items).into_iter().map(str::to_owned).collect();
    }
    Ok(())
}

fn passthrough(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    const NAMES: [&str; 5] = ["default", "disabled", "enabled", "sync_pt", "share_pt"];
    if let Some(v) = ctx.cfg.string("passthrough") {
        let Some(n) = NAMES.iter().find(|n| n.eq_ignore_ascii_case(&v)) else {
            return Err(ctx.invalid("passthrough", &v, &NAMES));
        };
        ctx.d.c_info.passthrough = Some((*n).to_string());
    }
    Ok(())
}

fn tsc_mode(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let names: Vec<&str> = TscMode::NAMES.iter().map(|(n, _)| *n).collect();
    if let Ok(l) = ctx.cfg.get_long("tsc_mode", true) {
        let s = usize::try_from(l).ok().and_then(|i| TscMode::NAMES.get(i));
        ctx.warn(format!(
            "WARNING: specifying \"tsc_mode\" as an integer is deprecated. Please use the named parameter variant. {}",
            s.map_or(String::new(), |(n, _)| format!("e.g. tsc_mode=\"{n}\""))
        ));
        let Some((_, m)) = s else {
            return Err(ctx.invalid("tsc_mode", &l.to_string(), &names));
        };
        ctx.d.b_info.tsc_mode = *m;
    } else if let Some(v) = ctx.cfg.string("tsc_mode") {
        ctx.warn(format!("got a tsc mode string: \"{v}\""));
        let Some((_, m)) = TscMode::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&v))
        else {
            return Err(ctx.invalid("tsc_mode", &v, &names));
        };
        ctx.d.b_info.tsc_mode = *m;
    }
    Ok(())
}

fn vncviewer(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if ctx.cfg.long("vncviewer").is_some() {
        ctx.warn("WARNING: ignoring \"vncviewer\" option. Use \"-V\" option of \"xl create\" to automatically spawn vncviewer.");
    }
    Ok(())
}

/// `cmdline`, or `root=` + `extra`.
fn cmdline(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let buf = ctx.cfg.string("cmdline");
    let root = ctx.cfg.string("root");
    let extra = ctx.cfg.string("extra");
    ctx.d.b_info.cmdline = match (buf, root, extra) {
        (Some(c), r, e) => {
            if r.is_some() || e.is_some() {
                ctx.warn("Warning: ignoring root= and extra= in favour of cmdline=");
            }
            Some(c)
        }
        (None, Some(r), Some(e)) => Some(format!("root={r} {e}")),
        (None, Some(r), None) => Some(format!("root={r}")),
        (None, None, e) => e,
    };
    Ok(())
}

fn bootloader_args(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    match ctx.cfg.get_list("bootloader_args", true) {
        Ok(items) => {
            ctx.d.b_info.bootloader_args =
                string_items(items).into_iter().map(str::to_owned).collect();
        }
        Err(GetError::Absent) => {}
        Err(GetError::Invalid) => {
            if let Some(s) = ctx.cfg.string("bootloader_args") {
                ctx.warn("WARNING: Specifying \"bootloader_args\" as a string is deprecated. Please use a list of arguments.");
                if s.split([' ', '\t', '\n']).all(str::is_empty) {
                    // xl crashes on a string with no words in it.
                    return Err(ctx.key_err("bootloader_args", "no arguments in the string"));
                }
                ctx.d.b_info.bootloader_args = s
                    .split([' ', '\t', '\n'])
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
        }
    }
    Ok(())
}

fn timer_mode(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let names: Vec<&str> = TimerMode::NAMES.iter().map(|(n, _)| *n).collect();
    let pv = ctx.d.c_info.type_ == DomainType::Pv;
    let pv_err = |ctx: &Ctx<'_>| {
        ctx.key_err(
            "timer_mode",
            "ERROR: \"timer_mode\" option is not supported for PV guests.",
        )
    };
    if let Ok(l) = ctx.cfg.get_long("timer_mode", true) {
        if pv {
            return Err(pv_err(ctx));
        }
        let m = TimerMode::from_int(l);
        ctx.warn(format!(
            "WARNING: specifying \"timer_mode\" as an integer is deprecated. Please use the named parameter variant. {}",
            m.map_or(String::new(), |m| format!("e.g. timer_mode=\"{}\"", m.name()))
        ));
        let Some(m) = m else {
            return Err(ctx.invalid("timer_mode", &l.to_string(), &names));
        };
        ctx.d.b_info.timer_mode = Some(m);
    } else if let Some(v) = ctx.cfg.string("timer_mode") {
        if pv {
            return Err(pv_err(ctx));
        }
        let Some((_, m)) = TimerMode::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&v))
        else {
            return Err(ctx.invalid("timer_mode", &v, &names));
        };
        ctx.d.b_info.timer_mode = Some(*m);
    }
    Ok(())
}

fn hvmloader_kernel(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let base = ctx
        .d
        .b_info
        .kernel
        .as_deref()
        .map(|k| k.rsplit('/').next().unwrap_or(k).to_string());
    if base.as_deref() == Some("hvmloader") {
        ctx.warn("WARNING: you seem to be using \"kernel\" directive to override HVM guest firmware. Ignore that. Use \"firmware_override\" instead if you really want a non-default firmware");
        ctx.d.b_info.kernel = None;
    }
    Ok(())
}

const BIOS_NAMES: [&str; 3] = ["rombios", "seabios", "ovmf"];

fn bios(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("bios") {
        let Some(n) = BIOS_NAMES.iter().find(|n| n.eq_ignore_ascii_case(&v)) else {
            return Err(ctx.invalid("bios", &v, &BIOS_NAMES));
        };
        if let Some(h) = hvm(&mut ctx.d) {
            h.bios = Some((*n).to_string());
        }
    } else if hvm(&mut ctx.d).is_some_and(|h| h.system_firmware.is_some()) {
        ctx.warn("WARNING: bios_path_override given without specific bios name");
    }
    Ok(())
}

const VIRIDIAN_NAMES: [&str; 13] = [
    "base",
    "freq",
    "time_ref_count",
    "reference_tsc",
    "hcall_remote_tlb_flush",
    "apic_assist",
    "crash_ctl",
    "synic",
    "stimer",
    "hcall_ipi",
    "ex_processor_masks",
    "no_vp_limit",
    "cpu_hotplug",
];

fn viridian(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    match ctx.cfg.get_list("viridian", true) {
        Ok(items) => {
            let items: Vec<String> = string_items(items).into_iter().map(str::to_owned).collect();
            let mut enable = std::collections::BTreeSet::new();
            let mut disable = std::collections::BTreeSet::new();
            let mut defaults = false;
            for item in &items {
                if item == "all" {
                    // libxl_bitmap_set_any over the allocated width (64 bits).
                    enable.extend(0..64u32);
                } else if item == "defaults" {
                    defaults = true;
                } else {
                    let (neg, name) = match item.strip_prefix('!') {
                        Some(n) => (true, n),
                        None => (false, item.as_str()),
                    };
                    let Some(bit) = VIRIDIAN_NAMES
                        .iter()
                        .position(|n| n.eq_ignore_ascii_case(name))
                    else {
                        return Err(ctx.invalid("viridian", name, &VIRIDIAN_NAMES));
                    };
                    let bit = bit as u32;
                    if neg {
                        disable.insert(bit);
                        enable.remove(&bit);
                    } else {
                        enable.insert(bit);
                        disable.remove(&bit);
                    }
                }
            }
            if let Some(h) = hvm(&mut ctx.d) {
                if defaults {
                    h.viridian = Some(true);
                }
                h.viridian_enable = enable.into_iter().collect();
                h.viridian_disable = disable.into_iter().collect();
            }
        }
        Err(GetError::Absent) => {}
        Err(GetError::Invalid) => {
            if let Ok(l) = ctx.cfg.get_long("viridian", true) {
                if let Some(h) = hvm(&mut ctx.d) {
                    h.viridian = Some(l != 0);
                }
            }
        }
    }
    Ok(())
}

fn mmio_hole(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(l) = ctx.cfg.long("mmio_hole") {
        // HVM_BELOW_4G_MMIO_LENGTH (256 MiB) .. HVM_BELOW_4G_MMIO_START (3 GiB).
        let bytes = i128::from(l) * 1024 * 1024;
        if !(256 << 20..=3 << 30).contains(&bytes) {
            return Err(ctx.key_err(
                "mmio_hole",
                format!("ERROR: invalid value {l} for \"mmio_hole\""),
            ));
        }
        if let Some(h) = hvm(&mut ctx.d) {
            h.mmio_hole_memkb = Some((l as u64) * 1024);
        }
    }
    Ok(())
}

fn altp2mhvm(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.defbool("altp2mhvm") {
        if let Some(h) = hvm(&mut ctx.d) {
            h.altp2m = Some(v);
        }
        ctx.warn("WARNING: Specifying \"altp2mhvm\" is deprecated. Please use \"altp2m\" instead.");
    }
    Ok(())
}

fn ms_vm_genid(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    match ctx.cfg.string("ms_vm_genid").as_deref() {
        None | Some("none") => Ok(()),
        Some("generate") => Err(ctx.key_err("ms_vm_genid", "not supported by xkvm")),
        Some(_) => Err(ctx.key_err(
            "ms_vm_genid",
            "ERROR: \"ms_vm_genid\" option must be \"generate\" or \"none\"",
        )),
    }
}

fn mca_caps(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    match ctx.cfg.get_list("mca_caps", true) {
        Ok(items) => {
            let items: Vec<String> = string_items(items).into_iter().map(str::to_owned).collect();
            for item in items {
                if item != "lmce" {
                    return Err(ctx.invalid("mca_caps", &item, &["lmce"]));
                }
                if let Some(h) = hvm(&mut ctx.d) {
                    h.mca_caps |= 1; // XEN_HVM_MCA_CAP_LMCE
                }
            }
            Ok(())
        }
        Err(GetError::Absent) => Ok(()),
        Err(GetError::Invalid) => Err(ctx.key_err("mca_caps", "ERROR: unable to parse mca_caps.")),
    }
}

fn hvm_firmware(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(v) = ctx.cfg.string("firmware") else {
        return Ok(());
    };
    let Some(h) = hvm(&mut ctx.d) else {
        return Ok(());
    };
    if let Some(n) = BIOS_NAMES.iter().find(|n| n.eq_ignore_ascii_case(&v)) {
        h.bios = Some((*n).to_string());
    } else if "uefi".starts_with(v.as_str()) {
        h.bios = Some("ovmf".into());
    } else if !"bios".starts_with(v.as_str()) {
        h.firmware = Some(v);
    }
    Ok(())
}

/// Where Debian's Xen 4.17 keeps `pvgrub32.bin` / `pvgrub64.bin`.
pub const XENFIRMWAREDIR: &str = "/usr/lib/xen-4.17/boot";

fn pv_firmware(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("firmware") {
        if ctx.d.b_info.kernel.is_some() {
            return Err(ctx.key_err("firmware", "ERROR: both kernel and firmware specified"));
        }
        if !"pvgrub32".starts_with(v.as_str()) && !"pvgrub64".starts_with(v.as_str()) {
            return Err(ctx.invalid("firmware", &v, &["pvgrub32", "pvgrub64"]));
        }
        ctx.d.b_info.kernel = Some(format!("{XENFIRMWAREDIR}/{v}.bin"));
    }
    if ctx.d.b_info.bootloader.is_none() && ctx.d.b_info.kernel.is_none() {
        return Err(ctx.config_err("Neither kernel nor bootloader specified"));
    }
    Ok(())
}

fn altp2m(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    const NAMES: [&str; 4] = ["disabled", "mixed", "external", "limited"];
    if let Ok(l) = ctx.cfg.get_long("altp2m", true) {
        let Some(n) = usize::try_from(l).ok().and_then(|i| NAMES.get(i)) else {
            return Err(ctx.key_err("altp2m", format!("ERROR: invalid value {l} for \"altp2m\"")));
        };
        ctx.d.b_info.altp2m = Some((*n).to_string());
    } else if let Some(v) = ctx.cfg.string("altp2m") {
        let Some(n) = NAMES.iter().find(|n| n.eq_ignore_ascii_case(&v)) else {
            return Err(ctx.invalid("altp2m", &v, &NAMES));
        };
        ctx.d.b_info.altp2m = Some((*n).to_string());
    }
    Ok(())
}

/// `ioports`, `irqs`, `iomem`. xl stops at the first non-string item with
/// an error, so a list is read in full or refused.
fn resources(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let items = |ctx: &Ctx<'_>, key: &str| -> Result<Option<Vec<String>>, Error> {
        let Ok(list) = ctx.cfg.get_list(key, false) else {
            return Ok(None);
        };
        let strings = string_items(list);
        if strings.len() < list.len() {
            let i = strings.len();
            return Err(ctx.key_err(key, format!("xl: Unable to get element #{i} in {key} list")));
        }
        Ok(Some(strings.into_iter().map(str::to_owned).collect()))
    };
    if let Some(list) = items(ctx, "ioports")? {
        for s in list {
            let (r, w) = crate::resources::ioport(&s).map_err(|m| ctx.key_err("ioports", m))?;
            if let Some(w) = w {
                ctx.warn(w);
            }
            ctx.d.b_info.ioports.push(r);
        }
    }
    if let Some(list) = items(ctx, "irqs")? {
        for s in list {
            let irq = crate::resources::irq(&s).map_err(|m| ctx.key_err("irqs", m))?;
            ctx.d.b_info.irqs.push(irq);
        }
    }
    if let Some(list) = items(ctx, "iomem")? {
        for s in list {
            let r = crate::resources::iomem(&s).map_err(|m| ctx.key_err("iomem", m))?;
            ctx.d.b_info.iomem.push(r);
        }
    }
    Ok(())
}

fn pvcalls(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "pvcalls") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let mut p = PvCallsIf {
            devid: i as i64,
            backend_domname: None,
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, v)) = tok.split_once('=') else {
                break;
            };
            if k != "backend" {
                return Err(ctx.key_err("pvcalls", format!("Unknown string `{k}' in pvcalls spec")));
            }
            p.backend_domname = Some(v.to_string());
        }
        ctx.d.pvcallsifs.push(p);
    }
    Ok(())
}

fn list_strings(ctx: &Ctx<'_>, key: &str) -> Option<Vec<String>> {
    ctx.cfg
        .get_list(key, false)
        .ok()
        .map(|items| string_items(items).into_iter().map(str::to_owned).collect())
}

fn disks(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(specs) = list_strings(ctx, "disk") {
        for spec in specs {
            let d = crate::disk::parse_disk(&spec).map_err(|m| ctx.key_err("disk", m))?;
            ctx.d.disks.push(d);
        }
    }
    Ok(())
}

fn p9s(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "p9") else {
        return Ok(());
    };
    for spec in specs {
        let (mut sm, mut path, mut tag, mut backend) = (None, None, None, None);
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, v)) = tok.split_once('=') else {
                break;
            };
            let v = Some(v.to_string());
            match k {
                "security_model" => sm = v,
                "path" => path = v,
                "tag" => tag = v,
                "backend" => backend = v,
                _ => return Err(ctx.key_err("p9", format!("Unknown string `{k}' in 9pfs spec"))),
            }
        }
        let (Some(sm), Some(path), Some(tag)) = (sm, path, tag) else {
            return Err(ctx.key_err("p9", "9pfs spec missing required field!"));
        };
        ctx.d.p9s.push(P9 {
            backend_domname: backend,
            tag,
            path,
            security_model: sm,
        });
    }
    Ok(())
}

fn vtpms(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vtpm") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let mut v = Vtpm {
            devid: i as i64,
            ..Vtpm::default()
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, val)) = tok.split_once('=') else {
                break;
            };
            match k {
                "backend" => v.backend_domname = Some(val.to_string()),
                "uuid" => {
                    v.uuid = Some(crate::uuid::parse(val).ok_or_else(|| {
                        ctx.key_err("vtpm", format!("Failed to parse vtpm UUID: {val}"))
                    })?)
                }
                _ => return Err(ctx.key_err("vtpm", format!("Unknown string `{k}' in vtpm spec"))),
            }
        }
        if v.backend_domname.is_none() {
            return Err(ctx.key_err("vtpm", "vtpm spec missing required backend field!"));
        }
        ctx.d.vtpms.push(v);
    }
    Ok(())
}

fn channels(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "channel") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let (mut backend, mut name, mut path, mut conn) = (None, None, None, None);
        for pair in spec.split(',').filter(|p| !p.is_empty()) {
            let mut it = pair.split('=').filter(|p| !p.is_empty());
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                return Err(ctx.key_err(
                    "channel",
                    format!("failed to parse channel configuration: {pair}"),
                ));
            };
            let (k, v) = (k.trim(), v.trim().to_string());
            match k {
                "backend" => backend = Some(v),
                "name" => name = Some(v),
                "path" => path = Some(v),
                "connection" => {
                    conn = Some(match v.as_str() {
                        "pty" => "pty",
                        "socket" => "socket",
                        _ => return Err(ctx.invalid("channel connection", &v, &["pty", "socket"])),
                    })
                }
                _ => ctx.warn(format!("unknown channel parameter '{k}', ignoring")),
            }
        }
        let connection = match conn {
            None => return Err(ctx.key_err("channel", "channel has unknown 'connection'")),
            Some("socket") => ChannelConnection::Socket {
                path: path.ok_or_else(|| {
                    ctx.key_err("channel", "channel connection 'socket' requires path=..")
                })?,
            },
            Some(_) => ChannelConnection::Pty,
        };
        ctx.d.channels.push(Channel {
            devid: i as i64,
            backend_domname: backend,
            name,
            connection,
        });
    }
    Ok(())
}

fn vifs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(specs) = list_strings(ctx, "vif") {
        for (i, spec) in specs.into_iter().enumerate() {
            let mut w = Vec::new();
            let nic = crate::vif::parse_vif(&spec, i as i64, &mut w);
            ctx.warnings.extend(w);
            ctx.d.nics.push(nic.map_err(|m| ctx.key_err("vif", m))?);
        }
    }
    if ctx.cfg.get_list("vif2", false).is_ok() {
        ctx.warn("WARNING: vif2: netchannel2 is deprecated and not supported by xl");
    }
    Ok(())
}

fn vfbs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vfb") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let mut vfb = Vfb {
            devid: i as i64,
            ..Vfb::default()
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, v)) = tok.split_once('=') else {
                break;
            };
            let s = Some(v.to_string());
            match k {
                "vnc" => vfb.vnc.enable = Some(atoi(v) != 0),
                "vnclisten" => vfb.vnc.listen = s,
                "vncpasswd" => vfb.vnc.passwd = s,
                "vncdisplay" => vfb.vnc.display = atoi(v),
                "vncunused" => vfb.vnc.findunused = Some(atoi(v) != 0),
                "keymap" => vfb.keymap = s,
                "sdl" => vfb.sdl.enable = Some(atoi(v) != 0),
                "opengl" => vfb.sdl.opengl = Some(atoi(v) != 0),
                "display" => vfb.sdl.display = s,
                "xauthority" => vfb.sdl.xauthority = s,
                _ => {}
            }
        }
        ctx.d.vfbs.push(vfb);
        ctx.d.vkbs.push(Vkb {
            devid: i as i64,
            ..Vkb::default()
        });
    }
    Ok(())
}

/// C's `strtoul(s, NULL, 0)`: leading number in any C base, 0 if none.
fn strtoul0(s: &str) -> u64 {
    let t = s.trim_start();
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.starts_with('0') {
        (8, t)
    } else {
        (10, t)
    };
    let n = digits.chars().take_while(|c| c.is_digit(radix)).count();
    u64::from_str_radix(&digits[..n], radix).unwrap_or(0)
}

/// C's `atoi`.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = t.bytes().take_while(u8::is_ascii_digit).count();
    let v = t[..n].parse::<i64>().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

fn device_model(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let hvm_type = ctx.d.c_info.type_ == DomainType::Hvm;
    if let Some(v) = ctx.cfg.string("device_model") {
        ctx.warn("WARNING: ignoring device_model directive.\nWARNING: Use \"device_model_override\" instead if you really want a non-default device_model");
        if v.contains("stubdom-dm") {
            ctx.warn(if hvm_type {
                "WARNING: Or use \"device_model_stubdomain_override\" if you  want to enable stubdomains"
            } else {
                "WARNING: ignoring \"device_model_stubdomain_override\" directive for pv guest"
            });
        }
    }
    let b = &mut ctx.d.b_info;
    b.device_model = ctx.cfg.string("device_model_override");
    match ctx.cfg.string("device_model_version").as_deref() {
        Some("qemu-xen-traditional") => {
            b.device_model_version = Some("qemu_xen_traditional".into())
        }
        Some("qemu-xen") => b.device_model_version = Some("qemu_xen".into()),
        Some(v) => {
            return Err(ctx.invalid(
                "device_model_version",
                v,
                &["qemu-xen", "qemu-xen-traditional"],
            ))
        }
        None => {
            if b.device_model.is_some() {
                ctx.warn("WARNING: device model override given without specific DM version");
            }
        }
    }
    let b = &mut ctx.d.b_info;
    if let Some(v) = ctx.cfg.defbool("device_model_stubdomain_override") {
        b.device_model_stubdomain = Some(v);
    }
    if let Some(v) = ctx.cfg.string("device_model_stubdomain_seclabel") {
        b.device_model_ssid_label = Some(v);
    }
    if let Some(v) = ctx.cfg.string("device_model_user") {
        b.device_model_user = Some(v);
    }
    if let Some(v) = ctx.cfg.string("stubdomain_kernel") {
        b.stubdomain_kernel = Some(v);
    }
    if let Some(v) = ctx.cfg.string("stubdomain_ramdisk") {
        b.stubdomain_ramdisk = Some(v);
    }
    if let Some(l) = ctx.cfg.long("stubdomain_memory") {
        b.stubdomain_memkb = Some((l as u64).wrapping_mul(1024));
    }
    for (key, which) in [
        ("device_model_args", 0),
        ("device_model_args_pv", 1),
        ("device_model_args_hvm", 2),
    ] {
        match ctx.cfg.get_list(key, false) {
            Ok(items) => {
                let v: Vec<String> = string_items(items).into_iter().map(str::to_owned).collect();
                let b = &mut ctx.d.b_info;
                match which {
                    0 => b.extra = v,
                    1 => b.extra_pv = v,
                    _ => b.extra_hvm = v,
                }
            }
            Err(GetError::Absent) => {}
            Err(GetError::Invalid) => {
                return Err(ctx.key_err(key, format!("xl: Unable to parse {key}.")));
            }
        }
    }
    Ok(())
}

fn vnc_sdl(cfg: &Store, vnc: &mut VncInfo, sdl: &mut SdlInfo) {
    if let Some(v) = cfg.defbool("vnc") {
        vnc.enable = Some(v);
    }
    if let Some(v) = cfg.string("vnclisten") {
        vnc.listen = Some(v);
    }
    if let Some(v) = cfg.string("vncpasswd") {
        vnc.passwd = Some(v);
    }
    if let Some(v) = cfg.long("vncdisplay") {
        vnc.display = v;
    }
    if let Some(v) = cfg.defbool("vncunused") {
        vnc.findunused = Some(v);
    }
    if let Some(v) = cfg.defbool("sdl") {
        sdl.enable = Some(v);
    }
    if let Some(v) = cfg.defbool("opengl") {
        sdl.opengl = Some(v);
    }
    if let Some(v) = cfg.string("display") {
        sdl.display = Some(v);
    }
    if let Some(v) = cfg.string("xauthority") {
        sdl.xauthority = Some(v);
    }
}

/// Top-level `vnc`/`sdl` keys: a vfb for PV guests without `vfb=`, the
/// emulated display for HVM guests.
fn top_level_display(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let cfg = ctx.cfg;
    match ctx.d.c_info.type_ {
        DomainType::Pv if ctx.d.vfbs.is_empty() => {
            if cfg.long("vnc").unwrap_or(0) != 0 {
                let mut vfb = Vfb::default();
                vnc_sdl(cfg, &mut vfb.vnc, &mut vfb.sdl);
                vfb.keymap = cfg.string("keymap");
                ctx.d.vfbs.push(vfb);
                ctx.d.vkbs.push(Vkb::default());
            }
        }
        DomainType::Hvm => {
            if let Some(h) = hvm(&mut ctx.d) {
                vnc_sdl(cfg, &mut h.vnc, &mut h.sdl);
            }
        }
        // xl writes these through the HVM arm of the union even for PV
        // (with vfb=) and PVH guests, scribbling over the other arm; xkvm
        // only reads them so their warnings match.
        _ => {
            let (mut vnc, mut sdl) = (VncInfo::default(), SdlInfo::default());
            vnc_sdl(cfg, &mut vnc, &mut sdl);
        }
    }
    Ok(())
}

fn hvm_display(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let cfg = ctx.cfg;
    const VGA: [(&str, &str); 4] = [
        ("stdvga", "std"),
        ("cirrus", "cirrus"),
        ("none", "none"),
        ("qxl", "qxl"),
    ];
    let vga = match cfg.string("vga") {
        Some(v) => match VGA.iter().find(|(n, _)| *n == v) {
            Some((_, k)) => Some((*k).to_string()),
            None => return Err(ctx.invalid("vga", &v, &["stdvga", "cirrus", "none", "qxl"])),
        },
        None => cfg
            .long("stdvga")
            .map(|l| if l != 0 { "std" } else { "cirrus" }.to_string()),
    };
    let hdtype = match cfg.string("hdtype") {
        Some(v) if v.eq_ignore_ascii_case("ide") => Some("ide".to_string()),
        Some(v) if v.eq_ignore_ascii_case("ahci") => Some("ahci".to_string()),
        Some(v) => return Err(ctx.invalid("hdtype", &v, &["ide", "ahci"])),
        None => None,
    };
    let mut warnings = Vec::new();
    let serial_err = |ctx: &Ctx<'_>, k: &str| ctx.key_err(k, format!("xl: Unable to parse {k}."));
    let (serial, serial_list) = match cfg.get_list("serial", true) {
        Ok(items) => (
            None,
            string_items(items).into_iter().map(str::to_owned).collect(),
        ),
        Err(GetError::Absent) => (None, Vec::new()),
        Err(GetError::Invalid) => match cfg.get_string("serial", false) {
            Ok(s) => (Some(s.to_string()), Vec::new()),
            Err(_) => return Err(serial_err(ctx, "serial")),
        },
    };
    let (usbdevice, usbdevice_list) = match cfg.get_list("usbdevice", true) {
        Ok(items) => (
            None,
            string_items(items).into_iter().map(str::to_owned).collect(),
        ),
        Err(GetError::Absent) => (None, Vec::new()),
        Err(GetError::Invalid) => match cfg.get_string("usbdevice", false) {
            Ok(s) => (Some(s.to_string()), Vec::new()),
            Err(_) => return Err(serial_err(ctx, "usbdevice")),
        },
    };
    let gfx = if let Ok(l) = cfg.get_long("gfx_passthru", true) {
        (Some(l != 0), None)
    } else if let Some(v) = cfg.string("gfx_passthru") {
        let kind = match v.to_ascii_lowercase().as_str() {
            "default" => "default",
            "igd" => "igd",
            _ => return Err(ctx.invalid("gfx_passthru", &v, &["default", "igd"])),
        };
        (Some(true), Some(kind.to_string()))
    } else {
        (None, None)
    };
    let vendor = match cfg.string("vendor_device") {
        Some(v) if v.eq_ignore_ascii_case("none") => Some("none".to_string()),
        Some(v) if v.eq_ignore_ascii_case("xenserver") => Some("xenserver".to_string()),
        Some(v) => return Err(ctx.invalid("vendor_device", &v, &["none", "xenserver"])),
        None => None,
    };
    let Some(h) = hvm(&mut ctx.d) else {
        return Ok(());
    };
    h.vga_kind = vga;
    h.hdtype = hdtype;
    if let Some(v) = cfg.string("keymap") {
        h.keymap = Some(v);
    }
    let sp = &mut h.spice;
    sp.enable = cfg.defbool("spice").or(sp.enable);
    if let Some(l) = cfg.long("spiceport") {
        sp.port = l;
    }
    if let Some(l) = cfg.long("spicetls_port") {
        sp.tls_port = l;
    }
    sp.host = cfg.string("spicehost").or(sp.host.take());
    sp.disable_ticketing = cfg
        .defbool("spicedisable_ticketing")
        .or(sp.disable_ticketing);
    sp.passwd = cfg.string("spicepasswd").or(sp.passwd.take());
    sp.agent_mouse = cfg.defbool("spiceagent_mouse").or(sp.agent_mouse);
    sp.vdagent = cfg.defbool("spicevdagent").or(sp.vdagent);
    sp.clipboard_sharing = cfg
        .defbool("spice_clipboard_sharing")
        .or(sp.clipboard_sharing);
    if let Some(l) = cfg.long("spiceusbredirection") {
        sp.usbredirection = l;
    }
    sp.image_compression = cfg
        .string("spice_image_compression")
        .or(sp.image_compression.take());
    sp.streaming_video = cfg
        .string("spice_streaming_video")
        .or(sp.streaming_video.take());
    h.nographic = cfg.defbool("nographic").or(h.nographic);
    h.gfx_passthru = gfx.0;
    h.gfx_passthru_kind = gfx.1;
    h.serial = serial;
    h.serial_list = serial_list;
    h.boot = cfg.string("boot").or(h.boot.take());
    h.usb = cfg.defbool("usb").or(h.usb);
    if let Some(l) = cfg.long("usbversion") {
        h.usbversion = l;
    }
    h.usbdevice = usbdevice;
    h.usbdevice_list = usbdevice_list;
    h.vkb_device = cfg.defbool("vkb_device").or(h.vkb_device);
    h.soundhw = cfg.string("soundhw").or(h.soundhw.take());
    h.xen_platform_pci = cfg.defbool("xen_platform_pci").or(h.xen_platform_pci);
    let display_clash =
        h.vnc.listen.as_deref().is_some_and(|l| l.contains(':')) && h.vnc.display != 0;
    h.vendor_device = vendor;
    warnings.extend(cfg.take_warnings());
    ctx.warnings.extend(warnings);
    if display_clash {
        return Err(ctx.config_err("ERROR: Display specified both in vnclisten and vncdisplay!"));
    }
    Ok(())
}

/// `gic_version` and `tee` (read quietly by xl; Arm only but stored).
fn arm_enums(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    const GIC: [&str; 3] = ["default", "v2", "v3"];
    const TEE: [&str; 2] = ["none", "optee"];
    if let Ok(v) = ctx.cfg.get_string("gic_version", true) {
        let Some(n) = GIC.iter().find(|n| n.eq_ignore_ascii_case(v)) else {
            return Err(ctx.invalid("gic_version", v, &GIC));
        };
        ctx.d.b_info.arch_arm_gic_version = Some((*n).to_string()).filter(|n| n != "default");
    }
    if let Ok(v) = ctx.cfg.get_string("tee", true) {
        let Some(n) = TEE.iter().find(|n| n.eq_ignore_ascii_case(v)) else {
            return Err(ctx.invalid("tee", v, &TEE));
        };
        ctx.d.b_info.tee = Some((*n).to_string()).filter(|n| n != "none");
    }
    Ok(())
}

fn vkbs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vkb") else {
        return Ok(());
    };
    for spec in specs {
        let mut vkb = Vkb {
            devid: ctx.d.vkbs.len() as i64,
            ..Vkb::default()
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            match tok.split_once('=') {
                Some(("backend", v)) => vkb.backend_domname = Some(v.to_string()),
                Some(("backend-type", v)) => {
                    let t = match v.to_ascii_lowercase().as_str() {
                        "qemu" => "qemu",
                        "linux" => "linux",
                        _ => return Err(ctx.invalid("vkb backend-type", v, &["qemu", "linux"])),
                    };
                    vkb.backend_type = Some(t.to_string());
                }
                Some(("unique-id", v)) => vkb.unique_id = Some(v.to_string()),
                Some(("feature-disable-keyboard", v)) => {
                    vkb.feature_disable_keyboard = strtoul0(v) != 0
                }
                Some(("feature-disable-pointer", v)) => {
                    vkb.feature_disable_pointer = strtoul0(v) != 0
                }
                Some(("feature-abs-pointer", v)) => vkb.feature_abs_pointer = strtoul0(v) != 0,
                Some(("feature-raw-pointer", v)) => vkb.feature_raw_pointer = strtoul0(v) != 0,
                Some(("feature-multi-touch", v)) => vkb.feature_multi_touch = strtoul0(v) != 0,
                Some(("multi-touch-width", v)) => vkb.multi_touch_width = strtoul0(v) as u32,
                Some(("multi-touch-height", v)) => vkb.multi_touch_height = strtoul0(v) as u32,
                Some(("multi-touch-num-contacts", v)) => {
                    vkb.multi_touch_num_contacts = strtoul0(v) as u32
                }
                Some(("width", v)) => vkb.width = strtoul0(v) as u32,
                Some(("height", v)) => vkb.height = strtoul0(v) as u32,
                _ => {
                    return Err(ctx.key_err("vkb", format!("Unknown string \"{tok}\" in vkb spec")));
                }
            }
        }
        if vkb.backend_type.is_none() {
            return Err(ctx.key_err("vkb", "backend-type should be set in vkb spec"));
        }
        let mt_size = vkb.multi_touch_height != 0
            || vkb.multi_touch_width != 0
            || vkb.multi_touch_num_contacts != 0;
        if mt_size {
            vkb.feature_multi_touch = true;
        }
        if vkb.feature_multi_touch && !mt_size {
            return Err(ctx.key_err(
                "vkb",
                "multi-touch-width, multi-touch-height, multi-touch-num-contacts should be set for multi touch in vkb spec",
            ));
        }
        ctx.d.vkbs.push(vkb);
    }
    Ok(())
}

fn msr_relaxed(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.defbool("msr_relaxed") {
        ctx.d.b_info.arch_x86_msr_relaxed = Some(v);
        ctx.warn("WARNING: msr_relaxed will be removed in future versions.\nIf it fixes an issue you are having please report to xen-devel@lists.xenproject.org.");
    }
    Ok(())
}

/// xkvm's own keys; xl ignores unknown keys, so these never change xl's
/// output.
fn xkvm_keys(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("xen_version") {
        let parsed = v
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        ctx.d.xkvm.xen_version = parsed.ok_or_else(|| {
            ctx.key_err(
                "xen_version",
                format!("expected MAJOR.MINOR like \"4.17\", got \"{v}\""),
            )
        })?;
    }
    if let Some(v) = ctx.cfg.defbool("xen_vapic") {
        ctx.d.xkvm.xen_vapic = Some(v);
    }
    match ctx
        .cfg
        .get_bounded_long("xen_evtchn_max_pirq", 0, i64::from(u32::MAX), false)
    {
        Ok(v) => ctx.d.xkvm.xen_evtchn_max_pirq = v as u32,
        Err(GetError::Absent) => {}
        Err(GetError::Invalid) => {
            return Err(ctx.key_err(
                "xen_evtchn_max_pirq",
                "expected a number from 0 to 4294967295",
            ))
        }
    }
    Ok(())
}
