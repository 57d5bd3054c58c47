"""Learning check: on a narrow, easy task family the solver's reward must rise.

This exercises the solver half of the self-play step with the real parts
(the ``r1`` deduction solver prompt, transformers generation, parsing, the
sandbox's deduction check, SPEC's solver rewards, TRR++ normalization and the
torch trainer's clipped policy-gradient update) on the tiny model, so a wrong
sign or a broken piece of plumbing shows as a flat or falling curve.

The families (``--family``): ``constant``, ``def f(x): return 7`` on one-digit
inputs, and ``identity``, ``def f(x): return x``, whose answer is the digit in
the prompt. The tiny model starts from random weights and cannot emit
the ``<think>…</think><answer>…</answer>`` form by chance, so a short
supervised warm-up first teaches the *form only*, with random digits as
answers (it learns nothing about which digit is right: accuracy starts at
chance, 1/10). Reinforcement alone must then find the right digit. Measured
on the 2-core reference machine (``--steps 100 --lr 5e-4``, seed 0): on
``constant`` accuracy went from 0.27 (mean of steps 1-10) to 0.93 (steps
91-100), reward from -0.15 to +0.87 (benches/results/learning_check_constant.*).
``identity`` needs the 2-layer model to learn copying from the prompt through
the policy gradient alone; it stayed at chance in 150 steps, so it is a
harder target kept for larger models.

``python benches/learning_check.py [--steps 80] [--out DIR]`` writes
``curve.json`` and ``curve.png`` (mean solver reward, accuracy and format rate
per step) into ``--out`` and prints the first and last ten-step means.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from azr.models import build_tiny
from azr.rl.advantages import group_normalize
from azr.rollout.base import SamplingParams
from azr.rollout.hf import HFRollout
from azr.sandbox import Sandbox
from azr.tasks import prompts
from azr.tasks.parsing import ParseError, solver_answer, split_response
from azr.tasks.rewards import solver_reward
from azr.tasks.types import TaskType, Triplet
from azr.train.base import Sample
from azr.train.torch_trainer import TorchTrainer
from transformers import AutoModelForCausalLM, AutoTokenizer

FAMILIES = {
    # f ignores its argument: the right answer is always 7.
    "constant": ("def f(x):\n    return 7", lambda d: 7),
    # f returns its argument: the right answer is the digit in the prompt.
    "identity": ("def f(x):\n    return x", lambda d: d),
}
FAMILY = "constant"
DIGITS = 10
"""Inputs (and the warm-up's random answers) are 0..DIGITS-1."""


def task(rng: random.Random) -> Triplet:
    program, fn = FAMILIES[FAMILY]
    d = rng.randrange(DIGITS)
    return Triplet(program, str(d), str(fn(d)))


def response(answer: str) -> str:
    """A well-formed response (the r1 prompt already opened ``<think>``)."""
    return f" f returns its argument.</think>\n<answer>\n```output\n{answer}\n```\n</answer>"


def warm_up(model: torch.nn.Module, tok: AutoTokenizer, steps: int, rng: random.Random) -> None:
    """Teach the form with random answers: cross-entropy on response tokens only."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = []
        for _ in range(16):
            t = task(rng)
            p = tok(prompts.render(prompts.deduction_solver(t), "r1"), add_special_tokens=False)["input_ids"]
            r = tok(response(str(rng.randrange(DIGITS))), add_special_tokens=False)["input_ids"] + [
                tok.eos_token_id
            ]
            batch.append((p, r))
        width = max(len(p) + len(r) for p, r in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (p, r) in enumerate(batch):
            seq = p + r
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(p) : len(seq)] = torch.tensor(r)
            mask[i, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=120)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="constant")
    ap.add_argument("--digits", type=int, default=10, help="inputs 0..N-1 (chance accuracy 1/N)")
    ap.add_argument("--out", type=Path, default=Path("runs/learning-check"))
    args = ap.parse_args()
    global DIGITS, FAMILY
    DIGITS, FAMILY = args.digits, args.family
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    folder = build_tiny(Path(tempfile.mkdtemp()) / "tiny", seed=args.seed)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    start = time.perf_counter()
    warm_up(model, tok, args.warmup, rng)
    print(f"warm-up (form only, random answers): {time.perf_counter() - start:.0f} s")
    rollout = HFRollout(model, tok, batch_size=args.batch)
    trainer = TorchTrainer(model, lr=args.lr, micro_batch_size=args.batch, pad_token_id=tok.pad_token_id)
    sandbox = Sandbox(timeout_s=2.0)
    curve = []
    for step in range(1, args.steps + 1):
        tasks = [task(rng) for _ in range(args.batch)]
        texts = [prompts.render(prompts.deduction_solver(t), "r1") for t in tasks]
        outs = rollout.generate(texts, SamplingParams(n=1, temperature=1.0, max_tokens=40, seed=step))
        completions = [o[0] for o in outs]
        answers: list[str | None] = []
        for c in completions:
            try:
                answers.append(solver_answer(TaskType.DEDUCTION, split_response(c.text, "r1").answer))
            except ParseError:
                answers.append(None)
        checked = sandbox.check_deduction_batch(
            [(t.output, a) for t, a in zip(tasks, answers, strict=True) if a]
        )
        verdicts = iter(checked)
        correct = [bool(next(verdicts).correct) if a else False for a in answers]
        rewards = torch.tensor(
            [solver_reward(a is not None, ok) for a, ok in zip(answers, correct, strict=True)]
        )
        lengths = torch.tensor([max(len(c.token_ids), 1) for c in completions])
        adv = group_normalize(rewards, [(TaskType.DEDUCTION, "solve")] * len(tasks), lengths)
        samples = [
            Sample(c.prompt_ids, c.token_ids, float(a))
            for c, a in zip(completions, adv.tolist(), strict=True)
        ]
        trainer.step(samples)
        point = {
            "step": step,
            "reward": float(rewards.mean()),
            "accuracy": sum(correct) / len(correct),
            "format_rate": sum(a is not None for a in answers) / len(answers),
        }
        curve.append(point)
        if step % 10 == 0:
            print(
                f"step {step:3d}  reward {point['reward']:+.3f}  accuracy {point['accuracy']:.2f}  "
                f"format {point['format_rate']:.2f}  ({time.perf_counter() - start:.0f} s)"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(curve, indent=1))
    first, last = curve[:10], curve[-10:]

    def mean(points: list[dict[str, float]], key: str) -> float:
        return sum(p[key] for p in points) / len(points)

    summary = {k: (mean(first, k), mean(last, k)) for k in ("reward", "accuracy", "format_rate")}
    print(
        "first 10 steps → last 10 steps: "
        + ", ".join(f"{k} {a:.3f} → {b:.3f}" for k, (a, b) in summary.items())
    )
    (args.out / "summary.json").write_text(json.dumps(summary))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for key in ("reward", "accuracy", "format_rate"):
            ax.plot([p["step"] for p in curve], [p[key] for p in curve], label=key)
        ax.set_xlabel("step")
        ax.set_title(f"learning check: tiny model, {FAMILY} family, x in 0..{DIGITS - 1}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "curve.png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
