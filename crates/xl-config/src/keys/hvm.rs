//! Keys only HVM guests read: firmware and BIOS, platform switches with
//! side conditions, Viridian, and the emulated display (VNC/SDL/SPICE).

use super::*;

pub(super) fn hvmloader_kernel(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) const BIOS_NAMES: [&str; 3] = ["rombios", "seabios", "ovmf"];

pub(super) fn bios(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) const VIRIDIAN_NAMES: [&str; 13] = [
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

pub(super) fn viridian(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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
                        return Err(ctx
                            .invalid("viridian", name, &VIRIDIAN_NAMES)
                            .with_exit(XlExit::ErrorFail));
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

pub(super) fn mmio_hole(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn altp2mhvm(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = ctx.cfg.defbool("altp2mhvm") {
        if let Some(h) = hvm(&mut ctx.d) {
            h.altp2m = Some(v);
        }
        ctx.warn("WARNING: Specifying \"altp2mhvm\" is deprecated. Please use \"altp2m\" instead.");
    }
    Ok(())
}

pub(super) fn ms_vm_genid(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    match ctx.cfg.string("ms_vm_genid").as_deref() {
        None | Some("none") => Ok(()),
        Some("generate") => Err(ctx.key_err("ms_vm_genid", "not supported by xkvm")),
        Some(_) => Err(ctx.key_err(
            "ms_vm_genid",
            "ERROR: \"ms_vm_genid\" option must be \"generate\" or \"none\"",
        )),
    }
}

pub(super) fn mca_caps(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    match ctx.cfg.get_list("mca_caps", true) {
        Ok(items) => {
            let items: Vec<String> = string_items(items).into_iter().map(str::to_owned).collect();
            for item in items {
                if item != "lmce" {
                    return Err(ctx
                        .invalid("mca_caps", &item, &["lmce"])
                        .with_exit(XlExit::ErrorFail));
                }
                if let Some(h) = hvm(&mut ctx.d) {
                    h.mca_caps |= 1; // XEN_HVM_MCA_CAP_LMCE
                }
            }
            Ok(())
        }
        Err(GetError::Absent) => Ok(()),
        Err(GetError::Invalid) => Err(ctx
            .key_err("mca_caps", "ERROR: unable to parse mca_caps.")
            .with_exit(XlExit::ErrorFail)),
    }
}

pub(super) fn hvm_firmware(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn vnc_sdl(cfg: &Store, vnc: &mut VncInfo, sdl: &mut SdlInfo) {
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
pub(super) fn top_level_display(ctx: &mut Ctx<'_>) -> Result<(), Error> {
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

pub(super) fn hvm_display(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let cfg = ctx.cfg;
    // Work on a copy so errors can borrow `ctx`; keys are read in xl's order
    // (it decides which error wins and the order of warnings).
    let mut h = match &ctx.d.b_info.u {
        TypeInfo::Hvm(h) => (**h).clone(),
        _ => return Ok(()),
    };
    const VGA: [(&str, &str); 4] = [
        ("stdvga", "std"),
        ("cirrus", "cirrus"),
        ("none", "none"),
        ("qxl", "qxl"),
    ];
    if let Some(v) = cfg.string("vga") {
        let Some((_, k)) = VGA.iter().find(|(n, _)| *n == v) else {
            return Err(ctx.invalid("vga", &v, &["stdvga", "cirrus", "none", "qxl"]));
        };
        h.vga_kind = Some((*k).to_string());
    } else if let Some(l) = cfg.long("stdvga") {
        h.vga_kind = Some(if l != 0 { "std" } else { "cirrus" }.to_string());
    }
    if let Some(v) = cfg.string("hdtype") {
        let Some(t) = ["ide", "ahci"].iter().find(|t| t.eq_ignore_ascii_case(&v)) else {
            return Err(ctx.invalid("hdtype", &v, &["ide", "ahci"]));
        };
        h.hdtype = Some((*t).to_string());
    }
    h.keymap = cfg.string("keymap").or(h.keymap.take());
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
    if let Ok(l) = cfg.get_long("gfx_passthru", true) {
        h.gfx_passthru = Some(l != 0);
    } else if let Some(v) = cfg.string("gfx_passthru") {
        let Some(kind) = ["default", "igd"]
            .iter()
            .find(|k| k.eq_ignore_ascii_case(&v))
        else {
            return Err(ctx.invalid("gfx_passthru", &v, &["default", "igd"]));
        };
        h.gfx_passthru_kind = Some((*kind).to_string());
        h.gfx_passthru = Some(true);
    }
    // `serial` and `usbdevice`: a list, or else a single string.
    let unparsable = |ctx: &Ctx<'_>, k: &str| {
        ctx.key_err(k, format!("xl: Unable to parse {k}."))
            .with_exit(XlExit::ErrorFail)
    };
    match cfg.get_list("serial", true) {
        Ok(items) => h.serial_list = string_items(items).into_iter().map(str::to_owned).collect(),
        Err(GetError::Absent) => {}
        Err(GetError::Invalid) => match cfg.get_string("serial", false) {
            Ok(s) => h.serial = Some(s.to_string()),
            Err(_) => return Err(unparsable(ctx, "serial")),
        },
    }
    h.boot = cfg.string("boot").or(h.boot.take());
    h.usb = cfg.defbool("usb").or(h.usb);
    if let Some(l) = cfg.long("usbversion") {
        h.usbversion = l;
    }
    match cfg.get_list("usbdevice", true) {
        Ok(items) => {
            h.usbdevice_list = string_items(items).into_iter().map(str::to_owned).collect()
        }
        Err(GetError::Absent) => {}
        Err(GetError::Invalid) => match cfg.get_string("usbdevice", false) {
            Ok(s) => h.usbdevice = Some(s.to_string()),
            Err(_) => return Err(unparsable(ctx, "usbdevice")),
        },
    }
    h.vkb_device = cfg.defbool("vkb_device").or(h.vkb_device);
    h.soundhw = cfg.string("soundhw").or(h.soundhw.take());
    h.xen_platform_pci = cfg.defbool("xen_platform_pci").or(h.xen_platform_pci);
    if h.vnc.listen.as_deref().is_some_and(|l| l.contains(':')) && h.vnc.display != 0 {
        return Err(ctx.config_err("ERROR: Display specified both in vnclisten and vncdisplay!"));
    }
    if let Some(v) = cfg.string("vendor_device") {
        let Some(d) = ["none", "xenserver"]
            .iter()
            .find(|d| d.eq_ignore_ascii_case(&v))
        else {
            return Err(ctx
                .invalid("vendor_device", &v, &["none", "xenserver"])
                .with_exit(XlExit::ErrorFail));
        };
        h.vendor_device = Some((*d).to_string());
    }
    if let TypeInfo::Hvm(slot) = &mut ctx.d.b_info.u {
        **slot = h;
    }
    Ok(())
}
