"""Loading a model for evaluation with one of the rollout backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azr.config import ConfigError


def model_folder(path: str) -> str:
    """A run checkpoint (``step_N``) stands for its ``model`` folder."""
    local = Path(path).expanduser()
    if (local / "model" / "config.json").is_file():
        return str(local / "model")
    return path


def load_engine(
    path: str, backend: str = "hf", dtype: str = "bfloat16", batch_size: int = 8
) -> tuple[Any, Any]:
    """(engine, tokenizer) for ``path``: a folder, a checkpoint, ``tiny``, ``package:…`` or a hub id."""
    from azr.models import resolve

    resolved, kwargs = resolve(model_folder(path))
    if backend == "vllm":
        from azr.rollout.vllm import VLLMRollout

        engine = VLLMRollout(resolved, dtype=dtype, **kwargs)
        return engine, engine.tokenizer
    if backend != "hf":
        raise ConfigError(f"unknown backend {backend!r}; expected hf or vllm")
    from azr.models import load_pretrained
    from azr.rollout.hf import HFRollout

    tokenizer, model = load_pretrained(resolved, kwargs, dtype, f"--model {path!r}")
    return HFRollout(model, tokenizer, batch_size=batch_size), tokenizer
