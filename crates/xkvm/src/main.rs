//! `xkvm`: xl's command line for Xen guests on KVM.

mod cmd;
mod domain;
mod foreground;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "xkvm", version, about = "Run unmodified Xen guests on Linux/KVM with xl's commands")]
struct Cli {
    /// Verbose logging (repeat for more); RUST_LOG overrides.
    #[arg(short = 'v', action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a domain from an xl.cfg file (as `xl create`).
    Create(cmd::create::Args),
    /// Run a standalone XenStore daemon on a Unix socket.
    Xenstored(cmd::xenstored::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Create(args) => cmd::create::run(args),
        Command::Xenstored(args) => cmd::xenstored::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xkvm: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
