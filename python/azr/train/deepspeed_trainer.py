"""DeepSpeed ZeRO-2/3 updates (``trainer.backend: deepspeed``; ``pip install 'azr[gpu]'``).

The same TRR++ step as the torch trainer: micro-batches (by count and by
padded-token budget), the whole batch's token-mean loss, gradient clipping,
AdamW; under ZeRO the optimizer state (stage 1-2) and the parameters (stage 3)
are partitioned over the data-parallel ranks, optionally offloaded to CPU.

Checkpoints do not depend on the world size: the model is a full HF folder
and the optimizer is saved as one full tensor per parameter and moment
(``optimizer.safetensors``, gathered with DeepSpeed's fragment API), so a run
saved on 8 GPUs resumes on 2 or on 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from azr._core import ConfigError
from azr.train.base import Sample
from azr.train.batching import KLPenalty, accumulate, micro_batches, report
from azr.train.weights import save_model

OPTIMIZER_FILE = "optimizer.safetensors"
MOMENTS = ("exp_avg", "exp_avg_sq")


def ds_config(
    *,
    stage: int,
    dtype: str,
    grad_clip: float,
    world_size: int,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    bucket_size: int = 200_000_000,
) -> dict[str, Any]:
    """The DeepSpeed config for one optimizer step per ``step()`` call.

    azr feeds its own micro-batches and marks the accumulation boundary itself,
    so DeepSpeed's batch sizes are nominal (one sample per rank per call).
    """
    if stage not in (1, 2, 3):
        raise ConfigError(
            f"trainer.zero_stage must be 1, 2 or 3, got {stage} (without ZeRO, use trainer.backend=torch)"
        )
    if offload_params and stage != 3:
        raise ConfigError("trainer.offload_params needs trainer.zero_stage=3")
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": bucket_size,
        "allgather_bucket_size": bucket_size,
    }
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        zero["stage3_prefetch_bucket_size"] = bucket_size
        if offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": grad_clip,
        "bf16": {"enabled": dtype == "bfloat16"},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if dtype == "bfloat16":
        # A 6·B batch is tens of micro-batches per rank: sum their gradients in
        # fp32, not bf16 (DeepSpeed's default is the model's dtype). ZeRO-2/3 keep
        # fp32 gradient partitions; ZeRO-1 switches to DeepSpeed's BF16 optimizer,
        # which keeps an fp32 gradient buffer.
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    return config


def use_cpu_accelerator() -> None:
    """DeepSpeed on the CPU (gloo) for a model on the CPU, also where CUDA is
    visible (``resources.gpus_per_node: 0`` on a GPU machine): left to itself,
    DeepSpeed picks CUDA whenever a GPU is visible, moves the model there and
    joins NCCL on GPU 0 from every rank."""
    import sys

    if "deepspeed" not in sys.modules:
        os.environ["DS_ACCELERATOR"] = "cpu"  # read on DeepSpeed's first accelerator lookup
        return
    from deepspeed.accelerator import get_accelerator, set_accelerator

    if get_accelerator().device_name() != "cpu":
        from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

        set_accelerator(CPU_Accelerator())


def init_distributed(timeout_s: float) -> None:
    """Join (or start, for one process) DeepSpeed's process group, with an explicit timeout."""
    import deepspeed

    from azr.distributed.guards import apply_nccl_environment

    apply_nccl_environment()  # NCCL's settings that turn a hang into an error (unused on gloo)
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        from azr.distributed.guards import free_port

        os.environ["MASTER_PORT"] = str(free_port())
    deepspeed.init_distributed(timeout=timedelta(seconds=timeout_s), verbose=False)


def set_full_z3(optimizer: Any, param: Any, value: torch.Tensor, key: str | None) -> None:
    """Write this rank's share of a full fp32 tensor (``key`` None: the master
    weights, else that optimizer moment) into ZeRO-3's partition of ``param``.

    DeepSpeed's own ``set_full_hp_param`` (0.19) slices ``partition × rank`` out of
    the full tensor, which runs past its end on the last rank whenever the world
    size does not divide the parameter (the partitions are padded): a checkpoint
    could not be resumed on, say, 3 or 6 GPUs. Here the padding is left at zero.
    """
    if not param.requires_grad:
        return
    if value.numel() != param.ds_numel:
        raise ConfigError(f"a saved tensor has {value.numel()} elements, the parameter {param.ds_numel}")
    part, group = optimizer._get_fp32_opt_state_partition(
        param, release_swap_buffers=False, optim_state_key=key
    )
    start = part.numel() * optimizer._get_param_partition_rank(param)
    have = max(0, min(part.numel(), value.numel() - start))
    flat = value.flatten()
    part.data[:have].copy_(flat[start : start + have])
    part.data[have:].zero_()
    if optimizer._swappable_optimizer_subgroup(group):
        optimizer._optimizer_states_and_gradient_swap_out(group)


class DeepSpeedTrainer:
    """A ``Trainer`` over ``deepspeed.initialize``.

    Args:
        model: the HF causal LM (possibly LoRA-wrapped), on this rank's device.
        stage: ZeRO stage.
        dtype: ``bfloat16`` (mixed precision with fp32 master weights) or ``float32``.
        comm_timeout_s: collective timeout; a rank that stops answering fails
            the step with an error instead of hanging it.
        kl: a KL penalty to a frozen reference (its model on this rank's device,
            unpartitioned, so not with ZeRO-3 unless it is LoRA's adapters-off policy).
        cpu: train on the CPU (gloo) even where CUDA is visible
            (``resources.gpus_per_node: 0``); otherwise DeepSpeed picks the GPU
            when there is one and moves the model there.
        Other arguments as ``TorchTrainer``.
    """

    def __init__(
        self,
        model: Any,
        *,
        stage: int = 2,
        dtype: str = "bfloat16",
        lr: float = 1e-6,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float = 1.0,
        micro_batch_size: int = 4,
        micro_batch_tokens: int = 0,
        clip_eps: float = 0.2,
        entropy_coef: float = 0.001,
        pad_token_id: int = 0,
        gradient_checkpointing: bool = False,
        offload_optimizer: bool = False,
        offload_params: bool = False,
        comm_timeout_s: float = 600.0,
        cpu: bool = False,
        kl: KLPenalty | None = None,
    ) -> None:
        self.kl = kl
        if cpu and torch.cuda.is_available():
            use_cpu_accelerator()
        try:
            import deepspeed
        except ImportError as exc:
            raise ConfigError("trainer.backend=deepspeed needs DeepSpeed: pip install 'azr[gpu]'") from exc
        init_distributed(comm_timeout_s)
        self.comm_timeout_s = comm_timeout_s
        import torch.distributed as dist

        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.offload_optimizer = offload_optimizer
        if offload_optimizer:
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer: Any = DeepSpeedCPUAdam(
                trainable, lr=lr, betas=betas, weight_decay=weight_decay, adamw_mode=True
            )
        else:
            optimizer = torch.optim.AdamW(trainable, lr=lr, betas=betas, weight_decay=weight_decay)
        self.config = ds_config(
            stage=stage,
            dtype=dtype,
            grad_clip=grad_clip,
            world_size=self.world_size,
            offload_optimizer=offload_optimizer,
            offload_params=offload_params,
        )
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=self.config
        )
        self.model = self.engine.module
        self.stage = stage
        self.micro_batch_size = micro_batch_size
        self.micro_batch_tokens = micro_batch_tokens
        self.clip_eps = clip_eps
        self.entropy_coef = entropy_coef
        self.pad_token_id = pad_token_id

    # ------------------------------------------------------------ the update
    def step(self, samples: Sequence[Sample], epochs: int = 1) -> dict[str, float]:
        """``epochs`` optimizer steps over ``samples`` (all of them on one rank)."""
        kept = [s for s in samples if s.response_ids]
        return self.step_shard(kept, sum(len(s.response_ids) for s in kept), epochs)

    def step_shard(self, samples: Sequence[Sample], total_tokens: int, epochs: int = 1) -> dict[str, float]:
        """This rank's share of ``epochs`` optimizer steps (π_old from the first);
        ``total_tokens`` counts the response tokens of the whole batch on all
        ranks. Every rank must call it, even with no samples, because the
        gradient reduction is collective."""
        samples = [s for s in samples if s.response_ids]
        if total_tokens == 0:
            return {"train/skipped": 1.0}
        self.engine.train()
        batches = micro_batches(samples, self.micro_batch_size, self.micro_batch_tokens)
        # Every rank must run as many forward/backward passes as the others (ZeRO's
        # gathers and reductions are collective): ranks with fewer micro-batches
        # pad with zero-weight passes. DeepSpeed averages gradients over ranks;
        # scaling by the world size makes them the whole batch's token mean.
        passes = [(b, float(self.world_size)) for b in batches]
        dummy = [Sample([self.pad_token_id], [self.pad_token_id], 0.0)]
        passes += [(dummy, 0.0)] * (self._most_passes(len(passes)) - len(passes))

        def backward(loss: torch.Tensor, last: bool) -> None:
            # The flag is read during backward (when to reduce gradients), not forward.
            self.engine.set_gradient_accumulation_boundary(last)
            self.engine.backward(loss, scale_wrt_gas=False)

        behaviour: dict[int, torch.Tensor] = {}
        for _ in range(epochs):
            sums = accumulate(
                self.engine,
                passes,
                total_tokens,
                backward,
                clip_eps=self.clip_eps,
                entropy_coef=self.entropy_coef,
                pad_token_id=self.pad_token_id,
                kl=self.kl,
                behaviour=behaviour if epochs > 1 else None,
            )
            self.engine.step()
            norm = self.engine.get_global_grad_norm()
        self.engine.eval()
        return report(sums, float(norm) if norm is not None else float("nan"), total_tokens)

    def _most_passes(self, mine: int) -> int:
        if self.world_size == 1:
            return max(mine, 1)
        import torch.distributed as dist
        from deepspeed.accelerator import get_accelerator

        count = torch.tensor([max(mine, 1)], device=get_accelerator().current_device_name())
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        return int(count.item())

    # ------------------------------------------------------------ weights
    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The model's ``state_dict`` entries one at a time (gathered under ZeRO-3),
        for weight sync and checkpoints. Every rank must iterate."""
        import deepspeed

        keys = set(self.model.state_dict().keys())  # names only under ZeRO-3; tied weights included
        for name, param in self.model.named_parameters(remove_duplicate=False):
            if name not in keys:
                continue
            if self.stage == 3:
                with deepspeed.zero.GatheredParameters([param]):
                    yield name, param.detach().clone()
            else:
                yield name, param.detach()
        for name, buf in self.model.named_buffers():
            if name in keys:
                yield name, buf.detach()

    def state_dict(self) -> dict[str, Any]:
        return dict(self.named_weights())

    # ------------------------------------------------------------ checkpoints
    def save(self, folder: Path) -> None:
        """Model (HF folder) and optimizer (full tensors): rank 0 writes; all ranks must call."""
        from safetensors.torch import save_file

        state: dict[str, torch.Tensor] | None = None
        if self.stage == 3:
            # Every rank takes part in each gather; rank 0 keeps each tensor on the
            # CPU as it comes, so no GPU ever holds the whole model at once.
            state = {}
            for name, tensor in self.named_weights():
                if self.rank == 0:
                    state[name] = tensor.cpu()
        optimizer = self._full_optimizer_state()
        if self.rank != 0:
            return
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self.model, folder, state)
        tensors, meta = optimizer
        save_file(tensors, str(folder / OPTIMIZER_FILE), metadata={"azr": json.dumps(meta)})

    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _full_optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        tensors: dict[str, torch.Tensor] = {}
        step = self._optimizer_step()
        if step == 0:  # before the first update there is no optimizer state to save
            return tensors, {"step": 0, "world_size": self.world_size}
        # The full tensors are collectives every rank joins; only rank 0 keeps them
        # (in host memory: eight ranks of a node each holding all of it would not fit).
        keep = self.rank == 0
        for name, p in self._trainable():
            master = safe_get_full_fp32_param(p)
            if master is not None and keep:
                tensors[f"{name}::fp32"] = master.detach().float().cpu().contiguous()
            for moment in MOMENTS:
                value = safe_get_full_optimizer_state(p, moment)
                if value is not None and keep:
                    tensors[f"{name}::{moment}"] = value.detach().float().cpu().contiguous()
        return tensors, {"step": step, "world_size": self.world_size}

    def pending_state_bytes(self) -> int:
        """Device bytes the optimizer will still allocate at its first step:
        AdamW's two fp32 moments over this rank's partition (DeepSpeed makes
        them lazily; offloaded, they live in host memory)."""
        if self.offload_optimizer or self._inner().state:
            return 0
        trainable = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for _, p in self._trainable())
        return 8 * -(-trainable // self.world_size)

    def _inner(self) -> torch.optim.Optimizer:
        """The torch optimizer ZeRO drives over its flat fp32 partitions."""
        return getattr(self.optimizer, "optimizer", self.optimizer)

    def _optimizer_step(self) -> int:
        for state in self._inner().state.values():
            step = state.get("step")
            if step is not None:
                return int(step)
        return 0

    def load_optimizer(self, folder: Path) -> None:
        """Restore what ``save`` wrote, whatever the world size was then."""
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state
        from safetensors import safe_open

        path = folder / OPTIMIZER_FILE
        if not path.is_file():
            raise ConfigError(f"{folder} has no {OPTIMIZER_FILE}: was it saved by trainer.backend=deepspeed?")
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("azr", "{}"))
            step = int(meta.get("step", 0))
            if step == 0:
                return  # saved before the first update: nothing to restore
            self._materialize_state()
            for name, p in self._trainable():
                keys = {f"{name}::{m}" for m in ("fp32", *MOMENTS)}
                missing = keys - set(f.keys())
                if missing:
                    raise ConfigError(f"{path} lacks {sorted(missing)[0]}: it was saved for another model")
                if self.stage == 3:
                    set_full_z3(self.optimizer, p, f.get_tensor(f"{name}::fp32"), None)
                    for moment in MOMENTS:
                        set_full_z3(self.optimizer, p, f.get_tensor(f"{name}::{moment}"), moment)
                    continue
                safe_set_full_fp32_param(p, f.get_tensor(f"{name}::fp32"))
                for moment in MOMENTS:
                    safe_set_full_optimizer_state(p, f.get_tensor(f"{name}::{moment}"), moment)
        for state in self._inner().state.values():
            if "step" in state:
                value = state["step"]
                state["step"] = torch.tensor(float(step)) if torch.is_tensor(value) else step

    def _materialize_state(self) -> None:
        """Create the optimizer's (lazily made) state without changing any weight:
        one AdamW step at learning rate 0 over zero gradients of ZeRO's partitions."""
        inner = self._inner()
        if inner.state:
            return
        # ZeRO-3 hands its flat fp32 sub-groups to the torch optimizer only while it steps.
        flat = getattr(self.optimizer, "fp32_partitioned_groups_flat", None)
        lent: list[tuple[dict[str, Any], list[Any]]] = []
        if flat is not None:
            for i, tensor in enumerate(flat):
                group = inner.param_groups[self.optimizer.sub_group_to_group_id[i]]
                lent.append((group, group["params"]))
                group["params"] = [*group["params"], tensor]
        saved = []
        for group in inner.param_groups:
            saved.append((group["lr"], group.get("weight_decay", 0.0)))
            group["lr"], group["weight_decay"] = 0.0, 0.0
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        inner.step()
        for group, (lr, wd) in zip(inner.param_groups, saved, strict=True):
            group["lr"], group["weight_decay"] = lr, wd
            for p in group["params"]:
                p.grad = None
        for group, params in reversed(lent):
            group["params"] = params
        # ZeRO-1/2 map each parameter onto its optimizer state once that state exists.
        link = getattr(self.optimizer, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:
            link()

    def load(self, folder: Path) -> None:
        """Weights and optimizer from a checkpoint (weights normally come in at model load)."""
        from safetensors.torch import load_file

        # One file or HF's shards (model-00001-of-0000N.safetensors), one at a time.
        files = sorted((folder / "model").glob("*.safetensors"))
        if not files:
            raise ConfigError(f"{folder / 'model'} holds no safetensors weights")
        params = dict(self.model.named_parameters())
        loaded: set[str] = set()
        for file in files:
            state = load_file(str(file))
            loaded.update(state)
            if self.stage == 3:
                import deepspeed

                for name, tensor in state.items():
                    if name in params:
                        with deepspeed.zero.GatheredParameters([params[name]], modifier_rank=0):
                            params[name].data.copy_(tensor)
            else:
                self.model.load_state_dict(state, strict=False)
        missing = sorted(set(params) - loaded)  # tied weights are one parameter here
        if missing:
            raise ConfigError(f"{folder / 'model'} lacks weights of this model: {missing[:3]}")
        self.load_optimizer(folder)

    def close(self) -> None:
        """Leave the process group (an exit with it alive can abort the process)."""
        from azr.distributed.guards import close_process_group

        close_process_group(self.comm_timeout_s)
