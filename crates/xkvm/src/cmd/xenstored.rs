//! `xkvm xenstored --socket PATH`: a standalone XenStore daemon in the
//! foreground until SIGTERM or SIGINT.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Unix socket to listen on (connections there are dom0).
    #[arg(long)]
    pub socket: PathBuf,
    /// Quotas for unprivileged domains, as NAME=VALUE[,NAME=VALUE...]
    /// (nodes, node-size, watches, transactions, transaction-nodes,
    /// permissions, outstanding, memory, soft-memory, path-length).
    #[arg(long)]
    pub quota: Option<String>,
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it spawns
/// later) so that `sigwait` can take them synchronously.
fn block_stop_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    anyhow::ensure!(rc == 0, "pthread_sigmask failed: {rc}");
    Ok(set)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = xenstore::Config::default();
    if let Some(spec) = &args.quota {
        config.quota.apply_spec(spec).map_err(anyhow::Error::msg)?;
    }
    let set = block_stop_signals()?;
    let engine = xenstore::Engine::new(config);
    let server = xenstore::socket::SocketServer::start(engine, &args.socket)
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    tracing::info!(socket = %args.socket.display(), "xenstored running");
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` and `sig` are valid for the call.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    anyhow::ensure!(rc == 0, "sigwait failed: {rc}");
    tracing::info!(signal = sig, "xenstored stopping");
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}
