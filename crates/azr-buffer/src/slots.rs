//! Append-only slot storage that readers use without locks.
//!
//! Slots live in buckets whose sizes double (32, 64, 128, …), so the storage
//! grows without ever moving a slot: a reader holding an index can always find
//! its slot. One writer at a time (the caller serializes writers) fills the next
//! slot and then publishes the new length; readers load the length and read any
//! slot below it. A slot holds an `ArcSwapOption`, so a writer may also replace
//! or clear a published slot (eviction) while readers keep whatever `Arc` they
//! already loaded.

use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

const FIRST_BUCKET: usize = 32;
/// 32 · (2^48 − 1) slots: more than any address space holds.
const BUCKETS: usize = 48;

pub(crate) struct Slots<T> {
    buckets: [OnceLock<Box<[ArcSwapOption<T>]>>; BUCKETS],
    len: AtomicUsize,
}

/// (bucket, offset) of slot `index`.
fn locate(index: usize) -> (usize, usize) {
    let scaled = index / FIRST_BUCKET + 1;
    let bucket = (usize::BITS - 1 - scaled.leading_zeros()) as usize;
    let start = FIRST_BUCKET * ((1 << bucket) - 1);
    (bucket, index - start)
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicUsize::new(0),
        }
    }
}

impl<T> Slots<T> {
    /// Number of published slots.
    pub fn len(&self) -> usize {
        // Acquire pairs with the Release in `push`: every slot below the
        // returned length was fully written before the length was published.
        self.len.load(Ordering::Acquire)
    }

    fn slot(&self, index: usize) -> Option<&ArcSwapOption<T>> {
        let (bucket, offset) = locate(index);
        // OnceLock::get is an Acquire load of a bucket the writer initialized
        // before publishing any index inside it.
        self.buckets[bucket].get().map(|b| &b[offset])
    }

    /// The value in slot `index`, if it is published and not cleared.
    pub fn get(&self, index: usize) -> Option<Arc<T>> {
        if index >= self.len() {
            return None;
        }
        self.slot(index).and_then(|s| s.load_full())
    }

    /// Append a value. Callers must serialize `push`, `replace` and `clear`.
    pub fn push(&self, value: Arc<T>) -> usize {
        // Relaxed: only the (serialized) writer ever stores `len`, so it reads
        // its own last store.
        let index = self.len.load(Ordering::Relaxed);
        let (bucket, offset) = locate(index);
        let slots = self.buckets[bucket].get_or_init(|| {
            (0..FIRST_BUCKET << bucket)
                .map(|_| ArcSwapOption::empty())
                .collect()
        });
        slots[offset].store(Some(value));
        // Release publishes the slot written above (and the bucket) to every
        // reader that Acquire-loads the new length.
        self.len.store(index + 1, Ordering::Release);
        index
    }

    /// Replace the value of a published slot (reservoir eviction).
    pub fn replace(&self, index: usize, value: Arc<T>) {
        if let Some(slot) = self.slot(index) {
            slot.store(Some(value));
        }
    }

    /// Drop the value of a published slot (FIFO eviction frees memory early).
    pub fn clear(&self, index: usize) {
        if let Some(slot) = self.slot(index) {
            slot.store(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_every_index_once() {
        let mut expected = (0, 0);
        for index in 0..10_000 {
            assert_eq!(locate(index), expected, "index {index}");
            expected.1 += 1;
            if expected.1 == FIRST_BUCKET << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn push_get_replace_clear() {
        let slots = Slots::default();
        for i in 0..1000 {
            assert_eq!(slots.push(Arc::new(i)), i);
        }
        assert_eq!(slots.len(), 1000);
        assert_eq!(slots.get(999).as_deref(), Some(&999));
        assert_eq!(slots.get(1000), None);
        slots.replace(5, Arc::new(5000));
        slots.clear(6);
        assert_eq!(slots.get(5).as_deref(), Some(&5000));
        assert_eq!(slots.get(6), None);
    }
}
