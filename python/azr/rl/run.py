"""A training run: the run folder, seeding, the step loop, checkpoints and resume.

Run folder::

    config.yaml      the resolved config
    metrics.jsonl    one line per step
    buffer/          the live durable task buffers
    step_N/          checkpoints: model/ (HF safetensors), optimizer.pt, rng.pt,
                     buffer/ (the buffers as of step N), state.json (written last)
    tb/              TensorBoard events (when run.tensorboard)
    plots/           PNG curves (azr plot)

A checkpoint is complete once its ``state.json`` exists; it is written into
a temporary folder, synced to disk, and renamed into place, so a kill or a
crash at any moment leaves the previous checkpoint intact. ``state.json``
lists every file's size, and a checkpoint whose files do not match (a disk
that lost writes) is passed over for the one before. One process at a time
holds a run folder (``.lock``). Resuming restores the model, optimizer, RNG
states and buffers of the newest complete checkpoint and continues at the
next step; every draw of a step is seeded by (run seed, step), so the resumed
run samples exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from azr._core import AzrError, ConfigError
from azr.buffer import BufferError, TaskBuffer
from azr.config import Config, dump_config, load_config, to_dict
from azr.sandbox import Sandbox
from azr.tasks.types import TaskType, record_problem

STATE = "state.json"
#: What a checkpoint leaves out of a buffer folder: its lock, and the damaged
#: originals ``azr buffer salvage`` keeps beside.
_NOT_CHECKPOINTED = shutil.ignore_patterns("LOCK", "*.damaged")
#: Overrides a resumed run may take and still continue exactly (where it runs,
#: how often it saves and logs, how batches are split into micro-batches).
RESUMABLE = ("run.", "resources.", "sandbox.workers", "sandbox.processes", "trainer.micro_batch_")
#: Under those prefixes, what still changes the run: every draw is seeded by (run.seed, step).
NOT_RESUMABLE = ("run.seed",)
#: What a new run may find in its folder: what a start that stopped before its
#: first checkpoint leaves behind.
LEFT_BY_A_FAILED_START = {"config.yaml", "buffer", ".lock", ".sync", "tb", "wandb", "wandb_id"}


def _temporary(name: str) -> bool:
    """A checkpoint being written or deleted (``.step_N.tmp``, ``.step_N.del``) or an
    atomic write (``.NAME.PID.tmp``) that a kill cut short."""
    return name.startswith(".") and name.endswith((".tmp", ".del"))


def _remove_temporaries(folder: Path) -> None:
    for path in folder.iterdir():
        if _temporary(path.name):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _damage(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted, or None when it is complete."""
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, ValueError) as exc:
        return f"{STATE} unreadable ({exc})"
    for name, size in state.get("files", {}).items():
        try:
            have = (path / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if have != size:
            return f"{name} has {have} bytes, {size} were written"
    return None


def _step_folders(run: Path) -> list[tuple[int, Path]]:
    """Every ``step_N`` folder of a run, complete or not, oldest first."""
    return sorted((int(p.name[5:]), p) for p in run.glob("step_*") if p.name[5:].isdigit())


def _claimed(run: Path) -> list[tuple[int, Path, str | None]]:
    """Every checkpoint that says it is complete (has its ``state.json``), oldest
    first, with why it cannot be trusted (None: its files match)."""
    return [(step, p, _damage(p)) for step, p in _step_folders(run) if (p / STATE).is_file()]


def checkpoints(run: Path, warn: Any = None) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first. One whose files do not match what its
    ``state.json`` lists is left out (``warn`` is told why)."""
    found = []
    for step, path, damage in _claimed(run):
        if damage is None:
            found.append((step, path))
        elif warn is not None:
            warn(f"{path} is damaged ({damage}); passing over it")
    return found


def _has_metrics(run: Path) -> bool:
    path = run / "metrics.jsonl"
    return path.is_file() and path.stat().st_size > 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> dict[str, int]:
    """fsync every file and folder under ``root``; returns the files' sizes."""
    sizes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            _fsync(path)
            sizes[str(path.relative_to(root))] = path.stat().st_size
        _fsync(Path(folder))
    return sizes


def _write_synced(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and wait until it is on disk."""
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_synced(tmp, text)
    os.replace(tmp, path)
    _fsync(path.parent)


def refresh_manifest(buffer_dir: Path) -> Path | None:
    """After ``azr buffer salvage`` rewrote a checkpoint's buffer (``step_N/buffer``)
    under new file names, make the checkpoint's ``state.json`` list those files,
    so the checkpoint counts as complete again. Returns the ``state.json``
    rewritten (None: ``buffer_dir`` is no checkpoint's buffer)."""
    ckpt = buffer_dir.resolve().parent
    if buffer_dir.resolve().name != "buffer" or not (ckpt / STATE).is_file():
        return None
    try:
        state = json.loads((ckpt / STATE).read_text())
    except (OSError, ValueError):
        return None  # unreadable: the checkpoint is passed over anyway, and says why
    files = {k: v for k, v in state.get("files", {}).items() if not k.startswith("buffer/")}
    for name, size in _sync_tree(ckpt / "buffer").items():
        if not _NOT_CHECKPOINTED(".", [Path(name).name]):
            files[f"buffer/{name}"] = size
    write_atomically(ckpt / STATE, json.dumps({**state, "files": files}))
    return ckpt / STATE


#: What makes a checkpoint's weights fit a model: its architecture's shape.
_SHAPE = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


def _check_same_model(ckpt: Path, name: str, path: str, kwargs: dict[str, Any]) -> None:
    """A resumed run trains its checkpoint's weights with ``model.path``'s tokenizer
    (and, with LoRA, its base weights): a ``model.path`` whose shape or vocabulary
    differs from the checkpoint's (another model, or the same one rebuilt
    differently) is an error, not a run that pairs weights with the wrong tokens."""
    from transformers import AutoConfig, AutoTokenizer

    from azr.models import LOAD_ERRORS

    saved = ckpt / "model"
    try:
        new = AutoConfig.from_pretrained(path, **kwargs).to_dict()
        old = json.loads((saved / "config.json").read_text())
    except LOAD_ERRORS:
        return  # loading reports an unreadable model.path, and _reading a damaged checkpoint
    differ = [
        f"{k} {new.get(k)} (the checkpoint's: {old[k]})" for k in _SHAPE if k in old and new.get(k) != old[k]
    ]
    if not differ and (saved / "tokenizer_config.json").is_file():
        try:
            same = (
                AutoTokenizer.from_pretrained(saved).get_vocab()
                == AutoTokenizer.from_pretrained(path, **kwargs).get_vocab()
            )
        except LOAD_ERRORS:
            return
        if not same:
            differ = ["its tokenizer's vocabulary"]
    if differ:
        raise ConfigError(
            f"model.path {name!r} is not the model {ckpt} was trained from: {'; '.join(differ)}. "
            "A resumed run continues its checkpoint's model; drop the model.path override "
            "(or restore the model folder), or start a new run for another model"
        )


def nonfinite_weights(ckpt: Path) -> str | None:
    """The first weight in ``ckpt``'s safetensors files (the model, a LoRA adapter)
    that holds a NaN or an infinity, as ``file: name``; None when all are finite.
    Reads every weight once (from the page cache right after a save)."""
    import torch
    from safetensors import safe_open

    for file in sorted(ckpt.rglob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                tensor = f.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    return f"{file.relative_to(ckpt)}: {name}"
    return None


class CheckpointUnreadable(Exception):
    """Reading checkpoint ``ckpt`` failed in a way a different config or
    environment would not fix (a damaged or foreign file)."""

    def __init__(self, ckpt: Path, cause: BaseException) -> None:
        super().__init__(f"{ckpt} could not be loaded ({type(cause).__name__}: {cause})")
        self.ckpt = ckpt


@contextlib.contextmanager
def _reading(ckpt: Path | None) -> Iterator[None]:
    """Blame what fails inside on checkpoint ``ckpt`` (None: blame nothing).

    Only errors a file can cause count: a bad setting, a full disk, no memory
    or a missing package are not the checkpoint's fault and pass unchanged."""
    try:
        yield
    except (ConfigError, OSError, MemoryError, ImportError):
        raise
    except Exception as exc:
        import torch

        if ckpt is None or isinstance(exc, torch.cuda.OutOfMemoryError):  # a RuntimeError
            raise
        raise CheckpointUnreadable(ckpt, exc) from exc


class RunLock:
    """This process's hold on a run folder, for as long as it lives: a second
    ``azr train`` on the same folder is an error, not a second writer."""

    def __init__(self, folder: Path, name: str = ".lock", busy: str | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ConfigError(
                busy or f"{folder} is in use by another azr process; wait for it or stop it"
            ) from None
        except OSError:
            os.close(self._fd)
            raise

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the lock
            self._fd = -1


class Run:
    """Everything a run holds; ``train`` drives it."""

    def __init__(
        self, config: Config, folder: Path, console: Console, resume_from: Path | None = None
    ) -> None:
        self.config, self.folder, self.console = config, folder, console
        self.cluster: Any = None
        self.trainer: Any = None
        self.sandbox: Any = None
        self.rollout: Any = None
        try:
            self._start(config, folder, resume_from)
        except BaseException:
            self.close()  # what started before the failure (sandbox processes, Ray actors)
            raise

    def _start(self, config: Config, folder: Path, resume_from: Path | None) -> None:

        from azr.models import resolve
        from azr.placement import plan
        from azr.rl.backends import build_backends, load_policy
        from azr.rl.selfplay import SelfPlay

        placement = plan(config.resources)
        path, kwargs = resolve(config.model.path, config.model.revision)
        if resume_from is not None:
            _check_same_model(resume_from, config.model.path, path, kwargs)
            with _reading(resume_from):
                bad = nonfinite_weights(resume_from)
                if bad is not None:  # damage that kept the file's size, or a diverged run's
                    raise ValueError(f"non-finite weights in {bad}")
        # A LoRA run resumes from the base model plus its saved adapter.
        lora = config.trainer.lora_rank > 0
        weights = str(resume_from / "model") if resume_from and not lora else None
        if placement.uses_ray:
            from azr.models import load_tokenizer

            self.tokenizer = load_tokenizer(path, f"model.path {config.model.path!r}", **kwargs)
        else:
            if config.trainer.backend == "deepspeed":
                from azr.rl.backends import join_process_group

                # Before the checkpoint is read: a process group that cannot start is not its fault.
                join_process_group(config)
            with _reading(resume_from):
                self.tokenizer, model = load_policy(config, (path, kwargs), weights, resume_from)
        if config.model.template == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"model.template is 'chat' but the tokenizer of {config.model.path!r} has no chat template; "
                "use model.template=r1"
            )
        s = config.sandbox
        if s.processes and s.workers != 1 and not placement.uses_ray:
            from azr.sandbox.pool import ProcessSandbox

            self.sandbox = ProcessSandbox(s.timeout_s, s.memory_mb, s.workers, s.max_output_chars)
        else:
            self.sandbox = Sandbox(
                timeout_s=s.timeout_s,
                memory_mb=s.memory_mb,
                workers=s.workers,
                max_output_chars=s.max_output_chars,
            )
        buffer_dir = folder / "buffer"
        if resume_from is not None:
            shutil.rmtree(buffer_dir, ignore_errors=True)
            shutil.copytree(resume_from / "buffer", buffer_dir)
        b = config.buffer
        try:
            with _reading(resume_from):
                self.buffer = TaskBuffer.open(
                    buffer_dir, capacity=b.capacity, eviction=b.eviction, dedup=b.dedup, seed=config.run.seed
                )
        except CheckpointUnreadable as exc:
            if resume_from is None or not isinstance(exc.__cause__, BufferError):
                raise
            # RUN/buffer is the checkpoint's copy, made again on every resume: salvage the original.
            raise ConfigError(
                f"the buffer of {resume_from} is damaged ({exc.__cause__}); salvage it with "
                f"`azr buffer salvage {resume_from / 'buffer'}` and resume again, or move "
                f"{resume_from} away to resume from an older checkpoint"
            ) from exc.__cause__
        if placement.uses_ray:
            from azr.distributed.ray_driver import launch

            # Not blamed on the checkpoint: starting actors, engines and process
            # groups fails for reasons of its own.
            self.cluster = launch(config, placement, weights or path, resume_from, folder)
            rollout, self.trainer, sync = self.cluster.rollout, self.cluster.trainer, self.cluster.sync
            self.sandbox = self.cluster.sandbox  # checks spread over the nodes' CPU actors
        else:
            rollout, self.trainer, sync = build_backends(
                config, model, self.tokenizer, weights or path, folder / ".sync"
            )
            self.rollout = rollout  # closed with the run, also if the rest of the start fails
        if resume_from is not None:
            with _reading(resume_from):
                self._restore(resume_from)
        self.selfplay = SelfPlay(
            config, self.sandbox, self.buffer, rollout, self.trainer, self.tokenizer, sync=sync
        )
        self._eval: tuple[Any, Any, Any] | None = None
        if config.run.eval_every:
            from azr.eval.grading import Grader
            from azr.eval.runner import EvalOptions, load_samples

            r = config.run
            opts = EvalOptions(
                suites=("cruxeval-o", "cruxeval-i"),  # run.eval_data: CruxEval
                limit=r.eval_limit,
                max_tokens=r.eval_max_tokens,
                template=config.model.template,
                data={"cruxeval-o": r.eval_data, "cruxeval-i": r.eval_data},
            )
            # Loaded now, once: a bad source fails at start-up, not at step N.
            self._eval = (opts, load_samples(opts), Grader(s.timeout_s, s.memory_mb, s.workers))

    def _restore(self, ckpt: Path) -> None:
        """The optimizer and random states of checkpoint ``ckpt``."""
        import torch

        self.trainer.load_optimizer(ckpt)
        rng = torch.load(ckpt / "rng.pt", weights_only=True)
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
        cuda = rng.get("cuda")
        if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)

    def close(self) -> None:
        """Stop the sandbox's worker processes and the Ray actors, if any, and
        leave the trainer's process group."""
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None
        trainer_close = getattr(self.trainer, "close", None)
        if trainer_close is not None:
            trainer_close()
        # A vLLM engine in this process: its engine-core processes hold GPU memory.
        engine_close = getattr(self.rollout, "close", None)
        if engine_close is not None:
            engine_close()
            self.rollout = None
        closer = getattr(self.sandbox, "close", None)
        if closer is not None:
            closer()

    def evaluate(self) -> dict[str, float]:
        """The small in-distribution evaluation logged with a step's metrics (``run.eval_every``)."""
        from azr.eval.runner import generate, grade, summarize

        assert self._eval is not None, "evaluate() needs run.eval_every"
        opts, samples, grader = self._eval
        t = time.perf_counter()
        responses = generate(self.selfplay.rollout, self.tokenizer, samples, opts)
        summary = summarize(grade(samples, responses, opts, grader))
        out = {f"eval/{name.replace('-', '_')}": b["score"] for name, b in summary["benchmarks"].items()}
        out["eval/indist"] = summary["averages"]["indist"]
        out["timing/eval"] = time.perf_counter() - t
        return out

    def checkpoint(self, step: int) -> Path:
        import torch

        final = self.folder / f"step_{step}"
        tmp = self.folder / f".step_{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.trainer.save(tmp)
        bad = nonfinite_weights(tmp)
        if bad is not None:
            # Saving it would make the newest checkpoint one no run can continue
            # from, and could prune the good ones before it.
            shutil.rmtree(tmp, ignore_errors=True)
            newest = checkpoints(self.folder)
            raise AzrError(
                f"the weights are no longer finite after step {step} ({bad}); the run stops without "
                "saving them"
                + (
                    f"; resume from {newest[-1][1]} (the newest checkpoint), perhaps with a lower trainer.lr"
                    if newest
                    else ""
                )
            )
        self.tokenizer.save_pretrained(
            tmp / "model"
        )  # step_N/model is a complete HF folder (azr eval --model)
        rng: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        self.buffer.flush()
        self.buffer.compact()
        shutil.copytree(self.folder / "buffer", tmp / "buffer", ignore=_NOT_CHECKPOINTED)
        (tmp / "config.yaml").write_text(dump_config(self.config))
        # Everything on disk before state.json says so, and state.json on disk before
        # the rename: a crash leaves the last checkpoint or this one, whole.
        files = _sync_tree(tmp)
        metrics = self.folder / "metrics.jsonl"
        if metrics.is_file():  # the lines of the steps this checkpoint covers, before it counts
            _fsync(metrics)
        _write_synced(tmp / STATE, json.dumps({"step": step, "time": time.time(), "files": files}))
        _fsync(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync(self.folder)
        keep = self.config.run.keep_checkpoints
        if keep:
            # Only complete checkpoints count, so the newest ones always survive;
            # damaged ones older than those go too. Each is renamed out of the way
            # first, so a deletion cut short leaves a temporary, not a damaged step.
            claimed = _claimed(self.folder)
            oldest_kept = [step for step, _, damage in claimed if damage is None][-keep:][0]
            for path in [path for step, path, _ in claimed if step < oldest_kept]:
                doomed = path.with_name(f".{path.name}.del")
                os.replace(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        return final


def _import_seeds(buffer: TaskBuffer, source: Path) -> int:
    """Seed a run from ``azr seed`` output: a buffer folder or a JSON-lines
    export (``azr buffer export``). Every seed enters at step 0, whatever step
    it entered the run it came from: the solver's batches take the newest
    entries first, and seeds are never new."""
    if source.is_dir():
        import tempfile

        # Read a copy: opening a buffer takes its lock and may repair its log, which a
        # read-only or shared seed folder (several runs starting from it) must not need.
        with tempfile.TemporaryDirectory(prefix="azr-seeds-") as tmp:
            copy = Path(tmp) / "buffer"
            # Contents only (copyfile): the copy must be writable, also where the source is not.
            shutil.copytree(
                source, copy, ignore=shutil.ignore_patterns("LOCK"), copy_function=shutil.copyfile
            )
            copy.chmod(0o700)
            seeds = TaskBuffer.open_existing(copy)
            items = [
                (t, e.record, 0) for t in ("deduction", "abduction", "induction") for e in seeds.entries(t)
            ]
            del seeds
    elif source.is_file():
        items = _export_records(source)
    else:
        raise ConfigError(f"selfplay.seed_buffer {str(source)!r}: no such folder or file")
    bad = [(task, problem) for task, record, _ in items if (problem := record_problem(task, record))]
    if bad:
        raise ConfigError(
            f"selfplay.seed_buffer {str(source)!r}: {len(bad)} of {len(items)} records are not "
            f"tasks a run can use (first: a {bad[0][0]} record whose {bad[0][1]}); "
            "seed from `azr seed` output, or fix or drop those records"
        )
    added = sum(buffer.add_many(items))
    buffer.flush()
    return added


def _export_records(path: Path) -> list[tuple[str, dict[str, Any], int]]:
    tasks = {t.value for t in TaskType}
    items: list[tuple[str, dict[str, Any], int]] = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            task, record = value["task_type"], value["record"]
        except (ValueError, KeyError, TypeError):  # ValueError: also bytes that are not UTF-8
            task, record = None, None
        if not isinstance(task, str) or task not in tasks or not isinstance(record, dict):
            raise ConfigError(
                f"selfplay.seed_buffer {str(path)!r}, line {number}: not a buffer export line "
                '({"task_type": ..., "step": ..., "record": {...}})'
            )
        items.append((task, record, 0))
    return items


def _step_of(line: str) -> int | None:
    try:
        step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a full disk or a crash
    return step if isinstance(step, int) else None


def _trim_metrics(path: Path, last_step: int, warn: Any = None) -> None:
    """Drop metric lines of steps after the checkpoint a run resumes from, and
    lines that do not parse (a write cut short); the file is replaced whole."""
    if not path.is_file():
        return
    text = path.read_text(errors="replace")
    lines = [(line, _step_of(line)) for line in text.splitlines() if line.strip()]
    kept = [line for line, step in lines if step is not None and step <= last_step]
    torn = sum(step is None for _, step in lines)
    if torn and warn is not None:
        warn(
            f"{path}: dropped {torn} line(s) that are no step's metrics "
            "(cut short by a crash or a full disk, or edited)"
        )
    # Also when the last line lacks its newline: the next step's line would join it.
    if len(kept) != len(lines) or (text and not text.endswith("\n")):
        write_atomically(path, "".join(line + "\n" for line in kept))


def _sections_missing(path: Path) -> list[str]:
    """Sections a run folder's config.yaml lacks (it is written whole, so any
    missing one means a damaged file that would load as defaults)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    names = [f.name for f in fields(Config)]
    return names if not isinstance(data, dict) else [n for n in names if n not in data]


def _run_config(folder: Path, ckpt: Path | None, extra: tuple[str, ...], warn: Any) -> Config:
    """A run folder's config: its config.yaml, or the newest checkpoint's copy when
    that file is damaged; overrides that break an exact continuation are flagged."""
    source = folder / "config.yaml"
    missing = _sections_missing(source)
    if missing:
        backup = ckpt / "config.yaml" if ckpt is not None else None
        if backup is None or _sections_missing(backup):
            raise ConfigError(
                f"{source} is damaged (no {', '.join(missing)} section) and no checkpoint holds a copy; "
                "restore it, or start a new run"
            )
        warn(f"{source} is damaged (no {', '.join(missing)} section); using the copy in {ckpt}")
        source = backup
    for text in extra:
        key = text.partition("=")[0].strip()
        if key in NOT_RESUMABLE or not key.startswith(RESUMABLE):
            warn(f"{key} changed on resume: the run no longer continues exactly as it would have")
    return load_config(source, extra)


def prepare(
    config_path: str | None,
    overrides: tuple[str, ...],
    out: Path | None,
    resume: Path | None,
    steps: int | None,
    warn: Any = print,
) -> tuple[Config, Path, Path | None, int, RunLock]:
    """Resolve the config and folder of a new or resumed run, and lock the folder:
    (config, folder, checkpoint, start step, lock). Nothing in the folder changes
    here but the lock and stale temporary folders; the caller writes config.yaml
    once the run has loaded."""
    extra = (*overrides, *([f"run.steps={steps}"] if steps is not None else ()))
    if resume is not None:
        if config_path is not None:
            raise ConfigError("--resume takes the config from the run folder; drop --config")
        folder = resume.resolve()
        if not (folder / "config.yaml").is_file() and not checkpoints(folder):
            raise ConfigError(
                f"{resume}: not a run folder (no config.yaml); a run stopped before it wrote one "
                "starts again with the command that started it (azr train --out ...)"
            )
        lock = RunLock(folder)
        try:
            _remove_temporaries(folder)
            for _, path in _step_folders(folder):
                if not (path / STATE).is_file():
                    warn(
                        f"{path} has no {STATE}, so it is no complete checkpoint; "
                        "its step will be redone over it"
                    )
            done = checkpoints(folder, warn)
            start, ckpt = done[-1] if done else (0, None)
            damaged = [p.name for _, p, damage in _claimed(folder) if damage] if ckpt is None else []
            if ckpt is None and (damaged or _has_metrics(folder)):
                # It trained: starting over would throw its history away.
                raise ConfigError(
                    f"{resume} has no complete checkpoint left ({', '.join(damaged) or 'none'} damaged) "
                    "though it has trained; restore a checkpoint from a copy, "
                    "or move the folder away and start a new run"
                )
            config = _run_config(folder, ckpt, extra, warn)
            config.run.out = str(resume)
            if ckpt is None:
                # Stopped before its first checkpoint: nothing to continue, so start it over.
                warn(f"{resume} has no complete checkpoint; starting the run from the beginning")
                shutil.rmtree(folder / "buffer", ignore_errors=True)
            return config, folder, ckpt, start, lock
        except BaseException:
            lock.release()
            raise
    config = load_config(_preset(config_path), extra)
    given = out or Path(config.run.out)
    folder = given.resolve()
    if (folder / "config.yaml").exists() and (checkpoints(folder) or (folder / "metrics.jsonl").exists()):
        raise ConfigError(f"{given} already holds a run; resume it with --resume {given} or choose --out")
    if folder.exists():
        foreign = sorted(
            p.name
            for p in folder.iterdir()
            if p.name not in LEFT_BY_A_FAILED_START and not _temporary(p.name)
        )
        if foreign:
            raise ConfigError(
                f"{given} is not empty ({', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''}); "
                "a new run needs an empty or new folder"
            )
    seeds = config.selfplay.seed_buffer
    if seeds and Path(seeds).resolve().is_relative_to(folder / "buffer"):
        raise ConfigError(
            f"selfplay.seed_buffer {seeds!r} is inside the new run's own buffer folder, "
            "which a new run starts empty; seed into another folder"
        )
    lock = RunLock(folder)
    _remove_temporaries(folder)  # a failed start's, if any
    shutil.rmtree(folder / "buffer", ignore_errors=True)
    config.run.out = str(given)
    return config, folder, None, 0, lock


def _preset(name: str | None) -> Path:
    """A config path, or the name of a preset shipped with azr (default: tiny)."""
    presets = Path(__file__).resolve().parents[1] / "presets"
    if name is None:
        return presets / "tiny.yaml"
    path = Path(name)
    if path.is_file():
        return path
    packaged = presets / f"{name.removesuffix('.yaml')}.yaml"
    if packaged.is_file():
        return packaged
    known = ", ".join(sorted(p.stem for p in presets.glob("*.yaml")))
    raise ConfigError(f"config {name!r}: no such file or preset (presets: {known})")


class StoppedBySignal(Exception):
    """The run checkpointed and stopped early on SIGINT/SIGTERM (``signum``), so a
    script can tell it from a finished run (``azr train`` exits 128 + signum)."""

    def __init__(self, folder: Path, step: int, signum: int) -> None:
        super().__init__(f"stopped by a signal after step {step}; resume with: azr train --resume {folder}")
        self.folder, self.step, self.signum = folder, step, signum


class _Stop:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.signum = 0
        """The first signal received (0: none)."""
        self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            # A second signal: stop now. The last checkpoint is intact.
            self.restore()
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(
    config_path: str | None = None,
    overrides: tuple[str, ...] = (),
    out: Path | None = None,
    resume: Path | None = None,
    steps: int | None = None,
    console: Console | None = None,
) -> Path:
    """Run (or resume) training until ``run.steps``; returns the run folder."""
    console = console or Console()

    def warn(text: str) -> None:
        console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)

    config, folder, ckpt, start, lock = prepare(config_path, overrides, out, resume, steps, warn)
    shown = Path(config.run.out)
    import torch

    # A first SIGINT/SIGTERM asks for a checkpoint and a stop after the current step
    # (or after the first checkpoint, during start-up); a second one stops at once.
    stop = _Stop()
    run: Run | None = None
    writer = wandb = None
    last: dict[str, float] = {}
    step = start
    try:
        if ckpt is None:
            random.seed(config.run.seed)
            torch.manual_seed(config.run.seed)
        try:
            run = Run(config, folder, console, ckpt)
        except CheckpointUnreadable as exc:
            older = [str(p) for _, p in checkpoints(folder)[:-1]]
            raise ConfigError(
                f"{exc}; "
                + (f"move it away to resume from {older[-1]}" if older else "no older checkpoint exists")
            ) from exc.__cause__
        writer = _tensorboard(config, folder, start, resumed=ckpt is not None)
        wandb = _wandb(config, folder)
        # The run loaded and its loggers started with this config: now it is the folder's.
        write_atomically(folder / "config.yaml", dump_config(config))
        metrics_path = folder / "metrics.jsonl"
        _trim_metrics(metrics_path, start, warn)
        if ckpt is None:
            sp = config.selfplay
            t = time.perf_counter()
            if sp.seed_buffer:
                added = _import_seeds(run.buffer, Path(sp.seed_buffer))
                console.print(f"imported {added} seed tasks from {sp.seed_buffer}")
            else:
                target = sp.seed_factor * sp.batch_size
                seeded = run.selfplay.seed(target, sp.seed_max_rounds, config.run.seed)
                sizes = ", ".join(
                    f"{k.split('/')[1]} {int(v)}" for k, v in seeded.items() if k.endswith("size")
                )
                console.print(f"seeded the buffers in {time.perf_counter() - t:.1f} s: {sizes}")
            run.checkpoint(0)
        if start >= config.run.steps:
            console.print(f"{shown} is already at step {start}; raise --steps to train further")
            return shown
        if stop.requested:
            raise StoppedBySignal(shown, start, stop.signum)
        console.print(
            f"[bold]azr train[/] {shown}: steps {start + 1}..{config.run.steps}, model {config.model.path}"
        )
        from azr.rl.selfplay import step_seed

        for step in range(start + 1, config.run.steps + 1):
            t = time.perf_counter()
            last = run.selfplay.step(step, step_seed(config.run.seed, step))
            last["timing/step"] = time.perf_counter() - t
            last["sandbox/share_of_step"] = last.get("timing/sandbox", 0.0) / last["timing/step"]
            last["sandbox/exposed_share_of_step"] = last.get("timing/sandbox_wait", 0.0) / last["timing/step"]
            if config.run.eval_every and step % config.run.eval_every == 0:
                last.update(run.evaluate())
            with metrics_path.open("a") as f:
                f.write(json.dumps({"step": step, **last}) + "\n")
            if writer is not None:
                for key, value in last.items():
                    writer.add_scalar(key, value, step)
                writer.flush()
            if wandb is not None:
                wandb.log(last, step=step)
            _report(console, step, config.run.steps, last)
            if step % config.run.save_every == 0 or step == config.run.steps or stop.requested:
                run.checkpoint(step)
            if stop.requested:
                break
    finally:
        stop.restore()
        if run is not None:
            run.close()
        if writer is not None:
            writer.close()
        if wandb is not None:
            wandb.finish()
        lock.release()
    _summary(console, shown, step, last)
    try:
        from azr.rl.plots import plot_run

        plot_run(folder)
    except ImportError:
        pass
    if stop.requested:
        raise StoppedBySignal(shown, step, stop.signum)
    return shown


def seed_buffers(config_path: str | None, overrides: tuple[str, ...], out: Path) -> dict[str, int]:
    """``azr seed``: fill a durable buffer folder from the zero triplet, no updates."""
    config = load_config(_preset(config_path), overrides)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"{out} is not empty; azr seed writes a new buffer folder (choose a new or empty one)"
        )
    import torch

    random.seed(config.run.seed)
    torch.manual_seed(config.run.seed)
    staging = out.parent / f".{out.name}.seeding"
    # One azr seed per destination at a time: the lock file sits beside the
    # staging folder, which a second seeder would otherwise delete under the first.
    lock = RunLock(
        out.parent,
        f".{out.name}.seeding.lock",
        busy=f"another azr seed is writing {out}; wait for it or stop it",
    )
    try:
        shutil.rmtree(staging, ignore_errors=True)  # an earlier azr seed's that was stopped
        run = Run(config, staging, Console(), None)
        try:
            sp = config.selfplay
            run.selfplay.seed(sp.seed_factor * sp.batch_size, sp.seed_max_rounds, config.run.seed)
            run.buffer.compact()
            sizes = {t: run.buffer.count(t) for t in ("deduction", "abduction", "induction")}
        finally:
            run.close()
        del run
        if out.exists() and any(out.iterdir()):
            raise ConfigError(
                f"{out} is not empty; azr seed writes a new buffer folder (choose a new or empty one)"
            )
        if out.exists():
            out.rmdir()
        os.replace(staging / "buffer", out)
        _fsync(out.parent)
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    return sizes


def _tensorboard(config: Config, folder: Path, start: int, resumed: bool) -> Any:
    if not config.run.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError("run.tensorboard needs the tensorboard package (pip install 'azr[train]')") from exc
    # On resume, events of steps after the checkpoint (logged before a kill) are
    # dropped, so the steps done again appear once.
    return SummaryWriter(str(folder / "tb"), purge_step=start + 1 if resumed else None)


def _wandb(config: Config, folder: Path) -> Any:
    """The W&B run of this run folder, or None when ``run.wandb`` is off.

    The W&B run is named after the folder and its id is kept in the folder
    (``wandb_id``), so ``azr train --resume`` continues the same W&B run;
    W&B's own files go to ``wandb/`` in the folder.
    """
    if not config.run.wandb:
        return None
    try:
        import wandb  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigError("run.wandb is on but wandb is not installed (pip install wandb)") from exc
    import secrets

    id_file = folder / "wandb_id"
    if not id_file.is_file() or not id_file.read_text().strip():
        write_atomically(id_file, secrets.token_hex(4) + "\n")
    try:
        return wandb.init(
            project=config.run.wandb_project,
            name=folder.resolve().name,
            id=id_file.read_text().strip(),
            resume="allow",
            dir=str(folder),
            config=to_dict(config),
        )
    except Exception as exc:  # no API key, no network, a refused project: W&B's own errors
        raise ConfigError(
            f"run.wandb: W&B could not start ({type(exc).__name__}: {exc}); "
            "log in with `wandb login`, set WANDB_MODE=offline, or set run.wandb=false"
        ) from exc


def _report(console: Console, step: int, total: int, m: dict[str, float]) -> None:
    valid = sum(m.get(f"propose/{t}/valid_rate", 0.0) for t in ("deduction", "abduction", "induction")) / 3
    acc = sum(m.get(f"solve/{t}/accuracy", 0.0) for t in ("deduction", "abduction", "induction")) / 3
    phases = " ".join(f"{k.split('/')[1]} {v:.2f}s" for k, v in m.items() if k.startswith("timing/"))
    console.print(
        f"step {step}/{total}  valid {valid:.2f}  solve {acc:.2f}  loss {m.get('train/loss', 0.0):+.4f}  "
        f"({phases})",
        markup=False,
    )


def _summary(console: Console, folder: Path, step: int, m: dict[str, float]) -> None:
    table = Table("metric", "last value", title=f"{folder} after step {step}")
    for key in sorted(m):
        if key.split("/")[0] in ("propose", "solve", "buffer", "timing", "sandbox"):
            table.add_row(key, f"{m[key]:.4g}")
    console.print(table)
