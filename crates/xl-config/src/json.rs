//! The `xl create -n` JSON document: libxl's `libxl_domain_config_gen_json`
//! field order (the IDL's), leaving out every field still at its default,
//! printed the way yajl's beautifier prints it.

use crate::model::*;
use serde_json::{json, Map, Value};

/// Whether to print exactly what xl prints, or the full typed configuration
/// (which keeps PVH's `apic`, a deliberate difference from Xen 4.17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Xl,
    Full,
}

struct Obj(Map<String, Value>);

impl Obj {
    fn new() -> Obj {
        Obj(Map::new())
    }
    fn put(&mut self, k: &str, v: Value) {
        self.0.insert(k.to_string(), v);
    }
    fn s(&mut self, k: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.put(k, json!(v));
        }
    }
    fn b(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.put(k, json!(if v { "True" } else { "False" }));
        }
    }
    fn i(&mut self, k: &str, v: i64) {
        if v != 0 {
            self.put(k, json!(v));
        }
    }
    fn m(&mut self, k: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.put(k, json!(v));
        }
    }
    fn list(&mut self, k: &str, v: &[String]) {
        if !v.is_empty() {
            self.put(k, json!(v));
        }
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// The JSON value of a configuration.
pub fn to_json(d: &DomainConfig, flavour: Flavour) -> Value {
    let mut o = Obj::new();
    o.put("c_info", c_info(&d.c_info));
    o.put("b_info", b_info(d, flavour));
    let arr = |v: Vec<Value>| Value::Array(v);
    if !d.disks.is_empty() {
        o.put("disks", arr(d.disks.iter().map(disk).collect()));
    }
    if !d.nics.is_empty() {
        o.put("nics", arr(d.nics.iter().map(nic).collect()));
    }
    if !d.pcidevs.is_empty() {
        o.put("pcidevs", arr(d.pcidevs.iter().map(pci).collect()));
    }
    if !d.dtdevs.is_empty() {
        o.put(
            "dtdevs",
            arr(d.dtdevs.iter().map(|p| json!({ "path": p })).collect()),
        );
    }
    if !d.vfbs.is_empty() {
        o.put("vfbs", arr(d.vfbs.iter().map(vfb).collect()));
    }
    if !d.vkbs.is_empty() {
        o.put("vkbs", arr(d.vkbs.iter().map(vkb).collect()));
    }
    if !d.vtpms.is_empty() {
        o.put("vtpms", arr(d.vtpms.iter().map(vtpm).collect()));
    }
    if !d.p9s.is_empty() {
        o.put("p9s", arr(d.p9s.iter().map(p9).collect()));
    }
    if !d.pvcallsifs.is_empty() {
        let v = d.pvcallsifs.iter().map(|p| {
            let mut x = Obj::new();
            x.s("backend_domname", &p.backend_domname);
            x.put("devid", json!(p.devid));
            x.done()
        });
        o.put("pvcallsifs", arr(v.collect()));
    }
    if !d.vdispls.is_empty() {
        o.put("vdispls", arr(d.vdispls.iter().map(vdispl).collect()));
    }
    if !d.vsnds.is_empty() {
        o.put("vsnds", arr(d.vsnds.iter().map(vsnd).collect()));
    }
    if !d.channels.is_empty() {
        o.put("channels", arr(d.channels.iter().map(channel).collect()));
    }
    if !d.usbctrls.is_empty() {
        o.put("usbctrls", arr(d.usbctrls.iter().map(usbctrl).collect()));
    }
    if !d.usbdevs.is_empty() {
        o.put("usbdevs", arr(d.usbdevs.iter().map(usbdev).collect()));
    }
    for (k, a) in [
        ("on_poweroff", d.on_poweroff),
        ("on_reboot", d.on_reboot),
        ("on_watchdog", d.on_watchdog),
        ("on_crash", d.on_crash),
        ("on_soft_reset", d.on_soft_reset),
    ] {
        if a != Action::Destroy {
            o.put(k, json!(a.json_name()));
        }
    }
    if flavour == Flavour::Full {
        let x = &d.xkvm;
        let mut e = Obj::new();
        e.put(
            "xen_version",
            json!(format!("{}.{}", x.xen_version.0, x.xen_version.1)),
        );
        e.b("xen_vapic", x.xen_vapic);
        e.put("xen_evtchn_max_pirq", json!(x.xen_evtchn_max_pirq));
        o.put("xkvm", e.done());
    }
    o.done()
}

fn c_info(c: &CreateInfo) -> Value {
    let mut o = Obj::new();
    o.put("type", json!(c.type_.name()));
    o.b("hap", c.hap);
    o.b("oos", c.oos);
    o.s("ssid_label", &c.ssid_label);
    o.put("name", json!(c.name));
    o.put("uuid", json!(c.uuid));
    o.s("pool_name", &c.pool_name);
    o.b("run_hotplug_scripts", c.run_hotplug_scripts);
    o.b("driver_domain", c.driver_domain);
    if let Some(p) = c.passthrough.as_deref().filter(|p| *p != "default") {
        o.put("passthrough", json!(p));
    }
    o.b("xend_suspend_evtchn_compat", c.xend_suspend_evtchn_compat);
    o.done()
}

fn bitmaps(v: &[Vec<u32>]) -> Value {
    Value::Array(v.iter().map(|m| json!(m)).collect())
}

/// `libxl_vnode_info` entries: fields at libxl's defaults (no size, pnode
/// 0, no vCPUs) are left out, the distances always written.
fn vnodes(nodes: &[VnodeInfo]) -> Value {
    Value::Array(
        nodes
            .iter()
            .map(|n| {
                let mut o = Obj::new();
                o.m("memkb", n.memkb);
                o.put("distances", json!(n.distances));
                o.i("pnode", i64::from(n.pnode));
                if !n.vcpus.is_empty() {
                    o.put("vcpus", json!(n.vcpus));
                }
                o.done()
            })
            .collect(),
    )
}

fn b_info(d: &DomainConfig, flavour: Flavour) -> Value {
    let b = &d.b_info;
    let mut o = Obj::new();
    o.i("max_vcpus", i64::from(b.max_vcpus));
    if !b.avail_vcpus.is_empty() {
        o.put("avail_vcpus", json!(b.avail_vcpus));
    }
    if !b.vcpu_hard_affinity.is_empty() {
        o.put("vcpu_hard_affinity", bitmaps(&b.vcpu_hard_affinity));
    }
    if !b.vcpu_soft_affinity.is_empty() {
        o.put("vcpu_soft_affinity", bitmaps(&b.vcpu_soft_affinity));
    }
    o.b("numa_placement", b.numa_placement);
    if b.tsc_mode != TscMode::Default {
        o.put("tsc_mode", json!(b.tsc_mode.name()));
    }
    o.m("max_memkb", b.max_memkb);
    o.m("target_memkb", b.target_memkb);
    o.m("video_memkb", b.video_memkb);
    o.m("shadow_memkb", b.shadow_memkb);
    o.i("rtc_timeoffset", i64::from(b.rtc_timeoffset));
    o.s("exec_ssid_label", &b.exec_ssid_label);
    o.b("localtime", b.localtime);
    o.b("disable_migrate", b.disable_migrate);
    if !b.cpuid.is_empty() {
        o.put("cpuid", cpuid(&b.cpuid));
    }
    o.s("blkdev_start", &b.blkdev_start);
    if !b.vnuma_nodes.is_empty() {
        o.put("vnuma_nodes", vnodes(&b.vnuma_nodes));
    }
    if let Some(v) = b.max_grant_frames {
        o.put("max_grant_frames", json!(v));
    }
    if let Some(v) = b.max_maptrack_frames {
        o.put("max_maptrack_frames", json!(v));
    }
    o.s("device_model_version", &b.device_model_version);
    o.b("device_model_stubdomain", b.device_model_stubdomain);
    o.m("stubdomain_memkb", b.stubdomain_memkb);
    o.s("stubdomain_kernel", &b.stubdomain_kernel);
    o.s("stubdomain_ramdisk", &b.stubdomain_ramdisk);
    o.s("device_model", &b.device_model);
    o.s("device_model_ssid_label", &b.device_model_ssid_label);
    o.s("device_model_user", &b.device_model_user);
    o.list("extra", &b.extra);
    o.list("extra_pv", &b.extra_pv);
    o.list("extra_hvm", &b.extra_hvm);
    let sp = &b.sched_params;
    let mut s = Obj::new();
    for (k, v) in [
        ("weight", sp.weight),
        ("cap", sp.cap),
        ("period", sp.period),
        ("extratime", sp.extratime),
        ("slice", sp.slice),
        ("latency", sp.latency),
    ] {
        if let Some(v) = v.filter(|v| *v != -1) {
            s.put(k, json!(v));
        }
    }
    o.put("sched_params", s.done());
    if !b.ioports.is_empty() {
        let v = b.ioports.iter().map(|r| {
            let mut x = Obj::new();
            x.i("first", i64::from(r.first));
            x.i("number", i64::from(r.number));
            x.done()
        });
        o.put("ioports", Value::Array(v.collect()));
    }
    if !b.irqs.is_empty() {
        o.put("irqs", json!(b.irqs));
    }
    if !b.iomem.is_empty() {
        let v = b.iomem.iter().map(|r| {
            let mut x = Obj::new();
            if r.start != 0 {
                x.put("start", json!(r.start));
            }
            if r.number != 0 {
                x.put("number", json!(r.number));
            }
            if let Some(g) = r.gfn.filter(|g| *g != u64::MAX) {
                x.put("gfn", json!(g));
            }
            x.done()
        });
        o.put("iomem", Value::Array(v.collect()));
    }
    o.b("claim_mode", b.claim_mode);
    o.i("event_channels", i64::from(b.event_channels));
    o.s("kernel", &b.kernel);
    o.s("cmdline", &b.cmdline);
    o.s("ramdisk", &b.ramdisk);
    o.s("device_tree", &b.device_tree);
    o.b("acpi", b.acpi);
    o.s("bootloader", &b.bootloader);
    o.list("bootloader_args", &b.bootloader_args);
    if let Some(t) = b.timer_mode {
        o.put("timer_mode", json!(t.name()));
    }
    o.b("nested_hvm", b.nested_hvm);
    let hide_apic = flavour == Flavour::Xl && d.c_info.type_ == DomainType::Pvh;
    if !hide_apic {
        o.b("apic", b.apic);
    }
    o.b("dm_restrict", b.dm_restrict);
    o.s("tee", &b.tee);
    match &b.u {
        TypeInfo::Hvm(h) => o.put("type.hvm", hvm(h)),
        TypeInfo::Pv(p) => {
            let mut x = Obj::new();
            x.b("e820_host", p.e820_host);
            o.put("type.pv", x.done());
        }
        TypeInfo::Pvh(p) => {
            let mut x = Obj::new();
            x.b("pvshim", p.pvshim);
            x.s("pvshim_path", &p.pvshim_path);
            x.s("pvshim_cmdline", &p.pvshim_cmdline);
            x.s("pvshim_extra", &p.pvshim_extra);
            o.put("type.pvh", x.done());
        }
    }
    let mut arm = Obj::new();
    arm.s("gic_version", &b.arch_arm_gic_version);
    arm.s("vuart", &b.arch_arm_vuart);
    o.put("arch_arm", arm.done());
    let mut x86 = Obj::new();
    x86.b("msr_relaxed", b.arch_x86_msr_relaxed);
    o.put("arch_x86", x86.done());
    if let Some(a) = b.altp2m.as_deref().filter(|a| *a != "disabled") {
        o.put("altp2m", json!(a));
    }
    o.i("vmtrace_buf_kb", b.vmtrace_buf_kb);
    o.done()
}

fn vnc(v: &VncInfo) -> Value {
    let mut o = Obj::new();
    o.b("enable", v.enable);
    o.s("listen", &v.listen);
    o.s("passwd", &v.passwd);
    o.i("display", v.display);
    o.b("findunused", v.findunused);
    o.done()
}

fn sdl(v: &SdlInfo) -> Value {
    let mut o = Obj::new();
    o.b("enable", v.enable);
    o.b("opengl", v.opengl);
    o.s("display", &v.display);
    o.s("xauthority", &v.xauthority);
    o.done()
}

fn hvm(h: &HvmInfo) -> Value {
    let mut o = Obj::new();
    o.s("firmware", &h.firmware);
    o.s("bios", &h.bios);
    o.b("pae", h.pae);
    o.b("acpi_s3", h.acpi_s3);
    o.b("acpi_s4", h.acpi_s4);
    o.b("acpi_laptop_slate", h.acpi_laptop_slate);
    o.b("nx", h.nx);
    o.b("viridian", h.viridian);
    if !h.viridian_enable.is_empty() {
        o.put("viridian_enable", json!(h.viridian_enable));
    }
    if !h.viridian_disable.is_empty() {
        o.put("viridian_disable", json!(h.viridian_disable));
    }
    o.b("hpet", h.hpet);
    o.b("vpt_align", h.vpt_align);
    o.m("mmio_hole_memkb", h.mmio_hole_memkb);
    o.b("altp2m", h.altp2m);
    o.s("system_firmware", &h.system_firmware);
    o.s("smbios_firmware", &h.smbios_firmware);
    o.s("acpi_firmware", &h.acpi_firmware);
    if let Some(t) = h.hdtype.as_deref().filter(|t| *t != "ide") {
        o.put("hdtype", json!(t));
    }
    o.b("nographic", h.nographic);
    let mut vga = Obj::new();
    vga.s("kind", &h.vga_kind);
    o.put("vga", vga.done());
    o.put("vnc", vnc(&h.vnc));
    o.s("keymap", &h.keymap);
    o.put("sdl", sdl(&h.sdl));
    let sp = &h.spice;
    let mut s = Obj::new();
    s.b("enable", sp.enable);
    s.i("port", sp.port);
    s.i("tls_port", sp.tls_port);
    s.s("host", &sp.host);
    s.b("disable_ticketing", sp.disable_ticketing);
    s.s("passwd", &sp.passwd);
    s.b("agent_mouse", sp.agent_mouse);
    s.b("vdagent", sp.vdagent);
    s.b("clipboard_sharing", sp.clipboard_sharing);
    s.i("usbredirection", sp.usbredirection);
    s.s("image_compression", &sp.image_compression);
    s.s("streaming_video", &sp.streaming_video);
    o.put("spice", s.done());
    o.b("gfx_passthru", h.gfx_passthru);
    if let Some(k) = h.gfx_passthru_kind.as_deref().filter(|k| *k != "default") {
        o.put("gfx_passthru_kind", json!(k));
    }
    o.s("serial", &h.serial);
    o.s("boot", &h.boot);
    o.b("usb", h.usb);
    o.i("usbversion", h.usbversion);
    o.s("usbdevice", &h.usbdevice);
    o.b("vkb_device", h.vkb_device);
    o.s("soundhw", &h.soundhw);
    o.b("xen_platform_pci", h.xen_platform_pci);
    o.list("usbdevice_list", &h.usbdevice_list);
    if let Some(v) = h.vendor_device.as_deref().filter(|v| *v != "none") {
        o.put("vendor_device", json!(v));
    }
    o.list("serial_list", &h.serial_list);
    let mut rdm = Obj::new();
    match h.rdm_strategy {
        RdmStrategy::Ignore => {}
        RdmStrategy::Host => rdm.put("strategy", json!("host")),
        RdmStrategy::Indeterminate => rdm.put("strategy", Value::Null),
    }
    rdm_policy(&mut rdm, "policy", h.rdm_policy);
    o.put("rdm", rdm.done());
    o.m("rdm_mem_boundary_memkb", h.rdm_mem_boundary_memkb);
    if h.mca_caps != 0 {
        o.put("mca_caps", json!(h.mca_caps));
    }
    o.done()
}

fn rdm_policy(o: &mut Obj, key: &str, p: RdmPolicy) {
    match p {
        RdmPolicy::Invalid => {}
        RdmPolicy::Strict => o.put(key, json!("strict")),
        RdmPolicy::Relaxed => o.put(key, json!("relaxed")),
        RdmPolicy::Indeterminate => o.put(key, Value::Null),
    }
}

fn pci(p: &PciDevice) -> Value {
    let mut o = Obj::new();
    o.i("func", i64::from(p.func));
    o.i("dev", i64::from(p.dev));
    o.i("bus", i64::from(p.bus));
    o.i("domain", i64::from(p.domain));
    o.i("vdevfn", i64::from(p.vdevfn));
    o.i("vfunc_mask", i64::from(p.vfunc_mask));
    for (k, b) in [
        ("msitranslate", p.msitranslate),
        ("power_mgmt", p.power_mgmt),
        ("permissive", p.permissive),
        ("seize", p.seize),
    ] {
        if b {
            o.put(k, json!(true));
        }
    }
    rdm_policy(&mut o, "rdm_policy", p.rdm_policy);
    o.s("name", &p.name);
    o.done()
}

fn disk(d: &Disk) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &d.backend_domname);
    o.s("pdev_path", &d.pdev_path);
    o.s("vdev", &d.vdev);
    if let Some(b) = d.backend {
        o.put("backend", json!(b.name()));
    }
    if let Some(f) = d.format {
        o.put("format", json!(f.name()));
    }
    o.s("script", &d.script);
    o.i("removable", d.removable);
    o.i("readwrite", d.readwrite);
    o.i("is_cdrom", d.is_cdrom);
    if d.direct_io_safe {
        o.put("direct_io_safe", json!(true));
    }
    o.b("discard_enable", d.discard_enable);
    if let Some(s) = d.specification {
        o.put("specification", json!(s));
    }
    o.b("colo_enable", d.colo_enable);
    o.s("colo_host", &d.colo_host);
    o.i("colo_port", d.colo_port);
    o.s("colo_export", &d.colo_export);
    o.s("active_disk", &d.active_disk);
    o.s("hidden_disk", &d.hidden_disk);
    o.done()
}

fn nic(n: &Nic) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &n.backend_domname);
    if n.devid != -1 {
        o.put("devid", json!(n.devid));
    }
    o.i("mtu", n.mtu);
    o.s("model", &n.model);
    if n.mac != [0; 6] {
        let m = n.mac;
        o.put(
            "mac",
            json!(format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )),
        );
    }
    o.s("ip", &n.ip);
    o.s("bridge", &n.bridge);
    o.s("ifname", &n.ifname);
    o.s("script", &n.script);
    match n.nictype {
        Some(NicType::Vif) => o.put("nictype", json!("vif")),
        Some(NicType::VifIoemu) => o.put("nictype", json!("vif_ioemu")),
        None => {}
    }
    if n.rate_bytes_per_interval != 0 {
        o.put("rate_bytes_per_interval", json!(n.rate_bytes_per_interval));
    }
    o.i("rate_interval_usecs", i64::from(n.rate_interval_usecs));
    o.s("gatewaydev", &n.gatewaydev);
    for (field, _) in crate::vif::COLO_KEYS.iter().map(|(_, f)| (f, ())) {
        if let Some((_, v)) = n.extra.iter().find(|(f, _)| f == field) {
            o.put(field, json!(v));
        }
    }
    o.done()
}

fn vfb(v: &Vfb) -> Value {
    let mut o = Obj::new();
    o.put("devid", json!(v.devid));
    o.put("vnc", vnc(&v.vnc));
    o.put("sdl", sdl(&v.sdl));
    o.s("keymap", &v.keymap);
    o.done()
}

fn vkb(v: &Vkb) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &v.backend_domname);
    o.put("devid", json!(v.devid));
    o.s("backend_type", &v.backend_type);
    o.s("unique_id", &v.unique_id);
    for (k, f) in [
        ("feature_disable_keyboard", v.feature_disable_keyboard),
        ("feature_disable_pointer", v.feature_disable_pointer),
        ("feature_abs_pointer", v.feature_abs_pointer),
        ("feature_raw_pointer", v.feature_raw_pointer),
        ("feature_multi_touch", v.feature_multi_touch),
    ] {
        if f {
            o.put(k, json!(true));
        }
    }
    for (k, n) in [
        ("width", v.width),
        ("height", v.height),
        ("multi_touch_width", v.multi_touch_width),
        ("multi_touch_height", v.multi_touch_height),
        ("multi_touch_num_contacts", v.multi_touch_num_contacts),
    ] {
        o.i(k, i64::from(n));
    }
    o.done()
}

fn vtpm(v: &Vtpm) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &v.backend_domname);
    o.put("devid", json!(v.devid));
    o.s("uuid", &v.uuid);
    o.done()
}

fn vdispl(v: &Vdispl) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &v.backend_domname);
    o.put("devid", json!(v.devid));
    if v.be_alloc {
        o.put("be_alloc", json!(true));
    }
    let cs = v.connectors.iter().map(|c| {
        let mut o = Obj::new();
        o.s("unique_id", &c.unique_id);
        o.i("width", c.width.into());
        o.i("height", c.height.into());
        o.done()
    });
    o.put("connectors", Value::Array(cs.collect()));
    o.done()
}

fn vsnd_params(p: &VsndParams) -> Value {
    let mut o = Obj::new();
    if !p.sample_rates.is_empty() {
        o.put("sample_rates", json!(p.sample_rates));
    }
    if !p.sample_formats.is_empty() {
        o.put("sample_formats", json!(p.sample_formats));
    }
    o.i("channels_min", p.channels_min.into());
    o.i("channels_max", p.channels_max.into());
    o.i("buffer_size", p.buffer_size.into());
    o.done()
}

fn vsnd(v: &Vsnd) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &v.backend_domname);
    o.put("devid", json!(v.devid));
    o.s("short_name", &v.short_name);
    o.s("long_name", &v.long_name);
    o.put("params", vsnd_params(&v.params));
    if !v.pcms.is_empty() {
        let pcms = v.pcms.iter().map(|p| {
            let mut o = Obj::new();
            o.s("name", &p.name);
            o.put("params", vsnd_params(&p.params));
            if !p.streams.is_empty() {
                let ss = p.streams.iter().map(|s| {
                    let mut o = Obj::new();
                    o.s("unique_id", &s.unique_id);
                    if let Some(t) = s.type_ {
                        o.put("type", json!(t));
                    }
                    o.put("params", vsnd_params(&s.params));
                    o.done()
                });
                o.put("streams", Value::Array(ss.collect()));
            }
            o.done()
        });
        o.put("pcms", Value::Array(pcms.collect()));
    }
    o.done()
}

/// `libxl_cpuid_policy_list_gen_json`.
fn cpuid(p: &crate::cpuid::CpuidPolicy) -> Value {
    let leaves = p.leaves.iter().map(|l| {
        let mut o = Obj::new();
        o.put("leaf", json!(l.leaf));
        if let Some(s) = l.subleaf {
            o.put("subleaf", json!(s));
        }
        for (name, r) in ["eax", "ebx", "ecx", "edx"].iter().zip(&l.regs) {
            o.s(name, r);
        }
        o.done()
    });
    let msrs = p
        .msrs
        .iter()
        .map(|m| json!({ "index": m.index, "policy": m.policy }));
    json!({ "cpuid": leaves.collect::<Vec<_>>(), "msr": msrs.collect::<Vec<_>>() })
}

fn usbctrl(u: &UsbCtrl) -> Value {
    let mut o = Obj::new();
    if u.type_ != UsbCtrlType::Auto {
        o.put("type", json!(u.type_.name()));
    }
    o.put("devid", json!(u.devid));
    o.i("version", u.version.into());
    o.i("ports", u.ports.into());
    o.done()
}

fn usbdev(u: &UsbDev) -> Value {
    let mut o = Obj::new();
    if u.ctrl != -1 {
        o.put("ctrl", json!(u.ctrl));
    }
    o.i("port", u.port.into());
    if u.hostdev {
        let mut h = Obj::new();
        h.i("hostbus", u.hostbus.into());
        h.i("hostaddr", u.hostaddr.into());
        o.put("type.hostdev", h.done());
    }
    o.done()
}

fn p9(p: &P9) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &p.backend_domname);
    o.put("tag", json!(p.tag));
    o.put("path", json!(p.path));
    o.put("security_model", json!(p.security_model));
    o.done()
}

fn channel(c: &Channel) -> Value {
    let mut o = Obj::new();
    o.s("backend_domname", &c.backend_domname);
    o.put("devid", json!(c.devid));
    o.s("name", &c.name);
    match &c.connection {
        ChannelConnection::Pty => o.put("connection.pty", json!({})),
        ChannelConnection::Socket { path } => o.put("connection.socket", json!({ "path": path })),
    }
    o.done()
}

/// yajl's beautified output: four-space indent, `"key": value`, and an
/// empty object as `{`, a blank line, `}`.
pub fn pretty(v: &Value) -> String {
    let mut out = String::new();
    write(v, 0, &mut out);
    out
}

fn write(v: &Value, depth: usize, out: &mut String) {
    let pad = |n: usize| "    ".repeat(n);
    match v {
        Value::Object(m) => {
            out.push_str("{\n");
            if m.is_empty() {
                out.push('\n');
            }
            let n = m.len();
            for (i, (k, val)) in m.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write(val, depth + 1, out);
                if i + 1 < n {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(a) => {
            out.push_str("[\n");
            if a.is_empty() {
                out.push('\n');
            }
            let n = a.len();
            for (i, val) in a.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write(val, depth + 1, out);
                if i + 1 < n {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl DomainConfig {
    /// The JSON document, laid out as `xl create -n` prints it.
    pub fn to_json_string(&self, flavour: Flavour) -> String {
        pretty(&to_json(self, flavour))
    }
}
