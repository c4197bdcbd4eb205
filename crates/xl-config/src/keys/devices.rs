//! Device lists: `disk`, `p9`, `vtpm`, `pvcalls`, `channel`, `vif`, `vfb`,
//! `vkb`.

use super::*;
use crate::cnum::{atoi, strtoul0};

pub(super) fn pvcalls(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "pvcalls") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let mut p = PvCallsIf {
            devid: i as i64,
            backend_domname: None,
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, v)) = tok.split_once('=') else {
                break;
            };
            if k != "backend" {
                return Err(ctx.key_err("pvcalls", format!("Unknown string `{k}' in pvcalls spec")));
            }
            p.backend_domname = Some(v.to_string());
        }
        ctx.d.pvcallsifs.push(p);
    }
    Ok(())
}

pub(super) fn disks(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(specs) = list_strings(ctx, "disk") {
        for spec in specs {
            let d = crate::disk::parse_disk(&spec).map_err(|m| ctx.key_err("disk", m))?;
            ctx.d.disks.push(d);
        }
    }
    Ok(())
}

pub(super) fn p9s(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "p9") else {
        return Ok(());
    };
    for spec in specs {
        let (mut sm, mut path, mut tag, mut backend) = (None, None, None, None);
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, v)) = tok.split_once('=') else {
                break;
            };
            let v = Some(v.to_string());
            match k {
                "security_model" => sm = v,
                "path" => path = v,
                "tag" => tag = v,
                "backend" => backend = v,
                _ => return Err(ctx.key_err("p9", format!("Unknown string `{k}' in 9pfs spec"))),
            }
        }
        let (Some(sm), Some(path), Some(tag)) = (sm, path, tag) else {
            return Err(ctx.key_err("p9", "9pfs spec missing required field!"));
        };
        ctx.d.p9s.push(P9 {
            backend_domname: backend,
            tag,
            path,
            security_model: sm,
        });
    }
    Ok(())
}

pub(super) fn vtpms(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vtpm") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let mut v = Vtpm {
            devid: i as i64,
            ..Vtpm::default()
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, val)) = tok.split_once('=') else {
                break;
            };
            match k {
                "backend" => v.backend_domname = Some(val.to_string()),
                "uuid" => {
                    v.uuid = Some(crate::uuid::parse(val).ok_or_else(|| {
                        ctx.key_err("vtpm", format!("Failed to parse vtpm UUID: {val}"))
                    })?)
                }
                _ => return Err(ctx.key_err("vtpm", format!("Unknown string `{k}' in vtpm spec"))),
            }
        }
        if v.backend_domname.is_none() {
            return Err(ctx.key_err("vtpm", "vtpm spec missing required backend field!"));
        }
        ctx.d.vtpms.push(v);
    }
    Ok(())
}

pub(super) fn channels(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "channel") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let (mut backend, mut name, mut path, mut conn) = (None, None, None, None);
        for pair in spec.split(',').filter(|p| !p.is_empty()) {
            let mut it = pair.split('=').filter(|p| !p.is_empty());
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                return Err(ctx.key_err(
                    "channel",
                    format!("failed to parse channel configuration: {pair}"),
                ));
            };
            let (k, v) = (k.trim(), v.trim().to_string());
            match k {
                "backend" => backend = Some(v),
                "name" => name = Some(v),
                "path" => path = Some(v),
                "connection" => {
                    conn = Some(match v.as_str() {
                        "pty" => "pty",
                        "socket" => "socket",
                        _ => return Err(ctx.invalid("channel connection", &v, &["pty", "socket"])),
                    })
                }
                _ => ctx.warn(format!("unknown channel parameter '{k}', ignoring")),
            }
        }
        let connection = match conn {
            None => return Err(ctx.key_err("channel", "channel has unknown 'connection'")),
            Some("socket") => ChannelConnection::Socket {
                path: path.ok_or_else(|| {
                    ctx.key_err("channel", "channel connection 'socket' requires path=..")
                })?,
            },
            Some(_) => ChannelConnection::Pty,
        };
        ctx.d.channels.push(Channel {
            devid: i as i64,
            backend_domname: backend,
            name,
            connection,
        });
    }
    Ok(())
}

pub(super) fn vifs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(specs) = list_strings(ctx, "vif") {
        for (i, spec) in specs.into_iter().enumerate() {
            let mut w = Vec::new();
            let nic = crate::vif::parse_vif(&spec, i as i64, ctx.cfg.errno_is_erange(), &mut w);
            ctx.warn_all(w);
            ctx.d.nics.push(nic.map_err(|m| ctx.key_err("vif", m))?);
        }
    }
    if ctx.cfg.get_list("vif2", false).is_ok() {
        ctx.warn("WARNING: vif2: netchannel2 is deprecated and not supported by xl");
    }
    Ok(())
}

pub(super) fn vfbs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vfb") else {
        return Ok(());
    };
    for (i, spec) in specs.into_iter().enumerate() {
        let mut vfb = Vfb {
            devid: i as i64,
            ..Vfb::default()
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            let Some((k, v)) = tok.split_once('=') else {
                break;
            };
            let s = Some(v.to_string());
            match k {
                "vnc" => vfb.vnc.enable = Some(atoi(v) != 0),
                "vnclisten" => vfb.vnc.listen = s,
                "vncpasswd" => vfb.vnc.passwd = s,
                "vncdisplay" => vfb.vnc.display = atoi(v).into(),
                "vncunused" => vfb.vnc.findunused = Some(atoi(v) != 0),
                "keymap" => vfb.keymap = s,
                "sdl" => vfb.sdl.enable = Some(atoi(v) != 0),
                "opengl" => vfb.sdl.opengl = Some(atoi(v) != 0),
                "display" => vfb.sdl.display = s,
                "xauthority" => vfb.sdl.xauthority = s,
                _ => {}
            }
        }
        ctx.d.vfbs.push(vfb);
        ctx.d.vkbs.push(Vkb {
            devid: i as i64,
            ..Vkb::default()
        });
    }
    Ok(())
}

pub(super) fn vkbs(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vkb") else {
        return Ok(());
    };
    for spec in specs {
        let mut vkb = Vkb {
            devid: ctx.d.vkbs.len() as i64,
            ..Vkb::default()
        };
        for tok in spec.split(',').filter(|t| !t.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            match tok.split_once('=') {
                Some(("backend", v)) => vkb.backend_domname = Some(v.to_string()),
                Some(("backend-type", v)) => {
                    let t = match v.to_ascii_lowercase().as_str() {
                        "qemu" => "qemu",
                        "linux" => "linux",
                        _ => return Err(ctx.invalid("vkb backend-type", v, &["qemu", "linux"])),
                    };
                    vkb.backend_type = Some(t.to_string());
                }
                Some(("unique-id", v)) => vkb.unique_id = Some(v.to_string()),
                Some(("feature-disable-keyboard", v)) => {
                    vkb.feature_disable_keyboard = strtoul0(v).0 != 0
                }
                Some(("feature-disable-pointer", v)) => {
                    vkb.feature_disable_pointer = strtoul0(v).0 != 0
                }
                Some(("feature-abs-pointer", v)) => vkb.feature_abs_pointer = strtoul0(v).0 != 0,
                Some(("feature-raw-pointer", v)) => vkb.feature_raw_pointer = strtoul0(v).0 != 0,
                Some(("feature-multi-touch", v)) => vkb.feature_multi_touch = strtoul0(v).0 != 0,
                Some(("multi-touch-width", v)) => vkb.multi_touch_width = strtoul0(v).0 as u32,
                Some(("multi-touch-height", v)) => vkb.multi_touch_height = strtoul0(v).0 as u32,
                Some(("multi-touch-num-contacts", v)) => {
                    vkb.multi_touch_num_contacts = strtoul0(v).0 as u32
                }
                Some(("width", v)) => vkb.width = strtoul0(v).0 as u32,
                Some(("height", v)) => vkb.height = strtoul0(v).0 as u32,
                _ => {
                    return Err(ctx.key_err("vkb", format!("Unknown string \"{tok}\" in vkb spec")));
                }
            }
        }
        if vkb.backend_type.is_none() {
            return Err(ctx.key_err("vkb", "backend-type should be set in vkb spec"));
        }
        let mt_size = vkb.multi_touch_height != 0
            || vkb.multi_touch_width != 0
            || vkb.multi_touch_num_contacts != 0;
        if mt_size {
            vkb.feature_multi_touch = true;
        }
        if vkb.feature_multi_touch && !mt_size {
            return Err(ctx.key_err(
                "vkb",
                "multi-touch-width, multi-touch-height, multi-touch-num-contacts should be set for multi touch in vkb spec",
            ));
        }
        ctx.d.vkbs.push(vkb);
    }
    Ok(())
}
