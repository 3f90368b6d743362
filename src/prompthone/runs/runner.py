"""One optimization, end to end: split, score the start, optimize, score on test.

Used by `prompthone optimize`, `prompthone.optimize(...)` and the benchmarks, so every method is run,
measured and recorded the same way. Each run lives in its own folder: `run.sqlite` (the store: config,
manifest, candidates, trials, LM calls, events, plus the run's own response and score caches: on a
database server instead, with `store.json` in the folder naming it) and readable files written at the
end (`runs.files`). The test split is scored twice (start and result) and never shown to the optimizer.

Resuming is replaying: optimizers are deterministic given their seed and the LM answers, and every
answer the run paid for is in its own store, so `resume` runs the same config again and pays only for
what the killed run had not yet bought.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import Split
from prompthone.data.example import Example
from prompthone.evaluate import EvalResult, Evaluator
from prompthone.lm import LM, open_cache
from prompthone.lm import settings as lm_settings
from prompthone.lm.backend import Backend
from prompthone.metrics.judge import JudgeMetric, lenient_judge_warning
from prompthone.optimize.base import OptimizationResult, OptimizationSetup
from prompthone.optimize.budget import Budget
from prompthone.optimize.proposers.contract import contract_report
from prompthone.optimize.registry import make_optimizer
from prompthone.optimize.settings import MethodSettings
from prompthone.program import Candidate, Program
from prompthone.program.stored import program_spec
from prompthone.runs.caches import open_run_caches
from prompthone.runs.dispatch import leader_dispatch
from prompthone.runs.files import make_run_dir, new_run_dir, write_outcome
from prompthone.runs.progress import LiveProgress
from prompthone.runs.roles import call_cost, planned_lms, role_backends, role_lms, usage_since
from prompthone.runs.shared_budget import SharedBudget
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.runs.splits import check_inputs, splits_for
from prompthone.runs.worker_usage import others_usage, plus
from prompthone.sqlurl import StoreUnavailableError, is_server_url, retrying_for
from prompthone.store import RunStore, build_manifest, point_to_store
from prompthone.store.broken import open_run
from prompthone.store.lock import RunLock
from prompthone.store.server import check_new_store
from prompthone.tasks import Task, get_task


async def run_optimization(
    spec: RunSpec | None = None,
    *,
    out_dir: Path = Path("prompthone-runs"),
    console: Console | None = None,
    dry_run: bool = False,
    resume: Path | None = None,
    store_url: str | None = None,
    task: Task | None = None,
    lock: RunLock | None = None,
    on_running: Callable[[Path], None] | None = None,
) -> RunOutcome | dict:
    """Run `spec` in a new run folder under `out_dir`, or `resume` an interrupted run folder.

    With `dry_run`, return the optimizer's cost estimate and spend nothing (no folder is made).
    `store_url` (a SQLAlchemy URL, e.g. `postgresql+psycopg://host/db`: one database per run) puts the
    store, and MIPRO's Optuna study and the run's LM response and score caches, on a database server
    instead of the folder's `run.sqlite`; the folder then says where (`store.json`). `task` is a task
    built in Python (`prompthone.optimize`) instead of the one `spec.task` names; resuming such a run
    needs the same task again, and its start prompts must match.
    `lock`: the run's lock, already held (a worker that becomes the run's leader took it); `on_running(run
    folder)` is called once the run is recorded and under way (to start workers that join it).
    """
    console = console or Console(quiet=True)
    store: RunStore | None = None
    if resume is not None:
        store, row = open_run(resume)  # the folder's run.sqlite, or the server its store.json names
        spec = RunSpec.from_config(row["config"])
        run_dir = Path(resume)
    else:
        assert spec is not None
        if store_url is not None:  # before anything is made: the server answers and holds no other run
            check_new_store(store_url)
        run_dir = new_run_dir(out_dir, spec)

    # Everything that can be wrong with the spec is found here, before a run folder is made.
    spec = with_resolved_settings(spec).with_resolved_start_format()
    task = task or get_task(spec.task)
    parts = splits_for(spec, task)
    program = task.make_program(spec.data_root)
    program.adopt_start_formats(spec.task_start_format())  # before the start candidate is hashed
    start_hash = Candidate.default(program).hash
    if store is not None:
        _check_same_start(store, start_hash, run_dir)
    if parts.train or parts.test:
        check_inputs(program, (parts.train or parts.test)[0], spec)
    budget = spec.budget.limits()  # this run's own counters

    def make_setup(evaluator: Evaluator, lms: dict[str, LM], **extra: Any) -> OptimizationSetup:
        return OptimizationSetup(program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator,
                                 task_lm=lms["task"], proposer_lm=lms["proposer"], teacher_lm=lms["teacher"],
                                 judge_lm=lms.get("judge"), seed=spec.seed, budget=budget,
                                 **extra)  # fmt: skip

    if dry_run:
        lms = planned_lms(spec)
        evaluator = Evaluator(program, _metric(spec, task, lms.get("judge")), lms["task"], max_tokens=spec.max_tokens)
        return make_optimizer(spec.optimizer, **spec.optimizer_settings()).estimate(make_setup(evaluator, lms))

    backends = role_backends(spec)
    if store is None:
        run_dir = make_run_dir(run_dir)
        if store_url is not None:
            point_to_store(run_dir, store_url)
            store = RunStore(store_url)
        else:
            store = RunStore(run_dir)
    if lock is None:
        lock = RunLock(store, where=f"run {run_dir}")
        lock.acquire()  # before anything is replayed or paid for: a second process on the run is refused here
    try:
        if is_server_url(store.url):  # other processes may work on the run: its budget is held by the database
            budget = SharedBudget.open(store, budget)
        return await _run_locked(
            spec, store, run_dir, resume, task, parts, program, budget, make_setup, console, backends, on_running
        )
    finally:
        lock.release()


def with_resolved_settings(spec: RunSpec) -> RunSpec:
    """`spec` with every optimizer setting its run will use, defaults included, read back as the store
    keeps them (JSON: tuples as lists), so a new run and its resumption build the same optimizer. A spec
    that has them (a resumed run's stored config) keeps its own."""
    if spec.resolved_settings is not None:
        return spec
    made = getattr(make_optimizer(spec.optimizer, **spec.settings), "settings", None)
    # an optimizer registered without a settings dataclass: what it was given is all that is known
    settings = made.to_dict() if isinstance(made, MethodSettings) else dict(spec.settings)
    return dataclasses.replace(spec, resolved_settings=json.loads(json.dumps(settings)))


async def _run_locked(
    spec: RunSpec,
    store: RunStore,
    run_dir: Path,
    resume: Path | None,
    task: Task,
    parts: Split,
    program: Program,
    budget: Budget,
    make_setup: Callable[..., OptimizationSetup],
    console: Console,
    backends: dict[str, Backend],
    on_running: Callable[[Path], None] | None = None,
) -> RunOutcome:
    """The run itself, while this process holds its lock (see `prompthone.store.lock`)."""
    shared = open_cache() if lm_settings.cache_enabled() else None
    run_cache, score_cache = open_run_caches(store, run_dir, shared)
    lms = role_lms(spec, run_cache, backends)
    if isinstance(budget, SharedBudget):
        budget.attach(lms)
    for role, lm in lms.items():
        lm.listeners.append(lambda c, r=role, m=lm: store.record_lm_call(r, c, call_cost(budget, m, c)))
    task_lm, proposer_lm = lms["task"], lms["proposer"]
    metric = _metric(spec, task, lms.get("judge"))
    evaluator = Evaluator(
        program,
        metric,
        task_lm,
        concurrency=spec.concurrency,
        score_cache=score_cache,
        max_tokens=spec.max_tokens,
        max_errors=spec.max_errors,
    )
    # on a server store, the examples go through the run's work queue, where workers may join in
    evaluator.dispatch = dispatch = leader_dispatch(store, evaluator, [*parts.train, *parts.val, *parts.test])

    if resume is None:
        manifest = build_manifest(
            models={role: lm.identity for role, lm in lms.items()},
            splits={"train": parts.train, "val": parts.val, "test": parts.test},
            seed=spec.seed,
            extra={
                "metric": metric.name,
                "program": type(program).__qualname__,
                "start_candidate": Candidate.default(program).hash,
                # the program's modules as data: read commands rebuild it from the store, never importing it
                "program_spec": program_spec(program),
            },
        )
        store.create_run(run_dir.name, spec.to_config(), manifest)
    else:
        store.restart()
    if on_running is not None:
        on_running(run_dir)

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
                worker=dispatch.worker_of(t.candidate.hash) if dispatch is not None else None,
            )
        else:
            store.record_event(kind, data)
        progress.update(kind, data)

    setup = make_setup(evaluator, lms, events=on_event, storage_url=store.url)
    optimizer = make_optimizer(spec.optimizer, **spec.optimizer_settings())
    console.print(
        f"[bold]{spec.optimizer}[/] on [bold]{task.name}[/]: {len(parts.train)} train / {len(parts.val)} val / "
        f"{len(parts.test)} test, task model {task_lm.model}, proposer {proposer_lm.model}, seed {spec.seed}"
        + (" (resumed)" if resume else "")
    )
    console.print(f"  run folder: {run_dir}")
    t0, t_run = time.perf_counter(), time.time()
    try:
        # Test scoring gets a progress bar of its own (the optimizer's evaluations are drawn by LiveProgress).
        on_test = copy.copy(evaluator)
        on_test.progress = not console.quiet
        start_test = await _score_test(on_test, None, parts.test, "start", console)
        if isinstance(metric, JudgeMetric):
            judged = [r.score for r in start_test.records if r.status == "scored" and r.score is not None]
            warning = lenient_judge_warning(judged)
            if warning:
                console.print(f"  [yellow]warning:[/] {warning}")
                store.record_event("warning", {"about": "judge", "message": warning})
        before = {role: lm.usage.as_dict() for role, lm in lms.items()}
        t_opt, t_search = time.perf_counter(), time.time()
        if dispatch is not None:  # the budget bounds the search only, as it does locally
            dispatch.budget_check = budget.check
        with progress:
            result = await optimizer.optimize(setup)
        if dispatch is not None:
            dispatch.budget_check = None
        optimize_wall = time.perf_counter() - t_opt
        usage = usage_since(lms, before)
        t_searched = time.time()
        after_task = task_lm.usage.as_dict()
        final_test = await _score_test(on_test, result.best, parts.test, "result", console)
        if dispatch is not None:
            await dispatch.close()
    except BaseException as exc:
        if dispatch is not None:
            await asyncio.shield(dispatch.close())
        # Ctrl-C (or a cancelled task) is the user's stop, not a failure: the run is marked so and resumes
        stopped = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
        status, why = (
            ("interrupted", "stopped by the user (Ctrl-C)") if stopped else ("failed", f"{type(exc).__name__}: {exc}")
        )
        try:
            with retrying_for(3.0):  # the server may still be away: the message below says what to do
                store.set_status(status, {"error": why})
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
    if dispatch is not None:  # the calls of the run's workers count too (the store says who made each)
        await dispatch.settle()
        calls = store.lm_calls()
        search = others_usage(calls, dispatch.me, [(t_search, t_searched)])
        usage = {role: plus(u, search.get(role)) for role, u in usage.items()}
        test_usage = plus(
            test_usage, others_usage(calls, dispatch.me, [(t_run, t_search), (t_searched, time.time())]).get("task")
        )
    if parts.test:
        console.print(f"  final: test {final_test.summary()}  (stopped by: {result.stopped_by})")
    else:
        console.print(f"  final: validation {result.best_score:.3f}  (stopped by: {result.stopped_by})")
    proposals = _proposal_report(store, setup, result)
    outcome = RunOutcome(
        spec, result, start_test, final_test, usage, wall, run_dir, test_usage, optimize_wall, proposals
    )
    summary = write_outcome(outcome, program, metric_name="judge" if spec.judge else metric.name)
    store.record_candidate(result.best)
    store.set_status("completed", summary)
    console.print(f"  files: {run_dir}")
    return outcome


def _metric(spec: RunSpec, task: Any, judge_lm: LM | None) -> Any:
    if spec.judge is None:
        return task.metric()
    assert judge_lm is not None
    return JudgeMetric(judge_lm, **{"name": "judge", **spec.judge})


def _proposal_report(store: RunStore, setup: OptimizationSetup, result: OptimizationResult) -> dict[str, Any]:
    """How many proposals kept the task's contract, were repaired or rejected, and whether the search
    chose the start, a proposal kept as written or a repaired one (per module)."""
    modules = list(setup.program.named_modules())
    report = contract_report(
        store.events(),
        chosen={m: result.best[m].instruction for m in modules},
        start={m: setup.start[m].instruction for m in modules} if setup.start is not None else None,
    )
    return report.to_dict()


async def _score_test(
    evaluator: Evaluator, candidate: Candidate | None, test: Sequence[Example], which: str, console: Console
) -> EvalResult:
    """Score the start or the result on the test split; a run given no test set scores nothing."""
    if not test:
        if candidate is None:
            console.print("  no test set: the start and the result are compared on validation only")
        return EvalResult((candidate or Candidate.default(evaluator.program)).hash, [])
    scored = await evaluator.evaluate(candidate, test, description=f"  scoring the {which} on test")
    if candidate is None:
        console.print(f"  start: test {scored.summary()}")
    return scored


def _check_same_start(store: RunStore, start_hash: str, run_dir: Path) -> None:
    """A resumed run must start from the prompts it started from, or its stored answers mean nothing."""
    stored = (store.run_row().get("manifest") or {}).get("start_candidate")
    if stored is not None and stored != start_hash:
        raise ValueError(
            f"{run_dir}: the program's prompts differ from the ones this run started from (start candidate "
            f"{stored[:12]}, now {start_hash[:12]}); resume with the same program, or start a new run"
        )
