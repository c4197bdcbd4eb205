//! `cpus` / `cpus_soft`: pCPU sets as xl's `parse_cpurange` reads them
//! (`"0-3,^2"`, `"all"`, lists of such strings, one per vCPU).

use crate::cnum::{self, Base};

/// How many pCPUs a cpumap can name. xl sizes cpumaps by the host's CPU
/// count; the oracle host (and our model of it) has 8.
pub const HOST_CPUS: u32 = 8;

/// Parses one cpu-range string into the sorted set of pCPUs, or returns the
/// message xl prints.
pub fn parse_cpurange(spec: &str) -> Result<Vec<u32>, String> {
    let mut set = [false; HOST_CPUS as usize];
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        update(part, &mut set)?;
    }
    Ok((0..HOST_CPUS).filter(|&i| set[i as usize]).collect())
}

fn update(part: &str, set: &mut [bool; HOST_CPUS as usize]) -> Result<(), String> {
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
    for cpu in a..=b.min(u64::from(HOST_CPUS - 1)) {
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
