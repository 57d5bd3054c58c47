//! Limits and policy of a [`crate::Sandbox`].

use std::time::Duration;

/// Modules a proposal may not import (SPEC §3). Dotted names match whole
/// components: `os.path` bans `from os import path` but not `import os`.
pub const DEFAULT_BANNED: &[&str] = &[
    "logging",
    "random",
    "multiprocessing",
    "pebble",
    "subprocess",
    "threading",
    "datetime",
    "time",
    "hashlib",
    "hmac",
    "bcrypt",
    "calendar",
    "os.sys",
    "os.path",
    "sys.exit",
    "os.environ",
];

/// Guest fuel per second of `timeout`. Fuel counts WebAssembly instructions, so
/// a verdict of `timeout` is the same on every machine and under any load. The
/// rate is what one core of our reference machine (x86-64 VM) retires running
/// CPython-in-wasm: 4.9e9/s (sorting) to 6.8e9/s (loops, dicts), 1.2e10/s in
/// big-int arithmetic; `cargo run --release --example calibrate` re-measures it.
pub const FUEL_PER_SECOND: u64 = 6_000_000_000;

/// Limits and policy. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Guest CPU time per execution, enforced by fuel (deterministic).
    pub timeout: Duration,
    /// Wall-clock backstop per execution (epoch interruption), for when the host
    /// is oversubscribed; `None` means `2 × timeout + 1 s`.
    pub wall_timeout: Option<Duration>,
    /// Linear-memory limit per instance.
    pub memory_bytes: usize,
    /// Captured stdout and stderr together; the rest is dropped and counted.
    pub max_captured_bytes: usize,
    /// Longest allowed output repr; longer outputs are errors, never truncated.
    pub max_output_chars: usize,
    /// Longest program, input or answer text accepted.
    pub max_source_bytes: usize,
    /// Threads of the batch pool; `0` means one per core.
    pub workers: usize,
    /// Modules proposals may not use (checked by `validate`).
    pub banned_modules: Vec<String>,
    /// Fuel per second of `timeout`.
    pub fuel_per_second: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            wall_timeout: None,
            memory_bytes: 256 << 20,
            max_captured_bytes: 1 << 20,
            max_output_chars: 10_000,
            max_source_bytes: 1 << 20,
            workers: 0,
            banned_modules: DEFAULT_BANNED.iter().map(|s| s.to_string()).collect(),
            fuel_per_second: FUEL_PER_SECOND,
        }
    }
}

impl SandboxConfig {
    pub(crate) fn fuel(&self) -> u64 {
        let fuel = self.timeout.as_secs_f64() * self.fuel_per_second as f64;
        fuel.clamp(1.0, u64::MAX as f64) as u64
    }

    pub(crate) fn wall_deadline(&self) -> Duration {
        self.wall_timeout
            .unwrap_or(self.timeout * 2 + Duration::from_secs(1))
    }

    pub(crate) fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(crate::sandbox::MAX_WORKERS)
        }
    }
}
