//! `xkvm info`: xl's keys in xl's order, values read from this host, and
//! `xkvm info NAME` printing one value as `xl info NAME` does.

use std::process::Command;

fn xkvm(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xkvm"))
        .args(args)
        .output()
        .expect("run xkvm");
    assert!(out.status.success(), "xkvm {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The keys `xl info` prints (Xen 4.17's `xl_info.c`), in its order.
const XL_KEYS: &[&str] = &[
    "host",
    "release",
    "version",
    "machine",
    "nr_cpus",
    "max_cpu_id",
    "nr_nodes",
    "cores_per_socket",
    "threads_per_core",
    "cpu_mhz",
    "hw_caps",
    "virt_caps",
    "total_memory",
    "free_memory",
    "sharing_freed_memory",
    "sharing_used_memory",
    "outstanding_claims",
    "free_cpus",
    "xen_major",
    "xen_minor",
    "xen_extra",
    "xen_version",
    "xen_caps",
    "xen_scheduler",
    "xen_pagesize",
    "platform_params",
    "xen_changeset",
    "xen_commandline",
    "cc_compiler",
    "cc_compile_by",
    "cc_compile_domain",
    "cc_compile_date",
    "build_id",
    "xend_config_format",
];

#[test]
fn info_prints_xls_keys_in_xls_order_with_this_hosts_values() {
    let text = xkvm(&["info"]);
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.split(':').next().unwrap_or("").trim_end())
        .collect();
    assert_eq!(keys, XL_KEYS, "{text}");
    for line in text.lines() {
        assert_eq!(line.find(':'), Some(23), "xl's column: {line:?}");
    }
    let nr_cpus: usize = xkvm(&["info", "nr_cpus"]).trim().parse().expect("a number");
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(nr_cpus >= online, "nr_cpus {nr_cpus} < usable {online}");
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    let total: u64 = xkvm(&["info", "total_memory"])
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(total, total_kib / 1024);
    let free: u64 = xkvm(&["info", "free_memory"])
        .trim()
        .parse()
        .expect("a number");
    assert!(free <= total);
    assert_eq!(xkvm(&["info", "xen_version"]), "4.17.0\n");
}

#[test]
fn info_numa_adds_the_topology_tables_between_host_and_xen_lines() {
    let text = xkvm(&["info", "-n"]);
    let at = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing:\n{text}"))
    };
    assert!(at("free_cpus") < at("cpu_topology"));
    assert!(at("cpu_topology") < at("numa_info"));
    assert!(at("numa_info") < at("xen_major"));
    let cpus = text
        .lines()
        .skip_while(|l| !l.starts_with("cpu:"))
        .skip(1)
        .take_while(|l| !l.starts_with("device topology"))
        .count();
    assert_eq!(
        cpus,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}
