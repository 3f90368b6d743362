"""A run's evaluations through its work queue (`prompthone.store.chunks`): the leader's side, and the
computing of one chunk that the leader and the workers share.

The leader's evaluator (`Evaluator(dispatch=QueueDispatch(...))`) keeps what it always did, the score
cache and twin evaluations, and hands the rest to `QueueDispatch.evaluate`: the examples are published
in chunks: up to `chunk_size` examples as one, larger evaluations (a MIPRO minibatch trial of 35, a full
validation, the test split) in chunks of `split_size` (two rounds of a process's requests), and
the evaluation waits for their records. Meanwhile the leader is a worker too: one poller per leader
checks which chunks are finished, claims chunks to compute itself, renews its leases and, during the
search, checks the run's budget, so that a budget stop (which refuses every process's calls) ends the
wait instead of leaving it hanging. The leader leaves the first pick to the workers: it takes a chunk at
once only while it computes none and no worker has finished one lately (a run alone is not slowed
down); otherwise only a chunk that waited `grace_s` with no worker taking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator, ExampleRecord
from prompthone.lm import errors as lm_errors
from prompthone.optimize.budget import BudgetExhausted
from prompthone.program import Candidate
from prompthone.sqlurl import StoreUnavailableError, is_server_url, retrying_for
from prompthone.store.chunks import ChunkQueue, ChunkSpec, Claimed, Finished, chunk_id, worker_id
from prompthone.store.lock import _pid_alive

#: evaluations up to this size are one chunk (one process scores them); larger ones are split into chunks
#: of `QueueDispatch.split_size`. Small, so that MIPRO's trials spread too: with 40, a batch of 8 minibatch
#: trials of 35 was 7-8 chunks, two rounds on 4 processes, the second not full (measured 1.75x / 2.73x the
#: trial rate of one process with 2 / 4; with 16, 1.86x / 3.31x: docs/benchmarks.md)
CHUNK_SIZE = 16


class ChunkMismatchError(RuntimeError):
    """A chunk asks for a score this process cannot compute the same way (its program, data, models or
    options differ from the leader's: the score keys disagree)."""


class RemoteChunkError(RuntimeError):
    """A worker failed a chunk with an error that is not an LM error (its message says which)."""


class ExampleIndex:
    """A run's examples by id, to find a chunk's examples in this process's own copy of the run."""

    def __init__(self, examples: Iterable[Example]) -> None:
        self._by_id: dict[str, list[Example]] = {}
        for ex in examples:
            self._by_id.setdefault(ex.id, []).append(ex)

    def resolve(
        self, evaluator: Evaluator, candidate: Candidate, ids: Sequence[str], keys: Sequence[str]
    ) -> list[Example]:
        """The examples `ids`, checked against the publisher's score `keys`."""
        out = []
        for ex_id, key in zip(ids, keys, strict=True):
            found = [ex for ex in self._by_id.get(ex_id, []) if evaluator.score_keys(candidate, [ex])[0] == key]
            if not found:
                raise ChunkMismatchError(
                    f"example {ex_id!r} of a chunk does not score the same here as in the run's leader (its score "
                    "key differs): this process's program, data, models or options are not the run's; give it the "
                    "run's data (--data-root) and the same package version"
                )
            out.append(found[0])
        return out


async def compute_chunk(evaluator: Evaluator, candidate: Candidate, examples: Sequence[Example]) -> list[ExampleRecord]:
    """Score one chunk with a local evaluator (no dispatch, errors allowed: the leader applies its own
    `max_errors` to the whole evaluation)."""
    result = await evaluator.evaluate(candidate, examples, description="chunk")
    return result.records


def give_back(queue: ChunkQueue, chunk: str, worker: str) -> None:
    """Release a chunk on the way out; a server that is away is not waited for (the lease runs out)."""
    with retrying_for(2.0), contextlib.suppress(Exception, StoreUnavailableError):
        queue.release(chunk, worker)


def beat_every(queue: ChunkQueue) -> float:
    """Seconds between heartbeats: often enough that a withdrawn chunk stops being computed at once."""
    return min(1.0, queue.lease_s / 3)


def error_info(exc: BaseException, worker: str) -> dict[str, Any]:
    """A chunk's error as stored, so the leader can raise it again as what it was."""
    return {"type": type(exc).__name__, "message": str(exc), "status": getattr(exc, "status", None),
            "role": getattr(exc, "role", None), "model": getattr(exc, "model", None),
            "limit": getattr(exc, "limit", None), "worker": worker}  # fmt: skip


def rebuilt_error(info: dict[str, Any]) -> Exception:
    """The exception a chunk failed with in another process: an LM error of the same type (a refused key
    fails the run as it would locally), or `RemoteChunkError`."""
    if info.get("type") == BudgetExhausted.__name__:  # the run's budget refused the worker's call: a stop
        return BudgetExhausted(str(info.get("limit")), str(info.get("message")))
    cls = getattr(lm_errors, str(info.get("type")), None)
    if isinstance(cls, type) and issubclass(cls, lm_errors.LMError):
        exc = cls(str(info.get("message")), model=info.get("model"), status=info.get("status"))
        exc.role = info.get("role")
        return exc
    return RemoteChunkError(f"worker {info.get('worker')} failed a chunk: {info.get('type')}: {info.get('message')}")


class QueueDispatch:
    """The leader's dispatch (see the module docstring). `budget_check` is set during the search only
    (test scoring is not bounded); `close()` gives back what this process claimed and did not finish."""

    def __init__(
        self,
        queue: ChunkQueue,
        compute: Evaluator,
        examples: ExampleIndex,
        *,
        chunk_size: int = CHUNK_SIZE,
        split_size: int | None = None,
        poll_s: float = 0.05,
        max_poll_s: float = 0.2,  # 0.5 made each batch of trials wait up to 0.5 s after its last chunk
        local_slots: int = 8,
        shared_slots: int = 2,
        grace_s: float = 0.4,
        workers_seen_s: float = 30.0,
        reap_every_s: float = 5.0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        self.queue, self.compute, self.index = queue, compute, examples
        self.chunk_size, self.poll_s, self.max_poll_s = chunk_size, poll_s, max_poll_s
        #: the chunks of an evaluation larger than `chunk_size` (a full validation, the test split): two rounds
        #: of a process's requests in flight, so that every process gets a share of it (measured: chunks of 40
        #: made a 60-example validation one 4 s chunk and one 2 s chunk, whatever the number of workers)
        self.split_size = split_size or 2 * compute.concurrency
        self.local_slots, self.grace_s, self.reap_every_s = local_slots, grace_s, reap_every_s
        #: chunks the leader computes at once while workers are about: as many as each worker does (two share
        #: a process's requests in flight), so it never holds chunks its requests cannot serve yet while a
        #: worker waits for work (measured: claiming up to `local_slots` left one worker beside the leader
        #: idle, 1.04x the leader alone's trial rate)
        self.shared_slots = shared_slots
        self.workers_seen_s = workers_seen_s
        self._seen_worker = float("-inf")
        self._withdrew_at = float("-inf")  # when a chunk this process waited for was last done by another
        self.me = worker_id()
        self.budget_check: Callable[[], None] | None = None
        #: candidate hash -> examples each process computed in its last evaluation (for `ph_trials.worker`)
        self.workers_of: dict[str, Counter[str]] = {}
        #: chunks this process computed and completed first
        self.chunks_done = 0
        self._waiting: dict[str, asyncio.Future] = {}
        self._examples: dict[str, Example] = {}
        self._local: dict[str, asyncio.Task] = {}
        self._local_errors: dict[str, BaseException] = {}
        self._used: set[str] = set()
        self._poller: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None

    # -- the leader's evaluations ---------------------------------------------------------------------------
    async def evaluate(
        self,
        evaluator: Evaluator,
        candidate: Candidate,
        examples: Sequence[Example],
        keys: Sequence[str],
        advance: Callable[[], None],
    ) -> list[ExampleRecord]:
        options = {"metric": evaluator.metric.name, "lm_options": evaluator.lm_options}
        done: dict[str, Finished] = {}
        specs: list[ChunkSpec] = []
        size = len(examples) if len(examples) <= self.chunk_size else self.split_size
        for at in range(0, len(examples), size):
            part, ks = examples[at : at + size], list(keys[at : at + size])
            specs.append(
                ChunkSpec(chunk_id(candidate.hash, ks), candidate.to_json(), [e.id for e in part], ks, options)
            )
        for k, ex in zip(keys, examples, strict=True):
            self._examples[k] = ex
        loop = asyncio.get_running_loop()
        futures = {s.id: loop.create_future() for s in specs}
        self._waiting.update(futures)
        try:
            await asyncio.to_thread(self.queue.publish, specs, again=[s.id for s in specs if s.id in self._used])
            self._start_poller()
            for next_done in asyncio.as_completed(list(futures.values())):
                fin: Finished = await next_done
                done[fin.id] = fin
                self._used.add(fin.id)
                if fin.status == "failed":
                    local = self._local_errors.pop(fin.id, None)
                    raise local if local is not None else rebuilt_error(fin.error or {})
                for _ in fin.records or []:
                    advance()
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._withdraw, [s.id for s in specs if s.id not in done]))
            raise
        finally:
            for s in specs:
                self._waiting.pop(s.id, None)
            for k in keys:
                self._examples.pop(k, None)
        tally: Counter[str] = Counter()
        records: list[ExampleRecord] = []
        for s in specs:
            rows = done[s.id].records or []
            tally[done[s.id].done_by or self.me] += len(rows)
            records.extend(ExampleRecord.from_dict(r) for r in rows)
        self.workers_of[candidate.hash] = tally
        return records

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait (up to `timeout_s`) until no process computes a chunk of the run and a withdrawn chunk has
        had time to be stopped, so that every call made for the run is recorded when it is counted."""
        deadline = time.monotonic() + timeout_s
        quiet_at = self._withdrew_at + 2 * beat_every(self.queue)
        while time.monotonic() < deadline:
            if time.monotonic() >= quiet_at and not await asyncio.to_thread(self.queue.claimed):
                return
            await asyncio.sleep(0.1)

    def _withdraw(self, ids: list[str]) -> None:
        """Take back the unfinished chunks of a stopped evaluation; not worth waiting for a server that is
        away (a chunk left behind is computed by someone and only costs its calls)."""
        if not ids:
            return
        self._withdrew_at = time.monotonic()
        with retrying_for(2.0), contextlib.suppress(Exception, StoreUnavailableError):
            self.queue.withdraw(ids)

    def worker_of(self, candidate_hash: str) -> str:
        """The process that computed most of `candidate_hash`'s last evaluation (this one when the score
        cache answered all of it)."""
        tally = self.workers_of.get(candidate_hash)
        return tally.most_common(1)[0][0] if tally else self.me

    # -- the poller: finished chunks, the leader's own share, leases, budget ------------------------------------
    def _start_poller(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        assert self._wake is not None
        delay, beat, reaped = self.poll_s, time.monotonic(), 0.0
        try:
            while self._waiting or self._local:
                self._wake.clear()
                found = await asyncio.to_thread(self.queue.finished, list(self._waiting))
                for fin in found:
                    if fin.done_by != self.me:
                        self._seen_worker = time.monotonic()
                    future = self._waiting.pop(fin.id, None)
                    if future is not None and not future.done():
                        future.set_result(fin)
                if self.budget_check is not None and self._waiting:  # what is finished is used first
                    try:
                        self.budget_check()
                    except BudgetExhausted as exc:
                        # a chunk being computed ends by itself (its next call is refused; the calls in
                        # flight finish and are recorded): only work nobody computes is stopped here
                        if not await asyncio.to_thread(self.queue.claimed, list(self._waiting)):
                            self._settle_all(exc)
                            continue
                if time.monotonic() - reaped > self.reap_every_s:
                    reaped = time.monotonic()
                    await asyncio.to_thread(self.queue.reap, _pid_alive)
                alone = time.monotonic() - self._seen_worker > self.workers_seen_s
                while self._waiting and len(self._local) < (self.local_slots if alone else self.shared_slots):
                    age = 0.0 if alone and not self._local else self.grace_s
                    claimed = await asyncio.to_thread(self.queue.claim, self.me, min_age_s=age)
                    if claimed is None:
                        break
                    self._local[claimed.id] = asyncio.create_task(self._compute(claimed))
                if self._local and time.monotonic() - beat > beat_every(self.queue):
                    beat = time.monotonic()
                    held = await asyncio.to_thread(self.queue.heartbeat, list(self._local), self.me)
                    for chunk, task in list(self._local.items()):
                        if chunk not in held:  # withdrawn (its evaluation stopped) or done by another
                            task.cancel()
                delay = self.poll_s if found else min(delay * 1.5, self.max_poll_s)
                if not self._wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
        except BaseException as exc:  # the store is away for good, or the run is cancelled: every wait ends
            self._settle_all(exc)
            if not isinstance(exc, Exception):
                raise

    def _settle_all(self, exc: BaseException) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(exc)
        self._waiting.clear()

    async def _compute(self, claimed: Claimed) -> None:
        try:
            candidate = Candidate.from_json(claimed.candidate)
            examples = [self._examples.get(k) for k in claimed.keys]
            if any(ex is None for ex in examples):  # a chunk no evaluation of this process waits for
                examples = self.index.resolve(self.compute, candidate, claimed.example_ids, claimed.keys)
            records = await compute_chunk(self.compute, candidate, examples)  # type: ignore[arg-type]
        except Exception as exc:  # raised in the evaluation that waits for it, as a local evaluation would
            self._local_errors[claimed.id] = exc
            await asyncio.to_thread(self.queue.fail, claimed.id, self.me, error_info(exc, self.me))
        except BaseException:
            await asyncio.shield(asyncio.to_thread(give_back, self.queue, claimed.id, self.me))
            raise
        else:
            if await asyncio.to_thread(self.queue.complete, claimed.id, self.me, [r.to_dict() for r in records]):
                self.chunks_done += 1
        finally:
            self._local.pop(claimed.id, None)
            if self._wake is not None:
                self._wake.set()

    async def close(self) -> None:
        """Stop computing: the chunks this process was computing are withdrawn (the run's evaluations are
        over; a resumed run publishes again what it needs)."""
        ids, tasks = list(self._local), list(self._local.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self._withdraw, ids)
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)


#: a chunk's own evaluation never fails on errors: they go back in its records, and the leader's
#: evaluation applies the run's `max_errors` to the whole
NO_ERROR_LIMIT = 10**9


def chunk_evaluator(evaluator: Evaluator) -> Evaluator:
    """The evaluator that computes chunks in this process: `evaluator`'s program, metric, LMs, options and
    score cache, scoring locally and keeping every error as a record."""
    return Evaluator(evaluator.program, evaluator.metric, evaluator.lm, concurrency=evaluator.concurrency,
                     max_errors=NO_ERROR_LIMIT, score_cache=evaluator.score_cache, lm_for=evaluator.lm_for,
                     keep_traces=False, **evaluator.lm_options)  # fmt: skip


def leader_dispatch(store: Any, evaluator: Evaluator, examples: Iterable[Example]) -> QueueDispatch | None:
    """The dispatch of a run's leader on a server store (None for a SQLite run: one process scores it)."""
    if not is_server_url(store.url):
        return None
    return QueueDispatch(ChunkQueue(store.engine, store.url), chunk_evaluator(evaluator), ExampleIndex(examples))
