"""How ``VLLMRollout.load_weights`` hands weights to vLLM's workers: safetensors
files in a private shared-memory folder, a bucket each, which the worker
extension maps and reloads the model from. Here a stand-in for ``vllm.LLM`` calls the real extension on
a stand-in worker in this process, so no vLLM is needed (the same path against
vLLM itself: ``test_vllm.py``, marker ``vllm``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from azr.rollout import vllm as V

torch = pytest.importorskip("torch", reason="the weight handoff needs torch: pip install 'azr[train]'")


class _Model:
    def __init__(self) -> None:
        self.loaded: list[dict[str, Any]] = []

    def load_weights(self, weights: Any) -> None:
        # vLLM copies each tensor into its parameter; keep copies, as the files go.
        self.loaded.append({name: tensor.clone() for name, tensor in weights})


class _Runner:
    def __init__(self) -> None:
        self.model = _Model()


class _Worker(V.WeightSyncExtension):
    def __init__(self) -> None:
        self.model_runner = _Runner()


class _LLM:
    """``collective_rpc`` by method name on each worker, as vLLM calls a worker extension."""

    def __init__(self, workers: int = 2, fail: bool = False) -> None:
        self.workers = [_Worker() for _ in range(workers)]
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = fail
        self.seen_files: list[Path] = []

    def collective_rpc(self, method: str, args: tuple[Any, ...] = ()) -> list[Any]:
        self.calls.append((method, args))
        if method == "azr_load_files":
            self.seen_files.extend(Path(p) for p in args[0])
            assert all(Path(p).is_file() for p in args[0])
            if self.fail:
                raise RuntimeError("a worker died")
        return [getattr(w, method)(*args) for w in self.workers]

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache", ()))

    def sleep(self, level: int = 1) -> None:
        self.calls.append(("sleep", (level,)))

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.calls.append(("wake_up", (tags,)))


def _rollout(llm: _LLM, lora: bool = False) -> Any:
    rollout = object.__new__(V.VLLMRollout)
    rollout.llm = llm
    rollout.asleep = rollout.stale = False
    rollout.enable_lora = lora
    return rollout


def _state(seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(64, 16, generator=g)
    return {
        "model.embed_tokens.weight": embed,
        "model.layers.0.mlp.up_proj.weight": torch.randn(32, 16, generator=g),
        "model.layers.0.input_layernorm.weight": torch.randn(16, generator=g).to(torch.bfloat16),
        "model.norm.weight": torch.randn(16, generator=g)[::2],  # not contiguous
        "lm_head.weight": embed,  # tied: the same storage under a second name
        "step": torch.tensor(3, dtype=torch.int64),
    }


def test_every_worker_loads_every_tensor_exactly_once_per_sync() -> None:
    llm = _LLM()
    state = _state()
    _rollout(llm).load_weights(state, bucket_bytes=3000)
    assert [c[0] for c in llm.calls] == ["azr_load_files", "reset_prefix_cache"]
    assert len(llm.seen_files) > 2  # several buckets
    for worker in llm.workers:
        (loaded,) = worker.model_runner.model.loaded
        assert loaded.keys() == state.keys()
        for name, value in state.items():
            assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    # The bucket files and their folder are gone once the sync is done.
    assert all(not p.exists() for p in llm.seen_files)
    assert all(not p.parent.exists() for p in llm.seen_files)


def test_a_sync_that_fails_leaves_no_files_and_the_next_one_loads_only_its_own() -> None:
    llm = _LLM(fail=True)
    first = {"model.layers.9.mlp.up_proj.weight": torch.ones(32, 16), **_state(0)}
    with pytest.raises(RuntimeError, match="a worker died"):
        _rollout(llm).load_weights(first, bucket_bytes=3000)
    assert llm.seen_files and all(not p.parent.exists() for p in llm.seen_files)
    assert all(w.model_runner.model.loaded == [] for w in llm.workers)
    llm.fail = False
    second = _state(1)
    _rollout(llm).load_weights(second, bucket_bytes=1 << 20)
    for worker in llm.workers:
        (loaded,) = worker.model_runner.model.loaded
        assert loaded.keys() == second.keys()
        assert all(torch.equal(loaded[k], v) for k, v in second.items())


def test_no_mapping_of_the_files_outlives_the_reload(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.safetensors")
        save_file({f"w{k}": torch.arange(4096, dtype=torch.float32) + k}, paths[-1])
    worker = _Worker()
    worker.azr_load_files([str(p) for p in paths])
    (loaded,) = worker.model_runner.model.loaded
    assert [float(loaded[f"w{k}"][1]) for k in range(3)] == [1.0, 2.0, 3.0]
    maps = Path(f"/proc/{os.getpid()}/maps")
    if maps.exists():
        assert str(tmp_path) not in maps.read_text()


def test_sync_folder_prefers_shared_memory_with_room_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("this system has no /dev/shm; the temporary folder is used (covered below)")
    with V.sync_folder() as folder:
        assert folder.parent == shm and folder.name.startswith("azr-sync-")
        assert (folder.stat().st_mode & 0o777) == 0o700
    assert not folder.exists()
    with V.sync_folder(shared_memory=False) as folder:
        assert folder.parent != shm

    # /dev/shm keeps a reserve: a bucket that would eat into it goes to the temporary folder.
    real = os.statvfs
    free_blocks = [10**9]

    def shm_with(path: Any) -> Any:
        result = real(path)
        if Path(path) == shm:
            blocks = 20 * (1 << 30) // result.f_frsize  # a 20 GiB /dev/shm
            free = min(free_blocks[0], blocks)
            return os.statvfs_result((result.f_bsize, result.f_frsize, blocks, free, free, *result[5:]))
        return result

    monkeypatch.setattr(V.os, "statvfs", shm_with)
    assert V.shm_room(1 << 30)
    free_blocks[0] = (3 << 30) // real(shm).f_frsize  # 3 GiB free: 1 GiB + 2 GiB reserve left
    assert not V.shm_room(1 << 30) and V.shm_room(100 << 20) is False
    llm = _LLM()
    _rollout(llm).load_weights(_state(), bucket_bytes=3000)
    assert llm.seen_files and all(not str(p).startswith("/dev/shm/") for p in llm.seen_files)


def test_a_bucket_that_does_not_fit_in_shared_memory_goes_to_the_temporary_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Room is checked for two buckets, but one tensor may be bigger than a bucket,
    or another sync may take the room meanwhile: a full /dev/shm moves the rest
    of the sync to the temporary folder."""
    from safetensors import SafetensorError
    from safetensors import torch as st

    if not Path("/dev/shm").is_dir():
        pytest.skip("this system has no /dev/shm")
    real = st.save_file

    def save_file(tensors: Any, path: Any) -> None:
        if str(path).startswith("/dev/shm/"):
            Path(path).write_bytes(b"partial")
            # What safetensors raises on a full disk (not an OSError).
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path)

    monkeypatch.setattr(st, "save_file", save_file)
    llm = _LLM()
    state = _state()
    _rollout(llm).load_weights(state, bucket_bytes=3000)
    assert all(not str(p).startswith("/dev/shm/") for p in llm.seen_files)
    assert all(not p.parent.exists() for p in llm.seen_files)
    (loaded,) = llm.workers[0].model_runner.model.loaded
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not list(Path("/dev/shm").glob("azr-sync-*/0.safetensors"))


def test_a_tmpdir_on_shared_memory_does_not_take_the_spill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where TMPDIR itself is on /dev/shm (HPC nodes, some containers), buckets
    that /dev/shm has no room for go to /var/tmp or /tmp instead."""
    import tempfile

    if not V.SHM.is_dir():
        pytest.skip("this system has no /dev/shm")
    tmpdir = Path(tempfile.mkdtemp(dir=V.SHM))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
        assert V.on_shm(tmpdir) and not V.on_shm(V.spill_base())
        monkeypatch.setattr(V, "shm_room", lambda nbytes: False)
        llm = _LLM()
        _rollout(llm).load_weights(_state(), bucket_bytes=3000)
        assert llm.seen_files and not any(V.on_shm(p.parent.parent) for p in llm.seen_files)
        (loaded,) = llm.workers[0].model_runner.model.loaded
        assert loaded.keys() == _state().keys()
    finally:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)


def test_a_shared_memory_folder_that_cannot_be_written_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    real = tempfile.mkdtemp

    def mkdtemp(*args: Any, dir: Any = None, **kwargs: Any) -> str:
        if dir is not None and Path(dir) == V.SHM:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    llm = _LLM()
    _rollout(llm).load_weights(_state(), bucket_bytes=1 << 20)
    assert llm.seen_files and not any(V.on_shm(p.parent.parent) for p in llm.seen_files)
    assert llm.workers[0].model_runner.model.loaded


def _age(path: Path, seconds: float) -> None:
    import time

    past = time.time() - seconds
    os.utime(path, (past, past))


def test_only_folders_no_live_sync_holds_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync holds a lock on its folder; folders whose lock is free (their process
    died) are removed, whatever pid namespace they came from. Held, young or
    foreign entries stay, and odd names do not break anything."""
    import fcntl

    monkeypatch.setattr(V, "_sync_bases", lambda: [tmp_path])
    dead = tmp_path / "azr-sync-dead"
    dead.mkdir()
    (dead / ".lock").touch()
    (dead / "0.safetensors").write_bytes(b"x" * 100)
    _age(dead, 3600)
    no_lock = tmp_path / "azr-sync-nolock"
    no_lock.mkdir()
    _age(no_lock, 3600)
    live = tmp_path / "azr-sync-live"
    live.mkdir()
    fd = os.open(live / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's sync, as far as flock is concerned: another open file
    _age(live, 3600)
    young = tmp_path / "azr-sync-young"
    young.mkdir()
    (young / ".lock").touch()
    odd = tmp_path / "azr-sync-²-99999999999999999999"
    odd.write_text("not a folder")
    link = tmp_path / "azr-sync-link"
    link.symlink_to(dead)
    try:
        with V.sync_folder() as folder:
            assert (folder / ".lock").exists()
        assert not dead.exists() and not no_lock.exists()
        assert live.exists() and young.exists() and odd.exists() and link.is_symlink()
    finally:
        os.close(fd)


def test_a_live_sync_survives_another_sync_cleaning_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(V, "_sync_bases", lambda: [tmp_path])
    monkeypatch.setattr(V, "_STALE_AFTER_S", 0.0)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with V.sync_folder(shared_memory=False) as first:
        (first / "0.safetensors").write_bytes(b"bucket")
        _age(first, 3600)
        with V.sync_folder(shared_memory=False) as second:
            assert second != first
        assert (first / "0.safetensors").exists()
    assert not first.exists()


def test_full_weight_sync_discards_the_weights_asleep_and_takes_the_cache_back_after_loading() -> None:
    """Without LoRA the sync overwrites every weight, so sleep discards them
    (level 2) instead of copying them to host memory and back; the KV cache comes
    back only once the new weights are in, and nothing generates in between."""
    llm = _LLM()
    rollout = _rollout(llm)
    rollout.sleep()
    with pytest.raises(RuntimeError, match="asleep"):
        rollout.generate(["x"], V.SamplingParams())
    with pytest.raises(RuntimeError, match="wake"):
        rollout.load_weights(_state())
    rollout.wake()
    with pytest.raises(RuntimeError, match="discarded its weights"):
        rollout.generate(["x"], V.SamplingParams())
    rollout.load_weights(_state(), bucket_bytes=3000)
    assert [m if m != "azr_load_files" else "load" for m, _ in llm.calls] == [
        "sleep",
        "wake_up",
        "load",
        "wake_up",
        "reset_prefix_cache",
    ]
    sleeps = [a for m, a in llm.calls if m in ("sleep", "wake_up")]
    assert sleeps == [(2,), (["weights"],), (["kv_cache"],)]
    assert not rollout.asleep and not rollout.stale


def test_a_failed_load_after_discarding_leaves_an_engine_that_refuses_to_generate() -> None:
    llm = _LLM(fail=True)
    rollout = _rollout(llm)
    rollout.sleep()
    rollout.wake()
    with pytest.raises(RuntimeError, match="a worker died"):
        rollout.load_weights(_state(), bucket_bytes=3000)
    with pytest.raises(RuntimeError, match="discarded its weights"):
        rollout.generate(["x"], V.SamplingParams())
    llm.fail = False
    rollout.load_weights(_state(), bucket_bytes=3000)
    assert not rollout.stale and llm.calls[-2] == ("wake_up", (["kv_cache"],))


def test_lora_keeps_the_base_weights_asleep_and_wakes_everything_at_once() -> None:
    """With LoRA only the adapter changes: the base weights go to host memory (level 1)."""
    llm = _LLM()
    rollout = _rollout(llm, lora=True)
    rollout.sleep()
    rollout.sleep()  # a second sleep is a no-op
    rollout.wake()
    assert llm.calls == [("sleep", (1,)), ("wake_up", (None,))]
    assert not rollout.asleep and not rollout.stale
