"""One optimization of a built-in task, end to end: split, score the start, optimize, score on test.

Used by `prompthone optimize` and by the benchmarks, so every method is run, measured and recorded the
same way. Each run lives in its own folder: `run.sqlite` (the store: config, manifest, candidates,
trials, LM calls, events, plus the run's own response and score caches) and readable files written
at the end. The test split is scored twice (start and result) and never shown to the optimizer.

Resuming is replaying: optimizers are deterministic given their seed and the LM answers, and every
answer the run paid for is in its own file, so `resume` runs the same config again and pays only for
what the killed run had not yet bought.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator, ScoreCache
from prompthone.lm import LM, ResponseCache, open_cache
from prompthone.lm import settings as lm_settings
from prompthone.optimize.base import OptimizationResult, OptimizationSetup
from prompthone.optimize.budget import Budget
from prompthone.optimize.progress import LiveProgress
from prompthone.optimize.registry import make_optimizer
from prompthone.program import Candidate, render_prompts
from prompthone.store import RunStore, build_manifest
from prompthone.tasks import get_task


@dataclass
class RunSpec:
    """What to run: everything that goes into the run's stored config."""

    task: str
    optimizer: str
    model: str = "local/qwen2.5-coder-0.5b"
    proposer_model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    n_train: int = 50
    n_val: int = 50
    n_test: int = 100
    seed: int = 0
    data_root: str | None = None
    concurrency: int = 8
    max_tokens: int = 384
    budget: Budget = field(default_factory=Budget)

    def to_config(self) -> dict[str, Any]:
        d = asdict(self)
        b = self.budget
        d["budget"] = {
            "max_lm_calls": b.max_lm_calls,
            "max_tokens": b.max_tokens,
            "max_cost_usd": b.max_cost_usd,
            "max_wall_s": b.max_wall_s,
            "prices": dict(b.prices),
        }
        return d

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunSpec:
        c = dict(config)
        budget = c.pop("budget", None) or {}
        budget["prices"] = {k: tuple(v) for k, v in (budget.get("prices") or {}).items()}
        return cls(**c, budget=Budget(**budget))


@dataclass
class RunOutcome:
    spec: RunSpec
    result: OptimizationResult
    start_test: EvalResult
    final_test: EvalResult
    usage: dict[str, dict]
    wall_s: float
    run_dir: Path


def new_run_dir(out_dir: Path, spec: RunSpec) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return out_dir / f"{spec.optimizer}-{spec.task.replace('/', '-')}-{stamp}"


async def run_optimization(
    spec: RunSpec | None = None,
    *,
    out_dir: Path = Path("prompthone-runs"),
    console: Console | None = None,
    dry_run: bool = False,
    resume: Path | None = None,
) -> RunOutcome | dict:
    """Run `spec` in a new run folder under `out_dir`, or `resume` an interrupted run folder.

    With `dry_run`, return the optimizer's cost estimate and spend nothing (no folder is made).
    """
    console = console or Console(quiet=True)
    store: RunStore | None = None
    if resume is not None:
        store = RunStore(resume)
        spec = RunSpec.from_config(store.run_row()["config"])
        run_dir = Path(resume)
    else:
        assert spec is not None
        run_dir = new_run_dir(out_dir, spec)

    task = get_task(spec.task)
    parts = split(task.load(spec.data_root), train=spec.n_train, val=spec.n_val, test=spec.n_test, seed=spec.seed)
    program = task.make_program(spec.data_root)
    metric = task.metric()

    def make_setup(evaluator: Evaluator, proposer_lm: LM, **extra: Any) -> OptimizationSetup:
        return OptimizationSetup(program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator,
                                 task_lm=evaluator.lm, proposer_lm=proposer_lm, seed=spec.seed, budget=spec.budget,
                                 **extra)  # fmt: skip

    if dry_run:
        task_lm = LM(spec.model, cache=False)
        evaluator = Evaluator(program, metric, task_lm, max_tokens=spec.max_tokens)
        setup = make_setup(evaluator, LM(spec.proposer_model or spec.model, cache=False))
        return make_optimizer(spec.optimizer, **spec.settings).estimate(setup)

    if store is None:
        store = RunStore(run_dir)
    db = store.path
    shared = open_cache() if lm_settings.cache_enabled() else None
    run_cache = ResponseCache(db, fallback=shared) if db is not None else (shared or False)
    task_lm = LM(spec.model, cache=run_cache)
    proposer_lm = LM(spec.proposer_model or spec.model, cache=run_cache)
    for role, lm in (("task", task_lm), ("proposer", proposer_lm)):
        lm.listeners.append(lambda c, r=role, m=lm: store.record_lm_call(r, c, _cost(spec.budget, m, c)))
    evaluator = Evaluator(
        program,
        metric,
        task_lm,
        concurrency=spec.concurrency,
        score_cache=ScoreCache(db) if db is not None else ScoreCache(),
        max_tokens=spec.max_tokens,
    )

    if resume is None:
        manifest = build_manifest(
            models={"task": task_lm.identity, "proposer": proposer_lm.identity},
            splits={"train": parts.train, "val": parts.val, "test": parts.test},
            seed=spec.seed,
            extra={"metric": metric.name, "program": type(program).__qualname__},
        )
        store.create_run(run_dir.name, spec.to_config(), manifest)
    else:
        store.restart()

    progress = LiveProgress(console, spec.budget)

    def on_event(kind: str, data: dict) -> None:
        if kind == "trial":
            t = data["trial"]
            store.record_trial(
                idx=t.index,
                candidate=t.candidate,
                score=t.score,
                n=t.n,
                full=t.full,
                best=data.get("best"),
                info=t.info,
            )
        else:
            store.record_event(kind, data)
        progress.update(kind, data)

    setup = make_setup(evaluator, proposer_lm, events=on_event, storage_url=store.url)
    optimizer = make_optimizer(spec.optimizer, **spec.settings)
    console.print(
        f"[bold]{spec.optimizer}[/] on [bold]{task.name}[/]: {len(parts.train)} train / {len(parts.val)} val / "
        f"{len(parts.test)} test, task model {task_lm.model}, proposer {proposer_lm.model}, seed {spec.seed}"
        + (" (resumed)" if resume else "")
    )
    console.print(f"  run folder: {run_dir}")
    t0 = time.perf_counter()
    try:
        start_test = await evaluator.evaluate(None, parts.test)
        console.print(f"  start: test {start_test.summary()}")
        with progress:
            result = await optimizer.optimize(setup)
        usage = {role: u.as_dict() for role, u in spec.budget.usage_by_role().items()}
        final_test = await evaluator.evaluate(result.best, parts.test)
    except BaseException as exc:
        store.set_status("failed", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    wall = time.perf_counter() - t0
    console.print(f"  final: test {final_test.summary()}  (stopped by: {result.stopped_by})")
    outcome = RunOutcome(spec, result, start_test, final_test, usage, wall, run_dir)
    summary = write_outcome(outcome, program)
    store.record_candidate(result.best)
    store.set_status("completed", summary)
    console.print(f"  files: {run_dir}")
    return outcome


def _cost(budget: Budget, lm: LM, c) -> float:
    if c.cached:
        return 0.0
    p_in, p_out = budget.prices.get(lm.model, (0.0, 0.0))
    return (c.prompt_tokens * p_in + c.completion_tokens * p_out) / 1e6


def write_outcome(outcome: RunOutcome, program) -> dict[str, Any]:
    """Leave files a person can open: summary, best candidate, its prompts, every trial."""
    spec, r, run_dir = outcome.spec, outcome.result, outcome.run_dir
    summary = {
        "task": spec.task,
        "optimizer": spec.optimizer,
        "settings": spec.settings,
        "model": spec.model,
        "proposer_model": spec.proposer_model or spec.model,
        "seed": spec.seed,
        "splits": {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test},
        "start_test": {"score": outcome.start_test.mean, "ci95": outcome.start_test.ci95},
        "final_test": {"score": outcome.final_test.mean, "ci95": outcome.final_test.ci95},
        "best_val": r.best_score,
        "start_val": r.start_score,
        "best_candidate": r.best.hash,
        "start_candidate": Candidate.default(program).hash,
        "stopped_by": r.stopped_by,
        "usage_by_role": outcome.usage,
        "wall_s": outcome.wall_s,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run_dir / "best_candidate.json").write_text(r.best.to_json(indent=2))
    (run_dir / "best_prompts.txt").write_text(render_prompts(program, r.best).as_text())
    return summary
