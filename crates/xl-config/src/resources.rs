//! Machine resources handed to a guest: `ioports`, `irqs` and `iomem`
//! list items, read as xl reads them (hex port ranges, decimal IRQs,
//! `START,NUM[@GFN]` hex page ranges).

use crate::cnum::{self, Base};
use crate::model::{IomemRange, IoportRange};

/// `ioports` item `FIRST[-LAST]` (hex). `Ok((range, warning))`: xl warns and
/// goes on about trailing junk after a single port.
pub fn ioport(s: &str) -> Result<(IoportRange, Option<String>), String> {
    let bad = || format!("xl: Invalid argument parsing ioport: {s}");
    let (start, rest) = strtoul16(s).ok_or_else(bad)?;
    if start >= u64::from(u32::MAX) {
        return Err(format!("xl: ioport {start:x} too big"));
    }
    let start = start as u32;
    let mut end = start;
    let mut warning = None;
    if let Some(r) = rest.strip_prefix('-') {
        let (e, tail) = strtoul16(r).ok_or_else(bad)?;
        // xl compares start with the old end here, so a reversed range
        // passes and its size wraps around.
        if !tail.is_empty() {
            return Err(bad());
        }
        if e >= u64::from(u32::MAX) {
            return Err(format!("xl: ioport {e:x} too big"));
        }
        end = e as u32;
    } else if !rest.is_empty() {
        warning = Some(bad());
    }
    Ok((
        IoportRange {
            first: start,
            number: end.wrapping_sub(start).wrapping_add(1),
        },
        warning,
    ))
}

/// `irqs` item: a decimal IRQ number (`strtoul(.., 10)`, nothing after it).
pub fn irq(s: &str) -> Result<u32, String> {
    let p = cnum::strtoul(s, Base::Dec);
    if p.len == 0 || p.len != s.len() {
        return Err(format!("xl: Invalid argument parsing irq: {s}"));
    }
    if p.value >= u64::from(u32::MAX) {
        return Err(format!("xl: irq {:x} too big", p.value));
    }
    Ok(p.value as u32)
}

/// `iomem` item `START,NUM[@GFN]` (hex), as xl's `sscanf`.
pub fn iomem(s: &str) -> Result<IomemRange, String> {
    let bad = || format!("xl: Invalid argument parsing iomem: {s}");
    let (start, rest) = scan_hex(s).ok_or_else(bad)?;
    let rest = rest.strip_prefix(',').ok_or_else(bad)?;
    let (number, rest) = scan_hex(rest).ok_or_else(bad)?;
    let (gfn, rest) = match rest.strip_prefix('@').and_then(scan_hex) {
        Some((g, r)) => (Some(g), r),
        None => (None, rest),
    };
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(IomemRange { start, number, gfn })
}

/// `strtoul(s, &end, 16)`: the value and the rest, `None` for no number.
fn strtoul16(s: &str) -> Option<(u64, &str)> {
    let p = cnum::strtoul(s, Base::Hex);
    (p.len > 0).then(|| (p.value, &s[p.len..]))
}

/// `%lx` in xl's `sscanf`: the value and the rest.
fn scan_hex(s: &str) -> Option<(u64, &str)> {
    cnum::scanf_hex(s).map(|(v, n)| (v, &s[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_are_hex_and_inclusive() {
        let (r, w) = ioport("3f8-3ff").expect("valid");
        assert_eq!((r.first, r.number, w), (0x3f8, 8, None));
        assert!(ioport("zz").is_err());
    }

    #[test]
    fn iomem_takes_an_optional_gfn() {
        let m = iomem("fe000,2@80000").expect("valid");
        assert_eq!((m.start, m.number, m.gfn), (0xfe000, 2, Some(0x80000)));
        assert_eq!(iomem("a0,1").expect("valid").gfn, None);
        assert!(iomem("a0").is_err());
        assert!(iomem("a0,1@").is_err());
    }

    #[test]
    fn irqs_are_decimal() {
        assert_eq!(irq("17"), Ok(17));
        assert!(irq("0x11").is_err());
        assert_eq!(irq("\n017"), Ok(17));
        assert_eq!(irq("-1"), Err("xl: irq ffffffffffffffff too big".into()));
        assert_eq!(irq("4294967295"), Err("xl: irq ffffffff too big".into()));
    }

    #[test]
    fn negative_and_bare_prefix_hex_read_as_c_does() {
        assert_eq!(
            ioport("-3f8").map(|_| ()),
            Err("xl: ioport fffffffffffffc08 too big".into())
        );
        let m = iomem("-1,2").expect("sscanf negates");
        assert_eq!((m.start, m.number), (u64::MAX, 2));
        assert_eq!(iomem("0x,2").expect("bare 0x is 0").start, 0);
        assert!(iomem("0xg,2").is_err());
        assert!(iomem("fe000 ,2").is_err());
    }
}
