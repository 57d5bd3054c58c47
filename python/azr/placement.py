"""Where rollout engines and trainer ranks run, from the ``resources:`` block.

One config scales from one GPU to many nodes: ``colocate: true`` puts a vLLM
engine and a trainer rank on every GPU (the engine sleeps while the trainer
updates); ``colocate: false`` splits the GPUs into rollout engines and trainer
ranks. An engine never spans nodes (tensor parallelism stays on NVLink).
More than one process (several GPUs or nodes) runs on Ray; one GPU, or the
CPU, runs in this process.
"""

from __future__ import annotations

from dataclasses import dataclass

from azr._core import ConfigError
from azr.config import ResourcesConfig

Slot = tuple[int, int]
"""(node, GPU index on that node); the GPU is -1 for a CPU run."""


@dataclass(frozen=True)
class Placement:
    trainer: list[Slot]
    """One trainer rank per slot, in rank order."""
    engines: list[list[Slot]]
    """The GPUs of each vLLM engine (``tensor_parallel`` of them, on one node)."""
    colocated: bool
    uses_ray: bool
    nodes: int

    @property
    def world_size(self) -> int:
        return len(self.trainer)

    def processes_on(self, node: int) -> tuple[int, int]:
        """(processes, GPUs) on ``node``: trainer ranks, plus the engines when split
        (colocated engines live in the ranks' processes)."""
        slots = list(self.trainer)
        procs = sum(1 for n, _ in slots if n == node)
        if not self.colocated:
            procs += sum(1 for e in self.engines if e[0][0] == node)
            slots += [slot for e in self.engines for slot in e]
        return procs, sum(1 for n, g in slots if n == node and g >= 0)


def _engines_on(node: int, gpus: list[int], tp: int) -> list[list[Slot]]:
    return [[(node, g) for g in gpus[k : k + tp]] for k in range(0, len(gpus), tp)]


def plan(res: ResourcesConfig) -> Placement:
    """The placement, or a ConfigError that says which setting to change."""
    if res.nodes < 1:
        raise ConfigError(f"resources.nodes must be at least 1, got {res.nodes}")
    if res.gpus_per_node < 0:
        raise ConfigError(f"resources.gpus_per_node must be 0 (CPU) or more, got {res.gpus_per_node}")
    if res.tensor_parallel < 1:
        raise ConfigError(f"resources.tensor_parallel must be at least 1, got {res.tensor_parallel}")
    if res.gpus_per_node == 0:
        # The CPU: one process, or ranks on Ray (resources.processes per node), to test that path
        # without GPUs, on one machine or on several.
        if res.processes < 1:
            raise ConfigError(f"resources.processes must be at least 1, got {res.processes}")
        slots = [(n, -1) for n in range(res.nodes) for _ in range(res.processes)]
        if res.colocate:
            return Placement(slots, [[slot] for slot in slots], True, len(slots) > 1, res.nodes)
        # Split on the CPU: resources.rollout_gpus counts engine processes (default 1), first slots first.
        n_engines = res.rollout_gpus or 1
        if len(slots) - n_engines < 1:
            raise ConfigError(
                f"resources.colocate=false on the CPU needs more processes than resources.rollout_gpus "
                f"(engines); got {len(slots)} processes and {n_engines} engines"
            )
        return Placement(slots[n_engines:], [[slot] for slot in slots[:n_engines]], False, True, res.nodes)
    per_node, tp = res.gpus_per_node, res.tensor_parallel
    if tp > per_node:
        raise ConfigError(
            f"resources.tensor_parallel={tp} is more than the {per_node} GPUs of a node "
            "(an engine never spans nodes)"
        )
    total = res.nodes * per_node
    uses_ray = total > 1
    if res.colocate:
        if per_node % tp:
            raise ConfigError(
                f"resources.tensor_parallel={tp} must divide "
                f"resources.gpus_per_node={per_node} when colocated"
            )
        trainer = [(n, g) for n in range(res.nodes) for g in range(per_node)]
        engines = [e for n in range(res.nodes) for e in _engines_on(n, list(range(per_node)), tp)]
        return Placement(trainer, engines, True, uses_ray, res.nodes)
    if total < 2:
        raise ConfigError("resources.colocate=false needs at least 2 GPUs (one to generate, one to train)")
    rollout = res.rollout_gpus or max(tp, (total // 2) // tp * tp)
    if rollout % tp:
        raise ConfigError(
            f"resources.rollout_gpus={rollout} must be a multiple of resources.tensor_parallel={tp}"
        )
    if rollout >= total:
        raise ConfigError(
            f"resources.rollout_gpus={rollout} leaves no GPU to train on ({total} in all); "
            "lower it or colocate"
        )
    split_engines: list[list[Slot]] = []
    split_trainer: list[Slot] = []
    left = rollout
    for n in range(res.nodes):
        take = min(left, per_node) // tp * tp
        split_engines.extend(_engines_on(n, list(range(take)), tp))
        split_trainer.extend((n, g) for g in range(take, per_node))
        left -= take
    if left:
        raise ConfigError(
            f"resources.rollout_gpus={rollout} cannot be split into engines of {tp} GPUs "
            "without crossing nodes"
        )
    return Placement(split_trainer, split_engines, False, True, res.nodes)
