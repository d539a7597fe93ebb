//! `orderbook/windows.py`'s `WindowBuilder`: the token and feature-row rings of one symbol, its
//! headlines, and the emission rule of `WindowConfig`. Windows are written straight into
//! stacked columns (`Stack`), so a batch of messages makes one allocation per column, not per
//! window; `pywindows.rs` turns them into numpy arrays and `orderbook.windows.Window`s.

use crate::book::kind;
use crate::features::{int_div, mid2_of, BookView, Event, FeatureParams, FeatureState, Lvl};
use crate::volume_record::{traded_lots, VolumeRecord};

/// `orderbook.windows.WindowConfig`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    pub n_events: usize,
    pub n_rows: usize,
    pub max_news: usize,
    pub price_clip: i64,
    pub every_events: Option<i64>,
    pub every_ns: Option<i64>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { n_events: 128, n_rows: 32, max_news: 4, price_clip: 64, every_events: Some(32), every_ns: None }
    }
}

impl WindowConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.n_events == 0 || self.n_rows == 0 || self.max_news == 0 || self.price_clip <= 0 {
            return Err("n_events, n_rows, max_news and price_clip must be positive".into());
        }
        if self.every_events.is_some_and(|n| n <= 0) {
            return Err("every_events must be positive or None".into());
        }
        if self.every_ns.is_some_and(|n| n <= 0) {
            return Err("every_ns must be positive or None".into());
        }
        Ok(())
    }
}

/// Windows as stacked columns, leading axis = window (the layout of `orderbook.windows.stack`).
#[derive(Default)]
pub struct Stack {
    pub n: usize,
    pub kind: Vec<i8>,
    pub side: Vec<i8>,
    pub price: Vec<i32>,
    pub size: Vec<i64>,
    pub dt: Vec<i64>,
    pub event_ts: Vec<i64>,
    pub mask: Vec<bool>,
    pub features: Vec<f32>,
    pub row_mask: Vec<bool>,
    /// (VOLUME_HORIZONS, 3) row-major per window (`volume_record.rs`)
    pub volume_record: Vec<f64>,
    pub news_ts: Vec<i64>,
    pub news_text: Vec<String>,
    pub news_mask: Vec<bool>,
    pub ts: Vec<i64>,
    pub seq: Vec<i64>,
    pub start_ts: Vec<i64>,
    pub n_seen: Vec<i64>,
    pub best_bid: Vec<i64>,
    pub best_ask: Vec<i64>,
    /// the index (in its batch) of the message that completed each window
    pub msg: Vec<i64>,
}

/// Append `k` copies of `x` (`iter::repeat_n` is past the crate's MSRV).
fn pad<T: Clone>(out: &mut Vec<T>, k: usize, x: T) {
    out.resize(out.len() + k, x);
}

/// Append the ring `buf` (next write at `head`, `count` writes so far) oldest-first, left-padded
/// with zeros (`windows._ordered`).
fn ordered<T: Copy + Default>(out: &mut Vec<T>, buf: &[T], head: usize, count: usize, width: usize) {
    let n = buf.len() / width;
    if count < n {
        pad(out, (n - count) * width, T::default());
        out.extend_from_slice(&buf[..count * width]);
    } else {
        out.extend_from_slice(&buf[head * width..]);
        out.extend_from_slice(&buf[..head * width]);
    }
}

fn mask(out: &mut Vec<bool>, n: usize, count: usize) {
    let real = count.min(n);
    pad(out, n - real, false);
    pad(out, real, true);
}

/// The best levels per side whose sizes a book state's depth sums (`model/training/dataset.py`'s DEPTH_LEVELS).
pub const STATE_DEPTH_LEVELS: usize = 5;

/// The book after every message pushed, as the training data reads its targets from it
/// (`model/training/dataset.py`'s `_record_state`, on a Python book): one entry per message.
#[derive(Clone, Debug, Default)]
pub struct BookStates {
    /// ask - bid in ticks (`Book.spread() / tick`, rounded once as Python divides ints); NaN one-sided
    pub spread: Vec<f64>,
    /// twice the mid (`float(Book.mid2())`); NaN one-sided
    pub mid2: Vec<f64>,
    /// the sizes of the best STATE_DEPTH_LEVELS levels of both sides (`depth_levels`), as a float
    pub depth: Vec<f64>,
    /// the lots the message traded (`traded_lots`), saturated at the i64 bounds
    pub traded: Vec<i64>,
    /// whether the message completed a window
    pub emitted: Vec<bool>,
    bids: Vec<Lvl>,
    asks: Vec<Lvl>,
}

impl BookStates {
    fn record(&mut self, book: &impl BookView, tick: i64, traded: i128, emitted: bool) {
        match (book.best_bid(), book.best_ask()) {
            (Some((b, _)), Some((a, _))) => {
                self.spread.push(int_div(a as i128 - b as i128, tick as i128));
                self.mid2.push((b as i128 + a as i128) as f64);
            }
            _ => {
                self.spread.push(f64::NAN);
                self.mid2.push(f64::NAN);
            }
        }
        book.top_into(STATE_DEPTH_LEVELS, &mut self.bids, &mut self.asks);
        let depth: i128 = self.bids.iter().chain(&self.asks).map(|&(_, s)| s as i128).sum();
        self.depth.push(depth as f64);
        self.traded.push(traded.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
        self.emitted.push(emitted);
    }
}

/// One symbol's rings (`orderbook.windows.WindowBuilder`); field names follow the reference's.
#[derive(Clone, Debug)]
pub struct WindowBuilder {
    pub config: WindowConfig,
    pub features: FeatureState,
    pub kind: Vec<i8>,
    pub side: Vec<i8>,
    pub price: Vec<i32>,
    pub size: Vec<i64>,
    pub dt: Vec<i64>,
    pub ts: Vec<i64>,
    pub head: usize,
    pub count: u64,
    /// (n_rows, F) row-major
    pub rows: Vec<f32>,
    pub row_ts: Vec<i64>,
    pub row_head: usize,
    pub row_count: u64,
    /// sorted by (ts, headline), the newest 16 x max_news kept (add_news); news is rare, a vector is fine
    pub news: Vec<(i64, String)>,
    pub mid2: Option<i128>,
    pub ref2: Option<i128>,
    pub in_snapshot: bool,
    pub last_ts: Option<i64>,
    pub last_token_ts: Option<i64>,
    pub last_seq: i64,
    pub since_emit: i64,
    pub emit_ts: Option<i64>,
    pub best: (i64, i64),
    /// the book's realized volumes (`_volume`)
    pub volume: VolumeRecord,
    /// the book after each message pushed, where asked for (offline replays; no part of a snapshot)
    pub states: Option<BookStates>,
}

impl WindowBuilder {
    pub fn new(config: WindowConfig, params: FeatureParams) -> Self {
        let features = FeatureState::new(params);
        let (n, t, f) = (config.n_events, config.n_rows, features.n_features());
        WindowBuilder {
            kind: vec![0; n],
            side: vec![0; n],
            price: vec![0; n],
            size: vec![0; n],
            dt: vec![0; n],
            ts: vec![0; n],
            head: 0,
            count: 0,
            rows: vec![0.0; t * f],
            row_ts: vec![0; t],
            row_head: 0,
            row_count: 0,
            news: Vec::new(),
            mid2: None,
            ref2: None,
            in_snapshot: false,
            last_ts: None,
            last_token_ts: None,
            last_seq: 0,
            since_emit: 0,
            emit_ts: None,
            best: (0, 0),
            volume: VolumeRecord::default(),
            states: None,
            config,
            features,
        }
    }

    pub fn n_features(&self) -> usize {
        self.features.n_features()
    }

    /// Join a headline; idempotent (`WindowBuilder.add_news`).
    pub fn add_news(&mut self, ts: i64, headline: String) {
        let item = (ts, headline);
        let i = self.news.partition_point(|x| *x < item);
        if self.news.get(i) == Some(&item) {
            return;
        }
        self.news.insert(i, item);
        let cap = 16 * self.config.max_news;
        if self.news.len() > cap {
            self.news.drain(..self.news.len() - cap);
        }
    }

    fn token_price(&self, price: i64) -> i32 {
        let Some(ref2) = self.ref2 else { return 0 };
        if price == 0 {
            return 0;
        }
        let tick = self.features.p.tick as i128;
        let d = 2 * price as i128 - ref2;
        let q = (d.abs() + tick) / (2 * tick); // |price - mid| / tick, rounded half up
        let q = q.min(self.config.price_clip as i128) as i32;
        if d > 0 {
            q
        } else {
            -q
        }
    }

    fn add_token(&mut self, e: &Event) {
        let i = self.head;
        self.kind[i] = e.kind;
        self.side[i] = e.side;
        self.price[i] = self.token_price(e.price);
        self.size[i] = e.size;
        self.dt[i] = match self.last_token_ts {
            Some(last) if e.ts > last => e.ts.saturating_sub(last), // windows.py `_add_token`: at most int64's
            _ => 0,
        };
        self.ts[i] = e.ts;
        self.last_token_ts = Some(e.ts);
        self.head = if i + 1 < self.kind.len() { i + 1 } else { 0 };
        self.count += 1;
    }

    /// Twice the price tokens are measured from: the mid before this message, else the book's.
    fn reference(&self, book: &impl BookView) -> Option<i128> {
        if self.mid2.is_some() {
            return self.mid2;
        }
        if let Some(m2) = mid2_of(book) {
            return Some(m2);
        }
        book.best_bid().or(book.best_ask()).map(|(p, _)| 2 * p as i128)
    }

    /// Add one message (its events already applied to `book`); true when a window is due (then
    /// `emit` writes it).
    pub fn push(&mut self, book: &impl BookView, events: &[Event]) -> bool {
        let Some(last) = events.last().copied() else { return false };
        self.ref2 = self.reference(book);
        let mut tokens = 0i64;
        for e in events {
            let k = e.kind;
            if self.in_snapshot && k != kind::SNAPSHOT_END {
                continue;
            }
            if k == kind::SNAPSHOT_BEGIN || k == kind::CLEAR {
                self.in_snapshot = k == kind::SNAPSHOT_BEGIN;
            } else if k == kind::SNAPSHOT_END {
                self.in_snapshot = false;
            }
            self.add_token(e);
            tokens += 1;
        }
        let f = self.n_features();
        let i = self.row_head;
        self.features.update(book, events, &mut self.rows[i * f..(i + 1) * f]);
        self.row_ts[i] = last.ts;
        self.row_head = if i + 1 < self.row_ts.len() { i + 1 } else { 0 };
        self.row_count += 1;
        let traded = traded_lots(events);
        self.volume.message(traded); // all of the message's events, a snapshot's too
        self.mid2 = mid2_of(book);
        self.best = (book.best_bid().map_or(0, |l| l.0), book.best_ask().map_or(0, |l| l.0));
        self.last_ts = Some(last.ts);
        self.last_seq = last.seq;
        let due = self.maybe_emit(tokens, last.ts);
        if let Some(states) = &mut self.states {
            states.record(book, self.features.p.tick, traded, due);
        }
        due
    }

    fn maybe_emit(&mut self, tokens: i64, ts: i64) -> bool {
        self.since_emit += tokens;
        let emit_ts = *self.emit_ts.get_or_insert(ts);
        let cfg = &self.config;
        // in i128, as Python subtracts: times are any int64 (a message of 1970 after one of 2262)
        let due = cfg.every_events.is_some_and(|n| self.since_emit >= n)
            || cfg.every_ns.is_some_and(|n| i128::from(ts) - i128::from(emit_ts) >= i128::from(n));
        if due {
            self.since_emit = 0;
            self.emit_ts = Some(ts);
            // here, not in `emit`, which `window()` reads through too; before the window is written, which
            // reads only the volumes already known, not the pending ones a cut adds to
            self.volume.window_cut();
        }
        due
    }

    fn start_ts(&self) -> i64 {
        let mut start: Option<i64> = None;
        if self.count > 0 {
            let i = if self.count >= self.ts.len() as u64 { self.head } else { 0 };
            start = Some(self.ts[i]);
        }
        if self.row_count > 0 {
            let i = if self.row_count >= self.row_ts.len() as u64 { self.row_head } else { 0 };
            let t = self.row_ts[i];
            start = Some(start.map_or(t, |s| s.min(t)));
        }
        start.unwrap_or(0)
    }

    /// The window as it stands now (what `push` signals), appended to `out`. Changes nothing: a window
    /// read between the emitted ones leaves them as they are.
    pub fn emit(&self, out: &mut Stack, msg: i64) {
        let (n, t, f) = (self.config.n_events, self.config.n_rows, self.n_features());
        let (head, count) = (self.head, self.count as usize);
        ordered(&mut out.kind, &self.kind, head, count, 1);
        ordered(&mut out.side, &self.side, head, count, 1);
        ordered(&mut out.price, &self.price, head, count, 1);
        ordered(&mut out.size, &self.size, head, count, 1);
        ordered(&mut out.dt, &self.dt, head, count, 1);
        ordered(&mut out.event_ts, &self.ts, head, count, 1);
        mask(&mut out.mask, n, count);
        ordered(&mut out.features, &self.rows, self.row_head, self.row_count as usize, f);
        mask(&mut out.row_mask, t, self.row_count as usize);
        self.volume.quantiles(&mut out.volume_record);

        let start = self.start_ts();
        let end = self.last_ts.unwrap_or(0);
        // bisect_left((start, "")) and bisect_right((end, chr(0x10FFFF))); nothing is dropped here (event
        // time runs back, and a later window's start with it: WindowBuilder._news_arrays)
        let lo = self.news.partition_point(|(ts, _)| *ts < start);
        let hi = self.news.partition_point(|(ts, h)| (*ts, h.as_str()) <= (end, "\u{10FFFF}"));
        let m = self.config.max_news;
        let inside = &self.news[lo.max(hi.saturating_sub(m))..hi.max(lo)];
        let blank = m - inside.len();
        pad(&mut out.news_ts, blank, 0);
        pad(&mut out.news_text, blank, String::new());
        pad(&mut out.news_mask, blank, false);
        for (ts, h) in inside {
            out.news_ts.push(*ts);
            out.news_text.push(h.clone());
            out.news_mask.push(true);
        }

        out.ts.push(end);
        out.seq.push(self.last_seq);
        out.start_ts.push(start);
        out.n_seen.push(self.count as i64);
        out.best_bid.push(self.best.0);
        out.best_ask.push(self.best.1);
        out.msg.push(msg);
        out.n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{ASK, BID, L2};

    fn event(kind: i8, side: i8, price: i64, size: i64, ts: i64) -> Event {
        Event { kind, side, flags: 0, ts, seq: ts, price, size }
    }

    #[test]
    fn kept_states_are_the_book_after_each_message_in_ticks_and_lots() {
        let params = FeatureParams::new(5, 10, vec![1, 5, 10], 1_000_000_000, 1_000_000_000).unwrap();
        let config = WindowConfig { every_events: Some(3), ..WindowConfig::default() };
        let mut b = WindowBuilder::new(config, params);
        let mut book = L2::default();
        let push = |b: &mut WindowBuilder, book: &mut L2, events: &[Event]| {
            for e in events {
                book.set_level(e.side, e.price, e.size).unwrap();
            }
            b.push(&*book, events)
        };
        push(&mut b, &mut book, &[event(kind::LEVEL_SET, BID, 100, 4, 1)]); // not kept yet
        b.states = Some(BookStates::default());
        push(&mut b, &mut book, &[event(kind::LEVEL_SET, BID, 95, 2, 2)]); // one-sided
        let asks: Vec<Event> = (0..7).map(|i| event(kind::LEVEL_SET, ASK, 110 + 5 * i, 1, 3)).collect();
        assert!(push(&mut b, &mut book, &asks)); // the third token and past: a window
        let s = b.states.as_ref().unwrap();
        assert_eq!(s.emitted.len(), 2);
        assert!(s.spread[0].is_nan() && s.mid2[0].is_nan());
        assert_eq!((s.spread[1], s.mid2[1]), (2.0, 210.0)); // 110 - 100 in ticks of 5; twice the mid
        assert_eq!(s.depth, vec![6.0, 6.0 + 5.0]); // the best five asks of seven
        assert_eq!(s.traded, vec![0, 0]);
        assert_eq!(s.emitted, vec![false, true]);
    }
}
