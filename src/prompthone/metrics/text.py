"""Text metrics: normalized exact match and SQuAD-style token F1."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prompthone.metrics.base import FieldMetric, MetricResult
from prompthone.metrics.normalize import answer_tokens, normalize_answer, squeeze_whitespace


class ExactMatch(FieldMetric):
    """1 if the prediction equals the gold after `normalize_answer` (case, punctuation, articles, spaces).

    With `normalize=False` only whitespace is squeezed. When normalization would erase the gold entirely
    (punctuation-only answers such as BBH's Dyck "] ) }"), whitespace-only comparison is used instead;
    otherwise every punctuation answer would equal every other.
    """

    kind = "exact_match"

    def __init__(
        self,
        *,
        label_field: str = "answer",
        pred_field: str | None = None,
        normalize: bool = True,
        name: str | None = None,
    ) -> None:
        options = {} if normalize else {"normalize": False}
        super().__init__(label_field=label_field, pred_field=pred_field, name=name, options=options)
        self.normalize = normalize

    def compare(self, gold: Any, predicted: Any) -> MetricResult:
        g, p = normalize_answer(gold), normalize_answer(predicted)
        if not self.normalize or not g:
            g, p = squeeze_whitespace(gold), squeeze_whitespace(predicted)
        if g == p:
            return MetricResult(1.0)
        return MetricResult(0.0, f"expected {str(gold)!r}, got {str(predicted)!r}")


class TokenF1(FieldMetric):
    """SQuAD token F1 between normalized prediction and gold: partial credit for partial answers."""

    kind = "token_f1"

    def compare(self, gold: Any, predicted: Any) -> MetricResult:
        g, p = answer_tokens(gold), answer_tokens(predicted)
        if not g or not p:
            f1 = 1.0 if g == p else 0.0
        else:
            common = sum((Counter(g) & Counter(p)).values())
            if common == 0:
                f1 = 0.0
            else:
                precision, recall = common / len(p), common / len(g)
                f1 = 2 * precision * recall / (precision + recall)
        if f1 == 1.0:
            return MetricResult(1.0)
        return MetricResult(f1, f"token F1 {f1:.2f}: expected {str(gold)!r}, got {str(predicted)!r}")


__all__ = ["ExactMatch", "TokenF1"]
