//! `xkvm cd-insert DOM VIRTDEV TARGET` and `xkvm cd-eject DOM VIRTDEV`
//! (xl's `xl_cdrom.c`): the disk spec `vdev=V,access=r,devtype=cdrom,
//! target=T` is parsed and a missing image refused as xl does, then
//! `libxl_cdrom_insert` decides. libxl changes media only for HVM guests
//! (through their device model, QEMU); a PV or PVH guest is refused with
//! its message. xkvm's domains are PVH and it has no device model, so
//! every domain gets a refusal; no media is ever changed.

use std::process::ExitCode;

use serde_json::json;
use xl_config::model::DiskFormat;

use crate::rundir::RunDir;
use crate::{ctl, resolve};

#[derive(clap::Args)]
pub struct InsertArgs {
    /// Domain name or id.
    pub domain: String,
    /// The cdrom's virtual device (e.g. `hdc`, `xvdc`).
    pub virtdev: String,
    /// The image to insert.
    pub target: String,
}

#[derive(clap::Args)]
pub struct EjectArgs {
    /// Domain name or id.
    pub domain: String,
    /// The cdrom's virtual device.
    pub virtdev: String,
}

pub fn insert(a: InsertArgs) -> anyhow::Result<ExitCode> {
    cd_insert(&a.domain, &a.virtdev, Some(&a.target))
}

pub fn eject(a: EjectArgs) -> anyhow::Result<ExitCode> {
    cd_insert(&a.domain, &a.virtdev, None)
}

/// Why libxl refuses a media change on a domain of type `ty`.
pub fn refusal(ty: &str) -> &'static str {
    if ty == "hvm" {
        // libxl would ask QEMU over QMP; xkvm has no device model.
        "cdrom-insert: xkvm has no device model to change the media of an HVM guest"
    } else {
        "cdrom-insert requires an HVM domain"
    }
}

fn cd_insert(dom: &str, virtdev: &str, phys: Option<&str>) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, dom)?;
    let spec = format!(
        "vdev={virtdev},access=r,devtype=cdrom,target={}",
        phys.unwrap_or("")
    );
    let disk = match xl_config::disk::parse_disk(&spec) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if disk.format != Some(DiskFormat::Empty) {
        let path = disk.pdev_path.clone().unwrap_or_default();
        if std::fs::metadata(&path).is_err() {
            eprintln!("Cannot stat file: {path}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let info = ctl::request(&f.dir, json!({"op": "info"}))?;
    crate::cmd::list::warn_type(&info);
    let ty = info["type"].as_str().unwrap_or("hvm");
    eprintln!("libxl: error: Domain {}:{}", f.domid, refusal(ty));
    Ok(ExitCode::FAILURE)
}
