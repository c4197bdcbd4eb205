//! Device hot-plug end to end with the real `xkvm` binary and the
//! `hotplug` test guest (a frontend that boots with no disk, connects to
//! whatever vbd appears under `device/`, prints sector 0, and closes its
//! end when the backend goes to Closing): `block-attach`, `block-list`,
//! `block-detach` (with and without `--force`), `network-attach`,
//! `network-list`, `network-detach`, and what `list -l` and XenStore show
//! after each.
//!
//! Every test has its own `XKVM_RUN_DIR` and kills the VMMs left in it.
//! Without a usable `/dev/kvm` the tests skip with a printed reason,
//! except under `CI=true`, where that fails.

mod common;

use common::Host;
use std::process::Command;
use std::time::{Duration, Instant};

/// Methods only the hot-plug tests use.
trait HostExt {
    fn start(&self, name: &str) -> u32;
    fn start_guest(&self, name: &str, guest: &str, ready: &str) -> u32;
    fn xs_exists(&self, name: &str, path: &str) -> bool;
    fn image(&self, file: &str, text: &str) -> String;
}

impl HostExt for Host {
    /// Starts domain `name` running the `hotplug` guest with no devices
    /// and waits until it watches `device/`; returns its id.
    fn start(&self, name: &str) -> u32 {
        self.start_guest(name, "hotplug", "hotplug: watching device/")
    }

    /// Starts domain `name` running `guest` and waits for `ready` on its
    /// console_io; returns its id.
    fn start_guest(&self, name: &str, guest: &str, ready: &str) -> u32 {
        let id = self.create(name, guest, "");
        self.wait_dmesg(name, ready, 1);
        id
    }

    /// Whether XenStore `path` of the domain exists.
    fn xs_exists(&self, name: &str, path: &str) -> bool {
        self.xkvm(&["xenstore-read", "-d", name, path])
            .status
            .success()
    }

    /// A 1 MiB raw image whose sector 0 starts with `text`.
    fn image(&self, file: &str, text: &str) -> String {
        let mut bytes = vec![0u8; 1 << 20];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        let p = self.path().join(file);
        std::fs::write(&p, bytes).expect("image");
        p.display().to_string()
    }
}

/// The rows of a `block-list` / `network-list` after the header.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn a_disk_plugged_into_a_running_guest_is_read_then_unplugged() {
    let Some(h) = Host::new("block-hotplug") else {
        return;
    };
    let name = "hpblk";
    let domid = h.start(name);
    let header = h.ok(&["block-list", name]);
    assert!(header.starts_with("Vdev  BE  handle state evt-ch ring-ref BE-path"));
    assert!(rows(&header).is_empty(), "no disk yet: {header}");

    // Plug: the guest finds the vbd, connects and reads sector 0.
    let a = h.image("a.raw", "XKVM-HOTPLUG-A sector zero");
    h.ok(&["block-attach", name, &format!("{a},raw,xvdb,rw")]);
    h.wait_dmesg(
        name,
        "hotplug: vbd 51728 sector0 status 0 'XKVM-HOTPLUG-A sector zero'",
        1,
    );
    let fe = format!("/local/domain/{domid}/device/vbd/51728");
    let be = format!("/local/domain/0/backend/vbd/{domid}/51728");
    let list = rows(&h.ok(&["block-list", name]));
    assert_eq!(list.len(), 1, "{list:?}");
    let r = &list[0];
    assert_eq!(r[0], "51728");
    assert_eq!(r[1], "0");
    assert_eq!(r[2], domid.to_string());
    assert_eq!(r[3], "4", "the frontend is Connected: {r:?}");
    assert_eq!(r[5], "8", "the guest's ring-ref: {r:?}");
    assert_eq!(r[6], be);
    let long = h.ok(&["list", "-l", name]);
    assert!(long.contains("a.raw"), "list -l shows the disk: {long}");

    // The same vdev again is refused, as libxl refuses it.
    let b = h.image("b.raw", "XKVM-HOTPLUG-B");
    let err = h.fails(&["block-attach", name, &format!("{b},raw,xvdb,rw")]);
    assert!(err.contains("device already exists in xenstore"), "{err}");
    assert!(err.contains("libxl_device_disk_add failed."), "{err}");

    // Unplug: the guest sees Closing, closes, and the directories go.
    h.ok(&["block-detach", name, "xvdb"]);
    assert!(h.dmesg(name).contains("hotplug: vbd 51728 closed"));
    assert!(
        !h.xs_exists(name, &format!("{fe}/state")),
        "frontend dir left"
    );
    assert!(
        !h.xs_exists(name, &format!("{be}/state")),
        "backend dir left"
    );
    h.wait_dmesg(name, "hotplug: vbd 51728 removed", 1);
    assert!(rows(&h.ok(&["block-list", name])).is_empty());
    assert!(!h.ok(&["list", "-l", name]).contains("a.raw"));
    let err = h.fails(&["block-detach", name, "xvdb"]);
    assert!(err.contains("Error: Device xvdb not connected."), "{err}");

    // The device id is free again; --force tears down without the guest.
    h.ok(&["block-attach", name, "vdev=xvdb", &format!("target={b}")]);
    h.wait_dmesg(
        name,
        "hotplug: vbd 51728 sector0 status 0 'XKVM-HOTPLUG-B'",
        1,
    );
    h.ok(&["block-detach", "--force", &domid.to_string(), "51728"]);
    assert!(!h.xs_exists(name, &format!("{fe}/state")));
    assert!(!h.xs_exists(name, &format!("{be}/state")));
    h.wait_dmesg(name, "hotplug: vbd 51728 removed", 2);
    assert_eq!(
        h.dmesg(name).matches("hotplug: vbd 51728 closed").count(),
        1,
        "a forced unplug does not wait for the guest to close"
    );
    assert!(rows(&h.ok(&["block-list", name])).is_empty());
    h.ok(&["destroy", name]);
}

#[test]
fn bad_block_specs_and_unknown_devices_get_xls_messages() {
    let Some(h) = Host::new("block-hotplug-errors") else {
        return;
    };
    let name = "hperr";
    h.start(name);
    let err = h.fails(&["block-attach", name, "/nonexistent.raw"]);
    assert!(err.contains("no vdev specified"), "{err}");
    let err = h.fails(&["block-attach", name, "/nonexistent.raw,raw,xvdc,rw"]);
    assert!(err.contains("/nonexistent.raw"), "{err}");
    assert!(err.contains("libxl_device_disk_add failed."), "{err}");
    assert!(
        rows(&h.ok(&["block-list", name])).is_empty(),
        "nothing added"
    );
    let err = h.fails(&["network-detach", name, "3"]);
    assert!(err.contains("Unknown device 3."), "{err}");
    // xl reports a bad domain in block-list and goes on.
    let out = h.xkvm(&["block-list", "nosuchdomain", name]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuchdomain is an invalid domain identifier"),
        "{err}"
    );
    h.ok(&["destroy", name]);
}

/// A guest without PV drivers never closes its end: a safe unplug
/// (`block-detach`) gives up after libxl's 10 s and leaves the device,
/// `--force` then removes it.
#[test]
fn an_unplug_the_guest_never_answers_times_out_as_in_libxl() {
    let Some(h) = Host::new("block-hotplug-timeout") else {
        return;
    };
    let name = "hpidle";
    let domid = h.start_guest(name, "idle", "idle: running until destroyed");
    let a = h.image("a.raw", "unused");
    h.ok(&["block-attach", name, &format!("{a},raw,xvdb,rw")]);
    let started = Instant::now();
    let err = h.fails(&["block-detach", name, "xvdb"]);
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "waited for the guest"
    );
    assert!(
        err.contains(&format!(
            "unable to remove device with path /local/domain/0/backend/vbd/{domid}/51728"
        )),
        "{err}"
    );
    assert!(
        err.contains("libxl_device_disk_safe_remove failed."),
        "{err}"
    );
    let list = rows(&h.ok(&["block-list", name]));
    assert_eq!(list.len(), 1, "the device stays: {list:?}");
    assert_eq!(
        h.ok(&[
            "xenstore-read",
            "-d",
            name,
            &format!("/local/domain/0/backend/vbd/{domid}/51728/online")
        ])
        .trim(),
        "0",
        "offline"
    );
    h.ok(&["block-detach", "-f", name, "xvdb"]);
    assert!(rows(&h.ok(&["block-list", name])).is_empty());
    assert!(!h.xs_exists(
        name,
        &format!("/local/domain/{domid}/device/vbd/51728/state")
    ));

    // network-detach is libxl's plain remove: after the wait it forces.
    if can_make_taps() {
        let ifname = format!("xkhi{}", std::process::id() % 100_000);
        h.ok(&["network-attach", name, &format!("vifname={ifname}")]);
        assert!(link_exists(&ifname));
        let started = Instant::now();
        h.ok(&["network-detach", name, "0"]);
        assert!(
            started.elapsed() >= Duration::from_secs(10),
            "waited for the guest"
        );
        assert!(!link_exists(&ifname), "TAP {ifname} removed");
        assert!(rows(&h.ok(&["network-list", name])).is_empty());
    }
    h.ok(&["destroy", name]);
}

/// TAP devices need root and iproute2 to look at them.
fn can_make_taps() -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0 && Command::new("ip").arg("-V").output().is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("network hot-plug needs root for TAP devices and iproute2 (CI=true)");
        }
        eprintln!("network hot-plug: skipped: needs root for TAP devices and iproute2");
    }
    ok
}

fn link_exists(ifname: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", ifname])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_vif_plugged_into_a_running_guest_gets_a_tap_that_goes_on_unplug() {
    let Some(h) = Host::new("network-hotplug") else {
        return;
    };
    if !can_make_taps() {
        return;
    }
    let name = "hpnet";
    let domid = h.start(name);
    let ifname = format!("xkhp{}", std::process::id() % 100_000);
    h.ok(&[
        "network-attach",
        name,
        "mac=00:16:3e:5a:5b:5c",
        &format!("vifname={ifname}"),
    ]);
    h.wait_dmesg(name, "hotplug: vif 0 mac 00:16:3e:5a:5b:5c", 1);
    assert!(link_exists(&ifname), "TAP {ifname} exists");
    let list = rows(&h.ok(&["network-list", name]));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0][0], "0");
    assert_eq!(list[0][2], "00:16:3e:5a:5b:5c");
    assert_eq!(
        list[0].last().map(String::as_str),
        Some(format!("/local/domain/0/backend/vif/{domid}/0").as_str())
    );
    assert!(h.ok(&["list", "-l", name]).contains("00:16:3e:5a:5b:5c"));

    // The next one gets the next device id; its script= runs as libxl
    // runs vif scripts, online on attach and offline on detach.
    let second = format!("{ifname}b");
    let log = h.path().join("vif-script.log");
    let script = h.path().join("vif-test");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $vif $XENBUS_PATH\" >> {}\n",
            log.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    h.ok(&[
        "network-attach",
        name,
        &format!("vifname={second}"),
        &format!("script={}", script.display()),
    ]);
    h.wait_dmesg(name, "hotplug: vif 1 mac 00:16:3e:", 1);
    assert!(link_exists(&second));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran, format!("online {second} backend/vif/{domid}/1\n"));

    // By MAC, then by id: the guest closes, the TAPs go.
    h.ok(&["network-detach", name, "00:16:3e:5a:5b:5c"]);
    assert!(h.dmesg(name).contains("hotplug: vif 0 closed"));
    assert!(!link_exists(&ifname), "TAP {ifname} removed");
    assert!(!h.xs_exists(name, &format!("/local/domain/{domid}/device/vif/0/state")));
    h.ok(&["network-detach", name, "1"]);
    assert!(!link_exists(&second));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        ran.ends_with(&format!("offline {second} backend/vif/{domid}/1\n")),
        "{ran}"
    );
    let list = rows(&h.ok(&["network-list", name]));
    assert!(list.is_empty(), "{list:?}");
    h.ok(&["destroy", name]);
}
