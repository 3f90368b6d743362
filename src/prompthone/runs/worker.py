"""`prompthone worker RUN`: one more process working on a run whose store is on a database server.

A worker rebuilds the run from its stored config (task, splits, program, metric, one LM per role), then
claims chunks from the run's work queue (`prompthone.store.chunks`), scores them with its own LMs and
writes the records back; the answers and scores it buys go to the run's caches, every call it makes to
the run's `ph_lm_calls` with its name ("host:pid"). It never runs the method: the leader, the process
holding the run's lock, does, so the run's choices do not depend on how many workers there are. When
the lock is free or stale (the leader was killed), the worker takes it and resumes the run as its leader
(replaying from the caches, it pays for nothing twice). It leaves when the run is completed or failed (a
failed run needs a person, not a retry), or when it cannot reach the model server: it gives its chunk
back and says so in the run's events, and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from prompthone.evaluate import Evaluator, ExampleRecord, ScoreCache
from prompthone.lm import LM, ResponseCache, open_cache
from prompthone.lm import errors as lm_errors
from prompthone.lm import settings as lm_settings
from prompthone.lm.errors import permanent_error_in
from prompthone.optimize.budget import BudgetExhausted
from prompthone.program import Candidate
from prompthone.runs.dispatch import (
    ChunkMismatchError,
    ExampleIndex,
    beat_every,
    chunk_evaluator,
    compute_chunk,
    error_info,
    give_back,
)
from prompthone.runs.roles import call_cost, role_backends, role_lms
from prompthone.runs.shared_budget import SharedBudget
from prompthone.runs.spec import RunSpec
from prompthone.runs.splits import splits_for
from prompthone.sqlurl import call_with_retry, describe, is_server_url
from prompthone.store import RunStore, database_url, is_run_folder, point_to_store
from prompthone.store.chunks import ChunkQueue, Claimed, worker_id
from prompthone.store.lock import RunLock, _pid_alive
from prompthone.tasks import get_task
from prompthone.tasks.user import PYTHON_SOURCE

#: exit code of a worker pointed at a run it cannot join (a SQLite run, a task given in Python)
CANNOT_JOIN = 2
#: the LM errors that say the model server could not be reached or kept failing (retried, then given up)
UNREACHABLE = tuple(
    name
    for name, cls in vars(lm_errors).items()
    if isinstance(cls, type) and issubclass(cls, lm_errors.LMError) and cls.retryable
)


class WorkerError(Exception):
    """Why a worker cannot start or must stop, in one line; `code` is its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def sqlite_message(where: str) -> str:
    return (
        f"{where} is a SQLite run, which is single-process: no worker can join it; start a run that workers can "
        "join with `prompthone optimize CONFIG --store postgresql+psycopg://HOST/DB`, then `prompthone worker "
        "RUN_FOLDER` (or --workers N)"
    )


@dataclass
class WorkerReport:
    """What a worker did before it left."""

    worker: str
    why: str
    chunks: int = 0
    paid_calls: int = 0
    cached_calls: int = 0
    led: bool = False
    code: int = 0

    def line(self) -> str:
        return (
            f"worker {self.worker} leaves: {self.why}; {self.chunks} chunk{'s' * (self.chunks != 1)} computed, "
            f"{self.paid_calls} LM calls paid, {self.cached_calls} answered from the cache"
        )


def resolve_target(target: str) -> tuple[str, Path | None]:
    """The run's store URL and its folder (None when given the URL): a worker joins server runs only."""
    if "://" in target:
        if not is_server_url(target):
            raise WorkerError(sqlite_message(target), CANNOT_JOIN)
        return target, None
    folder = Path(target)
    if not folder.is_dir() or not is_run_folder(folder):
        raise WorkerError(
            f"{folder} is not a run folder (no run.sqlite or store.json in it); give a run folder or the run's "
            "store URL (postgresql+psycopg://HOST/DB)",
            CANNOT_JOIN,
        )
    url = database_url(folder)
    if not is_server_url(url):
        raise WorkerError(sqlite_message(f"{folder}"), CANNOT_JOIN)
    return url, folder


class Worker:
    """One worker on one run (see the module docstring); `await run()` until it leaves."""

    def __init__(
        self,
        target: str,
        *,
        out_dir: Path = Path("prompthone-runs"),
        console: Console | None = None,
        data_root: str | None = None,
        poll_s: float = 0.05,
        max_poll_s: float = 0.2,
        check_every_s: float = 1.0,
        slots: int = 2,
    ) -> None:
        self.url, self.folder = resolve_target(target)
        #: chunks computed at once: two share the process's requests in flight (`--concurrency`), so the end
        #: of one chunk, when fewer of its examples are left than requests allowed, does not leave them idle
        self.slots = slots
        self.out_dir, self.console = out_dir, console or Console(quiet=True)
        self.poll_s, self.max_poll_s, self.check_every_s = poll_s, max_poll_s, check_every_s
        self.me = worker_id()
        self.report = WorkerReport(self.me, "")
        #: set before a chunk is given back on the way out, so the loop claims nothing more (with several
        #: slots it could otherwise take the chunk just given back, and compute it again while leaving)
        self.leaving = False
        self.store = RunStore(self.url, read_only=True)  # the leader made the tables; a worker only adds rows
        try:
            self.row = self.store.run_row()
        except LookupError:
            raise WorkerError(
                f"the database {describe(self.url)} holds no run yet: start one with `prompthone optimize CONFIG "
                "--store URL`, then join it"
            ) from None
        config = self.row["config"] or {}
        if isinstance(config.get("task"), Mapping) and config["task"].get("source") == PYTHON_SOURCE:
            raise WorkerError(
                "this run was made from a task given in Python (prompthone.optimize(...)), which a worker cannot "
                "rebuild from the store: it cannot be joined",
                CANNOT_JOIN,
            )
        self.spec = RunSpec.from_config(config)
        if data_root is not None:
            self.spec.data_root = data_root
        self._build()

    def _build(self) -> None:
        """The run as the leader built it: task, splits, program, metric and this worker's own LMs."""
        from prompthone.runs.runner import _metric

        spec = self.spec
        task = get_task(spec.task)
        parts = splits_for(spec, task)
        program = task.make_program(spec.data_root)
        program.adopt_start_formats(spec.task_start_format())  # the start the leader hashed
        backends = role_backends(spec)  # a model this host cannot use is said before any chunk is taken
        cache, scores = self._caches()
        self.lms: dict[str, LM] = role_lms(spec, cache, backends)
        budget = SharedBudget.join(self.store, spec.budget.limits())
        budget.attach(self.lms)  # every paid call reserves itself in the run's budget, with everyone else's
        for role, lm in self.lms.items():
            lm.listeners.append(lambda c, r=role, m=lm: self.store.record_lm_call(r, c, call_cost(budget, m, c)))
        metric = _metric(spec, task, self.lms.get("judge"))
        base = Evaluator(program, metric, self.lms["task"], concurrency=spec.concurrency, score_cache=scores,
                         max_tokens=spec.max_tokens)  # fmt: skip
        self.compute = chunk_evaluator(base)
        self.index = ExampleIndex([*parts.train, *parts.val, *parts.test])
        self.queue = ChunkQueue(self.store.engine, self.url)

    def _caches(self) -> tuple[ResponseCache, ScoreCache]:
        """The run's response and score caches, in its database: shared with the leader and the other
        workers, so an answer or a score one of them bought is never bought again (reading through to the
        user's own response cache, as the leader does)."""
        shared = open_cache() if lm_settings.cache_enabled() else None
        return ResponseCache(self.url, fallback=shared, owns_file=False), ScoreCache(self.url)

    # -- the loop ---------------------------------------------------------------------------------------------------
    async def run(self) -> WorkerReport:
        self.console.print(
            f"worker {self.me} joins run {self.row['id']} ({describe(self.url)}): {self.spec.optimizer} on "
            f"{self.spec.task_name}",
            highlight=False,
        )
        delay, next_check = self.poll_s, 0.0
        running: set[asyncio.Task[bool]] = set()
        try:
            while True:
                finished = {t for t in running if t.done()}
                running -= finished
                if not all(t.result() for t in finished):  # one of them must leave (it said why)
                    break
                if len(running) < self.slots and not self.leaving:
                    claimed = await asyncio.to_thread(self.queue.claim, self.me)
                    if claimed is not None:
                        running.add(asyncio.create_task(self._chunk(claimed)))
                        delay = self.poll_s
                        continue
                if not running and time.monotonic() >= next_check:  # idle: has the run ended, or lost its leader?
                    next_check = time.monotonic() + self.check_every_s
                    if await self._leaving():
                        break
                if running:
                    await asyncio.wait(running, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(delay)
                delay = min(delay * 1.5, self.max_poll_s)
        finally:  # leaving (or stopped): the chunks still computing end first, each gives itself back if stopped
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        usage = [lm.usage for lm in {id(lm): lm for lm in self.lms.values()}.values()]
        self.report.paid_calls += sum(u.paid_calls for u in usage)
        self.report.cached_calls += sum(u.calls - u.paid_calls for u in usage)
        self.console.print(self.report.line(), highlight=False)
        return self.report

    async def _leaving(self) -> bool:
        """Whether to stop working: the run ended, or its leader is gone and this worker led it to its end."""
        status = (await asyncio.to_thread(self.store.run_row))["status"]
        if status in ("completed", "failed", "interrupted"):
            self.report.why = f"the run is {status}"
            return True
        lock = RunLock(self.store, where=f"run {self.row['id']}")
        if not await asyncio.to_thread(call_with_retry, lock.try_acquire, self.url):
            await asyncio.to_thread(self.queue.reap, _pid_alive)
            return False
        await self._lead(lock)
        return True

    async def _lead(self, lock: RunLock) -> None:
        """Resume the run as its leader (the lock is held): the replay pays only for what was never bought."""
        from prompthone.runs.runner import run_optimization

        folder = self.folder or self._local_folder()
        self.console.print(f"the run's leader is gone: worker {self.me} resumes the run in {folder}", highlight=False)
        self.report.led = True
        outcome = await run_optimization(resume=folder, console=self.console, lock=lock)
        self.report.why = f"the run is completed (this worker led it from {folder})"
        _ = outcome

    def _local_folder(self) -> Path:
        """A run folder for a worker given only the store URL (a leader resumes a run folder): store.json."""
        base = self.out_dir / str(self.row["id"])
        folder, n = base, 1
        while folder.exists() and not (is_run_folder(folder) and database_url(folder) == database_url(self.url)):
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
        if not folder.exists():
            point_to_store(folder, self.url)
        return folder

    async def _chunk(self, claimed: Claimed) -> bool:
        """Compute one claimed chunk; False when this worker must leave."""
        t0 = time.perf_counter()
        paid0 = sum(lm.usage.paid_calls for lm in self.lms.values())
        candidate = Candidate.from_json(claimed.candidate)
        work = asyncio.create_task(self._compute(claimed, candidate))
        beat = asyncio.create_task(self._heartbeat(claimed.id, work))
        try:
            records = await work
        except asyncio.CancelledError:
            if beat.done() and not beat.cancelled():  # the heartbeat stopped it: the chunk was withdrawn
                self.console.print(f"chunk {claimed.id[:8]} withdrawn by the leader: stopped", highlight=False)
                return True
            await asyncio.shield(asyncio.to_thread(give_back, self.queue, claimed.id, self.me))
            raise  # this worker is stopped, not its chunk
        except BudgetExhausted as exc:  # the run's budget refused a call: a stop, which the leader reads here
            await asyncio.to_thread(self.queue.fail, claimed.id, self.me, error_info(exc, self.me))
            return True
        except Exception as exc:
            if (permanent := permanent_error_in(exc)) is not None:  # every process would fail alike: the run fails
                await asyncio.to_thread(self.queue.fail, claimed.id, self.me, error_info(permanent, self.me))
                self.console.print(f"chunk {claimed.id[:8]} failed: {permanent}", highlight=False)
                return True
            self.leaving = True
            await asyncio.to_thread(give_back, self.queue, claimed.id, self.me)
            why = str(exc) if isinstance(exc, ChunkMismatchError) else f"{type(exc).__name__}: {exc}"
            return self._leave(f"it could not compute a chunk: {why}", code=1)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(give_back, self.queue, claimed.id, self.me))
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        lost = _unreachable(records)
        if lost is not None:
            self.leaving = True
            await asyncio.to_thread(give_back, self.queue, claimed.id, self.me)
            return self._leave(f"it cannot reach the model server ({lost}); its chunk went back to the others", 1)
        if await asyncio.to_thread(self.queue.complete, claimed.id, self.me, [r.to_dict() for r in records]):
            self.report.chunks += 1
        paid = sum(lm.usage.paid_calls for lm in self.lms.values()) - paid0
        self.console.print(
            f"chunk {claimed.id[:8]}: {len(records)} examples of candidate {candidate.hash[:8]}, {paid} calls paid, "
            f"{time.perf_counter() - t0:.1f} s" + (f" (attempt {claimed.attempts})" if claimed.attempts > 1 else ""),
            highlight=False,
        )
        return True

    def _leave(self, why: str, code: int) -> bool:
        self.report.why, self.report.code = why, code
        with contextlib.suppress(Exception):
            self.store.record_event("worker", {"worker": self.me, "left": why, "chunks": self.report.chunks})
        return False

    async def _compute(self, claimed: Claimed, candidate: Candidate) -> list[ExampleRecord]:
        examples = self.index.resolve(self.compute, candidate, claimed.example_ids, claimed.keys)
        return await compute_chunk(self.compute, candidate, examples)

    async def _heartbeat(self, chunk: str, work: asyncio.Task) -> None:
        """Renew the lease while `work` computes `chunk`; stop `work` once the chunk is no longer this
        worker's (the leader withdrew it: its evaluation stopped) and return."""
        while True:
            await asyncio.sleep(beat_every(self.queue))
            if chunk not in await asyncio.to_thread(self.queue.heartbeat, [chunk], self.me):
                work.cancel()
                return


def _unreachable(records: list[ExampleRecord]) -> str | None:
    """The first error among `records` that says the model server could not be reached (after retries)."""
    for r in records:
        if r.status == "error" and r.error and r.error.split(":", 1)[0] in UNREACHABLE:
            return r.error
    return None
