"""Rollouts with vLLM's offline engine (``pip install 'azr[gpu]'``).

Greedy or sampled generation with prefix caching, the sampled tokens'
log-probabilities, and in-process weight loading for a colocated trainer
(sleep mode frees the KV cache while the trainer updates).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from azr.config import ConfigError
from azr.rollout.base import Completion, SamplingParams

#: The vLLM releases this backend is written against (APIs: ``collective_rpc``, sleep mode, V1 outputs).
VLLM_RANGE = ((0, 10), (0, 34))


def check_version(version: str) -> None:
    """A clear error when the installed vLLM is outside the supported range."""
    try:
        parts = tuple(int(p) for p in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a development build: trust it
    low, high = VLLM_RANGE
    if not (low <= parts < high):
        raise ConfigError(
            f"vLLM {version} is outside the range azr supports "
            f"(>={low[0]}.{low[1]},<{high[0]}.{high[1]}); install one with: pip install 'azr[gpu]'"
        )


def _load_weights(worker: Any, weights: list[tuple[str, Any]]) -> None:
    """Runs on each vLLM worker: the model's own loader maps HF names onto fused layers."""
    worker.model_runner.model.load_weights(weights=weights)


class VLLMRollout:
    """A ``RolloutEngine`` over ``vllm.LLM``.

    Args:
        model: a folder or hub id (what ``azr.models.resolve`` returns).
        dtype: ``bfloat16`` or ``float32``.
        tensor_parallel_size: GPUs per engine.
        gpu_memory_utilization: the share of GPU memory vLLM may take.
        sleep: enable sleep mode, so ``sleep()``/``wake()`` free memory around updates.
        max_model_len: prompt plus response tokens (None: the model's own limit).
    """

    def __init__(
        self,
        model: str,
        dtype: str = "bfloat16",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        sleep: bool = False,
        max_model_len: int | None = None,
        seed: int = 0,
        revision: str | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise ConfigError("rollout.backend=vllm needs vLLM: pip install 'azr[gpu]'") from exc
        check_version(vllm.__version__)
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            enable_sleep_mode=sleep,
            max_model_len=max_model_len,
            seed=seed,
            revision=revision,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.asleep = False

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        sp = self._vllm.SamplingParams(
            n=params.n,
            temperature=max(params.temperature, 0.0),
            top_p=params.top_p if params.temperature > 0 else 1.0,
            max_tokens=params.max_tokens,
            seed=params.seed,
            logprobs=0,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(list(prompts), sp, use_tqdm=False)
        result = []
        for out in outputs:
            prompt_ids = list(out.prompt_token_ids or [])
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = [float(step[t].logprob) for t, step in zip(ids, c.logprobs or [], strict=False)]
                group.append(Completion(prompt_ids, ids, c.text, lps, c.finish_reason == "stop"))
            result.append(group)
        return result

    def load_weights(self, state_dict: dict[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Load the trainer's weights into the engine (colocated: same process, same GPUs)."""
        items = list(state_dict.items()) if isinstance(state_dict, dict) else list(state_dict)
        self.llm.collective_rpc(_load_weights, args=(items,))
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def sleep(self) -> None:
        if not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
