"""The self-play loop past one process, on Ray (``pip install 'azr[ray]'``).

The driver (the ``azr train`` process) keeps what is cheap and stateful: the
config, the tokenizer, the task buffer, prompt building, advantages and the
checkpoints' bookkeeping. Ray actors do the heavy work:

- **workers**, one per trainer rank, placed by ``azr.placement`` in a
  placement group (one GPU each, or one CPU for ``resources.gpus_per_node=0``
  with ``resources.processes > 1``). Each holds a DeepSpeed rank; when
  colocated it also holds a rollout engine on the same device, which sleeps
  during updates and takes the new weights in process (the hybrid layout of
  veRL).
- **engines** (``resources.colocate: false``), one actor per vLLM engine with
  ``tensor_parallel`` GPUs on one node; after each update trainer rank 0
  broadcasts the full weights to them over NCCL (``azr.distributed.weight_sync``),
  or, with ``rollout.weight_sync: object_store`` or off CUDA, the trainer ranks
  gather them and rank 0 hands them over through Ray's object store.
- **sandbox workers**, CPU actors spread over the nodes, each a process with
  one single-threaded ``Sandbox``; the driver splits every batch of checks
  among them.

Every collective has ``resources.comm_timeout_s`` as its timeout and the ranks
pass a health check before the first step, so a dead rank is an error, not a
hang.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azr._core import ConfigError
from azr.config import Config, to_dict
from azr.placement import Placement
from azr.rollout.base import Completion, SamplingParams
from azr.sandbox.pool import RemoteSandbox, call
from azr.train.base import Sample

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "resources ask for several processes, which run on Ray: pip install 'azr[ray]'"
        ) from exc
    return ray


def chunks(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous, nearly equal pieces (some may be empty)."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        out.append(list(items[start:end]))
        start = end
    return out


def shard_by_tokens(samples: Sequence[Sample], parts: int) -> list[list[Sample]]:
    """Samples dealt to ``parts`` ranks, longest first to the lightest rank."""
    shards: list[list[Sample]] = [[] for _ in range(parts)]
    load = [0] * parts
    for s in sorted(samples, key=lambda s: -(len(s.prompt_ids) + len(s.response_ids))):
        k = load.index(min(load))
        shards[k].append(s)
        load[k] += len(s.prompt_ids) + len(s.response_ids)
    return shards


# ------------------------------------------------------------ the actors' code
class _Worker:
    """One trainer rank, with a rollout engine on the same device when colocated."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.trainer: Any = None
        self.engine: Any = None
        self._sync: Callable[[], None] = lambda: None
        self.sleeps = False
        self.sender: Any = None
        self.receiver: Any = None
        self.adapter_folder: Path | None = None

    def address(self) -> tuple[str, int]:
        """This node's address as the other nodes reach it (Ray's node IP: the host name
        often resolves to a loopback address such as 127.0.1.1), and a free port."""
        from azr.distributed.guards import free_port

        return str(_ray().util.get_node_ip_address()), free_port()

    def setup(
        self,
        config: dict[str, Any],
        rank: int,
        world: int,
        master: tuple[str, int],
        weights: str,
        resume: str | None,
    ) -> None:
        from azr.config import load_config_dict
        from azr.models import resolve
        from azr.rl.backends import build_trainer, load_policy, vllm_sync

        cfg = load_config_dict(config)
        os.environ.update(
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK="0",  # Ray gives each actor its own GPU(s)
            MASTER_ADDR=master[0],
            MASTER_PORT=str(master[1]),
        )
        # On another node, ``weights`` (the driver's path) may exist only once this
        # node has built or converted the model into its own cache.
        source = resolve(cfg.model.path, cfg.model.revision)
        if self.role == "engine":
            self.engine = _engine(cfg, weights, None, None)
            return
        lora = cfg.trainer.lora_rank > 0
        self.tokenizer, model = load_policy(
            cfg, source, weights, Path(resume) if resume is not None else None
        )
        self.trainer = build_trainer(cfg, model, self.tokenizer.pad_token_id or 0)
        if resume is not None:
            self.trainer.load_optimizer(Path(resume))
        if self.role == "hybrid":
            self.engine = _engine(cfg, weights, self.trainer, self.tokenizer)
            if cfg.rollout.backend == "vllm":
                scratch = Path(cfg.run.out) / ".sync" / f"rank{rank}"
                self._sync = vllm_sync(self.engine, self.trainer, lora, scratch)
                if lora:
                    self._sync()
                self.sleeps = cfg.rollout.sleep

    def health(self, timeout_s: float) -> float:
        from azr.distributed.guards import health_check

        return health_check(timeout_s)

    def close(self) -> None:
        """Leave the process group and stop the engine's processes (vLLM's engine
        core and tensor-parallel workers are children that hold GPU memory)."""
        if self.trainer is not None:
            self.trainer.close()
        closer = getattr(self.engine, "close", None)
        if closer is not None:
            closer()
            self.engine = None
        if self.adapter_folder is not None:
            import shutil

            shutil.rmtree(self.adapter_folder, ignore_errors=True)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        return list(self.engine.generate(prompts, params))

    def step(self, samples: list[Sample], total_tokens: int, epochs: int = 1) -> dict[str, float]:
        if self.sleeps:
            self.engine.sleep()  # the colocated engine frees its memory for the update
        return dict(self.trainer.step_shard(samples, total_tokens, epochs))

    def sync_local(self) -> None:
        self._sync()

    def gather_weights(self) -> dict[str, Any] | None:
        """Full weights on CPU (rank 0 returns them; every rank takes part in the gather)."""
        rank = int(os.environ["RANK"])
        out = {}
        for name, tensor in self.trainer.named_weights():
            if rank == 0:
                out[name] = tensor.to("cpu", copy=True)
        return out if rank == 0 else None

    def load_weights(self, state: dict[str, Any]) -> None:
        self.engine.load_weights(state)

    def gather_adapter(self) -> dict[str, bytes] | None:
        """Rank 0's LoRA adapter as its files (what ``save_pretrained`` writes),
        to travel to engines on other nodes; other ranks return None (LoRA
        runs replicate the adapter on every rank: ZeRO-3 is refused)."""
        if int(os.environ["RANK"]) != 0:
            return None
        import tempfile

        from azr.train.weights import ADAPTER

        with tempfile.TemporaryDirectory(prefix="azr-adapter-") as tmp:
            self.trainer.model.save_pretrained(Path(tmp) / ADAPTER, safe_serialization=True)
            return {p.name: p.read_bytes() for p in (Path(tmp) / ADAPTER).iterdir() if p.is_file()}

    def load_adapter_files(self, files: dict[str, bytes]) -> None:
        """Serve the adapter in ``files`` from now on (a folder of this node's own)."""
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="azr-adapter-"))
        for name, data in files.items():
            (folder / Path(name).name).write_bytes(data)
        self.engine.load_adapter(folder)
        # vLLM has read it; the previous version's files are no longer needed.
        if self.adapter_folder is not None:
            shutil.rmtree(self.adapter_folder, ignore_errors=True)
        self.adapter_folder = folder

    def nccl_ready(self) -> bool:
        from azr.distributed.weight_sync import nccl_ready

        return nccl_ready()

    # Weight sync over NCCL (azr.distributed.weight_sync drives these from the driver).
    def connect_sender(self, master: tuple[str, int], world: int, dtype: str) -> dict[str, Any] | None:
        from azr.distributed.weight_sync import WeightSender

        rank = int(os.environ["RANK"])
        self.sender = WeightSender(self.trainer, rank, master, world, dtype)
        return self.sender.weights.update_info() if rank == 0 else None

    def send_weights(self) -> None:
        self.sender.send()

    def connect_receiver(self, init_info: dict[str, Any]) -> None:
        from azr.distributed.weight_sync import WeightReceiver

        self.receiver = WeightReceiver(self.engine, init_info)

    def start_receiving(self) -> None:
        self.receiver.start()

    def receive_weights(self, update_info: dict[str, Any]) -> None:
        self.receiver.receive(update_info)

    def finish_receiving(self) -> None:
        self.receiver.finish()

    def save(self, folder: str) -> None:
        self.trainer.save(Path(folder))

    def node(self) -> str:
        return str(_ray().get_runtime_context().get_node_id())

    def sees(self, path: str) -> bool:
        return Path(path).exists()


def _engine(cfg: Config, weights: str, trainer: Any, tokenizer: Any) -> Any:
    r = cfg.rollout
    if r.backend == "hf":
        from azr.rollout.hf import HFRollout

        if trainer is None:
            raise ConfigError("rollout.backend=hf runs only colocated (resources.colocate=true)")
        return HFRollout(trainer.model, tokenizer, r.batch_size, r.max_prompt_tokens)
    from azr.rl.backends import make_vllm

    return make_vllm(cfg, weights, sleep=r.sleep and trainer is not None, trainer=trainer)


class _SandboxWorker:
    def __init__(self, timeout_s: float, memory_mb: int, workers: int, max_output_chars: int) -> None:
        from azr.sandbox import Sandbox

        self.sandbox = Sandbox(
            timeout_s=timeout_s, memory_mb=memory_mb, workers=workers, max_output_chars=max_output_chars
        )

    def call(self, method: str, items: list[Any]) -> list[dict[str, Any]]:
        return call(self.sandbox, method, items)


# ------------------------------------------------------------ the driver's proxies
class RaySandbox(RemoteSandbox):
    """The batch methods of ``Sandbox`` the loop uses, spread over CPU actors."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors

    def _map(self, method: str, items: Sequence[Any]) -> list[dict[str, Any]]:
        ray = _ray()
        parts = chunks(items, len(self.actors))
        refs = [a.call.remote(method, p) for a, p in zip(self.actors, parts, strict=True) if p]
        return [d for part in ray.get(refs) for d in part]


class RayRollout:
    """A ``RolloutEngine`` over several engines: prompts split evenly, results in order."""

    def __init__(self, engines: list[Any]) -> None:
        self.engines = engines

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        ray = _ray()
        parts = chunks(list(prompts), len(self.engines))
        refs = []
        for k, (engine, part) in enumerate(zip(self.engines, parts, strict=True)):
            if part:
                # Each engine samples its own stream; the same seed would repeat samples.
                seed = None if params.seed is None else params.seed + 1_000_003 * k
                refs.append(engine.generate.remote(part, SamplingParams(**{**vars(params), "seed": seed})))
        return [group for result in ray.get(refs) for group in result]

    def load_weights(self, state_dict: dict[str, Any]) -> None:
        self.load_weights_ref(_ray().put(state_dict))

    def load_weights_ref(self, ref: Any) -> None:
        """Load the weights in object ``ref`` into every engine."""
        _ray().get([e.load_weights.remote(ref) for e in self.engines])


class RayTrainer:
    """A ``Trainer`` over the DeepSpeed ranks: samples balanced by tokens, one step on all."""

    def __init__(self, workers: list[Any], nodes: int = 1) -> None:
        self.workers = workers
        self.nodes = nodes
        """The distinct Ray nodes the ranks run on."""

    def step(self, samples: Sequence[Sample], epochs: int = 1) -> dict[str, float]:
        from azr.train.batching import TERMS

        ray = _ray()
        kept = [s for s in samples if s.response_ids]
        total = sum(len(s.response_ids) for s in kept)
        shards = shard_by_tokens(kept, len(self.workers))
        results = ray.get(
            [w.step.remote(shard, total, epochs) for w, shard in zip(self.workers, shards, strict=True)]
        )
        if "train/skipped" in results[0]:
            return results[0]
        merged = dict(results[0])
        # Each rank reports its share of the whole batch's token means: they add up.
        for key in TERMS.values():
            merged[key] = sum(r[key] for r in results)
        merged["train/ranks"] = float(len(self.workers))
        merged["train/nodes"] = float(self.nodes)
        return merged

    def save(self, folder: Path) -> None:
        ray = _ray()
        folder.mkdir(parents=True, exist_ok=True)
        ray.get([w.save.remote(str(folder)) for w in self.workers])

    def load_optimizer(self, folder: Path) -> None:
        pass  # the ranks load it at start-up, from the checkpoint they were given

    def gather(self) -> dict[str, Any]:
        return dict(_ray().get(self.gather_ref()))

    def gather_ref(self) -> Any:
        """The object holding the full weights (every rank takes part in the
        gather; rank 0's result holds them)."""
        ray = _ray()
        refs = [w.gather_weights.remote() for w in self.workers]
        ray.get(refs[1:])  # the others' part is done (their results are None)
        ray.wait(refs[:1], num_returns=1)
        return refs[0]


@dataclass
class Cluster:
    rollout: Any
    trainer: RayTrainer
    sync: Callable[[], None]
    sandbox: RaySandbox
    placement_group: Any

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Ranks leave their process group (bounded wait), then the actors go."""
        ray = _ray()
        # Colocated, the trainer ranks are the engines (one list); split, they are actors of their own.
        engines = getattr(self.rollout, "engines", [])
        engines = [] if engines is self.trainer.workers else engines
        refs = [a.close.remote() for a in [*self.trainer.workers, *engines]]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as exc:  # a rank that already died: it is going anyway
                log.warning("a trainer rank or engine did not close cleanly: %s", exc)
        ray.util.remove_placement_group(self.placement_group)


def launch(
    config: Config, placement: Placement, weights: str, resume: Path | None, run_folder: Path
) -> Cluster:
    """Start the actors of ``placement`` and wire them into the loop's interfaces."""
    ray = _ray()
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    res = config.resources
    if config.trainer.backend != "deepspeed":
        raise ConfigError(
            "several trainer ranks need trainer.backend=deepspeed (torch trains in one process)"
        )
    if not ray.is_initialized():
        address = res.ray_address or os.environ.get("RAY_ADDRESS")
        # A local cluster declares at least a CPU per rank plus one for the sandbox actor;
        # Ray's CPU counts are for scheduling, the processes share the real cores.
        processes = len(placement.trainer) + (0 if placement.colocated else len(placement.engines))
        cpus = None if address else max(os.cpu_count() or 1, processes + 1)
        ray.init(address=address, num_cpus=cpus, include_dashboard=False, log_to_driver=True)
    gpu = res.gpus_per_node > 0
    wanted = res.nodes * res.gpus_per_node
    have = int(ray.cluster_resources().get("GPU", 0))
    if wanted > have:
        raise ConfigError(
            f"resources ask for {wanted} GPUs ({res.nodes} node(s) x {res.gpus_per_node}); "
            f"the Ray cluster has {have}: start the nodes first, or lower resources.gpus_per_node/nodes"
        )
    alive = sum(1 for n in ray.nodes() if n.get("Alive"))
    if placement.nodes > alive:
        raise ConfigError(
            f"resources.nodes={placement.nodes} but the Ray cluster has {alive} node(s): "
            "start the others (ray start --address=...) or lower resources.nodes"
        )
    # One bundle per node holding all of that node's processes (one CPU each in Ray's
    # accounting, and their GPUs), on distinct nodes: rank r runs on the node the
    # placement gave it, and the ranks of a node are contiguous.
    bundles = []
    for node in range(placement.nodes):
        procs, gpus = placement.processes_on(node)
        bundles.append({"CPU": procs, "GPU": gpus} if gpu else {"CPU": procs})
    pg = placement_group(bundles, strategy="STRICT_SPREAD" if placement.nodes > 1 else "PACK")
    if not _wait(ray, pg.ready(), res.comm_timeout_s):
        raise ConfigError(
            f"Ray could not reserve {bundles} (one bundle per node) within {res.comm_timeout_s:g} s: "
            f"the cluster has {ray.cluster_resources()}"
        )
    role = "hybrid" if placement.colocated else "trainer"
    worker_cls = ray.remote(_Worker)

    # Ray leaves CUDA_VISIBLE_DEVICES alone for an actor that asks for no GPU, so CPU
    # ranks (resources.gpus_per_node: 0) on a machine with GPUs would all see them.
    hide_gpus = {} if gpu else {"runtime_env": {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}}

    def on(node: int, gpus: float) -> Any:
        strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=node)
        return worker_cls.options(num_gpus=gpus, num_cpus=1, scheduling_strategy=strategy, **hide_gpus)

    workers = [on(node, 1 if gpu else 0).remote(role) for node, _ in placement.trainer]
    master = ray.get(workers[0].address.remote())
    plain = to_dict(config)
    plain["run"]["out"] = str(run_folder)
    resume_s = str(resume) if resume else None
    world = len(workers)
    ray.get([w.setup.remote(plain, r, world, master, weights, resume_s) for r, w in enumerate(workers)])
    if res.nodes > 1 and not all(ray.get([w.sees.remote(str(run_folder)) for w in workers])):
        raise ConfigError(
            f"run.out {run_folder} is not visible on every node: a multi-node run writes its "
            "checkpoints from rank 0, so put run.out on a shared filesystem"
        )
    ray.get([w.health.remote(res.comm_timeout_s) for w in workers])
    trainer = RayTrainer(workers, nodes=len(set(ray.get([w.node.remote() for w in workers]))))
    if placement.colocated:
        rollout: Any = RayRollout(workers)

        def sync() -> None:
            ray.get([w.sync_local.remote() for w in workers])
    else:
        from azr.distributed import weight_sync

        engines = [
            on(slots[0][0], res.tensor_parallel if gpu else 0).remote("engine") for slots in placement.engines
        ]
        # Every trainer rank builds a sender (rank 0 sends, the others join ZeRO-3's gathers).
        ready = all(ray.get([a.nccl_ready.remote() for a in [*workers, *engines]]))
        mode = (
            weight_sync.choose(config.rollout.weight_sync, False, ready, config.trainer.lora_rank > 0)
            if config.rollout.backend == "vllm"
            else "object_store"  # the engines' setup refuses hf with the reason
        )
        engine_plain = {**plain, "rollout": {**plain["rollout"], "weight_sync": mode}}
        ray.get([e.setup.remote(engine_plain, 0, 1, master, weights, resume_s) for e in engines])
        rollout = RayRollout(engines)
        if mode == "nccl":
            update_info = weight_sync.connect(
                workers,
                engines,
                ray.get(workers[0].address.remote()),
                res.tensor_parallel,
                config.model.dtype,
                res.comm_timeout_s,
            )

            def sync() -> None:
                weight_sync.sync(workers, engines, update_info, res.comm_timeout_s)
        elif config.trainer.lora_rank > 0:

            def sync() -> None:
                # Only the adapter travels, as files: each engine loads it as a new version.
                files = ray.put(ray.get(workers[0].gather_adapter.remote()))
                ray.get([e.load_adapter_files.remote(files) for e in engines])

            sync()  # the fresh (or resumed) adapter before the first rollout
        else:

            def sync() -> None:
                # Rank 0's gathered weights go from its object store to the engines'
                # without a stop in the driver.
                rollout.load_weights_ref(trainer.gather_ref())

    s = config.sandbox
    # One single-threaded sandbox per actor process (one CPU each in Ray's accounting,
    # see azr.sandbox.pool): sandbox.workers actors, or the CPUs the placement group
    # (trainer ranks and, when split, engines) leaves.
    free = int(ray.cluster_resources().get("CPU", 2)) - sum(int(b["CPU"]) for b in bundles)
    count = s.workers or max(res.nodes, free)
    sandbox_cls = ray.remote(_SandboxWorker).options(num_cpus=1, scheduling_strategy="SPREAD")
    actors = [sandbox_cls.remote(s.timeout_s, s.memory_mb, 1, s.max_output_chars) for _ in range(count)]
    ready, _ = ray.wait(
        [a.call.remote("run_batch", []) for a in actors], num_returns=len(actors), timeout=res.comm_timeout_s
    )
    if len(ready) < len(actors):
        raise ConfigError(
            f"only {len(ready)} of {len(actors)} sandbox actors started within {res.comm_timeout_s:g} s; "
            f"the cluster has {ray.cluster_resources()}"
        )
    return Cluster(rollout, trainer, sync, RaySandbox(actors), pg)


def _wait(ray: Any, ref: Any, timeout_s: float) -> bool:
    ready, _ = ray.wait([ref], timeout=timeout_s)
    return bool(ready)
