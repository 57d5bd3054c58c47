"""Guards against the hangs users of RL frameworks hit most: a collective that
never returns because one rank died, ran out of memory, or never joined.

Every process group azr makes has an explicit timeout, NCCL reports errors
asynchronously instead of blocking forever, and ``health_check`` makes every
rank answer one small collective within a deadline before a run starts (and
after a failure), naming the ranks that did not.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta
from typing import Any


class CommError(RuntimeError):
    """A collective did not complete: which ranks and what to check."""


def free_port() -> int:
    """A TCP port free on this host now (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nccl_environment() -> dict[str, str]:
    """NCCL settings that turn a hang into an error (set unless the user set them)."""
    return {
        # Abort the communicator and raise on a failed or timed-out collective.
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        # Dump the flight recorder on a timeout, so the stuck collective is known.
        "TORCH_NCCL_DUMP_ON_TIMEOUT": "1",
        # The flight recorder's size: torch >= 2.8 reads the first name, older the second.
        "TORCH_FR_BUFFER_SIZE": "2000",
        "TORCH_NCCL_TRACE_BUFFER_SIZE": "2000",
    }


def apply_nccl_environment() -> None:
    for key, value in nccl_environment().items():
        os.environ.setdefault(key, value)


def init_process_group(
    backend: str, rank: int, world_size: int, master: str, port: int, timeout_s: float
) -> None:
    """``torch.distributed.init_process_group`` with an explicit timeout; a
    rendezvous that does not complete in time raises ``CommError``."""
    import torch.distributed as dist

    if backend == "nccl":
        apply_nccl_environment()
    try:
        dist.init_process_group(
            backend,
            init_method=f"tcp://{master}:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    except Exception as exc:  # torch raises DistStoreError / RuntimeError on a timeout
        raise CommError(
            f"rank {rank}: the {world_size} ranks did not all join {master}:{port} within {timeout_s:g} s "
            f"({type(exc).__name__}: {exc}); check that every node can reach the master and that no rank "
            "failed at start-up"
        ) from exc


def health_check(timeout_s: float = 60.0, group: Any = None) -> float:
    """Every rank adds its rank to a tensor; the sum must arrive within ``timeout_s``.

    Returns the seconds it took. Raises ``CommError`` naming the expected sum
    and the deadline when a rank does not answer, instead of hanging.
    """
    import time

    import torch
    import torch.distributed as dist

    world = dist.get_world_size(group)
    backend = dist.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    value = torch.tensor([float(dist.get_rank(group))], device=device)
    start = time.perf_counter()
    work = dist.all_reduce(value, group=group, async_op=True)
    done = threading.Event()
    failure: list[BaseException] = []
    total: list[float] = []

    def wait() -> None:
        try:
            work.wait()
            # On NCCL, wait() returns once the all-reduce is queued on the GPU; reading
            # the value is what blocks until every rank took part, so it happens here,
            # under the deadline below.
            total.append(value.item())
        except BaseException as exc:  # reported below, in the caller's thread
            failure.append(exc)
        finally:
            done.set()

    waiter = threading.Thread(target=wait, daemon=True, name="azr-health-check")
    waiter.start()
    if not done.wait(timeout_s):
        raise CommError(
            f"health check: rank {dist.get_rank(group)} waited {timeout_s:g} s for {world} ranks to answer "
            "one all-reduce; at least one rank is dead, stuck, or on an unreachable network"
        )
    waiter.join()
    if failure:
        raise CommError(f"health check: the all-reduce over {world} ranks failed: {failure[0]}") from failure[
            0
        ]
    expected = world * (world - 1) / 2
    if total[0] != expected:
        raise CommError(f"health check: all-reduce gave {total[0]}, expected {expected}")
    return time.perf_counter() - start


def close_process_group(timeout_s: float = 60.0) -> None:
    """Tear down this process's default process group, if it has one.

    A process that exits with a gloo or NCCL group still alive can abort in
    its exit handlers ("terminate called without an active exception", exit
    status -6) after its work succeeded; every azr process that joined a group
    calls this when it is done. The ranks first meet at a barrier (bounded by
    ``timeout_s``), so none tears down while another is still in a collective.
    A peer that already left is not an error here.
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    import gc
    import logging

    log = logging.getLogger(__name__)
    try:
        if dist.get_world_size() > 1:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
            else:
                dist.barrier()
    except Exception as exc:  # a peer died or left: tear down regardless
        log.debug("barrier before destroy_process_group: %s", exc)
    try:
        dist.destroy_process_group()
    except Exception as exc:  # a peer gone first: the group is being dropped anyway
        log.debug("destroy_process_group: %s", exc)
    gc.collect()  # the group's threads stop now, not during interpreter teardown
