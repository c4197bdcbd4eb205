//! `usbctrl` and `usbdev`: xl's `parse_usbctrl_config` /
//! `parse_usbdev_config`. Each list item is split at `,` with `strtok`
//! (empty pieces vanish, an empty item leaves a default device), leading
//! blanks are skipped, and every piece must be `KEY=VALUE` with a known key.

use super::*;

pub(super) fn usbctrls(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "usbctrl") else {
        return Ok(());
    };
    for (i, spec) in specs.iter().enumerate() {
        let mut u = UsbCtrl {
            devid: i as i64,
            ..UsbCtrl::default()
        };
        for tok in pieces(spec) {
            if let Some(v) = tok.strip_prefix("type=") {
                u.type_ = UsbCtrlType::NAMES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(v))
                    .map(|(_, t)| *t)
                    .ok_or_else(|| {
                        ctx.key_err("usbctrl", format!("Invalid usb controller type '{v}'"))
                    })?;
            } else if let Some(v) = tok.strip_prefix("version=") {
                u.version = crate::cnum::atoi(v);
            } else if let Some(v) = tok.strip_prefix("ports=") {
                u.ports = crate::cnum::atoi(v);
            } else {
                return Err(
                    ctx.key_err("usbctrl", format!("Unknown string `{tok}' in usbctrl spec"))
                );
            }
        }
        ctx.d.usbctrls.push(u);
    }
    Ok(())
}

pub(super) fn usbdevs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "usbdev") else {
        return Ok(());
    };
    for spec in &specs {
        let mut u = UsbDev::default();
        for tok in pieces(spec) {
            if let Some(v) = tok.strip_prefix("type=") {
                // xl's message prints getopt's `optarg` (always NULL here)
                // instead of the value; ours names the value.
                if !v.eq_ignore_ascii_case("hostdev") {
                    return Err(ctx.key_err("usbdev", format!("Invalid usb device type: {v}")));
                }
                u.hostdev = true;
            } else if let Some(v) = tok.strip_prefix("hostbus=") {
                u.hostbus = crate::cnum::strtoul0(v).0 as u8;
            } else if let Some(v) = tok.strip_prefix("hostaddr=") {
                u.hostaddr = crate::cnum::strtoul0(v).0 as u8;
            } else if let Some(v) = tok.strip_prefix("controller=") {
                u.ctrl = crate::cnum::atoi(v).into();
            } else if let Some(v) = tok.strip_prefix("port=") {
                u.port = crate::cnum::atoi(v);
            } else {
                return Err(ctx.key_err("usbdev", format!("Unknown string `{tok}' in usbdev spec")));
            }
        }
        ctx.d.usbdevs.push(u);
    }
    Ok(())
}

/// `strtok(spec, ",")` with each piece's leading spaces skipped.
fn pieces(spec: &str) -> impl Iterator<Item = &str> {
    spec.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_start_matches(' '))
}
