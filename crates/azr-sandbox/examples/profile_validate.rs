//! Where the time of validating a proposal goes: CRUXEval programs validated
//! one after another on one thread, against the pieces a validation is made
//! of (a trivial fresh instance, one `run` of the same program, one judge
//! comparison), so the per-program cost can be split.
//!
//! `cargo run --release -p azr-sandbox --example profile_validate -- [N] [CRUXEVAL_JSONL]`
//!
//! `AZR_PROFILE_ONLY=trivial|run|judge|validate|batch` runs one part;
//! `AZR_PROFILE_WORKERS` sizes the batch pool (default 2).
//!
//! With `AZR_WASM_PERFMAP=1`, Wasmtime writes `/tmp/perf-<pid>.map` so that
//! `perf record` / `perf report` can name the guest's compiled functions.

use azr_sandbox::{Job, Sandbox, SandboxConfig};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let path = args
        .next()
        .unwrap_or_else(|| "../shared/data/eval/code/cruxeval.jsonl".into());
    let pairs: Vec<(String, String, String)> = std::fs::read_to_string(&path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("code"), s("input"), s("output"))
        })
        .collect();
    let workers: usize = std::env::var("AZR_PROFILE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let sandbox = Sandbox::new(SandboxConfig {
        workers,
        ..SandboxConfig::default()
    })?;
    for (program, input, _) in pairs.iter().take(20) {
        sandbox.validate(program, input);
    }
    let per_program = |label: &str, f: &dyn Fn(&str, &str, &str)| {
        let start = Instant::now();
        for (program, input, output) in &pairs {
            f(program, input, output);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / pairs.len() as f64;
        println!("{label:<44} {ms:>8.3} ms per program");
        ms
    };
    let only = std::env::var("AZR_PROFILE_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if want("trivial") {
        per_program("fresh instance, trivial program", &|_, _, _| {
            sandbox.run("def f(x):\n    return x + 1", "1");
        });
    }
    if want("run") {
        per_program("run (one fresh instance)", &|p, i, _| {
            sandbox.run(p, i);
        });
    }
    if want("judge") {
        per_program("judge (output vs recorded output)", &|_, _, o| {
            let _ = sandbox.judge(&[(o.to_string(), o.to_string())]);
        });
    }
    if want("validate") {
        per_program("validate (2 fresh instances + judge)", &|p, i, _| {
            sandbox.validate(p, i);
        });
    }
    if want("batch") {
        let jobs: Vec<Job> = pairs
            .iter()
            .map(|(program, input, _)| Job::Validate {
                program: program.clone(),
                input: input.clone(),
            })
            .collect();
        let start = Instant::now();
        sandbox.execute_batch(&jobs);
        let ms = start.elapsed().as_secs_f64() * 1e3 / pairs.len() as f64;
        let label = format!("validate_batch on {workers} workers");
        println!("{label:<44} {ms:>8.3} ms per program");
    }
    Ok(())
}
