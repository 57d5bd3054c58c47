//! # azr-buffer
//!
//! The task buffers of Absolute Zero self-play: one lane per task type
//! (deduction, abduction, induction) of validated tasks, each entry a JSON
//! record with the step it entered, a content hash and a stable id.
//!
//! - Readers never lock: slots live in doubling buckets that never move, and
//!   a writer publishes a slot by storing the lane's length with `Release`
//!   after writing it ([`slots`](crate) module docs give the argument).
//! - Deduplication by normalized (program, input) or (program, inputs).
//! - Sampling: `k` distinct entries seeded per call, the recent window, the
//!   "max_new" solver batch, union draws with optional weights.
//! - An optional capacity with explicit FIFO or reservoir eviction, counted.
//! - Durability: a write-ahead log of CRC-checked frames with group commit
//!   (`flush` fsyncs once for all concurrent callers), crash recovery that
//!   drops only a torn tail, snapshot compaction, JSON-lines export/import.
//!
//! ```
//! use azr_buffer::{BufferConfig, TaskBuffer, TaskType};
//! let buffer = TaskBuffer::new(BufferConfig::default())?;
//! let record = br#"{"program": "def f(a):\n    return a", "input": "'Hello world'", "output": "'Hello world'"}"#;
//! assert!(buffer.add(TaskType::Deduction, record, 0)?);
//! assert!(!buffer.add(TaskType::Deduction, record, 1)?); // duplicate
//! assert_eq!(buffer.sample(TaskType::Deduction, 6, Some(7)).len(), 1);
//! # Ok::<(), azr_buffer::Error>(())
//! ```

mod buffer;
mod entry;
mod error;
mod sample;
mod slots;
mod task;
mod wal;

pub use buffer::{BufferConfig, Eviction, LaneStats, Recovery, TaskBuffer};
pub use entry::{content_hash, Entry};
pub use error::Error;
pub use task::TaskType;
