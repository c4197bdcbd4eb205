//! `mem-set`, `mem-max`, `vcpu-set`, `vcpu-list`, `sysrq`, `uptime` and
//! `trigger` with the real `xkvm` binary on a running guest: what they
//! change is checked in the guest's XenStore and in the VMM's hypervisor
//! state (its control socket), and bad input gets xl's messages.

mod common;

use common::Host;

const READY: &str = "idle: running until destroyed";

fn start(h: &Host, name: &str, extra: &str) -> u32 {
    let id = h.create(name, "idle", extra);
    h.wait_dmesg(name, READY, 1);
    id
}

/// The `max_kb` / `tot_kb` the VMM's hypervisor side reports.
fn mem_info(h: &Host, name: &str) -> (u64, u64) {
    let v = h.control(name, serde_json::json!({"op": "mem-info"}));
    assert_eq!(v["ok"], true, "{v}");
    (
        v["tot_kb"].as_u64().expect("tot_kb"),
        v["max_kb"].as_u64().expect("max_kb"),
    )
}

#[test]
fn mem_set_moves_the_balloon_target_and_the_hypervisor_limit() {
    let Some(h) = Host::new("mem-set") else {
        return;
    };
    let id = start(&h, "mem", "maxmem = 32");
    let dom = format!("/local/domain/{id}");
    assert_eq!(
        h.xs_read("mem", &format!("{dom}/memory/static-max")),
        "32768"
    );
    assert_eq!(h.xs_read("mem", &format!("{dom}/memory/target")), "16384");
    assert_eq!(mem_info(&h, "mem"), (16384, 32768));

    h.ok(&["mem-set", "mem", "8m"]);
    assert_eq!(h.xs_read("mem", &format!("{dom}/memory/target")), "8192");
    let vm = h.xs_read("mem", &format!("{dom}/vm"));
    assert_eq!(h.xs_read("mem", &format!("{vm}/memory")), "8");
    // libxl's enforce: the limit follows the target, plus 1 MiB of slack.
    assert_eq!(mem_info(&h, "mem"), (16384, 8192 + 1024));
    // The guest has not ballooned: xl list shows what it holds.
    let row = h.ok(&["list", "mem"]);
    let cols: Vec<&str> = row
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(cols[2], "16", "{row}");
    let long = h.ok(&["list", "-l", "mem"]);
    let v: serde_json::Value = serde_json::from_str(&long).expect("JSON");
    assert_eq!(v[0]["config"]["b_info"]["target_memkb"], 8192, "{long}");

    // A size in KiB without a unit letter is MiB; "12288k" is 12 MiB.
    h.ok(&["mem-set", "mem", "12288k"]);
    assert_eq!(h.xs_read("mem", &format!("{dom}/memory/target")), "12288");

    // Above static-max: refused, nothing changed.
    let err = h.fails(&["mem-set", "mem", "40m"]);
    assert!(
        err.contains("memory_dynamic_max must be less than or equal to memory_static_max"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "cannot set domid {id} dynamic max memory to : 40m"
        )),
        "{err}"
    );
    assert_eq!(h.xs_read("mem", &format!("{dom}/memory/target")), "12288");
    assert_eq!(mem_info(&h, "mem").1, 12288 + 1024);

    let err = h.fails(&["mem-set", "mem", "12mb"]);
    assert!(err.contains("invalid memory size: 12mb"), "{err}");
    let err = h.fails(&["mem-set", "nosuch", "8m"]);
    assert!(
        err.contains("nosuch is an invalid domain identifier"),
        "{err}"
    );
    h.ok(&["destroy", "mem"]);
}

#[test]
fn mem_max_moves_only_the_limit_and_never_below_the_target() {
    let Some(h) = Host::new("mem-max") else {
        return;
    };
    let id = start(&h, "mx", "maxmem = 32");
    let dom = format!("/local/domain/{id}");
    h.ok(&["mem-max", "mx", "64m"]);
    assert_eq!(mem_info(&h, "mx").1, 65536 + 1024);
    // libxl_domain_setmaxmem leaves static-max and the target alone.
    assert_eq!(
        h.xs_read("mx", &format!("{dom}/memory/static-max")),
        "32768"
    );
    assert_eq!(h.xs_read("mx", &format!("{dom}/memory/target")), "16384");

    let err = h.fails(&["mem-max", "mx", "8m"]);
    assert!(
        err.contains("memory_static_max must be greater than or or equal to memory_dynamic_max"),
        "{err}"
    );
    assert!(
        err.contains(&format!("cannot set domid {id} static max memory to : 8m")),
        "{err}"
    );
    assert_eq!(mem_info(&h, "mx").1, 65536 + 1024);
    let err = h.fails(&["mem-max", "mx", "lots"]);
    assert!(err.contains("invalid memory size: lots"), "{err}");
    h.ok(&["destroy", "mx"]);
}

fn host_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    u32::try_from(n).unwrap_or(1)
}

#[test]
fn vcpu_set_writes_availability_and_vcpu_list_shows_each_vcpu() {
    let Some(h) = Host::new("vcpu-set") else {
        return;
    };
    let id = start(&h, "vc", "vcpus = 1\nmaxvcpus = 2");
    let dom = format!("/local/domain/{id}");

    let list = h.ok(&["vcpu-list", "vc"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines[0],
        "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
    );
    assert_eq!(lines.len(), 3, "{list}");
    let row0: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row0[..3], &["vc", &id.to_string(), "0"], "{list}");
    assert!(row0[4] == "r--" || row0[4] == "-b-", "{list}");
    assert!(lines[1].ends_with("  all / all"), "{list}");
    let row1: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&row1[2..5], &["1", "-", "--p"], "{list}");

    h.ok(&["vcpu-set", "vc", "2"]);
    assert_eq!(
        h.xs_read("vc", &format!("{dom}/cpu/0/availability")),
        "online"
    );
    assert_eq!(
        h.xs_read("vc", &format!("{dom}/cpu/1/availability")),
        "online"
    );
    let long = h.ok(&["list", "-l", "vc"]);
    let v: serde_json::Value = serde_json::from_str(&long).expect("JSON");
    assert_eq!(
        v[0]["config"]["b_info"]["avail_vcpus"],
        serde_json::json!([0, 1])
    );

    h.ok(&["vcpu-set", "vc", "1"]);
    assert_eq!(
        h.xs_read("vc", &format!("{dom}/cpu/1/availability")),
        "offline"
    );
    assert_eq!(
        h.xs_read("vc", &format!("{dom}/cpu/0/availability")),
        "online"
    );

    // More than maxvcpus (past the host check with -i).
    let err = h.fails(&["vcpu-set", "-i", "vc", "3"]);
    assert!(
        err.contains("Requested 3 VCPUs, however maxcpus is 2!"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "libxl_set_vcpuonline failed domid={id} max_vcpus=3, rc: -3"
        )),
        "{err}"
    );
    let many = (host_cpus() + 1).to_string();
    let err = h.fails(&["vcpu-set", "vc", &many]);
    assert!(err.contains("You are overcommmitting!"), "{err}");
    let err = h.fails(&["vcpu-set", "vc", "0"]);
    assert!(err.contains("Requested 0 VCPUs!"), "{err}");
    let err = h.fails(&["vcpu-set", "vc", "two"]);
    assert!(err.contains("Error: Invalid argument."), "{err}");
    assert_eq!(
        h.xs_read("vc", &format!("{dom}/cpu/1/availability")),
        "offline"
    );
    h.ok(&["destroy", "vc"]);
}

#[test]
fn sysrq_uptime_and_trigger_as_xl() {
    let Some(h) = Host::new("misc verbs") else {
        return;
    };
    let id = start(&h, "mv", "");
    let dom = format!("/local/domain/{id}");

    h.ok(&["sysrq", "mv", "s"]);
    assert_eq!(h.xs_read("mv", &format!("{dom}/control/sysrq")), "s");
    let err = h.fails(&["sysrq", "mv", "sb"]);
    assert!(err.contains("Invalid sysrq."), "{err}");

    let up = h.ok(&["uptime"]);
    let lines: Vec<&str> = up.lines().collect();
    assert_eq!(lines[0], "Name                                ID Uptime");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..2], &["mv", &id.to_string()], "{up}");
    assert!(row[2].starts_with("0:0"), "{up}");
    let short = h.ok(&["uptime", "-s", "mv"]);
    assert!(
        short.starts_with(' ') && short.trim_end().ends_with(&format!("up  0:00, mv ({id})")),
        "{short:?}"
    );

    // xl exits 0 whatever libxl_send_trigger says; the refusal is printed.
    let out = h.xkvm(&["trigger", "mv", "reset"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Send trigger 'reset' failed: Function not implemented"),
        "{err}"
    );
    let err = h.fails(&["trigger", "mv", "bogus"]);
    assert!(err.contains("Invalid trigger \"bogus\""), "{err}");
    h.ok(&["destroy", "mv"]);
}

#[test]
fn rename_moves_the_name_everywhere_and_refuses_one_in_use() {
    let Some(h) = Host::new("rename") else {
        return;
    };
    let id = start(&h, "ra", "");
    start(&h, "rb", "");
    h.ok(&["rename", "ra", "rc"]);
    assert_eq!(h.domid("rc"), id);
    assert!(!h.domain_dir("ra").exists());
    assert_eq!(h.xs_read("rc", &format!("/local/domain/{id}/name")), "rc");
    let vm = h.xs_read("rc", &format!("/local/domain/{id}/vm"));
    assert_eq!(h.xs_read("rc", &format!("{vm}/name")), "rc");
    assert_eq!(h.ok(&["domname", &id.to_string()]).trim(), "rc");
    let long = h.ok(&["list", "-l", "rc"]);
    let v: serde_json::Value = serde_json::from_str(&long).expect("JSON");
    assert_eq!(v[0]["config"]["c_info"]["name"], "rc", "{long}");
    assert!(h.fails(&["domid", "ra"]).contains("Can't get domid"));

    let err = h.fails(&["rename", "rc", "rb"]);
    assert!(
        err.contains("domain with name \"rb\" already exists"),
        "{err}"
    );
    assert!(err.contains("Can't rename domain 'rc'."), "{err}");
    let err = h.fails(&["rename", &id.to_string(), "42"]);
    assert!(err.contains("Can't rename domain"), "{err}");
    assert_eq!(h.domid("rc"), id);
    // The renamed domain still answers under its new name.
    h.ok(&["sysrq", "rc", "h"]);
    h.ok(&["destroy", "rc"]);
    assert!(!h.domain_dir("rc").exists());
    h.ok(&["destroy", "rb"]);
}

#[test]
fn trigger_nmi_reaches_the_vcpu() {
    let Some(h) = Host::new("trigger nmi") else {
        return;
    };
    // The idle guest has no NMI handler: an NMI that arrives makes it
    // triple-fault, which Xen (and xkvm) turns into a reboot; preserved
    // here so the domain stays to be looked at.
    start(&h, "nmi", "on_reboot = \"preserve\"");
    let state = |h: &Host| {
        let l = h.ok(&["list", "nmi"]);
        l.lines()
            .nth(1)
            .and_then(|r| r.split_whitespace().nth(4).map(str::to_owned))
            .unwrap_or_default()
    };
    assert!(!state(&h).contains('s'));
    // No such vCPU: refused (xl still exits 0), and the guest runs on.
    let out = h.xkvm(&["trigger", "nmi", "nmi", "5"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Send trigger 'nmi' failed"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!state(&h).contains('s'), "{}", state(&h));

    h.ok(&["trigger", "nmi", "nmi"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !state(&h).contains('s') {
        assert!(
            std::time::Instant::now() < deadline,
            "the NMI never arrived: {}\n{}",
            state(&h),
            h.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(h.logs().contains("triple fault"), "{}", h.logs());
    h.ok(&["destroy", "nmi"]);
}

#[test]
fn cd_insert_and_eject_are_refused_for_a_pvh_guest_as_libxl_does() {
    let Some(h) = Host::new("cd-insert") else {
        return;
    };
    let id = start(&h, "cd", "");
    let iso = h.path().join("disc.iso");
    std::fs::write(&iso, [0u8; 4096]).expect("iso");
    let err = h.fails(&["cd-insert", "cd", "xvdc", &iso.display().to_string()]);
    assert!(
        err.contains(&format!("Domain {id}:cdrom-insert requires an HVM domain")),
        "{err}"
    );
    let err = h.fails(&["cd-eject", "cd", "xvdc"]);
    assert!(err.contains("cdrom-insert requires an HVM domain"), "{err}");
    let err = h.fails(&["cd-insert", "cd", "xvdc", "/nonexistent/disc.iso"]);
    assert!(
        err.contains("Cannot stat file: /nonexistent/disc.iso"),
        "{err}"
    );
    h.ok(&["destroy", "cd"]);
}
