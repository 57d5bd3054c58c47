//! Many writer and reader threads on one buffer at once.

use azr_buffer::{BufferConfig, TaskBuffer, TaskType};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const WRITERS: u64 = 4;
const PER_WRITER: u64 = 3000;

fn record(writer: u64, i: u64) -> Vec<u8> {
    format!(r#"{{"program": "def f(a):\n    return a", "input": "{writer}, {i}", "w": {writer}, "i": {i}}}"#).into_bytes()
}

/// Sets the flag when dropped, so readers stop even if a writer panics
/// (otherwise a failed assertion would hang the test instead of failing it).
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn hammer(config: BufferConfig) -> (TaskBuffer, usize) {
    let evicting = config.capacity.is_some();
    let buffer = TaskBuffer::new(config).unwrap();
    let done = AtomicBool::new(false);
    let draws = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let _stop_readers = Done(&done);
        for _ in 0..4 {
            s.spawn(|| {
                let mut seed = 0;
                while !done.load(Ordering::Acquire) {
                    seed += 1;
                    let draw = buffer.sample(TaskType::Deduction, 6, Some(seed));
                    let ids: HashSet<u64> = draw.iter().map(|e| e.id).collect();
                    assert_eq!(ids.len(), draw.len(), "an entry twice in one draw");
                    for e in &draw {
                        let v = e.json();
                        assert_eq!(
                            v["input"].as_str().unwrap(),
                            format!("{}, {}", v["w"], v["i"]),
                            "a torn record"
                        );
                    }
                    let batch = buffer.solver_batch(TaskType::Deduction, 16, seed % 5, Some(seed));
                    assert!(
                        batch.len() == 16
                            || buffer.is_empty()
                            || batch.len() <= buffer.count(TaskType::Deduction) + 16
                    );
                    draws.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let buffer = &buffer;
                s.spawn(move || {
                    for i in 0..PER_WRITER {
                        assert!(buffer
                            .add(TaskType::Deduction, &record(w, i), i / 100)
                            .unwrap());
                        // Every tenth add repeats one of this writer's earlier
                        // records: a duplicate whatever the interleaving, as
                        // long as nothing evicted it.
                        if i % 10 == 0 {
                            let again = buffer
                                .add(TaskType::Deduction, &record(w, i / 2), 0)
                                .unwrap();
                            assert!(!again || evicting, "a live record was added twice");
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
    });
    let draws = draws.load(Ordering::Relaxed);
    (buffer, draws)
}

#[test]
fn writers_and_readers_at_once_unbounded() {
    let (buffer, draws) = hammer(BufferConfig::default());
    assert_eq!(
        buffer.count(TaskType::Deduction),
        (WRITERS * PER_WRITER) as usize
    );
    let stats = buffer.stats(TaskType::Deduction);
    assert_eq!(stats.added, WRITERS * PER_WRITER);
    assert_eq!(stats.duplicates, WRITERS * PER_WRITER / 10);
    assert!(draws > 0);
}

#[test]
fn writers_and_readers_at_once_with_fifo_eviction() {
    let (buffer, _) = hammer(BufferConfig {
        capacity: Some(100),
        ..Default::default()
    });
    let stats = buffer.stats(TaskType::Deduction);
    assert_eq!(stats.live, 100);
    assert_eq!(stats.live as u64 + stats.evicted, stats.added);
}
