"""Numeric equality: the number the prediction gives as its answer equals the gold number."""

from __future__ import annotations

import math
import numbers
from typing import Any

from prompthone.metrics.base import FieldMetric, MetricResult
from prompthone.metrics.numbers import answer_number


class NumericMatch(FieldMetric):
    """1 if the prediction's answer number equals the gold within tolerance (`math.isclose`).

    The prediction may be a number or text ("The answer is $1,234.50."; see `answer_number`). Text
    without any number is a wrong answer (0, with feedback). A gold label that holds no number is a data
    error and raises `ValueError`: scoring against it would be meaningless.
    """

    kind = "numeric_match"

    def __init__(
        self,
        *,
        label_field: str = "answer",
        pred_field: str | None = None,
        abs_tol: float = 1e-6,
        rel_tol: float = 1e-9,
        fractions: bool = True,
        name: str | None = None,
    ) -> None:
        defaults = {"abs_tol": 1e-6, "rel_tol": 1e-9, "fractions": True}
        given = {"abs_tol": abs_tol, "rel_tol": rel_tol, "fractions": fractions}
        options = {k: v for k, v in given.items() if v != defaults[k]}
        super().__init__(label_field=label_field, pred_field=pred_field, name=name, options=options)
        if abs_tol < 0 or rel_tol < 0:
            raise ValueError(f"tolerances must be >= 0, got abs_tol={abs_tol}, rel_tol={rel_tol}")
        self.abs_tol, self.rel_tol, self.fractions = abs_tol, rel_tol, fractions

    def _number(self, value: Any) -> float | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, numbers.Real):
            return float(value)
        return answer_number(str(value), fractions=self.fractions)

    def compare(self, gold: Any, predicted: Any) -> MetricResult:
        g = self._number(gold)
        if g is None or math.isnan(g):
            raise ValueError(f"metric {self.name}: gold label {gold!r} holds no number")
        p = self._number(predicted)
        if p is None:
            return MetricResult(0.0, f"expected {_fmt(g)}, but the prediction has no number: {str(predicted)!r:.200}")
        if math.isclose(p, g, rel_tol=self.rel_tol, abs_tol=self.abs_tol):
            return MetricResult(1.0)
        shown = "" if str(predicted).strip() == _fmt(p) else f" (read from {str(predicted)!r:.200})"
        return MetricResult(0.0, f"expected {_fmt(g)}, got {_fmt(p)}{shown}")


def _fmt(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


__all__ = ["NumericMatch"]
