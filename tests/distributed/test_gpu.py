"""The GPU path on a CUDA machine (marker ``gpu``; skipped elsewhere with the reason).

DeepSpeed on the GPU computes the CPU torch trainer's update; `azr train`
runs self-play steps with DeepSpeed on a random-init model, checkpoints and
resumes. (vLLM on the GPU: tests/rollout/test_vllm*.py with marker ``vllm``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch", reason="needs the training stack: pip install 'azr[train]'")


def _gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("deepspeed", reason="needs DeepSpeed: pip install 'azr[deepspeed]'")


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_the_gpu_matches_the_cpu_update(stage: int, tiny_model_dir: Path, tmp_path: Path) -> None:
    _gpu()
    from tests.distributed.test_deepspeed import _assert_close, _launch, _params, _start

    _launch("torch", tiny_model_dir, tmp_path / "torch", stage)
    _launch("straight", tiny_model_dir, tmp_path / "ds", stage, gpu=True)
    _assert_close(_params(tmp_path / "torch"), _params(tmp_path / "ds"), _start(tiny_model_dir))


@pytest.mark.parametrize("stage", [2, 3])
def test_selfplay_steps_with_deepspeed_on_the_gpu(stage: int, tmp_path: Path) -> None:
    _gpu()
    from tests.rl.test_train_e2e import seed_file, train_then_resume

    run = tmp_path / "run"
    args = (
        "trainer.backend=deepspeed",
        f"trainer.zero_stage={stage}",
        # ZeRO-3 partitions parameters, so generation needs vLLM when it is installed.
        *(("rollout.backend=vllm", "rollout.gpu_memory_utilization=0.3") if stage == 3 else ()),
        f"selfplay.seed_buffer={seed_file(tmp_path / 'seeds.jsonl')}",
    )
    if stage == 3:
        pytest.importorskip("vllm", reason="ZeRO-3 generation needs vLLM: pip install 'azr[gpu]'")
    train_then_resume(run, 2, *args, timeout=1200)


def test_selfplay_steps_with_the_torch_trainer_in_bf16_on_the_gpu(tmp_path: Path) -> None:
    # One GPU without DeepSpeed or vLLM: transformers generation and the torch
    # trainer, bf16 weights with fp32 master copies; trains, checkpoints, resumes.
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from tests.rl.test_train_e2e import seed_file, train_then_resume

    run = tmp_path / "run"
    args = ("model.dtype=bfloat16", f"selfplay.seed_buffer={seed_file(tmp_path / 'seeds.jsonl')}")
    lines = train_then_resume(run, 2, *args, timeout=900)
    assert all(line["train/response_tokens"] > 0 for line in lines)
    master = torch.load(run / "step_3" / "optimizer.pt", weights_only=True)["master"]
    assert master and all(t.dtype == torch.float32 for t in master.values())
