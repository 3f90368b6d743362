"""What every optimizer shares: its inputs (`OptimizationSetup`), its output (`OptimizationResult`),
the state of one run (`Run`: made per `optimize(setup)` call, so an optimizer object holds only its
settings and can run several setups at once), its cost estimate (`Estimate`) and one entry point
(`Optimizer.optimize`).

An optimizer never owns a private evaluation loop, LM client or cache: it scores candidates through
the setup's `Evaluator`, asks the setup's LMs by role, and reports progress through `events`. The
contract that makes runs resumable: given the same seed and the same LM answers (replayed from the
response cache), an optimizer makes the same choices, so a killed run re-run with its seed pays for
nothing twice.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prompthone.data.example import Example
from prompthone.evaluate import EvalResult, Evaluator
from prompthone.lm.client import LM
from prompthone.optimize.budget import Budget, BudgetExhausted
from prompthone.optimize.settings import MethodSettings
from prompthone.program import Candidate, Program

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class OptimizationSetup:
    """Everything an optimizer works with.

    `task_lm` runs the program; `proposer_lm` writes instructions, meta-prompt answers, gradients and
    edits (defaults to the task LM); `teacher_lm` runs the program when bootstrapping demos (defaults
    to the task LM); `judge_lm` is for LLM-judge metrics. `trainset` is what an optimizer may learn
    from (demos, proposals, minibatches for methods that score on train); `valset` is what it selects
    on. The test split is never given to an optimizer.
    """

    program: Program
    trainset: Sequence[Example]
    valset: Sequence[Example]
    evaluator: Evaluator
    task_lm: LM
    proposer_lm: LM | None = None
    teacher_lm: LM | None = None
    judge_lm: LM | None = None
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    events: EventSink | None = None
    start: Candidate | None = None
    #: where a method may keep its own state so that a killed run resumes (e.g. Optuna's study):
    #: a SQLAlchemy URL, normally the run's own SQLite file; None keeps it in memory
    storage_url: str | None = None

    def __post_init__(self) -> None:
        self.proposer_lm = self.proposer_lm or self.task_lm
        self.teacher_lm = self.teacher_lm or self.task_lm
        for role in ("task", "proposer", "teacher", "judge"):
            lm = getattr(self, f"{role}_lm")
            if lm is not None:
                self.budget.track(role, lm)
        if self.start is None:
            self.start = Candidate.default(self.program)
        train_ids = {e.id for e in self.trainset}
        overlap = [e.id for e in self.valset if e.id in train_ids]
        if overlap:
            raise ValueError(f"trainset and valset share {len(overlap)} example id(s), e.g. {overlap[0]!r}")

    def rng(self, purpose: str) -> random.Random:
        """A random stream per purpose, so adding a draw in one place does not shift the others."""
        return random.Random(f"{self.seed}:{purpose}")

    def emit(self, kind: str, **data: Any) -> None:
        if self.events is not None:
            self.events(kind, data)


@dataclass(frozen=True)
class Trial:
    """One scored candidate: on a minibatch (`full=False`) or the whole validation set."""

    index: int
    candidate: Candidate
    score: float
    n: int
    full: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizationResult:
    """The chosen candidate, how it scored on validation, and everything tried on the way."""

    best: Candidate
    best_score: float
    start_score: float | None
    trials: list[Trial]
    stopped_by: str = "completed"  # or a budget limit name, or "early_stop"
    info: dict[str, Any] = field(default_factory=dict)

    def best_so_far(self) -> list[float]:
        """Best full-validation score after each trial (NaN before the first)."""
        out, best = [], float("nan")
        for t in self.trials:
            if t.full and (best != best or t.score > best):
                best = t.score
            out.append(best)
        return out


class Estimate:
    """Expected LM calls and tokens per role, added up by a method's `_estimate` (the one estimate path:
    `Optimizer.estimate` shapes and rounds what was added; `proposers.cost` prices a program run)."""

    def __init__(self) -> None:
        self.roles: dict[str, list[float]] = {}

    def add(self, role: str, calls: float, prompt_tokens: float = 0.0, completion_tokens: float = 0.0) -> None:
        """`calls` calls of `role` with these token totals (a role added with 0 calls still shows)."""
        row = self.roles.setdefault(role, [0.0, 0.0, 0.0])
        row[0] += calls
        row[1] += prompt_tokens
        row[2] += completion_tokens

    def per_call(self, role: str, calls: float, prompt_tokens: float, completion_tokens: float) -> None:
        """`calls` calls of `role`, each with these token counts."""
        self.add(role, calls, calls * prompt_tokens, calls * completion_tokens)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            role: {"calls": float(round(c)), "prompt_tokens": float(round(p)), "completion_tokens": float(round(k))}
            for role, (c, p, k) in self.roles.items()
        }


class Run:
    """The state of one `Optimizer.optimize(setup)` call: what was scored, the best fully-scored candidate,
    the start's score, and whatever the method keeps while it works (a subclass per method, made by
    `Optimizer.start_run`). The optimizer object keeps no per-run state, so one object can run several
    setups at once, and a budget stop returns what the run holds (`result`), with the method's
    `details()` whatever point it stopped at.
    """

    def __init__(self, setup: OptimizationSetup) -> None:
        self.setup = setup
        self.trials: list[Trial] = []
        self.best: tuple[float, Candidate] | None = None
        self.start_score: float | None = None

    async def score(
        self, candidate: Candidate, examples: Sequence[Example], *, full: bool, **info: Any
    ) -> tuple[Trial, EvalResult]:
        """Score through the shared evaluator, record the trial, and keep the best full-validation one.

        The budget is checked before spending; a trial that is not full never becomes the result.
        """
        self.setup.budget.check()
        result = await self.setup.evaluator.evaluate(candidate, examples)
        return self.record(candidate, result.mean, result.n, full=full, **info), result

    def record(self, candidate: Candidate, score: float, n: int, *, full: bool, **info: Any) -> Trial:
        """Record a scored trial (what `score` does after evaluating). Also for optimizers that resume
        from a stored study: trials scored by an earlier process are re-entered without re-scoring."""
        trial = Trial(len(self.trials), candidate, score, n, full, dict(info))
        self.trials.append(trial)
        if full and (self.best is None or score > self.best[0]):
            self.best = (score, candidate)
        if full and candidate == self.setup.start and self.start_score is None:
            self.start_score = score
        self.setup.emit("trial", index=trial.index, score=trial.score, n=trial.n, full=full,
                        best=self.best[0] if self.best else None, candidate=candidate.hash, trial=trial,
                        **info)  # fmt: skip
        return trial

    def details(self) -> dict[str, Any]:
        """The method's own account of the run for `OptimizationResult.info` (as far as it got)."""
        return {}

    def result(self, *, stopped_by: str = "completed", **info: Any) -> OptimizationResult:
        """The best fully-scored candidate so far (or the start, if none was fully scored), with
        `details()` and `info` as its info."""
        assert self.setup.start is not None
        if self.best is None:
            r = OptimizationResult(self.setup.start, float("nan"), None, self.trials, stopped_by=stopped_by)
        else:
            r = OptimizationResult(self.best[1], self.best[0], self.start_score, self.trials, stopped_by)
        r.info.update(self.details())
        r.info.update(info)
        return r


class Optimizer(ABC):
    """A prompt optimization method: its settings, and `_optimize(run)` working on a `Run` that
    `optimize(setup)` makes for each call. `optimize` adds budget handling."""

    name: str = "optimizer"
    #: the method's settings dataclass (`optimize.settings`): what `**settings` accepts, checked when made
    settings_class: type[MethodSettings] = MethodSettings

    def __init__(self, **settings: Any) -> None:
        self.settings = self.settings_class.build(**settings)

    async def optimize(self, setup: OptimizationSetup) -> OptimizationResult:
        run = self.start_run(setup)
        setup.budget.begin()
        setup.emit("start", optimizer=self.name)
        try:
            result = await self._optimize(run)
        except BudgetExhausted as exc:
            setup.emit("budget", limit=exc.limit, message=str(exc))
            result = run.result(stopped_by=exc.limit)
        finally:
            setup.budget.end()  # the budget bounds the search, not what the caller does with its result
        setup.emit("end", best_score=result.best_score, stopped_by=result.stopped_by)
        return result

    def start_run(self, setup: OptimizationSetup) -> Run:
        """The state of a new run on `setup` (a method with state of its own returns its `Run` subclass)."""
        return Run(setup)

    @abstractmethod
    async def _optimize(self, run: Any) -> OptimizationResult: ...

    def estimate(self, setup: OptimizationSetup) -> dict[str, dict[str, float]]:
        """Expected LM calls and tokens per role before anything is spent (for `--dry-run`).

        Returns {role: {"calls": ..., "prompt_tokens": ..., "completion_tokens": ...}}, rounded, roles in
        the order the method named them. Methods say what they will call in `_estimate`.
        """
        est = Estimate()
        self._estimate(setup, est)
        return est.to_dict()

    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        raise NotImplementedError(f"{self.name} has no cost estimate yet")
