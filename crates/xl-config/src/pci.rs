//! PCI passthrough specifications (`pci = [ "BDF[@VSLOT][,KEY=VAL...]" ]`,
//! xl-pci-configuration(5)) and the `rdm` reservation string, as libxlu's
//! `xlu_pci_parse_spec_string` and `xlu_rdm_parse` read them.

use crate::cnum::{self, atoi};
use crate::keys::NO_NEWLINE;
use crate::model::{PciDevice, RdmPolicy};

/// `LIBXL_PCI_FUNC_ALL`: `BB:DD.*` passes every function through.
pub const FUNC_ALL: u32 = !0;

/// glibc `sscanf("%x")` into an `unsigned int`: the low 32 bits of the
/// value and the bytes consumed.
fn scan_hex(s: &[u8]) -> Option<(u64, usize)> {
    let s = std::str::from_utf8(s).ok()?;
    cnum::scanf_hex(s).map(|(v, n)| (u64::from(v as u32), n))
}

/// `[DDDD:]BB:DD.F` or `.*`; fills the device and returns the bytes used.
fn parse_bdf(pci: &mut PciDevice, s: &[u8]) -> Option<usize> {
    let colons = s
        .iter()
        .take_while(|b| b.is_ascii_hexdigit() || **b == b':')
        .filter(|b| **b == b':')
        .count();
    let mut p = 0usize;
    let field = |p: &mut usize, sep: u8| -> Option<u64> {
        let (v, n) = scan_hex(&s[*p..])?;
        *p += n;
        if s.get(*p) != Some(&sep) {
            return None;
        }
        *p += 1;
        Some(v)
    };
    let (domain, bus, dev) = match colons {
        1 => (0, field(&mut p, b':')?, field(&mut p, b'.')?),
        2 => (
            field(&mut p, b':')?,
            field(&mut p, b':')?,
            field(&mut p, b'.')?,
        ),
        _ => return None,
    };
    if domain > 0xffff || bus > 0xff || dev > 0x1f {
        return None;
    }
    let func = if s.get(p) == Some(&b'*') {
        pci.vfunc_mask = FUNC_ALL;
        p += 1;
        0
    } else {
        let (f, n) = scan_hex(&s[p..])?;
        if f > 7 {
            return None;
        }
        pci.vfunc_mask = 1;
        p += n;
        f
    };
    pci.domain = domain as u32;
    pci.bus = bus as u8;
    pci.dev = dev as u8;
    pci.func = func as u8;
    Some(p)
}

fn parse_vslot(s: &[u8]) -> Option<(u32, usize)> {
    let (v, n) = scan_hex(s)?;
    (v <= 0x1f).then_some(((v as u32) << 3, n))
}

fn rdm_policy(s: &str) -> Option<RdmPolicy> {
    match s.to_ascii_lowercase().as_str() {
        "strict" => Some(RdmPolicy::Strict),
        "relaxed" => Some(RdmPolicy::Relaxed),
        "invalid" => Some(RdmPolicy::Invalid),
        _ => None,
    }
}

/// A `pci` item libxlu refuses (xl then says "unable to parse
/// PCI_SPEC_STRING" and exits with libxlu's error code negated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidSpec {
    /// libxlu's own checks: `ERROR_INVAL`.
    Syntax,
    /// An `rdm_policy` name libxl's enum lookup does not know: that lookup
    /// returns `ERROR_FAIL`, which libxlu passes on.
    UnknownRdmPolicy,
}

impl InvalidSpec {
    /// The status xl exits with.
    pub fn xl_exit(self) -> crate::XlExit {
        match self {
            InvalidSpec::Syntax => crate::XlExit::ErrorInval,
            InvalidSpec::UnknownRdmPolicy => crate::XlExit::ErrorFail,
        }
    }
}

/// One `pci` list item. `pci` arrives with the global `pci_*` defaults
/// already filled in. Messages libxlu prints go to `warn`; `Err` means xl
/// refuses the file.
pub fn parse_spec(
    pci: &mut PciDevice,
    spec: &str,
    warn: &mut Vec<String>,
) -> Result<(), InvalidSpec> {
    let s = spec.as_bytes();
    let mut p = 0usize;
    let mut bdf = false;
    let mut name = false;
    if let Some(n) = parse_bdf(pci, s) {
        bdf = true;
        p = n;
        if s.get(p) == Some(&b'@') {
            let (v, n) = parse_vslot(&s[p + 1..]).ok_or(InvalidSpec::Syntax)?;
            pci.vdevfn = v;
            p += 1 + n;
        }
        match s.get(p) {
            Some(b',') => p += 1,
            None => {}
            Some(_) => return Err(InvalidSpec::Syntax),
        }
    }
    while p < s.len() {
        let rest = &spec[p..];
        let eq = rest.find('=').ok_or(InvalidSpec::Syntax)?;
        let key = &rest[..eq];
        let after = &rest[eq + 1..];
        let (val, used) = match after.find(',') {
            Some(c) => (&after[..c], eq + 1 + c + 1),
            None => (after, rest.len()),
        };
        p += used;
        match key {
            "bdf" => {
                parse_bdf(pci, val.as_bytes()).ok_or(InvalidSpec::Syntax)?;
                bdf = true;
            }
            "vslot" => pci.vdevfn = parse_vslot(val.as_bytes()).ok_or(InvalidSpec::Syntax)?.0,
            "permissive" => pci.permissive = atoi(val) != 0,
            "msitranslate" => pci.msitranslate = atoi(val) != 0,
            "seize" => pci.seize = atoi(val) != 0,
            "power_mgmt" => pci.power_mgmt = atoi(val) != 0,
            "rdm_policy" => match rdm_policy(val) {
                Some(v) => pci.rdm_policy = v,
                None => {
                    warn.push(format!("Unknown RDM policy: {val}{NO_NEWLINE}"));
                    return Err(InvalidSpec::UnknownRdmPolicy);
                }
            },
            "name" => {
                name = true;
                pci.name = Some(val.to_string());
            }
            _ => {
                warn.push(format!("Unknown PCI_SPEC_STRING option: {key}{NO_NEWLINE}"));
                return Err(InvalidSpec::Syntax);
            }
        }
    }
    if bdf == name {
        return Err(InvalidSpec::Syntax);
    }
    Ok(())
}

/// What `rdm = "..."` leaves in the build info: xl copies a strategy and a
/// policy from an uninitialised local, and only when libxlu's parser
/// "succeeds" — which, through an inverted test, it does only when no valid
/// `policy=` is given. The policy it copies is then indeterminate
/// (`RdmPolicy::Indeterminate`, `null` in xl's JSON).
/// Returns `Some(true)` when `strategy=host` was given (else the strategy,
/// too, is indeterminate).
pub fn parse_rdm(s: &str, warn: &mut Vec<String>) -> Option<bool> {
    let mut host = false;
    let mut rest = s;
    loop {
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        let after = &rest[eq + 1..];
        let (val, next) = match after.find(',') {
            Some(c) => (&after[..c], Some(&after[c + 1..])),
            None => (after, None),
        };
        match key {
            "strategy" => {
                if val != "host" {
                    warn.push(format!("Unknown RDM strategy option: {val}{NO_NEWLINE}"));
                    return None;
                }
                host = true;
            }
            "policy" => {
                if rdm_policy(val).is_some() {
                    return None;
                }
                warn.push(format!("Unknown RDM policy: {val}{NO_NEWLINE}"));
            }
            _ => {
                warn.push(format!("Unknown RDM state option: {key}{NO_NEWLINE}"));
                return None;
            }
        }
        match next {
            Some(n) => rest = n,
            None => return Some(host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Option<PciDevice> {
        let mut p = PciDevice::default();
        parse_spec(&mut p, s, &mut Vec::new()).ok().map(|()| p)
    }

    #[test]
    fn bdf_with_domain_vslot_and_options() {
        let p = spec("0000:01:1f.7@3,permissive=1,rdm_policy=relaxed").expect("valid");
        assert_eq!(
            (p.domain, p.bus, p.dev, p.func, p.vdevfn),
            (0, 1, 0x1f, 7, 3 << 3)
        );
        assert!(p.permissive);
        assert_eq!(p.rdm_policy, RdmPolicy::Relaxed);
        assert_eq!(spec("01:00.*").expect("valid").vfunc_mask, FUNC_ALL);
    }

    #[test]
    fn exactly_one_of_bdf_and_name() {
        assert!(spec("name=gpu").is_some());
        assert!(spec("01:00.0,name=gpu").is_none());
        assert!(spec("01:20.0").is_none());
        assert!(spec(" 01:00.0").is_none());
    }

    #[test]
    fn rdm_applies_only_without_a_valid_policy() {
        let mut w = Vec::new();
        assert_eq!(parse_rdm("strategy=host", &mut w), Some(true));
        assert_eq!(parse_rdm("strategy=host,policy=relaxed", &mut w), None);
        assert_eq!(parse_rdm("strategy=host,policy=bogus", &mut w), Some(true));
        assert_eq!(parse_rdm("strategy=x", &mut w), None);
    }
}
