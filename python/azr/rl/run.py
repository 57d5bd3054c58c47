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
a temporary folder and renamed into place, so a kill at any moment leaves the
previous checkpoint intact. Resuming restores the model, optimizer, RNG
states and buffers of the newest complete checkpoint and continues at the
next step; every draw of a step is seeded by (run seed, step), so the resumed
run samples exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from azr._core import ConfigError
from azr.buffer import TaskBuffer
from azr.config import Config, dump_config, load_config, to_dict
from azr.sandbox import Sandbox

STATE = "state.json"


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    found = []
    for path in run.glob("step_*"):
        if (path / STATE).is_file() and path.name[5:].isdigit():
            found.append((int(path.name[5:]), path))
    return sorted(found)


class Run:
    """Everything a run holds; ``train`` drives it."""

    def __init__(
        self, config: Config, folder: Path, console: Console, resume_from: Path | None = None
    ) -> None:
        import torch

        from azr.models import resolve
        from azr.placement import plan
        from azr.rl.backends import build_backends, load_policy
        from azr.rl.selfplay import SelfPlay

        self.config, self.folder, self.console = config, folder, console
        placement = plan(config.resources)
        path, kwargs = resolve(config.model.path, config.model.revision)
        # A LoRA run resumes from the base model plus its saved adapter.
        lora = config.trainer.lora_rank > 0
        weights = str(resume_from / "model") if resume_from and not lora else None
        self.cluster: Any = None
        if placement.uses_ray:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        else:
            self.tokenizer, model = load_policy(config, (path, kwargs), weights, resume_from)
        if config.model.template == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"model.template is 'chat' but the tokenizer of {config.model.path!r} has no chat template; "
                "use model.template=r1"
            )
        s = config.sandbox
        self.sandbox: Any
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
        self.buffer = TaskBuffer.open(
            buffer_dir, capacity=b.capacity, eviction=b.eviction, dedup=b.dedup, seed=config.run.seed
        )
        if placement.uses_ray:
            from azr.distributed.ray_driver import launch

            self.cluster = launch(config, placement, weights or path, resume_from, folder)
            rollout, self.trainer, sync = self.cluster.rollout, self.cluster.trainer, self.cluster.sync
            self.sandbox = self.cluster.sandbox  # checks spread over the nodes' CPU actors
        else:
            rollout, self.trainer, sync = build_backends(
                config, model, self.tokenizer, weights or path, folder / ".sync"
            )
        if resume_from is not None:
            self.trainer.load_optimizer(resume_from)
            rng = torch.load(resume_from / "rng.pt", weights_only=False)
            random.setstate(rng["python"])
            torch.set_rng_state(rng["torch"])
        self.selfplay = SelfPlay(
            config, self.sandbox, self.buffer, rollout, self.trainer, self.tokenizer, sync=sync
        )
        self._eval: tuple[Any, Any, Any] | None = None
        if config.run.eval_every:
            from azr.eval.grading import Grader
            from azr.eval.runner import EvalOptions, load_samples

            r = config.run
            opts = EvalOptions(
                suites=("indist",),
                limit=r.eval_limit,
                max_tokens=r.eval_max_tokens,
                template=config.model.template,
                data={"cruxeval-o": r.eval_data, "cruxeval-i": r.eval_data},
            )
            # Loaded now, once: a bad source fails at start-up, not at step N.
            self._eval = (opts, load_samples(opts), Grader(s.timeout_s, s.memory_mb, s.workers))

    def close(self) -> None:
        """Stop the sandbox's worker processes and the Ray actors, if any, and
        leave the trainer's process group."""
        if self.cluster is not None:
            self.cluster.shutdown()
        trainer_close = getattr(self.trainer, "close", None)
        if trainer_close is not None:
            trainer_close()
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
        self.tokenizer.save_pretrained(
            tmp / "model"
        )  # step_N/model is a complete HF folder (azr eval --model)
        torch.save({"python": random.getstate(), "torch": torch.get_rng_state()}, tmp / "rng.pt")
        self.buffer.flush()
        self.buffer.compact()
        shutil.copytree(self.folder / "buffer", tmp / "buffer", ignore=shutil.ignore_patterns("LOCK"))
        (tmp / STATE).write_text(json.dumps({"step": step, "time": time.time()}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final


def _import_seeds(buffer: TaskBuffer, source: Path) -> int:
    """Seed a run from ``azr seed`` output: a buffer folder or a JSON-lines export."""
    if source.is_dir():
        seeds = TaskBuffer.open(source)
        items = [(t, e.record, 0) for t in ("deduction", "abduction", "induction") for e in seeds.entries(t)]
        del seeds
        added = sum(buffer.add_many(items))
    elif source.is_file():
        added, _ = buffer.import_jsonl(source)
    else:
        raise ConfigError(f"selfplay.seed_buffer {str(source)!r}: no such folder or file")
    buffer.flush()
    return added


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines of steps after the checkpoint a run resumes from."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= last_step
    ]
    path.write_text("".join(line + "\n" for line in kept))


def prepare(
    config_path: str | None,
    overrides: tuple[str, ...],
    out: Path | None,
    resume: Path | None,
    steps: int | None,
) -> tuple[Config, Path, Path | None, int]:
    """Resolve the config and folder of a new or resumed run: (config, folder, checkpoint, start step)."""
    if resume is not None:
        if config_path is not None:
            raise ConfigError("--resume takes the config from the run folder; drop --config")
        if not (resume / "config.yaml").is_file():
            raise ConfigError(f"{resume}: not a run folder (no config.yaml)")
        extra = (*overrides, *([f"run.steps={steps}"] if steps is not None else ()))
        config = load_config(resume / "config.yaml", extra)
        done = checkpoints(resume)
        if not done:
            raise ConfigError(f"{resume}: no complete checkpoint to resume from")
        start, ckpt = done[-1]
        (resume / "config.yaml").write_text(dump_config(config))
        return config, resume, ckpt, start
    extra = (*overrides, *([f"run.steps={steps}"] if steps is not None else ()))
    config = load_config(_preset(config_path), extra)
    folder = out or Path(config.run.out)
    if (folder / "config.yaml").exists():
        raise ConfigError(f"{folder} already holds a run; resume it with --resume {folder} or choose --out")
    folder.mkdir(parents=True, exist_ok=True)
    config.run.out = str(folder)
    (folder / "config.yaml").write_text(dump_config(config))
    return config, folder, None, 0


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


class _Stop:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

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
    config, folder, ckpt, start = prepare(config_path, overrides, out, resume, steps)
    import torch

    if ckpt is None:
        random.seed(config.run.seed)
        torch.manual_seed(config.run.seed)
    run = Run(config, folder, console, ckpt)
    metrics_path = folder / "metrics.jsonl"
    _trim_metrics(metrics_path, start)
    writer = _tensorboard(config, folder)
    wandb = _wandb(config, folder)
    if ckpt is None:
        sp = config.selfplay
        t = time.perf_counter()
        if sp.seed_buffer:
            added = _import_seeds(run.buffer, Path(sp.seed_buffer))
            console.print(f"imported {added} seed tasks from {sp.seed_buffer}")
        else:
            seeded = run.selfplay.seed(sp.seed_factor * sp.batch_size, sp.seed_max_rounds, config.run.seed)
            console.print(
                f"seeded the buffers in {time.perf_counter() - t:.1f} s: "
                + ", ".join(f"{k.split('/')[1]} {int(v)}" for k, v in seeded.items() if k.endswith("size"))
            )
        run.checkpoint(0)
    if start >= config.run.steps:
        console.print(f"{folder} is already at step {start}; raise --steps to train further")
        return folder
    console.print(
        f"[bold]azr train[/] {folder}: steps {start + 1}..{config.run.steps}, model {config.model.path}"
    )
    stop = _Stop()
    last: dict[str, float] = {}
    step = start
    try:
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
                console.print(
                    f"stopped by a signal after step {step}; resume with: azr train --resume {folder}"
                )
                break
    finally:
        stop.restore()
        run.close()
        if writer is not None:
            writer.close()
        if wandb is not None:
            wandb.finish()
    _summary(console, folder, step, last)
    try:
        from azr.rl.plots import plot_run

        plot_run(folder)
    except ImportError:
        pass
    return folder


def seed_buffers(config_path: str | None, overrides: tuple[str, ...], out: Path) -> dict[str, int]:
    """``azr seed``: fill a durable buffer folder from the zero triplet, no updates."""
    config = load_config(_preset(config_path), overrides)
    if (out / "config.yaml").exists() or any(out.glob("*.log")):
        raise ConfigError(f"{out} already holds buffers or a run; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    random.seed(config.run.seed)
    torch.manual_seed(config.run.seed)
    run = Run(config, out.parent / f".{out.name}.seeding", Console(), None)
    try:
        sp = config.selfplay
        run.selfplay.seed(sp.seed_factor * sp.batch_size, sp.seed_max_rounds, config.run.seed)
        run.buffer.compact()
        sizes = {t: run.buffer.count(t) for t in ("deduction", "abduction", "induction")}
    finally:
        run.close()
    del run
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(str(out.parent / f".{out.name}.seeding" / "buffer"), str(out))
    shutil.rmtree(out.parent / f".{out.name}.seeding", ignore_errors=True)
    return sizes


def _tensorboard(config: Config, folder: Path) -> Any:
    if not config.run.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError("run.tensorboard needs the tensorboard package (pip install 'azr[train]')") from exc
    return SummaryWriter(str(folder / "tb"))


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
    if not id_file.is_file():
        id_file.write_text(secrets.token_hex(4) + "\n")
    return wandb.init(
        project=config.run.wandb_project,
        name=folder.resolve().name,
        id=id_file.read_text().strip(),
        resume="allow",
        dir=str(folder),
        config=to_dict(config),
    )


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
