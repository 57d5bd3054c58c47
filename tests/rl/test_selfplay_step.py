"""One full self-play step with a scripted policy that writes well-formed
tasks and answers, so every phase does real work: validation in the sandbox,
learnability rollouts, buffer growth, solving, TRR++ and an update."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

from azr.buffer import TaskBuffer
from azr.config import load_config
from azr.rl.selfplay import SelfPlay
from azr.rollout import Completion, SamplingParams
from azr.sandbox import Sandbox
from azr.tasks.types import ZERO_TRIPLET, TaskType
from azr.train.torch_trainer import TorchTrainer
from transformers import AutoModelForCausalLM, AutoTokenizer


class ScriptedPolicy:
    """Answers each kind of prompt with a fixed, well-formed response."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.counter = itertools.count(1)
        self.induction_calls: list[bool] = []

    def respond(self, prompt: str) -> str:
        k = next(self.counter)
        if "Design a new code-reasoning puzzle" in prompt:
            body = f"```python\ndef f(x):\n    return x * {k}\n```\n```input\n{k % 3}\n```"
        elif "different inputs for `f`" in prompt:
            body = "\n".join(f"```input\n{i}\n```" for i in range(10)) + "\n```message\nscales its input\n```"
        elif "Work out what this Python function returns" in prompt:
            body = "```output\n0\n```"
        elif "Find an input" in prompt:
            body = "```input\n0\n```"
        else:  # the induction solver
            body = "```python\ndef f(x):\n    return x\n```"
        return f"thinking</think>\n<answer>\n{body}\n</answer>"

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        self.induction_calls.append(
            any(m in prompts[0] for m in ("different inputs for `f`", "Reconstruct a hidden"))
        )
        out = []
        for prompt in prompts:
            group = []
            for _ in range(params.n):
                text = self.respond(prompt)
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"][-32:]
                group.append(Completion(prompt_ids, ids, text, [0.0] * len(ids), True))
            out.append(group)
        return out

    def load_weights(self, state_dict: dict[str, Any]) -> None:
        pass


def test_a_full_step_with_valid_tasks(tiny_model_dir: Path, sandbox: Sandbox) -> None:
    config = load_config(
        None, ["selfplay.batch_size=3", "selfplay.learnability_rollouts=2", "model.dtype=float32"]
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trainer = TorchTrainer(model, lr=1e-4, micro_batch_size=8, pad_token_id=tokenizer.pad_token_id)
    buffer = TaskBuffer()
    for t in (TaskType.DEDUCTION, TaskType.ABDUCTION):
        buffer.add(t, ZERO_TRIPLET.to_record(), 0)
    synced = []
    policy = ScriptedPolicy(tokenizer)
    play = SelfPlay(config, sandbox, buffer, policy, trainer, tokenizer, lambda: synced.append(1))
    before = [p.detach().clone() for p in model.parameters()]

    m = play.step(1, seed=7)

    for t in ("deduction", "abduction", "induction"):
        assert m[f"propose/{t}/valid_rate"] == 1.0, t
        assert m[f"propose/{t}/format_rate"] == 1.0, t
        assert m[f"solve/{t}/format_rate"] == 1.0, t
        assert 0.0 <= m[f"solve/{t}/accuracy"] <= 1.0
    # Three new tasks each entered the deduction and abduction buffers (beside
    # the zero triplets). The three induction proposals all showed the only
    # program there was (the identity) and gave the same inputs: one task.
    assert (
        buffer.count("deduction") == 4 and buffer.count("abduction") == 4 and buffer.count("induction") == 1
    )
    assert buffer.stats()["induction"]["duplicates"] == 2
    assert all(r["inputs"] == [str(i) for i in range(10)] for r in buffer.recent("induction", 1))
    # Deduction answers "0": right exactly for the tasks whose input is 0.
    outputs = [r["output"] for r in buffer.recent("deduction", 1)]
    assert m["solve/deduction/accuracy"] == pytest.approx(sum(o == "0" for o in outputs) / len(outputs))
    # The scripted induction solver writes the identity, which is that task's program.
    assert m["solve/induction/accuracy"] == 1.0
    assert m["sandbox/executions"] > 0 and m["timing/sandbox"] > 0
    assert synced == [1], "weights synced once after the update"
    # Each phase generates induction first, so its checks (the largest) overlap the others' generation.
    assert policy.induction_calls == [True, False, False] * 3
    assert any(not p.equal(b) for p, b in zip(model.parameters(), before, strict=True)), (
        "the update changed the model"
    )
