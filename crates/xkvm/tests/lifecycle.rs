//! End-to-end domain lifecycle with the real `xkvm` binary: background
//! domains (one VMM process each), `list`, `console`, `shutdown`/`reboot`
//! through XenStore, `destroy`, `pause`, the `on_*` actions, and bad input.
//!
//! Every test has its own `XKVM_RUN_DIR` (and dump directory) and kills
//! whatever VMM processes are left in it when it ends, pass or fail.
//! Without a usable `/dev/kvm` the tests skip with a printed reason, except
//! under `CI=true`, where that fails.

mod common;

use common::Host;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Methods only the lifecycle tests use.
trait HostExt {
    fn row(&self, name: &str) -> Option<String>;
}

impl HostExt for Host {
    /// The `xkvm list` row of `name`, if listed.
    fn row(&self, name: &str) -> Option<String> {
        self.ok(&["list"])
            .lines()
            .skip(1)
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(str::to_owned)
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

const READY: &str = "xsshutdown: waiting for control/shutdown";
const BOOT: Duration = Duration::from_secs(30);

fn wait_ready(h: &Host, name: &str, times: usize) {
    wait_until(&format!("{name} to watch control/shutdown"), BOOT, || {
        h.dmesg(name).matches(READY).count() >= times
    });
}

fn id_of(row: &str) -> String {
    row.split_whitespace().nth(1).unwrap_or("").to_owned()
}

fn state_of(row: &str) -> String {
    row.split_whitespace().nth(4).unwrap_or("").to_owned()
}

#[test]
fn background_domain_is_listed_with_its_type_and_destroy_cleans_up() {
    let Some(h) = Host::new("background") else {
        return;
    };
    let id = h.create("bg", "xsshutdown", "");
    let dir = h.domain_dir("bg");
    for f in ["control.sock", "console.sock", "xenstore.sock", "pid"] {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }
    let list = h.ok(&["list"]);
    let header = list.lines().next().expect("header");
    assert_eq!(
        header,
        "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    );
    let row = h.row("bg").expect("bg listed");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], id.to_string(), "{row}");
    assert_eq!(cols[2], "16", "{row}");
    assert_eq!(cols[3], "1", "{row}");
    let state = state_of(&row);
    assert!(state == "r-----" || state == "-b----", "{row}");
    assert_eq!(h.ok(&["domname", &id.to_string()]).trim(), "bg");

    let long = h.ok(&["list", "-l", "bg"]);
    let v: serde_json::Value = serde_json::from_str(&long).expect("list -l is JSON");
    assert_eq!(v[0]["domid"], id);
    assert_eq!(v[0]["config"]["c_info"]["type"], "pvh", "{long}");
    assert_eq!(v[0]["config"]["c_info"]["name"], "bg", "{long}");
    let sock = v[0]["xenstore_socket"].as_str().expect("socket path");
    assert!(Path::new(sock).exists(), "{sock}");
    let ty = h.ok(&["xenstore-read", "-d", "bg", &format!("/libxl/{id}/type")]);
    assert_eq!(ty.trim(), "pvh");

    // Pause and unpause show in the state column.
    h.ok(&["pause", "bg"]);
    assert_eq!(state_of(&h.row("bg").expect("listed")), "--p---");
    h.ok(&["unpause", "bg"]);
    assert_ne!(state_of(&h.row("bg").expect("listed")), "--p---");

    h.ok(&["destroy", "bg"]);
    assert!(!dir.exists(), "destroy left {}", dir.display());
    assert!(h.row("bg").is_none());
    let ids: Vec<_> = std::fs::read_dir(h.run_dir().join("ids"))
        .expect("ids")
        .collect();
    assert!(ids.is_empty(), "domain id not released: {ids:?}");
}

#[test]
fn a_wrong_type_in_xenstore_is_warned_about_and_taken_as_hvm() {
    let Some(h) = Host::new("type readback") else {
        return;
    };
    let id = h.create("ty", "xsshutdown", "");
    wait_ready(&h, "ty", 1);
    h.ok(&[
        "xenstore-write",
        "-d",
        "ty",
        &format!("/libxl/{id}/type"),
        "bogus",
    ]);
    let out = h.xkvm(&["list", "-l", "ty"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("hvm"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["config"]["c_info"]["type"], "hvm");
    h.ok(&["destroy", "ty"]);
}

#[test]
fn shutdown_goes_through_xenstore_to_the_guest_and_w_waits() {
    let Some(h) = Host::new("shutdown") else {
        return;
    };
    h.create("sd", "xsshutdown", "on_poweroff = \"preserve\"");
    wait_ready(&h, "sd", 1);
    let out = h.xkvm(&["shutdown", "-w", "sd"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", h.logs());
    assert!(
        stderr.contains("has been shut down, reason code 0"),
        "{stderr}"
    );
    // The guest saw the request through its XenStore watch...
    assert!(
        h.dmesg("sd").contains("PASS control/shutdown = poweroff"),
        "{}",
        h.dmesg("sd")
    );
    // ...and on_poweroff=preserve keeps it, shut down, until destroyed.
    assert_eq!(state_of(&h.row("sd").expect("preserved")), "---s--");
    h.ok(&["destroy", "sd"]);
    assert!(h.row("sd").is_none());
}

#[test]
fn shutdown_without_pv_drivers_needs_f() {
    let Some(h) = Host::new("shutdown -F") else {
        return;
    };
    // The idle guest never sets a callback: no PV control interface.
    h.create("nopv", "idle", "on_poweroff = \"preserve\"");
    let err = h.fails(&["shutdown", "nopv"]);
    assert!(err.contains("PV control interface not available"), "{err}");
    let out = h.xkvm(&["shutdown", "-F", "-w", "nopv"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("reason code 0"), "{stderr}");
    assert_eq!(state_of(&h.row("nopv").expect("preserved")), "---s--");
}

#[test]
fn reboot_restarts_with_the_same_name_and_a_new_id() {
    let Some(h) = Host::new("reboot") else {
        return;
    };
    let id = h.create("rb", "xsshutdown", "on_reboot = \"restart\"");
    wait_ready(&h, "rb", 1);
    let out = h.xkvm(&["reboot", "-w", "rb"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", h.logs());
    assert!(
        stderr.contains(&format!("Domain {id} has been shut down, reason code 1")),
        "{stderr}"
    );
    wait_until("the restarted domain", BOOT, || h.domid("rb") != id);
    let new = h.domid("rb");
    assert!(new > id, "new id {new} after {id}");
    // The new domain booted again and watches control/shutdown again.
    wait_ready(&h, "rb", 2);
    assert!(h.dmesg("rb").contains("PASS control/shutdown = reboot"));
    h.ok(&["destroy", "rb"]);
}

#[test]
fn a_crash_with_coredump_destroy_leaves_an_elf_core() {
    let Some(h) = Host::new("on_crash") else {
        return;
    };
    h.create(
        "cr",
        "shutdown",
        "cmdline = \"crash\"\non_crash = \"coredump-destroy\"",
    );
    wait_until("the crashed domain to go", BOOT, || {
        !h.domain_dir("cr").exists()
    });
    let core = h.dump_dir().join("cr");
    assert!(core.exists(), "no core dump at {}", core.display());
    let out = match Command::new("readelf")
        .args(["-h", "-l", "-n"])
        .arg(&core)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("readelf unavailable ({e}); core file exists");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CORE (Core file)"), "{text}");
    assert!(text.contains("LOAD"), "{text}");
    assert!(text.contains("NT_PRSTATUS"), "{text}");
    check_core_contents(&std::fs::read(&core).expect("core"));
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// The dump holds the guest's real memory (the verdict line it formatted
/// before crashing is in its RAM) and a vCPU state whose rip lies in RAM.
fn check_core_contents(core: &[u8]) {
    let phoff = u64_at(core, 32) as usize;
    let phnum = usize::from(u16::from_le_bytes([core[56], core[57]]));
    let mut loads = Vec::new();
    let mut rip = None;
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        let (kind, off, paddr, size) = (
            u32_at(core, ph),
            u64_at(core, ph + 8) as usize,
            u64_at(core, ph + 24),
            u64_at(core, ph + 32) as usize,
        );
        match kind {
            1 => loads.push((paddr, &core[off..off + size])),
            4 => {
                let notes = &core[off..off + size];
                let mut n = 0;
                while n + 12 <= notes.len() {
                    let (namesz, descsz, ty) = (
                        u32_at(notes, n) as usize,
                        u32_at(notes, n + 4) as usize,
                        u32_at(notes, n + 8),
                    );
                    let desc = n + 12 + namesz.next_multiple_of(4);
                    if ty == 1 && &notes[n + 12..n + 16] == b"CORE" {
                        // pr_reg at 112; rip is its 17th register.
                        rip = Some(u64_at(notes, desc + 112 + 16 * 8));
                    }
                    n = desc + descsz.next_multiple_of(4);
                }
            }
            _ => {}
        }
    }
    let needle = b"XKVM-TEST shutdown: PASS shutting down with reason 3";
    assert!(
        loads
            .iter()
            .any(|(_, data)| data.windows(needle.len()).any(|w| w == needle)),
        "the guest's memory is not in the dump"
    );
    let rip = rip.expect("an NT_PRSTATUS note");
    assert!(
        loads
            .iter()
            .any(|(base, data)| (*base..*base + data.len() as u64).contains(&rip)),
        "rip {rip:#x} outside guest RAM"
    );
}

#[test]
fn a_crash_with_preserve_is_listed_as_shut_down_and_crashed() {
    let Some(h) = Host::new("on_crash preserve") else {
        return;
    };
    h.create(
        "cp",
        "shutdown",
        "cmdline = \"crash\"\non_crash = \"preserve\"",
    );
    wait_until("the crash", BOOT, || {
        h.row("cp").is_some_and(|r| state_of(&r) == "---sc-")
    });
    h.ok(&["destroy", "cp"]);
}

#[test]
fn two_domains_side_by_side_stay_separate() {
    let Some(h) = Host::new("two domains") else {
        return;
    };
    let a = h.create("a", "xsshutdown", "");
    let b = h.create("b", "xsshutdown", "");
    assert_ne!(a, b);
    h.ok(&["xenstore-write", "-d", "a", "/test/only-a", "1"]);
    assert_eq!(
        h.ok(&["xenstore-read", "-d", "a", "/test/only-a"]).trim(),
        "1"
    );
    let err = h.fails(&["xenstore-read", "-d", "b", "/test/only-a"]);
    assert!(err.contains("ENOENT"), "{err}");
    h.ok(&["destroy", "a"]);
    assert!(h.row("a").is_none());
    let row = h.row("b").expect("b undisturbed");
    assert_eq!(id_of(&row), b.to_string(), "{row}");
    h.ok(&["destroy", "b"]);
}

#[test]
fn unknown_domains_and_duplicate_names_are_refused() {
    let Some(h) = Host::new("bad input") else {
        return;
    };
    for verb in ["destroy", "console", "pause", "dmesg", "shutdown"] {
        let err = h.fails(&[verb, "nosuch"]);
        assert!(
            err.contains("nosuch is an invalid domain identifier"),
            "{verb}: {err}"
        );
    }
    assert!(h
        .fails(&["list", "42"])
        .contains("invalid domain identifier"));
    h.fails(&["domid", "nosuch"]);
    let id = h.create("dup", "xsshutdown", "");
    let cfg = h.cfg("dup", "xsshutdown", "");
    let err = h.fails(&["create", &cfg]);
    assert!(
        err.contains("domain with name \"dup\" already exists"),
        "{err}"
    );
    assert_eq!(h.domid("dup"), id, "the first domain is undisturbed");
    wait_ready(&h, "dup", 1);
    h.ok(&["destroy", "dup"]);
}

#[test]
fn a_killed_vmm_leaves_a_stale_dir_that_the_next_command_cleans() {
    let Some(h) = Host::new("stale") else {
        return;
    };
    h.create("st", "xsshutdown", "");
    let other = h.create("other", "xsshutdown", "");
    let dir = h.domain_dir("st");
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    // SAFETY: killing the VMM this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the VMM to die", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    assert!(dir.exists(), "kill -9 leaves the directory");
    let err = h.fails(&["destroy", "st"]);
    assert!(err.contains("invalid domain identifier"), "{err}");
    assert!(!dir.exists(), "the stale directory was not cleaned");
    assert!(h
        .row("other")
        .is_some_and(|r| id_of(&r) == other.to_string()));
    // The name is free again.
    h.create("st", "xsshutdown", "");
    h.ok(&["destroy", "st"]);
    h.ok(&["destroy", "other"]);
}

/// A console client with piped stdin/stdout.
fn attach(h: &Host, name: &str) -> Child {
    h.cmd(&["console", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xkvm console")
}

fn wait_exit(c: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("{what} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn console_attaches_sees_output_sends_input_and_detaches() {
    let Some(h) = Host::new("console") else {
        return;
    };
    // The console guest prompts on its ring, echoes one line, powers off.
    h.create("con", "console", "");
    let mut c = attach(&h, "con");
    c.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"hello xkvm\n")
        .expect("typing");
    let status = wait_exit(&mut c, "console client after poweroff");
    let mut out = String::new();
    c.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("output");
    assert!(status.success(), "{out}\n{}", h.logs());
    assert!(out.contains("type a line"), "{out}");
    assert!(out.contains("echo: hello xkvm"), "{out}");
}

#[test]
fn ctrl_bracket_detaches_and_a_second_console_is_refused() {
    let Some(h) = Host::new("console exclusive") else {
        return;
    };
    h.create("ex", "idle", "");
    let mut first = attach(&h, "ex");
    // Give the first client time to take the console.
    std::thread::sleep(Duration::from_millis(500));
    let out = h.xkvm(&["console", "ex"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second console was allowed");
    assert!(err.contains("already in use"), "{err}");
    first
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(&[0x1d])
        .expect("Ctrl-]");
    assert!(wait_exit(&mut first, "detached console").success());
    assert!(h.row("ex").is_some(), "detaching left the domain running");
    // The console is free again.
    let mut again = attach(&h, "ex");
    drop(again.stdin.take()); // end of input detaches too
    assert!(wait_exit(&mut again, "second attach").success());
    h.ok(&["destroy", "ex"]);
}

#[test]
fn rename_restart_keeps_the_old_domain_under_a_new_name() {
    let Some(h) = Host::new("rename-restart") else {
        return;
    };
    let id = h.create("rr", "xsshutdown", "on_reboot = \"rename-restart\"");
    wait_ready(&h, "rr", 1);
    h.ok(&["reboot", "-w", "rr"]);
    let old = format!("rr--{id}");
    let deadline = Instant::now() + BOOT;
    while Instant::now() < deadline && h.row(&old).is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let new_up = || h.row("rr").is_some_and(|r| id_of(&r) != id.to_string());
    while Instant::now() < deadline && !new_up() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(new_up(), "{}\n{}", h.ok(&["list"]), h.logs());
    assert_eq!(state_of(&h.row(&old).expect("old kept")), "---s--");
    assert_eq!(h.domid(&old), id, "the old domain keeps its id");
    assert!(h.domid("rr") > id);
    wait_ready(&h, "rr", 1);
    h.ok(&["destroy", &old]);
    h.ok(&["destroy", "rr"]);
}

#[test]
fn a_watchdog_shutdown_follows_on_watchdog() {
    let Some(h) = Host::new("on_watchdog") else {
        return;
    };
    h.create(
        "wd",
        "shutdown",
        "cmdline = \"watchdog\"\non_watchdog = \"preserve\"",
    );
    wait_until("the watchdog shutdown", BOOT, || {
        h.row("wd").is_some_and(|r| state_of(&r) == "---s--")
    });
    assert!(h.dmesg("wd").contains("reason 4"), "{}", h.dmesg("wd"));
    h.ok(&["destroy", "wd"]);
}

/// Debian's xenstore-utils, unpacked by scripts/debian-deps.sh (`XKVM_DEBS`).
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
    if root.join("usr/bin/xenstore-read").exists() {
        Some(root)
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but Xen's Debian clients are unavailable (scripts/debian-deps.sh)")
    } else {
        eprintln!("skipping: Xen's Debian clients are unavailable (run scripts/debian-deps.sh)");
        None
    }
}

#[test]
fn debian_xenstore_tools_reach_the_domain_store_from_list_l() {
    let Some(h) = Host::new("debian xenstore-*") else {
        return;
    };
    let Some(root) = debs_root() else {
        return;
    };
    let id = h.create("deb", "xsshutdown", "on_poweroff = \"preserve\"");
    wait_ready(&h, "deb", 1);
    let long: serde_json::Value =
        serde_json::from_str(&h.ok(&["list", "-l", "deb"])).expect("JSON");
    let sock = long[0]["xenstore_socket"]
        .as_str()
        .expect("socket")
        .to_owned();
    let tool = |prog: &str, args: &[&str]| {
        let out = Command::new(root.join("usr/bin").join(prog))
            .args(args)
            .env("XENSTORED_PATH", &sock)
            .env(
                "LD_LIBRARY_PATH",
                format!(
                    "{}:{}",
                    root.join("usr/lib/x86_64-linux-gnu").display(),
                    root.join("usr/lib/xen-4.17/lib/x86_64-linux-gnu").display()
                ),
            )
            .output()
            .expect("running a Debian xenstore tool");
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        tool("xenstore-read", &[&format!("/libxl/{id}/type")]).trim(),
        "pvh"
    );
    // What xl's shutdown writes, written by Xen's own client: the guest acts.
    tool(
        "xenstore-write",
        &[&format!("/local/domain/{id}/control/shutdown"), "poweroff"],
    );
    wait_until("the guest to act on control/shutdown", BOOT, || {
        h.row("deb").is_some_and(|r| state_of(&r) == "---s--")
    });
    assert!(h.dmesg("deb").contains("PASS control/shutdown = poweroff"));
    h.ok(&["destroy", "deb"]);
}

#[test]
fn create_p_leaves_the_domain_paused_until_unpause() {
    let Some(h) = Host::new("create -p") else {
        return;
    };
    let cfg = h.cfg("pp", "xsshutdown", "");
    h.ok(&["create", "-p", &cfg]);
    assert_eq!(state_of(&h.row("pp").expect("listed")), "--p---");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        h.dmesg("pp").is_empty(),
        "a paused guest ran: {}",
        h.dmesg("pp")
    );
    h.ok(&["unpause", "pp"]);
    wait_ready(&h, "pp", 1);
    h.ok(&["destroy", "pp"]);
}

#[test]
fn a_foreground_domain_is_listed_and_reachable_by_the_other_verbs() {
    let Some(h) = Host::new("create -F") else {
        return;
    };
    let cfg = h.cfg("fg", "idle", "");
    let mut vmm = h
        .cmd(&["create", "-F", &cfg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xkvm create -F");
    wait_until("the foreground domain in list", BOOT, || {
        h.row("fg").is_some()
    });
    wait_until("the idle guest", BOOT, || {
        h.dmesg("fg").contains("idle: running")
    });
    // No PV drivers: -F has the VMM power it off; on_poweroff=destroy ends
    // the foreground command with status 0.
    let out = h.xkvm(&["shutdown", "-F", "-w", "fg"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_exit(&mut vmm, "create -F").success());
    assert!(h.row("fg").is_none());
}
