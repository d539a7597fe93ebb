//! `orderbook.native._core.WindowBuilder`: the Python face of `windows.rs` + `features.rs`.
//!
//! Two ways in. `push(book, events, offset)` takes one message, as `orderbook.windows.WindowBuilder.push`
//! does, and returns the same `orderbook.windows.Window` (or None); `book` is a native `L2Book` /
//! `L3Book` (read in place) or any book with the reference's `best_bid()`, `best_ask()` and
//! `top(n)` (read through Python, `top` only when the message may have moved the top levels).
//! `push_batch(events, book, offsets)` takes many messages' events as columns, applies them to a
//! native book as it goes (so the book state after each message is at hand without Python), and
//! returns the windows they completed stacked as `orderbook.windows.stack` stacks them: one
//! Python call per batch, the work itself done without the GIL.
//!
//! State: `__getstate__` / `__setstate__` (and `__reduce__`, so pickle and copy work) carry the
//! whole builder, rings and feature state included, as a dict of plain values: a restored builder
//! continues exactly where the original was.

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::{intern, IntoPyObjectExt};

use crate::book::{kind, L2, L3};
use crate::errors::{py_error, Fault};
use crate::features::{
    feature_names, memory_rates, Event, FeatureParams, Lvl, TopView, MEMORY_HALFLIVES, MEMORY_LEVELS,
};
use crate::pybook::{PyL2, PyL3};
use crate::volume_record::{LEVELS, VOLUME_HORIZONS};
use crate::windows::{BookStates, Stack, WindowBuilder, WindowConfig, STATE_DEPTH_LEVELS};

static WINDOW: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static WINDOW_CONFIG: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn value_error(e: impl Into<String>) -> PyErr {
    PyValueError::new_err(e.into())
}

/// Native per-symbol window builder: the windows of `orderbook.windows.WindowBuilder`, field for field.
///
/// WindowBuilder(config=None, features=None, venue="", symbol="", *, tick=1, ofi_levels=10,
/// depth_at=(1, 5, 10), window_ns=1e9, ofi_halflife_ns=1e9, memory_levels=5,
/// memory_halflives=(128, 512, 2048)). `config`: an
/// `orderbook.windows.WindowConfig` (None: the defaults). `features`: a fresh
/// `orderbook.features.FeatureState` whose parameters are taken (its state is not), as the
/// reference builder takes one; else the keyword parameters, those of `FeatureState`.
#[pyclass(name = "WindowBuilder", module = "orderbook.native._core")]
pub struct PyWindowBuilder {
    core: WindowBuilder,
    #[pyo3(get)]
    venue: String,
    #[pyo3(get)]
    symbol: String,
    /// the caller's source position of the last message (what windows carry as `offset`)
    #[pyo3(get)]
    offset: Py<PyAny>,
    events: Vec<Event>,
    view: TopView,
}

fn read_config(config: Option<&Bound<'_, PyAny>>) -> PyResult<WindowConfig> {
    let Some(c) = config.filter(|c| !c.is_none()) else { return Ok(WindowConfig::default()) };
    let py = c.py();
    let cfg = WindowConfig {
        n_events: c.getattr(intern!(py, "n_events"))?.extract()?,
        n_rows: c.getattr(intern!(py, "n_rows"))?.extract()?,
        max_news: c.getattr(intern!(py, "max_news"))?.extract()?,
        price_clip: c.getattr(intern!(py, "price_clip"))?.extract()?,
        every_events: c.getattr(intern!(py, "every_events"))?.extract()?,
        every_ns: c.getattr(intern!(py, "every_ns"))?.extract()?,
    };
    cfg.check().map_err(value_error)?;
    Ok(cfg)
}

/// Events a builder's message scratch keeps room for between calls: a depth diff's worth. A REST
/// snapshot's thousands of events grew it to 2,048-4,096 slots (48 bytes each) that every builder
/// then held for good: 131 kB of a Binance symbol's 303 kB (bench/memory_bench.py).
const SCRATCH_KEPT: usize = 64;

fn let_go_of_large(scratch: &mut Vec<Event>) {
    if scratch.capacity() > SCRATCH_KEPT {
        scratch.clear();
        scratch.shrink_to(SCRATCH_KEPT);
    }
}

/// One `orderbook.events.Event` (or anything with its attributes).
fn read_event(e: &Bound<'_, PyAny>) -> PyResult<Event> {
    let py = e.py();
    Ok(Event {
        kind: e.getattr(intern!(py, "kind"))?.extract()?,
        side: e.getattr(intern!(py, "side"))?.extract()?,
        flags: e.getattr(intern!(py, "flags"))?.extract()?,
        ts: e.getattr(intern!(py, "ts"))?.extract()?,
        seq: e.getattr(intern!(py, "seq"))?.extract()?,
        price: e.getattr(intern!(py, "price"))?.extract()?,
        size: e.getattr(intern!(py, "size"))?.extract()?,
    })
}

/// Whether `events` is a structured numpy array (a batch's event rows), not a sequence of objects.
fn is_rows(events: &Bound<'_, PyAny>) -> bool {
    let py = events.py();
    events.getattr(intern!(py, "dtype")).and_then(|d| d.getattr(intern!(py, "names"))).is_ok_and(|n| !n.is_none())
}

/// A batch's event columns as contiguous arrays of one length; `msg` where asked for (`push_batch`).
struct Columns<'py> {
    kinds: PyReadonlyArray1<'py, i8>,
    sides: PyReadonlyArray1<'py, i8>,
    flags: PyReadonlyArray1<'py, i64>,
    ts: PyReadonlyArray1<'py, i64>,
    seq: PyReadonlyArray1<'py, i64>,
    prices: PyReadonlyArray1<'py, i64>,
    sizes: PyReadonlyArray1<'py, i64>,
    msgs: Option<PyReadonlyArray1<'py, i64>>,
}

impl<'py> Columns<'py> {
    fn of(events: &Bound<'py, PyAny>, with_msg: bool) -> PyResult<Self> {
        let c = Columns {
            kinds: column::<i8>(events, "kind", "int8")?,
            sides: column::<i8>(events, "side", "int8")?,
            flags: column::<i64>(events, "flags", "int64")?,
            ts: column::<i64>(events, "ts", "int64")?,
            seq: column::<i64>(events, "seq", "int64")?,
            prices: column::<i64>(events, "price", "int64")?,
            sizes: column::<i64>(events, "size", "int64")?,
            msgs: if with_msg { Some(column::<i64>(events, "msg", "int64")?) } else { None },
        };
        let n = c.kinds.len();
        for (name, len) in [
            ("side", c.sides.len()),
            ("flags", c.flags.len()),
            ("ts", c.ts.len()),
            ("seq", c.seq.len()),
            ("price", c.prices.len()),
            ("size", c.sizes.len()),
            ("msg", c.msgs.as_ref().map_or(n, |m| m.len())),
        ] {
            if len != n {
                return Err(value_error(format!("column {name} has {len} rows, kind has {n}")));
            }
        }
        Ok(c)
    }

    fn len(&self) -> usize {
        self.kinds.len()
    }

    /// The columns borrowed as slices (each of `len()` rows).
    fn slices(&self) -> PyResult<Slices<'_>> {
        Ok(Slices {
            kinds: self.kinds.as_slice()?,
            sides: self.sides.as_slice()?,
            flags: self.flags.as_slice()?,
            ts: self.ts.as_slice()?,
            seq: self.seq.as_slice()?,
            prices: self.prices.as_slice()?,
            sizes: self.sizes.as_slice()?,
        })
    }
}

/// `Columns` as slices: what the work without the GIL reads.
struct Slices<'a> {
    kinds: &'a [i8],
    sides: &'a [i8],
    flags: &'a [i64],
    ts: &'a [i64],
    seq: &'a [i64],
    prices: &'a [i64],
    sizes: &'a [i64],
}

impl Slices<'_> {
    fn event(&self, i: usize) -> Event {
        Event {
            kind: self.kinds[i],
            side: self.sides[i],
            flags: self.flags[i],
            ts: self.ts[i],
            seq: self.seq[i],
            price: self.prices[i],
            size: self.sizes[i],
        }
    }
}

fn array<'py, T: Element>(py: Python<'py>, v: Vec<T>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, v).reshape(shape)?.into_any())
}

/// The reference's `stack()` columns (plus `msg`) from a Stack; `single`: one window's fields,
/// without the leading axis, as `Window`'s constructor takes them.
fn stack_dict<'py>(
    py: Python<'py>,
    s: Stack,
    cfg: &WindowConfig,
    n_features: usize,
    meta: (&str, &str),
    offsets: Vec<Py<PyAny>>,
    single: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let b = s.n;
    let (n, t, m) = (cfg.n_events, cfg.n_rows, cfg.max_news);
    let shape = |dims: &[usize]| -> Vec<usize> {
        if single {
            dims.to_vec()
        } else {
            [&[b][..], dims].concat()
        }
    };
    let d = PyDict::new(py);
    d.set_item("kind", array(py, s.kind, &shape(&[n]))?)?;
    d.set_item("side", array(py, s.side, &shape(&[n]))?)?;
    d.set_item("price", array(py, s.price, &shape(&[n]))?)?;
    d.set_item("size", array(py, s.size, &shape(&[n]))?)?;
    d.set_item("dt", array(py, s.dt, &shape(&[n]))?)?;
    d.set_item("event_ts", array(py, s.event_ts, &shape(&[n]))?)?;
    d.set_item("mask", array(py, s.mask, &shape(&[n]))?)?;
    d.set_item("features", array(py, s.features, &shape(&[t, n_features]))?)?;
    d.set_item("row_mask", array(py, s.row_mask, &shape(&[t]))?)?;
    d.set_item("volume_record", array(py, s.volume_record, &shape(&[VOLUME_HORIZONS.len(), LEVELS.len()]))?)?;
    d.set_item("news_ts", array(py, s.news_ts, &shape(&[m]))?)?;
    let texts: Vec<Py<PyAny>> = s.news_text.into_iter().map(|h| h.into_py_any(py)).collect::<PyResult<_>>()?;
    d.set_item("news_text", array(py, texts, &shape(&[m]))?)?;
    d.set_item("news_mask", array(py, s.news_mask, &shape(&[m]))?)?;
    let (venue, symbol) = meta;
    if single {
        d.set_item("venue", venue)?;
        d.set_item("symbol", symbol)?;
        for (key, col) in [
            ("ts", &s.ts),
            ("seq", &s.seq),
            ("start_ts", &s.start_ts),
            ("n_seen", &s.n_seen),
            ("best_bid", &s.best_bid),
            ("best_ask", &s.best_ask),
        ] {
            d.set_item(key, col[0])?;
        }
        d.set_item("offset", offsets.into_iter().next().unwrap_or_else(|| py.None()))?;
        return Ok(d);
    }
    for (key, col) in [
        ("ts", s.ts),
        ("seq", s.seq),
        ("start_ts", s.start_ts),
        ("n_seen", s.n_seen),
        ("best_bid", s.best_bid),
        ("best_ask", s.best_ask),
        ("msg", s.msg),
    ] {
        d.set_item(key, PyArray1::from_vec(py, col))?;
    }
    let objects = |v: Vec<Py<PyAny>>| PyArray1::from_vec(py, v);
    let repeat = |x: &str| -> PyResult<Vec<Py<PyAny>>> {
        let obj = x.into_py_any(py)?;
        Ok((0..b).map(|_| obj.clone_ref(py)).collect())
    };
    d.set_item("venue", objects(repeat(venue)?))?;
    d.set_item("symbol", objects(repeat(symbol)?))?;
    d.set_item("offset", objects(offsets))?;
    Ok(d)
}

/// A batch column as a contiguous array of `dtype` (a dict's value or a structured array's field).
fn column<'py, T: Element>(events: &Bound<'py, PyAny>, name: &str, dtype: &str) -> PyResult<PyReadonlyArray1<'py, T>> {
    let py = events.py();
    let np = NUMPY.get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind()))?.bind(py);
    let col = events.get_item(name).map_err(|_| {
        value_error(format!("the batch has no {name:?} column (kind, side, flags, ts, seq, price, size, msg)"))
    })?;
    let arr = np.call_method1(intern!(py, "ascontiguousarray"), (col, dtype))?;
    Ok(arr.cast_into::<PyArray1<T>>()?.readonly())
}

/// The native book a batch is applied to.
enum BookMut<'a> {
    L2(&'a mut L2),
    L3(&'a mut L3),
}

impl PyWindowBuilder {
    fn window_from(&self, py: Python<'_>, stack: Stack) -> PyResult<Py<PyAny>> {
        let f = self.core.n_features();
        let offsets = vec![self.offset.clone_ref(py)];
        let kw = stack_dict(py, stack, &self.core.config, f, (&self.venue, &self.symbol), offsets, true)?;
        let cls = WINDOW.import(py, "orderbook.windows", "Window")?;
        Ok(cls.call((), Some(&kw))?.unbind())
    }

    /// The Python book's best levels, and its top levels when the features will read them.
    fn read_py_book(&mut self, book: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = book.py();
        let v = &mut self.view;
        v.best_bid = book.call_method0(intern!(py, "best_bid"))?.extract()?;
        v.best_ask = book.call_method0(intern!(py, "best_ask"))?.extract()?;
        let keeps_states = self.core.states.is_some();
        if keeps_states || self.core.features.touches(&self.events) {
            // a kept state sums the best levels after every message: read them every time then
            let n = if keeps_states {
                self.core.features.n_top().max(STATE_DEPTH_LEVELS)
            } else {
                self.core.features.n_top()
            };
            let (bids, asks): (Vec<Lvl>, Vec<Lvl>) = book.call_method1(intern!(py, "top"), (n,))?.extract()?;
            v.bids = bids;
            v.asks = asks;
        }
        Ok(())
    }
}

#[pymethods]
impl PyWindowBuilder {
    #[new]
    #[pyo3(signature = (config = None, features = None, venue = "", symbol = "", *, tick = 1, ofi_levels = 10,
                        depth_at = vec![1, 5, 10], window_ns = 1_000_000_000, ofi_halflife_ns = 1_000_000_000,
                        memory_levels = MEMORY_LEVELS, memory_halflives = MEMORY_HALFLIVES.to_vec()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        config: Option<&Bound<'_, PyAny>>,
        features: Option<&Bound<'_, PyAny>>,
        venue: &str,
        symbol: &str,
        tick: i64,
        ofi_levels: usize,
        depth_at: Vec<usize>,
        window_ns: i64,
        ofi_halflife_ns: i64,
        memory_levels: usize,
        memory_halflives: Vec<i64>,
    ) -> PyResult<Self> {
        let cfg = read_config(config)?;
        let features = features.filter(|f| !f.is_none());
        let mut params = match features {
            // the reference keeps ln 2 / half-life, not the half-life: take the rates as they are
            Some(fs) => FeatureParams::with_rate(
                fs.getattr("tick")?.extract()?,
                fs.getattr("ofi")?.getattr("levels")?.extract()?,
                fs.getattr("depth_at")?.extract()?,
                fs.getattr("window_ns")?.extract()?,
                fs.getattr("_decay_rate")?.extract()?,
            ),
            None => FeatureParams::new(tick, ofi_levels, depth_at, window_ns, ofi_halflife_ns),
        }
        .map_err(value_error)?;
        let (memory_levels, memory_halflives, rates) = match features {
            Some(fs) => (
                fs.getattr("memory_levels")?.extract()?,
                fs.getattr("memory_halflives")?.extract()?,
                fs.getattr("_memory_rate")?.extract()?,
            ),
            None => {
                let rates = memory_rates(&memory_halflives);
                (memory_levels, memory_halflives, rates)
            }
        };
        params.set_memory(memory_levels, memory_halflives, rates).map_err(value_error)?;
        params.neumaier = py.version_info() >= (3, 12);
        Ok(PyWindowBuilder {
            core: WindowBuilder::new(cfg, params),
            venue: venue.into(),
            symbol: symbol.into(),
            offset: py.None(),
            events: Vec::new(),
            view: TopView::default(),
        })
    }

    /// The `orderbook.windows.WindowConfig` the windows are shaped by.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = &self.core.config;
        let kw = PyDict::new(py);
        kw.set_item("n_events", c.n_events)?;
        kw.set_item("n_rows", c.n_rows)?;
        kw.set_item("max_news", c.max_news)?;
        kw.set_item("price_clip", c.price_clip)?;
        kw.set_item("every_events", c.every_events)?;
        kw.set_item("every_ns", c.every_ns)?;
        WINDOW_CONFIG.import(py, "orderbook.windows", "WindowConfig")?.call((), Some(&kw))
    }

    #[getter]
    fn tick(&self) -> i64 {
        self.core.features.p.tick
    }

    /// The feature columns, as `FeatureState.names`.
    #[getter]
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let p = &self.core.features.p;
        PyTuple::new(py, feature_names(p.ofi_levels, &p.depth_at, p.memory_levels, &p.memory_halflives))
    }

    /// Tokens seen so far (a window's `n_seen`).
    #[getter]
    fn n_seen(&self) -> u64 {
        self.core.count
    }

    /// The time of the last event pushed, token or not (a window cut now would have this `ts`; 0 before any).
    #[getter]
    fn last_ts(&self) -> i64 {
        self.core.last_ts.unwrap_or(0)
    }

    /// The venue sequence number of the last event pushed (a window cut now would have this `seq`).
    #[getter]
    fn last_seq(&self) -> i64 {
        self.core.last_seq
    }

    /// Join a headline (event-time ns) to this symbol's windows; idempotent.
    fn add_news(&mut self, ts: i64, headline: String) {
        self.core.add_news(ts, headline);
    }

    /// Add one message (its events already applied to `book`): Event-like objects, or its rows of a
    /// native batch (a structured array with the columns of `push_batch`, read without a Python object
    /// per event); the `orderbook.windows.Window` when one is due, else None.
    #[pyo3(signature = (book, events, offset = None))]
    fn push(
        &mut self,
        py: Python<'_>,
        book: &Bound<'_, PyAny>,
        events: &Bound<'_, PyAny>,
        offset: Option<Py<PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.events.clear();
        if is_rows(events) {
            let c = Columns::of(events, false)?;
            let rows = c.slices()?;
            self.events.extend((0..c.len()).map(|i| rows.event(i)));
        } else {
            for e in events.try_iter()? {
                self.events.push(read_event(&e?)?);
            }
        }
        if self.events.is_empty() {
            return Ok(None);
        }
        if self.venue.is_empty() {
            self.venue = book.getattr(intern!(py, "venue"))?.extract()?;
            self.symbol = book.getattr(intern!(py, "symbol"))?.extract()?;
        }
        let due = if let Ok(b) = book.cast::<PyL2>() {
            self.core.push(&b.borrow().book, &self.events)
        } else if let Ok(b) = book.cast::<PyL3>() {
            self.core.push(&b.borrow().book, &self.events)
        } else {
            self.read_py_book(book)?;
            self.core.push(&self.view, &self.events)
        };
        self.offset = offset.unwrap_or_else(|| py.None());
        let_go_of_large(&mut self.events);
        if !due {
            return Ok(None);
        }
        let mut stack = Stack::default();
        self.core.emit(&mut stack, 0);
        self.window_from(py, stack).map(Some)
    }

    /// Keep the book as it stands after every message pushed from now on (what the training data reads its
    /// targets from: model/training/dataset.py), until `take_states` takes them. Not part of a snapshot.
    fn keep_states(&mut self) {
        self.core.states.get_or_insert_with(BookStates::default);
    }

    /// The book states kept since `keep_states` or the last call, one entry per message pushed, in order, and
    /// emptied: a dict of arrays `spread` (ticks) and `mid2` float64 (NaN where a side is empty), `depth`
    /// float64 (the best 5 levels' sizes of both sides), `traded` int64 (the message's lots traded), `emitted`
    /// bool (the message completed a window). None where no states are kept.
    fn take_states<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(states) = self.core.states.as_mut() else { return Ok(None) };
        let BookStates { spread, mid2, depth, traded, emitted, .. } = std::mem::take(states);
        let out = PyDict::new(py);
        out.set_item("spread", PyArray1::from_vec(py, spread))?;
        out.set_item("mid2", PyArray1::from_vec(py, mid2))?;
        out.set_item("depth", PyArray1::from_vec(py, depth))?;
        out.set_item("traded", PyArray1::from_vec(py, traded))?;
        out.set_item("emitted", PyArray1::from_vec(py, emitted))?;
        Ok(Some(out))
    }

    /// The window as it stands now (also what `push` emits).
    fn window(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut stack = Stack::default();
        self.core.emit(&mut stack, 0);
        self.window_from(py, stack)
    }

    /// Many messages at once. `events`: columns kind, side, flags, ts, seq, price, size and msg
    /// (the message index; equal values in a run are one message, non-decreasing), plus
    /// order_id and new_order_id for an L3 book: a dict of arrays or a structured array (the
    /// native feeds' EVENT_ROW batches). `book`: a native `L2Book` / `L3Book` in the state before
    /// these events; each message's events are applied to it, then folded into the rings, as
    /// `push(book, events)` would. `offsets`: optional, indexed by message (a window's `offset`).
    /// Returns the completed windows as `orderbook.windows.stack` gives them (leading axis =
    /// window, possibly 0 long) plus `msg`, the message that completed each. An event the book
    /// refuses raises the book's error (BookError, UnknownOrder, ...) naming it, its `index` the
    /// event's; the book keeps the events before it, the rings the messages before its message.
    #[pyo3(signature = (events, book, offsets = None))]
    fn push_batch<'py>(
        &mut self,
        py: Python<'py>,
        events: &Bound<'py, PyAny>,
        book: &Bound<'py, PyAny>,
        offsets: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        if self.venue.is_empty() {
            // before the book is borrowed mutably: its getters borrow it too
            self.venue = book.getattr(intern!(py, "venue"))?.extract()?;
            self.symbol = book.getattr(intern!(py, "symbol"))?.extract()?;
        }
        let (mut l2, mut l3) =
            (book.cast::<PyL2>().ok().map(|b| b.borrow_mut()), book.cast::<PyL3>().ok().map(|b| b.borrow_mut()));
        let mut native = match (&mut l2, &mut l3) {
            (Some(b), _) => BookMut::L2(&mut b.book),
            (_, Some(b)) => BookMut::L3(&mut b.book),
            _ => return Err(value_error("push_batch applies the events to a native L2Book or L3Book")),
        };
        let c = Columns::of(events, true)?;
        let n = c.len();
        let ids = match native {
            BookMut::L3(_) => {
                let (a, b) =
                    (column::<u64>(events, "order_id", "uint64")?, column::<u64>(events, "new_order_id", "uint64")?);
                if a.len() != n || b.len() != n {
                    return Err(value_error("order_id and new_order_id must have a row per event"));
                }
                Some((a, b))
            }
            BookMut::L2(_) => None,
        };
        let rows = c.slices()?;
        let msgs = c.msgs.as_ref().expect("asked for").as_slice()?;
        if msgs.windows(2).any(|w| w[1] < w[0]) {
            return Err(value_error("msg must be non-decreasing"));
        }
        let ids = match &ids {
            Some((a, b)) => Some((a.as_slice()?, b.as_slice()?)),
            None => None,
        };
        let event = |i: usize| rows.event(i);
        let core = &mut self.core;
        let scratch = &mut self.events;
        // the work, without the GIL: per message, apply its events to the book, then fold it in
        let result = py.detach(|| {
            let mut out = Stack::default();
            let mut start = 0;
            while start < n {
                let m = msgs[start];
                let mut end = start;
                scratch.clear();
                while end < n && msgs[end] == m {
                    let e = event(end);
                    let applied = match &mut native {
                        BookMut::L2(b) => b.apply(e.kind, e.side, e.price, e.size),
                        BookMut::L3(b) => {
                            let (oid, nid) = ids.map_or((0, 0), |(a, b)| (a[end], b[end]));
                            b.apply(e.kind, oid, e.side, e.price, e.size, nid)
                        }
                    };
                    applied.map_err(|f| (end, f))?;
                    scratch.push(e);
                    end += 1;
                }
                let due = match &native {
                    BookMut::L2(b) => core.push(&**b, scratch),
                    BookMut::L3(b) => core.push(&**b, scratch),
                };
                if due {
                    core.emit(&mut out, m);
                }
                start = end;
            }
            Ok::<_, (usize, Fault)>(out)
        });
        let_go_of_large(&mut self.events);
        let stack = result.map_err(|(at, fault)| {
            // the book's own error (BookError, UnknownOrder, ...), as the native books raise it, with
            // where in the batch; the caller learns which events were applied: those before `index`
            let where_ = format!(
                "{} (event {at} of the batch, {} of message {})",
                fault.text,
                kind::name(rows.kinds[at]),
                msgs[at]
            );
            let err = py_error(py, &Fault::new(fault.reason, where_), &self.venue, &self.symbol, Some(rows.seq[at]));
            let _ = err.value(py).setattr("index", at);
            err
        })?;
        let offset_of = |m: i64| -> PyResult<Py<PyAny>> {
            match offsets {
                Some(o) => Ok(o.get_item(m)?.unbind()),
                None => Ok(py.None()),
            }
        };
        if let Some(&last) = msgs.last() {
            self.offset = offset_of(last)?;
        }
        let window_offsets = stack.msg.iter().map(|&m| offset_of(m)).collect::<PyResult<Vec<_>>>()?;
        let f = self.core.n_features();
        stack_dict(py, stack, &self.core.config, f, (&self.venue, &self.symbol), window_offsets, false)
    }

    /// The whole state as plain values (see `__setstate__`).
    fn __getstate__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", STATE_VERSION)?;
        d.set_item("venue", &self.venue)?;
        d.set_item("symbol", &self.symbol)?;
        d.set_item("offset", &self.offset)?;
        let news = PyList::empty(py);
        for (ts, h) in &self.core.news {
            news.append((ts, h))?;
        }
        d.set_item("news", news)?;
        d.set_item("core", pyo3::types::PyBytes::new(py, &state::encode(&self.core)))?;
        Ok(d)
    }

    fn __setstate__(&mut self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
            state.get_item(k)?.ok_or_else(|| value_error(format!("builder state without {k:?}")))
        };
        let version: u32 = get("version")?.extract()?;
        if !READ_VERSIONS.contains(&version) {
            return Err(value_error(format!(
                "builder state version {version}, this build reads 2 and {STATE_VERSION}"
            )));
        }
        let blob: Vec<u8> = get("core")?.extract()?;
        let mut core = state::decode(&blob, version).map_err(|e| value_error(format!("builder state: {e}")))?;
        core.news = get("news")?.extract()?;
        // the reference re-sums with the builtin sum() of the interpreter it runs in, not the one that saved it
        core.features.p.neumaier = py.version_info() >= (3, 12);
        self.core = core;
        self.venue = get("venue")?.extract()?;
        self.symbol = get("symbol")?.extract()?;
        self.offset = get("offset")?.unbind();
        Ok(())
    }

    /// pickle / copy: a default builder, then its state.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let state = slf.borrow().__getstate__(py)?;
        PyTuple::new(py, [slf.get_type().into_any(), PyTuple::empty(py).into_any(), state.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "WindowBuilder({}:{} tick={} n_seen={} rows={})",
            self.venue, self.symbol, self.core.features.p.tick, self.core.count, self.core.row_count
        )
    }
}

/// 3: the volume record after the builder's own fields.
const STATE_VERSION: u32 = 3;
/// 2 predates the volume record: an empty one, the book serving the head alone till 10 are known, as a new book.
const READ_VERSIONS: [u32; 2] = [2, STATE_VERSION];

/// The builder's state (news aside) as bytes: little-endian fixed-width fields in a fixed order,
/// the lengths of variable parts before them. Versioned by STATE_VERSION in the state dict.
mod state {
    use std::collections::VecDeque;

    use rustc_hash::FxHashMap;

    use crate::features::{FeatureParams, Lvl};
    use crate::volume_record::{Known, VolumeRecord};
    use crate::windows::{WindowBuilder, WindowConfig};

    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn u64(&mut self, x: u64) {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        fn i64(&mut self, x: i64) {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        fn i128(&mut self, x: i128) {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
        fn f64(&mut self, x: f64) {
            self.u64(x.to_bits());
        }
        fn bool(&mut self, x: bool) {
            self.0.push(x as u8);
        }
        fn opt<T: Copy>(&mut self, x: Option<T>, f: impl Fn(&mut Self, T)) {
            self.bool(x.is_some());
            if let Some(v) = x {
                f(self, v);
            }
        }
        fn seq<T: Copy>(&mut self, xs: impl ExactSizeIterator<Item = T>, f: impl Fn(&mut Self, T)) {
            self.u64(xs.len() as u64);
            for x in xs {
                f(self, x);
            }
        }
        fn lvls(&mut self, xs: &[Lvl]) {
            self.seq(xs.iter().copied(), |w, (p, q)| {
                w.i64(p);
                w.i64(q);
            });
        }
        fn f32s(&mut self, xs: &[f32]) {
            self.seq(xs.iter().copied(), |w, x| w.0.extend_from_slice(&x.to_bits().to_le_bytes()));
        }
        fn i64s(&mut self, xs: impl ExactSizeIterator<Item = i64>) {
            self.seq(xs, W::i64);
        }
        fn f64s(&mut self, xs: &[f64]) {
            self.seq(xs.iter().copied(), W::f64);
        }
        /// messages, traded, then per horizon its pending (messages, traded) and its known volumes.
        fn volume(&mut self, v: &VolumeRecord) {
            self.u64(v.messages);
            self.i128(v.traded);
            for (pending, known) in v.pending.iter().zip(&v.known) {
                self.seq(pending.iter().copied(), |w, (m, t)| {
                    w.u64(m);
                    w.i128(t);
                });
                self.seq(known.values(), W::f64);
            }
        }
        /// In price order: equal states give equal bytes, whatever the map's history.
        fn sizes(&mut self, m: &FxHashMap<i64, i64>) {
            let mut items: Vec<(i64, i64)> = m.iter().map(|(&p, &q)| (p, q)).collect();
            items.sort_unstable();
            self.seq(items.into_iter(), |w, (p, q)| {
                w.i64(p);
                w.i64(q);
            });
        }
    }

    struct R<'a>(&'a [u8]);

    impl R<'_> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
            if self.0.len() < N {
                return Err("cut short".into());
            }
            let (head, rest) = self.0.split_at(N);
            self.0 = rest;
            Ok(head.try_into().expect("N bytes"))
        }
        fn u64(&mut self) -> Result<u64, String> {
            self.take().map(u64::from_le_bytes)
        }
        fn i64(&mut self) -> Result<i64, String> {
            self.take().map(i64::from_le_bytes)
        }
        fn i128(&mut self) -> Result<i128, String> {
            self.take().map(i128::from_le_bytes)
        }
        fn f64(&mut self) -> Result<f64, String> {
            self.u64().map(f64::from_bits)
        }
        fn usize(&mut self) -> Result<usize, String> {
            usize::try_from(self.u64()?).map_err(|e| e.to_string())
        }
        fn bool(&mut self) -> Result<bool, String> {
            Ok(self.take::<1>()?[0] != 0)
        }
        fn opt<T>(&mut self, f: impl Fn(&mut Self) -> Result<T, String>) -> Result<Option<T>, String> {
            if self.bool()? {
                f(self).map(Some)
            } else {
                Ok(None)
            }
        }
        fn seq<T>(&mut self, f: impl Fn(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
            let n = self.usize()?;
            if n > self.0.len() {
                return Err("a length past the end".into()); // every item is at least a byte
            }
            (0..n).map(|_| f(self)).collect()
        }
        fn volume(&mut self) -> Result<VolumeRecord, String> {
            let mut v = VolumeRecord { messages: self.u64()?, traded: self.i128()?, ..VolumeRecord::default() };
            for (pending, known) in v.pending.iter_mut().zip(&mut v.known) {
                *pending = VecDeque::from(self.seq(|r| Ok((r.u64()?, r.i128()?)))?);
                *known = Known::new(self.seq(R::f64)?)?;
            }
            v.check()?;
            Ok(v)
        }
        fn lvl(&mut self) -> Result<Lvl, String> {
            Ok((self.i64()?, self.i64()?))
        }
        fn f32(&mut self) -> Result<f32, String> {
            self.take().map(|b| f32::from_bits(u32::from_le_bytes(b)))
        }
        /// A vector that must have the length `n` (a ring of the configured size).
        fn exact<T>(
            &mut self,
            n: usize,
            what: &str,
            f: impl Fn(&mut Self) -> Result<T, String>,
        ) -> Result<Vec<T>, String> {
            let v = self.seq(f)?;
            if v.len() != n {
                return Err(format!("{what} has {} entries, the config says {n}", v.len()));
            }
            Ok(v)
        }
    }

    pub fn encode(b: &WindowBuilder) -> Vec<u8> {
        let mut w = W::default();
        let c = &b.config;
        for x in [c.n_events as u64, c.n_rows as u64, c.max_news as u64] {
            w.u64(x);
        }
        w.i64(c.price_clip);
        w.opt(c.every_events, W::i64);
        w.opt(c.every_ns, W::i64);
        let f = &b.features;
        let p = &f.p;
        w.i64(p.tick);
        w.u64(p.ofi_levels as u64);
        w.seq(p.depth_at.iter().map(|&k| k as u64), W::u64);
        w.i64(p.window_ns);
        w.f64(p.decay_rate);
        w.bool(p.neumaier);
        w.u64(p.memory_levels as u64);
        w.i64s(p.memory_halflives.iter().copied());
        w.f64s(&p.memory_rates);

        w.seq(b.kind.iter().map(|&x| x as i64), W::i64);
        w.seq(b.side.iter().map(|&x| x as i64), W::i64);
        w.seq(b.price.iter().map(|&x| x as i64), W::i64);
        w.i64s(b.size.iter().copied());
        w.i64s(b.dt.iter().copied());
        w.i64s(b.ts.iter().copied());
        w.u64(b.head as u64);
        w.u64(b.count);
        w.f32s(&b.rows);
        w.i64s(b.row_ts.iter().copied());
        w.u64(b.row_head as u64);
        w.u64(b.row_count);
        w.opt(b.mid2, W::i128);
        w.opt(b.ref2, W::i128);
        w.bool(b.in_snapshot);
        w.opt(b.last_ts, W::i64);
        w.opt(b.last_token_ts, W::i64);
        w.i64(b.last_seq);
        w.i64(b.since_emit);
        w.opt(b.emit_ts, W::i64);
        w.i64(b.best.0);
        w.i64(b.best.1);
        w.volume(&b.volume);

        w.bool(f.ofi.prev_bids.is_some());
        w.lvls(f.ofi.prev_bids.as_deref().unwrap_or(&[]));
        w.lvls(&f.ofi.prev_asks);
        w.opt(f.trades.last_price, W::i64);
        w.i64(f.trades.tick_sign);
        w.f64s(&f.ofi_sum);
        w.f64s(&f.ofi_depth);
        for q in [&f.messages, &f.cancels, &f.trade_ts] {
            w.i64s(q.iter().copied());
        }
        w.seq(f.signed_volume.items.iter().copied(), |w, (t, v)| {
            w.i64(t);
            w.i128(v);
        });
        w.i128(f.signed_volume.total);
        w.seq(f.sq_returns.items.iter().copied(), |w, (t, v)| {
            w.i64(t);
            w.f64(v);
        });
        w.f64(f.sq_returns.total);
        w.sizes(&f.levels.bid_sizes);
        w.sizes(&f.levels.ask_sizes);
        let mut credit: Vec<(i8, i64, i64)> = f.levels.credit.iter().map(|(&(s, p), &c)| (s, p, c)).collect();
        credit.sort_unstable();
        w.seq(credit.into_iter(), |w, (s, p, c)| {
            w.i64(s as i64);
            w.i64(p);
            w.i64(c);
        });
        w.bool(f.in_snapshot);
        w.opt(f.mid2, W::i128);
        w.opt(f.rv_mid, W::f64);
        w.i64(f.last_sign);
        w.opt(f.last_ts, W::i64);
        w.i64(f.now);
        w.opt(f.row_ts, W::i64);
        w.bool(f.cached_book_part.is_some());
        w.f64s(f.cached_book_part.as_deref().unwrap_or(&[]));
        w.i64(f.bid_floor);
        w.i64(f.ask_ceiling);
        w.f64s(&f.level_depth);
        w.i64s(f.e.iter().copied());
        w.bool(f.ofi_out.is_some());
        w.f64s(f.ofi_out.as_deref().unwrap_or(&[]));
        w.bool(f.memory.is_some());
        w.f64s(f.memory.as_deref().unwrap_or(&[]));
        w.f64(f.memory_depth);
        w.0
    }

    fn small<T: TryFrom<i64>>(x: i64, what: &str) -> Result<T, String> {
        T::try_from(x).map_err(|_| format!("{what} {x} out of range"))
    }

    /// `version`: STATE_VERSION, or 2 (no volume record: an empty one).
    pub fn decode(buf: &[u8], version: u32) -> Result<WindowBuilder, String> {
        let mut r = R(buf);
        let config = WindowConfig {
            n_events: r.usize()?,
            n_rows: r.usize()?,
            max_news: r.usize()?,
            price_clip: r.i64()?,
            every_events: r.opt(R::i64)?,
            every_ns: r.opt(R::i64)?,
        };
        config.check()?;
        let tick = r.i64()?;
        let ofi_levels = r.usize()?;
        let depth_at = r.seq(R::usize)?;
        let window_ns = r.i64()?;
        let decay_rate = r.f64()?;
        let mut params = FeatureParams::with_rate(tick, ofi_levels, depth_at, window_ns, decay_rate)?;
        params.neumaier = r.bool()?;
        let memory_levels = r.usize()?;
        let memory_halflives = r.seq(R::i64)?;
        let rates = r.seq(R::f64)?;
        params.set_memory(memory_levels, memory_halflives, rates)?;
        let mut b = WindowBuilder::new(config, params);
        let (n, t, nf) = (b.config.n_events, b.config.n_rows, b.n_features());

        b.kind = r.exact(n, "kind", |r| small(r.i64()?, "kind"))?;
        b.side = r.exact(n, "side", |r| small(r.i64()?, "side"))?;
        b.price = r.exact(n, "price", |r| small(r.i64()?, "price"))?;
        b.size = r.exact(n, "size", R::i64)?;
        b.dt = r.exact(n, "dt", R::i64)?;
        b.ts = r.exact(n, "ts", R::i64)?;
        b.head = r.usize()?;
        b.count = r.u64()?;
        b.rows = r.exact(t * nf, "rows", R::f32)?;
        b.row_ts = r.exact(t, "row_ts", R::i64)?;
        b.row_head = r.usize()?;
        b.row_count = r.u64()?;
        if b.head >= n || b.row_head >= t {
            return Err("a ring head past its ring".into());
        }
        b.mid2 = r.opt(R::i128)?;
        b.ref2 = r.opt(R::i128)?;
        b.in_snapshot = r.bool()?;
        b.last_ts = r.opt(R::i64)?;
        b.last_token_ts = r.opt(R::i64)?;
        b.last_seq = r.i64()?;
        b.since_emit = r.i64()?;
        b.emit_ts = r.opt(R::i64)?;
        b.best = (r.i64()?, r.i64()?);
        if version >= 3 {
            b.volume = r.volume()?;
        }

        let f = &mut b.features;
        let levels = f.p.ofi_levels;
        let has_prev = r.bool()?;
        let prev_bids = r.seq(R::lvl)?;
        f.ofi.prev_bids = has_prev.then_some(prev_bids);
        f.ofi.prev_asks = r.seq(R::lvl)?;
        f.trades.last_price = r.opt(R::i64)?;
        f.trades.tick_sign = r.i64()?;
        f.ofi_sum = r.exact(levels, "ofi_sum", R::f64)?;
        f.ofi_depth = r.exact(levels, "ofi_depth", R::f64)?;
        f.messages = VecDeque::from(r.seq(R::i64)?);
        f.cancels = VecDeque::from(r.seq(R::i64)?);
        f.trade_ts = VecDeque::from(r.seq(R::i64)?);
        f.signed_volume.items = VecDeque::from(r.seq(|r| Ok((r.i64()?, r.i128()?)))?);
        f.signed_volume.total = r.i128()?;
        f.sq_returns.items = VecDeque::from(r.seq(|r| Ok((r.i64()?, r.f64()?)))?);
        f.sq_returns.total = r.f64()?;
        f.levels.bid_sizes = r.seq(R::lvl)?.into_iter().collect();
        f.levels.ask_sizes = r.seq(R::lvl)?.into_iter().collect();
        f.levels.credit = r.seq(|r| Ok(((small(r.i64()?, "side")?, r.i64()?), r.i64()?)))?.into_iter().collect();
        f.in_snapshot = r.bool()?;
        f.mid2 = r.opt(R::i128)?;
        f.rv_mid = r.opt(R::f64)?;
        f.last_sign = r.i64()?;
        f.last_ts = r.opt(R::i64)?;
        f.now = r.i64()?;
        f.row_ts = r.opt(R::i64)?;
        let has_cache = r.bool()?;
        let cache = r.seq(R::f64)?;
        f.cached_book_part = has_cache.then_some(cache);
        f.bid_floor = r.i64()?;
        f.ask_ceiling = r.i64()?;
        f.level_depth = r.exact(levels, "level_depth", R::f64)?;
        f.e = r.exact(levels, "e", R::i64)?;
        let has_out = r.bool()?;
        let out = r.seq(R::f64)?;
        f.ofi_out = has_out.then_some(out);
        let has_memory = r.bool()?;
        let memory = r.exact(f.p.memory_rates.len(), "memory", R::f64)?;
        f.memory = has_memory.then_some(memory);
        f.memory_depth = r.f64()?;
        if f.cached_book_part.as_ref().is_some_and(|c| c.len() != 5 + 2 * f.p.depth_at.len()) {
            return Err("cached book columns of another length than depth_at gives".into());
        }
        if f.ofi_out.as_ref().is_some_and(|o| o.len() != levels) {
            return Err("OFI columns of another length than ofi_levels".into());
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes past the end", r.0.len()));
        }
        Ok(b)
    }
}
