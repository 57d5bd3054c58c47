"""A plain torch trainer: AdamW, micro-batches with gradient accumulation,
gradient-norm clipping, fp32 or bf16, on the CPU or one GPU. The loss is
TRR++'s token-mean over the *whole* batch (see ``azr.train.batching``), so
splitting a batch into micro-batches never changes the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from azr.train.base import Sample
from azr.train.batching import accumulate, micro_batches, report
from azr.train.weights import save_model


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
        micro_batch_tokens: int = 0,
        clip_eps: float = 0.2,
        entropy_coef: float = 0.001,
        pad_token_id: int = 0,
        gradient_checkpointing: bool = False,
    ) -> None:
        self.model = model
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=lr, betas=betas, weight_decay=weight_decay)
        self.grad_clip = grad_clip
        self.micro_batch_size = micro_batch_size
        self.micro_batch_tokens = micro_batch_tokens
        self.clip_eps = clip_eps
        self.entropy_coef = entropy_coef
        self.pad_token_id = pad_token_id

    def step(self, samples: Sequence[Sample]) -> dict[str, float]:
        samples = [s for s in samples if s.response_ids]
        if not samples:
            return {"train/skipped": 1.0}
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total_tokens = sum(len(s.response_ids) for s in samples)
        batches = micro_batches(samples, self.micro_batch_size, self.micro_batch_tokens)
        sums = accumulate(
            self.model,
            [(b, 1.0) for b in batches],
            total_tokens,
            lambda loss, last: loss.backward(),
            clip_eps=self.clip_eps,
            entropy_coef=self.entropy_coef,
            pad_token_id=self.pad_token_id,
        )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, self.grad_clip)
        self.optimizer.step()
        self.model.eval()
        return report(sums, float(grad_norm), total_tokens)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.model.state_dict())

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self.model, folder)
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")

    def load_optimizer(self, folder: Path) -> None:
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(folder / "model" / "model.safetensors"))
        self.model.load_state_dict(state, strict=False)
        self.load_optimizer(folder)
