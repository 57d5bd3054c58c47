//! Sandbox benchmarks, each reported as a ratio against a baseline measured in
//! the same run:
//!
//! - `fresh_instance`: a trivial program in a fresh instance, with our engine
//!   (pooling allocator, copy-on-write images, PAGEMAP_SCAN reset) against the
//!   same guest on Wasmtime's default on-demand allocator.
//! - `batch`: 64 trivial programs on all cores against one after another on one thread.
//! - `loop_heavy`: a CPU-bound function in the sandbox against native CPython
//!   (`python3`, timed inside the interpreter, so process start is not counted).
//!
//! `cargo bench -p azr-sandbox`; ratios are printed at the end.

use azr_sandbox::{Job, Sandbox, SandboxConfig};
use criterion::{BenchmarkId, Criterion};
use std::process::Command;
use std::time::Duration;

const TRIVIAL: &str = "def f(x):\n    return x + 1";
const LOOP_HEAVY: &str =
    "def f(n):\n    s = 0\n    for i in range(n):\n        s += i * i % 7\n    return s";
const LOOP_N: u32 = 300_000;

fn fresh_instance(c: &mut Criterion, pooled: &Sandbox, plain: &Sandbox) {
    let mut group = c.benchmark_group("fresh_instance");
    group.bench_function("azr", |b| b.iter(|| pooled.run(TRIVIAL, "1")));
    group.bench_function("baseline_on_demand", |b| b.iter(|| plain.run(TRIVIAL, "1")));
    group.finish();
}

fn batch(c: &mut Criterion, sandbox: &Sandbox) {
    let jobs: Vec<Job> = (0..64)
        .map(|i| Job::Run {
            program: TRIVIAL.into(),
            input: i.to_string(),
        })
        .collect();
    let mut group = c.benchmark_group("batch");
    group.bench_function(BenchmarkId::new("azr_all_cores", jobs.len()), |b| {
        b.iter(|| sandbox.execute_batch(&jobs))
    });
    group.bench_function(BenchmarkId::new("baseline_one_thread", jobs.len()), |b| {
        b.iter(|| jobs.iter().map(|j| sandbox.execute(j)).collect::<Vec<_>>())
    });
    group.finish();
}

/// Native CPython running `f(LOOP_N)` `iters` times, timed inside the interpreter.
fn native_cpython(iters: u64) -> Duration {
    let script = format!(
        "import time\n{LOOP_HEAVY}\nt = time.perf_counter()\nfor _ in range({iters}):\n    f({LOOP_N})\nprint(time.perf_counter() - t)"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 for the native baseline");
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds from python3");
    Duration::from_secs_f64(secs)
}

fn loop_heavy(c: &mut Criterion, sandbox: &Sandbox) {
    let input = LOOP_N.to_string();
    let mut group = c.benchmark_group("loop_heavy");
    group.sample_size(20);
    group.bench_function("azr", |b| b.iter(|| sandbox.run(LOOP_HEAVY, &input)));
    group.bench_function("baseline_native_cpython", |b| b.iter_custom(native_cpython));
    group.finish();
}

#[path = "report.rs"]
mod report;
use report::mean_ns;

fn report() {
    println!(
        "\n{:<16} {:>14} {:>14} {:>10}",
        "benchmark", "azr", "baseline", "ratio"
    );
    let rows = [
        (
            "fresh_instance",
            "azr",
            "baseline_on_demand",
            "baseline / azr (speed-up)",
        ),
        (
            "batch",
            "azr_all_cores/64",
            "baseline_one_thread/64",
            "baseline / azr (speed-up)",
        ),
        (
            "loop_heavy",
            "azr",
            "baseline_native_cpython",
            "azr / baseline (slowdown)",
        ),
    ];
    for (group, ours, base, meaning) in rows {
        if let (Some(a), Some(b)) = (mean_ns(group, ours), mean_ns(group, base)) {
            let ratio = if group == "loop_heavy" { a / b } else { b / a };
            println!(
                "{group:<16} {:>11.3} ms {:>11.3} ms {ratio:>9.2}x  {meaning}",
                a / 1e6,
                b / 1e6
            );
        }
    }
}

fn main() {
    let config = SandboxConfig::default();
    let pooled = Sandbox::new(config.clone()).expect("sandbox");
    let plain = Sandbox::without_pooling(config).expect("sandbox without pooling");
    let mut c = Criterion::default().configure_from_args();
    fresh_instance(&mut c, &pooled, &plain);
    batch(&mut c, &pooled);
    loop_heavy(&mut c, &pooled);
    c.final_summary();
    report();
}
