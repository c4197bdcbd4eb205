//! `bootloader=` (e.g. pygrub): libxl's bootloader protocol, as Xen 4.17's
//! `libxl_bootloader.c` runs it before every boot of a PV or PVH domain.
//!
//! The bootloader runs on a pseudo-terminal (its menu is the domain's
//! console while it runs) as
//! `BOOTLOADER [--kernel=K] [--ramdisk=R] [--args=A] --output=FILE
//! --output-format=simple0 --output-directory=DIR [bootloader_args...] DISK`
//! with `TERM=vt100` added to our environment, where `DISK` is the first
//! `disk=` (libxl's boot disk). It copies the kernel and ramdisk it chose out
//! of the guest's disk into `DIR` and writes NUL-separated `kernel PATH`,
//! `ramdisk PATH` and `args CMDLINE` items to `FILE`. Those replace the
//! config's kernel, ramdisk and command line; the copies are deleted once
//! the domain has loaded them.
//!
//! Stricter than libxl, which maps and then unlinks whatever paths the
//! bootloader names: a kernel or ramdisk outside `DIR` is refused (and left
//! alone), so a broken bootloader cannot make us load or delete host files.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use xl_config::{Disk, DiskFormat, DomainConfig, DomainType};

/// Where libxl looks first for a bootloader given by bare name
/// (`libxl__private_bindir_path()`, Debian's Xen 4.17 `LIBEXEC_BIN`).
pub const LIBEXEC_BIN: &str = "/usr/lib/xen-4.17/bin";

/// Environment variable that replaces [`LIBEXEC_BIN`] (for a Xen tools tree
/// that is unpacked elsewhere, as in our tests).
pub const LIBEXEC_ENV: &str = "XKVM_LIBEXEC_DIR";

/// libxl's `parse_bootloader_result` buffer (`PATH_MAX * 2`): longer items
/// are skipped with a warning.
const MAX_ITEM: usize = 4096 * 2;

/// How much of the bootloader's screen output is kept for error messages.
const TAIL: usize = 4096;

/// Whether libxl runs the bootloader for this domain: PV and PVH domains
/// with `bootloader=` (libxl skips it for HVM).
pub fn applies(config: &DomainConfig) -> bool {
    config.c_info.type_ != DomainType::Hvm && config.b_info.bootloader.is_some()
}

/// What the bootloader chose. Its files are deleted (with their directory)
/// when this is dropped, i.e. once the domain has loaded them.
#[derive(Debug)]
pub struct Chosen {
    pub kernel: PathBuf,
    pub ramdisk: Option<PathBuf>,
    /// `args`; `None` when the bootloader gave none (the domain then boots
    /// with an empty command line, as under libxl).
    pub cmdline: Option<String>,
    _dir: Option<OutputDir>,
}

impl Chosen {
    /// A choice with no files of its own to delete (for tests of what the
    /// choice becomes).
    #[cfg(test)]
    pub fn fixed(kernel: &str, ramdisk: Option<&str>, cmdline: Option<&str>) -> Self {
        Self {
            kernel: kernel.into(),
            ramdisk: ramdisk.map(PathBuf::from),
            cmdline: cmdline.map(str::to_owned),
            _dir: None,
        }
    }
}

/// The terminal the bootloader talks to while it runs: the domain's console
/// (its input ends when `done` is set, as [`crate::console::ConsoleHub`]'s
/// does, so the copying thread never outlives the bootloader).
pub struct Terminal {
    pub console: vmm::ConsoleIo,
    pub done: Arc<AtomicBool>,
}

/// Everything a run needs besides the configuration.
pub struct Session<'a> {
    pub domid: u32,
    /// A private directory for the output file and directory (the domain's
    /// run directory); libxl uses `/var/lib/xen`.
    pub work_dir: &'a Path,
    pub terminal: Terminal,
    /// Polled while the bootloader runs: true ends it with SIGTERM (libxl's
    /// domain-death check), e.g. after `xkvm destroy`.
    pub stop: &'a dyn Fn() -> bool,
}

/// Runs `config`'s bootloader (callers check [`applies`] first) and returns
/// what it chose.
pub fn run(config: &DomainConfig, session: Session<'_>) -> anyhow::Result<Chosen> {
    let b = &config.b_info;
    let name = b
        .bootloader
        .as_deref()
        .context("no bootloader configured")?;
    let disk = boot_disk(&config.disks).with_context(|| format!("bootloader {name}"))?;
    let program = resolve(name, &libexec_dir());
    let dir = OutputDir::create(session.work_dir, session.domid)?;
    let args = arguments(&BootInputs::of(config), &dir.output, &dir.dir, &disk);
    tracing::info!(
        "running bootloader {} {}",
        program.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = run_on_pty(&program, &args, session.terminal, session.stop)
        .with_context(|| format!("bootloader {name}"))?;
    if !status.status.success() {
        bail!(
            "bootloader {name} failed ({}){}",
            describe(status.status),
            screen_tail(&status.tail)
        );
    }
    let bytes = std::fs::read(&dir.output)
        .with_context(|| format!("bootloader {name}: reading {}", dir.output.display()))?;
    let out = parse_output(&bytes);
    for w in &out.warnings {
        tracing::warn!("bootloader {name}: {w}");
    }
    let kernel = out.kernel.as_deref().with_context(|| {
        format!(
            "bootloader {name} succeeded but named no kernel in its output{}",
            screen_tail(&status.tail)
        )
    })?;
    let kernel = dir
        .inside(kernel)
        .with_context(|| format!("bootloader {name}: kernel"))?;
    let ramdisk = match out.ramdisk.as_deref() {
        Some(r) => Some(
            dir.inside(r)
                .with_context(|| format!("bootloader {name}: ramdisk"))?,
        ),
        None => None,
    };
    Ok(Chosen {
        kernel,
        ramdisk,
        cmdline: out.args,
        _dir: Some(dir),
    })
}

/// The directory libxl's bootloader lookup starts in.
fn libexec_dir() -> PathBuf {
    std::env::var_os(LIBEXEC_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(LIBEXEC_BIN), PathBuf::from)
}

/// libxl's lookup: an absolute path as it is; otherwise `libexec/NAME` if
/// that exists (`lstat`), else the name itself, which exec looks up in
/// `PATH` (execvp).
pub fn resolve(bootloader: &str, libexec: &Path) -> PathBuf {
    if bootloader == "/usr/bin/pygrub" {
        tracing::warn!(
            "bootloader='/usr/bin/pygrub' is deprecated; use bootloader='pygrub' instead"
        );
    }
    if bootloader.starts_with('/') {
        return bootloader.into();
    }
    let candidate = libexec.join(bootloader);
    if std::fs::symlink_metadata(&candidate).is_ok() {
        candidate
    } else {
        bootloader.into()
    }
}

/// libxl's boot disk: the first `disk=` entry, as a path this host can
/// read (`libxl__device_disk_find_local_path`).
pub fn boot_disk(disks: &[Disk]) -> anyhow::Result<PathBuf> {
    let disk = disks
        .first()
        .context("cannot run the bootloader with no boot disk (the first disk= entry)")?;
    let what = disk.vdev.as_deref().unwrap_or("the first disk");
    let path = disk
        .pdev_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .with_context(|| format!("boot disk {what} is empty; the bootloader needs a target"))?;
    if let Some(dom) = &disk.backend_domname {
        bail!("boot disk {what} is served by driver domain {dom}, which the bootloader cannot read from here");
    }
    // libxl hands raw images without a script straight to the bootloader;
    // anything else it first attaches to dom0 as a block device, which
    // needs Xen's blkback/qdisk in dom0.
    let format = disk.format.unwrap_or(DiskFormat::Raw);
    if format != DiskFormat::Raw {
        bail!(
            "boot disk {what} is in format {}; the bootloader can only read raw images \
             (libxl would attach it to dom0 first, which needs Xen)",
            format.name()
        );
    }
    if let Some(script) = &disk.script {
        bail!(
            "boot disk {what} uses script {script}; the bootloader can only read disks \
             without a script (libxl would attach it to dom0 first, which needs Xen)"
        );
    }
    Ok(path.into())
}

/// The parts of the build info that become `--kernel`, `--ramdisk` and
/// `--args`.
#[derive(Debug, Default)]
pub struct BootInputs<'a> {
    pub kernel: Option<&'a str>,
    pub ramdisk: Option<&'a str>,
    pub cmdline: Option<&'a str>,
    pub bootloader_args: &'a [String],
}

impl<'a> BootInputs<'a> {
    pub fn of(config: &'a DomainConfig) -> Self {
        let b = &config.b_info;
        Self {
            kernel: b.kernel.as_deref(),
            ramdisk: b.ramdisk.as_deref(),
            cmdline: b.cmdline.as_deref(),
            bootloader_args: &b.bootloader_args,
        }
    }
}

/// `make_bootloader_args`, without argv[0]: `--kernel`, `--ramdisk`,
/// `--args` (only when non-empty) from the config, the output options,
/// `bootloader_args` and the disk last.
pub fn arguments(inputs: &BootInputs<'_>, output: &Path, dir: &Path, disk: &Path) -> Vec<OsString> {
    let opt = |key: &str, value: &std::ffi::OsStr| {
        let mut a = OsString::from(key);
        a.push(value);
        a
    };
    let mut args: Vec<OsString> = Vec::new();
    if let Some(k) = inputs.kernel {
        args.push(opt("--kernel=", k.as_ref()));
    }
    if let Some(r) = inputs.ramdisk {
        args.push(opt("--ramdisk=", r.as_ref()));
    }
    if let Some(c) = inputs.cmdline.filter(|c| !c.is_empty()) {
        args.push(opt("--args=", c.as_ref()));
    }
    args.push(opt("--output=", output.as_os_str()));
    args.push("--output-format=simple0".into());
    args.push(opt("--output-directory=", dir.as_os_str()));
    args.extend(inputs.bootloader_args.iter().map(OsString::from));
    args.push(disk.into());
    args
}

/// The `simple0` output, read as `parse_bootloader_result` reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub kernel: Option<String>,
    pub ramdisk: Option<String>,
    pub args: Option<String>,
    pub warnings: Vec<String>,
}

/// Splits `bytes` at NULs; an item is `KEY` + whitespace + value (leading
/// whitespace of the value dropped); a later item replaces an earlier one;
/// empty items are skipped, unknown or overlong ones warned about.
pub fn parse_output(bytes: &[u8]) -> Output {
    let mut out = Output::default();
    for item in bytes.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(item);
        if item.len() >= MAX_ITEM {
            let head: String = text.chars().take(150).collect();
            out.warnings.push(format!(
                "bootloader output contained overly long item `{head}...'"
            ));
            continue;
        }
        if let Some(v) = command(&text, "kernel") {
            out.kernel = Some(v.to_owned());
        } else if let Some(v) = command(&text, "ramdisk") {
            out.ramdisk = Some(v.to_owned());
        } else if let Some(v) = command(&text, "args") {
            out.args = Some(v.to_owned());
        } else {
            out.warnings
                .push(format!("unexpected output from bootloader: `{text}'"));
        }
    }
    out
}

/// `bootloader_result_command`: `prefix` followed by at least one
/// whitespace character.
fn command<'t>(item: &'t str, prefix: &str) -> Option<&'t str> {
    let rest = item.strip_prefix(prefix)?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    Some(rest.trim_start_matches(|c: char| c.is_ascii_whitespace()))
}

/// The output file and directory (libxl's `bootloader.<domid>.out` and
/// `.d`), removed with everything in them when dropped.
#[derive(Debug)]
struct OutputDir {
    output: PathBuf,
    dir: PathBuf,
}

impl OutputDir {
    fn create(base: &Path, domid: u32) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = base.join(format!("bootloader.{domid}.d"));
        let output = base.join(format!("bootloader.{domid}.out"));
        // Left over from a run that was killed: start clean.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the bootloader directory {}", dir.display()))?;
        let made = Self { output, dir };
        // The bootloader opens the output without O_CREAT (pygrub does).
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&made.output)
            .with_context(|| format!("creating the bootloader output {}", made.output.display()))?;
        Ok(made)
    }

    /// `path` as a regular file inside the directory.
    fn inside(&self, path: &str) -> anyhow::Result<PathBuf> {
        let real = std::fs::canonicalize(path).with_context(|| format!("{path} does not exist"))?;
        let dir = std::fs::canonicalize(&self.dir)
            .with_context(|| format!("{} is gone", self.dir.display()))?;
        if !real.starts_with(&dir) {
            bail!(
                "{path} is outside the output directory {}; refusing to load (or delete) it",
                self.dir.display()
            );
        }
        if !real.is_file() {
            bail!("{path} is not a regular file");
        }
        Ok(real)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.output);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the bootloader ended and the last of what it showed.
struct Finished {
    status: std::process::ExitStatus,
    tail: Vec<u8>,
}

/// Runs `program` on a new pty (its controlling terminal, in raw mode as
/// libxl sets it) and copies between the pty and `terminal` until it
/// exits, ending it with SIGTERM when `stop()` says so.
fn run_on_pty(
    program: &Path,
    args: &[OsString],
    terminal: Terminal,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<Finished> {
    let (master, slave) = open_pty()?;
    let stdio = |fd: &OwnedFd| -> anyhow::Result<std::process::Stdio> {
        Ok(fd.try_clone().context("duplicating the pty")?.into())
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env("TERM", "vt100")
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?);
    // SAFETY: setsid and ioctl are async-signal-safe; after the fork the
    // child makes the pty (already its fd 0) its controlling terminal, as
    // login_tty does.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    // Only the child holds the slave now: its exit ends our reads (EIO).
    drop(cmd);
    drop(slave);

    let Terminal { console, done } = terminal;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let display = {
        let reader = File::from(master.try_clone().context("duplicating the pty")?);
        let (tail, output) = (tail.clone(), console.output);
        std::thread::Builder::new()
            .name("bootloader-display".into())
            .spawn(move || copy_display(reader, output, &tail))?
    };
    let keystrokes = match console.input {
        Some(input) => {
            let writer = File::from(master.try_clone().context("duplicating the pty")?);
            Some(
                std::thread::Builder::new()
                    .name("bootloader-keys".into())
                    .spawn(move || copy_keys(input, writer))?,
            )
        }
        None => None,
    };
    drop(master);

    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for the bootloader")? {
            break s;
        }
        if stop() {
            // SAFETY: signals our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let s = child.wait().context("waiting for the bootloader")?;
            done.store(true, Ordering::SeqCst);
            bail!("stopped while it ran ({})", describe(s));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    done.store(true, Ordering::SeqCst);
    let _ = display.join();
    if let Some(k) = keystrokes {
        let _ = k.join();
    }
    let tail = std::mem::take(&mut *tail.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Finished { status, tail })
}

/// A pty pair with both ends close-on-exec (the child gets the slave as
/// its stdio only) and libxl's raw mode.
fn open_pty() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into the given ints; the name, termios
    // and winsize pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("opening a pty for the bootloader");
    }
    // SAFETY: openpty succeeded, so both fds are open and now owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fd is open; FD_CLOEXEC is a valid descriptor flag.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: termios is plain data that tcgetattr fills for an open pty.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: master is an open pty; `t` is a valid termios.
    if unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) } == 0 {
        // SAFETY: cfmakeraw only edits the struct; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(master.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
    Ok((master, slave))
}

/// Bootloader screen → console, keeping the last [`TAIL`] bytes.
fn copy_display(mut pty: File, mut console: Box<dyn Write + Send>, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    // EIO once the bootloader (the last holder of the slave) is gone.
    while let Ok(n) = pty.read(&mut buf) {
        if n == 0 {
            break;
        }
        let _ = console.write_all(&buf[..n]);
        let _ = console.flush();
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        t.extend_from_slice(&buf[..n]);
        let excess = t.len().saturating_sub(TAIL);
        t.drain(..excess);
    }
}

/// Console keystrokes → bootloader, until the console's input ends.
fn copy_keys(mut input: Box<dyn Read + Send>, mut pty: File) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = input.read(&mut buf) {
        if n == 0 || pty.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// This process's standard input as console input, ending (EOF) when
/// `done` is set or at xl's escape character Ctrl-] (for `create -F -c`,
/// whose terminal is the console).
pub struct StdinUntil {
    pub done: Arc<AtomicBool>,
}

impl Read for StdinUntil {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.done.load(Ordering::SeqCst) {
                return Ok(0);
            }
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for fd 0; a bounded wait so `done`
            // is seen soon.
            let r = unsafe { libc::poll(&mut pfd, 1, 100) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                continue;
            }
            let n = std::io::stdin().read(buf)?;
            return Ok(
                match buf[..n].iter().position(|&b| b == crate::console::ESCAPE) {
                    Some(i) => i,
                    None => n,
                },
            );
        }
    }
}

/// "exit status 1" / "killed by signal 15".
fn describe(s: std::process::ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// The last lines the bootloader showed, without terminal control
/// sequences, for an error message.
fn screen_tail(raw: &[u8]) -> String {
    let text = strip_escapes(&String::from_utf8_lossy(raw));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let last = &lines[lines.len().saturating_sub(5)..];
    format!("; it said: {}", last.join(" | "))
}

/// Drops ANSI escape sequences (curses output) and other control bytes
/// except newlines.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters until a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // Character-set selection and similar: one more byte.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' => out.push('\n'),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn arguments_follow_make_bootloader_args() {
        let extra = ["-q".to_owned(), "--entry=1".to_owned()];
        let inputs = BootInputs {
            kernel: Some("/boot/vmlinuz"),
            ramdisk: Some("/boot/initrd"),
            cmdline: Some("root=/dev/xvda1 ro"),
            bootloader_args: &extra,
        };
        let args = arguments(
            &inputs,
            Path::new("/run/d/bootloader.3.out"),
            Path::new("/run/d/bootloader.3.d"),
            Path::new("/img/disk.raw"),
        );
        assert_eq!(
            strs(&args),
            [
                "--kernel=/boot/vmlinuz",
                "--ramdisk=/boot/initrd",
                "--args=root=/dev/xvda1 ro",
                "--output=/run/d/bootloader.3.out",
                "--output-format=simple0",
                "--output-directory=/run/d/bootloader.3.d",
                "-q",
                "--entry=1",
                "/img/disk.raw",
            ]
        );
    }

    #[test]
    fn arguments_leave_out_unset_kernel_ramdisk_and_empty_args() {
        let inputs = BootInputs {
            cmdline: Some(""),
            ..BootInputs::default()
        };
        let args = arguments(
            &inputs,
            Path::new("/o"),
            Path::new("/d"),
            Path::new("/disk"),
        );
        assert_eq!(
            strs(&args),
            [
                "--output=/o",
                "--output-format=simple0",
                "--output-directory=/d",
                "/disk"
            ]
        );
    }

    #[test]
    fn output_items_are_parsed_as_libxl_does() {
        let out = parse_output(
            b"kernel /d/boot_kernel.x\0ramdisk \t /d/boot_ramdisk.y\0args root=/dev/xvda1  quiet\0\0",
        );
        assert_eq!(out.kernel.as_deref(), Some("/d/boot_kernel.x"));
        assert_eq!(out.ramdisk.as_deref(), Some("/d/boot_ramdisk.y"));
        assert_eq!(out.args.as_deref(), Some("root=/dev/xvda1  quiet"));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    #[test]
    fn unknown_and_unspaced_items_warn_and_later_items_win() {
        let out = parse_output(b"kernel /a\0kernelx /b\0args\0colour blue\0kernel /c");
        assert_eq!(
            out.kernel.as_deref(),
            Some("/c"),
            "the last kernel item wins"
        );
        assert_eq!(out.args, None, "`args` without a value is not an args item");
        assert_eq!(out.warnings.len(), 3, "{:?}", out.warnings);
        assert!(out.warnings[2].contains("colour blue"));
    }

    #[test]
    fn overlong_items_are_skipped_with_a_warning() {
        let mut bytes = b"kernel /k\0args ".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_ITEM));
        bytes.push(0);
        let out = parse_output(&bytes);
        assert_eq!(out.kernel.as_deref(), Some("/k"));
        assert_eq!(out.args, None);
        assert!(
            out.warnings[0].contains("overly long"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn empty_output_names_no_kernel() {
        assert_eq!(parse_output(b""), Output::default());
        assert_eq!(parse_output(b"\0\0"), Output::default());
    }

    #[test]
    fn bare_names_are_looked_up_in_libexec_then_left_to_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pygrub"), "").expect("write");
        assert_eq!(resolve("pygrub", dir.path()), dir.path().join("pygrub"));
        assert_eq!(resolve("mygrub", dir.path()), PathBuf::from("mygrub"));
        assert_eq!(
            resolve("/opt/bl", dir.path()),
            PathBuf::from("/opt/bl"),
            "absolute paths are used as given"
        );
    }

    fn disk(spec: &str) -> Disk {
        let cfg = xl_config::parse(
            "t.cfg",
            format!("name='g'\ntype='pvh'\nkernel='/k'\ndisk=[{spec}]\n").as_bytes(),
        )
        .expect("parses")
        .config;
        cfg.disks.into_iter().next().expect("one disk")
    }

    #[test]
    fn the_boot_disk_is_the_first_raw_disk_without_script() {
        let disks = [
            disk("'/img/a.raw,raw,xvda,rw'"),
            disk("'/img/b.raw,raw,xvdb,rw'"),
        ];
        assert_eq!(boot_disk(&disks).expect("raw"), PathBuf::from("/img/a.raw"));
        assert_eq!(
            boot_disk(&[disk("'phy:/dev/vg/root,xvda,w'")]).expect("phy"),
            PathBuf::from("/dev/vg/root")
        );
    }

    #[test]
    fn unreadable_boot_disks_are_refused_with_the_reason() {
        let no_disk = boot_disk(&[]).expect_err("no disks");
        assert!(no_disk.to_string().contains("no boot disk"), "{no_disk}");
        let qcow2 = boot_disk(&[disk("'/a.q,qcow2,xvda,rw'")]).expect_err("qcow2");
        assert!(qcow2.to_string().contains("format qcow2"), "{qcow2}");
        let script =
            boot_disk(&[disk("'vdev=xvda,script=block-x,target=/a'")]).expect_err("script");
        assert!(script.to_string().contains("script block-x"), "{script}");
        let dd = boot_disk(&[disk("'/a,raw,xvda,rw,backend=dd'")]).expect_err("driver domain");
        assert!(dd.to_string().contains("driver domain dd"), "{dd}");
        let empty = boot_disk(&[disk("',,hdc:cdrom,r'")]).expect_err("empty");
        assert!(empty.to_string().contains("empty"), "{empty}");
    }

    #[test]
    fn only_pv_and_pvh_run_the_bootloader() {
        for (ty, runs) in [("pvh", true), ("pv", true), ("hvm", false)] {
            let cfg = xl_config::parse(
                "t.cfg",
                format!("name='g'\ntype='{ty}'\nbootloader='pygrub'\n").as_bytes(),
            )
            .expect("parses")
            .config;
            assert_eq!(applies(&cfg), runs, "{ty}");
        }
    }

    #[test]
    fn files_must_be_inside_the_output_directory() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = OutputDir::create(base.path(), 4).expect("create");
        let inside = dir.dir.join("boot_kernel.1");
        std::fs::write(&inside, "k").expect("write");
        let outside = base.path().join("elsewhere");
        std::fs::write(&outside, "x").expect("write");
        assert!(dir.inside(&inside.to_string_lossy()).is_ok());
        let err = dir.inside(&outside.to_string_lossy()).expect_err("outside");
        assert!(
            err.to_string().contains("outside the output directory"),
            "{err}"
        );
        let sneaky = format!("{}/../elsewhere", dir.dir.display());
        assert!(dir.inside(&sneaky).is_err(), "`..` does not get out");
        let d = dir.dir.clone();
        drop(dir);
        assert!(!d.exists(), "dropping deletes the extracted files");
        assert!(outside.exists(), "files outside are left alone");
    }

    #[test]
    fn screen_tail_drops_terminal_control_sequences() {
        let raw = b"\x1b(B\x1b)0\x1b[1;24r\x1b[m\x1b[?7hTraceback:\r\nRuntimeError: no kernel\r\n";
        assert_eq!(
            screen_tail(raw),
            "; it said: Traceback: | RuntimeError: no kernel"
        );
    }
}
