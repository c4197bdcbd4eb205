//! `bootloader=` end to end with the real `xkvm` binary and PVH test guests:
//! Debian's Xen 4.17 pygrub picks a kernel, ramdisk and command line out of
//! an ext2 image's `grub.cfg` and the guest boots them; small shell-script
//! bootloaders written here check how failing or odd bootloaders are
//! handled (exit status, no kernel, unknown items, files outside the output
//! directory) and what a bootloader is given (arguments, environment, a
//! terminal).
//!
//! Needs /dev/kvm (skips without it unless CI=true); the pygrub test also
//! needs `scripts/debian-deps.sh`'s tree (env `XKVM_DEBS`), Debian's
//! `/usr/bin/python3` and `mke2fs`.

mod common;

use common::Host;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unpacked Debian packages, or None (with the reason printed; a
/// failure under CI=true).
fn debs_root() -> Option<PathBuf> {
    let root = match std::env::var_os("XKVM_DEBS") {
        Some(r) => Some(PathBuf::from(r)),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/debian-deps.sh");
            Command::new(&script)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        }
    };
    let usable = root.filter(|r| r.join(PYGRUB).exists());
    if usable.is_none() {
        let why = "Debian's pygrub is unavailable (run scripts/debian-deps.sh)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {why}"
        );
        eprintln!("skipping: {why}");
    }
    usable
}

const LIBEXEC: &str = "usr/lib/xen-4.17/bin";
const PYGRUB: &str = "usr/lib/xen-4.17/bin/pygrub";
const XEN_LIBS: &str = "usr/lib/xen-4.17/lib/x86_64-linux-gnu";

/// Whether the host tools pygrub needs are here.
fn host_tools() -> bool {
    let missing: Vec<&str> = ["/usr/bin/python3", "/usr/sbin/mke2fs"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{} missing", missing.join(", "));
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {why}"
    );
    eprintln!("skipping: {why}");
    false
}

/// An ext2 image of `tree` (mke2fs -d), as a guest's root disk.
fn ext2_image(tree: &Path, image: &Path) {
    let out = Command::new("/usr/sbin/mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-d"])
        .arg(tree)
        .arg(image)
        .arg("8M")
        .output()
        .expect("running mke2fs");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A config for domain `name` with `bootloader = BL`, one raw disk and
/// the extra lines.
fn cfg(host: &Host, name: &str, bootloader: &str, disk: &Path, extra: &str) -> String {
    let path = host.path().join(format!("{name}.cfg"));
    write(
        &path,
        &format!(
            "name = \"{name}\"\ntype = \"pvh\"\nmemory = 16\nbootloader = \"{bootloader}\"\n\
             disk = ['{},raw,xvda,r']\non_poweroff = \"preserve\"\n{extra}\n",
            disk.display()
        ),
    );
    path.display().to_string()
}

/// Files the bootloader protocol left in the domain's run directory.
fn leftovers(host: &Host, name: &str) -> Vec<String> {
    std::fs::read_dir(host.domain_dir(name))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("bootloader."))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pygrub_boots_the_entry_grub_cfg_chooses_with_its_initrd_and_args() {
    let Some(host) = Host::new("bootloader-pygrub") else {
        return;
    };
    let Some(root) = debs_root() else { return };
    if !host_tools() {
        return;
    }
    // Two entries; grub.cfg's default picks the second: the startinfo
    // guest (which prints its command line and modules) with an initrd.
    let tree = host.path().join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).expect("mkdir");
    std::fs::copy(xkvm_guests::path("demo"), tree.join("boot/vmlinuz-old")).expect("copy");
    std::fs::copy(
        xkvm_guests::path("startinfo"),
        tree.join("boot/vmlinuz-new"),
    )
    .expect("copy");
    write(&tree.join("boot/initrd.img-new"), "initrd-from-the-disk\n");
    write(
        &tree.join("boot/grub/grub.cfg"),
        "set default=1\nset timeout=0\n\
         menuentry 'Old' {\n\tlinux /boot/vmlinuz-old root=/dev/xvda old\n}\n\
         menuentry 'New' {\n\tlinux /boot/vmlinuz-new root=/dev/xvda xkvm.chosen=by-pygrub\n\
         \tinitrd /boot/initrd.img-new\n}\n",
    );
    let image = host.path().join("root.ext2");
    ext2_image(&tree, &image);

    // A bare "pygrub", found in libxl's libexec directory (Debian's tree
    // unpacked here); pygrub's C library is found as it would be installed.
    let name = "bl-pygrub";
    let cfg = cfg(&host, name, "pygrub", &image, "extra = \"from.config=1\"");
    let out = host
        .cmd(&["create", &cfg])
        .env("XKVM_LIBEXEC_DIR", root.join(LIBEXEC))
        .env("LD_LIBRARY_PATH", root.join(XEN_LIBS))
        .env("XEN_FSIMAGE_FSDIR", root.join(XEN_LIBS).join("xenfsimage"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running xkvm");
    assert!(
        out.status.success(),
        "create failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.logs()
    );
    host.wait_dmesg(name, "XKVM-TEST startinfo: PASS", 1);
    let log = host.dmesg(name);
    assert!(
        log.contains("cmdline: root=/dev/xvda xkvm.chosen=by-pygrub from.config=1"),
        "the guest sees grub.cfg's arguments plus the config's extra:\n{log}"
    );
    assert!(log.contains("modules 1"), "{log}");
    assert!(
        log.contains("data 'initrd-from-the-disk.'"),
        "the ramdisk is the one from the disk:\n{log}"
    );
    assert!(
        leftovers(&host, name).is_empty(),
        "the extracted files are deleted once loaded: {:?}",
        leftovers(&host, name)
    );
}

/// A pty: (master, slave).
fn open_pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds; the other pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both fds were just opened and are owned by nothing else.
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}

#[test]
fn create_c_puts_pygrubs_menu_on_the_terminal_and_takes_keys() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let Some(host) = Host::new("bootloader-pygrub-menu") else {
        return;
    };
    let Some(root) = debs_root() else { return };
    if !host_tools() {
        return;
    }
    // The default entry would boot the silent startinfo guest after 30 s;
    // only a Down key and Enter typed at the menu boot the demo, which
    // greets on the console.
    let tree = host.path().join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).expect("mkdir");
    std::fs::copy(xkvm_guests::path("startinfo"), tree.join("boot/si")).expect("copy");
    std::fs::copy(xkvm_guests::path("demo"), tree.join("boot/demo")).expect("copy");
    write(
        &tree.join("boot/grub/grub.cfg"),
        "set default=0\nset timeout=30\n\
         menuentry 'Quiet' {\n\tlinux /boot/si\n}\n\
         menuentry 'Greeter' {\n\tlinux /boot/demo\n}\n",
    );
    let image = host.path().join("root.ext2");
    ext2_image(&tree, &image);
    let cfg = cfg(
        &host,
        "bl-menu",
        "pygrub",
        &image,
        "on_poweroff = \"destroy\"",
    );

    let (master, slave) = open_pty();
    let mut child = host
        .cmd(&["create", "-c", &cfg])
        .env("XKVM_LIBEXEC_DIR", root.join(LIBEXEC))
        .env("LD_LIBRARY_PATH", root.join(XEN_LIBS))
        .env("XEN_FSIMAGE_FSDIR", root.join(XEN_LIBS).join("xenfsimage"))
        .env("TERM", "vt100")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("running xkvm");
    let screen = Arc::new(Mutex::new(Vec::new()));
    {
        let (screen, mut master) = (screen.clone(), master.try_clone().expect("dup"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
    }
    let seen = |what: &str| String::from_utf8_lossy(&screen.lock().expect("lock")).contains(what);
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(25);
        while !seen(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on the terminal:\n{}\n{}",
                String::from_utf8_lossy(&screen.lock().expect("lock")),
                host.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("Will boot selected entry");
    let mut keys = master;
    // Down in the keypad mode curses asked for, then Enter.
    keys.write_all(b"\x1bOB").expect("key");
    std::thread::sleep(Duration::from_millis(500));
    keys.write_all(b"\r").expect("key");
    wait_for("Hello from a Xen PVH guest on xkvm!");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "create -c did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// A directory with shell-script bootloaders and a boot disk they ignore.
struct Scripts {
    host: Host,
    disk: PathBuf,
}

impl Scripts {
    fn new(test: &str) -> Option<Self> {
        let host = Host::new(test)?;
        let disk = host.path().join("disk.raw");
        write(&disk, "not a file system");
        Some(Self { host, disk })
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.host.path().join("bin").join(name);
        executable(&path, &format!("#!/bin/sh\n{body}\n"));
        path
    }

    /// `xkvm create` of a config using `bootloader`; (success, stderr).
    fn create(&self, name: &str, bootloader: &str, extra: &str) -> (bool, String) {
        let cfg = cfg(&self.host, name, bootloader, &self.disk, extra);
        let out = self
            .host
            .cmd(&["create", &cfg])
            .env("XKVM_LIBEXEC_DIR", self.host.path().join("no-libexec"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running xkvm");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Shell: the value of `--output=` / `--output-directory=` in "$@".
const FIND_OUTPUT: &str = r#"for a in "$@"; do
  case "$a" in
    --output=*) out="${a#--output=}" ;;
    --output-directory=*) dir="${a#--output-directory=}" ;;
  esac
done"#;

#[test]
fn a_failing_bootloader_fails_create_with_its_status_and_words() {
    let Some(s) = Scripts::new("bootloader-fails") else {
        return;
    };
    let bl = s.script("broken-bl", "echo 'no grub.cfg on this disk'\nexit 3");
    let (ok, stderr) = s.create("bl-fails", &bl.display().to_string(), "");
    assert!(!ok, "create must fail");
    assert!(stderr.contains("bootloader"), "{stderr}");
    assert!(
        stderr.contains("broken-bl"),
        "names the bootloader: {stderr}"
    );
    assert!(stderr.contains("exit status 3"), "{stderr}");
    assert!(stderr.contains("no grub.cfg on this disk"), "{stderr}");
}

#[test]
fn output_without_a_kernel_is_an_error() {
    let Some(s) = Scripts::new("bootloader-no-kernel") else {
        return;
    };
    let bl = s.script(
        "nokernel-bl",
        &format!("{FIND_OUTPUT}\nprintf 'args quiet\\0\\0' > \"$out\""),
    );
    let (ok, stderr) = s.create("bl-nokernel", &bl.display().to_string(), "");
    assert!(!ok, "create must fail");
    assert!(
        stderr.contains("nokernel-bl") && stderr.contains("named no kernel"),
        "{stderr}"
    );
}

#[test]
fn a_kernel_outside_the_output_directory_is_refused_and_left_alone() {
    let Some(s) = Scripts::new("bootloader-outside") else {
        return;
    };
    let host_file = s.host.path().join("precious-kernel");
    std::fs::copy(xkvm_guests::path("startinfo"), &host_file).expect("copy");
    let bl = s.script(
        "outside-bl",
        &format!(
            "{FIND_OUTPUT}\nprintf 'kernel {}\\0' > \"$out\"",
            host_file.display()
        ),
    );
    let (ok, stderr) = s.create("bl-outside", &bl.display().to_string(), "");
    assert!(!ok, "create must fail");
    assert!(stderr.contains("outside the output directory"), "{stderr}");
    assert!(host_file.exists(), "the named file is not deleted");
}

#[test]
fn no_disk_means_no_bootloader_run() {
    let Some(s) = Scripts::new("bootloader-no-disk") else {
        return;
    };
    let ran = s.host.path().join("ran");
    let bl = s.script("never-bl", &format!("touch {}", ran.display()));
    let cfg = s.host.path().join("nodisk.cfg");
    write(
        &cfg,
        &format!(
            "name = \"bl-nodisk\"\ntype = \"pvh\"\nmemory = 16\nbootloader = \"{}\"\n",
            bl.display()
        ),
    );
    let stderr = s.host.fails(&["create", &cfg.display().to_string()]);
    assert!(stderr.contains("no boot disk"), "{stderr}");
    assert!(!ran.exists(), "the bootloader did not run");
}

#[test]
fn a_bootloader_found_in_path_gets_libxls_arguments_and_a_terminal() {
    let Some(s) = Scripts::new("bootloader-protocol") else {
        return;
    };
    // Records what it was given, then hands out the startinfo guest with
    // an args item, an unknown item and whitespace before the path.
    let record = s.host.path().join("record");
    let body = format!(
        "{FIND_OUTPUT}\n\
         printf '%s\\n' \"$@\" > {rec}.args\n\
         echo \"TERM=$TERM\" > {rec}.env\n\
         if [ -t 0 ] && [ -t 1 ]; then echo tty=yes >> {rec}.env; fi\n\
         cp {kernel} \"$dir/k\"\n\
         printf 'colour blue\\0kernel   %s\\0args  from the script\\0\\0' \"$dir/k\" > \"$out\"",
        rec = record.display(),
        kernel = xkvm_guests::path("startinfo").display(),
    );
    s.script("my-bootloader", &body);
    let cfg = cfg(
        &s.host,
        "bl-proto",
        "my-bootloader",
        &s.disk,
        "kernel = \"/boot/vmlinuz\"\nramdisk = \"/boot/initrd\"\nextra = \"cfg=1\"\n\
         bootloader_args = [\"--entry=2\", \"-q\"]",
    );
    let path = format!(
        "{}:{}",
        s.host.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = s
        .host
        .cmd(&["create", &cfg])
        .env("PATH", path)
        .env("XKVM_LIBEXEC_DIR", s.host.path().join("no-libexec"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running xkvm");
    assert!(
        out.status.success(),
        "create failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.host.logs()
    );
    s.host
        .wait_dmesg("bl-proto", "XKVM-TEST startinfo: PASS", 1);
    let log = s.host.dmesg("bl-proto");
    assert!(log.contains("cmdline: from the script\n"), "{log}");
    assert!(
        log.contains("modules 0"),
        "no ramdisk item: no ramdisk, even with ramdisk= in the config:\n{log}"
    );

    let args = std::fs::read_to_string(record.with_extension("args")).expect("args recorded");
    let args: Vec<&str> = args.lines().collect();
    let run = s.host.domain_dir("bl-proto");
    let domid = s.host.domid("bl-proto");
    assert_eq!(
        args,
        [
            "--kernel=/boot/vmlinuz".to_owned(),
            "--ramdisk=/boot/initrd".to_owned(),
            "--args=cfg=1".to_owned(),
            format!("--output={}/bootloader.{domid}.out", run.display()),
            "--output-format=simple0".to_owned(),
            format!("--output-directory={}/bootloader.{domid}.d", run.display()),
            "--entry=2".to_owned(),
            "-q".to_owned(),
            s.disk.display().to_string(),
        ]
    );
    let env = std::fs::read_to_string(record.with_extension("env")).expect("env recorded");
    assert_eq!(env, "TERM=vt100\ntty=yes\n", "libxl's TERM and a pty");
    let vmm_log = s.host.logs();
    assert!(
        vmm_log.contains("unexpected output from bootloader: `colour blue'"),
        "unknown items are warned about: {vmm_log}"
    );
    assert!(leftovers(&s.host, "bl-proto").is_empty());
}

#[test]
fn the_bootloader_runs_again_for_each_reboot() {
    let Some(s) = Scripts::new("bootloader-reboot") else {
        return;
    };
    // First run: the guest reboots; second: it powers off.
    let runs = s.host.path().join("runs");
    let body = format!(
        "{FIND_OUTPUT}\n\
         echo run >> {runs}\n\
         if [ \"$(wc -l < {runs})\" -eq 1 ]; then why=reboot; else why=poweroff; fi\n\
         cp {kernel} \"$dir/k\"\n\
         printf 'kernel %s\\0args %s\\0' \"$dir/k\" \"$why\" > \"$out\"",
        runs = runs.display(),
        kernel = xkvm_guests::path("shutdown").display(),
    );
    let bl = s.script("reboot-bl", &body);
    let (ok, stderr) = s.create("bl-reboot", &bl.display().to_string(), "");
    assert!(ok, "create failed: {stderr}\n{}", s.host.logs());
    s.host
        .wait_dmesg("bl-reboot", "shutting down with reason 0 (poweroff)", 1);
    let log = s.host.dmesg("bl-reboot");
    assert!(log.contains("(reboot)"), "the first boot rebooted:\n{log}");
    let count = std::fs::read_to_string(&runs).expect("runs recorded");
    assert_eq!(count.lines().count(), 2, "one bootloader run per boot");
}

#[test]
fn destroy_ends_a_bootloader_that_waits_forever() {
    use std::time::{Duration, Instant};
    let Some(s) = Scripts::new("bootloader-destroy") else {
        return;
    };
    let bl = s.script("waiting-bl", "exec sleep 600");
    let cfg = cfg(&s.host, "bl-wait", &bl.display().to_string(), &s.disk, "");
    let child = s
        .host
        .cmd(&["create", &cfg])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running xkvm");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.host.xkvm(&["destroy", "bl-wait"]).status.success() {
        assert!(Instant::now() < deadline, "the domain never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("create ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create must fail");
    assert!(
        stderr.contains("waiting-bl") && stderr.contains("stopped while it ran"),
        "{stderr}"
    );
}
