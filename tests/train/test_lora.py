"""LoRA training (trainer.lora_rank > 0): only adapters learn, checkpoints hold
the adapter and a merged HF folder that computes the same function."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("peft", reason="LoRA needs peft: pip install 'azr[train]'")

import torch
from azr.train import Sample
from azr.train.torch_trainer import TorchTrainer
from azr.train.weights import apply_lora, load_adapter, merged_state_dict
from transformers import AutoModelForCausalLM

SAMPLES = [Sample([5, 6, 7], [8, 9], 1.0), Sample([5, 6], [10, 11, 12], -1.0)]


def _lora_model(folder: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return apply_lora(base, 4, 16, 0.0, "all-linear")


def test_only_adapters_change(tiny_model_dir: Path) -> None:
    model = _lora_model(tiny_model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = TorchTrainer(model, lr=1e-2, weight_decay=0.0)
    for _ in range(2):
        trainer.step(SAMPLES)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "the update changed nothing"
    assert all("lora_" in k for k in changed), sorted(changed)[:3]


def test_checkpoint_merges_and_keeps_the_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _lora_model(tiny_model_dir)
    trainer = TorchTrainer(model, lr=1e-2, weight_decay=0.0)
    trainer.step(SAMPLES)
    trainer.save(tmp_path / "ckpt")
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        live = model(input_ids=ids).logits
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model", dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, live, atol=1e-4)
    # The adapter alone, on a fresh base, restores the same function.
    fresh = _lora_model(tiny_model_dir)
    load_adapter(fresh, tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.allclose(fresh(input_ids=ids).logits, live, atol=1e-5)
    # Merging for a checkpoint leaves the live model unmerged and unchanged.
    assert set(merged_state_dict(model)) == set(merged.state_dict())
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, live)


def test_a_checkpoint_without_adapter_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    from azr._core import ConfigError

    with pytest.raises(ConfigError, match="no LoRA adapter"):
        load_adapter(_lora_model(tiny_model_dir), tmp_path)


def test_saving_never_moves_the_frozen_base_weights_in_bf16(tiny_model_dir: Path) -> None:
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model = apply_lora(base, 4, 16, 0.0, "all-linear")
    with torch.no_grad():  # adapters as after some training (B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(10):  # ten checkpoints
        merged = merged_state_dict(model)
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert not moved, moved[:3]
    # The merged weight is W + scale·B@A, computed once in fp32.
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    scale = layer.scaling["default"]
    delta = scale * layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float()
    want = (layer.base_layer.weight.float() + delta).to(torch.bfloat16)
    assert torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], want)
    assert not torch.equal(want, layer.base_layer.weight), "the adapter changes the merged weight"
