"""`azr eval` end to end on the tiny model (CPU), `--compare`, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data
from tests.eval.test_grading import lcb_execution_file

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")


def azr(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azr", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("eval") / "tiny"
    data_dir = shared_data() / "eval"
    r = azr(
        "eval", "--model", str(tiny_model_dir), "--suite", "indist,aime24,mbpp+", "--limit", "2",
        "--max-tokens", "8", "--dtype", "float32", "--data-dir", str(data_dir), "--out", str(out),
        "--data", f"lcb-execution={lcb_execution_file(out.parent / 'lcb_execution.jsonl')}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    return out


def test_tiny_model_eval_writes_results_and_samples(tiny_eval: Path) -> None:
    results = json.loads((tiny_eval / "results.json").read_text())
    assert set(results["benchmarks"]) == {"cruxeval-o", "cruxeval-i", "lcb-execution", "aime24", "mbpp+"}
    for b in results["benchmarks"].values():
        assert b["n"] == 2 and 0.0 <= b["score"] <= 100.0
    assert results["benchmarks"]["mbpp+"]["base_title"] == "MBPP"
    assert results["averages"]["code"] is not None and results["averages"]["math"] is not None
    assert results["settings"]["max_tokens"] == 8 and results["meta"]["backend"] == "hf"
    rows = [json.loads(line) for line in (tiny_eval / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    assert all(r["tokens"] <= 8 and isinstance(r["correct"], bool) and r["prompt"] for r in rows)


def test_compare_prints_deltas_and_writes_a_chart(tiny_eval: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    results = json.loads((tiny_eval / "results.json").read_text())
    results["benchmarks"]["aime24"]["score"] = results["benchmarks"]["aime24"]["score"] + 50.0
    (other / "results.json").write_text(json.dumps(results))
    r = azr("eval", "--compare", str(tiny_eval), str(other), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    assert "+50.0" in r.stdout
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_eval_errors_are_clear(tmp_path: Path) -> None:
    r = azr("eval", "--model", "tiny", "--suite", "nonsense")
    assert r.returncode != 0 and "unknown suite or benchmark 'nonsense'" in r.stderr
    r = azr("eval", "--model", "tiny", "--suite", "mbpp+", "--data", f"mbpp+={tmp_path / 'none.jsonl'}")
    assert r.returncode != 0 and "no file" in r.stderr
    r = azr("eval", "--suite", "indist")
    assert r.returncode != 0 and "--model" in r.stderr
    r = azr(
        "eval", "--model", str(tmp_path), "--suite", "cruxeval-o", "--data-dir", str(shared_data() / "eval")
    )
    assert r.returncode != 0 and "config.json" in r.stderr
    r = azr("eval", "--compare", str(tmp_path), str(tmp_path))
    assert r.returncode != 0 and "results.json" in r.stderr
    odd = tmp_path / "odd.json"
    odd.write_text('{"benchmarks": [1, 2]}')
    r = azr("eval", "--compare", str(odd), str(odd))
    assert r.returncode != 0 and "not the results.json of an azr eval" in r.stderr


def test_chat_template_without_one_in_the_tokenizer_is_a_clear_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    r = azr(
        "eval", "--model", str(plain), "--suite", "cruxeval-o", "--limit", "1", "--template", "chat",
        "--data-dir", str(shared_data() / "eval"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert r.returncode != 0 and "has no chat template; use --template r1" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
