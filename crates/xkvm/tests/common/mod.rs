//! What the end-to-end tests of the `xkvm` binary share: the /dev/kvm
//! skip rule and a private run directory whose VMMs die with it.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether /dev/kvm can be opened. Without it a test skips with a printed
/// reason, except under `CI=true`, where that fails.
pub fn kvm_usable(test: &str) -> bool {
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

/// A private run directory (`XKVM_RUN_DIR`, plus `XKVM_DUMP_DIR`); the
/// VMMs started in it are killed when it is dropped, pass or fail.
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new(test: &str) -> Option<Host> {
        kvm_usable(test).then(|| Host {
            dir: tempfile::tempdir().expect("tempdir"),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    pub fn dump_dir(&self) -> PathBuf {
        self.path().join("dump")
    }

    /// `xkvm ARGS` pointed at this host's directories.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xkvm"));
        c.args(args)
            .env("XKVM_RUN_DIR", self.run_dir())
            .env("XKVM_DUMP_DIR", self.dump_dir())
            .env_remove("RUST_LOG")
            .current_dir(self.path());
        c
    }

    pub fn xkvm(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("running xkvm")
    }

    /// Runs `args` and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.xkvm(args);
        assert!(
            out.status.success(),
            "xkvm {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args`, insists on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.xkvm(args);
        assert!(
            !out.status.success(),
            "xkvm {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes `<name>.cfg` booting test guest `guest` with 16 MiB, with
    /// extra lines; returns its path.
    pub fn cfg(&self, name: &str, guest: &str, extra: &str) -> String {
        let path = self.path().join(format!("{name}.cfg"));
        let text = format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = 16\n{extra}\n",
            xkvm_guests::path(guest).display()
        );
        std::fs::write(&path, text).expect("config");
        path.display().to_string()
    }

    /// `xkvm create` of [`Self::cfg`]; returns the domain id.
    pub fn create(&self, name: &str, guest: &str, extra: &str) -> u32 {
        let cfg = self.cfg(name, guest, extra);
        self.ok(&["create", &cfg]);
        self.domid(name)
    }

    pub fn domid(&self, name: &str) -> u32 {
        self.ok(&["domid", name])
            .trim()
            .parse()
            .expect("domid prints a number")
    }

    pub fn dmesg(&self, name: &str) -> String {
        self.ok(&["dmesg", name])
    }

    /// Waits (up to 60 s) until the guest has printed `line` `times` times.
    pub fn wait_dmesg(&self, name: &str, line: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.dmesg(name);
            if log.matches(line).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {line:?} x{times} from {name}; dmesg:\n{log}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn domain_dir(&self, name: &str) -> PathBuf {
        self.run_dir().join("domains").join(name)
    }

    /// Every VMM log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = std::fs::read_dir(self.run_dir().join("domains")) {
            for e in entries.flatten() {
                let log = std::fs::read_to_string(e.path().join("vmm.log")).unwrap_or_default();
                s += &format!("--- {} vmm.log:\n{log}\n", e.path().display());
            }
        }
        s
    }

    /// The pids of the VMMs recorded in this run directory.
    pub fn vmm_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.run_dir().join("domains")) {
            for e in entries.flatten() {
                if let Some(pid) = std::fs::read_to_string(e.path().join("pid"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Host {
    /// `xkvm xenstore-read -d NAME PATH`, trimmed; panics if it fails.
    pub fn xs_read(&self, name: &str, path: &str) -> String {
        self.ok(&["xenstore-read", "-d", name, path])
            .trim()
            .to_owned()
    }

    /// One request on domain `name`'s control socket (the VMM's own
    /// view, e.g. `{"op": "mem-info"}`); returns the JSON reply.
    pub fn control(&self, name: &str, request: serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, BufReader, Write};
        let path = self.domain_dir(name).join("control.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("control socket");
        s.write_all(format!("{request}\n").as_bytes())
            .expect("request");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("reply");
        serde_json::from_str(&line).expect("JSON reply")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for pid in self.vmm_pids() {
            // SAFETY: signalling a VMM this test started (its pid file is in
            // this test's private run directory).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
