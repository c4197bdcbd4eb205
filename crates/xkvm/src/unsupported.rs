//! xl.cfg keys that parse but that xkvm cannot honour, in one place, so
//! no setting is dropped without a word. Each is either a warning (the
//! guest runs, without what the key asked for) or a refusal (running
//! without it would break the guest or mislead more than a warning can:
//! host devices or resources the guest expects to own).
//!
//! Keys libxl itself does not use for a PVH guest (HVM- and PV-only
//! settings such as `e820_host`, `videoram`, `stubdomain_*`, Arm keys)
//! are ignored here as libxl ignores them, without a word, as xl says
//! none. The full table, with what *is* applied, is
//! `docs/unsupported-keys.md`.

use xl_config::{Action, DomainConfig, TscMode};

/// What happens to a configuration that sets a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The domain starts without what the key asks for.
    Warn,
    /// The domain is not started.
    Refuse,
}

/// One key that cannot be honoured, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: &'static str,
    pub severity: Severity,
    pub why: String,
}

impl Finding {
    fn warn(key: &'static str, why: impl Into<String>) -> Self {
        Self {
            key,
            severity: Severity::Warn,
            why: why.into(),
        }
    }

    fn refuse(key: &'static str, why: impl Into<String>) -> Self {
        Self {
            key,
            severity: Severity::Refuse,
            why: why.into(),
        }
    }
}

/// Every key of `config` (as parsed, before libxl's defaults, so that
/// "unset" is still visible) that xkvm cannot honour.
pub fn audit(config: &DomainConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    scheduling(config, &mut out);
    time(config, &mut out);
    devices(config, &mut out);
    passthrough(config, &mut out);
    other(config, &mut out);
    out
}

/// Prints the warnings on stderr as xl prints its own (`WARNING: ...`),
/// then fails with every refusal, if any.
pub fn report(config: &DomainConfig) -> anyhow::Result<()> {
    let findings = audit(config);
    for f in findings.iter().filter(|f| f.severity == Severity::Warn) {
        eprintln!("WARNING: {}: {}", f.key, f.why);
    }
    let refused: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Refuse)
        .map(|f| format!("{}: {}", f.key, f.why))
        .collect();
    if !refused.is_empty() {
        anyhow::bail!(
            "{}: not started: {}",
            config.c_info.name,
            refused.join("; ")
        );
    }
    Ok(())
}

/// Xen's credit scheduler, cpupools and soft affinity have no Linux
/// counterpart a vCPU thread can be given with the same meaning.
fn scheduling(config: &DomainConfig, out: &mut Vec<Finding>) {
    let b = &config.b_info;
    if !b.vcpu_soft_affinity.is_empty() {
        out.push(Finding::warn(
            "cpus_soft",
            "soft affinity (a scheduler preference) has no Linux equivalent; not applied \
             (cpus= hard affinity is applied)",
        ));
    }
    let s = &b.sched_params;
    for (key, set) in [
        ("cpu_weight", s.weight.is_some()),
        ("cap", s.cap.is_some()),
        ("period", s.period.is_some()),
        ("slice", s.slice.is_some()),
        ("latency", s.latency.is_some()),
        ("extratime", s.extratime.is_some()),
    ] {
        if set {
            out.push(Finding::warn(
                key,
                "Xen scheduler parameter; vCPUs are Linux threads scheduled by the host \
                 (use cgroups on the xkvm process); not applied",
            ));
        }
    }
    if config.c_info.pool_name.is_some() {
        out.push(Finding::warn(
            "pool",
            "Xen cpupools do not exist under KVM; not applied (use cpus= to pin vCPUs)",
        ));
    }
    if !b.vnuma_nodes.is_empty() {
        out.push(Finding::warn(
            "vnuma",
            "no virtual NUMA topology is given to the guest (it sees one node)",
        ));
    }
}

fn time(config: &DomainConfig, out: &mut Vec<Finding>) {
    // libxl applies tsc_mode to every type (xc_domain_set_tsc_info). KVM
    // never emulates RDTSC, which is what "default" and "native" give a
    // guest on a host with an invariant TSC; "always_emulate" cannot be had.
    if config.b_info.tsc_mode == TscMode::AlwaysEmulate {
        out.push(Finding::warn(
            "tsc_mode",
            "\"always_emulate\" is not available under KVM; RDTSC runs natively",
        ));
    }
    if config.on_watchdog != Action::default() {
        out.push(Finding::warn(
            "on_watchdog",
            "the Xen watchdog (SCHEDOP_watchdog) is not provided, so a guest's xen_wdt \
             driver does not start; the action applies only to a guest that shuts itself \
             down with reason \"watchdog\"",
        ));
    }
}

/// PV devices without a backend in xkvm.
fn devices(config: &DomainConfig, out: &mut Vec<Finding>) {
    for (set, key, why) in [
        (
            !config.vfbs.is_empty(),
            "vfb",
            "no PV framebuffer (VNC/SDL) backend; the guest gets no display device",
        ),
        (
            !config.vkbs.is_empty(),
            "vkb",
            "no PV keyboard/pointer backend; the guest gets no such device",
        ),
        (
            !config.vdispls.is_empty(),
            "vdispl",
            "no PV display backend; the guest gets no such device",
        ),
        (
            !config.vsnds.is_empty(),
            "vsnd",
            "no PV sound backend; the guest gets no such device",
        ),
        (
            !config.pvcallsifs.is_empty(),
            "pvcalls",
            "no PV calls backend; the guest gets no such device",
        ),
        (
            !config.usbctrls.is_empty(),
            "usbctrl",
            "no PV USB backend; the guest gets no USB controller",
        ),
    ] {
        if set {
            out.push(Finding::warn(key, why));
        }
    }
    // A share or a TPM the guest relies on is like a disk: booting
    // without it breaks the guest later and less clearly than now.
    for (set, key, why) in [
        (
            !config.p9s.is_empty(),
            "p9",
            "9pfs shares are not provided (no 9pfs backend); the guest could not mount them",
        ),
        (
            !config.vtpms.is_empty(),
            "vtpm",
            "virtual TPMs are not provided (no vtpm backend); a guest that seals secrets or \
             measures its boot would run without its TPM",
        ),
    ] {
        if set {
            out.push(Finding::refuse(key, why));
        }
    }
}

/// Host devices and resources handed to the guest: the guest expects to
/// drive them, so starting without them is refused.
fn passthrough(config: &DomainConfig, out: &mut Vec<Finding>) {
    let b = &config.b_info;
    for (set, key) in [
        (!config.pcidevs.is_empty(), "pci"),
        (!config.usbdevs.is_empty(), "usbdev"),
        (!config.dtdevs.is_empty(), "dtdev"),
        (!b.irqs.is_empty(), "irqs"),
        (!b.ioports.is_empty(), "ioports"),
        (!b.iomem.is_empty(), "iomem"),
    ] {
        if set {
            out.push(Finding::refuse(
                key,
                "host device passthrough is not supported by xkvm",
            ));
        }
    }
}

fn other(config: &DomainConfig, out: &mut Vec<Finding>) {
    let b = &config.b_info;
    if config.c_info.ssid_label.is_some() || b.exec_ssid_label.is_some() {
        out.push(Finding::warn(
            "seclabel",
            "XSM/FLASK security labels are not enforced (there is no Xen security module)",
        ));
    }
    if b.altp2m.is_some() {
        out.push(Finding::warn(
            "altp2m",
            "alternate p2m views are not provided; HVMOP_altp2m fails",
        ));
    }
    if b.vmtrace_buf_kb > 0 {
        out.push(Finding::warn(
            "vmtrace_buf_kb",
            "processor trace buffers are not provided",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> DomainConfig {
        xl_config::parse("test.cfg", text.as_bytes())
            .expect("test config parses")
            .config
    }

    fn keys(text: &str, severity: Severity) -> Vec<&'static str> {
        audit(&parsed(&format!(
            "type='pvh'\nname='g'\nkernel='/k'\n{text}"
        )))
        .into_iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.key)
        .collect()
    }

    #[test]
    fn a_plain_pvh_config_has_nothing_to_say() {
        assert!(keys("memory=128\nvcpus=2\ncpus='1'\n", Severity::Warn).is_empty());
        assert!(keys(
            "rtc_timeoffset=5\nlocaltime=1\ne820_host=1\n",
            Severity::Warn
        )
        .is_empty());
    }

    #[test]
    fn scheduler_and_time_keys_warn() {
        let w = keys(
            "vcpus=1\ncpus_soft='0'\ncpu_weight=512\ncap=50\ntsc_mode='always_emulate'\n\
             on_watchdog='restart'\npool='p'\n",
            Severity::Warn,
        );
        for k in [
            "cpus_soft",
            "cpu_weight",
            "cap",
            "tsc_mode",
            "on_watchdog",
            "pool",
        ] {
            assert!(w.contains(&k), "{k} missing from {w:?}");
        }
        assert!(keys("tsc_mode='native'\n", Severity::Warn).is_empty());
    }

    #[test]
    fn pv_devices_without_a_backend_warn() {
        let w = keys(
            "vfb=['vnc=1']\nvkb=['backend-type=linux']\nusbctrl=['version=2']\n",
            Severity::Warn,
        );
        assert_eq!(w, ["vfb", "vkb", "usbctrl"]);
    }

    #[test]
    fn passthrough_is_refused() {
        let r = keys(
            "pci=['01:00.0']\nusbdev=['hostbus=1,hostaddr=2']\nirqs=[5]\n",
            Severity::Refuse,
        );
        assert_eq!(r, ["pci", "usbdev", "irqs"]);
        let err = report(&parsed(
            "type='pvh'\nname='g'\nkernel='/k'\npci=['01:00.0']\n",
        ))
        .expect_err("refused");
        assert!(
            err.to_string().contains("pci: host device passthrough"),
            "{err}"
        );
    }
}
