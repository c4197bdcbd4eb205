//! xkvm's own keys (xl ignores them) and PVH's `apic`.

use super::*;

/// xkvm's own keys; xl ignores unknown keys, so these never change xl's
/// output.
/// The prefix of warnings about keys xl ignores (so xl never prints them).
pub const XKVM_WARNING: &str = "xkvm: ";

/// Reads an xkvm-only number quietly (xl ignores the key, so its libxlu
/// warnings must not appear) and warns in xkvm's own words instead.
pub(super) fn xkvm_long(ctx: &mut Ctx<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
    match ctx.cfg.get_bounded_long(key, min, max, true) {
        Ok(v) => Some(v),
        Err(GetError::Absent) => None,
        Err(GetError::Invalid) => {
            let line = ctx.cfg.line_of(key).unwrap_or(0);
            let file = ctx.file();
            ctx.warn(format!(
                "{XKVM_WARNING}{file}:{line}: `{key}' is not a number from {min} to {max}; ignoring it"
            ));
            None
        }
    }
}

/// `apic` for PVH guests: xl 4.17 ignores it, xkvm honours it.
pub(super) fn pvh_apic(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Some(v) = xkvm_long(ctx, "apic", i64::MIN, i64::MAX) {
        ctx.d.b_info.apic = Some(v != 0);
    }
    Ok(())
}

/// xkvm's own keys; xl ignores unknown keys, so these never change xl's
/// output. Bad values only warn, the way xl treats its own numeric keys:
/// they must not change whether a file is accepted.
pub(super) fn xkvm_keys(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    if let Ok(v) = ctx.cfg.get_string("xen_version", true) {
        let parsed = v
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        match parsed {
            Some(ver) => ctx.d.xkvm.xen_version = ver,
            None => {
                let line = ctx.cfg.line_of("xen_version").unwrap_or(0);
                let file = ctx.file();
                ctx.warn(format!(
                    "{XKVM_WARNING}{file}:{line}: `xen_version' is not MAJOR.MINOR (like \"4.17\"); using 4.17"
                ));
            }
        }
    } else if ctx.cfg.find("xen_version").is_some() {
        let line = ctx.cfg.line_of("xen_version").unwrap_or(0);
        let file = ctx.file();
        ctx.warn(format!(
            "{XKVM_WARNING}{file}:{line}: `xen_version' must be a string; using 4.17"
        ));
    }
    if let Some(v) = xkvm_long(ctx, "xen_vapic", i64::MIN, i64::MAX) {
        ctx.d.xkvm.xen_vapic = Some(v != 0);
    }
    if let Some(v) = xkvm_long(ctx, "xen_evtchn_max_pirq", 0, i64::from(u32::MAX)) {
        ctx.d.xkvm.xen_evtchn_max_pirq = v as u32;
    }
    Ok(())
}
