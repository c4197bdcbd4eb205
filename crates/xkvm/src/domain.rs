//! From an xl.cfg domain configuration to a running domain: maps libxl's
//! model (after libxl's defaults) onto the VMM's [`vmm::VmConfig`], and
//! applies the `on_*` actions when the guest stops.

use anyhow::{bail, Context};

use crate::bootloader;
use xl_config::{Action, DomainConfig, DomainType, TypeInfo};

/// Refuses the domain types KVM cannot boot (before any bootloader runs).
fn check_type(config: &DomainConfig) -> anyhow::Result<()> {
    let c = &config.c_info;
    if c.type_ == DomainType::Pv {
        // KVM has no PV mode. Xen's answer for PV kernels without PV
        // hardware support is the PV shim, which xl only reads for
        // `type = "pvh"` (xl_parse.c), so a `pvshim` line here is ignored
        // exactly as xl ignores it.
        bail!(
            "{}: type \"pv\" needs Xen's PV mode, which KVM cannot provide; \
             boot this PV kernel through Xen's PV shim instead: set \
             type = \"pvh\" and pvshim = 1 (xl reads pvshim only for type \"pvh\"; \
             pvshim_path defaults to {})",
            c.name,
            xl_config::defaults::PVSHIM_PATH
        );
    }
    if c.type_ != DomainType::Pvh {
        bail!(
            "{}: type \"{}\" guests are not supported yet; only type = \"pvh\" boots",
            c.name,
            c.type_.name()
        );
    }
    Ok(())
}

/// Runs the domain's `bootloader=` (libxl's `libxl__bootloader_run`, once
/// per boot) when it has one; `None` for a direct kernel boot. Refuses the
/// domain types we cannot boot before running anything.
pub fn run_bootloader(
    config: &DomainConfig,
    session: bootloader::Session<'_>,
) -> anyhow::Result<Option<bootloader::Chosen>> {
    check_type(config)?;
    if !bootloader::applies(config) {
        return Ok(None);
    }
    let chosen = bootloader::run(config, session)?;
    tracing::info!(
        "bootloader chose kernel {}, ramdisk {}, command line {:?}",
        chosen.kernel.display(),
        chosen
            .ramdisk
            .as_deref()
            .map_or_else(|| "none".into(), |r| r.display().to_string()),
        chosen.cmdline.as_deref().unwrap_or("")
    );
    Ok(Some(chosen))
}

/// Builds the VMM's configuration for `config` (which must have had
/// [`DomainConfig::with_defaults`] applied) as domain `domid`, booting what
/// `boot` (the bootloader's choice, from [`run_bootloader`]) names, or the
/// config's kernel without a bootloader.
pub fn vm_config(
    config: &DomainConfig,
    domid: u32,
    boot: Option<&bootloader::Chosen>,
) -> anyhow::Result<vmm::VmConfig> {
    let c = &config.c_info;
    let b = &config.b_info;
    check_type(config)?;
    // libxl (domcreate_bootloader_done): with a bootloader, its kernel,
    // ramdisk and args are the domain's, and nothing of the config's.
    // HVM ignores bootloader= (libxl skips it there).
    let (kernel, ramdisk, cmdline) = match (boot, &b.bootloader) {
        (Some(chosen), _) => (
            chosen.kernel.clone(),
            chosen.ramdisk.clone(),
            chosen.cmdline.clone().unwrap_or_default(),
        ),
        (None, Some(bootloader)) if bootloader::applies(config) => {
            bail!("bootloader \"{bootloader}\" has not run (internal error)")
        }
        (None, _) => (
            b.kernel
                .as_deref()
                .context("no kernel given (set kernel = \"...\" in the config)")?
                .into(),
            b.ramdisk.as_deref().map(std::path::PathBuf::from),
            b.cmdline.clone().unwrap_or_default(),
        ),
    };
    let ramdisk = ramdisk.map(|path| vmm::ModuleSpec {
        path,
        cmdline: String::new(),
    });

    let mut vm = vmm::VmConfig::new(c.name.clone(), "");
    let pvshim = match &b.u {
        TypeInfo::Pvh(p) if p.pvshim == Some(true) => Some(p),
        _ => None,
    };
    match pvshim {
        // libxl: the shim is the kernel, the PV kernel is module 0 with the
        // domain's command line, and the shim gets pvshim_cmdline + extra.
        Some(p) => {
            vm.kernel = p
                .pvshim_path
                .clone()
                .context("pvshim_path has no default")?
                .into();
            vm.cmdline = [p.pvshim_cmdline.as_deref(), p.pvshim_extra.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            vm.modules.push(vmm::ModuleSpec {
                path: kernel,
                cmdline,
            });
        }
        None => {
            vm.kernel = kernel;
            vm.cmdline = cmdline;
        }
    }
    vm.modules.extend(ramdisk);

    vm.domid = domid;
    vm.uuid = uuid_bytes(&c.uuid)?;
    let max_memkb = b
        .max_memkb
        .context("max_memkb unset: defaults not applied")?;
    let target_memkb = b.target_memkb.unwrap_or(max_memkb);
    vm.memory_mib = target_memkb.div_ceil(1024);
    vm.max_memory_mib = max_memkb.div_ceil(1024).max(vm.memory_mib);
    vm.max_vcpus = b.max_vcpus.max(1);
    vm.vcpus = u32::try_from(b.avail_vcpus.len())
        .unwrap_or(u32::MAX)
        .clamp(1, vm.max_vcpus);
    vm.xen_version = (
        u16::try_from(config.xkvm.xen_version.0).context("xen_version: major too large")?,
        u16::try_from(config.xkvm.xen_version.1).context("xen_version: minor too large")?,
    );
    vm.viridian = match &b.u {
        TypeInfo::Hvm(h) => h.viridian.unwrap_or(false),
        _ => false,
    };
    vm.apic = b.apic.unwrap_or(true);
    vm.nested_hvm = b.nested_hvm.unwrap_or(false);
    vm.xen_vapic = config.xkvm.xen_vapic.unwrap_or(false);
    vm.cpuid_policy = cpuid_policy(&b.cpuid);
    vm.timer_mode = match b.timer_mode {
        Some(xl_config::TimerMode::DelayForMissedTicks) => vmm::TimerMode::DelayForMissedTicks,
        Some(xl_config::TimerMode::NoMissedTicksPending) => vmm::TimerMode::NoMissedTicksPending,
        Some(xl_config::TimerMode::OneMissedTickPending) => vmm::TimerMode::OneMissedTickPending,
        Some(xl_config::TimerMode::NoDelayForMissedTicks) | None => {
            vmm::TimerMode::NoDelayForMissedTicks
        }
    };
    vm.max_grant_frames = b.max_grant_frames.unwrap_or(64);
    vm.max_event_channels = b.event_channels;
    vm.max_pirq = config.xkvm.xen_evtchn_max_pirq;
    // libxl__build_pre: vCPU i gets hard map i (a single `cpus=` string is
    // already one map per vCPU). Soft affinity has no Linux counterpart
    // (crate::unsupported warns).
    // The maps are read again against this host: the parsed ones model
    // the 8-CPU host `create -n` answers for.
    let host_cpus = xl_config::cpus::real_host_cpus();
    vm.vcpu_affinity = b
        .vcpu_hard_affinity_specs
        .iter()
        .map(|spec| xl_config::cpus::parse_cpurange_for(spec, host_cpus))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("cpus: {e}"))?;
    vm.time_offset_seconds = time_offset_seconds(b.rtc_timeoffset, b.localtime == Some(true))?;
    vm.disks = config
        .disks
        .iter()
        .map(disk_spec)
        .collect::<anyhow::Result<_>>()?;
    // libxl__init_console_from_channel: channel i is console device i + 1.
    vm.consoles = config
        .channels
        .iter()
        .enumerate()
        .map(|(i, ch)| vmm::ConsoleSpec {
            devid: i as u32 + 1,
            name: ch.name.clone(),
            host: match &ch.connection {
                xl_config::ChannelConnection::Pty => vmm::ConsoleHost::Pty,
                xl_config::ChannelConnection::Socket { path } => {
                    vmm::ConsoleHost::Socket(path.into())
                }
            },
        })
        .collect();
    vm.vifs = config
        .nics
        .iter()
        .enumerate()
        .map(|(i, n)| vif_spec(n, i, &vm.uuid))
        .collect();
    Ok(vm)
}

/// The domain's time offset as libxl__arch_domain_create computes it:
/// `rtc_timeoffset` (an `int32_t` there, so a "negative" u32 wraps back)
/// plus, with `localtime = 1`, the host's current UTC offset
/// (`tm_gmtoff` of `localtime_r`).
fn time_offset_seconds(rtc_timeoffset: u32, localtime: bool) -> anyhow::Result<i32> {
    let mut offset = rtc_timeoffset as i32;
    if localtime {
        offset = offset.wrapping_add(host_utc_offset()?);
    }
    Ok(offset)
}

/// The host's UTC offset now, in seconds (east positive).
fn host_utc_offset() -> anyhow::Result<i32> {
    // SAFETY: time(NULL) has no preconditions.
    let t = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: all-zero is a valid `struct tm`; localtime_r fills it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // thread-safe variant.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        bail!("localtime: cannot read the host's time zone (localtime_r failed)");
    }
    i32::try_from(tm.tm_gmtoff).context("localtime: host UTC offset out of range")
}

/// `cpuid=`'s leaves for the VMM, which applies them over its default
/// CPUID. MSR_ARCH_CAPS bits (the `msr` half of the policy) are not
/// applied: KVM's MSR is the host's.
fn cpuid_policy(p: &xl_config::cpuid::CpuidPolicy) -> Vec<vmm::cpuid::CpuidOverride> {
    for m in &p.msrs {
        tracing::warn!(
            "cpuid: MSR {:#x} policy {} is not applied (only CPUID leaves are)",
            m.index,
            m.policy
        );
    }
    p.leaves
        .iter()
        .map(|l| vmm::cpuid::CpuidOverride {
            leaf: l.leaf,
            subleaf: l.subleaf,
            regs: l.regs.clone(),
        })
        .collect()
}

/// One `vif=` entry for the network backend. An unset MAC gets Xen's OUI
/// and three bytes derived from the domain's UUID and the device id (libxl
/// picks random ones). `script=` is not run (logged).
/// The script libxl runs for a vif when `script=` is not given.
const LIBXL_DEFAULT_VIF_SCRIPT: &str = "vif-bridge";

/// The bridge a vif joins: `bridge=` (libxl's default `xenbr0`), unless no
/// such bridge exists on this host, where the vif stays a plain TAP device
/// (Xen would fail the device; most KVM hosts have no xenbr0).
fn vif_bridge(devid: u32, bridge: Option<&str>) -> Option<String> {
    let bridge = bridge?;
    if std::path::Path::new("/sys/class/net").join(bridge).exists() {
        return Some(bridge.to_owned());
    }
    tracing::warn!("vif {devid}: bridge {bridge} does not exist; the vif is a plain TAP device");
    None
}

pub(crate) fn vif_spec(n: &xl_config::Nic, index: usize, uuid: &[u8; 16]) -> vmm::VifSpec {
    let devid = u32::try_from(n.devid).unwrap_or(index as u32);
    let mut mac = n.mac;
    if mac == [0; 6] {
        mac = [
            0x00,
            0x16,
            0x3e,
            uuid[13] & 0x7f,
            uuid[14],
            uuid[15].wrapping_add(devid as u8),
        ];
    }
    let net = vmm::NetSpec {
        devid,
        mac: mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        ifname: n.ifname.clone(),
        mtu: u32::try_from(n.mtu).ok().filter(|&m| m > 0).unwrap_or(1500),
        bridge: vif_bridge(devid, n.bridge.as_deref()),
        rate: (n.rate_bytes_per_interval != 0)
            .then_some((n.rate_bytes_per_interval, n.rate_interval_usecs)),
    };
    // The store socket is the run directory's; the VMM process fills it in.
    // libxl's default script (vif-bridge) runs only where Xen's scripts are
    // installed; elsewhere the backend attaches the TAP to the bridge itself.
    let hotplug = vmm::NetHotplug {
        script: n.script.clone().filter(|s| s != LIBXL_DEFAULT_VIF_SCRIPT),
        xenstored_path: None,
        gatewaydev: n.gatewaydev.clone(),
    };
    vmm::VifSpec { net, hotplug }
}

/// One `disk=` entry for the PV block backend: raw and qcow2 images and
/// block devices; other formats and empty drives are refused with the
/// reason.
pub(crate) fn disk_spec(d: &xl_config::Disk) -> anyhow::Result<vmm::DiskSpec> {
    let vdev = d
        .vdev
        .clone()
        .context("disk without vdev (e.g. \"vdev=xvda\")")?;
    let format = match d.format {
        None | Some(xl_config::DiskFormat::Raw) => vmm::DiskImageFormat::Raw,
        Some(xl_config::DiskFormat::Qcow2) => vmm::DiskImageFormat::Qcow2,
        Some(f) => bail!(
            "disk {vdev}: format {} is not supported (raw, qcow2 and block devices only)",
            f.name()
        ),
    };
    let path = d
        .pdev_path
        .clone()
        .filter(|p| !p.is_empty())
        .with_context(|| format!("disk {vdev}: empty drives are not supported (give target=)"))?;
    Ok(vmm::DiskSpec {
        path: path.into(),
        vdev,
        readonly: d.readwrite == 0,
        cdrom: d.is_cdrom != 0,
        discard: d.discard_enable.unwrap_or(true),
        format,
    })
}

/// `xxxxxxxx-xxxx-...` to the 16 bytes XenStore's `/vm/<uuid>` and the
/// guest see.
pub(crate) fn uuid_bytes(uuid: &str) -> anyhow::Result<[u8; 16]> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    if hex.len() != 32 {
        bail!("uuid {uuid:?} is not 32 hex digits");
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .with_context(|| format!("uuid {uuid:?} is not hexadecimal"))?;
    }
    Ok(out)
}

/// What to do after the guest stopped for `exit`, per the `on_*` keys.
pub fn action_for(config: &DomainConfig, exit: vmm::DomainExit) -> Action {
    match exit {
        vmm::DomainExit::Poweroff | vmm::DomainExit::Suspend => config.on_poweroff,
        vmm::DomainExit::Reboot => config.on_reboot,
        vmm::DomainExit::Crash => config.on_crash,
        vmm::DomainExit::Watchdog => config.on_watchdog,
        vmm::DomainExit::SoftReset => config.on_soft_reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> DomainConfig {
        xl_config::parse("test.cfg", text.as_bytes())
            .expect("test config parses")
            .config
            .with_defaults()
    }

    #[test]
    fn pvh_config_maps_memory_vcpus_and_cmdline() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/k'\nmemory=256\nmaxmem=512\nvcpus=2\nmaxvcpus=4\n\
             extra='console=hvc0'\nramdisk='/initrd'\n",
        );
        let vm = vm_config(&cfg, 7, None).expect("maps");
        assert_eq!(vm.domid, 7);
        assert_eq!((vm.memory_mib, vm.max_memory_mib), (256, 512));
        assert_eq!((vm.vcpus, vm.max_vcpus), (2, 4));
        assert_eq!(vm.kernel, std::path::PathBuf::from("/k"));
        assert!(vm.cmdline.contains("console=hvc0"), "{:?}", vm.cmdline);
        assert_eq!(vm.modules.len(), 1);
        assert_eq!(vm.modules[0].path, std::path::PathBuf::from("/initrd"));
    }

    #[test]
    fn pvshim_makes_the_pv_kernel_module_zero_with_its_cmdline() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/pv'\ncmdline='root=/dev/xvda'\npvshim=1\n\
             pvshim_extra='loglvl=all'\n",
        );
        let vm = vm_config(&cfg, 1, None).expect("maps");
        assert_eq!(
            vm.kernel,
            std::path::PathBuf::from("/usr/lib/xen-4.17/boot/xen-shim")
        );
        assert_eq!(vm.cmdline, "pv-shim console=xen,pv loglvl=all");
        assert_eq!(vm.modules[0].path, std::path::PathBuf::from("/pv"));
        assert_eq!(vm.modules[0].cmdline, "root=/dev/xvda");
    }

    #[test]
    fn pvshim_makes_the_ramdisk_module_one() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/pv'\nramdisk='/initrd'\npvshim=1\n\
             pvshim_path='/shim'\n",
        );
        let vm = vm_config(&cfg, 1, None).expect("maps");
        assert_eq!(vm.kernel, std::path::PathBuf::from("/shim"));
        let paths: Vec<_> = vm.modules.iter().map(|m| m.path.clone()).collect();
        assert_eq!(paths, ["/pv", "/initrd"].map(std::path::PathBuf::from));
        assert_eq!(vm.modules[1].cmdline, "");
    }

    #[test]
    fn the_bootloaders_choice_replaces_kernel_ramdisk_and_cmdline() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/cfg-k'\nramdisk='/cfg-r'\nextra='cfg'\n\
             bootloader='pygrub'\ndisk=['/img,raw,xvda,rw']\n",
        );
        let chosen = bootloader::Chosen::fixed("/bl/k", Some("/bl/r"), Some("root=/dev/xvda1"));
        let vm = vm_config(&cfg, 1, Some(&chosen)).expect("maps");
        assert_eq!(vm.kernel, std::path::PathBuf::from("/bl/k"));
        assert_eq!(vm.cmdline, "root=/dev/xvda1");
        let paths: Vec<_> = vm.modules.iter().map(|m| m.path.clone()).collect();
        assert_eq!(paths, [std::path::PathBuf::from("/bl/r")]);
        // No ramdisk and no args in the output: none at all, as in libxl.
        let bare = bootloader::Chosen::fixed("/bl/k", None, None);
        let vm = vm_config(&cfg, 1, Some(&bare)).expect("maps");
        assert!(vm.modules.is_empty() && vm.cmdline.is_empty(), "{vm:?}");
    }

    #[test]
    fn with_pvshim_the_bootloaders_kernel_is_the_shims_module() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nbootloader='pygrub'\npvshim=1\npvshim_path='/shim'\n\
             disk=['/img,raw,xvda,rw']\n",
        );
        let chosen = bootloader::Chosen::fixed("/bl/pv", Some("/bl/r"), Some("console=hvc0"));
        let vm = vm_config(&cfg, 1, Some(&chosen)).expect("maps");
        assert_eq!(vm.kernel, std::path::PathBuf::from("/shim"));
        let mods: Vec<_> = vm
            .modules
            .iter()
            .map(|m| (m.path.clone(), m.cmdline.clone()))
            .collect();
        assert_eq!(
            mods,
            [
                ("/bl/pv".into(), "console=hvc0".to_owned()),
                ("/bl/r".into(), String::new())
            ]
        );
    }

    #[test]
    fn a_bootloader_config_is_not_booted_without_its_choice() {
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\nbootloader='pygrub'\n");
        assert!(vm_config(&cfg, 1, None).is_err());
    }

    #[test]
    fn type_pv_is_refused_with_the_pvshim_way_to_boot_it() {
        // xl ignores pvshim for type "pv", so the line changes nothing.
        for extra in ["", "pvshim=1\n"] {
            let cfg = parsed(&format!("type='pv'\nname='g'\nkernel='/pv'\n{extra}"));
            let err = vm_config(&cfg, 1, None).expect_err("type pv is refused");
            let msg = format!("{err:#}");
            assert!(msg.contains("type = \"pvh\" and pvshim = 1"), "{msg}");
        }
    }

    #[test]
    fn xkvm_keys_and_pvh_options_reach_the_vmm() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/k'\nxen_version='4.5'\napic=0\nnestedhvm=1\n\
             timer_mode='one_missed_tick_pending'\nmax_grant_frames=8\nxen_evtchn_max_pirq=64\n",
        );
        let vm = vm_config(&cfg, 1, None).expect("maps");
        assert_eq!(vm.xen_version, (4, 5));
        assert!(!vm.apic);
        assert!(vm.nested_hvm);
        assert_eq!(vm.timer_mode, vmm::TimerMode::OneMissedTickPending);
        assert_eq!(vm.max_grant_frames, 8);
        assert_eq!(vm.max_pirq, 64);
    }

    #[test]
    fn cpuid_policy_reaches_the_vmm_in_both_spellings() {
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\ncpuid='host,bmi1=0,tm=0'\n");
        let vm = vm_config(&cfg, 1, None).expect("maps");
        let x = "x".repeat(32);
        let mut ebx = x.clone().into_bytes();
        ebx[31 - 3] = b'0';
        let mut edx = x.clone().into_bytes();
        edx[31 - 29] = b'0';
        let s = |v: Vec<u8>| Some(String::from_utf8(v).expect("ascii"));
        assert_eq!(
            vm.cpuid_policy,
            [
                vmm::cpuid::CpuidOverride {
                    leaf: 7,
                    subleaf: Some(0),
                    regs: [None, s(ebx), None, None],
                },
                vmm::cpuid::CpuidOverride {
                    leaf: 1,
                    subleaf: None,
                    regs: [None, None, None, s(edx)],
                },
            ]
        );
        let line = format!("0x1:ecx=0{}", "x".repeat(31));
        let cfg = parsed(&format!(
            "type='pvh'\nname='g'\nkernel='/k'\ncpuid=['{line}', '0xd,1:eax={x}']\n"
        ));
        let vm = vm_config(&cfg, 1, None).expect("maps");
        assert_eq!(vm.cpuid_policy.len(), 2);
        assert_eq!(
            vm.cpuid_policy[0].regs[2].as_deref(),
            Some(&line["0x1:ecx=".len()..])
        );
        assert_eq!(
            (vm.cpuid_policy[1].leaf, vm.cpuid_policy[1].subleaf),
            (0xd, Some(1))
        );
        let none = parsed("type='pvh'\nname='g'\nkernel='/k'\n");
        assert!(vm_config(&none, 1, None)
            .expect("maps")
            .cpuid_policy
            .is_empty());
    }

    #[test]
    fn disks_reach_the_block_backend() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/k'\n\
             disk=['/img/a.raw,raw,xvda,rw', 'vdev=hdc,access=ro,devtype=cdrom,no-discard,target=/img/cd.iso']\n",
        );
        let vm = vm_config(&cfg, 3, None).expect("maps");
        assert_eq!(vm.disks.len(), 2);
        assert_eq!(vm.disks[0].path, std::path::PathBuf::from("/img/a.raw"));
        assert_eq!(vm.disks[0].vdev, "xvda");
        assert!(!vm.disks[0].readonly && !vm.disks[0].cdrom && vm.disks[0].discard);
        assert_eq!(vm.disks[1].vdev, "hdc");
        assert!(vm.disks[1].readonly && vm.disks[1].cdrom && !vm.disks[1].discard);
        assert_eq!(vm.disks[0].format, vmm::DiskImageFormat::Raw);
        let qcow2 = parsed("type='pvh'\nname='g'\nkernel='/k'\ndisk=['/a.q,qcow2,xvda,rw']\n");
        let vm = vm_config(&qcow2, 3, None).expect("qcow2 maps");
        assert_eq!(vm.disks[0].format, vmm::DiskImageFormat::Qcow2);
        for f in ["qcow", "vhd", "qed"] {
            let other = parsed(&format!(
                "type='pvh'\nname='g'\nkernel='/k'\ndisk=['/a.q,{f},xvda,rw']\n"
            ));
            let err = vm_config(&other, 3, None).expect_err("refused").to_string();
            assert!(err.contains(&format!("format {f} ")), "{err}");
        }
    }

    #[test]
    fn vifs_keep_mac_and_get_defaults() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/k'\n\
             vif=['mac=00:16:3e:01:02:03,bridge=xenbr0,rate=10Mb/s', '']\n",
        );
        let vm = vm_config(&cfg, 3, None).expect("maps");
        assert_eq!(vm.vifs.len(), 2);
        assert_eq!(vm.vifs[0].net.mac, "00:16:3e:01:02:03");
        // No xenbr0 on the test host: a plain TAP (vif_bridge's rule).
        let xenbr0 = std::path::Path::new("/sys/class/net/xenbr0").exists();
        assert_eq!(vm.vifs[0].net.bridge.is_some(), xenbr0);
        assert_eq!(vm.vifs[0].hotplug.script, None, "libxl's default script");
        assert_eq!(vm.vifs[0].net.mtu, 1500);
        assert!(vm.vifs[0].net.rate.is_some(), "rate= reaches the backend");
        assert_eq!(vm.vifs[1].net.rate, None);
        assert!(vm.vifs[1].net.mac.starts_with("00:16:3e:"));
        assert_eq!(vm.vifs[1].net.devid, 1);
    }

    #[test]
    fn an_explicit_vif_script_and_gatewaydev_reach_the_backend() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/k'\nvif=['script=/etc/xkvm/my-vif,gatewaydev=eth9']\n",
        );
        let vm = vm_config(&cfg, 3, None).expect("maps");
        assert_eq!(
            vm.vifs[0].hotplug.script.as_deref(),
            Some("/etc/xkvm/my-vif")
        );
        assert_eq!(vm.vifs[0].hotplug.gatewaydev.as_deref(), Some("eth9"));
    }

    #[test]
    fn channels_become_console_devices_from_1() {
        let cfg = parsed(
            "type='pvh'\nname='g'\nkernel='/k'\n\
             channel=['name=org.a,connection=pty', 'name=org.b,connection=socket,path=/tmp/b.sock']\n",
        );
        let vm = vm_config(&cfg, 3, None).expect("maps");
        assert_eq!(vm.consoles.len(), 2);
        assert_eq!(vm.consoles[0].devid, 1);
        assert_eq!(vm.consoles[0].name.as_deref(), Some("org.a"));
        assert_eq!(vm.consoles[0].host, vmm::ConsoleHost::Pty);
        assert_eq!(
            vm.consoles[1].host,
            vmm::ConsoleHost::Socket("/tmp/b.sock".into())
        );
    }

    #[test]
    fn non_pvh_types_are_refused_with_the_reason() {
        let cfg = parsed("type='hvm'\nname='g'\n");
        let err = vm_config(&cfg, 1, None).expect_err("hvm not supported yet");
        assert!(err.to_string().contains("only type = \"pvh\""), "{err}");
    }

    #[test]
    fn cpus_pins_every_vcpu_and_a_list_pins_each() {
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\nvcpus=2\ncpus='0-1,^0'\n");
        let vm = vm_config(&cfg, 1, None).expect("maps");
        assert_eq!(vm.vcpu_affinity, [vec![1], vec![1]]);
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\nvcpus=2\ncpus=['0', '1']\n");
        let vm = vm_config(&cfg, 1, None).expect("maps");
        assert_eq!(vm.vcpu_affinity, [vec![0], vec![1]]);
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\n");
        assert!(vm_config(&cfg, 1, None)
            .expect("maps")
            .vcpu_affinity
            .is_empty());
    }

    #[test]
    fn rtc_timeoffset_and_localtime_make_the_time_offset() {
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\nrtc_timeoffset=3600\n");
        assert_eq!(
            vm_config(&cfg, 1, None).expect("maps").time_offset_seconds,
            3600
        );
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\nrtc_timeoffset=4294967236\n");
        assert_eq!(
            vm_config(&cfg, 1, None).expect("maps").time_offset_seconds,
            -60
        );
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\nrtc_timeoffset=10\nlocaltime=1\n");
        let host = host_utc_offset().expect("host offset");
        assert_eq!(
            vm_config(&cfg, 1, None).expect("maps").time_offset_seconds,
            10 + host
        );
        let cfg = parsed("type='pvh'\nname='g'\nkernel='/k'\n");
        assert_eq!(
            vm_config(&cfg, 1, None).expect("maps").time_offset_seconds,
            0
        );
    }

    #[test]
    fn uuid_text_becomes_bytes() {
        let b = uuid_bytes("00112233-4455-6677-8899-aabbccddeeff").expect("valid");
        assert_eq!(b[0], 0x00);
        assert_eq!(b[15], 0xff);
        assert!(uuid_bytes("nope").is_err());
    }
}
