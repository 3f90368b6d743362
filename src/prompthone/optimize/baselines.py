"""The baselines MIPRO is compared against: few-shot demos without any instruction search.

- `LabeledFewShot`: k labelled examples from the trainset as demos.
- `BootstrapFewShot`: demos bootstrapped from the program's own passing runs (teacher LM), filled
  up with labelled ones.
- `BootstrapRandomSearch`: several candidate demo sets (empty, labelled, bootstrapped, shuffled
  bootstraps of random size), each scored on the whole validation set; the best wins.

Each is an `Optimizer` of its own on the shared core: demos come from the shared proposers, every
score goes through `self.score` (the shared evaluator, score cache and budget), and the start is
scored first, so the result is never worse than the start on validation.
"""

from __future__ import annotations

import math
from typing import Any

from prompthone.evaluate import EvaluationError
from prompthone.optimize.base import OptimizationResult, OptimizationSetup, Optimizer
from prompthone.optimize.proposers import bootstrap_demos, demo_set_candidates, labeled_demos, with_labeled_fill
from prompthone.optimize.proposers.cost import cost, run_tokens
from prompthone.program import Candidate


def _check(name: str, value: int, minimum: int = 0) -> int:
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _task_cost(setup: OptimizationSetup, evaluations: int, n_demos: int) -> dict[str, float]:
    p, c, calls = run_tokens(setup, n_demos)
    runs = evaluations * len(setup.valset)
    return cost(runs * calls, runs * p, runs * c)


def _teacher_cost(setup: OptimizationSetup, teacher_labeled: int) -> dict[str, float]:
    p, c, calls = run_tokens(setup, teacher_labeled)
    runs = max(0, len(setup.trainset) - teacher_labeled)
    return cost(runs * calls, runs * p, runs * c)


class LabeledFewShot(Optimizer):
    """Up to `k` labelled training examples as demos of every module whose fields they hold (a seeded
    sample). Modules without labelled fields (a query writer) keep their demos."""

    name = "labeled-fewshot"

    def __init__(self, k: int = 16) -> None:
        self.k = _check("k", k, 1)

    def candidate(self, setup: OptimizationSetup) -> Candidate:
        rng = setup.rng("labeled-fewshot")
        cand = setup.start
        for m, demos in labeled_demos(setup.program, setup.trainset).items():
            if demos:
                cand = cand.with_module(m, cand[m].with_demos(rng.sample(list(demos), min(self.k, len(demos)))))
        return cand

    async def _optimize(self, setup: OptimizationSetup) -> OptimizationResult:
        await self.score(setup, setup.start, setup.valset, full=True, phase="start")
        cand = self.candidate(setup)
        if cand != setup.start:
            await self.score(setup, cand, setup.valset, full=True, phase="labeled")
        return self._result(setup)

    def estimate(self, setup: OptimizationSetup) -> dict[str, dict[str, float]]:
        return {"task": _task_cost(setup, 2, self.k), "proposer": cost(0, 0, 0), "teacher": cost(0, 0, 0)}


class BootstrapFewShot(Optimizer):
    """Demos from passing teacher runs (`max_bootstrapped_demos` per module), filled up with labelled
    ones to `max_labeled_demos` more. The teacher is shown `teacher_labeled` labelled demos so that a
    program that never passes zero-shot still yields traces."""

    name = "bootstrap-fewshot"

    def __init__(
        self,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        teacher_labeled: int = 4,
        metric_threshold: float = 1.0,
    ) -> None:
        self.max_bootstrapped_demos = _check("max_bootstrapped_demos", max_bootstrapped_demos, 1)
        self.max_labeled_demos = _check("max_labeled_demos", max_labeled_demos)
        self.teacher_labeled = _check("teacher_labeled", teacher_labeled)
        self.metric_threshold = float(metric_threshold)

    async def _optimize(self, setup: OptimizationSetup) -> OptimizationResult:
        await self.score(setup, setup.start, setup.valset, full=True, phase="start")
        boot = await bootstrap_demos(
            setup,
            max_traces=self.max_bootstrapped_demos,
            threshold=self.metric_threshold,
            teacher_labeled=self.teacher_labeled,
        )
        labeled = labeled_demos(setup.program, setup.trainset)
        rng = setup.rng("bootstrap-fewshot")
        cand = setup.start
        for m, module in setup.program.named_modules().items():
            chosen = list(boot.demos.get(m, ()))[: self.max_bootstrapped_demos]
            demos = with_labeled_fill(
                chosen, labeled.get(m, ()), self.max_labeled_demos, module.signature.input_names, rng
            )
            if demos:
                cand = cand.with_module(m, cand[m].with_demos(demos))
        if cand != setup.start:
            await self.score(setup, cand, setup.valset, full=True, phase="bootstrapped")
        return self._result(setup, bootstrap={"tried": boot.tried, "passed": boot.passed, "errors": boot.errors})

    def estimate(self, setup: OptimizationSetup) -> dict[str, dict[str, float]]:
        n = self.max_bootstrapped_demos + self.max_labeled_demos
        return {
            "task": _task_cost(setup, 2, n),
            "proposer": cost(0, 0, 0),
            "teacher": _teacher_cost(setup, self.teacher_labeled),
        }


class BootstrapRandomSearch(Optimizer):
    """`num_candidate_sets` demo configurations (set i of every module: the start's demos, none,
    labelled only, bootstrapped, then shuffled bootstraps of random size), each scored on the whole
    validation set in order; the best fully-scored one is the result. With `cover_labels` (default),
    a module whose output is a small label set gets sets showing distinct labels before repeats."""

    name = "bootstrap-random-search"

    def __init__(
        self,
        num_candidate_sets: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        teacher_labeled: int = 4,
        metric_threshold: float = 1.0,
        cover_labels: bool = True,
    ) -> None:
        self.num_candidate_sets = _check("num_candidate_sets", num_candidate_sets, 1)
        if not isinstance(cover_labels, bool):
            raise ValueError(f"{self.name}: cover_labels must be true or false, got {cover_labels!r}")
        self.cover_labels = cover_labels
        self.max_bootstrapped_demos = _check("max_bootstrapped_demos", max_bootstrapped_demos, 1)
        self.max_labeled_demos = _check("max_labeled_demos", max_labeled_demos)
        self.teacher_labeled = _check("teacher_labeled", teacher_labeled)
        self.metric_threshold = float(metric_threshold)

    def _n_sets(self) -> int:
        return self.num_candidate_sets + 1  # set 0 is the start's demos, already scored

    async def _optimize(self, setup: OptimizationSetup) -> OptimizationResult:
        await self.score(setup, setup.start, setup.valset, full=True, phase="start")
        boot = await bootstrap_demos(
            setup,
            max_traces=self.max_bootstrapped_demos * self.num_candidate_sets,
            threshold=self.metric_threshold,
            teacher_labeled=self.teacher_labeled,
        )
        sets = demo_set_candidates(
            setup.program,
            start=setup.start,
            bootstrapped=boot.demos,
            labeled=labeled_demos(setup.program, setup.trainset),
            n_sets=self._n_sets(),
            max_bootstrapped=self.max_bootstrapped_demos,
            max_labeled=self.max_labeled_demos,
            rng=setup.rng("bootstrap-random-search"),
            cover_labels=self.cover_labels,
        )
        seen = {setup.start}
        failed: list[dict[str, Any]] = []
        for i in range(1, max(len(v) for v in sets.values())):
            cand = setup.start
            for m, options in sets.items():
                if i < len(options):
                    cand = cand.with_module(m, cand[m].with_demos(options[i]))
            if cand in seen:
                continue
            seen.add(cand)
            try:
                await self.score(setup, cand, setup.valset, full=True, phase="demo_set", demo_set=i)
            except EvaluationError as exc:  # a set whose scoring errors is skipped, never scored as 0
                failed.append({"demo_set": i, "error": str(exc)[:500]})
                setup.emit("trial_failed", demo_set=i, error=str(exc)[:500], candidate=cand.hash)
        info: dict[str, Any] = {
            "bootstrap": {"tried": boot.tried, "passed": boot.passed, "errors": boot.errors},
            "failed_sets": failed,
        }
        return self._result(setup, **info)

    def estimate(self, setup: OptimizationSetup) -> dict[str, dict[str, float]]:
        n = self.max_bootstrapped_demos + self.max_labeled_demos
        return {
            "task": _task_cost(setup, 1 + self.num_candidate_sets, math.ceil(n / 2)),
            "proposer": cost(0, 0, 0),
            "teacher": _teacher_cost(setup, self.teacher_labeled),
        }


__all__ = ["BootstrapFewShot", "BootstrapRandomSearch", "LabeledFewShot"]
