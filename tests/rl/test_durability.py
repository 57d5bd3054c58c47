"""A run survives what happens to run folders: torn writes, damaged checkpoints
and configs, bad resume overrides, a second process, foreign folders, full
disks of checkpoints."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

from azr._core import ConfigError
from azr.buffer import TaskBuffer
from azr.config import dump_config, load_config
from azr.rl.run import RunLock, _import_seeds, _preset, checkpoints, prepare

from tests.rl.test_train_e2e import azr, steps_logged


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three steps, a checkpoint after each, the newest two kept."""
    run = tmp_path_factory.mktemp("durability") / "base"
    done = azr("train", "--out", str(run), "--steps", "3", "run.save_every=1", "run.keep_checkpoints=2")
    assert done.returncode == 0, done.stderr[-4000:]
    yield run


def _copy(base: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(base, run, ignore=shutil.ignore_patterns(".lock"))
    return run


def test_only_the_newest_checkpoints_are_kept(base: Path) -> None:
    assert [step for step, _ in checkpoints(base)] == [2, 3]
    assert steps_logged(base) == [1, 2, 3]


def test_a_torn_metrics_line_is_dropped_on_resume(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "propose/deduction/valid_rate": 0.0, "propose/ded')  # a full disk
    again = azr("train", "--resume", str(run), "--steps", "4")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "line(s) that are no step's metrics" in " ".join(again.stdout.split())
    assert steps_logged(run) == [1, 2, 3, 4]


def test_a_last_metrics_line_without_its_newline_is_mended(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text().rstrip("\n"))  # the newline never reached the disk
    again = azr("train", "--resume", str(run), "--steps", "4")
    assert again.returncode == 0, again.stderr[-4000:]
    assert steps_logged(run) == [1, 2, 3, 4]  # step 4's line did not join step 3's


def test_a_run_whose_checkpoints_are_all_damaged_is_not_started_over(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    for step in (2, 3):
        optimizer = run / f"step_{step}" / "optimizer.pt"
        optimizer.write_bytes(optimizer.read_bytes()[:-100])
    logged = (run / "metrics.jsonl").read_text()
    bad = azr("train", "--resume", str(run), "--steps", "4")
    assert bad.returncode != 0 and "no complete checkpoint left" in bad.stderr, bad.stderr[-3000:]
    assert "step_2, step_3 damaged" in bad.stderr
    assert (run / "metrics.jsonl").read_text() == logged  # its history untouched
    assert (run / "step_2").is_dir() and (run / "step_3").is_dir()


def test_a_damaged_newest_checkpoint_is_passed_over(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    optimizer = run / "step_3" / "optimizer.pt"
    optimizer.write_bytes(
        optimizer.read_bytes()[:-100]
    )  # what a crash before the data reached the disk leaves
    again = azr("train", "--resume", str(run), "--steps", "3")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "step_3 is damaged" in again.stdout and "optimizer.pt" in again.stdout
    assert steps_logged(run) == [1, 2, 3]  # step 3 trained again from step_2, logged once
    assert [step for step, _ in checkpoints(run)] == [2, 3]


def test_a_failed_override_leaves_the_run_as_it_was(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    before = (run / "config.yaml").read_text()
    bad = azr("train", "--resume", str(run), "--steps", "3", "trainer.lora_rank=4")
    assert bad.returncode != 0 and "no LoRA adapter" in bad.stderr, bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
    assert "trainer.lora_rank changed on resume" in bad.stdout
    assert (run / "config.yaml").read_text() == before
    assert azr("train", "--resume", str(run), "--steps", "3").returncode == 0


@pytest.mark.parametrize("damage", [b"", b"\xff\xfe\x00garbage"], ids=["emptied", "not-text"])
def test_a_damaged_config_is_taken_from_the_checkpoint(base: Path, tmp_path: Path, damage: bytes) -> None:
    run = _copy(base, tmp_path)
    before = (run / "config.yaml").read_text()
    (run / "config.yaml").write_bytes(damage)
    again = azr("train", "--resume", str(run), "--steps", "3")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "config.yaml is damaged" in again.stdout
    restored = yaml.safe_load((run / "config.yaml").read_text())
    original = yaml.safe_load(before)
    original["run"]["out"] = str(run)  # the copy's own folder
    assert restored == original  # not the defaults


def test_a_full_disk_on_resume_is_not_blamed_on_the_checkpoint(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azr.rl.run as runs
    from rich.console import Console

    run = _copy(base, tmp_path)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs, "Run", full_disk)
    # The disk's error as it is, not "step_3 could not be loaded; move it away".
    with pytest.raises(OSError, match="No space left"):
        runs.train(resume=run, steps=4, console=Console(quiet=True))
    assert [step for step, _ in checkpoints(run)] == [2, 3]


def test_a_logger_that_cannot_start_leaves_the_config_as_it_was(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = pytest.importorskip("wandb", reason="needs wandb: pip install 'azr[dev]'")
    import azr.rl.run as runs
    from rich.console import Console

    run = _copy(base, tmp_path)
    before = (run / "config.yaml").read_text()

    def refused(**kwargs: object) -> None:
        raise RuntimeError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", refused)
    with pytest.raises(ConfigError, match="W&B could not start"):
        runs.train(overrides=("run.wandb=true",), resume=run, steps=4, console=Console(quiet=True))
    assert (run / "config.yaml").read_text() == before  # a plain --resume still works
    assert steps_logged(run) == [1, 2, 3]


def test_a_changed_seed_is_flagged_on_resume(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    said: list[str] = []
    _, _, _, _, lock = prepare(None, ("run.seed=7", "run.save_every=2"), None, run, 4, warn=said.append)
    lock.release()
    assert said == ["run.seed changed on resume: the run no longer continues exactly as it would have"]


def test_keeping_checkpoints_also_clears_older_damaged_ones(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    (run / "step_2" / "rng.pt").write_bytes(b"")  # damaged: kept by nothing, passed over by resume
    again = azr("train", "--resume", str(run), "--steps", "5", "run.keep_checkpoints=1")
    assert again.returncode == 0, again.stderr[-4000:]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("step_", ".step_"))) == ["step_5"]


def test_one_process_at_a_time_holds_a_run_folder(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    lock = RunLock(run)
    try:
        busy = azr("train", "--resume", str(run), "--steps", "4")
        assert busy.returncode != 0 and "in use by another azr process" in busy.stderr
        with pytest.raises(ConfigError, match="in use"):
            prepare(None, (), None, run, 4)
    finally:
        lock.release()
    assert steps_logged(run) == [1, 2, 3]


def test_new_runs_take_only_empty_folders_or_a_failed_start(tmp_path: Path) -> None:
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    bad = azr("train", "--out", str(foreign), "--steps", "1")
    assert bad.returncode != 0 and "is not empty" in bad.stderr
    assert (foreign / "notes.txt").read_text() == "mine" and sorted(p.name for p in foreign.iterdir()) == [
        "notes.txt"
    ]
    # A start stopped before its first checkpoint leaves config.yaml (and a buffer):
    # a new run may take the folder, and --resume starts it over.
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "config.yaml").write_text(dump_config(load_config(_preset(None))))
    (failed / "buffer").mkdir()
    # A kill during its first checkpoint or an atomic write leaves temporaries too.
    (failed / ".step_0.tmp").mkdir()
    (failed / ".config.yaml.4242.tmp").write_text("")
    _, folder, ckpt, start, lock = prepare(None, (), failed, None, 1)
    lock.release()
    assert ckpt is None and start == 0 and folder == failed.resolve()
    assert not (failed / ".step_0.tmp").exists() and not (failed / ".config.yaml.4242.tmp").exists()
    _, _, ckpt, start, lock = prepare(None, (), None, failed, 1, warn=lambda _: None)
    lock.release()
    assert ckpt is None and start == 0 and not (failed / "buffer").exists()


def test_a_new_run_never_clears_the_seeds_it_is_told_to_import(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "buffer").mkdir(parents=True)
    (run / "buffer" / "seeds.jsonl").write_text("")
    with pytest.raises(ConfigError, match="inside the new run's own buffer"):
        prepare(None, (f"selfplay.seed_buffer={run / 'buffer'}",), run, None, 1)
    assert (run / "buffer" / "seeds.jsonl").is_file()


def test_seeding_never_writes_into_a_folder_with_files(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "precious.txt").write_text("keep")
    bad = azr("seed", "--out", str(mine))
    assert bad.returncode != 0 and "is not empty" in bad.stderr
    assert (mine / "precious.txt").read_text() == "keep" and (mine / "sub").is_dir()


def test_seeds_from_an_export_enter_at_step_zero(tmp_path: Path) -> None:
    # An export of a trained run's buffer: its entries carry that run's steps.
    old = TaskBuffer()
    old.add_many(
        [
            (
                "deduction",
                {"program": f"def f(a):\n    return a + {i}", "input": "1", "output": str(1 + i)},
                200,
            )
            for i in range(5)
        ]
    )
    export = tmp_path / "seeds.jsonl"
    old.export_jsonl(export)
    new = TaskBuffer()
    assert _import_seeds(new, export) == 5
    assert [e.step for e in new.entries("deduction")] == [0] * 5
    assert new.recent("deduction", since_step=1) == []  # none of them counts as the last step's
    for bad in (b'{"task_type": "deduction", "record": 3}', b'{"task_type": ["deduction"], "record": {}}'):
        export.write_bytes(b"\n".join([*export.read_bytes().splitlines()[:5], bad]) + b"\n")
        with pytest.raises(ConfigError, match="line 6: not a buffer export line"):
            _import_seeds(TaskBuffer(), export)
    # Lines that parse but hold no task a run can read (it failed at its first step).
    for record, why in (
        ('{"program": 5, "input": "1", "output": "1"}', "deduction record whose 'program' is missing"),
        ('{"program": "def f(a):\\n    return a"}', "deduction record whose 'input' is missing"),
    ):
        line = f'{{"task_type": "deduction", "step": 0, "record": {record}}}'.encode()
        export.write_bytes(b"\n".join([*export.read_bytes().splitlines()[:5], line]) + b"\n")
        with pytest.raises(ConfigError, match=f"1 of 6 records are not tasks a run can use .first: a {why}"):
            _import_seeds(TaskBuffer(), export)


def test_a_second_seeder_of_one_folder_is_refused_and_harms_nothing(tmp_path: Path) -> None:
    from azr.rl.run import seed_buffers

    out = tmp_path / "seeds"
    staging = tmp_path / ".seeds.seeding"
    (staging / "buffer").mkdir(parents=True)
    (staging / "buffer" / "wal-00000000.log").write_text("the first seeder's")
    first = RunLock(tmp_path, ".seeds.seeding.lock")  # what the first azr seed holds
    try:
        with pytest.raises(ConfigError, match="another azr seed is writing"):
            seed_buffers(None, (), out)
    finally:
        first.release()
    assert (staging / "buffer" / "wal-00000000.log").read_text() == "the first seeder's"
    assert not out.exists()


def test_a_failure_on_resume_is_blamed_on_the_checkpoint_only_when_reading_it(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azr.rl.run as runs
    import azr.rl.selfplay as selfplay
    from rich.console import Console

    run = _copy(base, tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug after the checkpoint was read")

    monkeypatch.setattr(selfplay, "SelfPlay", broken)
    with pytest.raises(ValueError, match="a bug after the checkpoint"):
        runs.train(resume=run, steps=4, console=Console(quiet=True))
    monkeypatch.undo()

    def unreadable(self: object, ckpt: Path) -> None:
        raise RuntimeError("unexpected key in the optimizer state")

    monkeypatch.setattr(runs.Run, "_restore", unreadable)
    with pytest.raises(
        ConfigError, match=r"step_3 could not be loaded .*move it away to resume from .*step_2"
    ):
        runs.train(resume=run, steps=4, console=Console(quiet=True))
    assert steps_logged(run) == [1, 2, 3]


def test_tensorboard_drops_the_steps_a_resume_from_step_zero_does_again(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install 'azr[train]'")
    from azr.rl.run import _tensorboard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(None, ())
    first = _tensorboard(config, tmp_path, 0, resumed=False)
    for step in (1, 2, 3):  # logged, then the run was killed before its step-10 checkpoint
        first.add_scalar("loss", 1.0, step)
    first.close()
    again = _tensorboard(config, tmp_path, 0, resumed=True)
    for step in (1, 2):
        again.add_scalar("loss", 2.0, step)
    again.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.0), (2, 2.0)]


def test_seeds_are_read_from_a_folder_another_run_holds(tmp_path: Path) -> None:
    folder = tmp_path / "seeds"
    held = TaskBuffer.open(folder)  # another run starting from the same seeds holds its lock
    held.add_many(
        [
            (
                "deduction",
                {"program": f"def f(a):\n    return a + {i}", "input": "1", "output": str(1 + i)},
                3,
            )
            for i in range(4)
        ]
    )
    held.flush()
    new = TaskBuffer()
    assert _import_seeds(new, folder) == 4
    assert [e.step for e in new.entries("deduction")] == [0] * 4
    del held


def test_a_damaged_checkpoint_buffer_names_the_copy_to_salvage(base: Path, tmp_path: Path) -> None:
    import azr.rl.run as runs
    from rich.console import Console

    run = _copy(base, tmp_path)
    [snapshot] = (run / "step_3" / "buffer").glob("snapshot-*.bin")
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: the checkpoint's file list still matches
    snapshot.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"azr buffer salvage .*step_3/buffer"):
        runs.train(resume=run, steps=4, console=Console(quiet=True))
    # What the message says to do: salvage rewrites the buffer under new file
    # names, and the checkpoint's file list follows, so step_3 stays the one to
    # resume from (not passed over as damaged for step_2).
    salvaged = azr("buffer", "salvage", str(run / "step_3" / "buffer"))
    assert salvaged.returncode == 0, salvaged.stderr[-4000:]
    assert "step_3/state.json: now lists" in salvaged.stdout
    assert [step for step, _ in checkpoints(run)] == [2, 3]
    again = azr("train", "--resume", str(run), "--steps", "4")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "passing over" not in again.stdout + again.stderr
    assert steps_logged(run) == [1, 2, 3, 4]


def test_resuming_with_a_model_of_another_shape_is_an_error(base: Path, tmp_path: Path) -> None:
    """The checkpoint's weights with another model's tokenizer would train on the
    wrong tokens: a model.path whose shape differs from the checkpoint's is refused."""
    import json

    import azr.rl.run as runs
    from rich.console import Console

    run = _copy(base, tmp_path)
    other = tmp_path / "other"
    made = azr("model", "tiny", "--out", str(other))
    assert made.returncode == 0, made.stderr[-4000:]
    config = json.loads((other / "config.json").read_text())
    config["vocab_size"] += 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"vocab_size \d+ \(the checkpoint's: \d+\)"):
        runs.train(resume=run, steps=4, overrides=(f"model.path={other}",), console=Console(quiet=True))
    # The same model in another folder (a moved model) still resumes.
    config["vocab_size"] -= 64
    (other / "config.json").write_text(json.dumps(config))
    runs.train(resume=run, steps=4, overrides=(f"model.path={other}",), console=Console(quiet=True))
    assert steps_logged(run) == [1, 2, 3, 4]


@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_nonfinite_values_that_keep_a_files_size_are_blamed_on_the_checkpoint(
    base: Path, tmp_path: Path, part: str
) -> None:
    """Damage the size check cannot see: a NaN written into the weights or the
    optimizer's moments. Loaded, it made every weight NaN at the next update and
    was saved as the newest checkpoint; now resuming names the file and the
    older checkpoint to resume from."""
    import torch
    from azr.rl.run import nonfinite_weights
    from safetensors.torch import load_file, save_file

    run = _copy(base, tmp_path)
    ckpt = run / "step_3"
    if part == "model":
        path = ckpt / "model" / "model.safetensors"
        weights = load_file(str(path))
        name = sorted(weights)[0]
        weights[name].view(-1)[0] = float("nan")
        save_file(weights, str(path), metadata={"format": "pt"})
        assert nonfinite_weights(ckpt) == f"model/model.safetensors: {name}"
    else:
        path = ckpt / "optimizer.pt"
        state = torch.load(path, weights_only=True)
        moments = next(iter(state["optimizer"]["state"].values()))["exp_avg_sq"]
        moments.view(-1)[0] = float("nan")
        torch.save(state, path)
    assert [step for step, _ in checkpoints(run)] == [2, 3], "the file kept its size"
    again = azr("train", "--resume", str(run), "--steps", "4")
    assert again.returncode != 0
    assert "non-finite" in again.stderr and "move it away to resume from" in again.stderr, again.stderr[
        -3000:
    ]
    assert str(run / "step_2") in again.stderr and "Traceback" not in again.stderr


def test_a_checkpoint_of_nonfinite_weights_is_not_written(tmp_path: Path) -> None:
    """A run whose weights went NaN stops before saving them: the newest
    checkpoint stays one a run can continue from, and none is pruned for it."""
    import types

    import torch
    from azr._core import AzrError
    from azr.rl.run import Run
    from safetensors.torch import save_file

    def save(folder: Path) -> None:
        (folder / "model").mkdir(parents=True)
        save_file({"w": torch.tensor([1.0, float("inf")])}, str(folder / "model" / "model.safetensors"))

    run = object.__new__(Run)
    run.folder = tmp_path
    run.trainer = types.SimpleNamespace(save=save)
    with pytest.raises(AzrError, match=r"no longer finite after step 5 \(model/model.safetensors: w\)"):
        run.checkpoint(5)
    assert list(tmp_path.iterdir()) == []


def test_a_step_folder_without_its_state_is_named_on_resume(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    shutil.copytree(run / "step_3", run / "step_4")
    (run / "step_4" / "state.json").unlink()
    again = azr("train", "--resume", str(run), "--steps", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "step_4 has no state.json, so it is no complete checkpoint" in " ".join(again.stdout.split())
