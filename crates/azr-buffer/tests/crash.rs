//! Crash safety: a child process adds and flushes in a loop (compacting now
//! and then) and is killed with SIGKILL at random moments. After every kill the
//! folder reopens with every entry flushed before the kill, exactly once, and
//! no corruption. 50 rounds on one folder, so later rounds reopen what earlier
//! kills left.

use azr_buffer::{BufferConfig, TaskBuffer, TaskType};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHILD_DIR: &str = "AZR_BUFFER_CRASH_DIR";
const CHILD_ROUND: &str = "AZR_BUFFER_CRASH_ROUND";
const ROUNDS: u64 = 50;

fn record(round: u64, j: u64) -> Vec<u8> {
    // Every fifth record is large, so kills often land in the middle of a write.
    let pad = if j.is_multiple_of(5) {
        "x".repeat(6_000)
    } else {
        String::new()
    };
    format!(r#"{{"program": "def f(a):\n    return a", "input": "{round}, {j}", "round": {round}, "j": {j}, "pad": "{pad}"}}"#)
        .into_bytes()
}

#[test]
#[ignore = "the child process of `sigkill_loses_nothing_flushed`, which runs it"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("run by sigkill_loses_nothing_flushed");
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let buffer = TaskBuffer::open(&dir, BufferConfig::default()).unwrap();
    let mut out = std::io::stdout().lock();
    let mut next = 0u64;
    for batch in 0u64.. {
        let n = 1 + batch % 7;
        let records: Vec<Vec<u8>> = (next..next + n).map(|j| record(round, j)).collect();
        let items: Vec<(TaskType, &[u8], u64)> = records
            .iter()
            .map(|r| (TaskType::ALL[(batch % 3) as usize], r.as_slice(), round))
            .collect();
        buffer.add_many(&items).unwrap();
        next += n;
        if batch % 200 == 199 {
            buffer.compact().unwrap();
        } else {
            buffer.flush().unwrap();
        }
        // Acknowledge only what is durable.
        writeln!(out, "acked {next}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_loses_nothing_flushed() {
    let dir = std::env::temp_dir().join(format!("azr-buffer-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut acked = Vec::new();
    let mut rng = 0x5EEDu64;
    let mut torn_rounds = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &dir)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let last = Arc::new(AtomicU64::new(0));
        let reader = {
            let last = last.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                        last.store(n, Ordering::SeqCst);
                    }
                }
            })
        };
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(30 + (rng >> 33) % 170));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.push(last.load(Ordering::SeqCst));

        let buffer = TaskBuffer::open(&dir, BufferConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: reopening failed: {e}"));
        torn_rounds += usize::from(buffer.recovery().torn_bytes > 0);
        let mut seen = HashSet::new();
        let mut ids = HashSet::new();
        for task in TaskType::ALL {
            for entry in buffer.live_entries(task) {
                let value = entry.json();
                let key = (
                    value["round"].as_u64().unwrap(),
                    value["j"].as_u64().unwrap(),
                );
                assert!(
                    seen.insert(key),
                    "round {round}: entry {key:?} came back twice"
                );
                assert!(
                    ids.insert(entry.id),
                    "round {round}: id {} came back twice",
                    entry.id
                );
            }
        }
        for (r, &n) in acked.iter().enumerate() {
            for j in 0..n {
                assert!(
                    seen.contains(&(r as u64, j)),
                    "round {round}: flushed entry ({r}, {j}) of {n} is lost"
                );
            }
        }
    }
    assert!(
        acked.iter().filter(|&&n| n > 0).count() as u64 > ROUNDS / 2,
        "the child rarely got going: {acked:?}"
    );
    eprintln!("{ROUNDS} SIGKILL rounds; torn tails dropped in {torn_rounds}; acknowledged per round: {acked:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
