//! Median latency of a trivial program in a fresh instance.
//!
//! `cargo run --release -p azr-sandbox --example latency -- [RUNS]`

use azr_sandbox::{Sandbox, SandboxConfig};
use std::time::Instant;

fn main() -> Result<(), azr_sandbox::Error> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let outcome = sandbox.run("def f(x):\n    return x + 1", "1");
            assert_eq!(outcome.output.as_deref(), Some("2"));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "fresh instance, trivial program: median {:.3} ms, p90 {:.3} ms over {runs} runs",
        times[runs / 2],
        times[runs * 9 / 10]
    );
    Ok(())
}
