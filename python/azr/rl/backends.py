"""The rollout engine and trainer a run uses, from ``rollout.backend`` and
``trainer.backend``, and how new weights reach the engine after an update.

In one process (the CPU, or one GPU):

- ``hf`` rollouts generate with the very model object the trainer updates,
  so a sync costs nothing (ZeRO-3 is refused there: its parameters are
  partitioned and ``generate`` cannot use them).
- ``vllm`` rollouts run an engine beside the trainer on the same GPU; the
  engine sleeps (frees its memory) while the trainer updates, wakes, and takes
  the new weights in process, one tensor at a time. With LoRA only the
  adapter travels: it is saved and loaded as a new adapter version.

Past one process, ``azr.distributed.ray_driver`` assembles the same pieces
as Ray actors.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from azr._core import ConfigError
from azr.config import Config
from azr.rollout.base import RolloutEngine
from azr.train.base import Sample, Trainer


def load_policy(
    config: Config, source: tuple[str, dict[str, Any]], weights: str | None, resume: Path | None
) -> tuple[Any, Any]:
    """(tokenizer, model) of a trainer: the tokenizer of ``source`` (``model.path`` as
    ``azr.models.resolve`` returns it), the model from ``weights`` (a checkpoint's HF
    folder) or else from ``source``, with fresh LoRA adapters when
    ``trainer.lora_rank > 0``. A LoRA run keeps the base weights and resumes from
    the adapter saved in ``resume``.
    """
    from azr.models import load_pretrained
    from azr.train.weights import apply_lora, load_adapter

    t = config.trainer
    lora = t.lora_rank > 0
    path, kwargs = source
    # ZeRO-3 (refused with LoRA): each rank loads only its partition of every
    # weight, so a model larger than one GPU (or one host's memory per rank) loads.
    zero3 = _zero3_loading(config) if t.backend == "deepspeed" and t.zero_stage == 3 and not lora else None
    tokenizer, model = load_pretrained(
        path,
        kwargs,
        config.model.dtype,
        f"model.path {config.model.path!r}",
        None if lora else weights,
        # resources.gpus_per_node: 0 asks for the CPU, also on a machine with GPUs.
        device="cpu" if config.resources.gpus_per_node == 0 else None,
    )
    if zero3 is not None:
        # Only this load is ZeRO-3's: transformers' global flag would make every later
        # from_pretrained in the process partition its model too.
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    if lora:
        targets = t.lora_targets if t.lora_targets == "all-linear" else t.lora_targets.split(",")
        model = apply_lora(model, t.lora_rank, t.lora_alpha, t.lora_dropout, targets)
        if resume is not None:
            load_adapter(model, resume)
    return tokenizer, model


def join_process_group(config: Config) -> None:
    """Join (or start) the DeepSpeed trainer's process group, on the accelerator
    ``resources`` asks for; a no-op once joined."""
    import torch

    from azr.train.deepspeed_trainer import init_distributed, use_cpu_accelerator

    if config.resources.gpus_per_node == 0 and torch.cuda.is_available():
        use_cpu_accelerator()
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        raise ConfigError("trainer.backend=deepspeed needs DeepSpeed: pip install 'azr[deepspeed]'") from exc
    init_distributed(config.resources.comm_timeout_s)


def _zero3_loading(config: Config) -> Any:
    """Tell transformers that ZeRO-3 is on (``HfDeepSpeedConfig``, in the joined
    process group): ``from_pretrained`` then builds the model under
    ``deepspeed.zero.Init`` and loads each weight into its partitions."""
    from transformers.integrations import HfDeepSpeedConfig

    from azr.train.deepspeed_trainer import ds_config

    t = config.trainer
    join_process_group(config)
    import torch.distributed as dist

    settings = ds_config(
        stage=3,
        dtype=config.model.dtype,
        grad_clip=t.grad_clip,
        world_size=dist.get_world_size(),
        offload_optimizer=t.offload_optimizer,
        offload_params=t.offload_params,
    )
    return HfDeepSpeedConfig(settings)


def make_vllm(config: Config, weights: str, sleep: bool, trainer: Any = None) -> Any:
    """A vLLM engine on ``weights`` (an HF folder), LoRA-ready when the trainer uses LoRA,
    ready to receive over NCCL when ``rollout.weight_sync`` is ``nccl`` (split mode).
    ``trainer``: the colocated trainer, whose optimizer state is still to come."""
    from azr.rollout.vllm import VLLMRollout

    r, t = config.rollout, config.trainer
    return VLLMRollout(
        weights,
        # A hub id takes model.revision, as the trainer's copy did; a local
        # folder (a checkpoint, a converted model) has none.
        revision=None if Path(weights).exists() else config.model.revision,
        dtype=config.model.dtype,
        tensor_parallel_size=config.resources.tensor_parallel,
        gpu_memory_utilization=r.gpu_memory_utilization,
        sleep=sleep,
        max_model_len=r.max_prompt_tokens + r.max_response_tokens,
        seed=config.run.seed,
        enforce_eager=r.enforce_eager,
        enable_lora=t.lora_rank > 0,
        max_lora_rank=max(t.lora_rank, 1),
        weight_transfer="nccl" if r.weight_sync == "nccl" else None,
        reserve_bytes=getattr(trainer, "pending_state_bytes", lambda: 0)(),
    )


def kl_penalty(config: Config, model: Any) -> Any:
    """``selfplay.kl_coef``'s penalty: None when 0; else against the initial policy,
    loaded afresh from ``model.path`` (a resumed run's weights are not it), frozen,
    on the trainer's device; a LoRA run needs no copy (its adapters switched off)."""
    if not config.selfplay.kl_coef:
        return None
    from azr.models import load_pretrained, resolve
    from azr.train.batching import KLPenalty

    if config.trainer.lora_rank > 0:
        return KLPenalty(config.selfplay.kl_coef, None)
    path, kwargs = resolve(config.model.path, config.model.revision)
    device = str(next(model.parameters()).device)
    _, reference = load_pretrained(
        path, kwargs, config.model.dtype, f"model.path {config.model.path!r}", device=device
    )
    reference.requires_grad_(False)
    return KLPenalty(config.selfplay.kl_coef, reference)


def build_trainer(config: Config, model: Any, pad_token_id: int) -> Any:
    t, sp = config.trainer, config.selfplay
    common: dict[str, Any] = {
        "lr": t.lr,
        "weight_decay": t.weight_decay,
        "betas": t.betas,
        "grad_clip": t.grad_clip,
        "micro_batch_size": t.micro_batch_size,
        "micro_batch_tokens": t.micro_batch_tokens,
        "clip_eps": sp.clip_eps,
        "entropy_coef": sp.entropy_coef,
        "pad_token_id": pad_token_id,
        "gradient_checkpointing": t.gradient_checkpointing,
        "kl": kl_penalty(config, model),
    }
    if t.backend == "torch":
        from azr.train.torch_trainer import TorchTrainer

        return TorchTrainer(model, **common)
    from azr.train.deepspeed_trainer import DeepSpeedTrainer

    return DeepSpeedTrainer(
        model,
        stage=t.zero_stage,
        dtype=config.model.dtype,
        offload_optimizer=t.offload_optimizer,
        offload_params=t.offload_params,
        comm_timeout_s=config.resources.comm_timeout_s,
        cpu=config.resources.gpus_per_node == 0,
        **common,
    )


class SleepDuringUpdate:
    """A trainer whose colocated engine sleeps while it updates (frees the KV cache)."""

    def __init__(self, trainer: Any, engine: Any) -> None:
        self.inner, self.engine = trainer, engine

    def step(self, samples: Sequence[Sample], epochs: int = 1) -> dict[str, float]:
        self.engine.sleep()
        return dict(self.inner.step(samples, epochs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def vllm_sync(engine: Any, trainer: Any, lora: bool, scratch: Path) -> Callable[[], None]:
    """After an update: wake the engine and give it the new weights (or adapter)."""
    version = [0]

    def sync() -> None:
        engine.wake()
        if lora:
            from azr.train.weights import ADAPTER

            version[0] += 1
            folder = scratch / f"v{version[0]}"
            trainer.model.save_pretrained(folder / ADAPTER, safe_serialization=True)
            engine.load_adapter(folder / ADAPTER)
            shutil.rmtree(scratch / f"v{version[0] - 1}", ignore_errors=True)
            return
        named = getattr(trainer, "named_weights", None)
        engine.load_weights(named() if named else trainer.state_dict().items())

    return sync


def build_backends(
    config: Config, model: Any, tokenizer: Any, weights_folder: str, scratch: Path
) -> tuple[RolloutEngine, Trainer, Callable[[], None]]:
    """(rollout engine, trainer, sync) for a run in this process.

    ``weights_folder`` is the HF folder the engine starts from: the model's
    source, or the checkpoint a run resumes from.
    """
    r, t = config.rollout, config.trainer
    lora = t.lora_rank > 0
    trainer = build_trainer(config, model, tokenizer.pad_token_id or 0)
    if r.backend == "hf":
        from azr.rollout.hf import HFRollout

        # Generation uses the object the trainer updates: nothing to copy.
        rollout = HFRollout(trainer.model, tokenizer, r.batch_size, r.max_prompt_tokens)
        return rollout, trainer, lambda: None
    engine = make_vllm(config, weights_folder, sleep=r.sleep, trainer=trainer)
    sync = vllm_sync(engine, trainer, lora, scratch)
    if lora:
        sync()  # a resumed run's adapter (or the fresh one) before the first rollout
    wrapped: Any = SleepDuringUpdate(trainer, engine) if r.sleep else trainer
    return engine, wrapped, sync
