//! `xkvm sysrq`, `xkvm uptime` and `xkvm trigger`, as xl does them
//! (`xl_misc.c`, `xl_info.c`, `xl_vmcontrol.c` over libxl):
//!
//! - `sysrq DOM LETTER` writes LETTER to the guest's `control/sysrq`
//!   (`libxl_send_sysrq`); the guest's PV drivers act on it.
//! - `uptime [-s] [DOM...]` reads `/vm/<uuid>/start_time`, which the VMM
//!   writes when it builds the domain as libxl does. xkvm has no Domain-0
//!   line (see `list`).
//! - `rename DOM NEW` moves the domain to a new name (`libxl_domain_rename`).
//! - `trigger DOM nmi [VCPU]` injects an NMI into the vCPU (`KVM_NMI`, as
//!   Xen's `XEN_DOMCTL_SENDTRIGGER_NMI`). The other triggers are refused
//!   with libxl's message: Xen itself refuses `init` and `reset`
//!   (`-ENOSYS`) and `s3resume` for a non-HVM guest, and xkvm has no ACPI
//!   power or sleep button. Like xl, the command exits 0 either way (xl
//!   ignores `libxl_send_trigger`'s result).

use std::process::ExitCode;

use crate::rundir::RunDir;
use crate::xs_client::XsClient;
use crate::{ctl, resolve};

#[derive(clap::Args)]
pub struct SysrqArgs {
    /// Domain name or id.
    pub domain: String,
    /// The sysrq letter.
    pub letter: String,
}

pub fn sysrq(a: SysrqArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    let mut chars = a.letter.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        eprintln!("Invalid sysrq.\n");
        println!("Usage: xkvm sysrq <Domain> <letter>\n\nSend a sysrq to a domain.\n");
        return Ok(ExitCode::FAILURE);
    };
    let mut xs = XsClient::connect(&f.dir.xenstore_socket())?;
    xs.write(
        &format!("/local/domain/{}/control/sysrq", f.domid),
        c.to_string().as_bytes(),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RenameArgs {
    /// Domain name or id.
    pub domain: String,
    /// The new name.
    pub new_name: String,
}

/// `xkvm rename DOM NEW`: the VMM moves the domain's run directory and
/// its XenStore `name` nodes; a name in use is refused (libxl's check).
pub fn rename(a: RenameArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    match ctl::request(
        &f.dir,
        serde_json::json!({"op": "rename", "name": a.new_name}),
    ) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("libxl: error: Domain {}:{e:#}", f.domid);
            eprintln!("Can't rename domain '{}'.", a.domain);
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(clap::Args)]
pub struct UptimeArgs {
    /// Short output: `HH:MM:SS up TIME, NAME (ID)`.
    #[arg(short = 's')]
    pub short: bool,
    /// Domains (names or ids); all when none.
    pub domains: Vec<String>,
}

/// xl's `uptime_to_string`.
pub fn uptime_to_string(uptime: u32, short: bool) -> String {
    let day = uptime / 86400;
    let rest = uptime % 86400;
    let (hour, min, sec) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let days = match day {
        0 => String::new(),
        1 => "1 day, ".to_owned(),
        d => format!("{d} days, "),
    };
    if short {
        format!("{days}{hour:2}:{min:02}")
    } else {
        format!("{days}{hour:2}:{min:02}:{sec:02}")
    }
}

/// `HH:MM:SS` of `now` in local time (xl's `current_time_to_string`).
fn local_hms(now: i64) -> String {
    let t: libc::time_t = now;
    // SAFETY: localtime_r writes only into `tm`, which lives on our stack.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `t` and `tm` are valid for the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return "??:??:??".into();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `libxl_vm_get_start_time`: whole seconds of `/vm/<uuid>/start_time`.
fn start_time(f: &resolve::Found) -> anyhow::Result<u32> {
    let mut xs = XsClient::connect(&f.dir.xenstore_socket())?;
    let vm = xs.read(&format!("/local/domain/{}/vm", f.domid))?;
    let vm = String::from_utf8_lossy(&vm).into_owned();
    let t = xs.read(&format!("{vm}/start_time"))?;
    let t = String::from_utf8_lossy(&t);
    let secs = t.split('.').next().unwrap_or("");
    secs.parse::<u32>()
        .map_err(|_| anyhow::anyhow!("bad start_time {t:?}"))
}

pub fn uptime(a: UptimeArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let found = if a.domains.is_empty() {
        resolve::all(&rd)?
    } else {
        a.domains
            .iter()
            .map(|d| resolve::find(&rd, d))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if !a.short {
        println!("{:<33} {:>4} Uptime", "Name", "ID");
    }
    for f in &found {
        let start = match start_time(f) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "libxl: error: Domain {}:Can't get start time of domain: {e:#}",
                    f.domid
                );
                continue;
            }
        };
        let up = (now as u32).wrapping_sub(start);
        if a.short {
            println!(
                " {} up {}, {} ({})",
                local_hms(now),
                uptime_to_string(up, true),
                f.dir.name,
                f.domid
            );
        } else {
            println!(
                "{:<33} {:>4} {}",
                f.dir.name,
                f.domid,
                uptime_to_string(up, false)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TriggerArgs {
    /// Domain name or id.
    pub domain: String,
    /// nmi, reset, init, power, sleep or s3resume.
    pub trigger: String,
    /// The vCPU (default 0).
    #[arg(allow_hyphen_values = true)]
    pub vcpu: Option<String>,
}

/// libxl's `libxl_trigger` names (matched without regard to case, as the
/// generated `libxl_trigger_from_string` does).
const TRIGGERS: [&str; 6] = ["power", "sleep", "nmi", "init", "reset", "s3resume"];

/// Why xkvm cannot send `trigger` to a domain of type `ty`, in the words
/// of the error Xen gives (or of the device xkvm lacks). `nmi` is sent.
fn trigger_refusal(trigger: &str, ty: &str) -> String {
    match trigger {
        // Xen on x86 has no handler for these (XEN_DOMCTL_sendtrigger).
        "init" | "reset" => format!("Send trigger '{trigger}' failed: Function not implemented"),
        "s3resume" if ty != "hvm" => format!("Send trigger '{trigger}' failed, rc=-6"),
        "s3resume" => format!(
            "Send trigger '{trigger}' failed, rc=-3: xkvm has no device model to wake from S3"
        ),
        _ => format!(
            "Send trigger '{trigger}' failed: xkvm has no ACPI {trigger} button \
             (its ACPI tables are hardware-reduced)"
        ),
    }
}

/// xl reads VCPU with `strtol` into an `int`: no digits → `None` (xl
/// warns and uses 0); a negative id is passed on (and refused).
fn parse_vcpuid(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let v = body[..digits].bytes().fold(0i64, |v, d| {
        v.saturating_mul(10).saturating_add(i64::from(d - b'0'))
    });
    Some(if neg { -v } else { v })
}

pub fn trigger(a: TriggerArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    let Some(name) = TRIGGERS.iter().find(|t| t.eq_ignore_ascii_case(&a.trigger)) else {
        eprintln!("Invalid trigger \"{}\"", a.trigger);
        return Ok(ExitCode::FAILURE);
    };
    let vcpu = match &a.vcpu {
        Some(v) => match parse_vcpuid(v) {
            Some(n) => n,
            None => {
                eprintln!("Invalid vcpuid, using default vcpuid=0.\n");
                0
            }
        },
        None => 0,
    };
    if *name == "nmi" {
        let req = serde_json::json!({"op": "nmi", "vcpu": vcpu});
        if let Err(e) = ctl::request(&f.dir, req) {
            let msg = crate::domctl::refusal(&e).map_or_else(|| format!("{e:#}"), |r| r.0);
            eprintln!("libxl: error: Domain {}:{msg}", f.domid);
        }
        // xl ignores libxl_send_trigger's result.
        return Ok(ExitCode::SUCCESS);
    }
    let info = ctl::request(&f.dir, serde_json::json!({"op": "info"}))?;
    let ty = info["type"].as_str().unwrap_or("hvm");
    eprintln!(
        "libxl: error: Domain {}:{}",
        f.domid,
        trigger_refusal(name, ty)
    );
    // xl ignores libxl_send_trigger's result.
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_print_as_xl_prints_them() {
        assert_eq!(uptime_to_string(5, false), " 0:00:05");
        assert_eq!(uptime_to_string(3725, false), " 1:02:05");
        assert_eq!(uptime_to_string(86400 + 60, false), "1 day,  0:01:00");
        assert_eq!(uptime_to_string(3 * 86400 + 36000, true), "3 days, 10:00");
        assert_eq!(uptime_to_string(59, true), " 0:00");
    }

    #[test]
    fn triggers_xen_lacks_get_its_errors() {
        assert!(trigger_refusal("reset", "pvh").ends_with("Function not implemented"));
        assert_eq!(
            trigger_refusal("s3resume", "pvh"),
            "Send trigger 's3resume' failed, rc=-6"
        );
    }
}
