//! C's number conversions as xl uses them on spec values (`strtoul`,
//! `atoi`), with glibc's results for signs, overflow and trailing junk.

/// C's `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
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

fn scan(s: &str, base0: bool) -> Scan {
    let b = s.as_bytes();
    let mut i = b.iter().take_while(|c| c_space(**c)).count();
    let neg = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut radix = 10;
    if base0 && b.get(i) == Some(&b'0') {
        radix = 8;
        if matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            radix = 16;
            i += 2;
        }
    }
    let start = i;
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
    // "0x" without hex digits reads as the number 0 ending before the x.
    let len = if i == start { 0 } else { i };
    Scan {
        neg,
        value,
        overflow,
        len,
    }
}

/// `strtoul(s, &end, 0)` on a 64-bit host: the value and the bytes read
/// (0 = no number). A leading `-` negates in unsigned arithmetic; overflow
/// gives `ULONG_MAX`.
pub fn strtoul0(s: &str) -> (u64, usize) {
    let sc = scan(s, true);
    let v = if sc.overflow {
        u64::MAX
    } else if sc.neg {
        sc.value.wrapping_neg()
    } else {
        sc.value
    };
    (v, sc.len)
}

/// `strtoul(s, &end, 10)`: as [`strtoul0`] in base 10.
pub fn strtoul10(s: &str) -> (u64, usize) {
    let sc = scan(s, false);
    let v = if sc.overflow {
        u64::MAX
    } else if sc.neg {
        sc.value.wrapping_neg()
    } else {
        sc.value
    };
    (v, sc.len)
}

/// glibc's `atoi`: `(int) strtol(s, NULL, 10)`, saturating then truncating.
pub fn atoi(s: &str) -> i32 {
    let sc = scan(s, false);
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
}
