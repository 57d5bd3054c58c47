"""Weight sync over NCCL for split mode (``resources.colocate: false``), with
vLLM's own weight-transfer engines (``vllm.distributed.weight_transfer``).

Trainer rank 0 and every vLLM worker form one NCCL group: rank 0 is the
trainer, engine ``k``'s workers are ranks ``1 + k·tensor_parallel`` onward.
Each update the trainer broadcasts the full weights, packed into fixed-size
buffers, in the engine's dtype; the other trainer ranks only take part in
ZeRO-3's gathers. The engines load what arrives through vLLM's layerwise
reload, so fused layers (qkv, gate-up) get all their parts.

vLLM's trainer engine expects to drive the engines itself (start, receive
concurrently with its broadcast, finish). Here the driver does that instead,
with rank 0's client left empty, for two reasons: every call then has the
``resources.comm_timeout_s`` deadline and an error that names the side that
failed (rank 0 blocked in a broadcast cannot report anything), and each of
several independent engines needs its own rank offset, where vLLM's client
sends the same init info to all of them.

``rollout.weight_sync`` picks this path or the object store (the trainer
ranks gather to rank 0, which hands the weights over through Ray's object
store); :func:`choose` says which ``auto`` means.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from azr._core import ConfigError
from azr.distributed.guards import CommError

BUFFER_BYTES = 256 << 20
"""Bytes per packed broadcast buffer; the trainer and each engine worker hold two."""
BUFFERS = 2


def choose(setting: str, colocated: bool, ready: bool, lora: bool) -> Literal["nccl", "object_store"]:
    """The weight sync a run uses, from ``rollout.weight_sync`` and the layout.

    ``auto`` is NCCL when the engines have GPUs of their own, they and the
    trainer can take part (``ready``: what those processes report from
    :func:`nccl_ready`), and the trainer sends full weights (LoRA adapters go
    through the object store). ``nccl`` in a layout where it cannot work was
    refused when the config was loaded; here it is refused when the processes
    are not ready.
    """
    if setting == "object_store":
        return "object_store"
    if setting == "auto":
        return "nccl" if ready and not colocated and not lora else "object_store"
    if not ready:
        raise ConfigError(
            "rollout.weight_sync=nccl needs CUDA and vLLM's weight-transfer engines "
            "(vllm.distributed.weight_transfer, vLLM 0.32 or later) in the trainer and the vLLM "
            "engine processes, and one of them lacks either: use rollout.weight_sync=auto or object_store"
        )
    return "nccl"


def has_weight_transfer() -> bool:
    """Whether the installed vLLM has the weight-transfer API this module uses
    (0.32's: a trainer factory and NCCL init info given once, at connect time).
    The package's first releases had neither, so its presence alone says little."""
    try:
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory  # noqa: F401
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo  # noqa: F401
    except Exception:  # no vllm, one before this API, or one that fails to import
        return False
    return True


def nccl_ready() -> bool:
    """Whether this process can take part in an NCCL weight sync: a CUDA device
    and a vLLM that has weight-transfer engines."""
    import torch

    return torch.cuda.is_available() and has_weight_transfer()


# ------------------------------------------------------------ the trainer's side
@dataclass(frozen=True)
class ParamMeta:
    """What vLLM's ``ParamMeta`` holds: a parameter's name, dtype on the wire and full shape."""

    name: str
    dtype: Any
    shape: tuple[int, ...]


class TrainerWeights:
    """The trainer's weights as the two channels of vLLM's ``WeightSource``.

    ``metadata()`` reads names, dtypes and full shapes without gathering
    (ZeRO-3 keeps the full shape in ``ds_shape``); iteration walks the
    trainer's ``named_weights()`` (a collective under ZeRO-3, so every rank
    iterates). A tied weight travels once, under its first name, as
    ``named_parameters()`` lists it; vLLM ties the same weights from the same
    config. The sender casts floating tensors to the engine's dtype and moves
    them to its GPU; the other ranks only take part in the gathers.
    """

    def __init__(self, trainer: Any, dtype: Any, sends: bool) -> None:
        self.trainer, self.dtype, self.sends = trainer, dtype, sends
        self._meta: list[ParamMeta] | None = None

    def _wire_dtype(self, dtype: Any) -> Any:
        return self.dtype if dtype.is_floating_point else dtype

    def metadata(self) -> list[ParamMeta]:
        if self._meta is None:
            model = self.trainer.model
            keys = set(model.state_dict().keys())
            seen: set[int] = set()
            meta = []
            for name, p in model.named_parameters(remove_duplicate=False):
                if name in keys and id(p) not in seen:
                    seen.add(id(p))
                    shape = tuple(getattr(p, "ds_shape", p.shape))
                    meta.append(ParamMeta(name, self._wire_dtype(p.dtype), shape))
            for name, b in model.named_buffers():
                if name in keys:
                    meta.append(ParamMeta(name, self._wire_dtype(b.dtype), tuple(b.shape)))
            self._meta = meta
        return self._meta

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        import torch

        names = {m.name for m in self.metadata()}
        device = torch.device("cuda", torch.cuda.current_device()) if self.sends else None
        for name, tensor in self.trainer.named_weights():
            if name not in names:
                continue  # a tied weight's second name
            if self.sends:
                tensor = tensor.to(device=device, dtype=self._wire_dtype(tensor.dtype))
            yield name, tensor

    def update_info(self) -> dict[str, Any]:
        """What each engine's ``update_weights`` is told to expect (fixed for a run)."""
        meta = self.metadata()
        return {
            "names": [m.name for m in meta],
            "dtype_names": [str(m.dtype).split(".")[-1] for m in meta],
            "shapes": [list(m.shape) for m in meta],
        }


class _DriverDrivesEngines:
    """Rank 0's ``VLLMWeightSyncClient``: empty, since the driver makes these calls
    on the engines itself (see the module docstring)."""

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        pass

    def start_weight_update(self) -> None:
        pass

    def update_weights(self, update_info: Any) -> None:
        pass

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        pass


class WeightSender:
    """One trainer rank's half of the sync; rank 0 joins the NCCL group and sends.

    Building it on rank 0 blocks until every engine worker has joined (the
    driver's :func:`connect` runs both sides together).
    """

    def __init__(self, trainer: Any, rank: int, master: tuple[str, int], world_size: int, dtype: str) -> None:
        import torch

        try:
            from vllm.distributed.weight_transfer import WeightTransferTrainerFactory
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo
        except ImportError as exc:
            raise ConfigError(
                "rollout.weight_sync=nccl needs vLLM with vllm.distributed.weight_transfer (azr uses 0.32's) "
                "on the trainer ranks too: pip install 'azr[gpu]'"
            ) from exc
        self.weights = TrainerWeights(trainer, getattr(torch, dtype), sends=rank == 0)
        info = NCCLTrainerInitInfo(
            master_address=master[0],
            master_port=master[1],
            world_size=world_size,
            rank=rank,
            packed=True,
            packed_buffer_size_bytes=BUFFER_BYTES,
            packed_num_buffers=BUFFERS,
        )
        self.engine = WeightTransferTrainerFactory.trainer_init(
            info, client=_DriverDrivesEngines(), source=self.weights
        )

    def send(self) -> None:
        self.engine.send_weights()


# ------------------------------------------------------------ the engines' side
def engine_init_info(master: tuple[str, int], world_size: int, rank_offset: int) -> dict[str, Any]:
    """The init info of one engine's workers, as vLLM's ``NCCLWeightTransferInitInfo`` reads it."""
    return {
        "master_address": master[0],
        "master_port": master[1],
        "rank_offset": rank_offset,
        "world_size": world_size,
        "packed": True,
        "packed_buffer_size_bytes": BUFFER_BYTES,
        "packed_num_buffers": BUFFERS,
    }


class WeightReceiver:
    """One engine's half of the sync, over the ``vllm.LLM`` of a ``VLLMRollout``
    built with ``weight_transfer="nccl"``."""

    def __init__(self, rollout: Any, init_info: dict[str, Any]) -> None:
        self.llm = rollout.llm
        self.llm.init_weight_transfer_engine({"init_info": init_info})  # blocks until all ranks join

    def start(self) -> None:
        self.llm.start_weight_update()

    def receive(self, update_info: dict[str, Any]) -> None:
        self.llm.update_weights({"update_info": update_info})

    def finish(self) -> None:
        self.llm.finish_weight_update()
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights


# ------------------------------------------------------------ the driver's side
def _calls(actors: Sequence[Any], method: str, *args: Any) -> list[concurrent.futures.Future[Any]]:
    return [getattr(a, method).remote(*args).future() for a in actors]


def _await(
    what: str,
    sides: dict[str, list[concurrent.futures.Future[Any]]],
    timeout_s: float,
) -> dict[str, list[Any]]:
    """Every call's result, or a CommError naming the side (and index) that failed or is late."""
    owner = {f: (side, k) for side, futures in sides.items() for k, f in enumerate(futures)}
    done, pending = concurrent.futures.wait(
        list(owner), timeout=timeout_s, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    for f in done:
        exc = f.exception()
        if exc is not None:
            side, k = owner[f]
            raise CommError(
                f"weight sync over NCCL, {what}: {side} {k} failed ({type(exc).__name__}: {exc}); "
                "the other side may be left waiting in NCCL, so the run cannot go on"
            ) from exc
    if pending:
        late = {side: [k for k, f in enumerate(fs) if f in pending] for side, fs in sides.items()}
        named = "; ".join(f"{side} {ks}" for side, ks in late.items() if ks)
        raise CommError(
            f"weight sync over NCCL, {what}: not done within {timeout_s:g} s (resources.comm_timeout_s): "
            f"{named}; check that those processes are alive and that the engines' and the trainer's GPUs "
            "can reach each other (NCCL_DEBUG=INFO shows the transport)"
        )
    return {side: [f.result() for f in futures] for side, futures in sides.items()}


def connect(
    trainers: Sequence[Any],
    engines: Sequence[Any],
    master: tuple[str, int],
    engine_gpus: int,
    dtype: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Join trainer rank 0 and every engine worker in one NCCL group; returns the update info.

    ``trainers`` and ``engines`` are the Ray actors (``connect_sender``,
    ``connect_receiver``); ``master`` is a free address on rank 0's node.
    """
    world = 1 + len(engines) * engine_gpus
    results = _await(
        "connecting",
        {
            "trainer rank": _calls(trainers, "connect_sender", master, world, dtype),
            "engine": [
                e.connect_receiver.remote(engine_init_info(master, world, 1 + k * engine_gpus)).future()
                for k, e in enumerate(engines)
            ],
        },
        timeout_s,
    )
    info: dict[str, Any] = results["trainer rank"][0]
    return info


def sync(
    trainers: Sequence[Any], engines: Sequence[Any], update_info: dict[str, Any], timeout_s: float
) -> None:
    """One sync: the engines start an update, the trainer ranks send while every
    engine receives, the engines finish. Each phase has ``timeout_s``."""
    _await("starting the update", {"engine": _calls(engines, "start_receiving")}, timeout_s)
    _await(
        "sending",
        {
            "trainer rank": _calls(trainers, "send_weights"),
            "engine": _calls(engines, "receive_weights", update_info),
        },
        timeout_s,
    )
    _await("finishing the update", {"engine": _calls(engines, "finish_receiving")}, timeout_s)
