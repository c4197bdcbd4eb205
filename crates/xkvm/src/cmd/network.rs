//! `xkvm network-attach`, `network-detach` and `network-list`: xl's verbs
//! for PV network interfaces on a running domain (`xl_nic.c`), with xl's
//! arguments, table and messages. The VMM does the work (see
//! `crate::hotplug`).

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cmd::block::device_request;
use crate::rundir::RunDir;
use crate::{ctl, hotplug, resolve};

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Domain name or id.
    pub domain: String,
    /// `KEY=VALUE` items of a `vif=` entry (xl-network-configuration(5)).
    #[arg(allow_hyphen_values = true)]
    pub spec: Vec<String>,
}

/// `xkvm network-attach DOM [KEY=VALUE...]`.
pub fn attach(a: AttachArgs) -> anyhow::Result<ExitCode> {
    let mut warnings = Vec::new();
    let parsed = hotplug::parse_nic_args(&a.spec, &mut warnings);
    for w in &warnings {
        eprintln!("{w}");
    }
    if let Err(e) = parsed {
        anyhow::bail!("{e}");
    }
    let req = json!({"op": "network-attach", "specs": a.spec});
    device_request(&a.domain, req, None, "libxl_device_nic_add failed.")
}

#[derive(clap::Args)]
pub struct DetachArgs {
    /// Domain name or id.
    pub domain: String,
    /// The interface's device id or MAC address.
    pub nic: String,
}

/// `xkvm network-detach DOM DEVID|MAC`.
pub fn detach(a: DetachArgs) -> anyhow::Result<ExitCode> {
    let req = json!({"op": "network-detach", "nic": a.nic});
    device_request(
        &a.domain,
        req,
        Some("Unknown device"),
        "libxl_device_nic_del failed.",
    )
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Domain names or ids.
    #[arg(required = true)]
    pub domains: Vec<String>,
}

/// xl's `network-list` header
/// (`%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s`).
pub fn header() -> String {
    format!(
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    )
}

/// One `network-list` row (`%-3d %-2d ` MAC `%6d %5d %6d %5d/%-11d %-30s`).
pub fn row(n: &Value) -> String {
    let i = |k: &str| n[k].as_i64().unwrap_or(-1);
    format!(
        "{:<3} {:<2} {}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}",
        i("devid"),
        i("backend_id"),
        n["mac"].as_str().unwrap_or("00:00:00:00:00:00"),
        i("devid"),
        i("state"),
        i("evtch"),
        i("rref_tx"),
        i("rref_rx"),
        n["backend"].as_str().unwrap_or("")
    )
}

/// `xkvm network-list DOM...` (an unknown domain ends it, as xl's
/// `find_domain` does).
pub fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    println!("{}", header());
    for dom in &a.domains {
        let f = resolve::find(&rd, dom)?;
        let v = ctl::request(&f.dir, json!({"op": "network-list"}))?;
        for n in v["nics"].as_array().into_iter().flatten() {
            println!("{}", row(n));
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
            "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path"
        );
        let r = row(&json!({
            "devid": 1, "backend_id": 0, "mac": "00:16:3e:01:02:03", "state": 4,
            "evtch": 12, "rref_tx": 768, "rref_rx": 769,
            "backend": "/local/domain/0/backend/vif/3/1",
        }));
        assert_eq!(
            r.trim_end(),
            "1   0  00:16:3e:01:02:03     1     4     12   768/769         /local/domain/0/backend/vif/3/1"
        );
    }
}
