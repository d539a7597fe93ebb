//! Why a message or an operation was refused: the `reason` of each `orderbook.errors.FeedError`
//! subclass, as a small code that fits a numpy column, and the Python exception it stands for.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The reject reasons, in the order of `orderbook.native.REASONS` (the code is the index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Malformed = 0,
    UnknownMessageType = 1,
    Oversized = 2,
    UnknownSymbol = 3,
    BookError = 4,
    UnknownOrder = 5,
    DuplicateOrder = 6,
    CrossedBook = 7,
    OutOfSync = 8,
    SequenceGap = 9,
    ChecksumMismatch = 10,
    VenueError = 11,
}

impl Reason {
    /// The `orderbook.errors` class raised for this reason.
    pub fn class_name(self) -> &'static str {
        match self {
            Reason::Malformed => "DecodeError",
            Reason::UnknownMessageType => "UnknownMessageType",
            Reason::Oversized => "OversizedMessage",
            Reason::UnknownSymbol => "UnknownSymbol",
            Reason::BookError => "BookError",
            Reason::UnknownOrder => "UnknownOrder",
            Reason::DuplicateOrder => "DuplicateOrder",
            Reason::CrossedBook => "CrossedBook",
            Reason::OutOfSync => "OutOfSync",
            Reason::SequenceGap => "SequenceGap",
            Reason::ChecksumMismatch => "ChecksumMismatch",
            Reason::VenueError => "VenueErrorMessage",
        }
    }
}

/// What an UnknownSymbol says (`orderbook.errors.not_configured`): the name JSON-quoted as Python's
/// `json.dumps(name, ensure_ascii=False)` quotes it (its escapes for `"`, `\\` and the controls below 0x20).
pub fn not_configured(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 28);
    out.push_str("symbol \"");
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\" is not configured");
    out
}

/// A refusal: the reason and the text the Python reference would say (without its `[venue=...]` tail).
#[derive(Debug)]
pub struct Fault {
    pub reason: Reason,
    pub text: String,
}

impl Fault {
    pub fn new(reason: Reason, text: impl Into<String>) -> Self {
        Fault { reason, text: text.into() }
    }
}

/// The `orderbook.errors` exception for a fault raised by a direct call (a book method or a batch
/// apply); rejects of a feed batch travel as arrays instead and are built in Python on demand.
pub fn py_error(py: Python<'_>, fault: &Fault, venue: &str, symbol: &str, seq: Option<i64>) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("orderbook.errors")?.getattr(fault.reason.class_name())?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("venue", venue)?;
        kwargs.set_item("symbol", symbol)?;
        kwargs.set_item("seq", seq)?;
        Ok(PyErr::from_value(class.call((fault.text.as_str(),), Some(&kwargs))?))
    };
    build()
        .unwrap_or_else(|err| PyRuntimeError::new_err(format!("{}: {} ({err})", fault.reason.class_name(), fault.text)))
}
