//! A real Linux kernel as a PVH guest: `scripts/linux-guest.sh` builds a
//! small Linux 6.1 (Debian's linux-source, tinyconfig + Xen PVH and the PV
//! frontends), an initramfs with a static busybox, a raw disk and an
//! xl.cfg, boots it with this xkvm binary and exits 0 once the guest's
//! /init has printed its last line. The script's report (stderr) carries
//! the lines /init printed; this test checks that Linux's own frontends
//! found and connected the devices xkvm offered.
//!
//! Ignored by default: the first run downloads about 140 MB and builds a
//! kernel, and the boot itself takes minutes on a host whose KVM emulates
//! CPL0 code (docs/linux-guest.md). Run it with
//! `cargo test --release -p xkvm --test linux_guest -- --ignored`.
//! Skips without /dev/kvm unless CI=true.

use std::path::Path;
use std::process::{Command, Stdio};

fn kvm_usable(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: /dev/kvm is not usable ({e}) and CI=true")
        }
        Err(e) => {
            eprintln!("{test}: skipped: /dev/kvm is not usable ({e})");
            false
        }
    }
}

#[test]
#[ignore = "long: builds and boots a Linux kernel (see docs/linux-guest.md)"]
fn linux_boots_to_init_and_finds_its_xen_devices() {
    if !kvm_usable("linux_guest") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(repo.join("scripts/linux-guest.sh"))
        .env("XKVM", env!("CARGO_BIN_EXE_xkvm"))
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/linux-guest.sh");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "linux-guest.sh failed ({}):\n{report}",
        out.status
    );
    // /init's lines, as the guest saw its devices.
    for want in [
        "XKVM-LINUX-GUEST: init started",
        "XKVM-LINUX-GUEST: kernel 6.1",
        "vbd-51712 nodename=device/vbd/51712 state=4",
        "first bytes: XKVM-DISK-MARKER-0123456789abcd",
        "vif-0 nodename=device/vif/0 state=4",
        "XKVM-LINUX-GUEST: eth0 00:16:3e:00:00:42",
        "XKVM-LINUX-GUEST: init done",
    ] {
        assert!(report.contains(want), "missing {want:?} in:\n{report}");
    }
}
