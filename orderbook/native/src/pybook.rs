//! The books' Python surface: `orderbook.native.L2Book` / `L3Book`.
//!
//! Per-event Python calls cost more than the book work itself (~60 ns), so the hot entry
//! points take a whole batch as numpy arrays (`apply_levels`, `apply`) and, where the caller
//! needs the touch along the way, read it after the events `marks` name and return those reads
//! as one array. The single-event methods are there for tests and for small jobs.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::book::{Level, Levels, Top, L2, L3};
use crate::errors::{py_error, Fault};
use crate::state::{self, State};

/// What a batch runner needs of a book.
pub trait TopOfBook {
    fn top(&self) -> Top;
}

impl TopOfBook for L2 {
    fn top(&self) -> Top {
        L2::top(self)
    }
}

impl TopOfBook for L3 {
    fn top(&self) -> Top {
        L3::top(self)
    }
}

/// The `marks` of a batch call as a slice, checked: non-decreasing event counts in [0, n].
fn marks_of<'a>(marks: &'a Option<PyReadonlyArray1<'_, i64>>, n: usize) -> PyResult<&'a [i64]> {
    let slice = match marks {
        Some(m) => m.as_slice()?,
        None => &[],
    };
    let mut last = 0;
    for &m in slice {
        if m < last || m as u64 > n as u64 {
            return Err(PyValueError::new_err(format!(
                "marks must be non-decreasing event counts in [0, {n}], got {m} after {last}"
            )));
        }
        last = m;
    }
    Ok(slice)
}

/// A batch call's answer: the reads (where marks were given), or the error of the event that stopped it.
fn finish<'py>(
    py: Python<'py>,
    result: Result<Vec<i64>, (usize, Fault)>,
    marked: bool,
    venue: &str,
    symbol: &str,
) -> PyResult<Option<Bound<'py, PyArray2<i64>>>> {
    match result {
        Ok(tops) => marked.then(|| tops_array(py, tops)).transpose(),
        Err((at, fault)) => Err(batch_error(py, at, fault, venue, symbol)),
    }
}

fn same_lengths(lengths: &[usize]) -> PyResult<usize> {
    let n = lengths[0];
    if lengths.iter().any(|&l| l != n) {
        return Err(PyValueError::new_err(format!("batch columns differ in length: {lengths:?}")));
    }
    Ok(n)
}

/// Run `step` for events 0..n; after the first `marks[j]` events, read the top into row j.
/// Stops at the first fault, with the index of the event that caused it.
pub fn run_batch<B: TopOfBook>(
    book: &mut B,
    n: usize,
    marks: &[i64],
    mut step: impl FnMut(&mut B, usize) -> Result<(), Fault>,
) -> Result<Vec<i64>, (usize, Fault)> {
    let mut tops = Vec::with_capacity(marks.len() * 4);
    let mut m = 0;
    for i in 0..n {
        while m < marks.len() && marks[m] as usize == i {
            tops.extend_from_slice(&book.top());
            m += 1;
        }
        step(book, i).map_err(|f| (i, f))?;
    }
    while m < marks.len() {
        tops.extend_from_slice(&book.top());
        m += 1;
    }
    Ok(tops)
}

fn tops_array<'py>(py: Python<'py>, tops: Vec<i64>) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let rows = tops.len() / 4;
    PyArray1::from_vec(py, tops).reshape([rows, 4])
}

fn batch_error(py: Python<'_>, at: usize, fault: Fault, venue: &str, symbol: &str) -> PyErr {
    let fault = Fault::new(fault.reason, format!("{} (event {at} of the batch)", fault.text));
    let err = py_error(py, &fault, venue, symbol, None);
    // the caller learns which events were applied: those before `index`
    let _ = err.value(py).setattr("index", at);
    err
}

fn levels_dict<'py, V: Copy>(
    py: Python<'py>,
    levels: &Levels<V>,
    size: impl Fn(V) -> i64,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (p, v) in levels.iter() {
        d.set_item(p, size(v))?;
    }
    Ok(d)
}

fn book_dict<'py, V: Copy>(
    py: Python<'py>,
    bids: &Levels<V>,
    asks: &Levels<V>,
    size: impl Fn(V) -> i64 + Copy,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bids", levels_dict(py, bids, size)?)?;
    d.set_item("asks", levels_dict(py, asks, size)?)?;
    Ok(d)
}

/// An L2 book as `to_dict` gives it.
pub fn l2_dict<'py>(py: Python<'py>, book: &L2) -> PyResult<Bound<'py, PyDict>> {
    book_dict(py, &book.bids, &book.asks, |v: i64| v)
}

/// An L3 book's level totals as `to_dict` gives them.
pub fn l3_dict<'py>(py: Python<'py>, book: &L3) -> PyResult<Bound<'py, PyDict>> {
    book_dict(py, &book.bids, &book.asks, |v: Level| v.total)
}

/// An L3 book's resting orders: {id: (side, price, size)}.
pub fn orders_dict<'py>(py: Python<'py>, book: &L3) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for o in book.orders() {
        d.set_item(o.id, (o.side, o.price, o.size))?;
    }
    Ok(d)
}

type LevelArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

fn level_arrays<'py, V: Copy>(py: Python<'py>, levels: &Levels<V>, size: impl Fn(V) -> i64) -> LevelArrays<'py> {
    let (prices, sizes): (Vec<i64>, Vec<i64>) = levels.iter().map(|(p, v)| (p, size(v))).unzip();
    (PyArray1::from_vec(py, prices), PyArray1::from_vec(py, sizes))
}

macro_rules! shared_book_methods {
    ($ty:ty, $size:expr) => {
        #[pymethods]
        impl $ty {
            /// The best bid as (price, size), or None.
            fn best_bid(&self) -> Option<(i64, i64)> {
                self.book.bids.best().map(|(p, v)| (p, ($size)(v)))
            }

            /// The best ask as (price, size), or None.
            fn best_ask(&self) -> Option<(i64, i64)> {
                self.book.asks.best().map(|(p, v)| (p, ($size)(v)))
            }

            /// Best bid >= best ask.
            fn crossed(&self) -> bool {
                self.book.crossed()
            }

            fn clear(&mut self) {
                self.book.clear();
            }

            /// The best `n` levels of each side, best first: ([(price, size)] bids, [(price, size)] asks).
            #[allow(clippy::type_complexity)]
            fn top(&self, n: usize) -> (Vec<(i64, i64)>, Vec<(i64, i64)>) {
                let side = |l: &Levels<_>| l.iter().take(n).map(|(p, v)| (p, ($size)(v))).collect();
                (side(&self.book.bids), side(&self.book.asks))
            }

            /// One side's levels, best first, as (prices, sizes) int64 arrays.
            fn levels<'py>(&self, py: Python<'py>, side: i8) -> PyResult<LevelArrays<'py>> {
                match side {
                    crate::book::BID => Ok(level_arrays(py, &self.book.bids, $size)),
                    crate::book::ASK => Ok(level_arrays(py, &self.book.asks, $size)),
                    s => Err(PyValueError::new_err(format!("side must be 1 (bid) or -1 (ask), got {s}"))),
                }
            }

            /// Levels per side: (bids, asks).
            fn n_levels(&self) -> (usize, usize) {
                (self.book.bids.len(), self.book.asks.len())
            }

            /// {"bids": {price: size}, "asks": {price: size}}, best first, as `orderbook.book` books give it.
            fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                book_dict(py, &self.book.bids, &self.book.asks, $size)
            }

            fn __repr__(&self) -> String {
                format!(
                    "{}({}:{} bid={:?} ask={:?})",
                    stringify!($ty).trim_start_matches("Py"),
                    self.venue,
                    self.symbol,
                    self.best_bid(),
                    self.best_ask()
                )
            }
        }
    };
}

/// State (`__getstate__` / `__setstate__` / `__reduce__`, so pickle and copy work) of a book class:
/// {"kind": the class name, "version", "venue", "symbol", "bids", "asks"}, each side packed
/// little-endian int64 bytes (`state::put_l2` / `put_l3` say what is in them).
macro_rules! book_state_methods {
    ($ty:ty, $kind:literal, $put:path, $take:path) => {
        #[pymethods]
        impl $ty {
            /// The whole book as plain values (L2: (price, size) pairs best first; L3: (order id,
            /// price, size) records, level by level best first, each queue in time priority).
            fn __getstate__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let s = State::new(py, $kind)?;
                s.set("venue", &self.venue)?;
                s.set("symbol", &self.symbol)?;
                $put(&s, &self.book)?;
                Ok(s.dict)
            }

            /// Restore `__getstate__`'s state; ValueError (the book unchanged) for another kind or
            /// version, or a malformed state.
            fn __setstate__(&mut self, state: &Bound<'_, PyAny>) -> PyResult<()> {
                let s = State::open(state, $kind)?;
                let book = $take(&s)?;
                (self.venue, self.symbol) = (s.get("venue")?, s.get("symbol")?);
                self.book = book;
                Ok(())
            }

            /// pickle / copy: an empty book, then its state.
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
                let state = slf.borrow().__getstate__(slf.py())?;
                state::reduce(slf, state)
            }
        }
    };
}

// ------------------------------------------------------------------------------------ L2

/// Aggregated size per price level; the semantics and errors of `orderbook.book.L2Book`.
#[pyclass(name = "L2Book", module = "orderbook.native._core")]
pub struct PyL2 {
    pub book: L2,
    #[pyo3(get)]
    venue: String,
    #[pyo3(get)]
    symbol: String,
}

shared_book_methods!(PyL2, |v: i64| v);
book_state_methods!(PyL2, "L2Book", state::put_l2, state::take_l2);

#[pymethods]
impl PyL2 {
    #[new]
    #[pyo3(signature = (venue = "", symbol = ""))]
    fn new(venue: &str, symbol: &str) -> Self {
        PyL2 { book: L2::default(), venue: venue.into(), symbol: symbol.into() }
    }

    /// Absolute size at a price (0 removes the level); BookError for a missing side or a negative size.
    fn set_level(&mut self, py: Python<'_>, side: i8, price: i64, size: i64) -> PyResult<()> {
        self.book.set_level(side, price, size).map_err(|f| py_error(py, &f, &self.venue, &self.symbol, None))
    }

    /// Level sets (`LEVEL_SET` events) from int8 sides and int64 prices and sizes. With `marks`
    /// (non-decreasing event counts), returns an (len(marks), 4) int64 array of [bid price, bid
    /// size, ask price, ask size] read after that many events (zeros for an empty side). On an
    /// invalid event the events before it stay applied and the error's `index` names it.
    #[pyo3(signature = (sides, prices, sizes, marks = None))]
    fn apply_levels<'py>(
        &mut self,
        py: Python<'py>,
        sides: PyReadonlyArray1<'py, i8>,
        prices: PyReadonlyArray1<'py, i64>,
        sizes: PyReadonlyArray1<'py, i64>,
        marks: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Option<Bound<'py, PyArray2<i64>>>> {
        let (sides, prices, sizes) = (sides.as_slice()?, prices.as_slice()?, sizes.as_slice()?);
        let n = same_lengths(&[sides.len(), prices.len(), sizes.len()])?;
        let mark_slice = marks_of(&marks, n)?;
        let book = &mut self.book;
        let result = py.detach(|| run_batch(book, n, mark_slice, |b, i| b.set_level(sides[i], prices[i], sizes[i])));
        finish(py, result, marks.is_some(), &self.venue, &self.symbol)
    }

    /// Events of any kind, as `L2Book.apply` takes them one by one (LEVEL_SET sets, CLEAR and
    /// SNAPSHOT_BEGIN empty the book, TRADE, EXECUTE, STATUS and SNAPSHOT_END are ignored, the
    /// order-level kinds are a BookError); `marks` as for `apply_levels`.
    #[pyo3(signature = (kinds, sides, prices, sizes, marks = None))]
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        kinds: PyReadonlyArray1<'py, i8>,
        sides: PyReadonlyArray1<'py, i8>,
        prices: PyReadonlyArray1<'py, i64>,
        sizes: PyReadonlyArray1<'py, i64>,
        marks: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Option<Bound<'py, PyArray2<i64>>>> {
        let (kinds, sides) = (kinds.as_slice()?, sides.as_slice()?);
        let (prices, sizes) = (prices.as_slice()?, sizes.as_slice()?);
        let n = same_lengths(&[kinds.len(), sides.len(), prices.len(), sizes.len()])?;
        let mark_slice = marks_of(&marks, n)?;
        let book = &mut self.book;
        let result =
            py.detach(|| run_batch(book, n, mark_slice, |b, i| b.apply(kinds[i], sides[i], prices[i], sizes[i])));
        finish(py, result, marks.is_some(), &self.venue, &self.symbol)
    }
}

// ------------------------------------------------------------------------------------ L3

/// Every resting order by (integer) id, FIFO per price; the semantics and errors of
/// `orderbook.book.L3Book`. Ids are unsigned 64-bit (ITCH order references); a venue with
/// string ids (Coinbase) would intern them first.
#[pyclass(name = "L3Book", module = "orderbook.native._core")]
pub struct PyL3 {
    pub book: L3,
    #[pyo3(get)]
    venue: String,
    #[pyo3(get)]
    symbol: String,
}

shared_book_methods!(PyL3, |v: Level| v.total);
book_state_methods!(PyL3, "L3Book", state::put_l3, state::take_l3);

impl PyL3 {
    fn err(&self, py: Python<'_>, fault: Fault) -> PyErr {
        py_error(py, &fault, &self.venue, &self.symbol, None)
    }
}

#[pymethods]
impl PyL3 {
    #[new]
    #[pyo3(signature = (venue = "", symbol = ""))]
    fn new(venue: &str, symbol: &str) -> Self {
        PyL3 { book: L3::default(), venue: venue.into(), symbol: symbol.into() }
    }

    fn add(&mut self, py: Python<'_>, order_id: u64, side: i8, price: i64, size: i64) -> PyResult<()> {
        self.book.add(order_id, side, price, size).map_err(|f| self.err(py, f))
    }

    fn reduce(&mut self, py: Python<'_>, order_id: u64, size: i64) -> PyResult<()> {
        self.book.reduce(order_id, size).map(|_| ()).map_err(|f| self.err(py, f))
    }

    fn delete(&mut self, py: Python<'_>, order_id: u64) -> PyResult<()> {
        self.book.delete(order_id).map(|_| ()).map_err(|f| self.err(py, f))
    }

    fn replace(&mut self, py: Python<'_>, order_id: u64, new_id: u64, price: i64, size: i64) -> PyResult<()> {
        self.book.replace(order_id, new_id, price, size).map(|_| ()).map_err(|f| self.err(py, f))
    }

    fn change(&mut self, py: Python<'_>, order_id: u64, size: i64) -> PyResult<()> {
        self.book.change(order_id, size).map_err(|f| self.err(py, f))
    }

    /// A resting order as (side, price, size), or None.
    fn order(&self, order_id: u64) -> Option<(i8, i64, i64)> {
        self.book.order(order_id).map(|o| (o.side, o.price, o.size))
    }

    /// Every resting order: {id: (side, price, size)}.
    fn orders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        orders_dict(py, &self.book)
    }

    fn __len__(&self) -> usize {
        self.book.len()
    }

    /// The orders at a level in time priority, as [(id, size)].
    fn queue(&self, side: i8, price: i64) -> Vec<(u64, i64)> {
        self.book.queue(side, price)
    }

    /// Size resting ahead of the order at its price level (0: first in the queue).
    fn queue_position(&self, py: Python<'_>, order_id: u64) -> PyResult<i64> {
        self.book.queue_position(order_id).map_err(|f| self.err(py, f))
    }

    /// Events as `L3Book.apply` takes them one by one: int8 kinds and sides, uint64 order ids
    /// and new ids (REPLACE), int64 prices and sizes; `marks` as for `L2Book.apply_levels`
    /// (level totals for sizes). On an invalid event the ones before it stay applied, and the
    /// error's `index` names it.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (kinds, order_ids, sides, prices, sizes, new_order_ids, marks = None))]
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        kinds: PyReadonlyArray1<'py, i8>,
        order_ids: PyReadonlyArray1<'py, u64>,
        sides: PyReadonlyArray1<'py, i8>,
        prices: PyReadonlyArray1<'py, i64>,
        sizes: PyReadonlyArray1<'py, i64>,
        new_order_ids: PyReadonlyArray1<'py, u64>,
        marks: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Option<Bound<'py, PyArray2<i64>>>> {
        let (kinds, ids, sides) = (kinds.as_slice()?, order_ids.as_slice()?, sides.as_slice()?);
        let (prices, sizes, new_ids) = (prices.as_slice()?, sizes.as_slice()?, new_order_ids.as_slice()?);
        let n = same_lengths(&[kinds.len(), ids.len(), sides.len(), prices.len(), sizes.len(), new_ids.len()])?;
        let mark_slice = marks_of(&marks, n)?;
        let book = &mut self.book;
        let result = py.detach(|| {
            run_batch(book, n, mark_slice, |b, i| b.apply(kinds[i], ids[i], sides[i], prices[i], sizes[i], new_ids[i]))
        });
        finish(py, result, marks.is_some(), &self.venue, &self.symbol)
    }
}
