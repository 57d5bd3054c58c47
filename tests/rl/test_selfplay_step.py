"""One full self-play step with a scripted policy that writes well-formed
tasks and answers, so every phase does real work: validation in the sandbox,
learnability rollouts, buffer growth, solving, TRR++ and an update."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

from azr.buffer import TaskBuffer
from azr.config import load_config
from azr.rl.selfplay import SelfPlay, seeding_seed, step_seed
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
        self.seen: list[tuple[str, int]] = []

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
        self.seen += [(prompt, params.n) for prompt in prompts]
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


def _factors(text: str) -> set[int]:
    """The k of every ``return x * k`` program a text shows."""
    return {int(k) for k in re.findall(r"return x \* (\d+)\b", text)}


def test_seeding_then_a_full_step_with_valid_tasks(tiny_model_dir: Path, sandbox: Sandbox) -> None:
    config = load_config(
        None, ["selfplay.batch_size=3", "selfplay.learnability_rollouts=2", "model.dtype=float32"]
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trainer = TorchTrainer(model, lr=1e-4, micro_batch_size=8, pad_token_id=tokenizer.pad_token_id)
    buffer = TaskBuffer()
    synced = []
    policy = ScriptedPolicy(tokenizer)
    play = SelfPlay(config, sandbox, buffer, policy, trainer, tokenizer, lambda: synced.append(1))

    # Seeding: deduction and abduction grow from the zero triplet; induction tasks
    # are proposed on the seed programs (all at step 0).
    seeded = play.seed(target=3, max_rounds=1, seed=3)
    assert seeded["seed/rounds"] == 1.0
    assert buffer.count("deduction") == 4 and buffer.count("abduction") == 4  # the zero triplet and 3
    assert seeded["seed/induction/size"] == buffer.count("induction") >= 1
    seed_programs = {r["program"] for t in ("deduction", "abduction") for r in buffer.recent(t, 0)}
    assert all(r["program"] in seed_programs for r in buffer.recent("induction", 0))
    seed_factors = _factors("\n".join(seed_programs))
    policy.induction_calls.clear()
    policy.seen.clear()
    before = [p.detach().clone() for p in model.parameters()]

    m = play.step(1, seed=7)

    for t in ("deduction", "abduction", "induction"):
        assert m[f"propose/{t}/valid_rate"] == 1.0, t
        assert m[f"propose/{t}/format_rate"] == 1.0, t
        assert m[f"solve/{t}/format_rate"] == 1.0, t
        assert 0.0 <= m[f"solve/{t}/accuracy"] <= 1.0
    # Three new tasks entered each of the deduction and abduction buffers at step 1.
    assert buffer.count("deduction") == 7 and buffer.count("abduction") == 7
    new_factors = _factors("\n".join(r["program"] for r in buffer.recent("deduction", 1)))
    assert len(new_factors) == 3 and not new_factors & seed_factors
    assert all(r["inputs"] == [str(i) for i in range(10)] for r in buffer.recent("induction", 1))
    # The solver batches (n = 1) were drawn before the step added anything: they pose
    # the seeds, never this step's tasks, which only the learnability rollouts (n = 2) see.
    solved = [p for p, n in policy.seen if n == 1 and "Work out what this Python function returns" in p]
    learn = [p for p, n in policy.seen if n == 2 and "Work out what this Python function returns" in p]
    assert len(solved) == 3 and len(learn) == 3
    assert all(_factors(p) <= seed_factors | {0} for p in solved)
    assert _factors("\n".join(learn)) == new_factors
    assert m["sandbox/executions"] > 0 and m["timing/sandbox"] > 0
    assert synced == [1], "weights synced once after the update"
    # Each phase generates induction first, so its checks (the largest) overlap the others' generation.
    assert policy.induction_calls == [True, False, False] * 3
    assert any(not p.equal(b) for p, b in zip(model.parameters(), before, strict=True)), (
        "the update changed the model"
    )


class LongOutputs(ScriptedPolicy):
    """Proposes programs whose outputs are about 4,000 characters long."""

    def respond(self, prompt: str) -> str:
        if "Design a new code-reasoning puzzle" in prompt:
            k = next(self.counter)
            body = f"```python\ndef f(x):\n    return 'ab' * 2000 + str(x * {k})\n```\n```input\n{k}\n```"
            return f"thinking</think>\n<answer>\n{body}\n</answer>"
        return super().respond(prompt)


def test_no_prompt_exceeds_the_prompt_limit(tiny_model_dir: Path, sandbox: Sandbox) -> None:
    """SPEC §5: prompts up to rollout.max_prompt_tokens. Long references are left
    out, tasks whose solver prompt cannot fit are not posed (nor admitted)."""
    limit = 1200
    config = load_config(
        None,
        [
            "selfplay.batch_size=3",
            "selfplay.learnability_rollouts=2",
            "model.dtype=float32",
            f"rollout.max_prompt_tokens={limit}",
        ],
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trainer = TorchTrainer(model, lr=1e-4, micro_batch_size=8, pad_token_id=tokenizer.pad_token_id)
    buffer = TaskBuffer()
    long = {"program": "def f(x):\n    return 'ab' * 2000", "input": "0", "output": repr("ab" * 2000)}
    for t in (TaskType.DEDUCTION, TaskType.ABDUCTION):
        buffer.add(t, ZERO_TRIPLET.to_record(), 0)
        buffer.add(t, long, 0)
    policy = LongOutputs(tokenizer)
    play = SelfPlay(config, sandbox, buffer, policy, trainer, tokenizer, lambda: None)

    m = play.step(1, seed=7)

    sizes = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p, _ in policy.seen]
    assert max(sizes) <= limit, max(sizes)
    # The long triplet fits a deduction solver prompt (program and input) but not an
    # abduction one (it shows the output).
    shown = [p for p, _ in policy.seen if "'ab' * 2000\n" in p]
    assert any("Work out what this Python function returns" in p for p in shown)
    assert not any("Find an input" in p for p in shown)
    assert m["propose/deduction/valid_rate"] == 1.0
    assert m["propose/abduction/valid_rate"] == 0.0  # valid programs, but unposable as abduction tasks
    assert buffer.count("abduction") == 2 and buffer.count("deduction") == 5


class Garbage(ScriptedPolicy):
    """Never writes a valid task; records the per-prompt seeds of every generate call."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.seeds: list[range] = []

    def respond(self, prompt: str) -> str:
        return "no answer tags at all"

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        assert params.seed is not None
        self.seeds.append(range(params.seed, params.seed + len(prompts) * params.n))
        return super().generate(prompts, params)


def test_no_two_batches_share_a_prompt_seed(tiny_model_dir: Path, sandbox: Sandbox) -> None:
    """Engines seed prompt i of a call with seed + i·n. While nothing valid comes
    back every seeding round shows the same prompts, and a step's batches of
    different task types can pose the same task, so calls whose seed ranges
    overlapped would repeat each other's samples."""
    config = load_config(None, ["selfplay.batch_size=4", "model.dtype=float32"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trainer = TorchTrainer(model, lr=1e-4, micro_batch_size=8, pad_token_id=tokenizer.pad_token_id)
    policy = Garbage(tokenizer)
    play = SelfPlay(config, sandbox, TaskBuffer(), policy, trainer, tokenizer, lambda: None)

    seeded = play.seed(target=3, max_rounds=3, seed=5)
    play.step(1, seed=6)

    assert seeded["seed/rounds"] == 3.0
    assert len(policy.seeds) >= 3 * 3 + 3  # deduction, abduction, induction a round; proposers and solvers
    for a, b in itertools.combinations(policy.seeds, 2):
        assert not set(a) & set(b), (a, b)


def test_the_prompt_limit_counts_tokens_not_characters(tiny_model_dir: Path, sandbox: Sandbox) -> None:
    # Byte-level BPE spends up to four tokens on one character (an emoji here).
    config = load_config(None, ["rollout.max_prompt_tokens=100", "model.dtype=float32"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trainer = TorchTrainer(model, lr=1e-4, micro_batch_size=8, pad_token_id=tokenizer.pad_token_id)
    play = SelfPlay(
        config, sandbox, TaskBuffer(), ScriptedPolicy(tokenizer), trainer, tokenizer, lambda: None
    )
    wide = "\N{GRINNING FACE}" * 40
    assert len(wide) < 100 < len(tokenizer(wide, add_special_tokens=False)["input_ids"])
    assert not play._fits(wide)
    assert play._fits("x" * 90) and not play._fits("x " * 101)


def test_seeding_rounds_never_draw_with_a_training_steps_seed() -> None:
    """Seeding and training draw from (run seed, round) and (run seed, step); the
    two families must not meet, or step 1's proposers would resample round 0's
    (as they did with run seed 0, where round r's seed was step r + 1's)."""
    for run_seed in (0, 1, 7):
        steps = {step_seed(run_seed, step) for step in range(0, 500)}
        rounds = [seeding_seed(run_seed, r) for r in range(100)]
        assert len(set(rounds)) == len(rounds)
        assert not steps & set(rounds), run_seed
        assert rounds == [seeding_seed(run_seed, r) for r in range(100)]  # a function of its arguments
