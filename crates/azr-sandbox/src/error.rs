//! Errors of the sandbox itself (setup and misuse), as opposed to outcomes of
//! running model code, which are data ([`crate::Outcome`]).

/// An error setting up or using the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wasmtime could not be configured, or the guest could not be compiled or linked.
    #[error("sandbox engine: {0}")]
    Engine(String),
    /// A limit or option is out of range.
    #[error("sandbox config: {0}")]
    Config(String),
}
