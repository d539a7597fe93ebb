//! State export / import for the native books and feeds (`__getstate__` / `__setstate__`).
//!
//! A state is a dict of plain values (int, bool, str, bytes, None, lists and dicts of them), so
//! that msgpack, pickle and copy all carry it: the streaming worker snapshots it to `md.state`
//! and restores it after a crash. Large parts (a book's levels or orders, a sync buffer) are
//! packed little-endian int64 bytes instead of Python ints: a 1,000-level book is 16 kB, not
//! 2,000 objects. Every state names its kind and version; a state of another kind or version,
//! or one that does not read as this layout, is refused with a ValueError before anything is
//! changed, never half-read (a guessed reading of a snapshot would corrupt books silently).

use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::batch::{Names, NONE};
use crate::book::{Order, ASK, BID, L2, L3};

/// The layout version of every state this module writes; bump it when a field changes meaning.
pub const STATE_VERSION: i64 = 1;

/// A state dict being written or read, and what it is the state of (for error texts).
pub struct State<'py> {
    pub dict: Bound<'py, PyDict>,
    what: &'static str,
}

impl<'py> State<'py> {
    /// A fresh state of `what`, its kind and version set.
    pub fn new(py: Python<'py>, what: &'static str) -> PyResult<Self> {
        let s = State { dict: PyDict::new(py), what };
        s.set("kind", what)?;
        s.set("version", STATE_VERSION)?;
        Ok(s)
    }

    /// A nested dict without kind and version of its own (a feed's book).
    pub fn part(py: Python<'py>, what: &'static str) -> Self {
        State { dict: PyDict::new(py), what }
    }

    /// A state to read: a dict whose kind is `what` and whose version this build reads.
    pub fn open(state: &Bound<'py, PyAny>, what: &'static str) -> PyResult<Self> {
        let s = Self::nested(state, what)?;
        let kind: String = s.get("kind")?;
        if kind != what {
            return Err(s.invalid(format!("this is the state of a {kind:?}")));
        }
        let version: i64 = s.get("version")?;
        if version != STATE_VERSION {
            return Err(s.invalid(format!("version {version}, this build reads version {STATE_VERSION}")));
        }
        Ok(s)
    }

    /// A nested dict to read (a feed's book, or a part of one).
    pub fn open_part(state: &Bound<'py, PyAny>, what: &'static str) -> PyResult<Self> {
        Self::nested(state, what)
    }

    fn nested(state: &Bound<'py, PyAny>, what: &'static str) -> PyResult<Self> {
        match state.cast::<PyDict>() {
            Ok(d) => Ok(State { dict: d.clone(), what }),
            Err(_) => Err(invalid(what, format!("a dict expected, got {}", type_name(state)))),
        }
    }

    pub fn invalid(&self, text: impl std::fmt::Display) -> PyErr {
        invalid(self.what, text)
    }

    pub fn set(&self, key: &str, value: impl IntoPyObject<'py>) -> PyResult<()> {
        self.dict.set_item(key, value)
    }

    /// Packed int64 values under `key`.
    pub fn set_packed(&self, key: &str, values: &[i64]) -> PyResult<()> {
        self.set(key, PyBytes::new(self.dict.py(), &pack(values)))
    }

    pub fn item(&self, key: &str) -> PyResult<Bound<'py, PyAny>> {
        self.dict.get_item(key)?.ok_or_else(|| self.invalid(format!("no {key:?}")))
    }

    /// A value of the expected type; a wrong type is a ValueError naming the key.
    pub fn get<T: FromPyObjectOwned<'py>>(&self, key: &str) -> PyResult<T> {
        let item = self.item(key)?;
        item.extract::<T>().map_err(|_| self.invalid(format!("{key:?} is not a {}", std::any::type_name::<T>())))
    }

    /// Packed int64 values in records of `width`.
    pub fn packed(&self, key: &str, width: usize) -> PyResult<Vec<i64>> {
        let item = self.item(key)?;
        let bytes = item.cast::<PyBytes>().map_err(|_| self.invalid(format!("{key:?} is not bytes")))?;
        unpack(bytes.as_bytes(), width).map_err(|e| self.invalid(format!("{key:?}: {e}")))
    }

    /// A list of nested dicts (a feed's books).
    pub fn parts(&self, key: &str) -> PyResult<Vec<State<'py>>> {
        let item = self.item(key)?;
        let list = item.cast::<PyList>().map_err(|_| self.invalid(format!("{key:?} is not a list")))?;
        list.iter().map(|p| Self::nested(&p, self.what)).collect()
    }
}

fn type_name(x: &Bound<'_, PyAny>) -> String {
    x.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

pub fn invalid(what: &str, text: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what} state: {text}"))
}

pub fn pack(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn unpack(bytes: &[u8], width: usize) -> Result<Vec<i64>, String> {
    if bytes.len() % (8 * width) != 0 {
        return Err(format!("{} bytes are not whole records of {width} int64", bytes.len()));
    }
    Ok(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// `__reduce__` of a class whose constructor takes no arguments: (class, (), state).
pub fn reduce<'py, T: pyo3::PyClass>(slf: &Bound<'py, T>, state: Bound<'py, PyDict>) -> PyResult<Bound<'py, PyTuple>> {
    let py = slf.py();
    PyTuple::new(py, [slf.as_any().get_type().into_any(), PyTuple::empty(py).into_any(), state.into_any()])
}

// ------------------------------------------------------------------------------------ books

/// An L2 book into `s` as "bids" and "asks": (price, size) int64 pairs, best first.
pub fn put_l2(s: &State<'_>, book: &L2) -> PyResult<()> {
    let side = |levels: &crate::book::Levels<i64>| -> Vec<i64> { levels.iter().flat_map(|(p, q)| [p, q]).collect() };
    s.set_packed("bids", &side(&book.bids))?;
    s.set_packed("asks", &side(&book.asks))
}

pub fn take_l2(s: &State<'_>) -> PyResult<L2> {
    let pairs = |v: Vec<i64>| -> Vec<(i64, i64)> { v.chunks_exact(2).map(|c| (c[0], c[1])).collect() };
    let (bids, asks) = (pairs(s.packed("bids", 2)?), pairs(s.packed("asks", 2)?));
    L2::from_levels(&bids, &asks).map_err(|e| s.invalid(e))
}

/// An L3 book into `s` as "bids" and "asks": (order id as int64 bits, price, size) records,
/// level by level best first and each level's queue in time priority, so that adding them back
/// in that order rebuilds every queue.
pub fn put_l3(s: &State<'_>, book: &L3) -> PyResult<()> {
    let side = |side: i8| -> Vec<i64> {
        book.side_orders(side).flat_map(|o: &Order| [o.id as i64, o.price, o.size]).collect()
    };
    s.set_packed("bids", &side(BID))?;
    s.set_packed("asks", &side(ASK))
}

pub fn take_l3(s: &State<'_>) -> PyResult<L3> {
    let orders =
        |v: Vec<i64>| -> Vec<(u64, i64, i64)> { v.chunks_exact(3).map(|c| (c[0] as u64, c[1], c[2])).collect() };
    let (bids, asks) = (orders(s.packed("bids", 3)?), orders(s.packed("asks", 3)?));
    L3::from_orders(&bids, &asks).map_err(|e| s.invalid(e))
}

/// An order-by-order feed's books into `s` as "books": [{"symbol": name id, "bids", "asks"}] in the order
/// the books were made (`names[i]` is book i's symbol id).
pub fn put_l3_books(s: &State<'_>, books: &[L3], names: &[u32]) -> PyResult<()> {
    let py = s.dict.py();
    let list = PyList::empty(py);
    for (book, &name) in books.iter().zip(names) {
        let b = State::part(py, s.what);
        b.set("symbol", name)?;
        put_l3(&b, book)?;
        list.append(b.dict)?;
    }
    s.set("books", list)
}

/// `put_l3_books`' books back: (books, each one's symbol id, symbol id -> book index or NONE), each book
/// of its own id in `names`.
pub fn take_l3_books(s: &State<'_>, names: &Names) -> PyResult<(Vec<L3>, Vec<u32>, Vec<u32>)> {
    let (mut books, mut book_name, mut name_book) = (Vec::new(), Vec::new(), vec![NONE; names.len()]);
    for b in s.parts("books")? {
        let id: i64 = b.get("symbol")?;
        let Some(name) = u32::try_from(id).ok().filter(|&n| (n as usize) < names.len()) else {
            return Err(s.invalid(format!("a book of symbol id {id}, not one of the {} names", names.len())));
        };
        if name_book[name as usize] != NONE {
            return Err(s.invalid(format!("two books for {:?}", names.name(name))));
        }
        name_book[name as usize] = books.len() as u32;
        books.push(take_l3(&b)?);
        book_name.push(name);
    }
    Ok((books, book_name, name_book))
}
