"""Weight sync in split mode. On CPU: which path ``rollout.weight_sync`` picks,
the errors for layouts NCCL cannot serve, and the driver's orchestration over
fake trainer and engine actors (a late or failing side is named; the trainer
sends while the engines receive). The NCCL transfer itself needs two CUDA GPUs
(marker ``gpu``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azr import ConfigError
from azr.config import load_config
from azr.distributed import weight_sync
from azr.distributed.guards import CommError

SPLIT = ["rollout.backend=vllm", "resources.colocate=false", "resources.gpus_per_node=2"]


@pytest.mark.parametrize(
    ("colocated", "ready", "lora", "picked"),
    [
        (False, True, False, "nccl"),
        (True, True, False, "object_store"),
        (False, False, False, "object_store"),
        (False, True, True, "object_store"),
    ],
)
def test_auto_picks_nccl_only_for_full_weights_between_ready_processes(
    colocated: bool, ready: bool, lora: bool, picked: str
) -> None:
    assert weight_sync.choose("auto", colocated, ready, lora) == picked


def test_object_store_is_kept_when_asked() -> None:
    assert weight_sync.choose("object_store", False, True, False) == "object_store"
    assert weight_sync.choose("nccl", False, True, False) == "nccl"


def test_nccl_without_cuda_or_weight_transfer_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"needs CUDA and vLLM's weight-transfer engines.*weight_sync=auto"):
        weight_sync.choose("nccl", False, False, False)


def test_a_process_without_cuda_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert weight_sync.nccl_ready() is False


def test_a_process_without_vllm_weight_transfer_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    assert weight_sync.nccl_ready() is False
    # vLLM's first releases with a weight_transfer package lack the API used here.
    for name in ("vllm", "vllm.distributed", "vllm.distributed.weight_transfer"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    assert weight_sync.nccl_ready() is False
    sys.modules["vllm.distributed.weight_transfer"].WeightTransferTrainerFactory = object  # type: ignore[attr-defined]
    nccl = types.ModuleType("vllm.distributed.weight_transfer.nccl_engine")
    nccl.NCCLTrainerInitInfo = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.distributed.weight_transfer.nccl_engine", nccl)
    assert weight_sync.nccl_ready() is True


def test_nccl_config_loads_in_split_mode() -> None:
    assert load_config(None, [*SPLIT, "rollout.weight_sync=nccl"]).rollout.weight_sync == "nccl"
    assert load_config().rollout.weight_sync == "auto"


@pytest.mark.parametrize(
    "change",
    [
        "resources.colocate=true",
        "resources.gpus_per_node=0",
        "rollout.backend=hf",
        "trainer.lora_rank=8",
    ],
)
def test_nccl_where_it_cannot_work_is_refused_at_load(change: str) -> None:
    with pytest.raises(ConfigError, match=r"rollout.weight_sync=nccl .*resources.colocate=false"):
        load_config(None, [*SPLIT, "rollout.weight_sync=nccl", change])


# ------------------------------------------------------------ fake actors
class _Ref:
    def __init__(self, future: Future[Any]) -> None:
        self._future = future

    def future(self) -> Future[Any]:
        return self._future


class _Method:
    def __init__(self, pool: ThreadPoolExecutor, fn: Callable[..., Any]) -> None:
        self.pool, self.fn = pool, fn

    def remote(self, *args: Any) -> _Ref:
        return _Ref(self.pool.submit(self.fn, *args))


class _Actor:
    """Methods called as Ray's are (``actor.method.remote(...).future()``), run on threads."""

    def __init__(self, pool: ThreadPoolExecutor, **methods: Callable[..., Any]) -> None:
        for name, fn in methods.items():
            setattr(self, name, _Method(pool, fn))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=8)
    yield executor
    executor.shutdown(wait=True)


def _engine(pool: ThreadPoolExecutor, log: list[str], k: int, receive: Callable[[Any], None]) -> _Actor:
    return _Actor(
        pool,
        start_receiving=lambda: log.append(f"start {k}"),
        receive_weights=receive,
        finish_receiving=lambda: log.append(f"finish {k}"),
    )


def test_the_trainer_sends_while_every_engine_receives(pool: ThreadPoolExecutor) -> None:
    log: list[str] = []
    # Like an NCCL broadcast: nobody gets past it until the sender and both receivers are in.
    broadcast = threading.Barrier(3, timeout=5)
    engines = [_engine(pool, log, k, lambda info: broadcast.wait()) for k in range(2)]
    trainers = [_Actor(pool, send_weights=broadcast.wait), _Actor(pool, send_weights=lambda: None)]
    weight_sync.sync(trainers, engines, {"names": []}, timeout_s=10)
    assert sorted(log[:2]) == ["start 0", "start 1"]
    assert sorted(log[2:]) == ["finish 0", "finish 1"]


def test_an_engine_that_never_receives_is_a_timeout_naming_it(pool: ThreadPoolExecutor) -> None:
    release = threading.Event()
    try:
        engines = [
            _engine(pool, [], 0, lambda info: None),
            _engine(pool, [], 1, lambda info: release.wait(10)),
        ]
        trainers = [_Actor(pool, send_weights=lambda: None)]
        with pytest.raises(
            CommError,
            match=r"sending: not done within 0.2 s \(resources.comm_timeout_s\): engine \[1\]; check",
        ):
            weight_sync.sync(trainers, engines, {"names": []}, timeout_s=0.2)
    finally:
        release.set()


def test_a_failing_engine_is_named_without_waiting_for_the_trainer(pool: ThreadPoolExecutor) -> None:
    release = threading.Event()

    def broken(info: Any) -> None:
        raise RuntimeError("NCCL error: unhandled system error")

    try:
        engines = [_engine(pool, [], 0, broken)]
        trainers = [_Actor(pool, send_weights=lambda: release.wait(10))]  # stuck in its broadcast
        with pytest.raises(CommError, match=r"sending: engine 0 failed \(RuntimeError: NCCL error"):
            weight_sync.sync(trainers, engines, {"names": []}, timeout_s=5)
    finally:
        release.set()


def test_connect_gives_each_engine_its_own_ranks(pool: ThreadPoolExecutor) -> None:
    got: list[dict[str, Any]] = []
    info = {"names": ["w"], "dtype_names": ["bfloat16"], "shapes": [[2]]}
    trainers = [
        _Actor(pool, connect_sender=lambda master, world, dtype: info),
        _Actor(pool, connect_sender=lambda master, world, dtype: None),
    ]
    engines = [_Actor(pool, connect_receiver=got.append) for _ in range(2)]
    assert weight_sync.connect(trainers, engines, ("10.0.0.1", 29600), 2, "bfloat16", 5) == info
    assert sorted(g["rank_offset"] for g in got) == [1, 3]  # rank 0 is the trainer; 2 GPUs per engine
    assert {g["world_size"] for g in got} == {5}
    assert {(g["master_address"], g["master_port"]) for g in got} == {("10.0.0.1", 29600)}


def test_a_trainer_rank_that_never_joins_is_named(pool: ThreadPoolExecutor) -> None:
    release = threading.Event()
    try:
        trainers = [_Actor(pool, connect_sender=lambda master, world, dtype: release.wait(10))]
        engines = [_Actor(pool, connect_receiver=lambda init: None)]
        with pytest.raises(CommError, match=r"connecting: not done within 0.1 s .*trainer rank \[0\]"):
            weight_sync.connect(trainers, engines, ("h", 1), 1, "bfloat16", 0.1)
    finally:
        release.set()


# ------------------------------------------------------------ the trainer's weights
def test_trainer_weights_declare_what_they_yield_with_tied_weights_once() -> None:
    torch = pytest.importorskip("torch", reason="needs the training stack: pip install 'azr[train]'")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.norm = torch.nn.LayerNorm(4)
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight  # tied
            self.register_buffer("steps", torch.zeros(3, dtype=torch.int64))

    class Trainer:
        """What DeepSpeedTrainer.named_weights yields: every state_dict name, tied ones too."""

        model = Tiny()

        def named_weights(self) -> Iterator[tuple[str, Any]]:
            keys = set(self.model.state_dict())
            for name, p in self.model.named_parameters(remove_duplicate=False):
                if name in keys:
                    yield name, p.detach()
            for name, b in self.model.named_buffers():
                yield name, b

    weights = weight_sync.TrainerWeights(Trainer(), torch.bfloat16, sends=False)
    meta = weights.metadata()
    assert [m.name for m in meta] == ["embed.weight", "norm.weight", "norm.bias", "steps"]
    assert [m.dtype for m in meta] == [torch.bfloat16] * 3 + [torch.int64]
    assert [(name, tuple(t.shape)) for name, t in weights] == [(m.name, m.shape) for m in meta]
    info = weights.update_info()
    assert info["dtype_names"] == ["bfloat16", "bfloat16", "bfloat16", "int64"]
    assert info["shapes"][0] == [10, 4]


# ------------------------------------------------------------ the real thing, on two GPUs
@pytest.mark.gpu
@pytest.mark.vllm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_nccl_sync_makes_the_split_engine_score_as_the_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Split mode on 1 engine GPU + 1 trainer GPU: after an update and one sync over
    NCCL, the engine's log-probs of its samples are the trainer's."""
    torch = pytest.importorskip("torch", reason="needs the training stack: pip install 'azr[train]'")
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs: one for the engine, one for the trainer rank")
    for module in ("vllm", "ray", "deepspeed"):
        pytest.importorskip(module, reason=f"needs {module}: pip install 'azr[gpu,ray,deepspeed]'")
    import ray
    from azr.distributed.ray_driver import launch
    from azr.placement import plan
    from azr.rollout.base import SamplingParams
    from azr.train import Sample
    from transformers import AutoModelForCausalLM

    from tests.rollout.test_vllm import PROMPTS, _scores

    config = load_config(
        None,
        [
            f"model.path={tiny_model_dir}",
            "model.dtype=float32",
            *SPLIT,
            "rollout.weight_sync=nccl",
            "rollout.gpu_memory_utilization=0.2",
            "rollout.sleep=false",
            "rollout.enforce_eager=true",
            "rollout.max_prompt_tokens=256",
            "rollout.max_response_tokens=64",
            "resources.comm_timeout_s=300",
            "trainer.backend=deepspeed",
            "trainer.lr=1e-2",
            "sandbox.workers=1",
        ],
    )
    cluster = launch(config, plan(config.resources), str(tiny_model_dir), None, tmp_path / "run")
    try:
        prompt = list(range(5, 25))
        cluster.trainer.step(
            [Sample(prompt, list(range(30, 46)), 1.0), Sample(prompt, list(range(50, 66)), -1.0)]
        )
        cluster.sync()
        groups = cluster.rollout.generate(
            PROMPTS, SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=1)
        )
        before = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        trained = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        trained.load_state_dict(cluster.trainer.gather())  # the trainer's weights, through the object store
        for group in groups:
            for c in group:
                engine_lps = torch.tensor(c.logprobs)
                assert torch.allclose(_scores(trained, c), engine_lps, atol=1e-3)
                assert (_scores(before, c) - engine_lps).abs().max() > 1e-2  # the sync changed something
    finally:
        cluster.shutdown()
        ray.shutdown()
