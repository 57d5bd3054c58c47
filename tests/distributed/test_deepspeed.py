"""The DeepSpeed trainer on CPU (gloo): the same update as the torch trainer
under ZeRO-2 and ZeRO-3, and checkpoints that resume on another world size.

Each case runs in fresh processes (a process holds one process group)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="needs DeepSpeed: pip install 'azr[deepspeed]'")

import torch
from azr.distributed.guards import free_port

SCRIPT = Path(__file__).with_name("ds_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _launch(
    mode: str, model: Path, out: Path, stage: int, world: int = 1, gpu: bool = False, lora: bool = False
) -> None:
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            **({} if gpu else {"CUDA_VISIBLE_DEVICES": ""}),
            "PYTHONPATH": str(ROOT),
        }
        cmd = [
            sys.executable,
            str(SCRIPT),
            mode,
            str(model),
            str(out),
            str(stage),
            *(["lora"] if lora else []),
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    for p in procs:
        output, _ = p.communicate(timeout=600)
        assert p.returncode == 0, output[-4000:]


def _params(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "params.pt", weights_only=True)


def _assert_close(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]
) -> None:
    """Equal up to float rounding: within 1% of the largest change the updates made."""
    assert a.keys() == b.keys()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-3, "the updates changed nothing"
    assert worst < 0.01 * moved, (worst, moved)


def _start(model: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).state_dict()


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_matches_the_torch_trainer(stage: int, tiny_model_dir: Path, tmp_path: Path) -> None:
    _launch("torch", tiny_model_dir, tmp_path / "torch", stage)
    _launch("straight", tiny_model_dir, tmp_path / "ds", stage)
    _assert_close(_params(tmp_path / "torch"), _params(tmp_path / "ds"), _start(tiny_model_dir))


@pytest.mark.parametrize("stage", [2, 3])
def test_a_two_rank_checkpoint_resumes_on_one(stage: int, tiny_model_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    _launch("shard", tiny_model_dir, ckpt, stage, world=2)
    assert (ckpt / "model" / "model.safetensors").is_file() and (ckpt / "optimizer.safetensors").is_file()
    _launch("resume", tiny_model_dir, ckpt, stage)
    _launch("straight", tiny_model_dir, tmp_path / "straight", stage)
    _assert_close(_params(ckpt), _params(tmp_path / "straight"), _start(tiny_model_dir))


def test_lora_under_zero_matches_the_torch_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft: pip install 'azr[train]'")
    _launch("torch", tiny_model_dir, tmp_path / "torch", 2, lora=True)
    _launch("straight", tiny_model_dir, tmp_path / "ds", 2, lora=True)
    plain, zero = _params(tmp_path / "torch"), _params(tmp_path / "ds")
    assert any("lora_" in k for k in plain)
    base = {k: v for k, v in plain.items() if "lora_" not in k}
    start = _start(tiny_model_dir)
    # Base weights stay frozen; the adapters move the same way under both trainers.
    for k, v in base.items():
        assert torch.equal(v, start[k.replace("base_model.model.", "").replace(".base_layer", "")]), k
    lora = {k: v for k, v in plain.items() if "lora_" in k}
    zero_lora = {k: v for k, v in zero.items() if "lora_" in k}
    init = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in lora.items()}
    moved = max(float((lora[k] - init[k]).abs().max()) for k in lora if "lora_B" in k)
    worst = max(float((lora[k] - zero_lora[k]).abs().max()) for k in lora)
    assert moved > 1e-3 and worst < 0.01 * moved, (worst, moved)
