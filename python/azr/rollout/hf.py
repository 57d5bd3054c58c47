"""Rollouts with transformers' ``generate``: batched, left-padded, stopping at EOS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from azr.rollout.base import Completion, SamplingParams, prompt_ids


class HFRollout:
    """Generation on the model object the trainer updates, or on its own copy.

    Args:
        model: a causal LM (``transformers`` ``PreTrainedModel``).
        tokenizer: its tokenizer; padding is forced to the left.
        batch_size: sequences generated at once.
        max_prompt_tokens: longer prompts keep their last tokens.
    """

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 8, max_prompt_tokens: int = 6144
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens

    def load_weights(self, state_dict: dict[str, Any]) -> None:
        self.model.load_state_dict(state_dict)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        flat = [p for p in prompts for _ in range(params.n)]
        out: list[Completion] = []
        generator_seed = params.seed
        for start in range(0, len(flat), self.batch_size):
            if generator_seed is not None:
                torch.manual_seed(generator_seed + start)
            out.extend(self._batch(flat[start : start + self.batch_size], params))
        return [out[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def _batch(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        tok = self.tokenizer
        enc = tok.pad({"input_ids": [prompt_ids(tok, p) for p in prompts]}, return_tensors="pt")
        ids, mask = (
            enc["input_ids"][:, -self.max_prompt_tokens :],
            enc["attention_mask"][:, -self.max_prompt_tokens :],
        )
        device = next(self.model.parameters()).device
        greedy = params.temperature <= 0
        stops = [t for t in dict.fromkeys([tok.eos_token_id, *params.stop_token_ids]) if t is not None]
        result = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=None if greedy else params.top_p,
            top_k=None,
            max_new_tokens=params.max_tokens,
            eos_token_id=stops or None,
            pad_token_id=tok.pad_token_id,
            output_logits=params.logprobs,
            return_dict_in_generate=True,
        )
        new = result.sequences[:, ids.shape[1] :].cpu()
        logprobs = None
        if params.logprobs:
            # The policy's own log-probs (raw logits: no temperature or top-p), as vLLM
            # reports them and as the trainer computes them.
            logits = torch.stack(result.logits, dim=1).float().cpu()  # [B, new, vocab]
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        completions = []
        for row in range(new.shape[0]):
            tokens = new[row].tolist()
            length = len(tokens)
            finished = False
            ends = [i for i, t in enumerate(tokens) if t in stops]
            if ends:
                length = ends[0] + 1
                finished = True
            kept = tokens[:length]
            prompt = ids[row][mask[row].bool()].tolist()
            completions.append(
                Completion(
                    prompt_ids=prompt,
                    token_ids=kept,
                    text=tok.decode(kept, skip_special_tokens=True),
                    logprobs=logprobs[row, :length].tolist() if logprobs is not None else [],
                    finished=finished,
                )
            )
        return completions
