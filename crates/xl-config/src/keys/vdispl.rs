//! `vdispl`: xl's `parse_vdispl_config`. Items split at `,` (strtok),
//! `connectors=ID:WxH;ID:WxH` split at `;` and then at `:` (strtok again,
//! so empty pieces vanish), resolutions read with `sscanf("%ux%u")`.

use super::*;

pub(super) fn vdispls(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Some(specs) = list_strings(ctx, "vdispl") else {
        return Ok(());
    };
    for (i, spec) in specs.iter().enumerate() {
        let mut v = Vdispl {
            devid: i as i64,
            ..Vdispl::default()
        };
        for tok in spec.split(',').filter(|p| !p.is_empty()) {
            let tok = tok.trim_start_matches(' ');
            if let Some(val) = tok.strip_prefix("backend=") {
                v.backend_domname = Some(val.to_string());
            } else if let Some(val) = tok.strip_prefix("be-alloc=") {
                v.be_alloc = crate::cnum::strtoul0(val).0 != 0;
            } else if let Some(val) = tok.strip_prefix("connectors=") {
                v.connectors = connectors(ctx, val)?;
            } else {
                return Err(
                    ctx.key_err("vdispl", format!("Unknown string \"{tok}\" in vdispl spec"))
                );
            }
        }
        if v.connectors.is_empty() {
            return Err(ctx.key_err("vdispl", "At least one connector should be specified."));
        }
        ctx.d.vdispls.push(v);
    }
    Ok(())
}

fn connectors(ctx: &mut Ctx<'_>, val: &str) -> Result<Vec<Connector>, Error> {
    let list: Vec<&str> = val.split(';').filter(|p| !p.is_empty()).collect();
    if list.is_empty() {
        // xl dereferences a NULL list item here and crashes.
        return Err(ctx.key_err("vdispl", format!("no connector in \"connectors={val}\"")));
    }
    let mut out = vec![Connector::default(); list.len()];
    for (c, spec) in out.iter_mut().zip(&list) {
        let mut parts = spec.split(':').filter(|p| !p.is_empty());
        let (Some(id), Some(res)) = (parts.next(), parts.next()) else {
            // xl reads an uninitialised pointer here and crashes.
            return Err(ctx.key_err(
                "vdispl",
                format!("connector \"{spec}\" is not ID:WIDTHxHEIGHT"),
            ));
        };
        c.unique_id = Some(id.to_string());
        match resolution(res) {
            (2, w, h) => (c.width, c.height) = (w, h),
            (0, ..) => {
                // sscanf matched nothing: xl complains, yet its function
                // returns that 0 as success, leaving this and the later
                // connectors unset.
                ctx.warn("Can't parse connector resolution");
                return Ok(out);
            }
            _ => return Err(ctx.key_err("vdispl", "Can't parse connector resolution")),
        }
    }
    Ok(out)
}

/// `sscanf(s, "%ux%u", &w, &h)`: the count it returns (-1 for EOF) and the
/// values.
fn resolution(s: &str) -> (i32, u32, u32) {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
    if s.trim_start_matches(is_space).is_empty() {
        return (-1, 0, 0);
    }
    let (w, n) = crate::cnum::strtoul10(s);
    if n == 0 {
        return (0, 0, 0);
    }
    let Some(rest) = s[n..].strip_prefix('x') else {
        return (1, w as u32, 0);
    };
    let (h, n) = crate::cnum::strtoul10(rest);
    if n == 0 {
        return (1, w as u32, 0);
    }
    (2, w as u32, h as u32)
}
