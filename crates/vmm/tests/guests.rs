//! Guest tests on `/dev/kvm`: each boots one of the small PVH kernels from
//! `xkvm-guests` (or Debian's GRUB for Xen PVH) with [`vmm::run_domain`],
//! then asserts its verdict line (`XKVM-TEST <name>: PASS`), the values it
//! printed against the domain's configuration, and how the domain ended.
//!
//! Without a usable `/dev/kvm` every test skips with a printed reason, except
//! when `CI=true`, where that is a failure. A failing test prints everything
//! the guest wrote (its `console_io` log and its console ring).

use std::path::{Path, PathBuf};

use vmm::{DomainExit, ModuleSpec, VmConfig};

mod common;
use common::guest_run::{boot, parse_hex, Run};
use common::{ci, kvm_usable};

/// A domain config for test guest `name` with libxl's defaults.
fn config(name: &str) -> VmConfig {
    let mut cfg = VmConfig::new(format!("xkvm-test-{name}"), xkvm_guests::path(name));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    cfg
}

// ---- demo: console_io and the console ring, 64- and 32-bit ----

fn demo(name: &str) {
    if !kvm_usable(name) {
        return;
    }
    let run = boot(name, config(name), None);
    run.assert_exit(DomainExit::Poweroff);
    run.assert_pass(name);
    let greeting = "Hello from a Xen PVH guest on xkvm!";
    assert!(
        run.log.contains(greeting),
        "no greeting on console_io\n{}",
        run.report()
    );
    assert!(
        run.console.contains(greeting),
        "no greeting on the console ring\n{}",
        run.report()
    );
}

#[test]
fn demo_greets_on_console_io_and_console_ring_then_powers_off() {
    demo("demo");
}

#[test]
fn demo32_runs_as_a_32bit_guest_without_paging() {
    demo("demo32");
}

// ---- start of day ----

fn temp_file(tag: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("xkvm-guests-{}-{tag}", std::process::id()));
    std::fs::write(&path, contents).expect("write a module file into the temp dir");
    path
}

#[test]
fn startinfo_carries_cmdline_modules_memmap_and_acpi_madt() {
    if !kvm_usable("startinfo") {
        return;
    }
    let payload = "XKVM-MODULE-0 payload bytes";
    let module = temp_file("module", payload.as_bytes());
    let mut cfg = config("startinfo");
    cfg.memory_mib = 96;
    cfg.max_memory_mib = 96;
    cfg.vcpus = 2;
    cfg.max_vcpus = 3;
    cfg.cmdline = "console=hvc0 xkvm.test=startinfo".into();
    cfg.modules = vec![ModuleSpec {
        path: module.clone(),
        cmdline: "initrd-args here".into(),
    }];
    let run = boot("startinfo", cfg, None);
    let _ = std::fs::remove_file(&module);
    run.assert_exit(DomainExit::Poweroff);
    run.assert_pass("startinfo");

    assert!(
        run.value("startinfo at")
            .contains("magic 0x336ec578 version 1"),
        "{}",
        run.report()
    );
    assert_eq!(
        run.value("cmdline:"),
        "console=hvc0 xkvm.test=startinfo",
        "{}",
        run.report()
    );
    assert_eq!(run.value("modules"), "1", "{}", run.report());
    let m0 = run.value("module 0 size");
    assert!(
        m0.starts_with(&format!(
            "{:#x} cmdline 'initrd-args here' data '{payload}'",
            payload.len()
        )),
        "module 0 is {m0:?}\n{}",
        run.report()
    );
    assert_eq!(
        run.hex("ram below 4G"),
        96 << 20,
        "RAM in the memory map\n{}",
        run.report()
    );
    let ram_at_0 = run.values("memmap 0 addr").next().unwrap_or("");
    assert!(
        ram_at_0.starts_with("0x0 size") && ram_at_0.ends_with("type 1"),
        "{}",
        run.report()
    );

    // One LAPIC per possible vCPU, enabled for the online ones, Xen's ids.
    let lapics: Vec<&str> = run.values("madt lapic uid").collect();
    assert_eq!(
        lapics,
        ["0 id 0 enabled 1", "1 id 2 enabled 1", "2 id 4 enabled 0"],
        "{}",
        run.report()
    );
    assert_eq!(run.value("madt lapics"), "3 enabled 2", "{}", run.report());
}

#[test]
fn memory_beyond_the_mmio_hole_lands_above_4gib() {
    if !kvm_usable("startinfo") {
        return;
    }
    let mut cfg = config("startinfo");
    cfg.memory_mib = 4352;
    cfg.max_memory_mib = 4352;
    let run = boot("startinfo", cfg, None);
    run.assert_exit(DomainExit::Poweroff);
    run.assert_pass("startinfo");
    // A PVH domain has no device model, so libxl starts the MMIO hole at the
    // lowest of the special pages, the LAPIC and the ACPI tables
    // (ACPI_INFO_PHYSICAL_ADDRESS, 0xFC000000).
    assert_eq!(run.hex("ram below 4G"), 0xFC00_0000, "{}", run.report());
    assert_eq!(
        run.hex("ram above 4G"),
        (4352 << 20) - 0xFC00_0000,
        "{}",
        run.report()
    );
    assert!(
        run.values("memmap")
            .any(|l| l.ends_with("addr 0x100000000 size 0x14000000 type 1")),
        "no RAM entry at 4 GiB\n{}",
        run.report()
    );
}

// ---- CPUID ----

/// The Xen leaves the `cpuid` guest printed: leaf -> [eax, ebx, ecx, edx].
fn cpuid_leaves(run: &Run) -> std::collections::BTreeMap<u32, [u32; 4]> {
    let mut leaves = std::collections::BTreeMap::new();
    for line in run.values("cpuid leaf") {
        // "0x40000001.0: 00040011 00000000 00000000 00000000"
        let Some((leaf, regs)) = line.split_once(':') else {
            continue;
        };
        let Some(leaf) = leaf.strip_suffix(".0") else {
            continue;
        };
        let regs: Vec<u32> = regs
            .split_whitespace()
            .filter_map(|r| u32::from_str_radix(r, 16).ok())
            .collect();
        if let (Some(leaf), [a, b, c, d]) = (parse_hex(leaf), regs.as_slice()) {
            leaves.insert(leaf as u32, [*a, *b, *c, *d]);
        }
    }
    leaves
}

fn cpuid_run(
    version: (u16, u16),
    viridian: bool,
) -> Option<(Run, std::collections::BTreeMap<u32, [u32; 4]>)> {
    if !kvm_usable("cpuid") {
        return None;
    }
    let mut cfg = config("cpuid");
    cfg.xen_version = version;
    cfg.viridian = viridian;
    cfg.domid = 7;
    let run = boot("cpuid", cfg, None);
    run.assert_exit(DomainExit::Poweroff);
    run.assert_pass("cpuid");
    assert_eq!(
        run.value("xen_version"),
        format!("{}.{}", version.0, version.1),
        "{}",
        run.report()
    );
    let leaves = cpuid_leaves(&run);
    Some((run, leaves))
}

const VCPU_ID_PRESENT: u32 = 1 << 3;
const DOMID_PRESENT: u32 = 1 << 4;
const UPCALL_VECTOR: u32 = 1 << 6;

#[test]
fn cpuid_xen_4_4_has_no_hvm_leaf() {
    let Some((run, leaves)) = cpuid_run((4, 4), false) else {
        return;
    };
    assert_eq!(
        run.value("cpuid base"),
        "0x40000000 max 0x40000003",
        "{}",
        run.report()
    );
    assert_eq!(
        leaves.get(&0x4000_0001).map(|l| l[0]),
        Some(0x0004_0004),
        "{}",
        run.report()
    );
    assert!(!leaves.contains_key(&0x4000_0004), "{}", run.report());
}

#[test]
fn cpuid_xen_4_5_has_the_hvm_leaf_without_vcpu_id() {
    let Some((run, leaves)) = cpuid_run((4, 5), false) else {
        return;
    };
    assert_eq!(
        run.value("cpuid base"),
        "0x40000000 max 0x40000004",
        "{}",
        run.report()
    );
    let hvm = leaves.get(&0x4000_0004).copied().unwrap_or_default();
    assert_eq!(
        hvm[0] & (VCPU_ID_PRESENT | DOMID_PRESENT | UPCALL_VECTOR),
        0,
        "{}",
        run.report()
    );
}

#[test]
fn cpuid_xen_4_6_reports_the_vcpu_id() {
    let Some((run, leaves)) = cpuid_run((4, 6), false) else {
        return;
    };
    let hvm = leaves.get(&0x4000_0004).copied().unwrap_or_default();
    assert_ne!(hvm[0] & VCPU_ID_PRESENT, 0, "{}", run.report());
    assert_eq!(hvm[1], 0, "vCPU id of the boot vCPU\n{}", run.report());
    assert_eq!(
        hvm[0] & (DOMID_PRESENT | UPCALL_VECTOR),
        0,
        "{}",
        run.report()
    );
}

#[test]
fn cpuid_xen_4_17_reports_domid_and_upcall_vector() {
    let Some((run, leaves)) = cpuid_run((4, 17), false) else {
        return;
    };
    assert_eq!(
        leaves.get(&0x4000_0001).map(|l| l[0]),
        Some(0x0004_0011),
        "{}",
        run.report()
    );
    let hvm = leaves.get(&0x4000_0004).copied().unwrap_or_default();
    assert_ne!(hvm[0] & VCPU_ID_PRESENT, 0, "{}", run.report());
    assert_ne!(hvm[0] & DOMID_PRESENT, 0, "{}", run.report());
    assert_eq!(hvm[2], 7, "domid in the HVM leaf\n{}", run.report());
    assert_ne!(hvm[0] & UPCALL_VECTOR, 0, "{}", run.report());
}

#[test]
fn cpuid_viridian_moves_xen_leaves_to_0x40000100() {
    let Some((run, leaves)) = cpuid_run((4, 17), true) else {
        return;
    };
    assert_eq!(
        run.value("cpuid 0x40000000 signature"),
        "Microsoft Hv",
        "{}",
        run.report()
    );
    assert!(
        run.value("cpuid base")
            .starts_with("0x40000100 max 0x40000104"),
        "{}",
        run.report()
    );
    assert_eq!(
        leaves.get(&0x4000_0101).map(|l| l[0]),
        Some(0x0004_0011),
        "{}",
        run.report()
    );
}

#[test]
fn apic_0_removes_the_lapic_from_cpuid() {
    if !kvm_usable("apic") {
        return;
    }
    for (apic, cpuid_says) in [(true, "present"), (false, "absent")] {
        let mut cfg = config("cpuid");
        cfg.apic = apic;
        let run = boot("cpuid", cfg, None);
        run.assert_exit(DomainExit::Poweroff);
        run.assert_pass("cpuid");
        assert_eq!(
            run.value("apic"),
            cpuid_says,
            "CPUID 1 EDX.APIC with apic={apic}\n{}",
            run.report()
        );
    }
}

#[test]
fn apic_0_removes_the_madt() {
    if !kvm_usable("apic") {
        return;
    }
    for apic in [true, false] {
        let mut cfg = config("startinfo");
        cfg.apic = apic;
        let run = boot("startinfo", cfg, None);
        run.assert_exit(DomainExit::Poweroff);
        run.assert_pass("startinfo");
        if apic {
            assert_eq!(run.value("madt lapics"), "1 enabled 1", "{}", run.report());
        } else {
            assert!(
                run.log.lines().any(|l| l == "madt none"),
                "a MADT with apic=0\n{}",
                run.report()
            );
        }
    }
}

// ---- hypercalls ----

fn hypercalls(name: &str) {
    if !kvm_usable(name) {
        return;
    }
    let mut cfg = config(name);
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 80;
    cfg.max_grant_frames = 32;
    let run = boot(name, cfg, None);
    run.assert_exit(DomainExit::Poweroff);
    run.assert_pass(name);
    assert_eq!(run.value("xen_version"), "4.17", "{}", run.report());
    assert!(
        run.value("grant nr_frames").ends_with("max_nr_frames 32"),
        "max_grant_frames\n{}",
        run.report()
    );
    // "current_reservation <pages> maximum_reservation <pages>"
    let res: Vec<u64> = run
        .value("current_reservation")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        matches!(res.as_slice(), [cur, max] if cur.abs_diff(64 * 256) <= 512 && *max >= 80 * 256),
        "reservations {res:?} for memory=64 maxmem=80\n{}",
        run.report()
    );
    assert!(
        run.log
            .contains("console_io write from the hypercalls guest"),
        "{}",
        run.report()
    );
}

#[test]
fn hypercalls_return_xens_results_and_error_codes() {
    hypercalls("hypercalls");
}

#[test]
fn hypercalls_from_a_32bit_guest() {
    hypercalls("hypercalls32");
}

// ---- shutdown reasons ----

#[test]
fn shutdown_reasons_map_to_domain_exits() {
    if !kvm_usable("shutdown") {
        return;
    }
    for (reason, want) in [
        ("poweroff", DomainExit::Poweroff),
        ("reboot", DomainExit::Reboot),
        ("crash", DomainExit::Crash),
        ("watchdog", DomainExit::Watchdog),
        ("soft_reset", DomainExit::SoftReset),
    ] {
        let mut cfg = config("shutdown");
        cfg.cmdline = reason.into();
        let run = boot("shutdown", cfg, None);
        run.assert_pass("shutdown");
        assert!(run.log.contains(&format!("({reason})")), "{}", run.report());
        run.assert_exit(want);
    }
}

#[test]
fn a_triple_fault_is_the_reboot_xen_makes_of_it() {
    if !kvm_usable("fault") {
        return;
    }
    let run = boot("fault", config("fault"), None);
    // Xen: hvm_triple_fault() shuts the domain down with
    // HVM_PARAM_TRIPLE_FAULT_REASON, which hvm_domain_initialise() sets to
    // SHUTDOWN_reboot.
    run.assert_exit(DomainExit::Reboot);
    assert!(run.log.contains("fault: executing ud2"), "{}", run.report());
}

// ---- the console ring, both directions ----

#[test]
fn console_ring_carries_output_and_input() {
    if !kvm_usable("console") {
        return;
    }
    let run = boot("console", config("console"), Some(b"hello xkvm\n".to_vec()));
    run.assert_exit(DomainExit::Poweroff);
    run.assert_pass("console");
    assert_eq!(
        run.value("console input:"),
        "hello xkvm",
        "{}",
        run.report()
    );
    assert!(
        run.console.contains("xkvm console test: type a line"),
        "{}",
        run.report()
    );
    assert!(run.console.contains("echo: hello xkvm"), "{}", run.report());
}

// ---- a real guest: Debian's GRUB for Xen PVH ----

/// The unpacked Debian packages (`scripts/debian-deps.sh`), or why not.
fn debian_root() -> Result<PathBuf, String> {
    if let Some(root) = std::env::var_os("XKVM_DEBS") {
        return Ok(PathBuf::from(root));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/debian-deps.sh");
    let out = std::process::Command::new(&script)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Builds a GRUB PVH image whose embedded config echoes `marker` and halts.
fn grub_image(root: &Path, marker: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("xkvm-grub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cfg = dir.join("grub.cfg");
    std::fs::write(&cfg, format!("echo {marker}\nhalt\n"))
        .map_err(|e| format!("{}: {e}", cfg.display()))?;
    let image = dir.join("grub-pvh.elf");
    let out = std::process::Command::new(root.join("usr/bin/grub-mkimage"))
        .args(["-O", "i386-xen_pvh", "-p", "/"])
        .arg("-d")
        .arg(root.join("usr/lib/grub/i386-xen_pvh"))
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&image)
        .args(["echo", "halt"])
        .output()
        .map_err(|e| format!("grub-mkimage: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "grub-mkimage failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(image)
}

#[test]
fn debian_grub_pvh_echoes_and_halts() {
    if !kvm_usable("grub") {
        return;
    }
    let root = match debian_root() {
        Ok(root) => root,
        Err(e) if ci() => panic!("Debian packages unavailable under CI=true: {e}"),
        Err(e) => {
            eprintln!("grub: skipped: Debian packages unavailable: {e}");
            return;
        }
    };
    let marker = "XKVM-GRUB-MARKER echoed by Debian GRUB";
    let image =
        grub_image(&root, marker).unwrap_or_else(|e| panic!("building the GRUB image: {e}"));
    let mut cfg = VmConfig::new("xkvm-test-grub", &image);
    cfg.memory_mib = 128;
    cfg.max_memory_mib = 128;
    let run = boot("grub", cfg, None);
    assert!(
        run.console.contains(marker),
        "GRUB's echo is not on the console\n{}",
        run.report()
    );
    run.assert_exit(DomainExit::Poweroff);
}
