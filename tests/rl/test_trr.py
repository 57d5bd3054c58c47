"""TRR++ advantages and loss against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="TRR++ needs torch: pip install 'azr[train]'")

from azr.rl.advantages import expand_to_tokens, group_normalize  # noqa: E402
from azr.rl.loss import masked_mean, policy_loss, token_entropy, token_logprobs  # noqa: E402


def test_sequence_weighting_by_hand() -> None:
    # Group a: rewards 1, -1 (mean 0, unbiased std sqrt(2)); group b: 0.5 alone -> 0.
    adv = group_normalize(
        torch.tensor([1.0, -1.0, 0.5]), ["a", "a", "b"], torch.tensor([3, 1, 4]), "sequence"
    )
    s = math.sqrt(2)
    assert adv.tolist() == pytest.approx([1 / (s + 1e-6), -1 / (s + 1e-6), 0.0])


def test_token_weighting_by_hand() -> None:
    # Tokens: reward 1 x3 tokens, reward -1 x1 token -> mean 0.5;
    # unbiased var over 4 tokens = (3*0.25 + 2.25)/3 = 1.0 -> std 1.
    adv = group_normalize(torch.tensor([1.0, -1.0]), ["g", "g"], torch.tensor([3, 1]), "token")
    assert adv.tolist() == pytest.approx([0.5 / (1 + 1e-6), -1.5 / (1 + 1e-6)])


def test_groups_are_normalized_separately() -> None:
    rewards = torch.tensor([1.0, 0.0, 100.0, 50.0])
    adv = group_normalize(rewards, ["x", "x", "y", "y"], torch.ones(4), "sequence")
    # Same shape within each group whatever its scale (up to the epsilon).
    a = adv.tolist()
    assert a[0] == pytest.approx(a[2], rel=1e-4) and a[1] == pytest.approx(a[3], rel=1e-4)


def test_bad_shapes_and_modes_raise() -> None:
    with pytest.raises(ValueError):
        group_normalize(torch.zeros(2), ["a"], torch.ones(2))
    with pytest.raises(ValueError):
        group_normalize(torch.zeros(2), ["a", "a"], torch.ones(2), "bogus")  # type: ignore[arg-type]


def test_policy_loss_by_hand() -> None:
    logp = torch.tensor([[math.log(0.5), math.log(0.25)], [math.log(0.8), 0.0]])
    old = torch.tensor([[math.log(0.25), math.log(0.25)], [math.log(0.8), 0.0]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    ent = torch.tensor([[0.3, 0.6], [0.9, 5.0]])
    terms = policy_loss(logp, old, adv, mask, clip_eps=0.2, entropy=ent, entropy_coef=0.1)
    # Token 1: ratio 2 clipped to 1.2 with A=1 -> max(-2, -1.2) = -1.2
    # Token 2: ratio 1, A=1 -> -1;  token 3: ratio 1, A=-2 -> 2;  token 4 masked out.
    assert terms.policy.item() == pytest.approx((-1.2 - 1.0 + 2.0) / 3)
    assert terms.entropy.item() == pytest.approx((0.3 + 0.6 + 0.9) / 3)
    assert terms.loss.item() == pytest.approx((-1.2 - 1.0 + 2.0) / 3 - 0.1 * 0.6)
    assert terms.clip_fraction.item() == pytest.approx(1 / 3)


def test_on_policy_gradient_is_advantage_weighted() -> None:
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    terms = policy_loss(logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 2), entropy_coef=0.0)
    terms.loss.backward()
    assert logp.grad is not None
    assert logp.grad[0].tolist() == pytest.approx([-1.0, -1.0])  # -A / n_tokens per token


def test_kl_penalty_is_off_by_default_and_k3_when_on() -> None:
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    mask = torch.ones(1, 1)
    assert policy_loss(logp, logp, torch.zeros(1), mask, ref_logprobs=ref).kl.item() == 0.0
    terms = policy_loss(logp, logp, torch.zeros(1), mask, ref_logprobs=ref, kl_coef=1.0)
    assert terms.kl.item() == pytest.approx(0.5 - math.log(0.5) - 1)


def test_kl_penalty_ignores_padding_and_bounds_each_token() -> None:
    # A padding column whose log-ratio would overflow exp must not turn the loss into NaN.
    logp = torch.tensor([[math.log(0.5), -200.0]], requires_grad=True)
    ref = torch.tensor([[math.log(0.25), 0.0]])
    terms = policy_loss(
        logp, logp.detach(), torch.zeros(1), torch.tensor([[1.0, 0.0]]), ref_logprobs=ref, kl_coef=1.0
    )
    assert terms.kl.item() == pytest.approx(0.5 - math.log(0.5) - 1)
    terms.loss.backward()
    assert torch.isfinite(logp.grad).all()
    # A real token the policy has all but ruled out counts at most 10.
    both = torch.ones(1, 2)
    assert policy_loss(
        logp, logp.detach(), torch.zeros(1), both, ref_logprobs=ref, kl_coef=1.0
    ).kl.item() == (pytest.approx((0.5 - math.log(0.5) - 1 + 10.0) / 2))


def test_helpers() -> None:
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    assert token_logprobs(logits, torch.tensor([[0, 0]]))[0].tolist() == pytest.approx(
        [math.log(0.5), math.log(0.75)]
    )
    assert token_entropy(logits)[0, 0].item() == pytest.approx(math.log(2))
    assert masked_mean(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() == 0.0
    assert expand_to_tokens(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]])).tolist() == [[2.0, 0.0]]


def test_token_stats_in_chunks_give_the_same_values_and_gradients() -> None:
    from azr.rl.loss import token_stats

    torch.manual_seed(0)
    base = torch.randn(3, 7, 50, dtype=torch.float64)
    tokens = torch.randint(0, 50, (3, 7))
    results = []
    for chunk in (10**6, 4):  # at once, and 4 positions at a time with recomputation
        logits = base.clone().requires_grad_(True)
        chosen, entropy = token_stats(logits, tokens, chunk=chunk)
        (chosen.sum() + 0.3 * entropy.sum()).backward()
        results.append((chosen.detach(), entropy.detach(), logits.grad))
    (c1, e1, g1), (c2, e2, g2) = results
    assert torch.equal(c1, c2) and torch.equal(e1, e2)
    assert torch.allclose(g1, g2) and g1.abs().max() > 0
    assert torch.allclose(c1, token_logprobs(base, tokens)) and torch.allclose(e1, token_entropy(base))
    for chunk in (10**6, 4):  # log-probs alone (a frozen reference): the same values
        chosen, skipped = token_stats(base, tokens, chunk=chunk, entropy=False)
        assert torch.equal(chosen, c1) and not skipped.any()
