//! Binance depth decode + apply: the rules of `orderbook/venues/binance.py` (`BinanceFeed`) over
//! a batch of messages: diff depth updates, wrapped REST snapshots, book tickers, trades, and
//! Binance's documented sync procedure (buffer until a snapshot, stale / straddle / contiguous,
//! discard and resync on a gap), with the reference's events, refusals and counters.

use std::collections::VecDeque;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rustc_hash::FxHashSet;

use crate::batch::{Ev, Events, Names, Refusal, NONE};
use crate::book::{kind, ASK, BID, FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, L2};
use crate::errors::{not_configured, Reason};
use crate::itch::{sorted, symbol_set, MAX_MESSAGE_BYTES};
use crate::json::{Doc, Node, Tape};
use crate::rebuild::{lobster_row, BookRows};
use crate::state::{self, State};

const MS: i64 = 1_000_000;
const MAX_PENDING_TICKERS: usize = 256;
const MAX_BUFFER: usize = 100_000; // BookSync.max_buffer

/// A level row: (side, price, size).
type Row = (i8, i64, i64);

/// `parse_fixed(text, 8)` on a string's bytes: `digits[.digits]`, at most 8 significant decimals.
/// None where Python raises (and where the value leaves int64: a documented difference).
pub fn fixed8(s: &[u8]) -> Option<i64> {
    crate::numbers::fixed(s, 8)
}

/// The keys the decoder reads, found in one pass over an object (`Fields::of`) instead of a scan
/// per key: a diff is read through a dozen of them.
const KEYS: [&str; 22] = [
    "e",
    "E",
    "T",
    "s",
    "U",
    "u",
    "pu",
    "b",
    "a",
    "B",
    "A",
    "t",
    "p",
    "q",
    "m",
    "lastUpdateId",
    "data",
    "stream",
    "snapshot",
    "symbol",
    "bids",
    "asks",
];

mod key {
    pub const E_LOWER: usize = 0;
    pub const E_UPPER: usize = 1;
    pub const T: usize = 2;
    pub const S: usize = 3;
    pub const U_UPPER: usize = 4;
    pub const U_LOWER: usize = 5;
    pub const PU: usize = 6;
    pub const B_LOWER: usize = 7;
    pub const A_LOWER: usize = 8;
    pub const B_UPPER: usize = 9;
    pub const A_UPPER: usize = 10;
    pub const TRADE_ID: usize = 11;
    pub const P: usize = 12;
    pub const Q: usize = 13;
    pub const M: usize = 14;
    pub const LAST_UPDATE_ID: usize = 15;
    pub const DATA: usize = 16;
    pub const STREAM: usize = 17;
    pub const SNAPSHOT: usize = 18;
    pub const SYMBOL: usize = 19;
    pub const BIDS: usize = 20;
    pub const ASKS: usize = 21;
}

fn key_id(k: &[u8]) -> Option<usize> {
    KEYS.iter().position(|name| name.as_bytes() == k)
}

/// Where each of `KEYS` is in one object (the last occurrence, as a Python dict keeps).
#[derive(Clone, Copy)]
struct Fields([u32; KEYS.len()]);

impl Fields {
    fn of(doc: &Doc<'_>, obj: usize) -> Fields {
        let mut at = [0u32; KEYS.len()];
        for (k, v) in doc.pairs(obj) {
            let id = match doc.raw_str(k) {
                Some((raw, false)) => key_id(raw),
                _ => doc.string(k).ok().flatten().and_then(|s| key_id(s.as_bytes())),
            };
            if let Some(id) = id {
                at[id] = v as u32; // never 0: node 0 is the message itself
            }
        }
        Fields(at)
    }

    #[inline]
    fn get(&self, k: usize) -> Option<usize> {
        let i = self.0[k];
        (i != 0).then_some(i as usize)
    }

    fn has(&self, k: usize) -> bool {
        self.0[k] != 0
    }
}

/// Why decoding failed, and so which symbol the reference's DecodeError names: `Fail` is
/// `binance._fail` (no symbol), `Hint` a KeyError/TypeError/parse_fixed error (the message's
/// symbol hint), `Done` a complete refusal (UnknownMessageType, UnknownSymbol).
enum DErr {
    Fail(String),
    Hint(String),
    Done(Refusal),
}

type D<T> = Result<T, DErr>;

struct Diff {
    sym: u32,
    first: i64,
    last: i64,
    prev: Option<i64>,
    ts: i64,
    recv_ts: i64,
    levels: Vec<Row>,
}

struct Ticker {
    u: i64,
    best: [i64; 4],
}

#[derive(Default, Clone)]
pub struct Stats {
    applied: i64,
    stale: i64,
    buffered: i64,
    gaps: i64,
    snapshots: i64,
    stale_snapshots: i64,
    tickers: i64,
    tickers_matched: i64,
    tickers_mismatched: i64,
    tickers_not_comparable: i64,
}

/// A symbol's book, BookSync and SyncStats.
#[derive(Default)]
struct Sym {
    book: L2,
    live: bool,
    last_seq: Option<i64>,
    buffer: VecDeque<Diff>,
    resyncs: i64,
    sync_snapshots: i64,
    first: bool, // the next applied diff is the first after a snapshot
    stats: Option<Stats>,
    pending: VecDeque<Ticker>,
}

enum Item {
    Diff(Diff),
    Snapshot { sym: u32, last_update_id: i64, ts: i64, levels: Vec<Row> },
    Ticker(u32, Ticker),
    Trade(Ev),
    Nothing,
}

pub struct Binance {
    names: Names,
    syms: Vec<Option<Sym>>, // by name id
    order: Vec<u32>,        // names with a book, in the order the books were made
    symbols: Option<FxHashSet<String>>,
    check_crossed: bool,
    tape: Tape,
}

fn str_node(doc: &Doc<'_>, i: usize) -> Option<String> {
    doc.string(i).ok().flatten().map(|s| s.into_owned())
}

/// `_symbol_hint`: the symbol of a parsed message, best effort, to name it in an error.
fn hint(doc: &Doc<'_>) -> String {
    if !matches!(doc.nodes[0], Node::Obj { .. }) {
        return String::new();
    }
    let data = doc.get(0, "data").unwrap_or(0);
    let mut sym = match doc.nodes[data] {
        Node::Obj { .. } => doc.get(data, "s").filter(|&i| doc.nodes[i] != Node::Null),
        _ => None,
    };
    if sym.is_none() {
        sym = doc.get(0, "symbol");
    }
    sym.and_then(|i| str_node(doc, i)).unwrap_or_default()
}

fn missing(k: usize) -> DErr {
    DErr::Hint(format!("bad message: KeyError '{}'", KEYS[k]))
}

fn field(f: &Fields, k: usize) -> D<usize> {
    f.get(k).ok_or_else(|| missing(k))
}

/// `_int`: a non-negative integer.
fn int(doc: &Doc<'_>, f: &Fields, k: usize) -> D<i64> {
    match doc.nodes[field(f, k)?] {
        Node::Int(v) if v >= 0 => Ok(v),
        _ => Err(DErr::Fail(format!("{} must be a non-negative integer", KEYS[k]))),
    }
}

/// `_str`: a non-empty string.
fn string(doc: &Doc<'_>, f: &Fields, k: usize) -> D<String> {
    match doc.string(field(f, k)?) {
        Ok(Some(s)) if !s.is_empty() => Ok(s.into_owned()),
        _ => Err(DErr::Fail(format!("{} must be a non-empty string", KEYS[k]))),
    }
}

/// `_time`: `T` if present, else `E` (ms -> ns), else `fallback`.
fn time(doc: &Doc<'_>, f: &Fields, fallback: i64) -> D<i64> {
    for k in [key::T, key::E_UPPER] {
        if f.has(k) {
            let ms = int(doc, f, k)?;
            return ms.checked_mul(MS).ok_or_else(|| DErr::Fail(format!("{} {ms} ms does not fit int64 ns", KEYS[k])));
        }
    }
    Ok(fallback)
}

/// `_fixed`: a decimal string in 1e-8 units.
#[inline]
fn fixed(doc: &Doc<'_>, i: usize, name: &str) -> D<i64> {
    let bad = || DErr::Hint(format!("{name} is not a plain decimal number"));
    match doc.raw_str(i) {
        Some((raw, false)) => fixed8(raw).ok_or_else(bad),
        Some((_, true)) => match doc.string(i) {
            Ok(Some(s)) => fixed8(s.as_bytes()).ok_or_else(bad),
            _ => Err(bad()),
        },
        None => Err(DErr::Hint(format!("{name} must be a decimal string"))),
    }
}

/// `_price`: a positive decimal.
#[inline]
fn price(doc: &Doc<'_>, i: usize, name: &str) -> D<i64> {
    let p = fixed(doc, i, name)?;
    if p <= 0 {
        return Err(DErr::Fail(format!("{name} is not a positive price")));
    }
    Ok(p)
}

/// `_level_events`: `[[price, qty], ...]`, the first bad row refused (price before qty).
fn rows(doc: &Doc<'_>, i: usize, key: &str, side: i8, out: &mut Vec<Row>) -> D<()> {
    if !matches!(doc.nodes[i], Node::Arr { .. }) {
        return Err(DErr::Fail(format!("{key} must be a list of [price, qty]")));
    }
    for row in doc.items(i) {
        let pair = match doc.nodes[row] {
            // the common row, two strings, without walking it
            Node::Arr { end } if end as usize == row + 3 && doc.skip(row + 1) == row + 2 => Some((row + 1, row + 2)),
            Node::Arr { .. } => {
                let mut items = doc.items(row);
                match (items.next(), items.next(), items.next()) {
                    (Some(p), Some(q), None) => Some((p, q)),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((p, q)) = pair else {
            return Err(DErr::Fail(format!("{key} level must be [price, qty]")));
        };
        let p = price(doc, p, key)?;
        let q = fixed(doc, q, key)?;
        out.push((side, p, q));
    }
    Ok(())
}

impl Binance {
    pub fn new(symbols: Option<FxHashSet<String>>, check_crossed: bool) -> Self {
        Binance {
            names: Names::default(),
            syms: Vec::new(),
            order: Vec::new(),
            symbols,
            check_crossed,
            tape: Tape::default(),
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        let id = self.names.intern(name);
        if self.syms.len() < self.names.len() {
            self.syms.resize_with(self.names.len(), || None);
        }
        id
    }

    /// `Feed.book`: the symbol's book and sync, made on first use unless the feed follows others.
    fn book(&mut self, sym: u32) -> Result<&mut Sym, Refusal> {
        if self.syms[sym as usize].is_none() {
            let name = self.names.name(sym);
            if self.symbols.as_ref().is_some_and(|allowed| !allowed.contains(name)) {
                let text = not_configured(name);
                return Err(Refusal::new(Reason::UnknownSymbol, text, sym, None));
            }
            self.syms[sym as usize] = Some(Sym::default());
            self.order.push(sym);
        }
        Ok(self.syms[sym as usize].as_mut().expect("just made"))
    }

    /// `BinanceFeed._state`: the book, its sync and its stats.
    fn state(&mut self, sym: u32) -> Result<&mut Sym, Refusal> {
        let s = self.book(sym)?;
        s.stats.get_or_insert_with(Stats::default);
        Ok(s)
    }

    // --- one message ------------------------------------------------------------------------

    fn message(&mut self, raw: &[u8], recv_ts: i64, events: &mut Events, msg: usize) -> Result<(), Refusal> {
        if raw.len() > MAX_MESSAGE_BYTES {
            let text = format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", raw.len());
            return Err(Refusal::new(Reason::Oversized, text, NONE, None));
        }
        let mut tape = std::mem::take(&mut self.tape);
        let item = match tape.parse(raw) {
            Err(()) => Err(Refusal::new(Reason::Malformed, "not JSON", NONE, None)),
            Ok(doc) => self.decode(&doc, recv_ts).map_err(|err| match err {
                DErr::Fail(text) => Refusal::new(Reason::Malformed, text, NONE, None),
                DErr::Hint(text) => {
                    let sym = hint(&doc);
                    let id = if sym.is_empty() { NONE } else { self.intern(&sym) };
                    Refusal::new(Reason::Malformed, text, id, None)
                }
                DErr::Done(r) => r,
            }),
        };
        self.tape = tape;
        match item? {
            Item::Diff(d) => self.on_diff(d, events, msg),
            Item::Snapshot { sym, last_update_id, ts, levels } => {
                self.on_snapshot(sym, last_update_id, ts, recv_ts, levels, events, msg)
            }
            Item::Ticker(sym, t) => self.on_ticker(sym, t),
            Item::Trade(ev) => {
                events.push(&ev, msg);
                Ok(())
            }
            Item::Nothing => Ok(()),
        }
    }

    /// `BinanceFeed._decode`: no book is touched (but a trade's symbol is checked, as there).
    fn decode(&mut self, doc: &Doc<'_>, recv_ts: i64) -> D<Item> {
        if !matches!(doc.nodes[0], Node::Obj { .. }) {
            return Err(DErr::Fail("message must be a JSON object".into()));
        }
        let root = Fields::of(doc, 0);
        if let Some(body) = root.get(key::SNAPSHOT) {
            if !matches!(doc.nodes[body], Node::Obj { .. }) {
                return Err(DErr::Fail("snapshot must be the REST depth object".into()));
            }
            let f = Fields::of(doc, body);
            let symbol = string(doc, &root, key::SYMBOL)?;
            let last_update_id = int(doc, &f, key::LAST_UPDATE_ID)?;
            let ts = time(doc, &f, recv_ts)?;
            let mut levels = Vec::new();
            rows(doc, field(&f, key::BIDS)?, "bids", BID, &mut levels)?;
            rows(doc, field(&f, key::ASKS)?, "asks", ASK, &mut levels)?;
            let sym = self.intern(&symbol);
            return Ok(Item::Snapshot { sym, last_update_id, ts, levels });
        }
        let mut stream = String::new();
        let mut ev = 0;
        if let Some(data) = root.get(key::DATA) {
            let named = match root.get(key::STREAM) {
                None => Some(String::new()),
                Some(i) => str_node(doc, i),
            };
            match (doc.nodes[data], named) {
                (Node::Obj { .. }, Some(s)) => (stream, ev) = (s, data),
                _ => return Err(DErr::Fail("combined-stream wrapper must be {stream: str, data: object}".into())),
            }
        }
        let f = if ev == 0 { root } else { Fields::of(doc, ev) };
        let mut kind_name = match f.get(key::E_LOWER) {
            None => None,
            Some(i) if doc.nodes[i] == Node::Null => None,
            Some(i) => Some(str_node(doc, i).unwrap_or_else(|| "\u{0}not a string".into())),
        };
        let ticker_keys = [key::U_LOWER, key::B_LOWER, key::B_UPPER, key::A_LOWER, key::A_UPPER];
        if kind_name.is_none() && (stream.ends_with("@bookTicker") || ticker_keys.iter().all(|&k| f.has(k))) {
            kind_name = Some("bookTicker".into()); // spot bookTicker events carry no "e"
        }
        match kind_name.as_deref() {
            Some("depthUpdate") => self.decode_diff(doc, &f, recv_ts).map(Item::Diff),
            Some(k @ ("trade" | "aggTrade")) => self.decode_trade(doc, &f, k == "trade", recv_ts).map(Item::Trade),
            Some("bookTicker") => {
                let symbol = string(doc, &f, key::S)?;
                let u = int(doc, &f, key::U_LOWER)?;
                let mut best = [0; 4];
                for (slot, k) in best.iter_mut().zip([key::B_LOWER, key::B_UPPER, key::A_LOWER, key::A_UPPER]) {
                    *slot = fixed(doc, field(&f, k)?, KEYS[k])?;
                }
                Ok(Item::Ticker(self.intern(&symbol), Ticker { u, best }))
            }
            Some("kline") => Ok(Item::Nothing),
            _ if f.has(key::LAST_UPDATE_ID) => Err(DErr::Fail(
                "REST depth snapshot without its symbol: wrap it as {\"symbol\": ..., \"snapshot\": ...}".into(),
            )),
            _ => {
                let sym = hint(doc);
                let id = if sym.is_empty() { NONE } else { self.intern(&sym) };
                let text = format!("unknown Binance event type {}", doc.shown(f.get(key::E_LOWER)));
                Err(DErr::Done(Refusal::new(Reason::UnknownMessageType, text, id, None)))
            }
        }
    }

    fn decode_diff(&mut self, doc: &Doc<'_>, f: &Fields, recv_ts: i64) -> D<Diff> {
        let (first, last) = (int(doc, f, key::U_UPPER)?, int(doc, f, key::U_LOWER)?);
        if first > last {
            return Err(DErr::Fail(format!("depthUpdate U {first} > u {last}")));
        }
        let prev = if f.has(key::PU) { Some(int(doc, f, key::PU)?) } else { None };
        let symbol = string(doc, f, key::S)?;
        let ts = time(doc, f, recv_ts)?;
        let mut levels = Vec::new();
        rows(doc, field(f, key::B_LOWER)?, "b", BID, &mut levels)?;
        rows(doc, field(f, key::A_LOWER)?, "a", ASK, &mut levels)?;
        Ok(Diff { sym: self.intern(&symbol), first, last, prev, ts, recv_ts, levels })
    }

    fn decode_trade(&mut self, doc: &Doc<'_>, f: &Fields, trade: bool, recv_ts: i64) -> D<Ev> {
        let symbol = string(doc, f, key::S)?;
        let trade_id = int(doc, f, if trade { key::TRADE_ID } else { key::A_LOWER })?;
        let p = price(doc, field(f, key::P)?, "p")?;
        let q = fixed(doc, field(f, key::Q)?, "q")?;
        let buyer_is_maker = match doc.nodes[field(f, key::M)?] {
            Node::Bool(b) => b,
            _ => return Err(DErr::Fail("m must be a boolean".into())),
        };
        let ts = time(doc, f, recv_ts)?;
        let sym = self.intern(&symbol);
        let s = self.book(sym).map_err(DErr::Done)?;
        // buyer is maker: the resting order was the bid and the aggressor sold
        let (side, flags) = if buyer_is_maker { (BID, FLAG_AGGRESSOR_ASK) } else { (ASK, FLAG_AGGRESSOR_BID) };
        let seq = if s.live { s.last_seq.unwrap_or(0) } else { 0 };
        let (price, size, order_id) = (p, q, trade_id as u64);
        Ok(Ev { kind: kind::TRADE, ts, seq, side, price, size, order_id, flags, recv_ts, symbol: sym, ..Ev::default() })
    }

    // --- sync and application ---------------------------------------------------------------

    fn on_diff(&mut self, d: Diff, events: &mut Events, msg: usize) -> Result<(), Refusal> {
        let check = self.check_crossed;
        let sym = d.sym;
        let s = self.state(sym)?;
        if !s.live {
            hold(s, d, sym)?;
            stats(s).buffered += 1;
            return Ok(());
        }
        let (last, ts) = (d.last, d.ts);
        let applied = apply_diff(s, d, events, msg)?;
        if applied && check {
            check_crossed(s, sym, last, ts)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_snapshot(
        &mut self,
        sym: u32,
        last_update_id: i64,
        ts: i64,
        recv_ts: i64,
        levels: Vec<Row>,
        events: &mut Events,
        msg: usize,
    ) -> Result<(), Refusal> {
        let check = self.check_crossed;
        let s = self.state(sym)?;
        if s.live && s.last_seq.is_some_and(|seq| last_update_id < seq) {
            stats(s).stale_snapshots += 1; // older than the book we have: it would move the book back
            return Ok(());
        }
        let staged = events.len();
        let buffered: Vec<Diff> = s.buffer.drain(..).collect();
        let marker = |k| Ev { kind: k, ts, seq: last_update_id, recv_ts, symbol: sym, ..Ev::default() };
        events.push(&marker(kind::SNAPSHOT_BEGIN), msg);
        s.book.clear();
        for &(side, price, size) in &levels {
            s.book.set_level(side, price, size).expect("decoded levels are valid");
            let e = Ev {
                kind: kind::LEVEL_SET,
                ts,
                seq: last_update_id,
                side,
                price,
                size,
                recv_ts,
                symbol: sym,
                ..Ev::default()
            };
            events.push(&e, msg);
        }
        events.push(&marker(kind::SNAPSHOT_END), msg);
        s.live = true;
        s.last_seq = Some(last_update_id);
        s.sync_snapshots += 1;
        stats(s).snapshots += 1;
        s.first = true;
        catch_up_tickers(s);
        let mut last = (last_update_id, ts);
        let mut rest = buffered.into_iter();
        while let Some(d) = rest.next() {
            let (d_last, d_ts) = (d.last, d.ts);
            match apply_diff(s, d, events, msg) {
                Ok(true) => last = (d_last, d_ts),
                Ok(false) => {}
                Err(gap) => {
                    s.buffer.extend(rest); // kept for the next snapshot
                    events.truncate(staged);
                    return Err(gap);
                }
            }
        }
        if check {
            // the events stay, as a crossed diff's do: the book is left as they made it, and a caller
            // that follows the book from the events (NativeVenueWindows) must make it so too
            check_crossed(s, sym, last.0, last.1)?;
        }
        Ok(())
    }

    fn on_ticker(&mut self, sym: u32, t: Ticker) -> Result<(), Refusal> {
        let s = self.state(sym)?;
        stats(s).tickers += 1;
        if s.pending.len() >= MAX_PENDING_TICKERS {
            s.pending.pop_front();
            stats(s).tickers_not_comparable += 1;
        }
        s.pending.push_back(t);
        catch_up_tickers(s);
        Ok(())
    }

    fn sym(&self, name: &str) -> Option<&Sym> {
        self.syms.get(self.names.id(name)? as usize)?.as_ref()
    }

    /// The book of the symbol an event's `symbol` id names, if it has one.
    pub fn book_of(&self, sym: u32) -> Option<&L2> {
        Some(&self.syms.get(sym as usize)?.as_ref()?.book)
    }
}

crate::message_feed!(Binance);

impl BookRows for Binance {
    fn symbol_name(&self, symbol: u32) -> &str {
        self.names.name(symbol)
    }

    fn top_row(&self, symbol: u32, levels: usize, rows: &mut Vec<i64>) {
        let empty = L2::default();
        let book = self.book_of(symbol).unwrap_or(&empty);
        lobster_row(book.asks.iter(), book.bids.iter(), levels, rows);
    }
}

fn stats(s: &mut Sym) -> &mut Stats {
    s.stats.get_or_insert_with(Stats::default)
}

/// `BookSync.hold`: buffer a diff until the snapshot; a full buffer is itself a loss of sync.
fn hold(s: &mut Sym, d: Diff, sym: u32) -> Result<(), Refusal> {
    if s.buffer.len() >= MAX_BUFFER {
        s.buffer.clear();
        let text = format!("more than {MAX_BUFFER} updates buffered without a snapshot");
        return Err(Refusal::new(Reason::OutOfSync, text, sym, None));
    }
    s.buffer.push_back(d);
    Ok(())
}

/// `_in_sequence`: Some(true) apply, None stale (drop), Some(false) updates were missed.
fn in_sequence(s: &Sym, d: &Diff) -> Option<bool> {
    let book_id = s.last_seq.unwrap_or(-1);
    match d.prev {
        None => (d.last > book_id).then_some(d.first <= book_id + 1), // spot
        Some(_) if s.first => (d.last >= book_id).then_some(d.first <= book_id), // futures, first
        Some(prev) => (d.last > book_id).then_some(prev == book_id),
    }
}

/// `_apply_diff`: Ok(true) if its levels (one or more) went into the book and out as events.
fn apply_diff(s: &mut Sym, d: Diff, events: &mut Events, msg: usize) -> Result<bool, Refusal> {
    match in_sequence(s, &d) {
        None => {
            stats(s).stale += 1;
            Ok(false)
        }
        Some(false) => Err(gap(s, d)),
        Some(true) => {
            for &(side, price, size) in &d.levels {
                s.book.set_level(side, price, size).expect("decoded levels are valid");
                let e = Ev {
                    kind: kind::LEVEL_SET,
                    ts: d.ts,
                    seq: d.last,
                    side,
                    price,
                    size,
                    recv_ts: d.recv_ts,
                    symbol: d.sym,
                    ..Ev::default()
                };
                events.push(&e, msg);
            }
            s.last_seq = Some(d.last);
            s.first = false;
            stats(s).applied += 1;
            catch_up_tickers(s);
            Ok(!d.levels.is_empty())
        }
    }
}

/// `_gap`: "you have missed some events. Discard your local order book and restart".
fn gap(s: &mut Sym, d: Diff) -> Refusal {
    let book_id = s.last_seq.unwrap_or(0);
    let (expected, got) = match d.prev {
        None => (book_id + 1, d.first),
        Some(_) if s.first => (book_id, d.first),
        Some(prev) => (book_id, prev),
    };
    stats(s).gaps += 1;
    if s.live {
        s.resyncs += 1;
    }
    s.live = false;
    s.buffer.clear();
    s.book.clear();
    s.first = false;
    let (sym, seq, ts) = (d.sym, d.last, d.ts);
    s.buffer.push_back(d); // the diff after the gap is the first of the new buffer
    let mut r = Refusal::new(Reason::SequenceGap, "missed depth updates", sym, Some(seq));
    r.ts = ts;
    r.gap = (expected, got);
    r
}

fn check_crossed(s: &Sym, sym: u32, seq: i64, ts: i64) -> Result<(), Refusal> {
    if !s.book.crossed() {
        return Ok(());
    }
    let [bp, bs, ap, a_s] = s.book.top();
    let text = format!("best bid ({bp}, {bs}) >= best ask ({ap}, {a_s})");
    let mut r = Refusal::new(Reason::CrossedBook, text, sym, Some(seq));
    r.ts = ts;
    Err(r)
}

/// Compare the tickers the book has caught up with: those whose u is the book's update id.
fn catch_up_tickers(s: &mut Sym) {
    let Some(book_id) = s.last_seq.filter(|_| s.live) else {
        return;
    };
    while s.pending.front().is_some_and(|t| t.u <= book_id) {
        let t = s.pending.pop_front().expect("checked");
        if t.u < book_id {
            stats(s).tickers_not_comparable += 1; // its u fell inside a diff's [U, u]
            continue;
        }
        // an empty side is None in the reference, never equal to a ticker's (price, qty)
        let same = !s.book.bids.is_empty() && !s.book.asks.is_empty() && s.book.top() == t.best;
        if same {
            stats(s).tickers_matched += 1;
        } else {
            stats(s).tickers_mismatched += 1;
        }
    }
}

// ------------------------------------------------------------------------------------ state

const STATE_KIND: &str = "BinanceFeed";

impl Stats {
    /// The counters in the order of `SyncStats` (and of `PyBinance::stats`).
    fn counters(&self) -> [i64; 10] {
        [
            self.applied,
            self.stale,
            self.buffered,
            self.gaps,
            self.snapshots,
            self.stale_snapshots,
            self.tickers,
            self.tickers_matched,
            self.tickers_mismatched,
            self.tickers_not_comparable,
        ]
    }

    fn from_counters(c: [i64; 10]) -> Stats {
        let [applied, stale, buffered, gaps, snapshots, stale_snapshots, tickers, tickers_matched, tickers_mismatched, tickers_not_comparable] =
            c;
        Stats {
            applied,
            stale,
            buffered,
            gaps,
            snapshots,
            stale_snapshots,
            tickers,
            tickers_matched,
            tickers_mismatched,
            tickers_not_comparable,
        }
    }
}

/// Buffered diffs as one flat int64 record each: first, last, prev (-1: none; a decoded pu is
/// never negative), ts, recv_ts, the number of levels, then (side, price, size) per level.
fn pack_diffs(buffer: &VecDeque<Diff>) -> Vec<i64> {
    let mut out = Vec::new();
    for d in buffer {
        out.extend_from_slice(&[d.first, d.last, d.prev.unwrap_or(-1), d.ts, d.recv_ts, d.levels.len() as i64]);
        out.extend(d.levels.iter().flat_map(|&(side, p, q)| [i64::from(side), p, q]));
    }
    out
}

/// The inverse of `pack_diffs`, checked as the decoder checks a diff: the book applies buffered
/// levels without a check of its own, so a bad one here would be a panic later, not an error now.
fn unpack_diffs(flat: &[i64], sym: u32) -> Result<VecDeque<Diff>, String> {
    let mut buffer = VecDeque::new();
    let mut rest = flat;
    while !rest.is_empty() {
        if rest.len() < 6 {
            return Err("a buffered diff cut short".into());
        }
        let (head, tail) = rest.split_at(6);
        let [first, last, prev, ts, recv_ts, n] = <[i64; 6]>::try_from(head).expect("6 values");
        rest = tail;
        let n = usize::try_from(n).ok().filter(|&n| n.checked_mul(3).is_some_and(|m| m <= rest.len()));
        let n = n.ok_or("a buffered diff's level count is wrong")?;
        if first < 0 || first > last || prev < -1 {
            return Err(format!("a buffered diff of U {first}, u {last}, pu {prev}"));
        }
        let mut levels = Vec::with_capacity(n);
        for row in rest[..3 * n].chunks_exact(3) {
            let side = match row[0] {
                1 => BID,
                -1 => ASK,
                other => return Err(format!("a buffered level of side {other}")),
            };
            if row[1] <= 0 || row[2] < 0 {
                return Err(format!("a buffered level of price {} and size {}", row[1], row[2]));
            }
            levels.push((side, row[1], row[2]));
        }
        rest = &rest[3 * n..];
        let prev = (prev >= 0).then_some(prev);
        buffer.push_back(Diff { sym, first, last, prev, ts, recv_ts, levels });
    }
    Ok(buffer)
}

impl Binance {
    /// Everything the feed keeps but its JSON scratch tape.
    fn export<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = State::new(py, STATE_KIND)?;
        s.set("check_crossed", self.check_crossed)?;
        s.set("symbols", sorted(&self.symbols))?;
        s.set("names", self.names.from(0))?;
        let books = PyList::empty(py);
        for &name in &self.order {
            let sym = self.syms[name as usize].as_ref().expect("a symbol in `order` has a book");
            let b = State::part(py, STATE_KIND);
            b.set("symbol", name)?;
            state::put_l2(&b, &sym.book)?;
            b.set("live", sym.live)?;
            b.set("last_seq", sym.last_seq)?;
            b.set("first", sym.first)?;
            b.set("resyncs", sym.resyncs)?;
            b.set("snapshots", sym.sync_snapshots)?;
            b.set("stats", sym.stats.as_ref().map(|st| st.counters().to_vec()))?;
            let pending: Vec<i64> =
                sym.pending.iter().flat_map(|t| [t.u, t.best[0], t.best[1], t.best[2], t.best[3]]).collect();
            b.set_packed("pending", &pending)?;
            b.set_packed("buffer", &pack_diffs(&sym.buffer))?;
            books.append(b.dict)?;
        }
        s.set("books", books)?;
        Ok(s.dict)
    }

    fn import(state: &Bound<'_, PyAny>) -> PyResult<Binance> {
        let s = State::open(state, STATE_KIND)?;
        let symbols: Option<Vec<String>> = s.get("symbols")?;
        let mut feed = Binance::new(symbol_set(symbols), s.get("check_crossed")?);
        feed.names = Names::from_list(s.get("names")?).map_err(|e| s.invalid(e))?;
        feed.syms.resize_with(feed.names.len(), || None);
        for b in s.parts("books")? {
            let name: u32 = b.get("symbol")?;
            let slot =
                feed.syms.get_mut(name as usize).ok_or_else(|| s.invalid(format!("a book of symbol id {name}")))?;
            if slot.is_some() {
                return Err(s.invalid(format!("two books for symbol id {name}")));
            }
            let stats: Option<[i64; 10]> = b.get("stats")?;
            let pending = b.packed("pending", 5)?;
            if pending.len() / 5 > MAX_PENDING_TICKERS {
                return Err(s.invalid(format!("{} pending book tickers", pending.len() / 5)));
            }
            let pending = pending.chunks_exact(5).map(|t| Ticker { u: t[0], best: [t[1], t[2], t[3], t[4]] }).collect();
            *slot = Some(Sym {
                book: state::take_l2(&b)?,
                live: b.get("live")?,
                last_seq: b.get("last_seq")?,
                buffer: unpack_diffs(&b.packed("buffer", 1)?, name).map_err(|e| s.invalid(e))?,
                resyncs: b.get("resyncs")?,
                sync_snapshots: b.get("snapshots")?,
                first: b.get("first")?,
                stats: stats.map(Stats::from_counters),
                pending,
            });
            feed.order.push(name);
        }
        Ok(feed)
    }
}

// ------------------------------------------------------------------------------------ Python

/// Binance decode + apply over batches; the semantics of `orderbook.venues.binance.BinanceFeed`.
#[pyclass(name = "BinanceFeed", module = "orderbook.native._core")]
pub struct PyBinance {
    feed: Binance,
}

#[pymethods]
impl PyBinance {
    #[new]
    #[pyo3(signature = (symbols = None, check_crossed = true))]
    fn new(symbols: Option<Vec<String>>, check_crossed: bool) -> Self {
        PyBinance { feed: Binance::new(symbol_set(symbols), check_crossed) }
    }

    fn book_dict<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.feed.sym(symbol).map(|s| crate::pybook::l2_dict(py, &s.book)).transpose()
    }

    /// A symbol's BookSync as (live, last_seq, resyncs, snapshots, buffered diffs), or None.
    #[allow(clippy::type_complexity)]
    fn sync(&self, symbol: &str) -> Option<(bool, Option<i64>, i64, i64, usize)> {
        self.feed.sym(symbol).map(|s| (s.live, s.last_seq, s.resyncs, s.sync_snapshots, s.buffer.len()))
    }

    /// A symbol's SyncStats counters as a dict, or None where the reference has none.
    fn stats<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(st) = self.feed.sym(symbol).and_then(|s| s.stats.clone()) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        for (k, v) in [
            ("applied", st.applied),
            ("stale", st.stale),
            ("buffered", st.buffered),
            ("gaps", st.gaps),
            ("snapshots", st.snapshots),
            ("stale_snapshots", st.stale_snapshots),
            ("tickers", st.tickers),
            ("tickers_matched", st.tickers_matched),
            ("tickers_mismatched", st.tickers_mismatched),
            ("tickers_not_comparable", st.tickers_not_comparable),
        ] {
            d.set_item(k, v)?;
        }
        Ok(Some(d))
    }
}

crate::feed_methods!(
    PyBinance,
    Binance,
    order,
    r#"The whole feed as plain values (msgpack-able), for `__setstate__` to continue from:
        {"kind": "BinanceFeed", "version": 1, "check_crossed": bool, "symbols": sorted filter or
        None, "names": the symbol table by id, "books": one dict per book in the order they were
        made: {"symbol": id, "bids" / "asks": (price, size) int64 pairs best first as bytes,
        "live": bool, "last_seq": int or None, "first": bool (the next diff is the first after a
        snapshot), "resyncs": int, "snapshots": int, "stats": the 10 SyncStats counters or None,
        "pending": book tickers awaiting the book as (u, bid price, bid size, ask price, ask
        size) int64 bytes, "buffer": diffs awaiting a snapshot as int64 bytes (first, last, prev
        or -1, ts, recv_ts, n, then n (side, price, size))}."#
);
crate::message_methods!(PyBinance, 4);
