//! NASDAQ TotalView-ITCH 5.0: decode + apply, the rules of `orderbook/venues/itch.py`
//! (`ItchFeed.on_message`'s general path, which its fast path equals) over a batch of messages.
//!
//! Every message, valid or not, takes the next `seq`; a message is decoded, checked (length of
//! its type, ASCII in every Alpha field), applied to its stock's `L3` book, and the book is
//! checked for a cross. A refused message gives a reject with the reference's reason, symbol
//! and seq, and no event; what it did to the book before the refusal stays done, as in Python.

use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::batch::{batch_py, Batch, Ev, Events, MessageFeed, Names, Refusal, Rejects, NONE};
use crate::book::{kind, Level, ASK, BID, FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, L3};
use crate::errors::{not_configured, Reason};
use crate::rebuild::{lobster_row, BookRows, Target};
use crate::state::{self, State};

pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

const FLAG_HIDDEN: i16 = 1;
const FLAG_CROSS: i16 = 2;
const FLAG_BROKEN: i16 = 4;
const FLAG_NON_PRINTABLE: i16 = 32;
const STATUS_HALTED: i16 = -1;
const STATUS_QUOTATION_ONLY: i16 = 0;
const STATUS_TRADING: i16 = 1;

/// A message type's spec length, the offset of its stock field (0: none) and its Alpha byte
/// ranges, as `orderbook.venues.itch.LAYOUTS` gives them (generated from it; the differential
/// tests hold the two equal).
struct Spec {
    len: usize,
    stock: usize,
    alpha: &'static [(usize, usize)],
}

fn spec(t: u8) -> Option<&'static Spec> {
    macro_rules! s {
        ($len:expr, $stock:expr, $alpha:expr) => {{
            static S: Spec = Spec { len: $len, stock: $stock, alpha: $alpha };
            Some(&S)
        }};
    }
    match t {
        b'A' => s!(36, 24, &[(19, 20), (24, 32)]),
        b'B' => s!(19, 0, &[]),
        b'C' => s!(36, 0, &[(31, 32)]),
        b'D' => s!(19, 0, &[]),
        b'E' => s!(31, 0, &[]),
        b'F' => s!(40, 24, &[(19, 20), (24, 32), (36, 40)]),
        b'H' => s!(25, 11, &[(11, 25)]),
        b'I' => s!(50, 28, &[(27, 36), (48, 50)]),
        b'J' => s!(35, 11, &[(11, 19)]),
        b'K' => s!(28, 11, &[(11, 19), (23, 24)]),
        b'L' => s!(26, 15, &[(11, 26)]),
        b'N' => s!(20, 11, &[(11, 20)]),
        b'O' => s!(48, 11, &[(11, 20)]),
        b'P' => s!(44, 24, &[(19, 20), (24, 32)]),
        b'Q' => s!(40, 19, &[(19, 27), (39, 40)]),
        b'R' => s!(39, 11, &[(11, 21), (25, 34), (38, 39)]),
        b'S' => s!(12, 0, &[(11, 12)]),
        b'U' => s!(35, 0, &[]),
        b'V' => s!(35, 0, &[]),
        b'W' => s!(12, 0, &[(11, 12)]),
        b'X' => s!(23, 0, &[]),
        b'Y' => s!(20, 11, &[(11, 20)]),
        b'h' => s!(21, 11, &[(11, 21)]),
        _ => None,
    }
}

#[inline]
fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_be_bytes([b[at], b[at + 1]]) as usize
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> i64 {
    i64::from(u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes")))
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
fn ts_at(b: &[u8]) -> i64 {
    (i64::from(u16::from_be_bytes([b[5], b[6]])) << 32) | u32_at(b, 7)
}

/// Python's repr of a one-byte bytes or one-character ASCII str value, for error texts (the
/// reference's `{value!r}`): its escapes for tab, newline, return and backslash, double quotes
/// around a single quote, `\xNN` for any other byte outside printable ASCII.
fn repr_byte(c: u8) -> String {
    match c {
        b'\t' => "'\\t'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\\' => "'\\\\'".into(),
        b'\'' => "\"'\"".into(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        c => format!("'\\x{c:02x}'"),
    }
}

fn aggressor(side: i8) -> i16 {
    if side == BID {
        FLAG_AGGRESSOR_ASK // the taker hit the resting bid: it sold
    } else {
        FLAG_AGGRESSOR_BID
    }
}

/// The feed: symbols by stock locate, one `L3` book per symbol.
pub struct Itch {
    pub names: Names,
    stock_ids: FxHashMap<u64, u32>,
    locate_name: Vec<u32>,
    placeholder: Vec<u32>,
    name_book: Vec<u32>,
    pub books: Vec<L3>,
    pub book_name: Vec<u32>,
    symbols: Option<FxHashSet<String>>,
    check_crossed: bool,
    pub messages: i64,
    pub system_event: Option<u8>,
}

type Step<T> = Result<T, Refusal>;

impl Itch {
    pub fn new(symbols: Option<FxHashSet<String>>, check_crossed: bool) -> Self {
        Itch {
            names: Names::default(),
            stock_ids: FxHashMap::default(),
            locate_name: vec![NONE; 1 << 16],
            placeholder: vec![NONE; 1 << 16],
            name_book: Vec::new(),
            books: Vec::new(),
            book_name: Vec::new(),
            symbols,
            check_crossed,
            messages: 0,
            system_event: None,
        }
    }

    // --- symbols and books ------------------------------------------------------------------

    fn intern(&mut self, name: &str) -> u32 {
        let id = self.names.intern(name);
        if self.name_book.len() < self.names.len() {
            self.name_book.resize(self.names.len(), NONE);
        }
        id
    }

    /// The symbol of an 8-byte stock field (ASCII already checked), padding stripped; NONE if blank.
    #[inline]
    fn stock(&mut self, field: &[u8]) -> u32 {
        // the 8 bytes as one integer: FxHash hashes it in one multiply
        let key = u64::from_ne_bytes(field.try_into().expect("8 bytes"));
        if let Some(&id) = self.stock_ids.get(&key) {
            return id;
        }
        let mut end = 8;
        while end > 0 && field[end - 1] == b' ' {
            end -= 1;
        }
        let id = if end == 0 {
            NONE
        } else {
            // ASCII, checked by the caller: always valid UTF-8
            self.intern(std::str::from_utf8(&field[..end]).unwrap_or_default())
        };
        self.stock_ids.insert(key, id);
        id
    }

    /// `ItchFeed._learn`: locate -> symbol; a book kept under the placeholder moves to the real name.
    #[inline]
    fn learn(&mut self, locate: usize, stock: u32) {
        if stock == NONE || self.locate_name[locate] == stock {
            return;
        }
        self.locate_name[locate] = stock;
        let ph = self.placeholder[locate];
        if ph != NONE {
            let book = self.name_book[ph as usize];
            if book != NONE && self.name_book[stock as usize] == NONE {
                self.name_book[stock as usize] = book;
                self.name_book[ph as usize] = NONE;
                self.book_name[book as usize] = stock;
            }
        }
    }

    /// `ItchFeed.symbol_of`: the locate's symbol, else the placeholder `locate:<n>`.
    #[inline]
    fn symbol_of(&mut self, locate: usize) -> u32 {
        let name = self.locate_name[locate];
        if name != NONE {
            return name;
        }
        if self.placeholder[locate] == NONE {
            self.placeholder[locate] = self.intern(&format!("locate:{locate}"));
        }
        self.placeholder[locate]
    }

    #[inline]
    fn book_of(&self, name: u32) -> u32 {
        self.name_book[name as usize]
    }

    /// `Feed.book`: the symbol's book, created on first use unless the feed follows other symbols.
    fn book(&mut self, name: u32) -> Step<u32> {
        let book = self.name_book[name as usize];
        if book != NONE {
            return Ok(book);
        }
        let symbol = self.names.name(name);
        if let Some(allowed) = &self.symbols {
            if !allowed.contains(symbol) {
                let text = not_configured(symbol);
                return Err(Refusal::new(Reason::UnknownSymbol, text, name, None));
            }
        }
        let book = self.books.len() as u32;
        self.books.push(L3::default());
        self.book_name.push(name);
        self.name_book[name as usize] = book;
        Ok(book)
    }

    pub fn book_by_name(&self, name: &str) -> Option<&L3> {
        let id = self.names.id(name)?;
        let book = *self.name_book.get(id as usize)?;
        (book != NONE).then(|| &self.books[book as usize])
    }

    pub fn locates(&self) -> Vec<(usize, &str)> {
        (0..self.locate_name.len())
            .filter(|&l| self.locate_name[l] != NONE)
            .map(|l| (l, self.names.name(self.locate_name[l])))
            .collect()
    }

    /// The book an E/C/X/D/U refers to (UnknownOrder where there is none, UnknownSymbol for a
    /// stock the feed does not follow); the order itself is looked up once, by the operation.
    #[inline]
    fn resting_book(&mut self, locate: usize, id: u64, seq: i64) -> Step<u32> {
        let name = self.symbol_of(locate);
        let mut book = self.book_of(name);
        if book == NONE && self.symbols.is_some() {
            book = self.book(name)?;
        }
        if book == NONE {
            return Err(Refusal::new(Reason::UnknownOrder, format!("order {id} is not in the book"), name, Some(seq)));
        }
        Ok(book)
    }

    /// For a message refused before its operation: UnknownOrder takes precedence, as in Python.
    fn unless_unknown(&self, book: u32, id: u64, seq: i64, refusal: Refusal) -> Refusal {
        match self.books[book as usize].order(id) {
            Some(_) => refusal,
            None => Refusal::new(
                Reason::UnknownOrder,
                format!("order {id} is not in the book"),
                self.book_name[book as usize],
                Some(seq),
            ),
        }
    }

    // --- messages -----------------------------------------------------------------------------

    /// One message: Ok(Some(event)) when it gives one, Ok(None) when it only updates the feed.
    pub fn message(&mut self, raw: &[u8], recv_ts: i64) -> Step<Option<Ev>> {
        self.messages += 1;
        let seq = self.messages;
        let malformed = |text: String| Refusal::new(Reason::Malformed, text, NONE, Some(seq));
        if raw.len() > MAX_MESSAGE_BYTES {
            let text = format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", raw.len());
            return Err(Refusal::new(Reason::Oversized, text, NONE, Some(seq)));
        }
        let Some(&t) = raw.first() else {
            return Err(malformed("empty ITCH message".into()));
        };
        let Some(sp) = spec(t) else {
            let text = format!("unknown ITCH 5.0 message type b{}", repr_byte(t));
            return Err(Refusal::new(Reason::UnknownMessageType, text, NONE, Some(seq)));
        };
        let tc = t as char;
        if raw.len() != sp.len {
            return Err(malformed(format!("ITCH '{tc}' message of {} bytes, the spec says {}", raw.len(), sp.len)));
        }
        for &(a, b) in sp.alpha {
            if !raw[a..b].is_ascii() {
                return Err(malformed(format!("ITCH '{tc}' field at bytes {a}..{b} is not ASCII")));
            }
        }
        let locate = u16_at(raw, 1);
        let ts = ts_at(raw);
        let base = Ev { ts, seq, recv_ts, ..Ev::default() };
        let (event, book) = match t {
            b'A' | b'F' => self.add(raw, locate, base)?,
            b'E' | b'C' => self.execute(raw, t, locate, base)?,
            b'X' => {
                let id = u64_at(raw, 11);
                let shares = u32_at(raw, 19);
                let book = self.resting_book(locate, id, seq)?;
                let o = self.apply(book, seq, |b| b.reduce(id, shares))?;
                (Ev { kind: kind::CANCEL, side: o.side, price: o.price, size: shares, order_id: id, ..base }, book)
            }
            b'D' => {
                let id = u64_at(raw, 11);
                let book = self.resting_book(locate, id, seq)?;
                let o = self.apply(book, seq, |b| b.delete(id))?;
                (Ev { kind: kind::DELETE, side: o.side, price: o.price, size: o.size, order_id: id, ..base }, book)
            }
            b'U' => {
                let (id, new_id) = (u64_at(raw, 11), u64_at(raw, 19));
                let (shares, price) = (u32_at(raw, 27), u32_at(raw, 31));
                let book = self.resting_book(locate, id, seq)?;
                if price == 0 {
                    let text = format!("order {id} replaced at price 0");
                    let r = Refusal::new(Reason::BookError, text, self.book_name[book as usize], Some(seq));
                    return Err(self.unless_unknown(book, id, seq, r));
                }
                let o = self.apply(book, seq, |b| b.replace(id, new_id, price, shares))?;
                let ev = Ev {
                    kind: kind::REPLACE,
                    side: o.side,
                    price,
                    size: shares,
                    order_id: id,
                    new_order_id: new_id,
                    ..base
                };
                (ev, book)
            }
            b'P' | b'Q' | b'B' => self.trade(raw, t, locate, base)?,
            b'H' => {
                let stock = self.stock(&raw[11..19]);
                self.learn(locate, stock);
                let name = self.symbol_of(locate);
                let flags = match raw[19] {
                    b'H' | b'P' => STATUS_HALTED,
                    b'Q' => STATUS_QUOTATION_ONLY,
                    b'T' => STATUS_TRADING,
                    c => {
                        let text = format!("ITCH 'H' trading state {}", repr_byte(c));
                        return Err(Refusal::new(Reason::Malformed, text, name, Some(seq)));
                    }
                };
                let book = self.book(name)?;
                (Ev { kind: kind::STATUS, flags, symbol: name, ..base }, book)
            }
            b'S' => {
                self.system_event = Some(raw[11]);
                return Ok(None);
            }
            _ => {
                // R L V W K J h Y I N O: known, valid, nothing for the book (R and those with a
                // stock teach its locate)
                if sp.stock != 0 {
                    let stock = self.stock(&raw[sp.stock..sp.stock + 8]);
                    self.learn(locate, stock);
                }
                return Ok(None);
            }
        };
        let name = self.book_name[book as usize];
        if self.check_crossed && self.books[book as usize].crossed() {
            return Err(crossed_refusal(&self.books[book as usize], name, seq, ts));
        }
        Ok(Some(Ev { symbol: name, ..event }))
    }

    /// Run a book operation; a fault names the book's symbol and the message's seq.
    #[inline]
    fn apply<T>(
        &mut self,
        book: u32,
        seq: i64,
        op: impl FnOnce(&mut L3) -> Result<T, crate::errors::Fault>,
    ) -> Step<T> {
        op(&mut self.books[book as usize]).map_err(|f| Refusal::of(f, self.book_name[book as usize], Some(seq)))
    }

    fn side(&self, t: u8, c: u8, seq: i64) -> Step<i8> {
        match c {
            b'B' => Ok(BID),
            b'S' => Ok(ASK),
            _ => {
                let text = format!("ITCH '{}' side {} is neither 'B' nor 'S'", t as char, repr_byte(c));
                Err(Refusal::new(Reason::Malformed, text, NONE, Some(seq)))
            }
        }
    }

    /// A and F (whose MPID is checked as ASCII and not kept).
    #[inline]
    fn add(&mut self, raw: &[u8], locate: usize, base: Ev) -> Step<(Ev, u32)> {
        let seq = base.seq;
        let id = u64_at(raw, 11);
        let shares = u32_at(raw, 20);
        let price = u32_at(raw, 32);
        let stock = self.stock(&raw[24..32]);
        self.learn(locate, stock);
        let name = self.symbol_of(locate);
        let side = self.side(raw[0], raw[19], seq)?;
        if price == 0 {
            // itch-book rejects zero-priced adds too; a resting order at $0 is not a quote
            let text = format!("order {id} added at price 0");
            return Err(Refusal::new(Reason::BookError, text, name, Some(seq)));
        }
        let book = self.book(name)?;
        self.apply(book, seq, |b| b.add(id, side, price, shares))?;
        Ok((Ev { kind: kind::ADD, side, price, size: shares, order_id: id, ..base }, book))
    }

    /// E executes at the resting order's price (spec 4.4.1), C at its own (4.4.2).
    #[inline]
    fn execute(&mut self, raw: &[u8], t: u8, locate: usize, base: Ev) -> Step<(Ev, u32)> {
        let seq = base.seq;
        let id = u64_at(raw, 11);
        let shares = u32_at(raw, 19);
        let book = self.resting_book(locate, id, seq)?;
        let mut flags = 0;
        if t == b'C' {
            match raw[31] {
                b'Y' => {}
                b'N' => flags = FLAG_NON_PRINTABLE,
                c => {
                    let text = format!("ITCH 'C' printable flag {}", repr_byte(c));
                    let r = Refusal::new(Reason::Malformed, text, self.book_name[book as usize], Some(seq));
                    return Err(self.unless_unknown(book, id, seq, r));
                }
            }
        }
        let o = self.apply(book, seq, |b| b.reduce(id, shares))?;
        let price = if t == b'C' { u32_at(raw, 32) } else { o.price };
        let flags = flags | aggressor(o.side);
        Ok((Ev { kind: kind::EXECUTE, side: o.side, price, size: shares, order_id: id, flags, ..base }, book))
    }

    /// P (non-displayed order, FLAG_HIDDEN), Q (cross, FLAG_CROSS), B (broken, FLAG_BROKEN): prints
    /// that leave the book alone.
    fn trade(&mut self, raw: &[u8], t: u8, locate: usize, base: Ev) -> Step<(Ev, u32)> {
        let seq = base.seq;
        let ev = match t {
            b'P' => {
                let stock = self.stock(&raw[24..32]);
                self.learn(locate, stock);
                let side = self.side(t, raw[19], seq)?;
                let (id, shares, price) = (u64_at(raw, 11), u32_at(raw, 20), u32_at(raw, 32));
                Ev { kind: kind::TRADE, side, price, size: shares, order_id: id, flags: FLAG_HIDDEN, ..base }
            }
            b'Q' => {
                let stock = self.stock(&raw[19..27]);
                self.learn(locate, stock);
                let shares = u64_at(raw, 11);
                let Ok(size) = i64::try_from(shares) else {
                    // the only field the int64 event columns cannot hold: refused, not wrapped
                    let text = format!("ITCH 'Q' cross of {shares} shares does not fit int64");
                    return Err(Refusal::new(Reason::Malformed, text, NONE, Some(seq)));
                };
                Ev { kind: kind::TRADE, price: u32_at(raw, 27), size, flags: FLAG_CROSS, ..base }
            }
            _ => Ev { kind: kind::TRADE, flags: FLAG_BROKEN, ..base },
        };
        let name = self.symbol_of(locate);
        let book = self.book(name)?;
        Ok((ev, book))
    }

    /// Every message of a framed buffer (NASDAQ day-file layout, `ItchFeed.read_capture`'s
    /// reading of it: see `frames`).
    pub fn framed(&mut self, buf: &[u8], recv_ts: i64) -> (Events, Rejects) {
        // at most one event a message, and none from a message shorter than D's or B's 19 bytes
        // (2 more framed): room for every event, so the rows are never moved to grow
        let mut events = Events::with_capacity(buf.len() / 21 + 1);
        let mut rejects = Rejects::default();
        for (index, raw) in frames(buf).enumerate() {
            self.record(raw, recv_ts, index, &mut events, &mut rejects);
        }
        (events, rejects)
    }

    /// `orderbook.rebuild.rebuild` (`megatrading book`) over a framed buffer: `crate::rebuild::rebuild`
    /// with every message as `framed` takes it.
    pub fn rebuild(
        &mut self,
        buf: &[u8],
        recv_ts: i64,
        target: &mut Target<'_>,
        levels: usize,
        rows: &mut Vec<i64>,
    ) -> (Events, Rejects) {
        let mut events = Events::with_capacity(buf.len() / 21 + 1);
        let mut rejects = Rejects::default();
        let messages = frames(buf).map(|raw| (raw, recv_ts));
        crate::rebuild::rebuild(self, messages, target, levels, &mut events, &mut rejects, rows);
        (events, rejects)
    }
}

impl BookRows for Itch {
    fn symbol_name(&self, symbol: u32) -> &str {
        self.names.name(symbol)
    }

    fn top_row(&self, symbol: u32, levels: usize, rows: &mut Vec<i64>) {
        let book = &self.books[self.book_of(symbol) as usize];
        let total = |(p, l): (i64, Level)| (p, l.total);
        lobster_row(book.asks.iter().map(total), book.bids.iter().map(total), levels, rows);
    }
}

/// The messages of a buffer in NASDAQ's day-file layout, as `ItchFeed.read_capture` reads a file: a
/// 2-byte big-endian length before each, a zero length skipped, a frame cut short by the buffer's end
/// (or a lone last byte) handed on as it is, for the feed to refuse.
fn frames(buf: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        if pos >= buf.len() {
            return None;
        }
        if buf.len() - pos < 2 {
            let raw = &buf[pos..];
            pos = buf.len();
            return Some(raw);
        }
        let n = u16_at(buf, pos);
        pos += 2;
        if n == 0 {
            continue;
        }
        let end = (pos + n).min(buf.len());
        let raw = &buf[pos..end];
        pos = end;
        return Some(raw);
    })
}

/// The length of `buf`'s leading whole frames: where a reader of a stream in pieces cuts one.
pub fn whole_frames(buf: &[u8]) -> usize {
    let mut pos = 0;
    while buf.len() - pos >= 2 {
        let end = pos + 2 + u16_at(buf, pos);
        if end > buf.len() {
            break;
        }
        pos = end;
    }
    pos
}

impl MessageFeed for Itch {
    #[inline]
    fn record(&mut self, raw: &[u8], recv_ts: i64, index: usize, events: &mut Events, rejects: &mut Rejects) {
        match self.message(raw, recv_ts) {
            Ok(Some(ev)) => events.push(&ev, index),
            Ok(None) => {}
            Err(r) => rejects.push(r, index),
        }
    }
}

fn level_repr(level: Option<(i64, crate::book::Level)>) -> String {
    level.map_or("None".into(), |(p, l)| format!("({p}, {})", l.total))
}

/// `Feed.check`'s CrossedBook for an order-by-order book a message left crossed (ITCH, LOBSTER).
pub(crate) fn crossed_refusal(book: &L3, name: u32, seq: i64, ts: i64) -> Refusal {
    let text = format!("best bid {} >= best ask {}", level_repr(book.bids.best()), level_repr(book.asks.best()));
    let mut r = Refusal::new(Reason::CrossedBook, text, name, Some(seq));
    r.ts = ts;
    r
}

// ------------------------------------------------------------------------------------ state

const STATE_KIND: &str = "ItchFeed";

/// A locate table (locate -> name id, NONE for none) as packed (locate, id) pairs: a day uses a
/// few thousand of the 65,536 locates.
fn locate_pairs(table: &[u32]) -> Vec<i64> {
    let used = table.iter().enumerate().filter(|(_, &id)| id != NONE);
    used.flat_map(|(l, &id)| [l as i64, i64::from(id)]).collect()
}

impl Itch {
    /// Everything the feed keeps but its stock-field cache (`stock_ids`, rebuilt as fields come:
    /// a field maps to the name it spells, whose id the restored table keeps) and its name ->
    /// book index (the inverse of `book_name`).
    fn export<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = State::new(py, STATE_KIND)?;
        s.set("check_crossed", self.check_crossed)?;
        s.set("symbols", sorted(&self.symbols))?;
        s.set("names", self.names.from(0))?;
        s.set_packed("locates", &locate_pairs(&self.locate_name))?;
        s.set_packed("placeholders", &locate_pairs(&self.placeholder))?;
        state::put_l3_books(&s, &self.books, &self.book_name)?;
        s.set("messages", self.messages)?;
        s.set("system_event", self.system_event)?;
        Ok(s.dict)
    }

    fn import(state: &Bound<'_, PyAny>) -> PyResult<Itch> {
        let s = State::open(state, STATE_KIND)?;
        let symbols: Option<Vec<String>> = s.get("symbols")?;
        let mut feed = Itch::new(symbol_set(symbols), s.get("check_crossed")?);
        feed.names = Names::from_list(s.get("names")?).map_err(|e| s.invalid(e))?;
        let n_names = feed.names.len();
        let name_id = |v: i64| u32::try_from(v).ok().filter(|&id| (id as usize) < n_names);
        for (key, table) in [("locates", &mut feed.locate_name), ("placeholders", &mut feed.placeholder)] {
            for pair in s.packed(key, 2)?.chunks_exact(2) {
                let slot = usize::try_from(pair[0]).ok().and_then(|l| table.get_mut(l));
                match (slot, name_id(pair[1])) {
                    (Some(slot), Some(id)) if *slot == NONE => *slot = id,
                    _ => {
                        return Err(
                            s.invalid(format!("{key}: ({}, {}) is not a new locate and a symbol id", pair[0], pair[1]))
                        )
                    }
                }
            }
        }
        (feed.books, feed.book_name, feed.name_book) = state::take_l3_books(&s, &feed.names)?;
        feed.messages = s.get("messages")?;
        feed.system_event = s.get("system_event")?;
        Ok(feed)
    }
}

/// A symbol filter as a state keeps it: sorted, so that equal feeds give equal states.
pub fn sorted(symbols: &Option<FxHashSet<String>>) -> Option<Vec<String>> {
    symbols.as_ref().map(|set| {
        let mut list: Vec<String> = set.iter().cloned().collect();
        list.sort_unstable();
        list
    })
}

// ------------------------------------------------------------------------------------ Python

/// ITCH 5.0 decode + apply over batches; the semantics of `orderbook.venues.itch.ItchFeed`.
#[pyclass(name = "ItchFeed", module = "orderbook.native._core")]
pub struct PyItch {
    feed: Itch,
}

pub fn symbol_set(symbols: Option<Vec<String>>) -> Option<FxHashSet<String>> {
    symbols.map(|s| s.into_iter().collect())
}

/// `PyItch::rebuild`'s (batch, rows, target, bytes read).
type Rebuilt<'py> = (Batch<'py>, Bound<'py, PyArray2<i64>>, Option<String>, usize);

#[pymethods]
impl PyItch {
    #[new]
    #[pyo3(signature = (symbols = None, check_crossed = true))]
    fn new(symbols: Option<Vec<String>>, check_crossed: bool) -> Self {
        PyItch { feed: Itch::new(symbol_set(symbols), check_crossed) }
    }

    /// Every message of a framed buffer (2-byte big-endian length before each, as NASDAQ's day
    /// files and `orderbook.venues.itch.frame` write them): (events, rejects), dicts of columns.
    #[pyo3(signature = (buffer, recv_ts = 0))]
    fn decode_apply<'py>(&mut self, py: Python<'py>, buffer: &[u8], recv_ts: i64) -> PyResult<Batch<'py>> {
        let feed = &mut self.feed;
        let (events, rejects) = py.detach(|| feed.framed(buffer, recv_ts));
        batch_py(py, events, rejects)
    }

    /// `megatrading book` on the native path: `Itch::rebuild` over the buffer's whole frames (all of it
    /// where `last`): (events, rejects) as for `decode_apply`, the rows as an (n, 3 + 4 levels) int64
    /// array, the target's name once known, and the bytes read (the rest: a frame the next buffer ends).
    #[pyo3(signature = (buffer, levels, target = None, last = true, recv_ts = 0))]
    fn rebuild<'py>(
        &mut self,
        py: Python<'py>,
        buffer: &[u8],
        levels: usize,
        target: Option<String>,
        last: bool,
        recv_ts: i64,
    ) -> PyResult<Rebuilt<'py>> {
        let feed = &mut self.feed;
        let end = if last { buffer.len() } else { whole_frames(buffer) };
        let mut goal = Target { name: target.as_deref(), id: None }; // resolved at the target's first row
        let mut rows = Vec::new();
        let (events, rejects) = py.detach(|| feed.rebuild(&buffer[..end], recv_ts, &mut goal, levels, &mut rows));
        let name = goal.id.map(|i| feed.names.name(i).to_owned()).or(target);
        Ok((batch_py(py, events, rejects)?, crate::rebuild::rows_py(py, rows, levels)?, name, end))
    }

    /// Unframed messages (the values of `md.raw.itch`, or a frame's messages), with optional
    /// int64 receive times: (events, rejects) as for `decode_apply`.
    #[pyo3(signature = (messages, recv_ts = None))]
    fn on_messages<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
        recv_ts: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Batch<'py>> {
        crate::batch::on_messages(py, &mut self.feed, messages, recv_ts, 1)
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

    /// {stock locate: symbol} as learnt from the stream.
    fn locates(&self) -> Vec<(usize, String)> {
        self.feed.locates().into_iter().map(|(l, s)| (l, s.to_owned())).collect()
    }

    /// Messages handed to the feed so far (the next seq minus one).
    #[getter]
    fn messages(&self) -> i64 {
        self.feed.messages
    }

    /// The last S event code ("" before any).
    #[getter]
    fn system_event(&self) -> String {
        self.feed.system_event.map(|c| (c as char).to_string()).unwrap_or_default()
    }
}

crate::feed_methods!(
    PyItch,
    Itch,
    book_name,
    r#"The whole feed as plain values (msgpack-able), for `__setstate__` to continue from:
        {"kind": "ItchFeed", "version": 1, "check_crossed": bool, "symbols": sorted filter or
        None, "names": the symbol table by id, "locates" / "placeholders": (stock locate, symbol
        id) pairs as packed int64 bytes, "books": [{"symbol": id, "bids": bytes, "asks": bytes}]
        in the order the books were made (orders as `L3Book.__getstate__` packs them),
        "messages": int, "system_event": the S event code byte or None}."#
);
