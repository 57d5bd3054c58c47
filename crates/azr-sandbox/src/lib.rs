//! # azr-sandbox
//!
//! Runs untrusted, model-written Python inside CPython compiled to WebAssembly
//! (WASI 0.2, built by componentize-py) under Wasmtime. Every execution gets a
//! fresh instance; CPU is limited by fuel (a deterministic verdict) with an
//! epoch wall-clock backstop, memory by a store limiter, captured output by a
//! bounded buffer. The guest sees no files, environment, arguments, sockets or
//! host clock; its randomness is seeded by the host and its sleeps return at once.
//!
//! The checks of the Absolute Zero executor live here, once: proposal
//! validation (syntax, banned imports, literal inputs, determinism across two
//! instances with different seeds, clocks and hash secrets, a plain output
//! that round-trips through `ast.literal_eval`) and the deduction, abduction
//! and induction answer checks, all decided inside the sandbox.
//!
//! ```no_run
//! use azr_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let outcome = sandbox.validate("def f(a):\n    return a[::-1]", "'abc'");
//! assert_eq!(outcome.output.as_deref(), Some("'cba'"));
//! # Ok::<(), azr_sandbox::Error>(())
//! ```

mod config;
mod engine;
mod error;
mod host;
mod outcome;
mod sandbox;

pub use config::{SandboxConfig, DEFAULT_BANNED, FUEL_PER_SECOND};
pub use engine::cache_dir;
pub use error::Error;
pub use outcome::{ErrorKind, ExecError, Outcome, Verdict};
pub use sandbox::{Check, EntryRules, Job, Judgement, Sandbox, MAX_WORKERS};
