//! Reading a text capture's lines a block of whole lines at a time: hftbacktest's `<recv ns> <json>` lines (what
//! `orderbook/venues/binance.py` reads) and cryptofeed's received lines `<epoch s>: <json>` (what the Kraken and
//! Coinbase readers, and Binance's for a cryptofeed recording, read). The Python reading cost ~3-6 us a line,
//! more than the native decoding of the message after it.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// One hftbacktest line (`\r`s at its end left out): its receive time and message, where its stamp (up to
/// the first space, or the whole line) is ASCII digits that fit an int64; None otherwise (another kind of
/// line, or a stamp the reference reads as a larger integer).
pub fn stamped(line: &[u8]) -> Option<(i64, &[u8])> {
    let line = without_cr(line);
    let (stamp, body) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    if stamp.is_empty() {
        return None;
    }
    Some((digits(stamp, 0)?, body))
}

/// One cryptofeed received line (`\r`s at its end left out), `<epoch s>: <message>` split at the first `": "`: its
/// stamp in nanoseconds and its message, where the stamp is ASCII digits with at most 9 after a dot (parse_fixed
/// reads those alike) that fit an int64 and are not 0; None otherwise: a connection header, a sent line, an empty
/// line, a stamp of another form, or 0 (each venue's reader treats those its own way, line by line).
pub fn epoch_stamped(line: &[u8]) -> Option<(i64, &[u8])> {
    let line = without_cr(line);
    let at = line.windows(2).position(|w| w == b": ")?;
    let (stamp, body) = (&line[..at], &line[at + 2..]);
    let (whole, frac) = match stamp.iter().position(|&b| b == b'.') {
        Some(dot) if dot + 1 < stamp.len() => (&stamp[..dot], &stamp[dot + 1..]),
        Some(_) => return None,
        None => (stamp, &stamp[stamp.len()..]),
    };
    if whole.is_empty() || frac.len() > 9 {
        return None;
    }
    let seconds = digits(whole, 0)?;
    let ns = digits(frac, 0)?.checked_mul(10_i64.pow(9 - frac.len() as u32))?;
    let ts = seconds.checked_mul(1_000_000_000)?.checked_add(ns)?;
    (ts != 0).then_some((ts, body))
}

fn without_cr(line: &[u8]) -> &[u8] {
    &line[..line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1)]
}

/// `text`'s ASCII digits as an integer after `acc`'s, or None where one is not a digit or it passes int64.
fn digits(text: &[u8], acc: i64) -> Option<i64> {
    text.iter().try_fold(acc, |v, &b| {
        b.is_ascii_digit().then_some(())?;
        v.checked_mul(10)?.checked_add(i64::from(b - b'0'))
    })
}

/// Whether a message is a bare REST depth snapshot, as binance.py `_is_bare_snapshot` tells (the first 20
/// bytes, leading ASCII whitespace left out where there is some, spaces dropped, start `{"lastUpdateId"`),
/// and not a combined stream's message (`{"stream"...`), which never is one.
pub fn bare_snapshot(body: &[u8]) -> bool {
    const WHITESPACE: &[u8] = b" \t\n\r\x0b\x0c";
    if body.starts_with(b"{\"stream\"") {
        return false;
    }
    let start = if body.first().is_some_and(|b| WHITESPACE.contains(b)) {
        body.iter().position(|b| !WHITESPACE.contains(b)).unwrap_or(body.len())
    } else {
        0
    };
    let mut head = body[start..body.len().min(start + 20)].iter().filter(|&&b| b != b' ');
    b"{\"lastUpdateId\"".iter().all(|b| head.next() == Some(b))
}

/// Receive times, messages, and the indices of the bare REST snapshots among them.
pub type Stamped<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyList>, Vec<usize>);

/// Receive times and messages.
pub type EpochStamped<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyList>);

/// A line's receive time and message, or None.
type LineParse = fn(&[u8]) -> Option<(i64, &[u8])>;

/// The lines of `block` (split at every `\n`) as hftbacktest records: (their receive times, their messages,
/// the indices of the bare REST snapshots among them); None where a line is not `<digits> <message>`
/// (`stamped`), for the reference's reading line by line.
#[pyfunction]
pub fn stamped_lines<'py>(py: Python<'py>, block: &[u8]) -> PyResult<Option<Stamped<'py>>> {
    let Some((times, bodies)) = split_lines(block, stamped) else { return Ok(None) };
    let bare = bodies.iter().enumerate().filter(|(_, b)| bare_snapshot(b)).map(|(i, _)| i).collect();
    Ok(Some((PyArray1::from_vec(py, times), PyList::new(py, bodies.into_iter().map(|b| PyBytes::new(py, b)))?, bare)))
}

/// The lines of `block` (split at every `\n`) as cryptofeed's received lines: (their receive times in
/// nanoseconds, their messages); None where a line is not one (`epoch_stamped`), for the reading line by line.
#[pyfunction]
pub fn epoch_stamped_lines<'py>(py: Python<'py>, block: &[u8]) -> PyResult<Option<EpochStamped<'py>>> {
    let Some((times, bodies)) = split_lines(block, epoch_stamped) else { return Ok(None) };
    Ok(Some((PyArray1::from_vec(py, times), PyList::new(py, bodies.into_iter().map(|b| PyBytes::new(py, b)))?)))
}

/// Every line of `block` through `parse`, or None at the first it refuses.
fn split_lines(block: &[u8], parse: LineParse) -> Option<(Vec<i64>, Vec<&[u8]>)> {
    block.split(|&b| b == b'\n').map(parse).collect::<Option<Vec<_>>>().map(|pairs| pairs.into_iter().unzip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_ascii_digits_that_fit_an_int64() {
        assert_eq!(stamped(b"123 {\"a\":1}\r\r"), Some((123, &b"{\"a\":1}"[..])));
        assert_eq!(stamped(b"007"), Some((7, &b""[..])));
        assert_eq!(stamped(b"9223372036854775807 x"), Some((i64::MAX, &b"x"[..])));
        for line in [&b"9223372036854775808 x"[..], b"", b" 1", b"+1 x", b"1: x", b"{\"a\":1}", b"\xd9\xa1 x"] {
            assert_eq!(stamped(line), None, "{line:?}");
        }
    }

    #[test]
    fn an_epoch_stamp_is_seconds_with_at_most_nine_decimals_that_fit_an_int64_and_are_not_0() {
        assert_eq!(
            epoch_stamped(b"1634152346.2133796: {\"a\": 1}\r"),
            Some((1_634_152_346_213_379_600, &b"{\"a\": 1}"[..]))
        );
        assert_eq!(epoch_stamped(b"12: "), Some((12_000_000_000, &b""[..])));
        assert_eq!(epoch_stamped(b"0.000000001: x"), Some((1, &b"x"[..])));
        assert_eq!(epoch_stamped(b"9223372036.854775807: x"), Some((i64::MAX, &b"x"[..])));
        for line in [
            &b"9223372036.854775808: x"[..],
            b"0: x",
            b"0.0: x",
            b"1.0000000000: x", // parse_fixed takes ten decimals whose last is 0: the reader line by line does
            b"1.: x",
            b".5: x",
            b": x",
            b"1:x",
            b"1 : x",
            b"+1: x",
            b"1e3: x",
            b"",
            b"1634152346.2",
            b"wss://ws.kraken.com <-> 1634152346.2",
            b"https://api.binance.com/api/v3/depth?symbol=X -> 1634152346.2: {}",
            b"\xd9\xa1: x",
        ] {
            assert_eq!(epoch_stamped(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_block_is_read_whole_or_not_at_all() {
        assert_eq!(
            split_lines(b"1: a\n2.5: b: c", epoch_stamped),
            Some((vec![1_000_000_000, 2_500_000_000], vec![&b"a"[..], b"b: c"]))
        );
        assert_eq!(split_lines(b"1: a\n\n2: b", epoch_stamped), None);
        assert_eq!(split_lines(b"1 a\n2 b", stamped), Some((vec![1, 2], vec![&b"a"[..], b"b"])));
    }

    #[test]
    fn a_bare_snapshot_is_told_as_the_reference_tells_it() {
        assert!(bare_snapshot(b"{\"lastUpdateId\":1,\"bids\":[]}"));
        assert!(bare_snapshot(b"{ \"lastUpdateId\" :1}"));
        assert!(bare_snapshot(b" \t {\"lastUpdateId\":1}"));
        assert!(!bare_snapshot(b"{\t\"lastUpdateId\":1}")); // only spaces are dropped
        assert!(!bare_snapshot(b"{      \"lastUpdateId\":1}")); // past the first 20 bytes
        assert!(!bare_snapshot(b"{\"stream\":\"x\",\"lastUpdateId\":1}"));
        assert!(!bare_snapshot(b"{\"e\":\"depthUpdate\"}"));
    }
}
