//! Validate a proposal, check answers, and time fresh instances.
//!
//! `cargo run --release -p azr-sandbox --example sandbox`

use azr_sandbox::{Sandbox, SandboxConfig};
use std::time::Instant;

fn main() -> Result<(), azr_sandbox::Error> {
    let start = Instant::now();
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    println!(
        "sandbox ready in {:.2?} (guest compiled or loaded from {})",
        start.elapsed(),
        azr_sandbox::cache_dir().display()
    );

    let program = "def f(words, n):\n    return sorted(words, key=len)[:n]";
    let proposal = sandbox.validate(program, "['pear', 'fig', 'banana'], 2");
    println!(
        "validate: output={:?} error={:?}",
        proposal.output, proposal.error
    );
    let gold = proposal.output.expect("a valid proposal");

    println!(
        "deduction {:?}: {}",
        "['fig', 'pear']",
        sandbox.check_deduction(&gold, "['fig', 'pear']").correct
    );
    println!(
        "abduction {:?}: {}",
        "['kiwi', 'fig', 'melon'], 2",
        sandbox
            .check_abduction(program, &gold, "['kiwi', 'fig', 'melon'], 2")
            .correct
    );
    println!(
        "abduction {:?}: {}",
        "0) or (True",
        sandbox
            .check_abduction(program, &gold, "0) or (True")
            .correct
    );

    let hostile = sandbox.run("def f():\n    while True:\n        pass", "");
    println!(
        "infinite loop: {:?} in {:.2?}",
        hostile.error.map(|e| e.kind),
        hostile.elapsed
    );

    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        sandbox.run("def f(x):\n    return x + 1", "1");
    }
    println!(
        "trivial program, one thread: {:.3} ms per fresh instance",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    Ok(())
}
