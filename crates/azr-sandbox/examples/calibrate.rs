//! Measure guest speed: fuel consumed per second of wall time on a few
//! workloads, to check `FUEL_PER_SECOND` on a new machine.
//!
//! `cargo run --release -p azr-sandbox --example calibrate`

use azr_sandbox::{ErrorKind, Sandbox, SandboxConfig};
use std::time::Duration;

const WORKLOADS: &[(&str, &str)] = &[
    ("loop", "def f(n):\n    s = 0\n    for i in range(n):\n        s += i * i % 7\n    return s"),
    ("strings", "def f(n):\n    return len(''.join(str(i)[::-1].upper() for i in range(n)))"),
    ("dict", "def f(n):\n    d = {}\n    for i in range(n):\n        d[i % 1000] = d.get(i % 1000, 0) + i\n    return len(d)"),
    ("sort", "def f(n):\n    l = [(i * 7919) % 100003 for i in range(n)]\n    l.sort()\n    return l[n // 2]"),
];

fn main() -> Result<(), azr_sandbox::Error> {
    // A budget of 1 s of fuel: the wall time it takes to run out is 1 s of
    // this machine's guest time at the configured rate.
    let config = SandboxConfig {
        timeout: Duration::from_secs(1),
        wall_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let sandbox = Sandbox::new(config)?;
    for (name, program) in WORKLOADS {
        let outcome = sandbox.run(program, "10**12");
        assert_eq!(
            outcome.error.as_ref().map(|e| e.kind),
            Some(ErrorKind::Timeout)
        );
        let rate = azr_sandbox::FUEL_PER_SECOND as f64 / outcome.elapsed.as_secs_f64();
        println!(
            "{name:>8}: {:.2e} fuel/s on this machine (configured {:.2e})",
            rate,
            azr_sandbox::FUEL_PER_SECOND as f64
        );
    }
    Ok(())
}
