//! What a feed batch gives back: the events it applied and the messages it refused, as
//! columns (numpy arrays once handed to Python), and the symbol table the columns index.

use std::sync::Mutex;

use numpy::ndarray::ArrayView1;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use rustc_hash::FxHashMap;

use crate::errors::{Fault, Reason};

/// No symbol / no book.
pub const NONE: u32 = u32::MAX;

/// Symbols by id: ids are handed out once and never change, so an event's `symbol` column
/// stays valid after a later message renames a book (ITCH placeholders).
#[derive(Default)]
pub struct Names {
    list: Vec<String>,
    ids: FxHashMap<String, u32>,
}

impl Names {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        if id == NONE {
            ""
        } else {
            &self.list[id as usize]
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// A table from its names by id (a state's): refused where a name repeats, since two ids
    /// for one name would split its events between them.
    pub fn from_list(list: Vec<String>) -> Result<Names, String> {
        let mut names = Names::default();
        for name in list {
            let before = names.len();
            names.intern(&name);
            if names.len() == before {
                return Err(format!("symbol {name:?} is in the symbol table twice"));
            }
        }
        Ok(names)
    }

    pub fn from(&self, start: usize) -> Vec<String> {
        self.list.get(start..).map(<[String]>::to_vec).unwrap_or_default()
    }
}

/// One event, the fields of `orderbook.events.Event` (venue aside, symbol by id).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ev {
    pub kind: i8,
    pub side: i8,
    pub flags: i16,
    pub ts: i64,
    pub seq: i64,
    pub price: i64,
    pub size: i64,
    pub order_id: u64,
    pub new_order_id: u64,
    pub recv_ts: i64,
    pub symbol: u32,
}

/// Bytes per event row: the layout of `orderbook.native.EVENT_ROW` (native byte order).
pub const ROW_BYTES: usize = 72;

/// Events as flat rows (hftbacktest's event record, in numpy a structured array for free):
/// one push per event instead of one per column, and one allocation per batch (a recycled
/// one where a large batch's rows have been let go: see `ROW_POOL`).
#[derive(Default)]
pub struct Events {
    rows: Vec<u8>,
}

// ------------------------------------------------------------------------- recycled row buffers

/// Row buffers of at least this many bytes are recycled; smaller ones go back to the allocator,
/// which keeps and reuses them well.
const POOL_MIN_BYTES: usize = 1 << 20;
/// At most this many buffers, and this many bytes, are kept for reuse (the largest kept first).
const POOL_MAX_BUFFERS: usize = 4;
const POOL_MAX_BYTES: usize = 128 << 20;

/// Row buffers of batches that Python has let go of, kept (emptied, their pages still mapped)
/// for the next large batch. A fresh large allocation is memory the kernel must fault in and zero
/// page by page as the rows are written: that cost a third of a whole-buffer ITCH call (a buffer
/// of 500k messages gives ~35 MB of rows, above what glibc keeps in its heap, so every call got
/// new pages). A buffer comes back here only from `RowBuffer::drop`, i.e. once no numpy array
/// views it any more, so a batch's arrays never change after they are returned.
static ROW_POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A recycled buffer of at least `bytes` capacity (the smallest that fits), else a new one.
fn take_rows(bytes: usize) -> Vec<u8> {
    if bytes >= POOL_MIN_BYTES {
        let mut pool = ROW_POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fit = pool.iter().enumerate().filter(|(_, b)| b.capacity() >= bytes).min_by_key(|(_, b)| b.capacity());
        if let Some((i, _)) = fit {
            return pool.swap_remove(i);
        }
    }
    Vec::with_capacity(bytes)
}

/// Keep a let-go buffer for reuse (emptied), unless it is small or the pool is full.
fn give_rows(mut rows: Vec<u8>) {
    if rows.capacity() < POOL_MIN_BYTES || rows.capacity() > POOL_MAX_BYTES {
        return;
    }
    rows.clear();
    let mut pool = ROW_POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    pool.push(rows);
    pool.sort_unstable_by_key(|b| std::cmp::Reverse(b.capacity()));
    let mut kept = 0;
    let keep = pool.iter().take_while(|b| {
        kept += b.capacity();
        kept <= POOL_MAX_BYTES
    });
    let keep = keep.count().min(POOL_MAX_BUFFERS);
    pool.truncate(keep); // the smallest go back to the allocator
}

/// Buffers in the pool and their bytes; with `release`, they go back to the allocator then.
pub fn pool_stats(release: bool) -> (usize, usize) {
    let mut pool = ROW_POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stats = (pool.len(), pool.iter().map(Vec::capacity).sum());
    if release {
        *pool = Vec::new();
    }
    stats
}

/// The owner of a batch's event rows, the numpy array's base object: the rows go back to
/// `ROW_POOL` when the last array viewing them is gone.
#[pyclass(module = "orderbook.native._core", frozen)]
pub struct RowBuffer {
    rows: Vec<u8>,
}

impl Drop for RowBuffer {
    fn drop(&mut self) {
        give_rows(std::mem::take(&mut self.rows));
    }
}

fn id_column(id: u32) -> i32 {
    if id == NONE {
        -1
    } else {
        id as i32
    }
}

impl Events {
    pub fn with_capacity(n: usize) -> Self {
        Events { rows: take_rows(n * ROW_BYTES) }
    }

    pub fn len(&self) -> usize {
        self.rows.len() / ROW_BYTES
    }

    /// Append one event; `msg` is the index (in the batch) of the message that produced it.
    #[inline]
    pub fn push(&mut self, e: &Ev, msg: usize) {
        let mut row = [0u8; ROW_BYTES];
        row[0] = e.kind as u8;
        row[1] = e.side as u8;
        row[2..4].copy_from_slice(&e.flags.to_ne_bytes());
        row[4..8].copy_from_slice(&id_column(e.symbol).to_ne_bytes());
        row[8..16].copy_from_slice(&e.ts.to_ne_bytes());
        row[16..24].copy_from_slice(&e.seq.to_ne_bytes());
        row[24..32].copy_from_slice(&e.price.to_ne_bytes());
        row[32..40].copy_from_slice(&e.size.to_ne_bytes());
        row[40..48].copy_from_slice(&e.order_id.to_ne_bytes());
        row[48..56].copy_from_slice(&e.new_order_id.to_ne_bytes());
        row[56..64].copy_from_slice(&e.recv_ts.to_ne_bytes());
        row[64..68].copy_from_slice(&(msg as i32).to_ne_bytes());
        self.rows.extend_from_slice(&row);
    }

    /// Event `i` back as pushed, with its message's index (the fuzz targets read them; Python
    /// views the rows as they are).
    pub fn get(&self, i: usize) -> (Ev, usize) {
        let row = &self.rows[i * ROW_BYTES..(i + 1) * ROW_BYTES];
        let i64_at = |a: usize| i64::from_ne_bytes(row[a..a + 8].try_into().expect("8 bytes"));
        let symbol = i32::from_ne_bytes(row[4..8].try_into().expect("4 bytes"));
        let e = Ev {
            kind: row[0] as i8,
            side: row[1] as i8,
            flags: i16::from_ne_bytes([row[2], row[3]]),
            symbol: if symbol < 0 { NONE } else { symbol as u32 },
            ts: i64_at(8),
            seq: i64_at(16),
            price: i64_at(24),
            size: i64_at(32),
            order_id: i64_at(40) as u64,
            new_order_id: i64_at(48) as u64,
            recv_ts: i64_at(56),
        };
        (e, i32::from_ne_bytes(row[64..68].try_into().expect("4 bytes")) as usize)
    }

    /// Drop the events from `len` on (a message refused after some of its events were staged).
    pub fn truncate(&mut self, len: usize) {
        self.rows.truncate(len * ROW_BYTES);
    }

    /// The rows as a uint8 array (its own memory, until it is let go); the Python face views it
    /// as `EVENT_ROW`.
    pub fn into_py(mut self, py: Python<'_>) -> PyResult<Bound<'_, PyArray1<u8>>> {
        if self.rows.capacity() < POOL_MIN_BYTES {
            return Ok(PyArray1::from_vec(py, self.rows));
        }
        // the Vec's heap block does not move with the Vec: the pointer stays valid inside
        // RowBuffer, which never touches the rows again but to hand them back to the pool
        let (ptr, len) = (self.rows.as_mut_ptr(), self.rows.len());
        let owner = Bound::new(py, RowBuffer { rows: self.rows })?;
        // SAFETY: `ptr` is `len` initialised bytes owned by `owner`, which becomes the array's
        // base and so outlives it (as numpy's own `from_vec` does with its container); nothing
        // else reads or writes them until `owner` is dropped.
        unsafe {
            let view = ArrayView1::from_shape_ptr(len, ptr.cast_const());
            Ok(PyArray1::borrow_from_array(&view, owner.into_any()))
        }
    }
}

/// A refused message: the FeedError the reference would raise, and where.
#[derive(Debug)]
pub struct Refusal {
    pub fault: Fault,
    pub symbol: u32,
    pub seq: Option<i64>,
    pub ts: i64,
    /// SequenceGap's expected and got
    pub gap: (i64, i64),
}

impl Refusal {
    pub fn new(reason: Reason, text: impl Into<String>, symbol: u32, seq: Option<i64>) -> Self {
        Refusal { fault: Fault::new(reason, text), symbol, seq, ts: 0, gap: (0, 0) }
    }

    pub fn of(fault: Fault, symbol: u32, seq: Option<i64>) -> Self {
        Refusal { fault, symbol, seq, ts: 0, gap: (0, 0) }
    }
}

/// Refused messages as columns (`seq` -1: none), their texts beside.
#[derive(Default)]
pub struct Rejects {
    msg: Vec<i32>,
    reason: Vec<u8>,
    symbol: Vec<i32>,
    seq: Vec<i64>,
    ts: Vec<i64>,
    expected: Vec<i64>,
    got: Vec<i64>,
    text: Vec<String>,
}

impl Rejects {
    pub fn len(&self) -> usize {
        self.msg.len()
    }

    /// Refusal `i`'s (symbol, ts, seq (0 for none)) where it is a crossed book's.
    pub fn crossed(&self, i: usize) -> Option<(u32, i64, i64)> {
        (self.reason.get(i) == Some(&(Reason::CrossedBook as u8)))
            .then(|| (u32::try_from(self.symbol[i]).unwrap_or(NONE), self.ts[i], self.seq[i].max(0)))
    }

    pub fn push(&mut self, r: Refusal, msg: usize) {
        self.msg.push(msg as i32);
        self.reason.push(r.fault.reason as u8);
        self.symbol.push(id_column(r.symbol));
        self.seq.push(r.seq.unwrap_or(-1));
        self.ts.push(r.ts);
        self.expected.push(r.gap.0);
        self.got.push(r.gap.1);
        self.text.push(r.fault.text);
    }

    pub fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("msg", PyArray1::from_vec(py, self.msg))?;
        d.set_item("reason", PyArray1::from_vec(py, self.reason))?;
        d.set_item("symbol", PyArray1::from_vec(py, self.symbol))?;
        d.set_item("seq", PyArray1::from_vec(py, self.seq))?;
        d.set_item("ts", PyArray1::from_vec(py, self.ts))?;
        d.set_item("expected", PyArray1::from_vec(py, self.expected))?;
        d.set_item("got", PyArray1::from_vec(py, self.got))?;
        d.set_item("text", self.text)?;
        Ok(d)
    }
}

/// A feed's batch result as Python sees it: (event rows as uint8, rejects as a dict of columns).
pub fn batch_py<'py>(py: Python<'py>, events: Events, rejects: Rejects) -> PyResult<Batch<'py>> {
    Ok((events.into_py(py)?, rejects.into_py(py)?))
}

pub type Batch<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyDict>);

/// A venue feed that takes raw messages one at a time into a batch's events and rejects.
pub trait MessageFeed: Send {
    fn record(&mut self, raw: &[u8], recv_ts: i64, index: usize, events: &mut Events, rejects: &mut Rejects);
}

/// `MessageFeed` of a feed whose `message(raw, recv_ts, events, index)` pushes a message's events and returns
/// its refusal (Binance, Kraken, Coinbase): the refusal joins the batch's rejects.
#[macro_export]
macro_rules! message_feed {
    ($feed:ty) => {
        impl $crate::batch::MessageFeed for $feed {
            fn record(
                &mut self,
                raw: &[u8],
                recv_ts: i64,
                index: usize,
                events: &mut $crate::batch::Events,
                rejects: &mut $crate::batch::Rejects,
            ) {
                if let Err(r) = self.message(raw, recv_ts, events, index) {
                    rejects.push(r, index);
                }
            }
        }
    };
}

/// `on_messages` of every native feed: a list of bytes, with optional int64 receive times,
/// through `feed` with the GIL released (the bytes stay referenced by the list meanwhile).
pub fn on_messages<'py, F: MessageFeed>(
    py: Python<'py>,
    feed: &mut F,
    messages: &Bound<'py, PyList>,
    recv_ts: Option<PyReadonlyArray1<'py, i64>>,
    events_per_message: usize,
) -> PyResult<Batch<'py>> {
    let (held, recv) = message_list(messages, recv_ts)?;
    let raws: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let (events, rejects) = py.detach(|| {
        let mut events = Events::with_capacity(raws.len() * events_per_message);
        let mut rejects = Rejects::default();
        for (i, raw) in raws.iter().enumerate() {
            feed.record(raw, recv[i], i, &mut events, &mut rejects);
        }
        (events, rejects)
    });
    batch_py(py, events, rejects)
}

/// A list of raw messages (the bytes objects, held while their bytes are read) and their receive
/// times (0 where none are given).
pub fn message_list<'py>(
    messages: &Bound<'py, PyList>,
    recv_ts: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, Vec<i64>)> {
    let held: Vec<Bound<'py, PyBytes>> =
        messages.iter().map(|m| Ok(m.cast_into::<PyBytes>()?)).collect::<PyResult<_>>()?;
    let recv = match &recv_ts {
        None => vec![0; held.len()],
        Some(a) => a.as_slice()?.to_vec(),
    };
    if recv.len() != held.len() {
        return Err(PyValueError::new_err(format!("{} messages but {} receive times", held.len(), recv.len())));
    }
    Ok((held, recv))
}

/// The Python methods every feed class has alike, written once (pyo3's `multiple-pymethods`): the symbol
/// table its batches index, its books' names, and its state (`__getstate__` documented per feed by
/// `$state_doc`, `__setstate__`, pickling) through the feed's `export` / `import`. `$books`: the feed's
/// list of the symbol ids that have a book, in the order the books were made.
#[macro_export]
macro_rules! feed_methods {
    ($py:ty, $feed:ty, $books:ident, $state_doc:literal) => {
        #[pymethods]
        impl $py {
            /// The symbol table from id `start` on (the `symbol` column of the batches indexes it).
            #[pyo3(signature = (start = 0))]
            fn symbol_names(&self, start: usize) -> Vec<String> {
                self.feed.names.from(start)
            }

            /// Symbols that have a book, in the order the books were made.
            fn book_symbols(&self) -> Vec<String> {
                self.feed.$books.iter().map(|&n| self.feed.names.name(n).to_owned()).collect()
            }

            #[doc = $state_doc]
            fn __getstate__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
                self.feed.export(py)
            }

            /// Replace the whole feed with a `__getstate__` state; ValueError (the feed unchanged) for
            /// another kind or version, or a malformed state.
            fn __setstate__(&mut self, state: &Bound<'_, PyAny>) -> PyResult<()> {
                self.feed = <$feed>::import(state)?;
                Ok(())
            }

            /// pickle / copy: a default feed, then its state.
            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                let state = slf.borrow().__getstate__(slf.py())?;
                $crate::state::reduce(slf, state)
            }
        }
    };
}

/// `on_messages` and `rebuild` of a feed whose input is a list of raw messages that name their symbols
/// (Binance, Kraken, Coinbase); `$events_per_message`: the event rows to reserve a message.
#[macro_export]
macro_rules! message_methods {
    ($py:ty, $events_per_message:expr) => {
        #[pymethods]
        impl $py {
            /// Raw messages (values of the venue's `md.raw` topic) with optional int64 receive times:
            /// (event rows as uint8, rejects as a dict of columns).
            #[pyo3(signature = (messages, recv_ts = None))]
            fn on_messages<'py>(
                &mut self,
                py: Python<'py>,
                messages: &Bound<'py, pyo3::types::PyList>,
                recv_ts: Option<numpy::PyReadonlyArray1<'py, i64>>,
            ) -> PyResult<$crate::batch::Batch<'py>> {
                $crate::batch::on_messages(py, &mut self.feed, messages, recv_ts, $events_per_message)
            }

            /// `megatrading book` on the native path: `crate::rebuild::rebuild` over raw messages (a capture's,
            /// as `read_capture` gives them, in order): (events, rejects) as for `on_messages`, the rows as an
            /// (n, 3 + 4 levels) int64 array, and the target's name once known (`target` on the next call).
            #[pyo3(signature = (messages, levels, target = None, recv_ts = None))]
            fn rebuild<'py>(
                &mut self,
                py: Python<'py>,
                messages: &Bound<'py, pyo3::types::PyList>,
                levels: usize,
                target: Option<String>,
                recv_ts: Option<numpy::PyReadonlyArray1<'py, i64>>,
            ) -> PyResult<$crate::rebuild::Rebuilt<'py>> {
                $crate::rebuild::rebuild_list(py, &mut self.feed, messages, levels, target, recv_ts)
            }
        }
    };
}
