"""What a metric is: (example, prediction) -> `MetricResult(score in [0, 1], feedback)`, sync or async.

One interface serves cheap string checks and, later, LLM judges: every metric has `async ascore` (what the
evaluator awaits) and a sync `score` (for scripts and tests). Plain functions are adapted by `as_metric`,
and whatever they return (bool, number, MetricResult) is checked here, so an out-of-range score fails
loudly with the metric's name instead of skewing an average.

A prediction without the compared field is *not* scored: `MissingFieldError` is raised. A missing output
means the program's reply could not be parsed, which the evaluator records as its own outcome (a parse
failure); scoring it 0 here would hide that. A present but wrong, empty or unparseable value is a
wrong answer: score 0 with feedback. A field whose value is None counts as missing.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from prompthone.data.example import Example

MetricFunction = Callable[[Example, Mapping[str, Any]], Any]


class MetricScoreError(ValueError):
    """A metric produced something that is not a score in [0, 1] (or not a score at all)."""

    def __init__(self, message: str, *, metric: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.metric = metric
        self.value = value


class MissingFieldError(LookupError):
    """The prediction (or the example's labels) lacks the field a metric compares.

    `side` is "prediction" (the program gave no such output: a parse failure, for the evaluator to
    record) or "label" (the metric is configured for a label the data does not have: a setup error).
    """

    def __init__(
        self,
        *,
        metric: str,
        field: str,
        side: Literal["prediction", "label"],
        available: tuple[str, ...],
        example_id: str | None = None,
    ) -> None:
        self.metric = metric
        self.field = field
        self.side = side
        self.available = available
        self.example_id = example_id
        where = f" of example {example_id!r}" if example_id else ""
        have = ", ".join(available) if available else "none"
        noun = "prediction" if side == "prediction" else "labels"
        super().__init__(f"metric {metric}: field {field!r} is missing from the {noun}{where} (present: {have})")

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0])


@dataclass(frozen=True)
class MetricResult:
    """A score in [0, 1] (1 = fully correct) and optional feedback saying what was wrong and why.

    Feedback feeds optimizers that learn from failures (GRAD-SUM), so it names the expected and the
    given value rather than just "wrong".
    """

    score: float
    feedback: str | None = None

    def __post_init__(self) -> None:
        s = self.score
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or math.isnan(float(s)):
            raise MetricScoreError(f"score must be a number in [0, 1], got {s!r}", value=s)
        if not 0.0 <= float(s) <= 1.0:
            raise MetricScoreError(f"score must be in [0, 1], got {s!r}", value=s)
        if self.feedback is not None and not isinstance(self.feedback, str):
            raise TypeError(f"feedback must be a string or None, got {type(self.feedback).__name__}")
        object.__setattr__(self, "score", float(s))


def coerce_result(value: Any, metric: str) -> MetricResult:
    """Turn what a metric returned into a `MetricResult`: True/False -> 1/0, a number kept as is.

    Anything else, a NaN, or a number outside [0, 1] raises `MetricScoreError` naming `metric`.
    """
    if isinstance(value, MetricResult):
        return value
    if isinstance(value, bool):
        return MetricResult(1.0 if value else 0.0)
    if isinstance(value, numbers.Real):
        try:
            return MetricResult(float(value))
        except MetricScoreError as e:
            raise MetricScoreError(f"metric {metric} returned {value!r}: {e}", metric=metric, value=value) from None
    raise MetricScoreError(
        f"metric {metric} returned {type(value).__name__} {value!r:.80}; expected a bool, a number in [0, 1] "
        "or a MetricResult",
        metric=metric,
        value=value,
    )


class Metric(ABC):
    """Base of all metrics. Subclasses implement `ascore`; or `compute` via `SyncMetric`."""

    name: str = "metric"

    @abstractmethod
    async def ascore(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        """Score one prediction; what the evaluator awaits."""

    def score(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        """Score synchronously. For a truly async metric this runs its own event loop, so it cannot be
        called from inside a running loop (use `await ascore(...)` there)."""
        _no_running_loop(self.name)
        return asyncio.run(self.ascore(example, prediction))

    def __call__(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        return self.score(example, prediction)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class SyncMetric(Metric):
    """A metric computed synchronously (cheap, CPU-only): `ascore` just calls `score`."""

    @abstractmethod
    def compute(self, example: Example, prediction: Mapping[str, Any]) -> Any:
        """Return a MetricResult, a bool or a number in [0, 1]."""

    def score(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        _check_prediction(prediction, self.name)
        with _named(self.name):
            return coerce_result(self.compute(example, prediction), self.name)

    async def ascore(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        return self.score(example, prediction)


class FieldMetric(SyncMetric):
    """A metric comparing one label field with one prediction field (both `answer` by default).

    A label may hold one gold value or a list/tuple of acceptable ones; the best match counts.
    """

    kind = "field_metric"

    def __init__(
        self,
        *,
        label_field: str = "answer",
        pred_field: str | None = None,
        name: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """`pred_field` defaults to `label_field` (the output field named like the label). `options` are the
        subclass's non-default settings; they go into the default name because the name keys cached
        scores, and two differently configured metrics must not share cache entries."""
        pred_field = pred_field or label_field
        self.label_field = label_field
        self.pred_field = pred_field
        fields = "" if label_field == pred_field == "answer" else f"({label_field}, {pred_field})"
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted((options or {}).items()))
        self.name = name or f"{self.kind}{fields}" + (f"[{opts}]" if opts else "")

    @abstractmethod
    def compare(self, gold: Any, predicted: Any) -> MetricResult:
        """Score one predicted value against one gold value."""

    def compute(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        golds = self.gold_values(example)
        predicted = get_field(prediction, self.pred_field, metric=self.name, side="prediction", example=example)
        results = [self.compare(g, predicted) for g in golds]
        return max(results, key=lambda r: r.score)  # first best wins, so its feedback is deterministic

    def gold_values(self, example: Example) -> list[Any]:
        gold = get_field(example.labels, self.label_field, metric=self.name, side="label", example=example)
        golds = list(gold) if isinstance(gold, list | tuple) else [gold]
        if not golds:
            raise ValueError(
                f"metric {self.name}: label {self.label_field!r} of example {example.id!r} is an empty list"
            )
        return golds


def get_field(
    values: Mapping[str, Any],
    field: str,
    *,
    metric: str,
    side: Literal["prediction", "label"],
    example: Example | None = None,
) -> Any:
    """`values[field]`, or `MissingFieldError` if it is absent or None."""
    value = values.get(field)
    if value is None:
        raise MissingFieldError(
            metric=metric,
            field=field,
            side=side,
            available=tuple(k for k, v in values.items() if v is not None),
            example_id=example.id if example is not None else None,
        )
    return value


class FunctionMetric(Metric):
    """Adapts a plain `fn(example, prediction)`, sync or async, returning a bool, number or MetricResult.

    A sync function runs inline in `ascore` (metrics are expected to be cheap); an async one is awaited.
    """

    def __init__(self, fn: MetricFunction, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"a metric must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__

    def score(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        _check_prediction(prediction, self.name)
        if _is_async(self.fn):
            _no_running_loop(self.name)
            return asyncio.run(self.ascore(example, prediction))
        with _named(self.name):
            value = self.fn(example, prediction)
        if inspect.isawaitable(value):
            _no_running_loop(self.name, pending=value)
            with _named(self.name):
                value = asyncio.run(_await(value))
        return coerce_result(value, self.name)

    async def ascore(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        _check_prediction(prediction, self.name)
        with _named(self.name):
            value = self.fn(example, prediction)
            if inspect.isawaitable(value):
                value = await value
        return coerce_result(value, self.name)


def as_metric(metric: Metric | MetricFunction, name: str | None = None) -> Metric:
    """A `Metric` as is, or a callable wrapped in `FunctionMetric` (named `name` or after the function)."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return FunctionMetric(metric, name=name)
    raise TypeError(f"expected a Metric or a function (example, prediction) -> score, got {type(metric).__name__}")


@contextmanager
def _named(metric: str) -> Iterator[None]:
    """Add the metric's name to a `MetricScoreError` raised without one (e.g. `MetricResult(1.5)`)."""
    try:
        yield
    except MetricScoreError as e:
        if e.metric is not None:
            raise
        raise MetricScoreError(f"metric {metric}: {e}", metric=metric, value=e.value) from None


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def _await(value: Awaitable[Any]) -> Any:
    return await value


def _no_running_loop(metric: str, pending: Any = None) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if inspect.iscoroutine(pending):
        pending.close()  # never awaited: close it so Python does not warn about it later
    raise RuntimeError(f"metric {metric} is async and an event loop is running: use `await metric.ascore(...)`")


def _check_prediction(prediction: Any, metric: str) -> None:
    if not isinstance(prediction, Mapping):
        raise TypeError(
            f"metric {metric}: a prediction must be a mapping of output field to value, "
            f"got {type(prediction).__name__} {prediction!r:.60}"
        )


__all__ = [
    "FieldMetric",
    "FunctionMetric",
    "Metric",
    "MetricFunction",
    "MetricResult",
    "MetricScoreError",
    "MissingFieldError",
    "SyncMetric",
    "as_metric",
    "coerce_result",
    "get_field",
]
