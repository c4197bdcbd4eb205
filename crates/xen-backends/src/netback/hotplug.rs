//! `script=`: the vif hotplug script, run the way libxl runs it
//! (`libxl_linux.c`, `libxl__hotplug_nic` + `get_hotplug_env`), and the
//! fallback when no script can run: attaching the TAP to `bridge=`
//! ourselves.
//!
//! libxl runs `<script> online type_if=vif` once the backend exists and
//! `<script> offline type_if=vif` when it goes away, with the environment
//! `script=<script>`, `XENBUS_TYPE=vif`,
//! `XENBUS_PATH=backend/vif/<domid>/<devid>`, `XENBUS_BASE_PATH=backend`,
//! `netdev=<gatewaydev or empty>` and `vif=<interface>`. A relative
//! `script=` is taken from `/etc/xen/scripts`, and the backend's `script`
//! node holds the absolute path.
//!
//! Xen's own scripts (`vif-bridge`, ...) read and write XenStore with
//! `xenstore-read`/`-write`; they can only work when they reach the VMM's
//! store, so the VMM passes its socket as `XENSTORED_PATH`. Without that
//! socket the default script is not run (it would fail), and a `bridge=`
//! is applied with `ip link set <tap> master <bridge>` instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::xenbus::DevicePaths;

/// Where libxl looks for a relative `script=`.
pub const SCRIPT_DIR: &str = "/etc/xen/scripts";
/// xl's default vif script (`vif.default.script` in `xl.conf`).
pub const DEFAULT_SCRIPT: &str = "vif-bridge";
/// libxl gives a hotplug script this long (`LIBXL_HOTPLUG_TIMEOUT`).
pub const TIMEOUT: Duration = Duration::from_secs(40);

/// How the VMM wants a vif's host side set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetHotplug {
    /// `script=` as written in xl.cfg (`None`: xl's default, `vif-bridge`).
    pub script: Option<String>,
    /// The VMM's XenStore socket, handed to scripts as `XENSTORED_PATH`.
    pub xenstored_path: Option<PathBuf>,
    /// `gatewaydev=` (the script's `netdev`).
    pub gatewaydev: Option<String>,
}

/// `online` (device added) or `offline` (device removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Online,
    Offline,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Online => "online",
            Action::Offline => "offline",
        }
    }
}

/// What will be done for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run this script (absolute path) online and offline.
    Script(PathBuf),
    /// No script: attach the TAP to this bridge ourselves.
    Bridge(String),
    /// No script and no bridge: the TAP is left as it is.
    Nothing,
}

/// `script=` as libxl resolves it (`libxl__abs_path` against the script
/// directory).
pub fn script_path(script: &str) -> PathBuf {
    let p = Path::new(script);
    if p.is_absolute() {
        p.to_owned()
    } else {
        Path::new(SCRIPT_DIR).join(p)
    }
}

/// Decides between running a script and attaching to the bridge ourselves.
/// An explicit `script=` must exist (libxl fails the device otherwise); the
/// default script runs only when installed and the store is reachable.
pub fn plan(h: &NetHotplug, bridge: Option<&str>) -> Result<Plan, String> {
    let fallback = || {
        bridge
            .map(|b| Plan::Bridge(b.to_owned()))
            .unwrap_or(Plan::Nothing)
    };
    match &h.script {
        Some(s) => {
            let p = script_path(s);
            if p.is_file() {
                Ok(Plan::Script(p))
            } else {
                Err(format!(
                    "script={s}: {} does not exist (give an absolute path or install it in {SCRIPT_DIR})",
                    p.display()
                ))
            }
        }
        None => {
            let p = script_path(DEFAULT_SCRIPT);
            if p.is_file() && h.xenstored_path.is_some() {
                Ok(Plan::Script(p))
            } else {
                Ok(fallback())
            }
        }
    }
}

/// The environment libxl gives a vif script.
pub fn script_env(
    script: &Path,
    paths: &DevicePaths,
    ifname: &str,
    h: &NetHotplug,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("script".to_owned(), script.display().to_string()),
        ("XENBUS_TYPE".to_owned(), "vif".to_owned()),
        (
            "XENBUS_PATH".to_owned(),
            format!("backend/vif/{}/{}", paths.frontend_domid, paths.devid),
        ),
        ("XENBUS_BASE_PATH".to_owned(), "backend".to_owned()),
        (
            "netdev".to_owned(),
            h.gatewaydev.clone().unwrap_or_default(),
        ),
        ("vif".to_owned(), ifname.to_owned()),
    ];
    if let Some(s) = &h.xenstored_path {
        env.push(("XENSTORED_PATH".to_owned(), s.display().to_string()));
    }
    env
}

/// Runs `script <action> type_if=vif` and waits for it (at most
/// [`TIMEOUT`], then it is killed). A non-zero exit is an error carrying
/// the script's stderr.
pub fn run_script(script: &Path, action: Action, env: &[(String, String)]) -> Result<(), String> {
    let mut child = Command::new(script)
        .args([action.as_str(), "type_if=vif"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let end = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {}: timed out after {} s",
                    script.display(),
                    action.as_str(),
                    TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("{}: {e}", script.display())),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut err);
    }
    Err(format!(
        "{} {} failed ({status}): {}",
        script.display(),
        action.as_str(),
        err.trim()
    ))
}

/// `ip link set dev <ifname> master <bridge>` and up: what `vif-bridge`
/// does for a vif, done without the script.
pub fn attach_to_bridge(ifname: &str, bridge: &str) -> Result<(), String> {
    for args in [
        vec!["link", "set", "dev", ifname, "master", bridge],
        vec!["link", "set", "dev", ifname, "up"],
    ] {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| format!("running ip (iproute2) to attach {ifname} to {bridge}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::xenbus::DeviceKind;

    #[test]
    fn relative_scripts_come_from_etc_xen_scripts() {
        assert_eq!(
            script_path("vif-nat"),
            PathBuf::from("/etc/xen/scripts/vif-nat")
        );
        assert_eq!(script_path("/opt/my-vif"), PathBuf::from("/opt/my-vif"));
    }

    #[test]
    fn a_missing_explicit_script_is_an_error() {
        let h = NetHotplug {
            script: Some("/nonexistent/xkvm-vif".into()),
            ..Default::default()
        };
        assert!(plan(&h, Some("br0"))
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn without_a_store_socket_the_bridge_is_attached_directly() {
        let h = NetHotplug::default();
        assert_eq!(plan(&h, Some("br0")), Ok(Plan::Bridge("br0".into())));
        assert_eq!(plan(&h, None), Ok(Plan::Nothing));
    }

    #[test]
    fn the_environment_is_libxls() {
        let paths = DevicePaths::new(DeviceKind::Vif, 3, 0, 1);
        let h = NetHotplug {
            xenstored_path: Some("/run/xkvm/d/xenstored.sock".into()),
            ..Default::default()
        };
        let env = script_env(
            Path::new("/etc/xen/scripts/vif-bridge"),
            &paths,
            "vif3.1",
            &h,
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("script"), Some("/etc/xen/scripts/vif-bridge"));
        assert_eq!(get("XENBUS_TYPE"), Some("vif"));
        assert_eq!(get("XENBUS_PATH"), Some("backend/vif/3/1"));
        assert_eq!(get("XENBUS_BASE_PATH"), Some("backend"));
        assert_eq!(get("netdev"), Some(""));
        assert_eq!(get("vif"), Some("vif3.1"));
        assert_eq!(get("XENSTORED_PATH"), Some("/run/xkvm/d/xenstored.sock"));
    }
}
