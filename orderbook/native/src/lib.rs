//! `orderbook.native._core`: the compiled hot path behind `orderbook/native/__init__.py`.
//!
//! Books (`book.rs`, bound in `pybook.rs`) and venue decoders that apply what they decode
//! (`itch.rs`, `binance.rs`), each taking a batch and giving numpy arrays back (`batch.rs`),
//! with the semantics, events and errors of the pure-Python reference in `orderbook/`.

use pyo3::prelude::*;

mod batch;
mod binance;
mod book;
mod errors;
mod features;
mod itch;
mod json;
mod pybook;
mod pywindows;
mod state;
mod windows;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<pybook::PyL2>()?;
    m.add_class::<pybook::PyL3>()?;
    m.add_class::<itch::PyItch>()?;
    m.add_class::<binance::PyBinance>()?;
    m.add_class::<pywindows::PyWindowBuilder>()?;
    Ok(())
}
