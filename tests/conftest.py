"""Shared fixtures: one sandbox per session, and the paths of the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azr.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """`../shared/data` beside the checkout, or `$AZR_SHARED_DATA`."""
    return Path(os.environ.get("AZR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    return Sandbox(timeout_s=2.0, memory_mb=128)


@pytest.fixture(scope="session")
def cruxeval_path() -> Path:
    path = shared_data() / "eval" / "code" / "cruxeval.jsonl"
    if not path.is_file():
        pytest.fail(f"CRUXEval data not found at {path}; set AZR_SHARED_DATA to the shared data folder")
    return path
