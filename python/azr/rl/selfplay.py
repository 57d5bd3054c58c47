"""The Absolute Zero self-play step, top to bottom.

One model plays both roles on three task types (deduction, abduction,
induction). A step:

1. **Propose.** For each task type, B proposer prompts: deduction and
   abduction show K reference triplets drawn uniformly from their buffer;
   induction shows one program drawn from deduction ∪ abduction.
2. **Validate.** Every proposal goes through the sandbox's checks (SPEC §3)
   in parallel batches; the sandbox computes every gold output. Each task
   type's batch is checked on a sandbox lane while the model generates the
   next type's, here and in steps 3 and 4, so executor time hides behind
   generation; induction, the largest check, goes first.
3. **Learnability.** Each valid proposal is solved n times by the current
   policy (not trained on); its solve rate ``acc`` gives the proposer reward
   ``1 − acc`` (or ``unlearnable_reward`` when acc is 0 or 1); invalid or badly
   formatted proposals get −1. Valid tasks enter their buffer.
4. **Solve.** For each task type, a "max_new" batch of B tasks, drawn from
   the buffers at the start of the step (the last step's new tasks first,
   filled uniformly from the whole lane), is answered and graded in the
   sandbox: +1 correct, −0.5 wrong, −1 badly formatted.
5. **TRR++.** Rewards are normalized within each of the six (task, role)
   groups: ``A = (R − mean) / (std + ε)``, mean and std over the group's
   response tokens (or its sequences). The reward sits on the last token with
   γ = 1, so every token of a response shares its advantage.
6. **Update.** One optimizer step on all 6·B responses: PPO's clipped
   surrogate with token-mean aggregation, minus 0.001 × entropy, no KL. With
   one on-policy pass the ratio is 1 and the clip never acts.
7. **Sync.** The rollout engine takes the new weights.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from azr.buffer import TaskBuffer
from azr.config import Config
from azr.rl.advantages import group_normalize
from azr.rollout import Completion, RolloutEngine, SamplingParams
from azr.rollout.base import prompt_ids
from azr.sandbox import Sandbox
from azr.tasks import prompts
from azr.tasks.rewards import proposer_reward
from azr.tasks.types import ZERO_TRIPLET, InductionTask, Proposal, Role, TaskType, Triplet
from azr.tasks.validation import (
    Graded,
    Rules,
    as_induction,
    as_triplet,
    grade,
    parse_proposal,
    validate_proposals,
)
from azr.train import Sample, Trainer

R = TypeVar("R")

PROPOSE_TYPES = (TaskType.DEDUCTION, TaskType.ABDUCTION)
#: The order a phase generates the task types in. Induction's checks are the
#: largest (two executions per input of every proposal), so they run while the
#: other two types generate; only the last type's checks are left exposed.
SCHEDULE = (TaskType.INDUCTION, TaskType.DEDUCTION, TaskType.ABDUCTION)
#: Seeds of two batches of one step lie this far apart. Engines seed prompt j
#: of a batch with ``seed + j`` (times n), so batches seeded ``seed + i`` would
#: share seeds and repeat each other's samples on equal prompts.
SEED_STRIDE = 1_000_003
#: Reasons that come from running a proposal (so it reached the sandbox).
SANDBOX_KINDS = {
    "syntax",
    "banned_import",
    "runtime",
    "timeout",
    "memory",
    "nondeterministic",
    "unrepresentable_output",
    "output_too_large",
    "invalid_request",
}


@dataclass
class Scored:
    """A generated response with its reward, ready for TRR++."""

    task: TaskType
    role: Role
    completion: Completion
    reward: float


class SelfPlay:
    """Runs seeding and steps; owns nothing it does not need to."""

    def __init__(
        self,
        config: Config,
        sandbox: Sandbox,
        buffer: TaskBuffer,
        rollout: RolloutEngine,
        trainer: Trainer,
        tokenizer: Any,
        sync: Callable[[], None],
    ) -> None:
        self.config = config
        self.sandbox = sandbox
        self.buffer = buffer
        self.rollout = rollout
        self.trainer = trainer
        self.tokenizer = tokenizer
        self._specials = len(prompt_ids(tokenizer, ""))  # what the tokenizer adds to any text
        self.sync = sync
        sp = config.selfplay
        self.rules = Rules(
            sp.single_function, sp.induction_inputs, sp.induction_visible, config.model.template
        )
        self.timings: dict[str, float] = {}
        self.sandbox_jobs = 0

    # ------------------------------------------------------------ helpers

    def _render(self, task: TaskType, role: Role, **parts: Any) -> str:
        sp = self.config.selfplay
        text = prompts.instruction(
            task, role, n_inputs=sp.induction_inputs, single_function=sp.single_function, **parts
        )
        return prompts.render(text, self.config.model.template, self.tokenizer)

    def _params(self, n: int, seed: int) -> SamplingParams:
        r = self.config.rollout
        return SamplingParams(
            n=n,
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_response_tokens,
            seed=seed,
            # Sampling-time log-probs serve only as pi_old for a second pass over the batch.
            logprobs=False,  # π_old comes from the trainer's own first pass
        )

    def _timed(self, phase: str, start: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start

    def _fits(self, prompt: str) -> bool:
        """Whether a rendered prompt is within ``rollout.max_prompt_tokens`` (SPEC §5:
        6144) as the engines tokenize it: engines never see a longer one, so none is cut."""
        limit = self.config.rollout.max_prompt_tokens
        # Without tokenizing: a token of text covers at least one UTF-8 byte (byte-level
        # BPE; SentencePiece may add a lone word-start piece), plus the special tokens.
        if len(prompt.encode()) + 1 + self._specials <= limit:
            return True
        return len(prompt_ids(self.tokenizer, prompt)) <= limit

    def _references(self, task: TaskType, seed: int) -> list[Triplet]:
        refs = [
            Triplet.from_record(r) for r in self.buffer.sample(task, self.config.selfplay.references, seed)
        ]
        return refs or [ZERO_TRIPLET]

    def _induction_programs(self, count: int, seed: int) -> list[str]:
        drawn = [r["program"] for _, r in self.buffer.sample_union(list(PROPOSE_TYPES), count, seed)]
        drawn = drawn or [ZERO_TRIPLET.program]
        return [drawn[i % len(drawn)] for i in range(count)]

    def _proposer_prompt(self, task: TaskType, refs: list[Triplet]) -> str:
        """A deduction or abduction proposer prompt whose references fit the prompt
        limit: the longest are left out until it does (the zero triplet at least)."""
        while True:
            prompt = self._render(task, Role.PROPOSE, references=refs)
            if self._fits(prompt) or refs == [ZERO_TRIPLET]:
                return prompt
            refs = sorted(refs, key=lambda t: len(t.program) + len(t.input) + len(t.output))[:-1]
            refs = refs or [ZERO_TRIPLET]

    def _proposer_prompts(self, task: TaskType, count: int, seed: int) -> tuple[list[str], list[str | None]]:
        """Prompts, and for induction the program each one shows (a program too
        long for the prompt limit gives way to the zero triplet's)."""
        if task is TaskType.INDUCTION:
            programs: list[str | None] = []
            rendered = []
            for program in self._induction_programs(count, seed):
                prompt = self._render(task, Role.PROPOSE, program=program)
                if not self._fits(prompt):
                    program = ZERO_TRIPLET.program
                    prompt = self._render(task, Role.PROPOSE, program=program)
                programs.append(program)
                rendered.append(prompt)
            return rendered, programs
        rendered = [
            self._proposer_prompt(task, self._references(task, seed * 1000 + i)) for i in range(count)
        ]
        return rendered, [None] * count

    def _solver_prompt(self, task: TaskType, record: dict[str, Any]) -> tuple[str, Graded]:
        if task is TaskType.INDUCTION:
            ind = InductionTask.from_record(record)
            return self._render(task, Role.SOLVE, induction=ind), Graded(task, "", induction=ind)
        t = Triplet.from_record(record)
        return self._render(task, Role.SOLVE, triplet=t), Graded(task, "", triplet=t)

    def _task_record(self, p: Proposal) -> dict[str, Any]:
        if p.task is TaskType.INDUCTION:
            return as_induction(p, self.rules).to_record()
        return as_triplet(p).to_record()

    def _pose(
        self, proposals: Sequence[Proposal]
    ) -> list[tuple[Proposal, tuple[dict[str, Any], tuple[str, Graded]]]]:
        """The valid proposals with their task records and solver prompts. A task
        whose solver prompt exceeds ``rollout.max_prompt_tokens`` cannot be learned
        from: its proposal becomes invalid (``too_long``) and is left out."""
        out = []
        for p in proposals:
            if not p.valid:
                continue
            record = self._task_record(p)
            pair = self._solver_prompt(p.task, record)
            if self._fits(pair[0]):
                out.append((p, (record, pair)))
            else:
                p.valid = False
                p.reason = "too_long: its solver prompt exceeds rollout.max_prompt_tokens"
        return out

    def _pipelined(
        self,
        batches: Sequence[Sequence[str]],
        n: int,
        seed: int,
        work: Callable[[int, list[list[Completion]]], R],
    ) -> list[R]:
        """Generate ``batches`` (one per task type, in ``TaskType`` order) one
        after another, in ``SCHEDULE`` order, while a sandbox lane runs ``work``
        on each finished one, so executor time hides behind generation (the
        sandbox releases the GIL). Results come back in ``TaskType`` order;
        batch ``i`` samples with ``seed + i * SEED_STRIDE`` whatever its turn."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="azr-sandbox-lane") as lane:
            pending: dict[int, Future[R]] = {}
            for i in (list(TaskType).index(t) for t in SCHEDULE):
                start = time.perf_counter()
                prompts_i = list(batches[i])
                params = self._params(n, seed + i * SEED_STRIDE)
                outs = self.rollout.generate(prompts_i, params) if prompts_i else []
                self._timed("generate", start)
                pending[i] = lane.submit(self._lane_work, work, i, outs)
            start = time.perf_counter()
            results = [pending[i].result() for i in range(len(batches))]
            # The part of the sandbox's time that generation did not hide.
            self._timed("sandbox_wait", start)
            return results

    def _lane_work(
        self, work: Callable[[int, list[list[Completion]]], R], i: int, outs: list[list[Completion]]
    ) -> R:
        start = time.perf_counter()
        try:
            return work(i, outs)
        finally:
            self._timed("sandbox", start)

    def _grade(self, items: Sequence[Graded]) -> list[Any]:
        results = grade(self.sandbox, items, self.rules)
        # Responses that failed the format check never reached the sandbox.
        self.sandbox_jobs += sum(r.answer is not None for r in results)
        return results

    # ------------------------------------------------------------ seeding

    def seed(self, target: int, max_rounds: int, seed: int) -> dict[str, float]:
        """Fill the buffers with the untrained policy (no updates) until each holds
        ``target`` tasks or ``max_rounds`` rounds pass. Deduction and abduction
        grow from the zero triplet (which always enters), their references drawn
        from the growing seed set; induction tasks are proposed on programs drawn
        from those seeds, as in a step."""
        for task in PROPOSE_TYPES:
            self.buffer.add(task, ZERO_TRIPLET.to_record(), 0)
        rounds = 0

        def short(tasks: Sequence[TaskType]) -> list[TaskType]:
            return [t for t in tasks if self.buffer.count(t) < target]

        while rounds < max_rounds and short(list(TaskType)):
            # Deduction and abduction first, so induction can draw this round's programs.
            for group in (short(PROPOSE_TYPES), short([TaskType.INDUCTION])):
                if not group:
                    continue
                proposals: list[Proposal] = []
                # Each round's own seed: engines seed prompt i with seed + i, so
                # seed + rounds would give round r+1 round r's samples shifted by
                # one prompt, the same texts while the buffers are still empty.
                round_seed = seeding_seed(seed, rounds)
                for task in group:
                    b = self.config.selfplay.batch_size
                    rendered, programs = self._proposer_prompts(task, b, round_seed)
                    task_seed = round_seed + list(TaskType).index(task) * SEED_STRIDE
                    outs = self.rollout.generate(rendered, self._params(1, task_seed))
                    proposals += [
                        parse_proposal(task, g[0].text, self.rules, program)
                        for program, g in zip(programs, outs, strict=True)
                    ]
                validate_proposals(self.sandbox, proposals, self.rules)
                for p, (record, _) in self._pose(proposals):
                    self.buffer.add(p.task, record, 0)
            rounds += 1
        self.buffer.flush()
        return {f"seed/{t.value}/size": float(self.buffer.count(t)) for t in TaskType} | {
            "seed/rounds": float(rounds)
        }

    # ------------------------------------------------------------ the step

    def step(self, step: int, seed: int) -> dict[str, float]:
        self.timings = {}
        self.sandbox_jobs = 0
        sp = self.config.selfplay
        metrics: dict[str, float] = {}
        scored: list[Scored] = []

        # 1-2. Propose; each task type's proposals are validated in the sandbox
        # while the model generates the next type's. The solver batches are drawn
        # now too, before this step adds anything: the last step's tasks first.
        prompt_sets = [self._proposer_prompts(t, sp.batch_size, seed + i) for i, t in enumerate(TaskType)]
        solver_sets = [
            [
                pair
                for r in self.buffer.solver_batch(
                    t, sp.batch_size, since_step=max(step - 1, 0), seed=seed + 100 + i
                )
                if self._fits((pair := self._solver_prompt(t, r))[0])
            ]
            for i, t in enumerate(TaskType)
        ]

        def validate(i: int, outs: list[list[Completion]]) -> list[tuple[Proposal, Completion]]:
            task, programs = list(TaskType)[i], prompt_sets[i][1]
            made = [
                (parse_proposal(task, g[0].text, self.rules, prog), g[0])
                for prog, g in zip(programs, outs, strict=True)
            ]
            validate_proposals(self.sandbox, [p for p, _ in made], self.rules)
            return made

        proposals = [
            pc for made in self._pipelined([ps for ps, _ in prompt_sets], 1, seed, validate) for pc in made
        ]
        self.sandbox_jobs += sum(
            2 * (len(p.inputs or []) if p.task is TaskType.INDUCTION else 1)
            for p, _ in proposals
            if p.valid or (p.reason or "").split(":")[0] in SANDBOX_KINDS
        )

        # 3. Learnability: n solver rollouts of each valid proposal, graded
        # per task type while the next type generates.
        posable = self._pose([p for p, _ in proposals])
        posed = {id(p): pose for p, pose in posable}
        valid = [p for p, _ in posable]
        by_type = [[p for p in valid if p.task is t] for t in TaskType]
        pairs_by_type = [[posed[id(p)][1] for p in group] for group in by_type]

        def solve_rates(i: int, outs: list[list[Completion]]) -> list[float]:
            items = [
                Graded(g.task, c.text, g.triplet, g.induction)
                for (_, g), group in zip(pairs_by_type[i], outs, strict=True)
                for c in group
            ]
            results = self._grade(items)
            n = sp.learnability_rollouts
            return [
                sum(r.correct for r in results[k * n : (k + 1) * n]) / n for k in range(len(pairs_by_type[i]))
            ]

        rates_by_type = self._pipelined(
            [[prompt for prompt, _ in pairs] for pairs in pairs_by_type],
            sp.learnability_rollouts,
            seed + len(TaskType) * SEED_STRIDE,
            solve_rates,
        )
        solve_rate = {
            id(p): r
            for group, rates in zip(by_type, rates_by_type, strict=True)
            for p, r in zip(group, rates, strict=True)
        }
        for p, completion in proposals:
            rate = solve_rate.get(id(p))
            if p.valid and rate is not None and self._admit(rate):
                self.buffer.add(p.task, posed[id(p)][0], step)
            reward = proposer_reward(p.format_ok, p.valid, rate, sp.unlearnable_reward)
            scored.append(Scored(p.task, Role.PROPOSE, completion, reward))
        for t in TaskType:
            mine = [(p, s) for (p, _), s in zip(proposals, scored, strict=True) if p.task is t]
            metrics[f"propose/{t.value}/valid_rate"] = sum(p.valid for p, _ in mine) / max(len(mine), 1)
            metrics[f"propose/{t.value}/format_rate"] = sum(p.format_ok for p, _ in mine) / max(len(mine), 1)
            metrics[f"propose/{t.value}/reward"] = sum(s.reward for _, s in mine) / max(len(mine), 1)
        rates = list(solve_rate.values())
        metrics["propose/learnability_mean"] = sum(1 - r for r in rates) / len(rates) if rates else 0.0

        # 4. Solve the max_new batches drawn at the start, each graded in the
        # sandbox while the next task type generates.

        def grade_answers(i: int, outs: list[list[Completion]]) -> list[tuple[Graded, Completion, Any]]:
            graded = [
                Graded(g.task, group[0].text, g.triplet, g.induction)
                for (_, g), group in zip(solver_sets[i], outs, strict=True)
            ]
            results = self._grade(graded)
            return [(g, group[0], r) for g, group, r in zip(graded, outs, results, strict=True)]

        answered_by_type = self._pipelined(
            [[p for p, _ in items] for items in solver_sets],
            1,
            seed + 2 * len(TaskType) * SEED_STRIDE,
            grade_answers,
        )
        for t, answered in zip(TaskType, answered_by_type, strict=True):
            for g, completion, r in answered:
                scored.append(Scored(g.task, Role.SOLVE, completion, r.reward))
            if answered:
                n = len(answered)
                metrics[f"solve/{t.value}/accuracy"] = sum(r.correct for _, _, r in answered) / n
                metrics[f"solve/{t.value}/format_rate"] = sum(r.format_ok for _, _, r in answered) / n
                metrics[f"solve/{t.value}/reward"] = sum(r.reward for _, _, r in answered) / n

        # 5-6. TRR++ advantages over the six groups, then one update.
        start = time.perf_counter()
        import torch

        rewards = torch.tensor([s.reward for s in scored])
        lengths = torch.tensor([max(len(s.completion.token_ids), 1) for s in scored])
        advantages = group_normalize(
            rewards, [(s.task, s.role) for s in scored], lengths, sp.advantage_weighting
        )
        samples = [
            Sample(s.completion.prompt_ids, s.completion.token_ids, float(a))
            for s, a in zip(scored, advantages.tolist(), strict=True)
        ]
        metrics |= self.trainer.step(samples, sp.ppo_epochs)
        self._timed("update", start)

        # 7. Sync the new weights into the rollout engine.
        start = time.perf_counter()
        self.sync()
        self._timed("sync", start)

        self.buffer.flush()
        metrics |= {f"buffer/{t.value}/size": float(self.buffer.count(t)) for t in TaskType}
        metrics["tokens/response_mean"] = float(lengths.float().mean())
        metrics["tokens/response_total"] = float(lengths.sum())
        metrics |= {f"timing/{k}": v for k, v in self.timings.items()}
        metrics["sandbox/executions"] = float(self.sandbox_jobs)
        if self.sandbox_jobs and self.timings.get("sandbox"):
            metrics["sandbox/executions_per_s"] = self.sandbox_jobs / self.timings["sandbox"]
        return metrics

    def _admit(self, solve_rate: float) -> bool:
        rule = self.config.selfplay.buffer_filter
        if rule == "non_trivial":
            return solve_rate < 1.0
        if rule == "non_extreme":
            return 0.0 < solve_rate < 1.0
        return True


def step_seed(run_seed: int, step: int) -> int:
    """The seed of every draw in a step: a function of the run seed and the step
    only, so a resumed run draws exactly what the uninterrupted one would."""
    return random.Random(run_seed * 1_000_003 + step).randrange(2**31)


def seeding_seed(run_seed: int, round_: int) -> int:
    """The seed of a seeding round's draws, apart from every step's: ``random``
    seeds with an integer's absolute value, so negative "steps" would repeat
    training steps' seeds (with run seed 0, round r drew as step r + 1 does)."""
    return random.Random(f"azr/seeding/{run_seed}/{round_}").randrange(2**31)
