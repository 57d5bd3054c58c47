"""Rollout engines: generate n samples per prompt, with token ids, text and log-probs.

The loop talks only to :class:`RolloutEngine`; ``hf`` (transformers, CPU or
GPU) lives here and vLLM slots in beside it.
"""

from azr.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams"]
