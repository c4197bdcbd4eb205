//! `cpus` / `cpus_soft`: pCPU sets as xl's `parse_cpurange` reads them
//! (`"0-3,^2"`, `"all"`, lists of such strings, one per vCPU).

use crate::cnum::{self, Base};

/// How many pCPUs a cpumap can name. xl sizes cpumaps by the host's CPU
/// count; the oracle host (and our model of it, which `create -n`
/// answers for) has 8.
pub const HOST_CPUS: u32 = 8;

/// Most pCPUs [`real_host_cpus`] admits (Xen's `NR_CPUS` default).
const MAX_HOST_CPUS: u32 = 4096;

/// Parses one cpu-range string into the sorted set of pCPUs of the
/// modelled host, or returns the message xl prints.
pub fn parse_cpurange(spec: &str) -> Result<Vec<u32>, String> {
    parse_cpurange_for(spec, HOST_CPUS)
}

/// [`parse_cpurange`] on a host with `ncpus` pCPUs: what the VMM pins
/// vCPUs to, on the host it runs on (`"all"` there is every CPU of that
/// host, not of the modelled one).
pub fn parse_cpurange_for(spec: &str, ncpus: u32) -> Result<Vec<u32>, String> {
    let mut set = vec![false; ncpus.clamp(1, MAX_HOST_CPUS) as usize];
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        update(part, &mut set)?;
    }
    Ok((0..set.len() as u32).filter(|&i| set[i as usize]).collect())
}

/// The pCPUs of the host this runs on, as libxl counts them for cpumaps
/// (`max_cpu_id + 1`: the highest possible CPU, from
/// `/sys/devices/system/cpu/possible`).
pub fn real_host_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .split(',')
                .filter_map(|r| r.rsplit('-').next()?.trim().parse::<u32>().ok())
                .max()
        })
        .map(|max| max.saturating_add(1))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u32)
        })
        .unwrap_or(1)
        .clamp(1, MAX_HOST_CPUS)
}

fn update(part: &str, set: &mut [bool]) -> Result<(), String> {
    let (is_not, rest) = match part.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, part),
    };
    if rest.starts_with("node:") || rest.starts_with("nodes:") {
        return Err(format!("NUMA node ranges are not supported: {part}."));
    }
    if rest == "all" {
        if is_not {
            return Err("Can't combine \"^\" and \"all\".".into());
        }
        set.iter_mut().for_each(|b| *b = true);
        return Ok(());
    }
    let (a, b) = parse_range(rest).ok_or_else(|| format!("Invalid pcpu range: {rest}."))?;
    // Bits past the host's CPU count are dropped, as libxl_bitmap_set does.
    let last = set.len() as u64 - 1;
    for cpu in a..=b.min(last) {
        set[cpu as usize] = !is_not;
    }
    Ok(())
}

/// xl's `parse_range`: `N` or `N-M`, each `strtoul(.., 10)` (so blanks,
/// a sign and negation are accepted; `ULONG_MAX` is refused).
fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, rest) = strtoul(s)?;
    let (b, rest) = match rest.strip_prefix('-') {
        Some(r) => {
            let (b, rest) = strtoul(r)?;
            if b < a {
                return None;
            }
            (b, rest)
        }
        None => (a, rest),
    };
    rest.is_empty().then_some((a, b))
}

/// One `strtoul(.., 10)` of `parse_range`: the value and the rest, `None`
/// for no number or `ULONG_MAX`.
fn strtoul(s: &str) -> Option<(u64, &str)> {
    let p = cnum::strtoul(s, Base::Dec);
    (p.len > 0 && p.value != u64::MAX).then(|| (p.value, &s[p.len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_exclusions_combine_left_to_right() {
        assert_eq!(parse_cpurange("0-3,^2"), Ok(vec![0, 1, 3]));
        assert_eq!(parse_cpurange("all"), Ok((0..8).collect()));
        assert_eq!(parse_cpurange("6-20"), Ok(vec![6, 7]));
    }

    #[test]
    fn a_real_host_keeps_every_cpu_it_has() {
        assert_eq!(parse_cpurange_for("all", 64), Ok((0..64).collect()));
        assert_eq!(parse_cpurange_for("6-20", 64), Ok((6..=20).collect()));
        assert_eq!(parse_cpurange_for("1-3", 2), Ok(vec![1]));
        assert!(real_host_cpus() >= 1);
    }

    #[test]
    fn junk_and_reversed_ranges_are_refused() {
        assert!(parse_cpurange("3-1").is_err());
        assert!(parse_cpurange("x").is_err());
        assert!(parse_cpurange("^all").is_err());
        assert!(parse_cpurange("allx").is_err());
        assert!(parse_cpurange("18446744073709551615").is_err());
    }

    #[test]
    fn strtoul_leniency_is_xls() {
        // A negative number wraps to a huge pCPU that no cpumap holds.
        assert_eq!(parse_cpurange("-2"), Ok(vec![]));
        assert_eq!(parse_cpurange("all,^-2"), Ok((0..8).collect()));
        assert_eq!(parse_cpurange("\n3"), Ok(vec![3]));
        assert_eq!(parse_cpurange("3-+4"), Ok(vec![3, 4]));
    }
}
