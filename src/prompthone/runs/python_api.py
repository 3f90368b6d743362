"""`prompthone.optimize(program, trainset=..., metric=...)`: one call that optimizes a program from Python.

It is the CLI's run, started from objects instead of a config: the same runner, defaults, run folder
(`run.sqlite`, `summary.json`, `best_prompts.txt`, `report.html`, `best_messages.json`), budget, live
progress and resume. What differs is that the program, the examples and the metric are Python objects,
which a stored config cannot rebuild: resuming such a run means calling `optimize` again with the same
objects and `resume=<run folder>` (the runner checks that the program's start prompts are the same).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import Example
from prompthone.lm import DEFAULT_MODEL, run_sync
from prompthone.metrics import Metric, as_metric
from prompthone.optimize.base import OptimizationResult
from prompthone.optimize.budget import Budget
from prompthone.optimize.registry import OPTIMIZERS, make_optimizer
from prompthone.program import Candidate, Module, Program, as_program
from prompthone.program.params import START_FORMATS
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.tasks import Task
from prompthone.tasks.user import PYTHON_SOURCE

#: the share of `trainset` that trains when no `valset` is given (the rest validates), as DSPy's MIPROv2 does
TRAIN_SHARE_WITHOUT_VALSET = 0.2


@dataclass
class OptimizedRun:
    """What `optimize` returns: the optimized program and everything about the run that made it."""

    #: a copy of the program with the best prompts loaded as its defaults; call it like the original
    program: Program
    best: Candidate
    run_dir: Path
    outcome: RunOutcome

    @property
    def result(self) -> OptimizationResult:
        return self.outcome.result

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html"

    def __iter__(self):  # `program, run = ph.optimize(...)`
        return iter((self.program, self))


def optimize(
    program: Program | Module,
    *,
    trainset: Sequence[Example],
    metric: Metric | Callable[..., Any],
    valset: Sequence[Example] | None = None,
    testset: Sequence[Example] | None = None,
    method: str = "mipro",
    model: str = DEFAULT_MODEL,
    proposer_model: str | None = None,
    teacher_model: str | None = None,
    seed: int = 0,
    out_dir: str | Path = "prompthone-runs",
    resume: str | Path | None = None,
    max_calls: int | None = None,
    max_minutes: float | None = None,
    max_cost_usd: float | None = None,
    max_tokens: int = 384,
    concurrency: int = 8,
    threads: int | None = None,
    timeout_s: float = 120.0,
    start_format: str | None = None,
    name: str | None = None,
    console: Console | None = None,
    **settings: Any,
) -> OptimizedRun:
    """Optimize `program`'s prompts with `method` (any `prompthone optimize --optimizer` name; its settings
    as keywords, e.g. `preset="light"`) so that `metric(example, prediction)` scores best on `valset`.

    Without `valset`, a seeded 20% of `trainset` trains and the rest validates. `testset`, when given, is
    scored for the start and for the result and is never shown to the optimizer. `start_format` is the
    prompt format of the modules that name none (see `RunSpec.start_format`; None: the model's own). The
    run is a folder under `out_dir` like a CLI run (`prompthone show/report/export` read it); an
    interrupted run continues with the same call and `resume=<its folder>`, paying only for what it had
    not bought yet.
    """
    if method not in OPTIMIZERS:
        raise ValueError(f"method: unknown optimizer {method!r}; expected one of: {', '.join(OPTIMIZERS)}")
    make_optimizer(method, **settings)  # a misspelt or out-of-range setting fails here, before any run folder
    if start_format is not None and start_format not in START_FORMATS:
        raise ValueError(f"start_format: expected one of {', '.join(START_FORMATS)} or None, got {start_format!r}")
    program = as_program(program)
    train, val, test = _examples("trainset", trainset), valset, testset
    fixed: dict[str, list[Example]] = {"test": _examples("testset", test or [])}
    if val is not None:
        fixed |= {"train": train, "val": _examples("valset", val)}
    label = name or _task_name(program)
    metric_obj = as_metric(metric)
    task = Task(
        name=label,
        description=f"{type(program).__qualname__} given in Python",
        load=lambda _root: train,
        make_program=lambda _root: program,
        metric=lambda: metric_obj,
        fixed_splits=lambda _root: fixed,
    )
    spec = RunSpec(
        task={"name": label, "program": f"{type(program).__module__}:{type(program).__qualname__}",
              "metric": metric_obj.name, "source": PYTHON_SOURCE},
        optimizer=method,
        model=model,
        proposer_model=proposer_model,
        teacher_model=teacher_model,
        settings=dict(settings),
        n_train=None if val is not None else TRAIN_SHARE_WITHOUT_VALSET,
        n_val=None,
        n_test=None,
        seed=seed,
        concurrency=concurrency,
        max_tokens=max_tokens,
        threads=threads,
        timeout_s=timeout_s,
        start_format=start_format,
        budget=Budget(
            max_lm_calls=max_calls,
            max_cost_usd=max_cost_usd,
            max_wall_s=max_minutes * 60 if max_minutes else None,
        ),
    )  # fmt: skip
    outcome = run_sync(
        run_optimization(
            spec,
            out_dir=Path(out_dir),
            console=console or Console(highlight=False),
            resume=Path(resume) if resume is not None else None,
            task=task,
        )
    )
    assert isinstance(outcome, RunOutcome)
    _write_files(outcome.run_dir)
    optimized = copy.deepcopy(program)
    optimized.load_candidate(outcome.result.best)
    return OptimizedRun(program=optimized, best=outcome.result.best, run_dir=outcome.run_dir, outcome=outcome)


def _examples(name: str, examples: Sequence[Example]) -> list[Example]:
    items = list(examples)
    wrong = next((i for i, ex in enumerate(items) if not isinstance(ex, Example)), None)
    if wrong is not None:
        raise TypeError(
            f"{name}[{wrong}]: expected a prompthone Example (Example(inputs={{...}}, labels={{...}})), "
            f"got {type(items[wrong]).__name__}"
        )
    return items


def _task_name(program: Program) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", "-", type(program).__name__).lower()
    return re.sub(r"[^a-z0-9-]+", "-", words).strip("-") or "program"


def _write_files(run_dir: Path) -> None:
    """The files a CLI run leaves beside `run.sqlite`: the report and the best prompts as chat messages
    (both read the store, which records the program's modules, so nothing is imported again)."""
    from prompthone.report import write_report
    from prompthone.runs.export import export_run

    write_report(run_dir)
    export_run(run_dir, "messages")


__all__ = ["TRAIN_SHARE_WITHOUT_VALSET", "OptimizedRun", "optimize"]
