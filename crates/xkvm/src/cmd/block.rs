//! `xkvm block-attach`, `block-detach` and `block-list`: xl's verbs for PV
//! disks on a running domain (`xl_block.c`), with xl's arguments, table and
//! messages. The VMM does the work (see `crate::hotplug`).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::rundir::RunDir;
use crate::{ctl, hotplug, resolve};

/// An unplug waits up to 10 s for the guest, a plug may run a script:
/// the VMM answers well within this.
pub const HOTPLUG_REPLY: Duration = Duration::from_secs(120);

/// Sends hot-plug request `req` to the VMM of domain `dom`. A refusal the
/// VMM already words as xl does (it starts with `plain`) is passed on as
/// it is; any other failure is reported as libxl reports a device error
/// (`libxl: error: Domain N:...`), followed by xl's own line `failed`.
pub fn device_request(
    dom: &str,
    req: Value,
    plain: Option<&str>,
    failed: &str,
) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, dom)?;
    match ctl::request_within(&f.dir, req, HOTPLUG_REPLY) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) if plain.is_some_and(|p| e.to_string().starts_with(p)) => anyhow::bail!("{e}"),
        Err(e) => {
            eprintln!("libxl: error: Domain {}:{e:#}", f.domid);
            anyhow::bail!("{failed}")
        }
    }
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Domain name or id.
    pub domain: String,
    /// The disk, as in a `disk=` entry (xl-disk-configuration(5)); several
    /// arguments are read as one spec.
    #[arg(required = true, allow_hyphen_values = true)]
    pub spec: Vec<String>,
}

/// `xkvm block-attach DOM DISK-SPEC...`.
pub fn attach(a: AttachArgs) -> anyhow::Result<ExitCode> {
    // Parse here first, so a bad spec is reported as xl reports it, before
    // the domain is even looked up for the VMM.
    if let Err(e) = hotplug::parse_disk_args(&a.spec) {
        anyhow::bail!("{e}");
    }
    let req = json!({"op": "block-attach", "specs": a.spec});
    device_request(&a.domain, req, None, "libxl_device_disk_add failed.")
}

#[derive(clap::Args)]
pub struct DetachArgs {
    /// Tear the device down without waiting for the guest.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Domain name or id.
    pub domain: String,
    /// The disk's virtual device (`xvdb`) or device number (`51728`).
    pub vdev: String,
}

/// `xkvm block-detach [--force] DOM VDEV`.
pub fn detach(a: DetachArgs) -> anyhow::Result<ExitCode> {
    let req = json!({"op": "block-detach", "disk": a.vdev, "force": a.force});
    let verb = if a.force { "destroy" } else { "safe_remove" };
    device_request(
        &a.domain,
        req,
        Some("Error: Device"),
        &format!("libxl_device_disk_{verb} failed."),
    )
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Domain names or ids.
    #[arg(required = true)]
    pub domains: Vec<String>,
}

/// xl's `block-list` header (`%-5s %-3s %-6s %-5s %-6s %-8s %-30s`).
pub fn header() -> String {
    format!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
        "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"
    )
}

/// One `block-list` row (`%-5d %-3d %-6d %-5d %-6d %-8d %-30s`): device
/// number, backend domain, frontend domain, frontend state, event
/// channel, ring reference, backend path.
pub fn row(d: &Value) -> String {
    let n = |k: &str| d[k].as_i64().unwrap_or(-1);
    format!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
        n("devid"),
        n("backend_id"),
        n("frontend_id"),
        n("state"),
        n("evtch"),
        n("rref"),
        d["backend"].as_str().unwrap_or("")
    )
}

/// `xkvm block-list DOM...`: a domain that cannot be found is reported and
/// skipped, as xl does.
pub fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    println!("{}", header());
    for dom in &a.domains {
        let Ok(f) = resolve::find(&rd, dom) else {
            eprintln!("{dom} is an invalid domain identifier");
            continue;
        };
        let v = ctl::request(&f.dir, json!({"op": "block-list"}))?;
        for d in v["disks"].as_array().into_iter().flatten() {
            println!("{}", row(d));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_xls_columns() {
        assert_eq!(
            header().trim_end(),
            "Vdev  BE  handle state evt-ch ring-ref BE-path"
        );
        let r = row(&json!({
            "devid": 51728, "backend_id": 0, "frontend_id": 3, "state": 4,
            "evtch": 9, "rref": 8, "backend": "/local/domain/0/backend/vbd/3/51728",
        }));
        assert_eq!(
            r.trim_end(),
            "51728 0   3      4     9      8        /local/domain/0/backend/vbd/3/51728"
        );
        let missing = row(&json!({"devid": 51712, "backend_id": 0, "frontend_id": 3,
            "state": 1, "evtch": -1, "rref": -1, "backend": "/b"}));
        assert!(
            missing.starts_with("51712 0   3      1     -1     -1       /b"),
            "{missing}"
        );
    }
}
