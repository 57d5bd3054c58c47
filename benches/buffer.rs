//! Buffer benchmarks, as ratios against a baseline measured in the same run:
//! a `Mutex<Vec<Arc<Entry>>>` with the same sampler, which is what a plain
//! locked list (the official code's Python lists in one actor) amounts to.
//!
//! - `sample6/{10k,1M}/{1,N}threads`: draws of k=6 distinct entries.
//! - `add/{10k,1M}/{1,N}threads`: adding new records (JSON check, content
//!   hash, dedup) to a filled buffer, against the same work done under the one
//!   lock of the locked vector.
//!
//! `cargo bench -p azr-buffer`; ratios are printed at the end.

use azr_buffer::{content_hash, BufferConfig, Entry, TaskBuffer, TaskType};
use criterion::Criterion;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const D: TaskType = TaskType::Deduction;

/// The baseline: entries and their content hashes behind one lock.
type LockedList = (Vec<Arc<Entry>>, HashSet<[u8; 16]>);

fn record(i: u64) -> Vec<u8> {
    format!(
        r#"{{"program": "def f(a):\n    return a * {i}", "input": "3", "output": "{}"}}"#,
        3 * i
    )
    .into_bytes()
}

fn filled(n: u64) -> (TaskBuffer, Mutex<Vec<Arc<Entry>>>) {
    let buffer = TaskBuffer::new(BufferConfig::default()).unwrap();
    let records: Vec<Vec<u8>> = (0..n).map(record).collect();
    for chunk in records.chunks(4096) {
        let items: Vec<(TaskType, &[u8], u64)> =
            chunk.iter().map(|r| (D, r.as_slice(), 0)).collect();
        buffer.add_many(&items).unwrap();
    }
    let locked = Mutex::new(buffer.live_entries(D));
    (buffer, locked)
}

/// SplitMix64 draws of k distinct indices, the same work the buffer does.
fn locked_sample(list: &Mutex<Vec<Arc<Entry>>>, k: usize, seed: u64) -> Vec<Arc<Entry>> {
    let list = list.lock().unwrap();
    let mut state = seed;
    let mut picks: Vec<usize> = Vec::with_capacity(k);
    while picks.len() < k.min(list.len()) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let i = ((z ^ (z >> 31)) % list.len() as u64) as usize;
        if !picks.contains(&i) {
            picks.push(i);
        }
    }
    picks.into_iter().map(|i| list[i].clone()).collect()
}

/// Run `op` `iters` times split over `threads` threads; wall time of the whole.
fn parallel(threads: usize, iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for i in 0..iters / threads as u64 {
                    op(i * threads as u64 + t as u64);
                }
            });
        }
    });
    start.elapsed()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn sampling(c: &mut Criterion) {
    for (label, n) in [("10k", 10_000u64), ("1M", 1_000_000)] {
        let (buffer, locked) = filled(n);
        let mut group = c.benchmark_group(format!("sample6/{label}"));
        for threads in [1, cores()] {
            group.bench_function(format!("azr/{threads}threads"), |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, |i| drop(buffer.sample(D, 6, Some(i))))
                })
            });
            group.bench_function(format!("baseline_mutex_vec/{threads}threads"), |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, |i| drop(locked_sample(&locked, 6, i)))
                })
            });
        }
        group.finish();
    }
}

fn adding(c: &mut Criterion) {
    for (label, n) in [("10k", 10_000u64), ("1M", 1_000_000)] {
        let (buffer, _) = filled(n);
        let locked: Mutex<LockedList> = {
            let entries = buffer.live_entries(D);
            let hashes = entries.iter().map(|e| e.hash).collect();
            Mutex::new((entries, hashes))
        };
        // Fresh records for every measured add, numbered past the prefill.
        let next = std::sync::atomic::AtomicU64::new(n);
        let mut group = c.benchmark_group(format!("add/{label}"));
        group.sample_size(20);
        for threads in [1, cores()] {
            group.bench_function(format!("azr/{threads}threads"), |b| {
                b.iter_custom(|iters| {
                    let base = next.fetch_add(iters, std::sync::atomic::Ordering::Relaxed);
                    let records: Vec<Vec<u8>> = (base..base + iters).map(record).collect();
                    parallel(threads, iters, |i| {
                        buffer.add(D, &records[i as usize], 0).unwrap();
                    })
                })
            });
            group.bench_function(format!("baseline_mutex_vec/{threads}threads"), |b| {
                b.iter_custom(|iters| {
                    let base = next.fetch_add(iters, std::sync::atomic::Ordering::Relaxed);
                    let records: Vec<Vec<u8>> = (base..base + iters).map(record).collect();
                    parallel(threads, iters, |i| {
                        let mut guard = locked.lock().unwrap();
                        let bytes = &records[i as usize];
                        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                        let hash = content_hash(D, &value);
                        if guard.1.insert(hash) {
                            let id = guard.0.len() as u64;
                            guard.0.push(Arc::new(Entry {
                                id,
                                step: 0,
                                hash,
                                record: bytes.as_slice().into(),
                            }));
                        }
                    })
                })
            });
        }
        group.finish();
    }
}

#[path = "report.rs"]
mod report;
use report::mean_ns;

fn report() {
    println!(
        "\n{:<28} {:>14} {:>14} {:>8}",
        "benchmark", "azr ns/op", "baseline ns/op", "speedup"
    );
    let n = cores();
    for group in ["sample6/10k", "sample6/1M", "add/10k", "add/1M"] {
        for threads in [1, n] {
            let dir = group.replace('/', "_");
            let ours = mean_ns(&dir, &format!("azr_{threads}threads"));
            let base = mean_ns(&dir, &format!("baseline_mutex_vec_{threads}threads"));
            if let (Some(a), Some(b)) = (ours, base) {
                println!(
                    "{:<28} {a:>14.1} {b:>14.1} {:>7.2}x",
                    format!("{group} ({threads} threads)"),
                    b / a
                );
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    sampling(&mut c);
    adding(&mut c);
    c.final_summary();
    report();
}
