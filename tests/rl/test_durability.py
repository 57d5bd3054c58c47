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
from azr.config import dump_config, load_config
from azr.rl.run import RunLock, _preset, checkpoints, prepare

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
    assert "do not parse" in again.stdout
    assert steps_logged(run) == [1, 2, 3, 4]


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


def test_an_emptied_config_is_taken_from_the_checkpoint(base: Path, tmp_path: Path) -> None:
    run = _copy(base, tmp_path)
    before = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text("")
    again = azr("train", "--resume", str(run), "--steps", "3")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "config.yaml is damaged" in again.stdout
    restored = yaml.safe_load((run / "config.yaml").read_text())
    original = yaml.safe_load(before)
    original["run"]["out"] = str(run)  # the copy's own folder
    assert restored == original  # not the defaults


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
    _, folder, ckpt, start, lock = prepare(None, (), failed, None, 1)
    lock.release()
    assert ckpt is None and start == 0 and folder == failed.resolve()
    _, _, ckpt, start, lock = prepare(None, (), None, failed, 1, warn=lambda _: None)
    lock.release()
    assert ckpt is None and start == 0 and not (failed / "buffer").exists()


def test_seeding_never_writes_into_a_folder_with_files(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "precious.txt").write_text("keep")
    bad = azr("seed", "--out", str(mine))
    assert bad.returncode != 0 and "is not empty" in bad.stderr
    assert (mine / "precious.txt").read_text() == "keep" and (mine / "sub").is_dir()
