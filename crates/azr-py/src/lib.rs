//! `azr._core`: the PyO3 glue over the plain-Rust crates. Nothing but
//! conversions and GIL handling lives here.

mod buffer;
mod error;
mod sandbox;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::register(m)?;
    m.add_class::<sandbox::PySandbox>()?;
    m.add_class::<sandbox::ExecResult>()?;
    m.add_class::<sandbox::PyVerdict>()?;
    m.add_class::<sandbox::PyExecError>()?;
    m.add_function(wrap_pyfunction!(sandbox::cache_dir, m)?)?;
    m.add_function(wrap_pyfunction!(sandbox::default_banned_modules, m)?)?;
    m.add_function(wrap_pyfunction!(sandbox::error_kinds, m)?)?;
    m.add_class::<buffer::PyTaskBuffer>()?;
    m.add_function(wrap_pyfunction!(buffer::task_types, m)?)?;
    Ok(())
}
