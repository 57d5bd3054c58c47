"""A plain torch trainer: AdamW, micro-batches with gradient accumulation,
gradient-norm clipping, fp32 or bf16, on the CPU or one GPU. The loss is
TRR++'s token-mean over the *whole* batch (see ``azr.train.batching``), so
splitting a batch into micro-batches never changes the gradient.

A bf16 model trains with fp32 master weights, as DeepSpeed's bf16 mode does:
AdamW's step is about ``lr`` per weight, and at the self-play learning rate
(1e-6) that is far below bf16's resolution for any weight over ~1e-4 (bf16
keeps 8 significant bits), so updating bf16 weights in place would round
almost every update away. The optimizer holds fp32 copies, gradients are
summed over micro-batches in fp32, and after each step the model takes the
rounded values; the model itself (generation, weight sync, checkpoints) stays
in its own dtype. Checkpoints carry the fp32 copies, so a resume loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from azr.train.base import Sample
from azr.train.batching import KLPenalty, accumulate, micro_batches, report
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
        kl: KLPenalty | None = None,
    ) -> None:
        self.model = model
        self.kl = kl
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.master: list[torch.Tensor] | None = None
        """fp32 copies of the trainable weights the optimizer updates, when they are not fp32."""
        if any(p.dtype != torch.float32 for _, p in self._named):
            self.master = [p.detach().float().clone() for _, p in self._named]
        self._params = self.master if self.master is not None else [p for _, p in self._named]
        """What the optimizer steps and the gradient norm is clipped over."""
        self.optimizer = torch.optim.AdamW(self._params, lr=lr, betas=betas, weight_decay=weight_decay)
        self.grad_clip = grad_clip
        self.micro_batch_size = micro_batch_size
        self.micro_batch_tokens = micro_batch_tokens
        self.clip_eps = clip_eps
        self.entropy_coef = entropy_coef
        self.pad_token_id = pad_token_id

    def step(self, samples: Sequence[Sample], epochs: int = 1) -> dict[str, float]:
        samples = [s for s in samples if s.response_ids]
        if not samples:
            return {"train/skipped": 1.0}
        self.model.train()
        total_tokens = sum(len(s.response_ids) for s in samples)
        batches = micro_batches(samples, self.micro_batch_size, self.micro_batch_tokens)
        behaviour: dict[int, torch.Tensor] = {}
        skipped = 0
        for _ in range(epochs):
            self.model.zero_grad(set_to_none=True)
            self.optimizer.zero_grad(set_to_none=True)
            sums = accumulate(
                self.model,
                [(b, 1.0) for b in batches],
                total_tokens,
                self._backward,
                clip_eps=self.clip_eps,
                entropy_coef=self.entropy_coef,
                pad_token_id=self.pad_token_id,
                kl=self.kl,
                behaviour=behaviour if epochs > 1 else None,
            )
            grad_norm = torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
            # One NaN or inf in a gradient would poison every weight and Adam's moments
            # for good: such a step is skipped (and counted), never applied.
            if not torch.isfinite(grad_norm):
                skipped += 1
                continue
            self.optimizer.step()
            if self.master is not None:
                with torch.no_grad():
                    for master, (_, p) in zip(self.master, self._named, strict=True):
                        p.copy_(master)
        self.model.eval()
        return report(sums, float(grad_norm), total_tokens) | {"train/nonfinite_skipped": float(skipped)}

    def _backward(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward()
        if self.master is None:
            return
        # Sum the micro-batches' gradients in fp32, not in the model's dtype.
        for master, (_, p) in zip(self.master, self._named, strict=True):
            if p.grad is not None:
                grad = p.grad.float()
                master.grad = grad if master.grad is None else master.grad.add_(grad)
                p.grad = None

    def pending_state_bytes(self) -> int:
        """Bytes AdamW will still allocate at its first step: two moments per
        weight it updates (in those weights' dtype, fp32 where ``master`` is kept)."""
        if self.optimizer.state:
            return 0
        return sum(2 * p.numel() * p.element_size() for p in self._params)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.model.state_dict())

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self.model, folder)
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self.master is not None:
            state["master"] = {n: m.cpu() for (n, _), m in zip(self._named, self.master, strict=True)}
        torch.save(state, folder / "optimizer.pt")

    def load_optimizer(self, folder: Path) -> None:
        state = torch.load(folder / "optimizer.pt", weights_only=True)
        if "optimizer" not in state:  # written before master weights existed: the bare optimizer state
            state = {"optimizer": state}
        # Damage that kept the file's size loads without complaint and turns every
        # weight into NaN at the first update: refused here, where it can be blamed.
        for slot in state["optimizer"].get("state", {}).values():
            for key, value in slot.items():
                if (
                    torch.is_tensor(value)
                    and value.is_floating_point()
                    and not bool(torch.isfinite(value).all())
                ):
                    raise ValueError(f"optimizer.pt: non-finite values in the optimizer's {key!r}")
        self.optimizer.load_state_dict(state["optimizer"])
        saved = state.get("master")
        if self.master is not None and saved:
            with torch.no_grad():
                for (name, _), master in zip(self._named, self.master, strict=True):
                    if name in saved:
                        master.copy_(saved[name])

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(folder / "model" / "model.safetensors"))
        self.model.load_state_dict(state, strict=False)
        self.load_optimizer(folder)
