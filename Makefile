# Developer entry points. `make test` is what CI runs (via .ci/run).
PYTHON ?= python3
CARGO_TEST_FLAGS = --release --workspace --exclude azr-py
# componentize-py builds the sandbox guest in build.rs; cargo test needs it on PATH.
BUILD_TOOLS = "componentize-py==0.25.1" "maturin>=1.9,<2"

.PHONY: dev test test-rust test-python lint bench demo gpu-wheels

## Install azr in editable mode with the CPU training stack (DeepSpeed and Ray included, so the
## distributed path is tested on CPU) and the test and lint tools.
dev:
	$(PYTHON) -m pip install -q $(BUILD_TOOLS)
	$(PYTHON) -m pip install -q -e ".[dev,train,eval,deepspeed,ray]"

## Install, then run every test: cargo tests of the crates, pytest of the package.
test: dev test-rust test-python

test-rust:
	cargo test $(CARGO_TEST_FLAGS)

test-python:
	$(PYTHON) -m mypy.stubtest azr._core
	$(PYTHON) -m pytest

## Formatting, lints and types.
lint:
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	ruff format --check python tests benches
	ruff check python tests benches
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest azr._core

## Benchmarks: criterion (ratios against in-process baselines) and the CRUXEval executor comparison.
bench:
	cargo bench -p azr-sandbox
	$(PYTHON) benches/sandbox_throughput.py

demo:
	azr train

## What benches/gpu/check.sh carries to a CUDA machine without network or Rust (into .whl/).
gpu-wheels:
	bash benches/gpu/wheels.sh
