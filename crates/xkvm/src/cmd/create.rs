//! `xkvm create [-F] [-c] [-p] [-q] [-n] CFG [KEY=VALUE...]`

use anyhow::Context;
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

/// A command line `xl create` refuses before reading any file, with the
/// status xl exits with.
#[derive(Debug)]
struct Usage {
    message: String,
    status: u8,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Usage {}

/// Splits the positional arguments into the config file and the
/// `KEY=VALUE` overrides, as xl does.
fn file_and_overrides(args: &Args) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let mut rest = args.rest.iter();
    let file = match &args.config_flag {
        Some(f) => f.clone(),
        None => match rest.next() {
            Some(f) if !f.contains('=') => PathBuf::from(f),
            // create_domain: "Config file not specified", ERROR_INVAL.
            _ => {
                return Err(Usage {
                    message: "no config file given (usage: xkvm create [-n] CFG [KEY=VALUE...])"
                        .into(),
                    status: 6,
                }
                .into())
            }
        },
    };
    let mut overrides = Vec::new();
    for o in rest {
        if !o.contains('=') {
            // main_create prints its help and returns 2.
            return Err(Usage {
                message: format!("unexpected argument {o:?} (overrides are KEY=VALUE)"),
                status: 2,
            }
            .into());
        }
        overrides.push(o.clone());
    }
    Ok((file, overrides))
}

/// Ends `create` for a command line or configuration xl refuses: the
/// message, then xl's exit status for that refusal site (xl exits with
/// statuses other than 1 at some sites, e.g. 3 for `-ERROR_FAIL`).
fn refused(err: anyhow::Error) -> anyhow::Result<ExitCode> {
    let status = if let Some(e) = err.downcast_ref::<xl_config::Error>() {
        e.exit_status()
    } else if let Some(u) = err.downcast_ref::<Usage>() {
        u.status
    } else {
        return Err(err);
    };
    eprintln!("xkvm: {err:#}");
    Ok(ExitCode::from(status))
}

/// Parses the config file plus overrides into the typed configuration,
/// printing xl's warnings to stderr as xl does.
pub fn load_config(args: &Args) -> anyhow::Result<xl_config::DomainConfig> {
    let (file, overrides) = file_and_overrides(args)?;
    eprintln!("Parsing config from {}", file.display());
    // Like xl, print the warnings before any error that refuses the file.
    let report = xl_config::load_report(&file, &overrides);
    for w in &report.warnings {
        eprintln!("{w}");
    }
    Ok(report.result?)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    if args.dry_run {
        let (config, flavour) = if args.defaults {
            (config.with_defaults(), xl_config::Flavour::Full)
        } else {
            (config, xl_config::Flavour::Xl)
        };
        println!("{}", config.to_json_string(flavour));
        return Ok(ExitCode::SUCCESS);
    }
    // Keys xkvm cannot honour: warned about, or refused, before anything runs.
    crate::unsupported::report(&config)?;
    let (file, overrides) = file_and_overrides(&args)?;
    let mut rest = vec![file.to_string_lossy().into_owned()];
    rest.extend(overrides);
    if args.foreground {
        if args.paused {
            anyhow::bail!("-p (start paused) needs a background domain: drop -F");
        }
        return crate::foreground::run(config.with_defaults(), &rest, args.console);
    }
    // With -c the domain starts paused and runs only once the console is
    // attached, so a guest that talks (or even ends) at once is seen whole.
    let name = config.c_info.name.clone();
    // A bootloader runs on the console before the domain exists (libxl's
    // console_available): with -c attach then, so its menu is here.
    let mut early: Option<std::thread::JoinHandle<anyhow::Result<()>>> = None;
    let started = spawn_vmm_reporting(&rest, args.paused || args.console, &mut |line| {
        if let (true, Some(id), None) = (args.console, line.strip_prefix("BOOTLOADER "), &early) {
            match attach_console(id, &name) {
                Ok(console) => early = Some(std::thread::spawn(move || console.run())),
                Err(e) => tracing::warn!("attaching to the bootloader's console: {e:#}"),
            }
        }
    });
    let domid = match started {
        Ok(id) => id,
        Err(e) => {
            // The VMM is gone, so the console relay ends (and restores
            // the terminal) before the error is printed.
            if let Some(relay) = early {
                let _ = relay.join();
            }
            return Err(e);
        }
    };
    if !args.quiet {
        tracing::info!("domain {name} created as {domid}");
    }
    if args.console {
        let rd = crate::rundir::RunDir::open()?;
        let dom = crate::resolve::find(&rd, &domid.to_string())?;
        // Attached at the bootloader already, or now.
        let now = match early {
            Some(_) => None,
            None => Some(crate::console::connect(&dom.dir.console_socket(), &name)?),
        };
        if !args.paused {
            crate::ctl::request(&dom.dir, serde_json::json!({"op": "unpause"}))?;
        }
        if let Some(console) = now {
            console.run()?;
        } else if let Some(relay) = early {
            relay
                .join()
                .map_err(|_| anyhow::anyhow!("the console relay panicked"))??;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The console of domain `id` (named `name`), connected.
fn attach_console(id: &str, name: &str) -> anyhow::Result<crate::console::Attached> {
    let rd = crate::rundir::RunDir::open()?;
    let dom = crate::resolve::find(&rd, id)?;
    crate::console::connect(&dom.dir.console_socket(), name)
}

/// Starts the domain's VMM as its own session (`xkvm __run-domain`) and
/// waits until it reports the domain running (its id) or failed (the
/// reason, as an error).
pub fn spawn_vmm(rest: &[String], paused: bool) -> anyhow::Result<u32> {
    spawn_vmm_reporting(rest, paused, &mut |_| {})
}

/// [`spawn_vmm`], handing the VMM's progress lines (`BOOTLOADER <domid>`)
/// to `progress` as they come.
fn spawn_vmm_reporting(
    rest: &[String],
    paused: bool,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<u32> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the xkvm binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__run-domain");
    if paused {
        cmd.arg("-p");
    }
    cmd.arg("--")
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    // SAFETY: setsid is async-signal-safe; it detaches the VMM from our
    // terminal and process group so it outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the VMM process")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        for l in std::io::BufReader::new(out).lines() {
            let l = l.context("reading the VMM's start-up status")?;
            if l.starts_with("OK ") || l.starts_with("ERR ") {
                line = l;
                break;
            }
            progress(&l);
        }
    }
    let line = line.as_str();
    if let Some(id) = line.strip_prefix("OK ") {
        return id
            .trim()
            .parse()
            .with_context(|| format!("the VMM reported a bad domain id {id:?}"));
    }
    // The VMM exits after a failed start; reap it.
    let _ = child.wait();
    match line.strip_prefix("ERR ") {
        Some(reason) => anyhow::bail!("{reason}"),
        None => anyhow::bail!("the VMM process ended before the domain started"),
    }
}
