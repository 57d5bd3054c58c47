#!/usr/bin/env bash
# Prepare what the GPU check (check.sh) carries to a CUDA machine that has no
# network and no Rust: ./.whl/ (git-ignored) with azr's abi3 wheel, DeepSpeed
# and the few packages DeepSpeed needs that such a machine lacks (built or
# downloaded here for CPython 3.12 on x86-64; typing-extensions too, since
# pydantic-core needs a newer one than such an image may hold), and the CRUXEval file the
# step-phase benchmark draws its programs from. About 30 MB.
#
#   bash benches/gpu/wheels.sh            (here, with the network)
#   then run check.sh there, carrying .whl
#
# vLLM and Ray do not travel (hundreds of MB): their GPU tests skip, saying so,
# unless the machine has them installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.whl
shared=${AZR_SHARED_DATA:-../shared/data}
python=${PYTHON:-python3}

rm -rf "$out"
mkdir -p "$out/data/eval/code"
"$python" -m pip install -q "componentize-py==0.25.1" "maturin>=1.9,<2"
# One abi3 wheel serves every CPython >= 3.10; it shares target/ with `make test`.
"$python" -m maturin build --release --out "$out"
# DeepSpeed publishes only an sdist; without DS_BUILD_OPS its wheel is pure Python
# (ops compile on first use, which the trainer's torch optimizer never needs).
DS_BUILD_OPS=0 "$python" -m pip wheel -q --no-deps --no-build-isolation "deepspeed==0.19.8" -w "$out"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$out" \
    "pydantic==2.13.4" "pydantic-core==2.46.4" "annotated-types==0.7.0" "typing-inspection==0.4.2" \
    "hjson==3.1.0" "typing-extensions==4.16.0"
cp "$shared/eval/code/cruxeval.jsonl" "$out/data/eval/code/"
ls -la "$out"
du -sh "$out"
