"""Shared fixtures: one sandbox per session, and the paths of the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azr.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]

# Tests never download: models and data come from local paths or are built here.
# Subprocesses (the CLI tests) inherit this.
os.environ["HF_HUB_OFFLINE"] = "1"


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built once per test session (needs the training stack)."""
    pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")
    from azr.models import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-model"))
