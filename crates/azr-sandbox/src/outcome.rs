//! What running model code produced: data, never exceptions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Why an execution or a check did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The program, input or answer does not parse (or is not the required shape).
    Syntax,
    /// The program uses a banned module.
    BannedImport,
    /// The program raised (message `TypeName: message`), exited, or trapped.
    Runtime,
    /// Fuel or the wall-clock backstop ran out.
    Timeout,
    /// The memory limit was reached.
    Memory,
    /// Two runs in separate instances with different seeds, clocks and hash
    /// secrets disagreed.
    Nondeterministic,
    /// The output is not a plain value whose repr round-trips through `ast.literal_eval`.
    UnrepresentableOutput,
    /// The output repr is longer than the limit.
    OutputTooLarge,
    /// The request itself is malformed (too large, wrong fields).
    InvalidRequest,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Syntax,
        ErrorKind::BannedImport,
        ErrorKind::Runtime,
        ErrorKind::Timeout,
        ErrorKind::Memory,
        ErrorKind::Nondeterministic,
        ErrorKind::UnrepresentableOutput,
        ErrorKind::OutputTooLarge,
        ErrorKind::InvalidRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::BannedImport => "banned_import",
            ErrorKind::Runtime => "runtime",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::Nondeterministic => "nondeterministic",
            ErrorKind::UnrepresentableOutput => "unrepresentable_output",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::InvalidRequest => "invalid_request",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error kind with a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ExecError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The result of running a program or validating a proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The output repr (`f(input)`), `None` for scripts and failures.
    pub output: Option<String>,
    pub error: Option<ExecError>,
    /// Captured stdout and stderr, interleaved, at most `max_captured_bytes`.
    pub stdout: String,
    /// Wall time of the whole call, instantiation included.
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub(crate) fn failed(error: ExecError, elapsed: Duration) -> Self {
        Self {
            output: None,
            error: Some(error),
            stdout: String::new(),
            elapsed,
        }
    }
}

/// The result of checking a solver's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub correct: bool,
    /// Why the answer could not be judged or run (`None` for a plain wrong answer).
    pub error: Option<ExecError>,
    /// What the answer produced: its value (deduction), `f(answer)` (abduction),
    /// or the candidate's outputs on the hidden inputs (induction, one per line).
    pub output: Option<String>,
    pub elapsed: Duration,
}
