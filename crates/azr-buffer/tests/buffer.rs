//! Semantics of the buffer: dedup, sampling, windows, eviction, durability, bad input.

use azr_buffer::{BufferConfig, Error, Eviction, TaskBuffer, TaskType};
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const D: TaskType = TaskType::Deduction;

fn record(i: usize) -> Vec<u8> {
    format!(
        r#"{{"program": "def f(a):\n    return a + {i}", "input": "1", "output": "{}"}}"#,
        i + 1
    )
    .into_bytes()
}

fn filled(n: usize, config: BufferConfig) -> TaskBuffer {
    // A full reservoir passes over most newcomers; nothing else refuses a new record.
    let all_stored = config.eviction != Eviction::Reservoir;
    let buffer = TaskBuffer::new(config).unwrap();
    for i in 0..n {
        let stored = buffer.add(D, &record(i), i as u64 / 10).unwrap();
        assert!(stored || !all_stored);
    }
    buffer
}

fn ids(entries: &[std::sync::Arc<azr_buffer::Entry>]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("azr-buffer-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A new durable buffer folder `name` holding records `0..n` of task type D,
/// flushed and closed.
fn written(name: &str, n: usize, config: BufferConfig) -> PathBuf {
    let dir = temp_dir(name);
    let buffer = TaskBuffer::open(&dir, config).unwrap();
    for i in 0..n {
        buffer.add(D, &record(i), 0).unwrap();
    }
    buffer.flush().unwrap();
    dir
}

/// How many entries the durable buffer in `dir` holds when opened again.
fn reopened_len(dir: &Path) -> usize {
    TaskBuffer::open(dir, BufferConfig::default())
        .unwrap()
        .len()
}

fn capacity(n: usize) -> BufferConfig {
    BufferConfig {
        capacity: Some(n),
        ..Default::default()
    }
}

/// The reason and offset of the corruption error an open gave.
fn corrupt(opened: Result<TaskBuffer, Error>) -> (String, u64) {
    match opened {
        Err(Error::Corrupt { reason, offset, .. }) => (reason, offset),
        other => panic!(
            "expected a corruption error, got {:?}",
            other.map(|b| b.len())
        ),
    }
}

#[test]
fn duplicates_are_refused_and_counted() {
    let buffer = filled(3, BufferConfig::default());
    let reformatted = br#"{"program": "def f(a):   \r\n\n    return a + 1\n", "input": " 1 ", "output": "other"}"#;
    assert!(!buffer.add(D, reformatted, 5).unwrap());
    assert!(
        buffer.add(TaskType::Abduction, reformatted, 5).unwrap(),
        "dedup is per task type"
    );
    assert_eq!(buffer.stats(D).duplicates, 1);
    assert_eq!(buffer.count(D), 3);
    let off = TaskBuffer::new(BufferConfig {
        dedup: false,
        ..Default::default()
    })
    .unwrap();
    assert!(off.add(D, &record(0), 0).unwrap() && off.add(D, &record(0), 0).unwrap());
}

#[test]
fn duplicates_within_one_batch_are_refused() {
    let buffer = TaskBuffer::new(BufferConfig::default()).unwrap();
    let r = record(1);
    let got = buffer
        .add_many(&[(D, &r, 0), (D, &r, 0), (D, &record(2), 0)])
        .unwrap();
    assert_eq!(got, vec![true, false, true]);
}

proptest! {
    #[test]
    fn a_draw_never_repeats_an_entry(n in 0usize..200, k in 0usize..40, seed in any::<u64>()) {
        let buffer = filled(n, BufferConfig::default());
        let draw = buffer.sample(D, k, Some(seed));
        prop_assert_eq!(draw.len(), k.min(n));
        let unique: HashSet<u64> = draw.iter().map(|e| e.id).collect();
        prop_assert_eq!(unique.len(), draw.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_draw(n in 1usize..100, k in 1usize..10, seed in any::<u64>()) {
        let buffer = filled(n, BufferConfig::default());
        prop_assert_eq!(ids(&buffer.sample(D, k, Some(seed))), ids(&buffer.sample(D, k, Some(seed))));
    }

    #[test]
    fn fifo_keeps_the_newest_and_counts_the_rest(cap in 1usize..50, n in 0usize..200) {
        let buffer = filled(n, BufferConfig { capacity: Some(cap), ..Default::default() });
        let live = ids(&buffer.live_entries(D));
        let expected: Vec<u64> = (n.saturating_sub(cap) as u64..n as u64).collect();
        prop_assert_eq!(live, expected);
        prop_assert_eq!(buffer.stats(D).evicted, n.saturating_sub(cap) as u64);
    }

    #[test]
    fn reservoir_keeps_capacity_and_counts_the_rest(cap in 1usize..50, n in 0usize..200, seed in any::<u64>()) {
        let buffer = filled(n, BufferConfig { capacity: Some(cap), eviction: Eviction::Reservoir, seed, ..Default::default() });
        prop_assert_eq!(buffer.count(D), n.min(cap));
        prop_assert_eq!(buffer.stats(D).evicted, n.saturating_sub(cap) as u64);
        let unique: HashSet<u64> = ids(&buffer.live_entries(D)).into_iter().collect();
        prop_assert_eq!(unique.len(), n.min(cap));
    }

    #[test]
    fn solver_batches_take_recent_entries_first(n in 1usize..120, batch in 1usize..80, since in 0u64..14, seed in any::<u64>()) {
        // `filled` puts entry i at step i / 10.
        let buffer = filled(n, BufferConfig::default());
        let got = buffer.solver_batch(D, batch, since, Some(seed));
        let recent: HashSet<u64> = ids(&buffer.recent(D, since)).into_iter().collect();
        prop_assert_eq!(got.len(), batch);
        let distinct_recent: HashSet<u64> = got.iter().map(|e| e.id).filter(|id| recent.contains(id)).collect();
        let from_recent = distinct_recent.len();
        prop_assert_eq!(from_recent, recent.len().min(batch));
        if n >= batch {
            let unique: HashSet<u64> = ids(&got).into_iter().collect();
            prop_assert_eq!(unique.len(), batch, "no repeats while the lane has enough entries");
        }
    }
}

#[test]
fn sampling_is_uniform_by_chi_square() {
    let (n, k, draws) = (20, 6, 20_000u64);
    let buffer = filled(n, BufferConfig::default());
    let mut counts = vec![0f64; n];
    for seed in 0..draws {
        for e in buffer.sample(D, k, Some(seed)) {
            counts[e.id as usize] += 1.0;
        }
    }
    let expected = draws as f64 * k as f64 / n as f64;
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    // 19 degrees of freedom: P(chi2 > 43.82) = 0.001 under uniformity.
    assert!(chi2 < 43.82, "chi-square {chi2:.1} with counts {counts:?}");
}

#[test]
fn reservoir_keeps_a_uniform_sample_of_everything_seen() {
    // Entry i survives with probability cap / n whatever its position.
    let (cap, n, trials) = (10, 40, 4000u64);
    let mut survived = vec![0f64; n];
    for seed in 0..trials {
        let buffer = filled(
            n,
            BufferConfig {
                capacity: Some(cap),
                eviction: Eviction::Reservoir,
                seed,
                ..Default::default()
            },
        );
        for e in buffer.live_entries(D) {
            survived[e.id as usize] += 1.0;
        }
    }
    let expected = trials as f64 * cap as f64 / n as f64;
    let chi2: f64 = survived
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    // 39 degrees of freedom: P(chi2 > 72.06) = 0.001.
    assert!(chi2 < 72.06, "chi-square {chi2:.1}");
}

#[test]
fn recent_window_is_by_step() {
    let buffer = filled(35, BufferConfig::default()); // steps 0,0,..,3 (10 per step)
    assert_eq!(ids(&buffer.recent(D, 3)), (30..35).collect::<Vec<_>>());
    assert_eq!(buffer.recent(D, 4).len(), 0);
    assert_eq!(buffer.recent(D, 0).len(), 35);
    // Out-of-order steps are still found.
    buffer.add(D, &record(100), 1).unwrap();
    assert_eq!(buffer.recent(D, 3).len(), 5);
    assert_eq!(buffer.recent(D, 1).len(), 26);
}

#[test]
fn solver_batch_backfills_with_repeats_only_when_short() {
    let buffer = filled(3, BufferConfig::default());
    let batch = buffer.solver_batch(D, 8, 100, Some(1));
    assert_eq!(batch.len(), 8);
    let unique: HashSet<u64> = ids(&batch).into_iter().collect();
    assert_eq!(unique.len(), 3);
    assert!(buffer
        .solver_batch(TaskType::Induction, 8, 0, Some(1))
        .is_empty());
}

#[test]
fn union_draws_cover_both_buffers() {
    let buffer = TaskBuffer::new(BufferConfig::default()).unwrap();
    for i in 0..10 {
        buffer.add(TaskType::Deduction, &record(i), 0).unwrap();
        buffer.add(TaskType::Abduction, &record(i), 0).unwrap();
    }
    let both = [TaskType::Deduction, TaskType::Abduction];
    let draw = buffer.sample_union(&both, 20, Some(3), None).unwrap();
    assert_eq!(draw.len(), 20);
    let only_abduction = buffer
        .sample_union(&both, 5, Some(3), Some(&[0.0, 1.0]))
        .unwrap();
    assert!(only_abduction
        .iter()
        .all(|(t, _)| *t == TaskType::Abduction));
    assert!(matches!(
        buffer.sample_union(&both, 5, None, Some(&[1.0])),
        Err(Error::Config(_))
    ));
}

#[test]
fn bad_records_and_task_types_are_clear_errors() {
    let buffer = TaskBuffer::new(BufferConfig::default()).unwrap();
    assert!(matches!(
        buffer.add(D, b"not json", 0),
        Err(Error::BadRecord(_))
    ));
    assert!(matches!(
        buffer.add(D, b"[1, 2]", 0),
        Err(Error::BadRecord(_))
    ));
    let err = "deductoin".parse::<TaskType>().unwrap_err();
    assert!(err.to_string().contains("deductoin"));
    // A batch with one bad record adds nothing.
    assert!(buffer
        .add_many(&[(D, &record(1), 0), (D, b"{", 0)])
        .is_err());
    assert_eq!(buffer.len(), 0);
    assert!(matches!(
        TaskBuffer::new(BufferConfig {
            capacity: Some(0),
            ..Default::default()
        }),
        Err(Error::Config(_))
    ));
}

#[test]
fn reopening_restores_entries_counters_and_ids() {
    let dir = temp_dir("reopen");
    {
        let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
        for i in 0..50 {
            buffer
                .add(TaskType::ALL[i % 3], &record(i), i as u64)
                .unwrap();
        }
        buffer.add(D, &record(0), 9).unwrap();
        buffer.flush().unwrap();
    }
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(buffer.len(), 50);
    assert_eq!(buffer.stats(D).duplicates, 1);
    assert_eq!(buffer.recovery().torn_bytes, 0);
    assert!(buffer.add(D, &record(1000), 60).unwrap());
    let newest = buffer.recent(D, 60);
    assert_eq!(newest[0].id, 50, "ids continue after a restart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compaction_keeps_everything_and_replays_eviction() {
    let dir = temp_dir("compact");
    let config = BufferConfig {
        capacity: Some(7),
        eviction: Eviction::Reservoir,
        seed: 11,
        ..Default::default()
    };
    let expected;
    {
        let buffer = TaskBuffer::open(&dir, config.clone()).unwrap();
        for i in 0..30 {
            buffer.add(D, &record(i), 0).unwrap();
        }
        buffer.compact().unwrap();
        for i in 30..60 {
            buffer.add(D, &record(i), 1).unwrap();
        }
        buffer.flush().unwrap();
        expected = ids(&buffer.live_entries(D));
    }
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(
        files.contains(&"snapshot-00000001.bin".to_string())
            && !files.contains(&"wal-00000000.log".to_string()),
        "{files:?}"
    );
    let buffer = TaskBuffer::open(&dir, config).unwrap();
    assert_eq!(
        ids(&buffer.live_entries(D)),
        expected,
        "reservoir decisions replay identically"
    );
    assert_eq!(buffer.stats(D).evicted, 53);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_tail_is_dropped_with_a_report() {
    let dir = written("torn", 10, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let len = std::fs::metadata(&log).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(len - 5).unwrap(); // cut the last record short
    drop(file);
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(buffer.len(), 9);
    assert!(buffer.recovery().torn_bytes > 0);
    assert!(
        buffer.add(D, &record(9), 1).unwrap(),
        "the lost record can be added again"
    );
    buffer.flush().unwrap();
    drop(buffer);
    assert_eq!(reopened_len(&dir), 10);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corruption_before_the_tail_is_an_error() {
    let dir = temp_dir("corrupt");
    {
        let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
        for i in 0..5 {
            buffer.add(D, &record(i), 0).unwrap();
        }
        buffer.compact().unwrap();
        buffer.add(D, &record(5), 0).unwrap();
        buffer.flush().unwrap();
    }
    let snapshot = dir.join("snapshot-00000001.bin");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&snapshot, &bytes).unwrap();
    let (reason, _) = corrupt(TaskBuffer::open(&dir, BufferConfig::default()));
    assert!(reason.contains("checksum"), "{reason}");
    std::fs::write(dir.join("wal-00000001.log"), b"garbage!and more").unwrap();
    std::fs::write(&snapshot, b"").unwrap();
    assert!(matches!(
        TaskBuffer::open(&dir, BufferConfig::default()),
        Err(Error::Corrupt { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damage_inside_the_last_log_is_an_error_not_a_torn_tail() {
    let dir = written("damaged-log", 100, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    bytes[200] ^= 0xFF; // inside the second or third record: 90+ whole records follow
    std::fs::write(&log, &bytes).unwrap();
    let (reason, offset) = corrupt(TaskBuffer::open(&dir, BufferConfig::default()));
    assert!(reason.contains("whole frames follow"), "{reason}");
    assert!(offset < 200, "{offset}");
    assert_eq!(
        std::fs::metadata(&log).unwrap().len() as usize,
        len,
        "the damaged log is left as it was"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_zero_filled_tail_is_torn() {
    // What a power loss can leave: the file grew, its last blocks never written.
    let dir = written("zero-tail", 10, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 8192));
    std::fs::write(&log, &bytes).unwrap();
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(buffer.len(), 10);
    assert_eq!(buffer.recovery().torn_bytes, 8192);
    drop(buffer);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_frame_azr_cannot_read_is_never_a_torn_tail() {
    // A whole frame with a right checksum and an unknown kind (a newer format).
    let dir = written("unknown-kind", 1, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let payload = [9u8, 0, 1, 2];
    bytes.extend((payload.len() as u32).to_le_bytes());
    bytes.extend(crc(&payload).to_le_bytes());
    bytes.extend(payload);
    std::fs::write(&log, &bytes).unwrap();
    let (reason, _) = corrupt(TaskBuffer::open(&dir, BufferConfig::default()));
    assert!(reason.contains("unknown frame kind"), "{reason}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// CRC-32 (IEEE), as the log's frames use; written out so the test does not
/// share the crate's code.
fn crc(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn a_failed_compaction_stops_writes_and_loses_nothing() {
    let dir = temp_dir("failed-compaction");
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    for i in 0..10 {
        buffer.add(D, &record(i), 0).unwrap();
    }
    // The new log's name is taken by a folder, so compaction cannot start it
    // after the new snapshot is in place.
    std::fs::create_dir(dir.join("wal-00000001.log")).unwrap();
    assert!(buffer.compact().is_err());
    let refused = buffer.add(D, &record(10), 0).unwrap_err();
    assert!(refused.to_string().contains("reopen"), "{refused}");
    assert!(buffer.flush().is_err());
    drop(buffer);
    std::fs::remove_dir(dir.join("wal-00000001.log")).unwrap();
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(buffer.len(), 10, "the snapshot holds every entry");
    assert!(buffer.add(D, &record(10), 0).unwrap());
    buffer.flush().unwrap();
    drop(buffer);
    assert_eq!(reopened_len(&dir), 11);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_record_too_large_to_read_back_is_refused() {
    let mut big = br#"{"program": "x", "input": ""#.to_vec();
    big.resize(big.len() + (256 << 20), b'a');
    big.extend(br#""}"#);
    let buffer = TaskBuffer::new(BufferConfig::default()).unwrap();
    let err = buffer.add(D, &big, 0).unwrap_err();
    assert!(matches!(err, Error::BadRecord(_)), "{err}");
    assert!(buffer.is_empty());
}

#[test]
fn huge_weights_draw_from_the_non_empty_pool() {
    // weight × entries overflows to infinity once a pool holds two entries.
    let buffer = filled(3, BufferConfig::default());
    for weights in [[1e308, 1.0], [f64::MAX, f64::MAX], [1.0, 1e-300]] {
        for seed in 0..50 {
            let drawn = buffer
                .sample_union(&[D, TaskType::Abduction], 2, Some(seed), Some(&weights))
                .unwrap();
            assert_eq!(drawn.len(), 2, "{weights:?}");
            assert!(drawn.iter().all(|(t, _)| *t == D));
        }
    }
    let zero = buffer
        .sample_union(&[D, TaskType::Abduction], 2, Some(1), Some(&[0.0, 5.0]))
        .unwrap();
    assert!(zero.is_empty(), "a weight of zero never draws its type");
}

#[test]
fn export_keeps_records_byte_for_byte() {
    let buffer = TaskBuffer::new(BufferConfig::default()).unwrap();
    let record = b"{\"program\": \"def f(a):\\n    return a\",\n \"input\": \"1\", \"big\": 1180591620717411303424, \"x\": 1.50}";
    buffer.add(D, record, 3).unwrap();
    let mut out = Vec::new();
    buffer.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("1180591620717411303424") && text.contains("1.50"),
        "{text}"
    );
    let copy = TaskBuffer::new(BufferConfig::default()).unwrap();
    assert_eq!(copy.import_jsonl(&out[..]).unwrap(), (1, 0));
    let mut again = Vec::new();
    copy.export_jsonl(&mut again).unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        text,
        "an export imports back unchanged"
    );
}

#[test]
fn an_unusable_folder_is_a_clear_error() {
    let file = temp_dir("notadir");
    std::fs::write(&file, b"x").unwrap();
    let err = TaskBuffer::open(file.join("buffer"), BufferConfig::default())
        .err()
        .expect("cannot create a folder in a file");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("notadir"), "{err}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_buffer_folder_is_opened_by_one_owner_at_a_time() {
    let dir = temp_dir("locked");
    let first = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert!(matches!(
        TaskBuffer::open(&dir, BufferConfig::default()),
        Err(Error::Locked { .. })
    ));
    drop(first);
    assert!(TaskBuffer::open(&dir, BufferConfig::default()).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jsonl_round_trip() {
    let source = filled(25, BufferConfig::default());
    source.add(TaskType::Induction, br#"{"program": "def f(x):\n    return x", "inputs": ["1", "2"], "message": "identity"}"#, 4).unwrap();
    let mut text = Vec::new();
    assert_eq!(source.export_jsonl(&mut text).unwrap(), 26);
    let target = TaskBuffer::new(BufferConfig::default()).unwrap();
    assert_eq!(target.import_jsonl(&text[..]).unwrap(), (26, 0));
    assert_eq!(target.import_jsonl(&text[..]).unwrap(), (0, 26));
    let a: Vec<_> = source
        .live_entries(D)
        .iter()
        .map(|e| (e.step, e.json()))
        .collect();
    let b: Vec<_> = target
        .live_entries(D)
        .iter()
        .map(|e| (e.step, e.json()))
        .collect();
    assert_eq!(a, b);
    let err = target
        .import_jsonl(
            &b"{\"task_type\": \"deduction\", \"step\": 1, \"record\": {}}\nnot json\n"[..],
        )
        .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
#[cfg(target_os = "linux")]
fn a_folder_without_permission_is_a_clear_error() {
    // sysfs refuses new folders even to root, so this holds wherever CI runs.
    let err = TaskBuffer::open("/sys/azr-buffer-test", BufferConfig::default())
        .err()
        .expect("sysfs is not writable");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/sys/azr-buffer-test") && text.contains("not permitted"),
        "{text}"
    );
}

#[test]
fn add_reports_whether_a_full_reservoir_kept_the_newcomer() {
    let buffer = TaskBuffer::new(BufferConfig {
        capacity: Some(3),
        eviction: Eviction::Reservoir,
        seed: 5,
        ..Default::default()
    })
    .unwrap();
    let stored: Vec<bool> = (0..40)
        .map(|i| buffer.add(D, &record(i), 0).unwrap())
        .collect();
    assert!(stored[..3].iter().all(|&s| s));
    // A full reservoir of 3 keeps about 3 ln(40/3) ≈ 8 of the other 37.
    let passed_over = stored.iter().filter(|&&s| !s).count();
    assert!((20..37).contains(&passed_over), "{stored:?}");
    // Ids follow the order of adding: every live entry was reported stored.
    for id in ids(&buffer.live_entries(D)) {
        assert!(
            stored[id as usize],
            "entry {id} is live but was reported as not stored"
        );
    }
}

#[test]
fn import_counts_only_real_duplicates() {
    let full = TaskBuffer::new(BufferConfig {
        capacity: Some(2),
        eviction: Eviction::Reservoir,
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    let lines: String = (0..30)
        .map(|i| {
            format!(
                "{{\"task_type\": \"deduction\", \"step\": 0, \"record\": {}}}\n",
                String::from_utf8(record(i)).unwrap()
            )
        })
        .collect();
    let twice = format!("{lines}{lines}");
    let (added, duplicates) = full.import_jsonl(twice.as_bytes()).unwrap();
    let stats = full.stats(D);
    // Everything the reservoir kept is a duplicate the second time; what it
    // passed over is neither added nor a duplicate (it counts as evicted).
    assert_eq!(duplicates as u64, stats.duplicates);
    assert!(duplicates <= 4, "{duplicates}");
    assert!(
        added >= 2 && added + duplicates < 60,
        "{added} {duplicates}"
    );
}

#[test]
fn a_folder_keeps_the_settings_its_log_replays_with() {
    let dir = written("settings", 20, capacity(5));
    // Replaying 20 adds without the capacity would bring back 15 evicted entries.
    let err = TaskBuffer::open(&dir, BufferConfig::default())
        .err()
        .expect("other settings");
    assert!(
        matches!(err, Error::Config(_)) && err.to_string().contains("\"capacity\":5"),
        "{err}"
    );
    let existing = TaskBuffer::open_existing(&dir).unwrap();
    assert_eq!((existing.len(), existing.stats(D).evicted), (5, 15));
    assert_eq!(existing.config().capacity, Some(5));
    existing.compact().unwrap();
    drop(existing);
    // After a compaction the log is empty: new settings apply from here on.
    let buffer = TaskBuffer::open(&dir, capacity(10)).unwrap();
    assert_eq!(buffer.len(), 5);
    for i in 20..30 {
        buffer.add(D, &record(i), 1).unwrap();
    }
    buffer.flush().unwrap();
    drop(buffer);
    let reopened = TaskBuffer::open_existing(&dir).unwrap();
    assert_eq!((reopened.len(), reopened.config().capacity), (10, Some(10)));
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_length_with_whole_frames_after_it_is_an_error() {
    // A length that now runs past the end looks like a write cut short; the
    // whole frames after it say otherwise.
    let dir = written("damaged-length", 10, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    bytes[8 + 2] ^= 0x01; // bit 16 of the first frame's length
    std::fs::write(&log, &bytes).unwrap();
    let (reason, _) = corrupt(TaskBuffer::open(&dir, BufferConfig::default()));
    assert!(reason.contains("whole frames follow"), "{reason}");
    assert_eq!(std::fs::metadata(&log).unwrap().len() as usize, len);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn opening_a_folder_without_settings_writes_no_guess() {
    let dir = written("no-settings", 10, capacity(5));
    std::fs::remove_file(dir.join("settings.json")).unwrap(); // a folder from before they were kept
    drop(TaskBuffer::open_existing(&dir).unwrap());
    assert!(
        !dir.join("settings.json").exists(),
        "the defaults were written down as its settings"
    );
    let reopened = TaskBuffer::open(&dir, capacity(5)).unwrap();
    assert_eq!(reopened.len(), 5);
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn salvage_keeps_every_entry_that_can_still_be_read() {
    let dir = written("salvage", 100, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[200] ^= 0xFF; // inside one record
    let third = bytes.len() * 2 / 3;
    bytes[third..third + 4].copy_from_slice(&[0xFF; 4]); // and another one's length, later on
    std::fs::write(&log, &bytes).unwrap();
    assert!(matches!(
        TaskBuffer::open(&dir, BufferConfig::default()),
        Err(Error::Corrupt { .. })
    ));
    let salvaged = TaskBuffer::salvage(&dir).unwrap();
    let kept = salvaged.len();
    assert!((96..=98).contains(&kept), "kept {kept} of 100");
    let r = salvaged.recovery();
    assert!(r.damaged_bytes > 0 && r.damaged_files.len() == 1, "{r:?}");
    assert_eq!(
        std::fs::read(dir.join("wal-00000000.log.damaged")).unwrap(),
        bytes,
        "the damaged file is kept"
    );
    assert!(salvaged.add(D, &record(100), 1).unwrap());
    salvaged.flush().unwrap();
    drop(salvaged);
    let reopened = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(reopened.len(), kept + 1, "it opens normally from then on");
    drop(reopened);
    let clean = TaskBuffer::salvage(&dir).unwrap();
    assert!(clean.recovery().damaged_files.is_empty());
    drop(clean);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn salvage_without_the_snapshot_header_never_reuses_an_id() {
    // A checkpoint's buffer is a snapshot and an empty log; the header holds the counters.
    let dir = temp_dir("salvage-header");
    {
        let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
        for i in 0..5 {
            buffer.add(D, &record(i), 0).unwrap();
        }
        buffer.compact().unwrap();
    }
    let snapshot = dir.join("snapshot-00000001.bin");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    bytes[8 + 8 + 3] ^= 0xFF; // inside the header frame's payload
    std::fs::write(&snapshot, &bytes).unwrap();
    let salvaged = TaskBuffer::salvage(&dir).unwrap();
    assert_eq!(salvaged.len(), 5);
    assert!(salvaged.stats(D).added >= 5);
    for i in 5..8 {
        assert!(salvaged.add(D, &record(i), 1).unwrap());
    }
    salvaged.flush().unwrap();
    drop(salvaged);
    let reopened = TaskBuffer::open_existing(&dir).unwrap();
    assert_eq!(
        reopened.len(),
        8,
        "entries added after the salvage survive a reopen"
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn salvage_reads_past_a_damaged_magic_and_unreadable_settings() {
    let dir = written("salvage-magic", 10, BufferConfig::default());
    let log = dir.join("wal-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[0] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap();
    std::fs::write(dir.join("settings.json"), b"{not json").unwrap();
    assert!(TaskBuffer::open_existing(&dir).is_err());
    let salvaged = TaskBuffer::salvage(&dir).unwrap();
    assert_eq!(salvaged.len(), 10);
    drop(salvaged);
    assert_eq!(TaskBuffer::open_existing(&dir).unwrap().len(), 10);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_folder_keeps_the_settings_it_was_first_opened_with() {
    let dir = temp_dir("new-folder-settings");
    let buffer = TaskBuffer::open_existing(&dir).unwrap(); // azr buffer import into a new folder
    for i in 0..10 {
        buffer.add(D, &record(i), 0).unwrap();
    }
    buffer.flush().unwrap();
    drop(buffer);
    assert!(dir.join("settings.json").exists());
    assert!(
        matches!(TaskBuffer::open(&dir, capacity(3)), Err(Error::Config(_))),
        "a log written unbounded does not replay with capacity 3"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
