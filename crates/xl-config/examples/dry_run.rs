//! `cargo run -p xl-config --example dry_run -- CFG [KEY=VALUE...]`: what
//! `xkvm create -n` prints, without building the VMM (for comparing with
//! the oracle by hand).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let defaults = args.iter().any(|a| a == "--defaults");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--defaults").collect();
    let Some((file, overrides)) = args.split_first() else {
        eprintln!("usage: dry_run [--defaults] CFG [KEY=VALUE...]");
        return ExitCode::FAILURE;
    };
    eprintln!("Parsing config from {file}");
    let report = xl_config::load_report(std::path::Path::new(file), overrides);
    for w in &report.warnings {
        eprintln!("{w}");
    }
    match report.result {
        Ok(config) => {
            let (cfg, flavour) = if defaults {
                (config.with_defaults(), xl_config::Flavour::Full)
            } else {
                (config, xl_config::Flavour::Xl)
            };
            println!(
                "{}",
                xl_config::json::pretty(&xl_config::json::to_json(&cfg, flavour))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            // The status xl exits with at this refusal site.
            ExitCode::from(e.exit_status())
        }
    }
}
