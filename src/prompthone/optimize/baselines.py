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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prompthone.evaluate import EvaluationError
from prompthone.optimize.base import Estimate, OptimizationResult, OptimizationSetup, Optimizer, Run
from prompthone.optimize.format_search import check_search_formats, format_choices
from prompthone.optimize.proposers import bootstrap_demos, demo_set_candidates, labeled_demos, with_labeled_fill
from prompthone.optimize.proposers.cost import run_tokens
from prompthone.optimize.settings import MethodSettings
from prompthone.program import Candidate


@dataclass(frozen=True)
class LabeledFewShotSettings(MethodSettings):
    """`k`: labelled demos per module, at most."""

    method = "labeled-fewshot"

    k: int = 16

    def validate(self) -> None:
        self.at_least("k", 1)


@dataclass(frozen=True)
class BootstrapFewShotSettings(MethodSettings):
    """`max_bootstrapped_demos` from passing teacher runs per module, filled up with `max_labeled_demos`
    labelled ones; the teacher is shown `teacher_labeled` labelled demos; a trace passes at
    `metric_threshold`."""

    method = "bootstrap-fewshot"

    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 16
    teacher_labeled: int = 4
    metric_threshold: float = 1.0

    def validate(self) -> None:
        self.at_least("max_bootstrapped_demos", 1)
        self.at_least("max_labeled_demos", 0)
        self.at_least("teacher_labeled", 0)
        self.normalize("metric_threshold", float(self.metric_threshold))


@dataclass(frozen=True)
class BootstrapRandomSearchSettings(BootstrapFewShotSettings):
    """`num_candidate_sets` demo sets scored besides the start's; `cover_labels`: sets of a module whose
    output is a small label set show distinct labels before repeats; `search_formats` (False: keep each
    module's start format; True: any prompt format; a list: those; a mapping from a start format to
    one of these): each candidate draws a format per module."""

    method = "bootstrap-random-search"

    num_candidate_sets: int = 8
    cover_labels: bool = True
    #: bool, a list of format names or a mapping from a start format to either; typed Any so that
    #: `validate` gives the one message for every kind
    search_formats: Any = False

    def validate(self) -> None:
        self.at_least("num_candidate_sets", 1)
        self.boolean("cover_labels")
        check_search_formats(self)
        super().validate()


def _estimate(
    setup: OptimizationSetup, est: Estimate, evaluations: int, n_demos: int, teacher_labeled: int | None
) -> None:
    """Task: `evaluations` scorings of the validation set with `n_demos` demos; no proposer; teacher: a
    run on each training example not shown to it (`teacher_labeled` None: no bootstrapping)."""
    p, c, calls = run_tokens(setup, n_demos)
    runs = evaluations * len(setup.valset)
    est.add("task", runs * calls, runs * p, runs * c)
    est.add("proposer", 0)
    if teacher_labeled is None:
        est.add("teacher", 0)
        return
    p, c, calls = run_tokens(setup, teacher_labeled)
    runs = max(0, len(setup.trainset) - teacher_labeled)
    est.add("teacher", runs * calls, runs * p, runs * c)


class LabeledFewShot(Optimizer):
    """Up to `k` labelled training examples as demos of every module whose fields they hold (a seeded
    sample). Modules without labelled fields (a query writer) keep their demos."""

    name = "labeled-fewshot"
    settings_class = LabeledFewShotSettings
    settings: LabeledFewShotSettings

    def candidate(self, setup: OptimizationSetup) -> Candidate:
        rng = setup.rng("labeled-fewshot")
        cand = setup.start
        for m, demos in labeled_demos(setup.program, setup.trainset).items():
            if demos:
                cand = cand.with_module(
                    m, cand[m].with_demos(rng.sample(list(demos), min(self.settings.k, len(demos))))
                )
        return cand

    async def _optimize(self, run: Run) -> OptimizationResult:
        setup = run.setup
        await run.score(setup.start, setup.valset, full=True, phase="start")
        cand = self.candidate(setup)
        if cand != setup.start:
            await run.score(cand, setup.valset, full=True, phase="labeled")
        return run.result()

    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        _estimate(setup, est, 2, self.settings.k, None)


class BootstrapFewShot(Optimizer):
    """Demos from passing teacher runs (`max_bootstrapped_demos` per module), filled up with labelled
    ones to `max_labeled_demos` more. The teacher is shown `teacher_labeled` labelled demos so that a
    program that never passes zero-shot still yields traces."""

    name = "bootstrap-fewshot"
    settings_class = BootstrapFewShotSettings
    settings: BootstrapFewShotSettings

    async def _optimize(self, run: Run) -> OptimizationResult:
        setup = run.setup
        await run.score(setup.start, setup.valset, full=True, phase="start")
        boot = await bootstrap_demos(
            setup,
            max_traces=self.settings.max_bootstrapped_demos,
            threshold=self.settings.metric_threshold,
            teacher_labeled=self.settings.teacher_labeled,
        )
        labeled = labeled_demos(setup.program, setup.trainset)
        rng = setup.rng("bootstrap-fewshot")
        cand = setup.start
        for m, module in setup.program.named_modules().items():
            chosen = list(boot.demos.get(m, ()))[: self.settings.max_bootstrapped_demos]
            demos = with_labeled_fill(
                chosen, labeled.get(m, ()), self.settings.max_labeled_demos, module.signature.input_names, rng
            )
            if demos:
                cand = cand.with_module(m, cand[m].with_demos(demos))
        if cand != setup.start:
            await run.score(cand, setup.valset, full=True, phase="bootstrapped")
        return run.result(bootstrap={"tried": boot.tried, "passed": boot.passed, "errors": boot.errors})

    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        n = self.settings.max_bootstrapped_demos + self.settings.max_labeled_demos
        _estimate(setup, est, 2, n, self.settings.teacher_labeled)


class BootstrapRandomSearch(Optimizer):
    """`num_candidate_sets` demo configurations (set i of every module: the start's demos, none,
    labelled only, bootstrapped, then shuffled bootstraps of random size), each scored on the whole
    validation set in order; the best fully-scored one is the result. With `cover_labels` (default),
    a module whose output is a small label set gets sets showing distinct labels before repeats.

    With `search_formats`, each demo configuration also draws a prompt format per module (seeded,
    uniform over the allowed formats, the start's included) rather than being paired with every
    format: random search stays random search, at the same number of full evaluations (the same
    cost and `--dry-run` estimate), and the draws do not move the demo sets."""

    name = "bootstrap-random-search"
    settings_class = BootstrapRandomSearchSettings
    settings: BootstrapRandomSearchSettings

    def _n_sets(self) -> int:
        return self.settings.num_candidate_sets + 1  # set 0 is the start's demos, already scored

    async def _optimize(self, run: Run) -> OptimizationResult:
        setup = run.setup
        await run.score(setup.start, setup.valset, full=True, phase="start")
        boot = await bootstrap_demos(
            setup,
            max_traces=self.settings.max_bootstrapped_demos * self.settings.num_candidate_sets,
            threshold=self.settings.metric_threshold,
            teacher_labeled=self.settings.teacher_labeled,
        )
        sets = demo_set_candidates(
            setup.program,
            start=setup.start,
            bootstrapped=boot.demos,
            labeled=labeled_demos(setup.program, setup.trainset),
            n_sets=self._n_sets(),
            max_bootstrapped=self.settings.max_bootstrapped_demos,
            max_labeled=self.settings.max_labeled_demos,
            rng=setup.rng("bootstrap-random-search"),
            cover_labels=self.settings.cover_labels,
        )
        seen = {setup.start}
        failed: list[dict[str, Any]] = []
        formats = self._format_draws(setup)
        for i in range(1, max(len(v) for v in sets.values())):
            cand = setup.start
            for m, options in sets.items():
                if i < len(options):
                    cand = cand.with_module(m, cand[m].with_demos(options[i]))
            cand = formats(cand)
            if cand in seen:
                continue
            seen.add(cand)
            try:
                await run.score(cand, setup.valset, full=True, phase="demo_set", demo_set=i)
            except EvaluationError as exc:  # a set whose scoring errors is skipped, never scored as 0
                failed.append({"demo_set": i, "error": str(exc)[:500]})
                setup.emit("trial_failed", demo_set=i, error=str(exc)[:500], candidate=cand.hash)
        info: dict[str, Any] = {
            "bootstrap": {"tried": boot.tried, "passed": boot.passed, "errors": boot.errors},
            "failed_sets": failed,
        }
        return run.result(**info)

    def _format_draws(self, setup: OptimizationSetup) -> Callable[[Candidate], Candidate]:
        """What puts a candidate's modules in their drawn formats: one seeded draw per module for each
        demo set, in order, from a stream of its own (the demo sets' stream is not shifted), so the
        same number of sets is scored with or without `search_formats`; without it, nothing changes."""
        assert setup.start is not None
        start = setup.start
        choices = {m: format_choices(start[m].format, self.settings.search_formats) for m in start}
        if all(len(c) == 1 for c in choices.values()):
            return lambda cand: cand
        rng = setup.rng("bootstrap-random-search:formats")

        def draw(cand: Candidate) -> Candidate:
            for m, options in choices.items():
                chosen = rng.choice(options)
                if chosen != cand[m].format:
                    cand = cand.with_module(m, cand[m].with_format(chosen))
            return cand

        return draw

    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        n = self.settings.max_bootstrapped_demos + self.settings.max_labeled_demos
        _estimate(setup, est, 1 + self.settings.num_candidate_sets, math.ceil(n / 2), self.settings.teacher_labeled)


__all__ = [
    "BootstrapFewShot",
    "BootstrapFewShotSettings",
    "BootstrapRandomSearch",
    "BootstrapRandomSearchSettings",
    "LabeledFewShot",
    "LabeledFewShotSettings",
]
