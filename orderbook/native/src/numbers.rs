//! Exact decimal text to integers, as `orderbook/numbers.py` reads it (no float on the way in).

/// int() refuses longer digit strings (`sys.get_int_max_str_digits`): the reference raises there.
pub const PY_INT_MAX_DIGITS: usize = 4300;

/// `parse_fixed(text, decimals)` on a string's bytes: `digits[.digits]` (either part may be empty, not
/// both), at most `decimals` significant decimals (more only as trailing zeros), no sign, no space. None
/// where Python raises, and where the value leaves int64, which the reference refuses too.
pub fn fixed(s: &[u8], decimals: u32) -> Option<i64> {
    let (whole, frac) = match s.iter().position(|&c| c == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &s[s.len()..]),
    };
    if (whole.is_empty() && frac.is_empty()) || whole.len() > PY_INT_MAX_DIGITS {
        return None;
    }
    if !whole.iter().all(u8::is_ascii_digit) || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (frac, extra) = frac.split_at(frac.len().min(decimals as usize));
    if extra.iter().any(|&c| c != b'0') {
        return None;
    }
    // the digits then the zeros that pad them to `decimals`, as one integer: checked at every step, so
    // that any `decimals` is safe (a Kraken pair's are what its messages print)
    let mut v: i64 = 0;
    for &d in whole.iter().chain(frac) {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    let pad = decimals as usize - frac.len();
    if v == 0 {
        return Some(0);
    }
    v.checked_mul(10_i64.checked_pow(u32::try_from(pad).ok()?)?)
}

/// A `-?[0-9]+` integer that fits int64 (any number of leading zeros); None for any other text.
pub fn int64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        0_i64.checked_sub_unsigned(v) // -2^63 too
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_reads_what_parse_fixed_reads() {
        assert_eq!(fixed(b"34200.004241176", 9), Some(34_200_004_241_176));
        assert_eq!(fixed(b"5.", 9), Some(5_000_000_000));
        assert_eq!(fixed(b".5", 9), Some(500_000_000));
        assert_eq!(fixed(b"1.1234567890000", 9), Some(1_123_456_789));
        for bad in [&b""[..], b".", b"-1", b"1.2.3", b" 1", b"1e3", b"1.0000000001", b"9223372037"] {
            assert_eq!(fixed(bad, 9), None, "{bad:?}");
        }
        let mut zeros = vec![b'0'; PY_INT_MAX_DIGITS - 1];
        zeros.push(b'7');
        assert_eq!(fixed(&zeros, 9), Some(7_000_000_000));
        zeros.insert(0, b'0');
        assert_eq!(fixed(&zeros, 9), None);
        // any decimals: a value is refused only where it leaves int64
        assert_eq!(fixed(b"0.000000000000000000000000000001", 30), Some(1));
        assert_eq!(fixed(b"0", 4_000_000_000), Some(0));
        assert_eq!(fixed(b"1", 19), None);
        assert_eq!(fixed(b"1", 18), Some(1_000_000_000_000_000_000));
    }

    #[test]
    fn int64_takes_every_int64_and_nothing_past_it() {
        assert_eq!(int64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(int64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(int64(b"-0009"), Some(-9));
        for bad in [&b""[..], b"-", b"+1", b"9223372036854775808", b"-9223372036854775809", b"1 ", b"0x1"] {
            assert_eq!(int64(bad), None, "{bad:?}");
        }
    }
}
