//! `xkvm create [-F] -c CFG` with the real binary and real PVH guests: the
//! guest's console reaches stdout (all of it, even from a guest that ends
//! at once), and with -F the exit status follows how the guest stopped and
//! the config's `on_*` action (0 after poweroff, non-zero after a crash).
//! Skips without /dev/kvm unless CI=true.

mod common;

use common::kvm_usable;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Writes `cfg` next to nothing else and runs `xkvm create -F -c` on it.
fn create_foreground(dir: &Path, cfg: &str) -> Output {
    let file = dir.join("guest.cfg");
    std::fs::write(&file, cfg).expect("writing the config");
    Command::new(env!("CARGO_BIN_EXE_xkvm"))
        .args(["create", "-F", "-c"])
        .arg(&file)
        .env("XKVM_RUN_DIR", dir.join("run"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running xkvm")
}

fn guest_cfg(guest: &str, extra: &str) -> String {
    format!(
        "name = \"fg-{guest}\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = 32\n{extra}",
        xkvm_guests::path(guest).display()
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_greets_on_the_console_and_exits_zero_after_poweroff() {
    if !kvm_usable("demo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = create_foreground(dir.path(), &guest_cfg("demo", ""));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        stdout.contains("Hello from a Xen PVH guest on xkvm!"),
        "{stdout}"
    );
}

#[test]
fn crash_with_on_crash_destroy_exits_non_zero() {
    if !kvm_usable("crash") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = guest_cfg("shutdown", "cmdline = \"crash\"\non_crash = \"destroy\"\n");
    let out = create_foreground(dir.path(), &cfg);
    assert!(
        !out.status.success(),
        "a crashed guest must fail the command"
    );
    assert!(
        text(&out.stderr).contains("Crash"),
        "stderr says why: {}",
        text(&out.stderr)
    );
}

#[test]
fn reboot_with_on_reboot_destroy_ends_cleanly() {
    if !kvm_usable("reboot") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = guest_cfg(
        "shutdown",
        "cmdline = \"reboot\"\non_reboot = \"destroy\"\n",
    );
    let out = create_foreground(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn a_file_that_is_not_a_kernel_gets_a_clear_error() {
    if !kvm_usable("not-a-kernel") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("bogus");
    std::fs::write(&bogus, b"this is not an ELF image").expect("write");
    let cfg = format!(
        "name = \"fg-bogus\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = 32\n",
        bogus.display()
    );
    let out = create_foreground(dir.path(), &cfg);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bogus"), "names the file: {stderr}");
}

#[test]
fn a_malformed_config_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = create_foreground(dir.path(), "name = \"x\"\nmemory = = 3\n");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("guest.cfg:2"), "{stderr}");
}

#[test]
fn background_create_with_console_shows_a_short_lived_guest_whole() {
    if !kvm_usable("create -c") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("guest.cfg");
    std::fs::write(&file, guest_cfg("demo", "")).expect("writing the config");
    // stdin stays open (as a terminal would): its end would detach the
    // console, as in xl.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xkvm"))
        .args(["create", "-c"])
        .arg(&file)
        .env("XKVM_RUN_DIR", dir.path().join("run"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running xkvm");
    let _stdin = child.stdin.take();
    let out = child.wait_with_output().expect("xkvm ends with the domain");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        stdout.contains("Hello from a Xen PVH guest on xkvm!"),
        "the greeting, written before any console could attach: {stdout:?}"
    );
}
