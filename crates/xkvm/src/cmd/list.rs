//! `xkvm list [-l] [DOM...]`: xl's table (`xl_list.c`'s columns and
//! widths) or, with `-l`, the JSON configuration of each domain as
//! `xl list -l` prints it, plus where its XenStore socket is.
//!
//! There is no Domain-0 line: xkvm has no control domain (the host's
//! toolstack plays dom0's part in XenStore but is not a domain with memory,
//! vCPUs or an id to act on), and a made-up line would mislead scripts that
//! read it.

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::rundir::RunDir;
use crate::{ctl, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// Long output: the JSON configuration of each domain.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Domains to list (names or ids); all when none.
    pub domains: Vec<String>,
}

/// xl's header line: "Name" padded to the 40-column name field, then
/// right-aligned 5-column ID, Mem and VCPUs, tabs before State and Time(s).
pub const HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// One row exactly as xl prints it (`%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f`).
pub fn row(info: &Value) -> String {
    let flag = |k: &str, c: char| if info[k] == json!(true) { c } else { '-' };
    let state: String = [
        flag("running", 'r'),
        flag("blocked", 'b'),
        flag("paused", 'p'),
        flag("shutdown", 's'),
        flag("crashed", 'c'),
        flag("dying", 'd'),
    ]
    .iter()
    .collect();
    format!(
        "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}",
        info["name"].as_str().unwrap_or("?"),
        info["domid"].as_u64().unwrap_or(0),
        info["memory_mib"].as_u64().unwrap_or(0),
        info["vcpus"].as_u64().unwrap_or(0),
        state,
        info["cpu_time"].as_f64().unwrap_or(0.0),
    )
}

/// Prints the VMM's warning about an unreadable `/libxl/<domid>/type`.
pub fn warn_type(info: &Value) {
    if let Some(w) = info["type_warning"].as_str() {
        eprintln!("xkvm: warning: domain {}: {w}", info["domid"]);
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let found = if args.domains.is_empty() {
        resolve::all(&rd)?
    } else {
        args.domains
            .iter()
            .map(|d| resolve::find(&rd, d))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut infos = Vec::new();
    for f in &found {
        match ctl::request(&f.dir, json!({"op": "info"})) {
            Ok(info) => infos.push(info),
            // It went away between the directory scan and now.
            Err(e) if args.domains.is_empty() => tracing::debug!("{e:#}"),
            Err(e) => return Err(e),
        }
    }
    if args.long {
        let list: Vec<Value> = infos
            .iter()
            .map(|i| {
                warn_type(i);
                json!({
                    "domid": i["domid"],
                    "config": i["config"],
                    "xenstore_socket": i["xenstore_socket"],
                })
            })
            .collect();
        println!("{}", xl_config::json::pretty(&Value::Array(list)));
    } else {
        println!("{HEADER}");
        for i in &infos {
            println!("{}", row(i));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up_under_xl_header() {
        let info = json!({"name": "web", "domid": 3, "memory_mib": 64, "vcpus": 1,
            "running": false, "blocked": true, "cpu_time": 1.5});
        let r = row(&info);
        assert_eq!(
            r,
            "web                                          3    64     1     -b----       1.5"
        );
        // ID's last digit sits under the header's "ID".
        assert_eq!(
            r.find("3 ").map(|i| i + 1),
            HEADER.find("ID").map(|i| i + 2)
        );
    }
}
