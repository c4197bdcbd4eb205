//! Build-info keys: identity labels, vCPUs and affinity, memory-adjacent
//! limits, actions, timers, boot (kernel, cmdline, bootloader, firmware),
//! passthrough resources and the device-model keys.

use super::*;

pub(super) fn seclabels(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("seclabel") {
        if ctx.d.c_info.ssid_label.is_some() {
            ctx.d.b_info.exec_ssid_label = Some(v);
        } else {
            ctx.d.c_info.ssid_label = Some(v);
        }
    }
    Ok(())
}

pub(super) fn vcpus(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(l) = ctx.cfg.long("vcpus") {
        if l < 0 {
            return Err(ctx.key_err("vcpus", format!("invalid number of vCPUs {l}")));
        }
        ctx.vcpus = l;
        // xl would try to build a bitmap of any size; refuse sizes that
        // could only exhaust memory.
        const MAX: i64 = 1 << 20;
        if l > MAX {
            return Err(ctx.key_err(
                "vcpus",
                format!("{l} vCPUs is more than xkvm supports ({MAX})"),
            ));
        }
        let n = l as u32;
        ctx.d.b_info.avail_vcpus = (0..n).collect();
    }
    if let Some(l) = ctx.cfg.long("maxvcpus") {
        ctx.d.b_info.max_vcpus = l as u32;
    }
    Ok(())
}

pub(super) fn vuart(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.string("vuart") {
        if !v.eq_ignore_ascii_case("sbsa_uart") {
            return Err(ctx.invalid("vuart", &v, &["sbsa_uart"]));
        }
        ctx.d.b_info.arch_arm_vuart = Some("sbsa_uart".into());
    }
    vnuma(ctx)?;
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

pub(super) fn affinity(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    for (key, hard) in [("cpus", true), ("cpus_soft", false)] {
        let max = ctx.d.b_info.max_vcpus as usize;
        let (maps, specs): (Vec<Vec<u32>>, Vec<String>) = match ctx.cfg.get_list(key, true) {
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
                let specs = items.iter().take(max).map(|s| s.to_string()).collect();
                (maps, specs)
            }
            Err(GetError::Invalid) => match ctx.cfg.get_string(key, false) {
                Ok(s) => {
                    let map = crate::cpus::parse_cpurange(s).map_err(|m| ctx.key_err(key, m))?;
                    if !hard {
                        ctx.d.b_info.numa_placement = Some(false);
                    }
                    (vec![map; max], vec![s.to_string(); max])
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
            ctx.d.b_info.vcpu_hard_affinity_specs = specs;
        } else {
            ctx.d.b_info.vcpu_soft_affinity = maps;
        }
    }
    Ok(())
}

pub(super) fn grant_frames(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn actions(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

/// `vnuma` (read right after `vuart`, before xl settles `max_memkb` and
/// `max_vcpus`, which it may set).
fn vnuma(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Ok(items) = ctx.cfg.get_list("vnuma", true) else {
        return Ok(());
    };
    let lines = ctx.cfg.find("vnuma").map_or(&[][..], |s| &s.item_lines[..]);
    let b = &ctx.d.b_info;
    // b_info.max_vcpus is a C int.
    let parsed = crate::vnuma::parse(
        items,
        lines,
        &ctx.cfg.source,
        b.max_vcpus as i32,
        b.max_memkb,
    );
    match parsed {
        Ok(None) => Ok(()),
        Ok(Some(v)) => {
            let b = &mut ctx.d.b_info;
            b.vnuma_nodes = v.nodes;
            b.max_vcpus = v.max_vcpus as u32;
            b.max_memkb = Some(v.max_memkb);
            if v.pnode_given {
                b.numa_placement = Some(false);
            }
            Ok(())
        }
        Err(r) => {
            if let Some(w) = r.warning {
                ctx.warn(w);
            }
            Err(ctx.key_err("vnuma", r.message))
        }
    }
}

/// `cpuid`: xend's list of register lines, or the `"host,NAME=VALUE,..."`
/// string. Bad items only warn, as in xl.
pub(super) fn cpuid(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let mut warnings = Vec::new();
    let policy = &mut ctx.d.b_info.cpuid;
    match ctx.cfg.get_list("cpuid", true) {
        Ok(items) => {
            for line in string_items(items) {
                if let Err(e) = policy.parse_xend(line) {
                    warnings.push(format!("while parsing CPUID line: \"{line}\":"));
                    warnings.push(format!(
                        "  error #{e}: {}",
                        crate::cpuid::xend_error_text(e)
                    ));
                }
            }
        }
        Err(GetError::Invalid) => {
            let Ok(s) = ctx.cfg.get_string("cpuid", false) else {
                return Ok(());
            };
            let mut items = s.split(',').filter(|t| !t.is_empty());
            match items.next() {
                None => {}
                Some("host") => {
                    for item in items {
                        if let Err(e) = policy.parse_flag(item) {
                            warnings.push(format!("while parsing CPUID flag: \"{item}\":"));
                            warnings.push(format!(
                                "  error #{e}: {}",
                                crate::cpuid::flag_error_text(e)
                            ));
                        }
                    }
                }
                Some(_) => {
                    warnings.push(format!("while parsing CPUID string: \"{s}\":"));
                    warnings.push("  error: first word must be \"host\"".into());
                }
            }
        }
        Err(GetError::Absent) => {}
    }
    ctx.warn_all(warnings);
    Ok(())
}

/// `pci_*` defaults, `rdm` and `pci`.
pub(super) fn pci_devices(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let mut defaults = PciDevice::default();
    if let Some(l) = ctx.cfg.long("pci_msitranslate") {
        defaults.msitranslate = l != 0;
    }
    if let Some(l) = ctx.cfg.long("pci_power_mgmt") {
        defaults.power_mgmt = l != 0;
    }
    if let Some(l) = ctx.cfg.long("pci_permissive") {
        defaults.permissive = l != 0;
    }
    if let Some(l) = ctx.cfg.long("pci_seize") {
        defaults.seize = l != 0;
    }
    // xl writes `rdm` into the HVM arm of the build-info union whatever
    // the type; for PV and PVH that memory is otherwise zero ("strict").
    let hvm_type = ctx.d.c_info.type_ == DomainType::Hvm;
    let mut policy = if hvm_type {
        RdmPolicy::Invalid
    } else {
        RdmPolicy::Strict
    };
    if let Some(s) = ctx.cfg.string("rdm") {
        let mut w = Vec::new();
        let applied = crate::pci::parse_rdm(&s, &mut w);
        ctx.warn_all(w);
        if let Some(host) = applied {
            policy = RdmPolicy::Indeterminate;
            if let TypeInfo::Hvm(h) = &mut ctx.d.b_info.u {
                h.rdm_strategy = if host {
                    RdmStrategy::Host
                } else {
                    RdmStrategy::Indeterminate
                };
                h.rdm_policy = RdmPolicy::Indeterminate;
            }
        }
    }
    defaults.rdm_policy = policy;
    if let Ok(items) = ctx.cfg.get_list("pci", false) {
        let specs: Vec<String> = string_items(items).into_iter().map(str::to_owned).collect();
        for spec in specs {
            let mut dev = defaults.clone();
            let mut w = Vec::new();
            let ok = crate::pci::parse_spec(&mut dev, &spec, &mut w);
            ctx.warn_all(w);
            if let Err(e) = ok {
                return Err(ctx
                    .key_err(
                        "pci",
                        format!("unable to parse PCI_SPEC_STRING `{spec}' for passthrough"),
                    )
                    .with_exit(e.xl_exit()));
            }
            ctx.d.pcidevs.push(dev);
        }
        if !ctx.d.pcidevs.is_empty() {
            if let TypeInfo::Pv(p) = &mut ctx.d.b_info.u {
                p.e820_host = Some(true);
            }
        }
    }
    Ok(())
}

pub(super) fn dtdevs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Ok(items) = ctx.cfg.get_list("dtdev", false) {
        ctx.d.dtdevs = string_items(items).into_iter().map(str::to_owned).collect();
    }
    Ok(())
}

pub(super) fn passthrough(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    const NAMES: [&str; 5] = ["default", "disabled", "enabled", "sync_pt", "share_pt"];
    if let Some(v) = ctx.cfg.string("passthrough") {
        let Some(n) = NAMES.iter().find(|n| n.eq_ignore_ascii_case(&v)) else {
            return Err(ctx.invalid("passthrough", &v, &NAMES));
        };
        ctx.d.c_info.passthrough = Some((*n).to_string());
    }
    Ok(())
}

pub(super) fn tsc_mode(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn vncviewer(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if ctx.cfg.long("vncviewer").is_some() {
        ctx.warn("WARNING: ignoring \"vncviewer\" option. Use \"-V\" option of \"xl create\" to automatically spawn vncviewer.");
    }
    Ok(())
}

/// `cmdline`, or `root=` + `extra`.
pub(super) fn cmdline(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn bootloader_args(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn timer_mode(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let names: Vec<&str> = TimerMode::NAMES.iter().map(|(n, _)| *n).collect();
    let pv = ctx.d.c_info.type_ == DomainType::Pv;
    let pv_err = |ctx: &Ctx<'_>| {
        ctx.key_err(
            "timer_mode",
            "ERROR: \"timer_mode\" option is not supported for PV guests.",
        )
        .with_exit(XlExit::ErrorFail)
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

/// Where Debian's Xen 4.17 keeps `pvgrub32.bin` / `pvgrub64.bin`.
pub const XENFIRMWAREDIR: &str = "/usr/lib/xen-4.17/boot";

pub(super) fn pv_firmware(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn altp2m(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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
pub(super) fn resources(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn device_model(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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
                return Err(ctx
                    .key_err(key, format!("xl: Unable to parse {key}."))
                    .with_exit(XlExit::ErrorFail));
            }
        }
    }
    Ok(())
}

/// `gic_version` and `tee` (read quietly by xl; Arm only but stored).
pub(super) fn arm_enums(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    const GIC: [&str; 3] = ["default", "v2", "v3"];
    const TEE: [&str; 2] = ["none", "optee"];
    if let Ok(v) = ctx.cfg.get_string("gic_version", true) {
        let Some(n) = GIC.iter().find(|n| n.eq_ignore_ascii_case(v)) else {
            return Err(ctx
                .invalid("gic_version", v, &GIC)
                .with_exit(XlExit::ErrorFail));
        };
        ctx.d.b_info.arch_arm_gic_version = Some((*n).to_string()).filter(|n| n != "default");
    }
    if let Ok(v) = ctx.cfg.get_string("tee", true) {
        let Some(n) = TEE.iter().find(|n| n.eq_ignore_ascii_case(v)) else {
            return Err(ctx.invalid("tee", v, &TEE).with_exit(XlExit::ErrorFail));
        };
        ctx.d.b_info.tee = Some((*n).to_string()).filter(|n| n != "none");
    }
    Ok(())
}

pub(super) fn msr_relaxed(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.defbool("msr_relaxed") {
        ctx.d.b_info.arch_x86_msr_relaxed = Some(v);
        ctx.warn("WARNING: msr_relaxed will be removed in future versions.\nIf it fixes an issue you are having please report to xen-devel@lists.xenproject.org.");
    }
    Ok(())
}
