"""A run read back from its store into plain values: what `report`, `show`, `compare` and `export` present.

All four read the same `RunData`, so a number is computed once and the HTML report, the terminal and an
exported file can never disagree about it. Reading never writes: a name that is not a run folder is
rejected before a store is opened, and a store is opened read-only. Nor does reading import the user's
program: the run recorded its modules (`prompthone.program.stored`), and they are rebuilt from there.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompthone.program import Candidate, CandidateError, Program
from prompthone.program.stored import program_from_spec
from prompthone.sqlurl import StoreUnavailableError, safe_url
from prompthone.store import RUN_DB, STORE_POINTER, RunStore, database_url, is_run_folder
from prompthone.store.broken import STORE_ERRORS, BrokenRunError, explain, open_run

RUNS_DIR = Path("prompthone-runs")


class RunDataError(LookupError):
    """A run cannot be found or read; the message says which and what to do."""


def resolve_run(run: str | Path, runs_dir: Path = RUNS_DIR) -> tuple[str, Path | None]:
    """(database URL, run folder or None) for a run folder path, a run name under `runs_dir`, a unique
    prefix of one, a `run.sqlite` path, or a database URL (for a store that is not a SQLite file)."""
    s = str(run)
    if "://" in s:
        return s, None
    p = Path(s)
    if p.is_file() and p.name == RUN_DB:
        p = p.parent
    if is_run_folder(p):
        return database_url(p), p
    under = runs_dir / s
    if is_run_folder(under):
        return database_url(under), under
    # A prefix names a run under runs_dir; an absolute path that is no run folder has nothing to match.
    prefix_ok = bool(s) and not p.is_absolute()
    matches = sorted(d for d in runs_dir.glob(f"{glob_escape(s)}*") if is_run_folder(d)) if prefix_ok else []
    if len(matches) == 1:
        return database_url(matches[0]), matches[0]
    if len(matches) > 1:
        names = ", ".join(d.name for d in matches[:6]) + (" ..." if len(matches) > 6 else "")
        raise RunDataError(f"{s!r} matches {len(matches)} runs in {runs_dir}: {names}; give the full name")
    where = f"{p} is not" if under == p else f"neither {p} nor {under} is"
    raise RunDataError(
        f"no run {s!r}: {where} a run folder (a folder holding {RUN_DB} or {STORE_POINTER}); "
        f"`prompthone runs` lists the runs in {runs_dir}"
    )


def glob_escape(text: str) -> str:
    """Escape glob metacharacters so a run name is matched literally as a prefix."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@dataclass(frozen=True)
class Score:
    """A mean score and its 95% confidence interval, as the runner stored it."""

    mean: float
    lo: float
    hi: float

    @classmethod
    def from_result(cls, d: Any) -> Score | None:
        if not isinstance(d, dict) or d.get("score") is None:
            return None
        lo, hi = (d.get("ci95") or (math.nan, math.nan))[:2]
        return cls(float(d["score"]), float(lo), float(hi))

    def fmt(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} (95% CI {self.lo:.{digits}f}–{self.hi:.{digits}f})"


@dataclass
class RunData:
    """Everything the store holds about one run, plus its program rebuilt from what the store recorded.

    `start` is the candidate the run started from and `best` the one it chose; the `*_note` fields say
    in words where a value came from when it is not the obvious place (an interrupted run has no result,
    so its best is the best full-validation trial so far).
    """

    id: str
    url: str
    folder: Path | None
    status: str
    created_at: float
    updated_at: float
    config: dict[str, Any]
    manifest: dict[str, Any]
    result: dict[str, Any]
    trials: list[dict[str, Any]]
    candidates: dict[str, Candidate]
    lm_calls: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    events: list[dict[str, Any]]
    program: Program | None = None
    program_note: str | None = None
    start: Candidate | None = None
    start_note: str | None = None
    best: Candidate | None = None
    best_note: str | None = None
    #: the evaluator's per-example records (validation and test alike) of the start and best candidates
    start_records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    best_records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    # -- what was run ---------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        from prompthone.tasks.user import task_label

        return task_label(self.config.get("task", "?"))

    @property
    def optimizer(self) -> str:
        return str(self.config.get("optimizer", "?"))

    @property
    def task_model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def proposer_model(self) -> str:
        return str(self.config.get("proposer_model") or self.config.get("model", "?"))

    @property
    def stopped_by(self) -> str:
        if self.result.get("stopped_by"):
            return str(self.result["stopped_by"])
        return {
            "running": "(still running, or killed)",
            "failed": "(failed)",
            "interrupted": "(interrupted: resume it)",
        }.get(self.status, "-")

    @property
    def error(self) -> str | None:
        return self.result.get("error")

    # -- scores ---------------------------------------------------------------------------------------
    @property
    def start_test(self) -> Score | None:
        return Score.from_result(self.result.get("start_test"))

    @property
    def final_test(self) -> Score | None:
        return Score.from_result(self.result.get("final_test"))

    @property
    def full_trials(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["full"]]

    @property
    def best_val(self) -> float | None:
        """The chosen candidate's validation score: the stored result's, else the best full trial's."""
        v = self.result.get("best_val")
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return float(v)
        scores = [t["score"] for t in self.full_trials if t["score"] is not None]
        return max(scores) if scores else None

    @property
    def start_val(self) -> float | None:
        v = self.result.get("start_val")
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return float(v)
        if self.start is not None:
            for t in self.full_trials:
                if t["candidate"] == self.start.hash:
                    return t["score"]
        return None

    def best_so_far(self) -> list[float | None]:
        """Best full-validation score after each trial, None before the first (as `OptimizationResult`)."""
        out: list[float | None] = []
        best: float | None = None
        for t in self.trials:
            if t["full"] and t["score"] is not None and (best is None or t["score"] > best):
                best = t["score"]
            out.append(best)
        return out

    # -- spending -------------------------------------------------------------------------------------
    @property
    def wall_s(self) -> float:
        """The runner's own wall time when the run finished; else the time between its first and last row."""
        if self.result.get("wall_s") is not None:
            return float(self.result["wall_s"])
        return max(0.0, self.updated_at - self.created_at, self._last_ts() - self.created_at)

    def _last_ts(self) -> float:
        stamps = [c["ts"] for c in self.lm_calls] + [t["ts"] for t in self.trials]
        return max(stamps, default=self.created_at)

    def totals(self) -> dict[str, float]:
        """Sums over every role and model of `usage` (paid = not served from a cache)."""
        keys = ("calls", "paid_calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")
        return {k: sum(u[k] for u in self.usage) for k in keys}

    def latency_by(self) -> dict[tuple[str, str], float]:
        """Mean latency of paid calls per (role, model), in seconds."""
        acc: dict[tuple[str, str], list[float]] = {}
        for c in self.lm_calls:
            if not c["cached"]:
                acc.setdefault((c["role"], c["model"]), []).append(c["latency_s"])
        return {k: sum(v) / len(v) for k, v in acc.items()}


def rebuild_program(config: dict[str, Any], data_root: str | None = None) -> Program:
    """A built-in task's starting program, built again from a run's config (runs recorded before the
    store kept the program's modules). A user's program is never imported here: see `stored_program`."""
    from prompthone.tasks import get_task

    task = config.get("task")
    if not task:
        raise RunDataError("the run's config names no task, so its program cannot be rebuilt")
    if not isinstance(task, str):
        raise RunDataError(
            "the run was recorded before prompthone kept a program's modules in its store, and read commands "
            "never import your program module; re-run it (or resume it) with this version to show its signatures"
        )
    root = data_root if data_root is not None else config.get("data_root")
    return get_task(task).make_program(root)


def stored_program(config: dict[str, Any], manifest: dict[str, Any], data_root: str | None = None) -> Program:
    """The run's program as its store recorded it (`program_spec`); for older runs, a built-in task's."""
    spec = manifest.get("program_spec")
    if spec is None:
        return rebuild_program(config, data_root)
    try:
        return program_from_spec(spec)
    except ValueError as exc:
        raise RunDataError(f"the program recorded in the run's manifest cannot be read: {exc}") from None


def _server_errors_as_run_data_errors(load: Any) -> Any:
    """A run store whose server cannot be reached is one line for `show`, `report` and `export`."""

    @functools.wraps(load)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return load(*args, **kwargs)
        except StoreUnavailableError as exc:
            raise RunDataError(str(exc)) from None

    return call


@_server_errors_as_run_data_errors
def load_run(run: str | Path, *, runs_dir: Path = RUNS_DIR, data_root: str | None = None) -> RunData:
    """Read one run (see `resolve_run` for what `run` may be) and work out its start and best candidates.

    `data_root` overrides the data folder of the run's config when rebuilding its program (a task such as
    hotpotqa needs its data to build the program; the data may have moved since the run).
    """
    url, folder = resolve_run(run, runs_dir)
    try:
        store, row = open_run(url, read_only=True)  # reading never writes, so a read-only folder works too
    except BrokenRunError as exc:
        raise RunDataError(str(exc)) from None
    try:
        return _read(store, row, url, folder, data_root)
    except STORE_ERRORS as exc:  # a page past the readable part of a truncated file, ...
        raise RunDataError(explain(url, exc)) from None
    finally:
        store.close()


def _read(store: RunStore, row: dict[str, Any], url: str, folder: Path | None, data_root: str | None) -> RunData:
    trials = store.trials()
    hashes = list(dict.fromkeys(t["candidate"] for t in trials))
    result = row["result"] or {}
    if result.get("best_candidate") and result["best_candidate"] not in hashes:
        hashes.append(result["best_candidate"])
    candidates = {h: store.candidate(h) for h in hashes}
    data = RunData(
        id=row["id"],
        url=safe_url(url),  # shown in the report's footer
        folder=folder,
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        config=row["config"] or {},
        manifest=row["manifest"] or {},
        result=result,
        trials=trials,
        candidates=candidates,
        lm_calls=store.lm_calls(),
        usage=store.lm_usage(),
        events=store.events(),
    )
    _attach_program(data, data_root)
    _choose_best(data)
    try:  # the score cache is a cache: a damaged one costs the per-example tables, not the run
        if data.start is not None:
            data.start_records = store.score_records(data.start.hash)
        if data.best is not None:
            data.best_records = store.score_records(data.best.hash)
    except STORE_ERRORS:
        data.start_records, data.best_records = [], []
    return data


def _attach_program(data: RunData, data_root: str | None) -> None:
    """Rebuild the program from the store (older runs: a built-in task's code) and decide the start candidate.

    Every optimizer scores its start first, so trial 0 is the start; the rebuilt program's default is
    preferred when the run did score it (then it is certainly the start), and a mismatch is reported:
    for an older run rebuilt from code, it means the built-in task's starting prompt changed since.
    """
    try:
        data.program = stored_program(data.config, data.manifest, data_root)
        default = Candidate.default(data.program)
    except RunDataError as exc:
        data.program, default = None, None
        data.program_note = str(exc)
    except Exception as exc:  # any failure to rebuild only costs signatures and a verified start
        data.program, default = None, None
        data.program_note = f"the program could not be rebuilt ({type(exc).__name__}: {exc})"
    first = data.candidates.get(data.trials[0]["candidate"]) if data.trials else None
    if default is not None and (default.hash in data.candidates or first is None):
        data.start = default
        if first is None:
            data.start_note = "the run scored no candidate; the start is the task's starting program"
    elif first is not None:
        data.start = first
        data.start_note = "the start is the run's first scored candidate" + (
            "; the task's current starting prompt differs from it" if default is not None else ""
        )
    if data.program is not None and data.start is not None:
        try:
            data.start.check(data.program)
        except CandidateError as exc:
            data.program_note = f"the rebuilt program does not fit the run's candidates: {exc}"
            data.program = None


def _choose_best(data: RunData) -> None:
    h = data.result.get("best_candidate")
    if h and h in data.candidates:
        data.best = data.candidates[h]
        return
    best: dict[str, Any] | None = None
    for t in data.full_trials:  # the first of equal scores wins, as in `Optimizer._record`
        if t["score"] is not None and (best is None or t["score"] > best["score"]):
            best = t
    if best is not None:
        data.best = data.candidates[best["candidate"]]
        data.best_note = f"the run has no result yet ({data.status}); best is the best full-validation trial so far"
    elif data.start is not None:
        data.best = data.start
        data.best_note = "no candidate was scored on the full validation set; showing the start"
