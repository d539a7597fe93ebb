//! Coinbase Exchange websocket decode + apply: the rules of `orderbook/venues/coinbase.py` (`CoinbaseFeed`)
//! over a batch of messages: the `level2` channel on L2 books, the `full` channel on L3 books with its
//! sequence rule (stale dropped, a gap drops the book to awaiting its snapshot, messages buffered meanwhile
//! and replayed on it), REST snapshots in parts, trades; with the reference's events and refusals.
//!
//! Order ids: Coinbase's are UUID strings, an event row's are u64. An order gets the feed's next id when
//! it comes to rest (`open`, a level-3 snapshot entry) and keeps it while it rests; ids are never reused,
//! and a product's table holds only its resting orders (a day of the full channel sees millions of
//! orders). A level-2 product's trade gets a fresh id for its maker. With `order_names` on, every id
//! handed out is logged with its UUID (`take_order_names`), which `orderbook.native.CoinbaseFeed` turns
//! back into the reference's string ids.

use std::borrow::Cow;
use std::collections::VecDeque;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::batch::{Ev, Events, Names, Refusal, NONE};
use crate::book::{kind, ASK, BID, FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, L2, L3};
use crate::errors::{not_configured, Fault, Reason};
use crate::itch::{crossed_refusal, sorted, symbol_set, MAX_MESSAGE_BYTES};
use crate::json::{Doc, Node, Tape};
use crate::kraken::{days_from_civil, days_in_month};
use crate::numbers::fixed;
use crate::rebuild::{lobster_row, BookRows};
use crate::state::{self, State};

const DECIMALS: u32 = 8;
const MAX_EARLY_MATCHES: usize = 1_000;
const MAX_BUFFER: usize = 100_000; // BookSync.max_buffer
const IGNORED_TYPES: [&str; 4] = ["subscriptions", "heartbeat", "ticker", "status"];

type R<T> = Result<T, Refusal>;

fn bad(text: impl Into<String>) -> Refusal {
    Refusal::new(Reason::Malformed, text, NONE, None)
}

fn side_name(side: i8) -> &'static str {
    if side == BID {
        "BID"
    } else {
        "ASK"
    }
}

/// The aggressor of a trade whose maker rested on `maker_side`: the other side.
fn trade_flags(maker_side: i8) -> i16 {
    if maker_side == BID {
        FLAG_AGGRESSOR_ASK
    } else {
        FLAG_AGGRESSOR_BID
    }
}

// ------------------------------------------------------------------------------------ decoding

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Received,
    Open,
    Done,
    Match,
    Change,
    Activate,
}

impl Op {
    fn of(typ: &str) -> Option<Op> {
        Some(match typ {
            "received" => Op::Received,
            "open" => Op::Open,
            "done" => Op::Done,
            "match" => Op::Match,
            "change" => Op::Change,
            "activate" => Op::Activate,
            _ => return None,
        })
    }
}

/// One decoded full-channel message (`coinbase.FullOp`), buffered as such while a book awaits its snapshot.
#[derive(Clone, Debug)]
struct FullOp {
    op: Op,
    seq: i64,
    ts: i64,
    recv_ts: i64,
    order: Box<str>,
    side: i8,
    price: Option<i64>,
    size: Option<i64>, // open: remaining_size; match: size; change: new_size; done: remaining_size
    new_price: Option<i64>,
}

/// A message's field readers, each refusing as the reference's helpers refuse.
struct Fields<'d, 'a> {
    doc: &'d Doc<'a>,
}

impl<'a> Fields<'_, 'a> {
    fn get(&self, key: &str) -> Option<usize> {
        self.doc.get(0, key)
    }

    /// A present, non-null value (`msg.get(key) is not None`).
    fn given(&self, key: &str) -> Option<usize> {
        self.get(key).filter(|&i| self.doc.nodes[i] != Node::Null)
    }

    /// `_text`: a non-empty string that is Unicode text.
    fn text_at(&self, i: usize) -> Option<Cow<'a, str>> {
        self.doc.string(i).ok().flatten().filter(|s| !s.is_empty())
    }

    /// `_str`.
    fn text(&self, key: &str) -> R<Cow<'a, str>> {
        let i = self.get(key);
        i.and_then(|i| self.text_at(i))
            .ok_or_else(|| bad(format!("{key} must be a non-empty string, got {}", self.doc.shown(i))))
    }

    /// `_count`: a non-negative int64.
    fn count_at(&self, i: usize) -> Option<i64> {
        match self.doc.nodes[i] {
            Node::Int(v) if v >= 0 => Some(v),
            _ => None,
        }
    }

    /// `_int(msg, key, default)`.
    fn count(&self, key: &str, default: Option<i64>) -> R<i64> {
        match self.get(key) {
            None => default,
            Some(i) => self.count_at(i),
        }
        .ok_or_else(|| bad(format!("{key} must be a non-negative integer, got {}", self.doc.shown(self.get(key)))))
    }

    /// `_px`: a decimal string at 8 decimals.
    fn px_at(&self, i: Option<usize>, name: &str) -> R<i64> {
        let text = i.and_then(|i| self.doc.string(i).ok().flatten());
        text.and_then(|t| fixed(t.as_bytes(), DECIMALS))
            .ok_or_else(|| bad(format!("{name} {} is not a plain decimal number of int64", self.doc.shown(i))))
    }

    fn px(&self, key: &str) -> R<i64> {
        self.px_at(self.get(key), key)
    }

    /// `_opt_px`.
    fn opt_px(&self, key: &str) -> R<Option<i64>> {
        self.given(key).map(|i| self.px_at(Some(i), key)).transpose()
    }

    /// `_side`.
    fn side_at(&self, i: Option<usize>) -> R<i8> {
        match i.and_then(|i| self.doc.string(i).ok().flatten()).as_deref() {
            Some("buy") => Ok(BID),
            Some("sell") => Ok(ASK),
            _ => Err(bad(format!("side must be 'buy' or 'sell', got {}", self.doc.shown(i)))),
        }
    }

    fn side(&self) -> R<i8> {
        self.side_at(self.get("side"))
    }

    /// `parse_time` of the `time` field.
    fn time(&self) -> R<i64> {
        let i = self.get("time");
        let text = i.and_then(|i| self.doc.string(i).ok().flatten());
        text.and_then(|t| iso_ns(&t))
            .ok_or_else(|| bad(format!("time {} is not an ISO-8601 UTC time int64 ns hold", self.doc.shown(i))))
    }

    /// `_opt_time`.
    fn opt_time(&self) -> R<i64> {
        if self.given("time").is_some() {
            self.time()
        } else {
            Ok(0)
        }
    }

    /// The items of a list node, none for another node.
    fn cells(&self, i: usize) -> Vec<usize> {
        match self.doc.nodes[i] {
            Node::Arr { .. } => self.doc.items(i).collect(),
            _ => Vec::new(),
        }
    }

    /// `_levels`: rows of `width` values, their price and size read.
    fn levels(&self, key: &str, width: usize) -> R<Vec<(i64, i64, usize)>> {
        let i = self.get(key).filter(|&i| matches!(self.doc.nodes[i], Node::Arr { .. }));
        let i = i.ok_or_else(|| bad(format!("{key} must be a list")))?;
        let mut out = Vec::new();
        for row in self.doc.items(i) {
            let cells = self.cells(row);
            if cells.len() != width {
                return Err(bad(format!("{key} entry is not a list of {width}")));
            }
            out.push((self.px_at(Some(cells[0]), "price")?, self.px_at(Some(cells[1]), "size")?, row));
        }
        Ok(out)
    }

    /// `_decode_full`.
    fn full(&self, op: Op, recv_ts: i64) -> R<(Cow<'a, str>, FullOp)> {
        let product = self.text("product_id")?;
        let (seq, ts) = (self.count("sequence", None)?, self.time()?);
        let mut f =
            FullOp { op, seq, ts, recv_ts, order: "".into(), side: 0, price: None, size: None, new_price: None };
        match op {
            Op::Open => {
                f.order = self.text("order_id")?.into();
                f.side = self.side()?;
                f.price = Some(self.px("price")?);
                f.size = Some(self.px("remaining_size")?);
            }
            Op::Match => {
                f.order = self.text("maker_order_id")?.into();
                f.side = self.side()?;
                f.price = Some(self.px("price")?);
                f.size = Some(self.px("size")?);
            }
            Op::Done => {
                f.order = self.text("order_id")?.into();
                f.side = self.side()?;
                f.price = self.opt_px("price")?;
                f.size = self.opt_px("remaining_size")?;
            }
            Op::Change => {
                f.order = self.text("order_id")?.into();
                f.side = self.side()?;
                f.price = self.opt_px("price")?;
                f.size = self.opt_px("new_size")?;
                f.new_price = self.opt_px("new_price")?;
            }
            Op::Received | Op::Activate => {}
        }
        Ok((product, f))
    }

    /// `_snapshot_entries`: level 3 `[price, size, order_id]`, level 2 `[price, size, num_orders]`.
    fn entries(&self, key: &str, l3: bool) -> R<Vec<(i64, i64, Box<str>)>> {
        let rows = self.levels(key, 3)?;
        let mut out = Vec::with_capacity(rows.len());
        for (price, size, row) in rows {
            let extra = self.doc.items(row).nth(2).expect("a row of 3");
            if l3 {
                let id = self.text_at(extra).ok_or_else(|| bad(format!("{key} entry has no order id")))?;
                out.push((price, size, id.into()));
            } else {
                self.count_at(extra).ok_or_else(|| bad(format!("{key} entry has no order count")))?;
                out.push((price, size, "".into()));
            }
        }
        Ok(out)
    }
}

/// `parse_time`: "2021-04-17T16:43:37.075687Z" (the `Z`, or `+00:00`, may be left out) -> ns since the
/// epoch, exactly; None for another form, a date `datetime` refuses, or a time outside int64 ns.
fn iso_ns(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |v, &d| v * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let mut at = 19;
    let mut frac = 0;
    if sep(at, b'.') {
        let n = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        frac = num(at + 1, n)? * 10_i64.pow(9 - n as u32);
        at += 1 + n;
    }
    if !matches!(&b[at..], b"" | b"Z" | b"+00:00") {
        return None;
    }
    let valid = (1..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && h <= 23
        && mi <= 59
        && s <= 59;
    if !valid {
        return None;
    }
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    i64::try_from(i128::from(seconds) * 1_000_000_000 + i128::from(frac)).ok()
}

// ------------------------------------------------------------------------------------ the feed

enum Book {
    L2(L2),
    L3(L3),
}

impl Book {
    fn name(&self) -> &'static str {
        match self {
            Book::L2(_) => "L2",
            Book::L3(_) => "L3",
        }
    }
}

/// REST snapshot parts received so far (`coinbase._StagedSnapshot`).
struct Staged {
    l3: bool,
    seq: i64,
    parts: i64,
    ts: i64,
    recv_ts: i64,
    next_part: i64,
    bids: Vec<(i64, i64, Box<str>)>,
    asks: Vec<(i64, i64, Box<str>)>,
}

/// A product's book, its BookSync, its level-2 message count and its staged snapshot.
struct Sym {
    book: Book,
    ids: FxHashMap<Box<str>, u64>, // the resting orders' ids (L3)
    live: bool,
    last_seq: Option<i64>,
    resyncs: i64,
    snapshots: i64,
    buffer: VecDeque<FullOp>,
    l2_count: i64,
    staged: Option<Staged>,
}

impl Sym {
    fn new(l3: bool) -> Sym {
        Sym {
            book: if l3 { Book::L3(L3::default()) } else { Book::L2(L2::default()) },
            ids: FxHashMap::default(),
            live: false,
            last_seq: None,
            resyncs: 0,
            snapshots: 0,
            buffer: VecDeque::new(),
            l2_count: 0,
            staged: None,
        }
    }

    fn lose_sync(&mut self) {
        if self.live {
            self.resyncs += 1;
        }
        self.live = false;
        self.buffer.clear();
    }

    /// A sequence gap: the book drops to awaiting a snapshot, holding `ops` (the message after the gap first)
    /// for its replay; the SequenceGap refusal.
    fn gap(&mut self, sym: u32, text: &str, expected: i64, ops: impl IntoIterator<Item = FullOp>) -> Refusal {
        self.lose_sync();
        self.buffer.extend(ops);
        let got = self.buffer.front().map_or(expected, |op| op.seq);
        let mut r = Refusal::new(Reason::SequenceGap, text, sym, None);
        r.gap = (expected, got);
        r
    }

    fn go_live(&mut self, seq: i64) {
        self.live = true;
        self.last_seq = Some(seq);
        self.snapshots += 1;
    }

    fn l3(&mut self) -> &mut L3 {
        match &mut self.book {
            Book::L3(b) => b,
            Book::L2(_) => unreachable!("a full-channel message reaches an L3 book only"),
        }
    }

    fn clear_l3(&mut self) {
        self.l3().clear();
        self.ids.clear();
    }

    fn crossed(&self, check: bool, sym: u32, seq: i64, ts: i64) -> R<()> {
        if !check {
            return Ok(());
        }
        match &self.book {
            Book::L3(b) if b.crossed() => Err(crossed_refusal(b, sym, seq, ts)),
            Book::L2(b) if b.crossed() => {
                let [bp, bs, ap, a_s] = b.top();
                let text = format!("best bid ({bp}, {bs}) >= best ask ({ap}, {a_s})");
                let mut r = Refusal::new(Reason::CrossedBook, text, sym, Some(seq));
                r.ts = ts;
                Err(r)
            }
            _ => Ok(()),
        }
    }
}

pub struct Coinbase {
    names: Names,
    syms: Vec<Option<Sym>>,                  // by name id
    order: Vec<u32>,                         // names with a book, in the order the books were made
    early: FxHashMap<u32, VecDeque<FullOp>>, // matches of products with no book yet
    symbols: Option<FxHashSet<String>>,
    check_crossed: bool,
    next_id: u64,
    order_names: Option<Vec<(u64, Box<str>)>>,
    tape: Tape,
}

/// The events of one message: they share product, times and sequence.
struct Stamp {
    sym: u32,
    ts: i64,
    seq: i64,
    recv_ts: i64,
}

impl Stamp {
    fn ev(&self, k: i8, side: i8, price: i64, size: i64, order_id: u64) -> Ev {
        Ev {
            kind: k,
            side,
            price,
            size,
            order_id,
            ts: self.ts,
            seq: self.seq,
            recv_ts: self.recv_ts,
            symbol: self.sym,
            ..Ev::default()
        }
    }
}

impl Coinbase {
    pub fn new(symbols: Option<FxHashSet<String>>, check_crossed: bool, order_names: bool) -> Self {
        Coinbase {
            names: Names::default(),
            syms: Vec::new(),
            order: Vec::new(),
            early: FxHashMap::default(),
            symbols,
            check_crossed,
            next_id: 1,
            order_names: order_names.then(Vec::new),
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

    fn sym_mut(&mut self, id: u32) -> &mut Sym {
        self.syms[id as usize].as_mut().expect("book_for made it")
    }

    fn sym(&self, name: &str) -> Option<&Sym> {
        self.names.id(name).and_then(|id| self.syms[id as usize].as_ref())
    }

    /// A new order id, logged with its UUID where the names are kept.
    fn new_id(&mut self, uuid: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(log) = &mut self.order_names {
            log.push((id, uuid.into()));
        }
        id
    }

    /// `Feed.check_symbol` for a product about to get a book (its name is text: `_str` read it).
    fn check_symbol(&mut self, product: &str) -> R<u32> {
        let id = self.intern(product);
        if self.symbols.as_ref().is_some_and(|allowed| !allowed.contains(product)) {
            let text = not_configured(product);
            return Err(Refusal::new(Reason::UnknownSymbol, text, id, None));
        }
        Ok(id)
    }

    /// `CoinbaseFeed._book`: the product's book, made as `l3` on first sight; a product never changes type.
    fn book_for(&mut self, product: &str, l3: bool) -> R<u32> {
        if let Some(id) = self.names.id(product) {
            if let Some(s) = &self.syms[id as usize] {
                let have = s.book.name();
                if matches!(s.book, Book::L3(_)) != l3 {
                    let want = if l3 { "L3" } else { "L2" };
                    let text = format!("{product} keeps an {have} book; a {want} message cannot apply");
                    return Err(Refusal::new(Reason::BookError, text, id, None));
                }
                return Ok(id);
            }
        }
        let id = self.check_symbol(product)?;
        let mut s = Sym::new(l3);
        if let Some(early) = self.early.remove(&id) {
            if l3 {
                s.buffer.extend(early); // they precede every later full-channel message
            }
        }
        self.syms[id as usize] = Some(s);
        self.order.push(id);
        Ok(id)
    }

    // --- one message ------------------------------------------------------------------------

    fn message(&mut self, raw: &[u8], recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        if raw.len() > MAX_MESSAGE_BYTES {
            let text = format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", raw.len());
            return Err(Refusal::new(Reason::Oversized, text, NONE, None));
        }
        let mut tape = std::mem::take(&mut self.tape);
        let result = match tape.parse(raw) {
            Err(()) => Err(bad("not JSON")),
            Ok(doc) => {
                let result = self.dispatch(&doc, recv_ts, events, msg);
                // a DecodeError names the message's product and sequence where it has them (`_where`)
                result.map_err(|mut r| {
                    if matches!(r.fault.reason, Reason::Malformed | Reason::UnknownMessageType) {
                        (r.symbol, r.seq) = self.place(&doc);
                    }
                    r
                })
            }
        };
        self.tape = tape;
        result
    }

    /// `_where`: the product (interned) and the sequence a message names, where they are valid.
    fn place(&mut self, doc: &Doc<'_>) -> (u32, Option<i64>) {
        if !matches!(doc.nodes[0], Node::Obj { .. }) {
            return (NONE, None);
        }
        let f = Fields { doc };
        let product = f.get("product_id").and_then(|i| f.text_at(i));
        let seq = f.get("sequence").and_then(|i| f.count_at(i));
        (product.map_or(NONE, |p| self.intern(&p)), seq)
    }

    fn dispatch(&mut self, doc: &Doc<'_>, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        if !matches!(doc.nodes[0], Node::Obj { .. }) {
            return Err(bad("expected a JSON object"));
        }
        let f = Fields { doc };
        let typ_node = f.get("type").filter(|&i| matches!(doc.nodes[i], Node::Str { .. }));
        let Some(typ_node) = typ_node else {
            return Err(bad("message has no type"));
        };
        let typ = doc.string(typ_node).ok().flatten();
        let typ = typ.as_deref().unwrap_or("");
        if IGNORED_TYPES.contains(&typ) {
            return Ok(());
        }
        match typ {
            "match" | "last_match" => self.on_match(&f, typ == "match", recv_ts, events, msg),
            "snapshot" => {
                let product = f.text("product_id")?;
                let (bids, asks) = (f.levels("bids", 2)?, f.levels("asks", 2)?);
                let ts = f.opt_time()?;
                let sym = self.book_for(&product, false)?;
                self.set_l2(sym, &bids, &asks, ts, recv_ts, events, msg)
            }
            "l2update" => self.on_l2update(&f, recv_ts, events, msg),
            "l2_snapshot" | "l3_snapshot" => self.on_rest_snapshot(&f, typ == "l3_snapshot", recv_ts, events, msg),
            "error" => {
                let said = |key: &str| {
                    let i = f.get(key);
                    match i.map(|i| doc.string(i)) {
                        Some(Ok(Some(text))) => text.into_owned(),
                        _ => doc.shown(i),
                    }
                };
                let text: String = format!("{}: {}", said("message"), said("reason")).chars().take(200).collect();
                let (symbol, seq) = self.place(doc);
                Err(Refusal::new(Reason::VenueError, format!("Coinbase error message {text}"), symbol, seq))
            }
            _ => match Op::of(typ) {
                Some(op) => {
                    let (product, op) = f.full(op, recv_ts)?;
                    let sym = self.book_for(&product, true)?;
                    self.on_full(sym, op, events, msg)
                }
                None => {
                    let text = format!("unknown message type {}", doc.shown(Some(typ_node)));
                    Err(Refusal::new(Reason::UnknownMessageType, text, NONE, None))
                }
            },
        }
    }

    // --- level2 -----------------------------------------------------------------------------

    /// A whole L2 book from (price, size, anything) rows: a level2 `snapshot`, or a REST level-2 one.
    #[allow(clippy::too_many_arguments)]
    fn set_l2<T>(
        &mut self,
        sym: u32,
        bids: &[(i64, i64, T)],
        asks: &[(i64, i64, T)],
        ts: i64,
        recv_ts: i64,
        events: &mut Events,
        msg: usize,
    ) -> R<()> {
        let check = self.check_crossed;
        let s = self.sym_mut(sym);
        s.l2_count += 1;
        let stamp = Stamp { sym, ts, seq: s.l2_count, recv_ts };
        let Book::L2(book) = &mut s.book else { unreachable!("an L2 message reaches an L2 book only") };
        book.clear();
        events.push(&stamp.ev(kind::SNAPSHOT_BEGIN, 0, 0, 0, 0), msg);
        for (side, rows) in [(BID, bids), (ASK, asks)] {
            for &(price, size, _) in rows {
                book.set_level(side, price, size).expect("decoded levels are valid");
                events.push(&stamp.ev(kind::LEVEL_SET, side, price, size, 0), msg);
            }
        }
        events.push(&stamp.ev(kind::SNAPSHOT_END, 0, 0, 0, 0), msg);
        s.go_live(stamp.seq);
        s.crossed(check, sym, stamp.seq, ts)
    }

    fn on_l2update(&mut self, f: &Fields<'_, '_>, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        let product = f.text("product_id")?;
        let ts = f.time()?;
        let changes = f.get("changes").filter(|&i| matches!(f.doc.nodes[i], Node::Arr { .. }));
        let changes = changes.ok_or_else(|| bad("changes must be a list"))?;
        let mut levels = Vec::new();
        for ch in f.doc.items(changes) {
            let cells = f.cells(ch);
            if cells.len() != 3 {
                return Err(bad("change is not [side, price, size]"));
            }
            levels.push((
                f.side_at(Some(cells[0]))?,
                f.px_at(Some(cells[1]), "price")?,
                f.px_at(Some(cells[2]), "size")?,
            ));
        }
        let sym = self.book_for(&product, false)?;
        let check = self.check_crossed;
        let s = self.sym_mut(sym);
        s.l2_count += 1;
        let seq = s.l2_count;
        if !s.live {
            let text = "l2update before the product's snapshot: dropped";
            return Err(Refusal::new(Reason::OutOfSync, text, sym, Some(seq)));
        }
        let stamp = Stamp { sym, ts, seq, recv_ts };
        let Book::L2(book) = &mut s.book else { unreachable!("book_for checked the type") };
        for (side, price, size) in levels {
            book.set_level(side, price, size).expect("decoded levels are valid");
            events.push(&stamp.ev(kind::LEVEL_SET, side, price, size, 0), msg);
        }
        s.last_seq = Some(seq);
        s.crossed(check, sym, seq, ts)
    }

    // --- trades -----------------------------------------------------------------------------

    fn on_match(&mut self, f: &Fields<'_, '_>, full: bool, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        let (product, op) = f.full(Op::Match, recv_ts)?;
        let Some(sym) = self.names.id(&product).filter(|&id| self.syms[id as usize].is_some()) else {
            let id = self.check_symbol(&product)?;
            if full {
                // a full-channel message the snapshot replay may need
                let early = self.early.entry(id).or_default();
                if early.len() == MAX_EARLY_MATCHES {
                    early.pop_front();
                }
                early.push_back(op);
            }
            return Ok(());
        };
        match self.sym_mut(sym).book {
            // `last_match` comes from the matches channel and predates the subscription
            Book::L3(_) if !full => Ok(()),
            Book::L3(_) => self.on_full(sym, op, events, msg),
            Book::L2(_) => {
                let maker = self.new_id(&op.order);
                let stamp = Stamp { sym, ts: op.ts, seq: op.seq, recv_ts };
                let price = op.price.unwrap_or(0);
                let mut e = stamp.ev(kind::TRADE, op.side, price, op.size.unwrap_or(0), maker);
                e.flags = trade_flags(op.side);
                events.push(&e, msg);
                Ok(())
            }
        }
    }

    // --- full channel -----------------------------------------------------------------------

    /// `BookSync.hold`: a full buffer is itself a loss of sync.
    fn hold(&mut self, sym: u32, op: FullOp) -> R<()> {
        let s = self.sym_mut(sym);
        if s.buffer.len() >= MAX_BUFFER {
            s.buffer.clear();
            let text = format!("more than {MAX_BUFFER} updates buffered without a snapshot");
            return Err(Refusal::new(Reason::OutOfSync, text, sym, None));
        }
        s.buffer.push_back(op);
        Ok(())
    }

    /// Coinbase's sequence rule: stale -> drop, next -> apply, beyond -> lose sync and resync.
    fn on_full(&mut self, sym: u32, op: FullOp, events: &mut Events, msg: usize) -> R<()> {
        let s = self.sym_mut(sym);
        if !s.live {
            return self.hold(sym, op);
        }
        let last = s.last_seq.expect("a live book has a sequence");
        if op.seq <= last {
            return Ok(());
        }
        if op.seq != last + 1 {
            // the message after the gap is held: replayed if the next snapshot is older than it
            return Err(s.gap(sym, "full channel sequence gap", last + 1, [op]));
        }
        let (seq, ts) = (op.seq, op.ts);
        self.apply_full(sym, &op, events, msg)?;
        let check = self.check_crossed;
        self.sym_mut(sym).crossed(check, sym, seq, ts)
    }

    /// `_apply_full`: a book error means the book has drifted from the venue's: only a snapshot repairs it.
    fn apply_full(&mut self, sym: u32, op: &FullOp, events: &mut Events, msg: usize) -> R<()> {
        match self.full_events(sym, op, events, msg) {
            Ok(()) => {
                self.sym_mut(sym).last_seq = Some(op.seq);
                Ok(())
            }
            Err(fault) => {
                self.sym_mut(sym).lose_sync();
                Err(Refusal::of(fault, sym, Some(op.seq)))
            }
        }
    }

    /// `_full_events`: one in-sequence full-channel message applied, its events pushed (those of a
    /// refused one too: what it left applied).
    fn full_events(&mut self, sym: u32, op: &FullOp, events: &mut Events, msg: usize) -> Result<(), Fault> {
        let stamp = Stamp { sym, ts: op.ts, seq: op.seq, recv_ts: op.recv_ts };
        let uuid: &str = &op.order;
        let s = self.sym_mut(sym);
        let resting = s.ids.get(uuid).copied().and_then(|id| s.l3().order(id).map(|o| (id, *o)));
        let price = op.price.unwrap_or(0);
        match op.op {
            Op::Open => {
                let size = op.size.unwrap_or(0);
                if resting.is_some() {
                    return Err(Fault::new(Reason::DuplicateOrder, format!("order {uuid} is already resting")));
                }
                if size <= 0 {
                    return Err(Fault::new(Reason::BookError, format!("order {uuid} added with size {size}")));
                }
                let id = self.new_id(uuid);
                let s = self.sym_mut(sym);
                s.l3().add(id, op.side, price, size).expect("a new id of a positive size");
                s.ids.insert(uuid.into(), id);
                events.push(&stamp.ev(kind::ADD, op.side, price, size, id), msg);
            }
            Op::Match => {
                let size = op.size.unwrap_or(0);
                let Some((id, o)) = resting else {
                    return Err(Fault::new(Reason::UnknownOrder, format!("order {uuid} is not in the book")));
                };
                if o.price != price || o.side != op.side {
                    let text = format!(
                        "match at {price} {} on maker {uuid} resting at {} {}",
                        side_name(op.side),
                        o.price,
                        side_name(o.side)
                    );
                    return Err(Fault::new(Reason::BookError, text));
                }
                if size <= 0 {
                    return Err(Fault::new(Reason::BookError, format!("order {uuid} reduced by {size}")));
                }
                let mut e = stamp.ev(kind::EXECUTE, op.side, price, size, id);
                e.flags = trade_flags(op.side);
                events.push(&e, msg);
                let reduced = s.l3().reduce(id, size);
                if size >= o.size {
                    s.ids.remove(uuid);
                }
                if reduced.is_err() {
                    let over = size - o.size;
                    return Err(Fault::new(
                        Reason::BookError,
                        format!("order {uuid} reduced by {size}, {over} more than it had"),
                    ));
                }
            }
            Op::Done => {
                // not resting: filled by a match already, or never rested; Coinbase says to ignore it either way
                let Some((id, o)) = resting else { return Ok(()) };
                events.push(&stamp.ev(kind::DELETE, o.side, o.price, o.size, id), msg);
                s.l3().delete(id).expect("a resting order");
                s.ids.remove(uuid);
                if let Some(left) = op.size.filter(|&left| left != o.size) {
                    let text = format!("done for {uuid} with remaining_size {left}, the book had {}", o.size);
                    return Err(Fault::new(Reason::BookError, text));
                }
            }
            Op::Change => {
                // not on the book (received, not open) or a market order's funds: nothing to change
                let (Some((id, o)), Some(size)) = (resting, op.size) else { return Ok(()) };
                let new_price = op.new_price.unwrap_or(o.price);
                if new_price != o.price || size > o.size {
                    // taken as losing priority: the back of the queue at the new price
                    if size <= 0 {
                        return Err(Fault::new(Reason::BookError, format!("order {uuid} replaced with size {size}")));
                    }
                    s.l3().replace(id, id, new_price, size).expect("a resting order, a positive size");
                    let mut e = stamp.ev(kind::REPLACE, o.side, new_price, size, id);
                    e.new_order_id = id;
                    events.push(&e, msg);
                } else {
                    if size <= 0 {
                        return Err(Fault::new(Reason::BookError, format!("order {uuid} changed to size {size}")));
                    }
                    s.l3().change(id, size).expect("a resting order, a positive size");
                    events.push(&stamp.ev(kind::CHANGE, o.side, o.price, size, id), msg);
                }
            }
            Op::Received | Op::Activate => {} // nothing rests yet
        }
        Ok(())
    }

    // --- REST snapshots ---------------------------------------------------------------------

    fn on_rest_snapshot(
        &mut self,
        f: &Fields<'_, '_>,
        l3: bool,
        recv_ts: i64,
        events: &mut Events,
        msg: usize,
    ) -> R<()> {
        let product = f.text("product_id")?;
        let seq = f.count("sequence", None)?;
        let (part, parts) = (f.count("part", Some(0))?, f.count("parts", Some(1))?);
        let sym = self.book_for(&product, l3)?;
        let ts = f.opt_time()?;
        let s = self.sym_mut(sym);
        if parts < 1 || part >= parts {
            return Err(bad(format!("snapshot part {part} of {parts}")));
        }
        if part == 0 {
            s.staged = Some(Staged { l3, seq, parts, ts, recv_ts, next_part: 0, bids: Vec::new(), asks: Vec::new() });
        } else {
            let follows =
                s.staged.as_ref().is_some_and(|st| (st.seq, st.parts, st.next_part, st.l3) == (seq, parts, part, l3));
            if !follows {
                s.staged = None;
                let text = format!("snapshot part {part}/{parts} of sequence {seq} does not follow the parts received");
                return Err(bad(text));
            }
        }
        let entries = f.entries("bids", l3).and_then(|bids| Ok((bids, f.entries("asks", l3)?)));
        let s = self.sym_mut(sym);
        let (bids, asks) = match entries {
            Ok(e) => e,
            Err(r) => {
                s.staged = None;
                return Err(r);
            }
        };
        let staged = s.staged.as_mut().expect("staged above");
        staged.bids.extend(bids);
        staged.asks.extend(asks);
        staged.next_part += 1;
        if staged.next_part < parts {
            return Ok(());
        }
        let staged = s.staged.take().expect("staged above");
        if !l3 {
            return self.set_l2(sym, &staged.bids, &staged.asks, staged.ts, recv_ts, events, msg);
        }
        self.set_l3(sym, staged, events, msg)
    }

    /// `_set_l3`: the book replaced with a level-3 snapshot, then the buffer replayed past its sequence.
    fn set_l3(&mut self, sym: u32, staged: Staged, events: &mut Events, msg: usize) -> R<()> {
        let stamp = Stamp { sym, ts: staged.ts, seq: staged.seq, recv_ts: staged.recv_ts };
        let pending: Vec<FullOp> = self.sym_mut(sym).buffer.drain(..).collect();
        self.sym_mut(sym).clear_l3();
        events.push(&stamp.ev(kind::SNAPSHOT_BEGIN, 0, 0, 0, 0), msg);
        let first = events.len();
        for (side, rows) in [(BID, &staged.bids), (ASK, &staged.asks)] {
            for (price, size, uuid) in rows {
                let refused = if self.sym_mut(sym).ids.contains_key(uuid) {
                    Some((Reason::DuplicateOrder, format!("order {uuid} is already resting")))
                } else if *size <= 0 {
                    Some((Reason::BookError, format!("order {uuid} added with size {size}")))
                } else {
                    None
                };
                if let Some((reason, text)) = refused {
                    // a half-built book is no book: wait for the next snapshot, the buffer still needed on it
                    events.truncate(first); // the net change: the book cleared
                    let s = self.sym_mut(sym);
                    s.lose_sync();
                    s.clear_l3();
                    s.buffer.extend(pending);
                    return Err(Refusal::new(reason, text, sym, Some(staged.seq)));
                }
                let id = self.new_id(uuid);
                let s = self.sym_mut(sym);
                s.l3().add(id, side, *price, *size).expect("a new id of a positive size");
                s.ids.insert(uuid.clone(), id);
                events.push(&stamp.ev(kind::ADD, side, *price, *size, id), msg);
            }
        }
        events.push(&stamp.ev(kind::SNAPSHOT_END, 0, 0, 0, 0), msg);
        self.sym_mut(sym).go_live(staged.seq);
        self.replay(sym, pending, events, msg)?;
        let check = self.check_crossed;
        let s = self.sym_mut(sym);
        let last = s.last_seq.expect("live");
        s.crossed(check, sym, last, staged.ts)
    }

    fn replay(&mut self, sym: u32, pending: Vec<FullOp>, events: &mut Events, msg: usize) -> R<()> {
        let mut pending = pending.into_iter();
        while let Some(op) = pending.next() {
            let last = self.sym_mut(sym).last_seq.expect("live");
            if op.seq <= last {
                continue; // already in the snapshot
            }
            if op.seq != last + 1 {
                let text = "buffered messages do not follow the snapshot";
                return Err(self.sym_mut(sym).gap(sym, text, last + 1, std::iter::once(op).chain(pending)));
            }
            self.apply_full(sym, &op, events, msg)?;
        }
        Ok(())
    }

    pub fn book_l2(&self, sym: u32) -> Option<&L2> {
        match &self.syms.get(sym as usize)?.as_ref()?.book {
            Book::L2(b) => Some(b),
            Book::L3(_) => None,
        }
    }

    pub fn book_l3(&self, sym: u32) -> Option<&L3> {
        match &self.syms.get(sym as usize)?.as_ref()?.book {
            Book::L3(b) => Some(b),
            Book::L2(_) => None,
        }
    }

    /// The ids handed out since the last call, with their UUIDs (empty unless `order_names` is on).
    pub fn take_order_names(&mut self) -> Vec<(u64, Box<str>)> {
        self.order_names.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

crate::message_feed!(Coinbase);

impl BookRows for Coinbase {
    fn symbol_name(&self, symbol: u32) -> &str {
        self.names.name(symbol)
    }

    fn top_row(&self, symbol: u32, levels: usize, rows: &mut Vec<i64>) {
        if let Some(b) = self.book_l3(symbol) {
            let total = |(p, l): (i64, crate::book::Level)| (p, l.total);
            lobster_row(b.asks.iter().map(total), b.bids.iter().map(total), levels, rows);
        } else {
            let empty = L2::default();
            let b = self.book_l2(symbol).unwrap_or(&empty);
            lobster_row(b.asks.iter(), b.bids.iter(), levels, rows);
        }
    }
}

// ------------------------------------------------------------------------------------ state

const STATE_KIND: &str = "CoinbaseFeed";
const OPS: [Op; 6] = [Op::Received, Op::Open, Op::Done, Op::Match, Op::Change, Op::Activate];
const OP_WIDTH: usize = 9;

/// Full-channel messages as packed records (op, seq, ts, recv_ts, side, which of price / size / new_price
/// are given as bits 1 / 2 / 4, price, size, new_price) and their order ids beside.
fn pack_ops<'a>(ops: impl Iterator<Item = &'a FullOp>) -> (Vec<i64>, Vec<&'a str>) {
    let (mut flat, mut ids) = (Vec::new(), Vec::new());
    for op in ops {
        let code = OPS.iter().position(|&o| o == op.op).expect("every op is listed") as i64;
        let given =
            i64::from(op.price.is_some()) | i64::from(op.size.is_some()) << 1 | i64::from(op.new_price.is_some()) << 2;
        let (price, size, new_price) = (op.price.unwrap_or(0), op.size.unwrap_or(0), op.new_price.unwrap_or(0));
        flat.extend_from_slice(&[code, op.seq, op.ts, op.recv_ts, i64::from(op.side), given, price, size, new_price]);
        ids.push(&*op.order);
    }
    (flat, ids)
}

/// `pack_ops` back, each message as the decoder could have made it (what a later apply relies on).
fn unpack_ops(flat: &[i64], ids: Vec<String>) -> Result<Vec<FullOp>, String> {
    if flat.len() != ids.len() * OP_WIDTH {
        return Err(format!("{} op records for {} order ids", flat.len() / OP_WIDTH, ids.len()));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (r, order) in flat.chunks_exact(OP_WIDTH).zip(ids) {
        let op = *usize::try_from(r[0]).ok().and_then(|c| OPS.get(c)).ok_or_else(|| format!("op code {}", r[0]))?;
        let given = r[5];
        let side = i8::try_from(r[4]).unwrap_or(0);
        let bare = matches!(op, Op::Received | Op::Activate);
        let refused = !(0..8).contains(&given)
            || (bare && (side != 0 || given != 0 || !order.is_empty()))
            || (!bare && (side != BID && side != ASK || order.is_empty()))
            || (matches!(op, Op::Open | Op::Match) && given & 3 != 3)
            || r[1] < 0;
        if refused {
            return Err(format!("a {op:?} message {r:?} of order {order:?} that no decoder makes"));
        }
        let opt = |bit: i64, v: i64| (given & bit != 0).then_some(v);
        out.push(FullOp {
            op,
            seq: r[1],
            ts: r[2],
            recv_ts: r[3],
            order: order.into(),
            side,
            price: opt(1, r[6]),
            size: opt(2, r[7]),
            new_price: opt(4, r[8]),
        });
    }
    Ok(out)
}

fn put_ops(s: &State<'_>, key: &str, ops: &VecDeque<FullOp>) -> PyResult<()> {
    let (flat, ids) = pack_ops(ops.iter());
    s.set_packed(key, &flat)?;
    s.set(&format!("{key}_ids"), ids)
}

fn take_ops(s: &State<'_>, key: &str) -> PyResult<VecDeque<FullOp>> {
    let ids: Vec<String> = s.get(&format!("{key}_ids"))?;
    unpack_ops(&s.packed(key, OP_WIDTH)?, ids).map(VecDeque::from).map_err(|e| s.invalid(e))
}

/// Staged entries as packed (price, size) pairs and their order ids ("" on a level-2 snapshot).
fn put_entries(s: &State<'_>, key: &str, rows: &[(i64, i64, Box<str>)]) -> PyResult<()> {
    let flat: Vec<i64> = rows.iter().flat_map(|(p, q, _)| [*p, *q]).collect();
    s.set_packed(key, &flat)?;
    s.set(&format!("{key}_ids"), rows.iter().map(|(_, _, id)| &**id).collect::<Vec<&str>>())
}

fn take_entries(s: &State<'_>, key: &str) -> PyResult<Vec<(i64, i64, Box<str>)>> {
    let flat = s.packed(key, 2)?;
    let ids: Vec<String> = s.get(&format!("{key}_ids"))?;
    if flat.len() != 2 * ids.len() || flat.iter().any(|&v| v < 0) {
        return Err(s.invalid(format!(
            "{key}: {} entries for {} order ids, or a negative one",
            flat.len() / 2,
            ids.len()
        )));
    }
    Ok(flat.chunks_exact(2).zip(ids).map(|(c, id)| (c[0], c[1], id.into())).collect())
}

impl Coinbase {
    /// Everything the feed keeps but its scratch tape and its log of order names.
    fn export<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = State::new(py, STATE_KIND)?;
        s.set("check_crossed", self.check_crossed)?;
        s.set("symbols", sorted(&self.symbols))?;
        s.set("names", self.names.from(0))?;
        s.set("next_id", self.next_id)?;
        s.set("order_names", self.order_names.is_some())?;
        let books = PyList::empty(py);
        for &name in &self.order {
            let sym = self.syms[name as usize].as_ref().expect("a symbol in `order` has a book");
            let b = State::part(py, STATE_KIND);
            b.set("symbol", name)?;
            b.set("type", sym.book.name())?;
            match &sym.book {
                Book::L2(book) => state::put_l2(&b, book)?,
                Book::L3(book) => {
                    state::put_l3(&b, book)?;
                    let by_id: FxHashMap<u64, &str> = sym.ids.iter().map(|(uuid, &id)| (id, &**uuid)).collect();
                    let uuids: Vec<&str> =
                        [BID, ASK].iter().flat_map(|&side| book.side_orders(side)).map(|o| by_id[&o.id]).collect();
                    b.set("uuids", uuids)?;
                }
            }
            b.set("live", sym.live)?;
            b.set("last_seq", sym.last_seq)?;
            b.set("resyncs", sym.resyncs)?;
            b.set("snapshots", sym.snapshots)?;
            b.set("l2_count", sym.l2_count)?;
            put_ops(&b, "buffer", &sym.buffer)?;
            let staged = match &sym.staged {
                None => None,
                Some(st) => {
                    let p = State::part(py, STATE_KIND);
                    p.set("l3", st.l3)?;
                    for (key, v) in [
                        ("seq", st.seq),
                        ("parts", st.parts),
                        ("ts", st.ts),
                        ("recv_ts", st.recv_ts),
                        ("next_part", st.next_part),
                    ] {
                        p.set(key, v)?;
                    }
                    put_entries(&p, "bids", &st.bids)?;
                    put_entries(&p, "asks", &st.asks)?;
                    Some(p.dict)
                }
            };
            b.set("staged", staged)?;
            books.append(b.dict)?;
        }
        s.set("books", books)?;
        let early = PyList::empty(py);
        let mut named: Vec<(&u32, &VecDeque<FullOp>)> = self.early.iter().collect();
        named.sort_unstable_by_key(|(&name, _)| name);
        for (&name, ops) in named {
            let e = State::part(py, STATE_KIND);
            e.set("symbol", name)?;
            put_ops(&e, "matches", ops)?;
            early.append(e.dict)?;
        }
        s.set("early", early)?;
        Ok(s.dict)
    }

    fn import(state: &Bound<'_, PyAny>) -> PyResult<Coinbase> {
        let s = State::open(state, STATE_KIND)?;
        let symbols: Option<Vec<String>> = s.get("symbols")?;
        let mut feed = Coinbase::new(symbol_set(symbols), s.get("check_crossed")?, s.get("order_names")?);
        feed.next_id = s.get("next_id")?;
        if feed.next_id == 0 {
            return Err(s.invalid("next order id 0"));
        }
        feed.names = Names::from_list(s.get("names")?).map_err(|e| s.invalid(e))?;
        feed.syms.resize_with(feed.names.len(), || None);
        for b in s.parts("books")? {
            let name: u32 = b.get("symbol")?;
            if !feed.syms.get(name as usize).is_some_and(Option::is_none) {
                return Err(s.invalid(format!("a book of symbol id {name}: not one new id of the names")));
            }
            let kind: String = b.get("type")?;
            let mut sym = Sym::new(kind == "L3");
            match kind.as_str() {
                "L2" => sym.book = Book::L2(state::take_l2(&b)?),
                "L3" => {
                    let book = state::take_l3(&b)?;
                    let uuids: Vec<String> = b.get("uuids")?;
                    let ids: Vec<u64> =
                        [BID, ASK].iter().flat_map(|&side| book.side_orders(side)).map(|o| o.id).collect();
                    if uuids.len() != ids.len() || ids.iter().any(|&id| id == 0 || id >= feed.next_id) {
                        return Err(s.invalid(format!(
                            "{} order ids below {} for {} UUIDs",
                            ids.len(),
                            feed.next_id,
                            uuids.len()
                        )));
                    }
                    for (uuid, id) in uuids.into_iter().zip(ids) {
                        if uuid.is_empty() || sym.ids.insert(uuid.clone().into(), id).is_some() {
                            return Err(s.invalid(format!("order UUID {uuid:?} empty or resting twice")));
                        }
                        if let Some(log) = &mut feed.order_names {
                            log.push((id, uuid.into()));
                        }
                    }
                    sym.book = Book::L3(book);
                }
                other => return Err(s.invalid(format!("a book of type {other:?}"))),
            }
            sym.live = b.get("live")?;
            sym.last_seq = b.get("last_seq")?;
            if sym.live && sym.last_seq.is_none() {
                return Err(s.invalid("a live book without a sequence"));
            }
            sym.resyncs = b.get("resyncs")?;
            sym.snapshots = b.get("snapshots")?;
            sym.l2_count = b.get("l2_count")?;
            sym.buffer = take_ops(&b, "buffer")?;
            if sym.buffer.len() > MAX_BUFFER {
                return Err(s.invalid(format!("{} buffered messages", sym.buffer.len())));
            }
            let staged: Option<Bound<'_, PyAny>> = b.get("staged")?;
            if let Some(st) = staged {
                let p = State::open_part(&st, STATE_KIND)?;
                let staged = Staged {
                    l3: p.get("l3")?,
                    seq: p.get("seq")?,
                    parts: p.get("parts")?,
                    ts: p.get("ts")?,
                    recv_ts: p.get("recv_ts")?,
                    next_part: p.get("next_part")?,
                    bids: take_entries(&p, "bids")?,
                    asks: take_entries(&p, "asks")?,
                };
                let l3 = matches!(sym.book, Book::L3(_));
                let ids_ok = staged.bids.iter().chain(&staged.asks).all(|(_, _, id)| id.is_empty() != l3);
                if staged.l3 != l3 || !ids_ok || !(0 < staged.next_part && staged.next_part < staged.parts) {
                    return Err(s.invalid("a staged snapshot of the other book type, or of no part to come"));
                }
                sym.staged = Some(staged);
            }
            feed.syms[name as usize] = Some(sym);
            feed.order.push(name);
        }
        for e in s.parts("early")? {
            let name: u32 = e.get("symbol")?;
            let ops = take_ops(&e, "matches")?;
            let bookless = feed.syms.get(name as usize).is_some_and(Option::is_none);
            if !bookless
                || ops.len() > MAX_EARLY_MATCHES
                || ops.iter().any(|op| op.op != Op::Match)
                || feed.early.contains_key(&name)
            {
                return Err(s.invalid(format!("early matches of symbol id {name}")));
            }
            feed.early.insert(name, ops);
        }
        Ok(feed)
    }
}

// ------------------------------------------------------------------------------------ Python

/// Coinbase decode + apply over batches; the semantics of `orderbook.venues.coinbase.CoinbaseFeed`.
#[pyclass(name = "CoinbaseFeed", module = "orderbook.native._core")]
pub struct PyCoinbase {
    feed: Coinbase,
}

#[pymethods]
impl PyCoinbase {
    #[new]
    #[pyo3(signature = (symbols = None, check_crossed = true, order_names = false))]
    fn new(symbols: Option<Vec<String>>, check_crossed: bool, order_names: bool) -> Self {
        PyCoinbase { feed: Coinbase::new(symbol_set(symbols), check_crossed, order_names) }
    }

    /// (id, UUID) of every order id handed out since the last call (after `__setstate__`: of every resting
    /// order); None unless made with `order_names`.
    fn take_order_names(&mut self) -> Option<Vec<(u64, String)>> {
        self.feed
            .order_names
            .is_some()
            .then(|| self.feed.take_order_names().into_iter().map(|(id, uuid)| (id, uuid.into())).collect())
    }

    /// "L2" or "L3", None for a product with no book.
    fn book_type(&self, symbol: &str) -> Option<&'static str> {
        self.feed.sym(symbol).map(|s| s.book.name())
    }

    fn book_dict<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.feed
            .sym(symbol)
            .map(|s| match &s.book {
                Book::L2(b) => crate::pybook::l2_dict(py, b),
                Book::L3(b) => crate::pybook::l3_dict(py, b),
            })
            .transpose()
    }

    /// An L3 product's resting orders: {id: (side, price, size)}; None for no L3 book.
    fn orders<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        let book = self.feed.names.id(symbol).and_then(|id| self.feed.book_l3(id));
        book.map(|b| crate::pybook::orders_dict(py, b)).transpose()
    }

    /// An L3 level's orders in time priority, as (id, size).
    fn queue(&self, symbol: &str, side: i8, price: i64) -> Vec<(u64, i64)> {
        let book = self.feed.names.id(symbol).and_then(|id| self.feed.book_l3(id));
        book.map(|b| b.queue(side, price)).unwrap_or_default()
    }

    /// A product's BookSync as (live, last_seq, resyncs, snapshots, buffered messages), or None.
    fn sync(&self, symbol: &str) -> Option<(bool, Option<i64>, i64, i64, usize)> {
        self.feed.sym(symbol).map(|s| (s.live, s.last_seq, s.resyncs, s.snapshots, s.buffer.len()))
    }

    /// Level-2 messages per product (`CoinbaseFeed.l2_counts`).
    fn l2_counts(&self) -> Vec<(String, i64)> {
        let counted = self.feed.order.iter().filter_map(|&n| {
            let s = self.feed.syms[n as usize].as_ref()?;
            (s.l2_count > 0).then(|| (self.feed.names.name(n).to_owned(), s.l2_count))
        });
        counted.collect()
    }
}

crate::feed_methods!(
    PyCoinbase,
    Coinbase,
    order,
    r#"The whole feed as plain values (msgpack-able), for `__setstate__` to continue from:
        {"kind": "CoinbaseFeed", "version": 1, "check_crossed": bool, "symbols": sorted filter or None, "names":
        the symbol table by id, "next_id": the next order id, "order_names": bool, "books": one dict per book
        in the order they were made: {"symbol": id, "type": "L2" | "L3", "bids" / "asks" (L2: (price, size)
        int64 pairs best first; L3: (order id, price, size) records level by level, each queue in time
        priority, as bytes), "uuids" (L3: each order's UUID in that order), "live": bool, "last_seq": int or
        None, "resyncs", "snapshots", "l2_count": int, "buffer": the full-channel messages held for a snapshot
        as packed (op, seq, ts, recv_ts, side, given bits, price, size, new_price) records and "buffer_ids"
        their order ids, "staged": None or the REST snapshot parts so far {"l3", "seq", "parts", "ts",
        "recv_ts", "next_part", "bids" / "asks": packed (price, size), "bids_ids" / "asks_ids"}}, "early":
        [{"symbol": id, "matches", "matches_ids"}] the matches of products with no book yet}."#
);
crate::message_methods!(PyCoinbase, 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_ns_reads_what_parse_time_reads() {
        assert_eq!(iso_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(iso_ns("2021-04-17T16:43:37.075687Z"), Some(1_618_677_817_075_687_000));
        assert_eq!(iso_ns("2021-04-17T16:43:37+00:00"), Some(1_618_677_817_000_000_000));
        assert_eq!(iso_ns("2021-04-17T16:43:37"), Some(1_618_677_817_000_000_000));
        assert_eq!(iso_ns("1677-09-21T00:12:43.145224192Z"), Some(i64::MIN));
        for bad in [
            "1677-09-21T00:12:43.145224191Z",
            "2262-04-11T23:47:16.854775808Z",
            "2023-02-29T00:00:00Z",
            "2023-01-01T00:00:60Z",
            "0000-01-01T00:00:00Z",
            "2023-01-01T00:00:00.1234567890Z",
            "2023-01-01T00:00:00.Z",
            "2023-01-01 00:00:00Z",
            "2023-01-01T00:00:00+01:00",
            "2023-01-01T00:00:00z",
        ] {
            assert_eq!(iso_ns(bad), None, "{bad}");
        }
    }
}
