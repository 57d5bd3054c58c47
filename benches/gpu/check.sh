#!/usr/bin/env bash
# The GPU checks in one command, for a CUDA machine prepared by wheels.sh:
#
#   bash benches/gpu/check.sh        (carrying .whl; results under $OUT)
#
# 1. The tests marked `gpu` (DeepSpeed ZeRO-2/3 on the GPU against the CPU
#    update; `azr train` self-play steps with DeepSpeed, checkpoint, resume;
#    the vLLM and two-GPU tests skip with their reason where vLLM or a second
#    GPU is missing). JUnit XML and the log go to $OUT.
# 2. Peak memory of the trainer's log-probs and entropies over 8k positions of
#    a 150k vocabulary, at once against in chunks (benches/logprob_memory.py).
# 3. Step phases (benches/step_phases.py) on a random-init model of
#    Qwen2.5-0.5B's shape (bf16, DeepSpeed ZeRO-2, transformers generation):
#    where a step's time goes on a GPU and the sandbox's share of it.
#
# Each part has its own deadline (AZR_GPU_TEST_S, AZR_GPU_BENCH_S), so the
# whole stays inside one device call (under 10 minutes: one call, no
# second try, in a 15-minute device budget); AZR_GPU_SHAPE=tiny makes a quick dry run
# on any machine, AZR_GPU_INSTALL=0 uses the installed azr instead of .whl.
# Exit status: that of the tests.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/azr-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AZR_SHARED_DATA="$PWD/.whl/data"
python=${PYTHON:-python3}
site=${AZR_GPU_SITE:-/tmp/azr-site}
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*"; }

if [ "${AZR_GPU_INSTALL:-1}" = 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    "$python" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("azr", "torch", "transformers", "deepspeed", "vllm", "ray"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), getattr(m, "__file__", ""))
    except Exception as exc:
        print(name, "missing:", type(exc).__name__, exc)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.device_count(), torch.version.cuda)
PY
} 2>&1 | tee "$OUT/machine.txt"

stamp "tests"
# Library versions there differ from CI's: their warnings are reported, not errors.
timeout --signal=TERM "${AZR_GPU_TEST_S:-320}" "$python" -m pytest -m gpu -rs -W default -p no:cacheprovider \
    --junitxml="$OUT/gpu-tests.xml" \
    tests/distributed/test_gpu.py tests/rollout/test_vllm.py tests/distributed/test_weight_sync.py \
    2>&1 | tee "$OUT/gpu-tests.log"
tests=${PIPESTATUS[0]}
stamp "tests exit $tests"

stamp "log-prob memory"
timeout --signal=TERM 60 "$python" benches/logprob_memory.py --tokens 8192 --json "$OUT/logprob_memory_gpu.json" \
    2>&1 | tee "$OUT/logprob_memory.log"

shape=${AZR_GPU_SHAPE:-0.5b}
stamp "step phases, $shape"
model=$(mktemp -d)/model
"$python" -m azr model tiny --out "$model" --shape "$shape" 2>&1 | tee "$OUT/step_phases.log"
timeout --signal=TERM "${AZR_GPU_BENCH_S:-140}" "$python" benches/step_phases.py --config tiny --steps 2 --scan 80 \
    --result "$OUT/step_phases_${shape}.json" \
    "model.path=$model" model.dtype=bfloat16 trainer.backend=deepspeed trainer.zero_stage=2 \
    rollout.max_response_tokens=256 trainer.lr=1e-6 \
    2>&1 | tee -a "$OUT/step_phases.log"
stamp "step phases exit ${PIPESTATUS[0]}"
exit "$tests"
