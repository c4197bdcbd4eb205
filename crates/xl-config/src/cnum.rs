//! C's number conversions as xl uses them on spec values (`strtoul`,
//! `atoi`), with glibc's results for signs, overflow and trailing junk.

/// C's `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The `base` argument of C's `strtoul`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// 0: `0x` prefix for hex, a leading `0` for octal, else decimal.
    Auto,
    /// 10.
    Dec,
    /// 16, with an optional `0x` prefix.
    Hex,
}

impl Base {
    fn radix(self) -> u32 {
        match self {
            Base::Auto | Base::Dec => 10,
            Base::Hex => 16,
        }
    }
}

/// What `strtoul`/`strtol` read: the sign, the magnitude (saturated at
/// `u64::MAX`, with `overflow` set), and how many bytes form the number
/// (0 when there are no digits: C's `endptr == str`).
struct Scan {
    neg: bool,
    value: u64,
    overflow: bool,
    len: usize,
}

/// Blanks and one sign: the index after them and whether it was `-`.
fn blanks_and_sign(b: &[u8]) -> (usize, bool) {
    let mut i = b.iter().take_while(|c| c_space(**c)).count();
    let neg = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    (i, neg)
}

/// Whether `b[i..]` starts with `0x`/`0X`.
fn hex_prefix(b: &[u8], i: usize) -> bool {
    b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X'))
}

/// Reads digits of `radix` from `b[i..]`: the saturated value, whether it
/// overflowed, and the index after the last digit.
fn digits(b: &[u8], mut i: usize, radix: u32) -> (u64, bool, usize) {
    let (mut value, mut overflow) = (0u64, false);
    while let Some(d) = b.get(i).and_then(|c| (*c as char).to_digit(radix)) {
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => {
                overflow = true;
                value = u64::MAX;
            }
        }
        i += 1;
    }
    (value, overflow, i)
}

fn scan(s: &str, base: Base) -> Scan {
    let b = s.as_bytes();
    let (mut i, neg) = blanks_and_sign(b);
    let mut radix = base.radix();
    if base == Base::Auto && b.get(i) == Some(&b'0') {
        radix = 8;
    }
    if base != Base::Dec && hex_prefix(b, i) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
        radix = 16;
        i += 2;
    }
    let start = i;
    let (value, overflow, i) = digits(b, i, radix);
    // "0x" without hex digits reads as the number 0 ending before the x.
    let len = if i == start { 0 } else { i };
    Scan {
        neg,
        value,
        overflow,
        len,
    }
}

/// What C's `strtoul` returns on a 64-bit host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The result: a leading `-` negates in unsigned arithmetic, overflow
    /// gives `ULONG_MAX`.
    pub value: u64,
    /// Bytes read (0 = no number: `endptr == str`).
    pub len: usize,
    /// `errno` was set to `ERANGE`.
    pub erange: bool,
}

/// `strtoul(s, &end, base)` (and `strtoull`, the same on a 64-bit host).
pub fn strtoul(s: &str, base: Base) -> Parsed {
    let sc = scan(s, base);
    let value = if sc.overflow {
        u64::MAX
    } else if sc.neg {
        sc.value.wrapping_neg()
    } else {
        sc.value
    };
    Parsed {
        value,
        len: sc.len,
        erange: sc.overflow,
    }
}

/// `strtoul(s, &end, 0)`: the value and the bytes read (0 = no number).
pub fn strtoul0(s: &str) -> (u64, usize) {
    let p = strtoul(s, Base::Auto);
    (p.value, p.len)
}

/// `strtoul(s, &end, 10)`: as [`strtoul0`] in base 10.
pub fn strtoul10(s: &str) -> (u64, usize) {
    let p = strtoul(s, Base::Dec);
    (p.value, p.len)
}

/// glibc `sscanf`'s `%lx`: blanks, one sign, an optional `0x` that is
/// consumed even when no hex digit follows (the bare `0x` then reads as 0),
/// hex digits; negation and overflow as `strtoul`. `None` when nothing
/// matched (the conversion fails). `%x` into an `unsigned int` stores the
/// low 32 bits of the value.
pub fn scanf_hex(s: &str) -> Option<(u64, usize)> {
    let b = s.as_bytes();
    let (mut i, neg) = blanks_and_sign(b);
    let prefixed = hex_prefix(b, i);
    if prefixed {
        i += 2;
    }
    let (value, overflow, end) = digits(b, i, 16);
    if end == i && !prefixed {
        return None;
    }
    let value = if overflow {
        u64::MAX
    } else if neg {
        value.wrapping_neg()
    } else {
        value
    };
    Some((value, end))
}

/// glibc's `atoi`: `(int) strtol(s, NULL, 10)`, saturating then truncating.
pub fn atoi(s: &str) -> i32 {
    let sc = scan(s, Base::Dec);
    let l: i64 = match (
        sc.neg,
        sc.overflow || sc.value > i64::MAX as u64 + u64::from(sc.neg),
    ) {
        (false, true) => i64::MAX,
        (true, true) => i64::MIN,
        (false, false) => sc.value as i64,
        (true, false) => (sc.value as i64).wrapping_neg(),
    };
    l as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_matches_glibc() {
        assert_eq!(atoi(" -12x"), -12);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi("4294967297"), 1);
        assert_eq!(atoi("99999999999999999999"), -1);
        assert_eq!(atoi("-9223372036854775808"), 0);
        assert_eq!(atoi("0x10"), 0);
    }

    #[test]
    fn strtoul_matches_glibc() {
        assert_eq!(strtoul0("0x300"), (0x300, 5));
        assert_eq!(strtoul0("010"), (8, 3));
        assert_eq!(strtoul0("-1"), (u64::MAX, 2));
        assert_eq!(strtoul0("0x"), (0, 1));
        assert_eq!(strtoul0(" 7:"), (7, 2));
        assert_eq!(strtoul0("x"), (0, 0));
        assert_eq!(strtoul0("-"), (0, 0));
        assert_eq!(strtoul0("99999999999999999999999"), (u64::MAX, 23));
    }

    #[test]
    fn strtoul_bases_match_glibc() {
        let p = |v, len, erange| Parsed {
            value: v,
            len,
            erange,
        };
        assert_eq!(strtoul("0x1f:", Base::Hex), p(0x1f, 4, false));
        assert_eq!(strtoul("1f", Base::Hex), p(0x1f, 2, false));
        assert_eq!(strtoul("0xg", Base::Hex), p(0, 1, false));
        assert_eq!(strtoul("0x10", Base::Dec), p(0, 1, false));
        assert_eq!(strtoul("\n+3", Base::Dec), p(3, 3, false));
        assert_eq!(strtoul("-2", Base::Dec), p(u64::MAX - 1, 2, false));
        assert_eq!(
            strtoul("-3f8", Base::Hex),
            p(0xffff_ffff_ffff_fc08, 4, false)
        );
        assert_eq!(
            strtoul("1ffffffffffffffff", Base::Hex),
            p(u64::MAX, 17, true)
        );
        assert_eq!(
            strtoul("-99999999999999999999", Base::Dec),
            p(u64::MAX, 21, true)
        );
    }

    #[test]
    fn scanf_hex_consumes_a_bare_prefix() {
        assert_eq!(scanf_hex("0x,2"), Some((0, 2)));
        assert_eq!(scanf_hex(" +fe000,"), Some((0xfe000, 7)));
        assert_eq!(scanf_hex("-1"), Some((u64::MAX, 2)));
        assert_eq!(scanf_hex("+-1"), None);
        assert_eq!(scanf_hex(",1"), None);
    }
}
