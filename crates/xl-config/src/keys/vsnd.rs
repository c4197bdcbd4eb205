//! `vsnd`: xl's `parse_vsnd_config`. Each card is a list of strings; each
//! string is split at `,` (strtok, leading spaces skipped) and its first
//! piece (`card`, `pcm` or `stream`, any case) says what the rest sets:
//! `pcm` adds a PCM, `stream` a stream to the last PCM (adding a PCM if
//! there is none).

use super::*;
use crate::syntax::store::Value as CfgValue;

pub(super) fn vsnds(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let Ok(cards) = ctx.cfg.get_list("vsnd", false) else {
        return Ok(());
    };
    let cards: Vec<CfgValue> = cards.to_vec();
    for (i, card) in cards.iter().enumerate() {
        let CfgValue::List(items) = card else {
            return Err(ctx.key_err("vsnd", "Failed to get vsnd card list: Invalid argument"));
        };
        let mut v = Vsnd {
            devid: i as i64,
            ..Vsnd::default()
        };
        for item in string_items(items) {
            item_into(&mut v, item).map_err(|m| ctx.key_err("vsnd", m))?;
        }
        ctx.d.vsnds.push(v);
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Part {
    Card,
    Pcm,
    Stream,
}

/// `parse_vsnd_item`.
fn item_into(v: &mut Vsnd, spec: &str) -> Result<(), String> {
    let mut part = None;
    for tok in spec.split(',').filter(|t| !t.is_empty()) {
        let tok = tok.trim_start_matches(' ');
        match part {
            None => part = Some(create(v, tok)?),
            Some(Part::Card) => card_param(v, tok)?,
            Some(Part::Pcm) => {
                let pcm = v.pcms.last_mut().ok_or("No pcm device")?;
                if !params(&mut pcm.params, tok)? {
                    let name = tok.strip_prefix("name=").ok_or_else(|| invalid(tok))?;
                    pcm.name = Some(name.to_string());
                }
            }
            Some(Part::Stream) => {
                let pcm = v.pcms.last_mut().ok_or("No vsnd pcm device")?;
                let stream = pcm.streams.last_mut().ok_or("No vsnd stream")?;
                if !params(&mut stream.params, tok)? {
                    stream_param(stream, tok)?;
                }
            }
        }
    }
    Ok(())
}

/// `parse_vsnd_create_item`.
fn create(v: &mut Vsnd, key: &str) -> Result<Part, String> {
    if key.eq_ignore_ascii_case("card") {
        Ok(Part::Card)
    } else if key.eq_ignore_ascii_case("pcm") {
        v.pcms.push(VsndPcm::default());
        Ok(Part::Pcm)
    } else if key.eq_ignore_ascii_case("stream") {
        if v.pcms.is_empty() {
            v.pcms.push(VsndPcm::default());
        }
        if let Some(pcm) = v.pcms.last_mut() {
            pcm.streams.push(VsndStream::default());
        }
        Ok(Part::Stream)
    } else {
        Err(format!("Invalid key: {key}"))
    }
}

fn invalid(tok: &str) -> String {
    format!("Invalid parameter: {tok}")
}

fn card_param(v: &mut Vsnd, tok: &str) -> Result<(), String> {
    if params(&mut v.params, tok)? {
        return Ok(());
    }
    let slot = if let Some(x) = tok.strip_prefix("backend=") {
        (&mut v.backend_domname, x)
    } else if let Some(x) = tok.strip_prefix("short-name=") {
        (&mut v.short_name, x)
    } else if let Some(x) = tok.strip_prefix("long-name=") {
        (&mut v.long_name, x)
    } else {
        return Err(invalid(tok));
    };
    *slot.0 = Some(slot.1.to_string());
    Ok(())
}

fn stream_param(s: &mut VsndStream, tok: &str) -> Result<(), String> {
    if let Some(x) = tok.strip_prefix("unique-id=") {
        s.unique_id = Some(x.to_string());
    } else if let Some(x) = tok.strip_prefix("type=") {
        s.type_ = Some(match x {
            _ if x.eq_ignore_ascii_case("p") => "p",
            _ if x.eq_ignore_ascii_case("c") => "c",
            _ => return Err(format!("Invalid stream type: {x}")),
        });
    } else {
        return Err(invalid(tok));
    }
    Ok(())
}

/// `parse_vsnd_params`: `Ok(false)` when `tok` is not one of them.
fn params(p: &mut VsndParams, tok: &str) -> Result<bool, String> {
    let num = |x: &str| crate::cnum::strtoul0(x).0 as u32;
    if let Some(x) = tok.strip_prefix("sample-rates=") {
        p.sample_rates = list(x, "sample-rates")?.into_iter().map(num).collect();
    } else if let Some(x) = tok.strip_prefix("sample-formats=") {
        let mut formats = Vec::new();
        for f in list(x, "sample-formats")? {
            let name = VSND_PCM_FORMATS
                .iter()
                .find(|n| n.eq_ignore_ascii_case(f))
                .ok_or_else(|| format!("Invalid pcm format: {f}"))?;
            formats.push(*name);
        }
        p.sample_formats = formats;
    } else if let Some(x) = tok.strip_prefix("channels-min=") {
        p.channels_min = num(x);
    } else if let Some(x) = tok.strip_prefix("channels-max=") {
        p.channels_max = num(x);
    } else if let Some(x) = tok.strip_prefix("buffer-size=") {
        p.buffer_size = num(x);
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// `split_string_into_string_list(x, ";")`. xl crashes on a list with no
/// item; xkvm refuses it.
fn list<'a>(x: &'a str, what: &str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = x.split(';').filter(|t| !t.is_empty()).collect();
    if items.is_empty() {
        return Err(format!("{what}: no value in \"{x}\""));
    }
    Ok(items)
}
