//! `xkvm create [-F] [-c] [-p] [-q] [-n] CFG [KEY=VALUE...]`

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Dry run: print the domain configuration as `xl create -n` does.
    #[arg(short = 'n', long = "dryrun")]
    pub dry_run: bool,
    /// With -n: print the configuration after libxl's defaults are applied.
    #[arg(long)]
    pub defaults: bool,
    /// Run in the foreground; exit when the domain ends.
    #[arg(short = 'F')]
    pub foreground: bool,
    /// Attach to the domain's console.
    #[arg(short = 'c')]
    pub console: bool,
    /// Leave the domain paused after creating it.
    #[arg(short = 'p')]
    pub paused: bool,
    /// Quiet.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// The xl.cfg file (also accepted as -f FILE, as xl does).
    #[arg(short = 'f', long = "defconfig")]
    pub config_flag: Option<PathBuf>,
    /// The xl.cfg file, then KEY=VALUE overrides.
    #[arg(trailing_var_arg = true, allow_hyphen_values = false)]
    pub rest: Vec<String>,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("create is not implemented yet")
}
