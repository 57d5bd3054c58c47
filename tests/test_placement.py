"""Placement from the resources block: colocated, split, multi-node, and clear errors."""

from __future__ import annotations

import pytest
from azr.config import ConfigError, ResourcesConfig, load_config
from azr.placement import plan


def test_one_gpu_runs_in_process() -> None:
    p = plan(ResourcesConfig())
    assert p.trainer == [(0, 0)] and p.engines == [[(0, 0)]] and not p.uses_ray


def test_cpu_run() -> None:
    p = plan(ResourcesConfig(gpus_per_node=0))
    assert p.trainer == [(0, -1)] and not p.uses_ray
    assert p.processes_on(0) == (1, 0)


def test_cpu_ranks_on_several_nodes() -> None:
    # resources.processes counts per node, as gpus_per_node does.
    p = plan(ResourcesConfig(nodes=2, gpus_per_node=0, processes=2))
    assert p.trainer == [(0, -1), (0, -1), (1, -1), (1, -1)] and p.uses_ray and p.nodes == 2
    assert [p.processes_on(n) for n in (0, 1)] == [(2, 0), (2, 0)]
    one_each = plan(ResourcesConfig(nodes=2, gpus_per_node=0))
    assert one_each.trainer == [(0, -1), (1, -1)] and one_each.uses_ray
    split = plan(ResourcesConfig(nodes=2, gpus_per_node=0, processes=2, colocate=False))
    assert split.engines == [[(0, -1)]] and split.trainer == [(0, -1), (1, -1), (1, -1)]
    assert [split.processes_on(n) for n in (0, 1)] == [(2, 0), (2, 0)]


def test_cpu_processes_run_on_ray() -> None:
    p = plan(ResourcesConfig(gpus_per_node=0, processes=3))
    assert p.trainer == [(0, -1)] * 3 and len(p.engines) == 3 and p.colocated and p.uses_ray
    split = plan(ResourcesConfig(gpus_per_node=0, processes=3, colocate=False))
    assert len(split.trainer) == 2 and len(split.engines) == 1 and not split.colocated and split.uses_ray
    with pytest.raises(ConfigError, match=r"needs more processes than resources\.rollout_gpus"):
        plan(ResourcesConfig(gpus_per_node=0, processes=2, colocate=False, rollout_gpus=2))
    with pytest.raises(ConfigError, match="processes must be at least 1"):
        plan(ResourcesConfig(gpus_per_node=0, processes=0))


def test_colocated_node_with_tensor_parallel_engines() -> None:
    p = plan(ResourcesConfig(gpus_per_node=8, tensor_parallel=2))
    assert p.world_size == 8 and p.uses_ray and p.colocated
    assert p.engines == [[(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4), (0, 5)], [(0, 6), (0, 7)]]


def test_split_two_nodes_engines_never_cross_a_node() -> None:
    p = plan(ResourcesConfig(nodes=2, gpus_per_node=8, colocate=False, rollout_gpus=12, tensor_parallel=4))
    assert p.engines == [
        [(0, g) for g in range(4)],
        [(0, g) for g in range(4, 8)],
        [(1, g) for g in range(4)],
    ]
    assert p.trainer == [(1, g) for g in range(4, 8)]
    every = [s for e in p.engines for s in e] + p.trainer
    assert len(every) == len(set(every)) == 16, "each GPU has exactly one role"
    # Ray reserves one bundle per node: its processes (engines + ranks) and its GPUs.
    assert [p.processes_on(n) for n in (0, 1)] == [(2, 8), (5, 8)]
    colocated = plan(ResourcesConfig(nodes=2, gpus_per_node=8, tensor_parallel=2))
    assert [colocated.processes_on(n) for n in (0, 1)] == [(8, 8), (8, 8)], "engines live in the ranks"


def test_split_defaults_to_half() -> None:
    p = plan(ResourcesConfig(gpus_per_node=8, colocate=False, tensor_parallel=2))
    assert sum(len(e) for e in p.engines) == 4 and p.world_size == 4


@pytest.mark.parametrize(
    ("res", "message"),
    [
        (ResourcesConfig(gpus_per_node=4, tensor_parallel=8), "never spans nodes"),
        (ResourcesConfig(gpus_per_node=6, tensor_parallel=4), "must divide"),
        (ResourcesConfig(gpus_per_node=1, colocate=False), "at least 2 GPUs"),
        (ResourcesConfig(gpus_per_node=4, colocate=False, rollout_gpus=4), "no GPU to train"),
        (ResourcesConfig(gpus_per_node=4, colocate=False, rollout_gpus=3, tensor_parallel=2), "multiple of"),
        (
            ResourcesConfig(nodes=3, gpus_per_node=3, colocate=False, rollout_gpus=8, tensor_parallel=2),
            "crossing",
        ),
        (ResourcesConfig(nodes=0), "nodes"),
    ],
)
def test_impossible_placements_name_the_setting(res: ResourcesConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(res)


def test_resources_block_loads_from_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text("resources:\n  nodes: 2\n  gpus_per_node: 8\n  colocate: false\n")
    cfg = load_config(path, ("resources.tensor_parallel=2",))
    assert plan(cfg.resources).nodes == 2
    with pytest.raises(ConfigError, match="tensor_parallel"):
        load_config(path, ("resources.tensor_paralel=2",))
