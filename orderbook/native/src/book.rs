//! The two book types of `orderbook/book.py`, with the same rules and the same errors:
//! `L2` (size per price) and `L3` (orders by id, FIFO per price, level totals).
//!
//! A side is a sorted pair of vectors (keys, values) with the best level LAST. Almost every
//! update lands within a few dozen levels of the touch, so opening or closing a level there
//! moves only the few entries behind it, the best level is one read, and the keys of a
//! 2,000-level side (16 kB) stay in L1 for the binary search (a scan from the touch first was
//! tried: no faster on either bench, where the misses of the order index dominate).

use rustc_hash::FxHashMap;

use crate::errors::{Fault, Reason};

pub const BID: i8 = 1;
pub const ASK: i8 = -1;

/// `orderbook.events` flags: the side that took liquidity in a trade or execution.
pub const FLAG_AGGRESSOR_BID: i16 = 8;
pub const FLAG_AGGRESSOR_ASK: i16 = 16;

/// `orderbook.events.Kind` values.
pub mod kind {
    pub const ADD: i8 = 1;
    pub const CANCEL: i8 = 2;
    pub const DELETE: i8 = 3;
    pub const EXECUTE: i8 = 4;
    pub const REPLACE: i8 = 5;
    pub const LEVEL_SET: i8 = 6;
    pub const TRADE: i8 = 7;
    pub const SNAPSHOT_BEGIN: i8 = 8;
    pub const SNAPSHOT_END: i8 = 9;
    pub const CLEAR: i8 = 10;
    pub const STATUS: i8 = 11;
    pub const CHANGE: i8 = 12;

    pub fn name(k: i8) -> String {
        let names = [
            "",
            "ADD",
            "CANCEL",
            "DELETE",
            "EXECUTE",
            "REPLACE",
            "LEVEL_SET",
            "TRADE",
            "SNAPSHOT_BEGIN",
            "SNAPSHOT_END",
            "CLEAR",
            "STATUS",
            "CHANGE",
        ];
        match usize::try_from(k).ok().and_then(|i| names.get(i)) {
            Some(n) if !n.is_empty() => (*n).to_string(),
            _ => format!("kind {k}"),
        }
    }
}

fn no_side(side: i8) -> Fault {
    let name = match side {
        0 => "<Side.NONE: 0>".to_string(),
        s => format!("{s}"),
    };
    Fault::new(Reason::BookError, format!("event has no side ({name})"))
}

/// Tombstones kept before a side is compacted: at least this many, and half the entries.
const MIN_DEAD: usize = 32;

/// One side's levels, keys ascending and the best level last. Bids are keyed by price (the
/// highest is last); asks by `!price` (bitwise not: order-reversing and, unlike negation,
/// defined for every i64), so the lowest ask is last.
///
/// A level removed away from the touch stays as a tombstone (a vacant value) instead of
/// shifting every entry behind it: feeds remove and re-open the same prices all the time
/// (Binance futures diffs touch all 1,000 levels of the book), and a re-opened price is then one
/// write. The last entry is always live (removing it pops it and the tombstones before it), so
/// the best level stays one read; tombstones past half the entries are compacted away.
#[derive(Clone, Debug)]
pub struct Levels<V> {
    keys: Vec<i64>,
    vals: Vec<V>,
    alive: Vec<bool>,
    dead: usize,
    ask: bool,
}

impl<V: Copy> Levels<V> {
    fn new(ask: bool) -> Self {
        Levels { keys: Vec::new(), vals: Vec::new(), alive: Vec::new(), dead: 0, ask }
    }

    #[inline]
    fn key(&self, price: i64) -> i64 {
        if self.ask {
            !price
        } else {
            price
        }
    }

    #[inline]
    fn find(&self, price: i64) -> Result<usize, usize> {
        self.keys.binary_search(&self.key(price))
    }

    pub fn len(&self) -> usize {
        self.keys.len() - self.dead
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn get(&self, price: i64) -> Option<V> {
        self.find(price).ok().filter(|&i| self.alive[i]).map(|i| self.vals[i])
    }

    /// The best level as (price, value).
    #[inline]
    pub fn best(&self) -> Option<(i64, V)> {
        let i = self.keys.len().checked_sub(1)?;
        Some((self.key(self.keys[i]), self.vals[i]))
    }

    /// Remove the worst level (the last of `iter`) and give it back: a venue that truncates its book
    /// to a depth (Kraken) sends no deletion for a level pushed out of it.
    pub fn pop_worst(&mut self) -> Option<(i64, V)> {
        let i = self.alive.iter().position(|&a| a)?;
        let level = (self.key(self.keys[i]), self.vals[i]);
        self.close(i);
        Some(level)
    }

    /// Levels best first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, V)> + '_ {
        let all = self.keys.iter().zip(self.vals.iter()).zip(self.alive.iter()).rev();
        all.filter(|(_, &alive)| alive).map(|((&k, &v), _)| (self.key(k), v))
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.vals.clear();
        self.alive.clear();
        self.dead = 0;
    }

    /// A side from its levels best first (a state's), checked: each price once, in order.
    fn from_best_first(ask: bool, rows: &[(i64, V)]) -> Result<Self, String> {
        let mut side = Levels::new(ask);
        // worst first is key order: every level is a push, no insertion
        for &(price, v) in rows.iter().rev() {
            let key = side.key(price);
            if side.keys.last().is_some_and(|&last| last >= key) {
                let name = if ask { "asks" } else { "bids" };
                return Err(format!("{name} are not in strict price order at {price}"));
            }
            side.keys.push(key);
            side.vals.push(v);
            side.alive.push(true);
        }
        Ok(side)
    }

    /// The layout's invariants (the fuzz targets check them after every message): keys in strict
    /// order, the columns of one length, `dead` the tombstones counted, the last entry live.
    pub fn check(&self) -> Result<(), String> {
        let name = if self.ask { "asks" } else { "bids" };
        if self.vals.len() != self.keys.len() || self.alive.len() != self.keys.len() {
            return Err(format!(
                "{name}: columns of {} / {} / {} rows",
                self.keys.len(),
                self.vals.len(),
                self.alive.len()
            ));
        }
        if let Some(w) = self.keys.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!("{name}: keys {} then {}", w[0], w[1]));
        }
        let dead = self.alive.iter().filter(|&&a| !a).count();
        if dead != self.dead {
            return Err(format!("{name}: {dead} tombstones, {} counted", self.dead));
        }
        if self.alive.last() == Some(&false) {
            return Err(format!("{name}: the best entry is a tombstone"));
        }
        Ok(())
    }

    /// Is the level `find` found at `i` live (not a tombstone)?
    #[inline]
    fn live(&self, i: usize) -> bool {
        self.alive[i]
    }

    /// Put a level at `i` (from `find`'s Err), or bring the tombstone at `i` (its Ok) back.
    #[inline]
    fn open(&mut self, found: Result<usize, usize>, price: i64, v: V) {
        match found {
            Ok(i) => {
                self.dead -= 1;
                self.vals[i] = v;
                self.alive[i] = true;
            }
            Err(i) => {
                self.keys.insert(i, self.key(price));
                self.vals.insert(i, v);
                self.alive.insert(i, true);
            }
        }
    }

    /// Remove the live level at `i`.
    #[inline]
    fn close(&mut self, i: usize) {
        if i + 1 == self.keys.len() {
            self.keys.pop();
            self.vals.pop();
            self.alive.pop();
            while self.alive.last() == Some(&false) {
                self.keys.pop();
                self.vals.pop();
                self.alive.pop();
                self.dead -= 1;
            }
            return;
        }
        self.alive[i] = false;
        self.dead += 1;
        if self.dead > MIN_DEAD && 2 * self.dead > self.keys.len() {
            let mut w = 0;
            for r in 0..self.keys.len() {
                if self.alive[r] {
                    self.keys[w] = self.keys[r];
                    self.vals[w] = self.vals[r];
                    w += 1;
                }
            }
            self.keys.truncate(w);
            self.vals.truncate(w);
            self.alive.clear();
            self.alive.resize(w, true);
            self.dead = 0;
        }
    }
}

/// Best bid and best ask as `[bid price, bid size, ask price, ask size]`, zeros for an empty side.
pub type Top = [i64; 4];

fn top_of<V: Copy>(bids: &Levels<V>, asks: &Levels<V>, size: impl Fn(V) -> i64) -> Top {
    let (bp, bs) = bids.best().map_or((0, 0), |(p, v)| (p, size(v)));
    let (ap, a_s) = asks.best().map_or((0, 0), |(p, v)| (p, size(v)));
    [bp, bs, ap, a_s]
}

fn crossed<V: Copy>(bids: &Levels<V>, asks: &Levels<V>) -> bool {
    match (bids.best(), asks.best()) {
        (Some((b, _)), Some((a, _))) => b >= a,
        _ => false,
    }
}

// ------------------------------------------------------------------------------------ L2

/// Aggregated size per price level (`orderbook.book.L2Book`).
#[derive(Clone, Debug)]
pub struct L2 {
    pub bids: Levels<i64>,
    pub asks: Levels<i64>,
}

impl Default for L2 {
    fn default() -> Self {
        L2 { bids: Levels::new(false), asks: Levels::new(true) }
    }
}

impl L2 {
    /// Absolute size at a price; 0 removes the level.
    #[inline]
    pub fn set_level(&mut self, side: i8, price: i64, size: i64) -> Result<(), Fault> {
        let levels = match side {
            BID => &mut self.bids,
            ASK => &mut self.asks,
            s => return Err(no_side(s)),
        };
        if size < 0 {
            return Err(Fault::new(Reason::BookError, format!("negative size {size} at {price}")));
        }
        let found = levels.find(price);
        match found {
            Ok(i) if levels.live(i) => {
                if size != 0 {
                    levels.vals[i] = size;
                } else {
                    levels.close(i);
                }
            }
            _ if size != 0 => levels.open(found, price, size),
            _ => {}
        }
        Ok(())
    }

    /// `L2Book.apply` for one event.
    pub fn apply(&mut self, k: i8, side: i8, price: i64, size: i64) -> Result<(), Fault> {
        match k {
            kind::LEVEL_SET => self.set_level(side, price, size),
            kind::SNAPSHOT_BEGIN | kind::CLEAR => {
                self.clear();
                Ok(())
            }
            kind::TRADE | kind::SNAPSHOT_END | kind::STATUS | kind::EXECUTE => Ok(()),
            _ => Err(Fault::new(Reason::BookError, format!("{} needs an order-by-order book", kind::name(k)))),
        }
    }

    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// A book from its levels, (price, size) best first per side (a state's): refused where a
    /// price repeats, the order is wrong or a size is not positive, which no book ever holds.
    pub fn from_levels(bids: &[(i64, i64)], asks: &[(i64, i64)]) -> Result<L2, String> {
        if let Some((p, q)) = bids.iter().chain(asks).find(|&&(_, q)| q <= 0) {
            return Err(format!("size {q} at {p}"));
        }
        Ok(L2 { bids: Levels::from_best_first(false, bids)?, asks: Levels::from_best_first(true, asks)? })
    }

    pub fn top(&self) -> Top {
        top_of(&self.bids, &self.asks, |v| v)
    }

    /// Both sides' layout (`Levels::check`), every size positive.
    pub fn check(&self) -> Result<(), String> {
        self.bids.check()?;
        self.asks.check()?;
        match self.bids.iter().chain(self.asks.iter()).find(|&(_, q)| q <= 0) {
            Some((p, q)) => Err(format!("size {q} at {p}")),
            None => Ok(()),
        }
    }

    pub fn crossed(&self) -> bool {
        crossed(&self.bids, &self.asks)
    }
}

// ------------------------------------------------------------------------------------ L3

const NIL: u32 = u32::MAX;

/// A resting order, linked into its level's FIFO queue by slot index.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    pub id: u64,
    pub price: i64,
    pub size: i64,
    pub side: i8,
    prev: u32,
    next: u32,
}

/// A level of an L3 side: its total size and the ends of its FIFO queue.
#[derive(Clone, Copy, Debug)]
pub struct Level {
    pub total: i64,
    head: u32,
    tail: u32,
}

/// Every resting order by id, FIFO per price level, level totals (`orderbook.book.L3Book`).
/// Orders live in a slab (freed slots reused) so that a queue is an intrusive doubly linked
/// list: a delete from the middle of a queue is O(1), as the reference's ordered dict is.
#[derive(Clone, Debug)]
pub struct L3 {
    index: FxHashMap<u64, u32>,
    slab: Vec<Order>,
    free: Vec<u32>,
    pub bids: Levels<Level>,
    pub asks: Levels<Level>,
}

impl Default for L3 {
    fn default() -> Self {
        L3 {
            index: FxHashMap::default(),
            slab: Vec::new(),
            free: Vec::new(),
            bids: Levels::new(false),
            asks: Levels::new(true),
        }
    }
}

fn unknown(id: u64) -> Fault {
    Fault::new(Reason::UnknownOrder, format!("order {id} is not in the book"))
}

impl L3 {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    pub fn order(&self, id: u64) -> Option<&Order> {
        self.index.get(&id).map(|&slot| &self.slab[slot as usize])
    }

    pub fn orders(&self) -> impl Iterator<Item = &Order> + '_ {
        self.index.values().map(|&slot| &self.slab[slot as usize])
    }

    #[inline]
    fn levels_mut(&mut self, side: i8) -> &mut Levels<Level> {
        if side == BID {
            &mut self.bids
        } else {
            &mut self.asks
        }
    }

    #[inline]
    pub fn add(&mut self, id: u64, side: i8, price: i64, size: i64) -> Result<(), Fault> {
        let free = &mut self.free;
        let slab = &mut self.slab;
        let entry = match self.index.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => {
                return Err(Fault::new(Reason::DuplicateOrder, format!("order {id} is already resting")));
            }
            std::collections::hash_map::Entry::Vacant(entry) => entry,
        };
        if size <= 0 {
            return Err(Fault::new(Reason::BookError, format!("order {id} added with size {size}")));
        }
        if side != BID && side != ASK {
            return Err(no_side(side));
        }
        let order = Order { id, price, size, side, prev: NIL, next: NIL };
        let slot = match free.pop() {
            Some(s) => {
                slab[s as usize] = order;
                s
            }
            None => {
                slab.push(order);
                (slab.len() - 1) as u32
            }
        };
        entry.insert(slot);
        let levels = if side == BID { &mut self.bids } else { &mut self.asks };
        let found = levels.find(price);
        match found {
            Ok(i) if levels.live(i) => {
                let level = &mut levels.vals[i];
                let tail = level.tail;
                level.tail = slot;
                level.total += size;
                slab[tail as usize].next = slot;
                slab[slot as usize].prev = tail;
            }
            _ => levels.open(found, price, Level { total: size, head: slot, tail: slot }),
        }
        Ok(())
    }

    /// Remove an order; returns it.
    #[inline]
    pub fn delete(&mut self, id: u64) -> Result<Order, Fault> {
        let slot = self.index.remove(&id).ok_or_else(|| unknown(id))?;
        let o = self.slab[slot as usize];
        if o.prev != NIL {
            self.slab[o.prev as usize].next = o.next;
        }
        if o.next != NIL {
            self.slab[o.next as usize].prev = o.prev;
        }
        let levels = self.levels_mut(o.side);
        let i = levels.find(o.price).expect("a resting order's level exists");
        let level = &mut levels.vals[i];
        if o.prev == NIL {
            level.head = o.next;
        }
        if o.next == NIL {
            level.tail = o.prev;
        }
        if level.head == NIL {
            levels.close(i);
        } else {
            level.total -= o.size;
        }
        self.free.push(slot);
        Ok(o)
    }

    /// Take `size` off an order (cancel or execution); more than it has removes it and is an
    /// error. Returns the order as it was before.
    #[inline]
    pub fn reduce(&mut self, id: u64, size: i64) -> Result<Order, Fault> {
        let slot = *self.index.get(&id).ok_or_else(|| unknown(id))?;
        if size <= 0 {
            return Err(Fault::new(Reason::BookError, format!("order {id} reduced by {size}")));
        }
        let before = self.slab[slot as usize];
        if size >= before.size {
            let over = size - before.size;
            self.delete(id)?;
            if over != 0 {
                return Err(Fault::new(
                    Reason::BookError,
                    format!("order {id} reduced by {size}, {over} more than it had"),
                ));
            }
            return Ok(before);
        }
        self.slab[slot as usize].size -= size;
        self.level_add(before.side, before.price, -size);
        Ok(before)
    }

    #[inline]
    fn level_add(&mut self, side: i8, price: i64, delta: i64) {
        let levels = self.levels_mut(side);
        let i = levels.find(price).expect("a resting order's level exists");
        levels.vals[i].total += delta;
    }

    /// Cancel-replace: the new order joins the back of the queue at its price, same side.
    /// Returns the replaced order.
    pub fn replace(&mut self, id: u64, new_id: u64, price: i64, size: i64) -> Result<Order, Fault> {
        if !self.index.contains_key(&id) {
            return Err(unknown(id));
        }
        if new_id != id && self.index.contains_key(&new_id) {
            return Err(Fault::new(Reason::DuplicateOrder, format!("replacement id {new_id} is already resting")));
        }
        if size <= 0 {
            return Err(Fault::new(Reason::BookError, format!("order {id} replaced with size {size}")));
        }
        let old = self.delete(id)?;
        self.add(new_id, old.side, price, size)?;
        Ok(old)
    }

    /// Resize in place, keeping queue priority.
    pub fn change(&mut self, id: u64, size: i64) -> Result<(), Fault> {
        let slot = *self.index.get(&id).ok_or_else(|| unknown(id))?;
        if size <= 0 {
            return Err(Fault::new(Reason::BookError, format!("order {id} changed to size {size}")));
        }
        let o = &mut self.slab[slot as usize];
        let (side, price, delta) = (o.side, o.price, size - o.size);
        o.size = size;
        self.level_add(side, price, delta);
        Ok(())
    }

    /// `L3Book.apply` for one event.
    pub fn apply(&mut self, k: i8, id: u64, side: i8, price: i64, size: i64, new_id: u64) -> Result<(), Fault> {
        match k {
            kind::ADD => self.add(id, side, price, size),
            kind::DELETE => self.delete(id).map(|_| ()),
            kind::CANCEL | kind::EXECUTE => self.reduce(id, size).map(|_| ()),
            kind::REPLACE => self.replace(id, new_id, price, size).map(|_| ()),
            kind::CHANGE => self.change(id, size),
            kind::SNAPSHOT_BEGIN | kind::CLEAR => {
                self.clear();
                Ok(())
            }
            kind::TRADE | kind::SNAPSHOT_END | kind::STATUS => Ok(()),
            _ => Err(Fault::new(
                Reason::BookError,
                format!("{} does not apply to an order-by-order book", kind::name(k)),
            )),
        }
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.slab.clear();
        self.free.clear();
        self.bids.clear();
        self.asks.clear();
    }

    /// A side's resting orders, level by level best first, each level's queue in time priority.
    pub fn side_orders(&self, side: i8) -> impl Iterator<Item = &Order> + '_ {
        let levels = if side == BID { &self.bids } else { &self.asks };
        levels.iter().flat_map(move |(_, level)| {
            let mut slot = level.head;
            std::iter::from_fn(move || {
                let o = self.slab.get(slot as usize)?; // NIL is past the slab's end
                slot = o.next;
                Some(o)
            })
        })
    }

    /// A book from its orders as `side_orders` gives them, (id, price, size) per side: adding
    /// them level by level worst first, each queue in order, rebuilds every queue (and its
    /// total). Refused where an id repeats, a size is not positive, or a side's levels are not
    /// in strict price order (a level split in two would merge its queues in another order).
    pub fn from_orders(bids: &[(u64, i64, i64)], asks: &[(u64, i64, i64)]) -> Result<L3, String> {
        let mut book = L3::default();
        for (side, orders) in [(BID, bids), (ASK, asks)] {
            // runs of one price (`chunk_by` is newer than the crate's rust-version)
            let mut levels: Vec<&[(u64, i64, i64)]> = Vec::new();
            let mut start = 0;
            for i in 1..=orders.len() {
                if i == orders.len() || orders[i].1 != orders[start].1 {
                    levels.push(&orders[start..i]);
                    start = i;
                }
            }
            for pair in levels.windows(2) {
                let (better, worse) = (pair[0][0].1, pair[1][0].1);
                if (side == BID && better <= worse) || (side == ASK && better >= worse) {
                    return Err(format!("orders of side {side} are not in strict price order at {worse}"));
                }
            }
            for &(id, price, size) in levels.iter().rev().flat_map(|l| l.iter()) {
                book.add(id, side, price, size).map_err(|f| f.text)?;
            }
        }
        Ok(book)
    }

    /// The orders at a level in time priority, as (id, size).
    pub fn queue(&self, side: i8, price: i64) -> Vec<(u64, i64)> {
        let levels = if side == BID { &self.bids } else { &self.asks };
        let mut out = Vec::new();
        if let Some(level) = levels.get(price) {
            let mut slot = level.head;
            while slot != NIL {
                let o = &self.slab[slot as usize];
                out.push((o.id, o.size));
                slot = o.next;
            }
        }
        out
    }

    /// Size resting ahead of an order at its level (0: first in the queue).
    pub fn queue_position(&self, id: u64) -> Result<i64, Fault> {
        let mut slot = self.slab[*self.index.get(&id).ok_or_else(|| unknown(id))? as usize].prev;
        let mut ahead = 0;
        while slot != NIL {
            let o = &self.slab[slot as usize];
            ahead += o.size;
            slot = o.prev;
        }
        Ok(ahead)
    }

    pub fn top(&self) -> Top {
        top_of(&self.bids, &self.asks, |v: Level| v.total)
    }

    /// Both sides' layout (`Levels::check`), and every live level's queue: linked both ways, its
    /// orders resting (in `index`) at its price and side, sizes positive, summing to its total;
    /// every resting order in one queue.
    pub fn check(&self) -> Result<(), String> {
        let mut queued = 0;
        for (side, levels) in [(BID, &self.bids), (ASK, &self.asks)] {
            levels.check()?;
            for (price, level) in levels.iter() {
                let (mut slot, mut prev, mut total) = (level.head, NIL, 0i128);
                while slot != NIL {
                    let o = self.slab.get(slot as usize).ok_or(format!("level {price}: slot {slot} past the slab"))?;
                    if o.prev != prev || self.index.get(&o.id) != Some(&slot) {
                        return Err(format!("level {price}: order {} is not linked where it rests", o.id));
                    }
                    if o.price != price || o.side != side || o.size <= 0 {
                        return Err(format!(
                            "level {price}: order {} at {} side {} size {}",
                            o.id, o.price, o.side, o.size
                        ));
                    }
                    total += o.size as i128;
                    queued += 1;
                    if queued > self.index.len() {
                        return Err(format!("level {price}: its queue runs on past every resting order"));
                    }
                    (prev, slot) = (slot, o.next);
                }
                if level.tail != prev || total != level.total as i128 || total <= 0 {
                    return Err(format!("level {price}: total {} against its orders' {total}", level.total));
                }
            }
        }
        if queued != self.index.len() {
            return Err(format!("{} orders rest, {queued} are in the queues", self.index.len()));
        }
        Ok(())
    }

    pub fn crossed(&self) -> bool {
        crossed(&self.bids, &self.asks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no crate for it): the same operations on every run.
    fn lcg(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn l2_check_holds_through_removals_and_compactions_and_finds_a_miscount() {
        let mut book = L2::default();
        let (mut s, mut compactions) = (7, 0);
        for p in 0..200 {
            book.set_level(BID, p, 1).unwrap();
        }
        for _ in 0..5000 {
            let dead = book.bids.dead;
            // mostly removals, away from the touch as often as not: tombstones pile up past half
            let (price, size) = ((lcg(&mut s) % 200) as i64, i64::from(lcg(&mut s) % 5 == 0));
            book.set_level(BID, price, size).unwrap();
            book.set_level(ASK, 1000 + price, 1 - size).unwrap();
            book.check().unwrap();
            compactions += usize::from(dead > MIN_DEAD && book.bids.dead == 0 && book.bids.keys.len() > 1);
        }
        assert!(!book.bids.is_empty() && !book.asks.is_empty() && compactions > 0);
        book.bids.dead += 1;
        assert!(book.bids.check().unwrap_err().contains("tombstones"));
    }

    #[test]
    fn l3_check_holds_through_order_operations_and_finds_a_wrong_total_or_link() {
        let mut book = L3::default();
        let mut s = 11;
        let mut next_id = 1u64;
        for _ in 0..5000 {
            let id = 1 + lcg(&mut s) % next_id;
            let _ = match lcg(&mut s) % 4 {
                0 | 1 => {
                    let side = if lcg(&mut s) % 2 == 0 { BID } else { ASK };
                    let price = (lcg(&mut s) % 20) as i64 + if side == BID { 0 } else { 100 };
                    next_id += 1;
                    book.add(next_id, side, price, 1 + (lcg(&mut s) % 50) as i64).map(|_| ())
                }
                2 => book.reduce(id, 1 + (lcg(&mut s) % 30) as i64).map(|_| ()),
                _ => book.delete(id).map(|_| ()),
            };
            book.check().unwrap();
        }
        assert!(book.len() > 10);
        let mut wrong = book.clone();
        let i = wrong.bids.keys.len() - 1;
        wrong.bids.vals[i].total += 1;
        assert!(wrong.check().unwrap_err().contains("total"));
        let mut mislinked = book.clone();
        let head = mislinked.asks.vals[mislinked.asks.keys.len() - 1].head;
        mislinked.slab[head as usize].prev = head;
        assert!(mislinked.check().unwrap_err().contains("linked"));
    }
}
