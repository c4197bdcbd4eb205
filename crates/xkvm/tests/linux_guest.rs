//! A real Linux kernel as a PVH guest: `scripts/linux-guest.sh` builds a
//! small Linux 6.1 (Debian's linux-source, tinyconfig + Xen PVH and the PV
//! frontends), an initramfs with a static busybox, a raw disk and an
//! xl.cfg, boots it with this xkvm binary and exits 0 once the console
//! shows the stage asked for; this test then checks in the console log that
//! Linux's own Xen code came up, its frontends found and connected the
//! devices xkvm offered, and (the default stage) that data went through
//! them: /init writes, flushes and reads back 1 MiB on xvda, reads and
//! writes files on an ext2 disk, pings the host (also with fragmented
//! 4000-byte pings) and moves 1 MiB over TCP each way, each checked by MD5;
//! the host pings the guest, fetches 1 MiB from its httpd and checks the
//! disks after the run.
//!
//! Ignored by default: the first run downloads about 140 MB and builds a
//! kernel, and the boot itself takes minutes on a host whose KVM emulates
//! CPL0 code (docs/linux-guest.md). Run it with
//! `cargo test --release -p xkvm --test linux_guest -- --ignored`.
//! Skips without /dev/kvm unless CI=true.

mod common;

use common::kvm_usable;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[test]
#[ignore = "long: builds and boots a Linux kernel (see docs/linux-guest.md)"]
fn linux_boots_as_a_pvh_guest_and_its_xen_frontends_connect() {
    if !kvm_usable("linux_guest") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("LINUX_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/linux-guest"));
    // "init" (the default): until /init's last line, with its report of
    // the devices; "kernel": only until Linux starts /init.
    let until = std::env::var("LINUX_GUEST_UNTIL").unwrap_or_else(|_| "init".into());
    let out = Command::new(repo.join("scripts/linux-guest.sh"))
        .env("XKVM", env!("CARGO_BIN_EXE_xkvm"))
        .env("LINUX_GUEST_DIR", &dir)
        .env("LINUX_GUEST_UNTIL", &until)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/linux-guest.sh");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "linux-guest.sh failed ({}):\n{report}",
        out.status
    );
    let console = std::fs::read_to_string(dir.join("console.log")).expect("reading console.log");
    // Linux's own Xen code, as its log shows it: hvc_xen console, Xen
    // timer, grant tables, blkfront connected to xkvm's backend (it prints
    // the line only after reading the backend's features), netfront.
    let mut want = vec![
        "printk: console [hvc0] enabled",
        "installing Xen timer for CPU 0",
        "Grant table initialized",
        "blkfront: xvda: flush diskcache: enabled",
        "xen_netfront: Initialising Xen virtual ethernet driver",
        "Run /init as init process",
    ];
    if until == "init" {
        want.extend([
            "XKVM-LINUX-GUEST: init started",
            "vbd-51712 nodename=device/vbd/51712 state=Connected",
            "first bytes: XKVM-DISK-MARKER-0123456789abcd",
            "vif-0 nodename=device/vif/0 state=Connected",
            "XKVM-LINUX-GUEST: blk xvda write+fsync+read 1MiB ok",
            "XKVM-LINUX-GUEST: blk ext2 read hello.txt ok",
            "XKVM-LINUX-GUEST: blk ext2 write+remount blob.bin ok",
            "XKVM-LINUX-GUEST: eth0 00:16:3e:00:00:42",
            "XKVM-LINUX-GUEST: net ping host -s 56 ok",
            "XKVM-LINUX-GUEST: net ping host -s 4000 ok",
            "XKVM-LINUX-GUEST: net tcp guest->host 1MiB ok",
            "XKVM-LINUX-GUEST: net tcp host->guest 1MiB ok",
            "XKVM-LINUX-GUEST: net host ping guest ok",
            "XKVM-LINUX-GUEST: net http guest->host 1MiB ok",
            "XKVM-LINUX-GUEST: init done",
        ]);
        // What the host checked after the run (the script fails on any
        // of these, this keeps the message specific).
        for w in [
            "host: xvda holds the 1 MiB /init wrote ok",
            "host: ext2 image is clean (e2fsck -fn) ok",
            "host: ext2 /blob.bin ok",
            "host: ext2 /from-guest.txt ok",
            "host: host received the guest's 1 MiB ok",
            "host: host sent 1 MiB ok",
        ] {
            assert!(report.contains(w), "missing {w:?} in the report:\n{report}");
        }
        assert!(
            !console.contains(" FAIL ("),
            "the guest reported a failure:\n{console}"
        );
    }
    for w in want {
        assert!(
            console.contains(w),
            "missing {w:?} in the console:\n{console}"
        );
    }
}
