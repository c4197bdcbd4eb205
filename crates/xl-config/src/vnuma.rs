//! `vnuma`: the guest's virtual NUMA nodes, as xl's `parse_vnuma_config`
//! reads them into `libxl_vnode_info` (`size=`, `pnode=`, `vcpus=`,
//! `vdistances=`), with xl's checks against `maxvcpus`/`maxmem` and the
//! host.
//!
//! xl checks two things against the host it runs on: a `pnode` must be
//! below the host's NUMA node count, and without `maxvcpus` the vnodes may
//! hold no more vCPUs than the host has online pCPUs. We answer both with
//! a model of the oracle host (see [`HOST_NUMA_NODES`] and
//! [`HOST_ONLINE_CPUS`]), as [`crate::cpus::HOST_CPUS`] models its CPU
//! count.

use crate::cnum::{self, Base};
use crate::model::VnodeInfo;
use crate::syntax::store::Value;
use std::collections::BTreeSet;

/// NUMA nodes of the modelled host. The oracle host reports one node
/// (`xc_get_max_nodes`); the node count xl actually compares `pnode`
/// against (`physinfo.nr_nodes`) is left uninitialised by the oracle's
/// `xc_physinfo` stand-in, so the oracle's answer for `pnode` varies from
/// run to run and we use the one-node host it describes.
pub const HOST_NUMA_NODES: u64 = 1;

/// Online pCPUs of the modelled host (the oracle's `xc_get_online_cpus`).
pub const HOST_ONLINE_CPUS: u64 = 2;

/// How many vCPU bits and distances xkvm is prepared to hold for vnuma;
/// xl would try any size (and crawl or run out of memory).
const MAX_BITS: u64 = 1 << 20;
/// Most vnodes xkvm reads (each node holds a distance to every node).
const MAX_NODES: usize = 1024;

/// What `vnuma` adds to the build info.
#[derive(Debug, Clone, PartialEq)]
pub struct Vnuma {
    pub nodes: Vec<VnodeInfo>,
    /// `b_info.max_vcpus` afterwards (as C's `int`).
    pub max_vcpus: i32,
    /// `b_info.max_memkb` afterwards: the nodes' sizes summed.
    pub max_memkb: u64,
    /// A node named its `pnode`, which turns off automatic placement.
    pub pnode_given: bool,
}

/// Why xl refuses the `vnuma` list: a libxlu warning it prints first (if
/// any) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub warning: Option<String>,
    pub message: String,
}

impl Refusal {
    fn new(message: impl Into<String>) -> Self {
        Refusal {
            warning: None,
            message: message.into(),
        }
    }
}

/// The `vnuma` list as xl reads it. `item_lines` holds each item's line
/// (for libxlu's warning), `source` names the file, `max_vcpus` and
/// `max_memkb` are what `maxvcpus` (as C's `int`, 0 when unset) and
/// `maxmem` left. `None`: an empty list, which xl ignores.
pub fn parse(
    items: &[Value],
    item_lines: &[u32],
    source: &str,
    max_vcpus: i32,
    max_memkb: Option<u64>,
) -> Result<Option<Vnuma>, Refusal> {
    let n = items.len();
    if n == 0 {
        return Ok(None);
    }
    if n > MAX_NODES {
        return Err(Refusal::new(format!(
            "{n} vnuma nodes are more than xkvm supports ({MAX_NODES})"
        )));
    }
    // Each node's vCPU bitmap is sized by maxvcpus, or by the host's CPU
    // count without it; bits past the end are dropped as they are set.
    let bits: u64 = match max_vcpus {
        m if m < 0 => return Err(Refusal::new("libxl_node_bitmap_alloc failed.")),
        0 => u64::from(crate::cpus::HOST_CPUS),
        m => (m as u64).div_ceil(8) * 8,
    };
    if bits > MAX_BITS {
        return Err(Refusal::new(format!(
            "maxvcpus={max_vcpus} with vnuma is more than xkvm supports ({MAX_BITS})"
        )));
    }
    let mut nodes = vec![
        VnodeInfo {
            distances: vec![0; n],
            ..VnodeInfo::default()
        };
        n
    ];
    let mut state = Totals {
        bits,
        vcpus: 0,
        memkb: 0,
        set_budget: MAX_BITS,
        pnode_given: false,
    };
    for (i, item) in items.iter().enumerate() {
        let Value::List(options) = item else {
            let line = item_lines.get(i).copied().unwrap_or(0);
            return Err(Refusal {
                // libxlu never fills in a column, so it prints 0.
                warning: Some(format!("{source}:{line}:0: warning: value is not a list")),
                message: "xl: cannot get vnode config option list".into(),
            });
        };
        let mut vcpus = BTreeSet::new();
        for option in options {
            // Nested lists are skipped without a word.
            if let Value::String(buf) = option {
                state.option(buf, &mut nodes[i], &mut vcpus)?;
            }
        }
        nodes[i].vcpus = vcpus.into_iter().collect();
    }
    let max_vcpus = if max_vcpus != 0 {
        // xl compares the int maxvcpus, widened to unsigned long.
        if max_vcpus as i64 as u64 != state.vcpus {
            return Err(Refusal::new("xl: vnuma vcpus and maxvcpus= mismatch"));
        }
        max_vcpus
    } else {
        if HOST_ONLINE_CPUS < state.vcpus {
            return Err(Refusal::new(
                "xl: vnuma specifies more vcpus than pcpus, use maxvcpus= to override this check.",
            ));
        }
        state.vcpus as i32
    };
    if max_memkb.is_some_and(|m| m != state.memkb) {
        return Err(Refusal::new("xl: maxmem and vnuma memory size mismatch"));
    }
    Ok(Some(Vnuma {
        nodes,
        max_vcpus,
        max_memkb: state.memkb,
        pnode_given: state.pnode_given,
    }))
}

/// What xl accumulates over all nodes.
struct Totals {
    /// Width of each node's vCPU bitmap.
    bits: u64,
    /// vCPUs named (xl's `max_vcpus`, an unsigned long: every number of
    /// every range counts, even those past the bitmap or named twice).
    vcpus: u64,
    /// Sum of the nodes' sizes (xl's `max_memkb`, wrapping).
    memkb: u64,
    /// Bits xkvm still agrees to set.
    set_budget: u64,
    pnode_given: bool,
}

impl Totals {
    /// One `"option=value"` string of a node.
    fn option(
        &mut self,
        buf: &str,
        node: &mut VnodeInfo,
        vcpus: &mut BTreeSet<u32>,
    ) -> Result<(), Refusal> {
        let Some((option, value)) = split_pair(buf) else {
            return Err(Refusal::new(format!(
                "xl: failed to split \"{buf}\" into pair"
            )));
        };
        let (option, value) = (trim(option), trim(value));
        match option {
            "pnode" => {
                let val = parse_ulong(value)?;
                if val >= HOST_NUMA_NODES {
                    return Err(Refusal::new(format!("xl: invalid pnode number: {val}")));
                }
                node.pnode = val as u32;
                self.pnode_given = true;
            }
            "size" => {
                // Bits shifted out of the unsigned long are lost, as in C.
                let memkb = parse_ulong(value)? << 10;
                node.memkb = Some(memkb);
                self.memkb = self.memkb.wrapping_add(memkb);
            }
            "vcpus" => {
                for spec in split_list(value, "vcpus")? {
                    let Some((s, e)) = vcpu_range(spec)? else {
                        continue;
                    };
                    self.vcpus = self.vcpus.wrapping_add((e - s).wrapping_add(1));
                    self.set_bits(s, e, vcpus)?;
                }
            }
            "vdistances" => {
                let distances = &mut node.distances;
                for (j, d) in split_list(value, "vdistances")?.into_iter().enumerate() {
                    let val = parse_ulong(d)?;
                    // xl stores a uint32_t per node; distances past the
                    // last node land past the end of xl's array (a heap
                    // overrun that goes unnoticed) and are lost.
                    if let Some(slot) = distances.get_mut(j) {
                        *slot = val as u32;
                    }
                }
            }
            // Anything else is ignored without a word.
            _ => {}
        }
        Ok(())
    }

    /// Sets the bits `s..=e` as `libxl_bitmap_set(map, (int)s)` does one by
    /// one: the number is cut to a C `int`, negative and too-large bits
    /// are dropped.
    fn set_bits(&mut self, s: u64, e: u64, map: &mut BTreeSet<u32>) -> Result<(), Refusal> {
        const PERIOD: u64 = 1 << 32;
        let bits = self.bits;
        let mut set = |lo: u64, hi: u64, budget: &mut u64| -> Result<(), Refusal> {
            if lo >= bits {
                return Ok(());
            }
            let hi = hi.min(bits - 1);
            let count = hi - lo + 1;
            if count > *budget {
                return Err(Refusal::new(format!(
                    "vnuma names more than {MAX_BITS} vCPUs, more than xkvm supports"
                )));
            }
            *budget -= count;
            // Both below `bits`, itself at most MAX_BITS.
            map.extend(lo as u32..=hi as u32);
            Ok(())
        };
        if e - s >= PERIOD - 1 {
            // Every int value comes round at least once.
            return set(0, bits - 1, &mut self.set_budget);
        }
        // At most two stretches of one 2^32 period each.
        let mut a = s;
        loop {
            let end = (a | (PERIOD - 1)).min(e);
            set(a % PERIOD, end % PERIOD, &mut self.set_budget)?;
            if end == e {
                return Ok(());
            }
            a = end + 1;
        }
    }
}

/// xl's `split_string_into_pair(buf, "=")`: the first two `=`-separated
/// tokens (`strtok`: runs of `=` separate, leading ones are skipped).
fn split_pair(buf: &str) -> Option<(&str, &str)> {
    let mut tokens = buf.split('=').filter(|t| !t.is_empty());
    Some((tokens.next()?, tokens.next()?))
}

/// xl's `trim(isspace, ...)`.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

/// xl's `split_string_into_string_list(value, ",")`: the non-empty
/// comma-separated tokens. With none, xl `strdup`s a null pointer and
/// crashes; we refuse instead.
fn split_list<'a>(value: &'a str, option: &str) -> Result<Vec<&'a str>, Refusal> {
    let items: Vec<&str> = value.split(',').filter(|t| !t.is_empty()).collect();
    if items.is_empty() {
        return Err(Refusal::new(format!(
            "{option}=\"{value}\" names nothing (xl crashes on this)"
        )));
    }
    Ok(items)
}

/// xl's `parse_ulong`: `strtoul(.., 10)` with no digits or `ULONG_MAX`
/// refused, trailing junk ignored.
fn parse_ulong(s: &str) -> Result<u64, Refusal> {
    let p = cnum::strtoul(s, Base::Dec);
    if p.len == 0 || p.value == u64::MAX {
        return Err(Refusal::new(format!(
            "xl: failed to convert \"{s}\" to number"
        )));
    }
    Ok(p.value)
}

/// The vCPUs one `vcpus=` item adds, as xl's loop over `parse_range`'s
/// outputs sees them (xl ignores whether `parse_range` succeeded): `None`
/// for an empty range. A range reaching `ULONG_MAX` would make xl count
/// for ever; we refuse it.
fn vcpu_range(spec: &str) -> Result<Option<(u64, u64)>, Refusal> {
    // No digits: strtoul gives 0, so "x" counts as vCPU 0.
    let first = cnum::strtoul(spec, Base::Dec);
    let s = first.value;
    let mut e = s;
    if first.len > 0 && s != u64::MAX {
        if let Some(rest) = spec[first.len..].strip_prefix('-') {
            // No digits after '-': the end is 0.
            e = cnum::strtoul(rest, Base::Dec).value;
        }
    }
    if s > e {
        return Ok(None);
    }
    if e == u64::MAX {
        return Err(Refusal::new(format!(
            "vcpus range \"{spec}\" reaches {e}, which xl would count to for ever"
        )));
    }
    Ok(Some((s, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn node(opts: &[&str]) -> Value {
        Value::List(opts.iter().map(|o| s(o)).collect())
    }

    fn run(nodes: &[Value], max_vcpus: i32, max_memkb: Option<u64>) -> Result<Vnuma, Refusal> {
        let lines: Vec<u32> = (0..nodes.len() as u32).map(|i| i + 4).collect();
        parse(nodes, &lines, "t.cfg", max_vcpus, max_memkb).map(|v| v.expect("nodes"))
    }

    #[test]
    fn nodes_sum_memory_and_vcpus_and_keep_distances() {
        let v = run(
            &[
                node(&["size=256", "vcpus=0", "vdistances=10,20"]),
                node(&[" size = 256 ", "vcpus=1", "pnode=0", "vdistances=20,10"]),
            ],
            0,
            None,
        )
        .expect("accepted");
        assert_eq!(v.max_vcpus, 2);
        assert_eq!(v.max_memkb, 512 * 1024);
        assert!(v.pnode_given);
        assert_eq!(v.nodes[0].memkb, Some(256 * 1024));
        assert_eq!(v.nodes[1].vcpus, vec![1]);
        assert_eq!(v.nodes[0].distances, vec![10, 20]);
        assert_eq!(v.nodes[1].distances, vec![20, 10]);
    }

    #[test]
    fn vcpus_past_the_host_need_maxvcpus_and_then_must_match_it() {
        let nodes = [node(&["vcpus=0-3"])];
        let e = run(&nodes, 0, None).expect_err("more than 2 online pCPUs");
        assert!(e.message.contains("more vcpus than pcpus"), "{e:?}");
        assert_eq!(
            run(&nodes, 4, None).expect("maxvcpus=4").nodes[0].vcpus,
            vec![0, 1, 2, 3]
        );
        let e = run(&nodes, 5, None).expect_err("mismatch");
        assert_eq!(e.message, "xl: vnuma vcpus and maxvcpus= mismatch");
    }

    #[test]
    fn vcpu_bits_past_the_bitmap_count_but_are_dropped() {
        // maxvcpus=4 sizes the bitmap to 8 bits.
        let v = run(&[node(&["vcpus=0-1,8-9"])], 4, None).expect("accepted");
        assert_eq!(v.nodes[0].vcpus, vec![0, 1]);
        // The bit number is cut to a C int: 2^32 is bit 0.
        let v = run(&[node(&["vcpus=4294967296"])], 1, None).expect("accepted");
        assert_eq!(v.nodes[0].vcpus, vec![0]);
    }

    #[test]
    fn vcpu_items_follow_parse_range_outputs_not_its_verdict() {
        let v = run(&[node(&["vcpus=x", "vcpus=3-1", "vcpus=1-x"])], 0, None).expect("ok");
        assert_eq!((v.max_vcpus, v.nodes[0].vcpus.clone()), (1, vec![0]));
        assert!(run(&[node(&["vcpus=-1"])], 0, None).is_err());
        assert!(run(&[node(&["vcpus=,"])], 0, None).is_err());
    }

    #[test]
    fn maxmem_must_equal_the_nodes_total() {
        let nodes = [node(&["size=100"]), node(&["size=100"])];
        assert_eq!(
            run(&nodes, 0, Some(200 * 1024)).expect("equal").max_memkb,
            200 * 1024
        );
        let e = run(&nodes, 0, Some(300 * 1024)).expect_err("mismatch");
        assert_eq!(e.message, "xl: maxmem and vnuma memory size mismatch");
    }

    #[test]
    fn bad_options_are_refused_with_xls_messages() {
        let msg = |o: &str| run(&[node(&[o])], 0, None).expect_err(o).message;
        assert_eq!(msg("size"), "xl: failed to split \"size\" into pair");
        assert_eq!(msg("size=abc"), "xl: failed to convert \"abc\" to number");
        assert_eq!(msg("pnode=1"), "xl: invalid pnode number: 1");
        let e = run(&[s("size=1")], 0, None).expect_err("not a list");
        assert_eq!(
            e.warning.as_deref(),
            Some("t.cfg:4:0: warning: value is not a list")
        );
        assert_eq!(e.message, "xl: cannot get vnode config option list");
    }

    #[test]
    fn sizes_wrap_like_unsigned_long() {
        let v = run(&[node(&["size=-2", "foo=bar"])], 0, None).expect("accepted");
        assert_eq!(v.max_memkb, 18446744073709549568);
        let v = run(&[node(&["size=18014398509481984"])], 0, None).expect("accepted");
        assert_eq!(v.nodes[0].memkb, Some(0));
    }

    #[test]
    fn a_negative_int_maxvcpus_fails_the_bitmap_allocation() {
        let e = run(&[node(&[])], -1, None).expect_err("negative");
        assert_eq!(e.message, "libxl_node_bitmap_alloc failed.");
    }
}
