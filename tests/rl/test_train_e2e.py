"""`azr train` end to end on the tiny model: steps, resume, kills, signals, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

from azr.buffer import TaskBuffer

from tests.conftest import shared_data


def azr(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azr", *args], capture_output=True, text=True, timeout=timeout
    )


def steps_logged(run: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]


def train_then_resume(run: Path, steps: int, *args: str, timeout: float = 300) -> list[dict[str, Any]]:
    """`azr train` for ``steps`` steps with ``args``, then ``--resume`` for one more;
    both must succeed and log every step once. Returns the metric lines."""
    first = azr("train", "--out", str(run), "--steps", str(steps), *args, timeout=timeout)
    assert first.returncode == 0, first.stderr[-4000:] + first.stdout[-2000:]
    again = azr("train", "--resume", str(run), "--steps", str(steps + 1), timeout=timeout)
    assert again.returncode == 0, again.stderr[-4000:] + again.stdout[-2000:]
    assert steps_logged(run) == list(range(1, steps + 2))
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def seed_file(path: Path, n: int = 12) -> Path:
    lines = [
        {
            "task_type": "deduction",
            "step": 0,
            "record": {"program": f"def f(x):\n    return x * {k}", "input": "3", "output": str(3 * k)},
        }
        for k in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_train_two_steps_then_resume_to_three(tmp_path: Path) -> None:
    run = tmp_path / "run"
    crux = shared_data() / "eval" / "code" / "cruxeval.jsonl"
    evals = ("run.eval_every=2", "run.eval_limit=2", "run.eval_max_tokens=8", f"run.eval_data={crux}")
    lines = train_then_resume(run, 2, *evals)
    assert (run / "config.yaml").is_file() and (run / "step_2" / "state.json").is_file()
    assert (run / "step_2" / "model" / "tokenizer_config.json").is_file(), (
        "a checkpoint is a complete HF folder"
    )
    assert (run / "plots" / "metrics.png").is_file()
    line = lines[1]
    for key in ("propose/deduction/valid_rate", "buffer/deduction/size", "timing/generate", "train/loss"):
        assert key in line, key
    assert "eval/cruxeval_o" not in lines[0], "evaluation runs every run.eval_every steps"
    for key in ("eval/cruxeval_o", "eval/cruxeval_i", "eval/indist", "timing/eval"):
        assert key in line, key
    assert 0.0 <= line["eval/cruxeval_o"] <= 100.0
    assert (run / "step_3" / "state.json").is_file()


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    seeds = seed_file(tmp_path / "seeds.jsonl")
    cmd = [
        sys.executable,
        "-m",
        "azr",
        "train",
        "--out",
        str(run),
        "--steps",
        "6",
        "run.save_every=2",
        f"selfplay.seed_buffer={seeds}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run / "step_2" / "state.json", proc)
    time.sleep(0.7)  # somewhere inside step 3
    proc.kill()
    proc.communicate()
    resumed = azr("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6], "every step logged exactly once"
    buffer = TaskBuffer.open(run / "buffer")
    programs = {e.record["program"] for e in buffer.entries("deduction")}
    assert {f"def f(x):\n    return x * {k}" for k in range(12)} <= programs, "seed tasks lost"


def test_sigterm_checkpoints_and_stops(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "azr", "train", "--out", str(run), "--steps", "50", "run.save_every=100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(run / "step_0" / "state.json", proc)
    while not (run / "metrics.jsonl").is_file():
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err  # stopped early, not finished
    last = steps_logged(run)[-1]
    assert (run / f"step_{last}" / "state.json").is_file(), "a checkpoint at the step it stopped"
    assert "resume with" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--out", "{tmp}/r", "selfplay.batchsize=2"], "did you mean 'selfplay.batch_size'"),
        (["train", "--out", "{tmp}/r", "resources.gpus_per_node=8"], "need trainer.backend=deepspeed"),
        (
            ["train", "--out", "{tmp}/r", "resources.gpus_per_node=8", "trainer.backend=deepspeed"],
            "resources ask for",
        ),
        (["train", "--out", "{tmp}/r", "resources.tensor_parallel=3"], "never spans nodes"),
        (["train", "--out", "{tmp}/r", "model.path={tmp}"], "without config.json"),
        (["train", "--config", "no-such-preset"], "no such file or preset"),
        (["train", "--resume", "{tmp}"], "not a run folder"),
        (["train", "--out", "{tmp}/r", "trainer.zero_stage=0"], "trainer.zero_stage must be 1, 2 or 3"),
        (
            ["train", "--out", "{tmp}/r", "trainer.backend=deepspeed", "trainer.zero_stage=3"],
            "cannot generate with ZeRO-3",
        ),
        (["train", "--out", "{tmp}/r", "model.path=azr-test/no-such-model"], "cannot load the model"),
        (["train", "--out", "{tmp}/r", "model.path={tmp}/listed"], "cannot load the model: TypeError"),
        (
            [
                "prompt",
                "--task",
                "deduction",
                "--role",
                "propose",
                "--template",
                "chat",
                "--tokenizer",
                "{tmp}/empty",
            ],
            "cannot load the tokenizer",
        ),
        (["eval", "--model", "{tmp}/listed", "--suite", ",,"], "names no benchmark"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "config.json").write_text("[1, 2]")  # JSON, but not a config
    (tmp_path / "empty").mkdir()
    result = azr(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_run_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert azr("train", "--out", str(run), "--steps", "1").returncode == 0
    again = azr("train", "--out", str(run), "--steps", "1")
    assert again.returncode != 0 and "already holds a run" in again.stderr
