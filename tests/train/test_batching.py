"""Micro-batching by count and by padded-token budget."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs the training stack: pip install 'azr[train]'")

from azr.train import Sample
from azr.train.batching import micro_batches


def _s(prompt: int, response: int) -> Sample:
    return Sample([1] * prompt, [2] * response, 0.0)


def test_count_limit_alone_keeps_order() -> None:
    samples = [_s(1, k + 1) for k in range(7)]
    batches = micro_batches(samples, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [s for b in batches for s in b] == samples


def test_token_budget_caps_rows_times_longest() -> None:
    samples = [_s(2, 2), _s(2, 2), _s(2, 10), _s(2, 2), _s(2, 2)]  # lengths 4, 4, 12, 4, 4
    batches = micro_batches(samples, 100, token_budget=16)
    for b in batches:
        assert len(b) == 1 or len(b) * max(len(s.prompt_ids) + len(s.response_ids) for s in b) <= 16
    assert [len(b) for b in batches] == [2, 1, 2]
    assert [s for b in batches for s in b] == samples


def test_a_sample_longer_than_the_budget_goes_alone() -> None:
    batches = micro_batches([_s(1, 1), _s(50, 50), _s(1, 1)], 8, token_budget=10)
    assert [len(b) for b in batches] == [1, 1, 1]


def test_batched_logprobs_equal_each_sequence_alone(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    # Left padding and the response-only logits window must give every row what the
    # model gives that sequence alone, unpadded, with full logits. (Position ids
    # skip the padding too, but rotary embeddings see only relative positions, so
    # this Qwen2 model cannot tell.)
    import torch
    from azr.rl.loss import token_entropy, token_logprobs
    from azr.train.batching import response_logprobs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    batch = [
        Sample([5, 6, 7, 8, 9, 10, 11], [12, 13], 1.0),
        Sample([5], [30, 31, 32, 33, 34, 35], -1.0),
        Sample([7, 8, 9], [40], 0.5),
    ]
    with torch.no_grad():
        logprobs, entropy, mask = response_logprobs(model, batch, pad_token_id=0)
        assert mask.shape == (3, 6) and mask.sum().item() == 9
        for row, s in enumerate(batch):
            ids = torch.tensor([s.prompt_ids + s.response_ids])
            logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1]
            n = len(s.response_ids)
            want_lp = token_logprobs(logits, torch.tensor(s.response_ids))
            assert torch.allclose(logprobs[row, -n:], want_lp, atol=1e-5), row
            assert torch.allclose(entropy[row, -n:], token_entropy(logits), atol=1e-5), row
            assert mask[row, -n:].eq(1).all() and mask[row, :-n].eq(0).all()
