//! Reading a text capture's lines: what `orderbook/venues/binance.py` reads of hftbacktest's `<recv ns> <json>`
//! lines, a block of whole lines at a time (the Python reading cost ~3 us a line, more than the native
//! decoding of the message after it).

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// One hftbacktest line (`\r`s at its end left out): its receive time and message, where its stamp (up to
/// the first space, or the whole line) is ASCII digits that fit an int64; None otherwise (another kind of
/// line, or a stamp the reference reads as a larger integer).
pub fn stamped(line: &[u8]) -> Option<(i64, &[u8])> {
    let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
    let line = &line[..end];
    let (stamp, body) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    if stamp.is_empty() {
        return None;
    }
    let mut ts: i64 = 0;
    for &b in stamp {
        if !b.is_ascii_digit() {
            return None;
        }
        ts = ts.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some((ts, body))
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
    let head: Vec<u8> = body[start..body.len().min(start + 20)].iter().copied().filter(|&b| b != b' ').collect();
    head.starts_with(b"{\"lastUpdateId\"")
}

/// Receive times, messages, and the indices of the bare REST snapshots among them.
pub type Stamped<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyList>, Vec<usize>);

/// The lines of `block` (split at every `\n`) as hftbacktest records: (their receive times, their messages,
/// the indices of the bare REST snapshots among them); None where a line is not `<digits> <message>`
/// (`stamped`), for the reference's reading line by line.
#[pyfunction]
pub fn stamped_lines<'py>(py: Python<'py>, block: &[u8]) -> PyResult<Option<Stamped<'py>>> {
    let mut times = Vec::new();
    let mut bodies = Vec::new();
    let mut bare = Vec::new();
    for (i, line) in block.split(|&b| b == b'\n').enumerate() {
        let Some((ts, body)) = stamped(line) else { return Ok(None) };
        if bare_snapshot(body) {
            bare.push(i);
        }
        times.push(ts);
        bodies.push(body);
    }
    let list = PyList::new(py, bodies.into_iter().map(|b| PyBytes::new(py, b)))?;
    Ok(Some((PyArray1::from_vec(py, times), list, bare)))
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
