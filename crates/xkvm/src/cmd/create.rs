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

/// Splits the positional arguments into the config file and the
/// `KEY=VALUE` overrides, as xl does.
fn file_and_overrides(args: &Args) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let mut rest = args.rest.iter();
    let file = match &args.config_flag {
        Some(f) => f.clone(),
        None => match rest.next() {
            Some(f) if !f.contains('=') => PathBuf::from(f),
            _ => anyhow::bail!("no config file given (usage: xkvm create [-n] CFG [KEY=VALUE...])"),
        },
    };
    let mut overrides = Vec::new();
    for o in rest {
        if !o.contains('=') {
            anyhow::bail!("unexpected argument {o:?} (overrides are KEY=VALUE)");
        }
        overrides.push(o.clone());
    }
    Ok((file, overrides))
}

/// Parses the config file plus overrides into the typed configuration,
/// printing xl's warnings to stderr as xl does.
pub fn load_config(args: &Args) -> anyhow::Result<xl_config::DomainConfig> {
    let (file, overrides) = file_and_overrides(args)?;
    eprintln!("Parsing config from {}", file.display());
    let parsed = xl_config::load(&file, &overrides)?;
    for w in &parsed.warnings {
        eprintln!("{w}");
    }
    Ok(parsed.config)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    if args.dry_run {
        let (config, flavour) = if args.defaults {
            (config.with_defaults(), xl_config::Flavour::Full)
        } else {
            (config, xl_config::Flavour::Xl)
        };
        println!("{}", xl_config::json::pretty(&xl_config::json::to_json(&config, flavour)));
        return Ok(ExitCode::SUCCESS);
    }
    if !args.foreground && !args.console {
        // Background domains (a VMM process per domain, `xkvm list` etc.)
        // arrive with the lifecycle commands; until then say so plainly.
        anyhow::bail!("background domains are not supported yet: use -F (foreground) or -c");
    }
    if args.paused {
        anyhow::bail!("-p (start paused) is not supported yet");
    }
    crate::foreground::run(config.with_defaults(), args.console)
}
