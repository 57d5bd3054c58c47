"""The run configuration: typed dataclasses, loaded from YAML plus dotted
overrides (``trainer.lr=1e-6``). Unknown keys and ill-typed values are errors
that name the key (and the nearest valid one); the resolved config is what a
run folder stores as ``config.yaml``.

Defaults follow SPEC (the official code's settings); the presets in
``configs/`` name the paper's models.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from azr._core import ConfigError


@dataclass
class ModelConfig:
    path: str = "tiny"
    """``tiny`` (built locally on first use), a local folder, a hub id, or
    ``package:MODULE[/FILE.gguf]`` for a GGUF file shipped inside a Python package."""
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    """Training and generation precision."""
    template: Literal["r1", "chat"] = "r1"
    """Prompt template: ``r1`` for base models (the paper's default), ``chat`` for instruct models."""
    revision: str | None = None
    """Hub revision, for hub ids."""


@dataclass
class RolloutConfig:
    backend: Literal["hf", "vllm"] = "hf"
    """``hf`` (transformers generation, CPU or GPU) or ``vllm``."""
    temperature: float = 1.0
    """Sampling temperature of every rollout (SPEC: 1.0); 0 decodes greedily."""
    top_p: float = 1.0
    """Nucleus sampling mass (SPEC: 1.0, off)."""
    max_prompt_tokens: int = 6144
    """Longest prompt; proposer prompts drop references until they fit."""
    max_response_tokens: int = 8096
    """Most tokens a rollout generates."""
    batch_size: int = 8
    """Sequences (prompt × sample) generated at once by the ``hf`` backend."""
    gpu_memory_utilization: float = 0.6
    """``vllm``: the share of each GPU the engine may take (weights and KV cache)."""
    sleep: bool = True
    """``vllm`` colocated with the trainer: free the engine's GPU memory during updates.
    Full-weight runs discard the weights (vLLM's sleep level 2: the sync overwrites them
    all) and take the KV cache back only after the sync; LoRA runs keep the base weights
    in host memory meanwhile (level 1)."""
    enforce_eager: bool = False
    """``vllm``: skip CUDA graphs (faster start, slower decoding)."""
    weight_sync: Literal["auto", "nccl", "object_store"] = "auto"
    """``vllm`` on GPUs of its own (``resources.colocate: false``): how new weights reach the
    engines. ``nccl``: trainer rank 0 broadcasts them to the engines' GPUs with vLLM's
    weight-transfer engine; ``object_store``: rank 0 gathers them and hands them over through
    Ray's object store. ``auto``: ``nccl`` when the trainer and the engines are on CUDA GPUs,
    their vLLM has the weight-transfer API (0.32 or later) and the run trains full weights
    (LoRA adapters go through the object store as files), else ``object_store``."""


@dataclass
class TrainerConfig:
    backend: Literal["torch", "deepspeed"] = "torch"
    """``torch`` (AdamW in this process: CPU or one GPU) or ``deepspeed`` (ZeRO, one or more ranks)."""
    lr: float = 1e-6
    """AdamW learning rate, constant."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW's (beta1, beta2)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    micro_batch_size: int = 4
    """Sequences per forward/backward pass; gradients accumulate over the whole batch."""
    micro_batch_tokens: int = 0
    """Also cap a micro-batch at this many padded tokens (rows × longest); 0: no cap."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    zero_stage: int = 2
    """``deepspeed``: ZeRO stage 1, 2 or 3. In bf16, ZeRO-1 keeps a full fp32 gradient
    buffer on every GPU (4 bytes per parameter); ZeRO-2 and 3 partition it."""
    offload_optimizer: bool = False
    """``deepspeed``: keep optimizer state in CPU memory (DeepSpeedCPUAdam)."""
    offload_params: bool = False
    """``deepspeed`` with ZeRO-3: keep parameters in CPU memory."""
    lora_rank: int = 0
    """Train LoRA adapters of this rank instead of all weights; 0: full fine-tuning."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch's input, in [0, 1)."""
    lora_targets: str = "all-linear"
    """``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""


@dataclass
class SelfPlayConfig:
    batch_size: int = 64
    """Sequences per (task type, role) batch: B in SPEC §5 (6·B per step)."""
    references: int = 6
    """K reference triplets shown to deduction and abduction proposers."""
    learnability_rollouts: int = 8
    """Solver rollouts per valid proposal to estimate its solve rate."""
    unlearnable_reward: float = -0.5
    """Proposer reward when the solve rate is 0 or 1 (official code; the paper uses 0)."""
    seed_factor: int = 4
    """Seeding stops once each task type's buffer holds seed_factor · batch_size valid
    distinct tasks (SPEC: 4 · 64 = 256), or after seed_max_rounds."""
    seed_buffer: str | None = None
    """Start from these seed tasks (an ``azr seed`` folder or a JSON-lines export) instead of seeding."""
    seed_max_rounds: int = 64
    """Seeding also stops after this many proposal rounds (a weak model may never reach the target)."""
    buffer_filter: Literal["all", "non_trivial", "non_extreme"] = "all"
    """Which valid proposals enter the buffers."""
    advantage_weighting: Literal["token", "sequence"] = "token"
    """TRR++ mean/std over response tokens (official) or over sequences (paper)."""
    clip_eps: float = 0.2
    """PPO ratio clip ε of the policy loss."""
    entropy_coef: float = 0.001
    """Weight of the entropy bonus in the loss."""
    kl_coef: float = 0.0
    """KL penalty against the initial policy; 0 means no reference model."""
    ppo_epochs: int = 1
    """Optimizer steps per batch, one pass each; with 1 the update is exactly on-policy.
    Later passes clip the ratio against the policy before the first (π_old: the
    trainer's own log-probs from the first pass, as veRL recomputes them), not
    the rollout engine's."""
    induction_inputs: int = 10
    """Inputs an induction proposal writes (N); the solver sees induction_visible of them."""
    induction_visible: int = 5
    """Input/output pairs shown to the induction solver; the rest are the hidden tests."""
    single_function: bool = True
    """Reject proposals with more than one function or any class."""


@dataclass
class SandboxSettings:
    timeout_s: float = 10.0
    """CPU time per execution, in guest seconds (fuel); a wall-clock backstop stops at 2·timeout_s + 1 s."""
    memory_mb: int = 256
    """Linear memory per execution (at least 32)."""
    workers: int = 0
    """Parallel executions; 0 means one per core."""
    processes: bool = True
    """Run the parallel executions in worker processes (never slower than threads, and a
    crashed worker costs only its process; see ``azr.sandbox.pool``); false: threads of this
    process."""
    max_output_chars: int = 10_000
    """Longest output repr a proposal may have (longer is refused, never truncated)."""


@dataclass
class BufferSettings:
    capacity: int | None = None
    """Most entries per task type; None keeps all."""
    eviction: Literal["fifo", "reservoir"] = "fifo"
    """With a capacity: drop the oldest entry (``fifo``) or keep a uniform sample of all (``reservoir``)."""
    dedup: bool = True
    """Refuse a task whose normalized (program, input[s]) is already in its buffer."""


@dataclass
class RunConfig:
    steps: int = 500
    """Train until this step in total (a budget, not a paper setting)."""
    save_every: int = 10
    """Checkpoint every N steps (and at the last step, and on SIGINT/SIGTERM)."""
    keep_checkpoints: int = 0
    """Keep the newest N checkpoints, deleting older ones once a newer one is on disk; 0 keeps all."""
    eval_every: int = 0
    """In-distribution evaluation (CruxEval-O and -I, greedy) every N steps; 0 turns it off."""
    eval_limit: int = 64
    """Items of each in-distribution set evaluated during training."""
    eval_data: str = "cruxeval-org/cruxeval"
    """CruxEval for in-training evaluation: a file or a hub dataset id."""
    eval_max_tokens: int = 2048
    """Most tokens an in-training evaluation answer generates."""
    seed: int = 0
    """Seeds every draw of a step with (seed, step), so a resumed run repeats the uninterrupted one."""
    out: str = "runs/azr"
    """The run folder."""
    tensorboard: bool = True
    """Write TensorBoard events to RUN/tb."""
    wandb: bool = False
    """Log to Weights & Biases (needs ``wandb``); the W&B run id is kept in the run folder."""
    wandb_project: str = "azr"
    """The W&B project."""


@dataclass
class ResourcesConfig:
    """Where the run's processes go (see ``azr.placement``)."""

    nodes: int = 1
    """Machines the run spans (more than one runs on Ray)."""
    gpus_per_node: int = 1
    """0 runs on the CPU."""
    colocate: bool = True
    """Every GPU holds a rollout engine and a trainer rank; the engine sleeps during updates."""
    rollout_gpus: int = 0
    """With ``colocate: false``: GPUs for vLLM engines, the rest train (0: half of them)."""
    tensor_parallel: int = 1
    """GPUs per vLLM engine, always on one node."""
    processes: int = 1
    """With ``gpus_per_node: 0``: data-parallel CPU ranks per node (more than one in all runs on Ray;
    for testing the distributed path without GPUs)."""
    comm_timeout_s: float = 600.0
    """A collective (gradient reduction, weight broadcast) that takes longer fails the run with an error."""
    ray_address: str | None = None
    """Ray cluster to join when the run needs several processes (None: ``RAY_ADDRESS`` or a local one)."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    buffer: BufferSettings = field(default_factory=BufferSettings)
    run: RunConfig = field(default_factory=RunConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)


# ---------------------------------------------------------------- loading


def _check(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp``, or a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{key}: {_shown(value)} is not one of {choices}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {_shown(value)} does not fit {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {_shown(value)}")
        return tuple(_check(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {_shown(value)}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_shown(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_shown(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_shown(value)}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {_shown(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")
    values = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name], f"{prefix}{name}.")
        else:
            values[name] = _check(data[name], tp, f"{prefix}{name}")
    return cls(**values)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


_SHOWN = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 3, 6, 6, 80, 80


def _shown(value: Any) -> str:
    """A value in an error message, cut short: a YAML alias can make a small file
    a structure of billions of elements, and a full repr would expand them."""
    return _SHOWN.repr(value)


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` with the value read as YAML (``1e-6`` is a number, ``null`` is None)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value")
    try:
        value = _numbers(yaml.safe_load(raw)) if raw.strip() else ""
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"override {text!r}: {exc}") from exc
    return key.strip(), value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return _numbers(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _numbers(node: Any, done: dict[int, Any] | None = None) -> Any:
    """Read what YAML 1.1 leaves as the string '1e-6' as the number it means.

    YAML aliases (``*name``) share one node: each is converted once, so aliases
    of aliases (a "billion laughs" file) cost their size on the page, not their
    expansion; a node that contains itself is a ValueError."""
    done = {} if done is None else done
    if not isinstance(node, dict | list):
        return float(node) if isinstance(node, str) and _SCIENTIFIC.fullmatch(node) else node
    key = id(node)
    if key in done:
        if done[key] is None:
            raise ValueError("a YAML alias refers to a node that contains it")
        return done[key]
    done[key] = None  # being converted
    if isinstance(node, dict):
        out: Any = {k: _numbers(v, done) for k, v in node.items()}
    else:
        out = [_numbers(v, done) for v in node]
    done[key] = out
    return out


#: Other names of keys: the names SPEC.md and the paper's code use.
ALIASES = {"proposer.unlearnable_reward": "selfplay.unlearnable_reward"}


def _apply_aliases(data: dict[str, Any]) -> dict[str, Any]:
    for alias, key in ALIASES.items():
        section, name = alias.split(".")
        block = data.get(section)
        if isinstance(block, dict) and name in block:
            value = block.pop(name)
            if not block:
                del data[section]
            _set_dotted(data, key, value)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (if any), then the dotted overrides."""
    data: dict[str, Any] = _apply_aliases(_read_yaml(Path(path))) if path is not None else {}
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, ALIASES.get(key, key), value)
    config: Config = _build(Config, data, "")
    validate(config)
    return config


def load_config_dict(data: dict[str, Any]) -> Config:
    """A config from a plain mapping (what ``to_dict`` gives), checked like a file."""
    config: Config = _build(Config, _numbers(data), "")
    validate(config)
    return config


def validate(config: Config) -> None:
    """Relations between keys that types alone cannot express."""
    s = config.selfplay
    positive = {
        "selfplay.batch_size": s.batch_size,
        "selfplay.learnability_rollouts": s.learnability_rollouts,
        "selfplay.induction_inputs": s.induction_inputs,
        "selfplay.ppo_epochs": s.ppo_epochs,
        "trainer.micro_batch_size": config.trainer.micro_batch_size,
        "rollout.max_response_tokens": config.rollout.max_response_tokens,
        "run.steps": config.run.steps,
    }
    positive |= {
        "selfplay.seed_factor": s.seed_factor,
        "selfplay.seed_max_rounds": s.seed_max_rounds,
        "rollout.batch_size": config.rollout.batch_size,
        "rollout.max_prompt_tokens": config.rollout.max_prompt_tokens,
        "run.eval_limit": config.run.eval_limit,
        "run.eval_max_tokens": config.run.eval_max_tokens,
        "sandbox.max_output_chars": config.sandbox.max_output_chars,
    }
    if config.buffer.capacity is not None:
        positive["buffer.capacity"] = config.buffer.capacity
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    # Keys that reach Rust as unsigned integers, or count things.
    for key, value in {
        "selfplay.references": s.references,
        "sandbox.workers": config.sandbox.workers,
        "resources.rollout_gpus": config.resources.rollout_gpus,
    }.items():
        if value < 0:
            raise ConfigError(f"{key} must be 0 or more, got {value}")
    if config.sandbox.workers > 128:
        raise ConfigError(
            f"sandbox.workers must be at most 128 (0: one per core), got {config.sandbox.workers}"
        )
    if not 0 <= config.run.seed < 2**64:
        raise ConfigError(f"run.seed must be in [0, 2**64), got {config.run.seed}")
    if config.sandbox.memory_mb < 32:
        raise ConfigError(
            "sandbox.memory_mb must be at least 32 (the interpreter needs about 20), "
            f"got {config.sandbox.memory_mb}"
        )
    ro = config.rollout
    if ro.temperature < 0 or not 0 < ro.top_p <= 1:
        raise ConfigError(
            f"rollout.temperature must be 0 (greedy) or more and rollout.top_p in (0, 1] "
            f"(got {ro.temperature}, {ro.top_p})"
        )
    if not 0 < s.induction_visible < s.induction_inputs:
        raise ConfigError("selfplay.induction_visible must be between 1 and selfplay.induction_inputs - 1")
    t = config.trainer
    if t.zero_stage not in (1, 2, 3):
        raise ConfigError(
            f"trainer.zero_stage must be 1, 2 or 3, got {t.zero_stage} "
            "(without ZeRO, use trainer.backend=torch)"
        )
    if t.lora_rank > 0 and t.backend == "deepspeed" and t.zero_stage == 3:
        raise ConfigError(
            "trainer.lora_rank with trainer.zero_stage=3 is not supported (adapters are saved and synced "
            "unpartitioned); LoRA's optimizer state is small: use trainer.zero_stage=2"
        )
    res = config.resources
    if (
        config.rollout.backend == "vllm"
        and res.colocate
        and res.gpus_per_node > 0
        and res.tensor_parallel > 1
    ):
        raise ConfigError(
            f"resources.tensor_parallel={res.tensor_parallel} with resources.colocate=true: a colocated "
            "vLLM engine shares its one GPU with a trainer rank; use resources.tensor_parallel=1, or "
            "resources.colocate=false for engines that span GPUs"
        )
    if config.rollout.backend == "hf" and t.backend == "deepspeed" and t.zero_stage == 3:
        raise ConfigError(
            "rollout.backend=hf cannot generate with ZeRO-3's partitioned parameters; "
            "use rollout.backend=vllm or trainer.zero_stage=2"
        )
    if s.kl_coef < 0:
        raise ConfigError(f"selfplay.kl_coef must be 0 (no KL penalty) or more, got {s.kl_coef}")
    if s.kl_coef > 0 and t.backend == "deepspeed" and t.zero_stage == 3 and t.lora_rank == 0:
        raise ConfigError(
            "selfplay.kl_coef > 0 keeps a frozen copy of the initial model on every rank, which ZeRO-3 "
            "would have to partition; use trainer.zero_stage=2, or LoRA (its reference is the base model)"
        )
    if t.micro_batch_tokens < 0 or t.lora_rank < 0:
        raise ConfigError("trainer.micro_batch_tokens and trainer.lora_rank must be 0 or more")
    if not all(0 <= b < 1 for b in t.betas) or t.weight_decay < 0:
        raise ConfigError(
            f"trainer.betas must be two numbers in [0, 1) and trainer.weight_decay 0 or more "
            f"(got {list(t.betas)}, {t.weight_decay})"
        )
    if t.grad_clip <= 0:
        raise ConfigError(f"trainer.grad_clip must be positive, got {t.grad_clip}")
    if t.lora_rank > 0 and (t.lora_alpha < 1 or not 0 <= t.lora_dropout < 1):
        raise ConfigError(
            f"trainer.lora_alpha must be at least 1 and trainer.lora_dropout in [0, 1) "
            f"(got {t.lora_alpha}, {t.lora_dropout})"
        )
    if s.clip_eps <= 0 or s.entropy_coef < 0:
        raise ConfigError(
            f"selfplay.clip_eps must be positive and selfplay.entropy_coef 0 or more "
            f"(got {s.clip_eps}, {s.entropy_coef})"
        )
    if config.rollout.weight_sync == "nccl":
        if res.colocate or res.gpus_per_node == 0 or config.rollout.backend != "vllm" or t.lora_rank > 0:
            raise ConfigError(
                "rollout.weight_sync=nccl sends full weights to vLLM engines on GPUs of their own: it needs "
                "rollout.backend=vllm, resources.colocate=false, resources.gpus_per_node > 0 and "
                "trainer.lora_rank=0 (rollout.weight_sync=auto picks it when it applies)"
            )
    if not 0 < config.rollout.gpu_memory_utilization <= 1:
        raise ConfigError("rollout.gpu_memory_utilization must be in (0, 1]")
    r = config.run
    if r.save_every < 1 or r.eval_every < 0 or r.keep_checkpoints < 0:
        raise ConfigError(
            "run.save_every must be at least 1, run.eval_every and run.keep_checkpoints 0 or more "
            f"(got {r.save_every}, {r.eval_every}, {r.keep_checkpoints})"
        )
    if config.resources.comm_timeout_s <= 0:
        raise ConfigError("resources.comm_timeout_s must be positive")
    if config.trainer.lr <= 0 or config.sandbox.timeout_s <= 0:
        raise ConfigError("trainer.lr and sandbox.timeout_s must be positive")


def to_dict(config: Config) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {
        section.name: {k: plain(v) for k, v in dataclasses.asdict(getattr(config, section.name)).items()}
        for section in dataclasses.fields(config)
    }


def dump_config(config: Config) -> str:
    """The resolved config as YAML (loads back to the same config)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
