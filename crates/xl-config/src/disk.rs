//! Disk specifications (xl-disk-configuration(5)), as libxlu's disk lexer
//! (`libxlu_disk_l.l`) reads them: `key=value` parameters, the deprecated
//! `phy:`/`file:`/`tap:` prefixes, and the positional
//! `target,format,vdev[:devtype],access` form. Xen 4.17's lexer has no
//! `trusted`/`untrusted`/`transport=`/`grant_usage=`: those are positional
//! or unknown there, and so here.

use crate::model::{Disk, DiskBackend, DiskFormat};

impl Disk {
    fn empty() -> Disk {
        Disk {
            backend_domname: None,
            pdev_path: None,
            vdev: None,
            backend: None,
            format: None,
            script: None,
            removable: 0,
            readwrite: 1,
            is_cdrom: 0,
            direct_io_safe: false,
            discard_enable: None,
            colo_enable: None,
            colo_host: None,
            colo_port: 0,
            colo_export: None,
            active_disk: None,
            hidden_disk: None,
            specification: None,
        }
    }
}

struct Ctx<'a> {
    disk: Disk,
    spec: &'a str,
    had_depr_prefix: bool,
    access_set: bool,
    err: Option<String>,
}

impl Ctx<'_> {
    fn fail(&mut self, near: Option<&str>, msg: &str) {
        if self.err.is_none() {
            let near = near.map_or(String::new(), |n| format!(": near `{n}'"));
            self.err = Some(format!(
                "config parsing error in disk specification: {msg}{near} in `{}'",
                self.spec
            ));
        }
    }

    fn save(&mut self, what: &str, slot: fn(&mut Disk) -> &mut Option<String>, val: &str) {
        if slot(&mut self.disk)
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            self.fail(Some(val), &format!("{what} respecified"));
            return;
        }
        *slot(&mut self.disk) = Some(val.to_string());
    }

    fn set_format(&mut self, s: &str) {
        let f = match s {
            "" | "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "empty" => DiskFormat::Empty,
            "qed" => DiskFormat::Qed,
            _ => return self.fail(Some(s), "unknown value for format"),
        };
        match self.disk.format {
            Some(old) if old != f => self.fail(Some(s), "format respecified"),
            _ => self.disk.format = Some(f),
        }
    }

    fn set_backend(&mut self, s: &str) {
        let b = match s {
            "phy" => DiskBackend::Phy,
            "tap" => DiskBackend::Tap,
            "qdisk" => DiskBackend::Qdisk,
            "standalone" => DiskBackend::Standalone,
            _ => return self.fail(Some(s), "unknown value for backendtype"),
        };
        match self.disk.backend {
            Some(old) if old != b => self.fail(Some(s), "backend respecified"),
            _ => self.disk.backend = Some(b),
        }
    }

    fn set_access(&mut self, s: &str) {
        match s {
            "r" | "ro" => self.disk.readwrite = 0,
            "rw" | "w" | "" => self.disk.readwrite = 1,
            _ => self.fail(Some(s), "unknown value for access"),
        }
    }

    /// `<vdev>:<devtype>`; false when there is no colon.
    fn vdev_and_devtype(&mut self, s: &str) -> bool {
        let Some(colon) = s.rfind(':') else {
            return false;
        };
        let (vdev, devtype) = (&s[..colon], &s[colon + 1..]);
        self.save("vdev", |d| &mut d.vdev, vdev);
        match devtype {
            "cdrom" => self.disk.is_cdrom = 1,
            "disk" => self.disk.is_cdrom = 0,
            _ => self.fail(Some(devtype), "unknown deprecated type"),
        }
        true
    }

    fn positional(&mut self, tok: &str) -> bool {
        if self.err.is_some() {
            return true;
        }
        if self.disk.pdev_path.is_none() {
            self.save("target", |d| &mut d.pdev_path, tok);
        } else if !self.had_depr_prefix && self.disk.format.is_none() {
            if self.disk.pdev_path.as_deref() == Some("") && self.vdev_and_devtype(tok) {
                self.disk.format = Some(DiskFormat::Empty);
            } else {
                self.set_format(tok);
            }
        } else if self.disk.vdev.is_none() {
            if !self.vdev_and_devtype(tok) {
                self.save("vdev", |d| &mut d.vdev, tok);
            }
        } else if !self.access_set {
            self.access_set = true;
            self.set_access(tok);
        } else {
            self.fail(Some(tok), "too many positional parameters");
            return false;
        }
        true
    }
}

/// Deprecated prefixes that only mark the spec as old-style.
const PLAIN_PREFIXES: [&str; 7] = ["tapdisk", "tap", "tap2", "aio", "ioemu", "file", "phy"];

/// Parses one disk spec; the error is xl's message.
pub fn parse_disk(spec: &str) -> Result<Disk, String> {
    let mut c = Ctx {
        disk: Disk::empty(),
        spec,
        had_depr_prefix: false,
        access_set: false,
        err: None,
    };
    let mut rest = spec;
    while !rest.is_empty() && c.err.is_none() {
        // Whitespace before a parameter is skipped (not trailing blanks).
        let trimmed = rest.trim_start_matches([' ', '\t', '\n']);
        if trimmed.is_empty() {
            // Trailing blanks are a positional parameter of blanks.
            c.positional(rest);
            break;
        }
        rest = trimmed;
        let (tok, next) = match rest.find(',') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if let Some(v) = rest.strip_prefix("target=") {
            // target= eats the rest of the string (only a final comma goes).
            let v = v.strip_suffix(',').unwrap_or(v);
            c.save("target", |d| &mut d.pdev_path, v);
            break;
        }
        if let Some((key, val)) = tok.split_once('=') {
            keyed(&mut c, key, val, tok);
            rest = next;
            continue;
        }
        match tok {
            "cdrom" => c.disk.is_cdrom = 1,
            "direct-io-safe" => c.disk.direct_io_safe = true,
            "discard" => c.disk.discard_enable = Some(true),
            "no-discard" => c.disk.discard_enable = Some(false),
            "colo" => c.disk.colo_enable = Some(true),
            "no-colo" => c.disk.colo_enable = Some(false),
            _ => {
                if let Some(consumed) = prefix(&mut c, rest) {
                    rest = &rest[consumed..];
                    continue;
                }
                if c.err.is_some() {
                    break;
                }
                if !c.positional(tok) {
                    break;
                }
            }
        }
        rest = next;
    }
    if let Some(e) = c.err {
        return Err(e);
    }
    let mut d = c.disk;
    if d.format.is_none() {
        d.format = Some(DiskFormat::Raw);
    }
    if d.is_cdrom != 0 {
        d.removable = 1;
        d.readwrite = 0;
        if d.pdev_path.as_deref().is_none_or(str::is_empty) {
            d.format = Some(DiskFormat::Empty);
        }
    }
    let err = |m: &str| format!("config parsing error in disk specification: {m} in `{spec}'");
    if d.vdev.is_none() {
        return Err(err("no vdev specified"));
    }
    if d.pdev_path.is_none() && d.removable == 0 {
        return Err(err("no target specified (and device not removable)"));
    }
    Ok(d)
}

fn keyed(c: &mut Ctx<'_>, key: &str, val: &str, tok: &str) {
    match key {
        "format" => c.set_format(val),
        "devtype" => match val {
            "cdrom" => c.disk.is_cdrom = 1,
            "disk" => c.disk.is_cdrom = 0,
            _ => c.fail(Some(tok), "unknown value for type"),
        },
        "access" => c.set_access(val),
        "backend" => c.save("backend", |d| &mut d.backend_domname, val),
        "backendtype" => c.set_backend(val),
        "specification" => {
            let spec = match val {
                "xen" => "xen",
                "virtio" => "virtio",
                _ => return c.fail(Some(val), "unknown value for specification"),
            };
            match c.disk.specification {
                Some(old) if old != spec => c.fail(Some(val), "specification respecified"),
                _ => c.disk.specification = Some(spec),
            }
        }
        "vdev" => c.save("vdev", |d| &mut d.vdev, val),
        "script" => c.save("script", |d| &mut d.script, val),
        "colo-host" => c.save("colo-host", |d| &mut d.colo_host, val),
        "colo-port" => match val.trim().parse::<i64>() {
            Ok(p) if p != 0 => c.disk.colo_port = p,
            _ => c.fail(Some(val), "unknown value for colo_port"),
        },
        "colo-export" => c.save("colo-export", |d| &mut d.colo_export, val),
        "active-disk" => c.save("active-disk", |d| &mut d.active_disk, val),
        "hidden-disk" => c.save("hidden-disk", |d| &mut d.hidden_disk, val),
        _ => {
            let known_shape = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if known_shape {
                c.fail(Some(tok), "unknown parameter");
            } else {
                c.fail(Some(tok), "bad disk syntax");
            }
        }
    }
}

/// Handles a deprecated `prefix:` at the start of `rest`; returns how many
/// bytes it consumed, or None when `rest` has no such prefix.
fn prefix(c: &mut Ctx<'_>, rest: &str) -> Option<usize> {
    let colon = rest.find(':')?;
    let name = &rest[..colon];
    if name.is_empty()
        || !name.as_bytes()[0].is_ascii_lowercase()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    let after = &rest[colon + 1..];
    if matches!(name, "raw" | "qcow" | "qcow2" | "vhd") {
        c.had_depr_prefix = true;
        c.set_format(name);
        return Some(colon + 1);
    }
    if matches!(name, "iscsi" | "nbd" | "enbd" | "drbd") {
        c.had_depr_prefix = true;
        c.save("script", |d| &mut d.script, &format!("block-{name}"));
        return Some(colon + 1);
    }
    if PLAIN_PREFIXES.contains(&name) {
        c.had_depr_prefix = true;
        return Some(colon + 1);
    }
    // `vdev:cdrom` style tokens (a lower-case word, a colon, then a letter
    // or digit) are positional, not prefixes.
    if after
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    c.fail(Some(rest), "unknown deprecated disk prefix");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_with_phy_prefix_skips_format() {
        let d = parse_disk("phy:/dev/vg/d,xvda,w").expect("valid");
        assert_eq!(d.pdev_path.as_deref(), Some("/dev/vg/d"));
        assert_eq!(d.vdev.as_deref(), Some("xvda"));
        assert_eq!(d.readwrite, 1);
        assert_eq!(d.format, Some(DiskFormat::Raw));
    }

    #[test]
    fn empty_cdrom_becomes_removable_and_empty() {
        let d = parse_disk(",,hdc:cdrom,r").expect("valid");
        assert_eq!(d.format, Some(DiskFormat::Empty));
        assert_eq!((d.removable, d.is_cdrom, d.readwrite), (1, 1, 0));
    }

    #[test]
    fn target_eats_the_rest() {
        let d = parse_disk("vdev=xvdb,target=/a,b:c").expect("valid");
        assert_eq!(d.pdev_path.as_deref(), Some("/a,b:c"));
    }

    #[test]
    fn missing_vdev_is_an_error() {
        assert!(parse_disk("/dev/sdb").is_err());
        assert!(parse_disk("/dev/sdb,bogus,xvda").is_err());
    }
}
