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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import Split
from prompthone.data.example import Example
from prompthone.evaluate import EvalResult, Evaluator, ScoreCache
from prompthone.lm import LM, LMError, RequestSlots, ResponseCache, make_backend, open_cache, thread_options
from prompthone.lm import settings as lm_settings
from prompthone.lm.backend import Backend
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics.judge import JudgeMetric, lenient_judge_warning
from prompthone.optimize.base import OptimizationResult, OptimizationSetup
from prompthone.optimize.budget import Budget
from prompthone.optimize.progress import LiveProgress
from prompthone.optimize.proposers.contract import contract_report
from prompthone.optimize.registry import make_optimizer
from prompthone.program import Candidate, Program, render_prompts
from prompthone.program.run import check_program_inputs
from prompthone.program.stored import program_spec
from prompthone.sqlurl import StoreUnavailableError, retrying_for, safe_url
from prompthone.store import CACHE_DB, RunStore, build_manifest, point_to_store
from prompthone.store.broken import open_run
from prompthone.store.lock import RunLock
from prompthone.store.server import check_new_store
from prompthone.tasks import Task, get_task
from prompthone.tasks.splits import task_splits
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
    #: split sizes; None for a split the task fixes (its own file) means the whole file
    n_train: int | None = 50
    n_val: int | None = 50
    n_test: int | None = 100
    seed: int = 0
    data_root: str | None = None
    concurrency: int = 8
    max_tokens: int = 384
    #: errors (e.g. judge failures) tolerated per evaluation before it fails loudly; never scored as wrong
    max_errors: int = 0
    #: llama.cpp threads for embedded models (None: the backend's default); answers do not depend on it
    threads: int | None = None
    #: seconds each attempt of an LM call may take, for every role (a slow CPU model needs more)
    timeout_s: float = 120.0
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
    #: the task-contract check's counts over the run's proposals, and what the search chose
    #: (`proposers.contract.contract_report`)
    proposals: dict[str, Any] = field(default_factory=dict)


def _usage_since(lms: dict[str, LM], before: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for role, lm in lms.items():
        now, was = lm.usage.as_dict(), before.get(role, {})
        out[role] = {k: now[k] - was.get(k, 0) for k in now}
    return out


def role_models(spec: RunSpec) -> dict[str, str]:
    """The model string of each role the run uses."""
    proposer = spec.proposer_model or spec.model
    models = {"task": spec.model, "proposer": proposer, "teacher": spec.teacher_model or spec.model}
    if spec.judge is not None:
        models["judge"] = spec.judge_model or proposer
    return models


def role_backends(spec: RunSpec) -> dict[str, Backend]:
    """Each role's backend, built (a model string checked, a GGUF file found, a key read) before anything is
    written: a wrong model must never leave a run folder behind. A `ConfigError` names the role."""
    backends: dict[str, Backend] = {}
    for role, model in role_models(spec).items():
        try:
            backends[role] = make_backend(model, **thread_options(model, spec.threads))
        except LMError as exc:
            exc.role = exc.role or role
            raise
    return backends


def role_lms(
    spec: RunSpec, cache: ResponseCache | bool, backends: Mapping[str, Backend] | None = None
) -> dict[str, LM]:
    """One LM object per role (they share the cache and, for embedded models, the loaded weights), so the
    store, the budget and the summary count task, proposer, teacher and judge calls apart.

    `spec.concurrency` bounds the requests in flight per endpoint, never above what the backend serves
    at once (one for an embedded model): roles sent to the same server or model share one bound, and
    everything that calls a role (several evaluations, e.g. MIPRO's trials in flight) shares its bound.
    `backends` (from `role_backends`) are used instead of building new ones.
    """
    backends = dict(backends) if backends is not None else role_backends(spec)
    slots: dict[str, RequestSlots] = {}
    lms: dict[str, LM] = {}
    for role, backend in backends.items():
        endpoint = backend.identity()
        if endpoint not in slots:
            slots[endpoint] = RequestSlots(min(spec.concurrency, backend.max_concurrency))
        lms[role] = LM(backend, cache=cache, slots=slots[endpoint], timeout_s=spec.timeout_s, role=role)
    return lms


def splits_for(spec: RunSpec, task: Task) -> Split:
    """`spec`'s train / val / test of `task` (its own split files, else a seeded cut), or `SplitSizeError`
    naming where the examples come from."""
    return task_splits(task, n_train=spec.n_train, n_val=spec.n_val, n_test=spec.n_test, seed=spec.seed,
                       root=spec.data_root, source=data_source(spec))  # fmt: skip


def planned_lms(spec: RunSpec) -> dict[str, LM]:
    """One LM per role that can never be called: a dry run estimates from the plan alone, so it works
    before the models are installed or the servers are up (`prompthone.lm.availability` says which)."""

    def refuse(request: Any) -> Exception:
        return RuntimeError("a dry run makes no LM call")

    return {role: LM(ScriptedBackend(refuse, name=model), cache=False) for role, model in role_models(spec).items()}


def data_source(spec: RunSpec) -> str:
    """How a message names where a run's examples come from: the user's file, or the built-in task."""
    if isinstance(spec.task, Mapping):
        path = (spec.task.get("data") or {}).get("path")
        return f"the data file {path} (task.data.path)" if path else f"the data of task {task_label(spec.task)!r}"
    return f"task {spec.task!r}"


def check_inputs(program: Program, example: Example, spec: RunSpec) -> None:
    """Raise `ValueError` unless `program.forward` takes the inputs the data gives it, so that a wrong
    input mapping is said before anything is paid for or written, not as an error on every example."""
    try:
        check_program_inputs(program, example.inputs)
    except TypeError as exc:
        where = "task.data.inputs" if isinstance(spec.task, Mapping) else f"task {spec.task!r}"
        raise ValueError(f"{where}: the examples' inputs do not fit the program: {exc}") from None


def _metric(spec: RunSpec, task: Any, judge_lm: LM | None) -> Any:
    if spec.judge is None:
        return task.metric()
    assert judge_lm is not None
    return JudgeMetric(judge_lm, **{"name": "judge", **spec.judge})


def new_run_dir(out_dir: Path, spec: RunSpec) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return out_dir / f"{spec.optimizer}-{spec.task_name.replace('/', '-')}-{stamp}"


class RunFolderError(ValueError):
    """The run folder cannot be made where `--out` says; the message names the path and why."""


def make_run_dir(run_dir: Path) -> Path:
    """Create a new run's folder, and only a new one: two runs started in the same millisecond get two
    folders (`-2`, `-3`, ...), never one. Fails with `RunFolderError` before anything is spent."""
    parent = run_dir.parent
    for i in range(1, 100):
        path = run_dir if i == 1 else run_dir.with_name(f"{run_dir.name}-{i}")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            if not parent.is_dir():
                break
            continue
        except OSError as exc:
            raise RunFolderError(_folder_problem(parent, exc)) from None
    raise RunFolderError(_folder_problem(parent, NotADirectoryError(f"{parent} is not a folder")))


def _folder_problem(out_dir: Path, exc: OSError) -> str:
    blocker = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None or isinstance(exc, NotADirectoryError):
        return f"--out {out_dir}: {blocker or out_dir} is a file, not a folder; give a folder for the run folders"
    reason = exc.strerror or str(exc)
    return f"--out {out_dir}: cannot create a run folder there ({reason}); give a folder you can write to"


async def run_optimization(
    spec: RunSpec | None = None,
    *,
    out_dir: Path = Path("prompthone-runs"),
    console: Console | None = None,
    dry_run: bool = False,
    resume: Path | None = None,
    store_url: str | None = None,
    task: Task | None = None,
) -> RunOutcome | dict:
    """Run `spec` in a new run folder under `out_dir`, or `resume` an interrupted run folder.

    With `dry_run`, return the optimizer's cost estimate and spend nothing (no folder is made).
    `store_url` (a SQLAlchemy URL, e.g. `postgresql+psycopg://host/db`: one database per run) puts the
    store, and MIPRO's Optuna study, on a database server instead of the folder's `run.sqlite`; the
    folder then says where (`store.json`) and keeps the LM response and score caches locally
    (`cache.sqlite`). `task` is a task built in Python (`prompthone.optimize`) instead of the one
    `spec.task` names; resuming such a run needs the same task again, and its start prompts must match.
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
    task = task or get_task(spec.task)
    parts = splits_for(spec, task)
    program = task.make_program(spec.data_root)
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
        return make_optimizer(spec.optimizer, **spec.settings).estimate(make_setup(evaluator, lms))

    backends = role_backends(spec)
    if store is None:
        run_dir = make_run_dir(run_dir)
        if store_url is not None:
            point_to_store(run_dir, store_url)
            store = RunStore(store_url)
        else:
            store = RunStore(run_dir)
    lock = RunLock(store, where=f"run {run_dir}")
    lock.acquire()  # before anything is replayed or paid for: a second process on the run is refused here
    try:
        return await _run_locked(
            spec, store, run_dir, resume, task, parts, program, budget, make_setup, console, backends
        )
    finally:
        lock.release()


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
) -> RunOutcome:
    """The run itself, while this process holds its lock (see `prompthone.store.lock`)."""
    db = store.path or run_dir / CACHE_DB
    shared = open_cache() if lm_settings.cache_enabled() else None
    run_cache = ResponseCache(db, fallback=shared, owns_file=False)  # never moved aside: it holds the run
    lms = role_lms(spec, run_cache, backends)
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
        start_test = await _score_test(on_test, None, parts.test, "start", console)
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
        final_test = await _score_test(on_test, result.best, parts.test, "result", console)
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


def _cost(budget: Budget, lm: LM, c) -> float:
    if c.cached:
        return 0.0
    p_in, p_out = budget.prices.get(lm.model, (0.0, 0.0))
    return (c.prompt_tokens * p_in + c.completion_tokens * p_out) / 1e6


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


def write_outcome(outcome: RunOutcome, program, *, metric_name: str) -> dict[str, Any]:
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
        "metric": metric_name,
        "seed": spec.seed,
        "splits": {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test},
        **{
            key: {"score": r.mean, "ci95": r.ci95, "n": r.n}
            for key, r in (("start_test", outcome.start_test), ("final_test", outcome.final_test))
            if r.n
        },
        "best_val": r.best_score,
        "start_val": r.start_score,
        "best_candidate": r.best.hash,
        "start_candidate": Candidate.default(program).hash,
        "stopped_by": r.stopped_by,
        "usage_by_role": outcome.usage,
        "usage_test_scoring": outcome.test_usage,
        "wall_s": outcome.wall_s,
        "optimize_wall_s": outcome.optimize_wall_s,
        "proposals": outcome.proposals,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run_dir / "best_candidate.json").write_text(r.best.to_json(indent=2))
    (run_dir / "best_prompts.txt").write_text(render_prompts(program, r.best).as_text())
    return summary
