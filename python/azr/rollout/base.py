"""The rollout interface every engine implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    """Samples per prompt."""
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    max_tokens: int = 8096
    seed: int | None = None
    logprobs: bool = True
    """Report each generated token's log-prob (costs a log-softmax per token; the
    loop asks only when it reuses rollouts for several passes)."""
    stop_token_ids: tuple[int, ...] = ()
    """Tokens that end a completion besides the tokenizer's end-of-sequence token
    (kept as its last token), such as a chat template's end-of-turn token."""


@dataclass(frozen=True)
class Completion:
    prompt_ids: list[int]
    token_ids: list[int]
    """Generated tokens, the end-of-sequence token included when one was produced."""
    text: str
    """The generated text without special tokens."""
    logprobs: list[float]
    """Log-probability of each generated token under the model (raw logits: before
    temperature and top-p), the quantity the trainer's ratio compares against;
    empty when the sampling parameters did not ask for them."""
    finished: bool
    """Whether generation stopped at end-of-sequence (not at the length limit)."""


class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each prompt, in order."""
        ...

    def load_weights(self, state_dict: dict[str, Any]) -> None:
        """Take the trainer's latest weights."""
        ...


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """A prompt's token ids as every engine feeds them to the model: with the
    tokenizer's special tokens (a BOS for Llama-style tokenizers, nothing for
    Qwen's), except when the text already begins with the BOS, as a chat
    template renders it, which would otherwise start with two."""
    bos = getattr(tokenizer, "bos_token", None)
    add = not (isinstance(bos, str) and bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=add)["input_ids"])
