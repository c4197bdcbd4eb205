//! Network interface specifications (xl-network-configuration(5)):
//! comma-separated `key=value` items, as xl's `parse_nic_config` reads them.

use crate::cnum::{self, Base};
use crate::model::{Nic, NicType};

/// Libxl field names of the COLO string keys, in IDL order, with the xl.cfg
/// key that sets each (the same spelling except `forwarddev`).
pub const COLO_KEYS: [(&str, &str); 9] = [
    ("forwarddev", "coloft_forwarddev"),
    ("colo_sock_mirror_id", "colo_sock_mirror_id"),
    ("colo_sock_mirror_ip", "colo_sock_mirror_ip"),
    ("colo_sock_mirror_port", "colo_sock_mirror_port"),
    ("colo_sock_compare_sec_in_id", "colo_sock_compare_sec_in_id"),
    ("colo_sock_compare_sec_in_ip", "colo_sock_compare_sec_in_ip"),
    (
        "colo_sock_compare_sec_in_port",
        "colo_sock_compare_sec_in_port",
    ),
    ("colo_sock_redirector0_id", "colo_sock_redirector0_id"),
    ("colo_sock_redirector0_ip", "colo_sock_redirector0_ip"),
];

/// Parses one vif spec into the nic `devid`; warnings xl prints go to
/// `warn`; the error is xl's message (xl then exits).
/// `stale_erange` is C's errno state when xl gets here (see
/// [`crate::syntax::Store::errno_is_erange`]).
pub fn parse_vif(
    spec: &str,
    devid: i64,
    stale_erange: bool,
    warn: &mut Vec<String>,
) -> Result<Nic, String> {
    let mut nic = Nic {
        devid,
        ..Nic::default()
    };
    for tok in spec.split(',').filter(|t| !t.is_empty()) {
        let tok = tok.trim_start_matches(' ');
        // xl prints a bad item's message and goes on (it ignores
        // parse_nic_config's result); only a bad `rate` makes it exit.
        if let Err(m) = item(&mut nic, tok, stale_erange, warn) {
            if tok.starts_with("rate=") {
                return Err(m);
            }
            warn.push(m);
        }
    }
    Ok(nic)
}

fn item(
    nic: &mut Nic,
    tok: &str,
    stale_erange: bool,
    warn: &mut Vec<String>,
) -> Result<(), String> {
    // xl matches `key=` prefixes with strncmp over the key's own length, so
    // `type=`, `mac=`... need their `=`; unknown items are silently ignored.
    let Some((key, val)) = tok.split_once('=') else {
        return Ok(());
    };
    let s = Some(val.to_string());
    match key {
        "type" => {
            nic.nictype = Some(match val {
                "vif" => NicType::Vif,
                "ioemu" => NicType::VifIoemu,
                _ => return Err("Invalid parameter `type'.".into()),
            })
        }
        "mac" => parse_mac(val, &mut nic.mac).ok_or("Invalid parameter `mac'.")?,
        "bridge" => nic.bridge = s,
        "netdev" => {
            warn.push("the netdev parameter is deprecated, please use gatewaydev instead".into());
            nic.gatewaydev = s;
        }
        "gatewaydev" => nic.gatewaydev = s,
        "ip" => nic.ip = s,
        "script" => nic.script = s,
        "backend" => nic.backend_domname = s,
        "vifname" => nic.ifname = s,
        "model" => nic.model = s,
        "rate" => {
            let (bytes, usecs) = parse_rate(val, stale_erange)?;
            nic.rate_bytes_per_interval = bytes;
            nic.rate_interval_usecs = usecs;
        }
        "mtu" => {
            nic.mtu = val
                .parse::<i64>()
                .map_err(|_| format!("ERROR: Invalid value \"{val}\" for \"mtu\"."))?
        }
        "accel" => warn.push("the accel parameter for vifs is currently not supported".into()),
        "devid" => {
            nic.devid = val
                .parse::<i64>()
                .map_err(|_| format!("ERROR: Invalid value \"{val}\" for \"devid\"."))?
        }
        _ => {
            if let Some((_, field)) = COLO_KEYS.iter().find(|(k, _)| *k == key) {
                nic.extra.retain(|(f, _)| f != field);
                nic.extra.push((field, val.to_string()));
            } else {
                warn.push(format!("unrecognized vif option '{key}'"));
            }
        }
    }
    Ok(())
}

/// xl's MAC parsing: six `strtoul(.., 16)` fields stored in an `unsigned
/// int` (so only the low 32 bits are checked against 255), any one
/// separator character between them. Like xl, fields before a bad one stay
/// written.
fn parse_mac(s: &str, mac: &mut [u8; 6]) -> Option<()> {
    let mut p = 0usize;
    for slot in mac.iter_mut() {
        let rest = s.get(p..)?;
        let n = cnum::strtoul(rest, Base::Hex);
        let v = n.value as u32;
        if n.len == 0 || v > 255 {
            return None;
        }
        *slot = v as u8;
        p += n.len + 1;
    }
    Some(())
}

/// libxlu's `xlu_vif_parse_rate`: `RATE[@INTERVAL]` into bytes per interval
/// and the interval in microseconds.
pub fn parse_rate(rate: &str, stale_erange: bool) -> Result<(u64, u32), String> {
    let err = |m: &str, what: &str| format!("config parsing error in vif: {m} in `{what}'");
    let (bytes, interval) = match rate.split_once('@') {
        Some((b, i)) => (b, Some(i)),
        None => (rate, None),
    };
    if bytes.is_empty() {
        return Err(err("no rate specified", rate));
    }
    let bytes_per_sec = rate_bytes_per_sec(bytes, stale_erange).map_err(|m| err(m, bytes))?;
    let usecs = match interval {
        Some(i) => interval_usecs(i, stale_erange).map_err(|m| err(m, i))?,
        None => 50_000,
    };
    if usecs != 0 && bytes_per_sec > u64::MAX / u64::from(usecs) {
        return Err(err("rate overflow", rate));
    }
    Ok((bytes_per_sec * u64::from(usecs) / 1_000_000, usecs))
}

/// `strtoull(s, &end, 0)`: the value, the rest, and ERANGE.
fn strtoull0(s: &str) -> (u64, &str, bool) {
    let p = cnum::strtoul(s, Base::Auto);
    (p.value, &s[p.len..], p.erange)
}

fn matches_bytes_re(s: &str) -> bool {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let t = &s[n..];
    let t = t.strip_prefix(['G', 'M', 'K']).unwrap_or(t);
    n > 0 && (t == "b/s" || t == "B/s")
}

/// `^[0-9]+[GMK]?[Bb]/s$`, then C's unit handling, quirks included.
fn rate_bytes_per_sec(s: &str, stale_erange: bool) -> Result<u64, &'static str> {
    if !matches_bytes_re(s) {
        return Err("invalid rate");
    }
    let (v, rest, erange) = strtoull0(s);
    if v == 0 || v > u64::from(u32::MAX) || erange || stale_erange {
        return Err("rate overflow");
    }
    let r = rest.as_bytes();
    let mult = match r.first() {
        Some(b'G') => 1_000_000_000,
        Some(b'M') => 1_000_000,
        Some(b'K') => 1_000,
        _ => 1,
    };
    let v = v * mult;
    let bits = r.first() == Some(&b'b') || r.get(1) == Some(&b'b');
    Ok(if bits { v / 8 } else { v })
}

/// `^[0-9]+[mu]?s?$`; bare numbers and `s` are seconds.
fn interval_usecs(s: &str, stale_erange: bool) -> Result<u32, &'static str> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let t = &s[n..];
    let t = t.strip_prefix(['m', 'u']).unwrap_or(t);
    if n == 0 || !(t.is_empty() || t == "s") {
        return Err("invalid replenishment interval");
    }
    let (v, rest, erange) = strtoull0(s);
    if v == 0 || v > u64::from(u32::MAX) || erange || stale_erange {
        return Err("replenishment interval overflow");
    }
    let v = match rest.as_bytes().first() {
        Some(b's') | None => v * 1_000_000,
        Some(b'm') => v * 1_000,
        _ => v,
    };
    u32::try_from(v).map_err(|_| "replenishment interval overflow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_in_megabits_uses_a_50ms_interval() {
        assert_eq!(parse_rate("10Mb/s", false), Ok((62_500, 50_000)));
        assert_eq!(parse_rate("1MB/s@20ms", false), Ok((20_000, 20_000)));
        assert!(
            parse_rate("1MB/s", true).is_err(),
            "a stale ERANGE fails it, as in xl"
        );
        assert!(parse_rate("10Mbit", false).is_err());
    }

    #[test]
    fn mac_and_bridge_are_read() {
        let mut w = Vec::new();
        let n = parse_vif("mac=00:16:3e:00:00:01,bridge=br0", 0, false, &mut w).expect("valid");
        assert_eq!(n.mac, [0, 0x16, 0x3e, 0, 0, 1]);
        assert_eq!(n.bridge.as_deref(), Some("br0"));
        assert!(parse_vif("mac=zz", 0, false, &mut w).is_ok());
        assert!(w.iter().any(|m| m.contains("mac")));
        assert!(parse_vif("rate=fast", 0, false, &mut w).is_err());
    }

    #[test]
    fn mac_fields_are_strtoul_base_16() {
        let mut mac = [0u8; 6];
        assert_eq!(parse_mac("0x1:16:3e:01:02:03", &mut mac), Some(()));
        assert_eq!(mac, [1, 0x16, 0x3e, 1, 2, 3]);
        assert_eq!(parse_mac("+a: 16:3e:01:02:3x", &mut mac), Some(()));
        assert_eq!(mac, [0xa, 0x16, 0x3e, 1, 2, 3]);
        // Stored in an unsigned int: only the low 32 bits are range-checked.
        assert_eq!(parse_mac("1000000ff:0:0:0:0:0", &mut mac), Some(()));
        assert_eq!(mac[0], 0xff);
        assert_eq!(parse_mac("-1:0:0:0:0:0", &mut mac), None);
        assert_eq!(parse_mac("100:0:0:0:0:0", &mut mac), None);
    }
}
