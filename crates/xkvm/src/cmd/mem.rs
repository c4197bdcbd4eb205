//! `xkvm mem-set DOM SIZE` and `xkvm mem-max DOM SIZE` (xl's `xl_mem.c`):
//! SIZE as `parse_mem_size_kb` reads it (a number with an optional b, k,
//! m, g or t suffix; MiB without one). The VMM does libxl's part (see
//! `crate::domctl`): `mem-set` checks the target against
//! `memory/static-max`, moves the hypervisor limit to it and writes
//! `memory/target` for the guest's balloon driver; `mem-max` moves only
//! the hypervisor limit, never below the current target.

use std::process::ExitCode;

use serde_json::json;

use crate::rundir::RunDir;
use crate::{ctl, domctl, resolve};

#[derive(clap::Args)]
pub struct Args {
    /// Domain name or id.
    pub domain: String,
    /// Memory size: a number, in MiB unless suffixed with b, k, m, g or t.
    #[arg(allow_hyphen_values = true)]
    pub size: String,
}

/// xl's `parse_mem_size_kb`: `strtoll` then one optional unit letter;
/// `None` where xl gets -1 (no valid unit, more than one trailing
/// character, or a size that works out at exactly -1 KiB).
pub fn parse_mem_size_kb(mem: &str) -> Option<i64> {
    let (kb, rest) = strtoll(mem);
    if rest.len() > 1 {
        return None;
    }
    let kb = match rest.bytes().next().map(|b| b.to_ascii_lowercase()) {
        Some(b't') => kb.wrapping_mul(1 << 30),
        Some(b'g') => kb.wrapping_mul(1 << 20),
        None | Some(b'm') => kb.wrapping_mul(1 << 10),
        Some(b'k') => kb,
        Some(b'b') => kb >> 10,
        _ => return None,
    };
    (kb != -1).then_some(kb)
}

/// C's `strtoll(s, &end, 10)`: leading space, a sign, digits (saturating
/// as strtoll does on overflow); the rest is what `end` points at. With
/// no digits the value is 0 and the rest is the whole string.
fn strtoll(s: &str) -> (i64, &str) {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return (0, s);
    }
    let mut v: i64 = 0;
    for d in body[..digits].bytes() {
        let d = i64::from(d - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
    }
    (v, &body[digits..])
}

pub fn mem_set(a: Args) -> anyhow::Result<ExitCode> {
    set(a, "mem-set", "dynamic")
}

pub fn mem_max(a: Args) -> anyhow::Result<ExitCode> {
    set(a, "mem-max", "static")
}

fn set(a: Args, op: &str, which: &str) -> anyhow::Result<ExitCode> {
    let rd = RunDir::open()?;
    let f = resolve::find(&rd, &a.domain)?;
    let Some(kb) = parse_mem_size_kb(&a.size) else {
        eprintln!("invalid memory size: {}", a.size);
        return Ok(ExitCode::FAILURE);
    };
    match ctl::request(&f.dir, json!({"op": op, "kb": kb})) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            match domctl::refusal(&e) {
                Some((msg, _)) => eprintln!("libxl: error: Domain {}:{msg}", f.domid),
                None => eprintln!("xkvm: {e:#}"),
            }
            eprintln!(
                "cannot set domid {} {which} max memory to : {}",
                f.domid, a.size
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_xl_reads_them() {
        assert_eq!(parse_mem_size_kb("512"), Some(512 * 1024));
        assert_eq!(parse_mem_size_kb("512m"), Some(512 * 1024));
        assert_eq!(parse_mem_size_kb("512M"), Some(512 * 1024));
        assert_eq!(parse_mem_size_kb("2g"), Some(2 << 20));
        assert_eq!(parse_mem_size_kb("1t"), Some(1 << 30));
        assert_eq!(parse_mem_size_kb("4096k"), Some(4096));
        assert_eq!(parse_mem_size_kb("1048576b"), Some(1024));
        assert_eq!(parse_mem_size_kb(" 16"), Some(16 * 1024));
        // strtoll reads nothing: 0, and the whole text is the "unit".
        assert_eq!(parse_mem_size_kb(""), Some(0));
        assert_eq!(parse_mem_size_kb("m"), Some(0));
    }

    #[test]
    fn bad_sizes_are_refused_as_xl_refuses_them() {
        for bad in ["abc", "12mb", "10x", "1.5g", "-1k"] {
            assert_eq!(parse_mem_size_kb(bad), None, "{bad}");
        }
        // Negative sizes get through parsing (libxl refuses them).
        assert_eq!(parse_mem_size_kb("-5"), Some(-5 * 1024));
    }
}
