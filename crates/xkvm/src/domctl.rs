//! The VMM's side of the verbs that change a running domain's resources,
//! as libxl does them on Xen: `mem-set` (`libxl_set_memory_target`),
//! `mem-max` (`libxl_domain_setmaxmem`), `vcpu-set`
//! (`libxl_set_vcpuonline`), `vcpu-list` (`libxl_list_vcpu`) and
//! `trigger nmi` (`libxl_send_trigger`).
//!
//! XenStore changes happen in one transaction with the checks that guard
//! them, as in libxl; the hypervisor half (`XEN_DOMCTL_max_mem`,
//! `getvcpuinfo`) goes to the domain through [`vmm::DomainControl`].
//! Refusals carry libxl's own log message so that the command can print
//! it the way xl does.

use std::sync::Mutex;

use serde_json::{json, Value};
use xl_config::DomainConfig;

/// libxl's `LIBXL_MAXMEM_CONSTANT` (`libxl__arch_extra_memory` on x86):
/// KiB of slack the hypervisor limit gets above the guest's own memory.
pub const MAXMEM_CONSTANT_KB: u64 = 1024;

/// libxl's error codes that xl prints (`rc: -3`).
const ERROR_FAIL: i64 = -3;
const ERROR_INVAL: i64 = -6;

/// What a request reaches of the running domain.
pub struct Target<'a> {
    pub config: &'a Mutex<DomainConfig>,
    pub control: &'a vmm::DomainControl,
    pub store: &'a xenstore::Engine,
    pub domid: u32,
}

pub fn handle(t: &Target<'_>, op: &str, req: &Value) -> Result<Value, String> {
    match op {
        "mem-set" => mem_set(t, kb_arg(req)?),
        "mem-max" => mem_max(t, kb_arg(req)?),
        "vcpu-set" => vcpu_set(t, req["count"].as_u64().ok_or("vcpu-set: no count")?),
        "vcpu-list" => Ok(json!({ "vcpus": vcpu_list(t) })),
        "mem-info" => mem_info(t),
        "nmi" => nmi(t, req["vcpu"].as_u64().unwrap_or(0)),
        other => Err(format!("unknown control request {other:?}")),
    }
}

/// The request's `kb` (libxl takes an `int64_t`: a negative size reaches
/// its checks and fails there).
fn kb_arg(req: &Value) -> Result<i64, String> {
    req["kb"]
        .as_i64()
        .ok_or_else(|| "no size in KiB given".into())
}

/// A refusal as libxl logs it and xl reports it: `{"libxl": msg, "rc": rc}`
/// in the reply's error text, so the command can print both lines.
fn refused(msg: impl Into<String>, rc: i64) -> Result<Value, String> {
    Err(json!({ "libxl": msg.into(), "rc": rc }).to_string())
}

fn xs_err(e: xenstore::XsError) -> String {
    format!("XenStore: {e}")
}

fn read_kb(t: &mut xenstore::Transaction<'_>, path: &str) -> Result<Option<u64>, String> {
    match t.read(path) {
        Ok(v) => {
            let s = String::from_utf8_lossy(&v);
            s.parse::<u64>()
                .map(Some)
                .map_err(|_| format!("Invalid memory {s} from {path}"))
        }
        Err(xenstore::XsError::NoEnt) => Ok(None),
        Err(e) => Err(xs_err(e)),
    }
}

/// Pages for a hypervisor limit of `kb` KiB.
fn pages(kb: u64) -> u64 {
    kb / 4
}

/// `libxl_set_memory_target(domid, target_kb, relative = 0, enforce = 1)`:
/// checks the new target against `memory/static-max`, moves the
/// hypervisor limit to it (plus videoram and the slack), then writes
/// `memory/target` (the balloon driver's goal) and `/vm/<uuid>/memory`.
fn mem_set(t: &Target<'_>, target_kb: i64) -> Result<Value, String> {
    let dom = format!("/local/domain/{}", t.domid);
    let result = t
        .store
        .transaction(|x| {
            match read_kb(x, &format!("{dom}/memory/target")) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Ok(Err((
                        format!("Cannot get target memory info from {dom}/memory/target"),
                        ERROR_FAIL,
                    )))
                }
                Err(m) => return Ok(Err((m, ERROR_FAIL))),
            }
            let static_max = match read_kb(x, &format!("{dom}/memory/static-max")) {
                Ok(Some(v)) => v,
                Ok(None) => {
                    return Ok(Err((
                        format!("Cannot get memory info from {dom}/memory/static-max"),
                        ERROR_FAIL,
                    )))
                }
                Err(m) => return Ok(Err((m, ERROR_FAIL))),
            };
            let videoram = read_kb(x, &format!("{dom}/memory/videoram"))
                .ok()
                .flatten()
                .unwrap_or(0);
            // libxl's uint64_t arithmetic: a negative result wraps above
            // any static-max and is refused by the same check.
            let new_target = i128::from(target_kb) - i128::from(videoram);
            let new_target = match u64::try_from(new_target) {
                Ok(v) if v <= static_max => v,
                _ => {
                    return Ok(Err((
                        "memory_dynamic_max must be less than or equal to memory_static_max"
                            .to_owned(),
                        ERROR_INVAL,
                    )))
                }
            };
            let limit = new_target + videoram + MAXMEM_CONSTANT_KB;
            if !t.control.set_max_pages(pages(limit)) {
                return Ok(Err((
                    format!("xc_domain_setmaxmem memkb={limit} failed: the domain is not running"),
                    ERROR_FAIL,
                )));
            }
            x.write(
                &format!("{dom}/memory/target"),
                new_target.to_string().as_bytes(),
            )?;
            if let Ok(vm) = x.read(&format!("{dom}/vm")) {
                let vm = String::from_utf8_lossy(&vm).into_owned();
                x.write(
                    &format!("{vm}/memory"),
                    (new_target / 1024).to_string().as_bytes(),
                )?;
            }
            Ok(Ok(new_target))
        })
        .map_err(xs_err)?;
    match result {
        Ok(new_target) => {
            // libxl_retrieve_domain_configuration reads the target back
            // from XenStore: `list -l` and a reboot follow it.
            t.config
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .b_info
                .target_memkb = Some(new_target);
            Ok(json!({ "target_kb": new_target }))
        }
        Err((msg, rc)) => refused(msg, rc),
    }
}

/// `XEN_DOMCTL_SENDTRIGGER_NMI`: Xen refuses a vCPU id beyond
/// max_vcpus with `-EINVAL`.
fn nmi(t: &Target<'_>, vcpu: u64) -> Result<Value, String> {
    let sent = u32::try_from(vcpu).is_ok_and(|v| t.control.nmi(v));
    if sent {
        Ok(json!({}))
    } else {
        refused("Send trigger 'nmi' failed: Invalid argument", ERROR_FAIL)
    }
}

/// What the hypervisor side holds: `tot_kb` (pages held) and `max_kb`
/// (the `XEN_DOMCTL_max_mem` limit), as `getdomaininfo` reports them.
fn mem_info(t: &Target<'_>) -> Result<Value, String> {
    let (tot, max) = t
        .control
        .memory_pages()
        .ok_or("the domain is not running")?;
    Ok(json!({ "tot_kb": tot * 4, "max_kb": max * 4 }))
}

/// `libxl_domain_setmaxmem`: the hypervisor limit only (never below
/// `memory/target`); `memory/static-max` stays as it is, as in libxl.
fn mem_max(t: &Target<'_>, max_kb: i64) -> Result<Value, String> {
    let dom = format!("/local/domain/{}", t.domid);
    let target = match t.store.read(&format!("{dom}/memory/target")) {
        Ok(v) => String::from_utf8_lossy(&v).into_owned(),
        Err(_) => {
            return refused(
                format!("Cannot get memory info from {dom}/memory/target"),
                ERROR_FAIL,
            )
        }
    };
    let Ok(target_kb) = target.parse::<u64>() else {
        return refused(
            format!("Invalid memory {target} from {dom}/memory/target"),
            ERROR_FAIL,
        );
    };
    // libxl compares as uint64_t: a negative size wraps above the target
    // and fails at the hypervisor instead.
    let Ok(max_kb) = u64::try_from(max_kb) else {
        return refused(
            format!(
                "xc_domain_setmaxmem domid={} memkb={max_kb} failed",
                t.domid
            ),
            ERROR_FAIL,
        );
    };
    if max_kb < target_kb {
        return refused(
            "memory_static_max must be greater than or or equal to memory_dynamic_max",
            1,
        );
    }
    let limit = max_kb.saturating_add(MAXMEM_CONSTANT_KB);
    if !t.control.set_max_pages(pages(limit)) {
        return refused(
            format!(
                "xc_domain_setmaxmem domid={} memkb={limit} failed: the domain is not running",
                t.domid
            ),
            ERROR_FAIL,
        );
    }
    Ok(json!({ "max_kb": max_kb }))
}

/// `libxl_set_vcpuonline` for a PV or PVH guest: 1..=max_vcpus, then
/// `cpu/<n>/availability` = online for the first `count` vCPUs and
/// offline for the rest, in one transaction. The guest's vCPU hot-plug
/// driver acts on it (Linux: `drivers/xen/cpu_hotplug.c`).
fn vcpu_set(t: &Target<'_>, count: u64) -> Result<Value, String> {
    let max = t.control.vcpu_infos().len() as u64;
    if max == 0 {
        return refused(
            "Getting domain info list: the domain is not running",
            ERROR_FAIL,
        );
    }
    if count == 0 {
        return refused("Requested 0 VCPUs!", ERROR_FAIL);
    }
    if count > max {
        return refused(
            format!("Requested {count} VCPUs, however maxcpus is {max}!"),
            ERROR_FAIL,
        );
    }
    let ty = t
        .store
        .read(&format!("/libxl/{}/type", t.domid))
        .unwrap_or_default();
    if ty == b"hvm" {
        // libxl plugs an HVM guest's vCPUs into its device model over QMP
        // (ACPI CPU hot-plug); xkvm has no such device.
        return refused(
            "vCPU hot-plug of an HVM guest needs the device model's ACPI CPU hot-plug, \
             which xkvm does not have",
            ERROR_INVAL,
        );
    }
    let dom = format!("/local/domain/{}", t.domid);
    t.store
        .transaction(|x| {
            for i in 0..max {
                let v: &[u8] = if i < count { b"online" } else { b"offline" };
                x.write(&format!("{dom}/cpu/{i}/availability"), v)?;
            }
            Ok(())
        })
        .map_err(xs_err)?;
    // libxl_retrieve_domain_configuration reads avail_vcpus back from
    // these nodes.
    t.config
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .b_info
        .avail_vcpus = (0..count as u32).collect();
    Ok(json!({}))
}

/// A vCPU thread's host view: (`R` state, last host CPU, CPU seconds).
fn vcpu_thread(id: u32) -> Option<(bool, u32, f64)> {
    let name = format!("vcpu{id}");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state is 0, utime 11, stime 12, processor 36.
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        return Some((
            f.first() == Some(&"R"),
            n(36) as u32,
            (n(11) + n(12)) as f64 / hz,
        ));
    }
    None
}

/// `libxl_list_vcpu`: every vCPU id up to max_vcpus with its state from
/// the hypervisor side (online) and from its host thread (running, the
/// host CPU it last ran on, the CPU time it used).
fn vcpu_list(t: &Target<'_>) -> Vec<Value> {
    let paused = t.control.is_paused();
    t.control
        .vcpu_infos()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let id = i as u32;
            let thread = if v.online { vcpu_thread(id) } else { None };
            let (running, cpu, time) = match thread {
                Some((r, cpu, secs)) => (r && !paused, cpu, secs),
                None => (false, 0, v.time_ns as f64 / 1e9),
            };
            json!({
                "vcpu": id,
                "online": v.online,
                "running": v.online && running,
                "blocked": v.online && !running && !paused,
                "cpu": cpu,
                "time": time,
            })
        })
        .collect()
}

/// The libxl message and rc of a refusal from [`handle`], as the command
/// sees it in `ctl::request`'s error; `None` for any other error.
pub fn refusal(e: &anyhow::Error) -> Option<(String, i64)> {
    let v: Value = serde_json::from_str(&e.to_string()).ok()?;
    Some((v["libxl"].as_str()?.to_owned(), v["rc"].as_i64()?))
}
