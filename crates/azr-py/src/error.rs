//! The exception hierarchy seen from Python, created here, and the one place
//! Rust errors become Python exceptions. Outcomes of running model code are
//! not exceptions: they are `ExecResult` and `Verdict` objects.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _core,
    AzrError,
    PyException,
    "Base class of every azr error."
);
create_exception!(
    _core,
    BufferError,
    AzrError,
    "A task buffer could not be read, written or used."
);
create_exception!(
    _core,
    SandboxError,
    AzrError,
    "The sandbox could not be set up or was misused."
);
create_exception!(
    _core,
    ConfigError,
    AzrError,
    "A configuration value is invalid."
);

/// Every error the bindings raise.
pub enum Error {
    Sandbox(azr_sandbox::Error),
    Buffer(azr_buffer::Error),
}

impl From<azr_buffer::Error> for Error {
    fn from(err: azr_buffer::Error) -> Self {
        Error::Buffer(err)
    }
}

impl From<azr_sandbox::Error> for Error {
    fn from(err: azr_sandbox::Error) -> Self {
        Error::Sandbox(err)
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Sandbox(e @ azr_sandbox::Error::Config(_)) => {
                ConfigError::new_err(e.to_string())
            }
            Error::Sandbox(e) => SandboxError::new_err(e.to_string()),
            Error::Buffer(e @ azr_buffer::Error::Config(_)) => ConfigError::new_err(e.to_string()),
            Error::Buffer(e) => BufferError::new_err(e.to_string()),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("AzrError", py.get_type::<AzrError>())?;
    m.add("SandboxError", py.get_type::<SandboxError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("BufferError", py.get_type::<BufferError>())?;
    Ok(())
}
