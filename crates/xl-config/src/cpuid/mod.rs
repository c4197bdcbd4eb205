//! The `cpuid` key: libxl's CPUID policy list (`libxl_cpuid_policy_list`)
//! and its two spellings, as Xen 4.17.5's libxl reads them:
//!
//! - `cpuid = "host,NAME=VALUE,..."`: `libxl_cpuid_parse_config` per item,
//!   names from libxl's own table ([`FLAGS`]) or Xen's featureset names
//!   ([`features::FEATURES`]), some of which are MSR_ARCH_CAPS bits;
//! - `cpuid = [ "LEAF[,SUBLEAF]:eax=<32 chars>,..." ]`: xend's form,
//!   `libxl_cpuid_parse_config_xend`.
//!
//! Register policies are 32 characters, most significant bit first, each
//! `0`, `1`, `x` (host), `k` (keep) or `s` (same as host, deprecated);
//! MSR policies are 64.

mod features;

/// One CPUID leaf's policy (`struct xc_xend_cpuid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuidLeaf {
    pub leaf: u32,
    /// `None` is libxl's `XEN_CPUID_INPUT_UNUSED`.
    pub subleaf: Option<u32>,
    /// eax, ebx, ecx, edx: `None` leaves the register alone.
    pub regs: [Option<String>; 4],
}

/// One MSR's policy (`struct xc_msr`): 64 characters, bit 63 first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrPolicy {
    pub index: u32,
    pub policy: String,
}

/// `b_info.cpuid`. Empty (no leaves, no MSRs) means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidPolicy {
    pub leaves: Vec<CpuidLeaf>,
    pub msrs: Vec<MsrPolicy>,
}

const UNUSED: u32 = u32::MAX;
const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// A named field of libxl's own table (`struct cpuid_flags`).
struct Flag {
    name: &'static str,
    leaf: u32,
    subleaf: u32,
    reg: usize,
    bit: u32,
    len: u32,
}

const fn f(name: &'static str, leaf: u32, subleaf: u32, reg: usize, bit: u32, len: u32) -> Flag {
    Flag {
        name,
        leaf,
        subleaf,
        reg,
        bit,
        len,
    }
}

const NA: u32 = UNUSED;

/// libxl's table, searched before the featureset names.
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    f("maxleaf", 0x0, NA, EAX, 0, 32),
    f("stepping", 0x1, NA, EAX, 0, 4),
    f("model", 0x1, NA, EAX, 4, 8),
    f("family", 0x1, NA, EAX, 8, 8),
    f("brandid", 0x1, NA, EBX, 0, 8),
    f("clflush", 0x1, NA, EBX, 8, 8),
    f("proccount", 0x1, NA, EBX, 16, 8),
    f("localapicid", 0x1, NA, EBX, 24, 8),
    f("est", 0x1, NA, ECX, 7, 1),
    f("cntxid", 0x1, NA, ECX, 10, 1),
    f("cmpxchg16", 0x1, NA, ECX, 13, 1),
    f("sse4_1", 0x1, NA, ECX, 19, 1),
    f("sse4.1", 0x1, NA, ECX, 19, 1),
    f("sse4_2", 0x1, NA, ECX, 20, 1),
    f("sse4.2", 0x1, NA, ECX, 20, 1),
    f("aes", 0x1, NA, ECX, 25, 1),
    f("cmpxchg8", 0x1, NA, EDX, 8, 1),
    f("sysenter", 0x1, NA, EDX, 11, 1),
    f("psn", 0x1, NA, EDX, 18, 1),
    f("clfsh", 0x1, NA, EDX, 19, 1),
    f("tm", 0x1, NA, EDX, 29, 1),
    f("ia64", 0x1, NA, EDX, 30, 1),
    f("arat", 0x6, NA, EAX, 2, 1),
    f("tsc_adjust", 0x7, 0, EBX, 1, 1),
    f("cmt", 0x7, 0, EBX, 12, 1),
    f("lahfsahf", 0x8000_0001, NA, ECX, 0, 1),
    f("cmplegacy", 0x8000_0001, NA, ECX, 1, 1),
    f("altmovcr8", 0x8000_0001, NA, ECX, 4, 1),
    f("nodeid", 0x8000_0001, NA, ECX, 19, 1),
    f("perfctr_core", 0x8000_0001, NA, ECX, 23, 1),
    f("perfctr_nb", 0x8000_0001, NA, ECX, 24, 1),
    f("procpkg", 0x4, 0, EAX, 26, 6),
    f("invtsc", 0x8000_0007, NA, EDX, 8, 1),
    f("ppin", 0x8000_0008, NA, EBX, 23, 1),
    f("nc", 0x8000_0008, NA, ECX, 0, 8),
    f("apicidsize", 0x8000_0008, NA, ECX, 12, 4),
    f("svm_npt", 0x8000_000a, NA, EDX, 0, 1),
    f("svm_lbrv", 0x8000_000a, NA, EDX, 1, 1),
    f("svm_nrips", 0x8000_000a, NA, EDX, 3, 1),
    f("svm_tscrate", 0x8000_000a, NA, EDX, 4, 1),
    f("svm_vmcbclean", 0x8000_000a, NA, EDX, 5, 1),
    f("svm_decode", 0x8000_000a, NA, EDX, 7, 1),
    f("svm_pausefilt", 0x8000_000a, NA, EDX, 10, 1),
    f("lfence+", 0x8000_0021, NA, EAX, 2, 1),
    f("maxhvleaf", 0x4000_0000, NA, EAX, 0, 8),
];

/// Where each featureset word lives (libxl's `feature_to_policy`).
enum Word {
    Cpuid(u32, u32, usize),
    Msr(u32, bool),
}

#[rustfmt::skip]
const WORDS: [Word; 19] = [
    Word::Cpuid(0x1, NA, EDX),
    Word::Cpuid(0x1, NA, ECX),
    Word::Cpuid(0x8000_0001, NA, EDX),
    Word::Cpuid(0x8000_0001, NA, ECX),
    Word::Cpuid(0xd, 1, EAX),
    Word::Cpuid(0x7, 0, EBX),
    Word::Cpuid(0x7, 0, ECX),
    Word::Cpuid(0x8000_0007, NA, EDX),
    Word::Cpuid(0x8000_0008, NA, EBX),
    Word::Cpuid(0x7, 0, EDX),
    Word::Cpuid(0x7, 1, EAX),
    Word::Cpuid(0x8000_0021, NA, EAX),
    Word::Cpuid(0x7, 1, EBX),
    Word::Cpuid(0x7, 2, EDX),
    Word::Cpuid(0x7, 1, ECX),
    Word::Cpuid(0x7, 1, EDX),
    // MSR_ARCH_CAPS, low and high half.
    Word::Msr(0x10a, false),
    Word::Msr(0x10a, true),
    Word::Cpuid(0x8000_0021, NA, ECX),
];

/// Why `libxl_cpuid_parse_config` refused an item: its return value.
/// xl prints these and goes on.
pub fn flag_error_text(code: u32) -> &'static str {
    match code {
        1 => "missing \"=\" in key=value",
        2 => "unknown CPUID flag name",
        3 => "illegal CPUID value (must be: [0|1|x|k|s])",
        _ => "unknown error",
    }
}

/// Why `libxl_cpuid_parse_config_xend` refused a line.
pub fn xend_error_text(code: u32) -> &'static str {
    match code {
        1 => "illegal leaf number",
        2 => "illegal subleaf number",
        3 => "missing colon",
        4 => "invalid register name (must be e[abcd]x)",
        5 => "policy string must be exactly 32 characters long",
        _ => "unknown error",
    }
}

const ALL_X: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

impl CpuidPolicy {
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty() && self.msrs.is_empty()
    }

    /// `cpuid_find_match`: the entry for a leaf, made if missing. libxl's
    /// list ends at the first entry whose leaf is `XEN_CPUID_INPUT_UNUSED`,
    /// so an entry for leaf 0xffffffff is written past the end and never
    /// seen: it gets a scratch entry here.
    fn entry(&mut self, leaf: u32, subleaf: u32) -> Option<&mut CpuidLeaf> {
        if leaf == UNUSED {
            return None;
        }
        let subleaf = (subleaf != UNUSED).then_some(subleaf);
        let i = match self
            .leaves
            .iter()
            .position(|l| l.leaf == leaf && l.subleaf == subleaf)
        {
            Some(i) => i,
            None => {
                self.leaves.push(CpuidLeaf {
                    leaf,
                    subleaf,
                    regs: Default::default(),
                });
                self.leaves.len() - 1
            }
        };
        self.leaves.get_mut(i)
    }

    fn msr(&mut self, index: u32) -> &mut MsrPolicy {
        let i = match self.msrs.iter().position(|m| m.index == index) {
            Some(i) => i,
            None => {
                self.msrs.push(MsrPolicy {
                    index,
                    policy: "x".repeat(64),
                });
                self.msrs.len() - 1
            }
        };
        &mut self.msrs[i]
    }

    /// `libxl_cpuid_parse_config`: one `NAME=VALUE` item of the string form.
    /// `Err` carries libxl's error number.
    pub fn parse_flag(&mut self, item: &str) -> Result<(), u32> {
        let (name, val) = item.split_once('=').ok_or(1u32)?;
        if let Some(flag) = FLAGS.iter().find(|f| f.name == name) {
            return self.add_field(flag, val);
        }
        let i = features::FEATURES
            .binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
            .map_err(|_| 2u32)?;
        let (fname, bit) = features::FEATURES[i];
        match WORDS.get((bit / 32) as usize) {
            Some(Word::Cpuid(leaf, subleaf, reg)) => {
                let flag = Flag {
                    name: fname,
                    leaf: *leaf,
                    subleaf: *subleaf,
                    reg: *reg,
                    bit: bit % 32,
                    len: 1,
                };
                self.add_field(&flag, val)
            }
            Some(Word::Msr(index, high)) => {
                self.add_msr_bit(*index, bit % 32 + if *high { 32 } else { 0 }, val)
            }
            None => Err(2),
        }
    }

    /// `cpuid_add`.
    fn add_field(&mut self, flag: &Flag, val: &str) -> Result<(), u32> {
        let (num, len) = crate::cnum::strtoul0(val);
        let n = flag.len as usize;
        let mut flags: Vec<u8> = if len != 0 {
            (0..flag.len)
                .rev()
                .map(|i| b"01"[((num >> i) & 1) as usize])
                .collect()
        } else {
            match val.as_bytes().first() {
                Some(c @ (b'x' | b'k' | b's')) => vec![*c; n],
                _ => {
                    // libxl has already added the (empty) entry.
                    self.entry(flag.leaf, flag.subleaf);
                    return Err(3);
                }
            }
        };
        let Some(entry) = self.entry(flag.leaf, flag.subleaf) else {
            return Ok(());
        };
        let mut reg = entry.regs[flag.reg]
            .take()
            .unwrap_or_else(|| ALL_X.to_string())
            .into_bytes();
        let bit = flag.bit as usize;
        match flag.name {
            // Family and model are split across two fields of leaf 1 eax.
            "family" => {
                if num < 16 {
                    reg[28 - bit..32 - bit].copy_from_slice(&flags[4..8]);
                    reg[4..12].copy_from_slice(b"00000000");
                } else {
                    let mut num = num - 15;
                    reg[28 - bit..32 - bit].copy_from_slice(b"1111");
                    for i in 0..7 {
                        flags[7 - i] = b"01"[(num & 1) as usize];
                        num >>= 1;
                    }
                    reg[4..12].copy_from_slice(&flags[..8]);
                }
            }
            "model" => {
                reg[12..16].copy_from_slice(&flags[..4]);
                reg[28 - bit..32 - bit].copy_from_slice(&flags[4..8]);
            }
            _ => reg[32 - n - bit..32 - bit].copy_from_slice(&flags),
        }
        entry.regs[flag.reg] = Some(String::from_utf8_lossy(&reg).into_owned());
        Ok(())
    }

    /// `msr_add`: only one character, and `s` is stored as `k`.
    fn add_msr_bit(&mut self, index: u32, bit: u32, val: &str) -> Result<(), u32> {
        let entry = self.msr(index);
        let c = match val.as_bytes() {
            [c @ (b'0' | b'1' | b'x' | b'k')] => *c,
            [b's'] => b'k',
            _ => return Err(3),
        };
        let mut p = std::mem::take(&mut entry.policy).into_bytes();
        p[63 - bit as usize] = c;
        entry.policy = String::from_utf8_lossy(&p).into_owned();
        Ok(())
    }

    /// `libxl_cpuid_parse_config_xend`: one `LEAF[,SUBLEAF]:eXx=...` line.
    pub fn parse_xend(&mut self, line: &str) -> Result<(), u32> {
        let (leaf, n) = crate::cnum::strtoul0(line);
        if n == 0 {
            return Err(1);
        }
        let mut rest = &line[n..];
        let mut subleaf = UNUSED;
        if let Some(r) = rest.strip_prefix(',') {
            let (s, n) = crate::cnum::strtoul0(r);
            if n == 0 {
                return Err(2);
            }
            subleaf = s as u32;
            rest = &r[n..];
        }
        let mut s = rest.strip_prefix(':').ok_or(3u32)?;
        // Found (or made) before the registers are read: a bad register
        // still leaves the leaf in the list.
        let _ = self.entry(leaf as u32, subleaf);
        let mut regs: Vec<(usize, String)> = Vec::new();
        let result = (|| {
            while !s.is_empty() {
                let b = s.as_bytes();
                if b[0] != b'e' || b.get(2) != Some(&b'x') {
                    return Err(4);
                }
                let r = b[1].wrapping_sub(b'a') as usize;
                let eq = s.find('=');
                let (true, Some(eq)) = (r <= 3, eq) else {
                    return Err(4);
                };
                let v = &s[eq + 1..];
                let end = v.find(',').unwrap_or(v.len());
                if end != 32 {
                    return Err(5);
                }
                regs.push((r, v[..32].to_string()));
                if end == v.len() {
                    break;
                }
                s = v[end + 1..].trim_start_matches([' ', '\n']);
            }
            Ok(())
        })();
        if let Some(entry) = self.entry(leaf as u32, subleaf) {
            for (r, v) in regs {
                entry.regs[r] = Some(v);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(items: &[&str]) -> CpuidPolicy {
        let mut p = CpuidPolicy::default();
        for i in items {
            let _ = p.parse_flag(i);
        }
        p
    }

    #[test]
    fn feature_bits_land_msb_first() {
        let p = one(&["tm=0", "sse3=0", "aes=1", "x2apic=s"]);
        assert_eq!(p.leaves.len(), 1);
        assert_eq!(
            p.leaves[0].regs[EDX].as_deref(),
            Some("xx0xxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
        );
        assert_eq!(
            p.leaves[0].regs[ECX].as_deref(),
            Some("xxxxxx1xxxsxxxxxxxxxxxxxxxxxxxx0")
        );
    }

    #[test]
    fn features_are_sorted_for_the_search() {
        assert!(features::FEATURES
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
    }

    #[test]
    fn bad_value_still_adds_the_leaf() {
        let mut p = CpuidPolicy::default();
        assert_eq!(p.parse_flag("avx=2x"), Ok(()));
        assert_eq!(p.parse_flag("rdrand=y"), Err(3));
        assert_eq!(p.parse_flag("nosuch=1"), Err(2));
        assert_eq!(p.parse_flag("avx"), Err(1));
        assert_eq!(p.leaves.len(), 1);
    }

    #[test]
    fn arch_caps_bits_are_msr_policies() {
        let p = one(&["rdcl-no=1", "its-no=s"]);
        assert_eq!(p.msrs.len(), 1);
        assert_eq!(p.msrs[0].index, 0x10a);
        assert_eq!(&p.msrs[0].policy[63..], "1");
        assert_eq!(&p.msrs[0].policy[1..2], "k");
    }

    #[test]
    fn xend_lines() {
        let mut p = CpuidPolicy::default();
        let x = "x".repeat(32);
        assert_eq!(p.parse_xend(&format!("0x7,0:ebx={x}, ecx={x}")), Ok(()));
        assert_eq!(p.parse_xend("1:eax=0"), Err(5));
        assert_eq!(p.parse_xend("1"), Err(3));
        assert_eq!(p.parse_xend(":"), Err(1));
        assert_eq!(p.parse_xend("1,:"), Err(2));
        assert_eq!(p.parse_xend("1:e"), Err(4));
        assert_eq!(p.leaves.len(), 2);
        assert_eq!(p.leaves[0].subleaf, Some(0));
        assert!(p.leaves[0].regs[EBX].is_some() && p.leaves[0].regs[ECX].is_some());
    }
}
