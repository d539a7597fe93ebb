//! `orderbook/features.py`'s `FeatureState`: one float32 row per venue message, the same
//! columns, the same caching of the book-only columns, and the same numbers bit for bit.
//!
//! Bit-for-bit equality with the reference dictates a few things that a fresh design would not:
//! - Python divides ints exactly and rounds once (`(pb*qa + pa*qb) / (qa+qb)` on Binance prices
//!   in 1e-8 units has a numerator far past 2^53), so every int / int goes through `int_div`
//!   (correctly rounded, ties to even, as CPython's long true division) on i128.
//! - The transcendental functions are the C library's (`f64::exp`, `ln`, `ln_1p` call the same
//!   libm that CPython's `math` calls); no fused multiply-add, and sums run in the reference's order.
//! - Sums of ints (the signed volume) stay ints (i128): Python's are exact.
//!   The one float re-sum (`_SumWindow` with resum) follows the running Python's builtin `sum`:
//!   plain left-to-right before 3.12, Neumaier-compensated from 3.12 on.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::book::{kind, Level, Levels, ASK, BID, L2, L3};

/// A price level as (price, size).
pub type Lvl = (i64, i64);

/// One normalized event: the fields of `orderbook.events.Event` that features and windows read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: i8,
    pub side: i8,
    pub flags: i64,
    pub ts: i64,
    pub seq: i64,
    pub price: i64,
    pub size: i64,
}

const FLAG_AGGRESSOR_BID: i64 = 8;
const FLAG_AGGRESSOR_ASK: i64 = 16;

/// What FeatureState and WindowBuilder read of a book: the best levels and the top n per side.
pub trait BookView {
    fn best_bid(&self) -> Option<Lvl>;
    fn best_ask(&self) -> Option<Lvl>;
    /// The best `n` levels of each side, best first, into `bids` / `asks` (cleared first).
    fn top_into(&self, n: usize, bids: &mut Vec<Lvl>, asks: &mut Vec<Lvl>);
}

fn levels_top<V: Copy>(levels: &Levels<V>, n: usize, out: &mut Vec<Lvl>, size: impl Fn(V) -> i64) {
    out.clear();
    out.extend(levels.iter().take(n).map(|(p, v)| (p, size(v))));
}

impl BookView for L2 {
    fn best_bid(&self) -> Option<Lvl> {
        self.bids.best()
    }
    fn best_ask(&self) -> Option<Lvl> {
        self.asks.best()
    }
    fn top_into(&self, n: usize, bids: &mut Vec<Lvl>, asks: &mut Vec<Lvl>) {
        levels_top(&self.bids, n, bids, |v| v);
        levels_top(&self.asks, n, asks, |v| v);
    }
}

impl BookView for L3 {
    fn best_bid(&self) -> Option<Lvl> {
        self.bids.best().map(|(p, l)| (p, l.total))
    }
    fn best_ask(&self) -> Option<Lvl> {
        self.asks.best().map(|(p, l)| (p, l.total))
    }
    fn top_into(&self, n: usize, bids: &mut Vec<Lvl>, asks: &mut Vec<Lvl>) {
        levels_top(&self.bids, n, bids, |l: Level| l.total);
        levels_top(&self.asks, n, asks, |l: Level| l.total);
    }
}

/// A book read once from elsewhere (a Python book): its best levels, and its top levels where the
/// caller loaded them (`FeatureState::touches` says when they are read).
#[derive(Default)]
pub struct TopView {
    pub best_bid: Option<Lvl>,
    pub best_ask: Option<Lvl>,
    pub bids: Vec<Lvl>,
    pub asks: Vec<Lvl>,
}

impl BookView for TopView {
    fn best_bid(&self) -> Option<Lvl> {
        self.best_bid
    }
    fn best_ask(&self) -> Option<Lvl> {
        self.best_ask
    }
    fn top_into(&self, n: usize, bids: &mut Vec<Lvl>, asks: &mut Vec<Lvl>) {
        bids.clear();
        bids.extend(self.bids.iter().take(n));
        asks.clear();
        asks.extend(self.asks.iter().take(n));
    }
}

/// Twice the mid, as `Book.mid2`: i128 so that no price can overflow it.
pub fn mid2_of(book: &impl BookView) -> Option<i128> {
    match (book.best_bid(), book.best_ask()) {
        (Some((b, _)), Some((a, _))) => Some(b as i128 + a as i128),
        _ => None,
    }
}

// --------------------------------------------------------------------------- exact arithmetic

const TWO53: u128 = 1 << 53;

/// `a / b` for ints as CPython computes it: the exact quotient rounded once to the nearest
/// double, ties to even. The plain float division is that whenever both operands are exact
/// doubles; otherwise the quotient is taken to 55-56 bits with a sticky bit for the remainder,
/// and the u128 -> f64 conversion (itself round-to-nearest-even) rounds it once.
pub fn int_div(a: i128, b: i128) -> f64 {
    let (n, d) = (a.unsigned_abs(), b.unsigned_abs());
    if n <= TWO53 && d <= TWO53 {
        return a as f64 / b as f64;
    }
    if d == 0 {
        return f64::NAN; // Python raises; no caller divides by zero (sizes and ticks are positive)
    }
    let nb = 128 - n.leading_zeros() as i32;
    let db = 128 - d.leading_zeros() as i32;
    let shift = 55 - (nb - db); // n * 2^shift / d lies in [2^54, 2^56)
    let (mut q, r) = if shift >= 0 {
        // long division, one bit at a time: no intermediate exceeds 2 d < 2^128
        let (mut q, mut r) = (n / d, n % d);
        for _ in 0..shift {
            r <<= 1;
            q <<= 1;
            if r >= d {
                r -= d;
                q |= 1;
            }
        }
        (q, r)
    } else {
        let dd = d << (-shift) as u32; // nb - 55 bits: fits
        (n / dd, n % dd)
    };
    if r != 0 {
        q |= 1; // sticky: q has >= 2 bits below the 53 kept, so this only breaks exact ties
    }
    let scale = f64::from_bits(((1023 - shift) as u64) << 52); // 2^-shift, exact
    let x = q as f64 * scale;
    if (a < 0) != (b < 0) {
        -x
    } else {
        x
    }
}

/// Python's `sum()` of floats from int 0, as the running interpreter does it.
fn py_sum(values: impl Iterator<Item = f64>, neumaier: bool) -> f64 {
    let mut it = values;
    let Some(first) = it.next() else { return 0.0 };
    let mut s = 0.0 + first;
    if !neumaier {
        for x in it {
            s += x;
        }
        return s;
    }
    // CPython 3.12+ (bltinmodule.c, builtin_sum_impl): Neumaier's improved Kahan-Babuska sum
    let mut c = 0.0f64;
    for x in it {
        let t = s + x;
        if s.abs() >= x.abs() {
            c += (s - t) + x;
        } else {
            c += (x - t) + s;
        }
        s = t;
    }
    if c != 0.0 && c.is_finite() {
        s += c;
    }
    s
}

// --------------------------------------------------------------------------- order-flow imbalance

/// `MultiLevelOFI` less its `cumulative` (FeatureState never reads it): the previous top-L.
#[derive(Clone, Debug, Default)]
pub struct Ofi {
    pub levels: usize,
    pub prev_bids: Option<Vec<Lvl>>,
    pub prev_asks: Vec<Lvl>,
}

// A missing level: worse than any price, empty (the reference's -inf / +inf with size 0).
const NO_BID: i128 = i128::MIN;
const NO_ASK: i128 = i128::MAX;

fn padded(levels: &[Lvl], m: usize, missing: i128) -> (i128, i64) {
    levels.get(m).map_or((missing, 0), |&(p, q)| (p as i128, q))
}

impl Ofi {
    /// e_n per level for the new snapshot, into `e` (`MultiLevelOFI.update`).
    fn update(&mut self, bids: &[Lvl], asks: &[Lvl], e: &mut Vec<i64>) {
        let n = self.levels;
        let new_bids = &bids[..bids.len().min(n)];
        let new_asks = &asks[..asks.len().min(n)];
        e.clear();
        e.resize(n, 0);
        let old_bids = self.prev_bids.replace(new_bids.to_vec());
        let old_asks = std::mem::replace(&mut self.prev_asks, new_asks.to_vec());
        let Some(old_bids) = old_bids else { return };
        let same_b = new_bids == old_bids.as_slice();
        let same_a = new_asks == old_asks.as_slice();
        for (m, x) in e.iter_mut().enumerate() {
            let fb = if same_b {
                0
            } else {
                let ((p, q), (pp, pq)) = (padded(new_bids, m, NO_BID), padded(&old_bids, m, NO_BID));
                (if p >= pp { q } else { 0 }) - (if p <= pp { pq } else { 0 })
            };
            let fa = if same_a {
                0
            } else {
                let ((p, q), (pp, pq)) = (padded(new_asks, m, NO_ASK), padded(&old_asks, m, NO_ASK));
                (if p <= pp { q } else { 0 }) - (if p >= pp { pq } else { 0 })
            };
            *x = fb - fa;
        }
    }
}

// --------------------------------------------------------------------------- trades and level flow

/// `LevelFlow`: each L2 level's last size and the traded volume no decrease has matched yet.
#[derive(Clone, Debug, Default)]
pub struct LevelFlow {
    pub bid_sizes: FxHashMap<i64, i64>,
    pub ask_sizes: FxHashMap<i64, i64>,
    pub credit: FxHashMap<(i8, i64), i64>,
}

const MAX_CREDITS: usize = 64;

impl LevelFlow {
    fn clear(&mut self) {
        self.bid_sizes.clear();
        self.ask_sizes.clear();
        self.credit.clear();
    }

    /// Apply a LEVEL_SET; the change in the level's size (0 off the book's sides).
    fn level_set(&mut self, e: &Event) -> i128 {
        let sizes = match e.side {
            BID => &mut self.bid_sizes,
            ASK => &mut self.ask_sizes,
            _ => return 0,
        };
        let prev = if e.size != 0 { sizes.insert(e.price, e.size) } else { sizes.remove(&e.price) };
        e.size as i128 - prev.unwrap_or(0) as i128
    }

    fn is_cancel(&mut self, side: i8, price: i64, drop: i128) -> bool {
        let credit = self.credit.remove(&(side, price)).unwrap_or(0) as i128;
        if credit > drop {
            self.credit.insert((side, price), (credit - drop) as i64);
        }
        drop > credit
    }

    fn traded(&mut self, side: i8, price: i64, size: i64) {
        if self.credit.len() > MAX_CREDITS {
            self.credit.clear();
        }
        *self.credit.entry((side, price)).or_insert(0) += size;
    }
}

/// `TradeClassifier`: aggressor flags, else the resting side of an EXECUTE, else Lee & Ready.
#[derive(Clone, Debug, Default)]
pub struct TradeClassifier {
    pub last_price: Option<i64>,
    pub tick_sign: i64,
}

impl TradeClassifier {
    fn sign(&mut self, e: &Event, prevailing_mid2: Option<i128>) -> i64 {
        if e.price != 0 {
            if let Some(last) = self.last_price {
                if e.price != last {
                    self.tick_sign = if e.price > last { 1 } else { -1 };
                }
            }
            self.last_price = Some(e.price);
        }
        if e.flags & FLAG_AGGRESSOR_BID != 0 {
            return 1;
        }
        if e.flags & FLAG_AGGRESSOR_ASK != 0 {
            return -1;
        }
        if e.kind == kind::EXECUTE && e.side != 0 {
            return -(e.side as i64);
        }
        if e.price != 0 {
            if let Some(m2) = prevailing_mid2 {
                let twice = 2 * e.price as i128;
                if twice > m2 {
                    return 1;
                }
                if twice < m2 {
                    return -1;
                }
            }
            return self.tick_sign;
        }
        0
    }
}

// --------------------------------------------------------------------------- sliding windows

/// `_SumWindow` of ints (exact) and of floats (with the reference's re-sum).
#[derive(Clone, Debug, Default)]
pub struct IntSum {
    pub items: VecDeque<(i64, i128)>,
    pub total: i128,
}

impl IntSum {
    fn expire(&mut self, cutoff: i64) {
        while let Some(&(ts, v)) = self.items.front() {
            if ts > cutoff {
                break;
            }
            self.items.pop_front();
            self.total -= v;
        }
        if self.items.is_empty() {
            self.total = 0;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct FloatSum {
    pub items: VecDeque<(i64, f64)>,
    pub total: f64,
}

impl FloatSum {
    fn expire(&mut self, cutoff: i64, neumaier: bool) {
        let mut big = false;
        while let Some(&(ts, v)) = self.items.front() {
            if ts > cutoff {
                break;
            }
            self.items.pop_front();
            self.total -= v;
            big = big || v.abs() > self.total.abs();
        }
        if self.items.is_empty() {
            self.total = 0.0;
        } else if big {
            // a large value left: resum rather than keep its rounding error
            self.total = py_sum(self.items.iter().map(|&(_, v)| v), neumaier);
        }
    }
}

fn expire_ts(ts: &mut VecDeque<i64>, cutoff: i64) {
    while ts.front().is_some_and(|&t| t <= cutoff) {
        ts.pop_front();
    }
}

// --------------------------------------------------------------------------- the feature row

/// The parameters of a FeatureState (`FeatureState.__init__`'s).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureParams {
    pub tick: i64,
    pub ofi_levels: usize,
    pub depth_at: Vec<usize>,
    pub window_ns: i64,
    /// ln 2 / ofi_halflife_ns, as the reference holds it
    pub decay_rate: f64,
    /// the running Python's `sum()` compensates (3.12+)
    pub neumaier: bool,
    /// the slow depth memory: levels per side, half-lives in messages, and 1 - 0.5^(1/h) per half-life
    pub memory_levels: usize,
    pub memory_halflives: Vec<i64>,
    pub memory_rates: Vec<f64>,
}

/// `FeatureState`'s default `memory_levels` and `memory_halflives`.
pub const MEMORY_LEVELS: usize = 5;
pub const MEMORY_HALFLIVES: [i64; 3] = [128, 512, 2048];

impl FeatureParams {
    pub fn new(
        tick: i64,
        ofi_levels: usize,
        depth_at: Vec<usize>,
        window_ns: i64,
        ofi_halflife_ns: i64,
    ) -> Result<Self, String> {
        if tick <= 0 || window_ns <= 0 || ofi_halflife_ns <= 0 || ofi_levels == 0 {
            return Err("tick, ofi_levels, window_ns and ofi_halflife_ns must be positive".into());
        }
        // math.log(2) / ofi_halflife_ns: the same libm log as CPython's, at run time
        let decay_rate = std::hint::black_box(2.0f64).ln() / ofi_halflife_ns as f64;
        FeatureParams::with_rate(tick, ofi_levels, depth_at, window_ns, decay_rate)
    }

    pub fn with_rate(
        tick: i64,
        ofi_levels: usize,
        depth_at: Vec<usize>,
        window_ns: i64,
        decay_rate: f64,
    ) -> Result<Self, String> {
        if tick <= 0 || window_ns <= 0 || ofi_levels == 0 || decay_rate.is_nan() || decay_rate <= 0.0 {
            return Err("tick, ofi_levels, window_ns and ofi_halflife_ns must be positive".into());
        }
        if depth_at.contains(&0) {
            return Err("depth_at levels must be positive".into());
        }
        let mut p = FeatureParams {
            tick,
            ofi_levels,
            depth_at,
            window_ns,
            decay_rate,
            neumaier: false,
            memory_levels: 0,
            memory_halflives: Vec::new(),
            memory_rates: Vec::new(),
        };
        let halflives = MEMORY_HALFLIVES.to_vec();
        let rates = memory_rates(&halflives);
        p.set_memory(MEMORY_LEVELS, halflives, rates)?;
        Ok(p)
    }

    /// The slow depth memory's parameters; `rates` as the reference holds them (`_memory_rate`).
    pub fn set_memory(&mut self, levels: usize, halflives: Vec<i64>, rates: Vec<f64>) -> Result<(), String> {
        if levels == 0 || halflives.iter().any(|&h| h <= 0) {
            return Err("memory_levels and memory_halflives must be positive".into());
        }
        if rates.len() != halflives.len() || rates.iter().any(|r| !(*r > 0.0 && *r <= 1.0)) {
            return Err("one memory rate in (0, 1] per half-life".into());
        }
        self.memory_levels = levels;
        self.memory_halflives = halflives;
        self.memory_rates = rates;
        Ok(())
    }

    /// Columns of the row: valid, mid, spread, microprice offset, queue imbalance, depths, OFI, 7 more,
    /// the depth memory.
    pub fn n_features(&self) -> usize {
        5 + 2 * self.depth_at.len() + self.ofi_levels + 7 + self.memory_rates.len()
    }

    fn n_book(&self) -> usize {
        5 + 2 * self.depth_at.len()
    }

    fn n_top(&self) -> usize {
        self.depth_at.iter().copied().fold(self.ofi_levels.max(self.memory_levels), usize::max)
    }
}

/// 1 - 0.5 ** (1 / h) per half-life, as the reference computes them (the libm pow, at run time).
pub fn memory_rates(halflives: &[i64]) -> Vec<f64> {
    halflives.iter().map(|&h| 1.0 - std::hint::black_box(0.5f64).powf(1.0 / h as f64)).collect()
}

/// `feature_names(ofi_levels, depth_at, memory_levels, memory_halflives)`.
pub fn feature_names(
    ofi_levels: usize,
    depth_at: &[usize],
    memory_levels: usize,
    memory_halflives: &[i64],
) -> Vec<String> {
    let mut names: Vec<String> =
        ["valid", "mid", "spread_ticks", "microprice_offset_ticks", "queue_imbalance"].map(String::from).into();
    for n in depth_at {
        names.push(format!("log_depth_bid_{n}"));
        names.push(format!("log_depth_ask_{n}"));
    }
    names.extend((1..=ofi_levels).map(|m| format!("ofi_{m}")));
    names.extend(
        [
            "signed_volume_log",
            "last_trade_sign",
            "realized_variance",
            "log_message_rate",
            "log_cancel_rate",
            "log_trade_rate",
            "log_dt_ns",
        ]
        .map(String::from),
    );
    names.extend(memory_halflives.iter().map(|h| format!("log_depth_{memory_levels}_ewma_{h}")));
    names
}

/// One symbol's features (`orderbook.features.FeatureState`); field names follow the reference's.
#[derive(Clone, Debug)]
pub struct FeatureState {
    pub p: FeatureParams,
    per_second: f64,
    n_top: usize,
    pub ofi: Ofi,
    pub trades: TradeClassifier,
    pub ofi_sum: Vec<f64>,
    pub ofi_depth: Vec<f64>,
    pub messages: VecDeque<i64>,
    pub cancels: VecDeque<i64>,
    pub trade_ts: VecDeque<i64>,
    pub signed_volume: IntSum,
    pub sq_returns: FloatSum,
    pub levels: LevelFlow,
    pub in_snapshot: bool,
    pub mid2: Option<i128>,
    pub rv_mid: Option<f64>,
    pub last_sign: i64,
    pub last_ts: Option<i64>,
    pub now: i64,
    pub row_ts: Option<i64>,
    /// the book-only columns, kept while messages provably leave the top levels alone
    pub cached_book_part: Option<Vec<f64>>,
    /// the last of the top levels (i64::MIN / MAX: fewer levels, the reference's -inf / +inf)
    pub bid_floor: i64,
    pub ask_ceiling: i64,
    pub level_depth: Vec<f64>,
    pub e: Vec<i64>,
    pub ofi_out: Option<Vec<f64>>,
    /// the depth memory's EWMAs (None before the first message), and the depth they move towards
    pub memory: Option<Vec<f64>>,
    pub memory_depth: f64,
    // scratch
    top_bids: Vec<Lvl>,
    top_asks: Vec<Lvl>,
}

fn is_message(k: i8) -> bool {
    matches!(
        k,
        kind::ADD
            | kind::CANCEL
            | kind::DELETE
            | kind::EXECUTE
            | kind::REPLACE
            | kind::LEVEL_SET
            | kind::TRADE
            | kind::CHANGE
    )
}

fn queue_imbalance(qb: i64, qa: i64) -> f64 {
    let total = qb as i128 + qa as i128;
    if total > 0 {
        int_div(qb as i128 - qa as i128, total)
    } else {
        0.0
    }
}

impl FeatureState {
    pub fn new(p: FeatureParams) -> Self {
        let levels = p.ofi_levels;
        FeatureState {
            per_second: 1e9 / p.window_ns as f64,
            n_top: p.n_top(),
            ofi: Ofi { levels, prev_bids: None, prev_asks: Vec::new() },
            trades: TradeClassifier::default(),
            ofi_sum: vec![0.0; levels],
            ofi_depth: vec![0.0; levels],
            messages: VecDeque::new(),
            cancels: VecDeque::new(),
            trade_ts: VecDeque::new(),
            signed_volume: IntSum::default(),
            sq_returns: FloatSum::default(),
            levels: LevelFlow::default(),
            in_snapshot: false,
            mid2: None,
            rv_mid: None,
            last_sign: 0,
            last_ts: None,
            now: 0,
            row_ts: None,
            cached_book_part: None,
            bid_floor: i64::MIN,
            ask_ceiling: i64::MAX,
            level_depth: vec![0.0; levels],
            e: vec![0; levels],
            ofi_out: None,
            memory: None,
            memory_depth: 0.0,
            top_bids: Vec::new(),
            top_asks: Vec::new(),
            p,
        }
    }

    pub fn n_features(&self) -> usize {
        self.p.n_features()
    }

    pub fn n_top(&self) -> usize {
        self.n_top
    }

    /// Whether `update(book, events)` will read the book's top levels (`_touches_top`, or no
    /// cached columns yet): a caller that pays to read them (a Python book) reads them only then.
    pub fn touches(&self, events: &[Event]) -> bool {
        if self.cached_book_part.is_none() {
            return true;
        }
        let (floor, ceiling) = (self.bid_floor, self.ask_ceiling);
        for e in events {
            match e.kind {
                kind::TRADE | kind::STATUS | kind::SNAPSHOT_END => continue, // leave the book as it is
                kind::LEVEL_SET | kind::ADD | kind::CANCEL | kind::DELETE | kind::EXECUTE if e.price != 0 => {}
                _ => return true,
            }
            match e.side {
                BID if e.price >= floor => return true,
                ASK if e.price <= ceiling => return true,
                0 => return true,
                _ => {}
            }
        }
        false
    }

    fn reset_flow_baseline(&mut self) {
        self.levels.clear();
        self.ofi.prev_bids = None;
        self.rv_mid = None;
        self.mid2 = None;
    }

    fn on_level_set(&mut self, e: &Event) -> bool {
        let delta = self.levels.level_set(e);
        delta < 0 && self.levels.is_cancel(e.side, e.price, -delta)
    }

    fn on_trade(&mut self, e: &Event, ts: i64, prevailing: Option<i128>) {
        let s = self.trades.sign(e, prevailing);
        self.trade_ts.push_back(ts);
        if s != 0 {
            self.last_sign = s;
            let v = s as i128 * e.size as i128;
            self.signed_volume.items.push_back((ts, v));
            self.signed_volume.total += v;
            if e.price != 0 {
                self.levels.traded(if s > 0 { ASK } else { BID }, e.price, e.size);
                // the resting side hit
            }
        }
    }

    fn on_events(&mut self, events: &[Event]) {
        let prevailing = self.mid2;
        for e in events {
            let k = e.kind;
            if k == kind::SNAPSHOT_BEGIN || k == kind::CLEAR {
                self.reset_flow_baseline();
                self.in_snapshot = k == kind::SNAPSHOT_BEGIN;
                continue;
            }
            if k == kind::SNAPSHOT_END {
                self.in_snapshot = false;
                continue;
            }
            if self.in_snapshot {
                if k == kind::LEVEL_SET {
                    self.on_level_set(e);
                }
                continue;
            }
            let ts = e.ts;
            if ts > self.now {
                self.now = ts;
            }
            if !is_message(k) {
                continue;
            }
            self.messages.push_back(ts);
            if k == kind::EXECUTE || k == kind::TRADE {
                self.on_trade(e, ts, prevailing);
            } else if k == kind::CANCEL || k == kind::DELETE || (k == kind::LEVEL_SET && self.on_level_set(e)) {
                self.cancels.push_back(ts);
            }
        }
    }

    /// `_ofi_columns`: decayed OFI over decayed level depth, into `out`.
    fn ofi_columns(&mut self, touched: bool, dt: i64, out: &mut [f32]) {
        if !touched && dt <= 0 {
            if let Some(prev) = &self.ofi_out {
                for (o, &x) in out.iter_mut().zip(prev) {
                    *o = x as f32;
                }
                return;
            }
        }
        let w = if dt > 0 { (-self.p.decay_rate * dt as f64).exp() } else { 1.0 };
        let v = 1.0 - w;
        for (d, &x) in self.ofi_depth.iter_mut().zip(&self.level_depth) {
            *d = if *d == 0.0 { x } else { w * *d + v * x };
        }
        if touched {
            for (s, &x) in self.ofi_sum.iter_mut().zip(&self.e) {
                *s = w * *s + x as f64;
            }
        } else {
            for s in self.ofi_sum.iter_mut() {
                *s *= w;
            }
        }
        let res = self.ofi_out.get_or_insert_with(Vec::new);
        res.clear();
        res.extend(self.ofi_sum.iter().zip(&self.ofi_depth).map(|(&a, &b)| a / if b > 1.0 { b } else { 1.0 }));
        for (o, &x) in out.iter_mut().zip(res.iter()) {
            *o = x as f32;
        }
    }

    fn realized_variance(&mut self) {
        let (Some(&(pb, _)), Some(&(pa, _))) = (self.top_bids.first(), self.top_asks.first()) else { return };
        let m = int_div(pb as i128 + pa as i128, 2);
        if let Some(prev) = self.rv_mid {
            if prev > 0.0 && m > 0.0 && m != prev {
                let r = (m / prev).ln();
                self.sq_returns.items.push_back((self.now, r * r));
                self.sq_returns.total += r * r;
            }
        }
        self.rv_mid = Some(m);
    }

    /// `_book_part`: the book-only columns (and their side effects: OFI, RV, mid), cached.
    fn book_part(&mut self, book: &impl BookView) {
        let n = self.n_top;
        let (mut bids, mut asks) = (std::mem::take(&mut self.top_bids), std::mem::take(&mut self.top_asks));
        book.top_into(n, &mut bids, &mut asks);
        self.top_bids = bids;
        self.top_asks = asks;
        let (bids, asks) = (&self.top_bids, &self.top_asks);
        self.bid_floor = if bids.len() == n { bids[n - 1].0 } else { i64::MIN };
        self.ask_ceiling = if asks.len() == n { asks[n - 1].0 } else { i64::MAX };
        self.realized_variance();
        let (bids, asks) = (&self.top_bids, &self.top_asks);
        self.mid2 = match (bids.first(), asks.first()) {
            (Some(&(b, _)), Some(&(a, _))) => Some(b as i128 + a as i128),
            _ => None,
        };
        let mut row = self.cached_book_part.take().unwrap_or_default();
        row.clear();
        match (bids.first(), asks.first()) {
            (Some(&(pb, qb)), Some(&(pa, qa))) => {
                let m = int_div(pb as i128 + pa as i128, 2);
                let tick = self.p.tick;
                let micro = int_div(pb as i128 * qa as i128 + pa as i128 * qb as i128, qa as i128 + qb as i128);
                row.extend([
                    1.0,
                    m,
                    int_div(pa as i128 - pb as i128, tick as i128),
                    (micro - m) / tick as f64,
                    queue_imbalance(qb, qa),
                ]);
            }
            (b, a) => {
                let qi = if b.is_some() || a.is_some() {
                    queue_imbalance(b.map_or(0, |l| l.1), a.map_or(0, |l| l.1))
                } else {
                    0.0
                };
                row.extend([0.0, 0.0, 0.0, 0.0, qi]);
            }
        }
        // the book may be thinner than k levels: then all of it
        let depth = |levels: &[Lvl], k: usize| -> f64 {
            let total: i128 = levels.iter().take(k).map(|&(_, q)| q as i128).sum();
            (total as f64).ln_1p()
        };
        for &k in &self.p.depth_at {
            row.push(depth(bids, k));
            row.push(depth(asks, k));
        }
        let k = self.p.memory_levels;
        let total: i128 = bids.iter().take(k).chain(asks.iter().take(k)).map(|&(_, q)| q as i128).sum();
        self.memory_depth = (total as f64).ln_1p();
        self.cached_book_part = Some(row);
        let size = |levels: &[Lvl], m: usize| levels.get(m).map_or(0, |l| l.1) as i128;
        for (m, d) in self.level_depth.iter_mut().enumerate() {
            *d = int_div(size(bids, m) + size(asks, m), 2);
        }
        let mut e = std::mem::take(&mut self.e);
        self.ofi.update(&self.top_bids, &self.top_asks, &mut e);
        self.e = e;
    }

    /// Fold one message's events (already applied to `book`) in; the feature row after it, into
    /// `row` (`n_features()` long).
    pub fn update(&mut self, book: &impl BookView, events: &[Event], row: &mut [f32]) {
        // in i128: a venue's times are any int64 (a message of 1970 after one of 2262), which Python subtracts exactly
        let mut dt_msg = 0i128;
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            if let Some(prev) = self.last_ts {
                dt_msg = (i128::from(first.ts) - i128::from(prev)).max(0);
            }
            self.last_ts = Some(last.ts);
        }
        let touched = self.touches(events);
        self.on_events(events);
        let cutoff = self.now - self.p.window_ns;
        expire_ts(&mut self.messages, cutoff);
        expire_ts(&mut self.cancels, cutoff);
        expire_ts(&mut self.trade_ts, cutoff);
        self.signed_volume.expire(cutoff);
        self.sq_returns.expire(cutoff, self.p.neumaier);

        let dt_row = self.row_ts.map_or(0, |t| self.now - t);
        self.row_ts = Some(self.now);
        if touched {
            self.book_part(book);
        }
        let nb = self.p.n_book();
        let no = self.p.ofi_levels;
        for (o, &x) in row[..nb].iter_mut().zip(self.cached_book_part.as_deref().unwrap_or(&[])) {
            *o = x as f32;
        }
        self.ofi_columns(touched, dt_row, &mut row[nb..nb + no]);
        let v = self.signed_volume.total as f64;
        let rv = self.sq_returns.total;
        let per_s = self.per_second;
        let tail = [
            v.abs().ln_1p().copysign(v),
            self.last_sign as f64,
            if 0.0 > rv { 0.0 } else { rv }, // max(total, 0.0): the first of equals, as Python's max
            (self.messages.len() as f64 * per_s).ln_1p(),
            (self.cancels.len() as f64 * per_s).ln_1p(),
            (self.trade_ts.len() as f64 * per_s).ln_1p(),
            (dt_msg as f64).ln_1p(),
        ];
        for (o, x) in row[nb + no..nb + no + 7].iter_mut().zip(tail) {
            *o = x as f32;
        }
        self.update_memory(&mut row[nb + no + 7..]);
    }

    /// `_update_memory`: each EWMA a step towards the depth of the last book read.
    fn update_memory(&mut self, out: &mut [f32]) {
        let x = self.memory_depth;
        let rates = &self.p.memory_rates;
        let memory = match &mut self.memory {
            Some(memory) => {
                for (m, &a) in memory.iter_mut().zip(rates) {
                    *m += a * (x - *m);
                }
                memory
            }
            // the first message: each EWMA starts at its value
            None => self.memory.insert(vec![x; rates.len()]),
        };
        for (o, m) in out.iter_mut().zip(memory.iter()) {
            *o = *m as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_div_rounds_once() {
        // exact halves and thirds, and a numerator past 2^53 whose float conversion would round first
        assert_eq!(int_div(7, 2), 3.5);
        assert_eq!(int_div(-1, 3), -1.0 / 3.0);
        let n: i128 = (1 << 60) + 3;
        assert_eq!(int_div(n, 3), 384307168202282326.0);
        // ties to even: 2^54 + 2 over 4 is (2^52 + 0.5) exactly, which rounds to 2^52
        assert_eq!(int_div((1 << 54) + 2, 4), 4503599627370496.0);
        assert_eq!(int_div((1 << 54) + 6, 4), 4503599627370498.0);
        assert_eq!(int_div(1 << 100, 1 << 90), 1024.0);
    }

    #[test]
    fn neumaier_sum_keeps_small_terms() {
        let xs = [1e16, 1.0, -1e16];
        assert_eq!(py_sum(xs.iter().copied(), false), 0.0);
        assert_eq!(py_sum(xs.iter().copied(), true), 1.0);
    }
}
