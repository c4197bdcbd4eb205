//! The verbs that act on one domain through its VMM's control socket:
//! `destroy`, `pause`, `unpause`, `dmesg`, and the name/id look-ups
//! `domid` and `domname`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::rundir::RunDir;
use crate::{ctl, resolve};

#[derive(clap::Args)]
pub struct DomArg {
    /// Domain name or id.
    pub domain: String,
}

fn op(dom: &str, op: &str) -> anyhow::Result<serde_json::Value> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, dom)?;
    ctl::request(&f.dir, json!({ "op": op }))
}

/// `xkvm destroy DOM`: ends the domain now and waits until its VMM has
/// removed its run directory.
pub fn destroy(a: DomArg) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    let pid = f.dir.pid();
    ctl::request(&f.dir, json!({"op": "destroy"}))?;
    // Done when the VMM has exited (it removes its directory first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid.is_some_and(crate::rundir::pid_alive) {
        if Instant::now() > deadline {
            anyhow::bail!("domain {} did not go away within 10 s", a.domain);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A VMM that died meanwhile leaves its directory: clean it now.
    let _ = rd.domains();
    Ok(ExitCode::SUCCESS)
}

pub fn pause(a: DomArg) -> anyhow::Result<ExitCode> {
    op(&a.domain, "pause")?;
    Ok(ExitCode::SUCCESS)
}

pub fn unpause(a: DomArg) -> anyhow::Result<ExitCode> {
    op(&a.domain, "unpause")?;
    Ok(ExitCode::SUCCESS)
}

/// `xkvm dmesg DOM`: what the guest wrote with `HYPERVISOR_console_io`
/// (on Xen that goes to the hypervisor's log, which `xl dmesg` prints).
pub fn dmesg(a: DomArg) -> anyhow::Result<ExitCode> {
    let v = op(&a.domain, "dmesg")?;
    print!("{}", v["log"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct NameArg {
    /// Domain name.
    pub name: String,
}

pub fn domid(a: NameArg) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    match resolve::all(&rd)?
        .into_iter()
        .find(|f| f.dir.name == a.name)
    {
        Some(f) => {
            println!("{}", f.domid);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "Can't get domid of domain name '{}', maybe this domain does not exist.",
            a.name
        ),
    }
}

#[derive(clap::Args)]
pub struct IdArg {
    /// Domain id.
    pub domid: u32,
}

pub fn domname(a: IdArg) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    match resolve::all(&rd)?.into_iter().find(|f| f.domid == a.domid) {
        Some(f) => {
            println!("{}", f.dir.name);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "Can't get domain name of domain id '{}', maybe this domain does not exist.",
            a.domid
        ),
    }
}

/// `xkvm console DOM`.
pub fn console(a: DomArg) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    crate::console::attach(&f.dir.console_socket(), &a.domain)?;
    Ok(ExitCode::SUCCESS)
}
