//! `megatrading book` in compiled code (`orderbook.rebuild.rebuild`'s rows): every message through a
//! feed as its batch takes it, and the top of the target's book cut as a row after each message that
//! touched it, without a Python object per message or per row.

use numpy::ndarray::ArrayView2;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::batch::{batch_py, message_list, Batch, Events, MessageFeed, Rejects, NONE};

/// LOBSTER's placeholders for an empty level in its orderbook file (`orderbook.venues.lobster`).
pub const ASK_EMPTY: i64 = 9_999_999_999;
pub const BID_EMPTY: i64 = -9_999_999_999;

/// A feed whose books can be written as rows.
pub trait BookRows {
    /// The name of a symbol id.
    fn symbol_name(&self, symbol: u32) -> &str;
    /// `orderbook.venues.lobster.orderbook_row` of the symbol's book (it has one: an event or a crossed
    /// refusal named it), appended to `rows`.
    fn top_row(&self, symbol: u32, levels: usize, rows: &mut Vec<i64>);
}

/// A LOBSTER orderbook row from a book's sides, best first: per level ask price, ask size, bid price,
/// bid size, a missing level the placeholder with size 0.
pub fn lobster_row(
    mut asks: impl Iterator<Item = (i64, i64)>,
    mut bids: impl Iterator<Item = (i64, i64)>,
    levels: usize,
    rows: &mut Vec<i64>,
) {
    for _ in 0..levels {
        let (ap, a) = asks.next().unwrap_or((ASK_EMPTY, 0));
        let (bp, b) = bids.next().unwrap_or((BID_EMPTY, 0));
        rows.extend_from_slice(&[ap, a, bp, b]);
    }
}

/// The book whose rows are cut: `id` once known; else the book named `name`; else (no name) the first
/// book an event names, which becomes the target. A crossed refusal before any event gives its own
/// book's row, as the reference's does, and names no target (the reference never sees its events).
pub struct Target<'a> {
    pub name: Option<&'a str>,
    pub id: Option<u32>,
}

impl Target<'_> {
    fn is<F: BookRows>(&mut self, feed: &F, symbol: u32, names_it: bool) -> bool {
        if let Some(t) = self.id {
            return t == symbol;
        }
        match self.name {
            Some(n) if feed.symbol_name(symbol) != n => false,
            Some(_) => {
                self.id = Some(symbol);
                true
            }
            None => {
                if names_it {
                    self.id = Some(symbol);
                }
                true
            }
        }
    }
}

/// The messages through `feed` as its batch takes them (events and rejects, message indexes from 0),
/// and after each one that gave an event of the target's book, or was refused as crossed (the message
/// was applied: the row shows what the venue sent), a row `[symbol id, ts, seq, LOBSTER orderbook
/// row...]` appended to `rows`: the time and sequence of the message's last event of that book, or of
/// the refusal.
pub fn rebuild<'a, F: MessageFeed + BookRows>(
    feed: &mut F,
    messages: impl Iterator<Item = (&'a [u8], i64)>,
    target: &mut Target<'_>,
    levels: usize,
    events: &mut Events,
    rejects: &mut Rejects,
    rows: &mut Vec<i64>,
) {
    for (index, (raw, recv_ts)) in messages.enumerate() {
        let (first_event, refused) = (events.len(), rejects.len());
        feed.record(raw, recv_ts, index, events, rejects);
        if rejects.len() > refused {
            // a refused message's events (a crossed diff's stay in the batch) are not the reference's
            if let Some((symbol, ts, seq)) = rejects.crossed(refused) {
                if symbol != NONE && target.is(feed, symbol, false) {
                    row(feed, symbol, ts, seq, levels, rows);
                }
            }
            continue;
        }
        let mut hit = None;
        for i in first_event..events.len() {
            let (ev, _) = events.get(i);
            if target.is(feed, ev.symbol, true) {
                hit = Some((ev.symbol, ev.ts, ev.seq));
            }
        }
        if let Some((symbol, ts, seq)) = hit {
            row(feed, symbol, ts, seq, levels, rows);
        }
    }
}

/// A feed's `rebuild` over a list of messages: (batch, rows, the target's name once known).
pub type Rebuilt<'py> = (Batch<'py>, Bound<'py, PyArray2<i64>>, Option<String>);

/// `rebuild` of a Python list of raw messages with optional int64 receive times, the GIL released: the
/// `rebuild` method of every feed whose input is a list of messages (Binance, LOBSTER, Kraken).
pub fn rebuild_list<'py, F: MessageFeed + BookRows>(
    py: Python<'py>,
    feed: &mut F,
    messages: &Bound<'py, PyList>,
    levels: usize,
    target: Option<String>,
    recv_ts: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<Rebuilt<'py>> {
    let (held, recv) = message_list(messages, recv_ts)?;
    let raws: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let mut goal = Target { name: target.as_deref(), id: None };
    let mut rows = Vec::new();
    let (events, rejects) = py.detach(|| {
        let mut events = Events::with_capacity(raws.len() * 2);
        let mut rejects = Rejects::default();
        let messages = raws.iter().copied().zip(recv.iter().copied());
        rebuild(&mut *feed, messages, &mut goal, levels, &mut events, &mut rejects, &mut rows);
        (events, rejects)
    });
    let name = goal.id.map(|i| feed.symbol_name(i).to_owned()).or(target);
    Ok((batch_py(py, events, rejects)?, rows_py(py, rows, levels)?, name))
}

fn row<F: BookRows>(feed: &F, symbol: u32, ts: i64, seq: i64, levels: usize, rows: &mut Vec<i64>) {
    rows.extend_from_slice(&[symbol as i64, ts, seq]);
    feed.top_row(symbol, levels, rows);
}

/// The rows as an (n, 3 + 4 levels) int64 array.
pub fn rows_py(py: Python<'_>, rows: Vec<i64>, levels: usize) -> PyResult<Bound<'_, PyArray2<i64>>> {
    let width = 3 + 4 * levels;
    let n = rows.len() / width;
    PyArray1::from_vec(py, rows).reshape([n, width])
}

/// The rows' columns from `first` on as CSV lines, `megatrading book`'s output: decimal integers, ','
/// between, '\n' after each (a row's ~40 integers cost ~10 us as Python strings, more than its rebuild).
pub fn csv(rows: ArrayView2<'_, i64>, first: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 8);
    for row in rows.rows() {
        for (i, &v) in row.iter().skip(first).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_int(&mut out, v);
        }
        out.push(b'\n');
    }
    out
}

fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let (mut n, mut at) = (v.unsigned_abs(), digits.len());
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// `csv` of an (n, k) int64 array: the rows of a native rebuild from column `first` (3: the LOBSTER row;
/// 1: its time and sequence before it).
#[pyfunction]
pub fn rows_csv<'py>(py: Python<'py>, rows: PyReadonlyArray2<'py, i64>, first: usize) -> Bound<'py, PyBytes> {
    let view = rows.as_array();
    let text = py.detach(|| csv(view, first));
    PyBytes::new(py, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use numpy::ndarray::array;

    #[test]
    fn csv_writes_every_integer_as_python_str_does() {
        let rows = array![[7, 0, -1, i64::MIN, i64::MAX], [1, 2, 3, 9_999_999_999, -9_999_999_999]];
        let want = "-1,-9223372036854775808,9223372036854775807\n3,9999999999,-9999999999\n";
        assert_eq!(String::from_utf8(csv(rows.view(), 2)).unwrap(), want);
        assert_eq!(csv(rows.view(), 5), b"\n\n");
    }
}
