"""Model weights as the rest of azr sees them: a complete HF folder per
checkpoint, LoRA adapters (``trainer.lora_rank > 0``, with ``peft``) merged
into it, and the adapter kept beside it so a run resumes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from azr._core import ConfigError

ADAPTER = "adapter"


def apply_lora(model: Any, rank: int, alpha: int, dropout: float, targets: Sequence[str] | str) -> Any:
    """Wrap ``model`` with fresh LoRA adapters (the base weights freeze)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ConfigError("trainer.lora_rank > 0 needs peft: pip install 'azr[train]'") from exc
    target: Any = targets if isinstance(targets, str) else list(targets)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def is_lora(model: Any) -> bool:
    return hasattr(model, "peft_config")


def load_adapter(model: Any, folder: Path) -> None:
    """Load the adapter weights a checkpoint saved into a LoRA-wrapped model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / ADAPTER / "adapter_model.safetensors"
    if not path.is_file():
        raise ConfigError(f"{folder} has no LoRA adapter ({path}); was it saved with trainer.lora_rank=0?")
    result = set_peft_model_state_dict(model, load_file(str(path)))
    unmatched = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unmatched:
        raise ConfigError(f"the adapter in {path} does not fit this model: {unmatched[:3]}")


def merged_state_dict(model: Any) -> dict[str, Any]:
    """The weights under the base model's own names, with any LoRA merged in
    (CPU copies; the live model is not touched).

    Each merged weight is ``W + ΔW`` summed in fp32 on a copy. PEFT's own
    ``merge_adapter``/``unmerge_adapter`` add and subtract ΔW in place, which
    in bf16 does not give ``W`` back: every checkpoint would move the frozen
    base weights a little (and the base the rollout engine serves, and the KL
    reference, would drift apart from the trainer's)."""
    if not is_lora(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    import torch
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    layers = {f"{name}.base_layer.weight": m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
    out = {}
    with torch.no_grad():
        for key, value in base.state_dict().items():
            if "lora_" in key:
                continue
            value = value.detach()
            layer = layers.get(key)
            adapters = [a for a in layer.active_adapters if a in layer.lora_A] if layer is not None else []
            if adapters:
                # One layer's ΔW at a time: all of them at once would be fp32 the size of the model.
                delta_of: Any = getattr(layer, "get_delta_weight", None)  # Linear, Embedding, Conv layers
                if delta_of is None:
                    raise ConfigError(f"cannot merge the LoRA adapter of {key} ({type(layer).__name__})")
                merged = value.to(torch.float32, copy=True)  # never the live weight itself
                for a in adapters:
                    merged += delta_of(a).float().to(value.device)
                value = merged.to(value.dtype)
            out[key.replace(".base_layer.", ".")] = value.to("cpu", copy=True)
    return out


def save_model(model: Any, folder: Path, state: dict[str, Any] | None = None) -> None:
    """``folder/model``: a complete HF folder (safetensors); LoRA runs add ``folder/adapter``."""
    if is_lora(model):
        model.save_pretrained(folder / ADAPTER, safe_serialization=True)
        base = model.get_base_model()
        base.save_pretrained(
            folder / "model", state_dict=state or merged_state_dict(model), safe_serialization=True
        )
    else:
        model.save_pretrained(folder / "model", state_dict=state, safe_serialization=True)
