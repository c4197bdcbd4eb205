//! `xkvm vcpu-set [-i] DOM COUNT` and `xkvm vcpu-list [DOM...]` (xl's
//! `xl_vcpu.c`). `vcpu-set` leaves the first COUNT vCPUs available and
//! the rest not, through `cpu/<n>/availability` (libxl's way for PV and
//! PVH guests; the guest's hot-plug driver brings them up or down).
//! `vcpu-list` prints xl's table from the VMM: whether each vCPU is up
//! (hypervisor side), running, the host CPU its thread last ran on and
//! the CPU time it used. xkvm pins no vCPU, so every affinity is `all`.

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::rundir::RunDir;
use crate::{ctl, domctl, resolve};

#[derive(clap::Args)]
pub struct SetArgs {
    /// Allow more vCPUs than the host has CPUs.
    #[arg(short = 'i', long = "ignore-host")]
    pub ignore_host: bool,
    /// Domain name or id.
    pub domain: String,
    /// How many vCPUs are to be online.
    #[arg(allow_hyphen_values = true)]
    pub count: String,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Domains (names or ids); all when none.
    pub domains: Vec<String>,
}

/// C's `strtoul(s, &end, 10)` as an `unsigned int`: `None` when no digit
/// was read (xl: "Error: Invalid argument."); a minus sign negates in
/// unsigned arithmetic, as in C.
pub fn parse_count(s: &str) -> Option<u32> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let v = body[..digits].bytes().fold(0u64, |v, d| {
        v.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let v = if neg { v.wrapping_neg() } else { v };
    Some(v as u32)
}

pub fn set(a: SetArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    let Some(count) = parse_count(&a.count) else {
        eprintln!("Error: Invalid argument.");
        return Ok(ExitCode::FAILURE);
    };
    if !a.ignore_host {
        let list = ctl::request(&f.dir, json!({"op": "vcpu-list"}))?;
        let online = list["vcpus"].as_array().map_or(0, |v| {
            v.iter().filter(|c| c["online"] == json!(true)).count()
        }) as u32;
        // libxl_get_max_cpus: the host's possible CPUs.
        let host = xl_config::cpus::real_host_cpus();
        if count > online && count > host {
            eprintln!(
                "You are overcommmitting! You have {host} physical CPUs and want {} vCPUs! \
                 Aborting, use --ignore-host to continue",
                count as i32
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    match ctl::request(&f.dir, json!({"op": "vcpu-set", "count": count})) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let rc = match domctl::refusal(&e) {
                Some((msg, rc)) => {
                    eprintln!("libxl: error: Domain {}:{msg}", f.domid);
                    rc
                }
                None => {
                    eprintln!("xkvm: {e:#}");
                    -3
                }
            };
            eprintln!(
                "libxl_set_vcpuonline failed domid={} max_vcpus={}, rc: {rc}",
                f.domid, count as i32
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// xl's header (`%-32s %5s %5s %5s %5s %9s %s`).
pub fn header() -> String {
    format!(
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
    )
}

/// One row as xl's `print_vcpuinfo` prints it.
pub fn row(name: &str, domid: u32, v: &Value) -> String {
    let mut s = format!(
        "{:<32} {:>5} {:>5}",
        name,
        domid,
        v["vcpu"].as_u64().unwrap_or(0)
    );
    if v["online"] == json!(true) {
        let flag = |k: &str, c: char| if v[k] == json!(true) { c } else { '-' };
        s += &format!(
            "{:>5} {:>3}{}- ",
            v["cpu"].as_u64().unwrap_or(0),
            flag("running", 'r'),
            flag("blocked", 'b')
        );
    } else {
        s += &format!("{:>5} {:>3}{}p ", '-', '-', '-');
    }
    s += &format!("{:>9.1}  ", v["time"].as_f64().unwrap_or(0.0));
    s += "all / all";
    s
}

pub fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    // xl prints the header first and looks each domain up as it comes to
    // it (an unknown one ends the command there).
    println!("{}", header());
    let found = if a.domains.is_empty() {
        resolve::all(&rd)?
    } else {
        Vec::new()
    };
    let named = a.domains.iter().map(|d| resolve::find(&rd, d));
    for f in found.into_iter().map(Ok).chain(named) {
        let f = f?;
        let reply = match ctl::request(&f.dir, json!({"op": "vcpu-list"})) {
            Ok(r) => r,
            // Gone since the scan: xl skips a domain libxl cannot list.
            Err(e) => {
                tracing::debug!("{e:#}");
                continue;
            }
        };
        for v in reply["vcpus"].as_array().into_iter().flatten() {
            println!("{}", row(&f.dir.name, f.domid, v));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_strtoul_reads_them() {
        assert_eq!(parse_count("2"), Some(2));
        assert_eq!(parse_count("3abc"), Some(3));
        assert_eq!(parse_count(" 1"), Some(1));
        assert_eq!(parse_count("abc"), None);
        assert_eq!(parse_count(""), None);
        assert_eq!(parse_count("-1"), Some(u32::MAX));
    }

    #[test]
    fn rows_match_xls_columns() {
        assert_eq!(
            header(),
            "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
        );
        let up = json!({"vcpu": 0, "online": true, "running": false, "blocked": true,
            "cpu": 1, "time": 0.25});
        assert_eq!(
            row("web", 3, &up),
            "web                                  3     0    1   -b-       0.2  all / all"
        );
        let down = json!({"vcpu": 1, "online": false, "time": 0.0});
        assert_eq!(
            row("web", 3, &down),
            "web                                  3     1    -   --p       0.0  all / all"
        );
    }
}
