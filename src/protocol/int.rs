//! Redis's integer syntax (`string2ll`), shared by the request and reply scanners and
//! by everything that reads a count out of a request. A file of its own so both
//! scanners can use it without importing each other.

/// Parses a decimal integer exactly as Redis's `string2ll` does: an optional `-`, then
/// `0` alone or a digit 1-9 and more digits; no `+`, no spaces, no leading zeros, no
/// `-0`; the whole `i64` range.
#[inline]
pub fn parse_int(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) || digits.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if neg {
        if v <= i64::MAX as u64 + 1 {
            Some((v as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(v).ok()
    }
}
