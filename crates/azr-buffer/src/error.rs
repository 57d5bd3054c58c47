//! Errors of the buffer: bad input and storage problems, each with a clear message.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown task type {0:?}; expected deduction, abduction or induction")]
    UnknownTaskType(String),
    #[error("record is not a JSON object: {0}")]
    BadRecord(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt at byte {offset}: {reason} (salvaging the buffer keeps every entry that can still be read: `azr buffer salvage FOLDER`)")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: another process has this buffer open")]
    Locked { path: PathBuf },
    #[error("buffer config: {0}")]
    Config(String),
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
