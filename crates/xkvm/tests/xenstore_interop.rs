//! Interop: Xen 4.17's own clients (`xenstore-*` from Debian's
//! xenstore-utils/libxenstore4) and `test-xenstore` (xen-utils-4.17)
//! against `xkvm xenstored`. The packages come from
//! `scripts/debian-deps.sh` (env `XKVM_DEBS` names the unpacked root).
//! Without them the tests skip with a reason, except under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn debs_root() -> Option<PathBuf> {
    let root = match std::env::var_os("XKVM_DEBS") {
        Some(r) => PathBuf::from(r),
        None => {
            let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let out = Command::new(top.join("scripts/debian-deps.sh"))
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    root.join("usr/bin/xenstore-read").exists().then_some(root)
}

fn require_debs() -> Option<PathBuf> {
    match debs_root() {
        Some(r) => Some(r),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but Xen's Debian clients are unavailable (scripts/debian-deps.sh failed)"
            )
        }
        None => {
            eprintln!(
                "skipping: Xen's Debian clients are unavailable (run scripts/debian-deps.sh)"
            );
            None
        }
    }
}

/// `xkvm xenstored` on a private socket, killed on drop.
struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    sock: PathBuf,
    root: PathBuf,
}

impl Daemon {
    fn start(root: PathBuf) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("xenstored.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_xkvm"))
            .args(["xenstored", "--socket"])
            .arg(&sock)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn xkvm xenstored");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "xkvm xenstored did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            _dir: dir,
            sock,
            root,
        }
    }

    fn cmd(&self, prog: &str) -> Command {
        let r = &self.root;
        let bin = [
            r.join("usr/bin").join(prog),
            r.join("usr/lib/xen-4.17/bin").join(prog),
        ]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{prog} not found under {}", r.display()));
        let mut c = Command::new(bin);
        c.env("XENSTORED_PATH", &self.sock).env(
            "LD_LIBRARY_PATH",
            format!(
                "{}:{}",
                r.join("usr/lib/x86_64-linux-gnu").display(),
                r.join("usr/lib/xen-4.17/lib/x86_64-linux-gnu").display()
            ),
        );
        c
    }

    fn run(&self, prog: &str, args: &[&str]) -> Output {
        run_with_timeout(self.cmd(prog).args(args), Duration::from_secs(60))
    }

    /// Runs a client and returns its stdout, asserting success.
    fn ok(&self, prog: &str, args: &[&str]) -> String {
        let out = self.run(prog, args);
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: the daemon must stop cleanly and remove its socket.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("client timed out: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn xen_clients_read_write_list_ls_exists_rm_chmod() {
    let Some(root) = require_debs() else { return };
    let d = Daemon::start(root);
    d.ok("xenstore-write", &["/chk/a/b", "hi"]);
    assert_eq!(d.ok("xenstore-read", &["/chk/a/b"]), "hi");
    d.ok("xenstore-write", &["/chk/a/c", "1", "/chk/a/d", "2"]);
    assert_eq!(d.ok("xenstore-list", &["/chk/a"]), "b\nc\nd");
    assert_eq!(
        d.ok("xenstore-ls", &["/chk/a"]),
        "b = \"hi\"\nc = \"1\"\nd = \"2\""
    );
    d.ok("xenstore-exists", &["/chk/a/b"]);
    assert!(!d.run("xenstore-exists", &["/chk/a/nope"]).status.success());
    d.ok("xenstore-chmod", &["/chk/a/b", "n0", "r1"]);
    let ls = d.ok("xenstore-ls", &["-p", "/chk/a"]);
    assert_eq!(
        ls.lines().next(),
        Some("b = \"hi\" . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0,r1)")
    );
    d.ok("xenstore-chmod", &["-r", "/chk/a", "b2"]);
    let ls = d.ok("xenstore-ls", &["-p", "/chk/a"]);
    assert_eq!(
        ls.lines().last(),
        Some("d = \"2\"  . . . . . . . . . . . . . . . . . . . . . . . . . .  (b2)")
    );
    d.ok("xenstore-rm", &["/chk/a/b"]);
    assert!(!d.run("xenstore-read", &["/chk/a/b"]).status.success());
    d.ok("xenstore-write", &["relchk", "x"]);
    assert_eq!(d.ok("xenstore-read", &["/local/domain/0/relchk"]), "x");
    d.ok("xenstore-rm", &["relchk"]);
    // Whole-tree listing as Xen's tools print it.
    d.ok("xenstore-rm", &["/chk"]);
    // Xen's initial tree plus what the relative write created.
    let ls = d.ok("xenstore-ls", &["-p", "/"]);
    let want = [
        "tool = \"\"  . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)",
        " xenstored = \"\"  . . . . . . . . . . . . . . . . . . . . . .  (n0)",
        "local = \"\" . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)",
        " domain = \"\" . . . . . . . . . . . . . . . . . . . . . . . .  (n0)",
        "  0 = \"\" . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)",
    ];
    assert_eq!(ls.lines().collect::<Vec<_>>(), want);
}

#[test]
fn xen_watch_client_sees_initial_event_and_changes() {
    let Some(root) = require_debs() else { return };
    let d = Daemon::start(root);
    let watcher = d
        .cmd("xenstore-watch")
        .args(["-n", "4", "/chk/w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xenstore-watch");
    std::thread::sleep(Duration::from_millis(300));
    d.ok("xenstore-write", &["/chk/w/x", "1"]);
    d.ok("xenstore-write", &["/chk/w/y/z", "2"]);
    d.ok("xenstore-rm", &["/chk/w"]);
    let out = watcher.wait_with_output().expect("watcher");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/chk/w\n/chk/w/x\n/chk/w/y/z\n/chk/w\n"
    );
}

#[test]
fn xen_test_xenstore_passes_every_test() {
    let Some(root) = require_debs() else { return };
    let d = Daemon::start(root);
    let list = d.ok("test-xenstore", &["-l"]);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert!(names.len() >= 12, "test-xenstore lists {names:?}");
    for name in &names {
        let out = d.run("test-xenstore", &["-t", name]);
        assert!(
            out.status.success(),
            "test-xenstore -t {name:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    d.ok("test-xenstore", &[]);
    d.ok("test-xenstore", &["-i", "50"]);
}
