"""A plain torch trainer: AdamW, micro-batches with gradient accumulation,
gradient-norm clipping, fp32 or bf16. The loss is TRR++'s token-mean over the
*whole* batch: each micro-batch's token sum is divided by the batch's total
response tokens, so splitting a batch into micro-batches never changes the
gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from azr.rl.loss import policy_loss, token_entropy
from azr.train.base import Sample


class TorchTrainer:
    def __init__(
        self,
        model: Any,
        *,
        lr: float = 1e-6,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        grad_clip: float = 1.0,
        micro_batch_size: int = 4,
        clip_eps: float = 0.2,
        entropy_coef: float = 0.001,
        pad_token_id: int = 0,
    ) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
        self.grad_clip = grad_clip
        self.micro_batch_size = micro_batch_size
        self.clip_eps = clip_eps
        self.entropy_coef = entropy_coef
        self.pad_token_id = pad_token_id

    def _forward(self, batch: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs and entropies of the response tokens, ``[b, T]``, and their mask."""
        device = next(self.model.parameters()).device
        seqs = [s.prompt_ids + s.response_ids for s in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            attention[row, : len(seq)] = 1
        logits = self.model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits[:, :-1]
        targets = ids[:, 1:].to(device)
        logp_all = torch.log_softmax(logits.float(), dim=-1)
        logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = token_entropy(logits)
        mask = torch.zeros_like(logprobs)
        for row, s in enumerate(batch):
            start = len(s.prompt_ids) - 1
            mask[row, start : start + len(s.response_ids)] = 1.0
        return logprobs, entropy, mask

    def step(self, samples: Sequence[Sample]) -> dict[str, float]:
        samples = [s for s in samples if s.response_ids]
        if not samples:
            return {"train/skipped": 1.0}
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total_tokens = sum(len(s.response_ids) for s in samples)
        sums = {"policy": 0.0, "entropy": 0.0, "clip_fraction": 0.0, "loss": 0.0}
        for start in range(0, len(samples), self.micro_batch_size):
            batch = samples[start : start + self.micro_batch_size]
            logprobs, entropy, mask = self._forward(batch)
            old = torch.zeros_like(logprobs)
            for row, s in enumerate(batch):
                begin = len(s.prompt_ids) - 1
                n = len(s.response_ids)
                if s.old_logprobs is None:
                    old[row, begin : begin + n] = logprobs[row, begin : begin + n].detach()
                else:
                    old[row, begin : begin + n] = torch.tensor(s.old_logprobs, dtype=old.dtype)
            advantages = torch.tensor(
                [s.advantage for s in batch], dtype=logprobs.dtype, device=logprobs.device
            )
            terms = policy_loss(
                logprobs,
                old,
                advantages,
                mask,
                clip_eps=self.clip_eps,
                entropy=entropy,
                entropy_coef=self.entropy_coef,
            )
            # policy_loss means over this micro-batch's tokens; rescale so the
            # accumulated gradient is the mean over the whole batch's tokens.
            share = mask.sum().item() / total_tokens
            (terms.loss * share).backward()
            for key in sums:
                sums[key] += getattr(terms, key).item() * share
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.model.eval()
        return {
            "train/loss": sums["loss"],
            "train/policy_loss": sums["policy"],
            "train/entropy": sums["entropy"],
            "train/clip_fraction": sums["clip_fraction"],
            "train/grad_norm": float(grad_norm),
            "train/response_tokens": float(total_tokens),
        }

    def state_dict(self) -> dict[str, Any]:
        return dict(self.model.state_dict())

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder / "model", safe_serialization=True)
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(folder / "model" / "model.safetensors"))
        self.model.load_state_dict(state, strict=False)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
