//! `xkvm info [-n] [NAME]`: xl's host report (`xl_info.c`: node, physinfo,
//! optional topology and NUMA tables, Xen info), in xl's layout so that
//! scripts that `grep total_memory` or run `xl info free_memory` keep
//! working.
//!
//! Every value is a fact about this host or about what xkvm offers, never
//! a copy of a Xen host's answer:
//!
//! - the CPU and memory lines come from Linux (`uname`, `sysconf`,
//!   `/proc/meminfo`, `/sys/devices/system`); `free_memory` is
//!   `MemAvailable` (what new domains can take: Xen's free pages are
//!   those no domain holds);
//! - `hw_caps` are the host's CPUID words in the order Xen's featureset
//!   uses for them (1.edx, 1.ecx, e1.edx, e1.ecx, 0xd/1.eax, 7/0.ebx,
//!   7/0.ecx, e7.edx);
//! - `virt_caps` is ` hvm` when `/dev/kvm` opens (xkvm runs PVH guests in
//!   HVM containers); no PCI passthrough, so no `hvm_directio`;
//! - `xen_*` describe the Xen that xkvm plays by default (4.17.0, as
//!   guests see it), `xen_caps` only the guest kinds xkvm runs (no PV);
//!   there is no Xen scheduler (`xen_scheduler : linux`: vCPUs are Linux
//!   threads), no sharing or claims (0), no cpupools (`free_cpus : 0` as
//!   on a Xen host with every CPU in Pool-0), no hypervisor command line.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Also print the CPU topology and NUMA tables.
    #[arg(short = 'n', long = "numa")]
    pub numa: bool,
    /// Print only this item's value (e.g. `free_memory`).
    pub name: Option<String>,
}

/// The Xen version xkvm presents when the config does not choose one.
const XEN_VERSION: (u16, u16, &str) = (4, 17, ".0");
/// Xen's `arch_get_xen_caps` for the guest kinds xkvm runs.
const XEN_CAPS: &str = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";
/// `HYPERVISOR_VIRT_START` of the x86-64 ABI (what `XENVER_platform_parameters`
/// tells 64-bit guests).
const VIRT_START: u64 = 0xffff_8000_0000_0000;

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut out = Report::new(if a.numa { None } else { a.name.clone() });
    node_info(&mut out);
    phys_info(&mut out);
    if a.numa {
        out.text.push_str(&topology_tables());
    }
    xen_info(&mut out);
    out.item("xend_config_format", "4");
    print!("{}", out.text);
    Ok(ExitCode::SUCCESS)
}

/// xl's `maybe_printf`: every `name : value` line, or only the value of
/// the item whose line starts with the selected name.
struct Report {
    only: Option<String>,
    text: String,
}

impl Report {
    fn new(only: Option<String>) -> Self {
        Self {
            only,
            text: String::new(),
        }
    }

    fn item(&mut self, name: &str, value: &str) {
        self.item_raw(name, &format!(" {value}"));
    }

    /// A line whose value carries its own leading space (or none).
    fn item_raw(&mut self, name: &str, value: &str) {
        let line = format!("{name:<23}:{value}\n");
        match &self.only {
            None => self.text.push_str(&line),
            // As xl: a prefix of the line selects it, and the value after
            // ": " is printed.
            Some(sel) if line.starts_with(sel.as_str()) => {
                if let Some((_, v)) = line.split_once(": ") {
                    self.text.push_str(v);
                }
            }
            Some(_) => {}
        }
    }
}

fn node_info(out: &mut Report) {
    let Ok(u) = nix_uname() else { return };
    out.item("host", &u.0);
    out.item("release", &u.1);
    out.item("version", &u.2);
    out.item("machine", &u.3);
}

/// `uname(2)`: nodename, release, version, machine.
fn nix_uname() -> std::io::Result<(String, String, String, String)> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((s(&u.nodename), s(&u.release), s(&u.version), s(&u.machine)))
}

fn phys_info(out: &mut Report) {
    let sys = Path::new("/sys/devices/system");
    let online = cpu_list(&read(&sys.join("cpu/online")).unwrap_or_default());
    let nr_cpus = online.len().max(1);
    let max_cpu_id = online.iter().copied().max().unwrap_or(0);
    let nodes = node_ids(sys).len().max(1);
    let cpu0 = sys.join("cpu/cpu0/topology");
    let threads = read(&cpu0.join("thread_siblings_list"))
        .map(|l| cpu_list(&l).len())
        .unwrap_or(1)
        .max(1);
    let package = read(&cpu0.join("package_cpus_list"))
        .or_else(|| read(&cpu0.join("core_siblings_list")))
        .map(|l| cpu_list(&l).len())
        .unwrap_or(nr_cpus);
    out.item("nr_cpus", &nr_cpus.to_string());
    out.item("max_cpu_id", &max_cpu_id.to_string());
    out.item("nr_nodes", &nodes.to_string());
    out.item("cores_per_socket", &(package / threads).max(1).to_string());
    out.item("threads_per_core", &threads.to_string());
    let khz = cpu_khz().unwrap_or(0);
    out.item("cpu_mhz", &format!("{}.{:03}", khz / 1000, khz % 1000));
    out.item(
        "hw_caps",
        &hw_caps()
            .iter()
            .map(|w| format!("{w:08x}"))
            .collect::<Vec<_>>()
            .join(":"),
    );
    let hvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    // xl prints each flag with a leading space right after the colon.
    out.item_raw("virt_caps", if hvm { " hvm" } else { "" });
    let mem = meminfo();
    let mib = |k: &str| mem.get(k).copied().unwrap_or(0) / 1024;
    out.item("total_memory", &mib("MemTotal").to_string());
    out.item("free_memory", &mib("MemAvailable").to_string());
    out.item("sharing_freed_memory", "0");
    out.item("sharing_used_memory", "0");
    out.item("outstanding_claims", "0");
    out.item("free_cpus", "0");
}

fn xen_info(out: &mut Report) {
    let (major, minor, extra) = XEN_VERSION;
    out.item("xen_major", &major.to_string());
    out.item("xen_minor", &minor.to_string());
    out.item("xen_extra", extra);
    out.item("xen_version", &format!("{major}.{minor}{extra}"));
    out.item("xen_caps", XEN_CAPS);
    out.item("xen_scheduler", "linux");
    out.item("xen_pagesize", "4096");
    out.item("platform_params", &format!("virt_start={VIRT_START:#x}"));
    out.item(
        "xen_changeset",
        &format!("xkvm {}", env!("CARGO_PKG_VERSION")),
    );
    out.item("xen_commandline", "");
    out.item("cc_compiler", "rustc");
    out.item("cc_compile_by", "");
    out.item("cc_compile_domain", "");
    out.item("cc_compile_date", "");
    out.item("build_id", "");
}

/// xl's `cpu_topology`, `device topology` and `numa_info` tables.
fn topology_tables() -> String {
    let sys = Path::new("/sys/devices/system");
    let mut s = String::from("cpu_topology           :\ncpu:    core    socket     node\n");
    let online = cpu_list(&read(&sys.join("cpu/online")).unwrap_or_default());
    for cpu in online {
        let t = sys.join(format!("cpu/cpu{cpu}/topology"));
        let num = |f: &str| {
            read(&t.join(f))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        let node = node_ids(sys)
            .into_iter()
            .find(|n| sys.join(format!("node/node{n}/cpu{cpu}")).exists())
            .unwrap_or(0);
        s.push_str(&format!(
            "{cpu:3}:    {:4}     {:4}     {node:4}\n",
            num("core_id"),
            num("physical_package_id")
        ));
    }
    s.push_str("device topology        :\ndevice           node\n");
    s.push_str("No device topology data available\n");
    s.push_str("numa_info              :\nnode:    memsize    memfree    distances\n");
    let mut nodes = node_ids(sys);
    if nodes.is_empty() {
        nodes.push(0);
    }
    for n in nodes {
        let dir = sys.join(format!("node/node{n}"));
        let info = read(&dir.join("meminfo")).unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find(|l| l.contains(&format!(" {k}:")))
                .and_then(|l| l.split_whitespace().rev().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        // Without NUMA in the kernel there is no node directory: the whole
        // machine is node 0.
        let mem = meminfo();
        let total = field("MemTotal").unwrap_or(mem.get("MemTotal").copied().unwrap_or(0));
        let free = field("MemFree").unwrap_or(mem.get("MemFree").copied().unwrap_or(0));
        let dists = read(&dir.join("distance"))
            .map(|d| d.split_whitespace().collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "10".into());
        s.push_str(&format!(
            "{n:4}:    {:6}     {:6}      {dists}\n",
            total / 1024,
            free / 1024
        ));
    }
    s
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// A Linux CPU list ("0-3,8,10-11") as ids.
fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(65_535)));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

fn node_ids(sys: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(sys.join("node"))
        .map(|d| {
            d.filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("node")?
                    .parse()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// `/proc/meminfo` in KiB.
fn meminfo() -> std::collections::HashMap<String, u64> {
    read(Path::new("/proc/meminfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// The boot CPU's clock in kHz (`cpu MHz` of /proc/cpuinfo).
fn cpu_khz() -> Option<u64> {
    let info = read(Path::new("/proc/cpuinfo"))?;
    let mhz = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split_once(':')?
        .1
        .trim();
    let (int, frac) = mhz.split_once('.').unwrap_or((mhz, "0"));
    let frac: String = frac.chars().chain("000".chars()).take(3).collect();
    Some(int.parse::<u64>().ok()? * 1000 + frac.parse::<u64>().ok()?)
}

/// The host's CPUID words in Xen's featureset order.
fn hw_caps() -> [u32; 8] {
    use std::arch::x86_64::__cpuid_count;
    // Leaves above the maxima are not asked (they would repeat the highest
    // basic leaf's data).
    let q = |leaf: u32, sub: u32| __cpuid_count(leaf, sub);
    let max = q(0, 0).eax;
    let emax = q(0x8000_0000, 0).eax;
    let basic = |leaf: u32, sub: u32| (leaf <= max).then(|| q(leaf, sub));
    let ext = |leaf: u32| (leaf <= emax).then(|| q(leaf, 0));
    [
        basic(1, 0).map_or(0, |r| r.edx),
        basic(1, 0).map_or(0, |r| r.ecx),
        ext(0x8000_0001).map_or(0, |r| r.edx),
        ext(0x8000_0001).map_or(0, |r| r.ecx),
        basic(0xd, 1).map_or(0, |r| r.eax),
        basic(7, 0).map_or(0, |r| r.ebx),
        basic(7, 0).map_or(0, |r| r.ecx),
        ext(0x8000_0007).map_or(0, |r| r.edx),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_linux_writes_them() {
        assert_eq!(cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(cpu_list("0"), vec![0]);
        assert_eq!(cpu_list(""), Vec::<u32>::new());
        assert_eq!(cpu_list("x,2"), vec![2]);
    }

    #[test]
    fn a_selected_item_prints_only_its_value() {
        let mut r = Report::new(Some("free_memory".into()));
        r.item("total_memory", "100");
        r.item("free_memory", "42");
        assert_eq!(r.text, "42\n");
        let mut all = Report::new(None);
        all.item("free_memory", "42");
        assert_eq!(all.text, "free_memory            : 42\n");
    }

    #[test]
    fn an_item_name_prefix_selects_as_in_xl() {
        // xl compares the start of the line: "xen_v" selects xen_version.
        let mut r = Report::new(Some("xen_v".into()));
        r.item("xen_major", "4");
        r.item("xen_version", "4.17.0");
        assert_eq!(r.text, "4.17.0\n");
    }
}
