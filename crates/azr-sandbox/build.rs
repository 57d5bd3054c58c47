//! Builds the guest: CPython 3.14 compiled to WebAssembly, pre-initialized with
//! our `guest/azr_guest.py` by componentize-py, as two snapshots, so the
//! determinism check can run a program once in each and catch outputs that
//! depend on the order of sets of strings. Each pre-initialization draws its
//! own string-hash secret from the build machine's randomness (componentize-py
//! passes no environment to it, so PYTHONHASHSEED cannot fix it): the two
//! snapshots' secrets differ, and differ from build to build.
//!
//! componentize-py is found as `$AZR_COMPONENTIZE_PY`, then `componentize-py`
//! on PATH, then `python3 -c 'import componentize_py'` (pip's isolated build
//! environment for `pip install .` provides it from pyproject's build requires).
//! Packagers with prebuilt guests can set `AZR_GUEST_WASM_0`/`AZR_GUEST_WASM_1`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn componentize_command() -> Command {
    if let Ok(path) = env::var("AZR_COMPONENTIZE_PY") {
        return Command::new(path);
    }
    let on_path = Command::new("componentize-py").arg("--version").output();
    if matches!(on_path, Ok(ref out) if out.status.success()) {
        return Command::new("componentize-py");
    }
    let python = env::var("PYTHON_SYS_EXECUTABLE")
        .or_else(|_| env::var("PYO3_PYTHON"))
        .unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.args(["-c", "import sys, componentize_py; sys.argv[0] = 'componentize-py'; sys.exit(componentize_py.script())"]);
    cmd
}

fn build_snapshot(guest: &Path, out: &Path) {
    let status = componentize_command()
        .arg("-d")
        .arg(guest.join("wit"))
        .args(["-w", "executor", "componentize", "azr_guest", "-p"])
        .arg(guest)
        .arg("-o")
        .arg(out)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .unwrap_or_else(|e| {
            panic!("azr-sandbox: cannot run componentize-py ({e}); install it with `pip install componentize-py==0.25.1`")
        });
    assert!(
        status.success(),
        "azr-sandbox: componentize-py failed to build the guest ({status})"
    );
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let guest = manifest.join("guest");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!(
        "cargo:rerun-if-changed={}",
        guest.join("azr_guest.py").display()
    );
    println!("cargo:rerun-if-changed={}", guest.join("wit").display());
    println!("cargo:rerun-if-env-changed=AZR_COMPONENTIZE_PY");
    for i in 0..2 {
        let var = format!("AZR_GUEST_WASM_{i}");
        println!("cargo:rerun-if-env-changed={var}");
        let out = out_dir.join(format!("guest-{i}.wasm"));
        match env::var(&var) {
            Ok(prebuilt) => {
                std::fs::copy(&prebuilt, &out)
                    .unwrap_or_else(|e| panic!("azr-sandbox: {var}={prebuilt}: {e}"));
            }
            Err(_) => build_snapshot(&guest, &out),
        }
    }
}
