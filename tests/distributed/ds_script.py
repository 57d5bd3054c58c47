"""Runs one DeepSpeed trainer process for tests/distributed/test_deepspeed.py.

    python ds_script.py MODE MODEL OUT STAGE [lora] [kl] [epochs] [bf16]   (RANK / WORLD_SIZE / MASTER_PORT from the environment)

MODE ``shard``: one step over this rank's share of BATCH_A, then a checkpoint to OUT.
MODE ``resume``: the processes load OUT, step over their shares of BATCH_B, rank 0 writes OUT/params.pt.
MODE ``fresh``: as ``resume`` with OUT's weights but a new optimizer (what a lost optimizer state gives), to OUT/fresh/.
MODE ``straight``: one process steps over BATCH_A then BATCH_B, writes OUT/params.pt.
MODE ``torch``: the same two steps with the plain torch trainer, writes OUT/params.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from azr.distributed.ray_driver import shard_by_tokens
from azr.train import Sample
from transformers import AutoModelForCausalLM

BATCH_A = [
    Sample([5, 6, 7], [8, 9], 1.0),
    Sample([5, 6], [10, 11, 12, 13], -0.5),
    Sample([7], [14], 0.25),
    Sample([5, 6, 7, 8], [9, 10, 11], -1.0),
    Sample([9, 9], [3, 4, 5], 0.75),
]
BATCH_B = [Sample([4, 4, 4], [6, 7, 8, 9], -0.25), Sample([8], [3], 1.0), Sample([2, 3], [4, 5, 6], 0.5)]
OPTIONS = {"lr": 1e-2, "micro_batch_size": 2, "weight_decay": 0.1, "grad_clip": 0.5, "entropy_coef": 0.01}


LORA = "lora" in sys.argv[5:]
KL = "kl" in sys.argv[5:]
EPOCHS = 2 if "epochs" in sys.argv[5:] else 1
DTYPE = "bfloat16" if "bf16" in sys.argv[5:] else "float32"


def kl_penalty(folder: str):  # type: ignore[no-untyped-def]
    """With ``kl``: a penalty of 0.5 × KL to the model as loaded from ``folder``
    (with ``lora``: to the policy with its adapters off, as a LoRA run does)."""
    if not KL:
        return None
    from azr.train.batching import KLPenalty

    if LORA:
        return KLPenalty(0.5, None)
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).requires_grad_(False)
    return KLPenalty(0.5, reference)


def model(folder: str) -> torch.nn.Module:
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, DTYPE))
    if LORA:
        from azr.train.weights import apply_lora

        torch.manual_seed(0)  # the same fresh adapters in every process
        m = apply_lora(m, 4, 16, 0.0, "all-linear")
    return m


def deepspeed_trainer(folder: str, stage: int):  # type: ignore[no-untyped-def]
    from azr.train.deepspeed_trainer import DeepSpeedTrainer

    return DeepSpeedTrainer(
        model(folder), stage=stage, dtype=DTYPE, comm_timeout_s=120, kl=kl_penalty(folder), **OPTIONS
    )


def params(trainer) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    named = getattr(trainer, "named_weights", None)
    items = named() if named else trainer.model.state_dict().items()
    return {k: v.detach().cpu().float().clone() for k, v in items}


def main() -> None:
    mode, folder, out, stage = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    if mode == "shard":
        trainer = deepspeed_trainer(folder, stage)
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        total = sum(len(s.response_ids) for s in BATCH_A)
        trainer.step_shard(shard_by_tokens(BATCH_A, world)[rank], total)
        trainer.save(out)
        trainer.close()
        return
    if mode in ("resume", "fresh"):
        trainer = deepspeed_trainer(str(out / "model"), stage)
        if mode == "resume":
            trainer.load_optimizer(out)
        else:
            out = out / "fresh"
        # Each rank its share of the batch, as the Ray driver shards it.
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        total = sum(len(s.response_ids) for s in BATCH_B)
        trainer.step_shard(shard_by_tokens(BATCH_B, world)[rank], total)
    elif mode == "straight":
        trainer = deepspeed_trainer(folder, stage)
        trainer.step(BATCH_A, EPOCHS)
        trainer.step(BATCH_B, EPOCHS)
    else:
        from azr.train.torch_trainer import TorchTrainer

        trainer = TorchTrainer(model(folder), kl=kl_penalty(folder), **OPTIONS)
        trainer.step(BATCH_A, EPOCHS)
        trainer.step(BATCH_B, EPOCHS)
    weights = params(trainer)
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(weights, out / "params.pt")
    closer = getattr(trainer, "close", None)
    if closer is not None:
        closer()


if __name__ == "__main__":
    main()
    # The work is done and on disk. torch's own teardown of a gloo group at
    # interpreter exit can still, rarely, abort a finished process (-6, seen once
    # in about thirty process exits under CI); that is not what these tests test.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
