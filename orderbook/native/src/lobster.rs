//! LOBSTER message rows: decode + apply, the rules of `orderbook/venues/lobster.py` (`LobsterFeed`)
//! over a batch of records.
//!
//! A row (`time,type,order id,size,price,direction`) names no symbol: its record's key does, as on
//! `md.raw.lobster`. Every keyed row, valid or not, takes its symbol's next `seq`; a row is decoded,
//! applied to the symbol's `L3` book and the book checked for a cross. A refused row gives a reject
//! with the reference's reason, symbol and seq, and no event; what it did to the book before the
//! refusal (a cross, an execution larger than the order) stays done, as in Python.

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use rustc_hash::FxHashSet;

use crate::batch::{batch_py, message_list, Batch, Ev, Events, MessageFeed, Names, Refusal, Rejects, NONE};
use crate::book::{kind, Level, ASK, BID, L3};
use crate::errors::{not_configured, Fault, Reason};
use crate::itch::{crossed_refusal, sorted, symbol_set, MAX_MESSAGE_BYTES};
use crate::numbers::{fixed, int64};
use crate::rebuild::{lobster_row, BookRows, Rebuilt};
use crate::state::{self, State};

const FLAG_HIDDEN: i16 = 1;
const FLAG_CROSS: i16 = 2;
const FLAG_AGGRESSOR_BID: i16 = 8;
const FLAG_AGGRESSOR_ASK: i16 = 16;
const HALT: i64 = 7;

/// `bytes.strip()`: ASCII whitespace, vertical tab included (which `trim_ascii` keeps).
fn strip(raw: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = raw.iter().position(|c| !ws(c)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &raw[start..end]
}

fn malformed(text: impl Into<String>) -> Fault {
    Fault::new(Reason::Malformed, text)
}

/// `lobster.decode_row`: one row as its event (symbol left to the caller), in the reference's order
/// of checks, so that a row wrong in two ways is refused for the same one.
pub fn decode(raw: &[u8], seq: i64, recv_ts: i64) -> Result<Ev, Fault> {
    let row = strip(raw);
    let fields: Vec<&[u8]> = row.splitn(7, |&c| c == b',').collect();
    if fields.len() != 6 {
        let n = row.split(|&c| c == b',').count();
        let head = String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned();
        return Err(malformed(format!("LOBSTER row has {n} fields, not 6: {head:?}")));
    }
    let text = |f: &[u8]| String::from_utf8_lossy(&f[..f.len().min(40)]).into_owned();
    let ts =
        fixed(fields[0], 9).ok_or_else(|| malformed(format!("LOBSTER time {:?} is not a time", text(fields[0]))))?;
    let int = |f: &[u8], name: &str| {
        int64(f).ok_or_else(|| malformed(format!("LOBSTER {name} {:?} is not an integer that fits int64", text(f))))
    };
    let etype = int(fields[1], "event type")?;
    if !(1..=HALT).contains(&etype) {
        return Err(Fault::new(Reason::UnknownMessageType, format!("LOBSTER event type {etype} is not 1..7")));
    }
    let oid = int(fields[2], "order id")?;
    let size = int(fields[3], "size")?;
    let price = int(fields[4], "price")?;
    let direction = int(fields[5], "direction")?;
    if oid < 0 || size < 0 {
        return Err(malformed(format!("LOBSTER negative order id {oid} or size {size}")));
    }
    let side = match direction {
        1 => BID,
        -1 => ASK,
        d => return Err(malformed(format!("LOBSTER direction {d} is neither 1 nor -1"))),
    };
    let base = Ev { ts, seq, recv_ts, side, price, size, order_id: oid as u64, ..Ev::default() };
    if etype == HALT {
        if !(-1..=1).contains(&price) {
            return Err(malformed(format!("LOBSTER halt row with price {price}, not -1/0/1")));
        }
        // the Status values are LOBSTER's halt prices: -1 halted, 0 quotation only, 1 trading
        return Ok(Ev { kind: kind::STATUS, side: 0, price: 0, flags: price as i16, ..base });
    }
    if price < 0 {
        return Err(malformed(format!("LOBSTER negative price {price}")));
    }
    Ok(match etype {
        1 => Ev { kind: kind::ADD, ..base },
        2 => Ev { kind: kind::CANCEL, ..base },
        3 => Ev { kind: kind::DELETE, ..base },
        4 => {
            // the direction is the resting order's: a resting bid was hit by a seller
            let flags = if side == BID { FLAG_AGGRESSOR_ASK } else { FLAG_AGGRESSOR_BID };
            Ev { kind: kind::EXECUTE, flags, ..base }
        }
        5 => Ev { kind: kind::TRADE, flags: FLAG_HIDDEN, ..base },
        _ => Ev { kind: kind::TRADE, flags: FLAG_CROSS, ..base },
    })
}

/// The feed: a book and a row count per symbol (the record key's text).
pub struct Lobster {
    pub names: Names,
    name_book: Vec<u32>,
    rows: Vec<i64>, // per name id: rows seen, the last seq
    pub books: Vec<L3>,
    pub book_name: Vec<u32>,
    symbols: Option<FxHashSet<String>>,
    check_crossed: bool,
    last_key: Option<(Vec<u8>, u32)>, // records come in runs of one key: its name without a lookup
}

type Step<T> = Result<T, Refusal>;

impl Lobster {
    pub fn new(symbols: Option<FxHashSet<String>>, check_crossed: bool) -> Self {
        Lobster {
            names: Names::default(),
            name_book: Vec::new(),
            rows: Vec::new(),
            books: Vec::new(),
            book_name: Vec::new(),
            symbols,
            check_crossed,
            last_key: None,
        }
    }

    /// A key's symbol id: its text as `key.decode(errors="replace")` gives it.
    fn name(&mut self, key: &[u8]) -> u32 {
        if let Some((k, id)) = &self.last_key {
            if k == key {
                return *id;
            }
        }
        let id = self.names.intern(&String::from_utf8_lossy(key));
        if self.rows.len() < self.names.len() {
            self.rows.resize(self.names.len(), 0);
            self.name_book.resize(self.names.len(), NONE);
        }
        self.last_key = Some((key.to_vec(), id));
        id
    }

    /// `Feed.book`: the symbol's book, made on first use unless the feed follows other symbols.
    fn book(&mut self, name: u32) -> Step<usize> {
        let book = self.name_book[name as usize];
        if book != NONE {
            return Ok(book as usize);
        }
        let symbol = self.names.name(name);
        if self.symbols.as_ref().is_some_and(|allowed| !allowed.contains(symbol)) {
            let text = not_configured(symbol);
            return Err(Refusal::new(Reason::UnknownSymbol, text, name, None));
        }
        self.name_book[name as usize] = self.books.len() as u32;
        self.books.push(L3::default());
        self.book_name.push(name);
        Ok(self.books.len() - 1)
    }

    pub fn book_by_name(&self, name: &str) -> Option<&L3> {
        let book = *self.name_book.get(self.names.id(name)? as usize)?;
        (book != NONE).then(|| &self.books[book as usize])
    }

    /// `LobsterFeed.on_record`: one keyed row, its event or why it was refused.
    pub fn message(&mut self, key: Option<&[u8]>, raw: &[u8], recv_ts: i64) -> Step<Ev> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(Refusal::new(Reason::Malformed, "LOBSTER record without a symbol key", NONE, None));
        };
        let name = self.name(key);
        self.rows[name as usize] += 1;
        let seq = self.rows[name as usize];
        if raw.len() > MAX_MESSAGE_BYTES {
            let text = format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", raw.len());
            return Err(Refusal::new(Reason::Oversized, text, name, Some(seq)));
        }
        let ev = decode(raw, seq, recv_ts).map_err(|f| Refusal::of(f, name, Some(seq)))?;
        let b = self.book(name)?;
        let book = &mut self.books[b];
        book.apply(ev.kind, ev.order_id, ev.side, ev.price, ev.size, 0).map_err(|f| Refusal::of(f, name, Some(seq)))?;
        if self.check_crossed && book.crossed() {
            return Err(crossed_refusal(book, name, seq, ev.ts));
        }
        Ok(Ev { symbol: name, ..ev })
    }

    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        raw: &[u8],
        recv_ts: i64,
        index: usize,
        out: (&mut Events, &mut Rejects),
    ) {
        match self.message(key, raw, recv_ts) {
            Ok(ev) => out.0.push(&ev, index),
            Err(r) => out.1.push(r, index),
        }
    }
}

/// The feed with every row keyed alike: a capture file's rows, all of one ticker (`megatrading book`).
pub struct Keyed<'a> {
    pub feed: &'a mut Lobster,
    pub key: &'a [u8],
}

impl MessageFeed for Keyed<'_> {
    fn record(&mut self, raw: &[u8], recv_ts: i64, index: usize, events: &mut Events, rejects: &mut Rejects) {
        self.feed.record(Some(self.key), raw, recv_ts, index, (events, rejects));
    }
}

impl BookRows for Keyed<'_> {
    fn symbol_name(&self, symbol: u32) -> &str {
        self.feed.names.name(symbol)
    }

    fn top_row(&self, symbol: u32, levels: usize, rows: &mut Vec<i64>) {
        let feed = &self.feed;
        let book = &feed.books[feed.name_book[symbol as usize] as usize];
        let total = |(p, l): (i64, Level)| (p, l.total);
        lobster_row(book.asks.iter().map(total), book.bids.iter().map(total), levels, rows);
    }
}

// ------------------------------------------------------------------------------------ state

const STATE_KIND: &str = "LobsterFeed";

impl Lobster {
    fn export<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = State::new(py, STATE_KIND)?;
        s.set("check_crossed", self.check_crossed)?;
        s.set("symbols", sorted(&self.symbols))?;
        s.set("names", self.names.from(0))?;
        s.set_packed("rows", &self.rows)?;
        state::put_l3_books(&s, &self.books, &self.book_name)?;
        Ok(s.dict)
    }

    fn import(state: &Bound<'_, PyAny>) -> PyResult<Lobster> {
        let s = State::open(state, STATE_KIND)?;
        let symbols: Option<Vec<String>> = s.get("symbols")?;
        let mut feed = Lobster::new(symbol_set(symbols), s.get("check_crossed")?);
        feed.names = Names::from_list(s.get("names")?).map_err(|e| s.invalid(e))?;
        let n = feed.names.len();
        feed.rows = s.packed("rows", 1)?;
        if feed.rows.len() != n || feed.rows.iter().any(|&r| r < 0) {
            return Err(
                s.invalid(format!("rows: {} counts, not one count of rows per each of {n} names", feed.rows.len()))
            );
        }
        (feed.books, feed.book_name, feed.name_book) = state::take_l3_books(&s, &feed.names)?;
        Ok(feed)
    }
}

// ------------------------------------------------------------------------------------ Python

/// LOBSTER rows decode + apply over batches; the semantics of `orderbook.venues.lobster.LobsterFeed`.
#[pyclass(name = "LobsterFeed", module = "orderbook.native._core")]
pub struct PyLobster {
    feed: Lobster,
}

/// `PyLobster::rebuild`'s (batch, rows, target).

#[pymethods]
impl PyLobster {
    #[new]
    #[pyo3(signature = (symbols = None, check_crossed = true))]
    fn new(symbols: Option<Vec<String>>, check_crossed: bool) -> Self {
        PyLobster { feed: Lobster::new(symbol_set(symbols), check_crossed) }
    }

    /// Records of `md.raw.lobster`: each message row with its key (bytes, or None: refused, as a row
    /// names no symbol), optional int64 receive times: (events, rejects) as for the other feeds.
    #[pyo3(signature = (messages, keys, recv_ts = None))]
    fn on_messages<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
        keys: &Bound<'py, PyList>,
        recv_ts: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Batch<'py>> {
        let (held, recv) = message_list(messages, recv_ts)?;
        if keys.len() != held.len() {
            return Err(PyValueError::new_err(format!("{} messages but {} keys", held.len(), keys.len())));
        }
        let held_keys: Vec<Option<Bound<'py, PyBytes>>> = keys
            .iter()
            .map(|k| if k.is_none() { Ok(None) } else { Ok(Some(k.cast_into::<PyBytes>()?)) })
            .collect::<PyResult<_>>()?;
        let raws: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let keys: Vec<Option<&[u8]>> = held_keys.iter().map(|k| k.as_ref().map(|b| b.as_bytes())).collect();
        let feed = &mut self.feed;
        let (events, rejects) = py.detach(|| {
            let mut events = Events::with_capacity(raws.len());
            let mut rejects = Rejects::default();
            for (i, raw) in raws.iter().enumerate() {
                feed.record(keys[i], raw, recv[i], i, (&mut events, &mut rejects));
            }
            (events, rejects)
        });
        batch_py(py, events, rejects)
    }

    /// `megatrading book` on the native path: the rows of one ticker's file, each keyed `key`, applied as
    /// `on_messages` applies them, and after each that gave an event of `target`'s book (None: the first
    /// book an event names), or was refused as crossed, the row [symbol id, ts, seq, LOBSTER orderbook
    /// row of `levels`]: (batch, rows, the target once known).
    #[pyo3(signature = (messages, key, levels, target = None, recv_ts = None))]
    fn rebuild<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
        key: &[u8],
        levels: usize,
        target: Option<String>,
        recv_ts: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Rebuilt<'py>> {
        let mut keyed = Keyed { feed: &mut self.feed, key };
        crate::rebuild::rebuild_list(py, &mut keyed, messages, levels, target, recv_ts)
    }

    /// A symbol's book as {"bids": {price: size}, "asks": {...}} best first, or None.
    fn book_dict<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.feed.book_by_name(symbol).map(|b| crate::pybook::l3_dict(py, b)).transpose()
    }

    /// A symbol's resting orders: {id: (side, price, size)}.
    fn orders<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.feed.book_by_name(symbol).map(|b| crate::pybook::orders_dict(py, b)).transpose()
    }

    /// The orders at one level of a symbol's book in time priority, as [(id, size)].
    fn queue(&self, symbol: &str, side: i8, price: i64) -> Vec<(u64, i64)> {
        self.feed.book_by_name(symbol).map(|b| b.queue(side, price)).unwrap_or_default()
    }

    /// {symbol: rows seen} (`LobsterFeed.rows`: the last seq of each symbol a keyed row named).
    fn rows(&self) -> Vec<(String, i64)> {
        let names = &self.feed.names;
        (0..names.len()).map(|i| (names.name(i as u32).to_owned(), self.feed.rows[i])).collect()
    }
}

crate::feed_methods!(
    PyLobster,
    Lobster,
    book_name,
    r#"The whole feed as plain values (msgpack-able), for `__setstate__` to continue from:
        {"kind": "LobsterFeed", "version": 1, "check_crossed": bool, "symbols": sorted filter or None,
        "names": the symbol table by id, "rows": rows seen per symbol id as packed int64 bytes,
        "books": [{"symbol": id, "bids": bytes, "asks": bytes}] in the order the books were made
        (orders as `L3Book.__getstate__` packs them)}."#
);

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_rows(feed: &mut Lobster, rows: &[&str]) -> Vec<Result<Ev, Reason>> {
        rows.iter().map(|r| feed.message(Some(b"AAPL"), r.as_bytes(), 0).map_err(|r| r.fault.reason)).collect()
    }

    #[test]
    fn rows_build_the_book_and_refusals_keep_their_seq() {
        let mut feed = Lobster::new(None, true);
        let out = feed_rows(
            &mut feed,
            &[
                "34200.1,1,11,100,5853300,1",
                "34200.2,1,12,50,5853400,-1",
                "34200.3,4,11,30,5853300,1",
                "34200.4,3,99,1,5853300,1",
                "34200.5,8,1,1,1,1",
                "34200.6, 7,0,0,-1,-1\r\n",
                "34200.7,1,13,10,5853500,1",
            ],
        );
        let ok: Vec<bool> = out.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, true, true, false, false, false, false]);
        assert_eq!(out[3].as_ref().err(), Some(&Reason::UnknownOrder));
        assert_eq!(out[4].as_ref().err(), Some(&Reason::UnknownMessageType));
        assert_eq!(out[5].as_ref().err(), Some(&Reason::Malformed)); // a space inside the row
        assert_eq!(out[6].as_ref().err(), Some(&Reason::CrossedBook)); // applied, then refused
        let exec = out[2].as_ref().unwrap();
        assert_eq!((exec.kind, exec.seq, exec.flags, exec.price), (kind::EXECUTE, 3, FLAG_AGGRESSOR_ASK, 5853300));
        let book = feed.book_by_name("AAPL").unwrap();
        assert_eq!(book.order(11).map(|o| o.size), Some(70));
        assert!(book.order(13).is_some());
        assert_eq!(feed.rows, [7]);
    }

    #[test]
    fn a_halt_row_is_a_status_event() {
        let ev = decode(b"34200.0,7,0,0,-1,-1\n", 1, 5).unwrap();
        assert_eq!((ev.kind, ev.side, ev.price, ev.flags, ev.recv_ts), (kind::STATUS, 0, 0, -1, 5));
        assert!(decode(b"34200.0,7,0,0,2,-1", 1, 0).is_err());
    }
}
