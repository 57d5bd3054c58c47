"""What every trainer backend shares: splitting a batch into micro-batches and
the TRR++ loss of one micro-batch, scaled so that accumulating the
micro-batches (and averaging over data-parallel ranks) gives the gradient of
the token-mean loss over the *whole* batch.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from azr.rl.loss import policy_loss, token_stats
from azr.train.base import Sample

#: The loss terms a step reports, each a token-weighted mean over the batch,
#: and their metric names.
TERMS = {
    "loss": "train/loss",
    "policy": "train/policy_loss",
    "entropy": "train/entropy",
    "clip_fraction": "train/clip_fraction",
    "approx_kl": "train/approx_kl",
    "kl": "train/kl",
}


@dataclass(frozen=True)
class KLPenalty:
    """``coef`` × the k3 KL to a frozen reference policy (SPEC §5: none by default).

    ``reference`` is the initial model, frozen; None means the policy itself with
    its LoRA adapters switched off (a LoRA run's base weights never change).
    """

    coef: float
    reference: Any = None

    def logprobs(self, model: Any, batch: Sequence[Sample], pad_token_id: int) -> torch.Tensor:
        """The reference's log-probabilities of ``batch``'s response tokens."""
        with torch.no_grad():
            if self.reference is not None:
                return response_logprobs(self.reference, batch, pad_token_id, entropy=False)[0]
            with model.disable_adapter():  # a peft model (DeepSpeed's engine passes it through)
                return response_logprobs(model, batch, pad_token_id, entropy=False)[0]


def micro_batches(samples: Sequence[Sample], size: int, token_budget: int = 0) -> list[list[Sample]]:
    """Consecutive micro-batches of at most ``size`` samples, and, when
    ``token_budget`` is set, at most that many padded tokens each
    (``rows × longest sequence``); a sample longer than the budget goes alone."""
    out: list[list[Sample]] = []
    current: list[Sample] = []
    longest = 0
    for s in samples:
        length = len(s.prompt_ids) + len(s.response_ids)
        widest = max(longest, length)
        over = token_budget > 0 and current and widest * (len(current) + 1) > token_budget
        if current and (len(current) >= size or over):
            out.append(current)
            current, widest = [], length
        current.append(s)
        longest = widest
    if current:
        out.append(current)
    return out


def _keep_argument(model: Any) -> str | None:
    """The name under which ``model``'s forward takes how many final positions to
    compute logits for (transformers >= 4.50: ``logits_to_keep``; 4.45-4.49:
    ``num_logits_to_keep``), or None when it has neither."""
    inner = getattr(model, "module", model)  # a DeepSpeed engine
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # PEFT
    model_class: Any = type(base)
    return _keep_argument_of(model_class)


@functools.cache
def _keep_argument_of(model_class: Any) -> str | None:
    try:
        params = inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in params), None)


def response_logprobs(
    model: Any, batch: Sequence[Sample], pad_token_id: int, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the response tokens, ``[b, R]``, and their mask
    (``entropy=False``: zeros in place of the entropies, which are not computed).

    Sequences are left-padded so that every response ends in the last column,
    with position ids that skip the padding; row ``i``'s response tokens are its
    last ``len(response_ids)`` columns. The model computes logits only for the
    last ``R + 1`` positions (``R`` the longest response) when it can, never for
    the rest of the prompts: the output layer is a sizeable share of a forward
    pass over a 150k vocabulary, and its logits the largest tensor of the step.
    """
    device = next(model.parameters()).device
    seqs = [s.prompt_ids + s.response_ids for s in batch]
    width = max(len(s) for s in seqs)
    longest = max(len(s.response_ids) for s in batch)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = torch.tensor(seq)
        attention[row, width - len(seq) :] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = {}
    keep = _keep_argument(model)
    if keep is not None:
        kwargs[keep] = longest + 1
    out = model(
        input_ids=ids.to(device),
        attention_mask=attention.to(device),
        position_ids=positions.to(device),
        **kwargs,
    )
    # The logits at column c predict the token at c + 1: the last R targets need
    # the R columns before the last one.
    logits = out.logits[:, -(longest + 1) : -1]
    logprobs, entropies = token_stats(logits, ids[:, width - longest :].to(device), entropy=entropy)
    mask = torch.zeros_like(logprobs)
    for row, s in enumerate(batch):
        mask[row, longest - len(s.response_ids) :] = 1.0
    return logprobs, entropies, mask


def micro_batch_loss(
    model: Any,
    batch: Sequence[Sample],
    total_tokens: int,
    *,
    clip_eps: float,
    entropy_coef: float,
    pad_token_id: int,
    scale: float = 1.0,
    kl: KLPenalty | None = None,
    old: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """The loss to call ``backward`` on, this micro-batch's share of each
    reported term, and its response log-probs (detached, π_old for later passes).

    ``policy_loss`` means over the micro-batch's tokens; the result is rescaled
    by its share of ``total_tokens`` (the response tokens of the whole batch,
    on every rank) so accumulated gradients are the whole batch's token mean.
    ``scale`` undoes a data-parallel gradient average (the world size). ``old``
    is π_old's log-probs; None means the current policy's (a ratio of exactly 1).
    """
    logprobs, entropy, mask = response_logprobs(model, batch, pad_token_id)
    current = logprobs.detach()
    old = current if old is None else old
    advantages = torch.tensor([s.advantage for s in batch], dtype=logprobs.dtype, device=logprobs.device)
    ref = kl.logprobs(model, batch, pad_token_id) if kl is not None and kl.coef else None
    terms = policy_loss(
        logprobs,
        old,
        advantages,
        mask,
        clip_eps=clip_eps,
        entropy=entropy,
        entropy_coef=entropy_coef,
        ref_logprobs=ref,
        kl_coef=kl.coef if kl is not None else 0.0,
    )
    share = mask.sum().item() / total_tokens
    reported = {key: float(getattr(terms, key).item()) * share for key in TERMS}
    return terms.loss * (share * scale), reported, current


def accumulate(
    model: Any,
    passes: Sequence[tuple[Sequence[Sample], float]],
    total_tokens: int,
    backward: Callable[[torch.Tensor, bool], None],
    *,
    clip_eps: float,
    entropy_coef: float,
    pad_token_id: int,
    kl: KLPenalty | None = None,
    behaviour: dict[int, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Forward and ``backward(loss, last pass?)`` over ``passes`` (micro-batch,
    ``scale`` of ``micro_batch_loss``); the sum of each term over the passes
    with a non-zero scale (a zero-scale pass only keeps collectives in step).

    ``behaviour`` carries π_old between the epochs of one step: micro-batch i's
    log-probs from the first epoch, stored here then, used by the later ones."""
    sums = dict.fromkeys(TERMS, 0.0)
    for i, (batch, scale) in enumerate(passes):
        loss, terms, current = micro_batch_loss(
            model,
            batch,
            total_tokens,
            clip_eps=clip_eps,
            entropy_coef=entropy_coef,
            pad_token_id=pad_token_id,
            scale=scale,
            kl=kl,
            old=behaviour.get(i) if behaviour is not None else None,
        )
        if behaviour is not None:
            behaviour.setdefault(i, current)
        backward(loss, i == len(passes) - 1)
        if scale:
            for key in sums:
                sums[key] += terms[key]
    return sums


def report(sums: dict[str, float], grad_norm: float, total_tokens: int) -> dict[str, float]:
    """A step's metrics under the ``train/`` namespace."""
    return {
        **{name: sums[key] for key, name in TERMS.items()},
        "train/grad_norm": grad_norm,
        "train/response_tokens": float(total_tokens),
    }
