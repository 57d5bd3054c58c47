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
    mode: str,
    model: Path,
    out: Path,
    stage: int,
    world: int = 1,
    gpu: bool = False,
    lora: bool = False,
    kl: bool = False,
    epochs: bool = False,
    bf16: bool = False,
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
            *(["kl"] if kl else []),
            *(["epochs"] if epochs else []),
            *(["bf16"] if bf16 else []),
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    for p in procs:
        output, _ = p.communicate(timeout=600)
        assert p.returncode == 0, output[-12000:]


def _run_script(code: str, *args: str, unset: tuple[str, ...] = ()) -> str:
    """Run ``code`` in a fresh Python with this checkout importable; its stdout
    (a failure shows both streams)."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def _params(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "params.pt", weights_only=True)


def _assert_close(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]
) -> None:
    """Equal up to float rounding, measured against the change the updates made:
    the difference within 1% of the change in norm over all weights, and no weight
    off by more than 10% of the largest single change.

    Adam turns rounding noise into whole steps where a gradient is nearly zero
    (its update is g / (|g| + eps)), so a few isolated weights may differ by a
    few percent of a step when the batch is summed in another order (micro-batches
    or ranks); a wrong restore or a lost moment moves every weight instead."""
    assert a.keys() == b.keys()
    moved = sum(float(((a[k] - start[k]) ** 2).sum()) for k in a) ** 0.5
    apart = sum(float(((a[k] - b[k]) ** 2).sum()) for k in a) ** 0.5
    largest = max(float((a[k] - start[k]).abs().max()) for k in a)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert largest > 1e-3, "the updates changed nothing"
    assert apart < 0.01 * moved, (apart, moved)
    assert worst < 0.1 * largest, (worst, largest)


def _distances(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]
) -> tuple[float, ...]:
    moved = sum(float(((a[k] - start[k]) ** 2).sum()) for k in a) ** 0.5
    apart = sum(float(((a[k] - b[k]) ** 2).sum()) for k in a) ** 0.5
    largest = max(float((a[k] - start[k]).abs().max()) for k in a)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    return apart / moved, worst / largest


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


def test_a_two_rank_bf16_zero1_checkpoint_resumes_on_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    """ZeRO-1 in bf16 runs DeepSpeed's BF16 optimizer (fp32 gradient sums): its
    checkpoint, written by two ranks, resumes on one as an uninterrupted run goes.
    In bf16 the ranks' other summation order alone moves a few percent of the
    weights' change (Adam amplifies rounding where gradients are small), so the
    yardstick is a resume that lost its optimizer state: far from the truth."""
    ckpt = tmp_path / "ckpt"
    _launch("shard", tiny_model_dir, ckpt, 1, world=2, bf16=True)
    _launch("resume", tiny_model_dir, ckpt, 1, bf16=True)
    _launch("fresh", tiny_model_dir, ckpt, 1, bf16=True)
    _launch("straight", tiny_model_dir, tmp_path / "straight", 1, bf16=True)
    start, truth = _start(tiny_model_dir), _params(tmp_path / "straight")
    resumed, _ = _distances(_params(ckpt), truth, start)
    lost, _ = _distances(_params(ckpt / "fresh"), truth, start)
    print(f"bf16 ZeRO-1 resume: {resumed:.4f} of the change apart; without the optimizer state {lost:.4f}")
    assert resumed < 0.1 and resumed < lost / 4, (resumed, lost)


def test_lora_under_bf16_zero1_moves_only_the_adapters(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft: pip install 'azr[train]'")
    _launch("straight", tiny_model_dir, tmp_path / "ds", 1, lora=True, bf16=True)
    params, start = _params(tmp_path / "ds"), _start(tiny_model_dir)
    moved = {
        k
        for k, v in params.items()
        if "lora_" not in k
        and not torch.equal(
            v, start[k.replace("base_model.model.", "").replace(".base_layer", "")].to(torch.bfloat16).float()
        )
    }
    assert not moved, moved
    assert max(float(v.abs().max()) for k, v in params.items() if "lora_B" in k) > 1e-3


def test_a_one_rank_zero3_checkpoint_resumes_on_three(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Three ranks divide none of the tiny model's parameters: ZeRO-3 pads the last
    # rank's partition of each, which restoring the full tensors must allow for
    # (DeepSpeed's own setter slices past the end there). ZeRO-2 pads its flat
    # groups instead and restores through its fragment maps.
    ckpt = tmp_path / "ckpt"
    _launch("shard", tiny_model_dir, ckpt, 3, world=1)
    _launch("resume", tiny_model_dir, ckpt, 3, world=3)
    _launch("straight", tiny_model_dir, tmp_path / "straight", 3)
    _assert_close(_params(ckpt), _params(tmp_path / "straight"), _start(tiny_model_dir))


@pytest.mark.parametrize("option", ["kl", "epochs"])
def test_zero2_with_an_option_matches_the_torch_trainer(
    option: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """ZeRO-2 matches the torch trainer with a KL penalty, and with two epochs a
    batch (the second epoch's ratio compares against the first epoch's
    log-probs, per micro-batch, which ZeRO's engine keeps as the torch trainer
    does); and the option changes the update (with a KL penalty the second step
    starts away from the reference)."""
    _launch("torch", tiny_model_dir, tmp_path / "torch", 2, **{option: True})
    _launch("straight", tiny_model_dir, tmp_path / "ds", 2, **{option: True})
    _launch("torch", tiny_model_dir, tmp_path / "plain", 2)
    with_option = _params(tmp_path / "torch")
    _assert_close(with_option, _params(tmp_path / "ds"), _start(tiny_model_dir))
    plain = _params(tmp_path / "plain")
    assert max(float((with_option[k] - plain[k]).abs().max()) for k in plain) > 1e-4


@pytest.mark.parametrize("kl", [False, True], ids=["plain", "kl"])
def test_lora_under_zero_matches_the_torch_trainer(kl: bool, tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft: pip install 'azr[train]'")
    _launch("torch", tiny_model_dir, tmp_path / "torch", 2, lora=True, kl=kl)
    _launch("straight", tiny_model_dir, tmp_path / "ds", 2, lora=True, kl=kl)
    if kl:  # the reference is the policy with its adapters off, reached through DeepSpeed's engine
        _launch("torch", tiny_model_dir, tmp_path / "plain", 2, lora=True)
        with_kl, plain_lora = _params(tmp_path / "torch"), _params(tmp_path / "plain")
        assert max(float((with_kl[k] - plain_lora[k]).abs().max()) for k in plain_lora) > 1e-5
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


CPU_WHERE_CUDA_IS_VISIBLE = """
import sys
import torch
# While the model loads and DeepSpeed is imported and starts, a GPU is visible
# (what both look at); DeepSpeed is not imported before.
real = torch.cuda.is_available, torch.cuda.device_count
torch.cuda.is_available, torch.cuda.device_count = (lambda: True), (lambda: 1)
from azr.models import load_pretrained
from azr.train import Sample
from azr.train.deepspeed_trainer import DeepSpeedTrainer
assert "deepspeed" not in sys.modules
_, model = load_pretrained(sys.argv[1], {}, "float32", "model.path", device="cpu")
trainer = DeepSpeedTrainer(model, stage=2, dtype="float32", cpu=True, comm_timeout_s=60)
torch.cuda.is_available, torch.cuda.device_count = real  # torch's optimizer asks it too
from deepspeed.accelerator import get_accelerator
trainer.step([Sample([5, 6, 7], [8, 9], 1.0)])
print("accelerator", get_accelerator().device_name(), next(trainer.model.parameters()).device.type)
trainer.close()
"""


def test_cpu_ranks_stay_on_the_cpu_where_cuda_is_visible(tiny_model_dir: Path) -> None:
    """``resources.gpus_per_node: 0`` on a GPU machine: the model stays on the CPU and
    DeepSpeed uses its CPU accelerator (gloo) instead of moving it to GPU 0."""
    stdout = _run_script(CPU_WHERE_CUDA_IS_VISIBLE, str(tiny_model_dir), unset=("DS_ACCELERATOR",))
    assert "accelerator cpu cpu" in stdout, stdout[-2000:]


BF16_ACCUMULATES_IN_FP32 = """
import math
import sys
from azr.models import load_pretrained
from azr.train import Sample
from azr.train.deepspeed_trainer import DeepSpeedTrainer
_, model = load_pretrained(sys.argv[1], {}, "bfloat16", "model.path", device="cpu")
trainer = DeepSpeedTrainer(model, stage=int(sys.argv[2]), dtype="bfloat16", cpu=True, comm_timeout_s=60, micro_batch_size=1)
opt = trainer.engine.optimizer  # ZeRO-2/3's optimizer, or ZeRO-1's BF16_Optimizer
print("accumulates in", getattr(opt, "gradient_accumulation_dtype", None) or opt.grad_acc_dtype)
expected = trainer.pending_state_bytes()
out = trainer.step([Sample([5, 6, 7], [8, 9], 1.0), Sample([5, 6], [8, 9, 10], -1.0), Sample([4], [3, 2], 0.5)])
assert math.isfinite(out["train/grad_norm"]) and out["train/grad_norm"] > 0, out
# What a colocated engine is told to leave free is what the first step made.
made = sum(t.numel() * t.element_size() for st in trainer._inner().state.values() for k, t in st.items() if k != "step")
assert expected == made > 0 and trainer.pending_state_bytes() == 0, (expected, made)
# A checkpoint of this optimizer resumes exactly: the next step is the same.
import tempfile
import torch
from pathlib import Path
folder = Path(tempfile.mkdtemp())
trainer.save(folder)
_, fresh = load_pretrained(sys.argv[1], {}, "bfloat16", "model.path", device="cpu")
other = DeepSpeedTrainer(fresh, stage=int(sys.argv[2]), dtype="bfloat16", cpu=True, comm_timeout_s=60, micro_batch_size=1)
other.load(folder)
batch = [Sample([5, 6, 7], [8, 9], 1.0), Sample([4], [3, 2], -0.5)]
a, b = trainer.step(batch), other.step(batch)
assert a == b, (a, b)
for (name, x), y in zip(trainer.model.state_dict().items(), other.model.state_dict().values()):
    assert torch.equal(x, y), name
print("resumed exactly")
trainer.close()
"""


@pytest.mark.parametrize("stage", [1, 2])
def test_bf16_zero_sums_micro_batch_gradients_in_fp32(stage: int, tiny_model_dir: Path) -> None:
    """A batch is many micro-batches per rank; DeepSpeed would sum their
    gradients in the model's dtype (bf16) unless told otherwise. Also: the
    optimizer state still to come (for sizing a colocated engine) is exact."""
    stdout = _run_script(BF16_ACCUMULATES_IN_FP32, str(tiny_model_dir), str(stage))
    assert "accumulates in torch.float32" in stdout, stdout[-2000:]
    assert "resumed exactly" in stdout, stdout[-2000:]


LOAD_SHARDED = """
import shutil
import sys
from pathlib import Path

import torch
from azr.models import load_pretrained
from azr.train import Sample
from azr.train.deepspeed_trainer import DeepSpeedTrainer

folder, out = sys.argv[1], Path(sys.argv[2])
_, model = load_pretrained(folder, {}, "float32", "model.path", device="cpu")
trainer = DeepSpeedTrainer(model, stage=2, dtype="float32", cpu=True, comm_timeout_s=60, lr=1e-2)
trainer.step([Sample([5, 6, 7], [8, 9], 1.0)])
trainer.save(out)
trained = {k: v.clone() for k, v in trainer.model.state_dict().items()}
# The same weights as transformers shards a large model: several files and an index.
shutil.rmtree(out / "model")
trainer.model.save_pretrained(out / "model", max_shard_size="100KB", safe_serialization=True)
assert len(list((out / "model").glob("*.safetensors"))) > 1
_, fresh = load_pretrained(folder, {}, "float32", "model.path", device="cpu")
other = DeepSpeedTrainer(fresh, stage=2, dtype="float32", cpu=True, comm_timeout_s=60, lr=1e-2)
other.load(out)
for name, value in other.model.state_dict().items():
    assert torch.equal(value, trained[name]), name
print("loaded shards")
other.close()  # one process group for both
"""


def test_load_reads_a_sharded_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    stdout = _run_script(LOAD_SHARDED, str(tiny_model_dir), str(tmp_path / "ckpt"))
    assert "loaded shards" in stdout


ZERO3_LOADS_PARTITIONS = """
import math
import sys

import deepspeed
import torch
from safetensors.torch import load_file

from azr.config import load_config
from azr.models import resolve
from azr.rl.backends import build_trainer, load_policy
from azr.train import Sample

folder = sys.argv[1]
config = load_config(None, [f"model.path={folder}", "model.dtype=float32", "trainer.backend=deepspeed",
                            "trainer.zero_stage=3", "resources.gpus_per_node=0", "trainer.lr=1e-2",
                            "rollout.backend=vllm"])  # ZeRO-3 generates with vLLM; only the trainer is built here
tokenizer, model = load_policy(config, resolve(folder, None), None, None)
params = dict(model.named_parameters())
assert all(hasattr(p, "ds_id") and p.numel() == 0 for p in params.values()), "not loaded into partitions"
saved = load_file(f"{folder}/model.safetensors")
for name, p in params.items():
    with deepspeed.zero.GatheredParameters([p]):
        assert torch.equal(p.data, saved[name]), name
from azr.models import load_pretrained

_, other = load_pretrained(folder, {}, "float32", "model.path", device="cpu")
assert not hasattr(next(other.parameters()), "ds_id"), "a later load in the process was partitioned too"
trainer = build_trainer(config, model, tokenizer.pad_token_id or 0)
out = trainer.step([Sample([5, 6, 7], [8, 9], 1.0), Sample([5, 6], [8, 9, 10], -1.0)])
assert math.isfinite(out["train/grad_norm"]) and out["train/grad_norm"] > 0, out
moved = 0
for name, p in trainer.model.named_parameters():
    with deepspeed.zero.GatheredParameters([p]):
        moved += not torch.equal(p.data, saved[name])
assert moved > 0, "the step changed nothing"
print("zero3 partitions loaded and trained")
trainer.close()
"""


def test_zero3_loads_each_weight_into_its_partitions(tiny_model_dir: Path) -> None:
    """With ZeRO-3 a rank never holds the whole model: it is built under
    deepspeed.zero.Init and each weight is loaded into its partitions."""
    stdout = _run_script(ZERO3_LOADS_PARTITIONS, str(tiny_model_dir))
    assert "zero3 partitions loaded and trained" in stdout
