//! `xkvm`: xl's command line for Xen guests on KVM.

mod bootloader;
mod cmd;
mod console;
mod coredump;
mod ctl;
mod domain;
mod domctl;
mod foreground;
mod hotplug;
mod resolve;
mod rundir;
mod unsupported;
mod vmm_process;
mod xs_client;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "xkvm",
    version,
    about = "Run unmodified Xen guests on Linux/KVM with xl's commands"
)]
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
    /// List domains (as `xl list`); -l prints their JSON configuration.
    List(cmd::list::Args),
    /// Attach to a domain's console (Ctrl-] detaches).
    Console(cmd::control::DomArg),
    /// Ask a domain to shut down through XenStore control/shutdown.
    Shutdown(cmd::shutdown::Args),
    /// Ask a domain to reboot through XenStore control/shutdown.
    Reboot(cmd::shutdown::Args),
    /// End a domain immediately.
    Destroy(cmd::control::DomArg),
    /// Pause all of a domain's vCPUs.
    Pause(cmd::control::DomArg),
    /// Let a paused domain run again.
    Unpause(cmd::control::DomArg),
    /// What the guest wrote with HYPERVISOR_console_io.
    Dmesg(cmd::control::DomArg),
    /// The id of the domain with this name.
    Domid(cmd::control::NameArg),
    /// The name of the domain with this id.
    Domname(cmd::control::IdArg),
    /// Read XenStore paths of a domain's store.
    #[command(name = "xenstore-read")]
    XenstoreRead(cmd::xenstore::Args),
    /// Write XenStore PATH VALUE pairs in a domain's store.
    #[command(name = "xenstore-write")]
    XenstoreWrite(cmd::xenstore::Args),
    /// List a XenStore subtree of a domain's store.
    #[command(name = "xenstore-ls")]
    XenstoreLs(cmd::xenstore::Args),
    /// Remove XenStore paths from a domain's store.
    #[command(name = "xenstore-rm")]
    XenstoreRm(cmd::xenstore::Args),
    /// Print the paths of XenStore watch events in a domain's store.
    #[command(name = "xenstore-watch")]
    XenstoreWatch(cmd::xenstore::Args),
    /// Plug a disk into a running domain (as `xl block-attach`).
    #[command(name = "block-attach")]
    BlockAttach(cmd::block::AttachArgs),
    /// Unplug a disk from a running domain (as `xl block-detach`).
    #[command(name = "block-detach")]
    BlockDetach(cmd::block::DetachArgs),
    /// List a domain's disks (as `xl block-list`).
    #[command(name = "block-list")]
    BlockList(cmd::block::ListArgs),
    /// Plug a network interface into a running domain (as `xl network-attach`).
    #[command(name = "network-attach")]
    NetworkAttach(cmd::network::AttachArgs),
    /// Unplug a network interface (as `xl network-detach`).
    #[command(name = "network-detach")]
    NetworkDetach(cmd::network::DetachArgs),
    /// List a domain's network interfaces (as `xl network-list`).
    #[command(name = "network-list")]
    NetworkList(cmd::network::ListArgs),
    /// Set a domain's memory target (as `xl mem-set`).
    #[command(name = "mem-set")]
    MemSet(cmd::mem::Args),
    /// Set a domain's maximum memory (as `xl mem-max`).
    #[command(name = "mem-max")]
    MemMax(cmd::mem::Args),
    /// Set how many vCPUs a domain has online (as `xl vcpu-set`).
    #[command(name = "vcpu-set")]
    VcpuSet(cmd::vcpu::SetArgs),
    /// List domains' vCPUs (as `xl vcpu-list`).
    #[command(name = "vcpu-list")]
    VcpuList(cmd::vcpu::ListArgs),
    /// Send a sysrq to a domain (as `xl sysrq`).
    Sysrq(cmd::misc::SysrqArgs),
    /// How long domains have been up (as `xl uptime`).
    Uptime(cmd::misc::UptimeArgs),
    /// Send a trigger to a domain (as `xl trigger`).
    Trigger(cmd::misc::TriggerArgs),
    /// Give a domain a new name (as `xl rename`).
    Rename(cmd::misc::RenameArgs),
    /// Insert a cdrom image (as `xl cd-insert`; HVM guests only).
    #[command(name = "cd-insert")]
    CdInsert(cmd::cdrom::InsertArgs),
    /// Eject a cdrom (as `xl cd-eject`; HVM guests only).
    #[command(name = "cd-eject")]
    CdEject(cmd::cdrom::EjectArgs),
    /// The host's resources and the Xen xkvm plays (as `xl info`).
    Info(cmd::info::Args),
    /// Run a standalone XenStore daemon on a Unix socket.
    Xenstored(cmd::xenstored::Args),
    /// (internal) The VMM process of one domain, started by `create`.
    #[command(name = "__run-domain", hide = true)]
    RunDomain(vmm_process::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if !matches!(cli.command, Command::RunDomain(_)) {
        // A command piped into `head` ends quietly as xl does; the VMM
        // keeps ignoring SIGPIPE (console clients come and go).
        // SAFETY: restoring the default disposition of one signal.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Create(args) => cmd::create::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Console(a) => cmd::control::console(a),
        Command::Shutdown(a) => cmd::shutdown::shutdown(a),
        Command::Reboot(a) => cmd::shutdown::reboot(a),
        Command::Destroy(a) => cmd::control::destroy(a),
        Command::Pause(a) => cmd::control::pause(a),
        Command::Unpause(a) => cmd::control::unpause(a),
        Command::Dmesg(a) => cmd::control::dmesg(a),
        Command::Domid(a) => cmd::control::domid(a),
        Command::Domname(a) => cmd::control::domname(a),
        Command::XenstoreRead(a) => cmd::xenstore::read(a),
        Command::XenstoreWrite(a) => cmd::xenstore::write(a),
        Command::XenstoreLs(a) => cmd::xenstore::ls(a),
        Command::XenstoreRm(a) => cmd::xenstore::rm(a),
        Command::XenstoreWatch(a) => cmd::xenstore::watch(a),
        Command::BlockAttach(a) => cmd::block::attach(a),
        Command::BlockDetach(a) => cmd::block::detach(a),
        Command::BlockList(a) => cmd::block::list(a),
        Command::NetworkAttach(a) => cmd::network::attach(a),
        Command::NetworkDetach(a) => cmd::network::detach(a),
        Command::NetworkList(a) => cmd::network::list(a),
        Command::MemSet(a) => cmd::mem::mem_set(a),
        Command::MemMax(a) => cmd::mem::mem_max(a),
        Command::VcpuSet(a) => cmd::vcpu::set(a),
        Command::VcpuList(a) => cmd::vcpu::list(a),
        Command::Sysrq(a) => cmd::misc::sysrq(a),
        Command::Uptime(a) => cmd::misc::uptime(a),
        Command::Trigger(a) => cmd::misc::trigger(a),
        Command::Rename(a) => cmd::misc::rename(a),
        Command::CdInsert(a) => cmd::cdrom::insert(a),
        Command::CdEject(a) => cmd::cdrom::eject(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Xenstored(args) => cmd::xenstored::run(args),
        Command::RunDomain(args) => vmm_process::run(args),
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
