"""Correctness on real programs: the 800 CRUXEval programs give their recorded outputs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from azr.sandbox import Sandbox


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _literal_arguments(text: str) -> bool:
    # Parsing benchmark data in the test (never evaluating it) to know which
    # inputs the proposal rules accept.
    call = ast.parse(f"f({text})", mode="eval").body
    assert isinstance(call, ast.Call)
    try:
        for node in [*call.args, *(k.value for k in call.keywords)]:
            if isinstance(node, ast.Starred):
                return False
            ast.literal_eval(node)
    except ValueError:
        return False
    return True


def test_every_program_gives_its_recorded_output(cruxeval_path: Path) -> None:
    rows = _rows(cruxeval_path)
    assert len(rows) == 800
    sandbox = Sandbox(timeout_s=10)
    results = sandbox.run_batch([(r["code"], r["input"]) for r in rows])
    failures = [(r["id"], res.error) for r, res in zip(rows, results, strict=True) if not res.ok]
    assert failures == []
    verdicts = sandbox.judge([(r["output"], res.output or "") for r, res in zip(rows, results, strict=True)])
    triples = zip(rows, results, verdicts, strict=True)
    mismatches = [(r["id"], r["output"], res.output) for r, res, v in triples if v != "equal"]
    assert mismatches == []


def test_validation_accepts_every_literal_input_program(cruxeval_path: Path) -> None:
    rows = _rows(cruxeval_path)
    results = Sandbox(timeout_s=10).validate_batch([(r["code"], r["input"]) for r in rows])
    for row, result in zip(rows, results, strict=True):
        if _literal_arguments(row["input"]):
            assert result.ok, (row["id"], result.error)
        else:
            assert result.error is not None and result.error.kind == "syntax", row["id"]
