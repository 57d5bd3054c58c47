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
