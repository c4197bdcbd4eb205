//! The VMM process of one domain (`xkvm __run-domain`, started detached by
//! `xkvm create`): claims the name and a domain id in the run directory,
//! serves the domain's control, console and XenStore sockets, runs the
//! guest and applies the `on_*` actions, and removes its run directory when
//! the domain is gone. Like QEMU or Firecracker: one process per domain.
//!
//! Start-up is reported to `xkvm create` on the status pipe (this process's
//! stdout at start): `OK <domid>` once the vCPUs exist, or `ERR <reason>`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use xl_config::{Action, DomainConfig};

use crate::console::ConsoleHub;
use crate::rundir::{DomainDir, RunDir};
use crate::{coredump, ctl, domain};

#[derive(clap::Args)]
pub struct Args {
    /// Leave the domain paused.
    #[arg(short = 'p')]
    pub paused: bool,
    /// The xl.cfg file, then KEY=VALUE overrides.
    #[arg(trailing_var_arg = true, required = true)]
    pub rest: Vec<String>,
}

/// What `xkvm list` and the other commands see of this domain.
#[derive(Debug, Clone, Default)]
struct Status {
    domid: u32,
    name: String,
    /// Set once the guest has shut down and its VMM keeps it (`preserve`).
    shutdown: Option<vmm::DomainExit>,
    /// The last shutdown, for `shutdown -w` / `reboot -w`: (domid, reason).
    last_shutdown: Option<(u32, vmm::DomainExit)>,
    /// `console_io` output of earlier runs (`xl dmesg` spans reboots).
    dmesg: Vec<u8>,
}

/// Xen's shutdown reason codes (`SHUTDOWN_*`), as `xl` prints them.
pub fn reason_code(e: vmm::DomainExit) -> u32 {
    match e {
        vmm::DomainExit::Poweroff => 0,
        vmm::DomainExit::Reboot => 1,
        vmm::DomainExit::Suspend => 2,
        vmm::DomainExit::Crash => 3,
        vmm::DomainExit::Watchdog => 4,
        vmm::DomainExit::SoftReset => 5,
    }
}

fn exit_of_name(s: &str) -> Option<vmm::DomainExit> {
    Some(match s {
        "poweroff" => vmm::DomainExit::Poweroff,
        "reboot" => vmm::DomainExit::Reboot,
        "crash" => vmm::DomainExit::Crash,
        "watchdog" => vmm::DomainExit::Watchdog,
        _ => return None,
    })
}

/// The status pipe to `xkvm create`, written once.
struct Reporter(Mutex<Option<File>>);

impl Reporter {
    /// A line before the final one (the pipe stays open), e.g.
    /// `BOOTLOADER <domid>`: the console is live before the domain runs.
    fn progress(&self, line: &str) {
        if let Some(f) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    fn send(&self, line: &str) {
        if let Some(mut f) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Points fd `target` at `file` (our stdout/stderr at the log).
fn redirect(file: &File, target: i32) {
    // SAFETY: both fds are open; dup2 replaces `target` atomically.
    unsafe { libc::dup2(file.as_raw_fd(), target) };
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Our stdout is the status pipe: keep it as its own fd and send stdout
    // to the log once we have one.
    // SAFETY: dup of fd 1, which is open; the new fd is owned by the File.
    let status_fd = unsafe { libc::dup(1) };
    anyhow::ensure!(status_fd >= 0, "no status pipe");
    // SAFETY: `status_fd` is a fresh fd that nothing else owns.
    let reporter = Arc::new(Reporter(Mutex::new(Some(unsafe {
        File::from_raw_fd(status_fd)
    }))));
    let mode = Mode {
        background: true,
        paused: args.paused,
        terminal_console: false,
    };
    let started = load(&args).and_then(|config| start_and_run(config, &args.rest, mode, &reporter));
    match started {
        Ok(code) => Ok(code),
        Err(e) => {
            reporter.send(&format!("ERR {e:#}").replace('\n', " "));
            tracing::error!("{e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `xkvm create -F [-c]`: this process is the domain's VMM, in the
/// foreground, registered in the run directory like any other (so `list`,
/// `shutdown`, `destroy`, ... reach it). With `-c` the guest's console is
/// this terminal (Ctrl-] detaches it); without, `xkvm console` can attach.
/// Exit status: 0 when the domain ended normally, 1 after a crash or a
/// watchdog shutdown.
pub fn run_foreground(
    config: DomainConfig,
    rest: &[String],
    terminal_console: bool,
) -> anyhow::Result<ExitCode> {
    let reporter = Arc::new(Reporter(Mutex::new(None)));
    let mode = Mode {
        background: false,
        paused: false,
        terminal_console,
    };
    start_and_run(config, rest, mode, &reporter)
}

fn load(args: &Args) -> anyhow::Result<DomainConfig> {
    let (file, overrides) = args.rest.split_first().context("no config file given")?;
    let parsed = xl_config::load(std::path::Path::new(file), overrides)?;
    Ok(parsed.config.with_defaults())
}

/// How this VMM process was started.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Detached (`create` without -F): output goes to the domain's log.
    background: bool,
    paused: bool,
    /// `-F -c`: the console is this process's stdin/stdout.
    terminal_console: bool,
}

/// Everything the sockets' threads share with the run loop.
struct Domain {
    rd: RunDir,
    dir: Mutex<DomainDir>,
    /// The configuration, with the devices plugged in and out since (as
    /// libxl keeps it in its per-domain userdata): what `list -l` shows
    /// and what a reboot starts again.
    config: Mutex<DomainConfig>,
    /// The config file and overrides, for a rename-restart's new VMM.
    rest: Vec<String>,
    mode: Mode,
    control: vmm::DomainControl,
    store: xenstore::Engine,
    status: Mutex<Status>,
}

impl Domain {
    /// A copy of the current configuration.
    fn config(&self) -> DomainConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn start_and_run(
    config: DomainConfig,
    rest: &[String],
    mode: Mode,
    reporter: &Arc<Reporter>,
) -> anyhow::Result<ExitCode> {
    let name = config.c_info.name.clone();
    let rd = RunDir::open()?;
    let dir = rd.claim_name(&name)?;
    let domid = match rd.alloc_domid(&name) {
        Ok(d) => d,
        Err(e) => {
            rd.remove(&dir, None);
            return Err(e);
        }
    };
    // From here on a background VMM's output goes to the domain's log, so
    // that `xkvm create` (and whoever reads its stderr) is not held open.
    if mode.background {
        if let Ok(log) = File::create(dir.log_file()) {
            redirect(&log, 1);
            redirect(&log, 2);
        }
    }

    let control = vmm::DomainControl::new();
    if mode.paused {
        control.pause();
    }
    let dom = Arc::new(Domain {
        rd: rd.clone(),
        dir: Mutex::new(dir.clone()),
        config: Mutex::new(config),
        rest: rest.to_vec(),
        mode,
        control,
        store: xenstore::Engine::new(xenstore::Config::default()),
        status: Mutex::new(Status {
            domid,
            name: name.clone(),
            ..Status::default()
        }),
    });
    let result = serve_and_run(&dom, reporter);
    let final_dir = dom.dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let final_id = dom.status.lock().unwrap_or_else(|e| e.into_inner()).domid;
    rd.remove(&final_dir, Some(final_id));
    let code = result?;
    let last = dom
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_shutdown;
    match last {
        Some((_, exit @ (vmm::DomainExit::Crash | vmm::DomainExit::Watchdog)))
            if !mode.background =>
        {
            eprintln!("xkvm: domain {name} stopped: {exit:?}");
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(code),
    }
}

fn serve_and_run(dom: &Arc<Domain>, reporter: &Arc<Reporter>) -> anyhow::Result<ExitCode> {
    let dir = dom.dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let stop = Arc::new(AtomicBool::new(false));
    let xs_server =
        xenstore::socket::SocketServer::start(dom.store.clone(), &dir.xenstore_socket())
            .with_context(|| format!("serving XenStore on {}", dir.xenstore_socket().display()))?;
    let hub = ConsoleHub::default();
    if dom.mode.terminal_console {
        hub.refuse_all("the console is attached to the terminal of `xkvm create -F -c`");
    }
    hub.serve(&dir.console_socket(), stop.clone())?;
    let handler = dom.clone();
    ctl::serve(&dir.control_socket(), stop.clone(), move |req| {
        handle(&handler, req)
    })?;
    write_info(dom)?;

    let result = run_loop(dom, &hub, reporter);
    stop.store(true, Ordering::SeqCst);
    xs_server.shutdown();
    result
}

fn write_info(dom: &Domain) -> anyhow::Result<()> {
    let dir = dom.dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let st = dom.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let info = json!({
        "name": st.name,
        "domid": st.domid,
        "pid": std::process::id(),
    });
    crate::rundir::write_atomic(&dir.path.join("info.json"), info.to_string().as_bytes())
}

/// Whether a run ending with `exit` is dumped first.
fn dumps(config: &DomainConfig, exit: vmm::DomainExit) -> bool {
    matches!(
        domain::action_for(config, exit),
        Action::CoredumpDestroy | Action::CoredumpRestart
    )
}

fn run_loop(
    dom: &Arc<Domain>,
    hub: &ConsoleHub,
    reporter: &Arc<Reporter>,
) -> anyhow::Result<ExitCode> {
    let config = dom.config();
    dom.control
        .set_dump_policy(Box::new(move |exit| dumps(&config, exit)));
    loop {
        let domid = dom.status.lock().unwrap_or_else(|e| e.into_inner()).domid;
        if crate::bootloader::applies(&dom.config()) {
            reporter.progress(&format!("BOOTLOADER {domid}"));
        }
        let boot = run_bootloader(dom, hub, domid)?;
        let mut vm = domain::vm_config(&dom.config(), domid, boot.as_ref())?;
        // vif scripts reach this domain's store as libxl's reach xenstored.
        let store_socket = dom
            .dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .xenstore_socket();
        for vif in &mut vm.vifs {
            vif.hotplug.xenstored_path = Some(store_socket.clone());
        }
        let ended = Arc::new(AtomicBool::new(false));
        let console = if dom.mode.terminal_console {
            crate::foreground::terminal_console()
        } else {
            hub.console_io(ended.clone())
        };
        // Reports "running" once the vCPUs exist.
        let watcher = {
            let (control, reporter) = (dom.control.clone(), reporter.clone());
            let done = ended.clone();
            std::thread::spawn(move || {
                // The bootloader's files go once the domain has loaded them.
                let _boot = boot;
                while !done.load(Ordering::SeqCst) {
                    if control.is_running() {
                        reporter.send(&format!("OK {domid}"));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let result =
            vmm::run_domain_controlled(vm, console, Arc::new(dom.store.clone()), &dom.control);
        ended.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        if result.is_ok() {
            // A guest that stopped before the watcher looked still started.
            reporter.send(&format!("OK {domid}"));
        }
        forget_domain_nodes(&dom.store, domid);
        let outcome =
            match result.with_context(|| format!("domain {} failed", dom.config().c_info.name))? {
                vmm::Ended::Destroyed { hypervisor_log } => {
                    tracing::info!("domain {domid} destroyed");
                    append_dmesg(dom, &hypervisor_log);
                    return Ok(ExitCode::SUCCESS);
                }
                vmm::Ended::Shutdown(o) => o,
            };
        append_dmesg(dom, &outcome.hypervisor_log);
        let exit = outcome.exit;
        let action = domain::action_for(&dom.config(), exit);
        tracing::info!(?exit, ?action, "domain {domid} shut down");
        dom.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_shutdown = Some((domid, exit));
        if let Some(dump) = dom.control.take_core_dump() {
            let name = dom
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .name
                .clone();
            match coredump::write_for(&name, &dump) {
                Ok(p) => tracing::info!("core dump of domain {domid} written to {}", p.display()),
                Err(e) => tracing::error!("core dump of domain {domid}: {e:#}"),
            }
        }
        match action {
            Action::Restart | Action::CoredumpRestart => restart(dom)?,
            Action::RestartRename => {
                rename_restart(dom, domid)?;
                return preserve(dom, exit);
            }
            Action::Preserve => return preserve(dom, exit),
            Action::Destroy | Action::CoredumpDestroy => return Ok(ExitCode::SUCCESS),
            Action::SoftReset => {
                tracing::warn!("soft-reset is not supported; destroying domain {domid}");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// Runs the domain's bootloader, if it has one, on the domain's console
/// (this terminal for `create -F -c`), as libxl does before each boot.
fn run_bootloader(
    dom: &Domain,
    hub: &ConsoleHub,
    domid: u32,
) -> anyhow::Result<Option<crate::bootloader::Chosen>> {
    use crate::bootloader::{Session, StdinUntil, Terminal};
    let done = Arc::new(AtomicBool::new(false));
    let console = if dom.mode.terminal_console {
        vmm::ConsoleIo {
            input: Some(Box::new(StdinUntil { done: done.clone() })),
            output: Box::new(std::io::stdout()),
        }
    } else {
        hub.console_io(done.clone())
    };
    let work_dir = dom
        .dir
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .path
        .clone();
    let session = Session {
        domid,
        work_dir: &work_dir,
        terminal: Terminal { console, done },
        stop: &|| dom.control.is_destroyed(),
    };
    domain::run_bootloader(&dom.config(), session)
}

fn append_dmesg(dom: &Domain, log: &[u8]) {
    dom.status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .dmesg
        .extend_from_slice(log);
}

/// A restarted domain is a new domain: its old nodes go, as libxl's
/// destroy removes them.
fn forget_domain_nodes(store: &xenstore::Engine, domid: u32) {
    for p in [format!("/local/domain/{domid}"), format!("/libxl/{domid}")] {
        let _ = store.rm(&p);
    }
    let _ = store.release_domain(domid as u16);
}

/// Same name, new domain id (xl's `restart`).
fn restart(dom: &Domain) -> anyhow::Result<()> {
    let name = dom
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .name
        .clone();
    let new = dom.rd.alloc_domid(&name)?;
    let mut st = dom.status.lock().unwrap_or_else(|e| e.into_inner());
    let old = st.domid;
    st.domid = new;
    drop(st);
    dom.rd.release_domid(old);
    write_info(dom)?;
    tracing::info!("domain {old} restarts as {new}");
    Ok(())
}

/// xl's `rename-restart`: this (stopped) domain keeps running under a new
/// name and a fresh VMM starts the configuration under the old one.
fn rename_restart(dom: &Domain, domid: u32) -> anyhow::Result<()> {
    let old_name = dom
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .name
        .clone();
    let new_name = format!("{old_name}--{domid}");
    let dir = dom.dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let moved = dom.rd.rename(&dir, &new_name, domid)?;
    *dom.dir.lock().unwrap_or_else(|e| e.into_inner()) = moved;
    dom.status.lock().unwrap_or_else(|e| e.into_inner()).name = new_name.clone();
    write_info(dom)?;
    match crate::cmd::create::spawn_vmm(&dom.rest, false) {
        Ok(new) => {
            tracing::info!("domain {domid} renamed to {new_name}; {old_name} restarted as {new}")
        }
        Err(e) => tracing::error!("restarting {old_name} after rename: {e:#}"),
    }
    Ok(())
}

/// `xl rename` (`libxl_domain_rename`): the run directory moves to the new
/// name (refused if taken), then XenStore's `name` nodes and the kept
/// configuration follow.
fn rename(dom: &Domain, new_name: &str) -> Result<serde_json::Value, String> {
    let (domid, old) = {
        let st = dom.status.lock().unwrap_or_else(|e| e.into_inner());
        (st.domid, st.name.clone())
    };
    if new_name == old {
        return Ok(json!({}));
    }
    let dir = dom.dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let moved = dom
        .rd
        .rename(&dir, new_name, domid)
        .map_err(|e| format!("{e:#}"))?;
    *dom.dir.lock().unwrap_or_else(|e| e.into_inner()) = moved;
    dom.status.lock().unwrap_or_else(|e| e.into_inner()).name = new_name.to_owned();
    dom.config
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .c_info
        .name = new_name.to_owned();
    write_info(dom).map_err(|e| format!("{e:#}"))?;
    let dom_path = format!("/local/domain/{domid}");
    let _ = dom
        .store
        .write(&format!("{dom_path}/name"), new_name.as_bytes());
    if let Ok(vm) = dom.store.read(&format!("{dom_path}/vm")) {
        let vm = String::from_utf8_lossy(&vm).into_owned();
        let _ = dom.store.write(&format!("{vm}/name"), new_name.as_bytes());
    }
    Ok(json!({}))
}

/// xl's `preserve`: the domain stays, shut down, until `xkvm destroy`.
fn preserve(dom: &Domain, exit: vmm::DomainExit) -> anyhow::Result<ExitCode> {
    dom.status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .shutdown = Some(exit);
    while !dom.control.is_destroyed() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ExitCode::SUCCESS)
}

/// The domain's type as libxl reads it back (`/libxl/<domid>/type`):
/// missing or invalid → a warning and "hvm".
fn domain_type(store: &xenstore::Engine, domid: u32) -> (String, Option<String>) {
    let path = format!("/libxl/{domid}/type");
    match store.read(&path) {
        Ok(v) => match std::str::from_utf8(&v) {
            Ok(t @ ("hvm" | "pv" | "pvh")) => (t.to_owned(), None),
            _ => (
                "hvm".into(),
                Some(format!(
                    "unable to determine the domain type: {path} is {:?}; taking it as hvm",
                    String::from_utf8_lossy(&v)
                )),
            ),
        },
        Err(e) => (
            "hvm".into(),
            Some(format!(
                "unable to determine the domain type: reading {path}: {e}; taking it as hvm"
            )),
        ),
    }
}

/// CPU time of the vCPU threads, seconds (Xen's `cpu_time`).
fn vcpu_cpu_time() -> (f64, bool) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut ticks = 0u64;
    let mut running = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("vcpu") {
                continue;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            running |= f.first() == Some(&"R");
            // Fields after the name: state is index 0, utime 11, stime 12.
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            ticks += n(11) + n(12);
        }
    }
    (ticks as f64 / hz, running)
}

fn info(dom: &Domain) -> Value {
    let st = dom.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dir = dom.dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (type_, warning) = domain_type(&dom.store, st.domid);
    let paused = dom.control.is_paused();
    let (cpu, running) = vcpu_cpu_time();
    let cfg = dom.config();
    let b = &cfg.b_info;
    // xl list's Mem is what the domain holds (tot_pages), which follows
    // `mem-set` once the guest's balloon driver has acted.
    let mem_mib = match dom.control.memory_pages() {
        Some((tot_pages, _)) => tot_pages * 4 / 1024,
        None => b.target_memkb.or(b.max_memkb).unwrap_or(0) / 1024,
    };
    let mut config = xl_config::json::to_json(&cfg, xl_config::Flavour::Full);
    if let Some(c) = config.get_mut("c_info").and_then(Value::as_object_mut) {
        c.insert("type".into(), json!(type_));
        c.insert("name".into(), json!(st.name));
    }
    // xl list's VCPUs is the hypervisor's count of vCPUs up (vcpu_online).
    let online = dom.control.vcpu_infos().iter().filter(|v| v.online).count();
    let vcpus = match u32::try_from(online) {
        Ok(n) if n > 0 => n,
        _ => u32::try_from(b.avail_vcpus.len()).unwrap_or(1).max(1),
    };
    json!({
        "name": st.name,
        "domid": st.domid,
        "pid": std::process::id(),
        "type": type_,
        "type_warning": warning,
        "memory_mib": mem_mib,
        "vcpus": vcpus,
        "cpu_time": cpu,
        "running": st.shutdown.is_none() && !paused && running,
        "blocked": st.shutdown.is_none() && !paused && !running,
        "paused": paused && st.shutdown.is_none(),
        "shutdown": st.shutdown.is_some(),
        "crashed": st.shutdown == Some(vmm::DomainExit::Crash),
        "dying": dom.control.is_destroyed(),
        "shutdown_reason": st.shutdown.map(reason_code),
        "last_shutdown": st.last_shutdown.map(|(d, e)| json!({"domid": d, "reason": reason_code(e)})),
        "callback_irq": dom.control.hvm_param(0).unwrap_or(0),
        "xenstore_socket": dir.xenstore_socket(),
        "console_socket": dir.console_socket(),
        "run_dir": dir.path,
        "config": config,
    })
}

fn handle(dom: &Domain, req: &Value) -> Result<Value, String> {
    match req["op"].as_str().unwrap_or("") {
        "info" => Ok(info(dom)),
        "pause" => {
            dom.control.pause();
            Ok(json!({}))
        }
        "unpause" => {
            dom.control.unpause();
            Ok(json!({}))
        }
        "destroy" => {
            dom.control.destroy();
            Ok(json!({}))
        }
        "shutdown" => {
            let reason = req["reason"].as_str().unwrap_or("poweroff");
            let exit = exit_of_name(reason)
                .ok_or_else(|| format!("unknown shutdown reason {reason:?}"))?;
            if !dom.control.is_running() {
                return Err("the domain is not running".into());
            }
            dom.control.shutdown(exit);
            Ok(json!({}))
        }
        "dmesg" => {
            let mut log = dom
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .dmesg
                .clone();
            log.extend(dom.control.hypervisor_log());
            Ok(json!({ "log": String::from_utf8_lossy(&log) }))
        }
        op @ ("block-attach" | "block-detach" | "block-list" | "network-attach"
        | "network-detach" | "network-list") => {
            let domid = dom.status.lock().unwrap_or_else(|e| e.into_inner()).domid;
            let target = crate::hotplug::Target {
                config: &dom.config,
                control: &dom.control,
                store: &dom.store,
                domid,
                xenstored_path: dom
                    .dir
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .xenstore_socket(),
            };
            crate::hotplug::handle(&target, op, req)
        }
        "rename" => rename(dom, req["name"].as_str().unwrap_or("")),
        op @ ("mem-set" | "mem-max" | "mem-info" | "vcpu-set" | "vcpu-list" | "nmi") => {
            let target = crate::domctl::Target {
                config: &dom.config,
                control: &dom.control,
                store: &dom.store,
                domid: dom.status.lock().unwrap_or_else(|e| e.into_inner()).domid,
            };
            crate::domctl::handle(&target, op, req)
        }
        other => Err(format!("unknown control request {other:?}")),
    }
}
