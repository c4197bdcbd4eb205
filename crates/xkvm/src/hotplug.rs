//! Device hot-plug in the domain's VMM process: the control requests behind
//! `xkvm block-attach`, `block-detach`, `block-list`, `network-attach`,
//! `network-detach` and `network-list`, and libxl's rules for them (device
//! ids, which device an argument names, what the lists show).
//!
//! Specs are parsed with the same xl-config parsers as `disk=` and `vif=`,
//! mapped with the same functions as at boot ([`domain::disk_spec`],
//! [`domain::vif_spec`]), and the VMM creates the backend exactly as at
//! boot. The domain's configuration follows every change (libxl updates
//! the domain's stored configuration the same way), so `list -l` shows the
//! devices and a reboot brings them back.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};
use xl_config::{Disk, DomainConfig, Nic};

use crate::domain;

/// The running domain a request acts on.
pub struct Target<'a> {
    pub config: &'a Mutex<DomainConfig>,
    pub control: &'a vmm::DomainControl,
    pub store: &'a xenstore::Engine,
    pub domid: u32,
    /// The domain's XenStore socket, for vif scripts (as at boot).
    pub xenstored_path: PathBuf,
}

/// Serves one hot-plug control request (`op` is one of the six verbs).
pub fn handle(t: &Target<'_>, op: &str, req: &Value) -> Result<Value, String> {
    match op {
        "block-attach" => block_attach(t, &strings(&req["specs"])),
        "block-detach" => block_detach(
            t,
            req["disk"].as_str().unwrap_or(""),
            req["force"].as_bool().unwrap_or(false),
        ),
        "block-list" => Ok(json!({ "disks": block_list(t) })),
        "network-attach" => network_attach(t, &strings(&req["specs"])),
        "network-detach" => network_detach(t, req["nic"].as_str().unwrap_or("")),
        "network-list" => Ok(json!({ "nics": network_list(t) })),
        other => Err(format!("unknown control request {other:?}")),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn config<'a>(t: &'a Target<'_>) -> std::sync::MutexGuard<'a, DomainConfig> {
    t.config.lock().unwrap_or_else(|e| e.into_inner())
}

// --- the rules -------------------------------------------------------------

/// The disk `block-attach DOM SPEC...` describes. xl hands every argument
/// to one `xlu_disk_parse` call, which reads them in turn into one disk;
/// that is one spec joined with commas, except that `target=` swallows the
/// rest of its own argument only, so it goes last.
pub fn parse_disk_args(args: &[String]) -> Result<Disk, String> {
    let (targets, others): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.starts_with("target="));
    if targets.len() > 1 {
        return Err("config parsing error in disk specification: target respecified".into());
    }
    let spec = others
        .into_iter()
        .chain(targets)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    xl_config::disk::parse_disk(&spec)
}

/// The nic `network-attach DOM [KEY=VALUE...]` describes: each argument is
/// read into the same nic (`parse_nic_config`), which starts without a
/// device id (-1: libxl picks the next one). Warnings xl prints go to
/// `warn`.
pub fn parse_nic_args(args: &[String], warn: &mut Vec<String>) -> Result<Nic, String> {
    xl_config::vif::parse_vif(&args.join(","), -1, false, warn)
}

/// libxl's next vif device id (`libxl__device_nextid`): one more than the
/// highest in use, 0 for the first.
pub fn next_vif_devid(nics: &[Nic]) -> i64 {
    nics.iter().map(|n| n.devid).max().map_or(0, |m| m + 1)
}

/// The disk among `disks` that `arg` (a vdev name or a device number, as
/// `libxl_vdev_to_device_disk` takes it) names, with its device id.
pub fn find_disk(disks: &[Disk], arg: &str) -> Option<(usize, u32)> {
    let devid = vmm::vdev_to_devid(arg)?;
    disks
        .iter()
        .position(|d| d.vdev.as_deref().and_then(vmm::vdev_to_devid) == Some(devid))
        .map(|i| (i, devid))
}

/// How `network-detach` names a nic: with a ':' a MAC address, otherwise
/// a device id read with C's `atoi` (so garbage is id 0, as in xl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicName {
    Devid(i64),
    Mac([u8; 6]),
    /// Has a ':' but is not a MAC address: names no device.
    BadMac,
}

pub fn nic_name(arg: &str) -> NicName {
    if arg.contains(':') {
        return parse_mac(arg).map_or(NicName::BadMac, NicName::Mac);
    }
    NicName::Devid(atoi(arg))
}

/// C's `atoi`: optional blanks and sign, then digits; anything else ends it.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// `aa:bb:cc:dd:ee:ff` (hex, any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A numeric XenStore node as libxl reads it for the lists: `strtoul`, or
/// -1 when the node is missing.
fn node_num(store: &xenstore::Engine, path: &str) -> i64 {
    match store.read(path) {
        Ok(v) => atoi(String::from_utf8_lossy(&v).trim_end_matches('\0')),
        Err(_) => -1,
    }
}

fn node_str(store: &xenstore::Engine, path: &str) -> Option<String> {
    store.read(path).ok().map(|v| {
        String::from_utf8_lossy(&v)
            .trim_end_matches('\0')
            .to_owned()
    })
}

// --- block ------------------------------------------------------------------

fn block_attach(t: &Target<'_>, args: &[String]) -> Result<Value, String> {
    let disk = parse_disk_args(args)?;
    let spec = domain::disk_spec(&disk).map_err(|e| format!("{e:#}"))?;
    let devid = t
        .control
        .attach_device(vmm::PvDevice::Disk(spec))
        .map_err(|e| e.to_string())?;
    config(t).disks.push(disk);
    Ok(json!({ "devid": devid }))
}

fn block_detach(t: &Target<'_>, arg: &str, force: bool) -> Result<Value, String> {
    let not_connected = || format!("Error: Device {arg} not connected.");
    let (_, devid) = find_disk(&config(t).disks, arg).ok_or_else(not_connected)?;
    let mode = if force {
        vmm::UnplugMode::Force
    } else {
        vmm::UnplugMode::Safe
    };
    let outcome = t
        .control
        .detach_device(vmm::DeviceClass::Vbd, devid, mode)
        .map_err(|e| match e {
            vmm::HotplugError::NotFound { .. } => not_connected(),
            e => e.to_string(),
        })?;
    let mut c = config(t);
    if let Some((i, _)) = find_disk(&c.disks, arg) {
        c.disks.remove(i);
    }
    Ok(json!({ "forced": outcome == vmm::Unplugged::Forced }))
}

/// `libxl_device_disk_getinfo` for every disk the domain has (those
/// without a frontend directory are left out, as xl does).
fn block_list(t: &Target<'_>) -> Vec<Value> {
    let disks = config(t).disks.clone();
    disks
        .iter()
        .filter_map(|d| {
            let devid = vmm::vdev_to_devid(d.vdev.as_deref()?)?;
            let fe = format!("/local/domain/{}/device/vbd/{devid}", t.domid);
            let backend = node_str(t.store, &format!("{fe}/backend"))?;
            Some(json!({
                "devid": devid,
                "backend_id": node_num(t.store, &format!("{fe}/backend-id")),
                "frontend_id": t.domid,
                "state": node_num(t.store, &format!("{fe}/state")),
                "evtch": node_num(t.store, &format!("{fe}/event-channel")),
                "rref": node_num(t.store, &format!("{fe}/ring-ref")),
                "backend": backend,
            }))
        })
        .collect()
}

// --- network ----------------------------------------------------------------

fn network_attach(t: &Target<'_>, args: &[String]) -> Result<Value, String> {
    let mut warnings = Vec::new();
    let mut nic = parse_nic_args(args, &mut warnings)?;
    let (uuid, index) = {
        let c = config(t);
        if nic.devid < 0 {
            nic.devid = next_vif_devid(&c.nics);
        }
        (c.c_info.uuid.clone(), c.nics.len())
    };
    let uuid = domain::uuid_bytes(&uuid).map_err(|e| format!("{e:#}"))?;
    let mut spec = domain::vif_spec(&nic, index, &uuid);
    spec.hotplug.xenstored_path = Some(t.xenstored_path.clone());
    // libxl records the MAC it generated.
    if nic.mac == [0; 6] {
        if let Some(mac) = parse_mac(&spec.net.mac) {
            nic.mac = mac;
        }
    }
    let devid = t
        .control
        .attach_device(vmm::PvDevice::Vif(spec))
        .map_err(|e| e.to_string())?;
    config(t).nics.push(nic);
    Ok(json!({ "devid": devid, "warnings": warnings }))
}

/// The vif's MAC as its backend advertises it.
fn vif_mac(t: &Target<'_>, devid: i64) -> Option<[u8; 6]> {
    vif_mac_in(t.store, t.domid, devid)
}

/// [`vif_mac`] on `store`. The frontend's `backend` node is the guest's to
/// write, so it is followed only when it names this device's own backend
/// directory: the toolstack never reads (nor picks a device to detach by)
/// a node the guest chose.
fn vif_mac_in(store: &xenstore::Engine, domid: u32, devid: i64) -> Option<[u8; 6]> {
    let fe = format!("/local/domain/{domid}/device/vif/{devid}");
    let be = node_str(store, &format!("{fe}/backend"))?;
    let tail = be
        .strip_prefix("/local/domain/")?
        .split_once('/')
        .filter(|(b, _)| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))?
        .1;
    if tail != format!("backend/vif/{domid}/{devid}") {
        return None;
    }
    parse_mac(&node_str(store, &format!("{be}/mac"))?)
}

fn network_detach(t: &Target<'_>, arg: &str) -> Result<Value, String> {
    let unknown = || format!("Unknown device {arg}.");
    let nics = config(t).nics.clone();
    let devid = match nic_name(arg) {
        NicName::Devid(d) => nics.iter().find(|n| n.devid == d).map(|n| n.devid),
        NicName::Mac(mac) => nics
            .iter()
            .find(|n| n.mac == mac || vif_mac(t, n.devid) == Some(mac))
            .map(|n| n.devid),
        NicName::BadMac => None,
    }
    .ok_or_else(unknown)?;
    let id = u32::try_from(devid).map_err(|_| unknown())?;
    let outcome = t
        .control
        .detach_device(vmm::DeviceClass::Vif, id, vmm::UnplugMode::Auto)
        .map_err(|e| match e {
            vmm::HotplugError::NotFound { .. } => unknown(),
            e => e.to_string(),
        })?;
    config(t).nics.retain(|n| n.devid != devid);
    Ok(json!({ "forced": outcome == vmm::Unplugged::Forced }))
}

/// `libxl_device_nic_getinfo` for every nic the domain has.
fn network_list(t: &Target<'_>) -> Vec<Value> {
    let nics = config(t).nics.clone();
    nics.iter()
        .filter_map(|n| {
            let fe = format!("/local/domain/{}/device/vif/{}", t.domid, n.devid);
            let backend = node_str(t.store, &format!("{fe}/backend"))?;
            let mac = vif_mac(t, n.devid).unwrap_or(n.mac);
            Some(json!({
                "devid": n.devid,
                "backend_id": node_num(t.store, &format!("{fe}/backend-id")),
                "mac": format_mac(&mac),
                "state": node_num(t.store, &format!("{fe}/state")),
                "evtch": node_num(t.store, &format!("{fe}/event-channel")),
                "rref_tx": node_num(t.store, &format!("{fe}/tx-ring-ref")),
                "rref_rx": node_num(t.store, &format!("{fe}/rx-ring-ref")),
                "backend": backend,
            }))
        })
        .collect()
}

/// `LIBXL_MAC_FMT`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn disk_args_read_as_one_spec_with_target_last() {
        let d = parse_disk_args(&args(&["target=/img/a,b.raw", "vdev=xvdb", "access=ro"]))
            .expect("parses");
        assert_eq!(d.pdev_path.as_deref(), Some("/img/a,b.raw"));
        assert_eq!(d.vdev.as_deref(), Some("xvdb"));
        assert_eq!(d.readwrite, 0);
        let d = parse_disk_args(&args(&["/img/b.raw", "raw", "xvdc", "w"])).expect("positional");
        assert_eq!(d.vdev.as_deref(), Some("xvdc"));
        assert_eq!(d.readwrite, 1);
        let e = parse_disk_args(&args(&["/img/b.raw"])).expect_err("no vdev");
        assert!(e.contains("no vdev specified"), "{e}");
    }

    #[test]
    fn nic_args_start_without_a_devid_and_keep_an_explicit_one() {
        let mut w = Vec::new();
        let n = parse_nic_args(&args(&["mac=00:16:3e:00:00:01", "bridge=br0"]), &mut w)
            .expect("parses");
        assert_eq!(n.devid, -1);
        assert_eq!(n.mac, [0, 0x16, 0x3e, 0, 0, 1]);
        assert_eq!(n.bridge.as_deref(), Some("br0"));
        let n = parse_nic_args(&args(&["devid=7"]), &mut w).expect("parses");
        assert_eq!(n.devid, 7);
        assert!(parse_nic_args(&args(&["rate=fast"]), &mut w).is_err());
    }

    #[test]
    fn vif_devids_continue_after_the_highest() {
        assert_eq!(next_vif_devid(&[]), 0);
        let nic = |devid| Nic {
            devid,
            ..Nic::default()
        };
        assert_eq!(next_vif_devid(&[nic(0), nic(1)]), 2);
        assert_eq!(next_vif_devid(&[nic(0), nic(5), nic(2)]), 6);
    }

    #[test]
    fn a_disk_is_found_by_vdev_or_device_number() {
        let disk = |vdev: &str| {
            xl_config::disk::parse_disk(&format!("/x.raw,raw,{vdev},w")).expect("disk")
        };
        let disks = [disk("xvda"), disk("xvdb")];
        assert_eq!(find_disk(&disks, "xvdb"), Some((1, 51728)));
        assert_eq!(find_disk(&disks, "51712"), Some((0, 51712)));
        assert_eq!(find_disk(&disks, "d0p0"), Some((0, 51712)));
        assert_eq!(find_disk(&disks, "xvdc"), None);
        assert_eq!(find_disk(&disks, "floppy"), None);
    }

    #[test]
    fn a_vif_mac_is_read_only_from_its_own_backend_directory() {
        let xs = xenstore::Engine::default();
        let put = |p: &str, v: &str| xs.write(p, v.as_bytes()).expect("write");
        let own = "/local/domain/0/backend/vif/3/0";
        put(&format!("{own}/mac"), "00:16:3e:00:00:01");
        put("/local/domain/3/device/vif/0/backend", own);
        assert_eq!(vif_mac_in(&xs, 3, 0), Some([0, 0x16, 0x3e, 0, 0, 1]));
        // The guest points its frontend somewhere else: not followed.
        put("/local/domain/0/backend/vif/3/1/mac", "00:16:3e:00:00:02");
        put("/tool/decoy/mac", "00:16:3e:00:00:03");
        for decoy in [
            "/local/domain/0/backend/vif/3/1",
            "/tool/decoy",
            "/local/domain/0/backend/vif/3/0/../1",
            "/local/domain//backend/vif/3/0",
        ] {
            put("/local/domain/3/device/vif/0/backend", decoy);
            assert_eq!(vif_mac_in(&xs, 3, 0), None, "{decoy}");
        }
    }

    #[test]
    fn a_nic_is_named_by_devid_or_mac_as_xl_reads_them() {
        assert_eq!(nic_name("2"), NicName::Devid(2));
        assert_eq!(nic_name("abc"), NicName::Devid(0), "atoi");
        assert_eq!(nic_name("3x"), NicName::Devid(3));
        assert_eq!(
            nic_name("00:16:3E:0a:0b:0c"),
            NicName::Mac([0, 0x16, 0x3e, 0x0a, 0x0b, 0x0c])
        );
        assert_eq!(nic_name("00:16"), NicName::BadMac);
        assert_eq!(
            format_mac(&[0, 0x16, 0x3e, 0x0a, 0x0b, 0x0c]),
            "00:16:3e:0a:0b:0c"
        );
    }
}
