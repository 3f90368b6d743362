"""Score a candidate program on examples: concurrently, with a progress bar, never hiding an error.

The evaluator is the one loop every optimizer shares. It runs the program under a candidate on each
example with bounded concurrency, scores the outputs with the metric, and returns per-example records
plus the mean and its confidence interval. Three outcomes stay apart: a scored answer, a parse failure
(counted as 0 and counted on its own) and an error (never scored; past `max_errors` the evaluation
fails loudly with `EvaluationError`). An LLM judge that gives no verdict (`JudgeError`) is an error
too: the program's answer was never judged, so it is neither right nor wrong. A permanent LM error (a
refused key, a missing model: `LMError.permanent`) is no example's error at all: every other example
would fail the same way, so it ends the evaluation at once, raised as itself, whatever `max_errors` is.
So does `BudgetExhausted` (a run's budget refused a paid call): a stop, never an example's error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prompthone.data.example import Example
from prompthone.evaluate.results import EvalResult, ExampleRecord
from prompthone.evaluate.score_cache import ScoreCache, score_key
from prompthone.lm.backend import PerLoop
from prompthone.lm.client import LM, run_sync
from prompthone.lm.errors import BudgetExhausted, budget_stop_in, permanent_error_in
from prompthone.metrics.base import Metric, MissingFieldError, as_metric
from prompthone.metrics.judge import JudgeError
from prompthone.program.candidate import Candidate
from prompthone.program.program import Program, as_program
from prompthone.program.run import RunResult, run_program
from prompthone.program.trace import ModuleCall

#: the encoder `score_key` uses (`json.dumps(..., sort_keys=True, default=str, separators=(",", ":"))`)
_SCORE_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


class Dispatch(Protocol):
    """Where an evaluator sends the examples it must score, instead of scoring them itself: a run's
    leader hands them to the run's work queue (`prompthone.runs.dispatch`), where any worker may compute
    them. The evaluator keeps what it shares with a local evaluation: the score cache and twins."""

    async def evaluate(
        self,
        evaluator: Evaluator,
        candidate: Candidate,
        examples: Sequence[Example],
        keys: Sequence[str],
        advance: Callable[[], None],
    ) -> list[ExampleRecord]:
        """One record per example, in order (`keys`: their score keys); `advance()` once per record."""
        ...


class EvaluationError(RuntimeError):
    """More examples errored than the policy allows; the partial result is attached."""

    def __init__(self, message: str, result: EvalResult) -> None:
        super().__init__(message)
        self.result = result


class Evaluator:
    """Scores candidates of one program with one metric and one task LM.

    `concurrency` bounds examples in flight (the LM bounds its own requests too); `max_errors` is how
    many examples may fail with an error before the whole evaluation raises; `score_cache` (shared by
    every optimizer of a run) serves repeated (candidate, example, metric) scores; `lm_options` go to
    every LM call (e.g. temperature=0, max_tokens=256). `dispatch` (a `Dispatch`) scores the examples
    elsewhere instead (a run's work queue, where workers compute them); None scores them here.
    It never changes the program: a module scored without a candidate is in the format it holds, so
    code that scores a start on a model of its own calls `program.adopt_start_formats(lm.start_format)`
    first, as a run and `prompthone eval` do.
    """

    def __init__(
        self,
        program: Program,
        metric: Metric | Any,
        lm: LM,
        *,
        concurrency: int = 16,
        max_errors: int = 0,
        score_cache: ScoreCache | None = None,
        progress: bool = False,
        lm_for: Mapping[str, LM] | None = None,
        keep_traces: bool = True,
        dispatch: Dispatch | None = None,
        **lm_options: Any,
    ) -> None:
        self.program = as_program(program)
        self.metric = as_metric(metric)
        self.lm = lm
        self.concurrency = int(concurrency)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        self.max_errors = int(max_errors)
        self.score_cache = score_cache if score_cache is not None else ScoreCache()
        self.progress = progress
        self.lm_for = dict(lm_for or {})
        self.keep_traces = keep_traces
        #: where the examples to score go (None: scored here, by this evaluator; see `Dispatch`)
        self.dispatch = dispatch
        self.lm_options = lm_options
        self._program_id = f"{type(self.program).__module__}.{type(self.program).__qualname__}"
        #: scores being computed right now, by score key: a twin (another trial scoring the same candidate
        #: on the same example at the same moment) waits for it, as it would read the score cache a moment
        #: later, so how many calls a run makes does not depend on how its trials happen to overlap
        self._inflight: PerLoop[dict[str, asyncio.Future]] = PerLoop(dict)
        self._lm_id = "|".join([lm.identity, *(f"{k}={v.identity}" for k, v in sorted(self.lm_for.items()))])

    def _key(self, candidate: Candidate, example: Example) -> str:
        return score_key(
            program=self._program_id,
            lm=self._lm_id,
            candidate=candidate.hash,
            example=example,
            metric=self.metric.name,
            options=self.lm_options,
        )

    def score_keys(self, candidate: Candidate, examples: Sequence[Example]) -> list[str]:
        """The score cache's key of `candidate` on each example: equal keys, equal scores (another
        process checks with them that it scores what the run's leader asked for)."""
        key = self._keyer(candidate)
        return [key(ex) for ex in examples]

    def _keyer(self, candidate: Candidate) -> Callable[[Example], str]:
        """`lambda ex: self._key(candidate, ex)`, with the parts that do not change per example encoded once.

        `score_key` hashes `json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))`; with
        sorted keys that text is the fixed fields' JSON around the example's, so it is built from pieces
        here, giving the same keys (a test checks it) at a fraction of the cost.
        """
        enc = _SCORE_KEY_JSON.encode
        head = f'{{"candidate":{enc(candidate.hash)},"example":'
        tail = (
            f',"lm":{enc(self._lm_id)},"metric":{enc(self.metric.name)},'
            f'"options":{enc(self.lm_options)},"program":{enc(self._program_id)}}}'
        )
        sha256 = hashlib.sha256

        def key(example: Example) -> str:
            return sha256((head + enc(example.to_dict()) + tail).encode()).hexdigest()

        return key

    async def evaluate(
        self, candidate: Candidate | None, examples: Sequence[Example], *, description: str = "evaluating"
    ) -> EvalResult:
        """Score `candidate` (None: the program's own prompts) on `examples`; see the class docstring."""
        candidate = candidate or Candidate.default(self.program)
        traces: dict[str, list] = {}
        key_of = self._keyer(candidate)
        records: list[Any] = [None] * len(examples)
        pending = iter(enumerate(examples))
        t0 = time.perf_counter()
        stopped = False
        with self._progress_bar(description, len(examples)) as advance:
            if self.dispatch is not None:  # the examples are scored elsewhere (a run's work queue)
                await self._dispatched(candidate, list(enumerate(examples)), key_of, records, advance)
                pending = iter(())  # every record is in: nothing is left for the workers below

            # `concurrency` workers take the examples in order, rather than one task per example
            # queued on a semaphore: with a thousand examples the semaphore's bookkeeping cost more
            # CPU than the evaluator's own work.
            async def worker() -> None:
                for i, ex in pending:
                    if stopped:
                        return
                    # each example still runs in a task of its own, in a copy of this context, as
                    # before: an async forward that sets a context variable cannot leak it into the next
                    records[i] = await asyncio.create_task(self._one(candidate, ex, traces, key_of(ex)))
                    advance()

            workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(examples)))]
            try:
                await asyncio.gather(*workers)
            except BudgetExhausted:
                # the budget refused a call: the calls in flight were paid for, so the examples being
                # scored finish (their answers cached) and no other example is started
                stopped = True
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            except BaseException:
                # a setup error (or cancellation) ends the evaluation: stop the other examples rather
                # than leave them calling the model for a result nobody reads
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
        result = EvalResult(
            candidate_hash=candidate.hash,
            records=records,
            wall_s=time.perf_counter() - t0,
            traces=traces,
        )
        if result.n_errors > self.max_errors:
            first = next(r for r in result.records if r.status == "error")
            raise EvaluationError(
                f"{result.n_errors} of {result.n} examples failed with an error "
                f"(allowed: {self.max_errors}); first, on example {first.example_id!r}: {first.error}. "
                "Fix the cause (the model server, the program) and re-run: computed scores are cached",
                result,
            )
        return result

    async def _dispatched(
        self,
        candidate: Candidate,
        items: list[tuple[int, Example]],
        key_of: Callable[[Example], str],
        records: list[Any],
        advance: Callable[[], None],
    ) -> None:
        """Fill `records` for `items` through `self.dispatch`: what the score cache holds is taken from
        it, an example a twin evaluation is scoring right now is waited for (as `_one` does), and the
        rest is handed to the dispatch in one go."""
        mine: list[tuple[int, Example, str, asyncio.Future]] = []
        twins: list[tuple[int, Example, asyncio.Future]] = []
        for i, ex in items:
            key = key_of(ex)
            if (rec := self._cached(key)) is not None:
                records[i] = rec
                advance()
            elif (claim := self._claim(key))[1]:
                mine.append((i, ex, key, claim[0]))
            else:
                twins.append((i, ex, claim[0]))
        try:
            if mine:
                got = await self.dispatch.evaluate(  # type: ignore[union-attr]
                    self, candidate, [ex for _, ex, _, _ in mine], [k for _, _, k, _ in mine], advance
                )
                for (i, _, key, future), rec in zip(mine, got, strict=True):
                    self.score_cache.put(key, candidate.hash, self.metric.name, rec)  # (errors are not kept)
                    records[i] = rec
                    self._settle(key, future, rec)
        finally:
            for _, _, key, future in mine:
                self._settle(key, future, None)
        again: list[tuple[int, Example]] = []
        for i, ex, twin in twins:
            rec = await asyncio.shield(twin)
            if rec is None:  # the twin was stopped: score it here
                again.append((i, ex))
            else:
                records[i] = _as_cached(rec)
                advance()
        if again:
            await self._dispatched(candidate, again, key_of, records, advance)

    async def trace(self, candidate: Candidate | None, example: Example) -> list[ModuleCall]:
        """The module calls behind `candidate`'s score on `example`, for a method that reads them (GRAD-SUM's
        gradients) when the score came from the score cache, which keeps no trace: the program runs again
        with this evaluator's LMs and options, so the response cache answers it and nothing is scored."""
        run = await self._run(candidate or Candidate.default(self.program), example)
        return run.trace

    async def _run(self, candidate: Candidate, example: Example) -> RunResult:
        """One run of the program on `example` under `candidate`, with this evaluator's LMs and options."""
        return await run_program(
            self.program, example.inputs, lm=self.lm, candidate=candidate, lm_for=self.lm_for, **self.lm_options
        )

    def evaluate_sync(self, candidate: Candidate | None, examples: Sequence[Example], **kw: Any) -> EvalResult:
        return run_sync(self.evaluate(candidate, examples, **kw))

    async def _one(self, candidate: Candidate, ex: Example, traces: dict[str, list], key: str) -> ExampleRecord:
        if (rec := self._cached(key)) is not None:
            return rec
        future, mine = self._claim(key)
        if not mine:
            rec = await asyncio.shield(future)
            if rec is not None:
                return _as_cached(rec)
            return await self._one(candidate, ex, traces, key)  # the twin was stopped: score it here
        rec = None
        try:
            rec = await self._score(candidate, ex, traces, key)
            return rec
        finally:
            self._settle(key, future, rec)

    def _cached(self, key: str) -> ExampleRecord | None:
        """The score cache's record for `key`, marked as cached (None: not scored yet)."""
        hit = self.score_cache.get(key)
        return None if hit is None else _as_cached(hit)

    def _claim(self, key: str) -> tuple[asyncio.Future, bool]:
        """`(future, True)` when this caller is now the one scoring `key` (it must `_settle` the future),
        `(future, False)` when a twin already is: its future gives the record, or None if it was stopped."""
        inflight = self._inflight.get()
        if (twin := inflight.get(key)) is not None:
            return twin, False
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        inflight[key] = future
        return future, True

    def _settle(self, key: str, future: asyncio.Future, rec: ExampleRecord | None) -> None:
        """Hand `rec` to the twins waiting on `key` (None: scoring stopped, a twin scores it itself)."""
        if not future.done():
            future.set_result(rec)
        inflight = self._inflight.get()
        if inflight.get(key) is future:  # (a later claim of the same key is not this caller's to drop)
            del inflight[key]

    async def _score(self, candidate: Candidate, ex: Example, traces: dict[str, list], key: str) -> ExampleRecord:
        run = await self._run(candidate, ex)
        if self.keep_traces:
            traces[ex.id] = run.trace
        common = dict(
            example_id=ex.id,
            outputs=dict(run.outputs),
            parse_failures=run.parse_failures,
            raw=run.trace[-1].raw if run.trace else "",
            latency_s=run.latency_s,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            lm_calls=sum(c.lm_calls for c in run.trace),
            cached=bool(run.trace) and all(c.cached for c in run.trace),
        )
        if run.error is not None:
            if (stop := budget_stop_in(run.error) or permanent_error_in(run.error)) is not None:
                raise stop
            return ExampleRecord(status="error", score=None, error=_describe(run.error), **common)
        try:
            result = await self.metric.ascore(ex, run.outputs)
        except MissingFieldError as exc:
            if exc.side == "label":
                raise  # a setup mistake, not a property of this candidate
            rec = ExampleRecord(status="parse_failure", score=0.0, feedback=str(exc), **common)
        except JudgeError as exc:  # the judge gave no verdict: an error, never a wrong answer
            if (stop := budget_stop_in(exc) or permanent_error_in(exc)) is not None:
                raise stop from None
            return ExampleRecord(status="error", score=None, error=_describe(exc), **common)
        else:
            rec = ExampleRecord(status="scored", score=result.score, feedback=result.feedback, **common)
        self.score_cache.put(key, candidate.hash, self.metric.name, rec)
        return rec

    def _progress_bar(self, description: str, total: int):
        return _ProgressContext(description, total, enabled=self.progress)


def _as_cached(rec: ExampleRecord) -> ExampleRecord:
    """`rec` as read back by another evaluation: the same record, marked as not computed now."""
    return ExampleRecord(**{**rec.to_dict(), "cached": True})


class _ProgressContext:
    """A rich progress bar when asked for, a no-op otherwise (tests, nested evaluations)."""

    def __init__(self, description: str, total: int, *, enabled: bool) -> None:
        self.enabled = enabled and total > 0
        self.description, self.total = description, total

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._progress.__enter__()
        task = self._progress.add_task(self.description, total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.__exit__(*exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
