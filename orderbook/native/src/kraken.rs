//! Kraken websocket books decode + apply: the rules of `orderbook/venues/kraken.py` (`KrakenFeed`) over a
//! batch of messages: v1 channel arrays and v2 objects, book snapshots and updates applied in message order
//! and truncated to the subscribed depth, each pair's precision learnt as the reference learns it, every
//! CRC32 checksum checked, trades; with the reference's events, refusals and counters.
//!
//! The reference parses JSON with every number kept as its text (`parse_float=str, parse_int=str`): a
//! number and a string are alike to it, so here a `Num` and a `Str` node are both "text" (`Doc::text`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::batch::{Ev, Events, Names, Refusal, NONE};
use crate::book::{kind, ASK, BID, FLAG_AGGRESSOR_ASK, FLAG_AGGRESSOR_BID, L2};
use crate::errors::{not_configured, Reason};
use crate::itch::{sorted, symbol_set, MAX_MESSAGE_BYTES};
use crate::json::{Doc, Node, Tape};
use crate::numbers::{fixed, PY_INT_MAX_DIGITS};
use crate::rebuild::{lobster_row, BookRows};
use crate::state::{self, State};

const CHECKSUM_LEVELS: usize = 10; // "the top 10 price levels regardless of subscription depth"
const V1_VOLUME_DECIMALS: u32 = 8;
pub const V2_DEFAULT_DEPTH: usize = 10;
const NS_DECIMALS: u32 = 9;
const MAX_EXPONENT: i64 = 30;
pub const MAX_DECIMALS: u32 = 18;
const V1_EVENTS: [&str; 4] = ["heartbeat", "systemStatus", "subscriptionStatus", "pong"];
const V2_IGNORED_CHANNELS: [&str; 4] = ["heartbeat", "status", "ticker", "ohlc"];

/// Where a pair's precision was learnt (`kraken.Precision.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Config,
    Instrument,
    Snapshot,
    Trade,
    Update,
}

const SOURCES: [(Source, &str); 5] = [
    (Source::Config, "config"),
    (Source::Instrument, "instrument"),
    (Source::Snapshot, "snapshot"),
    (Source::Trade, "trade"),
    (Source::Update, "update"),
];

impl Source {
    fn name(self) -> &'static str {
        SOURCES.iter().find(|(s, _)| *s == self).expect("every source is named").1
    }

    fn of(name: &str) -> Option<Source> {
        SOURCES.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }
}

/// Decimals of a pair's prices and sizes, and where they were learnt.
#[derive(Clone, Copy, Debug)]
pub struct Precision {
    price: u32,
    size: u32,
    source: Source,
}

/// A pair's book, its BookSync (Kraken never buffers) and its counters.
#[derive(Default)]
struct Sym {
    book: L2,
    live: bool,
    last_seq: Option<i64>,
    resyncs: i64,
    snapshots: i64,
    messages: i64, // the Event.seq counter
    skipped: i64,  // updates dropped while awaiting a snapshot
    checked: i64,
    matched: i64,
}

/// Text as the reference holds a str: exact, or with U+FFFD for a lone surrogate (`Doc::text`).
type Text<'a> = (Cow<'a, str>, bool);

/// A book message's levels as printed (`kraken._Levels`), before the pair's precision reads them.
struct BookMsg<'a> {
    symbol: Text<'a>,
    snapshot: bool,
    levels: Vec<(i8, Cow<'a, str>, Cow<'a, str>)>,
    ts: i64,
    checksum: Option<u32>,
    depth: usize,
}

/// A trade as printed: (aggressor bought, price, size, ts).
type TradeRow<'a> = (bool, Cow<'a, str>, Cow<'a, str>, i64);

type R<T> = Result<T, Refusal>;

/// `_bad` without a symbol, and the reference's DecodeError from a KeyError / TypeError.
fn bad(text: impl Into<String>) -> Refusal {
    Refusal::new(Reason::Malformed, text, NONE, None)
}

fn unknown(text: impl Into<String>) -> Refusal {
    Refusal::new(Reason::UnknownMessageType, text, NONE, None)
}

fn at(mut r: Refusal, seq: i64, ts: i64) -> Refusal {
    r.seq = Some(seq);
    r.ts = ts;
    r
}

/// `numbers.decimals_of`: the characters after the first '.'.
fn decimals_of(text: &str) -> usize {
    text.split_once('.').map_or(0, |(_, frac)| frac.chars().count())
}

/// The value of 1 to PY_INT_MAX_DIGITS ASCII digits (the reference's `isascii() and isdigit()` before its
/// `int()`), u64::MAX past it; None for any other text.
fn digits(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > PY_INT_MAX_DIGITS || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |v, &d| v.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// `_positive_int`: digits of a value above 0; past usize, usize::MAX (a depth no book reaches).
fn positive_int(text: &str) -> Option<usize> {
    digits(text).filter(|&v| v > 0).map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// `_decimals` of a text: digits of at most MAX_DECIMALS.
fn decimals(text: &str) -> Option<u32> {
    digits(text).and_then(|v| u32::try_from(v).ok()).filter(|&n| n <= MAX_DECIMALS)
}

/// An optional sign at `i` (stepped over): whether it is '-'.
fn sign(b: &[u8], i: &mut usize) -> bool {
    match b.get(*i) {
        Some(b'-') => {
            *i += 1;
            true
        }
        Some(b'+') => {
            *i += 1;
            false
        }
        _ => false,
    }
}

/// `_text`'s exponent: `[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+` printed as `format(Decimal(text), "f")`
/// prints it, None where the reference refuses it (not that pattern, or adjusted past MAX_EXPONENT).
fn plain(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    let negative = sign(b, &mut i);
    let digits_from = |i: usize| i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_end = digits_from(i);
    let (int, mut frac) = (&b[i..int_end], &b[int_end..int_end]);
    i = int_end;
    if b.get(i) == Some(&b'.') {
        let end = digits_from(i + 1);
        frac = &b[i + 1..end];
        i = end;
    }
    if int.is_empty() && frac.is_empty() || !matches!(b.get(i), Some(b'e' | b'E')) {
        return None;
    }
    i += 1;
    let exp_negative = sign(b, &mut i);
    let exp_digits = &b[i..];
    if exp_digits.is_empty() || !exp_digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let exp = exp_digits.iter().fold(0i64, |v, &d| v.saturating_mul(10).saturating_add(i64::from(d - b'0')));
    let exp = if exp_negative { -exp } else { exp };
    // the coefficient's digits without leading zeros, and its exponent
    let coefficient: Vec<u8> = int.iter().chain(frac).copied().skip_while(|&d| d == b'0').collect();
    let exponent = exp.saturating_sub(frac.len() as i64);
    let adjusted = exponent.saturating_add(coefficient.len().max(1) as i64 - 1);
    if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&adjusted) {
        return None;
    }
    let mut out = String::with_capacity(coefficient.len() + 34);
    if negative {
        out.push('-');
    }
    let digits = if coefficient.is_empty() { &b"0"[..] } else { &coefficient[..] };
    let digits = std::str::from_utf8(digits).expect("ASCII digits");
    if exponent >= 0 {
        if coefficient.is_empty() {
            out.push('0');
        } else {
            out.push_str(digits);
            out.extend(std::iter::repeat('0').take(exponent as usize));
        }
    } else {
        let k = exponent.unsigned_abs() as usize;
        if digits.len() > k {
            out.push_str(&digits[..digits.len() - k]);
            out.push('.');
            out.push_str(&digits[digits.len() - k..]);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat('0').take(k - digits.len()));
            out.push_str(digits);
        }
    }
    Some(out)
}

/// `_text`: a number's text, a quoted decimal or a JSON number, an exponent printed plainly.
fn number_text<'a>(doc: &Doc<'a>, i: usize, field: &str) -> R<Cow<'a, str>> {
    let Some((text, _)) = doc.text(i) else {
        return Err(bad(format!("{field} must be a decimal")));
    };
    if !text.contains(['e', 'E']) {
        return Ok(text);
    }
    plain(&text).map(Cow::Owned).ok_or_else(|| bad(format!("{field} {text:?} is not a number of a sane size")))
}

/// `_epoch_ns`: v1 seconds "1618678133.365913" -> ns, exactly.
fn epoch_ns(doc: &Doc<'_>, i: usize) -> R<i64> {
    let text = number_text(doc, i, "timestamp")?;
    fixed(text.as_bytes(), NS_DECIMALS).ok_or_else(|| bad("timestamp is not a plain decimal number"))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `_rfc3339_ns`: "2023-10-06T17:35:55.440295Z" (or an offset "+HH:MM") -> ns since the epoch, exactly;
/// a date `datetime` refuses, an offset's minutes past 59, or a time outside int64 ns refused.
fn rfc3339_ns(doc: &Doc<'_>, i: usize) -> R<i64> {
    let refused = || bad("timestamp is not an RFC 3339 time int64 ns hold");
    let Some((text, _)) = doc.text(i) else {
        return Err(refused());
    };
    let b = text.as_bytes();
    let num = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |v, &d| v * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let fields = (num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2));
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = fields else {
        return Err(refused());
    };
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return Err(refused());
    }
    let mut at = 19;
    let mut frac: i64 = 0;
    if sep(at, b'.') {
        let n = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return Err(refused());
        }
        let digits = num(at + 1, n).ok_or_else(refused)?;
        frac = digits * 10_i64.pow(9 - n as u32);
        at += 1 + n;
    }
    let offset = match b.get(at..) {
        Some(b"Z") => 0,
        Some([sign @ (b'+' | b'-'), _, _, b':', _, _]) => {
            let (Some(oh), Some(om)) = (num(at + 1, 2), num(at + 4, 2)) else {
                return Err(refused());
            };
            if oh > 23 || om > 59 {
                return Err(refused());
            }
            let minutes = oh * 60 + om;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return Err(refused()),
    };
    let valid = (1..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && h <= 23
        && mi <= 59
        && s <= 59;
    if !valid {
        return Err(refused());
    }
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset * 60;
    let ns = i128::from(seconds) * 1_000_000_000 + i128::from(frac);
    i64::try_from(ns).map_err(|_| refused())
}

/// `_checksum_field`: the ASCII digits of an unsigned 32-bit integer.
fn checksum_field(doc: &Doc<'_>, i: usize) -> R<u32> {
    let refused = || bad("checksum is not an unsigned 32-bit integer");
    let (text, _) = doc.text(i).ok_or_else(refused)?;
    digits(&text).and_then(|v| u32::try_from(v).ok()).ok_or_else(refused)
}

/// The Python type a parsed JSON value is (numbers are text: str).
fn type_name(node: Node) -> &'static str {
    match node {
        Node::Null => "NoneType",
        Node::Bool(_) => "bool",
        Node::Arr { .. } => "list",
        Node::Obj { .. } => "dict",
        _ => "str",
    }
}

fn text_is(doc: &Doc<'_>, i: Option<usize>, want: &str) -> bool {
    i.and_then(|i| doc.text(i)).is_some_and(|(t, _)| t == want)
}

fn is_container(doc: &Doc<'_>, i: usize) -> bool {
    matches!(doc.nodes[i], Node::Arr { .. } | Node::Obj { .. })
}

/// Kraken's CRC32 over the top 10 asks (ascending) then the top 10 bids (descending), each level's
/// price then size as printed without '.' and leading zeros: at the pair's precision, their `str`.
pub fn book_checksum(book: &L2, scratch: &mut String) -> u32 {
    use std::fmt::Write as _;
    scratch.clear();
    for (p, q) in book.asks.iter().take(CHECKSUM_LEVELS).chain(book.bids.iter().take(CHECKSUM_LEVELS)) {
        write!(scratch, "{p}{q}").expect("a String takes every write");
    }
    crc32fast::hash(scratch.as_bytes())
}

pub struct Kraken {
    names: Names,
    syms: Vec<Option<Sym>>, // by name id
    order: Vec<u32>,        // names with a book, in the order the books were made
    symbols: Option<FxHashSet<String>>,
    check_crossed: bool,
    precision: FxHashMap<String, Precision>,
    v2_depth: FxHashMap<String, usize>,
    default_depth: usize,
    tape: Tape,
    scratch: String,
}

impl Kraken {
    pub fn new(
        symbols: Option<FxHashSet<String>>,
        check_crossed: bool,
        precisions: FxHashMap<String, (u32, u32)>,
        depth: usize,
    ) -> Self {
        let precision = precisions
            .into_iter()
            .map(|(s, (price, size))| (s, Precision { price, size, source: Source::Config }))
            .collect();
        Kraken {
            names: Names::default(),
            syms: Vec::new(),
            order: Vec::new(),
            symbols,
            check_crossed,
            precision,
            v2_depth: FxHashMap::default(),
            default_depth: depth,
            tape: Tape::default(),
            scratch: String::new(),
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        let id = self.names.intern(name);
        if self.syms.len() < self.names.len() {
            self.syms.resize_with(self.names.len(), || None);
        }
        id
    }

    /// `_bad(text, symbol)`: a DecodeError naming the pair.
    fn named(&mut self, reason: Reason, text: impl Into<String>, symbol: &str) -> Refusal {
        let id = self.intern(symbol);
        Refusal::new(reason, text, id, None)
    }

    /// `Feed.book`: the pair's book and sync, made on first use; a name that is not Unicode text, or that
    /// the filter leaves out, refused.
    fn book_for(&mut self, symbol: &Text<'_>) -> R<u32> {
        if !symbol.1 {
            return Err(bad("symbol is not Unicode text (a lone surrogate)"));
        }
        let id = self.intern(&symbol.0);
        if self.syms[id as usize].is_none() {
            if self.symbols.as_ref().is_some_and(|allowed| !allowed.contains(symbol.0.as_ref())) {
                let text = not_configured(&symbol.0);
                return Err(Refusal::new(Reason::UnknownSymbol, text, id, None));
            }
            self.syms[id as usize] = Some(Sym::default());
            self.order.push(id);
        }
        Ok(id)
    }

    fn sym_mut(&mut self, id: u32) -> &mut Sym {
        self.syms[id as usize].as_mut().expect("book_for made it")
    }

    // --- one message ------------------------------------------------------------------------

    fn message(&mut self, raw: &[u8], recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        if raw.len() > MAX_MESSAGE_BYTES {
            let text = format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", raw.len());
            return Err(Refusal::new(Reason::Oversized, text, NONE, None));
        }
        let mut tape = std::mem::take(&mut self.tape);
        let result = match tape.parse_numbers_as_text(raw) {
            Err(()) => Err(bad("not a JSON message")),
            Ok(doc) => self.dispatch(&doc, recv_ts, events, msg),
        };
        self.tape = tape;
        result
    }

    fn dispatch(&mut self, doc: &Doc<'_>, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        match doc.nodes[0] {
            Node::Arr { .. } => self.v1(doc, recv_ts, events, msg),
            Node::Obj { .. } if doc.get(0, "channel").is_some() || doc.get(0, "method").is_some() => {
                self.v2(doc, recv_ts, events, msg)
            }
            node => match doc.get(0, "event").filter(|_| matches!(node, Node::Obj { .. })) {
                Some(e) => self.v1_event(doc, e),
                None => Err(unknown(format!("not a Kraken message: a JSON {}", type_name(node)))),
            },
        }
    }

    // --- v1 ---------------------------------------------------------------------------------

    fn v1_event(&mut self, doc: &Doc<'_>, e: usize) -> R<()> {
        if is_container(doc, e) {
            return Err(bad("malformed message: an event that is not a string"));
        }
        let event = doc.text(e).map(|(t, _)| t);
        if !event.as_deref().is_some_and(|t| V1_EVENTS.contains(&t)) {
            return Err(unknown(format!("unknown v1 event {}", doc.shown(Some(e)))));
        }
        let unsubscribed = event.as_deref() == Some("subscriptionStatus")
            && text_is(doc, doc.get(0, "status"), "unsubscribed")
            && doc.get(0, "channelName").and_then(|c| doc.text(c)).is_some_and(|(c, _)| c.starts_with("book"));
        if !unsubscribed {
            return Ok(());
        }
        let Some(pair) = doc.get(0, "pair") else {
            return Ok(());
        };
        if is_container(doc, pair) {
            return Err(bad("malformed message: an unhashable pair"));
        }
        if let Some((name, true)) = doc.text(pair) {
            let id = self.names.id(&name);
            if let Some(s) = id.and_then(|id| self.syms[id as usize].as_mut()) {
                lose_sync(s); // no more updates will come: the book is no longer kept
            }
        }
        Ok(())
    }

    fn v1(&mut self, doc: &Doc<'_>, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        let items: Vec<usize> = doc.items(0).collect();
        let n = items.len();
        let texts = (n >= 4).then(|| (doc.text(items[n - 2]), doc.text(items[n - 1])));
        let channel_at = items.get(n.wrapping_sub(2)).copied();
        let Some((Some((channel, _)), Some(pair))) = texts else {
            return Err(bad("a v1 channel message is [channelID, payload..., channelName, pair]"));
        };
        let payloads = &items[1..n - 2];
        if channel.starts_with("book-") {
            let m = self.v1_levels(doc, payloads, &channel, pair)?;
            return self.on_book(m, recv_ts, events, msg);
        }
        if channel == "trade" {
            return self.v1_trades(doc, payloads, pair, recv_ts, events, msg);
        }
        if channel == "ticker" || channel == "spread" || channel.starts_with("ohlc-") {
            return Ok(());
        }
        let text = format!("unknown v1 channel {}", doc.shown(channel_at));
        Err(self.named(Reason::UnknownMessageType, text, &pair.0))
    }

    fn v1_levels<'a>(&mut self, doc: &Doc<'a>, payloads: &[usize], channel: &str, pair: Text<'a>) -> R<BookMsg<'a>> {
        let depth =
            positive_int(&channel[5..]).ok_or_else(|| bad(format!("book channel {channel:?} names no depth")))?;
        if payloads.is_empty()
            || payloads.len() > 2
            || !payloads.iter().all(|&p| matches!(doc.nodes[p], Node::Obj { .. }))
        {
            return Err(self.named(Reason::Malformed, "a v1 book message carries one or two dicts of levels", &pair.0));
        }
        let snapshot = doc.get(payloads[0], "as").is_some() || doc.get(payloads[0], "bs").is_some();
        let allowed: &[&str] = if snapshot { &["as", "bs"] } else { &["a", "b", "c"] };
        let mut m = BookMsg { symbol: pair, snapshot, levels: Vec::new(), ts: 0, checksum: None, depth };
        for &payload in payloads {
            // a Python dict's items: each key once, where it first came, with its last value
            let mut keys: Vec<(Cow<'a, str>, usize)> = Vec::with_capacity(3);
            for (k, v) in doc.pairs(payload) {
                let key = doc.text(k).map(|(t, _)| t).unwrap_or_default();
                match keys.iter_mut().find(|(seen, _)| *seen == key) {
                    Some(slot) => slot.1 = v,
                    None => keys.push((key, v)),
                }
            }
            if keys.is_empty() || !keys.iter().all(|(k, _)| allowed.contains(&k.as_ref())) {
                let text = format!("unexpected book keys in a {}", if snapshot { "snapshot" } else { "update" });
                return Err(self.named(Reason::Malformed, text, &m.symbol.0));
            }
            for (key, rows) in keys {
                if key == "c" {
                    if m.checksum.is_some() {
                        return Err(self.named(Reason::Malformed, "two checksums in one message", &m.symbol.0));
                    }
                    m.checksum = Some(checksum_field(doc, rows)?);
                    continue;
                }
                let side = if key.starts_with('a') { ASK } else { BID };
                let ts = self.v1_side(doc, rows, side, &mut m)?;
                m.ts = m.ts.max(ts);
            }
        }
        Ok(m)
    }

    /// `_v1_side`: `[price, volume, timestamp(, "r")]` rows onto the message's levels; their latest time.
    fn v1_side<'a>(&mut self, doc: &Doc<'a>, rows: usize, side: i8, m: &mut BookMsg<'a>) -> R<i64> {
        if !matches!(doc.nodes[rows], Node::Arr { .. }) {
            return Err(self.named(Reason::Malformed, "levels must be a list", &m.symbol.0));
        }
        let mut ts = 0;
        for row in doc.items(rows) {
            let cells: Vec<usize> = match doc.nodes[row] {
                Node::Arr { .. } => doc.items(row).collect(),
                _ => Vec::new(),
            };
            if !(cells.len() == 3 || cells.len() == 4 && text_is(doc, Some(cells[3]), "r")) {
                let text = "a level is [price, volume, timestamp] or a republish with 'r'";
                return Err(self.named(Reason::Malformed, text, &m.symbol.0));
            }
            let price = number_text(doc, cells[0], "price")?;
            let size = number_text(doc, cells[1], "volume")?;
            m.levels.push((side, price, size));
            ts = ts.max(epoch_ns(doc, cells[2])?);
        }
        Ok(ts)
    }

    fn v1_trades<'a>(
        &mut self,
        doc: &Doc<'a>,
        payloads: &[usize],
        pair: Text<'a>,
        recv_ts: i64,
        events: &mut Events,
        msg: usize,
    ) -> R<()> {
        if payloads.len() != 1 || !matches!(doc.nodes[payloads[0]], Node::Arr { .. }) {
            return Err(bad(
                "a v1 trade message is [channelID, [[price, volume, time, side, type, misc], ...], 'trade', pair]",
            ));
        }
        let mut rows: Vec<TradeRow<'a>> = Vec::new();
        for row in doc.items(payloads[0]) {
            let cells: Vec<usize> = match doc.nodes[row] {
                Node::Arr { .. } => doc.items(row).collect(),
                _ => Vec::new(),
            };
            let side = cells.get(3).and_then(|&c| doc.text(c)).map(|(t, _)| t);
            let buy = match side.as_deref() {
                Some("b") => true,
                Some("s") => false,
                _ => {
                    return Err(self.named(
                        Reason::Malformed,
                        "a trade is [price, volume, time, side 'b'|'s', ...]",
                        &pair.0,
                    ))
                }
            };
            let price = number_text(doc, cells[0], "price")?;
            let size = number_text(doc, cells[1], "volume")?;
            rows.push((buy, price, size, epoch_ns(doc, cells[2])?));
        }
        self.on_trades(&pair, &rows, recv_ts, events, msg)
    }

    // --- v2 ---------------------------------------------------------------------------------

    fn v2(&mut self, doc: &Doc<'_>, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        if doc.get(0, "method").is_some() {
            return self.v2_method(doc);
        }
        let channel_at = doc.get(0, "channel").expect("dispatch checked");
        if is_container(doc, channel_at) {
            return Err(bad("malformed message: an unhashable channel"));
        }
        let channel = doc.text(channel_at).map(|(t, _)| t);
        let channel = channel.as_deref().unwrap_or("\u{0}not a string");
        if V2_IGNORED_CHANNELS.contains(&channel) {
            return Ok(());
        }
        let data = doc.get(0, "data");
        if channel == "instrument" {
            return self.v2_instruments(doc, data);
        }
        if channel != "book" && channel != "trade" {
            return Err(unknown(format!("unknown v2 channel {}", doc.shown(Some(channel_at)))));
        }
        let Some(data) = data.filter(|&d| matches!(doc.nodes[d], Node::Arr { .. })) else {
            return Err(bad(format!("v2 {channel} data must be a list")));
        };
        if channel == "trade" {
            return self.v2_trades(doc, data, recv_ts, events, msg);
        }
        let kind_at = doc.get(0, "type");
        let kind = kind_at.and_then(|t| doc.text(t)).map(|(t, _)| t);
        let snapshot = match kind.as_deref() {
            Some("snapshot") => true,
            Some("update") => false,
            _ => return Err(unknown(format!("unknown v2 book message type {}", doc.shown(kind_at)))),
        };
        let decoded = doc.items(data).map(|item| self.v2_levels(doc, item, snapshot)).collect::<R<Vec<_>>>()?;
        // several books in one message: each is applied; the first error is the message's
        let mut first = None;
        for m in decoded {
            if let Err(r) = self.on_book(m, recv_ts, events, msg) {
                first.get_or_insert(r);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// A subscribe response names the book depth the client must truncate to.
    fn v2_method(&mut self, doc: &Doc<'_>) -> R<()> {
        let result = doc.get(0, "result").filter(|&r| matches!(doc.nodes[r], Node::Obj { .. }));
        let success = doc.get(0, "success").is_some_and(|s| doc.nodes[s] == Node::Bool(true));
        let Some(result) = result.filter(|_| success && text_is(doc, doc.get(0, "method"), "subscribe")) else {
            return Ok(());
        };
        let depth = doc.get(result, "depth").and_then(|d| doc.text(d));
        let symbol = doc.get(result, "symbol").and_then(|s| doc.text(s));
        let (Some((depth, _)), Some((symbol, exact))) = (depth, symbol) else {
            return Ok(());
        };
        if !text_is(doc, doc.get(result, "channel"), "book") {
            return Ok(());
        }
        let Some(value) = positive_int(&depth) else {
            return Err(self.named(
                Reason::Malformed,
                format!("book depth {depth:?} is not a positive integer"),
                &symbol,
            ));
        };
        if exact {
            self.v2_depth.insert(symbol.into_owned(), value); // an inexact name never has a book
        }
        Ok(())
    }

    /// `instrument` channel: each pair's price_precision and qty_precision, pair by pair.
    fn v2_instruments(&mut self, doc: &Doc<'_>, data: Option<usize>) -> R<()> {
        let pairs = match data.map(|d| doc.nodes[d]) {
            Some(Node::Obj { .. }) => doc.get(data.expect("some"), "pairs"),
            _ => return Err(bad("v2 instrument data must hold a list of pairs")),
        };
        let Some(pairs) = pairs else {
            return Ok(());
        };
        if !matches!(doc.nodes[pairs], Node::Arr { .. }) {
            return Err(bad("v2 instrument data must hold a list of pairs"));
        }
        for pair in doc.items(pairs) {
            if !matches!(doc.nodes[pair], Node::Obj { .. }) {
                return Err(bad("malformed message: an instrument pair that is not an object"));
            }
            let fields = (doc.get(pair, "symbol"), doc.get(pair, "price_precision"), doc.get(pair, "qty_precision"));
            let (Some(symbol), Some(p), Some(q)) = fields else {
                return Err(bad("malformed message: an instrument pair without its symbol or precisions"));
            };
            let Some((symbol, exact)) = doc.text(symbol) else {
                return Err(bad("instrument symbol must be a string"));
            };
            let read = |i: usize| doc.text(i).and_then(|(t, _)| decimals(&t));
            let (Some(price), Some(size)) = (read(p), read(q)) else {
                return Err(bad(format!("instrument precisions: at most {MAX_DECIMALS} decimals are read")));
            };
            let configured = self.precision.get(symbol.as_ref()).is_some_and(|p| p.source == Source::Config);
            if exact && !configured {
                self.precision.insert(symbol.into_owned(), Precision { price, size, source: Source::Instrument });
            }
        }
        Ok(())
    }

    fn v2_levels<'a>(&mut self, doc: &Doc<'a>, item: usize, snapshot: bool) -> R<BookMsg<'a>> {
        let symbol = match doc.nodes[item] {
            Node::Obj { .. } => doc.get(item, "symbol").and_then(|s| doc.text(s)),
            _ => None,
        };
        let Some(symbol) = symbol else {
            return Err(bad("v2 book data items are objects with a symbol"));
        };
        let mut levels = Vec::new();
        for (key, side) in [("asks", ASK), ("bids", BID)] {
            let Some(rows) = doc.get(item, key) else {
                continue;
            };
            if !matches!(doc.nodes[rows], Node::Arr { .. }) {
                return Err(self.named(Reason::Malformed, format!("{key} must be a list"), &symbol.0));
            }
            for row in doc.items(rows) {
                if !matches!(doc.nodes[row], Node::Obj { .. }) {
                    return Err(self.named(Reason::Malformed, "a v2 level is {'price', 'qty'}", &symbol.0));
                }
                let price = doc.get(row, "price").ok_or_else(|| bad("malformed message: KeyError 'price'"))?;
                let price = number_text(doc, price, "price")?;
                let qty = doc.get(row, "qty").ok_or_else(|| bad("malformed message: KeyError 'qty'"))?;
                let qty = number_text(doc, qty, "qty")?;
                levels.push((side, price, qty));
            }
        }
        let ts = match doc.get(item, "timestamp") {
            Some(t) => rfc3339_ns(doc, t)?,
            None => 0,
        };
        let checksum = doc.get(item, "checksum").map(|c| checksum_field(doc, c)).transpose()?;
        let depth = if symbol.1 { self.v2_depth.get(symbol.0.as_ref()).copied() } else { None };
        let depth = depth.unwrap_or(self.default_depth);
        Ok(BookMsg { symbol, snapshot, levels, ts, checksum, depth })
    }

    fn v2_trades(&mut self, doc: &Doc<'_>, data: usize, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        let mut by_pair: Vec<(Text<'_>, Vec<TradeRow<'_>>)> = Vec::new();
        for t in doc.items(data) {
            let obj = matches!(doc.nodes[t], Node::Obj { .. });
            let side = if obj { doc.get(t, "side").and_then(|s| doc.text(s)).map(|(s, _)| s) } else { None };
            let symbol = if obj { doc.get(t, "symbol").and_then(|s| doc.text(s)) } else { None };
            let (buy, Some(symbol)) = (side.as_deref(), symbol) else {
                return Err(bad("a v2 trade has a symbol and a side 'buy'|'sell'"));
            };
            let buy = match buy {
                Some("buy") => true,
                Some("sell") => false,
                _ => return Err(bad("a v2 trade has a symbol and a side 'buy'|'sell'")),
            };
            let cell = |key: &str| doc.get(t, key).ok_or_else(|| bad(format!("malformed message: KeyError {key:?}")));
            let price = number_text(doc, cell("price")?, "price")?;
            let qty = number_text(doc, cell("qty")?, "qty")?;
            let ts = rfc3339_ns(doc, cell("timestamp")?)?;
            let row = (buy, price, qty, ts);
            // a dict by pair, as the reference groups them: the lossy name stands for its pair here, and a
            // pair that is not Unicode text is refused before any other is applied only if it comes first
            match by_pair.iter_mut().find(|(s, _)| *s == symbol) {
                Some((_, rows)) => rows.push(row),
                None => by_pair.push((symbol, vec![row])),
            }
        }
        let staged = events.len();
        for (pair, rows) in &by_pair {
            if let Err(r) = self.on_trades(pair, rows, recv_ts, events, msg) {
                events.truncate(staged); // no trade of a refused message is the reference's
                return Err(r);
            }
        }
        Ok(())
    }

    // --- books ------------------------------------------------------------------------------

    fn on_book(&mut self, m: BookMsg<'_>, recv_ts: i64, events: &mut Events, msg: usize) -> R<()> {
        let sym = self.book_for(&m.symbol)?;
        let s = self.sym_mut(sym);
        s.messages += 1;
        let (seq, live) = (s.messages, s.live);
        if m.snapshot {
            self.learn_precision(sym, &m, seq)?;
        } else if !live {
            self.sym_mut(sym).skipped += 1; // no replay exists: the next snapshot replaces the book
            let r = Refusal::new(Reason::OutOfSync, "book update while awaiting a snapshot: not applied", sym, None);
            return Err(at(r, seq, m.ts));
        }
        let levels = self.parse_levels(sym, &m, seq)?; // every level parsed before the book is touched
        let check = self.check_crossed;
        let mut scratch = std::mem::take(&mut self.scratch);
        let s = self.sym_mut(sym);
        let ev = |k: i8, side: i8, price: i64, size: i64| Ev {
            kind: k,
            ts: m.ts,
            seq,
            side,
            price,
            size,
            recv_ts,
            symbol: sym,
            ..Ev::default()
        };
        if m.snapshot {
            events.push(&ev(kind::SNAPSHOT_BEGIN, 0, 0, 0), msg);
            s.book.clear();
        }
        // in message order ("do not sort by timestamp"), then truncated to the depth
        for &(side, price, size) in &levels {
            s.book.set_level(side, price, size).expect("decoded levels are valid");
            events.push(&ev(kind::LEVEL_SET, side, price, size), msg);
        }
        for side in [ASK, BID] {
            let levels = if side == ASK { &mut s.book.asks } else { &mut s.book.bids };
            while levels.len() > m.depth {
                let (price, _) = levels.pop_worst().expect("more levels than the depth");
                events.push(&ev(kind::LEVEL_SET, side, price, 0), msg);
            }
        }
        if m.snapshot {
            events.push(&ev(kind::SNAPSHOT_END, 0, 0, 0), msg);
            s.live = true;
            s.snapshots += 1;
        }
        s.last_seq = Some(seq);
        let mut result = Ok(());
        if let Some(expected) = m.checksum {
            s.checked += 1;
            let ours = book_checksum(&s.book, &mut scratch);
            if ours != expected {
                lose_sync(s);
                let text = "CRC32 of the top 10 levels differs; the book awaits a fresh snapshot";
                let mut r = at(Refusal::new(Reason::ChecksumMismatch, text, sym, None), seq, m.ts);
                r.gap = (i64::from(expected), i64::from(ours));
                result = Err(r);
            } else {
                s.matched += 1;
            }
        }
        if result.is_ok() && check && s.book.crossed() {
            let [bp, bs, ap, a_s] = s.book.top();
            let text = format!("best bid ({bp}, {bs}) >= best ask ({ap}, {a_s})");
            result = Err(at(Refusal::new(Reason::CrossedBook, text, sym, None), seq, m.ts));
        }
        self.scratch = scratch;
        result
    }

    /// A snapshot prints every level at the pair's precision: the widest decimals are it.
    fn learn_precision(&mut self, sym: u32, m: &BookMsg<'_>, seq: i64) -> R<()> {
        let name = self.names.name(sym);
        let known = self.precision.get(name).map(|p| p.source);
        if matches!(known, Some(Source::Config | Source::Instrument)) || m.levels.is_empty() {
            return Ok(());
        }
        let price = m.levels.iter().map(|(_, p, _)| decimals_of(p)).max().unwrap_or(0);
        let size = m.levels.iter().map(|(_, _, q)| decimals_of(q)).max().unwrap_or(0);
        let prec = printed(sym, price, size, Source::Snapshot, seq, m.ts)?;
        self.precision.insert(name.to_owned(), prec);
        Ok(())
    }

    fn parse_levels(&mut self, sym: u32, m: &BookMsg<'_>, seq: i64) -> R<Vec<(i8, i64, i64)>> {
        let name = self.names.name(sym);
        let prec = match self.precision.get(name) {
            Some(&p) => p,
            None => {
                // only an empty snapshot leaves it unknown: the first update that prints levels fixes it
                let price = m.levels.iter().map(|(_, p, _)| decimals_of(p)).max().unwrap_or(0);
                let size = m.levels.iter().map(|(_, _, q)| decimals_of(q)).max().unwrap_or(V1_VOLUME_DECIMALS as usize);
                let prec = printed(sym, price, size, Source::Update, seq, m.ts)?;
                if !m.levels.is_empty() {
                    self.precision.insert(name.to_owned(), prec);
                }
                prec
            }
        };
        let refused =
            || at(Refusal::new(Reason::Malformed, "price or size is not a plain decimal number", sym, None), seq, m.ts);
        let mut out = Vec::with_capacity(m.levels.len());
        for (side, p, q) in &m.levels {
            let price = fixed(p.as_bytes(), prec.price).ok_or_else(refused)?;
            let size = fixed(q.as_bytes(), prec.size).ok_or_else(refused)?;
            out.push((*side, price, size));
        }
        Ok(out)
    }

    // --- trades -----------------------------------------------------------------------------

    fn on_trades(
        &mut self,
        pair: &Text<'_>,
        rows: &[TradeRow<'_>],
        recv_ts: i64,
        events: &mut Events,
        msg: usize,
    ) -> R<()> {
        let sym = self.book_for(pair)?; // the symbol filter applies to trades too
        let s = self.sym_mut(sym);
        s.messages += 1;
        let seq = s.messages;
        if rows.is_empty() {
            return Ok(());
        }
        let name = self.names.name(sym);
        let prec = match self.precision.get(name) {
            Some(&p) => p,
            None => {
                // Kraken prints a pair's trades at its book's precision: kept for the pair's next trades
                let price = rows.iter().map(|(_, p, _, _)| decimals_of(p)).max().unwrap_or(0);
                let size =
                    rows.iter().map(|(_, _, q, _)| decimals_of(q)).max().unwrap_or(0).max(V1_VOLUME_DECIMALS as usize);
                let prec = printed(sym, price, size, Source::Trade, seq, 0)?;
                self.precision.insert(name.to_owned(), prec);
                prec
            }
        };
        let mut trades = Vec::with_capacity(rows.len());
        for &(buy, ref p, ref q, ts) in rows {
            let refused = || {
                at(Refusal::new(Reason::Malformed, "price or size is not a plain decimal number", sym, None), seq, ts)
            };
            let price = fixed(p.as_bytes(), prec.price).ok_or_else(refused)?;
            let size = fixed(q.as_bytes(), prec.size).ok_or_else(refused)?;
            // the resting side that was hit, as ITCH's executions; flags name the aggressor
            let (side, flags) = if buy { (ASK, FLAG_AGGRESSOR_BID) } else { (BID, FLAG_AGGRESSOR_ASK) };
            trades.push(Ev {
                kind: kind::TRADE,
                ts,
                seq,
                side,
                price,
                size,
                flags,
                recv_ts,
                symbol: sym,
                ..Ev::default()
            });
        }
        for e in &trades {
            events.push(e, msg);
        }
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

/// `KrakenFeed._printed`: the precision the printed decimals say, refused past MAX_DECIMALS.
fn printed(sym: u32, price: usize, size: usize, source: Source, seq: i64, ts: i64) -> R<Precision> {
    let cap = MAX_DECIMALS as usize;
    if price > cap || size > cap {
        let text = format!("prints {price} / {size} decimals: at most {MAX_DECIMALS} are read");
        return Err(at(Refusal::new(Reason::Malformed, text, sym, None), seq, ts));
    }
    Ok(Precision { price: price as u32, size: size as u32, source })
}

/// `BookSync.lose_sync`: awaiting a snapshot; the book stays as it was until one replaces it.
fn lose_sync(s: &mut Sym) {
    if s.live {
        s.resyncs += 1;
    }
    s.live = false;
}

crate::message_feed!(Kraken);

impl BookRows for Kraken {
    fn symbol_name(&self, symbol: u32) -> &str {
        self.names.name(symbol)
    }

    fn top_row(&self, symbol: u32, levels: usize, rows: &mut Vec<i64>) {
        let empty = L2::default();
        let book = self.book_of(symbol).unwrap_or(&empty);
        lobster_row(book.asks.iter(), book.bids.iter(), levels, rows);
    }
}

// ------------------------------------------------------------------------------------ state

const STATE_KIND: &str = "KrakenFeed";

impl Kraken {
    /// Everything the feed keeps but its scratch.
    fn export<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = State::new(py, STATE_KIND)?;
        s.set("check_crossed", self.check_crossed)?;
        s.set("symbols", sorted(&self.symbols))?;
        s.set("names", self.names.from(0))?;
        s.set("depth", self.default_depth as u64)?;
        let precision: BTreeMap<&str, (u32, u32, &str)> =
            self.precision.iter().map(|(k, p)| (k.as_str(), (p.price, p.size, p.source.name()))).collect();
        s.set("precision", precision)?;
        let depths: BTreeMap<&str, u64> = self.v2_depth.iter().map(|(k, &d)| (k.as_str(), d as u64)).collect();
        s.set("v2_depth", depths)?;
        let books = PyList::empty(py);
        for &name in &self.order {
            let sym = self.syms[name as usize].as_ref().expect("a symbol in `order` has a book");
            let b = State::part(py, STATE_KIND);
            b.set("symbol", name)?;
            state::put_l2(&b, &sym.book)?;
            b.set("live", sym.live)?;
            b.set("last_seq", sym.last_seq)?;
            b.set("resyncs", sym.resyncs)?;
            b.set("snapshots", sym.snapshots)?;
            b.set("counters", [sym.messages, sym.skipped, sym.checked, sym.matched])?;
            books.append(b.dict)?;
        }
        s.set("books", books)?;
        Ok(s.dict)
    }

    fn import(state: &Bound<'_, PyAny>) -> PyResult<Kraken> {
        let s = State::open(state, STATE_KIND)?;
        let symbols: Option<Vec<String>> = s.get("symbols")?;
        let depth: u64 = s.get("depth")?;
        let mut feed = Kraken::new(symbol_set(symbols), s.get("check_crossed")?, FxHashMap::default(), to_depth(depth));
        let precision: FxHashMap<String, (u32, u32, String)> = s.get("precision")?;
        for (name, (price, size, source)) in precision {
            let source = Source::of(&source).ok_or_else(|| s.invalid(format!("a precision from {source:?}")))?;
            if price > MAX_DECIMALS || size > MAX_DECIMALS {
                return Err(s.invalid(format!("{name:?}'s precision of {price} / {size} decimals")));
            }
            feed.precision.insert(name, Precision { price, size, source });
        }
        let depths: FxHashMap<String, u64> = s.get("v2_depth")?;
        if depths.values().any(|&d| d == 0) {
            return Err(s.invalid("a book depth of 0"));
        }
        feed.v2_depth = depths.into_iter().map(|(k, d)| (k, to_depth(d))).collect();
        feed.names = Names::from_list(s.get("names")?).map_err(|e| s.invalid(e))?;
        feed.syms.resize_with(feed.names.len(), || None);
        for b in s.parts("books")? {
            let name: u32 = b.get("symbol")?;
            let slot =
                feed.syms.get_mut(name as usize).ok_or_else(|| s.invalid(format!("a book of symbol id {name}")))?;
            if slot.is_some() {
                return Err(s.invalid(format!("two books for symbol id {name}")));
            }
            let [messages, skipped, checked, matched]: [i64; 4] = b.get("counters")?;
            *slot = Some(Sym {
                book: state::take_l2(&b)?,
                live: b.get("live")?,
                last_seq: b.get("last_seq")?,
                resyncs: b.get("resyncs")?,
                snapshots: b.get("snapshots")?,
                messages,
                skipped,
                checked,
                matched,
            });
            feed.order.push(name);
        }
        Ok(feed)
    }
}

fn to_depth(d: u64) -> usize {
    usize::try_from(d).unwrap_or(usize::MAX)
}

// ------------------------------------------------------------------------------------ Python

/// Kraken decode + apply over batches; the semantics of `orderbook.venues.kraken.KrakenFeed`.
#[pyclass(name = "KrakenFeed", module = "orderbook.native._core")]
pub struct PyKraken {
    feed: Kraken,
}

#[pymethods]
impl PyKraken {
    #[new]
    #[pyo3(signature = (symbols = None, check_crossed = true, precisions = None, depth = V2_DEFAULT_DEPTH))]
    fn new(
        symbols: Option<Vec<String>>,
        check_crossed: bool,
        precisions: Option<FxHashMap<String, (u32, u32)>>,
        depth: usize,
    ) -> PyResult<Self> {
        let precisions = precisions.unwrap_or_default();
        if precisions.values().any(|&(p, q)| p > MAX_DECIMALS || q > MAX_DECIMALS) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "precisions: at most {MAX_DECIMALS} decimals are read"
            )));
        }
        Ok(PyKraken { feed: Kraken::new(symbol_set(symbols), check_crossed, precisions, depth) })
    }

    fn book_dict<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.feed.sym(symbol).map(|s| crate::pybook::l2_dict(py, &s.book)).transpose()
    }

    /// A pair's BookSync as (live, last_seq, resyncs, snapshots), or None.
    fn sync(&self, symbol: &str) -> Option<(bool, Option<i64>, i64, i64)> {
        self.feed.sym(symbol).map(|s| (s.live, s.last_seq, s.resyncs, s.snapshots))
    }

    /// A pair's counters as (messages, skipped, checksums checked, checksums matched), or None.
    fn counters(&self, symbol: &str) -> Option<(i64, i64, i64, i64)> {
        self.feed.sym(symbol).map(|s| (s.messages, s.skipped, s.checked, s.matched))
    }

    /// pair -> (price decimals, size decimals, source).
    fn precision(&self) -> FxHashMap<String, (u32, u32, &'static str)> {
        self.feed.precision.iter().map(|(k, p)| (k.clone(), (p.price, p.size, p.source.name()))).collect()
    }

    /// pair -> the v2 book depth a subscribe response named.
    fn v2_depth(&self) -> FxHashMap<String, u64> {
        self.feed.v2_depth.iter().map(|(k, &d)| (k.clone(), d as u64)).collect()
    }
}

crate::feed_methods!(
    PyKraken,
    Kraken,
    order,
    r#"The whole feed as plain values (msgpack-able), for `__setstate__` to continue from:
        {"kind": "KrakenFeed", "version": 1, "check_crossed": bool, "symbols": sorted filter or None,
        "names": the symbol table by id, "depth": the v2 depth where no subscribe response names one,
        "precision": {pair: (price decimals, size decimals, source)}, "v2_depth": {pair: depth}, "books":
        one dict per book in the order they were made: {"symbol": id, "bids" / "asks": (price, size) int64
        pairs best first as bytes, "live": bool, "last_seq": int or None, "resyncs": int, "snapshots": int,
        "counters": [messages, skipped, checksums checked, checksums matched]}}."#
);
crate::message_methods!(PyKraken, 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prints_an_exponent_as_format_f_does() {
        for (text, want) in [
            ("0e5", Some("0")),
            ("-0e1", Some("-0")),
            ("1.50e-3", Some("0.00150")),
            ("1E+2", Some("100")),
            ("+1e2", Some("100")),
            ("00.0100e2", Some("1.00")),
            ("0.0e-3", Some("0.0000")),
            ("123.45e-1", Some("12.345")),
            (".5e1", Some("5")),
            ("5.e1", Some("50")),
            ("1e30", Some("1000000000000000000000000000000")),
            ("1e31", None),
            ("1e-31", None),
            ("1_0e1", None),
            (" 1e2", None),
            ("1e", None),
            ("e5", None),
            (".e5", None),
            ("1e99999999999999999999999", None),
        ] {
            assert_eq!(plain(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn days_from_civil_counts_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
    }

    #[test]
    fn pop_worst_takes_the_level_furthest_from_the_touch() {
        let mut book = L2::default();
        for (side, price) in [(ASK, 10), (ASK, 12), (ASK, 11), (BID, 5), (BID, 3), (BID, 4)] {
            book.set_level(side, price, 1).unwrap();
        }
        assert_eq!(book.asks.pop_worst(), Some((12, 1)));
        assert_eq!(book.bids.pop_worst(), Some((3, 1)));
        assert_eq!(book.asks.iter().collect::<Vec<_>>(), [(10, 1), (11, 1)]);
        book.asks.check().unwrap();
    }
}
