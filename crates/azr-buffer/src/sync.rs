//! Atomics, swapped for loom's under `--cfg loom` so the publication protocol
//! can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
