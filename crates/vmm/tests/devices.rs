//! PV block devices end to end on `/dev/kvm`, with real frontends: Debian's
//! stock GRUB for Xen PVH finds `/boot/grub/grub.cfg` on an ext2 `disk=`
//! and runs it, and a `grub-mkimage` GRUB prints sector 0 of a raw disk.
//!
//! Needs `/dev/kvm`, the Debian packages (`scripts/debian-deps.sh`) and
//! `mke2fs` (e2fsprogs) on the host; without them the tests skip with the
//! reason, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use vmm::{DiskSpec, DomainExit, VmConfig};

mod common;
use common::guest_run::{boot, TIMEOUT};
use common::{kvm_usable, skip};

fn debian_root(test: &str) -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("XKVM_DEBS") {
        return Some(PathBuf::from(root));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/debian-deps.sh");
    match std::process::Command::new(&script).output() {
        Ok(out) if out.status.success() => Some(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )),
        Ok(out) => {
            skip(
                test,
                &format!(
                    "Debian packages unavailable: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
            None
        }
        Err(e) => {
            skip(test, &format!("{}: {e}", script.display()));
            None
        }
    }
}

fn disk(path: &Path, vdev: &str) -> DiskSpec {
    DiskSpec {
        path: path.to_owned(),
        vdev: vdev.into(),
        readonly: false,
        cdrom: false,
        discard: true,
        format: Default::default(),
    }
}

/// An ext2 image holding `/boot/grub/grub.cfg` (`mke2fs -d`).
fn ext2_with_grub_cfg(dir: &Path, cfg: &str) -> Result<PathBuf, String> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).map_err(|e| e.to_string())?;
    std::fs::write(tree.join("boot/grub/grub.cfg"), cfg).map_err(|e| e.to_string())?;
    let img = dir.join("boot.ext2");
    let mke2fs = ["/usr/sbin/mke2fs", "/sbin/mke2fs", "mke2fs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mke2fs");
    let out = std::process::Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext2", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("4M")
        .output()
        .map_err(|e| format!("mke2fs (e2fsprogs): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mke2fs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(img)
}

#[test]
fn debian_grub_pvh_runs_grub_cfg_from_an_ext2_disk() {
    let test = "grub-ext2";
    if !kvm_usable(test) {
        return;
    }
    let Some(root) = debian_root(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let marker = "XKVM-EXT2-MARKER read from /boot/grub/grub.cfg";
    let img = match ext2_with_grub_cfg(dir.path(), &format!("echo {marker}\nhalt\n")) {
        Ok(i) => i,
        Err(e) => return skip(test, &e),
    };
    let grub = root.join("usr/lib/grub-xen/grub-i386-xen_pvh.bin");
    let mut cfg = VmConfig::new("xkvm-test-grub-ext2", &grub);
    cfg.memory_mib = 128;
    cfg.max_memory_mib = 128;
    cfg.disks.push(disk(&img, "xvda"));
    let run = boot(test, cfg, None);
    if std::env::var_os("XKVM_SHOW_CONSOLE").is_some() {
        eprintln!("{}", run.report());
    }
    assert!(
        run.console.contains(marker),
        "GRUB did not run grub.cfg from the disk\n{}",
        run.report()
    );
    assert_eq!(run.exit, Ok(DomainExit::Poweroff), "{}", run.report());
}

#[test]
fn grub_mkimage_cats_sector_0_of_a_raw_disk() {
    let test = "grub-raw";
    if !kvm_usable(test) {
        return;
    }
    let Some(root) = debian_root(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let marker = "XKVM-SECTOR0-MARKER";
    let mut sector0 = format!("{marker} on sector zero\n").into_bytes();
    sector0.resize(512, b'\n');
    let mut raw = sector0;
    raw.extend(std::iter::repeat_n(b'x', 512 * 63));
    let img = dir.path().join("raw.img");
    std::fs::write(&img, &raw).unwrap();
    let gcfg = dir.path().join("embed.cfg");
    std::fs::write(&gcfg, "cat (xen/xvdb)0+1\necho XKVM-CAT-DONE\nhalt\n").unwrap();
    let image = dir.path().join("grub.elf");
    let out = std::process::Command::new(root.join("usr/bin/grub-mkimage"))
        .args(["-O", "i386-xen_pvh", "-p", "/"])
        .arg("-d")
        .arg(root.join("usr/lib/grub/i386-xen_pvh"))
        .arg("-c")
        .arg(&gcfg)
        .arg("-o")
        .arg(&image)
        .args(["cat", "echo", "halt", "blocklist"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grub-mkimage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = VmConfig::new("xkvm-test-grub-raw", &image);
    cfg.memory_mib = 128;
    cfg.max_memory_mib = 128;
    cfg.disks.push(disk(&img, "xvdb"));
    let run = boot(test, cfg, None);
    assert!(
        run.console.contains(&format!("{marker} on sector zero")),
        "GRUB's cat did not print sector 0\n{}",
        run.report()
    );
    assert!(run.console.contains("XKVM-CAT-DONE"), "{}", run.report());
    assert_eq!(run.exit, Ok(DomainExit::Poweroff), "{}", run.report());
}

/// The `blkfront` test guest (64-bit: x86_64-abi, 32-bit: x86_32-abi)
/// issues every request type against a raw image; the image is checked
/// afterwards.
fn blkfront(guest: &str) {
    if !kvm_usable(guest) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0xeeu8; 128 * 512]).unwrap();
    let mut cfg = VmConfig::new(format!("xkvm-test-{guest}"), xkvm_guests::path(guest));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    cfg.disks.push(disk(&img, "xvda"));
    let run = boot(guest, cfg, None);
    assert!(
        run.log.contains(&format!("XKVM-TEST {guest}: PASS")),
        "{}",
        run.report()
    );
    assert_eq!(run.exit, Ok(DomainExit::Poweroff), "{}", run.report());
    let data = std::fs::read(&img).unwrap();
    check_blkfront_writes(&data);
}

/// What the blkfront guest leaves on its disk: WRITE and WRITE_BARRIER
/// patterns, DISCARD zeroes, and the image's 0xee filler after them.
fn check_blkfront_writes(data: &[u8]) {
    for s in 16..24 {
        assert!(
            data[s * 512..(s + 1) * 512]
                .iter()
                .all(|&b| b == 0xa0 + (s - 16) as u8),
            "WRITE reached sector {s}"
        );
    }
    for s in 24..32 {
        assert!(
            data[s * 512..(s + 1) * 512]
                .iter()
                .all(|&b| b == 0x30 + (s - 24) as u8),
            "WRITE_BARRIER reached sector {s}"
        );
    }
    assert!(
        data[32 * 512..40 * 512].iter().all(|&b| b == 0),
        "DISCARD zeroed sectors 32..39"
    );
    assert!(data[40 * 512..].iter().all(|&b| b == 0xee));
}

#[test]
fn blkfront_guest_x86_64_abi() {
    blkfront("blkfront");
}

#[test]
fn blkfront_guest_x86_32_abi() {
    blkfront("blkfront32");
}

/// The same `blkfront` guest against a qcow2 image (4 KiB clusters, so the
/// guest's 4 KiB discard covers a whole cluster): QEMU's tools find the
/// image consistent afterwards and holding what the guest wrote.
#[test]
fn blkfront_guest_on_a_qcow2_image() {
    let guest = "blkfront";
    if !kvm_usable(guest) {
        return;
    }
    let qemu_img = |args: &[&str]| std::process::Command::new("qemu-img").args(args).output();
    if let Err(e) = qemu_img(&["--version"]) {
        skip(guest, &format!("qemu-img (qemu-utils): {e}"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, vec![0xeeu8; 128 * 512]).unwrap();
    let img = dir.path().join("disk.qcow2");
    let (r, q) = (raw.to_str().unwrap(), img.to_str().unwrap());
    let out = qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        r,
        q,
    ])
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut cfg = VmConfig::new(format!("xkvm-test-{guest}-qcow2"), xkvm_guests::path(guest));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    let mut d = disk(&img, "xvda");
    d.format = vmm::DiskImageFormat::Qcow2;
    cfg.disks.push(d);
    let run = boot(guest, cfg, None);
    assert!(
        run.log.contains(&format!("XKVM-TEST {guest}: PASS")),
        "{}",
        run.report()
    );
    assert_eq!(run.exit, Ok(DomainExit::Poweroff), "{}", run.report());
    let check = qemu_img(&["check", q]).unwrap();
    assert!(check.status.success(), "qemu-img check: {check:?}");
    let out = qemu_img(&["convert", "-O", "raw", q, r]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let data = std::fs::read(&raw).unwrap();
    check_blkfront_writes(&data);
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// The `netfront` test guest ARPs for 10.99.1.1 through its vif; the test
/// moves the VMM's TAP into a fresh network namespace that owns that
/// address, so the reply comes from the namespace's kernel.
#[test]
fn netfront_guest_talks_to_a_netns_through_the_tap() {
    let test = "netfront";
    if !kvm_usable(test) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(test, "needs root for TAP devices and network namespaces");
    }
    if let Err(e) = ip(&["-V"]) {
        return skip(test, &e);
    }
    let pid = std::process::id();
    let ns = Netns(format!("xkvm-nf-{pid}"));
    ip(&["netns", "add", &ns.0]).unwrap();
    let ifname = format!("xkvmnf{}", pid % 100_000);
    let mut cfg = VmConfig::new("xkvm-test-netfront", xkvm_guests::path("netfront"));
    cfg.memory_mib = 64;
    cfg.max_memory_mib = 64;
    cfg.vifs.push(vmm::VifSpec {
        net: vmm::NetSpec {
            devid: 0,
            mac: "00:16:3e:5a:00:01".into(),
            ifname: Some(ifname.clone()),
            mtu: 1500,
            bridge: None,
            rate: None,
        },
        hotplug: vmm::NetHotplug::default(),
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(boot(test, cfg, None));
    });
    // The VMM creates the TAP when the domain starts; then hand it over.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ip(&["link", "show", &ifname]).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TAP {ifname} never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ip(&["link", "set", &ifname, "netns", &ns.0]).unwrap();
    for args in [
        vec!["addr", "add", "10.99.1.1/24", "dev", &ifname],
        vec!["link", "set", &ifname, "up"],
    ] {
        let mut a = vec!["netns", "exec", &ns.0, "ip"];
        a.extend(args);
        ip(&a).unwrap();
    }
    let run = rx.recv_timeout(TIMEOUT + Duration::from_secs(10)).unwrap();
    assert!(
        run.log.contains("XKVM-TEST netfront: PASS"),
        "{}",
        run.report()
    );
    assert!(
        run.log.contains("netfront: ARP reply from"),
        "{}",
        run.report()
    );
    assert_eq!(run.exit, Ok(DomainExit::Poweroff), "{}", run.report());
}
