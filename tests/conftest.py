"""Shared fixtures: one sandbox per session, and the paths of the shared data."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest
from azr.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]

# Tests never download: models and data come from local paths or are built here.
# Subprocesses (the CLI tests) inherit this.
os.environ["HF_HUB_OFFLINE"] = "1"


def _origin_checkout() -> Path | None:
    """The folder a local clone was made from (``git clone /work/main /tmp/x``), if any."""
    try:
        url = subprocess.run(
            ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(url).resolve() if url and Path(url).is_dir() else None


@functools.cache
def shared_data() -> Path:
    """`$AZR_SHARED_DATA`, else `../shared/data` beside the checkout, else beside the
    checkout a local clone came from. A missing folder fails the test that needs it."""
    if os.environ.get("AZR_SHARED_DATA"):
        return Path(os.environ["AZR_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data"]
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.parent / "shared" / "data")
    for folder in candidates:
        if folder.is_dir():
            return folder
    pytest.fail(f"the shared data folder is not at {' nor '.join(map(str, candidates))}; set AZR_SHARED_DATA")


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
