"""The policy loss of TRR++ (SPEC §5): PPO's clipped surrogate, aggregated as a
mean over every response token of the batch, minus an entropy bonus, with an
optional KL penalty against a reference policy (off by default).

With one on-policy pass per batch the ratio is exactly 1 and the clip never
acts; it matters only when more passes over the same rollouts are configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossTerms:
    loss: torch.Tensor
    policy: torch.Tensor
    entropy: torch.Tensor
    kl: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1 (0 when there are none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each ``tokens[b, t]`` under ``logits[b, t]`` (already shifted)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution, ``[B, T]``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


#: Vocabulary entries (positions x vocabulary) whose fp32 log-softmax ``token_stats``
#: holds at once: 256 MB per fp32 temporary, about 440 positions of a 150k vocabulary.
STATS_ELEMENTS = 1 << 26


def _stats(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return chosen, -(logp.exp() * logp).sum(-1)


def _chosen(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = token_logprobs(logits, tokens)
    return chosen, torch.zeros_like(chosen)


def token_stats(
    logits: torch.Tensor, tokens: torch.Tensor, chunk: int | None = None, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_logprobs`` and ``token_entropy`` of ``logits[..., V]`` in fp32, in bounded memory.

    Done at once, each position's fp32 log-softmax, its exponential and their
    product are kept for the backward pass: about 16 bytes per vocabulary entry
    per position, tens of GB for a micro-batch of long responses over a 150k
    vocabulary. Here positions go ``chunk`` at a time (default: as many as fit
    ``STATS_ELEMENTS``), and under autograd each
    chunk is recomputed in the backward pass (activation checkpointing), so
    only the logits themselves stay alive. Values and gradients are the same.
    ``entropy=False`` skips the entropies (zeros are returned), for a frozen
    reference whose log-probabilities alone are needed.
    """
    shape = tokens.shape
    chunk = chunk or max(1, STATS_ELEMENTS // logits.shape[-1])
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_tokens = tokens.reshape(-1)
    stats = _stats if entropy else _chosen
    if flat_tokens.numel() <= chunk:
        chosen, entropies = stats(flat_logits, flat_tokens)
        return chosen.view(shape), entropies.view(shape)
    from torch.utils.checkpoint import checkpoint

    recompute = torch.is_grad_enabled() and logits.requires_grad
    parts = []
    for start in range(0, flat_tokens.numel(), chunk):
        args = (flat_logits[start : start + chunk], flat_tokens[start : start + chunk])
        parts.append(checkpoint(stats, *args, use_reentrant=False) if recompute else stats(*args))
    chosen = torch.cat([c for c, _ in parts])
    entropies = torch.cat([e for _, e in parts])
    return chosen.view(shape), entropies.view(shape)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.001,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> LossTerms:
    """The TRR++ loss over a batch of ``[B, T]`` response tokens.

    ``loss = mean_tokens(max(−A·ρ, −A·clip(ρ, 1±ε))) − c_H · mean_tokens(H) + c_KL · mean_tokens(KL)``
    with ``ρ = exp(logπ − logπ_old)`` and the k3 estimator
    ``KL = exp(ref − logπ) − (ref − logπ) − 1`` when a reference is given
    (log-ratio clamped to ±20, each token's KL to at most 10).
    """
    if advantages.ndim == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    policy = masked_mean(torch.maximum(unclipped, clipped), mask)
    zero = policy.new_zeros(())
    ent = masked_mean(entropy, mask) if entropy is not None else zero
    kl = zero
    if ref_logprobs is not None and kl_coef:
        # Padding columns are zeroed before exp (an overflow there would make the
        # masked mean inf·0 = NaN), and, as veRL's low_var_kl does, the log-ratio
        # is clamped to ±20 and each token's estimate to 10, so one token the
        # policy has all but ruled out cannot dominate the batch.
        delta = torch.where(mask.bool(), ref_logprobs - logprobs, 0.0).clamp(-20.0, 20.0)
        kl = masked_mean((torch.exp(delta) - delta - 1.0).clamp(max=10.0), mask)
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_eps).to(ratio.dtype), mask)
        approx_kl = masked_mean(0.5 * (logprobs - old_logprobs) ** 2, mask)
    loss = policy - entropy_coef * ent + kl_coef * kl
    return LossTerms(loss, policy, ent, kl, clip_fraction, approx_kl)
