"""Metrics: (example, prediction) -> MetricResult(score in [0, 1], feedback); sync or async."""

from prompthone.metrics.base import (
    FieldMetric,
    FunctionMetric,
    Metric,
    MetricFunction,
    MetricResult,
    MetricScoreError,
    MissingFieldError,
    SyncMetric,
    as_metric,
    coerce_result,
)
from prompthone.metrics.choice import ChoiceMatch, extract_choice
from prompthone.metrics.judge import JudgeError, JudgeMetric, JudgeScale, parse_verdict
from prompthone.metrics.normalize import normalize_answer
from prompthone.metrics.numbers import answer_number, extract_numbers
from prompthone.metrics.numeric import NumericMatch
from prompthone.metrics.text import ExactMatch, TokenF1

__all__ = [
    "ChoiceMatch",
    "ExactMatch",
    "FieldMetric",
    "FunctionMetric",
    "JudgeError",
    "JudgeMetric",
    "JudgeScale",
    "Metric",
    "MetricFunction",
    "MetricResult",
    "MetricScoreError",
    "MissingFieldError",
    "NumericMatch",
    "SyncMetric",
    "TokenF1",
    "answer_number",
    "as_metric",
    "coerce_result",
    "extract_choice",
    "extract_numbers",
    "normalize_answer",
    "parse_verdict",
]
