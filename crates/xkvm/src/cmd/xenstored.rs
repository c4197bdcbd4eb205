//! `xkvm xenstored --socket PATH`: a standalone XenStore daemon.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Unix socket to listen on (connections there are dom0).
    #[arg(long)]
    pub socket: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("xenstored is not implemented yet")
}
