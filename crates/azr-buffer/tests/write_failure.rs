//! A write that fails (a full disk, here a file-size limit) leaves no half
//! record behind, and the buffer takes no more writes until it is reopened.
//!
//! Alone in its test binary: the file-size limit holds for the whole process.

use azr_buffer::{BufferConfig, TaskBuffer, TaskType};

const D: TaskType = TaskType::Deduction;

fn record(i: usize, pad: usize) -> Vec<u8> {
    format!(
        r#"{{"program": "def f(a):\n    return a + {i}", "input": "1", "pad": "{}"}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}

fn set_file_size_limit(bytes: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain libc calls with valid arguments; writes past the limit
    // then fail with EFBIG instead of raising SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

#[test]
fn a_failed_write_leaves_whole_records_and_stops_writes() {
    let dir = std::env::temp_dir().join(format!("azr-buffer-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    for i in 0..10 {
        buffer.add(D, &record(i, 10), 0).unwrap();
    }
    buffer.flush().unwrap();
    let log = dir.join("wal-00000000.log");
    let flushed = std::fs::metadata(&log).unwrap().len();

    set_file_size_limit(flushed + 30_000);
    let batch: Vec<Vec<u8>> = (10..90).map(|i| record(i, 1000)).collect();
    let items: Vec<(TaskType, &[u8], u64)> = batch.iter().map(|r| (D, &r[..], 1)).collect();
    let err = buffer.add_many(&items).unwrap_err();
    set_file_size_limit(libc::RLIM_INFINITY);
    assert!(err.to_string().contains("wal-00000000.log"), "{err}");
    assert_eq!(buffer.len(), 10, "a failed batch adds nothing");
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        flushed,
        "the partial write is cut off"
    );
    let refused = buffer.add(D, &record(95, 10), 2).unwrap_err();
    assert!(refused.to_string().contains("reopen"), "{refused}");
    assert!(
        buffer.flush().is_err(),
        "a flush cannot promise what may be lost"
    );
    drop(buffer);

    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(buffer.len(), 10);
    assert_eq!(buffer.recovery().torn_bytes, 0);
    for i in 10..60 {
        buffer.add(D, &record(i, 10), 3).unwrap();
    }
    buffer.flush().unwrap();
    drop(buffer);
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    assert_eq!(buffer.len(), 60);
    let ids: std::collections::HashSet<u64> = buffer.live_entries(D).iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 60, "ids stay unique");
    drop(buffer);
    let _ = std::fs::remove_dir_all(&dir);
}
