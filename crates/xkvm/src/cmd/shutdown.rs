//! `xkvm shutdown [-w] [-F] DOM` and `xkvm reboot [-w] [-F] DOM`, as xl
//! does them (`xl_vmcontrol.c` over `libxl__domain_pvcontrol`):
//!
//! 1. The domain's type comes from `/libxl/<domid>/type`. A PV guest always
//!    has the PV control interface; a PVH or HVM guest has it once it has
//!    set `HVM_PARAM_CALLBACK_IRQ` (its PV drivers are up).
//! 2. With the interface, the request ("poweroff" / "reboot") is written to
//!    `/local/domain/<domid>/control/shutdown`; the guest acts on it.
//! 3. Without it, xl refuses unless `-F`, where it sends an ACPI power or
//!    reset button event. xkvm's equivalent is the VMM ending the domain
//!    itself with that shutdown reason, so the `on_*` action follows.
//! 4. `-w` waits until the domain has shut down (xl's
//!    `wait_for_domain_deaths`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::rundir::RunDir;
use crate::xs_client::XsClient;
use crate::{ctl, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// Wait for the domain to shut down.
    #[arg(short = 'w')]
    pub wait: bool,
    /// Fall back to a forced shutdown when the guest has no PV drivers.
    #[arg(short = 'F')]
    pub fallback: bool,
    /// Domain name or id.
    pub domain: String,
}

/// How long `-w` waits (xl waits without bound; tests and scripts prefer
/// an answer).
const WAIT: Duration = Duration::from_secs(120);

pub fn shutdown(a: Args) -> anyhow::Result<ExitCode> {
    request(a, "poweroff")
}

pub fn reboot(a: Args) -> anyhow::Result<ExitCode> {
    request(a, "reboot")
}

fn request(a: Args, cmd: &str) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    let info = ctl::request(&f.dir, json!({"op": "info"}))?;
    crate::cmd::list::warn_type(&info);
    let domid = f.domid;
    if info["shutdown"] == json!(true) {
        bail!("domain {domid} has already shut down");
    }
    let pv = info["type"] == json!("pv") || info["callback_irq"].as_u64().unwrap_or(0) != 0;
    let verb = if cmd == "reboot" {
        "Rebooting"
    } else {
        "Shutting down"
    };
    eprintln!("{verb} domain {domid}");
    if pv {
        let mut xs = XsClient::connect(&f.dir.xenstore_socket())?;
        xs.write(
            &format!("/local/domain/{domid}/control/shutdown"),
            cmd.as_bytes(),
        )?;
    } else if a.fallback {
        let button = if cmd == "reboot" { "reset" } else { "power" };
        eprintln!(
            "PV control interface not available: the VMM ends the domain with reason {cmd} \
             (xkvm's equivalent of the ACPI {button} button event)."
        );
        ctl::request(&f.dir, json!({"op": "shutdown", "reason": cmd}))?;
    } else {
        eprintln!(
            "PV control interface not available: external graceful {} not possible.",
            if cmd == "reboot" {
                "reboot"
            } else {
                "shutdown"
            }
        );
        eprintln!(
            "Use \"-F\" to fall back to a forced {} by the VMM.",
            if cmd == "reboot" {
                "reboot"
            } else {
                "shutdown"
            }
        );
        return Ok(ExitCode::FAILURE);
    }
    if a.wait {
        eprintln!("Waiting for 1 domains");
        wait_for_shutdown(&f, domid)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for the VMM that ran `domid` to report its shutdown. The VMM is
/// followed by its pid: after `rename-restart` its directory has another
/// name, after `restart` the domain another id.
fn wait_for_shutdown(f: &resolve::Found, domid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    let pid = f.dir.pid();
    let rd = RunDir::open()?;
    loop {
        let vmm = resolve::all(&rd)?
            .into_iter()
            .find(|d| d.dir.pid().is_some() && d.dir.pid() == pid);
        let Some(vmm) = vmm else {
            eprintln!("Domain {domid} has been destroyed.");
            return Ok(());
        };
        if let Ok(info) = ctl::request(&vmm.dir, json!({"op": "info"})) {
            let last = &info["last_shutdown"];
            if last["domid"].as_u64() == Some(u64::from(domid)) {
                eprintln!(
                    "Domain {domid} has been shut down, reason code {}",
                    last["reason"].as_u64().unwrap_or(0)
                );
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "domain {domid} did not shut down within {} s",
                WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
