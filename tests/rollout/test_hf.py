"""The transformers rollout engine on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

import torch
from azr.rollout import SamplingParams
from azr.rollout.hf import HFRollout
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> HFRollout:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return HFRollout(model, AutoTokenizer.from_pretrained(tiny_model_dir), batch_size=3)


PROMPTS = ["def f(a):\n    return a", "User: hi\nAssistant: <think>", "x"]


def test_n_samples_per_prompt_with_aligned_logprobs(engine: HFRollout) -> None:
    out = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=12, seed=1))
    assert [len(group) for group in out] == [2, 2, 2]
    for prompt, group in zip(PROMPTS, out, strict=True):
        for c in group:
            assert c.prompt_ids == engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            assert 1 <= len(c.token_ids) <= 12 and len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0.0 for lp in c.logprobs)
            assert c.finished == (c.token_ids[-1] == engine.tokenizer.eos_token_id)


def test_seeded_sampling_repeats(engine: HFRollout) -> None:
    a = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=8, seed=5))
    b = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=8, seed=5))
    assert [[c.token_ids for c in g] for g in a] == [[c.token_ids for c in g] for g in b]


def test_greedy_is_independent_of_batching(engine: HFRollout) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=6)
    batched = engine.generate(PROMPTS, greedy)
    alone = [engine.generate([p], greedy)[0] for p in PROMPTS]
    assert [g[0].token_ids for g in batched] == [g[0].token_ids for g in alone]


def test_logprobs_match_a_forward_pass(engine: HFRollout) -> None:
    [[c]] = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=6, seed=2))
    ids = torch.tensor([c.prompt_ids + c.token_ids])
    with torch.no_grad():
        logits = engine.model(input_ids=ids).logits[0, len(c.prompt_ids) - 1 : -1]
    expected = (
        torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
    )
    assert torch.allclose(torch.tensor(c.logprobs), expected, atol=1e-4)


def test_special_tokens_are_added_once(tiny_model_dir: Path) -> None:
    """A tokenizer that adds a BOS (Llama-style) gets it on a plain prompt, and not a
    second one on a prompt whose text already starts with it (a chat template's)."""
    from azr.rollout.base import prompt_ids
    from tokenizers.processors import TemplateProcessing

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    bos = tokenizer.eos_token  # the tiny vocabulary's one special token, standing in
    tokenizer.bos_token = bos
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))]
    )
    bos_id = tokenizer.convert_tokens_to_ids(bos)
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    assert prompt_ids(tokenizer, "x") == [bos_id, *plain]
    assert prompt_ids(tokenizer, f"{bos}x") == [bos_id, *plain]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    out = HFRollout(model, tokenizer).generate(["x", f"{bos}x"], SamplingParams(max_tokens=2, seed=0))
    assert [g[0].prompt_ids for g in out] == [[bos_id, *plain]] * 2


def test_stop_tokens_end_a_completion(engine: HFRollout) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=6, logprobs=False)
    [[free]] = engine.generate(PROMPTS[:1], greedy)
    first = free.token_ids[0]
    assert first != engine.tokenizer.eos_token_id  # else this test would prove nothing
    stopped = SamplingParams(temperature=0.0, max_tokens=6, logprobs=False, stop_token_ids=(first,))
    [[short]] = engine.generate(PROMPTS[:1], stopped)
    assert short.token_ids == [first] and short.finished
