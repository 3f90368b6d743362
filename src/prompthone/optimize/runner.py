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

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator, ScoreCache
from prompthone.lm import LM, RequestSlots, ResponseCache, make_backend, open_cache, thread_options
from prompthone.lm import settings as lm_settings
from prompthone.metrics.judge import JudgeMetric, lenient_judge_warning
from prompthone.optimize.base import OptimizationResult, OptimizationSetup
from prompthone.optimize.budget import Budget
from prompthone.optimize.progress import LiveProgress
from prompthone.optimize.registry import make_optimizer
from prompthone.program import Candidate, render_prompts
from prompthone.store import CACHE_DB, RunStore, build_manifest, point_to_store
from prompthone.store.server import StoreUnavailableError, check_new_store, retrying_for, safe_url
from prompthone.tasks import get_task
from prompthone.tasks.user import task_label


@dataclass
class RunSpec:
    """What to run: everything that goes into the run's stored config."""

    #: a built-in task's name, or a user task: {program, data, metric, path} (see `prompthone.tasks.user`)
    task: str | dict[str, Any]
    optimizer: str
    model: str = "local/qwen2.5-coder-0.5b"
    proposer_model: str | None = None
    #: runs the program when bootstrapping demos; the task model when None (counted apart either way)
    teacher_model: str | None = None
    #: score with an LLM judge instead of the task's metric: `JudgeMetric` settings in words
    #: (task_description, criteria, reference_field, scale, output_fields, input_fields, max_tokens)
    judge: dict[str, Any] | None = None
    #: the judge's model; the proposer model when None
    judge_model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    n_train: int = 50
    n_val: int = 50
    n_test: int = 100
    seed: int = 0
    data_root: str | None = None
    concurrency: int = 8
    max_tokens: int = 384
    #: errors (e.g. judge failures) tolerated per evaluation before it fails loudly; never scored as wrong
    max_errors: int = 0
    #: llama.cpp threads for embedded models (None: the backend's default); answers do not depend on it
    threads: int | None = None
    budget: Budget = field(default_factory=Budget)

    @property
    def task_name(self) -> str:
        return task_label(self.task)

    def to_config(self) -> dict[str, Any]:
        d = asdict(replace(self, budget=Budget()))  # a used budget holds its run's LMs: not plain data
        d["settings"] = public_settings(self.settings)
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


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Optimizer settings as they are recorded (stored config, summary): a URL (e.g. MIPRO's `storage`)
    without its password, which the driver reads from the environment instead (PGPASSWORD, ~/.pgpass)."""
    return {k: safe_url(v) if isinstance(v, str) and "://" in v else v for k, v in settings.items()}


@dataclass
class RunOutcome:
    spec: RunSpec
    result: OptimizationResult
    start_test: EvalResult
    final_test: EvalResult
    #: role -> usage counters of the optimization alone (scoring the start and the result on test excluded)
    usage: dict[str, dict]
    wall_s: float
    run_dir: Path
    #: task-model usage of the two test evaluations (start and result)
    test_usage: dict[str, float | int] = field(default_factory=dict)
    optimize_wall_s: float = 0.0


def _usage_since(lms: dict[str, LM], before: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for role, lm in lms.items():
        now, was = lm.usage.as_dict(), before.get(role, {})
        out[role] = {k: now[k] - was.get(k, 0) for k in now}
    return out


def role_lms(spec: RunSpec, cache: ResponseCache | bool) -> dict[str, LM]:
    """One LM object per role (they share the cache and, for embedded models, the loaded weights), so the
    store, the budget and the summary count task, proposer, teacher and judge calls apart.

    `spec.concurrency` bounds the requests in flight per endpoint, never above what the backend serves
    at once (one for an embedded model): roles sent to the same server or model share one bound, and
    everything that calls a role (several evaluations, e.g. MIPRO's trials in flight) shares its bound.
    """
    proposer = spec.proposer_model or spec.model
    models = {"task": spec.model, "proposer": proposer, "teacher": spec.teacher_model or spec.model}
    if spec.judge is not None:
        models["judge"] = spec.judge_model or proposer
    slots: dict[str, RequestSlots] = {}
    lms: dict[str, LM] = {}
    for role, model in models.items():
        backend = make_backend(model, **thread_options(model, spec.threads))
        endpoint = backend.identity()
        if endpoint not in slots:
            slots[endpoint] = RequestSlots(min(spec.concurrency, backend.max_concurrency))
        lms[role] = LM(backend, cache=cache, slots=slots[endpoint])
    return lms


def _metric(spec: RunSpec, task: Any, judge_lm: LM | None) -> Any:
    if spec.judge is None:
        return task.metric()
    assert judge_lm is not None
    return JudgeMetric(judge_lm, **{"name": "judge", **spec.judge})


def new_run_dir(out_dir: Path, spec: RunSpec) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return out_dir / f"{spec.optimizer}-{spec.task_name.replace('/', '-')}-{stamp}"


async def run_optimization(
    spec: RunSpec | None = None,
    *,
    out_dir: Path = Path("prompthone-runs"),
    console: Console | None = None,
    dry_run: bool = False,
    resume: Path | None = None,
    store_url: str | None = None,
) -> RunOutcome | dict:
    """Run `spec` in a new run folder under `out_dir`, or `resume` an interrupted run folder.

    With `dry_run`, return the optimizer's cost estimate and spend nothing (no folder is made).
    `store_url` (a SQLAlchemy URL, e.g. `postgresql+psycopg://host/db`: one database per run) puts the
    store, and MIPRO's Optuna study, on a database server instead of the folder's `run.sqlite`; the
    folder then says where (`store.json`) and keeps the LM response and score caches locally
    (`cache.sqlite`).
    """
    console = console or Console(quiet=True)
    store: RunStore | None = None
    if resume is not None:
        store = RunStore(resume)  # the folder's run.sqlite, or the server its store.json names
        spec = RunSpec.from_config(store.run_row()["config"])
        run_dir = Path(resume)
    else:
        assert spec is not None
        if store_url is not None:  # before anything is made: the server answers and holds no other run
            check_new_store(store_url)
        run_dir = new_run_dir(out_dir, spec)

    task = get_task(spec.task)
    parts = split(task.load(spec.data_root), train=spec.n_train, val=spec.n_val, test=spec.n_test, seed=spec.seed)
    program = task.make_program(spec.data_root)
    budget = spec.budget.limits()  # this run's own counters

    def make_setup(evaluator: Evaluator, lms: dict[str, LM], **extra: Any) -> OptimizationSetup:
        return OptimizationSetup(program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator,
                                 task_lm=lms["task"], proposer_lm=lms["proposer"], teacher_lm=lms["teacher"],
                                 judge_lm=lms.get("judge"), seed=spec.seed, budget=budget,
                                 **extra)  # fmt: skip

    if dry_run:
        lms = role_lms(spec, False)
        evaluator = Evaluator(program, _metric(spec, task, lms.get("judge")), lms["task"], max_tokens=spec.max_tokens)
        return make_optimizer(spec.optimizer, **spec.settings).estimate(make_setup(evaluator, lms))

    if store is None:
        if store_url is not None:
            point_to_store(run_dir, store_url)
            store = RunStore(store_url)
        else:
            store = RunStore(run_dir)
    db = store.path or run_dir / CACHE_DB
    shared = open_cache() if lm_settings.cache_enabled() else None
    run_cache = ResponseCache(db, fallback=shared)
    lms = role_lms(spec, run_cache)
    for role, lm in lms.items():
        lm.listeners.append(lambda c, r=role, m=lm: store.record_lm_call(r, c, _cost(budget, m, c)))
    task_lm, proposer_lm = lms["task"], lms["proposer"]
    metric = _metric(spec, task, lms.get("judge"))
    evaluator = Evaluator(
        program,
        metric,
        task_lm,
        concurrency=spec.concurrency,
        score_cache=ScoreCache(db),
        max_tokens=spec.max_tokens,
        max_errors=spec.max_errors,
    )

    if resume is None:
        manifest = build_manifest(
            models={role: lm.identity for role, lm in lms.items()},
            splits={"train": parts.train, "val": parts.val, "test": parts.test},
            seed=spec.seed,
            extra={"metric": metric.name, "program": type(program).__qualname__},
        )
        store.create_run(run_dir.name, spec.to_config(), manifest)
    else:
        store.restart()

    progress = LiveProgress(console, budget)

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

    setup = make_setup(evaluator, lms, events=on_event, storage_url=store.url)
    optimizer = make_optimizer(spec.optimizer, **spec.settings)
    console.print(
        f"[bold]{spec.optimizer}[/] on [bold]{task.name}[/]: {len(parts.train)} train / {len(parts.val)} val / "
        f"{len(parts.test)} test, task model {task_lm.model}, proposer {proposer_lm.model}, seed {spec.seed}"
        + (" (resumed)" if resume else "")
    )
    console.print(f"  run folder: {run_dir}")
    t0 = time.perf_counter()
    try:
        # Test scoring gets a progress bar of its own (the optimizer's evaluations are drawn by LiveProgress).
        on_test = copy.copy(evaluator)
        on_test.progress = not console.quiet
        start_test = await on_test.evaluate(None, parts.test, description="  scoring the start on test")
        console.print(f"  start: test {start_test.summary()}")
        if isinstance(metric, JudgeMetric):
            judged = [r.score for r in start_test.records if r.status == "scored" and r.score is not None]
            warning = lenient_judge_warning(judged)
            if warning:
                console.print(f"  [yellow]warning:[/] {warning}")
                store.record_event("warning", {"about": "judge", "message": warning})
        before = {role: lm.usage.as_dict() for role, lm in lms.items()}
        t_opt = time.perf_counter()
        with progress:
            result = await optimizer.optimize(setup)
        optimize_wall = time.perf_counter() - t_opt
        usage = _usage_since(lms, before)
        after_task = task_lm.usage.as_dict()
        final_test = await on_test.evaluate(result.best, parts.test, description="  scoring the result on test")
    except BaseException as exc:
        try:
            with retrying_for(3.0):  # the server may still be away: the message below says what to do
                store.set_status("failed", {"error": f"{type(exc).__name__}: {exc}"})
        except StoreUnavailableError:
            pass
        if isinstance(exc, StoreUnavailableError):
            raise StoreUnavailableError(
                f"{exc}; the run stopped, everything it paid for is kept: once the server is back, "
                f"continue it with `prompthone optimize --resume {run_dir}`"
            ) from None
        raise
    wall = time.perf_counter() - t0
    end_task = task_lm.usage.as_dict()
    test_usage = {k: end_task[k] - after_task[k] + before["task"][k] for k in end_task}
    console.print(f"  final: test {final_test.summary()}  (stopped by: {result.stopped_by})")
    outcome = RunOutcome(spec, result, start_test, final_test, usage, wall, run_dir, test_usage, optimize_wall)
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
        "settings": public_settings(spec.settings),
        "model": spec.model,
        "proposer_model": spec.proposer_model or spec.model,
        "teacher_model": spec.teacher_model or spec.model,
        "judge_model": (spec.judge_model or spec.proposer_model or spec.model) if spec.judge else None,
        "metric": "judge" if spec.judge else get_task(spec.task).metric().name,
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
        "usage_test_scoring": outcome.test_usage,
        "wall_s": outcome.wall_s,
        "optimize_wall_s": outcome.optimize_wall_s,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run_dir / "best_candidate.json").write_text(r.best.to_json(indent=2))
    (run_dir / "best_prompts.txt").write_text(render_prompts(program, r.best).as_text())
    return summary
