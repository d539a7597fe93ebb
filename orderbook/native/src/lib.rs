//! `orderbook.native._core`: the compiled hot path behind `orderbook/native/__init__.py`.
//!
//! Books (`book.rs`, bound in `pybook.rs`) and venue decoders that apply what they decode
//! (`itch.rs`, `binance.rs`, `lobster.rs`, `kraken.rs`, `coinbase.rs`), each taking a batch and giving numpy arrays back (`batch.rs`),
//! with the semantics, events and errors of the pure-Python reference in `orderbook/`.

// the modules are public for the fuzz targets alone, not an API: clippy's lints for one are off
#![allow(clippy::len_without_is_empty, clippy::result_unit_err)]

use pyo3::prelude::*;

// public for the fuzz targets (orderbook/native/fuzz), which drive the decoders, books and window
// builders without Python; Python sees only the module below
pub mod batch;
pub mod binance;
pub mod book;
pub mod capture;
pub mod coinbase;
pub mod errors;
pub mod features;
pub mod itch;
pub mod json;
pub mod kraken;
pub mod lobster;
pub mod numbers;
mod pybook;
mod pywindows;
pub mod rebuild;
mod state;
pub mod volume_record;
pub mod windows;

/// Event-row buffers kept for reuse (batch.rs's `ROW_POOL`): (buffers, bytes); with `release`
/// they are freed then (the next large batch gets fresh memory, as a process's first does).
#[pyfunction]
#[pyo3(signature = (release = false))]
fn row_pool(release: bool) -> (usize, usize) {
    batch::pool_stats(release)
}

/// Panic with `message`, as a bug here would: the worker's test of its answer to one.
#[pyfunction]
fn panic(message: &str) {
    panic!("{message}");
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(row_pool, m)?)?;
    m.add_function(wrap_pyfunction!(panic, m)?)?;
    m.add_function(wrap_pyfunction!(rebuild::rows_csv, m)?)?;
    m.add_function(wrap_pyfunction!(capture::stamped_lines, m)?)?;
    m.add_function(wrap_pyfunction!(capture::epoch_stamped_lines, m)?)?;
    m.add_class::<pybook::PyL2>()?;
    m.add_class::<pybook::PyL3>()?;
    m.add_class::<itch::PyItch>()?;
    m.add_class::<binance::PyBinance>()?;
    m.add_class::<lobster::PyLobster>()?;
    m.add_class::<kraken::PyKraken>()?;
    m.add_class::<coinbase::PyCoinbase>()?;
    m.add_class::<pywindows::PyWindowBuilder>()?;
    Ok(())
}
