//! libxl's defaulting (`libxl__domain_create_info_setdefault`,
//! `libxl__domain_build_info_setdefault`), as a separate explicit step.
//! xkvm differs from Xen 4.17 in one place on purpose: PVH guests keep (and
//! default) `apic`.

use crate::model::*;

/// libxl's default grant table size (frames) and maptrack size.
pub const MAX_GRANT_FRAMES: u32 = 64;
pub const MAX_MAPTRACK_FRAMES: u32 = 1024;
/// Event channels when `max_event_channels` is unset.
pub const EVENT_CHANNELS: u32 = 1023;
/// Memory when neither `memory` nor `maxmem` is set (KiB).
pub const MEMKB: u64 = 32 * 1024;

/// `libxl_get_required_shadow_memory`: 1 MiB per vCPU plus 8 KiB per MiB of
/// maximum memory, in KiB (4 KiB * (256 * vcpus + 2 * MiB)).
pub fn required_shadow_memkb(max_memkb: u64, vcpus: u32) -> u64 {
    4 * (256 * u64::from(vcpus) + 2 * (max_memkb / 1024))
}

/// `LIBXL_RDM_MEM_BOUNDARY_MEMKB_DEFAULT`.
pub const RDM_MEM_BOUNDARY_MEMKB: u64 = 2048 * 1024;
/// `PVSHIM_CMDLINE` and where Debian installs the shim.
pub const PVSHIM_CMDLINE: &str = "pv-shim console=xen,pv";
pub const PVSHIM_PATH: &str = "/usr/lib/xen-4.17/boot/xen-shim";

impl DomainConfig {
    /// The configuration with every unset field given libxl 4.17's value
    /// (`libxl__domain_config_setdefault` and the create/build info
    /// setdefault functions it calls), on a host with HAP.
    pub fn with_defaults(mut self) -> DomainConfig {
        let ty = self.c_info.type_;
        let c = &mut self.c_info;
        if ty != DomainType::Pv {
            c.hap.get_or_insert(true);
            c.oos.get_or_insert(true);
        }
        c.run_hotplug_scripts.get_or_insert(true);
        c.driver_domain.get_or_insert(false);
        c.xend_suspend_evtchn_compat.get_or_insert(false);

        let b = &mut self.b_info;
        b.device_model_stubdomain.get_or_insert(false);
        b.device_model_version
            .get_or_insert_with(|| "qemu_xen".into());
        b.blkdev_start.get_or_insert_with(|| "xvda".into());
        if b.max_vcpus == 0 {
            b.max_vcpus = 1;
        }
        if b.avail_vcpus.is_empty() {
            b.avail_vcpus = vec![0];
        }
        b.numa_placement.get_or_insert(true);
        let max = *b.max_memkb.get_or_insert(MEMKB);
        b.target_memkb.get_or_insert(max);
        // libxl sizes the paging pool before the per-type defaults, for
        // every type: 1 MiB per vCPU plus 8 KiB per MiB.
        let shadow = required_shadow_memkb(max, b.max_vcpus);
        b.shadow_memkb.get_or_insert(shadow);
        b.stubdomain_memkb.get_or_insert(0);
        b.claim_mode.get_or_insert(false);
        b.localtime.get_or_insert(false);
        b.disable_migrate.get_or_insert(false);
        for r in &mut b.iomem {
            r.gfn.get_or_insert(r.start);
        }
        if b.event_channels == 0 {
            b.event_channels = EVENT_CHANNELS;
        }
        b.max_grant_frames.get_or_insert(MAX_GRANT_FRAMES);
        b.max_maptrack_frames.get_or_insert(MAX_MAPTRACK_FRAMES);
        // x86's arch defaults.
        b.acpi.get_or_insert(true);
        b.arch_x86_msr_relaxed.get_or_insert(false);
        b.dm_restrict.get_or_insert(false);
        match &mut b.u {
            TypeInfo::Hvm(h) => {
                h.bios.get_or_insert_with(|| "seabios".into());
                h.mmio_hole_memkb.get_or_insert(0);
                let vga = h.vga_kind.get_or_insert_with(|| "cirrus".into()).clone();
                h.hdtype.get_or_insert_with(|| "ide".into());
                let video = match vga.as_str() {
                    "none" => 0,
                    "qxl" => 128 * 1024,
                    "std" => 16 * 1024,
                    _ => 8 * 1024,
                };
                b.video_memkb.get_or_insert(video);
                h.pae.get_or_insert(true);
                h.acpi_s3.get_or_insert(true);
                h.acpi_s4.get_or_insert(true);
                h.acpi_laptop_slate.get_or_insert(false);
                h.nx.get_or_insert(true);
                h.viridian.get_or_insert(false);
                h.hpet.get_or_insert(true);
                h.vpt_align.get_or_insert(true);
                h.altp2m.get_or_insert(false);
                h.usb.get_or_insert(false);
                h.vkb_device.get_or_insert(true);
                h.xen_platform_pci.get_or_insert(true);
                let spice = *h.spice.enable.get_or_insert(false);
                if !spice && h.spice.usbredirection > 0 {
                    h.spice.usbredirection = 0;
                }
                if h.usbversion == 0 && h.spice.usbredirection > 0 {
                    h.usbversion = 2;
                }
                h.boot.get_or_insert_with(|| "cda".into());
                if *h.vnc.enable.get_or_insert(true) {
                    h.vnc.findunused.get_or_insert(true);
                    h.vnc.listen.get_or_insert_with(|| "127.0.0.1".into());
                }
                if !*h.sdl.enable.get_or_insert(false) {
                    // libxl leaves opengl alone unless sdl is on.
                } else {
                    h.sdl.opengl.get_or_insert(false);
                }
                if spice {
                    h.spice.disable_ticketing.get_or_insert(false);
                    h.spice.agent_mouse.get_or_insert(true);
                    h.spice.vdagent.get_or_insert(false);
                    h.spice.clipboard_sharing.get_or_insert(false);
                }
                h.nographic.get_or_insert(false);
                h.gfx_passthru.get_or_insert(false);
                h.rdm_mem_boundary_memkb
                    .get_or_insert(RDM_MEM_BOUNDARY_MEMKB);
            }
            TypeInfo::Pv(p) => {
                p.e820_host.get_or_insert(false);
                b.video_memkb.get_or_insert(0);
            }
            TypeInfo::Pvh(p) => {
                if *p.pvshim.get_or_insert(false) {
                    p.pvshim_path.get_or_insert_with(|| PVSHIM_PATH.into());
                    p.pvshim_cmdline
                        .get_or_insert_with(|| PVSHIM_CMDLINE.into());
                }
                b.video_memkb.get_or_insert(0);
            }
        }
        // Shared by PVH and HVM. xkvm keeps `apic` for PVH as well.
        if ty != DomainType::Pv {
            b.timer_mode.get_or_insert(TimerMode::NoDelayForMissedTicks);
            b.apic.get_or_insert(true);
            b.nested_hvm.get_or_insert(false);
        }
        self.xkvm.xen_vapic.get_or_insert(false);
        self.defaults_applied = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_memory_is_a_mib_per_vcpu_plus_8k_per_mib() {
        assert_eq!(required_shadow_memkb(1024 * 1024, 2), 2048 + 8192);
    }

    #[test]
    fn pvh_gets_hvm_style_timer_and_keeps_apic() {
        let mut d = DomainConfig::default();
        d.c_info.type_ = DomainType::Pvh;
        d.b_info.u = TypeInfo::Pvh(PvhInfo::default());
        d.b_info.max_memkb = Some(512 * 1024);
        let d = d.with_defaults();
        assert_eq!(d.b_info.timer_mode, Some(TimerMode::NoDelayForMissedTicks));
        assert_eq!(d.b_info.apic, Some(true));
        assert_eq!(d.b_info.nested_hvm, Some(false));
        assert_eq!(d.c_info.hap, Some(true));
        assert_eq!(d.c_info.oos, Some(true));
        assert_eq!(d.b_info.shadow_memkb, Some(1024 + 4096));
        assert_eq!(d.b_info.pvh_shim(), None);
        assert_eq!(d.b_info.event_channels, EVENT_CHANNELS);
    }

    #[test]
    fn explicit_values_survive_defaulting() {
        let mut d = DomainConfig::default();
        d.c_info.type_ = DomainType::Hvm;
        d.b_info.u = TypeInfo::Hvm(Box::default());
        d.b_info.apic = Some(false);
        d.b_info.shadow_memkb = Some(8192);
        let d = d.with_defaults();
        assert_eq!(d.b_info.apic, Some(false));
        assert_eq!(d.b_info.shadow_memkb, Some(8192));
    }
}
